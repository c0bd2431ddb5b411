/*
 * Connecting: resolve, then try every address in order, each connect
 * non-blocking and bounded by what is left of one deadline. For the
 * refill thread (struct connect_ctl): a cancel descriptor, polled with
 * the connect, lets another thread stop it at once (pool_destroy must
 * not wait for a refill's connect to time out; name resolution cannot be
 * cancelled), and the socket is published while it connects, so that a
 * child of fork() can close its copy.
 *
 * Before connect(), a TCP socket gets the endpoint's options (keepalive,
 * user timeout, port range) and, with source_address, the next source
 * address of its family, bound with IP_BIND_ADDRESS_NO_PORT: a plain
 * bind(ip, 0) would take a port for the source address alone, unique
 * across every destination, and run out of ports as many times sooner as
 * there are destinations; with the flag, connect() chooses the port for
 * the whole 4-tuple, so each source address brings a port range of its
 * own per destination (Envoy #44747; curl, nginx and HAProxy do the same).
 *
 * pool_socket's sockets are made by the same make_socket, with the same
 * options, and left for the caller to connect.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config-keys.h"
#include "pool-internal.h"
#include "resolve.h"

/* Older headers lack them; the values are the kernel's ABI. */
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51
#endif

int socket_probe_fake_errno;

/* What one TCP connect applies to each socket it tries. */
struct tcp_plan {
	const struct pool_settings *set;
	unsigned turn;             /* source_address round robin */
};

/* Map a connect errno to the code a caller can act on. */
static int connect_error(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return POOL_ECONNREFUSED;
	case ETIMEDOUT:
		return POOL_ETIMEDOUT;
	case EADDRNOTAVAIL:
		return POOL_EADDRNOTAVAIL;
	case EMFILE:
	case ENFILE:
		return POOL_EMFILE;
	case ENOMEM:
	case ENOBUFS:
		return POOL_ENOMEM;
	case ECANCELED:
		return POOL_ESHUTDOWN;
	default:
		return POOL_ECONNECT;
	}
}

/* Wait for a non-blocking connect to finish; returns 0 or an errno,
 * ECANCELED when cancel_fd (-1: none; poll skips a negative fd) became
 * readable first. */
static int connect_wait(int fd, uint64_t deadline_ns, int cancel_fd)
{
	struct pollfd p[2] = { { .fd = fd, .events = POLLOUT },
			       { .fd = cancel_fd, .events = POLLIN } };
	int r, soerr = 0;
	socklen_t len = sizeof(soerr);

	do {
		int left = deadline_ms(deadline_ns, now_ns());

		if (left == 0)
			return ETIMEDOUT;
		r = poll(p, 2, left);
	} while ((r == -1 && errno == EINTR) || r == 0);
	if (r < 0)
		return errno;
	if (p[1].revents)
		return ECANCELED;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		return errno;
	return soerr;
}

/* A unix socket whose listen backlog is full answers EAGAIN at once
 * rather than "in progress": there is nothing to poll for, so try again
 * every few milliseconds until the deadline. */
static int connect_unix_retry(int fd, const struct sockaddr *sa, socklen_t salen,
			      uint64_t deadline_ns, int cancel_fd)
{
	struct pollfd cancel = { .fd = cancel_fd, .events = POLLIN };
	int r;

	for (;;) {
		if (deadline_ms(deadline_ns, now_ns()) == 0)
			return ETIMEDOUT;
		if (poll(&cancel, 1, 2) > 0)
			return ECANCELED;
		do {
			r = connect(fd, sa, salen);
		} while (r == -1 && errno == EINTR);
		if (r == 0)
			return 0;
		if (errno != EAGAIN)
			return errno;
	}
}

/* A socket, published in ctl->inflight when ctl has one: under
 * ctl->lock, which the atfork handler holds across fork(), so a child
 * either sees the number or gets no copy of the socket. */
static int open_socket(int family, int flags, const struct connect_ctl *ctl)
{
	int fd;

	if (ctl->lock)
		pthread_mutex_lock(ctl->lock);
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
	if (fd >= 0 && ctl->lock)
		*ctl->inflight = fd;
	if (ctl->lock)
		pthread_mutex_unlock(ctl->lock);
	return fd;
}

/* Close a socket open_socket made, and unpublish it at the same time: a
 * child must never close the number once another open may reuse it. */
void connect_ctl_close(const struct connect_ctl *ctl, int fd)
{
	if (ctl->lock)
		pthread_mutex_lock(ctl->lock);
	close(fd);
	if (ctl->lock) {
		*ctl->inflight = -1;
		pthread_mutex_unlock(ctl->lock);
	}
}

/* The turn-th source address of family (turn modulo how many there
 * are); NULL when none is of that family: such addresses are skipped, and
 * with none left the kernel picks the source as without the key. */
static const union pool_sockaddr *pick_source(const struct pool_sources *src,
					      int family, unsigned turn)
{
	unsigned n = 0, i;

	for (i = 0; i < src->n; i++)
		n += src->addr[i].sa.sa_family == family;
	if (n == 0)
		return NULL;
	turn %= n;
	for (i = 0; i < src->n; i++)
		if (src->addr[i].sa.sa_family == family && turn-- == 0)
			break;
	return &src->addr[i];
}

static int setopt(int fd, int level, int name, int value)
{
	return setsockopt(fd, level, name, &value, sizeof(value)) < 0 ? errno : 0;
}

/* The kernel counts keepalive times in whole seconds. */
static int ms_to_s(uint32_t ms)
{
	return (int)((ms + 999u) / 1000u);
}

/* Keepalive and user timeout: how soon a dead peer is noticed. Returns 0
 * or an errno. */
static int dead_peer_options(int fd, const struct pool_settings *s)
{
	int err = 0;

	if (s->tcp_keepalive) {
		err = setopt(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
		if (!err)
			err = setopt(fd, IPPROTO_TCP, TCP_KEEPIDLE,
				     ms_to_s(s->tcp_keepalive_idle_ms));
		if (!err)
			err = setopt(fd, IPPROTO_TCP, TCP_KEEPINTVL,
				     ms_to_s(s->tcp_keepalive_interval_ms));
		if (!err)
			err = setopt(fd, IPPROTO_TCP, TCP_KEEPCNT,
				     (int)s->tcp_keepalive_count);
	}
	if (!err && s->tcp_user_timeout_ms)
		err = setopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT,
			     (int)s->tcp_user_timeout_ms);
	return err;
}

/* Bind fd to the source address src with no port: connect() picks the
 * port for the whole 4-tuple. Returns 0 or an errno. */
static int bind_source(int fd, const union pool_sockaddr *src)
{
	int err = setopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);

	if (!err && bind(fd, &src->sa, sockaddr_len(src)) < 0)
		err = errno;
	return err;
}

/* Everything a TCP socket gets before connect(). Returns 0 or an errno:
 * a configured option that does not apply fails the connect rather than
 * leave the socket without what the configuration promised. */
static int tcp_prepare(int fd, int family, const struct tcp_plan *plan)
{
	const struct pool_settings *s = plan->set;
	const union pool_sockaddr *src;
	uint32_t range = s->local_port_range;
	int err;

	setopt(fd, IPPROTO_TCP, TCP_NODELAY, 1); /* a hint: never fatal */
	err = dead_peer_options(fd, s);
	if (!err && range &&
	    setsockopt(fd, IPPROTO_IP, IP_LOCAL_PORT_RANGE, &range, sizeof(range)) < 0)
		err = errno;
	src = err ? NULL : pick_source(&s->source_address, family, plan->turn);
	return src ? bind_source(fd, src) : err;
}

/* The one place a socket for an endpoint is made, for the pool's
 * connects and for pool_socket alike: opened (flags: SOCK_NONBLOCK or 0)
 * and, for TCP (plan not NULL; NULL: unix), given every option the
 * endpoint's settings ask for. Returns the fd or -errno; *setup_failed
 * tells an option or source address that could not be applied from a
 * socket() that failed. */
static int make_socket(int family, int flags, const struct connect_ctl *ctl,
		       const struct tcp_plan *plan, bool *setup_failed)
{
	int fd, err;

	*setup_failed = false;
	fd = open_socket(family, flags, ctl);
	if (fd < 0)
		return -errno;
	err = plan ? tcp_prepare(fd, family, plan) : 0;
	if (err) {
		*setup_failed = true;
		connect_ctl_close(ctl, fd);
		return -err;
	}
	return fd;
}

/* One attempt on one address. Returns the fd or -errno; *setup_failed
 * tells a socket that could not be prepared from a connect that failed. */
static int connect_one(int family, const struct sockaddr *sa, socklen_t salen,
		       uint64_t deadline_ns, const struct connect_ctl *ctl,
		       const struct tcp_plan *plan, bool *setup_failed)
{
	int fd, r, err;

	fd = make_socket(family, SOCK_NONBLOCK, ctl, plan, setup_failed);
	if (fd < 0)
		return fd;
	do {
		r = connect(fd, sa, salen);
	} while (r == -1 && errno == EINTR);
	err = r == 0 ? 0 : errno;
	if (err == EAGAIN && family == AF_UNIX)
		err = connect_unix_retry(fd, sa, salen, deadline_ns, ctl->cancel_fd);
	else if (err == EINPROGRESS)
		err = connect_wait(fd, deadline_ns, ctl->cancel_fd);
	if (err) {
		/* A failed connect leaves no TIME_WAIT; a plain close is right. */
		connect_ctl_close(ctl, fd);
		return -err;
	}
	/* Callers get a blocking socket, as after a plain connect(); the pool's
	 * own I/O uses MSG_DONTWAIT so it works whatever the flag is. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

static int connect_unix(const struct endpoint_addr *addr, uint64_t deadline_ns,
			const struct connect_ctl *ctl)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	bool setup_failed;
	int fd;

	memcpy(sun.sun_path, addr->path, strlen(addr->path) + 1);
	fd = connect_one(AF_UNIX, (struct sockaddr *)&sun, sizeof(sun), deadline_ns,
			 ctl, NULL, &setup_failed);
	if (fd < 0) {
		errno = -fd;
		/* A missing socket file is the unix form of "nobody listens". */
		return fd == -ENOENT ? POOL_ECONNREFUSED : connect_error(-fd);
	}
	return fd;
}

/* TEMPORARY (dns branch), until the acquire path uses resolve.h
 * itself: ep's addresses through the resolver (cached, bounded by
 * resolve_timeout_ms), waiting here for its request's fd, or for
 * cancel_fd. */
static int resolve_wait(struct pool_endpoint *ep, const struct connect_ctl *ctl,
			struct addr_set **out)
{
	struct resolve_req *req;
	int rc = resolve_begin(ep->pool, ep, out, &req);

	while (rc == POOL_EINPROGRESS) {
		struct pollfd p[2] = { { .fd = resolve_req_fd(req), .events = POLLIN },
				       { .fd = ctl->cancel_fd, .events = POLLIN } };

		if (poll(p, 2, deadline_ms(resolve_req_deadline(req), now_ns())) > 0 &&
		    p[1].revents) {
			resolve_req_cancel(req);
			errno = ECANCELED;
			return POOL_ESHUTDOWN;
		}
		rc = resolve_req_end(req, out);
	}
	return rc;
}

static int connect_tcp(struct pool_endpoint *ep, uint64_t deadline_ns,
		       const struct connect_ctl *ctl, const struct tcp_plan *plan)
{
	bool setup_failed = false;
	struct addr_set *res = NULL;
	int fd = POOL_ECONNECT, last_errno = 0, rc;
	unsigned i;

	rc = resolve_wait(ep, ctl, &res);
	if (rc != 0)
		return rc;
	for (i = 0; i < res->n; i++) {
		fd = connect_one(res->addr[i].sa.sa_family, &res->addr[i].sa,
				 sockaddr_len(&res->addr[i]),
				 deadline_ns, ctl, plan, &setup_failed);
		if (fd >= 0)
			goto out;
		last_errno = -fd;
		/* A source address that is not local (EADDRNOTAVAIL from
		 * bind) is the configuration's fault, not a lack of ports:
		 * POOL_ECONNECT, and no other address does better. */
		if (setup_failed) {
			fd = POOL_ECONNECT;
			errno = last_errno;
			goto out;
		}
		/* Out of descriptors or time, or cancelled: the next address
		 * cannot do better. */
		if (last_errno == EMFILE || last_errno == ENFILE ||
		    last_errno == ETIMEDOUT || last_errno == ECANCELED)
			break;
	}
	fd = connect_error(last_errno);
	errno = last_errno;
out:
	addr_set_unref(res);
	return fd;
}

/* ep's options for one new socket: its turn in the source_address round
 * robin is taken here, one per socket (all the addresses a connect tries
 * share it). */
static struct tcp_plan plan_for(struct pool_endpoint *ep)
{
	struct tcp_plan plan = { .set = &ep->set };

	if (ep->set.source_address.n)
		plan.turn = atomic_fetch_add_explicit(&ep->source_next, 1,
						      memory_order_relaxed);
	return plan;
}

static const struct connect_ctl ctl_none = { .cancel_fd = -1 };

int socket_connect_ctl(struct pool_endpoint *ep, uint64_t deadline_ns,
		       const struct connect_ctl *ctl)
{
	struct tcp_plan plan;

	if (ep->addr.kind == EP_UNIX)
		return connect_unix(&ep->addr, deadline_ns, ctl);
	plan = plan_for(ep);
	return connect_tcp(ep, deadline_ns, ctl, &plan);
}

int socket_connect(struct pool_endpoint *ep, uint64_t deadline_ns)
{
	return socket_connect_ctl(ep, deadline_ns, &ctl_none);
}

int socket_unconnected(struct pool_endpoint *ep, int family)
{
	struct tcp_plan plan;
	bool setup_failed;
	int fd;

	if (ep->addr.kind == EP_UNIX) {
		fd = make_socket(AF_UNIX, 0, &ctl_none, NULL, &setup_failed);
	} else {
		plan = plan_for(ep);
		fd = make_socket(family, 0, &ctl_none, &plan, &setup_failed);
	}
	if (fd >= 0)
		return fd;
	errno = -fd;
	/* As socket_connect says it: an option or a source address that
	 * does not apply is the configuration's fault. */
	return setup_failed ? POOL_ECONNECT : connect_error(-fd);
}

/* Where a probe's message goes. */
struct probe_err {
	char *err;
	size_t errlen;
};

static int probe_port_range(const struct pool_settings *s, const char *where,
			    void *arg)
{
	const struct probe_err *pe = arg;
	uint32_t range = s->local_port_range;
	int fd, e = 0;

	if (!range)
		return 0;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0; /* cannot tell; the connect will say */
	if (setsockopt(fd, IPPROTO_IP, IP_LOCAL_PORT_RANGE, &range, sizeof(range)) < 0)
		e = errno;
	close(fd);
	if (socket_probe_fake_errno)
		e = socket_probe_fake_errno;
	if (!e)
		return 0;
	if (pe->err && pe->errlen)
		snprintf(pe->err, pe->errlen, "%s local_port_range: not supported by this "
			 "kernel: %s (IP_LOCAL_PORT_RANGE needs Linux 6.3 or later)",
			 where, strerror(e));
	return POOL_ENOTSUP;
}

int socket_check_support(const struct pool_config *cfg, char *err, size_t errlen)
{
	struct probe_err pe = { err, errlen };

	return config_each_settings(cfg, probe_port_range, &pe);
}

/* Bind each source address as a connect would, port left to connect(). */
static int probe_sources(const struct pool_settings *s, const char *where,
			 void *arg)
{
	const struct probe_err *pe = arg;
	char host[INET6_ADDRSTRLEN];
	uint32_t i;

	for (i = 0; i < s->source_address.n; i++) {
		const union pool_sockaddr *a = &s->source_address.addr[i];
		int family = a->sa.sa_family;
		int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int e;

		if (fd < 0)
			return 0; /* cannot tell */
		e = bind_source(fd, a);
		close(fd);
		if (!e)
			continue;
		inet_ntop(family, family == AF_INET ? (const void *)&a->in.sin_addr
						    : (const void *)&a->in6.sin6_addr,
			  host, sizeof(host));
		if (pe->err && pe->errlen)
			snprintf(pe->err, pe->errlen, "%s source_address: %s cannot be "
				 "bound: %s%s", where, host, strerror(e),
				 e == EADDRNOTAVAIL ? " (not an address of this host)"
						    : "");
		return POOL_ECONFIG;
	}
	return 0;
}

int socket_check_sources(const struct pool_config *cfg, char *err, size_t errlen)
{
	struct probe_err pe = { err, errlen };

	return config_each_settings(cfg, probe_sources, &pe);
}

bool socket_is_alive(int fd)
{
	char c;
	ssize_t r;

	do {
		r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	} while (r == -1 && errno == EINTR);
	/* Bytes waiting on an idle connection mean the protocol state is not
	 * what the next user expects: that counts as dead too. */
	return r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK);
}
