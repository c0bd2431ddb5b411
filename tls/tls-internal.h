/*
 * Internals of libtcpool-tls. It uses only tcpool's public API (hooks,
 * pool_conn_setting, pool_conn_log) and OpenSSL: a pool knows nothing
 * of TLS.
 *
 * Locking: pool_tls.lock guards the context list, the session cache,
 * the install list and the list of live connection states. It is held
 * only for list work, never while reading a file or talking to a
 * server, and fork() takes it first (pthread_atfork, tls.c): a child
 * never inherits it locked by a thread it does not have. Connections are touched only by the thread that
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
	struct tls_conn *conns;  /* every live tls_conn */
	struct pool_tls *next_all; /* the list fork() walks (tls.c) */
};

/* "tlsconn1": marks a data slot that holds our state. The slot may hold
 * something else: a pool_socket() connection never ran on_connect, and
 * an application may call pool_conn_set_data() itself. */
#define TLS_CONN_MAGIC UINT64_C(0x746c73636f6e6e31)

/* A connection's data slot: the TLS state, and the application's data. */
struct tls_conn {
	uint64_t magic;          /* TLS_CONN_MAGIC, first: checked before
	                          * anything else is read */
	SSL *ssl;                /* NULL when the endpoint has tls = off */
	struct tls_install *inst;
	char *sess_key;          /* where its sessions are cached */
	unsigned sessions;       /* sessions the server gave it (tickets) */
	void *data;              /* pool_tls_set_data */
	void (*free_fn)(void *data);
	/* In tls->conns: a state the application displaced from the slot
	 * (pool_conn_set_data) is still freed, by pool_tls_free. */
	struct tls_conn *prev, *next;
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

/* conn's TLS state, or NULL when its data slot holds anything else. */
struct tls_conn *tls_conn_get(const pool_conn_t *conn);
/* Add tc to / free tc and remove it from its pool_tls's live list. */
void tls_conn_track(struct tls_conn *tc);
void tls_conns_free(struct pool_tls *tls);

int tls_on_connect(pool_conn_t *conn, void *ud);
int tls_close_request(pool_conn_t *conn, void *ud);
void tls_conn_free(void *data);

/* A key's value for conn as text: 1 when set, 0 when unset (empty), -1
 * (logged) when it does not fit len. Too long is not unset: a value
 * dropped silently would let a default (the endpoint's host for
 * tls_server_name, the system store for tls_ca_file) stand in for it. */
int tls_setting(const pool_conn_t *conn, const char *key, char *buf,
                size_t len);

/* Log "tls: ENDPOINT: ..." through the pool's log. */
void tls_log(const pool_conn_t *conn, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Set fd's O_NONBLOCK flag and return the flags it had, for
 * tls_fd_restore(). */
int tls_fd_nonblock(int fd);
void tls_fd_restore(int fd, int flags);

#endif /* TCPOOL_TLS_INTERNAL_H */
