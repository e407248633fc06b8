/* Tests for the LMTP server's pure parts: the trace header lines prepended
 * to every copy (backend/lmtp/lmtp.h), SMTPUTF8 protocol types included,
 * and the DATA spool that keeps small messages in memory and spills large
 * ones into an unnamed file (backend/lmtp/lmtp-spool.h). The protocol itself
 * is tested end to end in tests/integration/test_lmtp*.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/lmtp/lmtp-spool.h"
#include "backend/lmtp/lmtp.h"

static void assert_buf(const struct sora_buf *b, const char *want)
{
	if (b->len != strlen(want) || memcmp(b->data, want, b->len) != 0)
		fail_msg("got:\n%.*s\nwant:\n%s", (int)b->len, b->data != NULL ? b->data : "", want);
}

static void assert_contains(const struct sora_buf *b, const char *want)
{
	if (b->data == NULL || memmem(b->data, b->len, want, strlen(want)) == NULL)
		fail_msg("got:\n%.*s\nwithout:\n%s", (int)b->len, b->data != NULL ? b->data : "",
			 want);
}

static void test_trace_headers(void **state)
{
	struct sora_lmtp_trace t = {
		.sender = SORA_STR("bounce+x@lists.example"),
		.rcpt = SORA_STR("Bob+Tag@Example.com"),
		.helo = SORA_STR("mx1.example.net"),
		.client_addr = "[192.0.2.7]",
		.hostname = "mail.example.com",
		.session_id = "abc123",
		.tls = false,
		.when = 1057049557,
	};
	struct sora_buf b;

	sora_buf_init(&b, 0);
	assert_int_equal(sora_lmtp_trace_headers(&t, &b), 0);
	assert_buf(&b, "Return-Path: <bounce+x@lists.example>\r\n"
		       "Delivered-To: Bob+Tag@Example.com\r\n"
		       "Received: from mx1.example.net ([192.0.2.7])\r\n"
		       "\tby mail.example.com (Sora) with LMTP id abc123\r\n"
		       "\tfor <Bob+Tag@Example.com>; Tue, 01 Jul 2003 08:52:37 +0000\r\n");
	sora_buf_free(&b);

	/* Null sender, unix socket, TLS, no LHLO name. */
	t.sender = SORA_STR("");
	t.client_addr = NULL;
	t.tls = true;
	t.helo = SORA_STR("");
	t.when = 0;
	sora_buf_init(&b, 0);
	assert_int_equal(sora_lmtp_trace_headers(&t, &b), 0);
	assert_buf(&b, "Return-Path: <>\r\n"
		       "Delivered-To: Bob+Tag@Example.com\r\n"
		       "Received: from unknown (unix socket)\r\n"
		       "\tby mail.example.com (Sora) with LMTPS id abc123\r\n"
		       "\tfor <Bob+Tag@Example.com>; Thu, 01 Jan 1970 00:00:00 +0000\r\n");
	sora_buf_free(&b);
}

/* RFC 6531 3.7.3: an SMTPUTF8 transaction is recorded as UTF8LMTP (UTF8LMTPS
 * over TLS), and its UTF-8 addresses and LHLO name are kept as sent. */
static void test_trace_headers_smtputf8(void **state)
{
	struct sora_lmtp_trace t = {
		.sender = SORA_STR("j\xc3\xb6rg@ex\xc3\xa4mple.test"),
		.rcpt = SORA_STR("\xe7\x94\xa8\xe6\x88\xb7+tag@\xe4\xbe\x8b\xe5\xad\x90.test"),
		.helo = SORA_STR("mx.b\xc3\xbc" "cher.test"),
		.client_addr = "[192.0.2.7]",
		.hostname = "mail.example.com",
		.session_id = "abc123",
		.tls = false,
		.smtputf8 = true,
		.when = 1057049557,
	};
	struct sora_buf b;

	sora_buf_init(&b, 0);
	assert_int_equal(sora_lmtp_trace_headers(&t, &b), 0);
	assert_buf(&b, "Return-Path: <j\xc3\xb6rg@ex\xc3\xa4mple.test>\r\n"
		       "Delivered-To: \xe7\x94\xa8\xe6\x88\xb7+tag@\xe4\xbe\x8b\xe5\xad\x90.test\r\n"
		       "Received: from mx.b\xc3\xbc" "cher.test ([192.0.2.7])\r\n"
		       "\tby mail.example.com (Sora) with UTF8LMTP id abc123\r\n"
		       "\tfor <\xe7\x94\xa8\xe6\x88\xb7+tag@\xe4\xbe\x8b\xe5\xad\x90.test>;"
		       " Tue, 01 Jul 2003 08:52:37 +0000\r\n");
	sora_buf_free(&b);

	t.tls = true;
	sora_buf_init(&b, 0);
	assert_int_equal(sora_lmtp_trace_headers(&t, &b), 0);
	assert_contains(&b, " with UTF8LMTPS id abc123\r\n");
	sora_buf_free(&b);

	/* Control characters are still replaced in an SMTPUTF8 transaction. */
	t.helo = SORA_STR("b\xc3\xbc\r\nX: 1");
	sora_buf_init(&b, 0);
	assert_int_equal(sora_lmtp_trace_headers(&t, &b), 0);
	assert_contains(&b, "from b\xc3\xbc??X: 1 (");
	sora_buf_free(&b);
}

/* Without SMTPUTF8 the addresses are ASCII (the session refuses others),
 * but a UTF-8 LHLO name is accepted by the parser: the trace lines of such
 * a message still stay ASCII. */
static void test_trace_headers_ascii_without_smtputf8(void **state)
{
	struct sora_lmtp_trace t = {
		.sender = SORA_STR("a@b.test"),
		.rcpt = SORA_STR("c@d.test"),
		.helo = SORA_STR("mx.b\xc3\xbc" "cher.test"),
		.hostname = "mx",
		.session_id = "s",
		.when = 0,
	};
	struct sora_buf b;

	sora_buf_init(&b, 0);
	assert_int_equal(sora_lmtp_trace_headers(&t, &b), 0);
	for (size_t i = 0; i < b.len; i++)
		assert_true((unsigned char)b.data[i] < 0x80);
	assert_contains(&b, "from mx.b??cher.test (unix socket)\r\n"
			"\tby mx (Sora) with LMTP id s\r\n");
	sora_buf_free(&b);
}

static void test_trace_headers_cannot_be_split(void **state)
{
	struct sora_lmtp_trace t = {
		.sender = SORA_STR("a\r\nX-Injected: 1@b"),
		.rcpt = SORA_STR("c@d"),
		.helo = SORA_STR("evil\nBcc: x"),
		.client_addr = "[192.0.2.7]",
		.hostname = "mx",
		.session_id = "s",
		.when = 0,
	};
	struct sora_buf b;
	size_t lines = 0;

	sora_buf_init(&b, 0);
	assert_int_equal(sora_lmtp_trace_headers(&t, &b), 0);
	for (size_t i = 0; i < b.len; i++) {
		if (b.data[i] == '\n') {
			assert_true(i > 0 && b.data[i - 1] == '\r');
			lines++;
		} else if (b.data[i] == '\r') {
			assert_true(i + 1 < b.len && b.data[i + 1] == '\n');
		}
	}
	assert_int_equal(lines, 5);
	assert_non_null(memmem(b.data, b.len, "<a??X-Injected: 1@b>", 20));
	sora_buf_free(&b);
}

static void test_trace_headers_buffer_limit(void **state)
{
	struct sora_lmtp_trace t = {
		.sender = SORA_STR("a@b"), .rcpt = SORA_STR("c@d"), .helo = SORA_STR("h"),
		.hostname = "mx", .session_id = "s", .when = 0,
	};
	struct sora_buf b;

	sora_buf_init(&b, 40);
	assert_int_equal(sora_buf_append_str(&b, "kept"), 0);
	assert_int_equal(sora_lmtp_trace_headers(&t, &b), -1);
	/* Nothing half-written. */
	assert_buf(&b, "kept");
	sora_buf_free(&b);
}

static char *make_dir(void)
{
	char tmpl[] = "/tmp/sora-spool-test-XXXXXX";
	char *d = mkdtemp(tmpl);

	assert_non_null(d);
	return strdup(d);
}

static size_t dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	}
	closedir(d);
	return n;
}

static void read_back(const struct sora_lmtp_spool *sp, const char *want, size_t len)
{
	struct sora_store_body body;
	char *got = malloc(len + 1);
	ssize_t n;

	sora_lmtp_spool_body(sp, &body);
	assert_int_equal(body.size, len);
	n = sora_store_body_read(&body, 0, got, len + 1);
	assert_int_equal(n, (ssize_t)len);
	assert_memory_equal(got, want, len);
	/* Reads at an offset, and past the end. */
	if (len > 10) {
		n = sora_store_body_read(&body, len - 10, got, 100);
		assert_int_equal(n, 10);
		assert_memory_equal(got, want + len - 10, 10);
	}
	assert_int_equal(sora_store_body_read(&body, len, got, 1), 0);
	free(got);
}

static void test_spool_small_stays_in_memory(void **state)
{
	char *dir = make_dir();
	struct sora_lmtp_spool sp;

	sora_lmtp_spool_init(&sp, dir);
	assert_int_equal(sora_lmtp_spool_write(&sp, "hello ", 6), 0);
	assert_int_equal(sora_lmtp_spool_write(&sp, "world\r\n", 7), 0);
	assert_int_equal(sora_lmtp_spool_finish(&sp), 0);
	assert_int_equal(sp.fd, -1);
	read_back(&sp, "hello world\r\n", 13);
	sora_lmtp_spool_reset(&sp);
	assert_int_equal(sp.size, 0);
	assert_null(sp.mem.data);

	/* An empty message is a valid body too. */
	assert_int_equal(sora_lmtp_spool_finish(&sp), 0);
	read_back(&sp, "", 0);
	sora_lmtp_spool_reset(&sp);
	rmdir(dir);
	free(dir);
}

static void test_spool_large_spills_to_unnamed_file(void **state)
{
	char *dir = make_dir();
	size_t len = SORA_LMTP_SPOOL_MEM * 3 + 12345;
	char *data = malloc(len);
	struct sora_lmtp_spool sp;
	size_t pos = 0, step = 1;

	for (size_t i = 0; i < len; i++)
		data[i] = (char)('a' + (i * 7) % 26);
	sora_lmtp_spool_init(&sp, dir);
	while (pos < len) {
		size_t n = step < len - pos ? step : len - pos;

		assert_int_equal(sora_lmtp_spool_write(&sp, data + pos, n), 0);
		pos += n;
		step = step * 3 + 1;
	}
	assert_int_equal(sora_lmtp_spool_finish(&sp), 0);
	assert_true(sp.fd >= 0);
	/* Never more than the memory cap held, and no name in the directory. */
	assert_true(sp.mem.cap <= SORA_LMTP_SPOOL_MEM);
	assert_int_equal(dir_entries(dir), 0);
	read_back(&sp, data, len);
	sora_lmtp_spool_reset(&sp);
	assert_int_equal(sp.fd, -1);

	/* The spool is reusable for the next transaction. */
	assert_int_equal(sora_lmtp_spool_write(&sp, "next", 4), 0);
	assert_int_equal(sora_lmtp_spool_finish(&sp), 0);
	read_back(&sp, "next", 4);
	sora_lmtp_spool_reset(&sp);
	free(data);
	rmdir(dir);
	free(dir);
}

static void test_spool_failure_is_sticky(void **state)
{
	struct sora_lmtp_spool sp;
	char *big = calloc(1, SORA_LMTP_SPOOL_MEM + 1);

	sora_lmtp_spool_init(&sp, "/nonexistent/sora-spool-dir");
	/* Fits in memory: no file needed yet. */
	assert_int_equal(sora_lmtp_spool_write(&sp, big, SORA_LMTP_SPOOL_MEM), 0);
	/* The spill fails: the error sticks and later writes fail too. */
	assert_int_equal(sora_lmtp_spool_write(&sp, big, 1), -1);
	assert_true(sp.error != 0);
	assert_int_equal(sora_lmtp_spool_write(&sp, "x", 1), -1);
	assert_int_equal(sora_lmtp_spool_finish(&sp), -1);
	sora_lmtp_spool_reset(&sp);
	assert_int_equal(sp.error, 0);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_trace_headers),
		cmocka_unit_test(test_trace_headers_smtputf8),
		cmocka_unit_test(test_trace_headers_ascii_without_smtputf8),
		cmocka_unit_test(test_trace_headers_cannot_be_split),
		cmocka_unit_test(test_trace_headers_buffer_limit),
		cmocka_unit_test(test_spool_small_stays_in_memory),
		cmocka_unit_test(test_spool_large_spills_to_unnamed_file),
		cmocka_unit_test(test_spool_failure_is_sticky),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
