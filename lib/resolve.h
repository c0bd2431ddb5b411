/*
 * Name resolution for TCP endpoints (issue 11): off the caller's thread,
 * bounded by resolve_timeout_ms, cached for dns_refresh_ms.
 *
 * The contract between the acquire path (pending.c, connect.c) and the
 * resolver (resolve.c):
 *  - resolve_begin never blocks. An IP literal, or a fresh cached result,
 *    is returned at once; a name otherwise starts (or joins) a lookup.
 *  - A lookup in flight is a struct resolve_req: its fd turns readable
 *    (POLLIN) when the result is in; resolve_req_end then takes it.
 *  - Address sets are immutable and reference counted: a connect in
 *    progress keeps its set while a refresh replaces the endpoint's.
 */
#ifndef TCPOOL_RESOLVE_H
#define TCPOOL_RESOLVE_H
#include "pool-internal.h"

/* The resolved addresses of one endpoint, in getaddrinfo's order, ports
 * set. Never changed once published. */
struct addr_set {
	atomic_uint refs;
	uint64_t resolved_ns;      /* when the lookup ended (now_ns) */
	unsigned n;
	union pool_sockaddr addr[];
};

/* Drop a reference (NULL is fine); the last one frees the set. */
void addr_set_unref(struct addr_set *a);

struct resolve_req;

/* The addresses of ep, a TCP endpoint (no lock held; ep held by the
 * caller's slot or pin). 0 with *out (a reference for the caller);
 * POOL_EINPROGRESS with *req, a lookup under way; or POOL_ENOMEM /
 * POOL_ESYS / POOL_ERESOLVE (errno set). Never blocks. */
int resolve_begin(struct pool *pool, struct pool_endpoint *ep,
		  struct addr_set **out, struct resolve_req **req);

/* The fd that turns readable once req's result is in, or at its
 * deadline, whichever comes first (a timerfd: poll it, never read or
 * close it; it stays readable). resolve_req_end and resolve_req_cancel
 * close it: take it out of an epoll set before calling them. */
int resolve_req_fd(const struct resolve_req *req);

/* When req gives up (now_ns clock): resolve_begin's time plus
 * resolve_timeout_ms. Wait for the fd until then at most. */
uint64_t resolve_req_deadline(const struct resolve_req *req);

/* The result: 0 with *out (a reference); POOL_ERESOLVE (errno ENOENT,
 * or ETIMEDOUT once the deadline passed); POOL_ENOMEM; or
 * POOL_EINPROGRESS while neither result nor deadline is in (req kept).
 * Otherwise req is freed. */
int resolve_req_end(struct resolve_req *req, struct addr_set **out);

/* Give up req at any point: it is freed, now or when its lookup ends. */
void resolve_req_cancel(struct resolve_req *req);

/* The pool's resolver: made with the pool, stopped with it (never
 * joining a lookup that blocks; lookups outlive the pool if they must). */
int resolve_init(struct pool *pool);
void resolve_fini(struct pool *pool);

/* In a child of fork(), at its first pool call: the parent's lookup
 * threads do not exist here, so the child gets a resolver of its own.
 * The parent's requests are freed and the child's copies of their fds
 * closed: none may be used in the child (a pending acquire does not
 * survive fork; a manual refill's dial is dropped before this). */
int resolve_atfork_child(struct pool *pool);

/* True for an IP literal host, which is never looked up nor refreshed. */
bool resolve_is_literal(const char *host);

/* What a refresh of an endpoint brought: counts of finished refresh
 * lookups, for its xstats, and a new address list to check its
 * connections against. */
struct refresh_result {
	struct addr_set *fresh;    /* a reference, or NULL: none came in */
	uint32_t resolves;         /* refresh lookups that ended */
	uint32_t failures;         /* ... failed (timeouts aside) */
	uint32_t changes;          /* ... found the list changed */
};

/* The maintenance's refresh of ep (dns_refresh_ms > 0, ep has
 * connections). No lock held: ep is kept by the caller's pin, and only
 * its constant fields (addr, set) are read; never blocks, but takes the
 * resolver's mutex and may allocate and start a lookup thread, so never
 * under a shard lock. Starts a lookup when the cached addresses expired;
 * *res gets the counts of the refresh lookups finished since the last
 * call, for the caller to add to ep->xstats under the shard lock, and a
 * reference to a set that came in since (res->fresh). Returns when ep
 * must be looked at again (0: when a lookup ends, which wakes the
 * maintenance). */
uint64_t resolve_refresh(struct pool *pool, const struct pool_endpoint *ep,
			 uint64_t now, struct refresh_result *res);
/* Forget cached names no endpoint refreshed lately (no lock held).
 * Returns when the next one may be forgotten (0: none). */
uint64_t resolve_gc(struct pool *pool, uint64_t now);

/* Is a (a connected socket's peer address) in set? */
bool addr_set_has(const struct addr_set *set, const union pool_sockaddr *a);

/* Tests: wait up to ms for every lookup thread of the process to end
 * (they outlive a pool while a lookup blocks). True when none is left. */
bool resolve_threads_wait(int ms);
/* Tests: lookup threads alive in the process now. */
unsigned resolve_threads(void);
/* Tests: names in pool's resolver cache now. */
unsigned resolve_cache_entries(struct pool *pool);
/* Tests: called, when set, with no lock held, where the resolver is
 * about to start a lookup thread (a non-zero return stands for
 * pthread_create's error: the start fails) and where a refresh of an
 * endpoint begins (the return is ignored). */
enum resolve_hook_at { RESOLVE_HOOK_SPAWN, RESOLVE_HOOK_REFRESH };
typedef int (*resolve_hook_fn)(enum resolve_hook_at at);
extern _Atomic(resolve_hook_fn) resolve_test_hook;

/* The maintenance's DNS refresh (dnsrefresh.c), from maint_sweep: for
 * each endpoint due, start a lookup; apply the results that are in.
 * Lowers *due to when it must run again. Never blocks. */
void dns_refresh_sweep(struct pool *pool, uint64_t now, uint64_t *due);

#endif
