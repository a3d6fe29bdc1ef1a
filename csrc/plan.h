/* plan.h: the sync planner. Declared views + one catalog snapshot -> ordered actions. */
#ifndef PGVC_PLAN_H
#define PGVC_PLAN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "state.h"

/* _core.plan(decls, catalog, *, force, update, check_sql_changed, restore_dependants,
 *            build_beside, recreate, chain, no_data) -> dict. Returns NULL with an exception set.
 * no_data: every materialized view built WITH NO DATA and no refresh, for a dry run. */
PyObject *pgvc_plan(pgvc_state *st, PyObject *args, PyObject *kwargs);

/* _core.PlanAction (the action record) and _core.DECL_FIELDS (the order of a declaration
 * tuple's fields), added to the module. RAISES_NEG. */
int pgvc_plan_add_types(PyObject *module, pgvc_state *st);

/* _core.catalog_sql() -> str: the one catalog query the planner reads. */
PyObject *pgvc_catalog_sql(void);

/* PGVC_MARK, the marker that starts our part of an object's comment. */
#include "stamp.h"

#endif
