#include <string.h>

#include "fixtures.h"
#include "suites.h"

START_TEST(every_code_has_text)
{
	int code;

	for (code = 0; code >= POOL_ERR_LAST; code--) {
		const char *t = pool_strerror(code);

		ck_assert_ptr_nonnull(t);
		ck_assert_msg(strcmp(t, "unknown error") != 0,
			      "code %d has no text", code);
	}
}
END_TEST

/* Codes are ABI: new ones are appended, never renumbered. */
START_TEST(codes_appended)
{
	ck_assert_int_eq(POOL_ENOTSUP, -14);
	ck_assert_int_eq(POOL_EHOOK, -15);
	ck_assert_int_eq(POOL_EINPROGRESS, -16);
	ck_assert_int_eq(POOL_EBACKOFF, -17);
	ck_assert_int_eq(POOL_ERR_LAST, POOL_EBACKOFF);
	ck_assert_str_eq(pool_strerror(POOL_EHOOK), "the on_connect hook failed");
}
END_TEST

START_TEST(unknown_codes)
{
	ck_assert_str_eq(pool_strerror(1), "unknown error");
	ck_assert_str_eq(pool_strerror(POOL_ERR_LAST - 1), "unknown error");
	ck_assert_str_eq(pool_strerror(-100000), "unknown error");
}
END_TEST

Suite *error_suite(void)
{
	Suite *s = suite_create("error");
	TCase *tc = tcase_create("strerror");

	tcase_add_test(tc, every_code_has_text);
	tcase_add_test(tc, codes_appended);
	tcase_add_test(tc, unknown_codes);
	suite_add_tcase(s, tc);
	return s;
}
