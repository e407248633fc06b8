/* Tests for the pure helper of backend/store/messages.h: keyword list
 * normalisation (split on spaces, case-insensitive duplicates dropped with
 * the first spelling kept, sorted case-insensitively). The database
 * functions are covered by test-messages-live.c (run from
 * tests/integration/test_messages.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/store/messages.h"

static void norm_is(const char *in, const char *want)
{
	char *got = sora_msgs_keywords_normalize(in);

	assert_non_null(got);
	if (strcmp(got, want) != 0)
		fail_msg("normalize(\"%s\") = \"%s\", wanted \"%s\"", in != NULL ? in : "(null)",
			 got, want);
	free(got);
}

static void test_empty(void **state)
{
	norm_is("", "");
	norm_is(NULL, "");
	norm_is(" ", "");
	norm_is("   ", "");
}

static void test_sorted(void **state)
{
	norm_is("b a c", "a b c");
	norm_is("Work $Junk", "$Junk Work");
	/* Case-insensitive order: "apple" sorts before "Banana". */
	norm_is("Banana apple", "apple Banana");
	/* A prefix sorts first. */
	norm_is("abc ab a", "a ab abc");
}

static void test_dedup_case_insensitive(void **state)
{
	norm_is("$Junk $junk", "$Junk");
	norm_is("$junk $JUNK $Junk", "$junk");
	norm_is("x X y x", "x y");
	/* Only equal keywords are duplicates, not prefixes. */
	norm_is("ab AB abc", "ab abc");
}

static void test_spaces(void **state)
{
	norm_is("  a   b ", "a b");
	norm_is("a", "a");
	/* Atoms may hold characters SQL arrays treat specially. */
	norm_is("a,b {c} \"d\"", "\"d\" a,b {c}");
}

static void test_long_list(void **state)
{
	char in[4096], want[4096];
	size_t p = 0, q = 0;
	int i;

	/* 300 keywords k299 ... k000 and each again in upper case. */
	for (i = 299; i >= 0; i--)
		p += (size_t)snprintf(in + p, sizeof(in) - p, "k%03d K%03d ", i, i);
	for (i = 0; i < 300; i++)
		q += (size_t)snprintf(want + q, sizeof(want) - q, i ? " K%03d" : "K%03d", i);
	/* The first spelling of each pair is "k", so fix want. */
	for (i = 0; want[i] != '\0'; i++)
		if (want[i] == 'K')
			want[i] = 'k';
	norm_is(in, want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_sorted),
		cmocka_unit_test(test_dedup_case_insensitive),
		cmocka_unit_test(test_spaces),
		cmocka_unit_test(test_long_list),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
