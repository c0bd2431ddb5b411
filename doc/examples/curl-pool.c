/*
 * curl-pool: libcurl's easy interface with tcpool's sockets.
 *
 * libcurl has its own connection cache, and it keeps it: a handle reuses
 * its connections across curl_easy_perform() calls whatever we do. What
 * tcpool can add is who opens the sockets and how they end. Four modes:
 *
 *   -m socket  any libcurl (the default): tcpool opens each socket
 *              (pool_socket in OPENSOCKETFUNCTION: the endpoint's socket
 *              options, counted under its caps), curl connects it and
 *              caches the connection as usual, and CLOSESOCKETFUNCTION
 *              gives it back to tcpool (pool_put POOL_RETIRE), which
 *              retires it by the endpoint's policy: peer-first with an
 *              HTTP "Connection: close" request by default, so nginx
 *              closes first and holds the TIME_WAIT, the client none.
 *   -m pool    libcurl >= 8.0: full reuse. tcpool connects the sockets
 *              (pool_get in OPENSOCKETFUNCTION, CURL_SOCKOPT_ALREADY_
 *              CONNECTED) and takes them back in CLOSESOCKETFUNCTION
 *              (pool_put): sockets outlive curl handles, and are retired
 *              by the endpoint's policy.
 *   -m own     curl alone, the baseline: curl connects and caches, and
 *              closes with a plain close(): the client holds TIME_WAIT.
 *   -m abort   the baseline without tcpool: curl connects and caches;
 *              CLOSESOCKETFUNCTION ends each socket with an RST
 *              (SO_LINGER {1,0}) by hand: no TIME_WAIT on either side.
 *              -m socket -p abort does the same through tcpool.
 *
 * Why "pool" needs 8.0: libcurl 7.88 calls connect() even on a socket its
 * SOCKOPTFUNCTION said was connected, gets EISCONN and fails the transfer
 * ("Couldn't connect to server"): curl issue #10626, fixed in 8.0 by pull
 * request #10648. "socket" hands curl sockets it connects itself, which
 * every libcurl does; the cost is that connections live and die with
 * curl's cache (its handle), not tcpool's.
 *
 * Usage: curl-pool [-m socket|pool|own|abort] [-n REQUESTS] [-H HANDLES]
 *                  [-k K] [-p POLICY] HOST:PORT
 *   -H HANDLES the requests are spread over this many easy handles, one
 *              after the other (default 1). curl's cache lives and dies
 *              with its handle; tcpool's pool outlives them.
 *   -k K       every K-th request is made with CURLOPT_FORBID_REUSE, so
 *              curl closes (and, in socket, abort and pool modes,
 *              retires) that connection: the churn a real client sees
 *              from servers' keep-alive limits. 0 (default): curl keeps
 *              its connection.
 *   -p POLICY  tcpool's teardown policy in socket and pool modes:
 *              peer-first (default), abort or close.
 *
 * Ends on one line: "1000 requests, 0 failed, client TIME_WAIT 0".
 * Exit status 0 when no request failed, 77 when the mode needs a newer
 * libcurl (the test suite's "skipped").
 */
#include <curl/curl.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tcpool.h"

#define MAX_FD 1024    /* the fd -> connection map's size */
#define MAX_PENDING 8  /* sockets curl closes within one transfer */
#define EXIT_SKIP 77

enum mode { MODE_OWN, MODE_ABORT, MODE_POOL, MODE_SOCKET };

struct app {
	enum mode mode;
	const char *endpoint;       /* "127.0.0.1:8080" */
	const char *policy;         /* socket and pool modes: teardown */
	char url[300];
	int requests;
	int handles;                /* easy handles, one after the other */
	int forbid_every;
	pool_t *pool;               /* pool and socket modes */
	/* Which pool connection a socket curl holds belongs to. One thread
	 * uses this handle: no lock. With a handle per thread, guard it. */
	pool_conn_t *conn_of[MAX_FD];
	int in_transfer;            /* inside curl_easy_perform() */
	/* socket mode: closed by curl during the transfer under way, put
	 * back once its outcome is known */
	pool_conn_t *pending[MAX_PENDING];
	int npending;
};

/* curl made the socket non-blocking. The pool's own I/O does not care
 * (it uses MSG_DONTWAIT), but a socket kept for pool_get is handed to
 * its next user as it is, and pool_get promises a blocking one. */
static void clear_nonblock(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags != -1)
		fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
}

/* The pool connection of a socket curl gives up, forgotten; NULL when it
 * is not one of ours. */
static pool_conn_t *take_conn(struct app *app, curl_socket_t fd)
{
	pool_conn_t *conn = fd >= 0 && fd < MAX_FD ? app->conn_of[fd] : NULL;

	if (conn)
		app->conn_of[fd] = NULL;
	return conn;
}

/* Remember which pool connection curl now holds as fd; false (and the
 * connection put back) when fd does not fit the map. */
static int map_conn(struct app *app, pool_conn_t *conn, pool_put_mode mode)
{
	int fd = pool_conn_fd(conn);

	if (fd >= MAX_FD) {
		pool_put(app->pool, conn, mode);
		return 0;
	}
	app->conn_of[fd] = conn;
	return 1;
}

/* ---- pool mode: tcpool's sockets under curl ---------------------------- */

/* curl wants a socket for a new connection. The address curl resolved is
 * the endpoint's (the URL names it), so ask the pool for the endpoint: an
 * idle connection, or a new one connected by the pool. */
static curl_socket_t pool_open(void *clientp, curlsocktype purpose,
			       struct curl_sockaddr *addr)
{
	struct app *app = clientp;
	pool_conn_t *conn;
	int fd, rc;

	(void)addr;
	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKET_BAD;
	rc = pool_get(app->pool, app->endpoint, &conn);
	if (rc) {
		fprintf(stderr, "curl-pool: pool_get: %s\n", pool_strerror(rc));
		return CURL_SOCKET_BAD;
	}
	fd = pool_conn_fd(conn);
	return map_conn(app, conn, POOL_REUSE) ? fd : CURL_SOCKET_BAD;
}

/* The socket is connected already: curl >= 8.0 then skips connect(). */
static int pool_sockopt(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
	(void)clientp;
	(void)fd;
	(void)purpose;
	return CURL_SOCKOPT_ALREADY_CONNECTED;
}

/* curl is done with the socket: only now may it go back to the pool.
 * Not after curl_easy_perform(): curl's cache still holds the connection
 * then, and would use it under another pool_get's owner. */
static int pool_close(void *clientp, curl_socket_t fd)
{
	struct app *app = clientp;
	pool_conn_t *conn = take_conn(app, fd);

	if (!conn)
		return close(fd); /* not one of ours */
	clear_nonblock(fd);
	/* Outside a transfer (curl_easy_cleanup) the connection sits
	 * between two HTTP exchanges: healthy, kept for the next handle.
	 * Inside one, curl closes on an error, on the server's "Connection:
	 * close", on FORBID_REUSE or to make room in its cache, and does not
	 * tell us which: BROKEN sends no close request (under peer-first the
	 * fallback, abort here, applies: no TIME_WAIT either way). */
	pool_put(app->pool, conn, app->in_transfer ? POOL_BROKEN : POOL_REUSE);
	return 0;
}

/* ---- socket mode: tcpool opens, curl connects, tcpool retires ----------- */

/* curl wants a socket for a new connection, to the address its resolver
 * chose (of the endpoint the URL names): a new one from the pool, with
 * the endpoint's options, which curl then connects itself. Never blocks:
 * at a cap pool_socket fails at once (POOL_EBUSY) and so does the
 * transfer. */
static curl_socket_t socket_open(void *clientp, curlsocktype purpose,
				 struct curl_sockaddr *addr)
{
	struct app *app = clientp;
	pool_conn_t *conn;
	int rc;

	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKET_BAD;
	rc = pool_socket(app->pool, app->endpoint, addr->family, &conn);
	if (rc) {
		fprintf(stderr, "curl-pool: pool_socket: %s\n", pool_strerror(rc));
		return CURL_SOCKET_BAD;
	}
	return map_conn(app, conn, POOL_RETIRE) ? pool_conn_fd(conn) : CURL_SOCKET_BAD;
}

/* Not connected yet: curl connects it (any libcurl). */
static int socket_sockopt(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
	(void)clientp;
	(void)fd;
	(void)purpose;
	return CURL_SOCKOPT_OK;
}

/* curl drops the connection from its cache: give it back to be retired
 * by the policy. Not right away inside a transfer: curl closes there on
 * FORBID_REUSE, on the server's "Connection: close" (both after a whole
 * response), or on an error (in the middle of one), and does not say
 * which. So the connection waits for curl_easy_perform's result (put_
 * pending): RETIRE after a good transfer, BROKEN (no close request)
 * after a failed one. curl no longer uses the descriptor, and it stays
 * open until then, so no new socket gets its number meanwhile. Outside a
 * transfer (curl_easy_cleanup) it sits between two requests: RETIRE. */
static int socket_close(void *clientp, curl_socket_t fd)
{
	struct app *app = clientp;
	pool_conn_t *conn = take_conn(app, fd);

	if (!conn)
		return close(fd); /* not one of ours */
	clear_nonblock(fd);
	if (!app->in_transfer)
		pool_put(app->pool, conn, POOL_RETIRE);
	else if (app->npending < MAX_PENDING)
		app->pending[app->npending++] = conn;
	else
		pool_put(app->pool, conn, POOL_BROKEN);
	return 0;
}

/* After curl_easy_perform(): retire what curl closed during it. */
static void put_pending(struct app *app, CURLcode rc)
{
	while (app->npending > 0)
		pool_put(app->pool, app->pending[--app->npending],
			 rc == CURLE_OK ? POOL_RETIRE : POOL_BROKEN);
}

/* ---- abort mode: curl's sockets, tcpool's abort policy by hand ---------- */

static int abort_close(void *clientp, curl_socket_t fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	(void)clientp;
	/* An RST instead of a FIN: nobody holds TIME_WAIT. curl closes only
	 * between requests or after a failed one, so no data is lost. */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	return close(fd);
}

/* ---- the transfers ------------------------------------------------------ */

struct body {
	char buf[64];
	size_t len;
};

static size_t on_data(char *data, size_t size, size_t n, void *ud)
{
	struct body *b = ud;
	size_t len = size * n, room = sizeof(b->buf) - 1 - b->len;

	memcpy(b->buf + b->len, data, len < room ? len : room);
	b->len += len < room ? len : room;
	b->buf[b->len] = '\0';
	return len;
}

static int setup_handle(CURL *h, struct app *app, struct body *b)
{
	int bad = 0;

	bad |= curl_easy_setopt(h, CURLOPT_URL, app->url);
	bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
	bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
	if (app->mode == MODE_POOL) {
		bad |= curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, pool_open);
		bad |= curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, app);
		bad |= curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, pool_sockopt);
		bad |= curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, pool_close);
		bad |= curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, app);
	} else if (app->mode == MODE_SOCKET) {
		bad |= curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, socket_open);
		bad |= curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, app);
		bad |= curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, socket_sockopt);
		bad |= curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, socket_close);
		bad |= curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, app);
	} else if (app->mode == MODE_ABORT) {
		bad |= curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, abort_close);
	}
	return bad ? -1 : 0;
}

/* One GET; 0 when nginx answered 200 "ok". */
static int get(CURL *h, struct app *app, struct body *b, int i, long *connects)
{
	long forbid = app->forbid_every && (i + 1) % app->forbid_every == 0;
	long status = 0, n = 0;
	CURLcode rc;

	b->len = 0;
	curl_easy_setopt(h, CURLOPT_FORBID_REUSE, forbid);
	app->in_transfer = 1;
	rc = curl_easy_perform(h);
	app->in_transfer = 0;
	put_pending(app, rc);
	if (rc != CURLE_OK) {
		fprintf(stderr, "curl-pool: request %d: %s\n", i, curl_easy_strerror(rc));
		return -1;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &n);
	*connects += n;
	return status == 200 && strcmp(b->buf, "ok\n") == 0 ? 0 : -1;
}

/* ---- the pool ------------------------------------------------------------- */

static pool_t *make_pool(const struct app *app)
{
	/* peer-first: ask nginx to close first, with a request it answers
	 * and then closes after (HTTP/1.1 "Connection: close"). */
	const char *kv[][2] = {
		{ "teardown", app->policy },
		{ "close_request",
		  "\"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n\"" },
		{ "fallback", "abort" },
	};
	pool_config_t *cfg = pool_config_new();
	pool_t *pool = NULL;
	char err[256];
	size_t i;
	int rc;

	if (!cfg)
		return NULL;
	for (i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
		if (pool_config_set(cfg, app->endpoint, kv[i][0], kv[i][1], err,
				    sizeof(err))) {
			fprintf(stderr, "curl-pool: %s\n", err);
			goto out;
		}
	}
	rc = pool_create(&pool, cfg);
	if (rc)
		fprintf(stderr, "curl-pool: pool_create: %s\n", pool_strerror(rc));
out:
	pool_config_free(cfg);
	return pool;
}

/* ---- main ------------------------------------------------------------------- */

static const char *const mode_names[] = { "own", "abort", "pool", "socket" };

static void usage(void)
{
	fprintf(stderr, "usage: curl-pool [-m socket|pool|own|abort] [-n REQUESTS] "
		"[-H HANDLES] [-k K] [-p POLICY] HOST:PORT\n");
	exit(2);
}

static void parse(int argc, char **argv, struct app *app)
{
	int c;

	app->mode = MODE_SOCKET;
	app->policy = "peer-first";
	app->requests = 1000;
	app->handles = 1;
	while ((c = getopt(argc, argv, "m:n:H:k:p:")) != -1) {
		if (c == 'm' && strcmp(optarg, "own") == 0)
			app->mode = MODE_OWN;
		else if (c == 'm' && strcmp(optarg, "abort") == 0)
			app->mode = MODE_ABORT;
		else if (c == 'm' && strcmp(optarg, "pool") == 0)
			app->mode = MODE_POOL;
		else if (c == 'm' && strcmp(optarg, "socket") == 0)
			app->mode = MODE_SOCKET;
		else if (c == 'n')
			app->requests = atoi(optarg);
		else if (c == 'H')
			app->handles = atoi(optarg);
		else if (c == 'k')
			app->forbid_every = atoi(optarg);
		else if (c == 'p')
			app->policy = optarg;
		else
			usage();
	}
	if (optind != argc - 1 || app->requests < 1 || app->handles < 1 ||
	    app->handles > app->requests || app->forbid_every < 0)
		usage();
	app->endpoint = argv[optind];
	snprintf(app->url, sizeof(app->url), "http://%s/", app->endpoint);
}

/* Pool mode needs curl >= 8.0 (see the top of this file). */
static int curl_can_take_connected_sockets(void)
{
	return curl_version_info(CURLVERSION_NOW)->version_num >= 0x080000;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Requests first to last on one handle; returns how many failed. */
static int run_handle(struct app *app, int first, int last, long *connects)
{
	struct body b;
	CURL *h = curl_easy_init();
	int i, failed = 0;

	if (!h || setup_handle(h, app, &b)) {
		curl_easy_cleanup(h);
		return last - first;
	}
	for (i = first; i < last; i++)
		failed += get(h, app, &b, i, connects) != 0;
	/* Closes the connection curl still caches, through pool_close,
	 * socket_close or abort_close: outside a transfer, so pool mode
	 * keeps it for the next handle, and socket mode retires it by the
	 * policy. */
	curl_easy_cleanup(h);
	return failed;
}

/* The requests, spread over app->handles handles one after the other
 * (as a program that makes a handle per task does); returns how many
 * failed. */
static int run(struct app *app, long *connects, double *secs)
{
	int k, per = app->requests / app->handles, failed = 0;
	double t0 = now_s();

	for (k = 0; k < app->handles; k++) {
		int last = k == app->handles - 1 ? app->requests : (k + 1) * per;

		failed += run_handle(app, k * per, last, connects);
	}
	*secs = now_s() - t0;
	return failed;
}

int main(int argc, char **argv)
{
	static struct app app;
	pool_tw_count_t tw = { 0 };
	pool_stats_t st = { 0 };
	long connects = 0;
	double secs = 0;
	int failed, tw_ok;

	parse(argc, argv, &app);
	if (app.mode == MODE_POOL && !curl_can_take_connected_sockets()) {
		printf("curl-pool: -m pool skipped: libcurl %s calls connect() on "
		       "sockets it is given connected (curl issue #10626, fixed "
		       "in 8.0); use -m socket\n",
		       curl_version_info(CURLVERSION_NOW)->version);
		return EXIT_SKIP;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 1;
	if (app.mode == MODE_POOL || app.mode == MODE_SOCKET) {
		app.pool = make_pool(&app);
		if (!app.pool)
			return 1;
	}
	failed = run(&app, &connects, &secs);
	if (app.pool)
		pool_stats(app.pool, app.endpoint, &st);
	/* Retires the connections the pool kept, by its policy; peer-first
	 * waits for nginx to close each one first. */
	pool_destroy(app.pool);
	curl_global_cleanup();
	usleep(100 * 1000); /* let the last FIN/ACK exchanges land */
	tw_ok = pool_tw_count(app.endpoint, &tw) == 0;
	printf("curl-pool -m %s: %.0f requests/s, %ld connections opened by "
	       "curl", mode_names[app.mode], app.requests / secs, connects);
	if (app.pool)
		printf(" (%llu connects by tcpool)", (unsigned long long)st.connects);
	if (tw_ok)
		printf(", server TIME_WAIT %u\n%d requests, %d failed, "
		       "client TIME_WAIT %u\n", (unsigned)tw.server,
		       app.requests, failed, (unsigned)tw.client);
	else
		printf("\n%d requests, %d failed, client TIME_WAIT n/a\n",
		       app.requests, failed);
	return failed ? 1 : 0;
}
