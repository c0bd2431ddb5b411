/*
 * Servers under test: the built-in line server (in-process, on a thread
 * inside the server namespace) and memcached, redis-server and nginx from
 * the distribution, each in its own temp dir with its own config, started
 * in the server namespace with "ip netns exec".
 *
 * Every start takes a port never used before in this run, so TIME_WAIT
 * entries from one scenario can never be counted in another: they are
 * attributed by the server's port, and they live 60 s.
 */
#include "config.h"

#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "lineserver.h"

#define MAX_PORTS 1024
#define MAX_RUNNING 8

static const char *const names[SRV_COUNT] = {
	"builtin", "memcached", "redis", "nginx"
};
static const char *const programs[SRV_COUNT] = {
	NULL, "memcached", "redis-server", "nginx"
};
static char paths[SRV_COUNT][256]; /* found by server_available() */

/* ports handed out so far; only the orchestrating thread picks ports */
static uint16_t used_ports[MAX_PORTS];
static int nused;

/* external servers running now, for the signal path */
struct running {
	pid_t pid;
	char dir[64];
};
static pthread_mutex_t running_lock = PTHREAD_MUTEX_INITIALIZER;
static struct running running[MAX_RUNNING];

const char *server_name(enum server_kind kind)
{
	return names[kind];
}

const char *server_program(enum server_kind kind)
{
	return programs[kind];
}

bool server_available(enum server_kind kind)
{
	if (!programs[kind] || paths[kind][0])
		return true;
	return find_program(programs[kind], paths[kind], sizeof(paths[kind]));
}

static bool port_used(uint16_t port)
{
	for (int i = 0; i < nused; i++)
		if (used_ports[i] == port)
			return true;
	return false;
}

/* A free port from the kernel: bind(port 0) without SO_REUSEADDR skips
 * ports that still have sockets, TIME_WAIT ones included. */
static intptr_t probe_port(void *arg)
{
	const char *addr = arg;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	intptr_t port = -1;

	if (fd < 0)
		return -1;
	inet_pton(AF_INET, addr, &sin.sin_addr);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

static int pick_port(const struct netenv *e)
{
	for (int tries = 0; tries < 100 && nused < MAX_PORTS; tries++) {
		intptr_t port = netenv_run(e, SIDE_SERVER, probe_port,
		                           (void *)e->server_addr);

		if (port <= 0)
			break;
		if (port_used((uint16_t)port))
			continue;
		used_ports[nused++] = (uint16_t)port;
		return (int)port;
	}
	fprintf(stderr, "tcpool-bench: no fresh port for a server\n");
	return -1;
}

static intptr_t builtin_start(void *arg)
{
	struct server *s = arg;
	const char *addr = strchr(s->endpoint, ':');
	char host[32];
	struct lineserver_opts o = {
		.family = AF_INET,
		.bind_addr = host,
		.port = s->port,
		.on_quit = LS_QUIT_CLOSE,
		/* The async scenario's 256 connects at once: with the
		 * default 128 the kernel drops SYNs, resent only after 1 s,
		 * and p99 measures that instead of the pool. */
		.backlog = 1024,
	};

	snprintf(host, sizeof(host), "%.*s", (int)(addr - s->endpoint),
	         s->endpoint);
	s->ls = lineserver_start(&o);
	if (!s->ls) {
		fprintf(stderr, "tcpool-bench: line server on %s: %s\n",
		        s->endpoint, strerror(errno));
		return -1;
	}
	return 0;
}

/* Track (dir set) or forget (dir NULL) the server with this pid. */
static void running_set(pid_t pid, const char *dir)
{
	pid_t want = dir ? 0 : pid;

	pthread_mutex_lock(&running_lock);
	for (int i = 0; i < MAX_RUNNING; i++) {
		if (running[i].pid == want) {
			running[i].pid = dir ? pid : 0;
			snprintf(running[i].dir, sizeof(running[i].dir), "%s",
			         dir ? dir : "");
			break;
		}
	}
	pthread_mutex_unlock(&running_lock);
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	remove(path);
	return 0;
}

static void remove_dir(const char *dir)
{
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

void servers_kill_all(void)
{
	pthread_mutex_lock(&running_lock);
	for (int i = 0; i < MAX_RUNNING; i++) {
		if (running[i].pid > 0) {
			kill(running[i].pid, SIGKILL);
			waitpid(running[i].pid, NULL, 0);
			remove_dir(running[i].dir);
			running[i].pid = 0;
		}
	}
	pthread_mutex_unlock(&running_lock);
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		fprintf(stderr, "tcpool-bench: %s: %s\n", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	return 0;
}

/* A minimal nginx.conf: everything nginx writes goes to the temp dir. */
static int nginx_conf(const struct server *s, const char *addr, char *path,
                      size_t len)
{
	char text[2048];
	const char *d = s->dir;

	snprintf(path, len, "%s/nginx.conf", d);
	snprintf(text, sizeof(text),
	         "daemon off;\nmaster_process off;\nworker_processes 1;\n"
	         "pid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
	         "events { worker_connections 4096; }\n"
	         "http {\n  access_log off;\n"
	         "  client_body_temp_path %s/body;\n  proxy_temp_path %s/proxy;\n"
	         "  fastcgi_temp_path %s/fastcgi;\n  uwsgi_temp_path %s/uwsgi;\n"
	         "  scgi_temp_path %s/scgi;\n"
	         "  keepalive_requests 1000000;\n  keepalive_timeout 300s;\n"
	         "  server {\n    listen %s:%u;\n"
	         "    location / { default_type text/plain; return 200 \"ok\\n\"; }\n"
	         "  }\n}\n",
	         d, d, d, d, d, d, d, addr, s->port);
	return write_file(path, text);
}

/* Fill argv (from index i) with the server's own command line. */
static int server_argv(struct server *s, const char *addr, const char **argv,
                       int i, char *port, char *conf, size_t conflen)
{
	argv[i++] = paths[s->kind];
	switch (s->kind) {
	case SRV_MEMCACHED:
		argv[i++] = "-p"; argv[i++] = port;
		argv[i++] = "-l"; argv[i++] = addr;
		argv[i++] = "-U"; argv[i++] = "0";
		if (geteuid() == 0) {
			argv[i++] = "-u";
			argv[i++] = "root";
		}
		break;
	case SRV_REDIS:
		argv[i++] = "--port"; argv[i++] = port;
		argv[i++] = "--bind"; argv[i++] = addr;
		argv[i++] = "--save"; argv[i++] = "";
		argv[i++] = "--appendonly"; argv[i++] = "no";
		argv[i++] = "--daemonize"; argv[i++] = "no";
		argv[i++] = "--protected-mode"; argv[i++] = "no";
		argv[i++] = "--dir"; argv[i++] = s->dir;
		break;
	case SRV_NGINX:
		if (nginx_conf(s, addr, conf, conflen) != 0)
			return -1;
		argv[i++] = "-p"; argv[i++] = s->dir;
		argv[i++] = "-e"; argv[i++] = "error.log";
		argv[i++] = "-c"; argv[i++] = conf;
		break;
	default:
		return -1;
	}
	argv[i] = NULL;
	return 0;
}

static int spawn_server(struct server *s, const struct netenv *e)
{
	const char *argv[32];
	char port[8], conf[128], log[96];
	int i = 0;

	snprintf(port, sizeof(port), "%u", s->port);
	snprintf(log, sizeof(log), "%s/server.log", s->dir);
	if (e->isolated) {
		argv[i++] = "ip"; argv[i++] = "netns"; argv[i++] = "exec";
		argv[i++] = e->ns[SIDE_SERVER];
	}
	if (server_argv(s, e->server_addr, argv, i, port, conf, sizeof(conf)))
		return -1;
	if (spawn_child(&s->pid, (char *const *)argv, log) != 0) {
		s->pid = 0;
		return -1;
	}
	running_set(s->pid, s->dir);
	return 0;
}

/* One connection attempt, closed with RST so that it leaves no
 * TIME_WAIT to be counted. 0 when the server accepted. */
static intptr_t probe_connect(void *arg)
{
	const struct server *s = arg;
	struct sockaddr_in sin = { .sin_family = AF_INET,
	                           .sin_port = htons(s->port) };
	struct linger lg = { 1, 0 };
	char host[32];
	int fd, rc;

	snprintf(host, sizeof(host), "%.*s",
	         (int)strcspn(s->endpoint, ":"), s->endpoint);
	inet_pton(AF_INET, host, &sin.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	return rc == 0 ? 0 : -1;
}

static void show_log(const struct server *s)
{
	char path[96], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/server.log", s->dir);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "  | %s", line);
	fclose(f);
}

/* Wait up to 10 s until the server accepts a connection. */
static int wait_ready(struct server *s, const struct netenv *e)
{
	struct timespec pause = { 0, 20 * 1000000 };

	for (int i = 0; i < 500; i++) {
		if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
			running_set(s->pid, NULL);
			s->pid = 0;
			break;
		}
		if (netenv_run(e, SIDE_CLIENT, probe_connect, s) == 0)
			return 0;
		nanosleep(&pause, NULL);
	}
	fprintf(stderr, "tcpool-bench: %s did not start on %s\n",
	        names[s->kind], s->endpoint);
	show_log(s);
	return -1;
}

static int external_start(struct server *s, const struct netenv *e)
{
	strcpy(s->dir, "/tmp/tcpool-bench.XXXXXX");
	if (!mkdtemp(s->dir)) {
		fprintf(stderr, "tcpool-bench: mkdtemp: %s\n", strerror(errno));
		s->dir[0] = '\0';
		return -1;
	}
	if (spawn_server(s, e) != 0)
		return -1;
	return wait_ready(s, e);
}

int server_start(struct server *s, enum server_kind kind,
                 const struct netenv *e)
{
	int port, rc;

	memset(s, 0, sizeof(*s));
	s->kind = kind;
	port = pick_port(e);
	if (port < 0)
		return -1;
	s->port = (uint16_t)port;
	snprintf(s->endpoint, sizeof(s->endpoint), "%s:%u", e->server_addr,
	         s->port);
	if (kind == SRV_BUILTIN)
		rc = (int)netenv_run(e, SIDE_SERVER, builtin_start, s);
	else
		rc = external_start(s, e);
	if (rc != 0)
		server_stop(s);
	return rc;
}

/* SIGTERM, then SIGKILL if it is still there after 5 s. */
static void reap(pid_t pid)
{
	struct timespec pause = { 0, 10 * 1000000 };

	kill(pid, SIGTERM);
	for (int i = 0; i < 500; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return;
		nanosleep(&pause, NULL);
	}
	fprintf(stderr, "tcpool-bench: pid %ld ignored SIGTERM, killing it\n",
	        (long)pid);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

void server_stop(struct server *s)
{
	if (s->ls) {
		lineserver_stop(s->ls);
		s->ls = NULL;
	}
	if (s->pid > 0) {
		reap(s->pid);
		running_set(s->pid, NULL);
		s->pid = 0;
	}
	if (s->dir[0]) {
		remove_dir(s->dir);
		s->dir[0] = '\0';
	}
}
