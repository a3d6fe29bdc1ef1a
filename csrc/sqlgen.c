/* sqlgen.c: identifier quoting, literals, name parsing and derived names. */
#include "sqlgen.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "keywords.h"

void pgvc_buf_init(pgvc_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

void pgvc_buf_free(pgvc_buf *b)
{
    free(b->data);
    pgvc_buf_init(b);
}

void pgvc_buf_reset(pgvc_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int reserve(pgvc_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1, cap;
    char *p;
    if (b->oom)
        return -1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    if (!(p = realloc(b->data, cap))) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void pgvc_buf_put(pgvc_buf *b, const char *s, size_t n)
{
    if (reserve(b, n) < 0)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void pgvc_buf_puts(pgvc_buf *b, const char *s) { pgvc_buf_put(b, s, strlen(s)); }

static int kwcmp(const void *key, const void *item)
{
    return strcmp((const char *)key, *(const char *const *)item);
}

int pgvc_ident_needs_quotes(const char *ident)
{
    const unsigned char *p = (const unsigned char *)ident;
    if (!(*p >= 'a' && *p <= 'z') && *p != '_')
        return 1;
    for (; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return 1;
    return bsearch(ident, pgvc_keywords, PGVC_N_KEYWORDS, sizeof(char *), kwcmp) != NULL;
}

void pgvc_buf_ident(pgvc_buf *b, const char *ident)
{
    if (!pgvc_ident_needs_quotes(ident)) {
        pgvc_buf_puts(b, ident);
        return;
    }
    pgvc_buf_put(b, "\"", 1);
    for (const char *p = ident; *p; p++) {
        if (*p == '"')
            pgvc_buf_put(b, "\"", 1);
        pgvc_buf_put(b, p, 1);
    }
    pgvc_buf_put(b, "\"", 1);
}

void pgvc_buf_qualified(pgvc_buf *b, const char *schema, const char *name)
{
    if (schema && *schema) {
        pgvc_buf_ident(b, schema);
        pgvc_buf_put(b, ".", 1);
    }
    pgvc_buf_ident(b, name);
}

void pgvc_buf_literal(pgvc_buf *b, const char *s)
{
    if (strchr(s, '\\'))
        pgvc_buf_put(b, " E", 2);
    pgvc_buf_put(b, "'", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '\'' || *p == '\\')
            pgvc_buf_put(b, p, 1);
        pgvc_buf_put(b, p, 1);
    }
    pgvc_buf_put(b, "'", 1);
}

PyObject *pgvc_buf_to_str(pgvc_buf *b)
{
    if (b->oom)
        return PyErr_NoMemory();
    return PyUnicode_FromStringAndSize(b->data ? b->data : "", (Py_ssize_t)b->len);
}

/* Read one identifier from *pp into out: a quoted one ("a""b") or a bare run up to stop. */
static int read_part(const char **pp, char *out, size_t cap, int bare_stops_at_dot,
                     const char **why)
{
    const char *p = *pp;
    size_t n = 0;
    if (*p == '"') {
        p++;
        for (;;) {
            if (!*p) {
                *why = "unterminated quoted identifier";
                return -1;
            }
            if (*p == '"') {
                if (p[1] != '"')
                    break;
                p++;
            }
            if (n + 1 >= cap) {
                *why = "identifier longer than 63 bytes";
                return -1;
            }
            out[n++] = *p++;
        }
        p++; /* closing quote */
    } else {
        while (*p && !(bare_stops_at_dot && *p == '.')) {
            if (*p == '"') {
                *why = "stray double quote";
                return -1;
            }
            if (n + 1 >= cap) {
                *why = "identifier longer than 63 bytes";
                return -1;
            }
            out[n++] = *p++;
        }
    }
    if (n == 0) {
        *why = "empty identifier";
        return -1;
    }
    out[n] = '\0';
    *pp = p;
    return 0;
}

int pgvc_split_table(const char *db_table, char *schema, size_t schema_cap, char *name,
                     size_t name_cap, const char **why)
{
    const char *p = db_table;
    schema[0] = '\0';
    if (read_part(&p, name, name_cap, 1, why) < 0)
        return -1;
    if (*p == '.') {
        size_t n = strlen(name);
        if (n >= schema_cap) {
            *why = "schema name longer than 63 bytes";
            return -1;
        }
        memcpy(schema, name, n + 1);
        p++;
        /* After the schema, a bare name runs to the end (dots included). */
        if (read_part(&p, name, name_cap, 0, why) < 0)
            return -1;
    }
    if (*p) {
        *why = "unexpected text after the name";
        return -1;
    }
    return 0;
}

void pgvc_derived_name(char out[PGVC_NAMEDATALEN], const char *base, const char *suffix)
{
    size_t nb = strlen(base), ns = strlen(suffix);
    if (nb + ns <= PGVC_NAMEDATALEN - 1) {
        memcpy(out, base, nb);
        memcpy(out + nb, suffix, ns + 1);
        return;
    }
    {
        pgvc_hash h;
        char hex[33];
        size_t keep;
        pgvc_hash_init(&h, 63);
        pgvc_hash_str(&h, base);
        pgvc_hash_str(&h, suffix);
        pgvc_hash_hex(&h, hex);
        if (ns > 40) { /* keep the suffix readable but bounded */
            ns = 40;
            /* A long suffix is cut too: never inside a UTF-8 sequence (the hash above covers
             * all of it, so names stay distinct). */
            while (ns > 0 && ((unsigned char)suffix[ns] & 0xC0) == 0x80)
                ns--;
        }
        keep = PGVC_NAMEDATALEN - 1 - ns - 9;
        if (keep > nb)
            keep = nb;
        while (keep > 0 && ((unsigned char)base[keep] & 0xC0) == 0x80)
            keep--; /* do not cut a UTF-8 sequence */
        memcpy(out, base, keep);
        out[keep] = '_';
        memcpy(out + keep + 1, hex, 8);
        memcpy(out + keep + 9, suffix, ns);
        out[keep + 9 + ns] = '\0';
    }
}

static const struct {
    char code;
    const char *privilege;
} privileges[] = {
    {'r', "SELECT"},   {'a', "INSERT"},     {'w', "UPDATE"},  {'d', "DELETE"},
    {'D', "TRUNCATE"}, {'x', "REFERENCES"}, {'t', "TRIGGER"}, {'m', "MAINTAIN"},
};

/* Read a possibly quoted role name from an aclitem ending at one of stops. NULL when the name
 * does not fit in cap bytes or its quote is not closed. */
static const char *acl_role(const char *p, const char *stops, char *out, size_t cap)
{
    size_t n = 0;
    if (*p == '"') {
        p++;
        while (*p && !(*p == '"' && p[1] != '"')) {
            if (*p == '"')
                p++;
            if (n + 1 >= cap)
                return NULL;
            out[n++] = *p;
            p++;
        }
        if (*p != '"')
            return NULL;
        p++;
    } else {
        while (*p && !strchr(stops, *p)) {
            if (n + 1 >= cap)
                return NULL;
            out[n++] = *p;
            p++;
        }
    }
    out[n] = '\0';
    return p;
}

int pgvc_acl_to_grants(pgvc_buf *b, const char *aclitem, const char *target)
{
    char grantee[256];
    pgvc_buf all;
    const char *p = acl_role(aclitem, "=", grantee, sizeof grantee);
    int rc = -1;
    if (!p || *p != '=')
        return -1;
    /* Written aside and appended only once the whole item has been read: a malformed item
     * appends nothing, never a partial GRANT. */
    pgvc_buf_init(&all);
    for (p++; *p && *p != '/'; p++) {
        const char *priv = NULL;
        int grant_option = p[1] == '*';
        for (size_t i = 0; i < sizeof privileges / sizeof privileges[0]; i++)
            if (privileges[i].code == *p)
                priv = privileges[i].privilege;
        if (!priv)
            goto exit;
        pgvc_buf_puts(&all, "GRANT ");
        pgvc_buf_puts(&all, priv);
        pgvc_buf_puts(&all, " ON ");
        pgvc_buf_puts(&all, target);
        pgvc_buf_puts(&all, " TO ");
        if (grantee[0])
            pgvc_buf_ident(&all, grantee);
        else
            pgvc_buf_puts(&all, "PUBLIC");
        if (grant_option) {
            pgvc_buf_puts(&all, " WITH GRANT OPTION");
            p++;
        }
        pgvc_buf_puts(&all, ";\n");
    }
    if (all.oom)
        goto exit;
    if (all.len)
        pgvc_buf_put(b, all.data, all.len);
    rc = 0;
exit:
    pgvc_buf_free(&all);
    return rc;
}

int pgvc_refresh_sql(pgvc_buf *b, const char *db_table, int concurrently, const char **why)
{
    char schema[PGVC_NAMEDATALEN], name[PGVC_NAMEDATALEN];
    if (pgvc_split_table(db_table, schema, sizeof schema, name, sizeof name, why) < 0)
        return -1;
    pgvc_buf_puts(b, concurrently ? "REFRESH MATERIALIZED VIEW CONCURRENTLY "
                                  : "REFRESH MATERIALIZED VIEW ");
    pgvc_buf_qualified(b, schema[0] ? schema : NULL, name);
    return 0;
}

/* Is c a byte that may continue a bare identifier (letters, digits, _, $, any non-ASCII)? */
static int ident_byte(unsigned char c, int first)
{
    if (c >= 0x80 || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return !first && ((c >= '0' && c <= '9') || c == '$');
}

int pgvc_parse_columns(const char *text, pgvc_buf *out, const char **why)
{
    const char *p = text;
    char name[PGVC_NAMEDATALEN];
    int count = 0;
    for (;;) {
        size_t n = 0;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (*p == '"') {
            if (read_part(&p, name, sizeof name, 0, why) < 0)
                return -1;
        } else {
            if (!ident_byte((unsigned char)*p, 1)) {
                *why = *p ? "a column name must be an identifier" : "empty column name";
                return -1;
            }
            while (ident_byte((unsigned char)*p, 0)) {
                if (n + 1 >= sizeof name) {
                    *why = "column name longer than 63 bytes";
                    return -1;
                }
                /* Unquoted, PostgreSQL folds ASCII letters to lower case. */
                name[n++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
                p++;
            }
            name[n] = '\0';
        }
        if (count++)
            pgvc_buf_puts(out, ", ");
        pgvc_buf_ident(out, name);
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (!*p)
            return count;
        if (*p != ',') {
            *why = "only column names separated by commas are allowed";
            return -1;
        }
        p++;
    }
}
