/*
 * Observability (issue 12): every retirement reason counted with the
 * policy that closed the connection, driven for real against servers;
 * the histograms' figures (a peer-first drain against a server that
 * answers the close request after 50 ms); the event callback's sequence;
 * pool_stats_ex's size contract; and the Prometheus text: escaping,
 * cumulative buckets, the snprintf length contract.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixtures.h"
#include "obs.h"
#include "pool-internal.h"
#include "suites.h"

/* ---- helpers ---- */

static pool_stats_ex_t ex_of(pool_t *pool, const char *endpoint)
{
	pool_stats_ex_t ex;
	int rc = pool_stats_ex(pool, endpoint, &ex, sizeof(ex));

	ck_assert_msg(rc == 0, "pool_stats_ex(%s): %s", endpoint ? endpoint : "NULL",
		      pool_strerror(rc));
	return ex;
}

static uint64_t retired(pool_t *pool, const char *ep, int reason, int policy)
{
	return ex_of(pool, ep).retired[reason][policy];
}

/* Every retirement count of ep, all reasons and policies. */
static uint64_t retired_all(pool_t *pool, const char *ep)
{
	pool_stats_ex_t ex = ex_of(pool, ep);
	uint64_t n = 0;
	int r, p;

	for (r = 0; r < POOL_REASON_COUNT; r++)
		for (p = 0; p < POOL_POLICY_COUNT; p++)
			n += ex.retired[r][p];
	return n;
}

static pool_conn_t *get_ok(pool_t *pool, const char *ep)
{
	pool_conn_t *c = NULL;
	int rc = pool_get(pool, ep, &c);

	ck_assert_msg(rc == 0, "pool_get(%s): %s", ep, pool_strerror(rc));
	return c;
}

/* The whole Prometheus text (caller frees). */
static char *prom_text(pool_t *pool)
{
	int n = pool_stats_format(pool, NULL, 0, POOL_FORMAT_PROMETHEUS);
	char *buf;

	ck_assert_int_gt(n, 0);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(pool_stats_format(pool, buf, (size_t)n + 1,
					   POOL_FORMAT_PROMETHEUS), n);
	ck_assert_uint_eq(strlen(buf), (size_t)n);
	return buf;
}

/* The value of the series line that starts with prefix ("name{labels}"). */
static double prom_value(const char *text, const char *series)
{
	size_t len = strlen(series);
	const char *p = text;

	while ((p = strstr(p, series))) {
		if ((p == text || p[-1] == '\n') && p[len] == ' ')
			return strtod(p + len + 1, NULL);
		p += len;
	}
	ck_abort_msg("no series %s", series);
	return -1;
}

/* ---- events ---- */

#define MAX_EVENTS 256
static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static pool_event_t events[MAX_EVENTS];
static char event_eps[MAX_EVENTS][128];
static int nevents;

static void record_event(const pool_event_t *ev, void *ud)
{
	(void)ud;
	pthread_mutex_lock(&ev_lock);
	if (nevents < MAX_EVENTS) {
		events[nevents] = *ev;
		snprintf(event_eps[nevents], sizeof(event_eps[0]), "%s", ev->endpoint);
		events[nevents].endpoint = event_eps[nevents];
		nevents++;
	}
	pthread_mutex_unlock(&ev_lock);
}

static void events_reset(void)
{
	pthread_mutex_lock(&ev_lock);
	nevents = 0;
	pthread_mutex_unlock(&ev_lock);
}

static int events_n(void)
{
	int n;

	pthread_mutex_lock(&ev_lock);
	n = nevents;
	pthread_mutex_unlock(&ev_lock);
	return n;
}

/* How many recorded events have this type and reason (-2: any reason). */
static int events_count(int type, int reason)
{
	int i, n = 0;

	pthread_mutex_lock(&ev_lock);
	for (i = 0; i < nevents; i++)
		if (events[i].type == type && (reason == -2 || events[i].reason == reason))
			n++;
	pthread_mutex_unlock(&ev_lock);
	return n;
}

/* ---- a server that closes 'delay_ms' after the close request ---- */

struct slowq {
	int lfd;
	unsigned delay_ms;
	uint16_t port;
	char endpoint[64];
	atomic_bool stop;
	pthread_t thread;
};

static void slowq_serve(struct slowq *s, int fd)
{
	char buf[512];
	size_t used = 0;
	ssize_t n;

	while (!atomic_load(&s->stop) &&
	       (n = read(fd, buf + used, sizeof(buf) - 1 - used)) > 0) {
		used += (size_t)n;
		buf[used] = '\0';
		if (strstr(buf, "quit\n")) {
			usleep(s->delay_ms * 1000u);
			break;
		}
		if (strstr(buf, "PING\n")) {
			if (write(fd, "PONG\n", 5) != 5)
				break;
			used = 0;
		}
		if (used >= sizeof(buf) - 1)
			used = 0;
	}
	close(fd);
}

static void *slowq_main(void *arg)
{
	struct slowq *s = arg;
	int fd;

	while (!atomic_load(&s->stop)) {
		fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break;
		}
		slowq_serve(s, fd);
	}
	return NULL;
}

static struct slowq *slowq_start(unsigned delay_ms)
{
	struct slowq *s = calloc(1, sizeof(*s));
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	ck_assert_ptr_nonnull(s);
	s->delay_ms = delay_ms;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(s->lfd, 0);
	ck_assert_int_eq(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(s->lfd, 16), 0);
	ck_assert_int_eq(getsockname(s->lfd, (struct sockaddr *)&sa, &len), 0);
	s->port = ntohs(sa.sin_port);
	snprintf(s->endpoint, sizeof(s->endpoint), "127.0.0.1:%u", s->port);
	ck_assert_int_eq(pthread_create(&s->thread, NULL, slowq_main, s), 0);
	return s;
}

static void slowq_stop(struct slowq *s)
{
	atomic_store(&s->stop, true);
	shutdown(s->lfd, SHUT_RDWR); /* wakes accept() */
	pthread_join(s->thread, NULL);
	close(s->lfd);
	free(s);
}

/* ---- each reason, with its policy ---- */

START_TEST(reason_user_and_broken)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", NULL);
	pool_conn_t *c;

	c = get_ok(pool, ep);
	ping(c);
	pool_put(pool, c, POOL_RETIRE);
	c = get_ok(pool, ep);
	pool_put(pool, c, POOL_BROKEN);
	ck_assert_uint_eq(retired(pool, ep, POOL_REASON_USER, POOL_POLICY_ABORT), 1);
	ck_assert_uint_eq(retired(pool, ep, POOL_REASON_BROKEN, POOL_POLICY_ABORT), 1);
	ck_assert_uint_eq(retired_all(pool, ep), 2);
	/* Pool-wide agrees, and the old counter too. */
	ck_assert_uint_eq(retired(pool, NULL, POOL_REASON_USER, POOL_POLICY_ABORT), 1);
	ck_assert_uint_eq(ex_of(pool, ep).base.retired_abort, 2);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(reason_max_uses)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_uses", "2", NULL);
	pool_conn_t *c;

	c = get_ok(pool, ep);
	pool_put(pool, c, POOL_REUSE);
	c = get_ok(pool, ep);
	ck_assert_int_eq(pool_conn_last_use(c), 1);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(retired(pool, ep, POOL_REASON_MAX_USES, POOL_POLICY_CLOSE), 1);
	ck_assert_uint_eq(retired_all(pool, ep), 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(reason_idle_timeout)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("idle_timeout_ms", "100", NULL);

	pool_put(pool, get_ok(pool, ep), POOL_REUSE);
	wait_for(retired(pool, ep, POOL_REASON_IDLE_TIMEOUT, POOL_POLICY_CLOSE) == 1,
		 3000);
	ck_assert_uint_eq(retired_all(pool, ep), 1);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(reason_lifetime)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_lifetime_ms", "100", "lifetime_jitter_pct", "0",
				 NULL);
	pool_stats_ex_t ex;

	pool_put(pool, get_ok(pool, ep), POOL_REUSE);
	wait_for(retired(pool, ep, POOL_REASON_LIFETIME, POOL_POLICY_CLOSE) == 1, 3000);
	ck_assert_uint_eq(retired_all(pool, ep), 1);
	/* Its age at retirement: at least the lifetime, well under 3 s
	 * (bucket 2^17 us = 131 ms holds 100 ms; 2^22 us = 4.2 s). */
	ex = ex_of(pool, ep);
	ck_assert_uint_eq(ex.hist[POOL_HIST_LIFETIME].count, 1);
	ck_assert_uint_ge(ex.hist[POOL_HIST_LIFETIME].sum_ns, 95000000u);
	ck_assert_uint_lt(ex.hist[POOL_HIST_LIFETIME].sum_ns, 3000000000u);
	ck_assert_uint_eq(ex.hist[POOL_HIST_LIFETIME].bucket[0], 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(reason_surplus)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_idle", "1", "idle_shrink_ms", "50",
				 "teardown", "abort", NULL);
	pool_conn_t *c[3];
	int i;

	for (i = 0; i < 3; i++)
		c[i] = get_ok(pool, ep);
	for (i = 0; i < 3; i++)
		pool_put(pool, c[i], POOL_REUSE);
	wait_for(retired(pool, ep, POOL_REASON_SURPLUS, POOL_POLICY_ABORT) == 2, 3000);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 1);
	ck_assert_uint_eq(retired_all(pool, ep), 2);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(reason_peer_closed_idle)
{
	struct lineserver_opts o = { .idle_close_ms = 100 };
	struct lineserver *ls = lineserver_start(&o);
	const char *ep;
	pool_t *pool = pool_with("watch_idle", "on", "teardown", "abort", NULL);

	ck_assert_ptr_nonnull(ls);
	ep = lineserver_endpoint(ls);
	pool_put(pool, get_ok(pool, ep), POOL_REUSE);
	/* Dropped by a plain close, whatever the policy: the peer closed. */
	wait_for(retired(pool, ep, POOL_REASON_PEER_CLOSED, POOL_POLICY_CLOSE) == 1,
		 3000);
	ck_assert_uint_eq(retired_all(pool, ep), 1);
	ck_assert_uint_eq(stats_of(pool, ep).peer_closed_idle, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* The event for an idle connection the server closed fires with no lock
 * of the pool held, as pool_set_event_fn(3) says: the maintenance's
 * runner lock included (white-box: trylock from the firing thread). */
static atomic_int peer_closed_locked = -1;

static void peer_closed_event(const pool_event_t *ev, void *ud)
{
	pool_t *pool = ud;
	int busy;

	if (ev->type != POOL_EVENT_RETIRE || ev->reason != POOL_REASON_PEER_CLOSED)
		return;
	busy = pthread_mutex_trylock(&pool->reaper.run_lock) != 0;
	if (!busy)
		pthread_mutex_unlock(&pool->reaper.run_lock);
	atomic_store(&peer_closed_locked, busy);
}

START_TEST(peer_closed_event_unlocked)
{
	struct lineserver_opts o = { .idle_close_ms = 100 };
	struct lineserver *ls = lineserver_start(&o);
	const char *ep;
	pool_t *pool = pool_with("watch_idle", "on", "teardown", "abort", NULL);

	ck_assert_ptr_nonnull(ls);
	ep = lineserver_endpoint(ls);
	atomic_store(&peer_closed_locked, -1);
	pool_set_event_fn(pool, peer_closed_event, pool);
	pool_put(pool, get_ok(pool, ep), POOL_REUSE);
	wait_for(atomic_load(&peer_closed_locked) != -1, 3000);
	ck_assert_int_eq(atomic_load(&peer_closed_locked), 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(reason_stale)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("watch_idle", "off", "validate_idle_ms", "0", NULL);
	pool_conn_t *c;

	pool_put(pool, get_ok(pool, ep), POOL_REUSE);
	lineserver_close_all(ls);
	c = get_ok(pool, ep); /* the dead one dropped, a new one made */
	ck_assert_int_eq(pool_conn_reused(c), 0);
	ck_assert_uint_eq(retired(pool, ep, POOL_REASON_STALE, POOL_POLICY_CLOSE), 1);
	ck_assert_uint_eq(stats_of(pool, ep).stale_dropped, 1);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(reason_evicted)
{
	struct lineserver *a = server_start(LS_QUIT_CLOSE);
	struct lineserver *b = server_start(LS_QUIT_CLOSE);
	const char *ea = lineserver_endpoint(a), *eb = lineserver_endpoint(b);
	pool_t *pool = pool_with("max_total", "1", "teardown", "abort", NULL);
	pool_conn_t *c;

	pool_put(pool, get_ok(pool, ea), POOL_REUSE);
	c = get_ok(pool, eb); /* a's idle connection makes room */
	ck_assert_uint_eq(retired(pool, ea, POOL_REASON_EVICTED, POOL_POLICY_ABORT), 1);
	ck_assert_uint_eq(retired_all(pool, eb), 0);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(a);
	lineserver_stop(b);
}
END_TEST

static int failing_hook(pool_conn_t *c, void *ud)
{
	(void)c, (void)ud;
	return -1;
}

START_TEST(reason_hook)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_config_t *cfg = pool_config_new();
	pool_hooks_t h = { .on_connect = failing_hook };
	pool_t *pool = NULL;
	pool_conn_t *c = NULL;

	ck_assert_int_eq(pool_config_set_hooks(cfg, NULL, &h), 0);
	ck_assert_int_eq(pool_create(&pool, cfg), 0);
	pool_config_free(cfg);
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_EHOOK);
	/* Aborted: its state after a failed hook is unknown. */
	ck_assert_uint_eq(retired(pool, ep, POOL_REASON_HOOK, POOL_POLICY_ABORT), 1);
	ck_assert_uint_eq(retired_all(pool, ep), 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Destroy: the pool's counters go with it, so the events tell. */
START_TEST(reason_destroy_events)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first",
				 "close_request", "\"quit\\n\"", NULL);
	pool_conn_t *c[2];

	events_reset();
	pool_set_event_fn(pool, record_event, NULL);
	c[0] = get_ok(pool, ep);
	c[1] = get_ok(pool, ep);
	pool_put(pool, c[0], POOL_REUSE);
	pool_put(pool, c[1], POOL_REUSE);
	pool_destroy(pool);
	ck_assert_int_eq(events_count(POOL_EVENT_RETIRE, POOL_REASON_DESTROY), 2);
	/* Two connects came first; then the retirements. */
	ck_assert_int_eq(events_count(POOL_EVENT_CONNECT, -2), 2);
	ck_assert_int_eq(events[2].type, POOL_EVENT_RETIRE);
	ck_assert_int_eq(events[2].policy, POOL_POLICY_PEER_FIRST);
	ck_assert_str_eq(events[2].endpoint, ep);
	ck_assert_int_eq(events_count(POOL_EVENT_FALLBACK, -2), 0);
	lineserver_stop(ls);
}
END_TEST

/* pool_flush, for real: an idle connection retired at once, a checked-out
 * one at its put, both counted as flush under the policy. The DNS reason
 * is shown like every other (the dns suite drives it in a namespace). */
START_TEST(reason_flush_dns_recorded)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", NULL);
	struct pool_endpoint *e;
	pool_conn_t *idle, *out;
	char *text, series[256];

	idle = get_ok(pool, ep);
	out = get_ok(pool, ep);
	pool_put(pool, idle, POOL_REUSE);
	ck_assert_int_eq(pool_flush(pool, ep), 0);
	ck_assert_uint_eq(retired(pool, ep, POOL_REASON_FLUSH, POOL_POLICY_ABORT), 1);
	ck_assert_int_eq(pool_conn_last_use(out), 1);
	pool_put(pool, out, POOL_REUSE);
	ck_assert_uint_eq(retired(pool, ep, POOL_REASON_FLUSH, POOL_POLICY_ABORT), 2);
	ck_assert_uint_eq(retired_all(pool, ep), 2);
	pool_put(pool, get_ok(pool, ep), POOL_REUSE); /* holds the endpoint */
	ck_assert_int_eq(pool_endpoint_lock(pool, ep, &e), 0);
	pool_endpoint_unlock(e);
	obs_retire(pool, e, RR_DNS, TEARDOWN_ABORT, now_ns());
	text = prom_text(pool);
	snprintf(series, sizeof(series),
		 "tcpool_retired_total{endpoint=\"%s\",policy=\"abort\",reason=\"dns\"}", ep);
	ck_assert_double_eq(prom_value(text, series), 1);
	snprintf(series, sizeof(series),
		 "tcpool_retired_total{endpoint=\"%s\",policy=\"abort\",reason=\"flush\"}", ep);
	ck_assert_double_eq(prom_value(text, series), 2);
	free(text);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- histograms ---- */

/* A server that answers "quit" by closing 50 ms later: the drain lands
 * in the 2^16 us (65.5 ms) bucket, or the next on a loaded machine. */
START_TEST(drain_histogram_50ms)
{
	struct slowq *s = slowq_start(50);
	pool_t *pool = pool_with("teardown", "peer-first", "close_request",
				 "\"quit\\n\"", "close_timeout_ms", "2000", NULL);
	pool_stats_ex_t ex;
	pool_conn_t *c;
	char *text, series[256];

	c = get_ok(pool, s->endpoint);
	ping(c);
	pool_put(pool, c, POOL_RETIRE);
	wait_drains(pool, 3000);
	ex = ex_of(pool, s->endpoint);
	ck_assert_uint_eq(ex.base.peer_first_ok, 1);
	ck_assert_uint_eq(ex.hist[POOL_HIST_DRAIN].count, 1);
	ck_assert_uint_ge(ex.hist[POOL_HIST_DRAIN].sum_ns, 49000000u);
	ck_assert_uint_lt(ex.hist[POOL_HIST_DRAIN].sum_ns, 1000000000u);
	ck_assert_uint_eq(ex.hist[POOL_HIST_DRAIN].bucket[16] +
			  ex.hist[POOL_HIST_DRAIN].bucket[17], 1);
	ck_assert_uint_eq(retired(pool, s->endpoint, POOL_REASON_USER,
				  POOL_POLICY_PEER_FIRST), 1);
	/* As Prometheus reads it: cumulative, 0 below 32.8 ms. */
	text = prom_text(pool);
	snprintf(series, sizeof(series),
		 "tcpool_drain_seconds_bucket{endpoint=\"%s\",le=\"0.032768\"}",
		 s->endpoint);
	ck_assert_double_eq(prom_value(text, series), 0);
	snprintf(series, sizeof(series),
		 "tcpool_drain_seconds_bucket{endpoint=\"%s\",le=\"0.131072\"}",
		 s->endpoint);
	ck_assert_double_eq(prom_value(text, series), 1);
	snprintf(series, sizeof(series), "tcpool_drain_seconds_sum{endpoint=\"%s\"}",
		 s->endpoint);
	ck_assert(prom_value(text, series) >= 0.049 && prom_value(text, series) < 1);
	free(text);
	pool_destroy(pool);
	slowq_stop(s);
}
END_TEST

/* A drain that ends at once (the server had already closed) counts too,
 * near 0. */
START_TEST(drain_histogram_immediate)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first", "close_request",
				 "\"quit\\n\"", "watch_idle", "off", NULL);
	pool_conn_t *c;
	pool_stats_ex_t ex;

	c = get_ok(pool, ep);
	ping(c);
	lineserver_close_all(ls); /* the server closes first */
	usleep(20000);
	pool_put(pool, c, POOL_RETIRE);
	ex = ex_of(pool, ep);
	ck_assert_uint_eq(ex.hist[POOL_HIST_DRAIN].count, 1);
	ck_assert_uint_lt(ex.hist[POOL_HIST_DRAIN].sum_ns, 100000000u);
	ck_assert_uint_eq(ex.base.draining, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

static void quiet_log(int level, const char *msg, void *ud)
{
	(void)level, (void)msg, (void)ud;
}

/* A fallback after close_timeout_ms: event with why and the drain time. */
START_TEST(fallback_event_after_timeout)
{
	struct lineserver *ls = server_start(LS_QUIT_IGNORE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first", "close_request",
				 "\"quit\\n\"", "close_timeout_ms", "100",
				 "fallback", "abort", NULL);
	pool_stats_ex_t ex;
	pool_conn_t *c;
	int i, retire_at = -1, fb_at = -1;

	pool_set_log(pool, quiet_log, NULL); /* the fallback is expected */
	events_reset();
	pool_set_event_fn(pool, record_event, NULL);
	c = get_ok(pool, ep);
	ping(c);
	pool_put(pool, c, POOL_RETIRE);
	wait_for(events_count(POOL_EVENT_FALLBACK, POOL_FALLBACK_TIMEOUT) == 1, 3000);
	pthread_mutex_lock(&ev_lock);
	for (i = 0; i < nevents; i++) {
		if (events[i].type == POOL_EVENT_RETIRE)
			retire_at = i;
		if (events[i].type == POOL_EVENT_FALLBACK)
			fb_at = i;
	}
	pthread_mutex_unlock(&ev_lock);
	/* Retire first (user, peer-first), then its fallback, to abort. */
	ck_assert_int_ge(retire_at, 0);
	ck_assert_int_gt(fb_at, retire_at);
	ck_assert_int_eq(events[retire_at].reason, POOL_REASON_USER);
	ck_assert_int_eq(events[retire_at].policy, POOL_POLICY_PEER_FIRST);
	ck_assert_int_eq(events[fb_at].policy, POOL_POLICY_ABORT);
	ck_assert_uint_ge(events[fb_at].duration_ns, 95000000u);
	ck_assert_uint_ge(events[fb_at].size, sizeof(pool_event_t));
	ck_assert_str_eq(events[fb_at].endpoint, ep);
	ex = ex_of(pool, ep);
	ck_assert_uint_eq(ex.hist[POOL_HIST_DRAIN].count, 1);
	ck_assert_uint_ge(ex.hist[POOL_HIST_DRAIN].sum_ns, 95000000u);
	ck_assert_uint_eq(ex.base.peer_first_fallback, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Connect and backoff events come from other modules' calls into obs.c:
 * the event and the histogram they feed, checked here through the same
 * calls; a connect failure feeds no histogram. Unset: no call at all. */
START_TEST(connect_backoff_events)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with(NULL);
	struct pool_endpoint *e;
	pool_stats_ex_t ex;

	pool_stats_ex_t ex0;

	pool_put(pool, get_ok(pool, ep), POOL_REUSE);
	ck_assert_int_eq(pool_endpoint_lock(pool, ep, &e), 0);
	pool_endpoint_unlock(e);
	ex0 = ex_of(pool, ep); /* the real connect above is in it */
	events_reset();
	obs_connect(pool, e, 0, 1500000);  /* before a callback: counted only */
	pool_set_event_fn(pool, record_event, NULL);
	obs_connect(pool, e, 0, 3000);
	obs_connect(pool, e, POOL_ECONNREFUSED, 200000);
	obs_backoff(pool, e, 250);
	obs_time(e, HIST_ACQUIRE, 7000000);
	pool_set_event_fn(pool, NULL, NULL);
	obs_backoff(pool, e, 500);
	ck_assert_int_eq(events_n(), 3);
	ck_assert_int_eq(events[0].type, POOL_EVENT_CONNECT);
	ck_assert_int_eq(events[0].rc, 0);
	ck_assert_uint_eq(events[0].duration_ns, 3000);
	ck_assert_int_eq(events[0].reason, -1);
	ck_assert_int_eq(events[1].rc, POOL_ECONNREFUSED);
	ck_assert_int_eq(events[2].type, POOL_EVENT_BACKOFF);
	ck_assert_uint_eq(events[2].duration_ns, 250000000u);
	ex = ex_of(pool, ep);
	ck_assert_uint_eq(ex.hist[POOL_HIST_CONNECT].count - ex0.hist[POOL_HIST_CONNECT].count, 2);
	ck_assert_uint_eq(ex.hist[POOL_HIST_CONNECT].bucket[2] -
			  ex0.hist[POOL_HIST_CONNECT].bucket[2], 1);  /* 3 us <= 4 us */
	ck_assert_uint_eq(ex.hist[POOL_HIST_CONNECT].bucket[11] -
			  ex0.hist[POOL_HIST_CONNECT].bucket[11], 1); /* 1.5 ms <= 2.048 ms */
	ck_assert_uint_eq(ex.hist[POOL_HIST_CONNECT].sum_ns -
			  ex0.hist[POOL_HIST_CONNECT].sum_ns, 1503000u);
	ck_assert_uint_eq(ex.hist[POOL_HIST_ACQUIRE].bucket[13] -
			  ex0.hist[POOL_HIST_ACQUIRE].bucket[13], 1); /* 7 ms <= 8.192 ms */
	ex = ex_of(pool, NULL);
	ck_assert_uint_eq(ex.hist[POOL_HIST_CONNECT].count - ex0.hist[POOL_HIST_CONNECT].count, 2);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Bucket edges: exactly 2^i us falls in bucket i; a hair more in i+1;
 * beyond 2^26 us, the last. On the lifetime histogram, which nothing
 * real feeds before pool_destroy here. */
START_TEST(bucket_edges)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with(NULL);
	struct pool_endpoint *e;
	pool_stats_ex_t ex;

	pool_put(pool, get_ok(pool, ep), POOL_REUSE);
	ck_assert_int_eq(pool_endpoint_lock(pool, ep, &e), 0);
	pool_endpoint_unlock(e);
	obs_time(e, HIST_LIFETIME, 0);
	obs_time(e, HIST_LIFETIME, 1000);
	obs_time(e, HIST_LIFETIME, 1001);
	obs_time(e, HIST_LIFETIME, 1024000);
	obs_time(e, HIST_LIFETIME, (uint64_t)67108864 * 1000);
	obs_time(e, HIST_LIFETIME, (uint64_t)67108865 * 1000);
	ex = ex_of(pool, ep);
	ck_assert_uint_eq(ex.hist[POOL_HIST_LIFETIME].bucket[0], 2);
	ck_assert_uint_eq(ex.hist[POOL_HIST_LIFETIME].bucket[1], 1);
	ck_assert_uint_eq(ex.hist[POOL_HIST_LIFETIME].bucket[10], 1);
	ck_assert_uint_eq(ex.hist[POOL_HIST_LIFETIME].bucket[26], 1);
	ck_assert_uint_eq(ex.hist[POOL_HIST_LIFETIME].bucket[27], 1);
	ck_assert_uint_eq(ex.hist[POOL_HIST_LIFETIME].count, 6);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- pool_stats_ex's size contract ---- */

START_TEST(stats_ex_size_contract)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with(NULL);
	unsigned char raw[sizeof(pool_stats_ex_t) + 16];
	pool_stats_t st;
	size_t i;

	pool_put(pool, get_ok(pool, ep), POOL_RETIRE);
	/* An old caller's size: base only, nothing past it written. */
	memset(raw, 0xA5, sizeof(raw));
	ck_assert_int_eq(pool_stats_ex(pool, ep, (pool_stats_ex_t *)raw,
				       sizeof(pool_stats_t) + 8), 0);
	memcpy(&st, raw, sizeof(st));
	ck_assert_uint_eq(st.gets, 1);
	ck_assert_uint_eq(st.retired_close, 1);
	for (i = sizeof(pool_stats_t) + 8; i < sizeof(raw); i++)
		ck_assert_uint_eq(raw[i], 0xA5);
	/* A bigger (newer) caller: ours filled, the rest untouched. */
	memset(raw, 0xA5, sizeof(raw));
	ck_assert_int_eq(pool_stats_ex(pool, ep, (pool_stats_ex_t *)raw, sizeof(raw)), 0);
	for (i = sizeof(pool_stats_ex_t); i < sizeof(raw); i++)
		ck_assert_uint_eq(raw[i], 0xA5);
	ck_assert_int_eq(pool_stats_ex(pool, ep, (pool_stats_ex_t *)raw,
				       sizeof(pool_stats_t) - 1), POOL_EINVAL);
	ck_assert_int_eq(pool_stats_ex(pool, "127.0.0.1:1", (pool_stats_ex_t *)raw,
				       sizeof(pool_stats_ex_t)), POOL_EINVAL);
	ck_assert_int_eq(pool_stats_ex(NULL, ep, (pool_stats_ex_t *)raw,
				       sizeof(pool_stats_ex_t)), POOL_EINVAL);
	ck_assert_int_eq(pool_stats_ex(pool, ep, NULL, sizeof(pool_stats_ex_t)),
			 POOL_EINVAL);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(names)
{
	ck_assert_str_eq(pool_reason_name(POOL_REASON_IDLE_TIMEOUT), "idle_timeout");
	ck_assert_str_eq(pool_reason_name(POOL_REASON_HOOK), "hook");
	ck_assert_str_eq(pool_reason_name(POOL_REASON_COUNT), "unknown");
	ck_assert_str_eq(pool_reason_name(-1), "unknown");
	ck_assert_str_eq(pool_policy_name(POOL_POLICY_PEER_FIRST), "peer-first");
	ck_assert_str_eq(pool_policy_name(3), "unknown");
	ck_assert_str_eq(pool_fallback_name(POOL_FALLBACK_TIMEOUT), "timeout");
	ck_assert_str_eq(pool_fallback_name(POOL_FALLBACK_BROKEN), "broken");
	ck_assert_str_eq(pool_fallback_name(99), "unknown");
	ck_assert_str_eq(pool_event_name(POOL_EVENT_RETIRE), "retire");
	ck_assert_str_eq(pool_event_name(0), "unknown");
	ck_assert_str_eq(pool_event_name(5), "unknown");
}
END_TEST

/* ---- the Prometheus text ---- */

/* The path holds a double quote and a backslash: escaped in the label. */
START_TEST(prom_escaping_unix_and_ipv6)
{
	char path[96], want[256];
	struct lineserver_opts uo = { .family = AF_UNIX, .unix_path = path };
	struct lineserver_opts vo = { .family = AF_INET6, .bind_addr = "::1" };
	struct lineserver *u, *v;
	pool_t *pool = pool_with(NULL);
	char *text;

	snprintf(path, sizeof(path), "/tmp/tcpool-m\"e\\t%d.sock", (int)getpid());
	u = lineserver_start(&uo);
	ck_assert_ptr_nonnull(u);
	v = lineserver_start(&vo);
	if (!v)
		ck_abort_msg("no IPv6 loopback: %s", strerror(errno));
	pool_put(pool, get_ok(pool, lineserver_endpoint(u)), POOL_REUSE);
	pool_put(pool, get_ok(pool, lineserver_endpoint(v)), POOL_REUSE);
	text = prom_text(pool);
	snprintf(want, sizeof(want),
		 "tcpool_idle{endpoint=\"unix:/tmp/tcpool-m\\\"e\\\\t%d.sock\"} 1\n",
		 (int)getpid());
	ck_assert_msg(strstr(text, want), "missing %s", want);
	snprintf(want, sizeof(want), "tcpool_idle{endpoint=\"[::1]:%u\"} 1\n",
		 lineserver_port(v));
	ck_assert_msg(strstr(text, want), "missing %s", want);
	ck_assert_ptr_nonnull(strstr(text, "# TYPE tcpool_connect_seconds histogram\n"));
	ck_assert_ptr_nonnull(strstr(text, "# HELP tcpool_gets_total "));
	free(text);
	pool_destroy(pool);
	lineserver_stop(u);
	lineserver_stop(v);
}
END_TEST

/* True if s is valid UTF-8 by Go's rules (what promtool checks). */
static bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		unsigned n = *p < 0x80 ? 1 : *p >= 0xc2 && *p <= 0xdf ? 2 :
			     *p >= 0xe0 && *p <= 0xef ? 3 :
			     *p >= 0xf0 && *p <= 0xf4 ? 4 : 0;
		unsigned cp, i;

		if (!n)
			return false;
		cp = n == 1 ? *p : *p & (0xff >> (n + 1));
		for (i = 1; i < n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		p += n;
	}
	return true;
}

/* A unix path is any bytes: a label value must still be UTF-8, or the
 * whole scrape is rejected ("invalid label value" from promtool, before
 * the fix). UTF-8 in the path stays as it is; a stray byte becomes the
 * text \xNN. */
START_TEST(prom_label_not_utf8)
{
	char path[96], want[256];
	struct lineserver_opts uo = { .family = AF_UNIX, .unix_path = path };
	struct lineserver *u;
	pool_t *pool = pool_with(NULL);
	char *text;

	snprintf(path, sizeof(path), "/tmp/tcpool-\xc3\xa9\xff\xed\xa0\x80%d.sock",
		 (int)getpid());
	u = lineserver_start(&uo);
	ck_assert_ptr_nonnull(u);
	pool_put(pool, get_ok(pool, lineserver_endpoint(u)), POOL_REUSE);
	text = prom_text(pool);
	ck_assert_msg(utf8_valid(text), "the text is not UTF-8");
	snprintf(want, sizeof(want),
		 "tcpool_idle{endpoint=\"unix:/tmp/tcpool-\xc3\xa9\\\\xff\\\\xed\\\\xa0\\\\x80%d.sock\"} 1\n",
		 (int)getpid());
	ck_assert_msg(strstr(text, want), "missing %s", want);
	free(text);
	pool_destroy(pool);
	lineserver_stop(u);
}
END_TEST

/* Buckets never decrease, +Inf equals _count, for every series. */
START_TEST(prom_buckets_cumulative)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "abort", NULL);
	struct pool_endpoint *e;
	char *text, *line, *save = NULL, name[128] = "";
	double last = -1, inf = -1;
	int i, nseries = 0;

	for (i = 0; i < 20; i++)
		pool_put(pool, get_ok(pool, ep), i % 2 ? POOL_RETIRE : POOL_REUSE);
	ck_assert_int_eq(pool_endpoint_lock(pool, ep, &e), 0);
	pool_endpoint_unlock(e);
	/* Drains: none is real under abort, so the 40 are all these. */
	for (i = 0; i < 40; i++)
		obs_time(e, HIST_DRAIN, (uint64_t)i * i * 37000);
	text = prom_text(pool);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *b = strstr(line, "_bucket{");
		double val = strtod(strrchr(line, ' ') + 1, NULL);

		if (b) {
			if (strncmp(line, name, (size_t)(b - line)) != 0 ||
			    name[b - line] != '\0') {
				snprintf(name, sizeof(name), "%.*s", (int)(b - line), line);
				last = -1;
				nseries++;
			}
			ck_assert_msg(val >= last, "not cumulative: %s", line);
			last = val;
			if (strstr(line, "le=\"+Inf\""))
				inf = val;
		} else if (strstr(line, "_count{") && name[0] &&
			   strncmp(line, name, strlen(name)) == 0) {
			ck_assert_msg(val == inf, "_count %f != +Inf %f", val, inf);
		}
	}
	ck_assert_int_eq(nseries, POOL_HIST_COUNT);
	free(text);
	text = prom_text(pool);
	{
		char s[256];

		snprintf(s, sizeof(s), "tcpool_drain_seconds_count{endpoint=\"%s\"}", ep);
		ck_assert_double_eq(prom_value(text, s), 40);
		/* The 10 gets that connected left the fast path. */
		snprintf(s, sizeof(s), "tcpool_acquire_seconds_count{endpoint=\"%s\"}", ep);
		ck_assert_double_eq(prom_value(text, s), 10);
		snprintf(s, sizeof(s), "tcpool_connection_lifetime_seconds_count{endpoint=\"%s\"}", ep);
		ck_assert_double_eq(prom_value(text, s), 10);
		snprintf(s, sizeof(s), "tcpool_gets_total{endpoint=\"%s\"}", ep);
		ck_assert_double_eq(prom_value(text, s), 20);
		snprintf(s, sizeof(s),
			 "tcpool_retired_total{endpoint=\"%s\",policy=\"abort\",reason=\"user\"}", ep);
		ck_assert_double_eq(prom_value(text, s), 10);
		/* The endpoint's own policy lists every reason, zeros too. */
		snprintf(s, sizeof(s),
			 "tcpool_retired_total{endpoint=\"%s\",policy=\"abort\",reason=\"flush\"}", ep);
		ck_assert_double_eq(prom_value(text, s), 0);
		ck_assert_ptr_null(strstr(text, "policy=\"close\""));
	}
	free(text);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* snprintf's contract: the needed length whatever len; at most len
 * bytes written, NUL included; bad arguments change nothing. */
START_TEST(prom_length_contract)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with(NULL);
	char *full, small[64], one[1] = { 'x' };
	int n;

	pool_put(pool, get_ok(pool, ep), POOL_REUSE);
	full = prom_text(pool);
	n = (int)strlen(full);
	memset(small, 'Z', sizeof(small));
	ck_assert_int_eq(pool_stats_format(pool, small, 10, POOL_FORMAT_PROMETHEUS), n);
	ck_assert_uint_eq(strlen(small), 9);
	ck_assert_int_eq(memcmp(small, full, 9), 0);
	ck_assert_int_eq(small[10], 'Z');
	ck_assert_int_eq(pool_stats_format(pool, one, 1, POOL_FORMAT_PROMETHEUS), n);
	ck_assert_int_eq(one[0], '\0');
	/* Exactly n bytes of room: one short of the NUL. */
	{
		char *b = malloc((size_t)n);

		ck_assert_ptr_nonnull(b);
		ck_assert_int_eq(pool_stats_format(pool, b, (size_t)n,
						   POOL_FORMAT_PROMETHEUS), n);
		ck_assert_uint_eq(strlen(b), (size_t)n - 1);
		free(b);
	}
	memset(small, 'Z', sizeof(small));
	ck_assert_int_eq(pool_stats_format(pool, NULL, 10, POOL_FORMAT_PROMETHEUS),
			 POOL_EINVAL);
	ck_assert_int_eq(pool_stats_format(pool, small, sizeof(small), 0), POOL_EINVAL);
	ck_assert_int_eq(pool_stats_format(pool, small, sizeof(small), 2), POOL_EINVAL);
	ck_assert_int_eq(small[0], 'Z');
	ck_assert_int_eq(pool_stats_format(NULL, small, sizeof(small),
					   POOL_FORMAT_PROMETHEUS), POOL_EINVAL);
	free(full);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* A pool that never saw an endpoint: HELP and TYPE lines, no series but
 * the pool-wide misuse counter. */
START_TEST(prom_empty_pool)
{
	pool_t *pool = pool_with(NULL);
	char *text = prom_text(pool);

	ck_assert_ptr_nonnull(strstr(text, "# TYPE tcpool_gets_total counter\n"));
	ck_assert_ptr_null(strstr(text, "endpoint="));
	ck_assert_ptr_nonnull(strstr(text, "\ntcpool_misuse_total 0\n"));
	free(text);
	pool_destroy(pool);
}
END_TEST

/* Events from many threads at once, with the callback switched on and
 * off meanwhile: none lost while it is on, none after it is off. */
static atomic_int mt_events;

static void count_event(const pool_event_t *ev, void *ud)
{
	(void)ud;
	if (ev->type == POOL_EVENT_RETIRE)
		atomic_fetch_add(&mt_events, 1);
}

struct mt_arg {
	pool_t *pool;
	const char *ep;
};

static void *mt_worker(void *p)
{
	struct mt_arg *a = p;
	int i;

	for (i = 0; i < 200; i++) {
		pool_conn_t *c = NULL;

		if (pool_get(a->pool, a->ep, &c) == 0)
			pool_put(a->pool, c, POOL_RETIRE);
	}
	return NULL;
}

START_TEST(events_from_threads)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	struct mt_arg a = { NULL, lineserver_endpoint(ls) };
	pthread_t t[4];
	int i;

	a.pool = pool_with("teardown", "abort", NULL);
	atomic_store(&mt_events, 0);
	pool_set_event_fn(a.pool, count_event, NULL);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, mt_worker, &a), 0);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(atomic_load(&mt_events),
			 (int)retired(a.pool, a.ep, POOL_REASON_USER, POOL_POLICY_ABORT));
	ck_assert_int_eq(atomic_load(&mt_events), 800);
	pool_set_event_fn(a.pool, NULL, NULL);
	pool_put(a.pool, get_ok(a.pool, a.ep), POOL_RETIRE);
	ck_assert_int_eq(atomic_load(&mt_events), 800);
	pool_destroy(a.pool);
	lineserver_stop(ls);
}
END_TEST

/* The idle fast path records nothing: a thousand get/put pairs of one
 * idle connection leave every histogram and retirement count at 0. */
START_TEST(idle_fast_path_records_nothing)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with(NULL);
	pool_stats_ex_t ex0, ex;
	int i, h;

	/* The first get connects: one acquire and one connect recorded. */
	pool_put(pool, get_ok(pool, ep), POOL_REUSE);
	ex0 = ex_of(pool, ep);
	ck_assert_uint_eq(ex0.hist[POOL_HIST_CONNECT].count, 1);
	ck_assert_uint_eq(ex0.hist[POOL_HIST_ACQUIRE].count, 1);
	for (i = 0; i < 1000; i++)
		pool_put(pool, get_ok(pool, ep), POOL_REUSE);
	ex = ex_of(pool, ep);
	ck_assert_uint_eq(ex.base.reuses, 1000);
	for (h = 0; h < POOL_HIST_COUNT; h++)
		ck_assert_msg(ex.hist[h].count == ex0.hist[h].count,
			      "histogram %d: %llu, %llu before", h,
			      (unsigned long long)ex.hist[h].count,
			      (unsigned long long)ex0.hist[h].count);
	ck_assert_uint_eq(retired_all(pool, ep), 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Closed by the server while checked out: retired at its put, counted
 * as peer_closed under the endpoint's policy. */
START_TEST(reason_peer_closed_while_out)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("watch_idle", "on", "teardown", "abort", NULL);
	pool_conn_t *c = get_ok(pool, ep);
	struct lineserver_stats ss;

	ping(c);
	lineserver_close_all(ls);
	lineserver_get_stats(ls, &ss);
	ck_assert_uint_eq(ss.open, 0);
	usleep(100000); /* the watch sees the FIN */
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(retired(pool, ep, POOL_REASON_PEER_CLOSED, POOL_POLICY_ABORT), 1);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Scrapes while threads get, put and retire: every text whole and
 * consistent (TSan and ASan runs check the copying). */
struct scrape_arg {
	pool_t *pool;
	atomic_bool stop;
	int scrapes, bad;
};

/* No ck_assert off the test's thread: counted, asserted after. */
static void *scraper(void *p)
{
	struct scrape_arg *a = p;
	char small[256];

	while (!atomic_load(&a->stop)) {
		char *t = NULL;
		int n, m;

		/* The documented pattern: size, fill, again if it grew (an
		 * endpoint appeared meanwhile). */
		do {
			free(t);
			n = pool_stats_format(a->pool, NULL, 0, POOL_FORMAT_PROMETHEUS);
			t = n > 0 ? malloc((size_t)n + 1) : NULL;
			m = t ? pool_stats_format(a->pool, t, (size_t)n + 1,
						  POOL_FORMAT_PROMETHEUS) : -1;
		} while (t && m > n);
		if (m < 0 || strlen(t) != (size_t)m ||
		    !strstr(t, "tcpool_misuse_total 0\n"))
			a->bad++;
		free(t);
		if (pool_stats_format(a->pool, small, sizeof(small),
				      POOL_FORMAT_PROMETHEUS) < 256 ||
		    strlen(small) != sizeof(small) - 1)
			a->bad++;
		a->scrapes++;
	}
	return NULL;
}

START_TEST(format_under_load)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	struct lineserver *ls2 = server_start(LS_QUIT_CLOSE);
	struct mt_arg a = { NULL, lineserver_endpoint(ls) };
	struct mt_arg b = { NULL, lineserver_endpoint(ls2) };
	struct scrape_arg sa = { .scrapes = 0 };
	pthread_t t[3], st;
	pool_stats_ex_t ex;

	a.pool = b.pool = sa.pool = pool_with("teardown", "abort", NULL);
	ck_assert_int_eq(pthread_create(&st, NULL, scraper, &sa), 0);
	ck_assert_int_eq(pthread_create(&t[0], NULL, mt_worker, &a), 0);
	ck_assert_int_eq(pthread_create(&t[1], NULL, mt_worker, &b), 0);
	ck_assert_int_eq(pthread_create(&t[2], NULL, mt_worker, &a), 0);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	pthread_join(t[2], NULL);
	atomic_store(&sa.stop, true);
	pthread_join(st, NULL);
	ck_assert_int_gt(sa.scrapes, 0);
	ck_assert_int_eq(sa.bad, 0);
	ex = ex_of(a.pool, NULL);
	ck_assert_uint_eq(ex.retired[POOL_REASON_USER][POOL_POLICY_ABORT], 600);
	ck_assert_uint_eq(ex.hist[POOL_HIST_LIFETIME].count, 600);
	pool_destroy(a.pool);
	lineserver_stop(ls);
	lineserver_stop(ls2);
}
END_TEST

Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tr = tcase_create("reasons");
	TCase *th = tcase_create("histograms");
	TCase *tp = tcase_create("prometheus");

	tcase_set_timeout(tr, 30);
	tcase_add_checked_fixture(tr, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(tr, reason_user_and_broken);
	tcase_add_test(tr, reason_max_uses);
	tcase_add_test(tr, reason_idle_timeout);
	tcase_add_test(tr, reason_lifetime);
	tcase_add_test(tr, reason_surplus);
	tcase_add_test(tr, reason_peer_closed_idle);
	tcase_add_test(tr, peer_closed_event_unlocked);
	tcase_add_test(tr, reason_stale);
	tcase_add_test(tr, reason_evicted);
	tcase_add_test(tr, reason_hook);
	tcase_add_test(tr, reason_destroy_events);
	tcase_add_test(tr, reason_flush_dns_recorded);
	tcase_add_test(tr, reason_peer_closed_while_out);
	tcase_add_test(tr, idle_fast_path_records_nothing);
	suite_add_tcase(s, tr);

	tcase_set_timeout(th, 30);
	tcase_add_checked_fixture(th, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(th, drain_histogram_50ms);
	tcase_add_test(th, drain_histogram_immediate);
	tcase_add_test(th, fallback_event_after_timeout);
	tcase_add_test(th, connect_backoff_events);
	tcase_add_test(th, bucket_edges);
	tcase_add_test(th, stats_ex_size_contract);
	tcase_add_test(th, names);
	tcase_add_test(th, events_from_threads);
	suite_add_tcase(s, th);

	tcase_set_timeout(tp, 30);
	tcase_add_checked_fixture(tp, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(tp, prom_escaping_unix_and_ipv6);
	tcase_add_test(tp, prom_label_not_utf8);
	tcase_add_test(tp, prom_buckets_cumulative);
	tcase_add_test(tp, prom_length_contract);
	tcase_add_test(tp, prom_empty_pool);
	tcase_add_test(tp, format_under_load);
	suite_add_tcase(s, tp);
	return s;
}
