/* fuzz_derived_name.c: pgvc_derived_name (base + suffix within 63 bytes, a hash keeping long
 * names apart) on any base and suffix.
 *
 * Properties: no memory error; the name fits NAMEDATALEN; a short base + suffix comes back
 * unchanged; a long one ends with (up to 40 bytes of) the suffix; and a name made of valid
 * UTF-8 stays valid UTF-8 (it is never cut inside a character). */
#include "../csrc/sqlgen.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *base, *suffix, out[PGVC_NAMEDATALEN + 16];
    size_t nb, ns, no;
    memset(out, 0x7f, sizeof out);
    fuzz_two(data, size, &base, &suffix);
    nb = strlen(base);
    ns = strlen(suffix);
    pgvc_derived_name(out, base, suffix);
    CHECK(out[PGVC_NAMEDATALEN] == 0x7f, "wrote past NAMEDATALEN");
    no = strlen(out);
    CHECK(no <= PGVC_NAMEDATALEN - 1, "%zu bytes", no);
    if (nb + ns <= PGVC_NAMEDATALEN - 1) {
        CHECK(no == nb + ns && !memcmp(out, base, nb) && !strcmp(out + nb, suffix), "[%s]+[%s] -> [%s]",
              base, suffix, out);
    } else if (ns <= 40) {
        CHECK(no >= ns && !strcmp(out + no - ns, suffix), "[%s] does not end with [%s]", out, suffix);
    }
    if (fuzz_utf8_valid(base) && fuzz_utf8_valid(suffix))
        CHECK(fuzz_utf8_valid(out), "[%s]+[%s] -> [%s]: not valid UTF-8", base, suffix, out);
    free(base);
    free(suffix);
    return 0;
}
