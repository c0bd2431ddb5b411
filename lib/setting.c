/*
 * What hooks need from the core beyond their connection:
 *  - pool_conn_setting: an endpoint's effective settings, by key name,
 *    for code outside the core that acts on keys of its own
 *    (libtcpool-tls reads its tls_* keys this way). The text is what a
 *    config file would hold, so one parser, the core's, stands behind
 *    every key.
 *  - pool_conn_close_request: the endpoint's close request as bytes,
 *    for a close_request hook that sends it another way (through TLS),
 *    so that no second decoder of the file's escapes is needed;
 *  - pool_conn_log: the pool's log, so that a hook's reason for failing
 *    (a certificate that does not verify) reaches the application where
 *    the pool's own lines do.
 */
#include "config-keys.h"

POOL_API int pool_conn_setting(const pool_conn_t *conn, const char *key,
                               char *buf, size_t len)
{
	const struct config_key *k;
	const void *base;
	size_t n;
	int idx;

	if (!conn || !key || (!buf && len))
		return POOL_EINVAL;
	idx = config_key_index(key);
	if (idx < 0)
		return POOL_EINVAL;
	k = &config_keys[idx];
	/* ep->set is resolved once per endpoint and never changes while a
	 * connection holds the endpoint: no lock needed. */
	base = k->pool_only ? (const void *)conn->pool->cfg
	                    : (const void *)&conn->ep->set;
	n = config_format(buf, len, k, base);
	return n > INT_MAX ? INT_MAX : (int)n;
}

POOL_API const char *pool_conn_close_request(const pool_conn_t *conn,
                                             size_t *len)
{
	const struct pool_settings *s = conn ? &conn->ep->set : NULL;

	if (len)
		*len = s && s->close_request ? s->close_request_len : 0;
	return s ? s->close_request : NULL;
}

POOL_API void pool_conn_log(const pool_conn_t *conn, int level, const char *msg)
{
	if (conn && msg)
		pool_log(conn->pool, level, "%s", msg);
}
