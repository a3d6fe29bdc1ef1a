/* ddl.c: the statements the planner emits for one object (CREATE, DROP, swap, indexes, grants,
 * refresh, restore) and the fingerprints' stamp, each appended to the plan's actions with the
 * lock it takes and its phase (0: work that blocks nobody, 1: the short part that takes the
 * locks readers wait on); and the building blocks ddl_chain.c, ddl_defer.c and ddl_probe.c
 * share (ddl.h). Identifiers go through sqlgen.c's quoting, values through its literals. */
#include "ddl.h"

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

/* A dollar-quote tag ($pgvcN$) that occurs in neither text (b may be NULL), so the text it
 * encloses cannot end the quote. */
void pgvc_ddl_dollar_tag(char *tag, size_t size, const char *a, const char *b)
{
    for (int k = 0;; k++) {
        snprintf(tag, size, "$pgvc%d$", k);
        if (!strstr(a, tag) && (!b || !strstr(b, tag)))
            return;
    }
}

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
    pgvc_buf_puts(&P->buf, pgvc_rel_word(d->kind));
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

int pgvc_ddl_create_in(Plan *P, Py_ssize_t i, const char *schema, const char *name, int phase,
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
    return pgvc_ddl_create_in(P, i, P->decls[i].schema, name, phase, op, lock);
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
int pgvc_ddl_write_index(Plan *P, Decl *d, Py_ssize_t k, const char *schema, const char *table,
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
        if (pgvc_ddl_write_index(P, d, k, schema, table, suffix) &&
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
int pgvc_ddl_grants(Plan *P, Py_ssize_t decl, Node *n, char kind, const char *target)
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
        pgvc_buf_puts(&P->buf, pgvc_rel_word(kind));
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
    pgvc_buf_puts(&P->buf, pgvc_rel_word(n->relkind));
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
    pgvc_buf_puts(&P->buf, pgvc_rel_word(n->relkind));
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
        pgvc_buf_puts(&P->buf, pgvc_rel_word(n->relkind));
        pgvc_buf_puts(&P->buf, " ");
        pgvc_buf_qualified(&P->buf, n->schema, n->name);
        pgvc_buf_puts(&P->buf, " IS ");
        pgvc_buf_literal(&P->buf, n->comment);
        if (pgvc_ddl_emit(P, "restore", -1, L_COMMENT, target, 1, -1) < 0)
            return -1;
    }
    return pgvc_ddl_grants(P, -1, n, n->relkind, target);
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

/* One DO block writes every fingerprint, with the rewrite rule's xmin and the md5 of
 * pg_get_viewdef() read after creation, so later syncs can tell hand-made changes. */
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
    pgvc_ddl_dollar_tag(tag, sizeof tag, rels.data, notes.data);
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
    if (d->action == A_RECREATE && pgvc_ddl_grants(P, i, old, d->kind, target) < 0)
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
    pgvc_buf_puts(&P->buf, pgvc_rel_word(d->kind));
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
        pgvc_ddl_grants(P, i, old, d->kind, target) < 0)
        return -1;
    return 0;
}

int pgvc_ddl_swap(Plan *P, Py_ssize_t i) { return pgvc_ddl_swap_from(P, i, "_pgvc_new"); }
