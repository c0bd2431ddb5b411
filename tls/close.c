/*
 * close_request: peer-first over TLS. The request goes through TLS
 * (inner's close_request hook, or the endpoint's close_request bytes),
 * and the hook returns: the pool waits for the server's TCP EOF as for
 * any peer-first close, draining what it sends (its reply and its own
 * close_notify) as raw bytes.
 *
 * No close_notify of ours follows the request. The server closes as soon
 * as it has answered, and an alert it has not read by then sits in its
 * receive queue, where close() turns its FIN into an RST: no TIME_WAIT
 * on the server, the very outcome peer-first is for. Measured here with
 * a close_notify after the request, 20 connections each: redis 7.0 sent
 * an RST every time (server TIME_WAIT 0/20), nginx 1.22 on 12 of 20
 * (8/20); without it, 20/20 for both, and 0 on the client. Nothing is
 * lost by it: the request is the last thing we send, and the server,
 * which closes first, never reads past it. After the server's EOF, an
 * alert would only reach a closed socket and draw an RST.
 *
 * Never shutdown(SHUT_WR) either: our FIN would come first and we would
 * hold the TIME_WAIT.
 *
 * Like the pool's own send, nothing here blocks on the peer: the socket
 * is made non-blocking, and a request that does not fit the send buffer
 * at once is a failure (the fallback applies).
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>

#include "tls-internal.h"

/* tls = off: the pool would have sent the bytes itself had our hook not
 * been installed; do as it does. */
static int send_plain(pool_conn_t *conn, const char *req, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(pool_conn_fd(conn), req + off, len - off,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		off += (size_t)n;
	}
	return 0;
}

/* SSL_write of the whole request on the non-blocking socket: with
 * SSL_MODE_ENABLE_PARTIAL_WRITE off (the default), one call writes it
 * all or fails. */
static int send_tls(SSL *ssl, const char *req, size_t len)
{
	return SSL_write(ssl, req, (int)len) == (int)len ? 0 : -1;
}

/* The endpoint's close_request bytes; NULL after saying so. */
static const char *request_bytes(pool_conn_t *conn, size_t *len)
{
	const char *req = pool_conn_close_request(conn, len);

	if (!req)
		tls_log(conn, "peer-first: no close_request to send");
	return req;
}

/* The request, through TLS when the endpoint has it. */
static int send_request(pool_conn_t *conn, struct tls_conn *tc)
{
	const pool_hooks_t *inner = &tc->inst->inner;
	const char *req;
	size_t len;

	if (inner->close_request)
		return inner->close_request(conn, inner->ud);
	req = request_bytes(conn, &len);
	if (!req)
		return -1;
	return tc->ssl ? send_tls(tc->ssl, req, len) : send_plain(conn, req, len);
}

/* No TLS state in the slot: a connection on_connect never saw (made by
 * pool_socket) or whose data the application replaced. On a tls = off
 * endpoint, do what would happen without our hooks: inner's
 * close_request, else the bytes as the pool sends them. On a tls = on
 * one there is no SSL to write through (inner's hook would get NULL from
 * pool_tls_ssl), and plain bytes would be garbage to a TLS server: let
 * the fallback apply. */
static int send_stateless(pool_conn_t *conn, const struct tls_install *inst)
{
	const char *req;
	char on[8];
	size_t len;

	if (pool_conn_setting(conn, "tls", on, sizeof(on)) > 0 &&
	    strcmp(on, "on") == 0) {
		tls_log(conn, "peer-first: no TLS state on this connection "
		        "(pool_conn_set_data replaced it, or on_connect never ran)");
		return -1;
	}
	if (inst && inst->inner.close_request)
		return inst->inner.close_request(conn, inst->inner.ud);
	req = request_bytes(conn, &len);
	return req ? send_plain(conn, req, len) : -1;
}

int tls_close_request(pool_conn_t *conn, void *ud)
{
	struct tls_conn *tc = tls_conn_get(conn);
	int fd = pool_conn_fd(conn), flags, rc;

	flags = tls_fd_nonblock(fd);
	ERR_clear_error();
	rc = tc ? send_request(conn, tc) : send_stateless(conn, ud);
	ERR_clear_error();
	tls_fd_restore(fd, flags);
	return rc < 0 ? -1 : 0;
}
