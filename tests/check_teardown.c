/*
 * Teardown policies, asserted from the kernel: after N retirements, the
 * TIME_WAIT sockets on each side are what the policy promises.
 */
#include <string.h>
#include <unistd.h>

#include "fixtures.h"
#include "suites.h"

#define N 20

/* N connections, each used once and retired by policy; destroy waits for
 * drains. Returns the server's endpoint (the server is left running so
 * the caller can count its side, then stop it). */
static void retire_n(struct lineserver *ls, const char *policy, const char *extra_key,
		     const char *extra_value, pool_put_mode mode)
{
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", policy,
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "5000",
				 "max_idle", "0",
				 extra_key, extra_value, NULL);
	int i;

	for (i = 0; i < N; i++) {
		pool_conn_t *c;

		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		ping(c);
		pool_put(pool, c, mode);
	}
	wait_drains(pool, 3000);
	ck_assert_uint_eq(stats_of(pool, ep).connects, N);
	ck_assert_uint_eq(stats_of(pool, ep).closed, N);
	pool_destroy(pool);
}

START_TEST(close_leaves_time_wait_on_client)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);

	retire_n(ls, "close", NULL, NULL, POOL_RETIRE);
	tw_expect(lineserver_endpoint(ls), N, 0);
	lineserver_stop(ls);
}
END_TEST

START_TEST(abort_leaves_no_time_wait)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	struct lineserver_stats st;

	retire_n(ls, "abort", NULL, NULL, POOL_RETIRE);
	tw_expect(lineserver_endpoint(ls), 0, 0);
	lineserver_get_stats(ls, &st);
	ck_assert_uint_eq(st.quits, 0); /* abort sends no close request */
	lineserver_stop(ls);
}
END_TEST

START_TEST(peer_first_moves_time_wait_to_server)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	struct lineserver_stats st;

	retire_n(ls, "peer-first", NULL, NULL, POOL_RETIRE);
	tw_expect(lineserver_endpoint(ls), 0, N);
	lineserver_get_stats(ls, &st);
	ck_assert_uint_eq(st.quits, N);
	ck_assert_uint_eq(st.closed_by_server, N);
	lineserver_stop(ls);
}
END_TEST

START_TEST(peer_first_counts_successes)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first",
				 "close_request", "\"quit\\n\"", "close_timeout_ms", "5000", NULL);
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_RETIRE);
	wait_drains(pool, 2000);
	ck_assert_uint_eq(stats_of(pool, ep).retired_peer_first, 1);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_ok, 1);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_fallback, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* The server ignores the close request: fallback (abort) at the deadline,
 * no TIME_WAIT anywhere, and pool_put did not wait for it. */
START_TEST(peer_first_falls_back_to_abort)
{
	struct lineserver *ls = server_start(LS_QUIT_IGNORE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first",
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "300", "fallback", "abort", NULL);
	long long t0, put_ms;
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	t0 = mono_ms();
	pool_put(pool, c, POOL_RETIRE);
	put_ms = mono_ms() - t0;
	/* Not a speed target: pool_put must not wait the 300 ms for the peer. */
	ck_assert_msg(put_ms < 150, "pool_put took %lld ms", put_ms);
	ck_assert_uint_eq(stats_of(pool, ep).draining, 1);
	wait_drains(pool, 3000);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_fallback, 1);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_ok, 0);
	tw_expect(ep, 0, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(peer_first_falls_back_to_close)
{
	struct lineserver *ls = server_start(LS_QUIT_REPLY_NO_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first",
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "100", "fallback", "close", NULL);
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_RETIRE);
	wait_drains(pool, 3000);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_fallback, 1);
	/* The "+OK" reply was drained, so close() sent a FIN, not an RST:
	 * the client holds the TIME_WAIT, as a plain close does. */
	tw_expect(ep, 1, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* A peer that never stops sending cannot keep the drain reading: the
 * budget runs out long before the deadline and the fallback applies. */
START_TEST(peer_first_flood_is_bounded)
{
	struct lineserver *ls = server_start(LS_QUIT_FLOOD);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first",
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "10000", NULL);
	long long t0;
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	t0 = mono_ms();
	pool_put(pool, c, POOL_RETIRE);
	wait_drains(pool, 5000);
	ck_assert_msg(mono_ms() - t0 < 5000, "the drain read for %lld ms", mono_ms() - t0);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_fallback, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* POOL_BROKEN never sends the close request. */
START_TEST(broken_sends_no_close_request)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	struct lineserver_stats st;

	retire_n(ls, "peer-first", "fallback", "abort", POOL_BROKEN);
	lineserver_get_stats(ls, &st);
	ck_assert_uint_eq(st.quits, 0);
	tw_expect(lineserver_endpoint(ls), 0, 0);
	lineserver_stop(ls);
}
END_TEST

/* A connection the server already closed is just closed, whatever the
 * policy: no TIME_WAIT on the client, and the server's own close completes
 * into its TIME_WAIT (an abort's RST would kill it in FIN_WAIT2 and leave
 * nothing; a close request would be wasted on it). */
static const char *const closed_policies[] = { "close", "abort", "peer-first" };

START_TEST(closed_by_peer_is_just_closed)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", closed_policies[_i],
				 "close_request", "\"quit\\n\"", NULL);
	struct lineserver_stats st;
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	lineserver_close_all(ls);
	usleep(50000);
	pool_put(pool, c, POOL_RETIRE);
	tw_expect(ep, 0, 1);
	lineserver_get_stats(ls, &st);
	ck_assert_uint_eq(st.quits, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Pooled: TIME_WAIT follows connections retired, not requests. */
START_TEST(pooled_tw_follows_retirements)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first",
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "5000", "max_uses", "10", NULL);
	int i;

	for (i = 0; i < 100; i++) {
		pool_conn_t *c;

		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		ping(c);
		pool_put(pool, c, POOL_REUSE);
	}
	pool_destroy(pool);
	tw_expect(ep, 0, 10);
	lineserver_stop(ls);
}
END_TEST

Suite *teardown_suite(void)
{
	Suite *s = suite_create("teardown");
	TCase *tc = tcase_create("policies");

	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(tc, close_leaves_time_wait_on_client);
	tcase_add_test(tc, abort_leaves_no_time_wait);
	tcase_add_test(tc, peer_first_moves_time_wait_to_server);
	tcase_add_test(tc, peer_first_counts_successes);
	tcase_add_test(tc, peer_first_falls_back_to_abort);
	tcase_add_test(tc, peer_first_falls_back_to_close);
	tcase_add_test(tc, peer_first_flood_is_bounded);
	tcase_add_test(tc, broken_sends_no_close_request);
	tcase_add_loop_test(tc, closed_by_peer_is_just_closed, 0,
			    (int)(sizeof(closed_policies) / sizeof(closed_policies[0])));
	tcase_add_test(tc, pooled_tw_follows_retirements);
	suite_add_tcase(s, tc);
	return s;
}
