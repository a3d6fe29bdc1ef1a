/* module.c: django_pgviews_c._core, wired together: multi-phase init, module state, methods. */
#include "aside.h"
#include "errors.h"
#include "freshness.h"
#include "graph.h"
#include "hash.h"
#include "plan.h"
#include "pqpath.h"
#include "queries.h"
#include "sqlgen.h"

#include <pg_config.h>
#include <string.h>

static pgvc_state *get_state(PyObject *module) { return (pgvc_state *)PyModule_GetState(module); }

static PyObject *quote_ident(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"name", NULL};
    pgvc_text name = PGVC_TEXT("quote_ident", "name");
    pgvc_buf b;
    PyObject *out;
    (void)module;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&:quote_ident", kwlist, pgvc_text_arg, &name))
        return NULL;
    pgvc_buf_init(&b);
    pgvc_buf_ident(&b, name.s);
    out = pgvc_buf_to_str(&b);
    pgvc_buf_free(&b);
    return out;
}

static PyObject *split_table(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"db_table", NULL};
    pgvc_text db_table = PGVC_TEXT("split_table", "db_table");
    const char *why = NULL;
    char schema[PGVC_NAMEDATALEN], name[PGVC_NAMEDATALEN];
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&:split_table", kwlist, pgvc_text_arg,
                                     &db_table))
        return NULL;
    if (pgvc_split_table(db_table.s, schema, sizeof schema, name, sizeof name, &why) < 0)
        return pgvc_raise_invalid_name(get_state(module), "db_table", db_table.s, db_table.len,
                                       why);
    if (!schema[0])
        return Py_BuildValue("(Os)", Py_None, name);
    return Py_BuildValue("(ss)", schema, name);
}

static PyObject *qualified_name(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"schema", "name", NULL};
    pgvc_text schema = PGVC_TEXT_OR_NONE("qualified_name", "schema"),
              name = PGVC_TEXT("qualified_name", "name");
    pgvc_buf b;
    PyObject *out;
    (void)module;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&:qualified_name", kwlist, pgvc_text_arg,
                                     &schema, pgvc_text_arg, &name))
        return NULL;
    pgvc_buf_init(&b);
    pgvc_buf_qualified(&b, schema.s, name.s);
    out = pgvc_buf_to_str(&b);
    pgvc_buf_free(&b);
    return out;
}

static PyObject *quote_literal(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"value", NULL};
    pgvc_text value = PGVC_TEXT("quote_literal", "value");
    pgvc_buf b;
    PyObject *out;
    (void)module;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&:quote_literal", kwlist, pgvc_text_arg,
                                     &value))
        return NULL;
    pgvc_buf_init(&b);
    pgvc_buf_literal(&b, value.s);
    out = pgvc_buf_to_str(&b);
    pgvc_buf_free(&b);
    return out;
}

static PyObject *derived_name(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"base", "suffix", NULL};
    pgvc_text base = PGVC_TEXT("derived_name", "base"),
              suffix = PGVC_TEXT("derived_name", "suffix");
    char out[PGVC_NAMEDATALEN];
    (void)module;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&:derived_name", kwlist, pgvc_text_arg,
                                     &base, pgvc_text_arg, &suffix))
        return NULL;
    pgvc_derived_name(out, base.s, suffix.s);
    return PyUnicode_FromString(out);
}

static PyObject *fingerprint(PyObject *module, PyObject *args)
{
    pgvc_hash h;
    char hex[33];
    (void)module;
    pgvc_hash_init(&h, 0);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args); i++) {
        PyObject *a = PyTuple_GET_ITEM(args, i);
        const char *s = a == Py_None ? NULL : PyUnicode_AsUTF8(a);
        if (!s && a != Py_None)
            return NULL;
        pgvc_hash_str(&h, s);
    }
    pgvc_hash_hex(&h, hex);
    return PyUnicode_FromString(hex);
}

static PyObject *plan(PyObject *module, PyObject *args, PyObject *kwargs)
{
    return pgvc_plan(get_state(module), args, kwargs);
}

static PyObject *catalog_sql(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return pgvc_catalog_sql();
}

static PyObject *freshness_sql(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    return pgvc_freshness_sql(args, kwargs);
}

static PyObject *query_sql(PyObject *module, PyObject *args, PyObject *kwargs)
{
    return pgvc_query_sql(get_state(module), args, kwargs);
}

static PyObject *query_names(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return pgvc_query_names();
}

static PyObject *run_parallel(PyObject *module, PyObject *args, PyObject *kwargs)
{
    return pgvc_run_parallel(get_state(module), args, kwargs);
}

static PyObject *connect_loop(PyObject *module, PyObject *args, PyObject *kwargs)
{
    return pgvc_connect_loop(get_state(module), args, kwargs);
}

static PyObject *close_loop_connections(PyObject *module, PyObject *capsule)
{
    (void)module;
    return pgvc_close_loop_connections(capsule);
}

static PyObject *refresh_sql(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"db_table", "concurrently", NULL};
    pgvc_text t = PGVC_TEXT("refresh_sql", "db_table");
    const char *why = NULL;
    int concurrently = 0;
    pgvc_buf b;
    PyObject *out;
    t.nul_ok = 1; /* an InvalidNameError, as any name PostgreSQL cannot take */
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|p:refresh_sql", kwlist, pgvc_text_arg, &t,
                                     &concurrently))
        return NULL;
    if ((Py_ssize_t)strlen(t.s) != t.len)
        return pgvc_raise_invalid_name(get_state(module), "db_table", t.s, t.len,
                                       "contains a NUL byte");
    pgvc_buf_init(&b);
    if (pgvc_refresh_sql(&b, t.s, concurrently, &why) < 0) {
        pgvc_buf_free(&b);
        return pgvc_raise_invalid_name(get_state(module), "db_table", t.s, t.len, why);
    }
    out = pgvc_buf_to_str(&b);
    pgvc_buf_free(&b);
    return out;
}

static PyObject *populated_sql(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return pgvc_populated_sql();
}

static PyObject *lock_holders_sql(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return pgvc_lock_holders_sql();
}

static PyObject *libpq_version(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return pgvc_libpq_version();
}

#define KW (METH_VARARGS | METH_KEYWORDS)
#define CF(f) (PyCFunction)(void (*)(void))(f)

static PyMethodDef core_methods[] = {
    {"quote_ident", CF(quote_ident), KW,
     "quote_ident(name)\n--\n\nThe identifier as PostgreSQL's quote_ident() writes it."},
    {"quote_literal", CF(quote_literal), KW,
     "quote_literal(value)\n--\n\nA string literal, as PQescapeLiteral writes it."},
    {"split_table", CF(split_table), KW,
     "split_table(db_table)\n--\n\n(schema or None, name) of a Django db_table: name, "
     "schema.name, or their quoted forms."},
    {"qualified_name", CF(qualified_name), KW,
     "qualified_name(schema, name)\n--\n\nschema.name, each part quoted as needed."},
    {"derived_name", CF(derived_name), KW,
     "derived_name(base, suffix)\n--\n\nbase + suffix within 63 bytes; a hash keeps long "
     "names distinct."},
    {"fingerprint", fingerprint, METH_VARARGS,
     "fingerprint(*parts)\n--\n\n128-bit hash (hex) of the parts (str or None)."},
    {"plan", CF(plan), KW,
     "plan(decls, catalog, *, force=False, update=True, check_sql_changed=True, "
     "restore_dependants=False, build_beside=True, recreate=(), chain=True, no_data=False, "
     "adopt=None, create_schemas=False, prune=False, "
     "defer=None, swap_pending=None)"
     "\n--\n\n"
     "The sync plan: {'actions', 'statuses', 'reasons', 'order', 'current_schema', 'probes', "
     "'orphans', 'states', "
     "'columns', 'pending'}. defer: indexes of the declarations whose rebuild may wait beside the "
     "old "
     "object; swap_pending: indexes whose populated pending version is swapped in (nothing else "
     "changes)."},
    {"catalog_sql", catalog_sql, METH_NOARGS,
     "catalog_sql()\n--\n\nThe one catalog query plan() reads."},
    {"freshness_sql", CF(freshness_sql), KW,
     "freshness_sql(exact=False)\n--\n\nThe staleness catalog query (freshness.c); `exact` adds "
     "the exact mode's trigger and counter of each table."},
    {"query_sql", CF(query_sql), KW,
     "query_sql(name, table=None, ms=None, schema=None, tables=None)\n--\n\nThe text of the "
     "query `name` "
     "(queries.c): "
     "%s placeholders for the values the caller binds. ValueError for an unknown name."},
    {"query_names", (PyCFunction)query_names, METH_NOARGS,
     "query_names()\n--\n\nEvery name query_sql() knows."},
    {"run_parallel", CF(run_parallel), KW,
     "run_parallel(conninfo, statements, dependencies, priority, jobs, setup=None, "
     "on_event=None, session=None, guard=None, on_notice=None, lock_retries=10, "
     "lock_timeout_ms=200, last_lock_timeout_ms=10000, connections=None, on_refused=None)\n--\n\n"
     "Run statements over `jobs` connections, each as soon as its dependencies succeeded, "
     "highest priority (None: longest remaining chain) first; on_refused(opened, wanted, message) "
     "when the server refused some for its connection limit. Returns (state, seconds, error) "
     "each."},
    {"connect_loop", CF(connect_loop), KW,
     "connect_loop(conninfo, jobs, session=None, setup=None)\n--\n\n`jobs` connections made "
     "as run_parallel makes its own, from any thread, for run_parallel(..., connections=): "
     "their connects overlap other work. Closed when the result goes unless a run took them."},
    {"close_loop_connections", close_loop_connections, METH_O,
     "close_loop_connections(connections)\n--\n\nClose the connections connect_loop() made "
     "that no run took."},
    {"refresh_sql", CF(refresh_sql), KW,
     "refresh_sql(db_table, concurrently=False)\n--\n\nREFRESH MATERIALIZED VIEW "
     "[CONCURRENTLY] of a Django db_table, its parts quoted as needed."},
    {"populated_sql", populated_sql, METH_NOARGS,
     "populated_sql()\n--\n\nThe query saying, for the relation names in its one %s parameter "
     "(a text array), whether each materialized view is populated, in order."},
    {"lock_holders_sql", lock_holders_sql, METH_NOARGS,
     "lock_holders_sql()\n--\n\nThe query naming the sessions that hold a lock a statement on "
     "the view given as its one %s parameter waits for (on the view, or ACCESS EXCLUSIVE on a "
     "relation it reads, granted or queued, with the sessions a queued one waits behind): "
     "(pid, application_name, state, query, backend_type, mode, relation, granted, behind)."},
    {"aside_sql", pgvc_aside_sql, METH_NOARGS,
     "aside_sql()\n--\n\nThe views reading given columns of given tables, recursively, deepest "
     "first, with what restoring them needs."},
    {"aside_relations_sql", pgvc_aside_relations_sql, METH_NOARGS,
     "aside_relations_sql()\n--\n\nKind, populated flag and comment of named relations."},
    {"aside_lock_sql", pgvc_aside_lock_sql, METH_NOARGS,
     "aside_lock_sql()\n--\n\nThe sync's transaction-level advisory lock (one parameter)."},
    {"aside_statement", CF(pgvc_aside_statement), KW,
     "aside_statement(op, schema, name, kind)\n--\n\nDROP ('drop') or REFRESH ('refresh') of "
     "one view."},
    {"restore_statements", CF(pgvc_restore_statements), KW,
     "restore_statements(schema, name, kind, definition, populated, tablespace, indexes, comment, "
     "acl, owner)\n--\n\nThe statements that re-create a recorded view as it was."},
    {"grant_statements", CF(pgvc_grant_statements), KW,
     "grant_statements(schema, name, kind, acl, owner)\n--\n\nOne GRANT per privilege, then "
     "the owner."},
    {"comment_statement", CF(pgvc_comment_statement), KW,
     "comment_statement(schema, name, kind, old, new)\n--\n\nThe old comment's own text put "
     "back above the new stamp, or None."},
    {"build_check_statement", CF(pgvc_build_check_statement), KW,
     "build_check_statement(schema, name, sql)\n--\n\n(CREATE VIEW of `sql` beside the view "
     "under a derived name, offset of the SQL in it in characters): whether a declaration "
     "still builds, in a transaction rolled back."},
    {"libpq_version", libpq_version, METH_NOARGS,
     "libpq_version()\n--\n\nPQlibVersion() of the libpq this module links."},
    {NULL, NULL, 0, NULL},
};

static int core_exec(PyObject *module)
{
    pgvc_state *st = get_state(module);
    if (pgvc_state_load(module, st) < 0)
        return -1;
    st->GraphType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &pgvc_graph_spec, NULL);
    if (!st->GraphType || PyModule_AddType(module, st->GraphType) < 0)
        return -1;
    {
        PyObject *schedule = PyType_FromModuleAndSpec(module, &pgvc_schedule_spec, NULL);
        int rc = schedule ? PyModule_AddType(module, (PyTypeObject *)schedule) : -1;
        Py_XDECREF(schedule);
        if (rc < 0)
            return -1;
    }
    if (pgvc_plan_add_types(module, st) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "PG_VERSION_BUILT", PG_VERSION_NUM) < 0)
        return -1;
    return 0;
}

static int core_traverse(PyObject *module, visitproc visit, void *arg)
{
    return pgvc_state_traverse(get_state(module), visit, arg);
}

static int core_clear(PyObject *module)
{
    pgvc_state_clear(get_state(module));
    return 0;
}

static void core_free(void *module) { core_clear((PyObject *)module); }

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, core_exec},
#ifdef Py_mod_gil
    /* Graph.order() fills a cache on first use without a lock: the module needs the GIL. */
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "django_pgviews_c._core",
    .m_doc = "The C core of django-pgviews-c: dependency graph, SQL text, sync planner, libpq.",
    .m_size = sizeof(pgvc_state),
    .m_methods = core_methods,
    .m_slots = core_slots,
    .m_traverse = core_traverse,
    .m_clear = core_clear,
    .m_free = core_free,
};

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&core_module); }
