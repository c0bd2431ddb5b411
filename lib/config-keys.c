/*
 * The configuration keys: one table drives value parsing (files and
 * pool_config_set alike), the built-in defaults, section overlays and the
 * dump, so that a key cannot be known to one of them and not the others.
 *
 * Adding a key: a field in struct pool_settings (or struct pool_config
 * for a pool-wide key), an id in config-keys.h, an entry below, and a
 * paragraph in tcpool.conf(5).
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <arpa/inet.h>
#include <limits.h>
#include <net/if.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "config-keys.h"

/* set_mask is 64 bits wide. */
_Static_assert(CONFIG_NKEYS <= 64, "too many keys for set_mask");

/* A key's name is its field's name, so the two cannot drift apart. */
#define UINT_KEY(id, f, lo, hi, d) [id] = { \
	.name = #f, .type = CT_UINT, .offset = offsetof(struct pool_settings, f), \
	.min = (lo), .max = (hi), .def = (d) }

#define ENUM_KEY(id, f, t, d) [id] = { \
	.name = #f, .type = (t), .offset = offsetof(struct pool_settings, f), \
	.def = (d) }

#define STRING_KEY(id, f) [id] = { \
	.name = #f, .type = CT_STRING, .offset = offsetof(struct pool_settings, f) }

/* The built-in defaults; tcpool.conf(5) says why each. Keys that came
 * after the contract's first table (min_idle, leak_warn_ms) default to
 * off, as SPEC.md requires, except idle_shrink_ms (see below). lifetime_jitter_pct is 5: it only ever
 * shortens a lifetime, so max_lifetime_ms still bounds a connection's
 * age as the table says, and it has no effect while max_lifetime_ms is 0. */
const struct config_key config_keys[CONFIG_NKEYS] = {
	ENUM_KEY(KEY_TEARDOWN, teardown, CT_TEARDOWN, TEARDOWN_CLOSE),
	[KEY_CLOSE_REQUEST] = {
		.name = "close_request", .type = CT_BYTES,
		.offset = offsetof(struct pool_settings, close_request),
		.len_offset = offsetof(struct pool_settings, close_request_len),
	},
	/* 0 would make every peer-first close fall back at once. */
	UINT_KEY(KEY_CLOSE_TIMEOUT_MS, close_timeout_ms, 1, UINT32_MAX, 200),
	ENUM_KEY(KEY_FALLBACK, fallback, CT_FALLBACK, TEARDOWN_ABORT),
	UINT_KEY(KEY_MAX_IDLE, max_idle, 0, UINT32_MAX, 8),
	UINT_KEY(KEY_MAX_ACTIVE, max_active, 0, UINT32_MAX, 0),
	[KEY_MAX_TOTAL] = {
		.name = "max_total", .type = CT_UINT, .pool_only = true,
		.offset = offsetof(struct pool_config, max_total),
		.min = 0, .max = UINT32_MAX, .def = 0,
	},
	UINT_KEY(KEY_IDLE_TIMEOUT_MS, idle_timeout_ms, 0, UINT32_MAX, 60000),
	UINT_KEY(KEY_MAX_LIFETIME_MS, max_lifetime_ms, 0, UINT32_MAX, 0),
	UINT_KEY(KEY_LIFETIME_JITTER_PCT, lifetime_jitter_pct, 0, 50, 5),
	UINT_KEY(KEY_MAX_USES, max_uses, 0, UINT32_MAX, 0),
	/* 0 would fail every connect before it starts. */
	UINT_KEY(KEY_CONNECT_TIMEOUT_MS, connect_timeout_ms, 1, UINT32_MAX, 2000),
	UINT_KEY(KEY_ACQUIRE_TIMEOUT_MS, acquire_timeout_ms, 0, UINT32_MAX, 1000),
	UINT_KEY(KEY_VALIDATE_IDLE_MS, validate_idle_ms, 0, UINT32_MAX, 0),
	UINT_KEY(KEY_MIN_IDLE, min_idle, 0, UINT32_MAX, 0),
	UINT_KEY(KEY_LEAK_WARN_MS, leak_warn_ms, 0, UINT32_MAX, 0),
	/* On, unlike the other later keys (SPEC.md says so): retiring a
	 * burst's surplus at once is the churn the pool exists to prevent. */
	UINT_KEY(KEY_IDLE_SHRINK_MS, idle_shrink_ms, 0, UINT32_MAX, 5000),
	[KEY_MAINTENANCE] = {
		.name = "maintenance", .type = CT_MAINT, .pool_only = true,
		.offset = offsetof(struct pool_config, maintenance),
		.def = MAINT_THREAD,
	},
	/* TLS, done by libtcpool-tls's hooks (tcpool-tls(3)); the core only
	 * keeps the values. Verification is on unless turned off. */
	ENUM_KEY(KEY_TLS, tls, CT_BOOL, false),
	STRING_KEY(KEY_TLS_CA_FILE, tls_ca_file),
	STRING_KEY(KEY_TLS_SERVER_NAME, tls_server_name),
	ENUM_KEY(KEY_TLS_VERIFY, tls_verify, CT_BOOL, true),
	STRING_KEY(KEY_TLS_CERT_FILE, tls_cert_file),
	STRING_KEY(KEY_TLS_KEY_FILE, tls_key_file),
	/* On, as SPEC.md says: it costs pool_get and pool_put nothing (see
	 * reaper.c), and a server-closed socket left in CLOSE_WAIT holds a
	 * descriptor and a slot for nothing. */
	ENUM_KEY(KEY_WATCH_IDLE, watch_idle, CT_BOOL, true),
	ENUM_KEY(KEY_TCP_KEEPALIVE, tcp_keepalive, CT_BOOL, false),
	/* The kernel counts these in whole seconds, at most 32767
	 * (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL) and 127 probes
	 * (MAX_TCP_KEEPCNT); ms round up. With keepalive on, a dead idle
	 * peer is found after 60 s + 6 x 10 s rather than the kernel's
	 * 7200 s + 9 x 75 s, which outlives most NAT and firewall idle
	 * timeouts. */
	UINT_KEY(KEY_TCP_KEEPALIVE_IDLE_MS, tcp_keepalive_idle_ms, 1, 32767000, 60000),
	UINT_KEY(KEY_TCP_KEEPALIVE_INTERVAL_MS, tcp_keepalive_interval_ms, 1,
		 32767000, 10000),
	UINT_KEY(KEY_TCP_KEEPALIVE_COUNT, tcp_keepalive_count, 1, 127, 6),
	/* TCP_USER_TIMEOUT takes an int. */
	UINT_KEY(KEY_TCP_USER_TIMEOUT_MS, tcp_user_timeout_ms, 0, INT_MAX, 0),
	[KEY_SOURCE_ADDRESS] = {
		.name = "source_address", .type = CT_SOURCES,
		.offset = offsetof(struct pool_settings, source_address),
	},
	ENUM_KEY(KEY_LOCAL_PORT_RANGE, local_port_range, CT_PORT_RANGE, 0),
	/* glibc's own bound for one DNS try is 5 s (resolv.conf timeout);
	 * 0 would fail every lookup of a name. */
	UINT_KEY(KEY_RESOLVE_TIMEOUT_MS, resolve_timeout_ms, 1, UINT32_MAX, 5000),
	/* Off, as before: every new connection resolves its name afresh. */
	UINT_KEY(KEY_DNS_REFRESH_MS, dns_refresh_ms, 0, UINT32_MAX, 0),
	/* RFC 8305's recommended Connection Attempt Delay; curl and Go use
	 * it too. 0 = try every address at once. */
	UINT_KEY(KEY_HAPPY_EYEBALLS_MS, happy_eyeballs_ms, 0, UINT32_MAX, 250),
	UINT_KEY(KEY_CONNECT_BACKOFF_MS, connect_backoff_ms, 0, UINT32_MAX, 0),
	UINT_KEY(KEY_CONNECT_BACKOFF_MAX_MS, connect_backoff_max_ms, 0, UINT32_MAX, 30000),
	UINT_KEY(KEY_MAX_CONNECTING, max_connecting, 0, UINT32_MAX, 0),
	/* On: a thread's get + put of its own last connection touches no
	 * line another thread writes (park.c); the caps and checks hold. */
	ENUM_KEY(KEY_THREAD_CACHE, thread_cache, CT_BOOL, true),
};

struct choice {
	const char *name;
	unsigned value;
};

static const struct choice teardowns[] = {
	{ "close", TEARDOWN_CLOSE },
	{ "abort", TEARDOWN_ABORT },
	{ "peer-first", TEARDOWN_PEER_FIRST },
	{ NULL, 0 }
};

/* A fallback must not wait on the peer again: only the immediate ones. */
static const struct choice fallbacks[] = {
	{ "abort", TEARDOWN_ABORT },
	{ "close", TEARDOWN_CLOSE },
	{ NULL, 0 }
};

static const struct choice maint_modes[] = {
	{ "thread", MAINT_THREAD },
	{ "manual", MAINT_MANUAL },
	{ NULL, 0 }
};

static const struct choice bools[] = {
	{ "on", true },
	{ "off", false },
	{ NULL, 0 }
};

static const struct choice *choices_of(enum config_type t)
{
	switch (t) {
	case CT_TEARDOWN:
		return teardowns;
	case CT_FALLBACK:
		return fallbacks;
	case CT_MAINT:
		return maint_modes;
	case CT_BOOL:
		return bools;
	case CT_UINT:
	case CT_BYTES:
	case CT_STRING:
	case CT_PORT_RANGE:
	case CT_SOURCES:
		break;
	}
	return NULL;
}

int config_key_index(const char *name)
{
	int i;

	for (i = 0; i < CONFIG_NKEYS; i++)
		if (strcmp(config_keys[i].name, name) == 0)
			return i;
	return -1;
}

/* ---- typed access through the table's offsets ---- */

static void *field(const void *base, size_t off)
{
	return (char *)base + off;
}

/* Numbers and enums, as an unsigned value. */
static uint32_t value_get(const struct config_key *k, const void *base)
{
	void *p = field(base, k->offset);

	switch (k->type) {
	case CT_UINT:
	case CT_PORT_RANGE:
		return *(uint32_t *)p;
	case CT_TEARDOWN:
	case CT_FALLBACK:
		return (uint32_t)*(enum pool_teardown *)p;
	case CT_MAINT:
		return (uint32_t)*(enum pool_maint_mode *)p;
	case CT_BOOL:
		return *(bool *)p;
	case CT_BYTES:
	case CT_STRING:
	case CT_SOURCES:
		break;
	}
	return 0;
}

static void value_put(const struct config_key *k, void *base, uint32_t v)
{
	void *p = field(base, k->offset);

	switch (k->type) {
	case CT_UINT:
	case CT_PORT_RANGE:
		*(uint32_t *)p = v;
		break;
	case CT_TEARDOWN:
	case CT_FALLBACK:
		*(enum pool_teardown *)p = (enum pool_teardown)v;
		break;
	case CT_MAINT:
		*(enum pool_maint_mode *)p = (enum pool_maint_mode)v;
		break;
	case CT_BOOL:
		*(bool *)p = v != 0;
		break;
	case CT_BYTES:
	case CT_STRING:
	case CT_SOURCES:
		break;
	}
}

static char **bytes_ptr(const struct config_key *k, const void *base)
{
	return field(base, k->offset);
}

static size_t *bytes_len(const struct config_key *k, const void *base)
{
	return field(base, k->len_offset);
}

/* A string value's length: CT_STRING keeps none, its text ends at NUL. */
static size_t owned_len(const struct config_key *k, const void *base)
{
	const char *p = *bytes_ptr(k, base);

	if (k->type == CT_BYTES)
		return *bytes_len(k, base);
	return p ? strlen(p) + 1 : 0;
}

/* Set a string value, and its length where it keeps one. */
static void owned_put(const struct config_key *k, void *base, char *p,
                      size_t len)
{
	*bytes_ptr(k, base) = p;
	if (k->type == CT_BYTES)
		*bytes_len(k, base) = len;
}

static struct pool_sources *sources_ptr(const struct config_key *k,
                                        const void *base)
{
	return field(base, k->offset);
}

/* Where key k of [pool] lives: pool-wide keys in the config itself. */
static void *pool_base(const struct config_key *k, const struct pool_config *cfg)
{
	return k->pool_only ? (void *)cfg : (void *)&cfg->defaults;
}

void config_set_defaults(struct pool_config *cfg)
{
	const struct config_key *k;

	for (k = config_keys; k < config_keys + CONFIG_NKEYS; k++) {
		if (config_key_owned(k))
			owned_put(k, pool_base(k, cfg), NULL, 0);
		else if (k->type == CT_SOURCES)
			memset(sources_ptr(k, pool_base(k, cfg)), 0,
			       sizeof(struct pool_sources));
		else
			value_put(k, pool_base(k, cfg), k->def);
	}
}

int settings_own(struct pool_settings *s, const struct pool_settings *src)
{
	const struct config_key *k;
	int rc = 0;

	/* First forget every pointer into src, so that a failure half-way
	 * leaves s holding nothing but its own copies. */
	for (k = config_keys; k < config_keys + CONFIG_NKEYS; k++)
		if (config_key_owned(k) && !k->pool_only)
			owned_put(k, s, NULL, 0);
	for (k = config_keys; k < config_keys + CONFIG_NKEYS; k++) {
		const char *from;
		size_t len;
		char *copy;

		if (!config_key_owned(k) || k->pool_only)
			continue;
		from = *bytes_ptr(k, src);
		len = owned_len(k, src);
		if (!from)
			continue;
		copy = malloc(len ? len : 1);
		if (!copy) {
			rc = POOL_ENOMEM;
			continue;
		}
		memcpy(copy, from, len);
		owned_put(k, s, copy, len);
	}
	return rc;
}

void settings_release(struct pool_settings *s)
{
	const struct config_key *k;

	if (!s)
		return;
	for (k = config_keys; k < config_keys + CONFIG_NKEYS; k++) {
		if (config_key_owned(k) && !k->pool_only) {
			free(*bytes_ptr(k, s));
			owned_put(k, s, NULL, 0);
		}
	}
}

void config_overlay(struct pool_settings *out, const struct pool_settings *base,
                    const struct pool_section *sec)
{
	const struct config_key *k;

	*out = *base;
	if (!sec)
		return;
	for (k = config_keys; k < config_keys + CONFIG_NKEYS; k++) {
		if (k->pool_only || !(sec->set_mask & (UINT64_C(1) << (k - config_keys))))
			continue;
		if (config_key_owned(k))
			owned_put(k, out, *bytes_ptr(k, &sec->set),
			          owned_len(k, &sec->set));
		else if (k->type == CT_SOURCES)
			*sources_ptr(k, out) = *sources_ptr(k, &sec->set);
		else
			value_put(k, out, value_get(k, &sec->set));
	}
}

/* ---- escaping, for messages and the dump ---- */

/* One byte in the close_request escape syntax; returns its length. */
static size_t escape_one(unsigned char c, char out[5])
{
	static const char plain[] = "\\\"\r\n\t";
	static const char named[] = "\\\"rnt";
	const char *hit = c ? strchr(plain, c) : NULL;

	if (hit || c == '\0') {
		out[0] = '\\';
		out[1] = hit ? named[hit - plain] : '0';
		return 2;
	}
	if (c < 0x20 || c >= 0x7f) {
		snprintf(out, 5, "\\x%02x", c);
		return 4;
	}
	out[0] = (char)c;
	return 1;
}

size_t config_escape(char *out, size_t outlen, const char *s, size_t len)
{
	size_t i, o = 0;
	char one[5];

	if (outlen == 0)
		return 0;
	for (i = 0; i < len; i++) {
		size_t n = escape_one((unsigned char)s[i], one);

		if (o + n >= outlen)
			break;
		memcpy(out + o, one, n);
		o += n;
	}
	out[o] = '\0';
	return i;
}

#define QUOTE_SHOWN 64

void config_quote_bytes(char *out, size_t outlen, const char *s, size_t len)
{
	char body[QUOTE_SHOWN * 4 + 1];
	size_t shown = len > QUOTE_SHOWN ? QUOTE_SHOWN : len;
	size_t used = config_escape(body, sizeof(body), s, shown);

	snprintf(out, outlen, "\"%s\"%s", body, used < len ? "..." : "");
}

void config_quote(char *out, size_t outlen, const char *s)
{
	config_quote_bytes(out, outlen, s, strlen(s));
}

/* ---- parsing values ---- */

/* Plain decimal: no sign, no spaces, no base prefix, no trailing junk. */
static int parse_uint(const struct config_key *k, const char *s, uint32_t *out,
                      char *why, size_t whylen)
{
	uint64_t v = 0;
	char shown[QUOTE_SHOWN * 4 + 8];
	size_t i;

	for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > UINT32_MAX)
			v = (uint64_t)UINT32_MAX + 1; /* stays too big, never wraps */
	}
	config_quote(shown, sizeof(shown), s);
	if (i == 0 || s[i] != '\0') {
		snprintf(why, whylen, "not a number: %s", shown);
		return POOL_ECONFIG;
	}
	if (v >= k->min && v <= k->max) {
		*out = (uint32_t)v;
		return 0;
	}
	if (k->min == 0 && k->max == UINT32_MAX)
		snprintf(why, whylen, "out of range: %s", shown);
	else
		snprintf(why, whylen, "out of range: %s (%u..%u)", shown,
		         k->min, k->max);
	return POOL_ECONFIG;
}

/* "close, abort or peer-first" */
static void list_choices(char *out, size_t outlen, const struct choice *c)
{
	size_t o = 0;

	out[0] = '\0';
	for (; c->name && o < outlen; c++) {
		const char *sep = o == 0 ? "" : c[1].name ? ", " : " or ";
		int n = snprintf(out + o, outlen - o, "%s%s", sep, c->name);

		if (n < 0)
			break;
		o += (size_t)n;
	}
}

static int parse_choice(const struct config_key *k, const char *s, uint32_t *out,
                        char *why, size_t whylen)
{
	const struct choice *c;
	char shown[QUOTE_SHOWN * 4 + 8], list[128];

	for (c = choices_of(k->type); c && c->name; c++) {
		if (strcmp(c->name, s) == 0) {
			*out = c->value;
			return 0;
		}
	}
	config_quote(shown, sizeof(shown), s);
	list_choices(list, sizeof(list), choices_of(k->type));
	snprintf(why, whylen, "bad value: %s (expected %s)", shown, list);
	return POOL_ECONFIG;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode the escape at p (a backslash) into *c. Returns the last byte of
 * the escape, or NULL with why filled. */
static const char *unescape(const char *p, char *c, char *why, size_t whylen)
{
	static const char named[] = "rnt\\\"0";
	static const char bytes[] = "\r\n\t\\\"";
	const char *hit = p[1] ? strchr(named, p[1]) : NULL;

	if (hit) {
		*c = bytes[hit - named]; /* "0" maps to the terminating NUL */
		return p + 1;
	}
	if (p[1] == 'x') {
		int hi = hex_digit(p[2]);
		int lo = hi < 0 ? -1 : hex_digit(p[3]);

		if (lo >= 0) {
			*c = (char)(hi << 4 | lo);
			return p + 3;
		}
		snprintf(why, whylen, "bad escape: \\x needs two hex digits");
	} else if (p[1] == '\0') {
		snprintf(why, whylen, "unterminated string");
	} else if ((unsigned char)p[1] >= 0x20 && (unsigned char)p[1] < 0x7f) {
		snprintf(why, whylen, "bad escape \"\\%c\"", p[1]);
	} else {
		snprintf(why, whylen, "bad escape: backslash before byte 0x%02x",
		         (unsigned char)p[1]);
	}
	return NULL;
}

/* A quoted string with C escapes. The result may hold NUL bytes; "" gives
 * NULL (no close request), so a section can clear one it inherits. */
static int parse_bytes(const char *s, char **out, size_t *outlen,
                       char *why, size_t whylen)
{
	size_t o = 0;
	const char *p;
	char *buf = NULL;
	int rc = POOL_ECONFIG;

	if (s[0] != '"') {
		snprintf(why, whylen, "expected a quoted string");
		return POOL_ECONFIG;
	}
	buf = malloc(strlen(s)); /* decoding never lengthens */
	if (!buf) {
		snprintf(why, whylen, "out of memory");
		return POOL_ENOMEM;
	}
	for (p = s + 1; *p && *p != '"'; p++) {
		char c = *p;

		if (c == '\\') {
			p = unescape(p, &c, why, whylen);
			if (!p)
				goto out;
		}
		buf[o++] = c;
	}
	if (*p != '"') {
		snprintf(why, whylen, "unterminated string");
	} else if (p[1] != '\0') {
		snprintf(why, whylen, "junk after the closing quote");
	} else if (o > CONFIG_MAX_REQUEST) {
		snprintf(why, whylen, "too long (%zu bytes, max %u)", o,
		         CONFIG_MAX_REQUEST);
	} else {
		rc = 0;
	}
out:
	if (rc || o == 0) {
		free(buf);
		buf = NULL;
	}
	*out = buf;
	*outlen = rc ? 0 : o;
	return rc;
}

/* Whether s holds what a file cannot: a control character, or a comment
 * start (';' or '#' first or after a blank), which a file's reader cuts. */
static const char *string_unwritable(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return "control character in";
		if ((s[i] == ';' || s[i] == '#') &&
		    (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t'))
			return "a file would read a comment in";
	}
	return NULL;
}

/* Bare text, such as a path: everything after '=' (a file's inline
 * comment cut, blanks trimmed). "" gives NULL, so a section can go back
 * to the built-in behaviour. What a file could not hold is refused, from
 * pool_config_set too, so that the dump reads back the same; so is a
 * double quote anywhere. */
static int parse_string(const char *s, char **out, char *why, size_t whylen)
{
	char shown[QUOTE_SHOWN * 4 + 8];
	const char *bad = string_unwritable(s);
	size_t n = strlen(s);

	*out = NULL;
	config_quote(shown, sizeof(shown), s);
	if (bad) {
		snprintf(why, whylen, "%s %s", bad, shown);
		return POOL_ECONFIG;
	}
	/* Anywhere, not just first: the file's reader tracks quotes on
	 * every line, and would read "a\"b;c" with the ';' escaped. */
	if (strchr(s, '"')) {
		snprintf(why, whylen, "write it without quotes: %s", shown);
		return POOL_ECONFIG;
	}
	if (n > CONFIG_MAX_STRING) {
		snprintf(why, whylen, "too long (%zu bytes, max %u)", n,
		         CONFIG_MAX_STRING);
		return POOL_ECONFIG;
	}
	if (n == 0)
		return 0;
	*out = strdup(s);
	if (!*out) {
		snprintf(why, whylen, "out of memory");
		return POOL_ENOMEM;
	}
	return 0;
}

/* "LO-HI", ports 1..65535, LO <= HI; "" = unset (a section can clear
 * what it inherits). */
static int parse_port_range(const char *s, uint32_t *out, char *why,
                            size_t whylen)
{
	char shown[QUOTE_SHOWN * 4 + 8];
	unsigned long lo, hi;
	char *end;

	*out = 0;
	if (*s == '\0')
		return 0;
	config_quote(shown, sizeof(shown), s);
	if (*s < '0' || *s > '9')
		goto syntax;
	lo = strtoul(s, &end, 10);
	if (*end != '-' || end[1] < '0' || end[1] > '9')
		goto syntax;
	hi = strtoul(end + 1, &end, 10);
	if (*end != '\0')
		goto syntax;
	if (lo < 1 || hi > 65535) {
		snprintf(why, whylen, "out of range: %s (ports 1..65535)", shown);
		return POOL_ECONFIG;
	}
	if (lo > hi) {
		snprintf(why, whylen, "low port above high port: %s", shown);
		return POOL_ECONFIG;
	}
	*out = PORT_RANGE(lo, hi);
	return 0;
syntax:
	snprintf(why, whylen, "expected LO-HI: %s", shown);
	return POOL_ECONFIG;
}

/* One IP literal (IPv6 may carry a %scope) into *sa; no name lookup. */
static int parse_ip(const char *s, union pool_sockaddr *sa)
{
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST,
	                          .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	int ok;

	if (getaddrinfo(s, NULL, &hints, &res) != 0)
		return -1;
	ok = res->ai_addrlen <= sizeof(*sa) &&
	     (res->ai_family == AF_INET || res->ai_family == AF_INET6);
	if (ok) {
		memset(sa, 0, sizeof(*sa));
		memcpy(sa, res->ai_addr, res->ai_addrlen);
	}
	freeaddrinfo(res);
	return ok ? 0 : -1;
}

static bool sockaddr_same(const union pool_sockaddr *a, const union pool_sockaddr *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET)
		return a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
	return memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16) == 0 &&
	       a->in6.sin6_scope_id == b->in6.sin6_scope_id;
}

/* "IP, IP, ...": IPv4 and IPv6 literals, blanks around commas allowed;
 * "" = none. Built in a copy, so a bad list changes nothing. */
static int parse_sources(const char *s, struct pool_sources *out, char *why,
                         size_t whylen)
{
	struct pool_sources tmp = { .n = 0 };
	char item[INET6_ADDRSTRLEN + IF_NAMESIZE + 2], shown[QUOTE_SHOWN * 4 + 8];

	while (*s) {
		size_t len = strcspn(s, ",");
		const char *next = s[len] ? s + len + 1 : s + len;
		uint32_t i;

		while (len && (*s == ' ' || *s == '\t')) {
			s++;
			len--;
		}
		while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
			len--;
		snprintf(item, sizeof(item), "%.*s", (int)len, s);
		config_quote(shown, sizeof(shown), item);
		if (len == 0 || len >= sizeof(item) ||
		    parse_ip(item, &tmp.addr[tmp.n]) != 0) {
			snprintf(why, whylen, "not an IP address: %s", shown);
			return POOL_ECONFIG;
		}
		for (i = 0; i < tmp.n; i++)
			if (sockaddr_same(&tmp.addr[i], &tmp.addr[tmp.n])) {
				snprintf(why, whylen, "listed twice: %s", shown);
				return POOL_ECONFIG;
			}
		if (++tmp.n == POOL_MAX_SOURCES && *next) {
			snprintf(why, whylen, "too many addresses (max %d)",
			         POOL_MAX_SOURCES);
			return POOL_ECONFIG;
		}
		s = next;
		if (*s == '\0' && next[-1] == ',') {
			snprintf(why, whylen, "empty address after ','");
			return POOL_ECONFIG;
		}
	}
	*out = tmp;
	return 0;
}

static int store_value(const struct config_key *k, void *base, const char *value,
                       char *why, size_t whylen)
{
	char *bytes;
	size_t len = 0;
	uint32_t v;
	int rc;

	if (config_key_owned(k)) {
		if (k->type == CT_BYTES)
			rc = parse_bytes(value, &bytes, &len, why, whylen);
		else
			rc = parse_string(value, &bytes, why, whylen);
		if (rc)
			return rc;
		free(*bytes_ptr(k, base));
		owned_put(k, base, bytes, len);
		return 0;
	}
	if (k->type == CT_SOURCES)
		return parse_sources(value, sources_ptr(k, base), why, whylen);
	if (k->type == CT_UINT)
		rc = parse_uint(k, value, &v, why, whylen);
	else if (k->type == CT_PORT_RANGE)
		rc = parse_port_range(value, &v, why, whylen);
	else
		rc = parse_choice(k, value, &v, why, whylen);
	if (rc == 0)
		value_put(k, base, v);
	return rc;
}

int config_key_set(struct pool_config *cfg, struct pool_section *sec, int idx,
                   const char *value, char *why, size_t whylen)
{
	const struct config_key *k;
	void *base;
	int rc;

	if (idx < 0 || idx >= CONFIG_NKEYS) {
		snprintf(why, whylen, "unknown key");
		return POOL_ECONFIG;
	}
	k = &config_keys[idx];
	if (k->pool_only && sec) {
		snprintf(why, whylen, "only allowed in [pool]");
		return POOL_ECONFIG;
	}
	base = sec ? (void *)&sec->set : pool_base(k, cfg);
	rc = store_value(k, base, value, why, whylen);
	if (rc == 0 && sec)
		sec->set_mask |= UINT64_C(1) << idx;
	return rc;
}

/* ---- the dump ---- */

static const char *choice_name(const struct choice *c, uint32_t v)
{
	for (; c && c->name; c++)
		if (c->value == v)
			return c->name;
	return "?";
}

/* The length of s escaped by config_escape, without truncation. */
static size_t escaped_len(const char *s, size_t len)
{
	char one[5];
	size_t i, n = 0;

	for (i = 0; i < len; i++)
		n += escape_one((unsigned char)s[i], one);
	return n;
}

/* A close_request: quoted, escaped. */
static size_t format_bytes(char *out, size_t outlen, const char *s, size_t len)
{
	size_t need = escaped_len(s, len) + 2;

	if (outlen == 0)
		return need;
	if (need < outlen) {
		out[0] = '"';
		config_escape(out + 1, outlen - 1, s, len);
		out[need - 1] = '"';
		out[need] = '\0';
	} else {
		out[0] = '\0'; /* never half an escape or an unclosed quote */
	}
	return need;
}

/* A source_address list, in the syntax parse_sources reads back. */
static size_t format_sources(char *out, size_t outlen,
                             const struct pool_sources *src)
{
	char host[NI_MAXHOST];
	size_t used = 0;
	uint32_t i;

	if (outlen)
		out[0] = '\0';
	for (i = 0; i < src->n; i++) {
		const union pool_sockaddr *a = &src->addr[i];
		int n;

		if (getnameinfo(&a->sa, sockaddr_len(a), host, sizeof(host), NULL, 0,
		                NI_NUMERICHOST) != 0)
			snprintf(host, sizeof(host), "?");
		n = snprintf(out + (used < outlen ? used : outlen),
		             used < outlen ? outlen - used : 0, "%s%s",
		             i ? ", " : "", host);
		if (n > 0)
			used += (size_t)n;
	}
	return used;
}

size_t config_format(char *out, size_t outlen, const struct config_key *k,
                     const void *base)
{
	const char *str;
	uint32_t v;
	int n;

	switch (k->type) {
	case CT_SOURCES:
		return format_sources(out, outlen, sources_ptr(k, base));
	case CT_PORT_RANGE:
		v = value_get(k, base);
		/* Unset: nothing after '=', as the parser takes it. */
		n = v ? snprintf(out, outlen, "%u-%u", PORT_RANGE_LO(v),
		                 PORT_RANGE_HI(v))
		      : snprintf(out, outlen, "%s", "");
		break;
	case CT_BYTES:
		return format_bytes(out, outlen, *bytes_ptr(k, base),
		                    *bytes_len(k, base));
	case CT_STRING:
		str = *bytes_ptr(k, base);
		n = snprintf(out, outlen, "%s", str ? str : "");
		break;
	case CT_UINT:
		n = snprintf(out, outlen, "%u", value_get(k, base));
		break;
	default:
		n = snprintf(out, outlen, "%s",
		             choice_name(choices_of(k->type), value_get(k, base)));
		break;
	}
	return n < 0 ? 0 : (size_t)n;
}

static int dump_key(FILE *out, const struct config_key *k, const void *base)
{
	char small[256], *text = small;
	size_t n = config_format(small, sizeof(small), k, base);

	/* Only a long close_request needs more room. */
	if (n >= sizeof(small)) {
		text = malloc(n + 1);
		if (!text)
			return POOL_ENOMEM;
		config_format(text, n + 1, k, base);
	}
	/* Bare text has nothing after '=' when unset: no trailing blank. */
	fprintf(out, "%s =%s%s\n", k->name, *text ? " " : "", text);
	if (text != small)
		free(text);
	return 0;
}

int config_dump(const struct pool_config *cfg, FILE *out)
{
	const struct config_key *k;
	struct pool_settings eff;
	size_t i;
	int rc = 0;

	fputs("[pool]\n", out);
	for (k = config_keys; k < config_keys + CONFIG_NKEYS && !rc; k++)
		rc = dump_key(out, k, pool_base(k, cfg));
	for (i = 0; i < cfg->nsections && !rc; i++) {
		config_overlay(&eff, &cfg->defaults, &cfg->sections[i]);
		fprintf(out, "\n[endpoint %s]\n", cfg->sections[i].pattern);
		for (k = config_keys; k < config_keys + CONFIG_NKEYS && !rc; k++)
			if (!k->pool_only)
				rc = dump_key(out, k, &eff);
	}
	if (rc)
		return rc;
	return fflush(out) == 0 && !ferror(out) ? 0 : POOL_ESYS;
}
