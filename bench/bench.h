/*
 * tcpool-bench: shared declarations of the bench program.
 *
 * The data flows one way: main.c reads the options and walks the plan;
 * netns.c gives the network (two namespaces joined by a veth pair, or
 * loopback); servers.c starts a server on a fresh port and stops it;
 * scenario.c, burst.c and overhead.c run the request loops in the
 * client's namespace and fill rows (libmc.c gives overhead.c
 * libmemcached's pool as a reference); report.c prints the rows and
 * writes the CSV, summary.c prints the result screen, plot.c draws.
 */
#ifndef TCPOOL_BENCH_H
#define TCPOOL_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "tcpool.h"

/* ---- time and statistics (stats.c) ---- */

/* Repetitions of the overhead and throughput runs, at most. */
#define BENCH_MAX_REPS 15

uint64_t bench_now_ns(void);
uint64_t bench_thread_cpu_ns(void);
/* Sort a[0..n) in place and return the p-th percentile (nearest rank). */
uint64_t percentile_ns(uint64_t *a, size_t n, double p);
/* Median of n doubles (sorts a copy in place). */
double median_d(double *a, size_t n);

/* Progress on stderr ("tcpool-bench: ..."), printf-style. */
void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- the network (netns.c) ---- */

enum side { SIDE_SERVER, SIDE_CLIENT };

struct netenv {
	bool isolated;          /* two namespaces joined by a veth pair */
	char ns[2][32];         /* namespace names, by enum side */
	int nsfd[2];            /* open /run/netns/NAME, -1 when not isolated */
	char server_addr[16];   /* where servers listen */
};

/* Remove namespaces left by earlier runs that died (name prefix, pid
 * no longer alive). */
void netenv_clean_stale(void);
/* Build the network: namespaces when isolated is asked for, loopback
 * otherwise. Returns 0 or -1 (message printed). */
int netenv_setup(struct netenv *e, bool isolated);
/* Delete what netenv_setup made. Safe to call twice. */
void netenv_teardown(struct netenv *e);
/* Run fn(arg) on a thread inside side's namespace (the caller's own
 * namespace when not isolated); returns fn's result. */
intptr_t netenv_run(const struct netenv *e, enum side side,
                    intptr_t (*fn)(void *), void *arg);
/* Write value to /proc/sys/PATH in side's namespace. 0 or -1. */
int netenv_sysctl(const struct netenv *e, enum side side,
                  const char *path, const char *value);
/* Read /proc/sys/PATH of side's namespace into buf. 0 or -1. */
int netenv_sysctl_get(const struct netenv *e, enum side side,
                      const char *path, char *buf, size_t len);

/* ---- child processes (spawn.c) ---- */

/* Start argv (no shell) with stdin from /dev/null, stdout and stderr to
 * out_path (inherited when NULL), an empty signal mask and SIGPIPE at its
 * default. 0, or -1 (message printed). */
int spawn_child(pid_t *pid, char *const argv[], const char *out_path);
/* Find prog in $PATH, then in the usual bin and sbin directories; its
 * path goes to out (when not NULL). */
bool find_program(const char *prog, char *out, size_t len);
/* Run argv and wait for it; output to /dev/null when quiet. Returns the
 * exit status, or -1. */
int run_cmd(char *const argv[], bool quiet);

/* ---- protocols (proto.c) ---- */

enum server_kind { SRV_BUILTIN, SRV_MEMCACHED, SRV_REDIS, SRV_NGINX, SRV_COUNT };

struct proto {
	const char *request;       /* one request */
	const char *close_request; /* config value: quoted, with escapes */
	/* Length of the first complete reply in buf[0..len), 0 if not yet. */
	size_t (*reply_len)(const char *buf, size_t len);
};

const struct proto *proto_for(enum server_kind kind);
/* Send the request and read one whole reply within timeout_ms.
 * 0, or -1 with errno (ETIMEDOUT, ECONNRESET, EPROTO for a reply that
 * does not parse, EPIPE for an early EOF). */
int proto_roundtrip(int fd, const struct proto *p, int timeout_ms);

/* ---- servers (servers.c) ---- */

struct server {
	enum server_kind kind;
	pid_t pid;               /* external server, 0 otherwise */
	struct lineserver *ls;   /* built-in server, NULL otherwise */
	char dir[64];            /* temp dir of an external server */
	uint16_t port;
	char endpoint[48];       /* "ADDR:PORT" as the client dials it */
};

const char *server_name(enum server_kind kind);
/* The program an external server needs, NULL for the built-in one. */
const char *server_program(enum server_kind kind);
/* True when the server can run here (its program is installed); looks
 * the program up once. */
bool server_available(enum server_kind kind);
/* Start kind on a port never used before in this run, wait until it
 * accepts. 0 or -1 (message printed). */
int server_start(struct server *s, enum server_kind kind,
                 const struct netenv *e);
/* Stop it (SIGTERM, wait, SIGKILL after 5 s), remove its temp dir. */
void server_stop(struct server *s);
/* Kill every external server still running (signal path). */
void servers_kill_all(void);

/* ---- results (one CSV row each) ---- */

struct row {
	char scenario[32];
	char server[16];
	char policy[16];       /* "close", "abort", "peer-first", "-" */
	int pooled;
	int threads;
	uint64_t requests;
	double seconds;
	double req_per_s;
	double p50_us, p99_us, put_p99_us;
	uint64_t connects, connect_errors, retired;
	long client_tw, server_tw;  /* -1: not counted */
	double ns_per_op;           /* overhead rows, else 0 */
	double ratio;               /* overhead rows: vs the floor, else 0 */
	double vs_libmc;            /* get+put rows: vs libmemcached's pair
	                             * of the same shape; 0 when none */
	double reps[BENCH_MAX_REPS]; /* overhead and throughput rows: each
	                             * repetition's ns_per_op or req/s */
	int nreps;
	long idle_shrink_ms;        /* burst rows: the value they ran with */
	int sources;                /* exhaust-sources rows: source_address
	                             * count, else 0 */
	bool failed;                /* an unexpected error happened */
	char note[96];
};

/* ---- scenarios (scenario.c) ---- */

enum policy { POL_CLOSE, POL_ABORT, POL_PEER_FIRST, POL_COUNT };
const char *policy_name(enum policy p);

struct scenario {
	const char *name;
	enum server_kind kind;
	enum policy policy;
	bool pooled;
	int threads;
	uint64_t requests;
	bool exhaust;           /* connect errors are expected, not failures */
	unsigned max_uses;      /* pooled: retire after this many uses */
};

/* Run sc against a fresh server, count TIME_WAIT after; fills *row.
 * Returns 0, or -1 when the scenario could not run at all. */
int scenario_run(const struct scenario *sc, const struct netenv *e,
                 struct row *row);
/* Run a request loop through a pool: cfg is applied to a new pool,
 * requests are split over threads. Used by overhead.c too. */
struct loop_result {
	uint64_t ok, errors, connect_errors, connects, retired;
	uint64_t fallbacks;
	double seconds;
	double p50_us, p99_us, put_p99_us;
	int first_error;        /* first pool_get or I/O error, 0 if none */
};
int pool_loop(pool_config_t *cfg, const char *endpoint,
              const struct proto *p, int threads, uint64_t requests,
              bool pooled, struct loop_result *out);
/* Apply key=value to cfg's [pool] section; prints the error. 0 or -1. */
int cfg_set(pool_config_t *cfg, const char *key, const char *value);
/* (run.c) Set teardown = p on cfg's [pool], with kind's close request
 * for peer-first. 0 or -1 (message printed). */
int cfg_policy(pool_config_t *cfg, enum policy p, enum server_kind kind);
/* Count the TIME_WAIT sockets of endpoint on each side until two counts
 * 50 ms apart agree. 0 or -1. */
int tw_settled(const struct netenv *e, const char *endpoint, long *client,
               long *server);

/* The ephemeral range of the port exhaustion runs: 100 ports. */
#define EXHAUST_RANGE "40000 40099"

/* ---- port exhaustion by source address (sources.c) ---- */

/* connect per request with close, 100 ports, 1, 2 and 4 source
 * addresses: rows "exhaust-sources", connections before the first
 * EADDRNOTAVAIL in connects. Returns how many rows, 0 when skipped (no
 * namespaces), -1 when none could run. */
int sources_run(const struct netenv *e, struct row *rows, int cap);

/* ---- bursts (burst.c) ---- */

struct burst_opts {
	int bursts;           /* bursts per policy and idle_shrink_ms value */
	int gap_ms;           /* pause between bursts, < idle_shrink_ms */
};

/* Per policy, idle_shrink_ms 0 and its default: bursts of BURST_THREADS
 * concurrent requests through a pool with max_idle = BURST_MAX_IDLE
 * against the built-in server. Appends rows; returns how many, 0 when
 * the library does not know idle_shrink_ms (message printed), -1 when
 * the runs could not be made. */
#define BURST_THREADS 64
#define BURST_MAX_IDLE 4
#define BURST_SHRINK_DEFAULT 5000
int burst_run(const struct burst_opts *o, const struct netenv *e,
              struct row *rows, int cap);
/* Why burst_run made no rows, "" when it made some or was not run. */
const char *burst_skipped(void);

/* ---- many requests in flight from one thread (async.c) ---- */

/* Requests in flight of the async rows; the threads rows run as many
 * threads with a blocking pool_get each. */
#define ASYNC_INFLIGHT { 1, 16, 64, 256 }
#define ASYNC_NVALUES 4

struct async_opts {
	uint64_t requests;    /* per row */
	unsigned max_uses;    /* of the pool: connects happen during a run */
};

/* Per value of ASYNC_INFLIGHT, rows "async-N" (one thread, an epoll
 * loop, pool_get_start/pool_get_finish) and "threads-N" (N threads,
 * pool_get), against the built-in server. Returns how many rows. */
int async_run(const struct async_opts *o, const struct netenv *e,
              struct row *rows, int cap);

/* ---- overhead (overhead.c) ---- */

struct overhead_opts {
	int reps;             /* repetitions of the pairs; medians reported */
	int tput_reps;        /* repetitions of the throughput loops */
	uint64_t pair_ops;    /* get+put pairs per thread per rep */
	uint64_t tput_reqs;   /* requests per throughput rep (raw, pool) */
	uint64_t cpr_reqs;    /* requests per connect-per-request rep */
};

/* Append the overhead and throughput rows to rows (capacity cap);
 * returns how many were added, or -1 when none could be. *failed is set
 * when a part failed (the rows of the other parts are kept). */
int overhead_run(const struct overhead_opts *o, const struct netenv *e,
                 struct row *rows, int cap, bool *failed);

/* Raw socket / pool / connect-per-request throughput rows, run in the
 * caller's (client) namespace against endpoint; count added, or -1. */
int throughput_run(const struct overhead_opts *o, const char *endpoint,
                   struct row *rows, int cap);

/* ---- libmemcached's pool, the overhead reference (libmc.c) ---- */

struct libmc_pool;
/* False when built without libmemcachedutil: no reference rows. */
bool libmc_available(void);
/* A memcached_pool_st of size handles, all cloned now, from a
 * memcached_st with endpoint ("ADDR:PORT") as its one server. Nothing
 * connects. NULL on failure (message printed) or when unavailable. */
struct libmc_pool *libmc_open(const char *endpoint, unsigned size);
/* n memcached_pool_fetch + memcached_pool_release pairs; 0, or -1
 * (message printed). */
int libmc_pairs(struct libmc_pool *p, uint64_t n);
/* Destroy the pool and its handles; NULL is fine. */
void libmc_close(struct libmc_pool *p);

/* ---- report (report.c) ---- */

/* The detailed tables (--verbose), each with a legend. */
void report_table(const struct row *rows, int n);
int report_csv(const char *path, const struct row *rows, int n,
               const struct netenv *e);

/* ---- the result screen (summary.c) ---- */

struct run_info {
	const struct netenv *env;
	double seconds;          /* the whole run */
	const char *csv, *plot;  /* written files (absolute), NULL if none */
	const char *plot_why;    /* why there is no plot, NULL if not asked */
	const char *burst_why;   /* why there are no burst rows, or NULL */
	int burst_gap_ms;        /* the pause between bursts */
	unsigned max_uses;       /* of the pooled request runs */
	bool overhead;           /* the overhead runs were asked for */
	const char *skipped;     /* servers not installed, "" when none */
};

/* The summary a user reads at the end: TIME_WAIT per policy, bursts,
 * throughput, the targets with their spread, where the files are. */
void report_summary(const struct row *rows, int n, const struct run_info *ri);
/* The reference rows that are missing, as a sentence each on f;
 * returns how many. */
int report_missing_refs(FILE *f, const struct row *rows, int n);
/* Render with gnuplot; 1 when gnuplot is absent (skipped), 0, -1. */
int report_plot(const char *path, const struct row *rows, int n);

#endif /* TCPOOL_BENCH_H */
