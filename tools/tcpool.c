/*
 * tcpool: the command-line companion of libtcpool.
 *
 *   tcpool check-config FILE   validate a configuration file and print the
 *                              effective settings of [pool] and of each
 *                              [endpoint ...] section
 *   tcpool tw [ENDPOINT]       TIME_WAIT sockets toward ENDPOINT, client
 *                              and server side, as pool_tw_count() counts
 *                              them; without ENDPOINT the namespace total
 *   tcpool stats [OPTIONS] ENDPOINT...
 *                              run a pool under load against the
 *                              endpoints, then print its metrics in the
 *                              Prometheus text format
 *
 * Exit status: 0 success, 1 the check or the count failed, 2 bad usage.
 *
 * It links the library's internal build statically (libtcpool-internal.la):
 * config_validate() and config_dump() are not exported by libtcpool.so,
 * and the command must report exactly what the library decides, so it
 * calls the library's own code rather than a copy of the rules.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config-keys.h"
#include "tcpool.h"

#define SOCKSTAT "/proc/net/sockstat"

/* Room for the library's messages: a file name plus "LINE: KEY: why". */
#define ERRLEN (PATH_MAX + 1024)

static const char usage_text[] =
	"usage: tcpool check-config FILE\n"
	"       tcpool tw [ENDPOINT]\n"
	"       tcpool stats [--config FILE] [--requests N] [--concurrency C]\n"
	"                    [--send TEXT] [--retire-every K] ENDPOINT...\n"
	"       tcpool --help | --version\n";

static const char help_text[] =
	"\n"
	"Commands:\n"
	"  check-config FILE  validate FILE as pool_config_load() and\n"
	"                     pool_create() would; print the effective\n"
	"                     settings of [pool] and of each endpoint section\n"
	"  tw [ENDPOINT]      count TIME_WAIT sockets toward ENDPOINT\n"
	"                     (host:port, [ipv6]:port, '*' for any host);\n"
	"                     without ENDPOINT, the namespace total\n"
	"  stats ENDPOINT...  make a pool (from --config FILE, or the\n"
	"                     defaults), send N requests (default 1000) over\n"
	"                     C threads (default 4), round robin over the\n"
	"                     endpoints, each TEXT (default \"PING\\r\\n\")\n"
	"                     and one reply read; after every K-th, the\n"
	"                     connection is retired (--retire-every K;\n"
	"                     default 0: never);\n"
	"                     then print the pool's metrics (Prometheus text)\n"
	"                     and, on stderr, a summary; exit 1 if any\n"
	"                     request failed\n"
	"\n"
	"Exit status: 0 success, 1 failure, 2 usage error.\n"
	"See tcpool(1), tcpool.conf(5).\n";

static int __attribute__((format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("tcpool: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fputs(usage_text, stderr);
	return 2;
}

/* ---- check-config ---- */

static void print_warning(const char *msg, void *ud)
{
	fprintf(stderr, "%s: warning: %s\n", (const char *)ud, msg);
}

/* config_validate() repeats the rules pool_config_load() already applied
 * to the file, so today it cannot fail after a good load; it is run
 * anyway because pool_create() runs it, and this command promises the
 * same verdict as pool_create(). Its messages carry no line number. */
static int check_config(const char *path)
{
	pool_config_t *cfg = pool_config_new();
	char err[ERRLEN];
	int rc = 1;

	if (!cfg) {
		fprintf(stderr, "tcpool: %s\n", pool_strerror(POOL_ENOMEM));
		return 1;
	}
	if (pool_config_load(cfg, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}
	if (config_validate(cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", path, err);
		goto out;
	}
	/* What pool_create() checks on this kernel (local_port_range), and
	 * what only a connect would find out: a source_address that is not
	 * an address of this host. */
	if (socket_check_support(cfg, err, sizeof(err)) != 0 ||
	    socket_check_sources(cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", path, err);
		goto out;
	}
	config_warnings(cfg, print_warning, (void *)path);
	if (config_dump(cfg, stdout) != 0) {
		fprintf(stderr, "tcpool: writing the settings: %s\n",
		        strerror(errno));
		goto out;
	}
	rc = 0;
out:
	pool_config_free(cfg);
	return rc;
}

/* ---- tw ---- */

/* Why pool_tw_count() refused endpoint: its code says only "malformed",
 * endpoint_parse() says what is wrong, and a unix endpoint is well formed
 * but has nothing to count. */
static void tw_endpoint_error(const char *endpoint, int rc)
{
	struct endpoint_addr addr;
	char why[128] = "";

	if (rc == POOL_EENDPOINT &&
	    endpoint_parse(endpoint, true, &addr, why, sizeof(why)) == 0 &&
	    addr.kind == EP_UNIX) {
		fprintf(stderr, "tcpool: %s: unix sockets have no TIME_WAIT "
		        "state (expected host:port or [ipv6]:port)\n", endpoint);
		return;
	}
	if (rc == POOL_ESYS)
		snprintf(why, sizeof(why), "%s", strerror(errno));
	fprintf(stderr, "tcpool: %s: %s%s%s\n", endpoint, pool_strerror(rc),
	        *why ? ": " : "", why);
}

static int tw_endpoint(const char *endpoint)
{
	pool_tw_count_t n;
	int rc;

	rc = pool_tw_count(endpoint, &n);
	if (rc != 0) {
		tw_endpoint_error(endpoint, rc);
		return 1;
	}
	printf("endpoint %s\nclient %u\nserver %u\n", endpoint, n.client,
	       n.server);
	return 0;
}

/* The "tw" figure of the "TCP:" line: the kernel's count of TIME_WAIT
 * sockets in this network namespace, IPv4 and IPv6 together. Returns
 * NULL, or why there is no figure. */
static const char *sockstat_tw(unsigned long *out)
{
	FILE *fp = fopen(SOCKSTAT, "re");
	char line[256];
	const char *tw = NULL;

	if (!fp)
		return strerror(errno);
	while (!tw && fgets(line, sizeof(line), fp))
		if (strncmp(line, "TCP:", 4) == 0)
			tw = strstr(line, " tw ");
	fclose(fp);
	if (!tw || sscanf(tw, " tw %lu", out) != 1)
		return "no \"tw\" figure on its TCP line";
	return NULL;
}

/* pool_tw_count() needs a port, so there is no "every endpoint" query;
 * the kernel's own total is the honest answer to "how many in all". */
static int tw_total(void)
{
	const char *why;
	unsigned long tw;

	why = sockstat_tw(&tw);
	if (why) {
		fprintf(stderr, "tcpool: %s: %s\n", SOCKSTAT, why);
		return 1;
	}
	printf("total %lu (all TCP TIME_WAIT sockets in this network namespace, "
	       "from " SOCKSTAT "; name an ENDPOINT for client and server "
	       "counts)\n", tw);
	return 0;
}

/* ---- main ---- */

/* ---- stats ---- */

/* How long one reply may take before the request counts as failed. */
#define STATS_REPLY_MS 5000

struct load {
	pool_t *pool;
	char **eps;
	int neps;
	long requests;
	long retire_every;         /* 0: never */
	const char *send;
	size_t send_len;
	atomic_long next;          /* requests handed out */
	atomic_long failed;
	atomic_int last_err;       /* a POOL_E* code, or 1 for I/O */
};

/* Send the request and wait for some reply; false on any failure. */
static bool exchange(int fd, const char *msg, size_t len)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char buf[4096];
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(fd, msg + off, len - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		off += (size_t)n;
	}
	while (poll(&p, 1, STATS_REPLY_MS) < 0)
		if (errno != EINTR)
			return false;
	return p.revents && recv(fd, buf, sizeof(buf), 0) > 0;
}

static void one_request(struct load *l, long i)
{
	const char *ep = l->eps[i % l->neps];
	pool_conn_t *c = NULL;
	pool_put_mode mode = POOL_REUSE;
	int rc = pool_get(l->pool, ep, &c);

	if (rc) {
		atomic_fetch_add(&l->failed, 1);
		atomic_store(&l->last_err, rc);
		return;
	}
	if (!exchange(pool_conn_fd(c), l->send, l->send_len)) {
		atomic_fetch_add(&l->failed, 1);
		atomic_store(&l->last_err, 1);
		mode = POOL_BROKEN;
	} else if (l->retire_every && (i + 1) % l->retire_every == 0) {
		mode = POOL_RETIRE;
	}
	pool_put(l->pool, c, mode);
}

static void *load_worker(void *arg)
{
	struct load *l = arg;
	long i;

	while ((i = atomic_fetch_add(&l->next, 1)) < l->requests)
		one_request(l, i);
	return NULL;
}

/* A non-negative long option value, or -1. */
static long parse_count(const char *s, long min)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > INT_MAX)
		return -1;
	return v;
}

/* The C escapes \r, \n, \t and \\ in TEXT, so a request can be typed. */
static size_t unescape(char *s)
{
	char *w = s, *r = s;

	for (; *r; r++) {
		if (*r != '\\' || !r[1]) {
			*w++ = *r;
			continue;
		}
		r++;
		*w++ = *r == 'r' ? '\r' : *r == 'n' ? '\n' : *r == 't' ? '\t' : *r;
	}
	*w = '\0';
	return (size_t)(w - s);
}

static pool_t *stats_pool(const char *config)
{
	char err[ERRLEN];
	pool_config_t *cfg = pool_config_new();
	pool_t *pool = NULL;
	int rc;

	if (!cfg) {
		fprintf(stderr, "tcpool: out of memory\n");
		return NULL;
	}
	if (config && (rc = pool_config_load(cfg, config, err, sizeof(err)))) {
		fprintf(stderr, "tcpool: %s\n", err);
		pool_config_free(cfg);
		return NULL;
	}
	rc = pool_create(&pool, cfg);
	pool_config_free(cfg);
	if (rc)
		fprintf(stderr, "tcpool: cannot create the pool: %s\n", pool_strerror(rc));
	return rc ? NULL : pool;
}

/* The pool's Prometheus text (caller frees), or NULL with *rc the error.
 * The maintenance keeps working meanwhile (a drain that ends, a counter
 * that gains a digit), so the text may have grown between sizing it and
 * writing it: size it again until it fits. */
static char *format_metrics(pool_t *pool, int *rc)
{
	char *text = NULL, *more;
	int n = pool_stats_format(pool, NULL, 0, POOL_FORMAT_PROMETHEUS);
	size_t room;

	while (n >= 0) {
		room = (size_t)n + 1;
		more = realloc(text, room);
		if (!more) {
			n = POOL_ENOMEM;
			break;
		}
		text = more;
		n = pool_stats_format(pool, text, room, POOL_FORMAT_PROMETHEUS);
		if (n >= 0 && (size_t)n < room) {
			*rc = n;
			return text;
		}
	}
	free(text);
	*rc = n;
	return NULL;
}

/* Run the load, then print the metrics; the pool is still alive, so
 * the gauges (idle connections) show what the load left. */
static int stats_run(struct load *l, int conc)
{
	pthread_t *t = calloc((size_t)conc, sizeof(*t));
	struct timespec t0, t1;
	int i, n, started = 0;
	char *text;

	if (!t) {
		fprintf(stderr, "tcpool: out of memory\n");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < conc; i++, started++)
		if (pthread_create(&t[i], NULL, load_worker, l) != 0)
			break;
	if (!started)
		load_worker(l);
	for (i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	free(t);
	text = format_metrics(l->pool, &n);
	if (!text) {
		fprintf(stderr, "tcpool: cannot format the metrics: %s\n",
			pool_strerror(n));
		return 1;
	}
	fputs(text, stdout);
	free(text);
	fprintf(stderr, "tcpool stats: %ld requests, %ld failed, %.3f s\n",
		l->requests, atomic_load(&l->failed),
		(double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	if (atomic_load(&l->failed)) {
		int e = atomic_load(&l->last_err);

		fprintf(stderr, "tcpool stats: last failure: %s\n",
			e == 1 ? "no reply" : pool_strerror(e));
		return 1;
	}
	return 0;
}

static int stats_cmd(int argc, char **argv)
{
	struct load l = { .requests = 1000, .send = "PING\r\n" };
	const char *config = NULL;
	char *send = NULL;
	long conc = 4;
	int i, rc;

	for (i = 2; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i += 2) {
		const char *opt = argv[i];

		if (strcmp(opt, "--") == 0) {
			i++;
			break;
		}
		if (i + 1 >= argc)
			return usage_error("%s needs a value", opt);
		if (strcmp(opt, "--config") == 0)
			config = argv[i + 1];
		else if (strcmp(opt, "--requests") == 0)
			l.requests = parse_count(argv[i + 1], 0);
		else if (strcmp(opt, "--concurrency") == 0)
			conc = parse_count(argv[i + 1], 1);
		else if (strcmp(opt, "--retire-every") == 0)
			l.retire_every = parse_count(argv[i + 1], 0);
		else if (strcmp(opt, "--send") == 0)
			send = argv[i + 1];
		else
			return usage_error("stats: unknown option '%s'", opt);
		if (l.requests < 0 || conc < 0 || l.retire_every < 0)
			return usage_error("%s: expected a number, got '%s'", opt, argv[i + 1]);
		if (conc > 1024)
			return usage_error("--concurrency: at most 1024");
	}
	if (i >= argc)
		return usage_error("stats needs at least one ENDPOINT");
	l.eps = argv + i;
	l.neps = argc - i;
	if (send) {
		send = strdup(send);
		if (!send)
			return 1;
		l.send_len = unescape(send);
		l.send = send;
	}
	if (!l.send_len)
		l.send_len = strlen(l.send);
	if (!l.send_len) {
		free(send);
		return usage_error("--send: empty request");
	}
	l.pool = stats_pool(config);
	if (!l.pool) {
		free(send);
		return 1;
	}
	rc = stats_run(&l, (int)conc);
	pool_destroy(l.pool);
	free(send);
	return rc;
}

/* A full disk or a closed pipe must not pass for success. A command that
 * failed has said why already. */
static int flush_stdout(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (rc == 0)
			fprintf(stderr, "tcpool: standard output: %s\n",
			        strerror(errno));
		return rc ? rc : 1;
	}
	return rc;
}

static int run(int argc, char **argv)
{
	const char *cmd = argv[1];

	if (argc < 2)
		return usage_error("missing command");
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		printf("%s%s", usage_text, help_text);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0) {
		printf("tcpool %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (strcmp(cmd, "check-config") == 0) {
		if (argc != 3)
			return usage_error("check-config takes one FILE");
		return check_config(argv[2]);
	}
	if (strcmp(cmd, "tw") == 0) {
		if (argc > 3)
			return usage_error("tw takes at most one ENDPOINT");
		return argc == 3 ? tw_endpoint(argv[2]) : tw_total();
	}
	if (strcmp(cmd, "stats") == 0)
		return stats_cmd(argc, argv);
	return usage_error("unknown command '%s'", cmd);
}

int main(int argc, char **argv)
{
	return flush_stdout(run(argc, argv));
}
