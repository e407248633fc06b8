/* Tests for durations and sizes (common/core/units.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/core/units.h"

static int64_t dur(const char *s)
{
	const char *error = NULL;
	int64_t ms = -12345;

	if (sora_parse_duration_ms(s, &ms, &error) < 0)
		fail_msg("\"%s\" rejected: %s", s, error);
	return ms;
}

static void dur_bad(const char *s, const char *why)
{
	const char *error = NULL;
	int64_t ms = 777;

	if (sora_parse_duration_ms(s, &ms, &error) == 0)
		fail_msg("\"%s\" accepted as %lld ms", s, (long long)ms);
	assert_non_null(error);
	if (why != NULL && strstr(error, why) == NULL)
		fail_msg("\"%s\": error \"%s\" lacks \"%s\"", s, error, why);
	/* A failed parse leaves the output alone. */
	assert_int_equal(ms, 777);
}

static uint64_t size(const char *s)
{
	const char *error = NULL;
	uint64_t n = 12345;

	if (sora_parse_size(s, &n, &error) < 0)
		fail_msg("\"%s\" rejected: %s", s, error);
	return n;
}

static void size_bad(const char *s, const char *why)
{
	const char *error = NULL;
	uint64_t n = 777;

	if (sora_parse_size(s, &n, &error) == 0)
		fail_msg("\"%s\" accepted as %llu", s, (unsigned long long)n);
	assert_non_null(error);
	if (why != NULL && strstr(error, why) == NULL)
		fail_msg("\"%s\": error \"%s\" lacks \"%s\"", s, error, why);
	assert_int_equal(n, 777);
}

static void test_duration_units(void **state)
{
	assert_int_equal(dur("500ms"), 500);
	assert_int_equal(dur("30s"), 30000);
	assert_int_equal(dur("15m"), 15 * 60000);
	assert_int_equal(dur("720h"), 720LL * 3600000);
	assert_int_equal(dur("14d"), 14LL * 86400000);
	assert_int_equal(dur("0s"), 0);
	assert_int_equal(dur("0ms"), 0);
}

static void test_duration_combinations(void **state)
{
	assert_int_equal(dur("1h30m"), 90 * 60000);
	assert_int_equal(dur("1d2h3m4s5ms"), 86400000LL + 2 * 3600000 + 3 * 60000 + 4000 + 5);
	assert_int_equal(dur("1m1ms"), 60001);
	/* "ms" is one unit, not minutes followed by garbage. */
	assert_int_equal(dur("2ms"), 2);
	/* Repeated units add up, as in Go's time.ParseDuration. */
	assert_int_equal(dur("1h1h"), 2 * 3600000);
}

static void test_duration_bare_and_special(void **state)
{
	assert_int_equal(dur("0"), 0);
	assert_int_equal(dur("90"), 90000);
	assert_int_equal(dur("007"), 7000);
	/* -1 is the "disabled" marker and comes back as it is. */
	assert_int_equal(dur("-1"), -1);
}

static void test_duration_overflow(void **state)
{
	/* INT64_MAX ms is about 106751991167 days. */
	assert_int_equal(dur("106751991167d"), 106751991167LL * 86400000);
	dur_bad("106751991168d", "out of range");
	dur_bad("9223372036854775807s", "out of range");
	dur_bad("9223372036854775808ms", "out of range");
	dur_bad("99999999999999999999999", "out of range");
	dur_bad("9223372036854775807ms1ms", "out of range");
	assert_int_equal(dur("9223372036854775807ms"), INT64_MAX);
	/* A bare number of seconds that overflows when made milliseconds. */
	dur_bad("9223372036854776", "out of range");
}

static void test_duration_rejects(void **state)
{
	dur_bad("", "empty");
	dur_bad(NULL, "empty");
	dur_bad("m", "invalid");
	dur_bad("15x", "unit");
	dur_bad("15M", "unit");        /* minutes are lower-case: M could be months */
	dur_bad("1H", "unit");
	dur_bad("1h30", "unit");       /* a number without a unit after the first */
	dur_bad("1.5h", "unit");
	dur_bad(" 15m", "invalid");
	dur_bad("15m ", "invalid");
	dur_bad("15 m", "unit");
	dur_bad("+15m", "invalid");
	dur_bad("-5m", "negative");
	dur_bad("-2", "negative");
	dur_bad("-0", "negative");
	dur_bad("-1s", "negative");
	dur_bad("5m\n", "invalid");
}

static void test_size_units(void **state)
{
	assert_int_equal(size("0"), 0);
	assert_int_equal(size("100"), 100);
	assert_int_equal(size("100b"), 100);
	assert_int_equal(size("512k"), 512 * 1024);
	assert_int_equal(size("512kb"), 512 * 1024);
	assert_int_equal(size("25mb"), 25 * 1024 * 1024);
	assert_int_equal(size("25MB"), 25 * 1024 * 1024);
	assert_int_equal(size("25Mb"), 25 * 1024 * 1024);
	assert_int_equal(size("100m"), 100 * 1024 * 1024);
	assert_int_equal(size("1gb"), 1024ULL * 1024 * 1024);
	assert_int_equal(size("2G"), 2ULL * 1024 * 1024 * 1024);
	assert_int_equal(size("3tb"), 3ULL << 40);
	assert_int_equal(size("18446744073709551615"), UINT64_MAX);
	assert_int_equal(size("16777215tb"), 16777215ULL << 40);
}

static void test_size_rejects(void **state)
{
	size_bad("", "empty");
	size_bad(NULL, "empty");
	size_bad("mb", "invalid");
	size_bad("-1", "negative");
	size_bad("-1mb", "negative");
	size_bad("25 mb", "unit");
	size_bad("25mib", "unit");
	size_bad("25mbb", "unit");
	size_bad("1.5gb", "unit");
	size_bad("25parsecs", "unit");
	size_bad("18446744073709551616", "out of range");
	size_bad("16777216tb", "out of range");
	size_bad("99999999999999999999999gb", "out of range");
}

static void check_format(int64_t ms, const char *want)
{
	char buf[64];

	assert_string_equal(sora_format_duration(ms, buf, sizeof(buf)), want);
}

static void test_format(void **state)
{
	char small[4];

	check_format(0, "0s");
	check_format(250, "250ms");
	check_format(5 * 60000, "5m");
	check_format(90 * 60000, "1h30m");
	check_format(720LL * 3600000, "30d");
	check_format(86400000LL + 1, "1d1ms");
	check_format(-1, "-1ms");
	check_format(-90000, "-1m30s");
	check_format(INT64_MAX, "106751991167d7h12m55s807ms");
	check_format(INT64_MIN, "-106751991167d7h12m55s808ms");
	/* A small buffer gets a cut, terminated string. */
	assert_string_equal(sora_format_duration(90 * 60000, small, sizeof(small)), "1h3");
	/* size 0 writes nothing. */
	small[0] = 'x';
	assert_ptr_equal(sora_format_duration(1000, small, 0), small);
	assert_int_equal(small[0], 'x');
}

static void test_format_round_trip(void **state)
{
	static const int64_t values[] = {
		1, 999, 1000, 59999, 60000, 3599999, 3600000, 86399999, 86400000,
		123456789012LL, 3 * 86400000LL + 4 * 3600000 + 5,
	};
	char buf[64];

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		assert_int_equal(dur(sora_format_duration(values[i], buf, sizeof(buf))), values[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_units),
		cmocka_unit_test(test_duration_combinations),
		cmocka_unit_test(test_duration_bare_and_special),
		cmocka_unit_test(test_duration_overflow),
		cmocka_unit_test(test_duration_rejects),
		cmocka_unit_test(test_size_units),
		cmocka_unit_test(test_size_rejects),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_format_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
