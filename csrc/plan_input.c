/* plan_input.c: the planner's input, checked once and copied into owned data: declarations
 * and catalog rows into Decl and Node, our stamp parsed out of each object's comment. Nothing
 * after this file reads a Python object of the caller's; no Python value can crash it. */
#include "plan_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the arena ---------------------------------------------------------------------------- */

void *pgvc_plan_alloc(Plan *P, size_t size) { return pgvc_plan_calloc(P, 1, size); }

void *pgvc_plan_calloc(Plan *P, size_t count, size_t size)
{
    void *p;
    if (P->narena == P->carena) {
        Py_ssize_t cap = P->carena ? P->carena * 2 : 64;
        void **grown = realloc(P->arena, sizeof(void *) * (size_t)cap);
        if (!grown) {
            PyErr_NoMemory();
            return NULL;
        }
        P->arena = grown;
        P->carena = cap;
    }
    /* calloc refuses a count * size that overflows; never asked for 0 bytes (NULL is an error). */
    if (!(p = calloc(count ? count : 1, size ? size : 1))) {
        PyErr_NoMemory();
        return NULL;
    }
    P->arena[P->narena++] = p;
    return p;
}

const char *pgvc_plan_format(Plan *P, const char *fmt, ...)
{
    va_list ap;
    int n;
    char *out;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !(out = pgvc_plan_alloc(P, (size_t)n + 1)))
        return n < 0 ? (PyErr_SetString(PyExc_ValueError, "plan: cannot format a message"), NULL)
                     : NULL;
    va_start(ap, fmt);
    vsnprintf(out, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return out;
}

void pgvc_plan_free_arena(Plan *P)
{
    for (Py_ssize_t k = 0; k < P->narena; k++)
        free(P->arena[k]);
    free(P->arena);
    P->arena = NULL;
    P->narena = P->carena = 0;
}

/* ---- checked copies ------------------------------------------------------------------------ */

/* Where a value came from, for the message that refuses it. */
typedef struct {
    const char *arg; /* "decls" or "catalog" */
    Py_ssize_t row;
    const char *field;
    const char *label; /* the view, for a declaration's own text */
} Where;

const char *const pgvc_decl_fields[D_NFIELDS] = {"label",
                                                 "schema",
                                                 "name",
                                                 "kind",
                                                 "sql",
                                                 "dependencies",
                                                 "with_data",
                                                 "tablespace",
                                                 "indexes",
                                                 "concurrent_index",
                                                 "concurrent_index_tablespace",
                                                 "db_table",
                                                 "columns"};
static const char *const catalog_fields[C_NFIELDS] = {
    "oid",        "schema",  "name",      "relkind",        "comment",  "populated",
    "tablespace", "rw",      "defmd5",    "owner",          "acl",      "indexes",
    "refs",       "fulldef", "indexdefs", "current_schema", "colnames", "coltypes"};

static int bad_type(const Where *w, const char *want, PyObject *o)
{
    PyErr_Format(PyExc_TypeError, "plan: %s[%zd] %s must be %s, not %.100s", w->arg, w->row,
                 w->field, want, Py_TYPE(o)->tp_name);
    return -1;
}

/* An owned copy of a str (None gives NULL when optional). A NUL byte in a declaration's text
 * is refused naming the view: PostgreSQL would cut the text there. RAISES_NEG. */
static int copy_str(Plan *P, PyObject *o, int optional, const char **out, const Where *w)
{
    Py_ssize_t size;
    const char *s;
    char *copy;
    *out = NULL;
    if (o == Py_None && optional)
        return 0;
    if (!PyUnicode_Check(o))
        return bad_type(w, optional ? "str or None" : "str", o);
    if (!(s = PyUnicode_AsUTF8AndSize(o, &size)))
        return -1;
    if ((size_t)size != strlen(s)) {
        if (w->label)
            PyErr_Format(
                P->st->PlanError,
                "%s: its %s contains a NUL byte, which PostgreSQL cannot take. Nothing was "
                "changed.",
                w->label, w->field);
        else
            PyErr_Format(PyExc_ValueError, "plan: %s[%zd] %s contains a NUL byte", w->arg, w->row,
                         w->field);
        return -1;
    }
    if (!(copy = pgvc_plan_alloc(P, (size_t)size + 1)))
        return -1;
    memcpy(copy, s, (size_t)size + 1);
    *out = copy;
    return 0;
}

static int copy_bool(PyObject *o, int *out, const Where *w)
{
    if (o == Py_None) {
        *out = 0;
        return 0;
    }
    if (!PyBool_Check(o))
        return bad_type(w, "bool", o);
    *out = o == Py_True;
    return 0;
}

/* A list (or tuple) of str; None gives n = -1. RAISES_NEG. */
static int copy_strlist(Plan *P, PyObject *o, StrList *out, const Where *w)
{
    Py_ssize_t n;
    out->items = NULL;
    out->n = -1;
    if (o == Py_None)
        return 0;
    if (!PyList_CheckExact(o) && !PyTuple_CheckExact(o))
        return bad_type(w, "a list of str", o);
    n = PySequence_Fast_GET_SIZE(o);
    if (!(out->items = pgvc_plan_calloc(P, (size_t)n + 1, sizeof(char *))))
        return -1;
    for (Py_ssize_t k = 0; k < n; k++) {
        /* Copying a str runs no Python code: the list cannot change under us. */
        if (copy_str(P, PySequence_Fast_GET_ITEM(o, k), 0, &out->items[k], w) < 0)
            return -1;
    }
    out->n = n;
    return 0;
}

/* A new exact str from an owned copy: a dict key whose hashing runs no code of the caller's. */
static PyObject *own_str(const char *s) { return PyUnicode_FromString(s); }

/* ---- declarations ---------------------------------------------------------------------------- */

/* Dependencies: a tuple of labels, copied into a tuple of exact str. RAISES_NEG. */
static int read_deps(Plan *P, Decl *d, PyObject *o, const Where *w)
{
    Py_ssize_t n;
    if (!PyTuple_Check(o))
        return bad_type(w, "a tuple of str", o);
    n = PyTuple_GET_SIZE(o);
    if (!(d->deps = PyTuple_New(n)))
        return -1;
    for (Py_ssize_t k = 0; k < n; k++) {
        const char *s;
        PyObject *copy;
        if (copy_str(P, PyTuple_GET_ITEM(o, k), 0, &s, w) < 0 || !(copy = own_str(s)))
            return -1;
        PyTuple_SET_ITEM(d->deps, k, copy);
    }
    return 0;
}

/* One index: (name, segments), segments a tuple of str (text) and the ints 0 (the table) and
 * 1 (the index name). RAISES_NEG. */
static int read_index(Plan *P, Decl *d, DeclIndex *ix, PyObject *o, const Where *w)
{
    PyObject *segs;
    if (!PyTuple_Check(o) || PyTuple_GET_SIZE(o) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(o, 1)))
        return bad_type(w, "a tuple of (name, segments) pairs", o);
    if (copy_str(P, PyTuple_GET_ITEM(o, 0), 0, &ix->name, w) < 0)
        return -1;
    if (strlen(ix->name) >= PGVC_NAMEDATALEN) {
        PyErr_Format(P->st->PlanError,
                     "%s: index name '%s' is %zu bytes; PostgreSQL keeps at most 63, so the name "
                     "in the database would never match the declaration. Use a shorter name. "
                     "Nothing was changed.",
                     d->label, ix->name, strlen(ix->name));
        return -1;
    }
    segs = PyTuple_GET_ITEM(o, 1);
    ix->nseg = PyTuple_GET_SIZE(segs);
    if (!(ix->segs = pgvc_plan_calloc(P, (size_t)ix->nseg + 1, sizeof(Seg))))
        return -1;
    for (Py_ssize_t k = 0; k < ix->nseg; k++) {
        PyObject *seg = PyTuple_GET_ITEM(segs, k);
        if (PyLong_CheckExact(seg)) {
            long slot = PyLong_AsLong(seg);
            if (slot != 0 && slot != 1) {
                PyErr_Format(PyExc_ValueError,
                             "plan: decls[%zd] index segments: slot must be 0 or 1", w->row);
                return -1;
            }
            ix->segs[k].kind = slot ? 'N' : 'T';
        } else if (copy_str(P, seg, 0, &ix->segs[k].text, w) < 0)
            return -1;
    }
    return 0;
}

static int read_indexes(Plan *P, Decl *d, PyObject *o, const Where *w)
{
    if (!PyTuple_Check(o))
        return bad_type(w, "a tuple of (name, segments) pairs", o);
    d->nindexes = PyTuple_GET_SIZE(o);
    if (!(d->indexes = pgvc_plan_calloc(P, (size_t)d->nindexes + 1, sizeof(DeclIndex))))
        return -1;
    for (Py_ssize_t k = 0; k < d->nindexes; k++)
        if (read_index(P, d, &d->indexes[k], PyTuple_GET_ITEM(o, k), w) < 0)
            return -1;
    return 0;
}

/* columns: a tuple of (field, column, type or None). RAISES_NEG. */
static int read_columns(Plan *P, Decl *d, PyObject *o, const Where *w)
{
    if (!PyTuple_Check(o))
        return bad_type(w, "a tuple of (field, column, type) triples", o);
    d->ncolumns = PyTuple_GET_SIZE(o);
    if (!(d->columns = pgvc_plan_calloc(P, (size_t)d->ncolumns + 1, sizeof(DeclColumn))))
        return -1;
    for (Py_ssize_t k = 0; k < d->ncolumns; k++) {
        PyObject *c = PyTuple_GET_ITEM(o, k);
        DeclColumn *col = &d->columns[k];
        if (!PyTuple_Check(c) || PyTuple_GET_SIZE(c) != 3)
            return bad_type(w, "a tuple of (field, column, type) triples", c);
        if (copy_str(P, PyTuple_GET_ITEM(c, 0), 0, &col->field, w) < 0 ||
            copy_str(P, PyTuple_GET_ITEM(c, 1), 0, &col->column, w) < 0 ||
            copy_str(P, PyTuple_GET_ITEM(c, 2), 1, &col->type, w) < 0)
            return -1;
    }
    return 0;
}

/* concurrent_index: a list of column names (bare, folded to lower case as PostgreSQL does, or
 * double-quoted), each quoted again here. Anything else is refused naming the view. */
static int read_cidx(Plan *P, Decl *d)
{
    pgvc_buf cols;
    const char *why = NULL;
    int rc = -1;
    char *copy;
    if (!d->cidx)
        return 0;
    pgvc_buf_init(&cols);
    if (pgvc_parse_columns(d->cidx, &cols, &why) < 0) {
        PyErr_Format(P->st->PlanError,
                     "%s: concurrent_index '%s' is not a list of column names (%s). Write the "
                     "columns of the unique index separated by commas, e.g. \"id\" or "
                     "\"day, region\". Nothing was changed.",
                     d->label, d->cidx, why);
        goto exit;
    }
    if (cols.oom) {
        PyErr_NoMemory();
        goto exit;
    }
    if (!(copy = pgvc_plan_alloc(P, cols.len + 1)))
        goto exit;
    memcpy(copy, cols.data, cols.len + 1);
    d->cidx_cols = copy;
    rc = 0;
exit:
    pgvc_buf_free(&cols);
    return rc;
}

static int read_decl(Plan *P, Decl *d, PyObject *t, Py_ssize_t i)
{
    PyObject *const *f;
    const char *kind = NULL;
    Where w = {"decls", i, NULL, NULL};
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != D_NFIELDS) {
        PyErr_Format(PyExc_TypeError, "plan: decls[%zd] must be a %d-tuple", i, D_NFIELDS);
        return -1;
    }
    f = &PyTuple_GET_ITEM(t, 0);
#define FIELD(k) (w.field = pgvc_decl_fields[k], f[k])
    if (copy_str(P, FIELD(D_LABEL), 0, &d->label, &w) < 0 || !(d->label_obj = own_str(d->label)))
        return -1;
    w.label = d->label;
    if (copy_str(P, FIELD(D_SCHEMA), 1, &d->schema, &w) < 0 ||
        copy_str(P, FIELD(D_NAME), 0, &d->name, &w) < 0 ||
        copy_str(P, FIELD(D_KIND), 0, &kind, &w) < 0 ||
        copy_str(P, FIELD(D_SQL), 0, &d->sql, &w) < 0 || read_deps(P, d, FIELD(D_DEPS), &w) < 0 ||
        copy_bool(FIELD(D_WITH_DATA), &d->with_data, &w) < 0 ||
        copy_str(P, FIELD(D_TABLESPACE), 1, &d->tablespace, &w) < 0 ||
        read_indexes(P, d, FIELD(D_INDEXES), &w) < 0 ||
        copy_str(P, FIELD(D_CIDX), 1, &d->cidx, &w) < 0 ||
        copy_str(P, FIELD(D_CIDX_TS), 1, &d->cidx_ts, &w) < 0 ||
        copy_str(P, FIELD(D_DBTABLE), 0, &d->db_table, &w) < 0 ||
        read_columns(P, d, FIELD(D_COLUMNS), &w) < 0)
        return -1;
#undef FIELD
    if ((kind[0] != 'v' && kind[0] != 'm') || kind[1]) {
        PyErr_Format(PyExc_ValueError, "plan: decls[%zd] kind of %s must be 'v' or 'm'", i,
                     d->label);
        return -1;
    }
    d->kind = kind[0];
    d->explicit_schema = d->schema != NULL;
    d->node = -1;
    d->reason = "";
    return read_cidx(P, d);
}

int pgvc_plan_read_decls(Plan *P, PyObject *decls)
{
    P->nd = PyList_GET_SIZE(decls);
    if (!(P->decls = calloc((size_t)P->nd + 1, sizeof(Decl)))) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < P->nd; i++)
        if (read_decl(P, &P->decls[i], PyList_GET_ITEM(decls, i), i) < 0)
            return -1;
    return 0;
}

void pgvc_plan_free_decls(Plan *P)
{
    for (Py_ssize_t i = 0; P->decls && i < P->nd; i++) {
        Py_XDECREF(P->decls[i].label_obj);
        Py_XDECREF(P->decls[i].deps);
    }
    free(P->decls);
    P->decls = NULL;
}

/* ---- catalog rows ---------------------------------------------------------------------------- */

/* refs: a list of oids. RAISES_NEG. */
static int read_refs(Plan *P, Node *n, PyObject *o, const Where *w)
{
    Py_ssize_t size;
    n->nrefs = 0;
    if (o == Py_None)
        return 0;
    if (!PyList_CheckExact(o) && !PyTuple_CheckExact(o))
        return bad_type(w, "a list of int", o);
    size = PySequence_Fast_GET_SIZE(o);
    if (!(n->refs = pgvc_plan_calloc(P, (size_t)size + 1, sizeof(long long))))
        return -1;
    for (Py_ssize_t k = 0; k < size; k++) {
        PyObject *v = PySequence_Fast_GET_ITEM(o, k);
        if (!PyLong_CheckExact(v))
            return bad_type(w, "a list of int", v);
        n->refs[k] = PyLong_AsLongLong(v);
        if (n->refs[k] == -1 && PyErr_Occurred())
            return -1;
    }
    n->nrefs = size;
    return 0;
}

/* One catalog row: a view or materialized view (or a schema row, *schema_row set). */
static int read_row(Plan *P, Node *n, PyObject *t, Py_ssize_t i, int *schema_row)
{
    PyObject *const *f;
    const char *kind = NULL, *curschema = NULL;
    Where w = {"catalog", i, NULL, NULL};
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != C_NFIELDS) {
        PyErr_Format(PyExc_TypeError, "plan: catalog[%zd] must be a %d-tuple", i, C_NFIELDS);
        return -1;
    }
    f = &PyTuple_GET_ITEM(t, 0);
#define FIELD(k) (w.field = catalog_fields[k], f[k])
    if (copy_str(P, FIELD(C_KIND), 0, &kind, &w) < 0 ||
        copy_str(P, FIELD(C_CURSCHEMA), 1, &curschema, &w) < 0 ||
        copy_str(P, FIELD(C_SCHEMA), 0, &n->schema, &w) < 0)
        return -1;
    if (!P->current_schema)
        P->current_schema = curschema;
    if ((*schema_row = kind[0] == 'S'))
        return 0;
    if (copy_str(P, FIELD(C_NAME), 0, &n->name, &w) < 0 ||
        copy_str(P, FIELD(C_COMMENT), 1, &n->comment, &w) < 0 ||
        copy_bool(FIELD(C_POPULATED), &n->populated, &w) < 0 ||
        copy_str(P, FIELD(C_TABLESPACE), 1, &n->tablespace, &w) < 0 ||
        copy_str(P, FIELD(C_RW), 1, &n->rw, &w) < 0 ||
        copy_str(P, FIELD(C_DEFMD5), 1, &n->defmd5, &w) < 0 ||
        copy_str(P, FIELD(C_OWNER), 1, &n->owner, &w) < 0 ||
        copy_strlist(P, FIELD(C_ACL), &n->acl, &w) < 0 ||
        copy_strlist(P, FIELD(C_INDEXES), &n->index_names, &w) < 0 ||
        read_refs(P, n, FIELD(C_REFS), &w) < 0 ||
        copy_str(P, FIELD(C_FULLDEF), 1, &n->fulldef, &w) < 0 ||
        copy_strlist(P, FIELD(C_INDEXDEFS), &n->index_defs, &w) < 0 ||
        copy_strlist(P, FIELD(C_COLNAMES), &n->colnames, &w) < 0 ||
        copy_strlist(P, FIELD(C_COLTYPES), &n->coltypes, &w) < 0)
        return -1;
    if (n->colnames.n != n->coltypes.n) {
        PyErr_Format(PyExc_ValueError, "plan: catalog[%zd] colnames and coltypes differ in length",
                     i);
        return -1;
    }
    if (!PyLong_CheckExact(FIELD(C_OID)))
        return bad_type(&w, "int", f[C_OID]);
#undef FIELD
    n->oid = PyLong_AsLongLong(f[C_OID]);
    if (n->oid == -1 && PyErr_Occurred())
        return -1;
    n->relkind = kind[0];
    n->decl = -1;
    if (!(n->target = pgvc_plan_format(P, "%s.%s", n->schema, n->name)))
        return -1;
    pgvc_parse_stamp(n->comment, n->comment ? strlen(n->comment) : 0, &n->stamp);
    n->pending_mark = n->stamp.pending;
    return 0;
}

int pgvc_plan_read_catalog(Plan *P, PyObject *catalog)
{
    Py_ssize_t rows = PyList_GET_SIZE(catalog), k = 0;
    if (!(P->nodes = calloc((size_t)rows + 1, sizeof(Node))) || !(P->schemas = PySet_New(NULL))) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < rows; i++) {
        Node *n = &P->nodes[k];
        int schema_row = 0;
        PyObject *name;
        if (read_row(P, n, PyList_GET_ITEM(catalog, i), i, &schema_row) < 0)
            return -1;
        if (!schema_row) {
            k++;
            continue;
        }
        /* An existing schema. */
        if (!(name = own_str(n->schema)) || PySet_Add(P->schemas, name) < 0) {
            Py_XDECREF(name);
            return -1;
        }
        Py_DECREF(name);
        memset(n, 0, sizeof *n);
    }
    P->nn = k;
    if (!P->current_schema) {
        PyErr_SetString(P->st->PlanError,
                        "the connection has no current schema: its search_path names no schema "
                        "that exists");
        return -1;
    }
    return 0;
}
