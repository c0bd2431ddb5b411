/*
 * The thread cache: each thread may keep one connection of a pool parked
 * in a slot of its own, so that its pool_put and its next pool_get of the
 * same endpoint (the usual loop) touch no lock and no cache line another
 * thread writes: one atomic exchange each way (park.c).
 *
 * A connection is "affine" to a slot from the put that parks it first
 * (park_adopt_locked, under its shard lock) until something takes it
 * away: the pool's view of it does not change meanwhile. It stays on its
 * endpoint's busy list and in nin_use, parked or out, so max_active and
 * max_total hold without a shared write per get + put. max_idle counts
 * the parked ones (park_parked, a walk of the slots) where the pool
 * decides on a surplus: at the adoption, and in the shrink (maint.c),
 * which retires a surplus over idle_shrink_ms as before. With
 * idle_shrink_ms = 0, every put must decide on max_idle under the
 * endpoint's lock, and no thread caches. pool_stats() shows a parked
 * connection as idle.
 *
 * Ownership: slot->conn is the parked connection or NULL. Only the slot's
 * thread ever stores a connection there (its own affine one); anyone may
 * take it with an atomic exchange, and whoever gets it owns it. Takers:
 * the thread itself (pool_get), another pool_get that would otherwise
 * connect, a caller about to wait (max_active, max_total), the
 * maintenance at the connection's idle timeout or end of life, the idle
 * watch when the server closes it, pool_flush, a DNS change,
 * pool_destroy, and the thread's exit. A taker returns it to the shared
 * idle list with its idle time kept (checkout_return_parked), or retires
 * it when it must go.
 */
#ifndef TCPOOL_PARK_H
#define TCPOOL_PARK_H

#include "memo.h"
#include "pool-internal.h"

/* Slots per pool: threads beyond it use the shared idle lists only. */
#define PARK_SLOTS 64

struct park_slot {
	_Atomic(struct pool_conn *) conn;    /* parked, or NULL */
	_Atomic(struct pool_conn *) affine;  /* parked or out, or NULL */
	_Atomic(struct pool_endpoint *) ep;  /* the affine one's: a hint */
	atomic_uint_fast64_t due_ns;         /* parked: when the maintenance
	                                      * takes it back; 0: never */
	uint64_t memo_stamp;                 /* its thread's memo, checked
	                                      * for ep at the adoption */
	bool owned;                          /* by a thread (park.lock) */
} __attribute__((aligned(64)));

/* The thread's slot in one pool (the last it adopted a connection in). */
struct park_tls {
	uint64_t pool_serial;
	unsigned fork_gen;
	struct park_slot *slot;    /* NULL: none (all taken, or closed) */
	unsigned misses;           /* puts to other pools since */
	unsigned gone_seen;        /* pools destroyed, when last checked */
};

extern __thread struct park_tls park_tls
	__attribute__((tls_model("initial-exec"), visibility("hidden")));

/* The calling thread's slot in pool, or NULL. */
static inline struct park_slot *park_mine(const struct pool *pool)
{
	const struct park_tls *t = &park_tls;

	if (t->pool_serial != pool->serial || t->fork_gen != pool->fork_gen)
		return NULL;
	return t->slot;
}

/* Park c, the caller's affine connection, in s (its own slot). False
 * when a waiter or pool_destroy came meanwhile and c was taken back: the
 * caller puts it the slow way. The exchange is a full barrier, and so is
 * a waiter's registration (nwaiters) before it looks at the slots: one
 * of the two sees the other. */
static inline bool park_publish(struct pool *pool, struct park_slot *s,
				struct pool_conn *c)
{
	c->magic = CONN_MAGIC_PARKED;
	atomic_exchange(&s->conn, c);
	if (__builtin_expect(!atomic_load(&pool->nwaiters) &&
			     !atomic_load(&pool->shutting_down), 1))
		return true;
	if (atomic_exchange(&s->conn, NULL) != c)
		return true; /* taken: its taker deals with it */
	c->magic = CONN_MAGIC_OUT;
	return false;
}

/* Slots (park.c). */
int park_init(struct pool *pool);
void park_fini(struct pool *pool);
/* pool_destroy: no more adoptions, every parked connection returned. */
void park_close(struct pool *pool);
/* Before a put that could adopt c's pool (no lock held): give the thread
 * a slot in pool if it has none there, within the switching rules. The
 * usual case inline: it has one there, or was refused one. */
void park_claim_slow(struct pool *pool);
static inline void park_claim(struct pool *pool)
{
	if (park_tls.pool_serial != pool->serial ||
	    park_tls.fork_gen != pool->fork_gen)
		park_claim_slow(pool);
}
/* Make c (checked out, about to be kept) affine to the caller's slot, if
 * the rules allow (its shard lock held). */
bool park_adopt_locked(struct pool *pool, struct pool_endpoint *ep,
		       struct pool_conn *c);
/* Connections of ep parked now (racy: for surplus decisions). */
uint32_t park_parked(const struct pool_endpoint *ep);

/* Idle connections of ep as max_idle counts them (shard lock held): its
 * idle list's and those parked in threads' caches. */
static inline uint32_t ep_idle_held(const struct pool_endpoint *ep)
{
	return ep->nidle + park_parked(ep);
}

/* c leaves its slot's affinity (its shard lock held; c is the caller's):
 * its cache_gets join the endpoint's counters. */
void park_unaffine_locked(struct pool_endpoint *ep, struct pool_conn *c);
/* c, taken from its slot by the caller, leaves the checked-out count
 * (unaffine, off the busy list, out of nin_use), for the idle list or
 * its end (its shard lock held). */
void park_uncount_locked(struct pool_endpoint *ep, struct pool_conn *c);
/* Take c from its slot if it is parked there (its shard lock held). */
bool park_take_locked(struct pool_conn *c);
/* A connection of ep parked in any slot, for a pool_get that would
 * connect (ep's shard lock held): taken, unaffine, still in nin_use and
 * off the busy list, ready for checkout_idle. NULL: none. */
struct pool_conn *park_steal_locked(struct pool *pool, struct pool_endpoint *ep);
/* c, taken from s though it was not the endpoint's the taker wanted,
 * back into s (no lock needed; see park.c). */
void park_put_back(struct pool *pool, struct park_slot *s, struct pool_conn *c);
/* Return every parked connection (ep's only, unless NULL) to the shared
 * lists (no lock held). */
void park_evict(struct pool *pool, const struct pool_endpoint *ep);
/* The maintenance: parked connections due (idle timeout, lifetime) are
 * returned, the earliest later due joins *due; after a doom (pool_flush,
 * DNS change) every parked connection is returned. how: RETURN_IN_SWEEP
 * before the sweep's walk of the idle lists, which then sees them; 0
 * after it. */
void park_sweep(struct pool *pool, uint64_t now, uint64_t *due, int how);
/* A doom (flush, DNS) happened: the next sweep returns parked ones. */
void park_note_doom(struct pool *pool);
/* Parked connections of ep and their uncounted cache gets (shard lock
 * held), for the stats. */
void park_count_locked(const struct pool_endpoint *ep, uint32_t *parked,
		       uint64_t *cache_gets);
/* fork(): the atfork child handler closes parked sockets' copies
 * (async-signal-safe); child_reset takes the records (up to PARK_SLOTS)
 * and frees every slot. */
void park_child_close(struct pool *pool);
unsigned park_child_reset(struct pool *pool, struct pool_conn **taken);

/* checkout.c: c, taken from a slot (owned by the caller, no lock held),
 * back to the shared idle list with its idle time kept, or, with
 * RETURN_RETIRE, retired if it must go (expired, doomed, closed by the
 * server). RETURN_IN_SWEEP: the maintenance's sweep, which retires what
 * is due itself and needs no note of it. */
enum { RETURN_RETIRE = 1, RETURN_IN_SWEEP = 2 };
void checkout_return_parked(struct pool *pool, struct pool_conn *c, int how);

#endif /* TCPOOL_PARK_H */
