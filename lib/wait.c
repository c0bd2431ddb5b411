/*
 * Waiting for a slot when a cap is reached, first come first served.
 *
 * A new connection needs two slots: one of its endpoint's max_active
 * (ep->nactive, under the shard lock) and one of max_total (pool->total,
 * atomic). A caller that cannot have one waits for it, keeping what it
 * already holds. A slot given back while someone waits for it is not
 * freed: it is handed to the first waiter for it (a grant), which is then
 * kicked awake; new callers queue behind waiters instead of taking a free
 * slot (ep_slot_take, total_reserve). So a woken waiter never loses its
 * turn to a newcomer, however late the scheduler runs it.
 *
 * Locks: no shard lock is ever held while wait_lock is taken or a waiter
 * is signalled: a spin lock held across a mutex has every thread of that
 * shard spinning while its holder sleeps, and a waiter signalled under it
 * wakes only to spin on it (on one CPU it preempts the releaser and
 * yields until the releaser, running again, has taken the slot back).
 * State changes under the lock that guards it; kicks come after that lock
 * is dropped. Why nothing is missed:
 *  - Endpoint slots: the waiters for them are in ep->wantq, under the
 *    shard lock. A waiter joins it in the critical section that found the
 *    endpoint full, and only once it is in pool->waiters, so a releaser
 *    that grants it the slot under that lock finds it there to kick once
 *    unlocked. The kick goes by address, and only to a waiter still
 *    queued: if it left meanwhile, it saw the grant under the shard lock
 *    and passed the slot on; if the address is a new waiter's, the kick
 *    is a spurious one.
 *  - max_total: a waiter registers (nwant_total) under wait_lock, then
 *    looks at total; a releaser lowers total, then looks at nwant_total
 *    (all seq_cst), so one of them sees the other. Grants are made under
 *    wait_lock.
 *  - A kick sets a flag and signals, under wait_lock; a kicked waiter
 *    looks at everything again, so a spurious kick costs one loop.
 *  - An async waiter (pool_get_start, w->efd >= 0) lives in its heap
 *    pending and never sleeps: a kick writes its eventfd, which is in the
 *    pending's epoll set, and waiter_wait returns POOL_EINPROGRESS where a
 *    blocking waiter would sleep. Its owner drains the eventfd before it
 *    looks at the flags again, so a kick is never lost between the two.
 */
#include <errno.h>
#include <unistd.h>

#include "park.h"
#include "pool-internal.h"
#include "wait.h"

/* wait_lock held. */
static void kick(struct waiter *w)
{
	uint64_t one = 1;

	w->kicked = true;
	if (w->efd < 0)
		pthread_cond_signal(&w->cond);
	else if (write(w->efd, &one, sizeof(one)) < 0)
		one = 0; /* EAGAIN: the counter is full, so readable anyway */
}

/* Kick w if it is still queued (no lock held). */
static void kick_if_queued(struct pool *pool, struct waiter *w)
{
	struct waiter *x;

	pthread_mutex_lock(&pool->wait_lock);
	DL_FOREACH(pool->waiters, x) {
		if (x == w) {
			kick(x);
			break;
		}
	}
	pthread_mutex_unlock(&pool->wait_lock);
}

/* Kick the first waiter for a max_total slot no kick is pending for
 * (wait_lock held). */
static void kick_total(struct pool *pool)
{
	struct waiter *w;

	DL_FOREACH(pool->waiters, w) {
		if (w->want_total && !w->kicked) {
			kick(w);
			return;
		}
	}
}

void waiters_wake_ep(struct pool *pool, struct pool_endpoint *ep)
{
	struct waiter *w;

	if (atomic_load(&pool->nwaiters) == 0)
		return;
	pthread_mutex_lock(&pool->wait_lock);
	DL_FOREACH(pool->waiters, w) {
		if (w->ep == ep && !w->kicked) {
			kick(w);
			break;
		}
	}
	pthread_mutex_unlock(&pool->wait_lock);
}

void waiters_wake_ep_all(struct pool *pool, struct pool_endpoint *ep)
{
	struct waiter *w;

	if (atomic_load(&pool->nwaiters) == 0)
		return;
	pthread_mutex_lock(&pool->wait_lock);
	DL_FOREACH(pool->waiters, w)
		if (w->ep == ep && !w->kicked)
			kick(w);
	pthread_mutex_unlock(&pool->wait_lock);
}

void waiters_wake_total(struct pool *pool)
{
	if (atomic_load(&pool->nwant_total) == 0)
		return;
	pthread_mutex_lock(&pool->wait_lock);
	kick_total(pool);
	pthread_mutex_unlock(&pool->wait_lock);
}

bool waiters_handoff(struct pool *pool, struct pool_conn *c)
{
	struct waiter *w;
	bool done = false;

	if (atomic_load(&pool->nwaiters) == 0)
		return false;
	pthread_mutex_lock(&pool->wait_lock);
	DL_FOREACH(pool->waiters, w) {
		if (w->ep == c->ep && !w->handed) {
			w->handed = c;
			kick(w);
			done = true;
			break;
		}
	}
	pthread_mutex_unlock(&pool->wait_lock);
	return done;
}

bool ep_slot_take(struct pool_endpoint *ep, struct waiter *w)
{
	if (w->ep_grant) {
		w->ep_grant = false; /* already counted in nactive */
	} else if (w->in_wantq) {
		return false;
	} else if (ep->wantq ||
		   (ep->set.max_active && ep->nactive >= ep->set.max_active)) {
		/* Only a queued waiter joins: a grant's kick must find it. */
		if (w->queued) {
			DL_APPEND2(ep->wantq, w, ep_prev, ep_next);
			w->in_wantq = w->registered_ep = true;
		}
		return false;
	} else {
		ep->nactive++;
	}
	w->has_ep = true;
	return true;
}

void ep_slot_put_unlock(struct pool *pool, struct pool_endpoint *ep)
{
	struct waiter *w = ep->wantq;
	uint64_t forget = 0;

	if (w) {
		/* Still counted in nactive: the slot is w's now. */
		DL_DELETE2(ep->wantq, w, ep_prev, ep_next);
		w->in_wantq = false;
		w->ep_grant = true;
	} else {
		ep->nactive--;
		forget = endpoint_note_quiet(ep);
	}
	plock_unlock(&ep->shard->lock);
	/* ep may be forgotten from here on: not a byte of it is read. */
	if (w)
		kick_if_queued(pool, w);
	if (forget)
		maint_note_due(pool, forget);
}

/* A max_total slot regardless of waiters, if there is room. */
static bool total_grab(struct pool *pool)
{
	unsigned cap = pool->cfg->max_total;
	unsigned cur = atomic_load(&pool->total);

	do {
		if (cap && cur >= cap)
			return false;
	} while (!atomic_compare_exchange_weak(&pool->total, &cur, cur + 1));
	return true;
}

bool total_reserve(struct pool *pool)
{
	if (pool->cfg->max_total && atomic_load(&pool->nwant_total))
		return false;
	return total_grab(pool);
}

/* w no longer wants a max_total slot (wait_lock held). */
static void unwant_total(struct pool *pool, struct waiter *w)
{
	w->want_total = false;
	atomic_fetch_sub(&pool->nwant_total, 1);
}

void waiters_give_total(struct pool *pool, bool held)
{
	struct waiter *w;

	pthread_mutex_lock(&pool->wait_lock);
	DL_FOREACH(pool->waiters, w)
		if (w->want_total)
			break;
	if (w && (held || total_grab(pool))) {
		unwant_total(pool, w);
		w->grant_total = true;
		kick(w);
	} else if (held) {
		atomic_fetch_sub(&pool->total, 1);
	}
	pthread_mutex_unlock(&pool->wait_lock);
}

static void enqueue(struct pool *pool, struct waiter *w)
{
	pthread_condattr_t ca;

	if (w->efd < 0) {
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&w->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	w->want_total = w->grant_total = w->kicked = false;
	w->handed = NULL;
	DL_APPEND(pool->waiters, w);
	atomic_fetch_add(&pool->nwaiters, 1);
	w->queued = true;
}

/* Whether w, blocked by max_total, must sleep; registers it for a slot
 * if it is not yet (wait_lock held). */
static bool must_sleep_for_total(struct pool *pool, struct waiter *w)
{
	bool first = !w->want_total;

	if (w->grant_total)
		return false;
	if (first) {
		w->want_total = true;
		atomic_fetch_add(&pool->nwant_total, 1);
	}
	/* Room left by a release that raced with the registration: ours
	 * only if nobody before us waits for it. */
	if (atomic_load(&pool->nwant_total) == 1 && total_grab(pool)) {
		unwant_total(pool, w);
		w->has_total = true;
		return false;
	}
	/* An idle connection elsewhere (put back before we registered, so
	 * it woke nobody) can be evicted: look again. */
	if (first && atomic_load(&pool->nidle_total) > 0) {
		w->woken = true;
		return false;
	}
	return true;
}

/* Sleep until kicked, handed a connection, or the deadline (wait_lock
 * held). An async waiter does not sleep: POOL_EINPROGRESS instead, its
 * eventfd tells when to look again. */
static int sleep_kicked(struct pool *pool, struct waiter *w, uint64_t deadline_ns)
{
	struct timespec ts = { .tv_sec = (time_t)(deadline_ns / 1000000000u),
			       .tv_nsec = (long)(deadline_ns % 1000000000u) };
	int rc = 0;

	if (w->efd >= 0 && !w->kicked && !w->handed)
		return now_ns() >= deadline_ns ? POOL_EBUSY : POOL_EINPROGRESS;
	while (!w->kicked && !w->handed && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&w->cond, &pool->wait_lock, &ts);
	if (!w->kicked && !w->handed)
		return POOL_EBUSY;
	w->kicked = false;
	w->woken = true;
	return 0;
}

int waiter_wait(struct pool *pool, struct waiter *w, enum wait_why why,
		uint64_t deadline_ns, struct pool_conn **handed)
{
	bool blocked_total = why == WAIT_TOTAL, first = false;
	int rc = 0;

	w->woken = false;
	plock_unlock(&w->ep->shard->lock);
	pthread_mutex_lock(&pool->wait_lock);
	if (!w->queued) {
		enqueue(pool, w); /* then join ep->wantq, under the shard lock */
		first = true;
	} else if (!blocked_total || must_sleep_for_total(pool, w))
		rc = sleep_kicked(pool, w, deadline_ns);
	if (w->grant_total) {
		w->grant_total = false;
		w->has_total = true;
		w->woken = false; /* no need to evict anything now */
		rc = 0;
	}
	*handed = w->handed;
	w->handed = NULL;
	pthread_mutex_unlock(&pool->wait_lock);
	/* Counted in nwaiters now: no thread parks a connection any more
	 * (park_publish), and the ones parked go back to the idle lists,
	 * where the caller, looking again, finds them. */
	if (first)
		park_evict(pool, NULL);
	plock_lock(&w->ep->shard->lock);
	return rc;
}

/* Leave ep->wantq and give back the endpoint slot w holds or was granted
 * (no lock held). The acquire that owns w keeps ep pinned meanwhile. */
static void leave_ep(struct pool *pool, struct waiter *w)
{
	struct pool_endpoint *ep = w->ep;
	bool idle;

	plock_lock(&ep->shard->lock);
	if (w->in_wantq) {
		DL_DELETE2(ep->wantq, w, ep_prev, ep_next);
		w->in_wantq = false;
	}
	if (w->ep_grant) {
		w->ep_grant = false;
		w->has_ep = true;
	}
	if (w->has_ep) {
		w->has_ep = false;
		ep_slot_put_unlock(pool, ep); /* to the next waiter, if any */
		return;
	}
	/* We may have swallowed the kick for an idle connection. */
	idle = ep->idle && ep->wantq;
	plock_unlock(&ep->shard->lock);
	if (idle)
		waiters_wake_ep(pool, ep);
}

struct pool_conn *waiter_leave(struct pool *pool, struct waiter *w)
{
	struct pool_conn *late = NULL;

	if (w->queued) {
		pthread_mutex_lock(&pool->wait_lock);
		if (w->want_total)
			unwant_total(pool, w);
		if (w->grant_total) {
			w->grant_total = false;
			w->has_total = true;
		}
		/* Or the kick to evict an idle connection. */
		if (atomic_load(&pool->nwant_total) && atomic_load(&pool->nidle_total))
			kick_total(pool);
		DL_DELETE(pool->waiters, w);
		atomic_fetch_sub(&pool->nwaiters, 1);
		w->queued = false;
		late = w->handed;
		w->handed = NULL;
		pthread_mutex_unlock(&pool->wait_lock);
		if (w->efd < 0)
			pthread_cond_destroy(&w->cond);
	}
	if (w->has_ep || w->registered_ep)
		leave_ep(pool, w);
	if (w->has_total) {
		w->has_total = false;
		total_release(pool); /* to the next waiter, if any */
	}
	return late;
}
