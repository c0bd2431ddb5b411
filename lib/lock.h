/*
 * The shard lock: a test-and-test-and-set lock.
 *
 * Why not a pthread mutex: a shard's critical sections are a hash lookup
 * and a few list operations, and an idle pool_get + pool_put takes the lock
 * twice. A pthread mutex costs two atomic read-modify-writes per lock/unlock
 * pair (the unlock must check for sleepers); this lock costs one, which is
 * most of the difference between the pool and a bare stack of sockets.
 * Contended, it spins briefly and then yields the CPU, so that a holder
 * that was preempted (2 cores, noisy neighbours) gets to run and release.
 * Never hold it across a system call that can block.
 */
#ifndef TCPOOL_LOCK_H
#define TCPOOL_LOCK_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

typedef struct {
	atomic_bool held;
} plock_t;

#define PLOCK_SPINS 64

static inline void plock_init(plock_t *l)
{
	atomic_init(&l->held, false);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static inline void plock_lock(plock_t *l)
{
	unsigned spins = 0;

	while (atomic_exchange_explicit(&l->held, true, memory_order_acquire)) {
		/* Wait on a plain load: no cache-line ping-pong while held. */
		while (atomic_load_explicit(&l->held, memory_order_relaxed)) {
			if (++spins < PLOCK_SPINS)
				cpu_relax();
			else
				sched_yield();
		}
	}
}

static inline void plock_unlock(plock_t *l)
{
	atomic_store_explicit(&l->held, false, memory_order_release);
}

#endif /* TCPOOL_LOCK_H */
