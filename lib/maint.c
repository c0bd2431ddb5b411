/*
 * Maintenance: what the pool does on its own, in a background thread
 * (maintenance = thread, the default) or when the application calls
 * pool_maintain() (maintenance = manual):
 *  - retire connections idle longer than idle_timeout_ms or older than
 *    their (jittered) max_lifetime_ms, a few per sweep so that a crowd
 *    expiring together is retired as a trickle, not a burst;
 *  - retire idle connections above max_idle, half of the surplus per
 *    idle_shrink_ms period, least recently used first;
 *  - refill min_idle warm connections on endpoints that have been used;
 *  - warn once about connections held longer than leak_warn_ms;
 *  - progress peer-first drains (reaper.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "park.h"
#include "pool-internal.h"
#include "resolve.h"

#define SWEEP_MAX_RETIRE 16          /* per sweep; the rest soon after */
#define SWEEP_AGAIN_NS   MS_TO_NS(5)
/* A refill that max_connecting holds back: looked at again this soon. */
#define REFILL_CAPPED_NS MS_TO_NS(100)
#define NEVER            UINT64_MAX
#define MAX_WAIT_MS      60000       /* look at the pool at least this often */

struct sweep {
	uint64_t now;
	uint64_t due;                /* earliest next need */
	unsigned budget;             /* retirements left this sweep */
	struct pool_conn *retire;    /* to retire once unlocked */
	struct pool_endpoint *refill[REFILL_QUEUE];
	unsigned nrefill;
	struct leak {                /* logged once no lock is held */
		char endpoint[POOL_MAX_HOST + POOL_MAX_PATH];
		int fd;
		uint64_t held_ms;
		uint32_t warn_ms;
	} leaks[8];
	unsigned nleaks;
	/* Endpoints whose surplus is parked in threads' caches: taken back
	 * to the idle lists once unlocked, for the next shrink period. */
	const struct pool_endpoint *unpark[8];
	unsigned nunpark;
};

static void due_at(struct sweep *sw, uint64_t t)
{
	if (t && t < sw->due)
		sw->due = t;
}

/* Move an idle connection to the sweep's retire list, if the sweep's
 * budget allows; otherwise ask for another sweep soon. */
static bool take_idle(struct sweep *sw, struct pool_endpoint *ep,
		      struct pool_conn *c, enum retire_reason why)
{
	if (!sw->budget) {
		due_at(sw, sw->now + SWEEP_AGAIN_NS);
		return false;
	}
	sw->budget--;
	idle_remove(ep->pool, ep, c);
	c->retire_why = (uint8_t)why;
	DL_APPEND(sw->retire, c);
	return true;
}

/* Why an idle connection that is due goes. */
static enum retire_reason idle_reason(const struct pool_conn *c, uint64_t now)
{
	if (c->peer_gone)
		return RR_PEER_CLOSED;
	if (c->expires_ns && now >= c->expires_ns)
		return RR_LIFETIME;
	return RR_IDLE_TIMEOUT;
}

/* Oldest idle first (the list is most recently used first). */
static void sweep_idle(struct sweep *sw, struct pool_endpoint *ep)
{
	struct pool_conn *c, *prev;

	for (c = ep->idle ? ep->idle->prev : NULL; c; c = prev) {
		uint64_t due = conn_idle_due(c);

		prev = c == ep->idle ? NULL : c->prev;
		/* Closed by the server before it was first idle (a warm
		 * connection, see refill_one): the watch will not report it
		 * again. */
		if (c->peer_gone)
			due = sw->now;
		if (!due || due > sw->now) {
			due_at(sw, due);
			continue;
		}
		if (!take_idle(sw, ep, c, idle_reason(c, sw->now)))
			return;
	}
}

/* A surplus of ep's parked in threads' caches: back to the idle list
 * once the shard lock drops (park_evict takes it), where the next period
 * finds it. */
static void unpark_later(struct sweep *sw, const struct pool_endpoint *ep)
{
	if (sw->nunpark < sizeof(sw->unpark) / sizeof(sw->unpark[0]))
		sw->unpark[sw->nunpark++] = ep;
	due_at(sw, sw->now + MS_TO_NS(ep->set.idle_shrink_ms));
}

/* A surplus no pool_put saw: a thread's cached put takes no lock and
 * counts nothing (park.h), so while connections of ep are parked the
 * maintenance looks once a period, and starts a shrink period itself. */
static void shrink_watch_parked(struct sweep *sw, struct pool_endpoint *ep)
{
	if (ep->shrink_due_ns || !ep->set.idle_shrink_ms || !park_parked(ep))
		return;
	if (ep_idle_held(ep) > ep->set.max_idle)
		ep->shrink_due_ns = sw->now + MS_TO_NS(ep->set.idle_shrink_ms);
	due_at(sw, sw->now + MS_TO_NS(ep->set.idle_shrink_ms));
}

/* Idle connections above max_idle (kept by pool_put, see keep_idle, or
 * parked in threads' caches): each idle_shrink_ms period retires half of
 * the surplus, rounded up, least recently used first, so a pool that saw
 * a burst comes back to max_idle in a few periods and a burst that
 * repeats finds most of its connections still open. */
static void sweep_shrink(struct sweep *sw, struct pool_endpoint *ep)
{
	shrink_watch_parked(sw, ep);
	if (!ep->shrink_due_ns)
		return;
	if (ep_idle_held(ep) <= ep->set.max_idle) {
		ep->shrink_due_ns = 0; /* hand-outs took the surplus */
		ep->shrink_left = 0;
		return;
	}
	if (ep->shrink_due_ns > sw->now) {
		due_at(sw, ep->shrink_due_ns);
		return;
	}
	if (!ep->shrink_left) /* a new period */
		ep->shrink_left = (ep_idle_held(ep) - ep->set.max_idle + 1) / 2;
	while (ep->shrink_left && ep_idle_held(ep) > ep->set.max_idle) {
		if (!ep->nidle) {
			/* The rest is parked: this period's share is taken
			 * from the idle list in the next. */
			unpark_later(sw, ep);
			break;
		}
		if (!take_idle(sw, ep, ep->idle->prev, RR_SURPLUS))
			return; /* the rest of this period's share soon */
		ep->shrink_left--;
	}
	ep->shrink_left = 0;
	ep->shrink_due_ns = 0;
	if (ep_idle_held(ep) > ep->set.max_idle) {
		ep->shrink_due_ns = sw->now + MS_TO_NS(ep->set.idle_shrink_ms);
		due_at(sw, ep->shrink_due_ns);
	}
}

/* Note connections held past leak_warn_ms, once each. */
static void sweep_leaks(struct sweep *sw, struct pool_endpoint *ep)
{
	uint32_t warn = ep->set.leak_warn_ms;
	struct pool_conn *c;

	if (!warn)
		return;
	DL_FOREACH(ep->busy, c) {
		uint64_t due = c->got_ns + MS_TO_NS(warn);
		struct leak *l;

		if (c->leak_reported)
			continue;
		if (due > sw->now) {
			due_at(sw, due);
			continue;
		}
		if (sw->nleaks == sizeof(sw->leaks) / sizeof(sw->leaks[0])) {
			due_at(sw, sw->now + SWEEP_AGAIN_NS);
			return;
		}
		c->leak_reported = true;
		l = &sw->leaks[sw->nleaks++];
		/* A copy: the endpoint may be forgotten once unlocked. */
		snprintf(l->endpoint, sizeof(l->endpoint), "%s", ep->key);
		l->fd = c->fd;
		l->held_ms = (sw->now - c->got_ns) / 1000000u;
		l->warn_ms = warn;
	}
}

static void log_leaks(struct pool *pool, const struct sweep *sw)
{
	unsigned i;

	for (i = 0; i < sw->nleaks; i++)
		pool_log(pool, POOL_LOG_WARN,
			 "connection to %s (fd %d) checked out for %llu ms, "
			 "longer than leak_warn_ms = %u",
			 sw->leaks[i].endpoint, sw->leaks[i].fd,
			 (unsigned long long)sw->leaks[i].held_ms,
			 sw->leaks[i].warn_ms);
}

/* A max_total slot for a warm connection, never the pool's last free
 * one: that one is for a caller, who would otherwise evict a warm
 * connection to get it, which the next sweep would open again, and so
 * on, a connection closed (TIME_WAIT) per turn. */
static bool refill_reserve_total(struct pool *pool)
{
	unsigned cap = pool->cfg->max_total;

	if (cap && atomic_load(&pool->total) + 1 >= cap)
		return false;
	return total_reserve(pool);
}

/* Reserve slots for the warm connections ep lacks; they are opened once
 * the shard lock is dropped. min_idle counts every open connection, in
 * use or idle (nactive includes refills under way): counting only idle
 * ones would open more while callers hold theirs, and pool_put would
 * then find the endpoint over max_idle and close the surplus, a connect
 * and a close per request under steady load. */
static void sweep_refill(struct pool *pool, struct sweep *sw, struct pool_endpoint *ep)
{
	const size_t cap = sizeof(sw->refill) / sizeof(sw->refill[0]);

	while (ep->nactive < ep->set.min_idle) {
		if (sw->nrefill == cap) {
			due_at(sw, sw->now + SWEEP_AGAIN_NS);
			return;
		}
		if (ep->set.max_active && ep->nactive >= ep->set.max_active)
			return;
		/* Refills dial too: within max_connecting, not while the
		 * endpoint backs off. */
		if (ep->set.max_connecting && ep->ndialing >= ep->set.max_connecting) {
			due_at(sw, sw->now + REFILL_CAPPED_NS);
			return;
		}
		if (ep->backoff_until_ns > sw->now) {
			due_at(sw, ep->backoff_until_ns);
			return;
		}
		if (!refill_reserve_total(pool))
			return;
		ep->nactive++;
		ep->nconnecting++;
		ep->ndialing++;
		sw->refill[sw->nrefill++] = ep;
	}
}

/* An endpoint that holds nothing (no connection open, idle, checked out
 * or draining) and that no pool_get is waiting for is forgotten once it
 * has been so for its idle timeout (ENDPOINT_FORGET_MS when that is 0):
 * a client that talks to many endpoints in turn must not keep every one
 * it ever used, in memory and in every sweep. Its counters stay in the
 * pool's totals. True when ep is gone. */
static bool sweep_forget(struct sweep *sw, struct shard *sh, struct pool_endpoint *ep)
{
	uint64_t due = endpoint_forget_due(ep);

	if (ep->nactive)
		return false;
	if (ep->pins || ep->stats.draining || ep->busy || ep->idle) {
		/* Nothing says when a drain or a wait ends: look again. */
		due_at(sw, sw->now + endpoint_forget_after_ns(ep));
		return false;
	}
	if (due > sw->now) {
		due_at(sw, due);
		return false;
	}
	table_forget(sh, ep);
	return true;
}

uint64_t maint_sweep(struct pool *pool, uint64_t now)
{
	struct sweep sw = { .now = now, .due = NEVER, .budget = SWEEP_MAX_RETIRE };
	struct pool_endpoint *ep, *tmp;
	struct pool_conn *c, *ctmp;
	unsigned i;

	/* First: what it returns to the idle lists is retired below when
	 * its idle timeout is due. */
	park_sweep(pool, now, &sw.due, RETURN_IN_SWEEP);
	for (i = 0; i < POOL_NSHARDS; i++) {
		struct shard *sh = &pool->shards[i];

		plock_lock(&sh->lock);
		HASH_ITER(hh, sh->table, ep, tmp) {
			if (sweep_forget(&sw, sh, ep))
				continue;
			sweep_idle(&sw, ep);
			sweep_shrink(&sw, ep);
			sweep_leaks(&sw, ep);
			if (ep->set.min_idle && !atomic_load(&pool->shutting_down))
				sweep_refill(pool, &sw, ep);
		}
		plock_unlock(&sh->lock);
	}
	DL_FOREACH_SAFE(sw.retire, c, ctmp) {
		DL_DELETE(sw.retire, c);
		conn_retire(pool, c, false, (enum retire_reason)c->retire_why);
	}
	for (i = 0; i < sw.nunpark; i++)
		park_evict(pool, sw.unpark[i]); /* compared, never read */
	refill_submit(pool, sw.refill, sw.nrefill);
	log_leaks(pool, &sw);
	dns_refresh_sweep(pool, now, &sw.due);
	/* Connections a DNS change doomed while parked: now, not at their
	 * thread's next pool_get. */
	park_sweep(pool, now, &sw.due, 0);
	return sw.due;
}

void maint_note_due(struct pool *pool, uint64_t due_ns)
{
	uint_fast64_t cur = atomic_load(&pool->maint_due_ns);

	if (!due_ns)
		return;
	do {
		if (due_ns >= cur)
			return;
	} while (!atomic_compare_exchange_weak(&pool->maint_due_ns, &cur, due_ns));
	reaper_wake(pool);
}

/* ms until t, -1 for never, at most MAX_WAIT_MS. */
static int ms_until(uint64_t t, uint64_t now)
{
	int ms;

	if (t == NEVER)
		return -1;
	ms = deadline_ms(t, now);
	return ms > MAX_WAIT_MS ? MAX_WAIT_MS : ms;
}

/* One round: sweep if due, progress drains; returns ms until needed. */
static int maint_round(struct pool *pool, int wait_ms)
{
	uint64_t now = now_ns();
	int sweep_ms, drain_ms;

	if (now >= atomic_load(&pool->maint_due_ns)) {
		atomic_store(&pool->maint_due_ns, NEVER);
		maint_note_due(pool, maint_sweep(pool, now));
	}
	sweep_ms = ms_until(atomic_load(&pool->maint_due_ns), now_ns());
	if (wait_ms != 0 && (wait_ms < 0 || (sweep_ms >= 0 && sweep_ms < wait_ms)))
		wait_ms = sweep_ms;
	/* Both are -1 (nothing pending) or a wait of 0..MAX_WAIT_MS: the
	 * smaller of the two, -1 only when neither has anything pending. */
	drain_ms = reaper_run(pool, wait_ms);
	if (drain_ms > MAX_WAIT_MS)
		drain_ms = MAX_WAIT_MS;
	sweep_ms = ms_until(atomic_load(&pool->maint_due_ns), now_ns());
	if (drain_ms < 0)
		return sweep_ms;
	if (sweep_ms < 0)
		return drain_ms;
	return drain_ms < sweep_ms ? drain_ms : sweep_ms;
}

static void *maint_thread(void *arg)
{
	struct pool *pool = arg;
	int next = -1;

	while (!atomic_load(&pool->maint_stop))
		next = maint_round(pool, next);
	return NULL;
}

int maint_start(struct pool *pool)
{
	atomic_store(&pool->maint_due_ns, NEVER);
	atomic_store(&pool->maint_stop, false);
	pool->maint_running = false;
	if (pool->cfg->maintenance == MAINT_MANUAL)
		return 0;
	if (thread_start(&pool->maint_thread, maint_thread, pool))
		return POOL_ESYS;
	pool->maint_running = true;
	return 0;
}

void maint_stop(struct pool *pool)
{
	atomic_store(&pool->maint_stop, true);
	if (pool->maint_running) {
		reaper_wake(pool);
		pthread_join(pool->maint_thread, NULL);
		pool->maint_running = false;
	}
	/* After the sweeps: no refill can be queued any more. */
	refill_stop(pool);
}

POOL_API int pool_maintain(pool_t *pool, int *next_ms)
{
	int next, rc;

	if (!pool)
		return POOL_EINVAL;
	rc = fork_check(pool);
	if (rc)
		return rc;
	refill_progress(pool);
	next = maint_round(pool, 0);
	if (next_ms)
		*next_ms = next;
	return 0;
}

POOL_API int pool_maintenance_fd(pool_t *pool)
{
	int rc;

	if (!pool)
		return POOL_EINVAL;
	rc = fork_check(pool); /* a child gets its own epoll set, not the parent's */
	return rc ? rc : pool->reaper.epfd;
}
