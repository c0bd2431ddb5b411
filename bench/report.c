/*
 * Every row for people (--verbose: aligned tables, each with a legend)
 * and for programs (CSV with the SPEC's columns first). The summary a
 * user reads at the end is summary.c's.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

static bool is_overhead(const struct row *r)
{
	return strncmp(r->scenario, "overhead-", 9) == 0;
}

static bool is_tput(const struct row *r)
{
	return strncmp(r->scenario, "throughput-", 11) == 0;
}

static const char tw_legend[] =
	"  scenario  req-1t, req-mt: 1 or --threads client threads; exhaust: "
	"a 100-port range;\n"
	"            burst: 64 requests at once, max_idle 4 (note: "
	"idle_shrink_ms;\n"
	"            its latency is pool_get + round trip, without the put)\n"
	"            async-N: N in flight from one thread (pool_get_start, "
	"epoll); threads-N:\n"
	"            N threads with pool_get; both get + round trip + put\n"
	"  pool      yes: kept connections (POOL_REUSE); no: connect, one "
	"request, teardown\n"
	"  thr reqs  client threads, requests made; secs req/s: time and "
	"rate of the run\n"
	"  p50us p99us  latency of pool_get + round trip + pool_put, "
	"microseconds\n"
	"  put99us   p99 of pool_put alone; connects: connections opened; "
	"errs: connect errors\n"
	"  retired   connections the pool retired (pool_destroy's "
	"included)\n"
	"  cl_tw sv_tw  TIME_WAIT sockets left on the client / the server "
	"side, counted\n"
	"            through NETLINK_SOCK_DIAG right after the scenario "
	"(-1: not counted)\n";

static void tw_table(const struct row *rows, int n)
{
	printf("\n%-11s %-9s %-10s %4s %3s %7s %6s %8s %7s %7s %7s %8s %6s "
	       "%7s %6s %6s\n", "scenario", "server", "policy", "pool", "thr",
	       "reqs", "secs", "req/s", "p50us", "p99us", "put99us",
	       "connects", "errs", "retired", "cl_tw", "sv_tw");
	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];

		if (is_overhead(r) || is_tput(r))
			continue;
		printf("%-11s %-9s %-10s %4s %3d %7llu %6.2f %8.0f %7.1f %7.1f "
		       "%7.1f %8llu %6llu %7llu %6ld %6ld%s%s\n", r->scenario,
		       r->server, r->policy, r->pooled ? "yes" : "no", r->threads,
		       (unsigned long long)r->requests, r->seconds, r->req_per_s,
		       r->p50_us, r->p99_us, r->put_p99_us,
		       (unsigned long long)r->connects,
		       (unsigned long long)r->connect_errors,
		       (unsigned long long)r->retired, r->client_tw, r->server_tw,
		       r->failed ? "  FAILED" : "", r->note[0] ? "  " : "");
		if (r->note[0])
			printf("%-11s   %s\n", "", r->note);
	}
	printf("%s", tw_legend);
}

/* Width of the overhead table's first column: its longest name. */
static int overhead_width(const struct row *rows, int n)
{
	int w = 18;

	for (int i = 0; i < n; i++)
		if ((is_overhead(&rows[i]) || is_tput(&rows[i])) &&
		    (int)strlen(rows[i].scenario) > w)
			w = (int)strlen(rows[i].scenario);
	return w;
}

static void overhead_line(const struct row *r, int w)
{
	char vs[16] = "";

	if (r->vs_libmc > 0)
		snprintf(vs, sizeof(vs), "%.2fx", r->vs_libmc);
	if (is_overhead(r))
		printf("%-*s %3d %10.1f %10s %8s %8s %6.2fx %7s  %s\n", w,
		       r->scenario, r->threads, r->ns_per_op, "", "", "",
		       r->ratio, vs, "mutex pair");
	else
		printf("%-*s %3d %10s %10.0f %8.1f %8.1f %6.2fx %7s  %s\n", w,
		       r->scenario, r->threads, "", r->req_per_s, r->p50_us,
		       r->p99_us, r->ratio, vs, r->note);
}

static const char overhead_legend[] =
	"  ns/op     core-ns per pair: wall time x min(threads, cores) / "
	"pairs; medians\n"
	"  req/s p50us p99us  throughput rows: one thread, built-in server, "
	"medians\n"
	"  ratio     to the 1-thread mutex pair (overhead-) or to the raw "
	"socket (throughput-)\n"
	"  vs_lmc    a get+put pair's cost over libmemcached's pair of the "
	"same shape\n";

/* ratio: to the mutex pair (overhead) or the raw socket (throughput);
 * vs_lmc: a get+put pair to libmemcached's pair of the same shape. */
static void overhead_table(const struct row *rows, int n)
{
	int w = overhead_width(rows, n);
	bool any = false;

	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];

		if (!is_overhead(r) && !is_tput(r))
			continue;
		if (!any)
			printf("\n%-*s %3s %10s %10s %8s %8s %7s %7s  %s\n", w,
			       "overhead", "thr", "ns/op", "req/s", "p50us", "p99us",
			       "ratio", "vs_lmc", "ratio is to");
		any = true;
		overhead_line(r, w);
	}
	if (any)
		printf("%s", overhead_legend);
}

void report_table(const struct row *rows, int n)
{
	printf("\nEvery run (the CSV has the same rows):\n");
	tw_table(rows, n);
	overhead_table(rows, n);
	fflush(stdout);
}

/* A CSV field: quoted when it holds a comma or a quote. */
static void csv_str(FILE *f, const char *s)
{
	if (!strpbrk(s, ",\"\n")) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static void csv_row(FILE *f, const struct row *r, const char *network)
{
	fprintf(f, "%s,%s,%s,%d,%llu,%.3f,%.1f,%.1f,%.1f,%llu,%llu,%ld,%ld,"
	        "%.1f,%d,%llu,%.1f,%.3f,%s,", r->scenario, r->server, r->policy,
	        r->pooled, (unsigned long long)r->requests, r->seconds,
	        r->req_per_s, r->p50_us, r->p99_us,
	        (unsigned long long)r->connects,
	        (unsigned long long)r->connect_errors, r->client_tw,
	        r->server_tw, r->put_p99_us, r->threads,
	        (unsigned long long)r->retired, r->ns_per_op, r->ratio, network);
	csv_str(f, r->failed ? "FAILED" : "ok");
	fputc(',', f);
	csv_str(f, r->note);
	/* after the note, so that older readers of the columns before it
	 * keep working; empty where there is no libmemcached counterpart */
	if (r->vs_libmc > 0)
		fprintf(f, ",%.3f", r->vs_libmc);
	else
		fputc(',', f);
	/* only the burst rows ran with a chosen idle_shrink_ms */
	if (strcmp(r->scenario, "burst") == 0)
		fprintf(f, ",%ld,", r->idle_shrink_ms);
	else
		fputs(",,", f);
	/* only the exhaust-sources rows bind source addresses */
	if (r->sources)
		fprintf(f, "%d\n", r->sources);
	else
		fputc('\n', f);
}

int report_csv(const char *path, const struct row *rows, int n,
               const struct netenv *e)
{
	FILE *f = fopen(path, "w");

	if (!f) {
		fprintf(stderr, "tcpool-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fputs("scenario,server,policy,pooled,requests,seconds,req_per_s,"
	      "p50_us,p99_us,connects,connect_errors,client_tw,server_tw,"
	      "put_p99_us,threads,retired,ns_per_op,ratio,network,status,note,"
	      "vs_libmemcached,idle_shrink_ms,sources\n",
	      f);
	for (int i = 0; i < n; i++)
		csv_row(f, &rows[i], e->isolated ? "netns" : "loopback");
	if (fclose(f) != 0) {
		fprintf(stderr, "tcpool-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}
