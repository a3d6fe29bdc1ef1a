/* aside.c: the SQL text of setting views aside around migrate. The Python side
 * (django_pgviews_c/aside.py) decides what to set aside and when; every statement it sends comes
 * from here, identifiers quoted by sqlgen.c and values as literals or parameters. */
#include "aside.h"
#include "errors.h"

#include <string.h>

#include "plan.h"
#include "sqlgen.h"

/* Parameters (pyformat): tables text[] (quoted, qualified names), columns text[] (a column of
 * the same table, or NULL for the whole table). One row per view or materialized view that
 * reads one of those columns (through pg_depend, or through a constraint on it, as a GROUP BY
 * on a primary key does), or reads such a view, recursively; deepest first. A column that does
 * not exist (yet) counts as the whole table. The last column is the current schema.
 * depth is a view's longest chain of reads from a touched column; UNION drops a row seen at the
 * same depth, and no chain of distinct views is longer than the number of views in the database
 * (views(n)): only a cycle of views (CREATE OR REPLACE can make one) would walk on past it. */
static const char aside_sql[] =
    "WITH RECURSIVE\n"
    "touched AS (\n"
    "  SELECT pg_catalog.to_regclass(u.t) AS rel, u.c AS col\n"
    "  FROM ROWS FROM (pg_catalog.unnest(%(tables)s::text[]),"
    " pg_catalog.unnest(%(columns)s::text[])) AS u(t, c)\n"
    "),\n"
    "target AS (\n"
    "  SELECT t.rel, a.attnum, a.attnum IS NULL AS whole\n"
    "  FROM touched t LEFT JOIN pg_catalog.pg_attribute a\n"
    "    ON a.attrelid = t.rel AND a.attname = t.col AND NOT a.attisdropped\n"
    "  WHERE t.rel IS NOT NULL\n"
    "),\n"
    "root(oid, referenced) AS (\n"
    "  SELECT w.ev_class, d.refobjid\n"
    "  FROM target t\n"
    "  JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_class'::regclass\n"
    "    AND d.refobjid = t.rel AND d.classid = 'pg_catalog.pg_rewrite'::regclass\n"
    "    AND (t.whole OR d.refobjsubid = t.attnum)\n"
    "  JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid AND w.ev_class <> d.refobjid\n"
    "  UNION\n"
    "  SELECT w.ev_class, k.conrelid\n"
    "  FROM target t\n"
    "  JOIN pg_catalog.pg_constraint k ON k.conrelid = t.rel\n"
    "    AND (t.whole OR t.attnum = ANY (k.conkey))\n"
    "  JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_constraint'::regclass\n"
    "    AND d.refobjid = k.oid AND d.classid = 'pg_catalog.pg_rewrite'::regclass\n"
    "  JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid\n"
    "),\n"
    "views(n) AS (\n"
    "  SELECT pg_catalog.count(*) FROM pg_catalog.pg_class WHERE relkind IN ('v', 'm')\n"
    "),\n"
    "dep(oid, referenced, depth) AS (\n"
    "  SELECT oid, referenced, 1 FROM root\n"
    "  UNION\n"
    "  SELECT w.ev_class, dep.oid, dep.depth + 1\n"
    "  FROM dep\n"
    "  JOIN pg_catalog.pg_depend d ON d.refobjid = dep.oid\n"
    "    AND d.refclassid = 'pg_catalog.pg_class'::regclass\n"
    "    AND d.classid = 'pg_catalog.pg_rewrite'::regclass\n"
    "  JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid AND w.ev_class <> d.refobjid\n"
    "  WHERE dep.depth < (SELECT n FROM views)\n"
    "),\n"
    "agg AS (\n"
    "  SELECT oid, pg_catalog.max(depth) AS depth,\n"
    "    pg_catalog.array_agg(DISTINCT referenced::bigint)\n"
    "      FILTER (WHERE referenced IN (SELECT oid FROM dep)) AS refs\n"
    "  FROM dep GROUP BY oid\n"
    ")\n"
    "SELECT c.oid::bigint, n.nspname::text, c.relname::text, c.relkind::text, agg.depth,\n"
    "  c.relispopulated, coalesce(agg.refs, '{}'), pg_catalog.pg_get_viewdef(c.oid),\n"
    "  ds.description, c.relacl::text[], pg_catalog.pg_get_userbyid(c.relowner)::text,\n"
    "  ts.spcname::text,\n"
    "  coalesce((SELECT pg_catalog.array_agg(pg_catalog.pg_get_indexdef(x.indexrelid) ORDER BY "
    "x.indexrelid)\n"
    "            FROM pg_catalog.pg_index x WHERE x.indrelid = c.oid), '{}'),\n"
    "  pg_catalog.current_schema()::text\n"
    "FROM agg JOIN pg_catalog.pg_class c ON c.oid = agg.oid\n"
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
    "LEFT JOIN pg_catalog.pg_description ds ON ds.objoid = c.oid\n"
    "  AND ds.classoid = 'pg_catalog.pg_class'::regclass AND ds.objsubid = 0\n"
    "LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = c.reltablespace\n"
    "WHERE c.relkind IN ('v', 'm')\n"
    "ORDER BY agg.depth DESC, 2, 3\n";

/* Parameter (pyformat): names text[] (quoted, qualified). The ones that exist. */
static const char relations_sql[] =
    "SELECT n.nspname::text, c.relname::text, c.relkind::text, c.relispopulated, ds.description\n"
    "FROM pg_catalog.unnest(%(names)s::text[]) AS u(q)\n"
    "JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(u.q)\n"
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
    "LEFT JOIN pg_catalog.pg_description ds ON ds.objoid = c.oid\n"
    "  AND ds.classoid = 'pg_catalog.pg_class'::regclass AND ds.objsubid = 0\n";

PyObject *pgvc_aside_sql(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return PyUnicode_FromString(aside_sql);
}

PyObject *pgvc_aside_relations_sql(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return PyUnicode_FromString(relations_sql);
}

PyObject *pgvc_aside_lock_sql(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return PyUnicode_FromString("SELECT pg_catalog.pg_advisory_xact_lock(%s)");
}

/* RAISES_NEG: 'v' or 'm' from a kind argument, else -1 with ValueError. */
static int parse_kind(const char *kind)
{
    if ((kind[0] == 'v' || kind[0] == 'm') && !kind[1])
        return kind[0];
    PyErr_Format(PyExc_ValueError, "kind must be 'v' or 'm', not '%s'", kind);
    return -1;
}

static const char *rel_word(int kind) { return kind == 'm' ? "MATERIALIZED VIEW" : "VIEW"; }

/* RAISES_NEG: append b's text to list as a str, then empty b. */
static int flush_to(PyObject *list, pgvc_buf *b)
{
    PyObject *s;
    int rc;
    if (b->oom) {
        PyErr_NoMemory();
        return -1;
    }
    if (!(s = PyUnicode_DecodeUTF8(b->data ? b->data : "", (Py_ssize_t)b->len, "strict")))
        return -1;
    rc = PyList_Append(list, s);
    Py_DECREF(s);
    pgvc_buf_reset(b);
    return rc;
}

/* RAISES_NEG: a list argument holding only str (None counts as an empty list). */
static int check_str_list(PyObject *list, const char *what)
{
    if (list == Py_None)
        return 0;
    if (!PyList_Check(list)) {
        PyErr_Format(PyExc_TypeError, "%s must be a list of str or None", what);
        return -1;
    }
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(list); k++) {
        PyObject *item = PyList_GET_ITEM(list, k);
        Py_ssize_t len;
        const char *s;
        if (!PyUnicode_Check(item)) {
            PyErr_Format(PyExc_TypeError, "%s must be a list of str or None", what);
            return -1;
        }
        if (!(s = PyUnicode_AsUTF8AndSize(item, &len)))
            return -1;
        if ((size_t)len != strlen(s)) {
            PyErr_Format(PyExc_ValueError, "%s: embedded null character", what);
            return -1;
        }
    }
    return 0;
}

PyObject *pgvc_aside_statement(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"op", "schema", "name", "kind", NULL};
    const char *op, *schema, *name, *kind_s;
    int kind;
    pgvc_buf b;
    PyObject *out = NULL;
    (void)module;
    if (pgvc_check_text_args("aside_statement", args, kwargs, kwlist, 0) < 0 ||
        !PyArg_ParseTupleAndKeywords(args, kwargs, "szss:aside_statement", kwlist, &op, &schema,
                                     &name, &kind_s))
        return NULL;
    if ((kind = parse_kind(kind_s)) < 0)
        return NULL;
    pgvc_buf_init(&b);
    if (!strcmp(op, "drop")) {
        pgvc_buf_puts(&b, "DROP ");
        pgvc_buf_puts(&b, rel_word(kind));
        pgvc_buf_puts(&b, " ");
    } else if (!strcmp(op, "refresh") && kind == 'm') {
        pgvc_buf_puts(&b, "REFRESH MATERIALIZED VIEW ");
    } else {
        PyErr_Format(PyExc_ValueError, "aside_statement: unknown op %s for kind %c", op, kind);
        goto exit;
    }
    pgvc_buf_qualified(&b, schema, name);
    out = pgvc_buf_to_str(&b);
exit:
    pgvc_buf_free(&b);
    return out;
}

/* The grantee of aclitem item (maybe quoted, "" doubling a quote) into role (cut to its size);
 * returns where its '=' stands, or NULL with ValueError when the item is malformed. */
static const char *acl_grantee(const char *item, char *role, size_t size)
{
    const char *p = item;
    size_t n = 0;
    /* grantee (maybe quoted, "" doubling a quote) '=' privileges '/' grantor */
    if (*p == '"') {
        for (p++; *p && !(*p == '"' && p[1] != '"'); p++) {
            if (*p == '"')
                p++;
            if (n + 1 < size)
                role[n++] = *p;
        }
        if (*p == '"')
            p++;
    } else
        for (; *p && *p != '='; p++)
            if (n + 1 < size)
                role[n++] = *p;
    role[n] = '\0';
    if (*p != '=') {
        PyErr_Format(PyExc_ValueError, "malformed aclitem %s", item);
        return NULL;
    }
    return p;
}

/* RAISES_NEG: one GRANT statement into out per privilege of aclitem item, whose '=' is at eq.
 * one and stmt are scratch buffers. */
static int grant_privileges(PyObject *out, const char *item, const char *eq, const char *qual,
                            pgvc_buf *one, pgvc_buf *stmt)
{
    size_t prefix = (size_t)(eq - item) + 1;
    const char *privs = eq + 1, *grantor = strchr(privs, '/');
    if (!grantor)
        grantor = privs + strlen(privs);
    for (const char *p = privs; p < grantor; p++) {
        if (*p == '*')
            continue;
        pgvc_buf_reset(one);
        pgvc_buf_put(one, item, prefix);
        pgvc_buf_put(one, p, p[1] == '*' ? 2 : 1);
        pgvc_buf_puts(one, grantor);
        if (one->oom) {
            PyErr_NoMemory();
            return -1;
        }
        if (pgvc_acl_to_grants(stmt, one->data, qual) < 0) {
            PyErr_Format(PyExc_ValueError, "malformed aclitem %s", item);
            return -1;
        }
        /* pgvc_acl_to_grants ends each statement with ";\n": one statement per execute. */
        if (stmt->len >= 2)
            stmt->len -= 2;
        if (stmt->data)
            stmt->data[stmt->len] = '\0';
        if (flush_to(out, stmt) < 0)
            return -1;
    }
    return 0;
}

/* RAISES_NEG: one GRANT per privilege of each aclitem (the owner's own item skipped: its rights
 * come with ownership), then ALTER ... OWNER TO, each a statement of its own in out. */
static int grants_into(PyObject *out, const char *schema, const char *name, int kind, PyObject *acl,
                       const char *owner)
{
    pgvc_buf qual, one, stmt;
    char role[256];
    int rc = -1;
    pgvc_buf_init(&qual);
    pgvc_buf_init(&one);
    pgvc_buf_init(&stmt);
    pgvc_buf_qualified(&qual, schema, name);
    for (Py_ssize_t k = 0; acl != Py_None && k < PyList_GET_SIZE(acl); k++) {
        const char *item = PyUnicode_AsUTF8(PyList_GET_ITEM(acl, k)), *eq;
        if (!item || !(eq = acl_grantee(item, role, sizeof role)))
            goto exit;
        if (owner && !strcmp(role, owner))
            continue;
        if (grant_privileges(out, item, eq, qual.data, &one, &stmt) < 0)
            goto exit;
    }
    if (owner) {
        pgvc_buf_puts(&stmt, "ALTER ");
        pgvc_buf_puts(&stmt, rel_word(kind));
        pgvc_buf_puts(&stmt, " ");
        pgvc_buf_puts(&stmt, qual.data ? qual.data : "");
        pgvc_buf_puts(&stmt, " OWNER TO ");
        pgvc_buf_ident(&stmt, owner);
        if (flush_to(out, &stmt) < 0)
            goto exit;
    }
    rc = 0;
exit:
    pgvc_buf_free(&qual);
    pgvc_buf_free(&one);
    pgvc_buf_free(&stmt);
    return rc;
}

PyObject *pgvc_grant_statements(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"schema", "name", "kind", "acl", "owner", NULL};
    const char *schema, *name, *kind_s, *owner;
    PyObject *acl, *out = NULL;
    int kind;
    (void)module;
    if (pgvc_check_text_args("grant_statements", args, kwargs, kwlist, 0) < 0 ||
        !PyArg_ParseTupleAndKeywords(args, kwargs, "zssOz:grant_statements", kwlist, &schema, &name,
                                     &kind_s, &acl, &owner))
        return NULL;
    if ((kind = parse_kind(kind_s)) < 0 || check_str_list(acl, "acl") < 0)
        return NULL;
    if (!(out = PyList_New(0)))
        return NULL;
    if (grants_into(out, schema, name, kind, acl, owner) < 0)
        Py_CLEAR(out);
    return out;
}

/* CREATE [MATERIALIZED] VIEW ... AS definition (its trailing ';' and blanks cut) into b. */
static void create_statement(pgvc_buf *b, const char *schema, const char *name, int kind,
                             const char *definition, int populated, const char *tablespace)
{
    size_t len = strlen(definition);
    pgvc_buf_puts(b, "CREATE ");
    pgvc_buf_puts(b, rel_word(kind));
    pgvc_buf_puts(b, " ");
    pgvc_buf_qualified(b, schema, name);
    if (kind == 'm' && tablespace) {
        pgvc_buf_puts(b, " TABLESPACE ");
        pgvc_buf_ident(b, tablespace);
    }
    pgvc_buf_puts(b, " AS\n");
    while (len && strchr("; \n", definition[len - 1]))
        len--;
    pgvc_buf_put(b, definition, len);
    if (kind == 'm')
        pgvc_buf_puts(b, populated ? "\nWITH DATA" : "\nWITH NO DATA");
}

PyObject *pgvc_restore_statements(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"schema",  "name",    "kind", "definition", "populated", "tablespace",
                             "indexes", "comment", "acl",  "owner",      NULL};
    const char *schema, *name, *kind_s, *definition, *tablespace, *comment, *owner;
    PyObject *indexes, *acl, *out = NULL;
    int kind, populated;
    pgvc_buf b;
    (void)module;
    if (pgvc_check_text_args("restore_statements", args, kwargs, kwlist, 0) < 0 ||
        !PyArg_ParseTupleAndKeywords(args, kwargs, "zssspzOzOz:restore_statements", kwlist, &schema,
                                     &name, &kind_s, &definition, &populated, &tablespace, &indexes,
                                     &comment, &acl, &owner))
        return NULL;
    pgvc_buf_init(&b);
    if ((kind = parse_kind(kind_s)) < 0 || check_str_list(indexes, "indexes") < 0 ||
        check_str_list(acl, "acl") < 0)
        goto error;
    if (!(out = PyList_New(0)))
        goto error;
    create_statement(&b, schema, name, kind, definition, populated, tablespace);
    if (flush_to(out, &b) < 0)
        goto error;
    /* pg_get_indexdef() output names the relation by its quoted, qualified name already. */
    for (Py_ssize_t k = 0; indexes != Py_None && k < PyList_GET_SIZE(indexes); k++) {
        pgvc_buf_puts(&b, PyUnicode_AsUTF8(PyList_GET_ITEM(indexes, k)));
        if (flush_to(out, &b) < 0)
            goto error;
    }
    if (comment) {
        pgvc_buf_puts(&b, "COMMENT ON ");
        pgvc_buf_puts(&b, rel_word(kind));
        pgvc_buf_puts(&b, " ");
        pgvc_buf_qualified(&b, schema, name);
        pgvc_buf_puts(&b, " IS ");
        pgvc_buf_literal(&b, comment);
        if (flush_to(out, &b) < 0)
            goto error;
    }
    if (grants_into(out, schema, name, kind, acl, owner) < 0)
        goto error;
    pgvc_buf_free(&b);
    return out;
error:
    pgvc_buf_free(&b);
    Py_XDECREF(out);
    return NULL;
}

/* Length of the user's own text of a comment: everything before our stamp's line, without the
 * newlines that separate them; the whole comment when it has no stamp. *stamp (may be NULL)
 * gets where the stamp starts. */
static size_t user_part(const char *comment, const char **stamp)
{
    pgvc_stamp parsed;
    pgvc_parse_stamp(comment, strlen(comment), &parsed);
    if (stamp)
        *stamp = parsed.ours ? comment + parsed.at : NULL;
    return parsed.user_len;
}

PyObject *pgvc_comment_statement(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"schema", "name", "kind", "old", "new", NULL};
    const char *schema, *name, *kind_s, *old, *new_, *stamp = NULL;
    size_t old_len, new_len;
    int kind;
    pgvc_buf text, b;
    PyObject *out = NULL;
    (void)module;
    if (pgvc_check_text_args("comment_statement", args, kwargs, kwlist, 0) < 0 ||
        !PyArg_ParseTupleAndKeywords(args, kwargs, "zsszz:comment_statement", kwlist, &schema,
                                     &name, &kind_s, &old, &new_))
        return NULL;
    if ((kind = parse_kind(kind_s)) < 0)
        return NULL;
    if (!old || !(old_len = user_part(old, NULL)))
        Py_RETURN_NONE;
    new_len = new_ ? user_part(new_, &stamp) : 0;
    if (new_len == old_len && !strncmp(new_, old, old_len))
        Py_RETURN_NONE;
    pgvc_buf_init(&text);
    pgvc_buf_init(&b);
    pgvc_buf_put(&text, old, old_len);
    if (stamp) {
        pgvc_buf_puts(&text, "\n");
        pgvc_buf_puts(&text, stamp);
    }
    pgvc_buf_puts(&b, "COMMENT ON ");
    pgvc_buf_puts(&b, rel_word(kind));
    pgvc_buf_puts(&b, " ");
    pgvc_buf_qualified(&b, schema, name);
    pgvc_buf_puts(&b, " IS ");
    if (text.oom) {
        PyErr_NoMemory();
        goto exit;
    }
    pgvc_buf_literal(&b, text.data);
    out = pgvc_buf_to_str(&b);
exit:
    pgvc_buf_free(&text);
    pgvc_buf_free(&b);
    return out;
}

/* ---- the check after migrate renamed something ------------------------------------------------ */

/* A declaration's SQL as a plain view beside its object, whatever its kind: the server resolves
 * every name and column as for the real one, and a plain view needs no storage (a materialized
 * view WITH NO DATA creates and unlinks a file: about twice the cost, benchmarks/
 * buildcheck_bench.py). */

/* Characters (not bytes) of a buffer: servers report positions in characters. */
static Py_ssize_t char_count(const pgvc_buf *b)
{
    Py_ssize_t n = 0;
    for (size_t i = 0; i < b->len; i++)
        if (((unsigned char)b->data[i] & 0xC0) != 0x80)
            n++;
    return n;
}

PyObject *pgvc_build_check_statement(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"schema", "name", "sql", NULL};
    const char *schema, *name, *sql;
    Py_ssize_t sql_len = 0, offset;
    char tmp[PGVC_NAMEDATALEN];
    pgvc_buf b;
    PyObject *text = NULL, *out = NULL;
    (void)module;
    if (pgvc_check_text_args("build_check_statement", args, kwargs, kwlist, 0) < 0 ||
        !PyArg_ParseTupleAndKeywords(args, kwargs, "zss#:build_check_statement", kwlist, &schema,
                                     &name, &sql, &sql_len))
        return NULL;
    if ((Py_ssize_t)strlen(sql) != sql_len) {
        PyErr_SetString(PyExc_ValueError, "build_check_statement: sql contains a NUL byte");
        return NULL;
    }
    pgvc_buf_init(&b);
    pgvc_derived_name(tmp, name, "_pgvc_check");
    pgvc_buf_puts(&b, "CREATE VIEW ");
    pgvc_buf_qualified(&b, schema, tmp);
    pgvc_buf_puts(&b, " AS\n");
    offset = b.oom ? 0 : char_count(&b);
    pgvc_buf_puts(&b, sql);
    if (!(text = pgvc_buf_to_str(&b)))
        goto exit;
    out = Py_BuildValue("(On)", text, offset);
exit:
    Py_XDECREF(text);
    pgvc_buf_free(&b);
    return out;
}
