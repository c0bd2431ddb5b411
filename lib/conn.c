/*
 * Connection life: records, slots, retirement by policy.
 */
#include <stdlib.h>
#include <unistd.h>

#include "pool-internal.h"
#include "wait.h"

struct pool_conn *conn_new(struct pool_endpoint *ep, int fd)
{
	struct pool_conn *c = calloc(1, sizeof(*c));
	uint64_t now = now_ns();

	if (!c)
		return NULL;
	c->fd = fd;
	c->ep = ep;
	c->pool = ep->pool;
	c->fork_gen = ep->pool->fork_gen;
	c->created_ns = now;
	c->last_put_ns = now;
	conn_set_expiry(c, now);
	conn_watch(ep->pool, c);
	return c;
}

void conn_free(struct pool_conn *c)
{
	c->magic = CONN_MAGIC_DEAD;
	free(c->watch); /* still attached only where no runner can see it:
	                 * a child of fork(), or pool_destroy's leftovers */
	free(c);
}

/* window * r / range without overflow for any 64-bit window: with
 * window up to 2^51 ns (UINT32_MAX ms at 50 %) and r up to 2^31, the
 * plain product wraps past 2^33 ns of window, which cut a 1-hour, 5 %
 * window of 180 s to 8.5 s. Split window into range-sized parts: each
 * partial product stays below 2^63. */
static uint64_t scale(uint64_t window, uint64_t r, uint64_t range)
{
	return window / range * r + window % range * r / range;
}

/* Lifetime minus a random 0..jitter% so that connections opened together
 * (a burst at start-up) do not all expire, and reconnect, together. */
void conn_set_expiry(struct pool_conn *c, uint64_t now)
{
	const struct pool_settings *s = &c->ep->set;
	uint64_t life = MS_TO_NS(s->max_lifetime_ms);
	uint64_t cut = 0;

	if (!life) {
		c->expires_ns = 0;
		return;
	}
	if (s->lifetime_jitter_pct) {
		/* rand_r on the address and clock: no shared PRNG state. */
		unsigned seed = (unsigned)(now ^ (uintptr_t)c);

		cut = scale(life / 100 * s->lifetime_jitter_pct,
			    (uint64_t)rand_r(&seed), (uint64_t)RAND_MAX + 1);
	}
	c->expires_ns = now + life - cut;
}

void total_release(struct pool *pool)
{
	if (atomic_load(&pool->nwant_total)) {
		waiters_give_total(pool, true);
		return;
	}
	atomic_fetch_sub(&pool->total, 1);
	/* A waiter may have registered meanwhile: it looks at total after
	 * registering as we look at nwant_total after lowering total (both
	 * seq_cst), so if it missed the slot we see it here. */
	if (atomic_load(&pool->nwant_total))
		waiters_give_total(pool, false);
}

/* Free the endpoint slot of a connection closed or left to drain. */
static void ep_slot_release(struct pool *pool, struct pool_endpoint *ep)
{
	bool refill;

	plock_lock(&ep->shard->lock);
	ep->stats.closed++;
	refill = ep->set.min_idle != 0;
	ep_slot_put_unlock(pool, ep);
	/* ep may be forgotten from here on: not a byte of it is read. A
	 * warm connection went: let the maintenance refill min_idle. */
	if (refill)
		maint_note_due(pool, now_ns());
}

void slot_release(struct pool *pool, struct pool_endpoint *ep)
{
	ep_slot_release(pool, ep);
	total_release(pool);
}

void conn_drop(struct pool *pool, struct pool_conn *c)
{
	struct pool_endpoint *ep = c->ep;

	conn_unwatch(pool, c);
	close(c->fd);
	conn_free(c);
	slot_release(pool, ep);
}

static void count_retired(struct pool_endpoint *ep, enum pool_teardown policy)
{
	plock_lock(&ep->shard->lock);
	if (policy == TEARDOWN_CLOSE)
		ep->stats.retired_close++;
	else if (policy == TEARDOWN_ABORT)
		ep->stats.retired_abort++;
	else
		ep->stats.retired_peer_first++;
	plock_unlock(&ep->shard->lock);
}

static void count_peer_first(struct pool_endpoint *ep, bool ok)
{
	plock_lock(&ep->shard->lock);
	if (ok)
		ep->stats.peer_first_ok++;
	else
		ep->stats.peer_first_fallback++;
	plock_unlock(&ep->shard->lock);
}

/* Whether the peer has closed (FIN or RST; bytes before it are read and
 * dropped): then a plain close() ends it with no TIME_WAIT on either side,
 * whatever the policy says. */
static bool peer_closed(int fd)
{
	size_t budget = DRAIN_BUDGET;

	return drain_step(fd, &budget) == DRAIN_EOF;
}

/* Peer-first: the request goes out now, from the caller, so the server
 * starts closing at once; the wait for its EOF runs in the maintenance
 * context, so the caller never waits for the peer. True if the socket was
 * left to drain (the drain then holds its max_total slot). */
static bool retire_peer_first(struct pool *pool, int fd, struct pool_endpoint *ep,
			      bool broken)
{
	size_t budget = DRAIN_BUDGET;
	enum drain_status st;

	/* A broken connection's protocol state is unknown: a close request
	 * could be read as part of something else, so fall back at once. */
	if (broken)
		st = peer_closed(fd) ? DRAIN_EOF : DRAIN_FAILED;
	else
		st = drain_start(fd, &ep->set);
	if (st == DRAIN_AGAIN) {
		reaper_add(pool, fd, ep);
		return true;
	}
	if (st == DRAIN_EOF)
		teardown_now(fd, TEARDOWN_CLOSE);
	else if (teardown_fallback(fd, ep->set.fallback, &budget))
		st = DRAIN_EOF;
	count_peer_first(ep, st == DRAIN_EOF);
	return false;
}

void conn_retire(struct pool *pool, struct pool_conn *c, bool broken)
{
	struct pool_endpoint *ep = c->ep;
	enum pool_teardown policy = ep->set.teardown;
	int fd = c->fd;
	bool draining = false;

	conn_unwatch(pool, c); /* before a drain puts fd in the same set */
	conn_free(c);
	count_retired(ep, policy);
	if (policy == TEARDOWN_PEER_FIRST)
		draining = retire_peer_first(pool, fd, ep, broken);
	else
		teardown_now(fd, peer_closed(fd) ? TEARDOWN_CLOSE : policy);
	/* A drain's socket is still open: it keeps its max_total slot until
	 * the drain ends, so open sockets never exceed max_total. It is no
	 * longer the endpoint's: max_active counts in use plus idle. */
	ep_slot_release(pool, ep);
	if (!draining)
		total_release(pool);
}
