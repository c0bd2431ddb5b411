/*
 * pool_socket: sockets the caller connects (libcurl's
 * CURLOPT_OPENSOCKETFUNCTION), against the built-in line server. What a
 * user checks: the socket carries the endpoint's options, counts under
 * the caps, and pool_put retires it by the policy (TIME_WAIT on each
 * side as the policy promises) or keeps it for pool_get only when it is
 * a connection worth keeping.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fixtures.h"
#include "suites.h"

#define N 5

static int sockopt_int(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	ck_assert_int_eq(getsockopt(fd, level, name, &v, &len), 0);
	return v;
}

/* Connect fd to the line server on 127.0.0.1, as the caller's library
 * would. */
static void connect_to(int fd, const struct lineserver *ls)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_port = htons(lineserver_port(ls)),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	ck_assert_msg(connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0,
		      "connect: %s", strerror(errno));
}

/* A socket from pool_socket, connected by the test, one PING done. */
static pool_conn_t *connected_socket(pool_t *pool, const struct lineserver *ls)
{
	pool_conn_t *c;

	ck_assert_int_eq(pool_socket(pool, lineserver_endpoint(ls), AF_INET, &c), 0);
	connect_to(pool_conn_fd(c), ls);
	ping(c);
	return c;
}

static void local_addr(int fd, char *host, size_t len, uint16_t *port)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);

	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	inet_ntop(AF_INET, &sin.sin_addr, host, (socklen_t)len);
	*port = ntohs(sin.sin_port);
}

/* ---- options ------------------------------------------------------------ */

/* The socket carries what the pool's own connects give theirs, read back
 * from the kernel; the source_address round robin is shared with
 * pool_get; the port is chosen inside local_port_range at the caller's
 * connect (IP_BIND_ADDRESS_NO_PORT: the bind took none). */
START_TEST(options_applied)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	uint16_t sport = lineserver_port(ls), port;
	unsigned lo = sport >= 50000 && sport < 50010 ? 51000 : 50000;
	char range[32], host[64];
	pool_conn_t *c, *g;
	pool_t *pool;
	int fd;

	snprintf(range, sizeof(range), "%u-%u", lo, lo + 9);
	pool = pool_with("tcp_keepalive", "on", "tcp_keepalive_idle_ms", "1500",
			 "tcp_keepalive_interval_ms", "3000",
			 "tcp_keepalive_count", "4", "tcp_user_timeout_ms", "2500",
			 "source_address", "127.0.0.2, 127.0.0.3",
			 "local_port_range", range, NULL);
	ck_assert_int_eq(pool_socket(pool, lineserver_endpoint(ls), AF_INET, &c), 0);
	fd = pool_conn_fd(c);
	ck_assert_int_eq(sockopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 1);
	ck_assert_int_eq(sockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
	ck_assert_int_eq(sockopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 2); /* s, up */
	ck_assert_int_eq(sockopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 3);
	ck_assert_int_eq(sockopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
	ck_assert_int_eq(sockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 2500);
	ck_assert_int_eq(sockopt_int(fd, SOL_SOCKET, SO_DOMAIN), AF_INET);
	/* Blocking and close-on-exec, like pool_get's; not connected. */
	ck_assert_int_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	/* Bound to the source address, with no port yet. */
	local_addr(fd, host, sizeof(host), &port);
	ck_assert_str_eq(host, "127.0.0.2");
	ck_assert_uint_eq(port, 0);
	connect_to(fd, ls);
	ping(c);
	local_addr(fd, host, sizeof(host), &port);
	ck_assert_str_eq(host, "127.0.0.2");
	ck_assert_msg(port >= lo && port <= lo + 9, "port %u outside %s", port, range);
	/* The next socket, pool_get's or pool_socket's, takes the next. */
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(ls), &g), 0);
	local_addr(pool_conn_fd(g), host, sizeof(host), &port);
	ck_assert_str_eq(host, "127.0.0.3");
	pool_put(pool, g, POOL_RETIRE);
	pool_put(pool, c, POOL_RETIRE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* A source_address that is not this host's fails as pool_get fails:
 * POOL_ECONNECT with errno EADDRNOTAVAIL, and nothing held. */
START_TEST(nonlocal_source)
{
	pool_t *pool = pool_with("source_address", "10.255.1.1", NULL);
	pool_conn_t *c;

	errno = 0;
	ck_assert_int_eq(pool_socket(pool, "127.0.0.1:1", AF_INET, &c), POOL_ECONNECT);
	ck_assert_int_eq(errno, EADDRNOTAVAIL);
	ck_assert_uint_eq(stats_of(pool, "127.0.0.1:1").in_use, 0);
	ck_assert_uint_eq(stats_of(pool, "127.0.0.1:1").connects, 0);
	pool_destroy(pool);
}
END_TEST

/* ---- caps ----------------------------------------------------------------- */

static long long busy_ms(pool_t *pool, const char *ep)
{
	long long t0 = mono_ms();
	pool_conn_t *c = (pool_conn_t *)&t0;

	ck_assert_int_eq(pool_socket(pool, ep, AF_INET, &c), POOL_EBUSY);
	ck_assert_ptr_null(c);
	return mono_ms() - t0;
}

/* A socket takes a slot under max_active and max_total like a pool_get
 * connection; at a cap pool_socket fails at once (no waiting, however
 * long acquire_timeout_ms), and a retired socket frees its slot. */
START_TEST(caps_without_waiting)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	struct lineserver *other = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_active", "1", "max_total", "2",
				 "acquire_timeout_ms", "1000", NULL);
	pool_conn_t *c, *d, *g;

	c = connected_socket(pool, ls);
	ck_assert_uint_eq(stats_of(pool, ep).in_use, 1);
	ck_assert_int_lt(busy_ms(pool, ep), 500);
	/* pool_get counts it too: it waits, then gives up. */
	ck_assert_int_eq(pool_get(pool, ep, &g), POOL_EBUSY);
	/* max_total: one more endpoint fits, then none. */
	d = connected_socket(pool, other);
	ck_assert_int_lt(busy_ms(pool, "127.0.0.1:1"), 500);
	pool_put(pool, c, POOL_RETIRE);
	pool_put(pool, d, POOL_RETIRE);
	ck_assert_uint_eq(stats_of(pool, ep).in_use, 0);
	c = connected_socket(pool, ls);
	pool_put(pool, c, POOL_RETIRE);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 2);
	ck_assert_uint_eq(stats_of(pool, ep).closed, 2);
	ck_assert_uint_eq(stats_of(pool, ep).gets, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
	lineserver_stop(other);
}
END_TEST

/* ---- retirement by policy ------------------------------------------------ */

/* N sockets connected by the caller, used, retired by policy; returns
 * the server's count of close requests. */
static unsigned retire_sockets(struct lineserver *ls, const char *policy,
			       pool_put_mode mode)
{
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", policy, "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "5000", "fallback", "abort",
				 NULL);
	struct lineserver_stats st;
	int i;

	for (i = 0; i < N; i++)
		pool_put(pool, connected_socket(pool, ls), mode);
	wait_drains(pool, 3000);
	ck_assert_uint_eq(stats_of(pool, ep).connects, N);
	ck_assert_uint_eq(stats_of(pool, ep).closed, N);
	ck_assert_uint_eq(stats_of(pool, ep).in_use, 0);
	if (strcmp(policy, "peer-first") == 0 && mode == POOL_RETIRE)
		ck_assert_uint_eq(stats_of(pool, ep).peer_first_ok, N);
	pool_destroy(pool);
	lineserver_get_stats(ls, &st);
	return (unsigned)st.quits;
}

START_TEST(retire_close)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);

	ck_assert_uint_eq(retire_sockets(ls, "close", POOL_RETIRE), 0);
	tw_expect(lineserver_endpoint(ls), N, 0);
	lineserver_stop(ls);
}
END_TEST

START_TEST(retire_abort)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);

	ck_assert_uint_eq(retire_sockets(ls, "abort", POOL_RETIRE), 0);
	tw_expect(lineserver_endpoint(ls), 0, 0);
	lineserver_stop(ls);
}
END_TEST

/* The case pool_socket exists for: the server closes first. */
START_TEST(retire_peer_first)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);

	ck_assert_uint_eq(retire_sockets(ls, "peer-first", POOL_RETIRE), N);
	tw_expect(lineserver_endpoint(ls), 0, N);
	lineserver_stop(ls);
}
END_TEST

/* BROKEN never sends the close request: peer-first's fallback (abort). */
START_TEST(broken_sends_nothing)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);

	ck_assert_uint_eq(retire_sockets(ls, "peer-first", POOL_BROKEN), 0);
	tw_expect(lineserver_endpoint(ls), 0, 0);
	lineserver_stop(ls);
}
END_TEST

/* ---- REUSE ------------------------------------------------------------------ */

/* A connected, healthy socket put back with REUSE serves the next
 * pool_get, and is watched from then on like the pool's own: the server
 * closing it while idle is seen at once. */
START_TEST(reuse_connected)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("validate_idle_ms", "60000", NULL);
	pool_conn_t *c = connected_socket(pool, ls), *g;
	int fd = pool_conn_fd(c);

	ck_assert_uint_eq(pool_conn_uses(c), 1);
	ck_assert_int_eq(pool_conn_reused(c), 0);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 1);
	ck_assert_int_eq(pool_get(pool, ep, &g), 0);
	ck_assert_int_eq(pool_conn_fd(g), fd);
	ck_assert_int_eq(pool_conn_reused(g), 1);
	ck_assert_uint_eq(pool_conn_uses(g), 2);
	ping(g);
	pool_put(pool, g, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).reuses, 1);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 1);
	lineserver_close_all(ls);
	wait_for(stats_of(pool, ep).peer_closed_idle == 1, 2000);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Never connected, REUSE: closed, not kept, even where pool_get would
 * not validate it (validate_idle_ms); the next pool_get connects anew.
 * Under peer-first nothing is sent and no fallback counted: there is no
 * server to ask. */
START_TEST(reuse_never_connected)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("validate_idle_ms", "60000", "teardown", "peer-first",
				 "close_request", "\"quit\\n\"", NULL);
	pool_conn_t *c, *g;
	pool_stats_t st;

	ck_assert_int_eq(pool_socket(pool, ep, AF_INET, &c), 0);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_int_eq(pool_socket(pool, ep, AF_INET, &c), 0);
	pool_put(pool, c, POOL_RETIRE);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.idle, 0);
	ck_assert_uint_eq(st.in_use, 0);
	ck_assert_uint_eq(st.closed, 2);
	ck_assert_uint_eq(st.peer_first_fallback, 0);
	ck_assert_uint_eq(st.retired_peer_first, 0);
	ck_assert_int_eq(pool_get(pool, ep, &g), 0);
	ck_assert_int_eq(pool_conn_reused(g), 0);
	ping(g);
	pool_put(pool, g, POOL_RETIRE);
	ck_assert_uint_eq(stats_of(pool, ep).reuses, 0);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 3);
	pool_destroy(pool);
	tw_expect(ep, 0, 1); /* pool_get's connection, peer-first */
	lineserver_stop(ls);
}
END_TEST

/* Connected, but the server closed it before the put: dropped, not kept. */
START_TEST(reuse_peer_closed)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("validate_idle_ms", "60000", NULL);
	pool_conn_t *c = connected_socket(pool, ls);
	char buf[8];

	lineserver_close_all(ls);
	ck_assert_int_eq(recv(pool_conn_fd(c), buf, sizeof(buf), MSG_PEEK), 0);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 0);
	ck_assert_uint_eq(stats_of(pool, ep).closed, 1);
	pool_destroy(pool);
	tw_expect(ep, 0, 1); /* the server closed first */
	lineserver_stop(ls);
}
END_TEST

static int on_connect_calls;

static int count_connect(pool_conn_t *c, void *ud)
{
	(void)c;
	(void)ud;
	on_connect_calls++;
	return 0;
}

/* With an on_connect hook, pool_get callers expect what it made of a
 * connection; a socket the caller connected never had it: REUSE retires
 * it by the policy (close here: the client's TIME_WAIT), and the hook
 * never runs for it. */
START_TEST(reuse_with_on_connect_retires)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_config_t *cfg = config_with("teardown", "close", NULL);
	pool_hooks_t hooks = { .on_connect = count_connect };
	pool_t *pool = NULL;

	on_connect_calls = 0;
	ck_assert_int_eq(pool_config_set_hooks(cfg, NULL, &hooks), 0);
	ck_assert_int_eq(pool_create(&pool, cfg), 0);
	pool_config_free(cfg);
	pool_put(pool, connected_socket(pool, ls), POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 0);
	ck_assert_uint_eq(stats_of(pool, ep).retired_close, 1);
	ck_assert_int_eq(on_connect_calls, 0);
	tw_expect(ep, 1, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

static int close_hook_calls;

static int count_close_request(pool_conn_t *c, void *ud)
{
	(void)c;
	(void)ud;
	close_hook_calls++;
	return -1;
}

/* A close_request hook may count on what on_connect set up (a TLS
 * session); a pool_socket connection never had on_connect, so peer-first
 * sends it the endpoint's bytes, not the hook: the server closes first. */
START_TEST(retire_skips_hook_on_connect_never_saw)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_config_t *cfg = config_with("teardown", "peer-first",
					 "close_request", "\"quit\\n\"", NULL);
	pool_hooks_t hooks = { .on_connect = count_connect,
			       .close_request = count_close_request };
	struct lineserver_stats lst;
	pool_t *pool = NULL;

	on_connect_calls = close_hook_calls = 0;
	ck_assert_int_eq(pool_config_set_hooks(cfg, NULL, &hooks), 0);
	ck_assert_int_eq(pool_create(&pool, cfg), 0);
	pool_config_free(cfg);
	pool_put(pool, connected_socket(pool, ls), POOL_RETIRE);
	wait_drains(pool, 3000);
	ck_assert_int_eq(close_hook_calls, 0);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_ok, 1);
	lineserver_get_stats(ls, &lst);
	ck_assert_uint_eq(lst.quits, 1);
	tw_expect(ep, 0, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- arguments, families, unix ------------------------------------------- */

START_TEST(bad_arguments)
{
	pool_t *pool = pool_with("max_idle", "1", NULL);
	pool_conn_t *c = (pool_conn_t *)&pool;

	ck_assert_int_eq(pool_socket(NULL, "127.0.0.1:1", AF_INET, &c), POOL_EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_int_eq(pool_socket(pool, NULL, AF_INET, &c), POOL_EINVAL);
	ck_assert_int_eq(pool_socket(pool, "127.0.0.1:1", AF_INET, NULL), POOL_EINVAL);
	ck_assert_int_eq(pool_socket(pool, "127.0.0.1", AF_INET, &c), POOL_EENDPOINT);
	ck_assert_int_eq(pool_socket(pool, "127.0.0.1:70000", AF_INET, &c),
			 POOL_EENDPOINT);
	/* A literal's family is the only one that can reach it. */
	ck_assert_int_eq(pool_socket(pool, "127.0.0.1:1", AF_INET6, &c), POOL_EINVAL);
	ck_assert_int_eq(pool_socket(pool, "[::1]:1", AF_INET, &c), POOL_EINVAL);
	ck_assert_int_eq(pool_socket(pool, "127.0.0.1:1", AF_UNIX, &c), POOL_EINVAL);
	ck_assert_int_eq(pool_socket(pool, "127.0.0.1:1", 12345, &c), POOL_EINVAL);
	/* A name: the caller's resolver says which; AF_UNSPEC cannot. */
	ck_assert_int_eq(pool_socket(pool, "localhost:1", AF_UNSPEC, &c), POOL_EINVAL);
	ck_assert_int_eq(pool_socket(pool, "unix:/nonexistent", AF_INET, &c), POOL_EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(stats_of(pool, NULL).in_use, 0);
	pool_destroy(pool);
}
END_TEST

/* What each family asked for gives. */
START_TEST(families)
{
	pool_t *pool = pool_with("max_idle", "1", NULL);
	pool_conn_t *c;

	ck_assert_int_eq(pool_socket(pool, "127.0.0.1:1", AF_UNSPEC, &c), 0);
	ck_assert_int_eq(sockopt_int(pool_conn_fd(c), SOL_SOCKET, SO_DOMAIN), AF_INET);
	pool_put(pool, c, POOL_RETIRE);
	ck_assert_int_eq(pool_socket(pool, "[::1]:1", AF_UNSPEC, &c), 0);
	ck_assert_int_eq(sockopt_int(pool_conn_fd(c), SOL_SOCKET, SO_DOMAIN), AF_INET6);
	pool_put(pool, c, POOL_RETIRE);
	ck_assert_int_eq(pool_socket(pool, "localhost:1", AF_INET6, &c), 0);
	ck_assert_int_eq(sockopt_int(pool_conn_fd(c), SOL_SOCKET, SO_DOMAIN), AF_INET6);
	pool_put(pool, c, POOL_RETIRE);
	ck_assert_uint_eq(stats_of(pool, NULL).connects, 3);
	ck_assert_uint_eq(stats_of(pool, NULL).closed, 3);
	pool_destroy(pool);
}
END_TEST

/* A unix: endpoint gets an AF_UNIX socket; connected and put back, it
 * serves pool_get like a TCP one. */
START_TEST(unix_endpoint)
{
	char path[64];
	struct lineserver_opts o = { .family = AF_UNIX, .unix_path = path };
	struct lineserver *ls;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	pool_t *pool = pool_with("validate_idle_ms", "60000", NULL);
	pool_conn_t *c, *g;

	snprintf(path, sizeof(path), "/tmp/tcpool-socket-%d.sock", (int)getpid());
	ls = lineserver_start(&o);
	ck_assert_ptr_nonnull(ls);
	ck_assert_int_eq(pool_socket(pool, lineserver_endpoint(ls), AF_UNSPEC, &c), 0);
	ck_assert_int_eq(sockopt_int(pool_conn_fd(c), SOL_SOCKET, SO_DOMAIN), AF_UNIX);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	ck_assert_int_eq(connect(pool_conn_fd(c), (struct sockaddr *)&sun, sizeof(sun)), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(ls), &g), 0);
	ck_assert_int_eq(pool_conn_reused(g), 1);
	ping(g);
	pool_put(pool, g, POOL_RETIRE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- shutdown ---------------------------------------------------------------- */

static pool_t *dying_pool;
static int socket_rc_in_destroy;

/* Runs inside pool_destroy, which retires the idle connection. */
static int ask_socket(pool_conn_t *conn, void *ud)
{
	pool_conn_t *c = NULL;

	(void)conn;
	(void)ud;
	socket_rc_in_destroy = pool_socket(dying_pool, "127.0.0.1:1", AF_INET, &c);
	return -1; /* the fallback (abort): nothing to wait for */
}

static void quiet(int level, const char *msg, void *ud)
{
	(void)level;
	(void)msg;
	(void)ud; /* the fallback's warning: expected here */
}

START_TEST(shutting_down)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	pool_config_t *cfg = config_with("teardown", "peer-first", "fallback", "abort",
					 NULL);
	pool_hooks_t hooks = { .close_request = ask_socket };
	pool_conn_t *c;

	ck_assert_int_eq(pool_config_set_hooks(cfg, NULL, &hooks), 0);
	ck_assert_int_eq(pool_create(&dying_pool, cfg), 0);
	pool_config_free(cfg);
	pool_set_log(dying_pool, quiet, NULL);
	ck_assert_int_eq(pool_get(dying_pool, lineserver_endpoint(ls), &c), 0);
	pool_put(dying_pool, c, POOL_REUSE);
	socket_rc_in_destroy = 1;
	pool_destroy(dying_pool);
	ck_assert_int_eq(socket_rc_in_destroy, POOL_ESHUTDOWN);
	lineserver_stop(ls);
}
END_TEST

Suite *socket_suite(void)
{
	Suite *s = suite_create("socket");
	TCase *tc = tcase_create("socket");

	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(tc, options_applied);
	tcase_add_test(tc, nonlocal_source);
	tcase_add_test(tc, caps_without_waiting);
	tcase_add_test(tc, retire_close);
	tcase_add_test(tc, retire_abort);
	tcase_add_test(tc, retire_peer_first);
	tcase_add_test(tc, broken_sends_nothing);
	tcase_add_test(tc, reuse_connected);
	tcase_add_test(tc, reuse_never_connected);
	tcase_add_test(tc, reuse_peer_closed);
	tcase_add_test(tc, reuse_with_on_connect_retires);
	tcase_add_test(tc, retire_skips_hook_on_connect_never_saw);
	tcase_add_test(tc, bad_arguments);
	tcase_add_test(tc, families);
	tcase_add_test(tc, unix_endpoint);
	tcase_add_test(tc, shutting_down);
	suite_add_tcase(s, tc);
	return s;
}
