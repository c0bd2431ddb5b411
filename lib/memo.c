/*
 * The thread's endpoint memo (see memo.h): recording it, and the compare
 * for a key passed at another address than last time.
 */
#include "memo.h"

__thread struct endpoint_memo endpoint_memo
	__attribute__((tls_model("initial-exec")));

/* Stamps are unique process-wide, not per thread: a slot claimed by
 * another thread (its old thread gone, its connection still affine to
 * it) keeps the stamp of the old thread's memo, which must never match
 * the new thread's (park_get). */
static atomic_uint_fast64_t memo_stamps;

/* Record key's address and words; key is the recorded key (equal to the
 * copy, so shorter than MEMO_KEY). */
__attribute__((no_sanitize("address")))
static void memo_caller(const char *key)
{
	const char *base = (const char *)((uintptr_t)key & ~(uintptr_t)7);
	size_t off = (size_t)(key - base), end = off + strlen(key) + 1;
	unsigned i, n = (unsigned)((end + 7) / 8);

	for (i = 0; i < n; i++) {
		unsigned char m[8];
		size_t b;

		/* byte masks, whatever the byte order */
		for (b = 0; b < 8; b++)
			m[b] = i * 8 + b >= off && i * 8 + b < end ? 0xff : 0;
		memcpy(&endpoint_memo.masks[i], m, 8);
		endpoint_memo.words[i] = ((const memo_word *)base)[i] &
					 endpoint_memo.masks[i];
	}
	endpoint_memo.nwords = n;
	endpoint_memo.caller = key;
}

bool memo_key_slow(const char *key)
{
	if (strcmp(endpoint_memo.key, key) != 0)
		return false;
	memo_caller(key);
	return true;
}

void memo_lookup(struct pool *pool, struct pool_endpoint *ep, const char *key)
{
	size_t len = strlen(ep->key);

	if (len >= MEMO_KEY) {
		endpoint_memo.shard = NULL;
		return;
	}
	memcpy(endpoint_memo.key, ep->key, len + 1);
	memo_caller(key);
	endpoint_memo.pool_serial = pool->serial;
	endpoint_memo.ep = ep;
	endpoint_memo.shard = ep->shard;
	endpoint_memo.gen = ep->shard->gen;
	endpoint_memo.stamp = atomic_fetch_add_explicit(&memo_stamps, 1,
							  memory_order_relaxed) + 1;
}
