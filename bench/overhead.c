/*
 * What the pool itself costs: pool_get + pool_put(POOL_REUSE) pairs on an
 * idle connection (validation bypassed by a large validate_idle_ms), next
 * to the floor any pool pays: a bare pthread mutex lock/unlock pair, and
 * a mutex-guarded stack (lock, pop, unlock, lock, push, unlock).
 *
 * Cost is reported as core-ns per pair: wall time x min(threads, cores)
 * / pairs. One thread: plain ns per pair. More threads than cores: time
 * slicing does not count against the pool, contention does.
 *
 * Every variant runs once per repetition, interleaved, and the medians
 * are reported, so that drift on a noisy machine hits all of them alike.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define MAX_REPS 15
#define MAX_EPS 4

enum variant_kind { V_MUTEX, V_STACK, V_POOL };

struct variant {
	enum variant_kind kind;
	int threads, neps;
	pool_t *pool;
	double ns[MAX_REPS];
};

/* The first is the floor the ratios are taken to. mutex-2t shows how
 * this machine scales two threads that share nothing. */
static struct variant variants[] = {
	{ V_MUTEX, 1, 0, NULL, { 0 } },
	{ V_MUTEX, 2, 0, NULL, { 0 } },
	{ V_STACK, 1, 0, NULL, { 0 } },
	{ V_POOL, 1, 1, NULL, { 0 } },
	{ V_POOL, 2, 1, NULL, { 0 } },
	{ V_POOL, 2, 2, NULL, { 0 } },
	{ V_POOL, 4, 1, NULL, { 0 } },
	{ V_POOL, 4, 4, NULL, { 0 } },
};
#define NVARIANTS (sizeof(variants) / sizeof(variants[0]))

/* A mutex-guarded stack, one per thread, each on its own cache lines.
 * The lock's address escapes into pthread calls, so the compiler keeps
 * every access to the stack. */
struct stack {
	pthread_mutex_t lock;
	void *items[8];
	int n;
} __attribute__((aligned(64)));

struct pair_worker {
	pthread_t thread;
	enum variant_kind kind;
	pool_t *pool;
	const char *endpoint;
	uint64_t ops;
	pthread_barrier_t *start;
	struct stack st;
	uint64_t t0, t1;
	int err;
};

static void mutex_pairs(struct pair_worker *w)
{
	for (uint64_t i = 0; i < w->ops; i++) {
		pthread_mutex_lock(&w->st.lock);
		pthread_mutex_unlock(&w->st.lock);
	}
}

static void stack_pairs(struct pair_worker *w)
{
	struct stack *s = &w->st;

	for (uint64_t i = 0; i < w->ops; i++) {
		void *item;

		pthread_mutex_lock(&s->lock);
		item = s->items[--s->n];
		pthread_mutex_unlock(&s->lock);
		pthread_mutex_lock(&s->lock);
		s->items[s->n++] = item;
		pthread_mutex_unlock(&s->lock);
	}
}

static void pool_pairs(struct pair_worker *w)
{
	pool_conn_t *conn;

	for (uint64_t i = 0; i < w->ops; i++) {
		w->err = pool_get(w->pool, w->endpoint, &conn);
		if (w->err != 0)
			break;
		pool_put(w->pool, conn, POOL_REUSE);
	}
}

static void *pair_main(void *arg)
{
	struct pair_worker *w = arg;

	pthread_mutex_init(&w->st.lock, NULL);
	w->st.n = 1;
	pthread_barrier_wait(w->start);
	w->t0 = bench_now_ns();
	if (w->kind == V_MUTEX)
		mutex_pairs(w);
	else if (w->kind == V_STACK)
		stack_pairs(w);
	else
		pool_pairs(w);
	w->t1 = bench_now_ns();
	pthread_mutex_destroy(&w->st.lock);
	return NULL;
}

struct ctx {
	const struct overhead_opts *o;
	const char *eps[MAX_EPS];
	int cores;
	struct row *rows;
	int cap, n;
	double floor_ns;   /* median mutex pair, one thread */
};

/* One repetition of a variant: core-ns per pair, or -1. */
static double variant_once(struct ctx *c, struct variant *v)
{
	struct pair_worker w[MAX_EPS];
	pthread_barrier_t start;
	uint64_t t0 = UINT64_MAX, t1 = 0;
	int cores = v->threads < c->cores ? v->threads : c->cores;
	int err = 0;

	pthread_barrier_init(&start, NULL, (unsigned)v->threads);
	for (int i = 0; i < v->threads; i++) {
		w[i] = (struct pair_worker){ .kind = v->kind, .pool = v->pool,
		        .ops = c->o->pair_ops, .start = &start };
		if (v->kind == V_POOL)
			w[i].endpoint = c->eps[i % v->neps];
		pthread_create(&w[i].thread, NULL, pair_main, &w[i]);
	}
	for (int i = 0; i < v->threads; i++) {
		pthread_join(w[i].thread, NULL);
		err = err ? err : w[i].err;
		t0 = w[i].t0 < t0 ? w[i].t0 : t0;
		t1 = w[i].t1 > t1 ? w[i].t1 : t1;
	}
	pthread_barrier_destroy(&start);
	if (err) {
		fprintf(stderr, "tcpool-bench: overhead: pool_get: %s\n",
		        pool_strerror(err));
		return -1;
	}
	return (double)(t1 - t0) * cores /
	       ((double)c->o->pair_ops * v->threads);
}

/* Open as many connections per endpoint as threads will share it, so
 * that the timed loop never connects. */
static int pool_warm(struct ctx *c, struct variant *v)
{
	pool_conn_t *held[MAX_EPS];
	int rc = 0, n = 0;

	for (; n < v->threads; n++) {
		rc = pool_get(v->pool, c->eps[n % v->neps], &held[n]);
		if (rc != 0)
			break;
	}
	while (n > 0)
		pool_put(v->pool, held[--n], POOL_REUSE);
	if (rc != 0)
		fprintf(stderr, "tcpool-bench: overhead: connect: %s\n",
		        pool_strerror(rc));
	return rc;
}

static int pool_open(struct ctx *c, struct variant *v)
{
	pool_config_t *cfg = pool_config_new();
	char num[16];
	int bad = !cfg;

	snprintf(num, sizeof(num), "%d", v->threads);
	if (!bad) {
		bad |= cfg_set(cfg, "teardown", "abort");
		bad |= cfg_set(cfg, "validate_idle_ms", "3600000");
		bad |= cfg_set(cfg, "max_idle", num);
		bad |= cfg_set(cfg, "max_uses", "0");
		bad |= cfg_set(cfg, "max_total", "0");
	}
	if (!bad && pool_create(&v->pool, cfg) != 0)
		bad = 1;
	pool_config_free(cfg);
	if (!bad && pool_warm(c, v) != 0)
		bad = 1;
	return bad ? -1 : 0;
}

static void variant_row(struct ctx *c, struct variant *v)
{
	struct row *r = &c->rows[c->n++];

	memset(r, 0, sizeof(*r));
	r->client_tw = r->server_tw = -1;
	r->threads = v->threads;
	r->ns_per_op = median_d(v->ns, (size_t)c->o->reps);
	if (v == &variants[0])
		c->floor_ns = r->ns_per_op;
	r->ratio = c->floor_ns > 0 ? r->ns_per_op / c->floor_ns : 0;
	r->requests = c->o->pair_ops * (uint64_t)v->threads;
	snprintf(r->server, sizeof(r->server), "-");
	snprintf(r->policy, sizeof(r->policy), "-");
	if (v->kind == V_MUTEX) {
		snprintf(r->scenario, sizeof(r->scenario), "overhead-mutex-%dt",
		         v->threads);
		snprintf(r->note, sizeof(r->note), "lock+unlock pair%s",
		         v->threads > 1 ? ", a mutex per thread" : ": the floor");
	} else if (v->kind == V_STACK) {
		snprintf(r->scenario, sizeof(r->scenario), "overhead-stack-1t");
		snprintf(r->note, sizeof(r->note),
		         "mutex-guarded stack pop+push");
	} else {
		snprintf(r->scenario, sizeof(r->scenario), "overhead-%dt-%dep",
		         v->threads, v->neps);
		snprintf(r->server, sizeof(r->server), "builtin");
		snprintf(r->policy, sizeof(r->policy), "abort");
		r->pooled = 1;
		snprintf(r->note, sizeof(r->note), "get+put pair, core-ns");
	}
}

static int pairs_all(struct ctx *c)
{
	int reps = c->o->reps;

	for (size_t i = 0; i < NVARIANTS; i++)
		if (variants[i].kind == V_POOL && pool_open(c, &variants[i]) != 0)
			return -1;
	for (int r = 0; r < reps; r++) {
		progress("overhead: get+put pairs, repetition %d/%d", r + 1, reps);
		for (size_t i = 0; i < NVARIANTS; i++) {
			variants[i].ns[r] = variant_once(c, &variants[i]);
			if (variants[i].ns[r] < 0)
				return -1;
		}
	}
	for (size_t i = 0; i < NVARIANTS && c->n < c->cap; i++)
		variant_row(c, &variants[i]);
	return 0;
}

static void pairs_close(void)
{
	for (size_t i = 0; i < NVARIANTS; i++) {
		pool_destroy(variants[i].pool);
		variants[i].pool = NULL;
	}
}

static intptr_t overhead_body(void *arg)
{
	struct ctx *c = arg;
	int rc = pairs_all(c);
	int more;

	pairs_close();
	if (rc != 0)
		return -1;
	more = throughput_run(c->o, c->eps[0], c->rows + c->n, c->cap - c->n);
	if (more < 0)
		return -1;
	c->n += more;
	return 0;
}

int overhead_run(const struct overhead_opts *o, const struct netenv *e,
                 struct row *rows, int cap)
{
	struct server srv[MAX_EPS];
	struct ctx c = { .o = o, .rows = rows, .cap = cap };
	int started = 0, rc = -1;

	if (o->reps > MAX_REPS || cap < (int)NVARIANTS)
		return -1;
	c.cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (c.cores < 1)
		c.cores = 1;
	for (; started < MAX_EPS; started++) {
		if (server_start(&srv[started], SRV_BUILTIN, e) != 0)
			goto out;
		c.eps[started] = srv[started].endpoint;
	}
	if (netenv_run(e, SIDE_CLIENT, overhead_body, &c) == 0)
		rc = c.n;
out:
	while (started > 0)
		server_stop(&srv[--started]);
	return rc;
}
