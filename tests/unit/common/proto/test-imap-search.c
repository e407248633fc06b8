/* SEARCH program parsing (common/proto/imap-search.c).
 *
 * Each case is a real command line run through the command parser, then
 * through sora_imap_search_parse(); the program is printed as a
 * one-line tree and compared. Run under ASan (make asan), the error cases
 * also check that a failed parse frees the partly built tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/core/buf.h"
#include "common/proto/imap-parser.h"
#include "common/proto/imap-search.h"

/* Parses "a SEARCH <keys>" (len bytes, NULs and literals allowed) and
 * hands its arguments to sora_imap_search_parse(). */
static int parse_n(const char *keys, size_t len, bool allow_return,
		   struct sora_imap_search_program *prog, const char **error)
{
	struct sora_imap_parser_params pp = sora_imap_parser_default_params;
	struct sora_imap_parser *p;
	const struct sora_imap_command *cmd;
	struct sora_buf line;
	size_t pos = 0, used;
	enum sora_imap_parse_result r;
	int ret;

	/* 8-bit quoted strings reach the search parser only with UTF8=ACCEPT;
	 * allow them so the UTF-8 checks can be driven without literals. */
	pp.utf8_quoted = true;
	/* Deep nesting cases test the search limit, not the parser's. */
	pp.max_depth = 100;
	p = sora_imap_parser_new(&pp);
	assert_non_null(p);
	sora_buf_init(&line, 0);
	sora_buf_append_str(&line, "a SEARCH ");
	sora_buf_append(&line, keys, len);
	sora_buf_append_str(&line, "\r\n");
	do {
		r = sora_imap_parser_feed(p, line.data + pos, line.len - pos, &used);
		pos += used;
	} while (r == SORA_IMAP_PARSE_LITERAL);
	assert_int_equal(r, SORA_IMAP_PARSE_COMMAND);
	assert_int_equal(pos, line.len);
	cmd = sora_imap_parser_command(p);
	*error = NULL;
	ret = sora_imap_search_parse(cmd->args, cmd->args_count, allow_return, prog, error);
	if (ret == 0) {
		assert_null(*error);
	} else {
		assert_true(ret == SORA_IMAP_SEARCH_SYNTAX || ret == SORA_IMAP_SEARCH_BADCHARSET);
		assert_non_null(*error);
		/* A failed parse leaves nothing behind. */
		assert_null(prog->root.children);
		assert_int_equal(prog->root.child_count, 0);
	}
	sora_buf_free(&line);
	sora_imap_parser_free(&p);
	return ret;
}

static int parse(const char *keys, bool allow_return, struct sora_imap_search_program *prog,
		 const char **error)
{
	return parse_n(keys, strlen(keys), allow_return, prog, error);
}

static void put_set(struct sora_buf *b, const struct sora_imap_seqset *set)
{
	if (set->last_result) {
		sora_buf_append_str(b, "$");
		return;
	}
	for (size_t i = 0; i < set->count; i++) {
		const struct sora_imap_seq_range *r = &set->ranges[i];

		if (i > 0)
			sora_buf_append_str(b, ",");
		if (r->lo == SORA_IMAP_SEQ_STAR)
			sora_buf_append_str(b, "*");
		else
			sora_buf_printf(b, "%u", (unsigned)r->lo);
		if (r->hi != r->lo) {
			if (r->hi == SORA_IMAP_SEQ_STAR)
				sora_buf_append_str(b, ":*");
			else
				sora_buf_printf(b, ":%u", (unsigned)r->hi);
		}
	}
}

static const char *type_name(enum sora_imap_search_type t)
{
	switch (t) {
	case SORA_SEARCH_AND: return "AND";
	case SORA_SEARCH_OR: return "OR";
	case SORA_SEARCH_NOT: return "NOT";
	case SORA_SEARCH_ALL: return "ALL";
	case SORA_SEARCH_SEQSET: return "SEQ";
	case SORA_SEARCH_UIDSET: return "UID";
	case SORA_SEARCH_FLAG: return "FLAG";
	case SORA_SEARCH_UNFLAG: return "UNFLAG";
	case SORA_SEARCH_KEYWORD: return "KEYWORD";
	case SORA_SEARCH_UNKEYWORD: return "UNKEYWORD";
	case SORA_SEARCH_NEW: return "NEW";
	case SORA_SEARCH_OLD: return "OLD";
	case SORA_SEARCH_RECENT: return "RECENT";
	case SORA_SEARCH_BEFORE: return "BEFORE";
	case SORA_SEARCH_ON: return "ON";
	case SORA_SEARCH_SINCE: return "SINCE";
	case SORA_SEARCH_SENTBEFORE: return "SENTBEFORE";
	case SORA_SEARCH_SENTON: return "SENTON";
	case SORA_SEARCH_SENTSINCE: return "SENTSINCE";
	case SORA_SEARCH_OLDER: return "OLDER";
	case SORA_SEARCH_YOUNGER: return "YOUNGER";
	case SORA_SEARCH_LARGER: return "LARGER";
	case SORA_SEARCH_SMALLER: return "SMALLER";
	case SORA_SEARCH_BCC: return "BCC";
	case SORA_SEARCH_CC: return "CC";
	case SORA_SEARCH_FROM: return "FROM";
	case SORA_SEARCH_TO: return "TO";
	case SORA_SEARCH_SUBJECT: return "SUBJECT";
	case SORA_SEARCH_BODY: return "BODY";
	case SORA_SEARCH_TEXT: return "TEXT";
	case SORA_SEARCH_HEADER: return "HEADER";
	case SORA_SEARCH_MODSEQ: return "MODSEQ";
	}
	return "?";
}

/* A key as TYPE, TYPE:value or TYPE(children...). */
static void put_key(struct sora_buf *b, const struct sora_imap_search_key *k)
{
	sora_buf_append_str(b, type_name(k->type));
	switch (k->type) {
	case SORA_SEARCH_AND:
	case SORA_SEARCH_OR:
	case SORA_SEARCH_NOT:
		sora_buf_append_str(b, "(");
		for (size_t i = 0; i < k->child_count; i++) {
			if (i > 0)
				sora_buf_append_str(b, " ");
			put_key(b, &k->children[i]);
		}
		sora_buf_append_str(b, ")");
		break;
	case SORA_SEARCH_SEQSET:
	case SORA_SEARCH_UIDSET:
		sora_buf_append_str(b, ":");
		put_set(b, &k->set);
		break;
	case SORA_SEARCH_FLAG:
	case SORA_SEARCH_UNFLAG:
		sora_buf_printf(b, ":%u", k->flag);
		break;
	case SORA_SEARCH_BEFORE:
	case SORA_SEARCH_ON:
	case SORA_SEARCH_SINCE:
	case SORA_SEARCH_SENTBEFORE:
	case SORA_SEARCH_SENTON:
	case SORA_SEARCH_SENTSINCE:
		sora_buf_printf(b, ":%lld", (long long)(int64_t)k->number);
		break;
	case SORA_SEARCH_OLDER:
	case SORA_SEARCH_YOUNGER:
	case SORA_SEARCH_LARGER:
	case SORA_SEARCH_SMALLER:
	case SORA_SEARCH_MODSEQ:
		sora_buf_printf(b, ":%llu", (unsigned long long)k->number);
		break;
	case SORA_SEARCH_HEADER:
		sora_buf_printf(b, ":%s=\"%s\"", k->header, k->str);
		break;
	case SORA_SEARCH_KEYWORD:
	case SORA_SEARCH_UNKEYWORD:
	case SORA_SEARCH_BCC:
	case SORA_SEARCH_CC:
	case SORA_SEARCH_FROM:
	case SORA_SEARCH_TO:
	case SORA_SEARCH_SUBJECT:
	case SORA_SEARCH_BODY:
	case SORA_SEARCH_TEXT:
		sora_buf_printf(b, ":\"%s\"", k->str);
		break;
	default:
		break;
	}
}

static char *describe(const struct sora_imap_search_program *prog)
{
	struct sora_buf b;

	sora_buf_init(&b, 0);
	if (prog->esearch)
		sora_buf_printf(&b, "RETURN:%u ", prog->return_opts);
	if (prog->return_opts & SORA_SEARCH_RETURN_PARTIAL)
		sora_buf_printf(&b, "PARTIAL:%u:%u ", prog->partial_lo, prog->partial_hi);
	if (prog->has_modseq)
		sora_buf_append_str(&b, "modseq ");
	if (prog->uses_saved)
		sora_buf_append_str(&b, "saved ");
	put_key(&b, &prog->root);
	sora_buf_append(&b, "", 1);
	return b.data;
}

static void ok_ret(const char *keys, bool allow_return, const char *expect)
{
	struct sora_imap_search_program prog;
	const char *error;
	char *d;

	if (parse(keys, allow_return, &prog, &error) != 0)
		fail_msg("%s: unexpected error: %s", keys, error);
	d = describe(&prog);
	if (strcmp(d, expect) != 0)
		fail_msg("%s:\n got    %s\n expect %s", keys, d, expect);
	free(d);
	sora_imap_search_free(&prog);
	/* Freeing clears the program, so a second free is harmless. */
	assert_null(prog.root.children);
	sora_imap_search_free(&prog);
}

static void ok(const char *keys, const char *expect)
{
	ok_ret(keys, false, expect);
}

static void bad_n(const char *keys, size_t len, bool allow_return, int expect_ret,
		  const char *expect_error)
{
	struct sora_imap_search_program prog;
	const char *error;
	int ret = parse_n(keys, len, allow_return, &prog, &error);

	if (ret == 0) {
		sora_imap_search_free(&prog);
		fail_msg("%s: parsed, expected an error", keys);
	}
	if (ret != expect_ret)
		fail_msg("%s: returned %d, expected %d", keys, ret, expect_ret);
	if (expect_error != NULL && strcmp(error, expect_error) != 0)
		fail_msg("%s: error \"%s\", expected \"%s\"", keys, error, expect_error);
}

static void bad(const char *keys, const char *expect_error)
{
	bad_n(keys, strlen(keys), false, SORA_IMAP_SEARCH_SYNTAX, expect_error);
}

static void test_flag_keys(void **state)
{
	ok("ALL", "AND(ALL)");
	ok("ANSWERED DELETED DRAFT FLAGGED SEEN",
	   "AND(FLAG:2 FLAG:8 FLAG:16 FLAG:4 FLAG:1)");
	ok("unanswered undeleted undraft unflagged unseen",
	   "AND(UNFLAG:2 UNFLAG:8 UNFLAG:16 UNFLAG:4 UNFLAG:1)");
	ok("NEW OLD RECENT", "AND(NEW OLD RECENT)");
	ok("KEYWORD $Forwarded UNKEYWORD \"Junk\"",
	   "AND(KEYWORD:\"$Forwarded\" UNKEYWORD:\"Junk\")");
	bad("KEYWORD \"a b\"", "Invalid SEARCH keyword.");
	bad("KEYWORD \\Seen", "Invalid SEARCH keyword.");
	bad("KEYWORD (a)", "Invalid SEARCH keyword.");
	bad("KEYWORD \"\"", "Invalid SEARCH keyword.");
}

static void test_string_keys(void **state)
{
	ok("BCC a CC b FROM c TO d SUBJECT \"hello world\" BODY {3}\r\nx y TEXT NIL",
	   "AND(BCC:\"a\" CC:\"b\" FROM:\"c\" TO:\"d\" SUBJECT:\"hello world\" BODY:\"x y\" "
	   "TEXT:\"NIL\")");
	ok("HEADER Message-ID <abc@x> HEADER X-Spam \"\"",
	   "AND(HEADER:Message-ID=\"<abc@x>\" HEADER:X-Spam=\"\")");
	ok("SUBJECT \"caf\xc3\xa9\"", "AND(SUBJECT:\"caf\xc3\xa9\")");
	ok("CHARSET utf-8 SUBJECT {5+}\r\ncaf\xc3\xa9", "AND(SUBJECT:\"caf\xc3\xa9\")");
	ok("CHARSET US-ASCII FROM bob", "AND(FROM:\"bob\")");
	bad("CHARSET US-ASCII SUBJECT \"caf\xc3\xa9\"", "SEARCH string is not US-ASCII.");
	bad("SUBJECT {2+}\r\n\xc3\x28", "SEARCH string is not valid UTF-8.");
	bad("CHARSET UTF-8 BODY {4}\r\n\xed\xa0\x80x", "SEARCH string is not valid UTF-8.");
	{
		static const char nul[] = "FROM {3+}\r\na\0b";

		bad_n(nul, sizeof(nul) - 1, false, SORA_IMAP_SEARCH_SYNTAX,
		      "SEARCH string contains a NUL byte.");
	}
	bad("FROM (a)", "SEARCH key needs a string argument.");
	bad("HEADER \"\" x", "Invalid SEARCH header field name.");
	bad("HEADER \"a:b\" x", "Invalid SEARCH header field name.");
	bad("HEADER \"a b\" x", "Invalid SEARCH header field name.");
	bad("HEADER X-Spam", "Missing SEARCH key argument.");
	bad("HEADER X-Spam (a)", "SEARCH key needs a string argument.");
}

static void test_dates(void **state)
{
	ok("BEFORE 1-Feb-1994", "AND(BEFORE:8797)");
	ok("ON \"01-feb-1994\"", "AND(ON:8797)");
	ok("SINCE 1-JAN-1970", "AND(SINCE:0)");
	ok("SENTBEFORE 29-Feb-2000", "AND(SENTBEFORE:11016)");
	ok("SENTON 31-Dec-1969", "AND(SENTON:-1)");
	ok("SENTSINCE 29-Feb-2024", "AND(SENTSINCE:19782)");
	ok("SINCE 31-Dec-9999 BEFORE 1-Jan-0001", "AND(SINCE:2932896 BEFORE:-719162)");
	bad("SINCE 29-Feb-1900", "Invalid SEARCH date.");
	bad("SINCE 29-Feb-2023", "Invalid SEARCH date.");
	bad("SINCE 31-Apr-2020", "Invalid SEARCH date.");
	bad("SINCE 0-Jan-2020", "Invalid SEARCH date.");
	bad("SINCE 001-Jan-2020", "Invalid SEARCH date.");
	bad("SINCE 1-Jam-2020", "Invalid SEARCH date.");
	bad("SINCE 1-Jan-20", "Invalid SEARCH date.");
	bad("SINCE 1-Jan-20200", "Invalid SEARCH date.");
	bad("SINCE 1-Jan-202x", "Invalid SEARCH date.");
	bad("SINCE 1/Jan/2020", "Invalid SEARCH date.");
	bad("SINCE -Jan-2020", "Invalid SEARCH date.");
	bad("SINCE 2020-01-01", "Invalid SEARCH date.");
	bad("SINCE {10}\r\n1-Jan-2020", "Invalid SEARCH date.");
	bad("SINCE", "Missing SEARCH key argument.");
}

static void test_date_parse(void **state)
{
	int64_t day;

	assert_int_equal(sora_imap_date_parse(SORA_STR("1-Feb-1994"), &day), 0);
	assert_int_equal(day, 8797);
	assert_int_equal(sora_imap_date_parse(SORA_STR("15-dEc-2024"), &day), 0);
	assert_int_equal(day, 20072);
	assert_int_equal(sora_imap_date_parse(SORA_STR(""), &day), -1);
	assert_int_equal(sora_imap_date_parse(SORA_STR("1-Feb-1994 "), &day), -1);
	assert_int_equal(sora_imap_date_parse(SORA_STR("1-Feb-1994\0"), &day), -1);
	assert_int_equal(sora_imap_date_parse(SORA_STR("99-Feb-1994"), &day), -1);
}

static void test_numbers(void **state)
{
	ok("LARGER 0 SMALLER 9223372036854775807",
	   "AND(LARGER:0 SMALLER:9223372036854775807)");
	ok("OLDER 3600 YOUNGER 4294967295", "AND(OLDER:3600 YOUNGER:4294967295)");
	bad("LARGER 9223372036854775808", "Invalid SEARCH number.");
	bad("LARGER 99999999999999999999999", "Invalid SEARCH number.");
	bad("LARGER -1", "Invalid SEARCH number.");
	bad("LARGER 1k", "Invalid SEARCH number.");
	bad("LARGER \"5\"", "Invalid SEARCH number.");
	bad("SMALLER", "Missing SEARCH key argument.");
	bad("OLDER 0", "Invalid SEARCH number.");
	bad("YOUNGER 4294967296", "Invalid SEARCH number.");
}

static void test_sets(void **state)
{
	ok("1:5,7,*", "AND(SEQ:1:5,7,*)");
	ok("$", "saved AND(SEQ:$)");
	ok("UID 10:*", "AND(UID:10:*)");
	ok("UID $ 2", "saved AND(UID:$ SEQ:2)");
	ok("*:4", "AND(SEQ:4:*)");
	bad("0", "Sequence numbers start at 1.");
	bad("1:", "Invalid sequence set.");
	bad("4294967296", "Sequence number out of range.");
	bad("1,$", NULL);
	bad("UID", "Missing SEARCH key argument.");
	bad("UID \"1\"", "Invalid SEARCH sequence set.");
	bad("UID abc", "Invalid sequence set.");
}

static void test_modseq(void **state)
{
	ok("MODSEQ 0", "modseq AND(MODSEQ:0)");
	ok("MODSEQ 9223372036854775807", "modseq AND(MODSEQ:9223372036854775807)");
	ok("MODSEQ \"/flags/\\\\draft\" all 620162338",
	   "modseq AND(MODSEQ:620162338)");
	ok("MODSEQ \"/flags/$Junk\" PRIV 5 SEEN", "modseq AND(MODSEQ:5 FLAG:1)");
	ok("MODSEQ \"/FLAGS/\\\\X-Ext\" shared 5", "modseq AND(MODSEQ:5)");
	bad("MODSEQ", "Missing SEARCH key argument.");
	bad("MODSEQ 9223372036854775808", "Invalid SEARCH number.");
	bad("MODSEQ x", "Invalid SEARCH number.");
	bad("MODSEQ \"/flags/\\\\seen\" 5", "Missing SEARCH key argument.");
	bad("MODSEQ \"/flags/\\\\seen\" public 5", "Invalid MODSEQ entry type.");
	bad("MODSEQ \"/flags/\\\\seen\" \"all\" 5", "Invalid MODSEQ entry type.");
	bad("MODSEQ \"/annotate/x\" all 5", "Invalid MODSEQ entry name.");
	bad("MODSEQ \"/flags/\" all 5", "Invalid MODSEQ entry name.");
	bad("MODSEQ \"/flags/a b\" all 5", "Invalid MODSEQ entry name.");
	bad("MODSEQ \"/flags/\\\\\" all 5", "Invalid MODSEQ entry name.");
	bad("MODSEQ \"/flags/\\\\seen\" all x", "Invalid SEARCH number.");
	bad("MODSEQ {12}\r\n/flags/\\seen all 5", "Invalid SEARCH number.");
}

static void test_or_not_lists(void **state)
{
	ok("OR SEEN FLAGGED", "AND(OR(FLAG:1 FLAG:4))");
	ok("NOT SEEN", "AND(NOT(FLAG:1))");
	ok("OR (SEEN FROM a) NOT OR 1 2", "AND(OR(AND(FLAG:1 FROM:\"a\") NOT(OR(SEQ:1 SEQ:2))))");
	ok("(ALL) ((DELETED))", "AND(AND(ALL) AND(AND(FLAG:8)))");
	ok("or or seen deleted draft", "AND(OR(OR(FLAG:1 FLAG:8) FLAG:16))");
	bad("OR SEEN", "Missing SEARCH key argument.");
	bad("OR", "Missing SEARCH key argument.");
	bad("NOT", "Missing SEARCH key argument.");
	bad("OR SEEN FOO", "Unknown SEARCH key.");
	bad("NOT (SEEN FROM)", "Missing SEARCH key argument.");
	bad("()", "Empty SEARCH key list.");
	bad("SEEN ()", "Empty SEARCH key list.");
}

static void test_limits(void **state)
{
	struct sora_buf b;
	int i;

	/* Depth: a top-level key is at depth 1, each NOT adds one. */
	sora_buf_init(&b, 0);
	for (i = 0; i < SORA_IMAP_SEARCH_DEPTH_MAX - 1; i++)
		sora_buf_append_str(&b, "NOT ");
	sora_buf_append_str(&b, "SEEN");
	sora_buf_append(&b, "", 1);
	{
		struct sora_imap_search_program prog;
		const char *error;

		assert_int_equal(parse(b.data, false, &prog, &error), 0);
		sora_imap_search_free(&prog);
	}
	b.len = 0;
	for (i = 0; i < SORA_IMAP_SEARCH_DEPTH_MAX; i++)
		sora_buf_append_str(&b, "NOT ");
	sora_buf_append_str(&b, "SEEN");
	sora_buf_append(&b, "", 1);
	bad(b.data, "SEARCH nested too deeply.");
	/* Lists nest the same way (the parser allows more in this test). */
	b.len = 0;
	for (i = 0; i < SORA_IMAP_SEARCH_DEPTH_MAX + 5; i++)
		sora_buf_append_str(&b, "(");
	sora_buf_append_str(&b, "SEEN");
	for (i = 0; i < SORA_IMAP_SEARCH_DEPTH_MAX + 5; i++)
		sora_buf_append_str(&b, ")");
	sora_buf_append(&b, "", 1);
	bad(b.data, "SEARCH nested too deeply.");

	/* Key count: every key, list, OR and NOT counts. */
	b.len = 0;
	for (i = 0; i < SORA_IMAP_SEARCH_KEYS_MAX; i++)
		sora_buf_append_str(&b, "SEEN ");
	sora_buf_append(&b, "", 1);
	{
		struct sora_imap_search_program prog;
		const char *error;

		assert_int_equal(parse(b.data, false, &prog, &error), 0);
		assert_int_equal(prog.root.child_count, SORA_IMAP_SEARCH_KEYS_MAX);
		sora_imap_search_free(&prog);
	}
	b.len--;
	sora_buf_append_str(&b, "DRAFT");
	sora_buf_append(&b, "", 1);
	bad(b.data, "Too many SEARCH keys.");
	b.len = 0;
	for (i = 0; i < SORA_IMAP_SEARCH_KEYS_MAX / 2; i++)
		sora_buf_append_str(&b, "NOT SEEN ");
	sora_buf_append_str(&b, "ALL");
	sora_buf_append(&b, "", 1);
	bad(b.data, "Too many SEARCH keys.");
	sora_buf_free(&b);
}

static void test_return(void **state)
{
	ok_ret("RETURN (MIN MAX) SEEN", true, "RETURN:3 AND(FLAG:1)");
	ok_ret("return (all count save) 1:*", true, "RETURN:28 AND(SEQ:1:*)");
	/* RFC 9051: RETURN () means ALL. */
	ok_ret("RETURN () SEEN", true, "RETURN:4 AND(FLAG:1)");
	ok_ret("RETURN (COUNT) CHARSET UTF-8 TEXT x", true, "RETURN:8 AND(TEXT:\"x\")");
	ok_ret("SEEN", true, "AND(FLAG:1)");
	bad("RETURN (MIN) SEEN", "SEARCH RETURN is not supported.");
	bad_n("RETURN (FOO) SEEN", 17, true, SORA_IMAP_SEARCH_SYNTAX,
	      "Unknown SEARCH RETURN option.");
	bad_n("RETURN MIN SEEN", 15, true, SORA_IMAP_SEARCH_SYNTAX,
	      "RETURN needs a list of options.");
	bad_n("RETURN", 6, true, SORA_IMAP_SEARCH_SYNTAX, "RETURN needs a list of options.");
	bad_n("RETURN (MIN)", 12, true, SORA_IMAP_SEARCH_SYNTAX, "Missing SEARCH keys.");
	bad_n("RETURN ((MIN)) ALL", 18, true, SORA_IMAP_SEARCH_SYNTAX,
	      "Invalid SEARCH RETURN option.");
	/* RETURN comes before CHARSET. */
	bad_n("CHARSET UTF-8 RETURN (MIN) ALL", 30, true, SORA_IMAP_SEARCH_SYNTAX,
	      "Unknown SEARCH key.");
}

/* RFC 5267 §4: UPDATE, CONTEXT, PARTIAL. */
static void test_return_context(void **state)
{
	/* UPDATE 32, CONTEXT 64, PARTIAL 128. */
	ok_ret("RETURN (UPDATE) SEEN", true, "RETURN:32 AND(FLAG:1)");
	ok_ret("RETURN (update context count) SEEN", true, "RETURN:104 AND(FLAG:1)");
	ok_ret("RETURN (UPDATE ALL) SEEN", true, "RETURN:36 AND(FLAG:1)");
	ok_ret("RETURN (PARTIAL 1:500) ALL", true, "RETURN:128 PARTIAL:1:500 AND(ALL)");
	/* A reversed range is the same range. */
	ok_ret("RETURN (partial 500:400 MIN) ALL", true, "RETURN:129 PARTIAL:400:500 AND(ALL)");
	ok_ret("RETURN (PARTIAL 4294967295:4294967295) ALL", true,
	       "RETURN:128 PARTIAL:4294967295:4294967295 AND(ALL)");
	ok_ret("RETURN (COUNT PARTIAL 2:2 UPDATE SAVE) SEEN", true,
	       "RETURN:184 PARTIAL:2:2 AND(FLAG:1)");
	/* An option given twice is the same as once (not PARTIAL). */
	ok_ret("RETURN (UPDATE UPDATE) SEEN", true, "RETURN:32 AND(FLAG:1)");

	bad_n("RETURN (PARTIAL 1) ALL", 22, true, SORA_IMAP_SEARCH_SYNTAX,
	      "PARTIAL needs a range (low:high).");
	bad_n("RETURN (PARTIAL 1:*) ALL", 24, true, SORA_IMAP_SEARCH_SYNTAX,
	      "Invalid PARTIAL range.");
	bad_n("RETURN (PARTIAL *:1) ALL", 24, true, SORA_IMAP_SEARCH_SYNTAX,
	      "Invalid PARTIAL range.");
	bad_n("RETURN (PARTIAL 0:5) ALL", 24, true, SORA_IMAP_SEARCH_SYNTAX,
	      "Invalid PARTIAL range.");
	bad_n("RETURN (PARTIAL 1:4294967296) ALL", 33, true, SORA_IMAP_SEARCH_SYNTAX,
	      "Invalid PARTIAL range.");
	bad_n("RETURN (PARTIAL 1:2:3) ALL", 26, true, SORA_IMAP_SEARCH_SYNTAX,
	      "Invalid PARTIAL range.");
	bad_n("RETURN (PARTIAL :5) ALL", 23, true, SORA_IMAP_SEARCH_SYNTAX,
	      "Invalid PARTIAL range.");
	bad_n("RETURN (PARTIAL) ALL", 20, true, SORA_IMAP_SEARCH_SYNTAX, "PARTIAL needs a range.");
	bad_n("RETURN (PARTIAL (1:2)) ALL", 26, true, SORA_IMAP_SEARCH_SYNTAX,
	      "PARTIAL needs a range.");
	bad_n("RETURN (PARTIAL \"1:2\") ALL", 26, true, SORA_IMAP_SEARCH_SYNTAX,
	      "PARTIAL needs a range.");
	bad_n("RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL", 36, true, SORA_IMAP_SEARCH_SYNTAX,
	      "Only one PARTIAL is allowed.");
	bad_n("RETURN (PARTIAL 1:2 ALL) ALL", 28, true, SORA_IMAP_SEARCH_SYNTAX,
	      "PARTIAL and ALL cannot be combined.");
	bad_n("RETURN (ALL PARTIAL 1:2) ALL", 28, true, SORA_IMAP_SEARCH_SYNTAX,
	      "PARTIAL and ALL cannot be combined.");
	bad_n("RETURN (UPDATES) ALL", 20, true, SORA_IMAP_SEARCH_SYNTAX,
	      "Unknown SEARCH RETURN option.");
	/* Without the extension advertised, RETURN is refused as a whole. */
	bad("RETURN (UPDATE) SEEN", "SEARCH RETURN is not supported.");
}

/* The command parser is fed one byte at a time (as a slow client sends
 * it): the program must come out the same as from one piece. */
static void test_return_context_bytewise(void **state)
{
	static const char *const lines[] = {
		"RETURN (UPDATE PARTIAL 10:1) OR SEEN SUBJECT s33",
		"RETURN (CONTEXT COUNT) SUBJECT {3}\r\nabc",
		"RETURN (PARTIAL 2:4) 1:2,4:5",
	};

	for (size_t l = 0; l < sizeof(lines) / sizeof(lines[0]); l++) {
		struct sora_imap_parser_params pp = sora_imap_parser_default_params;
		struct sora_imap_parser *p = sora_imap_parser_new(&pp);
		struct sora_imap_search_program whole, piece;
		const struct sora_imap_command *cmd = NULL;
		struct sora_buf line;
		const char *error;
		char *a, *b;

		assert_non_null(p);
		sora_buf_init(&line, 0);
		sora_buf_printf(&line, "a SEARCH %s\r\n", lines[l]);
		for (size_t i = 0; i < line.len && cmd == NULL; i++) {
			size_t off = 0;

			/* An event may stop short of the byte: offer it again. */
			while (off < 1 && cmd == NULL) {
				size_t used = 0;
				enum sora_imap_parse_result r =
					sora_imap_parser_feed(p, line.data + i + off, 1 - off, &used);

				off += used;
				if (r == SORA_IMAP_PARSE_COMMAND) {
					cmd = sora_imap_parser_command(p);
					assert_int_equal(i + off, line.len);
				} else {
					assert_true(r == SORA_IMAP_PARSE_NEED_MORE ||
						    r == SORA_IMAP_PARSE_LITERAL ||
						    r == SORA_IMAP_PARSE_LITERAL_DATA);
				}
			}
		}
		assert_non_null(cmd);
		if (sora_imap_search_parse(cmd->args, cmd->args_count, true, &piece, &error) != 0)
			fail_msg("%s (bytewise): %s", lines[l], error);
		if (parse(lines[l], true, &whole, &error) != 0)
			fail_msg("%s: %s", lines[l], error);
		a = describe(&whole);
		b = describe(&piece);
		assert_string_equal(a, b);
		free(a);
		free(b);
		sora_imap_search_free(&whole);
		sora_imap_search_free(&piece);
		sora_buf_free(&line);
		sora_imap_parser_free(&p);
	}
}

static void test_charset(void **state)
{
	ok("CHARSET \"utf-8\" ALL", "AND(ALL)");
	ok("CHARSET us-ascii ALL", "AND(ALL)");
	bad_n("CHARSET ISO-8859-1 ALL", 22, false, SORA_IMAP_SEARCH_BADCHARSET, NULL);
	bad_n("CHARSET UTF8 ALL", 16, false, SORA_IMAP_SEARCH_BADCHARSET, NULL);
	bad("CHARSET", "CHARSET needs a charset name.");
	bad("CHARSET (UTF-8) ALL", "CHARSET needs a charset name.");
	bad("CHARSET UTF-8", "Missing SEARCH keys.");
}

static void test_bad_keys(void **state)
{
	struct sora_imap_search_program prog;
	const char *error = NULL;

	bad("FOO", "Unknown SEARCH key.");
	bad("SEEN BAR 1", "Unknown SEARCH key.");
	bad("\"SEEN\"", "Invalid SEARCH key.");
	bad("{4}\r\nSEEN", "Invalid SEARCH key.");
	bad("NIL", "Invalid SEARCH key.");
	bad("OR SEEN", "Missing SEARCH key argument.");
	assert_int_equal(sora_imap_search_parse(NULL, 0, true, &prog, &error),
			 SORA_IMAP_SEARCH_SYNTAX);
	assert_string_equal(error, "Missing SEARCH keys.");

	/* Arguments built by hand may hold an empty atom, which the command
	 * parser never produces: refused, not read past its end. */
	{
		struct sora_imap_arg empty;

		memset(&empty, 0, sizeof(empty));
		empty.type = SORA_IMAP_ARG_ATOM;
		empty.str = sora_str_make("", 0);
		assert_int_equal(sora_imap_search_parse(&empty, 1, false, &prog, &error),
				 SORA_IMAP_SEARCH_SYNTAX);
		assert_string_equal(error, "Invalid SEARCH key.");
	}
}

/* Keys in every position of a larger program, so a partly built tree is
 * freed on an error deep inside it (ASan reports a leak otherwise). */
static void test_error_frees(void **state)
{
	bad("FROM a (SUBJECT b OR (TO c UID 1:*) NOT HEADER X y) KEYWORD k SINCE 1-Foo-2000",
	    "Invalid SEARCH date.");
	bad("OR (FROM a BCC b) (CC c MODSEQ \"/flags/x\" all 1 LARGER x)", "Invalid SEARCH number.");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flag_keys),
		cmocka_unit_test(test_string_keys),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_date_parse),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_sets),
		cmocka_unit_test(test_modseq),
		cmocka_unit_test(test_or_not_lists),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_return),
		cmocka_unit_test(test_return_context),
		cmocka_unit_test(test_return_context_bytewise),
		cmocka_unit_test(test_charset),
		cmocka_unit_test(test_bad_keys),
		cmocka_unit_test(test_error_frees),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
