/*
 * DNS refresh (dns_refresh_ms): a name that moves to other addresses
 * must not leave the pool talking to the old ones until max_lifetime_ms
 * (golang/go#23427, HikariCP#314, pgbouncer#882). The maintenance
 * re-resolves the names of endpoints that have connections, never
 * waiting for a lookup (resolve.c runs it, and wakes the maintenance
 * when it ends), and checks each connection's peer against the new
 * list: an idle one no longer listed is retired at once by its policy,
 * a checked-out one at its pool_put (doomed), reason RR_DNS.
 *
 * A refresh that fails keeps the connections: a DNS outage is no reason
 * to drop working connections.
 *
 * The shard lock is a spin lock that pool_get and pool_put take (lock.h):
 * nothing that can block or sleep runs under it. So a sweep goes in
 * three steps per shard: under the lock, pin the endpoints due (a pin
 * keeps the maintenance from forgetting one, pool-internal.h); with no
 * shard lock, ask the resolver (its mutex, a lookup's allocation, a
 * thread's start); then under the lock again, only for an endpoint that
 * got a new address list, compare its connections' peers, recorded at
 * connect time (conn_new), with the list: memory only, no system call.
 * The connections are walked there, under the lock, so only those still
 * open are touched.
 */
#include <stdlib.h>

#include "park.h"
#include "resolve.h"

/* Endpoints pinned at once per shard without an allocation; a shard with
 * more gets a bigger array (outside the lock). */
#define PINS_ON_STACK 32
/* When the array cannot grow: the rest is looked at again this soon. */
#define RETRY_NS MS_TO_NS(100)

/* A connection to an address set no longer lists. One whose peer is not
 * known (a pool_socket connection) is left to the other checks. */
static bool conn_unlisted(const struct pool_conn *c, const struct addr_set *set)
{
	if (c->peer.sa.sa_family != AF_INET && c->peer.sa.sa_family != AF_INET6)
		return false;
	return !addr_set_has(set, &c->peer);
}

/* Shard lock held: take ep's idle connections that set no longer lists
 * onto *retire, doom its checked-out ones. True if any was found. */
static bool apply_set(struct pool_endpoint *ep, const struct addr_set *set,
		      struct pool_conn **retire)
{
	struct pool_conn *c, *tmp;
	bool found = false;

	DL_FOREACH_SAFE(ep->idle, c, tmp) {
		if (!conn_unlisted(c, set))
			continue;
		idle_remove(ep->pool, ep, c);
		c->retire_why = RR_DNS;
		DL_APPEND(*retire, c);
		found = true;
	}
	DL_FOREACH(ep->busy, c) {
		if (c->doomed || !conn_unlisted(c, set))
			continue;
		c->retire_why = RR_DNS;
		/* Read without the lock by pool_conn_last_use: the reason
		 * first, the flag published after it. */
		__atomic_store_n(&c->doomed, true, __ATOMIC_RELEASE);
		/* Parked in a thread's cache, perhaps: the end of this
		 * sweep takes it back (park_sweep). */
		park_note_doom(ep->pool);
		found = true;
	}
	return found;
}

/* Endpoints whose names the maintenance refreshes: those with
 * connections, open or being opened (nactive). */
static bool wants_refresh(const struct pool_endpoint *ep)
{
	return ep->set.dns_refresh_ms && ep->addr.kind == EP_TCP && ep->nactive &&
	       !resolve_is_literal(ep->addr.host);
}

/* Step one: pin up to cap of sh's endpoints due into eps. Returns how
 * many are due (more than cap: the rest were not pinned). */
static size_t pin_due(struct shard *sh, struct pool_endpoint **eps, size_t cap)
{
	struct pool_endpoint *ep, *tmp;
	size_t n = 0;

	plock_lock(&sh->lock);
	HASH_ITER(hh, sh->table, ep, tmp) {
		if (!wants_refresh(ep))
			continue;
		if (n < cap) {
			ep->pins++;
			eps[n] = ep;
		}
		n++;
	}
	plock_unlock(&sh->lock);
	return n;
}

/* Steps two and three for one pinned endpoint (no lock held on entry):
 * the resolver, then the counts and the check, and the pin given back. */
static void refresh_one(struct pool *pool, struct pool_endpoint *ep,
			uint64_t now, uint64_t *due, struct pool_conn **retire)
{
	struct refresh_result res;
	uint64_t next = resolve_refresh(pool, ep, now, &res);

	if (next && next < *due)
		*due = next;
	plock_lock(&ep->shard->lock);
	ep->xstats.resolves += res.resolves;
	ep->xstats.resolve_failures += res.failures;
	ep->xstats.dns_changes += res.changes;
	/* Counted once per refresh: the list changed, or it no longer
	 * holds an address the pool is connected to. */
	if (res.fresh && apply_set(ep, res.fresh, retire) && !res.changes)
		ep->xstats.dns_changes++;
	ep->pins--;
	plock_unlock(&ep->shard->lock);
	addr_set_unref(res.fresh);
}

/* A bigger array for n endpoints (the stack's is never freed here); false
 * when out of memory, *eps and *cap unchanged. */
static bool pins_grow(struct pool_endpoint ***eps, size_t *cap, size_t n,
		      struct pool_endpoint **stack)
{
	struct pool_endpoint **more;

	more = realloc(*eps == stack ? NULL : *eps, n * sizeof(*more));
	if (!more)
		return false;
	*eps = more;
	*cap = n;
	return true;
}

static void refresh_shard(struct pool *pool, struct shard *sh, uint64_t now,
			  uint64_t *due, struct pool_conn **retire,
			  struct pool_endpoint ***eps, size_t *cap,
			  struct pool_endpoint **stack)
{
	size_t i, n;

	for (;;) {
		n = pin_due(sh, *eps, *cap);
		for (i = 0; i < n && i < *cap; i++)
			refresh_one(pool, (*eps)[i], now, due, retire);
		if (n <= *cap)
			return;
		/* More than fit: again with room for all (a second look at
		 * the first ones finds nothing new and starts nothing). */
		if (!pins_grow(eps, cap, n + n / 2, stack)) {
			if (now + RETRY_NS < *due)
				*due = now + RETRY_NS;
			return;
		}
	}
}

void dns_refresh_sweep(struct pool *pool, uint64_t now, uint64_t *due)
{
	struct pool_endpoint *stack[PINS_ON_STACK], **eps = stack;
	struct pool_conn *retire = NULL, *c, *tmp;
	size_t cap = PINS_ON_STACK;
	uint64_t gc;
	unsigned i;

	for (i = 0; i < POOL_NSHARDS; i++)
		refresh_shard(pool, &pool->shards[i], now, due, &retire,
			      &eps, &cap, stack);
	if (eps != stack)
		free(eps);
	/* Teardowns (a peer-first drain's send, an abort) outside the lock. */
	DL_FOREACH_SAFE(retire, c, tmp) {
		DL_DELETE(retire, c);
		conn_retire(pool, c, false, RR_DNS);
	}
	gc = resolve_gc(pool, now);
	if (gc && gc < *due)
		*due = gc;
}
