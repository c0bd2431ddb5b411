/*
 * Internals of libtcpool-tls. It uses only tcpool's public API (hooks,
 * pool_conn_setting, pool_conn_log) and OpenSSL: a pool knows nothing
 * of TLS.
 *
 * Locking: pool_tls.lock guards the context list, the session cache and
 * the install list. Connections are touched only by the thread that
 * holds them (on_connect, the application, the close_request hook), as
 * the pool guarantees.
 */
#ifndef TCPOOL_TLS_INTERNAL_H
#define TCPOOL_TLS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "tcpool-tls.h"

/* The settings one OpenSSL context stands for: the trust and identity
 * keys. The server name is per connection. */
struct tls_ctx_key {
	bool verify;
	char *ca_file, *cert_file, *key_file; /* NULL when unset */
};

struct tls_ctx {
	struct tls_ctx_key key;
	SSL_CTX *ctx;
	struct tls_ctx *next;
};

/* The last session got from one endpoint under one server name and one
 * context, offered at the next connect there. A list: next to a TLS
 * handshake, a walk over the endpoints an application talks to is free. */
struct tls_sess {
	char *key;               /* "ENDPOINT\nSERVER_NAME" */
	SSL_CTX *ctx;            /* the context it came from */
	SSL_SESSION *sess;       /* one reference, ours */
	struct tls_sess *next;
};

/* What one pool_tls_config() call installed: the hooks' ud. */
struct tls_install {
	struct pool_tls *tls;
	pool_hooks_t inner;
	struct tls_install *next;
};

struct pool_tls {
	pthread_mutex_t lock;
	struct tls_ctx *ctxs;
	struct tls_sess *sessions;
	struct tls_install *installs;
};

/* A connection's data slot: the TLS state, and the application's data. */
struct tls_conn {
	SSL *ssl;                /* NULL when the endpoint has tls = off */
	struct tls_install *inst;
	char *sess_key;          /* where its sessions are cached */
	unsigned sessions;       /* sessions the server gave it (tickets) */
	void *data;              /* pool_tls_set_data */
	void (*free_fn)(void *data);
};

/* ---- contexts and sessions (ctx.c) ---- */

/* The context for key, made and kept on first use. NULL with why filled
 * (an unreadable CA file, a key that does not match its certificate). */
SSL_CTX *tls_ctx_get(struct pool_tls *tls, const struct tls_ctx_key *key,
                     char *why, size_t whylen);
void tls_ctxs_free(struct pool_tls *tls);

/* Offer ssl the session cached under key for its context, if any. */
void tls_session_offer(struct pool_tls *tls, SSL *ssl, const char *key);
void tls_sessions_free(struct pool_tls *tls);

/* The tls_conn of an SSL (ex_data), or NULL. */
struct tls_conn *tls_conn_of(const SSL *ssl);
/* Tie ssl to tc; false when OpenSSL cannot. */
bool tls_conn_bind(SSL *ssl, struct tls_conn *tc);

/* OpenSSL's reason for the last failure in this thread, with the
 * certificate verification result of ssl (may be NULL) when it failed.
 * Clears the thread's error queue. */
void tls_reason(char *out, size_t outlen, const SSL *ssl);

/* ---- hooks (connect.c, close.c) ---- */

int tls_on_connect(pool_conn_t *conn, void *ud);
int tls_close_request(pool_conn_t *conn, void *ud);
void tls_conn_free(void *data);

/* A key's value for conn as text; false when it is empty or too long. */
bool tls_setting(const pool_conn_t *conn, const char *key, char *buf,
                 size_t len);

/* Log "tls: ENDPOINT: ..." through the pool's log. */
void tls_log(const pool_conn_t *conn, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Set fd's O_NONBLOCK flag and return the flags it had, for
 * tls_fd_restore(). */
int tls_fd_nonblock(int fd);
void tls_fd_restore(int fd, int flags);

#endif /* TCPOOL_TLS_INTERNAL_H */
