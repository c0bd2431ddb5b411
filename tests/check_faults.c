/*
 * Faults a real deployment meets, each with a test: restarts, servers
 * that do not close or that reset, full backlogs, refused connections,
 * servers killed while a drain waits, descriptor and port exhaustion,
 * many threads, floods, and API misuse. After each one the pool must
 * still work, and no descriptor may be left behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixtures.h"
#include "realserver.h"
#include "suites.h"

Suite *faults_suite(void);

/* ---- helpers ------------------------------------------------------------- */

static void ep_of_port(char *buf, size_t len, uint16_t port)
{
	snprintf(buf, len, "127.0.0.1:%u", port);
}

/* A line server on a port that no TIME_WAIT left by an earlier test
 * names (see realserver_port_is_quiet), for tests that count them. The
 * rejected servers stay up until then, so the kernel offers other ports. */
static struct lineserver *quiet_server(enum ls_quit_mode on_quit)
{
	struct lineserver *tried[16], *ls = NULL;
	int n;

	for (n = 0; n < 16; n++) {
		tried[n] = server_start(on_quit);
		if (realserver_port_is_quiet(lineserver_port(tried[n]))) {
			ls = tried[n];
			break;
		}
	}
	while (n > 0) /* the ones before it */
		lineserver_stop(tried[--n]);
	ck_assert_msg(ls != NULL, "no quiet port for a line server");
	return ls;
}

static int raw_socket_any(bool listening, uint16_t *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, len), 0);
	if (listening)
		ck_assert_int_eq(listen(fd, 16), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* A loopback socket bound to a free, quiet port: listening (the kernel
 * completes connections into its backlog; the test accepts them by hand)
 * or not (connections to it are refused). */
static int raw_socket(bool listening, uint16_t *port)
{
	int tried[16], fd = -1, n;

	for (n = 0; n < 16; n++) {
		tried[n] = raw_socket_any(listening, port);
		if (realserver_port_is_quiet(*port)) {
			fd = tried[n];
			break;
		}
	}
	while (n > 0) /* the ones before it */
		close(tried[--n]);
	ck_assert_msg(fd >= 0, "no quiet port");
	return fd;
}

static void close_abortive(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* Milliseconds until the pool has no drain under way (fails after ms). */
static long long drains_end_within(pool_t *pool, int ms)
{
	long long t0 = mono_ms();

	wait_drains(pool, ms);
	return mono_ms() - t0;
}

static struct realserver *real_or_skip(enum rs_kind kind)
{
	struct realserver *rs;

	if (!realserver_available(kind)) {
		printf("faults: %s is not installed; test skipped\n",
		       realserver_name(kind));
		return NULL;
	}
	rs = realserver_start(kind, NULL);
	ck_assert_msg(rs != NULL, "cannot start %s", realserver_name(kind));
	return rs;
}

/* ---- restarts -------------------------------------------------------------- */

/* redis restarted while two connections sit idle: the next pool_get
 * drops both and hands out a fresh, working one, on the first try. */
START_TEST(restart_real_server_while_idle)
{
	struct realserver *rs = real_or_skip(RS_REDIS);
	pool_conn_t *a, *b, *c;
	const char *ep;
	pool_t *pool;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	/* watch_idle off: pool_get's own check is under test here. */
	pool = pool_with("watch_idle", "off", NULL);
	ck_assert_int_eq(pool_get(pool, ep, &a), 0);
	ck_assert_int_eq(pool_get(pool, ep, &b), 0);
	ck_assert(realserver_roundtrip(RS_REDIS, pool_conn_fd(a)));
	ck_assert(realserver_roundtrip(RS_REDIS, pool_conn_fd(b)));
	pool_put(pool, a, POOL_REUSE);
	pool_put(pool, b, POOL_REUSE);
	ck_assert_int_eq(realserver_restart(rs), 0);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 0);
	ck_assert(realserver_roundtrip(RS_REDIS, pool_conn_fd(c)));
	ck_assert_uint_eq(stats_of(pool, ep).stale_dropped, 2);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 3);
	/* The server closed them first: no TIME_WAIT on the client. */
	ck_assert_uint_eq(tw_client(ep), 0);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	realserver_stop(rs);
}
END_TEST

/* The same with the line server stopped and started on its port. */
START_TEST(restart_line_server_while_idle)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	struct lineserver_opts o = { .port = lineserver_port(ls) };
	char ep[32];
	pool_t *pool = pool_with("watch_idle", "off", NULL); /* as above */
	pool_conn_t *c;

	ep_of_port(ep, sizeof(ep), o.port);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	lineserver_stop(ls);
	ls = lineserver_start(&o);
	ck_assert_msg(ls != NULL, "restart on port %u: %s", o.port, strerror(errno));
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).stale_dropped, 1);
	ck_assert_uint_eq(stats_of(pool, ep).connect_failures, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- servers that do not close, or reset --------------------------------- */

/* The server answers the close request but never closes: the fallback
 * applies at close_timeout_ms, not before and not much later. */
START_TEST(reply_without_close_falls_back_at_deadline)
{
	struct lineserver *ls = quiet_server(LS_QUIT_REPLY_NO_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first",
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "300", "fallback", "abort", NULL);
	struct lineserver_stats ss;
	pool_conn_t *c;
	long long ms;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	pool_put(pool, c, POOL_RETIRE);
	ms = drains_end_within(pool, 3000);
	ck_assert_msg(ms >= 250 && ms < 1500, "the drain ended after %lld ms", ms);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_fallback, 1);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_ok, 0);
	lineserver_get_stats(ls, &ss);
	ck_assert_uint_eq(ss.quits, 1);
	tw_expect(ep, 0, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* The server resets instead of closing: as closed as it gets, so the
 * drain ends at once, counted as the server closing; no TIME_WAIT. */
START_TEST(reset_on_close_request)
{
	struct lineserver *ls = quiet_server(LS_QUIT_RESET);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first",
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "5000", "max_idle", "0", NULL);
	long long ms;
	int i;

	for (i = 0; i < 5; i++) {
		pool_conn_t *c;

		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		ping(c);
		pool_put(pool, c, POOL_RETIRE);
	}
	ms = drains_end_within(pool, 3000);
	ck_assert_msg(ms < 1000, "drains took %lld ms", ms);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_ok, 5);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_fallback, 0);
	tw_expect(ep, 0, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* A server (or a middlebox) that resets idle connections: the next
 * pool_get finds the reset, drops the connection and connects anew. */
START_TEST(reset_idle_connection_is_stale)
{
	uint16_t port;
	int lfd = raw_socket(true, &port), sfd;
	char ep[32];
	pool_t *pool = pool_with("teardown", "abort", "watch_idle", "off", NULL);
	pool_conn_t *c;

	ep_of_port(ep, sizeof(ep), port);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0); /* completes in the backlog */
	pool_put(pool, c, POOL_REUSE);
	sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(sfd, 0);
	close_abortive(sfd);
	usleep(20000);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 0);
	ck_assert_uint_eq(stats_of(pool, ep).stale_dropped, 1);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 2);
	pool_put(pool, c, POOL_RETIRE);
	tw_expect(ep, 0, 0);
	pool_destroy(pool);
	close(lfd);
}
END_TEST

/* ---- servers that do not accept, or refuse ------------------------------- */


static void wait_accepted(struct lineserver *ls, unsigned n)
{
	long long end = mono_ms() + 2000;
	struct lineserver_stats ss;

	do {
		lineserver_get_stats(ls, &ss);
		if (ss.accepted >= n)
			return;
		usleep(5000);
	} while (mono_ms() < end);
	ck_abort_msg("the server accepted %u of %u queued connections",
		     (unsigned)ss.accepted, n);
}

/* A server that stops accepting, its backlog full: pool_get gives up at
 * connect_timeout_ms with POOL_ETIMEDOUT, and works once it accepts. */
START_TEST(full_backlog_honours_connect_timeout)
{
	struct lineserver_opts o = { .backlog = 1 };
	struct lineserver *ls = lineserver_start(&o);
	pool_t *pool = pool_with("connect_timeout_ms", "200", NULL);
	pool_conn_t *c = NULL;
	int fill[16], nfill, i, rc;
	const char *ep;
	long long t0, ms;

	ck_assert_ptr_nonnull(ls);
	ep = lineserver_endpoint(ls);
	lineserver_pause_accept(ls, true);
	nfill = fill_backlog(lineserver_port(ls), fill, 16);
	t0 = mono_ms();
	rc = pool_get(pool, ep, &c);
	ms = mono_ms() - t0;
	ck_assert_int_eq(rc, POOL_ETIMEDOUT);
	ck_assert_msg(ms >= 190 && ms < 1000, "gave up after %lld ms", ms);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(pool_strerror(rc), "timed out"));
	ck_assert_uint_eq(stats_of(pool, ep).connect_failures, 1);
	ck_assert_uint_eq(stats_of(pool, ep).in_use, 0);
	for (i = 0; i < nfill; i++)
		close_abortive(fill[i]);
	lineserver_pause_accept(ls, false);
	/* A SYN sent while the queue is still full would be dropped, and
	 * retried only after 1 s: let the server empty it first. */
	wait_accepted(ls, (unsigned)nfill - 1);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Nobody listens: POOL_ECONNREFUSED at once; once a server listens on
 * that port, the same pool connects. */
START_TEST(refused_then_served)
{
	struct lineserver_opts o = { 0 };
	struct lineserver *ls;
	int holder = raw_socket(false, &o.port);
	pool_t *pool = pool_with(NULL);
	pool_conn_t *c = NULL;
	char ep[32];
	long long t0;

	ep_of_port(ep, sizeof(ep), o.port);
	t0 = mono_ms();
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_ECONNREFUSED);
	ck_assert_int_lt(mono_ms() - t0, 500);
	ck_assert_ptr_null(c);
	ck_assert_str_eq(pool_strerror(POOL_ECONNREFUSED), "connection refused");
	ck_assert_uint_eq(stats_of(pool, ep).connect_failures, 1);
	close(holder);
	ls = lineserver_start(&o);
	ck_assert_msg(ls != NULL, "listen on %u: %s", o.port, strerror(errno));
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- servers that die while a drain waits -------------------------------- */

/* A real server SIGKILLed while a peer-first drain waits for its EOF
 * (the close request here is one redis answers without closing): the
 * kernel closes its socket, and the drain ends at once, not at the 10 s
 * deadline. */
START_TEST(real_server_killed_mid_drain)
{
	struct realserver *rs = real_or_skip(RS_REDIS);
	pool_stats_t st;
	pool_conn_t *c;
	const char *ep;
	pool_t *pool;
	long long ms;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	pool = pool_with("teardown", "peer-first",
			 "close_request", "\"PING\\r\\n\"",
			 "close_timeout_ms", "10000", NULL);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert(realserver_roundtrip(RS_REDIS, pool_conn_fd(c)));
	pool_put(pool, c, POOL_RETIRE);
	usleep(100000);
	ck_assert_uint_eq(stats_of(pool, ep).draining, 1);
	ck_assert_int_eq(realserver_kill(rs), 0);
	ms = drains_end_within(pool, 3000);
	ck_assert_msg(ms < 1000, "the drain ended %lld ms after the kill", ms);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.peer_first_ok + st.peer_first_fallback, 1);
	ck_assert_uint_eq(st.closed, 1);
	ck_assert_uint_eq(tw_client(ep), 0);
	pool_destroy(pool);
	realserver_stop(rs);
}
END_TEST

/* The line server ignores the close request, then goes away (closing
 * everything) while the drains wait: they end promptly, and so does
 * pool_destroy. */
START_TEST(line_server_stops_mid_drain)
{
	struct lineserver *ls = quiet_server(LS_QUIT_IGNORE);
	pool_t *pool = pool_with("teardown", "peer-first",
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "10000", "max_idle", "0", NULL);
	pool_conn_t *c[3];
	long long t0;
	char ep[32];
	int i;

	/* A copy: the server's own string goes with it. */
	snprintf(ep, sizeof(ep), "%s", lineserver_endpoint(ls));

	for (i = 0; i < 3; i++)
		ck_assert_int_eq(pool_get(pool, ep, &c[i]), 0);
	for (i = 0; i < 3; i++)
		pool_put(pool, c[i], POOL_RETIRE);
	usleep(50000);
	ck_assert_uint_eq(stats_of(pool, ep).draining, 3);
	lineserver_stop(ls);
	t0 = mono_ms();
	pool_destroy(pool);
	ck_assert_msg(mono_ms() - t0 < 1000, "pool_destroy took %lld ms",
		      mono_ms() - t0);
	tw_expect(ep, 0, 3);
}
END_TEST

/* ---- descriptor exhaustion ----------------------------------------------- */

static struct rlimit saved_nofile;

/* RLIMIT_NOFILE bounds descriptor numbers, not their count: a new one
 * takes the lowest free number below the limit. Set the limit so that
 * exactly spare numbers are free below it. */
static void leave_spare_fds(int spare)
{
	struct rlimit low = saved_nofile;
	int fd, free_seen = 0;

	for (fd = 0; fd < 65536; fd++) {
		if (fcntl(fd, F_GETFD) != -1)
			continue;
		if (free_seen++ == spare)
			break;
	}
	low.rlim_cur = (rlim_t)fd;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
}

/* EMFILE: with RLIMIT_NOFILE just above what is open, pool_get fails
 * with POOL_EMFILE and says so; nothing is held for the failed get, and
 * once the limit is raised the same pool connects again. */
START_TEST(emfile_is_reported_and_recovered)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_idle", "16", NULL);
	pool_conn_t *c[16];
	int held = 0, rc = 0, i;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved_nofile), 0);
	leave_spare_fds(3);
	while (held < 16) {
		rc = pool_get(pool, ep, &c[held]);
		if (rc != 0)
			break;
		held++;
	}
	ck_assert_int_eq(rc, POOL_EMFILE);
	ck_assert_ptr_nonnull(strstr(pool_strerror(rc), "file descriptors"));
	ck_assert_uint_eq(stats_of(pool, ep).connect_failures, 1);
	ck_assert_uint_eq(stats_of(pool, ep).in_use, (unsigned)held);
	for (i = 0; i < held; i++)
		pool_put(pool, c[i], POOL_REUSE);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &saved_nofile), 0);
	/* Every idle one, then one more that must be a new connection. */
	for (i = 0; i <= held; i++) {
		ck_assert_int_eq(pool_get(pool, ep, &c[i]), 0);
		ping(c[i]);
	}
	ck_assert_int_eq(pool_conn_reused(c[held]), 0);
	for (i = 0; i <= held; i++)
		pool_put(pool, c[i], POOL_REUSE);
	/* Under valgrind, the in-process server can lose a connection it
	 * accepted near the limit (valgrind closes such descriptors): the
	 * pool then finds it dead (at a get, through the idle watch, or at
	 * a put) and replaces it, as it should: one connect more for each
	 * connection closed, at most. */
	ck_assert_uint_ge(stats_of(pool, ep).connects, (unsigned)held + 1);
	ck_assert_uint_le(stats_of(pool, ep).connects,
			  (unsigned)held + 1 + (unsigned)stats_of(pool, ep).closed);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* pool_create needs two descriptors (epoll, eventfd): with none, or one,
 * free it fails with POOL_EMFILE and keeps neither. */
START_TEST(emfile_in_pool_create)
{
	pool_t *pool = (pool_t *)&saved_nofile; /* must come back NULL */
	int spare, n;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved_nofile), 0);
	for (spare = 0; spare < 2; spare++) {
		n = fd_count();
		leave_spare_fds(spare);
		ck_assert_int_eq(pool_create(&pool, NULL), POOL_EMFILE);
		ck_assert_ptr_null(pool);
		ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &saved_nofile), 0);
		ck_assert_int_eq(fd_count(), n);
	}
	ck_assert_int_eq(pool_create(&pool, NULL), 0);
	pool_destroy(pool);
}
END_TEST

/* ---- port exhaustion (own TCase: it changes a namespace-wide sysctl) ----- */

#define PORT_RANGE "/proc/sys/net/ipv4/ip_local_port_range"
#define NPORTS 6

static char saved_range[64];

static bool range_read(char *buf, size_t len)
{
	FILE *f = fopen(PORT_RANGE, "re");
	bool ok;

	if (!f)
		return false;
	ok = fgets(buf, (int)len, f) != NULL;
	fclose(f);
	return ok;
}

static bool range_write(const char *range)
{
	FILE *f = fopen(PORT_RANGE, "we");
	bool ok;

	if (!f)
		return false;
	ok = fputs(range, f) >= 0;
	return fclose(f) == 0 && ok;
}

/* Unchecked fixture: runs in the runner, so the range comes back even
 * when a test dies half way. Only in the private namespace. */
static void range_save(void)
{
	saved_range[0] = '\0';
	if (fixture_isolated() && !range_read(saved_range, sizeof(saved_range)))
		saved_range[0] = '\0';
}

static void range_restore(void)
{
	if (saved_range[0])
		range_write(saved_range);
}

/* NPORTS consecutive ports from 40000 up that no socket of this
 * namespace uses as its local port, in any state: connect() skips a port
 * whose bind bucket an earlier server's TIME_WAIT keeps alive. An even
 * count: connect() scans an even number of ports per call (the kernel
 * rounds the range's size down), so from an odd-sized range one port may
 * go unused at random. */
static void quiet_range(char *buf, size_t len)
{
	static unsigned char used[65536];
	const char *const files[] = { "/proc/net/tcp", "/proc/net/tcp6" };
	char line[512];
	unsigned port, i, run = 0;

	memset(used, 0, sizeof(used));
	for (i = 0; i < 2; i++) {
		FILE *f = fopen(files[i], "re");

		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, " %*u: %*[0-9A-Fa-f]:%x", &port) == 1)
				used[port & 0xffff] = 1;
		if (f)
			fclose(f);
	}
	for (port = 40000; port < 60000 && run < NPORTS; port++)
		run = used[port] ? 0 : run + 1;
	ck_assert_uint_eq(run, NPORTS);
	snprintf(buf, len, "%u %u", port - NPORTS, port - 1);
}

/* With NPORTS local ports, the close policy's client TIME_WAIT holds them
 * all: pool_get fails with POOL_EADDRNOTAVAIL and says why. abort and
 * peer-first leave the client no TIME_WAIT, so they never run out. Once
 * the range is wide again, the pool connects. _i: 0 close, 1 abort,
 * 2 peer-first. */
START_TEST(port_exhaustion)
{
	static const char *const policy[] = { "close", "abort", "peer-first" };
	struct lineserver *ls;
	pool_conn_t *c = NULL;
	char narrow[32];
	const char *ep;
	pool_t *pool;
	int ok = 0, rc = 0;

	if (!fixture_isolated() || !saved_range[0]) {
		printf("faults: port_exhaustion needs root (a private namespace); skipped\n");
		return;
	}
	/* An earlier iteration that failed half way left it narrow. */
	ck_assert(range_write(saved_range));
	ls = server_start(LS_QUIT_CLOSE); /* its port from the full range */
	ep = lineserver_endpoint(ls);
	pool = pool_with("teardown", policy[_i], "close_request", "\"quit\\n\"",
			 "max_idle", "0", NULL);
	quiet_range(narrow, sizeof(narrow));
	ck_assert(range_write(narrow));
	while (ok < 20) {
		rc = pool_get(pool, ep, &c);
		if (rc != 0)
			break;
		ping(c);
		pool_put(pool, c, POOL_RETIRE);
		wait_drains(pool, 2000); /* the server closes before the next */
		ok++;
	}
	if (_i == 0) {
		ck_assert_int_eq(rc, POOL_EADDRNOTAVAIL);
		ck_assert_msg(ok == NPORTS, "%d connections with ports %s", ok, narrow);
		ck_assert_ptr_nonnull(strstr(pool_strerror(rc), "local port"));
		ck_assert_ptr_null(c);
		ck_assert_uint_eq(stats_of(pool, ep).in_use, 0);
	} else {
		ck_assert_msg(rc == 0, "%s: %s after %d", policy[_i], pool_strerror(rc), ok);
	}
	ck_assert(range_write(saved_range));
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	pool_put(pool, c, POOL_RETIRE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- many threads ---------------------------------------------------------- */

#define HAMMER_THREADS 16
#define HAMMER_OPS 150

struct hammer {
	pool_t *pool;
	const char *ep[2];
	int failures;
	int first_error;
	long long worst_ms;  /* longest pool_get */
};

static void *hammer_thread(void *arg)
{
	struct hammer *h = arg;
	int i;

	for (i = 0; i < HAMMER_OPS; i++) {
		pool_conn_t *c;
		long long t0 = mono_ms();
		int rc = pool_get(h->pool, h->ep[i % 2], &c);

		if (mono_ms() - t0 > h->worst_ms)
			h->worst_ms = mono_ms() - t0;
		if (rc != 0) {
			if (!h->failures++)
				h->first_error = rc;
			continue;
		}
		if (!line_roundtrip(pool_conn_fd(c), "PING", "PONG"))
			h->failures++;
		pool_put(h->pool, c, i % 7 == 0 ? POOL_RETIRE :
				     i % 11 == 0 ? POOL_BROKEN : POOL_REUSE);
	}
	return NULL;
}

/* 16 threads, two endpoints, per-endpoint and pool-wide caps: no
 * deadlock, every request answered, and the counters add up. */
START_TEST(sixteen_threads_hammer)
{
	struct lineserver *a = server_start(LS_QUIT_CLOSE);
	struct lineserver *b = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("max_active", "3", "max_total", "4",
				 "max_idle", "2", "acquire_timeout_ms", "10000",
				 "teardown", "peer-first",
				 "close_request", "\"quit\\n\"", NULL);
	struct hammer h[HAMMER_THREADS];
	pthread_t t[HAMMER_THREADS];
	pool_stats_t st;
	int i;

	for (i = 0; i < HAMMER_THREADS; i++) {
		h[i] = (struct hammer){ .pool = pool };
		/* Half the threads start on each endpoint. */
		h[i].ep[i % 2] = lineserver_endpoint(a);
		h[i].ep[(i + 1) % 2] = lineserver_endpoint(b);
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer_thread, &h[i]), 0);
	}
	for (i = 0; i < HAMMER_THREADS; i++)
		pthread_join(t[i], NULL);
	for (i = 0; i < HAMMER_THREADS; i++)
		ck_assert_msg(h[i].failures == 0,
			      "thread %d: %d failures, first: %s (longest get %lld ms)",
			      i, h[i].failures, pool_strerror(h[i].first_error),
			      h[i].worst_ms);
	wait_drains(pool, 5000);
	st = stats_of(pool, NULL);
	ck_assert_uint_eq(st.gets, HAMMER_THREADS * HAMMER_OPS);
	ck_assert_uint_eq(st.connects, st.closed + st.idle + st.in_use);
	ck_assert_uint_eq(st.in_use, 0);
	ck_assert_uint_le(st.idle, 4);
	ck_assert_uint_eq(st.connect_failures, 0);
	ck_assert_uint_eq(st.misuse, 0);
	ck_assert_uint_eq(st.retired_peer_first, st.peer_first_ok + st.peer_first_fallback);
	pool_destroy(pool);
	lineserver_stop(a);
	lineserver_stop(b);
}
END_TEST

struct getter {
	pool_t *pool;
	const char *ep;
	int rc;
	long long ms;
	pool_conn_t *conn;
};

static void *get_thread(void *arg)
{
	struct getter *g = arg;
	long long t0 = mono_ms();

	g->rc = pool_get(g->pool, g->ep, &g->conn);
	g->ms = mono_ms() - t0;
	return NULL;
}

/* max_total 1: a pool_get for A waits while B's connection is in use.
 * When B's connection comes back idle, it is what max_total lets the
 * pool evict for A (as pool_get does when it finds it idle at once), so
 * the waiter must get its slot then, not at acquire_timeout_ms. */
START_TEST(max_total_waiter_gets_slot_when_other_goes_idle)
{
	struct lineserver *a = server_start(LS_QUIT_CLOSE);
	struct lineserver *b = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("max_total", "1", "acquire_timeout_ms", "3000", NULL);
	struct getter g = { .pool = pool, .ep = lineserver_endpoint(a) };
	pool_conn_t *c;
	pthread_t t;

	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(b), &c), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, get_thread, &g), 0);
	usleep(100000); /* the getter is waiting now */
	pool_put(pool, c, POOL_REUSE);
	pthread_join(t, NULL);
	ck_assert_msg(g.rc == 0 && g.ms < 1000,
		      "the waiter got %s after %lld ms", pool_strerror(g.rc), g.ms);
	ping(g.conn);
	pool_put(pool, g.conn, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(a);
	lineserver_stop(b);
}
END_TEST

/* ---- floods ---------------------------------------------------------------- */

/* A peer that sends without end during a drain: the drain's byte budget
 * ends it long before close_timeout_ms, both in the background and in
 * pool_destroy. */
START_TEST(flood_during_drain_is_bounded)
{
	struct lineserver *ls = server_start(LS_QUIT_FLOOD);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first",
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "20000", NULL);
	pool_conn_t *c;
	long long ms, t0;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_RETIRE);
	ms = drains_end_within(pool, 5000);
	ck_assert_msg(ms < 2000, "the flooded drain ran %lld ms", ms);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_fallback, 1);
	/* The same, with pool_destroy waiting for the drain. */
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_RETIRE);
	t0 = mono_ms();
	pool_destroy(pool);
	ms = mono_ms() - t0;
	ck_assert_msg(ms < 2000, "pool_destroy took %lld ms", ms);
	lineserver_stop(ls);
}
END_TEST

/* ---- misuse and bad input ------------------------------------------------------ */

static void count_endpoint(const char *ep, const pool_stats_t *st, void *ud)
{
	(void)ep;
	(void)st;
	++*(int *)ud;
}

static int endpoints_of(pool_t *pool)
{
	int n = 0;

	ck_assert_int_eq(pool_stats_foreach(pool, count_endpoint, &n), 0);
	return n;
}

START_TEST(null_arguments)
{
	pool_t *pool = pool_with(NULL);
	pool_config_t *cfg = pool_config_new();
	pool_stats_t st;
	pool_tw_count_t tw;
	char err[128];
	int next = 7;

	ck_assert_int_eq(pool_stats(NULL, NULL, &st), POOL_EINVAL);
	ck_assert_int_eq(pool_stats(pool, NULL, NULL), POOL_EINVAL);
	ck_assert_int_eq(pool_stats(pool, "127.0.0.1:1", &st), POOL_EINVAL);
	ck_assert_int_eq(pool_stats_foreach(NULL, count_endpoint, NULL), POOL_EINVAL);
	ck_assert_int_eq(pool_stats_foreach(pool, NULL, NULL), POOL_EINVAL);
	ck_assert_int_eq(pool_maintain(NULL, &next), POOL_EINVAL);
	ck_assert_int_eq(pool_maintain(pool, NULL), 0);
	ck_assert_int_eq(pool_maintenance_fd(NULL), POOL_EINVAL);
	pool_set_log(NULL, NULL, NULL);
	pool_set_log(pool, NULL, NULL);
	pool_destroy(NULL);
	pool_config_free(NULL);
	ck_assert_int_eq(pool_conn_reused(NULL), 0);
	ck_assert_int_eq(pool_conn_last_use(NULL), 0);
	ck_assert_ptr_null(pool_conn_endpoint(NULL));
	ck_assert_int_eq(pool_tw_count(NULL, &tw), POOL_EINVAL);
	ck_assert_int_eq(pool_tw_count("127.0.0.1:1", NULL), POOL_EINVAL);
	ck_assert_str_eq(pool_strerror(1), "unknown error");
	ck_assert_str_eq(pool_strerror(POOL_ERR_LAST - 1), "unknown error");
	/* Config calls: EINVAL, a message when there is room for one. */
	ck_assert_int_eq(pool_config_set(NULL, NULL, "max_idle", "1", err, sizeof(err)),
			 POOL_EINVAL);
	ck_assert_int_gt(strlen(err), 0);
	ck_assert_int_eq(pool_config_set(cfg, NULL, NULL, "1", err, sizeof(err)),
			 POOL_EINVAL);
	ck_assert_int_eq(pool_config_set(cfg, NULL, "max_idle", NULL, err, sizeof(err)),
			 POOL_EINVAL);
	ck_assert_int_eq(pool_config_set(cfg, NULL, "max_idle", "x", NULL, 0),
			 POOL_ECONFIG);
	err[0] = 'Z'; /* errlen 0: err must not be written */
	ck_assert_int_eq(pool_config_set(cfg, NULL, "max_idle", "x", err, 0),
			 POOL_ECONFIG);
	ck_assert_int_eq(err[0], 'Z');
	ck_assert_int_eq(pool_config_load(NULL, "/dev/null", err, sizeof(err)),
			 POOL_EINVAL);
	ck_assert_int_eq(pool_config_load(cfg, NULL, NULL, 0), POOL_EINVAL);
	ck_assert_int_eq(pool_config_set(cfg, NULL, "max_idle", "1", NULL, 0), 0);
	ck_assert_int_eq(endpoints_of(pool), 0);
	pool_config_free(cfg);
	pool_destroy(pool);
}
END_TEST

/* Malformed endpoints are rejected and leave no trace in the pool. */
START_TEST(bad_endpoints_leave_no_trace)
{
	static const char *const bad[] = {
		"", ":", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0",
		"127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:80x", "[::1:80",
		"[::1]80", "unix:", "*:80", "127.0.0.1:80:80",
	};
	pool_t *pool = pool_with(NULL);
	unsigned i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		pool_conn_t *c = (pool_conn_t *)&i; /* must come back NULL */

		ck_assert_msg(pool_get(pool, bad[i], &c) == POOL_EENDPOINT,
			      "endpoint \"%s\" accepted", bad[i]);
		ck_assert_ptr_null(c);
	}
	ck_assert_int_eq(endpoints_of(pool), 0);
	ck_assert_uint_eq(stats_of(pool, NULL).connects, 0);
	pool_destroy(pool);
}
END_TEST

/* Stats that misuse must not change (misuse itself aside). */
static void assert_same(const pool_stats_t *a, pool_t *pool)
{
	pool_stats_t now = stats_of(pool, NULL);
	const pool_stats_t *b = &now;

	ck_assert_uint_eq(a->gets, b->gets);
	ck_assert_uint_eq(a->connects, b->connects);
	ck_assert_uint_eq(a->closed, b->closed);
	ck_assert_uint_eq(a->retired_close + a->retired_abort + a->retired_peer_first,
			  b->retired_close + b->retired_abort + b->retired_peer_first);
	ck_assert_uint_eq(a->in_use, b->in_use);
	ck_assert_uint_eq(a->idle, b->idle);
}

/* A put to the wrong pool, with a bad mode, or twice: ignored and
 * counted as misuse; both pools unchanged, the connection still good. */
START_TEST(bad_puts_change_nothing)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with(NULL), *other = pool_with(NULL);
	pool_stats_t before, other_before;
	pool_conn_t *c, *again;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	before = stats_of(pool, NULL);
	other_before = stats_of(other, NULL);
	pool_put(other, c, POOL_RETIRE);
	pool_put(other, c, POOL_BROKEN);
	pool_put(NULL, c, POOL_RETIRE);
	pool_put(pool, c, (pool_put_mode)-1);
	assert_same(&before, pool);
	assert_same(&other_before, other);
	ck_assert_int_eq(endpoints_of(other), 0);
	ck_assert_uint_eq(stats_of(other, NULL).misuse, 2);
	ping(c); /* still open and ours */
	pool_put(pool, c, POOL_REUSE);
	/* Twice: the second put finds it idle, not checked out. */
	before = stats_of(pool, NULL);
	pool_put(pool, c, POOL_RETIRE);
	pool_put(pool, c, POOL_BROKEN);
	assert_same(&before, pool);
	ck_assert_uint_eq(stats_of(pool, NULL).misuse, 3);
	ck_assert_int_eq(pool_get(pool, ep, &again), 0);
	ck_assert_ptr_eq(again, c);
	ping(again);
	pool_put(pool, again, POOL_REUSE);
	pool_destroy(other);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

static TCase *faults_tcase(const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	return tc;
}

Suite *faults_suite(void)
{
	Suite *s = suite_create("faults");
	TCase *tc = faults_tcase("servers");
	TCase *ports = faults_tcase("ports");
	TCase *misuse = faults_tcase("misuse");

	tcase_add_test(tc, restart_real_server_while_idle);
	tcase_add_test(tc, restart_line_server_while_idle);
	tcase_add_test(tc, reply_without_close_falls_back_at_deadline);
	tcase_add_test(tc, reset_on_close_request);
	tcase_add_test(tc, reset_idle_connection_is_stale);
	tcase_add_test(tc, full_backlog_honours_connect_timeout);
	tcase_add_test(tc, refused_then_served);
	tcase_add_test(tc, real_server_killed_mid_drain);
	tcase_add_test(tc, line_server_stops_mid_drain);
	tcase_add_test(tc, emfile_is_reported_and_recovered);
	tcase_add_test(tc, emfile_in_pool_create);
	tcase_add_test(tc, sixteen_threads_hammer);
	tcase_add_test(tc, max_total_waiter_gets_slot_when_other_goes_idle);
	tcase_add_test(tc, flood_during_drain_is_bounded);
	suite_add_tcase(s, tc);
	/* The port range is namespace-wide: restored by the runner itself. */
	tcase_add_unchecked_fixture(ports, range_save, range_restore);
	tcase_add_loop_test(ports, port_exhaustion, 0, 3);
	suite_add_tcase(s, ports);
	tcase_add_test(misuse, null_arguments);
	tcase_add_test(misuse, bad_endpoints_leave_no_trace);
	tcase_add_test(misuse, bad_puts_change_nothing);
	suite_add_tcase(s, misuse);
	return s;
}
