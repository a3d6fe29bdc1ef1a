/* queries.h: the catalog and bookkeeping queries the Python layer runs, by name. */
#ifndef PGVC_QUERIES_H
#define PGVC_QUERIES_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "state.h"

/* _core.query_sql(name, table=None, ms=None, schema=None, tables=None) -> str: the text of the
 * query `name`. Values are %s parameters the caller binds; `table` (a Django db_table, split and
 * quoted here) is given only to "history_insert_counted"/"_captured", the drop_* statements,
 * "exact_trigger"/"exact_untrigger" and "history_functions" (the exact mode's counter table),
 * `ms` (an int, 0..2147483647) only to "lock_guard", `schema` (quoted here; the exact mode's
 * counter table's, or for "history_functions"/"history_drop_functions" the history table's) only
 * to "exact_function", "exact_trigger", "exact_forget", "exact_drop_function" and those two,
 * `tables` (a non-empty sequence of db_tables, each split and quoted here) only to
 * "history_insert_many". An unknown name, a missing or unexpected argument: ValueError naming
 * the query. */
PyObject *pgvc_query_sql(pgvc_state *st, PyObject *args, PyObject *kwargs);

/* _core.query_names() -> tuple[str, ...]: every name query_sql() knows. */
PyObject *pgvc_query_names(void);

#endif
