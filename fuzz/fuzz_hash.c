/* fuzz_hash.c: the streaming MurmurHash3 of fingerprints (hash.c).
 *
 * Properties: no memory error; the hash of the input fed whole equals its hash fed in pieces
 * of any sizes (the first bytes of the input choose them), so a fingerprint never depends on
 * how the text reached the hasher; and pgvc_hash_hex writes 32 lowercase hex digits. */
#include "../csrc/hash.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pgvc_hash whole, pieces;
    char a[33], b[33];
    size_t nsplit = size ? data[0] % 8 : 0, off;
    const uint8_t *cuts = data + (size ? 1 : 0);
    if (size < 1 + nsplit)
        return 0;
    off = 1 + nsplit;
    pgvc_hash_init(&whole, 7);
    pgvc_hash_update(&whole, data + off, size - off);
    pgvc_hash_hex(&whole, a);
    pgvc_hash_init(&pieces, 7);
    {
        size_t at = off;
        for (size_t k = 0; k < nsplit && at < size; k++) {
            size_t n = cuts[k] % 40;
            if (n > size - at)
                n = size - at;
            pgvc_hash_update(&pieces, data + at, n);
            at += n;
        }
        pgvc_hash_update(&pieces, data + at, size - at);
    }
    pgvc_hash_hex(&pieces, b);
    CHECK(!strcmp(a, b), "whole %s, in pieces %s", a, b);
    CHECK(strlen(a) == 32 && strspn(a, "0123456789abcdef") == 32, "[%s]", a);
    /* The string form: a length prefix keeps ("ab","c") apart from ("a","bc"). */
    pgvc_hash_init(&whole, 1);
    pgvc_hash_str(&whole, (const char *)NULL);
    pgvc_hash_hex(&whole, a);
    pgvc_hash_init(&pieces, 1);
    pgvc_hash_str(&pieces, "");
    pgvc_hash_hex(&pieces, b);
    CHECK(strcmp(a, b), "NULL and \"\" hash alike");
    return 0;
}
