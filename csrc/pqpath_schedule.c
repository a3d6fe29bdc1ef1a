/* pqpath_schedule.c: the refresh loop's schedule: server notices collected in C and reported
 * with the GIL, the ready queue, what a task's end makes ready or skips (with its on_event
 * report), and the same schedule stepped from Python as _core.Schedule. */
#include "pqpath_int.h"

#include <stdlib.h>
#include <string.h>

const char *const pgvc_task_state_names[] = {"waiting", "running", "ok",
                                             "failed",  "skipped", "cancelled"};

/* ---- notices: collected in C (libpq may call us without the GIL), reported with it --------- */

void pgvc_loop_notice_receiver(void *arg, const PGresult *res)
{
    Loop *L = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    Notice *nn;
    if (!sev)
        sev = PQresultErrorField(res, PG_DIAG_SEVERITY);
    if (!msg)
        msg = PQresultErrorMessage(res);
    if (L->nnotices == L->notices_cap) {
        Py_ssize_t cap = L->notices_cap ? 2 * L->notices_cap : 8;
        Notice *grown = realloc(L->notices, sizeof(Notice) * (size_t)cap);
        if (!grown) {
            L->notices_oom = 1;
            return;
        }
        L->notices = grown;
        L->notices_cap = cap;
    }
    nn = &L->notices[L->nnotices];
    nn->task = L->current_task;
    nn->severity = strdup(sev ? sev : "NOTICE");
    nn->message = strdup(msg ? msg : "");
    if (!nn->severity || !nn->message) {
        free(nn->severity);
        free(nn->message);
        L->notices_oom = 1;
        return;
    }
    L->nnotices++;
}

/* RAISES_NEG. Hand the collected notices to on_notice(task, severity, message). */
int pgvc_loop_flush_notices(Loop *L)
{
    int rc = 0;
    for (Py_ssize_t k = 0; k < L->nnotices; k++) {
        Notice *nn = &L->notices[k];
        if (rc == 0 && L->on_notice != Py_None) {
            PyObject *r =
                PyObject_CallFunction(L->on_notice, "nNN", nn->task, pgvc_server_text(nn->severity),
                                      pgvc_server_text(nn->message));
            if (!r)
                rc = -1;
            Py_XDECREF(r);
        }
        free(nn->severity);
        free(nn->message);
    }
    L->nnotices = 0;
    if (rc == 0 && L->notices_oom) {
        L->notices_oom = 0;
        PyErr_NoMemory();
        rc = -1;
    }
    return rc;
}

/* ---- the ready queue: a binary heap, highest priority first, then lowest index ------------- */

static int more_urgent(const Task *t, Py_ssize_t a, Py_ssize_t b)
{
    return t[a].priority > t[b].priority || (t[a].priority == t[b].priority && a < b);
}

void pgvc_loop_ready_push(Loop *L, Py_ssize_t v)
{
    Py_ssize_t i = L->hlen++;
    while (i > 0) {
        Py_ssize_t parent = (i - 1) / 2;
        if (!more_urgent(L->tasks, v, L->heap[parent]))
            break;
        L->heap[i] = L->heap[parent];
        i = parent;
    }
    L->heap[i] = v;
}

Py_ssize_t pgvc_loop_ready_pop(Loop *L)
{
    Py_ssize_t top, last, i = 0;
    if (!L->hlen)
        return -1;
    top = L->heap[0];
    last = L->heap[--L->hlen];
    for (;;) {
        Py_ssize_t c = 2 * i + 1;
        if (c >= L->hlen)
            break;
        if (c + 1 < L->hlen && more_urgent(L->tasks, L->heap[c + 1], L->heap[c]))
            c++;
        if (!more_urgent(L->tasks, L->heap[c], last))
            break;
        L->heap[i] = L->heap[c];
        i = c;
    }
    if (L->hlen)
        L->heap[i] = last;
    return top;
}

/* ---- task ends, and their events -------------------------------------------------------- */

int pgvc_loop_notify(Loop *L, Py_ssize_t i)
{
    Task *t = &L->tasks[i];
    PyObject *r;
    if (pgvc_loop_flush_notices(L) < 0)
        return -1;
    if (L->on_event == Py_None)
        return 0;
    r = PyObject_CallFunction(L->on_event, "nsdO", i, pgvc_task_state_names[t->state], t->seconds,
                              t->error ? t->error : Py_None);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* A guarded statement's lock was busy; it backs off and tries again: on_event(i, "retrying",
 * seconds since it started, None), for the caller to say the wait. RAISES_NEG. */
int pgvc_loop_notify_retry(Loop *L, Py_ssize_t i, double waited)
{
    PyObject *r;
    if (pgvc_loop_flush_notices(L) < 0)
        return -1;
    if (L->on_event == Py_None)
        return 0;
    r = PyObject_CallFunction(L->on_event, "nsdO", i, "retrying", waited, Py_None);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* Mark every task that depends on i, directly or not, as skipped. RAISES_NEG. */
static int skip_dependants(Loop *L, Py_ssize_t i)
{
    char *mark = calloc((size_t)L->n + 1, 1);
    int rc = -1;
    if (!mark) {
        PyErr_NoMemory();
        return -1;
    }
    mark[i] = 1;
    if (pgvc_graph_close(&L->g, mark, 1) < 0)
        goto exit;
    for (Py_ssize_t k = 0; k < L->n; k++)
        if (k != i && mark[k] && L->tasks[k].state == T_WAITING) {
            L->tasks[k].state = T_SKIPPED;
            if (pgvc_loop_notify(L, k) < 0)
                goto exit;
        }
    rc = 0;
exit:
    free(mark);
    return rc;
}

/* Task i failed with error (a new reference, or NULL with an exception set). RAISES_NEG. */
int pgvc_loop_task_failed(Loop *L, Py_ssize_t i, PyObject *error)
{
    Task *t = &L->tasks[i];
    t->state = T_FAILED;
    if (!(t->error = error))
        return -1;
    if (pgvc_loop_notify(L, i) < 0)
        return -1;
    return skip_dependants(L, i);
}

int pgvc_loop_task_ok(Loop *L, Py_ssize_t i)
{
    L->tasks[i].state = T_OK;
    for (Py_ssize_t e = L->g.rdep_off[i]; e < L->g.rdep_off[i + 1]; e++) {
        Py_ssize_t d = L->g.rdep[e];
        if (--L->tasks[d].waiting_on == 0 && L->tasks[d].state == T_WAITING)
            pgvc_loop_ready_push(L, d);
    }
    return pgvc_loop_notify(L, i);
}

/* ---- the same schedule, stepped from Python ------------------------------------------------
 * refresh_views(jobs=1) runs on Django's connection, one statement at a time; it asks this
 * object what comes next and what a failure stops, so that logic exists once. */

typedef struct {
    PyObject_HEAD
    Loop L;
} ScheduleObject;

static PyObject *schedule_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"dependencies", "priority", NULL};
    PyObject *deps, *prio = Py_None;
    ScheduleObject *self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:Schedule", kwlist, &deps, &prio))
        return NULL;
    if (!(self = (ScheduleObject *)type->tp_alloc(type, 0)))
        return NULL;
    self->L.on_event = Py_NewRef(Py_None);
    self->L.on_notice = Py_NewRef(Py_None);
    self->L.current_task = -1;
    {
        PyObject *mod = PyType_GetModule(type);
        self->L.st = mod ? PyModule_GetState(mod) : NULL;
    }
    if (!self->L.st || pgvc_loop_load_tasks(&self->L, NULL, deps, prio, Py_None) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void schedule_dealloc(ScheduleObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_CLEAR(self->L.on_event);
    Py_CLEAR(self->L.on_notice);
    pgvc_loop_free(&self->L);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *schedule_next(ScheduleObject *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t i = pgvc_loop_ready_pop(&self->L);
    if (i < 0)
        Py_RETURN_NONE;
    self->L.tasks[i].state = T_RUNNING;
    return PyLong_FromSsize_t(i);
}

static PyObject *schedule_done(ScheduleObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"index", "ok", NULL};
    Py_ssize_t i, n;
    int ok;
    char *before = NULL;
    PyObject *skipped = NULL;
    Loop *L = &self->L;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "np:done", kwlist, &i, &ok))
        return NULL;
    if (i < 0 || i >= L->n || L->tasks[i].state != T_RUNNING) {
        PyErr_Format(PyExc_ValueError, "Schedule.done: statement %zd is not running", i);
        return NULL;
    }
    if (ok)
        return pgvc_loop_task_ok(L, i) < 0 ? NULL : PyList_New(0);
    /* A failure changes states, never the number of statements: n bounds `before` throughout. */
    n = L->n;
    if (!(before = malloc((size_t)n + 1)))
        return PyErr_NoMemory();
    for (Py_ssize_t k = 0; k < n; k++)
        before[k] = (char)L->tasks[k].state;
    if (pgvc_loop_task_failed(L, i, Py_NewRef(Py_None)) < 0 || !(skipped = PyList_New(0)))
        goto exit;
    for (Py_ssize_t k = 0; k < n; k++)
        if (L->tasks[k].state == T_SKIPPED && before[k] != T_SKIPPED) {
            PyObject *v = PyLong_FromSsize_t(k);
            if (!v || PyList_Append(skipped, v) < 0) {
                Py_XDECREF(v);
                Py_CLEAR(skipped);
                goto exit;
            }
            Py_DECREF(v);
        }
exit:
    free(before);
    return skipped;
}

static PyMethodDef schedule_methods[] = {
    {"next", (PyCFunction)schedule_next, METH_NOARGS,
     "next()\n--\n\nThe most urgent statement whose dependencies are done (now running), or "
     "None."},
    {"done", (PyCFunction)(void (*)(void))schedule_done, METH_VARARGS | METH_KEYWORDS,
     "done(index, ok)\n--\n\nRecord the end of a running statement. Returns the statements "
     "that can no longer run because they depend on a failed one (skipped)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot schedule_slots[] = {
    {Py_tp_new, schedule_new},
    {Py_tp_dealloc, schedule_dealloc},
    {Py_tp_methods, schedule_methods},
    {Py_tp_doc, "Schedule(dependencies, priority=None)\n--\n\nThe parallel loop's schedule, "
                "stepped one statement at a time: dependencies[i] lists the statements i "
                "waits for; priority None means longest remaining chain first (ties: lowest "
                "index)."},
    {0, NULL},
};

PyType_Spec pgvc_schedule_spec = {
    .name = "django_pgviews_c._core.Schedule",
    .basicsize = sizeof(ScheduleObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = schedule_slots,
};
