/*
 * The built-in line server: a small TCP or unix-socket server on one
 * background thread, for the tests, the bench and the examples.
 *
 * Protocol: newline-terminated lines (a trailing \r is dropped). "PING"
 * gets "PONG"; "quit" (any case) is a close request, answered as
 * on_quit says; any other line is echoed back followed by "\n". A line
 * longer than LS_MAX_LINE bytes gets the connection closed.
 *
 * All functions may be called from any thread; they must not be called
 * on a server after lineserver_stop().
 */
#ifndef TCPOOL_LINESERVER_H
#define TCPOOL_LINESERVER_H

#include <stdbool.h>
#include <stdint.h>

#define LS_MAX_LINE 65536

/* What the server does with a close request ("quit"). */
enum ls_quit_mode {
	LS_QUIT_CLOSE,          /* no reply; close: the server holds TIME_WAIT */
	LS_QUIT_IGNORE,         /* nothing at all; the connection stays */
	LS_QUIT_REPLY_NO_CLOSE, /* reply "+OK\n"; the connection stays */
	LS_QUIT_RESET,          /* SO_LINGER {1,0} and close: RST, no TIME_WAIT */
	LS_QUIT_FLOOD           /* send bytes as fast as the socket takes them,
	                         * forever; never close */
};

struct lineserver_opts {
	int family;             /* AF_INET (default when 0; AF_INET6 when
	                         * bind_addr is a v6 address), AF_INET6,
	                         * AF_UNIX */
	const char *bind_addr;  /* default "127.0.0.1" / "::1" */
	const char *unix_path;  /* AF_UNIX: created, and unlinked on stop */
	uint16_t port;          /* 0 = any free port */
	enum ls_quit_mode on_quit;
	unsigned idle_close_ms; /* server closes connections that moved no
	                         * byte for this long; 0 = never */
	int backlog;            /* listen backlog; default (0) 128 */
};

struct lineserver;

/* Bind, listen and start the server thread. opts NULL: all defaults.
 * Returns NULL with errno set on failure (EINVAL for bad options,
 * EADDRINUSE, ...). The caller owns the server until lineserver_stop(). */
struct lineserver *lineserver_start(const struct lineserver_opts *opts);

/* The bound port (0 for AF_UNIX). */
uint16_t lineserver_port(const struct lineserver *ls);

/* "127.0.0.1:PORT", "[::1]:PORT" or "unix:/path": what a client passes
 * to pool_get. A wildcard bind address is reported as the loopback one.
 * Valid until lineserver_stop(). */
const char *lineserver_endpoint(const struct lineserver *ls);

/* Close every open connection now, gracefully (the server sends FIN
 * first, so it holds the TIME_WAIT), like a server restart. Returns once
 * they are closed. */
void lineserver_close_all(struct lineserver *ls);

/* Stop (or resume) calling accept(): new connections then wait in the
 * listen backlog, and once it is full the kernel drops their SYNs, so
 * connect() times out. Returns once the server thread has applied it. */
void lineserver_pause_accept(struct lineserver *ls, bool paused);

/* Close everything, join the thread, free. NULL is fine. */
void lineserver_stop(struct lineserver *ls);

struct lineserver_stats {
	uint64_t accepted;         /* connections accepted */
	uint64_t closed_by_server; /* closed first by the server: quit, reset,
	                            * idle, close_all, stop, too long a line */
	uint64_t closed_by_client; /* the client closed or reset first */
	uint64_t requests;         /* lines answered, close requests excluded */
	uint64_t quits;            /* close requests received */
	unsigned open;             /* connections open now */
};

/* A snapshot of the counters (each one read atomically). The server
 * thread counts as it works: a connection whose connect() has returned may
 * not be accepted yet, and one the client closed may not be seen closed
 * yet, so wait for a figure rather than expect it at once. */
void lineserver_get_stats(struct lineserver *ls, struct lineserver_stats *out);

#endif /* TCPOOL_LINESERVER_H */
