/* Tests for backend/store/uid-cache.h: copies in and out, the size floor,
 * replacement, least-recently-used eviction under the byte cap, and the
 * age limit. Its use by sora_msgs_open is covered by test-messages-live.c
 * (test_open_cached). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "backend/store/uid-cache.h"

#define MIN SORA_UID_CACHE_MIN_UIDS

/* An entry of n UIDs first, first + 1, ... */
static struct sora_uid_cache_entry entry(int64_t id, size_t n, uint32_t first)
{
	struct sora_uid_cache_entry e = { .mailbox_id = id, .uid_validity = 7, .modseq = 9,
					   .uid_next = first + (uint32_t)n, .count = n };

	e.uids = malloc(n * sizeof(*e.uids) + 1);
	assert_non_null(e.uids);
	for (size_t i = 0; i < n; i++)
		e.uids[i] = first + (uint32_t)i;
	return e;
}

static void put(struct sora_uid_cache *c, int64_t acc, const char *name, uint64_t now,
		size_t n, uint32_t first)
{
	struct sora_uid_cache_entry e = entry(acc * 100, n, first);

	sora_uid_cache_put(c, acc, name, now, &e);
	/* The cache made its own copy. */
	memset(e.uids, 0xff, n * sizeof(*e.uids));
	sora_uid_cache_entry_free(&e);
}

static int has(struct sora_uid_cache *c, int64_t acc, const char *name, uint64_t now,
	       uint32_t first)
{
	struct sora_uid_cache_entry e;
	int r = sora_uid_cache_get(c, acc, name, now, &e);

	if (r == 1) {
		assert_int_equal(e.mailbox_id, acc * 100);
		assert_int_equal(e.uid_validity, 7);
		assert_int_equal(e.uids[0], first);
		assert_int_equal(e.uids[e.count - 1], first + e.count - 1);
		sora_uid_cache_entry_free(&e);
	}
	return r;
}

static void test_put_get_replace(void **state)
{
	struct sora_uid_cache *c = sora_uid_cache_new(1 << 20);
	size_t entries, bytes;

	(void)state;
	assert_int_equal(has(c, 1, "INBOX", 1000, 1), 0);
	put(c, 1, "INBOX", 1000, MIN, 1);
	assert_int_equal(has(c, 1, "INBOX", 1000, 1), 1);
	/* Keys are account and exact name. */
	assert_int_equal(has(c, 2, "INBOX", 1000, 1), 0);
	assert_int_equal(has(c, 1, "inbox", 1000, 1), 0);
	put(c, 1, "INBOX", 1000, MIN + 5, 50);
	assert_int_equal(has(c, 1, "INBOX", 1000, 50), 1);
	sora_uid_cache_stats(c, &entries, &bytes);
	assert_int_equal(entries, 1);
	assert_int_equal(bytes, (MIN + 5) * sizeof(uint32_t));
	/* Shrinking below the floor drops the key. */
	put(c, 1, "INBOX", 1000, MIN - 1, 1);
	assert_int_equal(has(c, 1, "INBOX", 1000, 1), 0);
	sora_uid_cache_stats(c, &entries, &bytes);
	assert_int_equal(entries, 0);
	assert_int_equal(bytes, 0);
	sora_uid_cache_free(&c);
	assert_null(c);
}

static void test_lru_eviction(void **state)
{
	/* Room for three entries of MIN UIDs. */
	struct sora_uid_cache *c = sora_uid_cache_new(3 * MIN * sizeof(uint32_t));
	size_t entries, bytes;

	(void)state;
	put(c, 1, "a", 0, MIN, 1);
	put(c, 1, "b", 0, MIN, 1);
	put(c, 1, "c", 0, MIN, 1);
	/* "a" used last of the three before "d" comes: "b" goes. */
	assert_int_equal(has(c, 1, "a", 0, 1), 1);
	put(c, 1, "d", 0, MIN, 1);
	assert_int_equal(has(c, 1, "b", 0, 1), 0);
	assert_int_equal(has(c, 1, "a", 0, 1), 1);
	assert_int_equal(has(c, 1, "c", 0, 1), 1);
	assert_int_equal(has(c, 1, "d", 0, 1), 1);
	sora_uid_cache_stats(c, &entries, &bytes);
	assert_int_equal(entries, 3);
	assert_true(bytes <= 3 * MIN * sizeof(uint32_t));
	/* An entry larger than the whole cache is not kept. */
	put(c, 1, "huge", 0, 4 * MIN, 1);
	assert_int_equal(has(c, 1, "huge", 0, 1), 0);
	sora_uid_cache_free(&c);
}

static void test_age_limit(void **state)
{
	struct sora_uid_cache *c = sora_uid_cache_new(1 << 20);
	uint64_t t = 5000000;

	(void)state;
	put(c, 1, "INBOX", t, MIN, 1);
	assert_int_equal(has(c, 1, "INBOX", t + SORA_UID_CACHE_MAX_AGE_MS, 1), 1);
	assert_int_equal(has(c, 1, "INBOX", t + SORA_UID_CACHE_MAX_AGE_MS + 1, 1), 0);
	/* Gone for good, not just hidden. */
	assert_int_equal(has(c, 1, "INBOX", t, 1), 0);
	sora_uid_cache_free(&c);
}

static void test_null_and_empty(void **state)
{
	struct sora_uid_cache *c = sora_uid_cache_new(0);
	struct sora_uid_cache_entry e;

	(void)state;
	/* A NULL cache is "no cache"; a zero-byte one keeps nothing. */
	assert_int_equal(sora_uid_cache_get(NULL, 1, "INBOX", 0, &e), 0);
	put(NULL, 1, "INBOX", 0, MIN, 1);
	put(c, 1, "INBOX", 0, MIN, 1);
	assert_int_equal(has(c, 1, "INBOX", 0, 1), 0);
	sora_uid_cache_free(&c);
	sora_uid_cache_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_replace),
		cmocka_unit_test(test_lru_eviction),
		cmocka_unit_test(test_age_limit),
		cmocka_unit_test(test_null_and_empty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
