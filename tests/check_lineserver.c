/*
 * The built-in line server: the protocol, each close-request mode, who
 * closes first (seen as TIME_WAIT), the controls, and robustness against
 * awkward clients.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fixtures.h"
#include "suites.h"

static struct lineserver *start_opts(struct lineserver_opts o)
{
	struct lineserver *ls = lineserver_start(&o);

	ck_assert_msg(ls != NULL, "lineserver_start: %s", strerror(errno));
	return ls;
}

static int dial_sa(const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc;

	ck_assert_int_ge(fd, 0);
	do {
		rc = connect(fd, sa, len);
	} while (rc < 0 && errno == EINTR);
	ck_assert_msg(rc == 0, "connect: %s", strerror(errno));
	return fd;
}

/* A blocking connection to the server's loopback address. */
static int dial(const struct lineserver *ls)
{
	struct sockaddr_in in = { .sin_family = AF_INET };

	in.sin_port = htons(lineserver_port(ls));
	in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return dial_sa((struct sockaddr *)&in, sizeof(in));
}

static void send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		ck_assert_msg(n > 0, "send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

static void send_str(int fd, const char *s)
{
	send_all(fd, s, strlen(s));
}

/* Read until len bytes, EOF, an error or ms without data. Returns the
 * bytes read; *end gets 0 (EOF), an errno, or EAGAIN on timeout. */
static size_t read_some(int fd, char *buf, size_t len, int ms, int *end)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	size_t got = 0;
	ssize_t n;

	*end = EAGAIN;
	while (got < len) {
		if (poll(&p, 1, ms) <= 0)
			return got;
		n = recv(fd, buf + got, len - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*end = n == 0 ? 0 : errno;
			return got;
		}
		got += (size_t)n;
	}
	return got;
}

/* Expect exactly text, then nothing more within a short while. */
static void expect_reply(int fd, const char *text)
{
	char buf[256] = "";
	size_t len = strlen(text), got;
	int end;

	got = read_some(fd, buf, len, 2000, &end);
	ck_assert_msg(got == len && memcmp(buf, text, len) == 0,
	              "got \"%.*s\", want \"%s\"", (int)got, buf, text);
}

static void expect_silence(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	ck_assert_int_eq(poll(&p, 1, ms), 0);
}

/* Read to the end of the stream; returns 0 (EOF) or the errno. */
static int expect_end(int fd)
{
	char buf[4096];
	size_t got;
	int end;

	do {
		got = read_some(fd, buf, sizeof(buf), 2000, &end);
	} while (got == sizeof(buf));
	ck_assert_msg(end != EAGAIN, "connection still open");
	return end;
}

static struct lineserver_stats stats_wait(struct lineserver *ls,
                                          unsigned open)
{
	struct lineserver_stats st;
	long long end = mono_ms() + 2000;

	do {
		lineserver_get_stats(ls, &st);
		if (st.open == open)
			break;
		usleep(2000);
	} while (mono_ms() < end);
	ck_assert_uint_eq(st.open, open);
	return st;
}

/* ---- the protocol ---- */

START_TEST(echo_and_ping)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	int fd = dial(ls);

	send_str(fd, "hello\r\nPING\n\nping\nquitx\n");
	expect_reply(fd, "hello\nPONG\n\nping\nquitx\n");
	close(fd);
	lineserver_stop(ls);
}
END_TEST

/* A request arriving a byte at a time is one request. */
START_TEST(partial_reads)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *req = "PING\r\n";
	int fd = dial(ls), one = 1;
	size_t i;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (i = 0; i < strlen(req); i++) {
		send_all(fd, req + i, 1);
		usleep(2000);
	}
	expect_reply(fd, "PONG\n");
	close(fd);
	lineserver_stop(ls);
}
END_TEST

/* Thousands of pipelined lines come back whole and in order. */
START_TEST(pipelined)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	static char req[64 * 1024], got[64 * 1024];
	size_t len = 0, n;
	int fd = dial(ls), i, end;

	for (i = 0; len + 16 < sizeof(req); i++)
		len += (size_t)snprintf(req + len, sizeof(req) - len, "%d\n", i);
	send_all(fd, req, len);
	n = read_some(fd, got, len, 2000, &end);
	ck_assert_uint_eq(n, len);
	ck_assert(memcmp(req, got, len) == 0);
	close(fd);
	lineserver_stop(ls);
}
END_TEST

/* The client's stream: the same 1000-byte line over and over; returns
 * the bytes sent, 0 when the socket is full. */
static size_t send_lines(int fd, size_t sent)
{
	static char line[1000];
	size_t off = sent % sizeof(line);
	ssize_t n;

	memset(line, 'x', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\n';
	n = send(fd, line + off, sizeof(line) - off, MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	ck_assert_msg(n > 0, "send: %s", strerror(errno));
	return (size_t)n;
}

/* A client that writes far more than it reads is throttled, not fed
 * without bound, and in the end gets every reply. */
START_TEST(backpressure)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	size_t sent = 0, recvd = 0, total, n;
	struct pollfd p;
	char buf[65536];
	ssize_t r;
	int fd = dial(ls);

	fcntl(fd, F_SETFL, O_NONBLOCK);
	/* Write only, until the server stops taking more. */
	do {
		n = send_lines(fd, sent);
		sent += n;
		ck_assert_msg(sent < 64u << 20, "server never pushed back");
	} while (n > 0);
	/* Then both ways, for 4 MiB more, ending on a whole line. */
	total = (sent / 1000 + 4096) * 1000;
	while (recvd < total) {
		p = (struct pollfd){ .fd = fd, .events = POLLIN };
		if (sent < total)
			p.events |= POLLOUT;
		ck_assert_int_gt(poll(&p, 1, 2000), 0);
		if ((p.revents & POLLOUT) && sent < total)
			sent += send_lines(fd, sent);
		r = recv(fd, buf, sizeof(buf), 0);
		if (r > 0)
			recvd += (size_t)r;
		else
			ck_assert(r < 0 && errno == EAGAIN);
	}
	ck_assert_uint_eq(recvd, total);
	close(fd);
	lineserver_stop(ls);
}
END_TEST

START_TEST(longest_line)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	static char req[LS_MAX_LINE + 1], got[LS_MAX_LINE + 1];
	int fd = dial(ls), end;

	memset(req, 'a', LS_MAX_LINE);
	req[LS_MAX_LINE] = '\n';
	send_all(fd, req, sizeof(req));
	ck_assert_uint_eq(read_some(fd, got, sizeof(got), 2000, &end), sizeof(got));
	ck_assert(memcmp(req, got, sizeof(got)) == 0);
	send_str(fd, "PING\n");
	expect_reply(fd, "PONG\n");
	close(fd);
	lineserver_stop(ls);
}
END_TEST

START_TEST(too_long_line)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	static char req[LS_MAX_LINE + 2];
	int fd = dial(ls);

	memset(req, 'a', sizeof(req));
	send_all(fd, req, sizeof(req));
	ck_assert_int_eq(expect_end(fd), 0);
	close(fd);
	ck_assert_uint_eq(stats_wait(ls, 0).closed_by_server, 1);
	lineserver_stop(ls);
}
END_TEST

/* ---- close requests ---- */

/* The server closes first and holds the TIME_WAIT; replies to the lines
 * before the request still arrive, nothing after it is served. */
START_TEST(quit_close)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	struct lineserver_stats st;
	int fd = dial(ls);

	send_str(fd, "PING\nQuit\r\nPING\n");
	expect_reply(fd, "PONG\n");
	ck_assert_int_eq(expect_end(fd), 0);
	close(fd);
	tw_expect(lineserver_endpoint(ls), 0, 1);
	st = stats_wait(ls, 0);
	ck_assert_uint_eq(st.quits, 1);
	ck_assert_uint_eq(st.requests, 1);
	ck_assert_uint_eq(st.closed_by_server, 1);
	ck_assert_uint_eq(st.closed_by_client, 0);
	lineserver_stop(ls);
}
END_TEST

START_TEST(quit_ignore)
{
	struct lineserver *ls = server_start(LS_QUIT_IGNORE);
	int fd = dial(ls);

	send_str(fd, "quit\n");
	expect_silence(fd, 150);
	send_str(fd, "PING\n");
	expect_reply(fd, "PONG\n");
	close(fd);
	/* The client closed first. */
	tw_expect(lineserver_endpoint(ls), 1, 0);
	lineserver_stop(ls);
}
END_TEST

START_TEST(quit_reply)
{
	struct lineserver *ls = server_start(LS_QUIT_REPLY_NO_CLOSE);
	int fd = dial(ls);

	send_str(fd, "QUIT\n");
	expect_reply(fd, "+OK\n");
	expect_silence(fd, 150);
	send_str(fd, "PING\n");
	expect_reply(fd, "PONG\n");
	close(fd);
	lineserver_stop(ls);
}
END_TEST

/* RST: the client reads what came before, then ECONNRESET; nobody holds
 * TIME_WAIT. */
START_TEST(quit_reset)
{
	struct lineserver *ls = server_start(LS_QUIT_RESET);
	int fd = dial(ls);

	send_str(fd, "PING\nquit\n");
	expect_reply(fd, "PONG\n");
	ck_assert_int_eq(expect_end(fd), ECONNRESET);
	close(fd);
	ck_assert_uint_eq(stats_wait(ls, 0).closed_by_server, 1);
	tw_expect(lineserver_endpoint(ls), 0, 0);
	lineserver_stop(ls);
}
END_TEST

START_TEST(quit_flood)
{
	struct lineserver *ls = server_start(LS_QUIT_FLOOD);
	static char buf[1 << 20];
	int fd = dial(ls), end;

	send_str(fd, "PING\nquit\n");
	expect_reply(fd, "PONG\n");
	/* 8 MiB, far more than any socket buffer: it is really sending. */
	for (int i = 0; i < 8; i++)
		ck_assert_uint_eq(read_some(fd, buf, sizeof(buf), 2000, &end),
		                  sizeof(buf));
	ck_assert(buf[0] != '\0');
	/* Closing with unread data resets; the server notices. */
	close(fd);
	ck_assert_uint_eq(stats_wait(ls, 0).closed_by_client, 1);
	lineserver_stop(ls);
}
END_TEST

/* ---- controls ---- */

START_TEST(close_all)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	struct lineserver_stats st;
	int fd[5], i;

	for (i = 0; i < 5; i++) {
		fd[i] = dial(ls);
		ck_assert(line_roundtrip(fd[i], "PING", "PONG"));
	}
	lineserver_close_all(ls);
	lineserver_get_stats(ls, &st);
	ck_assert_uint_eq(st.open, 0);
	ck_assert_uint_eq(st.closed_by_server, 5);
	for (i = 0; i < 5; i++) {
		ck_assert_int_eq(expect_end(fd[i]), 0);
		close(fd[i]);
	}
	tw_expect(lineserver_endpoint(ls), 0, 5);
	/* Still serving new connections. */
	fd[0] = dial(ls);
	ck_assert(line_roundtrip(fd[0], "PING", "PONG"));
	close(fd[0]);
	lineserver_stop(ls);
}
END_TEST

START_TEST(pause_accept)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	struct lineserver_stats st;
	int fd;

	lineserver_pause_accept(ls, true);
	/* The kernel completes the handshake into the backlog. */
	fd = dial(ls);
	send_str(fd, "PING\n");
	expect_silence(fd, 200);
	lineserver_get_stats(ls, &st);
	ck_assert_uint_eq(st.accepted, 0);
	lineserver_pause_accept(ls, false);
	expect_reply(fd, "PONG\n");
	close(fd);
	lineserver_stop(ls);
}
END_TEST

/* Idle connections are closed by the server, which then holds the
 * TIME_WAIT; a busy one is left alone. */
START_TEST(idle_close)
{
	struct lineserver *ls = start_opts((struct lineserver_opts){
		.idle_close_ms = 150 });
	int idle = dial(ls), busy = dial(ls), i;
	long long t0 = mono_ms();

	ck_assert(line_roundtrip(idle, "PING", "PONG"));
	for (i = 0; i < 8; i++) {
		ck_assert(line_roundtrip(busy, "PING", "PONG"));
		usleep(40000);
	}
	ck_assert_int_eq(expect_end(idle), 0);
	ck_assert_int_ge(mono_ms() - t0, 140);
	ck_assert(line_roundtrip(busy, "PING", "PONG"));
	close(idle);
	ck_assert_int_eq(expect_end(busy), 0);
	close(busy);
	tw_expect(lineserver_endpoint(ls), 0, 2);
	lineserver_stop(ls);
}
END_TEST

START_TEST(client_resets)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	struct linger lg = { 1, 0 };
	struct lineserver_stats st;
	int fd = dial(ls);

	ck_assert(line_roundtrip(fd, "PING", "PONG"));
	send_str(fd, "half a li");
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	st = stats_wait(ls, 0);
	ck_assert_uint_eq(st.closed_by_client, 1);
	ck_assert_uint_eq(st.accepted, 1);
	fd = dial(ls);
	ck_assert(line_roundtrip(fd, "PING", "PONG"));
	close(fd);
	lineserver_stop(ls);
}
END_TEST

/* Stopping closes every connection and leaks no descriptor. */
START_TEST(stop_with_clients)
{
	int before = fd_count(), fd[3], i;
	struct lineserver *ls = server_start(LS_QUIT_FLOOD);

	for (i = 0; i < 3; i++)
		fd[i] = dial(ls);
	ck_assert(line_roundtrip(fd[0], "PING", "PONG"));
	send_str(fd[1], "quit\n");
	lineserver_stop(ls);
	for (i = 0; i < 3; i++) {
		expect_end(fd[i]);
		close(fd[i]);
	}
	ck_assert_int_eq(fd_count(), before);
}
END_TEST

/* ---- addresses ---- */

START_TEST(unix_socket)
{
	char path[64], want[80];
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	struct lineserver *ls;
	struct stat stbuf;
	int fd;

	snprintf(path, sizeof(path), "/tmp/tcpool-ls-%d.sock", (int)getpid());
	unlink(path);
	/* A stale socket file from a dead server is taken over. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	strcpy(un.sun_path, path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
	close(fd);
	ls = start_opts((struct lineserver_opts){ .family = AF_UNIX,
	                                          .unix_path = path });
	snprintf(want, sizeof(want), "unix:%s", path);
	ck_assert_str_eq(lineserver_endpoint(ls), want);
	ck_assert_uint_eq(lineserver_port(ls), 0);
	fd = dial_sa((struct sockaddr *)&un, sizeof(un));
	ck_assert(line_roundtrip(fd, "PING", "PONG"));
	send_str(fd, "quit\n");
	ck_assert_int_eq(expect_end(fd), 0);
	close(fd);
	/* A live server's path is not taken over. */
	ck_assert_ptr_null(lineserver_start(&(struct lineserver_opts){
		.family = AF_UNIX, .unix_path = path }));
	ck_assert_int_eq(errno, EADDRINUSE);
	lineserver_stop(ls);
	ck_assert_int_ne(stat(path, &stbuf), 0);
}
END_TEST

/* A file that is not a socket is never removed to make room. */
START_TEST(unix_path_taken_by_file)
{
	struct lineserver_opts o = { .family = AF_UNIX };
	struct stat stbuf;
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/tcpool-ls-file-%d", (int)getpid());
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	o.unix_path = path;
	ck_assert_ptr_null(lineserver_start(&o));
	ck_assert_int_eq(errno, EADDRINUSE);
	ck_assert_int_eq(stat(path, &stbuf), 0);
	ck_assert(S_ISREG(stbuf.st_mode));
	unlink(path);
}
END_TEST

START_TEST(ipv6_endpoint)
{
	struct lineserver_opts o = { .family = AF_INET6 };
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
	struct lineserver *ls = lineserver_start(&o);
	char want[64];
	int fd;

	if (!ls && (errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT))
		return; /* no IPv6 loopback here */
	ck_assert_ptr_nonnull(ls);
	snprintf(want, sizeof(want), "[::1]:%u", lineserver_port(ls));
	ck_assert_str_eq(lineserver_endpoint(ls), want);
	in6.sin6_addr = in6addr_loopback;
	in6.sin6_port = htons(lineserver_port(ls));
	fd = dial_sa((struct sockaddr *)&in6, sizeof(in6));
	ck_assert(line_roundtrip(fd, "PING", "PONG"));
	close(fd);
	lineserver_stop(ls);
}
END_TEST

/* A wildcard bind is reported as the loopback address clients use. */
START_TEST(wildcard_bind)
{
	struct lineserver *ls = start_opts((struct lineserver_opts){
		.bind_addr = "0.0.0.0" });
	char want[64];
	int fd;

	snprintf(want, sizeof(want), "127.0.0.1:%u", lineserver_port(ls));
	ck_assert_str_eq(lineserver_endpoint(ls), want);
	fd = dial(ls);
	ck_assert(line_roundtrip(fd, "PING", "PONG"));
	close(fd);
	lineserver_stop(ls);
}
END_TEST

START_TEST(bad_options)
{
	struct lineserver_opts o;

	o = (struct lineserver_opts){ .on_quit = 42 };
	ck_assert_ptr_null(lineserver_start(&o));
	ck_assert_int_eq(errno, EINVAL);
	o = (struct lineserver_opts){ .family = AF_UNIX };
	ck_assert_ptr_null(lineserver_start(&o));
	ck_assert_int_eq(errno, EINVAL);
	o = (struct lineserver_opts){ .bind_addr = "not an address" };
	ck_assert_ptr_null(lineserver_start(&o));
	ck_assert_int_eq(errno, EINVAL);
	o = (struct lineserver_opts){ .family = AF_INET, .bind_addr = "::1" };
	ck_assert_ptr_null(lineserver_start(&o));
	ck_assert_int_eq(errno, EINVAL);
	lineserver_stop(NULL);
}
END_TEST

Suite *lineserver_suite(void)
{
	Suite *s = suite_create("lineserver");
	TCase *proto = tcase_create("protocol");
	TCase *quit = tcase_create("close requests");
	TCase *ctl = tcase_create("controls");
	TCase *addr = tcase_create("addresses");

	tcase_set_timeout(proto, 30);
	tcase_add_test(proto, echo_and_ping);
	tcase_add_test(proto, partial_reads);
	tcase_add_test(proto, pipelined);
	tcase_add_test(proto, backpressure);
	tcase_add_test(proto, longest_line);
	tcase_add_test(proto, too_long_line);
	tcase_add_checked_fixture(proto, fixture_test_setup, fixture_test_teardown);
	suite_add_tcase(s, proto);
	tcase_set_timeout(quit, 20);
	tcase_add_test(quit, quit_close);
	tcase_add_test(quit, quit_ignore);
	tcase_add_test(quit, quit_reply);
	tcase_add_test(quit, quit_reset);
	tcase_add_test(quit, quit_flood);
	tcase_add_checked_fixture(quit, fixture_test_setup, fixture_test_teardown);
	suite_add_tcase(s, quit);
	tcase_set_timeout(ctl, 20);
	tcase_add_test(ctl, close_all);
	tcase_add_test(ctl, pause_accept);
	tcase_add_test(ctl, idle_close);
	tcase_add_test(ctl, client_resets);
	tcase_add_test(ctl, stop_with_clients);
	tcase_add_checked_fixture(ctl, fixture_test_setup, fixture_test_teardown);
	suite_add_tcase(s, ctl);
	tcase_add_test(addr, unix_socket);
	tcase_add_test(addr, unix_path_taken_by_file);
	tcase_add_test(addr, ipv6_endpoint);
	tcase_add_test(addr, wildcard_bind);
	tcase_add_test(addr, bad_options);
	tcase_add_checked_fixture(addr, fixture_test_setup, fixture_test_teardown);
	suite_add_tcase(s, addr);
	return s;
}
