/*
 * tcpool-lineserver: the built-in line server as a program, for the bench
 * and for trying things by hand.
 *
 *   tcpool-lineserver [--port N] [--bind ADDR] [--unix PATH]
 *                     [--quit close|ignore|reply|reset|flood]
 *                     [--idle-close-ms N] [--backlog N]
 *
 * Prints "listening on ENDPOINT" once it accepts, serves until SIGTERM or
 * SIGINT, then exits 0. Bad options: usage on stderr, exit 2.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lineserver.h"

static const char usage_text[] =
	"usage: tcpool-lineserver [--port N] [--bind ADDR] [--unix PATH]\n"
	"                         [--quit close|ignore|reply|reset|flood]\n"
	"                         [--idle-close-ms N] [--backlog N]\n";

static int usage(const char *why)
{
	if (why)
		fprintf(stderr, "tcpool-lineserver: %s\n", why);
	fputs(usage_text, stderr);
	return 2;
}

/* A whole decimal number in [0, max]; -1 otherwise. */
static long parse_num(const char *s, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > max)
		return -1;
	return v;
}

static int parse_quit(const char *s, enum ls_quit_mode *out)
{
	static const struct { const char *name; enum ls_quit_mode mode; } tab[] = {
		{ "close", LS_QUIT_CLOSE },
		{ "ignore", LS_QUIT_IGNORE },
		{ "reply", LS_QUIT_REPLY_NO_CLOSE },
		{ "reset", LS_QUIT_RESET },
		{ "flood", LS_QUIT_FLOOD },
	};
	size_t i;

	for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		if (strcmp(s, tab[i].name) == 0) {
			*out = tab[i].mode;
			return 0;
		}
	}
	return -1;
}

static bool is_ip_address(const char *s)
{
	struct in6_addr a;

	return inet_pton(AF_INET, s, &a) == 1 || inet_pton(AF_INET6, s, &a) == 1;
}

/* One option into opts; returns 0, or a message for usage(). */
static const char *parse_opt(int c, const char *arg, struct lineserver_opts *o)
{
	long v;

	switch (c) {
	case 'p':
		v = parse_num(arg, 65535);
		if (v < 0)
			return "--port: not a port number";
		o->port = (uint16_t)v;
		return NULL;
	case 'b':
		if (!is_ip_address(arg))
			return "--bind: not a numeric IPv4 or IPv6 address";
		o->bind_addr = arg;
		return NULL;
	case 'u':
		o->unix_path = arg;
		o->family = AF_UNIX;
		return NULL;
	case 'q':
		return parse_quit(arg, &o->on_quit) < 0 ? "--quit: unknown mode" : NULL;
	case 'i':
		v = parse_num(arg, UINT_MAX < LONG_MAX ? (long)UINT_MAX : LONG_MAX);
		if (v < 0)
			return "--idle-close-ms: not a number";
		o->idle_close_ms = (unsigned)v;
		return NULL;
	case 'B':
		v = parse_num(arg, INT_MAX);
		if (v <= 0)
			return "--backlog: not a positive number";
		o->backlog = (int)v;
		return NULL;
	}
	return "";
}

static int parse_args(int argc, char **argv, struct lineserver_opts *o)
{
	static const struct option longopts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "bind", required_argument, NULL, 'b' },
		{ "unix", required_argument, NULL, 'u' },
		{ "quit", required_argument, NULL, 'q' },
		{ "idle-close-ms", required_argument, NULL, 'i' },
		{ "backlog", required_argument, NULL, 'B' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *why;
	int c;

	for (;;) {
		c = getopt_long(argc, argv, "", longopts, NULL);
		if (c == -1)
			break;
		if (c == 'h' || c == '?')
			return usage(NULL);
		why = parse_opt(c, optarg, o);
		if (why)
			return usage(*why ? why : NULL);
	}
	if (optind < argc)
		return usage("unexpected argument");
	if (o->unix_path && o->bind_addr)
		return usage("--unix and --bind exclude each other");
	return 0;
}

int main(int argc, char **argv)
{
	struct lineserver_opts opts = { 0 };
	struct lineserver *ls;
	sigset_t set;
	int rc, sig;

	rc = parse_args(argc, argv, &opts);
	if (rc != 0)
		return rc;
	/* Blocked before the server thread exists, so that it inherits the
	 * mask and sigwait() below is the only taker. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	ls = lineserver_start(&opts);
	if (!ls) {
		fprintf(stderr, "tcpool-lineserver: cannot listen: %s\n",
		        strerror(errno));
		return 1;
	}
	printf("listening on %s\n", lineserver_endpoint(ls));
	fflush(stdout);
	do {
		rc = sigwait(&set, &sig);
	} while (rc == EINTR);
	lineserver_stop(ls);
	return 0;
}
