/*
 * Connection life: records, slots, retirement by policy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config-keys.h"
#include "pool-internal.h"
#include "obs.h"
#include "wait.h"

/* Keep the address c's TCP socket is connected to (the DNS refresh's
 * check, dnsrefresh.c). Read back from the socket rather than taken
 * from the dial: it is what the kernel connected, whoever chose it. A
 * socket whose peer cannot be read keeps AF_UNSPEC (never retired for a
 * DNS change). */
static void conn_note_peer(struct pool_conn *c)
{
	socklen_t len = sizeof(c->peer);

	if (c->ep->addr.kind != EP_TCP ||
	    getpeername(c->fd, &c->peer.sa, &len) != 0 ||
	    (c->peer.sa.sa_family != AF_INET && c->peer.sa.sa_family != AF_INET6))
		memset(&c->peer, 0, sizeof(c->peer));
}

struct pool_conn *conn_new(struct pool_endpoint *ep, int fd)
{
	struct pool_conn *c = conn_alloc(ep, fd);

	if (c) {
		conn_note_peer(c);
		conn_watch(ep->pool, c);
	}
	return c;
}

struct pool_conn *conn_alloc(struct pool_endpoint *ep, int fd)
{
	struct pool_conn *c = calloc(1, sizeof(*c));
	uint64_t now = now_ns();

	if (!c)
		return NULL;
	c->fd = fd;
	c->ep = ep;
	c->pool = ep->pool;
	c->fork_gen = ep->pool->fork_gen;
	c->created_ns = now;
	c->last_put_ns = now;
	conn_set_expiry(c, now);
	return c;
}

void conn_free(struct pool_conn *c)
{
	c->magic = CONN_MAGIC_DEAD;
	free(c->watch); /* still attached only where no runner can see it:
	                 * a child of fork(), or pool_destroy's leftovers */
	free(c);
}

/* window * r / range without overflow for any 64-bit window: with
 * window up to 2^51 ns (UINT32_MAX ms at 50 %) and r up to 2^31, the
 * plain product wraps past 2^33 ns of window, which cut a 1-hour, 5 %
 * window of 180 s to 8.5 s. Split window into range-sized parts: each
 * partial product stays below 2^63. */
static uint64_t scale(uint64_t window, uint64_t r, uint64_t range)
{
	return window / range * r + window % range * r / range;
}

/* Lifetime minus a random 0..jitter% so that connections opened together
 * (a burst at start-up) do not all expire, and reconnect, together. */
void conn_set_expiry(struct pool_conn *c, uint64_t now)
{
	const struct pool_settings *s = &c->ep->set;
	uint64_t life = MS_TO_NS(s->max_lifetime_ms);
	uint64_t cut = 0;

	if (!life) {
		c->expires_ns = 0;
		return;
	}
	if (s->lifetime_jitter_pct) {
		/* rand_r on the address and clock: no shared PRNG state. */
		unsigned seed = (unsigned)(now ^ (uintptr_t)c);

		cut = scale(life / 100 * s->lifetime_jitter_pct,
			    (uint64_t)rand_r(&seed), (uint64_t)RAND_MAX + 1);
	}
	c->expires_ns = now + life - cut;
}

void total_release(struct pool *pool)
{
	if (atomic_load(&pool->nwant_total)) {
		waiters_give_total(pool, true);
		return;
	}
	atomic_fetch_sub(&pool->total, 1);
	/* A waiter may have registered meanwhile: it looks at total after
	 * registering as we look at nwant_total after lowering total (both
	 * seq_cst), so if it missed the slot we see it here. */
	if (atomic_load(&pool->nwant_total))
		waiters_give_total(pool, false);
}

/* Free the endpoint slot of a connection closed or left to drain. */
static void ep_slot_release(struct pool *pool, struct pool_endpoint *ep)
{
	bool refill;

	plock_lock(&ep->shard->lock);
	ep->stats.closed++;
	refill = ep->set.min_idle != 0;
	ep_slot_put_unlock(pool, ep);
	/* ep may be forgotten from here on: not a byte of it is read. A
	 * warm connection went: let the maintenance refill min_idle. */
	if (refill)
		maint_note_due(pool, now_ns());
}

void slot_release(struct pool *pool, struct pool_endpoint *ep)
{
	ep_slot_release(pool, ep);
	total_release(pool);
}

void conn_drop(struct pool *pool, struct pool_conn *c, enum retire_reason why)
{
	struct pool_endpoint *ep = c->ep;

	conn_unwatch(pool, c);
	obs_retire(pool, ep, why, TEARDOWN_CLOSE, c->created_ns);
	close(c->fd);
	data_release(c->data, c->free_fn);
	conn_free(c);
	slot_release(pool, ep);
}

int conn_on_connect(struct pool_conn *c, const struct connect_ctl *ctl)
{
	const pool_hooks_t *h = c->ep->hooks;

	if (!h || !h->on_connect || h->on_connect(c, h->ud) == 0)
		return 0;
	/* Out of the idle watch before the fd closes, as every close does
	 * (a child's copy of the fd would keep the registration alive). */
	conn_unwatch(c->pool, c);
	/* Whatever the hook got to (half a TLS handshake, a refused AUTH)
	 * the state is unknown: an RST, no TIME_WAIT on either side. A
	 * refill's socket is unpublished as it closes (connect_ctl_close). */
	if (ctl && ctl->lock)
		pthread_mutex_lock(ctl->lock);
	teardown_now(c->fd, TEARDOWN_ABORT);
	if (ctl && ctl->lock) {
		*ctl->inflight = -1;
		pthread_mutex_unlock(ctl->lock);
	}
	obs_retire(c->pool, c->ep, RR_HOOK, TEARDOWN_ABORT, c->created_ns);
	data_release(c->data, c->free_fn);
	conn_free(c);
	return POOL_EHOOK;
}

uint32_t ratelimit_hit(struct ratelimit *rl, uint64_t now)
{
	uint32_t n;

	if (rl->last_ns && now - rl->last_ns < RATELIMIT_NS) {
		rl->quiet++;
		return 0;
	}
	n = rl->quiet + 1;
	rl->quiet = 0;
	rl->last_ns = now;
	return n;
}

/* The close request as configured, for a message: the hook, or the
 * bytes quoted with their escapes, as config messages show values. */
static void request_shown(char *out, size_t outlen, const struct pool_endpoint *ep)
{
	const struct pool_settings *s = &ep->set;
	char quoted[64 * 4 + 8];

	if (ep->hooks && ep->hooks->close_request) {
		snprintf(out, outlen, "the close_request hook");
		return;
	}
	if (!s->close_request_len) {
		snprintf(out, outlen, "no close_request");
		return;
	}
	config_quote_bytes(quoted, sizeof(quoted), s->close_request,
			   s->close_request_len);
	snprintf(out, outlen, "close_request %s", quoted);
}

static void fallback_text(char *out, size_t outlen, const struct pool_endpoint *ep,
			  enum fallback_why why, uint32_t n)
{
	const struct pool_settings *s = &ep->set;
	char req[64 * 4 + 32], what[128], count[64] = "";

	request_shown(req, sizeof(req), ep);
	if (why == FB_TIMEOUT)
		snprintf(what, sizeof(what), "no EOF within close_timeout_ms = %u after",
			 s->close_timeout_ms);
	else if (why == FB_BUDGET)
		snprintf(what, sizeof(what), "the server sent more than the drain "
			 "budget (%u bytes) without closing, after", DRAIN_BUDGET);
	else if (why == FB_UNREAD)
		snprintf(what, sizeof(what), "more than the drain budget (%u bytes) "
			 "was waiting unread, so it did not send", DRAIN_BUDGET);
	else if (why == FB_NOWAIT)
		snprintf(what, sizeof(what), "the drain could not be tracked "
			 "(memory or descriptors) for");
	else
		snprintf(what, sizeof(what), "could not send");
	if (n > 1)
		snprintf(count, sizeof(count), " (%u fallbacks since the last warning)", n);
	snprintf(out, outlen, "%s: peer-first fell back to %s: %s %s%s", ep->key,
		 teardown_name(s->fallback), what, req, count);
}

bool fallback_count_locked(struct pool_endpoint *ep, enum fallback_why why,
			   char *msg, size_t msglen)
{
	uint32_t n;

	ep->stats.peer_first_fallback++;
	n = ratelimit_hit(&ep->fallback_log, now_coarse_ns());
	if (n)
		fallback_text(msg, msglen, ep, why, n);
	return n != 0;
}

void fallback_note(struct pool *pool, struct pool_endpoint *ep,
		   enum fallback_why why)
{
	char msg[512];
	bool log;

	plock_lock(&ep->shard->lock);
	log = fallback_count_locked(ep, why, msg, sizeof(msg));
	plock_unlock(&ep->shard->lock);
	if (log)
		pool_log(pool, POOL_LOG_WARN, "%s", msg);
	obs_fallback(pool, ep, obs_fallback_code(why), ep->set.fallback, 0);
}

static void count_retired(struct pool_endpoint *ep, enum pool_teardown policy)
{
	plock_lock(&ep->shard->lock);
	if (policy == TEARDOWN_CLOSE)
		ep->stats.retired_close++;
	else if (policy == TEARDOWN_ABORT)
		ep->stats.retired_abort++;
	else
		ep->stats.retired_peer_first++;
	plock_unlock(&ep->shard->lock);
}

static void count_broken_fallback(struct pool_endpoint *ep)
{
	plock_lock(&ep->shard->lock);
	ep->stats.peer_first_fallback++;
	plock_unlock(&ep->shard->lock);
}

static void count_peer_first_ok(struct pool_endpoint *ep)
{
	plock_lock(&ep->shard->lock);
	ep->stats.peer_first_ok++;
	plock_unlock(&ep->shard->lock);
}

/* Whether the peer has closed (FIN or RST; bytes before it are read and
 * dropped): then a plain close() ends it with no TIME_WAIT on either side,
 * whatever the policy says. */
static bool peer_closed(int fd)
{
	size_t budget = DRAIN_BUDGET;

	return drain_step(fd, &budget) == DRAIN_EOF;
}

/* Ask the server to close: the close_request hook, or the bytes. A
 * peer that closed while idle needs no request (closing a CLOSE_WAIT
 * socket leaves no TIME_WAIT). *why says what failed on DRAIN_FAILED. */
static enum drain_status request_close(struct pool_conn *c, enum fallback_why *why)
{
	const pool_hooks_t *h = c->ep->hooks;
	size_t budget = DRAIN_BUDGET;
	enum drain_status st = drain_step(c->fd, &budget);

	*why = FB_UNREAD;
	if (st != DRAIN_AGAIN)
		return st;
	/* A pool_socket connection never saw on_connect: a close_request
	 * hook may count on what on_connect set up (libtcpool-tls's TLS
	 * state), so such a connection gets the endpoint's bytes instead. */
	if (!h || !h->close_request || (c->unproven && h->on_connect)) {
		*why = FB_SEND;
		return drain_send(c->fd, &c->ep->set);
	}
	*why = FB_HOOK;
	/* Not checked out any more: a pool_put from the hook is misuse. */
	c->magic = CONN_MAGIC_IDLE;
	return h->close_request(c, h->ud) < 0 ? DRAIN_FAILED : DRAIN_AGAIN;
}

/* Peer-first: the request goes out now, from the caller, so the server
 * starts closing at once; the wait for its EOF runs in the maintenance
 * context, so the caller never waits for the peer. True if the socket was
 * left to drain: the drain then holds its max_total slot and c's data. */
static bool retire_peer_first(struct pool *pool, struct pool_conn *c, bool broken)
{
	struct pool_endpoint *ep = c->ep;
	size_t budget = DRAIN_BUDGET;
	enum fallback_why why = FB_SEND;
	enum drain_status st;
	uint64_t t0 = now_ns();

	/* A broken connection's protocol state is unknown: a close request
	 * could be read as part of something else, so fall back at once. */
	if (broken)
		st = peer_closed(c->fd) ? DRAIN_EOF : DRAIN_FAILED;
	else
		st = request_close(c, &why);
	if (st == DRAIN_AGAIN) {
		reaper_add(pool, c->fd, ep, c->data, c->free_fn);
		return true;
	}
	if (st == DRAIN_EOF)
		teardown_now(c->fd, TEARDOWN_CLOSE);
	else if (teardown_fallback(c->fd, ep->set.fallback, &budget))
		st = DRAIN_EOF;
	data_release(c->data, c->free_fn);
	/* A drain that ended at once: HIST_DRAIN counts it too (near 0),
	 * unless broken, where no close request was sent at all. */
	if (!broken)
		obs_time(ep, HIST_DRAIN, now_ns() - t0);
	if (st == DRAIN_EOF)
		count_peer_first_ok(ep);
	else if (broken) /* by design, not a setup to warn about */
		count_broken_fallback(ep);
	else
		fallback_note(pool, ep, why);
	if (st != DRAIN_EOF && broken)
		obs_fallback(pool, ep, POOL_FALLBACK_BROKEN, ep->set.fallback, 0);
	return false;
}

void conn_retire(struct pool *pool, struct pool_conn *c, bool broken,
		 enum retire_reason why)
{
	struct pool_endpoint *ep = c->ep;
	enum pool_teardown policy = ep->set.teardown;
	bool draining = false;

	conn_unwatch(pool, c); /* before a drain puts fd in the same set */
	count_retired(ep, policy);
	obs_retire(pool, ep, why, policy, c->created_ns);
	if (policy == TEARDOWN_PEER_FIRST) {
		draining = retire_peer_first(pool, c, broken);
	} else {
		teardown_now(c->fd, peer_closed(c->fd) ? TEARDOWN_CLOSE : policy);
		data_release(c->data, c->free_fn);
	}
	conn_free(c);
	/* A drain's socket is still open: it keeps its max_total slot until
	 * the drain ends, so open sockets never exceed max_total. It is no
	 * longer the endpoint's: max_active counts in use plus idle. */
	ep_slot_release(pool, ep);
	if (!draining)
		total_release(pool);
}
