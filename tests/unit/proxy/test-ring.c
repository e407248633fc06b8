/* The consistent-hash ring: stable across builds and list order, spread
 * over the nodes, minimal movement when a node goes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "proxy/ring.h"

#define KEYS 20000

static size_t owner(const struct sora_ring *r, int64_t key)
{
	char k[32];
	size_t order[1];
	int n = snprintf(k, sizeof(k), "%lld", (long long)key);

	assert_int_equal(sora_ring_lookup(r, k, (size_t)n, order, 1), 1);
	return order[0];
}

/* The hash is part of the routing contract between proxy versions: a
 * change would move every user. */
static void test_hash_fixed(void **state)
{
	assert_true(sora_ring_hash("", 0) == sora_ring_hash("", 0));
	assert_true(sora_ring_hash("a", 1) != sora_ring_hash("b", 1));
	assert_int_equal(sora_ring_hash("42", 2), 0x0d41073aeb232a8dULL);
}

static void test_order_independent(void **state)
{
	const char *a[] = { "10.0.0.1", "10.0.0.2", "10.0.0.3" };
	const char *b[] = { "10.0.0.3", "10.0.0.1", "10.0.0.2" };
	struct sora_ring *ra, *rb;

	assert_int_equal(sora_ring_build(a, 3, &ra), 0);
	assert_int_equal(sora_ring_build(b, 3, &rb), 0);
	for (int64_t k = 1; k < 2000; k++) {
		size_t oa = owner(ra, k), ob = owner(rb, k);

		assert_string_equal(a[oa], b[ob]);
	}
	sora_ring_free(&ra);
	sora_ring_free(&rb);
	assert_null(ra);
}

static void test_spread(void **state)
{
	const char *ids[] = { "be1", "be2", "be3", "be4" };
	size_t count[4] = { 0 };
	struct sora_ring *r;

	assert_int_equal(sora_ring_build(ids, 4, &r), 0);
	for (int64_t k = 1; k <= KEYS; k++)
		count[owner(r, k)]++;
	/* 160 virtual nodes: each node within +-25% of its fair share. */
	for (int i = 0; i < 4; i++) {
		assert_true(count[i] > KEYS / 4 * 3 / 4);
		assert_true(count[i] < KEYS / 4 * 5 / 4);
	}
	sora_ring_free(&r);
}

static void test_two_nodes_both_used(void **state)
{
	const char *ids[] = { "127.0.0.1", "127.0.0.2" };
	size_t count[2] = { 0 };
	struct sora_ring *r;

	assert_int_equal(sora_ring_build(ids, 2, &r), 0);
	for (int64_t k = 1; k <= 10; k++)
		count[owner(r, k)]++;
	assert_true(count[0] > 0 && count[1] > 0);
	sora_ring_free(&r);
}

/* Removing a node moves only its keys; each moves to the node that was
 * next in its failover order (so failover and removal agree). */
static void test_minimal_movement(void **state)
{
	const char *all[] = { "be1", "be2", "be3", "be4", "be5" };
	const char *less[] = { "be1", "be2", "be4", "be5" };
	struct sora_ring *ra, *rl;
	int moved = 0;

	assert_int_equal(sora_ring_build(all, 5, &ra), 0);
	assert_int_equal(sora_ring_build(less, 4, &rl), 0);
	for (int64_t k = 1; k <= KEYS; k++) {
		char key[32];
		size_t order[5];
		int n = snprintf(key, sizeof(key), "%lld", (long long)k);
		const char *before, *after;

		assert_int_equal(sora_ring_lookup(ra, key, (size_t)n, order, 5), 5);
		before = all[order[0]];
		after = less[owner(rl, k)];
		if (strcmp(before, "be3") != 0) {
			assert_string_equal(before, after);
		} else {
			moved++;
			assert_string_equal(all[order[1]], after);
		}
	}
	/* About a fifth moved. */
	assert_true(moved > KEYS / 5 * 3 / 4 && moved < KEYS / 5 * 5 / 4);
	sora_ring_free(&ra);
	sora_ring_free(&rl);
}

static void test_failover_order_distinct(void **state)
{
	const char *ids[] = { "a", "b", "c" };
	struct sora_ring *r;
	size_t order[8];

	assert_int_equal(sora_ring_build(ids, 3, &r), 0);
	for (int k = 0; k < 100; k++) {
		assert_int_equal(sora_ring_lookup(r, &k, sizeof(k), order, 8), 3);
		assert_true(order[0] != order[1] && order[1] != order[2] && order[0] != order[2]);
	}
	assert_int_equal(sora_ring_lookup(r, "x", 1, order, 2), 2);
	sora_ring_free(&r);
}

static void test_build_limits(void **state)
{
	struct sora_ring *r = (struct sora_ring *)1;
	const char *one[] = { "only" };
	size_t order[2];

	assert_int_equal(sora_ring_build(one, 0, &r), -1);
	assert_null(r);
	assert_int_equal(sora_ring_build(one, 1, &r), 0);
	assert_int_equal(sora_ring_lookup(r, "k", 1, order, 2), 1);
	assert_int_equal(order[0], 0);
	sora_ring_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hash_fixed),
		cmocka_unit_test(test_order_independent),
		cmocka_unit_test(test_spread),
		cmocka_unit_test(test_two_nodes_both_used),
		cmocka_unit_test(test_minimal_movement),
		cmocka_unit_test(test_failover_order_distinct),
		cmocka_unit_test(test_build_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
