/* pqpath.c: the non-blocking loop that runs a dependency graph of statements over N libpq
 * connections: sending each statement with its session and lock guard, reading its results,
 * retrying a guarded one past a busy lock, cancelling on an error or a signal. One connection's
 * waits, connect and cancel are in pqconn.c; the tasks read from Python in pqpath_input.c; the
 * schedule (ready queue, task ends, notices) and _core.Schedule in pqpath_schedule.c.
 *
 * Everything the loop reads from Python is validated and copied into owned C memory before any
 * Python code (an on_event callback, a signal handler) can run. Connections are non-blocking:
 * the only call that waits is poll(), with the GIL released and signals checked every 100 ms;
 * connects and cancels have deadlines. No Python object is touched while the GIL is released. */
#include "pqpath_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pqlocks.h"
#include "sqlgen.h"

#define SLICE_MS PGVC_SLICE_MS
#define CANCEL_TIMEOUT 5.0 /* seconds for a cancel request, and for its statement to end */
#define HOLDER_TIMEOUT 5.0 /* seconds for the lock-holder query */

/* How much longer than deadlock_timeout a try waits when an autovacuum worker holds the lock. */
#define AUTOVACUUM_MARGIN_MS 200

#define now pgvc_now

/* Connect a slot (RAISES_NEG: ConnectionLostError, or a signal's error). */
static int connect_slot(Loop *L, Slot *slot)
{
    slot->conn = pgvc_connect(&L->opts, &slot->user_lock_timeout);
    return slot->conn ? 0 : -1;
}

/* Connect every slot at once (RAISES_NEG, as connect_slot), and make the session's text. The
 * connects the server refuses for its connection limit are left out while one is made: the
 * run goes on with fewer slots (L->jobs), L->wanted and L->refused saying what it asked. */
static int connect_slots(Loop *L)
{
    const int n = L->jobs;
    PGconn **conns = calloc((size_t)n, sizeof(PGconn *));
    long *lock_timeouts = calloc((size_t)n, sizeof(long));
    int rc = -1, opened;
    if (!conns || !lock_timeouts) {
        PyErr_NoMemory();
        goto exit;
    }
    L->wanted = n;
    if (pgvc_connect_many(&L->opts, conns, lock_timeouts, n, &L->refused) < 0)
        goto exit;
    /* Fewer when the server refused the others for its limit. */
    opened = L->refused.opened < n ? L->refused.opened : n;
    L->jobs = opened;
    for (int s = 0; s < opened; s++) {
        L->slots[s].conn = conns[s];
        L->slots[s].user_lock_timeout = lock_timeouts[s];
    }
    if (!(L->session_sql = pgvc_session_sql(&L->opts, L->slots[0].conn)))
        goto exit;
    rc = 0;
exit:
    free(conns);
    free(lock_timeouts);
    return rc;
}

/* ---- errors and lock waits ------------------------------------------------------------------ */

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
    return Py_BuildValue("{sNsNsNsNsOsO}", "message", pgvc_server_text(msg), "sqlstate",
                         pgvc_server_text(state), "detail", pgvc_server_text(detail), "hint",
                         pgvc_server_text(hint), "connection_lost", lost ? Py_True : Py_False,
                         "holders", Py_None);
}

/* The sessions that hold a lock a statement on the view waits for, or are queued for ACCESS
 * EXCLUSIVE on a relation it reads, as a list of dicts (pid, application_name, state, query,
 * backend_type, mode, relation, granted, behind), read on conn; None when they cannot be read within
 * HOLDER_TIMEOUT. */
static PyObject *lock_holders(PGconn *conn, const char *relation)
{
    const char *params[1] = {relation};
    char why;
    PGresult *r =
        pgvc_exec_wait(conn, LOCK_HOLDERS_SQL("$1"), 1, params, now() + HOLDER_TIMEOUT, &why);
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
        long v;
        /* pg_stat_activity's pid is an int4; one that cannot be read is None. */
        PyObject *pid =
            pgvc_parse_long(PQgetvalue(r, k, 0), &v) == 0 ? PyLong_FromLong(v) : Py_NewRef(Py_None);
        PyObject *row = Py_BuildValue(
            "{sNsNsNsNsNsNsNsNsN}", "pid", pid, "application_name",
            pgvc_server_text(PQgetvalue(r, k, 1)), "state",
            pgvc_server_text(PQgetisnull(r, k, 2) ? NULL : PQgetvalue(r, k, 2)), "query",
            pgvc_server_text(PQgetisnull(r, k, 3) ? NULL : PQgetvalue(r, k, 3)), "backend_type",
            pgvc_server_text(PQgetisnull(r, k, 4) ? NULL : PQgetvalue(r, k, 4)), "mode",
            pgvc_server_text(PQgetisnull(r, k, 5) ? NULL : PQgetvalue(r, k, 5)), "relation",
            pgvc_server_text(PQgetisnull(r, k, 6) ? NULL : PQgetvalue(r, k, 6)), "granted",
            PyBool_FromLong(!strcmp(PQgetvalue(r, k, 7), "t")), "behind",
            pgvc_server_text(PQgetisnull(r, k, 8) ? NULL : PQgetvalue(r, k, 8)));
        if (!row || PyList_Append(list, row) < 0)
            Py_CLEAR(list);
        Py_XDECREF(row);
    }
    PQclear(r);
    return list;
}

/* After a guarded statement's lock timeout: when an autovacuum worker holds a lock on the
 * relation, the lock_timeout that lets the next try get past it into *ms, else 0. PostgreSQL
 * cancels a (non-wraparound) autovacuum worker for a waiter only when that waiter's deadlock check
 * runs, after deadlock_timeout: a shorter try never does. RAISES_NEG only for a signal. */
static int autovacuum_wait(PGconn *conn, const char *relation, long *ms)
{
    const char *params[1] = {relation};
    char why;
    long deadlock_ms;
    PGresult *r =
        pgvc_exec_wait(conn, AUTOVACUUM_HOLDER_SQL, 1, params, now() + HOLDER_TIMEOUT, &why);
    *ms = 0;
    if (!r)
        return why == 's' ? -1 : 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) &&
        pgvc_parse_long(PQgetvalue(r, 0, 0), &deadlock_ms) == 0)
        *ms = deadlock_ms + AUTOVACUUM_MARGIN_MS;
    PQclear(r);
    return 0;
}

/* ---- sending and reading statements -------------------------------------------------------- */

/* The text sent for task i, one Query message and so one implicit transaction: the session
 * Django's connection has (SET LOCAL), then, for a guarded statement, a short lock_timeout (the
 * user's own, when shorter) or the bounded one on its last attempt (SET LOCAL), then the
 * statement. Nothing set survives the statement: a pooled server connection goes back as it came.
 * Integers and the escaped session only: nothing else from Python. */
static char *statement_text(Loop *L, Slot *slot, Task *t, int *last)
{
    long ms = 0, user = slot->user_lock_timeout;
    const char *session = L->session_sql ? L->session_sql : "";
    char guard[64] = "";
    size_t len;
    char *text;
    *last = 0;
    if (t->guard) {
        *last = t->attempts >= L->retries;
        ms = *last ? L->last_ms : L->short_ms;
        if (!*last && t->wait_ms > 0)
            ms = L->last_ms > 0 && L->last_ms < t->wait_ms ? L->last_ms : t->wait_ms;
        if (user > 0 && (ms <= 0 || user < ms))
            ms = user;
        snprintf(guard, sizeof guard, "SET LOCAL lock_timeout = %ld; ", ms);
    }
    len = strlen(session) + strlen(guard) + strlen(t->sql) + 1;
    if (!(text = malloc(len)))
        return NULL;
    snprintf(text, len, "%s%s%s", session, guard, t->sql);
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
        return pgvc_loop_task_failed(L, i, error_dict(slot->conn, NULL, NULL));
    }
    slot->flushing = rc == 1;
    slot->task = i;
    t->attempts++;
    if (t->state == T_RUNNING) /* a retry: already reported running */
        return 0;
    t->state = T_RUNNING;
    t->started = now();
    return pgvc_loop_notify(L, i);
}

/* A lost connection: try once for a new one; a server that is gone stays gone. RAISES_NEG only
 * for a signal while reconnecting. */
static int reconnect(Loop *L, Slot *slot)
{
    pgvc_conn_close(slot->conn);
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
    const char *refused = slot->refused;
    char *said = slot->said;
    slot->said = NULL;
    slot->bad = NULL;
    slot->refused = NULL;
    slot->task = -1;
    slot->flushing = 0;
    t->seconds = now() - t->started;
    lost = lost || PQstatus(slot->conn) == CONNECTION_BAD;
    if (!lost && !bad && !refused) {
        rc = pgvc_loop_task_ok(L, i);
        goto exit;
    }
    if (!lost && t->guard && state && !strcmp(state, "55P03") && !slot->last_attempt) {
        /* Lock busy: step out of the readers' queue, back off, try again (past
         * deadlock_timeout when the holder is an autovacuum worker). */
        double backoff = 0.05 * t->attempts;
        if ((rc = autovacuum_wait(slot->conn, t->guard, &t->wait_ms)) < 0)
            goto exit;
        t->not_before = now() + (backoff < 0.5 ? backoff : 0.5);
        rc = pgvc_loop_notify_retry(L, i, now() - t->started);
        goto exit;
    }
    {
        PyObject *error = error_dict(slot->conn, bad, bad ? NULL : refused ? refused : said);
        if (error && !lost && t->guard && state && !strcmp(state, "55P03")) {
            PyObject *holders = lock_holders(slot->conn, t->guard);
            if (!holders || PyDict_SetItemString(error, "holders", holders) < 0)
                Py_CLEAR(error);
            Py_XDECREF(holders);
        }
        rc = pgvc_loop_task_failed(L, i, error);
    }
    if (rc == 0 && lost)
        rc = reconnect(L, slot);
exit:
    PQclear(bad);
    free(said);
    return rc;
}

/* The connection closed: what the server sent before it (pg_terminate_backend's FATAL, read in
 * the same recv() as the end of the stream) is still in libpq's buffer, and PQgetResult parses
 * it without waiting (the socket is gone). Its error is the cause the statement failed with;
 * without it, only libpq's "server closed the connection unexpectedly", kept as it was before
 * this looked: a PQgetResult that finds nothing more adds "invalid socket" to it. */
static void keep_last_words(Slot *slot)
{
    free(slot->said);
    slot->said = strdup(PQerrorMessage(slot->conn)); /* NULL (no memory): libpq's as it is */
    for (int k = 0; k < 8; k++) { /* a few: one error, libpq's own, then NULL */
        PGresult *r = PQgetResult(slot->conn);
        if (!r)
            return;
        if (!slot->bad && PQresultStatus(r) == PGRES_FATAL_ERROR &&
            PQresultErrorField(r, PG_DIAG_SQLSTATE))
            slot->bad = r;
        else
            PQclear(r);
    }
}

/* Read what slot's connection has for us. RAISES_NEG. */
static int read_slot(Loop *L, Slot *slot, short revents)
{
    int ready;
    if (slot->flushing && (revents & (POLLOUT | POLLERR | POLLHUP))) {
        int rc = pgvc_flush(slot->conn);
        if (rc < 0)
            return finish_task(L, slot, 1);
        slot->flushing = rc == 1;
    }
    if (!(revents & (POLLIN | POLLERR | POLLHUP)))
        return 0;
    L->current_task = slot->task;
    for (;;) {
        PGresult *r;
        ExecStatusType status;
        if ((ready = pgvc_consume(slot->conn)) <= 0)
            break;
        if (!(r = PQgetResult(slot->conn))) {
            L->current_task = -1;
            return finish_task(L, slot, 0);
        }
        status = PQresultStatus(r);
        if (status == PGRES_COPY_OUT || status == PGRES_COPY_IN || status == PGRES_COPY_BOTH) {
            /* Nobody reads the rows, nobody sends any: discard, or end the COPY; it fails. */
            int step = pgvc_copy_step(slot->conn, status, PGVC_COPY_IN_REFUSED);
            PQclear(r);
            if (!slot->refused)
                slot->refused =
                    status == PGRES_COPY_OUT ? PGVC_COPY_OUT_REFUSED : PGVC_COPY_IN_REFUSED;
            if (step != 0) {
                ready = step; /* -1: broken; else wait for the socket (2: to write) */
                slot->flushing = step == 2;
                break;
            }
            continue;
        }
        if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && !slot->bad)
            slot->bad = r;
        else
            PQclear(r);
    }
    L->current_task = -1;
    if (ready < 0)
        keep_last_words(slot);
    return ready < 0 ? finish_task(L, slot, 1) : 0;
}

/* Read and discard what a cancelled statement still sends, until its end or the deadline; a
 * COPY is ended as pgvc_copy_step ends it. Signals are not checked: the one that stopped the
 * loop is being handled. */
static void drain_slot(PGconn *conn, double deadline)
{
    for (;;) {
        int ready = pgvc_consume(conn), step = 0, prc;
        struct pollfd pfd;
        if (ready < 0)
            return;
        if (ready) {
            PGresult *r = PQgetResult(conn);
            ExecStatusType status;
            if (!r)
                return;
            status = PQresultStatus(r);
            PQclear(r);
            if (status == PGRES_COPY_OUT || status == PGRES_COPY_IN || status == PGRES_COPY_BOTH)
                step = pgvc_copy_step(conn, status, PGVC_COPY_IN_REFUSED);
            if (step < 0)
                return;
            if (!step)
                continue;
        }
        if (now() >= deadline)
            return;
        pfd.fd = PQsocket(conn);
        pfd.events = (short)(POLLIN | (step == 2 ? POLLOUT : 0));
        Py_BEGIN_ALLOW_THREADS
        prc = poll(&pfd, 1, SLICE_MS);
        Py_END_ALLOW_THREADS
        if (prc < 0 && errno != EINTR)
            return;
    }
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
        ok = pgvc_cancel_bounded(slot->conn, CANCEL_TIMEOUT, reason, sizeof reason);
        Py_END_ALLOW_THREADS
        if (!ok) {
            /* The statement may go on on the server: say so, and drop the connection. */
            PyObject *et, *ev, *tb;
            PyErr_Fetch(&et, &ev, &tb);
            if (PyErr_WarnFormat(PyExc_RuntimeWarning, 1, "could not cancel statement %zd: %s",
                                 slot->task, reason) < 0)
                PyErr_Clear();
            PyErr_Restore(et, ev, tb);
            pgvc_conn_close(slot->conn);
            slot->conn = NULL;
        }
    }
    deadline = now() + CANCEL_TIMEOUT;
    for (int s = 0; s < L->jobs; s++)
        if (L->slots[s].task >= 0 && L->slots[s].conn) {
            drain_slot(L->slots[s].conn, deadline);
            L->slots[s].task = -1;
        }
}

/* ---- the loop --------------------------------------------------------------------------- */

static int count_done(const Loop *L)
{
    for (Py_ssize_t i = 0; i < L->n; i++)
        if (L->tasks[i].state == T_WAITING || L->tasks[i].state == T_RUNNING)
            return 0;
    return 1;
}

/* The retries whose back-off has passed into retry (their count returned), ready again;
 * *timeout shortened to wake for the next one due. */
static Py_ssize_t due_retries(Loop *L, double t, Py_ssize_t *retry, int *timeout)
{
    Py_ssize_t nretry = 0;
    for (Py_ssize_t i = 0; i < L->n; i++)
        if (L->tasks[i].state == T_RUNNING && L->tasks[i].not_before > 0) {
            if (L->tasks[i].not_before <= t) {
                L->tasks[i].not_before = 0;
                retry[nretry++] = i;
            } else if ((L->tasks[i].not_before - t) * 1000 < *timeout)
                *timeout = (int)((L->tasks[i].not_before - t) * 1000) + 1;
        }
    return nretry;
}

/* RAISES_NEG. Each free connection starts a due retry, else the next ready task; back-offs not
 * started for want of a free connection wait for the next turn (not_before = t). */
static int start_tasks(Loop *L, double t, Py_ssize_t *retry, Py_ssize_t nretry)
{
    for (int s = 0; s < L->jobs; s++) {
        Slot *slot = &L->slots[s];
        Py_ssize_t i;
        if (slot->task >= 0 || slot->dead)
            continue;
        if (nretry)
            i = retry[--nretry];
        else if ((i = pgvc_loop_ready_pop(L)) < 0)
            break;
        if (start_task(L, slot, i) < 0)
            return -1;
    }
    while (nretry)
        L->tasks[retry[--nretry]].not_before = t;
    return 0;
}

/* RAISES_NEG; 1 when nothing runs and nothing can start (every connection is gone): the tasks
 * left are skipped. fds are set for the next poll. */
static int set_fds(Loop *L, struct pollfd *fds)
{
    int busy = 0, alive = 0, waiting_retry = 0;
    for (int s = 0; s < L->jobs; s++) {
        Slot *slot = &L->slots[s];
        fds[s].fd = slot->task >= 0 && slot->conn ? PQsocket(slot->conn) : -1;
        fds[s].events = POLLIN | (slot->flushing ? POLLOUT : 0);
        fds[s].revents = 0;
        busy += slot->task >= 0;
        alive += !slot->dead;
    }
    if (busy)
        return 0;
    for (Py_ssize_t i = 0; i < L->n; i++)
        waiting_retry |= L->tasks[i].state == T_RUNNING && L->tasks[i].not_before > 0;
    if (alive && (L->hlen || waiting_retry))
        return 0;
    for (Py_ssize_t i = 0; i < L->n; i++)
        if (L->tasks[i].state == T_WAITING || L->tasks[i].state == T_RUNNING) {
            L->tasks[i].state = T_SKIPPED;
            if (pgvc_loop_notify(L, i) < 0)
                return -1;
        }
    return 1;
}

/* RAISES_NEG. Waits (up to timeout ms) for the connections, and reads those that are ready. */
static int poll_and_read(Loop *L, struct pollfd *fds, int timeout)
{
    int prc;
    Py_BEGIN_ALLOW_THREADS
    prc = poll(fds, (nfds_t)L->jobs, timeout);
    Py_END_ALLOW_THREADS
    if (prc < 0 && errno != EINTR) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (PyErr_CheckSignals() < 0)
        return -1;
    for (int s = 0; s < L->jobs; s++)
        if (L->slots[s].task >= 0 && fds[s].revents &&
            read_slot(L, &L->slots[s], fds[s].revents) < 0)
            return -1;
    return pgvc_loop_flush_notices(L);
}

/* RAISES_NEG. Every task ends ok, failed or skipped. */
static int run_loop(Loop *L)
{
    struct pollfd *fds = calloc((size_t)L->jobs, sizeof(struct pollfd));
    Py_ssize_t *retry = malloc(sizeof(Py_ssize_t) * (size_t)(L->n + 1));
    int rc = -1;
    if (!fds || !retry) {
        PyErr_NoMemory();
        goto exit;
    }
    while (!count_done(L)) {
        int timeout = SLICE_MS, stalled;
        double t = now();
        Py_ssize_t nretry = due_retries(L, t, retry, &timeout);
        if (start_tasks(L, t, retry, nretry) < 0 || (stalled = set_fds(L, fds)) < 0)
            goto exit;
        if (stalled)
            break;
        if (poll_and_read(L, fds, timeout) < 0)
            goto exit;
    }
    rc = 0;
exit:
    free(fds);
    free(retry);
    return rc;
}

/* RAISES_NEG: the options of run_parallel in range, its callbacks callable or None. */
static int check_run_options(const Loop *L, int jobs, int retries, int short_ms, int last_ms)
{
    if (jobs < 1) {
        PyErr_SetString(PyExc_ValueError, "run_parallel: jobs must be at least 1");
        return -1;
    }
    if (retries < 0 || short_ms < 1 || last_ms < 1) {
        PyErr_SetString(PyExc_ValueError,
                        "run_parallel: lock_retries must be >= 0, lock timeouts >= 1 ms");
        return -1;
    }
    if ((L->on_event != Py_None && !PyCallable_Check(L->on_event)) ||
        (L->on_notice != Py_None && !PyCallable_Check(L->on_notice)) ||
        (L->on_refused != Py_None && !PyCallable_Check(L->on_refused))) {
        PyErr_SetString(
            PyExc_TypeError,
            "run_parallel: on_event, on_notice and on_refused must be callable or None");
        return -1;
    }
    return 0;
}

/* RAISES_NEG. One connection per job (no more than there are tasks, one at least), each set
 * up, all connecting at once (or taken from `early`, connect_loop's); the first tells the
 * session's SQL. Fewer when the server refused some for its connection limit, told to
 * on_refused. */
static int open_slots(Loop *L, int jobs, PyObject *early)
{
    L->jobs = jobs > L->n ? (L->n ? (int)L->n : 1) : jobs;
    if (!(L->slots = calloc((size_t)L->jobs, sizeof(Slot)))) {
        PyErr_NoMemory();
        return -1;
    }
    for (int s = 0; s < L->jobs; s++)
        L->slots[s].task = -1;
    if ((early != Py_None ? pgvc_early_take(early, L) : connect_slots(L)) < 0)
        return -1;
    if (L->jobs < L->wanted && L->on_refused != Py_None) {
        /* The server refused some for its connection limit: on_refused(opened, wanted, why),
         * why in the server's text, which need not be UTF-8. */
        PyObject *r = PyObject_CallFunction(L->on_refused, "iiN", L->jobs, L->wanted,
                                            pgvc_server_text(L->refused.reason));
        if (!r)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* [(state, seconds, error or None)] of every task, in the order given. */
static PyObject *task_results(const Loop *L)
{
    PyObject *result = PyList_New(L->n);
    for (Py_ssize_t i = 0; result && i < L->n; i++) {
        const Task *t = &L->tasks[i];
        PyObject *item = Py_BuildValue("(sdO)", pgvc_task_state_names[t->state], t->seconds,
                                       t->error ? t->error : Py_None);
        if (!item) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, i, item);
    }
    return result;
}

/* run_parallel's keywords, in the order of its arguments. */
static char *run_kwlist[] = {"conninfo",
                             "statements",
                             "dependencies",
                             "priority",
                             "jobs",
                             "setup",
                             "on_event",
                             "session",
                             "guard",
                             "on_notice",
                             "lock_retries",
                             "lock_timeout_ms",
                             "last_lock_timeout_ms",
                             "connections",
                             "on_refused",
                             NULL};

PyObject *pgvc_run_parallel(pgvc_state *st, PyObject *args, PyObject *kwargs)
{
    PyObject *conninfo, *stmts, *deps, *prio, *setup = Py_None, *session = Py_None,
                                              *guard = Py_None, *early = Py_None, *result = NULL;
    int jobs, retries = 10, short_ms = 200, last_ms = 10000;
    Loop L;
    memset(&L, 0, sizeof L);
    L.st = L.opts.st = st;
    L.opts.notice = pgvc_loop_notice_receiver;
    L.opts.notice_arg = &L;
    L.on_event = L.on_notice = L.on_refused = Py_None;
    L.current_task = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOi|OOOOOiiiOO:run_parallel", run_kwlist,
                                     &conninfo, &stmts, &deps, &prio, &jobs, &setup, &L.on_event,
                                     &session, &guard, &L.on_notice, &retries, &short_ms, &last_ms,
                                     &early, &L.on_refused))
        return NULL;
    if (check_run_options(&L, jobs, retries, short_ms, last_ms) < 0)
        return NULL;
    Py_INCREF(L.on_event);
    Py_INCREF(L.on_notice);
    Py_INCREF(L.on_refused);
    L.retries = retries;
    L.short_ms = short_ms;
    L.last_ms = last_ms;
    if (pgvc_connopts_load(&L.opts, "run_parallel", conninfo, session, setup) < 0 ||
        pgvc_loop_load_tasks(&L, stmts, deps, prio, guard) < 0)
        goto exit;
    if (open_slots(&L, jobs, early) < 0 || run_loop(&L) < 0)
        goto exit;
    result = task_results(&L);
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
    Py_XDECREF(L.on_refused);
    pgvc_loop_free(&L);
    return result;
}

PyObject *pgvc_libpq_version(void) { return PyLong_FromLong(PQlibVersion()); }

PyObject *pgvc_populated_sql(void)
{
    return PyUnicode_FromString(
        "SELECT coalesce((SELECT c.relispopulated FROM pg_catalog.pg_class c "
        "WHERE c.oid = pg_catalog.to_regclass(u.t)), true) "
        "FROM pg_catalog.unnest(%s::text[]) WITH ORDINALITY AS u(t, n) ORDER BY u.n");
}

PyObject *pgvc_lock_holders_sql(void) { return PyUnicode_FromString(LOCK_HOLDERS_SQL("%s")); }
