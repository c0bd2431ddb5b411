/*
 * Request throughput, one thread, against the built-in server: the same
 * request loop over a raw persistent socket (the ceiling), through the
 * pool (POOL_REUSE, default validation), and connect-per-request through
 * the pool (max_idle = 0, teardown close: what users do without a pool).
 * Repetitions are interleaved; medians are reported with ratios to raw.
 *
 * Raw and pool run in the same thread, alternating in chunks of
 * TPUT_CHUNK requests, each chunk timed. Run one after the other, as
 * they were, the two loops landed on different CPUs relative to the
 * server's thread from one run to the next (the pool's loop ran in a
 * thread of its own, the raw one in the caller's), and a few ms of
 * another program's load fell on one loop and not the other: the ratio
 * read 0.60, 0.68 and 0.88 on a quiet machine. Alternating chunks share
 * the thread, the server thread's placement and the machine's moment. A
 * chunk pair in which either chunk took more than TPUT_OUTLIER times its
 * loop's median chunk (a preemption, a migration) is left out for both
 * loops alike, and counted in the note.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

enum { T_RAW, T_POOL, T_CPR, T_COUNT };

struct figures {
	double rps[BENCH_MAX_REPS], p50[BENCH_MAX_REPS], p99[BENCH_MAX_REPS];
};

/* A connected socket to "a.b.c.d:port", or -1: blocking, with
 * TCP_NODELAY, like the pool's sockets, so that the ceiling differs from
 * the pool's loop by the pool alone. (It was non-blocking: each reply
 * then took recv, EAGAIN, poll and recv again, three system calls where
 * the pool's blocking socket takes one, and the pool could beat its own
 * ceiling by 3 %.) */
static int raw_connect(const char *endpoint)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	char host[32];
	int fd, rc, one = 1;

	snprintf(host, sizeof(host), "%.*s", (int)strcspn(endpoint, ":"),
	         endpoint);
	sin.sin_port = htons((uint16_t)atoi(strchr(endpoint, ':') + 1));
	if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
		return -1;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	do {
		rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
	} while (rc == -1 && errno == EINTR);
	if (rc != 0) {
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

#define TPUT_CHUNK 50
#define TPUT_OUTLIER 2.0

/* One loop's state for a repetition. */
struct tloop {
	uint64_t *lat;         /* per request, ns */
	uint64_t nlat;
	uint64_t *chunk_ns;    /* per chunk */
	uint64_t ok;
};

/* n requests over fd (raw) or through pool (pool_get/put each), each
 * timed into l; returns the chunk's time, 0 on failure. */
static uint64_t run_chunk(struct tloop *l, int fd, pool_t *pool,
                          const char *endpoint, uint64_t n)
{
	const struct proto *p = proto_for(SRV_BUILTIN);
	uint64_t start = bench_now_ns();

	for (uint64_t i = 0; i < n; i++) {
		uint64_t t0 = bench_now_ns();
		pool_conn_t *conn = NULL;
		int rc = 0;

		if (pool)
			rc = pool_get(pool, endpoint, &conn);
		if (rc == 0)
			rc = proto_roundtrip(pool ? pool_conn_fd(conn) : fd, p, 5000);
		if (conn)
			pool_put(pool, conn, rc == 0 ? POOL_REUSE : POOL_BROKEN);
		if (rc != 0)
			return 0;
		l->lat[l->nlat++] = bench_now_ns() - t0;
		l->ok++;
	}
	return bench_now_ns() - start;
}

static pool_t *tput_pool(const char *endpoint)
{
	pool_config_t *cfg = pool_config_new();
	pool_t *pool = NULL;
	pool_conn_t *conn;

	if (!cfg)
		return NULL;
	if (cfg_set(cfg, "teardown", "abort") == 0 &&
	    cfg_set(cfg, "max_idle", "1") == 0 &&
	    cfg_set(cfg, "max_uses", "0") == 0 &&
	    pool_create(&pool, cfg) != 0)
		pool = NULL;
	pool_config_free(cfg);
	/* connected before the clock starts, as the raw socket is */
	if (pool && pool_get(pool, endpoint, &conn) == 0) {
		pool_put(pool, conn, POOL_REUSE);
	} else if (pool) {
		pool_destroy(pool);
		pool = NULL;
	}
	return pool;
}

/* Sum the chunks of both loops, leaving out the pairs where either was
 * an outlier; returns the pairs kept. */
static uint64_t chunk_sums(const struct tloop *l, uint64_t nchunks,
                           double sum[2])
{
	double med[2];
	uint64_t kept = 0;

	for (int k = 0; k < 2; k++) {
		double *tmp = malloc(nchunks * sizeof(*tmp));

		if (!tmp)
			return 0;
		for (uint64_t c = 0; c < nchunks; c++)
			tmp[c] = (double)l[k].chunk_ns[c];
		med[k] = median_d(tmp, nchunks);
		free(tmp);
		sum[k] = 0;
	}
	for (uint64_t c = 0; c < nchunks; c++) {
		if ((double)l[0].chunk_ns[c] > TPUT_OUTLIER * med[0] ||
		    (double)l[1].chunk_ns[c] > TPUT_OUTLIER * med[1])
			continue;
		for (int k = 0; k < 2; k++)
			sum[k] += (double)l[k].chunk_ns[c];
		kept++;
	}
	return kept;
}

/* One repetition of raw (l[0]) and pool (l[1]), nchunks chunks each,
 * alternating: 0, or -1. */
static int raw_pool_rep(const char *endpoint, uint64_t nchunks,
                        struct tloop *l, double rps[2], uint64_t *dropped)
{
	int fd = raw_connect(endpoint);
	pool_t *pool = tput_pool(endpoint);
	struct linger lg = { 1, 0 };
	uint64_t kept = 0;
	double sum[2];
	int rc = fd >= 0 && pool ? 0 : -1;

	for (uint64_t c = 0; c < nchunks && rc == 0; c++) {
		/* each goes first every other chunk */
		for (int i = 0; i < 2 && rc == 0; i++) {
			int k = (int)((c + (uint64_t)i) % 2);

			l[k].chunk_ns[c] = run_chunk(&l[k], fd, k ? pool : NULL,
			                             endpoint, TPUT_CHUNK);
			rc = l[k].chunk_ns[c] ? 0 : -1;
		}
	}
	if (rc == 0)
		kept = chunk_sums(l, nchunks, sum);
	if (kept == 0)
		rc = -1;
	for (int k = 0; k < 2 && rc == 0; k++)
		rps[k] = (double)(kept * TPUT_CHUNK) * 1e9 / sum[k];
	*dropped += nchunks - kept;
	if (fd >= 0) {
		/* abortive close: the raw loop leaves no TIME_WAIT behind */
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
	}
	pool_destroy(pool);
	if (rc != 0)
		fprintf(stderr, "tcpool-bench: throughput: raw or pool loop to "
		        "%s failed\n", endpoint);
	return rc;
}

/* Connect per request through the pool: 0 or -1. */
static int cpr_once(const char *endpoint, uint64_t n, struct loop_result *r)
{
	pool_config_t *cfg = pool_config_new();
	int rc = -1;

	if (!cfg)
		return -1;
	if (cfg_set(cfg, "teardown", "close") == 0 &&
	    cfg_set(cfg, "max_idle", "0") == 0 &&
	    cfg_set(cfg, "max_uses", "0") == 0)
		rc = pool_loop(cfg, endpoint, proto_for(SRV_BUILTIN), 1, n,
		               false, r);
	pool_config_free(cfg);
	if (rc == 0 && r->errors + r->connect_errors > 0)
		rc = -1;
	return rc;
}

static int one_rep(const struct overhead_opts *o, const char *endpoint,
                   struct figures *f, int rep, uint64_t *dropped)
{
	uint64_t nchunks = (o->tput_reqs + TPUT_CHUNK - 1) / TPUT_CHUNK;
	uint64_t n = nchunks * TPUT_CHUNK;
	struct tloop l[2] = { { 0 } };
	struct loop_result r;
	double rps[2];
	int rc = -1;

	for (int k = 0; k < 2; k++) {
		l[k].lat = malloc(n * sizeof(*l[k].lat));
		l[k].chunk_ns = calloc(nchunks, sizeof(*l[k].chunk_ns));
		if (!l[k].lat || !l[k].chunk_ns)
			goto out;
	}
	/* connect-per-request first or last, alternately */
	if (rep % 2 && cpr_once(endpoint, o->cpr_reqs, &r) != 0)
		goto out;
	if (raw_pool_rep(endpoint, nchunks, l, rps, dropped) != 0)
		goto out;
	if (rep % 2 == 0 && cpr_once(endpoint, o->cpr_reqs, &r) != 0)
		goto out;
	if (r.seconds <= 0)
		goto out;
	for (int k = 0; k < 2; k++) {
		int t = k ? T_POOL : T_RAW;

		f[t].rps[rep] = rps[k];
		f[t].p50[rep] = (double)percentile_ns(l[k].lat, l[k].nlat, 50) / 1e3;
		f[t].p99[rep] = (double)percentile_ns(l[k].lat, l[k].nlat, 99) / 1e3;
	}
	f[T_CPR].rps[rep] = (double)r.ok / r.seconds;
	f[T_CPR].p50[rep] = r.p50_us;
	f[T_CPR].p99[rep] = r.p99_us;
	rc = 0;
out:
	for (int k = 0; k < 2; k++) {
		free(l[k].lat);
		free(l[k].chunk_ns);
	}
	return rc;
}

/* The median of the repetitions' a / b: each repetition's two figures
 * ran side by side, so their ratio is steadier than that of medians. */
static double ratio_median(const double *a, const double *b, int reps)
{
	double v[BENCH_MAX_REPS];

	for (int i = 0; i < reps; i++)
		v[i] = b[i] > 0 ? a[i] / b[i] : 0;
	return median_d(v, (size_t)reps);
}

static void tput_row(struct row *r, int t, const struct figures *f,
                     int reps, uint64_t requests)
{
	static const char *const names[T_COUNT] = {
		"throughput-raw", "throughput-pool", "throughput-cpr"
	};
	struct figures copy = f[t];

	memset(r, 0, sizeof(*r));
	r->client_tw = r->server_tw = -1;
	snprintf(r->scenario, sizeof(r->scenario), "%s", names[t]);
	snprintf(r->server, sizeof(r->server), "builtin");
	snprintf(r->policy, sizeof(r->policy), "%s",
	         t == T_RAW ? "-" : t == T_POOL ? "abort" : "close");
	r->pooled = t == T_POOL;
	r->threads = 1;
	r->requests = requests;
	r->nreps = reps;
	memcpy(r->reps, f[t].rps, sizeof(r->reps));
	r->req_per_s = median_d(copy.rps, (size_t)reps);
	r->p50_us = median_d(copy.p50, (size_t)reps);
	r->p99_us = median_d(copy.p99, (size_t)reps);
	r->ratio = ratio_median(f[t].rps, f[T_RAW].rps, reps);
}

int throughput_run(const struct overhead_opts *o, const char *endpoint,
                   struct row *rows, int cap)
{
	struct figures f[T_COUNT];
	uint64_t dropped = 0, chunks;
	uint64_t n = (o->tput_reqs + TPUT_CHUNK - 1) / TPUT_CHUNK * TPUT_CHUNK;

	if (cap < T_COUNT || o->tput_reps > BENCH_MAX_REPS)
		return -1;
	progress("throughput: raw socket and pool in alternating chunks of %d, "
	         "then connect-per-request, %d repetitions", TPUT_CHUNK,
	         o->tput_reps);
	for (int rep = 0; rep < o->tput_reps; rep++)
		if (one_rep(o, endpoint, f, rep, &dropped) != 0)
			return -1;
	chunks = n / TPUT_CHUNK * (uint64_t)o->tput_reps;
	for (int t = 0; t < T_COUNT; t++)
		tput_row(&rows[t], t, f, o->tput_reps,
		         t == T_CPR ? o->cpr_reqs : n);
	snprintf(rows[T_POOL].note, sizeof(rows[T_POOL].note),
	         "x raw; %.2fx connect-per-request; %llu of %llu chunk pairs "
	         "left out", ratio_median(f[T_POOL].rps, f[T_CPR].rps,
	                                  o->tput_reps),
	         (unsigned long long)dropped, (unsigned long long)chunks);
	snprintf(rows[T_RAW].note, sizeof(rows[T_RAW].note), "x raw");
	snprintf(rows[T_CPR].note, sizeof(rows[T_CPR].note), "x raw");
	return T_COUNT;
}
