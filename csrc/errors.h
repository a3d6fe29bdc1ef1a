/* errors.h: the helpers that raise the module state's exceptions (state.h). */
#ifndef PGVC_ERRORS_H
#define PGVC_ERRORS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <libpq-fe.h>

#include "state.h"

/* Each returns NULL with the exception set (so callers can `return pgvc_raise_...`). */
PyObject *pgvc_raise_cycle(pgvc_state *st, PyObject *path);
PyObject *pgvc_raise_missing(pgvc_state *st, PyObject *view, PyObject *dependency);
PyObject *pgvc_raise_invalid_name(pgvc_state *st, const char *name, const char *why);
PyObject *pgvc_raise_plan(pgvc_state *st, PyObject *cls, PyObject *message, PyObject *details);

/* Raise from a failed result (res may be NULL: then the connection's message is used).
 * `view` (may be NULL) names what was being done. The class follows the SQLSTATE:
 * class 08 and a bad connection -> ConnectionLostError, 57014 -> QueryCanceledError,
 * everything else -> DatabaseError. Carries sqlstate, message, detail, hint, position. */
PyObject *pgvc_raise_pg(pgvc_state *st, PGconn *conn, PGresult *res, PyObject *view);

/* A whole decimal integer, as libpq hands one over as text (an error's position, a setting, a
 * pid): 0 with *out set; -1, with no exception, when s is NULL, empty, anything else or out of
 * range for a long. Callers say what a value they cannot read means. */
int pgvc_parse_long(const char *s, long *out);
/* Text the server sent (a message, a notice, a query, a name), as str: bytes that are not UTF-8
 * (a SQL_ASCII database, a client_encoding other than UTF8) replaced, never an error; NULL is
 * None. New reference, NULL only on MemoryError. */
PyObject *pgvc_server_text(const char *s);

/* The items of in as a tuple of their own (in itself when it is one), or NULL with
 * TypeError(not_seq) when it is not a sequence. What a C loop reads from it cannot change under
 * it while Python code runs (an item's __float__ or __iter__ clearing the caller's list). */
PyObject *pgvc_frozen_sequence(PyObject *in, const char *not_seq);

#endif
