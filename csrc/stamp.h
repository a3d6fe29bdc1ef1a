/* stamp.h: our stamp in an object's COMMENT. The comment is the user's own text, then, on a line
 * of its own, the stamp:
 *
 *     django-pgviews-c:1 body=<fingerprint> idx=<fingerprint> rw=<xmin> def=<md5>
 *
 * (the waiting new version of a deferred rebuild has " pending=1" after idx=)
 *
 * body= and idx= are written by pgvc_stamp_write (ddl.c's stamp statement), rw= and def= by that
 * statement on the server. The parser is pure C (no Python call), so fuzz/fuzz_stamp.c feeds it
 * any bytes. */
#ifndef PGVC_STAMP_H
#define PGVC_STAMP_H

#include <stddef.h>

#include "sqlgen.h"

/* The marker that starts our part of an object's comment. */
#define PGVC_MARK "django-pgviews-c:1"

/* A field's value is at most this many bytes (an md5 or a 128-bit hash in hex). */
#define PGVC_STAMP_FIELD 32

typedef struct {
    int ours; /* the comment carries our stamp */
    size_t user_len; /* bytes of the user's own text: everything before the stamp's line, without
                        the newlines that separate them; the whole comment when it has no stamp */
    size_t at; /* where the stamp's line starts (the text's length when there is none) */
    char body[PGVC_STAMP_FIELD + 1], idx[PGVC_STAMP_FIELD + 1], def[PGVC_STAMP_FIELD + 1];
    int pending; /* " pending=1": the new version of a deferred rebuild (plan_defer.c) */
} pgvc_stamp;

/* Parse text[0..len) (NULL: no comment; no NUL terminator needed, inner NULs are ordinary
 * bytes). The stamp is the last line that starts with the marker followed by " body=": the
 * marker's words inside the user's own text (a comment that mentions this package) are theirs.
 * Each field is read after a space, up to PGVC_STAMP_FIELD bytes, stopping at a space, newline
 * or NUL; a field that is absent is "". Never fails. */
void pgvc_parse_stamp(const char *text, size_t len, pgvc_stamp *out);

/* Append the comment the stamp statement starts from: the user's text (user_len bytes, without
 * the newlines it ends with; none when 0), a newline, the marker, body= and idx=. rw= and def= are
 * appended by the server. What pgvc_parse_stamp reads back as the user's text is written again
 * byte for byte, so a re-stamp never changes the user's part. */
void pgvc_stamp_write(pgvc_buf *b, const char *user, size_t user_len, const char *body_fp,
                      const char *idx_fp);

#endif
