/*
 * Fail fast (connect_backoff_ms, connect_backoff_max_ms): after a failed
 * connect an endpoint backs off for min(max, base * 2^(failures - 1)),
 * jittered; meanwhile an acquire that would have to dial fails at once
 * with POOL_EBACKOFF (idle connections are still handed out), rather
 * than each caller spending a connect_timeout_ms on a server that is
 * down, or hammering one that is refusing. A success resets it.
 *
 * The jitter is "equal jitter": the delay is drawn from [d/2, d], so
 * clients that failed together do not come back together, and each
 * period is still at least as long as the one before.
 */
#include <stdlib.h>

#include "backoff.h"
#include "obs.h"

/* Shard lock held. */
bool backoff_active(struct pool_endpoint *ep, uint64_t now)
{
	if (!ep->backoff_until_ns || now >= ep->backoff_until_ns)
		return false;
	ep->xstats.backoff_rejects++;
	return true;
}

/* The delay before jitter, for the n-th failure in a row (n >= 1). */
static uint64_t backoff_base_ms(const struct pool_settings *s, uint32_t n)
{
	uint64_t d = s->connect_backoff_ms;
	uint64_t max = s->connect_backoff_max_ms;

	if (max && max < d)
		max = d;
	while (--n && (!max || d < max) && d < UINT32_MAX)
		d *= 2;
	if (max && d > max)
		d = max;
	/* With no cap (max 0) the doubling may pass what the delay's
	 * reporting (obs_backoff: 32-bit ms) holds. */
	return d > UINT32_MAX ? UINT32_MAX : d;
}

/* A per-thread generator: the jitter needs no quality, only no lock. */
static uint32_t jitter_rand(void)
{
	static __thread uint32_t x;

	if (!x)
		x = (uint32_t)now_ns() | 1u;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return x;
}

uint32_t backoff_failed(struct pool_endpoint *ep, int rc, uint64_t now)
{
	uint64_t d;

	if (!ep->set.connect_backoff_ms || !backoff_counts(rc))
		return 0;
	if (ep->backoff_failures < UINT32_MAX)
		ep->backoff_failures++;
	d = backoff_base_ms(&ep->set, ep->backoff_failures);
	d = d - d / 2 + (d / 2 ? jitter_rand() % (d / 2 + 1) : 0);
	if (!d)
		d = 1;
	ep->backoff_until_ns = now + MS_TO_NS(d);
	ep->xstats.backoffs++;
	return (uint32_t)d;
}

void backoff_succeeded(struct pool_endpoint *ep)
{
	ep->backoff_failures = 0;
	ep->backoff_until_ns = 0;
}

bool backoff_counts(int rc)
{
	return rc == POOL_ECONNREFUSED || rc == POOL_ETIMEDOUT ||
	       rc == POOL_ECONNECT || rc == POOL_ERESOLVE;
}
