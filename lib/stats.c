/* Counters: per endpoint under its shard lock, summed for the pool. */
#include <string.h>

#include "pool-internal.h"

static void snapshot(const struct pool_endpoint *ep, pool_stats_t *out)
{
	*out = ep->stats;
	out->in_use = ep->nin_use;
	out->idle = ep->nidle;
}

static void add(pool_stats_t *sum, const pool_stats_t *st)
{
	sum->gets += st->gets;
	sum->reuses += st->reuses;
	sum->connects += st->connects;
	sum->connect_failures += st->connect_failures;
	sum->waits += st->waits;
	sum->wait_timeouts += st->wait_timeouts;
	sum->stale_dropped += st->stale_dropped;
	sum->retired_close += st->retired_close;
	sum->retired_abort += st->retired_abort;
	sum->retired_peer_first += st->retired_peer_first;
	sum->peer_first_ok += st->peer_first_ok;
	sum->peer_first_fallback += st->peer_first_fallback;
	sum->closed += st->closed;
	sum->in_use += st->in_use;
	sum->idle += st->idle;
	sum->draining += st->draining;
}

static void totals(struct pool *pool, pool_stats_t *out)
{
	struct pool_endpoint *ep, *tmp;
	pool_stats_t st;
	int i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < POOL_NSHARDS; i++) {
		plock_lock(&pool->shards[i].lock);
		HASH_ITER(hh, pool->shards[i].table, ep, tmp) {
			snapshot(ep, &st);
			add(out, &st);
		}
		plock_unlock(&pool->shards[i].lock);
	}
	out->misuse = atomic_load(&pool->misuse);
}

POOL_API int pool_stats(pool_t *pool, const char *endpoint, pool_stats_t *out)
{
	struct pool_endpoint *ep = NULL;
	struct shard *sh;

	if (!pool || !out)
		return POOL_EINVAL;
	fork_check(pool);
	if (!endpoint) {
		totals(pool, out);
		return 0;
	}
	ep = table_lookup(pool, endpoint, &sh, NULL);
	if (ep)
		snapshot(ep, out);
	plock_unlock(&sh->lock);
	return ep ? 0 : POOL_EINVAL;
}

POOL_API int pool_stats_foreach(pool_t *pool,
				void (*fn)(const char *endpoint,
					   const pool_stats_t *st, void *ud),
				void *ud)
{
	struct pool_endpoint *ep, *tmp;
	pool_stats_t st;
	int i;

	if (!pool || !fn)
		return POOL_EINVAL;
	for (i = 0; i < POOL_NSHARDS; i++) {
		plock_lock(&pool->shards[i].lock);
		HASH_ITER(hh, pool->shards[i].table, ep, tmp) {
			snapshot(ep, &st);
			/* Endpoints are never freed before the pool, so the
			 * key stays valid with the lock dropped for fn. */
			plock_unlock(&pool->shards[i].lock);
			fn(ep->key, &st, ud);
			plock_lock(&pool->shards[i].lock);
		}
		plock_unlock(&pool->shards[i].lock);
	}
	return 0;
}

void pool_note_misuse(struct pool *pool, const struct pool_conn *c)
{
	(void)c;
	if (pool)
		atomic_fetch_add(&pool->misuse, 1);
}
