/*
 * Internal structures of libtcpool. Nothing here is part of the ABI.
 *
 * Data flows one way: config -> pool -> endpoint -> connection -> socket.
 * Locking (see pool.c for the order):
 *  - struct shard.lock guards the shard's endpoint table and, for every
 *    endpoint in it, the idle list, the counts, the waiters and the stats.
 *  - pool->total is atomic: it counts open sockets pool-wide (peer-first
 *    drains included) for max_total without a pool-wide lock on the hot
 *    path.
 *  - pool->wait_lock guards the waiters; it is never taken, nor a waiter
 *    signalled, while a shard lock is held (see wait.c).
 *  - pool->reaper.lock guards the drain list (peer-first drains under way).
 */
#ifndef TCPOOL_POOL_INTERNAL_H
#define TCPOOL_POOL_INTERNAL_H

#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "lock.h"
#include "tcpool.h"

/* uthash must never call exit() inside a library. */
#define HASH_NONFATAL_OOM 1
#include <uthash.h>
#include <utlist.h>

#define POOL_MAX_HOST 256
#define POOL_MAX_PATH 108 /* sizeof(sockaddr_un.sun_path) */

/* ---- endpoint strings (endpoint.c) ---- */

enum endpoint_kind { EP_TCP, EP_UNIX };

struct endpoint_addr {
	enum endpoint_kind kind;
	char host[POOL_MAX_HOST]; /* without brackets; "*" when a wildcard */
	uint16_t port;
	char path[POOL_MAX_PATH]; /* EP_UNIX only */
	bool wildcard_host;
};

/* Parse "host:port", "[v6]:port" or "unix:/path". With allow_wildcard the
 * host may be "*" (config section patterns). Returns 0 or POOL_EENDPOINT;
 * err (optional) gets a reason such as "port out of range". */
int endpoint_parse(const char *s, bool allow_wildcard,
                   struct endpoint_addr *out, char *err, size_t errlen);

/* ---- settings and configuration (config.c) ---- */

enum pool_teardown { TEARDOWN_CLOSE, TEARDOWN_ABORT, TEARDOWN_PEER_FIRST };

/* source_address: local addresses, bound in turn (connect.c). Inline, so
 * settings stay plain values that copy with "=". */
#define POOL_MAX_SOURCES 16
union pool_sockaddr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/* The length bind() and getnameinfo() expect for a's family. */
static inline socklen_t sockaddr_len(const union pool_sockaddr *a)
{
	return a->sa.sa_family == AF_INET ? sizeof(a->in) : sizeof(a->in6);
}
struct pool_sources {
	uint32_t n;
	union pool_sockaddr addr[POOL_MAX_SOURCES];
};

/* local_port_range as IP_LOCAL_PORT_RANGE takes it: HI << 16 | LO. */
#define PORT_RANGE(lo, hi) ((uint32_t)(hi) << 16 | (uint32_t)(lo))
#define PORT_RANGE_LO(r) ((r) & 0xffffu)
#define PORT_RANGE_HI(r) ((r) >> 16)
enum pool_maint_mode { MAINT_THREAD, MAINT_MANUAL };

/* The effective settings of one endpoint. */
struct pool_settings {
	enum pool_teardown teardown;
	char *close_request;       /* owned; NULL when unset */
	size_t close_request_len;  /* may contain NUL bytes */
	uint32_t close_timeout_ms;
	enum pool_teardown fallback; /* TEARDOWN_ABORT or TEARDOWN_CLOSE */
	uint32_t max_idle;
	uint32_t max_active;       /* 0 = no cap */
	uint32_t idle_timeout_ms;  /* 0 = never */
	uint32_t max_lifetime_ms;  /* 0 = never */
	uint32_t lifetime_jitter_pct;
	uint32_t max_uses;         /* 0 = no cap */
	uint32_t connect_timeout_ms;
	uint32_t acquire_timeout_ms;
	uint32_t validate_idle_ms; /* 0 = always */
	uint32_t min_idle;         /* connections kept open, idle or not */
	uint32_t leak_warn_ms;     /* 0 = off */
	uint32_t idle_shrink_ms;   /* surplus idle: period; 0 = at pool_put */
	bool watch_idle;           /* idle sockets in the maintenance's epoll set */
	bool tcp_keepalive;        /* SO_KEEPALIVE, with the three below */
	uint32_t tcp_keepalive_idle_ms;
	uint32_t tcp_keepalive_interval_ms;
	uint32_t tcp_keepalive_count;
	uint32_t tcp_user_timeout_ms; /* 0 = off */
	uint32_t local_port_range; /* PORT_RANGE(lo, hi); 0 = unset */
	/* Event loops and a changing network (issue 11). */
	uint32_t resolve_timeout_ms;   /* bound on one name resolution */
	uint32_t dns_refresh_ms;       /* cache lifetime and re-resolve period; 0 = off */
	uint32_t happy_eyeballs_ms;    /* RFC 8305 connection attempt delay */
	uint32_t connect_backoff_ms;   /* first backoff after a failed connect; 0 = off */
	uint32_t connect_backoff_max_ms;
	uint32_t max_connecting;       /* connects in flight per endpoint; 0 = no cap */
	bool thread_cache;             /* a thread keeps its last connection (park.c) */
	struct pool_sources source_address;
	/* TLS: read by libtcpool-tls through pool_conn_setting(); the core
	 * only keeps them. Last: off the hot path's fields. Strings owned;
	 * NULL when unset. */
	char *tls_ca_file;         /* NULL: the system's CA store */
	char *tls_server_name;     /* NULL: the endpoint's host when a name */
	char *tls_cert_file;       /* client certificate; NULL: none */
	char *tls_key_file;        /* its key; NULL: in tls_cert_file */
	bool tls;
	bool tls_verify;
};

/* One [endpoint PATTERN] section: the keys it sets override the defaults. */
struct pool_section {
	char *pattern;
	struct endpoint_addr addr; /* parsed pattern */
	struct pool_settings set;
	uint64_t set_mask;         /* bit i: key i of the key table was set */
	int line;
	pool_hooks_t hooks;        /* pool_config_set_hooks; when hooks_set */
	bool hooks_set;            /* replaces [pool]'s hooks */
};

struct pool_config {
	uint32_t max_total;        /* 0 = no cap */
	enum pool_maint_mode maintenance;
	struct pool_settings defaults; /* built-in defaults plus [pool] keys */
	struct pool_section *sections;
	size_t nsections;
	pool_hooks_t hooks;        /* [pool]'s, when hooks_set */
	bool hooks_set;
	pool_log_fn log_fn;        /* pool_config_set_log; NULL: stderr */
	void *log_ud;
};

/* A deep copy, or NULL when out of memory. */
struct pool_config *config_copy(const struct pool_config *cfg);

/* The effective settings for an endpoint: [pool] defaults overridden by
 * the best matching section (an exact host beats "*"). Its strings
 * (close_request, the tls_* paths) are fresh copies the caller frees
 * with settings_release(). */
int config_resolve(const struct pool_config *cfg,
                   const struct endpoint_addr *addr,
                   struct pool_settings *out);
void settings_release(struct pool_settings *s);

/* Call fn on [pool]'s settings, then on each section's effective ones,
 * with the section's name for messages ("[pool]", "[endpoint P]");
 * stops at, and returns, the first non-zero fn returns. */
int config_each_settings(const struct pool_config *cfg,
			 int (*fn)(const struct pool_settings *s,
				   const char *where, void *ud),
			 void *ud);
/* The hooks of the same section (pool_config_set_hooks), or NULL: points
 * into cfg, so valid as long as cfg is unchanged (a pool's own copy). */
const pool_hooks_t *config_resolve_hooks(const struct pool_config *cfg,
                                         const struct endpoint_addr *addr);

/* Configured name of a policy ("close", "abort", "peer-first"). */
const char *teardown_name(enum pool_teardown t);

/* ---- clock ---- */

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The hot path's clock: the last scheduler tick, ~4 ms coarse but ten times
 * cheaper than CLOCK_MONOTONIC here. Idle timestamps need no more. It
 * never runs ahead of now_ns(), so a deadline computed from it is never
 * late, at most a tick early. */
static inline uint64_t now_coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define MS_TO_NS(ms) ((uint64_t)(ms) * 1000000u)

/* The timeout for poll(2), epoll_wait(2) and the like that ends no
 * earlier than deadline_ns: the time left rounded up to whole ms, and
 * clamped to [0, INT_MAX]. Every _ms key takes up to UINT32_MAX (49.7
 * days), more than an int holds, and a negative timeout would mean
 * "forever": a wait clamped to INT_MAX ms (24.8 days) is simply waited
 * again. Waits recompute it after each wake-up (EINTR included), so a
 * steady rate of signals cannot postpone a deadline. */
static inline int deadline_ms(uint64_t deadline_ns, uint64_t now)
{
	uint64_t ns, ms;

	if (deadline_ns <= now)
		return 0;
	ns = deadline_ns - now;
	ms = ns / 1000000u + (ns % 1000000u != 0);
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* ---- sockets (connect.c) ---- */

struct pool_endpoint;

/* Open a connected, close-on-exec socket to ep's address, trying every
 * resolved address in order, each bounded by the time left until
 * deadline_ns, with ep's socket options and, for TCP, its next source
 * address. Returns the fd, or a negative POOL_E* code with errno set; a
 * source address that cannot be bound (not local) is POOL_ECONNECT with
 * errno EADDRNOTAVAIL, apart from POOL_EADDRNOTAVAIL (no free port). */
int socket_connect(struct pool_endpoint *ep, uint64_t deadline_ns);
/* pool_socket: a blocking, close-on-exec socket for ep, NOT connected,
 * with exactly the options socket_connect gives its sockets (same code;
 * TCP: the next source address, bound with IP_BIND_ADDRESS_NO_PORT).
 * family: AF_INET or AF_INET6 (ignored for a unix endpoint: AF_UNIX).
 * Returns the fd, or the negative POOL_E* code socket_connect would give
 * for the same cause, with errno set. */
int socket_unconnected(struct pool_endpoint *ep, int family);
/* What the refill thread adds to a connect: it is given up as soon as
 * cancel_fd (-1: none) is readable (POOL_ESHUTDOWN, errno ECANCELED), and
 * with lock set, the socket being connected is kept in *inflight (-1
 * when none) under lock, for the atfork child handler. */
struct connect_ctl {
	int cancel_fd;
	pthread_mutex_t *lock;
	int *inflight;
};
int socket_connect_ctl(struct pool_endpoint *ep, uint64_t deadline_ns,
		       const struct connect_ctl *ctl);
/* What the kernel must support for cfg: local_port_range needs
 * IP_LOCAL_PORT_RANGE (Linux 6.3), probed on a throwaway socket. 0, or
 * POOL_ENOTSUP with err (optional) saying which key. */
int socket_check_support(const struct pool_config *cfg, char *err, size_t errlen);
/* tcpool check-config: every source_address must be an address of this
 * host (bound on a throwaway socket). 0, or POOL_ECONFIG with err. */
int socket_check_sources(const struct pool_config *cfg, char *err, size_t errlen);
/* Tests: pretend the IP_LOCAL_PORT_RANGE probe failed with this errno. */
extern int socket_probe_fake_errno;
/* Close fd, a socket socket_connect_ctl returned, and clear *inflight
 * under the same lock hold. */
void connect_ctl_close(const struct connect_ctl *ctl, int fd);

/* Liveness of an idle socket: true when nothing is waiting and the peer
 * has neither closed nor reset it. */
bool socket_is_alive(int fd);

/* ---- teardown (teardown.c) ---- */

/* Outcome of one step of a peer-first drain. */
enum drain_status {
	DRAIN_AGAIN,   /* nothing more to read now; wait for POLLIN */
	DRAIN_EOF,     /* the server closed (EOF or reset): close now */
	DRAIN_FAILED   /* the drain cannot finish: apply the fallback */
};

/* Close fd at once: plain close() or abortive (RST) close. */
void teardown_now(int fd, enum pool_teardown how);
/* Close fd by a peer-first fallback: for a plain close, first read what
 * is waiting (within *budget), or close() would send an RST. Returns true
 * if the server turned out to have closed. */
bool teardown_fallback(int fd, enum pool_teardown how, size_t *budget);

/* Send the configured close request bytes (non-blocking): DRAIN_AGAIN
 * when sent whole, DRAIN_EOF if the peer is gone, DRAIN_FAILED if there
 * are none or they could not be sent whole. */
enum drain_status drain_send(int fd, const struct pool_settings *s);

/* Read and discard what the server sent; *budget bounds the bytes read
 * over the whole drain so a peer cannot keep us reading forever. */
enum drain_status drain_step(int fd, size_t *budget);

/* Bytes a drain may discard before it gives up and falls back. */
#define DRAIN_BUDGET (256u * 1024u)

/* Why a peer-first retirement fell back (for the log). */
enum fallback_why {
	FB_TIMEOUT,  /* no EOF within close_timeout_ms */
	FB_SEND,     /* the close request bytes could not be sent whole */
	FB_HOOK,     /* the close_request hook returned < 0 */
	FB_BUDGET,   /* the server sent more than DRAIN_BUDGET, no EOF */
	FB_UNREAD,   /* more than DRAIN_BUDGET waited unread: none sent */
	FB_NOWAIT    /* no room to track the drain (memory, descriptors) */
};

/* A warning logged at once the first time, then at most once a period,
 * with how many happened meanwhile (under the owner's lock). */
struct ratelimit {
	uint64_t last_ns;          /* when last logged; 0: never */
	uint32_t quiet;            /* occurrences since, not logged */
};

#define RATELIMIT_NS MS_TO_NS(60000)

/* ---- the pool ---- */

struct pool_conn {
	int fd;
	uint32_t magic;            /* CONN_MAGIC_OUT while checked out */
	struct pool *pool;
	struct pool_endpoint *ep;  /* kept while it has connections */
	uint64_t created_ns;
	uint64_t expires_ns;       /* lifetime with jitter; 0 = never */
	uint64_t last_put_ns;      /* when it went idle */
	uint64_t got_ns;           /* when it was last handed out */
	uint32_t uses;             /* hand-outs so far */
	bool reused;
	bool leak_reported;
	bool in_idle;              /* on ep->idle (shard lock) */
	bool peer_gone;            /* the watch saw the peer close while it was
	                            * not idle: never idle again (shard lock) */
	bool doomed;               /* pool_flush or a DNS change: retired at
	                            * its next pool_put (shard lock) */
	uint8_t retire_why;        /* enum retire_reason, for a retirement
	                            * decided under a lock and done later */
	bool unproven;             /* made by pool_socket, connected by the
	                            * caller (or not): checked, and watched,
	                            * at its first POOL_REUSE put (its holder
	                            * only) */
	struct watch *watch;       /* watch_idle registration, or NULL */
	unsigned fork_gen;         /* fork generation it was opened in */
	pthread_t holder;          /* the thread that got it (pool_get):
	                            * a child of fork() keeps only the
	                            * forking thread's ones */
	struct pool_conn *prev, *next; /* idle list (utlist) */
	/* The thread cache (park.h): the slot it is affine to (its shard
	 * lock for changes; read by its holder), and its hand-outs from
	 * there not yet in the endpoint's counters (written by its holder,
	 * relaxed atomics; read under the shard lock). */
	struct park_slot *park;
	uint64_t cache_gets;
	/* pool_conn_set_data: off the hot path, read at retirement only */
	void *data;
	void (*free_fn)(void *data);
	/* What it is connected to, read once at connect (conn_new), for
	 * the DNS refresh to compare under the shard lock without a system
	 * call; sa_family AF_UNSPEC when not known (pool_socket's, unix). */
	union pool_sockaddr peer;
};

#define CONN_MAGIC_OUT  0x7C9001u
#define CONN_MAGIC_IDLE 0x7C9002u
#define CONN_MAGIC_PARKED 0x7C9003u /* in its thread's slot (park.h) */
#define CONN_MAGIC_DEAD 0x7C90DEu

/* A pool_get waiting for a slot (wait.c); lives on the waiter's stack.
 * Other threads touch it only under the lock named, and only while it is
 * queued there. */
struct waiter {
	pthread_cond_t cond;       /* when efd < 0 */
	int efd;                   /* an async acquire's eventfd: kicks
	                            * write it, it never sleeps; -1: none */
	struct pool_endpoint *ep;  /* what it waits for */
	/* under ep's shard lock */
	bool in_wantq;             /* in ep->wantq, for an endpoint slot */
	bool ep_grant;             /* an endpoint slot was handed to it */
	struct waiter *ep_prev, *ep_next; /* ep->wantq */
	/* under pool->wait_lock */
	bool queued;               /* in pool->waiters */
	bool want_total;           /* counted in pool->nwant_total */
	bool grant_total;          /* a max_total slot was handed to it */
	bool kicked;               /* something changed: look again */
	struct pool_conn *handed;  /* a connection handed over directly */
	struct waiter *prev, *next;
	/* its own thread only */
	bool registered_ep;        /* has been in ep->wantq */
	bool has_ep, has_total;    /* slots it holds */
	bool woken;                /* the last wait ended by a kick */
};

/* Observability (obs.c, issue 12): retirements by reason and policy, and
 * log2 histograms. Relaxed atomics, so that a recorder needs no lock
 * (and may hold one); summed on read. Kept per endpoint, and per shard
 * for the pool-wide totals, which outlive forgotten endpoints. Off the
 * idle fast path: nothing here is touched by an idle pool_get/pool_put. */
#define OBS_REASONS 13   /* RR_COUNT (checked in obs.c) */
#define OBS_POLICIES 3   /* enum pool_teardown */
#define OBS_HISTS 4      /* HIST_COUNT (obs.h) */
#define OBS_BUCKETS 28   /* POOL_HIST_BUCKETS */
struct obs_data {
	atomic_uint_fast64_t retired[OBS_REASONS][OBS_POLICIES];
	struct obs_buckets {
		atomic_uint_fast64_t sum_ns;
		atomic_uint_fast64_t bucket[OBS_BUCKETS];
	} hist[OBS_HISTS];
};

struct pool_endpoint {
	char *key;                 /* the endpoint string, hash key */
	struct pool *pool;
	struct endpoint_addr addr;
	struct pool_settings set;
	struct shard *shard;
	struct pool_conn *idle;    /* most recently used first */
	struct pool_conn *busy;    /* checked out (leak warnings, destroy) */
	uint32_t nidle;
	uint32_t nactive;          /* in use + idle + connecting */
	uint32_t nin_use;          /* checked out + pool_get connects */
	uint32_t nconnecting;      /* min_idle refills under way (in
	                            * nactive, not in nin_use) */
	uint64_t shrink_due_ns;    /* next surplus-idle retirement; 0: none */
	uint64_t flushed_ns;       /* the last pool_flush (now_ns): a connection
	                            * opened before it is retired at its put,
	                            * even one that was in no list then (being
	                            * handed from a put to a waiter); written
	                            * under the shard lock, read with atomics */
	uint32_t shrink_left;      /* surplus still to retire this period */
	uint32_t pins;             /* pool_get callers without a slot (evicting
	                            * or waiting), pending acquires, a DNS
	                            * refresh working unlocked: keep the
	                            * endpoint */
	uint64_t quiet_since_ns;   /* when nactive last dropped to 0 */
	atomic_uint source_next;   /* source_address round robin */
	struct waiter *wantq;      /* waiting for a slot here, in order; a
	                            * slot granted to one stays in nactive */
	pool_stats_t stats;
	/* Counters beyond pool_stats_t's ABI (issues 11 and 12), under the
	 * shard lock; exported by stats.c/obs.c. */
	struct ep_xstats {
		uint64_t backoffs;         /* backoff periods started */
		uint64_t backoff_rejects;  /* calls failed with POOL_EBACKOFF */
		uint64_t connect_waits;    /* callers that waited for max_connecting */
		uint64_t resolves;         /* name lookups finished */
		uint64_t resolve_failures; /* ... that failed (timeouts included) */
		uint64_t resolve_timeouts; /* ... that ran out of resolve_timeout_ms */
		uint64_t dns_changes;      /* refreshes whose address list changed */
		uint64_t flushes;          /* pool_flush calls that covered it */
		uint64_t cache_gets;       /* hand-outs from thread caches */
	} xstats;
	/* Connects (issue 11: acquire.c, backoff.c), under the shard lock. */
	uint32_t ndialing;         /* connects in flight, pool_get's and refills' */
	uint32_t backoff_failures; /* failed connects in a row */
	uint64_t backoff_until_ns; /* no new connect before (now_ns); 0: none */
	UT_hash_handle hh;
	/* Last, off the hot path's cache lines; under the shard lock. */
	struct ratelimit fallback_log; /* peer-first fallbacks */
	struct ratelimit hook_log;     /* warm connections' on_connect fails */
	const pool_hooks_t *hooks;     /* NULL: none; in pool->cfg */
	struct obs_data obs;           /* obs.c; after everything else */
};

struct shard {
	plock_t lock;
	struct pool_endpoint *table; /* uthash head */
	unsigned gen;              /* endpoints forgotten so far: a lookup
	                            * record made at another gen is stale */
	pool_stats_t gone;         /* counters of forgotten endpoints */
	/* The warning state of endpoints forgotten within the last minute
	 * (by key hash), given back to a new record of the same key: an
	 * endpoint that goes quiet between retirements must not warn more
	 * than once a minute. A few suffice; the oldest is overwritten. */
	struct warn_memo {
		unsigned hashv;
		struct ratelimit fallback_log, hook_log;
	} memo[4];
	unsigned memo_next;
} __attribute__((aligned(64)));

#define POOL_NSHARDS 16

/* What an epoll event of the reaper's set points to: the first member of
 * both kinds (the wakefd's event has a NULL pointer). */
enum reaper_item { ITEM_DRAIN = 1, ITEM_WATCH,
		   ITEM_REFILL /* manual mode's refill connects (refill.c) */ };

/* A peer-first close under way: waiting for the server's EOF. */
struct drain {
	enum reaper_item item;     /* ITEM_DRAIN */
	int fd;
	uint64_t deadline_ns;
	size_t budget;
	enum pool_teardown fallback;
	struct pool_endpoint *ep;
	void *data;                /* the connection's, freed when it ends */
	void (*free_fn)(void *data);
	bool ok;                   /* outcome, once finished */
	struct drain *prev, *next;
};

/* watch_idle: a connection's socket in the reaper's epoll set, from its
 * connect to its retirement, for EPOLLRDHUP only and edge-triggered, so
 * that nothing but the peer's FIN or reset wakes the maintenance, and
 * pool_get/pool_put never touch the set (reaper.c). The runner alone
 * frees a watch, after the batch of events that may name it. */
struct watch {
	enum reaper_item item;     /* ITEM_WATCH */
	int fd;
	struct shard *shard;       /* its endpoint's; shards live as long as
	                            * the pool */
	struct pool_conn *conn;    /* under shard->lock; NULL once unwatched */
	struct watch *next;        /* reaper's dead list (reaper lock) */
};

/* Queued min_idle refills and the thread that connects them (refill.c). */
#define REFILL_QUEUE 64
struct refiller {
	pthread_mutex_t lock;      /* guards everything below */
	pthread_cond_t cond;
	struct pool_endpoint *queue[REFILL_QUEUE]; /* one reserved slot each */
	unsigned n;
	bool running, stop;
	pthread_t thread;
	int cancel_fd;             /* eventfd, made with the thread: readable
	                            * once stopping, to cut a connect short */
	int inflight_fd;           /* the socket being connected, until it is
	                            * idle or closed; -1 when none */
	struct refill_dial *dialing; /* manual mode: connects under way */
};

/* Peer-first drains, progressed by whoever runs the maintenance. */
struct reaper {
	pthread_mutex_t lock;      /* guards list and n */
	pthread_mutex_t run_lock;  /* one runner at a time */
	int epfd;                  /* drains' sockets, plus wakefd */
	int wakefd;                /* eventfd: new work for the maintenance */
	struct drain *list;
	unsigned n;
	struct watch *dead;        /* unwatched, removed from the set, to be
	                            * freed by the runner */
	uint64_t min_deadline_ns;  /* no drain's deadline is earlier; the
	                            * runner wakes by then at the latest */
};

/* Observability per shard (obs.c): pool-wide totals. */
struct obs_shard {
	struct obs_data d;
	struct ep_xstats xgone;    /* xstats of forgotten endpoints (shard
	                            * lock; obs_forget) */
} __attribute__((aligned(64)));

/* The thread cache's slots (park.c). */
struct park_slot;
struct park {
	struct park_slot *slots;   /* PARK_SLOTS of them; NULL: no cache */
	pthread_mutex_t lock;      /* slots' owners, closed */
	atomic_uint nused;         /* slots ever claimed: scans stop there */
	bool closed;               /* pool_destroy began: no more claims */
	atomic_uint dooms;         /* pool_flush / DNS dooms so far */
	atomic_uint dooms_seen;    /* ... acted on by the maintenance */
};

struct pool {
	struct shard shards[POOL_NSHARDS];
	uint64_t serial;           /* unique per pool in this process */
	struct pool_config *cfg;
	atomic_uint total;         /* open connections, for max_total */
	atomic_bool shutting_down;
	pthread_mutex_t wait_lock; /* guards waiters; never taken under a
	                            * shard lock, but by fork.c's atfork */
	struct waiter *waiters;    /* FIFO over all endpoints */
	atomic_uint nwaiters;      /* lets the hot path skip wait_lock */
	atomic_uint nwant_total;   /* waiters for a max_total slot (changed
	                            * under wait_lock, read without) */
	atomic_uint nidle_total;   /* idle connections pool-wide; kept only
	                            * under max_total, for its waiters */
	atomic_uint_fast64_t misuse; /* bad pool_put calls seen */
	struct reaper reaper;
	struct refiller refill;
	pthread_mutex_t log_lock;  /* guards log_fn, log_ud */
	pool_log_fn log_fn;
	void *log_ud;
	/* maintenance (maint.c) */
	pthread_t maint_thread;
	bool maint_running;
	atomic_bool maint_stop;
	atomic_uint_fast64_t maint_due_ns; /* when the thread next wakes */
	/* name resolution (resolve.c): lookups, their threads, the cache */
	struct resolver *resolver;
	/* fork safety (fork.c) */
	unsigned fork_gen;
	atomic_bool fork_retry;    /* a child could not start its reaper or
	                            * maintenance: each call tries again */
	struct pool *reg_next, *reg_prev;
	/* observability (obs.c): the event callback, under event_lock
	 * (zeroed = unlocked, so pool_create needs no change), and the
	 * pool-wide totals */
	atomic_bool event_on;      /* an event_fn is set: skip the lock if not */
	plock_t event_lock;
	pool_event_fn event_fn;
	void *event_ud;
	struct obs_shard obs[POOL_NSHARDS];
	struct park park;
};

/* The shard of an endpoint key's uthash hash value. uthash uses the low
 * bits for its buckets; the high ones pick the shard. */
static inline struct shard *shard_for(struct pool *pool, unsigned hashv)
{
	return &pool->shards[(hashv >> 24) % POOL_NSHARDS];
}

/* When the maintenance must look at an idle connection again: its idle
 * timeout or its end of life, whichever comes first; 0 for never. */
static inline uint64_t conn_idle_due(const struct pool_conn *c)
{
	uint64_t due = 0;

	if (c->ep->set.idle_timeout_ms)
		due = c->last_put_ns + MS_TO_NS(c->ep->set.idle_timeout_ms);
	if (c->expires_ns && (!due || c->expires_ns < due))
		due = c->expires_ns;
	return due;
}

/* How long an endpoint with nothing open, draining or waiting is kept
 * before it is forgotten: its idle timeout, or this when that is 0. */
#define ENDPOINT_FORGET_MS 60000u

static inline uint64_t endpoint_forget_after_ns(const struct pool_endpoint *ep)
{
	return MS_TO_NS(ep->set.idle_timeout_ms ? ep->set.idle_timeout_ms
						: ENDPOINT_FORGET_MS);
}

static inline uint64_t endpoint_forget_due(const struct pool_endpoint *ep)
{
	return ep->quiet_since_ns + endpoint_forget_after_ns(ep);
}

/* nactive dropped (shard lock held): note when it reached 0, and return
 * when the maintenance may forget the endpoint (0: it holds something). */
static inline uint64_t endpoint_note_quiet(struct pool_endpoint *ep)
{
	if (ep->nactive)
		return 0;
	ep->quiet_since_ns = now_coarse_ns();
	return endpoint_forget_due(ep);
}

/* The idle list of an endpoint (shard lock held). Every change goes
 * through these three, so nidle and the pool-wide count stay exact. The
 * pool-wide count is a shared cache line: only kept when max_total makes
 * waiters need it. */
static inline void idle_count(struct pool *pool, struct pool_endpoint *ep, int delta)
{
	ep->nidle += (uint32_t)delta;
	if (pool->cfg->max_total)
		atomic_fetch_add(&pool->nidle_total, (unsigned)delta);
}

static inline void idle_push(struct pool *pool, struct pool_endpoint *ep,
			     struct pool_conn *c, bool most_recent)
{
	c->magic = CONN_MAGIC_IDLE;
	c->in_idle = true;
	if (most_recent)
		DL_PREPEND(ep->idle, c);
	else
		DL_APPEND(ep->idle, c);
	idle_count(pool, ep, 1);
}

static inline void idle_remove(struct pool *pool, struct pool_endpoint *ep,
			       struct pool_conn *c)
{
	DL_DELETE(ep->idle, c);
	c->in_idle = false;
	idle_count(pool, ep, -1);
}

/* Find key in the endpoint table (pool.c). Returns with the key's shard
 * locked (*sh_out), the endpoint or NULL; *hashv_out (if not NULL) gets
 * the key's hash for a following insert. */
struct pool_endpoint *table_lookup(struct pool *pool, const char *key,
				   struct shard **sh_out, unsigned *hashv_out);

/* Forget ep (its shard lock held; it holds nothing and nobody waits for
 * it): its counters join sh->gone and the shard's gen moves on. */
void table_forget(struct shard *sh, struct pool_endpoint *ep);

/* Add the counters (not the gauges) of st to sum (stats.c). */
void stats_add_counters(pool_stats_t *sum, const pool_stats_t *st);

/* Endpoint table (pool.c): the endpoint for key, created with its
 * settings resolved on first use; its shard is locked on success.
 * Endpoints with no connections are forgotten by the maintenance after
 * a while (maint.c), so a pointer to one is only good under its shard
 * lock, while it holds a slot (nactive), a drain or a pin. */
int pool_endpoint_lock(struct pool *pool, const char *key,
		       struct pool_endpoint **ep_out);
static inline void pool_endpoint_unlock(struct pool_endpoint *ep)
{
	plock_unlock(&ep->shard->lock);
}

/* Why a connection was retired or closed (counted per endpoint and
 * policy, see obs.h). */
enum retire_reason {
	RR_IDLE_TIMEOUT,  /* idle_timeout_ms */
	RR_LIFETIME,      /* max_lifetime_ms */
	RR_MAX_USES,      /* max_uses */
	RR_SURPLUS,       /* idle above max_idle: idle_shrink_ms, or at put */
	RR_USER,          /* pool_put(POOL_RETIRE) */
	RR_BROKEN,        /* pool_put(POOL_BROKEN) */
	RR_FLUSH,         /* pool_flush */
	RR_DNS,           /* its address is no longer listed (dns_refresh_ms) */
	RR_PEER_CLOSED,   /* the server closed it while idle (watch_idle) */
	RR_STALE,         /* found dead at pool_get (liveness check) */
	RR_DESTROY,       /* pool_destroy */
	RR_EVICTED,       /* evicted under max_total for another endpoint */
	RR_HOOK,          /* on_connect failed */
	RR_COUNT
};

/* Connection life (conn.c). */
/* conn_new puts c's socket in the idle watch (watch_idle): whoever
 * closes c->fd must take it out first with conn_unwatch, as conn_drop
 * and conn_retire do; conn_free alone is for where no maintenance runs
 * (a child of fork(), pool_destroy's last step). */
struct pool_conn *conn_new(struct pool_endpoint *ep, int fd);
/* conn_new without the watch: for pool_socket's sockets, which are not
 * connected yet (epoll reports EPOLLHUP for an unconnected TCP socket, so
 * the watch would take it for one the server closed). They are watched
 * from their first POOL_REUSE put (checkout.c). */
struct pool_conn *conn_alloc(struct pool_endpoint *ep, int fd);
void conn_free(struct pool_conn *c);
/* Tear c down by its endpoint's policy (broken: never send the close
 * request) and free its slot. Called without any lock held. */
void conn_retire(struct pool *pool, struct pool_conn *c, bool broken,
		 enum retire_reason why);
/* Run a connection's free_fn (if any) on its data: once, after its
 * socket is closed, with no lock held. */
static inline void data_release(void *data, void (*free_fn)(void *data))
{
	if (free_fn)
		free_fn(data);
}
/* Run the on_connect hook of a new connection (no lock held). On
 * failure c is aborted (its socket unpublished from ctl, if not NULL),
 * its data freed and c freed, and POOL_EHOOK returned: its slot is the
 * caller's to release. */
int conn_on_connect(struct pool_conn *c, const struct connect_ctl *ctl);
/* Shard lock held: count a peer-first fallback on ep; true if msg got a
 * warning to log once the lock is dropped (rate-limited). */
bool fallback_count_locked(struct pool_endpoint *ep, enum fallback_why why,
			   char *msg, size_t msglen);
/* Count a peer-first fallback on ep and log it, rate-limited (no lock
 * held; ep still held by the caller's slot or drain). */
void fallback_note(struct pool *pool, struct pool_endpoint *ep,
		   enum fallback_why why);
/* Decide, under the owner's lock, whether an occurrence is logged now:
 * returns 0 for not, else how many it stands for (this one included). */
uint32_t ratelimit_hit(struct ratelimit *rl, uint64_t now);
/* Close c's socket at once and free its slot: for connections found dead,
 * where the peer already closed (no TIME_WAIT either way). */
void conn_drop(struct pool *pool, struct pool_conn *c, enum retire_reason why);
/* Free the slots a connection held (shard lock NOT held). */
void slot_release(struct pool *pool, struct pool_endpoint *ep);
/* Give back an endpoint slot, to a waiter for it if one is queued, and
 * unlock ep's shard (held on entry). Never signals under the lock. */
void ep_slot_put_unlock(struct pool *pool, struct pool_endpoint *ep);
/* A connection went idle on ep: wake a waiter for ep (no lock held). */
void waiters_wake_ep(struct pool *pool, struct pool_endpoint *ep);
/* Hand c to the first waiter for its endpoint; false if none waits
 * (no lock held). */
bool waiters_handoff(struct pool *pool, struct pool_conn *c);
/* A connection went idle under max_total: wake a waiter for a max_total
 * slot, which may evict it (no lock held). */
void waiters_wake_total(struct pool *pool);
/* Release a max_total slot: to the first waiter for one, if any. */
void total_release(struct pool *pool);
/* Take a max_total slot, unless waiters are queued for one. */
bool total_reserve(struct pool *pool);
/* Mark when c expires by lifetime, with jitter. */
void conn_set_expiry(struct pool_conn *c, uint64_t now);

/* Peer-first drains (reaper.c). */
int reaper_init(struct reaper *r);
/* The parts of reaper_init: fresh locks, no drain, no descriptor; then
 * the epoll set and its eventfd (POOL_EMFILE or POOL_ESYS, leaving both
 * -1). A child of fork() does the two apart, and retries the second. */
void reaper_init_state(struct reaper *r);
int reaper_open(struct reaper *r);
void reaper_fini(struct reaper *r);
/* Free a list of unwatched watches (r->dead), once nothing can name them. */
void reaper_free_dead(struct watch *w);
/* Track fd until the server's EOF or the deadline; takes the fd, its
 * max_total slot, released when the drain ends, and the connection's
 * data, freed (free_fn) once the socket is closed. */
void reaper_add(struct pool *pool, int fd, struct pool_endpoint *ep,
		void *data, void (*free_fn)(void *data));
/* Progress drains, waiting up to timeout_ms for events; returns the ms
 * until the next drain deadline, or -1 when none is pending. */
int reaper_run(struct pool *pool, int timeout_ms);
unsigned reaper_pending(struct pool *pool);
void reaper_wake(struct pool *pool);
/* watch_idle (reaper.c): put a new connection's socket in the set (when
 * its endpoint watches, and the set exists); take it out before its fd
 * is closed or handed to a drain. No lock held; c is the caller's. */
void conn_watch(struct pool *pool, struct pool_conn *c);
void conn_unwatch(struct pool *pool, struct pool_conn *c);

/* Start a library thread with every signal blocked (thread.c); returns
 * pthread_create's result. */
int thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

/* Maintenance (maint.c). */
int maint_start(struct pool *pool);
void maint_stop(struct pool *pool);
/* One sweep: expire idle/old connections, refill min_idle, warn of
 * leaks; returns when the next sweep is due (absolute ns). */
uint64_t maint_sweep(struct pool *pool, uint64_t now);
/* Tell the thread an expiry at due_ns exists (wakes it if earlier). */
void maint_note_due(struct pool *pool, uint64_t due_ns);

/* min_idle refills (refill.c). */
void refill_init(struct pool *pool);
void refill_submit(struct pool *pool, struct pool_endpoint **eps, unsigned n);
/* Manual mode: take the refills' connects a step further (pool_maintain;
 * never blocks, but a warm connection's on_connect hook may). */
void refill_progress(struct pool *pool);
/* In a child of fork(), from the atfork handler (refill lock held):
 * close the copies of manual refills' sockets, at the fork itself. */
void refill_child_close(struct pool *pool);
/* In a child of fork(): forget manual refills (before refill_init). */
void refill_child_drop(struct pool *pool);
void refill_stop(struct pool *pool);
void refill_fini(struct pool *pool);

/* Fork safety (fork.c). */
int fork_register(struct pool *pool);
void fork_unregister(struct pool *pool);
/* In a child after fork(): drop inherited connections before any use,
 * and start the child's own reaper and maintenance. 0, or POOL_EMFILE /
 * POOL_ESYS while these cannot be made (tried again at each call). */
int fork_check(struct pool *pool);
/* Run fn on the live pool of that serial, under the registry's lock (so
 * pool_destroy waits for it); nothing if there is none. */
void fork_with_pool(uint64_t serial, void (*fn)(struct pool *pool, void *ud),
		    void *ud);

/* A pool_put that could not be honoured (stats.c). */
void pool_note_misuse(struct pool *pool, const struct pool_conn *c);
/* A put, in a child, of a connection inherited over fork(): closes the
 * child's copy of the descriptor only. True when it took care of c. */
bool fork_put_inherited(struct pool *pool, struct pool_conn *c);

/* Logging (pool.c). */
void pool_log(struct pool *pool, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif /* TCPOOL_POOL_INTERNAL_H */
