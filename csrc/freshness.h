/* freshness.h: the staleness catalog query and the capture of a recorded refresh. */
#ifndef PGVC_FRESHNESS_H
#define PGVC_FRESHNESS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "sqlgen.h"

/* WITH RECURSIVE views(n, oid), reads(n, rel): the closure of the views named by %s (text[]),
 * down to tables, foreign tables and materialized views (exact.c reads it too). */
extern const char pgvc_closure_cte[];

/* The staleness query: for a text[] of qualified materialized view names (%s), one row per view
 * (relkind 'self': oid, populated flag, the database's stats_reset as epoch text) and one per
 * relation it reads through views (oid, name, relkind, relfilenode, write counter or NULL); the
 * last two columns are the exact mode's trigger oid and committed statement count (NULL unless
 * `exact`, or without a trigger). Appends to b. */
void pgvc_freshness_query(pgvc_buf *b, int exact);

/* The capture a recorded refresh runs before its REFRESH, in the same transaction: it sets
 * pgviews_c.sources and pgviews_c.started for history_insert_captured. Appends to b. */
void pgvc_capture_query(pgvc_buf *b, int exact);

/* The capture function's query (historyfn.c): the rows of its one view p_view, names as p_path
 * shows them, then SELECT the sources' JSON text (NULL when the view does not exist); the exact
 * mode's counter table is `counter_table` (quoted, qualified). Appends to b. */
void pgvc_capture_function_query(pgvc_buf *b, int exact, const char *counter_table);
/* The same for a view whose closure is its direct reads, the oid[] v_direct of the function. */
void pgvc_capture_direct_query(pgvc_buf *b, int exact, const char *counter_table);

/* _core.freshness_sql(exact=False) -> str. RAISES: NULL. */
PyObject *pgvc_freshness_sql(PyObject *args, PyObject *kwargs);

#endif
