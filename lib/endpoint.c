/*
 * Endpoint strings: "host:port", "[ipv6]:port", "unix:/path".
 * Parsed strictly: whatever the pool accepts here it can connect to, and
 * whatever it rejects gets a reason a user can act on.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "pool-internal.h"

static int fail(char *err, size_t errlen, const char *why)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", why);
	return POOL_EENDPOINT;
}

/* A port is 1..65535 in plain decimal: no sign, no spaces, no leading +. */
static int parse_port(const char *s, uint16_t *out)
{
	unsigned long v = 0;
	size_t i;

	if (*s == '\0' || strlen(s) > 5)
		return -1;
	for (i = 0; s[i]; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

/* Host names and IPv4 literals: letters, digits, '-', '.', '_'. */
static bool host_chars_ok(const char *h, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char c = h[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
		if (!ok)
			return false;
	}
	return true;
}

/* A bracketed host must be a real IPv6 literal (a %zone suffix allowed):
 * a name in brackets would only fail later, at resolve time. */
static bool v6_literal_ok(const char *h, size_t n)
{
	char buf[INET6_ADDRSTRLEN];
	struct in6_addr a;
	const char *zone = memchr(h, '%', n);
	size_t addr_len = zone ? (size_t)(zone - h) : n;

	if (addr_len == 0 || addr_len >= sizeof(buf) || (zone && zone + 1 == h + n))
		return false;
	memcpy(buf, h, addr_len);
	buf[addr_len] = '\0';
	return inet_pton(AF_INET6, buf, &a) == 1;
}

static int parse_unix(const char *path, struct endpoint_addr *out,
		      char *err, size_t errlen)
{
	size_t n = strlen(path);

	if (n == 0)
		return fail(err, errlen, "empty unix socket path");
	if (n >= sizeof(out->path))
		return fail(err, errlen, "unix socket path too long");
	/* Legal in a file name, but not in a config file's section line,
	 * where every endpoint must be writable (found by fuzzing: such a
	 * path made a config dump that did not load again). */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
			return fail(err, errlen, "control character in unix socket path");
	if (strpbrk(path, "[]"))
		return fail(err, errlen, "'[' or ']' in unix socket path");
	if (path[0] == ' ' || path[n - 1] == ' ')
		return fail(err, errlen, "unix socket path starts or ends with a space");
	out->kind = EP_UNIX;
	memcpy(out->path, path, n + 1);
	return 0;
}

static int set_host(struct endpoint_addr *out, const char *h, size_t n,
		    bool allow_wildcard, char *err, size_t errlen)
{
	if (n == 0)
		return fail(err, errlen, "missing host");
	if (n >= sizeof(out->host))
		return fail(err, errlen, "host name too long");
	memcpy(out->host, h, n);
	out->host[n] = '\0';
	if (n == 1 && h[0] == '*') {
		if (!allow_wildcard)
			return fail(err, errlen, "'*' is only allowed in config sections");
		out->wildcard_host = true;
	}
	return 0;
}

static int parse_tcp(const char *s, bool allow_wildcard,
		     struct endpoint_addr *out, char *err, size_t errlen)
{
	const char *colon, *h = s;
	size_t hn;
	int rc;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return fail(err, errlen, "expected [ipv6]:port");
		h = s + 1;
		hn = (size_t)(close - h);
		if (!v6_literal_ok(h, hn))
			return fail(err, errlen, "malformed IPv6 address");
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return fail(err, errlen, "missing :port");
		hn = (size_t)(colon - s);
		if (memchr(s, ':', hn))
			return fail(err, errlen, "IPv6 addresses need brackets: [addr]:port");
		if (!(hn == 1 && s[0] == '*') && !host_chars_ok(s, hn))
			return fail(err, errlen, "bad character in host");
	}
	rc = set_host(out, h, hn, allow_wildcard, err, errlen);
	if (rc)
		return rc;
	if (parse_port(colon + 1, &out->port))
		return fail(err, errlen, "port must be a number from 1 to 65535");
	out->kind = EP_TCP;
	return 0;
}

int endpoint_parse(const char *s, bool allow_wildcard,
		   struct endpoint_addr *out, char *err, size_t errlen)
{
	struct endpoint_addr tmp;
	int rc;

	if (!s || !out)
		return fail(err, errlen, "no endpoint");
	memset(&tmp, 0, sizeof(tmp));
	if (strncmp(s, "unix:", 5) == 0)
		rc = parse_unix(s + 5, &tmp, err, errlen);
	else
		rc = parse_tcp(s, allow_wildcard, &tmp, err, errlen);
	if (rc == 0)
		*out = tmp;
	return rc;
}
