/* FETCH attribute parsing (common/proto/imap-fetch.c).
 *
 * Each case is a real command line run through the command parser, so the
 * argument shapes are those a session sees (sections split around field
 * lists, "]" glued to ")", literals); the resulting spec is turned into a
 * one-line description and compared. Run under ASan (make asan), the
 * error cases also check that a failed parse frees what it built. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/core/buf.h"
#include "common/proto/imap-fetch.h"
#include "common/proto/imap-parser.h"

/* Parses "a FETCH 1 <attrs>" (or "a UID FETCH 1 <attrs>") and hands what
 * follows the sequence set to sora_imap_fetch_parse(). Returns its result;
 * the parser is freed, so the spec must not borrow from it. attrs may hold
 * NUL bytes (len says how long it is) and literals, which are accepted as
 * a session would after sending its continuation. */
static int parse_n(const char *attrs, size_t len, bool uid, struct sora_imap_fetch_spec *spec,
		   const char **error)
{
	struct sora_imap_parser *p = sora_imap_parser_new(&sora_imap_parser_default_params);
	const struct sora_imap_command *cmd;
	struct sora_buf line;
	size_t pos = 0, used, skip = uid ? 2 : 1;
	enum sora_imap_parse_result r;
	int ret;

	assert_non_null(p);
	sora_buf_init(&line, 0);
	sora_buf_printf(&line, "a %s 1 ", uid ? "UID FETCH" : "FETCH");
	sora_buf_append(&line, attrs, len);
	sora_buf_append_str(&line, "\r\n");
	do {
		r = sora_imap_parser_feed(p, line.data + pos, line.len - pos, &used);
		pos += used;
	} while (r == SORA_IMAP_PARSE_LITERAL);
	assert_int_equal(r, SORA_IMAP_PARSE_COMMAND);
	assert_int_equal(pos, line.len);
	cmd = sora_imap_parser_command(p);
	assert_true(cmd->args_count >= skip);
	*error = NULL;
	ret = sora_imap_fetch_parse(cmd->args + skip, cmd->args_count - skip, uid, spec, error);
	if (ret == 0) {
		assert_null(*error);
	} else {
		assert_int_equal(ret, -1);
		assert_non_null(*error);
		/* A failed parse leaves nothing behind. */
		assert_null(spec->sections);
		assert_int_equal(spec->section_count, 0);
	}
	sora_buf_free(&line);
	sora_imap_parser_free(&p);
	return ret;
}

static int parse(const char *attrs, bool uid, struct sora_imap_fetch_spec *spec,
		 const char **error)
{
	return parse_n(attrs, strlen(attrs), uid, spec, error);
}

static const char *const item_names[] = {
	"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY", "BODYSTRUCTURE",
	"MODSEQ", "SAVEDATE",
};

/* One line: the items, then each section as its reply name with "/P" for
 * peek and "<o.l>" for a partial, then the flags. */
static char *describe(const struct sora_imap_fetch_spec *spec)
{
	struct sora_buf b;

	sora_buf_init(&b, 0);
	sora_buf_append_str(&b, "[");
	for (unsigned k = 0; k < sizeof(item_names) / sizeof(item_names[0]); k++) {
		if (spec->items & (1u << k))
			sora_buf_printf(&b, " %s", item_names[k]);
	}
	sora_buf_append_str(&b, " ]");
	for (size_t i = 0; i < spec->section_count; i++) {
		const struct sora_imap_fetch_section *s = &spec->sections[i];

		sora_buf_printf(&b, " %s", s->name);
		if (s->peek)
			sora_buf_append_str(&b, "/P");
		if (s->partial)
			sora_buf_printf(&b, "<%llu.%llu>", (unsigned long long)s->partial_offset,
					(unsigned long long)s->partial_length);
	}
	if (spec->sets_seen)
		sora_buf_append_str(&b, " seen");
	if (spec->needs_body)
		sora_buf_append_str(&b, " body");
	if (spec->changedsince_set)
		sora_buf_printf(&b, " cs=%llu", (unsigned long long)spec->changedsince);
	if (spec->vanished)
		sora_buf_append_str(&b, " vanished");
	sora_buf_append(&b, "", 1);
	return b.data;
}

static void ok_uid(const char *attrs, bool uid, const char *expect)
{
	struct sora_imap_fetch_spec spec;
	const char *error;
	char *d;

	if (parse(attrs, uid, &spec, &error) != 0)
		fail_msg("%s: unexpected error: %s", attrs, error);
	d = describe(&spec);
	if (strcmp(d, expect) != 0)
		fail_msg("%s:\n got    %s\n expect %s", attrs, d, expect);
	free(d);
	sora_imap_fetch_spec_free(&spec);
	/* Freeing clears the spec, so a second free is harmless. */
	assert_null(spec.sections);
	sora_imap_fetch_spec_free(&spec);
}

static void ok(const char *attrs, const char *expect)
{
	ok_uid(attrs, false, expect);
}

static void bad_uid(const char *attrs, bool uid, const char *expect_error)
{
	struct sora_imap_fetch_spec spec;
	const char *error;

	if (parse(attrs, uid, &spec, &error) == 0)
		fail_msg("%s: parsed, expected an error", attrs);
	if (expect_error != NULL && strcmp(error, expect_error) != 0)
		fail_msg("%s: error \"%s\", expected \"%s\"", attrs, error, expect_error);
}

static void bad(const char *attrs, const char *expect_error)
{
	bad_uid(attrs, false, expect_error);
}

static void test_macros(void **state)
{
	ok("ALL", "[ FLAGS INTERNALDATE RFC822.SIZE ENVELOPE ]");
	ok("fast", "[ FLAGS INTERNALDATE RFC822.SIZE ]");
	ok("Full", "[ FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY ]");
	ok_uid("ALL", true, "[ UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE ]");
	/* Macros stand alone (RFC 3501 §6.4.5 grammar), not inside a list. */
	bad("(ALL)", "Unknown FETCH attribute.");
	bad("(FLAGS FAST)", "Unknown FETCH attribute.");
	bad("ALL FLAGS", "Invalid FETCH modifiers.");
}

static void test_simple_items(void **state)
{
	ok("UID", "[ UID ]");
	ok("FLAGS", "[ FLAGS ]");
	ok("INTERNALDATE", "[ INTERNALDATE ]");
	ok("RFC822.SIZE", "[ RFC822.SIZE ]");
	ok("ENVELOPE", "[ ENVELOPE ]");
	ok("BODY", "[ BODY ]");
	ok("BODYSTRUCTURE", "[ BODYSTRUCTURE ]");
	ok("MODSEQ", "[ MODSEQ ]");
	ok("(uid flags internaldate rfc822.size envelope body bodystructure modseq)",
	   "[ UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE MODSEQ ]");
	/* UID FETCH always includes UID. */
	ok_uid("FLAGS", true, "[ UID FLAGS ]");
	ok_uid("(FLAGS UID)", true, "[ UID FLAGS ]");
	/* Repeats are harmless. */
	ok("(FLAGS FLAGS)", "[ FLAGS ]");
}

static void test_rfc822(void **state)
{
	ok("RFC822", "[ ] RFC822 seen body");
	ok("RFC822.HEADER", "[ ] RFC822.HEADER/P body");
	ok("RFC822.TEXT", "[ ] RFC822.TEXT seen body");
	ok("(RFC822.SIZE RFC822.HEADER)", "[ RFC822.SIZE ] RFC822.HEADER/P body");
	bad("RFC822[]", "Unknown FETCH attribute.");
	bad("RFC822.PEEK", "Unknown FETCH attribute.");
}

static void test_body_sections(void **state)
{
	ok("BODY[]", "[ ] BODY[] seen body");
	ok("BODY.PEEK[]", "[ ] BODY[]/P body");
	ok("body.peek[text]", "[ ] BODY[TEXT]/P body");
	ok("BODY[HEADER]", "[ ] BODY[HEADER] seen body");
	ok("BODY[1]", "[ ] BODY[1] seen body");
	ok("BODY[1.2.3]", "[ ] BODY[1.2.3] seen body");
	ok("BODY[1.2.mime]", "[ ] BODY[1.2.MIME] seen body");
	ok("BODY[1.header]", "[ ] BODY[1.HEADER] seen body");
	ok("BODY[4.2.TEXT]", "[ ] BODY[4.2.TEXT] seen body");
	ok("BODY[4294967295]", "[ ] BODY[4294967295] seen body");
	ok("(FLAGS BODY.PEEK[1] BODY[2])", "[ FLAGS ] BODY[1]/P BODY[2] seen body");
	/* A peek alone does not set \Seen. */
	ok("(BODY.PEEK[1] BODY.PEEK[HEADER])", "[ ] BODY[1]/P BODY[HEADER]/P body");
}

static void test_header_fields(void **state)
{
	struct sora_imap_fetch_spec spec;
	const char *error;

	ok("BODY[HEADER.FIELDS (From To)]", "[ ] BODY[HEADER.FIELDS (FROM TO)] seen body");
	ok("BODY.PEEK[HEADER.FIELDS.NOT (Subject)]",
	   "[ ] BODY[HEADER.FIELDS.NOT (SUBJECT)]/P body");
	ok("BODY[1.2.HEADER.FIELDS (x-Spam)]<5.10>",
	   "[ ] BODY[1.2.HEADER.FIELDS (X-SPAM)]<5.10> seen body");
	/* "]" after a space, quoted and literal names, inside a list. */
	ok("(UID BODY.PEEK[HEADER.FIELDS (\"From\" {2+}\r\nTo) ]<0.100> FLAGS)",
	   "[ UID FLAGS ] BODY[HEADER.FIELDS (FROM TO)]/P<0.100> body");
	/* Two sections with field lists in one list. */
	ok("(BODY[HEADER.FIELDS (A)] BODY[HEADER.FIELDS.NOT (B C)])",
	   "[ ] BODY[HEADER.FIELDS (A)] BODY[HEADER.FIELDS.NOT (B C)] seen body");
	/* A name that is not an atom is quoted in the label. */
	ok("BODY[HEADER.FIELDS (\"a%b\")]", "[ ] BODY[HEADER.FIELDS (\"A%B\")] seen body");

	/* The names are kept as sent, for case-insensitive matching. */
	assert_int_equal(parse("(BODY.PEEK[2.HEADER.FIELDS (From To)] UID)", false, &spec,
			       &error), 0);
	assert_int_equal(spec.section_count, 1);
	assert_int_equal(spec.sections[0].kind, SORA_FETCH_KIND_BODY);
	assert_int_equal(spec.sections[0].part, SORA_FETCH_PART_HEADER_FIELDS);
	assert_int_equal(spec.sections[0].path_len, 1);
	assert_int_equal(spec.sections[0].path[0], 2);
	assert_int_equal(spec.sections[0].field_count, 2);
	assert_string_equal(spec.sections[0].fields[0], "From");
	assert_string_equal(spec.sections[0].fields[1], "To");
	assert_true(spec.items & SORA_FETCH_UID);
	sora_imap_fetch_spec_free(&spec);

	bad("BODY[HEADER.FIELDS]", "HEADER.FIELDS needs a list of field names.");
	bad("BODY[HEADER.FIELDS ()]", "HEADER.FIELDS needs a list of field names.");
	bad("BODY[HEADER.FIELDS", "HEADER.FIELDS needs a list of field names.");
	bad("(BODY[HEADER.FIELDS (From))", "HEADER.FIELDS needs a list of field names.");
	bad("BODY[HEADER.FIELDS (From)", "HEADER.FIELDS needs a list of field names.");
	bad("BODY[HEADER.FIELDS (From) UID", "Unterminated FETCH section.");
	bad("BODY[HEADER.FIELDS (From (To))]", "Invalid header field name.");
	bad("BODY[HEADER.FIELDS (\"\")]", "Invalid header field name.");
	bad("BODY[HEADER.FIELDS (\"a:b\")]", "Invalid header field name.");
	bad("BODY[HEADER.FIELDS ({3+}\r\na\nb)]", "Invalid header field name.");
	{
		static const char nul[] = "BODY[HEADER.FIELDS ({1+}\r\n\0)]";

		assert_int_equal(parse_n(nul, sizeof(nul) - 1, false, &spec, &error), -1);
		assert_string_equal(error, "Invalid header field name.");
	}
	bad("BODY[HEADER (From)]", "Unterminated FETCH section.");
	bad("BODY[TEXT] (From)", "Unknown FETCH modifier.");
	bad("BODY[HEADER.FIELDS (From)]]", "Invalid FETCH partial.");
}

static void test_header_fields_limit(void **state)
{
	struct sora_buf b;

	sora_buf_init(&b, 0);
	sora_buf_append_str(&b, "BODY[HEADER.FIELDS (");
	for (int i = 0; i < SORA_IMAP_FETCH_FIELDS_MAX; i++)
		sora_buf_printf(&b, "%sX%d", i > 0 ? " " : "", i);
	sora_buf_append_str(&b, ")]");
	sora_buf_append(&b, "", 1);
	{
		struct sora_imap_fetch_spec spec;
		const char *error;

		assert_int_equal(parse(b.data, false, &spec, &error), 0);
		assert_int_equal(spec.sections[0].field_count, SORA_IMAP_FETCH_FIELDS_MAX);
		sora_imap_fetch_spec_free(&spec);
	}
	b.len -= 3;
	sora_buf_append_str(&b, " ONE.MORE)]");
	sora_buf_append(&b, "", 1);
	bad(b.data, "Too many header field names.");
	sora_buf_free(&b);
}

static void test_partial(void **state)
{
	ok("BODY[]<0.100>", "[ ] BODY[]<0.100> seen body");
	ok("BODY.PEEK[1]<5.10>", "[ ] BODY[1]/P<5.10> body");
	ok("BINARY[1]<0.1>", "[ ] BINARY[1]<0.1> seen body");
	ok("BODY[]<9223372036854775807.9223372036854775807>",
	   "[ ] BODY[]<9223372036854775807.9223372036854775807> seen body");
	bad("BODY[]<0.0>", "FETCH partial length must be greater than zero.");
	bad("BODY[]<5>", "Invalid FETCH partial.");
	bad("BODY[]<5.>", "Invalid FETCH partial.");
	bad("BODY[]<.5>", "Invalid FETCH partial.");
	bad("BODY[]<a.5>", "Invalid FETCH partial.");
	bad("BODY[]<1.2", "Invalid FETCH partial.");
	bad("BODY[]<1.2>x", "Invalid FETCH partial.");
	bad("BODY[]x", "Invalid FETCH partial.");
	bad("BODY[]<-1.2>", "Invalid FETCH partial.");
	bad("BODY[]<1.2.3>", "Invalid FETCH partial.");
	bad("BODY[]<9223372036854775808.1>", "Invalid FETCH partial.");
	bad("BODY[]<0.99999999999999999999>", "Invalid FETCH partial.");
	bad("BINARY.SIZE[1]<0.10>", "BINARY.SIZE takes no partial.");
}

static void test_binary(void **state)
{
	ok("BINARY[]", "[ ] BINARY[] seen body");
	ok("BINARY[1.2]", "[ ] BINARY[1.2] seen body");
	ok("BINARY.PEEK[1]", "[ ] BINARY[1]/P body");
	ok("BINARY.SIZE[1]", "[ ] BINARY.SIZE[1]/P body");
	ok("binary.size[]", "[ ] BINARY.SIZE[]/P body");
	ok("(BINARY.PEEK[1] BINARY.SIZE[1] UID)", "[ UID ] BINARY[1]/P BINARY.SIZE[1]/P body");
	bad("BINARY[HEADER]", "BINARY sections take only a part number.");
	bad("BINARY.PEEK[1.TEXT]", "BINARY sections take only a part number.");
	bad("BINARY[1.MIME]", "BINARY sections take only a part number.");
	bad("BINARY.SIZE[HEADER.FIELDS (From)]", "BINARY sections take only a part number.");
	bad("BINARY", "Unknown FETCH attribute.");
	bad("BINARY.SIZE", "Unknown FETCH attribute.");
}

static void test_bad_sections(void **state)
{
	struct sora_buf b;

	bad("BODY[MIME]", "FETCH section MIME needs a part number.");
	bad("BODY[0]", "Invalid FETCH section part number.");
	bad("BODY[01]", "Invalid FETCH section part number.");
	bad("BODY[1.0]", "Invalid FETCH section part number.");
	bad("BODY[4294967296]", "Invalid FETCH section part number.");
	bad("BODY[1.]", "Invalid FETCH section.");
	bad("BODY[1..2]", "Invalid FETCH section.");
	bad("BODY[.1]", "Invalid FETCH section.");
	bad("BODY[1HEADER]", "Invalid FETCH section part number.");
	bad("BODY[HEADER.]", "Invalid FETCH section.");
	bad("BODY[FOO]", "Invalid FETCH section.");
	bad("BODY[TEXT.1]", "Invalid FETCH section.");
	bad("BODY[HEADER.TEXT]", "Invalid FETCH section.");
	bad("BODY[", "Unterminated FETCH section.");
	bad("BODY[1", "Unterminated FETCH section.");
	bad("BODY[[]", "Invalid FETCH section.");
	bad("BODY[]]", "Invalid FETCH partial.");
	bad("BODY.PEEK", "Unknown FETCH attribute.");
	bad("BODYX[]", "Unknown FETCH attribute.");
	bad("[]", "Unknown FETCH attribute.");
	bad("BODY.PEEK.PEEK[]", "Unknown FETCH attribute.");

	/* Deepest path accepted, one more refused. */
	sora_buf_init(&b, 0);
	sora_buf_append_str(&b, "BODY[1");
	for (int i = 1; i < SORA_IMAP_SECTION_DEPTH_MAX; i++)
		sora_buf_append_str(&b, ".1");
	sora_buf_append_str(&b, "]");
	sora_buf_append(&b, "", 1);
	{
		struct sora_imap_fetch_spec spec;
		const char *error;

		assert_int_equal(parse(b.data, false, &spec, &error), 0);
		assert_int_equal(spec.sections[0].path_len, SORA_IMAP_SECTION_DEPTH_MAX);
		sora_imap_fetch_spec_free(&spec);
	}
	b.len -= 2;
	sora_buf_append_str(&b, ".1]");
	sora_buf_append(&b, "", 1);
	bad(b.data, "FETCH section part path too deep.");
	sora_buf_free(&b);
}

static void test_sections_limit(void **state)
{
	struct sora_buf b;
	struct sora_imap_fetch_spec spec;
	const char *error;

	sora_buf_init(&b, 0);
	sora_buf_append_str(&b, "(");
	for (int i = 0; i < SORA_IMAP_FETCH_SECTIONS_MAX; i++)
		sora_buf_printf(&b, "BODY[%d] ", i + 1);
	sora_buf_append_str(&b, ")");
	sora_buf_append(&b, "", 1);
	assert_int_equal(parse(b.data, false, &spec, &error), 0);
	assert_int_equal(spec.section_count, SORA_IMAP_FETCH_SECTIONS_MAX);
	sora_imap_fetch_spec_free(&spec);
	b.len -= 2;
	sora_buf_append_str(&b, "RFC822)");
	sora_buf_append(&b, "", 1);
	bad(b.data, "Too many FETCH body sections.");
	sora_buf_free(&b);
}

static void test_bad_shapes(void **state)
{
	bad("()", "Empty FETCH attribute list.");
	bad("FOO", "Unknown FETCH attribute.");
	bad("(FLAGS FOO)", "Unknown FETCH attribute.");
	bad("\"FLAGS\"", "Invalid FETCH attribute.");
	bad("(FLAGS \"UID\")", "Invalid FETCH attribute.");
	bad("NIL", "Invalid FETCH attribute.");
	bad("(FLAGS (UID))", "Invalid FETCH attribute.");
	bad("FLAGS UID", "Invalid FETCH modifiers.");
	bad("(FLAGS) (CHANGEDSINCE 1) UID", "Unexpected arguments after FETCH attributes.");
	bad("{5+}\r\nFLAGS", "Invalid FETCH attribute.");
	bad("((FLAGS))", "Invalid FETCH attribute.");
}

static void test_missing(void **state)
{
	struct sora_imap_fetch_spec spec;
	const char *error = NULL;

	assert_int_equal(sora_imap_fetch_parse(NULL, 0, false, &spec, &error), -1);
	assert_string_equal(error, "Missing FETCH attributes.");
	assert_null(spec.sections);
}

static void test_modifiers(void **state)
{
	ok("(FLAGS) (CHANGEDSINCE 12345)", "[ FLAGS MODSEQ ] cs=12345");
	ok("FLAGS (changedsince 0)", "[ FLAGS MODSEQ ] cs=0");
	ok("BODY[HEADER.FIELDS (From)] (CHANGEDSINCE 7)",
	   "[ MODSEQ ] BODY[HEADER.FIELDS (FROM)] seen body cs=7");
	ok_uid("(FLAGS) (CHANGEDSINCE 12345 VANISHED)", true,
	       "[ UID FLAGS MODSEQ ] cs=12345 vanished");
	ok_uid("FLAGS (VANISHED CHANGEDSINCE 9223372036854775807)", true,
	       "[ UID FLAGS MODSEQ ] cs=9223372036854775807 vanished");
	ok_uid("FLAGS (CHANGEDSINCE 1)", true, "[ UID FLAGS MODSEQ ] cs=1");
	bad("FLAGS (CHANGEDSINCE 1 VANISHED)", "VANISHED is only allowed with UID FETCH.");
	bad_uid("FLAGS (VANISHED)", true, "VANISHED needs CHANGEDSINCE.");
	bad_uid("FLAGS (CHANGEDSINCE 1 VANISHED VANISHED)", true, "VANISHED given twice.");
	bad("FLAGS (CHANGEDSINCE 1 CHANGEDSINCE 2)", "CHANGEDSINCE given twice.");
	bad("FLAGS (CHANGEDSINCE)", "CHANGEDSINCE needs a mod-sequence.");
	bad("FLAGS (CHANGEDSINCE x)", "CHANGEDSINCE needs a mod-sequence.");
	bad("FLAGS (CHANGEDSINCE -1)", "CHANGEDSINCE needs a mod-sequence.");
	bad("FLAGS (CHANGEDSINCE 9223372036854775808)", "CHANGEDSINCE needs a mod-sequence.");
	bad("FLAGS (CHANGEDSINCE (1))", "CHANGEDSINCE needs a mod-sequence.");
	bad("FLAGS ()", "Invalid FETCH modifiers.");
	bad("FLAGS (FOO)", "Unknown FETCH modifier.");
	bad("FLAGS (\"CHANGEDSINCE\" 1)", "Invalid FETCH modifiers.");
	bad("FLAGS ((CHANGEDSINCE 1))", "Invalid FETCH modifiers.");
}

static void test_literal_attrs(void **state)
{
	/* A literal is no attribute, but a literal field name is a name. */
	ok("BODY[HEADER.FIELDS ({7}\r\nSubject)]", "[ ] BODY[HEADER.FIELDS (SUBJECT)] seen body");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_macros),
		cmocka_unit_test(test_simple_items),
		cmocka_unit_test(test_rfc822),
		cmocka_unit_test(test_body_sections),
		cmocka_unit_test(test_header_fields),
		cmocka_unit_test(test_header_fields_limit),
		cmocka_unit_test(test_partial),
		cmocka_unit_test(test_binary),
		cmocka_unit_test(test_bad_sections),
		cmocka_unit_test(test_sections_limit),
		cmocka_unit_test(test_bad_shapes),
		cmocka_unit_test(test_missing),
		cmocka_unit_test(test_modifiers),
		cmocka_unit_test(test_literal_attrs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
