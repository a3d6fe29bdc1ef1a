/* plan.h: the sync planner. Declared views + one catalog snapshot -> ordered actions. */
#ifndef PGVC_PLAN_H
#define PGVC_PLAN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "errors.h"

/* _core.plan(decls, catalog, *, force, update, check_sql_changed, restore_dependants,
 *            build_beside, recreate) -> dict. Returns NULL with an exception set. */
PyObject *pgvc_plan(pgvc_state *st, PyObject *args, PyObject *kwargs);

/* _core.catalog_sql() -> str: the one catalog query the planner reads. */
PyObject *pgvc_catalog_sql(void);

/* The marker that starts our part of an object's comment. */
#define PGVC_MARK "django-pgviews-c:1"

#endif
