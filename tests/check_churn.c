/*
 * Churn: the pool must not open and close connections under a load it
 * could serve with the ones it has, since each close by the client leaves
 * a TIME_WAIT behind. min_idle under steady load, bursts above max_idle
 * (idle_shrink_ms), warm connections against max_total eviction.
 */
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include "fixtures.h"
#include "suites.h"

/* Take n connections at once, ping each, give them all back in order;
 * returns the descriptor of the last one put back (most recently used). */
static int burst(pool_t *pool, const char *ep, pool_conn_t **c, int n)
{
	int i, last = -1;

	for (i = 0; i < n; i++)
		ck_assert_int_eq(pool_get(pool, ep, &c[i]), 0);
	for (i = 0; i < n; i++)
		ping(c[i]);
	for (i = 0; i < n; i++) {
		last = pool_conn_fd(c[i]);
		pool_put(pool, c[i], POOL_REUSE);
	}
	return last;
}

/* The measurement: min_idle = max_idle = 2, two requests at a
 * time, 50 rounds. min_idle used to count idle connections only, so while
 * both were out the maintenance opened two more, and pool_put closed the
 * surplus: 53 connects and 50 client TIME_WAIT. min_idle now counts open
 * connections. idle_shrink_ms = 0 keeps the put-time cap of old, so this
 * tests min_idle alone. */
START_TEST(min_idle_steady_load_opens_no_more)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("min_idle", "2", "max_idle", "2",
				 "idle_shrink_ms", "0", "teardown", "close", NULL);
	pool_conn_t *c[2];
	pool_stats_t warm, st;
	int round;

	/* Warm-up: one use, then the warm connections. */
	ck_assert_int_eq(pool_get(pool, ep, &c[0]), 0);
	pool_put(pool, c[0], POOL_REUSE);
	wait_for(stats_of(pool, ep).idle >= 2, 2000);
	warm = stats_of(pool, ep);
	for (round = 0; round < 50; round++) {
		int i;

		for (i = 0; i < 2; i++)
			ck_assert_int_eq(pool_get(pool, ep, &c[i]), 0);
		/* Give the maintenance time to act while both are out. */
		usleep(3000);
		for (i = 0; i < 2; i++) {
			ping(c[i]);
			pool_put(pool, c[i], POOL_REUSE);
		}
	}
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.connects - warm.connects, 0);
	ck_assert_uint_eq(st.closed - warm.closed, 0);
	ck_assert_uint_eq(st.connects, 2);
	ck_assert_uint_eq(tw_client(ep), 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* A hand-out leaves the number of open connections as it was, so it must
 * not wake the maintenance: in manual mode the maintenance descriptor
 * stays quiet through a get and a put once min_idle is met. */
START_TEST(min_idle_hand_out_wakes_nobody)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("maintenance", "manual", "min_idle", "1", NULL);
	struct pollfd p = { .fd = pool_maintenance_fd(pool), .events = POLLIN };
	pool_conn_t *c;
	int i;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_int_eq(pool_maintain(pool, NULL), 0);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 1);
	for (i = 0; i < 5; i++) {
		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		ck_assert_int_eq(poll(&p, 1, 0), 0);
		pool_put(pool, c, POOL_REUSE);
		ck_assert_int_eq(poll(&p, 1, 0), 0);
	}
	ck_assert_uint_eq(stats_of(pool, ep).connects, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* max_total = 3 and an endpoint A that wants 3 warm connections: if warm
 * ones could fill the pool, each caller of another endpoint B would evict
 * one of A's, the maintenance would open it again, and so on. Warm
 * connections leave the last free slot to callers. */
START_TEST(min_idle_leaves_max_total_slot_to_callers)
{
	struct lineserver *la = server_start(LS_QUIT_CLOSE);
	struct lineserver *lb = server_start(LS_QUIT_CLOSE);
	char a[64], b[64], err[256];
	pool_config_t *cfg = config_with("max_total", "3", "teardown", "abort", NULL);
	pool_t *pool = NULL;
	pool_conn_t *c;
	int round;

	snprintf(a, sizeof(a), "%s", lineserver_endpoint(la));
	snprintf(b, sizeof(b), "%s", lineserver_endpoint(lb));
	ck_assert_int_eq(pool_config_set(cfg, a, "min_idle", "3", err, sizeof(err)), 0);
	ck_assert_int_eq(pool_create(&pool, cfg), 0);
	pool_config_free(cfg);
	ck_assert_int_eq(pool_get(pool, a, &c), 0);
	pool_put(pool, c, POOL_REUSE);
	wait_for(stats_of(pool, a).idle >= 2, 2000);
	usleep(50 * 1000); /* any further refill */
	for (round = 0; round < 20; round++) {
		ck_assert_int_eq(pool_get(pool, b, &c), 0);
		ping(c);
		pool_put(pool, c, POOL_RETIRE);
		usleep(5000); /* the maintenance's turn */
	}
	ck_assert_uint_eq(stats_of(pool, a).closed, 0);
	ck_assert_uint_eq(stats_of(pool, a).connects, 2);
	ck_assert_uint_eq(stats_of(pool, b).connects, 20);
	pool_destroy(pool);
	lineserver_stop(la);
	lineserver_stop(lb);
}
END_TEST

/* Bursts of 16 with max_idle = 4: with idle_shrink_ms (default 5000) the
 * next burst finds every connection of the last one; with 0, each burst
 * closes 12 and opens 12 again, a client TIME_WAIT each under close. */
static void bursts(const char *shrink, unsigned connects, unsigned tw)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = shrink ?
		pool_with("max_idle", "4", "teardown", "close",
			  "idle_shrink_ms", shrink, NULL) :
		pool_with("max_idle", "4", "teardown", "close", NULL);
	pool_conn_t *c[16];
	int i;

	for (i = 0; i < 5; i++)
		burst(pool, ep, c, 16);
	ck_assert_uint_eq(stats_of(pool, ep).connects, connects);
	tw_expect(ep, tw, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}

START_TEST(burst_reuses_with_default_shrink)
{
	bursts(NULL, 16, 0);
}
END_TEST

START_TEST(burst_churns_with_shrink_off)
{
	bursts("0", 16 + 4 * 12, 5 * 12); /* every burst retires 12 */
}
END_TEST

/* 8 idle with max_idle = 2: nothing goes at pool_put; then each period
 * retires half the surplus, rounded up (6 -> 3 -> 1 -> 0), least
 * recently used first, by the endpoint's policy. The order is the idle
 * list's: without the thread cache, which would keep the burst's first
 * put for this thread (check_park.c covers it under a shrink). */
START_TEST(shrink_halves_surplus_per_period)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_idle", "2", "idle_shrink_ms", "300",
				 "teardown", "abort", "thread_cache", "off", NULL);
	pool_conn_t *c[8];
	long long t0;
	int fd_mru;

	fd_mru = burst(pool, ep, c, 8);
	t0 = mono_ms();
	ck_assert_uint_eq(stats_of(pool, ep).idle, 8);
	wait_for(stats_of(pool, ep).idle == 5, 2000);
	/* Not before a period has passed (the coarse clock may be a tick
	 * early). */
	ck_assert_int_ge(mono_ms() - t0, 250);
	wait_for(stats_of(pool, ep).idle == 3, 2000);
	wait_for(stats_of(pool, ep).idle == 2, 2000);
	usleep(700 * 1000);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 2);
	ck_assert_uint_eq(stats_of(pool, ep).retired_abort, 6);
	tw_expect(ep, 0, 0);
	/* The survivors are the most recently used. */
	ck_assert_int_eq(pool_get(pool, ep, &c[0]), 0);
	ck_assert_int_eq(pool_conn_fd(c[0]), fd_mru);
	pool_put(pool, c[0], POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* A surplus that callers take back before the period ends is no surplus:
 * nothing is retired. */
START_TEST(shrink_stops_when_callers_take_surplus)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_idle", "2", "idle_shrink_ms", "200", NULL);
	pool_conn_t *c[6];
	int i;

	burst(pool, ep, c, 6);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(pool_get(pool, ep, &c[i]), 0);
	usleep(500 * 1000);
	ck_assert_uint_eq(stats_of(pool, ep).closed, 0);
	for (i = 0; i < 4; i++)
		pool_put(pool, c[i], POOL_REUSE);
	wait_for(stats_of(pool, ep).idle == 2, 3000);
	ck_assert_uint_eq(stats_of(pool, ep).closed, 4);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

Suite *churn_suite(void)
{
	Suite *s = suite_create("churn");
	TCase *tc = tcase_create("churn");

	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, min_idle_steady_load_opens_no_more);
	tcase_add_test(tc, min_idle_hand_out_wakes_nobody);
	tcase_add_test(tc, min_idle_leaves_max_total_slot_to_callers);
	tcase_add_test(tc, burst_reuses_with_default_shrink);
	tcase_add_test(tc, burst_churns_with_shrink_off);
	tcase_add_test(tc, shrink_halves_surplus_per_period);
	tcase_add_test(tc, shrink_stops_when_callers_take_surplus);
	suite_add_tcase(s, tc);
	return s;
}
