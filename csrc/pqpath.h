/* pqpath.h: every libpq call. */
#ifndef PGVC_PQPATH_H
#define PGVC_PQPATH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "errors.h"

/* _core.run_parallel(conninfo, statements, dependencies, priority, jobs, *, setup=None,
 *                    on_event=None) -> list of (state, seconds, error). NULL on error. */
PyObject *pgvc_run_parallel(pgvc_state *st, PyObject *args, PyObject *kwargs);

/* _core.execute(conninfo, sql) -> list of rows (tuples of str or None) of the last result.
 * A one-shot helper for tools and tests: connect, run, close. NULL on error. */
PyObject *pgvc_execute(pgvc_state *st, PyObject *args, PyObject *kwargs);

/* _core.libpq_version() -> int */
PyObject *pgvc_libpq_version(void);

#endif
