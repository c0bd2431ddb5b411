/*
 * Connecting: resolve, then try every address in order, each connect
 * non-blocking and bounded by what is left of one deadline. For the
 * refill thread (struct connect_ctl): a cancel descriptor, polled with
 * the connect, lets another thread stop it at once (pool_destroy must
 * not wait for a refill's connect to time out; name resolution cannot be
 * cancelled), and the socket is published while it connects, so that a
 * child of fork() can close its copy.
 */
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

#include "pool-internal.h"

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
static int open_socket(int family, const struct connect_ctl *ctl)
{
	int fd;

	if (ctl->lock)
		pthread_mutex_lock(ctl->lock);
	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
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

/* One attempt on one address. Returns the fd or -errno. */
static int connect_one(int family, const struct sockaddr *sa, socklen_t salen,
		       uint64_t deadline_ns, const struct connect_ctl *ctl)
{
	int fd, r, err, one = 1;

	fd = open_socket(family, ctl);
	if (fd < 0)
		return -errno;
	if (family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
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
	int fd;

	memcpy(sun.sun_path, addr->path, strlen(addr->path) + 1);
	fd = connect_one(AF_UNIX, (struct sockaddr *)&sun, sizeof(sun), deadline_ns,
			 ctl);
	if (fd < 0) {
		errno = -fd;
		/* A missing socket file is the unix form of "nobody listens". */
		return fd == -ENOENT ? POOL_ECONNREFUSED : connect_error(-fd);
	}
	return fd;
}

static int connect_tcp(const struct endpoint_addr *addr, uint64_t deadline_ns,
		       const struct connect_ctl *ctl)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL, *ai;
	char port[8];
	int fd = POOL_ECONNECT, last_errno = 0, rc;

	snprintf(port, sizeof(port), "%u", addr->port);
	rc = getaddrinfo(addr->host, port, &hints, &res);
	if (rc != 0) {
		errno = rc == EAI_SYSTEM ? errno : ENOENT;
		return rc == EAI_MEMORY ? POOL_ENOMEM : POOL_ERESOLVE;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen,
				 deadline_ns, ctl);
		if (fd >= 0)
			goto out;
		last_errno = -fd;
		/* Out of descriptors or time, or cancelled: the next address
		 * cannot do better. */
		if (last_errno == EMFILE || last_errno == ENFILE ||
		    last_errno == ETIMEDOUT || last_errno == ECANCELED)
			break;
	}
	fd = connect_error(last_errno);
	errno = last_errno;
out:
	freeaddrinfo(res);
	return fd;
}

int socket_connect_ctl(const struct endpoint_addr *addr, uint64_t deadline_ns,
		       const struct connect_ctl *ctl)
{
	if (addr->kind == EP_UNIX)
		return connect_unix(addr, deadline_ns, ctl);
	return connect_tcp(addr, deadline_ns, ctl);
}

int socket_connect(const struct endpoint_addr *addr, uint64_t deadline_ns)
{
	static const struct connect_ctl none = { .cancel_fd = -1 };

	return socket_connect_ctl(addr, deadline_ns, &none);
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
