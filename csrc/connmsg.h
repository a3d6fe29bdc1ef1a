/* connmsg.h: a failed connect's message, as libpq writes it at PQERRORS_VERBOSE, read in pure C
 * (no Python, no libpq: fuzz/fuzz_connect_message.c runs it on any text). */
#ifndef PGVC_CONNMSG_H
#define PGVC_CONNMSG_H

#include <stddef.h>

/* The SQLSTATE of a connect refused for the server's connection limit. */
#define PGVC_TOO_MANY_CONNECTIONS "53300"

/* msg (libpq's message at PQERRORS_VERBOSE) as the default verbosity writes it: the SQLSTATEs
 * and LOCATION lines taken out; malloc'd, never longer than msg (NULL: out of memory).
 * *refused is set when the server refused the connect for its connection limit (there is a
 * SQLSTATE, and every one is 53300), with the server's first message for it in reason (cut to
 * reason_cap, NUL-terminated; left alone otherwise). */
char *pgvc_connect_message(const char *msg, int *refused, char *reason, size_t reason_cap);

#endif
