/*
 * Request throughput, one thread, against the built-in server: the same
 * request loop over a raw persistent socket (the ceiling), through the
 * pool (POOL_REUSE, default validation), and connect-per-request through
 * the pool (max_idle = 0, teardown close: what users do without a pool).
 * Repetitions are interleaved; medians are reported with ratios to raw.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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

/* A connected non-blocking socket to "a.b.c.d:port", or -1. */
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
	/* as the pool's sockets: a fair ceiling, not a Nagle-delayed one */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (rc != 0 || fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The raw loop, timed like pool_loop's: 0 or -1. */
static int raw_once(const char *endpoint, uint64_t n, struct loop_result *r)
{
	const struct proto *p = proto_for(SRV_BUILTIN);
	struct linger lg = { 1, 0 };
	uint64_t *lat = malloc(n * sizeof(*lat)), t_start;
	int fd = raw_connect(endpoint), rc = 0;

	memset(r, 0, sizeof(*r));
	if (fd < 0 || !lat) {
		rc = -1;
		goto out;
	}
	t_start = bench_now_ns();
	for (uint64_t i = 0; i < n && rc == 0; i++) {
		uint64_t t0 = bench_now_ns();

		rc = proto_roundtrip(fd, p, 5000);
		lat[i] = bench_now_ns() - t0;
		r->ok += rc == 0;
	}
	r->seconds = (double)(bench_now_ns() - t_start) / 1e9;
	r->p50_us = (double)percentile_ns(lat, r->ok, 50) / 1e3;
	r->p99_us = (double)percentile_ns(lat, r->ok, 99) / 1e3;
	/* abortive close: the raw loop leaves no TIME_WAIT behind */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
out:
	if (fd >= 0)
		close(fd);
	free(lat);
	if (rc != 0)
		fprintf(stderr, "tcpool-bench: raw socket to %s failed\n",
		        endpoint);
	return rc;
}

static int pool_once(const char *endpoint, uint64_t n, bool pooled,
                     struct loop_result *r)
{
	pool_config_t *cfg = pool_config_new();
	int rc = -1;

	if (!cfg)
		return -1;
	if (cfg_set(cfg, "teardown", pooled ? "abort" : "close") == 0 &&
	    cfg_set(cfg, "max_idle", pooled ? "1" : "0") == 0 &&
	    cfg_set(cfg, "max_uses", "0") == 0)
		rc = pool_loop(cfg, endpoint, proto_for(SRV_BUILTIN), 1, n,
		               pooled, r);
	pool_config_free(cfg);
	if (rc == 0 && r->errors + r->connect_errors > 0)
		rc = -1;
	return rc;
}

static int one_rep(const struct overhead_opts *o, const char *endpoint,
                   struct figures *f, int rep)
{
	for (int i = 0; i < T_COUNT; i++) {
		/* rotate the order so no variant always runs first */
		int t = (i + rep) % T_COUNT, rc;
		struct loop_result r;

		if (t == T_RAW)
			rc = raw_once(endpoint, o->tput_reqs, &r);
		else
			rc = pool_once(endpoint,
			               t == T_CPR ? o->cpr_reqs : o->tput_reqs,
			               t == T_POOL, &r);
		if (rc != 0 || r.seconds <= 0)
			return -1;
		f[t].rps[rep] = (double)r.ok / r.seconds;
		f[t].p50[rep] = r.p50_us;
		f[t].p99[rep] = r.p99_us;
	}
	return 0;
}

static void tput_row(struct row *r, int t, const struct figures *f,
                     int reps, uint64_t requests, double raw_rps,
                     double cpr_rps)
{
	static const char *const names[T_COUNT] = {
		"throughput-raw", "throughput-pool", "throughput-cpr"
	};
	struct figures copy = *f;

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
	memcpy(r->reps, f->rps, sizeof(r->reps));
	r->req_per_s = median_d(copy.rps, (size_t)reps);
	r->p50_us = median_d(copy.p50, (size_t)reps);
	r->p99_us = median_d(copy.p99, (size_t)reps);
	r->ratio = raw_rps > 0 ? r->req_per_s / raw_rps : 0;
	if (t == T_POOL && cpr_rps > 0)
		snprintf(r->note, sizeof(r->note),
		         "x raw; %.2fx connect-per-request", r->req_per_s / cpr_rps);
	else
		snprintf(r->note, sizeof(r->note), "x raw");
}

int throughput_run(const struct overhead_opts *o, const char *endpoint,
                   struct row *rows, int cap)
{
	struct figures f[T_COUNT];
	double raw, cpr;

	if (cap < T_COUNT || o->tput_reps > BENCH_MAX_REPS)
		return -1;
	progress("throughput: raw socket / pool / connect-per-request, %d "
	         "repetitions", o->tput_reps);
	for (int rep = 0; rep < o->tput_reps; rep++)
		if (one_rep(o, endpoint, f, rep) != 0)
			return -1;
	raw = median_d(f[T_RAW].rps, (size_t)o->tput_reps);
	cpr = median_d(f[T_CPR].rps, (size_t)o->tput_reps);
	for (int t = 0; t < T_COUNT; t++)
		tput_row(&rows[t], t, &f[t], o->tput_reps,
		         t == T_CPR ? o->cpr_reqs : o->tput_reqs, raw, cpr);
	return T_COUNT;
}
