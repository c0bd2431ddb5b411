/*
 * The configuration key table: one entry per key drives parsing (files and
 * pool_config_set), the built-in defaults, section overlays and the dump.
 */
#ifndef TCPOOL_CONFIG_KEYS_H
#define TCPOOL_CONFIG_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pool-internal.h"

enum config_type {
	CT_UINT,     /* uint32_t, decimal, within min..max */
	CT_TEARDOWN, /* enum pool_teardown: close, abort, peer-first */
	CT_FALLBACK, /* enum pool_teardown: abort, close */
	CT_MAINT,    /* enum pool_maint_mode: thread, manual */
	CT_BYTES,    /* quoted string with C escapes: char * plus size_t */
	CT_STRING,   /* bare text to the end of the line (a path, a host
	              * name): char *, NUL-terminated; "" clears it */
	CT_BOOL,     /* bool: on, off */
	CT_PORT_RANGE, /* uint32_t PORT_RANGE(lo, hi) from "LO-HI"; "" = unset */
	CT_SOURCES   /* struct pool_sources from "IP[,IP...]"; "" = none */
};

/* Index of each key in config_keys[], which is also its set_mask bit. */
enum config_key_id {
	KEY_TEARDOWN,
	KEY_CLOSE_REQUEST,
	KEY_CLOSE_TIMEOUT_MS,
	KEY_FALLBACK,
	KEY_MAX_IDLE,
	KEY_MAX_ACTIVE,
	KEY_MAX_TOTAL,
	KEY_IDLE_TIMEOUT_MS,
	KEY_MAX_LIFETIME_MS,
	KEY_LIFETIME_JITTER_PCT,
	KEY_MAX_USES,
	KEY_CONNECT_TIMEOUT_MS,
	KEY_ACQUIRE_TIMEOUT_MS,
	KEY_VALIDATE_IDLE_MS,
	KEY_MIN_IDLE,
	KEY_LEAK_WARN_MS,
	KEY_IDLE_SHRINK_MS,
	KEY_MAINTENANCE,
	KEY_TLS,
	KEY_TLS_CA_FILE,
	KEY_TLS_SERVER_NAME,
	KEY_TLS_VERIFY,
	KEY_TLS_CERT_FILE,
	KEY_TLS_KEY_FILE,
	KEY_WATCH_IDLE,
	KEY_TCP_KEEPALIVE,
	KEY_TCP_KEEPALIVE_IDLE_MS,
	KEY_TCP_KEEPALIVE_INTERVAL_MS,
	KEY_TCP_KEEPALIVE_COUNT,
	KEY_TCP_USER_TIMEOUT_MS,
	KEY_SOURCE_ADDRESS,
	KEY_LOCAL_PORT_RANGE,
	KEY_RESOLVE_TIMEOUT_MS,
	KEY_DNS_REFRESH_MS,
	KEY_HAPPY_EYEBALLS_MS,
	KEY_CONNECT_BACKOFF_MS,
	KEY_CONNECT_BACKOFF_MAX_MS,
	KEY_MAX_CONNECTING,
	KEY_THREAD_CACHE,
	CONFIG_NKEYS
};

struct config_key {
	const char *name;
	enum config_type type;
	bool pool_only;    /* lives in struct pool_config: [pool] only */
	size_t offset;     /* into struct pool_settings, or struct pool_config
	                    * when pool_only */
	size_t len_offset; /* CT_BYTES: where the length goes */
	uint32_t min, max; /* CT_UINT bounds */
	uint32_t def;      /* built-in default (enums and bools by value);
	                    * CT_BYTES, CT_STRING: unset */
};

extern const struct config_key config_keys[CONFIG_NKEYS];

/* Bytes a close request may hold: it is sent with one non-blocking write. */
#define CONFIG_MAX_REQUEST 4096u

/* Bytes a bare-text value (a path, a host name) may hold: PATH_MAX. */
#define CONFIG_MAX_STRING 4096u

/* Endpoint sections a configuration may hold: a guard against runaway
 * input, far above any real use. */
#define CONFIG_MAX_SECTIONS 1024u

/* The index of the key called name, or -1. */
int config_key_index(const char *name);

/* Fill a zeroed configuration with the built-in defaults. Cannot fail. */
void config_set_defaults(struct pool_config *cfg);

/* Parse value (the text after '=') for key idx and store it in [pool]
 * (sec NULL) or in sec, marking it in sec->set_mask. On failure nothing
 * changes and why holds the reason; returns 0, POOL_ECONFIG or
 * POOL_ENOMEM. */
int config_key_set(struct pool_config *cfg, struct pool_section *sec, int idx,
                   const char *value, char *why, size_t whylen);

/* out = base with every key sec sets replaced (sec may be NULL). Shallow:
 * out->close_request points into base or sec. Cannot fail. */
void config_overlay(struct pool_settings *out, const struct pool_settings *base,
                    const struct pool_section *sec);

/* Whether key k's value is heap memory the settings own (a string). */
static inline bool config_key_owned(const struct config_key *k)
{
	return k->type == CT_BYTES || k->type == CT_STRING;
}

/* Make the strings of s, a shallow copy of src, its own copies. On
 * POOL_ENOMEM the ones not copied are NULL: s can still be released. */
int settings_own(struct pool_settings *s, const struct pool_settings *src);

/* The value of key k in base (struct pool_settings, or struct pool_config
 * for a pool-wide key) as a file would write it, into out like snprintf:
 * returns the length of the whole text. */
size_t config_format(char *out, size_t outlen, const struct config_key *k,
                     const void *base);

/* Write len bytes of s into out, C-escaped as a close_request is written
 * (\" \\ \r \n \t \0 \xHH), without quotes; truncated to fit outlen (a
 * partial escape is never written). Returns the bytes of s consumed. */
size_t config_escape(char *out, size_t outlen, const char *s, size_t len);

/* A quoted, escaped and, past 64 bytes, shortened copy of s for messages. */
void config_quote(char *out, size_t outlen, const char *s);
/* The same for len bytes that may hold NUL bytes (a close_request). */
void config_quote_bytes(char *out, size_t outlen, const char *s, size_t len);

/* The hooks an endpoint matching sec (NULL: none) gets: the section's
 * when it sets them, else [pool]'s; NULL when none. Points into cfg. */
const pool_hooks_t *config_hooks(const struct pool_config *cfg,
                                 const struct pool_section *sec);

/* Check the rules that span keys, on [pool] and on every section's
 * effective settings: peer-first needs a close_request, min_idle fits
 * under max_idle and max_active. pool_config_load() applies them to each
 * file; pool_config_set() cannot (keys come one call at a time), so
 * pool_create() checks the finished configuration with this. Returns 0
 * or POOL_ECONFIG with err = "KEY: reason" or
 * "[endpoint PATTERN] KEY: reason". */
int config_validate(const struct pool_config *cfg, char *err, size_t errlen);

/* Settings that are valid but likely to churn connections, such as
 * max_idle below max_active (a burst above max_idle is retired, at once
 * with idle_shrink_ms = 0). Calls warn once per finding, [pool] first,
 * with "[pool] KEY: reason" or "[endpoint PATTERN] KEY: reason"; returns
 * how many there were. */
unsigned config_warnings(const struct pool_config *cfg,
                         void (*warn)(const char *msg, void *ud), void *ud);

/* Print the effective settings of [pool], then of each endpoint section,
 * in the file format. Returns 0, POOL_ENOMEM, or POOL_ESYS when writing
 * failed. */
int config_dump(const struct pool_config *cfg, FILE *out);

#endif /* TCPOOL_CONFIG_KEYS_H */
