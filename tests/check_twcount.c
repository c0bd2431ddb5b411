/*
 * pool_tw_count(): TIME_WAIT sockets made on purpose against a line
 * server on a fresh port, counted on each side. As root every test has a
 * network namespace of its own (fixture_isolate_test), so the counts are exact;
 * in the host namespace the fresh port keeps them this test's, unless
 * the kernel hands out a port that an earlier test's TIME_WAIT sockets
 * still point to.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixtures.h"
#include "suites.h"
#include "twcount.h"

/* A blocking connection to addr:port, v4 or v6 by the address's form. */
static int dial(const char *addr, uint16_t port)
{
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
	struct sockaddr_in in = { .sin_family = AF_INET };
	struct sockaddr *sa = (struct sockaddr *)&in;
	socklen_t len = sizeof(in);
	int fd, rc;

	in.sin_port = htons(port);
	in6.sin6_port = htons(port);
	if (inet_pton(AF_INET, addr, &in.sin_addr) != 1) {
		ck_assert_int_eq(inet_pton(AF_INET6, addr, &in6.sin6_addr), 1);
		sa = (struct sockaddr *)&in6;
		len = sizeof(in6);
	}
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	do {
		rc = connect(fd, sa, len);
	} while (rc < 0 && errno == EINTR);
	ck_assert_msg(rc == 0, "connect %s:%u: %s", addr, port, strerror(errno));
	return fd;
}

/* The client closes first: once the server answers with its own FIN, the
 * client socket sits in TIME_WAIT. The round trip first makes sure the
 * server has accepted it. */
static void client_closes(const char *addr, uint16_t port, int n)
{
	int i, fd;

	for (i = 0; i < n; i++) {
		fd = dial(addr, port);
		ck_assert(line_roundtrip(fd, "PING", "PONG"));
		close(fd);
	}
}

/* The server closes first (close request, then its EOF): the server
 * socket sits in TIME_WAIT once our FIN reaches it. */
static void server_closes(const char *addr, uint16_t port, int n)
{
	char c;
	ssize_t r;
	int i, fd;

	for (i = 0; i < n; i++) {
		fd = dial(addr, port);
		ck_assert_int_eq(send(fd, "quit\n", 5, MSG_NOSIGNAL), 5);
		do {
			r = recv(fd, &c, 1, 0);
		} while (r < 0 && errno == EINTR);
		ck_assert_int_eq(r, 0);
		close(fd);
	}
}

/* pool_tw_count() that must succeed: on failure, the code's text. */
static void count_ok(const char *endpoint, pool_tw_count_t *tw)
{
	int rc = pool_tw_count(endpoint, tw);

	ck_assert_msg(rc == 0, "pool_tw_count(\"%s\"): %d, %s", endpoint, rc,
	              pool_strerror(rc));
}

/* Whether "localhost" has an address here, asked as the library asks. A
 * root without /etc/hosts (a bare chroot or container, no
 * nss-myhostname) has none: then the test says so, and what it does
 * instead. */
static bool localhost_resolves(const char *test, const char *instead)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	struct addrinfo *res;
	int rc = getaddrinfo("localhost", NULL, &hints, &res);

	if (rc != 0) {
		fprintf(stderr, "twcount %s: \"localhost\" does not resolve here "
		        "(%s; no /etc/hosts?): %s\n", test, gai_strerror(rc),
		        instead);
		return false;
	}
	freeaddrinfo(res);
	return true;
}

static struct lineserver *server_on(int family)
{
	struct lineserver_opts o = { .family = family };

	return lineserver_start(&o);
}

static void endpoint_for(char *buf, size_t len, const char *host,
                         const struct lineserver *ls)
{
	snprintf(buf, len, "%s:%u", host, lineserver_port(ls));
}

START_TEST(client_side)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);

	client_closes("127.0.0.1", lineserver_port(ls), 25);
	tw_expect(lineserver_endpoint(ls), 25, 0);
	lineserver_stop(ls);
}
END_TEST

START_TEST(server_side)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);

	server_closes("127.0.0.1", lineserver_port(ls), 25);
	tw_expect(lineserver_endpoint(ls), 0, 25);
	lineserver_stop(ls);
}
END_TEST

/* Every way to name the same endpoint counts the same sockets; other
 * addresses on the same port count none of them. */
START_TEST(aliases)
{
	static const char *const same[] = { "*", "localhost", "0.0.0.0",
	                                    "[::ffff:127.0.0.1]" };
	static const char *const other[] = { "127.0.0.2", "[::1]", "10.1.2.3" };
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	uint16_t port = lineserver_port(ls);
	pool_tw_count_t tw;
	char ep[64];
	size_t i;

	client_closes("127.0.0.1", port, 10);
	server_closes("127.0.0.1", port, 15);
	tw_expect(lineserver_endpoint(ls), 10, 15);
	for (i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		if (strcmp(same[i], "localhost") == 0 &&
		    !localhost_resolves("aliases", "SKIPPED its alias case"))
			continue;
		endpoint_for(ep, sizeof(ep), same[i], ls);
		count_ok(ep, &tw);
		ck_assert_msg(tw.client == 10 && tw.server == 15,
		              "%s: %u/%u", ep, tw.client, tw.server);
	}
	for (i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		endpoint_for(ep, sizeof(ep), other[i], ls);
		count_ok(ep, &tw);
		ck_assert_msg(tw.client == 0 && tw.server == 0,
		              "%s: %u/%u", ep, tw.client, tw.server);
	}
	ck_assert_int_eq(tw_count_port(port, &tw), 0);
	ck_assert_uint_eq(tw.client, 10);
	ck_assert_uint_eq(tw.server, 15);
	lineserver_stop(ls);
}
END_TEST

START_TEST(ipv6)
{
	struct lineserver *ls = server_on(AF_INET6);
	pool_tw_count_t tw;
	char ep[64];

	if (!ls && (errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT))
		return; /* no IPv6 loopback here: nothing to count */
	ck_assert_ptr_nonnull(ls);
	endpoint_for(ep, sizeof(ep), "[::1]", ls);
	ck_assert_str_eq(lineserver_endpoint(ls), ep);
	client_closes("::1", lineserver_port(ls), 8);
	server_closes("::1", lineserver_port(ls), 9);
	tw_expect(lineserver_endpoint(ls), 8, 9);
	endpoint_for(ep, sizeof(ep), "*", ls);
	tw_expect(ep, 8, 9);
	endpoint_for(ep, sizeof(ep), "127.0.0.1", ls);
	count_ok(ep, &tw);
	ck_assert_uint_eq(tw.client + tw.server, 0);
	lineserver_stop(ls);
}
END_TEST

/* A v6 socket connected to ::ffff:127.0.0.1 talks IPv4 but is listed in
 * the AF_INET6 dump, with v4-mapped addresses. */
START_TEST(v4_mapped_client)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);

	client_closes("::ffff:127.0.0.1", lineserver_port(ls), 6);
	server_closes("::ffff:127.0.0.1", lineserver_port(ls), 7);
	tw_expect(lineserver_endpoint(ls), 6, 7);
	lineserver_stop(ls);
}
END_TEST

/* Many sockets on two ports: the kernel-side port filter must keep each
 * count to its own port. */
START_TEST(many_sockets_two_ports)
{
	struct lineserver *a = server_start(LS_QUIT_CLOSE);
	struct lineserver *b = server_start(LS_QUIT_CLOSE);

	client_closes("127.0.0.1", lineserver_port(a), 600);
	server_closes("127.0.0.1", lineserver_port(a), 400);
	client_closes("127.0.0.1", lineserver_port(b), 150);
	tw_expect(lineserver_endpoint(a), 600, 400);
	tw_expect(lineserver_endpoint(b), 150, 0);
	lineserver_stop(a);
	lineserver_stop(b);
}
END_TEST

/* An RST on either side leaves no TIME_WAIT anywhere. */
START_TEST(reset_leaves_none)
{
	struct lineserver *ls = server_start(LS_QUIT_RESET);
	struct lineserver_stats st;
	long long end;
	char c;
	int i, fd;

	for (i = 0; i < 10; i++) {
		fd = dial("127.0.0.1", lineserver_port(ls));
		ck_assert_int_eq(send(fd, "quit\n", 5, MSG_NOSIGNAL), 5);
		ck_assert_int_le(recv(fd, &c, 1, 0), 0);
		close(fd);
	}
	end = mono_ms() + 2000;
	do {
		lineserver_get_stats(ls, &st);
	} while (st.closed_by_server < 10 && mono_ms() < end);
	ck_assert_uint_eq(st.closed_by_server, 10);
	tw_expect(lineserver_endpoint(ls), 0, 0);
	lineserver_stop(ls);
}
END_TEST

static const char *const bad_endpoints[] = {
	"", "nonsense", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536",
	"[::1", "[::1]", ":80", "host:port", "unix:/tmp/tcpool.sock", "unix:",
};

START_TEST(bad_endpoint)
{
	pool_tw_count_t tw = { 7, 7 };

	ck_assert_msg(pool_tw_count(bad_endpoints[_i], &tw) == POOL_EENDPOINT,
	              "\"%s\" was accepted", bad_endpoints[_i]);
	/* Failure leaves the output alone. */
	ck_assert_uint_eq(tw.client, 7);
	ck_assert_uint_eq(tw.server, 7);
}
END_TEST

START_TEST(null_arguments)
{
	pool_tw_count_t tw;

	ck_assert_int_eq(pool_tw_count(NULL, &tw), POOL_EINVAL);
	ck_assert_int_eq(pool_tw_count("127.0.0.1:80", NULL), POOL_EINVAL);
	ck_assert_int_eq(tw_count_port(80, NULL), POOL_EINVAL);
	ck_assert_int_eq(tw_count_port(0, &tw), POOL_EINVAL);
}
END_TEST

START_TEST(no_fd_leak)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	pool_tw_count_t tw;
	char ep[64];
	int before, i, rc, want;

	client_closes("127.0.0.1", lineserver_port(ls), 3);
	tw_expect(lineserver_endpoint(ls), 3, 0);
	endpoint_for(ep, sizeof(ep), "localhost", ls);
	/* Without a localhost, its failed resolution must not leak either. */
	want = localhost_resolves("no_fd_leak", "its POOL_ERESOLVE path "
	                          "is checked instead") ? 0 : POOL_ERESOLVE;
	before = fd_count();
	for (i = 0; i < 50; i++) {
		count_ok(lineserver_endpoint(ls), &tw);
		rc = pool_tw_count(ep, &tw);
		ck_assert_msg(rc == want, "pool_tw_count(\"%s\"): %d, %s", ep,
		              rc, pool_strerror(rc));
		count_ok("*:1", &tw);
		ck_assert_int_eq(pool_tw_count("bad", &tw), POOL_EENDPOINT);
		ck_assert_int_eq(pool_tw_count("unix:/x", &tw), POOL_EENDPOINT);
	}
	ck_assert_int_eq(fd_count(), before);
	lineserver_stop(ls);
}
END_TEST

/* The kernel refuses (here: no descriptor left for the netlink socket):
 * POOL_ESYS, errno says why, the output is untouched. */
START_TEST(system_error)
{
	pool_tw_count_t tw = { 7, 7 };
	struct rlimit old, lim;
	int lowest, rc, err;

	lowest = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(lowest, 0);
	close(lowest);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)lowest;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
	rc = pool_tw_count("127.0.0.1:80", &tw);
	err = errno;
	setrlimit(RLIMIT_NOFILE, &old);
	ck_assert_int_eq(rc, POOL_ESYS);
	ck_assert_int_eq(err, EMFILE);
	ck_assert_uint_eq(tw.client, 7);
	ck_assert_uint_eq(tw.server, 7);
}
END_TEST

struct counter_arg {
	const char *endpoint;
	int failures;
};

static void *count_often(void *p)
{
	struct counter_arg *a = p;
	pool_tw_count_t tw;
	int i;

	for (i = 0; i < 40; i++)
		if (pool_tw_count(a->endpoint, &tw) != 0 ||
		    tw.client != 5 || tw.server != 4)
			a->failures++;
	return NULL;
}

/* No shared state: concurrent calls each see the full, same count. */
START_TEST(concurrent_calls)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	struct counter_arg args[8];
	pthread_t th[8];
	int i, before;

	client_closes("127.0.0.1", lineserver_port(ls), 5);
	server_closes("127.0.0.1", lineserver_port(ls), 4);
	tw_expect(lineserver_endpoint(ls), 5, 4);
	before = fd_count();
	for (i = 0; i < 8; i++) {
		args[i] = (struct counter_arg){ lineserver_endpoint(ls), 0 };
		ck_assert_int_eq(pthread_create(&th[i], NULL, count_often, &args[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(args[i].failures, 0);
	}
	ck_assert_int_eq(fd_count(), before);
	lineserver_stop(ls);
}
END_TEST

Suite *twcount_suite(void)
{
	Suite *s = suite_create("twcount");
	TCase *tc = tcase_create("count");
	TCase *args = tcase_create("arguments");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, client_side);
	tcase_add_test(tc, server_side);
	tcase_add_test(tc, aliases);
	tcase_add_test(tc, ipv6);
	tcase_add_test(tc, v4_mapped_client);
	tcase_add_test(tc, many_sockets_two_ports);
	tcase_add_test(tc, reset_leaves_none);
	tcase_add_test(tc, no_fd_leak);
	tcase_add_test(tc, concurrent_calls);
	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	suite_add_tcase(s, tc);
	tcase_add_loop_test(args, bad_endpoint, 0,
	                    sizeof(bad_endpoints) / sizeof(bad_endpoints[0]));
	tcase_add_test(args, null_arguments);
	tcase_add_test(args, system_error);
	suite_add_tcase(s, args);
	return s;
}
