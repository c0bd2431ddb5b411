/*
 * Real servers for the tests: memcached, redis-server and nginx, each
 * started on a free loopback port, in its own temporary directory with its
 * own configuration, and stopped without leftovers.
 *
 * Each server runs under a small guard process that the caller forks. The
 * guard starts the server (which dies with the guard: PR_SET_PDEATHSIG),
 * and when its control socket reports EOF (realserver_stop(), or the
 * caller died, even by SIGKILL) it stops the server and removes the
 * directory. The guard lives in its own process group, so a test
 * framework that kills the test's group on a timeout does not kill it
 * before it has cleaned up.
 *
 * Functions on one server must be called from one thread at a time.
 */
#ifndef TCPOOL_REALSERVER_H
#define TCPOOL_REALSERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum rs_kind { RS_MEMCACHED, RS_REDIS, RS_NGINX, RS_NKINDS };

struct realserver_opts {
	/* The server closes connections idle this long (memcached
	 * idle_timeout, redis timeout, nginx keepalive_timeout);
	 * 0 = the server's default. */
	unsigned idle_timeout_s;
	/* More arguments for the server's command line, after the ones
	 * realserver sets (redis: "--requirepass", "secret"); NULL-ended,
	 * at most RS_MAX_EXTRA_ARGS. Read in the guard process, which the
	 * start forks: the caller's array need not outlive the call. NULL:
	 * none. */
	const char *const *extra_args;
	/* TLS (redis and nginx): PEM files of the server's certificate
	 * chain, its key and the CA that clients may present certificates
	 * from (redis requires one; clients are not asked for theirs). With
	 * tls_cert_file set the server speaks TLS only, on its one port
	 * (redis --port 0 --tls-port PORT; nginx listen PORT ssl). Read in
	 * the guard process, like extra_args. NULL: plain TCP. */
	const char *tls_cert_file, *tls_key_file, *tls_ca_file;
};

#define RS_MAX_EXTRA_ARGS 8

struct realserver;

/* "memcached", "redis" or "nginx". */
const char *realserver_name(enum rs_kind kind);

/* Whether the server's binary is installed (and executable). */
bool realserver_available(enum rs_kind kind);

/* Start a server and wait (up to a few seconds) until it listens. opts
 * NULL: defaults. Returns NULL with errno set on failure (ENOENT: not
 * installed) after printing the server's log to stderr. The caller owns
 * the server until realserver_stop(). */
struct realserver *realserver_start(enum rs_kind kind,
				    const struct realserver_opts *opts);

/* "127.0.0.1:PORT", valid until realserver_stop(). */
const char *realserver_endpoint(const struct realserver *rs);
uint16_t realserver_port(const struct realserver *rs);

/* The server's process id; 0 after realserver_kill(). It is the guard's
 * child, not the caller's: do not wait for it. */
pid_t realserver_pid(const struct realserver *rs);

/* Stop the server (SIGTERM) and start it again on the same port, as an
 * operator's restart does. Returns 0 or an errno value. */
int realserver_restart(struct realserver *rs);

/* SIGKILL the server (a crash): the kernel closes its sockets. Returns
 * once it is gone; realserver_restart() may start it again. */
int realserver_kill(struct realserver *rs);

/* Stop the server, remove its directory, free rs. NULL is fine. */
void realserver_stop(struct realserver *rs);

/* True when no TCP socket of this namespace other than a listening one
 * has port as its local or remote port: no TIME_WAIT (or closing socket
 * that may become one) left from an earlier server on that port, which
 * would spoil a test's TIME_WAIT counts. realserver_start() picks such
 * ports; tests use it for servers they start themselves. */
bool realserver_port_is_quiet(uint16_t port);

/* ---- protocol helpers ---- */

/* A health-check request: memcached "version\r\n", redis "PING\r\n",
 * nginx "GET / ...". */
const char *realserver_request(enum rs_kind kind);

/* The request that makes the server close the connection, written as
 * close_request's value in a config file (quoted, with escapes). */
const char *realserver_close_request(enum rs_kind kind);

/* The start of a good reply to realserver_request(kind). */
const char *realserver_reply_prefix(enum rs_kind kind);

/* Bytes of one complete reply in buf[0..len), or 0 while incomplete:
 * for clients that read through something else than the socket (TLS). */
size_t realserver_reply_length(enum rs_kind kind, const char *buf, size_t len);

/* Send the health-check request on fd and read one complete reply
 * (bounded by a 2 s timeout): true when it is the expected one. */
bool realserver_roundtrip(enum rs_kind kind, int fd);

#endif /* TCPOOL_REALSERVER_H */
