/* pqpath.c: every libpq call: connecting from Django's settings, one-shot queries, and the
 * non-blocking loop that runs a dependency graph of statements over N connections.
 *
 * The GIL is released around every call that can block; no Python object is touched while it
 * is released. */
#include "pqpath.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graph.h"

typedef struct {
    const char **keys, **values; /* borrowed from the dict's str objects */
    Py_ssize_t n;
} Conninfo;

/* RAISES_NEG. Keys and values must stay alive (they are the dict's own strings). */
static int conninfo_from_dict(PyObject *dict, Conninfo *ci)
{
    PyObject *k, *v;
    Py_ssize_t pos = 0, i = 0;
    if (!PyDict_Check(dict)) {
        PyErr_SetString(PyExc_TypeError, "conninfo must be a dict of str");
        return -1;
    }
    ci->n = PyDict_GET_SIZE(dict);
    ci->keys = calloc((size_t)ci->n + 1, sizeof(char *));
    ci->values = calloc((size_t)ci->n + 1, sizeof(char *));
    if (!ci->keys || !ci->values) {
        PyErr_NoMemory();
        return -1;
    }
    while (PyDict_Next(dict, &pos, &k, &v)) {
        if (!PyUnicode_Check(k) || !PyUnicode_Check(v)) {
            PyErr_SetString(PyExc_TypeError, "conninfo must be a dict of str");
            return -1;
        }
        if (!(ci->keys[i] = PyUnicode_AsUTF8(k)) || !(ci->values[i] = PyUnicode_AsUTF8(v)))
            return -1;
        i++;
    }
    return 0;
}

static void conninfo_free(Conninfo *ci)
{
    free(ci->keys);
    free(ci->values);
}

/* Connect with the GIL released. Returns the connection or NULL with the error raised. */
static PGconn *connect_blocking(pgvc_state *st, Conninfo *ci)
{
    PGconn *conn;
    Py_BEGIN_ALLOW_THREADS
    conn = PQconnectdbParams(ci->keys, ci->values, 0);
    Py_END_ALLOW_THREADS
    if (!conn) {
        PyErr_NoMemory();
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        /* The message names host and port, never the password. */
        PyErr_Format(st->ConnectionLostError, "could not connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

static PyObject *result_rows(PGresult *res)
{
    int nrows = PQntuples(res), ncols = PQnfields(res);
    PyObject *rows = PyList_New(nrows);
    for (int r = 0; rows && r < nrows; r++) {
        PyObject *row = PyTuple_New(ncols);
        if (!row) {
            Py_CLEAR(rows);
            break;
        }
        for (int c = 0; c < ncols; c++) {
            PyObject *v = PQgetisnull(res, r, c)
                              ? Py_NewRef(Py_None)
                              : PyUnicode_DecodeUTF8(PQgetvalue(res, r, c), PQgetlength(res, r, c), "replace");
            if (!v) {
                Py_DECREF(row);
                Py_CLEAR(rows);
                return NULL;
            }
            PyTuple_SET_ITEM(row, c, v);
        }
        PyList_SET_ITEM(rows, r, row);
    }
    return rows;
}

PyObject *pgvc_execute(pgvc_state *st, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"conninfo", "sql", NULL};
    PyObject *dict, *rows = NULL;
    const char *sql;
    Conninfo ci = {0};
    PGconn *conn = NULL;
    PGresult *res = NULL, *last = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Os:execute", kwlist, &dict, &sql))
        return NULL;
    if (conninfo_from_dict(dict, &ci) < 0 || !(conn = connect_blocking(st, &ci)))
        goto exit;
    {
        int sent;
        Py_BEGIN_ALLOW_THREADS
        sent = PQsendQuery(conn, sql);
        while (sent && (res = PQgetResult(conn))) {
            PQclear(last);
            last = res;
            if (PQresultStatus(res) == PGRES_FATAL_ERROR)
                break;
        }
        while (sent && res && (res = PQgetResult(conn)))
            PQclear(res);
        Py_END_ALLOW_THREADS
        if (!sent) {
            pgvc_raise_pg(st, conn, NULL, NULL);
            goto exit;
        }
    }
    if (!last || (PQresultStatus(last) != PGRES_TUPLES_OK && PQresultStatus(last) != PGRES_COMMAND_OK)) {
        pgvc_raise_pg(st, conn, last, NULL);
        goto exit;
    }
    rows = result_rows(last);
exit:
    PQclear(last);
    if (conn) {
        Py_BEGIN_ALLOW_THREADS
        PQfinish(conn);
        Py_END_ALLOW_THREADS
    }
    conninfo_free(&ci);
    return rows;
}

PyObject *pgvc_libpq_version(void) { return PyLong_FromLong(PQlibVersion()); }

/* ---- the parallel loop --------------------------------------------------------------------- */

enum { T_WAITING, T_RUNNING, T_OK, T_FAILED, T_SKIPPED, T_CANCELLED };
static const char *const task_state_names[] = {"waiting", "running", "ok", "failed", "skipped",
                                               "cancelled"};

typedef struct {
    const char *sql;
    double priority, started, seconds;
    int state;
    Py_ssize_t waiting_on; /* dependencies not yet done */
    PyObject *error;       /* dict, or NULL */
} Task;

typedef struct {
    PGconn *conn;
    Py_ssize_t task; /* running task or -1 */
    int dead;
} Slot;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static PyObject *error_dict(PGconn *conn, PGresult *res)
{
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
    int lost = PQstatus(conn) == CONNECTION_BAD;
    if (!msg)
        msg = PQerrorMessage(conn);
    if (lost && !state)
        state = "08006";
    return Py_BuildValue("{szszszszsO}", "message", msg, "sqlstate", state, "detail", detail, "hint",
                         hint, "connection_lost", lost ? Py_True : Py_False);
}

/* Pick the ready task with the highest priority (ties: lowest index). */
static Py_ssize_t next_ready(Task *tasks, Py_ssize_t n)
{
    Py_ssize_t best = -1;
    for (Py_ssize_t i = 0; i < n; i++)
        if (tasks[i].state == T_WAITING && tasks[i].waiting_on == 0 &&
            (best < 0 || tasks[i].priority > tasks[best].priority))
            best = i;
    return best;
}

static int notify(PyObject *cb, Py_ssize_t i, Task *t)
{
    PyObject *r;
    if (!cb || cb == Py_None)
        return 0;
    r = PyObject_CallFunction(cb, "nsdO", i, task_state_names[t->state], t->seconds,
                              t->error ? t->error : Py_None);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* Mark every task that depends on i, directly or not, as skipped. */
static int skip_dependants(pgvc_graph *g, Task *tasks, Py_ssize_t i, PyObject *cb)
{
    char *mark = calloc((size_t)g->n + 1, 1);
    if (!mark) {
        PyErr_NoMemory();
        return -1;
    }
    mark[i] = 1;
    if (pgvc_graph_close(g, mark, 1) < 0) {
        free(mark);
        return -1;
    }
    for (Py_ssize_t k = 0; k < g->n; k++)
        if (k != i && mark[k] && tasks[k].state == T_WAITING) {
            tasks[k].state = T_SKIPPED;
            if (notify(cb, k, &tasks[k]) < 0) {
                free(mark);
                return -1;
            }
        }
    free(mark);
    return 0;
}

/* Cancel what runs on every slot and wait for the servers to say so. */
static void cancel_all(Slot *slots, int jobs)
{
    char errbuf[256];
    for (int s = 0; s < jobs; s++) {
        PGcancel *c;
        if (slots[s].task < 0 || !slots[s].conn)
            continue;
        if ((c = PQgetCancel(slots[s].conn))) {
            PQcancel(c, errbuf, (int)sizeof errbuf);
            PQfreeCancel(c);
        }
    }
    for (int s = 0; s < jobs; s++) {
        PGresult *r;
        if (slots[s].task < 0 || !slots[s].conn)
            continue;
        while ((r = PQgetResult(slots[s].conn)))
            PQclear(r);
    }
}

static PyObject *statement_name(void *ctx, Py_ssize_t i)
{
    (void)ctx;
    return PyUnicode_FromFormat("statement %zd", i);
}

/* Statements in a dependency cycle could never start: they were reported 'skipped' with no
 * error at all. Raise CycleError naming the statements ("statement i") instead. RAISES_NEG. */
static int refuse_cycle(pgvc_state *st, const pgvc_graph *g)
{
    Py_ssize_t *order = NULL, *cycle = NULL, clen = 0;
    int rc = -1;
    order = malloc(sizeof(Py_ssize_t) * (size_t)(g->n + 1));
    cycle = malloc(sizeof(Py_ssize_t) * (size_t)(g->n + 1));
    if (!order || !cycle) {
        PyErr_NoMemory();
        goto exit;
    }
    switch (pgvc_graph_order(g, order, cycle, &clen)) {
    case 0:
        rc = 0;
        break;
    case 1:
        pgvc_raise_cycle_path(st, cycle, clen, statement_name, NULL);
        break;
    default:
        break;
    }
exit:
    free(order);
    free(cycle);
    return rc;
}

PyObject *pgvc_run_parallel(pgvc_state *st, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"conninfo", "statements", "dependencies", "priority", "jobs", "setup",
                             "on_event", NULL};
    PyObject *dict, *stmts, *deps, *prio, *on_event = Py_None, *result = NULL;
    const char *setup = NULL;
    int jobs, interrupted = 0;
    Py_ssize_t n, done = 0, *from = NULL, *to = NULL, ne = 0;
    Conninfo ci = {0};
    Task *tasks = NULL;
    Slot *slots = NULL;
    pgvc_graph g = {0};
    struct pollfd *fds = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!O!O!i|zO:run_parallel", kwlist, &dict,
                                     &PyList_Type, &stmts, &PyList_Type, &deps, &PyList_Type, &prio,
                                     &jobs, &setup, &on_event))
        return NULL;
    n = PyList_GET_SIZE(stmts);
    if (PyList_GET_SIZE(deps) != n || PyList_GET_SIZE(prio) != n) {
        PyErr_SetString(PyExc_ValueError, "run_parallel: one dependency list and priority per statement");
        return NULL;
    }
    if (jobs < 1) {
        PyErr_SetString(PyExc_ValueError, "run_parallel: jobs must be at least 1");
        return NULL;
    }
    if (jobs > n)
        jobs = n ? (int)n : 1;
    tasks = calloc((size_t)n + 1, sizeof(Task));
    slots = calloc((size_t)jobs, sizeof(Slot));
    fds = calloc((size_t)jobs, sizeof(struct pollfd));
    if (!tasks || !slots || !fds) {
        PyErr_NoMemory();
        goto exit;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyList_GET_ITEM(deps, i);
        if (!(tasks[i].sql = PyUnicode_AsUTF8(PyList_GET_ITEM(stmts, i))))
            goto exit;
        tasks[i].priority = PyFloat_AsDouble(PyList_GET_ITEM(prio, i));
        if (PyErr_Occurred())
            goto exit;
        if (!PyList_Check(d)) {
            PyErr_SetString(PyExc_TypeError, "run_parallel: dependencies must be lists of int");
            goto exit;
        }
        ne += PyList_GET_SIZE(d);
    }
    from = malloc(sizeof(Py_ssize_t) * (size_t)(ne + 1));
    to = malloc(sizeof(Py_ssize_t) * (size_t)(ne + 1));
    if (!from || !to) {
        PyErr_NoMemory();
        goto exit;
    }
    ne = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyList_GET_ITEM(deps, i);
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(d); k++) {
            Py_ssize_t j = PyLong_AsSsize_t(PyList_GET_ITEM(d, k));
            if (j < 0 || j >= n) {
                if (!PyErr_Occurred())
                    PyErr_Format(PyExc_IndexError, "run_parallel: dependency %zd out of range", j);
                goto exit;
            }
            from[ne] = i;
            to[ne++] = j;
            tasks[i].waiting_on++;
        }
    }
    if (pgvc_graph_build(&g, n, from, to, ne) < 0)
        goto exit;
    if (refuse_cycle(st, &g) < 0)
        goto exit;
    if (conninfo_from_dict(dict, &ci) < 0)
        goto exit;
    for (int s = 0; s < jobs; s++) {
        slots[s].task = -1;
        if (!(slots[s].conn = connect_blocking(st, &ci)))
            goto exit;
        if (setup) {
            PGresult *r;
            Py_BEGIN_ALLOW_THREADS
            r = PQexec(slots[s].conn, setup);
            Py_END_ALLOW_THREADS
            if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
                pgvc_raise_pg(st, slots[s].conn, r, NULL);
                PQclear(r);
                goto exit;
            }
            PQclear(r);
        }
    }

    while (done < n) {
        int busy = 0, rc;
        /* Give every idle connection the most urgent ready statement. */
        for (int s = 0; s < jobs; s++) {
            Py_ssize_t i;
            if (slots[s].task >= 0 || slots[s].dead || (i = next_ready(tasks, n)) < 0)
                continue;
            if (!PQsendQuery(slots[s].conn, tasks[i].sql)) {
                tasks[i].state = T_FAILED;
                tasks[i].error = error_dict(slots[s].conn, NULL);
                slots[s].dead = PQstatus(slots[s].conn) == CONNECTION_BAD;
                done++;
                if (!tasks[i].error || notify(on_event, i, &tasks[i]) < 0 ||
                    skip_dependants(&g, tasks, i, on_event) < 0)
                    goto exit;
                continue;
            }
            tasks[i].state = T_RUNNING;
            tasks[i].started = now();
            slots[s].task = i;
            if (notify(on_event, i, &tasks[i]) < 0)
                goto exit;
        }
        /* Count what is finished or can no longer run. */
        done = 0;
        for (Py_ssize_t i = 0; i < n; i++)
            done += tasks[i].state != T_WAITING && tasks[i].state != T_RUNNING;
        for (int s = 0; s < jobs; s++) {
            fds[s].fd = slots[s].task >= 0 ? PQsocket(slots[s].conn) : -1;
            fds[s].events = POLLIN;
            fds[s].revents = 0;
            busy += slots[s].task >= 0;
        }
        if (!busy) {
            int alive = 0;
            for (int s = 0; s < jobs; s++)
                alive += !slots[s].dead;
            if (done < n && (!alive || next_ready(tasks, n) < 0)) {
                /* Nothing runs and nothing can start: every connection is gone. */
                for (Py_ssize_t i = 0; i < n; i++)
                    if (tasks[i].state == T_WAITING) {
                        tasks[i].state = T_SKIPPED;
                        if (notify(on_event, i, &tasks[i]) < 0)
                            goto exit;
                    }
                break;
            }
            continue;
        }
        Py_BEGIN_ALLOW_THREADS
        rc = poll(fds, (nfds_t)jobs, 50);
        Py_END_ALLOW_THREADS
        if (rc < 0 && errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto exit;
        }
        if (PyErr_CheckSignals() < 0) {
            /* Ctrl-C: cancel every running statement, then let the exception go. */
            Py_BEGIN_ALLOW_THREADS
            cancel_all(slots, jobs);
            Py_END_ALLOW_THREADS
            for (Py_ssize_t i = 0; i < n; i++)
                if (tasks[i].state == T_RUNNING || tasks[i].state == T_WAITING)
                    tasks[i].state = T_CANCELLED;
            interrupted = 1;
            goto exit;
        }
        for (int s = 0; s < jobs; s++) {
            Py_ssize_t i = slots[s].task;
            PGresult *r, *bad = NULL;
            int lost;
            if (i < 0 || !(fds[s].revents & (POLLIN | POLLERR | POLLHUP)))
                continue;
            lost = !PQconsumeInput(slots[s].conn);
            if (!lost && PQisBusy(slots[s].conn))
                continue;
            while (!lost && (r = PQgetResult(slots[s].conn))) {
                if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK && !bad)
                    bad = r;
                else
                    PQclear(r);
            }
            tasks[i].seconds = now() - tasks[i].started;
            slots[s].task = -1;
            if (lost || bad || PQstatus(slots[s].conn) == CONNECTION_BAD) {
                tasks[i].state = T_FAILED;
                tasks[i].error = error_dict(slots[s].conn, bad);
                PQclear(bad);
                if (PQstatus(slots[s].conn) == CONNECTION_BAD) {
                    /* Try once for a new connection; a server that is gone stays gone. */
                    PGconn *fresh;
                    Py_BEGIN_ALLOW_THREADS
                    PQfinish(slots[s].conn);
                    fresh = PQconnectdbParams(ci.keys, ci.values, 0);
                    Py_END_ALLOW_THREADS
                    slots[s].conn = fresh;
                    if (!fresh || PQstatus(fresh) != CONNECTION_OK)
                        slots[s].dead = 1;
                }
                if (!tasks[i].error || notify(on_event, i, &tasks[i]) < 0 ||
                    skip_dependants(&g, tasks, i, on_event) < 0)
                    goto exit;
            } else {
                tasks[i].state = T_OK;
                for (Py_ssize_t e = g.rdep_off[i]; e < g.rdep_off[i + 1]; e++)
                    tasks[g.rdep[e]].waiting_on--;
                if (notify(on_event, i, &tasks[i]) < 0)
                    goto exit;
            }
        }
        done = 0;
        for (Py_ssize_t i = 0; i < n; i++)
            done += tasks[i].state != T_WAITING && tasks[i].state != T_RUNNING;
    }
    if (!(result = PyList_New(n)))
        goto exit;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = Py_BuildValue("(sdO)", task_state_names[tasks[i].state], tasks[i].seconds,
                                    tasks[i].error ? tasks[i].error : Py_None);
        if (!t) {
            Py_CLEAR(result);
            goto exit;
        }
        PyList_SET_ITEM(result, i, t);
    }
exit:
    if (!result && !interrupted && slots) {
        /* An error of ours (a callback raised): stop what still runs. */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        Py_BEGIN_ALLOW_THREADS
        cancel_all(slots, jobs);
        Py_END_ALLOW_THREADS
        PyErr_Restore(et, ev, tb);
    }
    if (slots) {
        Py_BEGIN_ALLOW_THREADS
        for (int s = 0; s < jobs; s++)
            if (slots[s].conn)
                PQfinish(slots[s].conn);
        Py_END_ALLOW_THREADS
    }
    if (tasks)
        for (Py_ssize_t i = 0; i < n; i++)
            Py_XDECREF(tasks[i].error);
    free(tasks);
    free(slots);
    free(fds);
    free(from);
    free(to);
    pgvc_graph_free(&g);
    conninfo_free(&ci);
    return result;
}
