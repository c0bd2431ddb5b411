/* Every test suite, one per module; the runner adds them all. */
#ifndef TCPOOL_TEST_SUITES_H
#define TCPOOL_TEST_SUITES_H
#include <check.h>

Suite *error_suite(void);
Suite *endpoint_suite(void);
Suite *config_suite(void);
Suite *teardown_suite(void);
Suite *pool_suite(void);
Suite *twcount_suite(void);
Suite *lifecycle_suite(void);
Suite *lineserver_suite(void);
Suite *servers_suite(void);
Suite *faults_suite(void);
Suite *churn_suite(void);
Suite *table_suite(void);
Suite *robust_suite(void);
Suite *waits_suite(void);
Suite *hooks_suite(void);
#ifdef HAVE_OPENSSL
Suite *tls_suite(void);
#endif
Suite *ports_suite(void);
Suite *socket_suite(void);
Suite *dns_suite(void);
Suite *flush_suite(void);
Suite *metrics_suite(void);
Suite *async_suite(void);
Suite *backoff_suite(void);
Suite *fastpath_suite(void);
Suite *park_suite(void);
Suite *parkreview_suite(void);
#endif
