/* pqconnect.c: the refresh loop's connects: every one started at once and driven together in
 * one poll() under the connect deadline, then set up (non-blocking mode, notice receiver, the
 * caller's setup statement, the user's lock_timeout). A connect the server refuses for its
 * connection limit (SQLSTATE 53300: max_connections reached, the slots left reserved, a role's
 * or a database's CONNECTION LIMIT) may be left out when another one was made: the loop then
 * runs with fewer connections. libpq keeps a connect's SQLSTATE to itself, so the connects run
 * at PQERRORS_VERBOSE, whose message carries it, and the message is given back as the default
 * verbosity writes it. */
#include "pqconn.h"

#include "connmsg.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The caller's setup statement; then read lock_timeout (ms, 0: none) into *lock_timeout. The
 * session Django's connection has is not set here: pgvc_session_sql gives each statement its own
 * copy, so nothing of it outlives the statement's transaction. RAISES_NEG. */
static int apply_session(const pgvc_connopts *L, PGconn *conn, long *lock_timeout)
{
    PGresult *r = NULL;
    char why;
    int rc = -1;
    double deadline = L->connect_timeout > 0 ? pgvc_now() + L->connect_timeout : 0;
    if (L->setup) {
        r = pgvc_exec_wait(conn, L->setup, 0, NULL, deadline, &why);
        if (!r)
            goto failed;
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
            pgvc_raise_pg(L->st, conn, r, NULL);
            goto exit;
        }
        PQclear(r);
    }
    r = pgvc_exec_wait(conn,
                       "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'lock_timeout'", 0,
                       NULL, deadline, &why);
    if (!r)
        goto failed;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pgvc_raise_pg(L->st, conn, r, NULL);
        goto exit;
    }
    *lock_timeout = 0;
    if (PQntuples(r) && pgvc_parse_long(PQgetvalue(r, 0, 0), lock_timeout) < 0) {
        PyErr_Format(L->st->DatabaseError,
                     "could not connect: the server's lock_timeout is not a "
                     "number of milliseconds: %.100s",
                     PQgetvalue(r, 0, 0));
        goto exit;
    }
    rc = 0;
    goto exit;
failed:
    if (why == 't')
        PyErr_Format(L->st->ConnectionLostError,
                     "could not connect: the server did not answer within %d s",
                     (int)L->connect_timeout);
    else if (why == 'b')
        PyErr_Format(L->st->ConnectionLostError, "could not connect: %s", PQerrorMessage(conn));
    else if (why == 'c')
        PyErr_Format(L->st->DatabaseError, "could not connect: the setup statement: %s",
                     PGVC_COPY_OUT_REFUSED);
exit:
    PQclear(r);
    return rc;
}

/* ---- a failed connect's message ------------------------------------------------------------ */

/* A failed connect's message (libpq's, at PQERRORS_VERBOSE) as the default verbosity writes it
 * (connmsg.c); *refused set for a refusal for the connection limit, its message in reason. */
static char *connect_error(PGconn *conn, int *refused, char *reason, size_t reason_cap)
{
    return pgvc_connect_message(PQerrorMessage(conn), refused, reason, reason_cap);
}

/* ---- connecting ------------------------------------------------------------------------------ */

/* One step of the connect of conns[i], whose socket is ready (or gone: libpq then says why). */
static PostgresPollingStatusType connect_step(PGconn *conn)
{
    PostgresPollingStatusType s;
    Py_BEGIN_ALLOW_THREADS
    s = PQconnectPoll(conn);
    Py_END_ALLOW_THREADS
    return s;
}

/* Drive the connects under way in conns[0..n) (their states in s) together, in one poll(), until
 * each is done or failed, under the deadline (<= 0: none), checking signals every slice.
 * RAISES_NEG: ConnectionLostError when the deadline passes, or the signal handler's exception. */
static int poll_connects(const pgvc_connopts *L, PGconn **conns, PostgresPollingStatusType *s,
                         struct pollfd *fds, int n, double deadline)
{
    for (;;) {
        int waiting = 0, slice = PGVC_SLICE_MS, rc;
        for (int i = 0; i < n; i++) {
            fds[i].fd = -1;
            fds[i].events = fds[i].revents = 0;
            if (s[i] == PGRES_POLLING_OK || s[i] == PGRES_POLLING_FAILED)
                continue;
            if ((fds[i].fd = PQsocket(conns[i])) < 0) {
                /* No socket: libpq reports the failure. */
                if ((s[i] = connect_step(conns[i])) != PGRES_POLLING_OK)
                    s[i] = PGRES_POLLING_FAILED;
                continue;
            }
            fds[i].events = (short)(POLLIN | (s[i] == PGRES_POLLING_WRITING ? POLLOUT : 0));
            waiting++;
        }
        if (!waiting)
            return 0;
        if (deadline > 0) {
            double left = deadline - pgvc_now();
            if (left <= 0) {
                PyErr_Format(L->st->ConnectionLostError,
                             "could not connect: the server did not answer within %d s "
                             "(connect_timeout)",
                             (int)L->connect_timeout);
                return -1;
            }
            if (left * 1000 < slice)
                slice = (int)(left * 1000) + 1;
        }
        Py_BEGIN_ALLOW_THREADS
        rc = poll(fds, (nfds_t)n, slice);
        Py_END_ALLOW_THREADS
        if (rc < 0 && errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0)
            return -1;
        for (int i = 0; rc > 0 && i < n; i++)
            if (fds[i].fd >= 0 && fds[i].revents)
                s[i] = connect_step(conns[i]);
    }
}

/* A connect that is done: default verbosity, non-blocking mode, the notice receiver, the setup
 * statement and the user's lock_timeout. A failed one raises ConnectionLostError with libpq's
 * message (which names host and port, never the password). RAISES_NEG. */
static int connect_finish(const pgvc_connopts *L, PGconn *conn, PostgresPollingStatusType s,
                          long *lock_timeout)
{
    if (s == PGRES_POLLING_FAILED) {
        char reason[8];
        int refused;
        char *text = connect_error(conn, &refused, reason, sizeof reason);
        if (text)
            PyErr_Format(L->st->ConnectionLostError, "could not connect: %s", text);
        else
            PyErr_NoMemory();
        free(text);
        return -1;
    }
    PQsetErrorVerbosity(conn, PQERRORS_DEFAULT);
    if (PQsetnonblocking(conn, 1) != 0) {
        PyErr_Format(L->st->ConnectionLostError, "could not connect: %s", PQerrorMessage(conn));
        return -1;
    }
    if (L->notice)
        PQsetNoticeReceiver(conn, L->notice, L->notice_arg);
    return apply_session(L, conn, lock_timeout);
}

/* Start the n connects at once, so that the server starts their backends side by side.
 * RAISES_NEG. */
static int start_connects(const pgvc_connopts *L, PGconn **conns, PostgresPollingStatusType *s,
                          int n)
{
    for (int i = 0; i < n; i++) {
        Py_BEGIN_ALLOW_THREADS
        conns[i] = PQconnectStartParams((const char *const *)L->conninfo.keys,
                                        (const char *const *)L->conninfo.values, 0);
        Py_END_ALLOW_THREADS
        if (!conns[i]) {
            PyErr_NoMemory();
            return -1;
        }
        /* A refusal's SQLSTATE is in the message at this verbosity only. */
        PQsetErrorVerbosity(conns[i], PQERRORS_VERBOSE);
        s[i] = PQstatus(conns[i]) == CONNECTION_BAD ? PGRES_POLLING_FAILED : PGRES_POLLING_WRITING;
    }
    return 0;
}

/* Which failed connects the server refused for its connection limit (refused[i] set; the first
 * one's message in some->reason). Returns how many. */
static int find_refused(PGconn **conns, const PostgresPollingStatusType *s, char *refused, int n,
                        pgvc_refused *some)
{
    int count = 0;
    for (int i = 0; i < n; i++) {
        char reason[sizeof some->reason] = "";
        int limit = 0;
        if (s[i] != PGRES_POLLING_FAILED)
            continue;
        free(connect_error(conns[i], &limit, reason, sizeof reason));
        refused[i] = (char)limit;
        if (limit && !count++)
            memcpy(some->reason, reason, sizeof reason);
    }
    return count;
}

int pgvc_connect_many(const pgvc_connopts *L, PGconn **conns, long *lock_timeouts, int n,
                      pgvc_refused *some)
{
    PostgresPollingStatusType *s = calloc((size_t)n, sizeof *s);
    struct pollfd *fds = calloc((size_t)n, sizeof *fds);
    char *refused = calloc((size_t)n, 1);
    double deadline = L->connect_timeout > 0 ? pgvc_now() + L->connect_timeout : 0;
    int rc = -1, opened = 0, nrefused = 0;
    for (int i = 0; i < n; i++)
        conns[i] = NULL;
    if (some)
        *some = (pgvc_refused){0, ""};
    if (!s || !fds || !refused) {
        PyErr_NoMemory();
        goto exit;
    }
    if (start_connects(L, conns, s, n) < 0 || poll_connects(L, conns, s, fds, n, deadline) < 0)
        goto exit;
    if (some)
        nrefused = find_refused(conns, s, refused, n, some);
    /* Any other failure is the run's error; so is a refusal when no connect is left. */
    for (int i = 0; i < n; i++)
        if ((!refused[i] || nrefused == n) &&
            connect_finish(L, conns[i], s[i], &lock_timeouts[i]) < 0)
            goto exit;
    for (int i = 0; i < n; i++) {
        if (refused[i]) {
            pgvc_conn_close(conns[i]);
        } else {
            conns[opened] = conns[i];
            lock_timeouts[opened++] = lock_timeouts[i];
        }
        if (i >= opened)
            conns[i] = NULL;
    }
    if (some)
        some->opened = opened;
    rc = 0;
exit:
    if (rc < 0)
        for (int i = 0; i < n; i++) {
            pgvc_conn_close(conns[i]);
            conns[i] = NULL;
        }
    free(s);
    free(fds);
    free(refused);
    return rc;
}

PGconn *pgvc_connect(const pgvc_connopts *L, long *lock_timeout)
{
    PGconn *conn = NULL;
    return pgvc_connect_many(L, &conn, lock_timeout, 1, NULL) < 0 ? NULL : conn;
}
