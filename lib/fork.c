/*
 * Fork safety. A child of fork() shares the parent's sockets: if it sent
 * on one, read from one, or shut one down, it would corrupt the parent's
 * conversation or close it under the parent. So in a child the pool only
 * closes its own copies of the inherited descriptors (close() on a
 * descriptor another process still holds sends nothing) and connects anew.
 *
 * The copies are closed in the atfork child handler, at once: a child
 * that never calls the pool would otherwise keep the parent's sockets
 * open, and the parent's abort or close would do nothing on the wire
 * until the child exits. That handler may only close and store (the
 * child of a threaded process is limited to async-signal-safe calls), so
 * the rest (freeing records, a new epoll set, the maintenance thread)
 * waits for the child's first pool call.
 *
 * The atfork handlers take every pool's locks before fork() so that the
 * child never inherits a lock held by a thread that does not exist there.
 *
 * The application's data on those connections (pool_conn_set_data) is
 * the child's copy of memory: it is freed in the child at its first pool
 * call, with no lock held, like the socket's copy was closed (free_fn
 * never touches the descriptor). The forking thread's own checked-out
 * connections keep theirs until their pool_put in the child.
 */
#include <stdlib.h>
#include <unistd.h>

#include "park.h"
#include "pool-internal.h"
#include "resolve.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pool *registry;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static atomic_uint fork_generation;

static void lock_pool(struct pool *pool)
{
	int i;

	for (i = 0; i < POOL_NSHARDS; i++)
		plock_lock(&pool->shards[i].lock);
	pthread_mutex_lock(&pool->wait_lock);
	/* Not reaper.run_lock: the maintenance thread holds it while it
	 * sleeps in epoll_wait. The child makes a new reaper anyway. */
	pthread_mutex_lock(&pool->reaper.lock);
	/* Held only briefly, never across a connect: it makes the refill's
	 * socket in flight either published or not yet open. */
	pthread_mutex_lock(&pool->refill.lock);
	pthread_mutex_lock(&pool->log_lock);
}

static void unlock_pool(struct pool *pool)
{
	int i;

	pthread_mutex_unlock(&pool->log_lock);
	pthread_mutex_unlock(&pool->refill.lock);
	pthread_mutex_unlock(&pool->reaper.lock);
	pthread_mutex_unlock(&pool->wait_lock);
	for (i = POOL_NSHARDS - 1; i >= 0; i--)
		plock_unlock(&pool->shards[i].lock);
}

static void atfork_prepare(void)
{
	struct pool *p;

	pthread_mutex_lock(&registry_lock);
	DL_FOREACH2(registry, p, reg_next)
		lock_pool(p);
}

static void atfork_parent(void)
{
	struct pool *p;

	DL_FOREACH2(registry, p, reg_next)
		unlock_pool(p);
	pthread_mutex_unlock(&registry_lock);
}

static void close_copy(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1; /* the later reset must not close a reused number */
}

/* The child's copies of what no thread of the child will use: idle
 * connections, and those checked out by threads other than the forking
 * one, the only thread a child has (no put will ever come for them). The
 * forking thread's own stay open until it puts them back. */
static void child_close_conns(struct pool_endpoint *ep, pthread_t self)
{
	struct pool_conn *c;

	DL_FOREACH(ep->idle, c)
		close_copy(&c->fd);
	DL_FOREACH(ep->busy, c) {
		/* Parked by the forking thread, but perhaps in a taker's hands
		 * now (out of its slot, waiting for a shard lock): never
		 * put back by it. */
		if (pthread_equal(c->holder, self) && c->magic != CONN_MAGIC_PARKED)
			continue;
		close_copy(&c->fd);
		c->leak_reported = true; /* no leak warning for them either */
	}
}

/* Every pool lock is held (atfork_prepare). */
static void child_close_inherited(struct pool *pool)
{
	pthread_t self = pthread_self();
	struct pool_endpoint *ep, *tmp;
	struct drain *d;
	int i;

	for (i = 0; i < POOL_NSHARDS; i++)
		HASH_ITER(hh, pool->shards[i].table, ep, tmp)
			child_close_conns(ep, self);
	/* Parked in a thread's cache: idle, whichever thread it was. */
	park_child_close(pool);
	DL_FOREACH(pool->reaper.list, d)
		close_copy(&d->fd);
	/* A refill's connect under way: no thread will finish it here. (It
	 * is unpublished before it goes on an idle list: never both.) */
	close_copy(&pool->refill.inflight_fd);
	refill_child_close(pool); /* manual mode's, in refill.dialing */
	/* The epoll set and the eventfds are shared with the parent: a
	 * write or epoll_ctl here would reach the parent's threads. */
	close_copy(&pool->reaper.epfd);
	close_copy(&pool->reaper.wakefd);
	close_copy(&pool->refill.cancel_fd);
}

static void atfork_child(void)
{
	struct pool *p;

	atomic_fetch_add(&fork_generation, 1);
	DL_FOREACH2(registry, p, reg_next) {
		child_close_inherited(p);
		/* The hot path looks at this flag alone (checkout.c). */
		atomic_store(&p->fork_retry, true);
	}
	atfork_parent();
}

static void atfork_install(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

int fork_register(struct pool *pool)
{
	pthread_once(&atfork_once, atfork_install);
	pthread_mutex_lock(&registry_lock);
	pool->fork_gen = atomic_load(&fork_generation);
	DL_APPEND2(registry, pool, reg_prev, reg_next);
	pthread_mutex_unlock(&registry_lock);
	return 0;
}

void fork_unregister(struct pool *pool)
{
	pthread_mutex_lock(&registry_lock);
	DL_DELETE2(registry, pool, reg_prev, reg_next);
	pthread_mutex_unlock(&registry_lock);
}

void fork_with_pool(uint64_t serial, void (*fn)(struct pool *pool, void *ud),
		    void *ud)
{
	struct pool *p;

	pthread_mutex_lock(&registry_lock);
	DL_FOREACH2(registry, p, reg_next)
		if (p->serial == serial) {
			/* A child's pool before its reset: its slots are the
			 * parent's (and park.lock may be held by a thread that
			 * is not here); the reset frees them all. */
			if (p->fork_gen == atomic_load(&fork_generation))
				fn(p, ud);
			break;
		}
	pthread_mutex_unlock(&registry_lock);
}

/* The data of connections the child will never use, to free once the
 * locks are dropped (free_fn is the application's code). Never in the
 * atfork handler: free_fn need not be async-signal-safe. */
struct data_free {
	void *data;
	void (*free_fn)(void *data);
	struct data_free *next;
};

/* Take a record's data for freeing later, and clear it on the record, so
 * that nothing frees it twice. Out of memory, it is leaked: the child
 * cannot do better. */
static void defer_free(struct data_free **list, void **data,
		       void (**free_fn)(void *data))
{
	struct data_free *f = *free_fn ? malloc(sizeof(*f)) : NULL;

	if (f) {
		f->data = *data;
		f->free_fn = *free_fn;
		f->next = *list;
		*list = f;
	}
	*data = NULL;
	*free_fn = NULL;
}

static void run_frees(struct data_free *list)
{
	while (list) {
		struct data_free *next = list->next;

		data_release(list->data, list->free_fn);
		free(list);
		list = next;
	}
}

/* Child side: forget idle connections (closed at fork), and free the
 * data of those and of the connections other threads held (closed at
 * fork too; no thread of the child will ever put them). */
static void child_reset_endpoint(struct pool_endpoint *ep, struct data_free **frees)
{
	struct pool_conn *c, *tmp;

	DL_FOREACH_SAFE(ep->idle, c, tmp) {
		DL_DELETE(ep->idle, c);
		defer_free(frees, &c->data, &c->free_fn);
		conn_free(c);
	}
	DL_FOREACH(ep->busy, c)
		if (c->fd < 0)
			defer_free(frees, &c->data, &c->free_fn);
	/* Checked-out ones stay on the busy list: the forking thread's put
	 * closes its copy; the others' records go at pool_destroy. */
	ep->nidle = 0; /* nidle_total: reset by child_reset */
	ep->nactive = 0;
	ep->nin_use = 0;
	ep->nconnecting = 0;
	ep->ndialing = 0; /* the parent's connects in flight (max_connecting);
	                   * its backoff state is kept: the endpoint still fails */
	ep->wantq = NULL;
	/* Pins of parent threads waiting at the fork: gone with them, or
	 * the child could never forget the endpoint. */
	ep->pins = 0;
	ep->stats.draining = 0;
}

/* Forget the drains (closed at fork); the epoll set is made anew by
 * child_restart. */
static void child_reset_reaper(struct pool *pool, struct data_free **frees)
{
	struct reaper *r = &pool->reaper;
	struct drain *d, *tmp;

	DL_FOREACH_SAFE(r->list, d, tmp) {
		DL_DELETE(r->list, d);
		defer_free(frees, &d->data, &d->free_fn);
		free(d);
	}
	reaper_free_dead(r->dead);
	r->dead = NULL;
	/* run_lock may be "held" by the parent's maintenance thread, which
	 * does not exist here: fresh locks. */
	reaper_init_state(r);
}

/* The child's own epoll set and maintenance thread. Either can fail (no
 * descriptor to spare: EMFILE); a thread must then not run on a dead
 * epoll set (it would spin), so neither runs, and every later pool call
 * tries again. Meanwhile pool_get and pool_put work, without background
 * expiry, and a peer-first retirement falls back at once. */
static int child_restart(struct pool *pool)
{
	int rc = 0;

	if (pool->reaper.epfd < 0)
		rc = reaper_open(&pool->reaper);
	if (rc == 0 && !pool->maint_running)
		rc = maint_start(pool);
	return rc;
}

/* Connections parked in threads' caches (their copies closed at fork):
 * forgotten with their slots, which the child's threads claim anew. */
static void child_reset_parked(struct pool *pool, struct data_free **frees)
{
	struct pool_conn *taken[PARK_SLOTS];
	unsigned i, n = park_child_reset(pool, taken);

	for (i = 0; i < n; i++) {
		struct pool_conn *c = taken[i];

		plock_lock(&c->ep->shard->lock);
		/* Its cache hand-outs into the counters the child keeps. */
		park_unaffine_locked(c->ep, c);
		DL_DELETE(c->ep->busy, c);
		plock_unlock(&c->ep->shard->lock);
		defer_free(frees, &c->data, &c->free_fn);
		conn_free(c);
	}
}

static void child_reset(struct pool *pool, struct data_free **frees)
{
	struct pool_endpoint *ep, *tmp;
	int i;

	child_reset_parked(pool, frees);
	for (i = 0; i < POOL_NSHARDS; i++) {
		plock_lock(&pool->shards[i].lock);
		HASH_ITER(hh, pool->shards[i].table, ep, tmp)
			child_reset_endpoint(ep, frees);
		plock_unlock(&pool->shards[i].lock);
	}
	atomic_store(&pool->total, 0);
	atomic_store(&pool->nidle_total, 0);
	/* Waiters are parent threads blocked in pool_get: their stacks do not
	 * exist here, and a put must not hand a connection to one. */
	pool->waiters = NULL;
	atomic_store(&pool->nwaiters, 0);
	atomic_store(&pool->nwant_total, 0);
	/* Nor does the refill thread; its queued reservations were reset
	 * with the counts above. Its lock may have been held: make anew. */
	refill_child_drop(pool); /* its manual-mode dials (closed at fork) */
	refill_init(pool);
	/* Nor do the lookup threads (a failure: names fail, POOL_ENOMEM). */
	(void)resolve_atfork_child(pool);
	child_reset_reaper(pool, frees);
	/* Threads do not survive fork(): child_restart starts them again. */
	pool->maint_running = false;
}

/* After a fork, or while the child's threads could not start: apart from
 * fork_check so that its check, on every pool_get and pool_put, stays a
 * leaf without a stack frame. */
static int __attribute__((noinline)) fork_check_slow(struct pool *pool, unsigned gen)
{
	struct data_free *frees = NULL;
	int rc = 0;

	pthread_mutex_lock(&registry_lock);
	if (pool->fork_gen != gen) {
		child_reset(pool, &frees);
		pool->fork_gen = gen;
		atomic_store(&pool->fork_retry, true);
	}
	if (atomic_load(&pool->fork_retry)) {
		rc = child_restart(pool);
		atomic_store(&pool->fork_retry, rc != 0);
	}
	pthread_mutex_unlock(&registry_lock);
	run_frees(frees);
	return rc;
}

int fork_check(struct pool *pool)
{
	unsigned gen = atomic_load_explicit(&fork_generation, memory_order_relaxed);

	if (pool->fork_gen == gen &&
	    !atomic_load_explicit(&pool->fork_retry, memory_order_relaxed))
		return 0;
	return fork_check_slow(pool, gen);
}

bool fork_put_inherited(struct pool *pool, struct pool_conn *c)
{
	struct pool_endpoint *ep = c->ep;

	fork_check(pool);
	if (c->fork_gen == pool->fork_gen)
		return false;
	plock_lock(&ep->shard->lock);
	park_unaffine_locked(ep, c); /* its cache hand-outs: counted */
	DL_DELETE(ep->busy, c);
	plock_unlock(&ep->shard->lock);
	/* Our copy only: the parent's socket lives on. Already closed at
	 * fork if another thread held it. */
	if (c->fd >= 0)
		close(c->fd);
	/* The child's copy of the data: freed once, like the socket's copy
	 * (cleared already if another thread held it at the fork). */
	data_release(c->data, c->free_fn);
	conn_free(c);
	return true;
}
