/*
 * Fork safety. A child of fork() shares the parent's sockets: if it sent
 * on one, read from one, or shut one down, it would corrupt the parent's
 * conversation or close it under the parent. So in a child the pool only
 * closes its own copies of the inherited descriptors (close() on a
 * descriptor another process still holds sends nothing) and connects anew.
 *
 * The atfork handlers take every pool's locks before fork() so that the
 * child never inherits a lock held by a thread that does not exist there.
 */
#include <stdlib.h>
#include <unistd.h>

#include "pool-internal.h"

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
	pthread_mutex_lock(&pool->log_lock);
}

static void unlock_pool(struct pool *pool)
{
	int i;

	pthread_mutex_unlock(&pool->log_lock);
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

static void atfork_child(void)
{
	atomic_fetch_add(&fork_generation, 1);
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

/* Child side: forget idle connections and drains, closing our copies. */
static void child_reset_endpoint(struct pool_endpoint *ep)
{
	struct pool_conn *c, *tmp;

	DL_FOREACH_SAFE(ep->idle, c, tmp) {
		DL_DELETE(ep->idle, c);
		close(c->fd);
		conn_free(c);
	}
	/* Checked-out ones stay the holder's; their put closes the copy. */
	ep->nidle = 0; /* nidle_total: reset by child_reset */
	ep->nactive = 0;
	ep->nin_use = 0;
	ep->nconnecting = 0;
	ep->stats.draining = 0;
}

static void child_reset_reaper(struct pool *pool)
{
	struct reaper *r = &pool->reaper;
	struct drain *d, *tmp;

	/* The epoll set is shared with the parent: never epoll_ctl it here,
	 * only close our descriptor of it and make a new one. */
	DL_FOREACH_SAFE(r->list, d, tmp) {
		DL_DELETE(r->list, d);
		close(d->fd);
		free(d);
	}
	close(r->epfd);
	close(r->wakefd);
	/* run_lock may be "held" by the parent's maintenance thread, which
	 * does not exist here: reaper_init makes fresh locks. */
	reaper_init(r);
}

static void child_reset(struct pool *pool)
{
	struct pool_endpoint *ep, *tmp;
	int i;

	for (i = 0; i < POOL_NSHARDS; i++) {
		plock_lock(&pool->shards[i].lock);
		HASH_ITER(hh, pool->shards[i].table, ep, tmp)
			child_reset_endpoint(ep);
		plock_unlock(&pool->shards[i].lock);
	}
	atomic_store(&pool->total, 0);
	atomic_store(&pool->nidle_total, 0);
	/* Waiters are parent threads blocked in pool_get: their stacks do not
	 * exist here, and a put must not hand a connection to one. */
	pool->waiters = NULL;
	atomic_store(&pool->nwaiters, 0);
	/* Nor does the refill thread; its queued reservations were reset
	 * with the counts above. Its lock may have been held: make anew. */
	refill_init(pool);
	child_reset_reaper(pool);
	/* Threads do not survive fork(): start the maintenance again. */
	pool->maint_running = false;
	maint_start(pool);
}

void fork_check(struct pool *pool)
{
	unsigned gen = atomic_load_explicit(&fork_generation, memory_order_relaxed);

	if (pool->fork_gen == gen)
		return;
	pthread_mutex_lock(&registry_lock);
	if (pool->fork_gen != gen) {
		child_reset(pool);
		pool->fork_gen = gen;
	}
	pthread_mutex_unlock(&registry_lock);
}

bool fork_put_inherited(struct pool *pool, struct pool_conn *c)
{
	struct pool_endpoint *ep = c->ep;

	fork_check(pool);
	if (c->fork_gen == pool->fork_gen)
		return false;
	plock_lock(&ep->shard->lock);
	DL_DELETE(ep->busy, c);
	plock_unlock(&ep->shard->lock);
	close(c->fd); /* our copy only: the parent's socket lives on */
	conn_free(c);
	return true;
}
