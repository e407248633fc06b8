/* Tests for SMTP reply formatting and parsing (common/proto/smtp-reply.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/proto/smtp-reply.h"

#define assert_buf(b, lit) do { \
	assert_int_equal((b)->len, sizeof(lit) - 1); \
	assert_memory_equal((b)->data, lit, sizeof(lit) - 1); \
} while (0)

#define assert_str(s, lit) do { \
	struct sora_str s_ = (s); \
	if (!sora_str_eq(s_, SORA_STR(lit))) \
		fail_msg("got \"%.*s\", expected \"%s\"", (int)s_.len, \
			 s_.p != NULL ? s_.p : "", lit); \
} while (0)

static void test_single_line(void **state)
{
	struct sora_buf b;

	sora_buf_init(&b, 0);
	assert_int_equal(sora_smtp_reply_append(&b, 250, "2.1.5", false, "<%s> OK", "a@b"), 0);
	assert_buf(&b, "250 2.1.5 <a@b> OK\r\n");
	sora_buf_free(&b);

	assert_int_equal(sora_smtp_reply_append(&b, 354, NULL, false,
						"Start mail input; end with <CRLF>.<CRLF>"), 0);
	assert_buf(&b, "354 Start mail input; end with <CRLF>.<CRLF>\r\n");
	sora_buf_free(&b);

	assert_int_equal(sora_smtp_reply_append(&b, 250, NULL, false, NULL), 0);
	assert_buf(&b, "250\r\n");
	sora_buf_free(&b);
	assert_int_equal(sora_smtp_reply_append(&b, 250, "2.0.0", false, NULL), 0);
	assert_buf(&b, "250 2.0.0\r\n");
	sora_buf_free(&b);
	assert_int_equal(sora_smtp_reply_append(&b, 250, NULL, true, NULL), 0);
	assert_buf(&b, "250-\r\n");
	sora_buf_free(&b);
	assert_int_equal(sora_smtp_reply_append(&b, 552, "5.3.4", false,
						"Message size exceeds fixed limit"), 0);
	assert_buf(&b, "552 5.3.4 Message size exceeds fixed limit\r\n");
	sora_buf_free(&b);
}

static void test_multi_line(void **state)
{
	struct sora_buf b;
	static const char *const caps[] = {
		"mx.example.com", "PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME",
		"SIZE 52428800",
	};

	sora_buf_init(&b, 0);
	assert_int_equal(sora_smtp_reply_lines(&b, 250, NULL, caps, 5), 0);
	assert_buf(&b, "250-mx.example.com\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
		   "250-8BITMIME\r\n250 SIZE 52428800\r\n");
	sora_buf_free(&b);

	/* One line: no continuation mark. */
	assert_int_equal(sora_smtp_reply_lines(&b, 214, "2.0.0", caps, 1), 0);
	assert_buf(&b, "214 2.0.0 mx.example.com\r\n");
	sora_buf_free(&b);

	/* Lines are text, not formats. */
	{
		static const char *const pct[] = { "100% %s %n", "end" };
		assert_int_equal(sora_smtp_reply_lines(&b, 250, "2.0.0", pct, 2), 0);
		assert_buf(&b, "250-2.0.0 100% %s %n\r\n250 2.0.0 end\r\n");
		sora_buf_free(&b);
	}
	assert_int_equal(sora_smtp_reply_lines(&b, 250, NULL, caps, 0), -1);
	assert_int_equal(b.len, 0);
}

static void test_bad_codes(void **state)
{
	struct sora_buf b;

	sora_buf_init(&b, 0);
	assert_int_equal(sora_smtp_reply_append(&b, 250, "2.0.0", true, "keep"), 0);
	/* Each failure leaves the buffer as it was. */
	assert_int_equal(sora_smtp_reply_append(&b, 354, "3.0.0", false, "x"), -1);
	assert_int_equal(sora_smtp_reply_append(&b, 250, "5.1.1", false, "x"), -1);
	assert_int_equal(sora_smtp_reply_append(&b, 550, "4.1.1", false, "x"), -1);
	assert_int_equal(sora_smtp_reply_append(&b, 600, NULL, false, "x"), -1);
	assert_int_equal(sora_smtp_reply_append(&b, 199, NULL, false, "x"), -1);
	assert_int_equal(sora_smtp_reply_append(&b, 260, NULL, false, "x"), -1);
	assert_int_equal(sora_smtp_reply_append(&b, 250, "2.1", false, "x"), -1);
	assert_int_equal(sora_smtp_reply_append(&b, 250, "2.1.1234", false, "x"), -1);
	assert_int_equal(sora_smtp_reply_append(&b, 250, "2..1", false, "x"), -1);
	assert_int_equal(sora_smtp_reply_append(&b, 250, "2.1.5 ", false, "x"), -1);
	assert_buf(&b, "250-2.0.0 keep\r\n");
	sora_buf_free(&b);

	assert_true(sora_smtp_enhanced_valid(SORA_STR("2.1.5")));
	assert_true(sora_smtp_enhanced_valid(SORA_STR("5.123.456")));
	assert_false(sora_smtp_enhanced_valid(SORA_STR("3.1.5")));
	assert_false(sora_smtp_enhanced_valid(SORA_STR("2.1.")));
	assert_false(sora_smtp_enhanced_valid(SORA_STR("2.1.5.")));
	assert_false(sora_smtp_enhanced_valid(SORA_STR("")));
}

static void test_sanitize_and_truncate(void **state)
{
	struct sora_buf b;
	char long_text[700];

	/* A CRLF in client-supplied text cannot start a new reply. */
	sora_buf_init(&b, 0);
	assert_int_equal(sora_smtp_reply_append(&b, 550, "5.1.1", false, "<%s> unknown",
						"x\r\n250 2.0.0 forged"), 0);
	assert_buf(&b, "550 5.1.1 <x??250 2.0.0 forged> unknown\r\n");
	sora_buf_free(&b);

	assert_int_equal(sora_smtp_reply_append(&b, 250, NULL, false, "a%cb\tc\x7f", 0), 0);
	assert_buf(&b, "250 a?b?c?\r\n");
	sora_buf_free(&b);

	/* Cut to 510 octets plus CRLF. */
	memset(long_text, 'x', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	assert_int_equal(sora_smtp_reply_append(&b, 250, "2.0.0", false, "%s", long_text), 0);
	assert_int_equal(b.len, 512);
	assert_memory_equal(b.data, "250 2.0.0 xxx", 13);
	assert_memory_equal(b.data + 510, "\r\n", 2);
	sora_buf_free(&b);
}

static void test_buffer_cap(void **state)
{
	struct sora_buf b;
	static const char *const lines[] = { "first line", "second line" };

	sora_buf_init(&b, 30);
	assert_int_equal(sora_smtp_reply_append(&b, 250, NULL, false, "ok"), 0);
	assert_int_equal(sora_smtp_reply_append(&b, 250, "2.0.0", false, "this does not fit"), -1);
	assert_buf(&b, "250 ok\r\n");
	/* A multi-line reply is all or nothing. */
	assert_int_equal(sora_smtp_reply_lines(&b, 250, NULL, lines, 2), -1);
	assert_buf(&b, "250 ok\r\n");
	sora_buf_free(&b);
}

static void test_parse(void **state)
{
	struct sora_smtp_reply r;
	const char *err;

	assert_int_equal(sora_smtp_reply_parse("250 2.1.5 Ok\r\n", 14, &r, &err), 0);
	assert_int_equal(r.code, 250);
	assert_true(r.last);
	assert_str(r.enhanced, "2.1.5");
	assert_str(r.text, "Ok");

	assert_int_equal(sora_smtp_reply_parse("250-PIPELINING\r\n", 16, &r, &err), 0);
	assert_false(r.last);
	assert_int_equal(r.enhanced.len, 0);
	assert_str(r.text, "PIPELINING");

	assert_int_equal(sora_smtp_reply_parse("250", 3, &r, &err), 0);
	assert_true(r.last);
	assert_int_equal(r.text.len, 0);
	assert_int_equal(sora_smtp_reply_parse("250 \n", 5, &r, &err), 0);
	assert_true(r.last);
	assert_int_equal(r.text.len, 0);
	assert_int_equal(sora_smtp_reply_parse("250 2.0.0", 9, &r, &err), 0);
	assert_str(r.enhanced, "2.0.0");
	assert_int_equal(r.text.len, 0);

	assert_int_equal(sora_smtp_reply_parse("452-4.2.2 Mailbox full", 22, &r, &err), 0);
	assert_int_equal(r.code, 452);
	assert_false(r.last);
	assert_str(r.enhanced, "4.2.2");
	assert_str(r.text, "Mailbox full");

	/* An enhanced code of another class is just text. */
	assert_int_equal(sora_smtp_reply_parse("250 5.1.1 odd", 13, &r, &err), 0);
	assert_int_equal(r.enhanced.len, 0);
	assert_str(r.text, "5.1.1 odd");
	assert_int_equal(sora_smtp_reply_parse("354 Go ahead", 12, &r, &err), 0);
	assert_int_equal(r.enhanced.len, 0);
	assert_str(r.text, "Go ahead");

	static const char *const bad[] = {
		"", "25", "abc", "250x", "650 x", "199 x", "260 x", "2a0 x",
		"250 a\rb", "250 a\nb\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		if (sora_smtp_reply_parse(bad[i], strlen(bad[i]), &r, &err) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_non_null(err);
	}
	assert_int_equal(sora_smtp_reply_parse("250 a\0b", 7, &r, &err), -1);
	assert_int_equal(sora_smtp_reply_parse(NULL, 0, &r, NULL), -1);
}

static void test_round_trip(void **state)
{
	struct sora_buf b;
	struct sora_smtp_reply r;
	static const char *const lines[] = { "one", "two", "three" };
	size_t pos = 0;
	int n = 0;

	sora_buf_init(&b, 0);
	assert_int_equal(sora_smtp_reply_lines(&b, 451, "4.3.0", lines, 3), 0);
	while (pos < b.len) {
		const char *lf = memchr(b.data + pos, '\n', b.len - pos);
		size_t len = (size_t)(lf - (b.data + pos)) + 1;

		assert_int_equal(sora_smtp_reply_parse(b.data + pos, len, &r, NULL), 0);
		assert_int_equal(r.code, 451);
		assert_str(r.enhanced, "4.3.0");
		assert_int_equal(r.text.len, strlen(lines[n]));
		assert_memory_equal(r.text.p, lines[n], r.text.len);
		assert_int_equal(r.last, n == 2);
		n++;
		pos += len;
	}
	assert_int_equal(n, 3);
	sora_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_line),
		cmocka_unit_test(test_multi_line),
		cmocka_unit_test(test_bad_codes),
		cmocka_unit_test(test_sanitize_and_truncate),
		cmocka_unit_test(test_buffer_cap),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
