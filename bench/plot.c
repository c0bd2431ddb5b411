/*
 * --plot FILE.png: TIME_WAIT per side and throughput per scenario, drawn
 * by gnuplot from a temporary data file and script. Skipped, with a
 * message, when gnuplot is not installed.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

static bool plotted(const struct row *r, int threads)
{
	return strncmp(r->scenario, "req-", 4) == 0 && r->threads == threads;
}

/* The scenario rows of one thread count: 1 thread if there are any. */
static int plot_threads(const struct row *rows, int n)
{
	for (int i = 0; i < n; i++)
		if (plotted(&rows[i], 1))
			return 1;
	for (int i = 0; i < n; i++)
		if (strncmp(rows[i].scenario, "req-", 4) == 0)
			return rows[i].threads;
	return 0;
}

static int write_data(FILE *f, const struct row *rows, int n)
{
	int threads = plot_threads(rows, n), count = 0;

	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];

		if (!plotted(r, threads))
			continue;
		fprintf(f, "\"%s %s%s\" %ld %ld %.0f\n", r->server, r->policy,
		        r->pooled ? " +pool" : "",
		        r->client_tw < 0 ? 0 : r->client_tw,
		        r->server_tw < 0 ? 0 : r->server_tw, r->req_per_s);
		count++;
	}
	return count;
}

/* "1 thread; 2000 requests without the pool, 20000 with it" */
static void describe(const struct row *rows, int n, char *buf, size_t len)
{
	int threads = plot_threads(rows, n);
	uint64_t req[2] = { 0, 0 };

	for (int i = 0; i < n; i++)
		if (plotted(&rows[i], threads))
			req[rows[i].pooled ? 1 : 0] = rows[i].requests;
	snprintf(buf, len, "%d thread%s; %llu requests without the pool, "
	         "%llu with it", threads, threads == 1 ? "" : "s",
	         (unsigned long long)req[0], (unsigned long long)req[1]);
}

static void write_script(FILE *f, const char *data, const char *png,
                         const char *what)
{
	fprintf(f,
	        "set terminal pngcairo size 1400,1000 font ',9'\n"
	        "set termoption noenhanced\n"
	        "set output '%s'\n"
	        "set multiplot layout 2,1\n"
	        "set style data histograms\n"
	        "set style histogram clustered gap 1\n"
	        "set style fill solid 0.8 border -1\n"
	        "set xtics rotate by -35 scale 0\n"
	        "set key outside top center horizontal\nset grid ytics\n"
	        "set yrange [0:*]\nset rmargin 10\n"
	        "set title 'TIME_WAIT sockets left by each scenario (%s)'\n"
	        "set ylabel 'TIME_WAIT sockets'\n"
	        "plot '%s' using 2:xtic(1) title 'client side', "
	        "'' using 3 title 'server side'\n"
	        "set title 'Throughput'\nset ylabel 'requests/s'\n"
	        "plot '%s' using 4:xtic(1) title 'requests/s' lc rgb '#4477aa'\n"
	        "unset multiplot\n", png, what, data, data);
}

static int make_temp(char *path, FILE **f)
{
	int fd = mkstemp(path);

	*f = fd < 0 ? NULL : fdopen(fd, "w");
	if (!*f) {
		fprintf(stderr, "tcpool-bench: %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return 0;
}

int report_plot(const char *png, const struct row *rows, int n)
{
	char data[] = "/tmp/tcpool-bench-data.XXXXXX";
	char script[] = "/tmp/tcpool-bench-plot.XXXXXX";
	char *argv[] = { "gnuplot", script, NULL };
	FILE *fd = NULL, *fs = NULL;
	char what[128];
	int rc = -1;

	if (!find_program("gnuplot", NULL, 0)) {
		progress("gnuplot not found: no plot (install gnuplot-nox)");
		return 1;
	}
	if (make_temp(data, &fd) != 0)
		return -1;
	if (make_temp(script, &fs) != 0)
		goto out;
	if (write_data(fd, rows, n) == 0)
		progress("nothing to plot");
	describe(rows, n, what, sizeof(what));
	write_script(fs, data, png, what);
	rc = fclose(fd) == 0 ? 0 : -1;
	if (fclose(fs) != 0)
		rc = -1;
	fd = fs = NULL;
	if (rc == 0 && run_cmd(argv, false) != 0)
		rc = -1;
	if (rc != 0)
		fprintf(stderr, "tcpool-bench: gnuplot failed\n");
out:
	if (fd)
		fclose(fd);
	if (fs)
		fclose(fs);
	unlink(data);
	unlink(script);
	return rc;
}
