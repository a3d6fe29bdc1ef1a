/* exact.c: the exact staleness mode (django_pgviews_c/exact.py).
 *
 * A materialized view declared with staleness = "exact" is judged by counters that move in the
 * writers' own transactions: the sync puts on every table the view reads (the closure of
 * freshness.c) one AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE FOR EACH STATEMENT trigger,
 * named PGVC_EXACT_TRIGGER on every table, which calls one function. The function adds one to
 * the table's row of the counter table (PGVC_EXACT_TABLE, created by the app's migration 0003)
 * with an UPSERT, so two writers wait for each other only when they write the same table, and a
 * rolled-back write leaves the counter as it was. It is SECURITY DEFINER with a fixed
 * search_path: a role that may write the table but not the counter table still writes. */
#include "exact.h"

#include "freshness.h"

#include <Python.h>
#include <string.h>

/* OFFSET 0 keeps the LATERAL lookup from being flattened: joined, the planner hashed the whole of
 * pg_trigger (four rows per foreign key of the database) for each check and capture. */
void pgvc_exact_trigger_join(pgvc_buf *b, const char *alias)
{
    pgvc_buf_puts(b, " LEFT JOIN LATERAL (SELECT tg.oid FROM pg_catalog.pg_trigger tg"
                     " JOIN pg_catalog.pg_proc p ON p.oid = tg.tgfoid WHERE tg.tgrelid = ");
    pgvc_buf_puts(b, alias);
    pgvc_buf_puts(b, ".oid AND tg.tgname = ");
    pgvc_buf_literal(b, PGVC_EXACT_TRIGGER);
    pgvc_buf_puts(b, " AND p.proname = ");
    pgvc_buf_literal(b, PGVC_EXACT_FUNCTION);
    pgvc_buf_puts(b, " AND tg.tgenabled IN ('O', 'A') OFFSET 0) t ON true");
}

/* For the exact views %s (text[]): one row per table that one of them reads or that carries our
 * trigger: oid, name (regclass text), relkind, needed, has the trigger, the current role acts as
 * its owner, may create a trigger on it (TRIGGER privilege), its owner; then one row of relkind
 * '*': NULL, the counter table's schema (NULL: not migrated), whether the function exists
 * there, the current role. */
void pgvc_exact_state(pgvc_buf *b)
{
    pgvc_buf_puts(b, pgvc_closure_cte);
    pgvc_buf_puts(b, ", need AS (SELECT DISTINCT r.rel FROM reads r CROSS JOIN LATERAL (SELECT"
                     " c.relkind FROM pg_catalog.pg_class c WHERE c.oid = r.rel OFFSET 0) c"
                     " WHERE c.relkind IN ('r', 'p')), have AS (");
    pgvc_buf_puts(b, PGVC_EXACT_TRIGGERED);
    pgvc_buf_puts(b, "), counter AS (SELECT c.relnamespace FROM pg_catalog.pg_class c"
                     " WHERE c.oid = pg_catalog.to_regclass(");
    pgvc_buf_literal(b, PGVC_EXACT_TABLE);
    pgvc_buf_puts(
        b, "))"
           " SELECT c.oid::bigint, c.oid::pg_catalog.regclass::text, c.relkind::text,"
           "  c.oid IN (SELECT rel FROM need), c.oid IN (SELECT rel FROM have),"
           "  pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE'),"
           "  pg_catalog.has_table_privilege(c.oid, 'TRIGGER'),"
           "  pg_catalog.pg_get_userbyid(c.relowner)::text"
           " FROM (SELECT rel FROM need UNION SELECT rel FROM have) u"
           " CROSS JOIN LATERAL (SELECT c.oid, c.relkind, c.relowner FROM pg_catalog.pg_class c"
           "  WHERE c.oid = u.rel OFFSET 0) c"
           " UNION ALL"
           " SELECT NULL, (SELECT n.nspname::text FROM counter k JOIN pg_catalog.pg_namespace n"
           "  ON n.oid = k.relnamespace), '*',"
           "  EXISTS (SELECT 1 FROM counter k JOIN pg_catalog.pg_proc p"
           "   ON p.pronamespace = k.relnamespace AND p.pronargs = 0 AND p.proname = ");
    pgvc_buf_literal(b, PGVC_EXACT_FUNCTION);
    pgvc_buf_puts(b, "), NULL, NULL, NULL, current_user::text ORDER BY 2");
}

int pgvc_exact_function(pgvc_buf *b, const char *schema)
{
    if (strchr(schema, '$')) {
        PyErr_Format(PyExc_ValueError,
                     "the exact mode's counter table is in schema %s, whose name holds a '$': "
                     "move it to a schema without one",
                     schema);
        return -1;
    }
    pgvc_buf_puts(b, "CREATE FUNCTION ");
    pgvc_buf_qualified(b, schema, PGVC_EXACT_FUNCTION);
    pgvc_buf_puts(b, "() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
                     " SET search_path = pg_catalog, pg_temp AS $pgvc$ BEGIN INSERT INTO ");
    pgvc_buf_qualified(b, schema, PGVC_EXACT_TABLE);
    pgvc_buf_puts(
        b, " AS e (rel, writes) VALUES (TG_RELID::bigint, 1)"
           " ON CONFLICT (rel) DO UPDATE SET writes = e.writes + 1; RETURN NULL; END $pgvc$");
    return 0;
}

void pgvc_exact_trigger(pgvc_buf *b, const char *table, const char *schema)
{
    pgvc_buf_puts(b, "CREATE TRIGGER ");
    pgvc_buf_ident(b, PGVC_EXACT_TRIGGER);
    pgvc_buf_puts(b, " AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ");
    pgvc_buf_puts(b, table);
    pgvc_buf_puts(b, " FOR EACH STATEMENT EXECUTE FUNCTION ");
    pgvc_buf_qualified(b, schema, PGVC_EXACT_FUNCTION);
    pgvc_buf_puts(b, "()");
}

void pgvc_exact_untrigger(pgvc_buf *b, const char *table)
{
    pgvc_buf_puts(b, "DROP TRIGGER IF EXISTS ");
    pgvc_buf_ident(b, PGVC_EXACT_TRIGGER);
    pgvc_buf_puts(b, " ON ");
    pgvc_buf_puts(b, table);
}

void pgvc_exact_drop_function(pgvc_buf *b, const char *schema)
{
    pgvc_buf_puts(b, "DROP FUNCTION IF EXISTS ");
    pgvc_buf_qualified(b, schema, PGVC_EXACT_FUNCTION);
    pgvc_buf_puts(b, "()");
}

void pgvc_exact_forget(pgvc_buf *b, const char *schema)
{
    pgvc_buf_puts(b, "DELETE FROM ");
    pgvc_buf_qualified(b, schema, PGVC_EXACT_TABLE);
    pgvc_buf_puts(b, " WHERE rel = ANY(%s::bigint[])");
}
