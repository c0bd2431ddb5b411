/*
 * Per-connection data and hooks (issue 9): data kept across put/get and
 * freed exactly once, after the socket is closed, on every retirement
 * path; on_connect for every new connection (warm ones included) and its
 * failure; the close_request hook; the rate-limited fallback warning;
 * pool_config_check and pool_create's logged reason; pool_conn_uses; and
 * the Redis requirepass scenario of the issue, against a real server.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config-keys.h"
#include "fixtures.h"
#include "pool-internal.h"
#include "realserver.h"
#include "suites.h"

/* ---- data with a checked free_fn ---- */

/* What a test attaches to a connection: its socket's local port, to tell
 * at free time whether the socket is still open. */
struct tdata {
	int fd;
	uint16_t port;
};

static atomic_int frees;           /* free_fn calls */
static atomic_int freed_while_open; /* ... while the socket was still open */

static uint16_t local_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0 ||
	    sa.sin_family != AF_INET)
		return 0;
	return ntohs(sa.sin_port);
}

static void tdata_free(void *p)
{
	struct tdata *d = p;

	/* The descriptor, if still open, is this connection's socket when it
	 * has the same local port: a reused number has another. */
	if (fcntl(d->fd, F_GETFD) != -1 && local_port(d->fd) == d->port)
		atomic_fetch_add(&freed_while_open, 1);
	atomic_fetch_add(&frees, 1);
	free(d);
}

static void attach(pool_conn_t *c)
{
	struct tdata *d = malloc(sizeof(*d));

	ck_assert_ptr_nonnull(d);
	d->fd = pool_conn_fd(c);
	d->port = local_port(d->fd);
	pool_conn_set_data(c, d, tdata_free);
}

static void frees_reset(void)
{
	atomic_store(&frees, 0);
	atomic_store(&freed_while_open, 0);
}

/* Exactly n frees, none of them before its socket was closed. */
static void frees_expect(int n)
{
	wait_for(atomic_load(&frees) >= n, 3000);
	usleep(20000); /* a second free would come now */
	ck_assert_int_eq(atomic_load(&frees), n);
	ck_assert_int_eq(atomic_load(&freed_while_open), 0);
}

/* One connection to ep with data attached, given back by mode. */
static void use_once(pool_t *pool, const char *ep, pool_put_mode mode)
{
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	attach(c);
	ping(c);
	pool_put(pool, c, mode);
}

/* ---- the log ---- */

#define LOG_MAX 64
static struct {
	pthread_mutex_t lock;
	int n;
	char msg[LOG_MAX][512];
} logged = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void log_capture(int level, const char *msg, void *ud)
{
	(void)level;
	(void)ud;
	pthread_mutex_lock(&logged.lock);
	if (logged.n < LOG_MAX)
		snprintf(logged.msg[logged.n], sizeof(logged.msg[0]), "%s", msg);
	logged.n++;
	pthread_mutex_unlock(&logged.lock);
}

static int log_count(void)
{
	int n;

	pthread_mutex_lock(&logged.lock);
	n = logged.n;
	pthread_mutex_unlock(&logged.lock);
	return n;
}

static void log_reset(void)
{
	pthread_mutex_lock(&logged.lock);
	logged.n = 0;
	pthread_mutex_unlock(&logged.lock);
}

static pool_t *create(pool_config_t *cfg)
{
	pool_t *pool = NULL;
	int rc = pool_create(&pool, cfg);

	ck_assert_msg(rc == 0, "pool_create: %s", pool_strerror(rc));
	pool_config_free(cfg);
	return pool;
}

/* ---- hooks that count ---- */

struct hookctl {
	atomic_int connects;        /* on_connect calls */
	atomic_int fail;            /* on_connect fails while > 0 (decremented) */
	atomic_int other_thread;    /* calls from a thread other than main */
	pthread_t main;
	atomic_int closes;          /* close_request calls */
	int close_rc;               /* close_request's return */
	const char *close_bytes;    /* what close_request sends */
	atomic_int close_had_data;  /* close_request saw the data */
};

static int hook_connect(pool_conn_t *c, void *ud)
{
	struct hookctl *h = ud;

	atomic_fetch_add(&h->connects, 1);
	if (!pthread_equal(pthread_self(), h->main))
		atomic_fetch_add(&h->other_thread, 1);
	/* Not handed out yet: no use so far. */
	ck_assert_uint_eq(pool_conn_uses(c), 0);
	attach(c);
	if (atomic_load(&h->fail) > 0) {
		atomic_fetch_sub(&h->fail, 1);
		return -1;
	}
	return 0;
}

static int hook_close(pool_conn_t *c, void *ud)
{
	struct hookctl *h = ud;
	size_t len;

	atomic_fetch_add(&h->closes, 1);
	if (pool_conn_data(c))
		atomic_fetch_add(&h->close_had_data, 1);
	if (h->close_rc < 0)
		return h->close_rc;
	len = strlen(h->close_bytes);
	ck_assert_int_eq(send(pool_conn_fd(c), h->close_bytes, len, MSG_NOSIGNAL),
			 (ssize_t)len);
	return 0;
}

static void hookctl_init(struct hookctl *h)
{
	memset(h, 0, sizeof(*h));
	h->main = pthread_self();
	h->close_bytes = "quit\n";
}

static void set_hooks(pool_config_t *cfg, const char *pattern, struct hookctl *h,
		      bool with_close)
{
	pool_hooks_t hk = { .on_connect = hook_connect, .ud = h };

	if (with_close)
		hk.close_request = hook_close;
	ck_assert_int_eq(pool_config_set_hooks(cfg, pattern, &hk), 0);
}

/* ---- data and uses ---- */

START_TEST(data_stays_across_put_get)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", NULL);
	pool_conn_t *c;
	void *d;
	int i;

	frees_reset();
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_ptr_null(pool_conn_data(c));
	attach(c);
	d = pool_conn_data(c);
	pool_put(pool, c, POOL_REUSE);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		ck_assert_ptr_eq(pool_conn_data(c), d);
		ping(c);
		pool_put(pool, c, POOL_REUSE);
	}
	ck_assert_int_eq(atomic_load(&frees), 0);
	pool_destroy(pool); /* the idle one: closed, then freed */
	frees_expect(1);
	lineserver_stop(ls);
}
END_TEST

/* Replacing data does not free the old (the caller has it in hand);
 * NULL detaches it. Bad input is ignored. */
START_TEST(data_replace_and_null)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("teardown", "abort", NULL);
	pool_conn_t *c;
	int x;

	frees_reset();
	ck_assert_ptr_null(pool_conn_data(NULL));
	ck_assert_uint_eq(pool_conn_uses(NULL), 0);
	pool_conn_set_data(NULL, &x, NULL); /* ignored, no crash */
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(ls), &c), 0);
	attach(c);
	free(pool_conn_data(c));
	pool_conn_set_data(c, &x, NULL);
	ck_assert_int_eq(atomic_load(&frees), 0);
	ck_assert_ptr_eq(pool_conn_data(c), &x);
	pool_conn_set_data(c, NULL, NULL);
	pool_put(pool, c, POOL_RETIRE);
	pool_destroy(pool);
	ck_assert_int_eq(atomic_load(&frees), 0);
	lineserver_stop(ls);
}
END_TEST

START_TEST(uses_count_hand_outs)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", NULL);
	pool_conn_t *c;
	unsigned i;

	for (i = 1; i <= 3; i++) {
		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		ck_assert_uint_eq(pool_conn_uses(c), i);
		ck_assert_int_eq(pool_conn_reused(c), i > 1);
		pool_put(pool, c, POOL_REUSE);
	}
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* A warm connection's first hand-out: uses 1 (first use), reused 1
 * (connected before this pool_get: a retry is safe). */
START_TEST(warm_first_hand_out)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", "min_idle", "1", NULL);
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0); /* starts the refills */
	pool_put(pool, c, POOL_RETIRE);
	wait_for(stats_of(pool, ep).idle == 1, 3000);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_uint_eq(pool_conn_uses(c), 1);
	ck_assert_int_eq(pool_conn_reused(c), 1);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_uint_eq(pool_conn_uses(c), 2);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- free_fn exactly once, after the close, on every path ---- */

static const char *const retire_policies[] = { "close", "abort" };

START_TEST(free_after_retire)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("teardown", retire_policies[_i], NULL);

	frees_reset();
	use_once(pool, lineserver_endpoint(ls), POOL_RETIRE);
	frees_expect(1);
	use_once(pool, lineserver_endpoint(ls), POOL_BROKEN);
	frees_expect(2);
	pool_destroy(pool);
	frees_expect(2);
	lineserver_stop(ls);
}
END_TEST

START_TEST(free_when_reuse_is_over_max_idle)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("teardown", "abort", "max_idle", "0",
				 "idle_shrink_ms", "0", NULL);

	frees_reset();
	use_once(pool, lineserver_endpoint(ls), POOL_REUSE);
	frees_expect(1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Idle surplus shrunk by the maintenance, idle timeout, lifetime. */
static const char *const expiry_keys[][4] = {
	{ "max_idle", "0", "idle_shrink_ms", "30" },
	{ "idle_timeout_ms", "30", "max_idle", "4" },
	{ "max_lifetime_ms", "30", "lifetime_jitter_pct", "0" },
};

START_TEST(free_when_maintenance_retires)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *const *k = expiry_keys[_i];
	pool_t *pool = pool_with("teardown", "abort", k[0], k[1], k[2], k[3], NULL);
	const char *ep = lineserver_endpoint(ls);

	frees_reset();
	use_once(pool, ep, POOL_REUSE);
	wait_for(stats_of(pool, ep).closed == 1, 3000);
	frees_expect(1);
	pool_destroy(pool);
	frees_expect(1);
	lineserver_stop(ls);
}
END_TEST

START_TEST(free_at_max_uses)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("teardown", "abort", "max_uses", "1", NULL);

	frees_reset();
	use_once(pool, lineserver_endpoint(ls), POOL_REUSE);
	frees_expect(1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* An idle connection the server closed: dropped by the next pool_get
 * (with the idle watch off; with it on, the watch gets there first). */
START_TEST(free_when_found_stale)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", "watch_idle", "off", NULL);
	pool_conn_t *c;

	frees_reset();
	use_once(pool, ep, POOL_REUSE);
	lineserver_close_all(ls);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_uint_eq(stats_of(pool, ep).stale_dropped, 1);
	frees_expect(1);
	ck_assert_ptr_null(pool_conn_data(c)); /* a new connection */
	pool_put(pool, c, POOL_RETIRE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* The same, found by the idle watch: closed and freed with no pool_get. */
START_TEST(free_when_watch_sees_peer_close)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", NULL);

	frees_reset();
	use_once(pool, ep, POOL_REUSE);
	lineserver_close_all(ls);
	wait_for(stats_of(pool, ep).peer_closed_idle == 1, 2000);
	frees_expect(1);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Under max_total, a caller for B evicts A's idle connection. */
START_TEST(free_when_evicted)
{
	struct lineserver *a = server_start(LS_QUIT_CLOSE);
	struct lineserver *b = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("teardown", "abort", "max_total", "1", NULL);
	pool_conn_t *c;

	frees_reset();
	use_once(pool, lineserver_endpoint(a), POOL_REUSE);
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(b), &c), 0);
	frees_expect(1);
	pool_put(pool, c, POOL_RETIRE);
	pool_destroy(pool);
	lineserver_stop(a);
	lineserver_stop(b);
}
END_TEST

/* pool_destroy frees idle connections' data; a checked-out connection's
 * stays with its holder (its descriptor is left open to it too). */
START_TEST(destroy_leaves_checked_out_data)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_config_t *cfg = config_with("teardown", "abort", NULL);
	pool_t *pool;
	pool_conn_t *c, *held;
	void *d;
	int fd;

	frees_reset();
	pool_config_set_log(cfg, log_capture, NULL);
	pool = create(cfg);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_get(pool, ep, &held), 0);
	attach(c);
	attach(held);
	d = pool_conn_data(held);
	fd = pool_conn_fd(held);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	frees_expect(1);
	/* Ours now: still open, and our data to free. */
	ck_assert_int_ne(fcntl(fd, F_GETFD), -1);
	close(fd);
	tdata_free(d);
	lineserver_stop(ls);
}
END_TEST

/* A child of fork() frees its copy of the data of the connections it
 * inherited and will never use, at its first pool call (not in the atfork
 * handler), as it closed its copy of their descriptors; the parent's
 * connections and data are untouched. */
START_TEST(fork_child_frees_its_copies)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", NULL);
	pool_conn_t *c;
	int status, p[2], got = -1;
	pid_t pid;

	frees_reset();
	use_once(pool, ep, POOL_REUSE); /* idle, with data */
	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* Through a pipe, not the exit status: under valgrind a child
		 * exits with its error code for the test's own objects it
		 * cannot free (the line server, whose thread is the parent's). */
		int rc = pool_get(pool, ep, &c), n; /* a new connection */

		if (rc == 0) {
			attach(c);
			pool_put(pool, c, POOL_RETIRE);
		}
		pool_destroy(pool);
		n = rc == 0 ? atomic_load(&frees) : 100;
		_exit(write(p[1], &n, sizeof(n)) == sizeof(n) ? 0 : 1);
	}
	close(p[1]);
	ck_assert_int_eq(read(p[0], &got, sizeof(got)), (ssize_t)sizeof(got));
	close(p[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(got, 2); /* the inherited one's and its own */
	ck_assert_int_eq(atomic_load(&frees), 0);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0); /* the parent's, alive */
	ck_assert_ptr_nonnull(pool_conn_data(c));
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	frees_expect(1);
	lineserver_stop(ls);
}
END_TEST

/* Peer-first: the data lives through the drain (the server closes only
 * after a delay) and is freed once the socket is closed. */
START_TEST(free_after_peer_first_drain)
{
	struct lineserver *ls = server_start(LS_QUIT_IGNORE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first",
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "5000", NULL);

	frees_reset();
	use_once(pool, ep, POOL_RETIRE);
	usleep(150000);
	ck_assert_uint_eq(stats_of(pool, ep).draining, 1);
	ck_assert_int_eq(atomic_load(&frees), 0);
	lineserver_close_all(ls); /* the server's EOF, late */
	wait_drains(pool, 3000);
	ck_assert_int_eq(atomic_load(&frees), 1); /* before draining hit 0 */
	ck_assert_int_eq(atomic_load(&freed_while_open), 0);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_ok, 1);
	pool_destroy(pool);
	frees_expect(1);
	tw_expect(ep, 0, 1);
	lineserver_stop(ls);
}
END_TEST

/* Drains cut short by pool_destroy's deadline still free, after closing. */
START_TEST(free_after_drain_fallback_at_destroy)
{
	struct lineserver *ls = server_start(LS_QUIT_IGNORE);
	const char *ep = lineserver_endpoint(ls);
	pool_config_t *cfg = config_with("teardown", "peer-first",
					 "close_request", "\"quit\\n\"",
					 "close_timeout_ms", "100", NULL);
	pool_conn_t *c[3];
	pool_t *pool;
	int i;

	frees_reset();
	log_reset();
	pool_config_set_log(cfg, log_capture, NULL); /* the fallback's */
	pool = create(cfg);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(pool_get(pool, ep, &c[i]), 0);
		attach(c[i]);
	}
	pool_put(pool, c[0], POOL_RETIRE); /* draining */
	pool_put(pool, c[1], POOL_REUSE);  /* idle: drained by destroy */
	pool_put(pool, c[2], POOL_REUSE);
	pool_destroy(pool);
	frees_expect(3);
	tw_expect(ep, 0, 0);
	lineserver_stop(ls);
}
END_TEST

/* ---- on_connect ---- */

START_TEST(on_connect_once_per_new_connection)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_config_t *cfg = config_with("teardown", "abort", NULL);
	struct hookctl h;
	pool_t *pool;
	pool_conn_t *c1, *c2;
	int i;

	hookctl_init(&h);
	frees_reset();
	set_hooks(cfg, NULL, &h, false);
	pool = create(cfg);
	ck_assert_int_eq(pool_get(pool, ep, &c1), 0);
	ck_assert_int_eq(pool_get(pool, ep, &c2), 0);
	ck_assert_ptr_nonnull(pool_conn_data(c1)); /* set by the hook */
	pool_put(pool, c1, POOL_REUSE);
	pool_put(pool, c2, POOL_REUSE);
	for (i = 0; i < 5; i++) {
		ck_assert_int_eq(pool_get(pool, ep, &c1), 0);
		pool_put(pool, c1, POOL_REUSE);
	}
	ck_assert_int_eq(atomic_load(&h.connects), 2);
	ck_assert_int_eq(atomic_load(&h.other_thread), 0); /* pool_get's */
	pool_destroy(pool);
	frees_expect(2);
	lineserver_stop(ls);
}
END_TEST

/* Warm connections get on_connect too: in the refill thread (thread
 * mode) or in pool_maintain's caller (manual mode). */
START_TEST(on_connect_runs_for_warm_connections)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	bool manual = _i == 1;
	pool_config_t *cfg = config_with("teardown", "abort", "min_idle", "3",
					 "maintenance", manual ? "manual" : "thread",
					 NULL);
	struct hookctl h;
	pool_t *pool;
	pool_conn_t *c;
	int i, next;

	hookctl_init(&h);
	frees_reset();
	set_hooks(cfg, NULL, &h, false);
	pool = create(cfg);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_REUSE);
	for (i = 0; manual && i < 20 && stats_of(pool, ep).idle < 3; i++)
		pool_maintain(pool, &next);
	wait_for(stats_of(pool, ep).idle == 3, 3000);
	ck_assert_int_eq(atomic_load(&h.connects), 3);
	ck_assert_int_eq(atomic_load(&h.other_thread), manual ? 0 : 2);
	/* Each warm one carries what its hook attached. */
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		ck_assert_ptr_nonnull(pool_conn_data(c));
		ping(c);
		pool_put(pool, c, POOL_REUSE);
	}
	pool_destroy(pool);
	frees_expect(3);
	lineserver_stop(ls);
}
END_TEST

/* A failing on_connect: POOL_EHOOK, the connection aborted (RST: no
 * TIME_WAIT anywhere), its data freed, its slot free for the next get. */
START_TEST(on_connect_failure)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_config_t *cfg = config_with("teardown", "close", "max_active", "1",
					 "acquire_timeout_ms", "100", NULL);
	struct lineserver_stats lst;
	struct hookctl h;
	pool_stats_t st;
	pool_t *pool;
	pool_conn_t *c;

	hookctl_init(&h);
	frees_reset();
	atomic_store(&h.fail, 1);
	set_hooks(cfg, NULL, &h, false);
	pool = create(cfg);
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_EHOOK);
	ck_assert_ptr_null(c);
	frees_expect(1);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.connect_failures, 1);
	ck_assert_uint_eq(st.in_use, 0);
	wait_for((lineserver_get_stats(ls, &lst), lst.closed_by_client == 1), 2000);
	tw_expect(ep, 0, 0);
	/* The slot (max_active 1) is free again. */
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	pool_put(pool, c, POOL_RETIRE);
	ck_assert_int_eq(atomic_load(&h.connects), 2);
	pool_destroy(pool);
	frees_expect(2);
	lineserver_stop(ls);
}
END_TEST

/* A warm connection's failing on_connect: a connect failure, logged once
 * (then rate-limited), retried later. */
START_TEST(on_connect_failure_warm_is_logged)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_config_t *cfg = config_with("teardown", "abort", "min_idle", "2",
					 "maintenance", "manual", NULL);
	struct hookctl h;
	pool_t *pool;
	pool_conn_t *c;
	int next;

	hookctl_init(&h);
	frees_reset();
	log_reset();
	set_hooks(cfg, NULL, &h, false);
	pool_config_set_log(cfg, log_capture, NULL);
	pool = create(cfg);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_REUSE);
	atomic_store(&h.fail, 100);
	pool_maintain(pool, &next);
	ck_assert_uint_ge(stats_of(pool, ep).connect_failures, 1);
	ck_assert_int_eq(log_count(), 1);
	ck_assert_ptr_nonnull(strstr(logged.msg[0], ep));
	ck_assert_ptr_nonnull(strstr(logged.msg[0], "on_connect failed"));
	usleep(1100 * 1000); /* the refill retry delay */
	pool_maintain(pool, &next);
	ck_assert_uint_ge(stats_of(pool, ep).connect_failures, 2);
	ck_assert_int_eq(log_count(), 1); /* rate-limited */
	pool_destroy(pool);
	ck_assert_int_eq(atomic_load(&frees), atomic_load(&h.connects));
	tw_expect(ep, 0, 0);
	lineserver_stop(ls);
}
END_TEST

/* ---- hooks per endpoint pattern ---- */

START_TEST(section_hooks_override_pool)
{
	struct lineserver *a = server_start(LS_QUIT_CLOSE);
	struct lineserver *b = server_start(LS_QUIT_CLOSE);
	pool_config_t *cfg = config_with("teardown", "abort", NULL);
	struct hookctl ha, hb;
	char pattern[64];
	pool_t *pool;
	pool_conn_t *c;

	hookctl_init(&ha);
	hookctl_init(&hb);
	frees_reset();
	snprintf(pattern, sizeof(pattern), "*:%u", lineserver_port(b));
	set_hooks(cfg, NULL, &ha, false);
	set_hooks(cfg, pattern, &hb, false);
	pool = create(cfg); /* frees cfg: the pool has its own copy */
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(a), &c), 0);
	pool_put(pool, c, POOL_RETIRE);
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(b), &c), 0);
	pool_put(pool, c, POOL_RETIRE);
	ck_assert_int_eq(atomic_load(&ha.connects), 1);
	ck_assert_int_eq(atomic_load(&hb.connects), 1);
	pool_destroy(pool);

	/* Cleared (NULL), the section inherits [pool]'s again. */
	cfg = config_with("teardown", "abort", NULL);
	set_hooks(cfg, NULL, &ha, false);
	set_hooks(cfg, pattern, &hb, false);
	ck_assert_int_eq(pool_config_set_hooks(cfg, pattern, NULL), 0);
	pool = create(cfg);
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(b), &c), 0);
	pool_put(pool, c, POOL_RETIRE);
	ck_assert_int_eq(atomic_load(&ha.connects), 2);
	ck_assert_int_eq(atomic_load(&hb.connects), 1);
	pool_destroy(pool);
	frees_expect(3);
	lineserver_stop(a);
	lineserver_stop(b);
}
END_TEST

START_TEST(set_hooks_bad_input_changes_nothing)
{
	pool_config_t *cfg = pool_config_new();
	struct hookctl h;
	pool_hooks_t hk = { .on_connect = hook_connect, .ud = &h };

	ck_assert_int_eq(pool_config_set_hooks(NULL, NULL, &hk), POOL_EINVAL);
	ck_assert_int_eq(pool_config_set_hooks(cfg, "nohost", &hk), POOL_EENDPOINT);
	ck_assert_int_eq(pool_config_set_hooks(cfg, "*:0", &hk), POOL_EENDPOINT);
	ck_assert_int_eq(pool_config_set_hooks(cfg, "", &hk), POOL_EENDPOINT);
	ck_assert_uint_eq(cfg->nsections, 0);
	ck_assert(!cfg->hooks_set);
	/* Clearing a section that does not exist adds none. */
	ck_assert_int_eq(pool_config_set_hooks(cfg, "*:80", NULL), 0);
	ck_assert_uint_eq(cfg->nsections, 0);
	/* Setting one adds it, as pool_config_set would; the same pattern
	 * again is the same section. */
	ck_assert_int_eq(pool_config_set_hooks(cfg, "*:80", &hk), 0);
	ck_assert_int_eq(pool_config_set_hooks(cfg, " *:80 ", &hk), 0);
	ck_assert_uint_eq(cfg->nsections, 1);
	ck_assert(cfg->sections[0].hooks_set);
	ck_assert_ptr_eq(cfg->sections[0].hooks.ud, &h);
	/* Keys set later, in the same section or elsewhere, keep them. */
	ck_assert_int_eq(pool_config_set(cfg, "*:80", "max_idle", "3", NULL, 0), 0);
	ck_assert_int_eq(pool_config_set(cfg, "*:81", "max_idle", "3", NULL, 0), 0);
	ck_assert(cfg->sections[0].hooks_set);
	ck_assert(!cfg->sections[1].hooks_set);
	ck_assert_ptr_eq(cfg->sections[0].hooks.on_connect, hook_connect);
	pool_config_free(cfg);
}
END_TEST

/* ---- the close_request hook ---- */

START_TEST(close_request_hook_under_peer_first)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_config_t *cfg = config_with("teardown", "peer-first",
					 "close_timeout_ms", "3000", NULL);
	struct lineserver_stats lst;
	struct hookctl h;
	char err[256];
	pool_t *pool;
	pool_conn_t *c;

	hookctl_init(&h);
	frees_reset();
	/* peer-first without close_request bytes: valid with the hook only. */
	ck_assert_int_eq(pool_config_check(cfg, err, sizeof(err)), POOL_ECONFIG);
	ck_assert_str_eq(err, "teardown: peer-first needs a close_request");
	set_hooks(cfg, NULL, &h, true);
	ck_assert_int_eq(pool_config_check(cfg, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	pool = create(cfg);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	pool_put(pool, c, POOL_RETIRE);
	wait_drains(pool, 3000);
	ck_assert_int_eq(atomic_load(&h.closes), 1);
	ck_assert_int_eq(atomic_load(&h.close_had_data), 1);
	lineserver_get_stats(ls, &lst);
	ck_assert_uint_eq(lst.quits, 1); /* what the hook wrote */
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_ok, 1);
	frees_expect(1);
	/* POOL_BROKEN never sends a close request, hook or not. */
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_BROKEN);
	ck_assert_int_eq(atomic_load(&h.closes), 1);
	pool_destroy(pool);
	frees_expect(2);
	tw_expect(ep, 0, 1);
	lineserver_stop(ls);
}
END_TEST

/* What a close_request hook sends instead of the pool: the bytes, escapes
 * decoded, NUL included; none where the endpoint has no close request. */
START_TEST(close_request_bytes_for_hooks)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_config_t *cfg = config_with("close_request", "\"qu\\x00it\\r\\n\"", NULL);
	pool_t *pool = create(cfg), *plain = pool_with("teardown", "abort", NULL);
	pool_conn_t *c;
	const char *req;
	size_t len = 99;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	req = pool_conn_close_request(c, &len);
	ck_assert_uint_eq(len, 7);
	ck_assert_int_eq(memcmp(req, "qu\0it\r\n", 7), 0);
	ck_assert_ptr_eq(pool_conn_close_request(c, NULL), req);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_int_eq(pool_get(plain, ep, &c), 0);
	len = 99;
	ck_assert_ptr_null(pool_conn_close_request(c, &len));
	ck_assert_uint_eq(len, 0);
	pool_put(plain, c, POOL_REUSE);
	len = 99;
	ck_assert_ptr_null(pool_conn_close_request(NULL, &len));
	ck_assert_uint_eq(len, 0);
	pool_destroy(plain);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(close_request_hook_failure_falls_back)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_config_t *cfg = config_with("teardown", "peer-first",
					 "close_request", "\"quit\\n\"",
					 "close_timeout_ms", "3000", NULL);
	struct lineserver_stats lst;
	struct hookctl h;
	pool_t *pool;
	pool_conn_t *c;

	hookctl_init(&h);
	frees_reset();
	log_reset();
	h.close_rc = -1;
	set_hooks(cfg, NULL, &h, true);
	pool_config_set_log(cfg, log_capture, NULL);
	pool = create(cfg);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	pool_put(pool, c, POOL_RETIRE);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_fallback, 1);
	ck_assert_uint_eq(stats_of(pool, ep).draining, 0);
	frees_expect(1);
	lineserver_get_stats(ls, &lst);
	ck_assert_uint_eq(lst.quits, 0); /* the hook's, not the bytes */
	ck_assert_int_eq(log_count(), 1);
	ck_assert_ptr_nonnull(strstr(logged.msg[0], ep));
	ck_assert_ptr_nonnull(strstr(logged.msg[0], "close_request hook"));
	ck_assert_ptr_nonnull(strstr(logged.msg[0], "fell back to abort"));
	pool_destroy(pool);
	tw_expect(ep, 0, 0);
	lineserver_stop(ls);
}
END_TEST

/* ---- the fallback warning ---- */

/* 40 retirements with a close request the server does not know: one
 * warning at once, naming the endpoint and showing the request quoted;
 * the rest are counted for the next one, a minute later at the earliest. */
START_TEST(fallback_warning_is_rate_limited)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_config_t *cfg = config_with("teardown", "peer-first",
					 "close_request", "\"bye\\r\\n\"",
					 "close_timeout_ms", "50", "max_idle", "0",
					 NULL);
	struct pool_endpoint *pep;
	pool_t *pool;
	int i;

	log_reset();
	pool_config_set_log(cfg, log_capture, NULL);
	pool = create(cfg);
	/* The line server echoes "bye": not its close request ("quit"). */
	for (i = 0; i < 40; i++)
		use_once(pool, ep, POOL_RETIRE);
	wait_drains(pool, 3000);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_fallback, 40);
	ck_assert_int_eq(log_count(), 1);
	ck_assert_ptr_nonnull(strstr(logged.msg[0], ep));
	ck_assert_ptr_nonnull(strstr(logged.msg[0], "close_request \"bye\\r\\n\""));
	ck_assert_ptr_nonnull(strstr(logged.msg[0], "no EOF within close_timeout_ms = 50"));
	/* A minute on (moved back rather than waited for): the next one
	 * carries the count. */
	ck_assert_int_eq(pool_endpoint_lock(pool, ep, &pep), 0);
	pep->fallback_log.last_ns -= RATELIMIT_NS;
	pool_endpoint_unlock(pep);
	use_once(pool, ep, POOL_RETIRE);
	wait_drains(pool, 3000);
	ck_assert_int_eq(log_count(), 2);
	ck_assert_ptr_nonnull(strstr(logged.msg[1], "(40 fallbacks since the last warning)"));
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* An endpoint that goes quiet between retirements is forgotten after its
 * idle timeout; not its warning: the next fallback within the minute is
 * still counted, not logged at once. */
START_TEST(fallback_warning_outlives_quiet_endpoint)
{
	struct lineserver *ls = server_start(LS_QUIT_IGNORE);
	const char *ep = lineserver_endpoint(ls);
	pool_config_t *cfg = config_with("teardown", "peer-first",
					 "close_request", "\"quit\\n\"",
					 "close_timeout_ms", "20", "max_idle", "0",
					 "idle_timeout_ms", "30", NULL);
	pool_t *pool;

	log_reset();
	pool_config_set_log(cfg, log_capture, NULL);
	pool = create(cfg);
	use_once(pool, ep, POOL_RETIRE);
	wait_drains(pool, 3000);
	ck_assert_int_eq(log_count(), 1);
	usleep(300 * 1000); /* ten idle timeouts: time enough to forget it */
	use_once(pool, ep, POOL_RETIRE);
	wait_drains(pool, 3000);
	ck_assert_uint_eq(stats_of(pool, NULL).peer_first_fallback, 2);
	ck_assert_int_eq(log_count(), 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* POOL_BROKEN falls back by design: counted, not warned about. */
START_TEST(broken_fallback_is_not_logged)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_config_t *cfg = config_with("teardown", "peer-first",
					 "close_request", "\"quit\\n\"", NULL);
	pool_t *pool;

	log_reset();
	pool_config_set_log(cfg, log_capture, NULL);
	pool = create(cfg);
	use_once(pool, ep, POOL_BROKEN);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_fallback, 1);
	ck_assert_int_eq(log_count(), 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- pool_config_check and pool_create's reason ---- */

START_TEST(config_check_matches_create)
{
	pool_config_t *cfg = pool_config_new();
	char err[256];
	pool_t *pool;

	ck_assert_int_eq(pool_config_check(NULL, err, sizeof(err)), POOL_EINVAL);
	ck_assert_int_eq(pool_config_check(cfg, err, sizeof(err)), 0);
	ck_assert_int_eq(pool_config_set(cfg, "*:11211", "teardown", "peer-first",
					 err, sizeof(err)), 0);
	ck_assert_int_eq(pool_config_check(cfg, err, sizeof(err)), POOL_ECONFIG);
	ck_assert_str_eq(err, "[endpoint *:11211] teardown: peer-first needs a close_request");
	ck_assert_int_eq(pool_config_check(cfg, NULL, 0), POOL_ECONFIG);
	log_reset();
	pool_config_set_log(cfg, log_capture, NULL);
	ck_assert_int_eq(pool_create(&pool, cfg), POOL_ECONFIG);
	ck_assert_ptr_null(pool);
	ck_assert_int_eq(log_count(), 1);
	ck_assert_str_eq(logged.msg[0], "pool_create: [endpoint *:11211] teardown: "
			 "peer-first needs a close_request");
	pool_config_free(cfg);
}
END_TEST

/* stderr into a file while fn runs; returns what was written. */
static void stderr_of(void (*fn)(void), char *out, size_t outlen)
{
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n;

	ck_assert_ptr_nonnull(tmp);
	fflush(stderr);
	dup2(fileno(tmp), STDERR_FILENO);
	fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(out, 1, outlen - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
}

static char bad_conf[64];

static void create_from_env(void)
{
	pool_t *pool = NULL;

	ck_assert_int_eq(pool_create(&pool, NULL), POOL_ECONFIG);
	ck_assert_ptr_null(pool);
}

START_TEST(bad_env_config_reason_on_stderr)
{
	char got[1024], want[256];
	FILE *f;
	int fd;

	snprintf(bad_conf, sizeof(bad_conf), "/tmp/check_hooks.XXXXXX");
	fd = mkstemp(bad_conf);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	fputs("[pool]\nmax_total = 10\nmax_idle = ten\n", f);
	fclose(f);
	setenv("TCPOOL_CONFIG", bad_conf, 1);
	stderr_of(create_from_env, got, sizeof(got));
	unsetenv("TCPOOL_CONFIG");
	unlink(bad_conf);
	snprintf(want, sizeof(want), "tcpool: pool_create: $TCPOOL_CONFIG: %s:3: "
		 "max_idle: not a number: \"ten\"\n", bad_conf);
	ck_assert_str_eq(got, want);
}
END_TEST

static void create_broken(void)
{
	pool_config_t *cfg = config_with("min_idle", "5", "max_idle", "2", NULL);
	pool_t *pool = NULL;

	ck_assert_int_eq(pool_create(&pool, cfg), POOL_ECONFIG);
	pool_config_free(cfg);
}

START_TEST(cross_key_reason_on_stderr)
{
	char got[1024];

	stderr_of(create_broken, got, sizeof(got));
	ck_assert_str_eq(got, "tcpool: pool_create: min_idle: min_idle (5) "
			 "exceeds max_idle (2)\n");
}
END_TEST

/* The config's log callback is the pool's from the start; pool_set_log
 * replaces it, and a config_copy keeps it. */
START_TEST(config_log_is_the_pools)
{
	pool_config_t *cfg = config_with("teardown", "abort", NULL);
	struct pool_config *copy;
	pool_t *pool;

	pool_config_set_log(cfg, log_capture, &logged);
	copy = config_copy(cfg);
	ck_assert_ptr_eq(copy->log_fn, log_capture);
	ck_assert_ptr_eq(copy->log_ud, &logged);
	pool_config_free(copy);
	log_reset();
	pool = create(cfg);
	pool_log(pool, POOL_LOG_WARN, "hello %d", 1);
	ck_assert_int_eq(log_count(), 1);
	ck_assert_str_eq(logged.msg[0], "hello 1");
	pool_set_log(pool, NULL, NULL);
	pool_destroy(pool);
	pool_config_set_log(NULL, log_capture, NULL); /* ignored */
}
END_TEST

/* ---- Redis with requirepass (issue 9.2) ---- */

#define REDIS_PASS "s3cret-9"
#define THREADS 4
#define REQUESTS 100

/* Send req, read one line; true if it starts with want. */
static bool resp(int fd, const char *req, const char *want)
{
	char buf[256];
	size_t off = 0, len = strlen(req);

	if (send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len)
		return false;
	while (off + 1 < sizeof(buf)) {
		ssize_t n = recv(fd, buf + off, 1, 0);

		if (n <= 0)
			return false;
		if (buf[off++] == '\n')
			break;
	}
	buf[off] = '\0';
	return strncmp(buf, want, strlen(want)) == 0;
}

static int redis_auth(pool_conn_t *c, void *ud)
{
	(void)ud;
	return resp(pool_conn_fd(c), "AUTH " REDIS_PASS "\r\n", "+OK") ? 0 : -1;
}

struct redis_run {
	pool_t *pool;
	const char *ep;
	atomic_int failures;
};

static void *redis_worker(void *arg)
{
	struct redis_run *r = arg;
	int i;

	for (i = 0; i < REQUESTS; i++) {
		pool_conn_t *c;
		bool ok;

		if (pool_get(r->pool, r->ep, &c) != 0) {
			atomic_fetch_add(&r->failures, 1);
			continue;
		}
		ok = resp(pool_conn_fd(c), "PING\r\n", "+PONG");
		if (!ok)
			atomic_fetch_add(&r->failures, 1);
		pool_put(r->pool, c, ok ? POOL_REUSE : POOL_BROKEN);
	}
	return NULL;
}

START_TEST(redis_requirepass_with_warm_connections)
{
	const char *const args[] = { "--requirepass", REDIS_PASS, NULL };
	struct realserver_opts o = { .extra_args = args };
	pool_hooks_t hk = { .on_connect = redis_auth };
	struct redis_run run = { .failures = 0 };
	pthread_t t[THREADS];
	struct realserver *rs;
	pool_config_t *cfg;
	pool_conn_t *c;
	int i;

	if (!realserver_available(RS_REDIS)) {
		printf("hooks: redis-server is not installed; test skipped\n");
		return;
	}
	rs = realserver_start(RS_REDIS, &o);
	ck_assert_ptr_nonnull(rs);
	run.ep = realserver_endpoint(rs);
	cfg = config_with("teardown", "peer-first",
			  "close_request", realserver_close_request(RS_REDIS),
			  "min_idle", "2", "max_idle", "8", NULL);
	ck_assert_int_eq(pool_config_set_hooks(cfg, NULL, &hk), 0);
	run.pool = create(cfg);
	/* The first get starts the min_idle refills. */
	ck_assert_int_eq(pool_get(run.pool, run.ep, &c), 0);
	pool_put(run.pool, c, POOL_REUSE);
	wait_for(stats_of(run.pool, run.ep).idle >= 2, 3000);
	for (i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, redis_worker, &run), 0);
	for (i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(atomic_load(&run.failures), 0);
	ck_assert_uint_eq(stats_of(run.pool, run.ep).gets, THREADS * REQUESTS + 1);
	pool_destroy(run.pool);
	realserver_stop(rs);
}
END_TEST

/* The same server, no hook: the NOAUTH errors, for contrast. */
START_TEST(redis_requirepass_needs_auth)
{
	const char *const args[] = { "--requirepass", REDIS_PASS, NULL };
	struct realserver_opts o = { .extra_args = args };
	struct realserver *rs;
	pool_t *pool;
	pool_conn_t *c;

	if (!realserver_available(RS_REDIS))
		return;
	rs = realserver_start(RS_REDIS, &o);
	ck_assert_ptr_nonnull(rs);
	pool = pool_with("teardown", "abort", NULL);
	ck_assert_int_eq(pool_get(pool, realserver_endpoint(rs), &c), 0);
	ck_assert(resp(pool_conn_fd(c), "PING\r\n", "-NOAUTH"));
	pool_put(pool, c, POOL_RETIRE);
	pool_destroy(pool);
	realserver_stop(rs);
}
END_TEST

Suite *hooks_suite(void)
{
	Suite *s = suite_create("hooks");
	TCase *tc = tcase_create("data");
	TCase *th = tcase_create("hooks");
	TCase *tl = tcase_create("log");
	TCase *tr = tcase_create("redis");

	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(tc, data_stays_across_put_get);
	tcase_add_test(tc, data_replace_and_null);
	tcase_add_test(tc, uses_count_hand_outs);
	tcase_add_test(tc, warm_first_hand_out);
	tcase_add_loop_test(tc, free_after_retire, 0, 2);
	tcase_add_test(tc, free_when_reuse_is_over_max_idle);
	tcase_add_loop_test(tc, free_when_maintenance_retires, 0, 3);
	tcase_add_test(tc, free_at_max_uses);
	tcase_add_test(tc, free_when_found_stale);
	tcase_add_test(tc, free_when_watch_sees_peer_close);
	tcase_add_test(tc, free_when_evicted);
	tcase_add_test(tc, destroy_leaves_checked_out_data);
	tcase_add_test(tc, fork_child_frees_its_copies);
	tcase_add_test(tc, free_after_peer_first_drain);
	tcase_add_test(tc, free_after_drain_fallback_at_destroy);
	suite_add_tcase(s, tc);

	tcase_set_timeout(th, 30);
	tcase_add_checked_fixture(th, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(th, on_connect_once_per_new_connection);
	tcase_add_loop_test(th, on_connect_runs_for_warm_connections, 0, 2);
	tcase_add_test(th, on_connect_failure);
	tcase_add_test(th, on_connect_failure_warm_is_logged);
	tcase_add_test(th, section_hooks_override_pool);
	tcase_add_test(th, set_hooks_bad_input_changes_nothing);
	tcase_add_test(th, close_request_hook_under_peer_first);
	tcase_add_test(th, close_request_hook_failure_falls_back);
	tcase_add_test(th, close_request_bytes_for_hooks);
	suite_add_tcase(s, th);

	tcase_set_timeout(tl, 30);
	tcase_add_checked_fixture(tl, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(tl, fallback_warning_is_rate_limited);
	tcase_add_test(tl, fallback_warning_outlives_quiet_endpoint);
	tcase_add_test(tl, broken_fallback_is_not_logged);
	tcase_add_test(tl, config_check_matches_create);
	tcase_add_test(tl, bad_env_config_reason_on_stderr);
	tcase_add_test(tl, cross_key_reason_on_stderr);
	tcase_add_test(tl, config_log_is_the_pools);
	suite_add_tcase(s, tl);

	tcase_set_timeout(tr, 60);
	tcase_add_checked_fixture(tr, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(tr, redis_requirepass_with_warm_connections);
	tcase_add_test(tr, redis_requirepass_needs_auth);
	suite_add_tcase(s, tr);
	return s;
}
