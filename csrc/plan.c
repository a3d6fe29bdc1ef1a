/* plan.c: the sync planner's entry point and its result.
 *
 * Input: the declared views of one database and one catalog snapshot (catalog.c).
 * Output: the ordered actions that bring the database in line, each with its SQL, the lock it
 * takes and its phase (0: work that blocks nobody, 1: the short part that takes the locks
 * readers wait on), and a status per declared view.
 *
 * The steps, each in its own file: decode the input (plan_input.c), build the item graph
 * (plan_graph.c), decide what each item needs (plan_decide.c), write the statements in order
 * (emit_all here, the SQL text in the ddl*.c files, declared in ddl.h). */
#include "ddl.h"

#include <stdlib.h>
#include <string.h>

static const char *const status_names[] = {"CREATED", "UPDATED", "EXISTS", "FORCED"};
static const char *const state_names[ST_NSTATES] = {
    "in sync", "missing",     "changed", "drifted", "unmanaged",      "unstamped",
    "indexes", "unpopulated", "stale",   "columns", "pending rebuild"};

/* ---- the records plan() returns ---------------------------------------------------------------- */

static PyStructSequence_Field action_fields[PGVC_ACTION_NFIELDS + 1] = {
    {"op", "what the statement does: create, replace, build, swap, drop, index, refresh, stamp..."},
    {"decl", "index of the declaration it serves, -1 for none"},
    {"sql", "the statement"},
    {"lock", "the lock it takes, in words"},
    {"target", "what it acts on, for messages"},
    {"phase", "0: work that blocks nobody; 1: the short part that takes the locks readers wait on"},
    {"sql_offset", "where the view's own SQL starts in sql (characters), -1 when it is not there"},
    {"populates", "whether it computes a declared materialized view's data (WITH DATA, REFRESH)"},
    {NULL, NULL},
};

static PyStructSequence_Desc action_desc = {"django_pgviews_c._core.PlanAction",
                                            "One statement of a sync plan.", action_fields,
                                            PGVC_ACTION_NFIELDS};

int pgvc_plan_add_types(PyObject *module, pgvc_state *st)
{
    PyObject *names = PyTuple_New(D_NFIELDS);
    if (!names)
        return -1;
    for (int k = 0; k < D_NFIELDS; k++) {
        PyObject *s = PyUnicode_FromString(pgvc_decl_fields[k]);
        if (!s) {
            Py_DECREF(names);
            return -1;
        }
        PyTuple_SET_ITEM(names, k, s);
    }
    if (PyModule_AddObjectRef(module, "DECL_FIELDS", names) < 0) {
        Py_DECREF(names);
        return -1;
    }
    Py_DECREF(names);
    if (!(st->ActionType = PyStructSequence_NewType(&action_desc)))
        return -1;
    return PyModule_AddObjectRef(module, "PlanAction", (PyObject *)st->ActionType);
}

/* ---- writing the actions in order ------------------------------------------------------------ */

/* An explicit schema that does not exist: an error, or (create_schemas) CREATE SCHEMA, once
 * each. RAISES_NEG. */
static int emit_schemas(Plan *P)
{
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
        if (!P->create_schemas) {
            /* A typo in db_table must not create a schema. */
            PyErr_Format(P->st->PlanError,
                         "%s: schema '%s' of db_table '%s' does not exist. Create it first (for "
                         "example in a migration: migrations.RunSQL('CREATE SCHEMA ...')), or set "
                         "PGVIEWS_CREATE_SCHEMAS = True to let the sync create it. Nothing was "
                         "changed.",
                         d->label, d->schema, d->db_table);
            return -1;
        }
        if (pgvc_ddl_create_schema(P, i) < 0)
            return -1;
    }
    return 0;
}

/* Phase 0: schemas, the chain's build, then materialized views built beside the old ones. */
static int emit_phase0(Plan *P)
{
    if (emit_schemas(P) < 0)
        return -1;
    if (pgvc_defer_emit(P) < 0)
        return -1;
    if (P->nchain && pgvc_ddl_chain_build(P) < 0)
        return -1;
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k];
        if (it >= P->nd || P->decls[it].action != A_BESIDE || P->decls[it].chain ||
            P->decls[it].pending_swap)
            continue;
        if (pgvc_ddl_build_beside(P, it) < 0)
            return -1;
    }
    return 0;
}

/* Phase 1 starts with the drops, dependants first. */
static int emit_drops(Plan *P)
{
    for (Py_ssize_t k = P->ni - 1; k >= 0; k--) {
        Py_ssize_t it = P->order[k], nj = P->item_node[it];
        if (nj >= 0 && P->nodes[nj].dropped && pgvc_ddl_drop(P, it) < 0)
            return -1;
    }
    return 0;
}

/* One declared view's phase-1 statements. */
static int emit_decl(Plan *P, Py_ssize_t it)
{
    Decl *d = &P->decls[it];
    if (d->chain)
        return pgvc_ddl_chain_swap(P, it);
    switch (d->action) {
    case A_CREATE:
    case A_RECREATE: return pgvc_ddl_create(P, it);
    case A_REPLACE: return pgvc_ddl_replace(P, it);
    case A_BESIDE: return d->pending_swap ? pgvc_ddl_pending_swap(P, it) : pgvc_ddl_swap(P, it);
    default:
        if (d->reindex && pgvc_ddl_reindex(P, it) < 0)
            return -1;
        if (d->refresh && !P->no_data && pgvc_ddl_refresh(P, it) < 0)
            return -1;
        return 0;
    }
}

/* Then everything else, dependencies first; the build schema goes; the stamps are written. */
static int emit_phase1(Plan *P)
{
    if (emit_drops(P) < 0)
        return -1;
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k];
        if (it >= P->nd) {
            if (P->nodes[P->item_node[it]].restore && pgvc_ddl_restore(P, it) < 0)
                return -1;
        } else if (emit_decl(P, it) < 0)
            return -1;
    }
    if (P->nchain && pgvc_ddl_drop_build_schema(P) < 0)
        return -1;
    return pgvc_ddl_stamp(P);
}

static int emit_all(Plan *P) { return emit_phase0(P) < 0 ? -1 : emit_phase1(P); }

static PyObject *refusal_error(Plan *P, PyObject *refused)
{
    pgvc_buf msg;
    PyObject *text;
    pgvc_buf_init(&msg);
    pgvc_buf_puts(&msg, "refusing to drop objects that django-pgviews-c does not manage:");
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Node *n = P->order[k] >= P->nd ? &P->nodes[P->item_node[P->order[k]]] : NULL;
        if (!n || !n->refused_by)
            continue;
        pgvc_buf_puts(&msg, n->relkind == 'm' ? "\n  materialized view " : "\n  view ");
        pgvc_buf_puts(&msg, n->target);
        pgvc_buf_puts(&msg, " reads ");
        pgvc_buf_puts(&msg, n->refused_by);
        pgvc_buf_puts(&msg, n->refused_pruned ? ", which --prune drops"
                                              : ", which this sync must re-create");
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

/* ---- deciding, in order ---------------------------------------------------------------------- */

/* Classify every declaration; `recreate` holds the indexes of those to re-create. RAISES_NEG. */
static int classify_all(Plan *P, PyObject *recreate)
{
    for (Py_ssize_t i = 0; i < P->nd; i++) {
        Decl *d = &P->decls[i];
        Node *n = d->node >= 0 ? &P->nodes[d->node] : NULL;
        PyObject *key = PyLong_FromSsize_t(i);
        int forced = key ? PySet_Contains(recreate, key) : -1;
        Py_XDECREF(key);
        if (forced < 0)
            return -1;
        if (n && n->relkind != 'v' && n->relkind != 'm') {
            PyErr_Format(P->st->PlanError,
                         "%s: %s.%s already exists and is not a view (relkind '%c'); "
                         "django-pgviews-c will not replace it",
                         d->label, d->schema, d->name, n->relkind);
            return -1;
        }
        if (pgvc_plan_classify(P, d, forced) < 0)
            return -1;
    }
    return 0;
}

/* Spread drops and stale data, decide chains (which change what is dropped: spread again), and
 * refuse when something we do not manage would be dropped. RAISES_NEG. */
static int spread(Plan *P)
{
    PyObject *refused;
    int rc = -1;
    if (pgvc_defer_together(P) < 0 || pgvc_defer_along(P) < 0 ||
        !(refused = pgvc_plan_propagate(P)))
        return -1;
    if (P->chain && P->beside) {
        if ((P->nchain = (int)pgvc_plan_choose_chain(P)) < 0)
            goto exit;
        if (P->nchain) {
            for (Py_ssize_t j = 0; j < P->nn; j++)
                P->nodes[j].dropped = P->nodes[j].restore = P->nodes[j].taint = 0;
            Py_CLEAR(refused);
            if (!(refused = pgvc_plan_propagate(P)))
                goto exit;
        }
    }
    if (PyList_GET_SIZE(refused)) {
        refusal_error(P, refused);
        goto exit;
    }
    pgvc_defer_settle(P);
    rc = 0;
exit:
    Py_XDECREF(refused);
    return rc;
}

/* adopt: None (not probed yet), or {declaration index: indexes equal} for the declarations
 * whose probe found the definition equal; every other unstamped object differs. RAISES_NEG. */
static int read_adopt(Plan *P, PyObject *adopt)
{
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    if (adopt == Py_None)
        return 0;
    if (!PyDict_Check(adopt)) {
        PyErr_Format(PyExc_TypeError, "plan: adopt must be a dict or None, not %.100s",
                     Py_TYPE(adopt)->tp_name);
        return -1;
    }
    P->probed = 1;
    for (Py_ssize_t i = 0; i < P->nd; i++)
        P->decls[i].adopt = ADOPT_DIFFERS;
    while (PyDict_Next(adopt, &pos, &key, &value)) {
        Py_ssize_t i = PyLong_Check(key) ? PyLong_AsSsize_t(key) : -1;
        int same_indexes = PyObject_IsTrue(value);
        if (i == -1 && PyErr_Occurred())
            return -1;
        if (i < 0 || i >= P->nd) {
            PyErr_SetString(PyExc_ValueError, "plan: adopt keys must be declaration indexes");
            return -1;
        }
        if (same_indexes < 0)
            return -1;
        P->decls[i].adopt = same_indexes ? ADOPT_SAME : ADOPT_REINDEX;
    }
    return 0;
}

/* ---- the result ------------------------------------------------------------------------------ */

/* Orphans: objects that carry our stamp but that no declaration claims (a renamed db_table),
 * as (schema, name, relkind). Never dropped unless asked (prune): two projects may share one
 * database. */
static PyObject *build_orphans(Plan *P)
{
    PyObject *orphans = PyList_New(0);
    for (Py_ssize_t j = 0; orphans && j < P->nn; j++) {
        Node *n = &P->nodes[j];
        PyObject *row;
        if (n->decl >= 0 || !n->stamp.ours || n->pending_of >= 0)
            continue;
        row = Py_BuildValue("(ssC)", n->schema, n->name, (int)n->relkind);
        if (!row || PyList_Append(orphans, row) < 0)
            Py_CLEAR(orphans);
        Py_XDECREF(row);
    }
    return orphans;
}

/* Fields whose column the view (kept as it is) lacks or has with another type family, as
 * (decl, field, column, field type, column type or None, the view's columns). */
static PyObject *build_column_problems(Plan *P)
{
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out && i < P->nd; i++) {
        Decl *d = &P->decls[i];
        Node *n = d->node >= 0 ? &P->nodes[d->node] : NULL;
        if (!n || d->action != A_SKIP || n->relkind != d->kind)
            continue;
        for (Py_ssize_t k = 0; out && k < d->ncolumns; k++) {
            const char *have = NULL;
            PyObject *cols, *row;
            if (!pgvc_plan_column_problem(d, n, k, &have))
                continue;
            if (!(cols = PyTuple_New(n->colnames.n))) {
                Py_CLEAR(out);
                break;
            }
            for (Py_ssize_t c = 0; cols && c < n->colnames.n; c++) {
                PyObject *s = PyUnicode_FromString(n->colnames.items[c]);
                if (!s)
                    Py_CLEAR(cols); /* the error stays set: out is dropped below */
                else
                    PyTuple_SET_ITEM(cols, c, s);
            }
            if (!cols) {
                Py_CLEAR(out);
                break;
            }
            row = Py_BuildValue("(nsszzN)", i, d->columns[k].field, d->columns[k].column,
                                d->columns[k].type, have, cols);
            if (!row || PyList_Append(out, row) < 0)
                Py_CLEAR(out);
            Py_XDECREF(row);
        }
    }
    return out;
}

/* The adoption probes of the declarations classify() marked. */
static PyObject *build_probes(Plan *P)
{
    PyObject *probes = PyList_New(0);
    for (Py_ssize_t i = 0; probes && i < P->nd; i++) {
        PyObject *probe;
        if (!P->decls[i].probe)
            continue;
        if (!(probe = pgvc_ddl_probe(P, i)) || PyList_Append(probes, probe) < 0)
            Py_CLEAR(probes);
        Py_XDECREF(probe);
    }
    return probes;
}

static PyObject *build_result(Plan *P)
{
    PyObject *statuses = NULL, *reasons = NULL, *states = NULL, *order = NULL, *probes = NULL,
             *orphans = NULL, *columns = NULL, *pending = NULL, *result = NULL;
    if (!(statuses = PyList_New(P->nd)) || !(reasons = PyList_New(P->nd)) ||
        !(states = PyList_New(P->nd)) || !(order = PyList_New(0)) || !(probes = build_probes(P)) ||
        !(orphans = build_orphans(P)) || !(columns = build_column_problems(P)) ||
        !(pending = pgvc_defer_result(P)))
        goto exit;
    for (Py_ssize_t i = 0; i < P->nd; i++) {
        PyObject *s = PyUnicode_FromString(status_names[P->decls[i].status]);
        Decl *d = &P->decls[i];
        PyObject *r = d->inplace_after ? PyUnicode_FromFormat("%s; rebuilt in place after %s",
                                                              d->reason, d->inplace_after)
                                       : PyUnicode_FromString(d->reason);
        if (!s || !r) {
            Py_XDECREF(s);
            Py_XDECREF(r);
            goto exit;
        }
        PyList_SET_ITEM(statuses, i, s);
        PyList_SET_ITEM(reasons, i, r);
        if (!(s = PyUnicode_FromString(state_names[d->state])))
            goto exit;
        PyList_SET_ITEM(states, i, s);
    }
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        PyObject *v;
        if (P->order[k] >= P->nd)
            continue;
        if (!(v = PyLong_FromSsize_t(P->order[k])) || PyList_Append(order, v) < 0) {
            Py_XDECREF(v);
            goto exit;
        }
        Py_DECREF(v);
    }
    result = Py_BuildValue("{sOsOsOsOsOsssOsOsOsO}", "actions", P->actions, "statuses", statuses,
                           "reasons", reasons, "states", states, "order", order, "current_schema",
                           P->current_schema, "probes", probes, "orphans", orphans, "columns",
                           columns, "pending", pending);
exit:
    Py_XDECREF(pending);
    Py_XDECREF(columns);
    Py_XDECREF(orphans);
    Py_XDECREF(states);
    Py_XDECREF(probes);
    Py_XDECREF(statuses);
    Py_XDECREF(reasons);
    Py_XDECREF(order);
    return result;
}

static void plan_free(Plan *P)
{
    Py_XDECREF(P->actions);
    Py_XDECREF(P->schemas);
    pgvc_buf_free(&P->buf);
    pgvc_graph_free(&P->g);
    pgvc_graph_free(&P->cg);
    free(P->order);
    free(P->item_node);
    pgvc_plan_free_decls(P);
    free(P->nodes);
    pgvc_plan_free_arena(P);
}

PyObject *pgvc_plan(pgvc_state *st, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"decls",
                             "catalog",
                             "force",
                             "update",
                             "check_sql_changed",
                             "restore_dependants",
                             "build_beside",
                             "recreate",
                             "chain",
                             "no_data",
                             "adopt",
                             "create_schemas",
                             "prune",
                             "defer",
                             "swap_pending",
                             NULL};
    PyObject *decls, *catalog, *recreate = NULL, *adopt = Py_None, *result = NULL,
                               *recreate_set = NULL;
    PyObject *defer = Py_None, *swap = Py_None;
    Plan P;
    memset(&P, 0, sizeof P);
    P.st = st;
    P.update = 1;
    P.check_sql_changed = 1;
    P.beside = 1;
    P.chain = 1;
    pgvc_buf_init(&P.buf);
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "O!O!|$pppppOppOppOO:plan", kwlist, &PyList_Type, &decls, &PyList_Type,
            &catalog, &P.force, &P.update, &P.check_sql_changed, &P.restore, &P.beside, &recreate,
            &P.chain, &P.no_data, &adopt, &P.create_schemas, &P.prune, &defer, &swap))
        return NULL;
    if (!(recreate_set = recreate ? PySet_New(recreate) : PySet_New(NULL)))
        goto exit;
    if (pgvc_plan_read_decls(&P, decls) < 0 || pgvc_plan_read_catalog(&P, catalog) < 0 ||
        read_adopt(&P, adopt) < 0 || pgvc_defer_read(&P, defer, swap) < 0)
        goto exit;
    if (P.swap_pending)
        P.chain = 0; /* the new version is built already, beside the old one: no chain */
    if (pgvc_plan_build_graph(&P) < 0)
        goto exit;
    if (classify_all(&P, recreate_set) < 0 || spread(&P) < 0)
        goto exit;
    if (!(P.actions = PyList_New(0)) || emit_all(&P) < 0)
        goto exit;
    result = build_result(&P);
exit:
    Py_XDECREF(recreate_set);
    plan_free(&P);
    return result;
}
