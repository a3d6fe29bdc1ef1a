/* ddl_probe.c: the adoption probe (adopt.py). An object of a declaration's name that carries no
 * stamp of ours is compared with what the declaration would build: the declaration created
 * beside it under a temporary name, WITH NO DATA, with its indexes, and one query comparing the
 * two as PostgreSQL renders them (definition, tablespace, index signatures). The caller runs
 * them in a savepoint it always rolls back. */
#include "ddl.h"

#include <stdio.h>

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
        if (!pgvc_ddl_write_index(P, d, k, d->schema, tmp, "_pgvc_probe"))
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
