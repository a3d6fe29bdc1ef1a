/* ddl_defer.c: the statements of deferred rebuilds (plan_defer.c): the waiting new version
 * created beside the old one, dropped, or swapped in. A waiting version is a materialized view,
 * or a plain view between a deferred rebuild and a materialized view waiting along with it. A waiting version whose view reads
 * another view whose rebuild waits too is created to read that one's waiting version: both are
 * built (or moved) into the build schema under their own names, with the build schema first on
 * the search_path, so the unqualified names in their SQL find the waiting versions; then they
 * are renamed and moved back beside their old versions. The swap then renames them all in. */
#include "ddl.h"

#include <string.h>

static const char *L_NONE = "none";
static const char *L_PENDING = "ACCESS SHARE on what it reads; the new version waits WITH NO DATA, "
                               "invisible to readers";
static const char *L_PENDING_DROP =
    "ACCESS EXCLUSIVE on the waiting new version only: nobody reads it";

/* The new version of a deferred rebuild, WITH NO DATA, with its indexes (phase 0), as
 * schema.name. The stamp marks it pending (collect_stamps) under its pending name. */
static int build_pending_as(Plan *P, Py_ssize_t i, const char *schema, const char *name)
{
    Py_ssize_t off = pgvc_ddl_write_create(P, &P->decls[i], schema, name, 0, 0);
    if (pgvc_ddl_emit(P, "build", i, L_PENDING, P->decls[i].target, 0, off) < 0)
        return -1;
    return pgvc_ddl_indexes_in(P, i, schema, name, PGVC_PENDING_SUFFIX, 0, "build_index",
                               L_PENDING);
}

/* The new version beside the old one, under the pending name (phase 0). */
int pgvc_ddl_build_pending(Plan *P, Py_ssize_t i)
{
    char name[PGVC_NAMEDATALEN];
    pgvc_derived_name(name, P->decls[i].name, PGVC_PENDING_SUFFIX);
    return build_pending_as(P, i, P->decls[i].schema, name);
}

/* ALTER [MATERIALIZED] VIEW schema.from <clause> <ident>: one move of a waiting version. */
static int move(Plan *P, Py_ssize_t i, const char *schema, const char *from, const char *clause,
                const char *to)
{
    pgvc_buf_puts(&P->buf, "ALTER ");
    pgvc_buf_puts(&P->buf, pgvc_rel_word(P->decls[i].kind));
    pgvc_buf_puts(&P->buf, " ");
    pgvc_buf_qualified(&P->buf, schema, from);
    pgvc_buf_puts(&P->buf, clause);
    pgvc_buf_ident(&P->buf, to);
    return pgvc_ddl_emit(P, "pending_move", i, L_PENDING_DROP, P->decls[i].target, 0, -1);
}

/* The waiting versions of the declarations marked pending_in_build, in the build schema under
 * their own names while the new ones that read them are created (phase 0): the kept ones are
 * moved there first, the new ones built there, all in dependency order; then each is renamed
 * to its pending name and moved back into its schema. */
int pgvc_ddl_build_pending_linked(Plan *P)
{
    char name[PGVC_NAMEDATALEN];
    if (pgvc_ddl_build_schema_on(P) < 0)
        return -1;
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k];
        Decl *d = it < P->nd ? &P->decls[it] : NULL;
        if (!d || !d->pending_in_build || d->pending_build)
            continue;
        pgvc_derived_name(name, d->name, PGVC_PENDING_SUFFIX);
        if (move(P, it, d->schema, name, " SET SCHEMA ", PGVC_BUILD_SCHEMA) < 0 ||
            move(P, it, PGVC_BUILD_SCHEMA, name, " RENAME TO ", d->name) < 0)
            return -1;
    }
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k];
        Decl *d = it < P->nd ? &P->decls[it] : NULL;
        if (d && d->pending_build && d->pending_in_build &&
            build_pending_as(P, it, PGVC_BUILD_SCHEMA, d->name) < 0)
            return -1;
    }
    if (pgvc_ddl_build_path_off(P) < 0)
        return -1;
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k];
        Decl *d = it < P->nd ? &P->decls[it] : NULL;
        if (!d || !d->pending_in_build)
            continue;
        pgvc_derived_name(name, d->name, PGVC_PENDING_SUFFIX);
        if (move(P, it, PGVC_BUILD_SCHEMA, d->name, " RENAME TO ", name) < 0 ||
            move(P, it, PGVC_BUILD_SCHEMA, name, " SET SCHEMA ", d->schema) < 0)
            return -1;
    }
    pgvc_buf_puts(&P->buf, "DROP SCHEMA " PGVC_BUILD_SCHEMA);
    return pgvc_ddl_emit(P, "drop_schema", -1, L_NONE, PGVC_BUILD_SCHEMA, 0, -1);
}

/* A pending version that is stale, whose declaration no longer defers, or (in a swap) that
 * reads an old version the swap drops (phase 0). */
int pgvc_ddl_drop_pending(Plan *P, Py_ssize_t node)
{
    Node *n = &P->nodes[node];
    pgvc_buf_puts(&P->buf, "DROP ");
    pgvc_buf_puts(&P->buf, pgvc_rel_word(n->relkind));
    pgvc_buf_puts(&P->buf, " ");
    pgvc_buf_qualified(&P->buf, n->schema, n->name);
    return pgvc_ddl_emit(P, "drop_pending", n->pending_of, L_PENDING_DROP, n->target, 0, -1);
}

/* The populated pending version takes the old one's place (phase 1). */
int pgvc_ddl_pending_swap(Plan *P, Py_ssize_t i)
{
    return pgvc_ddl_swap_from(P, i, PGVC_PENDING_SUFFIX);
}
