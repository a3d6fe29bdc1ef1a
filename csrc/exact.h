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
