/* hash.c: incremental MurmurHash3_x64_128 (public domain algorithm by Austin Appleby). */
#include "hash.h"

#include <string.h>

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k *= UINT64_C(0xc4ceb9fe1a85ec53);
    k ^= k >> 33;
    return k;
}

static const uint64_t C1 = UINT64_C(0x87c37b91114253d5);
static const uint64_t C2 = UINT64_C(0x4cf5ad432745937f);

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void block(pgvc_hash *h, const unsigned char *b)
{
    uint64_t k1 = load64(b), k2 = load64(b + 8);
    k1 *= C1;
    k1 = rotl64(k1, 31);
    k1 *= C2;
    h->h1 ^= k1;
    h->h1 = rotl64(h->h1, 27);
    h->h1 += h->h2;
    h->h1 = h->h1 * 5 + 0x52dce729;
    k2 *= C2;
    k2 = rotl64(k2, 33);
    k2 *= C1;
    h->h2 ^= k2;
    h->h2 = rotl64(h->h2, 31);
    h->h2 += h->h1;
    h->h2 = h->h2 * 5 + 0x38495ab5;
}

void pgvc_hash_init(pgvc_hash *h, uint64_t seed)
{
    h->h1 = h->h2 = seed;
    h->total = 0;
    h->ntail = 0;
}

void pgvc_hash_update(pgvc_hash *h, const void *data, size_t len)
{
    const unsigned char *p = data;
    h->total += len;
    if (h->ntail) {
        size_t take = 16 - h->ntail;
        if (take > len)
            take = len;
        memcpy(h->tail + h->ntail, p, take);
        h->ntail += take;
        p += take;
        len -= take;
        if (h->ntail < 16)
            return;
        block(h, h->tail);
        h->ntail = 0;
    }
    while (len >= 16) {
        block(h, p);
        p += 16;
        len -= 16;
    }
    memcpy(h->tail, p, len);
    h->ntail = len;
}

void pgvc_hash_str(pgvc_hash *h, const char *s)
{
    unsigned char prefix[9];
    uint64_t n = s ? (uint64_t)strlen(s) : UINT64_MAX;
    prefix[0] = s ? 'S' : 'N';
    for (int i = 0; i < 8; i++)
        prefix[1 + i] = (unsigned char)(n >> (8 * i));
    pgvc_hash_update(h, prefix, sizeof prefix);
    if (s)
        pgvc_hash_update(h, s, (size_t)n);
}

void pgvc_hash_hex(pgvc_hash *h, char out[33])
{
    static const char digits[] = "0123456789abcdef";
    uint64_t k1 = 0, k2 = 0, h1 = h->h1, h2 = h->h2;
    const unsigned char *t = h->tail;
    switch (h->ntail) {
    case 15: k2 ^= (uint64_t)t[14] << 48; /* fall through */
    case 14: k2 ^= (uint64_t)t[13] << 40; /* fall through */
    case 13: k2 ^= (uint64_t)t[12] << 32; /* fall through */
    case 12: k2 ^= (uint64_t)t[11] << 24; /* fall through */
    case 11: k2 ^= (uint64_t)t[10] << 16; /* fall through */
    case 10: k2 ^= (uint64_t)t[9] << 8; /* fall through */
    case 9:
        k2 ^= (uint64_t)t[8];
        k2 *= C2;
        k2 = rotl64(k2, 33);
        k2 *= C1;
        h2 ^= k2;
        /* fall through */
    case 8: k1 ^= (uint64_t)t[7] << 56; /* fall through */
    case 7: k1 ^= (uint64_t)t[6] << 48; /* fall through */
    case 6: k1 ^= (uint64_t)t[5] << 40; /* fall through */
    case 5: k1 ^= (uint64_t)t[4] << 32; /* fall through */
    case 4: k1 ^= (uint64_t)t[3] << 24; /* fall through */
    case 3: k1 ^= (uint64_t)t[2] << 16; /* fall through */
    case 2: k1 ^= (uint64_t)t[1] << 8; /* fall through */
    case 1:
        k1 ^= (uint64_t)t[0];
        k1 *= C1;
        k1 = rotl64(k1, 31);
        k1 *= C2;
        h1 ^= k1;
        break;
    default:
        /* 0: no tail (pgvc_hash_update keeps fewer than 16 bytes) */
        break;
    }
    h1 ^= h->total;
    h2 ^= h->total;
    h1 += h2;
    h2 += h1;
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 += h2;
    h2 += h1;
    for (size_t i = 0; i < 8; i++) {
        unsigned b1 = (unsigned)(h1 >> (56 - 8 * i)) & 0xff,
                 b2 = (unsigned)(h2 >> (56 - 8 * i)) & 0xff;
        out[2 * i] = digits[b1 >> 4];
        out[2 * i + 1] = digits[b1 & 15];
        out[16 + 2 * i] = digits[b2 >> 4];
        out[16 + 2 * i + 1] = digits[b2 & 15];
    }
    out[32] = '\0';
}
