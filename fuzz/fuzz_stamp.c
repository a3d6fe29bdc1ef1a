/* fuzz_stamp.c: pgvc_parse_stamp, the reader of our stamp in an object's COMMENT, and
 * pgvc_stamp_write, its writer (stamp.c), on any bytes.
 *
 * Properties: no memory error (the text is handed over without a NUL terminator, so a read past
 * its end is caught); the parse is consistent: the user's text ends before the stamp's line with
 * only newlines between, the stamp's line starts a line with the marker and no later line does,
 * and every field is at most 32 bytes without a space or newline; and what the writer produces
 * (plus the rw= and def= the server appends) parses back to the same user text and fields, and
 * writing it again gives the same comment, so a re-stamp never grows it. */
#include "../csrc/hash.h"
#include "../csrc/stamp.h"
#include "fuzz_common.h"

static const char mark[] = PGVC_MARK " body=";

static int starts_mark(const char *p, const char *end)
{
    return (size_t)(end - p) >= sizeof mark - 1 && !memcmp(p, mark, sizeof mark - 1);
}

static void check_field(const char *what, const char *f)
{
    size_t n = strlen(f);
    CHECK(n <= PGVC_STAMP_FIELD, "%s is %zu bytes", what, n);
    CHECK(!memchr(f, ' ', n) && !memchr(f, '\n', n), "%s [%s]", what, f);
}

/* The parse of text[0..len) is consistent with the text. */
static void check_parse(const char *text, size_t len, const pgvc_stamp *s)
{
    const char *end = text + len;
    CHECK(s->user_len <= s->at && s->at <= len, "user_len %zu, at %zu, len %zu", s->user_len, s->at,
          len);
    check_field("body", s->body);
    check_field("idx", s->idx);
    check_field("def", s->def);
    if (!s->ours) {
        CHECK(s->user_len == len && s->at == len, "no stamp, yet user_len %zu of %zu", s->user_len,
              len);
        CHECK(!*s->body && !*s->idx && !*s->def, "fields without a stamp");
        return;
    }
    CHECK(starts_mark(text + s->at, end) && (s->at == 0 || text[s->at - 1] == '\n'), "stamp at %zu",
          s->at);
    for (size_t k = s->user_len; k < s->at; k++)
        CHECK(text[k] == '\n', "byte %zu between the user's text and the stamp", k);
    CHECK(s->user_len == 0 || text[s->user_len - 1] != '\n', "user's text ends with a newline");
    for (const char *p = text + s->at + 1; p < end; p++)
        CHECK(!(p[-1] == '\n' && starts_mark(p, end)), "a later stamp line at %zu",
              (size_t)(p - text));
}

/* 32 hex digits that depend on the input. */
static void fingerprint(const uint8_t *data, size_t size, uint64_t seed, char out[33])
{
    pgvc_hash h;
    pgvc_hash_init(&h, seed);
    pgvc_hash_update(&h, data, size);
    pgvc_hash_hex(&h, out);
}

/* The comment after a sync: the user's text and the stamp, then what the server appends. */
static void stamp_comment(pgvc_buf *b, const char *user, size_t user_len, const char *body,
                          const char *idx, const char *def)
{
    pgvc_buf_reset(b);
    pgvc_stamp_write(b, user, user_len, body, idx);
    pgvc_buf_puts(b, " rw=4242 def=");
    pgvc_buf_puts(b, def);
    CHECK(!b->oom, "out of memory");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1), body[33], idx[33], def[33];
    pgvc_stamp s, back, again;
    pgvc_buf b, b2;
    size_t want;
    if (!text)
        abort();
    memcpy(text, data, size);
    pgvc_parse_stamp(text, size, &s);
    check_parse(text, size, &s);

    /* A sync keeps the user's text and writes new fingerprints after it. */
    fingerprint(data, size, 1, body);
    fingerprint(data, size, 2, idx);
    fingerprint(data, size, 3, def);
    pgvc_buf_init(&b);
    pgvc_buf_init(&b2);
    stamp_comment(&b, text, s.user_len, body, idx, def);
    pgvc_parse_stamp(b.data, b.len, &back);
    check_parse(b.data, b.len, &back);
    want = s.user_len;
    while (want && text[want - 1] == '\n') /* a comment without a stamp may end with newlines */
        want--;
    CHECK(back.ours, "the written stamp is not found");
    CHECK(back.user_len == want && !memcmp(b.data, text, want), "user's text %zu bytes, was %zu",
          back.user_len, want);
    CHECK(!strcmp(back.body, body) && !strcmp(back.idx, idx) && !strcmp(back.def, def),
          "fields [%s] [%s] [%s], written [%s] [%s] [%s]", back.body, back.idx, back.def, body, idx,
          def);

    /* The next sync, with the same fingerprints, writes the same comment. */
    stamp_comment(&b2, b.data, back.user_len, back.body, back.idx, back.def);
    pgvc_parse_stamp(b2.data, b2.len, &again);
    CHECK(b2.len == b.len && !memcmp(b2.data, b.data, b.len), "a re-stamp changed the comment");
    CHECK(again.user_len == back.user_len && again.at == back.at, "a re-stamp moved the stamp");

    /* No comment at all: nothing of ours, nothing of the user's. */
    pgvc_parse_stamp(NULL, 0, &s);
    CHECK(!s.ours && !s.user_len, "NULL comment");
    pgvc_buf_free(&b);
    pgvc_buf_free(&b2);
    free(text);
    return 0;
}
