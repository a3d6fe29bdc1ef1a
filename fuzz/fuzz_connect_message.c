/* fuzz_connect_message.c: pgvc_connect_message, the reader of a failed connect's message (libpq's
 * text at PQERRORS_VERBOSE, which the server writes most of), on any text and any capacity of the
 * reason buffer (the first byte of the input).
 *
 * Properties: no memory error (the reason buffer is allocated at its exact capacity, so a write
 * past it is one); the result is no longer than the message; a message without ":  " and
 * without a LOCATION line comes back unchanged; a refusal for the connection limit is told only
 * when the message holds 53300, and its reason is NUL-terminated within the capacity and is
 * text of the message. */
#include "../csrc/connmsg.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cap;
    char *msg, *reason, *plain;
    int refused = -1;
    if (!size)
        return 0;
    cap = (size_t)data[0] % 64 + 1;
    msg = fuzz_cstr(data + 1, size - 1);
    if (!(reason = malloc(cap)))
        abort();
    reason[0] = '\0';
    plain = pgvc_connect_message(msg, &refused, reason, cap);
    CHECK(plain != NULL, "out of memory");
    CHECK(strlen(plain) <= strlen(msg), "[%s] grew into [%s]", msg, plain);
    CHECK(refused == 0 || refused == 1, "refused %d", refused);
    if (!strstr(msg, ":  ") && !strstr(msg, ".c:"))
        CHECK(!strcmp(plain, msg), "[%s] changed into [%s]", msg, plain);
    if (refused) {
        CHECK(strstr(msg, PGVC_TOO_MANY_CONNECTIONS) != NULL, "[%s] told as refused", msg);
        CHECK(memchr(reason, '\0', cap) != NULL, "reason not terminated");
        CHECK(strstr(msg, reason) != NULL, "reason [%s] is not in [%s]", reason, msg);
    }
    free(plain);
    free(reason);
    free(msg);
    return 0;
}
