/*
 * The bench's network: by default (as root) two network namespaces, one
 * for the servers and one for the client, joined by a veth pair with
 * private addresses that exist only inside them. Loopback hides what a
 * real network shows: tcp_tw_reuse=2 lets connect() recycle loopback
 * TIME_WAIT entries, so the client namespace gets tcp_tw_reuse=0.
 *
 * Threads enter a namespace with setns(), which for CLONE_NEWNET is per
 * thread: the rest of the process stays where it was, and threads the
 * entering thread creates inherit its namespace.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define NS_PREFIX "tcpb-"
#define NS_DIR "/run/netns"

static const char *const veth_name[2] = { "tcpb0", "tcpb1" };
static const char *const veth_cidr[2] = { "10.203.0.1/24", "10.203.0.2/24" };
static const char side_letter[2] = { 's', 'c' };

/* Run "ip ARG... NULL" and complain when it fails. */
static int ip(const char *arg, ...) __attribute__((sentinel));

static int ip(const char *arg, ...)
{
	const char *argv[16] = { "ip" };
	int n = 1, rc;
	va_list ap;

	va_start(ap, arg);
	for (; arg && n < 15; arg = va_arg(ap, const char *))
		argv[n++] = arg;
	va_end(ap);
	argv[n] = NULL;
	rc = run_cmd((char *const *)argv, false);
	if (rc != 0) {
		fprintf(stderr, "tcpool-bench: ip");
		for (int i = 1; argv[i]; i++)
			fprintf(stderr, " %s", argv[i]);
		fprintf(stderr, ": failed\n");
		return -1;
	}
	return 0;
}

static void ns_delete(const char *name)
{
	const char *argv[] = { "ip", "netns", "del", name, NULL };

	run_cmd((char *const *)argv, true);
}

void netenv_clean_stale(void)
{
	DIR *d = opendir(NS_DIR);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		long pid;

		if (strncmp(de->d_name, NS_PREFIX, strlen(NS_PREFIX)) != 0)
			continue;
		pid = strtol(de->d_name + strlen(NS_PREFIX), NULL, 10);
		if (pid <= 0 || pid == getpid())
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		progress("removing namespace %s left by a dead run", de->d_name);
		ns_delete(de->d_name);
	}
	closedir(d);
}

static int ns_create(struct netenv *e, enum side s)
{
	char path[64];

	snprintf(e->ns[s], sizeof(e->ns[s]), NS_PREFIX "%ld-%c",
	         (long)getpid(), side_letter[s]);
	if (ip("netns", "add", e->ns[s], NULL) != 0) {
		e->ns[s][0] = '\0';
		return -1;
	}
	snprintf(path, sizeof(path), NS_DIR "/%s", e->ns[s]);
	e->nsfd[s] = open(path, O_RDONLY | O_CLOEXEC);
	if (e->nsfd[s] < 0) {
		fprintf(stderr, "tcpool-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Address and bring up both interfaces of side s. */
static int ns_links_up(const struct netenv *e, enum side s)
{
	const char *ns = e->ns[s];

	if (ip("-n", ns, "addr", "add", veth_cidr[s], "dev", veth_name[s],
	       NULL) != 0)
		return -1;
	if (ip("-n", ns, "link", "set", "lo", "up", NULL) != 0)
		return -1;
	return ip("-n", ns, "link", "set", veth_name[s], "up", NULL);
}

static int netenv_build(struct netenv *e)
{
	if (ns_create(e, SIDE_SERVER) != 0 || ns_create(e, SIDE_CLIENT) != 0)
		return -1;
	/* created inside the server namespace, peer moved to the client's:
	 * the pair never appears in the namespace we started in */
	if (ip("-n", e->ns[SIDE_SERVER], "link", "add", veth_name[0], "type",
	       "veth", "peer", "name", veth_name[1], NULL) != 0)
		return -1;
	if (ip("-n", e->ns[SIDE_SERVER], "link", "set", veth_name[1], "netns",
	       e->ns[SIDE_CLIENT], NULL) != 0)
		return -1;
	if (ns_links_up(e, SIDE_SERVER) != 0 || ns_links_up(e, SIDE_CLIENT) != 0)
		return -1;
	/* the real-network behaviour: no reuse of TIME_WAIT for connect */
	if (netenv_sysctl(e, SIDE_CLIENT, "net/ipv4/tcp_tw_reuse", "0") != 0)
		return -1;
	return netenv_sysctl(e, SIDE_SERVER, "net/ipv4/tcp_tw_reuse", "0");
}

int netenv_setup(struct netenv *e, bool isolated)
{
	memset(e, 0, sizeof(*e));
	e->nsfd[0] = e->nsfd[1] = -1;
	if (!isolated) {
		strcpy(e->server_addr, "127.0.0.1");
		return 0;
	}
	e->isolated = true;
	strcpy(e->server_addr, "10.203.0.1");
	if (netenv_build(e) != 0) {
		netenv_teardown(e);
		return -1;
	}
	return 0;
}

void netenv_teardown(struct netenv *e)
{
	for (int s = 0; s < 2; s++) {
		if (e->nsfd[s] >= 0)
			close(e->nsfd[s]);
		e->nsfd[s] = -1;
		/* deleting a namespace also deletes the veth end inside it */
		if (e->ns[s][0])
			ns_delete(e->ns[s]);
		e->ns[s][0] = '\0';
	}
}

struct ns_call {
	int fd;
	intptr_t (*fn)(void *);
	void *arg;
	intptr_t ret;
};

static void *ns_thread(void *p)
{
	struct ns_call *c = p;

	if (setns(c->fd, CLONE_NEWNET) != 0) {
		fprintf(stderr, "tcpool-bench: setns: %s\n", strerror(errno));
		c->ret = -1;
		return NULL;
	}
	c->ret = c->fn(c->arg);
	return NULL;
}

intptr_t netenv_run(const struct netenv *e, enum side side,
                    intptr_t (*fn)(void *), void *arg)
{
	struct ns_call c = { .fd = e->nsfd[side], .fn = fn, .arg = arg };
	pthread_t t;
	int rc;

	if (!e->isolated)
		return fn(arg);
	rc = pthread_create(&t, NULL, ns_thread, &c);
	if (rc != 0) {
		fprintf(stderr, "tcpool-bench: pthread_create: %s\n", strerror(rc));
		return -1;
	}
	pthread_join(t, NULL);
	return c.ret;
}

struct sysctl_call {
	const char *path;
	const char *value; /* write when set */
	char *buf;         /* read into when value is NULL */
	size_t len;
};

static intptr_t sysctl_io(void *p)
{
	struct sysctl_call *c = p;
	char path[128];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "/proc/sys/%s", c->path);
	f = fopen(path, c->value ? "w" : "r");
	if (!f) {
		fprintf(stderr, "tcpool-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (c->value)
		ok = fputs(c->value, f) >= 0;
	else
		ok = fgets(c->buf, (int)c->len, f) != NULL;
	if (fclose(f) != 0)
		ok = 0;
	if (!ok)
		fprintf(stderr, "tcpool-bench: %s: cannot %s\n", path,
		        c->value ? "write" : "read");
	return ok ? 0 : -1;
}

int netenv_sysctl(const struct netenv *e, enum side side, const char *path,
                  const char *value)
{
	struct sysctl_call c = { .path = path, .value = value };

	return (int)netenv_run(e, side, sysctl_io, &c);
}

int netenv_sysctl_get(const struct netenv *e, enum side side,
                      const char *path, char *buf, size_t len)
{
	struct sysctl_call c = { .path = path, .buf = buf, .len = len };

	if ((int)netenv_run(e, side, sysctl_io, &c) != 0)
		return -1;
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}
