/* Tests for the AUTHENTICATE PLAIN response decoder (RFC 4616) of the IMAP
 * front end (common/session/imap-front.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/session/imap-front.h"

static void expect_ok(const char *b64, const char *authzid, const char *authcid, const char *pw,
		      size_t pwlen)
{
	struct sora_buf buf = { 0 };
	struct sora_str z, c, p;

	assert_int_equal(sora_sasl_plain_decode(sora_str_c(b64), &buf, &z, &c, &p), 0);
	assert_int_equal(z.len, strlen(authzid));
	assert_memory_equal(z.p, authzid, z.len);
	assert_int_equal(c.len, strlen(authcid));
	assert_memory_equal(c.p, authcid, c.len);
	assert_int_equal(p.len, pwlen);
	assert_memory_equal(p.p, pw, pwlen);
	sora_buf_free(&buf);
}

static void expect_fail(const char *b64)
{
	struct sora_buf buf = { 0 };
	struct sora_str z, c, p;

	assert_int_equal(sora_sasl_plain_decode(sora_str_c(b64), &buf, &z, &c, &p), -1);
	sora_buf_free(&buf);
}

static void test_plain_valid(void **state)
{
	/* "\0bob\0secret" */
	expect_ok("AGJvYgBzZWNyZXQ=", "", "bob", "secret", 6);
	/* "alice\0proxy\0pw" */
	expect_ok("YWxpY2UAcHJveHkAcHc=", "alice", "proxy", "pw", 2);
	/* empty password: "\0bob\0" */
	expect_ok("AGJvYgA=", "", "bob", "", 0);
}

static void test_plain_invalid(void **state)
{
	expect_fail("");                       /* nothing */
	expect_fail("!!!!");                   /* not base64 */
	expect_fail("Ym9i");                   /* "bob": no NULs */
	expect_fail("AGJvYg==");               /* "\0bob": one NUL */
	expect_fail("AABwdw==");               /* "\0\0pw": empty authcid */
	expect_fail("AGJvYgBzZWMAcmV0");       /* "\0bob\0sec\0ret": NUL in password */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_valid),
		cmocka_unit_test(test_plain_invalid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
