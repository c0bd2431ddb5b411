/*
 * uv-pool: tcpool from a libuv event loop, in one thread, with many
 * requests in flight: the non-blocking acquire (pool_get_start,
 * pool_pending_fd, pool_get_finish) and the request's own I/O, all
 * waited for with uv_poll_t, never by blocking the loop.
 *
 *   pool_get_start -> 0: a connection now
 *                  -> POOL_EINPROGRESS: poll pool_pending_fd's fd, then
 *                     pool_get_finish -> 0, or POOL_EINPROGRESS again
 *                     (ask pool_pending_fd again: the fd may change)
 *   then SET + GET (pipelined, non-blocking) on pool_conn_fd, the reply
 *   checked byte for byte, then pool_put.
 *
 * The pool is kept small (max_active below the requests in flight), so
 * most acquires wait for a slot through the pending fd, and connections
 * are retired after max_uses, so new connects go through it too.
 *
 * Each pool_get_start and pool_get_finish call is timed, minus the time
 * spent in the on_connect hook during the call (redis AUTH, when -a is
 * given: a hook may block, the pool cannot), and the longest is
 * printed: its wall time when it slept (blocked), else the lesser of
 * its wall and CPU time (see call_end). pool_put is timed too.
 *
 * Usage: uv-pool [options] memcached|redis HOST:PORT
 *   -c N              requests in flight (default 200)
 *   -n N              requests in all (default 10000)
 *   -m N              the pool's max_active (default 64)
 *   -u N              the pool's max_uses (default 50; 0: no cap)
 *   -a PASSWORD       redis: AUTH in the on_connect hook
 *   --max-call-us US  exit 1 when a call took longer than US
 *
 * Ends on one line: "10000 requests, 0 failed, client TIME_WAIT 0".
 * Exit status 0 when no request failed and no call broke the bound.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RUSAGE_THREAD */
#endif
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "tcpool.h"

#define STALL_MS 10000  /* no request finished for this long: give up */

enum proto { MEMCACHED, REDIS };

struct opts {
	enum proto proto;
	const char *endpoint;
	const char *password;
	int inflight;
	long total;
	int max_active, max_uses;
	long max_call_us;       /* 0: no bound */
};

struct watch;

/* One request slot; reused for the next request when one ends. */
struct req {
	struct app *app;
	struct req *next, *prev;  /* in its watch's list */
	struct req *rnext;        /* in on_poll's list of ready requests,
	                           * or in app.idle */
	struct watch *w;          /* NULL when it waits for nothing */
	int events;               /* UV_READABLE | UV_WRITABLE it waits for */
	int active;
	pool_pending_t *pend;
	pool_conn_t *conn;
	char out[256], want[256], in[256];
	size_t out_len, out_off, want_len, in_len;
};

/* libuv allows one active uv_poll_t per descriptor, and nothing in the
 * API promises that two acquires never share one: so one watch per fd,
 * with the list of requests waiting on it. */
struct watch {
	uv_poll_t h;
	int fd;
	int events;
	struct req *head;
};

struct app {
	const struct opts *o;
	uv_loop_t *loop;
	pool_t *pool;
	struct req *reqs;
	struct watch **watch;     /* by fd */
	int nwatch;
	uv_timer_t stall;
	uv_idle_t starter;        /* starts requests in free slots */
	struct req *idle;         /* the free slots, through rnext */
	long started, done, failed;
	long starts, finishes, inprogress;
	long slept[2];            /* calls with a voluntary context switch:
	                           * start/finish, put */
	long preempted;           /* start/finish with an involuntary one */
	uint64_t max_put_ns;      /* the longest pool_put's own time */
	uint64_t max_call_ns;     /* the longest call's own time */
	uint64_t max_call_cpu_ns; /* ... its CPU time */
	uint64_t max_wall_ns;     /* the longest wall time, preempted or not */
	int max_call_finish;      /* it was pool_get_finish */
	uint64_t last_done_ns;
	int first_error;          /* POOL_E* (< 0) or errno (> 0) */
	int stalled;
};

/* Time spent in on_connect by this thread: a call's own time excludes
 * it. Thread-local: the hook runs in whichever thread connects. */
static __thread uint64_t hook_ns, hook_cpu_ns;
static __thread long hook_sleeps;  /* the hook's voluntary switches */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- one uv_poll_t per fd ---------------------------------------------- */

static void watch_closed(uv_handle_t *h)
{
	free(h->data);
}

static void on_poll(uv_poll_t *h, int status, int events);

static int watch_grow(struct app *a, int fd)
{
	int n = a->nwatch ? a->nwatch : 64;
	struct watch **w;

	while (n <= fd)
		n *= 2;
	w = realloc(a->watch, (size_t)n * sizeof(*w));
	if (!w)
		return -1;
	memset(w + a->nwatch, 0, (size_t)(n - a->nwatch) * sizeof(*w));
	a->watch = w;
	a->nwatch = n;
	return 0;
}

/* Poll fd for the union of its requests' events. */
static int watch_update(struct watch *w)
{
	int ev = 0;

	for (struct req *r = w->head; r; r = r->next)
		ev |= r->events;
	if (ev == w->events)
		return 0;
	w->events = ev;
	return uv_poll_start(&w->h, ev, on_poll);
}

/* r waits for events on fd. 0 or -1. */
static int watch_add(struct req *r, int fd, int events)
{
	struct app *a = r->app;
	struct watch *w;

	if (fd >= a->nwatch && watch_grow(a, fd) != 0)
		return -1;
	w = a->watch[fd];
	if (!w) {
		w = calloc(1, sizeof(*w));
		if (!w || uv_poll_init(a->loop, &w->h, fd) != 0) {
			free(w);
			return -1;
		}
		w->fd = fd;
		w->h.data = w;
		a->watch[fd] = w;
	}
	r->w = w;
	r->events = events;
	r->prev = NULL;
	r->next = w->head;
	if (w->head)
		w->head->prev = r;
	w->head = r;
	return watch_update(w);
}

/* r no longer waits. The last request of a fd stops its watch now, not
 * later: the pool may close that fd as soon as we call it again, and
 * the number may come back for another socket. */
static void watch_del(struct req *r)
{
	struct watch *w = r->w;

	if (!w)
		return;
	if (r->prev)
		r->prev->next = r->next;
	else
		w->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->w = NULL;
	if (w->head) {
		watch_update(w);
		return;
	}
	r->app->watch[w->fd] = NULL;
	uv_close((uv_handle_t *)&w->h, watch_closed);
}

/* ---- the requests --------------------------------------------------------- */

static void req_begin(struct req *r);
static void req_io(struct req *r);

/* The request's bytes and the exact reply they must get: a SET and a GET
 * of a key of its own, pipelined. */
static void req_build(struct req *r, long id)
{
	char key[32], val[32];
	int kl = snprintf(key, sizeof(key), "uv-pool:%ld", id);
	int vl = snprintf(val, sizeof(val), "value-%ld", id * 7919);

	if (r->app->o->proto == MEMCACHED) {
		r->out_len = (size_t)snprintf(r->out, sizeof(r->out),
			"set %s 0 60 %d\r\n%s\r\nget %s\r\n", key, vl, val, key);
		r->want_len = (size_t)snprintf(r->want, sizeof(r->want),
			"STORED\r\nVALUE %s 0 %d\r\n%s\r\nEND\r\n", key, vl, val);
	} else {
		r->out_len = (size_t)snprintf(r->out, sizeof(r->out),
			"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nEX\r\n"
			"$2\r\n60\r\n*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n",
			kl, key, vl, val, kl, key);
		r->want_len = (size_t)snprintf(r->want, sizeof(r->want),
			"+OK\r\n$%d\r\n%s\r\n", vl, val);
	}
	r->out_off = r->in_len = 0;
}

/* A call's own time, the hooks' excluded. A call blocks when it sleeps
 * (a voluntary context switch: a lock, a poll, a connect or a lookup
 * waited for): then its wall time counts. A call that did not sleep
 * counts the smaller of its wall time and its thread's CPU time: its
 * wall time adds what was taken from it, by the scheduler (an
 * involuntary switch: another process ran) or by the hypervisor, which
 * deschedules a virtual CPU without the guest seeing a switch (measured
 * here: 305 us wall, 21 us CPU, no switch); and in this VM the thread
 * CPU clock now and then jumped past the wall clock (3.3 ms of CPU in a
 * call of at most 2.2 ms). A loaded machine should not count against
 * the pool. */
struct call_mark {
	uint64_t t0, cpu0, hook0, hook_cpu0;
	long hook_sleeps0;
	struct rusage ru;
};

static void call_begin(struct call_mark *m)
{
	getrusage(RUSAGE_THREAD, &m->ru);
	m->hook0 = hook_ns;
	m->hook_cpu0 = hook_cpu_ns;
	m->hook_sleeps0 = hook_sleeps;
	m->cpu0 = cpu_ns();
	m->t0 = now_ns();
}

enum call { CALL_START, CALL_FINISH, CALL_PUT };

static void call_end(struct app *a, const struct call_mark *m, enum call c)
{
	uint64_t wall = now_ns() - m->t0 - (hook_ns - m->hook0);
	uint64_t cpu = cpu_ns() - m->cpu0 - (hook_cpu_ns - m->hook_cpu0);
	struct rusage ru;
	uint64_t own = cpu < wall ? cpu : wall;
	int preempted;

	getrusage(RUSAGE_THREAD, &ru);
	preempted = ru.ru_nivcsw != m->ru.ru_nivcsw;
	if (ru.ru_nvcsw - m->ru.ru_nvcsw > hook_sleeps - m->hook_sleeps0) {
		a->slept[c == CALL_PUT]++;
		own = wall;
	}
	if (c == CALL_PUT) {
		/* pool_put is not under the bound; shown for what it costs */
		if (own > a->max_put_ns)
			a->max_put_ns = own;
		return;
	}
	a->preempted += preempted;
	if (wall > a->max_wall_ns)
		a->max_wall_ns = wall;
	if (own > a->max_call_ns) {
		a->max_call_ns = own;
		a->max_call_cpu_ns = cpu;
		a->max_call_finish = c == CALL_FINISH;
	}
}

static void note_error(struct app *a, int err)
{
	if (!a->first_error)
		a->first_error = err;
}

/* The run is over: close the loop's own handles, so that uv_run ends
 * once the last watch is closed. */
static void stall_stop(struct app *a)
{
	if (!uv_is_closing((uv_handle_t *)&a->stall)) {
		uv_close((uv_handle_t *)&a->stall, NULL);
		uv_close((uv_handle_t *)&a->starter, NULL);
	}
}

/* Start the next request in every free slot. From the loop, not from
 * req_end: a run of requests that fail at once (a server down) would
 * otherwise recurse once per request. An active uv_idle_t keeps the
 * loop from blocking while slots wait. */
static void on_starter(uv_idle_t *h)
{
	struct app *a = h->data;

	while (a->idle && a->started < a->o->total && !a->stalled) {
		struct req *r = a->idle;

		a->idle = r->rnext;
		req_begin(r);
	}
	a->idle = NULL;
	uv_idle_stop(h);
}

static void slot_free(struct req *r)
{
	struct app *a = r->app;

	r->rnext = a->idle;
	a->idle = r;
	uv_idle_start(&a->starter, on_starter);
}

/* The request is over: give the connection back, start the next one. */
static void req_end(struct req *r, pool_put_mode mode, int ok)
{
	struct app *a = r->app;

	watch_del(r);
	if (r->conn) {
		struct call_mark m;

		call_begin(&m);
		pool_put(a->pool, r->conn, mode);
		call_end(a, &m, CALL_PUT);
	}
	r->conn = NULL;
	r->active = 0;
	a->done++;
	a->failed += !ok;
	a->last_done_ns = now_ns();
	if (a->started < a->o->total && !a->stalled)
		slot_free(r);
	else if (a->done == a->o->total)
		stall_stop(a);
}

static void req_fail(struct req *r, int err)
{
	note_error(r->app, err);
	/* the bytes in flight are unknown: no close request on it */
	req_end(r, POOL_BROKEN, 0);
}

/* Wait for the pending acquire's fd, as pool_pending_fd says. */
static void req_wait(struct req *r)
{
	short events = 0;
	int fd = pool_pending_fd(r->pend, &events);
	int uvev = (events & POLLIN ? UV_READABLE : 0) |
	           (events & POLLOUT ? UV_WRITABLE : 0);

	if (fd < 0 || watch_add(r, fd, uvev) != 0) {
		watch_del(r);
		pool_get_cancel(r->app->pool, r->pend);
		r->pend = NULL;
		req_fail(r, fd < 0 ? fd : ENOMEM);
	}
}

/* pool_get_start or pool_get_finish said rc. */
static void req_acquired(struct req *r, int rc)
{
	if (rc == 0) {
		r->pend = NULL;
		req_io(r);
	} else if (rc == POOL_EINPROGRESS) {
		r->app->inprogress++;
		req_wait(r);
	} else {
		r->pend = NULL; /* freed by the call */
		req_fail(r, rc);
	}
}

static void req_begin(struct req *r)
{
	struct app *a = r->app;
	struct call_mark m;
	int rc;

	req_build(r, a->started++);
	r->active = 1;
	call_begin(&m);
	rc = pool_get_start(a->pool, a->o->endpoint, &r->conn, &r->pend);
	call_end(a, &m, CALL_START);
	a->starts++;
	req_acquired(r, rc);
}

static void req_finish(struct req *r)
{
	struct app *a = r->app;
	struct call_mark m;
	int rc;

	call_begin(&m);
	rc = pool_get_finish(a->pool, r->pend, &r->conn);
	call_end(a, &m, CALL_FINISH);
	a->finishes++;
	req_acquired(r, rc);
}

/* Send what is left, then read until the whole expected reply is in;
 * wait on the connection's fd whenever the socket says EAGAIN. */
static void req_io(struct req *r)
{
	int fd = pool_conn_fd(r->conn);
	ssize_t n;

	while (r->out_off < r->out_len) {
		n = send(fd, r->out + r->out_off, r->out_len - r->out_off,
		         MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			goto wait_out;
		if (n < 0)
			goto fail;
		r->out_off += (size_t)n;
	}
	while (r->in_len < r->want_len) {
		n = recv(fd, r->in + r->in_len, r->want_len - r->in_len,
		         MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			goto wait_in;
		if (n <= 0)
			goto fail;
		r->in_len += (size_t)n;
	}
	if (memcmp(r->in, r->want, r->want_len) != 0) {
		fprintf(stderr, "uv-pool: unexpected reply: %.*s\n",
		        (int)r->in_len, r->in);
		req_fail(r, EPROTO);
		return;
	}
	req_end(r, POOL_REUSE, 1);
	return;
wait_out:
	if (watch_add(r, fd, UV_WRITABLE) != 0)
		req_fail(r, ENOMEM);
	return;
wait_in:
	if (watch_add(r, fd, UV_READABLE) != 0)
		req_fail(r, ENOMEM);
	return;
fail:
	req_fail(r, n == 0 ? EPIPE : errno);
}

/* A fd is ready: every request waiting on it for these events goes on.
 * They are taken off the watch first, since going on may end the watch
 * (and the pool may close the fd) or add them back to it. */
static void on_poll(uv_poll_t *h, int status, int events)
{
	struct watch *w = h->data;
	struct req *ready = NULL, *r, *next;

	for (r = w->head; r; r = next) {
		next = r->next;
		if (status < 0 || (r->events & events)) {
			watch_del(r);
			r->rnext = ready;
			ready = r;
		}
	}
	for (r = ready; r; r = next) {
		next = r->rnext;
		if (r->pend)
			req_finish(r);
		else
			req_io(r);
	}
}

/* ---- the run ---------------------------------------------------------------- */

/* Nothing finished for STALL_MS: give every request up and let the loop
 * end (a server that stopped answering must not hang the example). */
static void on_stall_check(uv_timer_t *t)
{
	struct app *a = t->data;

	if (now_ns() - a->last_done_ns < (uint64_t)STALL_MS * 1000000u)
		return;
	fprintf(stderr, "uv-pool: no request finished for %d ms: giving up\n",
	        STALL_MS);
	a->stalled = 1;
	for (int i = 0; i < a->o->inflight; i++) {
		struct req *r = &a->reqs[i];

		if (!r->active)
			continue;
		watch_del(r);
		if (r->pend)
			pool_get_cancel(a->pool, r->pend);
		r->pend = NULL;
		req_fail(r, ETIMEDOUT);
	}
	stall_stop(a);
}

static int run_loop(struct app *a)
{
	int n = a->o->inflight < a->o->total ? a->o->inflight : (int)a->o->total;

	a->reqs = calloc((size_t)a->o->inflight, sizeof(*a->reqs));
	if (!a->reqs)
		return -1;
	uv_timer_init(a->loop, &a->stall);
	a->stall.data = a;
	uv_timer_start(&a->stall, on_stall_check, 1000, 1000);
	uv_idle_init(a->loop, &a->starter);
	a->starter.data = a;
	a->last_done_ns = now_ns();
	for (int i = n - 1; i >= 0; i--) {
		a->reqs[i].app = a;
		slot_free(&a->reqs[i]);
	}
	uv_run(a->loop, UV_RUN_DEFAULT);
	return 0;
}

/* ---- the pool ------------------------------------------------------------------ */

/* Wait up to 2 s for fd to be ready for events. */
static int wait_fd(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n;

	do
		n = poll(&p, 1, 2000);
	while (n < 0 && errno == EINTR);
	return n == 1 ? 0 : -1;
}

/* redis AUTH, blocking: a hook may block; the acquire calls do not
 * count the time it takes. */
static int redis_auth(int fd, const char *pw)
{
	char buf[320], in[64];
	int len = snprintf(buf, sizeof(buf), "*2\r\n$4\r\nAUTH\r\n$%zu\r\n%s\r\n",
	                   strlen(pw), pw);
	size_t got = 0;
	ssize_t n;

	if (len < 0 || (size_t)len >= sizeof(buf) || wait_fd(fd, POLLOUT) ||
	    send(fd, buf, (size_t)len, MSG_NOSIGNAL) != len)
		return -1;
	while (got < 5 && got < sizeof(in)) {
		if (wait_fd(fd, POLLIN))
			return -1;
		n = recv(fd, in + got, sizeof(in) - got, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	if (got != 5 || memcmp(in, "+OK\r\n", 5) != 0) {
		fprintf(stderr, "uv-pool: AUTH: %.*s\n", (int)got, in);
		return -1;
	}
	return 0;
}

static int on_connect(pool_conn_t *conn, void *ud)
{
	struct rusage ru0, ru1;
	uint64_t t0, c0;
	int rc;

	getrusage(RUSAGE_THREAD, &ru0);
	t0 = now_ns();
	c0 = cpu_ns();
	rc = redis_auth(pool_conn_fd(conn), ud);
	hook_ns += now_ns() - t0;
	hook_cpu_ns += cpu_ns() - c0;
	getrusage(RUSAGE_THREAD, &ru1);
	hook_sleeps += ru1.ru_nvcsw - ru0.ru_nvcsw;
	return rc;
}

static int set(pool_config_t *cfg, const char *key, const char *val)
{
	char err[256];

	if (pool_config_set(cfg, NULL, key, val, err, sizeof(err)) != 0) {
		fprintf(stderr, "uv-pool: %s = %s: %s\n", key, val, err);
		return -1;
	}
	return 0;
}

static int set_num(pool_config_t *cfg, const char *key, long v)
{
	char val[24];

	snprintf(val, sizeof(val), "%ld", v);
	return set(cfg, key, val);
}

/* A small pool, so that acquires wait for slots and connects happen,
 * retired peer-first: the server closes first and keeps the TIME_WAIT. */
static pool_t *make_pool(const struct opts *o)
{
	pool_config_t *cfg = pool_config_new();
	pool_hooks_t hooks = { .on_connect = on_connect,
	                       .ud = (void *)o->password };
	pool_t *pool = NULL;
	int bad = !cfg, rc;

	bad = bad || set_num(cfg, "max_active", o->max_active);
	bad = bad || set_num(cfg, "max_idle", o->max_active);
	bad = bad || set_num(cfg, "max_uses", o->max_uses);
	bad = bad || set_num(cfg, "acquire_timeout_ms", 5000);
	bad = bad || set(cfg, "teardown", "peer-first");
	bad = bad || set(cfg, "close_request", o->proto == MEMCACHED
	                 ? "\"quit\\r\\n\"" : "\"QUIT\\r\\n\"");
	if (!bad && o->password &&
	    pool_config_set_hooks(cfg, NULL, &hooks) != 0)
		bad = 1;
	if (!bad) {
		rc = pool_create(&pool, cfg);
		if (rc != 0)
			fprintf(stderr, "uv-pool: pool_create: %s\n",
			        pool_strerror(rc));
	}
	pool_config_free(cfg);
	return pool;
}

/* Grow the process's descriptor table now, while it has one thread:
 * growing it later, with the pool's threads running, waits for an RCU
 * grace period in the kernel (expand_fdtable: 10 to 20 ms here), inside
 * whichever call opened the descriptor that did not fit, a
 * pool_get_start among them. An acquire in progress holds a few
 * descriptors, a connection one. */
static void fd_table_reserve(const struct opts *o)
{
	struct rlimit rl;
	long want = (long)o->inflight * 4 + (long)o->max_active * 2 + 64;
	int fd;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)want > rl.rlim_cur)
		want = (long)rl.rlim_cur;
	fd = dup2(STDERR_FILENO, (int)want - 1);
	if (fd >= 0)
		close(fd);
}

/* ---- main ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f, "usage: uv-pool [-c INFLIGHT] [-n TOTAL] [-m MAX_ACTIVE] "
	        "[-u MAX_USES] [-a PASSWORD]\n"
	        "               [--max-call-us US] memcached|redis HOST:PORT\n");
}

static int num(const char *s, long lo, long hi, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	if (errno || end == s || *end || *out < lo || *out > hi) {
		fprintf(stderr, "uv-pool: not a number in [%ld, %ld]: '%s'\n",
		        lo, hi, s);
		return -1;
	}
	return 0;
}

static int parse_opt(struct opts *o, int c, const char *arg)
{
	long v = 0;

	/* max_uses 0 is "no cap"; every other number is at least 1 */
	if (c == '?' || (c != 'a' && num(arg, c == 'u' ? 0 : 1,
	                                 c == 'L' ? 60000000 : 1000000, &v)))
		return -1;
	switch (c) {
	case 'c': o->inflight = (int)v; break;
	case 'n': o->total = v; break;
	case 'm': o->max_active = (int)v; break;
	case 'u': o->max_uses = (int)v; break;
	case 'L': o->max_call_us = v; break;
	case 'a': o->password = arg; break;
	default: return -1;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longs[] = {
		{ "max-call-us", required_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	*o = (struct opts){ .inflight = 200, .total = 10000,
	                    .max_active = 64, .max_uses = 50 };
	while ((c = getopt_long(argc, argv, "c:n:m:u:a:", longs, NULL)) != -1)
		if (parse_opt(o, c, optarg) != 0)
			return -1;
	if (argc - optind != 2)
		return -1;
	if (strcmp(argv[optind], "memcached") == 0)
		o->proto = MEMCACHED;
	else if (strcmp(argv[optind], "redis") == 0)
		o->proto = REDIS;
	else
		return -1;
	o->endpoint = argv[optind + 1];
	if (o->password && o->proto != REDIS) {
		fprintf(stderr, "uv-pool: -a is for redis\n");
		return -1;
	}
	return 0;
}

static void report(struct app *a, const pool_stats_t *st, uint64_t ns)
{
	const struct opts *o = a->o;

	printf("uv-pool %s: %d in flight, max_active %d, max_uses %d: "
	       "%.0f requests/s\n", o->proto == MEMCACHED ? "memcached" : "redis",
	       o->inflight, o->max_active, o->max_uses,
	       ns ? (double)a->done * 1e9 / (double)ns : 0.0);
	printf("pool_get_start: %ld calls, %ld POOL_EINPROGRESS in all; "
	       "pool_get_finish: %ld calls\n", a->starts, a->inprogress,
	       a->finishes);
	printf("pool: %" PRIu64 " slot waits, %" PRIu64 " connects\n",
	       st->waits, st->connects);
	printf("longest call: %s, %.0f us (CPU %.0f us; on_connect hooks "
	       "excluded)\n", a->max_call_finish ? "pool_get_finish"
	       : "pool_get_start", (double)a->max_call_ns / 1e3,
	       (double)a->max_call_cpu_ns / 1e3);
	printf("calls that slept: %ld, judged on wall time; the others on "
	       "CPU time if less (%ld preempted; longest wall time %.0f us)\n",
	       a->slept[0], a->preempted, (double)a->max_wall_ns / 1e3);
	printf("longest pool_put: %.0f us; pool_put calls that slept: %ld\n",
	       (double)a->max_put_ns / 1e3, a->slept[1]);
	if (a->first_error)
		printf("first error: %s\n", a->first_error < 0
		       ? pool_strerror(a->first_error) : strerror(a->first_error));
}

int main(int argc, char **argv)
{
	struct opts o;
	struct app a = { .o = &o };
	pool_stats_t st = { 0 };
	pool_tw_count_t tw = { 0 };
	uint64_t t0;
	int rc, tw_ok;

	if (parse_args(argc, argv, &o) != 0) {
		usage(stderr);
		return 2;
	}
	fd_table_reserve(&o);
	a.loop = uv_default_loop();
	a.pool = make_pool(&o);
	if (!a.pool)
		return 1;
	t0 = now_ns();
	rc = run_loop(&a);
	t0 = now_ns() - t0;
	pool_stats(a.pool, o.endpoint, &st);
	/* retires the kept connections peer-first and waits for them */
	pool_destroy(a.pool);
	uv_loop_close(a.loop);
	free(a.reqs);
	free(a.watch);
	if (rc != 0) {
		fprintf(stderr, "uv-pool: out of memory\n");
		return 1;
	}
	tw_ok = pool_tw_count(o.endpoint, &tw) == 0;
	report(&a, &st, t0);
	rc = a.failed > 0 || a.done != o.total;
	if (o.max_call_us && a.max_call_ns > (uint64_t)o.max_call_us * 1000u) {
		printf("a call took longer than --max-call-us %ld\n",
		       o.max_call_us);
		rc = 1;
	}
	printf("%ld requests, %ld failed, client TIME_WAIT %s%u\n", a.done,
	       a.failed, tw_ok ? "" : "n/a ", tw.client);
	return rc;
}
