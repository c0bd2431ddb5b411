/*
 * The endpoint table: an endpoint that holds nothing is forgotten after
 * its idle timeout, so a client that talks to many endpoints in turn (or
 * passes junk that never connects) does not keep them all; its counters
 * stay in the pool's totals; anything that still needs it keeps it.
 */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "fixtures.h"
#include "suites.h"

static void count_endpoint(const char *endpoint, const pool_stats_t *st, void *ud)
{
	(void)endpoint;
	(void)st;
	(*(unsigned *)ud)++;
}

static unsigned endpoints_known(pool_t *pool)
{
	unsigned n = 0;

	ck_assert_int_eq(pool_stats_foreach(pool, count_endpoint, &n), 0);
	return n;
}

/* A port on loopback nobody listens on: connects are refused at once. */
static uint16_t closed_port(void)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	uint16_t port = lineserver_port(ls);

	lineserver_stop(ls);
	return port;
}

/* 500 endpoints that were tried once and refused: all forgotten after
 * the idle timeout, their failures still counted pool-wide. */
START_TEST(forgets_endpoints_that_hold_nothing)
{
	pool_t *pool = pool_with("idle_timeout_ms", "1000", NULL);
	uint16_t port = closed_port();
	long long start = mono_ms();
	pool_stats_t st;
	char ep[64];
	pool_conn_t *c;
	int i;

	for (i = 0; i < 500; i++) {
		snprintf(ep, sizeof(ep), "127.0.%d.%d:%u", i / 250, i % 250 + 1, port);
		ck_assert_int_eq(pool_get(pool, ep, &c), POOL_ECONNREFUSED);
	}
	/* None is forgotten before its idle timeout (valgrind can make the
	 * loop itself take longer than that). */
	if (mono_ms() - start < 900)
		ck_assert_uint_eq(endpoints_known(pool), 500);
	wait_for(endpoints_known(pool) == 0, 5000);
	ck_assert_int_eq(pool_stats(pool, ep, &st), POOL_EINVAL);
	ck_assert_int_eq(pool_stats(pool, NULL, &st), 0);
	ck_assert_uint_eq(st.connect_failures, 500);
	pool_destroy(pool);
}
END_TEST

/* An endpoint with an idle connection is kept; once the idle timeout has
 * retired it, the endpoint goes too, and the same thread (whose lookup
 * record still names the freed endpoint) gets it back as new. */
START_TEST(forgets_after_last_connection_and_comes_back)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("idle_timeout_ms", "100", "teardown", "abort", NULL);
	pool_stats_t st;
	pool_conn_t *c;

	long long put;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	put = mono_ms();
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(endpoints_known(pool), 1);
	wait_for(stats_of(pool, NULL).closed == 1, 2000);
	/* Not at once: the connection goes after its idle timeout (100 ms),
	 * the endpoint another idle timeout later (a coarse tick early at
	 * most). */
	if (endpoints_known(pool) == 0)
		ck_assert_int_ge(mono_ms() - put, 190);
	wait_for(endpoints_known(pool) == 0, 2000);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.gets, 1); /* a new record */
	st = stats_of(pool, NULL);
	ck_assert_uint_eq(st.gets, 2);
	ck_assert_uint_eq(st.retired_abort, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

struct waiter_arg {
	pool_t *pool;
	const char *ep;
	int rc;
};

static void *get_and_put(void *arg)
{
	struct waiter_arg *w = arg;
	pool_conn_t *c;

	w->rc = pool_get(w->pool, w->ep, &c);
	if (w->rc == 0) {
		ping(c);
		pool_put(w->pool, c, POOL_REUSE);
	}
	return NULL;
}

/* max_total = 1: a caller for B waits, B holding nothing, for many idle
 * timeouts while A's connection is out. B must not be forgotten under
 * it: its wait and its connection are counted on the one record. */
START_TEST(waiting_caller_keeps_endpoint)
{
	struct lineserver *la = server_start(LS_QUIT_CLOSE);
	struct lineserver *lb = server_start(LS_QUIT_CLOSE);
	char a[64], b[64];
	pool_t *pool = pool_with("max_total", "1", "idle_timeout_ms", "20",
				 "acquire_timeout_ms", "5000", "teardown", "abort", NULL);
	struct waiter_arg w = { pool, b, -100 };
	pthread_t t;
	pool_conn_t *c;
	pool_stats_t st;

	snprintf(a, sizeof(a), "%s", lineserver_endpoint(la));
	snprintf(b, sizeof(b), "%s", lineserver_endpoint(lb));
	ck_assert_int_eq(pool_get(pool, a, &c), 0);
	pthread_create(&t, NULL, get_and_put, &w);
	wait_for(pool_stats(pool, b, &st) == 0 && st.waits == 1, 2000);
	usleep(300 * 1000); /* fifteen idle timeouts */
	pool_put(pool, c, POOL_RETIRE);
	pthread_join(t, NULL);
	ck_assert_int_eq(w.rc, 0);
	ck_assert_int_eq(pool_stats(pool, b, &st), 0);
	ck_assert_uint_eq(st.waits, 1);
	ck_assert_uint_eq(st.gets, 1);
	pool_destroy(pool);
	lineserver_stop(la);
	lineserver_stop(lb);
}
END_TEST

/* A peer-first drain under way keeps its endpoint past the idle timeout;
 * its outcome lands on it. */
START_TEST(drain_keeps_endpoint)
{
	struct lineserver *ls = server_start(LS_QUIT_IGNORE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("idle_timeout_ms", "20", "teardown", "peer-first",
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "400", NULL);
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_RETIRE);
	usleep(200 * 1000);
	ck_assert_uint_eq(stats_of(pool, ep).draining, 1);
	wait_drains(pool, 2000);
	ck_assert_uint_eq(stats_of(pool, NULL).peer_first_fallback, 1);
	wait_for(endpoints_known(pool) == 0, 2000);
	ck_assert_uint_eq(stats_of(pool, NULL).peer_first_fallback, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

Suite *table_suite(void)
{
	Suite *s = suite_create("table");
	TCase *tc = tcase_create("forget");

	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, forgets_endpoints_that_hold_nothing);
	tcase_add_test(tc, forgets_after_last_connection_and_comes_back);
	tcase_add_test(tc, waiting_caller_keeps_endpoint);
	tcase_add_test(tc, drain_keeps_endpoint);
	suite_add_tcase(s, tc);
	return s;
}
