/* Tests for the DATA phase decoder (common/proto/smtp-data.h).
 *
 * Every stream is decoded in one piece, one byte at a time and split in two
 * at every position; all must give the same output, consumed count and
 * flags. A separate line-oriented reference decoder, written the obvious
 * non-streaming way, checks random streams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/proto/smtp-data.h"

#define OUT_MAX 8192

struct result {
	char out[OUT_MAX];
	size_t out_len;
	size_t consumed;   /* total input bytes consumed */
	bool done;
	struct sora_smtp_data d;
};

static int collect(void *ctx, const char *data, size_t len)
{
	struct result *r = ctx;

	assert_true(r->out_len + len <= OUT_MAX);
	memcpy(r->out + r->out_len, data, len);
	r->out_len += len;
	return 0;
}

/* Feeds in[0..len) cut at the given positions (ascending). */
static void run_cuts(const char *in, size_t len, uint64_t max, const size_t *cuts,
		     size_t ncuts, struct result *r)
{
	size_t pos = 0;

	memset(r, 0, sizeof(*r));
	sora_smtp_data_init(&r->d, max);
	for (size_t k = 0; k <= ncuts; k++) {
		size_t next = k < ncuts ? cuts[k] : len;
		size_t consumed = 12345;
		enum sora_smtp_data_status st;

		st = sora_smtp_data_feed(&r->d, in + pos, next - pos, &consumed,
					 collect, r);
		assert_true(consumed <= next - pos);
		r->consumed += consumed;
		if (st == SORA_SMTP_DATA_DONE) {
			r->done = true;
			assert_true(r->d.done);
			return;
		}
		assert_int_equal(consumed, next - pos);
		assert_false(r->d.done);
		pos = next;
	}
}

static void assert_same(const struct result *a, const struct result *b)
{
	assert_int_equal(a->out_len, b->out_len);
	assert_memory_equal(a->out, b->out, a->out_len);
	assert_int_equal(a->consumed, b->consumed);
	assert_int_equal(a->done, b->done);
	assert_int_equal(a->d.size, b->d.size);
	assert_int_equal(a->d.lines, b->d.lines);
	assert_int_equal(a->d.long_lines, b->d.long_lines);
	assert_int_equal(a->d.max_line_len, b->d.max_line_len);
	assert_int_equal(a->d.too_big, b->d.too_big);
	assert_int_equal(a->d.saw_8bit, b->d.saw_8bit);
	assert_int_equal(a->d.saw_nul, b->d.saw_nul);
	assert_int_equal(a->d.saw_bare_lf, b->d.saw_bare_lf);
	assert_int_equal(a->d.saw_bare_cr, b->d.saw_bare_cr);
}

/* Decodes in one piece, byte by byte, and split at every position; checks
 * that all agree and returns the one-piece result in *r. */
static void decode_all_ways(const char *in, size_t len, uint64_t max,
			    struct result *r)
{
	static struct result other;
	size_t *cuts = calloc(len + 1, sizeof(*cuts));

	assert_non_null(cuts);
	run_cuts(in, len, max, NULL, 0, r);
	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	run_cuts(in, len, max, cuts, len > 0 ? len - 1 : 0, &other);
	assert_same(r, &other);
	for (size_t k = 0; k <= len; k++) {
		run_cuts(in, len, max, &k, 1, &other);
		assert_same(r, &other);
	}
	/* Three-way splits around every position catch state carried over
	 * two boundaries (e.g. "\r" | "\n." | "\r\n"). */
	for (size_t k = 0; k + 2 <= len && len < 64; k++) {
		size_t c3[2] = { k, k + 2 };
		run_cuts(in, len, max, c3, 2, &other);
		assert_same(r, &other);
	}
	free(cuts);
}

static void expect(const char *in, size_t len, uint64_t max, const char *out,
		   size_t out_len, bool done, size_t consumed, struct result *r)
{
	decode_all_ways(in, len, max, r);
	assert_int_equal(r->done, done);
	assert_int_equal(r->consumed, consumed);
	assert_int_equal(r->out_len, out_len);
	assert_memory_equal(r->out, out, out_len);
}

#define S(lit) (lit), (sizeof(lit) - 1)

static struct result R;

static void test_empty_message(void **state)
{
	expect(S(".\r\n"), 0, S(""), true, 3, &R);
	assert_int_equal(R.d.size, 0);
	assert_int_equal(R.d.lines, 0);
	assert_true(sora_smtp_data_ok(&R.d));
}

static void test_simple_message(void **state)
{
	expect(S("Subject: hi\r\n\r\nbody\r\n.\r\n"), 0,
	       S("Subject: hi\r\n\r\nbody\r\n"), true, 24, &R);
	assert_int_equal(R.d.lines, 3);
	assert_int_equal(R.d.size, 21);
	assert_false(R.d.saw_8bit);
	assert_false(R.d.saw_bare_lf);
	assert_false(R.d.saw_bare_cr);
}

static void test_pipelined_after_terminator(void **state)
{
	const char in[] = "a\r\n.\r\nRSET\r\nMAIL FROM:<>\r\n";

	expect(S(in), 0, S("a\r\n"), true, 6, &R);
	/* Terminator at the very start, command right behind it. */
	expect(S(".\r\nQUIT\r\n"), 0, S(""), true, 3, &R);
	/* A second terminator right after is the next "command". */
	expect(S("x\r\n.\r\n.\r\n"), 0, S("x\r\n"), true, 6, &R);
}

static void test_dot_stuffing(void **state)
{
	expect(S("..leading dot\r\n.\r\n"), 0, S(".leading dot\r\n"), true, 18, &R);
	/* "\r\n..\r\n" is a line holding a single dot. */
	expect(S("a\r\n..\r\n.\r\n"), 0, S("a\r\n.\r\n"), true, 10, &R);
	expect(S("a\r\n...\r\n.\r\n"), 0, S("a\r\n..\r\n"), true, 11, &R);
	/* RFC 5321 4.5.2: any leading dot is removed, also one the sender
	 * should have doubled. */
	expect(S(".x\r\n.\r\n"), 0, S("x\r\n"), true, 7, &R);
	/* ".." at the very start, then the terminator. */
	expect(S("..\r\n.\r\n"), 0, S(".\r\n"), true, 7, &R);
}

static void test_dot_inside_line(void **state)
{
	/* ".\r\n" not at a line start is text. */
	expect(S("a.\r\nb\r\n.\r\n"), 0, S("a.\r\nb\r\n"), true, 10, &R);
	expect(S("x\r\n .\r\n.\r\n"), 0, S("x\r\n .\r\n"), true, 10, &R);
	expect(S("x\r\nab.\r\n.c\r\n.\r\n"), 0, S("x\r\nab.\r\nc\r\n"), true, 15, &R);
}

static void test_unterminated(void **state)
{
	/* Held state at the end: nothing of "\r\n." or "\r\n.\r" is output
	 * yet, and everything is consumed. */
	expect(S("a\r\n.\r"), 0, S("a\r\n"), false, 5, &R);
	expect(S("a\r\n."), 0, S("a\r\n"), false, 4, &R);
	expect(S("a\r"), 0, S("a"), false, 2, &R);
	expect(S(""), 0, S(""), false, 0, &R);
}

static void test_bare_lf(void **state)
{
	/* A bare LF ends a line and is stored as CRLF... */
	expect(S("a\nb\r\n.\r\n"), 0, S("a\r\nb\r\n"), true, 8, &R);
	assert_true(R.d.saw_bare_lf);
	assert_int_equal(R.d.lines, 2);
	/* ...but never ends the data: "\n.\r\n", "\r\n.\n" and "\n.\n" are
	 * not terminators (SMTP smuggling). After a bare LF the dot is text. */
	expect(S("a\n.\r\nb\r\n.\r\n"), 0, S("a\r\n.\r\nb\r\n"), true, 11, &R);
	expect(S("a\n.\n"), 0, S("a\r\n.\r\n"), false, 4, &R);
	/* After CRLF a "." followed by a bare LF is a stuffed dot line. */
	expect(S("a\r\n.\nb\r\n.\r\n"), 0, S("a\r\n\r\nb\r\n"), true, 11, &R);
	/* A client that uses LF only never finishes. */
	expect(S("Subject: x\n\nbody\n.\n"), 0,
	       S("Subject: x\r\n\r\nbody\r\n.\r\n"), false, 19, &R);
}

static void test_bare_cr(void **state)
{
	/* A bare CR is data, stored as it is. */
	expect(S("a\rb\r\n.\r\n"), 0, S("a\rb\r\n"), true, 8, &R);
	assert_true(R.d.saw_bare_cr);
	assert_int_equal(R.d.max_line_len, 3);
	expect(S("\r\r\n.\r\n"), 0, S("\r\r\n"), true, 6, &R);
	/* "\r." at the start is not a dot line. */
	expect(S("\r.\r\n.\r\n"), 0, S("\r.\r\n"), true, 7, &R);
	/* ".\r" followed by more: the dot was stuffing, the CR is data. */
	expect(S("a\r\n.\rb\r\n.\r\n"), 0, S("a\r\n\rb\r\n"), true, 11, &R);
	expect(S("a\r\n.\r\r\n.\r\n"), 0, S("a\r\n\r\r\n"), true, 10, &R);
	/* CR CR LF before the dot: the second CR + LF is the line end, so the
	 * terminator is found. */
	expect(S("a\r\r\n.\r\n"), 0, S("a\r\r\n"), true, 7, &R);
	/* A bare CR before ".\r\n" does not start a line. */
	expect(S("a\r.\r\n.\r\n"), 0, S("a\r.\r\n"), true, 8, &R);
}

static void test_binary_passes(void **state)
{
	const char in[] = "a\0b\xff\x80\r\n\0\r\n.\r\n";
	const char out[] = "a\0b\xff\x80\r\n\0\r\n";

	expect(in, sizeof(in) - 1, 0, out, sizeof(out) - 1, true, sizeof(in) - 1, &R);
	assert_true(R.d.saw_nul);
	assert_true(R.d.saw_8bit);
	expect(S("plain\r\n.\r\n"), 0, S("plain\r\n"), true, 10, &R);
	assert_false(R.d.saw_nul);
	assert_false(R.d.saw_8bit);
}

static void test_long_lines(void **state)
{
	static char in[4096], out[4096];
	size_t n;

	/* 998 octets is the longest standard line; 999 and 1500 are
	 * accepted whole and counted. */
	for (size_t len = 998; len <= 999; len++) {
		memset(in, 'x', len);
		memcpy(in + len, "\r\n.\r\n", 5);
		memcpy(out, in, len + 2);
		decode_all_ways(in, len + 5, 0, &R);
		assert_true(R.done);
		assert_int_equal(R.out_len, len + 2);
		assert_memory_equal(R.out, out, len + 2);
		assert_int_equal(R.d.max_line_len, len);
		assert_int_equal(R.d.long_lines, len > 998 ? 1 : 0);
	}
	memset(in, 'y', 1500);
	n = 1500;
	memcpy(in + n, "\r\nshort\r\n", 9);
	n += 9;
	memset(in + n, 'z', 1200);
	n += 1200;
	memcpy(in + n, "\r\n.\r\n", 5);
	n += 5;
	run_cuts(in, n, 0, NULL, 0, &R);
	assert_true(R.done);
	assert_int_equal(R.consumed, n);
	assert_int_equal(R.out_len, n - 3);
	assert_int_equal(R.d.long_lines, 2);
	assert_int_equal(R.d.max_line_len, 1500);
	assert_int_equal(R.d.lines, 3);
}

static void test_size_limit(void **state)
{
	/* "abc\r\n" is 5 octets: exactly at the limit is fine. */
	expect(S("abc\r\n.\r\n"), 5, S("abc\r\n"), true, 8, &R);
	assert_false(R.d.too_big);
	assert_true(sora_smtp_data_ok(&R.d));
	/* One over: the sink gets exactly the first 4 octets whatever the
	 * chunking, the whole message is consumed, and the pipelined command
	 * after it stays with the caller. */
	expect(S("abc\r\n.\r\nQUIT\r\n"), 4, S("abc\r"), true, 8, &R);
	assert_true(R.d.too_big);
	assert_int_equal(R.d.size, 5);
	assert_false(sora_smtp_data_ok(&R.d));
	/* Far over the limit, with stuffed lines after the cut-off point:
	 * unstuffing and terminator detection go on. */
	expect(S("0123456789\r\n..x\r\n.\r\nNOOP\r\n"), 3, S("012"), true, 20, &R);
	assert_true(R.d.too_big);
	assert_int_equal(R.d.size, 16);
	/* Limit 1 with the empty message: still fine. */
	expect(S(".\r\n"), 1, S(""), true, 3, &R);
	assert_false(R.d.too_big);
}

static void test_size_limit_large(void **state)
{
	/* 50 MB limit, message of 50 MB + 1 octet fed in 64 KiB chunks, as a
	 * server would. */
	const uint64_t max = 50u * 1024 * 1024;
	const size_t line = 1000;  /* 998 + CRLF */
	char *buf = malloc(65536);
	struct sora_smtp_data d;
	uint64_t total = 0, sent = 0;
	size_t consumed;
	enum sora_smtp_data_status st = SORA_SMTP_DATA_MORE;

	assert_non_null(buf);
	/* Lines of 998 'a' + CRLF; the last partial line brings the total to
	 * max + 1. */
	sora_smtp_data_init(&d, max);
	while (sent < max + 1) {
		size_t n = 0;
		while (n + line <= 65536 && sent + line <= max + 1) {
			memset(buf + n, 'a', line - 2);
			memcpy(buf + n + line - 2, "\r\n", 2);
			n += line;
			sent += line;
		}
		if (n == 0) {
			size_t rest = (size_t)(max + 1 - sent);
			memset(buf, 'b', rest);
			n = rest;
			sent += rest;
		}
		st = sora_smtp_data_feed(&d, buf, n, &consumed, NULL, NULL);
		assert_int_equal(st, SORA_SMTP_DATA_MORE);
		total += consumed;
	}
	/* Over the limit the body is still read (and dropped) to its end. */
	assert_int_equal(total, sent);
	assert_true(d.too_big);
	st = sora_smtp_data_feed(&d, "\r\n.\r\nQUIT\r\n", 11, &consumed, NULL, NULL);
	assert_int_equal(st, SORA_SMTP_DATA_DONE);
	assert_int_equal(consumed, 5);
	assert_int_equal(d.size, max + 3);
	free(buf);
}

static int fail_second(void *ctx, const char *data, size_t len)
{
	int *calls = ctx;

	return ++*calls >= 2 ? -5 : 0;
}

static void test_sink_failure(void **state)
{
	struct sora_smtp_data d;
	size_t consumed;
	int calls = 0;
	const char in[] = "line one\r\nline two\r\n..x\r\n.\r\nQUIT\r\n";

	sora_smtp_data_init(&d, 0);
	assert_int_equal(sora_smtp_data_feed(&d, in, sizeof(in) - 1, &consumed,
					     fail_second, &calls),
			 SORA_SMTP_DATA_DONE);
	assert_int_equal(consumed, sizeof(in) - 1 - 6);
	assert_true(d.sink_failed);
	assert_int_equal(d.sink_error, -5);
	assert_int_equal(calls, 2);
	assert_false(sora_smtp_data_ok(&d));
}

static void test_done_is_sticky(void **state)
{
	struct sora_smtp_data d;
	size_t consumed = 99;

	sora_smtp_data_init(&d, 0);
	assert_int_equal(sora_smtp_data_feed(&d, ".\r\n", 3, &consumed, NULL, NULL),
			 SORA_SMTP_DATA_DONE);
	assert_int_equal(consumed, 3);
	assert_int_equal(sora_smtp_data_feed(&d, "x\r\n.\r\n", 6, &consumed, NULL, NULL),
			 SORA_SMTP_DATA_DONE);
	assert_int_equal(consumed, 0);
	/* Re-initialised, it decodes the next transaction. */
	sora_smtp_data_init(&d, 0);
	assert_int_equal(sora_smtp_data_feed(&d, "x\r\n.\r\n", 6, &consumed, NULL, NULL),
			 SORA_SMTP_DATA_DONE);
	assert_int_equal(consumed, 6);
	assert_int_equal(d.size, 3);
}

static void test_feed_buf(void **state)
{
	struct sora_smtp_data d;
	struct sora_buf b;
	size_t consumed;

	sora_buf_init(&b, 0);
	sora_smtp_data_init(&d, 0);
	assert_int_equal(sora_smtp_data_feed_buf(&d, "..a\r\nb\n", 7, &consumed, &b),
			 SORA_SMTP_DATA_MORE);
	assert_int_equal(sora_smtp_data_feed_buf(&d, ".\r\n.\r\n", 6, &consumed, &b),
			 SORA_SMTP_DATA_DONE);
	assert_int_equal(consumed, 6);
	assert_int_equal(b.len, 10);
	assert_memory_equal(b.data, ".a\r\nb\r\n.\r\n", 10);
	sora_buf_free(&b);

	/* A buffer cap counts as a sink failure; the message is still read
	 * to its end. */
	sora_buf_init(&b, 4);
	sora_smtp_data_init(&d, 0);
	assert_int_equal(sora_smtp_data_feed_buf(&d, "abcdefgh\r\n.\r\nX", 14, &consumed, &b),
			 SORA_SMTP_DATA_DONE);
	assert_int_equal(consumed, 13);
	assert_true(d.sink_failed);
	assert_false(d.too_big);
	sora_buf_free(&b);
}

/* The reference decoder: whole input, line by line. */
static void reference(const char *in, size_t len, uint64_t max, struct result *r)
{
	size_t pos = 0;
	bool bol = true;
	static char full[OUT_MAX];
	size_t full_len = 0;

	memset(r, 0, sizeof(*r));
	while (pos < len) {
		const char *lf = memchr(in + pos, '\n', len - pos);
		size_t k, clen;
		const char *content;
		bool crlf;

		if (lf == NULL)
			break;
		k = (size_t)(lf - in);
		crlf = k > pos && in[k - 1] == '\r';
		content = in + pos;
		clen = k - pos - (crlf ? 1 : 0);
		if (bol && crlf && clen == 1 && content[0] == '.') {
			r->done = true;
			r->consumed = k + 1;
			break;
		}
		if (bol && clen > 0 && content[0] == '.') {
			content++;
			clen--;
		}
		for (size_t i = 0; i < clen; i++) {
			unsigned char c = (unsigned char)content[i];
			r->d.saw_8bit |= c >= 0x80;
			r->d.saw_nul |= c == 0;
			r->d.saw_bare_cr |= c == '\r';
		}
		r->d.saw_bare_lf |= !crlf;
		r->d.lines++;
		if (clen > r->d.max_line_len)
			r->d.max_line_len = clen;
		if (clen > SORA_SMTP_DATA_LINE_MAX)
			r->d.long_lines++;
		memcpy(full + full_len, content, clen);
		memcpy(full + full_len + clen, "\r\n", 2);
		full_len += clen + 2;
		bol = crlf;
		pos = k + 1;
	}
	r->d.size = full_len;
	r->d.too_big = max != 0 && full_len > max;
	r->out_len = r->d.too_big ? (size_t)max : full_len;
	memcpy(r->out, full, r->out_len);
}

/* Random inputs of up to maxn bytes from alphabet, then tail (which ends
 * the data), decoded every way and compared with the reference. */
static void random_against_reference(const char *alphabet, size_t alen, size_t maxn,
				     const char *tail, size_t tail_len, int iters)
{
	static struct result ref, got;
	static char in[256];
	uint64_t x = 0x9E3779B97F4A7C15ull;

	assert_true(maxn + tail_len <= sizeof(in));
	for (int iter = 0; iter < iters; iter++) {
		size_t n, len;
		uint64_t max;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		n = (size_t)(x % maxn);
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			in[i] = alphabet[x % alen];
		}
		memcpy(in + n, tail, tail_len);
		len = n + tail_len;
		max = (iter % 3 == 0) ? (x >> 8) % 20 : 0;

		reference(in, len, max, &ref);
		/* The tail always ends the data (see smtp-data.h). */
		assert_true(ref.done);
		decode_all_ways(in, len, max, &got);
		assert_int_equal(got.done, ref.done);
		assert_int_equal(got.consumed, ref.consumed);
		assert_int_equal(got.out_len, ref.out_len);
		assert_memory_equal(got.out, ref.out, ref.out_len);
		assert_int_equal(got.d.size, ref.d.size);
		assert_int_equal(got.d.too_big, ref.d.too_big);
		assert_int_equal(got.d.lines, ref.d.lines);
		assert_int_equal(got.d.max_line_len, ref.d.max_line_len);
		assert_int_equal(got.d.saw_8bit, ref.d.saw_8bit);
		assert_int_equal(got.d.saw_nul, ref.d.saw_nul);
		assert_int_equal(got.d.saw_bare_lf, ref.d.saw_bare_lf);
		assert_int_equal(got.d.saw_bare_cr, ref.d.saw_bare_cr);
	}
}

static void test_random_against_reference(void **state)
{
	static const char alphabet[] = { '.', '.', '\r', '\r', '\n', '\n', 'a', '\0', (char)0xff };
	static const char tail[] = "\r\n.\r\nNEXT";

	random_against_reference(alphabet, sizeof(alphabet), 24, tail, sizeof(tail) - 1, 20000);
}

/* Longer lines, mostly text: the decoder looks at them sixteen bytes at a
 * time. NUL and 8-bit bytes right after a line end or after the end of the
 * data must not count for the line before (nor for the message, after the
 * end). */
static void test_random_long_lines_against_reference(void **state)
{
	static const char alphabet[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbb"
				       "\r\n.\x80\x00\xc3";
	static const char tail[] = "\r\n.\r\nN\x80\x00T after the end, 8-bit and NUL";

	random_against_reference(alphabet, sizeof(alphabet) - 1, 180, tail, sizeof(tail) - 1,
				 3000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_message),
		cmocka_unit_test(test_simple_message),
		cmocka_unit_test(test_pipelined_after_terminator),
		cmocka_unit_test(test_dot_stuffing),
		cmocka_unit_test(test_dot_inside_line),
		cmocka_unit_test(test_unterminated),
		cmocka_unit_test(test_bare_lf),
		cmocka_unit_test(test_bare_cr),
		cmocka_unit_test(test_binary_passes),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_size_limit_large),
		cmocka_unit_test(test_sink_failure),
		cmocka_unit_test(test_done_is_sticky),
		cmocka_unit_test(test_feed_buf),
		cmocka_unit_test(test_random_against_reference),
		cmocka_unit_test(test_random_long_lines_against_reference),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
