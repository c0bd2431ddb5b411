/*
 * The pool's own management of connection life: idle timeout, lifetime
 * with jitter, max_uses and the last-use hint, min_idle, leak warnings,
 * manual maintenance, destroy, fork.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixtures.h"
#include "pool-internal.h"
#include "suites.h"

START_TEST(idle_timeout_retires)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("idle_timeout_ms", "100", "teardown", "peer-first",
				 "close_request", "\"quit\\n\"", "close_timeout_ms", "5000", NULL);
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 1);
	/* The slot is freed (closed) once the drain is registered. */
	wait_for(stats_of(pool, ep).closed == 1, 2000);
	wait_drains(pool, 6000);
	ck_assert_uint_eq(stats_of(pool, ep).retired_peer_first, 1);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_ok, 1);
	/* Retired by the pool itself, peer-first: the server holds it. */
	tw_expect(ep, 0, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(max_uses_and_last_use_hint)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_uses", "3", NULL);
	struct lineserver_stats ss;
	int i;

	for (i = 1; i <= 6; i++) {
		pool_conn_t *c;

		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		ck_assert_int_eq(pool_conn_last_use(c), i % 3 == 0);
		ck_assert_int_eq(pool_conn_reused(c), i % 3 != 1);
		ping(c);
		pool_put(pool, c, POOL_REUSE);
	}
	lineserver_get_stats(ls, &ss);
	ck_assert_uint_eq(ss.accepted, 2);
	ck_assert_uint_eq(stats_of(pool, ep).closed, 2);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* The HTTP trick: on its last use the client asks the server to close
 * (here: "quit"), the server closes, and pool_put sees the EOF and closes
 * without sending anything: no TIME_WAIT on the client, even with the
 * close policy. */
START_TEST(last_use_lets_server_close_first)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_uses", "1", "teardown", "close", NULL);
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_last_use(c), 1);
	ck_assert_int_eq(send(pool_conn_fd(c), "quit\n", 5, MSG_NOSIGNAL), 5);
	usleep(50000);
	pool_put(pool, c, POOL_REUSE);
	tw_expect(ep, 0, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(lifetime_retires_with_jitter)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_lifetime_ms", "10000",
				 "lifetime_jitter_pct", "20", "max_idle", "40", NULL);
	pool_conn_t *c[40];
	uint64_t lo = UINT64_MAX, hi = 0;
	int i, distinct = 0;

	for (i = 0; i < 40; i++)
		ck_assert_int_eq(pool_get(pool, ep, &c[i]), 0);
	for (i = 0; i < 40; i++) {
		uint64_t life = c[i]->expires_ns - c[i]->created_ns;

		/* Within [80%, 100%] of the lifetime. */
		ck_assert_uint_le(life, MS_TO_NS(10000));
		ck_assert_uint_ge(life, MS_TO_NS(8000));
		distinct += life != (i ? c[i - 1]->expires_ns - c[i - 1]->created_ns : 0);
		lo = life < lo ? life : lo;
		hi = life > hi ? life : hi;
	}
	/* Spread, not one instant: at least a tenth of the jitter window. */
	ck_assert_uint_ge(hi - lo, MS_TO_NS(200));
	ck_assert_int_ge(distinct, 30);
	for (i = 0; i < 40; i++)
		pool_put(pool, c[i], POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(lifetime_expiry_is_enforced)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_lifetime_ms", "150", "lifetime_jitter_pct", "0", NULL);
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_REUSE);
	wait_for(stats_of(pool, ep).closed == 1, 2000);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Lifetime is enforced when a connection is handed out too, not only by
 * the maintenance (here there is none: manual mode, never called). */
START_TEST(lifetime_enforced_on_get)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("maintenance", "manual", "max_lifetime_ms", "50",
				 "lifetime_jitter_pct", "0", NULL);
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_REUSE);
	usleep(120000);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 0);
	ck_assert_int_eq(pool_conn_last_use(c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 2);
	ck_assert_uint_eq(stats_of(pool, ep).closed, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

struct churn {
	pool_t *pool;
	const char *ep;
	int failures;
};

static void *churn_thread(void *arg)
{
	struct churn *ch = arg;
	int i;

	for (i = 0; i < 300; i++) {
		pool_conn_t *c;

		if (pool_get(ch->pool, ch->ep, &c) != 0) {
			ch->failures++;
			continue;
		}
		pool_put(ch->pool, c, i % 3 == 0 ? POOL_RETIRE : POOL_REUSE);
	}
	return NULL;
}

/* Refills racing callers that take and retire the warm connections (run
 * under ASan and TSan in CI: a refill once read a connection another
 * thread had already freed). */
START_TEST(min_idle_refills_under_churn)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("min_idle", "2", "max_idle", "3", "max_active", "4",
				 "acquire_timeout_ms", "10000", NULL);
	struct churn ch[4];
	pthread_t t[4];
	pool_stats_t st;
	int i;

	for (i = 0; i < 4; i++) {
		ch[i] = (struct churn){ pool, lineserver_endpoint(ls), 0 };
		pthread_create(&t[i], NULL, churn_thread, &ch[i]);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(ch[i].failures, 0);
	}
	st = stats_of(pool, NULL);
	ck_assert_uint_eq(st.gets, 1200);
	ck_assert_uint_eq(st.in_use, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(min_idle_refills)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("min_idle", "3", "max_idle", "4", NULL);
	struct lineserver_stats ss;
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_REUSE);
	/* min_idle counts open connections, the checked-out one included:
	 * two warm ones join it, and all three end up idle. */
	wait_for(stats_of(pool, ep).idle == 3, 2000);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 3);
	/* connect() returns before the server thread gets to accept(). */
	wait_for((lineserver_get_stats(ls, &ss), ss.accepted) == stats_of(pool, ep).connects,
		 2000);
	/* Warm connections are idle, not in use. */
	ck_assert_uint_eq(stats_of(pool, ep).in_use, 0);
	/* The warm connections work. */
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

struct log_capture {
	pthread_mutex_t lock;
	char last[512];
	int count;
};

static void capture_log(int level, const char *msg, void *ud)
{
	struct log_capture *lc = ud;

	(void)level;
	pthread_mutex_lock(&lc->lock);
	snprintf(lc->last, sizeof(lc->last), "%s", msg);
	lc->count++;
	pthread_mutex_unlock(&lc->lock);
}

START_TEST(leak_warning_once)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("leak_warn_ms", "100", NULL);
	struct log_capture lc = { .lock = PTHREAD_MUTEX_INITIALIZER };
	pool_conn_t *c;
	char want[128];

	pool_set_log(pool, capture_log, &lc);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	usleep(400000);
	pthread_mutex_lock(&lc.lock);
	ck_assert_int_eq(lc.count, 1);
	snprintf(want, sizeof(want), "connection to %s (fd %d) checked out for", ep,
		 pool_conn_fd(c));
	ck_assert_msg(strstr(lc.last, want), "log line: %s", lc.last);
	ck_assert_ptr_nonnull(strstr(lc.last, "leak_warn_ms = 100"));
	pthread_mutex_unlock(&lc.lock);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(manual_maintenance)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("maintenance", "manual", "idle_timeout_ms", "100",
				 "teardown", "peer-first", "close_request", "\"quit\\n\"", "close_timeout_ms", "5000", NULL);
	pool_conn_t *c;
	int next = -2;

	ck_assert_int_ge(pool_maintenance_fd(pool), 0);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_int_eq(pool_maintain(pool, &next), 0);
	ck_assert_int_gt(next, 0);
	ck_assert_int_le(next, 100);
	usleep(200000);
	/* No thread: nothing happened on its own. */
	ck_assert_uint_eq(stats_of(pool, ep).idle, 1);
	ck_assert_int_eq(pool_maintain(pool, &next), 0);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 0);
	/* The peer-first drain is progressed by later calls. */
	while (stats_of(pool, NULL).draining) {
		ck_assert_int_ge(next, 0);
		usleep(10000);
		pool_maintain(pool, &next);
	}
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_ok, 1);
	/* Left: forgetting the endpoint, which holds nothing now, once it
	 * has been so for its idle timeout. */
	ck_assert_int_ge(next, 0);
	ck_assert_int_le(next, 100);
	usleep((useconds_t)(next + 10) * 1000);
	ck_assert_int_eq(pool_maintain(pool, &next), 0);
	ck_assert_int_eq(next, -1);
	{
		pool_stats_t st;

		ck_assert_int_eq(pool_stats(pool, ep, &st), POOL_EINVAL);
		ck_assert_int_eq(pool_stats(pool, NULL, &st), 0);
		ck_assert_uint_eq(st.peer_first_ok, 1);
	}
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Destroy retires idle peer-first connections in parallel under one
 * deadline: 20 servers that ignore the close request cost one timeout,
 * not twenty. */
START_TEST(destroy_drains_in_parallel)
{
	struct lineserver *ls = server_start(LS_QUIT_IGNORE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first", "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "300", "max_idle", "20", NULL);
	pool_conn_t *c[20];
	long long t0, took;
	int i;

	for (i = 0; i < 20; i++)
		ck_assert_int_eq(pool_get(pool, ep, &c[i]), 0);
	for (i = 0; i < 20; i++)
		pool_put(pool, c[i], POOL_REUSE);
	t0 = mono_ms();
	pool_destroy(pool);
	took = mono_ms() - t0;
	ck_assert_msg(took >= 250 && took < 2000, "destroy took %lld ms", took);
	tw_expect(ep, 0, 0); /* fallback abort */
	lineserver_stop(ls);
}
END_TEST

static void quiet_log(int level, const char *msg, void *ud)
{
	(void)level;
	(void)msg;
	(void)ud;
}

/* A connection still checked out at destroy stays open and usable; its
 * holder closes it. */
START_TEST(destroy_leaves_checked_out_open)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with(NULL);
	pool_conn_t *c;
	int fd;

	pool_set_log(pool, quiet_log, NULL);
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(ls), &c), 0);
	fd = pool_conn_fd(c);
	pool_destroy(pool);
	ck_assert_int_ne(fcntl(fd, F_GETFD), -1);
	ck_assert(line_roundtrip(fd, "PING", "PONG"));
	close(fd);
	lineserver_stop(ls);
}
END_TEST

/* After fork the child never uses the parent's connections: it connects
 * anew, and the parent's idle connection keeps working. */
/* Global, so that the child (which ends with _exit and cannot stop a
 * server whose thread stayed in the parent) still reaches it: valgrind
 * would call the inherited memory lost otherwise. */
static struct lineserver *volatile fork_test_server;

START_TEST(fork_child_connects_anew)
{
	struct lineserver *ls = fork_test_server = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first", "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "5000", NULL);
	struct lineserver_stats ss;
	pool_conn_t *c;
	int parent_fd, status;
	pid_t pid;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	parent_fd = pool_conn_fd(c);
	pool_put(pool, c, POOL_REUSE);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* Exit codes tell the parent which step failed. */
		int rc = pool_get(pool, ep, &c) != 0 ? 10 :
			 pool_conn_reused(c) ? 11 :
			 !line_roundtrip(pool_conn_fd(c), "PING", "PONG") ? 12 : 0;

		if (rc == 0)
			pool_put(pool, c, POOL_REUSE);
		pool_destroy(pool); /* must not send quit on the parent's one */
		_exit(rc);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "child: status %#x", status);
	lineserver_get_stats(ls, &ss);
	ck_assert_uint_eq(ss.accepted, 2);
	ck_assert_uint_eq(ss.quits, 1); /* the child's own connection only */
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_fd(c), parent_fd);
	ck_assert_int_eq(pool_conn_reused(c), 1);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

static pool_t *volatile ghost_pool; /* reachable from the child (valgrind) */

static void *get_and_put(void *arg)
{
	const char *ep = arg;
	pool_conn_t *c;

	if (pool_get(ghost_pool, ep, &c) == 0)
		pool_put(ghost_pool, c, POOL_REUSE);
	return NULL;
}

/* A parent thread blocked in pool_get at fork() does not exist in the
 * child: the child's pool must not hand its connections to it. */
START_TEST(fork_forgets_parent_waiters)
{
	struct lineserver *ls = fork_test_server = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_conn_t *held, *c;
	pthread_t waiter;
	int status;
	pid_t pid;

	ghost_pool = pool_with("max_active", "1", "acquire_timeout_ms", "3000", NULL);
	ck_assert_int_eq(pool_get(ghost_pool, ep, &held), 0);
	pthread_create(&waiter, NULL, get_and_put, (void *)ep);
	wait_for(stats_of(ghost_pool, ep).waits == 1, 2000);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int rc = pool_get(ghost_pool, ep, &c) != 0 ? 10 : 0;
		int fd = rc ? -1 : pool_conn_fd(c);

		if (rc == 0) {
			pool_put(ghost_pool, c, POOL_REUSE);
			rc = pool_get(ghost_pool, ep, &c) != 0 ? 11 :
			     pool_conn_fd(c) != fd ? 12 : 0;
		}
		_exit(rc);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "child: status %#x", status);
	pool_put(ghost_pool, held, POOL_REUSE);
	pthread_join(waiter, NULL);
	ck_assert_uint_eq(stats_of(ghost_pool, ep).reuses, 1);
	pool_destroy(ghost_pool);
	lineserver_stop(ls);
}
END_TEST

Suite *lifecycle_suite(void)
{
	Suite *s = suite_create("lifecycle");
	TCase *tc = tcase_create("maintenance");
	TCase *fd_free = tcase_create("descriptors");

	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(tc, idle_timeout_retires);
	tcase_add_test(tc, max_uses_and_last_use_hint);
	tcase_add_test(tc, last_use_lets_server_close_first);
	tcase_add_test(tc, lifetime_retires_with_jitter);
	tcase_add_test(tc, lifetime_expiry_is_enforced);
	tcase_add_test(tc, min_idle_refills);
	tcase_add_test(tc, min_idle_refills_under_churn);
	tcase_add_test(tc, lifetime_enforced_on_get);
	tcase_add_test(tc, leak_warning_once);
	tcase_add_test(tc, manual_maintenance);
	tcase_add_test(tc, destroy_drains_in_parallel);
	tcase_add_test(tc, fork_child_connects_anew);
	tcase_add_test(tc, fork_forgets_parent_waiters);
	suite_add_tcase(s, tc);
	/* This one hands a descriptor to the caller on purpose. */
	tcase_set_timeout(fd_free, 30);
	tcase_add_checked_fixture(fd_free, fixture_isolate_test, NULL);
	tcase_add_test(fd_free, destroy_leaves_checked_out_open);
	suite_add_tcase(s, fd_free);
	return s;
}
