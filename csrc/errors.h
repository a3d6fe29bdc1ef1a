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
/* InvalidNameError: the argument `what` holds name (len bytes of UTF-8; -1: up to its NUL),
 * which PostgreSQL cannot take because of why. The whole value is shown, NUL bytes too. */
PyObject *pgvc_raise_invalid_name(pgvc_state *st, const char *what, const char *name,
                                  Py_ssize_t len, const char *why);
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

/* The argument `what` (index >= 0: its item index) of the function fn, as an error names it:
 * "fn: what[index]". */
void pgvc_arg_name(char *out, size_t cap, const char *fn, const char *what, Py_ssize_t index);
/* The UnicodeEncodeError set (a lone surrogate has no UTF-8) as a ValueError naming the
 * argument `name`, the codec's own error as its cause. */
void pgvc_raise_not_utf8(const char *name);

/* A text argument, read by the "O&" converter pgvc_text_arg: errors say "fn: what ..." (not
 * Python's own "embedded null character" or a bare UnicodeEncodeError). s is the str's UTF-8,
 * borrowed from it (alive for the call: the arguments hold it), len its length in bytes. */
typedef struct {
    const char *fn, *what; /* in: the function and the argument, as errors name them */
    int none_ok; /* in: None is allowed (s is NULL then) */
    int nul_ok; /* in: NUL bytes are allowed (the caller checks them, len tells) */
    const char *s; /* out */
    Py_ssize_t len; /* out */
} pgvc_text;
#define PGVC_TEXT(fn, what) {(fn), (what), 0, 0, NULL, 0}
#define PGVC_TEXT_OR_NONE(fn, what) {(fn), (what), 1, 0, NULL, 0}

/* The "O&" converter of a pgvc_text: 1, or 0 with TypeError (not a str) or ValueError (a NUL
 * byte, no UTF-8) naming fn and what. */
int pgvc_text_arg(PyObject *o, void *out);

/* RAISES_NEG, before PyArg_ParseTupleAndKeywords reads "s"/"z" arguments: each str among args
 * and kwargs (named by kwlist) has UTF-8 and, unless nul_ok, no NUL byte; else ValueError
 * "fn: <argument> ...". What is not a str is left to the parser. */
int pgvc_check_text_args(const char *fn, PyObject *args, PyObject *kwargs, char **kwlist,
                         int nul_ok);

#endif
