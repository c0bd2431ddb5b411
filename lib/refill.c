/*
 * min_idle refills: opening warm connections ahead of demand.
 *
 * A connect can take up to connect_timeout_ms (an unreachable endpoint
 * takes all of it), time the maintenance thread must not spend: drains
 * have deadlines, idle timeouts are due, pool_destroy waits for it. So in
 * thread mode a refill thread, started on first need, does the connects
 * one after another. In manual mode there is no thread by the user's
 * choice, and pool_maintain() must never block: its refills are
 * non-blocking connect sequences (dial.c, as pool_get_start's), their
 * sockets in the maintenance's epoll set (ITEM_REFILL), so that
 * pool_maintenance_fd() turns readable when one progresses, and each
 * pool_maintain() call takes them a step further. Both modes count in
 * max_connecting and the endpoint's backoff, as pool_get's connects do.
 * The slots are reserved by the sweep (nactive, nconnecting) before a
 * refill is queued, so caps hold while it connects. The thread's connect
 * also polls a cancel eventfd, so that stopping it (pool_destroy) does
 * not wait for a connect to time out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "backoff.h"
#include "dial.h"
#include "obs.h"
#include "pool-internal.h"
#include "wait.h"

#define REFILL_RETRY_NS MS_TO_NS(1000)

/* A manual-mode refill under way. */
struct refill_dial {
	enum reaper_item item;     /* ITEM_REFILL (its events name refill_mark) */
	struct pool_endpoint *ep;  /* held by the reserved slot */
	struct refill_dial *next;  /* refiller.dialing */
	struct dial d;
};

static const struct connect_ctl ctl_none = { .cancel_fd = -1 };

/* What the refills' sockets name in the reaper's epoll set: not their
 * refill_dial, which is freed as soon as its connect ends, while a
 * concurrent pool_maintain's reaper_run may hold a batch of events that
 * names it (the runner frees watches after its batch; a refill is freed
 * by whoever steps it). The runner only needs to know it is a refill. */
static const struct { enum reaper_item item; } refill_mark = { ITEM_REFILL };

/* Give back a slot reserved for a refill that will not happen, and its
 * place among the connects in flight (max_connecting). */
static void refill_release(struct pool *pool, struct pool_endpoint *ep, bool failed)
{
	bool capped;

	plock_lock(&ep->shard->lock);
	ep->nconnecting--;
	ep->ndialing--;
	capped = ep->set.max_connecting != 0;
	if (failed)
		ep->stats.connect_failures++;
	ep_slot_put_unlock(pool, ep); /* to a waiter, if one is queued */
	total_release(pool);
	/* By address only: ep may be forgotten, and then nobody waits. */
	if (capped)
		waiters_wake_ep_all(pool, ep);
}

/* A refill's connect sequence ended with rc after ns: the backoff, and
 * the observers (no lock held; ep held by the slot). */
static void refill_dial_end(struct pool *pool, struct pool_endpoint *ep, int rc,
			    uint64_t ns)
{
	uint32_t delay = 0;

	plock_lock(&ep->shard->lock);
	if (rc == 0)
		backoff_succeeded(ep);
	else
		delay = backoff_failed(ep, rc, now_ns());
	plock_unlock(&ep->shard->lock);
	obs_connect(pool, ep, rc, ns);
	if (delay)
		obs_backoff(pool, ep, delay);
}

/* A warm connection's on_connect failed: nobody's pool_get sees it, so
 * it is logged, the first at once, then at most once a minute with the
 * count (it is also counted as a connect failure, and retried later). */
static void hook_failed(struct pool *pool, struct pool_endpoint *ep)
{
	char key[POOL_MAX_HOST + POOL_MAX_PATH + 16];
	uint32_t n;

	plock_lock(&ep->shard->lock);
	n = ratelimit_hit(&ep->hook_log, now_coarse_ns());
	if (n)
		snprintf(key, sizeof(key), "%s", ep->key);
	plock_unlock(&ep->shard->lock);
	if (n == 1)
		pool_log(pool, POOL_LOG_WARN, "%s: on_connect failed on a warm "
			 "(min_idle) connection; it was aborted", key);
	else if (n)
		pool_log(pool, POOL_LOG_WARN, "%s: on_connect failed on %u warm "
			 "(min_idle) connections since the last warning", key, n);
}

/* A refill's connect ended with fd, or a negative code, after ns (ctl:
 * what published its socket): make the connection warm, or give its slot
 * back. *due gets when the maintenance must look again: the new
 * connection's idle deadline, or a retry a while after a failure
 * (counted from its end, not its start). Returns whether it connected. */
static bool refill_land(struct pool *pool, struct pool_endpoint *ep, int fd,
			uint64_t ns, const struct connect_ctl *ctl, uint64_t *due)
{
	struct pool_conn *c;
	bool capped;

	if (fd == POOL_ESHUTDOWN) {
		/* Cancelled by refill_stop: not the endpoint's failure. */
		refill_release(pool, ep, false);
		*due = 0;
		return false;
	}
	refill_dial_end(pool, ep, fd < 0 ? fd : 0, ns);
	c = fd >= 0 ? conn_new(ep, fd) : NULL;
	if (fd >= 0 && !c)
		connect_ctl_close(ctl, fd);
	if (c && conn_on_connect(c, ctl)) {
		c = NULL; /* aborted and freed */
		hook_failed(pool, ep);
	}
	if (!c) {
		refill_release(pool, ep, true);
		*due = now_ns() + REFILL_RETRY_NS;
		return false;
	}
	*due = conn_idle_due(c);
	/* Unpublished before it goes on the idle list, where others may
	 * retire it and its number be reused: a fork's child must never
	 * close a number through inflight_fd that is no longer this socket.
	 * (A fork right here leaves the child a copy until it exits or
	 * execs, the gap tcpool(3) describes; the other way round it would
	 * close someone else's descriptor.) */
	if (ctl->lock) {
		pthread_mutex_lock(ctl->lock);
		*ctl->inflight = -1;
		pthread_mutex_unlock(ctl->lock);
	}
	plock_lock(&ep->shard->lock);
	ep->nconnecting--;
	ep->ndialing--;
	ep->stats.connects++;
	/* c may be popped, retired and freed once the lock drops: nothing
	 * of it is read after this point. */
	idle_push(pool, ep, c, false); /* warm, but least recently used */
	/* The server closed it already, and the idle watch, which saw that
	 * before it was idle, will not say so again: the sweep retires it. */
	if (c->peer_gone)
		*due = now_ns();
	/* Read now: once unlocked, c may go, and with it ep's last slot (ep
	 * is then forgotten); the wake-ups below use ep's address only. */
	capped = ep->set.max_connecting != 0;
	plock_unlock(&ep->shard->lock);
	/* A connect in flight ended too: with max_connecting, every waiter
	 * for ep looks again (one takes c, another may dial). */
	if (capped)
		waiters_wake_ep_all(pool, ep);
	else
		waiters_wake_ep(pool, ep);
	if (pool->cfg->max_total)
		waiters_wake_total(pool);
	return true;
}

/* Open one warm connection for ep in its reserved slot, blocking (the
 * refill thread), cancelled by refill_stop. */
static bool refill_one(struct pool *pool, struct pool_endpoint *ep, uint64_t *due)
{
	struct refiller *r = &pool->refill;
	const struct connect_ctl ctl = { .cancel_fd = r->cancel_fd, .lock = &r->lock,
					 .inflight = &r->inflight_fd };
	uint64_t now = now_ns();
	int fd = socket_connect_ctl(ep,
				    now + MS_TO_NS(ep->set.connect_timeout_ms), &ctl);

	return refill_land(pool, ep, fd, now_ns() - now, &ctl, due);
}

/* Take a manual refill a step further; true once it is over. */
static bool refill_dial_step(struct pool *pool, struct refill_dial *rd)
{
	uint64_t due;
	int fd = -1, rc = dial_step(&rd->d, &fd);

	if (rc == POOL_EINPROGRESS) {
		maint_note_due(pool, dial_wake_ns(&rd->d));
		return false;
	}
	refill_land(pool, rd->ep, rc ? rc : fd, now_ns() - rd->d.begin_ns,
		    &ctl_none, &due);
	maint_note_due(pool, due);
	return true;
}

/* Manual mode: start a refill's connect; pool_maintain goes on with it. */
static void refill_dial_start(struct pool *pool, struct pool_endpoint *ep)
{
	struct refiller *r = &pool->refill;
	struct refill_dial *rd = malloc(sizeof(*rd));

	if (!rd) {
		refill_release(pool, ep, false);
		return;
	}
	rd->item = ITEM_REFILL;
	rd->ep = ep;
	dial_begin(&rd->d, pool, ep, &ctl_none);
	rd->d.ev_ptr = (void *)&refill_mark;
	if (pool->reaper.epfd >= 0)
		dial_set_epfd(&rd->d, pool->reaper.epfd); /* empty yet: cannot fail */
	if (refill_dial_step(pool, rd)) {
		free(rd);
		return;
	}
	pthread_mutex_lock(&r->lock);
	rd->next = r->dialing;
	r->dialing = rd;
	pthread_mutex_unlock(&r->lock);
}

void refill_progress(struct pool *pool)
{
	struct refiller *r = &pool->refill;
	struct refill_dial *list, *rd, *keep = NULL;

	pthread_mutex_lock(&r->lock);
	list = r->dialing;
	r->dialing = NULL;
	pthread_mutex_unlock(&r->lock);
	/* Unlocked: an on_connect hook may take its time. */
	while (list) {
		rd = list;
		list = rd->next;
		if (refill_dial_step(pool, rd)) {
			free(rd);
		} else {
			rd->next = keep;
			keep = rd;
		}
	}
	pthread_mutex_lock(&r->lock);
	while (keep) {
		rd = keep;
		keep = rd->next;
		rd->next = r->dialing;
		r->dialing = rd;
	}
	pthread_mutex_unlock(&r->lock);
}

void refill_child_close(struct pool *pool)
{
	struct refill_dial *rd;
	unsigned i;

	for (rd = pool->refill.dialing; rd; rd = rd->next) {
		for (i = 0; i < rd->d.nt; i++) {
			close(rd->d.t[i].fd); /* the child's copy only */
			rd->d.t[i].fd = -1;
		}
		/* The lookup's descriptor: the parent's resolver's, whose
		 * request the child never ends (resolve_atfork_child). */
		if (rd->d.req && rd->d.req_fd >= 0)
			close(rd->d.req_fd);
		rd->d.req_fd = -1;
	}
}

void refill_child_drop(struct pool *pool)
{
	struct refill_dial *rd, *next;

	for (rd = pool->refill.dialing; rd; rd = next) {
		next = rd->next;
		addr_set_unref(rd->d.addrs);
		free(rd);
	}
	pool->refill.dialing = NULL;
}

/* Refill a batch; after a failure, the rest of that endpoint's batch is
 * given back rather than tried (an unreachable endpoint costs one
 * connect_timeout_ms per retry, not one per missing connection). */
static void refill_batch(struct pool *pool, struct pool_endpoint **eps, unsigned n)
{
	struct pool_endpoint *failed = NULL;
	unsigned i;

	for (i = 0; i < n; i++) {
		uint64_t due;

		if (eps[i] == failed || atomic_load(&pool->maint_stop)) {
			refill_release(pool, eps[i], false);
			continue;
		}
		if (!refill_one(pool, eps[i], &due))
			failed = eps[i];
		maint_note_due(pool, due);
	}
}

static void *refill_thread(void *arg)
{
	struct pool *pool = arg;
	struct refiller *r = &pool->refill;
	struct pool_endpoint *batch[REFILL_QUEUE];
	unsigned n;

	pthread_mutex_lock(&r->lock);
	while (!r->stop) {
		if (!r->n) {
			pthread_cond_wait(&r->cond, &r->lock);
			continue;
		}
		n = r->n;
		memcpy(batch, r->queue, n * sizeof(batch[0]));
		r->n = 0;
		pthread_mutex_unlock(&r->lock);
		refill_batch(pool, batch, n);
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

void refill_init(struct pool *pool)
{
	struct refiller *r = &pool->refill;

	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	r->n = 0;
	r->running = false;
	r->stop = false;
	r->cancel_fd = -1;
	r->inflight_fd = -1;
	r->dialing = NULL;
}

/* Start the thread (r->lock held), with its cancel eventfd: without one
 * it could not be stopped at once, so it is not started. */
static void refill_thread_start(struct pool *pool, struct refiller *r)
{
	if (r->cancel_fd < 0)
		r->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->cancel_fd >= 0 && thread_start(&r->thread, refill_thread, pool) == 0)
		r->running = true;
}

/* Queue reserved refills (thread mode) or do them now (manual mode). */
void refill_submit(struct pool *pool, struct pool_endpoint **eps, unsigned n)
{
	struct refiller *r = &pool->refill;
	unsigned i;

	if (!n)
		return;
	if (pool->cfg->maintenance == MAINT_MANUAL) {
		for (i = 0; i < n; i++)
			refill_dial_start(pool, eps[i]);
		return;
	}
	pthread_mutex_lock(&r->lock);
	if (!r->running && !r->stop)
		refill_thread_start(pool, r);
	for (i = 0; i < n && r->running && !r->stop && r->n < REFILL_QUEUE; i++)
		r->queue[r->n++] = eps[i];
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	/* What could not be queued (no thread, full queue) goes back. */
	for (; i < n; i++)
		refill_release(pool, eps[i], false);
}

/* Stop the refill thread, cutting short the connect it may be in, and
 * give back what was still queued. */
void refill_stop(struct pool *pool)
{
	struct refiller *r = &pool->refill;
	uint64_t one = 1;
	unsigned i;

	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->cond);
	/* Cannot fail: the counter is far from full. */
	if (r->cancel_fd >= 0 && write(r->cancel_fd, &one, sizeof(one)) < 0)
		one = 0;
	pthread_mutex_unlock(&r->lock);
	if (r->running)
		pthread_join(r->thread, NULL);
	r->running = false;
	for (i = 0; i < r->n; i++)
		refill_release(pool, r->queue[i], false);
	r->n = 0;
	/* Manual mode's connects under way: given up. */
	while (r->dialing) {
		struct refill_dial *rd = r->dialing;

		r->dialing = rd->next;
		dial_abort(&rd->d);
		refill_release(pool, rd->ep, false);
		free(rd);
	}
}

void refill_fini(struct pool *pool)
{
	if (pool->refill.cancel_fd >= 0)
		close(pool->refill.cancel_fd);
	pool->refill.cancel_fd = -1;
	pthread_mutex_destroy(&pool->refill.lock);
	pthread_cond_destroy(&pool->refill.cond);
}
