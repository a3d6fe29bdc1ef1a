/* sqlgen.h: all SQL text. Identifiers reach SQL only through pgvc_buf_ident (PostgreSQL's
 * quote_ident rules) and values only through pgvc_buf_literal. */
#ifndef PGVC_SQLGEN_H
#define PGVC_SQLGEN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

#define PGVC_NAMEDATALEN 64 /* identifiers are at most 63 bytes */

typedef struct {
    char *data;
    size_t len, cap;
    int oom;
} pgvc_buf;

void pgvc_buf_init(pgvc_buf *b);
void pgvc_buf_free(pgvc_buf *b);
void pgvc_buf_reset(pgvc_buf *b);
void pgvc_buf_put(pgvc_buf *b, const char *s, size_t n);
void pgvc_buf_puts(pgvc_buf *b, const char *s);
/* Identifier, quoted only when quote_ident() would quote it. */
void pgvc_buf_ident(pgvc_buf *b, const char *ident);
/* "schema"."name" (schema omitted when NULL). */
void pgvc_buf_qualified(pgvc_buf *b, const char *schema, const char *name);
/* A string literal as PQescapeLiteral writes it for standard_conforming_strings = on. */
void pgvc_buf_literal(pgvc_buf *b, const char *s);
/* NULL with MemoryError set on allocation failure. */
PyObject *pgvc_buf_to_str(pgvc_buf *b);

int pgvc_ident_needs_quotes(const char *ident);

/* Split a Django db_table into schema (may come back empty) and name.
 * Accepts `name`, `schema.name` and the quoted forms `"a.b"` / `"s"."n"`.
 * RAISES_NEG: -1 when malformed. */
int pgvc_split_table(const char *db_table, char *schema, size_t schema_cap, char *name,
                     size_t name_cap, const char **why);

/* REFRESH MATERIALIZED VIEW [CONCURRENTLY] of a Django db_table, appended to b.
 * RAISES_NEG: -1 when db_table is malformed (*why says how; nothing appended). */
int pgvc_refresh_sql(pgvc_buf *b, const char *db_table, int concurrently, const char **why);

/* A list of column names ("a, b", "\"A b\", c"): bare names folded to lower case as
 * PostgreSQL does, quoted ones taken as written. Appends each, quoted, separated by ", ".
 * Returns the number of columns, or -1 with *why set when the text is anything else. */
int pgvc_parse_columns(const char *text, pgvc_buf *out, const char **why);

/* A derived identifier: base + suffix, within 63 bytes. When too long, base is cut at a UTF-8
 * boundary and an 8-digit hash of the full untruncated name keeps distinct names distinct. */
void pgvc_derived_name(char out[PGVC_NAMEDATALEN], const char *base, const char *suffix);

/* Turn one aclitem text (grantee=privileges/grantor, a star after a privilege letter for WITH GRANT OPTION) into GRANT statements on `target`
 * (an already quoted relation name), appended to b with a trailing ";\n". Returns 0, or -1 on a
 * malformed item or no memory (nothing appended: only whole statements ever are). */
int pgvc_acl_to_grants(pgvc_buf *b, const char *aclitem, const char *target);

#endif
