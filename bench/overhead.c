/*
 * What the pool itself costs: pool_get + pool_put(POOL_REUSE) pairs on an
 * idle connection (validation bypassed by a large validate_idle_ms), next
 * to the floor any pool pays: a bare pthread mutex lock/unlock pair, and
 * a mutex-guarded stack (lock, pop, unlock, lock, push, unlock), and to
 * the reference the project's target names: libmemcached's pool, a
 * memcached_pool_fetch + memcached_pool_release pair (libmc.c).
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

#define MAX_EPS 4

enum variant_kind { V_MUTEX, V_STACK, V_LIBMC, V_POOL };

/* neps: endpoints for V_POOL, libmemcached pools for V_LIBMC; threads
 * share them round robin. */
struct variant {
	enum variant_kind kind;
	int threads, neps;
	pool_t *pool;
	struct libmc_pool *mc[MAX_EPS];
	double ns[BENCH_MAX_REPS];
	double median;
};

/* The first is the floor the ratios are taken to. mutex-2t shows how
 * this machine scales two threads that share nothing. Each V_LIBMC has
 * the shape of the V_POOL it is the reference of (same threads, neps). */
static struct variant variants[] = {
	{ .kind = V_MUTEX, .threads = 1 },
	{ .kind = V_MUTEX, .threads = 2 },
	{ .kind = V_STACK, .threads = 1 },
	{ .kind = V_LIBMC, .threads = 1, .neps = 1 },
	{ .kind = V_LIBMC, .threads = 2, .neps = 2 },
	{ .kind = V_LIBMC, .threads = 2, .neps = 1 },
	{ .kind = V_POOL, .threads = 1, .neps = 1 },
	{ .kind = V_POOL, .threads = 2, .neps = 1 },
	{ .kind = V_POOL, .threads = 2, .neps = 2 },
	{ .kind = V_POOL, .threads = 4, .neps = 1 },
	{ .kind = V_POOL, .threads = 4, .neps = 4 },
};
#define NVARIANTS (sizeof(variants) / sizeof(variants[0]))

/* The order the variants run in within a repetition: each pool variant
 * next to the floor and the libmemcached reference it is compared with,
 * so that a ratio's two figures see the same moment of a shared machine
 * (another program taking a CPU for a while halves a 2-thread variant's
 * speed, and the floor measured a few variants earlier would not know). */
static const unsigned run_order[] = { 0, 6, 3, 2, 1, 8, 4, 7, 5, 9, 10 };
_Static_assert(sizeof(run_order) / sizeof(run_order[0]) == NVARIANTS,
               "run_order must name every variant");

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
	struct libmc_pool *mc;
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
	else if (w->kind == V_LIBMC)
		w->err = libmc_pairs(w->mc, w->ops);
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
	bool failed;
};

/* Without libmemcachedutil the reference variants are left out. */
static bool variant_on(const struct variant *v)
{
	return v->kind != V_LIBMC || libmc_available();
}

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
		if (v->kind == V_LIBMC)
			w[i].mc = v->mc[i % v->neps];
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
		if (v->kind == V_POOL)   /* libmc_pairs said why itself */
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

/* neps pools, each with one server (a built-in server's address) and a
 * handle for every thread that shares it. */
static int libmc_open_all(struct ctx *c, struct variant *v)
{
	unsigned size = (unsigned)(v->threads / v->neps);

	for (int i = 0; i < v->neps; i++) {
		v->mc[i] = libmc_open(c->eps[i], size);
		if (!v->mc[i])
			return -1;
	}
	return 0;
}

static int variant_open(struct ctx *c, struct variant *v)
{
	if (v->kind == V_POOL)
		return pool_open(c, v);
	if (v->kind == V_LIBMC && variant_on(v))
		return libmc_open_all(c, v);
	return 0;
}

/* The libmemcached variant of v's shape, NULL when there is none. */
static const struct variant *libmc_ref(const struct variant *v)
{
	for (size_t i = 0; i < NVARIANTS; i++) {
		const struct variant *m = &variants[i];

		if (m->kind == V_LIBMC && variant_on(m) &&
		    m->threads == v->threads && m->neps == v->neps)
			return m;
	}
	return NULL;
}

static void libmc_names(const struct variant *v, struct row *r)
{
	const char *shared = v->neps < v->threads ? "-shared" : "";

	snprintf(r->scenario, sizeof(r->scenario),
	         "overhead-libmemcached-%dt%s", v->threads, shared);
	snprintf(r->note, sizeof(r->note),
	         "memcached_pool_fetch+release pair, core-ns%s",
	         v->threads == 1 ? "" : *shared ? ", one pool shared"
	                                        : ", a pool per thread");
}

static void variant_row(struct ctx *c, struct variant *v)
{
	struct row *r = &c->rows[c->n++];
	const struct variant *ref = v->kind == V_POOL ? libmc_ref(v) : NULL;

	memset(r, 0, sizeof(*r));
	r->client_tw = r->server_tw = -1;
	r->threads = v->threads;
	r->ns_per_op = v->median;
	r->ratio = c->floor_ns > 0 ? r->ns_per_op / c->floor_ns : 0;
	r->vs_libmc = ref && ref->median > 0 ? v->median / ref->median : 0;
	r->requests = c->o->pair_ops * (uint64_t)v->threads;
	r->nreps = c->o->reps;
	memcpy(r->reps, v->ns, sizeof(r->reps));
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
	} else if (v->kind == V_LIBMC) {
		libmc_names(v, r);
	} else {
		snprintf(r->scenario, sizeof(r->scenario), "overhead-%dt-%dep",
		         v->threads, v->neps);
		snprintf(r->server, sizeof(r->server), "builtin");
		snprintf(r->policy, sizeof(r->policy), "abort");
		r->pooled = 1;
		snprintf(r->note, sizeof(r->note), "get+put pair, core-ns");
	}
}

/* The pair's cost at 1 and 2 threads on one endpoint, in mutex pairs
 * and against libmemcached's pair of the same shape: the figures the
 * hot path is judged on, printed as soon as they are known. */
static void pairs_progress(const struct ctx *c)
{
	for (size_t i = 0; i < NVARIANTS; i++) {
		const struct variant *v = &variants[i];
		const struct variant *ref = libmc_ref(v);

		if (v->kind != V_POOL || v->neps != 1 || v->threads > 2)
			continue;
		if (ref && ref->median > 0)
			progress("overhead: get+put, %d thread%s on one endpoint: "
			         "%.1f ns, %.2f mutex pairs, %.2fx libmemcached's "
			         "%.1f ns", v->threads, v->threads > 1 ? "s" : "",
			         v->median, v->median / c->floor_ns,
			         v->median / ref->median, ref->median);
		else
			progress("overhead: get+put, %d thread%s on one endpoint: "
			         "%.1f ns, %.2f mutex pairs", v->threads,
			         v->threads > 1 ? "s" : "", v->median,
			         v->median / c->floor_ns);
	}
}

static int pairs_all(struct ctx *c)
{
	int reps = c->o->reps;

	if (!libmc_available())
		progress("overhead: libmemcached's pool is unavailable (built "
		         "without libmemcachedutil): no reference rows");
	for (size_t i = 0; i < NVARIANTS; i++)
		if (variant_open(c, &variants[i]) != 0)
			return -1;
	progress("overhead: get+put pairs, %d repetitions", reps);
	for (int r = 0; r < reps; r++) {
		for (size_t k = 0; k < NVARIANTS; k++) {
			struct variant *v = &variants[run_order[k]];

			if (!variant_on(v))
				continue;
			v->ns[r] = variant_once(c, v);
			if (v->ns[r] < 0)
				return -1;
		}
	}
	/* all medians first: a row's ratios need the floor's and the
	 * reference's, which may come later in the table */
	for (size_t i = 0; i < NVARIANTS; i++)
		if (variant_on(&variants[i]))
			variants[i].median = median_d(variants[i].ns, (size_t)reps);
	c->floor_ns = variants[0].median;
	for (size_t i = 0; i < NVARIANTS && c->n < c->cap; i++)
		if (variant_on(&variants[i]))
			variant_row(c, &variants[i]);
	pairs_progress(c);
	return 0;
}

static void pairs_close(void)
{
	for (size_t i = 0; i < NVARIANTS; i++) {
		pool_destroy(variants[i].pool);
		variants[i].pool = NULL;
		for (int k = 0; k < MAX_EPS; k++) {
			libmc_close(variants[i].mc[k]);
			variants[i].mc[k] = NULL;
		}
	}
}

/* The pairs, then throughput: a failure of one keeps the other's rows,
 * so that a reference that could not be measured is named as missing
 * rather than taking every overhead row with it. */
static intptr_t overhead_body(void *arg)
{
	struct ctx *c = arg;
	int rc = pairs_all(c);
	int more;

	pairs_close();
	if (rc != 0) {
		c->failed = true;
		c->n = 0;
	}
	more = throughput_run(c->o, c->eps[0], c->rows + c->n, c->cap - c->n);
	if (more < 0)
		c->failed = true;
	else
		c->n += more;
	return 0;
}

int overhead_run(const struct overhead_opts *o, const struct netenv *e,
                 struct row *rows, int cap, bool *failed)
{
	struct server srv[MAX_EPS];
	struct ctx c = { .o = o, .rows = rows, .cap = cap };
	int started = 0, rc = -1;

	*failed = true;
	if (o->reps > BENCH_MAX_REPS || cap < (int)NVARIANTS)
		return -1;
	c.cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (c.cores < 1)
		c.cores = 1;
	for (; started < MAX_EPS; started++) {
		if (server_start(&srv[started], SRV_BUILTIN, e) != 0)
			goto out;
		c.eps[started] = srv[started].endpoint;
	}
	if (netenv_run(e, SIDE_CLIENT, overhead_body, &c) == 0) {
		rc = c.n;
		*failed = c.failed;
	}
out:
	while (started > 0)
		server_stop(&srv[--started]);
	return rc;
}
