/*
 * The result screen: what a user reads when the run ends. First what
 * the pool and each teardown policy did (TIME_WAIT on each side without
 * and with the pool, port exhaustion, bursts), then throughput, then the
 * project's performance targets under their own heading, then where the
 * files are and whether anything failed.
 *
 * A target is judged on every repetition, not on the median alone: the
 * repetitions are interleaved, so each gives its own ratio, and on a
 * shared machine those spread by more than the margin of some targets.
 * The verdict is "met" or "not met" when a ~95% interval of the median
 * ratio lies on one side of the target, "within noise" when it straddles
 * it: a verdict then does not flip between runs on noise, it says the
 * run could not tell.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

static const struct row *find(const struct row *rows, int n,
                              const char *scenario)
{
	for (int i = 0; i < n; i++)
		if (strcmp(rows[i].scenario, scenario) == 0)
			return &rows[i];
	return NULL;
}

static const struct row *find_run(const struct row *rows, int n,
                                  const char *scenario, const char *policy,
                                  int pooled)
{
	for (int i = 0; i < n; i++)
		if (strcmp(rows[i].scenario, scenario) == 0 &&
		    strcmp(rows[i].policy, policy) == 0 &&
		    rows[i].pooled == pooled)
			return &rows[i];
	return NULL;
}

/* ---- TIME_WAIT per policy ---- */

/* The smallest and largest count over the servers. */
struct span {
	long lo, hi;
	int n;
};

static void span_add(struct span *s, long v)
{
	if (s->n == 0 || v < s->lo)
		s->lo = v;
	if (s->n == 0 || v > s->hi)
		s->hi = v;
	s->n++;
}

static void span_str(const struct span *s, char *buf, size_t len)
{
	if (s->n == 0 || s->lo < 0)
		snprintf(buf, len, "-");
	else if (s->lo == s->hi)
		snprintf(buf, len, "%ld", s->lo);
	else
		snprintf(buf, len, "%ld-%ld", s->lo, s->hi);
}

/* "2000 / 0" over every server's one-thread run; *mixed when the
 * servers differ. */
static void tw_cell(const struct row *rows, int n, const char *policy,
                    int pooled, char *buf, size_t len, bool *mixed)
{
	struct span c = { 0 }, s = { 0 };
	char cs[24], ss[24];
	bool failed = false;

	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];

		if (strcmp(r->scenario, "req-1t") != 0 || r->pooled != pooled ||
		    strcmp(r->policy, policy) != 0)
			continue;
		span_add(&c, r->client_tw);
		span_add(&s, r->server_tw);
		failed |= r->failed;
	}
	span_str(&c, cs, sizeof(cs));
	span_str(&s, ss, sizeof(ss));
	snprintf(buf, len, "%s / %s%s", cs, ss, failed ? " FAILED" : "");
	*mixed |= c.lo != c.hi || s.lo != s.hi;
}

static void exhaust_cell(const struct row *r, char *buf, size_t len)
{
	if (!r)
		snprintf(buf, len, "not run (needs namespaces)");
	else if (r->failed)
		snprintf(buf, len, "FAILED");
	else if (r->connect_errors)
		snprintf(buf, len, "%llu of %llu failed: no free port",
		         (unsigned long long)r->connect_errors,
		         (unsigned long long)r->requests);
	else
		snprintf(buf, len, "all %llu served",
		         (unsigned long long)r->requests);
}

/* "builtin, memcached, redis, nginx": the servers the matrix ran. */
static void server_list(const struct row *rows, int n, char *buf,
                        size_t len)
{
	buf[0] = '\0';
	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];

		if (strcmp(r->scenario, "req-1t") != 0 || strstr(buf, r->server))
			continue;
		snprintf(buf + strlen(buf), len - strlen(buf), "%s%s",
		         buf[0] ? ", " : "", r->server);
	}
}

static void tw_pool_notes(const struct row *rows, int n, unsigned max_uses)
{
	const struct row *ex = find_run(rows, n, "exhaust", "close", 1);
	const struct row *any = find_run(rows, n, "req-1t", "close", 1);

	if (ex && !ex->failed)
		printf("  Under exhaustion, the pool (close): %llu of %llu served "
		       "over %llu connections.\n",
		       (unsigned long long)(ex->requests - ex->connect_errors),
		       (unsigned long long)ex->requests,
		       (unsigned long long)ex->connects);
	if (any)
		printf("  The pool retired a connection every %u uses "
		       "(--max-uses): TIME_WAIT follows\n  retirements, not "
		       "requests. Without the pool every request connects.\n",
		       max_uses);
}

/* The exhaust rows' sources dimension: one line. */
static void sources_summary(const struct row *rows, int n)
{
	bool any = false;

	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];

		if (strcmp(r->scenario, "exhaust-sources") != 0)
			continue;
		if (!any)
			printf("  Port exhaustion by source address (100 ports, close, "
			       "connect per request):\n   ");
		any = true;
		if (r->failed)
			printf(" %d: FAILED;", r->sources);
		else
			printf(" %d: %llu;", r->sources,
			       (unsigned long long)r->connects);
	}
	if (any)
		printf(" connections before the first EADDRNOTAVAIL.\n");
}

static void tw_summary(const struct row *rows, int n,
                       const struct run_info *ri)
{
	char servers[96], cell[2][64], ex[48], head[2][40];
	uint64_t req[2];
	bool mixed = false;

	server_list(rows, n, servers, sizeof(servers));
	if (!servers[0]) {
		if (ri->skipped && ri->skipped[0])
			printf("\nNo server ran; not installed: %s.\n", ri->skipped);
		return;
	}
	for (int pl = 0; pl < 2; pl++) {
		const struct row *r = find_run(rows, n, "req-1t", "close", pl);

		req[pl] = r ? r->requests : 0;
	}
	snprintf(head[0], sizeof(head[0]), "no pool, %llu req",
	         (unsigned long long)req[0]);
	snprintf(head[1], sizeof(head[1]), "pool, %llu req",
	         (unsigned long long)req[1]);
	printf("\nTIME_WAIT sockets left behind, client / server, 1 client "
	       "thread:\n");
	printf("  %-11s %-17s %-16s %s\n", "policy", head[0], head[1],
	       "port exhaustion, 100 ports");
	for (int p = 0; p < POL_COUNT; p++) {
		for (int pl = 0; pl < 2; pl++)
			tw_cell(rows, n, policy_name(p), pl, cell[pl],
			        sizeof(cell[pl]), &mixed);
		exhaust_cell(find_run(rows, n, "exhaust", policy_name(p), 0), ex,
		             sizeof(ex));
		printf("  %-11s %-17s %-16s %s\n", policy_name(p), cell[0],
		       cell[1], ex);
	}
	sources_summary(rows, n);
	printf("  Servers: %s%s.\n", servers, mixed ? "; a-b: they differ, "
	       "--verbose shows each" : strchr(servers, ',')
	       ? " (the same counts for each)" : "");
	if (ri->skipped && ri->skipped[0])
		printf("  Skipped, not installed: %s.\n", ri->skipped);
	tw_pool_notes(rows, n, ri->max_uses);
}

/* ---- bursts ---- */

static void burst_cell(const struct row *r, char *buf, size_t len)
{
	if (!r)
		snprintf(buf, len, "-");
	else if (r->failed)
		snprintf(buf, len, "FAILED");
	else
		snprintf(buf, len, "%llu; %ld / %ld",
		         (unsigned long long)r->connects, r->client_tw,
		         r->server_tw);
}

static const struct row *find_burst(const struct row *rows, int n,
                                    const char *policy, long shrink)
{
	for (int i = 0; i < n; i++)
		if (strcmp(rows[i].scenario, "burst") == 0 &&
		    strcmp(rows[i].policy, policy) == 0 &&
		    rows[i].idle_shrink_ms == shrink)
			return &rows[i];
	return NULL;
}

static void burst_summary(const struct row *rows, int n,
                          const struct run_info *ri)
{
	const struct row *first = find(rows, n, "burst");
	char cell[2][40], head[40];

	if (ri->burst_why && ri->burst_why[0]) {
		printf("\nBursts: skipped: %s.\n", ri->burst_why);
		return;
	}
	if (!first)
		return;
	printf("\nBursts: %llu of %d requests at once, %d ms apart, "
	       "max_idle %d.\nConnects; TIME_WAIT client / server:\n",
	       (unsigned long long)(first->requests / BURST_THREADS),
	       BURST_THREADS, ri->burst_gap_ms, BURST_MAX_IDLE);
	snprintf(head, sizeof(head), "idle_shrink_ms %d (default)",
	         BURST_SHRINK_DEFAULT);
	printf("  %-11s %-24s %s\n", "policy", "idle_shrink_ms 0", head);
	for (int p = 0; p < POL_COUNT; p++) {
		burst_cell(find_burst(rows, n, policy_name(p), 0), cell[0],
		           sizeof(cell[0]));
		burst_cell(find_burst(rows, n, policy_name(p),
		                      BURST_SHRINK_DEFAULT), cell[1],
		           sizeof(cell[1]));
		printf("  %-11s %-24s %s\n", policy_name(p), cell[0], cell[1]);
	}
}

/* ---- many requests in flight: one epoll thread against threads ---- */

static void async_cell(const struct row *r, char *buf, size_t len)
{
	if (!r)
		snprintf(buf, len, "-");
	else if (r->failed)
		snprintf(buf, len, "FAILED");
	else
		snprintf(buf, len, "%.0f req/s, p99 %.0f us", r->req_per_s,
		         r->p99_us);
}

static void async_summary(const struct row *rows, int n)
{
	static const int inflight[ASYNC_NVALUES] = ASYNC_INFLIGHT;
	char name[24], cell[2][40];

	if (!find(rows, n, "async-1"))
		return;
	printf("\nIn flight, built-in server: one thread with "
	       "pool_get_start/finish and epoll,\nagainst as many threads "
	       "with pool_get (one run each; p99 of get + request + put):\n");
	printf("  %-9s %-28s %s\n", "in flight", "1 thread, non-blocking",
	       "N threads, blocking");
	for (int i = 0; i < ASYNC_NVALUES; i++) {
		snprintf(name, sizeof(name), "async-%d", inflight[i]);
		async_cell(find(rows, n, name), cell[0], sizeof(cell[0]));
		snprintf(name, sizeof(name), "threads-%d", inflight[i]);
		async_cell(find(rows, n, name), cell[1], sizeof(cell[1]));
		printf("  %-9d %-28s %s\n", inflight[i], cell[0], cell[1]);
	}
}

/* ---- figures over repetitions ---- */

struct fig {
	double med, lo, hi;     /* median and its confidence interval */
	double q1, q3;          /* quartiles: the typical spread */
	double conf;            /* the interval's confidence */
	double noise;           /* spread of the loops compared, verdicts */
	int n;
};

/* The interval [v[k-1], v[n-k]] of n sorted samples holds the median
 * with probability 1 - 2 P(B <= k-1), B ~ Binomial(n, 1/2), whatever
 * the distribution. The largest k >= 1 with at least 93%: n = 5 gives
 * min-max (94%), 9 the 2nd to 8th (96%), 15 the 4th to 12th (96%). */
static int ci_rank(int n, double *conf)
{
	double scale = 1, choose = 1, below;
	int k = 1;

	for (int i = 0; i < n; i++)
		scale /= 2;                             /* 2^-n */
	below = scale;

	for (; k + 1 <= n / 2; k++) {
		choose = choose * (n - k + 1) / k;      /* C(n, k) */
		if (1 - 2 * (below + choose * scale) < 0.93)
			break;
		below += choose * scale;
	}
	*conf = 1 - 2 * below;
	return k;
}

static struct fig fig_of(const double *v, int n)
{
	double copy[BENCH_MAX_REPS];
	struct fig f = { .n = n };
	int k;

	if (n <= 0)
		return f;
	memcpy(copy, v, (size_t)n * sizeof(*v));
	f.med = median_d(copy, (size_t)n);  /* sorts copy */
	k = ci_rank(n, &f.conf);
	f.lo = copy[k - 1];
	f.hi = copy[n - k];
	f.q1 = copy[n / 4];
	f.q3 = copy[(3 * n) / 4 - (n % 4 == 0)];
	return f;
}

/* Each repetition's a / b; a figure with n = 0 when either is missing.
 * The repetitions are interleaved, so a and b of one repetition ran
 * close together and share most of the machine's drift. */
static struct fig ratio_fig(const struct row *a, const struct row *b)
{
	double v[BENCH_MAX_REPS];
	int n = a && b && a->nreps == b->nreps ? a->nreps : 0;

	for (int i = 0; i < n; i++)
		v[i] = b->reps[i] > 0 ? a->reps[i] / b->reps[i] : 0;
	return fig_of(v, n);
}

/* The middle half of a row's repetitions, as a share of their median:
 * how much the same loop varied; -1 when it has none. */
static double spread(const struct row *r)
{
	struct fig f = fig_of(r ? r->reps : NULL, r ? r->nreps : 0);

	return f.n > 2 && f.med > 0 ? (f.q3 - f.q1) / f.med : -1;
}

/* ---- throughput ---- */

static void tput_line(const char *what, const struct row *r, const char *tail)
{
	struct fig f = fig_of(r->reps, r->nreps);

	printf("  %-30s %6.0f req/s [%.0f-%.0f]%s\n", what, f.med, f.lo, f.hi,
	       tail);
}

static void tput_summary(const struct row *rows, int n,
                         const struct run_info *ri)
{
	const struct row *raw = find(rows, n, "throughput-raw");
	const struct row *pool = find(rows, n, "throughput-pool");
	const struct row *cpr = find(rows, n, "throughput-cpr");
	struct fig pc = ratio_fig(pool, cpr);
	char tail[48] = "";

	if (!raw || !pool || !cpr) {
		printf("\nThroughput: not measured%s.\n", ri->overhead
		       ? " (the throughput runs failed, see above)"
		       : " (--no-overhead)");
		return;
	}
	printf("\nThroughput, 1 thread, built-in server: median [interval] of "
	       "%d repetitions\n", raw->nreps);
	tput_line("no pool (connect per request)", cpr, "");
	if (pc.n > 0)
		snprintf(tail, sizeof(tail), "  %.2fx without", pc.med);
	tput_line("with the pool", pool, tail);
	tput_line("raw socket (the ceiling)", raw, "");
}

/* ---- targets ---- */

/* The larger spread of two rows' repetitions, 0 when neither has one. */
static double noise_of(const struct row *a, const struct row *b)
{
	double x = spread(a), y = spread(b);

	return x > y ? x : y > 0 ? y : 0;
}

/* met when the median's interval clears the target by the run's noise
 * (the spread of the loops compared), not met when it misses it by as
 * much: a machine's load moves the figures between runs by about that,
 * which an interval from one run cannot see. */
static const char *verdict(struct fig f, double target, bool at_least)
{
	double up = target * (1 + f.noise), down = target / (1 + f.noise);

	if (f.n == 0)
		return "not measured";
	if (at_least ? f.lo >= up : f.hi <= down)
		return "met";
	if (at_least ? f.hi < down : f.lo > up)
		return "not met";
	return "within noise";
}

#define TARGET_FMT "  %-38s %-18s %s%-5.2f %s\n"

static void target_line(const char *what, struct fig f, bool at_least,
                        double target)
{
	char figs[40] = "-";

	if (f.n > 0)
		snprintf(figs, sizeof(figs), "%.2f [%.2f-%.2f]", f.med, f.lo, f.hi);
	printf(TARGET_FMT, what, figs, at_least ? ">=" : "<=", target,
	       verdict(f, target, at_least));
}

/* Per repetition: the pool's 2-thread over 1-thread cost per pair, over
 * the same for two threads on private mutexes, the machine's own
 * slowdown (two vCPUs sharing a core slow every thread down). */
static struct fig slowdown_fig(const struct row *rows, int n)
{
	struct fig none = { 0 }, f;
	const struct row *one = find(rows, n, "overhead-1t-1ep");
	const struct row *two = find(rows, n, "overhead-2t-2ep");
	const struct row *m1 = find(rows, n, "overhead-mutex-1t");
	const struct row *m2 = find(rows, n, "overhead-mutex-2t");
	double v[BENCH_MAX_REPS], a, b;
	int k = 0;

	if (!one || !two || !m1 || !m2)
		return none;
	for (int i = 0; i < one->nreps && i < m1->nreps; i++) {
		double p = two->reps[i] / one->reps[i];
		double m = m2->reps[i] / m1->reps[i];

		if (m > 0)
			v[k++] = p / m;
	}
	f = fig_of(v, k);
	a = noise_of(one, two);
	b = noise_of(m1, m2);
	f.noise = a > b ? a : b;
	return f;
}

/* No pool beats a raw persistent socket: raw / connect-per-request is
 * the most the second target's ratio can reach on this path. */
static void ceiling_line(const struct row *rows, int n, struct fig pc)
{
	struct fig ceil = ratio_fig(find(rows, n, "throughput-raw"),
	                            find(rows, n, "throughput-cpr"));
	char figs[40];

	if (ceil.n == 0 || pc.n == 0)
		return;
	snprintf(figs, sizeof(figs), "%.2f [%.2f-%.2f]", ceil.med, ceil.lo,
	         ceil.hi);
	printf("  %-38s %-18s (no pool beats it)\n",
	       "  ceiling: raw / connect-per-request", figs);
}

/* What the 2-thread target divides: on a shared machine the second is
 * 1.00 with two free CPUs and 2 or more while another program holds one,
 * and the verdict is only as good as that moment. */
static void slowdown_context(const struct row *rows, int n)
{
	struct fig pool = ratio_fig(find(rows, n, "overhead-2t-2ep"),
	                            find(rows, n, "overhead-1t-1ep"));
	struct fig mach = ratio_fig(find(rows, n, "overhead-mutex-2t"),
	                            find(rows, n, "overhead-mutex-1t"));
	char figs[2][40];

	if (pool.n == 0 || mach.n == 0)
		return;
	snprintf(figs[0], sizeof(figs[0]), "%.2f [%.2f-%.2f]", pool.med,
	         pool.lo, pool.hi);
	snprintf(figs[1], sizeof(figs[1]), "%.2f [%.2f-%.2f]", mach.med,
	         mach.lo, mach.hi);
	printf("  %-38s %s\n", "    the pool's, 2 threads / 1", figs[0]);
	printf("  %-38s %-18s (1.00: 2 free CPUs)\n",
	       "    the machine's, 2 mutexes / 1", figs[1]);
}

static const char *noise_word(double worst)
{
	if (worst < 0.05)
		return "a quiet run";
	if (worst < 0.20)
		return "a noisy run";
	return "a very noisy run";
}

static double max3(double a, double b, double c)
{
	double m = a > b ? a : b;

	return m > c ? m : c;
}

/* How the verdicts were reached, and how noisy the run was. */
static void targets_notes(struct fig tput, struct fig pair, struct fig two)
{
	double load = -1;
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (fscanf(f, "%lf", &load) != 1)
			load = -1;
		fclose(f);
	}
	printf("  [interval]: holds the median with %.0f%% confidence "
	       "(throughput: %.0f%%).\n", two.conf * 100, tput.conf * 100);
	/* the middle half of the repetitions, so that one preempted
	 * repetition does not make a quiet run look noisy */
	printf("  Noise: the loops compared varied by %.0f%% (throughput), "
	       "%.0f%% (pair), %.0f%%\n  (2 threads) between repetitions, "
	       "load average %.1f on %ld CPUs:\n  %s.\n", tput.noise * 100,
	       pair.noise * 100, two.noise * 100, load,
	       sysconf(_SC_NPROCESSORS_ONLN),
	       noise_word(max3(tput.noise, pair.noise, two.noise)));
	printf("  met / not met: the interval clears the target by that "
	       "noise; within noise:\n  it does not, and this run cannot "
	       "tell.\n");
}

static void targets_summary(const struct row *rows, int n,
                            const struct run_info *ri)
{
	const struct row *pool = find(rows, n, "throughput-pool");
	const struct row *raw = find(rows, n, "throughput-raw");
	const struct row *cpr = find(rows, n, "throughput-cpr");
	const struct row *one = find(rows, n, "overhead-1t-1ep");
	const struct row *lm1 = find(rows, n, "overhead-libmemcached-1t");
	struct fig pr = ratio_fig(pool, raw), pc = ratio_fig(pool, cpr);
	struct fig lm = ratio_fig(one, lm1);  /* cost per pair, pool's first */
	struct fig sd = slowdown_fig(rows, n);

	if (!ri->overhead) {
		printf("\nPerformance targets: not measured (--no-overhead).\n");
		return;
	}
	pr.noise = noise_of(pool, raw);
	pc.noise = noise_of(pool, cpr);
	lm.noise = noise_of(one, lm1);
	printf("\nPerformance targets (the project's own yardstick):\n");
	printf("  %-38s %-18s %-7s %s\n", "", "median [interval]", "target",
	       "verdict");
	target_line("pool throughput / raw socket", pr, true, 0.95);
	target_line("pool throughput / connect-per-request", pc, true, 2.5);
	ceiling_line(rows, n, pc);
	target_line("1-thread get+put / libmemcached's pair", lm, false, 1.0);
	target_line("2-thread slowdown / the machine's own", sd, false, 1.1);
	slowdown_context(rows, n);
	report_missing_refs(stdout, rows, n);
	targets_notes(pr, lm, sd);
}

int report_missing_refs(FILE *f, const struct row *rows, int n)
{
	int missing = 0;

	if (!find(rows, n, "overhead-libmemcached-1t")) {
		fprintf(f, "  reference not measured: libmemcached's pool\n    (%s)\n",
		        libmc_available() ? "its runs failed, see above"
		        : "built without libmemcachedutil: install "
		          "libmemcached-dev, re-run configure");
		missing++;
	}
	if (!find(rows, n, "throughput-raw")) {
		fprintf(f, "  reference not measured: the raw-socket ceiling (the "
		        "throughput runs failed, see above)\n");
		missing++;
	}
	return missing;
}

/* ---- the run ---- */

static void failures(const struct row *rows, int n)
{
	int bad = 0;

	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];

		if (!r->failed)
			continue;
		if (bad++ == 0)
			printf("\nFAILED runs:\n");
		printf("  %s %s %s%s: %s\n", r->scenario, r->server, r->policy,
		       r->pooled ? " pooled" : "", r->note[0] ? r->note : "error");
	}
}

static void network_line(const struct netenv *e)
{
	if (e->isolated)
		printf("Network: two namespaces joined by veth, tcp_tw_reuse=0 "
		       "(as a real network).\n");
	else
		printf("Network: LOOPBACK, where tcp_tw_reuse=2 hides port "
		       "exhaustion (as root and\nwithout --loopback the bench "
		       "uses network namespaces).\n");
}

static void files(const struct run_info *ri)
{
	printf("\nResults:\n");
	if (ri->csv)
		printf("  every run, one CSV row each:  %s\n", ri->csv);
	else
		printf("  every run, one CSV row each:  not written (--csv FILE)\n");
	if (ri->plot)
		printf("  plot:                         %s\n", ri->plot);
	else if (ri->plot_why)
		printf("  plot:                         not drawn: %s\n",
		       ri->plot_why);
	printf("  the columns:                  doc/tcpool-bench.1 "
	       "(--verbose prints every run)\n");
}

void report_summary(const struct row *rows, int n, const struct run_info *ri)
{
	int bad = 0;

	for (int i = 0; i < n; i++)
		bad += rows[i].failed;
	printf("\n==== tcpool-bench: summary ====\n");
	network_line(ri->env);
	tw_summary(rows, n, ri);
	burst_summary(rows, n, ri);
	async_summary(rows, n);
	tput_summary(rows, n, ri);
	targets_summary(rows, n, ri);
	failures(rows, n);
	files(ri);
	if (bad)
		printf("\nDone in %.0f s: %d rows, %d FAILED (listed above).\n",
		       ri->seconds, n, bad);
	else
		printf("\nDone in %.0f s: %d rows, none failed.\n", ri->seconds, n);
	fflush(stdout);
}
