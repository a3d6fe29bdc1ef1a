/* pqlocks.h: the queries the refresh loop (pqpath.c) and Model.refresh() (through
 * _core.lock_holders_sql()) ask about the locks a statement on a view waits for: who holds them,
 * and whether one of them is an autovacuum worker. */
#ifndef PGVC_PQLOCKS_H
#define PGVC_PQLOCKS_H

/* A relation's oid is unique in its database only (a database made from a template shares them). */
#define THIS_DATABASE                                                                              \
    "AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d "                                \
    "WHERE d.datname = pg_catalog.current_database()) "

/* The sessions holding a lock that a statement on a view waits for (the view's name the one
 * parameter): any granted lock on the view itself, and ACCESS EXCLUSIVE (the one mode that blocks
 * ACCESS SHARE) on a relation its query reads, directly or through plain views (a materialized
 * view it reads is read as it is, not its sources). A request for ACCESS EXCLUSIVE there that is
 * only queued blocks the statement as well (its ACCESS SHARE queues behind it): such a session is
 * named with the sessions it waits behind (pg_blocking_pids) and their granted locks on that
 * relation. Each row: pid, application_name, state, start of the query, backend_type (what names
 * a holder without an application_name, such as an autovacuum worker), the lock's mode, the
 * relation it is on, whether it is granted, and for a queued request the pids it waits behind
 * (comma-separated). */
#define LOCK_HOLDERS_SQL(param)                                                                    \
    "WITH RECURSIVE reads(oid, top) AS ("                                                          \
    "SELECT pg_catalog.to_regclass(" param ")::pg_catalog.oid, true UNION "                        \
    "SELECT d.refobjid, false FROM reads r "                                                       \
    "JOIN pg_catalog.pg_class c ON c.oid = r.oid AND (r.top OR c.relkind = 'v') "                  \
    "JOIN pg_catalog.pg_rewrite w ON w.ev_class = r.oid "                                          \
    "JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "     \
    "AND d.objid = w.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass "           \
    "AND d.refobjid <> r.oid), "                                                                   \
    "queued AS (SELECT l.pid, l.relation FROM pg_catalog.pg_locks l "                              \
    "WHERE NOT l.granted AND l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' "          \
    "AND l.relation IN (SELECT r.oid FROM reads r) " THIS_DATABASE                                 \
    "AND l.pid <> pg_catalog.pg_backend_pid()) "                                                   \
    "SELECT a.pid, a.application_name, a.state, pg_catalog.left(a.query, 80), a.backend_type, "    \
    "l.mode, l.relation::pg_catalog.regclass::pg_catalog.text, l.granted, "                        \
    "CASE WHEN NOT l.granted THEN pg_catalog.array_to_string("                                     \
    "pg_catalog.pg_blocking_pids(l.pid), ', ') END "                                               \
    "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "              \
    "WHERE l.pid <> pg_catalog.pg_backend_pid() " THIS_DATABASE                                    \
    "AND ((l.granted AND EXISTS (SELECT FROM reads r WHERE r.oid = l.relation "                    \
    "AND (r.top OR l.mode = 'AccessExclusiveLock'))) "                                             \
    "OR (NOT l.granted AND (l.pid, l.relation) IN (SELECT q.pid, q.relation FROM queued q)) "      \
    "OR (l.granted AND EXISTS (SELECT FROM queued q WHERE q.relation = l.relation "                \
    "AND l.pid = ANY (pg_catalog.pg_blocking_pids(q.pid))))) "                                     \
    "ORDER BY a.pid, l.relation, l.granted DESC"

/* deadlock_timeout (ms) when an autovacuum worker holds a granted lock on the relation (the one
 * parameter); no row otherwise. */
#define AUTOVACUUM_HOLDER_SQL                                                                      \
    "SELECT s.setting::pg_catalog.int8 FROM pg_catalog.pg_settings s "                             \
    "WHERE s.name = 'deadlock_timeout' AND EXISTS (SELECT FROM pg_catalog.pg_locks l "             \
    "JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid WHERE l.granted "                         \
    "AND l.relation = pg_catalog.to_regclass($1) " THIS_DATABASE                                   \
    "AND a.backend_type = 'autovacuum worker')"

#endif /* PGVC_PQLOCKS_H */
