/*
 * Configuration: defaults, every key, every error with its exact text,
 * section matching, escapes, pool_config_set, whole-file rejection.
 * Files are written to a private mkdtemp() directory, removed at the end.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config-keys.h"
#include "pool-internal.h"
#include "suites.h"

static char tmpdir[] = "/tmp/check_config.XXXXXX";

static void dir_setup(void)
{
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void dir_teardown(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	char path[512];

	while (d && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(tmpdir);
}

/* Write len bytes to a fresh file in tmpdir; returns its path (static). */
static const char *write_conf_len(const char *text, size_t len)
{
	static char path[512];
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "%s/cfgXXXXXX", tmpdir);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(text, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	return path;
}

static const char *write_conf(const char *text)
{
	return write_conf_len(text, strlen(text));
}

static void load_ok(pool_config_t *cfg, const char *text)
{
	char err[512] = "unset";
	int rc = pool_config_load(cfg, write_conf(text), err, sizeof(err));

	ck_assert_msg(rc == 0, "load failed: %s", err);
	ck_assert_str_eq(err, "");
}

static void set_ok(pool_config_t *cfg, const char *ep, const char *key,
                   const char *value)
{
	char err[512];
	int rc = pool_config_set(cfg, ep, key, value, err, sizeof(err));

	ck_assert_msg(rc == 0, "set %s = %s: %s", key, value, err);
}

/* The settings for endpoint ep; release with settings_release(). */
static struct pool_settings resolve(const pool_config_t *cfg, const char *ep)
{
	struct endpoint_addr a;
	struct pool_settings s;

	ck_assert_int_eq(endpoint_parse(ep, false, &a, NULL, 0), 0);
	ck_assert_int_eq(config_resolve(cfg, &a, &s), 0);
	return s;
}

static uint32_t max_idle_of(const pool_config_t *cfg, const char *ep)
{
	struct pool_settings s = resolve(cfg, ep);

	settings_release(&s);
	return s.max_idle;
}

/* The whole configuration as text, for before/after comparisons. */
static char *dump_of(const pool_config_t *cfg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(config_dump(cfg, f), 0);
	fclose(f);
	return text;
}

/* ---- defaults and every key ---- */

START_TEST(defaults)
{
	pool_config_t *cfg = pool_config_new();
	struct pool_settings s;
	char err[256];

	ck_assert_ptr_nonnull(cfg);
	ck_assert_uint_eq(cfg->max_total, 0);
	ck_assert_int_eq(cfg->maintenance, MAINT_THREAD);
	ck_assert_uint_eq(cfg->nsections, 0);
	s = resolve(cfg, "example.com:80");
	ck_assert_int_eq(s.teardown, TEARDOWN_CLOSE);
	ck_assert_ptr_null(s.close_request);
	ck_assert_uint_eq(s.close_request_len, 0);
	ck_assert_uint_eq(s.close_timeout_ms, 200);
	ck_assert_int_eq(s.fallback, TEARDOWN_ABORT);
	ck_assert_uint_eq(s.max_idle, 8);
	ck_assert_uint_eq(s.max_active, 0);
	ck_assert_uint_eq(s.idle_timeout_ms, 60000);
	ck_assert_uint_eq(s.max_lifetime_ms, 0);
	ck_assert_uint_eq(s.lifetime_jitter_pct, 5);
	ck_assert_uint_eq(s.max_uses, 0);
	ck_assert_uint_eq(s.connect_timeout_ms, 2000);
	ck_assert_uint_eq(s.acquire_timeout_ms, 1000);
	ck_assert_uint_eq(s.validate_idle_ms, 0);
	ck_assert_uint_eq(s.min_idle, 0);
	ck_assert_uint_eq(s.leak_warn_ms, 0);
	ck_assert(!s.tls);
	ck_assert_ptr_null(s.tls_ca_file);
	ck_assert_ptr_null(s.tls_server_name);
	ck_assert(s.tls_verify);
	ck_assert_ptr_null(s.tls_cert_file);
	ck_assert_ptr_null(s.tls_key_file);
	/* SPEC.md: watch_idle on; the other later keys off */
	ck_assert(s.watch_idle);
	ck_assert(!s.tcp_keepalive);
	ck_assert_uint_eq(s.tcp_keepalive_idle_ms, 60000);
	ck_assert_uint_eq(s.tcp_keepalive_interval_ms, 10000);
	ck_assert_uint_eq(s.tcp_keepalive_count, 6);
	ck_assert_uint_eq(s.tcp_user_timeout_ms, 0);
	ck_assert_uint_eq(s.source_address.n, 0);
	ck_assert_uint_eq(s.local_port_range, 0);
	settings_release(&s);
	ck_assert_int_eq(config_validate(cfg, err, sizeof(err)), 0);
	pool_config_free(cfg);
}
END_TEST

START_TEST(every_key_in_pool)
{
	pool_config_t *cfg = pool_config_new();
	struct pool_settings s;

	load_ok(cfg, "# every key, none at its default\n"
	        "[pool]\n"
	        "teardown = peer-first\n"
	        "close_request = \"quit\\r\\n\"\n"
	        "close_timeout_ms = 300\n"
	        "fallback = close\n"
	        "max_idle = 9\n"
	        "max_active = 10\n"
	        "max_total = 11\n"
	        "idle_timeout_ms = 12\n"
	        "max_lifetime_ms = 13\n"
	        "lifetime_jitter_pct = 50\n"
	        "max_uses = 15\n"
	        "connect_timeout_ms = 16\n"
	        "acquire_timeout_ms = 0\n"
	        "validate_idle_ms = 18\n"
	        "min_idle = 2\n"
	        "leak_warn_ms = 4294967295\n"
	        "maintenance = manual\n"
	        "tls = on\n"
	        "tls_ca_file = /etc/ssl/my ca.pem\n"
	        "tls_server_name = db.example\n"
	        "tls_verify = off\n"
	        "tls_cert_file = client.pem\n"
	        "tls_key_file = client.key\n");
	ck_assert_uint_eq(cfg->max_total, 11);
	ck_assert_int_eq(cfg->maintenance, MAINT_MANUAL);
	s = resolve(cfg, "10.0.0.1:6379");
	ck_assert_int_eq(s.teardown, TEARDOWN_PEER_FIRST);
	ck_assert_uint_eq(s.close_request_len, 6);
	ck_assert_mem_eq(s.close_request, "quit\r\n", 6);
	ck_assert_uint_eq(s.close_timeout_ms, 300);
	ck_assert_int_eq(s.fallback, TEARDOWN_CLOSE);
	ck_assert_uint_eq(s.max_idle, 9);
	ck_assert_uint_eq(s.max_active, 10);
	ck_assert_uint_eq(s.idle_timeout_ms, 12);
	ck_assert_uint_eq(s.max_lifetime_ms, 13);
	ck_assert_uint_eq(s.lifetime_jitter_pct, 50);
	ck_assert_uint_eq(s.max_uses, 15);
	ck_assert_uint_eq(s.connect_timeout_ms, 16);
	ck_assert_uint_eq(s.acquire_timeout_ms, 0);
	ck_assert_uint_eq(s.validate_idle_ms, 18);
	ck_assert_uint_eq(s.min_idle, 2);
	ck_assert_uint_eq(s.leak_warn_ms, 4294967295u);
	ck_assert(s.tls);
	ck_assert_str_eq(s.tls_ca_file, "/etc/ssl/my ca.pem");
	ck_assert_str_eq(s.tls_server_name, "db.example");
	ck_assert(!s.tls_verify);
	ck_assert_str_eq(s.tls_cert_file, "client.pem");
	ck_assert_str_eq(s.tls_key_file, "client.key");
	settings_release(&s);
	pool_config_free(cfg);
}
END_TEST

START_TEST(every_key_in_section)
{
	pool_config_t *cfg = pool_config_new();
	struct pool_settings s;

	load_ok(cfg, "[endpoint db:5432]\n"
	        "teardown = abort\n"
	        "close_request = \"\\x00\"\n"
	        "close_timeout_ms = 1\n"
	        "fallback = abort\n"
	        "max_idle = 3\n"
	        "max_active = 4\n"
	        "idle_timeout_ms = 5\n"
	        "max_lifetime_ms = 6\n"
	        "lifetime_jitter_pct = 7\n"
	        "max_uses = 8\n"
	        "connect_timeout_ms = 9\n"
	        "acquire_timeout_ms = 10\n"
	        "validate_idle_ms = 11\n"
	        "min_idle = 1\n"
	        "leak_warn_ms = 13\n"
	        "idle_shrink_ms = 14\n"
	        "tls = on\n"
	        "tls_ca_file = ca.pem\n"
	        "tls_server_name = db\n"
	        "tls_verify = off\n"
	        "tls_cert_file = c.pem\n"
	        "tls_key_file = k.pem\n"
	        "watch_idle = off\n"
	        "tcp_keepalive = on\n"
	        "tcp_keepalive_idle_ms = 15000\n"
	        "tcp_keepalive_interval_ms = 16000\n"
	        "tcp_keepalive_count = 17\n"
	        "tcp_user_timeout_ms = 18\n"
	        "source_address = 127.0.0.19, ::1\n"
	        "local_port_range = 20000-20020\n"
	        "resolve_timeout_ms = 21\n"
	        "dns_refresh_ms = 22\n"
	        "happy_eyeballs_ms = 23\n"
	        "connect_backoff_ms = 24\n"
	        "connect_backoff_max_ms = 25\n"
	        "max_connecting = 26\n"
	        "thread_cache = off\n"
	        "[pool]\n"
	        "fallback = close\n"
	        "teardown = close\n"
	        "tls_ca_file = pool-ca.pem\n");
	ck_assert_uint_eq(cfg->nsections, 1);
	ck_assert_str_eq(cfg->sections[0].pattern, "db:5432");
	ck_assert_int_eq(cfg->sections[0].line, 1);
	/* every endpoint key set, and no pool-wide one */
	ck_assert_uint_eq(cfg->sections[0].set_mask,
	                  ((UINT64_C(1) << CONFIG_NKEYS) - 1) &
	                  ~(UINT64_C(1) << KEY_MAX_TOTAL) &
	                  ~(UINT64_C(1) << KEY_MAINTENANCE));
	s = resolve(cfg, "db:5432");
	ck_assert_int_eq(s.teardown, TEARDOWN_ABORT);
	ck_assert_uint_eq(s.close_request_len, 1);
	ck_assert_int_eq(s.close_request[0], '\0');
	ck_assert_uint_eq(s.close_timeout_ms, 1);
	ck_assert_int_eq(s.fallback, TEARDOWN_ABORT);
	ck_assert_uint_eq(s.max_idle, 3);
	ck_assert_uint_eq(s.max_active, 4);
	ck_assert_uint_eq(s.idle_timeout_ms, 5);
	ck_assert_uint_eq(s.max_lifetime_ms, 6);
	ck_assert_uint_eq(s.lifetime_jitter_pct, 7);
	ck_assert_uint_eq(s.max_uses, 8);
	ck_assert_uint_eq(s.connect_timeout_ms, 9);
	ck_assert_uint_eq(s.acquire_timeout_ms, 10);
	ck_assert_uint_eq(s.validate_idle_ms, 11);
	ck_assert_uint_eq(s.min_idle, 1);
	ck_assert_uint_eq(s.leak_warn_ms, 13);
	ck_assert_uint_eq(s.idle_shrink_ms, 14);
	ck_assert(s.tls);
	ck_assert_str_eq(s.tls_ca_file, "ca.pem");
	ck_assert_str_eq(s.tls_server_name, "db");
	ck_assert(!s.tls_verify);
	ck_assert_str_eq(s.tls_cert_file, "c.pem");
	ck_assert_str_eq(s.tls_key_file, "k.pem");
	ck_assert(!s.watch_idle);
	ck_assert(s.tcp_keepalive);
	ck_assert_uint_eq(s.tcp_keepalive_idle_ms, 15000);
	ck_assert_uint_eq(s.tcp_keepalive_interval_ms, 16000);
	ck_assert_uint_eq(s.tcp_keepalive_count, 17);
	ck_assert_uint_eq(s.tcp_user_timeout_ms, 18);
	ck_assert_uint_eq(s.resolve_timeout_ms, 21);
	ck_assert_uint_eq(s.dns_refresh_ms, 22);
	ck_assert_uint_eq(s.happy_eyeballs_ms, 23);
	ck_assert_uint_eq(s.connect_backoff_ms, 24);
	ck_assert_uint_eq(s.connect_backoff_max_ms, 25);
	ck_assert_uint_eq(s.max_connecting, 26);
	ck_assert(!s.thread_cache);
	ck_assert_uint_eq(s.source_address.n, 2);
	ck_assert_int_eq(s.source_address.addr[0].sa.sa_family, AF_INET);
	ck_assert_int_eq(s.source_address.addr[1].sa.sa_family, AF_INET6);
	ck_assert_uint_eq(s.local_port_range, PORT_RANGE(20000, 20020));
	settings_release(&s);
	/* another endpoint gets [pool], which came later in the file */
	s = resolve(cfg, "db:5433");
	ck_assert_int_eq(s.fallback, TEARDOWN_CLOSE);
	ck_assert_uint_eq(s.max_idle, 8);
	ck_assert(!s.tls);
	ck_assert_str_eq(s.tls_ca_file, "pool-ca.pem");
	ck_assert_ptr_null(s.tls_server_name);
	settings_release(&s);
	pool_config_free(cfg);
}
END_TEST

/* ---- syntax: comments, blanks, indentation, BOM, CRLF ---- */

START_TEST(empty_and_comment_files)
{
	pool_config_t *cfg = pool_config_new();
	pool_config_t *fresh = pool_config_new();
	char *before = dump_of(fresh);
	char *after;

	load_ok(cfg, "");
	load_ok(cfg, "\n\n   \n");
	load_ok(cfg, "# only\n; comments\n   # indented\n");
	load_ok(cfg, "[pool]\n");
	load_ok(cfg, "[endpoint *:1]\n");
	ck_assert_uint_eq(cfg->nsections, 1);
	ck_assert_uint_eq(cfg->sections[0].set_mask, 0);
	ck_assert_uint_eq(max_idle_of(cfg, "x:1"), 8);
	pool_config_free(cfg);
	cfg = pool_config_new();
	load_ok(cfg, "");
	after = dump_of(cfg);
	ck_assert_str_eq(before, after);
	free(before);
	free(after);
	pool_config_free(cfg);
	pool_config_free(fresh);
}
END_TEST

START_TEST(layout_forms)
{
	pool_config_t *cfg = pool_config_new();
	struct pool_settings s;

	/* BOM, CRLF, indentation (never a continuation line), inline
	 * comments of both kinds, "key: value", comments after headers */
	load_ok(cfg, "\xef\xbb\xbf[pool] ; the pool\r\n"
	        "  max_idle = 3 ; three\r\n"
	        "\tmin_idle=1 # one\r\n"
	        "    max_uses: 7\r\n"
	        "close_request = \"a ;b #c\" ; a comment\r\n"
	        "[ endpoint   [::1]:80 ] # v6\n"
	        "  max_idle = 4\n");
	s = resolve(cfg, "x:1");
	ck_assert_uint_eq(s.max_idle, 3);
	ck_assert_uint_eq(s.min_idle, 1);
	ck_assert_uint_eq(s.max_uses, 7);
	ck_assert_uint_eq(s.close_request_len, 7);
	ck_assert_mem_eq(s.close_request, "a ;b #c", 7);
	settings_release(&s);
	ck_assert_uint_eq(max_idle_of(cfg, "[::1]:80"), 4);
	ck_assert_uint_eq(max_idle_of(cfg, "[::1]:81"), 3);
	pool_config_free(cfg);
}
END_TEST

/* ---- errors, with their exact text ---- */

struct bad_file {
	const char *text;
	const char *want; /* the message after the file's path */
	size_t len;       /* 0: strlen(text) */
};

static const struct bad_file bad_files[] = {
	/* values */
	{ "[pool]\nmax_idle = ten\n", ":2: max_idle: not a number: \"ten\"", 0 },
	{ "[pool]\nmax_idle = 99999999999\n",
	  ":2: max_idle: out of range: \"99999999999\"", 0 },
	{ "[pool]\nmax_idle = 4294967296\n",
	  ":2: max_idle: out of range: \"4294967296\"", 0 },
	{ "[pool]\nmax_idle = -1\n", ":2: max_idle: not a number: \"-1\"", 0 },
	{ "[pool]\nmax_idle = +1\n", ":2: max_idle: not a number: \"+1\"", 0 },
	{ "[pool]\nmax_idle = 5x\n", ":2: max_idle: not a number: \"5x\"", 0 },
	{ "[pool]\nmax_idle = 0x10\n", ":2: max_idle: not a number: \"0x10\"", 0 },
	{ "[pool]\nmax_idle = 1 000\n", ":2: max_idle: not a number: \"1 000\"", 0 },
	{ "[pool]\nmax_idle =\n", ":2: max_idle: not a number: \"\"", 0 },
	{ "[pool]\nlifetime_jitter_pct = 51\n",
	  ":2: lifetime_jitter_pct: out of range: \"51\" (0..50)", 0 },
	{ "[pool]\nconnect_timeout_ms = 0\n",
	  ":2: connect_timeout_ms: out of range: \"0\" (1..4294967295)", 0 },
	{ "[pool]\nclose_timeout_ms = 0\n",
	  ":2: close_timeout_ms: out of range: \"0\" (1..4294967295)", 0 },
	{ "[pool]\nteardown = linger\n",
	  ":2: teardown: bad value: \"linger\" (expected close, abort or peer-first)", 0 },
	{ "[pool]\nteardown = Close\n",
	  ":2: teardown: bad value: \"Close\" (expected close, abort or peer-first)", 0 },
	{ "[pool]\nfallback = peer-first\n",
	  ":2: fallback: bad value: \"peer-first\" (expected abort or close)", 0 },
	{ "[pool]\nmaintenance = auto\n",
	  ":2: maintenance: bad value: \"auto\" (expected thread or manual)", 0 },
	{ "[pool]\ntls = yes\n", ":2: tls: bad value: \"yes\" (expected on or off)", 0 },
	{ "[pool]\ntls =\n", ":2: tls: bad value: \"\" (expected on or off)", 0 },
	{ "[pool]\ntls_verify = 1\n",
	  ":2: tls_verify: bad value: \"1\" (expected on or off)", 0 },
	{ "[pool]\ntls_ca_file = \"/etc/ca.pem\"\n",
	  ":2: tls_ca_file: write it without quotes: \"\\\"/etc/ca.pem\\\"\"", 0 },
	{ "[pool]\ntls_ca_file = /etc/ssl/my\"ca;v2.pem\n",
	  ":2: tls_ca_file: write it without quotes: \"/etc/ssl/my\\\"ca;v2.pem\"", 0 },
	{ "[pool]\ntls_server_name = a\x01" "b\n",
	  ":2: tls_server_name: control character in \"a\\x01b\"", 0 },
	/* ports and dead peers */
	{ "[pool]\nwatch_idle = yes\n",
	  ":2: watch_idle: bad value: \"yes\" (expected on or off)", 0 },
	{ "[pool]\ntcp_keepalive = 1\n",
	  ":2: tcp_keepalive: bad value: \"1\" (expected on or off)", 0 },
	{ "[pool]\ntcp_keepalive_idle_ms = 0\n",
	  ":2: tcp_keepalive_idle_ms: out of range: \"0\" (1..32767000)", 0 },
	{ "[pool]\ntcp_keepalive_interval_ms = 32768000\n",
	  ":2: tcp_keepalive_interval_ms: out of range: \"32768000\" (1..32767000)", 0 },
	{ "[pool]\ntcp_keepalive_count = 128\n",
	  ":2: tcp_keepalive_count: out of range: \"128\" (1..127)", 0 },
	{ "[pool]\ntcp_user_timeout_ms = 2147483648\n",
	  ":2: tcp_user_timeout_ms: out of range: \"2147483648\" (0..2147483647)", 0 },
	{ "[pool]\nsource_address = 10.0.0.300\n",
	  ":2: source_address: not an IP address: \"10.0.0.300\"", 0 },
	{ "[pool]\nsource_address = example.com\n",
	  ":2: source_address: not an IP address: \"example.com\"", 0 },
	{ "[pool]\nsource_address = 10.0.0.1,,10.0.0.2\n",
	  ":2: source_address: not an IP address: \"\"", 0 },
	{ "[pool]\nsource_address = 10.0.0.1,\n",
	  ":2: source_address: empty address after ','", 0 },
	{ "[pool]\nsource_address = 10.0.0.1, 10.0.0.1\n",
	  ":2: source_address: listed twice: \"10.0.0.1\"", 0 },
	{ "[pool]\nsource_address = [::1]\n",
	  ":2: source_address: not an IP address: \"[::1]\"", 0 },
	{ "[pool]\nsource_address = 127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4,"
	  "127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0.9,127.0.0.10,"
	  "127.0.0.11,127.0.0.12,127.0.0.13,127.0.0.14,127.0.0.15,127.0.0.16,"
	  "127.0.0.17\n", ":2: source_address: too many addresses (max 16)", 0 },
	{ "[pool]\nlocal_port_range = 40000\n",
	  ":2: local_port_range: expected LO-HI: \"40000\"", 0 },
	{ "[pool]\nlocal_port_range = 40000-\n",
	  ":2: local_port_range: expected LO-HI: \"40000-\"", 0 },
	{ "[pool]\nlocal_port_range = 40000 - 40100\n",
	  ":2: local_port_range: expected LO-HI: \"40000 - 40100\"", 0 },
	{ "[pool]\nlocal_port_range = -5-10\n",
	  ":2: local_port_range: expected LO-HI: \"-5-10\"", 0 },
	{ "[pool]\nlocal_port_range = 40100-40000\n",
	  ":2: local_port_range: low port above high port: \"40100-40000\"", 0 },
	{ "[pool]\nlocal_port_range = 0-100\n",
	  ":2: local_port_range: out of range: \"0-100\" (ports 1..65535)", 0 },
	{ "[pool]\nlocal_port_range = 60000-70000\n",
	  ":2: local_port_range: out of range: \"60000-70000\" (ports 1..65535)", 0 },
	{ "[pool]\nlocal_port_range = 1-99999999999999999999\n",
	  ":2: local_port_range: out of range: \"1-99999999999999999999\" (ports 1..65535)", 0 },
	/* keys */
	{ "[pool]\nmax_iddle = 1\n", ":2: max_iddle: unknown key", 0 },
	{ "[pool]\n= 1\n", ":2: missing key name", 0 },
	{ "max_idle = 1\n[pool]\n", ":1: max_idle: key outside any section", 0 },
	{ "# c\n\nmax_idle = 1\n", ":3: max_idle: key outside any section", 0 },
	{ "[pool]\nmax_idle = 1\nmax_idle = 2\n", ":3: max_idle: already set on line 2", 0 },
	{ "[pool]\n  max_idle = 1\n    max_idle = 2\n",
	  ":3: max_idle: already set on line 2", 0 },
	{ "[pool]\n[endpoint *:1]\nmax_total = 5\n", ":3: max_total: only allowed in [pool]", 0 },
	{ "[endpoint *:1]\nmaintenance = manual\n",
	  ":2: maintenance: only allowed in [pool]", 0 },
	/* lines */
	{ "[pool]\nmax_idle\n", ":2: syntax error: expected [section] or key = value", 0 },
	{ "[pool]\nmax_idle 5 ; = 6\n",
	  ":2: syntax error: expected [section] or key = value", 0 },
	{ "[pool]\nmax_idle = 1\0\n", ":2: NUL byte in line", 21 },
	/* sections */
	{ "[foo]\n", ":1: [foo]: unknown section (expected [pool] or [endpoint PATTERN])", 0 },
	{ "[pool]\n[Pool]\n",
	  ":2: [Pool]: unknown section (expected [pool] or [endpoint PATTERN])", 0 },
	{ "[endpointx *:1]\n",
	  ":1: [endpointx *:1]: unknown section (expected [pool] or [endpoint PATTERN])", 0 },
	{ "[]\n", ":1: []: unknown section (expected [pool] or [endpoint PATTERN])", 0 },
	{ "[endpoint]\n", ":1: [endpoint]: missing endpoint pattern", 0 },
	{ "[endpoint   ]\n", ":1: [endpoint]: missing endpoint pattern", 0 },
	{ "[endpoint foo]\n", ":1: [endpoint foo]: bad endpoint pattern: missing :port", 0 },
	{ "[endpoint foo:0]\n",
	  ":1: [endpoint foo:0]: bad endpoint pattern: port must be a number from 1 to 65535", 0 },
	{ "[endpoint ::1:80]\n",
	  ":1: [endpoint ::1:80]: bad endpoint pattern: IPv6 addresses need brackets: [addr]:port", 0 },
	{ "[endpoint [nope]:80]\n",
	  ":1: [endpoint [nope]:80]: bad endpoint pattern: malformed IPv6 address", 0 },
	{ "[pool]\n[pool]\n", ":2: [pool]: duplicate section (first on line 1)", 0 },
	{ "[endpoint db:1]\n\n[endpoint DB:1]\n",
	  ":3: [endpoint DB:1]: duplicate section (first on line 1)", 0 },
	{ "[pool\n", ":1: bad section header: missing ']'", 0 },
	{ "[endpoint [::1:80]\n", ":1: bad section header: missing ']'", 0 },
	{ "[pool] x\n", ":1: [pool]: junk after ']'", 0 },
	/* close_request */
	{ "[pool]\nclose_request = quit\n", ":2: close_request: expected a quoted string", 0 },
	{ "[pool]\nclose_request = \"quit\n", ":2: close_request: unterminated string", 0 },
	{ "[pool]\nclose_request = \"quit\\\"\n", ":2: close_request: unterminated string", 0 },
	{ "[pool]\nclose_request = \"quit\" x\n",
	  ":2: close_request: junk after the closing quote", 0 },
	{ "[pool]\nclose_request = \"a\\q\"\n", ":2: close_request: bad escape \"\\q\"", 0 },
	{ "[pool]\nclose_request = \"a\\x4\"\n",
	  ":2: close_request: bad escape: \\x needs two hex digits", 0 },
	{ "[pool]\nclose_request = \"a\\xg0\"\n",
	  ":2: close_request: bad escape: \\x needs two hex digits", 0 },
	{ "[pool]\nclose_request = \"a\\\x01\"\n",
	  ":2: close_request: bad escape: backslash before byte 0x01", 0 },
	/* rules across keys, checked once the whole file is read */
	{ "[pool]\nteardown = peer-first\n", ":2: teardown: peer-first needs a close_request", 0 },
	{ "[endpoint *:1]\nteardown = peer-first\n[pool]\nmax_idle = 1\n",
	  ":2: teardown: peer-first needs a close_request", 0 },
	{ "[pool]\nteardown = peer-first\nclose_request = \"q\"\n[endpoint *:1]\n"
	  "close_request = \"\"\n",
	  ":5: close_request: peer-first needs a close_request", 0 },
	{ "[pool]\nclose_request = \"q\"\n[endpoint *:1]\nmax_idle = 1\n"
	  "teardown = peer-first\nclose_request = \"\"\n",
	  ":5: teardown: peer-first needs a close_request", 0 },
	{ "[pool]\nmax_idle = 2\nmin_idle = 3\n",
	  ":3: min_idle: min_idle (3) exceeds max_idle (2)", 0 },
	{ "[pool]\nmin_idle = 3\n[endpoint *:1]\nmax_idle = 2\n",
	  ":4: max_idle: min_idle (3) exceeds max_idle (2)", 0 },
	{ "[pool]\nmax_active = 2\nmin_idle = 3\n",
	  ":3: min_idle: min_idle (3) exceeds max_active (2)", 0 },
	/* the first error is the one reported */
	{ "[pool]\nmax_idle = x\nmax_uses = y\n[bad]\n", ":2: max_idle: not a number: \"x\"", 0 },
};

START_TEST(bad_file_messages)
{
	const struct bad_file *b = &bad_files[_i];
	pool_config_t *cfg = pool_config_new();
	char *before = dump_of(cfg), *after;
	char err[512], want[1024];
	const char *path = write_conf_len(b->text, b->len ? b->len : strlen(b->text));
	int rc = pool_config_load(cfg, path, err, sizeof(err));

	snprintf(want, sizeof(want), "%s%s", path, b->want);
	ck_assert_int_eq(rc, POOL_ECONFIG);
	ck_assert_str_eq(err, want);
	after = dump_of(cfg);
	ck_assert_str_eq(before, after);
	free(before);
	free(after);
	pool_config_free(cfg);
}
END_TEST

START_TEST(long_lines)
{
	pool_config_t *cfg = pool_config_new();
	char text[1024], err[512], want[512], path_s[300];
	const char *path;
	int n;

	/* a long section header is ours to parse: a 100-byte unix path */
	snprintf(path_s, sizeof(path_s), "/tmp/%095d", 7);
	snprintf(text, sizeof(text), "[endpoint unix:%s]\nmax_idle = 5\n", path_s);
	load_ok(cfg, text);
	snprintf(text, sizeof(text), "unix:%s", path_s);
	ck_assert_uint_eq(max_idle_of(cfg, text), 5);
	/* a key line longer than inih's line buffer is refused, not split */
	n = snprintf(text, sizeof(text), "[pool]\nmax_idle = %0300d\n", 1);
	path = write_conf_len(text, (size_t)n);
	ck_assert_int_eq(pool_config_load(cfg, path, err, sizeof(err)), POOL_ECONFIG);
	snprintf(want, sizeof(want), "%s:2: line too long (max ", path);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "got %s", err);
	/* a long comment is fine */
	memset(text, '#', 900);
	strcpy(text + 900, "\n[pool]\nmax_idle = 6\n");
	load_ok(cfg, text);
	ck_assert_uint_eq(max_idle_of(cfg, "a:1"), 6);
	pool_config_free(cfg);
}
END_TEST

START_TEST(too_many_sections)
{
	pool_config_t *cfg = pool_config_new();
	size_t cap = (CONFIG_MAX_SECTIONS + 1) * 24, o = 0;
	char *text = malloc(cap), err[512], want[512];
	const char *path;
	unsigned i;

	ck_assert_ptr_nonnull(text);
	for (i = 0; i <= CONFIG_MAX_SECTIONS; i++)
		o += (size_t)snprintf(text + o, cap - o, "[endpoint h%u:1]\n", i);
	path = write_conf_len(text, o);
	ck_assert_int_eq(pool_config_load(cfg, path, err, sizeof(err)), POOL_ECONFIG);
	snprintf(want, sizeof(want), "%s:%u: [endpoint h%u:1]: too many sections (max %u)",
	         path, CONFIG_MAX_SECTIONS + 1, CONFIG_MAX_SECTIONS, CONFIG_MAX_SECTIONS);
	ck_assert_str_eq(err, want);
	ck_assert_uint_eq(cfg->nsections, 0);
	free(text);
	pool_config_free(cfg);
}
END_TEST

/* ---- whole-file rejection ---- */

START_TEST(rejected_file_leaves_cfg)
{
	pool_config_t *cfg = pool_config_new();
	char *before, *after, err[512];
	struct pool_settings s;

	load_ok(cfg, "[pool]\nmax_idle = 4\nclose_request = \"bye\\n\"\n"
	        "[endpoint *:11211]\nteardown = peer-first\n");
	before = dump_of(cfg);
	/* good lines first, the error last */
	ck_assert_int_eq(pool_config_load(cfg, write_conf(
	        "[pool]\nmax_idle = 1\nclose_request = \"other\"\n"
	        "[endpoint new:1]\nmax_idle = 2\n"
	        "[endpoint *:11211]\nmax_uses = 3\nmax_idle = ten\n"),
	        err, sizeof(err)), POOL_ECONFIG);
	/* a file that only breaks a rule across keys */
	ck_assert_int_eq(pool_config_load(cfg, write_conf(
	        "[pool]\nmax_idle = 1\nclose_request = \"\"\n"), err, sizeof(err)),
	        POOL_ECONFIG);
	after = dump_of(cfg);
	ck_assert_str_eq(before, after);
	ck_assert_uint_eq(cfg->nsections, 1);
	s = resolve(cfg, "cache:11211");
	ck_assert_int_eq(s.teardown, TEARDOWN_PEER_FIRST);
	ck_assert_uint_eq(s.max_idle, 4);
	ck_assert_uint_eq(s.max_uses, 0);
	ck_assert_mem_eq(s.close_request, "bye\n", 4);
	settings_release(&s);
	free(before);
	free(after);
	pool_config_free(cfg);
}
END_TEST

/* A later file adds to what an earlier one set; a section seen before
 * is not a duplicate, and its keys may be set again. */
START_TEST(files_accumulate)
{
	pool_config_t *cfg = pool_config_new();

	load_ok(cfg, "[endpoint *:80]\nmax_idle = 2\n[pool]\nmax_uses = 5\n");
	load_ok(cfg, "[endpoint *:80]\nmax_idle = 3\n[endpoint a:80]\nmax_idle = 4\n");
	ck_assert_uint_eq(cfg->nsections, 2);
	ck_assert_uint_eq(max_idle_of(cfg, "b:80"), 3);
	ck_assert_uint_eq(max_idle_of(cfg, "a:80"), 4);
	pool_config_free(cfg);
}
END_TEST

/* Blame reaches [pool] when the failing section is not in this file. */
START_TEST(blame_inherited)
{
	pool_config_t *cfg = pool_config_new();
	char err[512], want[600];
	const char *path;

	set_ok(cfg, "a:1", "close_request", "\"\"");
	path = write_conf("[pool]\nclose_request = \"q\"\nteardown = peer-first\n");
	ck_assert_int_eq(pool_config_load(cfg, path, err, sizeof(err)), POOL_ECONFIG);
	snprintf(want, sizeof(want),
	         "%s:3: teardown: peer-first needs a close_request (in [endpoint a:1])",
	         path);
	ck_assert_str_eq(err, want);
	pool_config_free(cfg);
}
END_TEST

/* ---- escapes ---- */

START_TEST(escapes)
{
	static const char want[] = "a\r\n\t\\\"\0\0\xff;b ; c#d\x41";
	pool_config_t *cfg = pool_config_new();
	struct pool_settings s;

	load_ok(cfg, "[pool]\n"
	        "close_request = \"a\\r\\n\\t\\\\\\\"\\0\\x00\\xfF;b ; c#d\\x41\" ; note\n"
	        "[endpoint *:1]\nclose_request = \"\"\n");
	s = resolve(cfg, "x:2");
	ck_assert_uint_eq(s.close_request_len, sizeof(want) - 1);
	ck_assert_mem_eq(s.close_request, want, sizeof(want) - 1);
	settings_release(&s);
	/* "" in a section drops the request it would inherit */
	s = resolve(cfg, "x:1");
	ck_assert_ptr_null(s.close_request);
	ck_assert_uint_eq(s.close_request_len, 0);
	settings_release(&s);
	pool_config_free(cfg);
}
END_TEST

/* ---- matching ---- */

START_TEST(section_matching)
{
	pool_config_t *cfg = pool_config_new();

	load_ok(cfg, "[pool]\nmax_idle = 1\n"
	        "[endpoint *:80]\nmax_idle = 2\n"
	        "[endpoint [::1]:80]\nmax_idle = 4\n"
	        "[endpoint unix:/run/s.sock]\nmax_idle = 5\n"
	        "[endpoint db.example:80]\nmax_idle = 3\n"
	        "[endpoint 127.0.0.1:80]\nmax_idle = 6\n");
	ck_assert_uint_eq(max_idle_of(cfg, "db.example:80"), 3);
	ck_assert_uint_eq(max_idle_of(cfg, "DB.Example:80"), 3);
	ck_assert_uint_eq(max_idle_of(cfg, "other:80"), 2);
	ck_assert_uint_eq(max_idle_of(cfg, "db.example:81"), 1);
	ck_assert_uint_eq(max_idle_of(cfg, "[::1]:80"), 4);
	ck_assert_uint_eq(max_idle_of(cfg, "[::2]:80"), 2);
	ck_assert_uint_eq(max_idle_of(cfg, "127.0.0.1:80"), 6);
	ck_assert_uint_eq(max_idle_of(cfg, "127.0.0.2:80"), 2);
	ck_assert_uint_eq(max_idle_of(cfg, "unix:/run/s.sock"), 5);
	ck_assert_uint_eq(max_idle_of(cfg, "unix:/run/t.sock"), 1);
	pool_config_free(cfg);
}
END_TEST

START_TEST(resolve_without_addr)
{
	pool_config_t *cfg = pool_config_new();
	struct pool_settings s;

	set_ok(cfg, NULL, "max_idle", "7");
	set_ok(cfg, "*:1", "max_idle", "2");
	ck_assert_int_eq(config_resolve(cfg, NULL, &s), 0);
	ck_assert_uint_eq(s.max_idle, 7);
	settings_release(&s);
	settings_release(NULL);
	pool_config_free(cfg);
}
END_TEST

/* ---- pool_config_set ---- */

START_TEST(set_values)
{
	pool_config_t *cfg = pool_config_new();
	struct pool_settings s;

	set_ok(cfg, NULL, "max_idle", " 5 ");
	set_ok(cfg, NULL, "max_total", "100");
	set_ok(cfg, NULL, "maintenance", "manual");
	set_ok(cfg, "db:1", "teardown", "peer-first");
	set_ok(cfg, " DB:1 ", "close_request", "\"q\\x00;\\r\\n\"");
	set_ok(cfg, "*:1", "max_idle", "2");
	ck_assert_uint_eq(cfg->nsections, 2);
	ck_assert_uint_eq(cfg->max_total, 100);
	ck_assert_int_eq(cfg->maintenance, MAINT_MANUAL);
	ck_assert_str_eq(cfg->sections[0].pattern, "db:1");
	ck_assert_int_eq(cfg->sections[0].line, 0);
	ck_assert_uint_eq(cfg->sections[0].set_mask,
	                  (UINT64_C(1) << KEY_TEARDOWN) | (UINT64_C(1) << KEY_CLOSE_REQUEST));
	s = resolve(cfg, "db:1");
	ck_assert_int_eq(s.teardown, TEARDOWN_PEER_FIRST);
	ck_assert_uint_eq(s.close_request_len, 5);
	ck_assert_mem_eq(s.close_request, "q\0;\r\n", 5);
	ck_assert_uint_eq(s.max_idle, 5);
	settings_release(&s);
	ck_assert_uint_eq(max_idle_of(cfg, "x:1"), 2);
	ck_assert_uint_eq(max_idle_of(cfg, "x:2"), 5);
	pool_config_free(cfg);
}
END_TEST

struct bad_set {
	const char *endpoint, *key, *value, *want;
	int rc;
};

static const struct bad_set bad_sets[] = {
	{ NULL, "max_idle", "ten", "max_idle: not a number: \"ten\"", POOL_ECONFIG },
	{ NULL, "max_idle", "99999999999", "max_idle: out of range: \"99999999999\"",
	  POOL_ECONFIG },
	{ NULL, "lifetime_jitter_pct", "60",
	  "lifetime_jitter_pct: out of range: \"60\" (0..50)", POOL_ECONFIG },
	{ NULL, "teardown", "linger",
	  "teardown: bad value: \"linger\" (expected close, abort or peer-first)",
	  POOL_ECONFIG },
	{ NULL, "bogus", "1", "bogus: unknown key", POOL_ECONFIG },
	{ "db:1", "source_address", "1.2.3.4.5",
	  "[endpoint db:1] source_address: not an IP address: \"1.2.3.4.5\"",
	  POOL_ECONFIG },
	{ NULL, "local_port_range", "2-1",
	  "local_port_range: low port above high port: \"2-1\"", POOL_ECONFIG },
	{ "db:1", "bogus", "1", "[endpoint db:1] bogus: unknown key", POOL_ECONFIG },
	{ NULL, "close_request", "quit", "close_request: expected a quoted string",
	  POOL_ECONFIG },
	{ NULL, "close_request", "\"a\\z\"", "close_request: bad escape \"\\z\"",
	  POOL_ECONFIG },
	{ "db:1", "max_total", "5", "[endpoint db:1] max_total: only allowed in [pool]",
	  POOL_ECONFIG },
	{ "db:1", "maintenance", "manual",
	  "[endpoint db:1] maintenance: only allowed in [pool]", POOL_ECONFIG },
	{ "db:1", "max_idle", "x", "[endpoint db:1] max_idle: not a number: \"x\"",
	  POOL_ECONFIG },
	{ "nope", "max_idle", "1", "[endpoint nope]: bad endpoint pattern: missing :port",
	  POOL_ECONFIG },
	{ "", "max_idle", "1", "[endpoint ]: missing endpoint pattern", POOL_ECONFIG },
	{ NULL, "tls", "true", "tls: bad value: \"true\" (expected on or off)",
	  POOL_ECONFIG },
	{ "db:1", "tls_cert_file", "a\nb",
	  "[endpoint db:1] tls_cert_file: control character in \"a\\nb\"", POOL_ECONFIG },
	{ NULL, "tls_key_file", "'k'\x7f", "tls_key_file: control character in \"'k'\\x7f\"",
	  POOL_ECONFIG },
	{ NULL, "tls_ca_file", "a ;b",
	  "tls_ca_file: a file would read a comment in \"a ;b\"", POOL_ECONFIG },
	{ "db:1", "tls_server_name", "#x",
	  "[endpoint db:1] tls_server_name: a file would read a comment in \"#x\"",
	  POOL_ECONFIG },
	{ NULL, NULL, "1", "invalid argument", POOL_EINVAL },
	{ NULL, "max_idle", NULL, "invalid argument", POOL_EINVAL },
};

START_TEST(set_errors)
{
	const struct bad_set *b = &bad_sets[_i];
	pool_config_t *cfg = pool_config_new();
	char *before, *after, err[512];

	set_ok(cfg, "db:1", "max_idle", "3");
	before = dump_of(cfg);
	ck_assert_int_eq(pool_config_set(cfg, b->endpoint, b->key, b->value,
	                                 err, sizeof(err)), b->rc);
	ck_assert_str_eq(err, b->want);
	after = dump_of(cfg);
	ck_assert_str_eq(before, after);
	free(before);
	free(after);
	pool_config_free(cfg);
}
END_TEST

/* Keys come one call at a time, in any order; the rules across keys are
 * checked on the finished configuration. */
START_TEST(set_any_order_then_validate)
{
	pool_config_t *cfg = pool_config_new();
	char err[512];

	set_ok(cfg, NULL, "teardown", "peer-first");
	ck_assert_int_eq(config_validate(cfg, err, sizeof(err)), POOL_ECONFIG);
	ck_assert_str_eq(err, "teardown: peer-first needs a close_request");
	set_ok(cfg, NULL, "close_request", "\"quit\\r\\n\"");
	ck_assert_int_eq(config_validate(cfg, err, sizeof(err)), 0);
	set_ok(cfg, "x:1", "min_idle", "9");
	ck_assert_int_eq(config_validate(cfg, err, sizeof(err)), POOL_ECONFIG);
	ck_assert_str_eq(err, "[endpoint x:1] min_idle: min_idle (9) exceeds max_idle (8)");
	set_ok(cfg, "x:1", "max_idle", "9");
	ck_assert_int_eq(config_validate(cfg, err, sizeof(err)), 0);
	set_ok(cfg, "x:1", "close_request", "\"\"");
	ck_assert_int_eq(config_validate(cfg, err, sizeof(err)), POOL_ECONFIG);
	ck_assert_str_eq(err, "[endpoint x:1] teardown: peer-first needs a close_request");
	pool_config_free(cfg);
}
END_TEST

/* ---- files that cannot be read ---- */

START_TEST(unreadable_file)
{
	pool_config_t *cfg = pool_config_new();
	char err[512], path[512], want[600];

	snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
	ck_assert_int_eq(pool_config_load(cfg, path, err, sizeof(err)), POOL_ESYS);
	snprintf(want, sizeof(want), "%s: %s", path, strerror(ENOENT));
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(pool_config_load(cfg, tmpdir, err, sizeof(err)), POOL_ESYS);
	snprintf(want, sizeof(want), "%s: %s", tmpdir, strerror(EISDIR));
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(pool_config_load(cfg, NULL, err, sizeof(err)), POOL_EINVAL);
	ck_assert_int_eq(pool_config_load(NULL, path, NULL, 0), POOL_EINVAL);
	/* no room for a message is fine */
	ck_assert_int_eq(pool_config_load(cfg, path, NULL, 0), POOL_ESYS);
	ck_assert_int_eq(pool_config_load(cfg, path, err, 1), POOL_ESYS);
	ck_assert_str_eq(err, "");
	ck_assert_uint_eq(max_idle_of(cfg, "a:1"), 8);
	pool_config_free(cfg);
}
END_TEST

/* ---- copy, free, dump ---- */

START_TEST(copy_is_deep)
{
	pool_config_t *cfg = pool_config_new();
	struct pool_config *copy;
	char *before, *after;

	set_ok(cfg, NULL, "close_request", "\"a\"");
	set_ok(cfg, "x:1", "close_request", "\"b\"");
	set_ok(cfg, NULL, "tls_ca_file", "ca.pem");
	set_ok(cfg, "x:1", "tls_server_name", "x.example");
	before = dump_of(cfg);
	copy = config_copy(cfg);
	ck_assert_ptr_nonnull(copy);
	ck_assert_ptr_ne(copy->defaults.close_request, cfg->defaults.close_request);
	ck_assert_ptr_ne(copy->sections, cfg->sections);
	ck_assert_ptr_ne(copy->sections[0].pattern, cfg->sections[0].pattern);
	ck_assert_ptr_ne(copy->sections[0].set.close_request,
	                 cfg->sections[0].set.close_request);
	ck_assert_ptr_ne(copy->defaults.tls_ca_file, cfg->defaults.tls_ca_file);
	ck_assert_ptr_ne(copy->sections[0].set.tls_server_name,
	                 cfg->sections[0].set.tls_server_name);
	set_ok(copy, NULL, "close_request", "\"c\"");
	set_ok(copy, NULL, "tls_ca_file", "other.pem");
	set_ok(copy, "x:1", "tls_server_name", "");
	set_ok(copy, "x:1", "close_request", "\"d\"");
	set_ok(copy, "y:1", "max_idle", "1");
	pool_config_free(copy);
	after = dump_of(cfg);
	ck_assert_str_eq(before, after);
	ck_assert_ptr_null(config_copy(NULL));
	pool_config_free(NULL);
	free(before);
	free(after);
	pool_config_free(cfg);
}
END_TEST

START_TEST(dump_round_trip)
{
	pool_config_t *cfg = pool_config_new(), *again = pool_config_new();
	char *first, *second;

	load_ok(cfg, "[pool]\nmax_total = 64\nmaintenance = manual\nteardown = abort\n"
	        "tls = on\ntls_ca_file = /a b/ca;#.pem\n"
	        "[endpoint *:11211]\nteardown = peer-first\n"
	        "close_request = \"quit\\r\\n\\0;#\\\"\\\\\\x7f\"\n"
	        "tls_ca_file =\ntls_verify = off\n"
	        "[endpoint [::1]:6379]\nmax_idle = 2\n"
	        "source_address = 127.0.0.2 ,::1, fe80::1%lo\n"
	        "local_port_range = 1-65535\n"
	        "[endpoint *:6380]\nsource_address =\nlocal_port_range =\n");
	first = dump_of(cfg);
	/* A string is bare text; unset, nothing follows '='. A section's
	 * "" clears what [pool] set. */
	ck_assert_ptr_nonnull(strstr(first, "[pool]\n"));
	ck_assert_ptr_nonnull(strstr(first, "\ntls = on\ntls_ca_file = /a b/ca;#.pem\n"
	        "tls_server_name =\ntls_verify = on\n"));
	ck_assert_ptr_nonnull(strstr(first, "\ntls = on\ntls_ca_file =\n"
	        "tls_server_name =\ntls_verify = off\n"));
	ck_assert_ptr_nonnull(strstr(first,
	        "source_address = 127.0.0.2, ::1, fe80::1%lo\n"
	        "local_port_range = 1-65535\n"));
	ck_assert_ptr_nonnull(strstr(first, "[endpoint *:6380]\n"));
	ck_assert_ptr_nonnull(strstr(first, "watch_idle = on\ntcp_keepalive = off\n"));
	ck_assert_ptr_nonnull(strstr(first,
	        "[endpoint *:11211]\nteardown = peer-first\n"
	        "close_request = \"quit\\r\\n\\0;#\\\"\\\\\\x7f\"\n"));
	ck_assert_ptr_nonnull(strstr(first, "[pool]\nteardown = abort\nclose_request = \"\"\n"));
	ck_assert_ptr_nonnull(strstr(first, "max_total = 64\n"));
	ck_assert_ptr_nonnull(strstr(first, "maintenance = manual\n"));
	load_ok(again, first);
	second = dump_of(again);
	ck_assert_str_eq(first, second);
	free(first);
	free(second);
	pool_config_free(cfg);
	pool_config_free(again);
}
END_TEST

/* ---- garbage in: an error or success, never a crash or a change ---- */

START_TEST(random_input)
{
	static const char *const bits[] = {
		"[pool]", "[endpoint ", "*:1", "[::1]:2", "unix:/x", "]", "[", " = ",
		"=", ":", "\"", "\\", "\\x", "0", "9", "99999999999", ";", "#", " ",
		"\t", "\n", "\r\n", "max_idle", "min_idle", "close_request",
		"teardown", "peer-first", "max_total", "abort", "\xef\xbb\xbf", "\xff"
	};
	unsigned seed = 12345, iter;

	for (iter = 0; iter < 300; iter++) {
		pool_config_t *cfg = pool_config_new();
		char text[600], err[512], *before = dump_of(cfg), *after;
		size_t o = 0;
		int rc;

		while (o < 400) {
			const char *b = bits[rand_r(&seed) % (sizeof(bits) / sizeof(bits[0]))];

			memcpy(text + o, b, strlen(b));
			o += strlen(b);
		}
		err[0] = '\0';
		rc = pool_config_load(cfg, write_conf_len(text, o), err, sizeof(err));
		ck_assert_msg(rc == 0 || rc == POOL_ECONFIG, "rc %d: %s", rc, err);
		after = dump_of(cfg);
		if (rc)
			ck_assert_str_eq(before, after);
		free(before);
		free(after);
		pool_config_free(cfg);
	}
}
END_TEST

static void collect_warning(const char *msg, void *ud)
{
	char *out = ud;

	snprintf(out + strlen(out), 1024 - strlen(out), "%s\n", msg);
}

/* max_idle below max_active: valid, but a burst leaves a surplus that
 * idle_shrink_ms retires (or, at 0, pool_put closes at once). */
START_TEST(warns_max_idle_below_max_active)
{
	pool_config_t *cfg = pool_config_new();
	char out[1024] = "";

	load_ok(cfg, "[pool]\nmax_active = 10\nmax_idle = 10\n"
	        "[endpoint a:1]\nmax_idle = 2\n"
	        "[endpoint b:1]\nmax_idle = 3\nidle_shrink_ms = 0\n"
	        "[endpoint c:1]\nmax_active = 0\nmax_idle = 0\n");
	ck_assert_uint_eq(config_warnings(cfg, collect_warning, out), 2);
	ck_assert_str_eq(out,
	        "[endpoint a:1] max_idle: 2 is below max_active (10): after a "
	        "burst, idle connections above 2 are retired, half of them every "
	        "idle_shrink_ms (5000 ms)\n"
	        "[endpoint b:1] max_idle: 3 is below max_active (10) and "
	        "idle_shrink_ms is 0: every connection given back above 3 idle "
	        "is closed at once, and a burst opens them again\n");
	ck_assert_int_eq(config_validate(cfg, NULL, 0), 0);
	pool_config_free(cfg);
}
END_TEST

Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_unchecked_fixture(tc, dir_setup, dir_teardown);
	tcase_add_test(tc, defaults);
	tcase_add_test(tc, every_key_in_pool);
	tcase_add_test(tc, every_key_in_section);
	tcase_add_test(tc, empty_and_comment_files);
	tcase_add_test(tc, layout_forms);
	tcase_add_loop_test(tc, bad_file_messages, 0,
	                    (int)(sizeof(bad_files) / sizeof(bad_files[0])));
	tcase_add_test(tc, long_lines);
	tcase_add_test(tc, too_many_sections);
	tcase_add_test(tc, rejected_file_leaves_cfg);
	tcase_add_test(tc, files_accumulate);
	tcase_add_test(tc, blame_inherited);
	tcase_add_test(tc, escapes);
	tcase_add_test(tc, section_matching);
	tcase_add_test(tc, resolve_without_addr);
	tcase_add_test(tc, set_values);
	tcase_add_loop_test(tc, set_errors, 0,
	                    (int)(sizeof(bad_sets) / sizeof(bad_sets[0])));
	tcase_add_test(tc, set_any_order_then_validate);
	tcase_add_test(tc, unreadable_file);
	tcase_add_test(tc, copy_is_deep);
	tcase_add_test(tc, dump_round_trip);
	tcase_add_test(tc, random_input);
	tcase_add_test(tc, warns_max_idle_below_max_active);
	suite_add_tcase(s, tc);
	return s;
}
