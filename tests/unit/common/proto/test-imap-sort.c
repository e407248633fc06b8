/* SORT program parsing (common/proto/imap-search.h, sora_imap_sort_parse):
 * RFC 5256 sort criteria, the required charset, ESORT's RETURN options
 * (RFC 5267 §3) and the RFC 5957 DISPLAY keys.
 *
 * Each case is a real command line run through the command parser, then
 * through the SORT parser; the program is printed as a one-line summary
 * and compared. Lines are also fed one byte at a time and must give the
 * same program. Under ASan the error cases check that a failed parse
 * frees what it built. */
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

#define ALL_FLAGS (SORA_IMAP_SORT_ALLOW_RETURN | SORA_IMAP_SORT_ALLOW_DISPLAY)

/* "a SORT <args>\r\n" through the command parser, in one piece
 * (bytewise false) or one byte per call. Returns the parser, which owns
 * *cmd_r. */
static struct sora_imap_parser *command(const char *args, bool bytewise,
					const struct sora_imap_command **cmd_r)
{
	struct sora_imap_parser_params pp = sora_imap_parser_default_params;
	struct sora_imap_parser *p = sora_imap_parser_new(&pp);
	struct sora_buf line;
	size_t pos = 0;

	assert_non_null(p);
	*cmd_r = NULL;
	sora_buf_init(&line, 0);
	sora_buf_printf(&line, "a SORT %s\r\n", args);
	while (pos < line.len && *cmd_r == NULL) {
		size_t want = bytewise ? 1 : line.len - pos, used = 0;
		enum sora_imap_parse_result r = sora_imap_parser_feed(p, line.data + pos, want, &used);

		pos += used;
		if (r == SORA_IMAP_PARSE_COMMAND) {
			*cmd_r = sora_imap_parser_command(p);
			assert_int_equal(pos, line.len);
		} else {
			assert_true(r == SORA_IMAP_PARSE_NEED_MORE || r == SORA_IMAP_PARSE_LITERAL ||
				    r == SORA_IMAP_PARSE_LITERAL_DATA);
		}
	}
	assert_non_null(*cmd_r);
	sora_buf_free(&line);
	return p;
}

static const char *key_name(enum sora_imap_sort_key k)
{
	static const char *const names[] = { "?", "ARRIVAL", "CC", "DATE", "FROM", "SIZE",
					     "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO" };

	return (size_t)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

/* "-DATE SUBJECT | ret=5 esearch | keys=2" */
static char *describe(const struct sora_imap_sort_program *prog)
{
	struct sora_buf b;

	sora_buf_init(&b, 0);
	for (size_t i = 0; i < prog->count; i++)
		sora_buf_printf(&b, "%s%s%s", i > 0 ? " " : "", prog->criteria[i].reverse ? "-" : "",
				key_name(prog->criteria[i].key));
	sora_buf_printf(&b, " | ret=%u%s | keys=%zu", prog->search.return_opts,
			prog->search.esearch ? " esearch" : "", prog->search.root.child_count);
	sora_buf_append(&b, "", 1);
	return b.data;
}

static int parse(const char *args, unsigned int flags, bool bytewise,
		 struct sora_imap_sort_program *prog, const char **error)
{
	const struct sora_imap_command *cmd;
	struct sora_imap_parser *p = command(args, bytewise, &cmd);
	int ret;

	*error = NULL;
	ret = sora_imap_sort_parse(cmd->args, cmd->args_count, flags, prog, error);
	if (ret == 0) {
		assert_null(*error);
		assert_true(prog->count >= 1 && prog->count <= SORA_IMAP_SORT_CRITERIA_MAX);
		assert_int_equal(prog->search.root.type, SORA_SEARCH_AND);
	} else {
		assert_true(ret == SORA_IMAP_SEARCH_SYNTAX || ret == SORA_IMAP_SEARCH_BADCHARSET);
		assert_non_null(*error);
		/* A failed parse leaves nothing behind. */
		assert_null(prog->search.root.children);
		assert_int_equal(prog->count, 0);
	}
	sora_imap_parser_free(&p);
	return ret;
}

/* Parses args whole and byte by byte; both must give want. */
static void ok_flags(const char *args, unsigned int flags, const char *want)
{
	for (int bytewise = 0; bytewise < 2; bytewise++) {
		struct sora_imap_sort_program prog;
		const char *error;
		char *got;

		if (parse(args, flags, bytewise, &prog, &error) != 0)
			fail_msg("%s%s: %s", args, bytewise ? " (bytewise)" : "", error);
		got = describe(&prog);
		if (strcmp(got, want) != 0)
			fail_msg("%s%s: got \"%s\", want \"%s\"", args, bytewise ? " (bytewise)" : "",
				 got, want);
		free(got);
		sora_imap_sort_free(&prog);
		assert_null(prog.search.root.children);
	}
}

static void ok(const char *args, const char *want)
{
	ok_flags(args, ALL_FLAGS, want);
}

static void bad_flags(const char *args, unsigned int flags, int want_ret, const char *want_error)
{
	struct sora_imap_sort_program prog;
	const char *error;
	int ret = parse(args, flags, false, &prog, &error);

	if (ret != want_ret)
		fail_msg("%s: returned %d, want %d", args, ret, want_ret);
	if (want_error != NULL && strcmp(error, want_error) != 0)
		fail_msg("%s: error \"%s\", want \"%s\"", args, error, want_error);
}

static void bad(const char *args, const char *want_error)
{
	bad_flags(args, ALL_FLAGS, SORA_IMAP_SEARCH_SYNTAX, want_error);
}

static void test_criteria(void **state)
{
	ok("(SUBJECT) UTF-8 ALL", "SUBJECT | ret=0 | keys=1");
	ok("(reverse date Size) us-ascii SEEN FROM x", "-DATE SIZE | ret=0 | keys=2");
	ok("(ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO) UTF-8 ALL",
	   "ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO | ret=0 | keys=1");
	ok("(REVERSE DISPLAYTO REVERSE ARRIVAL) \"UTF-8\" ALL",
	   "-DISPLAYTO -ARRIVAL | ret=0 | keys=1");
	/* The same key twice is allowed (and pointless). */
	ok("(DATE DATE) UTF-8 ALL", "DATE DATE | ret=0 | keys=1");
	/* The search part is a whole SEARCH program. */
	ok("(SIZE) UTF-8 OR (FROM a TO b) NOT UID 1:* $", "SIZE | ret=0 | keys=2");
	ok("(SIZE) UTF-8 SUBJECT {3}\r\nabc", "SIZE | ret=0 | keys=1");
	/* Sixteen criteria is the limit. */
	ok("(DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE SIZE) UTF-8 ALL",
	   "DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE SIZE | ret=0 | keys=1");
	bad("(DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE) UTF-8 ALL",
	    "Too many sort criteria.");
}

static void test_return(void **state)
{
	char want[64];

	snprintf(want, sizeof(want), "ARRIVAL | ret=%u esearch | keys=1",
		 SORA_SEARCH_RETURN_MIN | SORA_SEARCH_RETURN_MAX | SORA_SEARCH_RETURN_COUNT);
	ok("RETURN (MIN MAX COUNT) (ARRIVAL) UTF-8 1:5", want);
	snprintf(want, sizeof(want), "ARRIVAL | ret=%u esearch | keys=1", SORA_SEARCH_RETURN_ALL);
	ok("RETURN () (ARRIVAL) UTF-8 ALL", want);
	ok("return (all) (ARRIVAL) UTF-8 ALL", want);
	snprintf(want, sizeof(want), "-SUBJECT | ret=%u esearch | keys=1", SORA_SEARCH_RETURN_SAVE);
	ok("RETURN (SAVE) (REVERSE SUBJECT) UTF-8 ALL", want);
	/* CONTEXT=SORT's options are not offered. */
	bad("RETURN (PARTIAL 1:2) (ARRIVAL) UTF-8 ALL",
	    "SORT RETURN supports MIN, MAX, ALL, COUNT and SAVE only.");
	bad("RETURN (UPDATE) (ARRIVAL) UTF-8 ALL",
	    "SORT RETURN supports MIN, MAX, ALL, COUNT and SAVE only.");
	bad("RETURN (CONTEXT COUNT) (ARRIVAL) UTF-8 ALL",
	    "SORT RETURN supports MIN, MAX, ALL, COUNT and SAVE only.");
	bad("RETURN (FOO) (ARRIVAL) UTF-8 ALL", "Unknown SEARCH RETURN option.");
	bad("RETURN MIN (ARRIVAL) UTF-8 ALL", "RETURN needs a list of options.");
	bad("RETURN", "RETURN needs a list of options.");
	/* Without ESORT, RETURN is refused; without SORT=DISPLAY, its keys. */
	bad_flags("RETURN (MIN) (ARRIVAL) UTF-8 ALL", SORA_IMAP_SORT_ALLOW_DISPLAY,
		  SORA_IMAP_SEARCH_SYNTAX, "SORT RETURN is not supported.");
	bad_flags("(DISPLAYFROM) UTF-8 ALL", SORA_IMAP_SORT_ALLOW_RETURN, SORA_IMAP_SEARCH_SYNTAX,
		  "Unknown sort key.");
	ok_flags("(FROM) UTF-8 ALL", 0, "FROM | ret=0 | keys=1");
}

static void test_charset(void **state)
{
	bad_flags("(SUBJECT) ISO-8859-1 ALL", ALL_FLAGS, SORA_IMAP_SEARCH_BADCHARSET, NULL);
	bad_flags("(SUBJECT) UTF8 ALL", ALL_FLAGS, SORA_IMAP_SEARCH_BADCHARSET, NULL);
	/* The charset is required: "ALL" in its place is an unknown charset. */
	bad_flags("(SUBJECT) ALL", ALL_FLAGS, SORA_IMAP_SEARCH_BADCHARSET, NULL);
	bad("(SUBJECT) (UTF-8) ALL", "SORT needs a charset name.");
	bad("(SUBJECT)", "SORT needs a charset name.");
	bad("(SUBJECT) UTF-8", "Missing SEARCH keys.");
	ok("(SUBJECT) {5}\r\nutf-8 ALL", "SUBJECT | ret=0 | keys=1");
}

static void test_bad_criteria(void **state)
{
	struct sora_imap_sort_program prog;
	const char *error = NULL;

	bad("() UTF-8 ALL", "SORT needs a list of sort criteria.");
	bad("SUBJECT UTF-8 ALL", "SORT needs a list of sort criteria.");
	bad("NIL UTF-8 ALL", "SORT needs a list of sort criteria.");
	bad("(REVERSE) UTF-8 ALL", "REVERSE must be followed by a sort key.");
	bad("(DATE REVERSE) UTF-8 ALL", "REVERSE must be followed by a sort key.");
	bad("(REVERSE REVERSE DATE) UTF-8 ALL", "REVERSE must be followed by a sort key.");
	bad("(BOGUS) UTF-8 ALL", "Unknown sort key.");
	bad("(SUBJECTX) UTF-8 ALL", "Unknown sort key.");
	bad("(\"SUBJECT\") UTF-8 ALL", "Invalid sort criterion.");
	bad("((SUBJECT)) UTF-8 ALL", "Invalid sort criterion.");
	bad("({7}\r\nSUBJECT) UTF-8 ALL", "Invalid sort criterion.");
	bad("(SUBJECT) UTF-8 BOGUSKEY", "Unknown SEARCH key.");
	/* US-ASCII takes 7-bit strings only. */
	bad("(SUBJECT) US-ASCII SUBJECT {2}\r\n\xc3\xa9", NULL);
	assert_int_equal(sora_imap_sort_parse(NULL, 0, ALL_FLAGS, &prog, &error),
			 SORA_IMAP_SEARCH_SYNTAX);
	assert_string_equal(error, "SORT needs a list of sort criteria.");
}

/* An error deep in the search part frees the criteria and the partly
 * built search tree (ASan reports a leak otherwise). */
static void test_error_frees(void **state)
{
	bad("RETURN (COUNT) (SUBJECT REVERSE DATE) UTF-8 FROM a (SUBJECT b OR (TO c UID 1:*) "
	    "NOT HEADER X y) SINCE 1-Foo-2000",
	    "Invalid SEARCH date.");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_criteria),
		cmocka_unit_test(test_return),
		cmocka_unit_test(test_charset),
		cmocka_unit_test(test_bad_criteria),
		cmocka_unit_test(test_error_frees),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
