/* plan_defer.c: deferred rebuilds. A populated materialized view whose definition changed, and
 * whose declaration asks for it (plan(defer=[...])), is not rebuilt by the sync: its new version
 * is created beside it WITH NO DATA under a derived name (PGVC_PENDING_SUFFIX), stamped with the
 * new fingerprints and `pending=1`, and the old one keeps serving, untouched, with everything
 * that reads it. refresh_pgviews --pending populates that version and plans again with
 * plan(swap_pending=[...]): those declarations swap their pending version in (the old one
 * dropped, its dependants re-created, as a build-beside swap does), and nothing else changes.
 *
 * A warm sync finds the pending version's fingerprints equal to the declaration's and does
 * nothing; a further change replaces it; a revert (or a declaration that no longer defers, or
 * whose inputs change in the same sync) drops it. It is never an orphan while its declaration
 * exists. */
#include "plan_int.h"

#include <string.h>

/* Mark the declarations named by a list of indexes (None: none). RAISES_NEG. */
static int read_indexes(Plan *P, PyObject *list, const char *what, int swap)
{
    if (!list || list == Py_None)
        return 0;
    if (!PyList_Check(list) && !PyTuple_Check(list)) {
        PyErr_Format(PyExc_TypeError, "plan: %s must be a list of declaration indexes, not %.100s",
                     what, Py_TYPE(list)->tp_name);
        return -1;
    }
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(list); k++) {
        PyObject *v = PySequence_Fast_GET_ITEM(list, k);
        Py_ssize_t i = PyLong_Check(v) ? PyLong_AsSsize_t(v) : -1;
        if (i == -1 && PyErr_Occurred())
            return -1;
        if (i < 0 || i >= P->nd) {
            PyErr_Format(PyExc_ValueError, "plan: %s must hold declaration indexes", what);
            return -1;
        }
        if (swap)
            P->decls[i].swap_asked = 1;
        else
            P->decls[i].defer = 1;
    }
    return 0;
}

int pgvc_defer_read(Plan *P, PyObject *defer, PyObject *swap)
{
    if (read_indexes(P, defer, "defer", 0) < 0 || read_indexes(P, swap, "swap_pending", 1) < 0)
        return -1;
    P->swap_pending = swap && swap != Py_None;
    return 0;
}

int pgvc_defer_match(Plan *P)
{
    char name[PGVC_NAMEDATALEN];
    Py_ssize_t *marked = NULL, nmarked = 0;
    for (Py_ssize_t i = 0; i < P->nd; i++)
        P->decls[i].pending = -1;
    for (Py_ssize_t j = 0; j < P->nn; j++) {
        P->nodes[j].pending_of = -1;
        nmarked += P->nodes[j].decl < 0 && P->nodes[j].pending_mark && P->nodes[j].relkind == 'm';
    }
    if (!nmarked) /* the usual case: a warm sync pays one pass over the nodes */
        return 0;
    if (!(marked = pgvc_plan_alloc(P, sizeof(Py_ssize_t) * (size_t)nmarked)))
        return -1;
    nmarked = 0;
    for (Py_ssize_t j = 0; j < P->nn; j++)
        if (P->nodes[j].decl < 0 && P->nodes[j].pending_mark && P->nodes[j].relkind == 'm')
            marked[nmarked++] = j;
    for (Py_ssize_t i = 0; i < P->nd; i++) {
        Decl *d = &P->decls[i];
        if (d->kind != 'm')
            continue;
        pgvc_derived_name(name, d->name, PGVC_PENDING_SUFFIX);
        for (Py_ssize_t k = 0; k < nmarked; k++) {
            Node *n = &P->nodes[marked[k]];
            if (n->pending_of >= 0 || strcmp(n->name, name) != 0 ||
                strcmp(n->schema, d->schema) != 0)
                continue;
            n->pending_of = i;
            d->pending = marked[k];
            break;
        }
    }
    return 0;
}

/* Does the pending version hold the declaration as it is now? */
static int pending_current(Plan *P, Decl *d)
{
    Node *p = d->pending >= 0 ? &P->nodes[d->pending] : NULL;
    return p && !strcmp(p->stamp.body, d->body_fp) && !strcmp(p->stamp.idx, d->idx_fp);
}

/* Leave a declaration as it is (a swap_pending plan touches nothing else). */
static void leave(Decl *d)
{
    d->action = A_SKIP;
    d->status = S_EXISTS;
    d->refresh = d->reindex = d->restamp = d->probe = 0;
}

void pgvc_defer_classify(Plan *P, Decl *d)
{
    Node *n = d->node >= 0 ? &P->nodes[d->node] : NULL;
    if (P->swap_pending) {
        if (d->swap_asked && n && n->relkind == 'm' && d->kind == 'm' && d->pending >= 0 &&
            P->nodes[d->pending].populated && pending_current(P, d)) {
            d->action = A_BESIDE;
            d->pending_swap = 1;
            d->status = S_UPDATED;
            d->state = ST_CHANGED;
            d->reason = "its pending rebuild, populated, swapped in";
            d->refresh = d->reindex = d->restamp = d->probe = 0;
        } else
            leave(d);
        return;
    }
    /* Only a rebuild beside the old object (the same kind, ours, populated, its definition
     * changed) is deferred: a missing view is created, an empty one has nothing to serve, a
     * plain view is replaced in place. */
    if (!d->defer || d->action != A_BESIDE || !n || !n->stamp.ours || !n->populated ||
        n->relkind != 'm' || !strcmp(n->stamp.body, d->body_fp))
        return;
    d->deferred = 1;
    d->defer_action = d->action;
    d->defer_reason = d->reason;
    d->action = A_SKIP;
    d->status = S_EXISTS;
    d->state = ST_PENDING;
    d->reason =
        pending_current(P, d)
            ? "its rebuild waits beside it, WITH NO DATA: refresh_pgviews --pending swaps it in"
            : "definition changed; rebuild deferred: the new version is created beside it WITH "
              "NO DATA, refresh_pgviews --pending swaps it in";
}

void pgvc_defer_spread(Plan *P, Decl *d, Py_ssize_t tainted_by, Py_ssize_t dropped_by)
{
    int upstream = d->pending >= 0 && P->nodes[d->pending].pending_upstream_dropped;
    if (!d->deferred || (tainted_by < 0 && dropped_by < 0 && !upstream))
        return;
    /* What it reads changes in this sync: the new version must read the new inputs, and the
     * old one may be dropped with them. Rebuilt now, as without the deferral. */
    d->deferred = 0;
    d->action = d->defer_action;
    d->status = S_UPDATED;
    d->state = ST_CHANGED;
    d->reason = d->defer_reason;
}

void pgvc_defer_settle(Plan *P)
{
    if (P->swap_pending)
        return; /* a pending version not swapped stays as it is */
    for (Py_ssize_t i = 0; i < P->nd; i++) {
        Decl *d = &P->decls[i];
        if (d->pending >= 0 && !(d->deferred && pending_current(P, d)))
            P->nodes[d->pending].pending_discard = 1;
        if (d->deferred && !pending_current(P, d))
            d->pending_build = 1;
    }
}

int pgvc_defer_emit(Plan *P)
{
    for (Py_ssize_t j = 0; j < P->nn; j++)
        if (P->nodes[j].pending_discard && pgvc_ddl_drop_pending(P, j) < 0)
            return -1;
    for (Py_ssize_t i = 0; i < P->nd; i++)
        if (P->decls[i].pending_build && pgvc_ddl_build_pending(P, i) < 0)
            return -1;
    return 0;
}

PyObject *pgvc_defer_result(Plan *P)
{
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out && i < P->nd; i++) {
        Decl *d = &P->decls[i];
        Node *p = d->pending >= 0 ? &P->nodes[d->pending] : NULL;
        PyObject *row;
        if (!p)
            continue;
        row = Py_BuildValue("(nssNN)", i, p->schema, p->name, PyBool_FromLong(p->populated),
                            PyBool_FromLong(pending_current(P, d) && d->node >= 0));
        if (!row || PyList_Append(out, row) < 0)
            Py_CLEAR(out);
        Py_XDECREF(row);
    }
    return out;
}
