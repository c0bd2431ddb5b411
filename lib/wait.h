#ifndef TCPOOL_WAIT_H
#define TCPOOL_WAIT_H
#include "pool-internal.h"

/* Wait, FIFO, for a connection or a slot on ep (see wait.c). */
int wait_for_slot(struct pool *pool, struct pool_endpoint *ep, bool need_total,
		  uint64_t deadline_ns, struct pool_conn **handed);
#endif
