/*
 * The pool: creation, the endpoint table, destruction.
 *
 * Lock order, outermost first: shard.lock -> wait_lock. reaper.lock and
 * log_lock are leaves (nothing else is taken while they are held). No lock
 * is ever held across connect(), a teardown or a callback.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-keys.h"
#include "clock.h"
#include "memo.h"
#include "pool-internal.h"
#include "obs.h"
#include "park.h"
#include "resolve.h"

#undef uthash_nonfatal_oom
#define uthash_nonfatal_oom(obj) (hash_oom = true)

static struct pool_endpoint *endpoint_new(struct pool *pool, const char *key,
					   const struct endpoint_addr *addr)
{
	struct pool_endpoint *ep = calloc(1, sizeof(*ep));

	if (!ep)
		return NULL;
	ep->pool = pool;
	ep->key = strdup(key);
	if (!ep->key)
		goto fail;
	ep->addr = *addr;
	ep->quiet_since_ns = now_coarse_ns();
	if (config_resolve(pool->cfg, &ep->addr, &ep->set))
		goto fail;
	ep->hooks = config_resolve_hooks(pool->cfg, &ep->addr);
	return ep;
fail:
	free(ep->key);
	free(ep);
	return NULL;
}

static void endpoint_free(struct pool_endpoint *ep)
{
	settings_release(&ep->set);
	free(ep->key);
	free(ep);
}

/* A warning logged for ep within the last minute (shard lock held). */
static bool warned_lately(const struct ratelimit *rl, uint64_t now)
{
	return rl->last_ns && now - rl->last_ns < RATELIMIT_NS;
}

/* ep is being forgotten: keep its warning state if it still limits. */
static void memo_keep(struct shard *sh, const struct pool_endpoint *ep)
{
	uint64_t now = now_coarse_ns();
	struct warn_memo *m;

	if (!warned_lately(&ep->fallback_log, now) && !warned_lately(&ep->hook_log, now))
		return;
	m = &sh->memo[sh->memo_next++ % (sizeof(sh->memo) / sizeof(sh->memo[0]))];
	m->hashv = ep->hh.hashv;
	m->fallback_log = ep->fallback_log;
	m->hook_log = ep->hook_log;
}

/* A new record for a key forgotten lately takes its warning state back. */
static void memo_recall(struct shard *sh, struct pool_endpoint *ep, unsigned hashv)
{
	size_t i;

	for (i = 0; i < sizeof(sh->memo) / sizeof(sh->memo[0]); i++) {
		struct warn_memo *m = &sh->memo[i];

		if (m->hashv != hashv || !(m->fallback_log.last_ns || m->hook_log.last_ns))
			continue;
		ep->fallback_log = m->fallback_log;
		ep->hook_log = m->hook_log;
		memset(m, 0, sizeof(*m));
		return;
	}
}

/* Insert a new endpoint for key unless another thread beat us to it. */
static int endpoint_insert(struct pool *pool, struct shard *sh, const char *key,
			   const struct endpoint_addr *addr, unsigned hashv,
			   struct pool_endpoint **ep_out)
{
	struct pool_endpoint *ep, *found = NULL;
	size_t len = strlen(key);
	bool hash_oom = false;

	ep = endpoint_new(pool, key, addr);
	if (!ep)
		return POOL_ENOMEM;
	ep->shard = sh;
	/* Should it never hold a connection, it is forgotten in time. */
	maint_note_due(pool, endpoint_forget_due(ep));
	plock_lock(&sh->lock);
	HASH_FIND_BYHASHVALUE(hh, sh->table, key, len, hashv, found);
	if (found) {
		endpoint_free(ep);
		*ep_out = found;
		return 0;
	}
	HASH_ADD_KEYPTR_BYHASHVALUE(hh, sh->table, ep->key, len, hashv, ep);
	if (hash_oom) {
		plock_unlock(&sh->lock);
		endpoint_free(ep);
		return POOL_ENOMEM;
	}
	memo_recall(sh, ep, hashv);
	*ep_out = ep;
	return 0;
}

static atomic_uint_fast64_t pool_serials;

void table_forget(struct shard *sh, struct pool_endpoint *ep)
{
	memo_keep(sh, ep);
	stats_add_counters(&sh->gone, &ep->stats);
	obs_forget(sh, ep); /* its extra counters, into the shard's too */
	sh->gen++;
	HASH_DELETE(hh, sh->table, ep);
	endpoint_free(ep);
}

struct pool_endpoint *table_lookup(struct pool *pool, const char *key,
				   struct shard **sh_out, unsigned *hashv_out)
{
	struct pool_endpoint *ep = NULL;
	size_t len = strlen(key);
	unsigned hashv;

	HASH_VALUE(key, len, hashv);
	*sh_out = shard_for(pool, hashv);
	plock_lock(&(*sh_out)->lock);
	HASH_FIND_BYHASHVALUE(hh, (*sh_out)->table, key, len, hashv, ep);
	if (hashv_out)
		*hashv_out = hashv;
	return ep;
}

__attribute__((noinline)) int
endpoint_lock_slow(struct pool *pool, const char *key,
		   struct pool_endpoint **ep_out)
{
	struct endpoint_addr addr;
	struct pool_endpoint *ep;
	struct shard *sh;
	unsigned hashv;
	int rc;

	ep = table_lookup(pool, key, &sh, &hashv);
	if (ep)
		goto found;
	plock_unlock(&sh->lock);
	/* First use: parse and resolve settings outside the lock. A bad
	 * string never enters the table, so junk cannot grow it. */
	if (endpoint_parse(key, false, &addr, NULL, 0))
		return POOL_EENDPOINT;
	rc = endpoint_insert(pool, sh, key, &addr, hashv, &ep);
	if (rc)
		return rc;
found:
	memo_lookup(pool, ep, key);
	*ep_out = ep;
	return 0;
}

int pool_endpoint_lock(struct pool *pool, const char *key,
		       struct pool_endpoint **ep_out)
{
	struct pool_endpoint *ep = memo_hit(pool, key);

	if (!ep)
		return endpoint_lock_slow(pool, key, ep_out);
	*ep_out = ep;
	return 0;
}

static int shards_init(struct pool *pool)
{
	int i;

	for (i = 0; i < POOL_NSHARDS; i++)
		plock_init(&pool->shards[i].lock);
	pthread_mutex_init(&pool->wait_lock, NULL);
	pthread_mutex_init(&pool->log_lock, NULL);
	refill_init(pool);
	return reaper_init(&pool->reaper);
}

/* A message before the pool exists (pool_create failing): through the
 * configuration's log callback, else on stderr like pool_log. */
static void __attribute__((format(printf, 2, 3)))
create_log(const struct pool_config *cfg, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (cfg && cfg->log_fn)
		cfg->log_fn(POOL_LOG_WARN, msg, cfg->log_ud);
	else
		fprintf(stderr, "tcpool: %s\n", msg);
}

/* With no config given: defaults, then $TCPOOL_CONFIG if set.
 * secure_getenv: a set-uid program must not read a file its user names.
 * A bad file fails pool_create, and its message ("FILE:LINE: KEY:
 * reason") would otherwise be lost: it is logged. */
static int config_from_env(struct pool_config **out)
{
	struct pool_config *cfg = pool_config_new();
	const char *path = secure_getenv("TCPOOL_CONFIG");
	char err[512];
	int rc;

	if (!cfg)
		return POOL_ENOMEM;
	if (path && *path) {
		rc = pool_config_load(cfg, path, err, sizeof(err));
		if (rc) {
			create_log(NULL, "pool_create: $TCPOOL_CONFIG: %s", err);
			pool_config_free(cfg);
			return rc;
		}
	}
	*out = cfg;
	return 0;
}

POOL_API int pool_create(pool_t **out, const pool_config_t *cfg)
{
	struct pool *pool;
	char err[512];
	int rc;

	if (!out)
		return POOL_EINVAL;
	*out = NULL;
	fast_clock_init();
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return POOL_ENOMEM;
	pool->serial = atomic_fetch_add(&pool_serials, 1) + 1;
	if (cfg) {
		pool->cfg = config_copy(cfg);
		rc = pool->cfg ? 0 : POOL_ENOMEM;
	} else {
		rc = config_from_env(&pool->cfg);
	}
	if (rc)
		goto fail_cfg;
	/* Rules that span keys (peer-first needs a close_request, ...) are
	 * checked here, since pool_config_set takes keys in any order. */
	pool->log_fn = pool->cfg->log_fn;
	pool->log_ud = pool->cfg->log_ud;
	if (config_validate(pool->cfg, err, sizeof(err))) {
		create_log(pool->cfg, "pool_create: %s", err);
		rc = POOL_ECONFIG;
		goto fail_cfg;
	}
	/* Keys this kernel cannot honour (local_port_range before 6.3)
	 * fail here rather than at every connect. */
	rc = socket_check_support(pool->cfg, err, sizeof(err));
	if (rc) {
		create_log(pool->cfg, "pool_create: %s", err);
		goto fail_cfg;
	}
	rc = shards_init(pool);
	if (rc)
		goto fail_cfg;
	park_init(pool);
	rc = fork_register(pool);
	if (rc)
		goto fail_reaper;
	rc = maint_start(pool);
	if (rc)
		goto fail_fork;
	/* Last, so no failure path above has a resolver to undo: nothing
	 * looks a name up before pool_create returns (no sweep is due). */
	rc = resolve_init(pool);
	if (rc) {
		pool_destroy(pool);
		return rc;
	}
	*out = pool;
	return 0;
fail_fork:
	fork_unregister(pool);
fail_reaper:
	park_fini(pool);
	reaper_fini(&pool->reaper);
	refill_fini(pool);
fail_cfg:
	pool_config_free(pool->cfg);
	free(pool);
	return rc;
}

/* Take every idle connection out of every endpoint, for retirement. */
static struct pool_conn *collect_idle(struct pool *pool)
{
	struct pool_conn *all = NULL, *c, *tmp;
	struct pool_endpoint *ep, *etmp;
	int i;

	for (i = 0; i < POOL_NSHARDS; i++) {
		struct shard *sh = &pool->shards[i];

		plock_lock(&sh->lock);
		HASH_ITER(hh, sh->table, ep, etmp) {
			DL_FOREACH_SAFE(ep->idle, c, tmp) {
				idle_remove(pool, ep, c);
				DL_APPEND(all, c);
			}
		}
		plock_unlock(&sh->lock);
	}
	return all;
}

/* Checked-out connections are left to their holders: the descriptor stays
 * open (closing it under a thread that still uses it could hit a reused
 * number); only the pool's record of it goes. */
static unsigned free_endpoints(struct pool *pool)
{
	struct pool_endpoint *ep, *etmp;
	struct pool_conn *c, *tmp;
	unsigned left_out = 0;
	int i;

	for (i = 0; i < POOL_NSHARDS; i++) {
		struct shard *sh = &pool->shards[i];

		HASH_ITER(hh, sh->table, ep, etmp) {
			DL_FOREACH_SAFE(ep->busy, c, tmp) {
				DL_DELETE(ep->busy, c);
				conn_free(c);
				left_out++;
			}
			HASH_DELETE(hh, sh->table, ep);
			endpoint_free(ep);
		}
	}
	return left_out;
}

/* Run drains until all are done; each has its own deadline, and they all
 * started now, so this takes at most the longest close_timeout_ms. */
static void finish_drains(struct pool *pool)
{
	int next;

	do {
		next = reaper_run(pool, 0);
		if (next >= 0)
			next = reaper_run(pool, next > 50 ? 50 : next);
	} while (next >= 0);
}

POOL_API void pool_destroy(pool_t *pool)
{
	struct pool_conn *idle, *c, *tmp;
	unsigned left_out;

	if (!pool)
		return;
	fork_check(pool);
	atomic_store(&pool->shutting_down, true);
	maint_stop(pool);
	/* Never joins a lookup: one stuck in getaddrinfo ends on its own. */
	resolve_fini(pool);
	/* Threads' parked connections: to the idle lists, retired below. */
	park_close(pool);
	idle = collect_idle(pool);
	DL_FOREACH_SAFE(idle, c, tmp) {
		DL_DELETE(idle, c);
		conn_retire(pool, c, false, RR_DESTROY);
	}
	finish_drains(pool);
	left_out = free_endpoints(pool);
	if (left_out)
		pool_log(pool, POOL_LOG_WARN,
			 "pool_destroy: %u connection(s) still checked out; "
			 "their descriptors are left open to their holders",
			 left_out);
	fork_unregister(pool);
	/* No thread's exit can reach the slots any more (fork_with_pool). */
	park_fini(pool);
	reaper_fini(&pool->reaper);
	refill_fini(pool);
	pthread_mutex_destroy(&pool->wait_lock);
	pthread_mutex_destroy(&pool->log_lock);
	pool_config_free(pool->cfg);
	free(pool);
}

POOL_API void pool_set_log(pool_t *pool, pool_log_fn fn, void *ud)
{
	if (!pool)
		return;
	pthread_mutex_lock(&pool->log_lock);
	pool->log_fn = fn;
	pool->log_ud = ud;
	pthread_mutex_unlock(&pool->log_lock);
}

void pool_log(struct pool *pool, int level, const char *fmt, ...)
{
	char msg[512];
	pool_log_fn fn;
	void *ud;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&pool->log_lock);
	fn = pool->log_fn;
	ud = pool->log_ud;
	pthread_mutex_unlock(&pool->log_lock);
	if (fn)
		fn(level, msg, ud);
	else
		fprintf(stderr, "tcpool: %s\n", msg);
}
