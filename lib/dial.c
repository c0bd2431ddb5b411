/*
 * One connect sequence, in non-blocking steps: resolve, then try the
 * addresses, bounded by connect_timeout_ms counted from the end of the
 * resolution (resolve_timeout_ms bounds that).
 *
 * Happy Eyeballs (RFC 8305 section 5): when a name has addresses of both
 * families, attempts alternate families, IPv6 first; the next one starts
 * happy_eyeballs_ms after the previous one, or as soon as it fails, while
 * the earlier ones go on; the first connected wins and the others are
 * aborted (SO_LINGER {1,0}): one that got ESTABLISHED meanwhile would
 * otherwise leave a TIME_WAIT behind on our side. With one family (or
 * happy_eyeballs_ms 0) the addresses are tried one after another, the
 * next when one fails, as getaddrinfo ordered them.
 *
 * The refill thread publishes its socket in flight for fork() (struct
 * connect_ctl: one descriptor), so its sequences keep one attempt in
 * flight at a time.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dial.h"

struct addr_set *dial_fake_addrs;

/* How often a unix connect refused for a full backlog is tried again. */
#define UNIX_RETRY_NS MS_TO_NS(2)

void dial_begin(struct dial *d, struct pool *pool, struct pool_endpoint *ep,
		const struct connect_ctl *ctl)
{
	memset(d, 0, sizeof(*d));
	d->pool = pool;
	d->ep = ep;
	d->ctl = ctl;
	d->epfd = -1;
	d->req_fd = -1;
	d->v6_turn = true;
	d->begin_ns = now_ns();
}

static void watch(struct dial *d, int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = d->ev_ptr };

	if (d->epfd >= 0)
		epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* Before fd is closed, or when it may no longer be ours (a resolver's fd
 * once its request ended): an fd number gone or reused is ENOENT here. */
static void unwatch(struct dial *d, int fd)
{
	if (d->epfd >= 0 && fd >= 0)
		epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL);
}

int dial_set_epfd(struct dial *d, int epfd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = d->ev_ptr };
	unsigned i;

	d->epfd = epfd;
	if (d->req && epoll_ctl(epfd, EPOLL_CTL_ADD, d->req_fd, &ev) < 0)
		return -1;
	ev.events = EPOLLOUT;
	for (i = 0; i < d->nt; i++)
		if (!d->t[i].again &&
		    epoll_ctl(epfd, EPOLL_CTL_ADD, d->t[i].fd, &ev) < 0)
			return -1;
	return 0;
}

void dial_close(struct dial *d, int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	unwatch(d, fd);
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	connect_ctl_close(d->ctl, fd);
}

/* Attempt i is over: its socket closed (failed, or lost the race). */
static void drop_try(struct dial *d, unsigned i)
{
	dial_close(d, d->t[i].fd);
	d->t[i] = d->t[--d->nt];
}

void dial_abort(struct dial *d)
{
	while (d->nt)
		drop_try(d, d->nt - 1);
	if (d->req) {
		unwatch(d, d->req_fd);
		resolve_req_cancel(d->req);
		d->req = NULL;
	}
	addr_set_unref(d->addrs);
	d->addrs = NULL;
}

/* The error a failed sequence returns, errno set; d emptied. */
static int dial_fail(struct dial *d, int err)
{
	bool setup = d->setup_failed;

	dial_abort(d);
	errno = err;
	/* A source address that is not local (EADDRNOTAVAIL from bind) is
	 * the configuration's fault, not a lack of ports. */
	if (setup)
		return POOL_ECONNECT;
	/* A missing socket file is the unix form of "nobody listens". */
	if (err == ENOENT && d->ep->addr.kind == EP_UNIX)
		return POOL_ECONNREFUSED;
	return connect_code(err);
}

/* Attempt i connected: the others lose. */
static int dial_win(struct dial *d, unsigned i, int *fdp)
{
	int fd = d->t[i].fd;

	unwatch(d, fd);
	d->t[i] = d->t[--d->nt];
	dial_abort(d);
	/* The refill's ctl publishes one socket: it is still this one. */
	connect_ready(fd);
	*fdp = fd;
	return 0;
}

static void addrs_ready(struct dial *d)
{
	unsigned i, n6 = 0;

	for (i = 0; i < d->addrs->n; i++)
		n6 += d->addrs->addr[i].sa.sa_family == AF_INET6;
	d->left = d->addrs->n;
	d->mixed = n6 && n6 < d->addrs->n && d->ep->set.happy_eyeballs_ms &&
		   !d->ctl->lock;
}

static int resolve_done(struct dial *d)
{
	d->resolved = true;
	d->deadline_ns = now_ns() + MS_TO_NS(d->ep->set.connect_timeout_ms);
	if (d->limit_ns && d->limit_ns < d->deadline_ns)
		d->deadline_ns = d->limit_ns;
	d->turn = connect_turn(d->ep);
	if (d->ep->addr.kind == EP_UNIX) {
		d->left = 1;
		return 0;
	}
	if (d->addrs->n == 0) {
		errno = ENOENT;
		dial_abort(d);
		return POOL_ERESOLVE;
	}
	addrs_ready(d);
	return 0;
}

/* The addresses: at once for unix, IP literals and cached names, else
 * once the resolver's fd says so. */
static int dial_resolve(struct dial *d)
{
	int rc, fd;

	if (d->ep->addr.kind == EP_UNIX)
		return resolve_done(d);
	if (dial_fake_addrs) {
		atomic_fetch_add(&dial_fake_addrs->refs, 1);
		d->addrs = dial_fake_addrs;
		return resolve_done(d);
	}
	if (!d->req) {
		rc = resolve_begin(d->pool, d->ep, &d->addrs, &d->req);
		if (rc == POOL_EINPROGRESS) {
			d->req_fd = resolve_req_fd(d->req);
			watch(d, d->req_fd, EPOLLIN);
		}
	} else {
		fd = d->req_fd;
		rc = resolve_req_end(d->req, &d->addrs);
		if (rc != POOL_EINPROGRESS) {
			d->req = NULL;
			unwatch(d, fd);
		}
	}
	if (rc == 0)
		return resolve_done(d);
	if (rc != POOL_EINPROGRESS)
		d->req = NULL;
	return rc;
}

/* The next address to try, alternating families when mixed. */
static bool next_addr(struct dial *d, union dial_addr *out)
{
	const struct addr_set *a = d->addrs;
	int fam[2] = { AF_INET6, AF_INET };
	unsigned k, pass, i;

	if (!d->left)
		return false;
	d->left--;
	if (d->ep->addr.kind == EP_UNIX) {
		memset(out, 0, sizeof(*out));
		out->un.sun_family = AF_UNIX;
		memcpy(out->un.sun_path, d->ep->addr.path, strlen(d->ep->addr.path) + 1);
		return true;
	}
	for (pass = 0; pass < 2; pass++) {
		k = (d->v6_turn ? 0 : 1) ^ pass;
		for (i = d->cur[k]; i < a->n; i++) {
			if (a->addr[i].sa.sa_family != fam[k])
				continue;
			d->cur[k] = i + 1;
			memcpy(out, &a->addr[i], sizeof(a->addr[i]));
			d->v6_turn = k == 1;
			return true;
		}
		d->cur[k] = a->n;
	}
	return false;
}

/* A fatal errno: no other address can do better. */
static bool fatal(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS;
}

/* Start one more attempt. 0: started (or failed, to go on with the next
 * address); 1: it connected at once, *fdp set; <0: the sequence failed. */
static int start_try(struct dial *d, int *fdp, uint64_t now)
{
	struct dial_try *t = &d->t[d->nt];
	int err;

	if (!next_addr(d, &t->addr))
		return d->nt ? 0 : dial_fail(d, d->last_err ? d->last_err : ECONNREFUSED);
	if (!d->first_ns)
		d->first_ns = now;
	d->next_ns = now + MS_TO_NS(d->ep->set.happy_eyeballs_ms);
	err = connect_attempt(d->ep, &t->addr, d->turn, d->ctl, &t->fd,
			      &d->setup_failed);
	if (err == 0 || err == EINPROGRESS || err == EAGAIN) {
		t->again = err == EAGAIN;
		d->retry_ns = now + UNIX_RETRY_NS;
		d->nt++;
		if (err == 0)
			return dial_win(d, d->nt - 1, fdp) == 0 ? 1 : -1;
		if (err == EINPROGRESS)
			watch(d, t->fd, EPOLLOUT);
		return 0;
	}
	d->last_err = err;
	return d->setup_failed || fatal(err) ? dial_fail(d, err) : 0;
}

/* Look at the attempts in flight: 1 with *fdp if one connected, 0 if
 * none did, <0 when the sequence failed meanwhile. */
static int check_tries(struct dial *d, int *fdp, uint64_t now)
{
	struct pollfd p[DIAL_MAX];
	unsigned i;
	int err;

	for (i = 0; i < d->nt; i++) {
		p[i].fd = d->t[i].again ? -1 : d->t[i].fd;
		p[i].events = POLLOUT;
		p[i].revents = 0;
	}
	if (d->nt && poll(p, d->nt, 0) < 0)
		return 0; /* EINTR: look again later */
	for (i = d->nt; i-- > 0;) {
		if (d->t[i].again)
			err = now >= d->retry_ns ? connect_again(d->t[i].fd, &d->t[i].addr)
						 : EAGAIN;
		else
			err = p[i].revents ? connect_result(d->t[i].fd) : EINPROGRESS;
		if (err == 0)
			return dial_win(d, i, fdp) == 0 ? 1 : -1;
		if (err == EAGAIN) {
			if (now >= d->retry_ns)
				d->retry_ns = now + UNIX_RETRY_NS;
			continue;
		}
		if (err == EINPROGRESS)
			continue;
		d->last_err = err;
		drop_try(d, i);
		/* The next one starts at once (RFC 8305: on failure). */
		d->next_ns = now;
	}
	return 0;
}

/* Whether another attempt starts now: none is in flight (the first, or
 * all failed), or the Happy Eyeballs delay passed. */
static bool start_due(const struct dial *d, uint64_t now)
{
	return d->nt == 0 ||
	       (d->mixed && d->nt < DIAL_MAX && d->left && now >= d->next_ns);
}

int dial_step(struct dial *d, int *fdp)
{
	uint64_t now;
	int rc;

	if (!d->resolved) {
		rc = dial_resolve(d);
		if (rc)
			return rc;
	}
	now = now_ns();
	/* Each turn starts one attempt or more, so this ends: a loopback
	 * connect is often done (or refused) by the time connect() says
	 * EINPROGRESS, and one more look saves a wait (and, for
	 * pool_maintain's refills, a round). Never blocks. */
	for (;;) {
		rc = check_tries(d, fdp, now);
		if (rc)
			return rc > 0 ? 0 : rc;
		if (now >= d->deadline_ns)
			return dial_fail(d, ETIMEDOUT);
		if (!start_due(d, now))
			return POOL_EINPROGRESS;
		while (start_due(d, now)) {
			rc = start_try(d, fdp, now);
			if (rc)
				return rc > 0 ? 0 : rc;
			if (!d->left)
				break;
		}
	}
}

uint64_t dial_wake_ns(const struct dial *d)
{
	uint64_t t;
	unsigned i;

	if (!d->resolved)
		return d->req ? resolve_req_deadline(d->req) : now_ns();
	t = d->deadline_ns;
	if (d->mixed && d->left && d->nt < DIAL_MAX && d->next_ns < t)
		t = d->next_ns;
	for (i = 0; i < d->nt; i++)
		if (d->t[i].again && d->retry_ns < t)
			t = d->retry_ns;
	return t;
}

bool dial_wait(struct dial *d, int cancel_fd)
{
	struct pollfd p[DIAL_MAX + 2];
	unsigned n = 0, i;
	int r;

	for (i = 0; i < d->nt; i++)
		if (!d->t[i].again)
			p[n++] = (struct pollfd){ .fd = d->t[i].fd, .events = POLLOUT };
	if (d->req)
		p[n++] = (struct pollfd){ .fd = d->req_fd, .events = POLLIN };
	p[n] = (struct pollfd){ .fd = cancel_fd, .events = POLLIN };
	r = poll(p, n + 1, deadline_ms(dial_wake_ns(d), now_ns()));
	return r > 0 && p[n].revents;
}

/* The blocking form, for the refill thread and pool_maintain's refills
 * (pool-internal.h): the same steps, waiting in between. */
int socket_connect_ctl(struct pool_endpoint *ep, uint64_t deadline_ns,
		       const struct connect_ctl *ctl)
{
	struct dial d;
	int fd = -1, rc;

	dial_begin(&d, ep->pool, ep, ctl);
	d.limit_ns = deadline_ns;
	for (;;) {
		rc = dial_step(&d, &fd);
		if (rc != POOL_EINPROGRESS)
			return rc ? rc : fd;
		if (dial_wait(&d, ctl->cancel_fd)) {
			dial_abort(&d);
			errno = ECANCELED;
			return POOL_ESHUTDOWN;
		}
	}
}

int socket_connect(struct pool_endpoint *ep, uint64_t deadline_ns)
{
	static const struct connect_ctl none = { .cancel_fd = -1 };

	return socket_connect_ctl(ep, deadline_ns, &none);
}
