/* fuzz_split_table.c: pgvc_split_table, the parser of a Django db_table (name, schema.name and
 * their quoted forms), on any text and any output capacity.
 *
 * Properties: no memory error (ASan/UBSan); on success both parts fit their buffers and the name
 * is not empty; on failure a reason is given; and a parsed name round-trips: quoting the parts
 * with pgvc_buf_qualified and parsing that again gives the same parts. */
#include "../csrc/sqlgen.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char schema[PGVC_NAMEDATALEN], name[PGVC_NAMEDATALEN], schema2[PGVC_NAMEDATALEN],
        name2[PGVC_NAMEDATALEN];
    const char *why = NULL;
    size_t cap = PGVC_NAMEDATALEN;
    char *text;
    int rc;
    if (size && data[0] < 8) { /* a first byte below 8 picks a smaller capacity: 1..8 bytes */
        cap = (size_t)data[0] + 1;
        data++;
        size--;
    }
    text = fuzz_cstr(data, size);
    rc = pgvc_split_table(text, schema, cap, name, cap, &why);
    if (rc < 0) {
        CHECK(why && *why, "no reason for rejecting [%s]", text);
    } else {
        pgvc_buf b;
        CHECK(rc == 0, "rc %d", rc);
        CHECK(strlen(name) > 0 && strlen(name) < cap, "name [%s] of [%s]", name, text);
        CHECK(strlen(schema) < cap, "schema [%s] of [%s]", schema, text);
        pgvc_buf_init(&b);
        pgvc_buf_qualified(&b, schema[0] ? schema : NULL, name);
        CHECK(!b.oom && b.data, "out of memory quoting [%s]", text);
        why = NULL;
        rc = pgvc_split_table(b.data, schema2, sizeof schema2, name2, sizeof name2, &why);
        CHECK(rc == 0, "[%s] quoted as [%s] does not parse: %s", text, b.data, why ? why : "?");
        CHECK(!strcmp(schema, schema2) && !strcmp(name, name2),
              "[%s] -> (%s, %s) -> [%s] -> (%s, %s)", text, schema, name, b.data, schema2, name2);
        pgvc_buf_free(&b);
    }
    free(text);
    return 0;
}
