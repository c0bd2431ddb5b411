#ifndef TCPOOL_WAIT_H
#define TCPOOL_WAIT_H
#include "pool-internal.h"

/* Waiting, first come first served, for a connection or the slots for a
 * new one (see wait.c). Every pool_get has a waiter, so only what the
 * caller reads before it ever waits is set here; enqueue sets the rest. */
static inline void waiter_init(struct waiter *w, struct pool_endpoint *ep)
{
	w->ep = ep;
	w->efd = -1;
	w->in_wantq = w->ep_grant = false;
	w->queued = false;
	w->registered_ep = false;
	w->has_ep = w->has_total = false;
	w->woken = false;
}

/* Whether w has anything for waiter_leave to give back. */
static inline bool waiter_holds(const struct waiter *w)
{
	return w->queued || w->has_ep || w->has_total;
}

/* An endpoint slot for w (shard lock held): the one granted to it, or a
 * free one unless waiters are in line for it; a queued w that gets none
 * gets in line. True if w now holds one (w->has_ep). */
bool ep_slot_take(struct pool_endpoint *ep, struct waiter *w);

/* What a waiter lacks. */
enum wait_why {
	WAIT_SLOT,   /* an endpoint slot (max_active) */
	WAIT_TOTAL,  /* holds its endpoint slot, lacks a max_total one */
	WAIT_DIAL    /* room among the connects in flight (max_connecting) */
};

/* Called with w->ep's shard lock held; returns with it held (dropped
 * meanwhile). The first call queues w and returns at once: the caller
 * looks again, and registers for what it lacks. *handed gets a
 * connection handed over by a pool_put, if any. Returns 0 to look again,
 * POOL_EBUSY when the deadline passed, or, for an async waiter (efd set)
 * that would sleep, POOL_EINPROGRESS. w->woken says whether it was
 * kicked (something changed, such as an idle connection to evict). */
int waiter_wait(struct pool *pool, struct waiter *w, enum wait_why why,
		uint64_t deadline_ns, struct pool_conn **handed);

/* Kick every waiter for ep (no lock held): a connect ended, so one of
 * those waiting for max_connecting may dial. Any waiter for ep may be the
 * one, and the kicked flag it sets is seen even before it sleeps. */
void waiters_wake_ep_all(struct pool *pool, struct pool_endpoint *ep);

/* Leave the queue (no lock held), giving back the slots w holds or was
 * granted, to the next waiters. Returns a connection handed over too late
 * to be used, for the caller to put back, or NULL. */
struct pool_conn *waiter_leave(struct pool *pool, struct waiter *w);

/* A max_total slot for the waiters: one the caller gives up (held), or
 * one found free after a release raced with a registration. */
void waiters_give_total(struct pool *pool, bool held);
#endif
