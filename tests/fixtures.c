#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixtures.h"

static bool isolated;

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int loopback_up(void)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc = -1;

	if (fd < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	close(fd);
	return rc;
}

bool fixture_private_netns(void)
{
	if (geteuid() != 0 || getenv("TCPOOL_TEST_NO_NETNS"))
		return false;
	if (unshare(CLONE_NEWNET) != 0) {
		fprintf(stderr, "tests: unshare(CLONE_NEWNET): %s; using the host namespace\n",
			strerror(errno));
		return false;
	}
	if (loopback_up() != 0 ||
	    write_file("/proc/sys/net/ipv4/tcp_tw_reuse", "0") != 0) {
		fprintf(stderr, "tests: cannot set up the private namespace\n");
		return false;
	}
	isolated = true;
	return true;
}

bool fixture_isolated(void)
{
	return isolated;
}

/*
 * Each test runs on one CPU, in a network namespace of its own when the
 * runner could make one (as root). The namespace: another test's
 * TIME_WAIT sockets toward a port the kernel hands out again must not add
 * to this test's counts. The CPU: on loopback across CPUs the client's
 * ACK of the server's FIN can arrive after the client's own FIN; the
 * server's TIME_WAIT answers that stray ACK, the closed client answers
 * with an RST, and the RST kills the TIME_WAIT (measured 2026-11-26 on
 * this 2-CPU VM: 0.13 in 1,000 server-first closes at a load average near
 * 2, 2.7 in 1,000 with both CPUs busy, none on one CPU; see
 * pool_tw_count(3)). Threads started later
 * (servers, the pool's maintenance) inherit both.
 */
void fixture_isolate_test(void)
{
	cpu_set_t one;
	int cpu = sched_getcpu();

	if (fixture_isolated())
		ck_assert(fixture_private_netns());
	CPU_ZERO(&one);
	CPU_SET(cpu >= 0 ? cpu : 0, &one);
	sched_setaffinity(0, sizeof(one), &one);
}

static int fds_before;

void fixture_test_setup(void)
{
	fixture_isolate_test();
	fds_before = fd_count();
}

void fixture_test_teardown(void)
{
	ck_assert_int_eq(fd_count(), fds_before);
}

void fixture_test_teardown_no_more(void)
{
	ck_assert_int_le(fd_count(), fds_before);
}

void child_report_init(struct child_report *r)
{
	ck_assert_int_eq(pipe2(r->fd, O_CLOEXEC), 0);
}

void child_report_exit(struct child_report *r, int rc)
{
	ssize_t n = write(r->fd[1], &rc, sizeof(rc));

	_exit(n == (ssize_t)sizeof(rc) ? rc : 98);
}

int child_report_wait(struct child_report *r, pid_t pid)
{
	int rc = -1;

	close(r->fd[1]);
	if (read(r->fd[0], &rc, sizeof(rc)) != (ssize_t)sizeof(rc))
		rc = -1; /* the child died before it could say */
	close(r->fd[0]);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	return rc;
}

int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own descriptor */
}

static pool_config_t *config_va(const char *key, va_list ap)
{
	pool_config_t *cfg = pool_config_new();
	char err[256];

	ck_assert_ptr_nonnull(cfg);
	while (key) {
		const char *value = va_arg(ap, const char *);
		int rc = pool_config_set(cfg, NULL, key, value, err, sizeof(err));

		ck_assert_msg(rc == 0, "config %s = %s: %s", key, value, err);
		key = va_arg(ap, const char *);
	}
	return cfg;
}

pool_config_t *config_with(const char *key, ...)
{
	pool_config_t *cfg;
	va_list ap;

	va_start(ap, key);
	cfg = config_va(key, ap);
	va_end(ap);
	return cfg;
}

pool_t *pool_with(const char *key, ...)
{
	pool_config_t *cfg;
	pool_t *pool = NULL;
	va_list ap;
	int rc;

	va_start(ap, key);
	cfg = config_va(key, ap);
	va_end(ap);
	rc = pool_create(&pool, cfg);
	pool_config_free(cfg);
	ck_assert_msg(rc == 0, "pool_create: %s", pool_strerror(rc));
	return pool;
}

struct lineserver *server_start(enum ls_quit_mode on_quit)
{
	struct lineserver_opts o = { .on_quit = on_quit };
	struct lineserver *ls = lineserver_start(&o);

	ck_assert_msg(ls != NULL, "lineserver_start: %s", strerror(errno));
	return ls;
}

/* pool_tw_count, failing the test with the error's text. */
static pool_tw_count_t tw_count(const char *endpoint)
{
	pool_tw_count_t tw = { 0, 0 };
	int rc = pool_tw_count(endpoint, &tw);

	ck_assert_msg(rc == 0, "pool_tw_count(\"%s\"): %d, %s", endpoint, rc,
		      pool_strerror(rc));
	return tw;
}

unsigned tw_client(const char *endpoint)
{
	return tw_count(endpoint).client;
}

unsigned tw_server(const char *endpoint)
{
	return tw_count(endpoint).server;
}

long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tw_expect(const char *endpoint, unsigned client, unsigned server)
{
	long long end = mono_ms() + 2000;
	pool_tw_count_t tw = { 0, 0 };

	do {
		tw = tw_count(endpoint);
		if (tw.client == client && tw.server == server)
			return;
		usleep(10000);
	} while (mono_ms() < end);
	ck_abort_msg("TIME_WAIT toward %s: client %u, server %u; expected %u and %u",
		     endpoint, tw.client, tw.server, client, server);
}

static bool read_line(int fd, char *buf, size_t len)
{
	size_t off = 0;

	while (off + 1 < len) {
		ssize_t n = recv(fd, buf + off, 1, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		if (buf[off] == '\n') {
			buf[off] = '\0';
			return true;
		}
		off++;
	}
	return false;
}

bool line_roundtrip(int fd, const char *line, const char *reply)
{
	char buf[256], got[256];
	int n = snprintf(buf, sizeof(buf), "%s\n", line);

	if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
		return false;
	if (!read_line(fd, got, sizeof(got)))
		return false;
	return strcmp(got, reply) == 0;
}

void ping(pool_conn_t *c)
{
	ck_assert_msg(line_roundtrip(pool_conn_fd(c), "PING", "PONG"),
		      "PING on fd %d got no PONG", pool_conn_fd(c));
}

pool_stats_t stats_of(pool_t *pool, const char *endpoint)
{
	pool_stats_t st;

	ck_assert_int_eq(pool_stats(pool, endpoint, &st), 0);
	return st;
}

void wait_drains(pool_t *pool, int ms)
{
	long long end = mono_ms() + ms;

	while (stats_of(pool, NULL).draining && mono_ms() < end)
		usleep(5000);
	ck_assert_uint_eq(stats_of(pool, NULL).draining, 0);
}

/* Fill a paused server's accept queue with raw connects until one hangs
 * (its SYN dropped). Returns how many sockets went into fill[]. */
int fill_backlog(uint16_t port, int *fill, int max)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int n;

	for (n = 0; n < max; n++) {
		struct pollfd p = { .events = POLLOUT };

		fill[n] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		ck_assert_int_ge(fill[n], 0);
		if (connect(fill[n], (struct sockaddr *)&sa, sizeof(sa)) == 0)
			continue;
		ck_assert_int_eq(errno, EINPROGRESS);
		p.fd = fill[n];
		if (poll(&p, 1, 100) == 0)
			return n + 1; /* this one hangs: the queue is full */
	}
	return n;
}

uint16_t fd_local_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	return ntohs(sa.sin_port);
}

unsigned distinct_ports(const uint16_t *ports, int n)
{
	unsigned count = 0;
	int i, j;

	for (i = 0; i < n; i++) {
		for (j = i + 1; j < n && ports[j] != ports[i]; j++)
			;
		count += j == n; /* the last use of this port */
	}
	return count;
}
