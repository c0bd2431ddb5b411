/*
 * The per-thread connection cache (thread_cache): a thread's pool_put of
 * a healthy connection may keep it parked in a slot of that thread, for
 * the thread's next pool_get. Whatever is parked, the pool's guarantees
 * hold: a parked connection is idle in the stats, counts toward max_idle,
 * is taken by another thread (or a waiter) rather than a new connect, is
 * retired by the lifetimes, the idle watch, the peek, pool_flush and
 * pool_destroy by the endpoint's policy, survives its thread's exit, is
 * never the child's after fork(), and is never handed out for another
 * pool or endpoint. Most tests check a user's view: socket states,
 * TIME_WAIT counts, stats counters, getpeername, descriptor counts.
 * Threads that must keep a slot alive are "workers" that run one pool
 * call at a time on the main thread's command.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixtures.h"
#include "suites.h"

#define LONG_BYPASS "3600000" /* validate_idle_ms: the fast path applies */

/* ---- helpers ----------------------------------------------------------- */

static unsigned server_open(struct lineserver *ls)
{
	struct lineserver_stats st;

	lineserver_get_stats(ls, &st);
	return st.open;
}

static pool_stats_ex_t stats_ex_of(pool_t *pool, const char *endpoint)
{
	pool_stats_ex_t ex;

	ck_assert_int_eq(pool_stats_ex(pool, endpoint, &ex, sizeof(ex)), 0);
	return ex;
}

static uint64_t cache_gets_of(pool_t *pool, const char *endpoint)
{
	return stats_ex_of(pool, endpoint).cache_gets;
}

/* Retirements for reason by policy, and of every reason and policy. */
static uint64_t retired_as(pool_t *pool, const char *endpoint, int reason,
			   int policy, uint64_t *all)
{
	pool_stats_ex_t ex = stats_ex_of(pool, endpoint);
	int r, p;

	*all = 0;
	for (r = 0; r < POOL_REASON_COUNT; r++)
		for (p = 0; p < POOL_POLICY_COUNT; p++)
			*all += ex.retired[r][p];
	return ex.retired[reason][policy];
}

static int policy_code(const char *policy)
{
	if (strcmp(policy, "close") == 0)
		return POOL_POLICY_CLOSE;
	if (strcmp(policy, "abort") == 0)
		return POOL_POLICY_ABORT;
	return POOL_POLICY_PEER_FIRST;
}

/* A pool with teardown = policy (peer-first with "quit\n") and, when
 * key is not NULL, key = value. */
static pool_t *pool_policy(const char *policy, const char *key, const char *value)
{
	if (strcmp(policy, "peer-first") == 0)
		return pool_with("teardown", policy, "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "5000", key, value, NULL);
	return pool_with("teardown", policy, key, value, NULL);
}

/* The remote port of a connected IPv4 socket. */
static uint16_t fd_peer_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	ck_assert_int_eq(getpeername(fd, (struct sockaddr *)&sa, &len), 0);
	return ntohs(sa.sin_port);
}

/* The remote port, without failing the test (for worker threads). */
static uint16_t peer_port_quiet(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	if (getpeername(fd, (struct sockaddr *)&sa, &len) != 0)
		return 0;
	return ntohs(sa.sin_port);
}

static uint16_t local_port_quiet(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
		return 0;
	return ntohs(sa.sin_port);
}

/* CLOSE_WAIT sockets toward port, from /proc/net/tcp. */
static unsigned close_wait_toward(uint16_t port)
{
	FILE *f = fopen("/proc/net/tcp", "re");
	char line[512];
	unsigned n = 0;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned lport, rport, st;

		if (sscanf(line, " %*d: %*x:%x %*x:%x %x", &lport, &rport, &st) != 3)
			continue;
		if (st == 8 /* TCP_CLOSE_WAIT */ && rport == port)
			n++;
	}
	fclose(f);
	return n;
}

/* The server side of c has closed, or sent something unasked. */
static bool peer_closed_or_spoke(pool_conn_t *c)
{
	struct pollfd p = { .fd = pool_conn_fd(c), .events = POLLIN | POLLRDHUP };

	return poll(&p, 1, 0) > 0;
}

/* The value of a Prometheus series in the pool's text, -1 if absent. */
static double prom_series(pool_t *pool, const char *series)
{
	int n = pool_stats_format(pool, NULL, 0, POOL_FORMAT_PROMETHEUS);
	char *text, *p;
	double v = -1;
	size_t len = strlen(series);

	ck_assert_int_gt(n, 0);
	text = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(text);
	ck_assert_int_eq(pool_stats_format(pool, text, (size_t)n + 1,
					   POOL_FORMAT_PROMETHEUS), n);
	for (p = text; (p = strstr(p, series)) != NULL; p += len)
		if ((p == text || p[-1] == '\n') && p[len] == ' ') {
			v = strtod(p + len + 1, NULL);
			break;
		}
	free(text);
	return v;
}

/* One get/ping/put on the calling thread. */
static void get_ping_put(pool_t *pool, const char *ep)
{
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
}

/* ---- workers: threads that hold their slot while the test looks ------ */

enum worker_cmd { W_GET, W_PUT, W_GETPUT, W_EXIT };

struct worker {
	pthread_t t;
	sem_t go, done;
	enum worker_cmd cmd;
	pool_t *pool;       /* set by the main thread between commands */
	const char *ep;
	pool_conn_t *c;     /* W_GET's connection, until W_PUT */
	/* results of the last get */
	int rc;
	int reused;
	bool pong;
	uint16_t local_port, peer_port;
	long long took_ms;
};

static void worker_get(struct worker *w)
{
	long long t0 = mono_ms();

	w->c = NULL;
	w->rc = pool_get(w->pool, w->ep, &w->c);
	w->took_ms = mono_ms() - t0;
	if (w->rc != 0) {
		w->reused = -1;
		w->pong = false;
		w->local_port = w->peer_port = 0;
		return;
	}
	w->reused = pool_conn_reused(w->c);
	w->local_port = local_port_quiet(pool_conn_fd(w->c));
	w->peer_port = peer_port_quiet(pool_conn_fd(w->c));
	w->pong = line_roundtrip(pool_conn_fd(w->c), "PING", "PONG");
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (;;) {
		sem_wait(&w->go);
		switch (w->cmd) {
		case W_GET:
			worker_get(w);
			break;
		case W_PUT:
			if (w->c)
				pool_put(w->pool, w->c, POOL_REUSE);
			w->c = NULL;
			break;
		case W_GETPUT:
			worker_get(w);
			if (w->rc == 0)
				pool_put(w->pool, w->c, POOL_REUSE);
			w->c = NULL;
			break;
		case W_EXIT:
			sem_post(&w->done);
			return NULL;
		}
		sem_post(&w->done);
	}
}

/* Workers started and not stopped: a test that fails (longjmp under
 * CK_FORK=no) leaves them, and the teardown stops them, so that the next
 * test does not share a process with threads blocked on its memory. */
static struct worker *live[8];

static void live_add(struct worker *w)
{
	size_t i;

	for (i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (!live[i]) {
			live[i] = w;
			return;
		}
	ck_abort_msg("more than 8 workers");
}

static void live_remove(struct worker *w)
{
	size_t i;

	for (i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (live[i] == w)
			live[i] = NULL;
}

static void worker_start(struct worker *w, pool_t *pool, const char *ep)
{
	memset(w, 0, sizeof(*w));
	w->pool = pool;
	w->ep = ep;
	ck_assert_int_eq(sem_init(&w->go, 0, 0), 0);
	ck_assert_int_eq(sem_init(&w->done, 0, 0), 0);
	ck_assert_int_eq(pthread_create(&w->t, NULL, worker_main, w), 0);
	live_add(w);
}

static void worker_send(struct worker *w, enum worker_cmd cmd)
{
	w->cmd = cmd;
	sem_post(&w->go);
}

static void worker_wait(struct worker *w)
{
	sem_wait(&w->done);
}

static void worker_do(struct worker *w, enum worker_cmd cmd)
{
	worker_send(w, cmd);
	worker_wait(w);
}

/* A get that must have worked, and answered PING. */
static void worker_do_ok(struct worker *w, enum worker_cmd cmd)
{
	worker_do(w, cmd);
	ck_assert_msg(w->rc == 0, "worker's pool_get: %s", pool_strerror(w->rc));
	ck_assert_msg(w->pong, "worker's connection did not answer PING");
}

/* The thread exits (its slot, if any, goes with it). */
static void worker_stop(struct worker *w)
{
	live_remove(w);
	worker_do(w, W_EXIT);
	pthread_join(w->t, NULL);
	sem_destroy(&w->go);
	sem_destroy(&w->done);
}

/* ---- stats ------------------------------------------------------------- */

/* A parked connection is idle, not in use, in the thread's own stats
 * view and in another thread's; gets and reuses stay exact. */
START_TEST(parked_counts_as_idle)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", NULL);
	static struct worker w; /* outlives a failed test (CK_FORK=no) */
	pool_stats_t st;
	int i;

	for (i = 0; i < 20; i++) {
		pool_conn_t *c;

		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		st = stats_of(pool, ep);
		ck_assert_uint_eq(st.in_use, 1);
		ck_assert_uint_eq(st.idle, 0);
		ping(c);
		pool_put(pool, c, POOL_REUSE);
		st = stats_of(pool, ep);
		ck_assert_uint_eq(st.in_use, 0);
		ck_assert_uint_eq(st.idle, 1);
		ck_assert_uint_eq(st.gets, (uint64_t)i + 1);
		ck_assert_uint_eq(st.reuses, (uint64_t)i);
	}
	/* Parked in another (living) thread's slot: idle too. */
	worker_start(&w, pool, ep);
	worker_do_ok(&w, W_GETPUT);
	ck_assert_int_eq(w.reused, 1);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.in_use, 0);
	ck_assert_uint_eq(st.idle, 1);
	ck_assert_uint_eq(st.gets, 21);
	ck_assert_uint_eq(st.reuses, 20);
	ck_assert_uint_eq(st.connects, 1);
	st = stats_of(pool, NULL);
	ck_assert_uint_eq(st.idle, 1);
	ck_assert_uint_eq(st.gets, 21);
	ck_assert_uint_eq(st.connects, st.closed + st.idle + st.in_use);
	worker_stop(&w);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* max_idle is a hard cap with idle_shrink_ms = 0, parked connections
 * included: four threads each put one back (each could park its own),
 * two stay, two are retired at once. */
START_TEST(max_idle_counts_parked)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_idle", "2", "idle_shrink_ms", "0",
				 "teardown", "abort", NULL);
	static struct worker w[4]; /* outlives a failed test (CK_FORK=no) */
	pool_stats_t st;
	int i;

	for (i = 0; i < 4; i++) {
		worker_start(&w[i], pool, ep);
		worker_do_ok(&w[i], W_GET);
	}
	ck_assert_uint_eq(stats_of(pool, ep).in_use, 4);
	for (i = 0; i < 4; i++)
		worker_do(&w[i], W_PUT);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.idle, 2);
	ck_assert_uint_eq(st.in_use, 0);
	ck_assert_uint_eq(st.retired_abort, 2);
	ck_assert_uint_eq(st.closed, 2);
	wait_for(server_open(ls) == 2, 2000);
	/* The main thread's own put counts the same. */
	get_ping_put(pool, ep);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 2);
	for (i = 0; i < 4; i++)
		worker_stop(&w[i]);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.idle, 2);
	ck_assert_uint_eq(st.connects, 4);
	ck_assert_uint_eq(server_open(ls), 2);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* With idle_shrink_ms, the surplus over max_idle waits that long, and
 * then goes, the parked connections counted: four threads each put one
 * back (the first two may park, the others join the idle list), and
 * the shrink leaves two, for good. */
START_TEST(max_idle_shrink_counts_parked)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_idle", "2", "idle_shrink_ms", "100",
				 "teardown", "abort", NULL);
	static struct worker w[4]; /* outlives a failed test (CK_FORK=no) */
	pool_stats_t st;
	long long t0;
	uint64_t all;
	int i;

	for (i = 0; i < 4; i++) {
		worker_start(&w[i], pool, ep);
		worker_do_ok(&w[i], W_GET);
	}
	for (i = 0; i < 4; i++)
		worker_do(&w[i], W_PUT);
	ck_assert_uint_le(stats_of(pool, ep).idle, 4);
	/* Two periods (half the surplus each, rounded up), and slack. */
	t0 = mono_ms();
	while (stats_of(pool, ep).idle > 2 && mono_ms() - t0 < 3000)
		usleep(5000);
	st = stats_of(pool, ep);
	ck_assert_msg(st.idle == 2, "idle %u, max_idle 2, %lld ms after the puts "
		      "(idle_shrink_ms 100)", st.idle, mono_ms() - t0);
	ck_assert_uint_eq(retired_as(pool, ep, POOL_REASON_SURPLUS, POOL_POLICY_ABORT,
				     &all), 2);
	ck_assert_uint_eq(all, 2);
	wait_for(server_open(ls) == 2, 2000);
	/* Another shrink period: nothing more goes. */
	usleep(300 * 1000);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.idle, 2);
	ck_assert_uint_eq(st.closed, 2);
	/* The two left are the workers' to take again, without a connect. */
	for (i = 0; i < 4; i++)
		worker_do_ok(&w[i], W_GETPUT);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 4);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 2);
	for (i = 0; i < 4; i++)
		worker_stop(&w[i]);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 2);
	ck_assert_uint_eq(server_open(ls), 2);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- other threads, waiters -------------------------------------------- */

/* The only idle connection is parked in another thread's slot: a
 * pool_get elsewhere takes it, and connects nothing. Both ways. */
START_TEST(other_thread_takes_parked)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", NULL);
	struct lineserver_stats ss;
	static struct worker w; /* outlives a failed test (CK_FORK=no) */
	pool_conn_t *c;
	uint16_t port;

	worker_start(&w, pool, ep);
	worker_do_ok(&w, W_GETPUT);
	ck_assert_int_eq(w.reused, 0);
	port = w.local_port;
	/* w lives on, its connection parked (or idle). */
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 1);
	ck_assert_uint_eq(fd_local_port(pool_conn_fd(c)), port);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	/* Now parked with the main thread: the worker takes it back. */
	worker_do_ok(&w, W_GETPUT);
	ck_assert_int_eq(w.reused, 1);
	ck_assert_uint_eq(w.local_port, port);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 1);
	ck_assert_uint_eq(stats_of(pool, ep).reuses, 2);
	lineserver_get_stats(ls, &ss);
	ck_assert_uint_eq(ss.accepted, 1);
	worker_stop(&w);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* max_active = 1: thread A gets and puts (its connection parked with A,
 * A still alive); thread B's pool_get succeeds at once, with it. */
START_TEST(max_active_parked_elsewhere_no_wait)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_active", "1", "acquire_timeout_ms", "5000",
				 "teardown", "abort", NULL);
	static struct worker a; /* outlives a failed test (CK_FORK=no) */
	pool_conn_t *c;
	long long t0, took;
	int rc;

	worker_start(&a, pool, ep);
	worker_do_ok(&a, W_GETPUT);
	t0 = mono_ms();
	rc = pool_get(pool, ep, &c);
	took = mono_ms() - t0;
	ck_assert_msg(rc == 0, "pool_get: %s after %lld ms", pool_strerror(rc), took);
	/* A functional bound (5000 ms would be the timeout), not a speed. */
	ck_assert_msg(took < 2500, "pool_get waited %lld ms", took);
	ck_assert_int_eq(pool_conn_reused(c), 1);
	ck_assert_uint_eq(fd_local_port(pool_conn_fd(c)), a.local_port);
	ping(c);
	ck_assert_uint_eq(stats_of(pool, ep).waits, 0);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 1);
	pool_put(pool, c, POOL_REUSE);
	/* And back to A, the same way. */
	worker_do_ok(&a, W_GETPUT);
	ck_assert_int_eq(a.reused, 1);
	ck_assert_msg(a.took_ms < 2500, "A waited %lld ms", a.took_ms);
	ck_assert_uint_eq(stats_of(pool, ep).waits, 0);
	worker_stop(&a);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* max_active = 1: B already waits when A puts its connection back; the
 * put hands it to B rather than keep it for A. */
START_TEST(max_active_waiter_gets_put)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_active", "1", "acquire_timeout_ms", "5000",
				 "teardown", "abort", NULL);
	static struct worker b; /* outlives a failed test (CK_FORK=no) */
	pool_conn_t *c;
	uint16_t port;

	/* Warm: the main thread's get/put, so its slot is in use. */
	get_ping_put(pool, ep);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	port = fd_local_port(pool_conn_fd(c));
	worker_start(&b, pool, ep);
	worker_send(&b, W_GETPUT);
	wait_for(stats_of(pool, ep).waits == 1, 2000);
	pool_put(pool, c, POOL_REUSE);
	worker_wait(&b);
	ck_assert_msg(b.rc == 0, "waiter: %s after %lld ms", pool_strerror(b.rc),
		      b.took_ms);
	ck_assert(b.pong);
	ck_assert_int_eq(b.reused, 1);
	ck_assert_uint_eq(b.local_port, port);
	ck_assert_uint_eq(stats_of(pool, ep).wait_timeouts, 0);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 1);
	/* B parked it in turn: the main thread gets it at once. */
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_uint_eq(fd_local_port(pool_conn_fd(c)), port);
	pool_put(pool, c, POOL_REUSE);
	worker_stop(&b);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- retirement by lifetimes ------------------------------------------ */

/* idle_timeout_ms retires a parked connection by the policy. */
static void idle_timeout_parked(const char *policy, bool in_worker,
				unsigned client_tw, unsigned server_tw)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_policy(policy, "idle_timeout_ms", "150");
	static struct worker w; /* outlives a failed test (CK_FORK=no) */
	uint64_t all;

	if (in_worker) {
		worker_start(&w, pool, ep);
		worker_do_ok(&w, W_GETPUT);
	} else {
		get_ping_put(pool, ep);
	}
	ck_assert_uint_eq(stats_of(pool, ep).idle, 1);
	wait_for(stats_of(pool, ep).closed == 1, 3000);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 0);
	ck_assert_uint_eq(retired_as(pool, ep, POOL_REASON_IDLE_TIMEOUT,
				     policy_code(policy), &all), 1);
	ck_assert_uint_eq(all, 1);
	wait_drains(pool, 6000);
	wait_for(server_open(ls) == 0, 2000);
	tw_expect(ep, client_tw, server_tw);
	if (in_worker)
		worker_stop(&w);
	pool_destroy(pool);
	lineserver_stop(ls);
}

START_TEST(idle_timeout_abort)
{
	idle_timeout_parked("abort", false, 0, 0);
}
END_TEST

START_TEST(idle_timeout_close)
{
	idle_timeout_parked("close", true, 1, 0);
}
END_TEST

START_TEST(idle_timeout_peer_first)
{
	idle_timeout_parked("peer-first", false, 0, 1);
}
END_TEST

/* max_lifetime_ms retires a parked connection, unused, by the policy. */
START_TEST(lifetime_retires_parked)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "close", "max_lifetime_ms", "200",
				 "lifetime_jitter_pct", "0", NULL);
	pool_conn_t *c;
	uint16_t first;
	uint64_t all;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	first = fd_local_port(pool_conn_fd(c));
	pool_put(pool, c, POOL_REUSE);
	wait_for(stats_of(pool, ep).closed == 1, 3000);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 0);
	ck_assert_uint_eq(retired_as(pool, ep, POOL_REASON_LIFETIME,
				     POOL_POLICY_CLOSE, &all), 1);
	ck_assert_uint_eq(all, 1);
	tw_expect(ep, 1, 0);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 0);
	ck_assert_uint_ne(fd_local_port(pool_conn_fd(c)), first);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* max_uses: the put of the last use retires it at once (never parked),
 * by the policy; the next get connects anew. */
START_TEST(max_uses_retires_at_put)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "close", "max_uses", "2", NULL);
	pool_conn_t *c;
	uint64_t all;

	get_ping_put(pool, ep);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 1);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 1);
	ck_assert_int_eq(pool_conn_last_use(c), 1);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 0);
	ck_assert_uint_eq(stats_of(pool, ep).closed, 1);
	ck_assert_uint_eq(retired_as(pool, ep, POOL_REASON_MAX_USES,
				     POOL_POLICY_CLOSE, &all), 1);
	ck_assert_uint_eq(all, 1);
	tw_expect(ep, 1, 0);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 0);
	ck_assert_uint_eq(pool_conn_uses(c), 1);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 2);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- server closes: the watch and the peek ------------------------------ */

/* watch_idle (default on): parked connections the server closes, the
 * main thread's and a living worker's, are closed by the maintenance
 * without any pool_get: no CLOSE_WAIT left, no TIME_WAIT here. */
START_TEST(watch_closes_parked)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "close", NULL);
	static struct worker w; /* outlives a failed test (CK_FORK=no) */
	pool_conn_t *c;

	worker_start(&w, pool, ep);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	worker_do_ok(&w, W_GET);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	worker_do(&w, W_PUT);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 2);
	lineserver_close_all(ls);
	wait_for(stats_of(pool, ep).peer_closed_idle == 2, 3000);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 0);
	ck_assert_uint_eq(stats_of(pool, ep).closed, 2);
	wait_for(close_wait_toward(lineserver_port(ls)) == 0, 2000);
	ck_assert_uint_eq(tw_client(ep), 0);
	/* The next get of either thread connects anew. */
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	worker_stop(&w);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* The default validate_idle_ms = 0 peeks at a parked connection too:
 * with the watch off, one the server closed is never handed out. */
START_TEST(peek_drops_closed_parked)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("watch_idle", "off", "teardown", "abort", NULL);
	pool_conn_t *c;
	uint16_t first = 0;
	int i;

	for (i = 0; i < 3; i++) { /* warm whatever a thread keeps */
		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		first = fd_local_port(pool_conn_fd(c));
		ping(c);
		pool_put(pool, c, POOL_REUSE);
	}
	lineserver_close_all(ls);
	usleep(20000);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 0);
	ck_assert_uint_ne(fd_local_port(pool_conn_fd(c)), first);
	ck_assert(!peer_closed_or_spoke(c));
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).stale_dropped, 1);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 2);
	/* It was in CLOSE_WAIT: closing it left no TIME_WAIT here. */
	ck_assert_uint_eq(tw_client(ep), 0);
	ck_assert_uint_eq(close_wait_toward(lineserver_port(ls)), 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- pool_flush ---------------------------------------------------------- */

/* pool_flush retires, within the call, the connections parked with the
 * caller and with another living thread, by the policy. */
static void flush_parked(const char *policy, unsigned client_tw, unsigned server_tw)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_policy(policy, NULL, NULL);
	static struct worker w; /* outlives a failed test (CK_FORK=no) */
	pool_conn_t *c;
	pool_stats_t st;
	uint64_t all;

	worker_start(&w, pool, ep);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	worker_do_ok(&w, W_GET);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	worker_do(&w, W_PUT);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 2);
	ck_assert_int_eq(pool_flush(pool, ep), 0);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.idle, 0);
	ck_assert_uint_eq(st.retired_close + st.retired_abort + st.retired_peer_first, 2);
	ck_assert_uint_eq(retired_as(pool, ep, POOL_REASON_FLUSH, policy_code(policy),
				     &all), 2);
	ck_assert_uint_eq(all, 2);
	wait_drains(pool, 6000);
	wait_for(server_open(ls) == 0, 2000);
	tw_expect(ep, client_tw, server_tw);
	/* Nothing flushed comes back, to either thread. */
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	worker_do_ok(&w, W_GETPUT);
	ck_assert_int_eq(w.reused, 1);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 3);
	worker_stop(&w);
	pool_destroy(pool);
	lineserver_stop(ls);
}

START_TEST(flush_close)
{
	flush_parked("close", 2, 0);
}
END_TEST

START_TEST(flush_abort)
{
	flush_parked("abort", 0, 0);
}
END_TEST

START_TEST(flush_peer_first)
{
	flush_parked("peer-first", 0, 2);
}
END_TEST

/* ---- thread exit, destroy, fork ------------------------------------------ */

/* A thread exits with a connection parked: it stays idle, another
 * thread reuses it, and pool_destroy closes it by the policy. */
START_TEST(thread_exit_keeps_parked)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "close", NULL);
	struct lineserver_stats ss;
	static struct worker w; /* outlives a failed test (CK_FORK=no) */
	pool_conn_t *c;
	uint16_t port;

	worker_start(&w, pool, ep);
	worker_do_ok(&w, W_GETPUT);
	port = w.local_port;
	worker_stop(&w);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 1);
	ck_assert_uint_eq(stats_of(pool, ep).closed, 0);
	ck_assert_uint_eq(server_open(ls), 1);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 1);
	ck_assert_uint_eq(fd_local_port(pool_conn_fd(c)), port);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	/* Again, a thread that takes it from the main thread and exits. */
	worker_start(&w, pool, ep);
	worker_do_ok(&w, W_GETPUT);
	ck_assert_int_eq(w.reused, 1);
	ck_assert_uint_eq(w.local_port, port);
	worker_stop(&w);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 1);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 1);
	pool_destroy(pool);
	lineserver_get_stats(ls, &ss);
	ck_assert_uint_eq(ss.accepted, 1);
	wait_for(server_open(ls) == 0, 2000);
	tw_expect(ep, 1, 0); /* closed by the pool, policy close */
	lineserver_stop(ls);
}
END_TEST

/* pool_destroy with connections parked (the caller's and a living
 * thread's): closed by the policy, every descriptor back; the thread
 * exits after the pool is gone. */
START_TEST(destroy_closes_parked)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	int fds = fd_count();
	pool_t *pool = pool_with("teardown", "close", NULL);
	static struct worker w; /* outlives a failed test (CK_FORK=no) */
	pool_conn_t *c;

	worker_start(&w, pool, ep);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	worker_do_ok(&w, W_GET);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	worker_do(&w, W_PUT);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 2);
	pool_destroy(pool);
	/* The server's ends are descriptors of this process too. */
	wait_for(server_open(ls) == 0, 2000);
	ck_assert_int_eq(fd_count(), fds);
	tw_expect(ep, 2, 0);
	worker_stop(&w);
	ck_assert_int_eq(fd_count(), fds);
	lineserver_stop(ls);
}
END_TEST

static struct lineserver *volatile fork_server; /* reachable in the child */

/* fork(): the child never uses a connection parked in the parent, with
 * the forking thread or with another (which does not exist in the
 * child), nor sends it the close request; the parent's keep working. */
START_TEST(fork_child_never_uses_parked)
{
	struct lineserver *ls = fork_server = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first", "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "5000", NULL);
	struct lineserver_stats ss;
	struct child_report rep;
	static struct worker w; /* outlives a failed test (CK_FORK=no) */
	pool_conn_t *c;
	uint16_t mine, theirs, port;
	int rc;
	pid_t pid;

	if (running_under_asan()) {
		/* As in check_fastpath.c: clang 14's ASan allocator is not
		 * fork-safe. The plain, TSan and valgrind runs keep it. */
		printf("park: fork test skipped under AddressSanitizer\n");
		pool_destroy(pool);
		lineserver_stop(ls);
		return;
	}
	worker_start(&w, pool, ep);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	worker_do_ok(&w, W_GET);
	mine = fd_local_port(pool_conn_fd(c));
	theirs = w.local_port;
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	worker_do(&w, W_PUT);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0); /* warm: parked again */
	ck_assert_int_eq(pool_conn_reused(c), 1);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 2);
	child_report_init(&rep);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		rc = pool_get(pool, ep, &c) != 0 ? 10 :
		     pool_conn_reused(c) ? 11 :
		     fd_local_port(pool_conn_fd(c)) == mine ? 12 :
		     fd_local_port(pool_conn_fd(c)) == theirs ? 13 :
		     !line_roundtrip(pool_conn_fd(c), "PING", "PONG") ? 14 : 0;
		if (rc == 0) {
			pool_put(pool, c, POOL_REUSE);
			/* Its own connection now: reused, still not the parent's. */
			rc = pool_get(pool, ep, &c) != 0 ? 15 :
			     !pool_conn_reused(c) ? 16 :
			     fd_local_port(pool_conn_fd(c)) == mine ? 17 :
			     fd_local_port(pool_conn_fd(c)) == theirs ? 18 :
			     !line_roundtrip(pool_conn_fd(c), "PING", "PONG") ? 19 : 0;
			if (rc == 0)
				pool_put(pool, c, POOL_REUSE);
		}
		pool_destroy(pool); /* must not send quit on the parent's ones */
		child_report_exit(&rep, rc);
	}
	rc = child_report_wait(&rep, pid);
	ck_assert_msg(rc == 0, "child: %d", rc);
	lineserver_get_stats(ls, &ss);
	ck_assert_uint_eq(ss.accepted, 3);
	wait_for((lineserver_get_stats(ls, &ss), ss.quits == 1), 2000);
	/* Both of the parent's still answer, to either thread. */
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 1);
	port = fd_local_port(pool_conn_fd(c));
	ck_assert(port == mine || port == theirs);
	ping(c);
	worker_do_ok(&w, W_GET);
	ck_assert_int_eq(w.reused, 1);
	ck_assert_uint_eq(w.local_port, port == mine ? theirs : mine);
	pool_put(pool, c, POOL_REUSE);
	worker_do(&w, W_PUT);
	lineserver_get_stats(ls, &ss);
	ck_assert_uint_eq(ss.quits, 1); /* the child's own connection only */
	ck_assert_uint_eq(stats_of(pool, ep).connects, 2);
	worker_stop(&w);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* pool_get_start hands out a parked connection at once (it never
 * waits), under max_active = 1 too, and the two forms mix. */
START_TEST(get_start_takes_parked)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_active", "1", "acquire_timeout_ms", "5000",
				 "teardown", "abort", NULL);
	pool_pending_t *pend = NULL;
	static struct worker w; /* outlives a failed test (CK_FORK=no) */
	pool_conn_t *c = NULL;
	uint16_t port;
	int i;

	get_ping_put(pool, ep);
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(pool_get_start(pool, ep, &c, &pend), 0);
		ck_assert_ptr_nonnull(c);
		ck_assert_ptr_null(pend);
		ck_assert_int_eq(pool_conn_reused(c), 1);
		ping(c);
		pool_put(pool, c, POOL_REUSE);
	}
	/* Parked with another thread: the same. */
	worker_start(&w, pool, ep);
	worker_do_ok(&w, W_GETPUT);
	port = w.local_port;
	c = NULL;
	ck_assert_int_eq(pool_get_start(pool, ep, &c, &pend), 0);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(fd_local_port(pool_conn_fd(c)), port);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 1);
	ck_assert_uint_eq(stats_of(pool, ep).gets, 7);
	ck_assert_uint_eq(stats_of(pool, ep).waits, 0);
	worker_stop(&w);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* A connection got from the thread's cache and put back by another
 * thread: kept, counted once, and anyone's next get takes it. */
START_TEST(put_by_other_thread)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", NULL);
	static struct worker w; /* outlives a failed test (CK_FORK=no) */
	pool_conn_t *c;
	pool_stats_t st;
	uint16_t port;

	get_ping_put(pool, ep);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 1);
	port = fd_local_port(pool_conn_fd(c));
	ping(c);
	worker_start(&w, pool, ep);
	w.c = c;
	worker_do(&w, W_PUT);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.idle, 1);
	ck_assert_uint_eq(st.in_use, 0);
	ck_assert_uint_eq(st.misuse, 0);
	ck_assert_uint_eq(st.closed, 0);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 1);
	ck_assert_uint_eq(fd_local_port(pool_conn_fd(c)), port);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	worker_do_ok(&w, W_GETPUT);
	ck_assert_int_eq(w.reused, 1);
	ck_assert_uint_eq(w.local_port, port);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.gets, 4);
	ck_assert_uint_eq(st.reuses, 3);
	ck_assert_uint_eq(st.connects, 1);
	ck_assert_uint_eq(stats_of(pool, NULL).misuse, 0);
	worker_stop(&w);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* fork() while the thread holds a connection from its cache: the
 * child's put of its copy only closes that copy (no close request on
 * the parent's), its get connects anew; the parent's still works. */
START_TEST(fork_child_puts_cached_conn)
{
	struct lineserver *ls = fork_server = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first", "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "5000", NULL);
	struct lineserver_stats ss;
	struct child_report rep;
	pool_conn_t *c, *d;
	uint16_t parent_port;
	int rc;
	pid_t pid;

	if (running_under_asan()) {
		printf("park: fork test skipped under AddressSanitizer\n");
		pool_destroy(pool);
		lineserver_stop(ls);
		return;
	}
	get_ping_put(pool, ep);
	get_ping_put(pool, ep);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 1);
	parent_port = fd_local_port(pool_conn_fd(c));
	child_report_init(&rep);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pool_put(pool, c, POOL_REUSE);
		rc = pool_get(pool, ep, &d) != 0 ? 10 :
		     pool_conn_reused(d) ? 11 :
		     fd_local_port(pool_conn_fd(d)) == parent_port ? 12 :
		     !line_roundtrip(pool_conn_fd(d), "PING", "PONG") ? 13 : 0;
		if (rc == 0)
			pool_put(pool, d, POOL_REUSE);
		pool_destroy(pool);
		child_report_exit(&rep, rc);
	}
	rc = child_report_wait(&rep, pid);
	ck_assert_msg(rc == 0, "child: %d", rc);
	wait_for((lineserver_get_stats(ls, &ss), ss.quits == 1), 2000);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 1);
	ck_assert_uint_eq(fd_local_port(pool_conn_fd(c)), parent_port);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	lineserver_get_stats(ls, &ss);
	ck_assert_uint_eq(ss.accepted, 2);
	ck_assert_uint_eq(ss.quits, 1);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- misuse -------------------------------------------------------------- */

/* A double put of a parked connection is detected and ignored: counted
 * once as misuse, not closed twice, never handed out twice. */
START_TEST(double_put_detected)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", NULL);
	pool_conn_t *c, *c1, *c2;
	pool_stats_t st;

	get_ping_put(pool, ep); /* warm */
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_REUSE);
	pool_put(pool, c, POOL_REUSE); /* misuse */
	st = stats_of(pool, ep);
	ck_assert_uint_eq(stats_of(pool, NULL).misuse, 1);
	ck_assert_uint_eq(st.idle, 1);
	ck_assert_uint_eq(st.in_use, 0);
	ck_assert_uint_eq(st.closed, 0);
	ck_assert_uint_eq(server_open(ls), 1);
	/* Two gets now: two different connections, both alive. */
	ck_assert_int_eq(pool_get(pool, ep, &c1), 0);
	ck_assert_int_eq(pool_get(pool, ep, &c2), 0);
	ck_assert_ptr_ne(c1, c2);
	ck_assert_int_ne(pool_conn_fd(c1), pool_conn_fd(c2));
	ck_assert_uint_ne(fd_local_port(pool_conn_fd(c1)),
			  fd_local_port(pool_conn_fd(c2)));
	ck_assert_int_eq(pool_conn_reused(c1) + pool_conn_reused(c2), 1);
	ping(c1);
	ping(c2);
	ck_assert_uint_eq(stats_of(pool, ep).in_use, 2);
	pool_put(pool, c1, POOL_REUSE);
	pool_put(pool, c2, POOL_REUSE);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(stats_of(pool, NULL).misuse, 1);
	ck_assert_uint_eq(st.idle, 2);
	ck_assert_uint_eq(st.connects, 2);
	ck_assert_uint_eq(st.closed, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- when nothing is parked ---------------------------------------------- */

/* 10 get/put pairs: no cache_gets, and the counters as before. */
static void nothing_parked(pool_t *pool, struct lineserver *ls,
			   uint64_t connects, uint32_t idle)
{
	const char *ep = lineserver_endpoint(ls);
	pool_stats_t st;
	int i;

	for (i = 0; i < 10; i++)
		get_ping_put(pool, ep);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(cache_gets_of(pool, ep), 0);
	ck_assert_uint_eq(cache_gets_of(pool, NULL), 0);
	ck_assert_uint_eq(st.gets, 10);
	ck_assert_uint_eq(st.connects, connects);
	ck_assert_uint_eq(st.reuses, 10 - connects);
	ck_assert_uint_eq(st.idle, idle);
	pool_destroy(pool);
	lineserver_stop(ls);
}

START_TEST(nothing_parked_with_leak_warn)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);

	nothing_parked(pool_with("leak_warn_ms", "60000", "validate_idle_ms",
				 LONG_BYPASS, NULL), ls, 1, 1);
}
END_TEST

START_TEST(nothing_parked_without_thread_cache)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);

	nothing_parked(pool_with("thread_cache", "off", "validate_idle_ms",
				 LONG_BYPASS, NULL), ls, 1, 1);
}
END_TEST

START_TEST(nothing_parked_max_idle_zero)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);

	/* idle_shrink_ms (default 5000) not 0, which alone would keep the
	 * cache out: each put leaves a surplus, reused until the shrink. */
	nothing_parked(pool_with("max_idle", "0", "teardown", "abort",
				 "validate_idle_ms", LONG_BYPASS, NULL), ls, 1, 1);
}
END_TEST

/* ---- many threads -------------------------------------------------------- */

struct loop {
	pool_t *pool;
	const char *ep;
	int ops;
	int failures;
};

static void *loop_thread(void *arg)
{
	struct loop *l = arg;
	int i;

	for (i = 0; i < l->ops; i++) {
		pool_conn_t *c;

		if (pool_get(l->pool, l->ep, &c) != 0) {
			l->failures++;
			continue;
		}
		if (!line_roundtrip(pool_conn_fd(c), "PING", "PONG"))
			l->failures++;
		pool_put(l->pool, c, i % 11 == 10 ? POOL_RETIRE : POOL_REUSE);
	}
	return NULL;
}

#define NTHREADS 100
#define NOPS 30

/* More threads than a pool has slots, each looping get/put: all work,
 * the counters add up, max_idle holds, and destroy leaks nothing. */
START_TEST(many_threads)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	int fds = fd_count();
	/* idle_shrink_ms not 0: with 0 no thread caches. */
	pool_t *pool = pool_with("max_idle", "16", "idle_shrink_ms", "100",
				 "teardown", "abort", NULL);
	static struct loop l[NTHREADS];
	static pthread_t t[NTHREADS];
	pool_stats_t st;
	int i, failures = 0;

	for (i = 0; i < NTHREADS; i++) {
		l[i] = (struct loop){ pool, ep, NOPS, 0 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, loop_thread, &l[i]), 0);
	}
	for (i = 0; i < NTHREADS; i++) {
		pthread_join(t[i], NULL);
		failures += l[i].failures;
	}
	ck_assert_int_eq(failures, 0);
	/* The surplus goes within idle_shrink_ms (and a tick). */
	wait_for(stats_of(pool, ep).idle <= 16, 3000);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.gets, NTHREADS * NOPS);
	ck_assert_uint_eq(st.in_use, 0);
	ck_assert_uint_le(st.idle, 16);
	ck_assert_uint_eq(st.connects, st.closed + st.idle);
	ck_assert_uint_eq(st.gets, st.connects + st.reuses);
	ck_assert_uint_eq(st.misuse, 0);
	wait_for(server_open(ls) == st.idle, 2000);
	/* The main thread still gets one of them. */
	if (st.idle) {
		pool_conn_t *c;

		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		ck_assert_int_eq(pool_conn_reused(c), 1);
		ping(c);
		pool_put(pool, c, POOL_REUSE);
	}
	pool_destroy(pool);
	/* The server's ends are descriptors of this process too. */
	wait_for(server_open(ls) == 0, 2000);
	ck_assert_int_eq(fd_count(), fds);
	lineserver_stop(ls);
}
END_TEST

/* ---- no confusion across pools and endpoints -------------------------- */

/* One thread, two pools, two endpoints, in turn: each connection goes
 * to the endpoint asked (its peer's port), from the pool asked. */
START_TEST(two_pools_alternate)
{
	struct lineserver *la = server_start(LS_QUIT_CLOSE);
	struct lineserver *lb = server_start(LS_QUIT_CLOSE);
	char ea[64], eb[64];
	pool_t *pa = pool_with("teardown", "abort", NULL);
	pool_t *pb = pool_with("teardown", "abort", NULL);
	int i;

	snprintf(ea, sizeof(ea), "%s", lineserver_endpoint(la));
	snprintf(eb, sizeof(eb), "%s", lineserver_endpoint(lb));
	for (i = 0; i < 24; i++) {
		pool_t *p = i % 2 ? pa : pb;
		struct lineserver *ls = i % 4 < 2 ? la : lb;
		const char *ep = ls == la ? ea : eb;
		struct lineserver_stats before, after;
		pool_conn_t *c;

		lineserver_get_stats(ls, &before);
		ck_assert_int_eq(pool_get(p, ep, &c), 0);
		ck_assert_str_eq(pool_conn_endpoint(c), ep);
		ck_assert_uint_eq(fd_peer_port(pool_conn_fd(c)), lineserver_port(ls));
		ping(c);
		lineserver_get_stats(ls, &after);
		ck_assert_uint_eq(after.requests, before.requests + 1);
		pool_put(p, c, POOL_REUSE);
	}
	ck_assert_uint_eq(stats_of(pa, NULL).misuse, 0);
	ck_assert_uint_eq(stats_of(pb, NULL).misuse, 0);
	ck_assert_uint_eq(stats_of(pa, NULL).in_use + stats_of(pb, NULL).in_use, 0);
	/* One connection per pool and endpoint, kept throughout. */
	ck_assert_uint_eq(stats_of(pa, ea).connects, 1);
	ck_assert_uint_eq(stats_of(pa, eb).connects, 1);
	ck_assert_uint_eq(stats_of(pb, ea).connects, 1);
	ck_assert_uint_eq(stats_of(pb, eb).connects, 1);
	ck_assert_uint_eq(stats_of(pa, NULL).idle + stats_of(pb, NULL).idle, 4);
	pool_destroy(pa);
	pool_destroy(pb);
	lineserver_stop(la);
	lineserver_stop(lb);
}
END_TEST

/* One thread, one pool, two endpoints in turn: each pool_get returns a
 * connection to the endpoint asked, and each endpoint keeps its one. */
START_TEST(two_endpoints_alternate)
{
	struct lineserver *la = server_start(LS_QUIT_CLOSE);
	struct lineserver *lb = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("teardown", "abort", "validate_idle_ms", LONG_BYPASS,
				 NULL);
	int i;

	for (i = 0; i < 20; i++) {
		struct lineserver *ls = i % 2 ? lb : la;
		const char *ep = lineserver_endpoint(ls);
		pool_conn_t *c;

		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		ck_assert_str_eq(pool_conn_endpoint(c), ep);
		ck_assert_uint_eq(fd_peer_port(pool_conn_fd(c)), lineserver_port(ls));
		ck_assert_int_eq(pool_conn_reused(c), i >= 2);
		ping(c);
		pool_put(pool, c, POOL_REUSE);
	}
	ck_assert_uint_eq(stats_of(pool, lineserver_endpoint(la)).connects, 1);
	ck_assert_uint_eq(stats_of(pool, lineserver_endpoint(lb)).connects, 1);
	ck_assert_uint_eq(stats_of(pool, NULL).reuses, 18);
	ck_assert_uint_eq(stats_of(pool, NULL).idle, 2);
	pool_destroy(pool);
	lineserver_stop(la);
	lineserver_stop(lb);
}
END_TEST

/* A pool destroyed while threads that parked in it live on, then new
 * pools (often at the same address): the threads' slots of the old pool
 * are never taken for the new one, whatever the endpoint. */
START_TEST(pool_recreated_threads_live)
{
	struct lineserver *la = server_start(LS_QUIT_CLOSE);
	struct lineserver *lb = server_start(LS_QUIT_CLOSE);
	char ea[64], eb[64];
	struct lineserver_stats ss;
	static struct worker w[4]; /* outlives a failed test (CK_FORK=no) */
	pool_t *pool;
	uint16_t first = 0;
	int i, round;

	snprintf(ea, sizeof(ea), "%s", lineserver_endpoint(la));
	snprintf(eb, sizeof(eb), "%s", lineserver_endpoint(lb));
	pool = pool_with("teardown", "abort", "validate_idle_ms", LONG_BYPASS, NULL);
	for (i = 0; i < 4; i++) {
		worker_start(&w[i], pool, ea);
		worker_do_ok(&w[i], W_GET);
	}
	for (i = 0; i < 4; i++)
		worker_do(&w[i], W_PUT);
	ck_assert_uint_eq(stats_of(pool, ea).idle, 4);
	for (round = 0; round < 3; round++) {
		/* Round 0 and 2: the same endpoint as the first pool's. */
		struct lineserver *ls = round == 1 ? lb : la;
		const char *ep = round == 1 ? eb : ea;
		uint64_t accepted;

		pool_destroy(pool);
		wait_for(server_open(la) + server_open(lb) == 0, 2000);
		pool = pool_with("teardown", "abort", "validate_idle_ms", LONG_BYPASS,
				 NULL);
		lineserver_get_stats(ls, &ss);
		accepted = ss.accepted;
		for (i = 0; i < 4; i++) {
			w[i].pool = pool;
			w[i].ep = ep;
			worker_do_ok(&w[i], W_GETPUT);
			ck_assert_uint_eq(w[i].peer_port, lineserver_port(ls));
			/* The first connects (the new pool is empty), the
			 * others take the one it parked. */
			ck_assert_msg(w[i].reused == (i > 0), "round %d, worker %d: reused %d",
				      round, i, w[i].reused);
			if (i == 0)
				first = w[i].local_port;
			ck_assert_uint_eq(w[i].local_port, first);
		}
		ck_assert_uint_eq(stats_of(pool, ep).connects, 1);
		ck_assert_uint_eq(stats_of(pool, ep).gets, 4);
		lineserver_get_stats(ls, &ss);
		ck_assert_uint_eq(ss.accepted, accepted + 1);
	}
	pool_destroy(pool);
	/* The threads exit after every pool they used is gone. */
	for (i = 0; i < 4; i++)
		worker_stop(&w[i]);
	lineserver_stop(la);
	lineserver_stop(lb);
}
END_TEST

/* ---- cache_gets ---------------------------------------------------------- */

/* One thread, 100 get/put pairs, the peek bypassed: nearly all served
 * from the thread's own cache, and counted; the Prometheus text agrees. */
START_TEST(cache_gets_counted)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", "validate_idle_ms", LONG_BYPASS,
				 NULL);
	pool_stats_ex_t ex;
	char series[128];
	int i;

	for (i = 0; i < 100; i++)
		get_ping_put(pool, ep);
	ex = stats_ex_of(pool, ep);
	ck_assert_uint_eq(ex.base.gets, 100);
	ck_assert_uint_eq(ex.base.reuses, 99);
	ck_assert_uint_eq(ex.base.connects, 1);
	ck_assert_uint_eq(ex.base.idle, 1);
	ck_assert_uint_eq(ex.base.in_use, 0);
	ck_assert_msg(ex.cache_gets >= 98 && ex.cache_gets <= 99,
		      "cache_gets %llu of 100 gets", (unsigned long long)ex.cache_gets);
	ck_assert_uint_eq(cache_gets_of(pool, NULL), ex.cache_gets);
	ck_assert_uint_eq(stats_of(pool, NULL).gets, 100);
	ck_assert_uint_eq(stats_of(pool, NULL).reuses, 99);
	snprintf(series, sizeof(series), "tcpool_cache_gets_total{endpoint=\"%s\"}", ep);
	ck_assert_double_eq(prom_series(pool, series), (double)ex.cache_gets);
	/* The cache's gets are gets like any other, in the text too. */
	snprintf(series, sizeof(series), "tcpool_gets_total{endpoint=\"%s\"}", ep);
	ck_assert_double_eq(prom_series(pool, series), 100);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(cache_gets_zero_without_cache)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", "validate_idle_ms", LONG_BYPASS,
				 "thread_cache", "off", NULL);
	pool_stats_ex_t ex;
	char series[128];
	int i;

	for (i = 0; i < 100; i++)
		get_ping_put(pool, ep);
	ex = stats_ex_of(pool, ep);
	ck_assert_uint_eq(ex.base.gets, 100);
	ck_assert_uint_eq(ex.base.reuses, 99);
	ck_assert_uint_eq(ex.cache_gets, 0);
	snprintf(series, sizeof(series), "tcpool_cache_gets_total{endpoint=\"%s\"}", ep);
	ck_assert_double_eq(prom_series(pool, series), 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Stop what a failed test left running, then check that no descriptor
 * is left over (no more than at the start: under CK_FORK=no the pool a
 * failed test left may close its own meanwhile). */
static void park_teardown(void)
{
	size_t i;

	for (i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (live[i])
			worker_stop(live[i]); /* after the command it runs */
	fixture_test_teardown_no_more();
}

Suite *park_suite(void)
{
	Suite *s = suite_create("park");
	TCase *tc = tcase_create("park");

	tcase_add_checked_fixture(tc, fixture_test_setup, park_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, parked_counts_as_idle);
	tcase_add_test(tc, max_idle_counts_parked);
	tcase_add_test(tc, max_idle_shrink_counts_parked);
	tcase_add_test(tc, other_thread_takes_parked);
	tcase_add_test(tc, max_active_parked_elsewhere_no_wait);
	tcase_add_test(tc, max_active_waiter_gets_put);
	tcase_add_test(tc, idle_timeout_abort);
	tcase_add_test(tc, idle_timeout_close);
	tcase_add_test(tc, idle_timeout_peer_first);
	tcase_add_test(tc, lifetime_retires_parked);
	tcase_add_test(tc, max_uses_retires_at_put);
	tcase_add_test(tc, watch_closes_parked);
	tcase_add_test(tc, peek_drops_closed_parked);
	tcase_add_test(tc, flush_close);
	tcase_add_test(tc, flush_abort);
	tcase_add_test(tc, flush_peer_first);
	tcase_add_test(tc, thread_exit_keeps_parked);
	tcase_add_test(tc, destroy_closes_parked);
	tcase_add_test(tc, fork_child_never_uses_parked);
	tcase_add_test(tc, get_start_takes_parked);
	tcase_add_test(tc, put_by_other_thread);
	tcase_add_test(tc, fork_child_puts_cached_conn);
	tcase_add_test(tc, double_put_detected);
	tcase_add_test(tc, nothing_parked_with_leak_warn);
	tcase_add_test(tc, nothing_parked_without_thread_cache);
	tcase_add_test(tc, nothing_parked_max_idle_zero);
	tcase_add_test(tc, many_threads);
	tcase_add_test(tc, two_pools_alternate);
	tcase_add_test(tc, two_endpoints_alternate);
	tcase_add_test(tc, pool_recreated_threads_live);
	tcase_add_test(tc, cache_gets_counted);
	tcase_add_test(tc, cache_gets_zero_without_cache);
	suite_add_tcase(s, tc);
	return s;
}
