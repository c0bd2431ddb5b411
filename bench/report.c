/*
 * Results for people (an aligned table on stdout, with the targets
 * checked) and for programs (CSV with the SPEC's columns first).
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

static const struct row *find(const struct row *rows, int n,
                              const char *scenario)
{
	for (int i = 0; i < n; i++)
		if (strcmp(rows[i].scenario, scenario) == 0)
			return &rows[i];
	return NULL;
}

static void network_line(FILE *f, const struct netenv *e)
{
	if (e->isolated)
		fprintf(f, "Network: servers and client in two network namespaces "
		        "joined by a veth pair, tcp_tw_reuse=0 in the client's.\n");
	else
		fprintf(f, "Network: LOOPBACK. tcp_tw_reuse=2 (the default) "
		        "recycles loopback TIME_WAIT for connect(), which hides "
		        "port exhaustion; run as root without --loopback for the "
		        "honest figures.\n");
	fprintf(f, "TIME_WAIT is counted per side through NETLINK_SOCK_DIAG "
	        "and kept apart between scenarios by a fresh server port "
	        "for each.\n");
}

static void tw_table(const struct row *rows, int n)
{
	printf("\n%-10s %-9s %-10s %4s %3s %7s %6s %8s %7s %7s %7s %8s %6s "
	       "%7s %6s %6s\n", "scenario", "server", "policy", "pool", "thr",
	       "reqs", "secs", "req/s", "p50us", "p99us", "put99us",
	       "connects", "errs", "retired", "cl_tw", "sv_tw");
	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];

		if (is_overhead(r) || is_tput(r))
			continue;
		printf("%-10s %-9s %-10s %4s %3d %7llu %6.2f %8.0f %7.1f %7.1f "
		       "%7.1f %8llu %6llu %7llu %6ld %6ld%s%s\n", r->scenario,
		       r->server, r->policy, r->pooled ? "yes" : "no", r->threads,
		       (unsigned long long)r->requests, r->seconds, r->req_per_s,
		       r->p50_us, r->p99_us, r->put_p99_us,
		       (unsigned long long)r->connects,
		       (unsigned long long)r->connect_errors,
		       (unsigned long long)r->retired, r->client_tw, r->server_tw,
		       r->failed ? "  FAILED" : "", r->note[0] ? "  " : "");
		if (r->note[0])
			printf("%-10s   %s\n", "", r->note);
	}
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
}

static void target(const char *what, bool known, bool met, double fig)
{
	printf("  %-56s %-9s (%.2f)\n", what,
	       !known ? "not run" : met ? "met" : "NOT MET", fig);
}

/* The pair against libmemcached's, 1 thread; the 2-thread shapes as
 * information. */
static void libmc_target(const struct row *rows, int n)
{
	const struct row *one = find(rows, n, "overhead-1t-1ep");
	const struct row *lm1 = find(rows, n, "overhead-libmemcached-1t");
	const struct row *two = find(rows, n, "overhead-2t-2ep");
	const struct row *sh = find(rows, n, "overhead-2t-1ep");

	target("get+put pair <= libmemcached fetch+release pair", one && lm1,
	       one && lm1 && one->vs_libmc <= 1.0, one ? one->vs_libmc : 0);
	if (one && !lm1) {
		printf("    libmemcached's pool unavailable: built without "
		       "libmemcachedutil (install libmemcached-dev, re-run "
		       "configure)\n");
		return;
	}
	if (!one || !lm1)
		return;
	printf("    1 thread: tcpool %.1f ns, libmemcached %.1f ns "
	       "(%.2fx a mutex pair, tcpool %.2fx)\n", one->ns_per_op,
	       lm1->ns_per_op, lm1->ratio, one->ratio);
	printf("    2 threads: an endpoint / a pool each %.2fx, one shared "
	       "%.2fx libmemcached\n", two ? two->vs_libmc : 0,
	       sh ? sh->vs_libmc : 0);
}

static void targets(const struct row *rows, int n)
{
	const struct row *pool = find(rows, n, "throughput-pool");
	const struct row *cpr = find(rows, n, "throughput-cpr");
	const struct row *one = find(rows, n, "overhead-1t-1ep");
	const struct row *two = find(rows, n, "overhead-2t-2ep");
	const struct row *m1 = find(rows, n, "overhead-mutex-1t");
	const struct row *m2 = find(rows, n, "overhead-mutex-2t");
	const struct row *l1 = find(rows, n, "overhead-libmemcached-1t");
	const struct row *l2 = find(rows, n, "overhead-libmemcached-2t");
	double cr = pool && cpr && cpr->req_per_s > 0
	            ? pool->req_per_s / cpr->req_per_s : 0;
	double slow = one && two && one->ns_per_op > 0
	              ? two->ns_per_op / one->ns_per_op : 0;
	double machine;

	if (!pool && !one)
		return;
	printf("\nTargets:\n");
	target("pool throughput >= 0.95x raw socket", pool != NULL,
	       pool && pool->ratio >= 0.95, pool ? pool->ratio : 0);
	target("pool throughput >= 2.5x connect-per-request", cr > 0,
	       cr >= 2.5, cr);
	/* No pool beats a raw persistent socket: raw / connect-per-request
	 * is the ceiling of this ratio, set by what a connect and a close
	 * cost on this path, not by the pool. Print it beside. */
	if (pool && cpr && pool->ratio > 0 && cpr->req_per_s > 0)
		printf("    (ceiling here: raw socket / connect-per-request = "
		       "%.2fx)\n", pool->req_per_s / pool->ratio / cpr->req_per_s);
	libmc_target(rows, n);
	/* a machine whose two vCPUs share a core slows every thread down
	 * when two run; judge the pool against that, not against 1.0 */
	machine = m1 && m2 && m1->ns_per_op > 0 ? m2->ns_per_op / m1->ns_per_op
	                                        : 0;
	target("2 threads, 2 endpoints: per-op slowdown <= 1.1x the",
	       slow > 0 && machine > 0, slow <= 1.1 * machine,
	       machine > 0 ? slow / machine : 0);
	printf("    machine's own (2 threads on private mutexes: %.2fx, "
	       "pool: %.2fx)\n", machine, slow);
	if (l1 && l2 && l1->ns_per_op > 0)
		printf("    (libmemcached, a pool per thread: %.2fx)\n",
		       l2->ns_per_op / l1->ns_per_op);
}

void report_table(const struct row *rows, int n, const struct netenv *e)
{
	printf("\n");
	network_line(stdout, e);
	tw_table(rows, n);
	overhead_table(rows, n);
	targets(rows, n);
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
		fprintf(f, ",%.3f\n", r->vs_libmc);
	else
		fputs(",\n", f);
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
	      "vs_libmemcached\n",
	      f);
	for (int i = 0; i < n; i++)
		csv_row(f, &rows[i], e->isolated ? "netns" : "loopback");
	if (fclose(f) != 0) {
		fprintf(stderr, "tcpool-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}
