/*
 * Counting TIME_WAIT sockets toward an endpoint (pool_tw_count).
 *
 * One NETLINK_SOCK_DIAG dump per address family asks the kernel for the
 * TCP sockets in TIME_WAIT only. A small bytecode filter keeps the dump to
 * sockets whose local or remote port is the endpoint's; the addresses are
 * compared here, in user space, where a v4-mapped v6 address
 * (::ffff:a.b.c.d) is easy to fold into its v4 form.
 *
 * Every call opens its own netlink socket and closes it before returning:
 * no state is shared, so calls from many threads need no lock.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>

#include "pool-internal.h"
#include "twcount.h"

/* Addresses of one host name compared against; beyond this many, the
 * rest are dropped (and sockets toward them go uncounted). */
#define TW_MAX_ADDRS 16

/* Receive buffer: the kernel fills dump messages up to the size of our
 * last recvmsg(), capped at 32 KiB; a smaller buffer only costs calls. */
#define TW_RECV_BUF 32768

/* A dump that the kernel reports as interrupted is simply run again. */
#define TW_MAX_TRIES 3

/* Bound on each wait for the kernel's next batch of replies. */
static const struct timeval tw_recv_timeout = { .tv_sec = 10 };

/* An address as compared: v4-mapped v6 folded to AF_INET. */
struct tw_addr {
	int family;
	uint8_t bytes[16];
};

struct tw_query {
	uint16_t port;
	bool any_host;          /* "*" or an unspecified address */
	size_t naddrs;
	struct tw_addr addrs[TW_MAX_ADDRS];
	pool_tw_count_t count;  /* the family being dumped */
};

/* ---- addresses ---------------------------------------------------------- */

static void tw_addr_set(struct tw_addr *a, int family, const void *raw)
{
	static const uint8_t v4mapped[12] = { [10] = 0xff, [11] = 0xff };

	memset(a, 0, sizeof(*a));
	if (family == AF_INET6 && memcmp(raw, v4mapped, 12) == 0) {
		a->family = AF_INET;
		memcpy(a->bytes, (const uint8_t *)raw + 12, 4);
		return;
	}
	a->family = family;
	memcpy(a->bytes, raw, family == AF_INET ? 4 : 16);
}

static bool tw_addr_is_unspecified(const struct tw_addr *a)
{
	static const uint8_t zero[16];

	return memcmp(a->bytes, zero, sizeof(zero)) == 0;
}

static bool tw_addr_equal(const struct tw_addr *a, const struct tw_addr *b)
{
	return a->family == b->family &&
	       memcmp(a->bytes, b->bytes, sizeof(a->bytes)) == 0;
}

static bool tw_query_matches(const struct tw_query *q, const struct tw_addr *a)
{
	size_t i;

	if (q->any_host)
		return true;
	for (i = 0; i < q->naddrs; i++)
		if (tw_addr_equal(&q->addrs[i], a))
			return true;
	return false;
}

static void tw_query_add(struct tw_query *q, const struct sockaddr *sa)
{
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
	const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
	struct tw_addr a;
	size_t i;

	if (sa->sa_family == AF_INET)
		tw_addr_set(&a, AF_INET, &in->sin_addr);
	else if (sa->sa_family == AF_INET6)
		tw_addr_set(&a, AF_INET6, &in6->sin6_addr);
	else
		return;
	/* No TIME_WAIT socket has an unspecified address: "0.0.0.0:P" or
	 * "[::]:P" can only mean "any address", as a listener bound there. */
	if (tw_addr_is_unspecified(&a))
		q->any_host = true;
	for (i = 0; i < q->naddrs; i++)
		if (tw_addr_equal(&q->addrs[i], &a))
			return;
	if (q->naddrs < TW_MAX_ADDRS)
		q->addrs[q->naddrs++] = a;
}

static bool tw_query_wants_v4(const struct tw_query *q)
{
	size_t i;

	if (q->any_host)
		return true;
	for (i = 0; i < q->naddrs; i++)
		if (q->addrs[i].family == AF_INET)
			return true;
	return false;
}

static int tw_gai_error(int rc)
{
	if (rc == EAI_MEMORY)
		return POOL_ENOMEM;
	if (rc == EAI_SYSTEM)
		return POOL_ESYS;
	return POOL_ERESOLVE;
}

/* Every address of host: a numeric one as is, a name through the
 * resolver, all families (no AI_ADDRCONFIG: "localhost" must give ::1
 * even on a box without global v6). */
static int tw_query_resolve(struct tw_query *q, const char *host)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
	                          .ai_socktype = SOCK_STREAM,
	                          .ai_flags = AI_NUMERICHOST };
	struct addrinfo *res = NULL, *ai;
	int rc;

	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc == EAI_NONAME) {
		hints.ai_flags = 0;
		rc = getaddrinfo(host, NULL, &hints, &res);
	}
	if (rc != 0)
		return tw_gai_error(rc);
	for (ai = res; ai; ai = ai->ai_next)
		tw_query_add(q, ai->ai_addr);
	freeaddrinfo(res);
	return q->naddrs > 0 || q->any_host ? 0 : POOL_ERESOLVE;
}

/* ---- the netlink dump --------------------------------------------------- */

static void tw_count_add(uint32_t *n)
{
	if (*n < UINT32_MAX)
		(*n)++;
}

static uint32_t tw_sum(uint32_t a, uint32_t b)
{
	return a > UINT32_MAX - b ? UINT32_MAX : a + b;
}

static int tw_on_msg(const struct nlmsghdr *nlh, void *data)
{
	const struct inet_diag_msg *m = mnl_nlmsg_get_payload(nlh);
	struct tw_query *q = data;
	struct tw_addr src, dst;

	if (nlh->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
	    mnl_nlmsg_get_payload_len(nlh) < sizeof(*m))
		return MNL_CB_OK;
	if (m->idiag_state != TCP_TIME_WAIT)
		return MNL_CB_OK;
	if (m->idiag_family != AF_INET && m->idiag_family != AF_INET6)
		return MNL_CB_OK;
	tw_addr_set(&src, m->idiag_family, m->id.idiag_src);
	tw_addr_set(&dst, m->idiag_family, m->id.idiag_dst);
	/* Both tests, not either: on loopback one namespace holds both ends,
	 * and each end is its own TIME_WAIT socket. */
	if (ntohs(m->id.idiag_dport) == q->port && tw_query_matches(q, &dst))
		tw_count_add(&q->count.client);
	if (ntohs(m->id.idiag_sport) == q->port && tw_query_matches(q, &src))
		tw_count_add(&q->count.server);
	return MNL_CB_OK;
}

/* The kernel ends a dump with NLMSG_DONE carrying 0, or the error that
 * cut the dump short; libmnl's default handler ignores it, and a partial
 * count must not pass for a whole one. */
static int tw_on_done(const struct nlmsghdr *nlh, void *data)
{
	int err = 0;

	(void)data;
	if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(err))
		memcpy(&err, mnl_nlmsg_get_payload(nlh), sizeof(err));
	if (err < 0) {
		errno = -err;
		return MNL_CB_ERROR;
	}
	return MNL_CB_STOP;
}

/* A request refused before the dump began (a filter this kernel rejects,
 * a family it lacks). */
static int tw_on_error(const struct nlmsghdr *nlh, void *data)
{
	const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

	(void)data;
	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*e)) {
		errno = EBADMSG;
		return MNL_CB_ERROR;
	}
	if (e->error == 0)
		return MNL_CB_STOP;
	errno = e->error < 0 ? -e->error : e->error;
	return MNL_CB_ERROR;
}

/* "Data lost": the kernel does not send it today, but if it did, the
 * count would be short. */
static int tw_on_overrun(const struct nlmsghdr *nlh, void *data)
{
	(void)nlh;
	(void)data;
	errno = ENOBUFS;
	return MNL_CB_ERROR;
}

/* Handlers for the control messages. Once given this table, libmnl uses
 * it alone for every type below NLMSG_MIN_TYPE: a NULL entry means
 * "ignore", so NLMSG_ERROR must be handled here too. Never written; not
 * const only because mnl_cb_run2() takes it so. */
static mnl_cb_t tw_ctl_cb[NLMSG_MIN_TYPE] = {
	[NLMSG_ERROR] = tw_on_error,
	[NLMSG_DONE] = tw_on_done,
	[NLMSG_OVERRUN] = tw_on_overrun,
};

/*
 * "sport == P || dport == P" in inet_diag bytecode. The kernel's audit
 * follows the "yes" jumps only, so every op must be reached through them:
 * the OR is spelt the way iproute2's ss spells it, with a JMP op between
 * the two tests ("no" of an op means "jump that many bytes"; landing
 * exactly on the end accepts, landing past it rejects).
 *
 *   0: S_EQ  yes 8  no 12    sport != P: go to 12
 *   4:       port P
 *   8: JMP   yes 4  no 12    sport == P: jump to 20, the end: accept
 *  12: D_EQ  yes 8  no 12    dport == P: 20 accept, else 24 reject
 *  16:       port P
 */
struct tw_bytecode {
	struct inet_diag_bc_op op[5];
};

static void tw_bytecode_build(struct tw_bytecode *bc, uint16_t port)
{
	bc->op[0] = (struct inet_diag_bc_op){ INET_DIAG_BC_S_EQ, 8, 12 };
	bc->op[1] = (struct inet_diag_bc_op){ 0, 0, port };
	bc->op[2] = (struct inet_diag_bc_op){ INET_DIAG_BC_JMP, 4, 12 };
	bc->op[3] = (struct inet_diag_bc_op){ INET_DIAG_BC_D_EQ, 8, 12 };
	bc->op[4] = (struct inet_diag_bc_op){ 0, 0, port };
}

static int tw_dump_send(struct mnl_socket *nl, char *buf, int family,
                        uint16_t port, unsigned seq, bool filter)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct inet_diag_req_v2 *req;
	struct tw_bytecode bc;
	ssize_t n;

	nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = seq;
	req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
	req->sdiag_family = (uint8_t)family;
	req->sdiag_protocol = IPPROTO_TCP;
	req->idiag_states = 1u << TCP_TIME_WAIT;
	if (filter) {
		tw_bytecode_build(&bc, port);
		mnl_attr_put(nlh, INET_DIAG_REQ_BYTECODE, sizeof(bc), &bc);
	}
	n = mnl_socket_sendto(nl, nlh, nlh->nlmsg_len);
	return n < 0 ? -1 : 0;
}

/* Read the dump's replies until NLMSG_DONE; -1 with errno on failure
 * (the control handlers above turn an NLMSG_ERROR into errno). */
static int tw_dump_recv(struct mnl_socket *nl, char *buf, unsigned seq,
                        struct tw_query *q)
{
	unsigned portid = mnl_socket_get_portid(nl);
	ssize_t n;
	int rc;

	do {
		do {
			n = mnl_socket_recvfrom(nl, buf, TW_RECV_BUF);
		} while (n < 0 && errno == EINTR);
		if (n < 0)
			return -1;
		rc = mnl_cb_run2(buf, n, seq, portid, tw_on_msg, q,
		                 tw_ctl_cb, NLMSG_MIN_TYPE);
	} while (rc > MNL_CB_STOP);
	return rc < 0 ? -1 : 0;
}

/* One family's dump, its counts added to *total. */
static int tw_dump(struct mnl_socket *nl, char *buf, int family,
                   struct tw_query *q, pool_tw_count_t *total)
{
	static _Atomic unsigned seq_source = 1;
	bool filter = true;
	unsigned seq;
	int rc;

	for (;;) {
		seq = atomic_fetch_add(&seq_source, 1);
		q->count = (pool_tw_count_t){ 0, 0 };
		rc = tw_dump_send(nl, buf, family, q->port, seq, filter);
		if (rc == 0)
			rc = tw_dump_recv(nl, buf, seq, q);
		/* A kernel without the S_EQ/D_EQ ops (older 4.x) rejects
		 * the filter before dumping anything: count without it. */
		if (rc < 0 && errno == EINVAL && filter) {
			filter = false;
			continue;
		}
		break;
	}
	if (rc < 0)
		return -1;
	total->client = tw_sum(total->client, q->count.client);
	total->server = tw_sum(total->server, q->count.server);
	return 0;
}

static int tw_dump_all(struct tw_query *q, pool_tw_count_t *out)
{
	pool_tw_count_t total = { 0, 0 };
	struct mnl_socket *nl;
	char *buf;
	int rc = -1, saved;

	buf = malloc(TW_RECV_BUF);
	if (!buf)
		return POOL_ENOMEM;
	nl = mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC);
	if (!nl)
		goto out;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
		goto out;
	/* The kernel always answers; should it not, fail rather than hang
	 * the caller (a bench, a monitoring thread) forever. */
	if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO,
	               &tw_recv_timeout, sizeof(tw_recv_timeout)) < 0)
		goto out;
	/* v4 endpoints are reached through v4-mapped v6 sockets too (a v6
	 * socket connected to ::ffff:127.0.0.1), so AF_INET6 is always
	 * dumped; AF_INET only when a v4 address can match. */
	rc = tw_dump(nl, buf, AF_INET6, q, &total);
	if (rc == 0 && tw_query_wants_v4(q))
		rc = tw_dump(nl, buf, AF_INET, q, &total);
out:
	saved = errno;
	if (nl)
		mnl_socket_close(nl);
	free(buf);
	errno = saved;
	if (rc < 0)
		return POOL_ESYS;
	*out = total;
	return 0;
}

/* A dump the kernel flags as interrupted (libmnl reports NLM_F_DUMP_INTR
 * as EINTR) may have missed sockets: run the whole count again. */
static int tw_count_query(struct tw_query *q, pool_tw_count_t *out)
{
	int tries = 0, rc;

	do {
		rc = tw_dump_all(q, out);
	} while (rc == POOL_ESYS && errno == EINTR && ++tries < TW_MAX_TRIES);
	return rc;
}

int tw_count_port(uint16_t port, pool_tw_count_t *out)
{
	struct tw_query q = { .port = port, .any_host = true };

	if (!out || port == 0)
		return POOL_EINVAL;
	return tw_count_query(&q, out);
}

POOL_API int pool_tw_count(const char *endpoint, pool_tw_count_t *out)
{
	struct endpoint_addr addr;
	struct tw_query q = { 0 };
	int rc;

	if (!endpoint || !out)
		return POOL_EINVAL;
	if (endpoint_parse(endpoint, true, &addr, NULL, 0) != 0)
		return POOL_EENDPOINT;
	if (addr.kind != EP_TCP)
		return POOL_EENDPOINT;
	q.port = addr.port;
	q.any_host = addr.wildcard_host;
	if (!q.any_host) {
		rc = tw_query_resolve(&q, addr.host);
		if (rc != 0)
			return rc;
	}
	return tw_count_query(&q, out);
}
