/* plan_graph.c: the item graph. Declarations are matched to catalog rows by schema and name;
 * items are the declarations followed by the catalog's rows no declaration claims; edges join
 * declared dependencies and the real ones pg_depend records. */
#include "plan_int.h"

#include <stdlib.h>
#include <string.h>

#include "graph.h"

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
int pgvc_plan_build_graph(Plan *P, PyObject *catalog_oids)
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
