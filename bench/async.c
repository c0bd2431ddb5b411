/*
 * async: N requests in flight from one thread, through the non-blocking
 * acquire (pool_get_start, pool_pending_fd, pool_get_finish) and an
 * epoll loop, against the same N done by N threads with a blocking
 * pool_get each (pool_loop), for N in ASYNC_INFLIGHT, on the built-in
 * server. Both get the same pool: max_idle N and the runs' max_uses, so
 * connections are retired and opened again during the run, and that
 * connect progress goes through the pending fd too.
 *
 * A request's latency is the same in both: from the acquire's first call
 * to the end of pool_put. The async rows also keep the longest single
 * pool_get_start or pool_get_finish call (the calls must never block),
 * in their note.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

#define STALL_MS 10000  /* no request ended for this long: give up */

static const int inflight[ASYNC_NVALUES] = ASYNC_INFLIGHT;

struct afd;

/* One of the N request slots, reused request after request. */
struct areq {
	struct afd *w;            /* the fd it waits on, or NULL */
	struct areq *next, *prev; /* in w's list */
	struct areq *rnext;       /* in a list of ready ones, or of free
	                           * slots (aloop.idle) */
	uint32_t events;          /* EPOLLIN / EPOLLOUT it waits for */
	bool active;
	pool_pending_t *pend;
	pool_conn_t *conn;
	uint64_t t0;
	size_t sent, got;
	char in[64];
};

/* epoll takes each fd once, and the pool may give many acquires the
 * same fd (a slot's wake-up): one entry per fd, its waiters listed. */
struct afd {
	int fd;
	uint32_t events;          /* registered with epoll, 0: not */
	struct areq *head;
};

struct aloop {
	pool_t *pool;
	const char *endpoint;
	const struct proto *p;
	int ep;                   /* the epoll fd */
	struct afd **fds;         /* by fd number */
	int nfds;
	struct areq *reqs;
	struct areq *idle;        /* slots whose next request is to start */
	int n;                    /* requests in flight */
	uint64_t total, started, ended, ok, errors;
	uint64_t *lat, *put;      /* ns per successful request, of its put */
	uint64_t max_call_ns, last_end_ns;
	int first_error;          /* POOL_E* (< 0) or errno (> 0) */
};

/* ---- the fd table ---- */

static struct afd *afd_get(struct aloop *l, int fd)
{
	if (fd >= l->nfds) {
		int n = l->nfds ? l->nfds : 256;
		struct afd **t;

		while (n <= fd)
			n *= 2;
		t = realloc(l->fds, (size_t)n * sizeof(*t));
		if (!t)
			return NULL;
		memset(t + l->nfds, 0, (size_t)(n - l->nfds) * sizeof(*t));
		l->fds = t;
		l->nfds = n;
	}
	if (!l->fds[fd]) {
		l->fds[fd] = calloc(1, sizeof(struct afd));
		if (l->fds[fd])
			l->fds[fd]->fd = fd;
	}
	return l->fds[fd];
}

/* Register the union of the waiters' events; an fd nobody waits on is
 * dropped at once: the pool may close it on its next call, and the
 * number come back for another socket. 0 or -1. */
static int afd_sync(struct aloop *l, struct afd *w)
{
	struct epoll_event ev = { .data.fd = w->fd };
	int op;

	for (struct areq *r = w->head; r; r = r->next)
		ev.events |= r->events;
	if (!w->head) {
		/* DEL may fail: the pool may have closed the fd already */
		if (w->events)
			epoll_ctl(l->ep, EPOLL_CTL_DEL, w->fd, &ev);
		l->fds[w->fd] = NULL;
		free(w);
		return 0;
	}
	if (ev.events == w->events)
		return 0;
	op = w->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(l->ep, op, w->fd, &ev) != 0)
		return -1;
	w->events = ev.events;
	return 0;
}

static int wait_on(struct aloop *l, struct areq *r, int fd, uint32_t events)
{
	struct afd *w = afd_get(l, fd);

	if (!w)
		return -1;
	r->w = w;
	r->events = events;
	r->prev = NULL;
	r->next = w->head;
	if (w->head)
		w->head->prev = r;
	w->head = r;
	return afd_sync(l, w);
}

static void wait_off(struct aloop *l, struct areq *r)
{
	struct afd *w = r->w;

	if (!w)
		return;
	if (r->prev)
		r->prev->next = r->next;
	else
		w->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->w = NULL;
	afd_sync(l, w);
}

/* ---- one request ---- */

static void req_start(struct aloop *l, struct areq *r);

static void req_end(struct aloop *l, struct areq *r, int err)
{
	uint64_t t1 = bench_now_ns();

	wait_off(l, r);
	if (r->conn)
		pool_put(l->pool, r->conn, err ? POOL_BROKEN : POOL_REUSE);
	r->conn = NULL;
	r->active = false;
	l->ended++;
	l->last_end_ns = bench_now_ns();
	if (err) {
		l->errors++;
		if (!l->first_error)
			l->first_error = err;
	} else {
		l->put[l->ok] = l->last_end_ns - t1;
		l->lat[l->ok++] = l->last_end_ns - r->t0;
	}
	/* started by the loop, not from here: a run of requests that fail
	 * at once (a server down) would otherwise recurse once each */
	if (l->started < l->total) {
		r->rnext = l->idle;
		l->idle = r;
	}
}

/* Send the request, read one whole reply; wait on EAGAIN. */
static void req_io(struct aloop *l, struct areq *r)
{
	int fd = pool_conn_fd(r->conn);
	size_t len = strlen(l->p->request), want = 0;
	ssize_t n;

	while (r->sent < len) {
		n = send(fd, l->p->request + r->sent, len - r->sent,
		         MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (wait_on(l, r, fd, EPOLLOUT) != 0)
				req_end(l, r, ENOMEM);
			return;
		}
		if (n < 0) {
			req_end(l, r, errno);
			return;
		}
		r->sent += (size_t)n;
	}
	while (want == 0) {
		n = recv(fd, r->in + r->got, sizeof(r->in) - r->got, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (wait_on(l, r, fd, EPOLLIN) != 0)
				req_end(l, r, ENOMEM);
			return;
		}
		if (n <= 0) {
			req_end(l, r, n == 0 ? EPIPE : errno);
			return;
		}
		r->got += (size_t)n;
		want = l->p->reply_len(r->in, r->got);
		if (want == 0 && r->got == sizeof(r->in))
			break;
	}
	/* the built-in server's one reply, and nothing after it */
	req_end(l, r, want == 5 && r->got == 5 &&
	        memcmp(r->in, "PONG\n", 5) == 0 ? 0 : EPROTO);
}

static void call_timed(struct aloop *l, uint64_t t0)
{
	uint64_t d = bench_now_ns() - t0;

	if (d > l->max_call_ns)
		l->max_call_ns = d;
}

/* What pool_get_start or pool_get_finish returned. */
static void req_acquired(struct aloop *l, struct areq *r, int rc)
{
	short events = 0;
	int fd;

	if (rc == 0) {
		r->pend = NULL;
		req_io(l, r);
		return;
	}
	if (rc != POOL_EINPROGRESS) {
		r->pend = NULL;        /* freed by the call */
		req_end(l, r, rc);
		return;
	}
	/* ask again every time: the fd may change */
	fd = pool_pending_fd(r->pend, &events);
	if (fd < 0 || wait_on(l, r, fd, (events & POLLIN ? EPOLLIN : 0) |
	                      (events & POLLOUT ? EPOLLOUT : 0)) != 0) {
		wait_off(l, r);
		pool_get_cancel(l->pool, r->pend);
		r->pend = NULL;
		req_end(l, r, fd < 0 ? fd : ENOMEM);
	}
}

static void req_start(struct aloop *l, struct areq *r)
{
	int rc;

	l->started++;
	r->active = true;
	r->sent = r->got = 0;
	r->t0 = bench_now_ns();
	rc = pool_get_start(l->pool, l->endpoint, &r->conn, &r->pend);
	call_timed(l, r->t0);
	req_acquired(l, r, rc);
}

static void req_ready(struct aloop *l, struct areq *r)
{
	uint64_t t0;
	int rc;

	if (!r->pend) {
		req_io(l, r);
		return;
	}
	t0 = bench_now_ns();
	rc = pool_get_finish(l->pool, r->pend, &r->conn);
	call_timed(l, t0);
	req_acquired(l, r, rc);
}

/* ---- the loop ---- */

/* fd is ready: its waiters for these events go on, taken off it first
 * (going on may drop the fd, or wait on it again). */
static void fd_ready(struct aloop *l, int fd, uint32_t events)
{
	struct areq *ready = NULL, *r, *next;

	if (fd >= l->nfds || !l->fds[fd])
		return;            /* dropped earlier in this batch */
	for (r = l->fds[fd]->head; r; r = next) {
		next = r->next;
		if (events & (r->events | EPOLLERR | EPOLLHUP)) {
			r->rnext = ready;
			ready = r;
		}
	}
	for (r = ready; r; r = r->rnext)
		wait_off(l, r);
	for (r = ready; r; r = next) {
		next = r->rnext;
		req_ready(l, r);
	}
}

/* No request ended for STALL_MS: give the rest up. */
static void give_up(struct aloop *l)
{
	l->total = l->started;
	for (int i = 0; i < l->n; i++) {
		struct areq *r = &l->reqs[i];

		if (!r->active)
			continue;
		wait_off(l, r);
		if (r->pend)
			pool_get_cancel(l->pool, r->pend);
		r->pend = NULL;
		req_end(l, r, ETIMEDOUT);
	}
}

/* Start a request in every free slot. */
static void start_idle(struct aloop *l)
{
	while (l->idle && l->started < l->total) {
		struct areq *r = l->idle;

		l->idle = r->rnext;
		req_start(l, r);
	}
	l->idle = NULL;
}

static void aloop_run(struct aloop *l)
{
	struct epoll_event ev[256];

	for (int i = l->n - 1; i >= 0; i--) {
		l->reqs[i].rnext = l->idle;
		l->idle = &l->reqs[i];
	}
	while (l->ended < l->total) {
		int k;

		start_idle(l);
		/* The last requests may have ended within start_idle (an idle
		 * connection, a reply already in): then nothing is left to
		 * wait for, and epoll_wait would sit out its whole timeout
		 * (1 s added to the row, seen as 4500 req/s instead of 20000). */
		if (l->ended >= l->total)
			break;
		k = epoll_wait(l->ep, ev, 256, 1000);

		for (int i = 0; i < k; i++)
			fd_ready(l, ev[i].data.fd, ev[i].events);
		if (bench_now_ns() - l->last_end_ns >
		    (uint64_t)STALL_MS * 1000000u)
			give_up(l);
	}
}

/* ---- rows ---- */

struct async_call {
	pool_config_t *cfg;
	const char *endpoint;
	int n;
	uint64_t requests;
	bool threads;             /* the blocking pool_get baseline */
	struct loop_result res;
	double max_call_us;
};

static int async_loop(struct async_call *c, struct aloop *l)
{
	pool_stats_t st;
	uint64_t t0;
	int rc = pool_create(&l->pool, c->cfg);

	if (rc != 0) {
		fprintf(stderr, "tcpool-bench: async: pool_create: %s\n",
		        pool_strerror(rc));
		return -1;
	}
	t0 = bench_now_ns();
	l->last_end_ns = t0;
	aloop_run(l);
	c->res.seconds = (double)(bench_now_ns() - t0) / 1e9;
	c->res.ok = l->ok;
	c->res.errors = l->errors;
	c->res.first_error = l->first_error;
	c->res.p50_us = (double)percentile_ns(l->lat, l->ok, 50) / 1e3;
	c->res.p99_us = (double)percentile_ns(l->lat, l->ok, 99) / 1e3;
	c->res.put_p99_us = (double)percentile_ns(l->put, l->ok, 99) / 1e3;
	c->max_call_us = (double)l->max_call_ns / 1e3;
	if (pool_stats(l->pool, NULL, &st) == 0) {
		c->res.connects = st.connects;
		c->res.retired = st.retired_close + st.retired_abort +
		                 st.retired_peer_first + st.idle;
		c->res.fallbacks = st.peer_first_fallback;
	}
	pool_destroy(l->pool);
	return 0;
}

/* Grow the descriptor table for n requests in flight before the run:
 * growing it while threads run waits for an RCU grace period in the
 * kernel (expand_fdtable, 10-20 ms here), inside whichever call opened
 * the descriptor that did not fit, a pool_get_start among them. Once is
 * enough: the table never shrinks. An acquire in progress holds a few
 * descriptors, a connection one (or two while peer-first retires it). */
static void fd_reserve(int n)
{
	struct rlimit rl;
	long want = (long)n * 4 + 64;
	int fd;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)want > rl.rlim_cur)
		want = (long)rl.rlim_cur;
	fd = dup2(STDERR_FILENO, (int)want - 1);
	if (fd >= 0)
		close(fd);
}

/* In the client's namespace: one epoll thread, c->n in flight. */
static intptr_t async_body(void *arg)
{
	struct async_call *c = arg;
	struct aloop l = { .endpoint = c->endpoint, .n = c->n,
	                   .p = proto_for(SRV_BUILTIN),
	                   .total = c->requests };
	int rc = -1;

	fd_reserve(c->n);
	if (c->threads)
		return pool_loop(c->cfg, c->endpoint, l.p, c->n, c->requests,
		                 true, &c->res);
	l.ep = epoll_create1(EPOLL_CLOEXEC);
	l.reqs = calloc((size_t)c->n, sizeof(*l.reqs));
	l.lat = calloc(c->requests ? c->requests : 1, sizeof(*l.lat));
	l.put = calloc(c->requests ? c->requests : 1, sizeof(*l.put));
	if (l.ep >= 0 && l.reqs && l.lat && l.put)
		rc = async_loop(c, &l);
	if (l.ep >= 0)
		close(l.ep);
	for (int i = 0; i < l.nfds; i++)
		free(l.fds[i]);        /* none left unless the loop failed */
	free(l.fds);
	free(l.reqs);
	free(l.lat);
	free(l.put);
	return rc;
}

static pool_config_t *async_config(int n, unsigned max_uses)
{
	pool_config_t *cfg = pool_config_new();
	char num[24];
	int bad = !cfg;

	if (bad)
		return NULL;
	bad |= cfg_policy(cfg, POL_PEER_FIRST, SRV_BUILTIN);
	snprintf(num, sizeof(num), "%d", n);
	bad |= cfg_set(cfg, "max_idle", num);
	snprintf(num, sizeof(num), "%u", max_uses);
	bad |= cfg_set(cfg, "max_uses", num);
	bad |= cfg_set(cfg, "max_total", "0");
	bad |= cfg_set(cfg, "connect_timeout_ms", "5000");
	if (bad) {
		pool_config_free(cfg);
		return NULL;
	}
	return cfg;
}

static void async_fill(const struct async_call *c, unsigned max_uses,
                       struct row *row)
{
	const struct loop_result *r = &c->res;
	int len;

	snprintf(row->scenario, sizeof(row->scenario), "%s-%d",
	         c->threads ? "threads" : "async", c->n);
	snprintf(row->server, sizeof(row->server), "builtin");
	snprintf(row->policy, sizeof(row->policy), "peer-first");
	row->pooled = 1;
	row->threads = c->threads ? c->n : 1;
	row->requests = c->requests;
	row->seconds = r->seconds;
	row->req_per_s = r->seconds > 0 ? (double)r->ok / r->seconds : 0;
	row->p50_us = r->p50_us;
	row->p99_us = r->p99_us;
	row->put_p99_us = r->put_p99_us;
	row->connects = r->connects;
	row->retired = r->retired;
	row->failed = r->errors > 0 || r->connect_errors > 0;
	len = c->threads
	      ? snprintf(row->note, sizeof(row->note), "%d thread%s, pool_get; "
	                 "max_uses %u", c->n, c->n > 1 ? "s" : "", max_uses)
	      : snprintf(row->note, sizeof(row->note), "%d in flight, 1 epoll "
	                 "thread; max_uses %u; longest call %.0f us wall", c->n,
	                 max_uses, c->max_call_us);
	if (r->first_error && len > 0 && (size_t)len < sizeof(row->note))
		snprintf(row->note + len, sizeof(row->note) - (size_t)len,
		         "; first error: %s", r->first_error < 0
		         ? pool_strerror(r->first_error)
		         : strerror(r->first_error));
}

/* One row on a fresh server. 0 or -1. */
static int async_once(const struct async_opts *o, const struct netenv *e,
                      int n, bool threads, struct row *row)
{
	struct async_call c = { .n = n, .requests = o->requests,
	                        .threads = threads };
	struct server srv;
	int rc = -1;

	memset(row, 0, sizeof(*row));
	row->client_tw = row->server_tw = -1;
	if (server_start(&srv, SRV_BUILTIN, e) != 0)
		return -1;
	c.endpoint = srv.endpoint;
	c.cfg = async_config(n, o->max_uses);
	if (c.cfg && netenv_run(e, SIDE_CLIENT, async_body, &c) == 0) {
		async_fill(&c, o->max_uses, row);
		if (tw_settled(e, srv.endpoint, &row->client_tw,
		               &row->server_tw) != 0)
			row->failed = true;
		rc = 0;
	}
	pool_config_free(c.cfg);
	server_stop(&srv);
	return rc;
}

int async_run(const struct async_opts *o, const struct netenv *e,
              struct row *rows, int cap)
{
	int k = 0;

	for (int i = 0; i < ASYNC_NVALUES; i++) {
		for (int t = 0; t < 2 && k < cap; t++, k++) {
			struct row *r = &rows[k];

			progress("async: %d %s, %llu requests", inflight[i],
			         t ? "threads with pool_get" : "in flight from one "
			         "epoll thread", (unsigned long long)o->requests);
			if (async_once(o, e, inflight[i], t, r) != 0) {
				snprintf(r->scenario, sizeof(r->scenario), "%s-%d",
				         t ? "threads" : "async", inflight[i]);
				snprintf(r->server, sizeof(r->server), "builtin");
				snprintf(r->policy, sizeof(r->policy), "peer-first");
				r->pooled = 1;
				r->failed = true;
				snprintf(r->note, sizeof(r->note), "could not run");
			}
			progress("    %.0f req/s, p99 %.0f us, connects %llu%s",
			         r->req_per_s, r->p99_us,
			         (unsigned long long)r->connects,
			         r->failed ? "  FAILED" : "");
		}
	}
	return k;
}
