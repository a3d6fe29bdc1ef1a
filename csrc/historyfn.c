/* historyfn.c: the refresh history's server-side functions (django_pgviews_c/historyfn.py).
 *
 * A recorded Model.refresh() outside a transaction sends one script: capture, REFRESH, record.
 * Sent as text, the capture's catalog query is parsed and planned on every call, which costs
 * more than the tiny REFRESH it accompanies. Written as static SQL of PL/pgSQL functions, its
 * plan (and the record's) is made once per server backend and kept there: nothing depends on
 * the client keeping a prepared statement, so it holds behind PgBouncer's transaction pooling.
 *
 * Both functions are SECURITY INVOKER (they do what the caller may do, nothing more), name
 * every object with its schema and run with search_path pinned to pg_catalog, pg_temp. What
 * the caller's search_path decides is resolved at the call, in the caller's session: the view's
 * name (to_regclass in the call's arguments), and the path the recorded source names are
 * written for. plan_cache_mode = force_generic_plan: a plan made once, never re-planned for a
 * parameter's value. jit = off for the capture: its estimate crosses jit_above_cost, and
 * compiling takes longer than the query.
 *
 * A third function, the record of a refresh_views() run (migration 0005), writes the records of
 * a run together once its refreshes are done: arrays of them in one call, rows counted, one
 * INSERT, one DELETE of what is past keep + slack. */
#include "historyfn.h"

#include "exact.h"
#include "freshness.h"

#include <stdio.h>
#include <string.h>

#define FN_SETTINGS                                                                                \
    " LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp"            \
    " SET plan_cache_mode = force_generic_plan"
#define CAPTURE_ARGS "(p_view pg_catalog.regclass, p_path pg_catalog.name[], p_exact boolean)"
#define RECORD_ARGS                                                                                \
    "(p_view text, p_db_table text, p_started_at timestamp with time zone,"                        \
    " p_rel pg_catalog.regclass, p_count_limit bigint, p_concurrent boolean, p_plain_reason text," \
    " p_keep integer, p_slack integer)"
#define RECORD_TYPES                                                                               \
    "(text, text, timestamp with time zone, pg_catalog.regclass, bigint, boolean, text, integer,"  \
    " integer)"

#define RECORD_RUN_ARGS                                                                            \
    "(p_views text[], p_db_tables text[], p_started_at timestamp with time zone[],"                \
    " p_durations double precision[], p_rels pg_catalog.regclass[], p_concurrent boolean[],"       \
    " p_plain_reasons text[], p_ok boolean[], p_sqlstates text[], p_messages text[],"              \
    " p_sources text[], p_count_limit bigint, p_keep integer, p_slack integer)"
#define RECORD_RUN_TYPES                                                                           \
    "(text[], text[], timestamp with time zone[], double precision[], pg_catalog.regclass[],"      \
    " boolean[], text[], boolean[], text[], text[], text[], bigint, integer, integer)"

const char pgvc_history_capture_call[] =
    "SELECT " PGVC_CAPTURE_FUNCTION "(pg_catalog.to_regclass(%s), pg_catalog.current_schemas(true),"
    " %s)";
const char pgvc_history_record_call[] =
    "SELECT " PGVC_RECORD_FUNCTION "(%s, %s, %s, pg_catalog.to_regclass(%s), %s, %s, %s, %s, %s)";
/* The views' names are resolved in the caller's session, in the order given (a name that no
 * longer resolves gives NULL: no row count). */
const char pgvc_history_record_run_call[] =
    "SELECT " PGVC_RECORD_RUN_FUNCTION "(%s::text[], %s::text[], %s::timestamp with time zone[],"
    " %s::double precision[], (SELECT pg_catalog.array_agg(pg_catalog.to_regclass(u.n) ORDER BY"
    " u.o) FROM pg_catalog.unnest(%s::text[]) WITH ORDINALITY u(n, o)), %s::boolean[],"
    " %s::text[], %s::boolean[], %s::text[], %s::text[], %s::text[], %s, %s, %s)";

/* The capture: pgviews_c.sources (the JSON a record keeps; empty when the view does not exist)
 * and pgviews_c.started (the clock), for the rest of the transaction. */
static void capture_body(pgvc_buf *b, const char *counter_table)
{
    pgvc_buf_puts(b, "DECLARE v_sources text; BEGIN IF p_exact THEN ");
    pgvc_capture_function_query(b, 1, counter_table);
    pgvc_buf_puts(b, " INTO v_sources; ELSE ");
    pgvc_capture_function_query(b, 0, counter_table);
    pgvc_buf_puts(b, " INTO v_sources; END IF;"
                     " PERFORM pg_catalog.set_config('pgviews_c.sources', coalesce(v_sources, ''),"
                     " true), pg_catalog.set_config('pgviews_c.started',"
                     " pg_catalog.clock_timestamp()::text, true); END");
}

/* The record of a successful refresh: rows counted when the view is populated and at most
 * p_count_limit bytes. Then the view's records beyond the newest p_keep are deleted, but only
 * once there are more than p_keep + p_slack of them: one delete every p_slack refreshes instead
 * of one per refresh. `passed`: the duration and the sources are the arguments p_duration and
 * p_sources (the refresh function's record); else they are what the capture set. */
static void record_body(pgvc_buf *b, const char *schema, int passed)
{
    pgvc_buf_puts(b,
                  "DECLARE v_rows bigint; BEGIN"
                  " IF EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = p_rel"
                  " AND c.relispopulated AND pg_catalog.pg_relation_size(c.oid) <= p_count_limit)"
                  " THEN EXECUTE 'SELECT pg_catalog.count(*) FROM ' || p_rel::text INTO v_rows;"
                  " END IF; INSERT INTO ");
    pgvc_buf_qualified(b, schema, PGVC_HISTORY_TABLE);
    pgvc_buf_puts(b, " (view, db_table, started_at, duration, rows, concurrent, plain_reason, ok,"
                     " sqlstate, message, sources) VALUES (p_view, p_db_table, p_started_at, ");
    pgvc_buf_puts(b, passed
                         ? "p_duration, v_rows, p_concurrent, p_plain_reason, true, '', '',"
                           " p_sources::jsonb);"
                         : "pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()"
                           " - pg_catalog.current_setting('pgviews_c.started')::timestamp with"
                           " time zone), v_rows, p_concurrent, p_plain_reason, true, '', '',"
                           " NULLIF(pg_catalog.current_setting('pgviews_c.sources'), '')::jsonb);");
    pgvc_buf_puts(b, " IF EXISTS (SELECT FROM ");
    pgvc_buf_qualified(b, schema, PGVC_HISTORY_TABLE);
    pgvc_buf_puts(b, " r WHERE r.view = p_view ORDER BY r.id DESC OFFSET p_keep + p_slack) THEN"
                     " DELETE FROM ");
    pgvc_buf_qualified(b, schema, PGVC_HISTORY_TABLE);
    pgvc_buf_puts(b, " r WHERE r.view = p_view AND r.id < (SELECT k.id FROM ");
    pgvc_buf_qualified(b, schema, PGVC_HISTORY_TABLE);
    pgvc_buf_puts(b, " k WHERE k.view = p_view ORDER BY k.id DESC OFFSET p_keep - 1 LIMIT 1);"
                     " END IF; END");
}

/* The records of a refresh_views() run (runhistory.py), many in one call: one row each, in the
 * order given, the rows counted (as record_body does) for the successful refreshes only. Then
 * the records of each view of the call beyond the newest p_keep are deleted, for the views that
 * have more than p_keep + p_slack: one statement for the whole call. */
static void record_run_body(pgvc_buf *b, const char *schema)
{
    pgvc_buf_puts(
        b, "DECLARE v_rows bigint[] := '{}'; v_n bigint; BEGIN"
           " FOR i IN 1 .. coalesce(pg_catalog.array_length(p_views, 1), 0) LOOP v_n := NULL;"
           " IF p_ok[i] AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = p_rels[i]"
           " AND c.relispopulated AND pg_catalog.pg_relation_size(c.oid) <= p_count_limit)"
           " THEN EXECUTE 'SELECT pg_catalog.count(*) FROM ' || p_rels[i]::text INTO v_n;"
           " END IF; v_rows[i] := v_n; END LOOP; INSERT INTO ");
    pgvc_buf_qualified(b, schema, PGVC_HISTORY_TABLE);
    pgvc_buf_puts(b, " (view, db_table, started_at, duration, rows, concurrent, plain_reason, ok,"
                     " sqlstate, message, sources) SELECT r.view, r.db_table, r.started_at,"
                     " r.duration, r.rows, r.concurrent, r.plain_reason, r.ok, r.sqlstate,"
                     " r.message, r.sources::jsonb FROM ROWS FROM (pg_catalog.unnest(p_views),"
                     " pg_catalog.unnest(p_db_tables), pg_catalog.unnest(p_started_at),"
                     " pg_catalog.unnest(p_durations), pg_catalog.unnest(v_rows),"
                     " pg_catalog.unnest(p_concurrent), pg_catalog.unnest(p_plain_reasons),"
                     " pg_catalog.unnest(p_ok), pg_catalog.unnest(p_sqlstates),"
                     " pg_catalog.unnest(p_messages), pg_catalog.unnest(p_sources))"
                     " WITH ORDINALITY AS r(view, db_table,"
                     " started_at, duration, rows, concurrent, plain_reason, ok, sqlstate,"
                     " message, sources, n) ORDER BY r.n; DELETE FROM ");
    pgvc_buf_qualified(b, schema, PGVC_HISTORY_TABLE);
    pgvc_buf_puts(b, " r USING (SELECT v.view, (SELECT k.id FROM ");
    pgvc_buf_qualified(b, schema, PGVC_HISTORY_TABLE);
    pgvc_buf_puts(b, " k WHERE k.view = v.view ORDER BY k.id DESC OFFSET p_keep - 1 LIMIT 1) AS"
                     " oldest FROM (SELECT DISTINCT u.view FROM pg_catalog.unnest(p_views) AS"
                     " u(view)) v WHERE EXISTS (SELECT FROM ");
    pgvc_buf_qualified(b, schema, PGVC_HISTORY_TABLE);
    pgvc_buf_puts(b, " x WHERE x.view = v.view ORDER BY x.id DESC OFFSET p_keep + p_slack)) p"
                     " WHERE r.view = p.view AND r.id < p.oldest; END");
}

/* AS $tag$body$tag$ with a tag the body does not hold (the names in it are the user's). */
static void dollar_quoted(pgvc_buf *b, const pgvc_buf *body)
{
    char tag[32] = "$pgvc$";
    int n = 0;

    while (body->data && strstr(body->data, tag) != NULL)
        snprintf(tag, sizeof tag, "$pgvc%d$", ++n);
    pgvc_buf_puts(b, " AS ");
    pgvc_buf_puts(b, tag);
    if (body->data)
        pgvc_buf_put(b, body->data, body->len);
    pgvc_buf_puts(b, tag);
}

void pgvc_history_functions(pgvc_buf *b, const char *schema, const char *counter_table)
{
    pgvc_buf body;

    pgvc_buf_init(&body);
    pgvc_buf_puts(b, "CREATE OR REPLACE FUNCTION ");
    pgvc_buf_qualified(b, schema, PGVC_CAPTURE_FUNCTION);
    pgvc_buf_puts(b, CAPTURE_ARGS " RETURNS void" FN_SETTINGS " SET jit = off");
    capture_body(&body, counter_table);
    dollar_quoted(b, &body);
    pgvc_buf_puts(b, ";\nCREATE OR REPLACE FUNCTION ");
    pgvc_buf_qualified(b, schema, PGVC_RECORD_FUNCTION);
    pgvc_buf_puts(b, RECORD_ARGS " RETURNS void" FN_SETTINGS);
    pgvc_buf_reset(&body);
    record_body(&body, schema, 0);
    dollar_quoted(b, &body);
    if (body.oom)
        b->oom = 1;
    pgvc_buf_free(&body);
}

void pgvc_history_run_function(pgvc_buf *b, const char *schema)
{
    pgvc_buf body;

    pgvc_buf_init(&body);
    pgvc_buf_puts(b, "CREATE OR REPLACE FUNCTION ");
    pgvc_buf_qualified(b, schema, PGVC_RECORD_RUN_FUNCTION);
    pgvc_buf_puts(b, RECORD_RUN_ARGS " RETURNS void" FN_SETTINGS);
    record_run_body(&body, schema);
    dollar_quoted(b, &body);
    if (body.oom)
        b->oom = 1;
    pgvc_buf_free(&body);
}

void pgvc_history_drop_run_function(pgvc_buf *b, const char *schema)
{
    pgvc_buf_puts(b, "DROP FUNCTION IF EXISTS ");
    pgvc_buf_qualified(b, schema, PGVC_RECORD_RUN_FUNCTION);
    pgvc_buf_puts(b, RECORD_RUN_TYPES);
}

void pgvc_history_drop_functions(pgvc_buf *b, const char *schema)
{
    pgvc_buf_puts(b, "DROP FUNCTION IF EXISTS ");
    pgvc_buf_qualified(b, schema, PGVC_CAPTURE_FUNCTION);
    pgvc_buf_puts(b, "(pg_catalog.regclass, pg_catalog.name[], boolean), ");
    pgvc_buf_qualified(b, schema, PGVC_RECORD_FUNCTION);
    pgvc_buf_puts(b, RECORD_TYPES);
}

/* ---- one call per refresh (migration 0007) ----------------------------------------------------
 *
 * django_pgviews_c_refresh does in one statement what the one round trip of 0004's functions
 * does in eight (BEGIN, capture, two savepoints, guard, REFRESH, restore, record, COMMIT): it
 * sets lock_timeout for the transaction as lock_guard does (the session's shorter one wins),
 * captures when recording, runs the REFRESH built from the regclass (never from client text),
 * puts lock_timeout back and records. Each statement of a VOLATILE function takes its own
 * snapshot under READ COMMITTED, so the REFRESH reads after the capture; under REPEATABLE READ
 * or SERIALIZABLE it would not, and a recorded call refuses to run there (0A000, before
 * anything ran: the caller refreshes the ordinary way).
 *
 * No savepoint: the capture and the record are functions of their own, so an error's CONTEXT
 * names the one it came from (their names, which the server never translates); any error rolls
 * the whole call back. Only the outer function carries SET clauses (each costs at every call):
 * search_path pinned, and plan_cache_mode, under which the nested functions' statements are
 * planned. The nested ones are called by it alone; they run under its settings. */
#define REFRESH_ARGS                                                                               \
    "(p_view pg_catalog.regclass, p_concurrent boolean, p_lock_ms integer, p_record boolean,"      \
    " p_path pg_catalog.name[], p_exact boolean, p_label text, p_db_table text,"                   \
    " p_started_at timestamp with time zone, p_count_limit bigint, p_plain_reason text,"           \
    " p_keep integer, p_slack integer)"
#define REFRESH_TYPES                                                                              \
    "(pg_catalog.regclass, boolean, integer, boolean, pg_catalog.name[], boolean, text, text,"     \
    " timestamp with time zone, bigint, text, integer, integer)"
#define REFRESH_CAPTURE_ARGS                                                                       \
    "(p_view pg_catalog.regclass, p_path pg_catalog.name[], p_exact boolean)"
#define REFRESH_CAPTURE_TYPES "(pg_catalog.regclass, pg_catalog.name[], boolean)"
#define REFRESH_RECORD_ARGS                                                                        \
    "(p_view text, p_db_table text, p_started_at timestamp with time zone,"                        \
    " p_duration double precision, p_sources text, p_rel pg_catalog.regclass,"                     \
    " p_count_limit bigint, p_concurrent boolean, p_plain_reason text, p_keep integer,"            \
    " p_slack integer)"
#define REFRESH_RECORD_TYPES                                                                       \
    "(text, text, timestamp with time zone, double precision, text, pg_catalog.regclass, bigint,"  \
    " boolean, text, integer, integer)"

const char pgvc_history_refresh_call[] =
    "SELECT " PGVC_REFRESH_FUNCTION "(%s::pg_catalog.regclass, %s, %s, %s,"
    " pg_catalog.current_schemas(true), %s, %s, %s, %s, %s, %s, %s, %s)";

/* The capture of the refresh function, returning the sources' JSON (NULL when the view does not
 * exist). The common case first: when no relation the view reads directly is a plain view or a
 * parent of inheritance or partitions (relhassubclass: true while it has children, and possibly
 * after), the closure is those reads, and a plan without recursion serves it; else the closure
 * query of 0004's capture, with JIT off for it alone (its estimate crosses jit_above_cost). Both
 * give the same JSON for the same closure. */
static void refresh_capture_body(pgvc_buf *b, const char *counter_table)
{
    pgvc_buf_puts(
        b, "DECLARE v_direct pg_catalog.oid[]; v_deep boolean; v_sources text; v_jit text; BEGIN"
           " SELECT pg_catalog.array_agg(c.oid), pg_catalog.bool_or(c.relkind = 'v' OR"
           " c.relhassubclass) INTO v_direct, v_deep FROM (SELECT DISTINCT d.refobjid"
           " FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_depend d"
           " ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid"
           " AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
           " AND d.refobjid <> p_view WHERE r.ev_class = p_view) x"
           " JOIN pg_catalog.pg_class c ON c.oid = x.refobjid;"
           " IF v_deep THEN v_jit := pg_catalog.current_setting('jit');"
           " PERFORM pg_catalog.set_config('jit', 'off', true); IF p_exact THEN ");
    pgvc_capture_function_query(b, 1, counter_table);
    pgvc_buf_puts(b, " INTO v_sources; ELSE ");
    pgvc_capture_function_query(b, 0, counter_table);
    pgvc_buf_puts(b, " INTO v_sources; END IF; PERFORM pg_catalog.set_config('jit', v_jit, true);"
                     " ELSIF p_exact THEN ");
    pgvc_capture_direct_query(b, 1, counter_table);
    pgvc_buf_puts(b, " INTO v_sources; ELSE ");
    pgvc_capture_direct_query(b, 0, counter_table);
    pgvc_buf_puts(b, " INTO v_sources; END IF; RETURN v_sources; END");
}

static void refresh_body(pgvc_buf *b, const char *schema)
{
    pgvc_buf_puts(
        b, "DECLARE v_timeout text := pg_catalog.current_setting('lock_timeout'); v_ms bigint;"
           " v_sources text; v_t0 timestamp with time zone; BEGIN"
           " v_ms := (pg_catalog.date_part('epoch', v_timeout::interval) * 1000)::bigint;"
           " PERFORM pg_catalog.set_config('lock_timeout', (CASE WHEN v_ms > 0 AND v_ms < p_lock_ms"
           " THEN v_ms ELSE p_lock_ms END)::text || 'ms', true);"
           " IF p_record THEN IF pg_catalog.current_setting('transaction_isolation') NOT IN"
           " ('read committed', 'read uncommitted') THEN RAISE EXCEPTION USING ERRCODE = '0A000',"
           " MESSAGE = 'a recorded refresh in one call needs READ COMMITTED';"
           " END IF; v_sources := ");
    pgvc_buf_qualified(b, schema, PGVC_REFRESH_CAPTURE_FUNCTION);
    pgvc_buf_puts(b, "(p_view, p_path, p_exact); END IF; v_t0 := pg_catalog.clock_timestamp();"
                     " EXECUTE 'REFRESH MATERIALIZED VIEW ' || CASE WHEN p_concurrent THEN"
                     " 'CONCURRENTLY ' ELSE '' END || p_view::text;"
                     " PERFORM pg_catalog.set_config('lock_timeout', v_timeout, true);"
                     " IF p_record THEN PERFORM ");
    pgvc_buf_qualified(b, schema, PGVC_REFRESH_RECORD_FUNCTION);
    pgvc_buf_puts(b, "(p_label, p_db_table, p_started_at, pg_catalog.date_part('epoch',"
                     " pg_catalog.clock_timestamp() - v_t0), v_sources, p_view, p_count_limit,"
                     " p_concurrent, p_plain_reason, p_keep, p_slack); END IF; END");
}

/* CREATE OR REPLACE FUNCTION `name` `args` RETURNS `returns` `settings` AS <body>; */
static void create_function(pgvc_buf *b, const char *schema, const char *name, const char *args,
                            const char *rest, const pgvc_buf *body)
{
    pgvc_buf_puts(b, "CREATE OR REPLACE FUNCTION ");
    pgvc_buf_qualified(b, schema, name);
    pgvc_buf_puts(b, args);
    pgvc_buf_puts(b, rest);
    dollar_quoted(b, body);
    pgvc_buf_puts(b, ";\n");
}

#define NESTED_SETTINGS " LANGUAGE plpgsql VOLATILE SECURITY INVOKER"

void pgvc_history_refresh_function(pgvc_buf *b, const char *schema, const char *counter_table)
{
    pgvc_buf body;

    pgvc_buf_init(&body);
    refresh_capture_body(&body, counter_table);
    create_function(b, schema, PGVC_REFRESH_CAPTURE_FUNCTION, REFRESH_CAPTURE_ARGS,
                    " RETURNS text" NESTED_SETTINGS, &body);
    pgvc_buf_reset(&body);
    record_body(&body, schema, 1);
    create_function(b, schema, PGVC_REFRESH_RECORD_FUNCTION, REFRESH_RECORD_ARGS,
                    " RETURNS void" NESTED_SETTINGS, &body);
    pgvc_buf_reset(&body);
    refresh_body(&body, schema);
    create_function(b, schema, PGVC_REFRESH_FUNCTION, REFRESH_ARGS, " RETURNS void" FN_SETTINGS,
                    &body);
    if (body.oom)
        b->oom = 1;
    pgvc_buf_free(&body);
}

void pgvc_history_drop_refresh_function(pgvc_buf *b, const char *schema)
{
    pgvc_buf_puts(b, "DROP FUNCTION IF EXISTS ");
    pgvc_buf_qualified(b, schema, PGVC_REFRESH_FUNCTION);
    pgvc_buf_puts(b, REFRESH_TYPES ", ");
    pgvc_buf_qualified(b, schema, PGVC_REFRESH_CAPTURE_FUNCTION);
    pgvc_buf_puts(b, REFRESH_CAPTURE_TYPES ", ");
    pgvc_buf_qualified(b, schema, PGVC_REFRESH_RECORD_FUNCTION);
    pgvc_buf_puts(b, REFRESH_RECORD_TYPES);
}
