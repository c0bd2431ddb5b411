/*
 * The thread cache (park.c), reviewed: each test shows one way the cache
 * broke a guarantee the pool gave without it. White-box where only an
 * internal state can stand for a race (the slot of a thread, a lock held
 * by a thread at a fork).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixtures.h"
#include "park.h"
#include "pool-internal.h"
#include "suites.h"

static uint16_t peer_port(pool_conn_t *c)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	ck_assert_int_eq(getpeername(pool_conn_fd(c), (struct sockaddr *)&a, &len), 0);
	return ntohs(a.sin_port);
}

static uint16_t endpoint_port(const char *ep)
{
	const char *colon = strrchr(ep, ':');

	ck_assert_ptr_nonnull(colon);
	return (uint16_t)atoi(colon + 1);
}

/* max_idle = 1 with a shrink period: a thread's cached connection, out
 * while another is put back idle, is parked at its put with no look at
 * max_idle, and nothing arms the shrink (the shrink could not take a
 * parked one anyway). Without the cache the second put arms it and the
 * surplus goes within idle_shrink_ms. */
START_TEST(parked_surplus_over_max_idle_never_shrinks)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_idle", "1", "idle_shrink_ms", "20", NULL);
	pool_stats_ex_t ex;
	pool_conn_t *c1, *c2;

	ck_assert_int_eq(pool_get(pool, ep, &c1), 0);
	pool_put(pool, c1, POOL_REUSE);          /* adopted: parked */
	ck_assert_int_eq(pool_get(pool, ep, &c1), 0); /* from the cache */
	ck_assert_int_eq(pool_stats_ex(pool, ep, &ex, sizeof(ex)), 0);
	ck_assert_uint_eq(ex.cache_gets, 1);
	ck_assert_int_eq(pool_get(pool, ep, &c2), 0); /* a second one */
	pool_put(pool, c2, POOL_REUSE);          /* idle list: 1 of 1 */
	pool_put(pool, c1, POOL_REUSE);          /* parked: 2 of 1 */
	ck_assert_uint_eq(stats_of(pool, ep).idle, 2);
	/* Ten shrink periods. */
	usleep(200 * 1000);
	ck_assert_msg(stats_of(pool, ep).idle <= 1,
		      "idle %u above max_idle 1 after 10 idle_shrink_ms periods",
		      stats_of(pool, ep).idle);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Slot reuse: thread A adopts c (endpoint 1) and exits while c is out;
 * with every other slot owned, thread B claims A's slot, still affine to
 * c, and B's put of c parks it there under A's memo stamp. Stamps count
 * per thread from 0, so B's own memo (endpoint 2) has the same stamp, and
 * B's pool_get of endpoint 2 is handed c: a connection to endpoint 1. */
static pool_t *reuse_pool;
static const char *reuse_ep1, *reuse_ep2;
static pthread_barrier_t fillers_ready, fillers_go;
static uint16_t reuse_got_port;

static void *thread_a(void *arg)
{
	pool_conn_t *c;

	(void)arg;
	ck_assert_int_eq(pool_get(reuse_pool, reuse_ep1, &c), 0);
	pool_put(reuse_pool, c, POOL_REUSE);
	ck_assert_int_eq(pool_get(reuse_pool, reuse_ep1, &c), 0);
	return c; /* still affine to A's slot */
}

static void *filler(void *arg)
{
	pool_conn_t *c;

	(void)arg;
	ck_assert_int_eq(pool_get(reuse_pool, reuse_ep2, &c), 0);
	pool_put(reuse_pool, c, POOL_REUSE); /* claims a slot */
	pthread_barrier_wait(&fillers_ready);
	pthread_barrier_wait(&fillers_go);
	return NULL;
}

static void *thread_b(void *arg)
{
	pool_conn_t *c = arg, *d;

	ck_assert_int_eq(pool_get(reuse_pool, reuse_ep2, &d), 0);
	pool_put(reuse_pool, d, POOL_REUSE); /* claims A's old slot */
	pool_put(reuse_pool, c, POOL_REUSE); /* parks A's c there */
	ck_assert_int_eq(pool_get(reuse_pool, reuse_ep2, &d), 0);
	reuse_got_port = peer_port(d);
	pool_put(reuse_pool, d, POOL_REUSE);
	return NULL;
}

START_TEST(reused_slot_hands_out_other_endpoint)
{
	struct lineserver *ls1 = server_start(LS_QUIT_CLOSE);
	struct lineserver *ls2 = server_start(LS_QUIT_CLOSE);
	pthread_t a, b, f[PARK_SLOTS - 1];
	void *c;
	int i;

	reuse_ep1 = lineserver_endpoint(ls1);
	reuse_ep2 = lineserver_endpoint(ls2);
	reuse_pool = pool_with("max_idle", "128", NULL);
	ck_assert_int_eq(pthread_create(&a, NULL, thread_a, NULL), 0);
	ck_assert_int_eq(pthread_join(a, &c), 0);
	pthread_barrier_init(&fillers_ready, NULL, PARK_SLOTS);
	pthread_barrier_init(&fillers_go, NULL, PARK_SLOTS);
	for (i = 0; i < PARK_SLOTS - 1; i++)
		ck_assert_int_eq(pthread_create(&f[i], NULL, filler, NULL), 0);
	pthread_barrier_wait(&fillers_ready);
	ck_assert_int_eq(pthread_create(&b, NULL, thread_b, c), 0);
	pthread_join(b, NULL);
	pthread_barrier_wait(&fillers_go);
	for (i = 0; i < PARK_SLOTS - 1; i++)
		pthread_join(f[i], NULL);
	ck_assert_msg(reuse_got_port == endpoint_port(reuse_ep2),
		      "pool_get(%s) handed out a connection to port %u",
		      reuse_ep2, reuse_got_port);
	pool_destroy(reuse_pool);
	pthread_barrier_destroy(&fillers_ready);
	pthread_barrier_destroy(&fillers_go);
	lineserver_stop(ls1);
	lineserver_stop(ls2);
}
END_TEST

/* A child of fork() keeps the parent's counters, and they only grow:
 * the parent's cache hands-outs of the parked connection are counted
 * (gets, reuses, cache_gets) only while it is on the busy list, and the
 * child's reset frees it without adding them. */
START_TEST(fork_child_counters_go_back)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with(NULL);
	struct child_report rep;
	pool_stats_ex_t before, after;
	pool_conn_t *c;
	pid_t pid;
	int i, rc;

	if (running_under_asan()) {
		printf("parkreview: fork test skipped under AddressSanitizer\n");
		pool_destroy(pool);
		lineserver_stop(ls);
		return;
	}
	for (i = 0; i < 5; i++) {
		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		pool_put(pool, c, POOL_REUSE);
	}
	ck_assert_int_eq(pool_stats_ex(pool, ep, &before, sizeof(before)), 0);
	ck_assert_uint_eq(before.base.gets, 5);
	ck_assert_uint_eq(before.cache_gets, 4);
	child_report_init(&rep);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		rc = pool_stats_ex(pool, ep, &after, sizeof(after)) != 0 ? 10 :
		     after.base.gets < before.base.gets ? 11 :
		     after.base.reuses < before.base.reuses ? 12 :
		     after.cache_gets < before.cache_gets ? 13 : 0;
		pool_destroy(pool);
		child_report_exit(&rep, rc);
	}
	rc = child_report_wait(&rep, pid);
	ck_assert_msg(rc == 0, "child: counters went back (%d)", rc);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* A fork while another thread holds the pool's park.lock (in slot_claim,
 * say): the child's forking thread, giving up its slot in that pool
 * before its first call on it (64 puts to another pool), takes the lock
 * nobody will release: slot_leave checks pool->fork_gen, which the child
 * has not reset yet. White-box: a helper thread holds the lock. */
static pthread_mutex_t *held_lock;
static pthread_barrier_t lock_taken, lock_release;

static void *hold_park_lock(void *arg)
{
	(void)arg;
	pthread_mutex_lock(held_lock);
	pthread_barrier_wait(&lock_taken);
	pthread_barrier_wait(&lock_release);
	pthread_mutex_unlock(held_lock);
	return NULL;
}

START_TEST(fork_child_slot_leave_deadlocks)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *p1 = pool_with(NULL);
	struct child_report rep;
	pool_conn_t *c;
	pthread_t t;
	pid_t pid;
	int i, rc;

	if (running_under_asan()) {
		printf("parkreview: fork test skipped under AddressSanitizer\n");
		pool_destroy(p1);
		lineserver_stop(ls);
		return;
	}
	ck_assert_int_eq(pool_get(p1, ep, &c), 0);
	pool_put(p1, c, POOL_REUSE); /* a slot in p1, c parked */
	held_lock = &p1->park.lock;
	pthread_barrier_init(&lock_taken, NULL, 2);
	pthread_barrier_init(&lock_release, NULL, 2);
	ck_assert_int_eq(pthread_create(&t, NULL, hold_park_lock, NULL), 0);
	pthread_barrier_wait(&lock_taken);
	child_report_init(&rep);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pool_t *p2;

		/* A deadlock ends the child, no report (check's own SIGALRM
		 * handler would kill the whole process group). */
		signal(SIGALRM, SIG_DFL);
		alarm(5);
		p2 = pool_with(NULL);
		rc = 0;
		for (i = 0; i < 70 && rc == 0; i++) {
			if (pool_get(p2, ep, &c) != 0)
				rc = 10;
			else
				pool_put(p2, c, POOL_REUSE);
		}
		pool_destroy(p2);
		pool_destroy(p1);
		child_report_exit(&rep, rc);
	}
	pthread_barrier_wait(&lock_release);
	pthread_join(t, NULL);
	rc = child_report_wait(&rep, pid);
	ck_assert_msg(rc == 0, "child: %d (-1: deadlocked)", rc);
	pthread_barrier_destroy(&lock_taken);
	pthread_barrier_destroy(&lock_release);
	pool_destroy(p1);
	lineserver_stop(ls);
}
END_TEST

/* The forking thread's parked connection, in a taker's hands at the fork
 * (park_evict's or park_sweep's exchange done, checkout_return_parked
 * waiting for the shard lock the atfork handler holds): on the busy list,
 * its holder the forking thread, in no slot. child_close_conns keeps it
 * open as the forking thread's own, park_child_close does not see it,
 * and no put will ever come: the child keeps the parent's socket open.
 * White-box: the test takes it from the slot as a taker would. */
START_TEST(fork_child_keeps_parked_in_transit_open)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with(NULL);
	struct child_report rep;
	struct park_slot *s;
	struct pool_conn *taken;
	pool_conn_t *c;
	pid_t pid;
	int fd, rc;

	if (running_under_asan()) {
		printf("parkreview: fork test skipped under AddressSanitizer\n");
		pool_destroy(pool);
		lineserver_stop(ls);
		return;
	}
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	fd = pool_conn_fd(c);
	pool_put(pool, c, POOL_REUSE);
	s = park_mine(pool);
	ck_assert_ptr_nonnull(s);
	taken = atomic_exchange(&s->conn, NULL);
	ck_assert_ptr_eq(taken, c);
	child_report_init(&rep);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pool_stats_t st;

		pool_stats(pool, ep, &st); /* the child's reset */
		rc = fcntl(fd, F_GETFD) != -1 ? 1 : 0;
		pool_destroy(pool);
		child_report_exit(&rep, rc);
	}
	/* The taker goes on. */
	checkout_return_parked(pool, taken, 0);
	rc = child_report_wait(&rep, pid);
	ck_assert_msg(rc == 0, "child kept the parent's socket open (%d)", rc);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* slot_take's put-back: a pool_get of endpoint 1 reads a slot's hint
 * (endpoint 1), exchanges out what the slot holds meanwhile (the slot's
 * thread moved on to endpoint 2) and stores it back. Between the two, a
 * caller about to wait for max_active (nwaiters up) evicts the slots,
 * finds this one empty, and sleeps: the put-back tells nobody, and the
 * waiter sleeps its whole acquire_timeout_ms beside a parked idle
 * connection. White-box: the test makes the exchange, then the
 * put-back (on main, a plain store) is slot_take's own. */
static pool_t *stall_pool;
static const char *stall_ep;
static int stall_rc;
static long long stall_ms;

static void *stall_waiter(void *arg)
{
	pool_conn_t *c;
	long long t0 = mono_ms();

	(void)arg;
	stall_rc = pool_get(stall_pool, stall_ep, &c);
	stall_ms = mono_ms() - t0;
	if (stall_rc == 0)
		pool_put(stall_pool, c, POOL_REUSE);
	return NULL;
}

START_TEST(put_back_window_stalls_waiter)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	struct park_slot *s;
	struct pool_conn *taken;
	pool_conn_t *c;
	pthread_t w;

	stall_ep = lineserver_endpoint(ls);
	stall_pool = pool_with("max_active", "1", "acquire_timeout_ms", "2000", NULL);
	ck_assert_int_eq(pool_get(stall_pool, stall_ep, &c), 0);
	pool_put(stall_pool, c, POOL_REUSE); /* parked */
	s = park_mine(stall_pool);
	ck_assert_ptr_nonnull(s);
	taken = atomic_exchange(&s->conn, NULL); /* slot_take's exchange */
	ck_assert_int_eq(pthread_create(&w, NULL, stall_waiter, NULL), 0);
	wait_for(atomic_load(&stall_pool->nwaiters) == 1, 2000);
	usleep(50 * 1000); /* past its evict, asleep */
	park_put_back(stall_pool, s, taken); /* slot_take's put-back */
	pthread_join(w, NULL);
	ck_assert_int_eq(stall_rc, 0);
	ck_assert_msg(stall_ms < 1000, "waiter slept %lld ms beside a parked connection",
		      stall_ms);
	pool_destroy(stall_pool);
	lineserver_stop(ls);
}
END_TEST

Suite *parkreview_suite(void)
{
	Suite *s = suite_create("parkreview");
	TCase *tc = tcase_create("parkreview");

	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, parked_surplus_over_max_idle_never_shrinks);
	tcase_add_test(tc, reused_slot_hands_out_other_endpoint);
	tcase_add_test(tc, fork_child_counters_go_back);
	tcase_add_test(tc, fork_child_slot_leave_deadlocks);
	tcase_add_test(tc, fork_child_keeps_parked_in_transit_open);
	tcase_add_test(tc, put_back_window_stalls_waiter);
	suite_add_tcase(s, tc);
	return s;
}
