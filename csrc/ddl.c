/* ddl.c: every statement the planner emits, each appended to the plan's actions with the lock
 * it takes and its phase (0: work that blocks nobody, 1: the short part that takes the locks
 * readers wait on). Identifiers go through sqlgen.c's quoting, values through its literals. */
#include "plan_int.h"

#include <stdio.h>
#include <string.h>

static const char *L_NONE = "none";
static const char *L_READS = "ACCESS SHARE on the relations it reads";
static const char *L_NEW = "ACCESS SHARE on what it reads; the new copy is invisible to readers";
static const char *L_AX = "ACCESS EXCLUSIVE until commit: readers wait, on hot standbys too";
static const char *L_SHARE = "SHARE: writes wait, reads go on";
static const char *L_EXCL = "EXCLUSIVE: reads go on";
static const char *L_COMMENT = "SHARE UPDATE EXCLUSIVE: reads and writes go on";

/* Append one action with the buffer's SQL; it populates a materialized view when the statement
 * written before it said so (P->populates, reset here). RAISES_NEG. */
int pgvc_ddl_emit(Plan *P, const char *op, Py_ssize_t decl, const char *lock, const char *target,
                  int phase, Py_ssize_t sql_offset)
{
    PyObject *t = PyStructSequence_New(P->st->ActionType), *v;
    PyObject *fields[PGVC_ACTION_NFIELDS];
    int rc = -1;
    if (!t)
        return -1;
    fields[0] = PyUnicode_FromString(op);
    fields[1] = PyLong_FromSsize_t(decl);
    fields[2] = pgvc_buf_to_str(&P->buf);
    fields[3] = PyUnicode_FromString(lock);
    fields[4] = PyUnicode_FromString(target);
    fields[5] = PyLong_FromLong(phase);
    fields[6] = PyLong_FromSsize_t(sql_offset);
    fields[7] = PyBool_FromLong(P->populates);
    P->populates = 0;
    rc = 0;
    for (int k = 0; k < PGVC_ACTION_NFIELDS; k++) {
        if (!(v = fields[k]))
            rc = -1;
        PyStructSequence_SET_ITEM(t, k, v ? v : Py_NewRef(Py_None));
    }
    if (rc < 0 || PyList_Append(P->actions, t) < 0) {
        Py_DECREF(t);
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

static const char *rel_word(char kind) { return kind == 'm' ? "MATERIALIZED VIEW" : "VIEW"; }

/* Data stays available: a materialized view built for an object that holds data (a populated
 * materialized view, or a view) is built WITH DATA whatever with_data says; with_data = False
 * only means "create it empty when it does not exist". A dry run (no_data) builds all empty. */
static int build_with_data(Plan *P, Decl *d)
{
    Node *old = d->node >= 0 ? &P->nodes[d->node] : NULL;
    if (P->no_data)
        return 0;
    return d->with_data || (old && old->populated);
}

/* CREATE [OR REPLACE] [MATERIALIZED] VIEW schema.name AS <sql> into the buffer. Returns the
 * offset (in characters) of the view's own SQL in it, to map server error positions back. */
Py_ssize_t pgvc_ddl_write_create(Plan *P, Decl *d, const char *schema, const char *name,
                                 int replace, int with_data)
{
    Py_ssize_t off;
    pgvc_buf_puts(&P->buf, replace ? "CREATE OR REPLACE " : "CREATE ");
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
        pgvc_buf_puts(&P->buf, with_data ? "\nWITH DATA" : "\nWITH NO DATA");
    return off;
}

static int emit_create_in(Plan *P, Py_ssize_t i, const char *schema, const char *name, int phase,
                          const char *op, const char *lock)
{
    Decl *d = &P->decls[i];
    int with_data = build_with_data(P, d);
    Py_ssize_t off = pgvc_ddl_write_create(P, d, schema, name, !strcmp(op, "replace"), with_data);
    P->populates = d->kind == 'm' && with_data;
    return pgvc_ddl_emit(P, op, i, lock, d->target, phase, off);
}

static int emit_create(Plan *P, Py_ssize_t i, const char *name, int phase, const char *op,
                       const char *lock)
{
    return emit_create_in(P, i, P->decls[i].schema, name, phase, op, lock);
}

/* A Django index template: its text pieces, and the table and index name in their slots. */
static void put_template(pgvc_buf *b, const DeclIndex *ix, const char *schema, const char *table,
                         const char *index)
{
    for (Py_ssize_t k = 0; k < ix->nseg; k++) {
        const Seg *s = &ix->segs[k];
        if (s->kind == 'T')
            pgvc_buf_qualified(b, schema, table);
        else if (s->kind == 'N')
            pgvc_buf_ident(b, index);
        else
            pgvc_buf_puts(b, s->text);
    }
}

/* Index k of a declaration (-1: the concurrent index, then Meta.indexes) on schema.table into
 * the buffer, its name given `suffix`. Returns 0 when there is no such index. */
static int write_index(Plan *P, Decl *d, Py_ssize_t k, const char *schema, const char *table,
                       const char *suffix)
{
    char iname[PGVC_NAMEDATALEN];
    if (k < 0) {
        if (!d->cidx)
            return 0;
        pgvc_derived_name(iname, d->cidx_name, suffix);
        pgvc_buf_puts(&P->buf, "CREATE UNIQUE INDEX ");
        pgvc_buf_ident(&P->buf, iname);
        pgvc_buf_puts(&P->buf, " ON ");
        pgvc_buf_qualified(&P->buf, schema, table);
        pgvc_buf_puts(&P->buf, " (");
        pgvc_buf_puts(&P->buf, d->cidx_cols); /* parsed and quoted (plan_input.c) */
        pgvc_buf_puts(&P->buf, ")");
        if (d->cidx_ts) {
            pgvc_buf_puts(&P->buf, " TABLESPACE ");
            pgvc_buf_ident(&P->buf, d->cidx_ts);
        }
        return 1;
    }
    pgvc_derived_name(iname, d->indexes[k].name, suffix);
    put_template(&P->buf, &d->indexes[k], schema, table, iname);
    return 1;
}

/* Every declared index of a materialized view, on `table`; names get `suffix`. */
int pgvc_ddl_indexes_in(Plan *P, Py_ssize_t i, const char *schema, const char *table,
                        const char *suffix, int phase, const char *op, const char *lock)
{
    Decl *d = &P->decls[i];
    const char *target = d->target;
    for (Py_ssize_t k = -1; k < d->nindexes; k++)
        if (write_index(P, d, k, schema, table, suffix) &&
            pgvc_ddl_emit(P, op, i, lock, target, phase, -1) < 0)
            return -1;
    return 0;
}

static int emit_indexes(Plan *P, Py_ssize_t i, const char *table, const char *suffix, int phase,
                        const char *op, const char *lock)
{
    return pgvc_ddl_indexes_in(P, i, P->decls[i].schema, table, suffix, phase, op, lock);
}

/* GRANTs and owner of the object a rebuild replaces. */
static int emit_grants(Plan *P, Py_ssize_t decl, Node *n, char kind, const char *target)
{
    pgvc_buf qual;
    int rc = 0;
    if (!n || (n->acl.n <= 0 && !n->owner))
        return 0;
    pgvc_buf_init(&qual);
    pgvc_buf_qualified(&qual, n->schema, n->name);
    if (qual.oom) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; k < n->acl.n; k++) {
        const char *item = n->acl.items[k];
        size_t olen = n->owner ? strlen(n->owner) : 0;
        /* The owner's own rights come with ownership. */
        if (n->owner && !strncmp(item, n->owner, olen) && item[olen] == '=')
            continue;
        if (pgvc_acl_to_grants(&P->buf, item, qual.data) < 0) {
            PyErr_Format(PyExc_ValueError,
                         "cannot carry over the privileges of %s: malformed aclitem %s", qual.data,
                         item);
            rc = -1;
            goto exit;
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
        rc = pgvc_ddl_emit(P, "grant", decl, "catalog update; no lock readers wait on", target, 1,
                           -1);
exit:
    pgvc_buf_free(&qual);
    return rc;
}

int pgvc_ddl_drop(Plan *P, Py_ssize_t it)
{
    Node *n = &P->nodes[P->item_node[it]];
    const char *target = it < P->nd ? P->decls[it].target : n->target;
    pgvc_buf_puts(&P->buf, "DROP ");
    pgvc_buf_puts(&P->buf, rel_word(n->relkind));
    pgvc_buf_puts(&P->buf, " ");
    pgvc_buf_qualified(&P->buf, n->schema, n->name);
    return pgvc_ddl_emit(P, "drop", it < P->nd ? it : -1, L_AX, target, 1, -1);
}

int pgvc_ddl_restore(Plan *P, Py_ssize_t it)
{
    Node *n = &P->nodes[P->item_node[it]];
    const char *target = n->target;
    size_t len;
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
    while (len && (n->fulldef[len - 1] == ';' || n->fulldef[len - 1] == ' ' ||
                   n->fulldef[len - 1] == '\n'))
        len--;
    pgvc_buf_put(&P->buf, n->fulldef, len);
    if (n->relkind == 'm')
        pgvc_buf_puts(&P->buf, n->populated && !P->no_data ? "\nWITH DATA" : "\nWITH NO DATA");
    if (pgvc_ddl_emit(P, "restore", -1, L_READS, target, 1, -1) < 0)
        return -1;
    for (Py_ssize_t k = 0; k < n->index_defs.n; k++) {
        pgvc_buf_puts(&P->buf, n->index_defs.items[k]);
        if (pgvc_ddl_emit(P, "restore", -1, L_READS, target, 1, -1) < 0)
            return -1;
    }
    if (n->comment) {
        pgvc_buf_puts(&P->buf, "COMMENT ON ");
        pgvc_buf_puts(&P->buf, rel_word(n->relkind));
        pgvc_buf_puts(&P->buf, " ");
        pgvc_buf_qualified(&P->buf, n->schema, n->name);
        pgvc_buf_puts(&P->buf, " IS ");
        pgvc_buf_literal(&P->buf, n->comment);
        if (pgvc_ddl_emit(P, "restore", -1, L_COMMENT, target, 1, -1) < 0)
            return -1;
    }
    return emit_grants(P, -1, n, n->relkind, target);
}

int pgvc_ddl_refresh(Plan *P, Py_ssize_t i)
{
    Decl *d = &P->decls[i];
    Node *n = d->node >= 0 ? &P->nodes[d->node] : NULL;
    int concurrently = d->cidx && n && n->populated && !d->reindex;
    pgvc_buf_puts(&P->buf, concurrently ? "REFRESH MATERIALIZED VIEW CONCURRENTLY "
                                        : "REFRESH MATERIALIZED VIEW ");
    pgvc_buf_qualified(&P->buf, d->schema, d->name);
    P->populates = 1;
    return pgvc_ddl_emit(P, "refresh", i, concurrently ? L_EXCL : L_AX, d->target, 1, -1);
}

int pgvc_ddl_reindex(Plan *P, Py_ssize_t i)
{
    Decl *d = &P->decls[i];
    Node *n = &P->nodes[d->node];
    const char *target = d->target;
    /* Drop what is there, build what is declared: index names carry their definition. */
    for (Py_ssize_t k = 0; k < n->index_names.n; k++) {
        pgvc_buf_puts(&P->buf, "DROP INDEX ");
        pgvc_buf_qualified(&P->buf, d->schema, n->index_names.items[k]);
        if (pgvc_ddl_emit(P, "drop_index", i, L_AX, target, 1, -1) < 0)
            return -1;
    }
    return emit_indexes(P, i, d->name, "", 1, "index", L_SHARE);
}

/* One DO block writes every fingerprint, with the rewrite rule's xmin and the md5 of
 * pg_get_viewdef() read after creation, so later syncs can tell hand-made changes. */
/* The relations to stamp (literals, comma-separated, into rels) and the comment of each (the
 * user's own text kept, then our stamp: into notes). Returns how many. */
static int collect_stamps(Plan *P, pgvc_buf *rels, pgvc_buf *notes)
{
    pgvc_buf body;
    int n = 0;
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
        pgvc_buf_puts(rels, n ? ", " : "");
        pgvc_buf_reset(&body);
        pgvc_buf_qualified(&body, d->schema, d->name);
        pgvc_buf_literal(rels, body.oom ? "" : body.data);
        pgvc_buf_reset(&body);
        pgvc_stamp_write(&body, old ? old->comment : NULL, old ? old->stamp.user_len : 0,
                         d->body_fp, d->idx_fp);
        pgvc_buf_puts(notes, n ? ", " : "");
        pgvc_buf_literal(notes, body.oom ? "" : body.data);
        n++;
    }
    /* New pending versions: the declaration's fingerprints, marked pending. */
    for (Py_ssize_t i = 0; i < P->nd; i++) {
        Decl *d = &P->decls[i];
        char name[PGVC_NAMEDATALEN];
        if (!d->pending_build)
            continue;
        pgvc_derived_name(name, d->name, PGVC_PENDING_SUFFIX);
        pgvc_buf_puts(rels, n ? ", " : "");
        pgvc_buf_reset(&body);
        pgvc_buf_qualified(&body, d->schema, name);
        pgvc_buf_literal(rels, body.oom ? "" : body.data);
        pgvc_buf_reset(&body);
        pgvc_stamp_write(&body, NULL, 0, d->body_fp, d->idx_fp);
        pgvc_buf_puts(&body, " pending=1");
        pgvc_buf_puts(notes, n ? ", " : "");
        pgvc_buf_literal(notes, body.oom ? "" : body.data);
        n++;
    }
    if (body.oom)
        rels->oom = 1;
    pgvc_buf_free(&body);
    return n;
}

int pgvc_ddl_stamp(Plan *P)
{
    pgvc_buf rels, notes;
    char tag[32];
    int n, rc = -1;
    pgvc_buf_init(&rels);
    pgvc_buf_init(&notes);
    n = collect_stamps(P, &rels, &notes);
    if (!n) {
        rc = 0;
        goto exit;
    }
    if (rels.oom || notes.oom) {
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
    pgvc_buf_puts(&P->buf, "\nDECLARE r record;\nBEGIN\n"
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
    rc = pgvc_ddl_emit(P, "stamp", -1, L_COMMENT, "fingerprints", 1, -1);
exit:
    pgvc_buf_free(&rels);
    pgvc_buf_free(&notes);
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
    for (int k = 0;; k++) {
        snprintf(tag, sizeof tag, "$pgvc%d$", k);
        if (!strstr(name.data, tag))
            break;
    }
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
        if (emit_create_in(P, it, PGVC_BUILD_SCHEMA, P->decls[it].name, 0, "build", L_NEW) < 0)
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

int pgvc_ddl_create_schema(Plan *P, Py_ssize_t i)
{
    pgvc_buf_puts(&P->buf, "CREATE SCHEMA IF NOT EXISTS ");
    pgvc_buf_ident(&P->buf, P->decls[i].schema);
    return pgvc_ddl_emit(P, "create_schema", i, L_NONE, P->decls[i].schema, 0, -1);
}

/* A changed materialized view built beside the old one, under a temporary name (phase 0). */
int pgvc_ddl_build_beside(Plan *P, Py_ssize_t i)
{
    char tmp[PGVC_NAMEDATALEN];
    pgvc_derived_name(tmp, P->decls[i].name, "_pgvc_new");
    if (emit_create(P, i, tmp, 0, "build", L_NEW) < 0 ||
        emit_indexes(P, i, tmp, "_pgvc_new", 0, "build_index", L_NEW) < 0)
        return -1;
    return 0;
}

/* The new version of a chain member moves from the build schema into place. */
int pgvc_ddl_chain_swap(Plan *P, Py_ssize_t i)
{
    Decl *d = &P->decls[i];
    Node *old = d->node >= 0 ? &P->nodes[d->node] : NULL;
    const char *target = d->target;
    pgvc_buf_puts(&P->buf, "ALTER ");
    pgvc_buf_puts(&P->buf, rel_word(d->kind));
    pgvc_buf_puts(&P->buf, " ");
    pgvc_buf_qualified(&P->buf, PGVC_BUILD_SCHEMA, d->name);
    pgvc_buf_puts(&P->buf, " SET SCHEMA ");
    pgvc_buf_ident(&P->buf, d->schema);
    if (pgvc_ddl_emit(P, "swap", i, L_AX, target, 1, -1) < 0 ||
        emit_grants(P, i, old, d->kind, target) < 0)
        return -1;
    return 0;
}

/* Create (or re-create, with the old object's grants) a declared view in place (phase 1). */
int pgvc_ddl_create(Plan *P, Py_ssize_t i)
{
    Decl *d = &P->decls[i];
    Node *old = d->node >= 0 ? &P->nodes[d->node] : NULL;
    const char *target = d->target;
    if (emit_create(P, i, d->name, 1, "create", L_READS) < 0)
        return -1;
    if (d->kind == 'm' && emit_indexes(P, i, d->name, "", 1, "index", L_SHARE) < 0)
        return -1;
    if (d->action == A_RECREATE && emit_grants(P, i, old, d->kind, target) < 0)
        return -1;
    return 0;
}

int pgvc_ddl_replace(Plan *P, Py_ssize_t i)
{
    return emit_create(P, i, P->decls[i].name, 1, "replace", L_AX);
}

/* The copy built beside under the name derived with `suffix` takes the old one's name, and its
 * indexes theirs (phase 1). */
int pgvc_ddl_swap_from(Plan *P, Py_ssize_t i, const char *suffix)
{
    Decl *d = &P->decls[i];
    Node *old = d->node >= 0 ? &P->nodes[d->node] : NULL;
    char tmp[PGVC_NAMEDATALEN], iname[PGVC_NAMEDATALEN];
    const char *target = d->target;
    pgvc_derived_name(tmp, d->name, suffix);
    pgvc_buf_puts(&P->buf, "ALTER ");
    pgvc_buf_puts(&P->buf, rel_word(d->kind));
    pgvc_buf_puts(&P->buf, " ");
    pgvc_buf_qualified(&P->buf, d->schema, tmp);
    pgvc_buf_puts(&P->buf, " RENAME TO ");
    pgvc_buf_ident(&P->buf, d->name);
    for (Py_ssize_t x = -1; x < d->nindexes; x++) {
        const char *final = x < 0 ? (d->cidx ? d->cidx_name : NULL) : d->indexes[x].name;
        if (!final)
            continue;
        pgvc_derived_name(iname, final, suffix);
        pgvc_buf_puts(&P->buf, ";\nALTER INDEX ");
        pgvc_buf_qualified(&P->buf, d->schema, iname);
        pgvc_buf_puts(&P->buf, " RENAME TO ");
        pgvc_buf_ident(&P->buf, final);
    }
    if (pgvc_ddl_emit(P, "swap", i, L_AX, target, 1, -1) < 0 ||
        emit_grants(P, i, old, d->kind, target) < 0)
        return -1;
    return 0;
}

int pgvc_ddl_swap(Plan *P, Py_ssize_t i) { return pgvc_ddl_swap_from(P, i, "_pgvc_new"); }

int pgvc_ddl_drop_build_schema(Plan *P)
{
    pgvc_buf_puts(&P->buf, "DROP SCHEMA " PGVC_BUILD_SCHEMA);
    return pgvc_ddl_emit(P, "drop_schema", -1, L_NONE, PGVC_BUILD_SCHEMA, 1, -1);
}

/* ---- adoption ---------------------------------------------------------------------------- */

/* A scalar subquery: the sorted signatures of the indexes on relation `alias`.oid, everything
 * an index is but its name (method, uniqueness, columns or expressions, operator classes,
 * options, collations, predicate, tablespace). */
static void write_index_signatures(pgvc_buf *b, const char *alias)
{
    pgvc_buf_puts(
        b,
        "(SELECT pg_catalog.array_agg(s.sig ORDER BY s.sig) FROM (\n"
        "    SELECT pg_catalog.concat_ws(' | ', a.amname, x.indisunique::text,\n"
        "      x.indnkeyatts::text, x.indclass::text, x.indoption::text,\n"
        "      x.indcollation::text, ic.reltablespace::text,\n"
        "      (SELECT pg_catalog.string_agg(pg_catalog.pg_get_indexdef(x.indexrelid, k, true),\n"
        "              ', ' ORDER BY k) FROM pg_catalog.generate_series(1, x.indnatts) AS k),\n"
        "      pg_catalog.pg_get_expr(x.indpred, x.indrelid, true)) AS sig\n"
        "    FROM pg_catalog.pg_index x\n"
        "    JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid\n"
        "    JOIN pg_catalog.pg_am a ON a.oid = ic.relam\n"
        "    WHERE x.indrelid = ");
    pgvc_buf_puts(b, alias);
    pgvc_buf_puts(b, ".oid) AS s)");
}

/* The comparison of an existing object (oid) with its probe (schema.name): one row of two
 * booleans, (same definition, same indexes), both as PostgreSQL renders them. */
static void write_probe_check(Plan *P, long long oid, const char *schema, const char *name)
{
    char num[32];
    pgvc_buf qual;
    pgvc_buf_init(&qual);
    pgvc_buf_qualified(&qual, schema, name);
    snprintf(num, sizeof num, "%lld", oid);
    pgvc_buf_puts(&P->buf,
                  "SELECT pg_catalog.pg_get_viewdef(o.oid) = pg_catalog.pg_get_viewdef(t.oid)\n"
                  "    AND o.reltablespace = t.reltablespace,\n  ");
    write_index_signatures(&P->buf, "o");
    pgvc_buf_puts(&P->buf, "\n  IS NOT DISTINCT FROM ");
    write_index_signatures(&P->buf, "t");
    pgvc_buf_puts(&P->buf, "\nFROM pg_catalog.pg_class o, pg_catalog.pg_class t\nWHERE o.oid = ");
    pgvc_buf_puts(&P->buf, num);
    pgvc_buf_puts(&P->buf, "::pg_catalog.oid AND t.oid = ");
    pgvc_buf_literal(&P->buf, qual.oom ? "" : qual.data);
    pgvc_buf_puts(&P->buf, "::pg_catalog.regclass");
    if (qual.oom)
        P->buf.oom = 1;
    pgvc_buf_free(&qual);
}

/* The buffer as a new str, and the buffer emptied. */
static PyObject *take_buf(Plan *P)
{
    PyObject *s = pgvc_buf_to_str(&P->buf);
    pgvc_buf_reset(&P->buf);
    return s;
}

PyObject *pgvc_ddl_probe(Plan *P, Py_ssize_t i)
{
    Decl *d = &P->decls[i];
    char tmp[PGVC_NAMEDATALEN];
    PyObject *statements = PyList_New(0), *s = NULL, *check = NULL, *result = NULL;
    if (!statements)
        return NULL;
    pgvc_derived_name(tmp, d->name, "_pgvc_probe");
    pgvc_ddl_write_create(P, d, d->schema, tmp, 0, 0);
    if (!(s = take_buf(P)) || PyList_Append(statements, s) < 0)
        goto exit;
    Py_CLEAR(s);
    for (Py_ssize_t k = -1; d->kind == 'm' && k < d->nindexes; k++) {
        if (!write_index(P, d, k, d->schema, tmp, "_pgvc_probe"))
            continue;
        if (!(s = take_buf(P)) || PyList_Append(statements, s) < 0)
            goto exit;
        Py_CLEAR(s);
    }
    write_probe_check(P, P->nodes[d->node].oid, d->schema, tmp);
    if (!(check = take_buf(P)))
        goto exit;
    result = Py_BuildValue("(nNO)", i, PyList_AsTuple(statements), check);
exit:
    Py_XDECREF(s);
    Py_XDECREF(check);
    Py_DECREF(statements);
    return result;
}
