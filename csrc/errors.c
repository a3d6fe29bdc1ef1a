/* errors.c: exception types in the module state, and the helpers that raise them; reading
 * the numbers libpq returns as text. */
#include "errors.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static int load_one(PyObject *mod, const char *name, PyObject **slot)
{
    *slot = PyObject_GetAttrString(mod, name);
    return *slot ? 0 : -1;
}

int pgvc_state_load(PyObject *module, pgvc_state *st)
{
    int rc = -1;
    PyObject *mod = PyImport_ImportModule("django_pgviews_c.exceptions");
    (void)module;
    if (!mod)
        goto exit;
    if (load_one(mod, "PGViewsError", &st->PGViewsError) < 0 ||
        load_one(mod, "CycleError", &st->CycleError) < 0 ||
        load_one(mod, "MissingDependencyError", &st->MissingDependencyError) < 0 ||
        load_one(mod, "InvalidNameError", &st->InvalidNameError) < 0 ||
        load_one(mod, "DatabaseError", &st->DatabaseError) < 0 ||
        load_one(mod, "ConnectionLostError", &st->ConnectionLostError) < 0 ||
        load_one(mod, "QueryCanceledError", &st->QueryCanceledError) < 0 ||
        load_one(mod, "DependantObjectError", &st->DependantObjectError) < 0 ||
        load_one(mod, "PlanError", &st->PlanError) < 0)
        goto exit;
    rc = 0;
exit:
    Py_XDECREF(mod);
    return rc;
}

int pgvc_state_traverse(pgvc_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->GraphType);
    Py_VISIT(st->ActionType);
    Py_VISIT(st->PGViewsError);
    Py_VISIT(st->CycleError);
    Py_VISIT(st->MissingDependencyError);
    Py_VISIT(st->InvalidNameError);
    Py_VISIT(st->DatabaseError);
    Py_VISIT(st->ConnectionLostError);
    Py_VISIT(st->QueryCanceledError);
    Py_VISIT(st->DependantObjectError);
    Py_VISIT(st->PlanError);
    return 0;
}

void pgvc_state_clear(pgvc_state *st)
{
    Py_CLEAR(st->GraphType);
    Py_CLEAR(st->ActionType);
    Py_CLEAR(st->PGViewsError);
    Py_CLEAR(st->CycleError);
    Py_CLEAR(st->MissingDependencyError);
    Py_CLEAR(st->InvalidNameError);
    Py_CLEAR(st->DatabaseError);
    Py_CLEAR(st->ConnectionLostError);
    Py_CLEAR(st->QueryCanceledError);
    Py_CLEAR(st->DependantObjectError);
    Py_CLEAR(st->PlanError);
}

static PyObject *raise_instance(PyObject *cls, PyObject *args, PyObject *kwargs)
{
    PyObject *exc = args ? PyObject_Call(cls, args, kwargs) : NULL;
    if (exc) {
        PyErr_SetObject(cls, exc);
        Py_DECREF(exc);
    }
    return NULL;
}

PyObject *pgvc_raise_cycle(pgvc_state *st, PyObject *path)
{
    PyObject *args = PyTuple_Pack(1, path);
    raise_instance(st->CycleError, args, NULL);
    Py_XDECREF(args);
    return NULL;
}

PyObject *pgvc_raise_missing(pgvc_state *st, PyObject *view, PyObject *dependency)
{
    PyObject *args = PyTuple_Pack(2, view, dependency);
    raise_instance(st->MissingDependencyError, args, NULL);
    Py_XDECREF(args);
    return NULL;
}

PyObject *pgvc_raise_invalid_name(pgvc_state *st, const char *what, const char *name,
                                  Py_ssize_t len, const char *why)
{
    PyObject *text, *args = NULL;
    text = PyUnicode_DecodeUTF8(name, len < 0 ? (Py_ssize_t)strlen(name) : len, "surrogatepass");
    if (text)
        args = Py_BuildValue("(Nss)", text, why, what);
    if (args)
        raise_instance(st->InvalidNameError, args, NULL);
    Py_XDECREF(args);
    return NULL;
}

PyObject *pgvc_raise_plan(pgvc_state *st, PyObject *cls, PyObject *message, PyObject *details)
{
    PyObject *args = PyTuple_Pack(2, message, details ? details : Py_None);
    raise_instance(cls ? cls : st->PlanError, args, NULL);
    Py_XDECREF(args);
    return NULL;
}

PyObject *pgvc_server_text(const char *s)
{
    if (!s)
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
}

static PyObject *field(const PGresult *res, int code)
{
    return pgvc_server_text(res ? PQresultErrorField(res, code) : NULL);
}

PyObject *pgvc_raise_pg(pgvc_state *st, PGconn *conn, PGresult *res, PyObject *view)
{
    PyObject *kwargs = NULL, *args = NULL, *v = NULL, *cls;
    const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *pos;
    long position;
    int lost = conn && PQstatus(conn) == CONNECTION_BAD;

    if (!msg)
        msg = res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res)
              : conn                            ? PQerrorMessage(conn)
                                                : "unknown error";
    if (lost || (sqlstate && strncmp(sqlstate, "08", 2) == 0))
        cls = st->ConnectionLostError;
    else if (sqlstate && strcmp(sqlstate, "57014") == 0)
        cls = st->QueryCanceledError;
    else
        cls = st->DatabaseError;

    if (!(kwargs = PyDict_New()))
        goto exit;
#define SET(key, expr)                                                                             \
    do {                                                                                           \
        if (!(v = (expr)) || PyDict_SetItemString(kwargs, key, v) < 0)                             \
            goto exit;                                                                             \
        Py_CLEAR(v);                                                                               \
    } while (0)
    SET("sqlstate", field(res, PG_DIAG_SQLSTATE));
    SET("detail", field(res, PG_DIAG_MESSAGE_DETAIL));
    SET("hint", field(res, PG_DIAG_MESSAGE_HINT));
    pos = res ? PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION) : NULL;
    /* The position is 1-based; one the server did not send, or we cannot read, is None. */
    SET("position",
        pgvc_parse_long(pos, &position) == 0 ? PyLong_FromLong(position) : Py_NewRef(Py_None));
    SET("view", Py_NewRef(view ? view : Py_None));
#undef SET
    args = Py_BuildValue("(N)", pgvc_server_text(msg));
    raise_instance(cls, args, kwargs);
exit:
    Py_XDECREF(v);
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    return NULL;
}

int pgvc_parse_long(const char *s, long *out)
{
    char *end;
    long v;
    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (end == s || *end || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

PyObject *pgvc_frozen_sequence(PyObject *in, const char *not_seq)
{
    PyObject *seq = PySequence_Fast(in, not_seq), *frozen;
    if (!seq)
        return NULL;
    frozen = PySequence_Tuple(seq);
    Py_DECREF(seq);
    return frozen;
}

/* The argument `what` (index >= 0: its item index) of the function fn, as an error names it. */
void pgvc_arg_name(char *out, size_t cap, const char *fn, const char *what, Py_ssize_t index)
{
    if (index >= 0)
        snprintf(out, cap, "%s: %s[%zd]", fn, what, index);
    else
        snprintf(out, cap, "%s: %s", fn, what);
}

/* The UnicodeEncodeError set (a lone surrogate has no UTF-8) as a ValueError naming the
 * argument, the codec's own error as its cause. */
void pgvc_raise_not_utf8(const char *name)
{
    PyObject *et, *ev, *tb, *nt, *nv, *ntb;
    PyErr_Fetch(&et, &ev, &tb);
    PyErr_NormalizeException(&et, &ev, &tb);
    if (!ev) {
        PyErr_Restore(et, ev, tb);
        return;
    }
    PyErr_Format(PyExc_ValueError, "%s is not valid text: %S", name, ev);
    PyErr_Fetch(&nt, &nv, &ntb);
    PyErr_NormalizeException(&nt, &nv, &ntb);
    if (nv) {
        PyException_SetCause(nv, ev); /* steals ev */
        ev = NULL;
    }
    Py_XDECREF(et);
    Py_XDECREF(ev);
    Py_XDECREF(tb);
    PyErr_Restore(nt, nv, ntb);
}

int pgvc_text_arg(PyObject *o, void *out)
{
    pgvc_text *t = out;
    char name[128];
    pgvc_arg_name(name, sizeof name, t->fn, t->what, -1);
    t->s = NULL;
    t->len = 0;
    if (o == Py_None && t->none_ok)
        return 1;
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str%s, not %.100s", name,
                     t->none_ok ? " or None" : "", Py_TYPE(o)->tp_name);
        return 0;
    }
    if (!(t->s = PyUnicode_AsUTF8AndSize(o, &t->len))) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            pgvc_raise_not_utf8(name);
        return 0;
    }
    if (!t->nul_ok && (Py_ssize_t)strlen(t->s) != t->len) {
        PyErr_Format(PyExc_ValueError, "%s contains a NUL byte: %R", name, o);
        t->s = NULL;
        return 0;
    }
    return 1;
}

/* RAISES_NEG: str o, argument `what` of fn, has UTF-8 (and no NUL byte unless nul_ok). */
static int check_text(PyObject *o, const char *fn, const char *what, int nul_ok)
{
    char name[128];
    const char *s;
    Py_ssize_t len;
    pgvc_arg_name(name, sizeof name, fn, what, -1);
    if (!(s = PyUnicode_AsUTF8AndSize(o, &len))) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            pgvc_raise_not_utf8(name);
        return -1;
    }
    if (!nul_ok && (Py_ssize_t)strlen(s) != len) {
        PyErr_Format(PyExc_ValueError, "%s contains a NUL byte: %R", name, o);
        return -1;
    }
    return 0;
}

int pgvc_check_text_args(const char *fn, PyObject *args, PyObject *kwargs, char **kwlist,
                         int nul_ok)
{
    Py_ssize_t i, n = PyTuple_GET_SIZE(args);
    PyObject *o;
    for (i = 0; kwlist[i]; i++) {
        if (i < n)
            o = PyTuple_GET_ITEM(args, i);
        else if (!kwargs || !(o = PyDict_GetItemString(kwargs, kwlist[i])))
            continue;
        if (PyUnicode_Check(o) && check_text(o, fn, kwlist[i], nul_ok) < 0)
            return -1;
    }
    return 0;
}
