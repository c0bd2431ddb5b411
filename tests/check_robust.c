/*
 * Robustness: signals, time arithmetic at the ends of each key's range,
 * stopping a pool whose refill is stuck in connect(), and fork().
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixtures.h"
#include "pool-internal.h"
#include "suites.h"

/* ---- signals -------------------------------------------------------------- */

/* The thread ids of this process, in directory order. */
static int task_ids(int *ids, int max)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL && n < max)
		if (e->d_name[0] != '.')
			ids[n++] = atoi(e->d_name);
	closedir(d);
	return n;
}

static bool has_id(const int *ids, int n, int id)
{
	int i;

	for (i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/* The SigBlk mask of one thread, bit sig-1 for each blocked signal. */
static unsigned long long blocked_mask(int tid)
{
	char path[64], line[256];
	unsigned long long mask = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	f = fopen(path, "re");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "SigBlk: %llx", &mask) == 1)
			break;
	fclose(f);
	return mask;
}

/* What a thread blocks when it blocks every signal it can: all but
 * SIGKILL, SIGSTOP and what the C library (or valgrind) keeps for itself
 * here. Read from this thread, blocking all for a moment. */
static unsigned long long all_blockable(void)
{
	unsigned long long mask;
	sigset_t all, old;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	mask = blocked_mask((int)gettid());
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	/* The ones an application uses must be among them. */
	ck_assert(mask & (1ULL << (SIGINT - 1)));
	ck_assert(mask & (1ULL << (SIGTERM - 1)));
	ck_assert(mask & (1ULL << (SIGUSR1 - 1)));
	ck_assert(mask & (1ULL << (SIGPIPE - 1)));
	ck_assert(mask & (1ULL << (SIGRTMIN - 1)));
	/* Not the synchronous ones: a fault is delivered to the thread that
	 * caused it whatever its mask, and valgrind leaves them unblocked
	 * while a thread waits in a system call (a pool thread in
	 * epoll_wait then shows them open). */
	mask &= ~(1ULL << (SIGILL - 1) | 1ULL << (SIGTRAP - 1) |
		  1ULL << (SIGBUS - 1) | 1ULL << (SIGFPE - 1) |
		  1ULL << (SIGSEGV - 1) | 1ULL << (SIGSYS - 1));
	return mask;
}

static void assert_blocks_all(int tid, unsigned long long all)
{
	unsigned long long mask = blocked_mask(tid);
	char path[64], comm[32] = "?";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/comm", tid);
	if ((f = fopen(path, "re"))) {
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = '\0';
		fclose(f);
	}
	ck_assert_msg((mask & all) == all,
		      "thread %d (%s) leaves signals open: SigBlk %016llx, blockable %016llx",
		      tid, comm, mask, all);
}

/* The pool's threads (maintenance, refill) block every signal, whatever
 * the mask of the thread that created the pool: the application's
 * signals go to the application's threads. */
START_TEST(library_threads_block_signals)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	int before[64], after[64], nbefore, nafter, i, nnew = 0;
	unsigned long long all = all_blockable();
	sigset_t none, old;
	pool_conn_t *c;
	pool_t *pool;

	/* The creating thread blocks nothing: what the pool's threads
	 * block, they block on their own. */
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, &old);
	nbefore = task_ids(before, 64);
	pool = pool_with("min_idle", "1", NULL);
	/* A retired connection leaves the endpoint short of min_idle: the
	 * refill thread starts and opens a warm one. */
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_RETIRE);
	wait_for(stats_of(pool, ep).idle == 1, 2000);
	nafter = task_ids(after, 64);
	for (i = 0; i < nafter; i++) {
		if (has_id(before, nbefore, after[i]))
			continue;
		assert_blocks_all(after[i], all);
		nnew++;
	}
	ck_assert_int_eq(nnew, 2); /* maintenance and refill */
	pool_destroy(pool);
	lineserver_stop(ls);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}
END_TEST

/* A steady stream of SIGUSR1, as a program that reloads its
 * configuration or rotates its logs on a timer sends itself. */
struct storm {
	pthread_t thread;
	pthread_t target;   /* the thread to signal, when to_thread */
	bool to_thread;     /* else the process: kill(getpid()) */
	atomic_bool stop;
	long long until_ms; /* gives up then, so a stalled pool shows as a
	                     * slow one rather than a hung test */
};

static volatile sig_atomic_t usr1_seen;

static void on_usr1(int sig)
{
	(void)sig;
	usr1_seen++;
}

static void *storm_run(void *arg)
{
	struct storm *s = arg;

	while (!atomic_load(&s->stop) && mono_ms() < s->until_ms) {
		if (s->to_thread)
			pthread_kill(s->target, SIGUSR1);
		else
			kill(getpid(), SIGUSR1);
		usleep(20000);
	}
	return NULL;
}

/* Install the handler without SA_RESTART (so that a signal interrupts
 * epoll_wait and poll with EINTR) and start the storm; the storm thread
 * itself blocks SIGUSR1. */
static void storm_start(struct storm *s, bool to_thread, long long for_ms)
{
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigset_t usr1, old;

	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	s->to_thread = to_thread;
	s->target = pthread_self();
	atomic_store(&s->stop, false);
	s->until_ms = mono_ms() + for_ms;
	usr1_seen = 0;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, &old);
	ck_assert_int_eq(pthread_create(&s->thread, NULL, storm_run, s), 0);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Stop the storm and drop a SIGUSR1 left pending: SIG_IGN discards it
 * before the caller unblocks the signal again. */
static void storm_stop(struct storm *s)
{
	struct sigaction sa = { .sa_handler = SIG_IGN };

	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGUSR1, &sa, NULL);
}

/* The usual design: signals blocked after start-up in every application
 * thread (one of them would sigwait). A SIGUSR1 every 20 ms must neither
 * run on the pool's thread nor hold back a peer-first drain: its
 * fallback comes at close_timeout_ms. */
START_TEST(signal_storm_keeps_drain_deadline)
{
	struct lineserver *ls;
	struct storm storm;
	sigset_t usr1, old;
	pool_conn_t *c;
	pool_t *pool;
	const char *ep;
	long long t0, ms;

	/* Created before the application blocks its signals. */
	pool = pool_with("teardown", "peer-first", "close_request", "\"quit\\n\"",
			 "close_timeout_ms", "200", "fallback", "abort", NULL);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, &old);
	ls = server_start(LS_QUIT_IGNORE);
	ep = lineserver_endpoint(ls);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	storm_start(&storm, false, 3000);
	t0 = mono_ms();
	pool_put(pool, c, POOL_RETIRE);
	while (stats_of(pool, ep).draining && mono_ms() - t0 < 2000)
		usleep(5000);
	ms = mono_ms() - t0;
	storm_stop(&storm);
	ck_assert_msg(ms >= 150 && ms < 1000,
		      "the drain's fallback came after %lld ms (close_timeout_ms 200)", ms);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_fallback, 1);
	ck_assert_int_eq(usr1_seen, 0); /* no handler ran on the pool's thread */
	pool_destroy(pool);
	lineserver_stop(ls);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}
END_TEST

/* pool_destroy waits for drains in the caller's thread, which takes the
 * application's signals: each EINTR must not restart the wait from the
 * top, or a signal every 20 ms holds destroy until the signals stop. */
START_TEST(signal_storm_destroy_keeps_deadline)
{
	struct lineserver *ls = server_start(LS_QUIT_IGNORE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first", "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "200", "fallback", "abort", NULL);
	struct lineserver_stats ss;
	struct storm storm;
	pool_conn_t *c;
	long long t0, ms;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	storm_start(&storm, true, 3000);
	t0 = mono_ms();
	pool_put(pool, c, POOL_RETIRE);
	pool_destroy(pool);
	ms = mono_ms() - t0;
	storm_stop(&storm);
	ck_assert_msg(usr1_seen > 0, "no signal reached the destroying thread");
	ck_assert_msg(ms >= 150 && ms < 1000,
		      "pool_destroy took %lld ms (close_timeout_ms 200)", ms);
	wait_for((lineserver_get_stats(ls, &ss), ss.closed_by_client == 1), 2000);
	lineserver_stop(ls);
}
END_TEST

/* ---- time arithmetic ------------------------------------------------------ */

/* deadline_ms at the ends of its range: rounded up, never negative,
 * never past INT_MAX, whatever ms key (up to UINT32_MAX) made the
 * deadline. connect_timeout_ms and close_timeout_ms of 2^31 ms or more
 * came out negative before ("wait forever" to poll and epoll_wait). */
START_TEST(deadline_ms_bounds)
{
	uint64_t now = 5 * 1000000000ull;

	ck_assert_int_eq(deadline_ms(now, now), 0);
	ck_assert_int_eq(deadline_ms(now - 1, now), 0);
	ck_assert_int_eq(deadline_ms(0, now), 0);
	ck_assert_int_eq(deadline_ms(now + 1, now), 1);
	ck_assert_int_eq(deadline_ms(now + MS_TO_NS(1), now), 1);
	ck_assert_int_eq(deadline_ms(now + MS_TO_NS(1) + 1, now), 2);
	ck_assert_int_eq(deadline_ms(now + MS_TO_NS(INT_MAX) - 1, now), INT_MAX);
	ck_assert_int_eq(deadline_ms(now + MS_TO_NS(INT_MAX), now), INT_MAX);
	ck_assert_int_eq(deadline_ms(now + MS_TO_NS(INT_MAX) + 1, now), INT_MAX);
	ck_assert_int_eq(deadline_ms(now + MS_TO_NS((uint64_t)INT_MAX + 1), now), INT_MAX);
	ck_assert_int_eq(deadline_ms(now + MS_TO_NS(UINT32_MAX), now), INT_MAX);
	ck_assert_int_eq(deadline_ms(UINT64_MAX, 0), INT_MAX);
}
END_TEST

/* Spread of the lifetime cut over many connections: it must cover most
 * of the jitter window (life * pct / 100), and never lengthen a life. */
static void assert_jitter_spread(uint32_t life_ms, uint32_t pct)
{
	struct pool_endpoint ep;
	struct pool_conn c;
	uint64_t life = MS_TO_NS(life_ms), window = life / 100 * pct;
	uint64_t lo = UINT64_MAX, hi = 0, base = 1000000000ull;
	int i;

	memset(&ep, 0, sizeof(ep));
	memset(&c, 0, sizeof(c));
	ep.set.max_lifetime_ms = life_ms;
	ep.set.lifetime_jitter_pct = pct;
	c.ep = &ep;
	for (i = 0; i < 2000; i++) {
		uint64_t now = base + (uint64_t)i * 7919, cut;

		conn_set_expiry(&c, now);
		ck_assert(c.expires_ns <= now + life);
		cut = now + life - c.expires_ns;
		ck_assert(cut <= window);
		if (cut < lo)
			lo = cut;
		if (cut > hi)
			hi = cut;
	}
	ck_assert_msg(hi - lo > window / 2,
		      "max_lifetime_ms %u, %u %% jitter: expiries spread over %.1f s "
		      "of a %.1f s window", life_ms, pct,
		      (double)(hi - lo) / 1e9, (double)window / 1e9);
}

/* Jitter windows above 2^33 ns (8.6 s) overflowed the 64-bit product
 * and were cut to 8.5 s: connections opened together expired together. */
START_TEST(lifetime_jitter_spreads_long_lives)
{
	assert_jitter_spread(1000, 10);              /* 0.1 s: small ones stay right */
	assert_jitter_spread(3600000, 5);            /* 1 h, 5 %: 180 s */
	assert_jitter_spread(86400000, 20);          /* 1 day, 20 %: 17,280 s */
	assert_jitter_spread(UINT32_MAX, 50);        /* the largest: 24.9 days */
}
END_TEST

/* A server that ignores the close request but closes connections idle
 * for 300 ms: peer-first gets its EOF about 300 ms after the request. */
static struct lineserver *slow_closer(void)
{
	struct lineserver_opts o = { .on_quit = LS_QUIT_IGNORE, .idle_close_ms = 300 };
	struct lineserver *ls = lineserver_start(&o);

	ck_assert_ptr_nonnull(ls);
	return ls;
}

/* close_timeout_ms = 4294967295, the way to write "forever": pool_destroy
 * waits for the server's EOF. Its remaining time used to be cast to a
 * negative int, and destroy gave up on the drain at once. */
START_TEST(destroy_waits_with_largest_close_timeout)
{
	struct lineserver *ls = slow_closer();
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first", "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "4294967295", NULL);
	struct lineserver_stats ss;
	pool_conn_t *c;
	long long t0, ms;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	t0 = mono_ms();
	pool_put(pool, c, POOL_RETIRE);
	pool_destroy(pool);
	ms = mono_ms() - t0;
	ck_assert_msg(ms >= 250 && ms < 3000,
		      "pool_destroy returned after %lld ms; the server closes at 300", ms);
	lineserver_get_stats(ls, &ss);
	ck_assert_uint_eq(ss.closed_by_server, 1); /* EOF first: no fallback */
	ck_assert_uint_eq(ss.closed_by_client, 0);
	tw_expect(ep, 0, 1);
	lineserver_stop(ls);
}
END_TEST

/* Manual maintenance with the largest close_timeout_ms: *next_ms stays a
 * wait of 1 to 60000 ms while the drain is pending (it was negative, "no
 * work"), and the drain ends at the server's EOF. */
START_TEST(maintain_next_ms_with_largest_timeouts)
{
	struct lineserver *ls = slow_closer();
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("maintenance", "manual", "teardown", "peer-first",
				 "close_request", "\"quit\\n\"",
				 "close_timeout_ms", "4294967295",
				 "idle_timeout_ms", "4294967295", NULL);
	struct pollfd p = { .fd = pool_maintenance_fd(pool), .events = POLLIN };
	pool_conn_t *c;
	long long end;
	int next;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	pool_put(pool, c, POOL_RETIRE);
	ck_assert_int_eq(pool_maintain(pool, &next), 0);
	ck_assert_msg(next > 0 && next <= 60000, "next_ms = %d with a drain pending", next);
	end = mono_ms() + 3000;
	while (stats_of(pool, ep).draining && mono_ms() < end) {
		poll(&p, 1, next < 0 || next > 100 ? 100 : next);
		ck_assert_int_eq(pool_maintain(pool, &next), 0);
		ck_assert_msg(next >= -1 && next <= 60000, "next_ms = %d", next);
	}
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_ok, 1);
	ck_assert_uint_eq(stats_of(pool, ep).peer_first_fallback, 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* ---- stopping a refill stuck in connect() --------------------------------- */


/* Refills under way for an endpoint (white-box: the pool's own count). */
static unsigned connecting(pool_t *pool, const char *key)
{
	struct pool_endpoint *ep;
	struct shard *sh;
	unsigned n;

	ep = table_lookup(pool, key, &sh, NULL);
	n = ep ? ep->nconnecting : 0;
	plock_unlock(&sh->lock);
	return n;
}

/* A unix socket's queue is full when a non-blocking connect says EAGAIN
 * (it never hangs): then every connect to it waits in tcpool's retry
 * loop. Returns how many sockets fill[] holds. */
static int fill_unix_backlog(const char *path, int *fill, int max)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	int n;

	snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
	for (n = 0; n < max; n++) {
		fill[n] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		ck_assert_int_ge(fill[n], 0);
		if (connect(fill[n], (struct sockaddr *)&un, sizeof(un)) == 0)
			continue;
		ck_assert_int_eq(errno, EAGAIN);
		close(fill[n]);
		return n;
	}
	ck_abort_msg("the queue of %s never filled", path);
	return n;
}

/* A pool whose min_idle refill is stuck in connect(): the server's
 * backlog is full (a TCP SYN dropped, or a unix connect retried). */
struct stuck {
	struct lineserver *ls;
	pool_t *pool;
	const char *ep;
	char path[64];
	int fill[64], nfill;
};

static void stuck_refill_start(struct stuck *st, bool unix_socket)
{
	struct lineserver_opts o = { .backlog = 1 };
	pool_conn_t *held[4];
	int nheld = 0, i;

	st->pool = pool_with("min_idle", "1", "connect_timeout_ms", "5000",
			     "teardown", "abort", NULL);
	if (unix_socket) {
		snprintf(st->path, sizeof(st->path), "/tmp/tcpool-robust-%d.sock",
			 (int)getpid());
		o.family = AF_UNIX;
		o.unix_path = st->path;
	}
	st->ls = lineserver_start(&o);
	ck_assert_ptr_nonnull(st->ls);
	st->ep = lineserver_endpoint(st->ls);
	ck_assert_int_eq(pool_get(st->pool, st->ep, &held[nheld++]), 0);
	/* Let a refill that this check-out may start (min_idle counting
	 * idle connections only) finish before the server stops accepting. */
	usleep(100000);
	wait_for(connecting(st->pool, st->ep) == 0, 2000);
	lineserver_pause_accept(st->ls, true);
	st->nfill = unix_socket ? fill_unix_backlog(st->path, st->fill, 64) :
				  fill_backlog(lineserver_port(st->ls), st->fill, 16);
	/* Take and retire every connection: the endpoint has none left, the
	 * maintenance refills it, and that connect hangs on the full queue. */
	while (stats_of(st->pool, st->ep).idle > 0 && nheld < 4)
		ck_assert_int_eq(pool_get(st->pool, st->ep, &held[nheld++]), 0);
	for (i = 0; i < nheld; i++)
		pool_put(st->pool, held[i], POOL_RETIRE);
	wait_for(connecting(st->pool, st->ep) == 1, 2000);
	usleep(50000); /* well inside connect() by now */
}

/* After pool_destroy: free the queue and stop the server. */
static void stuck_refill_end(struct stuck *st)
{
	int i;

	for (i = 0; i < st->nfill; i++)
		close(st->fill[i]);
	lineserver_stop(st->ls);
}

/* A min_idle refill stuck in connect() does not hold pool_destroy for
 * connect_timeout_ms: destroy returns at once, as pool_destroy(3) says
 * when nothing drains. Loop: 0 TCP, 1 unix socket. */
START_TEST(destroy_cancels_refill_connect)
{
	struct stuck st;
	long long t0, ms;

	stuck_refill_start(&st, _i == 1);
	t0 = mono_ms();
	pool_destroy(st.pool);
	ms = mono_ms() - t0;
	ck_assert_msg(ms < 500, "pool_destroy took %lld ms", ms);
	stuck_refill_end(&st);
}
END_TEST

/* ---- fork ----------------------------------------------------------------- */

/* A listening socket on loopback, served by hand: the test's own line
 * server cannot be used with a child alive, since the child's copies of
 * the server's sockets keep their registrations in the server's epoll
 * set (shared with the child) after the server closed them. */
static int raw_listener(char *ep, size_t eplen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 8), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	snprintf(ep, eplen, "127.0.0.1:%u", ntohs(sa.sin_port));
	return fd;
}

/* Milliseconds from t0 until the server's side of a connection sees the
 * client's reset (or its EOF), or -1 if none within 2 s. */
static long long reset_seen_after(int sfd, long long t0)
{
	struct pollfd p = { .fd = sfd, .events = POLLIN };
	char buf[64];

	while (mono_ms() - t0 < 2000) {
		if (poll(&p, 1, 5) <= 0)
			continue;
		if (recv(sfd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
			return mono_ms() - t0;
	}
	return -1;
}

/* A child that never calls the pool must not keep the parent's idle or
 * draining sockets open: the parent's abort then reaches the server at
 * once, not when the child exits. Loop: 0 an idle connection retired
 * with abort, 1 a peer-first drain under way at fork() (the server
 * ignores the request) whose fallback, abort, comes at close_timeout_ms. */
START_TEST(fork_child_keeps_no_parent_socket)
{
	char ep[32];
	int lfd = raw_listener(ep, sizeof(ep)), sfd;
	pool_t *pool = _i == 0 ?
		pool_with("teardown", "abort", NULL) :
		pool_with("teardown", "peer-first", "close_request", "\"quit\\n\"",
			  "close_timeout_ms", "300", "fallback", "abort", NULL);
	pool_conn_t *c;
	long long t0, ms;
	pid_t pid;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(sfd, 0);
	pool_put(pool, c, _i == 0 ? POOL_REUSE : POOL_RETIRE);
	t0 = mono_ms();
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		sleep(5); /* never calls the pool; killed below */
		_exit(0);
	}
	if (_i == 0) {
		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		ck_assert_int_eq(pool_conn_reused(c), 1);
		t0 = mono_ms();
		pool_put(pool, c, POOL_RETIRE);
	}
	ms = reset_seen_after(sfd, t0);
	kill(pid, SIGKILL);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	ck_assert_msg(ms >= 0, "the server saw no reset within 2 s");
	ck_assert_msg(ms < (_i == 0 ? 500 : 800), "the reset came after %lld ms", ms);
	pool_destroy(pool);
	close(sfd);
	close(lfd);
}
END_TEST

/* SYN_SENT sockets toward port, from /proc/net/tcp (this test's own
 * network namespace, as root). */
static int syn_sent_to(uint16_t port)
{
	FILE *f = fopen("/proc/net/tcp", "re");
	char line[256];
	unsigned rport, st;
	int n = 0;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, " %*d: %*x:%*x %*x:%x %x", &rport, &st) == 2 &&
		    rport == port && st == 0x02)
			n++;
	fclose(f);
	return n;
}

/* A refill in connect() at fork(): the child keeps no copy of its
 * socket, so when the parent gives the connect up (pool_destroy) the
 * socket goes, instead of retrying its SYN until the child exits. */
START_TEST(fork_child_keeps_no_refill_socket)
{
	struct stuck st;
	uint16_t port;
	pid_t pid;
	int i;

	stuck_refill_start(&st, false);
	port = lineserver_port(st.ls);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* The test's own copies of the fillers go; the pool's are
		 * the pool's business. */
		for (i = 0; i < st.nfill; i++)
			close(st.fill[i]);
		sleep(5); /* never calls the pool; killed below */
		_exit(0);
	}
	pool_destroy(st.pool);
	for (i = 0; i < st.nfill; i++) /* the filler in SYN_SENT too */
		close(st.fill[i]);
	st.nfill = 0;
	for (i = 0; i < 100 && syn_sent_to(port) > 0; i++)
		usleep(5000);
	i = syn_sent_to(port);
	kill(pid, SIGKILL);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	ck_assert_msg(i == 0, "%d socket(s) still in SYN_SENT toward the server", i);
	stuck_refill_end(&st);
}
END_TEST

/* The child's side of fork_child_without_descriptors: exit codes tell
 * the parent which step failed. */
static int child_without_descriptors(pool_t *pool, const char *ep, int limit)
{
	struct rusage before, after;
	struct rlimit rl;
	rlim_t saved;
	pool_conn_t *c;
	long cpu_ms;
	int fd;

	/* Fill the free numbers below limit, so that none is left. */
	do {
		fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	} while (fd >= 0 && fd < limit);
	if (fd >= 0)
		close(fd);
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 20;
	saved = rl.rlim_cur;
	rl.rlim_cur = (rlim_t)limit;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 21;
	if (pool_get(pool, ep, &c) != POOL_EMFILE)
		return 10;
	if (pool_maintenance_fd(pool) != POOL_EMFILE)
		return 11;
	/* No maintenance thread spinning on a dead epoll descriptor. */
	getrusage(RUSAGE_SELF, &before);
	usleep(500000);
	getrusage(RUSAGE_SELF, &after);
	cpu_ms = (after.ru_utime.tv_sec - before.ru_utime.tv_sec) * 1000 +
		 (after.ru_utime.tv_usec - before.ru_utime.tv_usec) / 1000 +
		 (after.ru_stime.tv_sec - before.ru_stime.tv_sec) * 1000 +
		 (after.ru_stime.tv_usec - before.ru_stime.tv_usec) / 1000;
	if (cpu_ms > 100)
		return 12;
	/* Descriptors again: the next call sets the pool up. */
	rl.rlim_cur = saved;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 22;
	if (pool_maintenance_fd(pool) < 0)
		return 13;
	if (pool_get(pool, ep, &c) != 0)
		return 14;
	if (!line_roundtrip(pool_conn_fd(c), "PING", "PONG"))
		return 15;
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	return 0;
}

/* A child with no descriptor to spare for the pool's epoll set: pool
 * calls fail with POOL_EMFILE, no thread spins, and the pool works once
 * descriptors are available again. */
START_TEST(fork_child_without_descriptors)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with(NULL);
	struct child_report rep;
	int rc, limit;
	pid_t pid;

	/* The parent's epoll descriptor: the child's limit goes there, so
	 * the child's pool cannot make its own even by reusing the number. */
	limit = pool_maintenance_fd(pool);
	ck_assert_int_ge(limit, 0);
	child_report_init(&rep);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		child_report_exit(&rep, child_without_descriptors(pool, ep, limit));
	rc = child_report_wait(&rep, pid);
	ck_assert_msg(rc == 0, "child: %d", rc);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* A connection checked out by another thread at fork(). */
struct holder {
	pool_t *pool;
	const char *ep;
	pool_conn_t *c;
	atomic_int state; /* 1 holding, 2 may put back */
};

static void *hold(void *arg)
{
	struct holder *h = arg;

	ck_assert_int_eq(pool_get(h->pool, h->ep, &h->c), 0);
	atomic_store(&h->state, 1);
	while (atomic_load(&h->state) != 2)
		usleep(1000);
	pool_put(h->pool, h->c, POOL_REUSE);
	return NULL;
}

/* Connections other threads hold at fork(): those threads do not exist
 * in the child, so no put will come there, and the child has no copy of
 * their descriptors. The forking thread's own keeps its descriptor until
 * its put in the child, which closes the copy and sends nothing. */
START_TEST(fork_child_drops_other_threads_connections)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("teardown", "peer-first", "close_request", "\"quit\\n\"", NULL);
	struct holder h = { .pool = pool, .ep = ep };
	struct lineserver_stats ss;
	struct child_report rep;
	int rc, other_fd, own_fd;
	pool_conn_t *own;
	pthread_t t;
	pid_t pid;

	ck_assert_int_eq(pthread_create(&t, NULL, hold, &h), 0);
	while (atomic_load(&h.state) != 1)
		usleep(1000);
	other_fd = pool_conn_fd(h.c);
	ck_assert_int_eq(pool_get(pool, ep, &own), 0);
	own_fd = pool_conn_fd(own);
	child_report_init(&rep);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		rc = fcntl(other_fd, F_GETFD) != -1 || errno != EBADF ? 10 :
		     fcntl(own_fd, F_GETFD) == -1 ? 11 : 0;
		if (rc == 0) {
			pool_put(pool, own, POOL_RETIRE);
			rc = fcntl(own_fd, F_GETFD) != -1 ? 12 : 0;
		}
		child_report_exit(&rep, rc);
	}
	rc = child_report_wait(&rep, pid);
	ck_assert_msg(rc == 0, "child: %d", rc);
	/* The child sent nothing: both connections still work here. (The
	 * server counts a connection once its thread has accepted it.) */
	wait_for((lineserver_get_stats(ls, &ss), ss.accepted == 2), 2000);
	ck_assert_uint_eq(ss.quits, 0);
	ck_assert_uint_eq(ss.open, 2);
	ck_assert(line_roundtrip(other_fd, "PING", "PONG"));
	ping(own);
	atomic_store(&h.state, 2);
	pthread_join(t, NULL);
	pool_put(pool, own, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).idle, 2);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

Suite *robust_suite(void)
{
	Suite *s = suite_create("robust");
	TCase *sig = tcase_create("signals");
	TCase *tm = tcase_create("time");
	TCase *stop = tcase_create("stop");
	TCase *fk = tcase_create("fork");

	tcase_set_timeout(sig, 30);
	tcase_add_checked_fixture(sig, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(sig, library_threads_block_signals);
	tcase_add_test(sig, signal_storm_keeps_drain_deadline);
	tcase_add_test(sig, signal_storm_destroy_keeps_deadline);
	suite_add_tcase(s, sig);
	tcase_set_timeout(tm, 30);
	tcase_add_checked_fixture(tm, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(tm, deadline_ms_bounds);
	tcase_add_test(tm, lifetime_jitter_spreads_long_lives);
	tcase_add_test(tm, destroy_waits_with_largest_close_timeout);
	tcase_add_test(tm, maintain_next_ms_with_largest_timeouts);
	suite_add_tcase(s, tm);
	tcase_set_timeout(stop, 30);
	tcase_add_checked_fixture(stop, fixture_test_setup, fixture_test_teardown);
	tcase_add_loop_test(stop, destroy_cancels_refill_connect, 0, 2);
	suite_add_tcase(s, stop);
	tcase_set_timeout(fk, 30);
	tcase_add_checked_fixture(fk, fixture_test_setup, fixture_test_teardown);
	tcase_add_loop_test(fk, fork_child_keeps_no_parent_socket, 0, 2);
	tcase_add_test(fk, fork_child_keeps_no_refill_socket);
	tcase_add_test(fk, fork_child_without_descriptors);
	tcase_add_test(fk, fork_child_drops_other_threads_connections);
	suite_add_tcase(s, fk);
	return s;
}
