/*
 * Waiting for a slot and the slots drains hold: waiters are served in
 * order (a stream of new callers cannot starve one), a peer-first drain
 * counts toward max_total until it ends, and a fallback close sends a FIN.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixtures.h"
#include "suites.h"

/* A stream of new callers on one endpoint: get, use for a millisecond,
 * then give the connection up for good, so each slot frees by a close,
 * never by a hand-over, and the next get follows at once. */
struct stream {
	pool_t *pool;
	const char *ep;
	atomic_bool stop;
	atomic_uint gets;
};

static void *stream_thread(void *arg)
{
	struct stream *s = arg;

	while (!atomic_load(&s->stop)) {
		pool_conn_t *c;

		if (pool_get(s->pool, s->ep, &c) != 0)
			continue;
		atomic_fetch_add(&s->gets, 1);
		usleep(1000);
		pool_put(s->pool, c, POOL_RETIRE);
	}
	return NULL;
}

/* One pool_get in a thread of its own, timed. */
struct getter {
	pool_t *pool;
	const char *ep;
	bool idle_prio;            /* run only when nothing else would */
	int rc;
	long long ms;
};

static void *get_thread(void *arg)
{
	struct getter *g = arg;
	struct sched_param sp = { .sched_priority = 0 };
	long long t0;
	pool_conn_t *c;

	if (g->idle_prio)
		pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
	t0 = mono_ms();
	g->rc = pool_get(g->pool, g->ep, &c);
	g->ms = mono_ms() - t0;
	if (g->rc == 0) {
		if (!line_roundtrip(pool_conn_fd(c), "PING", "PONG"))
			g->rc = -1000;
		pool_put(g->pool, c, POOL_RETIRE);
	}
	return NULL;
}

/* While a stream of get + retire runs on stream_ep, one caller for
 * wait_ep must get its connection within a few turns of the stream,
 * not lose every freed slot to the stream's next get until its acquire
 * timeout. The caller's thread is SCHED_IDLE: woken, it does not preempt
 * the stream but runs only while the stream sleeps, holding its
 * connection (what a busy machine does to a woken thread anyway); only a
 * slot handed to it, and kept from the stream, reaches it. */
static void expect_no_starvation(pool_t *pool, const char *stream_ep,
				 const char *wait_ep)
{
	struct stream s = { .pool = pool, .ep = stream_ep };
	struct getter g = { .pool = pool, .ep = wait_ep, .idle_prio = true };
	pthread_t ts, tg;

	pthread_create(&ts, NULL, stream_thread, &s);
	wait_for(atomic_load(&s.gets) >= 50, 5000); /* the stream is flowing */
	pthread_create(&tg, NULL, get_thread, &g);
	pthread_join(tg, NULL);
	atomic_store(&s.stop, true);
	pthread_join(ts, NULL);
	ck_assert_msg(g.rc == 0, "pool_get: %s after %lld ms",
		      g.rc == -1000 ? "no PONG" : pool_strerror(g.rc), g.ms);
	ck_assert_msg(g.ms < 1000, "waited %lld ms for a slot", g.ms);
}

/* max_active = 1: the stream and the caller want the same endpoint. */
START_TEST(waiter_not_starved_by_newcomers)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("max_active", "1", "acquire_timeout_ms", "2000",
				 "teardown", "abort", NULL);

	expect_no_starvation(pool, lineserver_endpoint(ls), lineserver_endpoint(ls));
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* max_total = 1: the stream on one endpoint, the caller on another. */
START_TEST(total_waiter_not_starved_by_newcomers)
{
	struct lineserver *a = server_start(LS_QUIT_CLOSE);
	struct lineserver *b = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("max_total", "1", "acquire_timeout_ms", "2000",
				 "teardown", "abort", NULL);

	expect_no_starvation(pool, lineserver_endpoint(a), lineserver_endpoint(b));
	pool_destroy(pool);
	lineserver_stop(a);
	lineserver_stop(b);
}
END_TEST

/* A peer-first drain keeps its socket open until the server's EOF or the
 * fallback: it counts toward max_total until then. Here the server
 * ignores the close request, so two drains hold both slots for
 * close_timeout_ms; a caller (to another endpoint) meanwhile waits, and
 * gets its connection when they end. */
START_TEST(drains_count_toward_max_total)
{
	struct lineserver *deaf = server_start(LS_QUIT_IGNORE);
	struct lineserver *other = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(deaf);
	pool_t *pool = pool_with("max_total", "2", "acquire_timeout_ms", "150",
				 "teardown", "peer-first",
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "800", NULL);
	struct lineserver_stats ss;
	pool_conn_t *c[2], *d;
	long long t0;
	int i;

	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pool_get(pool, ep, &c[i]), 0);
	t0 = mono_ms();
	for (i = 0; i < 2; i++)
		pool_put(pool, c[i], POOL_RETIRE);
	ck_assert_uint_eq(stats_of(pool, NULL).draining, 2);
	/* Two sockets still open: no room for a third. */
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(other), &d), POOL_EBUSY);
	lineserver_get_stats(other, &ss);
	ck_assert_uint_eq(ss.accepted, 0);
	ck_assert_int_lt(mono_ms() - t0, 700); /* that was during the drains */
	/* Once they fall back, the slots are free again. */
	wait_drains(pool, 5000);
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(other), &d), 0);
	ping(d);
	pool_put(pool, d, POOL_RETIRE);
	pool_destroy(pool);
	lineserver_stop(deaf);
	lineserver_stop(other);
}
END_TEST

/* A caller waiting under max_total is woken when a drain ends: the slot
 * it frees is its, long before its acquire timeout. */
START_TEST(drain_end_wakes_total_waiter)
{
	struct lineserver *deaf = server_start(LS_QUIT_IGNORE);
	struct lineserver *other = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("max_total", "1", "acquire_timeout_ms", "4000",
				 "teardown", "peer-first",
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "300", NULL);
	struct getter g = { .pool = pool, .ep = lineserver_endpoint(other) };
	pthread_t t;
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(deaf), &c), 0);
	pool_put(pool, c, POOL_RETIRE);
	pthread_create(&t, NULL, get_thread, &g);
	pthread_join(t, NULL);
	ck_assert_msg(g.rc == 0, "pool_get: %s after %lld ms", pool_strerror(g.rc), g.ms);
	ck_assert_int_lt(g.ms, 2500);
	ck_assert_uint_eq(stats_of(pool, lineserver_endpoint(other)).waits, 1);
	pool_destroy(pool);
	lineserver_stop(deaf);
	lineserver_stop(other);
}
END_TEST

/* Many threads on three endpoints under both caps, with hand-overs,
 * retirements into drains, broken puts and evictions: no caller times out,
 * and every slot comes back, so the caps still allow what they say. */
struct mixer {
	pool_t *pool;
	const char *eps[3];
	int id, failures;
};

static void *mixer_thread(void *arg)
{
	struct mixer *m = arg;
	int i;

	for (i = 0; i < 150; i++) {
		pool_conn_t *c;
		int k = (i + m->id) % 3;

		if (pool_get(m->pool, m->eps[k], &c) != 0) {
			m->failures++;
			continue;
		}
		if (!line_roundtrip(pool_conn_fd(c), "PING", "PONG"))
			m->failures++;
		pool_put(m->pool, c, i % 5 == 0 ? POOL_RETIRE :
				     i % 11 == 0 ? POOL_BROKEN : POOL_REUSE);
	}
	return NULL;
}

START_TEST(threads_under_both_caps)
{
	struct lineserver *ls[3];
	pool_t *pool = pool_with("max_total", "3", "max_active", "2", "max_idle", "1",
				 "acquire_timeout_ms", "10000",
				 "teardown", "peer-first",
				 "close_request", "\"quit\\n\"", NULL);
	struct mixer m[6];
	pthread_t t[6];
	pool_conn_t *c[3];
	pool_stats_t st;
	int i;

	for (i = 0; i < 3; i++)
		ls[i] = server_start(LS_QUIT_CLOSE);
	for (i = 0; i < 6; i++) {
		m[i] = (struct mixer){ .pool = pool, .id = i };
		m[i].eps[0] = lineserver_endpoint(ls[0]);
		m[i].eps[1] = lineserver_endpoint(ls[1]);
		m[i].eps[2] = lineserver_endpoint(ls[2]);
		pthread_create(&t[i], NULL, mixer_thread, &m[i]);
	}
	for (i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(m[i].failures, 0);
	}
	wait_drains(pool, 5000);
	st = stats_of(pool, NULL);
	ck_assert_uint_eq(st.in_use, 0);
	ck_assert_uint_eq(st.connects, st.closed + st.idle);
	ck_assert_uint_gt(st.waits, 0); /* the caps did bite */
	ck_assert_uint_eq(st.wait_timeouts, 0);
	/* All three slots are free (or idle, to evict): one each, at once. */
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(pool_get(pool, lineserver_endpoint(ls[i]), &c[i]), 0);
	for (i = 0; i < 3; i++) {
		ping(c[i]);
		pool_put(pool, c[i], POOL_RETIRE);
	}
	pool_destroy(pool);
	for (i = 0; i < 3; i++)
		lineserver_stop(ls[i]);
}
END_TEST

/* A server that answers "quit" with "+OK" and never closes, and records
 * how each client connection ended: FIN (EOF) or RST (ECONNRESET). */
#define RS_MAX 128

struct replier {
	int lfd;
	uint16_t port;
	pthread_t thread;
	atomic_bool stop;
	atomic_uint accepted, eofs, resets;
};

static void replier_read(struct replier *r, struct pollfd *p)
{
	char buf[512];
	ssize_t n = recv(p->fd, buf, sizeof(buf), 0);

	if (n > 0) {
		if (memmem(buf, (size_t)n, "quit", 4))
			send(p->fd, "+OK\n", 4, MSG_NOSIGNAL);
		return;
	}
	if (n < 0 && errno == EINTR)
		return;
	if (n == 0)
		atomic_fetch_add(&r->eofs, 1);
	else
		atomic_fetch_add(&r->resets, 1);
	close(p->fd);
	p->fd = -1;
}

static void *replier_main(void *arg)
{
	struct replier *r = arg;
	struct pollfd p[RS_MAX + 1];
	int i, n = 1;

	p[0] = (struct pollfd){ .fd = r->lfd, .events = POLLIN };
	while (!atomic_load(&r->stop)) {
		if (poll(p, (nfds_t)n, 20) <= 0)
			continue;
		for (i = 1; i < n; i++)
			if (p[i].fd >= 0 && p[i].revents)
				replier_read(r, &p[i]);
		if ((p[0].revents & POLLIN) && n <= RS_MAX) {
			int fd = accept(r->lfd, NULL, NULL);

			if (fd >= 0) {
				p[n++] = (struct pollfd){ .fd = fd, .events = POLLIN };
				atomic_fetch_add(&r->accepted, 1);
			}
		}
	}
	for (i = 1; i < n; i++)
		if (p[i].fd >= 0)
			close(p[i].fd);
	return NULL;
}

static void replier_start(struct replier *r)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);

	memset(r, 0, sizeof(*r));
	r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(r->lfd, 0);
	ck_assert_int_eq(bind(r->lfd, (struct sockaddr *)&sa, len), 0);
	ck_assert_int_eq(listen(r->lfd, RS_MAX), 0);
	ck_assert_int_eq(getsockname(r->lfd, (struct sockaddr *)&sa, &len), 0);
	r->port = ntohs(sa.sin_port);
	pthread_create(&r->thread, NULL, replier_main, r);
}

static void replier_stop(struct replier *r)
{
	atomic_store(&r->stop, true);
	pthread_join(r->thread, NULL);
	close(r->lfd);
}

/* fallback = close must close with a FIN: close() with unread bytes sends
 * an RST instead. Here the server answers the close request but never
 * closes, and more drains than the reaper handles in one round are
 * overdue when it runs: every one must still end with a FIN. */
START_TEST(fallback_close_sends_fin)
{
	enum { N = 100 };
	pool_t *pool = pool_with("maintenance", "manual", "teardown", "peer-first",
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "50", "fallback", "close", NULL);
	struct replier r;
	pool_conn_t *c[N];
	char ep[32];
	unsigned resets;
	int i;

	replier_start(&r);
	snprintf(ep, sizeof(ep), "127.0.0.1:%u", r.port);
	for (i = 0; i < N; i++)
		ck_assert_int_eq(pool_get(pool, ep, &c[i]), 0);
	wait_for(atomic_load(&r.accepted) == N, 5000);
	for (i = 0; i < N; i++)
		pool_put(pool, c[i], POOL_RETIRE);
	/* Every "+OK" arrives and every deadline passes before the reaper
	 * first runs. */
	usleep(300 * 1000);
	ck_assert_int_eq(pool_maintain(pool, NULL), 0);
	ck_assert_uint_eq(stats_of(pool, NULL).draining, 0);
	ck_assert_uint_eq(stats_of(pool, NULL).peer_first_fallback, N);
	wait_for(atomic_load(&r.eofs) + atomic_load(&r.resets) == N, 5000);
	resets = atomic_load(&r.resets);
	ck_assert_msg(resets == 0, "%u of %d connections reset, not closed", resets, N);
	pool_destroy(pool);
	replier_stop(&r);
}
END_TEST

Suite *waits_suite(void)
{
	Suite *s = suite_create("waits");
	TCase *tc = tcase_create("waits");

	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(tc, waiter_not_starved_by_newcomers);
	tcase_add_test(tc, total_waiter_not_starved_by_newcomers);
	tcase_add_test(tc, drains_count_toward_max_total);
	tcase_add_test(tc, drain_end_wakes_total_waiter);
	tcase_add_test(tc, threads_under_both_caps);
	tcase_add_test(tc, fallback_close_sends_fin);
	suite_add_tcase(s, tc);
	return s;
}
