/*
 * libtcpool-tls against real servers: redis-server --tls-port (TLS 1.3)
 * and nginx "listen ... ssl" (TLS 1.2 in nginx 1.22's defaults), with a
 * CA, server and client certificates made by the openssl command when
 * the suite starts. What a user checks: requests answered through
 * pool_tls_ssl, verification failures as POOL_EHOOK with OpenSSL's
 * reason in the log, SNI and the name check, session resumption, and
 * peer-first over TLS leaving the TIME_WAIT with the server.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/err.h>

#include "fixtures.h"
#include "realserver.h"
#include "suites.h"
#include "tcpool-tls.h"

#define N 20

/* The certificates, made once per run (unchecked fixture). */
static char certdir[64];

static const char *cert(const char *name)
{
	static char paths[8][128];
	static int next;
	char *p = paths[next++ % 8];

	snprintf(p, sizeof(paths[0]), "%s/%s", certdir, name);
	return p;
}

/* A CA, a server certificate for IP 127.0.0.1 and DNS tcpool.test, a
 * client certificate, and a second CA that signed none of them. EC keys:
 * made in milliseconds. */
static const char make_certs[] =
	"set -e; cd '%s'\n"
	"ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
	"openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj /CN=tcpool-test-ca\n"
	"openssl req -x509 $ec -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=other-ca\n"
	"openssl req $ec -keyout server.key -out server.csr -subj /CN=tcpool-test-server\n"
	"echo 'subjectAltName=IP:127.0.0.1,DNS:tcpool.test' > server.ext\n"
	"openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
	" -out server.pem -days 2 -extfile server.ext\n"
	"openssl req $ec -keyout client.key -out client.csr -subj /CN=tcpool-test-client\n"
	"echo 'extendedKeyUsage=clientAuth' > client.ext\n"
	"openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
	" -out client.pem -days 2 -extfile client.ext\n";

static void certs_make(void)
{
	char script[sizeof(make_certs) + 64], cmd[sizeof(script) + 32];

	snprintf(certdir, sizeof(certdir), "/tmp/tcpool-tls-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(certdir));
	snprintf(script, sizeof(script), make_certs, certdir);
	snprintf(cmd, sizeof(cmd), "(%s) >/dev/null 2>&1", script);
	ck_assert_msg(system(cmd) == 0, "openssl could not make the test certificates");
}

static void certs_remove(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", certdir);
	if (certdir[0] && system(cmd) != 0)
		fprintf(stderr, "tls: could not remove %s\n", certdir);
}

/* ---- servers ---- */

/* A TLS server of kind (NULL after a note when not installed). extra:
 * more command-line arguments (redis), or NULL. */
static struct realserver *start_tls(enum rs_kind kind, const char *const *extra)
{
	struct realserver_opts o = {
		.tls_cert_file = cert("server.pem"),
		.tls_key_file = cert("server.key"),
		.tls_ca_file = cert("ca.pem"),
		.extra_args = extra,
	};
	struct realserver *rs;

	if (!realserver_available(kind)) {
		printf("tls: %s is not installed; test skipped\n", realserver_name(kind));
		return NULL;
	}
	rs = realserver_start(kind, &o);
	ck_assert_msg(rs != NULL, "cannot start %s with TLS", realserver_name(kind));
	return rs;
}

/* The kinds the suite loops over: _i 0 is redis, 1 nginx. */
static enum rs_kind kind_of(int i)
{
	return i == 0 ? RS_REDIS : RS_NGINX;
}

/* ---- the log ---- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char logged[4096];

static void log_capture(int level, const char *msg, void *ud)
{
	(void)level;
	(void)ud;
	pthread_mutex_lock(&log_lock);
	if (strlen(logged) + strlen(msg) + 2 < sizeof(logged)) {
		strcat(logged, msg);
		strcat(logged, "\n");
	}
	pthread_mutex_unlock(&log_lock);
}

static void log_expect(const char *part)
{
	pthread_mutex_lock(&log_lock);
	ck_assert_msg(strstr(logged, part) != NULL, "log lacks \"%s\"; it holds:\n%s",
		      part, logged);
	pthread_mutex_unlock(&log_lock);
}

/* ---- pools ---- */

static pool_tls_t *tls;

/* A config for TLS to the test CA, with the TLS hooks around inner, and
 * the log captured; more [pool] key/value pairs after inner, NULL-ended. */
static pool_config_t *tls_config(const pool_hooks_t *inner, ...)
{
	pool_config_t *cfg = config_with("tls", "on", "tls_ca_file", cert("ca.pem"),
					 NULL);
	const char *k, *v;
	char err[512];
	va_list ap;

	va_start(ap, inner);
	while ((k = va_arg(ap, const char *)) != NULL) {
		v = va_arg(ap, const char *);
		ck_assert_msg(pool_config_set(cfg, NULL, k, v, err, sizeof(err)) == 0,
			      "%s", err);
	}
	va_end(ap);
	logged[0] = '\0';
	pool_config_set_log(cfg, log_capture, NULL);
	ck_assert_int_eq(pool_tls_config(tls, cfg, NULL, inner), 0);
	return cfg;
}

static pool_t *pool_of(pool_config_t *cfg)
{
	pool_t *pool;

	ck_assert_int_eq(pool_create(&pool, cfg), 0);
	pool_config_free(cfg);
	return pool;
}

/* ---- I/O through TLS ---- */

/* The health-check request of kind through ssl, and its whole reply into
 * reply (NUL-terminated); true when it is the expected one. The socket
 * is blocking: a receive timeout bounds the wait. */
static bool tls_roundtrip(enum rs_kind kind, SSL *ssl, char *reply, size_t cap)
{
	const char *req = realserver_request(kind);
	const char *prefix = realserver_reply_prefix(kind);
	struct timeval tv = { .tv_sec = 2 };
	size_t len = 0, want = 0;

	setsockopt(SSL_get_fd(ssl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (SSL_write(ssl, req, (int)strlen(req)) != (int)strlen(req))
		return false;
	while (!want || len < want) {
		int n;

		if (len + 1 >= cap)
			return false;
		n = SSL_read(ssl, reply + len, (int)(cap - 1 - len));
		if (n <= 0)
			return false;
		len += (size_t)n;
		reply[len] = '\0';
		want = realserver_reply_length(kind, reply, len);
	}
	return len == want && strncmp(reply, prefix, strlen(prefix)) == 0;
}

static void roundtrip(enum rs_kind kind, pool_conn_t *c)
{
	char reply[1024];
	SSL *ssl = pool_tls_ssl(c);

	ck_assert_ptr_nonnull(ssl);
	ck_assert_msg(tls_roundtrip(kind, ssl, reply, sizeof(reply)),
		      "%s: no valid reply through TLS", realserver_name(kind));
}

/* ---- the tests ---- */

/* A request through the handshaken connection, verified against the CA;
 * the same connection again from the idle list, still in TLS. */
START_TEST(handshake_and_request)
{
	enum rs_kind kind = kind_of(_i);
	struct realserver *rs = start_tls(kind, NULL);
	const char *ep;
	pool_conn_t *c;
	pool_t *pool;
	SSL *ssl;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	pool = pool_of(tls_config(NULL, NULL));
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ssl = pool_tls_ssl(c);
	ck_assert_ptr_nonnull(ssl);
	ck_assert_int_eq(SSL_get_verify_result(ssl), X509_V_OK);
	ck_assert_int_eq(SSL_version(ssl), kind == RS_REDIS ? TLS1_3_VERSION
							   : TLS1_2_VERSION);
	roundtrip(kind, c);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 1);
	ck_assert_ptr_eq(pool_tls_ssl(c), ssl);
	roundtrip(kind, c);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 1);
	ck_assert_uint_eq(stats_of(pool, ep).stale_dropped, 0);
	pool_destroy(pool);
	realserver_stop(rs);
}
END_TEST

/* A certificate from a CA we do not trust: POOL_EHOOK, OpenSSL's reason
 * in the log, and the half-open connection aborted: no TIME_WAIT; taken
 * with tls_verify = off. redis
 * sends its CA along with its certificate (OpenSSL builds the chain from
 * its trust store), nginx only the certificate: the reasons differ. */
START_TEST(untrusted_ca_fails)
{
	enum rs_kind kind = kind_of(_i);
	struct realserver *rs = start_tls(kind, NULL);
	pool_conn_t *c = NULL;
	const char *ep;
	pool_t *pool;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	pool = pool_of(tls_config(NULL, "tls_ca_file", cert("other-ca.pem"), NULL));
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_EHOOK);
	ck_assert_ptr_null(c);
	log_expect("tls: 127.0.0.1:");
	log_expect(kind == RS_REDIS
		   ? ": handshake failed: certificate verify failed: "
		     "self-signed certificate in certificate chain"
		   : ": handshake failed: certificate verify failed: "
		     "unable to get local issuer certificate");
	ck_assert_uint_eq(stats_of(pool, ep).connect_failures, 1);
	ck_assert_uint_eq(stats_of(pool, NULL).in_use, 0);
	pool_destroy(pool);
	tw_expect(ep, 0, 0);
	/* tls_verify = off: the same certificate is taken (tests only) */
	pool = pool_of(tls_config(NULL, "tls_ca_file", cert("other-ca.pem"),
				  "tls_verify", "off", "teardown", "abort", NULL));
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	roundtrip(kind, c);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	realserver_stop(rs);
}
END_TEST

/* The name checked is tls_server_name when set (and sent as SNI), else
 * the endpoint's address, checked against the IP subjectAltName. */
START_TEST(server_name_is_checked)
{
	enum rs_kind kind = kind_of(_i);
	struct realserver *rs = start_tls(kind, NULL);
	char err[256];
	pool_config_t *cfg;
	pool_conn_t *c;
	const char *ep;
	pool_t *pool;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	cfg = tls_config(NULL, "tls_server_name", "tcpool.test", "teardown", "abort",
			 NULL);
	ck_assert_int_eq(pool_config_set(cfg, "127.0.0.1:1", "tls_server_name",
					 "wrong.test", err, sizeof(err)), 0);
	pool = pool_of(cfg);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_str_eq(SSL_get_servername(pool_tls_ssl(c), TLSEXT_NAMETYPE_host_name),
			 "tcpool.test");
	roundtrip(kind, c);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);

	pool = pool_of(tls_config(NULL, "tls_server_name", "wrong.test", NULL));
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_EHOOK);
	log_expect("handshake failed: certificate verify failed: "
		   "hostname mismatch");
	pool_destroy(pool);
	tw_expect(ep, 0, 0);
	realserver_stop(rs);
}
END_TEST

/* A tls_server_name too long for a DNS name (300 bytes) fails the
 * connection, saying so: it is never dropped in favour of the
 * endpoint's address, which the certificate would match. */
START_TEST(long_server_name_fails)
{
	struct realserver *rs = start_tls(RS_REDIS, NULL);
	char name[301];
	pool_conn_t *c = NULL;
	const char *ep;
	pool_t *pool;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	memset(name, 'a', 295);
	strcpy(name + 295, ".test");
	pool = pool_of(tls_config(NULL, "tls_server_name", name, NULL));
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_EHOOK);
	ck_assert_ptr_null(c);
	log_expect(": tls_server_name is too long (300 bytes; at most 255)");
	pool_destroy(pool);
	tw_expect(ep, 0, 0);
	realserver_stop(rs);
}
END_TEST

/* nginx says which name came in SNI ($ssl_server_name): the configured
 * one, and none for an IP endpoint (RFC 6066 forbids IP literals). */
START_TEST(sni_reaches_the_server)
{
	struct realserver *rs = start_tls(RS_NGINX, NULL);
	char reply[1024];
	pool_conn_t *c;
	const char *ep;
	pool_t *pool;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	pool = pool_of(tls_config(NULL, "tls_server_name", "tcpool.test", NULL));
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert(tls_roundtrip(RS_NGINX, pool_tls_ssl(c), reply, sizeof(reply)));
	ck_assert_msg(strstr(reply, "\r\n\r\nok tcpool.test\n"), "reply: %s", reply);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	pool = pool_of(tls_config(NULL, NULL));
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert(tls_roundtrip(RS_NGINX, pool_tls_ssl(c), reply, sizeof(reply)));
	ck_assert_msg(strstr(reply, "\r\n\r\nok \n"), "reply: %s", reply);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	realserver_stop(rs);
}
END_TEST

/* The second connection to an endpoint resumes the first one's session:
 * TLS 1.3 tickets (redis) and TLS 1.2 tickets (nginx). */
START_TEST(second_connection_resumes)
{
	enum rs_kind kind = kind_of(_i);
	struct realserver *rs = start_tls(kind, NULL);
	pool_conn_t *a, *b;
	const char *ep;
	pool_t *pool;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	pool = pool_of(tls_config(NULL, NULL));
	ck_assert_int_eq(pool_get(pool, ep, &a), 0);
	ck_assert_int_eq(SSL_session_reused(pool_tls_ssl(a)), 0);
	ck_assert_int_eq(pool_get(pool, ep, &b), 0);
	ck_assert_int_eq(SSL_session_reused(pool_tls_ssl(b)), 1);
	roundtrip(kind, a);
	roundtrip(kind, b);
	pool_put(pool, a, POOL_RETIRE);
	pool_put(pool, b, POOL_RETIRE);
	/* Retired connections leave their session good for the next. */
	ck_assert_int_eq(pool_get(pool, ep, &a), 0);
	ck_assert_int_eq(SSL_session_reused(pool_tls_ssl(a)), 1);
	roundtrip(kind, a);
	pool_put(pool, a, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 3);
	pool_destroy(pool);
	realserver_stop(rs);
}
END_TEST

/* Peer-first through TLS: the close request (QUIT; an HTTP request with
 * Connection: close) and a close_notify go through TLS, the server
 * closes first: N connections leave 0 TIME_WAIT on the client and one
 * per client port on the server. */
START_TEST(peer_first_over_tls)
{
	enum rs_kind kind = kind_of(_i);
	struct realserver *rs = start_tls(kind, NULL);
	uint16_t used[N];
	pool_stats_t st;
	const char *ep;
	pool_t *pool;
	unsigned ports;
	int i;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	pool = pool_of(tls_config(NULL, "teardown", "peer-first",
				  "close_request", realserver_close_request(kind),
				  "close_timeout_ms", "2000", "max_idle", "0", NULL));
	for (i = 0; i < N; i++) {
		pool_conn_t *c;

		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		used[i] = fd_local_port(pool_conn_fd(c));
		roundtrip(kind, c);
		pool_put(pool, c, POOL_RETIRE);
	}
	wait_drains(pool, 5000);
	st = stats_of(pool, ep);
	ck_assert_uint_eq(st.retired_peer_first, N);
	ck_assert_uint_eq(st.peer_first_ok, N);
	ck_assert_uint_eq(st.peer_first_fallback, 0);
	ports = distinct_ports(used, N);
	pool_destroy(pool);
	printf("tls: peer-first over TLS to %s: %d connections, client TIME_WAIT %u, "
	       "server TIME_WAIT %u (client ports %u)\n", realserver_name(kind), N,
	       tw_client(ep), tw_server(ep), ports);
	tw_expect(ep, 0, ports);
	realserver_stop(rs);
}
END_TEST

/* Peer-first with neither close_request bytes nor an application hook
 * to send one: the configuration passes (the TLS hooks have a
 * close_request), and each retirement falls back, saying why. */
START_TEST(peer_first_without_request_falls_back)
{
	struct realserver *rs = start_tls(RS_REDIS, NULL);
	pool_config_t *cfg;
	pool_conn_t *c;
	const char *ep;
	pool_t *pool;
	char err[256];

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	cfg = tls_config(NULL, "teardown", "peer-first", "max_idle", "0", NULL);
	ck_assert_int_eq(pool_config_check(cfg, err, sizeof(err)), 0);
	pool = pool_of(cfg);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	roundtrip(RS_REDIS, c);
	pool_put(pool, c, POOL_RETIRE);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_fallback, 1);
	log_expect(": peer-first: no close_request to send");
	pool_destroy(pool);
	tw_expect(ep, 0, 0); /* the fallback: abort */
	realserver_stop(rs);
}
END_TEST

/* ---- inner hooks ---- */

static atomic_int inner_connects, inner_closes, inner_frees;

static void inner_free(void *p)
{
	free(p);
	atomic_fetch_add(&inner_frees, 1);
}

/* Runs after the handshake: the TLS connection is up, and the
 * application's data sits next to it. */
static int inner_on_connect(pool_conn_t *c, void *ud)
{
	enum rs_kind *kind = ud;
	char reply[1024];
	SSL *ssl = pool_tls_ssl(c);

	if (!ssl || !SSL_is_init_finished(ssl) ||
	    !tls_roundtrip(*kind, ssl, reply, sizeof(reply)))
		return -1;
	pool_tls_set_data(c, strdup("app"), inner_free);
	atomic_fetch_add(&inner_connects, 1);
	return 0;
}

/* The application's own close request, through TLS: Redis's QUIT. */
static int inner_close_request(pool_conn_t *c, void *ud)
{
	(void)ud;
	atomic_fetch_add(&inner_closes, 1);
	return SSL_write(pool_tls_ssl(c), "QUIT\r\n", 6) == 6 ? 0 : -1;
}

/* The application's hooks run around TLS; its data is its own and freed
 * once; its close_request replaces the bytes and needs none. */
START_TEST(inner_hooks_run_inside_tls)
{
	static enum rs_kind kind = RS_REDIS;
	struct realserver *rs = start_tls(RS_REDIS, NULL);
	pool_hooks_t inner = { .on_connect = inner_on_connect,
			       .close_request = inner_close_request, .ud = &kind };
	pool_conn_t *c;
	const char *ep;
	pool_t *pool;
	int i;

	if (!rs)
		return;
	atomic_store(&inner_connects, 0);
	atomic_store(&inner_closes, 0);
	atomic_store(&inner_frees, 0);
	ep = realserver_endpoint(rs);
	pool = pool_of(tls_config(&inner, "teardown", "peer-first",
				  "max_idle", "0", NULL));
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		ck_assert_str_eq(pool_tls_data(c), "app");
		roundtrip(RS_REDIS, c);
		pool_put(pool, c, POOL_RETIRE);
	}
	wait_drains(pool, 5000);
	ck_assert_int_eq(atomic_load(&inner_connects), 3);
	ck_assert_int_eq(atomic_load(&inner_closes), 3);
	ck_assert_int_eq(atomic_load(&inner_frees), 3);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_ok, 3);
	pool_destroy(pool);
	tw_expect(ep, 0, 3);
	realserver_stop(rs);
}
END_TEST

/* An endpoint with tls = off is plain TCP: no SSL, the application's
 * hooks and data as usual, and its close_request bytes sent as is. */
START_TEST(tls_off_endpoint_is_plain)
{
	static enum rs_kind kind = RS_REDIS;
	struct realserver *rs;
	pool_hooks_t inner = { .ud = &kind };
	pool_config_t *cfg;
	pool_conn_t *c;
	const char *ep;
	pool_t *pool;
	char err[256];

	if (!realserver_available(RS_REDIS))
		return;
	rs = realserver_start(RS_REDIS, NULL);
	ck_assert_ptr_nonnull(rs);
	ep = realserver_endpoint(rs);
	cfg = tls_config(&inner, "teardown", "peer-first", "close_request",
			 realserver_close_request(RS_REDIS), "max_idle", "0", NULL);
	ck_assert_int_eq(pool_config_set(cfg, ep, "tls", "off", err, sizeof(err)), 0);
	pool = pool_of(cfg);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_ptr_null(pool_tls_ssl(c));
	ck_assert(realserver_roundtrip(RS_REDIS, pool_conn_fd(c)));
	pool_tls_set_data(c, strdup("plain"), free);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_str_eq(pool_tls_data(c), "plain");
	pool_put(pool, c, POOL_RETIRE);
	wait_drains(pool, 5000);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_ok, 1);
	pool_destroy(pool);
	tw_expect(ep, 0, 1);
	realserver_stop(rs);
}
END_TEST

/* The application replaced a TLS connection's data slot with its own
 * (pool_conn_set_data, bytes that are no TLS state): the TLS calls see
 * no state instead of reading its bytes as ours, and peer-first, with no
 * SSL to write through, falls back to abort, saying why. The displaced
 * state is freed by pool_tls_free. */
START_TEST(replaced_data_is_not_tls_state)
{
	struct realserver *rs = start_tls(RS_REDIS, NULL);
	pool_conn_t *c;
	const char *ep;
	pool_t *pool;
	char *mine;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	pool = pool_of(tls_config(NULL, "teardown", "peer-first", "close_request",
				  realserver_close_request(RS_REDIS), "max_idle", "0",
				  NULL));
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_ptr_nonnull(pool_tls_ssl(c));
	mine = malloc(64);
	ck_assert_ptr_nonnull(mine);
	memset(mine, 'A', 64);
	pool_conn_set_data(c, mine, free);
	ck_assert_ptr_null(pool_tls_ssl(c));
	ck_assert_ptr_null(pool_tls_data(c));
	pool_tls_set_data(c, mine, NULL); /* ignored: no TLS state */
	ck_assert_ptr_eq(pool_conn_data(c), mine);
	pool_put(pool, c, POOL_RETIRE);
	wait_drains(pool, 5000);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_fallback, 1);
	log_expect(": peer-first: no TLS state on this connection");
	pool_destroy(pool);
	tw_expect(ep, 0, 0); /* the fallback: abort */
	realserver_stop(rs);
}
END_TEST

/* A tls = off endpoint under the TLS hooks whose slot holds no TLS state
 * (detached by the application here; a pool_socket() connection is the
 * same): peer-first still sends the close request, as the pool would
 * without the hooks, and the TIME_WAIT stays with the server. */
START_TEST(tls_off_without_state_sends_request)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct realserver *rs;
	pool_config_t *cfg;
	pool_conn_t *c;
	const char *ep;
	pool_t *pool;
	char err[256];

	if (!realserver_available(RS_REDIS))
		return;
	rs = realserver_start(RS_REDIS, NULL);
	ck_assert_ptr_nonnull(rs);
	ep = realserver_endpoint(rs);
	cfg = tls_config(NULL, "teardown", "peer-first", "close_request",
			 realserver_close_request(RS_REDIS), "max_idle", "0", NULL);
	ck_assert_int_eq(pool_config_set(cfg, ep, "tls", "off", err, sizeof(err)), 0);
	pool = pool_of(cfg);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert(realserver_roundtrip(RS_REDIS, pool_conn_fd(c)));
	pool_conn_set_data(c, NULL, NULL);
	pool_put(pool, c, POOL_RETIRE);
	/* pool_socket(): on_connect never ran, the slot is empty */
	ck_assert_int_eq(pool_socket(pool, ep, AF_INET, &c), 0);
	sa.sin_port = htons((uint16_t)atoi(strrchr(ep, ':') + 1));
	ck_assert_int_eq(connect(pool_conn_fd(c), (struct sockaddr *)&sa,
				 sizeof(sa)), 0);
	ck_assert(realserver_roundtrip(RS_REDIS, pool_conn_fd(c)));
	pool_put(pool, c, POOL_RETIRE);
	wait_drains(pool, 5000);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_fallback, 0);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_ok, 2);
	pool_destroy(pool);
	tw_expect(ep, 0, 2);
	realserver_stop(rs);
}
END_TEST

/* A warm min_idle connection is handed out working: the TLS 1.3 tickets
 * that came after its handshake were read then, not left waiting on the
 * idle socket, where the pool would take them for a dead connection. */
START_TEST(warm_connection_is_usable)
{
	struct realserver *rs = start_tls(RS_REDIS, NULL);
	pool_conn_t *c;
	const char *ep;
	pool_t *pool;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	pool = pool_of(tls_config(NULL, "min_idle", "1", NULL));
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_RETIRE);
	wait_for(stats_of(pool, ep).idle == 1, 3000);
	usleep(100 * 1000); /* tickets, if left unread, have come by now */
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 1);
	ck_assert_int_eq(SSL_session_reused(pool_tls_ssl(c)), 1);
	roundtrip(RS_REDIS, c);
	ck_assert_uint_eq(stats_of(pool, ep).stale_dropped, 0);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	realserver_stop(rs);
}
END_TEST

/* A server that asks for a client certificate: refused without one
 * (TLS 1.3 says so after the handshake: the ticket read sees it), served
 * with tls_cert_file and tls_key_file. */
START_TEST(client_certificate)
{
	static const char *const ask[] = { "--tls-auth-clients", "yes", NULL };
	struct realserver *rs = start_tls(RS_REDIS, ask);
	pool_conn_t *c;
	const char *ep;
	pool_t *pool;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	pool = pool_of(tls_config(NULL, NULL));
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_EHOOK);
	log_expect("closed right after the handshake: ");
	pool_destroy(pool);
	pool = pool_of(tls_config(NULL, "tls_cert_file", cert("client.pem"),
				  "tls_key_file", cert("client.key"), NULL));
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	roundtrip(RS_REDIS, c);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	realserver_stop(rs);
}
END_TEST

/* Files that cannot be used fail the connection with their name. */
START_TEST(bad_files_are_named)
{
	struct realserver *rs = start_tls(RS_REDIS, NULL);
	pool_conn_t *c;
	const char *ep;
	pool_t *pool;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	pool = pool_of(tls_config(NULL, "tls_ca_file", "/nonexistent/ca.pem", NULL));
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_EHOOK);
	log_expect("tls_ca_file /nonexistent/ca.pem: ");
	pool_destroy(pool);
	/* a key that is not the certificate's */
	pool = pool_of(tls_config(NULL, "tls_cert_file", cert("client.pem"),
				  "tls_key_file", cert("server.key"), NULL));
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_EHOOK);
	log_expect("tls_key_file ");
	pool_destroy(pool);
	tw_expect(ep, 0, 0);
	realserver_stop(rs);
}
END_TEST

/* A server that accepts and never answers: the handshake gives up at
 * connect_timeout_ms, and pool_get returns. */
START_TEST(silent_server_times_out)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	char ep[32];
	long long t0, took;
	pool_conn_t *c;
	pool_t *pool;

	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, len), 0);
	ck_assert_int_eq(listen(lfd, 8), 0); /* the kernel completes connects */
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
	snprintf(ep, sizeof(ep), "127.0.0.1:%u", ntohs(sa.sin_port));
	pool = pool_of(tls_config(NULL, "connect_timeout_ms", "300", NULL));
	t0 = mono_ms();
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_EHOOK);
	took = mono_ms() - t0;
	ck_assert_msg(took >= 290 && took < 1500, "took %lld ms", took);
	log_expect("handshake timed out (connect_timeout_ms)");
	pool_destroy(pool);
	close(lfd);
}
END_TEST

struct hammer {
	pool_t *pool;
	const char *ep;
	int failures;
};

static void *hammer_thread(void *arg)
{
	struct hammer *h = arg;
	char reply[1024];
	int i;

	for (i = 0; i < 10; i++) {
		pool_conn_t *c;

		if (pool_get(h->pool, h->ep, &c) != 0) {
			h->failures++;
			continue;
		}
		if (!tls_roundtrip(RS_REDIS, pool_tls_ssl(c), reply, sizeof(reply)))
			h->failures++;
		pool_put(h->pool, c, i % 3 == 0 ? POOL_RETIRE : POOL_REUSE);
	}
	return NULL;
}

/* Threads connecting, resuming and retiring at once share the pool, the
 * contexts and the session cache: every request answered, and no
 * TIME_WAIT on the client. */
START_TEST(threads_share_the_state)
{
	struct realserver *rs = start_tls(RS_REDIS, NULL);
	struct hammer h[4];
	pthread_t t[4];
	const char *ep;
	pool_t *pool;
	int i;

	if (!rs)
		return;
	ep = realserver_endpoint(rs);
	pool = pool_of(tls_config(NULL, "teardown", "peer-first",
				  "close_request", "\"QUIT\\r\\n\"", NULL));
	for (i = 0; i < 4; i++) {
		h[i] = (struct hammer){ .pool = pool, .ep = ep };
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer_thread, &h[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(h[i].failures, 0);
	}
	ck_assert_uint_eq(stats_of(pool, ep).gets, 40);
	pool_destroy(pool);
	ck_assert_uint_eq(tw_client(ep), 0);
	realserver_stop(rs);
}
END_TEST

struct blocked_get {
	pool_t *pool;
	const char *ep;
	int rc;
};

static void *blocked_get_thread(void *arg)
{
	struct blocked_get *b = arg;
	pool_conn_t *c;

	b->rc = pool_get(b->pool, b->ep, &c);
	if (b->rc == 0)
		pool_put(b->pool, c, POOL_RETIRE);
	return NULL;
}

/* In a child of fork(): a TLS connect, bounded by an alarm; writes 'y'
 * to fd when it succeeded, and exits (never returns). The verdict goes
 * through fd rather than the exit status, which valgrind's leak check
 * may overwrite in the child (the parent's threads, gone there, leave
 * their stacks "possibly lost"). */
static void child_connects(pool_config_t *cfg, const char *ep, int fd)
{
	pool_conn_t *c;
	pool_t *pool;

	/* A hang ends the child with SIGALRM; check's own handler, which
	 * the child may inherit, would kill the whole test instead. */
	signal(SIGALRM, SIG_DFL);
	alarm(5);
	if (pool_create(&pool, cfg) != 0)
		_exit(1);
	if (pool_get(pool, ep, &c) == 0) {
		if (pool_tls_ssl(c) && write(fd, "y", 1) != 1)
			_exit(2);
		pool_put(pool, c, POOL_RETIRE);
	}
	pool_destroy(pool);
	pool_config_free(cfg);
	_exit(0);
}

/* A thread stuck reading a CA file (a FIFO nobody writes) while another
 * forks: the child's TLS connects must not wait for a lock that thread,
 * absent in the child, holds. Files are read outside the lock, and fork
 * takes the lock first. */
START_TEST(fork_while_reading_files)
{
	struct realserver *rs = start_tls(RS_REDIS, NULL);
	struct blocked_get b = { 0 };
	pool_config_t *child_cfg;
	char fifo[128], ok = 0;
	pthread_t t;
	int status, fd, verdict[2];
	bool connected;
	pid_t pid;

	if (!rs)
		return;
	snprintf(fifo, sizeof(fifo), "%s", cert("fifo.pem"));
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	b.ep = realserver_endpoint(rs);
	b.pool = pool_of(tls_config(NULL, "tls_ca_file", fifo, NULL));
	child_cfg = tls_config(NULL, NULL);
	ck_assert_int_eq(pthread_create(&t, NULL, blocked_get_thread, &b), 0);
	usleep(300 * 1000); /* the thread is in open(fifo) by now */
	ck_assert_int_eq(pipe(verdict), 0);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0)
		child_connects(child_cfg, b.ep, verdict[1]);
	close(verdict[1]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	connected = read(verdict[0], &ok, 1) == 1 && ok == 'y';
	close(verdict[0]);
	/* let the thread's open and read finish: EOF, no certificate */
	fd = open(fifo, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	close(fd);
	pthread_join(t, NULL);
	ck_assert_msg(connected, "the child's TLS connect %s",
		      WIFSIGNALED(status) ? "hung (killed by its alarm)" : "failed");
	ck_assert_int_eq(b.rc, POOL_EHOOK);
	pool_config_free(child_cfg);
	pool_destroy(b.pool);
	unlink(fifo);
	realserver_stop(rs);
}
END_TEST

/* ---- the suite ---- */

static void suite_setup(void)
{
	certs_make();
	tls = pool_tls_new();
	ck_assert_ptr_nonnull(tls);
}

static void suite_teardown(void)
{
	pool_tls_free(tls);
	tls = NULL;
	certs_remove();
}

Suite *tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("tls");

	tcase_set_timeout(tc, 30);
	tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	tcase_add_loop_test(tc, handshake_and_request, 0, 2);
	tcase_add_loop_test(tc, untrusted_ca_fails, 0, 2);
	tcase_add_loop_test(tc, server_name_is_checked, 0, 2);
	tcase_add_test(tc, long_server_name_fails);
	tcase_add_test(tc, sni_reaches_the_server);
	tcase_add_loop_test(tc, second_connection_resumes, 0, 2);
	tcase_add_loop_test(tc, peer_first_over_tls, 0, 2);
	tcase_add_test(tc, peer_first_without_request_falls_back);
	tcase_add_test(tc, inner_hooks_run_inside_tls);
	tcase_add_test(tc, tls_off_endpoint_is_plain);
	tcase_add_test(tc, replaced_data_is_not_tls_state);
	tcase_add_test(tc, tls_off_without_state_sends_request);
	tcase_add_test(tc, warm_connection_is_usable);
	tcase_add_test(tc, client_certificate);
	tcase_add_test(tc, bad_files_are_named);
	tcase_add_test(tc, silent_server_times_out);
	tcase_add_test(tc, threads_share_the_state);
	tcase_add_test(tc, fork_while_reading_files);
	suite_add_tcase(s, tc);
	return s;
}
