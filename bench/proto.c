/*
 * One request and its reply, per server, and the request that asks each
 * server to close first (the peer-first close request, as a config value).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "bench.h"

/* A reply that ends at the first end-of-line mark. */
static size_t upto(const char *buf, size_t len, const char *mark)
{
	size_t m = strlen(mark);

	for (size_t i = 0; i + m <= len; i++)
		if (memcmp(buf + i, mark, m) == 0)
			return i + m;
	return 0;
}

static size_t line_reply(const char *buf, size_t len)
{
	return upto(buf, len, "\n");
}

static size_t crlf_reply(const char *buf, size_t len)
{
	return upto(buf, len, "\r\n");
}

/* Content-Length from the header block buf[0..hlen), -1 when absent. */
static long content_length(const char *buf, size_t hlen)
{
	static const char name[] = "\r\nContent-Length:";
	size_t n = sizeof(name) - 1;

	for (size_t i = 0; i + n < hlen; i++)
		if (strncasecmp(buf + i, name, n) == 0)
			return strtol(buf + i + n, NULL, 10);
	return -1;
}

/* An HTTP/1.1 response: headers, then Content-Length bytes of body. */
static size_t http_reply(const char *buf, size_t len)
{
	size_t hlen = upto(buf, len, "\r\n\r\n");
	long body;

	if (hlen == 0)
		return 0;
	body = content_length(buf, hlen);
	if (body < 0)
		return hlen;
	if (len < hlen + (size_t)body)
		return 0;
	return hlen + (size_t)body;
}

struct proto_def {
	struct proto p;
	const char *expect; /* how a good reply starts */
};

static const struct proto_def protos[SRV_COUNT] = {
	[SRV_BUILTIN] = { { "PING\n", "\"quit\\n\"", line_reply }, "PONG\n" },
	[SRV_MEMCACHED] = { { "version\r\n", "\"quit\\r\\n\"", crlf_reply },
	                    "VERSION " },
	[SRV_REDIS] = { { "PING\r\n", "\"QUIT\\r\\n\"", crlf_reply },
	                "+PONG\r\n" },
	[SRV_NGINX] = { { "GET / HTTP/1.1\r\nHost: bench\r\n\r\n",
	                  "\"GET / HTTP/1.1\\r\\nHost: bench\\r\\n"
	                  "Connection: close\\r\\n\\r\\n\"",
	                  http_reply },
	                "HTTP/1.1 200 " },
};

const struct proto *proto_for(enum server_kind kind)
{
	return &protos[kind].p;
}

static const char *expect_of(const struct proto *p)
{
	return ((const struct proto_def *)p)->expect;
}

/* Wait for events on fd until deadline; 0, or -1 with ETIMEDOUT. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	uint64_t now;
	int rc;

	do {
		now = bench_now_ns();
		if (now >= deadline) {
			errno = ETIMEDOUT;
			return -1;
		}
		rc = poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1);
	} while (rc == -1 && errno == EINTR);
	if (rc == 0) {
		errno = ETIMEDOUT;
		return -1;
	}
	return rc < 0 ? -1 : 0;
}

static int send_all(int fd, const char *buf, size_t len, uint64_t deadline)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (errno == EAGAIN) {
			if (wait_fd(fd, POLLOUT, deadline) != 0)
				return -1;
		} else if (errno != EINTR) {
			return -1;
		}
	}
	return 0;
}

/* Read until one whole reply is in buf; its length, or -1. */
static ssize_t recv_reply(int fd, const struct proto *p, char *buf,
                          size_t cap, uint64_t deadline)
{
	size_t len = 0, want = 0;

	while (want == 0) {
		ssize_t n = recv(fd, buf + len, cap - len, 0);

		if (n > 0) {
			len += (size_t)n;
			want = p->reply_len(buf, len);
			if (want == 0 && len == cap) {
				errno = EPROTO;
				return -1;
			}
		} else if (n == 0) {
			errno = EPIPE;
			return -1;
		} else if (errno == EAGAIN) {
			if (wait_fd(fd, POLLIN, deadline) != 0)
				return -1;
		} else if (errno != EINTR) {
			return -1;
		}
	}
	/* one request at a time: anything past the reply is a desync */
	if (want != len) {
		errno = EPROTO;
		return -1;
	}
	return (ssize_t)len;
}

int proto_roundtrip(int fd, const struct proto *p, int timeout_ms)
{
	uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
	const char *expect = expect_of(p);
	char buf[4096];
	ssize_t n;

	if (send_all(fd, p->request, strlen(p->request), deadline) != 0)
		return -1;
	n = recv_reply(fd, p, buf, sizeof(buf), deadline);
	if (n < 0)
		return -1;
	if ((size_t)n < strlen(expect) ||
	    memcmp(buf, expect, strlen(expect)) != 0) {
		errno = EPROTO;
		return -1;
	}
	return 0;
}
