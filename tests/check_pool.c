/*
 * pool_get / pool_put against a real line server: reuse, stale
 * connections, caps and waiting, connect failures, misuse, threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixtures.h"
#include "suites.h"

START_TEST(reuse_one_connection)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with(NULL);
	struct lineserver_stats ss;
	int i, first_fd = -1;

	for (i = 0; i < 50; i++) {
		pool_conn_t *c;

		ck_assert_int_eq(pool_get(pool, ep, &c), 0);
		ck_assert_int_eq(pool_conn_reused(c), i > 0);
		if (i == 0)
			first_fd = pool_conn_fd(c);
		ck_assert_int_eq(pool_conn_fd(c), first_fd);
		ck_assert_str_eq(pool_conn_endpoint(c), ep);
		ping(c);
		pool_put(pool, c, POOL_REUSE);
	}
	lineserver_get_stats(ls, &ss);
	ck_assert_uint_eq(ss.accepted, 1);
	ck_assert_uint_eq(ss.requests, 50);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 1);
	ck_assert_uint_eq(stats_of(pool, ep).reuses, 49);
	ck_assert_uint_eq(stats_of(pool, ep).gets, 50);
	ck_assert_uint_eq(stats_of(pool, NULL).idle, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* The server closes (restart) while the connection is idle: the next
 * pool_get notices and hands out a fresh, working one. */
START_TEST(stale_connection_is_replaced)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("watch_idle", "off", NULL);
	pool_conn_t *c;

	/* watch_idle off: this is the check pool_get makes itself (the
	 * watch would close it first; see check_ports.c). */

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	lineserver_close_all(ls);
	usleep(20000);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).stale_dropped, 1);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 2);
	/* The dead one was in CLOSE_WAIT: closing it left no TIME_WAIT here. */
	ck_assert_uint_eq(tw_client(ep), 0);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Unexpected bytes waiting on an idle connection: it is not handed out. */
START_TEST(unexpected_bytes_mean_dead)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with(NULL);
	pool_conn_t *c;
	int fd;

	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	fd = pool_conn_fd(c);
	/* Ask for a reply and give the connection back without reading it. */
	ck_assert_int_eq(send(fd, "PING\n", 5, MSG_NOSIGNAL), 5);
	usleep(20000);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).stale_dropped, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(max_idle_caps_kept_connections)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_idle", "2", "teardown", "abort",
				 "idle_shrink_ms", "0", NULL);
	pool_conn_t *c[4];
	int i;

	for (i = 0; i < 4; i++)
		ck_assert_int_eq(pool_get(pool, ep, &c[i]), 0);
	for (i = 0; i < 4; i++)
		pool_put(pool, c[i], POOL_REUSE);
	/* idle_shrink_ms = 0: the surplus goes at pool_put. */
	ck_assert_uint_eq(stats_of(pool, ep).idle, 2);
	ck_assert_uint_eq(stats_of(pool, ep).retired_abort, 2);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(max_active_times_out)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_active", "2", "acquire_timeout_ms", "100", NULL);
	pool_conn_t *a, *b, *c = NULL;
	long long t0;

	ck_assert_int_eq(pool_get(pool, ep, &a), 0);
	ck_assert_int_eq(pool_get(pool, ep, &b), 0);
	t0 = mono_ms();
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_EBUSY);
	ck_assert_int_ge(mono_ms() - t0, 90);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(stats_of(pool, ep).waits, 1);
	ck_assert_uint_eq(stats_of(pool, ep).wait_timeouts, 1);
	pool_put(pool, a, POOL_REUSE);
	pool_put(pool, b, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Blocked by max_active while max_total has room: still a bounded wait
 * (this used to spin on the max_total re-check). */
START_TEST(max_active_under_max_total_times_out)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_active", "1", "max_total", "10",
				 "acquire_timeout_ms", "200", NULL);
	pool_conn_t *a, *b = NULL;
	long long t0, took;

	ck_assert_int_eq(pool_get(pool, ep, &a), 0);
	t0 = mono_ms();
	ck_assert_int_eq(pool_get(pool, ep, &b), POOL_EBUSY);
	took = mono_ms() - t0;
	ck_assert_msg(took >= 190 && took < 3000, "waited %lld ms", took);
	pool_put(pool, a, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

struct holder {
	pool_t *pool;
	pool_conn_t *conn;
	int delay_ms;
	pool_put_mode mode;
};

static void *put_later(void *arg)
{
	struct holder *h = arg;

	usleep((useconds_t)h->delay_ms * 1000);
	pool_put(h->pool, h->conn, h->mode);
	return NULL;
}

/* A waiter gets the connection another thread gives back. */
START_TEST(waiter_gets_returned_connection)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_active", "1", "acquire_timeout_ms", "5000", NULL);
	struct holder h = { .pool = pool, .delay_ms = 100, .mode = POOL_REUSE };
	pthread_t t;
	pool_conn_t *c;
	int fd;

	ck_assert_int_eq(pool_get(pool, ep, &h.conn), 0);
	fd = pool_conn_fd(h.conn);
	pthread_create(&t, NULL, put_later, &h);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_fd(c), fd);
	ck_assert_int_eq(pool_conn_reused(c), 1);
	ping(c);
	pthread_join(t, NULL);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).waits, 1);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* A connection handed straight to a waiter is checked like an idle one:
 * here the server closed it and the holder (wrongly) gave it back as
 * healthy; the waiter gets a fresh one instead. */
START_TEST(handed_over_connection_is_validated)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	/* watch_idle off: the watch would mark it, and the put retire it. */
	pool_t *pool = pool_with("max_active", "1", "acquire_timeout_ms", "5000",
				 "watch_idle", "off", NULL);
	struct holder h = { .pool = pool, .delay_ms = 200, .mode = POOL_REUSE };
	pthread_t t;
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &h.conn), 0);
	lineserver_close_all(ls);
	pthread_create(&t, NULL, put_later, &h);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pthread_join(t, NULL);
	ck_assert_int_eq(pool_conn_reused(c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).stale_dropped, 1);
	ck_assert_uint_eq(stats_of(pool, ep).waits, 1);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* A retired connection frees its slot: the waiter connects anew. */
START_TEST(waiter_gets_freed_slot)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with("max_active", "1", "acquire_timeout_ms", "5000", NULL);
	struct holder h = { .pool = pool, .delay_ms = 100, .mode = POOL_RETIRE };
	pthread_t t;
	pool_conn_t *c;

	ck_assert_int_eq(pool_get(pool, ep, &h.conn), 0);
	pthread_create(&t, NULL, put_later, &h);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 0);
	ping(c);
	pthread_join(t, NULL);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, ep).connects, 2);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* max_total: an idle connection to another endpoint is evicted for a
 * caller that needs a new one. */
START_TEST(max_total_evicts_idle_elsewhere)
{
	struct lineserver *a = server_start(LS_QUIT_CLOSE);
	struct lineserver *b = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("max_total", "1", "acquire_timeout_ms", "100", NULL);
	pool_conn_t *c, *d;

	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(a), &c), 0);
	/* While a's connection is in use, b cannot get a slot. */
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(b), &d), POOL_EBUSY);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(b), &d), 0);
	ping(d);
	pool_put(pool, d, POOL_REUSE);
	ck_assert_uint_eq(stats_of(pool, lineserver_endpoint(a)).idle, 0);
	ck_assert_uint_eq(stats_of(pool, lineserver_endpoint(a)).closed, 1);
	pool_destroy(pool);
	lineserver_stop(a);
	lineserver_stop(b);
}
END_TEST

/* A port that is bound but not listening refuses connections. */
static int refusing_port(int *holder)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);

	*holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(*holder, 0);
	ck_assert_int_eq(bind(*holder, (struct sockaddr *)&sa, len), 0);
	ck_assert_int_eq(getsockname(*holder, (struct sockaddr *)&sa, &len), 0);
	return ntohs(sa.sin_port);
}

START_TEST(refused_connection)
{
	pool_t *pool = pool_with(NULL);
	pool_conn_t *c = NULL;
	char ep[64];
	int holder;

	snprintf(ep, sizeof(ep), "127.0.0.1:%d", refusing_port(&holder));
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_ECONNREFUSED);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(stats_of(pool, ep).connect_failures, 1);
	ck_assert_uint_eq(stats_of(pool, NULL).in_use, 0);
	pool_destroy(pool);
	close(holder);
}
END_TEST

/* A server whose accept queue is full drops SYNs: connect_timeout_ms. */
START_TEST(connect_timeout)
{
	struct lineserver_opts o = { .backlog = 1 };
	struct lineserver *ls = lineserver_start(&o);
	pool_t *pool = pool_with("connect_timeout_ms", "200", NULL);
	const char *ep;
	int fill[8], i, nfill = 0, rc = 0;
	pool_conn_t *c = NULL;
	long long t0;

	ck_assert_ptr_nonnull(ls);
	ep = lineserver_endpoint(ls);
	lineserver_pause_accept(ls, true);
	/* Fill the accept queue (backlog + 1 entries on Linux). */
	for (i = 0; i < 8 && rc != POOL_ETIMEDOUT; i++) {
		pool_conn_t *f;

		rc = pool_get(pool, ep, &f);
		if (rc == 0) {
			fill[nfill++] = dup(pool_conn_fd(f));
			pool_put(pool, f, POOL_BROKEN);
		}
	}
	t0 = mono_ms();
	ck_assert_int_eq(pool_get(pool, ep, &c), POOL_ETIMEDOUT);
	ck_assert_int_ge(mono_ms() - t0, 190);
	ck_assert_ptr_null(c);
	pool_destroy(pool);
	for (i = 0; i < nfill; i++)
		close(fill[i]);
	lineserver_stop(ls);
}
END_TEST

START_TEST(unix_socket_endpoint)
{
	char dir[] = "/tmp/tcpool-test-XXXXXX", path[128];
	struct lineserver_opts o = { .family = AF_UNIX };
	struct lineserver *ls;
	pool_t *pool = pool_with(NULL);
	pool_conn_t *c;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s", dir);
	o.unix_path = path;
	ls = lineserver_start(&o);
	ck_assert_ptr_nonnull(ls);
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(ls), &c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(ls), &c), 0);
	ck_assert_int_eq(pool_conn_reused(c), 1);
	pool_put(pool, c, POOL_RETIRE);
	pool_destroy(pool);
	lineserver_stop(ls);
	rmdir(dir);
}
END_TEST

/* A unix server with a full backlog: connect() says EAGAIN, not "in
 * progress"; the pool retries until connect_timeout_ms, and never hands
 * out an unconnected socket. */
START_TEST(unix_full_backlog_times_out)
{
	char dir[] = "/tmp/tcpool-test-XXXXXX", path[128];
	struct lineserver_opts o = { .family = AF_UNIX, .backlog = 1 };
	pool_t *pool = pool_with("connect_timeout_ms", "200", NULL);
	struct lineserver *ls;
	pool_conn_t *held[8];
	int i, n = 0, rc = 0;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s", dir);
	o.unix_path = path;
	ls = lineserver_start(&o);
	ck_assert_ptr_nonnull(ls);
	lineserver_pause_accept(ls, true);
	while (n < 8) {
		rc = pool_get(pool, lineserver_endpoint(ls), &held[n]);
		if (rc)
			break;
		n++;
	}
	ck_assert_int_eq(rc, POOL_ETIMEDOUT);
	ck_assert_int_lt(n, 8);
	for (i = 0; i < n; i++)
		pool_put(pool, held[i], POOL_BROKEN);
	pool_destroy(pool);
	lineserver_stop(ls);
	rmdir(dir);
}
END_TEST

START_TEST(ipv6_endpoint)
{
	struct lineserver_opts o = { .family = AF_INET6 };
	struct lineserver *ls = lineserver_start(&o);
	pool_t *pool = pool_with(NULL);
	pool_conn_t *c;

	if (!ls) { /* no IPv6 on this machine */
		pool_destroy(pool);
		return;
	}
	ck_assert_int_eq(pool_get(pool, lineserver_endpoint(ls), &c), 0);
	ping(c);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

START_TEST(misuse_is_detected)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_t *pool = pool_with(NULL), *other = pool_with(NULL);
	pool_conn_t *c = NULL;

	ck_assert_int_eq(pool_get(NULL, ep, &c), POOL_EINVAL);
	ck_assert_int_eq(pool_get(pool, NULL, &c), POOL_EINVAL);
	ck_assert_int_eq(pool_get(pool, ep, NULL), POOL_EINVAL);
	ck_assert_int_eq(pool_create(NULL, NULL), POOL_EINVAL);
	ck_assert_int_eq(pool_conn_fd(NULL), -1);
	pool_put(pool, NULL, POOL_REUSE);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(other, c, POOL_REUSE);        /* wrong pool: ignored */
	pool_put(pool, c, (pool_put_mode)42);  /* bad mode: ignored */
	ck_assert_uint_eq(stats_of(pool, ep).in_use, 1);
	pool_put(pool, c, POOL_REUSE);
	pool_put(pool, c, POOL_REUSE);         /* double put: ignored */
	ck_assert_uint_eq(stats_of(pool, ep).idle, 1);
	ck_assert_uint_eq(stats_of(pool, NULL).misuse, 3);
	ck_assert_uint_eq(stats_of(other, NULL).misuse, 1);
	pool_destroy(other);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

/* Rules across keys are checked when the pool is made. */
START_TEST(create_rejects_incomplete_config)
{
	pool_config_t *cfg = config_with("teardown", "peer-first", NULL);
	pool_t *pool = (pool_t *)0x1;

	ck_assert_int_eq(pool_create(&pool, cfg), POOL_ECONFIG);
	ck_assert_ptr_null(pool);
	pool_config_free(cfg);
}
END_TEST

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

/* pool_create(NULL): defaults, then the file named by $TCPOOL_CONFIG. */
START_TEST(create_reads_env_config)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	char dir[] = "/tmp/tcpool-env-XXXXXX", path[128];
	pool_t *pool = NULL;
	pool_conn_t *c;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/tcpool.conf", dir);
	write_text(path, "[pool]\nmax_idle = 0\nidle_shrink_ms = 0\n"
		   "teardown = abort\n");
	setenv("TCPOOL_CONFIG", path, 1);
	ck_assert_int_eq(pool_create(&pool, NULL), 0);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	pool_put(pool, c, POOL_REUSE); /* max_idle 0: retired, by abort */
	ck_assert_uint_eq(stats_of(pool, ep).retired_abort, 1);
	pool_destroy(pool);
	write_text(path, "[pool]\nmax_idle = ten\n");
	ck_assert_int_eq(pool_create(&pool, NULL), POOL_ECONFIG);
	unlink(path);
	ck_assert_int_eq(pool_create(&pool, NULL), POOL_ESYS);
	ck_assert_ptr_null(pool);
	unsetenv("TCPOOL_CONFIG");
	rmdir(dir);
	lineserver_stop(ls);
}
END_TEST

/* pool_conn_setting: an endpoint's effective value of any key, as the
 * file writes it: its section over [pool], pool-wide keys from [pool]. */
START_TEST(conn_setting_reads_effective_values)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	const char *ep = lineserver_endpoint(ls);
	pool_config_t *cfg = config_with("max_total", "7", "tls_ca_file", "/a/ca.pem",
					 "close_request", "\"QUIT\\r\\n\"", NULL);
	pool_conn_t *c;
	pool_t *pool;
	char buf[64], err[256];

	ck_assert_int_eq(pool_config_set(cfg, ep, "max_idle", "3", err, sizeof(err)), 0);
	ck_assert_int_eq(pool_config_set(cfg, ep, "tls", "on", err, sizeof(err)), 0);
	ck_assert_int_eq(pool_create(&pool, cfg), 0);
	pool_config_free(cfg);
	ck_assert_int_eq(pool_get(pool, ep, &c), 0);
	ck_assert_int_eq(pool_conn_setting(c, "max_idle", buf, sizeof(buf)), 1);
	ck_assert_str_eq(buf, "3");
	ck_assert_int_eq(pool_conn_setting(c, "max_total", buf, sizeof(buf)), 1);
	ck_assert_str_eq(buf, "7");
	ck_assert_int_eq(pool_conn_setting(c, "tls", buf, sizeof(buf)), 2);
	ck_assert_str_eq(buf, "on");
	ck_assert_int_eq(pool_conn_setting(c, "tls_verify", buf, sizeof(buf)), 2);
	ck_assert_str_eq(buf, "on");
	ck_assert_int_eq(pool_conn_setting(c, "tls_ca_file", buf, sizeof(buf)), 9);
	ck_assert_str_eq(buf, "/a/ca.pem");
	ck_assert_int_eq(pool_conn_setting(c, "tls_server_name", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "");
	ck_assert_int_eq(pool_conn_setting(c, "close_request", buf, sizeof(buf)), 10);
	ck_assert_str_eq(buf, "\"QUIT\\r\\n\"");
	ck_assert_int_eq(pool_conn_setting(c, "teardown", buf, sizeof(buf)), 5);
	ck_assert_str_eq(buf, "close");
	/* snprintf's contract: the length is what it would take */
	ck_assert_int_eq(pool_conn_setting(c, "tls_ca_file", buf, 4), 9);
	ck_assert_str_eq(buf, "/a/");
	ck_assert_int_eq(pool_conn_setting(c, "tls_ca_file", NULL, 0), 9);
	/* a close_request never half-escaped */
	ck_assert_int_eq(pool_conn_setting(c, "close_request", buf, 8), 10);
	ck_assert_str_eq(buf, "");
	ck_assert_int_eq(pool_conn_setting(c, "no_such_key", buf, sizeof(buf)),
			 POOL_EINVAL);
	ck_assert_int_eq(pool_conn_setting(NULL, "tls", buf, sizeof(buf)), POOL_EINVAL);
	ck_assert_int_eq(pool_conn_setting(c, NULL, buf, sizeof(buf)), POOL_EINVAL);
	ck_assert_int_eq(pool_conn_setting(c, "tls", NULL, 4), POOL_EINVAL);
	pool_put(pool, c, POOL_REUSE);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

struct hammer {
	pool_t *pool;
	const char *ep;
	int ops;
	int failures;
};

static void *hammer_thread(void *arg)
{
	struct hammer *h = arg;
	int i;

	for (i = 0; i < h->ops; i++) {
		pool_conn_t *c;

		if (pool_get(h->pool, h->ep, &c) != 0) {
			h->failures++;
			continue;
		}
		if (!line_roundtrip(pool_conn_fd(c), "PING", "PONG"))
			h->failures++;
		pool_put(h->pool, c, i % 7 == 0 ? POOL_RETIRE :
				     i % 13 == 0 ? POOL_BROKEN : POOL_REUSE);
	}
	return NULL;
}

/* Many threads on one pool: no deadlock, every request answered, and the
 * counters add up: opened = closed + idle + in use. */
START_TEST(threads_hammer)
{
	struct lineserver *ls = server_start(LS_QUIT_CLOSE);
	pool_t *pool = pool_with("max_active", "4", "max_idle", "4",
				 "acquire_timeout_ms", "10000",
				 "teardown", "peer-first",
				 "close_request", "\"quit\\n\"", NULL);
	struct hammer h[8];
	pthread_t t[8];
	pool_stats_t st;
	int i;

	for (i = 0; i < 8; i++) {
		h[i] = (struct hammer){ pool, lineserver_endpoint(ls), 300, 0 };
		pthread_create(&t[i], NULL, hammer_thread, &h[i]);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(h[i].failures, 0);
	}
	wait_drains(pool, 5000);
	st = stats_of(pool, NULL);
	ck_assert_uint_eq(st.gets, 8 * 300);
	ck_assert_uint_eq(st.connects, st.closed + st.idle + st.in_use);
	ck_assert_uint_eq(st.in_use, 0);
	ck_assert_uint_le(st.idle, 4);
	pool_destroy(pool);
	lineserver_stop(ls);
}
END_TEST

Suite *pool_suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("get-put");

	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, fixture_test_setup, fixture_test_teardown);
	tcase_add_test(tc, reuse_one_connection);
	tcase_add_test(tc, stale_connection_is_replaced);
	tcase_add_test(tc, unexpected_bytes_mean_dead);
	tcase_add_test(tc, max_idle_caps_kept_connections);
	tcase_add_test(tc, max_active_times_out);
	tcase_add_test(tc, max_active_under_max_total_times_out);
	tcase_add_test(tc, waiter_gets_returned_connection);
	tcase_add_test(tc, waiter_gets_freed_slot);
	tcase_add_test(tc, handed_over_connection_is_validated);
	tcase_add_test(tc, max_total_evicts_idle_elsewhere);
	tcase_add_test(tc, refused_connection);
	tcase_add_test(tc, connect_timeout);
	tcase_add_test(tc, unix_socket_endpoint);
	tcase_add_test(tc, unix_full_backlog_times_out);
	tcase_add_test(tc, ipv6_endpoint);
	tcase_add_test(tc, misuse_is_detected);
	tcase_add_test(tc, create_rejects_incomplete_config);
	tcase_add_test(tc, create_reads_env_config);
	tcase_add_test(tc, conn_setting_reads_effective_values);
	tcase_add_test(tc, threads_hammer);
	suite_add_tcase(s, tc);
	return s;
}
