/* queries.c: the text of every statement the Python layer runs besides transaction control
 * (savepoints, advisory locks, SET LOCAL) and what sqlgen.c/ddl.c write (the plan's DDL, REFRESH),
 * exposed by name through _core.query_sql().
 *
 * Placeholders are %s for the DB-API cursor (a literal % is written %%); values are always
 * bound by the caller. The two parts that vary are built here: relation names, quoted by
 * sqlgen.c, and lock_guard's timeout, an integer checked for range. lock_guard and lock_restore
 * run around a REFRESH in one simple-protocol round trip, which takes no parameters, so the
 * timeout is written as a number (formatted from a C integer, never from text). */
#include "queries.h"

#include "errors.h"
#include "exact.h"
#include "freshness.h"
#include "historyfn.h"
#include "sqlgen.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* ---- fixed texts ---------------------------------------------------------------------------- */

/* rehearsal.py (sync_pgviews --plan): the existing objects a plan rebuilds: kind, estimated rows,
 * total size with indexes. */
static const char q_sync_sizes[] = "\n"
                                   "SELECT u.t, c.relkind::text, greatest(c.reltuples, 0)::bigint, "
                                   "pg_catalog.pg_total_relation_size(c.oid)\n"
                                   "FROM pg_catalog.unnest(%s::text[]) AS u(t) JOIN "
                                   "pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(u.t)\n";

/* locks.py: the sessions holding a granted lock on any of the relations %s (text[]) or on the
 * advisory key %s (bigint or NULL; given three times), oldest query first. */
static const char q_lock_holders[] =
    "\n"
    "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''), "
    "coalesce(a.backend_type, ''),\n"
    "  a.query_start, pg_catalog.left(pg_catalog.regexp_replace(coalesce(a.query, ''), '\\s+', ' "
    "', 'g'), 80),\n"
    "  l.mode, CASE WHEN l.relation IS NOT NULL THEN l.relation::pg_catalog.regclass::text END\n"
    "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid\n"
    "WHERE l.granted AND l.pid <> pg_catalog.pg_backend_pid()\n"
    "  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = "
    "pg_catalog.current_database())\n"
    "  AND (l.relation IN (SELECT pg_catalog.to_regclass(t) FROM pg_catalog.unnest(%s::text[]) AS "
    "t)\n"
    "       OR (%s::bigint IS NOT NULL AND l.locktype = 'advisory'\n"
    "           AND l.classid::bigint = (%s::bigint >> 32) AND l.objid::bigint = (%s::bigint & "
    "4294967295)\n"
    "           AND l.objsubid = 1))\n"
    "ORDER BY a.query_start NULLS LAST, a.pid\n";

/* adopt.py: the relations of this database another session holds ACCESS EXCLUSIVE on (the only
 * lock that blocks ACCESS SHARE), quoted. */
static const char q_access_exclusive_relations[] =
    "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) "
    "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'AccessExclusiveLock' "
    "AND l.pid <> pg_catalog.pg_backend_pid() "
    "AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d "
    "WHERE d.datname = pg_catalog.current_database())";

/* refresherlock.py: try the refresher's transaction-level advisory lock %s (bigint); the open
 * transaction that holds it must outlive idle_in_transaction_session_timeout, lifted for this
 * transaction only. */
static const char q_refresher_lock_take[] =
    "SELECT pg_catalog.set_config('idle_in_transaction_session_timeout', '0', true), "
    "pg_catalog.pg_try_advisory_xact_lock(%s)";

/* locks.py: the session's lock_timeout, deadlock_timeout and statement_timeout (ms). */
static const char q_session_timeouts[] =
    "SELECT name::text, setting::bigint FROM pg_catalog.pg_settings WHERE name IN ('lock_timeout', "
    "'deadlock_timeout', 'statement_timeout')";

/* status.py: row estimate and (materialized views) total size of the relations %s (regclass[]). */
static const char q_status_sizes[] =
    "\n"
    "SELECT c.oid::regclass::text, c.reltuples::bigint,\n"
    "       CASE WHEN c.relkind = 'm' THEN pg_catalog.pg_total_relation_size(c.oid) END\n"
    "FROM pg_catalog.pg_class c WHERE c.oid = ANY(%s::regclass[])\n";

/* checks.py: for the declared views %s (text[]) that exist: their columns, which of the others
 * each one's rule reads, and the functions each materialized view's query calls (directly or
 * through the plain views it reads) that are neither built in, nor an extension's, nor C, and
 * carry no search_path setting. */
static const char q_database_checks[] =
    "\n"
    "WITH RECURSIVE declared AS (\n"
    "    SELECT t.idx::int AS idx, pg_catalog.to_regclass(t.q) AS oid\n"
    "    FROM pg_catalog.unnest(%s::text[]) WITH ORDINALITY AS t(q, idx)\n"
    "), present AS (\n"
    "    SELECT idx, oid FROM declared WHERE oid IS NOT NULL\n"
    "), reach(root, rel) AS (\n"
    "    SELECT p.idx, p.oid\n"
    "    FROM present p JOIN pg_catalog.pg_class c ON c.oid = p.oid AND c.relkind = 'm'\n"
    "    UNION\n"
    "    SELECT reach.root, d.refobjid\n"
    "    FROM reach\n"
    "    JOIN pg_catalog.pg_rewrite r ON r.ev_class = reach.rel\n"
    "    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass\n"
    "        AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass\n"
    "        AND d.refobjid <> reach.rel\n"
    "    JOIN pg_catalog.pg_class c ON c.oid = d.refobjid AND c.relkind = 'v'\n"
    ")\n"
    "SELECT 'column', p.idx, a.attname::text, NULL\n"
    "FROM present p\n"
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = p.oid AND a.attnum > 0 AND NOT a.attisdropped\n"
    "UNION ALL\n"
    "SELECT DISTINCT 'reads', p.idx, q.idx::text, NULL\n"
    "FROM present p\n"
    "JOIN pg_catalog.pg_rewrite r ON r.ev_class = p.oid\n"
    "JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = "
    "r.oid\n"
    "    AND d.refclassid = 'pg_catalog.pg_class'::regclass\n"
    "JOIN present q ON q.oid = d.refobjid AND q.idx <> p.idx\n"
    "UNION ALL\n"
    "SELECT DISTINCT 'calls', reach.root, f.oid::regprocedure::text,\n"
    "    CASE WHEN reach.rel = p.oid THEN NULL ELSE reach.rel::regclass::text END\n"
    "FROM reach\n"
    "JOIN present p ON p.idx = reach.root\n"
    "JOIN pg_catalog.pg_rewrite r ON r.ev_class = reach.rel\n"
    "JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = "
    "r.oid\n"
    "    AND d.refclassid = 'pg_catalog.pg_proc'::regclass\n"
    "JOIN pg_catalog.pg_proc f ON f.oid = d.refobjid\n"
    "JOIN pg_catalog.pg_namespace n ON n.oid = f.pronamespace\n"
    "JOIN pg_catalog.pg_language l ON l.oid = f.prolang\n"
    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')\n"
    "    AND l.lanname NOT IN ('c', 'internal')\n"
    "    AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(f.proconfig) s WHERE s LIKE "
    "'search\\_path=%%')\n"
    "    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid = "
    "'pg_catalog.pg_proc'::regclass\n"
    "                    AND e.objid = f.oid AND e.deptype = 'e')\n";

/* privileges.py: the role refreshing, the view's owner, whether the role acts as the owner,
 * whether it holds MAINTAIN on the view (NULL before PostgreSQL 17; _pg17 asks), and the
 * relations the view %s reads (its rewrite rule's dependencies) on which the owner has no
 * SELECT. */
static const char q_owner_privileges[] =
    "\n"
    "SELECT current_user::text, pg_catalog.pg_get_userbyid(c.relowner)::text,\n"
    "       pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE'), NULL,\n"
    "       (SELECT pg_catalog.string_agg(DISTINCT d.refobjid::pg_catalog.regclass::text, ', ')\n"
    "        FROM pg_catalog.pg_rewrite r\n"
    "        JOIN pg_catalog.pg_depend d ON d.classid = "
    "'pg_catalog.pg_rewrite'::pg_catalog.regclass\n"
    "             AND d.objid = r.oid AND d.refclassid = "
    "'pg_catalog.pg_class'::pg_catalog.regclass\n"
    "        WHERE r.ev_class = c.oid AND d.refobjid <> c.oid\n"
    "          AND NOT pg_catalog.has_any_column_privilege(c.relowner, d.refobjid, 'SELECT'))\n"
    "FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass(%s)\n";

static const char q_owner_privileges_pg17[] =
    "\n"
    "SELECT current_user::text, pg_catalog.pg_get_userbyid(c.relowner)::text,\n"
    "       pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE'), "
    "pg_catalog.has_table_privilege(c.oid, 'MAINTAIN'),\n"
    "       (SELECT pg_catalog.string_agg(DISTINCT d.refobjid::pg_catalog.regclass::text, ', ')\n"
    "        FROM pg_catalog.pg_rewrite r\n"
    "        JOIN pg_catalog.pg_depend d ON d.classid = "
    "'pg_catalog.pg_rewrite'::pg_catalog.regclass\n"
    "             AND d.objid = r.oid AND d.refclassid = "
    "'pg_catalog.pg_class'::pg_catalog.regclass\n"
    "        WHERE r.ev_class = c.oid AND d.refobjid <> c.oid\n"
    "          AND NOT pg_catalog.has_any_column_privilege(c.relowner, d.refobjid, 'SELECT'))\n"
    "FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass(%s)\n";

/* order.py: the schemas of the session's search_path, implicit ones left out. */
static const char q_current_schemas[] = "SELECT pg_catalog.current_schemas(false)";

/* freshness.py: drop the statistics snapshot the transaction holds, so the counters read next
 * are current. */
static const char q_clear_stats_snapshot[] = "SELECT pg_catalog.pg_stat_clear_snapshot()";

/* clientcheck.py: the refresher's session checks, every %s ms while a statement runs, that its
 * client is still there (PostgreSQL 14+; older servers have no such check and skip it), so a
 * refresher killed mid-refresh loses its session, and its advisory lock, at once. */
static const char q_client_check[] =
    "SELECT pg_catalog.set_config('client_connection_check_interval', %s, false) "
    "WHERE pg_catalog.current_setting('server_version_num')::int >= 140000";

/* refresh.py: after the REFRESH, put back the lock_timeout lock_guard remembered. */
static const char q_lock_restore[] = "; SELECT pg_catalog.set_config('lock_timeout', "
                                     "pg_catalog.current_setting('pgviews_c.lock_timeout'), true)";

/* ---- texts built around the history table's name ----------------------------------------------- */

#define HISTORY_TABLE PGVC_HISTORY_TABLE

/* One record's VALUES row: view, db_table, started_at, duration, [the count's two: size limit,
 * qualified name,] concurrent, plain_reason, ok, sqlstate, message, sources (json). `captured`: no
 * duration nor sources parameter, the row reads what the capture of the same transaction set
 * (freshness.c): the sources, and the duration from its clock to now. `rel` (with its schema, or
 * NULL) counts the rows when the relation is populated and no larger than the limit; without it
 * rows is NULL. */
static void history_row(pgvc_buf *b, const char *schema, const char *rel, int captured)
{
    pgvc_buf_puts(b, "(%s, %s, %s, ");
    if (captured)
        pgvc_buf_puts(b, "pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()"
                         " - pg_catalog.current_setting('pgviews_c.started')::timestamptz), ");
    else
        pgvc_buf_puts(b, "%s, ");
    if (rel) {
        pgvc_buf_puts(
            b, "(SELECT CASE WHEN pg_catalog.pg_relation_size(c.oid) <= %s AND c.relispopulated"
               " THEN (SELECT pg_catalog.count(*) FROM ");
        pgvc_buf_qualified(b, schema, rel);
        pgvc_buf_puts(b,
                      ") END FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass(%s))");
    } else {
        pgvc_buf_puts(b, "NULL");
    }
    pgvc_buf_puts(b, ", %s, %s, %s, %s, %s, ");
    pgvc_buf_puts(b, captured ? "NULLIF(pg_catalog.current_setting('pgviews_c.sources'), '')::jsonb"
                              : "%s::jsonb");
    pgvc_buf_puts(b, ")");
}

static void history_insert_head(pgvc_buf *b)
{
    pgvc_buf_puts(b, "WITH ins AS (INSERT INTO ");
    pgvc_buf_qualified(b, NULL, HISTORY_TABLE);
    pgvc_buf_puts(b, " (view, db_table, started_at, duration, rows, concurrent,"
                     " plain_reason, ok, sqlstate, message, sources) VALUES ");
}

/* history.py: one statement that inserts a refresh record (history_row's parameters) and drops
 * the records of that view beyond the newest `keep`: then view, view, keep - 1. The DELETE does
 * not see the new row (same snapshot), so it keeps keep - 1 older ones. */
static void history_insert(pgvc_buf *b, const char *schema, const char *rel, int captured)
{
    history_insert_head(b);
    history_row(b, schema, rel, captured);
    pgvc_buf_puts(b, " RETURNING id) DELETE FROM ");
    pgvc_buf_qualified(b, NULL, HISTORY_TABLE);
    pgvc_buf_puts(
        b, " WHERE view = %s AND id < ALL (SELECT id FROM ins) AND id NOT IN (SELECT id FROM ");
    pgvc_buf_qualified(b, NULL, HISTORY_TABLE);
    pgvc_buf_puts(b, " WHERE view = %s ORDER BY id DESC LIMIT %s)");
}

/* synchistory.py: the records of a sync's populations in one statement, one counted row per
 * relation of `tables` (db_tables; history_row's parameters each, in that order), then the
 * records of each of their views beyond the newest `keep` dropped as history_insert does: the
 * one parameter after the rows, keep - 1. RAISES_NEG (InvalidNameError, TypeError). */
static int history_insert_many(pgvc_state *st, pgvc_buf *b, PyObject *tables)
{
    PyObject *seq = NULL, *item;
    const char *table, *why = NULL;
    Py_ssize_t n, i, len = 0;
    char schema[PGVC_NAMEDATALEN], rel[PGVC_NAMEDATALEN], what[40];
    int rc = -1;

    if (PyUnicode_Check(tables) || PyBytes_Check(tables)) {
        PyErr_SetString(PyExc_TypeError,
                        "query_sql('history_insert_many'): tables must be a sequence of str");
        goto exit;
    }
    seq = PySequence_Fast(tables, "query_sql('history_insert_many'): tables must be a sequence");
    if (!seq)
        goto exit;
    n = PySequence_Fast_GET_SIZE(seq);
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError,
                        "query_sql('history_insert_many'): tables must name one relation or more");
        goto exit;
    }
    history_insert_head(b);
    for (i = 0; i < n; i++) {
        item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_Check(item)) {
            PyErr_Format(PyExc_TypeError,
                         "query_sql('history_insert_many'): tables[%zd] must be a str, not %.100s",
                         i, Py_TYPE(item)->tp_name);
            goto exit;
        }
        table = PyUnicode_AsUTF8AndSize(item, &len);
        if (!table)
            goto exit;
        snprintf(what, sizeof what, "tables[%zd]", i);
        if ((Py_ssize_t)strlen(table) != len) {
            pgvc_raise_invalid_name(st, what, table, len, "contains a NUL byte");
            goto exit;
        }
        if (pgvc_split_table(table, schema, sizeof schema, rel, sizeof rel, &why) < 0) {
            pgvc_raise_invalid_name(st, what, table, len, why);
            goto exit;
        }
        if (i > 0)
            pgvc_buf_puts(b, ", ");
        history_row(b, schema[0] ? schema : NULL, rel, 0);
    }
    pgvc_buf_puts(b, " RETURNING id, view) DELETE FROM ");
    pgvc_buf_qualified(b, NULL, HISTORY_TABLE);
    pgvc_buf_puts(b, " WHERE view IN (SELECT view FROM ins) AND id < ALL (SELECT id FROM ins)"
                     " AND id NOT IN (SELECT k.id FROM (SELECT DISTINCT view FROM ins) v,"
                     " LATERAL (SELECT id FROM ");
    pgvc_buf_qualified(b, NULL, HISTORY_TABLE);
    pgvc_buf_puts(b, " r WHERE r.view = v.view ORDER BY r.id DESC LIMIT %s) k)");
    rc = 0;
exit:
    Py_XDECREF(seq);
    return rc;
}

/* history.py: the newest successful and the newest failed record of each view in %s (text[]),
 * in one query (the index on (view, -id) serves it); the sources only for the successful one. */
static void history_latest(pgvc_buf *b)
{
    pgvc_buf_puts(
        b, "SELECT DISTINCT ON (view, ok) id, view, ok, started_at, duration, rows, concurrent,"
           " plain_reason, sqlstate, message, CASE WHEN ok THEN sources END FROM ");
    pgvc_buf_qualified(b, NULL, HISTORY_TABLE);
    pgvc_buf_puts(b, " WHERE view = ANY(%s) ORDER BY view, ok, id DESC");
}

/* history.py: oid, relfilenode and write counter of the relation %s after its refresh. */
static const char q_history_after[] =
    "SELECT c.oid::bigint, c.relfilenode::bigint, pg_catalog.pg_stat_get_tuples_inserted(c.oid)"
    " + pg_catalog.pg_stat_get_tuples_updated(c.oid) + pg_catalog.pg_stat_get_tuples_deleted(c.oid)"
    " FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass(%s)";

/* synchistory.py: before a sync's first statement that populates a materialized view, when the
 * history table is there: hold the statistics as they are now for the rest of the transaction
 * (stats_fetch_consistency = snapshot, PostgreSQL 15+; older servers always hold the first read),
 * the session's value kept in pgviews_c.stats_fetch, so that the sources captured after the
 * statements (their closure is known only once the views exist) carry the counters of before.
 * Its one row: whether the history table is there. */
static const char q_history_hold_stats[] =
    "DO $pgvc$ BEGIN\n"
    "  IF pg_catalog.to_regclass('" HISTORY_TABLE "') IS NOT NULL\n"
    "      AND pg_catalog.current_setting('stats_fetch_consistency', true) IS NOT NULL THEN\n"
    "    PERFORM pg_catalog.set_config('pgviews_c.stats_fetch',\n"
    "      pg_catalog.current_setting('stats_fetch_consistency'), true);\n"
    "    PERFORM pg_catalog.set_config('stats_fetch_consistency', 'snapshot', true);\n"
    "  END IF;\n"
    "END $pgvc$;\n"
    "SELECT pg_catalog.to_regclass('" HISTORY_TABLE "') IS NOT NULL"
    " FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()"
    " AND pg_catalog.pg_stat_get_db_stat_reset_time(d.oid) IS DISTINCT FROM 'infinity'";

/* historyfn.py: the schemas of the history table and of the exact mode's counter table (NULL where
 * one is missing), where migration 0004 puts the functions and what they read. */
static const char q_history_schemas[] =
    "SELECT (SELECT n.nspname::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
    " ON n.oid = c.relnamespace WHERE c.oid = pg_catalog.to_regclass('" HISTORY_TABLE "')),"
    " (SELECT n.nspname::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
    " ON n.oid = c.relnamespace WHERE c.oid = pg_catalog.to_regclass('" PGVC_EXACT_TABLE "'))";

/* synchistory.py: whether the history table is there (the app's migration 0001 ran here). */
static const char q_history_present[] =
    "SELECT pg_catalog.to_regclass('" HISTORY_TABLE "') IS NOT NULL";

/* synchistory.py: after the capture, stats_fetch_consistency back to the session's value (and
 * the snapshot with it). */
static const char q_history_release_stats[] =
    "SELECT pg_catalog.set_config('stats_fetch_consistency',"
    " pg_catalog.current_setting('pgviews_c.stats_fetch'), true)"
    " WHERE pg_catalog.current_setting('pgviews_c.stats_fetch', true) <> ''";

/* refresh.py: set lock_timeout to `ms` (the session's own when shorter) for this transaction
 * only, remembering the session's value for lock_restore. Ends with "; ". */
static void lock_guard(pgvc_buf *b, long long ms)
{
    char num[32];
    snprintf(num, sizeof num, "%lld", ms);
    pgvc_buf_puts(b, "SELECT pg_catalog.set_config('pgviews_c.lock_timeout', "
                     "pg_catalog.current_setting('lock_timeout'), true), pg_catalog.set_config("
                     "'lock_timeout', (CASE WHEN s.u > 0 AND s.u < ");
    pgvc_buf_puts(b, num);
    pgvc_buf_puts(b, " THEN s.u ELSE ");
    pgvc_buf_puts(b, num);
    pgvc_buf_puts(
        b, " END)::text || 'ms', true) FROM (SELECT (pg_catalog.date_part('epoch', "
           "pg_catalog.current_setting('lock_timeout')::interval) * 1000)::bigint AS u) s; ");
}

/* The drop_* statements (DROP [MATERIALIZED] VIEW IF EXISTS name [CASCADE]) are in the table
 * below: what clear_pgviews and the migration operations run. */

/* ---- by name ------------------------------------------------------------------------------------ */

enum query_kind {
    FIXED,
    HISTORY_INSERT,
    HISTORY_INSERT_COUNTED,
    HISTORY_INSERT_CAPTURED,
    HISTORY_INSERT_MANY,
    HISTORY_LATEST,
    LOCK_GUARD,
    DROP,
    CAPTURE,
    CAPTURE_EXACT,
    EXACT_STATE,
    EXACT_FUNCTION,
    EXACT_TRIGGER,
    EXACT_UNTRIGGER,
    EXACT_FORGET,
    EXACT_DROP_FUNCTION,
    HISTORY_FUNCTIONS,
    HISTORY_DROP_FUNCTIONS,
    HISTORY_RUN_FUNCTION,
    HISTORY_DROP_RUN_FUNCTION,
    HISTORY_REFRESH_FUNCTION,
    HISTORY_DROP_REFRESH_FUNCTION,
};

typedef struct {
    const char *name;
    enum query_kind kind;
    const char *text; /* FIXED: the text; DROP: what comes before the relation's name */
    const char *after; /* DROP: what comes after it */
} query_entry;

static const query_entry queries[] = {
    {"access_exclusive_relations", FIXED, q_access_exclusive_relations, NULL},
    {"capture", CAPTURE, NULL, NULL},
    {"capture_exact", CAPTURE_EXACT, NULL, NULL},
    {"clear_stats_snapshot", FIXED, q_clear_stats_snapshot, NULL},
    {"client_check", FIXED, q_client_check, NULL},
    {"current_schemas", FIXED, q_current_schemas, NULL},
    {"database_checks", FIXED, q_database_checks, NULL},
    {"drop_materialized_view", DROP, "DROP MATERIALIZED VIEW IF EXISTS ", ""},
    {"drop_materialized_view_cascade", DROP, "DROP MATERIALIZED VIEW IF EXISTS ", " CASCADE"},
    {"drop_view", DROP, "DROP VIEW IF EXISTS ", ""},
    {"drop_view_cascade", DROP, "DROP VIEW IF EXISTS ", " CASCADE"},
    {"exact_drop_function", EXACT_DROP_FUNCTION, NULL, NULL},
    {"exact_forget", EXACT_FORGET, NULL, NULL},
    {"exact_function", EXACT_FUNCTION, NULL, NULL},
    {"exact_state", EXACT_STATE, NULL, NULL},
    {"exact_trigger", EXACT_TRIGGER, NULL, NULL},
    {"exact_untrigger", EXACT_UNTRIGGER, NULL, NULL},
    {"history_after", FIXED, q_history_after, NULL},
    {"history_capture_call", FIXED, pgvc_history_capture_call, NULL},
    {"history_drop_functions", HISTORY_DROP_FUNCTIONS, NULL, NULL},
    {"history_drop_refresh_function", HISTORY_DROP_REFRESH_FUNCTION, NULL, NULL},
    {"history_drop_run_function", HISTORY_DROP_RUN_FUNCTION, NULL, NULL},
    {"history_functions", HISTORY_FUNCTIONS, NULL, NULL},
    {"history_hold_stats", FIXED, q_history_hold_stats, NULL},
    {"history_insert", HISTORY_INSERT, NULL, NULL},
    {"history_insert_captured", HISTORY_INSERT_CAPTURED, NULL, NULL},
    {"history_insert_counted", HISTORY_INSERT_COUNTED, NULL, NULL},
    {"history_insert_many", HISTORY_INSERT_MANY, NULL, NULL},
    {"history_latest", HISTORY_LATEST, NULL, NULL},
    {"history_present", FIXED, q_history_present, NULL},
    {"history_record_call", FIXED, pgvc_history_record_call, NULL},
    {"history_record_run_call", FIXED, pgvc_history_record_run_call, NULL},
    {"history_refresh_call", FIXED, pgvc_history_refresh_call, NULL},
    {"history_refresh_function", HISTORY_REFRESH_FUNCTION, NULL, NULL},
    {"history_release_stats", FIXED, q_history_release_stats, NULL},
    {"history_run_function", HISTORY_RUN_FUNCTION, NULL, NULL},
    {"history_schemas", FIXED, q_history_schemas, NULL},
    {"lock_guard", LOCK_GUARD, NULL, NULL},
    {"lock_holders", FIXED, q_lock_holders, NULL},
    {"lock_restore", FIXED, q_lock_restore, NULL},
    {"owner_privileges", FIXED, q_owner_privileges, NULL},
    {"owner_privileges_pg17", FIXED, q_owner_privileges_pg17, NULL},
    {"refresher_lock_take", FIXED, q_refresher_lock_take, NULL},
    {"session_timeouts", FIXED, q_session_timeouts, NULL},
    {"status_sizes", FIXED, q_status_sizes, NULL},
    {"sync_sizes", FIXED, q_sync_sizes, NULL},
};
#define N_QUERIES (sizeof queries / sizeof queries[0])

PyObject *pgvc_query_names(void)
{
    PyObject *out = PyTuple_New((Py_ssize_t)N_QUERIES), *name = NULL;
    size_t i;
    if (!out)
        return NULL;
    for (i = 0; i < N_QUERIES; i++) {
        name = PyUnicode_FromString(queries[i].name);
        if (!name) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, (Py_ssize_t)i, name);
    }
    return out;
}

/* The arguments of one query_sql() call, checked against what its query takes. */
typedef struct {
    PyObject *name_obj, *ms_obj, *tables;
    const char *table, *schema_arg;
    Py_ssize_t table_len, schema_len;
    long long ms;
    char schema[PGVC_NAMEDATALEN], rel[PGVC_NAMEDATALEN];
    pgvc_buf quoted; /* the table, quoted and qualified */
} query_args;

/* The entry named name_obj (a str), or NULL with ValueError. */
static const query_entry *find_query(PyObject *name_obj)
{
    Py_ssize_t name_len = 0;
    const char *name = PyUnicode_AsUTF8AndSize(name_obj, &name_len);
    if (!name)
        return NULL;
    for (size_t i = 0; i < N_QUERIES; i++)
        if ((Py_ssize_t)strlen(queries[i].name) == name_len && strcmp(queries[i].name, name) == 0)
            return &queries[i];
    PyErr_Format(PyExc_ValueError, "query_sql: no query named %R (known: see query_names())",
                 name_obj);
    return NULL;
}

static int takes_table(enum query_kind kind)
{
    return kind == HISTORY_INSERT_COUNTED || kind == HISTORY_INSERT_CAPTURED || kind == DROP ||
           kind == EXACT_TRIGGER || kind == EXACT_UNTRIGGER || kind == HISTORY_FUNCTIONS ||
           kind == HISTORY_REFRESH_FUNCTION;
}

static int takes_schema(enum query_kind kind)
{
    return kind == EXACT_FUNCTION || kind == EXACT_TRIGGER || kind == EXACT_FORGET ||
           kind == EXACT_DROP_FUNCTION || kind == HISTORY_FUNCTIONS ||
           kind == HISTORY_DROP_FUNCTIONS || kind == HISTORY_RUN_FUNCTION ||
           kind == HISTORY_DROP_RUN_FUNCTION || kind == HISTORY_REFRESH_FUNCTION ||
           kind == HISTORY_DROP_REFRESH_FUNCTION;
}

/* RAISES_NEG: schema, tables and table given exactly when the query takes them. */
static int check_names_given(pgvc_state *st, const query_entry *q, const query_args *a)
{
    int schema = takes_schema(q->kind), table = takes_table(q->kind);
    if (schema && !a->schema_arg) {
        PyErr_Format(PyExc_ValueError, "query_sql(%R): needs schema, the counter table's",
                     a->name_obj);
        return -1;
    }
    if (!schema && a->schema_arg) {
        PyErr_Format(PyExc_ValueError, "query_sql(%R): takes no schema", a->name_obj);
        return -1;
    }
    if (a->schema_arg && (Py_ssize_t)strlen(a->schema_arg) != a->schema_len) {
        pgvc_raise_invalid_name(st, "schema", a->schema_arg, a->schema_len, "contains a NUL byte");
        return -1;
    }
    if ((q->kind == HISTORY_INSERT_MANY) != (a->tables != Py_None)) {
        PyErr_Format(PyExc_ValueError,
                     a->tables == Py_None ? "query_sql(%R): needs tables, the relations it counts"
                                          : "query_sql(%R): takes no tables",
                     a->name_obj);
        return -1;
    }
    if (table && !a->table) {
        PyErr_Format(PyExc_ValueError, "query_sql(%R): needs table, the relation it names",
                     a->name_obj);
        return -1;
    }
    if (!table && a->table) {
        PyErr_Format(PyExc_ValueError, "query_sql(%R): takes no table", a->name_obj);
        return -1;
    }
    return 0;
}

/* RAISES_NEG: a->ms from ms, an int in [0, INT_MAX], given exactly when the query is lock_guard. */
static int check_ms(const query_entry *q, query_args *a)
{
    int overflow = 0;
    if (q->kind != LOCK_GUARD) {
        if (a->ms_obj == Py_None)
            return 0;
        PyErr_Format(PyExc_ValueError, "query_sql(%R): takes no ms", a->name_obj);
        return -1;
    }
    if (a->ms_obj == Py_None || !PyLong_Check(a->ms_obj) || PyBool_Check(a->ms_obj)) {
        PyErr_Format(PyExc_ValueError, "query_sql(%R): needs ms, an int (milliseconds)",
                     a->name_obj);
        return -1;
    }
    a->ms = PyLong_AsLongLongAndOverflow(a->ms_obj, &overflow);
    if (a->ms == -1 && PyErr_Occurred())
        return -1;
    if (overflow || a->ms < 0 || a->ms > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "query_sql(%R): ms must be between 0 and %d, not %R",
                     a->name_obj, INT_MAX, a->ms_obj);
        return -1;
    }
    return 0;
}

/* RAISES_NEG: a->schema, a->rel and a->quoted from a->table. */
static int quote_table(pgvc_state *st, query_args *a)
{
    const char *why = NULL;
    if ((Py_ssize_t)strlen(a->table) != a->table_len) {
        pgvc_raise_invalid_name(st, "table", a->table, a->table_len, "contains a NUL byte");
        return -1;
    }
    if (pgvc_split_table(a->table, a->schema, sizeof a->schema, a->rel, sizeof a->rel, &why) < 0) {
        pgvc_raise_invalid_name(st, "table", a->table, a->table_len, why);
        return -1;
    }
    pgvc_buf_qualified(&a->quoted, a->schema[0] ? a->schema : NULL, a->rel);
    if (a->quoted.oom) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* RAISES_NEG: the text of query q into b. */
static int write_query(pgvc_state *st, const query_entry *q, const query_args *a, pgvc_buf *b)
{
    const char *schema = a->schema[0] ? a->schema : NULL, *quoted = a->quoted.data;
    switch (q->kind) {
    case FIXED: pgvc_buf_puts(b, q->text); break;
    case DROP:
        pgvc_buf_puts(b, q->text);
        pgvc_buf_puts(b, quoted);
        pgvc_buf_puts(b, q->after);
        break;
    case HISTORY_INSERT: history_insert(b, NULL, NULL, 0); break;
    case HISTORY_INSERT_COUNTED: history_insert(b, schema, a->rel, 0); break;
    case HISTORY_INSERT_CAPTURED: history_insert(b, schema, a->rel, 1); break;
    case HISTORY_INSERT_MANY: return history_insert_many(st, b, a->tables);
    case CAPTURE: pgvc_capture_query(b, 0); break;
    case CAPTURE_EXACT: pgvc_capture_query(b, 1); break;
    case EXACT_STATE: pgvc_exact_state(b); break;
    case EXACT_FUNCTION: return pgvc_exact_function(b, a->schema_arg);
    case EXACT_TRIGGER: pgvc_exact_trigger(b, quoted, a->schema_arg); break;
    case EXACT_UNTRIGGER: pgvc_exact_untrigger(b, quoted); break;
    case EXACT_FORGET: pgvc_exact_forget(b, a->schema_arg); break;
    case EXACT_DROP_FUNCTION: pgvc_exact_drop_function(b, a->schema_arg); break;
    case HISTORY_FUNCTIONS: pgvc_history_functions(b, a->schema_arg, quoted); break;
    case HISTORY_DROP_FUNCTIONS: pgvc_history_drop_functions(b, a->schema_arg); break;
    case HISTORY_RUN_FUNCTION: pgvc_history_run_function(b, a->schema_arg); break;
    case HISTORY_DROP_RUN_FUNCTION: pgvc_history_drop_run_function(b, a->schema_arg); break;
    case HISTORY_REFRESH_FUNCTION: pgvc_history_refresh_function(b, a->schema_arg, quoted); break;
    case HISTORY_DROP_REFRESH_FUNCTION: pgvc_history_drop_refresh_function(b, a->schema_arg); break;
    case HISTORY_LATEST: history_latest(b); break;
    case LOCK_GUARD: lock_guard(b, a->ms); break;
    }
    return 0;
}

PyObject *pgvc_query_sql(pgvc_state *st, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"name", "table", "ms", "schema", "tables", NULL};
    PyObject *out = NULL;
    const query_entry *q = NULL;
    query_args a;
    pgvc_buf b;

    memset(&a, 0, sizeof a);
    a.ms_obj = a.tables = Py_None;
    pgvc_buf_init(&b);
    pgvc_buf_init(&a.quoted);
    if (pgvc_check_text_args("query_sql", args, kwargs, kwlist, 1) < 0 ||
        !PyArg_ParseTupleAndKeywords(args, kwargs, "U|z#Oz#O:query_sql", kwlist, &a.name_obj,
                                     &a.table, &a.table_len, &a.ms_obj, &a.schema_arg,
                                     &a.schema_len, &a.tables))
        goto exit;
    if (!(q = find_query(a.name_obj)) || check_names_given(st, q, &a) < 0 || check_ms(q, &a) < 0)
        goto exit;
    if (takes_table(q->kind) && quote_table(st, &a) < 0)
        goto exit;
    if (write_query(st, q, &a, &b) >= 0)
        out = pgvc_buf_to_str(&b);
exit:
    pgvc_buf_free(&a.quoted);
    pgvc_buf_free(&b);
    return out;
}
