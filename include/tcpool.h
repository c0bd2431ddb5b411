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
	POOL_EHOOK = -15,        /* an on_connect hook failed (returned non-zero) */
	POOL_EINPROGRESS = -16,  /* not done yet: wait for the fd, then go on */
	POOL_EBACKOFF = -17,     /* connects to the endpoint fail; backing off */
	POOL_ERR_LAST = -17      /* the lowest code; for iterating over all */
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

/* Check the rules that span keys, exactly as pool_create() does (for
 * instance: peer-first needs a close_request, or a close_request hook).
 * Returns 0, POOL_ECONFIG with err = "KEY: reason" or
 * "[endpoint PATTERN] KEY: reason", or POOL_EINVAL for cfg NULL. Does not
 * change cfg. */
POOL_API int pool_config_check(const pool_config_t *cfg, char *err, size_t errlen);

/* Callbacks run by the pool for the connections of some endpoints.
 * Every one runs with no pool lock held, and may block. */
typedef struct pool_hooks {
	/* Once per new connection, before its first hand-out: the warm
	 * min_idle ones too, in whichever thread opened it (pool_get's, the
	 * refill thread, or pool_maintain's caller in manual mode). It may do
	 * blocking I/O on pool_conn_fd(conn) (TLS handshake, AUTH, SELECT)
	 * and call pool_conn_set_data(). Non-zero: the connection is aborted
	 * (RST), its data freed, and pool_get returns POOL_EHOOK. May be
	 * NULL. */
	int (*on_connect)(pool_conn_t *conn, void *ud);
	/* Peer-first retirement: send the close request yourself (through
	 * TLS, say) instead of the close_request bytes, which are then not
	 * required. 0 = sent, negative = could not (the fallback applies).
	 * The pool then waits for the server's EOF as usual. Never called
	 * for POOL_BROKEN. conn is valid for pool_conn_fd(), pool_conn_data()
	 * and pool_conn_endpoint() during the call only. May be NULL. */
	int (*close_request)(pool_conn_t *conn, void *ud);
	void *ud; /* passed to both; owned by the caller */
} pool_hooks_t;

/* Set the hooks of the [pool] section (endpoint NULL), the defaults of
 * every endpoint, or of the section [endpoint ENDPOINT] (created as
 * pool_config_set would). A section's hooks replace [pool]'s whole.
 * hooks is copied; hooks NULL clears the section's hooks (an endpoint
 * section then inherits [pool]'s); a zeroed pool_hooks_t sets "no hooks".
 * Returns 0, POOL_EINVAL (cfg NULL), POOL_EENDPOINT (bad pattern),
 * POOL_ECONFIG (too many sections) or POOL_ENOMEM; on failure cfg is
 * unchanged. ud must stay valid while a pool made from cfg exists. */
POOL_API int pool_config_set_hooks(pool_config_t *cfg, const char *endpoint,
                                   const pool_hooks_t *hooks);

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

/* A new TCP socket for endpoint that the CALLER connects: for libraries
 * that connect their own sockets (libcurl's CURLOPT_OPENSOCKETFUNCTION),
 * so that the pool still opens them, with the endpoint's socket options
 * (TCP_NODELAY, tcp_keepalive*, tcp_user_timeout_ms, the next
 * source_address, local_port_range), counts them under its caps and
 * retires them by the endpoint's policy. family: AF_INET or AF_INET6, as
 * the caller's resolver chose (it must be an IP literal's own family);
 * AF_UNSPEC: the literal's (POOL_EINVAL for a host name). A unix:
 * endpoint gets an AF_UNIX socket (family AF_UNSPEC or AF_UNIX).
 * The socket is blocking, close-on-exec, not connected. It takes an
 * endpoint slot and a max_total slot without waiting: POOL_EBUSY at a
 * cap. On success *out is checked out to the caller, valid until
 * pool_put(), which takes it back: POOL_RETIRE tears it down by the
 * policy (peer-first: the close request, then the server's EOF), and
 * POOL_REUSE keeps it for pool_get callers if it is connected and alive
 * (and its endpoint has no on_connect hook, which never ran on it:
 * retired then). A socket never connected is just closed, whatever the
 * mode. on_connect does not run. Counted in the stats' connects.
 * Returns 0, POOL_EINVAL, POOL_EENDPOINT, POOL_ESHUTDOWN, POOL_EBUSY,
 * or the codes pool_get gives when a socket cannot be made
 * (POOL_EMFILE, POOL_ENOMEM, POOL_ECONNECT for a source_address that
 * cannot be bound). See pool_socket(3). */
POOL_API int pool_socket(pool_t *pool, const char *endpoint, int family,
                         pool_conn_t **out);

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

/* How many times conn has been handed out, this hand-out included: 1 on
 * its first pool_get, whether it was connected for that pool_get or
 * warm (min_idle). Unlike pool_conn_reused(), which says whether the
 * connection existed before this pool_get. 0 for NULL. */
POOL_API unsigned pool_conn_uses(const pool_conn_t *conn);

/* The application's data attached to conn (NULL until set). It stays
 * with the connection across pool_put()/pool_get(). */
POOL_API void *pool_conn_data(const pool_conn_t *conn);

/* Attach data to conn (checked out, or in on_connect). free_fn (may be
 * NULL) runs exactly once, in whichever thread retires the connection,
 * after its socket is closed (after a peer-first drain), with no lock
 * held; never while conn is checked out. It must not touch the
 * descriptor, which is closed by then. Not run for connections still
 * checked out at pool_destroy (their holder owns fd and data). A child of
 * fork() frees its copy of inherited connections' data at its first pool
 * call (the forking thread's own at their pool_put). Replacing data does not
 * free the old: whoever replaces it owns it (data NULL detaches). Ignored
 * for NULL conn. */
POOL_API void pool_conn_set_data(pool_conn_t *conn, void *data,
                                 void (*free_fn)(void *data));

/* The value of configuration key `key` in effect for conn's endpoint
 * ([pool] overridden by its section), written into buf as a config file
 * would hold it after '=' (a close_request quoted and escaped, an unset
 * path as ""). Like snprintf: returns the length of the whole text, and
 * writes at most len bytes, NUL included (buf may be NULL when len is 0);
 * a close_request that does not fit is not written at all (buf gets "").
 * POOL_EINVAL for a NULL argument or an unknown key. For hooks that act
 * on keys of their own, such as libtcpool-tls's tls_* keys. */
POOL_API int pool_conn_setting(const pool_conn_t *conn, const char *key,
                               char *buf, size_t len);

/* The close_request bytes in effect for conn's endpoint (they may hold
 * NUL bytes: *len, when not NULL, gets their count), or NULL and 0 when
 * none is set or conn is NULL. Valid while conn is checked out or inside
 * its hooks; owned by the pool. For a close_request hook that sends the
 * same request another way, such as through TLS. */
POOL_API const char *pool_conn_close_request(const pool_conn_t *conn,
                                             size_t *len);

/* Log msg (one line, without a newline) at level (POOL_LOG_WARN or
 * POOL_LOG_INFO) through the log callback of conn's pool, as the pool's
 * own lines go (pool_set_log; stderr by default): for hooks, which have
 * a connection but not its pool, to say why they failed. Ignored when
 * conn or msg is NULL. */
POOL_API void pool_conn_log(const pool_conn_t *conn, int level, const char *msg);

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

/* Set the log callback on a configuration: pool_create() logs through it
 * why it failed (a bad $TCPOOL_CONFIG file, a broken cross-key rule), and
 * the pool starts with it, so nothing is logged to stderr before
 * pool_set_log() could be called. NULL restores the default (stderr).
 * Copied with the configuration; ud is the caller's. */
POOL_API void pool_config_set_log(pool_config_t *cfg, pool_log_fn fn, void *ud);

/* ---- statistics ------------------------------------------------------- */

typedef struct pool_stats {
	uint64_t gets;               /* successful pool_get calls */
	uint64_t reuses;             /* ... served by an idle connection */
	uint64_t connects;           /* connections opened (pool_socket's
	                              * sockets included) */
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

/* ---- event loops ------------------------------------------------------ */

/* One acquire in progress, for programs that must not block
 * (pool_get_start(3)). */
typedef struct pool_pending pool_pending_t;

POOL_API int pool_get_start(pool_t *pool, const char *endpoint,
                            pool_conn_t **out, pool_pending_t **pend);
POOL_API int pool_pending_fd(const pool_pending_t *pend, short *events);
POOL_API int pool_get_finish(pool_t *pool, pool_pending_t *pend,
                             pool_conn_t **out);
POOL_API void pool_get_cancel(pool_t *pool, pool_pending_t *pend);

/* Retire the idle connections of endpoint (NULL: of every endpoint) now,
 * by their policy, and the checked-out ones at their pool_put. */
POOL_API int pool_flush(pool_t *pool, const char *endpoint);

/* ---- metrics ----------------------------------------------------------- */

#define POOL_FORMAT_PROMETHEUS 1 /* Prometheus text exposition format 0.0.4 */

/* The pool's metrics as text in buf (len bytes, NUL-terminated when len
 * > 0). Returns the length the whole text needs, without the NUL, as
 * snprintf does, or a negative POOL_E* code. */
POOL_API int pool_stats_format(pool_t *pool, char *buf, size_t len, int format);

/* Why a connection went: the reason label of tcpool_retired_total, the
 * reason of a POOL_EVENT_RETIRE. New reasons are appended. */
enum pool_reason {
	POOL_REASON_IDLE_TIMEOUT, /* idle_timeout_ms */
	POOL_REASON_LIFETIME,     /* max_lifetime_ms */
	POOL_REASON_MAX_USES,     /* max_uses */
	POOL_REASON_SURPLUS,      /* idle above max_idle (idle_shrink_ms) */
	POOL_REASON_USER,         /* pool_put(POOL_RETIRE) */
	POOL_REASON_BROKEN,       /* pool_put(POOL_BROKEN) */
	POOL_REASON_FLUSH,        /* pool_flush */
	POOL_REASON_DNS,          /* its address is no longer listed */
	POOL_REASON_PEER_CLOSED,  /* the server closed it while idle */
	POOL_REASON_STALE,        /* found dead at pool_get */
	POOL_REASON_DESTROY,      /* pool_destroy */
	POOL_REASON_EVICTED,      /* evicted under max_total */
	POOL_REASON_HOOK,         /* the on_connect hook failed */
	POOL_REASON_COUNT         /* of this header's version */
};

/* Teardown policies, as configured (teardown = ...). */
enum pool_policy {
	POOL_POLICY_CLOSE,
	POOL_POLICY_ABORT,
	POOL_POLICY_PEER_FIRST,
	POOL_POLICY_COUNT
};

/* Why a peer-first close fell back. New causes are appended. */
enum pool_fallback {
	POOL_FALLBACK_TIMEOUT, /* no EOF within close_timeout_ms */
	POOL_FALLBACK_SEND,    /* the close request could not be sent whole */
	POOL_FALLBACK_HOOK,    /* the close_request hook returned < 0 */
	POOL_FALLBACK_BUDGET,  /* the server sent too much without closing */
	POOL_FALLBACK_UNREAD,  /* too much waited unread: nothing was sent */
	POOL_FALLBACK_NOWAIT,  /* no room to track the drain */
	POOL_FALLBACK_BROKEN,  /* pool_put(POOL_BROKEN): no request, by design */
	POOL_FALLBACK_COUNT
};

/* What happened (pool_event.type). New types are appended. */
enum pool_event_type {
	POOL_EVENT_CONNECT = 1, /* a connect ended: rc, duration_ns */
	POOL_EVENT_RETIRE,      /* a connection goes: reason, policy, its age
	                         * in duration_ns */
	POOL_EVENT_FALLBACK,    /* peer-first fell back: reason is a
	                         * pool_fallback, policy the fallback's, the
	                         * drain's time in duration_ns */
	POOL_EVENT_BACKOFF      /* connects back off: the delay in duration_ns */
};

/* One event. Valid during the callback only. The library fills `size`
 * with sizeof of its own struct: fields are only ever appended, so a
 * callback built against an older header reads the ones it knows, and
 * one built against a newer header checks size before reading a field
 * that an older library would not have (offsetof(pool_event_t, f) <
 * ev->size). */
typedef struct pool_event {
	size_t size;
	int type;                /* enum pool_event_type */
	int rc;                  /* CONNECT: 0 or a POOL_E* code; else 0 */
	const char *endpoint;    /* as passed to pool_get */
	int reason;              /* RETIRE: pool_reason; FALLBACK: pool_fallback; else -1 */
	int policy;              /* RETIRE, FALLBACK: pool_policy; else -1 */
	uint64_t duration_ns;
} pool_event_t;

typedef void (*pool_event_fn)(const pool_event_t *ev, void *ud);

/* Call fn for every event of the pool (fn NULL: none). It runs in the
 * thread where the event happened (pool_get's caller, pool_put's, the
 * maintenance thread, pool_destroy's) with no pool lock held, and must
 * return quickly. It may call pool_stats(), pool_stats_ex(),
 * pool_stats_foreach(), pool_stats_format() and the *_name() functions
 * below, and nothing else of the pool: see pool_set_event_fn(3). */
POOL_API void pool_set_event_fn(pool_t *pool, pool_event_fn fn, void *ud);

/* Names as the Prometheus labels and the configuration spell them
 * ("idle_timeout", "peer-first", "timeout", "retire"); "unknown" for a
 * value out of range. Static storage. */
POOL_API const char *pool_reason_name(int reason);
POOL_API const char *pool_policy_name(int policy);
POOL_API const char *pool_fallback_name(int why);
POOL_API const char *pool_event_name(int type);

/* Histograms: log2 buckets of microseconds, bucket i counting durations
 * of at most 2^i us (1 us .. 2^26 us, 67 s), the last one the rest. */
#define POOL_HIST_BUCKETS 28
enum pool_hist {
	POOL_HIST_ACQUIRE,  /* pool_get beyond the idle fast path */
	POOL_HIST_CONNECT,  /* successful connects */
	POOL_HIST_DRAIN,    /* peer-first: close request to EOF or fallback */
	POOL_HIST_LIFETIME, /* connections' age at retirement */
	POOL_HIST_COUNT
};

typedef struct pool_hist_data {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t bucket[POOL_HIST_BUCKETS]; /* not cumulative */
} pool_hist_data_t;

/* What pool_stats_t has no room for. ABI: fields are only appended, and
 * pool_stats_ex fills min(size, its own sizeof) bytes, so a caller built
 * against an older header gets the fields it knows. */
typedef struct pool_stats_ex {
	pool_stats_t base;          /* as pool_stats() gives it */
	uint64_t backoffs;          /* backoff periods started */
	uint64_t backoff_rejects;   /* calls failed with POOL_EBACKOFF */
	uint64_t connect_waits;     /* callers that waited for max_connecting */
	uint64_t resolves;          /* name lookups finished */
	uint64_t resolve_failures;  /* lookups that failed, and waits for
	                             * one cut by resolve_timeout_ms (the
	                             * lookup itself may end later): not
	                             * a subset of resolves */
	uint64_t resolve_timeouts;  /* ... of them, those cut by
	                             * resolve_timeout_ms */
	uint64_t dns_changes;       /* refreshes that changed the addresses */
	uint64_t flushes;           /* pool_flush calls that covered it */
	/* retirements by reason and policy (13 reasons in this version) */
	uint64_t retired[13][POOL_POLICY_COUNT];
	pool_hist_data_t hist[POOL_HIST_COUNT];
	uint64_t cache_gets;        /* pool_get calls served from the calling
	                             * thread's own cache (thread_cache) */
} pool_stats_ex_t;

/* Fill out (size bytes: sizeof(pool_stats_ex_t) of the caller's header)
 * for endpoint, or for the whole pool when endpoint is NULL (endpoints
 * forgotten since included, as in pool_stats). Returns 0, or POOL_EINVAL
 * (a NULL argument, size below sizeof(pool_stats_t), an endpoint the
 * pool does not know). */
POOL_API int pool_stats_ex(pool_t *pool, const char *endpoint,
                           pool_stats_ex_t *out, size_t size);

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
