/*
 * redis-pool: hiredis on top of tcpool, from several threads.
 *
 * tcpool owns the sockets: it connects them, keeps min_idle of them warm,
 * checks them before reuse and retires them peer-first with "QUIT", so
 * that Redis, not this client, holds the TIME_WAIT. hiredis only speaks
 * the protocol on them:
 *
 *   on_connect (once per new connection, warm ones included):
 *       redisConnectFd(fd), AUTH, SELECT; the context becomes the
 *       connection's data, freed by redisFreeKeepFd (the pool closes fd)
 *   each request:
 *       pool_get -> pool_conn_data -> redisCommand ... -> pool_put
 *       REUSE when the context is fine, BROKEN on a hiredis error
 *
 * Usage: redis-pool [options] HOST:PORT
 *   -a PASSWORD   AUTH with it (or $REDISCLI_AUTH)
 *   -n DB         SELECT it (default 0)
 *   -t THREADS    threads (default 4)
 *   -r REQUESTS   requests per thread (default 100)
 *   -b            baseline: one hiredis context per thread, no pool
 *
 * Prints what it did and ends on one line:
 *   "400 requests, 0 failed, client TIME_WAIT 0"
 * Exit status 0 when no request failed.
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tcpool.h"

#define MAX_THREADS 64

struct opts {
	const char *endpoint;   /* "127.0.0.1:6379" */
	const char *password;   /* NULL: no AUTH */
	int db;
	int threads;
	int requests;           /* per thread */
	int baseline;
};

struct worker {
	const struct opts *o;
	pool_t *pool;           /* NULL in the baseline */
	int id;
	int failed;
	pthread_t tid;
};

/* ---- hiredis on a socket it does not own ------------------------------ */

/* The pool closes the socket (by its teardown policy); the context must
 * only free its own memory. redisFree() would close() the fd behind the
 * pool's back: a plain close, the client's TIME_WAIT, and a descriptor
 * number the pool might since have handed out again. */
static void context_free(void *ctx)
{
	(void)redisFreeKeepFd(ctx);
}

/* Run a command whose reply must be "+OK"; 0 on success. */
static int command_ok(redisContext *ctx, const char *what, const char *fmt, ...)
{
	redisReply *r;
	va_list ap;
	int rc = -1;

	va_start(ap, fmt);
	r = redisvCommand(ctx, fmt, ap);
	va_end(ap);
	if (!r)
		fprintf(stderr, "redis-pool: %s: %s\n", what, ctx->errstr);
	else if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, "OK") != 0)
		fprintf(stderr, "redis-pool: %s: %s\n", what,
			r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	else
		rc = 0;
	freeReplyObject(r);
	return rc;
}

/* What every new connection needs before its first command. */
static int session_setup(redisContext *ctx, const struct opts *o)
{
	/* A server that stops answering must not hang the thread. */
	struct timeval tv = { .tv_sec = 2 };

	if (redisSetTimeout(ctx, tv) != REDIS_OK)
		return -1;
	if (o->password && command_ok(ctx, "AUTH", "AUTH %s", o->password))
		return -1;
	if (o->db && command_ok(ctx, "SELECT", "SELECT %d", o->db))
		return -1;
	return 0;
}

/* tcpool's on_connect hook: runs once per new connection, in whichever
 * thread opened it (a pool_get caller, or the pool's refill of
 * min_idle). Non-zero makes the pool abort the connection and free its
 * data, and pool_get fail with POOL_EHOOK. */
static int on_connect(pool_conn_t *conn, void *ud)
{
	redisContext *ctx = redisConnectFd(pool_conn_fd(conn));

	if (!ctx)
		return -1;
	/* Attached first, so that the pool frees it whatever fails next. */
	pool_conn_set_data(conn, ctx, context_free);
	return ctx->err ? -1 : session_setup(ctx, ud);
}

/* ---- one request --------------------------------------------------------- */

/* SET then GET of the thread's key: idempotent, so safe to retry. Returns
 * 0 (done), 1 (Redis said no: the connection is fine) or -1 (hiredis
 * error: the connection's protocol state is unknown). */
static int request(redisContext *ctx, int id, int i)
{
	char key[32], val[16];
	redisReply *r;
	int rc;

	snprintf(key, sizeof(key), "tcpool:example:%d", id);
	snprintf(val, sizeof(val), "%d", i);
	r = redisCommand(ctx, "SET %s %s", key, val);
	if (!r)
		return -1;
	freeReplyObject(r);
	r = redisCommand(ctx, "GET %s", key);
	if (!r)
		return -1;
	rc = r->type == REDIS_REPLY_STRING && strcmp(r->str, val) == 0 ? 0 : 1;
	freeReplyObject(r);
	return rc;
}

/* One request through the pool. A connection that was idle may have died
 * just after the pool checked it: the request is retried once on a new
 * pool_get when it failed on a reused connection. */
static int pooled_request(struct worker *w, int i)
{
	int attempt, rc = -1;

	for (attempt = 0; attempt < 2 && rc < 0; attempt++) {
		pool_conn_t *conn;
		int reused, err = pool_get(w->pool, w->o->endpoint, &conn);

		if (err) {
			fprintf(stderr, "redis-pool: pool_get: %s\n", pool_strerror(err));
			return -1;
		}
		reused = pool_conn_reused(conn);
		/* Every connection of this endpoint went through on_connect,
		 * so its data is a ready context. */
		rc = request(pool_conn_data(conn), w->id, i);
		/* After a hiredis error the context is unusable and the bytes
		 * in flight unknown: BROKEN, so no QUIT is sent on it. */
		pool_put(w->pool, conn, rc < 0 ? POOL_BROKEN : POOL_REUSE);
		if (!reused)
			break;
	}
	return rc;
}

static void *pooled_worker(void *arg)
{
	struct worker *w = arg;
	int i;

	for (i = 0; i < w->o->requests; i++)
		w->failed += pooled_request(w, i) != 0;
	return NULL;
}

/* The baseline: one context per thread, connected by hiredis, kept for
 * all its requests, closed by redisFree() (so the client holds a
 * TIME_WAIT per thread). */
static void *baseline_worker(void *arg)
{
	struct worker *w = arg;
	char host[256];
	const char *colon = strrchr(w->o->endpoint, ':');
	redisContext *ctx;
	int i;

	snprintf(host, sizeof(host), "%.*s", (int)(colon - w->o->endpoint),
		 w->o->endpoint);
	ctx = redisConnect(host, atoi(colon + 1));
	if (!ctx || ctx->err || session_setup(ctx, w->o)) {
		w->failed = w->o->requests;
		redisFree(ctx);
		return NULL;
	}
	for (i = 0; i < w->o->requests; i++)
		w->failed += request(ctx, w->id, i) != 0;
	redisFree(ctx);
	return NULL;
}

/* ---- the pool -------------------------------------------------------------- */

static pool_t *make_pool(const struct opts *o)
{
	/* Written as in tcpool.conf: the close request keeps its quotes. */
	static const char *const kv[][2] = {
		{ "teardown", "peer-first" },
		{ "close_request", "\"QUIT\\r\\n\"" },
		{ "close_timeout_ms", "500" },
		{ "fallback", "abort" },
		{ "min_idle", "2" },
		{ "max_idle", "8" },
	};
	pool_hooks_t hooks = { .on_connect = on_connect, .ud = (void *)o };
	pool_config_t *cfg = pool_config_new();
	pool_t *pool = NULL;
	char err[256];
	size_t i;
	int rc;

	if (!cfg)
		return NULL;
	for (i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
		rc = pool_config_set(cfg, o->endpoint, kv[i][0], kv[i][1], err,
				     sizeof(err));
		if (rc) {
			fprintf(stderr, "redis-pool: %s\n", err);
			goto out;
		}
	}
	rc = pool_config_set_hooks(cfg, o->endpoint, &hooks);
	if (rc == 0)
		rc = pool_create(&pool, cfg);
	if (rc)
		fprintf(stderr, "redis-pool: %s\n", pool_strerror(rc));
out:
	pool_config_free(cfg); /* the pool has its own copy */
	return pool;
}

/* ---- main ------------------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run_threads(struct worker *w, const struct opts *o, pool_t *pool)
{
	void *(*fn)(void *) = pool ? pooled_worker : baseline_worker;
	int i, n, failed = 0;

	for (n = 0; n < o->threads; n++) {
		w[n] = (struct worker){ .o = o, .pool = pool, .id = n };
		if (pthread_create(&w[n].tid, NULL, fn, &w[n]) != 0) {
			failed += o->requests * (o->threads - n);
			break;
		}
	}
	for (i = 0; i < n; i++) {
		pthread_join(w[i].tid, NULL);
		failed += w[i].failed;
	}
	return failed;
}

static void usage(void)
{
	fprintf(stderr, "usage: redis-pool [-a PASSWORD] [-n DB] [-t THREADS] "
		"[-r REQUESTS] [-b] HOST:PORT\n");
	exit(2);
}

static void parse(int argc, char **argv, struct opts *o)
{
	int c;

	*o = (struct opts){ .password = getenv("REDISCLI_AUTH"), .threads = 4,
			    .requests = 100 };
	while ((c = getopt(argc, argv, "a:n:t:r:b")) != -1) {
		switch (c) {
		case 'a': o->password = optarg; break;
		case 'n': o->db = atoi(optarg); break;
		case 't': o->threads = atoi(optarg); break;
		case 'r': o->requests = atoi(optarg); break;
		case 'b': o->baseline = 1; break;
		default: usage();
		}
	}
	if (optind != argc - 1 || !strchr(argv[optind], ':') ||
	    o->threads < 1 || o->threads > MAX_THREADS || o->requests < 1 ||
	    o->db < 0)
		usage();
	o->endpoint = argv[optind];
}

int main(int argc, char **argv)
{
	struct worker w[MAX_THREADS];
	pool_stats_t st = { 0 };
	pool_tw_count_t tw = { 0 };
	pool_t *pool = NULL;
	struct opts o;
	int failed, total, tw_ok;
	double t0, secs;

	parse(argc, argv, &o);
	if (!o.baseline) {
		pool = make_pool(&o);
		if (!pool)
			return 1;
	}
	t0 = now_s();
	failed = run_threads(w, &o, pool);
	secs = now_s() - t0;
	total = o.threads * o.requests;
	if (pool) {
		pool_stats(pool, o.endpoint, &st);
		/* Sends QUIT on every idle connection and waits for Redis to
		 * close each one first. */
		pool_destroy(pool);
	}
	usleep(100 * 1000); /* let the last FIN/ACK exchanges land */
	tw_ok = pool_tw_count(o.endpoint, &tw) == 0;
	printf("%s: %d threads, %.0f requests/s, %llu connections opened",
	       o.baseline ? "baseline (a hiredis context per thread)" :
	       "tcpool (peer-first, min_idle 2)", o.threads, total / secs,
	       (unsigned long long)(pool ? st.connects : (uint64_t)o.threads));
	if (tw_ok)
		printf(", server TIME_WAIT %u\n%d requests, %d failed, "
		       "client TIME_WAIT %u\n", (unsigned)tw.server, total, failed,
		       (unsigned)tw.client);
	else
		printf("\n%d requests, %d failed, client TIME_WAIT n/a\n", total,
		       failed);
	return failed ? 1 : 0;
}
