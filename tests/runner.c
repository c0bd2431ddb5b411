/* Runs every suite. As root it first moves into a private network
 * namespace (see fixtures.c) so that TIME_WAIT counts are exact. */
#include <stdio.h>
#include <stdlib.h>

#include "fixtures.h"
#include "suites.h"

int main(void)
{
	SRunner *sr;
	int failed;

	if (fixture_private_netns())
		printf("tests: private network namespace, tcp_tw_reuse=0\n");
	else
		printf("tests: host network namespace (not root): TIME_WAIT "
		       "tests assert only what loopback allows\n");
	sr = srunner_create(error_suite());
	srunner_add_suite(sr, endpoint_suite());
	srunner_add_suite(sr, config_suite());
	srunner_add_suite(sr, teardown_suite());
	srunner_add_suite(sr, pool_suite());
	srunner_add_suite(sr, twcount_suite());
	srunner_add_suite(sr, lifecycle_suite());
	srunner_add_suite(sr, lineserver_suite());
	srunner_add_suite(sr, servers_suite());
	srunner_add_suite(sr, faults_suite());
	srunner_add_suite(sr, churn_suite());
	srunner_add_suite(sr, table_suite());
	srunner_add_suite(sr, robust_suite());
	srunner_add_suite(sr, waits_suite());
	srunner_add_suite(sr, hooks_suite());
#ifdef HAVE_OPENSSL
	srunner_add_suite(sr, tls_suite());
#endif
	srunner_add_suite(sr, ports_suite());
	srunner_add_suite(sr, socket_suite());
	srunner_add_suite(sr, dns_suite());
	srunner_add_suite(sr, flush_suite());
	srunner_add_suite(sr, metrics_suite());
	srunner_add_suite(sr, async_suite());
	srunner_add_suite(sr, backoff_suite());
	srunner_add_suite(sr, fastpath_suite());
	srunner_add_suite(sr, park_suite());
	srunner_add_suite(sr, parkreview_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
