/* plan_decide.c: what each item needs. classify() compares one declaration with its catalog
 * row; propagate() spreads drops along pg_depend and stale data to the materialized views that
 * read it; choose_chain() picks the changes built together in the build schema. */
#include "plan_int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

/* An index template hashed as one string, its slots written \x01T\x01 and \x01N\x01: the
 * fingerprint stamps written before templates came in pieces stay valid. */
static void hash_template(pgvc_hash *h, const DeclIndex *ix)
{
    size_t len = 0;
    for (Py_ssize_t k = 0; k < ix->nseg; k++)
        len += ix->segs[k].kind ? 3 : strlen(ix->segs[k].text);
    {
        unsigned char prefix[8];
        uint64_t n = len;
        for (int b = 0; b < 8; b++)
            prefix[b] = (unsigned char)(n >> (8 * b));
        pgvc_hash_update(h, prefix, sizeof prefix);
    }
    for (Py_ssize_t k = 0; k < ix->nseg; k++) {
        const Seg *s = &ix->segs[k];
        if (s->kind)
            pgvc_hash_update(h, s->kind == 'T' ? "\x01T\x01" : "\x01N\x01", 3);
        else
            pgvc_hash_update(h, s->text, strlen(s->text));
    }
}

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
    for (Py_ssize_t k = 0; k < d->nindexes; k++) {
        DeclIndex *ix = &d->indexes[k];
        pgvc_hash_str(&h, ix->name);
        hash_template(&h, ix);
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
    const StrList *have = &n->index_names;
    Py_ssize_t want = d->nindexes + (d->cidx ? 1 : 0);
    if (have->n != want)
        return 1;
    for (Py_ssize_t k = 0; k < have->n; k++) {
        const char *name = have->items[k];
        int found = d->cidx && !strcmp(name, d->cidx_name);
        for (Py_ssize_t m = 0; !found && m < d->nindexes; m++)
            found = !strcmp(name, d->indexes[m].name);
        if (!found)
            return 1;
    }
    return 0;
}

/* ---- columns ----------------------------------------------------------------------------------- */

/* The family of a type as format_type() or Django's db_type() writes it ("integer",
 * "numeric(10, 2)", "timestamp(3) with time zone"): modifiers in parentheses are dropped and the
 * rest looked up. NULL when unknown or an array: then nothing is compared. */
static const char *type_family(const char *type)
{
    static const char *const map[][2] = {
        {"smallint", "integer"},
        {"integer", "integer"},
        {"bigint", "integer"},
        {"serial", "integer"},
        {"bigserial", "integer"},
        {"smallserial", "integer"},
        {"numeric", "numeric"},
        {"decimal", "numeric"},
        {"real", "float"},
        {"double precision", "float"},
        {"character varying", "text"},
        {"varchar", "text"},
        {"character", "text"},
        {"char", "text"},
        {"text", "text"},
        {"citext", "text"},
        {"name", "text"},
        {"boolean", "boolean"},
        {"timestamp with time zone", "timestamptz"},
        {"timestamp without time zone", "timestamp"},
        {"timestamp", "timestamp"},
        {"date", "date"},
        {"time without time zone", "time"},
        {"time", "time"},
        {"time with time zone", "timetz"},
        {"interval", "interval"},
        {"json", "json"},
        {"jsonb", "json"},
        {"uuid", "uuid"},
        {"bytea", "bytea"},
        {"inet", "inet"},
        {"cidr", "cidr"},
    };
    char base[64];
    size_t n = 0;
    int depth = 0;
    if (!type || strchr(type, '['))
        return NULL;
    for (const char *p = type; *p && n + 1 < sizeof base; p++) {
        if (*p == '(')
            depth++;
        else if (*p == ')')
            depth--;
        else if (!depth && !(*p == ' ' && (n == 0 || base[n - 1] == ' ')))
            base[n++] = *p;
    }
    while (n && base[n - 1] == ' ')
        n--;
    base[n] = '\0';
    for (size_t k = 0; k < sizeof map / sizeof map[0]; k++)
        if (!strcmp(base, map[k][0]))
            return map[k][1];
    return NULL;
}

/* Index of column `name` among the view's, or -1. */
static Py_ssize_t find_column(const Node *n, const char *name)
{
    for (Py_ssize_t k = 0; k < n->colnames.n; k++)
        if (!strcmp(n->colnames.items[k], name))
            return k;
    return -1;
}

/* Does field k of d read a column the view lacks (1), or one of another type family (2)? */
int pgvc_plan_column_problem(const Decl *d, const Node *n, Py_ssize_t k, const char **have_type)
{
    const DeclColumn *c = &d->columns[k];
    Py_ssize_t at = find_column(n, c->column);
    const char *want, *have;
    *have_type = NULL;
    if (n->colnames.n < 0) /* columns not read */
        return 0;
    if (at < 0)
        return 1;
    *have_type = n->coltypes.items[at];
    want = type_family(c->type);
    have = type_family(*have_type);
    return want && have && strcmp(want, have) != 0 ? 2 : 0;
}

/* Does a field read a column the view does not have? (Another type family is only a warning.) */
static int columns_missing(const Decl *d, const Node *n)
{
    const char *have;
    for (Py_ssize_t k = 0; k < d->ncolumns; k++)
        if (pgvc_plan_column_problem(d, n, k, &have) == 1)
            return 1;
    return 0;
}

/* Why an existing object must be rebuilt (NULL: it need not), and the state that goes with it. */
static const char *why_rebuild(Plan *P, Decl *d, Node *n)
{
    d->state = ST_CHANGED;
    if (n->relkind != d->kind)
        return d->kind == 'm' ? "was a view, is now a materialized view"
                              : "was a materialized view, is now a view";
    if (!n->stamp.ours && d->adopt != ADOPT_SAME && d->adopt != ADOPT_REINDEX) {
        /* No stamp of ours: adopted as it is when a probe finds it equal to its declaration.
         * Without the SQL check, materialized views are rebuilt anyway: no probe for them. */
        d->probe = !P->probed && !(d->kind == 'm' && !P->check_sql_changed);
        d->state = ST_UNMANAGED;
        return d->adopt == ADOPT_DIFFERS
                   ? "not created by django-pgviews-c, and differs from its declaration"
                   : "not created by django-pgviews-c (adopting it)";
    }
    if (n->stamp.ours && strcmp(n->stamp.body, d->body_fp) != 0) {
        /* A populated materialized view whose new SQL PostgreSQL renders as the object (the
         * declaration updated after a rename PostgreSQL followed, a reformat) is kept with its
         * data: the probe says so. An empty one costs no more to rebuild than to probe. */
        if (d->kind == 'm' && (d->adopt == ADOPT_SAME || d->adopt == ADOPT_REINDEX))
            return NULL;
        d->probe =
            d->kind == 'm' && n->populated && !P->probed && P->check_sql_changed && d->pending < 0;
        return "definition changed";
    }
    if (n->stamp.ours && n->defmd5 && strcmp(n->defmd5, n->stamp.def) != 0) {
        d->state = ST_DRIFTED;
        return "changed in the database since the last sync";
    }
    if (d->kind == 'm' && !P->check_sql_changed)
        return "MATERIALIZED_VIEWS_CHECK_SQL_CHANGED is off";
    return NULL;
}

/* How an object that must be rebuilt is: replaced, built beside, or re-created. */
static void decide_rebuild(Plan *P, Decl *d, Node *n, const char *why)
{
    d->reason = why;
    /* --no-update leaves what exists; with the SQL check off, materialized views are rebuilt all
     * the same, as django-pgviews-redux does. */
    if (!P->update && !(d->kind == 'm' && !P->check_sql_changed))
        return;
    d->status = S_UPDATED;
    if (n->relkind != d->kind)
        d->action = A_RECREATE;
    else if (d->kind == 'v')
        d->action = A_REPLACE;
    else
        d->action = P->beside ? A_BESIDE : A_RECREATE;
}

/* An object kept as it is: stamped (adopted, or restored from a dump), re-indexed, populated,
 * and its columns compared with the model's fields. */
static void check_kept(Decl *d, Node *n)
{
    /* Same definition, but the rewrite rule row is new (dump and restore); or adopted. */
    int renders_same = n->stamp.ours && strcmp(n->stamp.body, d->body_fp) != 0;
    if (n->defmd5 || !n->stamp.ours || renders_same)
        d->restamp = 1;
    if (!n->stamp.ours)
        d->reason = "adopted: it equals its declaration";
    else if (renders_same)
        d->reason = "kept: its new SQL renders as the view does (a rename PostgreSQL followed, "
                    "or a change of text only)";
    d->state = n->stamp.ours ? ST_IN_SYNC : ST_UNSTAMPED;
    if (d->kind == 'm') {
        int idx_changed =
            n->stamp.ours ? strcmp(n->stamp.idx, d->idx_fp) != 0 : d->adopt == ADOPT_REINDEX;
        if (idx_changed || indexes_differ(d, n)) {
            d->reindex = 1;
            d->reason = "indexes changed";
            d->state = ST_INDEXES;
        }
        if (!n->populated && d->with_data) {
            d->refresh = 1;
            d->reason = "not populated";
            d->state = ST_UNPOPULATED;
        }
    }
    if (d->state == ST_IN_SYNC && columns_missing(d, n)) {
        d->state = ST_COLUMNS;
        d->reason = "a field reads a column the view does not have";
    }
}

int pgvc_plan_classify(Plan *P, Decl *d, int forced)
{
    Node *n = d->node >= 0 ? &P->nodes[d->node] : NULL;
    const char *why;
    fingerprints(d);
    d->action = A_SKIP;
    d->status = S_EXISTS;
    if (!n) {
        d->action = A_CREATE;
        d->status = S_CREATED;
        d->reason = "new";
        d->state = ST_MISSING;
    } else if (forced) {
        d->action = A_RECREATE;
        d->status = S_FORCED;
        d->reason = "its columns changed incompatibly (--force)";
        d->state = ST_CHANGED;
    } else if ((why = why_rebuild(P, d, n)))
        decide_rebuild(P, d, n, why);
    else
        check_kept(d, n);
    pgvc_defer_classify(P, d);
    return 0;
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

/* What one item's dependencies did: tainted_by (an item whose output changes) and dropped_by
 * (a node re-created, along pg_depend only: a drop spreads only along what PostgreSQL records);
 * -1 for none. */
static void look_upstream(Plan *P, Py_ssize_t it, Py_ssize_t *tainted_by, Py_ssize_t *dropped_by)
{
    Py_ssize_t nj = P->item_node[it];
    *tainted_by = *dropped_by = -1;
    for (Py_ssize_t e = P->g.dep_off[it]; e < P->g.dep_off[it + 1]; e++)
        if (changes_output(P, P->g.dep[e]))
            *tainted_by = P->g.dep[e];
    for (Py_ssize_t e = nj >= 0 ? P->cg.dep_off[nj] : 0; nj >= 0 && e < P->cg.dep_off[nj + 1]; e++)
        if (P->nodes[P->cg.dep[e]].dropped)
            *dropped_by = P->nodes[P->cg.dep[e]].item;
}

/* A declared view downstream of changes: rebuilt in place after a changed input (no copy beside
 * can read the new one), re-created when what it reads is, re-populated when what it reads
 * changes. RAISES_NEG. */
static int spread_to_decl(Plan *P, Decl *d, Node *n, Py_ssize_t tainted_by, Py_ssize_t dropped_by)
{
    int swap_stands = pgvc_defer_spread(P, d, tainted_by, dropped_by);
    d->taint = tainted_by >= 0;
    if (swap_stands) { /* a waiting version renamed in: the old one goes */
        if (n)
            n->dropped = 1;
        return 0;
    }
    if (d->chain) { /* built anew in the build schema; the old object goes at the swap */
        if (n)
            n->dropped = 1;
        return 0;
    }
    if (d->action == A_BESIDE && d->taint) {
        d->action = A_RECREATE;
        d->inplace_after = item_label(P, tainted_by);
    }
    if (dropped_by >= 0 &&
        (d->action == A_SKIP || d->action == A_REPLACE || d->action == A_BESIDE)) {
        if (d->action == A_SKIP &&
            !(d->reason = pgvc_plan_format(P, "re-created: it reads %s, which is re-created",
                                           item_label(P, dropped_by))))
            return -1;
        if (d->action == A_SKIP)
            d->state = ST_STALE;
        d->action = A_RECREATE;
        if (d->status == S_EXISTS)
            d->status = S_UPDATED;
        d->refresh = 0;
        d->reindex = 0;
    }
    if (d->action == A_SKIP && n && d->kind == 'm' && d->taint && !d->refresh &&
        (d->with_data || n->populated)) {
        d->refresh = 1;
        d->state = ST_STALE;
        if (!(d->reason = pgvc_plan_format(P, "re-populated: it reads %s, which changed",
                                           item_label(P, tainted_by))))
            return -1;
    }
    if (n && (d->action == A_RECREATE || d->action == A_BESIDE))
        n->dropped = 1;
    return 0;
}

/* An object we do not manage that reads something re-created: restored, or refused. */
static int spread_to_node(Plan *P, Node *n, Py_ssize_t tainted_by, Py_ssize_t dropped_by,
                          PyObject *refused)
{
    PyObject *row;
    int rc;
    n->taint = tainted_by >= 0;
    n->refused_by = NULL;
    if (n->pending_of >= 0) { /* a pending version: its declaration decides (plan_defer.c) */
        n->taint = 0;
        pgvc_defer_spread_node(P, n, dropped_by);
        return 0;
    }
    if (P->prune && n->stamp.ours) { /* an orphan, pruned: dropped, never restored */
        n->dropped = 1;
        return 0;
    }
    if (dropped_by < 0)
        return 0;
    n->dropped = 1;
    if (P->restore) {
        n->restore = 1;
        return 0;
    }
    n->refused_by = item_label(P, dropped_by);
    n->refused_pruned = dropped_by >= P->nd && P->nodes[P->item_node[dropped_by]].stamp.ours;
    row = Py_BuildValue("(sssC)", n->schema, n->name, n->refused_by, (int)n->relkind);
    rc = row ? PyList_Append(refused, row) : -1;
    Py_XDECREF(row);
    return rc;
}

/* The forward pass: drops spread to everything that reads a dropped object, stale data spreads
 * to every materialized view that reads it. Returns the list of refused dependants. */
PyObject *pgvc_plan_propagate(Plan *P)
{
    PyObject *refused = PyList_New(0);
    for (Py_ssize_t k = 0; refused && k < P->ni; k++) {
        Py_ssize_t it = P->order[k], nj = P->item_node[it], tainted_by, dropped_by;
        Node *n = nj >= 0 ? &P->nodes[nj] : NULL;
        int rc;
        look_upstream(P, it, &tainted_by, &dropped_by);
        if (it < P->nd)
            rc = spread_to_decl(P, &P->decls[it], n, tainted_by, dropped_by);
        else {
            assert(n); /* the items after the declarations are catalog nodes */
            rc = spread_to_node(P, n, tainted_by, dropped_by, refused);
        }
        if (rc < 0)
            Py_CLEAR(refused);
    }
    return refused;
}

static int decl_stale(Decl *d)
{
    return d->action != A_SKIP || (d->refresh && d->taint) || (d->kind == 'v' && d->taint);
}

/* Decide which declarations form chains. Returns the number chosen. */
/* Does anything we do not manage read this node, directly or not? Then a drop it did not need
 * before would take it down: such a node stays out of chains (unless restoring). */
static void mark_external_below(Plan *P)
{
    for (Py_ssize_t k = P->ni - 1; k >= 0; k--) {
        Py_ssize_t nj = P->item_node[P->order[k]];
        if (nj < 0)
            continue;
        for (Py_ssize_t e = P->cg.rdep_off[nj]; e < P->cg.rdep_off[nj + 1]; e++) {
            Node *w = &P->nodes[P->cg.rdep[e]];
            if ((w->decl < 0 && w->pending_of < 0) || w->external_below)
                P->nodes[nj].external_below = 1;
        }
    }
}

/* ok[it]: the item's new version can be built in the build schema, from new versions of
 * everything changed that it reads. */
static void mark_buildable(Plan *P, char *ok)
{
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k];
        Decl *d;
        Node *n;
        int good;
        if (it >= P->nd || !decl_stale(&P->decls[it]))
            continue;
        d = &P->decls[it];
        n = d->node >= 0 ? &P->nodes[d->node] : NULL;
        good = !strcmp(d->schema, P->current_schema) && (P->restore || !n || !n->external_below) &&
               (!n || n->relkind == d->kind);
        for (Py_ssize_t e = P->g.dep_off[it]; good && e < P->g.dep_off[it + 1]; e++) {
            Py_ssize_t w = P->g.dep[e];
            if (w >= P->nd)
                good = !P->nodes[P->item_node[w]].taint; /* an unmanaged view that changes */
            else if (decl_stale(&P->decls[w]))
                good = ok[w] != 0;
        }
        ok[it] = (char)good;
    }
}

/* A chain is worth building for a materialized view that must be rebuilt or re-populated
 * because of what it reads; it takes with it the changed things it reads. */
static void pick_chains(Plan *P, const char *ok)
{
    for (Py_ssize_t k = P->ni - 1; k >= 0; k--) {
        Py_ssize_t it = P->order[k];
        Decl *d;
        if (it >= P->nd || !ok[it])
            continue;
        d = &P->decls[it];
        if (!d->chain && d->kind == 'm' && d->taint && d->node >= 0)
            d->chain = 1;
        for (Py_ssize_t e = P->g.dep_off[it]; d->chain && e < P->g.dep_off[it + 1]; e++) {
            Py_ssize_t w = P->g.dep[e];
            if (w < P->nd && decl_stale(&P->decls[w]))
                P->decls[w].chain = 1;
        }
    }
}

Py_ssize_t pgvc_plan_choose_chain(Plan *P)
{
    Py_ssize_t count = 0;
    char *ok = calloc((size_t)P->ni + 1, 1);
    if (!ok) {
        PyErr_NoMemory();
        return -1;
    }
    mark_external_below(P);
    mark_buildable(P, ok);
    pick_chains(P, ok);
    free(ok);
    for (Py_ssize_t i = 0; i < P->nd; i++) {
        Decl *d = &P->decls[i];
        if (!d->chain)
            continue;
        d->inplace_after = NULL;
        if (!d->reason[0]) {
            d->reason = "rebuilt beside the old one, with the changed views it reads";
            d->state = ST_STALE;
        }
        count++;
        d->refresh = 0;
        d->reindex = 0;
    }
    return count;
}
