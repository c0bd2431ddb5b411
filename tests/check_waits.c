/*
 * Waiting for a slot and the slots drains hold: a fallback close sends a
 * FIN.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixtures.h"
#include "suites.h"

/* A server that answers "quit" with "+OK" and never closes, and records
 * how each client connection ended: FIN (EOF) or RST (ECONNRESET). */
#define RS_MAX 128

struct replier {
	int lfd;
	uint16_t port;
	pthread_t thread;
	atomic_bool stop;
	atomic_uint accepted, eofs, resets;
};

static void replier_read(struct replier *r, struct pollfd *p)
{
	char buf[512];
	ssize_t n = recv(p->fd, buf, sizeof(buf), 0);

	if (n > 0) {
		if (memmem(buf, (size_t)n, "quit", 4))
			send(p->fd, "+OK\n", 4, MSG_NOSIGNAL);
		return;
	}
	if (n < 0 && errno == EINTR)
		return;
	if (n == 0)
		atomic_fetch_add(&r->eofs, 1);
	else
		atomic_fetch_add(&r->resets, 1);
	close(p->fd);
	p->fd = -1;
}

static void *replier_main(void *arg)
{
	struct replier *r = arg;
	struct pollfd p[RS_MAX + 1];
	int i, n = 1;

	p[0] = (struct pollfd){ .fd = r->lfd, .events = POLLIN };
	while (!atomic_load(&r->stop)) {
		if (poll(p, (nfds_t)n, 20) <= 0)
			continue;
		for (i = 1; i < n; i++)
			if (p[i].fd >= 0 && p[i].revents)
				replier_read(r, &p[i]);
		if ((p[0].revents & POLLIN) && n <= RS_MAX) {
			int fd = accept(r->lfd, NULL, NULL);

			if (fd >= 0) {
				p[n++] = (struct pollfd){ .fd = fd, .events = POLLIN };
				atomic_fetch_add(&r->accepted, 1);
			}
		}
	}
	for (i = 1; i < n; i++)
		if (p[i].fd >= 0)
			close(p[i].fd);
	return NULL;
}

static void replier_start(struct replier *r)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);

	memset(r, 0, sizeof(*r));
	r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(r->lfd, 0);
	ck_assert_int_eq(bind(r->lfd, (struct sockaddr *)&sa, len), 0);
	ck_assert_int_eq(listen(r->lfd, RS_MAX), 0);
	ck_assert_int_eq(getsockname(r->lfd, (struct sockaddr *)&sa, &len), 0);
	r->port = ntohs(sa.sin_port);
	pthread_create(&r->thread, NULL, replier_main, r);
}

static void replier_stop(struct replier *r)
{
	atomic_store(&r->stop, true);
	pthread_join(r->thread, NULL);
	close(r->lfd);
}

/* fallback = close must close with a FIN: close() with unread bytes sends
 * an RST instead. Here the server answers the close request but never
 * closes, and more drains than the reaper handles in one round are
 * overdue when it runs: every one must still end with a FIN. */
START_TEST(fallback_close_sends_fin)
{
	enum { N = 100 };
	pool_t *pool = pool_with("maintenance", "manual", "teardown", "peer-first",
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "50", "fallback", "close", NULL);
	struct replier r;
	pool_conn_t *c[N];
	char ep[32];
	unsigned resets;
	int i;

	replier_start(&r);
	snprintf(ep, sizeof(ep), "127.0.0.1:%u", r.port);
	for (i = 0; i < N; i++)
		ck_assert_int_eq(pool_get(pool, ep, &c[i]), 0);
	wait_for(atomic_load(&r.accepted) == N, 5000);
	for (i = 0; i < N; i++)
		pool_put(pool, c[i], POOL_RETIRE);
	/* Every "+OK" arrives and every deadline passes before the reaper
	 * first runs. */
	usleep(300 * 1000);
	ck_assert_int_eq(pool_maintain(pool, NULL), 0);
	ck_assert_uint_eq(stats_of(pool, NULL).draining, 0);
	ck_assert_uint_eq(stats_of(pool, NULL).peer_first_fallback, N);
	wait_for(atomic_load(&r.eofs) + atomic_load(&r.resets) == N, 5000);
	resets = atomic_load(&r.resets);
	ck_assert_msg(resets == 0, "%u of %d connections reset, not closed", resets, N);
	pool_destroy(pool);
	replier_stop(&r);
}
END_TEST

Suite *waits_suite(void)
{
	Suite *s = suite_create("waits");
	TCase *tc = tcase_create("waits");

	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(tc, fallback_close_sends_fin);
	suite_add_tcase(s, tc);
	return s;
}
