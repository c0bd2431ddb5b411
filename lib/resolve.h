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

/* The fd that turns readable once req's result is in. */
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

#endif
