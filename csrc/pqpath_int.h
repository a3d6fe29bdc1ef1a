/* pqpath_int.h: the refresh loop's private shapes (Task, Slot, Loop), shared by its files:
 * pqpath.c (the loop over libpq), pqpath_input.c (the tasks read from Python) and
 * pqpath_schedule.c (the ready queue, task ends, notices, and _core.Schedule). Nothing outside
 * the loop includes it. */
#ifndef PGVC_PQPATH_INT_H
#define PGVC_PQPATH_INT_H

#include "pqpath.h"

#include "errors.h"
#include "graph.h"
#include "pqconn.h"

enum { T_WAITING, T_RUNNING, T_OK, T_FAILED, T_SKIPPED, T_CANCELLED };
/* A task's state by name, as on_event and run_parallel's result give it. */
extern const char *const pgvc_task_state_names[];

typedef struct {
    char *sql;
    char *guard; /* relation the statement locks ACCESS EXCLUSIVE (retried), or NULL */
    double priority, started, seconds, not_before;
    int state, attempts;
    long wait_ms; /* lock_timeout of the next guarded try when not the short one (autovacuum) */
    Py_ssize_t waiting_on; /* dependencies not yet done */
    PyObject *error; /* dict, or NULL */
} Task;

typedef struct {
    PGconn *conn;
    Py_ssize_t task; /* running task or -1 */
    int dead, flushing, last_attempt;
    const char *refused; /* why the running statement fails though the server said nothing */
    PGresult *bad; /* first failed result of the running statement */
    char *said; /* libpq's message when the connection was lost (malloc'd), or NULL */
    long user_lock_timeout; /* ms; 0 = none */
} Slot;

typedef struct {
    Py_ssize_t task; /* -1: not during a statement */
    char *severity, *message;
} Notice;

typedef struct {
    pgvc_state *st;
    pgvc_connopts opts;
    char *session_sql; /* SET LOCAL statements that open every statement (pgvc_session_sql) */
    long short_ms, last_ms;
    int retries;
    Py_ssize_t n;
    Task *tasks;
    int jobs; /* connections opened (slots in use) */
    int wanted; /* connections the run asked for: more than jobs when the server refused some */
    pgvc_refused refused; /* why, when it did */
    Slot *slots;
    pgvc_graph g;
    Py_ssize_t *heap, hlen; /* ready tasks, most urgent first */
    PyObject *on_event, *on_notice, *on_refused;
    Notice *notices;
    Py_ssize_t nnotices, notices_cap;
    int notices_oom;
    Py_ssize_t current_task; /* task whose results are being read, for notices */
} Loop;

/* ---- pqpath_input.c -------------------------------------------------------------------------- */

/* RAISES_NEG. Statements (NULL: none, as for _core.Schedule), guards, priorities and
 * dependencies, checked and copied into L; the graph built, a cycle refused (CycleError), the
 * tasks without dependencies made ready. */
int pgvc_loop_load_tasks(Loop *L, PyObject *stmts_in, PyObject *deps_in, PyObject *prio_in,
                         PyObject *guard_in);
/* Release everything L owns: connections, results, tasks, notices, graph. */
void pgvc_loop_free(Loop *L);

/* ---- pqearly.c ------------------------------------------------------------------------------- */

/* RAISES_NEG. The slots of L (L->jobs of them, allocated) take their connections from a capsule
 * of _core.connect_loop() (TypeError for anything else; ValueError when it holds fewer, unless
 * the server refused the others for its connection limit: then L->jobs becomes what it holds,
 * and L->wanted and L->refused say so), which closes the rest and holds none after; the
 * session's SQL made from the first. */
int pgvc_early_take(PyObject *capsule, Loop *L);

/* ---- pqpath_schedule.c ----------------------------------------------------------------------- */

/* libpq's notice receiver (arg: the Loop): copies the notice into C memory, GIL or not. */
void pgvc_loop_notice_receiver(void *arg, const PGresult *res);
/* RAISES_NEG. Hand the collected notices to on_notice(task, severity, message). */
int pgvc_loop_flush_notices(Loop *L);
/* The ready queue: highest priority first, then lowest index; pop returns -1 when empty. */
void pgvc_loop_ready_push(Loop *L, Py_ssize_t v);
Py_ssize_t pgvc_loop_ready_pop(Loop *L);
/* RAISES_NEG. Flush notices, then report task i's state to on_event. */
int pgvc_loop_notify(Loop *L, Py_ssize_t i);
int pgvc_loop_notify_retry(Loop *L, Py_ssize_t i, double waited);
/* Task i failed with error (a new reference, or NULL with an exception set): reported, and its
 * dependants skipped. RAISES_NEG. */
int pgvc_loop_task_failed(Loop *L, Py_ssize_t i, PyObject *error);
/* Task i succeeded: reported, and the dependants it was the last wait of made ready.
 * RAISES_NEG. */
int pgvc_loop_task_ok(Loop *L, Py_ssize_t i);

#endif
