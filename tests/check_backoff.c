/*
 * Fail fast (connect_backoff_ms, connect_backoff_max_ms): after a failed
 * connect, calls that would dial fail with POOL_EBACKOFF at once and
 * without a connect (counted: no attempt, no failure added) for a
 * growing, jittered delay, idle connections still served; a success
 * resets it.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixtures.h"
#include "pool-internal.h"
#include "suites.h"

/* Attempts so far: connects that succeeded plus those that failed. */
static uint64_t attempts(pool_t *pool, const char *ep)
{
	pool_stats_t st = stats_of(pool, ep);

	return st.connects + st.connect_failures;
}

/* Call pool_get every 2 ms while it says POOL_EBACKOFF; returns its
 * first other answer, and in *ms when the call that dialed began,
 * counted from since (mono_ms just after the failure that backed off). */
static int get_after_backoff(pool_t *pool, const char *ep, pool_conn_t **c,
			     long long since, long long *ms)
{
	uint64_t before = attempts(pool, ep);
	long long call;
	int rc;

	for (;;) {
		call = mono_ms();
		rc = pool_get(pool, ep, c);
		if (rc != POOL_EBACKOFF)
			break;
		/* Rejected without dialing. */
		ck_assert_uint_eq(attempts(pool, ep), before);
		ck_assert_int_lt(call - since, 5000);
		usleep(2000);
	}
	*ms = call - since;
	return rc;
}

static struct ep_xstats xstats_of(pool_t *pool, const char *key)
{
	struct pool_endpoint *ep;
	struct ep_xstats x;

	ck_assert_int_eq(pool_endpoint_lock(pool, key, &ep), 0);
	x = ep->xstats;
	pool_endpoint_unlock(ep);
	return x;
}

/* A refused port: each failure backs off, base 100 ms doubling up to
 * 400 ms, each delay jittered within [d/2, d]; a success resets it. */
START_TEST(refused_backs_off_growing)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	struct lineserver_opts o = { 0 };
	uint16_t port = lineserver_port(ls);
	pool_t *pool = pool_with("connect_backoff_ms", "100",
				 "connect_backoff_max_ms", "400", NULL);
	static const long long lo[] = { 50, 100, 200, 200 };
	static const long long hi[] = { 100, 200, 400, 400 };
	pool_pending_t *pend = (pool_pending_t *)&pend;
	pool_conn_t *c = NULL;
	long long t0, ms, since;
	char ep[64];
	int i;

	snprintf(ep, sizeof(ep), "%s", lineserver_endpoint(ls));
	lineserver_stop(ls);
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_ECONNREFUSED);
	since = mono_ms();
	ck_assert_uint_eq(attempts(pool, ep), 1);
	/* At once, and without a connect: blocking and event-loop forms. */
	t0 = mono_ms();
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_EBACKOFF);
	ck_assert_int_eq(pool_get_start(pool, ep, &c, &pend), POOL_EBACKOFF);
	ck_assert_ptr_null(pend);
	ck_assert_int_lt(mono_ms() - t0, 50);
	ck_assert_uint_eq(attempts(pool, ep), 1);
	ck_assert_ptr_nonnull(strstr(pool_strerror(POOL_EBACKOFF), "backing off"));
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(get_after_backoff(pool, ep, &c, since, &ms),
				 POOL_ECONNREFUSED);
		since = mono_ms();
		/* Margins: the failure ended a little before since. */
		ck_assert_msg(ms >= lo[i] - 20 && ms <= hi[i] + 150,
			      "backoff %d lasted %lld ms, not within [%lld, %lld]",
			      i + 1, ms, lo[i], hi[i]);
		ck_assert_uint_eq(attempts(pool, ep), (uint64_t)i + 2);
	}
	ck_assert_uint_eq(xstats_of(pool, ep).backoffs, 5);
	ck_assert_uint_ge(xstats_of(pool, ep).backoff_rejects, 5);
	/* The server is back: the first dial after the delay succeeds... */
	o.port = port;
	ls = lineserver_start(&o);
	ck_assert_ptr_nonnull(ls);
	ck_assert_int_eq(get_after_backoff(pool, ep, &c, since, &ms), 0);
	ping(c);
	pool_put(pool, c, POOL_RETIRE);
	lineserver_stop(ls);
	/* ... and resets the delay: the next failure backs off by the base. */
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_ECONNREFUSED);
	since = mono_ms();
	ck_assert_int_eq(get_after_backoff(pool, ep, &c, since, &ms), POOL_ECONNREFUSED);
	ck_assert_msg(ms >= lo[0] - 20 && ms <= hi[0] + 150,
		      "after a reset, backoff lasted %lld ms", ms);
	pool_destroy(pool);
}
END_TEST

/* A connect that never completes (full backlog): it times out, then
 * callers that would dial get POOL_EBACKOFF at once, while an idle
 * connection is still handed out. */
START_TEST(timeout_backs_off_idle_served)
{
	struct lineserver_opts o = { .backlog = 1 };
	struct lineserver *ls = lineserver_start(&o);
	pool_t *pool = pool_with("connect_timeout_ms", "200",
				 "connect_backoff_ms", "2000", NULL);
	pool_conn_t *c1, *c2, *c = NULL;
	int fill[16], nfill, i;
	long long t0;
	const char *ep;

	ck_assert_ptr_nonnull(ls);
	ep = lineserver_endpoint(ls);
	ck_assert_int_eq(pool_get(pool, ep, &c1), 0);
	ck_assert_int_eq(pool_get(pool, ep, &c2), 0);
	pool_put(pool, c1, POOL_REUSE);
	lineserver_pause_accept(ls, true);
	nfill = fill_backlog(lineserver_port(ls), fill, 16);
	/* The idle one first... */
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_ptr_eq(c, c1);
	/* ... then a dial, which times out ... */
	t0 = mono_ms();
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_ETIMEDOUT);
	ck_assert_int_ge(mono_ms() - t0, 190);
	/* ... and from now on, no more dials for a while. */
	t0 = mono_ms();
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_EBACKOFF);
	ck_assert_int_lt(mono_ms() - t0, 50);
	ck_assert_uint_eq(attempts(pool, ep), 3);
	/* An idle connection is still served while backing off. */
	pool_put(pool, c1, POOL_REUSE);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_ptr_eq(c, c1);
	ping(c);
	pool_put(pool, c1, POOL_REUSE);
	pool_put(pool, c2, POOL_REUSE);
	pool_destroy(pool);
	for (i = 0; i < nfill; i++)
		close(fill[i]);
	lineserver_stop(ls);
}
END_TEST

/* Off by default: failures never turn into POOL_EBACKOFF. */
START_TEST(off_by_default)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with(NULL);
	pool_conn_t *c;
	char ep[64];

	snprintf(ep, sizeof(ep), "%s", lineserver_endpoint(ls));
	lineserver_stop(ls);
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_ECONNREFUSED);
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_ECONNREFUSED);
	ck_assert_uint_eq(attempts(pool, ep), 2);
	ck_assert_uint_eq(xstats_of(pool, ep).backoffs, 0);
	pool_destroy(pool);
}
END_TEST

/* The delay the last POOL_EVENT_BACKOFF reported. */
static uint64_t backoff_event_ns;

static void note_backoff(const pool_event_t *ev, void *ud)
{
	(void)ud;
	if (ev->type == POOL_EVENT_BACKOFF)
		backoff_event_ns = ev->duration_ns;
}

/* A delay past what 32 bits of ms hold (connect_backoff_ms near its
 * maximum, connect_backoff_max_ms 0: no cap): the delay the endpoint
 * backs off for is the one POOL_EVENT_BACKOFF reports, at most
 * UINT32_MAX ms. Before, the delay doubled to 2^33 ms, the endpoint
 * backed off that long, and the event got its low 32 bits. */
START_TEST(huge_delay_reported_as_applied)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("connect_backoff_ms", "4294967294",
				 "connect_backoff_max_ms", "0", NULL);
	struct pool_endpoint *e;
	pool_conn_t *c;
	uint64_t before, applied;
	char ep[64];

	snprintf(ep, sizeof(ep), "%s", lineserver_endpoint(ls));
	lineserver_stop(ls);
	pool_set_event_fn(pool, note_backoff, NULL);
	/* As if it had failed before (the delay would be days). */
	ck_assert_int_eq(pool_endpoint_lock(pool, ep, &e), 0);
	e->backoff_failures = 3;
	pool_endpoint_unlock(e);
	before = now_ns();
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_ECONNREFUSED);
	ck_assert_int_eq(pool_endpoint_lock(pool, ep, &e), 0);
	applied = e->backoff_until_ns - before;
	pool_endpoint_unlock(e);
	ck_assert_uint_le(backoff_event_ns, MS_TO_NS(UINT32_MAX));
	ck_assert_uint_ge(backoff_event_ns, MS_TO_NS(UINT32_MAX / 2));
	/* What was applied is what was reported (the connect took < 5 s). */
	ck_assert_uint_ge(applied, backoff_event_ns);
	ck_assert_uint_le(applied - backoff_event_ns, MS_TO_NS(5000));
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_EBACKOFF);
	pool_destroy(pool);
}
END_TEST

Suite *backoff_suite(void)
{
	Suite *s = suite_create("backoff");
	TCase *tc = tcase_create("backoff");

	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(tc, refused_backs_off_growing);
	tcase_add_test(tc, timeout_backs_off_idle_served);
	tcase_add_test(tc, off_by_default);
	tcase_add_test(tc, huge_delay_reported_as_applied);
	suite_add_tcase(s, tc);
	return s;
}
