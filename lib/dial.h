/*
 * Dialing an endpoint without blocking (dial.c), on connect.c's steps:
 * resolve (resolve.h), then connect, with Happy Eyeballs (RFC 8305) for a
 * name with addresses of both families. One struct dial is one connect
 * sequence; pool_get, pool_get_start and the refills all go through it,
 * the blocking ones calling dial_wait between steps.
 */
#ifndef TCPOOL_DIAL_H
#define TCPOOL_DIAL_H
#include <sys/un.h>

#include "pool-internal.h"
#include "resolve.h"

/* An address to connect to, unix ones included. */
union dial_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
	struct sockaddr_un un;
};

static inline socklen_t dial_addr_len(const union dial_addr *a)
{
	switch (a->sa.sa_family) {
	case AF_UNIX:
		return sizeof(a->un);
	case AF_INET:
		return sizeof(a->in);
	default:
		return sizeof(a->in6);
	}
}

/* ---- connect.c: the non-blocking steps ---- */

/* ep's turn in the source_address round robin, for one connect. */
unsigned connect_turn(struct pool_endpoint *ep);
/* Open a non-blocking socket with ep's options and connect() it to a.
 * Returns 0 (connected), EINPROGRESS (wait for it to be writable, then
 * connect_result), EAGAIN (a unix listener's backlog is full: try
 * connect_again a little later), with the socket in *fdp; or another
 * errno, the socket closed. *setup_failed: the socket could not be given
 * its options or source address. */
int connect_attempt(struct pool_endpoint *ep, const union dial_addr *a,
		    unsigned turn, const struct connect_ctl *ctl, int *fdp,
		    bool *setup_failed);
int connect_again(int fd, const union dial_addr *a);
/* The outcome of a connect that turned writable: 0 or an errno. */
int connect_result(int fd);
/* A connected socket becomes blocking, as callers expect. */
void connect_ready(int fd);
/* The POOL_E* code for a connect errno. */
int connect_code(int err);

/* ---- dial.c ---- */

#define DIAL_MAX 4 /* attempts in flight at once */

struct dial_try {
	int fd;
	bool again;                /* unix EAGAIN: connect again at retry_ns */
	union dial_addr addr;
};

struct dial {
	struct pool *pool;
	struct pool_endpoint *ep;  /* held by the caller's slot */
	const struct connect_ctl *ctl;
	int epfd;                  /* async: our fds go in it; -1: none */
	void *ev_ptr;              /* their epoll data.ptr */
	struct resolve_req *req;   /* lookup under way */
	int req_fd;
	struct addr_set *addrs;    /* TCP, once resolved */
	bool resolved;
	bool mixed;                /* both families: Happy Eyeballs */
	bool v6_turn;              /* the family of the next attempt */
	unsigned cur[2];           /* next candidate per family: v6, v4 */
	unsigned left;             /* addresses not tried yet */
	struct dial_try t[DIAL_MAX];
	unsigned nt;
	unsigned turn;             /* source_address */
	uint64_t begin_ns, first_ns; /* dial_begin, first attempt */
	uint64_t deadline_ns;      /* connect_timeout_ms after resolution */
	uint64_t limit_ns;         /* an earlier deadline for it; 0: none */
	uint64_t next_ns;          /* Happy Eyeballs: next attempt due */
	uint64_t retry_ns;         /* unix EAGAIN retry */
	int last_err;
	bool setup_failed;
};

/* Tests: when set, TCP endpoints resolve to these addresses (ports
 * included), as a name with them would; a reference is taken per use. */
extern struct addr_set *dial_fake_addrs;

/* Start a connect sequence for ep (never blocks; nothing opened yet). */
void dial_begin(struct dial *d, struct pool *pool, struct pool_endpoint *ep,
		const struct connect_ctl *ctl);
/* Go as far as possible without blocking: 0 with the connected (blocking)
 * socket in *fdp; POOL_EINPROGRESS; or a POOL_E* error, errno set.
 * Afterwards (not POOL_EINPROGRESS) d holds nothing. */
int dial_step(struct dial *d, int *fdp);
/* When dial_step must run again at the latest, fds or not (now_ns). */
uint64_t dial_wake_ns(const struct dial *d);
/* Put d's descriptors, now and from now on, in epfd (readiness only). */
int dial_set_epfd(struct dial *d, int epfd);
/* Block until dial_step may progress or cancel_fd (-1: none) is
 * readable; true in the latter case. */
bool dial_wait(struct dial *d, int cancel_fd);
/* Give up: close every attempt, cancel the lookup. */
void dial_abort(struct dial *d);
/* Close a loser of Happy Eyeballs, or an attempt given up: abortive, so
 * one that got ESTABLISHED leaves no TIME_WAIT (one in SYN_SENT sends
 * nothing either way). */
void dial_close(struct dial *d, int fd);

#endif
