/* fuzz_quote.c: identifier and literal quoting (pgvc_buf_ident, pgvc_buf_qualified,
 * pgvc_buf_literal) on any text.
 *
 * Properties: no memory error; an identifier comes back bare exactly when
 * pgvc_ident_needs_quotes says so, otherwise in double quotes with inner quotes doubled, and
 * unquoting gives the input back; a literal is '...' (E'...' when it holds a backslash) with
 * quotes and backslashes doubled, and unquoting gives the input back. */
#include "../csrc/sqlgen.h"
#include "fuzz_common.h"

/* Undo "..." quoting; NULL when s is not one well-formed quoted identifier. */
static char *unquote(const char *s, char q, int backslashes)
{
    size_t n = strlen(s), k = 0;
    char *out;
    if (n < 2 || s[0] != q || s[n - 1] != q)
        return NULL;
    out = malloc(n);
    for (size_t i = 1; i < n - 1; i++) {
        if (s[i] == q || (backslashes && s[i] == '\\')) {
            if (i + 1 >= n - 1 || s[i + 1] != s[i]) {
                free(out);
                return NULL;
            }
            i++;
        }
        out[k++] = s[i];
    }
    out[k] = '\0';
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *a, *b, *back;
    pgvc_buf buf;
    fuzz_two(data, size, &a, &b);
    pgvc_buf_init(&buf);

    /* Identifier. */
    pgvc_buf_ident(&buf, a);
    CHECK(!buf.oom && buf.data, "out of memory");
    if (!pgvc_ident_needs_quotes(a)) {
        CHECK(!strcmp(buf.data, a), "[%s] bare but written [%s]", a, buf.data);
        CHECK(*a, "the empty name left bare");
    } else {
        back = unquote(buf.data, '"', 0);
        CHECK(back && !strcmp(back, a), "[%s] quoted as [%s]", a, buf.data);
        free(back);
    }

    /* schema.name: the name part is the same quoting after one dot. */
    pgvc_buf_reset(&buf);
    pgvc_buf_qualified(&buf, *b ? b : NULL, a);
    CHECK(!buf.oom && buf.data, "out of memory");
    {
        pgvc_buf one;
        pgvc_buf_init(&one);
        pgvc_buf_ident(&one, a);
        CHECK(strlen(buf.data) >= one.len && !strcmp(buf.data + strlen(buf.data) - one.len, one.data),
              "qualified [%s] does not end with [%s]", buf.data, one.data);
        pgvc_buf_free(&one);
    }

    /* Literal. */
    pgvc_buf_reset(&buf);
    pgvc_buf_literal(&buf, a);
    CHECK(!buf.oom && buf.data, "out of memory");
    {
        int escaped = strchr(a, '\\') != NULL;
        const char *lit = buf.data;
        if (escaped) {
            CHECK(!strncmp(lit, " E", 2), "[%s] has a backslash but is written [%s]", a, lit);
            lit += 2;
        }
        back = unquote(lit, '\'', escaped);
        CHECK(back && !strcmp(back, a), "[%s] written [%s]", a, buf.data);
        free(back);
    }
    pgvc_buf_free(&buf);
    free(a);
    free(b);
    return 0;
}
