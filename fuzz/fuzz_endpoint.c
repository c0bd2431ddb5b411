/*
 * libFuzzer target for endpoint_parse(): "host:port", "[ipv6]:port",
 * "unix:/path", and "*" hosts in config section patterns.
 *
 * Besides memory errors (ASan, UBSan), it checks what callers rely on:
 * a rejected string leaves *out alone and comes with a reason; an
 * accepted one has a port in 1..65535 (TCP), NUL-terminated fields, and
 * a "*" host only where wildcards are allowed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pool-internal.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_accepted(const struct endpoint_addr *a, bool allow_wildcard)
{
	if (a->kind == EP_UNIX) {
		CHECK(memchr(a->path, '\0', sizeof(a->path)) != NULL);
		CHECK(a->path[0] != '\0');
		return;
	}
	CHECK(a->kind == EP_TCP);
	CHECK(a->port >= 1);
	CHECK(memchr(a->host, '\0', sizeof(a->host)) != NULL);
	CHECK(a->host[0] != '\0');
	CHECK(allow_wildcard || !a->wildcard_host);
	CHECK(!a->wildcard_host || strcmp(a->host, "*") == 0);
}

static void parse_both_ways(const char *s)
{
	struct endpoint_addr a, untouched;
	char why[128];
	bool allow;
	int rc;

	for (allow = false; ; allow = true) {
		memset(&a, 0xa5, sizeof(a));
		untouched = a;
		why[0] = '\0';
		rc = endpoint_parse(s, allow, &a, why, sizeof(why));
		if (rc == 0) {
			check_accepted(&a, allow);
		} else {
			CHECK(rc == POOL_EENDPOINT);
			CHECK(why[0] != '\0');
			CHECK(memcmp(&a, &untouched, sizeof(a)) == 0);
		}
		/* A tiny error buffer must be cut, never overrun. */
		endpoint_parse(s, allow, &a, why, 1);
		if (allow)
			break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy, so that ASan sees any read past the end. */
	char *s = malloc(size + 1);

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	parse_both_ways(s);
	free(s);
	return 0;
}
