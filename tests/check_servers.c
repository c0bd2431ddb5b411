/*
 * The pool against real servers: memcached, redis-server and nginx, each
 * started on a free port (tools/realserver.h). For each: every policy's
 * TIME_WAIT outcome, pooled reuse, and the server's own idle timeout
 * closing a pooled connection. Each test runs once per server (_i is the
 * rs_kind); a server that is not installed is skipped with a note.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixtures.h"
#include "realserver.h"
#include "suites.h"

#define N 20

Suite *servers_suite(void);

/* NULL (after a note) when the server is not installed. */
static struct realserver *start(enum rs_kind kind, unsigned idle_timeout_s)
{
	struct realserver_opts o = { .idle_timeout_s = idle_timeout_s };
	struct realserver *rs;

	if (!realserver_available(kind)) {
		printf("servers: %s is not installed; test skipped\n",
		       realserver_name(kind));
		return NULL;
	}
	rs = realserver_start(kind, &o);
	ck_assert_msg(rs != NULL, "cannot start %s", realserver_name(kind));
	return rs;
}

static void roundtrip(enum rs_kind kind, pool_conn_t *c)
{
	ck_assert_msg(realserver_roundtrip(kind, pool_conn_fd(c)),
		      "%s: no valid reply to %s", realserver_name(kind),
		      realserver_request(kind));
}

/* N connections, one request each, retired by policy with max_idle 0;
 * returns the stats once every drain is over (the pool is destroyed),
 * and in *ports the distinct client ports used. */
static pool_stats_t retire_n(enum rs_kind kind, struct realserver *rs,
			     const char *policy, unsigned *ports)
{
	uint16_t used[N];
	const char *ep = realserver_endpoint(rs);
	pool_t *pool = pool_with("teardown", policy,
				 "close_request", realserver_close_request(kind),
				 "close_timeout_ms", "2000",
				 "max_idle", "0", NULL);
	pool_stats_t st;
	int i;

	for (i = 0; i < N; i++) {
		pool_conn_t *c;

		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		used[i] = fd_local_port(pool_conn_fd(c));
		roundtrip(kind, c);
		pool_put(pool, c, POOL_RETIRE);
	}
	wait_drains(pool, 5000);
	*ports = distinct_ports(used, N);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.connects, N);
	ck_assert_uint_eq(st.closed, N);
	pool_destroy(pool);
	return st;
}

START_TEST(close_leaves_time_wait_on_client)
{
	struct realserver *rs = start(_i, 0);
	pool_stats_t st;
	unsigned ports;

	if (!rs)
		return;
	st = retire_n(_i, rs, "close", &ports);
	ck_assert_uint_eq(st.retired_close, N);
	/* The client's own TIME_WAIT keeps it from reusing a port. */
	ck_assert_uint_eq(ports, N);
	tw_expect(realserver_endpoint(rs), N, 0);
	realserver_stop(rs);
}
END_TEST

START_TEST(abort_leaves_no_time_wait)
{
	struct realserver *rs = start(_i, 0);
	pool_stats_t st;
	unsigned ports;

	if (!rs)
		return;
	st = retire_n(_i, rs, "abort", &ports);
	ck_assert_uint_eq(st.retired_abort, N);
	tw_expect(realserver_endpoint(rs), 0, 0);
	realserver_stop(rs);
}
END_TEST

/* The server's own close request (quit, QUIT, Connection: close) makes
 * it close first: the TIME_WAIT is all on the server's side. */
START_TEST(peer_first_moves_time_wait_to_server)
{
	struct realserver *rs = start(_i, 0);
	pool_stats_t st;
	unsigned ports;

	if (!rs)
		return;
	st = retire_n(_i, rs, "peer-first", &ports);
	ck_assert_uint_eq(st.retired_peer_first, N);
	ck_assert_uint_eq(st.peer_first_ok, N);
	ck_assert_uint_eq(st.peer_first_fallback, 0);
	ck_assert_uint_ge(ports, N / 2);
	tw_expect(realserver_endpoint(rs), 0, ports);
	realserver_stop(rs);
}
END_TEST

/* N requests over one connection; retired by peer-first at the end, so
 * N requests cost the server one TIME_WAIT and the client none. */
START_TEST(pooled_reuse)
{
	struct realserver *rs = start(_i, 0);
	pool_stats_t st;
	const char *ep;
	pool_t *pool;
	int i;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	pool = pool_with("teardown", "peer-first",
			 "close_request", realserver_close_request(_i), NULL);
	for (i = 0; i < N; i++) {
		pool_conn_t *c;

		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		ck_assert_int_eq(pool_conn_reused(c), i > 0);
		roundtrip(_i, c);
		pool_put(pool, c, POOL_REUSE);
	}
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.gets, N);
	ck_assert_uint_eq(st.connects, 1);
	ck_assert_uint_eq(st.reuses, N - 1);
	ck_assert_uint_eq(st.stale_dropped, 0);
	pool_destroy(pool);
	tw_expect(ep, 0, 1);
	realserver_stop(rs);
}
END_TEST

/* Wait until the peer closed fd (the pool's idle socket: poll only looks
 * at it), up to ms; true if it did. */
static bool peer_closed(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	return poll(&p, 1, ms) == 1 && (p.revents & (POLLRDHUP | POLLHUP));
}

/* The server's idle timeout (redis timeout, nginx keepalive_timeout,
 * memcached idle_timeout; one second, which memcached takes as "more
 * than one", so up to three) closes the pooled connection. The next
 * pool_get sees it, drops it and hands out a fresh one that works on
 * the first try; the dropped one was closed by the server first, so the
 * client holds no TIME_WAIT for it. */
START_TEST(server_idle_timeout_is_survived)
{
	struct realserver *rs = start(_i, 1);
	pool_conn_t *c;
	pool_stats_t st;
	const char *ep;
	uint16_t first_port;
	pool_t *pool;
	int fd;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	/* watch_idle off: this is pool_get's own check; with the watch the
	 * pool closes it first (check_ports.c). */
	pool = pool_with("watch_idle", "off", NULL);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	roundtrip(_i, c);
	fd = pool_conn_fd(c);
	first_port = fd_local_port(fd);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_msg(peer_closed(fd, 6000), "%s kept the idle connection open",
		      realserver_name(_i));
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 0);
	roundtrip(_i, c);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.stale_dropped, 1);
	ck_assert_uint_eq(st.connects, 2);
	ck_assert_uint_eq(st.connect_failures, 0);
	/* The server's TIME_WAIT of the dropped one, unless the new one
	 * came from its port and recycled it. */
	tw_expect(ep, 0, fd_local_port(pool_conn_fd(c)) == first_port ? 0 : 1);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	realserver_stop(rs);
}
END_TEST

Suite *servers_suite(void)
{
	Suite *s = suite_create("servers");
	TCase *tc = tcase_create("real-servers");

	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	tcase_add_loop_test(tc, close_leaves_time_wait_on_client, 0, RS_NKINDS);
	tcase_add_loop_test(tc, abort_leaves_no_time_wait, 0, RS_NKINDS);
	tcase_add_loop_test(tc, peer_first_moves_time_wait_to_server, 0, RS_NKINDS);
	tcase_add_loop_test(tc, pooled_reuse, 0, RS_NKINDS);
	tcase_add_loop_test(tc, server_idle_timeout_is_survived, 0, RS_NKINDS);
	suite_add_tcase(s, tc);
	return s;
}
