/* exact.h: the exact staleness mode's statements: a counter table of the app's own, one trigger
 * function bumping it, one statement-level trigger per table an exact view reads. */
#ifndef PGVC_EXACT_H
#define PGVC_EXACT_H

#include "sqlgen.h"

#define PGVC_EXACT_TABLE "django_pgviews_c_exact"
#define PGVC_EXACT_FUNCTION "django_pgviews_c_exact_bump"
#define PGVC_EXACT_TRIGGER "pgviews_c_exact"

/* " LEFT JOIN LATERAL (...) t ON true": t.oid is the oid of our enabled trigger on the relation
 * `alias`.oid, NULL when there is none. */
/* The tables carrying our trigger, as rows of (rel): found from our function (by name, in any
 * schema: pg_proc's index) through the triggers that depend on it (pg_depend's index on the
 * referenced object) to each trigger by its oid. pg_trigger has no index on a trigger's name
 * alone: asked by name, it was read whole, four rows per foreign key of the database. A trigger
 * of our name always calls our function (the sync creates it so, and the function is dropped
 * only with its triggers). Shared by exact.c and the sync's catalog query (catalog.c). */
#define PGVC_EXACT_TRIGGERED                                                                       \
    "SELECT tg.tgrelid AS rel FROM pg_catalog.pg_proc p"                                           \
    " CROSS JOIN LATERAL (SELECT d.objid FROM pg_catalog.pg_depend d"                              \
    "  WHERE d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.refobjid = p.oid"      \
    "  AND d.refobjsubid = 0 AND d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass"         \
    "  OFFSET 0) d"                                                                                \
    " CROSS JOIN LATERAL (SELECT tg.tgrelid FROM pg_catalog.pg_trigger tg WHERE tg.oid = d.objid"  \
    "  AND tg.tgname = '" PGVC_EXACT_TRIGGER "' OFFSET 0) tg"                                      \
    " WHERE p.proname = '" PGVC_EXACT_FUNCTION "' AND p.pronargs = 0"

void pgvc_exact_trigger_join(pgvc_buf *b, const char *alias);

/* What the sync compares (query exact_state). */
void pgvc_exact_state(pgvc_buf *b);

/* CREATE FUNCTION of the trigger function in `schema` (the counter table's), quoted here.
 * RAISES_NEG: -1 (ValueError) for a schema name the function body cannot hold. */
int pgvc_exact_function(pgvc_buf *b, const char *schema);

/* CREATE TRIGGER on `table` (quoted) calling the function in `schema`. */
void pgvc_exact_trigger(pgvc_buf *b, const char *table, const char *schema);

/* DROP TRIGGER IF EXISTS of ours on `table` (quoted). */
void pgvc_exact_untrigger(pgvc_buf *b, const char *table);

/* DROP FUNCTION IF EXISTS of the trigger function in `schema` (migration 0003 backwards, once
 * every trigger is gone). */
void pgvc_exact_drop_function(pgvc_buf *b, const char *schema);

/* DELETE the counters of the tables %s (bigint[]) from the counter table in `schema`. */
void pgvc_exact_forget(pgvc_buf *b, const char *schema);

#endif
