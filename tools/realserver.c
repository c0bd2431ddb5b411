/*
 * Real servers (see realserver.h): a guard process per server that owns
 * the server process and its directory, driven over a SOCK_SEQPACKET
 * control socket by fixed-size messages.
 *
 * Why a guard and not just the server as our child: Check runs each test
 * in a forked child and, on failure, leaves it with _exit(), or kills its
 * whole process group on a timeout. Neither runs cleanup code, so the one
 * process that can always clean up is one that outlives the test and
 * learns of its death from the kernel (EOF on the control socket).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "realserver.h"

#define RS_READY_MS 5000   /* a server that does not listen by then failed */
#define RS_STOP_MS 3000    /* SIGTERM, then SIGKILL after this */
#define RS_ATTEMPTS 5      /* ports tried (a port can be taken meanwhile) */
#define RS_REPLY_MS 2000   /* realserver_roundtrip's bound */
#define RS_GUARD_MS (RS_ATTEMPTS * (RS_READY_MS + RS_STOP_MS) + 2000)

enum rs_cmd { RS_CMD_START = 'B', RS_CMD_RESTART = 'R', RS_CMD_KILL = 'K',
	      RS_CMD_STOP = 'S' };

/* One control message; a reply echoes the command. */
struct rs_msg {
	char cmd;
	int err;        /* reply: 0 or an errno value */
	uint16_t port;
	pid_t pid;
};

struct realserver {
	enum rs_kind kind;
	struct realserver_opts opts;
	uint16_t port;
	pid_t pid;      /* the server (in the guard: its child) */
	pid_t guard;    /* caller side only */
	int ctl;        /* control socket */
	char dir[128];  /* the temporary directory */
	char endpoint[32];
};

struct rs_proto {
	const char *name;
	const char *path;
	const char *request;
	const char *reply_prefix;
	const char *close_request;
};

static const struct rs_proto protos[RS_NKINDS] = {
	[RS_MEMCACHED] = { "memcached", "/usr/bin/memcached", "version\r\n",
			   "VERSION ", "\"quit\\r\\n\"" },
	[RS_REDIS] = { "redis", "/usr/bin/redis-server", "PING\r\n",
		       "+PONG\r\n", "\"QUIT\\r\\n\"" },
	[RS_NGINX] = { "nginx", "/usr/sbin/nginx",
		       "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 ",
		       "\"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n\"" },
};

static long long rs_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void rs_sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* ---- files ---------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void remove_tree(const char *dir)
{
	if (dir[0])
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void path_in(const struct realserver *rs, const char *name, char *buf,
		    size_t len)
{
	snprintf(buf, len, "%s/%s", rs->dir, name);
}

/* nginx opens every path it may need at start-up: keep them all inside the
 * temporary directory so that nothing is written elsewhere. */
static int write_nginx_conf(const struct realserver *rs)
{
	char path[192], keepalive[64] = "", ssl[1024] = "";
	const char *d = rs->dir;
	FILE *f;

	path_in(rs, "nginx.conf", path, sizeof(path));
	f = fopen(path, "we");
	if (!f)
		return errno;
	if (rs->opts.idle_timeout_s)
		snprintf(keepalive, sizeof(keepalive), "\tkeepalive_timeout %us;\n",
			 rs->opts.idle_timeout_s);
	/* With TLS the reply names the SNI the client sent ("ok NAME"). */
	if (rs->opts.tls_cert_file)
		snprintf(ssl, sizeof(ssl), " ssl;\n\t\tssl_certificate %s;\n"
			 "\t\tssl_certificate_key %s", rs->opts.tls_cert_file,
			 rs->opts.tls_key_file);
	fprintf(f,
		"daemon off;\nmaster_process off;\nworker_processes 1;\n"
		"pid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
		"events { worker_connections 256; }\n"
		"http {\n\taccess_log off;\n"
		"\tclient_body_temp_path %s/client_body;\n"
		"\tproxy_temp_path %s/proxy;\n\tfastcgi_temp_path %s/fastcgi;\n"
		"\tuwsgi_temp_path %s/uwsgi;\n\tscgi_temp_path %s/scgi;\n"
		"%s"
		"\tserver {\n\t\tlisten 127.0.0.1:%u%s;\n"
		"\t\tlocation / { return 200 \"ok%s\\n\"; }\n\t}\n}\n",
		d, d, d, d, d, d, d, keepalive, rs->port, ssl,
		rs->opts.tls_cert_file ? " $ssl_server_name" : "");
	return fclose(f) == 0 ? 0 : errno;
}

/* ---- the server's command line (built in the guard) ------------------------- */

struct rs_argv {
	char *v[34 + RS_MAX_EXTRA_ARGS];
	int n;
	char buf[8][192];
	int nbuf;
};

static void arg(struct rs_argv *a, const char *s)
{
	a->v[a->n++] = (char *)s;
	a->v[a->n] = NULL;
}

static void argf(struct rs_argv *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void argf(struct rs_argv *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->buf[a->nbuf], sizeof(a->buf[0]), fmt, ap);
	va_end(ap);
	arg(a, a->buf[a->nbuf++]);
}

static void argv_memcached(const struct realserver *rs, struct rs_argv *a)
{
	arg(a, "-p");
	argf(a, "%u", rs->port);
	arg(a, "-l");
	arg(a, "127.0.0.1");
	arg(a, "-U");
	arg(a, "0");
	arg(a, "-t");
	arg(a, "2");
	if (rs->opts.idle_timeout_s) {
		arg(a, "-o");
		argf(a, "idle_timeout=%u", rs->opts.idle_timeout_s);
	}
	/* memcached refuses to run as root unless told which user to be. */
	if (geteuid() == 0) {
		arg(a, "-u");
		arg(a, "root");
	}
}

/* TLS only: the plain port is off, and clients are not asked for a
 * certificate (redis insists on a CA file all the same). */
static void argv_redis_tls(const struct realserver *rs, struct rs_argv *a)
{
	arg(a, "--port");
	arg(a, "0");
	arg(a, "--tls-port");
	argf(a, "%u", rs->port);
	arg(a, "--tls-cert-file");
	arg(a, rs->opts.tls_cert_file);
	arg(a, "--tls-key-file");
	arg(a, rs->opts.tls_key_file);
	arg(a, "--tls-ca-cert-file");
	arg(a, rs->opts.tls_ca_file);
	arg(a, "--tls-auth-clients");
	arg(a, "no");
}

static void argv_redis(const struct realserver *rs, struct rs_argv *a)
{
	if (rs->opts.tls_cert_file) {
		argv_redis_tls(rs, a);
	} else {
		arg(a, "--port");
		argf(a, "%u", rs->port);
	}
	arg(a, "--bind");
	arg(a, "127.0.0.1");
	arg(a, "--save");
	arg(a, "");
	arg(a, "--appendonly");
	arg(a, "no");
	arg(a, "--daemonize");
	arg(a, "no");
	arg(a, "--dir");
	arg(a, rs->dir);
	arg(a, "--logfile");
	arg(a, "");
	if (rs->opts.idle_timeout_s) {
		arg(a, "--timeout");
		argf(a, "%u", rs->opts.idle_timeout_s);
	}
}

/* The caller's extra arguments, after ours (a later redis option wins). */
static int extra_args(const struct realserver *rs, struct rs_argv *a)
{
	const char *const *x = rs->opts.extra_args;
	int i;

	for (i = 0; x && x[i]; i++) {
		if (i == RS_MAX_EXTRA_ARGS)
			return E2BIG;
		arg(a, x[i]);
	}
	return 0;
}

static int build_argv(const struct realserver *rs, struct rs_argv *a)
{
	int err;

	a->n = a->nbuf = 0;
	arg(a, protos[rs->kind].path);
	switch (rs->kind) {
	case RS_MEMCACHED:
		argv_memcached(rs, a);
		return extra_args(rs, a);
	case RS_REDIS:
		argv_redis(rs, a);
		return extra_args(rs, a);
	case RS_NGINX:
		err = write_nginx_conf(rs);
		if (err)
			return err;
		arg(a, "-p");
		argf(a, "%s/", rs->dir);
		arg(a, "-c");
		argf(a, "%s/nginx.conf", rs->dir);
		/* -e: the log nginx opens before it has read its config. */
		arg(a, "-e");
		argf(a, "%s/error.log", rs->dir);
		return extra_args(rs, a);
	default:
		return EINVAL;
	}
}

/* ---- sockets of this namespace ------------------------------------------- */

/* Call fn for every TCP socket of this namespace in /proc/net/tcp and
 * tcp6 (the reader's namespace) until it returns false. */
static void each_socket(bool (*fn)(unsigned lport, unsigned rport, unsigned state,
				   unsigned long inode, void *ud), void *ud)
{
	static const char *const files[] = { "/proc/net/tcp", "/proc/net/tcp6" };
	char line[512];
	bool more = true;
	unsigned i;

	for (i = 0; i < 2 && more; i++) {
		FILE *f = fopen(files[i], "re");

		while (f && more && fgets(line, sizeof(line), f)) {
			unsigned lport, rport, state;
			unsigned long inode;

			if (sscanf(line, " %*u: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%x %x"
				   " %*x:%*x %*x:%*x %*x %*u %*u %lu",
				   &lport, &rport, &state, &inode) == 4)
				more = fn(lport, rport, state, inode, ud);
		}
		if (f)
			fclose(f);
	}
}

#define TCP_LISTEN_STATE 0x0A

static bool names_port(unsigned lport, unsigned rport, unsigned state,
		       unsigned long inode, void *ud)
{
	uint16_t *port = ud;

	(void)inode;
	if (state != TCP_LISTEN_STATE && (lport == *port || rport == *port)) {
		*port = 0;
		return false;
	}
	return true;
}

bool realserver_port_is_quiet(uint16_t port)
{
	uint16_t p = port;

	each_socket(names_port, &p);
	return p != 0;
}

struct listeners {
	uint16_t port;
	unsigned long inodes[8];
	int n;
};

static bool listener_of(unsigned lport, unsigned rport, unsigned state,
			unsigned long inode, void *ud)
{
	struct listeners *l = ud;

	(void)rport;
	if (lport == l->port && state == TCP_LISTEN_STATE)
		l->inodes[l->n++] = inode;
	return l->n < 8;
}

/* Whether pid holds a socket listening on port. A successful connect
 * would not tell: when our server failed to bind, the port's owner is
 * someone else. */
static bool pid_listens(pid_t pid, uint16_t port)
{
	struct listeners l = { .port = port };
	char dirpath[64], link[64], want[64];
	bool found = false;
	struct dirent *e;
	DIR *d;
	int i;

	each_socket(listener_of, &l);
	if (l.n == 0)
		return false;
	snprintf(dirpath, sizeof(dirpath), "/proc/%d/fd", (int)pid);
	d = opendir(dirpath);
	if (!d)
		return false;
	while (!found && (e = readdir(d)) != NULL) {
		char path[384];
		ssize_t len;

		snprintf(path, sizeof(path), "%s/%s", dirpath, e->d_name);
		len = readlink(path, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = '\0';
		for (i = 0; i < l.n && !found; i++) {
			snprintf(want, sizeof(want), "socket:[%lu]", l.inodes[i]);
			found = strcmp(link, want) == 0;
		}
	}
	closedir(d);
	return found;
}

/* ---- in the guard: starting and stopping the server ------------------------ */

static uint16_t any_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	uint16_t port = 0;

	if (fd < 0)
		return 0;
	if (bind(fd, (struct sockaddr *)&sa, len) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd); /* never connected: no TIME_WAIT */
	return port;
}

/* A free loopback port: bind to port 0 and let go. The kernel may offer a
 * port that an earlier server in this namespace had, with TIME_WAIT
 * sockets still naming it, which would spoil the counts of tests: skip
 * those. Someone may take the port before the server binds; the caller
 * retries with another one. */
static uint16_t free_port(void)
{
	uint16_t port = 0;
	int i;

	for (i = 0; i < 50; i++) {
		port = any_port();
		if (!port || realserver_port_is_quiet(port))
			break;
	}
	return port;
}

static void reset_signals(void)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t none;
	int sig;

	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* In the server's process, between fork and exec. */
static void exec_server(const struct realserver *rs, struct rs_argv *a,
			pid_t guard)
{
	char log[192];
	int fd;

	/* The server must not outlive its guard, whatever kills the guard. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != guard)
		_exit(127);
	path_in(rs, "server.log", log, sizeof(log));
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
	}
	if (chdir(rs->dir) != 0)
		_exit(127);
	execv(a->v[0], a->v);
	dprintf(STDERR_FILENO, "exec %s: %s\n", a->v[0], strerror(errno));
	_exit(127);
}

/* Reap the server if it exited; true if it is gone. */
static bool reap(struct realserver *rs)
{
	pid_t r;

	if (!rs->pid)
		return true;
	do {
		r = waitpid(rs->pid, NULL, WNOHANG);
	} while (r == -1 && errno == EINTR);
	if (r == 0)
		return false;
	rs->pid = 0;
	return true;
}

static void server_stop(struct realserver *rs)
{
	long long end = rs_now_ms() + RS_STOP_MS;

	if (!rs->pid)
		return;
	/* memcached notices SIGTERM only on its next one-second clock tick,
	 * and then just exits, as it does on SIGKILL: the kernel closes its
	 * sockets either way. */
	kill(rs->pid, rs->kind == RS_MEMCACHED ? SIGKILL : SIGTERM);
	while (!reap(rs) && rs_now_ms() < end)
		rs_sleep_ms(5);
	if (!rs->pid)
		return;
	kill(rs->pid, SIGKILL);
	while (waitpid(rs->pid, NULL, 0) == -1 && errno == EINTR)
		;
	rs->pid = 0;
}

/* Start the server on rs->port and wait until it listens there. Returns 0,
 * EADDRINUSE when it exited early (most likely: the port was taken), or
 * another errno value. */
static int server_spawn(struct realserver *rs)
{
	long long end = rs_now_ms() + RS_READY_MS;
	struct rs_argv a;
	pid_t guard = getpid();
	int err = build_argv(rs, &a);

	if (err)
		return err;
	rs->pid = fork();
	if (rs->pid < 0) {
		rs->pid = 0;
		return errno;
	}
	if (rs->pid == 0)
		exec_server(rs, &a, guard);
	for (;;) {
		if (reap(rs))
			return EADDRINUSE;
		if (pid_listens(rs->pid, rs->port))
			return 0;
		if (rs_now_ms() >= end) {
			server_stop(rs);
			return ETIMEDOUT;
		}
		rs_sleep_ms(10);
	}
}

/* Start the server: on new ports (first start) or on the same one. */
static int server_launch(struct realserver *rs, bool new_port)
{
	int err = EADDRINUSE, i;

	for (i = 0; i < RS_ATTEMPTS && err == EADDRINUSE; i++) {
		if (new_port)
			rs->port = free_port();
		else if (i > 0)
			rs_sleep_ms(100); /* the old one may still hold it */
		if (!rs->port)
			return EADDRNOTAVAIL;
		err = server_spawn(rs);
	}
	return err;
}

/* ---- the guard ---------------------------------------------------------------- */

/* Keep only the control socket (as fd 3) and the standard descriptors: a
 * copy of the caller's sockets held here would keep a connection open
 * after the caller closed it, and change who closes first. */
static int guard_fds(const struct realserver *rs, int ctl)
{
	char log[192];
	int fd;

	if (ctl != 3) {
		if (dup2(ctl, 3) < 0)
			return -1;
		ctl = 3;
	}
	if (close_range(4, ~0U, 0) != 0) {
		for (fd = 4; fd < 65536; fd++)
			close(fd);
	}
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && fd != STDIN_FILENO) {
		dup2(fd, STDIN_FILENO);
		close(fd);
	}
	path_in(rs, "server.log", log, sizeof(log));
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
	fcntl(ctl, F_SETFD, FD_CLOEXEC);
	return ctl;
}

static void guard_reply(struct realserver *rs, int ctl, struct rs_msg *m)
{
	m->port = rs->port;
	m->pid = rs->pid;
	send(ctl, m, sizeof(*m), MSG_NOSIGNAL);
}

static void guard_do(struct realserver *rs, struct rs_msg *m)
{
	switch (m->cmd) {
	case RS_CMD_RESTART:
		server_stop(rs);
		m->err = server_launch(rs, false);
		break;
	case RS_CMD_KILL:
		if (rs->pid) {
			kill(rs->pid, SIGKILL);
			while (waitpid(rs->pid, NULL, 0) == -1 && errno == EINTR)
				;
			rs->pid = 0;
		}
		m->err = 0;
		break;
	default:
		m->err = EINVAL;
	}
}

static void __attribute__((noreturn)) guard_main(struct realserver *rs, int ctl)
{
	struct rs_msg m = { .cmd = RS_CMD_START };

	/* Out of the test's process group: Check kills that group on a
	 * timeout, and we must survive to clean up. */
	setpgid(0, 0);
	reset_signals();
	ctl = guard_fds(rs, ctl);
	m.err = ctl < 0 ? errno : server_launch(rs, true);
	guard_reply(rs, ctl, &m);
	for (;;) {
		struct pollfd p = { .fd = ctl, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 100) <= 0) {
			reap(rs); /* killed from outside: no zombie */
			continue;
		}
		n = recv(ctl, &m, sizeof(m), 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(m) || m.cmd == RS_CMD_STOP)
			break; /* EOF: the owner is gone, or asked to stop */
		guard_do(rs, &m);
		guard_reply(rs, ctl, &m);
	}
	server_stop(rs);
	remove_tree(rs->dir);
	m.err = 0;
	guard_reply(rs, ctl, &m); /* after the cleanup: the owner waits for it */
	_exit(0);
}

/* ---- the caller's side ---------------------------------------------------------- */

/* Wait for the guard's reply; -1 on timeout or EOF. */
static int rs_wait_reply(struct realserver *rs, struct rs_msg *m, int timeout_ms)
{
	struct pollfd p = { .fd = rs->ctl, .events = POLLIN };
	long long end = rs_now_ms() + timeout_ms;
	ssize_t n;
	int r;

	do {
		long long left = end - rs_now_ms();

		r = poll(&p, 1, left > 0 ? (int)left : 0);
	} while (r == -1 && errno == EINTR);
	if (r <= 0)
		return -1;
	do {
		n = recv(rs->ctl, m, sizeof(*m), 0);
	} while (n == -1 && errno == EINTR);
	return n == (ssize_t)sizeof(*m) ? 0 : -1;
}

static int rs_call(struct realserver *rs, char cmd)
{
	struct rs_msg m = { .cmd = cmd };

	if (send(rs->ctl, &m, sizeof(m), MSG_NOSIGNAL) != (ssize_t)sizeof(m))
		return errno;
	if (rs_wait_reply(rs, &m, RS_GUARD_MS) != 0)
		return ETIMEDOUT;
	rs->pid = m.pid;
	return m.err;
}

static void print_log(const struct realserver *rs)
{
	char path[192], line[512];
	FILE *f;

	path_in(rs, "server.log", path, sizeof(path));
	f = fopen(path, "re");
	if (!f)
		return;
	fprintf(stderr, "realserver: %s did not start; its log:\n", protos[rs->kind].name);
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "  %s", line);
	fclose(f);
}

/* Wait for the guard to exit, killing it if it does not. */
static void reap_guard(struct realserver *rs)
{
	long long end = rs_now_ms() + RS_STOP_MS + 2000;
	pid_t r;

	for (;;) {
		r = waitpid(rs->guard, NULL, WNOHANG);
		if (r == rs->guard || (r == -1 && errno != EINTR))
			return;
		if (rs_now_ms() >= end)
			break;
		rs_sleep_ms(5);
	}
	/* The server dies with it (PDEATHSIG); the directory is ours now. */
	kill(rs->guard, SIGKILL);
	while (waitpid(rs->guard, NULL, 0) == -1 && errno == EINTR)
		;
	remove_tree(rs->dir);
}

const char *realserver_name(enum rs_kind kind)
{
	return (unsigned)kind < RS_NKINDS ? protos[kind].name : "?";
}

bool realserver_available(enum rs_kind kind)
{
	return (unsigned)kind < RS_NKINDS && access(protos[kind].path, X_OK) == 0;
}

static struct realserver *rs_alloc(enum rs_kind kind,
				   const struct realserver_opts *opts)
{
	const char *tmp = getenv("TMPDIR");
	struct realserver *rs = calloc(1, sizeof(*rs));

	if (!rs)
		return NULL;
	rs->kind = kind;
	rs->ctl = -1;
	if (opts)
		rs->opts = *opts;
	if (!tmp || !*tmp || strlen(tmp) > 64)
		tmp = "/tmp";
	snprintf(rs->dir, sizeof(rs->dir), "%s/tcpool-%s-XXXXXX", tmp,
		 protos[kind].name);
	if (!mkdtemp(rs->dir)) {
		free(rs);
		return NULL;
	}
	return rs;
}

static int rs_fork_guard(struct realserver *rs)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
		return errno;
	rs->guard = fork();
	if (rs->guard < 0) {
		int err = errno;

		close(sv[0]);
		close(sv[1]);
		return err;
	}
	if (rs->guard == 0) {
		close(sv[0]);
		guard_main(rs, sv[1]);
	}
	close(sv[1]);
	rs->ctl = sv[0];
	return 0;
}

struct realserver *realserver_start(enum rs_kind kind,
				    const struct realserver_opts *opts)
{
	struct rs_msg m;
	struct realserver *rs;
	int err;

	if (!realserver_available(kind)) {
		errno = ENOENT;
		return NULL;
	}
	rs = rs_alloc(kind, opts);
	if (!rs)
		return NULL;
	err = rs_fork_guard(rs);
	if (err) {
		remove_tree(rs->dir);
		free(rs);
		errno = err;
		return NULL;
	}
	if (rs_wait_reply(rs, &m, RS_GUARD_MS) != 0)
		m.err = ETIMEDOUT;
	if (m.err) {
		print_log(rs);
		realserver_stop(rs);
		errno = m.err;
		return NULL;
	}
	rs->port = m.port;
	rs->pid = m.pid;
	snprintf(rs->endpoint, sizeof(rs->endpoint), "127.0.0.1:%u", rs->port);
	return rs;
}

const char *realserver_endpoint(const struct realserver *rs)
{
	return rs->endpoint;
}

uint16_t realserver_port(const struct realserver *rs)
{
	return rs->port;
}

pid_t realserver_pid(const struct realserver *rs)
{
	return rs->pid;
}

int realserver_restart(struct realserver *rs)
{
	int err = rs_call(rs, RS_CMD_RESTART);

	if (err)
		print_log(rs);
	return err;
}

int realserver_kill(struct realserver *rs)
{
	return rs_call(rs, RS_CMD_KILL);
}

void realserver_stop(struct realserver *rs)
{
	struct rs_msg m = { .cmd = RS_CMD_STOP };

	if (!rs)
		return;
	if (rs->ctl >= 0) {
		/* The reply comes after the cleanup; EOF would do as well. */
		if (send(rs->ctl, &m, sizeof(m), MSG_NOSIGNAL) == (ssize_t)sizeof(m))
			rs_wait_reply(rs, &m, RS_STOP_MS + 2000);
		close(rs->ctl);
	}
	if (rs->guard > 0)
		reap_guard(rs);
	free(rs);
}

/* ---- protocol helpers ----------------------------------------------------------- */

const char *realserver_request(enum rs_kind kind)
{
	return protos[kind].request;
}

const char *realserver_close_request(enum rs_kind kind)
{
	return protos[kind].close_request;
}

static bool send_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

const char *realserver_reply_prefix(enum rs_kind kind)
{
	return protos[kind].reply_prefix;
}

/* memcached and redis answer one line; nginx a head and a body of
 * Content-Length bytes. buf is NUL-terminated at len. */
size_t realserver_reply_length(enum rs_kind kind, const char *buf, size_t len)
{
	const char *end, *cl;
	size_t head;

	if (kind != RS_NGINX) {
		end = memmem(buf, len, "\r\n", 2);
		return end ? (size_t)(end - buf) + 2 : 0;
	}
	end = memmem(buf, len, "\r\n\r\n", 4);
	if (!end)
		return 0;
	head = (size_t)(end - buf) + 4;
	cl = strcasestr(buf, "\r\nContent-Length:");
	if (!cl || cl > end)
		return head;
	return head + strtoul(cl + 17, NULL, 10);
}

bool realserver_roundtrip(enum rs_kind kind, int fd)
{
	const char *prefix = protos[kind].reply_prefix;
	long long end = rs_now_ms() + RS_REPLY_MS;
	char buf[4096];
	size_t len = 0, want = 0;

	if (!send_all(fd, protos[kind].request, strlen(protos[kind].request)))
		return false;
	while (!want || len < want) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long long left = end - rs_now_ms();
		ssize_t n;

		if (len + 1 >= sizeof(buf) || left <= 0 || poll(&p, 1, (int)left) <= 0)
			return false;
		n = recv(fd, buf + len, sizeof(buf) - 1 - len, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return false;
		len += (size_t)n;
		buf[len] = '\0';
		want = realserver_reply_length(kind, buf, len);
	}
	return len == want && strncmp(buf, prefix, strlen(prefix)) == 0;
}
