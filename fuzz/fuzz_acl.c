/* fuzz_acl.c: pgvc_acl_to_grants, the reader of one aclitem (grantee=privileges/grantor) that
 * turns it into GRANT statements, on any text.
 *
 * Properties: no memory error; it returns 0 or -1; on -1 it appended nothing; on 0, what it
 * appended is a sequence of complete "GRANT ... ON <target> TO ...;\n" statements. */
#include "../csrc/sqlgen.h"
#include "fuzz_common.h"

/* The end of the statement at p: the first ";\n" outside a quoted identifier (a grantee may be
 * named "r;\na"), or NULL. */
static const char *statement_end(const char *p)
{
    int quoted = 0;
    for (; *p; p++) {
        if (*p == '"')
            quoted = !quoted; /* a doubled "" inside a name toggles twice */
        else if (!quoted && p[0] == ';' && p[1] == '\n')
            return p;
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *item = fuzz_cstr(data, size);
    pgvc_buf b;
    int rc;
    pgvc_buf_init(&b);
    rc = pgvc_acl_to_grants(&b, item, "public.v");
    CHECK(rc == 0 || rc == -1, "rc %d", rc);
    CHECK(!b.oom, "out of memory");
    CHECK(rc == 0 || b.len == 0, "[%s] failed after appending [%s]", item, b.data);
    if (rc == 0 && b.len) {
        const char *p = b.data;
        while (*p) {
            const char *end = statement_end(p);
            CHECK(!strncmp(p, "GRANT ", 6) && end && strstr(p, " ON public.v TO ") < end,
                  "[%s] gave [%s]", item, b.data);
            p = end + 2;
        }
    }
    pgvc_buf_free(&b);
    free(item);
    return 0;
}
