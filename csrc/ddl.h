/* ddl.h: the statements the planner emits, each appended to P->actions with the lock it takes
 * and its phase. ddl.c holds one object's statements and the building blocks the others share;
 * ddl_chain.c a chain's, ddl_defer.c deferred rebuilds', ddl_probe.c the adoption probe. Only
 * the planner (plan.c, plan_defer.c) and these files include it. */
#ifndef PGVC_DDL_H
#define PGVC_DDL_H

#include "plan_int.h"

static inline const char *pgvc_rel_word(char kind)
{
    return kind == 'm' ? "MATERIALIZED VIEW" : "VIEW";
}

/* ---- ddl.c: one object's statements, and the fingerprints. Each RAISES_NEG. */
int pgvc_ddl_create_schema(Plan *P, Py_ssize_t i);
int pgvc_ddl_build_beside(Plan *P, Py_ssize_t i);
int pgvc_ddl_drop(Plan *P, Py_ssize_t it);
int pgvc_ddl_restore(Plan *P, Py_ssize_t it);
int pgvc_ddl_create(Plan *P, Py_ssize_t i);
int pgvc_ddl_replace(Plan *P, Py_ssize_t i);
int pgvc_ddl_swap(Plan *P, Py_ssize_t i);
int pgvc_ddl_reindex(Plan *P, Py_ssize_t i);
int pgvc_ddl_refresh(Plan *P, Py_ssize_t i);
int pgvc_ddl_swap_from(Plan *P, Py_ssize_t i, const char *suffix);
/* One DO block that stamps every object the plan creates or changes, and every new waiting
 * version (marked pending); nothing when there is none. */
int pgvc_ddl_stamp(Plan *P);

/* ---- ddl.c: the building blocks the other ddl*.c files share. */
/* One action from the buffer's SQL (the buffer emptied). RAISES_NEG. */
int pgvc_ddl_emit(Plan *P, const char *op, Py_ssize_t decl, const char *lock, const char *target,
                  int phase, Py_ssize_t sql_offset);
/* CREATE [OR REPLACE] ... AS <sql> into the buffer: returns the offset of the view's SQL. */
Py_ssize_t pgvc_ddl_write_create(Plan *P, Decl *d, const char *schema, const char *name,
                                 int replace, int with_data);
/* Declaration i created as schema.name, emitted as `op` (WITH DATA when its data must stay
 * available). RAISES_NEG. */
int pgvc_ddl_create_in(Plan *P, Py_ssize_t i, const char *schema, const char *name, int phase,
                       const char *op, const char *lock);
/* Index k of a declaration (-1: its concurrent index) on schema.table into the buffer, named
 * with `suffix`; 0 when there is no such index. */
int pgvc_ddl_write_index(Plan *P, Decl *d, Py_ssize_t k, const char *schema, const char *table,
                         const char *suffix);
/* Every declared index of declaration i on schema.table, each emitted. RAISES_NEG. */
int pgvc_ddl_indexes_in(Plan *P, Py_ssize_t i, const char *schema, const char *table,
                        const char *suffix, int phase, const char *op, const char *lock);
/* The grants and owner of the object n a rebuild replaces, on the new one. RAISES_NEG. */
int pgvc_ddl_grants(Plan *P, Py_ssize_t decl, Node *n, char kind, const char *target);
/* A dollar-quote tag ($pgvcN$, into tag[size]) that occurs in neither a nor b (b may be NULL). */
void pgvc_ddl_dollar_tag(char *tag, size_t size, const char *a, const char *b);

/* ---- ddl_chain.c: a chain built in the build schema, checked, moved in. Each RAISES_NEG. */
int pgvc_ddl_chain_build(Plan *P);
int pgvc_ddl_chain_swap(Plan *P, Py_ssize_t i);
int pgvc_ddl_drop_build_schema(Plan *P);
/* The build schema created and put first on the search_path (phase 0); taken off again. */
int pgvc_ddl_build_schema_on(Plan *P);
int pgvc_ddl_build_path_off(Plan *P);

/* ---- ddl_defer.c: the statements of deferred rebuilds. Each RAISES_NEG. */
int pgvc_ddl_build_pending(Plan *P, Py_ssize_t i);
int pgvc_ddl_build_pending_linked(Plan *P);
int pgvc_ddl_drop_pending(Plan *P, Py_ssize_t node);
int pgvc_ddl_pending_swap(Plan *P, Py_ssize_t i);

/* ---- ddl_probe.c: the adoption probe of declaration i (its object carries no stamp of ours): a
 * new tuple (i, statements, check). The statements create the declaration beside the object
 * under a temporary name (WITH NO DATA) with its indexes; check returns one row (same
 * definition, same indexes). The caller runs them in a savepoint it always rolls back. NULL on
 * error. */
PyObject *pgvc_ddl_probe(Plan *P, Py_ssize_t i);

#endif
