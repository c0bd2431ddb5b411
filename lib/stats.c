/* Counters: per endpoint under its shard lock, summed for the pool. */
#include <stdlib.h>
#include <string.h>

#include "obs.h"
#include "park.h"
#include "pool-internal.h"

/* pool_stats_t is ABI: fields take reserved room, never add to it. */
_Static_assert(sizeof(pool_stats_t) == 144, "pool_stats_t changed size");

/* Connections parked in threads' caches are idle ones, still counted in
 * nin_use, and their hand-outs from there join the counters only when
 * they leave the cache (park.h): both added here. Returns those
 * hand-outs, which pool_stats_ex's cache_gets lacks too. */
static uint64_t snapshot(const struct pool_endpoint *ep, pool_stats_t *out)
{
	uint32_t parked;
	uint64_t cached;

	park_count_locked(ep, &parked, &cached);
	*out = ep->stats;
	out->gets += cached;
	out->reuses += cached;
	out->in_use = ep->nin_use - parked;
	out->idle = ep->nidle + parked;
	return cached;
}

void stats_add_counters(pool_stats_t *sum, const pool_stats_t *st)
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
	sum->peer_closed_idle += st->peer_closed_idle;
}

static void add(pool_stats_t *sum, const pool_stats_t *st)
{
	stats_add_counters(sum, st);
	sum->in_use += st->in_use;
	sum->idle += st->idle;
	sum->draining += st->draining;
}

/* The pool's sums; with ex (pool_stats_ex, out its base), the rest of
 * pool_stats_ex's too, each shard's in the same lock hold, so that a
 * connection leaving a thread's cache meanwhile is counted once. */
static void totals(struct pool *pool, pool_stats_t *out, pool_stats_ex_t *ex)
{
	struct pool_endpoint *ep, *tmp;
	pool_stats_t st;
	int i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < POOL_NSHARDS; i++) {
		plock_lock(&pool->shards[i].lock);
		stats_add_counters(out, &pool->shards[i].gone);
		if (ex)
			obs_read_xstats(&pool->obs[i].xgone, ex);
		HASH_ITER(hh, pool->shards[i].table, ep, tmp) {
			uint64_t cached = snapshot(ep, &st);

			add(out, &st);
			if (ex) {
				ex->cache_gets += cached;
				obs_read_xstats(&ep->xstats, ex);
			}
		}
		plock_unlock(&pool->shards[i].lock);
		if (ex)
			obs_read(&pool->obs[i].d, ex);
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
		totals(pool, out, NULL);
		return 0;
	}
	ep = table_lookup(pool, endpoint, &sh, NULL);
	if (ep)
		snapshot(ep, out);
	plock_unlock(&sh->lock);
	return ep ? 0 : POOL_EINVAL;
}

/* One endpoint's, its shard locked (the endpoint stays while it is). */
void stats_ex_locked(const struct pool_endpoint *ep, pool_stats_ex_t *ex)
{
	memset(ex, 0, sizeof(*ex));
	ex->cache_gets = snapshot(ep, &ex->base);
	obs_read_xstats(&ep->xstats, ex);
	obs_read(&ep->obs, ex);
}

/* Fills min(size, ours) bytes: a caller built against an older, shorter
 * pool_stats_ex_t gets the fields it knows, and nothing past its struct
 * is written. */
POOL_API int pool_stats_ex(pool_t *pool, const char *endpoint,
			   pool_stats_ex_t *out, size_t size)
{
	pool_stats_ex_t ex;
	struct pool_endpoint *ep;
	struct shard *sh;

	if (!pool || !out || size < sizeof(pool_stats_t))
		return POOL_EINVAL;
	fork_check(pool);
	memset(&ex, 0, sizeof(ex));
	if (!endpoint) {
		totals(pool, &ex.base, &ex);
	} else {
		ep = table_lookup(pool, endpoint, &sh, NULL);
		if (ep)
			stats_ex_locked(ep, &ex);
		plock_unlock(&sh->lock);
		if (!ep)
			return POOL_EINVAL;
	}
	memcpy(out, &ex, size < sizeof(ex) ? size : sizeof(ex));
	return 0;
}

/* A copy of one shard's endpoints: keys packed in one buffer. */
struct shard_copy {
	size_t n, cap;
	char *keys;
	size_t keys_used, keys_cap;
	const char **key;
	pool_stats_t *st;
};

static void copy_free(struct shard_copy *c)
{
	free(c->keys);
	free(c->key);
	free(c->st);
}

/* Room for what the shard held when we looked (shard lock NOT held:
 * allocation is never done under a spin lock). */
static int copy_alloc(struct shard_copy *c, size_t cap, size_t bytes)
{
	memset(c, 0, sizeof(*c));
	c->cap = cap;
	c->keys_cap = bytes;
	c->keys = malloc(bytes + 1);
	c->key = calloc(cap + 1, sizeof(*c->key));
	c->st = calloc(cap + 1, sizeof(*c->st));
	return c->keys && c->key && c->st ? 0 : POOL_ENOMEM;
}

/* Copy the shard (its lock held); false if it grew since it was sized. */
static bool copy_fill(struct shard_copy *c, struct shard *sh)
{
	struct pool_endpoint *ep, *tmp;

	HASH_ITER(hh, sh->table, ep, tmp) {
		size_t len = strlen(ep->key) + 1;

		if (c->n == c->cap || c->keys_used + len > c->keys_cap)
			return false;
		memcpy(c->keys + c->keys_used, ep->key, len);
		c->key[c->n] = c->keys + c->keys_used;
		c->keys_used += len;
		snapshot(ep, &c->st[c->n++]);
	}
	return true;
}

static void shard_size(struct shard *sh, size_t *n, size_t *bytes)
{
	struct pool_endpoint *ep, *tmp;

	*n = 0;
	*bytes = 0;
	plock_lock(&sh->lock);
	HASH_ITER(hh, sh->table, ep, tmp) {
		(*n)++;
		*bytes += strlen(ep->key) + 1;
	}
	plock_unlock(&sh->lock);
}

/* fn runs with no lock held, and the maintenance may forget an endpoint
 * meanwhile: so it is given a copy of the shard's keys and counters. */
static int shard_foreach(struct shard *sh,
			 void (*fn)(const char *endpoint,
				    const pool_stats_t *st, void *ud),
			 void *ud)
{
	struct shard_copy c;
	size_t n, bytes, i;
	bool whole;

	do {
		shard_size(sh, &n, &bytes);
		if (copy_alloc(&c, n, bytes)) {
			copy_free(&c);
			return POOL_ENOMEM;
		}
		plock_lock(&sh->lock);
		whole = copy_fill(&c, sh);
		plock_unlock(&sh->lock);
		if (!whole)
			copy_free(&c); /* it grew meanwhile: size it again */
	} while (!whole);
	for (i = 0; i < c.n; i++)
		fn(c.key[i], &c.st[i], ud);
	copy_free(&c);
	return 0;
}

POOL_API int pool_stats_foreach(pool_t *pool,
				void (*fn)(const char *endpoint,
					   const pool_stats_t *st, void *ud),
				void *ud)
{
	int i, rc;

	if (!pool || !fn)
		return POOL_EINVAL;
	for (i = 0; i < POOL_NSHARDS; i++) {
		rc = shard_foreach(&pool->shards[i], fn, ud);
		if (rc)
			return rc;
	}
	return 0;
}

void pool_note_misuse(struct pool *pool, const struct pool_conn *c)
{
	(void)c;
	if (pool)
		atomic_fetch_add(&pool->misuse, 1);
}
