/*
 * The thread's endpoint memo: the last endpoint this thread looked up,
 * so that pool_get on the same endpoint as last time (the usual case)
 * skips hashing the key and walking a bucket (memo.c).
 *
 * The pool's serial (never reused) keeps a record of a destroyed pool
 * from matching a new one at the same address. An endpoint may be
 * forgotten (freed) since the record was made: the record is trusted only
 * under its shard's lock, and only if no endpoint of that shard has been
 * forgotten since (gen). A fork() child keeps the forking thread's
 * record, which stays right: its endpoints are kept (fork.c).
 *
 * The record keeps its own copy of the key, compared before the lock is
 * taken: ep->key may be freed by then, and the compare does not lengthen
 * the critical section. Keys of MEMO_KEY bytes or more are not
 * remembered. initial-exec TLS: one %fs-relative load instead of a call
 * to __tls_get_addr per pool_get; the record (about 300 bytes) fits the
 * static TLS surplus glibc keeps for libraries loaded with dlopen().
 */
#ifndef TCPOOL_MEMO_H
#define TCPOOL_MEMO_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "pool-internal.h"

#define MEMO_KEY 64
#define MEMO_WORDS (MEMO_KEY / 8 + 2)

typedef uint64_t __attribute__((may_alias)) memo_word;

struct endpoint_memo {
	uint64_t pool_serial;
	struct pool_endpoint *ep;
	struct shard *shard;       /* NULL: no record */
	unsigned gen;
	uint64_t stamp;            /* new (process-wide unique) with each record: the
	                            * thread cache's slot keeps the one it
	                            * checked (park.h) */
	/* The caller's last string, by address: the aligned words that
	 * hold it, as they were, and which of their bytes are the string's
	 * (its NUL included). */
	const char *caller;
	unsigned nwords;
	uint64_t words[MEMO_WORDS], masks[MEMO_WORDS];
	char key[MEMO_KEY];
};

extern __thread struct endpoint_memo endpoint_memo
	__attribute__((tls_model("initial-exec"), visibility("hidden")));

/* key is the recorded key, at another address than last time (or its
 * bytes there changed): compared with the copy, and its address and
 * words recorded when equal (memo.c). */
bool memo_key_slow(const char *key);
/* Record ep (its shard locked), found for key, as the thread's memo. */
void memo_lookup(struct pool *pool, struct pool_endpoint *ep, const char *key);

/* Whether key, at the address of the caller's last key, still holds the
 * same bytes: the aligned words that hold it, compared under their masks.
 * A "host:port" takes two or three word compares where libc's vector
 * strcmp (a PLT call, mask registers) took a fifth of an idle get + put
 * pair's samples in perf. An
 * aligned word never crosses a page, so reading the bytes past the NUL
 * that share its last word cannot fault; they are masked out.
 * AddressSanitizer would still flag them as outside the object. */
__attribute__((no_sanitize("address")))
static inline bool memo_same_bytes(const char *key)
{
	const memo_word *w = (const memo_word *)((uintptr_t)key & ~(uintptr_t)7);
	uint64_t diff = 0;
	unsigned i;

	for (i = 0; i < endpoint_memo.nwords; i++)
		diff |= (w[i] ^ endpoint_memo.words[i]) & endpoint_memo.masks[i];
	return diff == 0;
}

/* Whether the thread's memo names key in pool, before any lock: memo_hit
 * then checks the endpoint under its shard lock, the thread cache by the
 * memo's stamp (park.h). */
static inline bool memo_names(const struct pool *pool, const char *key)
{
	if (!endpoint_memo.shard || endpoint_memo.pool_serial != pool->serial)
		return false;
	return (key == endpoint_memo.caller && memo_same_bytes(key)) ||
	       memo_key_slow(key);
}

/* The recorded endpoint if it is pool's and key's, returned with its
 * shard locked; NULL (nothing locked) otherwise. */
static inline struct pool_endpoint *memo_hit(struct pool *pool, const char *key)
{
	struct shard *sh = endpoint_memo.shard;

	if (!memo_names(pool, key))
		return NULL;
	plock_lock(&sh->lock);
	if (sh->gen == endpoint_memo.gen)
		return endpoint_memo.ep;
	plock_unlock(&sh->lock);
	return NULL;
}

/* pool_endpoint_lock after a miss of the memo (pool.c). */
int endpoint_lock_slow(struct pool *pool, const char *key,
		       struct pool_endpoint **ep_out);

#endif /* TCPOOL_MEMO_H */
