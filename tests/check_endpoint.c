#include <string.h>

#include "fixtures.h"
#include "pool-internal.h"
#include "suites.h"

START_TEST(good_endpoints)
{
	struct endpoint_addr a;

	ck_assert_int_eq(endpoint_parse("127.0.0.1:11211", false, &a, NULL, 0), 0);
	ck_assert_str_eq(a.host, "127.0.0.1");
	ck_assert_uint_eq(a.port, 11211);
	ck_assert_int_eq(endpoint_parse("[::1]:6379", false, &a, NULL, 0), 0);
	ck_assert_str_eq(a.host, "::1");
	ck_assert_uint_eq(a.port, 6379);
	ck_assert_int_eq(endpoint_parse("cache-01.example:65535", false, &a, NULL, 0), 0);
	ck_assert_uint_eq(a.port, 65535);
	ck_assert_int_eq(endpoint_parse("unix:/run/redis.sock", false, &a, NULL, 0), 0);
	ck_assert_int_eq(a.kind, EP_UNIX);
	ck_assert_str_eq(a.path, "/run/redis.sock");
	ck_assert_int_eq(endpoint_parse("*:80", true, &a, NULL, 0), 0);
	ck_assert(a.wildcard_host);
}
END_TEST

static const char *const bad[] = {
	"", "localhost", "localhost:", ":80", "host:0", "host:65536",
	"host:80x", "host:-1", "host:+80", "host: 80", "::1:80", "[::1]80",
	"[::1]", "[zz]:80", "[]:80", "ho st:80", "*:80", "unix:", "host:99999999999",
	"[::1]:", "a:b:c", "unix:/tmp/a\nb", "unix:/tmp/\x7f",
	"unix:/tmp/[x", "unix:/tmp/x ", "unix: /tmp/x",
};

START_TEST(bad_endpoints)
{
	const char *s = bad[_i];
	struct endpoint_addr a;
	char err[128] = "";

	memset(&a, 0x5a, sizeof(a));
	ck_assert_msg(endpoint_parse(s, false, &a, err, sizeof(err)) == POOL_EENDPOINT,
		      "\"%s\" was accepted", s);
	ck_assert_msg(err[0] != '\0', "no reason for \"%s\"", s);
	/* Rejected input changes nothing. */
	ck_assert_uint_eq((unsigned char)a.host[0], 0x5a);
}
END_TEST

START_TEST(long_unix_path)
{
	char s[300];
	struct endpoint_addr a;

	memset(s, 'x', sizeof(s));
	memcpy(s, "unix:/", 6);
	s[sizeof(s) - 1] = '\0';
	ck_assert_int_eq(endpoint_parse(s, false, &a, NULL, 0), POOL_EENDPOINT);
}
END_TEST

START_TEST(pool_get_rejects_bad_endpoints)
{
	pool_t *pool = pool_with(NULL);
	pool_conn_t *c = (pool_conn_t *)0x1;
	pool_stats_t st;

	ck_assert_int_eq(pool_get(pool, bad[_i], &c), POOL_EENDPOINT);
	ck_assert_ptr_null(c);
	/* A bad string never enters the endpoint table. */
	ck_assert_int_eq(pool_stats(pool, bad[_i], &st), POOL_EINVAL);
	pool_destroy(pool);
}
END_TEST

Suite *endpoint_suite(void)
{
	Suite *s = suite_create("endpoint");
	TCase *tc = tcase_create("parse");
	int nbad = (int)(sizeof(bad) / sizeof(bad[0]));

	tcase_add_test(tc, good_endpoints);
	tcase_add_loop_test(tc, bad_endpoints, 0, nbad);
	tcase_add_test(tc, long_unix_path);
	tcase_add_loop_test(tc, pool_get_rejects_bad_endpoints, 0, nbad);
	suite_add_tcase(s, tc);
	return s;
}
