/* historyfn.h: the refresh history's two server-side functions (the app's migration 0004), which
 * a recorded Model.refresh() calls in its one round trip. */
#ifndef PGVC_HISTORYFN_H
#define PGVC_HISTORYFN_H

#include "sqlgen.h"

#define PGVC_HISTORY_TABLE "django_pgviews_c_refresh"
#define PGVC_CAPTURE_FUNCTION "django_pgviews_c_capture"
#define PGVC_RECORD_FUNCTION "django_pgviews_c_record"
#define PGVC_RECORD_RUN_FUNCTION "django_pgviews_c_record_run"
#define PGVC_REFRESH_FUNCTION "django_pgviews_c_refresh"
#define PGVC_REFRESH_CAPTURE_FUNCTION "django_pgviews_c_refresh_capture"
#define PGVC_REFRESH_RECORD_FUNCTION "django_pgviews_c_refresh_record"

/* CREATE OR REPLACE FUNCTION of both, in `schema` (the history table's), reading the exact
 * mode's counter table `counter_table` (quoted, qualified); two statements. Appends to b. */
void pgvc_history_functions(pgvc_buf *b, const char *schema, const char *counter_table);
/* DROP FUNCTION IF EXISTS of both, in `schema` (migration 0004 backwards). */
void pgvc_history_drop_functions(pgvc_buf *b, const char *schema);
/* The calls the one round trip makes: the capture (parameters: the view's name, exact) and the
 * record (view, db_table, started_at, the view's name, the row count's size limit, concurrent,
 * plain_reason, keep, slack). */
/* The records of a refresh_views() run in one function (migration 0005), created in `schema`;
 * and its DROP FUNCTION IF EXISTS (0005 backwards). Append to b. */
void pgvc_history_run_function(pgvc_buf *b, const char *schema);
void pgvc_history_drop_run_function(pgvc_buf *b, const char *schema);
/* Its call (parameters: arrays of the views' labels, db_tables, started_at, durations, qualified
 * names, concurrent, plain_reasons, ok, sqlstates, messages, sources as JSON text; then the row
 * count's size limit, keep, slack). */
extern const char pgvc_history_record_run_call[];
extern const char pgvc_history_capture_call[];
extern const char pgvc_history_record_call[];
/* One call per refresh (migration 0007): CREATE OR REPLACE FUNCTION of the refresh function and
 * the capture and record it nests, in `schema`, reading the counter table `counter_table`
 * (quoted, qualified); their DROP FUNCTION IF EXISTS (0007 backwards). Append to b. */
void pgvc_history_refresh_function(pgvc_buf *b, const char *schema, const char *counter_table);
void pgvc_history_drop_refresh_function(pgvc_buf *b, const char *schema);
/* Its call (parameters: the view's name, concurrent, lock_timeout in ms, record, exact, label,
 * db_table, started_at, the row count's size limit, plain_reason, keep, slack). */
extern const char pgvc_history_refresh_call[];

#endif
