/*
 * One scenario end to end: a fresh server, a pool configured for the
 * scenario's policy, the request loop in the client's namespace, and the
 * TIME_WAIT count on each side once every retirement has finished.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench.h"


int cfg_policy(pool_config_t *cfg, enum policy p, enum server_kind kind)
{
	int bad = cfg_set(cfg, "teardown", policy_name(p));

	if (p == POL_PEER_FIRST) {
		bad |= cfg_set(cfg, "close_request", proto_for(kind)->close_request);
		bad |= cfg_set(cfg, "close_timeout_ms", "2000");
		bad |= cfg_set(cfg, "fallback", "abort");
	}
	return bad ? -1 : 0;
}

static pool_config_t *scenario_config(const struct scenario *sc)
{
	pool_config_t *cfg = pool_config_new();
	char num[16];
	int bad = 0;

	if (!cfg)
		return NULL;
	bad |= cfg_policy(cfg, sc->policy, sc->kind);
	snprintf(num, sizeof(num), "%d", sc->pooled ? sc->threads : 0);
	bad |= cfg_set(cfg, "max_idle", num);
	snprintf(num, sizeof(num), "%u", sc->pooled ? sc->max_uses : 0);
	bad |= cfg_set(cfg, "max_uses", num);
	bad |= cfg_set(cfg, "max_total", "0");
	bad |= cfg_set(cfg, "connect_timeout_ms", "5000");
	if (bad) {
		pool_config_free(cfg);
		return NULL;
	}
	return cfg;
}

struct tw_call {
	const char *endpoint;
	pool_tw_count_t tw;
};

static intptr_t tw_thunk(void *arg)
{
	struct tw_call *c = arg;
	int rc = pool_tw_count(c->endpoint, &c->tw);

	if (rc != 0)
		fprintf(stderr, "tcpool-bench: pool_tw_count(%s): %s\n",
		        c->endpoint, pool_strerror(rc));
	return rc;
}

/* Client-side entries counted in the client's namespace, server-side
 * ones in the server's (the same namespace on loopback). */
static int tw_once(const struct netenv *e, const char *endpoint,
                   long *client, long *server)
{
	struct tw_call c = { .endpoint = endpoint };

	if (netenv_run(e, SIDE_CLIENT, tw_thunk, &c) != 0)
		return -1;
	*client = c.tw.client;
	if (e->isolated && netenv_run(e, SIDE_SERVER, tw_thunk, &c) != 0)
		return -1;
	*server = c.tw.server;
	return 0;
}

/* Count until two counts 50 ms apart agree: the last FIN/ACK exchanges
 * of a scenario may still be in flight when pool_destroy returns. */
int tw_settled(const struct netenv *e, const char *endpoint, long *client,
               long *server)
{
	struct timespec pause = { 0, 50 * 1000000 };
	long c0 = -1, s0 = -1;

	for (int i = 0; i < 40; i++) {
		if (tw_once(e, endpoint, client, server) != 0)
			return -1;
		if (*client == c0 && *server == s0)
			return 0;
		c0 = *client;
		s0 = *server;
		nanosleep(&pause, NULL);
	}
	return 0;
}

struct loop_call {
	const struct scenario *sc;
	pool_config_t *cfg;
	const char *endpoint;
	struct loop_result res;
};

static intptr_t loop_thunk(void *arg)
{
	struct loop_call *l = arg;

	return pool_loop(l->cfg, l->endpoint, proto_for(l->sc->kind),
	                 l->sc->threads, l->sc->requests, l->sc->pooled,
	                 &l->res);
}

/* Run the loop, with the client's port range narrowed when asked. */
static int run_loop(const struct netenv *e, struct loop_call *l)
{
	const char *key = "net/ipv4/ip_local_port_range";
	char orig[64];
	int rc;

	if (!l->sc->exhaust)
		return (int)netenv_run(e, SIDE_CLIENT, loop_thunk, l);
	if (netenv_sysctl_get(e, SIDE_CLIENT, key, orig, sizeof(orig)) != 0 ||
	    netenv_sysctl(e, SIDE_CLIENT, key, EXHAUST_RANGE) != 0)
		return -1;
	rc = (int)netenv_run(e, SIDE_CLIENT, loop_thunk, l);
	if (netenv_sysctl(e, SIDE_CLIENT, key, orig) != 0)
		rc = -1;
	return rc;
}

static void fill_row(const struct scenario *sc, const struct loop_result *r,
                     struct row *row)
{
	snprintf(row->scenario, sizeof(row->scenario), "%s", sc->name);
	snprintf(row->server, sizeof(row->server), "%s",
	         server_name(sc->kind));
	snprintf(row->policy, sizeof(row->policy), "%s",
	         policy_name(sc->policy));
	row->pooled = sc->pooled;
	row->threads = sc->threads;
	row->requests = sc->requests;
	row->seconds = r->seconds;
	row->req_per_s = r->seconds > 0 ? (double)r->ok / r->seconds : 0;
	row->p50_us = r->p50_us;
	row->p99_us = r->p99_us;
	row->put_p99_us = r->put_p99_us;
	row->connects = r->connects;
	row->connect_errors = r->connect_errors;
	row->retired = r->retired;
	row->failed = r->errors > 0 || (r->connect_errors > 0 && !sc->exhaust);
	if (r->first_error)
		snprintf(row->note, sizeof(row->note), "first error: %s",
		         r->first_error < 0 ? pool_strerror(r->first_error)
		                            : strerror(r->first_error));
	if (r->fallbacks)
		snprintf(row->note + strlen(row->note),
		         sizeof(row->note) - strlen(row->note),
		         "%speer-first fallbacks: %llu", row->note[0] ? "; " : "",
		         (unsigned long long)r->fallbacks);
}

int scenario_run(const struct scenario *sc, const struct netenv *e,
                 struct row *row)
{
	struct loop_call l = { .sc = sc };
	struct server srv;
	int rc = -1;

	memset(row, 0, sizeof(*row));
	row->client_tw = row->server_tw = -1;
	if (server_start(&srv, sc->kind, e) != 0)
		return -1;
	l.endpoint = srv.endpoint;
	l.cfg = scenario_config(sc);
	if (!l.cfg)
		goto out;
	if (run_loop(e, &l) != 0)
		goto out;
	fill_row(sc, &l.res, row);
	if (tw_settled(e, srv.endpoint, &row->client_tw, &row->server_tw) != 0)
		row->failed = true;
	rc = 0;
out:
	pool_config_free(l.cfg);
	server_stop(&srv);
	return rc;
}
