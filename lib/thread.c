/*
 * The library's threads. Each one starts with every signal blocked: a
 * thread the application does not know of must not run its handlers
 * (a handler may not expect to run there) nor, for a signal whose
 * default action ends the process, take a signal the application
 * blocks everywhere to sigwait for it in one thread. A new thread
 * inherits its creator's mask, so the creator blocks everything around
 * pthread_create and then restores its own. The threads only wait on
 * descriptors and condition variables, so they need no signal at all.
 */
#include <signal.h>

#include "pool-internal.h"

int thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}
