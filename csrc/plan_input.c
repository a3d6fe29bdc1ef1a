/* plan_input.c: the planner's input, decoded: declarations and catalog rows into Decl and Node,
 * and our stamp parsed out of each object's comment. */
#include "plan_int.h"

#include <string.h>

/* Borrowed UTF-8 of a str, or NULL for None. RAISES: sets *err. */
static const char *opt_str(PyObject *o, int *err)
{
    if (o == Py_None)
        return NULL;
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "expected str or None, got %.100s", Py_TYPE(o)->tp_name);
        *err = 1;
        return NULL;
    }
    {
        const char *s = PyUnicode_AsUTF8(o);
        if (!s)
            *err = 1;
        return s;
    }
}

static const char *req_str(PyObject *o, int *err, const char *what)
{
    const char *s = opt_str(o, err);
    if (!s && !*err) {
        PyErr_Format(PyExc_TypeError, "%s must be a str", what);
        *err = 1;
    }
    return s;
}

static void copy_hex(char out[33], const char *p)
{
    size_t n = 0;
    while (n < 32 && p[n] && p[n] != ' ' && p[n] != '\n')
        n++;
    memcpy(out, p, n);
    out[n] = '\0';
}

static void parse_comment(Node *n)
{
    const char *mark, *p, *next;
    n->ours = 0;
    n->user_len = n->comment ? strlen(n->comment) : 0;
    if (!n->comment)
        return;
    mark = NULL;
    /* Our stamp starts a line with the marker and " body=": the marker's words inside the
     * user's own text (a comment that mentions this package) are theirs, and were cut off. */
    for (p = n->comment; (next = strstr(p, PGVC_MARK)); p = next + 1)
        if ((next == n->comment || next[-1] == '\n') && !strncmp(next + strlen(PGVC_MARK), " body=", 6))
            mark = next;
    if (!mark)
        return;
    n->ours = 1;
    n->user_len = (size_t)(mark - n->comment);
    while (n->user_len && (n->comment[n->user_len - 1] == '\n'))
        n->user_len--;
    for (p = mark; (p = strchr(p, ' ')); ) {
        p++;
        if (!strncmp(p, "body=", 5))
            copy_hex(n->c_body, p + 5);
        else if (!strncmp(p, "idx=", 4))
            copy_hex(n->c_idx, p + 4);
        else if (!strncmp(p, "def=", 4))
            copy_hex(n->c_def, p + 4);
    }
}

int pgvc_plan_read_decls(Plan *P, PyObject *decls)
{
    P->nd = PyList_GET_SIZE(decls);
    if (!(P->decls = calloc((size_t)P->nd + 1, sizeof(Decl)))) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < P->nd; i++) {
        PyObject *t = PyList_GET_ITEM(decls, i);
        Decl *d = &P->decls[i];
        int err = 0;
        const char *kind;
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != D_NFIELDS) {
            PyErr_Format(PyExc_TypeError, "plan: declaration %zd must be a %d-tuple", i, D_NFIELDS);
            return -1;
        }
        d->label_obj = PyTuple_GET_ITEM(t, D_LABEL);
        d->label = req_str(d->label_obj, &err, "label");
        d->schema = opt_str(PyTuple_GET_ITEM(t, D_SCHEMA), &err);
        d->name = req_str(PyTuple_GET_ITEM(t, D_NAME), &err, "name");
        kind = req_str(PyTuple_GET_ITEM(t, D_KIND), &err, "kind");
        d->sql = req_str(PyTuple_GET_ITEM(t, D_SQL), &err, "sql");
        d->deps = PyTuple_GET_ITEM(t, D_DEPS);
        d->with_data = PyObject_IsTrue(PyTuple_GET_ITEM(t, D_WITH_DATA));
        d->tablespace = opt_str(PyTuple_GET_ITEM(t, D_TABLESPACE), &err);
        d->indexes = PyTuple_GET_ITEM(t, D_INDEXES);
        d->cidx = opt_str(PyTuple_GET_ITEM(t, D_CIDX), &err);
        d->cidx_ts = opt_str(PyTuple_GET_ITEM(t, D_CIDX_TS), &err);
        d->db_table = req_str(PyTuple_GET_ITEM(t, D_DBTABLE), &err, "db_table");
        if (err || d->with_data < 0)
            return -1;
        if (!PyTuple_Check(d->deps) || !PyTuple_Check(d->indexes)) {
            PyErr_SetString(PyExc_TypeError, "plan: dependencies and indexes must be tuples");
            return -1;
        }
        d->kind = kind[0];
        if ((d->kind != 'v' && d->kind != 'm') || kind[1]) {
            PyErr_Format(PyExc_ValueError, "plan: kind of %s must be 'v' or 'm'", d->label);
            return -1;
        }
        d->explicit_schema = d->schema != NULL;
        d->node = -1;
    }
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
        PyObject *t = PyList_GET_ITEM(catalog, i);
        const char *kind;
        int err = 0;
        Node *n = &P->nodes[k];
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != C_NFIELDS) {
            PyErr_Format(PyExc_TypeError, "plan: catalog row %zd must be a %d-tuple", i, C_NFIELDS);
            return -1;
        }
        kind = req_str(PyTuple_GET_ITEM(t, C_KIND), &err, "relkind");
        if (!err && !P->current_schema)
            P->current_schema = opt_str(PyTuple_GET_ITEM(t, C_CURSCHEMA), &err);
        if (err)
            return -1;
        if (kind[0] == 'S') { /* an existing schema */
            if (PySet_Add(P->schemas, PyTuple_GET_ITEM(t, C_SCHEMA)) < 0)
                return -1;
            continue;
        }
        n->schema = req_str(PyTuple_GET_ITEM(t, C_SCHEMA), &err, "schema");
        n->name = req_str(PyTuple_GET_ITEM(t, C_NAME), &err, "relname");
        n->relkind = kind[0];
        n->comment = opt_str(PyTuple_GET_ITEM(t, C_COMMENT), &err);
        n->populated = PyObject_IsTrue(PyTuple_GET_ITEM(t, C_POPULATED));
        n->tablespace = opt_str(PyTuple_GET_ITEM(t, C_TABLESPACE), &err);
        n->rw = opt_str(PyTuple_GET_ITEM(t, C_RW), &err);
        n->defmd5 = opt_str(PyTuple_GET_ITEM(t, C_DEFMD5), &err);
        n->owner = opt_str(PyTuple_GET_ITEM(t, C_OWNER), &err);
        n->acl = PyTuple_GET_ITEM(t, C_ACL);
        n->index_names = PyTuple_GET_ITEM(t, C_INDEXES);
        n->refs = PyTuple_GET_ITEM(t, C_REFS);
        n->fulldef = opt_str(PyTuple_GET_ITEM(t, C_FULLDEF), &err);
        n->index_defs = PyTuple_GET_ITEM(t, C_INDEXDEFS);
        n->oid = PyLong_AsLongLong(PyTuple_GET_ITEM(t, C_OID));
        if (n->oid == -1 && PyErr_Occurred())
            return -1;
        if (err || n->populated < 0)
            return -1;
        n->decl = -1;
        parse_comment(n);
        k++;
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
