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
    return PyUnicode_FromFormat("%s.%s", P->nodes[P->item_node[it]].schema,
                                P->nodes[P->item_node[it]].name);
}

/* by_name: "schema\0name" -> node index; by_oid: oid -> node index. RAISES_NEG. */
static int index_nodes(Plan *P, PyObject *by_name, PyObject *by_oid)
{
    int rc = -1;
    PyObject *key = NULL, *v = NULL, *oid = NULL;
    for (Py_ssize_t j = 0; j < P->nn; j++) {
        if (!(key = qname_key(P->nodes[j].schema, P->nodes[j].name)) ||
            !(v = PyLong_FromSsize_t(j)) || !(oid = PyLong_FromLongLong(P->nodes[j].oid)) ||
            PyDict_SetItem(by_name, key, v) < 0 || PyDict_SetItem(by_oid, oid, v) < 0)
            goto exit;
        Py_CLEAR(key);
        Py_CLEAR(v);
        Py_CLEAR(oid);
    }
    rc = 0;
exit:
    Py_XDECREF(key);
    Py_XDECREF(v);
    Py_XDECREF(oid);
    return rc;
}

/* Each declaration finds its catalog row (if any); labels and db_tables must be unique.
 * by_label: label -> declaration index. RAISES_NEG. */
static int match_decls(Plan *P, PyObject *by_name, PyObject *by_label)
{
    int rc = -1;
    PyObject *key = NULL, *v = NULL, *hit;
    for (Py_ssize_t i = 0; i < P->nd; i++) {
        Decl *d = &P->decls[i];
        int has;
        if (!d->schema)
            d->schema = P->current_schema;
        if (!(d->target = pgvc_plan_format(P, "%s (%s.%s)", d->label, d->schema, d->name)))
            goto exit;
        if ((has = PyDict_Contains(by_label, d->label_obj)) != 0) {
            if (has > 0)
                PyErr_Format(P->st->PlanError, "%s is declared twice", d->label);
            goto exit;
        }
        if (!(v = PyLong_FromSsize_t(i)) || PyDict_SetItem(by_label, d->label_obj, v) < 0 ||
            !(key = qname_key(d->schema, d->name)))
            goto exit;
        Py_CLEAR(v);
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
    rc = 0;
exit:
    Py_XDECREF(key);
    Py_XDECREF(v);
    return rc;
}

/* Items: declarations, then unmatched nodes. RAISES_NEG. */
static int make_items(Plan *P)
{
    P->ni = P->nd;
    if (!(P->item_node = malloc(sizeof(Py_ssize_t) * (size_t)(P->nd + P->nn + 1)))) {
        PyErr_NoMemory();
        return -1;
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
    return 0;
}

/* Item edges from declared dependencies. RAISES_NEG (MissingDependencyError). */
static int add_declared_edges(Plan *P, PyObject *by_label, pgvc_edges *items)
{
    for (Py_ssize_t i = 0; i < P->nd; i++) {
        PyObject *deps = P->decls[i].deps;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(deps); k++) {
            PyObject *hit = PyDict_GetItemWithError(by_label, PyTuple_GET_ITEM(deps, k));
            if (!hit) {
                if (!PyErr_Occurred())
                    pgvc_raise_missing(P->st, P->decls[i].label_obj, PyTuple_GET_ITEM(deps, k));
                return -1;
            }
            if (pgvc_edges_push(items, i, PyLong_AsSsize_t(hit)) < 0)
                return -1;
        }
        /* A pending version is decided before its declaration (plan_defer.c). */
        if (P->decls[i].pending >= 0 &&
            pgvc_edges_push(items, i, P->nodes[P->decls[i].pending].item) < 0)
            return -1;
    }
    return 0;
}

/* Edges from pg_depend: between items, and between nodes (the edges a DROP follows).
 * RAISES_NEG. */
static int add_catalog_edges(Plan *P, PyObject *by_oid, pgvc_edges *items, pgvc_edges *nodes)
{
    for (Py_ssize_t j = 0; j < P->nn; j++) {
        for (Py_ssize_t k = 0; k < P->nodes[j].nrefs; k++) {
            PyObject *oid = PyLong_FromLongLong(P->nodes[j].refs[k]), *hit;
            Py_ssize_t w;
            if (!oid)
                return -1;
            hit = PyDict_GetItemWithError(by_oid, oid);
            Py_DECREF(oid);
            if (!hit) {
                if (PyErr_Occurred())
                    return -1;
                continue;
            }
            w = PyLong_AsSsize_t(hit);
            if (pgvc_edges_push(items, P->nodes[j].item, P->nodes[w].item) < 0 ||
                pgvc_edges_push(nodes, j, w) < 0)
                return -1;
        }
    }
    return 0;
}

/* Build both graphs and order the items; a cycle raises CycleError with its path. RAISES_NEG. */
static int order_items(Plan *P, pgvc_edges *items, pgvc_edges *nodes)
{
    Py_ssize_t *cycle = NULL, clen = 0;
    int rc = -1;
    if (pgvc_graph_build(&P->cg, P->nn, nodes->from, nodes->to, nodes->n) < 0 ||
        pgvc_graph_build(&P->g, P->ni, items->from, items->to, items->n) < 0)
        return -1;
    P->order = malloc(sizeof(Py_ssize_t) * (size_t)(P->ni + 1));
    cycle = malloc(sizeof(Py_ssize_t) * (size_t)(P->ni + 1));
    if (!P->order || !cycle) {
        PyErr_NoMemory();
        goto exit;
    }
    switch (pgvc_graph_order(&P->g, P->order, cycle, &clen)) {
    case 0: rc = 0; break;
    case 1: pgvc_raise_cycle_path(P->st, cycle, clen, item_name, P); break;
    default: break;
    }
exit:
    free(cycle);
    return rc;
}

int pgvc_plan_build_graph(Plan *P)
{
    PyObject *by_name = PyDict_New(), *by_label = PyDict_New(), *by_oid = PyDict_New();
    pgvc_edges items = {0}, nodes = {0};
    int rc = -1;
    if (!by_name || !by_label || !by_oid)
        goto exit;
    if (index_nodes(P, by_name, by_oid) < 0 || match_decls(P, by_name, by_label) < 0 ||
        pgvc_defer_match(P) < 0 || make_items(P) < 0)
        goto exit;
    if (add_declared_edges(P, by_label, &items) < 0 ||
        add_catalog_edges(P, by_oid, &items, &nodes) < 0)
        goto exit;
    rc = order_items(P, &items, &nodes);
exit:
    pgvc_edges_free(&items);
    pgvc_edges_free(&nodes);
    Py_XDECREF(by_name);
    Py_XDECREF(by_label);
    Py_XDECREF(by_oid);
    return rc;
}
