/* pqpath.h: every libpq call. */
#ifndef PGVC_PQPATH_H
#define PGVC_PQPATH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "errors.h"

/* _core.run_parallel(conninfo, statements, dependencies, priority, jobs, setup=None,
 *                    on_event=None, session=None, guard=None, on_notice=None, lock_retries=10,
 *                    lock_timeout_ms=200, last_lock_timeout_ms=10000,
 *                    connections=None, on_refused=None)
 *   -> list of (state, seconds, error). NULL on error.
 * Every argument is checked and copied before any Python code runs. conninfo: libpq keywords
 * (connect_timeout defaults to 10 s); session: settings applied with set_config after every
 * connect; priority None: longest remaining chain first; guard[i]: the relation statement i
 * locks ACCESS EXCLUSIVE, retried with a short lock_timeout and named with its lock holders when
 * the last, bounded attempt fails (on_event(i, "retrying", seconds, None) at each retry);
 * on_notice(i, severity, message) receives server notices;
 * connections: what connect_loop() returned for the same conninfo, session and setup, taken
 * over instead of connecting (at least as many as the run uses; the rest closed). Connects the
 * server refuses for its connection limit (SQLSTATE 53300) are left out while one is made: the
 * run goes on with those, and on_refused(opened, wanted, server's message) is called once before
 * any statement starts; any other failed connect, or a refusal of all, raises as before. */
PyObject *pgvc_run_parallel(pgvc_state *st, PyObject *args, PyObject *kwargs);

/* _core.connect_loop(conninfo, jobs, session=None, setup=None) -> capsule: `jobs` connections
 * made as run_parallel makes its own (pqearly.c; fewer when the server refuses some for its
 * connection limit, told by the run_parallel that takes them), from any thread (the waits
 * release the GIL),
 * for run_parallel(..., connections=). Closed when the capsule goes, or by
 * _core.close_loop_connections(capsule) -> None unless run_parallel took them. */
PyObject *pgvc_connect_loop(pgvc_state *st, PyObject *args, PyObject *kwargs);
PyObject *pgvc_close_loop_connections(PyObject *capsule);

/* _core.Schedule(dependencies, priority=None): the loop's schedule stepped from Python
 * (next() -> index or None; done(index, ok) -> indices skipped). */
extern PyType_Spec pgvc_schedule_spec;

/* _core.libpq_version() -> int */
PyObject *pgvc_libpq_version(void);

/* _core.lock_holders_sql() -> str: the sessions holding a lock that a statement on the view named
 * by its one %s parameter waits for (on the view, or ACCESS EXCLUSIVE on what it reads): (pid,
 * application_name, state, start of query, backend_type, mode, relation). */
PyObject *pgvc_lock_holders_sql(void);

/* _core.populated_sql() -> str: for the relation names in its one %s parameter (a text array),
 * whether each is populated (true when it does not exist), in order. */
PyObject *pgvc_populated_sql(void);

#endif
