/*
 * pool_flush, against the built-in line server: idle connections go at
 * once, by the policy (TIME_WAIT where the policy puts it), checked-out
 * ones at their pool_put (and pool_conn_last_use says so first); NULL
 * covers every endpoint; bad input changes nothing.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fixtures.h"
#include "pool-internal.h"
#include "suites.h"

#define N 3

static unsigned server_open(struct lineserver *ls)
{
	struct lineserver_stats st;

	lineserver_get_stats(ls, &st);
	return st.open;
}

static uint64_t flushes_of(pool_t *pool, const char *endpoint)
{
	struct pool_endpoint *ep;
	uint64_t n;

	ck_assert_int_eq(pool_endpoint_lock(pool, endpoint, &ep), 0);
	n = ep->xstats.flushes;
	pool_endpoint_unlock(ep);
	return n;
}

/* The public policy code of a teardown name. */
static int policy_code(const char *policy)
{
	if (strcmp(policy, "close") == 0)
		return POOL_POLICY_CLOSE;
	if (strcmp(policy, "abort") == 0)
		return POOL_POLICY_ABORT;
	return POOL_POLICY_PEER_FIRST;
}

/* Retirements of endpoint (NULL: pool-wide) for reason by policy, and
 * of all reasons and policies (*all), as pool_stats_ex shows them. */
static uint64_t retired_as(pool_t *pool, const char *endpoint, int reason,
			   int policy, uint64_t *all)
{
	pool_stats_ex_t ex;
	int r, p;

	ck_assert_int_eq(pool_stats_ex(pool, endpoint, &ex, sizeof(ex)), 0);
	*all = 0;
	for (r = 0; r < POOL_REASON_COUNT; r++)
		for (p = 0; p < POOL_POLICY_COUNT; p++)
			*all += ex.retired[r][p];
	return ex.retired[reason][policy];
}

/* N idle connections to ls in pool. */
static void fill_idle(pool_t *pool, struct lineserver *ls)
{
	pool_conn_t *c[N];
	int i;

	for (i = 0; i < N; i++) {
		ck_assert_int_eq(pool_get(pool, lineserver_endpoint(ls), &c[i]), 0);
		ping(c[i]);
	}
	for (i = 0; i < N; i++)
		pool_put(pool, c[i], POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, lineserver_endpoint(ls)).idle, N);
}

/* Idle connections are closed within the call, by the policy. */
static void flush_idle(const char *policy, unsigned client_tw, unsigned server_tw)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", policy, "close_request", "\"quit\\n\"",
				 NULL);
	pool_stats_t st;
	uint64_t all;

	fill_idle(pool, ls);
	ck_assert_int_eq(pool_flush(pool, ep), 0);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.idle, 0);
	ck_assert_uint_eq(st.retired_close + st.retired_abort + st.retired_peer_first, N);
	/* Counted as flushed, by the endpoint's policy, and nothing else. */
	ck_assert_uint_eq(retired_as(pool, ep, POOL_REASON_FLUSH, policy_code(policy), &all), N);
	ck_assert_uint_eq(all, N);
	ck_assert_uint_eq(flushes_of(pool, ep), 1);
	wait_drains(pool, 2000);
	wait_for(server_open(ls) == 0, 2000);
	tw_expect(ep, client_tw, server_tw);
	pool_destroy(pool);
	lineserver_stop(ls);
}

START_TEST(idle_close)
{
	flush_idle("close", N, 0);
}
END_TEST

START_TEST(idle_abort)
{
	flush_idle("abort", 0, 0);
}
END_TEST

START_TEST(idle_peer_first)
{
	flush_idle("peer-first", 0, N);
}
END_TEST

/* A checked-out connection: told it is its last use, still the caller's
 * to use, retired at its put; one opened after the flush is not. */
START_TEST(checked_out_at_put)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", NULL);
	pool_conn_t *out, *idle, *fresh;
	uint64_t all;

	ck_assert_int_eq(pool_get(pool, ep, &out), 0);
	ck_assert_int_eq(pool_get(pool, ep, &idle), 0);
	pool_put(pool, idle, POOL_REUSE);
	ck_assert_int_eq(pool_conn_last_use(out), 0);
	ck_assert_int_eq(pool_flush(pool, ep), 0);
	ck_assert_int_eq(pool_conn_last_use(out), 1);
	wait_for(server_open(ls) == 1, 2000);
	ping(out);
	ck_assert_int_eq(pool_get(pool, ep, &fresh), 0);
	ck_assert(!pool_conn_reused(fresh));
	ck_assert_int_eq(pool_conn_last_use(fresh), 0);
	ck_assert_uint_eq(retired_as(pool, ep, POOL_REASON_FLUSH, POOL_POLICY_ABORT, &all), 1);
	ck_assert_uint_eq(all, 1);
	pool_put(pool, out, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 0);
	wait_for(server_open(ls) == 1, 2000);
	/* Retired at its put, for the flush. */
	ck_assert_uint_eq(retired_as(pool, ep, POOL_REASON_FLUSH, POOL_POLICY_ABORT, &all), 2);
	ck_assert_uint_eq(all, 2);
	pool_put(pool, fresh, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 1);
	tw_expect(ep, 0, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* NULL: every endpoint; a named one: that one only. */
/* A connection on neither list when the flush comes (pool_put handing it
 * straight to a waiting pool_get: it is off the busy list until the
 * waiter takes it) is still retired at its next put. The hand-over is
 * simulated by taking it off the busy list around the call. */
START_TEST(in_hand_over_at_put)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", NULL);
	pool_conn_t *c, *fresh;
	struct pool_endpoint *e;
	uint64_t all;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_endpoint_lock(pool, ep, &e), 0);
	DL_DELETE(e->busy, c);
	pool_endpoint_unlock(e);
	ck_assert_int_eq(pool_flush(pool, ep), 0);
	ck_assert_int_eq(pool_endpoint_lock(pool, ep, &e), 0);
	DL_APPEND(e->busy, c);
	pool_endpoint_unlock(e);
	ck_assert_int_eq(pool_conn_last_use(c), 1);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 0);
	ck_assert_uint_eq(retired_as(pool, ep, POOL_REASON_FLUSH, POOL_POLICY_ABORT, &all), 1);
	/* One opened after the flush is not touched. */
	ck_assert_int_eq(pool_get(pool, ep, &fresh), 0);
	ck_assert_int_eq(pool_conn_last_use(fresh), 0);
	pool_put(pool, fresh, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(null_covers_all)
{
	struct lineserver *a = server_start(LS_QUIT_CLOSE);
	struct lineserver *b = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("teardown", "abort", NULL);
	uint64_t all;

	fill_idle(pool, a);
	fill_idle(pool, b);
	ck_assert_int_eq(pool_flush(pool, lineserver_endpoint(a)), 0);
	ck_assert_uint_eq(stats_of(pool, lineserver_endpoint(a)).idle, 0);
	ck_assert_uint_eq(stats_of(pool, lineserver_endpoint(b)).idle, N);
	fill_idle(pool, a);
	ck_assert_int_eq(pool_flush(pool, NULL), 0);
	ck_assert_uint_eq(stats_of(pool, NULL).idle, 0);
	ck_assert_uint_eq(flushes_of(pool, lineserver_endpoint(a)), 2);
	ck_assert_uint_eq(flushes_of(pool, lineserver_endpoint(b)), 1);
	ck_assert_uint_eq(retired_as(pool, NULL, POOL_REASON_FLUSH, POOL_POLICY_ABORT, &all),
			  3 * N);
	ck_assert_uint_eq(all, 3 * N);
	wait_for(server_open(a) == 0 && server_open(b) == 0, 2000);
	pool_destroy(pool);
	lineserver_stop(a);
	lineserver_stop(b);
}
END_TEST

/* Bad input: a clear error, and nothing flushed. An endpoint the pool
 * holds no record of has nothing to flush: 0. */
START_TEST(bad_input)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", NULL);
	uint64_t all;
	const char *bad[] = { "", "nocolon", "host:", "host:99999", "[::1:80",
			      "unix:", "*:80" };
	size_t i;

	fill_idle(pool, ls);
	ck_assert_int_eq(pool_flush(NULL, ep), POOL_EINVAL);
	ck_assert_int_eq(pool_flush(NULL, NULL), POOL_EINVAL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(pool_flush(pool, bad[i]) == POOL_EENDPOINT, "\"%s\"", bad[i]);
	ck_assert_int_eq(pool_flush(pool, "127.0.0.1:1"), 0);
	ck_assert_int_eq(pool_stats(pool, "127.0.0.1:1", &(pool_stats_t){ 0 }), POOL_EINVAL);
	ck_assert_uint_eq(stats_of(pool, ep).idle, N);
	ck_assert_uint_eq(server_open(ls), N);
	ck_assert_uint_eq(flushes_of(pool, ep), 0);
	ck_assert_uint_eq(retired_as(pool, ep, POOL_REASON_FLUSH, POOL_POLICY_ABORT, &all), 0);
	ck_assert_uint_eq(all, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Flushing an empty pool, or twice, is harmless. */
START_TEST(empty_and_twice)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with(NULL);
	pool_conn_t *c;

	ck_assert_int_eq(pool_flush(pool, NULL), 0);
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(ls), &c), 0);
	ck_assert_int_eq(pool_flush(pool, NULL), 0);
	ck_assert_int_eq(pool_flush(pool, NULL), 0);
	ck_assert_int_eq(pool_conn_last_use(c), 1);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, NULL).idle, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

Suite *flush_suite(void)
{
	Suite *s = suite_create("flush");
	TCase *tc = tcase_create("flush");

	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(tc, idle_close);
	tcase_add_test(tc, idle_abort);
	tcase_add_test(tc, idle_peer_first);
	tcase_add_test(tc, checked_out_at_put);
	tcase_add_test(tc, in_hand_over_at_put);
	tcase_add_test(tc, null_covers_all);
	tcase_add_test(tc, bad_input);
	tcase_add_test(tc, empty_and_twice);
	suite_add_tcase(s, tc);
	return s;
}
