/* RFC 5322 address-list parsing (sora_mime_address_parse). The broken
 * cases follow Dovecot; the golden corpus (test-mime) checks many more of
 * them through ENVELOPE against Dovecot itself. */
#include "mime-test-util.h"

static void append_field(struct sora_buf *b, struct sora_str s)
{
	if (s.p == NULL)
		assert_int_equal(sora_buf_append_str(b, "NIL"), 0);
	else
		assert_int_equal(sora_buf_append(b, s.p, s.len), 0);
}

/* Formats a list as "name|route|mailbox|domain;..." for comparisons. */
static char *format_list(const char *input)
{
	struct sora_mime_arena *arena = sora_mime_arena_new();
	struct sora_mime_address *list = NULL;
	struct sora_buf b;

	assert_non_null(arena);
	assert_int_equal(sora_mime_address_parse(arena, sora_str_c(input), &list), 0);
	sora_buf_init(&b, 0);
	for (const struct sora_mime_address *a = list; a != NULL; a = a->next) {
		append_field(&b, a->name);
		assert_int_equal(sora_buf_append_str(&b, "|"), 0);
		append_field(&b, a->route);
		assert_int_equal(sora_buf_append_str(&b, "|"), 0);
		append_field(&b, a->mailbox);
		assert_int_equal(sora_buf_append_str(&b, "|"), 0);
		append_field(&b, a->domain);
		assert_int_equal(sora_buf_append_str(&b, a->invalid ? "!;" : ";"), 0);
	}
	assert_int_equal(sora_buf_append(&b, "", 1), 0);
	sora_mime_arena_free(&arena);
	assert_null(arena);
	return b.data;
}

static void check(const char *input, const char *want)
{
	char *got = format_list(input);

	if (strcmp(got, want) != 0)
		fail_msg("input: %s\n  want: %s\n  got:  %s", input, want, got);
	free(got);
}

static void test_simple(void **state)
{
	(void)state;
	check("user@example.com", "NIL|NIL|user|example.com;");
	check("  user@example.com  ", "NIL|NIL|user|example.com;");
	check("John Doe <john@x.org>", "John Doe|NIL|john|x.org;");
	check("\"Doe, John\" <john@x.org>, jane@y.org",
	      "Doe, John|NIL|john|x.org;NIL|NIL|jane|y.org;");
	check("<only@angle.org>", "NIL|NIL|only|angle.org;");
	check("\"\" <empty@name.org>", "NIL|NIL|empty|name.org;");
	check("john@x.org (John Doe)", "John Doe|NIL|john|x.org;");
	check("=?utf-8?q?J=C3=B6rg?= <j@x>", "=?utf-8?q?J=C3=B6rg?=|NIL|j|x;");
	check("\"quoted\\\"local\"@x", "NIL|NIL|quoted\"local|x;");
	check("a@[192.0.2.1]", "NIL|NIL|a|[192.0.2.1];");
	check("first.last@sub.example.com", "NIL|NIL|first.last|sub.example.com;");
}

static void test_empty(void **state)
{
	struct sora_mime_arena *arena = sora_mime_arena_new();
	struct sora_mime_address *list = (void *)1;

	(void)state;
	assert_int_equal(sora_mime_address_parse(arena, SORA_STR_NULL, &list), 0);
	assert_null(list);
	list = (void *)1;
	assert_int_equal(sora_mime_address_parse(arena, SORA_STR(""), &list), 0);
	assert_null(list);
	list = (void *)1;
	assert_int_equal(sora_mime_address_parse(arena, SORA_STR("  (just a comment) "), &list), 0);
	assert_null(list);
	sora_mime_arena_free(&arena);
}

static void test_groups(void **state)
{
	(void)state;
	check("Group: a@b, c@d;", "NIL|NIL|Group|NIL;NIL|NIL|a|b;NIL|NIL|c|d;NIL|NIL|NIL|NIL;");
	check("undisclosed-recipients:;", "NIL|NIL|undisclosed-recipients|NIL;NIL|NIL|NIL|NIL;");
	check("g1: a@b;, x@y", "NIL|NIL|g1|NIL;NIL|NIL|a|b;NIL|NIL|NIL|NIL;NIL|NIL|x|y;");
	/* An unterminated group still ends. */
	check("g: a@b", "NIL|NIL|g|NIL;NIL|NIL|a|b;NIL|NIL|NIL|NIL!;");
}

static void test_routes_and_comments(void **state)
{
	(void)state;
	check("<@r1,@r2:user@host>", "NIL|@r1,@r2|user|host;");
	check("Name <@r1,,@r2:a@b>", "Name|@r1,@r2|a|b;");
	check("<@r a@b>", "NIL|INVALID_ROUTE|a|b;");
	check("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
	      "Pete|NIL|pete|silly.test;");
	check("a@b (first) (second)", "second|NIL|a|b;");
	check("a@b (one (nested) comment)", "one (nested) comment|NIL|a|b;");
}

static void test_broken(void **state)
{
	(void)state;
	check("foo", "NIL|NIL|foo|MISSING_DOMAIN!;");
	check("a@", "NIL|NIL|a|MISSING_DOMAIN!;");
	check("@", "NIL|NIL|MISSING_MAILBOX|MISSING_DOMAIN!;");
	check("<>", "NIL|NIL|MISSING_MAILBOX|MISSING_DOMAIN!;");
	check("<a@b", "NIL|NIL|a|SYNTAX_ERROR!;");
	check("a@b,,c@d",
	      "NIL|NIL|a|b;NIL|NIL|MISSING_MAILBOX|MISSING_DOMAIN!;NIL|NIL|c|d;");
	check("a@b c@d", "NIL|NIL|a|b;");
	check("Some Name", "Some Name|NIL|MISSING_MAILBOX|MISSING_DOMAIN!;");
	check("a . b @ c . d", "a.  b|NIL|MISSING_MAILBOX|MISSING_DOMAIN!;");
	check("\"unterminated <a@b>", "NIL|NIL|MISSING_MAILBOX|MISSING_DOMAIN!;");
	check("a@b, (unterminated", "NIL|NIL|a|b;NIL|NIL|MISSING_MAILBOX|MISSING_DOMAIN!;");
	check("<<<>>>", "NIL|NIL|MISSING_MAILBOX|SYNTAX_ERROR!;");
}

static void test_several_fields(void **state)
{
	(void)state;
	/* "\n" separates the values of several From/To/... fields; a syntax
	 * error in one does not lose the next. */
	check("a@b>\nc@d", "NIL|NIL|a|b;NIL|NIL|c|d;");
	check("\n\na@b\n", "NIL|NIL|a|b;");
}

static void test_bytes_kept(void **state)
{
	struct sora_mime_arena *arena = sora_mime_arena_new();
	struct sora_mime_address *list = NULL;
	static const char in[] = "\"N\0\xe9\" <x\xc3\xa9@y>";

	(void)state;
	assert_int_equal(sora_mime_address_parse(arena, sora_str_make(in, sizeof(in) - 1), &list), 0);
	assert_non_null(list);
	assert_int_equal(list->name.len, 3);
	assert_memory_equal(list->name.p, "N\0\xe9", 3);
	assert_true(test_str_is(list->mailbox, "x\xc3\xa9"));
	assert_null(list->next);
	sora_mime_arena_free(&arena);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_groups),
		cmocka_unit_test(test_routes_and_comments),
		cmocka_unit_test(test_broken),
		cmocka_unit_test(test_several_fields),
		cmocka_unit_test(test_bytes_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
