/* Shared test fixtures: a private network namespace, descriptor counts,
 * pools built from key/value pairs, TIME_WAIT counts, line requests. */
#ifndef TCPOOL_TEST_FIXTURES_H
#define TCPOOL_TEST_FIXTURES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <check.h>

#include "tcpool.h"
#include "lineserver.h"

/* Move the test process into a private network namespace with loopback up
 * and tcp_tw_reuse = 0, so TIME_WAIT counts are exact and no other program
 * on the machine adds to them. Only as root; returns true if isolated. */
bool fixture_private_netns(void);
bool fixture_isolated(void);

/* Per-test isolation: a fresh namespace (as root) and one CPU; see
 * fixtures.c for why. */
void fixture_isolate_test(void);

/* Checked fixture: isolation, and no descriptor leaked by the test. */
void fixture_test_setup(void);
void fixture_test_teardown(void);
/* Teardown for suites whose threads may close what earlier tests left
 * (one process under valgrind): no descriptor more than at the start. */
void fixture_test_teardown_no_more(void);

/* A forked child's verdict through a pipe rather than its exit status:
 * under valgrind (CK_FORK=no, one process) a child exits with valgrind's
 * error code for what other threads of the parent left allocated there
 * (they do not exist in the child). init before fork(); the child ends
 * with child_report_exit; the parent gets rc from child_report_wait
 * (-1 if the child died before it wrote). */
/* Whether this build runs under AddressSanitizer. */
static inline bool running_under_asan(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
	return true;
#else
	return false;
#endif
#else
	return false;
#endif
}

struct child_report {
	int fd[2];
};
void child_report_init(struct child_report *r);
void child_report_exit(struct child_report *r, int rc) __attribute__((noreturn));
int child_report_wait(struct child_report *r, pid_t pid);

/* Open descriptors of this process. */
int fd_count(void);

/* A pool from NULL-terminated key/value pairs for [pool]; fails the test
 * on any error. */
pool_t *pool_with(const char *key, ...);
pool_config_t *config_with(const char *key, ...);

/* A line server with the given close-request behaviour; fails the test
 * on error. */
struct lineserver *server_start(enum ls_quit_mode on_quit);

/* TIME_WAIT sockets toward endpoint (client) and from its port (server),
 * waiting up to 2 s for them to reach the expected figures, since the
 * last packets of a close cross loopback asynchronously. */
void tw_expect(const char *endpoint, unsigned client, unsigned server);
unsigned tw_client(const char *endpoint);
unsigned tw_server(const char *endpoint);

/* The local port of a connected IPv4 socket; fails the test if none. */
uint16_t fd_local_port(int fd);

/* How many TIME_WAIT sockets n connections from these client ports leave
 * on the server: a client may connect again from a port whose earlier
 * connection the server holds in TIME_WAIT (nothing on the client's side
 * forbids it), and the new SYN recycles that TIME_WAIT. So one per
 * distinct port, which is n unless the kernel chose so. */
unsigned distinct_ports(const uint16_t *ports, int n);

/* Send line, expect reply; true on success. */
bool line_roundtrip(int fd, const char *line, const char *reply);
/* "PING" -> "PONG" on a checked-out connection; fails the test if not. */
void ping(pool_conn_t *c);

/* Stats of the pool (endpoint NULL) or of one endpoint. */
pool_stats_t stats_of(pool_t *pool, const char *endpoint);

/* Wait up to ms for the pool to finish its peer-first drains. */
void wait_drains(pool_t *pool, int ms);

/* Fill the accept queue of a loopback server that does not accept, with
 * raw non-blocking connects until one hangs (its SYN dropped); fill[]
 * gets the sockets (the caller closes them). Returns how many. */
int fill_backlog(uint16_t port, int *fill, int max);

/* Milliseconds on the monotonic clock. */
long long mono_ms(void);

/* Wait up to ms for cond to hold (polled every 5 ms), then assert it: for
 * what the pool's maintenance thread does on its own time. */
#define wait_for(cond, ms) do { \
		long long end_ = mono_ms() + (ms); \
		while (!(cond) && mono_ms() < end_) \
			usleep(5000); \
		ck_assert(cond); \
	} while (0)
#endif
