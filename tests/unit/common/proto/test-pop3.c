/* Tests for the POP3 command parser and multi-line encoder
 * (common/proto/pop3.h).
 *
 * Every input is fed in one piece, one byte at a time and split in two at
 * every position; all must give the same events. The encoder is checked
 * against a reference written the obvious non-streaming way, on fixed and
 * random messages, whole and cut at every position. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/proto/pop3.h"

#define EV_MAX 64
#define TEXT_MAX 512

/* The events of a parse, as text: "C:name|arg|arg" or "E:code". */
struct events {
	char ev[EV_MAX][TEXT_MAX];
	size_t n;
};

static void record(struct sora_pop3_parser *p, enum sora_pop3_parse_result r, struct events *e)
{
	char *t;
	size_t len = 0;

	assert_true(e->n < EV_MAX);
	t = e->ev[e->n++];
	if (r == SORA_POP3_PARSE_ERROR) {
		const char *text;

		snprintf(t, TEXT_MAX, "E:%d", (int)sora_pop3_parser_error(p, &text));
		return;
	}
	{
		const struct sora_pop3_command *c = sora_pop3_parser_command(p);

		len = (size_t)snprintf(t, TEXT_MAX, "C:%.*s", (int)c->name.len, c->name.p);
		for (size_t i = 0; i < c->args_count && i < SORA_POP3_MAX_ARGS; i++)
			len += (size_t)snprintf(t + len, TEXT_MAX - len, "|%.*s", (int)c->args[i].len,
						c->args[i].p);
		snprintf(t + len, TEXT_MAX - len, "#%zu/%.*s", c->args_count, (int)c->rest.len,
			 c->rest.p);
	}
}

static void parse_cuts(const char *in, size_t len, const size_t *cuts, size_t ncuts,
		       struct events *e, size_t max_line)
{
	struct sora_pop3_parser_params params = { .max_line = max_line };
	struct sora_pop3_parser *p = sora_pop3_parser_new(&params);
	size_t pos = 0;

	assert_non_null(p);
	memset(e, 0, sizeof(*e));
	for (size_t k = 0; k <= ncuts; k++) {
		size_t next = k < ncuts ? cuts[k] : len;

		while (pos < next) {
			size_t used = 0;
			enum sora_pop3_parse_result r = sora_pop3_parser_feed(p, in + pos, next - pos, &used);

			assert_true(used > 0 && used <= next - pos);
			pos += used;
			if (r != SORA_POP3_PARSE_NEED_MORE)
				record(p, r, e);
		}
	}
	assert_true(sora_pop3_parser_idle(p) == (len == 0 || in[len - 1] == '\n'));
	sora_pop3_parser_free(&p);
	assert_null(p);
}

static void check_all_splits(const char *in, size_t len, size_t max_line, const char *const *want,
			     size_t nwant)
{
	struct events whole, e;
	size_t cuts[4096];

	parse_cuts(in, len, NULL, 0, &whole, max_line);
	assert_int_equal(whole.n, nwant);
	for (size_t i = 0; i < nwant; i++)
		assert_string_equal(whole.ev[i], want[i]);
	/* One byte at a time. */
	assert_true(len <= 4096);
	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	parse_cuts(in, len, cuts, len > 0 ? len - 1 : 0, &e, max_line);
	assert_int_equal(e.n, whole.n);
	for (size_t i = 0; i < e.n; i++)
		assert_string_equal(e.ev[i], whole.ev[i]);
	/* Split in two anywhere. */
	for (size_t c = 1; c < len; c++) {
		parse_cuts(in, len, &c, 1, &e, max_line);
		assert_int_equal(e.n, whole.n);
		for (size_t i = 0; i < e.n; i++)
			assert_string_equal(e.ev[i], whole.ev[i]);
	}
}

#define CHECK(in, max, ...)                                                                 \
	do {                                                                                \
		static const char *const w_[] = { __VA_ARGS__ };                            \
		check_all_splits(in, sizeof(in) - 1, max, w_, sizeof(w_) / sizeof(w_[0]));  \
	} while (0)

static void test_commands(void **state)
{
	CHECK("USER bob@example.com\r\nPASS a b  c\r\nSTAT\nLIST 1\r\n", 255,
	      "C:USER|bob@example.com#1/bob@example.com", "C:PASS|a|b|c#3/a b  c", "C:STAT#0/",
	      "C:LIST|1#1/1");
	CHECK("TOP  1   2 \r\nQUIT\r\n", 255, "C:TOP|1|2#2/ 1   2 ", "C:QUIT#0/");
	/* Too many arguments: the count says so, only 8 are kept. */
	CHECK("X 1 2 3 4 5 6 7 8 9 10\r\n", 255, "C:X|1|2|3|4|5|6|7|8#10/1 2 3 4 5 6 7 8 9 10");
}

static void test_errors(void **state)
{
	CHECK("\r\nNOOP\r\n", 255, "E:3", "C:NOOP#0/");
	CHECK(" USER\r\n", 255, "E:4");
	CHECK("NO\0OP\r\nSTAT\r\n", 255, "E:2", "C:STAT#0/");
	CHECK("RETR 1\0\r\n", 255, "E:2");
	CHECK("\x01\xff\r\n", 255, "E:4");
	CHECK("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n", 255, "E:4");
	/* A line over max_line is skipped to its end, whatever its length;
	 * the next line is parsed as usual. A CR at the limit does not count. */
	CHECK("0123456789abcdefX\r\nNOOP\r\n", 16, "E:1", "C:NOOP#0/");
	CHECK("0123456789abcdef\r\nNOOP\r\n", 16, "C:0123456789abcdef#0/", "C:NOOP#0/");
	CHECK("LIST 56789abcdef\r\n", 16, "C:LIST|56789abcdef#1/56789abcdef");
	CHECK("LIST 56789abcdefgh", 16);
}

static void test_long_line_is_not_buffered(void **state)
{
	struct sora_pop3_parser_params params = { .max_line = 255 };
	struct sora_pop3_parser *p = sora_pop3_parser_new(&params);
	char chunk[4096];
	size_t used;

	memset(chunk, 'A', sizeof(chunk));
	/* 100 MB of one line: every byte is consumed and dropped. */
	for (int i = 0; i < 25600; i++) {
		assert_int_equal(sora_pop3_parser_feed(p, chunk, sizeof(chunk), &used),
				 SORA_POP3_PARSE_NEED_MORE);
		assert_int_equal(used, sizeof(chunk));
	}
	assert_int_equal(sora_pop3_parser_feed(p, "\r\nNOOP\r\n", 8, &used), SORA_POP3_PARSE_ERROR);
	assert_int_equal(used, 2);
	assert_int_equal(sora_pop3_parser_feed(p, "NOOP\r\n", 6, &used), SORA_POP3_PARSE_COMMAND);
	sora_pop3_parser_free(&p);
}

static void test_raw_mode(void **state)
{
	struct sora_pop3_parser_params params = { .max_line = 255 };
	struct sora_pop3_parser *p = sora_pop3_parser_new(&params);
	size_t used;

	sora_pop3_parser_set_raw(p, true);
	assert_int_equal(sora_pop3_parser_feed(p, "\r\n", 2, &used), SORA_POP3_PARSE_COMMAND);
	assert_int_equal(sora_pop3_parser_command(p)->line.len, 0);
	/* One line only. */
	assert_int_equal(sora_pop3_parser_feed(p, "\r\n", 2, &used), SORA_POP3_PARSE_ERROR);
	sora_pop3_parser_set_raw(p, true);
	assert_int_equal(sora_pop3_parser_feed(p, " AGJvYgBwdw== x\r\n", 17, &used),
			 SORA_POP3_PARSE_COMMAND);
	assert_int_equal(sora_pop3_parser_command(p)->line.len, 15);
	assert_int_equal(sora_pop3_parser_command(p)->name.len, 0);
	/* A raw line that is an error (NUL, too long) ends raw mode too:
	 * regression, the next command was taken as a SASL response. */
	sora_pop3_parser_set_raw(p, true);
	assert_int_equal(sora_pop3_parser_feed(p, "\0\r\n", 3, &used), SORA_POP3_PARSE_ERROR);
	assert_int_equal(sora_pop3_parser_feed(p, "CAPA\r\n", 6, &used), SORA_POP3_PARSE_COMMAND);
	assert_int_equal(sora_pop3_parser_command(p)->name.len, 4);
	sora_pop3_parser_free(&p);
}

static void test_numbers(void **state)
{
	uint32_t n;

	assert_int_equal(sora_pop3_parse_number(sora_str_c("1"), &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(sora_pop3_parse_number(sora_str_c("0"), &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(sora_pop3_parse_number(sora_str_c("4294967295"), &n), 0);
	assert_int_equal(n, 4294967295u);
	assert_int_equal(sora_pop3_parse_number(sora_str_c("4294967296"), &n), -1);
	assert_int_equal(sora_pop3_parse_number(sora_str_c("99999999999999999999"), &n), -1);
	assert_int_equal(sora_pop3_parse_number(sora_str_c("abc"), &n), -1);
	assert_int_equal(sora_pop3_parse_number(sora_str_c("-1"), &n), -1);
	assert_int_equal(sora_pop3_parse_number(sora_str_c("+1"), &n), -1);
	assert_int_equal(sora_pop3_parse_number(sora_str_c("1x"), &n), -1);
	assert_int_equal(sora_pop3_parse_number(sora_str_c(""), &n), -1);
}

static void test_xclient(void **state)
{
	struct sora_pop3_parser_params params = { .max_line = 255 };
	struct sora_pop3_parser *p = sora_pop3_parser_new(&params);
	struct sora_pop3_xclient x;
	const char *err;
	size_t used;
	char ip[64];
	static const char *const bad[] = {
		"XCLIENT\r\n", "XCLIENT ADDR\r\n", "XCLIENT =1\r\n", "XCLIENT ADDR=1.2.3\r\n",
		"XCLIENT PORT=0\r\n", "XCLIENT PORT=65536\r\n", "XCLIENT SESSION=a\"b\r\n",
		"XCLIENT ADDR=\r\n",
	};

	static const char good[] = "XCLIENT ADDR=2001:db8::1 PORT=143 SESSION=s1 TTL=5 FOO=x\r\n";

	assert_int_equal(sora_pop3_parser_feed(p, good, strlen(good), &used), SORA_POP3_PARSE_COMMAND);
	assert_int_equal(sora_pop3_xclient_parse(sora_pop3_parser_command(p), &x, &err), 0);
	assert_true(x.has_addr && x.has_port);
	assert_int_equal(x.port, 143);
	assert_string_equal(sora_ip_format(&x.addr, ip, sizeof(ip)), "2001:db8::1");
	assert_string_equal(x.session, "s1");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(sora_pop3_parser_feed(p, bad[i], strlen(bad[i]), &used),
				 SORA_POP3_PARSE_COMMAND);
		assert_int_equal(sora_pop3_xclient_parse(sora_pop3_parser_command(p), &x, &err), -1);
	}
	sora_pop3_parser_free(&p);
}

/* ---- the encoder ---- */

/* The reference: split into lines at LF, every line ends in CRLF (a CR
 * before the LF is the line's own), lines starting with "." get another,
 * a last line without LF gets CRLF. TOP: the header up to its empty line,
 * then lines of the body. *octets_r: the size without stuffing. */
static size_t reference(const char *in, size_t len, bool top, uint64_t lines, char *out,
			uint64_t *octets_r)
{
	size_t n = 0, pos = 0;
	uint64_t octets = 0, body_lines = 0;
	bool in_body = false;

	while (pos < len) {
		const char *nl = memchr(in + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - in) : len;
		size_t content = end - pos;
		bool empty;

		if (top && in_body && body_lines == lines)
			break;
		if (nl != NULL && content > 0 && in[end - 1] == '\r')
			content--;
		empty = content == 0 && nl != NULL;
		if (content > 0 && in[pos] == '.')
			out[n++] = '.';
		memcpy(out + n, in + pos, content);
		n += content;
		octets += content;
		memcpy(out + n, "\r\n", 2);
		n += 2;
		octets += 2;
		pos = nl != NULL ? end + 1 : len;
		if (top) {
			if (in_body)
				body_lines++;
			else if (empty)
				in_body = true;
		}
	}
	memcpy(out + n, ".\r\n", 3);
	n += 3;
	*octets_r = octets;
	return n;
}

static size_t encode_cuts(const char *in, size_t len, bool top, uint64_t lines, const size_t *cuts,
			  size_t ncuts, char *out, uint64_t *octets_r)
{
	struct sora_pop3_dot d;
	size_t pos = 0, n = 0;

	sora_pop3_dot_init(&d, top, lines);
	for (size_t k = 0; k <= ncuts && !sora_pop3_dot_done(&d); k++) {
		size_t next = k < ncuts ? cuts[k] : len;
		size_t used;

		n += sora_pop3_dot_encode(&d, in + pos, next - pos, out + n, &used);
		assert_true(used <= next - pos);
		if (!sora_pop3_dot_done(&d))
			assert_int_equal(used, next - pos);
		pos = next;
	}
	n += sora_pop3_dot_finish(&d, out + n, true);
	*octets_r = d.octets;
	return n;
}

static void check_encode(const char *in, size_t len, bool top, uint64_t lines)
{
	char *want = malloc(3 * len + 8), *got = malloc(3 * len + 8);
	uint64_t want_oct, got_oct, size;
	size_t wn, gn;
	struct sora_pop3_dot d;

	wn = reference(in, len, top, lines, want, &want_oct);
	gn = encode_cuts(in, len, top, lines, NULL, 0, got, &got_oct);
	assert_int_equal(gn, wn);
	assert_memory_equal(got, want, wn);
	assert_int_equal(got_oct, want_oct);
	if (!top) {
		/* LIST's size is the same count. */
		sora_pop3_size_init(&d);
		for (size_t i = 0; i < len; i++)
			sora_pop3_size_feed(&d, in + i, 1);
		size = sora_pop3_size_final(&d);
		assert_int_equal(size, want_oct);
	}
	for (size_t c = 1; c < len; c++) {
		gn = encode_cuts(in, len, top, lines, &c, 1, got, &got_oct);
		assert_int_equal(gn, wn);
		assert_memory_equal(got, want, wn);
		assert_int_equal(got_oct, want_oct);
	}
	free(want);
	free(got);
}

#define ENC(s, top, lines) check_encode(s, sizeof(s) - 1, top, lines)

static void test_encode_fixed(void **state)
{
	char out[64];
	uint64_t oct;
	size_t n;

	n = encode_cuts("a\n.b\r\n..\r\n.", 11, false, 0, NULL, 0, out, &oct);
	assert_int_equal(n, strlen("a\r\n..b\r\n...\r\n..\r\n.\r\n"));
	assert_memory_equal(out, "a\r\n..b\r\n...\r\n..\r\n.\r\n", n);
	assert_int_equal(oct, 3 + 4 + 4 + 3);
	n = encode_cuts("", 0, false, 0, NULL, 0, out, &oct);
	assert_int_equal(n, 3);
	assert_int_equal(oct, 0);
	n = encode_cuts("x\r", 2, false, 0, NULL, 0, out, &oct);
	assert_memory_equal(out, "x\r\r\n.\r\n", 7);
	ENC("Subject: a\r\n\r\nbody\r\n", false, 0);
	ENC("Subject: a\n\n.dot\n..\n.\nend", false, 0);
	ENC("\n\n\n", false, 0);
	ENC(".", false, 0);
	ENC("\r\r\n\r.\r\n", false, 0);
	ENC("a\0b\r\n\0.\r\n", false, 0);
	ENC("H: 1\r\nH: 2\r\n\r\nl1\r\nl2\r\n.l3\r\nl4", true, 0);
	ENC("H: 1\r\nH: 2\r\n\r\nl1\r\nl2\r\n.l3\r\nl4", true, 1);
	ENC("H: 1\r\nH: 2\r\n\r\nl1\r\nl2\r\n.l3\r\nl4", true, 3);
	ENC("H: 1\r\nH: 2\r\n\r\nl1\r\nl2\r\n.l3\r\nl4", true, 100);
	ENC("H: 1\nno body", true, 0);
	ENC("H: 1\n\n", true, 5);
	ENC("\r\nbody first\r\n", true, 1);
}

static void test_encode_random(void **state)
{
	static const char alphabet[] = "ab.\r\n\n\n\r.\0 :";
	char msg[300];

	srand(4711);
	for (int round = 0; round < 400; round++) {
		size_t len = (size_t)(rand() % (int)sizeof(msg));

		for (size_t i = 0; i < len; i++)
			msg[i] = alphabet[rand() % (int)(sizeof(alphabet) - 1)];
		check_encode(msg, len, false, 0);
		check_encode(msg, len, true, (uint64_t)(rand() % 5));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_long_line_is_not_buffered),
		cmocka_unit_test(test_raw_mode),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_xclient),
		cmocka_unit_test(test_encode_fixed),
		cmocka_unit_test(test_encode_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
