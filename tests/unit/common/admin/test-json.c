/* Tests for the admin API's JSON helpers (common/admin/json.h): hostile
 * strings (quotes, backslashes, control characters, NUL, invalid UTF-8)
 * always encode to valid JSON that decodes to what was meant, and request
 * bodies that would be misread (a NUL cutting a string) are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/admin/json.h"

/* Encodes s as {"k": s} and returns the printed text (malloc'd). */
static char *encode(const char *s)
{
	cJSON *o = cJSON_CreateObject();
	char *text;

	assert_non_null(o);
	assert_int_equal(sora_json_add_str(o, "k", s), 0);
	text = cJSON_PrintUnformatted(o);
	assert_non_null(text);
	cJSON_Delete(o);
	return text;
}

/* True when text is valid UTF-8 with no raw control character (what a
 * strict JSON parser requires of a document's strings). */
static int strict_json_text(const char *text)
{
	size_t len = strlen(text);

	for (size_t i = 0; i < len;) {
		size_t n = sora_utf8_seq_len((const unsigned char *)text + i, len - i);

		if (n == 0 || (unsigned char)text[i] < 0x20)
			return 0;
		i += n;
	}
	return 1;
}

/* Encodes, checks the text is strict JSON, parses it back and compares
 * the value with want. */
static void round_trip(const char *s, const char *want)
{
	char *text = encode(s);
	cJSON *back;
	const cJSON *k;

	assert_true(strict_json_text(text));
	back = cJSON_Parse(text);
	assert_non_null(back);
	k = cJSON_GetObjectItemCaseSensitive(back, "k");
	assert_true(cJSON_IsString(k));
	assert_string_equal(k->valuestring, want);
	cJSON_Delete(back);
	free(text);
}

static void test_plain_and_quotes(void **state)
{
	char *text;

	(void)state;
	round_trip("bob@example.com", "bob@example.com");
	round_trip("", "");
	round_trip("a\"b\\c/d", "a\"b\\c/d");
	text = encode("\"},\"admin\":true,\"x\":\"");
	/* The quote cannot close the string and inject a member. */
	assert_string_equal(text, "{\"k\":\"\\\"},\\\"admin\\\":true,\\\"x\\\":\\\"\"}");
	free(text);
}

static void test_control_characters(void **state)
{
	char *text;

	(void)state;
	round_trip("evil\x1b[2J\r\n\t\x01\x7f", "evil\x1b[2J\r\n\t\x01\x7f");
	text = encode("\x1b\x01\n");
	assert_string_equal(text, "{\"k\":\"\\u001b\\u0001\\n\"}");
	free(text);
}

static void test_invalid_utf8(void **state)
{
	(void)state;
	/* Valid multi-byte text stays as it is. */
	round_trip("J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x98\x80", "J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x98\x80");
	/* A lone continuation byte, a truncated sequence, an overlong '/', a
	 * surrogate, a code point past U+10FFFF, 0xff: each invalid byte
	 * becomes U+FFFD, the rest is kept. */
	round_trip("a\x80z", "a\xef\xbf\xbdz");
	round_trip("a\xc3", "a\xef\xbf\xbd");
	round_trip("\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd");
	round_trip("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	round_trip("\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	round_trip("\xff\xfe", "\xef\xbf\xbd\xef\xbf\xbd");
	round_trip("\xe2\x82", "\xef\xbf\xbd\xef\xbf\xbd");
}

static void test_sanitize_nul(void **state)
{
	char *s;

	(void)state;
	/* Bytes with a NUL inside (pointer + length): the NUL does not cut. */
	s = sora_utf8_sanitize("a\0b", 3);
	assert_non_null(s);
	assert_string_equal(s, "a\xef\xbf\xbd" "b");
	free(s);
}

static void test_null_is_json_null(void **state)
{
	char *text = encode(NULL);

	(void)state;
	assert_string_equal(text, "{\"k\":null}");
	free(text);
}

static int body_ok(const char *s, size_t len)
{
	const char *error = NULL;
	int r = sora_json_body_check(s, len, &error);

	if (r < 0)
		assert_non_null(error);
	return r == 0;
}

#define BODY(lit) body_ok(lit, sizeof(lit) - 1)

static void test_body_check(void **state)
{
	(void)state;
	assert_true(BODY("{\"email\": \"a@b.c\", \"password\": \"p\"}"));
	assert_true(BODY("{\"a\": \"J\xc3\xbcrgen\"}"));
	assert_true(BODY("{\"a\": \"\\u00e9\\n\\\"\"}"));
	/* An escaped backslash followed by u0000 is text, not a NUL. */
	assert_true(BODY("{\"a\": \"x\\\\u0000\"}"));
	assert_true(BODY("{\"a\": \"\\u0001\"}"));
	assert_true(BODY(""));
	/* A NUL escape, a raw NUL, invalid UTF-8 anywhere. */
	assert_false(BODY("{\"a\": \"x\\u0000y\"}"));
	assert_false(BODY("{\"a\": \"\\\\\\u0000\"}"));
	assert_false(BODY("{\"a\": \"x\"}\0"));
	/* A raw NUL right after a backslash (found by fuzz-admin-json). */
	assert_false(BODY("V{6\"\\t\\15\\\0" "0"));
	assert_false(BODY("{\"a\": \"\xff\"}"));
	assert_false(BODY("{\"a\": \"\xc3\"}"));
	assert_false(BODY("{\"a\": \"\xed\xa0\x80\"}"));
	/* An escape at the very end does not read past the buffer. */
	assert_true(BODY("\"\\"));
	assert_true(BODY("\"\\u000"));
}

/* Every single byte and every pair: the encoder's output is always strict
 * JSON and parses back. */
static void test_all_bytes(void **state)
{
	char s[3];

	(void)state;
	for (int a = 1; a < 256; a++) {
		for (int b = 0; b < 256; b++) {
			char *text;
			cJSON *back;

			s[0] = (char)a;
			s[1] = (char)b;
			s[2] = '\0';
			text = encode(s);
			assert_true(strict_json_text(text));
			back = cJSON_Parse(text);
			assert_non_null(back);
			cJSON_Delete(back);
			free(text);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_and_quotes),
		cmocka_unit_test(test_control_characters),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_sanitize_nul),
		cmocka_unit_test(test_null_is_json_null),
		cmocka_unit_test(test_body_check),
		cmocka_unit_test(test_all_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
