/* RFC 2047 encoded words, RFC 2231 parameter values and the charset
 * conversions behind SEARCH/SORT/display of header text. */
#include "mime-test-util.h"

#include "common/proto/mime/mime-decode.h"

static void check_decode(const char *in, size_t in_len, unsigned int flags, const char *want,
			 size_t want_len)
{
	struct sora_buf b;

	sora_buf_init(&b, 0);
	assert_int_equal(sora_mime_decode_header(sora_str_make(in, in_len), flags, &b), 0);
	if (b.len != want_len || (want_len > 0 && memcmp(b.data, want, want_len) != 0))
		fail_msg("input: %.*s\n  want: %.*s\n  got:  %.*s", (int)in_len, in, (int)want_len, want,
			 (int)b.len, b.data != NULL ? b.data : "");
	sora_buf_free(&b);
}

#define DEC(in, want) check_decode(in, strlen(in), 0, want, strlen(want))

static void test_encoded_words(void **state)
{
	(void)state;
	DEC("plain text", "plain text");
	DEC("", "");
	DEC("=?UTF-8?B?w6k=?=", "\xc3\xa9");
	DEC("=?utf-8?q?caf=C3=A9_au_lait?=", "caf\xc3\xa9 au lait");
	DEC("=?ISO-8859-1?Q?Caf=E9?= meeting", "Caf\xc3\xa9 meeting");
	DEC("RE: =?iso-8859-1?q?a?=", "RE: a");
	/* Whitespace between two encoded words is dropped (RFC 2047 6.2). */
	DEC("=?utf-8?q?a?= =?utf-8?q?b?=", "ab");
	DEC("=?utf-8?q?a?=\r\n\t=?utf-8?q?b?=", "ab");
	DEC("=?utf-8?q?a?= x =?utf-8?q?b?=", "a x b");
	/* A UTF-8 character split over two words. */
	DEC("=?utf-8?b?w6nD?= =?utf-8?b?qQ==?=", "\xc3\xa9\xc3\xa9");
	/* RFC 2231 language in the charset. */
	DEC("=?utf-8*en?q?hi?=", "hi");
	DEC("=?windows-1252?q?=80_=93x=94?=", "\xe2\x82\xac \xe2\x80\x9cx\xe2\x80\x9d");
	DEC("=?iso-8859-15?q?=A4?=", "\xe2\x82\xac");
	DEC("=?us-ascii?q?a=3Db?=", "a=b");
	/* Unknown charsets and malformed words stay as they are. */
	DEC("=?koi8-r?b?8NLJ18XU?=", "=?koi8-r?b?8NLJ18XU?=");
	DEC("=?utf-8?b?w6k=?= =?koi8-r?q?x?=", "\xc3\xa9 =?koi8-r?q?x?=");
	DEC("=?utf-8?x?abc?=", "=?utf-8?x?abc?=");
	DEC("=?utf-8?q?no end", "=?utf-8?q?no end");
	DEC("=?utf-8?q?has space?=", "=?utf-8?q?has space?=");
	DEC("=?" "?q?x?=", "=?" "?q?x?=");
	DEC("=?utf-8?q?bad=Zhex?=", "bad=Zhex");
	/* Empty encoded text. */
	DEC("x=?utf-8?q?" "?=y", "xy");
}

static void test_valid_utf8_flag(void **state)
{
	(void)state;
	check_decode("a\xff" "b", 3, SORA_MIME_DECODE_VALID_UTF8, "a\xef\xbf\xbd" "b", 5);
	check_decode("a\xff" "b", 3, 0, "a\xff" "b", 3);
	check_decode("n\0l", 3, SORA_MIME_DECODE_VALID_UTF8, "n\xef\xbf\xbdl", 5);
	check_decode("=?utf-8?q?=C3?=", 15, SORA_MIME_DECODE_VALID_UTF8, "\xef\xbf\xbd", 3);
	check_decode("=?iso-8859-1?q?=00?=", 20, SORA_MIME_DECODE_VALID_UTF8, "\xef\xbf\xbd", 3);
	check_decode("\xc3\xa9", 2, SORA_MIME_DECODE_VALID_UTF8, "\xc3\xa9", 2);
}

static void test_charset_to_utf8(void **state)
{
	struct sora_buf b;

	(void)state;
	sora_buf_init(&b, 0);
	assert_int_equal(sora_mime_charset_to_utf8(SORA_STR("Latin1"), "\xe9t\xe9", 3, &b), 0);
	assert_int_equal(b.len, 5);
	assert_memory_equal(b.data, "\xc3\xa9t\xc3\xa9", 5);
	b.len = 0;
	assert_int_equal(sora_mime_charset_to_utf8(SORA_STR("x-unknown"), "abc", 3, &b), 1);
	assert_int_equal(b.len, 0);
	assert_int_equal(sora_mime_charset_to_utf8(SORA_STR("cp1252"), "\x81", 1, &b), 0);
	assert_memory_equal(b.data, "\xef\xbf\xbd", 3);
	sora_buf_free(&b);
}

static void test_utf8_valid(void **state)
{
	(void)state;
	assert_true(sora_mime_utf8_valid("", 0));
	assert_true(sora_mime_utf8_valid("abc\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 12));
	assert_false(sora_mime_utf8_valid("\xc0\xaf", 2));         /* overlong */
	assert_false(sora_mime_utf8_valid("\xe0\x80\xaf", 3));     /* overlong */
	assert_false(sora_mime_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
	assert_false(sora_mime_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
	assert_false(sora_mime_utf8_valid("\xe2\x82", 2));         /* truncated */
	assert_false(sora_mime_utf8_valid("\x80", 1));
}

static void test_param_decode(void **state)
{
	static const char m[] =
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=utf-8;\r\n"
		" title*0*=us-ascii'en'This%20is%20; title*1*=%2A%2A%2Afun%2A%2A%2A;\r\n"
		" name=\"=?utf-8?b?w6k=?=.txt\"; other*=iso-8859-1''%E9; bad*=x-unknown''%41;\r\n"
		" pct*=utf-8''%G1%4\r\n"
		"Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf\r\n"
		"\r\nbody";
	struct sora_mime_message *msg = test_parse(m, sizeof(m) - 1);
	const struct sora_mime_part *p = msg->root;
	struct sora_buf b;

	(void)state;
	sora_buf_init(&b, 0);
#define PARAM(name, want) do { \
		b.len = 0; \
		assert_int_equal(sora_mime_param_decode(p->params, p->param_count, name, 0, &b), 1); \
		assert_int_equal(b.len, strlen(want)); \
		assert_memory_equal(b.data, want, b.len); \
	} while (0)
	PARAM("title", "This is ***fun***");
	PARAM("name", "\xc3\xa9.txt");
	PARAM("other", "\xc3\xa9");
	PARAM("bad", "x-unknown''%41");
	PARAM("pct", "%G1%4");
	PARAM("charset", "utf-8");
#undef PARAM
	b.len = 0;
	assert_int_equal(sora_mime_param_decode(p->params, p->param_count, "missing", 0, &b), 0);
	assert_int_equal(sora_mime_part_filename(p, 0, &b), 1);
	assert_int_equal(b.len, strlen("\xe2\x82\xac rates.pdf"));
	assert_memory_equal(b.data, "\xe2\x82\xac rates.pdf", b.len);
	sora_buf_free(&b);
	sora_mime_message_free(&msg);
}

static void test_filename_fallback(void **state)
{
	static const char m1[] = "Content-Type: image/png; name=logo.png\r\n\r\n";
	static const char m2[] = "Content-Type: image/png\r\n\r\n";
	struct sora_mime_message *msg;
	struct sora_buf b;

	(void)state;
	sora_buf_init(&b, 0);
	msg = test_parse(m1, sizeof(m1) - 1);
	assert_int_equal(sora_mime_part_filename(msg->root, 0, &b), 1);
	assert_int_equal(b.len, 8);
	assert_memory_equal(b.data, "logo.png", 8);
	sora_mime_message_free(&msg);
	b.len = 0;
	msg = test_parse(m2, sizeof(m2) - 1);
	assert_int_equal(sora_mime_part_filename(msg->root, 0, &b), 0);
	assert_int_equal(b.len, 0);
	sora_mime_message_free(&msg);
	sora_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encoded_words),
		cmocka_unit_test(test_valid_utf8_flag),
		cmocka_unit_test(test_charset_to_utf8),
		cmocka_unit_test(test_utf8_valid),
		cmocka_unit_test(test_param_decode),
		cmocka_unit_test(test_filename_fallback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
