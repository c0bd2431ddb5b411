/*
 * The built-in line server (see lineserver.h for the protocol).
 *
 * One thread runs an epoll loop over the listening socket, an eventfd that
 * other threads write to when they post a command (close all, pause,
 * stop), and every connection. Everything is non-blocking and
 * level-triggered; a handler does a bounded amount of work per event so
 * that one busy connection (a flood, a fast pipelining client) cannot
 * starve the others.
 *
 * Memory: each connection owns an input and an output buffer that start
 * small and grow (doubling) up to a bound; nothing is allocated per
 * request. When a client pipelines faster than it reads its replies, the
 * output stops growing at LS_OUT_HIGH and the server stops reading that
 * connection until the client catches up.
 *
 * Who closes first matters here (it decides who holds TIME_WAIT), so every
 * close is one of: graceful by the server (FIN first, server TIME_WAIT),
 * abortive by the server (RST, nobody holds TIME_WAIT), or passive after
 * the client's EOF or reset.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <utlist.h>

#include "lineserver.h"

#define LS_BUF_INIT 4096
#define LS_IN_MAX (LS_MAX_LINE + 1)       /* the longest line and its \n */
#define LS_OUT_HIGH (256 * 1024)          /* stop reading above this */
#define LS_EVENTS 256                     /* epoll events per wait */
#define LS_READS_PER_EVENT 16             /* fairness bounds, per event */
#define LS_SENDS_PER_EVENT 64
#define LS_ACCEPTS_PER_EVENT 64
#define LS_ACCEPT_BACKOFF_MS 100          /* after EMFILE and the like */
#define LS_FLOOD_CHUNK 16384
#define LS_SUN_PATH sizeof(((struct sockaddr_un *)0)->sun_path)

enum ls_state {
	LS_OPEN,     /* serving lines */
	LS_CLOSING,  /* close request seen: flush replies, then close */
	LS_FLOODING  /* close request seen in flood mode: send forever */
};

struct ls_conn {
	int fd;
	enum ls_state state;
	uint32_t events;       /* epoll interest registered now */
	char *in;
	size_t in_len, in_cap;
	size_t in_scanned;     /* bytes of in known to hold no \n */
	char *out;
	size_t out_off, out_len, out_cap;
	uint64_t last_ms;      /* last byte moved, for idle_close_ms */
	struct ls_conn *prev, *next; /* least recently active first */
};

struct ls_counters {
	atomic_uint_fast64_t accepted, closed_by_server, closed_by_client;
	atomic_uint_fast64_t requests, quits;
	atomic_uint open;
};

struct lineserver {
	struct lineserver_opts opts;
	int family;
	int listen_fd, epoll_fd, wake_fd;
	pthread_t thread;
	uint16_t port;
	char unix_path[LS_SUN_PATH];
	char endpoint[sizeof("unix:") + LS_SUN_PATH];

	/* Commands, guarded by cmd_lock; cmd_done catches up with cmd_seq
	 * once the server thread has applied everything posted so far. */
	pthread_mutex_t cmd_lock;
	pthread_cond_t cmd_cond;
	uint64_t cmd_seq, cmd_done;
	uint64_t close_all_req;
	bool want_pause, want_stop;

	/* Owned by the server thread alone. */
	struct ls_conn *conns;
	uint64_t close_all_done;
	uint64_t now_ms;
	bool paused;
	bool listen_armed;
	uint64_t accept_retry_ms;    /* 0 = no backoff under way */

	struct ls_counters st;
};

/* Data that floods a client; GNU range initialiser, no startup work. */
static const char ls_flood[LS_FLOOD_CHUNK] = {
	[0 ... LS_FLOOD_CHUNK - 1] = 'F'
};

/* epoll tags for the two descriptors that are not connections. */
static char ls_tag_listen, ls_tag_wake;

static uint64_t ls_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void ls_count(atomic_uint_fast64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- connections: life and death ------------------------------------- */

static int ls_set_interest(struct lineserver *ls, struct ls_conn *c,
                           uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (events == c->events)
		return 0;
	if (epoll_ctl(ls->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		return -1;
	c->events = events;
	return 0;
}

static void ls_conn_release(struct ls_conn *c)
{
	free(c->in);
	free(c->out);
	free(c);
}

static void ls_conn_free(struct lineserver *ls, struct ls_conn *c)
{
	DL_DELETE(ls->conns, c);
	/* Out of the epoll set first: close() removes it only when this is
	 * the socket's last descriptor, and a child forked by a test may
	 * hold a copy, so that its events would name c after it is freed. */
	epoll_ctl(ls->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	ls_conn_release(c);
	atomic_fetch_sub_explicit(&ls->st.open, 1, memory_order_relaxed);
}

/* Read and drop what the client sent, so that close() sends FIN: with
 * unread bytes in the receive queue the kernel would send RST instead.
 * Bounded, against a client that never stops sending. */
static void ls_drain(int fd)
{
	char sink[4096];
	ssize_t n;
	int i = 0;

	do {
		n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
	} while ((n > 0 && ++i < 256) || (n < 0 && errno == EINTR));
}

/* The server closes first, gracefully: it will hold the TIME_WAIT. */
static void ls_close_graceful(struct lineserver *ls, struct ls_conn *c)
{
	ls_drain(c->fd);
	ls_count(&ls->st.closed_by_server);
	ls_conn_free(ls, c);
}

/* The server aborts: RST at once, no TIME_WAIT on either side. */
static void ls_close_reset(struct lineserver *ls, struct ls_conn *c)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	ls_count(&ls->st.closed_by_server);
	ls_conn_free(ls, c);
}

/* The client closed or reset first: we are the passive closer. */
static void ls_close_passive(struct lineserver *ls, struct ls_conn *c)
{
	ls_count(&ls->st.closed_by_client);
	ls_conn_free(ls, c);
}

static void ls_touch(struct lineserver *ls, struct ls_conn *c)
{
	if (!ls->opts.idle_close_ms || c->last_ms == ls->now_ms)
		return;
	c->last_ms = ls->now_ms;
	DL_DELETE(ls->conns, c);
	DL_APPEND(ls->conns, c);
}

static struct ls_conn *ls_conn_new(struct lineserver *ls, int fd)
{
	struct ls_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = fd;
	c->in_cap = LS_BUF_INIT;
	c->out_cap = LS_BUF_INIT;
	c->in = malloc(c->in_cap);
	c->out = malloc(c->out_cap);
	c->last_ms = ls->now_ms;
	if (!c->in || !c->out) {
		ls_conn_release(c);
		return NULL;
	}
	return c;
}

/* Take an accepted descriptor into the loop; closes it on failure. */
static void ls_conn_add(struct lineserver *ls, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct ls_conn *c = ls_conn_new(ls, fd);
	int one = 1;

	if (!c) {
		close(fd);
		return;
	}
	if (ls->family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev.data.ptr = c;
	if (epoll_ctl(ls->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		ls_conn_release(c);
		return;
	}
	c->events = EPOLLIN;
	DL_APPEND(ls->conns, c);
	ls_count(&ls->st.accepted);
	atomic_fetch_add_explicit(&ls->st.open, 1, memory_order_relaxed);
}

/* ---- output ---------------------------------------------------------- */

static size_t ls_out_pending(const struct ls_conn *c)
{
	return c->out_len - c->out_off;
}

/* Append a reply. The caller checked LS_OUT_HIGH first, so the buffer
 * never grows past LS_OUT_HIGH + LS_IN_MAX + 1. */
static int ls_out_append(struct ls_conn *c, const char *data, size_t len,
                         bool newline)
{
	size_t need = c->out_len + len + (newline ? 1 : 0);
	size_t cap = c->out_cap;
	char *p;

	if (c->out_off > 0 && need > cap) {
		memmove(c->out, c->out + c->out_off, ls_out_pending(c));
		c->out_len -= c->out_off;
		c->out_off = 0;
		need = c->out_len + len + (newline ? 1 : 0);
	}
	while (cap < need)
		cap *= 2;
	if (cap != c->out_cap) {
		p = realloc(c->out, cap);
		if (!p)
			return -1;
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	if (newline)
		c->out[c->out_len++] = '\n';
	return 0;
}

/* Send the flood until the socket is full; -1 when the client is gone. */
static int ls_flood_send(struct ls_conn *c)
{
	ssize_t n;
	int i;

	for (i = 0; i < LS_SENDS_PER_EVENT; i++) {
		n = send(c->fd, ls_flood, sizeof(ls_flood), MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	}
	return 0;
}

/* Send what is buffered. Returns 1 when something is left (or the flood
 * goes on), 0 when all is sent, -1 when the client is gone. */
static int ls_out_flush(struct ls_conn *c)
{
	ssize_t n;
	int i;

	for (i = 0; i < LS_SENDS_PER_EVENT && ls_out_pending(c) > 0; i++) {
		n = send(c->fd, c->out + c->out_off, ls_out_pending(c),
		         MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -1;
		c->out_off += (size_t)n;
	}
	if (ls_out_pending(c) > 0)
		return 1;
	c->out_off = 0;
	c->out_len = 0;
	if (c->state != LS_FLOODING)
		return 0;
	return ls_flood_send(c) < 0 ? -1 : 1;
}

/* ---- input ----------------------------------------------------------- */

/* Queue a reply line. Out of memory, the connection cannot be served
 * correctly any more: it is reset. Returns false when it is gone. */
static bool ls_reply(struct lineserver *ls, struct ls_conn *c,
                     const char *data, size_t len)
{
	if (ls_out_append(c, data, len, true) == 0)
		return true;
	ls_close_reset(ls, c);
	return false;
}

static bool ls_is_quit(const char *line, size_t len)
{
	return len == 4 && strncasecmp(line, "quit", 4) == 0;
}

/* A close request. Returns false when the connection is gone. */
static bool ls_on_quit(struct lineserver *ls, struct ls_conn *c)
{
	ls_count(&ls->st.quits);
	switch (ls->opts.on_quit) {
	case LS_QUIT_CLOSE:
		c->state = LS_CLOSING;
		return true;
	case LS_QUIT_IGNORE:
		return true;
	case LS_QUIT_REPLY_NO_CLOSE:
		return ls_reply(ls, c, "+OK", 3);
	case LS_QUIT_RESET:
		/* Best effort: replies to the lines before it go out first,
		 * and the client reads them before it sees the reset. */
		ls_out_flush(c);
		ls_close_reset(ls, c);
		return false;
	case LS_QUIT_FLOOD:
		c->state = LS_FLOODING;
		return true;
	}
	return true;
}

/* One line, without its \n (and \r). Returns false when the connection
 * is gone. */
static bool ls_on_line(struct lineserver *ls, struct ls_conn *c,
                       const char *line, size_t len)
{
	if (ls_is_quit(line, len))
		return ls_on_quit(ls, c);
	ls_count(&ls->st.requests);
	if (len == 4 && memcmp(line, "PING", 4) == 0)
		return ls_reply(ls, c, "PONG", 4);
	return ls_reply(ls, c, line, len);
}

/* Serve the complete lines in the input buffer, while output has room
 * and the connection is still serving. Returns false when it is gone. */
static bool ls_process(struct lineserver *ls, struct ls_conn *c)
{
	size_t start = 0, len;
	char *nl;

	while (c->state == LS_OPEN && ls_out_pending(c) < LS_OUT_HIGH) {
		nl = memchr(c->in + c->in_scanned, '\n',
		            c->in_len - c->in_scanned);
		if (!nl) {
			c->in_scanned = c->in_len;
			break;
		}
		len = (size_t)(nl - (c->in + start));
		c->in_scanned = (size_t)(nl - c->in) + 1;
		if (len > 0 && c->in[start + len - 1] == '\r')
			len--;
		if (!ls_on_line(ls, c, c->in + start, len))
			return false;
		start = c->in_scanned;
	}
	/* Past a close request nothing more is served. */
	if (c->state != LS_OPEN)
		start = c->in_len;
	memmove(c->in, c->in + start, c->in_len - start);
	c->in_len -= start;
	c->in_scanned = c->state == LS_OPEN ? c->in_scanned - start : 0;
	return true;
}

/* Room for the next recv(). Returns false when a line is too long. */
static bool ls_in_room(struct ls_conn *c)
{
	size_t cap;
	char *p;

	if (c->in_len < c->in_cap)
		return true;
	if (c->in_cap >= LS_IN_MAX)
		return false;
	cap = c->in_cap * 2 < LS_IN_MAX ? c->in_cap * 2 : LS_IN_MAX;
	p = realloc(c->in, cap);
	if (!p)
		return false;
	c->in = p;
	c->in_cap = cap;
	return true;
}

static bool ls_has_line(const struct ls_conn *c)
{
	return memchr(c->in + c->in_scanned, '\n',
	              c->in_len - c->in_scanned) != NULL;
}

/* Outcome of reading a connection. */
enum ls_read { LS_READ_AGAIN, LS_READ_EOF, LS_READ_FULL };

static enum ls_read ls_read_some(struct ls_conn *c)
{
	ssize_t n;
	int i;

	for (i = 0; i < LS_READS_PER_EVENT; i++) {
		if (c->state != LS_OPEN)
			c->in_len = 0;  /* past a close request: discard */
		if (!ls_in_room(c))
			return LS_READ_FULL;
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ?
			       LS_READ_AGAIN : LS_READ_EOF;
		if (n == 0)
			return LS_READ_EOF;
		c->in_len += (size_t)n;
		/* Full, with lines to serve: serve them before reading on. */
		if (c->in_len == c->in_cap && ls_has_line(c))
			return LS_READ_AGAIN;
	}
	return LS_READ_AGAIN;
}

/* ---- the connection's event handler ---------------------------------- */

/* After any progress: send; serve lines held back while output was over
 * the mark; then choose what to wait for, or close. */
static void ls_conn_settle(struct lineserver *ls, struct ls_conn *c)
{
	uint32_t events = 0;
	int rc;

	for (;;) {
		rc = ls_out_flush(c);
		if (rc < 0) {
			ls_close_passive(ls, c);
			return;
		}
		if (rc == 0 && c->state == LS_CLOSING) {
			ls_close_graceful(ls, c);
			return;
		}
		/* Bounded: each round consumes buffered input. */
		if (rc > 0 || c->state != LS_OPEN || c->in_scanned == c->in_len)
			break;
		if (!ls_process(ls, c))
			return;
	}
	if (ls_out_pending(c) < LS_OUT_HIGH)
		events |= EPOLLIN;
	if (rc > 0)
		events |= EPOLLOUT;
	if (ls_set_interest(ls, c, events) < 0)
		ls_close_passive(ls, c);
}

static void ls_conn_event(struct lineserver *ls, struct ls_conn *c,
                          uint32_t revents)
{
	enum ls_read r = LS_READ_AGAIN;

	ls_touch(ls, c);
	if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		r = ls_read_some(c);
		if (r == LS_READ_EOF) {
			ls_close_passive(ls, c);
			return;
		}
		if (!ls_process(ls, c))
			return;
		/* Still no \n in a full buffer: the line is too long. */
		if (r == LS_READ_FULL && c->in_len == c->in_cap &&
		    c->state == LS_OPEN && ls_out_pending(c) < LS_OUT_HIGH) {
			ls_close_graceful(ls, c);
			return;
		}
	}
	ls_conn_settle(ls, c);
}

/* ---- accepting ------------------------------------------------------- */

static void ls_arm_listener(struct lineserver *ls, bool armed)
{
	struct epoll_event ev = { .events = armed ? EPOLLIN : 0,
	                          .data.ptr = &ls_tag_listen };

	if (armed == ls->listen_armed)
		return;
	if (epoll_ctl(ls->epoll_fd, EPOLL_CTL_MOD, ls->listen_fd, &ev) == 0)
		ls->listen_armed = armed;
}

static bool ls_accept_transient(int err)
{
	/* The connection died in the backlog, or a network error that
	 * accept(2) says to treat like EAGAIN and retry. */
	return err == EINTR || err == ECONNABORTED || err == EPROTO ||
	       err == ENETDOWN || err == ENOPROTOOPT || err == EHOSTDOWN ||
	       err == ENONET || err == EHOSTUNREACH || err == EOPNOTSUPP ||
	       err == ENETUNREACH;
}

static void ls_accept(struct lineserver *ls)
{
	int i, fd;

	for (i = 0; i < LS_ACCEPTS_PER_EVENT; i++) {
		fd = accept4(ls->listen_fd, NULL, NULL,
		             SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			ls_conn_add(ls, fd);
			continue;
		}
		if (ls_accept_transient(errno))
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		/* Out of descriptors or memory: level-triggered epoll would
		 * spin on the pending connection, so look away for a while. */
		ls->accept_retry_ms = ls->now_ms + LS_ACCEPT_BACKOFF_MS;
		ls_arm_listener(ls, false);
		return;
	}
}

/* ---- timers: idle connections and the accept backoff ----------------- */

static void ls_expire(struct lineserver *ls)
{
	unsigned idle = ls->opts.idle_close_ms;

	while (idle && ls->conns && ls->conns->last_ms + idle <= ls->now_ms)
		ls_close_graceful(ls, ls->conns);
	if (ls->accept_retry_ms && ls->accept_retry_ms <= ls->now_ms) {
		ls->accept_retry_ms = 0;
		ls_arm_listener(ls, !ls->paused);
	}
}

/* Milliseconds until ls_expire() has work, -1 for never. */
static int ls_timeout(const struct lineserver *ls)
{
	uint64_t next = UINT64_MAX;

	if (ls->opts.idle_close_ms && ls->conns)
		next = ls->conns->last_ms + ls->opts.idle_close_ms;
	if (ls->accept_retry_ms && ls->accept_retry_ms < next)
		next = ls->accept_retry_ms;
	if (next == UINT64_MAX)
		return -1;
	if (next <= ls->now_ms)
		return 0;
	/* +1: epoll rounds down, and waking a hair early just loops. */
	return next - ls->now_ms > 60000 ? 60000 : (int)(next - ls->now_ms) + 1;
}

/* ---- commands from other threads ------------------------------------- */

static void ls_close_all_conns(struct lineserver *ls)
{
	while (ls->conns)
		ls_close_graceful(ls, ls->conns);
}

/* Apply what was posted; returns false when asked to stop. */
static bool ls_apply_commands(struct lineserver *ls)
{
	uint64_t eventfd_value, seq, close_all;
	bool pause, stop;

	/* Clear the eventfd before reading the requests: a request posted
	 * after this read writes it again and wakes the next epoll_wait. */
	if (read(ls->wake_fd, &eventfd_value, sizeof(eventfd_value)) < 0 &&
	    errno != EAGAIN)
		return true;
	pthread_mutex_lock(&ls->cmd_lock);
	seq = ls->cmd_seq;
	close_all = ls->close_all_req;
	pause = ls->want_pause;
	stop = ls->want_stop;
	pthread_mutex_unlock(&ls->cmd_lock);

	if (close_all != ls->close_all_done) {
		ls_close_all_conns(ls);
		ls->close_all_done = close_all;
	}
	ls->paused = pause;
	ls_arm_listener(ls, !pause && !ls->accept_retry_ms);
	if (stop)
		ls_close_all_conns(ls);

	pthread_mutex_lock(&ls->cmd_lock);
	ls->cmd_done = seq;
	pthread_cond_broadcast(&ls->cmd_cond);
	pthread_mutex_unlock(&ls->cmd_lock);
	return !stop;
}

/* Post a command (already recorded under cmd_lock by the caller's
 * update) and wait until the server thread has applied it. */
static void ls_post(struct lineserver *ls,
                    void (*update)(struct lineserver *, bool), bool arg)
{
	const uint64_t one = 1;
	uint64_t seq;
	ssize_t n;

	pthread_mutex_lock(&ls->cmd_lock);
	update(ls, arg);
	seq = ++ls->cmd_seq;
	pthread_mutex_unlock(&ls->cmd_lock);
	do {
		n = write(ls->wake_fd, &one, sizeof(one));
	} while (n < 0 && errno == EINTR);
	pthread_mutex_lock(&ls->cmd_lock);
	while (ls->cmd_done < seq)
		pthread_cond_wait(&ls->cmd_cond, &ls->cmd_lock);
	pthread_mutex_unlock(&ls->cmd_lock);
}

static void ls_req_close_all(struct lineserver *ls, bool unused)
{
	(void)unused;
	ls->close_all_req++;
}

static void ls_req_pause(struct lineserver *ls, bool paused)
{
	ls->want_pause = paused;
}

static void ls_req_stop(struct lineserver *ls, bool unused)
{
	(void)unused;
	ls->want_stop = true;
}

/* ---- the loop -------------------------------------------------------- */

/* Returns false when asked to stop. */
static bool ls_dispatch(struct lineserver *ls, struct epoll_event *ev, int n)
{
	bool wake = false;
	int i;

	for (i = 0; i < n; i++) {
		if (ev[i].data.ptr == &ls_tag_listen)
			ls_accept(ls);
		else if (ev[i].data.ptr == &ls_tag_wake)
			wake = true;
		else
			ls_conn_event(ls, ev[i].data.ptr, ev[i].events);
	}
	/* Commands close connections that may still have events in this
	 * batch, so they run after it. */
	return wake ? ls_apply_commands(ls) : true;
}

static void *ls_thread(void *arg)
{
	struct epoll_event ev[LS_EVENTS];
	struct lineserver *ls = arg;
	int n;

	for (;;) {
		ls->now_ms = ls_now_ms();
		n = epoll_wait(ls->epoll_fd, ev, LS_EVENTS, ls_timeout(ls));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		ls->now_ms = ls_now_ms();
		if (!ls_dispatch(ls, ev, n))
			break;
		ls_expire(ls);
	}
	ls_close_all_conns(ls);
	/* Whatever ended the loop, nobody may wait for it any longer. */
	pthread_mutex_lock(&ls->cmd_lock);
	ls->cmd_done = UINT64_MAX;
	pthread_cond_broadcast(&ls->cmd_cond);
	pthread_mutex_unlock(&ls->cmd_lock);
	return NULL;
}

/* ---- the listening socket -------------------------------------------- */

union ls_sockaddr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
	struct sockaddr_un un;
	struct sockaddr_storage ss;
};

/* Family and address from the options; -1 with errno EINVAL if they
 * disagree or do not parse. */
static int ls_inet_addr(struct lineserver *ls, union ls_sockaddr *sa,
                        socklen_t *len)
{
	const char *addr = ls->opts.bind_addr;
	int family = ls->opts.family;

	memset(sa, 0, sizeof(*sa));
	if (!addr)
		addr = family == AF_INET6 ? "::1" : "127.0.0.1";
	if (family != AF_INET6 && inet_pton(AF_INET, addr, &sa->in.sin_addr) == 1) {
		sa->in.sin_family = AF_INET;
		sa->in.sin_port = htons(ls->opts.port);
		*len = sizeof(sa->in);
	} else if (family != AF_INET &&
	           inet_pton(AF_INET6, addr, &sa->in6.sin6_addr) == 1) {
		sa->in6.sin6_family = AF_INET6;
		sa->in6.sin6_port = htons(ls->opts.port);
		*len = sizeof(sa->in6);
	} else {
		errno = EINVAL;
		return -1;
	}
	ls->family = sa->sa.sa_family;
	return 0;
}

static int ls_unix_addr(struct lineserver *ls, union ls_sockaddr *sa,
                        socklen_t *len)
{
	const char *path = ls->opts.unix_path;

	memset(sa, 0, sizeof(*sa));
	if (!path || !*path) {
		errno = EINVAL;
		return -1;
	}
	if (strlen(path) >= sizeof(sa->un.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	sa->un.sun_family = AF_UNIX;
	strcpy(sa->un.sun_path, path);
	*len = sizeof(sa->un);
	ls->family = AF_UNIX;
	return 0;
}

/* A unix socket file left by a server that died is in the way of bind();
 * it is stale when it is a socket and nobody accepts on it. Anything else
 * at that path is not ours to remove. */
static bool ls_unix_stale(const union ls_sockaddr *sa, socklen_t len)
{
	struct stat st;
	int fd, rc;

	if (lstat(sa->un.sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
		return false;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	do {
		rc = connect(fd, &sa->sa, len);
	} while (rc < 0 && errno == EINTR);
	close(fd);
	return rc < 0 && errno == ECONNREFUSED;
}

static int ls_bind(struct lineserver *ls, int fd, const union ls_sockaddr *sa,
                   socklen_t len)
{
	int one = 1;

	if (ls->family == AF_UNIX) {
		if (bind(fd, &sa->sa, len) == 0)
			return 0;
		if (errno != EADDRINUSE || !ls_unix_stale(sa, len))
			return -1;
		unlink(sa->un.sun_path);
		return bind(fd, &sa->sa, len);
	}
	/* Lets a fixed --port be reused while old connections sit in
	 * TIME_WAIT, as every real server does. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	return bind(fd, &sa->sa, len);
}

/* "127.0.0.1:PORT", "[::1]:PORT" or "unix:/path", from the bound name;
 * a wildcard address is given as the loopback one, where clients go. */
static void ls_make_endpoint(struct lineserver *ls, const union ls_sockaddr *sa)
{
	char host[INET6_ADDRSTRLEN];

	if (ls->family == AF_UNIX) {
		snprintf(ls->endpoint, sizeof(ls->endpoint), "unix:%s",
		         ls->unix_path);
		return;
	}
	if (ls->family == AF_INET) {
		ls->port = ntohs(sa->in.sin_port);
		if (sa->in.sin_addr.s_addr == htonl(INADDR_ANY))
			strcpy(host, "127.0.0.1");
		else
			inet_ntop(AF_INET, &sa->in.sin_addr, host, sizeof(host));
		snprintf(ls->endpoint, sizeof(ls->endpoint), "%s:%u", host, ls->port);
		return;
	}
	ls->port = ntohs(sa->in6.sin6_port);
	if (IN6_IS_ADDR_UNSPECIFIED(&sa->in6.sin6_addr))
		strcpy(host, "::1");
	else
		inet_ntop(AF_INET6, &sa->in6.sin6_addr, host, sizeof(host));
	snprintf(ls->endpoint, sizeof(ls->endpoint), "[%s]:%u", host, ls->port);
}

static int ls_listen(struct lineserver *ls)
{
	union ls_sockaddr sa;
	socklen_t len;
	int rc;

	if (ls->opts.family == AF_UNIX || ls->opts.unix_path)
		rc = ls_unix_addr(ls, &sa, &len);
	else
		rc = ls_inet_addr(ls, &sa, &len);
	if (rc < 0)
		return -1;
	ls->listen_fd = socket(ls->family, SOCK_STREAM | SOCK_NONBLOCK |
	                       SOCK_CLOEXEC, 0);
	if (ls->listen_fd < 0)
		return -1;
	if (ls_bind(ls, ls->listen_fd, &sa, len) < 0)
		return -1;
	if (ls->family == AF_UNIX)
		strcpy(ls->unix_path, sa.un.sun_path);
	if (listen(ls->listen_fd, ls->opts.backlog) < 0)
		return -1;
	len = sizeof(sa);
	if (getsockname(ls->listen_fd, &sa.sa, &len) < 0)
		return -1;
	ls_make_endpoint(ls, &sa);
	return 0;
}

/* ---- start and stop -------------------------------------------------- */

static int ls_epoll_setup(struct lineserver *ls)
{
	struct epoll_event ev = { .events = EPOLLIN };

	ls->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (ls->epoll_fd < 0)
		return -1;
	ls->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ls->wake_fd < 0)
		return -1;
	ev.data.ptr = &ls_tag_wake;
	if (epoll_ctl(ls->epoll_fd, EPOLL_CTL_ADD, ls->wake_fd, &ev) < 0)
		return -1;
	ev.data.ptr = &ls_tag_listen;
	if (epoll_ctl(ls->epoll_fd, EPOLL_CTL_ADD, ls->listen_fd, &ev) < 0)
		return -1;
	ls->listen_armed = true;
	return 0;
}

/* The server thread takes no signals: they belong to the program. */
static int ls_spawn(struct lineserver *ls)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&ls->thread, NULL, ls_thread, ls);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		errno = rc;
		return -1;
	}
	return 0;
}

static void ls_free(struct lineserver *ls)
{
	int saved = errno;

	if (ls->listen_fd >= 0)
		close(ls->listen_fd);
	if (ls->unix_path[0])
		unlink(ls->unix_path);
	if (ls->epoll_fd >= 0)
		close(ls->epoll_fd);
	if (ls->wake_fd >= 0)
		close(ls->wake_fd);
	pthread_cond_destroy(&ls->cmd_cond);
	pthread_mutex_destroy(&ls->cmd_lock);
	free(ls);
	errno = saved;
}

static struct lineserver *ls_alloc(const struct lineserver_opts *opts)
{
	struct lineserver *ls = calloc(1, sizeof(*ls));

	if (!ls)
		return NULL;
	if (opts)
		ls->opts = *opts;
	if (ls->opts.backlog <= 0)
		ls->opts.backlog = 128;
	ls->listen_fd = -1;
	ls->epoll_fd = -1;
	ls->wake_fd = -1;
	pthread_mutex_init(&ls->cmd_lock, NULL);
	pthread_cond_init(&ls->cmd_cond, NULL);
	return ls;
}

struct lineserver *lineserver_start(const struct lineserver_opts *opts)
{
	struct lineserver *ls;

	if (opts && (unsigned)opts->on_quit > LS_QUIT_FLOOD) {
		errno = EINVAL;
		return NULL;
	}
	ls = ls_alloc(opts);
	if (!ls)
		return NULL;
	if (ls_listen(ls) < 0 || ls_epoll_setup(ls) < 0 || ls_spawn(ls) < 0) {
		ls_free(ls);
		return NULL;
	}
	return ls;
}

uint16_t lineserver_port(const struct lineserver *ls)
{
	return ls->port;
}

const char *lineserver_endpoint(const struct lineserver *ls)
{
	return ls->endpoint;
}

void lineserver_close_all(struct lineserver *ls)
{
	ls_post(ls, ls_req_close_all, false);
}

void lineserver_pause_accept(struct lineserver *ls, bool paused)
{
	ls_post(ls, ls_req_pause, paused);
}

void lineserver_stop(struct lineserver *ls)
{
	if (!ls)
		return;
	ls_post(ls, ls_req_stop, false);
	pthread_join(ls->thread, NULL);
	ls_free(ls);
}

static uint64_t ls_load(atomic_uint_fast64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

void lineserver_get_stats(struct lineserver *ls, struct lineserver_stats *out)
{
	out->accepted = ls_load(&ls->st.accepted);
	out->closed_by_server = ls_load(&ls->st.closed_by_server);
	out->closed_by_client = ls_load(&ls->st.closed_by_client);
	out->requests = ls_load(&ls->st.requests);
	out->quits = ls_load(&ls->st.quits);
	out->open = atomic_load_explicit(&ls->st.open, memory_order_relaxed);
}
