/*
 * Name resolution off the caller's thread (issue 11).
 *
 * getaddrinfo() blocks, for as long as the system's resolver likes (a
 * dead DNS server: resolv.conf's timeout times its attempts, 10 s by
 * default) and cannot be cancelled. So lookups run in detached threads
 * that hold a reference to the pool's resolver: a caller waits on its
 * request's fd no longer than resolve_timeout_ms, and pool_destroy
 * never joins a thread stuck in getaddrinfo. The thread finishes on its
 * own later and frees the resolver if it was the last to hold it.
 *
 * At most RESOLVE_THREADS lookups run at once per pool; the others queue.
 * A thread waits RESOLVE_IDLE_MS for the next lookup before it ends
 * (pool_destroy ends idle ones at once; see lookup_thread for why).
 * A lookup of a host:port already in flight is joined, not repeated.
 *
 * A request's fd is a timerfd armed at its deadline, and fired at once
 * when the result comes in: it turns readable on either, so an event
 * loop polls that one fd and needs no timer of its own.
 *
 * The cache (dns_refresh_ms > 0) is the resolver's, keyed by host:port,
 * not the endpoint's: an endpoint is forgotten when quiet (maint.c) and
 * the cache then simply expires here. No shard lock is held while the
 * resolver lock is taken, nor taken under it (dnsrefresh.c calls in
 * with none; req_count takes the shard lock after unlocking); nothing
 * else is taken under the resolver lock but the reaper's wakefd write
 * (maint_note_due). A lookup thread is started with no lock held: its
 * slot is reserved under the lock first (nthreads), and given back if
 * it cannot start.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "resolve.h"

#define RESOLVE_THREADS 4          /* lookups running at once, per pool */
#define RESOLVE_IDLE_MS 30000      /* an idle lookup thread waits this long
                                    * for the next lookup before it ends */
#define KEY_LEN (POOL_MAX_HOST + 8) /* "host port" */

struct lookup;

/* A host:port: its cached addresses and its lookup in flight. */
struct rentry {
	char key[KEY_LEN];
	struct addr_set *set;      /* cached (dns_refresh_ms), or NULL */
	uint64_t expires_ns;       /* set is fresh until then; no refresh
	                            * starts before then either */
	uint64_t forget_ns;        /* unrefreshed since long: dropped */
	struct lookup *inflight;   /* a lookup under way, or NULL */
	bool fresh;                /* a set came in that the refresh sweep
	                            * has not checked connections against */
	/* Counts of finished refresh lookups, for the endpoint's xstats
	 * (the lookup thread cannot take its shard lock). */
	uint32_t pend_resolves, pend_failures, pend_changes;
	UT_hash_handle hh;
};

struct lookup {
	struct resolver *r;
	struct rentry *entry;      /* kept while inflight */
	unsigned refs;             /* the queue or thread, plus each request */
	char host[POOL_MAX_HOST];
	char port[8];
	uint32_t refresh_ms;       /* cache the result this long; 0: not */
	bool refresh;              /* started by the maintenance: its counts
	                            * go to the entry, not to a request */
	bool done, counted, timed_out;
	int rc;                    /* 0 or POOL_E* once done */
	int err;                   /* errno for a failure */
	struct addr_set *set;      /* the result, once done (a reference) */
	struct resolve_req *reqs;  /* waiting for it */
	struct lookup *prev, *next; /* queue */
	struct lookup *aprev, *anext; /* resolver's lookups: every one not
	                            * freed yet, for a child of fork() */
};

struct resolve_req {
	struct lookup *lk;         /* NULL: answered at once (unused) */
	struct pool_endpoint *ep;  /* held by the caller's slot or pin */
	int fd;                    /* timerfd */
	uint64_t deadline_ns;
	struct resolve_req *prev, *next;
};

struct resolver {
	pthread_mutex_t lock;      /* guards everything below */
	unsigned refs;             /* the pool's, plus one per thread */
	struct pool *pool;         /* NULL once the pool is gone */
	struct rentry *table;
	struct lookup *queue;
	struct lookup *lookups;    /* all of them, queued, running or done
	                            * but still held by a request */
	unsigned nthreads;
	unsigned nidle;            /* threads waiting on cond for work */
	unsigned nqueued;          /* lookups in queue */
	pthread_cond_t cond;       /* queue or pool changed (CLOCK_MONOTONIC) */
	struct resolver *abandoned; /* the parent's, in a child of fork() */
};

/* Lookup threads alive in the process, for tests (resolve_threads_wait). */
static atomic_uint live_threads;

_Atomic(resolve_hook_fn) resolve_test_hook;

static int test_hook(enum resolve_hook_at at)
{
	resolve_hook_fn fn = atomic_load_explicit(&resolve_test_hook,
						  memory_order_acquire);

	return fn ? fn(at) : 0;
}

/* ---- address sets ---- */

void addr_set_unref(struct addr_set *a)
{
	if (a && atomic_fetch_sub(&a->refs, 1) == 1)
		free(a);
}

static struct addr_set *addr_set_ref(struct addr_set *a)
{
	atomic_fetch_add(&a->refs, 1);
	return a;
}

static struct addr_set *set_from(const struct addrinfo *res)
{
	const struct addrinfo *ai;
	struct addr_set *a;
	unsigned n = 0;

	for (ai = res; ai; ai = ai->ai_next)
		if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
			n++;
	a = calloc(1, sizeof(*a) + n * sizeof(a->addr[0]));
	if (!a)
		return NULL;
	atomic_init(&a->refs, 1);
	a->resolved_ns = now_ns();
	for (ai = res; ai; ai = ai->ai_next)
		if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
			memcpy(&a->addr[a->n++], ai->ai_addr, ai->ai_addrlen);
	return a;
}

static bool same_addr(const union pool_sockaddr *a, const union pool_sockaddr *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET)
		return a->in.sin_port == b->in.sin_port &&
		       a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
	return a->in6.sin6_port == b->in6.sin6_port &&
	       memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof(a->in6.sin6_addr)) == 0;
}

bool addr_set_has(const struct addr_set *set, const union pool_sockaddr *a)
{
	unsigned i;

	for (i = 0; i < set->n; i++)
		if (same_addr(&set->addr[i], a))
			return true;
	return false;
}

/* Same addresses, in any order (a round-robin DNS reorders them). */
static bool same_set(const struct addr_set *a, const struct addr_set *b)
{
	unsigned i;

	if (a->n != b->n)
		return false;
	for (i = 0; i < a->n; i++)
		if (!addr_set_has(b, &a->addr[i]))
			return false;
	return true;
}

/* getaddrinfo's failure as a POOL_E* code, errno in *err. */
static int gai_to_pool(int rc, int *err)
{
	if (rc == EAI_SYSTEM) {
		*err = errno;
		return POOL_ERESOLVE;
	}
	*err = rc == EAI_MEMORY ? ENOMEM : ENOENT;
	return rc == EAI_MEMORY ? POOL_ENOMEM : POOL_ERESOLVE;
}

/* host:port through getaddrinfo with extra flags. */
static int lookup_now(const char *host, const char *port, int flags,
		      struct addr_set **out, int *err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV | flags };
	struct addrinfo *res = NULL;
	int rc;

	*out = NULL;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		return gai_to_pool(rc, err);
	*out = set_from(res);
	freeaddrinfo(res);
	if (!*out) {
		*err = ENOMEM;
		return POOL_ENOMEM;
	}
	return 0;
}

bool resolve_is_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* ---- the resolver's life ---- */

static void entry_free(struct resolver *r, struct rentry *e)
{
	HASH_DELETE(hh, r->table, e);
	addr_set_unref(e->set);
	free(e);
}

/* In a child of fork(): the parent's requests, copied with their
 * timerfds, are nobody's here (a pending acquire does not survive fork,
 * and a manual refill's dial is dropped, refill_child_drop): close the
 * child's copies of their descriptors and free them. Their lookups are
 * freed with the resolver (resolver_free_abandoned). */
static void drop_requests(struct resolver *r)
{
	struct resolve_req *req, *rtmp;
	struct lookup *lk;

	DL_FOREACH2(r->lookups, lk, anext) {
		DL_FOREACH_SAFE(lk->reqs, req, rtmp) {
			DL_DELETE(lk->reqs, req);
			close(req->fd);
			free(req);
		}
	}
}

/* The parent's resolver, in a child of fork() at its pool's end: no
 * thread of the child runs its lookups, and its lock may have been held
 * at the fork, so it is freed as it stands, without the lock: every
 * lookup (queued, running in a parent's thread, or done and held by a
 * request), then the cache. */
static void resolver_free_abandoned(struct resolver *r)
{
	struct rentry *e, *tmp;
	struct lookup *lk, *ltmp;

	while (r) {
		struct resolver *next = r->abandoned;

		drop_requests(r);
		DL_FOREACH_SAFE2(r->lookups, lk, ltmp, anext) {
			DL_DELETE2(r->lookups, lk, aprev, anext);
			addr_set_unref(lk->set);
			free(lk);
		}
		HASH_ITER(hh, r->table, e, tmp)
			entry_free(r, e);
		free(r);
		r = next;
	}
}

/* Drop a reference (r->lock NOT held); the last frees r and its cache. */
static void resolver_unref(struct resolver *r)
{
	struct rentry *e, *tmp;
	bool last;

	pthread_mutex_lock(&r->lock);
	last = --r->refs == 0;
	pthread_mutex_unlock(&r->lock);
	if (!last)
		return;
	HASH_ITER(hh, r->table, e, tmp)
		entry_free(r, e);
	resolver_free_abandoned(r->abandoned);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static struct resolver *resolver_new(struct pool *pool)
{
	struct resolver *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	pthread_condattr_t ca;

	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	r->refs = 1;
	r->pool = pool;
	return r;
}

int resolve_init(struct pool *pool)
{
	pool->resolver = resolver_new(pool);
	return pool->resolver ? 0 : POOL_ENOMEM;
}

/* ---- finishing a lookup (r->lock held) ---- */

static void lookup_unref(struct lookup *lk)
{
	if (--lk->refs)
		return;
	DL_DELETE2(lk->r->lookups, lk, aprev, anext);
	addr_set_unref(lk->set);
	free(lk);
}

/* Make req's fd readable now: an absolute time in the past fires at once. */
static void req_fire(struct resolve_req *req)
{
	struct itimerspec its = { .it_value = { .tv_sec = 0, .tv_nsec = 1 } };

	timerfd_settime(req->fd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* The entry's share of a finished lookup: the cache and the counts. */
static void entry_update(struct resolver *r, struct lookup *lk, uint64_t now)
{
	struct rentry *e = lk->entry;

	e->inflight = NULL;
	lk->entry = NULL;
	if (lk->refresh) {
		lk->counted = true;
		e->pend_resolves++;
		if (lk->rc && !lk->timed_out)
			e->pend_failures++;
	}
	if (!lk->refresh_ms || !r->pool) {
		if (!e->set && !e->pend_resolves && !e->pend_failures)
			entry_free(r, e);
		return;
	}
	/* A failed lookup keeps the addresses there were (a DNS outage
	 * must not empty the pool); either way the next one is a period
	 * later. */
	e->expires_ns = now + MS_TO_NS(lk->refresh_ms);
	e->forget_ns = e->expires_ns + MS_TO_NS(lk->refresh_ms);
	if (lk->rc)
		return;
	if (e->set && !same_set(e->set, lk->set))
		e->pend_changes++;
	addr_set_unref(e->set);
	e->set = addr_set_ref(lk->set);
	e->fresh = true;
}

static void lookup_finish(struct resolver *r, struct lookup *lk, int rc,
			  int err, struct addr_set *set)
{
	struct resolve_req *req;
	bool wake = lk->refresh_ms != 0;

	lk->done = true;
	lk->rc = rc;
	lk->err = err;
	lk->set = set;
	entry_update(r, lk, now_ns());
	DL_FOREACH(lk->reqs, req)
		req_fire(req);
	/* The refresh sweep applies the new set: wake the maintenance. The
	 * pool is alive while r->pool is set (resolve_fini clears it under
	 * this lock before the pool goes). */
	if (wake && r->pool)
		maint_note_due(r->pool, now_ns());
	lookup_unref(lk);
}

/* ---- lookup threads ---- */

/* Wait up to RESOLVE_IDLE_MS for a lookup to be queued or the pool to
 * go (r->lock held). False when the thread should end. */
static bool lookup_wait(struct resolver *r)
{
	uint64_t end = now_ns() + MS_TO_NS(RESOLVE_IDLE_MS);
	struct timespec ts = { .tv_sec = (time_t)(end / 1000000000u),
			       .tv_nsec = (long)(end % 1000000000u) };
	int rc = 0;

	r->nidle++;
	while (!r->queue && r->pool && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	r->nidle--;
	return r->queue != NULL;
}

/* A lookup thread stays for the next lookup rather than ending after
 * each one: a thread that ends runs glibc's resolver clean-up, under
 * glibc's resolv.conf lock, and a fork() at that instant gives a child
 * whose every getaddrinfo() waits for that lock forever (glibc does not
 * reset it in the child). Seen about once in 300 forks right after a
 * pool_get; ending only once idle (or at pool_destroy) leaves that
 * window where the application does not expect a lookup. */
static void *lookup_thread(void *arg)
{
	struct resolver *r = arg;
	struct lookup *lk;

	pthread_mutex_lock(&r->lock);
	while ((lk = r->queue) != NULL || lookup_wait(r)) {
		struct addr_set *set = NULL;
		int rc, err = 0;

		lk = r->queue;
		DL_DELETE(r->queue, lk);
		r->nqueued--;
		/* Nobody wants it any more and it would not be cached. */
		if (!r->pool || (lk->refs == 1 && !lk->refresh_ms)) {
			lookup_finish(r, lk, POOL_ERESOLVE, ECANCELED, NULL);
			continue;
		}
		pthread_mutex_unlock(&r->lock);
		rc = lookup_now(lk->host, lk->port, 0, &set, &err);
		pthread_mutex_lock(&r->lock);
		lookup_finish(r, lk, rc, err, set);
	}
	r->nthreads--;
	pthread_mutex_unlock(&r->lock);
	resolver_unref(r);
	atomic_fetch_sub(&live_threads, 1);
	return NULL;
}

/* Queue lk for an idle thread (r->lock held). True when a thread must
 * be started for it (fewer than RESOLVE_THREADS run and none is idle):
 * its slot and its reference to r are taken now, so that other callers
 * count it, and the caller starts it with lookup_spawn once unlocked. */
static bool lookup_queue(struct resolver *r, struct lookup *lk)
{
	DL_APPEND(r->queue, lk);
	r->nqueued++;
	if (r->nidle)
		pthread_cond_signal(&r->cond);
	if (r->nidle >= r->nqueued || r->nthreads >= RESOLVE_THREADS)
		return false;
	r->nthreads++;
	r->refs++;
	atomic_fetch_add(&live_threads, 1);
	return true;
}

/* A queued lookup that no thread will run: it fails with POOL_ESYS
 * (errno EAGAIN), uncounted, as a lookup that never ran (r->lock held).
 * A refresh's entry is looked at again a period later (entry_update). */
static void lookup_abort(struct resolver *r, struct lookup *lk)
{
	DL_DELETE(r->queue, lk);
	r->nqueued--;
	lk->refresh = false;
	lk->counted = true;
	lookup_finish(r, lk, POOL_ESYS, EAGAIN, NULL);
}

/* Start the thread lookup_queue asked for (no lock held: pthread_create
 * allocates a stack and may take its time, and pool_get_start, other
 * lookups' ends and the maintenance all take r->lock). If it cannot
 * start, its slot is given back; when no other thread runs then, none
 * will take the queue, so every queued lookup fails now (POOL_ESYS)
 * rather than at its caller's deadline. Returns 0, or POOL_ESYS when
 * the queue was failed. */
static int lookup_spawn(struct resolver *r)
{
	int rc = test_hook(RESOLVE_HOOK_SPAWN);
	pthread_t t;

	if (rc == 0)
		rc = thread_start(&t, lookup_thread, r);
	if (rc == 0) {
		pthread_detach(t);
		return 0;
	}
	pthread_mutex_lock(&r->lock);
	r->nthreads--;
	rc = r->nthreads ? 0 : POOL_ESYS;
	while (!r->nthreads && r->queue)
		lookup_abort(r, r->queue);
	pthread_mutex_unlock(&r->lock);
	atomic_fetch_sub(&live_threads, 1);
	resolver_unref(r); /* the thread's reference */
	return rc;
}

static void entry_key(const struct pool_endpoint *ep, char *key)
{
	snprintf(key, KEY_LEN, "%s %u", ep->addr.host, ep->addr.port);
}

/* key's entry, made if missing (r->lock held); NULL when out of memory. */
static struct rentry *entry_get(struct resolver *r, const char *key)
{
	struct rentry *e = NULL;
	bool hash_oom = false;

#undef uthash_nonfatal_oom
#define uthash_nonfatal_oom(obj) (hash_oom = true)
	HASH_FIND_STR(r->table, key, e);
	if (e)
		return e;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	snprintf(e->key, sizeof(e->key), "%s", key);
	HASH_ADD_STR(r->table, key, e);
	if (hash_oom) {
		free(e);
		return NULL;
	}
	return e;
}

/* The entry's lookup in flight, or a new one queued (r->lock held);
 * NULL when out of memory. *spawn: call lookup_spawn once unlocked. */
static struct lookup *lookup_get(struct resolver *r, struct rentry *e,
				 const struct pool_endpoint *ep, bool refresh,
				 bool *spawn)
{
	struct lookup *lk = e->inflight;

	*spawn = false;
	if (lk)
		return lk;
	lk = calloc(1, sizeof(*lk));
	if (!lk)
		return NULL;
	lk->r = r;
	lk->entry = e;
	lk->refs = 1;
	lk->refresh = refresh;
	lk->refresh_ms = ep->set.dns_refresh_ms;
	snprintf(lk->host, sizeof(lk->host), "%s", ep->addr.host);
	snprintf(lk->port, sizeof(lk->port), "%u", ep->addr.port);
	/* Whole before it is queued: r->lock is dropped before the thread
	 * starts, and a running one may take lk from the queue then. */
	DL_APPEND2(r->lookups, lk, aprev, anext);
	e->inflight = lk;
	*spawn = lookup_queue(r, lk);
	return lk;
}

/* ---- requests ---- */

static struct resolve_req *req_new(struct pool_endpoint *ep)
{
	struct resolve_req *req = calloc(1, sizeof(*req));
	struct itimerspec its = { 0 };

	if (!req)
		return NULL;
	req->ep = ep;
	req->deadline_ns = now_ns() + MS_TO_NS(ep->set.resolve_timeout_ms);
	req->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (req->fd < 0) {
		free(req);
		return NULL;
	}
	its.it_value.tv_sec = (time_t)(req->deadline_ns / 1000000000u);
	its.it_value.tv_nsec = (long)(req->deadline_ns % 1000000000u);
	timerfd_settime(req->fd, TFD_TIMER_ABSTIME, &its, NULL);
	return req;
}

static void req_free(struct resolve_req *req)
{
	close(req->fd);
	free(req);
}

/* No thread could start for req's lookup, and none runs: the caller
 * gets POOL_ESYS (errno EAGAIN) at once, as when the failed start was
 * found under the lock. True when req is freed so; false if a thread
 * ran the lookup meanwhile: req ends the usual way (its fd is readable
 * already). */
static bool req_unstarted(struct resolver *r, struct resolve_req *req)
{
	struct lookup *lk = req->lk;
	bool aborted;

	pthread_mutex_lock(&r->lock);
	/* Only lookup_abort gives POOL_ESYS: a lookup's own failure is
	 * POOL_ERESOLVE or POOL_ENOMEM. */
	aborted = lk->done && lk->rc == POOL_ESYS;
	if (aborted) {
		DL_DELETE(lk->reqs, req);
		lookup_unref(lk);
	}
	pthread_mutex_unlock(&r->lock);
	if (aborted)
		req_free(req);
	return aborted;
}

/* A name: the cache, or a request joining or starting a lookup. */
static int begin_name(struct resolver *r, struct pool_endpoint *ep,
		      struct addr_set **out, struct resolve_req **reqp)
{
	struct resolve_req *req = req_new(ep);
	char key[KEY_LEN];
	struct rentry *e;
	struct lookup *lk;
	bool spawn;

	if (!req)
		return errno == ENOMEM ? POOL_ENOMEM :
		       errno == EMFILE || errno == ENFILE ? POOL_EMFILE : POOL_ESYS;
	entry_key(ep, key);
	pthread_mutex_lock(&r->lock);
	e = entry_get(r, key);
	if (!e)
		goto fail;
	if (e->set && ep->set.dns_refresh_ms && now_ns() < e->expires_ns) {
		*out = addr_set_ref(e->set);
		/* The maintenance refreshes it then, if ep still has
		 * connections (a no-op when it was due earlier anyway). */
		if (r->pool)
			maint_note_due(r->pool, e->expires_ns);
		pthread_mutex_unlock(&r->lock);
		req_free(req);
		return 0;
	}
	lk = lookup_get(r, e, ep, false, &spawn);
	if (!lk) {
		if (!e->inflight && !e->set)
			entry_free(r, e);
		goto fail;
	}
	lk->refs++;
	req->lk = lk;
	DL_APPEND(lk->reqs, req);
	pthread_mutex_unlock(&r->lock);
	if (spawn && lookup_spawn(r) != 0 && req_unstarted(r, req)) {
		errno = EAGAIN;
		return POOL_ESYS;
	}
	*reqp = req;
	return POOL_EINPROGRESS;
fail:
	pthread_mutex_unlock(&r->lock);
	req_free(req);
	errno = ENOMEM;
	return POOL_ENOMEM;
}

int resolve_begin(struct pool *pool, struct pool_endpoint *ep,
		  struct addr_set **out, struct resolve_req **req)
{
	char port[8];
	int rc, err = 0;

	*out = NULL;
	*req = NULL;
	if (ep->addr.kind != EP_TCP) {
		errno = EINVAL;
		return POOL_EINVAL;
	}
	/* A literal needs no lookup: answered here, never blocking. */
	if (resolve_is_literal(ep->addr.host)) {
		snprintf(port, sizeof(port), "%u", ep->addr.port);
		rc = lookup_now(ep->addr.host, port, AI_NUMERICHOST, out, &err);
		errno = err;
		return rc;
	}
	if (!pool->resolver) {
		errno = ENOMEM;
		return POOL_ENOMEM;
	}
	return begin_name(pool->resolver, ep, out, req);
}

int resolve_req_fd(const struct resolve_req *req)
{
	return req->fd;
}

uint64_t resolve_req_deadline(const struct resolve_req *req)
{
	return req->deadline_ns;
}

/* Count req's outcome on its endpoint: each lookup once (xstats). */
static void req_count(struct resolve_req *req, bool lookup_ended, bool failed,
		      bool timeout)
{
	struct pool_endpoint *ep = req->ep;

	plock_lock(&ep->shard->lock);
	ep->xstats.resolves += lookup_ended;
	ep->xstats.resolve_failures += failed;
	ep->xstats.resolve_timeouts += timeout;
	plock_unlock(&ep->shard->lock);
}

int resolve_req_end(struct resolve_req *req, struct addr_set **out)
{
	struct lookup *lk = req->lk;
	struct resolver *r = lk->r;
	bool count, timeout = false;
	int rc, err;

	*out = NULL;
	pthread_mutex_lock(&r->lock);
	if (!lk->done && now_ns() < req->deadline_ns) {
		pthread_mutex_unlock(&r->lock);
		errno = EINPROGRESS;
		return POOL_EINPROGRESS;
	}
	if (lk->done) {
		rc = lk->rc;
		err = lk->err;
		if (rc == 0)
			*out = addr_set_ref(lk->set);
	} else {
		rc = POOL_ERESOLVE;
		err = ETIMEDOUT;
		timeout = true;
		lk->timed_out = true;
	}
	count = timeout || !lk->counted;
	lk->counted = lk->counted || lk->done;
	DL_DELETE(lk->reqs, req);
	lookup_unref(lk);
	pthread_mutex_unlock(&r->lock);
	if (count)
		req_count(req, !timeout, rc != 0, timeout);
	req_free(req);
	errno = err;
	return rc;
}

void resolve_req_cancel(struct resolve_req *req)
{
	struct resolver *r;

	if (!req)
		return;
	r = req->lk->r;
	pthread_mutex_lock(&r->lock);
	DL_DELETE(req->lk->reqs, req);
	lookup_unref(req->lk);
	pthread_mutex_unlock(&r->lock);
	req_free(req);
}

/* ---- the maintenance's refresh ---- */

uint64_t resolve_refresh(struct pool *pool, const struct pool_endpoint *ep,
			 uint64_t now, struct refresh_result *res)
{
	struct resolver *r = pool->resolver;
	char key[KEY_LEN];
	struct rentry *e;
	uint64_t due = 0;
	bool spawn = false;

	test_hook(RESOLVE_HOOK_REFRESH);
	memset(res, 0, sizeof(*res));
	if (!r)
		return 0;
	entry_key(ep, key);
	pthread_mutex_lock(&r->lock);
	e = entry_get(r, key);
	if (!e) {
		due = now + MS_TO_NS(ep->set.dns_refresh_ms);
		goto out;
	}
	res->resolves = e->pend_resolves;
	res->failures = e->pend_failures;
	res->changes = e->pend_changes;
	e->pend_resolves = e->pend_failures = e->pend_changes = 0;
	if (e->fresh && e->set)
		res->fresh = addr_set_ref(e->set);
	e->fresh = false;
	if (e->inflight)
		goto out; /* its end wakes the maintenance */
	if (now < e->expires_ns) {
		due = e->expires_ns;
		goto out;
	}
	if (!lookup_get(r, e, ep, true, &spawn)) {
		/* No memory now: try again a period later. */
		e->expires_ns = now + MS_TO_NS(ep->set.dns_refresh_ms);
		e->forget_ns = e->expires_ns + MS_TO_NS(ep->set.dns_refresh_ms);
		due = e->expires_ns;
	}
out:
	pthread_mutex_unlock(&r->lock);
	/* No thread now: the entry was put a period off (lookup_abort). */
	if (spawn && lookup_spawn(r) != 0)
		due = now + MS_TO_NS(ep->set.dns_refresh_ms);
	return due;
}

/* Drop entries nobody refreshed for a period past their expiry: their
 * endpoints went quiet or were forgotten (maint.c). Returns when the
 * next one is due (0: none), for the maintenance to come back then:
 * once an endpoint is forgotten nothing else may be due. */
uint64_t resolve_gc(struct pool *pool, uint64_t now)
{
	struct resolver *r = pool->resolver;
	struct rentry *e, *tmp;
	uint64_t next = 0;

	if (!r)
		return 0;
	pthread_mutex_lock(&r->lock);
	HASH_ITER(hh, r->table, e, tmp) {
		if (e->inflight || !e->forget_ns)
			continue; /* its lookup's end wakes the maintenance */
		if (now >= e->forget_ns)
			entry_free(r, e);
		else if (!next || e->forget_ns < next)
			next = e->forget_ns;
	}
	pthread_mutex_unlock(&r->lock);
	return next;
}

/* ---- end of the pool, fork ---- */

void resolve_fini(struct pool *pool)
{
	struct resolver *r = pool->resolver;
	struct lookup *lk, *tmp;

	if (!r)
		return;
	pool->resolver = NULL;
	pthread_mutex_lock(&r->lock);
	r->pool = NULL;
	/* Queued lookups will not run: their requests (if a caller still
	 * has one, which it must cancel) see a failure. */
	DL_FOREACH_SAFE(r->queue, lk, tmp) {
		DL_DELETE(r->queue, lk);
		r->nqueued--;
		lookup_finish(r, lk, POOL_ESHUTDOWN, ECANCELED, NULL);
	}
	/* Idle lookup threads end now (each holds a reference to r). */
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	resolver_unref(r); /* threads in getaddrinfo hold theirs */
}

int resolve_atfork_child(struct pool *pool)
{
	struct resolver *old = pool->resolver;

	/* The parent's resolver is left as it is until the pool's end: its
	 * threads are not here, and one may have held its lock at the
	 * fork. Its requests are nobody's in the child: their descriptors
	 * go now, as the pool's other inherited ones do. */
	if (old)
		drop_requests(old);
	if (resolve_init(pool)) {
		pool->resolver = NULL;
		resolver_free_abandoned(old);
		return POOL_ENOMEM;
	}
	pool->resolver->abandoned = old;
	return 0;
}

unsigned resolve_cache_entries(struct pool *pool)
{
	struct resolver *r = pool->resolver;
	unsigned n;

	if (!r)
		return 0;
	pthread_mutex_lock(&r->lock);
	n = HASH_COUNT(r->table);
	pthread_mutex_unlock(&r->lock);
	return n;
}

unsigned resolve_threads(void)
{
	return atomic_load(&live_threads);
}

bool resolve_threads_wait(int ms)
{
	uint64_t end = now_ns() + MS_TO_NS(ms);

	while (atomic_load(&live_threads) && now_ns() < end)
		usleep(5000);
	return atomic_load(&live_threads) == 0;
}
