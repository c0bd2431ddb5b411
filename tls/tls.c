/*
 * libtcpool-tls's public functions: the shared state, installing the
 * hooks, and a connection's TLS state and application data.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls-internal.h"

/* Every live pool_tls, for the fork handlers. A thread may hold a
 * pool_tls lock when another forks: the child would inherit it locked
 * with no thread to release it, and its first TLS connect would hang.
 * So fork() takes all_lock and every lock first (prepare), and the
 * child, whose one thread is the forking one, releases them. Lock order: all_lock, then a tls->lock. */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pool_tls *all;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static int fork_rc;

static void fork_prepare(void)
{
	struct pool_tls *t;

	pthread_mutex_lock(&all_lock);
	for (t = all; t; t = t->next_all)
		pthread_mutex_lock(&t->lock);
}

static void fork_parent(void)
{
	struct pool_tls *t;

	for (t = all; t; t = t->next_all)
		pthread_mutex_unlock(&t->lock);
	pthread_mutex_unlock(&all_lock);
}

/* The child has one thread, the one that forked, which took every lock
 * in prepare and so may release them, as the parent does (the core's
 * fork.c does the same). Re-initialising a mutex held by the caller
 * instead is undefined, and TSan reports the next lock as a double lock. */
static void fork_child(void)
{
	fork_parent();
}

static void fork_register(void)
{
	fork_rc = pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static void all_add(struct pool_tls *tls)
{
	pthread_mutex_lock(&all_lock);
	tls->next_all = all;
	all = tls;
	pthread_mutex_unlock(&all_lock);
}

static void all_remove(struct pool_tls *tls)
{
	struct pool_tls **p;

	pthread_mutex_lock(&all_lock);
	for (p = &all; *p && *p != tls; p = &(*p)->next_all)
		;
	if (*p)
		*p = tls->next_all;
	pthread_mutex_unlock(&all_lock);
}

POOL_API pool_tls_t *pool_tls_new(void)
{
	struct pool_tls *tls;

	/* OpenSSL 1.1+ initialises itself; this only makes a failure show
	 * here rather than at the first connect. */
	if (OPENSSL_init_ssl(0, NULL) != 1)
		return NULL;
	pthread_once(&fork_once, fork_register);
	if (fork_rc != 0)
		return NULL;
	tls = calloc(1, sizeof(*tls));
	if (tls && pthread_mutex_init(&tls->lock, NULL) != 0) {
		free(tls);
		tls = NULL;
	}
	if (tls)
		all_add(tls);
	return tls;
}

POOL_API int pool_tls_config(pool_tls_t *tls, pool_config_t *cfg,
                             const char *endpoint, const pool_hooks_t *inner)
{
	struct tls_install *inst;
	pool_hooks_t hooks = { .on_connect = tls_on_connect,
	                       .close_request = tls_close_request };
	int rc;

	if (!tls || !cfg)
		return POOL_EINVAL;
	inst = calloc(1, sizeof(*inst));
	if (!inst)
		return POOL_ENOMEM;
	inst->tls = tls;
	if (inner)
		inst->inner = *inner;
	hooks.ud = inst;
	rc = pool_config_set_hooks(cfg, endpoint, &hooks);
	if (rc) {
		free(inst);
		return rc;
	}
	/* Kept until pool_tls_free: copies of cfg point to it too. */
	pthread_mutex_lock(&tls->lock);
	inst->next = tls->installs;
	tls->installs = inst;
	pthread_mutex_unlock(&tls->lock);
	return 0;
}

POOL_API void pool_tls_free(pool_tls_t *tls)
{
	struct tls_install *inst, *next;

	if (!tls)
		return;
	all_remove(tls);
	tls_conns_free(tls);
	tls_sessions_free(tls);
	tls_ctxs_free(tls);
	for (inst = tls->installs; inst; inst = next) {
		next = inst->next;
		free(inst);
	}
	pthread_mutex_destroy(&tls->lock);
	free(tls);
}

/* The slot holds our state only if on_connect put it there and nobody
 * replaced it. Anything else (NULL, a pool_socket() connection, the
 * application's own pool_conn_set_data) is told apart by the magic,
 * read first: a misaligned pointer is not ours either. */
struct tls_conn *tls_conn_get(const pool_conn_t *conn)
{
	struct tls_conn *tc = pool_conn_data(conn);

	if (!tc || (uintptr_t)tc % _Alignof(struct tls_conn) != 0 ||
	    tc->magic != TLS_CONN_MAGIC)
		return NULL;
	return tc;
}

POOL_API SSL *pool_tls_ssl(const pool_conn_t *conn)
{
	struct tls_conn *tc = tls_conn_get(conn);

	return tc ? tc->ssl : NULL;
}

POOL_API void *pool_tls_data(const pool_conn_t *conn)
{
	struct tls_conn *tc = tls_conn_get(conn);

	return tc ? tc->data : NULL;
}

POOL_API void pool_tls_set_data(pool_conn_t *conn, void *data,
                                void (*free_fn)(void *data))
{
	struct tls_conn *tc = tls_conn_get(conn);

	if (!tc)
		return;
	tc->data = data;
	tc->free_fn = free_fn;
}

void tls_conn_track(struct tls_conn *tc)
{
	struct pool_tls *tls = tc->inst->tls;

	tc->magic = TLS_CONN_MAGIC;
	pthread_mutex_lock(&tls->lock);
	tc->prev = NULL;
	tc->next = tls->conns;
	if (tls->conns)
		tls->conns->prev = tc;
	tls->conns = tc;
	pthread_mutex_unlock(&tls->lock);
}

static void conn_untrack(struct tls_conn *tc)
{
	struct pool_tls *tls = tc->inst->tls;

	pthread_mutex_lock(&tls->lock);
	if (tc->prev)
		tc->prev->next = tc->next;
	else
		tls->conns = tc->next;
	if (tc->next)
		tc->next->prev = tc->prev;
	pthread_mutex_unlock(&tls->lock);
}

static void conn_release(struct tls_conn *tc)
{
	if (tc->ssl) {
		/* A connection retired by abort, close or after a failed
		 * peer-first never saw a close_notify; OpenSSL would then take
		 * its session for a bad one and spoil the cached copy. It was
		 * a good session: the pool chose to end the connection. */
		if (SSL_is_init_finished(tc->ssl))
			SSL_set_shutdown(tc->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
		SSL_free(tc->ssl);
	}
	if (tc->free_fn)
		tc->free_fn(tc->data);
	free(tc->sess_key);
	tc->magic = 0; /* a stale pointer to it no longer passes for ours */
	free(tc);
}

/* The pool calls this once, after the socket is closed (it is the
 * free_fn on_connect set, so data is ours unless the slot was replaced,
 * in which case the pool calls the application's instead). */
void tls_conn_free(void *data)
{
	struct tls_conn *tc = data;

	if (!tc || tc->magic != TLS_CONN_MAGIC)
		return;
	conn_untrack(tc);
	conn_release(tc);
}

/* States still live after every pool is destroyed: the ones the
 * application displaced from their slot with pool_conn_set_data. */
void tls_conns_free(struct pool_tls *tls)
{
	struct tls_conn *tc, *next;

	for (tc = tls->conns; tc; tc = next) {
		next = tc->next;
		conn_release(tc);
	}
	tls->conns = NULL;
}

int tls_setting(const pool_conn_t *conn, const char *key, char *buf, size_t len)
{
	int n = pool_conn_setting(conn, key, buf, len);

	if (n <= 0)
		return 0;
	if ((size_t)n < len)
		return 1;
	tls_log(conn, "%s is too long (%d bytes; at most %zu)", key, n, len - 1);
	return -1;
}

void tls_log(const pool_conn_t *conn, const char *fmt, ...)
{
	char msg[600];
	int n;
	va_list ap;

	n = snprintf(msg, sizeof(msg), "tls: %s: ", pool_conn_endpoint(conn));
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	pool_conn_log(conn, POOL_LOG_WARN, msg);
}

int tls_fd_nonblock(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags >= 0 && !(flags & O_NONBLOCK))
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	return flags;
}

void tls_fd_restore(int fd, int flags)
{
	if (flags >= 0 && !(flags & O_NONBLOCK))
		fcntl(fd, F_SETFL, flags);
}
