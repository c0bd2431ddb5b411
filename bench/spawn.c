#include "config.h"

/*
 * Child processes: ip(8), gnuplot and the external servers. The bench
 * blocks SIGINT/SIGTERM/SIGHUP in every thread (a signal thread waits for
 * them) and ignores SIGPIPE; a child would inherit both, and a server
 * with SIGTERM blocked cannot be stopped. So every child starts with an
 * empty signal mask and default dispositions.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

int spawn_child(pid_t *pid, char *const argv[], const char *out_path)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dfl;
	int rc;

	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr,
	                         POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (out_path) {
		posix_spawn_file_actions_addopen(&fa, 1, out_path,
		                                 O_WRONLY | O_CREAT | O_TRUNC, 0644);
		posix_spawn_file_actions_adddup2(&fa, 1, 2);
	}
	rc = posix_spawnp(pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rc != 0) {
		fprintf(stderr, "tcpool-bench: %s: %s\n", argv[0], strerror(rc));
		return -1;
	}
	return 0;
}

int run_cmd(char *const argv[], bool quiet)
{
	pid_t pid;
	int rc, status;

	if (spawn_child(&pid, argv, quiet ? "/dev/null" : NULL) != 0)
		return -1;
	do {
		rc = waitpid(pid, &status, 0);
	} while (rc == -1 && errno == EINTR);
	if (rc == -1 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* Look in one ':'-separated list of directories. */
static bool find_in(const char *dirs, const char *prog, char *out, size_t len)
{
	char buf[512];

	while (*dirs) {
		size_t n = strcspn(dirs, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, dirs, prog);
		if (n > 0 && access(buf, X_OK) == 0) {
			if (out)
				snprintf(out, len, "%s", buf);
			return true;
		}
		dirs += n + (dirs[n] == ':');
	}
	return false;
}

bool find_program(const char *prog, char *out, size_t len)
{
	const char *path = getenv("PATH");

	/* servers live in sbin, which a user's PATH often lacks */
	return find_in(path ? path : "", prog, out, len) ||
	       find_in("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
	               "/sbin:/bin", prog, out, len);
}
