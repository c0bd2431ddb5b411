/* Error texts: one entry per POOL_E* code (tests check none is missing). */
#include "pool-internal.h"

static const char *const error_texts[] = {
	[0] = "success",
	[-POOL_EINVAL] = "invalid argument",
	[-POOL_ENOMEM] = "out of memory",
	[-POOL_EENDPOINT] = "malformed endpoint (expected host:port, [ipv6]:port or unix:/path)",
	[-POOL_ERESOLVE] = "host name did not resolve",
	[-POOL_ECONNREFUSED] = "connection refused",
	[-POOL_ETIMEDOUT] = "connect timed out (connect_timeout_ms)",
	[-POOL_EBUSY] = "no free connection slot within acquire_timeout_ms",
	[-POOL_EADDRNOTAVAIL] = "no free local port (ephemeral ports exhausted)",
	[-POOL_EMFILE] = "out of file descriptors",
	[-POOL_ECONNECT] = "connect failed",
	[-POOL_ECONFIG] = "bad configuration",
	[-POOL_ESHUTDOWN] = "pool is shutting down",
	[-POOL_ESYS] = "system call failed",
	[-POOL_ENOTSUP] = "not supported on this system",
	[-POOL_EHOOK] = "the on_connect hook failed",
	[-POOL_EINPROGRESS] = "operation in progress (wait for the descriptor)",
	[-POOL_EBACKOFF] = "connects to this endpoint are failing; backing off",
};

POOL_API const char *pool_strerror(int err)
{
	if (err > 0 || err < POOL_ERR_LAST || !error_texts[-err])
		return "unknown error";
	return error_texts[-err];
}
