/*
 * pool_stats_format: the pool's numbers as Prometheus text (exposition
 * format 0.0.4), one family after another, every series labelled by
 * endpoint, endpoints in byte order so that two scrapes line up.
 *
 * The numbers are copied first, shard by shard under each shard lock
 * (never allocating under it), then written with no lock held.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs.h"

/* One endpoint, as copied. */
struct snap {
	char *key;                 /* in the snapshot's key buffer */
	int policy;                /* its teardown */
	pool_stats_ex_t ex;
};

struct snapshot {
	struct snap *ep;
	size_t n, cap;
	char *keys;
	size_t keys_used, keys_cap;
};

/* ---- copying ---- */

static void shard_size(struct shard *sh, size_t *n, size_t *bytes)
{
	struct pool_endpoint *ep, *tmp;

	plock_lock(&sh->lock);
	HASH_ITER(hh, sh->table, ep, tmp) {
		(*n)++;
		*bytes += strlen(ep->key) + 1;
	}
	plock_unlock(&sh->lock);
}

/* Shard lock held; false if it holds more than sized for. */
static bool shard_copy(struct snapshot *s, struct shard *sh)
{
	struct pool_endpoint *ep, *tmp;

	HASH_ITER(hh, sh->table, ep, tmp) {
		size_t len = strlen(ep->key) + 1;
		struct snap *e = &s->ep[s->n];

		if (s->n == s->cap || s->keys_used + len > s->keys_cap)
			return false;
		e->key = s->keys + s->keys_used;
		memcpy(e->key, ep->key, len);
		s->keys_used += len;
		e->policy = (int)ep->set.teardown;
		stats_ex_locked(ep, &e->ex);
		s->n++;
	}
	return true;
}

static void snapshot_free(struct snapshot *s)
{
	free(s->ep);
	free(s->keys);
	memset(s, 0, sizeof(*s));
}

/* Sized from a first pass; an endpoint created meanwhile makes it try
 * again with room for it. */
static int snapshot_take(struct pool *pool, struct snapshot *s)
{
	size_t n, bytes, slack = 0;
	bool whole;
	int i;

	do {
		n = bytes = 0;
		for (i = 0; i < POOL_NSHARDS; i++)
			shard_size(&pool->shards[i], &n, &bytes);
		memset(s, 0, sizeof(*s));
		s->cap = n + slack;
		s->keys_cap = bytes + slack * (POOL_MAX_HOST + 16);
		s->ep = calloc(s->cap + 1, sizeof(*s->ep));
		s->keys = malloc(s->keys_cap + 1);
		if (!s->ep || !s->keys) {
			snapshot_free(s);
			return POOL_ENOMEM;
		}
		whole = true;
		for (i = 0; i < POOL_NSHARDS && whole; i++) {
			plock_lock(&pool->shards[i].lock);
			whole = shard_copy(s, &pool->shards[i]);
			plock_unlock(&pool->shards[i].lock);
		}
		if (!whole) {
			snapshot_free(s);
			slack += 8;
		}
	} while (!whole);
	return 0;
}

static int snap_cmp(const void *a, const void *b)
{
	return strcmp(((const struct snap *)a)->key, ((const struct snap *)b)->key);
}

/* ---- writing, snprintf-style ---- */

struct out {
	char *buf;
	size_t len;                /* room in buf, NUL included */
	size_t used;               /* what the whole text needs so far */
};

static void __attribute__((format(printf, 2, 3)))
put(struct out *o, const char *fmt, ...)
{
	char *at = o->used < o->len ? o->buf + o->used : NULL;
	size_t room = at ? o->len - o->used : 0;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(at, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->used += (size_t)n;
}

/* The length of the valid UTF-8 sequence at s (1 to 4), or 0 when the
 * bytes there are not one: as Go's utf8 package (promtool, the
 * Prometheus server) judges them, so no overlong form, no surrogate,
 * nothing past U+10FFFF. */
static size_t utf8_seq(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n, i;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	/* The second byte's range rules out the overlong and the rest. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* A label value: backslash, double quote and newline escaped, as the
 * exposition format requires (unix:/paths may hold any byte). A label
 * value must also be UTF-8, or promtool and the server reject the whole
 * scrape: a byte that is not part of valid UTF-8 is written as the four
 * characters \xNN (its backslash escaped in turn), as journald and
 * systemd show such paths. */
static void put_label(struct out *o, const char *v)
{
	const unsigned char *s = (const unsigned char *)v;
	size_t n;

	while (*s) {
		if (*s == '\\')
			put(o, "\\\\");
		else if (*s == '"')
			put(o, "\\\"");
		else if (*s == '\n')
			put(o, "\\n");
		else if ((n = utf8_seq(s)) == 0)
			put(o, "\\\\x%02x", *s);
		else {
			put(o, "%.*s", (int)n, (const char *)s);
			s += n;
			continue;
		}
		s++;
	}
}

static void put_head(struct out *o, const char *name, const char *type,
		     const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_series(struct out *o, const char *name, const char *ep,
		       uint64_t v)
{
	put(o, "%s{endpoint=\"", name);
	put_label(o, ep);
	put(o, "\"} %" PRIu64 "\n", v);
}

/* ---- families ---- */

/* A per-endpoint number: the offset of a uint64_t or uint32_t field. */
struct family {
	const char *name, *type, *help;
	size_t off;
	bool u32;
};

#define F64(n, t, f, h) { "tcpool_" n, t, h, offsetof(pool_stats_ex_t, f), false }
#define F32(n, t, f, h) { "tcpool_" n, t, h, offsetof(pool_stats_ex_t, f), true }

static const struct family families[] = {
	F64("gets_total", "counter", base.gets, "Successful pool_get calls."),
	F64("reuses_total", "counter", base.reuses, "pool_get calls served by an idle connection."),
	F64("connects_total", "counter", base.connects, "Connections opened."),
	F64("connect_failures_total", "counter", base.connect_failures, "Connects that failed."),
	F64("waits_total", "counter", base.waits, "pool_get calls that waited for a slot."),
	F64("wait_timeouts_total", "counter", base.wait_timeouts, "Waits that gave up (POOL_EBUSY)."),
	F64("stale_dropped_total", "counter", base.stale_dropped, "Idle connections found dead at pool_get."),
	F64("peer_first_ok_total", "counter", base.peer_first_ok, "Peer-first closes where the server closed first."),
	F64("peer_first_fallback_total", "counter", base.peer_first_fallback, "Peer-first closes that fell back."),
	F64("closed_total", "counter", base.closed, "Connections closed, for any reason."),
	F64("peer_closed_idle_total", "counter", base.peer_closed_idle, "Idle connections the server closed (watch_idle)."),
	F32("in_use", "gauge", base.in_use, "Connections checked out now."),
	F32("idle", "gauge", base.idle, "Idle connections now."),
	F32("draining", "gauge", base.draining, "Peer-first drains under way now."),
	F64("backoffs_total", "counter", backoffs, "Connect backoff periods started."),
	F64("backoff_rejects_total", "counter", backoff_rejects, "Calls failed with POOL_EBACKOFF."),
	F64("connect_waits_total", "counter", connect_waits, "Callers that waited for max_connecting."),
	F64("resolves_total", "counter", resolves, "Name resolutions finished."),
	F64("resolve_failures_total", "counter", resolve_failures, "Name resolutions that failed."),
	F64("resolve_timeouts_total", "counter", resolve_timeouts, "Name resolutions that ran out of resolve_timeout_ms."),
	F64("dns_changes_total", "counter", dns_changes, "DNS refreshes that changed the address list."),
	F64("flushes_total", "counter", flushes, "pool_flush calls that covered the endpoint."),
	F64("cache_gets_total", "counter", cache_gets, "pool_get calls served from the calling thread's cache."),
};

static void put_family(struct out *o, const struct family *f,
		       const struct snapshot *s)
{
	size_t i;

	put_head(o, f->name, f->type, f->help);
	for (i = 0; i < s->n; i++) {
		const char *p = (const char *)&s->ep[i].ex + f->off;
		uint64_t v;

		if (f->u32) {
			uint32_t v32;

			memcpy(&v32, p, sizeof(v32));
			v = v32;
		} else {
			memcpy(&v, p, sizeof(v));
		}
		put_series(o, f->name, s->ep[i].key, v);
	}
}

/* Every reason for the endpoint's own policy, zeros too (so that rate()
 * works from the first scrape), and the other policies' non-zero ones
 * (a connection found dead is closed plainly, whatever the policy). */
static void put_retired(struct out *o, const struct snapshot *s)
{
	size_t i;
	int r, p;

	put_head(o, "tcpool_retired_total", "counter",
		 "Connections retired, by reason and by the policy that closed them.");
	for (i = 0; i < s->n; i++) {
		const struct snap *e = &s->ep[i];

		for (p = 0; p < POOL_POLICY_COUNT; p++)
			for (r = 0; r < POOL_REASON_COUNT; r++) {
				uint64_t v = e->ex.retired[r][p];

				if (!v && p != e->policy)
					continue;
				put(o, "tcpool_retired_total{endpoint=\"");
				put_label(o, e->key);
				put(o, "\",policy=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
				    pool_policy_name(p), pool_reason_name(r), v);
			}
	}
}

/* 2^i microseconds in seconds, exactly: "0.000001" .. "67.108864". */
static void le_text(char *out, size_t outlen, unsigned i)
{
	uint64_t us = (uint64_t)1 << i;
	size_t n;

	n = (size_t)snprintf(out, outlen, "%" PRIu64 ".%06" PRIu64,
			     us / 1000000u, us % 1000000u);
	while (n > 2 && out[n - 1] == '0' && out[n - 2] != '.')
		out[--n] = '\0';
}

static void put_hist_one(struct out *o, const char *name, const char *ep,
			 const pool_hist_data_t *h)
{
	uint64_t cum = 0;
	char le[32];
	unsigned b;

	for (b = 0; b + 1 < POOL_HIST_BUCKETS; b++) {
		cum += h->bucket[b];
		le_text(le, sizeof(le), b);
		put(o, "%s_bucket{endpoint=\"", name);
		put_label(o, ep);
		put(o, "\",le=\"%s\"} %" PRIu64 "\n", le, cum);
	}
	put(o, "%s_bucket{endpoint=\"", name);
	put_label(o, ep);
	put(o, "\",le=\"+Inf\"} %" PRIu64 "\n", h->count);
	put(o, "%s_sum{endpoint=\"", name);
	put_label(o, ep);
	put(o, "\"} %" PRIu64 ".%09" PRIu64 "\n", h->sum_ns / 1000000000u,
	    h->sum_ns % 1000000000u);
	put(o, "%s_count{endpoint=\"", name);
	put_label(o, ep);
	put(o, "\"} %" PRIu64 "\n", h->count);
}

static const struct {
	const char *name, *help;
} hists[POOL_HIST_COUNT] = {
	[POOL_HIST_ACQUIRE] = { "tcpool_acquire_seconds",
		"Time in pool_get beyond the idle fast path." },
	[POOL_HIST_CONNECT] = { "tcpool_connect_seconds",
		"Time to connect, successful connects." },
	[POOL_HIST_DRAIN] = { "tcpool_drain_seconds",
		"Peer-first closes: from the close request to EOF or fallback." },
	[POOL_HIST_LIFETIME] = { "tcpool_connection_lifetime_seconds",
		"Age of connections at retirement." },
};

static void put_hists(struct out *o, const struct snapshot *s)
{
	size_t i;
	int h;

	for (h = 0; h < POOL_HIST_COUNT; h++) {
		put_head(o, hists[h].name, "histogram", hists[h].help);
		for (i = 0; i < s->n; i++)
			put_hist_one(o, hists[h].name, s->ep[i].key,
				     &s->ep[i].ex.hist[h]);
	}
}

int metrics_prometheus(struct pool *pool, char *buf, size_t len)
{
	struct out o = { buf, len, 0 };
	struct snapshot s;
	size_t i;
	int rc;

	rc = snapshot_take(pool, &s);
	if (rc)
		return rc;
	qsort(s.ep, s.n, sizeof(*s.ep), snap_cmp);
	for (i = 0; i < sizeof(families) / sizeof(families[0]); i++)
		put_family(&o, &families[i], &s);
	put_retired(&o, &s);
	put_hists(&o, &s);
	put_head(&o, "tcpool_misuse_total", "counter",
		 "Bad pool_put calls seen (pool-wide).");
	put(&o, "tcpool_misuse_total %" PRIu64 "\n",
	    (uint64_t)atomic_load(&pool->misuse));
	snapshot_free(&s);
	if (len)
		buf[o.used < len ? o.used : len - 1] = '\0';
	return o.used > INT_MAX ? POOL_ENOMEM : (int)o.used;
}

POOL_API int pool_stats_format(pool_t *pool, char *buf, size_t len, int format)
{
	if (!pool || (!buf && len))
		return POOL_EINVAL;
	if (format != POOL_FORMAT_PROMETHEUS)
		return POOL_EINVAL;
	fork_check(pool);
	return metrics_prometheus(pool, buf, len);
}
