/*
 * Bursts: BURST_THREADS requests at once through a pool that keeps
 * BURST_MAX_IDLE idle connections, again and again with short pauses,
 * the traffic shape idle_shrink_ms is for. With idle_shrink_ms = 0 a
 * burst's connections above max_idle are retired at pool_put, and the
 * next burst connects them again: connects and TIME_WAIT grow with every
 * burst. With the default the surplus is kept and retired gradually by
 * the maintenance, so bursts that come back sooner than idle_shrink_ms
 * find their connections still there.
 *
 * Each burst's threads are released together by a barrier and hold
 * their connection until all of them have one: 64 threads on a 2-core
 * machine otherwise straggle, an early finisher's connection serves a
 * late starter, and the count would measure the scheduler, not the pool.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define IO_TIMEOUT_MS 5000

struct burst_ctx {
	pool_t *pool;
	const char *endpoint;
	const struct proto *p;
	int bursts;
	pthread_barrier_t go, held, done;  /* go, done: the conductor too */
	uint64_t *lat;                     /* get + round trip, per request */
};

struct burst_worker {
	pthread_t thread;
	struct burst_ctx *c;
	int idx;
	uint64_t ok, errors;
	int first_error;                   /* POOL_E* (< 0) or errno (> 0) */
};

static char skip_why[96];

const char *burst_skipped(void)
{
	return skip_why;
}

static void burst_note(struct burst_worker *w, int err)
{
	w->errors++;
	if (!w->first_error)
		w->first_error = err;
}

/* One request: get, round trip, wait for the others, put. */
static void burst_request(struct burst_worker *w)
{
	struct burst_ctx *c = w->c;
	pool_conn_t *conn = NULL;
	uint64_t t0 = bench_now_ns();
	int rc = pool_get(c->pool, c->endpoint, &conn);

	if (rc != 0) {
		burst_note(w, rc);
		conn = NULL;
	} else if (proto_roundtrip(pool_conn_fd(conn), c->p, IO_TIMEOUT_MS)) {
		burst_note(w, errno);
		rc = -1;
	} else {
		/* worker idx owns lat[idx * bursts ...] */
		c->lat[(uint64_t)w->idx * (uint64_t)c->bursts + w->ok++] =
			bench_now_ns() - t0;
	}
	pthread_barrier_wait(&c->held);
	if (conn)
		pool_put(c->pool, conn, rc == 0 ? POOL_REUSE : POOL_BROKEN);
}

static void *burst_worker_main(void *arg)
{
	struct burst_worker *w = arg;

	for (int b = 0; b < w->c->bursts; b++) {
		pthread_barrier_wait(&w->c->go);
		burst_request(w);
		pthread_barrier_wait(&w->c->done);
	}
	return NULL;
}

/* Release the bursts one by one, gap_ms apart; seconds spent in them. */
static double conduct(struct burst_ctx *c, int gap_ms)
{
	struct timespec gap = { gap_ms / 1000, (gap_ms % 1000) * 1000000L };
	uint64_t busy = 0;

	for (int b = 0; b < c->bursts; b++) {
		uint64_t t0;

		if (b > 0)
			nanosleep(&gap, NULL);
		t0 = bench_now_ns();
		pthread_barrier_wait(&c->go);
		pthread_barrier_wait(&c->done);
		busy += bench_now_ns() - t0;
	}
	return (double)busy / 1e9;
}

/* Gather the workers' latencies (each filled the head of its slice). */
static void burst_collect(struct burst_ctx *c, struct burst_worker *w,
                          struct loop_result *out)
{
	uint64_t n = 0;

	for (int i = 0; i < BURST_THREADS; i++) {
		memmove(c->lat + n, c->lat + (uint64_t)i * (uint64_t)c->bursts,
		        w[i].ok * sizeof(*c->lat));
		n += w[i].ok;
		out->ok += w[i].ok;
		out->errors += w[i].errors;
		if (!out->first_error)
			out->first_error = w[i].first_error;
	}
	out->p50_us = (double)percentile_ns(c->lat, n, 50) / 1e3;
	out->p99_us = (double)percentile_ns(c->lat, n, 99) / 1e3;
}

static void burst_threads(struct burst_ctx *c, int gap_ms,
                          struct loop_result *out)
{
	struct burst_worker w[BURST_THREADS];
	int started = 0;

	pthread_barrier_init(&c->go, NULL, BURST_THREADS + 1);
	pthread_barrier_init(&c->done, NULL, BURST_THREADS + 1);
	pthread_barrier_init(&c->held, NULL, BURST_THREADS);
	memset(w, 0, sizeof(w));
	for (; started < BURST_THREADS; started++) {
		w[started].c = c;
		w[started].idx = started;
		if (pthread_create(&w[started].thread, NULL, burst_worker_main,
		                   &w[started]) != 0)
			break;
	}
	if (started < BURST_THREADS) {
		/* the barriers would wait forever: give up loudly */
		fprintf(stderr, "tcpool-bench: burst: cannot start threads\n");
		abort();
	}
	out->seconds = conduct(c, gap_ms);
	for (int i = 0; i < BURST_THREADS; i++)
		pthread_join(w[i].thread, NULL);
	pthread_barrier_destroy(&c->go);
	pthread_barrier_destroy(&c->done);
	pthread_barrier_destroy(&c->held);
	burst_collect(c, w, out);
}

struct burst_call {
	const struct burst_opts *o;
	pool_config_t *cfg;
	const char *endpoint;
	struct loop_result res;
};

/* In the client's namespace: the pool, the bursts, the counters. */
static intptr_t burst_body(void *arg)
{
	struct burst_call *bc = arg;
	struct burst_ctx c = { .endpoint = bc->endpoint,
	                       .p = proto_for(SRV_BUILTIN),
	                       .bursts = bc->o->bursts };
	pool_stats_t st;
	int rc;

	c.lat = calloc((size_t)bc->o->bursts * BURST_THREADS, sizeof(*c.lat));
	rc = c.lat ? pool_create(&c.pool, bc->cfg) : POOL_ENOMEM;
	if (rc != 0) {
		fprintf(stderr, "tcpool-bench: burst: pool_create: %s\n",
		        pool_strerror(rc));
		free(c.lat);
		return -1;
	}
	burst_threads(&c, bc->o->gap_ms, &bc->res);
	if (pool_stats(c.pool, NULL, &st) == 0) {
		bc->res.connects = st.connects;
		bc->res.retired = st.retired_close + st.retired_abort +
		                  st.retired_peer_first + st.idle;
		bc->res.fallbacks = st.peer_first_fallback;
	}
	/* retires the kept connections and waits for peer-first drains */
	pool_destroy(c.pool);
	free(c.lat);
	return 0;
}

static pool_config_t *burst_config(enum policy p, long shrink_ms)
{
	pool_config_t *cfg = pool_config_new();
	char num[24];
	int bad = !cfg;

	if (bad)
		return NULL;
	snprintf(num, sizeof(num), "%ld", shrink_ms);
	bad |= cfg_policy(cfg, p, SRV_BUILTIN);
	bad |= cfg_set(cfg, "idle_shrink_ms", num);
	bad |= cfg_set(cfg, "max_idle", "4");
	bad |= cfg_set(cfg, "max_uses", "0");
	bad |= cfg_set(cfg, "max_total", "0");
	bad |= cfg_set(cfg, "connect_timeout_ms", "5000");
	if (bad) {
		pool_config_free(cfg);
		return NULL;
	}
	return cfg;
}

static void burst_fill(const struct burst_opts *o, enum policy p,
                       long shrink_ms, const struct loop_result *r,
                       struct row *row)
{
	snprintf(row->scenario, sizeof(row->scenario), "burst");
	snprintf(row->server, sizeof(row->server), "builtin");
	snprintf(row->policy, sizeof(row->policy), "%s", policy_name(p));
	row->pooled = 1;
	row->threads = BURST_THREADS;
	row->requests = (uint64_t)o->bursts * BURST_THREADS;
	row->idle_shrink_ms = shrink_ms;
	row->seconds = r->seconds;
	row->req_per_s = r->seconds > 0 ? (double)r->ok / r->seconds : 0;
	row->p50_us = r->p50_us;
	row->p99_us = r->p99_us;
	row->connects = r->connects;
	row->retired = r->retired;
	row->failed = r->errors > 0;
	snprintf(row->note, sizeof(row->note),
	         "%d bursts of %d, max_idle %d, idle_shrink_ms %ld%s%s",
	         o->bursts, BURST_THREADS, BURST_MAX_IDLE, shrink_ms,
	         r->first_error ? "; first error: " : "",
	         !r->first_error ? "" : r->first_error < 0
	         ? pool_strerror(r->first_error) : strerror(r->first_error));
}

/* One policy and idle_shrink_ms value on a fresh server. 0 or -1. */
static int burst_once(const struct burst_opts *o, const struct netenv *e,
                      enum policy p, long shrink_ms, struct row *row)
{
	struct burst_call bc = { .o = o };
	struct server srv;
	int rc = -1;

	memset(row, 0, sizeof(*row));
	row->client_tw = row->server_tw = -1;
	if (server_start(&srv, SRV_BUILTIN, e) != 0)
		return -1;
	bc.endpoint = srv.endpoint;
	bc.cfg = burst_config(p, shrink_ms);
	if (bc.cfg && netenv_run(e, SIDE_CLIENT, burst_body, &bc) == 0) {
		burst_fill(o, p, shrink_ms, &bc.res, row);
		if (tw_settled(e, srv.endpoint, &row->client_tw,
		               &row->server_tw) != 0)
			row->failed = true;
		rc = 0;
	}
	pool_config_free(bc.cfg);
	server_stop(&srv);
	return rc;
}

/* 1 when this library knows idle_shrink_ms, 0 when it does not, -1 on
 * another error. */
static int shrink_known(void)
{
	pool_config_t *cfg = pool_config_new();
	char err[256] = "";
	int rc;

	if (!cfg)
		return -1;
	rc = pool_config_set(cfg, NULL, "idle_shrink_ms", "0", err, sizeof(err));
	pool_config_free(cfg);
	if (rc == 0)
		return 1;
	if (strstr(err, "unknown key"))
		return 0;
	fprintf(stderr, "tcpool-bench: burst: idle_shrink_ms: %s\n", err);
	return -1;
}

/* A row that says the run could not be made, so it never vanishes. */
static void burst_failed(enum policy p, long shrink_ms, struct row *row)
{
	snprintf(row->scenario, sizeof(row->scenario), "burst");
	snprintf(row->server, sizeof(row->server), "builtin");
	snprintf(row->policy, sizeof(row->policy), "%s", policy_name(p));
	row->pooled = 1;
	row->threads = BURST_THREADS;
	row->idle_shrink_ms = shrink_ms;
	row->failed = true;
	snprintf(row->note, sizeof(row->note), "could not run");
}

int burst_run(const struct burst_opts *o, const struct netenv *e,
              struct row *rows, int cap)
{
	static const long shrink[2] = { 0, BURST_SHRINK_DEFAULT };
	int n = 0, known = shrink_known();

	skip_why[0] = '\0';
	if (known <= 0) {
		if (known == 0)
			snprintf(skip_why, sizeof(skip_why),
			         "idle_shrink_ms unknown to this library");
		return known;
	}
	for (int p = 0; p < POL_COUNT; p++) {
		for (int s = 0; s < 2 && n < cap; s++) {
			progress("burst: %s, idle_shrink_ms %ld: %d bursts of %d "
			         "requests, max_idle %d", policy_name(p), shrink[s],
			         o->bursts, BURST_THREADS, BURST_MAX_IDLE);
			if (burst_once(o, e, p, shrink[s], &rows[n]) != 0)
				burst_failed(p, shrink[s], &rows[n]);
			progress("    connects %llu, TIME_WAIT client %ld server "
			         "%ld%s", (unsigned long long)rows[n].connects,
			         rows[n].client_tw, rows[n].server_tw,
			         rows[n].failed ? "  FAILED" : "");
			n++;
		}
	}
	return n;
}
