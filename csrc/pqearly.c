/* pqearly.c: the refresh loop's connections opened ahead of the loop, so that their connects
 * overlap other work (a --stale pass's staleness check): _core.connect_loop() connects them as
 * run_parallel would, from any thread, and returns them in a capsule that run_parallel(...,
 * connections=) takes over; _core.close_loop_connections() (or the capsule's end) closes those
 * not taken. Connects the server refuses for its connection limit are left out as run_parallel
 * leaves them out, and the run that takes the capsule says so. */
#include "pqpath_int.h"

#include <stdlib.h>

#define CAPSULE_NAME "django_pgviews_c._core.loop_connections"
#define MAX_JOBS 1000 /* connections of one call: far beyond any server's max_connections use */

typedef struct {
    int n; /* connections still held (those from n on were taken or closed) */
    int wanted; /* connections asked for: more than were made when the server refused some */
    pgvc_refused refused;
    PGconn **conns;
    long *lock_timeouts;
} Early;

/* pgvc_conn_close releases the GIL: another thread may then use the capsule (close it, or hand
 * it to a run). Each connection is taken out of it, and the count cleared, before any close
 * waits, so that thread finds nothing left to close or take twice. */
static void early_close(Early *e)
{
    int n = e->n;
    e->n = 0;
    for (int i = 0; i < n; i++) {
        PGconn *conn = e->conns[i];
        e->conns[i] = NULL;
        pgvc_conn_close(conn);
    }
}

/* Closes what it holds and frees it: the capsule's end, or connect_loop's own failure. */
static void early_free(Early *e)
{
    early_close(e);
    free(e->conns);
    free(e->lock_timeouts);
    free(e);
}

static void early_destroy(PyObject *capsule)
{
    Early *e = PyCapsule_GetPointer(capsule, CAPSULE_NAME);
    if (e)
        early_free(e);
}

static Early *early_get(PyObject *capsule)
{
    if (!PyCapsule_IsValid(capsule, CAPSULE_NAME)) {
        PyErr_SetString(PyExc_TypeError, "connections must be what _core.connect_loop() returned");
        return NULL;
    }
    return PyCapsule_GetPointer(capsule, CAPSULE_NAME);
}

PyObject *pgvc_connect_loop(pgvc_state *st, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"conninfo", "jobs", "session", "setup", NULL};
    PyObject *conninfo, *session = Py_None, *setup = Py_None, *capsule = NULL;
    pgvc_connopts opts = {0};
    Early *e = NULL;
    int jobs;
    opts.st = st;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Oi|OO:connect_loop", kwlist, &conninfo, &jobs,
                                     &session, &setup))
        return NULL;
    if (jobs < 1 || jobs > MAX_JOBS) {
        PyErr_Format(PyExc_ValueError, "connect_loop: jobs must be from 1 to %d", MAX_JOBS);
        return NULL;
    }
    if (pgvc_connopts_load(&opts, "connect_loop", conninfo, session, setup) < 0)
        goto exit;
    e = calloc(1, sizeof *e);
    if (!e || !(e->conns = calloc((size_t)jobs, sizeof(PGconn *))) ||
        !(e->lock_timeouts = calloc((size_t)jobs, sizeof(long)))) {
        PyErr_NoMemory();
        goto exit;
    }
    /* No notice receiver yet (the loop sets its own): libpq's default meanwhile. */
    /* Those the server refuses for its connection limit are left out, as run_parallel does. */
    if (pgvc_connect_many(&opts, e->conns, e->lock_timeouts, jobs, &e->refused) < 0)
        goto exit;
    e->n = e->refused.opened;
    e->wanted = jobs;
    if ((capsule = PyCapsule_New(e, CAPSULE_NAME, early_destroy)))
        e = NULL;
exit:
    if (e)
        early_free(e);
    pgvc_connopts_free(&opts);
    return capsule;
}

PyObject *pgvc_close_loop_connections(PyObject *capsule)
{
    Early *e = early_get(capsule);
    if (!e)
        return NULL;
    early_close(e);
    Py_RETURN_NONE;
}

int pgvc_early_take(PyObject *capsule, Loop *L)
{
    Early *e = early_get(capsule);
    int held;
    if (!e)
        return -1;
    held = e->n;
    L->wanted = L->jobs;
    if (held < L->jobs && held > 0 && e->refused.reason[0] && e->wanted >= L->jobs) {
        /* The server refused the others: the run goes on with these, and says so. */
        L->refused = e->refused;
        L->refused.opened = L->jobs = held;
    } else if (held < L->jobs) {
        PyErr_Format(PyExc_ValueError,
                     "run_parallel: connections holds %d connections, the run needs %d", held,
                     L->jobs);
        return -1;
    }
    /* All taken before the spare ones' closes release the GIL (see early_close). */
    e->n = 0;
    for (int s = 0; s < L->jobs; s++) {
        L->slots[s].conn = e->conns[s];
        L->slots[s].user_lock_timeout = e->lock_timeouts[s];
        e->conns[s] = NULL;
        if (L->opts.notice)
            PQsetNoticeReceiver(L->slots[s].conn, L->opts.notice, L->opts.notice_arg);
    }
    /* The ones this run does not need (fewer tasks than jobs) are closed now. */
    for (int s = L->jobs; s < held; s++) {
        PGconn *spare = e->conns[s];
        e->conns[s] = NULL;
        pgvc_conn_close(spare);
    }
    if (!(L->session_sql = pgvc_session_sql(&L->opts, L->slots[0].conn)))
        return -1;
    return 0;
}
