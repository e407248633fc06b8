/* Tests for the pure helpers of backend/store/mailbox.h: LIST pattern
 * matching ('*' vs '%', INBOX case), name validation and normalisation,
 * special-use attributes. The database functions are covered by
 * test-mailbox-live.c (run from tests/integration/test_mailbox.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/store/mailbox.h"

static bool m(const char *pattern, const char *name)
{
	return sora_mailbox_match(pattern, name, '/');
}

static void test_match_literal(void **state)
{
	assert_true(m("Sent", "Sent"));
	assert_false(m("Sent", "sent"));
	assert_false(m("Sent", "Sent/x"));
	assert_false(m("Sen", "Sent"));
	assert_false(m("Sentx", "Sent"));
	assert_true(m("", "") == true);
	assert_false(m("", "a"));
	assert_true(m("a/b", "a/b"));
}

static void test_match_star(void **state)
{
	assert_true(m("*", "a"));
	assert_true(m("*", "a/b/c"));
	assert_true(m("a/*", "a/b"));
	assert_true(m("a/*", "a/b/c"));
	assert_false(m("a/*", "a"));
	assert_true(m("a*", "a"));
	assert_true(m("a*", "a/b"));
	assert_true(m("*c", "a/b/c"));
	assert_true(m("*b*", "a/b/c"));
	assert_false(m("*x*", "a/b/c"));
	assert_true(m("**", "x"));
	assert_true(m("a*b*c", "a/xx/b/yy/c"));
	assert_false(m("a*b*c", "a/xx/b/yy/cd"));
}

static void test_match_percent(void **state)
{
	assert_true(m("%", "a"));
	assert_false(m("%", "a/b"));
	assert_true(m("%/%", "a/b"));
	assert_false(m("%/%", "a/b/c"));
	assert_true(m("a/%", "a/b"));
	assert_false(m("a/%", "a/b/c"));
	assert_false(m("a/%", "a"));
	assert_true(m("a%", "abc"));
	assert_true(m("%c", "abc"));
	assert_false(m("%c", "a/c"));
	assert_true(m("%/*", "a/b/c"));
	assert_true(m("%%", ""));
	assert_true(m("%", ""));
	/* '%' then '*' and the other way round. */
	assert_true(m("*/%", "a/b/c"));
	assert_false(m("*/%", "abc"));
}

static void test_match_inbox_case(void **state)
{
	assert_true(m("inbox", "INBOX"));
	assert_true(m("InBoX", "INBOX"));
	assert_true(m("inbox/%", "INBOX/Sub"));
	assert_true(m("i*", "INBOX"));
	assert_true(m("in%", "INBOX"));
	/* Only the INBOX component is case-insensitive. */
	assert_false(m("inbox/sub", "INBOX/Sub"));
	assert_true(m("inbox/Sub", "INBOX/Sub"));
	/* A name that merely starts with "INBOX" is not INBOX. */
	assert_false(m("inboxes", "INBOXES"));
	assert_true(m("INBOXES", "INBOXES"));
	assert_false(m("inbo", "INBOX"));
}

static void test_match_long(void **state)
{
	char name[SORA_MAILBOX_NAME_MAX + 2];
	char pat[4000];

	memset(name, 'a', SORA_MAILBOX_NAME_MAX);
	name[SORA_MAILBOX_NAME_MAX] = '\0';
	/* Many stars: linear work per pattern byte, no blow-up. */
	memset(pat, '*', sizeof(pat) - 2);
	pat[sizeof(pat) - 2] = 'b';
	pat[sizeof(pat) - 1] = '\0';
	assert_false(m(pat, name));
	pat[sizeof(pat) - 2] = 'a';
	assert_true(m(pat, name));
	/* Longer than any stored name: never matches. */
	name[SORA_MAILBOX_NAME_MAX] = 'a';
	name[SORA_MAILBOX_NAME_MAX + 1] = '\0';
	assert_false(m("*", name));
}

static void norm_ok(const char *in, const char *want)
{
	char out[SORA_MAILBOX_NAME_MAX + 1];
	struct sora_error err = { 0 };

	if (sora_mailbox_name_normalize(in, out, sizeof(out), &err) != 0)
		fail_msg("'%s' refused: %s", in, err.msg);
	assert_string_equal(out, want);
}

static void norm_bad(const char *in)
{
	char out[SORA_MAILBOX_NAME_MAX + 1];
	struct sora_error err = { 0 };

	if (sora_mailbox_name_normalize(in, out, sizeof(out), &err) == 0)
		fail_msg("'%s' accepted", in);
	assert_int_equal(err.cls, SORA_ERR_INVALID);
}

static void test_names(void **state)
{
	char buf[2 * SORA_MAILBOX_NAME_MAX];
	size_t i;

	norm_ok("Sent", "Sent");
	norm_ok("a/b/c", "a/b/c");
	norm_ok("inbox", "INBOX");
	norm_ok("Inbox/Sub", "INBOX/Sub");
	norm_ok("inBOX/inbox", "INBOX/inbox");
	norm_ok("Inboxes", "Inboxes");
	norm_ok("Caf\xc3\xa9 \xe2\x9c\x93", "Caf\xc3\xa9 \xe2\x9c\x93");
	norm_ok("with space", "with space");

	norm_bad(NULL);
	norm_bad("");
	norm_bad("/");
	norm_bad("/a");
	norm_bad("a/");
	norm_bad("a//b");
	norm_bad("a*");
	norm_bad("a%b");
	norm_bad("tab\there");
	norm_bad("del\x7f");
	norm_bad("bad\xc3(");
	norm_bad("overlong\xc0\xaf");
	norm_bad("surrogate\xed\xa0\x80");

	/* Length: exactly the limit passes, one more fails. */
	for (i = 0; i < SORA_MAILBOX_NAME_MAX; i++)
		buf[i] = (i % 200 == 199) ? '/' : 'x';
	buf[SORA_MAILBOX_NAME_MAX] = '\0';
	norm_ok(buf, buf);
	buf[SORA_MAILBOX_NAME_MAX] = 'x';
	buf[SORA_MAILBOX_NAME_MAX + 1] = '\0';
	norm_bad(buf);

	/* Component length. */
	memset(buf, 'c', SORA_MAILBOX_COMPONENT_MAX);
	buf[SORA_MAILBOX_COMPONENT_MAX] = '\0';
	norm_ok(buf, buf);
	memset(buf, 'c', SORA_MAILBOX_COMPONENT_MAX + 1);
	buf[SORA_MAILBOX_COMPONENT_MAX + 1] = '\0';
	norm_bad(buf);

	/* Depth. */
	buf[0] = '\0';
	for (i = 0; i < SORA_MAILBOX_DEPTH_MAX; i++)
		strcat(buf, i == 0 ? "d" : "/d");
	norm_ok(buf, buf);
	strcat(buf, "/d");
	norm_bad(buf);
}

static void test_normalize_small_buffer(void **state)
{
	char out[4];
	struct sora_error err = { 0 };

	assert_int_equal(sora_mailbox_name_normalize("abc", out, sizeof(out), &err), 0);
	assert_int_equal(sora_mailbox_name_normalize("abcd", out, sizeof(out), &err), -1);
	assert_int_equal(err.cls, SORA_ERR_INVALID);
}

static void test_inbox_and_special_use(void **state)
{
	assert_true(sora_mailbox_is_inbox("INBOX"));
	assert_true(sora_mailbox_is_inbox("inbox"));
	assert_false(sora_mailbox_is_inbox("INBOX/x"));
	assert_false(sora_mailbox_is_inbox(NULL));

	assert_string_equal(sora_mailbox_special_use_canonical("\\sent"), "\\Sent");
	assert_string_equal(sora_mailbox_special_use_canonical("\\JUNK"), "\\Junk");
	assert_string_equal(sora_mailbox_special_use_canonical("\\All"), "\\All");
	assert_null(sora_mailbox_special_use_canonical("Sent"));
	assert_null(sora_mailbox_special_use_canonical("\\Important"));
	assert_null(sora_mailbox_special_use_canonical(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match_literal),
		cmocka_unit_test(test_match_star),
		cmocka_unit_test(test_match_percent),
		cmocka_unit_test(test_match_inbox_case),
		cmocka_unit_test(test_match_long),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_normalize_small_buffer),
		cmocka_unit_test(test_inbox_and_special_use),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
