/*
 * Internal helpers of twcount.c for the tests and the bench. Not part of
 * the ABI: these symbols are hidden in libtcpool.so.
 */
#ifndef TCPOOL_TWCOUNT_H
#define TCPOOL_TWCOUNT_H

#include <stdint.h>

#include "tcpool.h"

/* Count TIME_WAIT sockets in the caller's network namespace, whatever
 * their addresses: client = remote port is port, server = local port is
 * port. Same as pool_tw_count("*:PORT") without parsing a string.
 * Returns 0, POOL_EINVAL (out NULL or port 0), POOL_ENOMEM or POOL_ESYS
 * (errno kept). */
int tw_count_port(uint16_t port, pool_tw_count_t *out);

#endif /* TCPOOL_TWCOUNT_H */
