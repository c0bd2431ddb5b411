/*
 * on_connect: the TLS handshake on a freshly connected socket, before the
 * pool hands it out.
 *
 * The pool gives the hook a blocking socket. The handshake runs on it
 * non-blocking, under poll, so that connect_timeout_ms bounds it whole: a
 * silent or slow-dripping server cannot hold pool_get. The descriptor's
 * flags are restored afterwards.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls-internal.h"

/* A DNS name has at most 253 bytes, and SNI carries at most 255 (RFC
 * 6066 3): a longer tls_server_name fails the connection. */
#define NAME_MAX_LEN 256
/* The longest value tcpool's configuration holds (CONFIG_MAX_STRING):
 * a path it accepts always fits. */
#define PATH_MAX_LEN 4096

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Wait for what OpenSSL asked for (err: SSL_ERROR_WANT_*) until deadline.
 * 1 ready, 0 timed out, -1 poll failed. */
static int wait_io(int fd, int err, int64_t deadline_us)
{
	struct pollfd p = { .fd = fd };
	int r;

	p.events = err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
	do {
		int64_t left = deadline_us - mono_us();

		if (left <= 0)
			return 0;
		/* connect_timeout_ms may exceed what an int holds */
		left = (left + 999) / 1000;
		r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
	} while (r < 0 && errno == EINTR);
	return r < 0 ? -1 : r;
}

/* The host part of "host:port" or "[v6]:port"; false for unix:/path. */
static bool endpoint_host(const char *ep, char *out, size_t outlen)
{
	const char *colon = strrchr(ep, ':');
	size_t n;

	if (!colon || strncmp(ep, "unix:", 5) == 0)
		return false;
	if (ep[0] == '[') {
		ep++;
		colon--; /* the ']' */
	}
	n = (size_t)(colon - ep);
	if (n == 0 || n >= outlen)
		return false;
	memcpy(out, ep, n);
	out[n] = '\0';
	return true;
}

static bool is_ip_literal(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* SNI and the name the certificate must carry: tls_server_name, else the
 * endpoint's host. SNI never carries an IP address (RFC 6066 3); an IP is
 * checked against the certificate's IP subjectAltNames instead. */
static bool set_peer_name(pool_conn_t *conn, SSL *ssl, bool verify, char *name,
                          size_t namelen)
{
	bool ip;
	int ok = 1, set = tls_setting(conn, "tls_server_name", name, namelen);

	if (set < 0)
		return false; /* said why; never checked against another name */
	if (!set && !endpoint_host(pool_conn_endpoint(conn), name, namelen)) {
		name[0] = '\0';
		if (!verify)
			return true;
		tls_log(conn, "no name to verify the certificate against: "
		        "set tls_server_name");
		return false;
	}
	ip = is_ip_literal(name);
	if (!ip)
		ok = SSL_set_tlsext_host_name(ssl, name);
	/* A wildcard stands for one whole label, as browsers take it. */
	if (ok && verify && !ip)
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (ok && verify)
		ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)
		        : SSL_set1_host(ssl, name);
	if (!ok)
		tls_log(conn, "bad server name \"%s\"", name);
	return ok == 1;
}

static void key_release(struct tls_ctx_key *k)
{
	free(k->ca_file);
	free(k->cert_file);
	free(k->key_file);
}

/* *out: a copy of key's value, NULL when unset. False when it is too
 * long (logged) or out of memory. */
static bool setting_dup(const pool_conn_t *conn, const char *key, char **out)
{
	char buf[PATH_MAX_LEN + 1];
	int set = tls_setting(conn, key, buf, sizeof(buf));

	*out = set > 0 ? strdup(buf) : NULL;
	if (set > 0 && !*out)
		tls_log(conn, "out of memory");
	return set == 0 || *out;
}

/* The context for conn's settings. */
static SSL_CTX *conn_ctx(pool_conn_t *conn, struct tls_conn *tc, bool *verify)
{
	struct tls_ctx_key k;
	char on[8], why[512];
	SSL_CTX *ctx;

	k.verify = !(tls_setting(conn, "tls_verify", on, sizeof(on)) > 0 &&
	             strcmp(on, "off") == 0);
	k.ca_file = k.cert_file = k.key_file = NULL;
	ctx = NULL;
	if (setting_dup(conn, "tls_ca_file", &k.ca_file) &&
	    setting_dup(conn, "tls_cert_file", &k.cert_file) &&
	    setting_dup(conn, "tls_key_file", &k.key_file)) {
		ctx = tls_ctx_get(tc->inst->tls, &k, why, sizeof(why));
		if (!ctx)
			tls_log(conn, "%s", why);
	}
	*verify = k.verify;
	key_release(&k);
	return ctx;
}

/* The SSL for conn: name checks, and the endpoint's last session. */
static SSL *conn_ssl(pool_conn_t *conn, struct tls_conn *tc)
{
	char name[NAME_MAX_LEN];
	const char *ep = pool_conn_endpoint(conn);
	bool verify;
	SSL_CTX *ctx = conn_ctx(conn, tc, &verify);
	SSL *ssl;

	if (!ctx)
		return NULL; /* said why */
	ssl = SSL_new(ctx);
	if (!ssl || SSL_set_fd(ssl, pool_conn_fd(conn)) != 1 || !tls_conn_bind(ssl, tc))
		goto oom;
	if (!set_peer_name(conn, ssl, verify, name, sizeof(name)))
		goto fail;
	tc->sess_key = malloc(strlen(ep) + strlen(name) + 2);
	if (!tc->sess_key)
		goto oom;
	sprintf(tc->sess_key, "%s\n%s", ep, name);
	tls_session_offer(tc->inst->tls, ssl, tc->sess_key);
	return ssl;
oom:
	tls_log(conn, "out of memory");
fail:
	SSL_free(ssl);
	return NULL;
}

/* SSL_connect until done, failed or the deadline. */
static bool handshake(pool_conn_t *conn, SSL *ssl, int64_t deadline_us)
{
	int fd = pool_conn_fd(conn);
	char why[512];

	for (;;) {
		int r = SSL_connect(ssl), err, w;

		if (r == 1)
			return true;
		err = SSL_get_error(ssl, r);
		if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
			break;
		w = wait_io(fd, err, deadline_us);
		if (w == 0) {
			tls_log(conn, "handshake timed out (connect_timeout_ms)");
			return false;
		}
		if (w < 0)
			break;
	}
	if (ERR_peek_last_error())
		tls_reason(why, sizeof(why), ssl);
	else
		snprintf(why, sizeof(why), "%s", errno ? strerror(errno)
		                                       : "the server closed the connection");
	tls_log(conn, "handshake failed: %s", why);
	return false;
}

/* After a first ticket: how much longer to wait for more. Servers send
 * several (OpenSSL: 2), possibly in separate segments; one left unread
 * would be bytes on the idle socket. A gap of 1 ms between them means
 * the server has sent what it had. */
#define TICKET_GAP_US 1000

static int64_t ticket_wait(const struct tls_conn *tc, int64_t until)
{
	int64_t gap = mono_us() + TICKET_GAP_US;

	return tc->sessions > 0 && gap < until ? gap : until;
}

/* TLS 1.3 servers send their session tickets after the handshake. Left
 * unread, they would be bytes waiting on an idle socket, which the pool
 * takes for a dead connection; and a server that refuses our client
 * certificate says so only now. So wait for them a little: about as
 * long again as the handshake took (a round trip and the server's work)
 * plus 5 ms, never past the deadline, and once one came, until no more
 * come within TICKET_GAP_US. SSL_peek processes them without taking
 * application data a server-first protocol may send. */
static bool read_tickets(pool_conn_t *conn, struct tls_conn *tc, int64_t took_us,
                         int64_t deadline_us)
{
	int64_t until = mono_us() + took_us + 5000;
	char byte, why[512];
	int err;

	if (SSL_version(tc->ssl) < TLS1_3_VERSION)
		return true;
	if (until > deadline_us)
		until = deadline_us;
	for (;;) {
		int r = SSL_peek(tc->ssl, &byte, 1);

		if (r > 0)
			return true; /* the server spoke first: tickets came before */
		err = SSL_get_error(tc->ssl, r);
		if (err != SSL_ERROR_WANT_READ)
			break;
		if (wait_io(pool_conn_fd(conn), err, ticket_wait(tc, until)) <= 0)
			return true;
	}
	if (err == SSL_ERROR_ZERO_RETURN || !ERR_peek_last_error())
		snprintf(why, sizeof(why), "the server closed the connection");
	else
		tls_reason(why, sizeof(why), tc->ssl);
	tls_log(conn, "closed right after the handshake: %s", why);
	return false;
}

static unsigned timeout_ms(const pool_conn_t *conn)
{
	char buf[16];

	return tls_setting(conn, "connect_timeout_ms", buf, sizeof(buf)) > 0
	       ? (unsigned)strtoul(buf, NULL, 10) : 2000u;
}

/* The handshake proper: tc is already conn's data, so the pool frees it
 * with the connection whatever happens here. */
static bool tls_start(pool_conn_t *conn, struct tls_conn *tc)
{
	int64_t start = mono_us();
	int64_t deadline = start + (int64_t)timeout_ms(conn) * 1000;
	int fd = pool_conn_fd(conn), flags;
	bool ok;

	ERR_clear_error();
	tc->ssl = conn_ssl(conn, tc);
	if (!tc->ssl)
		return false;
	flags = tls_fd_nonblock(fd);
	errno = 0;
	ok = handshake(conn, tc->ssl, deadline) &&
	     read_tickets(conn, tc, mono_us() - start, deadline);
	tls_fd_restore(fd, flags);
	return ok;
}

static bool tls_wanted(const pool_conn_t *conn)
{
	char on[8];

	return tls_setting(conn, "tls", on, sizeof(on)) > 0 && strcmp(on, "on") == 0;
}

int tls_on_connect(pool_conn_t *conn, void *ud)
{
	struct tls_install *inst = ud;
	struct tls_conn *tc = calloc(1, sizeof(*tc));
	int rc;

	if (!tc) {
		tls_log(conn, "out of memory");
		return -1;
	}
	tc->inst = inst;
	tls_conn_track(tc);
	pool_conn_set_data(conn, tc, tls_conn_free);
	if (tls_wanted(conn) && !tls_start(conn, tc))
		return -1;
	if (!inst->inner.on_connect)
		return 0;
	rc = inst->inner.on_connect(conn, inst->inner.ud);
	if (pool_conn_data(conn) != tc) {
		/* The slot is ours: the SSL would leak, and the TLS calls
		 * would read the application's data as TLS state. */
		tls_log(conn, "the on_connect hook called pool_conn_set_data: "
		        "use pool_tls_set_data");
		tls_conn_free(tc);
		return -1;
	}
	return rc;
}
