/*
 * tcpool-bench: what pooling and each teardown policy cost, in TIME_WAIT
 * sockets on each side, throughput and latency, measured on this machine.
 * See tcpool-bench(1) and doc/teardown.md.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define MAX_ROWS 160
#define EXHAUST_REQUESTS 300
/* shorter than idle_shrink_ms's default, so that its runs keep the
 * surplus between bursts */
#define BURST_GAP_MS 100

struct opts {
	bool quick, loopback, overhead, verbose, require_refs;
	bool servers[SRV_COUNT];
	uint64_t requests;      /* 0: the defaults below */
	int threads;
	unsigned max_uses;
	const char *csv, *plot;
};

static struct netenv env;
static struct row rows[MAX_ROWS];
static int nrows;
static char skipped[64];       /* servers whose program is missing */

static void usage(FILE *f)
{
	fprintf(f,
	"usage: tcpool-bench [options]\n"
	"  --quick            every policy, with and without the pool, against\n"
	"                     the built-in server only, with fewer requests\n"
	"  --servers LIST     comma-separated: builtin,memcached,redis,nginx\n"
	"                     (default: all of them)\n"
	"  --requests N       requests per scenario (default 2000 without the\n"
	"                     pool, 20000 with it; --quick 500 / 5000)\n"
	"  --threads N        client threads of the multi-threaded runs (4)\n"
	"  --max-uses N       pooled runs retire a connection after N uses (100)\n"
	"  --loopback         measure on loopback even as root\n"
	"  --no-overhead      skip the pool overhead and throughput runs\n"
	"  --require-references  exit 1 when a reference (libmemcached's\n"
	"                     pool, the raw-socket ceiling) is not measured\n"
	"  --verbose          print every run as a table before the summary\n"
	"  --csv FILE         write one CSV row per scenario\n"
	"  --plot FILE.png    draw TIME_WAIT and throughput with gnuplot\n"
	"  --help             this text\n");
}

static int parse_servers(struct opts *o, const char *list)
{
	char buf[128], *save = NULL, *tok;

	memset(o->servers, 0, sizeof(o->servers));
	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		int k;

		for (k = 0; k < SRV_COUNT; k++)
			if (strcmp(tok, server_name(k)) == 0)
				break;
		if (k == SRV_COUNT) {
			fprintf(stderr, "tcpool-bench: unknown server '%s'\n", tok);
			return -1;
		}
		o->servers[k] = true;
	}
	return 0;
}

static int parse_num(const char *s, long min, long max, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	if (errno || end == s || *end || *out < min || *out > max) {
		fprintf(stderr, "tcpool-bench: not a number in [%ld, %ld]: '%s'\n",
		        min, max, s);
		return -1;
	}
	return 0;
}

static int parse_opt(struct opts *o, int c, const char *arg)
{
	long v;

	switch (c) {
	case 'q': o->quick = true; return 0;
	case 'l': o->loopback = true; return 0;
	case 'O': o->overhead = false; return 0;
	case 'v': o->verbose = true; return 0;
	case 'R': o->require_refs = true; return 0;
	case 'c': o->csv = arg; return 0;
	case 'p': o->plot = arg; return 0;
	case 's': return parse_servers(o, arg);
	case 'r':
		if (parse_num(arg, 1, 10000000, &v) != 0)
			return -1;
		o->requests = (uint64_t)v;
		return 0;
	case 't':
		if (parse_num(arg, 1, 64, &v) != 0)
			return -1;
		o->threads = (int)v;
		return 0;
	case 'u':
		if (parse_num(arg, 0, 1000000, &v) != 0)
			return -1;
		o->max_uses = (unsigned)v;
		return 0;
	default:
		return -1;
	}
}

/* 0 to run, 1 after --help, 2 on a bad option. */
static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longs[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "servers", required_argument, NULL, 's' },
		{ "requests", required_argument, NULL, 'r' },
		{ "threads", required_argument, NULL, 't' },
		{ "max-uses", required_argument, NULL, 'u' },
		{ "loopback", no_argument, NULL, 'l' },
		{ "no-overhead", no_argument, NULL, 'O' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "require-references", no_argument, NULL, 'R' },
		{ "csv", required_argument, NULL, 'c' },
		{ "plot", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	bool servers_given = false;
	int c;

	*o = (struct opts){ .overhead = true, .threads = 4, .max_uses = 100 };
	for (int k = 0; k < SRV_COUNT; k++)
		o->servers[k] = true;
	while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return 1;
		}
		servers_given |= c == 's';
		if (parse_opt(o, c, optarg) != 0) {
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tcpool-bench: unexpected argument '%s'\n",
		        argv[optind]);
		usage(stderr);
		return 2;
	}
	if (o->quick && !servers_given)
		parse_servers(o, "builtin");
	if (o->require_refs && !o->overhead) {
		fprintf(stderr, "tcpool-bench: --require-references needs the "
		        "overhead runs: drop --no-overhead\n");
		return 2;
	}
	return 0;
}

/* SIGINT/SIGTERM: remove servers and namespaces, then leave. */
static void *signal_main(void *arg)
{
	sigset_t *set = arg;
	int sig = 0;

	sigwait(set, &sig);
	fprintf(stderr, "\ntcpool-bench: %s: cleaning up\n", strsignal(sig));
	servers_kill_all();
	netenv_teardown(&env);
	_exit(128 + sig);
	return NULL;
}

static int start_signal_thread(void)
{
	static sigset_t set;
	pthread_t t;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	/* blocked before any other thread exists, so all inherit it */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	return pthread_create(&t, NULL, signal_main, &set) == 0 ? 0 : -1;
}

static bool any_failed;

static void run_one(const struct scenario *sc, int idx, int total)
{
	struct row *r = &rows[nrows];

	progress("[%d/%d] %s %s %s%s, %d thread%s, %llu requests", idx, total,
	         sc->name, server_name(sc->kind), policy_name(sc->policy),
	         sc->pooled ? " pooled" : "", sc->threads,
	         sc->threads > 1 ? "s" : "", (unsigned long long)sc->requests);
	if (scenario_run(sc, &env, r) != 0) {
		snprintf(r->scenario, sizeof(r->scenario), "%s", sc->name);
		snprintf(r->server, sizeof(r->server), "%s",
		         server_name(sc->kind));
		snprintf(r->policy, sizeof(r->policy), "%s",
		         policy_name(sc->policy));
		r->pooled = sc->pooled;
		r->threads = sc->threads;
		r->failed = true;
		snprintf(r->note, sizeof(r->note), "could not run");
	}
	progress("    %.0f req/s, p99 %.0f us, connects %llu, errors %llu, "
	         "TIME_WAIT client %ld server %ld%s", r->req_per_s, r->p99_us,
	         (unsigned long long)r->connects,
	         (unsigned long long)r->connect_errors, r->client_tw,
	         r->server_tw, r->failed ? "  FAILED" : "");
	any_failed |= r->failed;
	nrows++;
}

/* The scenario matrix: server x threads x policy x pooled, then the
 * port exhaustion runs. Returns how many were put in plan. */
static int build_plan(const struct opts *o, struct scenario *plan, int cap)
{
	int thr[2] = { 1, o->threads }, n = 0;
	uint64_t unpooled = o->requests ? o->requests : o->quick ? 500 : 2000;
	uint64_t pooled = o->requests ? o->requests : o->quick ? 5000 : 20000;

	for (int k = 0; k < SRV_COUNT; k++) {
		if (!o->servers[k])
			continue;
		if (!server_available(k)) {
			progress("skipping %s: %s is not installed",
			         server_name(k), server_program(k));
			/* for the summary, which names what did not run */
			snprintf(skipped + strlen(skipped),
			         sizeof(skipped) - strlen(skipped), "%s%s",
			         skipped[0] ? ", " : "", server_name(k));
			continue;
		}
		for (int t = 0; t < (o->threads > 1 ? 2 : 1); t++)
			for (int p = 0; p < POL_COUNT; p++)
				for (int pl = 0; pl < 2 && n < cap; pl++)
					plan[n++] = (struct scenario){
						.name = thr[t] == 1 ? "req-1t" : "req-mt",
						.kind = k, .policy = p, .pooled = pl,
						.threads = thr[t],
						.requests = pl ? pooled : unpooled,
						.max_uses = o->max_uses };
	}
	return n;
}

static int build_exhaust(struct scenario *plan, int cap)
{
	int n = 0;

	if (!env.isolated) {
		progress("port exhaustion runs need namespaces (root, no "
		         "--loopback): skipped");
		return 0;
	}
	for (int p = 0; p <= POL_COUNT && n < cap; p++)
		plan[n++] = (struct scenario){
			.name = "exhaust", .kind = SRV_BUILTIN,
			.policy = p < POL_COUNT ? p : POL_CLOSE,
			.pooled = p == POL_COUNT, .threads = 1,
			.requests = EXHAUST_REQUESTS, .exhaust = true,
			.max_uses = 100 };
	return n;
}

static void run_overhead(const struct opts *o)
{
	struct overhead_opts oo = {
		/* many short repetitions rather than a few long ones: the
		 * targets are judged on an interval of the median, which
		 * narrows with repetitions, not with their length */
		.reps = o->quick ? 9 : 15,
		.pair_ops = o->quick ? 150000 : 500000,
		.tput_reps = o->quick ? 7 : 9,
		.tput_reqs = o->quick ? 1500 : 10000,
		.cpr_reqs = o->quick ? 300 : 1000,
	};
	bool failed = false;
	int n = overhead_run(&oo, &env, rows + nrows, MAX_ROWS - nrows,
	                     &failed);

	if (n < 0 || failed) {
		fprintf(stderr, "tcpool-bench: overhead runs failed\n");
		any_failed = true;
	}
	if (n > 0)
		nrows += n;
}

/* Port exhaustion by source address, against the built-in server. */
static void run_sources(void)
{
	int n = sources_run(&env, rows + nrows, MAX_ROWS - nrows);

	if (n < 0) {
		fprintf(stderr, "tcpool-bench: exhaust-sources runs failed\n");
		any_failed = true;
		return;
	}
	for (int i = 0; i < n; i++)
		any_failed |= rows[nrows + i].failed;
	nrows += n;
}

/* The bursts run against the built-in server; --quick makes fewer. */
static const char *run_bursts(const struct opts *o)
{
	struct burst_opts bo = { .bursts = o->quick ? 5 : 10,
	                         .gap_ms = BURST_GAP_MS };
	int n;

	if (!o->servers[SRV_BUILTIN])
		return NULL;
	n = burst_run(&bo, &env, rows + nrows, MAX_ROWS - nrows);
	if (n < 0) {
		fprintf(stderr, "tcpool-bench: burst runs failed\n");
		any_failed = true;
		return NULL;
	}
	for (int i = 0; i < n; i++)
		any_failed |= rows[nrows + i].failed;
	nrows += n;
	if (n == 0 && burst_skipped()[0]) {
		progress("burst: skipped: %s", burst_skipped());
		return burst_skipped();
	}
	return NULL;
}

/* One thread with N requests in flight against N threads, on the
 * built-in server; --quick makes fewer requests. */
static void run_async(const struct opts *o)
{
	struct async_opts ao = {
		.requests = o->requests ? o->requests : o->quick ? 5000 : 50000,
		.max_uses = o->max_uses };
	int n;

	if (!o->servers[SRV_BUILTIN])
		return;
	n = async_run(&ao, &env, rows + nrows, MAX_ROWS - nrows);
	for (int i = 0; i < n; i++)
		any_failed |= rows[nrows + i].failed;
	nrows += n;
}

static void setup_network(const struct opts *o)
{
	bool isolated = !o->loopback && geteuid() == 0;

	if (!o->loopback && !isolated)
		progress("not root: measuring on loopback");
	if (isolated)
		netenv_clean_stale();
	if (netenv_setup(&env, isolated) != 0) {
		progress("cannot build the network namespaces: measuring on "
		         "loopback instead");
		netenv_setup(&env, false);
	}
	if (!env.isolated)
		progress("LOOPBACK: tcp_tw_reuse=2 recycles loopback TIME_WAIT "
		         "for connect(), which hides port exhaustion");
}

static void run_all(const struct opts *o, struct run_info *ri)
{
	static struct scenario plan[MAX_ROWS];
	int n = build_plan(o, plan, MAX_ROWS);

	n += build_exhaust(plan + n, MAX_ROWS - n);
	for (int i = 0; i < n; i++)
		run_one(&plan[i], i + 1, n);
	if (o->servers[SRV_BUILTIN])
		run_sources();
	ri->burst_why = run_bursts(o);
	run_async(o);
	if (o->overhead)
		run_overhead(o);
}

/* The files for the summary, by absolute path: the user may have run
 * the bench from anywhere (make bench runs it in the build tree). */
static void write_files(const struct opts *o, struct run_info *ri)
{
	static char csv[PATH_MAX], png[PATH_MAX];
	int rc;

	if (o->csv && report_csv(o->csv, rows, nrows, &env) == 0)
		ri->csv = realpath(o->csv, csv) ? csv : o->csv;
	else if (o->csv)
		any_failed = true;
	if (!o->plot)
		return;
	rc = report_plot(o->plot, rows, nrows);
	if (rc == 0)
		ri->plot = realpath(o->plot, png) ? png : o->plot;
	else if (rc == 1)
		ri->plot_why = "gnuplot is not installed (Debian: gnuplot-nox)";
	else
		ri->plot_why = "gnuplot failed, see above";
	any_failed |= rc < 0;
}

/* --require-references: a comparison the run was told to make must not
 * vanish from it. 0 when every reference was measured. */
static int check_references(void)
{
	fprintf(stderr, "tcpool-bench: --require-references:\n");
	if (report_missing_refs(stderr, rows, nrows) == 0) {
		fprintf(stderr, "  every reference was measured\n");
		return 0;
	}
	return -1;
}

int main(int argc, char **argv)
{
	uint64_t t0 = bench_now_ns();
	struct run_info ri = { .env = &env, .burst_gap_ms = BURST_GAP_MS };
	struct opts o;
	int rc = parse_args(argc, argv, &o);

	if (rc != 0)
		return rc == 1 ? 0 : 2;
	if (o.require_refs && !libmc_available()) {
		fprintf(stderr, "tcpool-bench: --require-references: "
		        "libmemcached's pool cannot be measured: built without "
		        "libmemcachedutil (install libmemcached-dev, re-run "
		        "configure)\n");
		return 1;
	}
	if (start_signal_thread() != 0) {
		fprintf(stderr, "tcpool-bench: cannot start the signal thread\n");
		return 1;
	}
	ri.skipped = skipped;
	ri.overhead = o.overhead;
	ri.max_uses = o.max_uses;
	setup_network(&o);
	run_all(&o, &ri);
	write_files(&o, &ri);
	netenv_teardown(&env);
	if (o.verbose)
		report_table(rows, nrows);
	ri.seconds = (double)(bench_now_ns() - t0) / 1e9;
	report_summary(rows, nrows, &ri);
	if (o.require_refs && check_references() != 0)
		any_failed = true;
	if (any_failed)
		fprintf(stderr, "tcpool-bench: some runs failed (see FAILED "
		        "above)\n");
	return any_failed ? 1 : 0;
}
