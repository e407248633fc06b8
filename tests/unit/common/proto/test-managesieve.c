/* The ManageSieve command parser: commands, strings, literals, limits, and
 * the same result when the input arrives one byte at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/proto/managesieve.h"

static const struct sora_sieve_params params = { .max_line = 1024, .max_literal = 100 };

static enum sora_sieve_result parse(const char *in, size_t len, struct sora_sieve_command *cmd,
				    size_t *used, bool *fatal, const char **err)
{
	return sora_sieve_parse(&params, in, len, cmd, used, fatal, err);
}

/* Every proper prefix needs more; the whole gives the same as in one go. */
static enum sora_sieve_result bytewise(const char *in, size_t len, struct sora_sieve_command *cmd,
				       size_t *used)
{
	bool fatal;
	const char *err;

	for (size_t i = 0; i < len; i++) {
		enum sora_sieve_result r = parse(in, i, cmd, used, &fatal, &err);

		if (r != SORA_SIEVE_NEED_MORE)
			return r;
	}
	return parse(in, len, cmd, used, &fatal, &err);
}

static struct sora_sieve_command cmd;

static void test_commands(void **state)
{
	static const char in[] = "AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHB3\"\r\nNOOP\r\n";
	size_t used;
	bool fatal;
	const char *err;

	assert_int_equal(parse(in, strlen(in), &cmd, &used, &fatal, &err), SORA_SIEVE_COMMAND);
	assert_int_equal(used, strlen("AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHB3\"\r\n"));
	assert_true(sora_str_eq(cmd.name, sora_str_c("AUTHENTICATE")));
	assert_int_equal(cmd.nargs, 2);
	assert_int_equal(cmd.args[0].type, SORA_SIEVE_ARG_STRING);
	assert_true(sora_str_eq(cmd.args[1].value, sora_str_c("AGFsaWNlAHB3")));
	assert_int_equal(bytewise(in, strlen(in), &cmd, &used), SORA_SIEVE_COMMAND);
	assert_int_equal(parse(in + used, strlen(in) - used, &cmd, &used, &fatal, &err),
			 SORA_SIEVE_COMMAND);
	assert_true(sora_str_eq(cmd.name, sora_str_c("NOOP")));
	assert_int_equal(cmd.nargs, 0);
}

static void test_literal_and_escapes(void **state)
{
	static const char in[] = "PUTSCRIPT \"a\\\"b\\\\\" {5+}\r\nkeep;\r\n";
	size_t used;

	assert_int_equal(bytewise(in, strlen(in), &cmd, &used), SORA_SIEVE_COMMAND);
	assert_int_equal(used, strlen(in));
	assert_int_equal(cmd.nargs, 2);
	assert_true(sora_str_eq(cmd.args[0].value, sora_str_c("a\"b\\")));
	assert_true(sora_str_eq(cmd.args[1].value, sora_str_c("keep;")));
}

static void test_numbers_and_atoms(void **state)
{
	static const char in[] = "HAVESPACE \"x\" 12345\r\n";
	size_t used;

	assert_int_equal(bytewise(in, strlen(in), &cmd, &used), SORA_SIEVE_COMMAND);
	assert_int_equal(cmd.args[1].type, SORA_SIEVE_ARG_NUMBER);
	assert_int_equal(cmd.args[1].number, 12345);
}

static void test_errors(void **state)
{
	size_t used;
	bool fatal;
	const char *err;

	/* A bad line is skipped as a whole. */
	assert_int_equal(parse("NOOP \"x\r\nNOOP\r\n", 15, &cmd, &used, &fatal, &err),
			 SORA_SIEVE_ERROR);
	assert_false(fatal);
	assert_int_equal(used, 9);
	assert_int_equal(parse("NOOP  x\r\n", 9, &cmd, &used, &fatal, &err), SORA_SIEVE_ERROR);
	assert_int_equal(parse("\"NOOP\"\r\n", 8, &cmd, &used, &fatal, &err), SORA_SIEVE_ERROR);
	assert_int_equal(parse("X {99999999999999999999+}\r\n", 27, &cmd, &used, &fatal, &err),
			 SORA_SIEVE_ERROR);
	/* A literal over the limit ends the session before its bytes. */
	assert_int_equal(parse("X {101+}\r\n", 10, &cmd, &used, &fatal, &err), SORA_SIEVE_ERROR);
	assert_true(fatal);
	/* NUL in a quoted string. */
	assert_int_equal(parse("X \"a\0b\"\r\n", 9, &cmd, &used, &fatal, &err), SORA_SIEVE_ERROR);
}

static void test_limits(void **state)
{
	char *big = malloc(3000);
	size_t used;
	bool fatal;
	const char *err;

	memset(big, 'A', 3000);
	assert_int_equal(parse(big, 3000, &cmd, &used, &fatal, &err), SORA_SIEVE_ERROR);
	assert_true(fatal);
	memcpy(big, "X \"", 3);
	assert_int_equal(parse(big, 3000, &cmd, &used, &fatal, &err), SORA_SIEVE_ERROR);
	assert_true(fatal);
	free(big);
	assert_int_equal(parse("X 1 2 3 4 5 6 7 8 9\r\n", 21, &cmd, &used, &fatal, &err),
			 SORA_SIEVE_ERROR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_literal_and_escapes),
		cmocka_unit_test(test_numbers_and_atoms),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
