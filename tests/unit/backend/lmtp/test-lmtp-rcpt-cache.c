/* Tests for LMTP's recipient cache (backend/lmtp/lmtp-rcpt-cache.h): what
 * a lookup found comes back whole, only for the same address, only for the
 * generation it was found in and only within the TTL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend/lmtp/lmtp-rcpt-cache.h"

static struct sora_store_recipient who(int64_t id, const char *primary, const char *detail)
{
	struct sora_store_recipient w;

	memset(&w, 0, sizeof(w));
	w.account_id = id;
	snprintf(w.primary_address, sizeof(w.primary_address), "%s", primary);
	snprintf(w.detail, sizeof(w.detail), "%s", detail);
	w.has_detail = detail[0] != '\0';
	return w;
}

static void test_found_again_whole(void **state)
{
	struct sora_store_recipient w = who(7, "main@example.com", "news"), got;

	sora_lmtp_rcpt_cache_put("alias+news@example.com", sora_lmtp_rcpt_cache_generation(), &w);
	assert_true(sora_lmtp_rcpt_cache_get("alias+news@example.com", 60000, &got));
	assert_int_equal(got.account_id, 7);
	assert_string_equal(got.primary_address, "main@example.com");
	assert_string_equal(got.detail, "news");
	assert_true(got.has_detail);
	/* Another spelling is another key: the database decides about it. */
	assert_false(sora_lmtp_rcpt_cache_get("Alias+news@example.com", 60000, &got));
	assert_false(sora_lmtp_rcpt_cache_get("alias@example.com", 60000, &got));
	sora_lmtp_rcpt_cache_clear();
	assert_false(sora_lmtp_rcpt_cache_get("alias+news@example.com", 60000, &got));
}

/* Longest addresses and details survive the packing. */
static void test_long_strings(void **state)
{
	struct sora_store_recipient w, got;
	char addr[300], primary[256], detail[256];

	memset(addr, 'a', sizeof(addr) - 1);
	addr[sizeof(addr) - 1] = '\0';
	memset(primary, 'p', sizeof(primary) - 1);
	primary[sizeof(primary) - 1] = '\0';
	memset(detail, 'd', sizeof(detail) - 1);
	detail[sizeof(detail) - 1] = '\0';
	w = who(9, primary, detail);
	sora_lmtp_rcpt_cache_put(addr, sora_lmtp_rcpt_cache_generation(), &w);
	assert_true(sora_lmtp_rcpt_cache_get(addr, 60000, &got));
	assert_string_equal(got.primary_address, w.primary_address);
	assert_string_equal(got.detail, w.detail);
	w = who(10, "x@example.com", "");
	sora_lmtp_rcpt_cache_put("x@example.com", sora_lmtp_rcpt_cache_generation(), &w);
	assert_true(sora_lmtp_rcpt_cache_get("x@example.com", 60000, &got));
	assert_string_equal(got.detail, "");
	assert_false(got.has_detail);
	sora_lmtp_rcpt_cache_clear();
}

/* A flush forgets everything, and a lookup that started before it (its
 * result may predate the change) is not kept. */
static void test_flush_and_raced_lookup(void **state)
{
	struct sora_store_recipient w = who(3, "a@example.com", ""), got;
	uint64_t before = sora_lmtp_rcpt_cache_generation();

	sora_lmtp_rcpt_cache_put("a@example.com", before, &w);
	assert_true(sora_lmtp_rcpt_cache_get("a@example.com", 60000, &got));
	sora_lmtp_rcpt_cache_flush();
	assert_false(sora_lmtp_rcpt_cache_get("a@example.com", 60000, &got));
	sora_lmtp_rcpt_cache_put("a@example.com", before, &w);
	assert_false(sora_lmtp_rcpt_cache_get("a@example.com", 60000, &got));
	sora_lmtp_rcpt_cache_put("a@example.com", sora_lmtp_rcpt_cache_generation(), &w);
	assert_true(sora_lmtp_rcpt_cache_get("a@example.com", 60000, &got));
	sora_lmtp_rcpt_cache_clear();
}

static void test_ttl(void **state)
{
	struct sora_store_recipient w = who(4, "t@example.com", ""), got;

	sora_lmtp_rcpt_cache_put("t@example.com", sora_lmtp_rcpt_cache_generation(), &w);
	assert_true(sora_lmtp_rcpt_cache_get("t@example.com", 1000, &got));
	usleep(30 * 1000);
	assert_false(sora_lmtp_rcpt_cache_get("t@example.com", 20, &got));
	assert_false(sora_lmtp_rcpt_cache_get("t@example.com", 0, &got));
	assert_true(sora_lmtp_rcpt_cache_get("t@example.com", 1000, &got));
	sora_lmtp_rcpt_cache_clear();
}

/* Bounded: many more addresses than slots leave at most one entry per slot,
 * and the latest ones are found. */
static void test_bounded(void **state)
{
	struct sora_store_recipient got;
	char addr[64];
	int found = 0;

	for (int i = 0; i < 4 * SORA_LMTP_RCPT_CACHE_SLOTS; i++) {
		struct sora_store_recipient w = who(i + 1, "p@example.com", "");

		snprintf(addr, sizeof(addr), "user%d@example.com", i);
		sora_lmtp_rcpt_cache_put(addr, sora_lmtp_rcpt_cache_generation(), &w);
	}
	for (int i = 0; i < 4 * SORA_LMTP_RCPT_CACHE_SLOTS; i++) {
		snprintf(addr, sizeof(addr), "user%d@example.com", i);
		if (sora_lmtp_rcpt_cache_get(addr, 60000, &got)) {
			assert_int_equal(got.account_id, i + 1);
			found++;
		}
	}
	assert_true(found <= SORA_LMTP_RCPT_CACHE_SLOTS);
	assert_true(found > SORA_LMTP_RCPT_CACHE_SLOTS / 2);
	snprintf(addr, sizeof(addr), "user%d@example.com", 4 * SORA_LMTP_RCPT_CACHE_SLOTS - 1);
	assert_true(sora_lmtp_rcpt_cache_get(addr, 60000, &got));
	sora_lmtp_rcpt_cache_clear();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_found_again_whole),
		cmocka_unit_test(test_long_strings),
		cmocka_unit_test(test_flush_and_raced_lookup),
		cmocka_unit_test(test_ttl),
		cmocka_unit_test(test_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
