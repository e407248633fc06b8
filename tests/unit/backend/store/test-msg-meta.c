/* Tests for message metadata (backend/store/msg-meta.h): RFC 5322 dates,
 * RFC 5256 base subjects, transfer decoding fed in every split, the header
 * columns and searchable text of real-looking messages, and the offset
 * shift that lets a message be parsed once for every recipient. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/store/msg-meta.h"
#include "common/proto/mime/mime-json.h"

/* ---- dates ---- */

static void check_date(const char *s, int64_t want, int want_tz)
{
	int64_t t = 0;
	int tz = 12345;

	if (sora_msg_date_parse(sora_str_c(s), &t, &tz) != 0)
		fail_msg("date did not parse: %s", s);
	if (t != want || tz != want_tz)
		fail_msg("%s: got %lld tz %d, want %lld tz %d", s, (long long)t, tz,
			 (long long)want, want_tz);
}

static void check_bad_date(const char *s)
{
	int64_t t;
	int tz;

	if (sora_msg_date_parse(sora_str_c(s), &t, &tz) == 0)
		fail_msg("date should not parse: %s", s);
}

static void test_dates(void **state)
{
	check_date("Tue, 1 Jul 2003 10:52:37 +0200", 1057049557, 120);
	check_date("1 Jul 2003 10:52:37 +0200", 1057049557, 120);
	check_date("  Tue,01 Jul 2003 10:52:37 +0200 (CEST)", 1057049557, 120);
	check_date("Tue, 1 Jul 2003 03:52:37 -0500", 1057049557, -300);
	check_date("Tue, 1 Jul 2003 04:52:37 EDT", 1057049557, -240);
	check_date("Tue, 1 JUL 2003 08:52:37 GMT", 1057049557, 0);
	check_date("tuesday, 1 july 2003 08:52:37 UT", 1057049557, 0);
	check_date("Thu, 01 Jan 1970 00:00:00 +0000", 0, 0);
	/* Obsolete years: two digits pivot at 50, three digits add 1900. */
	check_date("Tue, 29 Feb 00 12:00:00 +0000", 951825600, 0);
	check_date("31 Dec 99 23:59:59 +0000", 946684799, 0);
	check_date("1 Jan 49 00:00:00 +0000", 2493072000, 0);
	check_date("1 Jan 050 00:00:00 +0000", -631152000, 0);
	/* Missing seconds and zone, comments and folding white space. */
	check_date("Sun, 10 Mar 2024 07:00 ", 1710054000, 0);
	check_date("Sun, 10 Mar 2024 (a (nested) comment) 07 : 00 : 00 Z", 1710054000, 0);
	check_date("10-Mar-2024 07:00:00 +0000", 1710054000, 0);
	/* Military zones carry no information (RFC 5322 4.3): UTC. */
	check_date("Sun, 10 Mar 2024 07:00:00 A", 1710054000, 0);
	/* A leap second sorts as the last second of its minute. */
	check_date("31 Dec 1999 23:59:60 +0000", 946684799, 0);

	check_bad_date("");
	check_bad_date("yesterday");
	check_bad_date("Tue, 31 Feb 2003 10:00:00 +0000");
	check_bad_date("Tue, 29 Feb 2003 10:00:00 +0000");
	check_bad_date("Tue, 1 Foo 2003 10:00:00 +0000");
	check_bad_date("Tue, 1 Jul 2003 24:00:00 +0000");
	check_bad_date("Tue, 1 Jul 2003 10:60:00 +0000");
	check_bad_date("Tue, 1 Jul 20031 10:00:00 +0000");
	check_bad_date("Tue, 1 Jul 2003 10:00:00 +02");
	check_bad_date("Tue, 1 Jul 2003 10:00:00 +0260");
	check_bad_date("Tue, 0 Jul 2003 10:00:00 +0000");
	check_bad_date("Tue, 1 Jul 2003");
}

/* ---- base subject ---- */

static void check_base(const char *in, const char *want)
{
	struct sora_buf out;

	sora_buf_init(&out, 0);
	assert_int_equal(sora_msg_base_subject(sora_str_c(in), &out), 0);
	if (out.len != strlen(want) || (out.len > 0 && memcmp(out.data, want, out.len) != 0))
		fail_msg("base subject of \"%s\": got \"%.*s\", want \"%s\"", in, (int)out.len,
			 out.data != NULL ? out.data : "", want);
	sora_buf_free(&out);
}

static void test_base_subject(void **state)
{
	check_base("hello", "hello");
	check_base("Re: hello", "hello");
	check_base("RE: Re: re:hello", "hello");
	check_base("Fwd: Fw: hello", "hello");
	check_base("Re[2]: hello", "hello");
	check_base("[list] Re: hello", "hello");
	check_base("Re: [list] hello", "hello");
	check_base("[list] [other] hello", "hello");
	check_base("hello (fwd)", "hello");
	check_base("hello (FWD) (fwd)  ", "hello");
	check_base("[Fwd: Re: hello]", "hello");
	check_base("Re: [fwd: [list] hello (fwd)]", "hello");
	check_base("  lots\t\r\n of   space  ", "lots of space");
	/* A blob that is the whole subject stays (step 4). */
	check_base("[only a blob]", "[only a blob]");
	check_base("Re: [only a blob]", "[only a blob]");
	check_base("", "");
	check_base("Re:", "");
	/* Not a leader: "re" must be followed by an optional blob and ':'. */
	check_base("Regarding: x", "Regarding: x");
	check_base("Refund", "Refund");
}

/* Base subjects of hostile subjects: every byte value, and shapes that
 * make a careless implementation rescan the string once per step. A
 * subject is network data and is stripped at every delivery; 1 MiB of
 * blobs must take milliseconds, not minutes. */
static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check_base_big(const char *unit, const char *tail, const char *want_tail)
{
	const size_t n = 1024 * 1024 / strlen(unit);
	struct sora_buf in, out;
	double t0;

	sora_buf_init(&in, 0);
	sora_buf_init(&out, 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(sora_buf_append_str(&in, unit), 0);
	assert_int_equal(sora_buf_append_str(&in, tail), 0);
	t0 = now_s();
	assert_int_equal(sora_msg_base_subject(sora_buf_str(&in), &out), 0);
	if (now_s() - t0 > 2.0)
		fail_msg("base subject of %zu x \"%s\" + \"%s\" took %.1f s", n, unit, tail,
			 now_s() - t0);
	assert_true(out.len >= strlen(want_tail));
	assert_memory_equal(out.data + out.len - strlen(want_tail), want_tail, strlen(want_tail));
	sora_buf_free(&in);
	sora_buf_free(&out);
}

static void test_base_subject_hostile(void **state)
{
	unsigned char all[256];
	struct sora_buf out;

	/* Every byte value, NUL included: no crash, nothing longer than
	 * the input. */
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	sora_buf_init(&out, 0);
	assert_int_equal(sora_msg_base_subject(sora_str_make((const char *)all, 256), &out), 0);
	assert_true(out.len <= 256);
	sora_buf_free(&out);
	/* Blobs with no leader after them: stripped to the text. */
	check_base_big("[a]", "x", "x");
	check_base_big("[] ", "x", "x");
	/* Blobs before a leader, again and again. */
	check_base_big("[a]Re:", "x", "x");
	check_base_big("Re: ", "x", "x");
	check_base_big("x (fwd)", "", "x");
	/* Unclosed blobs and nested forwards. */
	check_base_big("[a", "", "a");
	check_base_big("[fwd: ", "x", "x");
	check_base_big("[fwd: x]", "", "x");
	/* The loop of steps 2-6 must stop on every shape. */
	check_base("[fwd: ]", "");
	check_base("[fwd:]", "");
	check_base("[]", "[]");
	check_base("[] []", "[]");
	check_base("Re: [] x", "x");
	check_base("(fwd)", "");
	check_base("re", "re");
	check_base("fw:", "");
	check_base("Fwd[x]:Re : y", "y");
}

/* ---- UTF-8 cleaning ---- */

static void test_utf8_clean(void **state)
{
	static const char in[] = "ok \xc3\xa9 bad \xff nul \0 over \xc0\xaf surr \xed\xa0\x80 end";
	static const char want[] = "ok \xc3\xa9 bad \xef\xbf\xbd nul \xef\xbf\xbd over "
				   "\xef\xbf\xbd\xef\xbf\xbd surr \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd end";
	struct sora_buf out;

	sora_buf_init(&out, 0);
	assert_int_equal(sora_msg_utf8_clean(sora_str_make(in, sizeof(in) - 1), &out), 0);
	assert_int_equal(out.len, sizeof(want) - 1);
	assert_memory_equal(out.data, want, out.len);
	sora_buf_free(&out);
}

/* ---- transfer encodings ---- */

/* Decodes in with every two-way split and byte by byte; all must agree. */
static void check_cte(const char *enc, const char *in, const char *want, size_t want_len)
{
	size_t len = strlen(in);

	for (size_t cut = 0; cut <= len + 1; cut++) {
		struct sora_msg_cte_decoder d;
		struct sora_buf out;

		sora_buf_init(&out, 0);
		sora_msg_cte_init(&d, sora_str_c(enc));
		if (cut <= len) {
			assert_int_equal(sora_msg_cte_feed(&d, in, cut, &out), 0);
			assert_int_equal(sora_msg_cte_feed(&d, in + cut, len - cut, &out), 0);
		} else {
			for (size_t i = 0; i < len; i++)
				assert_int_equal(sora_msg_cte_feed(&d, in + i, 1, &out), 0);
		}
		assert_int_equal(sora_msg_cte_finish(&d, &out), 0);
		if (out.len != want_len || (want_len > 0 && memcmp(out.data, want, want_len) != 0))
			fail_msg("%s \"%s\" (cut %zu): got \"%.*s\"", enc, in, cut, (int)out.len,
				 out.data != NULL ? out.data : "");
		sora_buf_free(&out);
	}
}

#define CHECK_CTE(enc, in, want) check_cte(enc, in, want, sizeof(want) - 1)

static void test_cte(void **state)
{
	CHECK_CTE("base64", "aGVsbG8gd29ybGQ=", "hello world");
	CHECK_CTE("base64", "aGVs\r\nbG8g\r\nd29y\r\nbGQ=\r\n", "hello world");
	CHECK_CTE("base64", "aGVs bG8*gd29y!bGQ", "hello world");
	CHECK_CTE("base64", "AAEC", "\x00\x01\x02");
	CHECK_CTE("base64", "aGk=\r\nignored after padding", "hi");
	CHECK_CTE("quoted-printable", "caf=C3=A9 =3D ok", "caf\xc3\xa9 = ok");
	CHECK_CTE("quoted-printable", "soft=\r\nbreak and=\nbare", "softbreak andbare");
	CHECK_CTE("quoted-printable", "a=zzb", "a=zzb");
	CHECK_CTE("quoted-printable", "a==41b", "a=Ab");
	CHECK_CTE("quoted-printable", "a=4", "a=4");
	CHECK_CTE("quoted-printable", "end=", "end=");
	CHECK_CTE("quoted-printable", "x=\ry", "x=\ry");
	/* RFC 2045 6.7: trailing white space is dropped, "=" plus padding
	 * before a line break is a soft break (imaptest fetch-binary-mime-qp). */
	CHECK_CTE("quoted-printable", "hello  \r\nbar", "hello\r\nbar");
	CHECK_CTE("quoted-printable", "foo\t \t= \r\n=62", "foo\t \tb");
	CHECK_CTE("quoted-printable", "foo = \t\nbar", "foo bar");
	CHECK_CTE("quoted-printable", "a = \tb", "a = \tb");
	CHECK_CTE("quoted-printable", "tail  ", "tail");
	CHECK_CTE("quoted-printable", "in  side", "in  side");
	CHECK_CTE("QUOTED-PRINTABLE", "=41=42", "AB");
	CHECK_CTE("7bit", "as=41is", "as=41is");
	CHECK_CTE("x-unknown", "aGk=", "aGk=");
	CHECK_CTE("", "plain", "plain");
}

/* ---- header columns and text ---- */

static const char message1[] =
	"From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>\r\n"
	"To: Keld <keld@dkuug.dk>, \"B. Smith\" <bs@example.com>\r\n"
	"Cc: group: a@b.c, d@e.f;\r\n"
	"Subject: Re: [list] =?utf-8?B?w6lsw6h2ZQ==?= report (fwd)\r\n"
	"Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
	"Message-ID: <1234@local.machine.example>\r\n"
	"In-Reply-To: <parent@x>\r\n"
	"References: <a@x>\r\n <parent@x>\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
	"\r\n"
	"preamble\r\n"
	"--XX\r\n"
	"Content-Type: text/plain; charset=iso-8859-1\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"Caf=E9 cr=E8me\r\n"
	"--XX\r\n"
	"Content-Type: application/octet-stream\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"c2VjcmV0IGJpbmFyeQ==\r\n"
	"--XX\r\n"
	"Content-Type: text/html; charset=utf-8\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"PHA+aMOpPC9wPg==\r\n"
	"--XX--\r\n";

struct mem {
	const char *p;
	size_t len;
	int reads;
	size_t cap;     /* bytes per read at most, 0: as asked (1: byte at a time) */
};

static ssize_t mem_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct mem *m = ctx;

	m->reads++;
	if (m->cap > 0 && len > m->cap)
		len = m->cap;
	if (off >= m->len)
		return 0;
	if (len > m->len - off)
		len = m->len - off;
	memcpy(buf, m->p + off, len);
	return (ssize_t)len;
}

static ssize_t failing_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	return -1;
}

static void assert_buf(const struct sora_buf *b, const char *want)
{
	if (b->len != strlen(want) || (b->len > 0 && memcmp(b->data, want, b->len) != 0))
		fail_msg("got \"%.*s\", want \"%s\"", (int)b->len, b->data != NULL ? b->data : "",
			 want);
}

static void test_meta_headers_and_text(void **state)
{
	struct sora_mime_message *msg = NULL;
	struct sora_msg_meta meta;
	struct mem m = { message1, sizeof(message1) - 1, 0 };
	const char *error;

	assert_int_equal(sora_mime_parse(message1, sizeof(message1) - 1, NULL, &msg, &error), 0);
	sora_msg_meta_init(&meta);
	assert_int_equal(sora_msg_meta_headers(msg, &meta), 0);
	assert_true(meta.has_sent_date);
	assert_int_equal(meta.sent_date, 1057049557);
	assert_buf(&meta.subject, "Re: [list] \xc3\xa9l\xc3\xa8ve report (fwd)");
	assert_buf(&meta.sort_subject, "\xc3\xa9l\xc3\xa8ve report");
	assert_int_equal(meta.sent_tz_min, 120);
	/* The decoded value, then the addresses in normalised form. */
	assert_buf(&meta.from_text, "Andr\xc3\xa9 Pirard <PIRARD@vm1.ulg.ac.be>\n"
		   "Andr\xc3\xa9 Pirard <PIRARD@vm1.ulg.ac.be>");
	assert_buf(&meta.to_text, "Keld <keld@dkuug.dk>, \"B. Smith\" <bs@example.com>\n"
		   "Keld <keld@dkuug.dk>, B. Smith <bs@example.com>");
	assert_buf(&meta.cc_text, "group: a@b.c, d@e.f;\n<a@b.c>, <d@e.f>");
	assert_buf(&meta.message_id, "<1234@local.machine.example>");
	assert_buf(&meta.in_reply_to, "<parent@x>");
	assert_buf(&meta.references, "<a@x> <parent@x>");
	assert_buf(&meta.sort_from, "PIRARD");
	assert_buf(&meta.sort_to, "keld");
	/* A group comes first as its start marker, as in IMAP's ENVELOPE:
	 * its addr-mailbox is the group name (RFC 5256 2.2; Dovecot and
	 * imaptest's sort-addresses agree). */
	assert_buf(&meta.sort_cc, "group");
	assert_buf(&meta.sort_display_from, "Andr\xc3\xa9 Pirard");
	assert_buf(&meta.sort_display_to, "Keld");

	assert_int_equal(sora_msg_meta_text(msg, mem_read, &m, &meta), 0);
	/* Text parts only, decoded and converted; the attachment is left out. */
	assert_buf(&meta.text_body, "Caf\xc3\xa9 cr\xc3\xa8me\n<p>h\xc3\xa9</p>");
	assert_int_equal(sora_msg_meta_text(msg, failing_read, NULL, &meta), -1);
	sora_msg_meta_free(&meta);
	sora_mime_message_free(&msg);
}

/* The RFC 5256 / RFC 5957 sort keys of address fields: the first
 * address as ENVELOPE lists it, groups by name (encoded words decoded),
 * and none of the placeholders the address parser fills into broken
 * addresses. */
static void check_sort_keys(const char *from, const char *want_mailbox, const char *want_display)
{
	struct sora_mime_message *msg = NULL;
	struct sora_msg_meta meta;
	struct sora_buf raw;
	const char *error;

	sora_buf_init(&raw, 0);
	sora_buf_printf(&raw, "From: %s\r\nTo: %s\r\nCc: %s\r\n\r\nbody\r\n", from, from, from);
	assert_int_equal(sora_mime_parse(raw.data, raw.len, NULL, &msg, &error), 0);
	sora_msg_meta_init(&meta);
	assert_int_equal(sora_msg_meta_headers(msg, &meta), 0);
	if (meta.sort_from.len != strlen(want_mailbox) ||
	    memcmp(meta.sort_from.data != NULL ? meta.sort_from.data : "", want_mailbox,
		   meta.sort_from.len) != 0 ||
	    meta.sort_display_from.len != strlen(want_display) ||
	    memcmp(meta.sort_display_from.data != NULL ? meta.sort_display_from.data : "",
		   want_display, meta.sort_display_from.len) != 0)
		fail_msg("From: %s: got \"%.*s\" / \"%.*s\", want \"%s\" / \"%s\"", from,
			 (int)meta.sort_from.len, meta.sort_from.data != NULL ? meta.sort_from.data : "",
			 (int)meta.sort_display_from.len,
			 meta.sort_display_from.data != NULL ? meta.sort_display_from.data : "",
			 want_mailbox, want_display);
	assert_buf(&meta.sort_to, want_mailbox);
	assert_buf(&meta.sort_cc, want_mailbox);
	assert_buf(&meta.sort_display_to, want_display);
	sora_msg_meta_free(&meta);
	sora_mime_message_free(&msg);
	sora_buf_free(&raw);
}

static void test_sort_keys_of_addresses(void **state)
{
	check_sort_keys("foo bar <a@b.c>", "a", "foo bar");
	check_sort_keys("b@c.d", "b", "b@c.d");
	check_sort_keys("=?iso-8859-1?q?foo_=E9ar?= <e@f.g>", "e", "foo \xc3\xa9" "ar");
	check_sort_keys("user2@domain2.org (foo bar)", "user2", "foo bar");
	check_sort_keys("a: xx@xx.org, yy@yy.org;", "a", "a");
	check_sort_keys("empty:;", "empty", "empty");
	check_sort_keys("=?utf-8?q?T=C3=A9am?=: x@y.z;", "T\xc3\xa9" "am", "T\xc3\xa9" "am");
	check_sort_keys("x@y.z, a: b@c.d;", "x", "x@y.z");
	/* Broken addresses: no "MISSING_DOMAIN" / "MISSING_MAILBOX". */
	check_sort_keys("d", "d", "d");
	check_sort_keys("Name <@example.com>", "", "Name");
	check_sort_keys("", "", "");
}

static void test_meta_minimal_message(void **state)
{
	static const char raw[] = "no header here, just text\r\n";
	struct sora_mime_message *msg = NULL;
	struct sora_msg_meta meta;
	struct mem m = { raw, sizeof(raw) - 1, 0 };
	const char *error;

	assert_int_equal(sora_mime_parse(raw, sizeof(raw) - 1, NULL, &msg, &error), 0);
	sora_msg_meta_init(&meta);
	assert_int_equal(sora_msg_meta_headers(msg, &meta), 0);
	assert_false(meta.has_sent_date);
	assert_int_equal(meta.subject.len, 0);
	assert_int_equal(meta.sort_from.len, 0);
	assert_int_equal(sora_msg_meta_text(msg, mem_read, &m, &meta), 0);
	sora_msg_meta_free(&meta);
	sora_mime_message_free(&msg);
}

/* Regression: UBSan "applying zero offset to null pointer" in
 * sora_msg_date_parse() (a message without a Date header hands it
 * SORA_STR_NULL) and utf8_clean_capped() (an empty text part, or any empty
 * sora_buf, has no data pointer). Four of the six msg-meta fuzz seeds hit
 * it; they are fed here exactly as fuzz-msg-meta feeds them. Only a build
 * whose UBSan checks pointer overflow (clang: make asan) sees the bug. */
static const char *const ub_seeds[] = {
	"aGVsbG8gd29y\r\nbGQ=\r\n",                         /* b64-1 */
	"Tue, 1 Jul 2003 10:52:37 +0200",                     /* date1 */
	"From: =?ISO-8859-1?Q?Andr=E9?= <a@b.c>\r\n"          /* msg1 */
	"To: x@y, g: a@b;\r\nSubject: Re: test\r\nDate: 1 Jan 99 00:00 EST\r\n"
	"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
	"--XX\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9\r\n"
	"--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nbody\r\n"
	"--XX--\r\n",
	"Subject: lf\nFrom: a@b\n\nline\n",                     /* msg2 */
	"caf=C3=A9 soft=\r\nbreak =zz",                        /* qp1 */
	"Re: [list] Fwd: [fwd: hello (fwd)]",                 /* subj1 */
};

static void test_null_strings_no_ub(void **state)
{
	struct sora_buf out, subj;
	int64_t t;
	int tz;

	(void)state;
	/* The two functions, called directly with what an empty buffer or a
	 * missing header gives them. */
	sora_buf_init(&out, 0);
	assert_int_equal(sora_msg_date_parse(SORA_STR_NULL, &t, &tz), -1);
	assert_int_equal(sora_msg_utf8_clean(SORA_STR_NULL, &out), 0);
	assert_int_equal(sora_msg_utf8_clean(sora_buf_str(&out), &out), 0);
	assert_int_equal(out.len, 0);

	for (size_t i = 0; i < sizeof(ub_seeds) / sizeof(ub_seeds[0]); i++) {
		const char *raw = ub_seeds[i];
		struct mem m = { raw, strlen(raw), 0 };
		struct sora_mime_message *msg = NULL;
		struct sora_msg_meta meta;
		const char *error;

		(void)sora_msg_date_parse(sora_str_c(raw), &t, &tz);
		sora_buf_init(&subj, 0);
		assert_int_equal(sora_msg_base_subject(sora_str_c(raw), &subj), 0);
		sora_buf_free(&subj);
		assert_int_equal(sora_mime_parse(raw, m.len, NULL, &msg, &error), 0);
		sora_msg_meta_init(&meta);
		assert_int_equal(sora_msg_meta_headers(msg, &meta), 0);
		assert_int_equal(sora_msg_meta_text(msg, mem_read, &m, &meta), 0);
		/* The fuzz target re-cleans every column, most of them empty. */
		sora_buf_reset(&out);
		assert_int_equal(sora_msg_utf8_clean(sora_buf_str(&meta.message_id), &out), 0);
		assert_int_equal(out.len, meta.message_id.len);
		assert_int_equal(sora_msg_utf8_clean(sora_buf_str(&meta.references), &out), 0);
		sora_msg_meta_free(&meta);
		sora_mime_message_free(&msg);
	}
	sora_buf_free(&out);
}

static void test_meta_binary_garbage_is_valid_utf8(void **state)
{
	static const char raw[] =
		"Subject: bad \xff\xfe bytes \0 and nul\r\n"
		"From: \"\xc3\x28\" <x@y>\r\n"
		"Message-ID: <\x80@y>\r\n"
		"Content-Type: text/plain; charset=x-unknown\r\n"
		"MIME-Version: 1.0\r\n"
		"\r\n"
		"body \xff\x00 text\r\n";
	struct sora_mime_message *msg = NULL;
	struct sora_msg_meta meta;
	struct mem m = { raw, sizeof(raw) - 1, 0 };
	const char *error;
	struct sora_buf *all[] = { &meta.subject, &meta.from_text, &meta.message_id,
				   &meta.sort_display_from, &meta.text_body };

	assert_int_equal(sora_mime_parse(raw, sizeof(raw) - 1, NULL, &msg, &error), 0);
	sora_msg_meta_init(&meta);
	assert_int_equal(sora_msg_meta_headers(msg, &meta), 0);
	assert_int_equal(sora_msg_meta_text(msg, mem_read, &m, &meta), 0);
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		struct sora_buf clean;

		assert_null(memchr(all[i]->data != NULL ? all[i]->data : "", '\0', all[i]->len));
		sora_buf_init(&clean, 0);
		sora_msg_utf8_clean(sora_buf_str(all[i]), &clean);
		assert_int_equal(clean.len, all[i]->len);
		sora_buf_free(&clean);
	}
	assert_true(meta.text_body.len > 0);
	sora_msg_meta_free(&meta);
	sora_mime_message_free(&msg);
}

static void test_text_is_capped(void **state)
{
	size_t body = SORA_MSG_TEXT_MAX + 100000;
	char *raw = malloc(body + 64);
	struct sora_mime_message *msg = NULL;
	struct sora_msg_meta meta;
	struct mem m;
	const char *error;
	int n = snprintf(raw, 64, "Subject: big\r\n\r\n");

	/* Multi-byte characters so the cut must respect their boundaries. */
	for (size_t i = 0; i + 2 <= body; i += 2) {
		raw[n + i] = (char)0xc3;
		raw[n + i + 1] = (char)0xa9;
	}
	m.p = raw;
	m.len = (size_t)n + body;
	m.reads = 0;
	m.cap = 0;
	assert_int_equal(sora_mime_parse(raw, m.len, NULL, &msg, &error), 0);
	sora_msg_meta_init(&meta);
	assert_int_equal(sora_msg_meta_text(msg, mem_read, &m, &meta), 0);
	assert_true(meta.text_body.len <= SORA_MSG_TEXT_MAX);
	assert_true(meta.text_body.len >= SORA_MSG_TEXT_MAX - 1);
	assert_int_equal(meta.text_body.len % 2, 0);
	sora_msg_meta_free(&meta);
	sora_mime_message_free(&msg);
	free(raw);
}

/* An unencoded UTF-8 part is cleaned straight from the read buffer: a
 * sequence cut by the end of a read (64 KiB, or shorter reads) must come
 * out exactly as if the part had been cleaned at once, invalid bytes and
 * a sequence cut off by the end of the part included. */
static void test_text_across_read_boundaries(void **state)
{
	static const char *const pieces[] = {
		"\xe2\x82\xac", "a", "\xf0\x9f\x98\x80", "\xc3\xa9", "\xff", "bc\r\n",
		"\xe2\x82", "\xed\xa0\x80", "\xc3", "\x80\x80", "\xf4\x90\x80\x80",
	};
	static const char head[] = "Subject: t\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
	size_t body = 200000, hl = sizeof(head) - 1;
	static const size_t caps[] = { 0, 7, 1 };

	for (size_t variant = 0; variant < 2; variant++) {
		char *raw = malloc(hl + body + 8);
		struct sora_buf want;
		size_t n = 0;

		memcpy(raw, head, hl);
		for (size_t k = 0; n + 4 <= body; k++) {
			const char *pc = pieces[(k * 7 + variant) % (sizeof(pieces) / sizeof(pieces[0]))];

			memcpy(raw + hl + n, pc, strlen(pc));
			n += strlen(pc);
		}
		/* The part ends inside a sequence in the second variant. */
		if (variant == 1)
			raw[hl + n++] = (char)0xf0;
		sora_buf_init(&want, 0);
		assert_int_equal(sora_msg_utf8_clean(sora_str_make(raw + hl, n), &want), 0);
		for (size_t r = 0; r < sizeof(caps) / sizeof(caps[0]); r++) {
			struct sora_mime_message *msg = NULL;
			struct sora_msg_meta meta;
			struct mem m = { raw, hl + n, 0, caps[r] };
			const char *error;

			assert_int_equal(sora_mime_parse(raw, m.len, NULL, &msg, &error), 0);
			sora_msg_meta_init(&meta);
			assert_int_equal(sora_msg_meta_text(msg, mem_read, &m, &meta), 0);
			assert_int_equal(meta.text_body.len, want.len);
			assert_memory_equal(meta.text_body.data, want.data, want.len);
			sora_msg_meta_free(&meta);
			sora_mime_message_free(&msg);
		}
		sora_buf_free(&want);
		free(raw);
	}
}

/* ---- the prefix shift ---- */

static char *json_of(const struct sora_mime_message *msg)
{
	struct sora_buf b;
	const char *error;
	char *s;

	sora_buf_init(&b, 0);
	assert_int_equal(sora_mime_json_serialize(msg, 0, &b, &error), 0);
	s = calloc(1, b.len + 1);
	memcpy(s, b.data, b.len);
	sora_buf_free(&b);
	return s;
}

/* Parsing prefix+raw must give the same structure as parsing raw and
 * shifting; and shifting to another prefix length must too. */
static void check_shift(const char *raw, size_t len)
{
	static const char *const prefixes[] = {
		"Return-Path: <a@b>\r\nDelivered-To: x@y\r\n",
		"Received: from h ([127.0.0.1])\r\n\tby mx (Sora) with LMTP id 1\r\n\tfor <x@y>; now\r\n",
		"X: y\r\n",
	};
	struct sora_mime_message *once = NULL;
	const char *error;
	int64_t shifted = 0;

	assert_int_equal(sora_mime_parse(raw, len, NULL, &once, &error), 0);
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t plen = strlen(prefixes[i]);
		char *whole = malloc(plen + len + 1);
		struct sora_mime_message *full = NULL;
		char *a, *b;

		memcpy(whole, prefixes[i], plen);
		memcpy(whole + plen, raw, len);
		assert_int_equal(sora_mime_parse(whole, plen + len, NULL, &full, &error), 0);
		sora_msg_mime_shift(once, (int64_t)plen - shifted);
		shifted = (int64_t)plen;
		a = json_of(once);
		b = json_of(full);
		if (strcmp(a, b) != 0)
			fail_msg("shift differs for prefix %zu:\n shifted %s\n parsed  %s", i, a, b);
		free(a);
		free(b);
		sora_mime_message_free(&full);
		free(whole);
	}
	sora_mime_message_free(&once);
}

static void test_shift_matches_reparse(void **state)
{
	static const char nested[] =
		"Subject: outer\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n"
		"--a\r\nContent-Type: message/rfc822\r\n\r\n"
		"Subject: inner\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"
		"--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n--b\r\n"
		"Content-Type: text/html\r\n\r\n<b>x</b>\r\n--b--\r\n"
		"--a\r\nContent-Type: text/plain\r\n\r\nlast\n--a--\r\nepilogue";
	static const char bare_lf[] = "Subject: lf\nFrom: a@b\n\nline\nline\n";

	check_shift(message1, sizeof(message1) - 1);
	check_shift(nested, sizeof(nested) - 1);
	check_shift(bare_lf, sizeof(bare_lf) - 1);
	check_shift("", 0);
	check_shift("\r\n", 2);
	check_shift("\r\nbody only\r\n", 13);
	check_shift("Subject: no body", 16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_base_subject),
		cmocka_unit_test(test_base_subject_hostile),
		cmocka_unit_test(test_sort_keys_of_addresses),
		cmocka_unit_test(test_utf8_clean),
		cmocka_unit_test(test_cte),
		cmocka_unit_test(test_meta_headers_and_text),
		cmocka_unit_test(test_meta_minimal_message),
		cmocka_unit_test(test_null_strings_no_ub),
		cmocka_unit_test(test_meta_binary_garbage_is_valid_utf8),
		cmocka_unit_test(test_text_is_capped),
		cmocka_unit_test(test_text_across_read_boundaries),
		cmocka_unit_test(test_shift_matches_reparse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
