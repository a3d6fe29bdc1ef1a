/* connmsg.c: a failed connect's message, read in pure C. libpq keeps a connect's SQLSTATE to
 * itself, so the refresh loop's connects (pqconnect.c) run at PQERRORS_VERBOSE, whose message
 * carries it: this finds the refusals for the server's connection limit in it, and gives the
 * message back as the default verbosity writes it. */
#include "connmsg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A LOCATION line of PQERRORS_VERBOSE ("LOCATION:  function, file.c:line", its label in the
 * client's language): a label, two spaces, and ".c:" and digits at its end. */
static int location_line(const char *line, size_t len)
{
    size_t k = len;
    const char *label = memchr(line, ':', len);
    while (k > 0 && line[k - 1] >= '0' && line[k - 1] <= '9')
        k--;
    return k < len && k >= 3 && !memcmp(line + k - 3, ".c:", 3) && label &&
           label + 3 <= line + len && !memcmp(label, ":  ", 3);
}

/* The offset of the ":  " between the severity and the SQLSTATE in a line of PQERRORS_VERBOSE
 * ("FATAL:  53300: message"), or -1 when the line has none. */
static long sqlstate_at(const char *line, size_t len)
{
    const char *sep = NULL;
    for (size_t k = 0; k + 3 <= len && !sep; k++)
        if (!memcmp(line + k, ":  ", 3))
            sep = line + k;
    if (!sep || sep + 10 > line + len || sep[8] != ':' || sep[9] != ' ')
        return -1;
    for (int c = 3; c < 8; c++)
        if (!((sep[c] >= '0' && sep[c] <= '9') || (sep[c] >= 'A' && sep[c] <= 'Z')))
            return -1;
    return (long)(sep - line);
}

char *pgvc_connect_message(const char *msg, int *refused, char *reason, size_t reason_cap)
{
    char *plain = malloc(strlen(msg) + 1), *out = plain;
    int limit = 0, other = 0;
    *refused = 0;
    if (!plain)
        return NULL;
    while (*msg) {
        const char *nl = strchr(msg, '\n');
        size_t len = nl ? (size_t)(nl - msg) : strlen(msg), eol = nl ? 1 : 0;
        long at = sqlstate_at(msg, len);
        if (at >= 0) {
            size_t head = (size_t)at + 3, body = head + 7; /* "53300: " */
            int is_limit = !memcmp(msg + head, PGVC_TOO_MANY_CONNECTIONS, 5);
            if (is_limit && !limit)
                snprintf(reason, reason_cap, "%.*s", (int)(len - body), msg + body);
            limit += is_limit;
            other += !is_limit;
            memcpy(out, msg, head);
            memcpy(out + head, msg + body, len - body + eol);
            out += len - 7 + eol;
        } else if (!location_line(msg, len)) {
            memcpy(out, msg, len + eol);
            out += len + eol;
        }
        msg += len + eol;
    }
    *out = '\0';
    *refused = limit > 0 && !other;
    return plain;
}
