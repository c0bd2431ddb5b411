/* Connect backoff per endpoint (backoff.c). All under ep's shard lock. */
#ifndef TCPOOL_BACKOFF_H
#define TCPOOL_BACKOFF_H
#include "pool-internal.h"

/* Whether ep is backing off at now (now_ns): a dial must not start. A
 * true answer is counted as a rejection (xstats.backoff_rejects). */
bool backoff_active(struct pool_endpoint *ep, uint64_t now);
/* A connect sequence ended with rc (a POOL_E* code): when it is the
 * endpoint's failure and backoff is on, start a period; returns its
 * length in ms for obs_backoff (once unlocked), or 0 for none. */
uint32_t backoff_failed(struct pool_endpoint *ep, int rc, uint64_t now);
/* A connect succeeded: back to no delay. */
void backoff_succeeded(struct pool_endpoint *ep);
/* The outcomes that count as the endpoint failing (refused, timed out,
 * unreachable, not resolved); not ours (descriptors, memory, ports). */
bool backoff_counts(int rc);

#endif
