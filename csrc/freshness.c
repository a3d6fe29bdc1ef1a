/* freshness.c: the one catalog query staleness is judged from (django_pgviews_c/freshness.py),
 * and the capture a recorded Model.refresh() runs in the round trip of its REFRESH.
 *
 * The closure follows each materialized view's _RETURN rule through pg_depend to the relations
 * it reads, through plain views (their own rules) and down inheritance and partitions
 * (pg_inherits), and stops at tables, foreign tables and other materialized views. The write
 * counter is n_tup_ins + n_tup_upd + n_tup_del of the cumulative statistics; NULL where there is
 * none to judge by (foreign tables, track_counts off): the caller counts that as stale.
 *
 * With `exact`, each table also carries the oid of the exact mode's trigger on it (exact.c:
 * enabled, calling our function; NULL without one) and its committed statement count from the
 * counter table; that variant reads the counter table, so it is asked for only when some view
 * is in exact mode (the table exists once the app's migration 0003 ran). stats_reset is the
 * epoch as text, so that the capture written by the server and the one read by Python compare
 * as equal strings. */
#include "freshness.h"

#include "exact.h"

/* views(n, oid) and reads(n, rel): the closure of the views named by %s (text[]). Shared with
 * exact.c, whose sync reads the same closure. Each catalog row is looked up by its index, in a
 * LATERAL subquery that OFFSET 0 keeps from being flattened: joined, the planner (the capture
 * function's generic plan above all) hashed all of pg_class and pg_rewrite at each level of the
 * closure, a cost that grew with every relation of the database (tests/test_catalog_plans.py). */
#define CLOSURE_VIEWS                                                                              \
    "WITH RECURSIVE views(n, oid) AS ("                                                            \
    " SELECT u.n::int, pg_catalog.to_regclass(u.t)"                                                \
    " FROM pg_catalog.unnest(%s::text[]) WITH ORDINALITY AS u(t, n)"
/* The same, in the capture function (historyfn.c): its one view, the argument p_view. */
#define CLOSURE_VIEWS_FN "WITH RECURSIVE views(n, oid) AS (SELECT 1, p_view"
#define CLOSURE_READS                                                                              \
    "), reads(n, rel) AS ("                                                                        \
    " SELECT v.n, d.refobjid FROM views v"                                                         \
    " CROSS JOIN LATERAL (SELECT r.oid FROM pg_catalog.pg_rewrite r WHERE r.ev_class = v.oid"      \
    "  OFFSET 0) AS r"                                                                             \
    " JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"     \
    "  AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"          \
    "  AND d.refobjid <> v.oid"                                                                    \
    " UNION"                                                                                       \
    " SELECT reads.n, x.rel FROM reads"                                                            \
    " CROSS JOIN LATERAL (SELECT c.oid, c.relkind FROM pg_catalog.pg_class c"                      \
    "  WHERE c.oid = reads.rel OFFSET 0) AS c"                                                     \
    " CROSS JOIN LATERAL ("                                                                        \
    "  SELECT d.refobjid FROM pg_catalog.pg_rewrite r"                                             \
    "  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"    \
    "   AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"         \
    "   AND d.refobjid <> c.oid"                                                                   \
    "  WHERE c.relkind = 'v' AND r.ev_class = c.oid"                                               \
    "  UNION ALL"                                                                                  \
    "  SELECT i.inhrelid FROM pg_catalog.pg_inherits i"                                            \
    "  WHERE c.relkind IN ('r', 'p', 'f') AND i.inhparent = c.oid"                                 \
    " ) AS x(rel)"                                                                                 \
    ")"
const char pgvc_closure_cte[] = CLOSURE_VIEWS CLOSURE_READS;
/* The closure of a view whose direct reads are neither plain views nor parents of inheritance
 * or partitions: those reads themselves, found by the caller (historyfn.c's refresh capture) in
 * the array v_direct. No recursion, so a plan a fraction of the size. */
#define CLOSURE_DIRECT_FN                                                                          \
    "WITH views(n, oid) AS (SELECT 1, p_view), reads(n, rel) AS ("                                 \
    " SELECT 1, u.rel FROM pg_catalog.unnest(v_direct) AS u(rel))"

/* rows(n, oid, name, relkind, relfilenode, counter, populated, stats_reset, trig, writes).
 * The view's own row ('self') carries the transaction's isolation level as its name: a capture
 * taken inside a REPEATABLE READ or SERIALIZABLE transaction may come after the snapshot the
 * transaction's REFRESH reads (freshness.ViewState.isolation). Its relfilenode and counter are
 * the database's identity, its oid and its cluster's system identifier: a database restored
 * from a dump has another, even where a new cluster gives its relations the oids (and
 * relfilenodes) the recorded sources are keyed by (freshness.ViewState.database).
 * `fn`: the text of the capture function (historyfn.c) instead of the client's (2: the closure is
 * the direct reads in v_direct, CLOSURE_DIRECT_FN): its view is the
 * argument p_view, the names are written as the caller's search_path (the argument p_path,
 * current_schemas(true) at the call) would show them, since the function runs with its own,
 * and the counter table is `counter_table` (quoted; NULL: its bare name). */
static void rows_cte(pgvc_buf *b, int exact, int fn, const char *counter_table)
{
    pgvc_buf_puts(b, fn == 2   ? CLOSURE_DIRECT_FN
                     : fn == 1 ? CLOSURE_VIEWS_FN CLOSURE_READS
                               : pgvc_closure_cte);
    pgvc_buf_puts(
        b,
        ", counts AS ("
        " SELECT pg_catalog.current_setting('track_counts')::bool AS on_"
        "), rows(n, oid, name, relkind, relfilenode, counter, populated, stats_reset, trig, writes)"
        " AS ("
        " SELECT v.n, v.oid::bigint, pg_catalog.current_setting('transaction_isolation'), 'self',"
        "  d.oid::bigint, (SELECT i.system_identifier FROM pg_catalog.pg_control_system() i),"
        "  c.relispopulated,"
        "  pg_catalog.date_part('epoch', pg_catalog.pg_stat_get_db_stat_reset_time(d.oid))::text,"
        "  NULL::bigint, NULL::bigint"
        " FROM views v CROSS JOIN LATERAL (SELECT c.relispopulated FROM pg_catalog.pg_class c"
        "  WHERE c.oid = v.oid AND c.relkind = 'm' OFFSET 0) AS c"
        " JOIN pg_catalog.pg_database d ON d.datname = pg_catalog.current_database()"
        " UNION ALL"
        " SELECT r.n, c.oid::bigint, ");
    if (fn) /* regclassout's rule: the bare name when the path finds this relation by it */
        pgvc_buf_puts(
            b, "CASE WHEN c.relnamespace = (SELECT o.relnamespace"
               " FROM pg_catalog.unnest(p_path) WITH ORDINALITY AS p(nsp, i)"
               " JOIN pg_catalog.pg_namespace k ON k.nspname = p.nsp"
               " JOIN pg_catalog.pg_class o ON o.relnamespace = k.oid AND o.relname = c.relname"
               " ORDER BY p.i LIMIT 1) THEN pg_catalog.quote_ident(c.relname) ELSE"
               " (SELECT pg_catalog.quote_ident(k.nspname) FROM pg_catalog.pg_namespace k"
               " WHERE k.oid = c.relnamespace) || '.' || pg_catalog.quote_ident(c.relname) END,");
    else
        pgvc_buf_puts(b, "c.oid::pg_catalog.regclass::text,");
    pgvc_buf_puts(b, " c.relkind::text,"
                     "  c.relfilenode::bigint,"
                     "  CASE WHEN c.relkind IN ('r', 'p', 'm') AND k.on_ THEN"
                     "   pg_catalog.pg_stat_get_tuples_inserted(c.oid) + "
                     "pg_catalog.pg_stat_get_tuples_updated(c.oid)"
                     "   + pg_catalog.pg_stat_get_tuples_deleted(c.oid) END,"
                     "  NULL::bool, NULL::text,");
    if (exact) {
        pgvc_buf_puts(
            b, " t.oid::bigint, CASE WHEN t.oid IS NOT NULL THEN coalesce((SELECT e.writes FROM ");
        if (counter_table)
            pgvc_buf_puts(b, counter_table);
        else
            pgvc_buf_qualified(b, NULL, PGVC_EXACT_TABLE);
        pgvc_buf_puts(b, " e WHERE e.rel = c.oid::bigint), 0) END");
    } else {
        pgvc_buf_puts(b, " NULL::bigint, NULL::bigint");
    }
    pgvc_buf_puts(b, " FROM reads r CROSS JOIN LATERAL (SELECT c.oid, c.relname, c.relnamespace,"
                     " c.relkind, c.relfilenode FROM pg_catalog.pg_class c WHERE c.oid = r.rel"
                     " OFFSET 0) AS c CROSS JOIN counts k");
    if (exact)
        pgvc_exact_trigger_join(b, "c");
    pgvc_buf_puts(b, " WHERE c.relkind IN ('r', 'p', 'f', 'm'))");
}

/* The JSON form a record keeps of the rows above, as text (NULL when the view does not exist),
 * with the isolation level when the transaction's is not READ COMMITTED (a one-trip refresh
 * begins its own as READ COMMITTED: history.py). */
static void sources_json(pgvc_buf *b)
{
    pgvc_buf_puts(
        b, "(SELECT (pg_catalog.jsonb_build_object('populated', s.populated, 'stats_reset',"
           " s.stats_reset, 'database', pg_catalog.jsonb_build_array(s.relfilenode, s.counter),"
           " 'rels', coalesce((SELECT pg_catalog.jsonb_object_agg(x.oid::text,"
           " CASE WHEN x.trig IS NULL"
           " THEN pg_catalog.jsonb_build_array(x.relfilenode, x.counter, x.relkind, x.name) ELSE"
           " pg_catalog.jsonb_build_array(x.relfilenode, x.counter, x.relkind, x.name,"
           " pg_catalog.jsonb_build_array(x.trig, x.writes)) END) FROM rows x"
           " WHERE x.relkind <> 'self'), '{}'::jsonb)) || CASE WHEN s.name IN ('read committed',"
           " 'read uncommitted') THEN '{}'::jsonb ELSE pg_catalog.jsonb_build_object('isolation',"
           " s.name) END)::text FROM rows s WHERE s.relkind = 'self')");
}

void pgvc_capture_function_query(pgvc_buf *b, int exact, const char *counter_table)
{
    rows_cte(b, exact, 1, counter_table);
    pgvc_buf_puts(b, " SELECT ");
    sources_json(b);
}

void pgvc_capture_direct_query(pgvc_buf *b, int exact, const char *counter_table)
{
    rows_cte(b, exact, 2, counter_table);
    pgvc_buf_puts(b, " SELECT ");
    sources_json(b);
}

void pgvc_freshness_query(pgvc_buf *b, int exact)
{
    rows_cte(b, exact, 0, NULL);
    pgvc_buf_puts(b, " SELECT * FROM rows");
}

/* The capture of one view (%s: a text[] of its one name; three statements), kept for the rest of the transaction
 * in two settings a later statement of the same round trip reads (history_insert_captured):
 * pgviews_c.sources, the JSON form a record keeps (freshness.ViewState.snapshot; empty when the
 * view does not exist), and pgviews_c.started, the clock when it was taken. */
void pgvc_capture_query(pgvc_buf *b, int exact)
{
    /* JIT off for the closure only (its estimate crosses jit_above_cost, compiling takes longer
     * than the query), the transaction's own value back for the REFRESH that follows. */
    pgvc_buf_puts(b,
                  "SELECT pg_catalog.set_config('pgviews_c.jit', pg_catalog.current_setting('jit'),"
                  " true), pg_catalog.set_config('jit', 'off', true); ");
    rows_cte(b, exact, 0, NULL);
    pgvc_buf_puts(b, " SELECT pg_catalog.set_config('pgviews_c.sources', coalesce(");
    sources_json(b);
    pgvc_buf_puts(
        b,
        ", ''), true),"
        " pg_catalog.set_config('pgviews_c.started', pg_catalog.clock_timestamp()::text, true);"
        " SELECT pg_catalog.set_config('jit', pg_catalog.current_setting('pgviews_c.jit'), true)");
}

PyObject *pgvc_freshness_sql(PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"exact", NULL};
    int exact = 0;
    PyObject *out = NULL;
    pgvc_buf b;

    pgvc_buf_init(&b);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p:freshness_sql", kwlist, &exact))
        goto exit;
    pgvc_freshness_query(&b, exact);
    out = pgvc_buf_to_str(&b);
exit:
    pgvc_buf_free(&b);
    return out;
}
