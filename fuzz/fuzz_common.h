/* fuzz_common.h: what every harness shares: the input as C strings, and a check that aborts
 * (so libFuzzer keeps the input) with a message saying which property broke. */
#ifndef PGVC_FUZZ_COMMON_H
#define PGVC_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "property broken: %s: ", #cond);                                       \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A NUL-terminated copy of data[0..size) (C callers never see an inner NUL: the text stops at
 * the first one, as PyUnicode_AsUTF8 would refuse it). Free with free(). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Split the input at its first NUL into two C strings (the second empty when there is none). */
static inline void fuzz_two(const uint8_t *data, size_t size, char **a, char **b)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t na = nul ? (size_t)(nul - data) : size;
    *a = fuzz_cstr(data, na);
    *b = nul ? fuzz_cstr(nul + 1, size - na - 1) : fuzz_cstr(data, 0);
}

/* Is s (NUL-terminated) well-formed UTF-8? Overlong forms and surrogates count as malformed. */
static inline int fuzz_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int n = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
        unsigned cp;
        if (n < 0 || (n == 1 && c < 0xC2))
            return 0;
        cp = n ? c & (0x3F >> n) : c;
        p++;
        for (int k = 0; k < n; k++, p++) {
            if ((*p & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (*p & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
    }
    return 1;
}

#endif
