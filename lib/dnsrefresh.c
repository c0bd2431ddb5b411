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
 */
#include <sys/socket.h>

#include "resolve.h"

/* A connection to an address set no longer lists (getpeername: what it
 * is really connected to, whatever resolved it). One whose peer cannot
 * be read is left to the other checks. */
static bool conn_unlisted(const struct pool_conn *c, const struct addr_set *set)
{
	union pool_sockaddr peer;
	socklen_t len = sizeof(peer);

	if (c->fd < 0 || getpeername(c->fd, &peer.sa, &len) != 0)
		return false;
	if (peer.sa.sa_family != AF_INET && peer.sa.sa_family != AF_INET6)
		return false;
	return !addr_set_has(set, &peer);
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

static void refresh_shard(struct pool *pool, struct shard *sh, uint64_t now,
			  uint64_t *due, struct pool_conn **retire)
{
	struct pool_endpoint *ep, *tmp;

	plock_lock(&sh->lock);
	HASH_ITER(hh, sh->table, ep, tmp) {
		struct addr_set *fresh;
		bool changed;
		uint64_t next;

		if (!wants_refresh(ep))
			continue;
		next = resolve_refresh(pool, ep, now, &fresh, &changed);
		if (next && next < *due)
			*due = next;
		if (!fresh)
			continue;
		/* Counted once per refresh: the list changed, or it no
		 * longer holds an address the pool is connected to. */
		if (apply_set(ep, fresh, retire) && !changed)
			ep->xstats.dns_changes++;
		addr_set_unref(fresh);
	}
	plock_unlock(&sh->lock);
}

void dns_refresh_sweep(struct pool *pool, uint64_t now, uint64_t *due)
{
	struct pool_conn *retire = NULL, *c, *tmp;
	uint64_t gc;
	unsigned i;

	for (i = 0; i < POOL_NSHARDS; i++)
		refresh_shard(pool, &pool->shards[i], now, due, &retire);
	/* Teardowns (a peer-first drain's send, an abort) outside the lock. */
	DL_FOREACH_SAFE(retire, c, tmp) {
		DL_DELETE(retire, c);
		conn_retire(pool, c, false, RR_DNS);
	}
	gc = resolve_gc(pool, now);
	if (gc && gc < *due)
		*due = gc;
}
