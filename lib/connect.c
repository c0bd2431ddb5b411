/*
 * Sockets for an endpoint: made with its options, and connected one
 * non-blocking step at a time (connect_attempt, then connect_result once
 * writable); dial.c drives these steps, for pool_get, pool_get_start and
 * the refills alike. For the refill thread (struct connect_ctl): a cancel
 * descriptor, polled with the connect, lets another thread stop it at
 * once (pool_destroy must not wait for a refill's connect to time out),
 * and the socket is published while it connects, so that a child of
 * fork() can close its copy.
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
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config-keys.h"
#include "dial.h"
#include "pool-internal.h"

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

int connect_attempt(struct pool_endpoint *ep, const union dial_addr *a,
		    unsigned turn, const struct connect_ctl *ctl, int *fdp,
		    bool *setup_failed)
{
	struct tcp_plan plan = { .set = &ep->set, .turn = turn };
	int family = a->sa.sa_family, fd, r;

	fd = make_socket(family, SOCK_NONBLOCK, ctl,
			 family == AF_UNIX ? NULL : &plan, setup_failed);
	if (fd < 0)
		return -fd;
	do {
		r = connect(fd, &a->sa, dial_addr_len(a));
	} while (r == -1 && errno == EINTR);
	*fdp = fd;
	if (r == 0)
		return 0;
	r = errno;
	/* A unix socket whose listen backlog is full answers EAGAIN at once
	 * rather than "in progress": nothing to poll for, the caller tries
	 * again a little later (connect_again). */
	if (r == EINPROGRESS || (r == EAGAIN && family == AF_UNIX))
		return r;
	/* A failed connect leaves no TIME_WAIT; a plain close is right. */
	connect_ctl_close(ctl, fd);
	*fdp = -1;
	return r;
}

int connect_again(int fd, const union dial_addr *a)
{
	int r;

	do {
		r = connect(fd, &a->sa, dial_addr_len(a));
	} while (r == -1 && errno == EINTR);
	return r == 0 ? 0 : errno;
}

int connect_result(int fd)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		return errno;
	return soerr;
}

void connect_ready(int fd)
{
	/* Callers get a blocking socket, as after a plain connect(); the pool's
	 * own I/O uses MSG_DONTWAIT so it works whatever the flag is. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
}

int connect_code(int err)
{
	return connect_error(err);
}

static const struct connect_ctl ctl_none = { .cancel_fd = -1 };

/* ep's turn in the source_address round robin: one per connect (all the
 * addresses it tries share it), or per pool_socket socket. */
unsigned connect_turn(struct pool_endpoint *ep)
{
	if (!ep->set.source_address.n)
		return 0;
	return atomic_fetch_add_explicit(&ep->source_next, 1, memory_order_relaxed);
}

int socket_unconnected(struct pool_endpoint *ep, int family)
{
	struct tcp_plan plan;
	bool setup_failed;
	int fd;

	if (ep->addr.kind == EP_UNIX) {
		fd = make_socket(AF_UNIX, 0, &ctl_none, NULL, &setup_failed);
	} else {
		plan = (struct tcp_plan){ .set = &ep->set, .turn = connect_turn(ep) };
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
