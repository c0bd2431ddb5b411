/*
 * OpenSSL contexts, one per distinct trust/identity settings, and the
 * per-endpoint session cache that lets the next connection resume.
 *
 * Sessions are caught by the context's new-session callback rather than
 * read with SSL_get1_session after the handshake: in TLS 1.3 the server
 * sends its tickets after the handshake, and the callback sees each one
 * whenever OpenSSL reads it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls-internal.h"

static pthread_once_t ex_once = PTHREAD_ONCE_INIT;
static int ex_index = -1;

static void ex_init(void)
{
	ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

bool tls_conn_bind(SSL *ssl, struct tls_conn *tc)
{
	pthread_once(&ex_once, ex_init);
	return ex_index >= 0 && SSL_set_ex_data(ssl, ex_index, tc) == 1;
}

struct tls_conn *tls_conn_of(const SSL *ssl)
{
	return ex_index >= 0 ? SSL_get_ex_data(ssl, ex_index) : NULL;
}

void tls_reason(char *out, size_t outlen, const SSL *ssl)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	long v = X509_V_OK;

	/* With tls_verify = off the result is computed but not enforced:
	 * it is not why anything failed. */
	if (ssl && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
		v = SSL_get_verify_result(ssl);

	if (v != X509_V_OK)
		snprintf(out, outlen, "%s: %s", r ? r : "certificate verify failed",
		         X509_verify_cert_error_string(v));
	else if (r)
		snprintf(out, outlen, "%s", r);
	else if (e)
		snprintf(out, outlen, "OpenSSL error 0x%lx", e);
	else
		snprintf(out, outlen, "unknown OpenSSL error");
	ERR_clear_error();
}

/* ---- sessions ---- */

static struct tls_sess *sess_find(struct pool_tls *tls, const char *key)
{
	struct tls_sess *s;

	for (s = tls->sessions; s; s = s->next)
		if (strcmp(s->key, key) == 0)
			return s;
	return NULL;
}

/* Keep sess (our reference) as the endpoint's latest. False when out of
 * memory: the caller keeps its reference then. */
static bool sess_store(struct pool_tls *tls, const char *key, SSL_CTX *ctx,
                       SSL_SESSION *sess)
{
	struct tls_sess *s;
	bool ok = true;

	pthread_mutex_lock(&tls->lock);
	s = sess_find(tls, key);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (s)
			s->key = strdup(key);
		if (!s || !s->key) {
			free(s);
			ok = false;
			goto out;
		}
		s->next = tls->sessions;
		tls->sessions = s;
	}
	if (s->sess)
		SSL_SESSION_free(s->sess);
	s->sess = sess;
	s->ctx = ctx;
out:
	pthread_mutex_unlock(&tls->lock);
	return ok;
}

/* The context's new-session callback: 1 keeps the reference. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_conn *tc = tls_conn_of(ssl);

	if (!tc || !tc->sess_key)
		return 0;
	tc->sessions++;
	return sess_store(tc->inst->tls, tc->sess_key, SSL_get_SSL_CTX(ssl), sess);
}

void tls_session_offer(struct pool_tls *tls, SSL *ssl, const char *key)
{
	struct tls_sess *s;

	pthread_mutex_lock(&tls->lock);
	s = sess_find(tls, key);
	/* SSL_set_session takes its own reference. */
	if (s && s->sess && s->ctx == SSL_get_SSL_CTX(ssl) &&
	    SSL_SESSION_is_resumable(s->sess))
		SSL_set_session(ssl, s->sess);
	pthread_mutex_unlock(&tls->lock);
}

void tls_sessions_free(struct pool_tls *tls)
{
	struct tls_sess *s, *next;

	for (s = tls->sessions; s; s = next) {
		next = s->next;
		SSL_SESSION_free(s->sess);
		free(s->key);
		free(s);
	}
	tls->sessions = NULL;
}

/* ---- contexts ---- */

static bool str_same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool key_same(const struct tls_ctx_key *a, const struct tls_ctx_key *b)
{
	return a->verify == b->verify && str_same(a->ca_file, b->ca_file) &&
	       str_same(a->cert_file, b->cert_file) &&
	       str_same(a->key_file, b->key_file);
}

static void key_free(struct tls_ctx_key *k)
{
	free(k->ca_file);
	free(k->cert_file);
	free(k->key_file);
}

static bool dup_or_null(char **dst, const char *src)
{
	*dst = src ? strdup(src) : NULL;
	return !src || *dst;
}

static bool key_copy(struct tls_ctx_key *dst, const struct tls_ctx_key *src)
{
	dst->verify = src->verify;
	dst->ca_file = dst->cert_file = dst->key_file = NULL;
	if (dup_or_null(&dst->ca_file, src->ca_file) &&
	    dup_or_null(&dst->cert_file, src->cert_file) &&
	    dup_or_null(&dst->key_file, src->key_file))
		return true;
	key_free(dst);
	return false;
}

/* The trust: the CA file, or the system's store. */
static bool ctx_trust(SSL_CTX *ctx, const struct tls_ctx_key *key, char *why,
                      size_t whylen)
{
	char r[256];

	if (!key->verify)
		return true;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (key->ca_file ? SSL_CTX_load_verify_locations(ctx, key->ca_file, NULL)
	                 : SSL_CTX_set_default_verify_paths(ctx))
		return true;
	tls_reason(r, sizeof(r), NULL);
	snprintf(why, whylen, "tls_ca_file %s: %s",
	         key->ca_file ? key->ca_file : "(system store)", r);
	return false;
}

/* The client certificate, when one is configured. */
static bool ctx_identity(SSL_CTX *ctx, const struct tls_ctx_key *key, char *why,
                         size_t whylen)
{
	const char *kf = key->key_file ? key->key_file : key->cert_file;
	char r[256];

	if (!key->cert_file)
		return true;
	if (SSL_CTX_use_certificate_chain_file(ctx, key->cert_file) != 1) {
		tls_reason(r, sizeof(r), NULL);
		snprintf(why, whylen, "tls_cert_file %s: %s", key->cert_file, r);
		return false;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, kf, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		tls_reason(r, sizeof(r), NULL);
		snprintf(why, whylen, "tls_key_file %s: %s", kf, r);
		return false;
	}
	return true;
}

static SSL_CTX *ctx_make(const struct tls_ctx_key *key, char *why, size_t whylen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* Sessions go to our per-endpoint cache only: OpenSSL's internal
	 * client cache is keyed by nothing a client can look up. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	                               SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, on_new_session);
	if (ctx_trust(ctx, key, why, whylen) && ctx_identity(ctx, key, why, whylen))
		return ctx;
	SSL_CTX_free(ctx);
	return NULL;
}

static struct tls_ctx *ctx_find(struct pool_tls *tls, const struct tls_ctx_key *key)
{
	struct tls_ctx *c;

	for (c = tls->ctxs; c && !key_same(&c->key, key); c = c->next)
		;
	return c;
}

static SSL_CTX *ctx_lookup(struct pool_tls *tls, const struct tls_ctx_key *key)
{
	struct tls_ctx *c;

	pthread_mutex_lock(&tls->lock);
	c = ctx_find(tls, key);
	pthread_mutex_unlock(&tls->lock);
	return c ? c->ctx : NULL;
}

/* Keep c unless another thread made the same context meanwhile; the
 * one kept. */
static SSL_CTX *ctx_insert(struct pool_tls *tls, struct tls_ctx *c)
{
	struct tls_ctx *won;

	pthread_mutex_lock(&tls->lock);
	won = ctx_find(tls, &c->key);
	if (!won) {
		c->next = tls->ctxs;
		tls->ctxs = c;
		won = c;
	}
	pthread_mutex_unlock(&tls->lock);
	if (won != c) {
		SSL_CTX_free(c->ctx);
		key_free(&c->key);
		free(c);
	}
	return won->ctx;
}

/* Made outside the lock: reading a file can block for ever (a FIFO, a
 * hung NFS mount), and must not hold up other endpoints' connects, nor
 * a fork() (whose prepare handler takes the lock). Threads connecting at
 * start-up may each read the files once; one context is kept. A failed
 * one is not kept: the file may be fixed by the next connect. */
SSL_CTX *tls_ctx_get(struct pool_tls *tls, const struct tls_ctx_key *key,
                     char *why, size_t whylen)
{
	SSL_CTX *ctx = ctx_lookup(tls, key);
	struct tls_ctx *c;

	if (ctx)
		return ctx;
	c = calloc(1, sizeof(*c));
	if (!c || !key_copy(&c->key, key)) {
		free(c);
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	c->ctx = ctx_make(key, why, whylen);
	if (!c->ctx) {
		key_free(&c->key);
		free(c);
		return NULL;
	}
	return ctx_insert(tls, c);
}

void tls_ctxs_free(struct pool_tls *tls)
{
	struct tls_ctx *c, *next;

	for (c = tls->ctxs; c; c = next) {
		next = c->next;
		SSL_CTX_free(c->ctx);
		key_free(&c->key);
		free(c);
	}
	tls->ctxs = NULL;
}
