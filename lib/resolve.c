/*
 * PLACEHOLDER, replaced by the resolver thread (issue 11): resolves in
 * the caller's thread, so resolve_begin blocks for a name. It only keeps
 * the interface of resolve.h working while the acquire path is built.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolve.h"

struct resolve_req {
	int unused;
};

void addr_set_unref(struct addr_set *a)
{
	if (a && atomic_fetch_sub(&a->refs, 1) == 1)
		free(a);
}

static struct addr_set *set_from(const struct addrinfo *res)
{
	const struct addrinfo *ai;
	struct addr_set *a;
	unsigned n = 0;

	for (ai = res; ai; ai = ai->ai_next)
		if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
			n++;
	a = calloc(1, sizeof(*a) + n * sizeof(a->addr[0]));
	if (!a)
		return NULL;
	atomic_init(&a->refs, 1);
	a->resolved_ns = now_ns();
	for (ai = res; ai; ai = ai->ai_next)
		if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
			memcpy(&a->addr[a->n++], ai->ai_addr, ai->ai_addrlen);
	return a;
}

int resolve_begin(struct pool *pool, struct pool_endpoint *ep,
		  struct addr_set **out, struct resolve_req **req)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char port[8];
	int rc;

	(void)pool;
	*req = NULL;
	snprintf(port, sizeof(port), "%u", ep->addr.port);
	rc = getaddrinfo(ep->addr.host, port, &hints, &res);
	if (rc != 0) {
		errno = rc == EAI_SYSTEM ? errno : ENOENT;
		return rc == EAI_MEMORY ? POOL_ENOMEM : POOL_ERESOLVE;
	}
	*out = set_from(res);
	freeaddrinfo(res);
	return *out ? 0 : POOL_ENOMEM;
}

int resolve_req_fd(const struct resolve_req *req)
{
	(void)req;
	return -1;
}

uint64_t resolve_req_deadline(const struct resolve_req *req)
{
	(void)req;
	return 0;
}

int resolve_req_end(struct resolve_req *req, struct addr_set **out)
{
	(void)req;
	*out = NULL;
	return POOL_ERESOLVE;
}

void resolve_req_cancel(struct resolve_req *req)
{
	(void)req;
}

int resolve_init(struct pool *pool)
{
	(void)pool;
	return 0;
}

void resolve_fini(struct pool *pool)
{
	(void)pool;
}
