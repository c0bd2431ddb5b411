/*
 * The acquire path beyond an idle hand-out (acquire.c): one state
 * machine, driven blocking by pool_get and step by step by
 * pool_get_start / pool_get_finish.
 */
#ifndef TCPOOL_PENDING_H
#define TCPOOL_PENDING_H
#include "dial.h"
#include "pool-internal.h"

enum pend_stage {
	PEND_SLOT,      /* an idle connection, or the slots to dial */
	PEND_DIAL,      /* slots held: resolving, connecting */
	PEND_CONNECTED, /* a socket: on_connect and hand-out to go */
	PEND_DONE
};

struct pool_pending {
	struct pool *pool;
	struct pool_endpoint *ep;  /* pinned until the end */
	enum pend_stage stage;
	bool async;                /* pool_get_start's: never blocks */
	bool may_evict;            /* see acquire.c's slot stage */
	bool waited_dial;          /* counted in xstats.connect_waits */
	uint64_t start_ns;
	uint64_t wait_deadline_ns; /* acquire_timeout_ms, once waiting; 0 */
	int fd;                    /* PEND_CONNECTED: the socket */
	int epfd;                  /* what pool_pending_fd gives; -1 */
	int tfd;                   /* timerfd: the stage's deadline */
	uint64_t armed_ns;         /* what tfd is set to; 0: disarmed */
	unsigned fork_gen;         /* the pool's at start: another one means
	                            * a child of fork() holds its parent's */
	struct waiter w;
	struct dial dial;          /* last: dial_begin sets it up */
};

/* From checkout.c (the fast path's functions). */
/* Hand out c (handed over, or NULL) or an idle connection, checked (shard
 * lock held). True: done, lock released; false: none, lock held. */
bool checkout_idle(struct pool *pool, struct pool_endpoint *ep,
		   struct pool_conn *c, pool_conn_t **out);
/* A new connection to its caller (no lock held). */
void checkout_fresh(struct pool *pool, struct pool_conn *c);

/* acquire.c. pool_get (pend NULL: blocking) or pool_get_start beyond
 * the fast path; ep's shard lock held on entry, released. */
int acquire_locked(struct pool *pool, struct pool_endpoint *ep,
		   pool_conn_t **out, pool_pending_t **pend);

/* Slots for a new connection (acquire.c; pool_socket uses them too). */
enum slot { SLOT_OK, SLOT_ENDPOINT_FULL, SLOT_TOTAL_FULL };
/* Reserve the slots for a new connection (shard lock held): the
 * endpoint's, then a max_total one, neither ahead of a waiter queued for
 * it. w keeps what it got while it waits for the rest. */
enum slot slot_reserve(struct pool *pool, struct pool_endpoint *ep,
		       struct waiter *w);
/* Give up the slots slot_reserve took for a connection that could not
 * be opened (shard lock held, released). */
void slot_abandon(struct pool *pool, struct pool_endpoint *ep);

#endif
