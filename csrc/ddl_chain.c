/* ddl_chain.c: the statements of a chain (plan_decide.c): the new versions of views that must
 * be re-created together built in the build schema (PGVC_BUILD_SCHEMA, first on the
 * search_path, so the unqualified names in their SQL find each other), each changed view checked
 * against the columns of the one it replaces, then moved into place with the old one's grants
 * (phase 1). ddl_defer.c builds through the same schema. */
#include "ddl.h"

#include <stdio.h>
#include <string.h>

static const char *L_NONE = "none";
static const char *L_NEW = "ACCESS SHARE on what it reads; the new copy is invisible to readers";
static const char *L_AX = "ACCESS EXCLUSIVE until commit: readers wait, on hot standbys too";

/* The build schema, created (phase 0) and put first on the transaction's search_path. */
int pgvc_ddl_build_schema_on(Plan *P)
{
    pgvc_buf_puts(&P->buf, "CREATE SCHEMA " PGVC_BUILD_SCHEMA);
    if (pgvc_ddl_emit(P, "chain_schema", -1, L_NONE, PGVC_BUILD_SCHEMA, 0, -1) < 0)
        return -1;
    pgvc_buf_puts(&P->buf,
                  "SELECT pg_catalog.set_config('search_path', '" PGVC_BUILD_SCHEMA ", ' || "
                  "pg_catalog.current_setting('search_path'), true)");
    return pgvc_ddl_emit(P, "chain_path", -1, L_NONE, PGVC_BUILD_SCHEMA, 0, -1);
}

/* The build schema taken off the search_path again. */
int pgvc_ddl_build_path_off(Plan *P)
{
    char num[32];
    pgvc_buf_puts(&P->buf, "SELECT pg_catalog.set_config('search_path', pg_catalog.substr("
                           "pg_catalog.current_setting('search_path'), ");
    snprintf(num, sizeof num, "%d", (int)strlen(PGVC_BUILD_SCHEMA ", ") + 1);
    pgvc_buf_puts(&P->buf, num);
    pgvc_buf_puts(&P->buf, "), true)");
    return pgvc_ddl_emit(P, "chain_path", -1, L_NONE, PGVC_BUILD_SCHEMA, 0, -1);
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
    char tag[32], num[32];
    const char *target = d->target;
    pgvc_buf name;
    int rc = -1;
    pgvc_buf_init(&name);
    pgvc_buf_literal(&name, d->name);
    if (name.oom) {
        PyErr_NoMemory();
        goto exit;
    }
    pgvc_ddl_dollar_tag(tag, sizeof tag, name.data, NULL);
    snprintf(num, sizeof num, "%lld", n->oid);
    pgvc_buf_puts(&P->buf, "DO ");
    pgvc_buf_puts(&P->buf, tag);
    pgvc_buf_puts(&P->buf,
                  "\nDECLARE o record; c record;\nBEGIN\n"
                  "  FOR o IN SELECT a.attnum, a.attname, a.atttypid, a.atttypmod, a.attcollation\n"
                  "    FROM pg_catalog.pg_attribute a WHERE a.attrelid = ");
    pgvc_buf_puts(&P->buf, num);
    pgvc_buf_puts(
        &P->buf,
        "::pg_catalog.oid\n"
        "      AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum\n"
        "  LOOP\n"
        "    SELECT a.attname, a.atttypid, a.atttypmod, a.attcollation INTO c\n"
        "      FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class r ON r.oid = a.attrelid\n"
        "      WHERE r.relnamespace = '" PGVC_BUILD_SCHEMA "'::pg_catalog.regnamespace\n"
        "        AND r.relname = ");
    pgvc_buf_put(&P->buf, name.data, name.len);
    pgvc_buf_puts(
        &P->buf,
        " AND a.attnum = o.attnum AND NOT a.attisdropped;\n"
        "    IF NOT FOUND THEN\n"
        "      RAISE EXCEPTION 'cannot drop columns from view' USING ERRCODE = '42P16';\n"
        "    ELSIF c.attname <> o.attname THEN\n"
        "      RAISE EXCEPTION 'cannot change name of view column \"%\" to \"%\"', o.attname, "
        "c.attname\n"
        "        USING ERRCODE = '42P16';\n"
        "    ELSIF c.atttypid <> o.atttypid OR c.atttypmod <> o.atttypmod THEN\n"
        "      RAISE EXCEPTION 'cannot change data type of view column \"%\" from % to %', "
        "o.attname,\n"
        "        pg_catalog.format_type(o.atttypid, o.atttypmod),\n"
        "        pg_catalog.format_type(c.atttypid, c.atttypmod) USING ERRCODE = '42P16';\n"
        "    ELSIF c.attcollation <> o.attcollation THEN\n"
        "      RAISE EXCEPTION 'cannot change collation of view column \"%\"', o.attname\n"
        "        USING ERRCODE = '42P16';\n"
        "    END IF;\n"
        "  END LOOP;\nEND\n");
    pgvc_buf_puts(&P->buf, tag);
    rc = pgvc_ddl_emit(P, "compat_check", i, L_NONE, target, 0, -1);
exit:
    pgvc_buf_free(&name);
    return rc;
}

/* Phase 0 of a chain: the build schema first on the search_path, the new versions created there
 * in order, a check that none of them reads an old object it should read anew (SQL that names
 * one by schema), then the search_path back as it was. */
int pgvc_ddl_chain_build(Plan *P)
{
    char num[32];
    int first = 1;
    if (pgvc_ddl_build_schema_on(P) < 0)
        return -1;
    for (Py_ssize_t k = 0; k < P->ni; k++) {
        Py_ssize_t it = P->order[k];
        if (it >= P->nd || !P->decls[it].chain)
            continue;
        if (pgvc_ddl_create_in(P, it, PGVC_BUILD_SCHEMA, P->decls[it].name, 0, "build", L_NEW) < 0)
            return -1;
        /* A changed view that CREATE OR REPLACE would have updated: same columns, or more. */
        if (P->decls[it].kind == 'v' && P->decls[it].action == A_REPLACE &&
            P->decls[it].node >= 0 && P->nodes[P->decls[it].node].relkind == 'v' &&
            emit_compat_check(P, it) < 0)
            return -1;
        if (P->decls[it].kind == 'm' &&
            pgvc_ddl_indexes_in(P, it, PGVC_BUILD_SCHEMA, P->decls[it].name, "", 0, "build_index",
                                L_NEW) < 0)
            return -1;
    }
    pgvc_buf_puts(&P->buf, "DO $pgvc$ BEGIN\n"
                           "  IF EXISTS (SELECT 1 FROM pg_catalog.pg_depend d\n"
                           "    JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid\n"
                           "    JOIN pg_catalog.pg_class c ON c.oid = w.ev_class\n"
                           "    WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass\n"
                           "      AND c.relnamespace = '" PGVC_BUILD_SCHEMA "'::regnamespace\n"
                           "      AND d.refclassid = 'pg_catalog.pg_class'::regclass\n"
                           "      AND d.refobjid = ANY('{");
    for (Py_ssize_t i = 0; i < P->nd; i++) {
        if (!P->decls[i].chain || P->decls[i].node < 0)
            continue;
        snprintf(num, sizeof num, "%s%lld", first ? "" : ",", P->nodes[P->decls[i].node].oid);
        pgvc_buf_puts(&P->buf, num);
        first = 0;
    }
    pgvc_buf_puts(&P->buf, "}'::oid[])) THEN\n"
                           "    RAISE EXCEPTION 'django-pgviews-c: chain reads an old object' "
                           "USING ERRCODE = 'P0001';\n"
                           "  END IF;\nEND $pgvc$");
    if (pgvc_ddl_emit(P, "chain_check", -1, L_NONE, PGVC_BUILD_SCHEMA, 0, -1) < 0)
        return -1;
    return pgvc_ddl_build_path_off(P);
}

/* The new version of a chain member moves from the build schema into place. */
int pgvc_ddl_chain_swap(Plan *P, Py_ssize_t i)
{
    Decl *d = &P->decls[i];
    Node *old = d->node >= 0 ? &P->nodes[d->node] : NULL;
    const char *target = d->target;
    pgvc_buf_puts(&P->buf, "ALTER ");
    pgvc_buf_puts(&P->buf, pgvc_rel_word(d->kind));
    pgvc_buf_puts(&P->buf, " ");
    pgvc_buf_qualified(&P->buf, PGVC_BUILD_SCHEMA, d->name);
    pgvc_buf_puts(&P->buf, " SET SCHEMA ");
    pgvc_buf_ident(&P->buf, d->schema);
    if (pgvc_ddl_emit(P, "swap", i, L_AX, target, 1, -1) < 0 ||
        pgvc_ddl_grants(P, i, old, d->kind, target) < 0)
        return -1;
    return 0;
}

int pgvc_ddl_drop_build_schema(Plan *P)
{
    pgvc_buf_puts(&P->buf, "DROP SCHEMA " PGVC_BUILD_SCHEMA);
    return pgvc_ddl_emit(P, "drop_schema", -1, L_NONE, PGVC_BUILD_SCHEMA, 1, -1);
}
