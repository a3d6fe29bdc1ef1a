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
 * exists.
 *
 * The views that read a deferred rebuild and do not change wait along with it (pgvc_defer_along):
 * each materialized one gets a waiting version of its own, WITH NO DATA, reading the deferred
 * one's waiting version (linked as a chain of deferred rebuilds is, ddl_defer.c), so --pending
 * populates it after that one and the swap is renames and drops only; a plain view between them
 * gets a waiting version too (a plain view, nothing to populate). */
#include "ddl.h"

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
        nmarked += P->nodes[j].decl < 0 && P->nodes[j].pending_mark;
    }
    if (!nmarked) /* the usual case: a warm sync pays one pass over the nodes */
        return 0;
    if (!(marked = pgvc_plan_alloc(P, sizeof(Py_ssize_t) * (size_t)nmarked)))
        return -1;
    nmarked = 0;
    for (Py_ssize_t j = 0; j < P->nn; j++)
        if (P->nodes[j].decl < 0 && P->nodes[j].pending_mark)
            marked[nmarked++] = j;
    for (Py_ssize_t i = 0; i < P->nd; i++) {
        Decl *d = &P->decls[i];
        pgvc_derived_name(name, d->name, PGVC_PENDING_SUFFIX);
        for (Py_ssize_t k = 0; k < nmarked; k++) {
            Node *n = &P->nodes[marked[k]];
            if (n->pending_of >= 0 || n->relkind != d->kind || strcmp(n->name, name) != 0 ||
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

/* A declaration that waited along no longer does: what it was to do, it does. */
static void undo_along(Decl *d)
{
    d->deferred = d->along = 0;
    d->action = d->defer_action;
    d->status = d->action == A_SKIP ? S_EXISTS : S_UPDATED;
    d->state = d->defer_state;
    d->reason = d->defer_reason;
}

/* Leave a declaration as it is (a swap_pending plan touches nothing else). */
static void leave(Decl *d)
{
    d->action = A_SKIP;
    d->status = S_EXISTS;
    d->pending_swap = 0;
    d->refresh = d->reindex = d->restamp = d->probe = 0;
}

void pgvc_defer_classify(Plan *P, Decl *d)
{
    Node *n = d->node >= 0 ? &P->nodes[d->node] : NULL;
    if (P->swap_pending) {
        if (d->swap_asked && n && n->relkind == d->kind && d->pending >= 0 &&
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
    /* A rebuild that waits for a view that no longer defers (the setting or defer_rebuild
     * turned off since): the sync does it now, and its waiting version goes (pgvc_defer_settle).
     * Until then it waits; refresh_pgviews --pending completes it, whatever the setting says. */
    if (!d->defer && d->pending >= 0 && d->action == A_BESIDE && pending_current(P, d))
        d->reason = "definition changed; its rebuild waited beside it, but the view no longer "
                    "defers (defer_rebuild, PGVIEWS_DEFER_REBUILD): rebuilt now, and its waiting "
                    "version dropped";
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
    if (!pending_current(P, d))
        d->reason = "definition changed; rebuild deferred: the new version is created beside it "
                    "WITH NO DATA, refresh_pgviews --pending swaps it in";
    else if (P->nodes[d->pending].populated) /* populated by a --pending whose swap failed */
        d->reason = "its rebuild waits beside it, populated: refresh_pgviews --pending swaps it in";
    else
        d->reason =
            "its rebuild waits beside it, WITH NO DATA: refresh_pgviews --pending swaps it in";
}

int pgvc_defer_spread(Plan *P, Decl *d, Py_ssize_t tainted_by, Py_ssize_t dropped_by)
{
    int upstream = d->pending >= 0 && P->nodes[d->pending].pending_upstream_dropped;
    if (d->pending_swap) {
        /* Its waiting version reads the waiting versions swapped in with it (created so by the
         * sync, ddl_defer.c), or nothing this swap changes: it is renamed in whatever the old
         * version reads. */
        if (!upstream)
            return 1;
        /* It reads an old version this swap drops (made before waiting versions read each
         * other, or SQL naming the old one by schema): it goes (phase 0), and the view is
         * re-created against the new one in the swap, populated there. */
        d->pending_swap = 0;
        d->action = A_RECREATE;
        d->reason = "re-created in the swap: its waiting version read an old version the swap "
                    "drops";
        return 0;
    }
    if (!d->deferred || (tainted_by < 0 && dropped_by < 0 && !upstream))
        return 0;
    /* What it reads changes in this sync: the new version must read the new inputs, and the
     * old one may be dropped with them. Rebuilt now, as without the deferral; one waiting along
     * is left to the forward pass (re-populated, or re-created, as what reads a change is). */
    d->deferred = 0;
    if (d->along) {
        undo_along(d);
        return 0;
    }
    d->action = d->defer_action;
    d->status = S_UPDATED;
    d->state = ST_CHANGED;
    d->reason = d->defer_reason;
    return 0;
}

/* Does pending version nj read a pending version that is dropped? */
static int reads_discarded(Plan *P, Py_ssize_t nj)
{
    for (Py_ssize_t e = P->cg.dep_off[nj]; e < P->cg.dep_off[nj + 1]; e++)
        if (P->nodes[P->cg.dep[e]].pending_discard)
            return 1;
    return 0;
}

void pgvc_defer_spread_node(Plan *P, Node *n, Py_ssize_t dropped_by)
{
    n->pending_upstream_dropped = dropped_by >= 0;
    /* In a swap, a waiting version that reads an old version the swap drops, or a waiting
     * version dropped so, would stop that DROP (nothing is dropped with CASCADE): it goes
     * first, in phase 0. */
    if (P->swap_pending && (dropped_by >= 0 || reads_discarded(P, n - P->nodes))) {
        n->pending_discard = 1;
        n->pending_upstream_dropped = 1;
    }
}

/* Does the waiting version of d read a waiting version (cg, pg_depend)? Returns the first
 * declaration whose waiting version it reads and that is not swapped in (swap: 1), or that is
 * (swap: 0); -1 for none. */
static Py_ssize_t reads_pending(Plan *P, Decl *d, int not_swapped)
{
    Py_ssize_t nj = d->pending;
    for (Py_ssize_t e = nj >= 0 ? P->cg.dep_off[nj] : 0; nj >= 0 && e < P->cg.dep_off[nj + 1];
         e++) {
        Py_ssize_t of = P->nodes[P->cg.dep[e]].pending_of;
        if (of >= 0 && (!not_swapped || !P->decls[of].pending_swap))
            return of;
    }
    return -1;
}

/* Can d wait along with a deferred rebuild it reads? Its object is ours (or adopted as it is),
 * of its kind, in the current schema where its waiting version can read the other one's by name
 * (link_pending), and kept as it is (what is done to it in place, re-indexing, populating,
 * stamping, is still done) or, a materialized one, changed where its rebuild could be deferred:
 * built now, it would read the old version and be re-created in the swap, and the next sync
 * would find it in sync and make it wait then. */
static int can_wait_along(Plan *P, Decl *d)
{
    Node *n = d->node >= 0 ? &P->nodes[d->node] : NULL;
    int ours = n && (n->stamp.ours || d->adopt == ADOPT_SAME || d->adopt == ADOPT_REINDEX);
    if (!ours || d->deferred || d->probe || n->relkind != d->kind ||
        strcmp(d->schema, P->current_schema) != 0)
        return 0;
    return d->action == A_SKIP ||
           (d->action == A_BESIDE && d->kind == 'm' && n->stamp.ours && n->populated) ||
           (d->action == A_REPLACE && d->kind == 'v' && n->stamp.ours);
}

/* The first declaration d reads (declared or pg_depend) whose rebuild waits, in the current
 * schema; -1 for none. */
static Py_ssize_t reads_deferred(Plan *P, Py_ssize_t it)
{
    for (Py_ssize_t e = P->g.dep_off[it]; e < P->g.dep_off[it + 1]; e++) {
        Py_ssize_t w = P->g.dep[e];
        if (w < P->nd && P->decls[w].deferred && !strcmp(P->decls[w].schema, P->current_schema))
            return w;
    }
    return -1;
}

/* Does a view that waits (deferred, along or not) read item it? */
static int read_by_waiting(Plan *P, Py_ssize_t it)
{
    for (Py_ssize_t e = P->g.rdep_off[it]; e < P->g.rdep_off[it + 1]; e++) {
        Py_ssize_t r = P->g.rdep[e];
        if (r < P->nd && P->decls[r].deferred)
            return 1;
    }
    return 0;
}

int pgvc_defer_along(Plan *P)
{
    if (P->swap_pending)
        return 0;
    /* Dependencies first: what waits along makes what reads it wait along too. Re-created and
     * re-populated inside the swap, under its ACCESS EXCLUSIVE locks, a materialized view that
     * reads a deferred rebuild would make its readers (and the deferred one's) wait for its
     * whole query, which is what deferring exists to avoid. */
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k], up;
        Decl *d = it < P->nd ? &P->decls[it] : NULL;
        if (!d || !can_wait_along(P, d) || (up = reads_deferred(P, it)) < 0)
            continue;
        d->deferred = d->along = 1;
        d->defer_action = d->action;
        d->defer_reason = d->reason;
        d->defer_state = d->state;
        d->action = A_SKIP;
        d->status = S_EXISTS;
        d->state = ST_PENDING;
        if (!(d->reason = pgvc_plan_format(P,
                                           "%sreads %s, whose rebuild waits: its new version waits "
                                           "beside it too, reading that one's; refresh_pgviews "
                                           "--pending swaps both in",
                                           d->defer_action != A_SKIP ? "definition changed; " : "",
                                           P->decls[up].label)))
            return -1;
    }
    /* Readers first: a plain view waits along only for a waiting view that reads it; alone, it
     * is re-created against the new version in the swap, which costs nothing. */
    for (Py_ssize_t k = P->ni - 1; k >= 0; k--) {
        Py_ssize_t it = P->order[k];
        Decl *d = it < P->nd ? &P->decls[it] : NULL;
        if (d && d->along && d->kind == 'v' && !read_by_waiting(P, it))
            undo_along(d);
    }
    return 0;
}

int pgvc_defer_together(Plan *P)
{
    /* Dependencies first: a view left out leaves out the views whose waiting versions read its
     * waiting version (swapped alone, they would serve data the old version does not). */
    for (Py_ssize_t k = 0; P->swap_pending && k < P->ni; k++) {
        Py_ssize_t it = P->order[k], of;
        Decl *d = it < P->nd ? &P->decls[it] : NULL;
        if (!d || !d->pending_swap || (of = reads_pending(P, d, 1)) < 0)
            continue;
        leave(d);
        if (!(d->reason = pgvc_plan_format(P,
                                           "its waiting version reads the waiting version of %s, "
                                           "which is not swapped in: not swapped in",
                                           P->decls[of].label)))
            return -1;
        d->state = ST_PENDING;
    }
    return 0;
}

/* Does pending version nj read the old version of a view whose waiting version this sync
 * creates (in the current schema)? The swap drops that old version: it is made again, reading
 * the new waiting one. Only then: a waiting version kept from an earlier sync that still reads
 * an old version (SQL naming it by schema) would be made again by every sync; the swap copes
 * with it instead (pgvc_defer_spread). */
static int reads_old_of_new_waiting(Plan *P, Py_ssize_t nj)
{
    for (Py_ssize_t e = P->cg.dep_off[nj]; e < P->cg.dep_off[nj + 1]; e++) {
        Py_ssize_t of = P->nodes[P->cg.dep[e]].decl;
        if (of >= 0 && P->decls[of].pending_build &&
            !strcmp(P->decls[of].schema, P->current_schema))
            return 1;
    }
    return 0;
}

/* A new waiting version that reads the view of another waiting one (both in the current schema,
 * where an unqualified name finds it) is built to read that waiting version: both sit in the
 * build schema while it is created (ddl_defer.c). */
static void link_pending(Plan *P)
{
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k];
        Decl *d = it < P->nd ? &P->decls[it] : NULL;
        if (!d || !d->pending_build || strcmp(d->schema, P->current_schema) != 0)
            continue;
        for (Py_ssize_t e = P->g.dep_off[it]; e < P->g.dep_off[it + 1]; e++) {
            Py_ssize_t w = P->g.dep[e];
            Decl *up = w < P->nd ? &P->decls[w] : NULL;
            if (!up || !up->deferred || strcmp(up->schema, P->current_schema) != 0)
                continue;
            up->pending_in_build = 1;
            d->pending_in_build = 1;
            P->pending_linked = 1;
        }
    }
}

void pgvc_defer_settle(Plan *P)
{
    if (P->swap_pending)
        return; /* a pending version not swapped stays as it is */
    /* Dependencies first: a waiting version that reads one dropped here goes too (it would
     * stop the DROP), and is built again. */
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k];
        Decl *d = it < P->nd ? &P->decls[it] : NULL;
        int keep;
        if (!d)
            continue;
        keep = d->pending >= 0 && d->deferred && pending_current(P, d) &&
               !reads_discarded(P, d->pending) &&
               !(reads_old_of_new_waiting(P, d->pending) && !strcmp(d->schema, P->current_schema));
        if (d->pending >= 0 && !keep)
            P->nodes[d->pending].pending_discard = 1;
        if (d->deferred && !keep)
            d->pending_build = 1;
    }
    link_pending(P);
}

int pgvc_defer_emit(Plan *P)
{
    for (Py_ssize_t k = P->ni - 1; k >= 0; k--) { /* a reader before what it reads */
        Py_ssize_t nj = P->item_node[P->order[k]];
        if (nj >= 0 && P->nodes[nj].pending_discard && pgvc_ddl_drop_pending(P, nj) < 0)
            return -1;
    }
    if (P->pending_linked && pgvc_ddl_build_pending_linked(P) < 0)
        return -1;
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k];
        Decl *d = it < P->nd ? &P->decls[it] : NULL;
        if (d && d->pending_build && !d->pending_in_build && pgvc_ddl_build_pending(P, it) < 0)
            return -1;
    }
    return 0;
}

/* The declarations whose waiting versions d's waiting version reads, as a tuple. */
static PyObject *pending_reads(Plan *P, Decl *d)
{
    PyObject *out = PyList_New(0), *v, *t;
    Py_ssize_t nj = d->pending;
    for (Py_ssize_t e = P->cg.dep_off[nj]; out && e < P->cg.dep_off[nj + 1]; e++) {
        Py_ssize_t of = P->nodes[P->cg.dep[e]].pending_of;
        if (of < 0)
            continue;
        if (!(v = PyLong_FromSsize_t(of)) || PyList_Append(out, v) < 0)
            Py_CLEAR(out);
        Py_XDECREF(v);
    }
    t = out ? PyList_AsTuple(out) : NULL;
    Py_XDECREF(out);
    return t;
}

PyObject *pgvc_defer_result(Plan *P)
{
    PyObject *out = PyList_New(0);
    /* In dependency order: a waiting version after those it reads. */
    for (Py_ssize_t k = 0; out && k < P->ni; k++) {
        Py_ssize_t i = P->order[k];
        Decl *d = i < P->nd ? &P->decls[i] : NULL;
        Node *p = d && d->pending >= 0 ? &P->nodes[d->pending] : NULL;
        PyObject *row;
        if (!p)
            continue;
        row = Py_BuildValue("(nssNNN)", i, p->schema, p->name, PyBool_FromLong(p->populated),
                            PyBool_FromLong(pending_current(P, d) && d->node >= 0),
                            pending_reads(P, d));
        if (!row || PyList_Append(out, row) < 0)
            Py_CLEAR(out);
        Py_XDECREF(row);
    }
    return out;
}
