/* freshness.h: the staleness catalog query. */
#ifndef PGVC_FRESHNESS_H
#define PGVC_FRESHNESS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* _core.freshness_sql() -> str: for a text[] of qualified materialized view names (%s), one
 * row per view (relkind 'self': oid, populated flag, the database's stats_reset) and one per
 * relation it reads through views (oid, name, relkind, relfilenode, write counter or NULL). */
PyObject *pgvc_freshness_sql(void);

#endif
