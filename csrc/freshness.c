/* freshness.c: the one catalog query staleness is judged from (django_pgviews_c/freshness.py).
 *
 * The closure follows each materialized view's _RETURN rule through pg_depend to the relations
 * it reads, through plain views (their own rules) and down inheritance and partitions
 * (pg_inherits), and stops at tables, foreign tables and other materialized views. The write
 * counter is n_tup_ins + n_tup_upd + n_tup_del of the cumulative statistics; NULL where there is
 * none to judge by (foreign tables, track_counts off): the caller counts that as stale. */
#include "freshness.h"

static const char freshness_sql[] =
    "WITH RECURSIVE views(n, oid) AS ("
    " SELECT u.n::int, pg_catalog.to_regclass(u.t)"
    " FROM pg_catalog.unnest(%s::text[]) WITH ORDINALITY AS u(t, n)"
    "), reads(n, rel) AS ("
    " SELECT v.n, d.refobjid FROM views v"
    " JOIN pg_catalog.pg_rewrite r ON r.ev_class = v.oid"
    " JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
    "  AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
    "  AND d.refobjid <> v.oid"
    " UNION"
    " SELECT reads.n, x.rel FROM reads"
    " JOIN pg_catalog.pg_class c ON c.oid = reads.rel"
    " CROSS JOIN LATERAL ("
    "  SELECT d.refobjid FROM pg_catalog.pg_rewrite r"
    "  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
    "   AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
    "   AND d.refobjid <> c.oid"
    "  WHERE c.relkind = 'v' AND r.ev_class = c.oid"
    "  UNION ALL"
    "  SELECT i.inhrelid FROM pg_catalog.pg_inherits i"
    "  WHERE c.relkind IN ('r', 'p', 'f') AND i.inhparent = c.oid"
    " ) AS x(rel)"
    "), counts AS ("
    " SELECT pg_catalog.current_setting('track_counts')::bool AS on_"
    ")"
    " SELECT v.n, v.oid::bigint, NULL::text, 'self', NULL::bigint, NULL::bigint,"
    "  c.relispopulated, pg_catalog.pg_stat_get_db_stat_reset_time(d.oid)"
    " FROM views v JOIN pg_catalog.pg_class c ON c.oid = v.oid AND c.relkind = 'm'"
    " JOIN pg_catalog.pg_database d ON d.datname = pg_catalog.current_database()"
    " UNION ALL"
    " SELECT r.n, c.oid::bigint, c.oid::pg_catalog.regclass::text, c.relkind::text,"
    "  c.relfilenode::bigint,"
    "  CASE WHEN c.relkind IN ('r', 'p', 'm') AND k.on_ THEN"
    "   pg_catalog.pg_stat_get_tuples_inserted(c.oid) + pg_catalog.pg_stat_get_tuples_updated(c.oid)"
    "   + pg_catalog.pg_stat_get_tuples_deleted(c.oid) END,"
    "  NULL::bool, NULL::timestamptz"
    " FROM reads r JOIN pg_catalog.pg_class c ON c.oid = r.rel CROSS JOIN counts k"
    " WHERE c.relkind IN ('r', 'p', 'f', 'm')";

PyObject *pgvc_freshness_sql(void) { return PyUnicode_FromString(freshness_sql); }
