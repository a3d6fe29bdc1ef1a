/* hash.h: 128-bit MurmurHash3 (x64 variant) for declaration fingerprints.
 * Fingerprints detect change; they are not a security boundary. */
#ifndef PGVC_HASH_H
#define PGVC_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t h1, h2;
    uint64_t total;
    unsigned char tail[16];
    size_t ntail;
} pgvc_hash;

void pgvc_hash_init(pgvc_hash *h, uint64_t seed);
void pgvc_hash_update(pgvc_hash *h, const void *data, size_t len);
/* Feed a length-prefixed string, so that ("ab","c") and ("a","bc") differ; NULL is distinct from "". */
void pgvc_hash_str(pgvc_hash *h, const char *s);
/* Write 32 lowercase hex digits and a NUL into out[33]. */
void pgvc_hash_hex(pgvc_hash *h, char out[33]);

#endif
