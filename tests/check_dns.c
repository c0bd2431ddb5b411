/*
 * Name resolution and DNS refresh, against the system's own resolver.
 *
 * No DNS server and no stub: each test runs in a private mount namespace
 * (as root; skipped otherwise) where /etc/hosts, /etc/nsswitch.conf and
 * /etc/resolv.conf are temporary files bind-mounted over the real ones,
 * so that a name can move from 127.0.0.2 to 127.0.0.3 (line servers on
 * both, same port) while the pool runs, and a "DNS server" on 127.0.0.9
 * can take queries and never answer. What a user checks: where new
 * connections go (getpeername), which ones the pool retires and when
 * (the servers' open connections, pool_conn_last_use), TIME_WAIT by
 * policy, and how long a call may block.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixtures.h"
#include "resolve.h"
#include "suites.h"

#define NAME "dnstest.invalid"
#define HANG_NAME "hang.tcpool-test.example"

/* ---- the private /etc ------------------------------------------------ */

struct fake_file {
	const char *target;
	char tmp[64];
};

static struct fake_file hosts = { "/etc/hosts", "" };
static struct fake_file nsswitch = { "/etc/nsswitch.conf", "" };
static struct fake_file resolvconf = { "/etc/resolv.conf", "" };

/* A mount namespace of this process's own (once: it survives from test to
 * test under CK_FORK=no, and the bind mounts are undone after each). */
static bool private_mounts(void)
{
	static bool ready;

	if (geteuid() != 0)
		return false;
	if (!ready) {
		if (unshare(CLONE_NEWNS) != 0)
			return false;
		if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0)
			return false;
		ready = true;
	}
	return true;
}

/* Rewrite f's content in place: the bind mount shows the same inode. */
static void fake_write(struct fake_file *f, const char *text)
{
	int fd = open(f->tmp, O_WRONLY | O_TRUNC | O_CLOEXEC);
	size_t len = strlen(text);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
}

static void fake_bind(struct fake_file *f, const char *text)
{
	int fd;

	snprintf(f->tmp, sizeof(f->tmp), "/tmp/tcpool-dns-XXXXXX");
	fd = mkstemp(f->tmp);
	ck_assert_int_ge(fd, 0);
	close(fd);
	fake_write(f, text);
	ck_assert_msg(mount(f->tmp, f->target, "none", MS_BIND, NULL) == 0,
		      "bind %s: %s", f->target, strerror(errno));
}

static void fake_unbind(struct fake_file *f)
{
	if (!f->tmp[0])
		return;
	umount(f->target);
	unlink(f->tmp);
	f->tmp[0] = '\0';
}

static void dns_setup(void)
{
	/* Lookup threads left by earlier tests end first (and close what
	 * they hold): in one process (CK_FORK=no, under valgrind) their
	 * descriptors would otherwise be counted here and gone at the end. */
	ck_assert(resolve_threads_wait(15000));
	fixture_test_setup();
}

static void dns_teardown(void)
{
	/* A lookup thread may outlive its pool while the resolver hangs:
	 * wait for it (it holds a socket) before counting descriptors. */
	ck_assert(resolve_threads_wait(15000));
	fake_unbind(&hosts);
	fake_unbind(&nsswitch);
	fake_unbind(&resolvconf);
	/* At most as many: in one process (valgrind), a lookup thread of an
	 * earlier test may close what it held during this one. */
	fixture_test_teardown_no_more();
}

/* NAME resolves to ip through /etc/hosts alone. */
static bool fake_hosts(const char *ip)
{
	char text[128];

	if (!private_mounts()) {
		printf("dns: needs root (a private mount namespace); test skipped\n");
		return false;
	}
	snprintf(text, sizeof(text), "127.0.0.1 localhost\n%s " NAME "\n", ip);
	fake_bind(&hosts, text);
	fake_bind(&nsswitch, "hosts: files\n");
	return true;
}

static void move_name(const char *ip)
{
	char text[128];

	snprintf(text, sizeof(text), "127.0.0.1 localhost\n%s " NAME "\n", ip);
	fake_write(&hosts, text);
}

/* ---- helpers ---------------------------------------------------------- */

static struct lineserver *server_on(const char *ip, uint16_t port)
{
	struct lineserver_opts o = { .bind_addr = ip, .port = port };

	return lineserver_start(&o);
}

/* Line servers on 127.0.0.2 and 127.0.0.3, on one port. */
static void two_servers(struct lineserver **s2, struct lineserver **s3)
{
	int tries;

	for (tries = 0; tries < 20; tries++) {
		*s2 = server_on("127.0.0.2", 0);
		ck_assert_ptr_nonnull(*s2);
		*s3 = server_on("127.0.0.3", lineserver_port(*s2));
		if (*s3)
			return;
		lineserver_stop(*s2);
	}
	ck_abort_msg("no port free on both 127.0.0.2 and 127.0.0.3");
}

static unsigned server_open(struct lineserver *ls)
{
	struct lineserver_stats st;

	lineserver_get_stats(ls, &st);
	return st.open;
}

/* The peer's address of a checked-out connection, as text. */
static const char *peer_of(pool_conn_t *c)
{
	static char buf[INET_ADDRSTRLEN];
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	ck_assert_int_eq(getpeername(pool_conn_fd(c), (struct sockaddr *)&sin, &len), 0);
	return inet_ntop(AF_INET, &sin.sin_addr, buf, sizeof(buf));
}

/* A copy of ep's counters beyond pool_stats_t (white box). */
static struct ep_xstats xstats_of(pool_t *pool, const char *endpoint)
{
	struct pool_endpoint *ep;
	struct ep_xstats x;

	ck_assert_int_eq(pool_endpoint_lock(pool, endpoint, &ep), 0);
	x = ep->xstats;
	pool_endpoint_unlock(ep);
	return x;
}

/* Every retirement of endpoint, all reasons and policies (pool_stats_ex). */
static uint64_t retired_total(pool_t *pool, const char *endpoint)
{
	pool_stats_ex_t ex;
	uint64_t all = 0;
	int r, p;

	ck_assert_int_eq(pool_stats_ex(pool, endpoint, &ex, sizeof(ex)), 0);
	for (r = 0; r < POOL_REASON_COUNT; r++)
		for (p = 0; p < POOL_POLICY_COUNT; p++)
			all += ex.retired[r][p];
	return all;
}

static void name_endpoint(char *buf, size_t len, const char *name, struct lineserver *ls)
{
	snprintf(buf, len, "%s:%u", name, lineserver_port(ls));
}

/* ---- DNS refresh -------------------------------------------------------- */

/* The name moves from .2 to .3: at the next refresh the idle connections
 * to .2 are retired (RR_DNS) by the policy, the checked-out one is told
 * it is its last use and retired at its put, and new ones go to .3. */
static void name_moves(const char *policy, int policy_code, unsigned client_tw,
		       unsigned server_tw)
{
	struct lineserver *s2, *s3;
	pool_conn_t *c[3];
	pool_stats_ex_t ex;
	pool_stats_t st;
	char ep[300];
	pool_t *pool;
	int i;

	if (!fake_hosts("127.0.0.2"))
		return;
	two_servers(&s2, &s3);
	name_endpoint(ep, sizeof(ep), NAME, s2);
	pool = pool_with("teardown", policy, "close_request", "\"quit\\n\"",
			 "dns_refresh_ms", "200", NULL);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(pool_get(pool, ep, &c[i]), 0);
		ck_assert_str_eq(peer_of(c[i]), "127.0.0.2");
		ping(c[i]);
	}
	pool_put(pool, c[0], POOL_REUSE);
	pool_put(pool, c[1], POOL_REUSE);
	ck_assert_int_eq(pool_conn_last_use(c[2]), 0);
	/* The stats also order that read before the maintenance's write
	 * of the doom, through the shard lock: pool_conn_last_use reads
	 * c->doomed without one (checkout.c), which TSan would flag. */
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.idle, 2);
	ck_assert_uint_eq(st.in_use, 1);
	move_name("127.0.0.3");
	/* Within a refresh period or two: the idle two go, c[2] stays. */
	wait_for(server_open(s2) == 1, 3000);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.idle, 0);
	ck_assert_uint_eq(st.in_use, 1);
	ck_assert_uint_ge(xstats_of(pool, ep).dns_changes, 1);
	ck_assert_uint_ge(xstats_of(pool, ep).resolves, 1);
	ck_assert_int_eq(pool_conn_last_use(c[2]), 1);
	ping(c[2]); /* still the caller's to use until its put */
	pool_put(pool, c[2], POOL_REUSE);
	wait_for(server_open(s2) == 0, 2000);
	wait_drains(pool, 2000);
	tw_expect(lineserver_endpoint(s2), client_tw, server_tw);
	/* All three retired for the DNS change, by the policy, and for
	 * nothing else. */
	ck_assert_int_eq(pool_stats_ex(pool, ep, &ex, sizeof(ex)), 0);
	ck_assert_uint_eq(ex.retired[POOL_REASON_DNS][policy_code], 3);
	ck_assert_uint_eq(retired_total(pool, ep), 3);
	/* New connections go where the name now points. */
	ck_assert_int_eq(pool_get(pool, ep, &c[0]), 0);
	ck_assert_str_eq(peer_of(c[0]), "127.0.0.3");
	ck_assert(!pool_conn_reused(c[0]));
	ping(c[0]);
	pool_put(pool, c[0], POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(s2);
	lineserver_stop(s3);
}

START_TEST(refresh_abort)
{
	name_moves("abort", POOL_POLICY_ABORT, 0, 0);
}
END_TEST

START_TEST(refresh_close)
{
	name_moves("close", POOL_POLICY_CLOSE, 3, 0);
}
END_TEST

/* peer-first: the server closes first, and holds the TIME_WAIT. */
START_TEST(refresh_peer_first)
{
	name_moves("peer-first", POOL_POLICY_PEER_FIRST, 0, 3);
}
END_TEST

/* A name that keeps its address keeps its connections: refreshes run
 * (lookups counted), nothing is retired, nothing changes. */
START_TEST(refresh_same_keeps)
{
	struct lineserver *s2, *s3;
	pool_conn_t *c;
	char ep[300];
	pool_t *pool;

	if (!fake_hosts("127.0.0.2"))
		return;
	two_servers(&s2, &s3);
	name_endpoint(ep, sizeof(ep), NAME, s2);
	pool = pool_with("dns_refresh_ms", "100", NULL);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_REUSE);
	wait_for(xstats_of(pool, ep).resolves >= 3, 3000);
	ck_assert_uint_eq(xstats_of(pool, ep).dns_changes, 0);
	ck_assert_uint_eq(retired_total(pool, ep), 0);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 1);
	ck_assert_uint_eq(server_open(s2), 1);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert(pool_conn_reused(c));
	ck_assert_int_eq(pool_conn_last_use(c), 0);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(s2);
	lineserver_stop(s3);
}
END_TEST

/* A refresh that fails (the name vanished) keeps the connections: a
 * DNS outage is no reason to drop working ones. */
START_TEST(refresh_failure_keeps)
{
	struct lineserver *s2, *s3;
	pool_conn_t *c;
	char ep[300];
	pool_t *pool;

	if (!fake_hosts("127.0.0.2"))
		return;
	two_servers(&s2, &s3);
	name_endpoint(ep, sizeof(ep), NAME, s2);
	pool = pool_with("dns_refresh_ms", "100", NULL);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_REUSE);
	fake_write(&hosts, "127.0.0.1 localhost\n");
	wait_for(xstats_of(pool, ep).resolve_failures >= 2, 3000);
	ck_assert_uint_eq(retired_total(pool, ep), 0);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 1);
	ck_assert_uint_eq(server_open(s2), 1);
	pool_destroy(pool);
	lineserver_stop(s2);
	lineserver_stop(s3);
}
END_TEST

/* ---- the cache ---------------------------------------------------------- */

/* dns_refresh_ms > 0: the second connect uses the cached addresses, no
 * second lookup; 0 (the default): every connect looks the name up. */
static unsigned lookups_for_two_connects(const char *refresh_ms)
{
	struct lineserver *s2, *s3;
	pool_conn_t *a, *b;
	unsigned n;
	char ep[300];
	pool_t *pool;

	two_servers(&s2, &s3);
	name_endpoint(ep, sizeof(ep), NAME, s2);
	pool = pool_with("dns_refresh_ms", refresh_ms, NULL);
	ck_assert_int_eq(pool_get(pool, ep, &a), 0);
	ck_assert_int_eq(pool_get(pool, ep, &b), 0); /* a second connect */
	ck_assert_str_eq(peer_of(b), "127.0.0.2");
	n = (unsigned)xstats_of(pool, ep).resolves;
	ck_assert_uint_eq(stats_of(pool, ep).connects, 2);
	pool_put(pool, a, POOL_REUSE);
	pool_put(pool, b, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(s2);
	lineserver_stop(s3);
	return n;
}

START_TEST(cache_one_lookup)
{
	if (!fake_hosts("127.0.0.2"))
		return;
	ck_assert_uint_eq(lookups_for_two_connects("60000"), 1);
	ck_assert_uint_eq(lookups_for_two_connects("0"), 2);
}
END_TEST

/* A cached name whose endpoint was forgotten goes too, though nothing
 * else keeps the maintenance busy: a client that talks to many names in
 * turn must not keep every one it resolved (before the fix, the entry
 * outlived its endpoint for as long as the pool). */
START_TEST(cache_forgotten_with_endpoint)
{
	struct lineserver *s2, *s3;
	pool_conn_t *c;
	pool_stats_t st;
	char ep[300];
	pool_t *pool;

	if (!fake_hosts("127.0.0.2"))
		return;
	two_servers(&s2, &s3);
	name_endpoint(ep, sizeof(ep), NAME, s2);
	pool = pool_with("dns_refresh_ms", "200", "idle_timeout_ms", "100", NULL);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_uint_eq(resolve_cache_entries(pool), 1);
	pool_put(pool, c, POOL_RETIRE);
	wait_for(pool_stats(pool, ep, &st) == POOL_EINVAL, 3000);
	wait_for(resolve_cache_entries(pool) == 0, 3000);
	pool_destroy(pool);
	lineserver_stop(s2);
	lineserver_stop(s3);
}
END_TEST

/* An IP literal is never looked up: answered inline, no request, no
 * lookup counted. */
START_TEST(literal_inline)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	struct pool_endpoint *ep;
	struct resolve_req *req = NULL;
	struct addr_set *set = NULL;
	pool_t *pool = pool_with(NULL);
	struct sockaddr_in *sin;

	ck_assert_int_eq(pool_endpoint_lock(pool, lineserver_endpoint(ls), &ep), 0);
	pool_endpoint_unlock(ep); /* the pool is idle: ep stays */
	ck_assert_int_eq(resolve_begin(pool, ep, &set, &req), 0);
	ck_assert_ptr_null(req);
	ck_assert_uint_eq(set->n, 1);
	sin = &set->addr[0].in;
	ck_assert_int_eq(sin->sin_family, AF_INET);
	ck_assert_uint_eq(ntohs(sin->sin_port), lineserver_port(ls));
	ck_assert_uint_eq(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
	addr_set_unref(set);
	ck_assert_uint_eq(xstats_of(pool, lineserver_endpoint(ls)).resolves, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* A name: resolve_begin returns at once with a request whose fd turns
 * readable when the answer is in, well before resolve_timeout_ms. */
START_TEST(fd_readable_at_result)
{
	struct resolve_req *req = NULL;
	struct addr_set *set = NULL;
	struct pool_endpoint *ep;
	struct pollfd p;
	pool_t *pool;
	long long t0, took;

	if (!fake_hosts("127.0.0.2"))
		return;
	pool = pool_with("resolve_timeout_ms", "5000", NULL);
	ck_assert_int_eq(pool_endpoint_lock(pool, NAME ":7", &ep), 0);
	pool_endpoint_unlock(ep);
	t0 = mono_ms();
	ck_assert_int_eq(resolve_begin(pool, ep, &set, &req), POOL_EINPROGRESS);
	p = (struct pollfd){ .fd = resolve_req_fd(req), .events = POLLIN };
	ck_assert_int_eq(poll(&p, 1, 5000), 1);
	took = mono_ms() - t0;
	ck_assert_msg(took < 1000, "readable after %lld ms", took);
	ck_assert_int_eq(resolve_req_end(req, &set), 0);
	ck_assert_uint_eq(set->n, 1);
	ck_assert_uint_eq(ntohl(set->addr[0].in.sin_addr.s_addr), 0x7f000002u);
	ck_assert_uint_eq(ntohs(set->addr[0].in.sin_port), 7);
	addr_set_unref(set);
	ck_assert_uint_eq(xstats_of(pool, NAME ":7").resolves, 1);
	pool_destroy(pool);
}
END_TEST

/* ---- a resolver that never answers -------------------------------------- */

/* A "DNS server" on 127.0.0.9:53 that takes queries and never answers;
 * resolv.conf points there, with a 2 s timeout: longer than any
 * resolve_timeout_ms below, short enough for the lookup threads left
 * behind to end before the next test. Returns its socket. */
static int dead_dns(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(53) };
	int fd;

	if (!private_mounts()) {
		printf("dns: needs root (a private mount namespace); test skipped\n");
		return -1;
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	inet_pton(AF_INET, "127.0.0.9", &sin.sin_addr);
	ck_assert_msg(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0,
		      "bind 127.0.0.9:53: %s", strerror(errno));
	fake_bind(&hosts, "127.0.0.1 localhost\n");
	fake_bind(&nsswitch, "hosts: files dns\n");
	fake_bind(&resolvconf, "nameserver 127.0.0.9\noptions timeout:2 attempts:1\n");
	return fd;
}

/* The locked endpoint record of key, unlocked (kept: pool idle). */
static struct pool_endpoint *endpoint_of(pool_t *pool, const char *key)
{
	struct pool_endpoint *ep;

	ck_assert_int_eq(pool_endpoint_lock(pool, key, &ep), 0);
	pool_endpoint_unlock(ep);
	return ep;
}

/* resolve_begin returns at once; the request's fd turns readable at
 * resolve_timeout_ms; the result is POOL_ERESOLVE, errno ETIMEDOUT; and
 * pool_destroy right after does not wait for the lookup stuck in
 * getaddrinfo. */
START_TEST(timeout_never_blocks)
{
	int dns = dead_dns();
	struct resolve_req *req = NULL;
	struct addr_set *set = NULL;
	struct pool_endpoint *ep;
	struct pollfd p;
	long long t0, waited;
	pool_t *pool;
	int rc;

	if (dns < 0)
		return;
	pool = pool_with("resolve_timeout_ms", "300", NULL);
	ep = endpoint_of(pool, HANG_NAME ":80");
	t0 = mono_ms();
	rc = resolve_begin(pool, ep, &set, &req);
	ck_assert_int_eq(rc, POOL_EINPROGRESS);
	ck_assert_int_lt(mono_ms() - t0, 100);
	p = (struct pollfd){ .fd = resolve_req_fd(req), .events = POLLIN };
	ck_assert_int_eq(poll(&p, 1, 5000), 1);
	waited = mono_ms() - t0;
	ck_assert_msg(waited >= 290 && waited < 1500, "readable after %lld ms", waited);
	errno = 0;
	ck_assert_int_eq(resolve_req_end(req, &set), POOL_ERESOLVE);
	ck_assert_int_eq(errno, ETIMEDOUT);
	ck_assert_ptr_null(set);
	ck_assert_uint_eq(xstats_of(pool, HANG_NAME ":80").resolve_timeouts, 1);
	ck_assert_uint_eq(xstats_of(pool, HANG_NAME ":80").resolve_failures, 1);
	t0 = mono_ms();
	pool_destroy(pool);
	waited = mono_ms() - t0;
	ck_assert_msg(waited < 200, "pool_destroy took %lld ms", waited);
	close(dns);
}
END_TEST

/* pool_get itself is bounded by resolve_timeout_ms. */
START_TEST(timeout_pool_get)
{
	int dns = dead_dns();
	pool_conn_t *c = NULL;
	long long t0, took;
	pool_t *pool;

	if (dns < 0)
		return;
	pool = pool_with("resolve_timeout_ms", "300", NULL);
	t0 = mono_ms();
	errno = 0;
	ck_assert_int_eq(pool_get(pool, HANG_NAME ":80", &c), POOL_ERESOLVE);
	took = mono_ms() - t0;
	ck_assert_int_eq(errno, ETIMEDOUT);
	ck_assert_msg(took >= 290 && took < 1500, "pool_get took %lld ms", took);
	pool_destroy(pool);
	close(dns);
}
END_TEST

/* Lookups of one name in flight are shared (one thread), and the threads
 * are bounded however many names hang; a request can be cancelled at any
 * point. */
START_TEST(shared_and_bounded)
{
	int dns = dead_dns();
	struct resolve_req *req[8];
	struct addr_set *set;
	struct pool_endpoint *ep;
	char key[64];
	pool_t *pool;
	int i;

	if (dns < 0)
		return;
	pool = pool_with("resolve_timeout_ms", "5000", NULL);
	ep = endpoint_of(pool, HANG_NAME ":80");
	ck_assert_int_eq(resolve_begin(pool, ep, &set, &req[0]), POOL_EINPROGRESS);
	ck_assert_int_eq(resolve_begin(pool, ep, &set, &req[1]), POOL_EINPROGRESS);
	ck_assert_uint_eq(resolve_threads(), 1);
	resolve_req_cancel(req[0]);
	for (i = 2; i < 8; i++) {
		snprintf(key, sizeof(key), "h%d." HANG_NAME ":80", i);
		ep = endpoint_of(pool, key);
		ck_assert_int_eq(resolve_begin(pool, ep, &set, &req[i]), POOL_EINPROGRESS);
	}
	ck_assert_uint_le(resolve_threads(), 4);
	/* Still in progress: nothing answered, no deadline passed. */
	ck_assert_int_eq(resolve_req_end(req[1], &set), POOL_EINPROGRESS);
	for (i = 1; i < 8; i++)
		resolve_req_cancel(req[i]);
	pool_destroy(pool);
	close(dns);
}
END_TEST

/* Every lookup thread stuck in getaddrinfo: a lookup of another name
 * queues behind them, and still its caller never waits past
 * resolve_timeout_ms: pool_get_start returns at once, its fd turns
 * readable at the deadline, pool_get_finish gives ETIMEDOUT; a blocking
 * pool_get of yet another name too. */
START_TEST(stuck_threads_queue_times_out)
{
	int dns = dead_dns();
	struct resolve_req *req[4];
	struct addr_set *set;
	pool_pending_t *pend = NULL;
	pool_conn_t *c = NULL;
	struct pollfd p;
	long long t0, took;
	char key[64];
	pool_t *pool;
	int i, rc;

	if (dns < 0)
		return;
	pool = pool_with("resolve_timeout_ms", "300", NULL);
	for (i = 0; i < 4; i++) {
		snprintf(key, sizeof(key), "s%d." HANG_NAME ":80", i);
		ck_assert_int_eq(resolve_begin(pool, endpoint_of(pool, key), &set, &req[i]),
				 POOL_EINPROGRESS);
	}
	ck_assert_uint_eq(resolve_threads(), 4);
	t0 = mono_ms();
	rc = pool_get_start(pool, "q1." HANG_NAME ":80", &c, &pend);
	ck_assert_int_eq(rc, POOL_EINPROGRESS);
	ck_assert_int_lt(mono_ms() - t0, 100);
	ck_assert_uint_eq(resolve_threads(), 4); /* queued, no fifth thread */
	p.fd = pool_pending_fd(pend, &p.events);
	ck_assert_int_eq(poll(&p, 1, 5000), 1);
	took = mono_ms() - t0;
	ck_assert_msg(took >= 290 && took < 1500, "readable after %lld ms", took);
	errno = 0;
	while ((rc = pool_get_finish(pool, pend, &c)) == POOL_EINPROGRESS)
		ck_assert_int_eq(poll(&p, 1, 5000), 1);
	ck_assert_int_eq(rc, POOL_ERESOLVE);
	ck_assert_int_eq(errno, ETIMEDOUT);
	ck_assert_msg(mono_ms() - t0 < 1500, "finished after %lld ms", mono_ms() - t0);
	t0 = mono_ms();
	errno = 0;
	ck_assert_int_eq(pool_get(pool, "q2." HANG_NAME ":80", &c), POOL_ERESOLVE);
	ck_assert_int_eq(errno, ETIMEDOUT);
	took = mono_ms() - t0;
	ck_assert_msg(took >= 290 && took < 1500, "pool_get took %lld ms", took);
	ck_assert_uint_eq(xstats_of(pool, "q2." HANG_NAME ":80").resolve_timeouts, 1);
	for (i = 0; i < 4; i++)
		resolve_req_cancel(req[i]);
	t0 = mono_ms();
	pool_destroy(pool);
	took = mono_ms() - t0;
	ck_assert_msg(took < 200, "pool_destroy took %lld ms", took);
	close(dns);
}
END_TEST

/* ---- what the resolver's work holds up ----------------------------------- */

/* A resolver hook (resolve_test_hook) whose first call at one point
 * waits (5 s at most) until the test lets it go: it stands for a slow
 * pthread_create or a resolver lock held long, and tells the test when
 * that is under way. At RESOLVE_HOOK_SPAWN, hook_fail (an errno) fails
 * every thread start instead. */
static sem_t hook_entered, hook_release;
static atomic_uint hook_calls;
static enum resolve_hook_at hook_at;
static int hook_fail;

static bool sem_wait_ms(sem_t *sem, int ms)
{
	struct timespec ts;
	int rc;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	do
		rc = sem_timedwait(sem, &ts);
	while (rc != 0 && errno == EINTR);
	return rc == 0;
}

static int test_hook(enum resolve_hook_at at)
{
	if (at != hook_at)
		return 0;
	if (hook_fail)
		return hook_fail;
	if (atomic_fetch_add(&hook_calls, 1) == 0) {
		sem_post(&hook_entered);
		sem_wait_ms(&hook_release, 5000);
	}
	return 0;
}

/* Set before the threads that call it start; cleared once they ended. */
static void hook_arm(enum resolve_hook_at at, int fail)
{
	sem_init(&hook_entered, 0, 0);
	sem_init(&hook_release, 0, 0);
	atomic_store(&hook_calls, 0);
	hook_at = at;
	hook_fail = fail;
	atomic_store(&resolve_test_hook, test_hook);
}

static void hook_disarm(void)
{
	atomic_store(&resolve_test_hook, NULL);
	sem_destroy(&hook_entered);
	sem_destroy(&hook_release);
}

/* A pool_get in a thread of its own, which posts done when it returns. */
struct getter {
	pool_t *pool;
	const char *endpoint;
	pool_conn_t *c;
	int rc;
	sem_t done;
	pthread_t t;
};

static void *getter_run(void *arg)
{
	struct getter *g = arg;

	g->rc = pool_get(g->pool, g->endpoint, &g->c);
	sem_post(&g->done);
	return NULL;
}

static void getter_start(struct getter *g, pool_t *pool, const char *endpoint)
{
	g->pool = pool;
	g->endpoint = endpoint;
	g->c = NULL;
	sem_init(&g->done, 0, 0);
	ck_assert_int_eq(pthread_create(&g->t, NULL, getter_run, g), 0);
}

static void getter_join(struct getter *g)
{
	pthread_join(g->t, NULL);
	sem_destroy(&g->done);
}

static void *maintain_run(void *arg)
{
	int next;

	pool_maintain(arg, &next);
	return NULL;
}

/* The maintenance's refresh asks the resolver (its lock, a lookup's
 * allocation, a thread's start) with no shard lock held: meanwhile
 * pool_get hands out the endpoint's idle connection at once. Before the
 * fix, the refresh held the shard's spin lock across it all (and a
 * getpeername per connection), so pool_get spun until it was over. */
START_TEST(refresh_leaves_shard_unlocked)
{
	struct lineserver *s2, *s3;
	struct getter g;
	pool_conn_t *c;
	pthread_t m;
	char ep[300];
	pool_t *pool;
	long long t0, took;
	bool got;
	int i, next;

	if (!fake_hosts("127.0.0.2"))
		return;
	two_servers(&s2, &s3);
	name_endpoint(ep, sizeof(ep), NAME, s2);
	pool = pool_with("maintenance", "manual", "dns_refresh_ms", "100", NULL);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_REUSE);
	usleep(150000); /* the cached addresses expired: a refresh is due */
	hook_arm(RESOLVE_HOOK_REFRESH, 0);
	ck_assert_int_eq(pthread_create(&m, NULL, maintain_run, pool), 0);
	ck_assert_msg(sem_wait_ms(&hook_entered, 5000), "no refresh began");
	t0 = mono_ms();
	getter_start(&g, pool, ep);
	got = sem_wait_ms(&g.done, 2000);
	took = mono_ms() - t0;
	sem_post(&hook_release);
	pthread_join(m, NULL);
	getter_join(&g);
	hook_disarm();
	ck_assert_msg(got, "pool_get waited for the DNS refresh (still waiting "
		      "after %lld ms)", took);
	ck_assert_int_eq(g.rc, 0);
	ck_assert(pool_conn_reused(g.c));
	pool_put(pool, g.c, POOL_REUSE);
	/* The refresh went on as usual: its lookup ran and was counted. */
	for (i = 0; i < 300 && xstats_of(pool, ep).resolves < 2; i++) {
		ck_assert_int_eq(pool_maintain(pool, &next), 0);
		usleep(10000);
	}
	ck_assert_uint_eq(xstats_of(pool, ep).resolves, 2);
	ck_assert_uint_eq(xstats_of(pool, ep).dns_changes, 0);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 1);
	pool_destroy(pool);
	lineserver_stop(s2);
	lineserver_stop(s3);
}
END_TEST

/* Names of MANY endpoints that share one shard (white box: the sweep
 * pins a shard's endpoints due in one array, which grows past a few
 * dozen), as hosts lines for ip into text. */
#define MANY 40

static void many_names(pool_t *pool, uint16_t port, char names[MANY][64])
{
	struct pool_endpoint *ep;
	struct shard *want = NULL;
	char key[128];
	int i, n = 0;

	for (i = 0; n < MANY && i < 5000; i++) {
		snprintf(key, sizeof(key), "m%d." NAME ":%u", i, port);
		ck_assert_int_eq(pool_endpoint_lock(pool, key, &ep), 0);
		if (!want)
			want = ep->shard;
		if (ep->shard == want)
			snprintf(names[n++], 64, "m%d." NAME, i);
		pool_endpoint_unlock(ep);
	}
	ck_assert_int_eq(n, MANY);
}

static void many_hosts(char names[MANY][64], const char *ip)
{
	char text[MANY * 96];
	size_t len = 0;
	int i;

	len += (size_t)snprintf(text, sizeof(text), "127.0.0.1 localhost\n");
	for (i = 0; i < MANY; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len, "%s %s\n",
					ip, names[i]);
	fake_write(&hosts, text);
}

/* More endpoints due in one shard than the sweep pins at once without
 * an allocation: the names all move, and every one's connection goes. */
START_TEST(refresh_many_in_one_shard)
{
	static char names[MANY][64];
	struct lineserver *s2, *s3;
	pool_conn_t *c;
	char ep[128];
	pool_t *pool;
	int i;

	if (!fake_hosts("127.0.0.2"))
		return;
	two_servers(&s2, &s3);
	pool = pool_with("dns_refresh_ms", "200", NULL);
	many_names(pool, lineserver_port(s2), names);
	many_hosts(names, "127.0.0.2");
	for (i = 0; i < MANY; i++) {
		snprintf(ep, sizeof(ep), "%.63s:%u", names[i], lineserver_port(s2));
		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		pool_put(pool, c, POOL_REUSE);
	}
	/* The server counts a connection once its thread has accepted it. */
	wait_for(server_open(s2) == MANY, 3000);
	ck_assert_uint_eq(server_open(s2), MANY);
	many_hosts(names, "127.0.0.3");
	wait_for(server_open(s2) == 0, 5000);
	for (i = 0; i < MANY; i++) {
		snprintf(ep, sizeof(ep), "%.63s:%u", names[i], lineserver_port(s2));
		ck_assert_uint_eq(xstats_of(pool, ep).dns_changes, 1);
		ck_assert_uint_eq(stats_of(pool, ep).idle, 0);
	}
	pool_destroy(pool);
	lineserver_stop(s2);
	lineserver_stop(s3);
}
END_TEST

/* While the refresh asks the resolver with no lock held, its pin keeps
 * the endpoint: its last connection retired and its forget delay past,
 * other sweeps keep it until the refresh is over, and forget it after. */
START_TEST(refresh_pins_endpoint)
{
	struct lineserver *s2, *s3;
	pool_conn_t *c;
	pool_stats_t st;
	pthread_t m;
	char ep[300];
	pool_t *pool;
	long long t0;
	int next;

	if (!fake_hosts("127.0.0.2"))
		return;
	two_servers(&s2, &s3);
	name_endpoint(ep, sizeof(ep), NAME, s2);
	pool = pool_with("maintenance", "manual", "dns_refresh_ms", "100",
			 "idle_timeout_ms", "100", NULL);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	usleep(150000); /* a refresh is due */
	hook_arm(RESOLVE_HOOK_REFRESH, 0);
	ck_assert_int_eq(pthread_create(&m, NULL, maintain_run, pool), 0);
	ck_assert_msg(sem_wait_ms(&hook_entered, 5000), "no refresh began");
	pool_put(pool, c, POOL_RETIRE);
	/* Sweeps for twice the forget delay: the endpoint stays. */
	t0 = mono_ms();
	while (mono_ms() - t0 < 300) {
		ck_assert_int_eq(pool_maintain(pool, &next), 0);
		usleep(10000);
	}
	ck_assert_int_eq(pool_stats(pool, ep, &st), 0);
	sem_post(&hook_release);
	pthread_join(m, NULL);
	hook_disarm();
	t0 = mono_ms();
	while (pool_stats(pool, ep, &st) == 0 && mono_ms() - t0 < 3000) {
		ck_assert_int_eq(pool_maintain(pool, &next), 0);
		usleep(10000);
	}
	ck_assert_int_eq(pool_stats(pool, ep, &st), POOL_EINVAL);
	pool_destroy(pool);
	lineserver_stop(s2);
	lineserver_stop(s3);
}
END_TEST

/* A lookup thread starts with the resolver's lock not held: while one
 * is being started, pool_get_start for another name returns at once.
 * Before the fix, pthread_create ran under that lock, and every other
 * lookup's start or end waited for it. */
START_TEST(thread_start_leaves_resolver_unlocked)
{
	struct lineserver *s2, *s3;
	pool_pending_t *pend = NULL;
	pool_conn_t *c = NULL;
	struct getter g;
	char ep[300];
	pool_t *pool;
	long long t0, took;
	int rc;

	if (!fake_hosts("127.0.0.2"))
		return;
	two_servers(&s2, &s3);
	name_endpoint(ep, sizeof(ep), NAME, s2);
	pool = pool_with("resolve_timeout_ms", "5000", NULL);
	hook_arm(RESOLVE_HOOK_SPAWN, 0);
	getter_start(&g, pool, ep);
	ck_assert_msg(sem_wait_ms(&hook_entered, 5000), "no lookup thread started");
	t0 = mono_ms();
	rc = pool_get_start(pool, NAME ":7", &c, &pend);
	took = mono_ms() - t0;
	sem_post(&hook_release);
	getter_join(&g);
	hook_disarm();
	ck_assert_msg(took < 1000, "pool_get_start waited %lld ms for another "
		      "lookup's thread to start", took);
	ck_assert_int_eq(rc, POOL_EINPROGRESS);
	pool_get_cancel(pool, pend);
	ck_assert_int_eq(g.rc, 0);
	ck_assert_str_eq(peer_of(g.c), "127.0.0.2");
	pool_put(pool, g.c, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(s2);
	lineserver_stop(s3);
}
END_TEST

/* A lookup thread that cannot start, and none running: the caller gets
 * POOL_ESYS (errno EAGAIN) at once, and nothing is left counted (no
 * thread, no slot, no cached name), so the next call works. */
START_TEST(thread_start_failure_undone)
{
	struct lineserver *s2, *s3;
	pool_conn_t *c = NULL;
	pool_stats_t st;
	char ep[300];
	pool_t *pool;
	unsigned before = resolve_threads();
	int rc;

	if (!fake_hosts("127.0.0.2"))
		return;
	two_servers(&s2, &s3);
	name_endpoint(ep, sizeof(ep), NAME, s2);
	pool = pool_with("resolve_timeout_ms", "5000", NULL);
	hook_arm(RESOLVE_HOOK_SPAWN, EAGAIN);
	errno = 0;
	rc = pool_get(pool, ep, &c);
	hook_disarm();
	ck_assert_int_eq(rc, POOL_ESYS);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_uint_eq(resolve_threads(), before);
	ck_assert_uint_eq(resolve_cache_entries(pool), 0);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.in_use + st.idle, 0);
	ck_assert_uint_eq(xstats_of(pool, ep).resolves, 0);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_str_eq(peer_of(c), "127.0.0.2");
	ck_assert_uint_eq(resolve_threads(), before + 1);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(s2);
	lineserver_stop(s3);
}
END_TEST

/* A lookup thread that cannot start while another runs: the lookup stays
 * queued, and the running thread takes it once its own (stuck) lookup
 * ends, before the caller's deadline. */
START_TEST(thread_start_failure_queued)
{
	int dns = dead_dns();
	struct resolve_req *hang = NULL, *req = NULL;
	struct addr_set *set = NULL;
	struct pollfd p;
	long long t0, took;
	pool_t *pool;

	if (dns < 0)
		return;
	fake_write(&hosts, "127.0.0.1 localhost\n127.0.0.2 " NAME "\n");
	pool = pool_with("resolve_timeout_ms", "5000", NULL);
	ck_assert_int_eq(resolve_begin(pool, endpoint_of(pool, HANG_NAME ":80"),
				       &set, &hang), POOL_EINPROGRESS);
	ck_assert_uint_eq(resolve_threads(), 1);
	hook_arm(RESOLVE_HOOK_SPAWN, EAGAIN);
	t0 = mono_ms();
	ck_assert_int_eq(resolve_begin(pool, endpoint_of(pool, NAME ":7"), &set, &req),
			 POOL_EINPROGRESS);
	hook_disarm();
	ck_assert_uint_eq(resolve_threads(), 1);
	p = (struct pollfd){ .fd = resolve_req_fd(req), .events = POLLIN };
	ck_assert_int_eq(poll(&p, 1, 6000), 1);
	took = mono_ms() - t0;
	ck_assert_int_eq(resolve_req_end(req, &set), 0);
	ck_assert_msg(took < 4500, "answered after %lld ms", took);
	ck_assert_uint_eq(set->n, 1);
	ck_assert_uint_eq(ntohl(set->addr[0].in.sin_addr.s_addr), 0x7f000002u);
	addr_set_unref(set);
	resolve_req_cancel(hang);
	pool_destroy(pool);
	close(dns);
}
END_TEST

/* ---- fork ---------------------------------------------------------------- */

/* A child of fork() resolves with threads of its own. */
START_TEST(fork_child_resolves)
{
	struct lineserver *s2, *s3;
	pool_conn_t *c;
	char ep[300];
	pool_t *pool;
	pid_t pid;
	int status, ok = 0, pfd[2];

	if (!fake_hosts("127.0.0.2"))
		return;
	two_servers(&s2, &s3);
	name_endpoint(ep, sizeof(ep), NAME, s2);
	pool = pool_with(NULL);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_REUSE);
	/* The outcome through a pipe: under valgrind the child's exit code
	 * is valgrind's, for the parent's idle lookup thread's glibc
	 * resolver memory, unreachable in the child. */
	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pool_conn_t *a, *b;
		int ra = pool_get(pool, ep, &a), rb = ra ? ra : pool_get(pool, ep, &b);

		ok = rb == 0 && line_roundtrip(pool_conn_fd(b), "PING", "PONG");
		if (!ok)
			fprintf(stderr, "child: pool_get %d %d: %s\n", ra, rb, strerror(errno));
		_exit(write(pfd[1], &ok, sizeof(ok)) == sizeof(ok) ? 0 : 2);
	}
	close(pfd[1]);
	ck_assert_int_eq(read(pfd[0], &ok, sizeof(ok)), (ssize_t)sizeof(ok));
	close(pfd[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(ok, "the child could not resolve and connect");
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert(pool_conn_reused(c));
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(s2);
	lineserver_stop(s3);
}
END_TEST

/* Resolve ep through pool as pool_get would: 0 or the error. */
static int resolve_wait(pool_t *pool, struct pool_endpoint *ep)
{
	struct resolve_req *req = NULL;
	struct addr_set *set = NULL;
	struct pollfd p;
	int rc = resolve_begin(pool, ep, &set, &req);

	if (rc == POOL_EINPROGRESS) {
		p = (struct pollfd){ .fd = resolve_req_fd(req), .events = POLLIN };
		if (poll(&p, 1, 10000) != 1) {
			resolve_req_cancel(req);
			return POOL_ETIMEDOUT;
		}
		rc = resolve_req_end(req, &set);
	}
	addr_set_unref(set);
	return rc;
}

/* A fork() right after a lookup: the child must resolve. A lookup
 * thread that ended after each lookup ran glibc's resolver clean-up,
 * under glibc's resolv.conf lock, just as pool_get returned; a fork at
 * that instant left the lock held forever in the child, whose every
 * getaddrinfo then hung (about 1 in 1000 forks here before the fix).
 * Now the thread stays, idle, until the pool goes. */
START_TEST(fork_right_after_lookup)
{
	struct pool_endpoint *ep;
	pool_t *pool;
	pid_t pid;
	int i, status, failed = 0;
	unsigned before = resolve_threads();

	if (!fake_hosts("127.0.0.2"))
		return;
	/* The thread outlives its lookup (it ended at once before), and
	 * ends with its pool. */
	pool = pool_with(NULL);
	ep = endpoint_of(pool, NAME ":7");
	ck_assert_int_eq(resolve_wait(pool, ep), 0);
	usleep(200000);
	ck_assert_uint_eq(resolve_threads(), before + 1);
	pool_destroy(pool);
	wait_for(resolve_threads() == before, 2000);
	/* Lookup, fork at once, and the child looks up with its own
	 * resolver (no connection: only the lookup matters here). */
	for (i = 0; i < 300 && !failed; i++) {
		pool = pool_with("resolve_timeout_ms", "2000", NULL);
		ep = endpoint_of(pool, NAME ":7");
		ck_assert_int_eq(resolve_wait(pool, ep), 0);
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			pool_stats_t st;

			pool_stats(pool, NULL, &st); /* the child's first call */
			_exit(resolve_wait(pool, ep) == 0 ? 0 : 1);
		}
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		/* Under valgrind, a child's exit code may be valgrind's. */
		failed = WIFEXITED(status) && WEXITSTATUS(status) == 1 ? i + 1 : 0;
		pool_destroy(pool);
	}
	ck_assert_msg(!failed, "fork %d: the child could not resolve", failed);
}
END_TEST

/* Descriptors of this process that are timerfds (a resolver request's). */
static unsigned timerfds_open(void)
{
	char path[64], target[64];
	unsigned n = 0;
	ssize_t len;
	int fd;

	for (fd = 0; fd < 1024; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		len = readlink(path, target, sizeof(target) - 1);
		if (len < 0)
			continue;
		target[len] = '\0';
		n += strstr(target, "timerfd") != NULL;
	}
	return n;
}

/* A manual-mode min_idle refill resolving a name at the fork: the child
 * has no thread for the lookup, and its copy of the request's timerfd
 * must go with the rest of the refill (before the fix, it stayed open
 * after the child's pool_destroy). */
START_TEST(fork_child_refill_resolving)
{
	int dns = dead_dns();
	struct lineserver *s2, *s3;
	struct pool_endpoint *e;
	pool_conn_t *c = NULL;
	char ep[300];
	unsigned before, child_left = 0;
	pool_t *pool;
	pid_t pid;
	int status, next, tries, pfd[2];

	if (dns < 0)
		return;
	two_servers(&s2, &s3);
	name_endpoint(ep, sizeof(ep), NAME, s2);
	fake_write(&hosts, "127.0.0.1 localhost\n127.0.0.2 " NAME "\n");
	before = timerfds_open();
	pool = pool_with("maintenance", "manual", "min_idle", "2",
			 "resolve_timeout_ms", "5000", NULL);
	/* A first connection makes the endpoint due for a warm one; the
	 * name then hangs (it is left to the dead DNS server). */
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	fake_write(&hosts, "127.0.0.1 localhost\n");
	for (tries = 0; tries < 100; tries++) {
		ck_assert_int_eq(pool_maintain(pool, &next), 0);
		ck_assert_int_eq(pool_endpoint_lock(pool, ep, &e), 0);
		next = (int)e->ndialing;
		pool_endpoint_unlock(e);
		if (next)
			break;
		usleep(10000);
	}
	ck_assert_msg(next == 1, "no refill under way");
	ck_assert_uint_eq(timerfds_open(), before + 1);
	/* The child's count comes back through a pipe, not its exit
	 * status: under valgrind, the parent's lookup thread stuck at the
	 * fork leaves glibc's resolver memory unreachable in the child,
	 * and valgrind's exit code would stand for the leak. */
	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pool_stats_t st;
		unsigned left;

		close(pfd[0]);
		pool_stats(pool, NULL, &st); /* the child's first call */
		pool_put(pool, c, POOL_REUSE);
		pool_destroy(pool);
		left = timerfds_open();
		if (write(pfd[1], &left, sizeof(left)) != sizeof(left))
			_exit(2);
		_exit(0);
	}
	close(pfd[1]);
	ck_assert_int_eq(read(pfd[0], &child_left, sizeof(child_left)),
			 (ssize_t)sizeof(child_left));
	close(pfd[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(child_left == before, "child: %u timerfd(s) left open, %u before",
		      child_left, before);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	ck_assert_uint_eq(timerfds_open(), before);
	lineserver_stop(s2);
	lineserver_stop(s3);
	close(dns);
}
END_TEST

Suite *dns_suite(void)
{
	Suite *s = suite_create("dns");
	TCase *tc = tcase_create("dns");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, dns_setup, dns_teardown);
	tcase_add_test(tc, refresh_abort);
	tcase_add_test(tc, refresh_close);
	tcase_add_test(tc, refresh_peer_first);
	tcase_add_test(tc, refresh_same_keeps);
	tcase_add_test(tc, refresh_failure_keeps);
	tcase_add_test(tc, cache_one_lookup);
	tcase_add_test(tc, cache_forgotten_with_endpoint);
	tcase_add_test(tc, literal_inline);
	tcase_add_test(tc, fd_readable_at_result);
	tcase_add_test(tc, timeout_never_blocks);
	tcase_add_test(tc, timeout_pool_get);
	tcase_add_test(tc, shared_and_bounded);
	tcase_add_test(tc, stuck_threads_queue_times_out);
	tcase_add_test(tc, refresh_leaves_shard_unlocked);
	tcase_add_test(tc, refresh_pins_endpoint);
	tcase_add_test(tc, refresh_many_in_one_shard);
	tcase_add_test(tc, thread_start_leaves_resolver_unlocked);
	tcase_add_test(tc, thread_start_failure_undone);
	tcase_add_test(tc, thread_start_failure_queued);
	tcase_add_test(tc, fork_child_resolves);
	tcase_add_test(tc, fork_right_after_lookup);
	tcase_add_test(tc, fork_child_refill_resolving);
	suite_add_tcase(s, tc);
	return s;
}
