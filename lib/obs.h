/*
 * Observability (issue 12): retirement reasons, timing histograms and the
 * event callback. Callers elsewhere in the library record through these
 * functions only; how and where the numbers are kept is obs.c's business.
 * Every function here may be called from any thread. obs_time takes no
 * lock and calls nothing, so it may be called with a shard lock held;
 * the others run the application's event callback, so they must be
 * called with NO lock held (the callback may call pool_stats*).
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

/* A peer-first close fell back (why: a POOL_FALLBACK_* code) after
 * ns of draining, to policy. Fires the event callback. */
void obs_fallback(struct pool *pool, struct pool_endpoint *ep, int why,
		  enum pool_teardown policy, uint64_t ns);
/* The public code of an internal fallback cause. */
int obs_fallback_code(enum fallback_why why);

/* ep is being forgotten (its shard lock held): its xstats join the
 * shard's, so pool-wide totals keep them. */
void obs_forget(struct shard *sh, struct pool_endpoint *ep);

/* Read side (obs.c): add ep's (or, with ep NULL, shard i's pool-wide)
 * numbers into out. Relaxed reads: a histogram's count is the sum of
 * its buckets, so it always matches them. */
void obs_read(const struct obs_data *d, pool_stats_ex_t *out);
void obs_read_xstats(const struct ep_xstats *x, pool_stats_ex_t *out);

/* One endpoint's pool_stats_ex, its shard lock held (stats.c). */
void stats_ex_locked(const struct pool_endpoint *ep, pool_stats_ex_t *ex);

/* The text format (metrics.c). */
int metrics_prometheus(struct pool *pool, char *buf, size_t len);

#endif
