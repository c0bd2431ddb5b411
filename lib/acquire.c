/*
 * The slow acquire path: everything but an idle hand-out (checkout.c).
 *
 * One state machine (struct pool_pending) serves pool_get and the
 * event-loop calls alike:
 *   PEND_SLOT       an idle connection (put back meanwhile, or handed
 *                   over by a pool_put), or the slots to dial: the
 *                   endpoint's (max_active), a max_total one, and room
 *                   among the connects in flight (max_connecting); waits
 *                   for what it lacks, first come first served (wait.c).
 *                   An endpoint backing off fails it here (POOL_EBACKOFF).
 *   PEND_DIAL       resolving and connecting (dial.c).
 *   PEND_CONNECTED  on_connect, in the caller's thread, then hand-out.
 * pool_get runs it to the end, sleeping where it must wait (the waiter's
 * condition variable, poll on the sockets). pool_get_start and
 * pool_get_finish run it as far as it goes without blocking; where it
 * must wait, what it waits for is in one epoll set, the pending's fd:
 * the waiter's eventfd, the resolver's fd, the connecting sockets, and a
 * timerfd set to the stage's deadline (acquire_timeout_ms, the resolver's
 * deadline, connect_timeout_ms, the Happy Eyeballs delay).
 *
 * The endpoint is pinned (ep->pins) from the start to the end, so it
 * outlives every unlocked moment, and the counters at the end have it.
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "backoff.h"
#include "obs.h"
#include "pending.h"
#include "wait.h"

/* A stage returns this to go on to the next one. */
#define NEXT 1

static const struct connect_ctl ctl_none = { .cancel_fd = -1 };

enum slot slot_reserve(struct pool *pool, struct pool_endpoint *ep,
		       struct waiter *w)
{
	if (!w->has_ep && !ep_slot_take(ep, w))
		return SLOT_ENDPOINT_FULL;
	if (!w->has_total) {
		if (!total_reserve(pool))
			return SLOT_TOTAL_FULL;
		w->has_total = true;
	}
	/* Both now belong to the connection about to be opened. */
	w->has_ep = w->has_total = false;
	ep->nin_use++;
	return SLOT_OK;
}

void slot_abandon(struct pool *pool, struct pool_endpoint *ep)
{
	ep->nin_use--;
	ep_slot_put_unlock(pool, ep);
	total_release(pool);
}

/* At max_total, an idle connection of another endpoint is worth less than
 * a caller waiting for this one: retire the least recently used one found
 * (shard locks taken one at a time). True if one was retired. */
static bool evict_idle_elsewhere(struct pool *pool, struct pool_endpoint *self)
{
	struct pool_endpoint *ep, *tmp;
	struct pool_conn *victim = NULL;
	int i;

	for (i = 0; i < POOL_NSHARDS && !victim; i++) {
		plock_lock(&pool->shards[i].lock);
		HASH_ITER(hh, pool->shards[i].table, ep, tmp) {
			if (ep == self || !ep->idle)
				continue;
			victim = ep->idle->prev; /* the tail: least recently used */
			idle_remove(pool, ep, victim);
			break;
		}
		plock_unlock(&pool->shards[i].lock);
	}
	if (victim)
		conn_retire(pool, victim, false, RR_EVICTED);
	return victim != NULL;
}

/* At max_total, try evicting an idle connection elsewhere (shard lock
 * held, dropped meanwhile; ep is pinned). True to look again. */
static bool evict_and_retry(struct pool *pool, struct pool_endpoint *ep)
{
	bool evicted;

	plock_unlock(&ep->shard->lock);
	evicted = evict_idle_elsewhere(pool, ep);
	plock_lock(&ep->shard->lock);
	/* Something may have come back while unlocked. */
	return evicted || ep->idle;
}

/* A connection handed to a waiter that had got another meanwhile: back
 * to the pool, as its holder's pool_put would have done. */
static void give_back(struct pool *pool, struct pool_conn *c)
{
	plock_lock(&c->ep->shard->lock);
	c->magic = CONN_MAGIC_OUT;
	DL_APPEND(c->ep->busy, c);
	plock_unlock(&c->ep->shard->lock);
	pool_put(pool, c, POOL_REUSE);
}

/* Done waiting, if the caller waited (no lock held). */
static void leave_wait(struct pool *pool, struct waiter *w)
{
	struct pool_conn *late;

	if (!waiter_holds(w))
		return;
	late = waiter_leave(pool, w);
	if (late)
		give_back(pool, late);
}

/* ---- the pending's descriptors ---- */

static void watch_fd(int epfd, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN };

	if (epfd >= 0 && fd >= 0)
		epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* The waiter's eventfd, before it is first queued: made with the shard
 * lock dropped (ep is pinned). 0 to look again, lock held; or an error,
 * lock released. */
static int make_efd(struct pool_pending *p)
{
	struct pool_endpoint *ep = p->ep;

	plock_unlock(&ep->shard->lock);
	p->w.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->w.efd < 0) {
		int err = errno;

		leave_wait(p->pool, &p->w); /* a slot it may hold already */
		return err == EMFILE || err == ENFILE ? POOL_EMFILE : POOL_ESYS;
	}
	watch_fd(p->epfd, p->w.efd);
	plock_lock(&ep->shard->lock);
	return 0;
}

/* Out of the queue for good (dialing now): the eventfd only served its
 * kicks, and a pending holds one descriptor fewer while it connects. */
static void drop_efd(struct pool_pending *p)
{
	if (p->w.efd < 0)
		return;
	if (p->epfd >= 0)
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->w.efd, NULL);
	close(p->w.efd);
	p->w.efd = -1;
}

/* Read what a readiness left, so that the fd is readable again only for
 * news (non-blocking descriptors). */
static void drain_fd(int fd)
{
	uint64_t v;

	if (fd >= 0 && read(fd, &v, sizeof(v)) < 0)
		v = 0;
}

/* When the stage waiting must be looked at again, fds or not. */
static uint64_t pend_wake_ns(const struct pool_pending *p)
{
	if (p->stage == PEND_DIAL)
		return dial_wake_ns(&p->dial);
	if (p->stage == PEND_SLOT)
		return p->wait_deadline_ns;
	return 1; /* PEND_CONNECTED: at once, for on_connect in finish */
}

/* Make (once) and set the pending's fd for what the stage waits on. */
static int pend_arm(struct pool_pending *p)
{
	struct itimerspec its = { { 0, 0 }, { 0, 0 } };
	uint64_t wake = pend_wake_ns(p);

	if (p->epfd < 0) {
		p->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (p->epfd >= 0)
			p->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (p->epfd < 0 || p->tfd < 0)
			return errno == EMFILE || errno == ENFILE ? POOL_EMFILE : POOL_ESYS;
		watch_fd(p->epfd, p->tfd);
		watch_fd(p->epfd, p->w.efd);
		if (p->stage == PEND_DIAL && dial_set_epfd(&p->dial, p->epfd) < 0)
			return POOL_ESYS;
	}
	if (wake == p->armed_ns)
		return POOL_EINPROGRESS;
	its.it_value.tv_sec = (time_t)(wake / 1000000000u);
	its.it_value.tv_nsec = (long)(wake % 1000000000u);
	if (timerfd_settime(p->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		return POOL_ESYS;
	p->armed_ns = wake;
	return POOL_EINPROGRESS;
}

static void pend_close_fds(struct pool_pending *p)
{
	if (p->epfd >= 0)
		close(p->epfd);
	if (p->tfd >= 0)
		close(p->tfd);
	if (p->w.efd >= 0)
		close(p->w.efd);
	p->epfd = p->tfd = p->w.efd = -1;
}

/* ---- stages ---- */

static bool dial_capped(const struct pool_endpoint *ep)
{
	return ep->set.max_connecting && ep->ndialing >= ep->set.max_connecting;
}

/* Slots reserved (shard lock held, released): dial, unless the endpoint
 * backs off. */
static int dial_admit(struct pool_pending *p)
{
	struct pool *pool = p->pool;
	struct pool_endpoint *ep = p->ep;

	if (ep->set.connect_backoff_ms && backoff_active(ep, now_ns())) {
		slot_abandon(pool, ep);
		leave_wait(pool, &p->w);
		return POOL_EBACKOFF;
	}
	ep->ndialing++;
	plock_unlock(&ep->shard->lock);
	leave_wait(pool, &p->w); /* dequeued: no kick can write the eventfd */
	drop_efd(p);
	p->stage = PEND_DIAL;
	dial_begin(&p->dial, pool, ep, &ctl_none);
	if (p->epfd >= 0)
		dial_set_epfd(&p->dial, p->epfd); /* nothing in it yet: no error */
	return NEXT;
}

/* Wait for what the slot stage lacks (shard lock held). 0 with the lock
 * held to look again (*c: a connection handed over); otherwise the
 * lock is released: POOL_EINPROGRESS, or an error. */
static int slot_wait(struct pool_pending *p, enum wait_why why,
		     struct pool_conn **c)
{
	struct pool_endpoint *ep = p->ep;
	int rc;

	if (!p->wait_deadline_ns) {
		p->wait_deadline_ns = now_ns() + MS_TO_NS(ep->set.acquire_timeout_ms);
		ep->stats.waits++;
	}
	if (why == WAIT_DIAL && !p->waited_dial) {
		p->waited_dial = true;
		ep->xstats.connect_waits++;
	}
	if (p->async && p->w.efd < 0)
		return make_efd(p);
	rc = waiter_wait(p->pool, &p->w, why, p->wait_deadline_ns, c);
	if (rc == POOL_EINPROGRESS) {
		plock_unlock(&ep->shard->lock);
		return rc;
	}
	if (rc && !*c) {
		ep->stats.wait_timeouts++;
		plock_unlock(&ep->shard->lock);
		leave_wait(p->pool, &p->w);
		return rc;
	}
	p->may_evict = p->may_evict || p->w.woken;
	return 0;
}

/* Shard lock held on entry, released on return. */
static int slot_stage(struct pool_pending *p, pool_conn_t **out)
{
	struct pool *pool = p->pool;
	struct pool_endpoint *ep = p->ep;
	struct pool_conn *c = NULL;
	enum wait_why why;
	enum slot slot;
	int rc;

	for (;;) {
		/* Handed over by a pool_put, or idle: checked alike. */
		if (checkout_idle(pool, ep, c, out)) {
			leave_wait(pool, &p->w);
			return 0;
		}
		c = NULL;
		if (dial_capped(ep)) {
			why = WAIT_DIAL;
		} else {
			slot = slot_reserve(pool, ep, &p->w);
			if (slot == SLOT_OK)
				return dial_admit(p);
			/* One eviction per wake-up: a peer-first one keeps its
			 * max_total slot while it drains, and evicting again
			 * and again would empty every idle list for one
			 * caller. */
			if (slot == SLOT_TOTAL_FULL && p->may_evict) {
				p->may_evict = false;
				if (evict_and_retry(pool, ep))
					continue;
			}
			why = slot == SLOT_TOTAL_FULL ? WAIT_TOTAL : WAIT_SLOT;
		}
		rc = slot_wait(p, why, &c);
		if (rc)
			return rc;
	}
}

/* A connect sequence ended (no lock held): counted, backoff updated, and
 * on failure the slots given back; callers waiting for max_connecting
 * look again. */
static void dial_end(struct pool_pending *p, int rc)
{
	struct pool_endpoint *ep = p->ep;
	const struct dial *d = &p->dial;
	uint64_t now = now_ns();
	uint32_t delay = 0;
	int saved = errno;

	plock_lock(&ep->shard->lock);
	ep->ndialing--;
	if (rc == 0) {
		backoff_succeeded(ep);
		plock_unlock(&ep->shard->lock);
	} else {
		ep->stats.connect_failures++;
		delay = backoff_failed(ep, rc, now);
		slot_abandon(p->pool, ep);
	}
	if (ep->set.max_connecting)
		waiters_wake_ep_all(p->pool, ep);
	obs_connect(p->pool, ep, rc, now - (d->first_ns ? d->first_ns : d->begin_ns));
	if (delay)
		obs_backoff(p->pool, ep, delay);
	errno = saved;
}

static int dial_stage(struct pool_pending *p)
{
	int fd = -1, rc = dial_step(&p->dial, &fd);

	if (rc == POOL_EINPROGRESS)
		return rc;
	dial_end(p, rc);
	if (rc)
		return rc;
	p->fd = fd;
	p->stage = PEND_CONNECTED;
	return NEXT;
}

static bool has_on_connect(const struct pool_endpoint *ep)
{
	return ep->hooks && ep->hooks->on_connect;
}

/* on_connect (it may block) and the hand-out. */
static int connected_stage(struct pool_pending *p, pool_conn_t **out)
{
	struct pool_endpoint *ep = p->ep;
	struct pool_conn *c = conn_new(ep, p->fd);
	int rc = POOL_ENOMEM;

	if (!c)
		teardown_now(p->fd, TEARDOWN_ABORT); /* unused: no TIME_WAIT */
	else
		rc = conn_on_connect(c, NULL); /* on failure, c is freed */
	p->fd = -1;
	if (rc) {
		plock_lock(&ep->shard->lock);
		ep->stats.connect_failures++;
		slot_abandon(p->pool, ep);
		return rc;
	}
	checkout_fresh(p->pool, c);
	*out = c;
	return 0;
}

/* ---- the machine ---- */

static void pend_init(struct pool_pending *p, struct pool *pool,
		      struct pool_endpoint *ep, bool async)
{
	memset(p, 0, offsetof(struct pool_pending, dial));
	p->pool = pool;
	p->ep = ep;
	p->stage = PEND_SLOT;
	p->async = async;
	p->may_evict = true;
	p->start_ns = now_ns();
	p->fd = p->epfd = p->tfd = -1;
	p->armed_ns = 0;
	p->fork_gen = pool->fork_gen;
	waiter_init(&p->w, ep);
}

/* The acquire is over, whichever way (no lock held). */
static void pend_end(struct pool_pending *p)
{
	struct pool_endpoint *ep = p->ep;

	p->stage = PEND_DONE;
	obs_time(ep, HIST_ACQUIRE, now_ns() - p->start_ns);
	plock_lock(&ep->shard->lock);
	ep->pins--;
	plock_unlock(&ep->shard->lock);
}

/* Run p as far as it goes without waiting; may_block: on_connect may run
 * (not in pool_get_start); locked: ep's shard lock is held (first call). */
static int pend_step(struct pool_pending *p, pool_conn_t **out,
		     bool may_block, bool locked)
{
	int rc = NEXT;

	while (rc == NEXT) {
		switch (p->stage) {
		case PEND_SLOT:
			if (!locked)
				plock_lock(&p->ep->shard->lock);
			rc = slot_stage(p, out);
			break;
		case PEND_DIAL:
			rc = dial_stage(p);
			break;
		case PEND_CONNECTED:
			if (!may_block && has_on_connect(p->ep))
				return POOL_EINPROGRESS;
			rc = connected_stage(p, out);
			break;
		default:
			return POOL_EINVAL;
		}
		locked = false;
	}
	if (rc != POOL_EINPROGRESS)
		pend_end(p);
	return rc;
}

/* Give up at any stage, freeing what it holds (no lock held). */
static void pend_abandon(struct pool_pending *p)
{
	struct pool_endpoint *ep = p->ep;

	switch (p->stage) {
	case PEND_SLOT:
		leave_wait(p->pool, &p->w);
		break;
	case PEND_DIAL:
		dial_abort(&p->dial);
		plock_lock(&ep->shard->lock);
		ep->ndialing--;
		slot_abandon(p->pool, ep);
		if (ep->set.max_connecting)
			waiters_wake_ep_all(p->pool, ep);
		break;
	case PEND_CONNECTED:
		teardown_now(p->fd, TEARDOWN_ABORT);
		p->fd = -1;
		plock_lock(&ep->shard->lock);
		slot_abandon(p->pool, ep);
		break;
	default:
		return;
	}
	pend_end(p);
}

static void pend_free(struct pool_pending *p)
{
	pend_abandon(p);
	pend_close_fds(p);
	free(p);
}

/* The blocking form: sleep where the machine waits. Only the dial stage
 * comes back unfinished: the slot stage sleeps in waiter_wait. */
static int pend_block(struct pool_pending *p, pool_conn_t **out)
{
	int rc = pend_step(p, out, true, true);

	while (rc == POOL_EINPROGRESS) {
		dial_wait(&p->dial, -1);
		rc = pend_step(p, out, true, false);
	}
	return rc;
}

/* Not done yet: the pending's fd must say when to go on. Otherwise it is
 * given up and the error returned. */
static int pend_suspend(struct pool_pending *p)
{
	int rc = pend_arm(p);

	if (rc != POOL_EINPROGRESS)
		pend_abandon(p);
	return rc;
}

int acquire_locked(struct pool *pool, struct pool_endpoint *ep,
		   pool_conn_t **out, pool_pending_t **pend)
{
	struct pool_pending *p, blocking;
	int rc;

	ep->pins++;
	if (!pend) {
		pend_init(&blocking, pool, ep, false);
		return pend_block(&blocking, out);
	}
	plock_unlock(&ep->shard->lock);
	p = malloc(sizeof(*p));
	if (!p) {
		plock_lock(&ep->shard->lock);
		ep->pins--;
		plock_unlock(&ep->shard->lock);
		return POOL_ENOMEM;
	}
	pend_init(p, pool, ep, true);
	rc = pend_step(p, out, false, false);
	if (rc == POOL_EINPROGRESS)
		rc = pend_suspend(p);
	if (rc == POOL_EINPROGRESS)
		*pend = p;
	else
		pend_free(p);
	return rc;
}

/* ---- fork ---- */

/* Whether pend is its parent's, in a child of fork() (no lock held). */
static bool pend_inherited(struct pool *pool, const struct pool_pending *p)
{
	fork_check(pool); /* a first call in the child: the pool forgets */
	return p->fork_gen != pool->fork_gen;
}

/* A child's copy of its parent's pending acquire: its epoll set, timer,
 * eventfd and sockets are the parent's too, whose acquire goes on, so
 * only the child's copies are closed: no epoll_ctl, no timer set, no
 * SO_LINGER, nothing sent. Nothing is given back either: the child's
 * pool forgot the parent's slots, waiters and connects at the fork
 * (fork.c). The lookup is the parent's resolver's, abandoned in the
 * child: only its descriptor's copy is closed (the request's few bytes
 * stay, as resolve.c has no call to free one without its lock). */
static void pend_forget_inherited(struct pool_pending *p)
{
	unsigned i;

	if (p->stage == PEND_DIAL) {
		for (i = 0; i < p->dial.nt; i++)
			close(p->dial.t[i].fd);
		if (p->dial.req)
			close(p->dial.req_fd);
		addr_set_unref(p->dial.addrs);
	}
	if (p->fd >= 0)
		close(p->fd);
	pend_close_fds(p);
	free(p);
}

/* ---- the event-loop API ---- */

POOL_API int pool_pending_fd(const pool_pending_t *pend, short *events)
{
	if (events)
		*events = POLLIN;
	return pend ? pend->epfd : POOL_EINVAL;
}

POOL_API int pool_get_finish(pool_t *pool, pool_pending_t *pend, pool_conn_t **out)
{
	int rc;

	if (!out)
		return POOL_EINVAL;
	*out = NULL;
	if (!pool || !pend || pend->pool != pool || pend->stage == PEND_DONE)
		return POOL_EINVAL;
	if (pend_inherited(pool, pend)) {
		pend_forget_inherited(pend);
		return POOL_EINVAL;
	}
	/* Before the flags are looked at: a kick after this is not lost. */
	drain_fd(pend->w.efd);
	drain_fd(pend->tfd);
	rc = pend_step(pend, out, true, false);
	if (rc == POOL_EINPROGRESS)
		rc = pend_suspend(pend);
	if (rc != POOL_EINPROGRESS)
		pend_free(pend);
	return rc;
}

POOL_API void pool_get_cancel(pool_t *pool, pool_pending_t *pend)
{
	if (!pool || !pend || pend->pool != pool)
		return;
	if (pend_inherited(pool, pend))
		pend_forget_inherited(pend);
	else
		pend_free(pend);
}
