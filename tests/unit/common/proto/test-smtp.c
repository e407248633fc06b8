/* Tests for SMTP/LMTP command parsing, envelope addresses, xtext and
 * subaddresses (common/proto/smtp.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/proto/smtp.h"

static struct sora_smtp_command C;
static const char *E;

static int parse_n(const char *line, size_t len)
{
	E = NULL;
	return sora_smtp_command_parse(line, len, &C, &E);
}

static int parse(const char *line)
{
	int r = parse_n(line, strlen(line));

	/* Every error comes with a reply text. */
	if (r < 0)
		assert_non_null(E);
	return r;
}

#define assert_str(s, lit) do { \
	struct sora_str s_ = (s); \
	if (!sora_str_eq(s_, SORA_STR(lit))) \
		fail_msg("got \"%.*s\", expected \"%s\"", (int)s_.len, \
			 s_.p != NULL ? s_.p : "", lit); \
} while (0)

static void assert_status(int err, enum sora_smtp_verb verb, unsigned code,
			  const char *enh)
{
	struct sora_smtp_status st = sora_smtp_error_status(err, verb);

	assert_int_equal(st.code, code);
	assert_string_equal(st.enhanced, enh);
}

/* ---- line handling ---- */

static void test_line_endings(void **state)
{
	assert_int_equal(parse("NOOP\r\n"), 0);
	assert_int_equal(C.verb, SORA_SMTP_CMD_NOOP);
	assert_int_equal(parse("NOOP\n"), 0);
	assert_int_equal(parse("NOOP"), 0);
	assert_int_equal(parse("NOOP\r"), 0);
	assert_int_equal(parse("QUIT  \t\r\n"), 0);
	assert_int_equal(C.verb, SORA_SMTP_CMD_QUIT);

	assert_int_equal(parse("NO\rOP\r\n"), SORA_SMTP_ERR_BAD_LINE);
	assert_int_equal(parse("NOOP\n\n"), SORA_SMTP_ERR_BAD_LINE);
	assert_int_equal(parse_n("NO\0OP\r\n", 7), SORA_SMTP_ERR_BAD_LINE);
	assert_int_equal(parse("\r\n"), SORA_SMTP_ERR_BAD_LINE);
	assert_int_equal(parse("   \r\n"), SORA_SMTP_ERR_BAD_LINE);
	assert_int_equal(parse_n(NULL, 0), SORA_SMTP_ERR_BAD_LINE);
	assert_status(SORA_SMTP_ERR_BAD_LINE, SORA_SMTP_CMD_UNKNOWN, 500, "5.5.2");
}

static void test_line_length(void **state)
{
	char line[700];

	/* 510 octets + CRLF = 512: the longest allowed line. */
	memcpy(line, "NOOP ", 5);
	memset(line + 5, 'x', 505);
	memcpy(line + 510, "\r\n", 2);
	assert_int_equal(parse_n(line, 512), 0);
	assert_int_equal(parse_n(line, 510), 0);

	/* 511 + CRLF = 513, or 511 without a line ending (the CRLF still
	 * counts), or a bare LF after 511. */
	memset(line + 5, 'x', 506);
	memcpy(line + 511, "\r\n", 2);
	assert_int_equal(parse_n(line, 513), SORA_SMTP_ERR_LINE_TOO_LONG);
	assert_string_equal(E, "Line too long");
	assert_int_equal(parse_n(line, 511), SORA_SMTP_ERR_LINE_TOO_LONG);
	line[511] = '\n';
	assert_int_equal(parse_n(line, 512), SORA_SMTP_ERR_LINE_TOO_LONG);

	/* A reader that stopped buffering passes a long prefix. */
	memset(line, 'A', sizeof(line));
	assert_int_equal(parse_n(line, sizeof(line)), SORA_SMTP_ERR_LINE_TOO_LONG);
	assert_status(SORA_SMTP_ERR_LINE_TOO_LONG, SORA_SMTP_CMD_UNKNOWN, 500, "5.5.2");
}

/* ---- verbs ---- */

static void test_simple_verbs(void **state)
{
	static const struct {
		const char *line;
		enum sora_smtp_verb verb;
	} ok[] = {
		{ "DATA", SORA_SMTP_CMD_DATA },
		{ "data", SORA_SMTP_CMD_DATA },
		{ "RSET", SORA_SMTP_CMD_RSET },
		{ "rSeT", SORA_SMTP_CMD_RSET },
		{ "QUIT", SORA_SMTP_CMD_QUIT },
		{ "STARTTLS", SORA_SMTP_CMD_STARTTLS },
		{ "starttls", SORA_SMTP_CMD_STARTTLS },
		{ "NOOP", SORA_SMTP_CMD_NOOP },
		{ "NOOP anything at all", SORA_SMTP_CMD_NOOP },
		{ "HELP", SORA_SMTP_CMD_HELP },
		{ "HELP MAIL", SORA_SMTP_CMD_HELP },
		{ "VRFY user@example.com", SORA_SMTP_CMD_VRFY },
	};
	static const char *const bad[] = {
		"DATA x", "RSET now", "QUIT please", "STARTTLS x", "VRFY", "VRFY   ",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (parse(ok[i].line) != 0)
			fail_msg("%s: %s", ok[i].line, E);
		assert_int_equal(C.verb, ok[i].verb);
	}
	assert_int_equal(parse("VRFY user@example.com"), 0);
	assert_str(C.arg, "user@example.com");
	assert_int_equal(parse("NOOP  with  spaces  "), 0);
	assert_str(C.arg, "with  spaces");

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = parse(bad[i]);
		if (r != SORA_SMTP_ERR_SYNTAX)
			fail_msg("%s: got %d", bad[i], r);
		assert_int_not_equal(C.verb, SORA_SMTP_CMD_UNKNOWN);
	}
	assert_status(SORA_SMTP_ERR_SYNTAX, SORA_SMTP_CMD_DATA, 501, "5.5.4");
}

static void test_unknown_verbs(void **state)
{
	static const char *const lines[] = {
		"FOO bar", "MAILX FROM:<>", "GET / HTTP/1.1", "LHL0 x", " NOOP",
		"\xc3\xa9", "DATA\x7f",
	};

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		assert_int_equal(parse(lines[i]), SORA_SMTP_ERR_UNKNOWN_COMMAND);
		assert_int_equal(C.verb, SORA_SMTP_CMD_UNKNOWN);
	}
	assert_int_equal(parse("FOO bar"), SORA_SMTP_ERR_UNKNOWN_COMMAND);
	assert_str(C.verb_text, "FOO");
	assert_status(SORA_SMTP_ERR_UNKNOWN_COMMAND, SORA_SMTP_CMD_UNKNOWN, 500, "5.5.1");
	assert_string_equal(sora_smtp_verb_name(SORA_SMTP_CMD_XCLIENT), "XCLIENT");
	assert_string_equal(sora_smtp_verb_name(SORA_SMTP_CMD_UNKNOWN), "UNKNOWN");
}

static void test_hello(void **state)
{
	assert_int_equal(parse("LHLO mx.example.com\r\n"), 0);
	assert_int_equal(C.verb, SORA_SMTP_CMD_LHLO);
	assert_str(C.domain, "mx.example.com");
	assert_false(C.domain_literal);
	assert_int_equal(parse("lhlo localhost"), 0);
	assert_int_equal(parse("EHLO [192.0.2.1]"), 0);
	assert_int_equal(C.verb, SORA_SMTP_CMD_EHLO);
	assert_true(C.domain_literal);
	assert_int_equal(parse("HELO [IPv6:2001:db8::1]"), 0);
	assert_int_equal(C.verb, SORA_SMTP_CMD_HELO);
	assert_int_equal(parse("LHLO [ipv6:::1]"), 0);
	/* Windows-style machine names are tolerated in the greeting. */
	assert_int_equal(parse("LHLO my_pc"), 0);

	static const char *const bad[] = {
		"LHLO", "LHLO a b", "LHLO -bad.example", "LHLO bad-.example",
		"LHLO a..b", "LHLO example.com.", "LHLO [300.1.1.1]", "LHLO [1.2.3]",
		"LHLO [IPv6:zz::1]", "LHLO [192.0.2.1", "LHLO exa$mple.com",
		"EHLO", "HELO",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = parse(bad[i]);
		if (r != SORA_SMTP_ERR_SYNTAX)
			fail_msg("%s: got %d", bad[i], r);
	}
	assert_int_equal(parse("LHLO"), SORA_SMTP_ERR_SYNTAX);
	assert_string_equal(E, "Syntax: LHLO hostname");
}

static void test_bdat(void **state)
{
	assert_int_equal(parse("BDAT 1000"), 0);
	assert_int_equal(C.bdat_size, 1000);
	assert_false(C.bdat_last);
	assert_int_equal(parse("BDAT 0 LAST"), 0);
	assert_int_equal(C.bdat_size, 0);
	assert_true(C.bdat_last);
	assert_int_equal(parse("bdat 5  last"), 0);
	assert_true(C.bdat_last);
	assert_int_equal(parse("BDAT"), SORA_SMTP_ERR_SYNTAX);
	assert_int_equal(parse("BDAT x"), SORA_SMTP_ERR_SYNTAX);
	assert_int_equal(parse("BDAT -1"), SORA_SMTP_ERR_SYNTAX);
	assert_int_equal(parse("BDAT 1 FIRST"), SORA_SMTP_ERR_SYNTAX);
	assert_int_equal(parse("BDAT 1 LAST x"), SORA_SMTP_ERR_SYNTAX);
	assert_int_equal(parse("BDAT 99999999999999999999999"), SORA_SMTP_ERR_SYNTAX);
}

/* ---- MAIL / RCPT ---- */

static void test_mail_basic(void **state)
{
	assert_int_equal(parse("MAIL FROM:<alice@example.com>\r\n"), 0);
	assert_int_equal(C.verb, SORA_SMTP_CMD_MAIL);
	assert_str(C.path.mailbox, "alice@example.com");
	assert_str(C.path.path, "alice@example.com");
	assert_str(C.path.local, "alice");
	assert_str(C.path.domain, "example.com");
	assert_false(C.path.null_path);
	assert_false(C.path.quoted);
	assert_false(C.path.nonstandard);
	assert_false(C.mail.has_size);
	assert_int_equal(C.mail.body, SORA_SMTP_BODY_NONE);

	assert_int_equal(parse("mail from:<A@B.EXAMPLE>"), 0);
	assert_str(C.path.mailbox, "A@B.EXAMPLE");
	/* The common "FROM: <...>" space, and more than one. */
	assert_int_equal(parse("MAIL FROM: <a@b.example>"), 0);
	assert_str(C.path.mailbox, "a@b.example");
	assert_int_equal(parse("MAIL FROM:  <a@b.example>  "), 0);
	assert_int_equal(parse("MAIL   FROM:<a@b.example>"), 0);

	assert_int_equal(parse("MAIL FROM:<>"), 0);
	assert_true(C.path.null_path);
	assert_int_equal(C.path.mailbox.len, 0);
	assert_int_equal(C.path.domain.len, 0);
}

static void test_mail_syntax_errors(void **state)
{
	static const char *const syntax[] = {
		"MAIL", "MAIL <a@b.example>", "MAIL TO:<a@b.example>",
		"MAIL FROM:", "MAIL FROM:a@b.example", "MAIL FROM:<a@b.example",
		"MAIL FROM:<a@b.example>SIZE=1", "MAIL FROM:<>x", "MAIL FROM a@b",
		"MAIL FROM:<a@b.example> =1", "MAIL FROM:<a@b.example> -X=1",
	};

	for (size_t i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++) {
		int r = parse(syntax[i]);
		if (r != SORA_SMTP_ERR_SYNTAX)
			fail_msg("%s: got %d (%s)", syntax[i], r, E);
		assert_int_equal(C.verb, SORA_SMTP_CMD_MAIL);
	}
	assert_int_equal(parse("MAIL FROM:a@b.example"), SORA_SMTP_ERR_SYNTAX);
	assert_string_equal(E, "Missing '<' in path");
	assert_int_equal(parse("MAIL FROM:<a@b.example"), SORA_SMTP_ERR_SYNTAX);
	assert_string_equal(E, "Missing '>' in path");
	assert_int_equal(parse("MAIL FROM:<\"a@b.example>"), SORA_SMTP_ERR_BAD_ADDRESS);
	assert_string_equal(E, "Unterminated quoted local part");
}

static void test_bad_addresses(void **state)
{
	static const char *const bad[] = {
		"<user>", "<a b@c.example>", "<a@b c.example>", "<a@-x.example>",
		"<a@x-.example>", "<a@x.example.>", "<a@.example>", "<a@>", "<@>",
		"<a@[1.2.3]>", "<a@[300.0.0.1]>", "<a@[IPv6:1:2:3]>", "<a@[x]>",
		"<a@[:x]>", "<a(b)@c.example>", "<a@b..example>", "<\xff@b.example>",
		"<a@\xc3.example>", "<\"a\x01\"@b.example>", "<\"a\\\x01\"@b.example>",
		"<@a.example;u@b.example>", "<@:u@b.example>", "<@a.example,u@b.example>",
		"<@a.example,@:u@b.example>", "<a@b@c.example>", "<a@x_y$.example>",
		"<a@[192.0.2.1>",
	};
	char line[300];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (int rcpt = 0; rcpt < 2; rcpt++) {
			int r;

			snprintf(line, sizeof(line), "%s%s", rcpt ? "RCPT TO:" : "MAIL FROM:", bad[i]);
			r = parse(line);
			if (r != SORA_SMTP_ERR_BAD_ADDRESS && r != SORA_SMTP_ERR_SYNTAX)
				fail_msg("%s: got %d", line, r);
		}
	}
	assert_int_equal(parse("MAIL FROM:<user>"), SORA_SMTP_ERR_BAD_ADDRESS);
	assert_string_equal(E, "Missing domain in address");
	assert_status(SORA_SMTP_ERR_BAD_ADDRESS, SORA_SMTP_CMD_MAIL, 501, "5.1.7");
	assert_status(SORA_SMTP_ERR_BAD_ADDRESS, SORA_SMTP_CMD_RCPT, 501, "5.1.3");
	assert_int_equal(parse("RCPT TO:<a b@c.example>"), SORA_SMTP_ERR_BAD_ADDRESS);
	assert_int_equal(parse("RCPT TO:<a@b..example>"), SORA_SMTP_ERR_BAD_ADDRESS);
	assert_int_equal(parse("RCPT TO:<a@[192.0.2.1>"), SORA_SMTP_ERR_SYNTAX);
}

static void test_quoted_local_part(void **state)
{
	char buf[64];
	size_t n;

	assert_int_equal(parse("MAIL FROM:<\"a b\"@example.com>"), 0);
	assert_true(C.path.quoted);
	assert_str(C.path.local, "\"a b\"");
	assert_str(C.path.mailbox, "\"a b\"@example.com");
	assert_int_equal(sora_smtp_local_unquote(C.path.local, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(buf, "a b", 3);

	/* Quoted pairs, and a '>' and '@' inside the quotes. */
	assert_int_equal(parse("RCPT TO:<\"a\\\"b\\\\c>d@e\"@example.com> NOTIFY=NEVER"), 0);
	assert_str(C.path.local, "\"a\\\"b\\\\c>d@e\"");
	assert_str(C.path.domain, "example.com");
	assert_int_equal(C.rcpt.notify, SORA_SMTP_NOTIFY_NEVER);
	assert_int_equal(sora_smtp_local_unquote(C.path.local, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, 9);
	assert_memory_equal(buf, "a\"b\\c>d@e", 9);

	/* The empty quoted string is a valid local part. */
	assert_int_equal(parse("RCPT TO:<\"\"@example.com>"), 0);
	assert_int_equal(sora_smtp_local_unquote(C.path.local, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, 0);

	/* Unquote of a dot-string copies it; bad input and small buffers
	 * fail. */
	assert_int_equal(sora_smtp_local_unquote(SORA_STR("a.b"), buf, sizeof(buf), &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(sora_smtp_local_unquote(SORA_STR("a.b"), buf, 2, &n), -1);
	assert_int_equal(sora_smtp_local_unquote(SORA_STR("\"ab\""), buf, 1, &n), -1);
	assert_int_equal(sora_smtp_local_unquote(SORA_STR("\"ab"), buf, sizeof(buf), &n), -1);
	assert_int_equal(sora_smtp_local_unquote(SORA_STR("\"a\"b\""), buf, sizeof(buf), &n), -1);
	assert_int_equal(sora_smtp_local_unquote(SORA_STR("\"a\\\""), buf, sizeof(buf), &n), -1);
	assert_int_equal(sora_smtp_local_unquote(SORA_STR(""), buf, sizeof(buf), &n), -1);
}

static void test_dots_leniency(void **state)
{
	static const char *const odd[] = {
		"<a..b@example.jp>", "<.a@example.jp>", "<a.@example.jp>",
	};
	char line[100];

	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		snprintf(line, sizeof(line), "MAIL FROM:%s", odd[i]);
		assert_int_equal(parse(line), 0);
		assert_true(C.path.nonstandard);
		snprintf(line, sizeof(line), "RCPT TO:%s", odd[i]);
		assert_int_equal(parse(line), SORA_SMTP_ERR_BAD_ADDRESS);
	}
	assert_int_equal(parse("MAIL FROM:<a@under_score.example>"), 0);
	assert_true(C.path.nonstandard);
	assert_int_equal(parse("RCPT TO:<a@under_score.example>"), SORA_SMTP_ERR_BAD_ADDRESS);
	assert_int_equal(parse("MAIL FROM:<first.last+tag@example.com>"), 0);
	assert_false(C.path.nonstandard);
	assert_int_equal(parse("RCPT TO:<!#$%&'*+-/=?^_`{|}~@example.com>"), 0);
}

static void test_source_route(void **state)
{
	assert_int_equal(parse("MAIL FROM:<@a.example,@b.example:user@d.example>"), 0);
	assert_true(C.path.source_route);
	assert_str(C.path.mailbox, "user@d.example");
	assert_str(C.path.path, "@a.example,@b.example:user@d.example");
	assert_str(C.path.local, "user");
	assert_int_equal(parse("RCPT TO:<@a.example:user@d.example>"), 0);
	assert_str(C.path.mailbox, "user@d.example");
	assert_int_equal(parse("RCPT TO:<@[192.0.2.1]:user@d.example>"), 0);
	assert_str(C.path.mailbox, "user@d.example");
	/* Null path can't have a route; postmaster can't either. */
	assert_int_equal(parse("RCPT TO:<@a.example:postmaster>"), SORA_SMTP_ERR_BAD_ADDRESS);
}

static void test_address_literal_domains(void **state)
{
	assert_int_equal(parse("RCPT TO:<a@[192.0.2.1]>"), 0);
	assert_true(C.path.literal);
	assert_str(C.path.domain, "[192.0.2.1]");
	assert_int_equal(parse("RCPT TO:<a@[IPv6:2001:db8::1]>"), 0);
	assert_true(C.path.literal);
	assert_int_equal(parse("RCPT TO:<a@[IPv6:::ffff:192.0.2.1]>"), 0);
	assert_int_equal(parse("RCPT TO:<a@[x-tag:content]>"), 0);
	assert_int_equal(parse("RCPT TO:<a@[IPv6:2001:db8::g]>"), SORA_SMTP_ERR_BAD_ADDRESS);
}

static void test_postmaster_and_null(void **state)
{
	assert_int_equal(parse("RCPT TO:<Postmaster>"), 0);
	assert_true(C.path.postmaster);
	assert_str(C.path.mailbox, "Postmaster");
	assert_int_equal(C.path.domain.len, 0);
	assert_int_equal(parse("RCPT TO:<POSTMASTER>"), 0);
	assert_int_equal(parse("RCPT TO:<postmaster@example.com>"), 0);
	assert_false(C.path.postmaster);
	assert_int_equal(parse("RCPT TO:<\"postmaster\">"), SORA_SMTP_ERR_BAD_ADDRESS);
	assert_int_equal(parse("MAIL FROM:<postmaster>"), SORA_SMTP_ERR_BAD_ADDRESS);
	assert_int_equal(parse("RCPT TO:<>"), SORA_SMTP_ERR_BAD_ADDRESS);
	assert_int_equal(C.verb, SORA_SMTP_CMD_RCPT);
}

static void test_utf8_addresses(void **state)
{
	assert_int_equal(parse("RCPT TO:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.example>"), 0);
	assert_true(C.path.utf8);
	assert_int_equal(parse("MAIL FROM:<j\xc3\xb6rg@example.com> SMTPUTF8"), 0);
	assert_true(C.path.utf8);
	assert_true(C.mail.smtputf8);
	assert_int_equal(parse("RCPT TO:<a@b\xc3\xa4.example>"), 0);
	assert_true(C.path.utf8);
	assert_int_equal(parse("RCPT TO:<a@example.com>"), 0);
	assert_false(C.path.utf8);
	/* Overlong, surrogate and truncated sequences are rejected. */
	assert_int_equal(parse("RCPT TO:<\xc0\xafx@example.com>"), SORA_SMTP_ERR_BAD_ADDRESS);
	assert_int_equal(parse("RCPT TO:<\xed\xa0\x80x@example.com>"), SORA_SMTP_ERR_BAD_ADDRESS);
	assert_int_equal(parse("RCPT TO:<x\xe4\xbe@example.com>"), SORA_SMTP_ERR_BAD_ADDRESS);
	assert_int_equal(parse("RCPT TO:<x@\xf5\x80\x80\x80.example>"), SORA_SMTP_ERR_BAD_ADDRESS);
}

static void fill(char *p, size_t n, char c)
{
	memset(p, c, n);
}

/* Builds a domain of exactly n octets out of labels of at most 63. */
static size_t make_domain(char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t l = n - i > 63 ? 63 : n - i;
		/* Do not leave a one-octet remainder that would need a label
		 * after a trailing dot; make the label shorter instead. */
		if (n - i > 63 && n - i - 63 < 2)
			l = 61;
		fill(p + i, l, 'd');
		i += l;
		if (i < n)
			p[i++] = '.';
	}
	return i;
}

static void test_length_limits(void **state)
{
	char line[600];
	size_t n;

	/* Local part of 64 is fine, 65 is too long. */
	for (size_t local = 64; local <= 65; local++) {
		n = (size_t)snprintf(line, sizeof(line), "RCPT TO:<");
		fill(line + n, local, 'l');
		n += local;
		n += (size_t)snprintf(line + n, sizeof(line) - n, "@example.com>");
		assert_int_equal(parse_n(line, n), local == 64 ? 0 : SORA_SMTP_ERR_ADDRESS_TOO_LONG);
	}
	assert_string_equal(E, "Local part too long");
	assert_status(SORA_SMTP_ERR_ADDRESS_TOO_LONG, SORA_SMTP_CMD_RCPT, 501, "5.1.3");

	/* Path of 256 octets with the brackets is fine, 257 is not. */
	for (size_t dom = 252; dom <= 253; dom++) {
		n = (size_t)snprintf(line, sizeof(line), "RCPT TO:<a@");
		n += make_domain(line + n, dom);
		line[n++] = '>';
		assert_int_equal(parse_n(line, n), dom == 252 ? 0 : SORA_SMTP_ERR_ADDRESS_TOO_LONG);
		if (dom == 252)
			assert_int_equal(C.path.path.len + 2, 256);
	}
	assert_string_equal(E, "Path too long");

	/* Domain over 255 octets. */
	n = (size_t)snprintf(line, sizeof(line), "MAIL FROM:<a@");
	n += make_domain(line + n, 256);
	line[n++] = '>';
	assert_int_equal(parse_n(line, n), SORA_SMTP_ERR_ADDRESS_TOO_LONG);
	assert_string_equal(E, "Domain too long");
	assert_status(SORA_SMTP_ERR_ADDRESS_TOO_LONG, SORA_SMTP_CMD_MAIL, 501, "5.1.7");

	/* A label of 63 is fine, 64 is not. */
	n = (size_t)snprintf(line, sizeof(line), "RCPT TO:<a@");
	fill(line + n, 63, 'x');
	n += 63;
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".example>");
	assert_int_equal(parse_n(line, n), 0);
	n = (size_t)snprintf(line, sizeof(line), "RCPT TO:<a@");
	fill(line + n, 64, 'x');
	n += 64;
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".example>");
	assert_int_equal(parse_n(line, n), SORA_SMTP_ERR_BAD_ADDRESS);
}

static void test_mail_params(void **state)
{
	assert_int_equal(parse("MAIL FROM:<> SIZE=12345 BODY=8BITMIME"), 0);
	assert_true(C.path.null_path);
	assert_true(C.mail.has_size);
	assert_int_equal(C.mail.size, 12345);
	assert_int_equal(C.mail.body, SORA_SMTP_BODY_8BITMIME);

	assert_int_equal(parse("MAIL FROM:<a@b.example>   size=0   body=7bit  smtputf8 "), 0);
	assert_int_equal(C.mail.size, 0);
	assert_int_equal(C.mail.body, SORA_SMTP_BODY_7BIT);
	assert_true(C.mail.smtputf8);
	assert_int_equal(parse("MAIL FROM:<a@b.example> BODY=BINARYMIME"), 0);
	assert_int_equal(C.mail.body, SORA_SMTP_BODY_BINARYMIME);
	assert_int_equal(parse("MAIL FROM:<a@b.example> SIZE=18446744073709551615"), 0);
	assert_int_equal(C.mail.size, UINT64_MAX);

	assert_int_equal(parse("MAIL FROM:<a@b.example> RET=HDRS ENVID=QQ+2B314 AUTH=<>"), 0);
	assert_int_equal(C.mail.ret, SORA_SMTP_RET_HDRS);
	assert_true(C.mail.has_envid);
	assert_str(C.mail.envid_raw, "QQ+2B314");
	assert_str(C.mail.envid, "QQ+314");
	assert_true(C.mail.has_auth);
	assert_str(C.mail.auth_raw, "<>");
	assert_int_equal(C.mail.auth.len, 0);
	assert_int_equal(parse("MAIL FROM:<a@b.example> RET=full AUTH=e+3Dmc2@example.com"), 0);
	assert_int_equal(C.mail.ret, SORA_SMTP_RET_FULL);
	assert_str(C.mail.auth, "e=mc2@example.com");

	static const char *const bad[] = {
		"SIZE=", "SIZE", "SIZE=abc", "SIZE=-1", "SIZE=18446744073709551616",
		"SIZE=000000000000000000001", "BODY=9BIT", "BODY", "SMTPUTF8=yes",
		"RET=ALL", "ENVID=+ZZ", "ENVID=a+00b", "ENVID=a+7F", "AUTH=+4", "AUTH=a=b",
		"SIZE=1 SIZE=2", "BODY=7BIT body=8BITMIME", "ENVID=caf+C3+A9",
		"SIZE=\x01",
	};
	char line[200];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r;
		snprintf(line, sizeof(line), "MAIL FROM:<a@b.example> %s", bad[i]);
		r = parse(line);
		if (r != SORA_SMTP_ERR_BAD_PARAM)
			fail_msg("%s: got %d", line, r);
		assert_non_null(C.bad_param.p);
	}
	assert_int_equal(parse("MAIL FROM:<a@b.example> SIZE=1 size=2"), SORA_SMTP_ERR_BAD_PARAM);
	assert_string_equal(E, "Duplicate parameter");
	assert_str(C.bad_param, "size");
	assert_status(SORA_SMTP_ERR_BAD_PARAM, SORA_SMTP_CMD_MAIL, 501, "5.5.4");

	/* ENVID up to 100 decoded characters. */
	memset(line, 0, sizeof(line));
	snprintf(line, sizeof(line), "MAIL FROM:<> ENVID=");
	memset(line + strlen(line), 'e', 100);
	assert_int_equal(parse(line), 0);
	assert_int_equal(C.mail.envid.len, 100);
	line[strlen(line)] = 'e';
	assert_int_equal(parse(line), SORA_SMTP_ERR_BAD_PARAM);
}

static void test_unknown_params(void **state)
{
	assert_int_equal(parse("MAIL FROM:<a@b.example> FOO=bar"), SORA_SMTP_ERR_UNKNOWN_PARAM);
	assert_str(C.bad_param, "FOO");
	assert_status(SORA_SMTP_ERR_UNKNOWN_PARAM, SORA_SMTP_CMD_MAIL, 555, "5.5.4");
	assert_int_equal(parse("MAIL FROM:<a@b.example> SIZE=1 X-EXT"), SORA_SMTP_ERR_UNKNOWN_PARAM);
	assert_str(C.bad_param, "X-EXT");
	/* Parameters belong to one command only. */
	assert_int_equal(parse("MAIL FROM:<a@b.example> NOTIFY=NEVER"), SORA_SMTP_ERR_UNKNOWN_PARAM);
	assert_int_equal(parse("RCPT TO:<a@b.example> SIZE=10"), SORA_SMTP_ERR_UNKNOWN_PARAM);
	assert_str(C.bad_param, "SIZE");
	assert_status(SORA_SMTP_ERR_UNKNOWN_PARAM, SORA_SMTP_CMD_RCPT, 555, "5.5.4");
}

static void test_rcpt_params(void **state)
{
	assert_int_equal(parse("RCPT TO:<bob@example.com>"), 0);
	assert_int_equal(C.verb, SORA_SMTP_CMD_RCPT);
	assert_str(C.path.mailbox, "bob@example.com");
	assert_int_equal(C.rcpt.notify, 0);
	assert_false(C.rcpt.has_orcpt);

	assert_int_equal(parse("rcpt to: <bob@example.com> NOTIFY=SUCCESS,FAILURE,DELAY "
			       "ORCPT=rfc822;bob+2Bx@example.com"), 0);
	assert_int_equal(C.rcpt.notify, SORA_SMTP_NOTIFY_SUCCESS | SORA_SMTP_NOTIFY_FAILURE |
			 SORA_SMTP_NOTIFY_DELAY);
	assert_true(C.rcpt.has_orcpt);
	assert_str(C.rcpt.orcpt_type, "rfc822");
	assert_str(C.rcpt.orcpt_raw, "bob+2Bx@example.com");
	assert_str(C.rcpt.orcpt, "bob+x@example.com");
	assert_int_equal(parse("RCPT TO:<b@example.com> notify=never"), 0);
	assert_int_equal(C.rcpt.notify, SORA_SMTP_NOTIFY_NEVER);

	static const char *const bad[] = {
		"NOTIFY=NEVER,SUCCESS", "NOTIFY=bogus", "NOTIFY=SUCCESS,SUCCESS",
		"NOTIFY=", "NOTIFY", "NOTIFY=SUCCESS,", "ORCPT=rfc822", "ORCPT=;x",
		"ORCPT=rfc822;", "ORCPT=rfc822;+0A", "ORCPT=r(c;x", "NOTIFY=DELAY NOTIFY=DELAY",
	};
	char line[200];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r;
		snprintf(line, sizeof(line), "RCPT TO:<b@example.com> %s", bad[i]);
		r = parse(line);
		if (r != SORA_SMTP_ERR_BAD_PARAM)
			fail_msg("%s: got %d", line, r);
	}
}

/* ---- XCLIENT ---- */

static void test_xclient(void **state)
{
	const struct sora_smtp_xclient *x = &C.xclient;
	static const uint8_t v4[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1 };
	static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };

	assert_int_equal(parse("XCLIENT ADDR=192.0.2.1 PORT=1234 NAME=mx.example.com "
			       "HELO=client.example LOGIN=user+40example.com PROTO=ESMTP"), 0);
	assert_int_equal(C.verb, SORA_SMTP_CMD_XCLIENT);
	assert_int_equal(x->attr[SORA_SMTP_XCLIENT_ADDR].state, SORA_SMTP_XCLIENT_SET);
	assert_str(x->attr[SORA_SMTP_XCLIENT_ADDR].value, "192.0.2.1");
	assert_memory_equal(x->addr.b, v4, 16);
	assert_int_equal(x->port, 1234);
	assert_str(x->attr[SORA_SMTP_XCLIENT_NAME].value, "mx.example.com");
	assert_str(x->attr[SORA_SMTP_XCLIENT_HELO].value, "client.example");
	assert_str(x->attr[SORA_SMTP_XCLIENT_LOGIN].value, "user@example.com");
	assert_str(x->attr[SORA_SMTP_XCLIENT_PROTO].value, "ESMTP");
	assert_int_equal(x->attr[SORA_SMTP_XCLIENT_DESTADDR].state, SORA_SMTP_XCLIENT_ABSENT);
	assert_int_equal(x->attr[SORA_SMTP_XCLIENT_REVERSE_NAME].state, SORA_SMTP_XCLIENT_ABSENT);

	/* IPv6 with and without the "IPV6:" prefix; names case-insensitive. */
	assert_int_equal(parse("XCLIENT ADDR=IPV6:2001:db8::1 DESTADDR=IPv6:2001:DB8::1 destport=24"), 0);
	assert_memory_equal(x->addr.b, v6, 16);
	assert_memory_equal(x->destaddr.b, v6, 16);
	assert_int_equal(x->destport, 24);
	assert_str(x->attr[SORA_SMTP_XCLIENT_ADDR].value, "IPV6:2001:db8::1");
	assert_int_equal(parse("xclient addr=2001:db8::1"), 0);
	assert_memory_equal(x->addr.b, v6, 16);

	/* Special values, also when xtext-encoded. */
	assert_int_equal(parse("XCLIENT NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE] REVERSE_NAME=[TEMPUNAVAIL]"), 0);
	assert_int_equal(x->attr[SORA_SMTP_XCLIENT_NAME].state, SORA_SMTP_XCLIENT_UNAVAILABLE);
	assert_int_equal(x->attr[SORA_SMTP_XCLIENT_ADDR].state, SORA_SMTP_XCLIENT_UNAVAILABLE);
	assert_int_equal(x->attr[SORA_SMTP_XCLIENT_REVERSE_NAME].state, SORA_SMTP_XCLIENT_TEMPUNAVAIL);
	assert_int_equal(parse("XCLIENT NAME=+5BTEMPUNAVAIL+5D LOGIN=[UNAVAILABLE]"), 0);
	assert_int_equal(x->attr[SORA_SMTP_XCLIENT_NAME].state, SORA_SMTP_XCLIENT_TEMPUNAVAIL);
	assert_int_equal(x->attr[SORA_SMTP_XCLIENT_LOGIN].state, SORA_SMTP_XCLIENT_UNAVAILABLE);

	/* xtext decoding: spaces and UTF-8 in a login or HELO. */
	assert_int_equal(parse("XCLIENT HELO=a+20b LOGIN=j+C3+B6rg"), 0);
	assert_str(x->attr[SORA_SMTP_XCLIENT_HELO].value, "a b");
	assert_str(x->attr[SORA_SMTP_XCLIENT_LOGIN].value, "j\xc3\xb6rg");
	assert_int_equal(parse("XCLIENT PORT=0 DESTPORT=65535"), 0);
	assert_int_equal(x->port, 0);
	assert_int_equal(x->destport, 65535);

	static const char *const bad_value[] = {
		"ADDR=[TEMPUNAVAIL]", "PORT=65536", "PORT=-1", "PORT=x", "PORT=000001",
		"ADDR=999.1.1.1", "ADDR=1.2.3", "ADDR=IPV6:1.2.3.4", "ADDR=IPV6:",
		"ADDR=localhost", "LOGIN=a+00b", "LOGIN=+ZZ", "LOGIN=a+0", "LOGIN=",
		"HELO=a+0Db", "NAME=bad..name", "NAME=a+20b", "PROTO=E-SMTP",
		"PROTO=ABCDEFGHIJKLMNOPQ", "LOGIN=x LOGIN=y", "addr=1.2.3.4 ADDR=1.2.3.4",
		"LOGIN=\xff", "LOGIN=+FF",
	};
	char line[200];
	for (size_t i = 0; i < sizeof(bad_value) / sizeof(bad_value[0]); i++) {
		int r;
		snprintf(line, sizeof(line), "XCLIENT %s", bad_value[i]);
		r = parse(line);
		if (r != SORA_SMTP_ERR_BAD_PARAM)
			fail_msg("%s: got %d", line, r);
	}
	assert_int_equal(parse("XCLIENT FOO=bar"), SORA_SMTP_ERR_UNKNOWN_PARAM);
	assert_str(C.bad_param, "FOO");
	assert_status(SORA_SMTP_ERR_UNKNOWN_PARAM, SORA_SMTP_CMD_XCLIENT, 501, "5.5.4");
	assert_int_equal(parse("XCLIENT ADDR"), SORA_SMTP_ERR_SYNTAX);
	assert_int_equal(parse("XCLIENT"), SORA_SMTP_ERR_SYNTAX);
	assert_int_equal(parse("XCLIENT   "), SORA_SMTP_ERR_SYNTAX);
	assert_string_equal(sora_smtp_xclient_attr_name(SORA_SMTP_XCLIENT_DESTPORT), "DESTPORT");
}

static void test_xclient_long_values(void **state)
{
	/* Two values of 240 octets: every value is decoded into the command's
	 * scratch space, and both fit. */
	char line[SORA_SMTP_MAX_LINE];
	size_t n = (size_t)snprintf(line, sizeof(line), "XCLIENT LOGIN=");

	memset(line + n, 'a', 240);
	n += 240;
	n += (size_t)snprintf(line + n, sizeof(line) - n, " HELO=");
	memset(line + n, 'b', 240);
	n += 240;
	assert_int_equal(parse_n(line, n), 0);
	assert_int_equal(C.xclient.attr[SORA_SMTP_XCLIENT_LOGIN].value.len, 240);
	assert_int_equal(C.xclient.attr[SORA_SMTP_XCLIENT_HELO].value.len, 240);
	assert_int_equal(C.xclient.attr[SORA_SMTP_XCLIENT_HELO].value.p[239], 'b');
	assert_int_equal(C.xclient.attr[SORA_SMTP_XCLIENT_LOGIN].value.p[0], 'a');

	/* 255 decoded octets is the cap. */
	n = (size_t)snprintf(line, sizeof(line), "XCLIENT LOGIN=");
	memset(line + n, 'a', 255);
	assert_int_equal(parse_n(line, n + 255), 0);
	line[n + 255] = 'a';
	assert_int_equal(parse_n(line, n + 256), SORA_SMTP_ERR_BAD_PARAM);
}

/* ---- helpers ---- */

static void test_path_parse(void **state)
{
	struct sora_smtp_path p;
	const char *err;

	assert_int_equal(sora_smtp_path_parse(SORA_STR("<a@b.example>"), true, &p, &err), 0);
	assert_str(p.mailbox, "a@b.example");
	assert_int_equal(sora_smtp_path_parse(SORA_STR("<a@b.example> x"), true, &p, &err),
			 SORA_SMTP_ERR_SYNTAX);
	assert_int_equal(sora_smtp_path_parse(SORA_STR("a@b.example"), true, &p, &err),
			 SORA_SMTP_ERR_SYNTAX);
	assert_int_equal(sora_smtp_path_parse(SORA_STR(""), true, &p, &err), SORA_SMTP_ERR_SYNTAX);
	assert_int_equal(sora_smtp_path_parse(SORA_STR("<>"), false, &p, &err), 0);
	assert_true(p.null_path);
	assert_int_equal(sora_smtp_path_parse(SORA_STR("<>"), true, &p, &err),
			 SORA_SMTP_ERR_BAD_ADDRESS);
	assert_int_equal(sora_smtp_path_parse(SORA_STR("<a..b@c.example>"), false, &p, NULL), 0);
}

static void test_subaddress(void **state)
{
	struct sora_smtp_subaddress s;

	assert_int_equal(sora_smtp_subaddress_split(SORA_STR("user+detail@example.com"), 0, &s), 0);
	assert_true(s.has_detail);
	assert_str(s.user, "user");
	assert_str(s.detail, "detail");
	assert_str(s.domain, "example.com");
	assert_str(s.base, "user@example.com");
	assert_string_equal(s.base_buf, "user@example.com");

	assert_int_equal(sora_smtp_subaddress_split(SORA_STR("user@example.com"), '+', &s), 0);
	assert_false(s.has_detail);
	assert_str(s.base, "user@example.com");
	assert_int_equal(s.detail.len, 0);

	/* Empty detail is a detail (RFC 5233: ":detail" matches ""). */
	assert_int_equal(sora_smtp_subaddress_split(SORA_STR("user+@example.com"), 0, &s), 0);
	assert_true(s.has_detail);
	assert_int_equal(s.detail.len, 0);
	assert_str(s.base, "user@example.com");

	/* The first separator splits; the detail may hold more of them. */
	assert_int_equal(sora_smtp_subaddress_split(SORA_STR("a+b+c@example.com"), 0, &s), 0);
	assert_str(s.user, "a");
	assert_str(s.detail, "b+c");

	/* No empty user. */
	assert_int_equal(sora_smtp_subaddress_split(SORA_STR("+foo@example.com"), 0, &s), 0);
	assert_false(s.has_detail);
	assert_str(s.base, "+foo@example.com");

	/* Other separators; the '+' is then an ordinary character. */
	assert_int_equal(sora_smtp_subaddress_split(SORA_STR("user-ext+x@example.com"), '-', &s), 0);
	assert_str(s.user, "user");
	assert_str(s.detail, "ext+x");
	assert_str(s.base, "user@example.com");

	/* An unquoted local part containing '@' splits at the last '@'. */
	assert_int_equal(sora_smtp_subaddress_split(SORA_STR("a@b+c@example.com"), 0, &s), 0);
	assert_str(s.user, "a@b");
	assert_str(s.detail, "c");
	assert_str(s.domain, "example.com");

	assert_int_equal(sora_smtp_subaddress_split(SORA_STR("no-at-sign"), 0, &s), -1);
	{
		char big[300];
		memset(big, 'a', sizeof(big));
		big[5] = '@';
		assert_int_equal(sora_smtp_subaddress_split(sora_str_make(big, 257), 0, &s), -1);
		assert_int_equal(sora_smtp_subaddress_split(sora_str_make(big, 256), 0, &s), 0);
		assert_int_equal(s.base.len, 256);
	}
}

static void test_xtext(void **state)
{
	struct sora_buf b;
	char out[64];
	size_t n;
	const char raw[] = "a+b=c d\x01\xc3\xa9~!";

	sora_buf_init(&b, 0);
	assert_int_equal(sora_smtp_xtext_encode(&b, sora_str_make(raw, sizeof(raw) - 1)), 0);
	assert_int_equal(b.len, strlen("a+2Bb+3Dc+20d+01+C3+A9~!"));
	assert_memory_equal(b.data, "a+2Bb+3Dc+20d+01+C3+A9~!", b.len);
	assert_int_equal(sora_smtp_xtext_decode(sora_buf_str(&b), out, sizeof(out), &n), 0);
	assert_int_equal(n, sizeof(raw) - 1);
	assert_memory_equal(out, raw, n);
	sora_buf_free(&b);

	/* A long value crosses the encoder's internal chunk. */
	{
		char big[300];
		char dec[300];
		memset(big, '+', sizeof(big));
		sora_buf_init(&b, 0);
		assert_int_equal(sora_smtp_xtext_encode(&b, sora_str_make(big, sizeof(big))), 0);
		assert_int_equal(b.len, 900);
		assert_int_equal(sora_smtp_xtext_decode(sora_buf_str(&b), dec, sizeof(dec), &n), 0);
		assert_int_equal(n, 300);
		assert_memory_equal(dec, big, 300);
		sora_buf_free(&b);
		sora_buf_init(&b, 10);
		assert_int_equal(sora_smtp_xtext_encode(&b, sora_str_make(big, sizeof(big))), -1);
		sora_buf_free(&b);
	}

	assert_int_equal(sora_smtp_xtext_decode(SORA_STR("+2b"), out, sizeof(out), &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0], '+');
	assert_int_equal(sora_smtp_xtext_decode(SORA_STR(""), out, sizeof(out), &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(sora_smtp_xtext_decode(SORA_STR("+4"), out, sizeof(out), &n), -1);
	assert_int_equal(sora_smtp_xtext_decode(SORA_STR("+"), out, sizeof(out), &n), -1);
	assert_int_equal(sora_smtp_xtext_decode(SORA_STR("+G0"), out, sizeof(out), &n), -1);
	assert_int_equal(sora_smtp_xtext_decode(SORA_STR("a=b"), out, sizeof(out), &n), -1);
	assert_int_equal(sora_smtp_xtext_decode(SORA_STR("a b"), out, sizeof(out), &n), -1);
	assert_int_equal(sora_smtp_xtext_decode(SORA_STR("\xc3\xa9"), out, sizeof(out), &n), -1);
	assert_int_equal(sora_smtp_xtext_decode(SORA_STR("abc"), out, 2, &n), -1);
}

static void test_domain_valid(void **state)
{
	char d[300];

	assert_true(sora_smtp_domain_valid(SORA_STR("example.com"), true));
	assert_true(sora_smtp_domain_valid(SORA_STR("a"), true));
	assert_true(sora_smtp_domain_valid(SORA_STR("a-b.c--d.example"), true));
	assert_true(sora_smtp_domain_valid(SORA_STR("123.example"), true));
	assert_false(sora_smtp_domain_valid(SORA_STR(""), true));
	assert_false(sora_smtp_domain_valid(SORA_STR("."), true));
	assert_false(sora_smtp_domain_valid(SORA_STR("a..b"), true));
	assert_false(sora_smtp_domain_valid(SORA_STR("-a"), true));
	assert_false(sora_smtp_domain_valid(SORA_STR("a-"), true));
	assert_false(sora_smtp_domain_valid(SORA_STR("a_b"), true));
	assert_true(sora_smtp_domain_valid(SORA_STR("a_b"), false));
	assert_true(sora_smtp_domain_valid(SORA_STR("[127.0.0.1]"), true));
	assert_true(sora_smtp_domain_valid(SORA_STR("[001.002.003.004]"), true));
	assert_false(sora_smtp_domain_valid(SORA_STR("[1.2.3.4.5]"), true));
	assert_false(sora_smtp_domain_valid(SORA_STR("[1.2.3.4 ]"), true));
	assert_false(sora_smtp_domain_valid(SORA_STR("[1234.1.1.1]"), true));
	assert_false(sora_smtp_domain_valid(SORA_STR("[]"), true));
	assert_true(sora_smtp_domain_valid(SORA_STR("[IPv6:::]"), true));
	assert_true(sora_smtp_domain_valid(SORA_STR("[tag:x]"), true));
	assert_false(sora_smtp_domain_valid(SORA_STR("[tag:]"), true));
	assert_false(sora_smtp_domain_valid(SORA_STR("[tag-:x]"), true));
	assert_false(sora_smtp_domain_valid(SORA_STR("[tag:a[b]"), true));
	memset(d, 'a', 63);
	assert_true(sora_smtp_domain_valid(sora_str_make(d, 63), true));
	assert_false(sora_smtp_domain_valid(sora_str_make(d, 64), true));
	assert_int_equal(make_domain(d, 255), 255);
	assert_true(sora_smtp_domain_valid(sora_str_make(d, 255), true));
	assert_int_equal(make_domain(d, 256), 256);
	assert_false(sora_smtp_domain_valid(sora_str_make(d, 256), true));
}

static void test_error_status_default(void **state)
{
	assert_status(-100, SORA_SMTP_CMD_MAIL, 451, "4.3.0");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_endings),
		cmocka_unit_test(test_line_length),
		cmocka_unit_test(test_simple_verbs),
		cmocka_unit_test(test_unknown_verbs),
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_bdat),
		cmocka_unit_test(test_mail_basic),
		cmocka_unit_test(test_mail_syntax_errors),
		cmocka_unit_test(test_bad_addresses),
		cmocka_unit_test(test_quoted_local_part),
		cmocka_unit_test(test_dots_leniency),
		cmocka_unit_test(test_source_route),
		cmocka_unit_test(test_address_literal_domains),
		cmocka_unit_test(test_postmaster_and_null),
		cmocka_unit_test(test_utf8_addresses),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_mail_params),
		cmocka_unit_test(test_unknown_params),
		cmocka_unit_test(test_rcpt_params),
		cmocka_unit_test(test_xclient),
		cmocka_unit_test(test_xclient_long_values),
		cmocka_unit_test(test_path_parse),
		cmocka_unit_test(test_subaddress),
		cmocka_unit_test(test_xtext),
		cmocka_unit_test(test_domain_valid),
		cmocka_unit_test(test_error_status_default),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
