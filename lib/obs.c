/*
 * Observability: placeholder bodies, to be replaced by the real
 * recording (issue 12). They keep the call sites compiling meanwhile.
 */
#include "obs.h"

void obs_time(struct pool_endpoint *ep, enum obs_hist h, uint64_t ns)
{
	(void)ep, (void)h, (void)ns;
}

void obs_connect(struct pool *pool, struct pool_endpoint *ep, int rc, uint64_t ns)
{
	(void)pool, (void)ep, (void)rc, (void)ns;
}

void obs_retire(struct pool *pool, struct pool_endpoint *ep,
		enum retire_reason why, enum pool_teardown policy,
		uint64_t created_ns)
{
	(void)pool, (void)ep, (void)why, (void)policy, (void)created_ns;
}

void obs_backoff(struct pool *pool, struct pool_endpoint *ep, uint32_t delay_ms)
{
	(void)pool, (void)ep, (void)delay_ms;
}
