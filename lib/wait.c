/*
 * Waiting for a slot when a cap is reached: one FIFO over the whole pool,
 * so the first caller to wait is the first served.
 *
 * A waiter enqueues itself while it still holds its endpoint's shard lock,
 * so a pool_put or a close on that endpoint (done under the same lock)
 * cannot miss it. Under max_total, what helps a waiter happens in other
 * shards: a slot freed (total drops) or a connection gone idle (it can be
 * evicted). For those the waiter re-checks total and nidle_total after
 * enqueuing, and the other side checks nwaiters after its change (all
 * seq_cst), so one of them sees the other.
 */
#include <errno.h>

#include "pool-internal.h"
#include "wait.h"

static void wake(struct pool *pool, struct waiter *w)
{
	DL_DELETE(pool->waiters, w);
	atomic_fetch_sub(&pool->nwaiters, 1);
	pthread_cond_signal(&w->cond);
}

bool waiters_handoff(struct pool *pool, struct pool_conn *c)
{
	struct waiter *w;
	bool done = false;

	if (atomic_load(&pool->nwaiters) == 0)
		return false;
	pthread_mutex_lock(&pool->wait_lock);
	DL_FOREACH(pool->waiters, w) {
		if (w->ep == c->ep) {
			w->handed = c;
			wake(pool, w);
			done = true;
			break;
		}
	}
	pthread_mutex_unlock(&pool->wait_lock);
	return done;
}

void waiters_wake_ep(struct pool *pool, struct pool_endpoint *ep)
{
	struct waiter *w;

	if (atomic_load(&pool->nwaiters) == 0)
		return;
	pthread_mutex_lock(&pool->wait_lock);
	DL_FOREACH(pool->waiters, w) {
		if (w->ep == ep) {
			w->woken = true;
			wake(pool, w);
			break;
		}
	}
	pthread_mutex_unlock(&pool->wait_lock);
}

/* Only a waiter blocked by max_total can use a freed pool-wide slot; one
 * blocked by its endpoint's max_active would just wait again. */
void waiters_wake_total(struct pool *pool)
{
	struct waiter *w;

	if (atomic_load(&pool->nwaiters) == 0)
		return;
	pthread_mutex_lock(&pool->wait_lock);
	DL_FOREACH(pool->waiters, w) {
		if (w->need_total) {
			w->woken = true;
			wake(pool, w);
			break;
		}
	}
	pthread_mutex_unlock(&pool->wait_lock);
}

/* Called with ep's shard lock held; returns with it released. need_total:
 * the caller is blocked by max_total rather than by ep's max_active.
 * Returns 0 when *handed got a connection or when a slot came free
 * (retry), or POOL_EBUSY when the deadline passed. */
int wait_for_slot(struct pool *pool, struct pool_endpoint *ep, bool need_total,
		  uint64_t deadline_ns, struct pool_conn **handed)
{
	struct waiter w = { .ep = ep, .need_total = need_total };
	struct timespec ts = { .tv_sec = (time_t)(deadline_ns / 1000000000u),
			       .tv_nsec = (long)(deadline_ns % 1000000000u) };
	pthread_condattr_t ca;
	int rc = 0;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w.cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_lock(&pool->wait_lock);
	DL_APPEND(pool->waiters, &w);
	atomic_fetch_add(&pool->nwaiters, 1);
	plock_unlock(&ep->shard->lock);
	/* A max_total slot may have come free, or a connection of another
	 * endpoint gone idle (to evict), before we were visible. Only
	 * for a waiter blocked by max_total, and never past the deadline, or
	 * a caller blocked by max_active would spin here. */
	if (need_total && now_ns() < deadline_ns &&
	    (atomic_load(&pool->total) < pool->cfg->max_total ||
	     atomic_load(&pool->nidle_total) > 0)) {
		wake(pool, &w);
		w.woken = true;
	}
	while (!w.handed && !w.woken && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&w.cond, &pool->wait_lock, &ts);
	if (!w.handed && !w.woken) {
		wake(pool, &w); /* dequeue ourselves */
		rc = POOL_EBUSY;
	} else {
		rc = 0;
	}
	pthread_mutex_unlock(&pool->wait_lock);
	pthread_cond_destroy(&w.cond);
	*handed = w.handed;
	return rc;
}
