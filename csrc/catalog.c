/* catalog.c: the one catalog query the planner reads. */
#include "plan.h"

#include "exact.h"

/* Parameters (pyformat): decl_schemas text[] (NULL: current schema), decl_names text[],
 * schemas text[] (explicit schemas), restore bool. One row per view or materialized view in the
 * schemas that matter, per relation named by a declaration, and per object that depends on any
 * of them (recursively, through pg_depend); then one row per existing schema. Nothing in it
 * scales with more than the objects it returns: pg_get_viewdef() runs only for rows whose rewrite
 * rule changed since our stamp, and for dependants we may have to restore. Each returned
 * relation's dependant rules and indexes are looked up by its oid (pg_index's index on indrelid; grouped over the
 * whole of pg_index, the query read every index of the database), and the exact mode's triggers
 * from its function (exact.h). What reads a whole catalog is the view list itself: every view
 * and materialized view of the schemas that matter, for which pg_class offers no index (by kind
 * or by schema alone), and pg_rewrite, which holds a row per view and rule, none per table. Last, one row of
 * relkind 'T' per table carrying the exact mode's trigger (exact.c), for the sync to see without
 * another query that it has triggers to remove; read_catalog() takes those rows out before the
 * planner reads the rest. */
/* The rewrite rules that read the relation `rel` (an SQL expression), looked up by pg_depend's
 * index on the referenced object; OFFSET 0 keeps the planner from flattening the lookup into a
 * join that reads every rule dependency of the database (it did, once the schemas held a few
 * hundred views). */
#define DEPENDANT_RULES(rel)                                                                       \
    "SELECT d.objid, d.refobjid FROM pg_catalog.pg_depend d "                                      \
    "WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = " rel " "               \
    "AND d.classid = 'pg_catalog.pg_rewrite'::regclass OFFSET 0"

static const char catalog_sql[] =
    "WITH RECURSIVE\n"
    "decl AS (\n"
    "  SELECT coalesce(u.s, pg_catalog.current_schema()::text) AS nspname, u.r AS relname\n"
    "  FROM ROWS FROM (pg_catalog.unnest(%(decl_schemas)s::text[]),"
    " pg_catalog.unnest(%(decl_names)s::text[])) AS u(s, r)\n"
    "),\n"
    "base AS (\n"
    "  SELECT c.oid FROM pg_catalog.pg_class c\n"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
    "  WHERE c.relkind IN ('v', 'm')\n"
    "    AND (n.nspname = pg_catalog.current_schema() OR n.nspname = ANY(%(schemas)s::text[]))\n"
    "  UNION\n"
    "  SELECT c.oid FROM decl d\n"
    "  JOIN pg_catalog.pg_namespace n ON n.nspname = d.nspname\n"
    "  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = d.relname\n"
    "),\n"
    "edge(dependant, referenced) AS (\n"
    "  SELECT w.ev_class, d.refobjid\n"
    "  FROM base b CROSS JOIN LATERAL (" DEPENDANT_RULES(
        "b.oid") ") d\n"
                 "  JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid\n"
                 "  WHERE w.ev_class <> d.refobjid\n"
                 "  UNION\n"
                 "  SELECT w.ev_class, d.refobjid\n"
                 "  FROM edge e CROSS JOIN LATERAL (" DEPENDANT_RULES(
                     "e.dependant") ") d\n"
                                    "  JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid\n"
                                    "  WHERE w.ev_class <> d.refobjid\n"
                                    "),\n"
                                    "node AS (SELECT oid FROM base UNION SELECT dependant FROM "
                                    "edge),\n"
                                    "refs AS (\n"
                                    "  SELECT dependant, pg_catalog.array_agg(DISTINCT referenced) "
                                    "AS r FROM edge GROUP BY "
                                    "dependant\n"
                                    ")\n"
                                    "SELECT c.oid::bigint, n.nspname::text, c.relname::text, "
                                    "c.relkind::text, ds.description,\n"
                                    "  c.relispopulated, ts.spcname::text, w.xmin::text,\n"
                                    "  CASE WHEN ds.description LIKE '%%" PGVC_MARK " %%'\n"
                                    "        AND position(' rw=' || w.xmin::text || ' ' IN "
                                    "ds.description) = 0\n"
                                    "       THEN pg_catalog.md5(pg_catalog.pg_get_viewdef(c.oid)) "
                                    "END,\n"
                                    "  pg_catalog.pg_get_userbyid(c.relowner)::text, "
                                    "c.relacl::text[],\n"
                                    "  coalesce(idx.names, '{}'), coalesce(refs.r::bigint[], "
                                    "'{}'),\n"
                                    "  CASE WHEN %(restore)s AND c.oid IN (SELECT dependant FROM "
                                    "edge)\n"
                                    "        AND (n.nspname::text, c.relname::text) NOT IN (SELECT "
                                    "nspname, relname FROM decl)\n"
                                    "       THEN pg_catalog.pg_get_viewdef(c.oid) END,\n"
                                    "  CASE WHEN %(restore)s THEN idx.defs END,\n"
                                    "  pg_catalog.current_schema()::text,\n"
                                    "  col.names, col.types\n"
                                    "FROM node JOIN pg_catalog.pg_class c ON c.oid = node.oid\n"
                                    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
                                    "LEFT JOIN pg_catalog.pg_description ds ON ds.objoid = c.oid\n"
                                    "  AND ds.classoid = 'pg_catalog.pg_class'::regclass AND "
                                    "ds.objsubid = 0\n"
                                    "LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = "
                                    "c.reltablespace\n"
                                    "LEFT JOIN pg_catalog.pg_rewrite w ON w.ev_class = c.oid AND "
                                    "w.rulename = '_RETURN'\n"
                                    "LEFT JOIN refs ON refs.dependant = c.oid\n"
                                    "LEFT JOIN LATERAL (\n"
                                    "  SELECT pg_catalog.array_agg(i.relname::text ORDER BY "
                                    "i.relname) AS names,\n"
                                    "    pg_catalog.array_agg(CASE WHEN %(restore)s THEN "
                                    "pg_catalog.pg_get_indexdef(x.indexrelid) "
                                    "END\n"
                                    "              ORDER BY i.relname) AS defs\n"
                                    "  FROM pg_catalog.pg_index x\n"
                                    "  CROSS JOIN LATERAL (SELECT i.relname FROM "
                                    "pg_catalog.pg_class i WHERE i.oid = x.indexrelid"
                                    " OFFSET 0) i\n"
                                    "  WHERE x.indrelid = c.oid\n"
                                    ") idx ON true\n"
                                    "LEFT JOIN LATERAL (\n"
                                    "  SELECT pg_catalog.array_agg(a.attname::text ORDER BY "
                                    "a.attnum) AS names,\n"
                                    "    pg_catalog.array_agg(pg_catalog.format_type(a.atttypid, "
                                    "a.atttypmod) ORDER BY a.attnum) "
                                    "AS types\n"
                                    "  FROM pg_catalog.pg_attribute a\n"
                                    "  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT "
                                    "a.attisdropped\n"
                                    ") col ON true\n"
                                    "UNION ALL\n"
                                    "SELECT NULL, n.nspname::text, NULL, 'S', NULL, NULL, NULL, "
                                    "NULL, NULL, NULL, NULL, NULL,\n"
                                    "  NULL, NULL, NULL, pg_catalog.current_schema()::text, NULL, "
                                    "NULL\n"
                                    "FROM pg_catalog.pg_namespace n\n"
                                    "WHERE n.nspname = pg_catalog.current_schema() OR n.nspname = "
                                    "ANY(%(schemas)s::text[])\n"
                                    "UNION ALL\n"
                                    "SELECT t.rel::bigint, NULL, NULL, 'T', NULL, NULL, NULL, "
                                    "NULL, NULL, NULL, NULL, NULL,\n"
                                    "  NULL, NULL, NULL, NULL, NULL, NULL\n"
                                    "FROM (" PGVC_EXACT_TRIGGERED ") t\n";

PyObject *pgvc_catalog_sql(void) { return PyUnicode_FromString(catalog_sql); }
