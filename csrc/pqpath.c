/* pqpath.c: every libpq call: connecting from Django's settings and the non-blocking loop that
 * runs a dependency graph of statements over N connections.
 *
 * Everything the loop reads from Python is validated and copied into owned C memory before any
 * Python code (an on_event callback, a signal handler) can run. Connections are non-blocking:
 * the only call that waits is poll(), with the GIL released and signals checked every 100 ms;
 * connects and cancels have deadlines. No Python object is touched while the GIL is released. */
#include "pqpath.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graph.h"
#include "sqlgen.h"

#define SLICE_MS 100             /* how often a wait checks for signals */
#define DEFAULT_CONNECT_TIMEOUT 10 /* seconds, unless conninfo says otherwise */
#define CANCEL_TIMEOUT 5.0       /* seconds for a cancel request, and for its statement to end */
#define HOLDER_TIMEOUT 5.0       /* seconds for the lock-holder query */

/* The sessions holding a granted lock on a relation (its name the one parameter). */
#define LOCK_HOLDERS_SQL(param)                                                                    \
    "SELECT a.pid, a.application_name, a.state, pg_catalog.left(a.query, 80) "                     \
    "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "              \
    "WHERE l.granted AND l.relation = pg_catalog.to_regclass(" param ") "                           \
    "AND l.pid <> pg_catalog.pg_backend_pid() ORDER BY a.pid"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- owned copies of Python input ------------------------------------------------------- */

/* A str without NUL bytes, copied with malloc. NULL with TypeError/ValueError naming `what`. */
static char *owned_str(PyObject *o, const char *what, Py_ssize_t index)
{
    const char *s;
    Py_ssize_t len;
    char *copy;
    if (!PyUnicode_Check(o)) {
        if (index >= 0)
            PyErr_Format(PyExc_TypeError, "run_parallel: %s[%zd] must be a str, not %.100s", what,
                         index, Py_TYPE(o)->tp_name);
        else
            PyErr_Format(PyExc_TypeError, "run_parallel: %s must be a str, not %.100s", what,
                         Py_TYPE(o)->tp_name);
        return NULL;
    }
    if (!(s = PyUnicode_AsUTF8AndSize(o, &len)))
        return NULL;
    if ((Py_ssize_t)strlen(s) != len) {
        if (index >= 0)
            PyErr_Format(PyExc_ValueError, "run_parallel: %s[%zd] contains a NUL byte", what, index);
        else
            PyErr_Format(PyExc_ValueError, "run_parallel: %s contains a NUL byte", what);
        return NULL;
    }
    if (!(copy = malloc((size_t)len + 1))) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, s, (size_t)len + 1);
    return copy;
}

/* NULL-terminated key and value arrays, owned. */
typedef struct {
    char **keys, **values;
    Py_ssize_t n;
} Pairs;

static void pairs_free(Pairs *p)
{
    for (Py_ssize_t i = 0; i < p->n; i++) {
        free(p->keys[i]);
        free(p->values[i]);
    }
    free(p->keys);
    free(p->values);
    memset(p, 0, sizeof *p);
}

/* RAISES_NEG. A dict of str -> str (None: empty), copied. `what` names the argument. */
static int pairs_from_dict(PyObject *dict, const char *what, Pairs *p)
{
    PyObject *k, *v;
    Py_ssize_t pos = 0, size;
    memset(p, 0, sizeof *p);
    if (dict == Py_None)
        size = 0;
    else if (!PyDict_Check(dict)) {
        PyErr_Format(PyExc_TypeError, "run_parallel: %s must be a dict of str to str, not %.100s",
                     what, Py_TYPE(dict)->tp_name);
        return -1;
    } else
        size = PyDict_GET_SIZE(dict);
    p->keys = calloc((size_t)size + 1, sizeof(char *));
    p->values = calloc((size_t)size + 1, sizeof(char *));
    if (!p->keys || !p->values) {
        PyErr_NoMemory();
        goto error;
    }
    /* Only C code runs between PyDict_Next calls: the dict cannot change under us. */
    while (size && PyDict_Next(dict, &pos, &k, &v)) {
        if (!PyUnicode_Check(k) || !PyUnicode_Check(v)) {
            PyErr_Format(PyExc_TypeError, "run_parallel: %s must be a dict of str to str (%R: %.100s)",
                         what, k, Py_TYPE(v)->tp_name);
            goto error;
        }
        if (!(p->keys[p->n] = owned_str(k, what, -1)))
            goto error;
        if (!(p->values[p->n] = owned_str(v, what, -1))) {
            free(p->keys[p->n]);
            p->keys[p->n] = NULL;
            goto error;
        }
        p->n++;
    }
    return 0;
error:
    pairs_free(p);
    return -1;
}

static const char *pairs_get(const Pairs *p, const char *key)
{
    for (Py_ssize_t i = 0; i < p->n; i++)
        if (!strcmp(p->keys[i], key))
            return p->values[i];
    return NULL;
}

/* ---- the loop's state --------------------------------------------------------------------- */

enum { T_WAITING, T_RUNNING, T_OK, T_FAILED, T_SKIPPED, T_CANCELLED };
static const char *const task_state_names[] = {"waiting", "running", "ok", "failed", "skipped",
                                               "cancelled"};

typedef struct {
    char *sql;
    char *guard;     /* relation the statement locks ACCESS EXCLUSIVE (retried), or NULL */
    double priority, started, seconds, not_before;
    int state, attempts;
    Py_ssize_t waiting_on; /* dependencies not yet done */
    PyObject *error;       /* dict, or NULL */
} Task;

typedef struct {
    PGconn *conn;
    Py_ssize_t task; /* running task or -1 */
    int dead, flushing, last_attempt;
    PGresult *bad; /* first failed result of the running statement */
    long user_lock_timeout; /* ms; 0 = none */
} Slot;

typedef struct {
    Py_ssize_t task; /* -1: not during a statement */
    char *severity, *message;
} Notice;

typedef struct {
    pgvc_state *st;
    Pairs conninfo, session;
    char *setup;
    double connect_timeout; /* seconds; <= 0: none */
    long short_ms, last_ms;
    int retries;
    Py_ssize_t n;
    Task *tasks;
    int jobs;
    Slot *slots;
    pgvc_graph g;
    Py_ssize_t *heap, hlen; /* ready tasks, most urgent first */
    PyObject *on_event, *on_notice;
    Notice *notices;
    Py_ssize_t nnotices, notices_cap;
    int notices_oom;
    Py_ssize_t current_task; /* task whose results are being read, for notices */
} Loop;

/* ---- notices: collected in C (libpq may call us without the GIL), reported with it --------- */

static void notice_receiver(void *arg, const PGresult *res)
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
static int flush_notices(Loop *L)
{
    int rc = 0;
    for (Py_ssize_t k = 0; k < L->nnotices; k++) {
        Notice *nn = &L->notices[k];
        if (rc == 0 && L->on_notice != Py_None) {
            PyObject *r = PyObject_CallFunction(L->on_notice, "nss", nn->task, nn->severity, nn->message);
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

/* ---- waiting ------------------------------------------------------------------------------ */

/* Wait until the socket is ready (POLLIN, plus POLLOUT when for_write) or the deadline passes
 * (deadline <= 0: none), checking signals every SLICE_MS. Returns 0 ready, 1 timed out, -1 with
 * the signal handler's exception set. */
static int wait_socket(PGconn *conn, int for_write, double deadline)
{
    struct pollfd pfd;
    pfd.fd = PQsocket(conn);
    if (pfd.fd < 0)
        return 0; /* the next libpq call reports the broken connection */
    pfd.events = POLLIN | (for_write ? POLLOUT : 0);
    for (;;) {
        int rc, slice = SLICE_MS;
        if (deadline > 0) {
            double left = deadline - now();
            if (left <= 0)
                return 1;
            if (left * 1000 < slice)
                slice = (int)(left * 1000) + 1;
        }
        pfd.revents = 0;
        Py_BEGIN_ALLOW_THREADS
        rc = poll(&pfd, 1, slice);
        Py_END_ALLOW_THREADS
        if (rc > 0)
            return 0;
        if (rc < 0 && errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0)
            return -1;
    }
}

/* Send what is queued. Returns 0 all sent, 1 more to send, -1 on a broken connection. */
static int flush_conn(PGconn *conn)
{
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = PQflush(conn);
    Py_END_ALLOW_THREADS
    return rc;
}

/* Read what arrived. Returns 1 when PQgetResult will not block, 0 when busy, -1 when broken. */
static int consume(PGconn *conn)
{
    int ok, busy;
    Py_BEGIN_ALLOW_THREADS
    ok = PQconsumeInput(conn);
    busy = ok ? PQisBusy(conn) : 1;
    Py_END_ALLOW_THREADS
    return ok ? !busy : -1;
}

/* Run one query (params: NULL or nparams strings) and wait for all of its results, until the
 * deadline (<= 0: none). Returns the first failed result, else the last one; NULL with an
 * exception set when the connection broke, the deadline passed or a signal arrived (*why says
 * which: 'b'roken, 't'imeout, 's'ignal). */
static PGresult *exec_wait(PGconn *conn, const char *sql, int nparams, const char *const *params,
                           double deadline, char *why)
{
    PGresult *keep = NULL, *r;
    int sent, rc;
    *why = 0;
    if (nparams)
        sent = PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    else
        sent = PQsendQuery(conn, sql);
    if (!sent)
        goto broken;
    while ((rc = flush_conn(conn)) == 1)
        if ((rc = wait_socket(conn, 1, deadline)) != 0)
            goto waited;
    if (rc < 0)
        goto broken;
    for (;;) {
        int ready = consume(conn);
        if (ready < 0)
            goto broken;
        if (!ready) {
            if ((rc = wait_socket(conn, 0, deadline)) != 0)
                goto waited;
            continue;
        }
        if (!(r = PQgetResult(conn)))
            break;
        if (keep && PQresultStatus(keep) == PGRES_FATAL_ERROR)
            PQclear(r);
        else {
            PQclear(keep);
            keep = r;
        }
    }
    if (!keep)
        goto broken;
    return keep;
waited:
    *why = rc > 0 ? 't' : 's';
    PQclear(keep);
    return NULL;
broken:
    *why = 'b';
    PQclear(keep);
    return NULL;
}

/* ---- cancelling, bounded ------------------------------------------------------------------- */

#ifdef LIBPQ_HAS_ASYNC_CANCEL
/* libpq >= 17: a non-blocking cancel connection, polled until the deadline. Returns NULL on
 * success, else a static or libpq-owned reason (valid until cancel_free). */
static int cancel_bounded(PGconn *conn, double seconds, char *reason, size_t reason_cap)
{
    PGcancelConn *cc = PQcancelCreate(conn);
    double deadline = now() + seconds;
    int ok = 0;
    if (!cc) {
        snprintf(reason, reason_cap, "out of memory");
        return 0;
    }
    if (!PQcancelStart(cc))
        goto done;
    for (;;) {
        PostgresPollingStatusType s = PQcancelPoll(cc);
        struct pollfd pfd;
        if (s == PGRES_POLLING_OK) {
            ok = 1;
            break;
        }
        if (s == PGRES_POLLING_FAILED)
            break;
        if (now() >= deadline) {
            snprintf(reason, reason_cap, "no answer within %.0f s", seconds);
            PQcancelFinish(cc);
            return 0;
        }
        pfd.fd = PQcancelSocket(cc);
        pfd.events = s == PGRES_POLLING_WRITING ? POLLOUT : POLLIN;
        if (poll(&pfd, 1, SLICE_MS) < 0 && errno != EINTR)
            break;
    }
done:
    if (!ok)
        snprintf(reason, reason_cap, "%s", PQcancelErrorMessage(cc));
    PQcancelFinish(cc);
    return ok;
}
#else
/* Older libpq: PQcancel blocks for as long as its connect does, so it runs in a thread of its
 * own and is abandoned (the thread frees its state) when it outlasts the deadline. */
typedef struct {
    PGcancel *cancel;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int finished, abandoned, ok;
    char errbuf[256];
} CancelJob;

static void cancel_job_free(CancelJob *j)
{
    PQfreeCancel(j->cancel);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->cond);
    free(j);
}

static void *cancel_thread(void *arg)
{
    CancelJob *j = arg;
    int ok = PQcancel(j->cancel, j->errbuf, (int)sizeof j->errbuf), abandoned;
    pthread_mutex_lock(&j->lock);
    j->ok = ok;
    j->finished = 1;
    abandoned = j->abandoned;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->lock);
    if (abandoned)
        cancel_job_free(j);
    return NULL;
}

/* Called without the GIL. Returns 1 when the server accepted the request, else 0 with reason. */
static int cancel_bounded(PGconn *conn, double seconds, char *reason, size_t reason_cap)
{
    CancelJob *j = calloc(1, sizeof *j);
    pthread_t th;
    pthread_attr_t attr;
    struct timespec until;
    int ok = 0, finished;
    if (!j || !(j->cancel = PQgetCancel(conn))) {
        free(j);
        snprintf(reason, reason_cap, "could not build a cancel request");
        return 0;
    }
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->cond, NULL);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, cancel_thread, j) != 0) {
        pthread_attr_destroy(&attr);
        cancel_job_free(j);
        snprintf(reason, reason_cap, "could not start the cancel request");
        return 0;
    }
    pthread_attr_destroy(&attr);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)seconds;
    pthread_mutex_lock(&j->lock);
    while (!j->finished)
        if (pthread_cond_timedwait(&j->cond, &j->lock, &until) == ETIMEDOUT)
            break;
    finished = j->finished;
    if (finished) {
        ok = j->ok;
        if (!ok)
            snprintf(reason, reason_cap, "%s", j->errbuf);
    } else {
        j->abandoned = 1;
        snprintf(reason, reason_cap, "no answer within %.0f s", seconds);
    }
    pthread_mutex_unlock(&j->lock);
    if (finished)
        cancel_job_free(j);
    return ok;
}
#endif

/* ---- connecting -------------------------------------------------------------------------- */

static void conn_close(PGconn *conn)
{
    if (!conn)
        return;
    Py_BEGIN_ALLOW_THREADS
    PQfinish(conn);
    Py_END_ALLOW_THREADS
}

/* The session Django's connection has (set_config for each pair, values as parameters), then the
 * caller's setup statement; then read lock_timeout. RAISES_NEG. */
static int apply_session(Loop *L, Slot *slot)
{
    PGresult *r = NULL;
    pgvc_buf sql;
    const char **params = NULL;
    char why;
    int rc = -1;
    double deadline = L->connect_timeout > 0 ? now() + L->connect_timeout : 0;
    pgvc_buf_init(&sql);
    if (L->session.n) {
        if (!(params = calloc((size_t)(2 * L->session.n), sizeof(char *)))) {
            PyErr_NoMemory();
            goto exit;
        }
        pgvc_buf_puts(&sql, "SELECT ");
        for (Py_ssize_t i = 0; i < L->session.n; i++) {
            char piece[80];
            snprintf(piece, sizeof piece, "%spg_catalog.set_config($%zd, $%zd, false)", i ? ", " : "",
                     2 * i + 1, 2 * i + 2);
            pgvc_buf_puts(&sql, piece);
            params[2 * i] = L->session.keys[i];
            params[2 * i + 1] = L->session.values[i];
        }
        if (sql.oom) {
            PyErr_NoMemory();
            goto exit;
        }
        r = exec_wait(slot->conn, sql.data, (int)(2 * L->session.n), params, deadline, &why);
        if (!r)
            goto failed;
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            pgvc_raise_pg(L->st, slot->conn, r, NULL);
            goto exit;
        }
        PQclear(r);
    }
    if (L->setup) {
        r = exec_wait(slot->conn, L->setup, 0, NULL, deadline, &why);
        if (!r)
            goto failed;
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
            pgvc_raise_pg(L->st, slot->conn, r, NULL);
            goto exit;
        }
        PQclear(r);
    }
    r = exec_wait(slot->conn, "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'lock_timeout'",
                  0, NULL, deadline, &why);
    if (!r)
        goto failed;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pgvc_raise_pg(L->st, slot->conn, r, NULL);
        goto exit;
    }
    slot->user_lock_timeout = PQntuples(r) ? atol(PQgetvalue(r, 0, 0)) : 0;
    rc = 0;
    goto exit;
failed:
    if (why == 't')
        PyErr_Format(L->st->ConnectionLostError,
                     "could not connect: the server did not answer within %d s", (int)L->connect_timeout);
    else if (why == 'b')
        PyErr_Format(L->st->ConnectionLostError, "could not connect: %s", PQerrorMessage(slot->conn));
exit:
    PQclear(r);
    free(params);
    pgvc_buf_free(&sql);
    return rc;
}

/* Connect with PQconnectStartParams/PQconnectPoll, waiting in poll() with the GIL released and
 * signals checked, within connect_timeout; then set non-blocking mode, the notice receiver and
 * the session. RAISES_NEG: ConnectionLostError naming libpq's reason, or the signal's error. */
static int connect_slot(Loop *L, Slot *slot)
{
    PGconn *conn = NULL;
    PostgresPollingStatusType s = PGRES_POLLING_WRITING;
    double deadline = L->connect_timeout > 0 ? now() + L->connect_timeout : 0;
    Py_BEGIN_ALLOW_THREADS
    conn = PQconnectStartParams((const char *const *)L->conninfo.keys,
                                (const char *const *)L->conninfo.values, 0);
    Py_END_ALLOW_THREADS
    if (!conn) {
        PyErr_NoMemory();
        return -1;
    }
    if (PQstatus(conn) == CONNECTION_BAD)
        s = PGRES_POLLING_FAILED;
    while (s != PGRES_POLLING_OK && s != PGRES_POLLING_FAILED) {
        int rc = wait_socket(conn, s == PGRES_POLLING_WRITING, deadline);
        if (rc < 0)
            goto error;
        if (rc > 0) {
            PyErr_Format(L->st->ConnectionLostError,
                         "could not connect: the server did not answer within %d s "
                         "(connect_timeout)",
                         (int)L->connect_timeout);
            goto error;
        }
        Py_BEGIN_ALLOW_THREADS
        s = PQconnectPoll(conn);
        Py_END_ALLOW_THREADS
    }
    if (s == PGRES_POLLING_FAILED) {
        /* The message names host and port, never the password. */
        PyErr_Format(L->st->ConnectionLostError, "could not connect: %s", PQerrorMessage(conn));
        goto error;
    }
    if (PQsetnonblocking(conn, 1) != 0) {
        PyErr_Format(L->st->ConnectionLostError, "could not connect: %s", PQerrorMessage(conn));
        goto error;
    }
    PQsetNoticeReceiver(conn, notice_receiver, L);
    slot->conn = conn;
    if (apply_session(L, slot) < 0) {
        slot->conn = NULL;
        goto error;
    }
    return 0;
error:
    conn_close(conn);
    return -1;
}

/* ---- the ready queue: a binary heap, highest priority first, then lowest index ------------- */

static int more_urgent(const Task *t, Py_ssize_t a, Py_ssize_t b)
{
    return t[a].priority > t[b].priority || (t[a].priority == t[b].priority && a < b);
}

static void ready_push(Loop *L, Py_ssize_t v)
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

static Py_ssize_t ready_pop(Loop *L)
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

/* ---- events ------------------------------------------------------------------------------ */

static PyObject *error_dict(PGconn *conn, PGresult *res, const char *fallback)
{
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
    int lost = conn && PQstatus(conn) == CONNECTION_BAD;
    if (!msg)
        msg = fallback ? fallback : conn ? PQerrorMessage(conn) : "failed";
    if (lost && !state)
        state = "08006";
    return Py_BuildValue("{szszszszsOsO}", "message", msg, "sqlstate", state, "detail", detail,
                         "hint", hint, "connection_lost", lost ? Py_True : Py_False, "holders",
                         Py_None);
}

static int notify(Loop *L, Py_ssize_t i)
{
    Task *t = &L->tasks[i];
    PyObject *r;
    if (flush_notices(L) < 0)
        return -1;
    if (L->on_event == Py_None)
        return 0;
    r = PyObject_CallFunction(L->on_event, "nsdO", i, task_state_names[t->state], t->seconds,
                              t->error ? t->error : Py_None);
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
            if (notify(L, k) < 0)
                goto exit;
        }
    rc = 0;
exit:
    free(mark);
    return rc;
}

/* Task i failed with error (a new reference, or NULL with an exception set). RAISES_NEG. */
static int task_failed(Loop *L, Py_ssize_t i, PyObject *error)
{
    Task *t = &L->tasks[i];
    t->state = T_FAILED;
    if (!(t->error = error))
        return -1;
    if (notify(L, i) < 0)
        return -1;
    return skip_dependants(L, i);
}

static int task_ok(Loop *L, Py_ssize_t i)
{
    L->tasks[i].state = T_OK;
    for (Py_ssize_t e = L->g.rdep_off[i]; e < L->g.rdep_off[i + 1]; e++) {
        Py_ssize_t d = L->g.rdep[e];
        if (--L->tasks[d].waiting_on == 0 && L->tasks[d].state == T_WAITING)
            ready_push(L, d);
    }
    return notify(L, i);
}

/* The sessions that hold a lock on the relation, as a list of dicts (pid, application_name,
 * state, query), read on conn; None when they cannot be read within HOLDER_TIMEOUT. */
static PyObject *lock_holders(PGconn *conn, const char *relation)
{
    const char *params[1] = {relation};
    char why;
    PGresult *r = exec_wait(conn, LOCK_HOLDERS_SQL("$1"), 1, params, now() + HOLDER_TIMEOUT, &why);
    PyObject *list;
    if (!r) {
        if (why == 's')
            return NULL;
        Py_RETURN_NONE;
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        Py_RETURN_NONE;
    }
    list = PyList_New(0);
    for (int k = 0; list && k < PQntuples(r); k++) {
        PyObject *row = Py_BuildValue("{slszszsz}", "pid", atol(PQgetvalue(r, k, 0)),
                                      "application_name", PQgetvalue(r, k, 1), "state",
                                      PQgetisnull(r, k, 2) ? NULL : PQgetvalue(r, k, 2), "query",
                                      PQgetisnull(r, k, 3) ? NULL : PQgetvalue(r, k, 3));
        if (!row || PyList_Append(list, row) < 0)
            Py_CLEAR(list);
        Py_XDECREF(row);
    }
    PQclear(r);
    return list;
}

/* ---- sending and reading statements -------------------------------------------------------- */

/* The text sent for task i: a guarded statement first sets a short lock_timeout (the user's own,
 * when shorter), or the bounded one on its last attempt. Integers only: nothing from Python. */
static char *statement_text(Loop *L, Slot *slot, Task *t, int *last)
{
    long ms, user = slot->user_lock_timeout;
    size_t len;
    char *text;
    *last = 0;
    if (!t->guard)
        return strdup(t->sql);
    *last = t->attempts >= L->retries;
    ms = *last ? L->last_ms : L->short_ms;
    if (user > 0 && (ms <= 0 || user < ms))
        ms = user;
    len = strlen(t->sql) + 64;
    if (!(text = malloc(len)))
        return NULL;
    snprintf(text, len, "SET lock_timeout = %ld; %s", ms, t->sql);
    return text;
}

/* Start the most urgent ready task on an idle slot. RAISES_NEG. */
static int start_task(Loop *L, Slot *slot, Py_ssize_t i)
{
    Task *t = &L->tasks[i];
    char *text = statement_text(L, slot, t, &slot->last_attempt);
    int sent, rc;
    if (!text) {
        PyErr_NoMemory();
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    sent = PQsendQuery(slot->conn, text);
    rc = sent ? PQflush(slot->conn) : -1;
    Py_END_ALLOW_THREADS
    free(text);
    if (rc < 0) {
        slot->dead = PQstatus(slot->conn) == CONNECTION_BAD;
        return task_failed(L, i, error_dict(slot->conn, NULL, NULL));
    }
    slot->flushing = rc == 1;
    slot->task = i;
    t->attempts++;
    if (t->state == T_RUNNING) /* a retry: already reported running */
        return 0;
    t->state = T_RUNNING;
    t->started = now();
    return notify(L, i);
}

/* A lost connection: try once for a new one; a server that is gone stays gone. RAISES_NEG only
 * for a signal while reconnecting. */
static int reconnect(Loop *L, Slot *slot)
{
    conn_close(slot->conn);
    slot->conn = NULL;
    if (connect_slot(L, slot) < 0) {
        if (PyErr_ExceptionMatches(L->st->ConnectionLostError) ||
            PyErr_ExceptionMatches(L->st->PGViewsError)) {
            PyErr_Clear();
            slot->dead = 1;
            return 0;
        }
        return -1;
    }
    return 0;
}

/* The running statement of slot ended (bad: its first failed result, or NULL). RAISES_NEG. */
static int finish_task(Loop *L, Slot *slot, int lost)
{
    Py_ssize_t i = slot->task;
    Task *t = &L->tasks[i];
    PGresult *bad = slot->bad;
    const char *state = bad ? PQresultErrorField(bad, PG_DIAG_SQLSTATE) : NULL;
    int rc;
    slot->bad = NULL;
    slot->task = -1;
    slot->flushing = 0;
    t->seconds = now() - t->started;
    lost = lost || PQstatus(slot->conn) == CONNECTION_BAD;
    if (!lost && !bad) {
        rc = task_ok(L, i);
        goto exit;
    }
    if (!lost && t->guard && state && !strcmp(state, "55P03") && !slot->last_attempt) {
        /* Lock busy: step out of the readers' queue, back off, try again. */
        double backoff = 0.05 * t->attempts;
        t->not_before = now() + (backoff < 0.5 ? backoff : 0.5);
        rc = 0;
        goto exit;
    }
    {
        PyObject *error = error_dict(slot->conn, bad, NULL);
        if (error && !lost && t->guard && state && !strcmp(state, "55P03")) {
            PyObject *holders = lock_holders(slot->conn, t->guard);
            if (!holders || PyDict_SetItemString(error, "holders", holders) < 0)
                Py_CLEAR(error);
            Py_XDECREF(holders);
        }
        rc = task_failed(L, i, error);
    }
    if (rc == 0 && lost)
        rc = reconnect(L, slot);
exit:
    PQclear(bad);
    return rc;
}

/* Read what slot's connection has for us. RAISES_NEG. */
static int read_slot(Loop *L, Slot *slot, short revents)
{
    int ready;
    if (slot->flushing && (revents & (POLLOUT | POLLERR | POLLHUP))) {
        int rc = flush_conn(slot->conn);
        if (rc < 0)
            return finish_task(L, slot, 1);
        slot->flushing = rc == 1;
    }
    if (!(revents & (POLLIN | POLLERR | POLLHUP)))
        return 0;
    L->current_task = slot->task;
    for (;;) {
        PGresult *r;
        if ((ready = consume(slot->conn)) <= 0)
            break;
        if (!(r = PQgetResult(slot->conn))) {
            L->current_task = -1;
            return finish_task(L, slot, 0);
        }
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK && !slot->bad)
            slot->bad = r;
        else
            PQclear(r);
    }
    L->current_task = -1;
    return ready < 0 ? finish_task(L, slot, 1) : 0;
}

/* Cancel what runs on every slot (bounded), and read the statements' ends (bounded). */
static void cancel_all(Loop *L)
{
    char reason[256];
    double deadline;
    for (int s = 0; s < L->jobs; s++) {
        Slot *slot = &L->slots[s];
        int ok;
        if (slot->task < 0 || !slot->conn)
            continue;
        Py_BEGIN_ALLOW_THREADS
        ok = cancel_bounded(slot->conn, CANCEL_TIMEOUT, reason, sizeof reason);
        Py_END_ALLOW_THREADS
        if (!ok) {
            /* The statement may go on on the server: say so, and drop the connection. */
            PyObject *et, *ev, *tb;
            PyErr_Fetch(&et, &ev, &tb);
            if (PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
                                 "could not cancel statement %zd: %s", slot->task, reason) < 0)
                PyErr_Clear();
            PyErr_Restore(et, ev, tb);
            conn_close(slot->conn);
            slot->conn = NULL;
        }
    }
    deadline = now() + CANCEL_TIMEOUT;
    for (int s = 0; s < L->jobs; s++) {
        Slot *slot = &L->slots[s];
        if (slot->task < 0 || !slot->conn)
            continue;
        for (;;) {
            PGresult *r;
            int ready = consume(slot->conn);
            struct pollfd pfd;
            int prc;
            if (ready < 0)
                break;
            if (ready) {
                if (!(r = PQgetResult(slot->conn)))
                    break;
                PQclear(r);
                continue;
            }
            if (now() >= deadline)
                break;
            pfd.fd = PQsocket(slot->conn);
            pfd.events = POLLIN;
            Py_BEGIN_ALLOW_THREADS
            prc = poll(&pfd, 1, SLICE_MS);
            Py_END_ALLOW_THREADS
            if (prc < 0 && errno != EINTR)
                break;
        }
        slot->task = -1;
    }
}

/* ---- input ------------------------------------------------------------------------------ */

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
    case 0:
        rc = 0;
        break;
    case 1:
        pgvc_raise_cycle_path(L->st, cycle, clen, statement_name, NULL);
        break;
    default:
        break;
    }
exit:
    free(order);
    free(cycle);
    return rc;
}

/* RAISES_NEG. Statements, guards, priorities and dependencies, checked and copied. */
static int load_tasks(Loop *L, PyObject *stmts_in, PyObject *deps_in, PyObject *prio_in,
                      PyObject *guard_in)
{
    PyObject *stmts = NULL, *deps = NULL, *prio = NULL, *guard = NULL, *d = NULL;
    Py_ssize_t *from = NULL, *to = NULL, ne = 0, cap = 0;
    int rc = -1;
    if ((stmts_in &&
         !(stmts = PySequence_Fast(stmts_in, "run_parallel: statements must be a sequence of str"))) ||
        !(deps = PySequence_Fast(deps_in, "run_parallel: dependencies must be a sequence")))
        goto exit;
    L->n = stmts ? PySequence_Fast_GET_SIZE(stmts) : PySequence_Fast_GET_SIZE(deps);
    if (PySequence_Fast_GET_SIZE(deps) != L->n) {
        PyErr_SetString(PyExc_ValueError, "run_parallel: one dependency list per statement");
        goto exit;
    }
    if (prio_in != Py_None) {
        if (!(prio = PySequence_Fast(prio_in, "run_parallel: priority must be a sequence of numbers")))
            goto exit;
        if (PySequence_Fast_GET_SIZE(prio) != L->n) {
            PyErr_SetString(PyExc_ValueError, "run_parallel: one priority per statement");
            goto exit;
        }
    }
    if (guard_in != Py_None) {
        if (!(guard = PySequence_Fast(guard_in, "run_parallel: guard must be a sequence")))
            goto exit;
        if (PySequence_Fast_GET_SIZE(guard) != L->n) {
            PyErr_SetString(PyExc_ValueError, "run_parallel: one guard (str or None) per statement");
            goto exit;
        }
    }
    if (!(L->tasks = calloc((size_t)L->n + 1, sizeof(Task))) ||
        !(L->heap = calloc((size_t)L->n + 1, sizeof(Py_ssize_t)))) {
        PyErr_NoMemory();
        goto exit;
    }
    for (Py_ssize_t i = 0; i < L->n; i++) {
        Task *t = &L->tasks[i];
        if (stmts && !(t->sql = owned_str(PySequence_Fast_GET_ITEM(stmts, i), "statements", i)))
            goto exit;
        if (prio) {
            PyObject *p = PySequence_Fast_GET_ITEM(prio, i);
            if (!PyFloat_Check(p) && !PyLong_Check(p)) {
                PyErr_Format(PyExc_TypeError, "run_parallel: priority[%zd] must be a number, not %.100s",
                             i, Py_TYPE(p)->tp_name);
                goto exit;
            }
            t->priority = PyFloat_AsDouble(p);
            if (t->priority == -1.0 && PyErr_Occurred())
                goto exit;
        }
        if (guard && PySequence_Fast_GET_ITEM(guard, i) != Py_None &&
            !(t->guard = owned_str(PySequence_Fast_GET_ITEM(guard, i), "guard", i)))
            goto exit;
        if (!(d = PySequence_Fast(PySequence_Fast_GET_ITEM(deps, i),
                                  "run_parallel: dependencies must be sequences of int")))
            goto exit;
        for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(d); k++) {
            PyObject *o = PySequence_Fast_GET_ITEM(d, k);
            Py_ssize_t j;
            if (!PyLong_Check(o)) {
                PyErr_Format(PyExc_TypeError, "run_parallel: dependencies[%zd] must hold int, not %.100s",
                             i, Py_TYPE(o)->tp_name);
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
            if (ne == cap) {
                Py_ssize_t *nf, *nt;
                cap = cap ? 2 * cap : 64;
                nf = realloc(from, sizeof(Py_ssize_t) * (size_t)cap);
                if (nf)
                    from = nf;
                nt = realloc(to, sizeof(Py_ssize_t) * (size_t)cap);
                if (nt)
                    to = nt;
                if (!nf || !nt) {
                    PyErr_NoMemory();
                    goto exit;
                }
            }
            from[ne] = i;
            to[ne++] = j;
            t->waiting_on++;
        }
        Py_CLEAR(d);
    }
    if (pgvc_graph_build(&L->g, L->n, from, to, ne) < 0 || refuse_cycle(L) < 0)
        goto exit;
    if (!prio) {
        /* Longest remaining chain first: the number of statements on the longest path from each
         * through its dependants, itself included. */
        Py_ssize_t *order = malloc(sizeof(Py_ssize_t) * (size_t)(L->n + 1)), clen;
        if (!order) {
            PyErr_NoMemory();
            goto exit;
        }
        if (pgvc_graph_order(&L->g, order, order, &clen) != 0) {
            free(order);
            goto exit;
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
    }
    for (Py_ssize_t i = 0; i < L->n; i++)
        if (L->tasks[i].waiting_on == 0)
            ready_push(L, i);
    rc = 0;
exit:
    Py_XDECREF(stmts);
    Py_XDECREF(deps);
    Py_XDECREF(prio);
    Py_XDECREF(guard);
    Py_XDECREF(d);
    free(from);
    free(to);
    return rc;
}

/* RAISES_NEG. conninfo (with a default connect_timeout), session and setup, copied. */
static int load_connection(Loop *L, PyObject *conninfo, PyObject *session, PyObject *setup)
{
    const char *timeout;
    if (pairs_from_dict(conninfo, "conninfo", &L->conninfo) < 0 ||
        pairs_from_dict(session, "session", &L->session) < 0)
        return -1;
    if (setup != Py_None && !(L->setup = owned_str(setup, "setup", -1)))
        return -1;
    timeout = pairs_get(&L->conninfo, "connect_timeout");
    if (timeout) {
        char *end;
        long v = strtol(timeout, &end, 10);
        if (end == timeout || *end) {
            PyErr_Format(PyExc_ValueError, "run_parallel: conninfo['connect_timeout'] is not an integer: %s",
                         timeout);
            return -1;
        }
        /* libpq: zero or less waits without end; 1 means 2. */
        L->connect_timeout = v <= 0 ? 0 : v < 2 ? 2 : (double)v;
    } else
        L->connect_timeout = DEFAULT_CONNECT_TIMEOUT;
    return 0;
}

static void loop_free(Loop *L)
{
    if (L->slots) {
        for (int s = 0; s < L->jobs; s++) {
            PQclear(L->slots[s].bad);
            conn_close(L->slots[s].conn);
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
    free(L->setup);
    pairs_free(&L->conninfo);
    pairs_free(&L->session);
    pgvc_graph_free(&L->g);
}

/* ---- the loop --------------------------------------------------------------------------- */

static int count_done(const Loop *L)
{
    for (Py_ssize_t i = 0; i < L->n; i++)
        if (L->tasks[i].state == T_WAITING || L->tasks[i].state == T_RUNNING)
            return 0;
    return 1;
}

/* RAISES_NEG. Every task ends ok, failed or skipped. */
static int run_loop(Loop *L)
{
    struct pollfd *fds = calloc((size_t)L->jobs, sizeof(struct pollfd));
    Py_ssize_t *retry = malloc(sizeof(Py_ssize_t) * (size_t)(L->n + 1)), nretry = 0;
    int rc = -1;
    if (!fds || !retry) {
        PyErr_NoMemory();
        goto exit;
    }
    while (!count_done(L)) {
        int busy = 0, alive = 0, prc, timeout = SLICE_MS;
        double t = now();
        /* Retries whose back-off has passed are ready again. */
        nretry = 0;
        for (Py_ssize_t i = 0; i < L->n; i++)
            if (L->tasks[i].state == T_RUNNING && L->tasks[i].not_before > 0) {
                if (L->tasks[i].not_before <= t) {
                    L->tasks[i].not_before = 0;
                    retry[nretry++] = i;
                } else if ((L->tasks[i].not_before - t) * 1000 < timeout)
                    timeout = (int)((L->tasks[i].not_before - t) * 1000) + 1;
            }
        for (int s = 0; s < L->jobs; s++) {
            Slot *slot = &L->slots[s];
            Py_ssize_t i;
            if (slot->task >= 0 || slot->dead)
                continue;
            if (nretry)
                i = retry[--nretry];
            else if ((i = ready_pop(L)) < 0)
                break;
            if (start_task(L, slot, i) < 0)
                goto exit;
        }
        /* Back-offs not started for want of a free connection wait for the next turn. */
        while (nretry)
            L->tasks[retry[--nretry]].not_before = t;
        for (int s = 0; s < L->jobs; s++) {
            Slot *slot = &L->slots[s];
            fds[s].fd = slot->task >= 0 && slot->conn ? PQsocket(slot->conn) : -1;
            fds[s].events = POLLIN | (slot->flushing ? POLLOUT : 0);
            fds[s].revents = 0;
            busy += slot->task >= 0;
            alive += !slot->dead;
        }
        if (!busy) {
            int waiting_retry = 0;
            for (Py_ssize_t i = 0; i < L->n; i++)
                waiting_retry |= L->tasks[i].state == T_RUNNING && L->tasks[i].not_before > 0;
            if (!alive || (!L->hlen && !waiting_retry)) {
                /* Nothing runs and nothing can start: every connection is gone. */
                for (Py_ssize_t i = 0; i < L->n; i++)
                    if (L->tasks[i].state == T_WAITING || L->tasks[i].state == T_RUNNING) {
                        L->tasks[i].state = T_SKIPPED;
                        if (notify(L, i) < 0)
                            goto exit;
                    }
                break;
            }
        }
        Py_BEGIN_ALLOW_THREADS
        prc = poll(fds, (nfds_t)L->jobs, timeout);
        Py_END_ALLOW_THREADS
        if (prc < 0 && errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto exit;
        }
        if (PyErr_CheckSignals() < 0)
            goto exit;
        for (int s = 0; s < L->jobs; s++)
            if (L->slots[s].task >= 0 && fds[s].revents && read_slot(L, &L->slots[s], fds[s].revents) < 0)
                goto exit;
        if (flush_notices(L) < 0)
            goto exit;
    }
    rc = 0;
exit:
    free(fds);
    free(retry);
    return rc;
}

PyObject *pgvc_run_parallel(pgvc_state *st, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"conninfo", "statements", "dependencies", "priority", "jobs", "setup",
                             "on_event", "session", "guard", "on_notice", "lock_retries",
                             "lock_timeout_ms", "last_lock_timeout_ms", NULL};
    PyObject *conninfo, *stmts, *deps, *prio, *setup = Py_None, *session = Py_None,
                                                  *guard = Py_None, *result = NULL;
    int jobs, retries = 10, short_ms = 200, last_ms = 10000;
    Loop L;
    memset(&L, 0, sizeof L);
    L.st = st;
    L.on_event = L.on_notice = Py_None;
    L.current_task = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOi|OOOOOiii:run_parallel", kwlist, &conninfo,
                                     &stmts, &deps, &prio, &jobs, &setup, &L.on_event, &session,
                                     &guard, &L.on_notice, &retries, &short_ms, &last_ms))
        return NULL;
    if (jobs < 1) {
        PyErr_SetString(PyExc_ValueError, "run_parallel: jobs must be at least 1");
        return NULL;
    }
    if (retries < 0 || short_ms < 1 || last_ms < 1) {
        PyErr_SetString(PyExc_ValueError,
                        "run_parallel: lock_retries must be >= 0, lock timeouts >= 1 ms");
        return NULL;
    }
    if ((L.on_event != Py_None && !PyCallable_Check(L.on_event)) ||
        (L.on_notice != Py_None && !PyCallable_Check(L.on_notice))) {
        PyErr_SetString(PyExc_TypeError, "run_parallel: on_event and on_notice must be callable or None");
        return NULL;
    }
    Py_INCREF(L.on_event);
    Py_INCREF(L.on_notice);
    L.retries = retries;
    L.short_ms = short_ms;
    L.last_ms = last_ms;
    if (load_connection(&L, conninfo, session, setup) < 0 ||
        load_tasks(&L, stmts, deps, prio, guard) < 0)
        goto exit;
    L.jobs = jobs > L.n ? (L.n ? (int)L.n : 1) : jobs;
    if (!(L.slots = calloc((size_t)L.jobs, sizeof(Slot)))) {
        PyErr_NoMemory();
        goto exit;
    }
    for (int s = 0; s < L.jobs; s++)
        L.slots[s].task = -1;
    for (int s = 0; s < L.jobs; s++)
        if (connect_slot(&L, &L.slots[s]) < 0)
            goto exit;
    if (run_loop(&L) < 0)
        goto exit;
    if (!(result = PyList_New(L.n)))
        goto exit;
    for (Py_ssize_t i = 0; i < L.n; i++) {
        Task *t = &L.tasks[i];
        PyObject *item = Py_BuildValue("(sdO)", task_state_names[t->state], t->seconds,
                                       t->error ? t->error : Py_None);
        if (!item) {
            Py_CLEAR(result);
            goto exit;
        }
        PyList_SET_ITEM(result, i, item);
    }
exit:
    if (!result && L.slots) {
        /* Ctrl-C, SIGTERM or an error of ours (a callback raised): stop what still runs. */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        cancel_all(&L);
        PyErr_Restore(et, ev, tb);
    }
    Py_XDECREF(L.on_event);
    Py_XDECREF(L.on_notice);
    loop_free(&L);
    return result;
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
    if (!self->L.st || load_tasks(&self->L, NULL, deps, prio, Py_None) < 0) {
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
    loop_free(&self->L);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *schedule_next(ScheduleObject *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t i = ready_pop(&self->L);
    if (i < 0)
        Py_RETURN_NONE;
    self->L.tasks[i].state = T_RUNNING;
    return PyLong_FromSsize_t(i);
}

static PyObject *schedule_done(ScheduleObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"index", "ok", NULL};
    Py_ssize_t i;
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
        return task_ok(L, i) < 0 ? NULL : PyList_New(0);
    if (!(before = malloc((size_t)L->n + 1)))
        return PyErr_NoMemory();
    for (Py_ssize_t k = 0; k < L->n; k++)
        before[k] = (char)L->tasks[k].state;
    if (task_failed(L, i, Py_NewRef(Py_None)) < 0 || !(skipped = PyList_New(0)))
        goto exit;
    for (Py_ssize_t k = 0; k < L->n; k++)
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

PyObject *pgvc_libpq_version(void) { return PyLong_FromLong(PQlibVersion()); }

PyObject *pgvc_lock_holders_sql(void) { return PyUnicode_FromString(LOCK_HOLDERS_SQL("%s")); }
