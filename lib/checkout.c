/*
 * pool_get / pool_put: the hot path. An idle hand-out is one shard lock,
 * a list pop and, when validation is due, one recv(MSG_PEEK) syscall.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "memo.h"
#include "park.h"
#include "pending.h"
#include "pool-internal.h"
#include "wait.h"

/* A fork() since the pool last caught up with one, or a child's threads
 * still to start: the atfork child handler sets the flag (fork.c), so the
 * hot path reads one field of the pool instead of calling fork_check. */
static inline bool fork_pending(struct pool *pool)
{
	return atomic_load_explicit(&pool->fork_retry, memory_order_relaxed);
}

/* Why a connection must not be handed out again: its max_uses, its
 * lifetime, or pool_flush / a DNS change (doomed); RR_COUNT: none. */
static inline __attribute__((always_inline)) enum retire_reason
conn_expiry(const struct pool_conn *c, uint64_t now)
{
	const struct pool_settings *s = &c->ep->set;

	if (s->max_uses && c->uses >= s->max_uses)
		return RR_MAX_USES;
	if (c->expires_ns && now >= c->expires_ns)
		return RR_LIFETIME;
	/* Set by pool_flush or a DNS refresh in another thread (release,
	 * after retire_why); pool_conn_last_use reads it unlocked. */
	if (__atomic_load_n(&c->doomed, __ATOMIC_ACQUIRE))
		return (enum retire_reason)c->retire_why;
	/* Opened before a pool_flush that could not doom it (it was being
	 * handed from a put to a waiter, on no list). */
	if (c->created_ns <= __atomic_load_n(&c->ep->flushed_ns, __ATOMIC_ACQUIRE))
		return RR_FLUSH;
	return RR_COUNT;
}

static inline __attribute__((always_inline)) bool
conn_expired(const struct pool_conn *c, uint64_t now)
{
	return conn_expiry(c, now) != RR_COUNT;
}

/* Whether a hand-out must check the socket (one recv(MSG_PEEK)).
 *
 * Under the default validate_idle_ms = 0, always, however recently the
 * connection was used: the idle watch cannot stand in for the peek. It is
 * edge-triggered EPOLLRDHUP handled by the maintenance thread on its own
 * time, so a FIN that arrived a moment ago may not have been seen yet
 * (measured on 2026-11-26, 2 vCPUs at load 4-5: the watch acted 36 us
 * after the server's close at the median, 12 ms at worst; in 300 rounds
 * of close, put, get, the peek caught 5 that the watch had not), and it
 * never sees bytes waiting that are not a FIN (a reply the caller did not
 * read). A HikariCP-style bypass of recently used connections would hand
 * those out; SPEC.md says a hand-out is never one the pool could have
 * known was dead. tests/check_fastpath.c fails if the peek is skipped. A
 * caller who accepts that window sets validate_idle_ms. */
static bool needs_validation(const struct pool_conn *c, uint64_t now)
{
	uint32_t after = c->ep->set.validate_idle_ms;

	return after == 0 || now - c->last_put_ns >= MS_TO_NS(after);
}

/* Shard lock held: c is the calling thread's now. */
static void check_out(struct pool_endpoint *ep, struct pool_conn *c,
		      uint64_t now, bool reused)
{
	c->magic = CONN_MAGIC_OUT;
	c->uses++;
	c->reused = reused;
	c->got_ns = now;
	c->holder = pthread_self();
	c->leak_reported = false;
	DL_APPEND(ep->busy, c);
}

/* A pool_get hand-out (shard lock held). */
static void hand_out(struct pool_endpoint *ep, struct pool_conn *c,
		     uint64_t now, bool reused)
{
	check_out(ep, c, now, reused);
	ep->stats.gets++;
	if (reused)
		ep->stats.reuses++;
}

/* After a hand-out (no lock held): tell the maintenance about what it now
 * has to watch, only when that is earlier than what it already waits for
 * (maint_note_due is a compare-and-swap that rarely wakes anyone). A
 * hand-out never calls for a min_idle refill: min_idle counts open
 * connections, in use or idle, and a hand-out opens or closes none. */
static void note_hand_out(struct pool *pool, struct pool_endpoint *ep,
			  uint64_t now)
{
	if (ep->set.leak_warn_ms)
		maint_note_due(pool, now + MS_TO_NS(ep->set.leak_warn_ms));
}

/* Pop the most recently used idle connection (shard lock held). It is
 * moved to the in-use count before the lock drops. */
static struct pool_conn *idle_pop(struct pool_endpoint *ep)
{
	struct pool_conn *c = ep->idle;

	if (!c)
		return NULL;
	idle_remove(ep->pool, ep, c);
	ep->nin_use++;
	return c;
}

/* A popped idle connection was found dead: drop it (shard lock NOT held). */
static void drop_stale(struct pool *pool, struct pool_conn *c)
{
	struct pool_endpoint *ep = c->ep;

	plock_lock(&ep->shard->lock);
	ep->nin_use--;
	ep->stats.stale_dropped++;
	ep->pins++; /* the caller relocks ep after c's slot is gone */
	plock_unlock(&ep->shard->lock);
	/* Peer closed (CLOSE_WAIT) or reset: a plain close leaves no
	 * TIME_WAIT. Unexpected bytes waiting: close() sends an RST, which
	 * is what such a connection deserves. */
	conn_drop(pool, c, RR_STALE);
}

/* A connection popped from the idle list or handed over by a pool_put,
 * counted in use but not yet handed out (shard lock held). True if it can
 * be handed out. Otherwise it is gone, retired when its lifetime ran out,
 * dropped when found dead, and the lock is held again on return. */
static bool still_good(struct pool *pool, struct pool_endpoint *ep,
		       struct pool_conn *c, uint64_t now)
{
	enum retire_reason why = conn_expiry(c, now);
	bool alive;

	if (why != RR_COUNT) {
		ep->nin_use--;
		/* c's slot goes with it: until ep is locked again, only the
		 * pin keeps the maintenance from forgetting ep. */
		ep->pins++;
		plock_unlock(&ep->shard->lock);
		conn_retire(pool, c, false, why);
		plock_lock(&ep->shard->lock);
		ep->pins--;
		return false;
	}
	/* peer_gone: the idle watch saw the server close it. */
	if (!c->peer_gone && !needs_validation(c, now))
		return true;
	/* A syscall: never under the shard lock. */
	plock_unlock(&ep->shard->lock);
	alive = socket_is_alive(c->fd);
	if (!alive)
		drop_stale(pool, c); /* pins ep */
	plock_lock(&ep->shard->lock);
	if (!alive)
		ep->pins--;
	return alive;
}

/* What pool_get and pool_socket check first: the arguments, a fork, a
 * pool shutting down. */
static inline int checkout_check(struct pool *pool, const char *endpoint,
				 pool_conn_t **out)
{
	if (!out)
		return POOL_EINVAL;
	*out = NULL;
	if (!pool || !endpoint)
		return POOL_EINVAL;
	if (fork_pending(pool))
		fork_check(pool);
	if (atomic_load_explicit(&pool->shutting_down, memory_order_relaxed))
		return POOL_ESHUTDOWN;
	return 0;
}

/* The endpoint, returned with its shard locked. */
static inline int checkout_lock(struct pool *pool, const char *endpoint,
				struct pool_endpoint **ep)
{
	/* The memo's hit inline: pool_get's most common case. */
	*ep = memo_hit(pool, endpoint);
	if (*ep)
		return 0;
	return endpoint_lock_slow(pool, endpoint, ep);
}

static inline int checkout_begin(struct pool *pool, const char *endpoint,
				 pool_conn_t **out, struct pool_endpoint **ep)
{
	int rc = checkout_check(pool, endpoint, out);

	return rc ? rc : checkout_lock(pool, endpoint, ep);
}

/* The coarse clock, read only when a deadline of c's needs it at its
 * hand-out: its lifetime, its validation bypass (validate_idle_ms), its
 * leak warning. Else 0, which no check below compares: the two reads of
 * an idle get + put pair were a fifth of its cost. */
static uint64_t hand_out_clock(const struct pool_endpoint *ep,
			       const struct pool_conn *c)
{
	if (c->expires_ns || ep->set.validate_idle_ms || ep->set.leak_warn_ms)
		return fast_coarse_ns();
	return 0;
}

/* The idle fast path (shard lock held; released when it hands out): the
 * most recently used idle connection, when nothing about it calls for a
 * syscall or a retirement. Anything else (no idle connection, one to
 * validate, expired, seen closed by the watch) goes to checkout_idle, which
 * pops the same connection and checks it the full way. */
static bool idle_fast(struct pool *pool, struct pool_endpoint *ep,
		      pool_conn_t **out)
{
	struct pool_conn *c = ep->idle;
	uint64_t now;

	if (!c || c->peer_gone)
		return false;
	now = hand_out_clock(ep, c);
	if (conn_expired(c, now) || needs_validation(c, now))
		return false;
	idle_pop(ep);
	hand_out(ep, c, now, true);
	plock_unlock(&ep->shard->lock);
	note_hand_out(pool, ep, now);
	*out = c;
	return true;
}

/* A parked connection found dead by its peek: dropped (no lock held). */
static void park_drop_stale(struct pool *pool, struct pool_conn *c)
{
	struct pool_endpoint *ep = c->ep;

	plock_lock(&ep->shard->lock);
	park_uncount_locked(ep, c);
	ep->stats.stale_dropped++;
	plock_unlock(&ep->shard->lock);
	conn_drop(pool, c, RR_STALE);
}

/* The thread cache (park.h): the connection this thread parked at its
 * last put, when the key is its memo's and the memo is the one the slot
 * was adopted under. No lock, no shared write: one exchange on the
 * thread's own slot. The checks are the idle fast path's; one that
 * fails sends the connection to the shared list (or, dead, away) and
 * pool_get on its slow way. */
static inline __attribute__((always_inline)) bool
park_get(struct pool *pool, const char *key,
			    pool_conn_t **out)
{
	struct park_slot *s = park_mine(pool);
	struct pool_conn *c;
	uint64_t now = 0;

	if (!s || s->memo_stamp != endpoint_memo.stamp ||
	    !atomic_load_explicit(&s->conn, memory_order_relaxed) ||
	    !memo_names(pool, key))
		return false;
	c = atomic_exchange_explicit(&s->conn, NULL, memory_order_acquire);
	if (!c)
		return false;
	/* Its end of life is checked here, to the tick, as for an idle
	 * one; its validate_idle_ms by the maintenance (park_due). Without
	 * a maintenance thread, here too. */
	if (c->expires_ns || (c->ep->set.validate_idle_ms && !pool->maint_running))
		now = fast_coarse_ns();
	if (__atomic_load_n(&c->peer_gone, __ATOMIC_RELAXED) ||
	    conn_expired(c, now)) {
		checkout_return_parked(pool, c, 0);
		return false;
	}
	/* The default's peek, here without any lock. */
	if ((!c->ep->set.validate_idle_ms || (now && needs_validation(c, now))) &&
	    !socket_is_alive(c->fd)) {
		park_drop_stale(pool, c);
		return false;
	}
	/* Its holder and reused flag are still those of the hand-out
	 * before the put that parked it: this thread's, and true. */
	c->magic = CONN_MAGIC_OUT;
	c->uses++;
	__atomic_store_n(&c->cache_gets, c->cache_gets + 1, __ATOMIC_RELAXED);
	*out = c;
	return true;
}

/* Hand out c (handed over by a pool_put, or NULL) or else an idle
 * connection, checked (shard lock held). True: done, lock released. False:
 * none was usable, lock held. The one way out of the pool for a
 * connection that was idle, for pool_get's fast path and the slow one. */
bool checkout_idle(struct pool *pool, struct pool_endpoint *ep,
		   struct pool_conn *c, pool_conn_t **out)
{
	uint64_t now;

	while (c || (c = idle_pop(ep))) {
		now = now_coarse_ns();
		if (still_good(pool, ep, c, now)) {
			hand_out(ep, c, now, true);
			plock_unlock(&ep->shard->lock);
			note_hand_out(pool, ep, now);
			*out = c;
			return true;
		}
		c = NULL;
	}
	return false;
}

/* A new connection, its on_connect done, to its caller (no lock held). */
void checkout_fresh(struct pool *pool, struct pool_conn *c)
{
	struct pool_endpoint *ep = c->ep;
	uint64_t now;
	bool below;

	plock_lock(&ep->shard->lock);
	/* The endpoint's first connections: warm ones may be due. */
	below = ep->nactive < ep->set.min_idle;
	now = now_ns();
	ep->stats.connects++;
	hand_out(ep, c, now, false);
	plock_unlock(&ep->shard->lock);
	note_hand_out(pool, ep, now);
	if (below)
		maint_note_due(pool, now);
}

/* The fast path: an idle connection. Otherwise the slow one (acquire.c)
 * waits, connects, or both, blocking. */
/* pool_get and pool_get_start past checkout_begin (shard lock held): an
 * idle connection, or the acquire machinery, blocking when pend is NULL. */
static int get_locked(struct pool *pool, struct pool_endpoint *ep,
		      pool_conn_t **out, pool_pending_t **pend)
{
	struct pool_conn *c;

	if (idle_fast(pool, ep, out) || checkout_idle(pool, ep, NULL, out))
		return 0;
	/* One parked in another thread's cache, rather than a new
	 * connection (and, some day, its TIME_WAIT). */
	while ((c = park_steal_locked(pool, ep)))
		if (checkout_idle(pool, ep, c, out))
			return 0;
	return acquire_locked(pool, ep, out, pend);
}

/* pool_get and pool_get_start past the thread cache: the lock-taking
 * rest, out of line so that the cache's hit pays for no stack frame of
 * it. */
static __attribute__((noinline)) int get_slow(struct pool *pool,
					      const char *endpoint,
					      pool_conn_t **out,
					      pool_pending_t **pend)
{
	struct pool_endpoint *ep;
	int rc = checkout_lock(pool, endpoint, &ep);

	return rc ? rc : get_locked(pool, ep, out, pend);
}

POOL_API int pool_get(pool_t *pool, const char *endpoint, pool_conn_t **out)
{
	int rc = checkout_check(pool, endpoint, out);

	if (rc)
		return rc;
	if (park_get(pool, endpoint, out))
		return 0;
	return get_slow(pool, endpoint, out, NULL);
}

POOL_API int pool_get_start(pool_t *pool, const char *endpoint,
			    pool_conn_t **out, pool_pending_t **pend)
{
	int rc;

	if (!pend) {
		if (out)
			*out = NULL;
		return POOL_EINVAL;
	}
	*pend = NULL;
	rc = checkout_check(pool, endpoint, out);
	if (rc)
		return rc;
	if (park_get(pool, endpoint, out))
		return 0;
	return get_slow(pool, endpoint, out, pend);
}

/* ---- pool_socket: a socket the caller connects ---- */

/* The family pool_socket makes for ep: the caller's (its resolver chose
 * it for a name), which must be the literal's own for an IP literal;
 * AF_UNSPEC takes the literal's. 0 when none fits (POOL_EINVAL). */
static int socket_family(const struct endpoint_addr *addr, int family)
{
	struct in6_addr a6;
	int lit = 0;

	if (addr->kind == EP_UNIX)
		return family == AF_UNSPEC || family == AF_UNIX ? AF_UNIX : 0;
	if (inet_pton(AF_INET, addr->host, &a6) == 1)
		lit = AF_INET;
	else if (inet_pton(AF_INET6, addr->host, &a6) == 1)
		lit = AF_INET6;
	if (family == AF_UNSPEC)
		return lit;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	return lit && lit != family ? 0 : family;
}

/* Both slots for a pool_socket, without waiting (shard lock held,
 * released): the caller is typically inside another library's callback,
 * which must not block. 0 or POOL_EBUSY. */
static int slot_reserve_now(struct pool *pool, struct pool_endpoint *ep)
{
	struct waiter w;
	enum slot slot;

	waiter_init(&w, ep); /* never queued: a full cap is EBUSY at once */
	slot = slot_reserve(pool, ep, &w);
	if (slot == SLOT_OK) {
		plock_unlock(&ep->shard->lock);
		return 0;
	}
	if (w.has_ep)
		ep_slot_put_unlock(pool, ep);
	else
		plock_unlock(&ep->shard->lock);
	return POOL_EBUSY;
}

/* A new socket in reserved slots, checked out to the caller (no lock
 * held). Counted in connects: it is a socket the pool opened. */
static int socket_hand_out(struct pool *pool, struct pool_endpoint *ep,
			   int family, pool_conn_t **out)
{
	struct pool_conn *c = NULL;
	int fd = socket_unconnected(ep, family);

	if (fd >= 0) {
		c = conn_alloc(ep, fd); /* unwatched until proven: see conn_alloc */
		if (!c) {
			close(fd);
			fd = POOL_ENOMEM;
		}
	}
	plock_lock(&ep->shard->lock);
	if (!c) {
		slot_abandon(pool, ep);
		return fd;
	}
	c->unproven = true;
	ep->stats.connects++;
	check_out(ep, c, now_coarse_ns(), false);
	plock_unlock(&ep->shard->lock);
	note_hand_out(pool, ep, c->got_ns);
	*out = c;
	return 0;
}

POOL_API int pool_socket(pool_t *pool, const char *endpoint, int family,
			 pool_conn_t **out)
{
	struct pool_endpoint *ep;
	int rc = checkout_begin(pool, endpoint, out, &ep);

	if (rc)
		return rc;
	family = socket_family(&ep->addr, family);
	if (!family) {
		pool_endpoint_unlock(ep);
		return POOL_EINVAL;
	}
	rc = slot_reserve_now(pool, ep);
	return rc ? rc : socket_hand_out(pool, ep, family, out);
}

/* What the first put of a pool_socket connection comes to. The pool has
 * only the caller's word that it is connected, to the endpoint, and in a
 * state pool_get callers expect. */
enum proof { PROOF_AS_ASKED, PROOF_RETIRE, PROOF_DROP };

static enum proof prove(struct pool *pool, struct pool_conn *c,
			pool_put_mode mode)
{
	const pool_hooks_t *h = c->ep->hooks;
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);

	/* Never connected, or still connecting (getpeername fails with
	 * ENOTCONN in both): a close() sends nothing and leaves no TIME_WAIT
	 * whatever the policy, and a close request has no one to go to. */
	if (getpeername(c->fd, (struct sockaddr *)&peer, &len) < 0)
		return PROOF_DROP;
	if (mode != POOL_REUSE)
		return PROOF_AS_ASKED;
	/* pool_get callers get what on_connect made of a connection (a TLS
	 * session, an AUTH): this one never had it. Retired by policy. */
	if (h && h->on_connect)
		return PROOF_RETIRE;
	/* The server closed it, or bytes are waiting: as for a stale idle
	 * connection (drop_stale), a plain close. */
	if (!socket_is_alive(c->fd))
		return PROOF_DROP;
	/* Its peer, for the DNS refresh, which reads checked-out
	 * connections' peers under the shard lock. */
	if (c->ep->addr.kind == EP_TCP &&
	    (peer.ss_family == AF_INET || peer.ss_family == AF_INET6)) {
		plock_lock(&c->ep->shard->lock);
		memcpy(&c->peer, &peer, len < sizeof(c->peer) ? len : sizeof(c->peer));
		plock_unlock(&c->ep->shard->lock);
	}
	c->unproven = false;
	/* From now on like any connection the pool connected itself. */
	conn_watch(pool, c);
	return PROOF_AS_ASKED;
}

/* The first put of a pool_socket connection (no lock held). True when c
 * was dropped; otherwise *mode is what pool_put applies. */
static bool put_unproven(struct pool *pool, struct pool_conn *c,
			 pool_put_mode *mode)
{
	struct pool_endpoint *ep = c->ep;
	enum proof p = prove(pool, c, *mode);

	if (p == PROOF_RETIRE)
		*mode = POOL_RETIRE;
	if (p != PROOF_DROP)
		return false;
	plock_lock(&ep->shard->lock);
	DL_DELETE(ep->busy, c);
	ep->nin_use--;
	plock_unlock(&ep->shard->lock);
	conn_drop(pool, c, RR_STALE);
	return true;
}

/* Keep a healthy connection idle (shard lock held). Above max_idle it is
 * kept too, unless idle_shrink_ms is 0: the maintenance retires such a
 * surplus gradually, so that a burst's connections serve the next burst
 * instead of each being closed (TIME_WAIT) and opened again. */
static bool keep_idle(struct pool *pool, struct pool_conn *c, uint64_t now)
{
	struct pool_endpoint *ep = c->ep;

	if (ep->nidle >= ep->set.max_idle && !ep->set.idle_shrink_ms)
		return false;
	if (atomic_load_explicit(&pool->shutting_down, memory_order_relaxed))
		return false;
	c->last_put_ns = now;
	idle_push(pool, ep, c, true);
	return true;
}

/* With idle connections above max_idle, start a shrink period unless one
 * runs (shard lock held). Returns when the maintenance must look, 0 when
 * there is no surplus. */
static uint64_t shrink_arm(struct pool_endpoint *ep, uint64_t now)
{
	if (ep_idle_held(ep) <= ep->set.max_idle)
		return 0;
	if (!ep->shrink_due_ns)
		ep->shrink_due_ns = (now ? now : now_coarse_ns()) +
				    MS_TO_NS(ep->set.idle_shrink_ms);
	return ep->shrink_due_ns;
}

/* The coarse clock at a put, when something will compare c's idle time
 * or age with it: idle_timeout_ms and validate_idle_ms (last_put_ns), its
 * lifetime. Else 0: c's last_put_ns is then read by nothing (see
 * conn_idle_due, needs_validation), and shrink_arm reads the clock itself
 * in the rare put that leaves a surplus. */
static inline __attribute__((always_inline)) uint64_t
put_clock(const struct pool_endpoint *ep,
			  const struct pool_conn *c)
{
	const struct pool_settings *s = &ep->set;

	if (s->idle_timeout_ms || s->validate_idle_ms || c->expires_ns)
		return fast_coarse_ns();
	return 0;
}

static bool put_is_valid(struct pool *pool, struct pool_conn *c)
{
	return pool && c && c->magic == CONN_MAGIC_OUT && c->pool == pool;
}

/* A waiter gets c directly: it stays in use, by someone else. The shard
 * lock must not be held while the waiters are looked at, so c is in no
 * list meanwhile. Called with the lock held; false if nobody took c,
 * with the lock held again. */
static bool hand_to_waiter(struct pool *pool, struct pool_conn *c)
{
	c->magic = CONN_MAGIC_IDLE; /* a second put of it is misuse */
	plock_unlock(&c->ep->shard->lock);
	if (waiters_handoff(pool, c))
		return true;
	plock_lock(&c->ep->shard->lock);
	return false;
}

/* Why a pool_put retires conn rather than keeping it. */
static enum retire_reason put_reason(struct pool *pool, const struct pool_conn *c,
				     pool_put_mode mode, uint64_t now)
{
	enum retire_reason why;

	if (mode == POOL_RETIRE)
		return RR_USER;
	if (mode == POOL_BROKEN)
		return RR_BROKEN;
	if (c->peer_gone)
		return RR_PEER_CLOSED;
	why = conn_expiry(c, now);
	if (why != RR_COUNT)
		return why;
	if (atomic_load_explicit(&pool->shutting_down, memory_order_relaxed))
		return RR_DESTROY;
	return RR_SURPLUS; /* above max_idle, with idle_shrink_ms = 0 */
}

/* Tell the maintenance about due, unless it already wakes earlier: the
 * common case, read here without a call. */
static inline void note_due(struct pool *pool, uint64_t due)
{
	if (due && due < atomic_load_explicit(&pool->maint_due_ns,
					      memory_order_relaxed))
		maint_note_due(pool, due);
}

/* A connection just went idle (no lock held): the maintenance hears of
 * its due and of a shrink period begun (0: none), and waiters of it. */
static inline void kept_idle_tell(struct pool *pool, struct pool_endpoint *ep,
				  uint64_t due, uint64_t shrink)
{
	note_due(pool, due);
	note_due(pool, shrink);
	/* A caller that began waiting while it was offered to the waiters,
	 * or taken from a thread's cache: it may have looked before it was
	 * idle. */
	if (atomic_load(&pool->nwaiters))
		waiters_wake_ep(pool, ep);
	/* A caller waiting under max_total can evict it now. */
	if (pool->cfg->max_total)
		waiters_wake_total(pool);
}

/* When the maintenance takes a parked connection back to the idle list:
 * at its idle timeout or end of life, as for an idle one, or once it has
 * been idle validate_idle_ms, so that its next hand-out peeks (park_get
 * reads no clock for it); 0: never. */
static inline uint64_t park_due(const struct pool_conn *c)
{
	uint64_t due = conn_idle_due(c);
	uint32_t v = c->ep->set.validate_idle_ms;

	if (v && (!due || c->last_put_ns + MS_TO_NS(v) < due))
		due = c->last_put_ns + MS_TO_NS(v);
	return due;
}

/* Park c in s (no lock held): its idle time starts, and the maintenance
 * hears of when it must take it back (park_due). */
static inline __attribute__((always_inline)) bool
park_in(struct pool *pool, struct park_slot *s,
			   struct pool_conn *c, uint64_t now)
{
	uint64_t due;

	c->last_put_ns = now;
	due = park_due(c);
	atomic_store_explicit(&s->due_ns, due, memory_order_relaxed);
	if (!park_publish(pool, s, c))
		return false;
	note_due(pool, due);
	return true;
}

/* The thread cache's pool_put: c back into the caller's own slot, which
 * it is affine to. No lock, no shared write. */
static inline __attribute__((always_inline)) bool
park_put(struct pool *pool, struct pool_conn *c,
			    pool_put_mode mode)
{
	struct park_slot *s;
	uint64_t now;

	if (mode != POOL_REUSE || !c || !c->park || !put_is_valid(pool, c) ||
	    fork_pending(pool) || c->fork_gen != pool->fork_gen)
		return false;
	s = park_mine(pool);
	if (c->park != s || __atomic_load_n(&c->peer_gone, __ATOMIC_RELAXED))
		return false;
	now = put_clock(c->ep, c);
	if (conn_expired(c, now))
		return false;
	return park_in(pool, s, c, now);
}

/* The idle fast path of pool_put: a healthy connection of this process
 * back to an idle list with room, nobody waiting, or into the caller's
 * cache. False, with nothing done, for anything else, which put_slow
 * then does in full. */
static inline bool put_fast(struct pool *pool, struct pool_conn *c,
			    pool_put_mode mode)
{
	struct pool_endpoint *ep;
	uint64_t now, due;

	if (mode != POOL_REUSE || !put_is_valid(pool, c) || c->unproven ||
	    c->park || fork_pending(pool) || c->fork_gen != pool->fork_gen)
		return false;
	ep = c->ep;
	now = put_clock(ep, c);
	if (ep->set.thread_cache)
		park_claim(pool);
	plock_lock(&ep->shard->lock);
	if (c->peer_gone || conn_expired(c, now) ||
	    ep->nidle >= ep->set.max_idle || atomic_load(&pool->nwaiters) ||
	    atomic_load_explicit(&pool->shutting_down, memory_order_relaxed)) {
		plock_unlock(&ep->shard->lock);
		return false;
	}
	if (park_adopt_locked(pool, ep, c)) {
		/* Stays on the busy list and in nin_use (park.h). From now
		 * on the maintenance counts the parked ones once a shrink
		 * period (a surplus no put sees, maint.c). */
		plock_unlock(&ep->shard->lock);
		maint_note_due(pool, (now ? now : now_coarse_ns()) +
					     MS_TO_NS(ep->set.idle_shrink_ms));
		return park_in(pool, c->park, c, now);
	}
	DL_DELETE(ep->busy, c);
	c->last_put_ns = now;
	idle_push(pool, ep, c, true);
	ep->nin_use--;
	due = conn_idle_due(c); /* c is anyone's once unlocked */
	plock_unlock(&ep->shard->lock);
	kept_idle_tell(pool, ep, due, 0);
	return true;
}

static __attribute__((noinline)) void put_slow(struct pool *pool,
					       struct pool_conn *conn,
					       pool_put_mode mode);

/* pool_put past the thread cache, out of line (see get_slow). */
static __attribute__((noinline)) void put_shared(struct pool *pool,
						 struct pool_conn *conn,
						 pool_put_mode mode)
{
	if (!put_fast(pool, conn, mode))
		put_slow(pool, conn, mode);
}

POOL_API void pool_put(pool_t *pool, pool_conn_t *conn, pool_put_mode mode)
{
	if (!park_put(pool, conn, mode))
		put_shared(pool, conn, mode);
}

/* pool_put in full: misuse, fork, a pool_socket's first put, waiters,
 * a surplus, retirement. */
static void put_slow(struct pool *pool, struct pool_conn *conn,
		     pool_put_mode mode)
{
	struct pool_endpoint *ep;
	uint64_t now;

	if (!put_is_valid(pool, conn) || mode > POOL_BROKEN) {
		pool_note_misuse(pool, conn);
		return;
	}
	if ((fork_pending(pool) || conn->fork_gen != pool->fork_gen) &&
	    fork_put_inherited(pool, conn))
		return;
	if (conn->unproven && put_unproven(pool, conn, &mode))
		return;
	ep = conn->ep;
	now = put_clock(ep, conn);
	plock_lock(&ep->shard->lock);
	DL_DELETE(ep->busy, conn);
	/* Out of its thread's cache, if it was in one: the rules below
	 * apply to it as to any other. */
	park_unaffine_locked(ep, conn);
	/* A connection the server closed while it was out (the idle watch
	 * saw it) is never kept: the watch would not see it again. */
	if (mode == POOL_REUSE && !conn->peer_gone && !conn_expired(conn, now)) {
		if (atomic_load(&pool->nwaiters) && hand_to_waiter(pool, conn))
			return;
		if (keep_idle(pool, conn, now)) {
			uint64_t due = conn_idle_due(conn);
			uint64_t shrink = shrink_arm(ep, now);

			ep->nin_use--;
			plock_unlock(&ep->shard->lock);
			kept_idle_tell(pool, ep, due, shrink);
			return;
		}
	}
	ep->nin_use--;
	plock_unlock(&ep->shard->lock);
	conn_retire(pool, conn, mode == POOL_BROKEN, put_reason(pool, conn, mode, now));
}

void checkout_return_parked(struct pool *pool, struct pool_conn *c, int how)
{
	bool retire_ok = how & RETURN_RETIRE;
	struct pool_endpoint *ep = c->ep;
	enum retire_reason why = RR_COUNT;
	uint64_t due = 0, shrink = 0;

	plock_lock(&ep->shard->lock);
	park_uncount_locked(ep, c);
	if (retire_ok && c->peer_gone)
		why = RR_PEER_CLOSED;
	else if (retire_ok)
		why = conn_expiry(c, now_coarse_ns());
	if (why == RR_COUNT) {
		/* Its idle time kept: the idle timeout and validate_idle_ms
		 * count from its last put, not from now. */
		idle_push(pool, ep, c, true);
		due = conn_idle_due(c);
		shrink = shrink_arm(ep, 0);
	}
	plock_unlock(&ep->shard->lock);
	if (why != RR_COUNT) {
		conn_retire(pool, c, false, why);
		return;
	}
	/* The sweep retires what is due itself. */
	if (how & RETURN_IN_SWEEP)
		due = shrink = 0;
	kept_idle_tell(pool, ep, due, shrink);
}

POOL_API int pool_conn_fd(const pool_conn_t *conn)
{
	return conn ? conn->fd : -1;
}

POOL_API int pool_conn_reused(const pool_conn_t *conn)
{
	return conn && conn->reused;
}

POOL_API int pool_conn_last_use(const pool_conn_t *conn)
{
	/* The same clock as pool_put's decision, so the two agree. */
	return conn && conn_expired(conn, now_coarse_ns());
}

POOL_API const char *pool_conn_endpoint(const pool_conn_t *conn)
{
	return conn ? conn->ep->key : NULL;
}

POOL_API unsigned pool_conn_uses(const pool_conn_t *conn)
{
	return conn ? conn->uses : 0;
}

POOL_API void *pool_conn_data(const pool_conn_t *conn)
{
	return conn ? conn->data : NULL;
}

/* The old data is not freed: whoever replaces it has it in hand (read
 * with pool_conn_data) and may still be using it, say wrapping it. */
POOL_API void pool_conn_set_data(pool_conn_t *conn, void *data,
				 void (*free_fn)(void *data))
{
	if (!conn)
		return;
	conn->data = data;
	conn->free_fn = free_fn;
}
