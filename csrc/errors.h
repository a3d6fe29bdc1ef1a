/* errors.h: the module state (exception types and the Graph type) and the helpers that raise.
 *
 * The exception classes are defined once, in django_pgviews_c/exceptions.py; the module's exec
 * slot imports them into the state, so C and Python raise the same classes. */
#ifndef PGVC_ERRORS_H
#define PGVC_ERRORS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <libpq-fe.h>

typedef struct {
    PyTypeObject *GraphType;
    PyObject *PGViewsError;
    PyObject *CycleError;
    PyObject *MissingDependencyError;
    PyObject *InvalidNameError;
    PyObject *DatabaseError;
    PyObject *ConnectionLostError;
    PyObject *QueryCanceledError;
    PyObject *DependantObjectError;
    PyObject *PlanError;
} pgvc_state;

/* RAISES_NEG: returns -1 with an exception set on error. */
int pgvc_state_load(PyObject *module, pgvc_state *st);
int pgvc_state_traverse(pgvc_state *st, visitproc visit, void *arg);
void pgvc_state_clear(pgvc_state *st);

/* Each returns NULL with the exception set (so callers can `return pgvc_raise_...`). */
PyObject *pgvc_raise_cycle(pgvc_state *st, PyObject *path);
PyObject *pgvc_raise_missing(pgvc_state *st, PyObject *view, PyObject *dependency);
PyObject *pgvc_raise_invalid_name(pgvc_state *st, const char *name, const char *why);
PyObject *pgvc_raise_plan(pgvc_state *st, PyObject *cls, PyObject *message, PyObject *details);

/* Raise from a failed result (res may be NULL: then the connection's message is used).
 * `view` (may be NULL) names what was being done. The class follows the SQLSTATE:
 * class 08 and a bad connection -> ConnectionLostError, 57014 -> QueryCanceledError,
 * everything else -> DatabaseError. Carries sqlstate, message, detail, hint, position. */
PyObject *pgvc_raise_pg(pgvc_state *st, PGconn *conn, PGresult *res, PyObject *view);

#endif
