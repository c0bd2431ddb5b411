/*
 * tw-demo: how many TIME_WAIT sockets each teardown policy leaves behind,
 * and how a pool avoids almost all of them.
 *
 * For each policy (close, abort, peer-first) it starts the built-in line
 * server on a fresh port, makes N requests through a pool that keeps no
 * idle connection (max_idle = 0, so each request connects anew and the
 * connection is retired right after), and counts the TIME_WAIT sockets
 * toward that server, on the client side and on the server side. Then it
 * does the same N requests through a pool that keeps one idle connection.
 *
 * Usage: tw-demo [N]      (N requests per row, default 200)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lineserver.h"
#include "tcpool.h"

struct row {
	const char *policy;      /* the teardown policy's config name */
	int pooled;              /* keep one idle connection and reuse it */
	unsigned requests;       /* requests that got their PONG */
	uint64_t connects;       /* connections the pool opened */
	pool_tw_count_t tw;      /* TIME_WAIT sockets, counted after destroy */
	int tw_ok;               /* pool_tw_count() worked */
};

/* One request of the line protocol: "PING\n" is answered with "PONG\n". */
static int ping(pool_conn_t *c)
{
	int fd = pool_conn_fd(c);
	char buf[5];
	size_t got = 0;

	/* MSG_NOSIGNAL: a write to a connection the server has closed must
	 * fail with EPIPE, not kill the program with SIGPIPE. */
	if (send(fd, "PING\n", 5, MSG_NOSIGNAL) != 5)
		return -1;
	while (got < sizeof(buf)) {
		ssize_t n = recv(fd, buf + got, sizeof(buf) - got, 0);

		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return memcmp(buf, "PONG\n", 5) == 0 ? 0 : -1;
}

/* A pool for one row. Values are written as in tcpool.conf, so the close
 * request keeps its quotes and its escape: "quit\n" asks the line server
 * to close the connection first (that is what peer-first needs). */
static pool_t *make_pool(const char *policy, const char *max_idle)
{
	const char *kv[][2] = {
		{ "teardown", policy },
		{ "close_request", "\"quit\\n\"" },
		{ "max_idle", max_idle },
	};
	pool_config_t *cfg = pool_config_new();
	pool_t *pool = NULL;
	char err[256];
	size_t i;
	int rc;

	if (!cfg)
		return NULL;
	for (i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
		if (pool_config_set(cfg, NULL, kv[i][0], kv[i][1], err, sizeof(err))) {
			fprintf(stderr, "tw-demo: %s\n", err);
			goto out;
		}
	}
	rc = pool_create(&pool, cfg);
	if (rc)
		fprintf(stderr, "tw-demo: pool_create: %s\n", pool_strerror(rc));
out:
	pool_config_free(cfg); /* the pool has its own copy */
	return pool;
}

/* Run n requests for one row against a server of its own, so that the
 * TIME_WAIT counts of different rows never mix. */
static int run_row(struct row *r, unsigned n)
{
	struct lineserver_opts o = { .on_quit = LS_QUIT_CLOSE };
	struct lineserver *ls = lineserver_start(&o);
	pool_stats_t st;
	const char *ep;
	pool_t *pool;
	unsigned i;

	if (!ls) {
		perror("tw-demo: lineserver_start");
		return -1;
	}
	ep = lineserver_endpoint(ls); /* "127.0.0.1:PORT" */
	pool = make_pool(r->policy, r->pooled ? "1" : "0");
	if (!pool) {
		lineserver_stop(ls);
		return -1;
	}
	for (i = 0; i < n; i++) {
		pool_conn_t *c;
		int rc = pool_get(pool, ep, &c);

		if (rc) {
			fprintf(stderr, "tw-demo: pool_get: %s\n", pool_strerror(rc));
			continue;
		}
		if (ping(c) == 0) {
			r->requests++;
			/* REUSE keeps it idle for the next pool_get; RETIRE
			 * tears it down now, by the pool's teardown policy. */
			pool_put(pool, c, r->pooled ? POOL_REUSE : POOL_RETIRE);
		} else {
			/* The protocol state is unknown: no close request. */
			pool_put(pool, c, POOL_BROKEN);
		}
	}
	if (pool_stats(pool, ep, &st) == 0)
		r->connects = st.connects;
	/* Retires the idle connection (pooled row) and waits for the
	 * peer-first drains still under way. */
	pool_destroy(pool);
	/* Let the last FIN/ACK exchanges land before counting. */
	usleep(100 * 1000);
	r->tw_ok = pool_tw_count(ep, &r->tw) == 0;
	lineserver_stop(ls);
	return 0;
}

static void print_row(const struct row *r)
{
	printf("%-11s %-6s %8u %9llu", r->policy, r->pooled ? "yes" : "no",
	       r->requests, (unsigned long long)r->connects);
	if (r->tw_ok)
		printf(" %17u %17u\n", (unsigned)r->tw.client, (unsigned)r->tw.server);
	else
		printf(" %17s %17s\n", "n/a", "n/a");
}

int main(int argc, char *argv[])
{
	struct row rows[] = {
		{ .policy = "close" },
		{ .policy = "abort" },
		{ .policy = "peer-first" },
		{ .policy = "peer-first", .pooled = 1 },
	};
	unsigned long n = 200;
	size_t i;

	if (argc > 1) {
		char *end;

		n = strtoul(argv[1], &end, 10);
		if (*argv[1] == '\0' || *end != '\0' || n == 0 || n > 100000) {
			fprintf(stderr, "usage: tw-demo [requests (1-100000)]\n");
			return 2;
		}
	}
	printf("%lu requests per row, each row against a fresh line server\n\n", n);
	printf("%-11s %-6s %8s %9s %17s %17s\n", "policy", "pooled", "requests",
	       "connects", "client TIME_WAIT", "server TIME_WAIT");
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if (run_row(&rows[i], (unsigned)n))
			return 1;
		print_row(&rows[i]);
	}
	printf("\nThe side that closes first holds TIME_WAIT (60 s): the client "
	       "under close,\nnobody under abort (RST), the server under "
	       "peer-first.\n");
	if (!rows[0].tw_ok)
		printf("(TIME_WAIT counts need NETLINK_SOCK_DIAG, which this "
		       "system refused.)\n");
	return 0;
}
