/*
 * libmemcached's connection pool (libmemcachedutil) as the reference of
 * the overhead rows: the project's target is a tcpool get+put pair that
 * costs no more than a memcached_pool_fetch + memcached_pool_release
 * pair measured in the same run.
 *
 * The pool hands out memcached_st handles cloned from one with a single
 * server added (the built-in server's address). libmemcached connects a
 * handle lazily, on its first request, and fetch/release only pop and
 * push handles under the pool's mutex, so the timed pairs do no I/O:
 * strace -f of an overhead run shows no socket call from these threads.
 * Built without libmemcachedutil, the bench says the reference is
 * unavailable and runs without it.
 */
#include "config.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#ifdef HAVE_LIBMEMCACHEDUTIL

#include <libmemcached/memcached.h>
#include <libmemcached/util.h>

struct libmc_pool {
	memcached_st *master;
	memcached_pool_st *pool;
};

bool libmc_available(void)
{
	return true;
}

/* "ADDR:PORT" (the bench's endpoints are IPv4) into host and port. */
static int split_endpoint(const char *endpoint, char *host, size_t len,
                          in_port_t *port)
{
	const char *colon = strrchr(endpoint, ':');
	char *end;
	unsigned long p;

	if (!colon || (size_t)(colon - endpoint) >= len)
		return -1;
	p = strtoul(colon + 1, &end, 10);
	if (*end || p == 0 || p > 65535)
		return -1;
	memcpy(host, endpoint, (size_t)(colon - endpoint));
	host[colon - endpoint] = '\0';
	*port = (in_port_t)p;
	return 0;
}

static void fail(const struct libmc_pool *p, const char *what,
                 memcached_return_t rc)
{
	fprintf(stderr, "tcpool-bench: libmemcached: %s: %s\n", what,
	        memcached_strerror(p->master, rc));
}

struct libmc_pool *libmc_open(const char *endpoint, unsigned size)
{
	struct libmc_pool *p = calloc(1, sizeof(*p));
	char host[48];
	in_port_t port;
	memcached_return_t rc;

	if (!p || split_endpoint(endpoint, host, sizeof(host), &port) != 0)
		goto fail;
	p->master = memcached_create(NULL);
	if (!p->master)
		goto fail;
	rc = memcached_server_add(p->master, host, port);
	if (rc != MEMCACHED_SUCCESS) {
		fail(p, "memcached_server_add", rc);
		goto fail;
	}
	/* initial = max: every handle is cloned now, so the timed loop
	 * never clones, as tcpool's never connects */
	p->pool = memcached_pool_create(p->master, size, size);
	if (p->pool)
		return p;
	fprintf(stderr, "tcpool-bench: libmemcached: memcached_pool_create "
	        "failed\n");
fail:
	libmc_close(p);
	return NULL;
}

int libmc_pairs(struct libmc_pool *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		memcached_return_t rc;
		/* NULL: a zero timeout, so an empty pool (a bench bug, there
		 * are as many handles as threads) fails instead of waiting */
		memcached_st *mmc = memcached_pool_fetch(p->pool, NULL, &rc);

		if (!mmc) {
			fail(p, "memcached_pool_fetch", rc);
			return -1;
		}
		rc = memcached_pool_release(p->pool, mmc);
		if (rc != MEMCACHED_SUCCESS) {
			fail(p, "memcached_pool_release", rc);
			return -1;
		}
	}
	return 0;
}

void libmc_close(struct libmc_pool *p)
{
	if (!p)
		return;
	if (p->pool)
		memcached_pool_destroy(p->pool);
	if (p->master)
		memcached_free(p->master);
	free(p);
}

#else /* !HAVE_LIBMEMCACHEDUTIL */

bool libmc_available(void)
{
	return false;
}

struct libmc_pool *libmc_open(const char *endpoint, unsigned size)
{
	(void)endpoint;
	(void)size;
	return NULL;
}

int libmc_pairs(struct libmc_pool *p, uint64_t n)
{
	(void)p;
	(void)n;
	return -1;
}

void libmc_close(struct libmc_pool *p)
{
	(void)p;
}

#endif /* HAVE_LIBMEMCACHEDUTIL */
