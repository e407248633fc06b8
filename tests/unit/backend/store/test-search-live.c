/* Live tests of backend/store/search.h against a real PostgreSQL with the
 * schema applied. Every case runs only when SORA_TEST_PG_HOST,
 * SORA_TEST_PG_PORT and SORA_TEST_PG_DBNAME (and optionally
 * SORA_TEST_PG_USER, default "postgres") are set and is skipped otherwise;
 * tests/integration/test_search.py sets them up and requires every case to
 * pass. Each case works in an account of its own.
 *
 * Messages are inserted with plain SQL (the rows delivery would write), and
 * programs are built by hand as the SEARCH parser would build them, so
 * these tests depend on neither. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/store/search.h"
#include "common/db/db.h"
#include "live-db.h"

/* ---- SQL helpers ---- */

#define MAXP 16

static int64_t new_mailbox(void)
{
	char a[24];
	int64_t acc = q("INSERT INTO accounts DEFAULT VALUES RETURNING id", NULL, NULL, NULL);

	return q("INSERT INTO mailboxes (account_id, name) VALUES ($1, 'INBOX') RETURNING id",
		 s64(a, acc), NULL, NULL);
}

/* A message row. Strings NULL mean the column default ('' / NULL);
 * headers is the raw block in bytea "escape" form (\ooo for any byte),
 * NULL for none; body NULL means no message_contents row. Dates are
 * timestamptz literals. */
struct msg {
	uint32_t uid;
	int flags;
	const char *keywords;   /* array literal, e.g. "{$Junk,Work}" */
	const char *internal;
	const char *sent;
	int64_t size;
	const char *subject, *from, *to, *cc, *bcc, *msgid, *refs;
	const char *headers;
	const char *body;
	int64_t modseq;
	bool expunged;
};

static void add(int64_t mbox, const struct msg *m)
{
	char mb[24], uid[24], size[24], flags[24], mod[24];
	const char *p[MAXP] = {
		s64(mb, mbox), s64(uid, m->uid), s64(flags, m->flags),
		m->keywords != NULL ? m->keywords : "{}",
		m->internal != NULL ? m->internal : "2024-01-01 12:00:00+00",
		m->sent, s64(size, m->size),
		m->subject != NULL ? m->subject : "", m->from != NULL ? m->from : "",
		m->to != NULL ? m->to : "", m->cc != NULL ? m->cc : "",
		m->bcc != NULL ? m->bcc : "", m->msgid != NULL ? m->msgid : "",
		m->refs != NULL ? m->refs : "", m->headers,
		s64(mod, m->modseq > 0 ? m->modseq : 1),
	};
	PGresult *res;

	res = qexec(conn, "INSERT INTO messages (account_id, mailbox_id, uid, content_hash, flags,"
		    " keywords, internal_date, sent_date, size, subject, from_text, to_text,"
		    " cc_text, bcc_text, message_id, references_hdr, raw_headers, created_modseq,"
		    " updated_modseq)"
		    " SELECT account_id, id, $2,"
		    " encode(sha256(convert_to(id || '/' || $2::bigint, 'UTF8')),"
		    " 'hex'), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
		    " decode($15, 'escape'), 1, $16 FROM mailboxes WHERE id = $1",
		    MAXP, p);
	PQclear(res);
	if (m->body != NULL) {
		const char *pb[3] = { p[0], p[1], m->body };

		PQclear(qexec(conn, "INSERT INTO message_contents (content_hash, text_body)"
			      " VALUES (encode(sha256(convert_to($1 || '/' || $2, 'UTF8')),"
			      " 'hex'), $3)",
			      3, pb));
	}
	if (m->expunged) {
		const char *pe[2] = { p[0], p[1] };

		PQclear(qexec(conn, "UPDATE messages SET expunged_at = now(), expunged_modseq ="
			      " updated_modseq WHERE mailbox_id = $1 AND uid = $2", 2, pe));
	}
}

/* ---- programs built by hand ---- */

/* Everything a test's keys allocate; freed after each search. */
static void *arena[4096];
static size_t narena;

static void *arena_alloc(size_t size)
{
	void *p = calloc(1, size);

	assert_non_null(p);
	assert_true(narena < sizeof(arena) / sizeof(arena[0]));
	arena[narena++] = p;
	return p;
}

static void arena_free(void)
{
	while (narena > 0)
		free(arena[--narena]);
}

typedef struct sora_imap_search_key key_t_;

static key_t_ K(enum sora_imap_search_type t)
{
	return (key_t_){ .type = t };
}

static key_t_ KS(enum sora_imap_search_type t, const char *s)
{
	return (key_t_){ .type = t, .str = (char *)s };
}

static key_t_ KN(enum sora_imap_search_type t, uint64_t n)
{
	return (key_t_){ .type = t, .number = n };
}

static key_t_ KF(enum sora_imap_search_type t, unsigned int flag)
{
	return (key_t_){ .type = t, .flag = flag };
}

static key_t_ KH(const char *name, const char *value)
{
	return (key_t_){ .type = SORA_SEARCH_HEADER, .header = (char *)name, .str = (char *)value };
}

/* A sequence or UID set from its IMAP syntax ("$" too). */
static key_t_ KSET(enum sora_imap_search_type t, const char *set)
{
	key_t_ k = { .type = t };
	const char *error = NULL;

	if (strcmp(set, "$") == 0) {
		k.set.last_result = true;
		return k;
	}
	if (sora_imap_seqset_parse(sora_str_c(set), false, 1000, &k.set, &error) != 0)
		fail_msg("set %s: %s", set, error);
	if (k.set.ranges != NULL)
		arena[narena++] = k.set.ranges;
	return k;
}

static key_t_ NOT(key_t_ a)
{
	key_t_ k = { .type = SORA_SEARCH_NOT, .child_count = 1 };

	k.children = arena_alloc(sizeof(key_t_));
	k.children[0] = a;
	return k;
}

static key_t_ OR(key_t_ a, key_t_ b)
{
	key_t_ k = { .type = SORA_SEARCH_OR, .child_count = 2 };

	k.children = arena_alloc(2 * sizeof(key_t_));
	k.children[0] = a;
	k.children[1] = b;
	return k;
}

static key_t_ AND2(key_t_ a, key_t_ b)
{
	key_t_ k = { .type = SORA_SEARCH_AND, .child_count = 2 };

	k.children = arena_alloc(2 * sizeof(key_t_));
	k.children[0] = a;
	k.children[1] = b;
	return k;
}

/* Day number of a date. */
static uint64_t day(const char *date)
{
	return (uint64_t)q("SELECT $1::date - '1970-01-01'::date", date, NULL, NULL);
}

/* ---- the session's view ---- */

static uint32_t view_uids[20000];
static struct sora_search_view view;

/* The view a SELECT would give: every live UID of the mailbox. */
static void view_load(int64_t mbox)
{
	char m[24];
	const char *p[1] = { s64(m, mbox) };
	PGresult *res = qexec(conn, "SELECT uid FROM messages WHERE mailbox_id = $1 AND"
			      " expunged_at IS NULL ORDER BY uid", 1, p);
	int i;

	assert_true(PQntuples(res) <= (int)(sizeof(view_uids) / sizeof(view_uids[0])));
	memset(&view, 0, sizeof(view));
	for (i = 0; i < PQntuples(res); i++)
		view_uids[i] = (uint32_t)strtoul(PQgetvalue(res, i, 0), NULL, 10);
	view.uids = view_uids;
	view.count = (size_t)PQntuples(res);
	PQclear(res);
}

static void view_set(const uint32_t *uids, size_t count)
{
	if (count > 0)
		memcpy(view_uids, uids, count * sizeof(*uids));
	view.uids = view_uids;
	view.count = count;
}

/* ---- running ---- */

static void search(int64_t mbox, key_t_ key, size_t max, struct sora_search_result *res)
{
	struct sora_imap_search_program prog = { 0 };
	struct sora_error err = { 0 };

	prog.root.type = SORA_SEARCH_AND;
	prog.root.children = &key;
	prog.root.child_count = 1;
	prog.has_modseq = true;
	if (sora_search_run(conn, mbox, &prog, &view, max, res, &err) != 0)
		fail_msg("search failed: class %d: %s", err.cls, err.msg);
}

static void uids_str(const struct sora_msgs_uids *u, char *buf, size_t size)
{
	size_t i, o = 0;

	buf[0] = '\0';
	for (i = 0; i < u->count && o + 12 < size; i++)
		o += (size_t)snprintf(buf + o, size - o, "%s%" PRIu32, i > 0 ? "," : "",
				      u->uids[i]);
}

/* Runs key and compares the UIDs with want ("1,3,5", "" for none). */
#define expect(mbox, key, want) expect_at(__LINE__, mbox, key, want)
static void expect_at(int line, int64_t mbox, key_t_ key, const char *want)
{
	struct sora_search_result res;
	char got[4096];

	search(mbox, key, 0, &res);
	arena_free();
	uids_str(&res.uids, got, sizeof(got));
	if (strcmp(got, want) != 0)
		fail_msg("line %d: got \"%s\", wanted \"%s\"", line, got, want);
	assert_int_equal(res.total, res.uids.count);
	assert_false(res.truncated);
	sora_search_result_free(&res);
}

/* ---- the common data set ---- */

static int64_t fixture(void)
{
	int64_t mb = new_mailbox();
	const struct msg msgs[] = {
		{ .uid = 1, .flags = 1, .keywords = "{$Junk,Work}",
		  .internal = "2024-03-01 10:00:00+00", .sent = "2024-02-28 23:30:00+00",
		  .size = 1000, .subject = "Quarterly report",
		  .from = "Alice Smith <alice@example.com>", .to = "bob@example.org",
		  .msgid = "<a1@example.com>",
		  .headers = "From: Alice Smith <alice@example.com>\r\nTo: bob@example.org\r\n"
			     "Subject: Quarterly report\r\nX-Priority: 1 (Highest)\r\n"
			     "X-Mailer: Foo\r\n Mail 2.0\r\n\r\n",
		  .body = "Numbers are up this quarter.", .modseq = 10 },
		{ .uid = 2, .flags = 6, .keywords = "{work}", .internal = "2024-03-02 00:00:00+00",
		  .size = 2000, .subject = "Grüße aus München",
		  .from = "Jörg Müller <joerg@example.de>", .to = "alice@example.com",
		  .cc = "carol@example.net",
		  .headers = "From: =?utf-8?q?J=C3=B6rg?= <joerg@example.de>\r\n"
			     "X-Spam-Flag: YES\r\nX-Note: caf\\303\\251 GR\\303\\234SSE\r\n\r\n",
		  .body = "ÜBER den Straßen", .modseq = 20 },
		{ .uid = 3, .flags = 8, .internal = "2024-03-03 23:59:59+00",
		  .sent = "2024-03-03 12:00:00+00", .size = 3000, .subject = "100% off_sale",
		  .from = "Shop <shop@example.com>", .bcc = "hidden@example.com",
		  .headers = "From: Shop <shop@example.com>\r\nX-Bad: a\\000b\r\n"
			     "X-Spam-Flag: YES\r\n\r\n",
		  .body = "Use code a_b and get 50% off", .modseq = 30 },
		{ .uid = 4, .flags = 16, .internal = "2024-04-01 00:00:00+00", .size = 4000,
		  .subject = "'; DROP TABLE messages; --", .from = "Mallory <m@example.com>",
		  .to = "x", .msgid = "<mid-4@x>", .refs = "<a1@example.com>", .modseq = 40 },
		{ .uid = 5, .internal = "now", .size = 500, .subject = "recent",
		  .headers = "Subject: recent\r\nX-Score: 30\r\n\r\n", .body = "The weather is nice",
		  .modseq = 50 },
		{ .uid = 6, .size = 100, .subject = "Quarterly report",
		  .from = "Alice <alice@example.com>", .body = "quarter weather",
		  .modseq = 60, .expunged = true },
		{ .uid = 7, .flags = 1, .keywords = "{$Important}", .size = 999,
		  .subject = "\\backslash", .body = "path C:\\temp and 100%", .modseq = 15 },
	};
	size_t i;

	for (i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++)
		add(mb, &msgs[i]);
	/* Relative dates for WITHIN. */
	{
		char m[24];

		q("UPDATE messages SET internal_date = now() - interval '10 days'"
		  " WHERE mailbox_id = $1 AND uid = 7 RETURNING 1", s64(m, mb), NULL, NULL);
		q("UPDATE messages SET internal_date = now() - interval '1 hour'"
		  " WHERE mailbox_id = $1 AND uid = 5 RETURNING 1", s64(m, mb), NULL, NULL);
	}
	view_load(mb);
	return mb;
}

/* ---- cases ---- */

static void test_flags_keywords(void **state)
{
	int64_t mb;

	need_db();
	mb = fixture();
	expect(mb, K(SORA_SEARCH_ALL), "1,2,3,4,5,7");
	expect(mb, KF(SORA_SEARCH_FLAG, SORA_IMAP_FLAG_SEEN), "1,7");
	expect(mb, KF(SORA_SEARCH_UNFLAG, SORA_IMAP_FLAG_SEEN), "2,3,4,5");
	expect(mb, KF(SORA_SEARCH_FLAG, SORA_IMAP_FLAG_ANSWERED), "2");
	expect(mb, KF(SORA_SEARCH_UNFLAG, SORA_IMAP_FLAG_ANSWERED), "1,3,4,5,7");
	expect(mb, KF(SORA_SEARCH_FLAG, SORA_IMAP_FLAG_FLAGGED), "2");
	expect(mb, KF(SORA_SEARCH_FLAG, SORA_IMAP_FLAG_DELETED), "3");
	expect(mb, KF(SORA_SEARCH_UNFLAG, SORA_IMAP_FLAG_DELETED), "1,2,4,5,7");
	expect(mb, KF(SORA_SEARCH_FLAG, SORA_IMAP_FLAG_DRAFT), "4");
	expect(mb, KF(SORA_SEARCH_UNFLAG, SORA_IMAP_FLAG_DRAFT), "1,2,3,5,7");
	expect(mb, KS(SORA_SEARCH_KEYWORD, "WORK"), "1,2");
	expect(mb, KS(SORA_SEARCH_KEYWORD, "$junk"), "1");
	expect(mb, KS(SORA_SEARCH_KEYWORD, "$Important"), "7");
	expect(mb, KS(SORA_SEARCH_KEYWORD, "nothing"), "");
	expect(mb, KS(SORA_SEARCH_KEYWORD, "%"), "");
	expect(mb, KS(SORA_SEARCH_UNKEYWORD, "work"), "3,4,5,7");
	expect(mb, KS(SORA_SEARCH_UNKEYWORD, "nothing"), "1,2,3,4,5,7");
}

static void test_dates_sizes(void **state)
{
	int64_t mb;

	need_db();
	mb = fixture();
	expect(mb, KN(SORA_SEARCH_BEFORE, day("2024-03-02")), "1");
	expect(mb, KN(SORA_SEARCH_BEFORE, day("2024-03-01")), "");
	expect(mb, KN(SORA_SEARCH_ON, day("2024-03-02")), "2");
	/* 23:59:59 UTC is still that day. */
	expect(mb, KN(SORA_SEARCH_ON, day("2024-03-03")), "3");
	expect(mb, KN(SORA_SEARCH_SINCE, day("2024-03-02")), "2,3,4,5,7");
	expect(mb, KN(SORA_SEARCH_SINCE, day("2024-03-04")), "4,5,7");
	/* Beyond every representable date: clamped, not an error. */
	expect(mb, KN(SORA_SEARCH_SINCE, (uint64_t)INT64_MAX), "");
	expect(mb, KN(SORA_SEARCH_BEFORE, (uint64_t)INT64_MAX), "1,2,3,4,5,7");
	expect(mb, KN(SORA_SEARCH_ON, (uint64_t)INT64_MAX), "");
	/* Day numbers are signed (imap-search.h): before 1970 is negative. */
	expect(mb, KN(SORA_SEARCH_SINCE, (uint64_t)(int64_t)-1), "1,2,3,4,5,7");
	expect(mb, KN(SORA_SEARCH_BEFORE, (uint64_t)(int64_t)-1), "");
	expect(mb, KN(SORA_SEARCH_SINCE, (uint64_t)INT64_MIN), "1,2,3,4,5,7");
	/* SENT*: the Date: header, else the internal date. */
	expect(mb, KN(SORA_SEARCH_SENTBEFORE, day("2024-03-01")), "1");
	expect(mb, KN(SORA_SEARCH_SENTON, day("2024-02-28")), "1");
	expect(mb, KN(SORA_SEARCH_SENTON, day("2024-03-02")), "2");
	expect(mb, KN(SORA_SEARCH_SENTON, day("2024-03-03")), "3");
	expect(mb, KN(SORA_SEARCH_SENTSINCE, day("2024-03-03")), "3,4,5,7");
	expect(mb, KN(SORA_SEARCH_SENTSINCE, day("2024-03-01")), "2,3,4,5,7");
	/* Sizes are strict. */
	expect(mb, KN(SORA_SEARCH_LARGER, 1000), "2,3,4");
	expect(mb, KN(SORA_SEARCH_LARGER, 999), "1,2,3,4");
	expect(mb, KN(SORA_SEARCH_SMALLER, 1000), "5,7");
	expect(mb, KN(SORA_SEARCH_SMALLER, 0), "");
	expect(mb, KN(SORA_SEARCH_LARGER, UINT64_MAX), "");
	expect(mb, KN(SORA_SEARCH_SMALLER, UINT64_MAX), "1,2,3,4,5,7");
	/* WITHIN: seconds back from now. */
	expect(mb, KN(SORA_SEARCH_YOUNGER, 86400), "5");
	expect(mb, KN(SORA_SEARCH_OLDER, 86400), "1,2,3,4,7");
	expect(mb, KN(SORA_SEARCH_YOUNGER, 30 * 86400), "5,7");
	expect(mb, KN(SORA_SEARCH_OLDER, UINT64_MAX), "");
	expect(mb, KN(SORA_SEARCH_YOUNGER, UINT64_MAX), "1,2,3,4,5,7");
}

static void test_address_subject_body(void **state)
{
	int64_t mb;

	need_db();
	mb = fixture();
	/* from_text holds display names and addresses. */
	expect(mb, KS(SORA_SEARCH_FROM, "alice"), "1");
	expect(mb, KS(SORA_SEARCH_FROM, "SMITH"), "1");
	expect(mb, KS(SORA_SEARCH_FROM, "@EXAMPLE.COM"), "1,3,4");
	/* Decoded and case-insensitive beyond ASCII. */
	expect(mb, KS(SORA_SEARCH_FROM, "MÜLLER"), "2");
	expect(mb, KS(SORA_SEARCH_FROM, "jörg"), "2");
	expect(mb, KS(SORA_SEARCH_TO, "alice"), "2");
	expect(mb, KS(SORA_SEARCH_TO, "bob@"), "1");
	expect(mb, KS(SORA_SEARCH_CC, "CAROL"), "2");
	expect(mb, KS(SORA_SEARCH_CC, "alice"), "");
	expect(mb, KS(SORA_SEARCH_BCC, "hidden"), "3");
	expect(mb, KS(SORA_SEARCH_SUBJECT, "quarterly"), "1");
	expect(mb, KS(SORA_SEARCH_SUBJECT, "GRÜßE"), "2");
	expect(mb, KS(SORA_SEARCH_SUBJECT, "MÜNCHEN"), "2");
	/* LIKE's pattern characters match only themselves. */
	expect(mb, KS(SORA_SEARCH_SUBJECT, "%"), "3");
	expect(mb, KS(SORA_SEARCH_SUBJECT, "0%"), "3");
	expect(mb, KS(SORA_SEARCH_SUBJECT, "f_s"), "3");
	expect(mb, KS(SORA_SEARCH_SUBJECT, "o_f"), "");
	expect(mb, KS(SORA_SEARCH_SUBJECT, "_"), "3");
	expect(mb, KS(SORA_SEARCH_SUBJECT, "\\"), "7");
	expect(mb, KS(SORA_SEARCH_SUBJECT, "\\b"), "7");
	expect(mb, KS(SORA_SEARCH_SUBJECT, ""), "1,2,3,4,5,7");
	/* Body text (message_contents). */
	expect(mb, KS(SORA_SEARCH_BODY, "QUARTER"), "1");
	expect(mb, KS(SORA_SEARCH_BODY, "über"), "2");
	expect(mb, KS(SORA_SEARCH_BODY, "STRAßEN"), "2");
	expect(mb, KS(SORA_SEARCH_BODY, "a_b"), "3");
	expect(mb, KS(SORA_SEARCH_BODY, "a%b"), "");
	expect(mb, KS(SORA_SEARCH_BODY, "50%"), "3");
	expect(mb, KS(SORA_SEARCH_BODY, "%"), "3,7");
	expect(mb, KS(SORA_SEARCH_BODY, "c:\\temp"), "7");
	expect(mb, KS(SORA_SEARCH_BODY, "weather"), "5");
	/* No stored text: BODY "" matches (empty string), NOT BODY works. */
	expect(mb, KS(SORA_SEARCH_BODY, ""), "1,2,3,4,5,7");
	expect(mb, NOT(KS(SORA_SEARCH_BODY, "weather")), "1,2,3,4,7");
	/* TEXT: headers or body. */
	expect(mb, KS(SORA_SEARCH_TEXT, "quarterly"), "1");
	expect(mb, KS(SORA_SEARCH_TEXT, "QUARTER"), "1");
	expect(mb, KS(SORA_SEARCH_TEXT, "x-mailer"), "1");
	expect(mb, KS(SORA_SEARCH_TEXT, "münchen"), "2");
	expect(mb, KS(SORA_SEARCH_TEXT, "weather"), "5");
	expect(mb, KS(SORA_SEARCH_TEXT, "mid-4"), "4");
	expect(mb, KS(SORA_SEARCH_TEXT, "x-spam-flag"), "2");
	expect(mb, KS(SORA_SEARCH_TEXT, "%"), "3,7");
	expect(mb, NOT(KS(SORA_SEARCH_TEXT, "example")), "5,7");
}

static void test_header(void **state)
{
	int64_t mb;

	need_db();
	mb = fixture();
	expect(mb, KH("X-Priority", "highest"), "1");
	expect(mb, KH("x-priority", ""), "1");
	expect(mb, KH("X-PRIORITY", "1 (H"), "1");
	/* The name must start the line and be the whole name. */
	expect(mb, KH("Priority", ""), "");
	expect(mb, KH("X-Prio", ""), "");
	expect(mb, KH("X.Priority", ""), "");
	expect(mb, KH("X-Priority", "Foo"), "");
	/* Continuation lines belong to the field. */
	expect(mb, KH("X-Mailer", "mail 2.0"), "1");
	expect(mb, KH("X-Mailer", "2.0"), "1");
	expect(mb, KH("X-Mailer", "2.1"), "");
	expect(mb, KH("X-Mailer", "2x0"), "");
	/* Field 3's block has a NUL: only its columns can be searched. */
	expect(mb, KH("X-Spam-Flag", ""), "2");
	expect(mb, KH("X-Spam-Flag", "yes"), "2");
	expect(mb, KH("X-Bad", ""), "");
	/* 8-bit bytes match as bytes; ASCII folds. */
	expect(mb, KH("X-Note", "café"), "2");
	expect(mb, KH("X-Note", "gr"), "2");
	expect(mb, KH("X-Note", "grÜsse"), "2");
	/* No false matches inside other bytes. */
	expect(mb, KH("X-Score", "30"), "5");
	expect(mb, KH("X-Note", "303"), "");
	expect(mb, KH("X-Note", "\\"), "");
	/* Fields with a column use it (decoded). */
	expect(mb, KH("From", "alice@"), "1");
	expect(mb, KH("from", "MÜLLER"), "2");
	expect(mb, KH("Subject", "DROP TABLE"), "4");
	expect(mb, KH("Message-ID", "MID-4"), "4");
	expect(mb, KH("References", "a1@"), "4");
	expect(mb, KH("In-Reply-To", "a1@"), "");
	expect(mb, KH("To", "%"), "");
	/* Presence: the block, else a non-empty column. */
	expect(mb, KH("From", ""), "1,2,3,4");
	expect(mb, KH("Subject", ""), "1,3,4,5,7");
	expect(mb, KH("Bcc", ""), "3");
	/* Regular expression characters in names and values are literal. */
	expect(mb, KH("X-Mailer.*", ""), "");
	expect(mb, KH(".*", ""), "");
	expect(mb, KH("X-Priority", "(highest)"), "1");
	expect(mb, KH("X-Priority", ".*"), "");
	expect(mb, KH("X-Priority", "[1]"), "");
}

static void test_modseq_nesting(void **state)
{
	struct sora_search_result res;
	int64_t mb;

	need_db();
	mb = fixture();
	expect(mb, KN(SORA_SEARCH_MODSEQ, 30), "3,4,5");
	expect(mb, KN(SORA_SEARCH_MODSEQ, 51), "");
	expect(mb, KN(SORA_SEARCH_MODSEQ, UINT64_MAX), "");
	search(mb, KN(SORA_SEARCH_MODSEQ, 11), 0, &res);
	arena_free();
	assert_int_equal(res.uids.count, 5);
	assert_int_equal(res.total, 5);
	/* The highest of the live matches (the expunged 60 does not count). */
	assert_int_equal(res.highest_modseq, 50);
	sora_search_result_free(&res);
	search(mb, KF(SORA_SEARCH_FLAG, SORA_IMAP_FLAG_SEEN), 0, &res);
	arena_free();
	assert_int_equal(res.highest_modseq, 15);
	sora_search_result_free(&res);
	search(mb, KS(SORA_SEARCH_SUBJECT, "no such"), 0, &res);
	arena_free();
	assert_int_equal(res.uids.count, 0);
	assert_int_equal(res.total, 0);
	assert_false(res.truncated);
	assert_int_equal(res.highest_modseq, 0);
	assert_null(res.uids.uids);
	sora_search_result_free(&res);

	expect(mb, OR(KF(SORA_SEARCH_FLAG, SORA_IMAP_FLAG_SEEN),
		      KF(SORA_SEARCH_FLAG, SORA_IMAP_FLAG_DELETED)), "1,3,7");
	expect(mb, NOT(OR(KF(SORA_SEARCH_FLAG, SORA_IMAP_FLAG_SEEN),
			  KF(SORA_SEARCH_FLAG, SORA_IMAP_FLAG_DELETED))), "2,4,5");
	expect(mb, AND2(KS(SORA_SEARCH_FROM, "@example.com"),
			NOT(OR(KF(SORA_SEARCH_FLAG, SORA_IMAP_FLAG_SEEN),
			       KN(SORA_SEARCH_LARGER, 3500)))), "3");
	expect(mb, NOT(NOT(NOT(K(SORA_SEARCH_ALL)))), "");
	expect(mb, NOT(NOT(KS(SORA_SEARCH_KEYWORD, "work"))), "1,2");
	expect(mb, OR(OR(KN(SORA_SEARCH_MODSEQ, 50), KS(SORA_SEARCH_BCC, "hidden")),
		      AND2(KS(SORA_SEARCH_BODY, "quarter"), NOT(KS(SORA_SEARCH_TEXT, "nothing")))),
	       "1,3,5");
	/* An empty AND is true. */
	expect(mb, (key_t_){ .type = SORA_SEARCH_AND }, "1,2,3,4,5,7");
	/* Several top-level keys are ANDed. */
	{
		key_t_ keys[2] = { KF(SORA_SEARCH_FLAG, SORA_IMAP_FLAG_SEEN),
				   KS(SORA_SEARCH_KEYWORD, "Work") };
		struct sora_imap_search_program prog = { 0 };
		struct sora_error err = { 0 };

		prog.root.type = SORA_SEARCH_AND;
		prog.root.children = keys;
		prog.root.child_count = 2;
		assert_int_equal(sora_search_run(conn, mb, &prog, &view, 0, &res, &err), 0);
		assert_int_equal(res.uids.count, 1);
		assert_int_equal(res.uids.uids[0], 1);
		/* Without MODSEQ in the program no modseq is reported. */
		assert_int_equal(res.highest_modseq, 0);
		sora_search_result_free(&res);
	}
	/* Deep nesting within the parser's limit works. */
	{
		key_t_ k = K(SORA_SEARCH_ALL);
		int i;

		for (i = 0; i < SORA_IMAP_SEARCH_DEPTH_MAX - 1; i++)
			k = NOT(k);
		expect(mb, k, SORA_IMAP_SEARCH_DEPTH_MAX % 2 == 0 ? "" : "1,2,3,4,5,7");
	}
}

static void test_malformed_program(void **state)
{
	struct sora_imap_search_program prog = { 0 };
	struct sora_search_result res;
	struct sora_error err = { 0 };
	key_t_ bad[] = {
		{ .type = SORA_SEARCH_OR, .child_count = 0 },
		{ .type = SORA_SEARCH_FLAG, .flag = 32 },
		{ .type = SORA_SEARCH_FLAG, .flag = 0 },
		{ .type = SORA_SEARCH_FROM },
		{ .type = SORA_SEARCH_HEADER, .str = (char *)"x" },
		{ .type = (enum sora_imap_search_type)999 },
	};
	size_t i;
	int64_t mb;

	need_db();
	mb = new_mailbox();
	prog.root.type = SORA_SEARCH_AND;
	prog.root.child_count = 1;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		prog.root.children = &bad[i];
		assert_int_equal(sora_search_run(conn, mb, &prog, &view, 0, &res, &err), -1);
		assert_int_equal(err.cls, SORA_ERR_INVALID);
		assert_null(res.uids.uids);
	}
	/* Deeper than the parser allows. */
	{
		key_t_ k = K(SORA_SEARCH_ALL);
		int d;

		for (d = 0; d < SORA_IMAP_SEARCH_DEPTH_MAX + 5; d++)
			k = NOT(k);
		prog.root.children = &k;
		assert_int_equal(sora_search_run(conn, mb, &prog, &view, 0, &res, &err), -1);
		assert_int_equal(err.cls, SORA_ERR_INVALID);
		arena_free();
	}
}

static void test_sets_and_view(void **state)
{
	static const uint32_t stale[] = { 1, 2, 3, 4, 5, 6, 7 };
	static const uint32_t saved1[] = { 2, 3, 5 };
	static const uint32_t saved2[] = { 1, 2, 3, 5, 7 };
	static const uint32_t saved3[] = { 6, 9 };
	int64_t mb, empty;

	need_db();
	mb = fixture();
	/* view: 1 2 3 4 5 7 (sequence numbers 1..6). */
	expect(mb, KSET(SORA_SEARCH_SEQSET, "1"), "1");
	expect(mb, KSET(SORA_SEARCH_SEQSET, "2:3"), "2,3");
	expect(mb, KSET(SORA_SEARCH_SEQSET, "3,1"), "1,3");
	expect(mb, KSET(SORA_SEARCH_SEQSET, "*"), "7");
	expect(mb, KSET(SORA_SEARCH_SEQSET, "6"), "7");
	expect(mb, KSET(SORA_SEARCH_SEQSET, "5:*"), "5,7");
	expect(mb, KSET(SORA_SEARCH_SEQSET, "*:5"), "5,7");
	/* 7:* is 6:7 here; 7 itself is past the end. */
	expect(mb, KSET(SORA_SEARCH_SEQSET, "7:*"), "7");
	expect(mb, KSET(SORA_SEARCH_SEQSET, "7"), "");
	expect(mb, KSET(SORA_SEARCH_SEQSET, "7:100"), "");
	expect(mb, KSET(SORA_SEARCH_SEQSET, "4:100"), "4,5,7");
	expect(mb, KSET(SORA_SEARCH_SEQSET, "1:*"), "1,2,3,4,5,7");
	expect(mb, KSET(SORA_SEARCH_SEQSET, "1,3,5"), "1,3,5");
	expect(mb, NOT(KSET(SORA_SEARCH_SEQSET, "2:5")), "1,7");
	/* UIDs: "*" is the last UID of the view. */
	expect(mb, KSET(SORA_SEARCH_UIDSET, "2:4"), "2,3,4");
	expect(mb, KSET(SORA_SEARCH_UIDSET, "*"), "7");
	expect(mb, KSET(SORA_SEARCH_UIDSET, "5:*"), "5,7");
	expect(mb, KSET(SORA_SEARCH_UIDSET, "100:*"), "7");
	expect(mb, KSET(SORA_SEARCH_UIDSET, "6"), "");
	expect(mb, KSET(SORA_SEARCH_UIDSET, "8:9"), "");
	expect(mb, KSET(SORA_SEARCH_UIDSET, "1:4294967295"), "1,2,3,4,5,7");
	expect(mb, KSET(SORA_SEARCH_UIDSET, "4294967295"), "");
	expect(mb, KSET(SORA_SEARCH_UIDSET, "1,3,5:6,9"), "1,3,5");
	/* A view that still shows an expunged message: its number stays,
	 * the message never matches. */
	view_set(stale, 7);
	expect(mb, KSET(SORA_SEARCH_SEQSET, "6"), "");
	expect(mb, KSET(SORA_SEARCH_SEQSET, "6:*"), "7");
	view_load(mb);
	/* "$", in both places. */
	view.saved = saved1;
	view.saved_count = 3;
	expect(mb, KSET(SORA_SEARCH_SEQSET, "$"), "2,3,5");
	expect(mb, KSET(SORA_SEARCH_UIDSET, "$"), "2,3,5");
	expect(mb, NOT(KSET(SORA_SEARCH_UIDSET, "$")), "1,4,7");
	/* Neighbours in the view merge into ranges; 4 is not saved. */
	view.saved = saved2;
	view.saved_count = 5;
	expect(mb, KSET(SORA_SEARCH_SEQSET, "$"), "1,2,3,5,7");
	/* Saved UIDs expunged since, or unknown to the view. */
	view.saved = saved3;
	view.saved_count = 2;
	expect(mb, KSET(SORA_SEARCH_SEQSET, "$"), "");
	view.saved = NULL;
	view.saved_count = 0;
	expect(mb, KSET(SORA_SEARCH_SEQSET, "$"), "");
	expect(mb, OR(KSET(SORA_SEARCH_SEQSET, "$"), KSET(SORA_SEARCH_SEQSET, "1")), "1");
	/* \Recent. */
	view.first_recent = 5;
	expect(mb, K(SORA_SEARCH_RECENT), "5,7");
	expect(mb, K(SORA_SEARCH_NEW), "5");
	expect(mb, K(SORA_SEARCH_OLD), "1,2,3,4");
	view.first_recent = 8;
	expect(mb, K(SORA_SEARCH_RECENT), "");
	expect(mb, K(SORA_SEARCH_OLD), "1,2,3,4,5,7");
	view.first_recent = 0;
	expect(mb, K(SORA_SEARCH_RECENT), "");
	expect(mb, K(SORA_SEARCH_NEW), "");
	expect(mb, K(SORA_SEARCH_OLD), "1,2,3,4,5,7");

	/* An empty view: "*" names nothing; plain UIDs still do. */
	view_set(NULL, 0);
	expect(mb, KSET(SORA_SEARCH_SEQSET, "*"), "");
	expect(mb, KSET(SORA_SEARCH_SEQSET, "1:*"), "");
	expect(mb, KSET(SORA_SEARCH_UIDSET, "*"), "");
	expect(mb, KSET(SORA_SEARCH_UIDSET, "1:3"), "1,2,3");
	/* An empty mailbox. */
	empty = new_mailbox();
	view_load(empty);
	expect(empty, K(SORA_SEARCH_ALL), "");
	expect(empty, KSET(SORA_SEARCH_UIDSET, "1:*"), "");
	expect(empty, KSET(SORA_SEARCH_SEQSET, "*"), "");
	/* A NULL view is an empty one. */
	{
		struct sora_imap_search_program prog = { 0 };
		struct sora_search_result res;
		struct sora_error err = { 0 };
		key_t_ k = KSET(SORA_SEARCH_SEQSET, "1:*");

		prog.root.type = SORA_SEARCH_AND;
		prog.root.children = &k;
		prog.root.child_count = 1;
		assert_int_equal(sora_search_run(conn, mb, &prog, NULL, 0, &res, &err), 0);
		assert_int_equal(res.uids.count, 0);
		arena_free();
	}
	/* Other mailboxes never match. */
	view_load(mb);
	expect(empty, KS(SORA_SEARCH_SUBJECT, "quarterly"), "");
}

static void test_injection_literal(void **state)
{
	int64_t mb;

	need_db();
	mb = fixture();
	expect(mb, KS(SORA_SEARCH_SUBJECT, "'; DROP TABLE messages; --"), "4");
	expect(mb, KS(SORA_SEARCH_TEXT, "'; DROP TABLE messages; --"), "4");
	expect(mb, KS(SORA_SEARCH_BODY, "'; DROP TABLE messages; --"), "");
	expect(mb, KS(SORA_SEARCH_KEYWORD, "'); DROP TABLE messages; --"), "");
	expect(mb, KH("X-A'); DROP TABLE messages;--", "x"), "");
	expect(mb, KH("X-A'); DROP TABLE messages;--", ""), "");
	expect(mb, KH("Subject", "'; DROP TABLE messages; --"), "4");
	expect(mb, KS(SORA_SEARCH_FROM, "$1"), "");
	expect(mb, KS(SORA_SEARCH_FROM, "\\'"), "");
	/* Still there, all of it. */
	expect(mb, K(SORA_SEARCH_ALL), "1,2,3,4,5,7");
	assert_int_equal(q("SELECT count(*) FROM messages WHERE mailbox_id = $1",
			   s64((char[24]){ 0 }, mb), NULL, NULL), 7);
}

static void test_cap_and_total(void **state)
{
	struct sora_search_result res;
	char m[24];
	int64_t mb;

	need_db();
	mb = new_mailbox();
	q("INSERT INTO messages (account_id, mailbox_id, uid, content_hash, size, subject,"
	  " updated_modseq)"
	  " SELECT account_id, id, g, encode(sha256(convert_to(id || '/' || g, 'UTF8')), 'hex'),"
	  " g, CASE WHEN g % 10 = 0 THEN 'other' ELSE 'bulk ' || g END, g"
	  " FROM mailboxes, generate_series(1, 1700) g WHERE id = $1 RETURNING 1",
	  s64(m, mb), NULL, NULL);
	view_load(mb);
	assert_int_equal(view.count, 1700);

	/* 1530 match ("bulk"); 1000 come back. */
	search(mb, KS(SORA_SEARCH_SUBJECT, "BULK"), 0, &res);
	arena_free();
	assert_int_equal(res.uids.count, SORA_SEARCH_MAX_RESULTS);
	assert_int_equal(res.total, 1530);
	assert_true(res.truncated);
	assert_int_equal(res.uids.uids[0], 1);
	assert_int_equal(res.uids.uids[8], 9);
	assert_int_equal(res.uids.uids[9], 11);
	for (size_t i = 1; i < res.uids.count; i++)
		assert_true(res.uids.uids[i] > res.uids.uids[i - 1]);
	/* The highest modseq of every match, not only of those returned. */
	assert_int_equal(res.highest_modseq, 1699);
	/* The same for the highest UID (ESEARCH MAX past the cap). */
	assert_int_equal(res.max_uid, 1699);
	sora_search_result_free(&res);

	/* uid_max: messages past the session's view do not match, and do
	 * not count in total or max_uid. */
	view.uid_max = 1500;
	search(mb, KS(SORA_SEARCH_SUBJECT, "bulk"), 0, &res);
	arena_free();
	view.uid_max = 0;
	assert_int_equal(res.uids.count, SORA_SEARCH_MAX_RESULTS);
	assert_int_equal(res.total, 1350);
	assert_int_equal(res.max_uid, 1499);
	assert_true(res.truncated);
	sora_search_result_free(&res);

	/* A smaller cap; a larger one is held at the limit. */
	search(mb, KS(SORA_SEARCH_SUBJECT, "bulk"), 10, &res);
	arena_free();
	assert_int_equal(res.uids.count, 10);
	assert_int_equal(res.total, 1530);
	assert_true(res.truncated);
	sora_search_result_free(&res);
	search(mb, KS(SORA_SEARCH_SUBJECT, "bulk"), 5000, &res);
	arena_free();
	assert_int_equal(res.uids.count, SORA_SEARCH_MAX_RESULTS);
	sora_search_result_free(&res);
	/* Exactly at the cap is not truncated. */
	search(mb, KSET(SORA_SEARCH_UIDSET, "701:*"), 0, &res);
	arena_free();
	assert_int_equal(res.uids.count, 1000);
	assert_int_equal(res.total, 1000);
	assert_false(res.truncated);
	sora_search_result_free(&res);

	/* A window past the cap (RETURN (PARTIAL)): matches 1001..1010 of
	 * 1530 in UID order; every tenth UID is not a match, so the 1001st
	 * match is UID 1112. */
	{
		struct sora_imap_search_program prog = { 0 };
		struct sora_error err = { 0 };
		key_t_ k = KS(SORA_SEARCH_SUBJECT, "bulk");

		prog.root.type = SORA_SEARCH_AND;
		prog.root.children = &k;
		prog.root.child_count = 1;
		assert_int_equal(sora_search_run_window(conn, mb, &prog, &view, 1000, 10, &res, &err), 0);
		assert_int_equal(res.uids.count, 10);
		assert_int_equal(res.uids.uids[0], 1112);
		assert_int_equal(res.uids.uids[9], 1122);
		assert_int_equal(res.total, 1530);
		assert_true(res.truncated);
		sora_search_result_free(&res);
		/* The last 30, and past the end: nothing, not truncated. */
		assert_int_equal(sora_search_run_window(conn, mb, &prog, &view, 1500, 100, &res, &err), 0);
		assert_int_equal(res.uids.count, 30);
		assert_int_equal(res.uids.uids[29], 1699);
		assert_false(res.truncated);
		sora_search_result_free(&res);
		assert_int_equal(sora_search_run_window(conn, mb, &prog, &view, 1530, 100, &res, &err), 0);
		assert_int_equal(res.uids.count, 0);
		assert_false(res.truncated);
		sora_search_result_free(&res);
		arena_free();
	}

	/* 1:* is one range, whatever the size of the view. */
	search(mb, KSET(SORA_SEARCH_SEQSET, "1:*"), 0, &res);
	arena_free();
	assert_int_equal(res.total, 1700);
	assert_int_equal(res.uids.count, 1000);
	sora_search_result_free(&res);
	/* A saved result of 1700 UIDs, and one of every other UID (850
	 * ranges in one parameter). */
	{
		static uint32_t every_other[850];
		size_t i;

		view.saved = view_uids;
		view.saved_count = view.count;
		search(mb, KSET(SORA_SEARCH_SEQSET, "$"), 0, &res);
		arena_free();
		assert_int_equal(res.total, 1700);
		sora_search_result_free(&res);
		for (i = 0; i < 850; i++)
			every_other[i] = (uint32_t)(2 * i + 1);
		view.saved = every_other;
		view.saved_count = 850;
		search(mb, AND2(KSET(SORA_SEARCH_UIDSET, "$"), KN(SORA_SEARCH_SMALLER, 21)), 0,
		       &res);
		arena_free();
		{
			char got[256];

			uids_str(&res.uids, got, sizeof(got));
			assert_string_equal(got, "1,3,5,7,9,11,13,15,17,19");
		}
		sora_search_result_free(&res);
		view.saved = NULL;
		view.saved_count = 0;
	}
	/* Many sequence ranges. */
	{
		key_t_ k = { .type = SORA_SEARCH_SEQSET };
		struct sora_imap_seq_range *r = arena_alloc(900 * sizeof(*r));
		size_t i;

		for (i = 0; i < 900; i++) {
			r[i].lo = (uint32_t)(i * 2 + 1);
			r[i].hi = (uint32_t)(i * 2 + 1);
		}
		k.set.ranges = r;
		k.set.count = 900;
		search(mb, k, 0, &res);
		arena_free();
		assert_int_equal(res.total, 850);
		sora_search_result_free(&res);
	}
}

/* One measurement on a mailbox of 10,000 messages with bodies of about
 * 2 KB: BODY word and FROM x, printed for the record. */
static double ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static void test_timing_10k(void **state)
{
	struct sora_search_result res;
	struct timespec t0;
	char m[24];
	double body_ms, from_ms, text_ms;
	int64_t mb;

	need_db();
	mb = new_mailbox();
	q("INSERT INTO message_contents (content_hash, text_body)"
	  " SELECT encode(sha256(convert_to($1 || '/' || g, 'UTF8')), 'hex'),"
	  " repeat('lorem ipsum dolor sit amet consectetur adipiscing elit ', 36) ||"
	  " CASE WHEN g % 100 = 0 THEN ' zanzibar ' ELSE '' END || g"
	  " FROM generate_series(1, 10000) g RETURNING 1", s64(m, mb), NULL, NULL);
	q("INSERT INTO messages (account_id, mailbox_id, uid, content_hash, size, subject,"
	  " from_text, raw_headers)"
	  " SELECT account_id, id, g, encode(sha256(convert_to(id || '/' || g, 'UTF8')), 'hex'),"
	  " 3000, 'message ' || g, 'Sender ' || (g % 500) || ' <s' || (g % 500) || '@example.com>',"
	  " convert_to('From: s' || (g % 500) || '@example.com' || E'\\r\\nSubject: message ' || g"
	  " || E'\\r\\nX-Filler: ' || repeat('x', 500) || E'\\r\\n\\r\\n', 'UTF8')"
	  " FROM mailboxes, generate_series(1, 10000) g WHERE id = $1 RETURNING 1",
	  s64(m, mb), NULL, NULL);
	q("ANALYZE messages", NULL, NULL, NULL);
	q("ANALYZE message_contents", NULL, NULL, NULL);
	view_load(mb);

	/* Warm the cache once, then measure. */
	search(mb, KS(SORA_SEARCH_BODY, "zanzibar"), 0, &res);
	sora_search_result_free(&res);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	search(mb, KS(SORA_SEARCH_BODY, "zanzibar"), 0, &res);
	body_ms = ms_since(&t0);
	assert_int_equal(res.total, 100);
	sora_search_result_free(&res);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	search(mb, KS(SORA_SEARCH_FROM, "s42@"), 0, &res);
	from_ms = ms_since(&t0);
	assert_int_equal(res.total, 20);
	sora_search_result_free(&res);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	search(mb, KH("X-Filler", "xxxy"), 0, &res);
	text_ms = ms_since(&t0);
	assert_int_equal(res.total, 0);
	sora_search_result_free(&res);
	arena_free();
	print_message("search timing over 10000 messages: BODY %.1f ms, FROM %.1f ms,"
		      " HEADER (raw) %.1f ms\n", body_ms, from_ms, text_ms);
}

/* ---- SORT ---- */

static void sort(int64_t mbox, const struct sora_imap_sort_criterion *crit, size_t n,
		 uint64_t offset, size_t max, struct sora_search_result *res)
{
	struct sora_imap_sort_program prog;
	struct sora_imap_search_key all = { .type = SORA_SEARCH_ALL };
	struct sora_error err = { 0 };

	memset(&prog, 0, sizeof(prog));
	memcpy(prog.criteria, crit, n * sizeof(*crit));
	prog.count = n;
	prog.search.root.type = SORA_SEARCH_AND;
	prog.search.root.children = &all;
	prog.search.root.child_count = 1;
	if (sora_search_sort(conn, mbox, &prog, &view, offset, max, res, &err) != 0)
		fail_msg("sort failed: class %d: %s", err.cls, err.msg);
}

/* The text keys: base subjects compared case-insensitively after NFKD
 * ("\u00c9" is "E" + accent, after "E" alone), "_" after letters (upper
 * case, as i;unicode-casemap titlecases), ties in UID order, REVERSE
 * not reversing the tie order. */
static void test_sort_text_keys(void **state)
{
	static const struct sora_imap_sort_criterion subject[] = { { SORA_SORT_SUBJECT, false } };
	static const struct sora_imap_sort_criterion rsubject[] = { { SORA_SORT_SUBJECT, true } };
	struct sora_search_result res;
	char m[24], buf[128];
	int64_t mb;

	need_db();
	mb = new_mailbox();
	q("INSERT INTO messages (account_id, mailbox_id, uid, content_hash, size, sort_subject)"
	  " SELECT account_id, id, u, repeat('a', 64), 10, s FROM mailboxes,"
	  " (VALUES (1, 'zeta'), (2, '\u00c9mile'), (3, 'emile'), (4, 'alpha'), (5, '_x'),"
	  "  (6, 'Zeta'), (7, 'ALPHA')) v(u, s) WHERE id = $1 RETURNING 1",
	  s64(m, mb), NULL, NULL);
	view_load(mb);
	sort(mb, subject, 1, 0, 0, &res);
	uids_str(&res.uids, buf, sizeof(buf));
	assert_string_equal(buf, "4,7,3,2,1,6,5");
	assert_false(res.truncated);
	sora_search_result_free(&res);
	sort(mb, rsubject, 1, 0, 0, &res);
	uids_str(&res.uids, buf, sizeof(buf));
	assert_string_equal(buf, "5,1,6,2,3,4,7");
	sora_search_result_free(&res);
	/* A window: positions 3..4. */
	sort(mb, subject, 1, 2, 2, &res);
	uids_str(&res.uids, buf, sizeof(buf));
	assert_string_equal(buf, "3,2");
	assert_int_equal(res.total, 7);
	assert_true(res.truncated);
	sora_search_result_free(&res);
}

/* 10,000 messages: one statement per SORT, the text-key sort capped at
 * SORA_SEARCH_MAX_SORT_RESULTS with the exact total, ARRIVAL at
 * SORA_SEARCH_MAX_RESULTS; the timing is printed for the record. */
static void test_sort_10k(void **state)
{
	static const struct sora_imap_sort_criterion from[] = { { SORA_SORT_FROM, false } };
	static const struct sora_imap_sort_criterion arrival[] = { { SORA_SORT_ARRIVAL, true } };
	struct sora_search_result res;
	struct timespec t0;
	char m[24];
	double from_ms, arrival_ms;
	int64_t mb;

	need_db();
	assert_true(sora_search_sort_cap(&(struct sora_imap_sort_program){
			    .criteria = { { SORA_SORT_DATE, false }, { SORA_SORT_CC, false } },
			    .count = 2 }) == SORA_SEARCH_MAX_SORT_RESULTS);
	assert_true(sora_search_sort_cap(&(struct sora_imap_sort_program){
			    .criteria = { { SORA_SORT_DATE, false }, { SORA_SORT_SIZE, true },
					  { SORA_SORT_ARRIVAL, false } },
			    .count = 3 }) == SORA_SEARCH_MAX_RESULTS);
	mb = new_mailbox();
	/* sort_from: a permutation of 0..9999 (7919 is prime to 10,000),
	 * zero-padded so text order is numeric order. */
	q("INSERT INTO messages (account_id, mailbox_id, uid, content_hash, size, internal_date,"
	  " sort_from)"
	  " SELECT account_id, id, g, repeat('b', 64), 1000 + g % 97,"
	  " timestamptz '2020-01-01' + (g % 1000) * interval '1 minute',"
	  " 'u' || lpad(((g * 7919) % 10000)::text, 5, '0')"
	  " FROM mailboxes, generate_series(1, 10000) g WHERE id = $1 RETURNING 1",
	  s64(m, mb), NULL, NULL);
	q("ANALYZE messages", NULL, NULL, NULL);
	view_load(mb);

	sort(mb, from, 1, 0, 0, &res);
	sora_search_result_free(&res);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	sort(mb, from, 1, 0, 0, &res);
	from_ms = ms_since(&t0);
	assert_int_equal(res.uids.count, SORA_SEARCH_MAX_SORT_RESULTS);
	assert_int_equal(res.total, 10000);
	assert_true(res.truncated);
	/* The first 500 in key order: keys u00000.., i.e. g with
	 * g * 7919 % 10000 = 0, 1, 2, ... */
	for (size_t i = 0; i < res.uids.count; i++)
		assert_int_equal((res.uids.uids[i] * 7919u) % 10000u, i);
	sora_search_result_free(&res);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	sort(mb, arrival, 1, 0, 0, &res);
	arrival_ms = ms_since(&t0);
	assert_int_equal(res.uids.count, SORA_SEARCH_MAX_RESULTS);
	assert_int_equal(res.total, 10000);
	/* REVERSE ARRIVAL: the ten messages of minute 999 first, in UID
	 * order (ties are never reversed). */
	assert_int_equal(res.uids.uids[0], 999);
	assert_int_equal(res.uids.uids[1], 1999);
	assert_int_equal(res.uids.uids[9], 9999);
	assert_int_equal(res.uids.uids[10], 998);
	sora_search_result_free(&res);
	print_message("sort timing over 10000 messages: FROM %.1f ms, REVERSE ARRIVAL %.1f ms\n",
		      from_ms, arrival_ms);
}

static int setup(void **state)
{
	return live_db_open("sora-test-search", 2, 60000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flags_keywords),
		cmocka_unit_test(test_dates_sizes),
		cmocka_unit_test(test_address_subject_body),
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_modseq_nesting),
		cmocka_unit_test(test_malformed_program),
		cmocka_unit_test(test_sets_and_view),
		cmocka_unit_test(test_injection_literal),
		cmocka_unit_test(test_cap_and_total),
		cmocka_unit_test(test_timing_10k),
		cmocka_unit_test(test_sort_text_keys),
		cmocka_unit_test(test_sort_10k),
	};

	return cmocka_run_group_tests(tests, setup, live_db_teardown);
}
