/* aside.h: SQL text for setting views aside around migrate (django_pgviews_c/aside.py). */
#ifndef PGVC_ASIDE_H
#define PGVC_ASIDE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Each returns NULL with an exception set on bad arguments or memory exhaustion. */

/* aside_sql() -> str: the views that read given columns of given tables, recursively. */
PyObject *pgvc_aside_sql(PyObject *module, PyObject *Py_UNUSED(ignored));
/* aside_relations_sql() -> str: oid, kind, populated flag and comment of named relations. */
PyObject *pgvc_aside_relations_sql(PyObject *module, PyObject *Py_UNUSED(ignored));
/* aside_lock_sql() -> str: the sync's transaction-level advisory lock (one parameter). */
PyObject *pgvc_aside_lock_sql(PyObject *module, PyObject *Py_UNUSED(ignored));
/* aside_statement(op, schema, name, kind) -> str: op is "drop" or "refresh". */
PyObject *pgvc_aside_statement(PyObject *module, PyObject *args, PyObject *kwargs);
/* restore_statements(schema, name, kind, definition, populated, tablespace, indexes, comment,
 * acl, owner) -> list[str]: re-create a recorded view as it was. */
PyObject *pgvc_restore_statements(PyObject *module, PyObject *args, PyObject *kwargs);
/* grant_statements(schema, name, kind, acl, owner) -> list[str]. */
PyObject *pgvc_grant_statements(PyObject *module, PyObject *args, PyObject *kwargs);
/* comment_statement(schema, name, kind, old, new) -> str | None: the user's text of the old
 * comment put back above the new comment's stamp; None when there is nothing to put back. */
PyObject *pgvc_comment_statement(PyObject *module, PyObject *args, PyObject *kwargs);
/* build_check_statement(schema, name, sql) -> (str, int): CREATE VIEW of a declaration's SQL
 * beside its object (under derived_name(name, "_pgvc_check"), a plain view whatever the
 * declaration's kind), for a transaction that is rolled back; the int is the offset (in
 * characters) of the SQL in it, to map the server's error position back. */
PyObject *pgvc_build_check_statement(PyObject *module, PyObject *args, PyObject *kwargs);

#endif
