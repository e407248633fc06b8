/* The authentication rate limiter's in-memory side (common/auth/ratelimit.c)
 * over a fake clock: delays, the blocked fast path and its once-a-second
 * re-validation, fail-closed after a database error, bounded memory. The
 * database rules are exercised against PostgreSQL by
 * tests/integration/test_auth_ratelimit.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "common/auth/ratelimit.h"

static struct sora_rl_params params(void)
{
	struct sora_rl_params p = { 0 };

	p.cfg.enabled = true;
	p.cfg.max_attempts_per_ip = 10;
	p.cfg.max_attempts_per_username = 5;
	p.cfg.ip_window_ms = 15 * 60000;
	p.cfg.username_window_ms = 15 * 60000;
	p.cfg.fast_block_threshold = 10;
	p.cfg.fast_block_ms = 5 * 60000;
	p.cfg.db_error_threshold_ms = 60000;
	p.cfg.progressive_delay_enabled = true;
	p.cfg.delay_start_threshold = 2;
	p.cfg.initial_delay_ms = 2000;
	p.cfg.max_delay_ms = 30000;
	p.cfg.delay_multiplier = 2.0;
	return p;
}

static void test_delay_curve(void **state)
{
	struct sora_rl_params p = params();

	assert_int_equal(sora_rl_delay_ms(&p.cfg, 0), 0);
	assert_int_equal(sora_rl_delay_ms(&p.cfg, 1), 0);
	assert_int_equal(sora_rl_delay_ms(&p.cfg, 2), 2000);
	assert_int_equal(sora_rl_delay_ms(&p.cfg, 3), 4000);
	assert_int_equal(sora_rl_delay_ms(&p.cfg, 5), 16000);
	assert_int_equal(sora_rl_delay_ms(&p.cfg, 6), 30000);       /* capped */
	assert_int_equal(sora_rl_delay_ms(&p.cfg, 100000), 30000);  /* no overflow */
	p.cfg.delay_multiplier = 1.0;
	assert_int_equal(sora_rl_delay_ms(&p.cfg, 9), 2000);
	p.cfg.progressive_delay_enabled = false;
	assert_int_equal(sora_rl_delay_ms(&p.cfg, 9), 0);
}

static void test_user_key(void **state)
{
	char key[SORA_RL_KEY_MAX], long_name[600];

	assert_string_equal(sora_rl_user_key("Alice@Example.COM", 17, key), "alice@example.com");
	memset(long_name, 'A', sizeof(long_name));
	sora_rl_user_key(long_name, sizeof(long_name), key);
	assert_int_equal(strlen(key), SORA_RL_KEY_MAX - 1);
	assert_int_equal(key[0], 'a');
}

/* Unknown keys ask the database; what it said holds for a second. */
static void test_validation_window(void **state)
{
	struct sora_rl_params p = params();
	struct sora_ratelimit *rl = sora_ratelimit_new(&p);
	struct sora_rl_check chk;
	uint64_t t = 1000000;

	sora_rl_check(rl, "192.0.2.1", "bob", t, &chk);
	assert_int_equal(chk.verdict, SORA_RL_ALLOW);
	assert_true(chk.need_db);
	assert_int_equal(chk.delay_ms, 0);
	sora_rl_learn(rl, SORA_RL_IP, "192.0.2.1", 0, 0, 0, t);
	sora_rl_learn(rl, SORA_RL_USER, "bob", 0, 0, 0, t);
	sora_rl_check(rl, "192.0.2.1", "bob", t + 999, &chk);
	assert_false(chk.need_db);
	sora_rl_check(rl, "192.0.2.1", "bob", t + 1000, &chk);
	assert_true(chk.need_db);
	/* Only the stale key matters. */
	sora_rl_learn(rl, SORA_RL_IP, "192.0.2.1", 0, 0, 0, t + 1000);
	sora_rl_check(rl, "192.0.2.1", NULL, t + 1500, &chk);
	assert_false(chk.need_db);
	sora_ratelimit_free(&rl);
	assert_null(rl);
}

/* Failures the database reported give the delay: the larger count of the
 * address and the name, while its window lasts. */
static void test_delay_from_counts(void **state)
{
	struct sora_rl_params p = params();
	struct sora_ratelimit *rl = sora_ratelimit_new(&p);
	struct sora_rl_check chk;
	uint64_t t = 5000;

	sora_rl_learn(rl, SORA_RL_IP, "192.0.2.1", 1, 60000, 0, t);
	sora_rl_learn(rl, SORA_RL_USER, "bob", 3, 10000, 0, t);
	sora_rl_check(rl, "192.0.2.1", "bob", t + 10, &chk);
	assert_int_equal(chk.verdict, SORA_RL_ALLOW);
	assert_int_equal(chk.failures, 3);
	assert_int_equal(chk.delay_ms, 4000);
	/* Another name from that address: the address's count alone. */
	sora_rl_check(rl, "192.0.2.1", "carol", t + 10, &chk);
	assert_int_equal(chk.failures, 1);
	assert_int_equal(chk.delay_ms, 0);
	/* The name's window is over: its count no longer delays. */
	sora_rl_check(rl, "192.0.2.1", "bob", t + 10001, &chk);
	assert_int_equal(chk.failures, 1);
	assert_int_equal(chk.delay_ms, 0);
	sora_ratelimit_free(&rl);
}

/* A known block refuses without the database; once a second one attempt
 * re-validates while the rest keep being refused; an unblock seen then
 * lets the key in. */
static void test_blocked_fast_path(void **state)
{
	struct sora_rl_params p = params();
	struct sora_ratelimit *rl = sora_ratelimit_new(&p);
	struct sora_rl_check chk;
	uint64_t t = 10000;
	int db_reads = 0;

	assert_true(sora_rl_learn(rl, SORA_RL_IP, "198.51.100.7", 10, 900000, 300000, t));
	assert_false(sora_rl_learn(rl, SORA_RL_IP, "198.51.100.7", 11, 900000, 300000, t));
	assert_true(sora_rl_blocked(rl, SORA_RL_IP, "198.51.100.7", t));
	assert_int_equal(sora_rl_blocked_count(rl, t), 1);
	/* A flood of 10,000 attempts over 5 s: one database read a second. */
	for (int i = 0; i < 10000; i++) {
		uint64_t now = t + (uint64_t)i / 2;

		sora_rl_check(rl, "198.51.100.7", "user", now, &chk);
		if (chk.need_db) {
			assert_int_equal(chk.verdict, SORA_RL_ALLOW);
			db_reads++;
			/* The database still says blocked. */
			sora_rl_learn(rl, SORA_RL_IP, "198.51.100.7", 11, 900000 - i / 2,
				      300000 - i / 2, now);
			sora_rl_learn(rl, SORA_RL_USER, "user", 0, 0, 0, now);
		} else {
			assert_int_equal(chk.verdict, SORA_RL_BLOCKED);
			assert_int_equal(chk.blocked_kind, SORA_RL_IP);
		}
	}
	assert_true(db_reads >= 4 && db_reads <= 5);
	/* The delay keeps its shape while blocked. */
	assert_int_equal(chk.delay_ms, 30000);

	/* sora-admin unblocked it: the next re-validation learns that. */
	sora_rl_check(rl, "198.51.100.7", "user", t + 7000, &chk);
	assert_true(chk.need_db);
	sora_rl_learn(rl, SORA_RL_IP, "198.51.100.7", 0, 0, 0, t + 7000);
	sora_rl_check(rl, "198.51.100.7", "user", t + 7001, &chk);
	assert_int_equal(chk.verdict, SORA_RL_ALLOW);
	assert_int_equal(chk.delay_ms, 0);
	assert_false(sora_rl_blocked(rl, SORA_RL_IP, "198.51.100.7", t + 7001));

	/* A block of the name alone refuses that name from any address. */
	sora_rl_learn(rl, SORA_RL_USER, "victim", 5, 60000, 60000, t + 8000);
	sora_rl_check(rl, "203.0.113.9", "victim", t + 8001, &chk);
	assert_int_equal(chk.verdict, SORA_RL_BLOCKED);
	assert_int_equal(chk.blocked_kind, SORA_RL_USER);
	/* It ends by itself. */
	sora_rl_learn(rl, SORA_RL_IP, "203.0.113.9", 0, 0, 0, t + 68001);
	sora_rl_check(rl, "203.0.113.9", "victim", t + 68001, &chk);
	assert_int_equal(chk.verdict, SORA_RL_ALLOW);
	sora_ratelimit_free(&rl);
}

/* After a database error every attempt is refused without the database
 * until db_error_threshold has passed; then the database is asked again. */
static void test_fail_closed(void **state)
{
	struct sora_rl_params p = params();
	struct sora_ratelimit *rl;
	struct sora_rl_check chk;
	uint64_t t = 50000;

	p.cfg.db_error_threshold_ms = 3000;
	rl = sora_ratelimit_new(&p);
	sora_rl_learn(rl, SORA_RL_IP, "192.0.2.5", 0, 0, 0, t);
	assert_true(sora_rl_db_error(rl, t));
	assert_false(sora_rl_db_error(rl, t + 10));    /* the same outage */
	sora_rl_check(rl, "192.0.2.5", "a", t + 10, &chk);
	assert_int_equal(chk.verdict, SORA_RL_DB_DOWN);
	assert_false(chk.need_db);
	sora_rl_check(rl, "192.0.2.6", "b", t + 3009, &chk);
	assert_int_equal(chk.verdict, SORA_RL_DB_DOWN);
	sora_rl_check(rl, "192.0.2.6", "b", t + 3010, &chk);
	assert_int_equal(chk.verdict, SORA_RL_ALLOW);
	assert_true(chk.need_db);
	/* A new outage after that is reported as new. */
	assert_true(sora_rl_db_error(rl, t + 5000));
	sora_ratelimit_free(&rl);
}

/* Memory stays bounded by max_entries; unknown keys past the cap simply
 * ask the database; expired keys make room again. */
static void test_bounded(void **state)
{
	struct sora_rl_params p = params();
	struct sora_ratelimit *rl;
	struct sora_rl_check chk;
	char key[64];
	uint64_t t = 100000;

	p.max_entries = 100;
	rl = sora_ratelimit_new(&p);
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "user%d", i);
		sora_rl_learn(rl, SORA_RL_USER, key, 1, 60000, 0, t);
		assert_true(sora_rl_entries(rl) <= 100);
	}
	sora_rl_check(rl, NULL, "user4999", t, &chk);
	assert_true(chk.need_db);                 /* not remembered */
	assert_true(sora_rl_may_have_row(rl, SORA_RL_USER, "user4999", t));
	sora_rl_check(rl, NULL, "user0", t + 10, &chk);
	assert_false(chk.need_db);                /* remembered */
	assert_int_equal(chk.failures, 1);
	/* A minute later the windows are over: the next key finds room. */
	sora_rl_learn(rl, SORA_RL_USER, "late", 0, 0, 0, t + 61000);
	assert_true(sora_rl_entries(rl) <= 1);
	sora_rl_check(rl, NULL, "late", t + 61001, &chk);
	assert_false(chk.need_db);
	assert_false(sora_rl_may_have_row(rl, SORA_RL_USER, "late", t + 61001));
	sora_ratelimit_free(&rl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delay_curve),
		cmocka_unit_test(test_user_key),
		cmocka_unit_test(test_validation_window),
		cmocka_unit_test(test_delay_from_counts),
		cmocka_unit_test(test_blocked_fast_path),
		cmocka_unit_test(test_fail_closed),
		cmocka_unit_test(test_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
