/* Live tests of sora_store_append (backend/store/deliver.h: IMAP APPEND,
 * MULTIAPPEND, APPENDUID) against a real PostgreSQL with the schema
 * applied, with an fs blob store in a temp directory. Every case runs only
 * when SORA_TEST_PG_HOST, SORA_TEST_PG_PORT and SORA_TEST_PG_DBNAME (and
 * optionally SORA_TEST_PG_USER, default "postgres") are set and is skipped
 * otherwise; tests/integration/test_append.py sets them up and requires
 * every case to pass. Each case works in an account of its own.
 *
 * Failures inside the transaction are injected by a trigger the setup
 * installs in the (throw-away) test database: inserting a message with the
 * keyword "sora-test-fail", or into a mailbox named "FailHere", raises. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/blob/blob-fs.h"
#include "backend/blob/blob-store.h"
#include "backend/store/deliver.h"
#include "backend/store/mailbox.h"
#include "common/db/db.h"
#include "live-db.h"
#include "tests/unit/backend/blob/blob-test.h"

#define RACE_THREADS 6
#define RACE_OPS 150
#define INSTANCE "test-append"

static char tmpdir[64];

/* The first column of the first row as text (owned by the caller). */
static char *qs(const char *sql, const char *p1)
{
	const char *params[1] = { p1 };
	PGresult *res = qexec(conn, sql, 1, params);
	char *v;

	assert_int_equal(PQntuples(res), 1);
	v = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

/* A message as the IMAP layer would hand it over: the literal in a file. */
struct msg {
	struct sora_store_body body;
	struct sora_store_message m;
	char hash[SORA_BLOB_HASH_HEX_SIZE];  /* the body's: APPEND adds no prefix */
};

static void msg_open(struct msg *x, const char *text)
{
	char path[] = "/tmp/sora-append-msg-XXXXXX";
	struct sora_error err = { 0 };
	int fd = mkstemp(path);
	size_t len = strlen(text);

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	/* The whole struct: body.base was left uninitialised, and once
	 * struct sora_store_message grew the stack garbage under it made
	 * prepare read past the end of the file. */
	memset(x, 0, sizeof(*x));
	x->body.mem = NULL;
	x->body.fd = fd;
	x->body.size = len;
	if (sora_store_message_prepare(&x->m, &x->body, sora_str_c(""), &err) != 0)
		fail_msg("prepare: %s", err.msg);
	sora_blob_hash_buf(text, len, x->hash);
}

static void msg_close(struct msg *x)
{
	sora_store_message_free(&x->m);
	close(x->body.fd);
}

static int sink_discard(void *ctx, const void *data, size_t len)
{
	*(uint64_t *)ctx += len;
	return 0;
}

/* Every committed row of the account has a readable body of its size (a
 * whole read checks the hash). Returns how many rows were checked. */
static int64_t check_bodies(struct sora_blob_store *s, int64_t acc)
{
	char a[24];
	const char *params[1] = { s64(a, acc) };
	struct sora_error err = { 0 };
	PGresult *res = NULL;
	int64_t n;

	ok(sora_db_exec(conn, SORA_DB_CLASS_DEFAULT,
			"SELECT content_hash, size FROM messages WHERE account_id = $1", 1, params,
			&res, NULL, &err), &err);
	n = PQntuples(res);
	for (int i = 0; i < PQntuples(res); i++) {
		uint64_t got = 0;

		if (sora_blob_read(s, acc, PQgetvalue(res, i, 0), 0, SORA_BLOB_TO_END, sink_discard,
				   &got, &err) != 0)
			fail_msg("row %d: body %s: %s", i, PQgetvalue(res, i, 0), err.msg);
		assert_int_equal(got, strtoull(PQgetvalue(res, i, 1), NULL, 10));
	}
	PQclear(res);
	return n;
}

static const char msg1[] =
	"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n"
	"Subject: first draft\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
	"Message-ID: <one@example.org>\r\n\r\nHello Bob.\r\n";
static const char msg2[] = "Subject: second\r\n\r\nbody two\r\n";
static const char msg3[] = "Subject: third\r\n\r\nbody three, a little longer\r\n";

static void test_flags_keywords_date(void **state)
{
	struct sora_blob_store *s;
	struct sora_store_append_result res;
	struct sora_store_append_item it = { 0 };
	struct sora_error err = { 0 };
	struct msg x;
	char a[24], m[24], *kw, *subject;
	int64_t acc, inbox, uid_next, now;

	need_db();
	s = make_fs_store(tmpdir, "flags", false);
	acc = new_account();
	inbox = q("SELECT id FROM mailboxes WHERE account_id = $1 AND name = 'INBOX'",
		  s64(a, acc), NULL, NULL);
	uid_next = q("SELECT uid_next FROM mailboxes WHERE id = $1", s64(m, inbox), NULL, NULL);
	msg_open(&x, msg1);
	it.msg = &x.m;
	it.flags = SORA_STORE_FLAG_SEEN | SORA_STORE_FLAG_FLAGGED | SORA_STORE_FLAG_DRAFT;
	it.keywords = "$Label1 foo  FOO Bar $label1";
	it.internal_date = 1000000000;
	/* Any spelling of INBOX. */
	ok(sora_store_append(conn, s, INSTANCE, acc, "inbox", &it, 1, &res, &err), &err);
	assert_int_equal(res.count, 1);
	assert_int_equal(res.mailbox_id, inbox);
	assert_int_equal(res.uids[0], uid_next);
	assert_int_equal(res.uid_validity,
			 q("SELECT uid_validity FROM mailboxes WHERE id = $1", m, NULL, NULL));
	assert_int_equal(q("SELECT flags FROM messages WHERE mailbox_id = $1", m, NULL, NULL), 21);
	kw = qs("SELECT keywords::text FROM messages WHERE mailbox_id = $1", m);
	assert_string_equal(kw, "{$Label1,foo,Bar}");
	free(kw);
	assert_int_equal(q("SELECT extract(epoch FROM internal_date)::bigint FROM messages"
			   " WHERE mailbox_id = $1", m, NULL, NULL), 1000000000);
	assert_int_equal(q("SELECT size FROM messages WHERE mailbox_id = $1", m, NULL, NULL),
			 (int64_t)strlen(msg1));
	subject = qs("SELECT subject || '|' || message_id || '|' ||"
		     " extract(epoch FROM sent_date)::bigint FROM messages WHERE mailbox_id = $1", m);
	assert_string_equal(subject, "first draft|<one@example.org>|1704103200");
	free(subject);
	/* created and updated modseq are the mailbox's new highest. */
	assert_int_equal(q("SELECT created_modseq FROM messages WHERE mailbox_id = $1", m, NULL,
			   NULL),
			 q("SELECT highest_modseq FROM mailboxes WHERE id = $1", m, NULL, NULL));
	/* Stored as sent: no trace prefix; queued for upload (not direct). */
	assert_int_equal(check_bodies(s, acc), 1);
	assert_int_equal(q("SELECT count(*) FROM pending_uploads WHERE account_id = $1",
			   a, NULL, NULL), 1);
	assert_int_equal(q("SELECT count(*) FROM message_deliveries WHERE mailbox_id = $1",
			   m, NULL, NULL), 0);
	sora_store_append_result_free(&res);
	assert_null(res.uids);

	/* Internal date 0 is now; no keywords. */
	now = (int64_t)time(NULL);
	it.flags = 0;
	it.keywords = NULL;
	it.internal_date = 0;
	ok(sora_store_append(conn, s, INSTANCE, acc, "INBOX", &it, 1, &res, &err), &err);
	assert_int_equal(res.uids[0], uid_next + 1);
	assert_true(llabs(q("SELECT extract(epoch FROM internal_date)::bigint FROM messages"
			    " WHERE mailbox_id = $1 ORDER BY uid DESC LIMIT 1", m, NULL, NULL) -
			  now) < 60);
	kw = qs("SELECT keywords::text FROM messages WHERE mailbox_id = $1 ORDER BY uid DESC"
		" LIMIT 1", m);
	assert_string_equal(kw, "{}");
	free(kw);
	sora_store_append_result_free(&res);

	/* Refused before anything is written. */
	it.flags = 32;
	fails(sora_store_append(conn, s, INSTANCE, acc, "INBOX", &it, 1, &res, &err), &err,
	      SORA_ERR_INVALID);
	assert_null(res.uids);
	it.flags = 0;
	it.keywords = "\\Seen";
	fails(sora_store_append(conn, s, INSTANCE, acc, "INBOX", &it, 1, &res, &err), &err,
	      SORA_ERR_INVALID);
	it.keywords = "a(b";
	fails(sora_store_append(conn, s, INSTANCE, acc, "INBOX", &it, 1, &res, &err), &err,
	      SORA_ERR_INVALID);
	it.keywords = NULL;
	it.internal_date = INT64_C(1) << 50;
	fails(sora_store_append(conn, s, INSTANCE, acc, "INBOX", &it, 1, &res, &err), &err,
	      SORA_ERR_INVALID);
	it.internal_date = 0;
	fails(sora_store_append(conn, s, INSTANCE, acc, "INBOX", &it, 0, &res, &err), &err,
	      SORA_ERR_INVALID);
	assert_int_equal(q("SELECT count(*) FROM messages WHERE mailbox_id = $1", m, NULL, NULL),
			 2);
	msg_close(&x);
	sora_blob_store_free(&s);
}

static void test_keywords_normalize(void **state)
{
	struct sora_error err = { 0 };
	struct sora_buf out;
	char many[256 * 8 + 16];
	size_t at = 0;

	sora_buf_init(&out, 0);
	ok(sora_store_keywords_normalize("", &out, &err), &err);
	assert_string_equal(out.data, "");
	ok(sora_store_keywords_normalize("  a  B b A $x  ", &out, &err), &err);
	assert_string_equal(out.data, "a B $x");
	fails(sora_store_keywords_normalize("ok bad\x01", &out, &err), &err, SORA_ERR_INVALID);
	fails(sora_store_keywords_normalize("\\Answered", &out, &err), &err, SORA_ERR_INVALID);
	for (int i = 0; i <= SORA_STORE_KEYWORDS_MAX; i++)
		at += (size_t)snprintf(many + at, sizeof(many) - at, "k%d ", i);
	fails(sora_store_keywords_normalize(many, &out, &err), &err, SORA_ERR_LIMIT);
	sora_buf_free(&out);
}

static void test_multiappend_uids(void **state)
{
	struct sora_blob_store *s;
	struct sora_store_append_result res;
	struct sora_store_append_item it[3] = { { 0 } };
	struct sora_error err = { 0 };
	struct msg x[3];
	char m[24];
	int64_t acc, id = 0, uid_next, modseq;

	need_db();
	s = make_fs_store(tmpdir, "multi", true);
	acc = new_account();
	ok(sora_mailbox_create(conn, acc, "Work/Projects", NULL, &id, &err), &err);
	s64(m, id);
	uid_next = q("SELECT uid_next FROM mailboxes WHERE id = $1", m, NULL, NULL);
	modseq = q("SELECT highest_modseq FROM mailboxes WHERE id = $1", m, NULL, NULL);
	msg_open(&x[0], msg1);
	msg_open(&x[1], msg2);
	msg_open(&x[2], msg1);   /* the same body twice: one blob */
	for (int i = 0; i < 3; i++)
		it[i].msg = &x[i].m;
	ok(sora_store_append(conn, s, INSTANCE, acc, "Work/Projects", it, 3, &res, &err), &err);
	assert_int_equal(res.count, 3);
	assert_int_equal(res.mailbox_id, id);
	for (int i = 0; i < 3; i++)
		assert_int_equal(res.uids[i], uid_next + i);
	assert_int_equal(q("SELECT uid_next FROM mailboxes WHERE id = $1", m, NULL, NULL),
			 uid_next + 3);
	/* One modseq for the whole MULTIAPPEND. */
	assert_int_equal(q("SELECT highest_modseq FROM mailboxes WHERE id = $1", m, NULL, NULL),
			 modseq + 1);
	assert_int_equal(q("SELECT count(DISTINCT created_modseq) FROM messages"
			   " WHERE mailbox_id = $1", m, NULL, NULL), 1);
	assert_int_equal(q("SELECT count(DISTINCT content_hash) FROM messages"
			   " WHERE mailbox_id = $1", m, NULL, NULL), 2);
	/* Direct store: nothing to upload. */
	assert_int_equal(q("SELECT count(*) FROM pending_uploads WHERE account_id = $1",
			   s64(m, acc), NULL, NULL), 0);
	assert_int_equal(check_bodies(s, acc), 3);
	sora_store_append_result_free(&res);
	for (int i = 0; i < 3; i++)
		msg_close(&x[i]);
	sora_blob_store_free(&s);
}

static void test_all_or_nothing(void **state)
{
	struct sora_blob_store *s;
	struct sora_store_append_result res;
	struct sora_store_append_item it[3] = { { 0 } };
	struct sora_error err = { 0 };
	struct sora_mailbox_status before, after;
	struct msg x[3];
	char m[24], a[24];
	int64_t acc, inbox;

	need_db();
	s = make_fs_store(tmpdir, "aon", false);
	acc = new_account();
	inbox = q("SELECT id FROM mailboxes WHERE account_id = $1 AND name = 'INBOX'",
		  s64(a, acc), NULL, NULL);
	s64(m, inbox);
	msg_open(&x[0], msg1);
	msg_open(&x[1], msg2);
	msg_open(&x[2], msg3);
	for (int i = 0; i < 3; i++)
		it[i].msg = &x[i].m;
	ok(sora_mailbox_status(conn, acc, "INBOX", &before, &err), &err);

	/* The second row fails inside the transaction. */
	it[1].keywords = "sora-test-fail";
	fails(sora_store_append(conn, s, INSTANCE, acc, "INBOX", it, 3, &res, &err), &err,
	      SORA_ERR_PERMANENT);
	assert_null(res.uids);
	assert_int_equal(res.count, 0);
	ok(sora_mailbox_status(conn, acc, "INBOX", &after, &err), &err);
	assert_int_equal(after.messages, before.messages);
	assert_int_equal(after.uid_next, before.uid_next);
	assert_int_equal(after.highest_modseq, before.highest_modseq);
	assert_int_equal(q("SELECT count(*) FROM messages WHERE account_id = $1", a, NULL, NULL),
			 0);
	assert_int_equal(q("SELECT count(*) FROM pending_uploads WHERE account_id = $1", a, NULL,
			   NULL), 0);
	/* Nothing is left staged: no row names the bodies and no other
	 * writer uses them, so the failed APPEND took them back at once. */
	for (int i = 0; i < 3; i++)
		assert_false(sora_blob_is_staged(s, acc, x[i].hash));

	/* A body that a committed row names stays when a later APPEND of the
	 * same bytes fails. */
	it[1].keywords = NULL;
	ok(sora_store_append(conn, s, INSTANCE, acc, "INBOX", &it[0], 1, &res, &err), &err);
	sora_store_append_result_free(&res);
	it[1].keywords = "sora-test-fail";
	fails(sora_store_append(conn, s, INSTANCE, acc, "INBOX", it, 2, &res, &err), &err,
	      SORA_ERR_PERMANENT);
	assert_true(sora_blob_is_staged(s, acc, x[0].hash));
	assert_false(sora_blob_is_staged(s, acc, x[1].hash));
	assert_int_equal(check_bodies(s, acc), 1);

	/* Then all three together. */
	it[1].keywords = "ok";
	ok(sora_store_append(conn, s, INSTANCE, acc, "INBOX", it, 3, &res, &err), &err);
	assert_int_equal(res.uids[0] + 2, res.uids[2]);
	assert_int_equal(res.uids[0], before.uid_next + 1);
	sora_store_append_result_free(&res);
	assert_int_equal(check_bodies(s, acc), 4);
	for (int i = 0; i < 3; i++)
		msg_close(&x[i]);
	sora_blob_store_free(&s);
}

static void test_not_found(void **state)
{
	struct sora_blob_store *s;
	struct sora_store_append_result res;
	struct sora_store_append_item it = { 0 };
	struct sora_error err = { 0 };
	struct msg x;
	char a[24];
	int64_t acc;

	need_db();
	s = make_fs_store(tmpdir, "nf", false);
	acc = new_account();
	msg_open(&x, msg2);
	it.msg = &x.m;
	fails(sora_store_append(conn, s, INSTANCE, acc, "Nope", &it, 1, &res, &err), &err,
	      SORA_ERR_NOT_FOUND);
	assert_false(sora_blob_is_staged(s, acc, x.hash));
	/* No default mailboxes for an account without them. */
	q("DELETE FROM mailboxes WHERE account_id = $1 AND name = 'Sent'", s64(a, acc), NULL, NULL);
	fails(sora_store_append(conn, s, INSTANCE, acc, "Sent", &it, 1, &res, &err), &err,
	      SORA_ERR_NOT_FOUND);
	assert_int_equal(q("SELECT count(*) FROM mailboxes WHERE account_id = $1 AND name = 'Sent'",
			   a, NULL, NULL), 0);
	/* \Noselect. */
	ok(sora_mailbox_create(conn, acc, "P/C", NULL, NULL, &err), &err);
	ok(sora_mailbox_delete(conn, acc, "P", &err), &err);
	assert_int_equal(q("SELECT count(*) FROM mailboxes WHERE account_id = $1 AND name = 'P'"
			   " AND noselect", a, NULL, NULL), 1);
	fails(sora_store_append(conn, s, INSTANCE, acc, "P", &it, 1, &res, &err), &err,
	      SORA_ERR_NOT_FOUND);
	ok(sora_store_append(conn, s, INSTANCE, acc, "P/C", &it, 1, &res, &err), &err);
	sora_store_append_result_free(&res);
	/* Another account's mailbox is not found either. */
	fails(sora_store_append(conn, s, INSTANCE, new_account(), "P/C", &it, 1, &res, &err), &err,
	      SORA_ERR_NOT_FOUND);
	fails(sora_store_append(conn, s, INSTANCE, acc, "a//b", &it, 1, &res, &err), &err,
	      SORA_ERR_INVALID);
	assert_int_equal(q("SELECT count(*) FROM messages WHERE account_id = $1", a, NULL, NULL),
			 1);
	msg_close(&x);
	sora_blob_store_free(&s);
}

static void test_counters(void **state)
{
	struct sora_blob_store *s;
	struct sora_store_append_result res;
	struct sora_store_append_item it[3] = { { 0 } };
	struct sora_error err = { 0 };
	struct sora_mailbox_status st;
	struct msg x[3];
	char m[24];
	int64_t acc, id = 0;

	need_db();
	s = make_fs_store(tmpdir, "counters", false);
	acc = new_account();
	ok(sora_mailbox_create(conn, acc, "Stats", NULL, &id, &err), &err);
	msg_open(&x[0], msg1);
	msg_open(&x[1], msg2);
	msg_open(&x[2], msg3);
	for (int i = 0; i < 3; i++)
		it[i].msg = &x[i].m;
	it[0].flags = SORA_STORE_FLAG_SEEN;
	it[1].flags = SORA_STORE_FLAG_ANSWERED;
	it[2].flags = SORA_STORE_FLAG_SEEN | SORA_STORE_FLAG_DELETED;
	ok(sora_store_append(conn, s, INSTANCE, acc, "Stats", it, 3, &res, &err), &err);
	sora_store_append_result_free(&res);
	ok(sora_mailbox_status(conn, acc, "Stats", &st, &err), &err);
	assert_int_equal(st.messages, 3);
	assert_int_equal(st.unseen, 1);
	assert_int_equal(st.size, (int64_t)(strlen(msg1) + strlen(msg2) + strlen(msg3)));
	assert_int_equal(q("SELECT deleted_count FROM mailbox_stats WHERE mailbox_id = $1",
			   s64(m, id), NULL, NULL), 1);
	/* A failed one changes nothing. */
	it[2].keywords = "sora-test-fail";
	fails(sora_store_append(conn, s, INSTANCE, acc, "Stats", it, 3, &res, &err), &err,
	      SORA_ERR_PERMANENT);
	ok(sora_mailbox_status(conn, acc, "Stats", &st, &err), &err);
	assert_int_equal(st.messages, 3);
	assert_int_equal(st.unseen, 1);
	for (int i = 0; i < 3; i++)
		msg_close(&x[i]);
	sora_blob_store_free(&s);
}

/* ---- one delivery to several recipients: one batch statement ---- */

static void delivery(struct sora_store_delivery *d, int64_t acc, const char *rcpt,
		     const char *mailbox)
{
	memset(d, 0, sizeof(*d));
	d->account_id = acc;
	d->rcpt = sora_str_c(rcpt);
	d->prefix = sora_str_make("", 0);
	d->mailbox = mailbox;
}

/* UID and modseq of a mailbox's message (-1 when absent) as "uid/modseq". */
static char *row_of(int64_t mailbox, int64_t message_id)
{
	char mb[24], id[24];
	const char *params[2] = { s64(mb, mailbox), s64(id, message_id) };
	PGresult *res = qexec(conn, "SELECT uid || '/' || created_modseq FROM messages"
				    " WHERE mailbox_id = $1 AND id = $2", 2, params);
	char *v = strdup(PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "-1");

	PQclear(res);
	return v;
}

/* sora_store_deliver_many hands all its copies to the group commit at
 * once, so with nothing else delivering they form one batch: one
 * transaction, pipelined. Each copy's outcome must
 * be what it would be on its own: consecutive UIDs and modseqs per
 * mailbox in order, a second copy with the same key a duplicate, a
 * missing mailbox NOT_FOUND without failing the others, an account
 * without mailboxes getting its defaults; and a retry of all of it only
 * duplicates. */
static void test_delivery_batch(void **state)
{
	struct sora_store_delivery d[7];
	struct sora_store_delivery_result res[7];
	struct sora_blob_store *s;
	struct msg x;
	int64_t a, b, c, a_inbox, a_trash, b_inbox, c_inbox;
	char sa[24], sb[24], m[24];
	char *row;

	need_db();
	s = make_fs_store(tmpdir, "batch", true);
	a = new_account();
	b = new_account();
	c = q("INSERT INTO accounts DEFAULT VALUES RETURNING id", NULL, NULL, NULL);
	a_inbox = mbox_id(a, "INBOX");
	b_inbox = mbox_id(b, "INBOX");
	a_trash = mbox_id(a, "Trash");
	assert_int_equal(q("SELECT count(*) FROM mailboxes WHERE account_id = $1", s64(m, c), NULL,
			   NULL), 0);
	msg_open(&x, msg1);
	delivery(&d[0], a, "a1@example.org", NULL);
	delivery(&d[1], b, "b@example.org", NULL);
	delivery(&d[2], a, "a1@example.org", NULL);          /* d[0]'s key again */
	delivery(&d[3], a, "a2@example.org", NULL);
	delivery(&d[4], a, "a1@example.org", "Trash");       /* same key, other mailbox */
	delivery(&d[5], a, "a1@example.org", "Nope");
	delivery(&d[6], c, "c@example.org", NULL);           /* no mailboxes yet */
	assert_int_equal(sora_store_deliver_many(conn, s, INSTANCE, &x.m, d, 7, res), -1);
	assert_int_equal(res[0].status, SORA_STORE_DELIVERED);
	assert_int_equal(res[1].status, SORA_STORE_DELIVERED);
	assert_int_equal(res[2].status, SORA_STORE_DUPLICATE);
	assert_int_equal(res[3].status, SORA_STORE_DELIVERED);
	assert_int_equal(res[4].status, SORA_STORE_DELIVERED);
	assert_int_equal(res[5].status, SORA_STORE_FAILED);
	assert_int_equal(res[5].error.cls, SORA_ERR_NOT_FOUND);
	assert_int_equal(res[6].status, SORA_STORE_DELIVERED);
	c_inbox = mbox_id(c, "INBOX");
	assert_int_equal(res[0].mailbox_id, a_inbox);
	assert_int_equal(res[1].mailbox_id, b_inbox);
	assert_int_equal(res[3].mailbox_id, a_inbox);
	assert_int_equal(res[4].mailbox_id, a_trash);
	assert_int_equal(res[6].mailbox_id, c_inbox);
	/* UIDs and modseqs: consecutive in a's INBOX, in delivery order. */
	assert_int_equal(res[0].uid, 1);
	assert_int_equal(res[3].uid, 2);
	assert_int_equal(res[1].uid, 1);
	assert_int_equal(res[4].uid, 1);
	assert_int_equal(res[6].uid, 1);
	row = row_of(a_inbox, res[0].message_id);
	assert_string_equal(row, "1/2");
	free(row);
	row = row_of(a_inbox, res[3].message_id);
	assert_string_equal(row, "2/3");
	free(row);
	row = row_of(a_trash, res[4].message_id);
	assert_string_equal(row, "1/2");
	free(row);
	assert_int_equal(q("SELECT uid_next * 1000 + highest_modseq FROM mailboxes WHERE id = $1",
			   s64(m, a_inbox), NULL, NULL), 3003);
	/* One transaction for the batch's four rows (c's ran alone after). */
	assert_int_equal(q("SELECT count(DISTINCT xmin::text) FROM messages"
			   " WHERE account_id IN ($1, $2)", s64(sa, a), s64(sb, b), NULL), 1);
	/* Counters exact; one text row for every copy of the message. */
	assert_int_equal(q("SELECT message_count * 100 + unseen_count FROM mailbox_stats"
			   " WHERE mailbox_id = $1", s64(m, a_inbox), NULL, NULL), 202);
	assert_int_equal(q("SELECT total_size FROM mailbox_stats WHERE mailbox_id = $1",
			   s64(m, a_inbox), NULL, NULL), (int64_t)(2 * strlen(msg1)));
	assert_int_equal(q("SELECT message_count FROM mailbox_stats WHERE mailbox_id = $1",
			   s64(m, a_trash), NULL, NULL), 1);
	assert_int_equal(q("SELECT count(DISTINCT text_key) FROM messages"
			   " WHERE account_id IN ($1, $2)", s64(sa, a), s64(sb, b), NULL), 1);
	assert_int_equal(check_bodies(s, a), 3);
	/* The MTA retries all of it: nothing new. */
	assert_int_equal(sora_store_deliver_many(conn, s, INSTANCE, &x.m, d, 7, res), -1);
	for (int i = 0; i < 7; i++)
		assert_int_equal(res[i].status, i == 5 ? SORA_STORE_FAILED : SORA_STORE_DUPLICATE);
	assert_int_equal(q("SELECT count(*) FROM messages WHERE account_id = $1", s64(sa, a), NULL,
			   NULL), 3);
	msg_close(&x);
	sora_blob_store_free(&s);
}

/* ---- identical bodies from APPENDs and deliveries at once ---- */

#define RACE_BODIES 2

struct race {
	struct sora_blob_store *s;
	int64_t acc;
	unsigned int seed;
	int committed, failed, unexpected;
	char last[600];
};

static void race_note(struct race *r, bool expect_ok, int rc, const struct sora_error *err)
{
	if ((rc == 0) == expect_ok) {
		if (rc == 0)
			r->committed++;
		else
			r->failed++;
		return;
	}
	r->unexpected++;
	snprintf(r->last, sizeof(r->last), "%s", rc == 0 ? "succeeded" : err->msg);
}

static void *race_thread(void *arg)
{
	struct race *r = arg;
	struct sora_db_conn *c = NULL;
	struct sora_error err = { 0 };
	struct msg x[RACE_BODIES];
	char text[RACE_BODIES][96];

	if (sora_db_acquire(pool, SORA_DB_PRIMARY, 10000, &c, &err) != 0) {
		r->unexpected++;
		snprintf(r->last, sizeof(r->last), "acquire: %s", err.msg);
		return NULL;
	}
	for (int b = 0; b < RACE_BODIES; b++) {
		snprintf(text[b], sizeof(text[b]), "Subject: shared %d\r\n\r\nidentical bytes\r\n", b);
		msg_open(&x[b], text[b]);
	}
	for (int i = 0; i < RACE_OPS; i++) {
		int b = (int)((i / 4 + rand_r(&r->seed) % 2) % RACE_BODIES);
		int other = (b + 1) % RACE_BODIES;
		struct sora_store_append_item it[2] = { { &x[b].m, 0, NULL, 0 },
							{ &x[other].m, 0, NULL, 0 } };
		struct sora_store_append_result res = { 0 };
		struct sora_store_delivery d = { 0 };
		struct sora_store_delivery_result dres;
		int rc;

		d.account_id = r->acc;
		d.rcpt = sora_str_c("race@example.org");
		d.prefix = sora_str_make("", 0);
		switch (rand_r(&r->seed) % 5) {
		case 0:
			rc = sora_store_append(c, r->s, INSTANCE, r->acc, "INBOX", it, 1, &res, &err);
			race_note(r, true, rc, &err);
			break;
		case 1:
			rc = sora_store_append(c, r->s, INSTANCE, r->acc, "FailHere", it, 1, &res,
					       &err);
			race_note(r, false, rc, &err);
			break;
		case 2:
			it[1].keywords = "sora-test-fail";
			rc = sora_store_append(c, r->s, INSTANCE, r->acc, "INBOX", it, 2, &res, &err);
			race_note(r, false, rc, &err);
			break;
		case 3:
			/* Deliveries of the same bytes, each with its own key. */
			d.rcpt = sora_str_c(i % 2 ? "race@example.org" : "race2@example.org");
			rc = sora_store_deliver(c, r->s, INSTANCE, &x[b].m, &d, &dres);
			if (rc == 0 && dres.status == SORA_STORE_DUPLICATE)
				break;
			race_note(r, true, rc, &dres.error);
			break;
		default:
			d.mailbox = "FailHere";
			rc = sora_store_deliver(c, r->s, INSTANCE, &x[b].m, &d, &dres);
			race_note(r, false, rc, &dres.error);
			break;
		}
		sora_store_append_result_free(&res);
	}
	for (int b = 0; b < RACE_BODIES; b++)
		msg_close(&x[b]);
	sora_db_release(&c);
	return NULL;
}

static void race(bool direct)
{
	struct race races[RACE_THREADS];
	pthread_t th[RACE_THREADS];
	struct sora_error err = { 0 };
	int64_t acc, rows;
	int committed = 0, failed = 0;
	char a[24];

	need_db();
	memset(races, 0, sizeof(races));
	acc = new_account();
	ok(sora_mailbox_create(conn, acc, "FailHere", NULL, NULL, &err), &err);
	for (int i = 0; i < RACE_THREADS; i++) {
		races[i].s = make_fs_store(tmpdir, direct ? "race-d" : "race-s", direct);
		races[i].acc = acc;
		races[i].seed = 77u + (unsigned)i;
	}
	/* One store per thread on the same directories: as separate
	 * processes would share them (one store object is shared by threads
	 * in production; both must be safe). */
	for (int i = 0; i < RACE_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, race_thread, &races[i]), 0);
	for (int i = 0; i < RACE_THREADS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < RACE_THREADS; i++) {
		if (races[i].unexpected != 0)
			fail_msg("thread %d: %d unexpected outcomes, last: %s", i,
				 races[i].unexpected, races[i].last);
		committed += races[i].committed;
		failed += races[i].failed;
	}
	rows = check_bodies(races[0].s, acc);
	print_message("%s: %d committed, %d failed as injected; %" PRId64 " rows, every body"
		      " readable\n", direct ? "direct" : "staging", committed, failed, rows);
	assert_true(committed > 0 && failed > 0);
	assert_true(rows >= committed);
	/* Counters agree with the rows. */
	assert_int_equal(q("SELECT sum(s.message_count) FROM mailbox_stats s JOIN mailboxes m"
			   " ON m.id = s.mailbox_id WHERE m.account_id = $1", s64(a, acc), NULL,
			   NULL),
			 rows);
	for (int i = 0; i < RACE_THREADS; i++)
		sora_blob_store_free(&races[i].s);
}

static void test_concurrent_shared_bodies_staging(void **state)
{
	race(false);
}

static void test_concurrent_shared_bodies_direct(void **state)
{
	race(true);
}

static int setup(void **state)
{
	struct sora_error err = { 0 };

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/sora-append-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	if (live_db_open("sora-test-append", RACE_THREADS + 1, 30000) != 0)
		return -1;
	if (conn == NULL)
		return 0;
	/* The failure injection (see the top of this file). */
	ok(sora_db_exec(conn, SORA_DB_CLASS_DEFAULT,
			"CREATE OR REPLACE FUNCTION sora_test_fail() RETURNS trigger"
			" LANGUAGE plpgsql AS $$ BEGIN"
			"  IF 'sora-test-fail' = ANY (NEW.keywords) OR EXISTS (SELECT 1 FROM mailboxes"
			"     WHERE id = NEW.mailbox_id AND name = 'FailHere') THEN"
			"    RAISE EXCEPTION 'injected failure';"
			"  END IF; RETURN NEW; END $$", 0, NULL, NULL, NULL, &err), &err);
	ok(sora_db_exec(conn, SORA_DB_CLASS_DEFAULT,
			"DROP TRIGGER IF EXISTS sora_test_fail ON messages", 0, NULL, NULL, NULL,
			&err), &err);
	ok(sora_db_exec(conn, SORA_DB_CLASS_DEFAULT,
			"CREATE TRIGGER sora_test_fail BEFORE INSERT ON messages FOR EACH ROW"
			" EXECUTE FUNCTION sora_test_fail()", 0, NULL, NULL, NULL, &err), &err);
	return 0;
}

static int teardown(void **state)
{
	struct sora_error err = { 0 };

	if (conn != NULL)
		sora_db_exec(conn, SORA_DB_CLASS_DEFAULT,
			     "DROP TRIGGER IF EXISTS sora_test_fail ON messages", 0, NULL, NULL, NULL,
			     &err);
	live_db_teardown(state);
	rm_rf(tmpdir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keywords_normalize),
		cmocka_unit_test(test_flags_keywords_date),
		cmocka_unit_test(test_multiappend_uids),
		cmocka_unit_test(test_all_or_nothing),
		cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_counters),
		cmocka_unit_test(test_delivery_batch),
		cmocka_unit_test(test_concurrent_shared_bodies_staging),
		cmocka_unit_test(test_concurrent_shared_bodies_direct),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
