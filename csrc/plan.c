/* plan.c: the sync planner.
 *
 * Input: the declared views of one database and one catalog snapshot (catalog_sql()).
 * Output: the ordered actions that bring the database in line, each with its SQL, the lock it
 * takes and its phase (0: work that blocks nobody, 1: the short part that takes the locks
 * readers wait on), and a status per declared view.
 *
 * Items are the declared views (0..D-1) followed by the catalog's views that no declaration
 * matches (dependants we do not manage). The graph over items joins declared dependencies and
 * the real ones from pg_depend, so views that forgot to declare a dependency still come in the
 * right order. */
#include "plan.h"

#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "hash.h"
#include "sqlgen.h"

enum { D_LABEL, D_SCHEMA, D_NAME, D_KIND, D_SQL, D_DEPS, D_WITH_DATA, D_TABLESPACE, D_INDEXES,
       D_CIDX, D_CIDX_TS, D_DBTABLE, D_NFIELDS };
enum { C_OID, C_SCHEMA, C_NAME, C_KIND, C_COMMENT, C_POPULATED, C_TABLESPACE, C_RW, C_DEFMD5,
       C_OWNER, C_ACL, C_INDEXES, C_REFS, C_FULLDEF, C_INDEXDEFS, C_CURSCHEMA, C_NFIELDS };

enum action { A_SKIP, A_CREATE, A_REPLACE, A_RECREATE, A_BESIDE };
enum status { S_CREATED, S_UPDATED, S_EXISTS, S_FORCED };
static const char *const status_names[] = {"CREATED", "UPDATED", "EXISTS", "FORCED"};

typedef struct {
    const char *label, *schema, *name, *sql, *tablespace, *cidx, *cidx_ts, *db_table;
    PyObject *label_obj, *deps, *indexes;
    char kind;
    int with_data, explicit_schema;
    Py_ssize_t node;
    int action, status, refresh, reindex, restamp, dropped, taint;
    int chain; /* built in the build schema (phase 0), moved into place (phase 1) */
    char reason[200];
    char body_fp[33], idx_fp[33];
    char cidx_name[PGVC_NAMEDATALEN];
} Decl;

typedef struct {
    const char *schema, *name, *comment, *tablespace, *rw, *defmd5, *owner, *fulldef;
    PyObject *acl, *index_names, *refs, *index_defs;
    char relkind;
    int populated;
    Py_ssize_t decl, item;
    long long oid;
    int dropped, restore, taint, external_below;
    /* our part of the comment */
    int ours;
    char c_body[33], c_idx[33], c_def[33];
    size_t user_len; /* bytes of the user's own comment text before our marker */
} Node;

typedef struct {
    pgvc_state *st;
    Decl *decls;
    Node *nodes;
    Py_ssize_t nd, nn, ni; /* declared, catalog nodes, items */
    Py_ssize_t *item_node; /* item -> node or -1 */
    pgvc_graph g;  /* over items: declared and catalog dependencies */
    pgvc_graph cg; /* over catalog nodes: what pg_depend says, the edges a DROP follows */
    Py_ssize_t *order;
    PyObject *actions;
    pgvc_buf buf;
    int force, update, check_sql_changed, restore, beside, chain;
    int nchain;
    const char *current_schema;
    PyObject *schemas; /* set of existing schema names */
} Plan;

/* ---- reading the input -------------------------------------------------------------------- */

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

static int read_decls(Plan *P, PyObject *decls)
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

static int read_catalog(Plan *P, PyObject *catalog)
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

/* Key "schema\0name" for matching declarations to catalog rows. */
static PyObject *qname_key(const char *schema, const char *name)
{
    size_t a = strlen(schema), b = strlen(name);
    PyObject *key = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(a + b + 1));
    if (key) {
        char *p = PyBytes_AS_STRING(key);
        memcpy(p, schema, a);
        p[a] = '\0';
        memcpy(p + a + 1, name, b);
    }
    return key;
}

/* A new reference to an item's name: the label of a declaration, schema.name of a node. */
static PyObject *item_name(void *plan, Py_ssize_t it)
{
    Plan *P = plan;
    if (it < P->nd)
        return Py_NewRef(P->decls[it].label_obj);
    return PyUnicode_FromFormat("%s.%s", P->nodes[P->item_node[it]].schema, P->nodes[P->item_node[it]].name);
}

/* Match declarations to nodes, build the item graph and its order. RAISES_NEG. */
static int build_graph(Plan *P, PyObject *catalog_oids)
{
    PyObject *by_name = PyDict_New(), *by_label = PyDict_New(), *by_oid = PyDict_New(), *key = NULL,
             *v = NULL;
    Py_ssize_t *from = NULL, *to = NULL, ne = 0, cap = 0, *cycle = NULL, clen = 0;
    Py_ssize_t *cfrom = NULL, *cto = NULL, cne = 0;
    int rc = -1;
#define ADD_EDGE(a, b)                                                                             \
    do {                                                                                           \
        if (ne == cap) {                                                                           \
            Py_ssize_t *nf, *nt;                                                                   \
            cap = cap ? cap * 2 : 256;                                                             \
            nf = realloc(from, sizeof(Py_ssize_t) * (size_t)cap);                                 \
            if (nf)                                                                                \
                from = nf;                                                                         \
            nt = realloc(to, sizeof(Py_ssize_t) * (size_t)cap);                                   \
            if (nt)                                                                                \
                to = nt;                                                                           \
            if (!nf || !nt) {                                                                      \
                PyErr_NoMemory();                                                                  \
                goto exit;                                                                         \
            }                                                                                      \
        }                                                                                          \
        from[ne] = (a);                                                                            \
        to[ne++] = (b);                                                                            \
    } while (0)

    if (!by_name || !by_label || !by_oid)
        goto exit;
    for (Py_ssize_t j = 0; j < P->nn; j++) {
        if (!(key = qname_key(P->nodes[j].schema, P->nodes[j].name)) ||
            !(v = PyLong_FromSsize_t(j)) || PyDict_SetItem(by_name, key, v) < 0)
            goto exit;
        Py_CLEAR(key);
        if (PyDict_SetItem(by_oid, PyList_GET_ITEM(catalog_oids, j), v) < 0)
            goto exit;
        Py_CLEAR(v);
    }
    for (Py_ssize_t i = 0; i < P->nd; i++) {
        Decl *d = &P->decls[i];
        PyObject *hit;
        int has;
        if (!d->schema)
            d->schema = P->current_schema;
        if ((has = PyDict_Contains(by_label, d->label_obj)) != 0) {
            if (has > 0)
                PyErr_Format(P->st->PlanError, "%s is declared twice", d->label);
            goto exit;
        }
        if (!(v = PyLong_FromSsize_t(i)) || PyDict_SetItem(by_label, d->label_obj, v) < 0)
            goto exit;
        Py_CLEAR(v);
        if (!(key = qname_key(d->schema, d->name)))
            goto exit;
        if ((hit = PyDict_GetItemWithError(by_name, key))) {
            Py_ssize_t j = PyLong_AsSsize_t(hit);
            if (P->nodes[j].decl >= 0) {
                PyErr_Format(P->st->PlanError, "%s and %s both use db_table %s.%s",
                             P->decls[P->nodes[j].decl].label, d->label, d->schema, d->name);
                goto exit;
            }
            P->nodes[j].decl = i;
            d->node = j;
        } else if (PyErr_Occurred())
            goto exit;
        Py_CLEAR(key);
    }
    /* Items: declarations, then unmatched nodes. */
    P->ni = P->nd;
    if (!(P->item_node = malloc(sizeof(Py_ssize_t) * (size_t)(P->nd + P->nn + 1)))) {
        PyErr_NoMemory();
        goto exit;
    }
    for (Py_ssize_t i = 0; i < P->nd; i++)
        P->item_node[i] = P->decls[i].node;
    for (Py_ssize_t j = 0; j < P->nn; j++) {
        if (P->nodes[j].decl >= 0)
            P->nodes[j].item = P->nodes[j].decl;
        else {
            P->nodes[j].item = P->ni;
            P->item_node[P->ni++] = j;
        }
    }
    for (Py_ssize_t i = 0; i < P->nd; i++) {
        PyObject *deps = P->decls[i].deps;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(deps); k++) {
            PyObject *hit = PyDict_GetItemWithError(by_label, PyTuple_GET_ITEM(deps, k));
            if (!hit) {
                if (!PyErr_Occurred())
                    pgvc_raise_missing(P->st, P->decls[i].label_obj, PyTuple_GET_ITEM(deps, k));
                goto exit;
            }
            ADD_EDGE(i, PyLong_AsSsize_t(hit));
        }
    }
    for (Py_ssize_t j = 0; j < P->nn; j++) {
        PyObject *refs = P->nodes[j].refs;
        if (refs == Py_None)
            continue;
        if (!PyList_Check(refs)) {
            PyErr_SetString(PyExc_TypeError, "plan: refs must be a list");
            goto exit;
        }
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(refs); k++) {
            PyObject *hit = PyDict_GetItemWithError(by_oid, PyList_GET_ITEM(refs, k));
            if (hit)
                ADD_EDGE(P->nodes[j].item, P->nodes[PyLong_AsSsize_t(hit)].item);
            else if (PyErr_Occurred())
                goto exit;
        }
    }
    /* The catalog edges are the last cne edges added: keep them as node pairs too. */
    cne = 0;
    for (Py_ssize_t j = 0; j < P->nn; j++)
        if (P->nodes[j].refs != Py_None)
            cne += PyList_GET_SIZE(P->nodes[j].refs);
    cfrom = malloc(sizeof(Py_ssize_t) * (size_t)(cne + 1));
    cto = malloc(sizeof(Py_ssize_t) * (size_t)(cne + 1));
    if (!cfrom || !cto) {
        PyErr_NoMemory();
        goto exit;
    }
    cne = 0;
    for (Py_ssize_t j = 0; j < P->nn; j++) {
        PyObject *refs = P->nodes[j].refs;
        for (Py_ssize_t k = 0; refs != Py_None && k < PyList_GET_SIZE(refs); k++) {
            PyObject *hit = PyDict_GetItemWithError(by_oid, PyList_GET_ITEM(refs, k));
            if (hit) {
                cfrom[cne] = j;
                cto[cne++] = PyLong_AsSsize_t(hit);
            }
        }
    }
    if (pgvc_graph_build(&P->cg, P->nn, cfrom, cto, cne) < 0)
        goto exit;
    if (pgvc_graph_build(&P->g, P->ni, from, to, ne) < 0)
        goto exit;
    P->order = malloc(sizeof(Py_ssize_t) * (size_t)(P->ni + 1));
    cycle = malloc(sizeof(Py_ssize_t) * (size_t)(P->ni + 1));
    if (!P->order || !cycle) {
        PyErr_NoMemory();
        goto exit;
    }
    switch (pgvc_graph_order(&P->g, P->order, cycle, &clen)) {
    case 0:
        rc = 0;
        break;
    case 1:
        pgvc_raise_cycle_path(P->st, cycle, clen, item_name, P);
        break;
    default:
        break;
    }
exit:
#undef ADD_EDGE
    free(from);
    free(to);
    free(cfrom);
    free(cto);
    free(cycle);
    Py_XDECREF(key);
    Py_XDECREF(v);
    Py_XDECREF(by_name);
    Py_XDECREF(by_label);
    Py_XDECREF(by_oid);
    return rc;
}

/* ---- deciding -------------------------------------------------------------------------------- */

static void fingerprints(Decl *d)
{
    pgvc_hash h;
    pgvc_hash_init(&h, 1);
    pgvc_hash_str(&h, d->kind == 'm' ? "m" : "v");
    pgvc_hash_str(&h, d->sql);
    if (d->kind == 'm') {
        pgvc_hash_str(&h, d->with_data ? "data" : "nodata");
        pgvc_hash_str(&h, d->tablespace);
    }
    pgvc_hash_hex(&h, d->body_fp);

    pgvc_hash_init(&h, 2);
    pgvc_hash_str(&h, d->cidx);
    pgvc_hash_str(&h, d->cidx_ts);
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(d->indexes); k++) {
        PyObject *ix = PyTuple_GET_ITEM(d->indexes, k);
        pgvc_hash_str(&h, PyUnicode_AsUTF8(PyTuple_GET_ITEM(ix, 0)));
        pgvc_hash_str(&h, PyUnicode_AsUTF8(PyTuple_GET_ITEM(ix, 1)));
    }
    pgvc_hash_hex(&h, d->idx_fp);

    d->cidx_name[0] = '\0';
    if (d->cidx) {
        /* The name django-pgviews-redux gives it, so that switching keeps the index. Built whole
         * (a quoted db_table alone may take 257 bytes): a fixed buffer overflowed by one byte
         * and cut long names to one base, so two views could derive the same index name. */
        pgvc_buf base;
        pgvc_buf_init(&base);
        for (const char *p = d->db_table; *p; p++)
            pgvc_buf_put(&base, *p == '.' ? "_" : p, 1);
        pgvc_buf_put(&base, "_", 1);
        for (const char *p = d->cidx; *p; p++) {
            if (*p == ' ')
                continue;
            pgvc_buf_put(&base, *p == ',' ? "_" : p, 1);
        }
        if (d->cidx_ts)
            pgvc_buf_put(&base, "_", 1);
        for (const char *p = d->cidx_ts ? d->cidx_ts : ""; *p; p++)
            pgvc_buf_put(&base, *p == '-' ? "_" : p, 1);
        /* Out of memory (a few hundred bytes): the db_table alone still gives a valid name. */
        pgvc_derived_name(d->cidx_name, base.oom || !base.data ? d->db_table : base.data, "_index");
        pgvc_buf_free(&base);
    }
}

/* Do the index names on the catalog row differ from the declared ones? */
static int indexes_differ(Decl *d, Node *n)
{
    PyObject *have = n->index_names;
    Py_ssize_t want = PyTuple_GET_SIZE(d->indexes) + (d->cidx ? 1 : 0);
    if (!PyList_Check(have))
        return 1;
    if (PyList_GET_SIZE(have) != want)
        return 1;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(have); k++) {
        const char *name = PyUnicode_AsUTF8(PyList_GET_ITEM(have, k));
        int found = name && d->cidx && !strcmp(name, d->cidx_name);
        for (Py_ssize_t m = 0; !found && m < PyTuple_GET_SIZE(d->indexes); m++)
            found = name && !strcmp(name, PyUnicode_AsUTF8(PyTuple_GET_ITEM(PyTuple_GET_ITEM(d->indexes, m), 0)));
        if (!found)
            return 1;
    }
    return 0;
}

static void classify(Plan *P, Decl *d, int forced)
{
    Node *n = d->node >= 0 ? &P->nodes[d->node] : NULL;
    const char *why = NULL;
    fingerprints(d);
    d->action = A_SKIP;
    d->status = S_EXISTS;
    if (!n) {
        d->action = A_CREATE;
        d->status = S_CREATED;
        snprintf(d->reason, sizeof d->reason, "new");
        return;
    }
    if (forced) {
        d->action = A_RECREATE;
        d->status = S_FORCED;
        snprintf(d->reason, sizeof d->reason, "its columns changed incompatibly (--force)");
        return;
    }
    if (n->relkind != d->kind)
        why = d->kind == 'm' ? "was a view, is now a materialized view"
                             : "was a materialized view, is now a view";
    else if (!n->ours)
        why = "not created by django-pgviews-c (adopting it)";
    else if (strcmp(n->c_body, d->body_fp))
        why = "definition changed";
    else if (n->defmd5 && strcmp(n->defmd5, n->c_def))
        why = "changed in the database since the last sync";
    else if (d->kind == 'm' && !P->check_sql_changed)
        why = "MATERIALIZED_VIEWS_CHECK_SQL_CHANGED is off";
    if (why) {
        snprintf(d->reason, sizeof d->reason, "%s", why);
        /* --no-update leaves what exists; with the SQL check off, materialized views are
         * rebuilt all the same, as django-pgviews-redux does. */
        if (!P->update && !(d->kind == 'm' && !P->check_sql_changed))
            return;
        d->status = S_UPDATED;
        if (n->relkind != d->kind)
            d->action = A_RECREATE;
        else if (d->kind == 'v')
            d->action = A_REPLACE;
        else
            d->action = P->beside ? A_BESIDE : A_RECREATE;
        return;
    }
    if (n->defmd5) /* same definition, but the rewrite rule row is new (dump and restore) */
        d->restamp = 1;
    if (d->kind == 'm') {
        if (strcmp(n->c_idx, d->idx_fp) || indexes_differ(d, n)) {
            d->reindex = 1;
            snprintf(d->reason, sizeof d->reason, "indexes changed");
        }
        if (!n->populated && d->with_data) {
            d->refresh = 1;
            snprintf(d->reason, sizeof d->reason, "not populated");
        }
    }
}

static const char *item_label(Plan *P, Py_ssize_t it)
{
    return it < P->nd ? P->decls[it].label : P->nodes[P->item_node[it]].name;
}

static int changes_output(Plan *P, Py_ssize_t it)
{
    if (it < P->nd) {
        Decl *d = &P->decls[it];
        return d->action != A_SKIP || d->refresh || d->chain || (d->kind == 'v' && d->taint);
    }
    return P->nodes[P->item_node[it]].relkind == 'v' && P->nodes[P->item_node[it]].taint;
}

/* The forward pass: drops spread to everything that reads a dropped object, stale data spreads
 * to every materialized view that reads it. Returns the list of refused dependants. */
static PyObject *propagate(Plan *P)
{
    PyObject *refused = PyList_New(0);
    if (!refused)
        return NULL;
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k], nj = P->item_node[it];
        Node *n = nj >= 0 ? &P->nodes[nj] : NULL;
        int taint = 0, dropped = 0;
        Py_ssize_t dropped_by = -1, tainted_by = -1;
        for (Py_ssize_t e = P->g.dep_off[it]; e < P->g.dep_off[it + 1]; e++) {
            Py_ssize_t w = P->g.dep[e];
            if (changes_output(P, w)) {
                taint = 1;
                tainted_by = w;
            }
        }
        /* A drop spreads only along what pg_depend records. */
        for (Py_ssize_t e = n ? P->cg.dep_off[nj] : 0; n && e < P->cg.dep_off[nj + 1]; e++) {
            Node *w = &P->nodes[P->cg.dep[e]];
            if (w->dropped) {
                dropped = 1;
                dropped_by = w->item;
            }
        }
        if (it < P->nd && P->decls[it].chain) {
            /* Built anew in the build schema; the old object goes at the swap. */
            P->decls[it].taint = taint;
            if (n)
                n->dropped = 1;
        } else if (it < P->nd) {
            Decl *d = &P->decls[it];
            d->taint = taint;
            if (d->action == A_BESIDE && taint) {
                d->action = A_RECREATE;
                snprintf(d->reason + strlen(d->reason), sizeof d->reason - strlen(d->reason),
                         "; rebuilt in place after %s", item_label(P, tainted_by));
            }
            if (dropped && (d->action == A_SKIP || d->action == A_REPLACE || d->action == A_BESIDE)) {
                const char *by = item_label(P, dropped_by);
                if (d->action == A_SKIP)
                    snprintf(d->reason, sizeof d->reason, "re-created: it reads %s, which is re-created", by);
                d->action = A_RECREATE;
                if (d->status == S_EXISTS)
                    d->status = S_UPDATED;
                d->refresh = 0;
                d->reindex = 0;
            }
            if (d->action == A_SKIP && d->kind == 'm' && taint && !d->refresh &&
                (d->with_data || (n && n->populated))) {
                d->refresh = 1;
                snprintf(d->reason, sizeof d->reason, "re-populated: it reads %s, which changed",
                         item_label(P, tainted_by));
            }
            if (n && (d->action == A_RECREATE || d->action == A_BESIDE))
                n->dropped = 1;
        } else {
            n->taint = taint;
            if (dropped) {
                n->dropped = 1;
                if (P->restore)
                    n->restore = 1;
                else {
                    const char *by = item_label(P, dropped_by);
                    PyObject *row = Py_BuildValue("(sssC)", n->schema, n->name, by, (int)n->relkind);
                    if (!row || PyList_Append(refused, row) < 0) {
                        Py_XDECREF(row);
                        Py_DECREF(refused);
                        return NULL;
                    }
                    Py_DECREF(row);
                }
            }
        }
    }
    return refused;
}


/* The build schema of a changed chain: the new versions of changed views and of every
 * materialized view that reads them are created there, under their own names, with the build
 * schema first on the search_path, so unqualified names inside their SQL find the new versions.
 * Readers keep the old ones until the swap moves the new ones into place. */
#define PGVC_BUILD_SCHEMA "_pgviews_c_build"

static int decl_stale(Decl *d)
{
    return d->action != A_SKIP || (d->refresh && d->taint) || (d->kind == 'v' && d->taint);
}

/* Decide which declarations form chains. Returns the number chosen. */
static Py_ssize_t choose_chain(Plan *P)
{
    Py_ssize_t count = 0;
    char *ok = calloc((size_t)P->ni + 1, 1);
    if (!ok) {
        PyErr_NoMemory();
        return -1;
    }
    /* Does anything we do not manage read this node, directly or not? Then a drop it did not
     * need before would take it down: such a node stays out of chains (unless restoring). */
    for (Py_ssize_t k = P->ni - 1; k >= 0; k--) {
        Py_ssize_t nj = P->item_node[P->order[k]];
        if (nj < 0)
            continue;
        for (Py_ssize_t e = P->cg.rdep_off[nj]; e < P->cg.rdep_off[nj + 1]; e++) {
            Node *w = &P->nodes[P->cg.rdep[e]];
            if (w->decl < 0 || w->external_below)
                P->nodes[nj].external_below = 1;
        }
    }
    /* ok[it]: the item's new version can be built in the build schema, from new versions of
     * everything changed that it reads. */
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k];
        Decl *d;
        Node *n;
        int good;
        if (it >= P->nd)
            continue;
        d = &P->decls[it];
        n = d->node >= 0 ? &P->nodes[d->node] : NULL;
        if (!decl_stale(d))
            continue;
        good = !strcmp(d->schema, P->current_schema) && (P->restore || !n || !n->external_below) &&
               (!n || n->relkind == d->kind);
        for (Py_ssize_t e = P->g.dep_off[it]; good && e < P->g.dep_off[it + 1]; e++) {
            Py_ssize_t w = P->g.dep[e];
            if (w >= P->nd)
                good = !P->nodes[P->item_node[w]].taint; /* an unmanaged view that changes */
            else if (decl_stale(&P->decls[w]))
                good = ok[w];
        }
        ok[it] = (char)good;
    }
    /* A chain is worth building for a materialized view that must be rebuilt or re-populated
     * because of what it reads; it takes with it the changed things it reads. */
    for (Py_ssize_t k = P->ni - 1; k >= 0; k--) {
        Py_ssize_t it = P->order[k];
        Decl *d;
        if (it >= P->nd)
            continue;
        d = &P->decls[it];
        if (!ok[it])
            continue;
        if (!d->chain && d->kind == 'm' && d->taint && d->node >= 0)
            d->chain = 1;
        if (!d->chain)
            continue;
        for (Py_ssize_t e = P->g.dep_off[it]; e < P->g.dep_off[it + 1]; e++) {
            Py_ssize_t w = P->g.dep[e];
            if (w < P->nd && decl_stale(&P->decls[w]))
                P->decls[w].chain = 1;
        }
    }
    for (Py_ssize_t i = 0; i < P->nd; i++)
        if (P->decls[i].chain) {
            char *inplace = strstr(P->decls[i].reason, "; rebuilt in place after");
            if (inplace)
                *inplace = '\0';
            if (!P->decls[i].reason[0])
                snprintf(P->decls[i].reason, sizeof P->decls[i].reason,
                         "rebuilt beside the old one, with the changed views it reads");
            count++;
            P->decls[i].refresh = 0;
            P->decls[i].reindex = 0;
        }
    free(ok);
    return count;
}

/* ---- writing the actions ------------------------------------------------------------------- */

static const char *L_NONE = "none";
static const char *L_READS = "ACCESS SHARE on the relations it reads";
static const char *L_NEW = "ACCESS SHARE on what it reads; the new copy is invisible to readers";
static const char *L_AX = "ACCESS EXCLUSIVE until commit: readers wait";
static const char *L_SHARE = "SHARE: writes wait, reads go on";
static const char *L_EXCL = "EXCLUSIVE: reads go on";
static const char *L_COMMENT = "SHARE UPDATE EXCLUSIVE: reads and writes go on";

/* Append one action with the buffer's SQL. RAISES_NEG. */
static int emit(Plan *P, const char *op, Py_ssize_t decl, const char *lock, const char *target,
                int phase, Py_ssize_t sql_offset)
{
    PyObject *sql = pgvc_buf_to_str(&P->buf), *t;
    if (!sql)
        return -1;
    t = Py_BuildValue("(snNssin)", op, decl, sql, lock, target, phase, sql_offset);
    if (!t || PyList_Append(P->actions, t) < 0) {
        Py_XDECREF(t);
        return -1;
    }
    Py_DECREF(t);
    pgvc_buf_reset(&P->buf);
    return 0;
}

/* Characters (not bytes) of the buffer so far: servers report positions in characters. */
static Py_ssize_t char_len(pgvc_buf *b)
{
    Py_ssize_t n = 0;
    for (size_t i = 0; i < b->len; i++)
        if (((unsigned char)b->data[i] & 0xC0) != 0x80)
            n++;
    return n;
}

static void target_name(char *out, size_t cap, const char *label, const char *schema, const char *name)
{
    if (label)
        snprintf(out, cap, "%s (%s.%s)", label, schema, name);
    else
        snprintf(out, cap, "%s.%s", schema, name);
}

static const char *rel_word(char kind) { return kind == 'm' ? "MATERIALIZED VIEW" : "VIEW"; }

static int emit_create_in(Plan *P, Py_ssize_t i, const char *schema, const char *name, int phase,
                          const char *op, const char *lock)
{
    Decl *d = &P->decls[i];
    char target[512];
    Py_ssize_t off;
    target_name(target, sizeof target, d->label, d->schema, d->name);
    pgvc_buf_puts(&P->buf, "CREATE ");
    if (!strcmp(op, "replace"))
        pgvc_buf_puts(&P->buf, "OR REPLACE ");
    pgvc_buf_puts(&P->buf, rel_word(d->kind));
    pgvc_buf_puts(&P->buf, " ");
    pgvc_buf_qualified(&P->buf, schema, name);
    if (d->kind == 'm' && d->tablespace) {
        pgvc_buf_puts(&P->buf, " TABLESPACE ");
        pgvc_buf_ident(&P->buf, d->tablespace);
    }
    pgvc_buf_puts(&P->buf, " AS\n");
    off = char_len(&P->buf);
    pgvc_buf_puts(&P->buf, d->sql);
    if (d->kind == 'm')
        pgvc_buf_puts(&P->buf, d->with_data ? "\nWITH DATA" : "\nWITH NO DATA");
    return emit(P, op, i, lock, target, phase, off);
}

static int emit_create(Plan *P, Py_ssize_t i, const char *name, int phase, const char *op,
                       const char *lock)
{
    return emit_create_in(P, i, P->decls[i].schema, name, phase, op, lock);
}

/* Substitute \x01T\x01 (table) and \x01N\x01 (index name) in a Django index template. */
static void put_template(pgvc_buf *b, const char *tpl, const char *schema, const char *table,
                         const char *index)
{
    for (const char *p = tpl; *p; p++) {
        if (p[0] == '\x01' && (p[1] == 'T' || p[1] == 'N') && p[2] == '\x01') {
            if (p[1] == 'T')
                pgvc_buf_qualified(b, schema, table);
            else
                pgvc_buf_ident(b, index);
            p += 2;
        } else
            pgvc_buf_put(b, p, 1);
    }
}

/* Every declared index of a materialized view, on `table`; names get `suffix`. */
static int emit_indexes_in(Plan *P, Py_ssize_t i, const char *schema, const char *table,
                           const char *suffix, int phase, const char *op, const char *lock);

static int emit_indexes(Plan *P, Py_ssize_t i, const char *table, const char *suffix, int phase,
                        const char *op, const char *lock)
{
    return emit_indexes_in(P, i, P->decls[i].schema, table, suffix, phase, op, lock);
}

static int emit_indexes_in(Plan *P, Py_ssize_t i, const char *schema, const char *table,
                           const char *suffix, int phase, const char *op, const char *lock)
{
    Decl *d = &P->decls[i];
    char target[512], iname[PGVC_NAMEDATALEN];
    target_name(target, sizeof target, d->label, d->schema, d->name);
    if (d->cidx) {
        pgvc_derived_name(iname, d->cidx_name, suffix);
        pgvc_buf_puts(&P->buf, "CREATE UNIQUE INDEX ");
        pgvc_buf_ident(&P->buf, iname);
        pgvc_buf_puts(&P->buf, " ON ");
        pgvc_buf_qualified(&P->buf, schema, table);
        pgvc_buf_puts(&P->buf, " (");
        pgvc_buf_puts(&P->buf, d->cidx); /* a column list, as django-pgviews-redux takes it */
        pgvc_buf_puts(&P->buf, ")");
        if (d->cidx_ts) {
            pgvc_buf_puts(&P->buf, " TABLESPACE ");
            pgvc_buf_ident(&P->buf, d->cidx_ts);
        }
        if (emit(P, op, i, lock, target, phase, -1) < 0)
            return -1;
    }
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(d->indexes); k++) {
        PyObject *ix = PyTuple_GET_ITEM(d->indexes, k);
        pgvc_derived_name(iname, PyUnicode_AsUTF8(PyTuple_GET_ITEM(ix, 0)), suffix);
        put_template(&P->buf, PyUnicode_AsUTF8(PyTuple_GET_ITEM(ix, 1)), schema, table, iname);
        if (emit(P, op, i, lock, target, phase, -1) < 0)
            return -1;
    }
    return 0;
}

/* GRANTs and owner of the object a rebuild replaces. */
static int emit_grants(Plan *P, Py_ssize_t decl, Node *n, char kind, const char *target)
{
    pgvc_buf qual;
    int rc = 0;
    if (!n || ((n->acl == Py_None || !PyList_Check(n->acl) || !PyList_GET_SIZE(n->acl)) && !n->owner))
        return 0;
    pgvc_buf_init(&qual);
    pgvc_buf_qualified(&qual, n->schema, n->name);
    if (qual.oom) {
        PyErr_NoMemory();
        return -1;
    }
    if (n->acl != Py_None && PyList_Check(n->acl)) {
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(n->acl); k++) {
            const char *item = PyUnicode_AsUTF8(PyList_GET_ITEM(n->acl, k));
            size_t olen = n->owner ? strlen(n->owner) : 0;
            if (!item) {
                rc = -1;
                goto exit;
            }
            /* The owner's own rights come with ownership. */
            if (n->owner && !strncmp(item, n->owner, olen) && item[olen] == '=')
                continue;
            pgvc_acl_to_grants(&P->buf, item, qual.data);
        }
    }
    if (n->owner) {
        pgvc_buf_puts(&P->buf, "ALTER ");
        pgvc_buf_puts(&P->buf, rel_word(kind));
        pgvc_buf_puts(&P->buf, " ");
        pgvc_buf_puts(&P->buf, qual.data);
        pgvc_buf_puts(&P->buf, " OWNER TO ");
        pgvc_buf_ident(&P->buf, n->owner);
    }
    if (P->buf.len)
        rc = emit(P, "grant", decl, "catalog update; no lock readers wait on", target, 1, -1);
exit:
    pgvc_buf_free(&qual);
    return rc;
}

static int emit_drop(Plan *P, Py_ssize_t it)
{
    Node *n = &P->nodes[P->item_node[it]];
    char target[512];
    target_name(target, sizeof target, it < P->nd ? P->decls[it].label : NULL, n->schema, n->name);
    pgvc_buf_puts(&P->buf, "DROP ");
    pgvc_buf_puts(&P->buf, rel_word(n->relkind));
    pgvc_buf_puts(&P->buf, " ");
    pgvc_buf_qualified(&P->buf, n->schema, n->name);
    return emit(P, "drop", it < P->nd ? it : -1, L_AX, target, 1, -1);
}

static int emit_restore(Plan *P, Py_ssize_t it)
{
    Node *n = &P->nodes[P->item_node[it]];
    char target[512];
    size_t len;
    target_name(target, sizeof target, NULL, n->schema, n->name);
    if (!n->fulldef) {
        PyErr_Format(P->st->PlanError, "cannot restore %s: its definition was not read", target);
        return -1;
    }
    pgvc_buf_puts(&P->buf, "CREATE ");
    pgvc_buf_puts(&P->buf, rel_word(n->relkind));
    pgvc_buf_puts(&P->buf, " ");
    pgvc_buf_qualified(&P->buf, n->schema, n->name);
    if (n->relkind == 'm' && n->tablespace) {
        pgvc_buf_puts(&P->buf, " TABLESPACE ");
        pgvc_buf_ident(&P->buf, n->tablespace);
    }
    pgvc_buf_puts(&P->buf, " AS\n");
    len = strlen(n->fulldef);
    while (len && (n->fulldef[len - 1] == ';' || n->fulldef[len - 1] == ' ' || n->fulldef[len - 1] == '\n'))
        len--;
    pgvc_buf_put(&P->buf, n->fulldef, len);
    if (n->relkind == 'm')
        pgvc_buf_puts(&P->buf, n->populated ? "\nWITH DATA" : "\nWITH NO DATA");
    if (emit(P, "restore", -1, L_READS, target, 1, -1) < 0)
        return -1;
    if (PyList_Check(n->index_defs))
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(n->index_defs); k++) {
            pgvc_buf_puts(&P->buf, PyUnicode_AsUTF8(PyList_GET_ITEM(n->index_defs, k)));
            if (emit(P, "restore", -1, L_READS, target, 1, -1) < 0)
                return -1;
        }
    if (n->comment) {
        pgvc_buf_puts(&P->buf, "COMMENT ON ");
        pgvc_buf_puts(&P->buf, rel_word(n->relkind));
        pgvc_buf_puts(&P->buf, " ");
        pgvc_buf_qualified(&P->buf, n->schema, n->name);
        pgvc_buf_puts(&P->buf, " IS ");
        pgvc_buf_literal(&P->buf, n->comment);
        if (emit(P, "restore", -1, L_COMMENT, target, 1, -1) < 0)
            return -1;
    }
    return emit_grants(P, -1, n, n->relkind, target);
}

static int emit_refresh(Plan *P, Py_ssize_t i)
{
    Decl *d = &P->decls[i];
    Node *n = d->node >= 0 ? &P->nodes[d->node] : NULL;
    char target[512];
    int concurrently = d->cidx && n && n->populated && !d->reindex;
    target_name(target, sizeof target, d->label, d->schema, d->name);
    pgvc_buf_puts(&P->buf, concurrently ? "REFRESH MATERIALIZED VIEW CONCURRENTLY "
                                        : "REFRESH MATERIALIZED VIEW ");
    pgvc_buf_qualified(&P->buf, d->schema, d->name);
    return emit(P, "refresh", i, concurrently ? L_EXCL : L_AX, target, 1, -1);
}

static int emit_reindex(Plan *P, Py_ssize_t i)
{
    Decl *d = &P->decls[i];
    Node *n = &P->nodes[d->node];
    char target[512];
    target_name(target, sizeof target, d->label, d->schema, d->name);
    /* Drop what is there, build what is declared: index names carry their definition. */
    if (PyList_Check(n->index_names))
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(n->index_names); k++) {
            pgvc_buf_puts(&P->buf, "DROP INDEX ");
            pgvc_buf_qualified(&P->buf, d->schema, PyUnicode_AsUTF8(PyList_GET_ITEM(n->index_names, k)));
            if (emit(P, "drop_index", i, L_AX, target, 1, -1) < 0)
                return -1;
        }
    return emit_indexes(P, i, d->name, "", 1, "index", L_SHARE);
}

/* One DO block writes every fingerprint, with the rewrite rule's xmin and the md5 of
 * pg_get_viewdef() read after creation, so later syncs can tell hand-made changes. */
static int emit_stamp(Plan *P)
{
    pgvc_buf rels, notes, body;
    char tag[32];
    int n = 0, rc = -1;
    pgvc_buf_init(&rels);
    pgvc_buf_init(&notes);
    pgvc_buf_init(&body);
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k];
        Decl *d;
        Node *old;
        if (it >= P->nd)
            continue;
        d = &P->decls[it];
        if (d->action == A_SKIP && !d->reindex && !d->restamp && !d->chain)
            continue;
        old = d->node >= 0 ? &P->nodes[d->node] : NULL;
        pgvc_buf_puts(&rels, n ? ", " : "");
        pgvc_buf_reset(&body);
        pgvc_buf_qualified(&body, d->schema, d->name);
        pgvc_buf_literal(&rels, body.data);
        pgvc_buf_reset(&body);
        if (old && old->comment && old->user_len) {
            pgvc_buf_put(&body, old->comment, old->user_len);
            pgvc_buf_puts(&body, "\n");
        }
        pgvc_buf_puts(&body, PGVC_MARK " body=");
        pgvc_buf_puts(&body, d->body_fp);
        pgvc_buf_puts(&body, " idx=");
        pgvc_buf_puts(&body, d->idx_fp);
        pgvc_buf_puts(&notes, n ? ", " : "");
        pgvc_buf_literal(&notes, body.data);
        n++;
    }
    if (!n) {
        rc = 0;
        goto exit;
    }
    if (rels.oom || notes.oom || body.oom) {
        PyErr_NoMemory();
        goto exit;
    }
    /* A dollar-quote tag that occurs nowhere in the text it encloses. */
    for (int k = 0;; k++) {
        snprintf(tag, sizeof tag, "$pgvc%d$", k);
        if (!strstr(rels.data, tag) && !strstr(notes.data, tag))
            break;
    }
    pgvc_buf_puts(&P->buf, "DO ");
    pgvc_buf_puts(&P->buf, tag);
    pgvc_buf_puts(&P->buf,
                  "\nDECLARE r record;\nBEGIN\n"
                  "  FOR r IN SELECT c.oid::regclass AS rel, c.relkind, t.note,\n"
                  "      (SELECT w.xmin FROM pg_catalog.pg_rewrite w\n"
                  "        WHERE w.ev_class = c.oid AND w.rulename = '_RETURN') AS rw\n"
                  "    FROM unnest(ARRAY[");
    pgvc_buf_put(&P->buf, rels.data, rels.len);
    pgvc_buf_puts(&P->buf, "]::text[], ARRAY[");
    pgvc_buf_put(&P->buf, notes.data, notes.len);
    pgvc_buf_puts(&P->buf,
                  "]::text[]) AS t(rel, note)\n"
                  "    JOIN pg_catalog.pg_class c ON c.oid = t.rel::regclass\n"
                  "  LOOP\n"
                  "    EXECUTE pg_catalog.format('COMMENT ON %s %s IS %L',\n"
                  "      CASE r.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, r.rel,\n"
                  "      r.note || ' rw=' || r.rw::text || ' def=' ||\n"
                  "        pg_catalog.md5(pg_catalog.pg_get_viewdef(r.rel::oid)));\n"
                  "  END LOOP;\nEND\n");
    pgvc_buf_puts(&P->buf, tag);
    rc = emit(P, "stamp", -1, L_COMMENT, "fingerprints", 1, -1);
exit:
    pgvc_buf_free(&rels);
    pgvc_buf_free(&notes);
    pgvc_buf_free(&body);
    return rc;
}

/* A view of a chain replaces the old one by a drop and a move, which never asks the server
 * whether the new columns extend the old ones, as CREATE OR REPLACE VIEW does: without this
 * check an incompatible change (a column dropped, renamed or retyped) went through without
 * --force whenever a materialized view read the view. The new version in the build schema is
 * compared with the old one, column by column, in the catalog only (no lock on the old view);
 * a difference raises 42P16, which the sync reports as ForceRequiredError. */
static int emit_compat_check(Plan *P, Py_ssize_t i)
{
    Decl *d = &P->decls[i];
    Node *n = &P->nodes[d->node];
    char tag[32], num[32], target[512];
    pgvc_buf name;
    int rc = -1;
    pgvc_buf_init(&name);
    pgvc_buf_literal(&name, d->name);
    if (name.oom) {
        PyErr_NoMemory();
        goto exit;
    }
    for (int k = 0;; k++) {
        snprintf(tag, sizeof tag, "$pgvc%d$", k);
        if (!strstr(name.data, tag))
            break;
    }
    target_name(target, sizeof target, d->label, d->schema, d->name);
    snprintf(num, sizeof num, "%lld", n->oid);
    pgvc_buf_puts(&P->buf, "DO ");
    pgvc_buf_puts(&P->buf, tag);
    pgvc_buf_puts(&P->buf,
                  "\nDECLARE o record; c record;\nBEGIN\n"
                  "  FOR o IN SELECT a.attnum, a.attname, a.atttypid, a.atttypmod, a.attcollation\n"
                  "    FROM pg_catalog.pg_attribute a WHERE a.attrelid = ");
    pgvc_buf_puts(&P->buf, num);
    pgvc_buf_puts(&P->buf,
                  "::pg_catalog.oid\n"
                  "      AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum\n"
                  "  LOOP\n"
                  "    SELECT a.attname, a.atttypid, a.atttypmod, a.attcollation INTO c\n"
                  "      FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class r ON r.oid = a.attrelid\n"
                  "      WHERE r.relnamespace = '" PGVC_BUILD_SCHEMA "'::pg_catalog.regnamespace\n"
                  "        AND r.relname = ");
    pgvc_buf_put(&P->buf, name.data, name.len);
    pgvc_buf_puts(&P->buf,
                  " AND a.attnum = o.attnum AND NOT a.attisdropped;\n"
                  "    IF NOT FOUND THEN\n"
                  "      RAISE EXCEPTION 'cannot drop columns from view' USING ERRCODE = '42P16';\n"
                  "    ELSIF c.attname <> o.attname THEN\n"
                  "      RAISE EXCEPTION 'cannot change name of view column \"%\" to \"%\"', o.attname, c.attname\n"
                  "        USING ERRCODE = '42P16';\n"
                  "    ELSIF c.atttypid <> o.atttypid OR c.atttypmod <> o.atttypmod THEN\n"
                  "      RAISE EXCEPTION 'cannot change data type of view column \"%\" from % to %', o.attname,\n"
                  "        pg_catalog.format_type(o.atttypid, o.atttypmod),\n"
                  "        pg_catalog.format_type(c.atttypid, c.atttypmod) USING ERRCODE = '42P16';\n"
                  "    ELSIF c.attcollation <> o.attcollation THEN\n"
                  "      RAISE EXCEPTION 'cannot change collation of view column \"%\"', o.attname\n"
                  "        USING ERRCODE = '42P16';\n"
                  "    END IF;\n"
                  "  END LOOP;\nEND\n");
    pgvc_buf_puts(&P->buf, tag);
    rc = emit(P, "compat_check", i, L_NONE, target, 0, -1);
exit:
    pgvc_buf_free(&name);
    return rc;
}

/* Phase 0 of a chain: the build schema first on the search_path, the new versions created there
 * in order, a check that none of them reads an old object it should read anew (SQL that names
 * one by schema), then the search_path back as it was. */
static int emit_chain_build(Plan *P)
{
    char num[32];
    int first = 1;
    pgvc_buf_puts(&P->buf, "CREATE SCHEMA " PGVC_BUILD_SCHEMA);
    if (emit(P, "chain_schema", -1, L_NONE, PGVC_BUILD_SCHEMA, 0, -1) < 0)
        return -1;
    pgvc_buf_puts(&P->buf, "SELECT pg_catalog.set_config('search_path', '" PGVC_BUILD_SCHEMA ", ' || "
                           "pg_catalog.current_setting('search_path'), true)");
    if (emit(P, "chain_path", -1, L_NONE, PGVC_BUILD_SCHEMA, 0, -1) < 0)
        return -1;
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k];
        if (it >= P->nd || !P->decls[it].chain)
            continue;
        if (emit_create_in(P, it, PGVC_BUILD_SCHEMA, P->decls[it].name, 0, "build", L_NEW) < 0)
            return -1;
        /* A changed view that CREATE OR REPLACE would have updated: same columns, or more. */
        if (P->decls[it].kind == 'v' && P->decls[it].action == A_REPLACE && P->decls[it].node >= 0 &&
            P->nodes[P->decls[it].node].relkind == 'v' && emit_compat_check(P, it) < 0)
            return -1;
        if (P->decls[it].kind == 'm' &&
            emit_indexes_in(P, it, PGVC_BUILD_SCHEMA, P->decls[it].name, "", 0, "build_index", L_NEW) < 0)
            return -1;
    }
    pgvc_buf_puts(&P->buf,
                  "DO $pgvc$ BEGIN\n"
                  "  IF EXISTS (SELECT 1 FROM pg_catalog.pg_depend d\n"
                  "    JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid\n"
                  "    JOIN pg_catalog.pg_class c ON c.oid = w.ev_class\n"
                  "    WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass\n"
                  "      AND c.relnamespace = '" PGVC_BUILD_SCHEMA "'::regnamespace\n"
                  "      AND d.refobjid = ANY('{");
    for (Py_ssize_t i = 0; i < P->nd; i++) {
        if (!P->decls[i].chain || P->decls[i].node < 0)
            continue;
        snprintf(num, sizeof num, "%s%lld", first ? "" : ",", P->nodes[P->decls[i].node].oid);
        pgvc_buf_puts(&P->buf, num);
        first = 0;
    }
    pgvc_buf_puts(&P->buf, "}'::oid[])) THEN\n"
                           "    RAISE EXCEPTION 'django-pgviews-c: chain reads an old object' USING ERRCODE = 'P0001';\n"
                           "  END IF;\nEND $pgvc$");
    if (emit(P, "chain_check", -1, L_NONE, PGVC_BUILD_SCHEMA, 0, -1) < 0)
        return -1;
    pgvc_buf_puts(&P->buf, "SELECT pg_catalog.set_config('search_path', pg_catalog.substr("
                           "pg_catalog.current_setting('search_path'), ");
    snprintf(num, sizeof num, "%d", (int)strlen(PGVC_BUILD_SCHEMA ", ") + 1);
    pgvc_buf_puts(&P->buf, num);
    pgvc_buf_puts(&P->buf, "), true)");
    return emit(P, "chain_path", -1, L_NONE, PGVC_BUILD_SCHEMA, 0, -1);
}

static int emit_all(Plan *P)
{
    char tmp[PGVC_NAMEDATALEN], target[512];
    /* Phase 0: schemas, then materialized views built beside the old ones. */
    for (Py_ssize_t i = 0; i < P->nd; i++) {
        Decl *d = &P->decls[i];
        PyObject *s;
        int has;
        if (!d->explicit_schema)
            continue;
        if (!(s = PyUnicode_FromString(d->schema)))
            return -1;
        has = PySet_Contains(P->schemas, s);
        if (has == 0)
            has = PySet_Add(P->schemas, s) < 0 ? -1 : 0;
        Py_DECREF(s);
        if (has < 0)
            return -1;
        if (has)
            continue;
        pgvc_buf_puts(&P->buf, "CREATE SCHEMA IF NOT EXISTS ");
        pgvc_buf_ident(&P->buf, d->schema);
        if (emit(P, "create_schema", i, L_NONE, d->schema, 0, -1) < 0)
            return -1;
    }
    if (P->nchain && emit_chain_build(P) < 0)
        return -1;
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k];
        if (it >= P->nd || P->decls[it].action != A_BESIDE || P->decls[it].chain)
            continue;
        pgvc_derived_name(tmp, P->decls[it].name, "_pgvc_new");
        if (emit_create(P, it, tmp, 0, "build", L_NEW) < 0 ||
            emit_indexes(P, it, tmp, "_pgvc_new", 0, "build_index", L_NEW) < 0)
            return -1;
    }
    /* Phase 1: drops, dependants first. */
    for (Py_ssize_t k = P->ni - 1; k >= 0; k--) {
        Py_ssize_t it = P->order[k], nj = P->item_node[it];
        if (nj >= 0 && P->nodes[nj].dropped && emit_drop(P, it) < 0)
            return -1;
    }
    /* Then everything else, dependencies first. */
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k];
        Decl *d;
        Node *old;
        if (it >= P->nd) {
            if (P->nodes[P->item_node[it]].restore && emit_restore(P, it) < 0)
                return -1;
            continue;
        }
        d = &P->decls[it];
        old = d->node >= 0 ? &P->nodes[d->node] : NULL;
        target_name(target, sizeof target, d->label, d->schema, d->name);
        if (d->chain) {
            pgvc_buf_puts(&P->buf, "ALTER ");
            pgvc_buf_puts(&P->buf, rel_word(d->kind));
            pgvc_buf_puts(&P->buf, " ");
            pgvc_buf_qualified(&P->buf, PGVC_BUILD_SCHEMA, d->name);
            pgvc_buf_puts(&P->buf, " SET SCHEMA ");
            pgvc_buf_ident(&P->buf, d->schema);
            if (emit(P, "swap", it, L_AX, target, 1, -1) < 0 || emit_grants(P, it, old, d->kind, target) < 0)
                return -1;
            continue;
        }
        switch (d->action) {
        case A_CREATE:
        case A_RECREATE:
            if (emit_create(P, it, d->name, 1, "create", L_READS) < 0)
                return -1;
            if (d->kind == 'm' && emit_indexes(P, it, d->name, "", 1, "index", L_SHARE) < 0)
                return -1;
            if (d->action == A_RECREATE && emit_grants(P, it, old, d->kind, target) < 0)
                return -1;
            break;
        case A_REPLACE:
            if (emit_create(P, it, d->name, 1, "replace", L_AX) < 0)
                return -1;
            break;
        case A_BESIDE: {
            char iname[PGVC_NAMEDATALEN];
            pgvc_derived_name(tmp, d->name, "_pgvc_new");
            pgvc_buf_puts(&P->buf, "ALTER MATERIALIZED VIEW ");
            pgvc_buf_qualified(&P->buf, d->schema, tmp);
            pgvc_buf_puts(&P->buf, " RENAME TO ");
            pgvc_buf_ident(&P->buf, d->name);
            for (Py_ssize_t x = -1; x < PyTuple_GET_SIZE(d->indexes); x++) {
                const char *final = x < 0 ? (d->cidx ? d->cidx_name : NULL)
                                          : PyUnicode_AsUTF8(PyTuple_GET_ITEM(PyTuple_GET_ITEM(d->indexes, x), 0));
                if (!final)
                    continue;
                pgvc_derived_name(iname, final, "_pgvc_new");
                pgvc_buf_puts(&P->buf, ";\nALTER INDEX ");
                pgvc_buf_qualified(&P->buf, d->schema, iname);
                pgvc_buf_puts(&P->buf, " RENAME TO ");
                pgvc_buf_ident(&P->buf, final);
            }
            if (emit(P, "swap", it, L_AX, target, 1, -1) < 0 || emit_grants(P, it, old, d->kind, target) < 0)
                return -1;
            break;
        }
        default:
            if (d->reindex && emit_reindex(P, it) < 0)
                return -1;
            if (d->refresh && emit_refresh(P, it) < 0)
                return -1;
        }
    }
    if (P->nchain) {
        pgvc_buf_puts(&P->buf, "DROP SCHEMA " PGVC_BUILD_SCHEMA);
        if (emit(P, "drop_schema", -1, L_NONE, PGVC_BUILD_SCHEMA, 1, -1) < 0)
            return -1;
    }
    return emit_stamp(P);
}

static PyObject *refusal_error(Plan *P, PyObject *refused)
{
    pgvc_buf msg;
    PyObject *text;
    pgvc_buf_init(&msg);
    pgvc_buf_puts(&msg, "refusing to drop objects that django-pgviews-c does not manage:");
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(refused); k++) {
        PyObject *row = PyList_GET_ITEM(refused, k);
        char line[1024];
        snprintf(line, sizeof line, "\n  %s %s.%s reads %s, which this sync must re-create",
                 PyUnicode_AsUTF8(PyTuple_GET_ITEM(row, 3))[0] == 'm' ? "materialized view" : "view",
                 PyUnicode_AsUTF8(PyTuple_GET_ITEM(row, 0)), PyUnicode_AsUTF8(PyTuple_GET_ITEM(row, 1)),
                 PyUnicode_AsUTF8(PyTuple_GET_ITEM(row, 2)));
        pgvc_buf_puts(&msg, line);
    }
    pgvc_buf_puts(&msg, "\nNothing was changed. Drop or rewrite those objects yourself, or let the "
                        "sync save and restore them: sync_pgviews --restore-dependants (setting "
                        "PGVIEWS_RESTORE_DEPENDANTS = True).");
    text = pgvc_buf_to_str(&msg);
    pgvc_buf_free(&msg);
    if (!text)
        return NULL;
    pgvc_raise_plan(P->st, P->st->DependantObjectError, text, refused);
    Py_DECREF(text);
    return NULL;
}

PyObject *pgvc_plan(pgvc_state *st, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"decls", "catalog", "force", "update", "check_sql_changed",
                             "restore_dependants", "build_beside", "recreate", "chain", NULL};
    PyObject *decls, *catalog, *recreate = NULL, *result = NULL, *oids = NULL, *refused = NULL,
             *statuses = NULL, *reasons = NULL, *order = NULL, *recreate_set = NULL;
    Plan P;
    memset(&P, 0, sizeof P);
    P.st = st;
    P.update = 1;
    P.check_sql_changed = 1;
    P.beside = 1;
    P.chain = 1;
    pgvc_buf_init(&P.buf);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!|$pppppOp:plan", kwlist, &PyList_Type,
                                     &decls, &PyList_Type, &catalog, &P.force, &P.update,
                                     &P.check_sql_changed, &P.restore, &P.beside, &recreate,
                                     &P.chain))
        return NULL;
    if (!(recreate_set = recreate ? PySet_New(recreate) : PySet_New(NULL)))
        goto exit;
    if (read_decls(&P, decls) < 0 || read_catalog(&P, catalog) < 0)
        goto exit;
    if (!(oids = PyList_New(P.nn)))
        goto exit;
    {
        Py_ssize_t j = 0;
        for (Py_ssize_t r = 0; r < PyList_GET_SIZE(catalog); r++) {
            PyObject *t = PyList_GET_ITEM(catalog, r);
            if (PyUnicode_AsUTF8(PyTuple_GET_ITEM(t, C_KIND))[0] == 'S')
                continue;
            PyList_SET_ITEM(oids, j++, Py_NewRef(PyTuple_GET_ITEM(t, C_OID)));
        }
    }
    if (build_graph(&P, oids) < 0)
        goto exit;
    for (Py_ssize_t i = 0; i < P.nd; i++) {
        Node *n;
        PyObject *key = PyLong_FromSsize_t(i);
        int forced = key ? PySet_Contains(recreate_set, key) : -1;
        Py_XDECREF(key);
        if (forced < 0)
            goto exit;
        n = P.decls[i].node >= 0 ? &P.nodes[P.decls[i].node] : NULL;
        if (n && n->relkind != 'v' && n->relkind != 'm') {
            PyErr_Format(st->PlanError,
                         "%s: %s.%s already exists and is not a view (relkind '%c'); "
                         "django-pgviews-c will not replace it",
                         P.decls[i].label, P.decls[i].schema, P.decls[i].name, n->relkind);
            goto exit;
        }
        classify(&P, &P.decls[i], forced);
    }
    if (!(refused = propagate(&P)))
        goto exit;
    if (P.chain && P.beside) {
        /* Chains change what is dropped: decide them, then spread the drops again. */
        if ((P.nchain = (int)choose_chain(&P)) < 0)
            goto exit;
        if (P.nchain) {
            for (Py_ssize_t j = 0; j < P.nn; j++)
                P.nodes[j].dropped = P.nodes[j].restore = P.nodes[j].taint = 0;
            Py_CLEAR(refused);
            if (!(refused = propagate(&P)))
                goto exit;
        }
    }
    if (PyList_GET_SIZE(refused)) {
        refusal_error(&P, refused);
        goto exit;
    }
    if (!(P.actions = PyList_New(0)) || emit_all(&P) < 0)
        goto exit;
    if (!(statuses = PyList_New(P.nd)) || !(reasons = PyList_New(P.nd)) || !(order = PyList_New(0)))
        goto exit;
    for (Py_ssize_t i = 0; i < P.nd; i++) {
        PyObject *s = PyUnicode_FromString(status_names[P.decls[i].status]);
        PyObject *r = PyUnicode_FromString(P.decls[i].reason);
        if (!s || !r) {
            Py_XDECREF(s);
            Py_XDECREF(r);
            goto exit;
        }
        PyList_SET_ITEM(statuses, i, s);
        PyList_SET_ITEM(reasons, i, r);
    }
    for (Py_ssize_t k = 0; k < P.ni; k++) {
        PyObject *v;
        if (P.order[k] >= P.nd)
            continue;
        if (!(v = PyLong_FromSsize_t(P.order[k])) || PyList_Append(order, v) < 0) {
            Py_XDECREF(v);
            goto exit;
        }
        Py_DECREF(v);
    }
    result = Py_BuildValue("{sOsOsOsOss}", "actions", P.actions, "statuses", statuses, "reasons",
                           reasons, "order", order, "current_schema", P.current_schema);
exit:
    Py_XDECREF(recreate_set);
    Py_XDECREF(oids);
    Py_XDECREF(refused);
    Py_XDECREF(statuses);
    Py_XDECREF(reasons);
    Py_XDECREF(order);
    Py_XDECREF(P.actions);
    Py_XDECREF(P.schemas);
    pgvc_buf_free(&P.buf);
    pgvc_graph_free(&P.g);
    pgvc_graph_free(&P.cg);
    free(P.order);
    free(P.item_node);
    free(P.decls);
    free(P.nodes);
    return result;
}

/* ---- the catalog query ---------------------------------------------------------------------- */

/* Parameters (pyformat): decl_schemas text[] (NULL: current schema), decl_names text[],
 * schemas text[] (explicit schemas), restore bool. One row per view or materialized view in the
 * schemas that matter, per relation named by a declaration, and per object that depends on any
 * of them (recursively, through pg_depend); then one row per existing schema. Nothing in it
 * scales with more than the objects it returns: pg_get_viewdef() runs only for rows whose rewrite
 * rule changed since our stamp, and for dependants we may have to restore. */
static const char catalog_sql[] =
    "WITH RECURSIVE\n"
    "decl AS (\n"
    "  SELECT coalesce(u.s, pg_catalog.current_schema()::text) AS nspname, u.r AS relname\n"
    "  FROM unnest(%(decl_schemas)s::text[], %(decl_names)s::text[]) AS u(s, r)\n"
    "),\n"
    "base AS (\n"
    "  SELECT c.oid FROM pg_catalog.pg_class c\n"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
    "  WHERE c.relkind IN ('v', 'm')\n"
    "    AND (n.nspname = pg_catalog.current_schema() OR n.nspname = ANY(%(schemas)s::text[]))\n"
    "  UNION\n"
    "  SELECT c.oid FROM decl d\n"
    "  JOIN pg_catalog.pg_namespace n ON n.nspname = d.nspname\n"
    "  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = d.relname\n"
    "),\n"
    "edge(dependant, referenced) AS (\n"
    "  SELECT w.ev_class, d.refobjid\n"
    "  FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid\n"
    "  WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass\n"
    "    AND d.refclassid = 'pg_catalog.pg_class'::regclass\n"
    "    AND d.refobjid IN (SELECT oid FROM base) AND w.ev_class <> d.refobjid\n"
    "  UNION\n"
    "  SELECT w.ev_class, d.refobjid\n"
    "  FROM edge e\n"
    "  JOIN pg_catalog.pg_depend d ON d.refobjid = e.dependant\n"
    "    AND d.classid = 'pg_catalog.pg_rewrite'::regclass\n"
    "    AND d.refclassid = 'pg_catalog.pg_class'::regclass\n"
    "  JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid\n"
    "  WHERE w.ev_class <> d.refobjid\n"
    "),\n"
    "node AS (SELECT oid FROM base UNION SELECT dependant FROM edge),\n"
    "refs AS (\n"
    "  SELECT dependant, array_agg(DISTINCT referenced) AS r FROM edge GROUP BY dependant\n"
    "),\n"
    "idx AS (\n"
    "  SELECT x.indrelid, array_agg(i.relname::text ORDER BY i.relname) AS names,\n"
    "    array_agg(CASE WHEN %(restore)s THEN pg_catalog.pg_get_indexdef(x.indexrelid) END\n"
    "              ORDER BY i.relname) AS defs\n"
    "  FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid\n"
    "  WHERE x.indrelid IN (SELECT oid FROM node)\n"
    "  GROUP BY x.indrelid\n"
    ")\n"
    "SELECT c.oid::bigint, n.nspname::text, c.relname::text, c.relkind::text, ds.description,\n"
    "  c.relispopulated, ts.spcname::text, w.xmin::text,\n"
    "  CASE WHEN ds.description LIKE '%%" PGVC_MARK " %%'\n"
    "        AND position(' rw=' || w.xmin::text || ' ' IN ds.description) = 0\n"
    "       THEN pg_catalog.md5(pg_catalog.pg_get_viewdef(c.oid)) END,\n"
    "  pg_catalog.pg_get_userbyid(c.relowner)::text, c.relacl::text[],\n"
    "  coalesce(idx.names, '{}'), coalesce(refs.r::bigint[], '{}'),\n"
    "  CASE WHEN %(restore)s AND c.oid IN (SELECT dependant FROM edge)\n"
    "        AND (n.nspname::text, c.relname::text) NOT IN (SELECT nspname, relname FROM decl)\n"
    "       THEN pg_catalog.pg_get_viewdef(c.oid) END,\n"
    "  CASE WHEN %(restore)s THEN idx.defs END,\n"
    "  pg_catalog.current_schema()::text\n"
    "FROM node JOIN pg_catalog.pg_class c ON c.oid = node.oid\n"
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
    "LEFT JOIN pg_catalog.pg_description ds ON ds.objoid = c.oid\n"
    "  AND ds.classoid = 'pg_catalog.pg_class'::regclass AND ds.objsubid = 0\n"
    "LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = c.reltablespace\n"
    "LEFT JOIN pg_catalog.pg_rewrite w ON w.ev_class = c.oid AND w.rulename = '_RETURN'\n"
    "LEFT JOIN refs ON refs.dependant = c.oid\n"
    "LEFT JOIN idx ON idx.indrelid = c.oid\n"
    "UNION ALL\n"
    "SELECT NULL, n.nspname::text, NULL, 'S', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,\n"
    "  NULL, NULL, NULL, pg_catalog.current_schema()::text\n"
    "FROM pg_catalog.pg_namespace n\n"
    "WHERE n.nspname = pg_catalog.current_schema() OR n.nspname = ANY(%(schemas)s::text[])\n";

PyObject *pgvc_catalog_sql(void) { return PyUnicode_FromString(catalog_sql); }
