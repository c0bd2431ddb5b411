/*
 * The request loops. Both modes go through the library, so that the
 * teardown a row reports is the one the library does:
 *  - unpooled: a pool with max_idle = 0, and pool_put(POOL_RETIRE) after
 *    each request: every request connects anew, and the policy tears the
 *    connection down (connect, one request, teardown: what users do
 *    without a pool);
 *  - pooled: max_idle >= threads, pool_put(POOL_REUSE), max_uses so that
 *    connections are retired during the run; pool_destroy() retires the
 *    rest and waits for peer-first drains before TIME_WAIT is counted.
 * Latency is each request's pool_get + round trip + pool_put, timed with
 * CLOCK_MONOTONIC into arrays allocated before the run.
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

static const char *const policy_names[POL_COUNT] = {
	"close", "abort", "peer-first"
};

const char *policy_name(enum policy p)
{
	return policy_names[p];
}

int cfg_set(pool_config_t *cfg, const char *key, const char *value)
{
	char err[256];

	if (pool_config_set(cfg, NULL, key, value, err, sizeof(err)) != 0) {
		fprintf(stderr, "tcpool-bench: config %s = %s: %s\n", key, value,
		        err);
		return -1;
	}
	return 0;
}

struct loop_ctx {
	pool_t *pool;
	const char *endpoint;
	const struct proto *p;
	bool pooled;
	uint64_t *lat, *put;    /* ns per request, per worker slices */
	pthread_barrier_t start;
};

struct worker {
	pthread_t thread;
	struct loop_ctx *ctx;
	uint64_t first, n;      /* its slice of the arrays */
	uint64_t ok, errors, connect_errors;
	int first_error;        /* POOL_E* (< 0) or errno (> 0) */
	uint64_t t_start, t_end;
};

static void note_error(struct worker *w, int err)
{
	if (w->first_error == 0)
		w->first_error = err;
}

/* One request: get, round trip, put. Returns 0 when it succeeded. */
static int one_request(struct worker *w, uint64_t slot)
{
	struct loop_ctx *c = w->ctx;
	pool_conn_t *conn;
	uint64_t t0 = bench_now_ns(), t1;
	pool_put_mode mode;
	int rc = pool_get(c->pool, c->endpoint, &conn);

	if (rc != 0) {
		if (rc == POOL_EADDRNOTAVAIL || rc == POOL_ECONNREFUSED ||
		    rc == POOL_ETIMEDOUT || rc == POOL_ECONNECT)
			w->connect_errors++;
		else
			w->errors++;
		note_error(w, rc);
		return -1;
	}
	rc = proto_roundtrip(pool_conn_fd(conn), c->p, IO_TIMEOUT_MS);
	if (rc != 0) {
		w->errors++;
		note_error(w, errno);
		mode = POOL_BROKEN;
	} else {
		mode = c->pooled ? POOL_REUSE : POOL_RETIRE;
	}
	t1 = bench_now_ns();
	pool_put(c->pool, conn, mode);
	if (rc == 0) {
		c->put[slot] = bench_now_ns() - t1;
		c->lat[slot] = bench_now_ns() - t0;
	}
	return rc;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	pthread_barrier_wait(&w->ctx->start);
	w->t_start = bench_now_ns();
	for (uint64_t i = 0; i < w->n; i++)
		if (one_request(w, w->first + w->ok) == 0)
			w->ok++;
	w->t_end = bench_now_ns();
	return NULL;
}

/* Gather the workers' figures and their latency samples. */
static void loop_collect(struct loop_ctx *c, struct worker *w, int threads,
                         struct loop_result *out)
{
	uint64_t t_start = UINT64_MAX, t_end = 0, n = 0;

	for (int i = 0; i < threads; i++) {
		out->ok += w[i].ok;
		out->errors += w[i].errors;
		out->connect_errors += w[i].connect_errors;
		if (!out->first_error)
			out->first_error = w[i].first_error;
		t_start = w[i].t_start < t_start ? w[i].t_start : t_start;
		t_end = w[i].t_end > t_end ? w[i].t_end : t_end;
		/* compact: each worker filled the head of its slice */
		memmove(c->lat + n, c->lat + w[i].first, w[i].ok * 8);
		memmove(c->put + n, c->put + w[i].first, w[i].ok * 8);
		n += w[i].ok;
	}
	out->seconds = (double)(t_end - t_start) / 1e9;
	out->p50_us = (double)percentile_ns(c->lat, n, 50) / 1e3;
	out->p99_us = (double)percentile_ns(c->lat, n, 99) / 1e3;
	out->put_p99_us = (double)percentile_ns(c->put, n, 99) / 1e3;
}

static int loop_threads(struct loop_ctx *c, int threads, uint64_t requests,
                        struct loop_result *out)
{
	struct worker *w = calloc((size_t)threads, sizeof(*w));
	int started = 0;

	if (!w)
		return -1;
	pthread_barrier_init(&c->start, NULL, (unsigned)threads);
	for (int i = 0; i < threads; i++) {
		w[i].ctx = c;
		w[i].first = requests * (uint64_t)i / (uint64_t)threads;
		w[i].n = requests * (uint64_t)(i + 1) / (uint64_t)threads -
		         w[i].first;
		if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0)
			break;
		started++;
	}
	if (started < threads) {
		/* cannot happen short of resource exhaustion; the barrier
		 * would block forever, so give up loudly */
		fprintf(stderr, "tcpool-bench: cannot start threads\n");
		abort();
	}
	for (int i = 0; i < threads; i++)
		pthread_join(w[i].thread, NULL);
	pthread_barrier_destroy(&c->start);
	loop_collect(c, w, threads, out);
	free(w);
	return 0;
}

int pool_loop(pool_config_t *cfg, const char *endpoint,
              const struct proto *p, int threads, uint64_t requests,
              bool pooled, struct loop_result *out)
{
	struct loop_ctx c = { .endpoint = endpoint, .p = p, .pooled = pooled };
	pool_stats_t st;
	int rc;

	memset(out, 0, sizeof(*out));
	c.lat = malloc(requests * sizeof(uint64_t));
	c.put = malloc(requests * sizeof(uint64_t));
	rc = pool_create(&c.pool, cfg);
	if (rc != 0 || !c.lat || !c.put) {
		fprintf(stderr, "tcpool-bench: pool_create: %s\n",
		        pool_strerror(rc));
		rc = -1;
		goto out;
	}
	rc = loop_threads(&c, threads, requests, out);
	if (pool_stats(c.pool, NULL, &st) == 0) {
		out->connects = st.connects;
		/* what pool_destroy retires next counts as retired too */
		out->retired = st.retired_close + st.retired_abort +
		               st.retired_peer_first + st.idle;
		out->fallbacks = st.peer_first_fallback;
	}
	pool_destroy(c.pool);
out:
	free(c.lat);
	free(c.put);
	return rc;
}
