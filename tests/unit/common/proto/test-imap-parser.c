/* The IMAP command parser and its value helpers (common/proto/imap-*).
 *
 * Every parser case is run through run(): in one piece, one byte at a
 * time and at several sets of random split points, and the transcripts of
 * events (commands, literal announcements, streamed literal data, errors)
 * must be identical to the expected one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/proto/imap-parser.h"
#include "common/proto/imap-types.h"

enum split { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM };

struct run_opts {
	/* refuse literals of at least this size (0: accept all) */
	uint64_t refuse_from;
};

static void put_escaped(struct sora_buf *t, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			sora_buf_append(t, &c, 1);
		else
			sora_buf_printf(t, "\\x%02x", c);
	}
}

static void flush_data(struct sora_buf *t, struct sora_buf *data)
{
	if (data->len == 0)
		return;
	sora_buf_append_str(t, "D:");
	put_escaped(t, data->data, data->len);
	sora_buf_append_str(t, "\n");
	data->len = 0;
}

/* Feeds input split as asked and returns the transcript (caller frees). */
static char *run_split(const struct sora_imap_parser_params *params, const char *in, size_t len,
		       enum split mode, unsigned seed, const struct run_opts *opts)
{
	struct sora_imap_parser *p = sora_imap_parser_new(params);
	struct sora_buf t, data;
	size_t pos = 0;
	bool dead = false;
	char *res;

	assert_non_null(p);
	sora_buf_init(&t, 0);
	sora_buf_init(&data, 0);
	srand(seed);
	while (pos < len && !dead) {
		size_t n = len - pos;

		if (mode == SPLIT_BYTES)
			n = 1;
		else if (mode == SPLIT_RANDOM)
			n = 1 + (size_t)rand() % (n < 7 ? n : 7);
		/* Offer one chunk until it is used up, as a session would. */
		while (n > 0) {
			size_t used = 0;
			enum sora_imap_parse_result r = sora_imap_parser_feed(p, in + pos, n, &used);
			const struct sora_imap_command *cmd;
			const struct sora_imap_literal_info *li;
			const struct sora_imap_parser_error *e;

			assert_true(used <= n);
			pos += used;
			n -= used;
			if (r != SORA_IMAP_PARSE_LITERAL_DATA)
				flush_data(&t, &data);
			switch (r) {
			case SORA_IMAP_PARSE_NEED_MORE:
				assert_int_equal(n, 0);
				break;
			case SORA_IMAP_PARSE_COMMAND:
				cmd = sora_imap_parser_command(p);
				sora_buf_append_str(&t, "C:");
				assert_int_equal(sora_imap_command_describe(cmd, &t), 0);
				sora_buf_append_str(&t, "\n");
				break;
			case SORA_IMAP_PARSE_LITERAL:
				li = sora_imap_parser_literal(p);
				sora_buf_printf(&t, "L:%llu%s%s%s\n", (unsigned long long)li->size,
						li->sync ? " sync" : "", li->binary ? " binary" : "",
						li->streamed ? " streamed" : "");
				if (opts != NULL && opts->refuse_from > 0 && li->size >= opts->refuse_from) {
					sora_imap_parser_refuse_literal(p);
					sora_buf_append_str(&t, "R\n");
				}
				break;
			case SORA_IMAP_PARSE_LITERAL_DATA: {
				struct sora_str ch = sora_imap_parser_literal_chunk(p);

				assert_true(ch.len == 0 || (ch.p >= in && ch.p + ch.len <= in + len));
				sora_buf_append(&data, ch.p, ch.len);
				break;
			}
			case SORA_IMAP_PARSE_ERROR:
				e = sora_imap_parser_error(p);
				sora_buf_printf(&t, "E:%d:", (int)e->code);
				put_escaped(&t, e->tag.p, e->tag.len);
				sora_buf_printf(&t, ":%s%s skip=%llu:%s\n", e->fatal ? "fatal" : "",
						e->literal_sync ? "sync" : "",
						(unsigned long long)e->skipping, e->text);
				if (e->fatal)
					dead = true;
				break;
			}
			if (dead)
				break;
		}
	}
	flush_data(&t, &data);
	if (!dead)
		sora_buf_printf(&t, "idle=%d\n", sora_imap_parser_idle(p));
	sora_buf_append(&t, "", 1);
	sora_imap_parser_free(&p);
	assert_null(p);
	sora_buf_free(&data);
	res = t.data;
	return res;
}

static void check_opts(const struct sora_imap_parser_params *params, const char *in, size_t len,
		       const char *expected, const struct run_opts *opts)
{
	char *whole = run_split(params, in, len, SPLIT_WHOLE, 0, opts);

	if (strcmp(whole, expected) != 0) {
		print_error("input: %.*s\nexpected:\n%s\ngot:\n%s\n", (int)len, in, expected, whole);
		fail();
	}
	{
		char *bytes = run_split(params, in, len, SPLIT_BYTES, 0, opts);

		assert_string_equal(bytes, whole);
		free(bytes);
	}
	for (unsigned seed = 1; seed <= 20; seed++) {
		char *r = run_split(params, in, len, SPLIT_RANDOM, seed, opts);

		assert_string_equal(r, whole);
		free(r);
	}
	free(whole);
}

#define CHECK_P(params, lit, expected) check_opts((params), (lit), sizeof(lit) - 1, (expected), NULL)
#define CHECK(lit, expected) CHECK_P(&sora_imap_parser_default_params, lit, expected)

/* Where the first error was reported: bytes consumed up to it. */
static size_t error_offset(const struct sora_imap_parser_params *params, const char *in, size_t len)
{
	struct sora_imap_parser *p = sora_imap_parser_new(params);
	size_t pos = 0, used;
	enum sora_imap_parse_result r;

	for (;;) {
		r = sora_imap_parser_feed(p, in + pos, len - pos, &used);
		pos += used;
		if (r == SORA_IMAP_PARSE_ERROR || r == SORA_IMAP_PARSE_NEED_MORE)
			break;
	}
	assert_int_equal(r, SORA_IMAP_PARSE_ERROR);
	sora_imap_parser_free(&p);
	return pos;
}

/* ------------------------------------------------------------ constructs */

static void test_simple(void **state)
{
	CHECK("a1 NOOP\r\n", "C:a1 NOOP\nidle=1\n");
	CHECK("a1 NOOP\r\na2 CAPABILITY\r\nx LOGOUT\r\n",
	      "C:a1 NOOP\nC:a2 CAPABILITY\nC:x LOGOUT\nidle=1\n");
	/* bare LF is tolerated */
	CHECK("a1 NOOP\na2 NOOP extra\n", "C:a1 NOOP\nC:a2 NOOP extra\nidle=1\n");
	/* an incomplete command waits */
	CHECK("a1 NOO", "idle=0\n");
	CHECK("a1 UID FETCH 1:*,5 FLAGS\r\n", "C:a1 UID FETCH 1:*,5 FLAGS\nidle=1\n");
	CHECK("x.y] login user pass\r\n", "C:x.y] login user pass\nidle=1\n");
}

static void test_atoms_strings_lists(void **state)
{
	CHECK("a LOGIN \"us\\\"er\\\\\" pass\r\n", "C:a LOGIN \"us\\x22er\\x5c\" pass\nidle=1\n");
	CHECK("a X \"\" ()\r\n", "C:a X \"\" ()\nidle=1\n");
	CHECK("a STORE 1 +FLAGS (\\Seen \\Deleted $Junk)\r\n",
	      "C:a STORE 1 +FLAGS (\\x5cSeen \\x5cDeleted $Junk)\nidle=1\n");
	CHECK("a ID (\"name\" \"x\" \"version\" NIL)\r\n",
	      "C:a ID (\"name\" \"x\" \"version\" NIL)\nidle=1\n");
	CHECK("a LIST \"\" %\r\na LIST \"\" *\r\n", "C:a LIST \"\" %\nC:a LIST \"\" *\nidle=1\n");
	CHECK("a SELECT [Gmail]/Sent\r\n", "C:a SELECT [Gmail]/Sent\nidle=1\n");
	CHECK("a X ((a (b)) c)  d\r\n", "C:a X ((a (b)) c) d\nidle=1\n");
	CHECK("a X ~foo nil Nil\r\n", "C:a X ~foo NIL NIL\nidle=1\n");
	CHECK("a SEARCH CHARSET UTF-8 SUBJECT \"x\" SINCE 1-Feb-2024\r\n",
	      "C:a SEARCH CHARSET UTF-8 SUBJECT \"x\" SINCE 1-Feb-2024\nidle=1\n");
}

static void test_fetch_sections(void **state)
{
	/* '[' ']' '<' are atom characters; a header list inside a section is
	 * a list between two atoms, and "]" may follow ")" directly. */
	CHECK("a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From To)]<0.100> BODY[]<5.10> BINARY[1.2])\r\n",
	      "C:a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From To) ]<0.100> BODY[]<5.10> BINARY[1.2])\nidle=1\n");
	CHECK("a FETCH 1 BODY[HEADER.FIELDS.NOT (\"Subject\")]\r\n",
	      "C:a FETCH 1 BODY[HEADER.FIELDS.NOT (\"Subject\") ]\nidle=1\n");
}

static void test_section_tree(void **state)
{
	static const char in[] = "a FETCH 1 (BODY[HEADER.FIELDS (From To)] UID)\r\n";
	struct sora_imap_parser *p = sora_imap_parser_new(&sora_imap_parser_default_params);
	const struct sora_imap_command *c;
	const struct sora_imap_arg *l;
	size_t used;

	assert_int_equal(sora_imap_parser_feed(p, in, sizeof(in) - 1, &used), SORA_IMAP_PARSE_COMMAND);
	assert_int_equal(used, sizeof(in) - 1);
	c = sora_imap_parser_command(p);
	assert_int_equal(c->args_count, 2);
	assert_int_equal(c->args[1].type, SORA_IMAP_ARG_LIST);
	l = c->args[1].list;
	assert_int_equal(c->args[1].list_count, 4);
	assert_true(sora_str_eq(l[0].str, SORA_STR("BODY[HEADER.FIELDS")));
	assert_int_equal(l[1].type, SORA_IMAP_ARG_LIST);
	assert_int_equal(l[1].list_count, 2);
	assert_true(sora_str_eq(l[1].list[1].str, SORA_STR("To")));
	assert_true(sora_str_eq(l[2].str, SORA_STR("]")));
	assert_true(sora_str_eq(l[3].str, SORA_STR("UID")));
	sora_imap_parser_free(&p);
}

static void test_literals(void **state)
{
	CHECK("a5 LOGIN {3}\r\nabc {4}\r\nde\0f\r\n",
	      "L:3 sync\nL:4 sync\nC:a5 LOGIN {3}\"abc\" {4}\"de\\x00f\"\nidle=1\n");
	CHECK("a APPEND INBOX {5+}\r\nhello\r\n", "L:5\nC:a APPEND INBOX {5+}\"hello\"\nidle=1\n");
	CHECK("a APPEND INBOX ~{3+}\r\n\0\1\2\r\n",
	      "L:3 binary\nC:a APPEND INBOX ~{3+}\"\\x00\\x01\\x02\"\nidle=1\n");
	CHECK("a X {0}\r\n {0+}\r\n\r\n", "L:0 sync\nL:0\nC:a X {0}\"\" {0+}\"\"\nidle=1\n");
	/* a literal inside a list, followed by more arguments */
	CHECK("a X (a {2+}\r\n)( b)\r\n", "L:2\nC:a X (a {2+}\")(\" b)\nidle=1\n");
	/* literal bytes that look like IMAP syntax are data */
	CHECK("a X {6+}\r\n\"(\r\n{1\r\n", "L:6\nC:a X {6+}\"\\x22(\\x0d\\x0a{1\"\nidle=1\n");
	/* bare LF after the announcement */
	CHECK("a X {2}\nab\n", "L:2 sync\nC:a X {2}\"ab\"\nidle=1\n");
}

static void test_preauth_literal_attack(void **state)
{
	/* The LOGOUT inside the literal is data: one command, ID with a
	 * 10-byte literal "b1 LOGOUT\r"; the final LF ends the ID line. */
	CHECK("a1 ID {10+}\r\nb1 LOGOUT\r\n", "L:10\nC:a1 ID {10+}\"b1 LOGOUT\\x0d\"\nidle=1\n");
	/* also when a literal hides in a command that is bad anyway */
	CHECK("a1 ID (\"x\0\" {10+}\r\nb1 LOGOUT)\r\na2 NOOP\r\n",
	      "E:1:a1: skip=0:Invalid character in quoted string.\nC:a2 NOOP\nidle=1\n");
	/* the '{' that shows the error still announces a literal */
	CHECK("a1 ID x{10+}\r\nb1 LOGOUT\r\na2 NOOP\r\n",
	      "E:1:a1: skip=0:Missing space between arguments.\nC:a2 NOOP\nidle=1\n");
	CHECK("a1 ID \"x\"{10+}\r\nb1 LOGOUT\r\na2 NOOP\r\n",
	      "E:1:a1: skip=0:Missing space between arguments.\nC:a2 NOOP\nidle=1\n");
	CHECK("a1 ID ){10+}\r\nb1 LOGOUT\r\na2 NOOP\r\n",
	      "E:1:a1: skip=0:Unexpected ')'.\nC:a2 NOOP\nidle=1\n");
}

static void test_streaming(void **state)
{
	struct sora_imap_parser_params pp = sora_imap_parser_default_params;

	pp.max_inline_literal = 4;
	CHECK_P(&pp, "a8 APPEND INBOX (\\Seen) {10}\r\n0123456789 {2+}\r\nxy\r\n",
		"L:10 sync streamed\nD:0123456789\nL:2\n"
		"C:a8 APPEND INBOX (\\x5cSeen) {10 streamed}\"\" {2+}\"xy\"\nidle=1\n");
	/* MULTIAPPEND-like: two streamed literals, non-synchronising */
	CHECK_P(&pp, "a APPEND X {5+}\r\nhello {6+}\r\nworld!\r\n",
		"L:5 streamed\nD:hello\nL:6 streamed\nD:world!\n"
		"C:a APPEND X {5+ streamed}\"\" {6+ streamed}\"\"\nidle=1\n");
}

static void test_refuse_literal(void **state)
{
	struct run_opts o = { .refuse_from = 5 };

	/* sync: the command is dropped, the client sends no bytes */
	check_opts(&sora_imap_parser_default_params, "a APPEND X {10}\r\nb NOOP\r\n",
		   sizeof("a APPEND X {10}\r\nb NOOP\r\n") - 1, "L:10 sync\nR\nC:b NOOP\nidle=1\n", &o);
	/* non-sync: its bytes and the rest of the line are skipped */
	check_opts(&sora_imap_parser_default_params, "a APPEND X {10+}\r\nb1 LOGOUT\r {1+}\r\nz)\r\nc NOOP\r\n",
		   sizeof("a APPEND X {10+}\r\nb1 LOGOUT\r {1+}\r\nz)\r\nc NOOP\r\n") - 1,
		   "L:10\nR\nC:c NOOP\nidle=1\n", &o);
}

/* ------------------------------------------------------------ limits */

static void test_literal_limits(void **state)
{
	struct sora_imap_parser_params pp = sora_imap_parser_default_params;
	static const char sync_in[] = "a1 APPEND X {200}\r\na2 NOOP\r\n";
	static const char nonsync_in[] = "a1 APPEND X {20+}\r\na2 LOGOUT\r\n12345678\r\na3 NOOP\r\n";

	pp.max_literal = 100;
	CHECK_P(&pp, "a1 APPEND X {200}\r\na2 NOOP\r\n",
		"E:3:a1:sync skip=0:Literal too big.\nC:a2 NOOP\nidle=1\n");
	/* refused right after the announcement, before any literal byte */
	assert_int_equal(error_offset(&pp, sync_in, sizeof(sync_in) - 1), strlen("a1 APPEND X {200}\r\n"));
	pp.max_literal = 10;
	CHECK_P(&pp, "a1 APPEND X {20+}\r\na2 LOGOUT\r\n12345678\r\na3 NOOP\r\n",
		"E:3:a1: skip=20:Literal too big.\nC:a3 NOOP\nidle=1\n");
	assert_int_equal(error_offset(&pp, nonsync_in, sizeof(nonsync_in) - 1),
			 strlen("a1 APPEND X {20+}\r\n"));

	/* LITERAL-: non-synchronising literals up to 4096 bytes */
	pp = sora_imap_parser_default_params;
	pp.max_nonsync_literal = 4096;
	CHECK_P(&pp, "a X {5000+}\r\n", "E:3:a: skip=5000:Non-synchronizing literal too big.\nidle=0\n");
	CHECK_P(&pp, "a X {5000}\r\n", "L:5000 sync\nidle=0\n");
	pp.max_nonsync_literal = 0;
	CHECK_P(&pp, "a X {2+}\r\nxy\r\nb NOOP\r\n",
		"E:3:a: skip=2:Non-synchronizing literals are not supported.\nC:b NOOP\nidle=1\n");
	/* BINARY off */
	pp = sora_imap_parser_default_params;
	pp.binary = false;
	CHECK_P(&pp, "a X ~{2+}\r\nxy\r\nb NOOP\r\n",
		"E:1:a: skip=2:BINARY literals are not supported.\nC:b NOOP\nidle=1\n");
	/* a refused empty non-synchronising literal: the next line still
	 * belongs to the refused command */
	CHECK_P(&pp, "a X ~{0+}\r\nb LOGOUT\r\nc NOOP\r\n",
		"E:1:a: skip=0:BINARY literals are not supported.\nC:c NOOP\nidle=1\n");
	/* an in-line literal that does not fit the command */
	pp = sora_imap_parser_default_params;
	pp.max_command = 64;
	pp.max_inline_literal = 1000;
	CHECK_P(&pp, "a X {100+}\r\n", "E:2:a: skip=100:Command too long.\nidle=0\n");
}

static void test_bad_literal_syntax(void **state)
{
	CHECK("a1 LOGIN {1x}\r\na2 NOOP\r\n", "E:1:a1: skip=0:Invalid literal size.\nC:a2 NOOP\nidle=1\n");
	CHECK("a1 LOGIN {}\r\na2 NOOP\r\n", "E:1:a1: skip=0:Invalid literal size.\nC:a2 NOOP\nidle=1\n");
	CHECK("a1 LOGIN {+}\r\na2 NOOP\r\n", "E:1:a1: skip=0:Invalid literal size.\nC:a2 NOOP\nidle=1\n");
	CHECK("a1 LOGIN {3} x\r\na2 NOOP\r\n",
	      "E:1:a1: skip=0:A literal must end its line.\nC:a2 NOOP\nidle=1\n");
	/* a synchronising size out of range: the client waits, nothing to skip */
	CHECK("a1 LOGIN {99999999999999999999}\r\na2 NOOP\r\n",
	      "E:3:a1:sync skip=0:Literal too big.\nC:a2 NOOP\nidle=1\n");
	/* a non-synchronising one cannot be skipped: fatal */
	CHECK("a1 LOGIN {99999999999999999999+}\r\na2 NOOP\r\n",
	      "E:3:a1:fatal skip=0:Literal size out of range.\n");
	CHECK("a1 LOGIN {9223372036854775808}\r\n", "E:3:a1:sync skip=0:Literal too big.\nidle=1\n");
	/* a literal over max_literal found while skipping: fatal */
	{
		struct sora_imap_parser_params pp = sora_imap_parser_default_params;

		pp.max_literal = 100;
		CHECK_P(&pp, "a1 X \x01 {101+}\r\n",
			"E:1:a1: skip=0:Invalid character in command.\nE:3:a1:fatal skip=0:Literal too big.\n");
		CHECK_P(&pp, "a1 X \x01 {100+}\r\n", "E:1:a1: skip=0:Invalid character in command.\nidle=0\n");
	}
	/* {n-} is not RFC 7888 syntax (LITERAL- uses {n+}); its bytes are
	 * skipped, never parsed as commands */
	CHECK("a1 X {5-}\r\nb OUT\r\na2 NOOP\r\n",
	      "E:1:a1: skip=5:Invalid literal: LITERAL- uses {n+}, not {n-}.\nC:a2 NOOP\nidle=1\n");
	/* a bad literal found while skipping a bad line */
	CHECK("a1 X \x01 {9999999999999999999999+}\r\n",
	      "E:1:a1: skip=0:Invalid character in command.\nE:3:a1:fatal skip=0:Literal size out of range.\n");
}

static void test_limits(void **state)
{
	struct sora_imap_parser_params pp = sora_imap_parser_default_params;
	static const char atom[] = "a1 X 123456789\r\na2 NOOP\r\n";
	static const char line[] = "a1 X 1234 5678 9012 3456 7890\r\n";

	pp.max_atom = 8;
	CHECK_P(&pp, "a1 X 123456789\r\na2 NOOP\r\n", "E:2:a1: skip=0:Atom too long.\nC:a2 NOOP\nidle=1\n");
	assert_int_equal(error_offset(&pp, atom, sizeof(atom) - 1), strlen("a1 X 12345678"));
	CHECK_P(&pp, "123456789 X\r\n", "E:2:: skip=0:Tag too long.\nidle=1\n");
	CHECK_P(&pp, "a CAPABILITYX\r\n", "E:2:a: skip=0:Command name too long.\nidle=1\n");
	pp = sora_imap_parser_default_params;
	pp.max_quoted = 3;
	CHECK_P(&pp, "a X \"abcd\"\r\n", "E:2:a: skip=0:Quoted string too long.\nidle=1\n");
	pp = sora_imap_parser_default_params;
	pp.max_line = 20;
	CHECK_P(&pp, "a1 X 1234 5678 9012 3456 7890\r\n", "E:2:a1: skip=0:Command line too long.\nidle=1\n");
	assert_int_equal(error_offset(&pp, line, sizeof(line) - 1), 20);
	/* literal data does not count against the line */
	CHECK_P(&pp, "a X {30+}\r\n012345678901234567890123456789\r\n",
		"L:30\nC:a X {30+}\"012345678901234567890123456789\"\nidle=1\n");
	pp = sora_imap_parser_default_params;
	pp.max_depth = 2;
	CHECK_P(&pp, "a X ((a))\r\n", "C:a X ((a))\nidle=1\n");
	CHECK_P(&pp, "a X (((a)))\r\nb NOOP\r\n", "E:2:a: skip=0:Lists nested too deeply.\nC:b NOOP\nidle=1\n");
	pp = sora_imap_parser_default_params;
	pp.max_args = 3;
	CHECK_P(&pp, "a X 1 (2)\r\n", "C:a X 1 (2)\nidle=1\n");
	CHECK_P(&pp, "a X 1 (2 3)\r\n", "E:2:a: skip=0:Too many arguments.\nidle=1\n");
	pp = sora_imap_parser_default_params;
	pp.max_command = 10;
	CHECK_P(&pp, "a X 12345678\r\n", "C:a X 12345678\nidle=1\n");
	CHECK_P(&pp, "a X 123456789\r\n", "E:2:a: skip=0:Command too long.\nidle=1\n");
}

/* ------------------------------------------------------------ malformed */

static void test_malformed(void **state)
{
	CHECK("a1 FETCH (1\r\na2 NOOP\r\n", "E:1:a1: skip=0:Missing ')'.\nC:a2 NOOP\nidle=1\n");
	CHECK("a1 X a)\r\n", "E:1:a1: skip=0:Unexpected ')'.\nidle=1\n");
	CHECK("a1 X (a)b\r\n", "E:1:a1: skip=0:Missing space between arguments.\nidle=1\n");
	CHECK("a1 X \"a\"b\r\n", "E:1:a1: skip=0:Missing space between arguments.\nidle=1\n");
	CHECK("a1 X a\"b\"\r\n", "E:1:a1: skip=0:Missing space between arguments.\nidle=1\n");
	CHECK("a1 X \"ab\r\na2 NOOP\r\n", "E:1:a1: skip=0:Unterminated quoted string.\nC:a2 NOOP\nidle=1\n");
	CHECK("a1 X \"a\\b\"\r\n", "E:1:a1: skip=0:Invalid escape in quoted string.\nidle=1\n");
	CHECK("a1 NO\0OP\r\na2 NOOP\r\n", "E:1:a1: skip=0:Invalid command name.\nC:a2 NOOP\nidle=1\n");
	CHECK("a1 X a\0b\r\n", "E:1:a1: skip=0:Invalid character in command.\nidle=1\n");
	CHECK("a1 X \"a\0b\"\r\n", "E:1:a1: skip=0:Invalid character in quoted string.\nidle=1\n");
	CHECK("a1 X ab\xc3\xa9\r\n", "E:1:a1: skip=0:Invalid character in command.\nidle=1\n");
	CHECK("a1 X \"\xc3\xa9\"\r\n", "E:1:a1: skip=0:8-bit character in quoted string.\nidle=1\n");
	CHECK("t\x80 NOOP\r\n", "E:1:: skip=0:Invalid tag.\nidle=1\n");
	CHECK("bad{tag NOOP\r\na NOOP\r\n", "E:1:: skip=0:Invalid tag.\nC:a NOOP\nidle=1\n");
	CHECK("a+b NOOP\r\n", "E:1:: skip=0:Invalid tag.\nidle=1\n");
	CHECK("\r\n", "E:1:: skip=0:Empty command line.\nidle=1\n");
	CHECK(" NOOP\r\n", "E:1:: skip=0:Invalid tag.\nidle=1\n");
	CHECK("tag\r\n", "E:1:tag: skip=0:Missing command.\nidle=1\n");
	CHECK("tag \r\n", "E:1:tag: skip=0:Missing command.\nidle=1\n");
	CHECK("tag NO]OP\r\n", "E:1:tag: skip=0:Invalid command name.\nidle=1\n");
	CHECK("a1 NOOP\rX\r\na2 NOOP\r\n", "E:1:a1: skip=0:CR without LF.\nC:a2 NOOP\nidle=1\n");
	CHECK("a1 X {3}\rX\r\n", "E:1:a1: skip=0:CR without LF.\nidle=1\n");
}

static void test_utf8_quoted(void **state)
{
	struct sora_imap_parser_params pp = sora_imap_parser_default_params;

	pp.utf8_quoted = true;
	CHECK_P(&pp, "a SELECT \"Entw\xc3\xbcrfe\"\r\n", "C:a SELECT \"Entw\\xc3\\xbcrfe\"\nidle=1\n");
	CHECK_P(&pp, "a SELECT \"\xc3\"\r\n", "E:1:a: skip=0:Invalid UTF-8 in quoted string.\nidle=1\n");
	CHECK_P(&pp, "a SELECT \"\xc0\xaf\"\r\n", "E:1:a: skip=0:Invalid UTF-8 in quoted string.\nidle=1\n");
	/* atoms stay ASCII */
	CHECK_P(&pp, "a SELECT \xc3\xbc\r\n", "E:1:a: skip=0:Invalid character in command.\nidle=1\n");
}

static void test_realistic(void **state)
{
	/* shapes from the imaptest scripts */
	CHECK("ok append INBOX {5}\r\nhello\r\n",
	      "L:5 sync\nC:ok append INBOX {5}\"hello\"\nidle=1\n");
	CHECK("a uid fetch 1:* (flags) (changedsince 1 vanished)\r\n",
	      "C:a uid fetch 1:* (flags) (changedsince 1 vanished)\nidle=1\n");
	CHECK("a select INBOX (QRESYNC (67890007 90060115194045000 41,43:211,214:541))\r\n",
	      "C:a select INBOX (QRESYNC (67890007 90060115194045000 41,43:211,214:541))\nidle=1\n");
	CHECK("a search return (min max) 1:5 or seen flagged\r\n",
	      "C:a search return (min max) 1:5 or seen flagged\nidle=1\n");
	CHECK("a append INBOX (\\seen) \"5-Nov-2002 18:02:11 +0200\" ~{3}\r\nx\0y\r\n",
	      "L:3 sync binary\nC:a append INBOX (\\x5cseen) \"5-Nov-2002 18:02:11 +0200\" ~{3}\"x\\x00y\"\nidle=1\n");
	CHECK("a AUTHENTICATE PLAIN AGJvYgBwYXNz\r\n", "C:a AUTHENTICATE PLAIN AGJvYgBwYXNz\nidle=1\n");
	/* imaptest "atoms": every atom character, and '~' not before '{' */
	CHECK("ok list \"\" !#$&'+,-.0123456789:;<=>?@^_`|[}%*\r\nok list \"\" ~foo\r\n",
	      "C:ok list \"\" !#$&'+,-.0123456789:;<=>?@^_`|[}%*\nC:ok list \"\" ~foo\nidle=1\n");
	CHECK("a store 1 +flags.silent (\\deleted)\r\n",
	      "C:a store 1 +flags.silent (\\x5cdeleted)\nidle=1\n");
}

static void test_accessors(void **state)
{
	static const char in[] = "a X atom NIL \"q\" {2+}\r\nli (x)\r\n";
	struct sora_imap_parser *p = sora_imap_parser_new(&sora_imap_parser_default_params);
	const struct sora_imap_command *c;
	struct sora_str v;
	size_t pos = 0, used;
	enum sora_imap_parse_result r;

	do {
		r = sora_imap_parser_feed(p, in + pos, sizeof(in) - 1 - pos, &used);
		pos += used;
	} while (r == SORA_IMAP_PARSE_LITERAL);
	assert_int_equal(r, SORA_IMAP_PARSE_COMMAND);
	c = sora_imap_parser_command(p);
	assert_int_equal(c->args_count, 5);
	assert_true(sora_imap_arg_atom(&c->args[0], &v) && sora_str_eq(v, SORA_STR("atom")));
	assert_false(sora_imap_arg_atom(&c->args[1], &v));
	assert_true(sora_imap_arg_astring(&c->args[1], &v) && sora_str_eq(v, SORA_STR("NIL")));
	assert_true(sora_imap_arg_nstring(&c->args[1], &v) && v.p == NULL);
	assert_true(sora_imap_arg_nstring(&c->args[2], &v) && sora_str_eq(v, SORA_STR("q")));
	assert_false(sora_imap_arg_nstring(&c->args[0], &v));
	assert_true(sora_imap_arg_astring(&c->args[3], &v) && sora_str_eq(v, SORA_STR("li")));
	assert_false(sora_imap_arg_astring(&c->args[4], &v));
	sora_imap_parser_free(&p);
	sora_imap_parser_free(&p);   /* NULL-safe */
}

/* ------------------------------------------------------------ sequence sets */

static void test_seqset(void **state)
{
	struct sora_imap_seqset s;
	const char *err = NULL;

	assert_int_equal(sora_imap_seqset_parse(SORA_STR("1:5,7,*,9:*,10:3,4294967295"), false, 100, &s, &err), 0);
	assert_int_equal(s.count, 6);
	assert_int_equal(s.ranges[0].lo, 1);
	assert_int_equal(s.ranges[0].hi, 5);
	assert_int_equal(s.ranges[1].lo, 7);
	assert_int_equal(s.ranges[1].hi, 7);
	assert_int_equal(s.ranges[2].lo, SORA_IMAP_SEQ_STAR);
	assert_int_equal(s.ranges[3].lo, 9);
	assert_int_equal(s.ranges[3].hi, SORA_IMAP_SEQ_STAR);
	assert_int_equal(s.ranges[4].lo, 3);
	assert_int_equal(s.ranges[4].hi, 10);
	assert_int_equal(s.ranges[5].lo, 4294967295u);
	assert_true(sora_imap_seqset_contains(&s, 4, 100));
	assert_true(sora_imap_seqset_contains(&s, 100, 100));
	assert_true(sora_imap_seqset_contains(&s, 6, 8));   /* 10:3 */
	sora_imap_seqset_free(&s);

	assert_int_equal(sora_imap_seqset_parse(SORA_STR("*:5"), false, 10, &s, &err), 0);
	assert_int_equal(s.ranges[0].lo, 5);
	assert_int_equal(s.ranges[0].hi, SORA_IMAP_SEQ_STAR);
	/* "*" smaller than 5 in a short mailbox: still a range */
	assert_true(sora_imap_seqset_contains(&s, 4, 3));
	assert_false(sora_imap_seqset_contains(&s, 4, 4) && sora_imap_seqset_contains(&s, 2, 4));
	assert_false(sora_imap_seqset_contains(&s, 6, 5));
	sora_imap_seqset_free(&s);

	assert_int_equal(sora_imap_seqset_parse(SORA_STR("$"), true, 10, &s, &err), 0);
	assert_true(s.last_result);
	assert_int_equal(s.count, 0);
	sora_imap_seqset_free(&s);

	static const char *const bad[] = { "", "0", "0:5", "1:0", "4294967296", "99999999999999999999",
					   "1,", ",1", "1::2", "1:2:3", "a", "1 2", "01", "-1", "1,$",
					   "$", "**", "1:", ":1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		if (sora_imap_seqset_parse(sora_str_c(bad[i]), false, 10, &s, &err) != -1)
			fail_msg("accepted %s", bad[i]);
		assert_non_null(err);
		assert_null(s.ranges);
	}
	assert_int_equal(sora_imap_seqset_parse(SORA_STR("1,2,3"), false, 2, &s, &err), -1);
	assert_string_equal(err, "Sequence set too long.");
}

/* ------------------------------------------------------------ mUTF-7, UTF-8 */

static void mutf7_roundtrip(const char *utf8, const char *mutf7)
{
	struct sora_buf b;
	const char *err = NULL;

	sora_buf_init(&b, 0);
	assert_int_equal(sora_imap_utf8_to_mutf7(sora_str_c(utf8), &b, &err), 0);
	assert_int_equal(b.len, strlen(mutf7));
	assert_memory_equal(b.data, mutf7, b.len);
	b.len = 0;
	assert_int_equal(sora_imap_mutf7_to_utf8(sora_str_c(mutf7), &b, &err), 0);
	assert_int_equal(b.len, strlen(utf8));
	assert_memory_equal(b.data, utf8, b.len);
	sora_buf_free(&b);
}

static void test_mutf7(void **state)
{
	mutf7_roundtrip("INBOX", "INBOX");
	mutf7_roundtrip("", "");
	mutf7_roundtrip("A&B", "A&-B");
	mutf7_roundtrip("&", "&-");
	/* RFC 3501 §5.1.3 example */
	mutf7_roundtrip("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
			"~peter/mail/&U,BTFw-/&ZeVnLIqe-");
	mutf7_roundtrip("Entw\xc3\xbc" "rfe", "Entw&APw-rfe");
	mutf7_roundtrip("\xc3\xa4\xc3\xb6\xc3\xbc", "&AOQA9gD8-");
	mutf7_roundtrip("\xc3\xa4", "&AOQ-");
	/* a surrogate pair: U+1F600 */
	mutf7_roundtrip("x\xf0\x9f\x98\x80y", "x&2D3eAA-y");
	/* controls are encoded */
	mutf7_roundtrip("a\tb", "a&AAk-b");
	/* a long run of non-ASCII */
	{
		char u[3 * 200 + 1], *q = u;
		struct sora_buf b, back;
		const char *err;

		for (int i = 0; i < 200; i++) {
			memcpy(q, "\xe6\x97\xa5", 3);
			q += 3;
		}
		*q = 0;
		sora_buf_init(&b, 0);
		sora_buf_init(&back, 0);
		assert_int_equal(sora_imap_utf8_to_mutf7(sora_str_c(u), &b, &err), 0);
		assert_int_equal(sora_imap_mutf7_to_utf8(sora_buf_str(&b), &back, &err), 0);
		assert_int_equal(back.len, strlen(u));
		assert_memory_equal(back.data, u, back.len);
		sora_buf_free(&b);
		sora_buf_free(&back);
	}

	static const char *const bad[] = {
		"&",           /* unterminated */
		"&U,BTFw",     /* unterminated run */
		"&-&",
		"a\x80",       /* 8-bit */
		"a\tb",        /* control not encoded */
		"&AEE-",       /* 'A' needlessly encoded */
		"&AAA-",       /* U+0000 */
		"&U,BTFw-&ZeVnLIqe-", /* adjacent runs */
		"&U,BTF-",     /* non-zero / surplus padding bits */
		"&AO-",        /* truncated unit */
		"&AOQA9gD8A-", /* surplus base64 char */
		"&2D0-",       /* lone high surrogate */
		"&3gA-",       /* lone low surrogate */
		"&2D3YPQ-",    /* high surrogate followed by high */
		"&U/BTFw-",    /* '/' is not modified BASE64 */
		"&U=BTFw-",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sora_buf b;
		const char *err = NULL;

		sora_buf_init(&b, 0);
		if (sora_imap_mutf7_to_utf8(sora_str_c(bad[i]), &b, &err) != -1)
			fail_msg("accepted %s", bad[i]);
		assert_non_null(err);
		sora_buf_free(&b);
	}
	{
		struct sora_buf b;
		const char *err = NULL;

		sora_buf_init(&b, 0);
		assert_int_equal(sora_imap_utf8_to_mutf7(SORA_STR("a\xc3"), &b, &err), -1);
		assert_int_equal(sora_imap_utf8_to_mutf7(sora_str_make("a\0b", 3), &b, &err), -1);
		assert_int_equal(sora_imap_utf8_to_mutf7(SORA_STR("\xed\xa0\x80"), &b, &err), -1);
		sora_buf_free(&b);
	}
}

static void test_utf8_valid(void **state)
{
	assert_true(sora_imap_utf8_valid(SORA_STR("")));
	assert_true(sora_imap_utf8_valid(SORA_STR("abc \xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf")));
	assert_false(sora_imap_utf8_valid(SORA_STR("\x80")));
	assert_false(sora_imap_utf8_valid(SORA_STR("\xc0\xaf")));          /* overlong */
	assert_false(sora_imap_utf8_valid(SORA_STR("\xe0\x80\xaf")));      /* overlong */
	assert_false(sora_imap_utf8_valid(SORA_STR("\xed\xa0\x80")));      /* surrogate */
	assert_false(sora_imap_utf8_valid(SORA_STR("\xf4\x90\x80\x80")));  /* > U+10FFFF */
	assert_false(sora_imap_utf8_valid(SORA_STR("\xe6\x97")));          /* truncated */
	assert_false(sora_imap_utf8_valid(SORA_STR("\xff")));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_atoms_strings_lists),
		cmocka_unit_test(test_fetch_sections),
		cmocka_unit_test(test_section_tree),
		cmocka_unit_test(test_literals),
		cmocka_unit_test(test_preauth_literal_attack),
		cmocka_unit_test(test_streaming),
		cmocka_unit_test(test_refuse_literal),
		cmocka_unit_test(test_literal_limits),
		cmocka_unit_test(test_bad_literal_syntax),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_utf8_quoted),
		cmocka_unit_test(test_realistic),
		cmocka_unit_test(test_accessors),
		cmocka_unit_test(test_seqset),
		cmocka_unit_test(test_mutf7),
		cmocka_unit_test(test_utf8_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
