/*
 * The vDSO's clock_gettime, for the hot path's coarse clock (clock.h).
 * glibc maps the vDSO as a loaded object named linux-vdso.so.1, so
 * dlopen(RTLD_NOLOAD) finds it without loading anything; its entry
 * point is __vdso_clock_gettime (x86, and most others) or
 * __kernel_clock_gettime (arm64). The handle is kept: the vDSO is never
 * unloaded.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

#include "clock.h"

_Atomic(vdso_gettime_fn) vdso_gettime;

static pthread_once_t clock_once = PTHREAD_ONCE_INIT;

static void clock_lookup(void)
{
	static const char *const names[] = {
		"__vdso_clock_gettime", "__kernel_clock_gettime"
	};
	void *vdso = dlopen("linux-vdso.so.1", RTLD_LAZY | RTLD_NOLOAD);
	vdso_gettime_fn f = NULL;
	struct timespec ts;
	size_t i;

	if (!vdso)
		return;
	for (i = 0; i < sizeof(names) / sizeof(names[0]) && !f; i++)
		*(void **)&f = dlsym(vdso, names[i]);
	/* Trusted only if it answers for the clock the hot path reads. */
	if (f && f(CLOCK_MONOTONIC_COARSE, &ts) == 0)
		atomic_store_explicit(&vdso_gettime, f, memory_order_relaxed);
}

void fast_clock_init(void)
{
	pthread_once(&clock_once, clock_lookup);
}

/* At load, not at the first pool_create: that could be in the child of a
 * multithreaded fork(), where dlopen() may wait forever for the loader's
 * lock held by a parent thread that does not exist there. */
__attribute__((constructor)) static void clock_at_load(void)
{
	fast_clock_init();
}
