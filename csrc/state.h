/* state.h: the module state: the exception types and the Graph type of one module instance.
 *
 * The exception classes are defined once, in django_pgviews_c/exceptions.py; the module's exec
 * slot imports them into the state, so C and Python raise the same classes. */
#ifndef PGVC_STATE_H
#define PGVC_STATE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyTypeObject *GraphType;
    PyTypeObject *ActionType; /* _core.PlanAction: one planned statement, a named record */
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

#endif
