/* stamp.c: reading and writing our stamp in an object's COMMENT (stamp.h says its shape). */
#include "stamp.h"

#include <string.h>

/* The first occurrence of needle[0..n) in [p, end), or NULL. */
static const char *find(const char *p, const char *end, const char *needle, size_t n)
{
    for (; (size_t)(end - p) >= n; p++)
        if (*p == *needle && !memcmp(p, needle, n))
            return p;
    return NULL;
}

/* Where the stamp's line starts: the last marker at the start of a line and followed by
 * " body=". NULL when there is none. */
static const char *find_mark(const char *text, const char *end)
{
    static const char mark[] = PGVC_MARK " body=";
    const char *p, *next, *found = NULL;
    for (p = text; (next = find(p, end, mark, sizeof mark - 1)); p = next + 1)
        if (next == text || next[-1] == '\n')
            found = next;
    return found;
}

/* One field's value, from p up to a space, newline, NUL, the end or PGVC_STAMP_FIELD bytes. */
static void copy_field(char out[PGVC_STAMP_FIELD + 1], const char *p, const char *end)
{
    size_t n = 0;
    while (n < PGVC_STAMP_FIELD && p + n < end && p[n] && p[n] != ' ' && p[n] != '\n')
        n++;
    memcpy(out, p, n);
    out[n] = '\0';
}

/* The fields: every "name=" that follows a space after the marker (a later one wins). */
static void read_fields(const char *mark, const char *end, pgvc_stamp *out)
{
    static const struct {
        const char *name;
        size_t len;
        size_t offset;
    } fields[] = {
        {"body=", 5, offsetof(pgvc_stamp, body)},
        {"idx=", 4, offsetof(pgvc_stamp, idx)},
        {"def=", 4, offsetof(pgvc_stamp, def)},
    };
    static const char pending[] = "pending=1";
    for (const char *p = mark; (p = memchr(p, ' ', (size_t)(end - p)));) {
        p++;
        for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++)
            if ((size_t)(end - p) >= fields[k].len && !memcmp(p, fields[k].name, fields[k].len))
                copy_field((char *)out + fields[k].offset, p + fields[k].len, end);
        if ((size_t)(end - p) >= sizeof pending - 1 && !memcmp(p, pending, sizeof pending - 1)) {
            const char *after = p + sizeof pending - 1;
            if (after == end || *after == ' ' || *after == '\n' || !*after)
                out->pending = 1;
        }
    }
}

void pgvc_parse_stamp(const char *text, size_t len, pgvc_stamp *out)
{
    const char *end, *mark;
    memset(out, 0, sizeof *out);
    if (!text)
        return;
    end = text + len;
    out->user_len = out->at = len;
    if (!(mark = find_mark(text, end)))
        return;
    out->ours = 1;
    out->at = (size_t)(mark - text);
    out->user_len = out->at;
    while (out->user_len && text[out->user_len - 1] == '\n')
        out->user_len--;
    read_fields(mark, end, out);
}

void pgvc_stamp_write(pgvc_buf *b, const char *user, size_t user_len, const char *body_fp,
                      const char *idx_fp)
{
    while (user && user_len && user[user_len - 1] == '\n') /* the first stamp as every later one */
        user_len--;
    if (user && user_len) {
        pgvc_buf_put(b, user, user_len);
        pgvc_buf_puts(b, "\n");
    }
    pgvc_buf_puts(b, PGVC_MARK " body=");
    pgvc_buf_puts(b, body_fp);
    pgvc_buf_puts(b, " idx=");
    pgvc_buf_puts(b, idx_fp);
}
