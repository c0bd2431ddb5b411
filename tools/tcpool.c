/*
 * tcpool: the command-line companion of libtcpool.
 *
 *   tcpool check-config FILE   validate a configuration file and print the
 *                              effective settings of [pool] and of each
 *                              [endpoint ...] section
 *   tcpool tw [ENDPOINT]       TIME_WAIT sockets toward ENDPOINT, client
 *                              and server side, as pool_tw_count() counts
 *                              them; without ENDPOINT the namespace total
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-keys.h"
#include "tcpool.h"

#define SOCKSTAT "/proc/net/sockstat"

/* Room for the library's messages: a file name plus "LINE: KEY: why". */
#define ERRLEN (PATH_MAX + 1024)

static const char usage_text[] =
	"usage: tcpool check-config FILE\n"
	"       tcpool tw [ENDPOINT]\n"
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
	return usage_error("unknown command '%s'", cmd);
}

int main(int argc, char **argv)
{
	return flush_stdout(run(argc, argv));
}
