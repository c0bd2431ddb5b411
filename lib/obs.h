/*
 * Observability (issue 12): retirement reasons, timing histograms and the
 * event callback. Callers elsewhere in the library record through these
 * functions only; how and where the numbers are kept is obs.c's business.
 * Every function here may be called with no lock held, from any thread.
 */
#ifndef TCPOOL_OBS_H
#define TCPOOL_OBS_H
#include "pool-internal.h"

/* The timing histograms (log2 buckets). */
enum obs_hist {
	HIST_ACQUIRE,  /* pool_get / pool_get_start..finish beyond the fast path */
	HIST_CONNECT,  /* connect, from the first attempt to connected */
	HIST_DRAIN,    /* peer-first: close request to EOF or fallback */
	HIST_LIFETIME, /* a connection's age at retirement */
	HIST_COUNT
};

/* Record a duration in ns for ep. */
void obs_time(struct pool_endpoint *ep, enum obs_hist h, uint64_t ns);

/* A connect ended: rc 0 (connected) or a POOL_E* code; ns: how long it
 * took. Feeds HIST_CONNECT on success and the event callback. */
void obs_connect(struct pool *pool, struct pool_endpoint *ep, int rc, uint64_t ns);

/* A connection goes, for why, closed by policy (TEARDOWN_CLOSE for one
 * dropped because its peer had closed it); created_ns: its birth, for
 * HIST_LIFETIME. Counts the retirement and fires the event callback. */
void obs_retire(struct pool *pool, struct pool_endpoint *ep,
		enum retire_reason why, enum pool_teardown policy,
		uint64_t created_ns);

/* The endpoint starts backing off for delay_ms after a failed connect. */
void obs_backoff(struct pool *pool, struct pool_endpoint *ep, uint32_t delay_ms);

#endif
