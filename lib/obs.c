/*
 * Observability (issue 12): retirement reasons, timing histograms and the
 * event callback.
 *
 * Where the numbers live: struct obs_data, once in the endpoint and once
 * per shard (pool->obs[], the pool-wide totals, which keep what forgotten
 * endpoints recorded). Every counter is a relaxed atomic: a recorder takes
 * no lock (the acquire path may hold its shard lock, or not), and the
 * cache lines touched are its endpoint's and its shard's, never a
 * pool-wide one. Nothing here runs on the idle fast path: retirements,
 * connects, drains and waits are all slow paths already.
 */
#include <string.h>

#include "obs.h"

_Static_assert(RR_COUNT == OBS_REASONS, "OBS_REASONS out of date");
_Static_assert(HIST_COUNT == OBS_HISTS && (int)HIST_COUNT == (int)POOL_HIST_COUNT,
	       "OBS_HISTS out of date");
_Static_assert(OBS_BUCKETS == POOL_HIST_BUCKETS, "OBS_BUCKETS out of date");
_Static_assert((int)RR_COUNT == (int)POOL_REASON_COUNT, "public reasons out of date");
_Static_assert((int)RR_HOOK == (int)POOL_REASON_HOOK &&
	       (int)RR_IDLE_TIMEOUT == (int)POOL_REASON_IDLE_TIMEOUT,
	       "public reasons are the internal ones");
_Static_assert((int)TEARDOWN_CLOSE == (int)POOL_POLICY_CLOSE &&
	       (int)TEARDOWN_ABORT == (int)POOL_POLICY_ABORT &&
	       (int)TEARDOWN_PEER_FIRST == (int)POOL_POLICY_PEER_FIRST,
	       "public policies are the internal ones");
_Static_assert(sizeof(((pool_stats_ex_t *)0)->retired) / sizeof(uint64_t[3]) ==
	       RR_COUNT, "pool_stats_ex_t.retired sized for this version");

#define RELAXED memory_order_relaxed

/* Bucket i holds durations of at most 2^i us; the last one the rest. */
static unsigned bucket_of(uint64_t ns)
{
	uint64_t us = ns / 1000u + (ns % 1000u != 0);
	unsigned i;

	if (us <= 1)
		return 0;
	i = 64u - (unsigned)__builtin_clzll(us - 1); /* ceil(log2(us)) */
	return i < OBS_BUCKETS - 1 ? i : OBS_BUCKETS - 1;
}

static void hist_add(struct obs_buckets *h, uint64_t ns)
{
	atomic_fetch_add_explicit(&h->bucket[bucket_of(ns)], 1, RELAXED);
	atomic_fetch_add_explicit(&h->sum_ns, ns, RELAXED);
}

static struct obs_data *shard_obs(struct pool_endpoint *ep)
{
	struct pool *pool = ep->pool;

	return &pool->obs[ep->shard - pool->shards].d;
}

void obs_time(struct pool_endpoint *ep, enum obs_hist h, uint64_t ns)
{
	if (!ep || (unsigned)h >= HIST_COUNT)
		return;
	hist_add(&ep->obs.hist[h], ns);
	hist_add(&shard_obs(ep)->hist[h], ns);
}

/* ---- the event callback ---- */

POOL_API void pool_set_event_fn(pool_t *pool, pool_event_fn fn, void *ud)
{
	if (!pool)
		return;
	plock_lock(&pool->event_lock);
	pool->event_fn = fn;
	pool->event_ud = ud;
	atomic_store(&pool->event_on, fn != NULL);
	plock_unlock(&pool->event_lock);
}

/* Call the callback, if any, with no lock held. Events cost nothing when
 * no callback is set: one relaxed load. */
static void fire(struct pool *pool, pool_event_t *ev)
{
	pool_event_fn fn;
	void *ud;

	if (!atomic_load_explicit(&pool->event_on, RELAXED))
		return;
	plock_lock(&pool->event_lock);
	fn = pool->event_fn;
	ud = pool->event_ud;
	plock_unlock(&pool->event_lock);
	if (fn)
		fn(ev, ud);
}

static pool_event_t event(int type, const struct pool_endpoint *ep)
{
	pool_event_t ev;

	memset(&ev, 0, sizeof(ev));
	ev.size = sizeof(ev);
	ev.type = type;
	ev.endpoint = ep->key;
	ev.reason = -1;
	ev.policy = -1;
	return ev;
}

void obs_connect(struct pool *pool, struct pool_endpoint *ep, int rc, uint64_t ns)
{
	pool_event_t ev;

	if (!pool || !ep)
		return;
	if (rc == 0)
		obs_time(ep, HIST_CONNECT, ns);
	ev = event(POOL_EVENT_CONNECT, ep);
	ev.rc = rc;
	ev.duration_ns = ns;
	fire(pool, &ev);
}

void obs_retire(struct pool *pool, struct pool_endpoint *ep,
		enum retire_reason why, enum pool_teardown policy,
		uint64_t created_ns)
{
	uint64_t now = now_ns();
	uint64_t age = now > created_ns ? now - created_ns : 0;
	pool_event_t ev;

	if (!pool || !ep || (unsigned)why >= RR_COUNT ||
	    (unsigned)policy >= OBS_POLICIES)
		return;
	atomic_fetch_add_explicit(&ep->obs.retired[why][policy], 1, RELAXED);
	atomic_fetch_add_explicit(&shard_obs(ep)->retired[why][policy], 1, RELAXED);
	obs_time(ep, HIST_LIFETIME, age);
	ev = event(POOL_EVENT_RETIRE, ep);
	ev.reason = (int)why;
	ev.policy = (int)policy;
	ev.duration_ns = age;
	fire(pool, &ev);
}

int obs_fallback_code(enum fallback_why why)
{
	switch (why) {
	case FB_TIMEOUT: return POOL_FALLBACK_TIMEOUT;
	case FB_SEND: return POOL_FALLBACK_SEND;
	case FB_HOOK: return POOL_FALLBACK_HOOK;
	case FB_BUDGET: return POOL_FALLBACK_BUDGET;
	case FB_UNREAD: return POOL_FALLBACK_UNREAD;
	case FB_NOWAIT: return POOL_FALLBACK_NOWAIT;
	}
	return POOL_FALLBACK_SEND;
}

void obs_fallback(struct pool *pool, struct pool_endpoint *ep, int why,
		  enum pool_teardown policy, uint64_t ns)
{
	pool_event_t ev;

	if (!pool || !ep)
		return;
	ev = event(POOL_EVENT_FALLBACK, ep);
	ev.reason = why;
	ev.policy = (int)policy;
	ev.duration_ns = ns;
	fire(pool, &ev);
}

void obs_backoff(struct pool *pool, struct pool_endpoint *ep, uint32_t delay_ms)
{
	pool_event_t ev;

	if (!pool || !ep)
		return;
	ev = event(POOL_EVENT_BACKOFF, ep);
	ev.duration_ns = MS_TO_NS(delay_ms);
	fire(pool, &ev);
}

/* ---- reading ---- */

static void xstats_add(struct ep_xstats *sum, const struct ep_xstats *x)
{
	sum->backoffs += x->backoffs;
	sum->backoff_rejects += x->backoff_rejects;
	sum->connect_waits += x->connect_waits;
	sum->resolves += x->resolves;
	sum->resolve_failures += x->resolve_failures;
	sum->resolve_timeouts += x->resolve_timeouts;
	sum->dns_changes += x->dns_changes;
	sum->flushes += x->flushes;
	sum->cache_gets += x->cache_gets;
}

void obs_forget(struct shard *sh, struct pool_endpoint *ep)
{
	struct pool *pool = ep->pool;

	xstats_add(&pool->obs[sh - pool->shards].xgone, &ep->xstats);
}

void obs_read_xstats(const struct ep_xstats *x, pool_stats_ex_t *out)
{
	out->backoffs += x->backoffs;
	out->backoff_rejects += x->backoff_rejects;
	out->connect_waits += x->connect_waits;
	out->resolves += x->resolves;
	out->resolve_failures += x->resolve_failures;
	out->resolve_timeouts += x->resolve_timeouts;
	out->dns_changes += x->dns_changes;
	out->flushes += x->flushes;
	out->cache_gets += x->cache_gets;
}

void obs_read(const struct obs_data *d, pool_stats_ex_t *out)
{
	unsigned r, p, h, b;

	for (r = 0; r < OBS_REASONS; r++)
		for (p = 0; p < OBS_POLICIES; p++)
			out->retired[r][p] +=
				atomic_load_explicit(&d->retired[r][p], RELAXED);
	for (h = 0; h < OBS_HISTS; h++) {
		pool_hist_data_t *o = &out->hist[h];

		o->sum_ns += atomic_load_explicit(&d->hist[h].sum_ns, RELAXED);
		for (b = 0; b < OBS_BUCKETS; b++) {
			uint64_t n = atomic_load_explicit(&d->hist[h].bucket[b],
							  RELAXED);

			o->bucket[b] += n;
			o->count += n;
		}
	}
}

/* ---- names ---- */

static const char *const reason_names[POOL_REASON_COUNT] = {
	[POOL_REASON_IDLE_TIMEOUT] = "idle_timeout",
	[POOL_REASON_LIFETIME] = "lifetime",
	[POOL_REASON_MAX_USES] = "max_uses",
	[POOL_REASON_SURPLUS] = "surplus",
	[POOL_REASON_USER] = "user",
	[POOL_REASON_BROKEN] = "broken",
	[POOL_REASON_FLUSH] = "flush",
	[POOL_REASON_DNS] = "dns",
	[POOL_REASON_PEER_CLOSED] = "peer_closed",
	[POOL_REASON_STALE] = "stale",
	[POOL_REASON_DESTROY] = "destroy",
	[POOL_REASON_EVICTED] = "evicted",
	[POOL_REASON_HOOK] = "hook",
};

static const char *const fallback_names[POOL_FALLBACK_COUNT] = {
	[POOL_FALLBACK_TIMEOUT] = "timeout",
	[POOL_FALLBACK_SEND] = "send",
	[POOL_FALLBACK_HOOK] = "hook",
	[POOL_FALLBACK_BUDGET] = "budget",
	[POOL_FALLBACK_UNREAD] = "unread",
	[POOL_FALLBACK_NOWAIT] = "nowait",
	[POOL_FALLBACK_BROKEN] = "broken",
};

static const char *const event_names[] = {
	[POOL_EVENT_CONNECT] = "connect",
	[POOL_EVENT_RETIRE] = "retire",
	[POOL_EVENT_FALLBACK] = "fallback",
	[POOL_EVENT_BACKOFF] = "backoff",
};

#define NAME(table, i) \
	((i) >= 0 && (size_t)(i) < sizeof(table) / sizeof(table[0]) && table[i] \
	 ? table[i] : "unknown")

POOL_API const char *pool_reason_name(int reason)
{
	return NAME(reason_names, reason);
}

POOL_API const char *pool_policy_name(int policy)
{
	if (policy < 0 || policy >= POOL_POLICY_COUNT)
		return "unknown";
	return teardown_name((enum pool_teardown)policy);
}

POOL_API const char *pool_fallback_name(int why)
{
	return NAME(fallback_names, why);
}

POOL_API const char *pool_event_name(int type)
{
	return NAME(event_names, type);
}
