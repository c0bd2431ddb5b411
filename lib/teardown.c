/*
 * Teardown policies: how a socket is closed.
 *
 *  close       plain close(): we send the first FIN, so we hold TIME_WAIT.
 *  abort       SO_LINGER {1,0} then close(): an RST, no TIME_WAIT anywhere.
 *  peer-first  send the protocol's close request, read until the server's
 *              EOF, then close(): the server sent the first FIN and holds
 *              TIME_WAIT; we go CLOSE_WAIT -> LAST_ACK -> CLOSED.
 *
 * Peer-first must never call shutdown(SHUT_WR): that sends our FIN first
 * and makes us the active closer, turning the outcome into a race the
 * client loses most of the time. It also must read everything the server
 * sends before close(), because close() with unread bytes in the receive
 * queue sends an RST instead of a FIN (RFC 2525 2.17).
 */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pool-internal.h"

const char *teardown_name(enum pool_teardown t)
{
	switch (t) {
	case TEARDOWN_CLOSE:
		return "close";
	case TEARDOWN_ABORT:
		return "abort";
	case TEARDOWN_PEER_FIRST:
		return "peer-first";
	}
	return "?";
}

static void close_abortive(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	/* {1,0} is the one linger value that aborts; {1,N>0} would make
	 * close() block for up to N seconds, even on a non-blocking socket. */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

void teardown_now(int fd, enum pool_teardown how)
{
	if (fd < 0)
		return;
	if (how == TEARDOWN_ABORT)
		close_abortive(fd);
	else
		close(fd); /* EINTR on close must not be retried on Linux */
}

bool teardown_fallback(int fd, enum pool_teardown how, size_t *budget)
{
	enum drain_status st = DRAIN_AGAIN;

	/* The server may have answered the close request after our last
	 * read: unread, those bytes would turn the FIN into an RST. An abort
	 * sends an RST anyway. A peer past the budget gets one too. */
	if (how == TEARDOWN_CLOSE)
		st = drain_step(fd, budget);
	teardown_now(fd, st == DRAIN_EOF ? TEARDOWN_CLOSE : how);
	return st == DRAIN_EOF;
}

static enum drain_status send_close_request(int fd, const struct pool_settings *s)
{
	size_t off = 0;

	while (off < s->close_request_len) {
		ssize_t n = send(fd, s->close_request + off,
				 s->close_request_len - off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			return DRAIN_EOF; /* the peer is gone already */
		if (n <= 0)
			return DRAIN_FAILED; /* a full send buffer: state unknown */
		off += (size_t)n;
	}
	return DRAIN_AGAIN;
}

enum drain_status drain_send(int fd, const struct pool_settings *s)
{
	if (!s->close_request || s->close_request_len == 0)
		return DRAIN_FAILED;
	return send_close_request(fd, s);
}

enum drain_status drain_step(int fd, size_t *budget)
{
	char buf[4096];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == 0)
			return DRAIN_EOF;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return DRAIN_AGAIN;
			/* ECONNRESET and the like: the peer is gone, which is
			 * as closed as it gets. */
			return DRAIN_EOF;
		}
		if ((size_t)n >= *budget) {
			*budget = 0;
			return DRAIN_FAILED; /* a peer that never stops talking */
		}
		*budget -= (size_t)n;
	}
}
