/*
 * tcpool-tls — TLS for tcpool's connections, as pool hooks (OpenSSL).
 *
 * The pool stays a TCP pool: this library installs an on_connect hook
 * that runs the TLS handshake (certificate and host name verification,
 * SNI, session resumption) and a close_request hook that sends the
 * protocol's close request through TLS before the pool waits for the
 * server's EOF as for any peer-first close. Which
 * endpoints talk TLS, and how, is configuration: the keys tls,
 * tls_verify, tls_ca_file, tls_server_name, tls_cert_file and
 * tls_key_file of tcpool.conf(5).
 *
 *	pool_tls_t *tls = pool_tls_new();
 *	pool_tls_config(tls, cfg, NULL, &my_hooks);  (or NULL: no hooks)
 *	pool_create(&pool, cfg);
 *	... SSL_write(pool_tls_ssl(conn), ...) ...
 *	pool_destroy(pool);
 *	pool_tls_free(tls);
 *
 * Conventions are tcpool.h's: 0 or a negative POOL_E* code; safe from
 * many threads. Link with pkg-config tcpool-tls.
 */
#ifndef TCPOOL_TLS_H
#define TCPOOL_TLS_H

#include <openssl/ssl.h>

#include "tcpool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pool_tls pool_tls_t; /* opaque */

/* TLS state shared by the pools of an application: one OpenSSL context
 * per distinct CA/verify/client-certificate settings (files are read at
 * the first connection that needs them), and the last session of each
 * endpoint, for resumption. Its lock is safe across fork() (atfork
 * handlers) and never held while a file is read. NULL when out of memory. The caller owns it:
 * free it with pool_tls_free() once every pool using it is destroyed. */
POOL_API pool_tls_t *pool_tls_new(void);

/* Install the TLS hooks on the [pool] section of cfg (endpoint NULL),
 * the defaults of every endpoint, or on the section [endpoint ENDPOINT],
 * in place of pool_config_set_hooks(): the hooks run inner's (copied;
 * NULL: none) around TLS. For an endpoint with tls = on:
 *  - on_connect: the handshake, then inner's on_connect, which does its
 *    I/O through pool_tls_ssl(conn);
 *  - close_request (peer-first): inner's close_request, writing through
 *    pool_tls_ssl(conn) on a non-blocking socket, or else the endpoint's
 *    close_request bytes written through TLS. No close_notify follows
 *    (it would reach the server unread and turn its FIN into an RST):
 *    the pool waits for the server's TCP EOF as usual.
 * For an endpoint with tls = off, inner's hooks run as they would
 * without TLS (and the close_request bytes are sent as the pool would).
 * The connection's data slot holds the TLS state: applications use
 * pool_tls_data()/pool_tls_set_data() instead of pool_conn_data()/
 * pool_conn_set_data(), on every endpoint, TLS or not. A connection
 * whose slot holds something else (the application replaced it, or
 * pool_socket() made it) has no TLS state: pool_tls_ssl/pool_tls_data
 * return NULL, and peer-first sends the request as without the hooks
 * for tls = off, and falls back for tls = on. The slot must then hold
 * NULL or a pointer to at least 8 readable bytes.
 * tls must outlive every pool made from cfg (or a copy of it). Returns 0,
 * POOL_EINVAL (tls or cfg NULL), POOL_EENDPOINT (bad pattern) or
 * POOL_ENOMEM; on failure cfg is unchanged. */
POOL_API int pool_tls_config(pool_tls_t *tls, pool_config_t *cfg,
                             const char *endpoint, const pool_hooks_t *inner);

/* Free the TLS state: contexts, cached sessions, installed hooks' state,
 * and connections' TLS state the application displaced from the slot.
 * Only after pool_destroy() of every pool that uses it. NULL is fine. */
POOL_API void pool_tls_free(pool_tls_t *tls);

/* The TLS connection of conn, for the application's own I/O (SSL_read,
 * SSL_write on a blocking or non-blocking descriptor alike); NULL when
 * conn's endpoint has tls = off or conn's data slot holds no TLS state
 * (see pool_tls_config). Owned by the pool: valid until
 * pool_put(); never SSL_free or SSL_shutdown it. Only for connections of
 * a configuration set up with pool_tls_config(). */
POOL_API SSL *pool_tls_ssl(const pool_conn_t *conn);

/* The application's data attached to conn (NULL until set), kept next to
 * the TLS state in the connection's data slot; as pool_conn_data(). */
POOL_API void *pool_tls_data(const pool_conn_t *conn);

/* Attach data to conn, as pool_conn_set_data(): free_fn (may be NULL)
 * runs exactly once, when the connection is closed, after its TLS state
 * is freed. Ignored for a NULL conn or one without the TLS state. */
POOL_API void pool_tls_set_data(pool_conn_t *conn, void *data,
                                void (*free_fn)(void *data));

#ifdef __cplusplus
}
#endif
#endif /* TCPOOL_TLS_H */
