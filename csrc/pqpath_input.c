/* pqpath_input.c: what the refresh loop and _core.Schedule read from Python (statements, guards,
 * priorities, dependencies), validated and copied into the Loop's own C memory before any Python
 * code can run; the dependency cycle refused; the default priorities (longest remaining chain);
 * and the Loop's release. */
#include "pqpath_int.h"

#include <stdlib.h>

static PyObject *statement_name(void *ctx, Py_ssize_t i)
{
    (void)ctx;
    return PyUnicode_FromFormat("statement %zd", i);
}

/* RAISES_NEG. Statements in a dependency cycle could never start: CycleError names them. */
static int refuse_cycle(Loop *L)
{
    Py_ssize_t *order = NULL, *cycle = NULL, clen = 0;
    int rc = -1;
    order = malloc(sizeof(Py_ssize_t) * (size_t)(L->n + 1));
    cycle = malloc(sizeof(Py_ssize_t) * (size_t)(L->n + 1));
    if (!order || !cycle) {
        PyErr_NoMemory();
        goto exit;
    }
    switch (pgvc_graph_order(&L->g, order, cycle, &clen)) {
    case 0: rc = 0; break;
    case 1: pgvc_raise_cycle_path(L->st, cycle, clen, statement_name, NULL); break;
    default: break;
    }
exit:
    free(order);
    free(cycle);
    return rc;
}

/* A sequence of one entry per statement, or NULL in *out when `in` is None. RAISES_NEG. */
static int per_task(PyObject *in, Py_ssize_t n, const char *not_seq, const char *wrong_len,
                    PyObject **out)
{
    *out = NULL;
    if (in == Py_None)
        return 0;
    if (!(*out = pgvc_frozen_sequence(in, not_seq)))
        return -1;
    if (PySequence_Fast_GET_SIZE(*out) != n) {
        PyErr_SetString(PyExc_ValueError, wrong_len);
        return -1;
    }
    return 0;
}

/* Task i's statement, priority and guard, from the i-th entry of each list given. RAISES_NEG. */
static int read_task(Loop *L, Py_ssize_t i, PyObject *stmts, PyObject *prio, PyObject *guard)
{
    Task *t = &L->tasks[i];
    if (stmts && !(t->sql = pgvc_owned_str(PySequence_Fast_GET_ITEM(stmts, i), "run_parallel",
                                           "statements", i)))
        return -1;
    if (prio) {
        PyObject *p = PySequence_Fast_GET_ITEM(prio, i);
        if (!PyFloat_Check(p) && !PyLong_Check(p)) {
            PyErr_Format(PyExc_TypeError,
                         "run_parallel: priority[%zd] must be a number, not %.100s", i,
                         Py_TYPE(p)->tp_name);
            return -1;
        }
        t->priority = PyFloat_AsDouble(p);
        if (t->priority == -1.0 && PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_OverflowError,
                             "run_parallel: priority[%zd] is too large for a float: %R", i, p);
            }
            return -1;
        }
    }
    if (guard && PySequence_Fast_GET_ITEM(guard, i) != Py_None &&
        !(t->guard =
              pgvc_owned_str(PySequence_Fast_GET_ITEM(guard, i), "run_parallel", "guard", i)))
        return -1;
    return 0;
}

/* The statements task i waits for (a sequence of int, each a task's index), as edges.
 * RAISES_NEG. */
static int read_task_deps(Loop *L, Py_ssize_t i, PyObject *deps, pgvc_edges *edges)
{
    PyObject *d = pgvc_frozen_sequence(PySequence_Fast_GET_ITEM(deps, i),
                                       "run_parallel: dependencies must be sequences of int");
    int rc = -1;
    if (!d)
        return -1;
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(d); k++) {
        PyObject *o = PySequence_Fast_GET_ITEM(d, k);
        Py_ssize_t j;
        if (!PyLong_Check(o)) {
            PyErr_Format(PyExc_TypeError,
                         "run_parallel: dependencies[%zd] must hold int, not %.100s", i,
                         Py_TYPE(o)->tp_name);
            goto exit;
        }
        j = PyLong_AsSsize_t(o);
        if (j == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            j = -1;
        }
        if (j < 0 || j >= L->n) {
            PyErr_Format(PyExc_IndexError, "run_parallel: dependencies[%zd] names %R, out of range",
                         i, o);
            goto exit;
        }
        if (pgvc_edges_push(edges, i, j) < 0)
            goto exit;
        L->tasks[i].waiting_on++;
    }
    rc = 0;
exit:
    Py_DECREF(d);
    return rc;
}

/* Longest remaining chain first: each task's priority is the number of statements on the longest
 * path from it through its dependants, itself included. RAISES_NEG. */
static int chain_priorities(Loop *L)
{
    Py_ssize_t *order = malloc(sizeof(Py_ssize_t) * (size_t)(L->n + 1)), clen;
    if (!order) {
        PyErr_NoMemory();
        return -1;
    }
    if (pgvc_graph_order(&L->g, order, order, &clen) != 0) {
        free(order);
        return -1;
    }
    for (Py_ssize_t k = L->n - 1; k >= 0; k--) {
        Py_ssize_t v = order[k];
        double best = 0.0;
        for (Py_ssize_t e = L->g.rdep_off[v]; e < L->g.rdep_off[v + 1]; e++)
            if (L->tasks[L->g.rdep[e]].priority > best)
                best = L->tasks[L->g.rdep[e]].priority;
        L->tasks[v].priority = 1.0 + best;
    }
    free(order);
    return 0;
}

/* RAISES_NEG. Statements, guards, priorities and dependencies, checked and copied. */
int pgvc_loop_load_tasks(Loop *L, PyObject *stmts_in, PyObject *deps_in, PyObject *prio_in,
                         PyObject *guard_in)
{
    PyObject *stmts = NULL, *deps = NULL, *prio = NULL, *guard = NULL;
    pgvc_edges edges = {0};
    int rc = -1;
    if ((stmts_in && !(stmts = pgvc_frozen_sequence(
                           stmts_in, "run_parallel: statements must be a sequence of str"))) ||
        !(deps = pgvc_frozen_sequence(deps_in, "run_parallel: dependencies must be a sequence")))
        goto exit;
    L->n = stmts ? PySequence_Fast_GET_SIZE(stmts) : PySequence_Fast_GET_SIZE(deps);
    if (PySequence_Fast_GET_SIZE(deps) != L->n) {
        PyErr_SetString(PyExc_ValueError, "run_parallel: one dependency list per statement");
        goto exit;
    }
    if (per_task(prio_in, L->n, "run_parallel: priority must be a sequence of numbers",
                 "run_parallel: one priority per statement", &prio) < 0 ||
        per_task(guard_in, L->n, "run_parallel: guard must be a sequence",
                 "run_parallel: one guard (str or None) per statement", &guard) < 0)
        goto exit;
    if (!(L->tasks = calloc((size_t)L->n + 1, sizeof(Task))) ||
        !(L->heap = calloc((size_t)L->n + 1, sizeof(Py_ssize_t)))) {
        PyErr_NoMemory();
        goto exit;
    }
    for (Py_ssize_t i = 0; i < L->n; i++)
        if (read_task(L, i, stmts, prio, guard) < 0 || read_task_deps(L, i, deps, &edges) < 0)
            goto exit;
    if (pgvc_graph_build(&L->g, L->n, edges.from, edges.to, edges.n) < 0 || refuse_cycle(L) < 0)
        goto exit;
    if (!prio && chain_priorities(L) < 0)
        goto exit;
    for (Py_ssize_t i = 0; i < L->n; i++)
        if (L->tasks[i].waiting_on == 0)
            pgvc_loop_ready_push(L, i);
    rc = 0;
exit:
    Py_XDECREF(stmts);
    Py_XDECREF(deps);
    Py_XDECREF(prio);
    Py_XDECREF(guard);
    pgvc_edges_free(&edges);
    return rc;
}

void pgvc_loop_free(Loop *L)
{
    if (L->slots) {
        for (int s = 0; s < L->jobs; s++) {
            PQclear(L->slots[s].bad);
            free(L->slots[s].said);
            pgvc_conn_close(L->slots[s].conn);
        }
    }
    if (L->tasks)
        for (Py_ssize_t i = 0; i < L->n; i++) {
            free(L->tasks[i].sql);
            free(L->tasks[i].guard);
            Py_XDECREF(L->tasks[i].error);
        }
    for (Py_ssize_t k = 0; k < L->nnotices; k++) {
        free(L->notices[k].severity);
        free(L->notices[k].message);
    }
    free(L->notices);
    free(L->tasks);
    free(L->slots);
    free(L->heap);
    pgvc_connopts_free(&L->opts);
    free(L->session_sql);
    pgvc_graph_free(&L->g);
}
