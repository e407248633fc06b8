/* Unit tests for common/core/error.c: the one error type of the db, blob
 * and store layers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/core/error.h"

static void test_set_and_clear(void **state)
{
	struct sora_error err;

	(void)state;
	assert_int_equal(sora_error_set(&err, SORA_ERR_NOT_FOUND, "object %s: %d", "ab/1/x", 404),
			 -1);
	assert_int_equal(err.cls, SORA_ERR_NOT_FOUND);
	assert_string_equal(err.msg, "object ab/1/x: 404");
	assert_true(sora_error_is(&err, SORA_ERR_NOT_FOUND));
	assert_false(sora_error_is(&err, SORA_ERR_TEMPORARY));
	assert_false(sora_error_is(NULL, SORA_ERR_NOT_FOUND));
	sora_error_clear(&err);
	assert_int_equal(err.cls, SORA_ERR_OK);
	assert_string_equal(err.msg, "");
	/* NULL-safe, and still -1 so "return sora_error_set(NULL, ...)" fails. */
	assert_int_equal(sora_error_set(NULL, SORA_ERR_PERMANENT, "x"), -1);
	sora_error_clear(NULL);
	sora_error_prefix(NULL, "p");
	sora_error_append(NULL, "a");
}

static void test_prefix_and_append_keep_class(void **state)
{
	struct sora_error err;

	(void)state;
	sora_error_set(&err, SORA_ERR_TEMPORARY, "connection refused");
	sora_error_prefix(&err, "database %s at %s", "sora", "127.0.0.1:5432");
	sora_error_append(&err, " (after %d attempts)", 3);
	assert_int_equal(err.cls, SORA_ERR_TEMPORARY);
	assert_string_equal(err.msg, "database sora at 127.0.0.1:5432: connection refused"
			    " (after 3 attempts)");
}

/* Long texts are cut, never overflow, and a prefix always survives whole
 * (it says where the failure was; the end of the message yields). */
static void test_bounded(void **state)
{
	char big[3 * SORA_ERROR_MSG_SIZE];
	struct sora_error err;

	(void)state;
	memset(big, 'm', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	sora_error_set(&err, SORA_ERR_PERMANENT, "%s", big);
	assert_int_equal(strlen(err.msg), SORA_ERROR_MSG_SIZE - 1);
	sora_error_prefix(&err, "where");
	assert_int_equal(strlen(err.msg), SORA_ERROR_MSG_SIZE - 1);
	assert_memory_equal(err.msg, "where: mmm", 10);
	sora_error_append(&err, "more");
	assert_int_equal(strlen(err.msg), SORA_ERROR_MSG_SIZE - 1);

	/* A prefix longer than the buffer is cut too, still terminated. */
	sora_error_set(&err, SORA_ERR_PERMANENT, "short");
	sora_error_prefix(&err, "%s", big);
	assert_int_equal(strlen(err.msg), SORA_ERROR_MSG_SIZE - 1);
	assert_int_equal(err.msg[SORA_ERROR_MSG_SIZE - 3], ':');
}

static void test_class_names_and_errno(void **state)
{
	(void)state;
	for (int c = SORA_ERR_OK; c <= SORA_ERR_ABORTED; c++)
		assert_string_not_equal(sora_error_class_name((enum sora_error_class)c),
					"unknown error");
	assert_string_equal(sora_error_class_name(SORA_ERR_TEMPORARY), "temporary failure");
	assert_string_equal(sora_error_class_name((enum sora_error_class)99), "unknown error");
	assert_int_equal(sora_error_class_errno(ENOSPC), SORA_ERR_TEMPORARY);
	assert_int_equal(sora_error_class_errno(EDQUOT), SORA_ERR_TEMPORARY);
	assert_int_equal(sora_error_class_errno(ENOMEM), SORA_ERR_TEMPORARY);
	assert_int_equal(sora_error_class_errno(EACCES), SORA_ERR_PERMANENT);
	assert_int_equal(sora_error_class_errno(ENOENT), SORA_ERR_PERMANENT);
	assert_int_equal(sora_error_class_errno(EIO), SORA_ERR_PERMANENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_and_clear),
		cmocka_unit_test(test_prefix_and_append_keep_class),
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_class_names_and_errno),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
