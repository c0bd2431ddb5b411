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

static void overhead_table(const struct row *rows, int n)
{
	bool any = false;

	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];

		if (!is_overhead(r) && !is_tput(r))
			continue;
		if (!any)
			printf("\n%-18s %3s %10s %10s %8s %8s %7s  %s\n", "overhead",
			       "thr", "ns/op", "req/s", "p50us", "p99us", "ratio",
			       "ratio is to");
		any = true;
		if (is_overhead(r))
			printf("%-18s %3d %10.1f %10s %8s %8s %6.2fx  %s\n",
			       r->scenario, r->threads, r->ns_per_op, "", "", "",
			       r->ratio, "mutex pair");
		else
			printf("%-18s %3d %10s %10.0f %8.1f %8.1f %6.2fx  %s\n",
			       r->scenario, r->threads, "", r->req_per_s, r->p50_us,
			       r->p99_us, r->ratio, r->note);
	}
}

static void target(const char *what, bool known, bool met, double fig)
{
	printf("  %-56s %-9s (%.2f)\n", what,
	       !known ? "not run" : met ? "met" : "NOT MET", fig);
}

static void targets(const struct row *rows, int n)
{
	const struct row *pool = find(rows, n, "throughput-pool");
	const struct row *cpr = find(rows, n, "throughput-cpr");
	const struct row *one = find(rows, n, "overhead-1t-1ep");
	const struct row *two = find(rows, n, "overhead-2t-2ep");
	const struct row *m1 = find(rows, n, "overhead-mutex-1t");
	const struct row *m2 = find(rows, n, "overhead-mutex-2t");
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
	target("get+put pair <= 2x mutex lock/unlock pair", one != NULL,
	       one && one->ratio <= 2.0, one ? one->ratio : 0);
	/* a machine whose two vCPUs share a core slows every thread down
	 * when two run; judge the pool against that, not against 1.0 */
	machine = m1 && m2 && m1->ns_per_op > 0 ? m2->ns_per_op / m1->ns_per_op
	                                        : 0;
	target("2 threads, 2 endpoints: per-op slowdown <= 1.1x the",
	       slow > 0 && machine > 0, slow <= 1.1 * machine,
	       machine > 0 ? slow / machine : 0);
	printf("    machine's own (2 threads on private mutexes: %.2fx, "
	       "pool: %.2fx)\n", machine, slow);
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
	      "put_p99_us,threads,retired,ns_per_op,ratio,network,status,note\n",
	      f);
	for (int i = 0; i < n; i++)
		csv_row(f, &rows[i], e->isolated ? "netns" : "loopback");
	if (fclose(f) != 0) {
		fprintf(stderr, "tcpool-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}
