/* pqconn.h: one libpq connection as the refresh loop uses it. Every wait here runs in poll()
 * with the GIL released and checks signals every PGVC_SLICE_MS; no Python object is touched
 * while the GIL is released. */
#ifndef PGVC_PQCONN_H
#define PGVC_PQCONN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <libpq-fe.h>

#include "errors.h"

#define PGVC_SLICE_MS 100 /* how often a wait checks for signals */
#define PGVC_DEFAULT_CONNECT_TIMEOUT 10 /* seconds, unless conninfo says otherwise */

/* Monotonic seconds. */
double pgvc_now(void);

/* A str without NUL bytes, copied with malloc; NULL with TypeError/ValueError naming the
 * function fn and its argument what[index] (index < 0: what); a str that has no UTF-8 (a lone
 * surrogate) is a ValueError too, the codec's error its cause. */
char *pgvc_owned_str(PyObject *o, const char *fn, const char *what, Py_ssize_t index);

/* NULL-terminated key and value arrays, owned. */
typedef struct {
    char **keys, **values;
    Py_ssize_t n;
} pgvc_pairs;

/* RAISES_NEG. A dict of str -> str (None: empty), copied; fn and `what` name the function and
 * the argument. */
int pgvc_pairs_from_dict(PyObject *dict, const char *fn, const char *what, pgvc_pairs *p);
void pgvc_pairs_free(pgvc_pairs *p);
const char *pgvc_pairs_get(const pgvc_pairs *p, const char *key);

/* How to connect: libpq keywords, the session settings (SET LOCAL in every statement's own
 * transaction, pgvc_session_sql), a setup statement, the connect deadline, and a notice receiver (called without the GIL). */
typedef struct {
    pgvc_state *st;
    pgvc_pairs conninfo, session;
    char *setup;
    double connect_timeout; /* seconds; <= 0: none */
    PQnoticeReceiver notice;
    void *notice_arg;
} pgvc_connopts;

/* RAISES_NEG. Copies conninfo, session (dicts of str, or None) and setup (str or None) of the
 * function fn (its name in the errors); reads connect_timeout (libpq's meaning; default
 * PGVC_DEFAULT_CONNECT_TIMEOUT). */
int pgvc_connopts_load(pgvc_connopts *o, const char *fn, PyObject *conninfo, PyObject *session,
                       PyObject *setup);
void pgvc_connopts_free(pgvc_connopts *o);

/* pqconnect.c. Connect (PQconnectStartParams/PQconnectPoll under the deadline), set
 * non-blocking mode, the notice receiver, run the setup statement, and read lock_timeout (ms, 0:
 * none). NULL with ConnectionLostError naming libpq's reason, or the signal handler's
 * exception. */
PGconn *pgvc_connect(const pgvc_connopts *o, long *lock_timeout);

/* The connects of pgvc_connect_many the server refused for its connection limit (SQLSTATE
 * 53300: "sorry, too many clients already", "remaining connection slots are reserved ...", a
 * role's or database's CONNECTION LIMIT), left out. */
typedef struct {
    int opened; /* connections made: conns[0..opened) */
    char reason[256]; /* the server's message for the first refusal; "" when none */
} pgvc_refused;

/* RAISES_NEG. n connections at once, as pgvc_connect makes one: every connect started, then
 * driven together in one poll(), so that their server backends start side by side rather than
 * one after the other. conns[i] and lock_timeouts[i] are set; on an error every one is closed
 * (and NULL). With `some`, the connects the server refused for its connection limit are left
 * out as long as one other was made: those made are conns[0..some->opened), the rest NULL. Any
 * other failed connect is an error, and so is a refusal of every one. */
int pgvc_connect_many(const pgvc_connopts *o, PGconn **conns, long *lock_timeouts, int n,
                      pgvc_refused *some);
void pgvc_conn_close(PGconn *conn);

/* The session settings as statements that bind only the transaction they run in ("SET LOCAL
 * name = 'value'; " each, names quoted, values escaped by libpq for conn): sent before every
 * statement in the same Query message, one implicit transaction, so that nothing survives it on
 * a pooled server connection. Malloc'd ("" when none); NULL with an exception set. */
char *pgvc_session_sql(const pgvc_connopts *o,
                       PGconn *conn); /* PQfinish with the GIL released; NULL is fine */

/* Wait until the socket is readable (or writable, for_write) or the deadline (<= 0: none)
 * passes. Returns 0 ready, 1 timed out, -1 with the signal handler's exception set. */
int pgvc_wait_socket(PGconn *conn, int for_write, double deadline);
/* PQflush: 0 all sent, 1 more to send, -1 broken. */
int pgvc_flush(PGconn *conn);
/* PQconsumeInput then PQisBusy: 1 when PQgetResult will not block, 0 busy, -1 broken. */
int pgvc_consume(PGconn *conn);
#define PGVC_COPY_OUT_REFUSED                                                                      \
    "COPY TO STDOUT is not supported here: nothing reads its rows (they were discarded)"
#define PGVC_COPY_IN_REFUSED "COPY FROM STDIN is not supported here: nothing sends it rows"
/* One step of ending a COPY that nobody feeds or reads (status: the COPY result PQgetResult
 * gave): the rows that have arrived are read and discarded; a COPY asking rows of us is ended
 * with an error (message), on which the server rolls back. Returns 0 when the COPY ended (its
 * result comes from PQgetResult), 1 when more rows are to come (wait to read), 2 when the end is
 * still to be sent (wait to write), -1 when the connection broke. */
int pgvc_copy_step(PGconn *conn, ExecStatusType status, const char *message);
/* Run one query (nparams parameters) to its end within the deadline: the first failed result,
 * else the last. NULL with *why 'b' (broken connection, no exception), 't' (deadline, no
 * exception), 'c' (a COPY TO STDOUT ran: its rows were discarded, no exception) or 's' (signal:
 * the exception is set). A COPY FROM STDIN is ended with an error (its failed result). */
PGresult *pgvc_exec_wait(PGconn *conn, const char *sql, int nparams, const char *const *params,
                         double deadline, char *why);
/* Ask the server to cancel what conn runs, giving up after `seconds`. Call without the GIL.
 * Returns 1 when the server took the request, else 0 with the reason. */
int pgvc_cancel_bounded(PGconn *conn, double seconds, char *reason, size_t reason_cap);

#endif
