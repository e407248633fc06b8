/* Unit tests for common/db/address.c (account address validation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/db/address.h"

static int check(const char *s)
{
	struct sora_error err;
	int r;

	sora_error_clear(&err);
	r = sora_address_validate(sora_str_c(s), &err);
	if (r < 0) {
		assert_int_equal(err.cls, SORA_ERR_INVALID);
		assert_true(err.msg[0] != '\0');
	}
	return r;
}

static void test_valid(void **state)
{
	static const char *const ok[] = {
		"bob@example.com",
		"Bob.Smith@Example.COM",
		"bob+tag@example.com",
		"b@x",
		"postmaster@localhost",
		"a_b-c%d!e#f$g&h'i=j?k^l`m{n|o}p~q/r@sub.example-domain.org",
		"user@xn--bcher-kva.example",
		"j\xc3\xb6rg@m\xc3\xbcller.de",         /* UTF-8 local part and domain */
		"1@2.3",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (check(ok[i]) != 0)
			fail_msg("rejected valid address %s", ok[i]);
	}
}

static void test_invalid(void **state)
{
	static const char *const bad[] = {
		"",
		"bob",
		"@example.com",
		"bob@",
		"bob@@example.com",
		"bob@ex@ample.com",
		"bob smith@example.com",
		"bob@exa mple.com",
		" bob@example.com",
		"bob@example.com ",
		"bob\t@example.com",
		"bob\r\n@example.com",
		"bob@example.com\x7f",
		".bob@example.com",
		"bob.@example.com",
		"bo..b@example.com",
		"bob@.example.com",
		"bob@example.com.",
		"bob@example..com",
		"bob@-example.com",
		"bob@example-.com",
		"bob@exa_mple.com",
		"bob@[192.0.2.1]",
		"\"bob\"@example.com",
		"bob(comment)@example.com",
		"bob,alice@example.com",
		"bob<x>@example.com",
		"bob\\x@example.com",
		"bob*master@example.com",             /* master-user separator */
		"bob@ex\xc3(ample.com",               /* broken UTF-8 */
		"b\xc0\xafob@example.com",            /* overlong */
		"b\xed\xa0\x80@example.com",          /* surrogate */
		"b\xf4\x90\x80\x80@example.com",      /* above U+10FFFF */
		"b\xe2\x82@example.com",              /* truncated sequence */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (check(bad[i]) == 0)
			fail_msg("accepted invalid address #%zu", i);
	}
}

static void test_nul_and_lengths(void **state)
{
	struct sora_error err;
	char buf[400];

	(void)state;
	/* A NUL byte inside the data is invalid (network data may hold one). */
	assert_int_equal(sora_address_validate(sora_str_make("bob\0x@example.com", 17), &err),
			 -1);
	assert_string_equal(err.msg, "NUL byte");
	assert_int_equal(sora_address_validate(SORA_STR_NULL, &err), -1);
	assert_string_equal(err.msg, "empty address");
	/* A yes/no answer needs no error struct. */
	assert_int_equal(sora_address_validate(SORA_STR_NULL, NULL), -1);

	/* Local part: 64 bytes fine, 65 not. */
	memset(buf, 'a', 64);
	memcpy(buf + 64, "@example.com", 13);
	assert_int_equal(check(buf), 0);
	memset(buf, 'a', 65);
	memcpy(buf + 65, "@example.com", 13);
	assert_int_equal(check(buf), -1);

	/* A label of 63 bytes is fine, 64 not. */
	memcpy(buf, "bob@", 4);
	memset(buf + 4, 'd', 63);
	memcpy(buf + 67, ".com", 5);
	assert_int_equal(check(buf), 0);
	memset(buf + 4, 'd', 64);
	memcpy(buf + 68, ".com", 5);
	assert_int_equal(check(buf), -1);

	/* Total length: 254 fine, 255 not (labels kept short). */
	memset(buf, 0, sizeof(buf));
	memset(buf, 'a', 64);
	buf[64] = '@';
	for (size_t i = 65; i < 254; i++)
		buf[i] = (i - 65) % 10 == 9 ? '.' : 'x';
	buf[253] = 'x';
	assert_int_equal(strlen(buf), 254);
	assert_int_equal(check(buf), 0);
	buf[254] = 'x';
	assert_int_equal(check(buf), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_nul_and_lengths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
