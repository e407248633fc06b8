/* Tests for backend/imap/imap-search-rate.h: the limit per user and
 * scope, the sliding window and the wait it reports, the default-off
 * behaviour, idle users dropped, and the refusal metric. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backend/imap/imap-search-rate.h"
#include "common/metrics/metrics.h"

#define MIN_MS 60000ull
/* Far from 0 so that no window starts at the clock's origin. */
#define T0 (1000ull * MIN_MS)

static int setup(void **state)
{
	(void)state;
	sora_search_rate_reset();
	sora_metrics_reset_for_tests();
	return 0;
}

static bool check(const void *scope, int64_t acc, int64_t limit, uint64_t now, unsigned *wait)
{
	return sora_search_rate_check(scope, acc, limit, (int64_t)MIN_MS, now, "imap", wait);
}

static void test_disabled(void **state)
{
	unsigned wait = 99;

	for (int i = 0; i < 1000; i++)
		assert_true(check(state, 1, 0, T0, &wait));
	assert_int_equal(wait, 0);
	assert_int_equal(sora_search_rate_tracked(), 0);
}

static void test_limit_and_wait(void **state)
{
	int scope;
	unsigned wait = 0;

	/* 10 searches spread over the first 10 seconds of the window. */
	for (int i = 0; i < 10; i++)
		assert_true(check(&scope, 7, 10, T0 + (uint64_t)i * 1000, &wait));
	/* The 11th at 20 s is refused: the first search (at 0 s) leaves the
	 * window at 60 s, 40 s from now. */
	assert_false(check(&scope, 7, 10, T0 + 20000, &wait));
	assert_int_equal(wait, 40);
	/* Refusals do not count: still 40 s - 5 s later. */
	assert_false(check(&scope, 7, 10, T0 + 25000, &wait));
	assert_int_equal(wait, 35);
	/* Another user and another server entry are independent. */
	assert_true(check(&scope, 8, 10, T0 + 25000, &wait));
	assert_true(check(state, 7, 10, T0 + 25000, &wait));
	/* At 60 s the first has left: one more is allowed, then the next
	 * leaves at 61 s. */
	assert_true(check(&scope, 7, 10, T0 + 60000, &wait));
	assert_false(check(&scope, 7, 10, T0 + 60100, &wait));
	assert_int_equal(wait, 1);
	assert_true(check(&scope, 7, 10, T0 + 61000, &wait));
	/* Two minutes later everything has left. */
	for (int i = 0; i < 10; i++)
		assert_true(check(&scope, 7, 10, T0 + 200000, &wait));
	assert_false(check(&scope, 7, 10, T0 + 200000, &wait));
	assert_int_equal(wait, 60);
	{
		struct sora_metric *m = sora_metric_counter("search_rate_limited_total", "x", "protocol");

		assert_int_equal((int)sora_metric_get(sora_metric_with(m, "imap")), 4);
	}
}

static void test_idle_users_dropped(void **state)
{
	int scope;
	unsigned wait;

	for (int64_t a = 0; a < 500; a++)
		assert_true(check(&scope, a, 5, T0, &wait));
	assert_int_equal(sora_search_rate_tracked(), 500);
	/* Half a window later: nobody is idle for a whole window yet. */
	assert_true(check(&scope, 1000, 5, T0 + 30000, &wait));
	assert_int_equal(sora_search_rate_tracked(), 501);
	/* A window after the 500: they are dropped; the latest stays. */
	assert_true(check(&scope, 1001, 5, T0 + 70000, &wait));
	assert_int_equal(sora_search_rate_tracked(), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_disabled, setup),
		cmocka_unit_test_setup(test_limit_and_wait, setup),
		cmocka_unit_test_setup(test_idle_users_dropped, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
