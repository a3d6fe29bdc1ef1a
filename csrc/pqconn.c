/* pqconn.c: one libpq connection, as the refresh loop uses it: Python input copied into owned
 * C memory, the session Django's connection has, waiting in poll() with the GIL released and
 * signals checked, running one query to its end, and a cancel that gives up after a bound. The
 * connects themselves are in pqconnect.c. */
#include "pqconn.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sqlgen.h"

double pgvc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- owned copies of Python input ------------------------------------------------------- */

/* A str without NUL bytes, copied with malloc. NULL with TypeError/ValueError naming `what`. */
char *pgvc_owned_str(PyObject *o, const char *fn, const char *what, Py_ssize_t index)
{
    const char *s;
    Py_ssize_t len;
    char *copy, name[128];
    pgvc_arg_name(name, sizeof name, fn, what, index);
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str, not %.100s", name, Py_TYPE(o)->tp_name);
        return NULL;
    }
    if (!(s = PyUnicode_AsUTF8AndSize(o, &len))) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            pgvc_raise_not_utf8(name);
        return NULL;
    }
    if ((Py_ssize_t)strlen(s) != len) {
        PyErr_Format(PyExc_ValueError, "%s contains a NUL byte", name);
        return NULL;
    }
    if (!(copy = malloc((size_t)len + 1))) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, s, (size_t)len + 1);
    return copy;
}

void pgvc_pairs_free(pgvc_pairs *p)
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
int pgvc_pairs_from_dict(PyObject *dict, const char *fn, const char *what, pgvc_pairs *p)
{
    PyObject *k, *v;
    Py_ssize_t pos = 0, size;
    *p = (pgvc_pairs){NULL, NULL, 0};
    if (dict == Py_None)
        size = 0;
    else if (!PyDict_Check(dict)) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be a dict of str to str, not %.100s", fn, what,
                     Py_TYPE(dict)->tp_name);
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
            PyErr_Format(PyExc_TypeError, "%s: %s must be a dict of str to str (%R: %.100s)", fn,
                         what, k, Py_TYPE(v)->tp_name);
            goto error;
        }
        if (!(p->keys[p->n] = pgvc_owned_str(k, fn, what, -1)))
            goto error;
        if (!(p->values[p->n] = pgvc_owned_str(v, fn, what, -1))) {
            free(p->keys[p->n]);
            p->keys[p->n] = NULL;
            goto error;
        }
        p->n++;
    }
    return 0;
error:
    pgvc_pairs_free(p);
    return -1;
}

const char *pgvc_pairs_get(const pgvc_pairs *p, const char *key)
{
    for (Py_ssize_t i = 0; i < p->n; i++)
        if (!strcmp(p->keys[i], key))
            return p->values[i];
    return NULL;
}

/* ---- waiting ------------------------------------------------------------------------------ */

/* Wait until the socket is ready (POLLIN, plus POLLOUT when for_write) or the deadline passes
 * (deadline <= 0: none), checking signals every SLICE_MS. Returns 0 ready, 1 timed out, -1 with
 * the signal handler's exception set. */
int pgvc_wait_socket(PGconn *conn, int for_write, double deadline)
{
    struct pollfd pfd;
    pfd.fd = PQsocket(conn);
    if (pfd.fd < 0)
        return 0; /* the next libpq call reports the broken connection */
    pfd.events = POLLIN | (for_write ? POLLOUT : 0);
    for (;;) {
        int rc, slice = PGVC_SLICE_MS;
        if (deadline > 0) {
            double left = deadline - pgvc_now();
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
int pgvc_flush(PGconn *conn)
{
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = PQflush(conn);
    Py_END_ALLOW_THREADS
    return rc;
}

/* Read what arrived. Returns 1 when PQgetResult will not block, 0 when busy, -1 when broken. */
int pgvc_consume(PGconn *conn)
{
    int ok, busy;
    Py_BEGIN_ALLOW_THREADS
    ok = PQconsumeInput(conn);
    busy = ok ? PQisBusy(conn) : 1;
    Py_END_ALLOW_THREADS
    return ok ? !busy : -1;
}

int pgvc_copy_step(PGconn *conn, ExecStatusType status, const char *message)
{
    int rc;
    if (status != PGRES_COPY_OUT) {
        /* In (or both ways): the end, with an error; 0 means libpq's buffer is full. */
        Py_BEGIN_ALLOW_THREADS
        rc = PQputCopyEnd(conn, message);
        rc = rc == 1 ? PQflush(conn) : rc == 0 ? 1 : -1;
        Py_END_ALLOW_THREADS
        return rc < 0 ? -1 : rc == 1 ? 2 : 0;
    }
    for (;;) {
        char *row = NULL;
        rc = PQgetCopyData(conn, &row, 1);
        if (row)
            PQfreemem(row);
        if (rc <= 0)
            return rc == 0 ? 1 : 0; /* -1: done; -2: failed, PQgetResult says why */
    }
}

/* The results of the query sent on conn, until the deadline: the first failed one, else the
 * last, into *keep; a COPY ended as pgvc_copy_step ends it (*copied set). Returns 0 at the end
 * of the results, 'b' (broken), 't' (deadline) or 's' (signal, the exception set). */
static char collect_results(PGconn *conn, double deadline, PGresult **keep, int *copied)
{
    for (;;) {
        int ready = pgvc_consume(conn), wait_for = 0;
        PGresult *r;
        ExecStatusType status;
        if (ready < 0)
            return 'b';
        if (ready) {
            if (!(r = PQgetResult(conn)))
                return *keep ? 0 : 'b';
            status = PQresultStatus(r);
            if (status == PGRES_COPY_OUT || status == PGRES_COPY_IN || status == PGRES_COPY_BOTH) {
                PQclear(r);
                *copied = 1;
                if ((wait_for = pgvc_copy_step(conn, status, PGVC_COPY_IN_REFUSED)) < 0)
                    return 'b';
            } else if (*keep && PQresultStatus(*keep) == PGRES_FATAL_ERROR)
                PQclear(r);
            else {
                PQclear(*keep);
                *keep = r;
            }
            if (!wait_for)
                continue;
        }
        switch (pgvc_wait_socket(conn, wait_for == 2, deadline)) {
        case 0: continue;
        case 1: return 't';
        default: return 's';
        }
    }
}

/* Run one query (params: NULL or nparams strings) and wait for all of its results, until the
 * deadline (<= 0: none). Returns the first failed result, else the last one; NULL with an
 * exception set when the connection broke, the deadline passed or a signal arrived (*why says
 * which: 'b'roken, 't'imeout, 's'ignal), or a COPY was refused ('c'). */
PGresult *pgvc_exec_wait(PGconn *conn, const char *sql, int nparams, const char *const *params,
                         double deadline, char *why)
{
    PGresult *keep = NULL;
    int sent, rc, copied = 0;
    *why = 0;
    Py_BEGIN_ALLOW_THREADS
    if (nparams)
        sent = PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    else
        sent = PQsendQuery(conn, sql);
    Py_END_ALLOW_THREADS
    if (!sent) {
        *why = 'b';
        return NULL;
    }
    while ((rc = pgvc_flush(conn)) == 1)
        if ((rc = pgvc_wait_socket(conn, 1, deadline)) != 0) {
            *why = rc > 0 ? 't' : 's';
            return NULL;
        }
    if (rc < 0)
        *why = 'b';
    else if (!(*why = collect_results(conn, deadline, &keep, &copied)) && copied &&
             PQresultStatus(keep) != PGRES_FATAL_ERROR)
        *why = 'c'; /* a COPY TO STDOUT that ran: nobody read its rows */
    if (*why) {
        PQclear(keep);
        return NULL;
    }
    return keep;
}

/* ---- cancelling, bounded ------------------------------------------------------------------- */

#ifdef LIBPQ_HAS_ASYNC_CANCEL
/* libpq >= 17: a non-blocking cancel connection, polled until the deadline. */
int pgvc_cancel_bounded(PGconn *conn, double seconds, char *reason, size_t reason_cap)
{
    PGcancelConn *cc = PQcancelCreate(conn);
    double deadline = pgvc_now() + seconds;
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
        if (pgvc_now() >= deadline) {
            snprintf(reason, reason_cap, "no answer within %.0f s", seconds);
            PQcancelFinish(cc);
            return 0;
        }
        pfd.fd = PQcancelSocket(cc);
        pfd.events = s == PGRES_POLLING_WRITING ? POLLOUT : POLLIN;
        if (poll(&pfd, 1, PGVC_SLICE_MS) < 0 && errno != EINTR)
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
int pgvc_cancel_bounded(PGconn *conn, double seconds, char *reason, size_t reason_cap)
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

/* ---- connections' lifetime and session (the connects are in pqconnect.c) ------------------- */

void pgvc_conn_close(PGconn *conn)
{
    if (!conn)
        return;
    Py_BEGIN_ALLOW_THREADS
    PQfinish(conn);
    Py_END_ALLOW_THREADS
}

char *pgvc_session_sql(const pgvc_connopts *L, PGconn *conn)
{
    pgvc_buf sql;
    char *text = NULL;
    pgvc_buf_init(&sql);
    for (Py_ssize_t i = 0; i < L->session.n; i++) {
        const char *name = L->session.keys[i];
        const char *value = L->session.values[i];
        char *literal = NULL;
        /* default_transaction_isolation binds the next transaction only: this one takes
         * transaction_isolation, allowed because no statement before it takes a snapshot. */
        if (!strcmp(name, "default_transaction_isolation"))
            name = "transaction_isolation";
        if (!(literal = PQescapeLiteral(conn, value, strlen(value)))) {
            PyErr_Format(L->st->PGViewsError, "session setting %s: %s", L->session.keys[i],
                         PQerrorMessage(conn));
            goto exit;
        }
        pgvc_buf_puts(&sql, "SET LOCAL ");
        pgvc_buf_ident(&sql, name);
        pgvc_buf_puts(&sql, " = ");
        pgvc_buf_puts(&sql, literal);
        pgvc_buf_puts(&sql, "; ");
        PQfreemem(literal);
    }
    if (sql.oom || !(text = strdup(sql.data ? sql.data : ""))) {
        PyErr_NoMemory();
        goto exit;
    }
exit:
    pgvc_buf_free(&sql);
    return text;
}

/* RAISES_NEG. conninfo (with a default connect_timeout), session and setup, copied. */
int pgvc_connopts_load(pgvc_connopts *L, const char *fn, PyObject *conninfo, PyObject *session,
                       PyObject *setup)
{
    const char *timeout;
    if (pgvc_pairs_from_dict(conninfo, fn, "conninfo", &L->conninfo) < 0 ||
        pgvc_pairs_from_dict(session, fn, "session", &L->session) < 0)
        return -1;
    if (setup != Py_None && !(L->setup = pgvc_owned_str(setup, fn, "setup", -1)))
        return -1;
    /* The user's connect_timeout (the keyword, else the environment, as libpq reads it); an
     * async connect ignores it, so the deadline is ours to keep. */
    timeout = pgvc_pairs_get(&L->conninfo, "connect_timeout");
    if (!timeout)
        timeout = getenv("PGCONNECT_TIMEOUT");
    if (timeout) {
        long v;
        if (pgvc_parse_long(timeout, &v) < 0) {
            PyErr_Format(PyExc_ValueError, "%s: connect_timeout is not an integer: %s", fn,
                         timeout);
            return -1;
        }
        /* libpq: zero or less waits without end; 1 means 2. */
        L->connect_timeout = v <= 0 ? 0 : v < 2 ? 2 : (double)v;
    } else
        L->connect_timeout = PGVC_DEFAULT_CONNECT_TIMEOUT;
    return 0;
}

void pgvc_connopts_free(pgvc_connopts *o)
{
    pgvc_pairs_free(&o->conninfo);
    pgvc_pairs_free(&o->session);
    free(o->setup);
    o->setup = NULL;
}
