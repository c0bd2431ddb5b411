/*
 * The reaper: peer-first closes waiting for the server's EOF, many at once
 * in one epoll set, each under its own close_timeout_ms deadline. It runs
 * in the maintenance thread, in pool_maintain(), or in pool_destroy().
 *
 * The same set watches idle sockets (watch_idle): a socket enters it once,
 * when connected, and leaves it when retired, never on pool_get or
 * pool_put, which stay free of system calls (an epoll_ctl per get and put
 * would cost them ~1 us, thirty times the pair). It is registered for
 * EPOLLRDHUP only (EPOLLHUP and EPOLLERR come with it), edge-triggered:
 * the requests and replies of a checked-out connection wake nobody, and
 * a FIN is reported once. When it comes, the shard lock decides: a
 * connection on its idle list is taken off and closed at once (the peer
 * closed first: no TIME_WAIT on either side), one checked out is marked
 * peer_gone, so that pool_put retires it instead of keeping it idle where
 * the watch would not report it again. In manual mode the set is
 * pool_maintenance_fd, which so becomes readable for it.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "obs.h"
#include "park.h"
#include "pool-internal.h"

#define REAPER_BATCH 64

void reaper_init_state(struct reaper *r)
{
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->run_lock, NULL);
	r->list = NULL;
	r->dead = NULL;
	r->n = 0;
	r->min_deadline_ns = UINT64_MAX;
	r->epfd = r->wakefd = -1;
}

int reaper_open(struct reaper *r)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	int wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int err;

	if (epfd >= 0 && wakefd >= 0 &&
	    epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev) == 0) {
		/* Under the lock: reaper_add reads epfd under it. */
		pthread_mutex_lock(&r->lock);
		r->epfd = epfd;
		r->wakefd = wakefd;
		pthread_mutex_unlock(&r->lock);
		return 0;
	}
	err = errno;
	if (epfd >= 0)
		close(epfd);
	if (wakefd >= 0)
		close(wakefd);
	return err == EMFILE || err == ENFILE ? POOL_EMFILE : POOL_ESYS;
}

int reaper_init(struct reaper *r)
{
	int rc;

	reaper_init_state(r);
	rc = reaper_open(r);
	if (rc)
		reaper_fini(r);
	return rc;
}

void reaper_free_dead(struct watch *w)
{
	struct watch *next;

	for (; w; w = next) {
		next = w->next;
		free(w);
	}
}

void reaper_fini(struct reaper *r)
{
	reaper_free_dead(r->dead);
	r->dead = NULL;
	if (r->epfd >= 0)
		close(r->epfd);
	if (r->wakefd >= 0)
		close(r->wakefd);
	r->epfd = r->wakefd = -1;
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->run_lock);
}

void reaper_wake(struct pool *pool)
{
	uint64_t one = 1;
	ssize_t n = write(pool->reaper.wakefd, &one, sizeof(one));

	(void)n; /* a full counter already means "wake up" */
}

unsigned reaper_pending(struct pool *pool)
{
	unsigned n;

	pthread_mutex_lock(&pool->reaper.lock);
	n = pool->reaper.n;
	pthread_mutex_unlock(&pool->reaper.lock);
	return n;
}

static void count_drain_start(struct pool_endpoint *ep)
{
	plock_lock(&ep->shard->lock);
	ep->stats.draining++;
	plock_unlock(&ep->shard->lock);
}

/* A drain ended: counted, and a fallback logged (rate-limited). The
 * message is made under the lock, logged after it: ep may be forgotten
 * as soon as the lock drops with nothing left draining. */
static void count_drain_end(struct pool *pool, struct pool_endpoint *ep, bool ok,
			    enum fallback_why why)
{
	char msg[512];
	bool log = false;

	plock_lock(&ep->shard->lock);
	ep->stats.draining--;
	if (ok)
		ep->stats.peer_first_ok++;
	else
		log = fallback_count_locked(ep, why, msg, sizeof(msg));
	plock_unlock(&ep->shard->lock);
	if (log)
		pool_log(pool, POOL_LOG_WARN, "%s", msg);
}

void reaper_add(struct pool *pool, int fd, struct pool_endpoint *ep,
		void *data, void (*free_fn)(void *data))
{
	struct reaper *r = &pool->reaper;
	struct drain *d = calloc(1, sizeof(*d));
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
	size_t budget;
	bool wake, ok;

	count_drain_start(ep);
	if (!d)
		goto fallback;
	d->item = ITEM_DRAIN;
	d->fd = fd;
	d->ep = ep;
	d->data = data;
	d->free_fn = free_fn;
	d->budget = DRAIN_BUDGET;
	d->fallback = ep->set.fallback;
	d->deadline_ns = now_ns() + MS_TO_NS(ep->set.close_timeout_ms);
	ev.data.ptr = d;
	pthread_mutex_lock(&r->lock);
	/* No epoll set (a child of fork() that had no descriptor to make
	 * one) or no room in it: the EOF could not be seen. */
	if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		pthread_mutex_unlock(&r->lock);
		free(d);
		goto fallback;
	}
	DL_APPEND(r->list, d);
	r->n++;
	/* The runner already wakes by the earliest deadline it knows of (and
	 * at once for the server's EOF, which epoll reports): only a drain
	 * that is now the earliest needs it woken. Drains of one endpoint
	 * share a timeout, so under a stream of retirements this wakes
	 * nobody, and pool_put pays no context switch. */
	wake = d->deadline_ns < r->min_deadline_ns;
	if (wake)
		r->min_deadline_ns = d->deadline_ns;
	pthread_mutex_unlock(&r->lock);
	if (wake)
		reaper_wake(pool);
	return;
fallback:
	/* Cannot wait: do not block the caller, fall back now. */
	budget = DRAIN_BUDGET;
	ok = teardown_fallback(fd, ep->set.fallback, &budget);
	data_release(data, free_fn);
	obs_time(ep, HIST_DRAIN, 0);
	if (!ok)
		obs_fallback(pool, ep, POOL_FALLBACK_NOWAIT, ep->set.fallback, 0);
	count_drain_end(pool, ep, ok, FB_NOWAIT);
	total_release(pool);
}

/* Close a finished drain: EOF seen (ok) or fallback; then its data is
 * freed, before it stops counting as draining (stats showing no drain
 * mean every drained connection's data is freed), and its max_total slot
 * is free. No lock held. */
static void drain_finish(struct drain *d, bool ok)
{
	struct pool *pool = d->ep->pool;
	enum fallback_why why = d->budget == 0 ? FB_BUDGET : FB_TIMEOUT;
	uint64_t took;

	if (ok)
		teardown_now(d->fd, TEARDOWN_CLOSE);
	else
		ok = teardown_fallback(d->fd, d->fallback, &d->budget);
	data_release(d->data, d->free_fn);
	/* From the close request (sent just before reaper_add set the
	 * deadline) to now; ep is still held by the drain here. */
	took = now_ns() - (d->deadline_ns - MS_TO_NS(d->ep->set.close_timeout_ms));
	obs_time(d->ep, HIST_DRAIN, took);
	if (!ok)
		obs_fallback(pool, d->ep, obs_fallback_code(why), d->fallback, took);
	count_drain_end(pool, d->ep, ok, why);
	free(d);
	total_release(pool);
}

/* Unlink d (reaper lock held) and queue it on done with its outcome. */
static void drain_unlink(struct reaper *r, struct drain *d, struct drain **done,
			 bool ok)
{
	DL_DELETE(r->list, d);
	r->n--;
	epoll_ctl(r->epfd, EPOLL_CTL_DEL, d->fd, NULL);
	d->ok = ok;
	DL_APPEND(*done, d);
}

/* Sort the events of a batch (no lock held): drains are stepped here,
 * unlocked, since a drain in the list is the runner's alone (run_lock):
 * reaper_add and the atfork handler touch only the list's links, under
 * the reaper lock, and only the runner unlinks and frees a drain. A step
 * may read a drain's whole DRAIN_BUDGET (64 recv calls), and a batch has
 * up to REAPER_BATCH drains: under the lock, that kept pool_put
 * (reaper_add) and every new connection (conn_watch) waiting for
 * milliseconds. Drains that ended are moved to fin (their outcome in
 * ok), watches that fired to the front of evs for watch_fired, which
 * needs shard locks. Returns how many watches; *nfin gets the drains. */
static int handle_events(struct pool *pool, struct epoll_event *evs, int n,
			 struct drain **fin, bool *ok, int *nfin)
{
	struct reaper *r = &pool->reaper;
	uint64_t junk;
	int i, nwatch = 0;

	*nfin = 0;
	for (i = 0; i < n; i++) {
		struct drain *d = evs[i].data.ptr;
		enum drain_status st;

		if (!d) {
			ssize_t rd = read(r->wakefd, &junk, sizeof(junk));

			(void)rd;
			continue;
		}
		if (d->item == ITEM_WATCH) {
			evs[nwatch++].data.ptr = d;
			continue;
		}
		if (d->item == ITEM_REFILL)
			continue; /* it woke pool_maintain, which steps it */
		st = drain_step(d->fd, &d->budget);
		if (st != DRAIN_AGAIN) {
			ok[*nfin] = st == DRAIN_EOF;
			fin[(*nfin)++] = d;
		}
	}
	return nwatch;
}

void conn_watch(struct pool *pool, struct pool_conn *c)
{
	struct reaper *r = &pool->reaper;
	struct epoll_event ev = { .events = EPOLLRDHUP | EPOLLET };
	struct watch *w;

	if (!c->ep->set.watch_idle)
		return;
	w = malloc(sizeof(*w));
	if (!w)
		return; /* unwatched: found dead at its next pool_get instead */
	w->item = ITEM_WATCH;
	w->fd = c->fd;
	w->shard = c->ep->shard;
	w->conn = c;
	w->next = NULL;
	ev.data.ptr = w;
	pthread_mutex_lock(&r->lock);
	/* No set (a child of fork() that could not make one): unwatched. */
	if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, c->fd, &ev) == 0)
		c->watch = w;
	pthread_mutex_unlock(&r->lock);
	if (!c->watch)
		free(w);
}

void conn_unwatch(struct pool *pool, struct pool_conn *c)
{
	struct reaper *r = &pool->reaper;
	struct watch *w = c->watch;

	if (!w)
		return;
	c->watch = NULL;
	/* From here the runner, should it hold an event for w, leaves c
	 * alone: c is about to be freed. */
	plock_lock(&w->shard->lock);
	w->conn = NULL;
	plock_unlock(&w->shard->lock);
	/* Out of the set before the fd is closed: a copy of the descriptor
	 * in a child of fork() would keep the registration alive. The runner
	 * frees w once no batch of events can name it. */
	pthread_mutex_lock(&r->lock);
	epoll_ctl(r->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	w->next = r->dead;
	r->dead = w;
	pthread_mutex_unlock(&r->lock);
}

/* The peer of a watched socket closed or reset it (no lock held). */
/* The peer of a watched socket closed or reset it (no lock held but the
 * runner's): an idle connection is taken off its list and returned, for
 * the caller to drop once it holds no lock (conn_drop fires the event
 * callback, which must run with none); NULL otherwise. */
static struct pool_conn *watch_fired(struct pool *pool, struct watch *w)
{
	struct shard *sh = w->shard;
	struct pool_conn *c;
	struct pool_endpoint *ep;

	plock_lock(&sh->lock);
	c = w->conn;
	if (c && !c->in_idle && park_take_locked(c)) {
		/* Parked in its thread's cache: idle too, taken from there. */
		ep = c->ep;
		park_uncount_locked(ep, c);
		ep->stats.peer_closed_idle++;
		plock_unlock(&sh->lock);
		return c;
	}
	if (!c || !c->in_idle) {
		/* Retired meanwhile, or checked out (or being handed over):
		 * its holder's pool_put retires it. Its holder reads the flag
		 * without the lock when it is affine to a thread's cache. */
		if (c)
			__atomic_store_n(&c->peer_gone, true, __ATOMIC_RELAXED);
		plock_unlock(&sh->lock);
		return NULL;
	}
	ep = c->ep;
	idle_remove(pool, ep, c);
	ep->stats.peer_closed_idle++;
	plock_unlock(&sh->lock);
	return c; /* its slot keeps ep until conn_drop */
}

/* Watches unwatched so far are out of the set: no later epoll_wait can
 * name them, and the batch that could has been handled. */
static void reap_dead(struct reaper *r)
{
	struct watch *dead;

	pthread_mutex_lock(&r->lock);
	dead = r->dead;
	r->dead = NULL;
	pthread_mutex_unlock(&r->lock);
	reaper_free_dead(dead);
}

/* Fallback for drains past their deadline; returns ms to the next one.
 * The list is walked only once the earliest deadline is due: each run
 * holds the reaper lock, which pool_put and new connections take, and
 * thousands of drains cost a walk of thousands. min_deadline_ns is never
 * later than any drain's deadline (drains that ended early only leave
 * it early): at worst one wake-up comes early and walks. */
static int expire_overdue(struct reaper *r, uint64_t now, struct drain **done)
{
	struct drain *d, *tmp;
	uint64_t next = 0;

	if (!r->list) {
		r->min_deadline_ns = UINT64_MAX;
		return -1;
	}
	if (now < r->min_deadline_ns)
		return deadline_ms(r->min_deadline_ns, now);
	DL_FOREACH_SAFE(r->list, d, tmp) {
		if (d->deadline_ns <= now)
			drain_unlink(r, d, done, false);
		else if (!next || d->deadline_ns < next)
			next = d->deadline_ns;
	}
	r->min_deadline_ns = next ? next : UINT64_MAX;
	if (!next)
		return -1;
	return deadline_ms(next, now);
}

/* epoll_wait for up to timeout_ms (-1: no limit). After a signal the
 * wait goes on for what is left of the timeout, not for all of it again:
 * pool_destroy and pool_maintain run in the application's threads, which
 * take its signals, and a signal every 20 ms would otherwise hold a
 * 50 ms wait, and the drain deadlines behind it, for as long as the
 * signals come. */
static int wait_events(int epfd, struct epoll_event *evs, int timeout_ms)
{
	uint64_t deadline = timeout_ms > 0 ? now_ns() + MS_TO_NS(timeout_ms) : 0;
	int n;

	for (;;) {
		n = epoll_wait(epfd, evs, REAPER_BATCH, timeout_ms);
		if (n >= 0 || errno != EINTR)
			return n;
		if (timeout_ms > 0)
			timeout_ms = deadline_ms(deadline, now_ns());
	}
}

int reaper_run(struct pool *pool, int timeout_ms)
{
	struct reaper *r = &pool->reaper;
	struct epoll_event evs[REAPER_BATCH];
	struct drain *done = NULL, *d, *tmp, *fin[REAPER_BATCH];
	struct pool_conn *gone[REAPER_BATCH];
	bool ok[REAPER_BATCH];
	int n, next, i, nwatch = 0, nfin = 0, ngone = 0;

	/* One runner at a time: a second one would race on the same drains,
	 * and free watches another one's batch still names. */
	if (pthread_mutex_trylock(&r->run_lock) != 0)
		return 1;
	n = wait_events(r->epfd, evs, timeout_ms);
	if (n > 0)
		nwatch = handle_events(pool, evs, n, fin, ok, &nfin);
	pthread_mutex_lock(&r->lock);
	for (i = 0; i < nfin; i++)
		drain_unlink(r, fin[i], &done, ok[i]);
	next = expire_overdue(r, now_ns(), &done);
	pthread_mutex_unlock(&r->lock);
	/* Under run_lock: another runner's reap_dead could free the watches
	 * this batch names. */
	for (i = 0; i < nwatch; i++)
		if ((gone[ngone] = watch_fired(pool, evs[i].data.ptr)))
			ngone++;
	reap_dead(r);
	pthread_mutex_unlock(&r->run_lock);
	/* CLOSE_WAIT: a plain close, no TIME_WAIT. */
	for (i = 0; i < ngone; i++)
		conn_drop(pool, gone[i], RR_PEER_CLOSED);
	DL_FOREACH_SAFE(done, d, tmp) {
		DL_DELETE(done, d);
		drain_finish(d, d->ok);
	}
	return next;
}
