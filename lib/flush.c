/*
 * pool_flush: drop every connection of an endpoint (or of all), as Go's
 * CloseIdleConnections, HikariCP's softEvictConnections or curl's
 * CURLMOPT_NETWORK_CHANGED do, for an application that knows better
 * than the pool (the network changed, the server was replaced). Idle
 * connections are retired now by their policy; checked-out ones are
 * doomed, retired at their pool_put, and pool_conn_last_use() tells
 * their holders so. Connections opened after the call are not touched.
 */
#include "park.h"
#include "pool-internal.h"

/* Shard lock held: ep's idle connections onto *retire, doom the rest. */
static void flush_endpoint(struct pool_endpoint *ep, struct pool_conn **retire)
{
	struct pool_conn *c, *tmp;

	DL_FOREACH_SAFE(ep->idle, c, tmp) {
		idle_remove(ep->pool, ep, c);
		c->retire_why = RR_FLUSH;
		DL_APPEND(*retire, c);
	}
	DL_FOREACH(ep->busy, c) {
		/* A DNS change found it first: that reason stands. */
		if (c->doomed)
			continue;
		c->retire_why = RR_FLUSH;
		/* Read without the lock by pool_conn_last_use: the reason
		 * first, the flag published after it. */
		__atomic_store_n(&c->doomed, true, __ATOMIC_RELEASE);
	}
	/* For a connection on neither list now: handed from a pool_put to
	 * a waiter, which conn_expiry retires at its next put. */
	__atomic_store_n(&ep->flushed_ns, now_ns(), __ATOMIC_RELEASE);
	ep->xstats.flushes++;
}

static void flush_shard(struct shard *sh, struct pool_conn **retire)
{
	struct pool_endpoint *ep, *tmp;

	plock_lock(&sh->lock);
	HASH_ITER(hh, sh->table, ep, tmp)
		flush_endpoint(ep, retire);
	plock_unlock(&sh->lock);
}

/* endpoint's record, flushed; a string the pool holds no record of has
 * nothing to flush: 0 (it may have been forgotten while quiet). */
static int flush_one(struct pool *pool, const char *endpoint,
		     struct pool_conn **retire)
{
	struct endpoint_addr addr;
	struct pool_endpoint *ep;
	struct shard *sh;

	if (endpoint_parse(endpoint, false, &addr, NULL, 0))
		return POOL_EENDPOINT;
	ep = table_lookup(pool, endpoint, &sh, NULL);
	if (ep)
		flush_endpoint(ep, retire);
	plock_unlock(&sh->lock);
	return 0;
}

POOL_API int pool_flush(pool_t *pool, const char *endpoint)
{
	struct pool_conn *retire = NULL, *c, *tmp;
	int i, rc;

	if (!pool)
		return POOL_EINVAL;
	rc = fork_check(pool);
	if (rc)
		return rc;
	/* Threads' parked connections are idle ones: to the idle lists
	 * first, to go with them. */
	park_evict(pool, NULL);
	if (endpoint) {
		rc = flush_one(pool, endpoint, &retire);
	} else {
		for (i = 0; i < POOL_NSHARDS; i++)
			flush_shard(&pool->shards[i], &retire);
	}
	/* Teardowns outside the locks, as the maintenance does. */
	DL_FOREACH_SAFE(retire, c, tmp) {
		DL_DELETE(retire, c);
		conn_retire(pool, c, false, RR_FLUSH);
	}
	/* One put back into its thread's cache meanwhile was doomed above:
	 * taken back now, it is retired. */
	park_note_doom(pool);
	park_evict(pool, NULL);
	return rc;
}
