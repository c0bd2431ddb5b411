/*
 * The thread cache's slots (see park.h): claiming one per thread and
 * pool, adopting a connection, and every way a parked connection is
 * taken from its slot by someone other than its thread.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "park.h"

__thread struct park_tls park_tls __attribute__((tls_model("initial-exec")));

/* Puts to another pool before a thread gives up its slot in the first:
 * a thread that alternates between two pools keeps one cache, not a
 * claim and a release per call. */
#define PARK_SWITCH_AFTER 64

/* Thread exit gives the slot back, and what is parked in it. */
static pthread_key_t exit_key;
static bool exit_key_ok;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

/* Pools destroyed so far: a thread whose slot's pool may be gone checks
 * (once per destruction) instead of waiting PARK_SWITCH_AFTER puts. */
static atomic_uint pools_gone;

int park_init(struct pool *pool)
{
	struct park *pk = &pool->park;
	size_t size = PARK_SLOTS * sizeof(struct park_slot);

	pthread_mutex_init(&pk->lock, NULL);
	/* Out of memory: no thread cache, nothing else lost. */
	pk->slots = aligned_alloc(64, size);
	if (pk->slots)
		memset(pk->slots, 0, size);
	atomic_init(&pk->nused, 0);
	atomic_init(&pk->dooms, 0);
	atomic_init(&pk->dooms_seen, 0);
	pk->closed = false;
	return 0;
}

void park_fini(struct pool *pool)
{
	atomic_fetch_add(&pools_gone, 1);
	/* The destroying thread's own record: usually the one that used
	 * the pool, and about to use the next one. */
	if (park_tls.pool_serial == pool->serial)
		memset(&park_tls, 0, sizeof(park_tls));
	free(pool->park.slots);
	pool->park.slots = NULL;
	pthread_mutex_destroy(&pool->park.lock);
}

static unsigned slots_used(const struct pool *pool)
{
	return pool->park.slots ? atomic_load(&pool->park.nused) : 0;
}

void park_put_back(struct pool *pool, struct park_slot *s, struct pool_conn *c)
{
	atomic_store(&s->conn, c);
	/* While c was out of its slot, a caller about to wait may have
	 * evicted the slots and found this one empty (park_publish's
	 * handshake, from the taker's side): then the maintenance takes
	 * every parked connection back, and wakes the waiters. */
	if (atomic_load(&pool->nwaiters)) {
		park_note_doom(pool);
		maint_note_due(pool, 1);
	}
}

/* Take what s holds parked, if it is ep's (any when ep is NULL). A hint
 * that moved on to another endpoint meanwhile: put back, which nobody
 * can race (only its thread parks there, and only the connection now in
 * our hands). */
static struct pool_conn *slot_take(struct pool *pool, struct park_slot *s,
				   const struct pool_endpoint *ep)
{
	struct pool_conn *c;

	if (!atomic_load_explicit(&s->conn, memory_order_relaxed))
		return NULL;
	if (ep && atomic_load_explicit(&s->ep, memory_order_relaxed) != ep)
		return NULL;
	c = atomic_exchange(&s->conn, NULL);
	if (c && ep && c->ep != ep) {
		park_put_back(pool, s, c);
		return NULL;
	}
	return c;
}

void park_evict(struct pool *pool, const struct pool_endpoint *ep)
{
	unsigned i, n;

	/* The other half of park_publish's handshake: the caller's store
	 * (nwaiters, shutting_down) before the loads of the slots. */
	atomic_thread_fence(memory_order_seq_cst);
	n = slots_used(pool);

	for (i = 0; i < n; i++) {
		struct pool_conn *c = slot_take(pool, &pool->park.slots[i], ep);

		if (c)
			checkout_return_parked(pool, c, RETURN_RETIRE);
	}
}

void park_close(struct pool *pool)
{
	pthread_mutex_lock(&pool->park.lock);
	pool->park.closed = true;
	pthread_mutex_unlock(&pool->park.lock);
	park_evict(pool, NULL);
}

/* The registry lock is held (pool is alive): give back the exiting or
 * switching thread's slot. Its parked connection goes to the shared
 * list, never retired here: that could run the application's event
 * callback under the pool's registry lock. Not after pool_destroy began
 * (closed): it took them all, and the idle lists are being emptied. */
static void slot_leave(struct pool *pool, void *ud)
{
	const struct park_tls *t = ud;
	struct park_slot *s = t->slot;
	struct pool_conn *c;

	/* A fork() child's reset freed every slot already. */
	if (pool->fork_gen != t->fork_gen)
		return;
	pthread_mutex_lock(&pool->park.lock);
	if (!pool->park.closed) {
		c = atomic_exchange(&s->conn, NULL);
		if (c)
			checkout_return_parked(pool, c, 0);
	}
	s->owned = false;
	pthread_mutex_unlock(&pool->park.lock);
}

static void leave_tls(void)
{
	struct park_tls *t = &park_tls;

	if (t->slot)
		fork_with_pool(t->pool_serial, slot_leave, t);
	memset(t, 0, sizeof(*t));
}

static void note_alive(struct pool *pool, void *ud)
{
	(void)pool;
	*(bool *)ud = true;
}

/* Whether the thread's slot is in a pool destroyed since it last
 * looked. */
static bool slot_pool_gone(struct park_tls *t)
{
	unsigned gone = atomic_load(&pools_gone);
	bool alive = false;

	if (gone == t->gone_seen)
		return false;
	t->gone_seen = gone;
	fork_with_pool(t->pool_serial, note_alive, &alive);
	return !alive;
}

static void on_thread_exit(void *unused)
{
	(void)unused;
	leave_tls();
}

static void exit_key_make(void)
{
	exit_key_ok = pthread_key_create(&exit_key, on_thread_exit) == 0;
}

/* A free slot, preferring one with no connection still affine to it
 * (its thread left while holding it): that slot can adopt only once the
 * connection comes back. */
static struct park_slot *slot_claim(struct park *pk)
{
	struct park_slot *s = NULL;
	unsigned i;

	pthread_mutex_lock(&pk->lock);
	for (i = 0; !pk->closed && i < PARK_SLOTS; i++) {
		struct park_slot *t = &pk->slots[i];

		if (t->owned)
			continue;
		if (!s || !atomic_load(&t->affine))
			s = t;
		if (!atomic_load(&t->affine))
			break;
	}
	if (s) {
		unsigned idx = (unsigned)(s - pk->slots);

		s->owned = true;
		if (idx + 1 > atomic_load(&pk->nused))
			atomic_store(&pk->nused, idx + 1);
	}
	pthread_mutex_unlock(&pk->lock);
	return s;
}

void park_claim_slow(struct pool *pool)
{
	struct park_tls *t = &park_tls;
	struct park_slot *s = NULL;

	if (t->slot && t->pool_serial != pool->serial &&
	    ++t->misses < PARK_SWITCH_AFTER && !slot_pool_gone(t))
		return;
	leave_tls();
	pthread_once(&exit_once, exit_key_make);
	if (pool->park.slots && exit_key_ok)
		s = slot_claim(&pool->park);
	t->pool_serial = pool->serial;
	t->fork_gen = pool->fork_gen;
	t->slot = s;
	t->misses = 0;
	t->gone_seen = atomic_load(&pools_gone);
	/* Only a non-NULL value runs the destructor. */
	if (s)
		pthread_setspecific(exit_key, t);
}

bool park_adopt_locked(struct pool *pool, struct pool_endpoint *ep,
		       struct pool_conn *c)
{
	const struct pool_settings *set = &ep->set;
	struct park_slot *s = park_mine(pool);
	struct pool_conn *none = NULL;

	/* leak_warn_ms watches checked-out connections: a parked one is
	 * idle, and the maintenance cannot tell it from a held one. */
	if (!s || !set->thread_cache || !set->idle_shrink_ms ||
	    set->leak_warn_ms || c->unproven || atomic_load(&pool->nwaiters) ||
	    atomic_load_explicit(&s->affine, memory_order_relaxed) ||
	    ep->nidle + park_parked(ep) >= set->max_idle)
		return false;
	/* pool_get trusts the slot for the memo's key while the memo's
	 * stamp is the one recorded here: the memo must name ep now, as
	 * memo_hit checks it under this same lock. */
	if (endpoint_memo.pool_serial != pool->serial || endpoint_memo.ep != ep ||
	    endpoint_memo.shard != ep->shard || endpoint_memo.gen != ep->shard->gen)
		return false;
	if (!atomic_compare_exchange_strong(&s->affine, &none, c))
		return false;
	c->park = s;
	/* What park_get leaves as they are. */
	c->holder = pthread_self();
	c->reused = true;
	atomic_store_explicit(&s->ep, ep, memory_order_relaxed);
	s->memo_stamp = endpoint_memo.stamp;
	return true;
}

void park_unaffine_locked(struct pool_endpoint *ep, struct pool_conn *c)
{
	struct park_slot *s = c->park;
	struct pool_conn *expect = c;
	uint64_t n;

	if (!s)
		return;
	atomic_compare_exchange_strong(&s->affine, &expect, NULL);
	c->park = NULL;
	n = __atomic_load_n(&c->cache_gets, __ATOMIC_RELAXED);
	__atomic_store_n(&c->cache_gets, 0, __ATOMIC_RELAXED);
	ep->stats.gets += n;
	ep->stats.reuses += n;
	ep->xstats.cache_gets += n;
}

void park_uncount_locked(struct pool_endpoint *ep, struct pool_conn *c)
{
	park_unaffine_locked(ep, c);
	DL_DELETE(ep->busy, c);
	ep->nin_use--;
}

bool park_take_locked(struct pool_conn *c)
{
	struct pool_conn *expect = c;

	return c->park && atomic_compare_exchange_strong(&c->park->conn, &expect, NULL);
}

struct pool_conn *park_steal_locked(struct pool *pool, struct pool_endpoint *ep)
{
	unsigned i, n = slots_used(pool);

	for (i = 0; i < n; i++) {
		struct pool_conn *c = slot_take(pool, &pool->park.slots[i], ep);

		if (c) {
			park_unaffine_locked(ep, c);
			DL_DELETE(ep->busy, c);
			return c;
		}
	}
	return NULL;
}

uint32_t park_parked(const struct pool_endpoint *ep)
{
	const struct pool *pool = ep->pool;
	unsigned i, n = slots_used(pool);
	uint32_t parked = 0;

	for (i = 0; i < n; i++) {
		const struct park_slot *s = &pool->park.slots[i];

		if (atomic_load_explicit(&s->ep, memory_order_relaxed) == ep &&
		    atomic_load_explicit(&s->conn, memory_order_relaxed))
			parked++;
	}
	return parked;
}

void park_note_doom(struct pool *pool)
{
	atomic_fetch_add(&pool->park.dooms, 1);
}

void park_sweep(struct pool *pool, uint64_t now, uint64_t *due, int how)
{
	struct park *pk = &pool->park;
	unsigned i, n = slots_used(pool);
	unsigned dooms = atomic_load(&pk->dooms);
	bool all = atomic_exchange(&pk->dooms_seen, dooms) != dooms;

	for (i = 0; i < n; i++) {
		struct park_slot *s = &pk->slots[i];
		uint64_t d = atomic_load(&s->due_ns);
		struct pool_conn *c;

		if (!atomic_load(&s->conn))
			continue;
		if (!all && (!d || d > now)) {
			if (d && d < *due)
				*due = d;
			continue;
		}
		c = atomic_exchange(&s->conn, NULL);
		if (c)
			checkout_return_parked(pool, c, RETURN_RETIRE | how);
	}
}

void park_count_locked(const struct pool_endpoint *ep, uint32_t *parked,
		       uint64_t *cache_gets)
{
	const struct pool_conn *c;

	*parked = 0;
	*cache_gets = 0;
	DL_FOREACH(ep->busy, c) {
		if (!c->park)
			continue;
		*cache_gets += __atomic_load_n(&c->cache_gets, __ATOMIC_RELAXED);
		if (atomic_load(&c->park->conn) == c)
			(*parked)++;
	}
}

void park_child_close(struct pool *pool)
{
	unsigned i;

	if (!pool->park.slots)
		return;
	for (i = 0; i < PARK_SLOTS; i++) {
		struct pool_conn *c = atomic_load_explicit(&pool->park.slots[i].conn,
							   memory_order_relaxed);

		if (c && c->fd >= 0) {
			close(c->fd);
			c->fd = -1;
		}
	}
}

unsigned park_child_reset(struct pool *pool, struct pool_conn **taken)
{
	struct park *pk = &pool->park;
	unsigned i, n = 0;

	/* A parent thread may have held it at the fork. */
	pthread_mutex_init(&pk->lock, NULL);
	atomic_store(&pk->dooms_seen, atomic_load(&pk->dooms));
	if (!pk->slots)
		return 0;
	for (i = 0; i < PARK_SLOTS; i++) {
		struct park_slot *s = &pk->slots[i];
		struct pool_conn *c = atomic_exchange(&s->conn, NULL);

		if (c)
			taken[n++] = c;
		atomic_store(&s->affine, NULL);
		atomic_store(&s->ep, NULL);
		s->owned = false;
	}
	atomic_store(&pk->nused, 0);
	return n;
}
