/*
 * Port exhaustion by source address: the exhaust scenario's sources
 * dimension. The client namespace gets three more addresses on its veth
 * (10.203.0.3-5, which exist only there), its ephemeral range is
 * narrowed to the same 100 ports as the exhaust rows, and connect per
 * request with the close policy (every TIME_WAIT on the client) runs
 * until the first EADDRNOTAVAIL, with 1, 2 and 4 addresses in
 * source_address. Ports are per 4-tuple, so each source address brings
 * the range again toward the same server, as long as binding it takes
 * no port (IP_BIND_ADDRESS_NO_PORT, which the library sets).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define SRC_CAP 5000            /* stop there: something is wrong */

static const unsigned src_counts[] = { 1, 2, 4 };

struct src_call {
	const char *endpoint;
	char sources[80];
	uint64_t ok;
	int rc;                 /* the pool_get that ended the run */
	double seconds;
};

static pool_config_t *src_config(const char *sources)
{
	pool_config_t *cfg = pool_config_new();
	int bad;

	if (!cfg)
		return NULL;
	bad = cfg_policy(cfg, POL_CLOSE, SRV_BUILTIN) ||
	      cfg_set(cfg, "max_idle", "0") ||
	      cfg_set(cfg, "connect_timeout_ms", "5000") ||
	      cfg_set(cfg, "source_address", sources);
	if (bad) {
		pool_config_free(cfg);
		return NULL;
	}
	return cfg;
}

/* In the client's namespace: connect, one request, retire, until a
 * pool_get fails. */
static intptr_t src_loop(void *arg)
{
	struct src_call *c = arg;
	pool_config_t *cfg = src_config(c->sources);
	uint64_t t0 = bench_now_ns();
	pool_conn_t *conn;
	pool_t *pool = NULL;

	if (!cfg || pool_create(&pool, cfg) != 0) {
		pool_config_free(cfg);
		return -1;
	}
	pool_config_free(cfg);
	while (c->ok < SRC_CAP) {
		c->rc = pool_get(pool, c->endpoint, &conn);
		if (c->rc != 0)
			break;
		if (proto_roundtrip(pool_conn_fd(conn), proto_for(SRV_BUILTIN),
		                    2000) != 0) {
			pool_put(pool, conn, POOL_BROKEN);
			c->rc = POOL_ECONNECT;
			break;
		}
		pool_put(pool, conn, POOL_RETIRE);
		c->ok++;
	}
	c->seconds = (double)(bench_now_ns() - t0) / 1e9;
	pool_destroy(pool);
	return 0;
}

/* The client's extra addresses, once per run. */
static int add_addresses(const struct netenv *e)
{
	static bool done;
	char cidr[32];

	for (unsigned i = 3; !done && i <= 5; i++) {
		const char *argv[] = { "ip", "-n", e->ns[SIDE_CLIENT], "addr", "add",
		                       cidr, "dev", "tcpb1", NULL };

		snprintf(cidr, sizeof(cidr), "10.203.0.%u/24", i);
		if (run_cmd((char *const *)argv, false) != 0)
			return -1;
	}
	done = true;
	return 0;
}

static void fill(struct row *r, unsigned nsrc, const struct src_call *c)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->scenario, sizeof(r->scenario), "exhaust-sources");
	snprintf(r->server, sizeof(r->server), "%s", server_name(SRV_BUILTIN));
	snprintf(r->policy, sizeof(r->policy), "%s", policy_name(POL_CLOSE));
	r->threads = 1;
	r->sources = (int)nsrc;
	r->requests = c->ok + 1;
	r->connects = c->ok;
	r->connect_errors = c->rc == POOL_EADDRNOTAVAIL;
	r->seconds = c->seconds;
	r->client_tw = r->server_tw = -1;
	r->failed = c->rc != POOL_EADDRNOTAVAIL;
	snprintf(r->note, sizeof(r->note), "%u source address%s: %llu "
	         "connections before %s", nsrc, nsrc > 1 ? "es" : "",
	         (unsigned long long)c->ok, c->rc == POOL_EADDRNOTAVAIL
	         ? "the first EADDRNOTAVAIL" : pool_strerror(c->rc));
}

/* One run with nsrc sources against a fresh server. */
static int one_run(const struct netenv *e, unsigned nsrc, struct row *r)
{
	const char *key = "net/ipv4/ip_local_port_range";
	struct src_call c = { .rc = 0 };
	struct server srv;
	char orig[64];
	int rc = -1;

	if (server_start(&srv, SRV_BUILTIN, e) != 0)
		return -1;
	c.endpoint = srv.endpoint;
	for (unsigned i = 0; i < nsrc; i++)
		snprintf(c.sources + strlen(c.sources),
		         sizeof(c.sources) - strlen(c.sources), "%s10.203.0.%u",
		         i ? "," : "", i + 2);
	if (netenv_sysctl_get(e, SIDE_CLIENT, key, orig, sizeof(orig)) != 0 ||
	    netenv_sysctl(e, SIDE_CLIENT, key, EXHAUST_RANGE) != 0)
		goto out;
	rc = (int)netenv_run(e, SIDE_CLIENT, src_loop, &c);
	if (netenv_sysctl(e, SIDE_CLIENT, key, orig) != 0)
		rc = -1;
	if (rc == 0)
		fill(r, nsrc, &c);
out:
	server_stop(&srv);
	return rc;
}

int sources_run(const struct netenv *e, struct row *rows, int cap)
{
	int n = 0;

	if (!e->isolated) {
		progress("exhaust-sources: needs namespaces (root, no "
		         "--loopback): skipped");
		return 0;
	}
	if (add_addresses(e) != 0)
		return -1;
	for (size_t i = 0; i < sizeof(src_counts) / sizeof(src_counts[0]) &&
	     n < cap; i++) {
		progress("exhaust-sources: %u source address(es), 100 ports, "
		         "close, connect per request", src_counts[i]);
		if (one_run(e, src_counts[i], &rows[n]) != 0)
			return n ? n : -1;
		progress("    %llu connections before the first EADDRNOTAVAIL%s",
		         (unsigned long long)rows[n].connects,
		         rows[n].failed ? "  FAILED" : "");
		n++;
	}
	return n;
}
