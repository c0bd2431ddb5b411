/*
 * tcpool — a connection pool for TCP clients that keeps long-lived
 * connections per endpoint and retires them by a configured teardown
 * policy, so that clients stop piling up TIME_WAIT sockets.
 *
 * Conventions, for every function below:
 *  - 0 means success; failures return a negative POOL_E* code, which
 *    pool_strerror() turns into text. Nothing is half done on failure.
 *  - Every function is safe to call from many threads on one pool.
 *  - Strings passed in are copied; the caller keeps ownership of its own.
 */
#ifndef TCPOOL_H
#define TCPOOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TCPOOL_BUILDING) && defined(__GNUC__)
#define POOL_API __attribute__((visibility("default")))
#else
#define POOL_API
#endif

#define POOL_VERSION_MAJOR 0
#define POOL_VERSION_MINOR 1
#define POOL_VERSION_PATCH 0

typedef struct pool pool_t;               /* opaque */
typedef struct pool_conn pool_conn_t;     /* opaque, one checked-out connection */
typedef struct pool_config pool_config_t; /* opaque */

typedef enum {
	POOL_REUSE,  /* healthy: keep it for the next pool_get */
	POOL_RETIRE, /* done with it: tear it down by the endpoint's policy */
	POOL_BROKEN  /* I/O failed or protocol state unknown: never send it
	              * a close request */
} pool_put_mode;

/* Error codes. Every one has a pool_strerror() text. */
enum {
	POOL_OK = 0,
	POOL_EINVAL = -1,        /* invalid argument or detectable API misuse */
	POOL_ENOMEM = -2,        /* out of memory */
	POOL_EENDPOINT = -3,     /* malformed endpoint string */
	POOL_ERESOLVE = -4,      /* host name did not resolve */
	POOL_ECONNREFUSED = -5,  /* every address refused the connection */
	POOL_ETIMEDOUT = -6,     /* connect_timeout_ms ran out */
	POOL_EBUSY = -7,         /* no free slot within acquire_timeout_ms */
	POOL_EADDRNOTAVAIL = -8, /* no free local port (ephemeral ports exhausted) */
	POOL_EMFILE = -9,        /* out of file descriptors */
	POOL_ECONNECT = -10,     /* connect failed otherwise; errno tells why */
	POOL_ECONFIG = -11,      /* bad configuration */
	POOL_ESHUTDOWN = -12,    /* the pool is being destroyed */
	POOL_ESYS = -13,         /* a system call failed; errno tells why */
	POOL_ENOTSUP = -14,      /* not supported on this system */
	POOL_ERR_LAST = -14      /* the lowest code; for iterating over all */
};

/* Text for a POOL_E* code (or 0). Static storage; cannot fail: an unknown
 * code gets "unknown error". */
POOL_API const char *pool_strerror(int err);

/* ---- configuration ---------------------------------------------------- */

/* A configuration holding the built-in defaults. Caller owns it; free with
 * pool_config_free(). NULL when out of memory. */
POOL_API pool_config_t *pool_config_new(void);

/* Read an INI file into cfg. The file is applied whole or not at all: on
 * failure cfg is unchanged and err (when not NULL) holds
 * "FILE:LINE: KEY: reason". Returns 0, POOL_ECONFIG, POOL_ESYS (cannot
 * read the file) or POOL_ENOMEM. */
POOL_API int pool_config_load(pool_config_t *cfg, const char *path,
                              char *err, size_t errlen);

/* Set one key, as if "key = value" stood in the [pool] section (endpoint
 * NULL) or in the section [endpoint ENDPOINT]. value is the text that would
 * follow '=' in a file (quoted strings keep their quotes and escapes). On
 * failure cfg is unchanged and err tells why. */
POOL_API int pool_config_set(pool_config_t *cfg, const char *endpoint,
                             const char *key, const char *value,
                             char *err, size_t errlen);

/* Free a configuration. NULL is fine. */
POOL_API void pool_config_free(pool_config_t *cfg);

/* ---- the pool --------------------------------------------------------- */

/* Create a pool. cfg is copied (the caller may free it at once). With cfg
 * NULL the pool uses the built-in defaults, then the file named by
 * $TCPOOL_CONFIG if that is set (ignored in set-uid programs). On success
 * *out owns the pool until pool_destroy(). */
POOL_API int pool_create(pool_t **out, const pool_config_t *cfg);

/* Destroy a pool: retire every idle connection by its policy (peer-first
 * drains run in parallel under one deadline), wait for them, free
 * everything. Connections still checked out are not touched: their
 * descriptors stay valid and owned by the caller (see pool_destroy(3)).
 * NULL is fine. */
POOL_API void pool_destroy(pool_t *pool);

/* Get a connection to endpoint ("host:port", "[ipv6]:port" or
 * "unix:/path"): an idle one checked for liveness, or a new one. On
 * success *out is valid until pool_put(). May wait up to
 * acquire_timeout_ms when a cap is reached, and up to connect_timeout_ms
 * per connect. */
POOL_API int pool_get(pool_t *pool, const char *endpoint, pool_conn_t **out);

/* Give a connection back. Takes ownership of conn: it is invalid after
 * this call. Never blocks on the peer. Cannot fail; misuse (NULL, a
 * connection of another pool, a double put that can be detected) is
 * ignored and counted in the stats as misuse. */
POOL_API void pool_put(pool_t *pool, pool_conn_t *conn, pool_put_mode mode);

/* The socket descriptor of a checked-out connection, valid until
 * pool_put(). The caller may read and write it, and may change its
 * O_NONBLOCK flag, but must not close it. -1 for NULL. */
POOL_API int pool_conn_fd(const pool_conn_t *conn);

/* 1 if conn was connected before this pool_get (an idle connection, one
 * handed out before or a warm min_idle one), 0 if it was connected for
 * this pool_get. A failure on a reused connection may be a stale
 * connection: retrying an idempotent request is safe. */
POOL_API int pool_conn_reused(const pool_conn_t *conn);

/* 1 if conn will be retired at its next pool_put whatever the mode
 * (max_uses or max_lifetime_ms reached): an HTTP client can send
 * "Connection: close" on this request so the server closes first. */
POOL_API int pool_conn_last_use(const pool_conn_t *conn);

/* The endpoint string conn was got for. Valid until pool_put(). */
POOL_API const char *pool_conn_endpoint(const pool_conn_t *conn);

/* ---- maintenance ------------------------------------------------------ */

/* In manual maintenance mode (maintenance = manual), the application calls
 * this from its own loop: it retires expired connections, refills
 * min_idle, and progresses peer-first drains. *next_ms (when not NULL)
 * receives how long until it is next needed (-1: nothing pending).
 * Returns 0; in thread mode it does the same work and is harmless. */
POOL_API int pool_maintain(pool_t *pool, int *next_ms);

/* A descriptor that becomes readable when pool_maintain() has work
 * (for poll/epoll loops in manual mode). Owned by the pool. */
POOL_API int pool_maintenance_fd(pool_t *pool);

/* Log levels passed to the log callback. */
enum { POOL_LOG_WARN = 1, POOL_LOG_INFO = 2 };
typedef void (*pool_log_fn)(int level, const char *msg, void *ud);

/* Set where the pool's few log lines go (leak warnings). NULL restores
 * the default: one line on stderr. The library logs nothing else. */
POOL_API void pool_set_log(pool_t *pool, pool_log_fn fn, void *ud);

/* ---- statistics ------------------------------------------------------- */

typedef struct pool_stats {
	uint64_t gets;               /* successful pool_get calls */
	uint64_t reuses;             /* ... served by an idle connection */
	uint64_t connects;           /* connections opened */
	uint64_t connect_failures;   /* connects that failed */
	uint64_t waits;              /* pool_get calls that waited for a slot */
	uint64_t wait_timeouts;      /* ... and gave up (POOL_EBUSY) */
	uint64_t stale_dropped;      /* idle connections found dead on pool_get */
	uint64_t retired_close;      /* retired with the close policy */
	uint64_t retired_abort;      /* retired with the abort policy */
	uint64_t retired_peer_first; /* retired with the peer-first policy */
	uint64_t peer_first_ok;      /* peer-first: the server closed first */
	uint64_t peer_first_fallback;/* peer-first: fallback applied */
	uint64_t closed;             /* connections closed, for any reason */
	uint64_t misuse;             /* detected API misuse (bad pool_put) */
	uint32_t in_use;             /* checked out now */
	uint32_t idle;               /* idle now */
	uint32_t draining;           /* peer-first drains under way now */
	uint32_t pad_;               /* keeps the next counter 8-aligned */
	uint64_t peer_closed_idle;   /* idle connections the server closed,
	                              * closed at once by watch_idle */
	uint32_t reserved_[2];       /* the struct keeps its size (ABI) */
} pool_stats_t;

/* Counters for one endpoint (as passed to pool_get), or for the whole
 * pool when endpoint is NULL. POOL_EINVAL if the pool never saw it. */
POOL_API int pool_stats(pool_t *pool, const char *endpoint, pool_stats_t *out);

/* Call fn once per endpoint the pool knows, with its counters. fn must
 * not call back into the pool. */
POOL_API int pool_stats_foreach(pool_t *pool,
                                void (*fn)(const char *endpoint,
                                           const pool_stats_t *st, void *ud),
                                void *ud);

/* ---- TIME_WAIT accounting --------------------------------------------- */

typedef struct pool_tw_count {
	uint32_t client; /* TIME_WAIT sockets whose remote end is the endpoint */
	uint32_t server; /* TIME_WAIT sockets whose local end is the endpoint's
	                  * port (the server side, when it runs here) */
} pool_tw_count_t;

/* Count TIME_WAIT sockets toward endpoint ("host:port"; host "*" for any
 * address) in the caller's network namespace, through NETLINK_SOCK_DIAG.
 * POOL_EENDPOINT for a malformed or unix endpoint, POOL_ESYS when the
 * kernel refuses. */
POOL_API int pool_tw_count(const char *endpoint, pool_tw_count_t *out);

#ifdef __cplusplus
}
#endif
#endif /* TCPOOL_H */
