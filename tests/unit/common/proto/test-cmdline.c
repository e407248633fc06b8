#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/proto/cmdline.h"

static struct sora_str S(const char *s) { return sora_str_c(s); }

static void test_line_find(void **state)
{
	size_t consumed = 0;

	assert_int_equal(sora_line_find("abc", 3, &consumed), -1);
	assert_int_equal(sora_line_find("abc\r\nx", 6, &consumed), 3);
	assert_int_equal(consumed, 5);
	assert_int_equal(sora_line_find("abc\nx", 5, &consumed), 3);
	assert_int_equal(consumed, 4);
	assert_int_equal(sora_line_find("\r\n", 2, &consumed), 0);
	assert_int_equal(consumed, 2);
	/* A NUL byte is data, not an end of string. */
	assert_int_equal(sora_line_find("a\0b\r\n", 5, &consumed), 3);
}

static void test_pop3(void **state)
{
	struct sora_pop3_cmdline c;
	const char *err = NULL;

	assert_int_equal(sora_pop3_cmdline_parse(S("CAPA"), &c, &err), 0);
	assert_true(sora_str_eq(c.command, S("CAPA")));
	assert_int_equal(sora_pop3_cmdline_parse(S("USER bob@example.com"), &c, &err), 0);
	assert_true(sora_str_eq(c.args, S("bob@example.com")));
	assert_int_equal(sora_pop3_cmdline_parse(S(""), &c, &err), -1);
	assert_int_equal(sora_pop3_cmdline_parse(S(" USER"), &c, &err), -1);
	assert_int_equal(sora_pop3_cmdline_parse(sora_str_make("US\0R", 4), &c, &err), -1);
	assert_int_equal(sora_pop3_cmdline_parse(S("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), &c, &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_find),
		cmocka_unit_test(test_pop3),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
