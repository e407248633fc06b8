/* Live tests of backend/store/messages.h against a real PostgreSQL with the
 * schema applied. Every case runs only when SORA_TEST_PG_HOST,
 * SORA_TEST_PG_PORT and SORA_TEST_PG_DBNAME (and optionally
 * SORA_TEST_PG_USER, default "postgres") are set and is skipped otherwise;
 * tests/integration/test_messages.py sets them up and requires every case
 * to pass. Each case works in an account of its own; messages are inserted
 * with plain SQL the way the delivery statement writes them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/store/deliver.h"
#include "backend/store/mailbox.h"
#include "backend/store/messages.h"
#include "common/db/db.h"
#include "common/proto/imap-search.h"
#include "live-db.h"

#define THREADS 2

/* The first column of the first row as text, into buf. */
static const char *qs(char *buf, size_t size, const char *sql, const char *p1, const char *p2)
{
	PGresult *res = qres(sql, p1, p2, NULL);

	snprintf(buf, size, "%s", PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "(none)");
	PQclear(res);
	return buf;
}

/* A message row as the delivery statement writes it (next UID and modseq
 * of the mailbox). keywords is a text[] literal. Returns the UID. */
static int64_t add_message(int64_t mailbox_id, int flags, const char *keywords)
{
	char m[24], f[24];

	return q("WITH u AS (UPDATE mailboxes SET uid_next = uid_next + 1,"
		 " highest_modseq = highest_modseq + 1 WHERE id = $1"
		 " RETURNING account_id, uid_next - 1 AS uid, highest_modseq) "
		 "INSERT INTO messages (account_id, mailbox_id, uid, content_hash, size, flags,"
		 " keywords, created_modseq, updated_modseq) "
		 "SELECT account_id, $1, uid, repeat('ab', 32), 100 + uid, $2, $3::text[],"
		 " highest_modseq, highest_modseq FROM u RETURNING uid",
		 s64(m, mailbox_id), s64(f, flags), keywords);
}

static int64_t mailbox_modseq(int64_t mailbox_id)
{
	char m[24];

	return q("SELECT highest_modseq FROM mailboxes WHERE id = $1", s64(m, mailbox_id), NULL,
		 NULL);
}

static int64_t msg_modseq(int64_t mailbox_id, uint32_t uid)
{
	char m[24], u[24];

	return q("SELECT updated_modseq FROM messages WHERE mailbox_id = $1 AND uid = $2",
		 s64(m, mailbox_id), s64(u, uid), NULL);
}

/* mailbox_stats agrees with the rows for every mailbox of the account. */
static void counters_exact(int64_t acc)
{
	char a[24];

	assert_int_equal(q("SELECT count(*) FROM mailboxes b JOIN mailbox_stats s"
			   " ON s.mailbox_id = b.id LEFT JOIN LATERAL"
			   " (SELECT count(*) AS c, count(*) FILTER (WHERE flags & 1 = 0) AS u,"
			   "  count(*) FILTER (WHERE flags & 8 <> 0) AS d,"
			   "  coalesce(sum(size), 0) AS sz FROM messages m"
			   "  WHERE m.mailbox_id = b.id AND m.expunged_at IS NULL) r ON true"
			   " WHERE b.account_id = $1 AND (s.message_count <> r.c OR"
			   " s.unseen_count <> r.u OR s.deleted_count <> r.d OR s.total_size <> r.sz)",
			   s64(a, acc), NULL, NULL),
			 0);
}

static void uids_are(const struct sora_msgs_uids *u, const uint32_t *want, size_t n)
{
	size_t i;

	if (u->count != n)
		fail_msg("%zu UIDs, wanted %zu", u->count, n);
	for (i = 0; i < n; i++)
		if (u->uids[i] != want[i])
			fail_msg("UID %zu is %u, wanted %u", i, u->uids[i], want[i]);
}

static void test_open(void **state)
{
	struct sora_msgs_open_result r;
	struct sora_error err = { 0 };
	const uint32_t want[] = { 1, 2, 3, 4, 5 };
	int64_t acc, inbox;
	char a[24];

	need_db();
	acc = new_account();
	inbox = mbox_id(acc, "INBOX");
	add_message(inbox, SORA_IMAP_FLAG_SEEN, "{}");
	add_message(inbox, SORA_IMAP_FLAG_SEEN, "{$junk,Work}");
	add_message(inbox, 0, "{$Junk}");
	add_message(inbox, SORA_IMAP_FLAG_SEEN | SORA_IMAP_FLAG_FLAGGED, "{}");
	add_message(inbox, SORA_IMAP_FLAG_DELETED, "{Other}");

	/* SELECT claims every message as \Recent. */
	ok(sora_msgs_open(conn, NULL, acc, "inbox", true, &r, &err), &err);
	assert_int_equal(r.mailbox.id, inbox);
	uids_are(&r.uids, want, 5);
	assert_int_equal(r.mailbox.uid_next, 6);
	assert_int_equal(r.mailbox.highest_modseq, mailbox_modseq(inbox));
	assert_true(r.mailbox.uid_validity > 0);
	assert_string_equal(r.mailbox.special_use, "");
	assert_int_equal(r.first_unseen_seq, 3);
	assert_int_equal(r.unseen_count, 2);
	assert_int_equal(r.first_recent, 1);
	assert_int_equal(r.recent_count, 5);
	/* Case-insensitive duplicates once, sorted. */
	assert_string_equal(r.mailbox.keywords, "$Junk Other Work");
	sora_msgs_open_result_free(&r);
	assert_int_equal(q("SELECT recent_uid FROM mailboxes WHERE id = $1", s64(a, inbox), NULL,
			   NULL),
			 6);

	/* A second SELECT sees nothing \Recent. */
	ok(sora_msgs_open(conn, NULL, acc, "INBOX", true, &r, &err), &err);
	assert_int_equal(r.first_recent, 0);
	assert_int_equal(r.recent_count, 0);
	assert_int_equal(r.uids.count, 5);
	sora_msgs_open_result_free(&r);

	/* EXAMINE reports new mail as RECENT but claims nothing. */
	add_message(inbox, SORA_IMAP_FLAG_SEEN, "{}");
	ok(sora_msgs_open(conn, NULL, acc, "INBOX", false, &r, &err), &err);
	assert_int_equal(r.first_recent, 6);
	assert_int_equal(r.recent_count, 1);
	sora_msgs_open_result_free(&r);
	ok(sora_msgs_open(conn, NULL, acc, "INBOX", false, &r, &err), &err);
	assert_int_equal(r.recent_count, 1);
	sora_msgs_open_result_free(&r);
	ok(sora_msgs_open(conn, NULL, acc, "INBOX", true, &r, &err), &err);
	assert_int_equal(r.first_recent, 6);
	assert_int_equal(r.recent_count, 1);
	assert_int_equal(r.uids.count, 6);
	sora_msgs_open_result_free(&r);

	/* Expunged messages are not in the map; all seen: no first unseen. */
	q("UPDATE messages SET expunged_at = now(), expunged_modseq = updated_modseq"
	  " WHERE mailbox_id = $1 AND uid IN (1, 3)", s64(a, inbox), NULL, NULL);
	ok(sora_msgs_open(conn, NULL, acc, "INBOX", false, &r, &err), &err);
	{
		const uint32_t live[] = { 2, 4, 5, 6 };

		uids_are(&r.uids, live, 4);
	}
	assert_int_equal(r.first_unseen_seq, 3);  /* UID 5 */
	assert_int_equal(r.unseen_count, 1);
	assert_string_equal(r.mailbox.keywords, "$junk Other Work");
	sora_msgs_open_result_free(&r);

	/* An empty mailbox with a special use. */
	ok(sora_msgs_open(conn, NULL, acc, "Sent", true, &r, &err), &err);
	assert_int_equal(r.uids.count, 0);
	assert_null(r.uids.uids);
	assert_string_equal(r.mailbox.special_use, "\\Sent");
	assert_string_equal(r.mailbox.keywords, "");
	assert_int_equal(r.first_unseen_seq, 0);
	assert_int_equal(r.first_recent, 0);
	sora_msgs_open_result_free(&r);

	fails(sora_msgs_open(conn, NULL, acc, "Nope", true, &r, &err), &err, SORA_ERR_NOT_FOUND);
	sora_msgs_open_result_free(&r);
	fails(sora_msgs_open(conn, NULL, acc, "bad//name", true, &r, &err), &err, SORA_ERR_INVALID);
	/* \Noselect: DELETE of a mailbox with children. */
	ok(sora_mailbox_create(conn, acc, "p/c", NULL, NULL, &err), &err);
	ok(sora_mailbox_delete(conn, acc, "p", &err), &err);
	fails(sora_msgs_open(conn, NULL, acc, "p", true, &r, &err), &err, SORA_ERR_NOT_FOUND);
	/* Another account's INBOX is not ours. */
	fails(sora_msgs_open(conn, NULL, acc + 1000000, "INBOX", true, &r, &err), &err,
	      SORA_ERR_NOT_FOUND);
	counters_exact(acc);
}

static void test_changes(void **state)
{
	struct sora_msgs_open_result r;
	struct sora_msgs_changes ch;
	struct sora_msgs_store_result st;
	struct sora_msgs_uids ex;
	struct sora_error err = { 0 };
	uint32_t one = 1, two = 2;
	int64_t acc, inbox, pid;
	uint64_t modseq;
	uint32_t next, validity;

	need_db();
	acc = new_account();
	inbox = mbox_id(acc, "INBOX");
	add_message(inbox, 0, "{}");
	add_message(inbox, 0, "{}");
	add_message(inbox, 0, "{}");
	ok(sora_msgs_open(conn, NULL, acc, "INBOX", true, &r, &err), &err);
	modseq = r.mailbox.highest_modseq;
	next = r.mailbox.uid_next;
	validity = r.mailbox.uid_validity;
	sora_msgs_open_result_free(&r);

	/* Nothing happened. */
	ok(sora_msgs_changes(conn, inbox, modseq, next, true, &ch, &err), &err);
	assert_int_equal(ch.highest_modseq, modseq);
	assert_int_equal(ch.uid_next, next);
	assert_int_equal(ch.uid_validity, validity);
	assert_int_equal(ch.added.count, 0);
	assert_int_equal(ch.expunged.count, 0);
	assert_int_equal(ch.changed_count, 0);
	assert_int_equal(ch.first_recent, 0);
	sora_msgs_changes_free(&ch);

	/* New mail, a flag change on 1, an expunge of 2. */
	add_message(inbox, 0, "{}");
	add_message(inbox, 0, "{}");
	ok(sora_msgs_store(conn, inbox, &one, 1, SORA_MSGS_STORE_ADD, SORA_IMAP_FLAG_SEEN, "Kw",
			   0, &st, &err), &err);
	sora_msgs_store_result_free(&st);
	ok(sora_msgs_store(conn, inbox, &two, 1, SORA_MSGS_STORE_ADD, SORA_IMAP_FLAG_DELETED, "",
			   0, &st, &err), &err);
	sora_msgs_store_result_free(&st);
	ok(sora_msgs_expunge(conn, inbox, NULL, 0, &ex, NULL, &err), &err);
	sora_msgs_uids_free(&ex);
	/* A new message expunged before the session saw it is not reported. */
	add_message(inbox, SORA_IMAP_FLAG_DELETED, "{}");
	ok(sora_msgs_expunge(conn, inbox, NULL, 0, &ex, NULL, &err), &err);
	sora_msgs_uids_free(&ex);

	/* Without claiming, a peek. */
	ok(sora_msgs_changes(conn, inbox, modseq, next, false, &ch, &err), &err);
	assert_int_equal(ch.first_recent, 0);
	sora_msgs_changes_free(&ch);

	ok(sora_msgs_changes(conn, inbox, modseq, next, true, &ch, &err), &err);
	{
		const uint32_t added[] = { 4, 5 }, expunged[] = { 2 };

		uids_are(&ch.added, added, 2);
		uids_are(&ch.expunged, expunged, 1);
	}
	assert_int_equal(ch.changed_count, 1);
	assert_int_equal(ch.changed[0].uid, 1);
	assert_int_equal(ch.changed[0].flags, SORA_IMAP_FLAG_SEEN);
	assert_string_equal(ch.changed[0].keywords, "Kw");
	assert_int_equal(ch.changed[0].modseq, msg_modseq(inbox, 1));
	assert_int_equal(ch.first_recent, 4);
	assert_int_equal(ch.uid_next, 7);
	assert_int_equal(ch.highest_modseq, mailbox_modseq(inbox));
	modseq = ch.highest_modseq;
	next = ch.uid_next;
	sora_msgs_changes_free(&ch);

	/* Claimed once: the next check has nothing \Recent. */
	add_message(inbox, 0, "{}");
	ok(sora_msgs_changes(conn, inbox, modseq, next, true, &ch, &err), &err);
	assert_int_equal(ch.added.count, 1);
	assert_int_equal(ch.first_recent, 7);
	sora_msgs_changes_free(&ch);
	ok(sora_msgs_changes(conn, inbox, modseq, next, true, &ch, &err), &err);
	assert_int_equal(ch.added.count, 1);
	assert_int_equal(ch.first_recent, 0);
	sora_msgs_changes_free(&ch);
	/* And a SELECT after that sees none either. */
	ok(sora_msgs_open(conn, NULL, acc, "INBOX", true, &r, &err), &err);
	assert_int_equal(r.recent_count, 0);
	sora_msgs_open_result_free(&r);

	/* A deleted mailbox is a conflict. */
	ok(sora_mailbox_create(conn, acc, "Gone", NULL, &pid, &err), &err);
	ok(sora_mailbox_delete(conn, acc, "Gone", &err), &err);
	fails(sora_msgs_changes(conn, pid, 1, 1, true, &ch, &err), &err, SORA_ERR_CONFLICT);
	sora_msgs_changes_free(&ch);
	/* A mailbox deleted to \Noselect, then created again: same id,
	 * new UIDVALIDITY. */
	ok(sora_mailbox_create(conn, acc, "P/c", NULL, NULL, &err), &err);
	pid = mbox_id(acc, "P");
	ok(sora_msgs_open(conn, NULL, acc, "P", true, &r, &err), &err);
	validity = r.mailbox.uid_validity;
	sora_msgs_open_result_free(&r);
	ok(sora_mailbox_delete(conn, acc, "P", &err), &err);
	fails(sora_msgs_changes(conn, pid, 1, 1, false, &ch, &err), &err, SORA_ERR_CONFLICT);
	ok(sora_mailbox_create(conn, acc, "P", NULL, NULL, &err), &err);
	assert_int_equal(mbox_id(acc, "P"), pid);
	ok(sora_msgs_changes(conn, pid, 1, 1, false, &ch, &err), &err);
	assert_int_not_equal(ch.uid_validity, validity);
	sora_msgs_changes_free(&ch);
	counters_exact(acc);
}

static void test_fetch(void **state)
{
	struct sora_msgs_rows rows;
	struct sora_error err = { 0 };
	const uint32_t ask[] = { 3, 1, 3, 99, 2 };
	struct sora_msgs_uids ex;
	uint32_t two = 2;
	int64_t acc, inbox;
	char m[24];

	need_db();
	acc = new_account();
	inbox = mbox_id(acc, "INBOX");
	add_message(inbox, SORA_IMAP_FLAG_SEEN, "{A,b}");
	add_message(inbox, SORA_IMAP_FLAG_DELETED, "{}");
	add_message(inbox, 0, "{}");
	/* Message 1 with everything stored, headers with a NUL and 8-bit. */
	q("UPDATE messages SET internal_date = '2020-01-02 03:04:05+00',"
	  " content_hash = repeat('cd', 32), envelope = '{\"subject\": \"hi\"}',"
	  " bodystructure = '[\"text\", \"plain\"]',"
	  " raw_headers = '\\x5375626a6563743a2000ff0d0a'::bytea"
	  " WHERE mailbox_id = $1 AND uid = 1", s64(m, inbox), NULL, NULL);
	ok(sora_msgs_expunge(conn, inbox, &two, 1, &ex, NULL, &err), &err);
	sora_msgs_uids_free(&ex);

	ok(sora_msgs_fetch(conn, inbox, ask, 5, SORA_MSGS_WANT_STATE | SORA_MSGS_WANT_BASIC |
			   SORA_MSGS_WANT_ENVELOPE | SORA_MSGS_WANT_STRUCTURE |
			   SORA_MSGS_WANT_HEADERS, &rows, &err), &err);
	assert_int_equal(rows.count, 5);
	assert_int_equal(rows.rows[0].uid, 3);
	assert_true(rows.rows[0].found);
	assert_false(rows.rows[0].expunged);
	assert_null(rows.rows[0].envelope_json);
	assert_null(rows.rows[0].raw_headers);
	assert_int_equal(rows.rows[0].size, 103);

	assert_int_equal(rows.rows[1].uid, 1);
	assert_true(rows.rows[1].found);
	assert_int_equal(rows.rows[1].state.flags, SORA_IMAP_FLAG_SEEN);
	assert_string_equal(rows.rows[1].state.keywords, "A b");
	assert_int_equal(rows.rows[1].state.modseq, msg_modseq(inbox, 1));
	assert_int_equal(rows.rows[1].internal_date, 1577934245);
	assert_string_equal(rows.rows[1].content_hash,
			    "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd");
	assert_non_null(rows.rows[1].envelope_json);
	assert_non_null(strstr(rows.rows[1].envelope_json, "\"subject\""));
	assert_non_null(rows.rows[1].structure_json);
	assert_non_null(strstr(rows.rows[1].structure_json, "plain"));
	assert_int_equal(rows.rows[1].raw_headers_len, 13);
	assert_memory_equal(rows.rows[1].raw_headers, "Subject: \0\xff\r\n", 13);

	/* Duplicates are served twice, in place. */
	assert_int_equal(rows.rows[2].uid, 3);
	assert_true(rows.rows[2].found);
	assert_int_equal(rows.rows[3].uid, 99);
	assert_false(rows.rows[3].found);
	assert_int_equal(rows.rows[4].uid, 2);
	assert_true(rows.rows[4].found);
	assert_true(rows.rows[4].expunged);
	assert_int_equal(rows.rows[4].state.flags, SORA_IMAP_FLAG_DELETED);
	sora_msgs_rows_free(&rows);
	sora_msgs_rows_free(&rows);   /* idempotent */

	/* Without the big columns they stay NULL. */
	ok(sora_msgs_fetch(conn, inbox, ask + 1, 1, SORA_MSGS_WANT_STATE, &rows, &err), &err);
	assert_int_equal(rows.count, 1);
	assert_null(rows.rows[0].envelope_json);
	assert_null(rows.rows[0].structure_json);
	assert_null(rows.rows[0].raw_headers);
	sora_msgs_rows_free(&rows);

	/* Another mailbox's UIDs are not found here. */
	ok(sora_msgs_fetch(conn, mbox_id(acc, "Sent"), ask, 5, SORA_MSGS_WANT_STATE, &rows, &err),
	   &err);
	assert_int_equal(rows.count, 5);
	assert_false(rows.rows[0].found);
	sora_msgs_rows_free(&rows);

	ok(sora_msgs_fetch(conn, inbox, ask, 0, SORA_MSGS_WANT_STATE, &rows, &err), &err);
	assert_int_equal(rows.count, 0);
	sora_msgs_rows_free(&rows);
}

static const struct sora_msgs_state *state_of(const struct sora_msgs_store_result *r,
					      uint32_t uid)
{
	size_t i;

	for (i = 0; i < r->state_count; i++)
		if (r->states[i].uid == uid)
			return &r->states[i];
	fail_msg("UID %u not in the STORE result", uid);
	return NULL;
}

static void test_store(void **state)
{
	struct sora_msgs_store_result r;
	struct sora_msgs_uids ex;
	struct sora_error err = { 0 };
	const uint32_t all[] = { 1, 2, 3, 4 };
	uint32_t four = 4;
	int64_t acc, inbox, m0, m1;
	char m[24];

	need_db();
	acc = new_account();
	inbox = mbox_id(acc, "INBOX");
	add_message(inbox, 0, "{}");
	add_message(inbox, SORA_IMAP_FLAG_SEEN, "{$Junk}");
	add_message(inbox, SORA_IMAP_FLAG_FLAGGED, "{}");
	add_message(inbox, SORA_IMAP_FLAG_DELETED, "{}");
	ok(sora_msgs_expunge(conn, inbox, &four, 1, &ex, NULL, &err), &err);
	sora_msgs_uids_free(&ex);
	m0 = mailbox_modseq(inbox);

	/* +FLAGS \Seen $junk: 1 and 3 change, 2 already has both. The
	 * expunged 4 is not listed. */
	ok(sora_msgs_store(conn, inbox, all, 4, SORA_MSGS_STORE_ADD, SORA_IMAP_FLAG_SEEN, "$junk",
			   0, &r, &err), &err);
	assert_int_equal(r.state_count, 3);
	assert_int_equal(r.states[0].uid, 1);
	assert_int_equal(r.states[1].uid, 2);
	assert_int_equal(r.states[2].uid, 3);
	assert_true(r.changed[0]);
	assert_false(r.changed[1]);
	assert_true(r.changed[2]);
	assert_int_equal(r.highest_modseq, m0 + 1);
	assert_int_equal(r.states[0].modseq, m0 + 1);
	assert_int_equal(r.states[0].flags, SORA_IMAP_FLAG_SEEN);
	assert_string_equal(r.states[0].keywords, "$junk");
	/* 2 keeps its spelling and its modseq. */
	assert_string_equal(r.states[1].keywords, "$Junk");
	assert_true(r.states[1].modseq < (uint64_t)m0 + 1);
	assert_int_equal(r.states[2].flags, SORA_IMAP_FLAG_SEEN | SORA_IMAP_FLAG_FLAGGED);
	assert_int_equal(r.modified.count, 0);
	sora_msgs_store_result_free(&r);
	assert_int_equal(mailbox_modseq(inbox), m0 + 1);
	assert_int_equal(msg_modseq(inbox, 1), m0 + 1);
	assert_int_equal(msg_modseq(inbox, 3), m0 + 1);
	assert_true(msg_modseq(inbox, 2) <= m0);
	counters_exact(acc);

	/* A no-op STORE takes no modseq. */
	ok(sora_msgs_store(conn, inbox, all, 3, SORA_MSGS_STORE_ADD, SORA_IMAP_FLAG_SEEN, "$JUNK",
			   0, &r, &err), &err);
	assert_int_equal(r.state_count, 3);
	assert_false(r.changed[0] || r.changed[1] || r.changed[2]);
	assert_int_equal(r.highest_modseq, m0 + 1);
	sora_msgs_store_result_free(&r);
	assert_int_equal(mailbox_modseq(inbox), m0 + 1);

	/* -FLAGS with a keyword in another case. */
	ok(sora_msgs_store(conn, inbox, all + 1, 1, SORA_MSGS_STORE_REMOVE, SORA_IMAP_FLAG_SEEN,
			   "$JUNK", 0, &r, &err), &err);
	assert_int_equal(r.state_count, 1);
	assert_true(r.changed[0]);
	assert_int_equal(r.states[0].flags, 0);
	assert_string_equal(r.states[0].keywords, "");
	assert_int_equal(r.states[0].modseq, m0 + 2);
	sora_msgs_store_result_free(&r);
	counters_exact(acc);

	/* FLAGS (set): replaces; an existing keyword keeps its spelling and
	 * an unchanged set with other spellings is no change. */
	ok(sora_msgs_store(conn, inbox, all, 1, SORA_MSGS_STORE_SET,
			   SORA_IMAP_FLAG_ANSWERED | SORA_IMAP_FLAG_DELETED, "Work $JUNK work", 0,
			   &r, &err), &err);
	assert_true(r.changed[0]);
	assert_int_equal(r.states[0].flags, SORA_IMAP_FLAG_ANSWERED | SORA_IMAP_FLAG_DELETED);
	assert_string_equal(r.states[0].keywords, "Work $junk");
	sora_msgs_store_result_free(&r);
	ok(sora_msgs_store(conn, inbox, all, 1, SORA_MSGS_STORE_SET,
			   SORA_IMAP_FLAG_ANSWERED | SORA_IMAP_FLAG_DELETED, "$Junk WORK", 0, &r,
			   &err), &err);
	assert_false(r.changed[0]);
	assert_string_equal(r.states[0].keywords, "Work $junk");
	sora_msgs_store_result_free(&r);
	{
		char buf[128];

		assert_string_equal(qs(buf, sizeof(buf), "SELECT keywords::text FROM messages"
				       " WHERE mailbox_id = $1 AND uid = 1", s64(m, inbox), NULL),
				    "{Work,$junk}");
	}
	counters_exact(acc);

	/* UNCHANGEDSINCE: 1 was changed after m1, 2 and 3 not. */
	m1 = mailbox_modseq(inbox);
	ok(sora_msgs_store(conn, inbox, all, 1, SORA_MSGS_STORE_ADD, SORA_IMAP_FLAG_FLAGGED, "", 0,
			   &r, &err), &err);
	sora_msgs_store_result_free(&r);
	ok(sora_msgs_store(conn, inbox, all, 3, SORA_MSGS_STORE_ADD, SORA_IMAP_FLAG_DRAFT, "", m1,
			   &r, &err), &err);
	assert_int_equal(r.modified.count, 1);
	assert_int_equal(r.modified.uids[0], 1);
	assert_int_equal(r.state_count, 3);
	assert_false(r.changed[0]);
	assert_true(r.changed[1]);
	assert_true(r.changed[2]);
	assert_int_equal(r.states[0].flags & SORA_IMAP_FLAG_DRAFT, 0);
	assert_int_equal(r.states[1].flags & SORA_IMAP_FLAG_DRAFT, SORA_IMAP_FLAG_DRAFT);
	assert_int_equal(r.highest_modseq, m1 + 2);
	sora_msgs_store_result_free(&r);
	/* Even a no-op is refused for a message changed since. */
	ok(sora_msgs_store(conn, inbox, all, 3, SORA_MSGS_STORE_ADD, SORA_IMAP_FLAG_DRAFT, "", m1,
			   &r, &err), &err);
	assert_int_equal(r.modified.count, 3);
	assert_false(r.changed[0] || r.changed[1] || r.changed[2]);
	assert_int_equal(r.highest_modseq, m1 + 2);
	sora_msgs_store_result_free(&r);
	/* UNCHANGEDSINCE equal to the message's modseq passes. */
	ok(sora_msgs_store(conn, inbox, all + 2, 1, SORA_MSGS_STORE_REMOVE, SORA_IMAP_FLAG_DRAFT,
			   "", m1 + 2, &r, &err), &err);
	assert_int_equal(r.modified.count, 0);
	assert_true(r.changed[0]);
	assert_int_equal(state_of(&r, 3)->modseq, m1 + 3);
	sora_msgs_store_result_free(&r);

	/* Keywords that need quoting in an array literal survive. */
	ok(sora_msgs_store(conn, inbox, all + 1, 1, SORA_MSGS_STORE_SET, 0, "a,b {c} NULL", 0, &r,
			   &err), &err);
	sora_msgs_store_result_free(&r);
	{
		struct sora_msgs_rows rows;

		ok(sora_msgs_fetch(conn, inbox, all + 1, 1, SORA_MSGS_WANT_STATE, &rows, &err),
		   &err);
		assert_string_equal(rows.rows[0].state.keywords, "a,b {c} NULL");
		sora_msgs_rows_free(&rows);
	}

	/* At most SORA_MSGS_KEYWORDS_MAX keywords per message; a STORE that
	 * would pass it changes nothing. */
	{
		char kw[2][2048];
		size_t p[2] = { 0, 0 };
		int i, k;
		int64_t before = mailbox_modseq(inbox);

		for (k = 0; k < 2; k++)
			for (i = 0; i < 200; i++)
				p[k] += (size_t)snprintf(kw[k] + p[k], sizeof(kw[k]) - p[k], "%s%c%d",
							 i ? " " : "", 'a' + k, i);
		ok(sora_msgs_store(conn, inbox, all, 1, SORA_MSGS_STORE_ADD, 0, kw[0], 0, &r,
				   &err), &err);
		sora_msgs_store_result_free(&r);
		before = mailbox_modseq(inbox);
		fails(sora_msgs_store(conn, inbox, all, 3, SORA_MSGS_STORE_ADD,
				      SORA_IMAP_FLAG_SEEN, kw[1], 0, &r, &err), &err, SORA_ERR_LIMIT);
		sora_msgs_store_result_free(&r);
		assert_int_equal(mailbox_modseq(inbox), before);
		{
			char bs[24];

			assert_int_equal(q("SELECT count(*) FROM messages WHERE mailbox_id = $1"
					   " AND updated_modseq > $2", s64(m, inbox),
					   s64(bs, before), NULL),
					 0);
		}
		ok(sora_msgs_store(conn, inbox, all, 1, SORA_MSGS_STORE_SET, 0, "", 0, &r, &err),
		   &err);
		sora_msgs_store_result_free(&r);
	}

	/* A mailbox that is gone. */
	fails(sora_msgs_store(conn, inbox + 1000000, all, 1, SORA_MSGS_STORE_ADD, 1, "", 0, &r,
			      &err), &err, SORA_ERR_CONFLICT);
	sora_msgs_store_result_free(&r);
	counters_exact(acc);
}

static void test_expunge(void **state)
{
	struct sora_msgs_uids ex;
	struct sora_error err = { 0 };
	const uint32_t some[] = { 1, 2, 5, 77 };
	uint64_t modseq = 0;
	int64_t acc, inbox, m0;
	char m[24];

	need_db();
	acc = new_account();
	inbox = mbox_id(acc, "INBOX");
	add_message(inbox, SORA_IMAP_FLAG_DELETED, "{}");
	add_message(inbox, 0, "{}");
	add_message(inbox, SORA_IMAP_FLAG_DELETED | SORA_IMAP_FLAG_SEEN, "{}");
	add_message(inbox, 0, "{}");
	add_message(inbox, SORA_IMAP_FLAG_DELETED, "{}");
	m0 = mailbox_modseq(inbox);

	/* UID EXPUNGE 1,2,5,77: only the \Deleted among them. */
	ok(sora_msgs_expunge(conn, inbox, some, 4, &ex, &modseq, &err), &err);
	{
		const uint32_t want[] = { 1, 5 };

		uids_are(&ex, want, 2);
	}
	assert_int_equal(modseq, m0 + 1);
	sora_msgs_uids_free(&ex);
	{
		char ms[24];

		assert_int_equal(q("SELECT count(*) FROM messages WHERE mailbox_id = $1 AND"
				   " expunged_modseq = $2 AND expunged_at IS NOT NULL",
				   s64(m, inbox), s64(ms, m0 + 1), NULL),
				 2);
	}
	counters_exact(acc);

	/* Nothing to do: no new modseq. */
	ok(sora_msgs_expunge(conn, inbox, some, 4, &ex, &modseq, &err), &err);
	assert_int_equal(ex.count, 0);
	assert_int_equal(modseq, m0 + 1);
	sora_msgs_uids_free(&ex);
	assert_int_equal(mailbox_modseq(inbox), m0 + 1);

	/* EXPUNGE: every \Deleted. */
	ok(sora_msgs_expunge(conn, inbox, NULL, 0, &ex, &modseq, &err), &err);
	{
		const uint32_t want[] = { 3 };

		uids_are(&ex, want, 1);
	}
	assert_int_equal(modseq, m0 + 2);
	sora_msgs_uids_free(&ex);
	assert_int_equal(q("SELECT expunged_modseq FROM messages WHERE mailbox_id = $1 AND uid = 3",
			   s64(m, inbox), NULL, NULL),
			 m0 + 2);
	assert_int_equal(q("SELECT message_count FROM mailbox_stats WHERE mailbox_id = $1", m,
			   NULL, NULL),
			 2);
	counters_exact(acc);

	fails(sora_msgs_expunge(conn, inbox + 1000000, NULL, 0, &ex, NULL, &err), &err,
	      SORA_ERR_CONFLICT);
}

static void test_copy_move(void **state)
{
	struct sora_msgs_copy_result r;
	struct sora_msgs_open_result o;
	struct sora_error err = { 0 };
	const uint32_t ask[] = { 1, 2, 3, 4, 9 };
	struct sora_msgs_uids ex;
	uint32_t three = 3;
	int64_t acc, inbox, archive, am0, im0;
	char m[24], b[128];

	need_db();
	acc = new_account();
	inbox = mbox_id(acc, "INBOX");
	archive = mbox_id(acc, "Archive");
	add_message(inbox, SORA_IMAP_FLAG_SEEN, "{Work}");
	add_message(inbox, 0, "{}");
	add_message(inbox, SORA_IMAP_FLAG_DELETED, "{}");
	add_message(inbox, SORA_IMAP_FLAG_FLAGGED, "{$Junk,x}");
	q("UPDATE messages SET subject = 'Hello', sort_subject = 'hello', envelope = '{\"a\": 1}',"
	  " raw_headers = '\\x00ff'::bytea, internal_date = '2021-05-06 07:08:09+00',"
	  " sent_date = '2021-05-05 00:00:00+00', from_text = 'a@example.com'"
	  " WHERE mailbox_id = $1 AND uid = 4", s64(m, inbox), NULL, NULL);
	ok(sora_msgs_expunge(conn, inbox, &three, 1, &ex, NULL, &err), &err);
	sora_msgs_uids_free(&ex);
	/* The archive already has two messages. */
	add_message(archive, 0, "{}");
	add_message(archive, 0, "{}");
	am0 = mailbox_modseq(archive);
	im0 = mailbox_modseq(inbox);

	ok(sora_msgs_copy(conn, acc, inbox, ask, 5, "Archive", false, &r, &err), &err);
	{
		const uint32_t src[] = { 1, 2, 4 }, dst[] = { 3, 4, 5 };

		uids_are(&r.src_uids, src, 3);
		uids_are(&r.dest_uids, dst, 3);
	}
	assert_int_equal(r.dest_uid_validity,
			 q("SELECT uid_validity FROM mailboxes WHERE id = $1", s64(m, archive),
			   NULL, NULL));
	assert_int_equal(r.source_modseq, im0);
	sora_msgs_copy_result_free(&r);
	assert_int_equal(mailbox_modseq(archive), am0 + 1);
	assert_int_equal(mailbox_modseq(inbox), im0);
	assert_int_equal(q("SELECT uid_next FROM mailboxes WHERE id = $1", s64(m, archive), NULL,
			   NULL),
			 6);
	/* Everything but the place and modseqs came along. */
	assert_int_equal(q("SELECT count(*) FROM (VALUES (1, 3), (2, 4), (4, 5)) AS v (su, du)"
			   " JOIN messages s ON s.mailbox_id = $1 AND s.uid = v.su"
			   " JOIN messages d ON d.mailbox_id = $2 AND d.uid = v.du"
			   " WHERE (s.account_id, s.content_hash, s.size, s.internal_date, s.sent_date,"
			   "  s.subject, s.sort_subject, s.from_text, s.flags, s.keywords)"
			   " IS NOT DISTINCT FROM (d.account_id, d.content_hash, d.size,"
			   "  d.internal_date, d.sent_date, d.subject, d.sort_subject, d.from_text,"
			   "  d.flags, d.keywords)"
			   " AND s.envelope IS NOT DISTINCT FROM d.envelope"
			   " AND s.raw_headers IS NOT DISTINCT FROM d.raw_headers"
			   " AND d.created_modseq = $3 AND d.updated_modseq = $3"
			   " AND d.expunged_at IS NULL",
			   s64(m, inbox), s64(b, archive), s64(b + 32, am0 + 1)),
			 3);
	/* The row that had them all set really has them. */
	assert_int_equal(q("SELECT count(*) FROM messages WHERE mailbox_id = $1 AND uid = 5"
			   " AND subject = 'Hello' AND raw_headers = '\\x00ff'::bytea"
			   " AND keywords = '{$Junk,x}' AND envelope = '{\"a\": 1}'",
			   s64(b, archive), NULL, NULL),
			 1);
	assert_int_equal(q("SELECT count(*) FROM messages WHERE mailbox_id = $1"
			   " AND expunged_at IS NULL", s64(m, inbox), NULL, NULL),
			 3);
	counters_exact(acc);

	/* The copies are \Recent for the next SELECT of the archive. */
	ok(sora_msgs_open(conn, NULL, acc, "Archive", true, &o, &err), &err);
	assert_int_equal(o.uids.count, 5);
	assert_int_equal(o.recent_count, 5);
	sora_msgs_open_result_free(&o);

	/* Mailbox names are case-sensitive (but INBOX): TRYCREATE. */
	{
		const uint32_t mv[] = { 1, 4 };

		fails(sora_msgs_copy(conn, acc, inbox, mv, 2, "trash", true, &r, &err), &err,
		      SORA_ERR_NOT_FOUND);
		sora_msgs_copy_result_free(&r);
		fails(sora_msgs_copy(conn, acc, inbox, mv, 2, "Nope", false, &r, &err), &err,
		      SORA_ERR_NOT_FOUND);
		fails(sora_msgs_copy(conn, acc, inbox, mv, 2, "bad//name", false, &r, &err), &err,
		      SORA_ERR_INVALID);
	}
	/* Into a \Noselect mailbox: not a target either. */
	ok(sora_mailbox_create(conn, acc, "ns/child", NULL, NULL, &err), &err);
	ok(sora_mailbox_delete(conn, acc, "ns", &err), &err);
	fails(sora_msgs_copy(conn, acc, inbox, ask, 1, "ns", false, &r, &err), &err,
	      SORA_ERR_NOT_FOUND);
	/* Another account's mailbox is never a target: the name is looked
	 * up in this account. */
	{
		int64_t other = new_account();

		fails(sora_msgs_copy(conn, other, inbox, ask, 1, "Archive", false, &r, &err), &err,
		      SORA_ERR_CONFLICT);
	}
	/* Nothing failed half-way. */
	assert_int_equal(mailbox_modseq(inbox), im0);
	counters_exact(acc);

	/* MOVE 1 and 4 to Trash: originals expunged with one new modseq. */
	{
		const uint32_t mv[] = { 1, 4 };
		int64_t trash = mbox_id(acc, "Trash");

		ok(sora_msgs_copy(conn, acc, inbox, mv, 2, "Trash", true, &r, &err), &err);
		{
			const uint32_t dst[] = { 1, 2 };

			uids_are(&r.src_uids, mv, 2);
			uids_are(&r.dest_uids, dst, 2);
		}
		assert_int_equal(r.source_modseq, im0 + 1);
		sora_msgs_copy_result_free(&r);
		assert_int_equal(mailbox_modseq(inbox), im0 + 1);
		assert_int_equal(q("SELECT count(*) FROM messages WHERE mailbox_id = $1 AND"
				   " uid IN (1, 4) AND expunged_modseq = $2", s64(m, inbox),
				   s64(b, im0 + 1), NULL),
				 2);
		assert_int_equal(q("SELECT flags FROM messages WHERE mailbox_id = $1 AND uid = 2",
				   s64(m, trash), NULL, NULL),
				 SORA_IMAP_FLAG_FLAGGED);
		/* A MOVE of messages already gone moves nothing. */
		ok(sora_msgs_copy(conn, acc, inbox, mv, 2, "Trash", true, &r, &err), &err);
		assert_int_equal(r.src_uids.count, 0);
		assert_int_equal(r.dest_uids.count, 0);
		sora_msgs_copy_result_free(&r);
		assert_int_equal(mailbox_modseq(inbox), im0 + 1);
	}
	counters_exact(acc);

	/* COPY and MOVE within one mailbox. */
	{
		const uint32_t two = 2;
		int64_t m2;

		ok(sora_msgs_copy(conn, acc, inbox, &two, 1, "INBOX", false, &r, &err), &err);
		assert_int_equal(r.dest_uids.count, 1);
		assert_int_equal(r.dest_uids.uids[0], 5);
		sora_msgs_copy_result_free(&r);
		m2 = mailbox_modseq(inbox);
		assert_int_equal(m2, im0 + 2);
		ok(sora_msgs_copy(conn, acc, inbox, &two, 1, "inbox", true, &r, &err), &err);
		assert_int_equal(r.dest_uids.uids[0], 6);
		assert_int_equal(r.source_modseq, m2 + 1);
		sora_msgs_copy_result_free(&r);
		assert_int_equal(mailbox_modseq(inbox), m2 + 1);
		assert_int_equal(q("SELECT count(*) FROM messages WHERE mailbox_id = $1"
				   " AND expunged_at IS NULL", s64(m, inbox), NULL, NULL),
				 2);
	}
	counters_exact(acc);
}

/* ---- concurrency ---- */

struct worker {
	int64_t acc;
	int64_t mailbox_id;
	int id;
	int ops;
	uint64_t modseqs[200];
	int nmodseqs;
	int copied;
	int moved;
	int unexpected;
	char last[SORA_ERROR_MSG_SIZE + 32];
};

/* Runs fn in THREADS workers, w[t] zeroed but for acc, mailbox_id, id and
 * ops; waits for all of them and fails on any unexpected result. */
static void run_workers(struct worker *w, void *(*fn)(void *), int64_t acc, int64_t mailbox_id,
			int ops)
{
	pthread_t th[THREADS];
	int t;

	for (t = 0; t < THREADS; t++) {
		memset(&w[t], 0, sizeof(w[t]));
		w[t].acc = acc;
		w[t].mailbox_id = mailbox_id;
		w[t].id = t;
		w[t].ops = ops;
		assert_int_equal(pthread_create(&th[t], NULL, fn, &w[t]), 0);
	}
	for (t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	for (t = 0; t < THREADS; t++)
		if (w[t].unexpected != 0)
			fail_msg("thread %d: %d unexpected results, last: %s", t, w[t].unexpected,
				 w[t].last);
}

/* Two sessions STORE on the same messages: one toggles \Flagged, the
 * other a keyword, so every call changes every message and must take a
 * modseq of its own. */
static void *store_thread(void *arg)
{
	struct worker *w = arg;
	struct sora_db_conn *c = NULL;
	struct sora_error err = { 0 };
	const uint32_t uids[] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	int i;

	if (sora_db_acquire(pool, SORA_DB_PRIMARY, 10000, &c, &err) != 0) {
		w->unexpected++;
		snprintf(w->last, sizeof(w->last), "%s", err.msg);
		return NULL;
	}
	for (i = 0; i < w->ops; i++) {
		struct sora_msgs_store_result r;
		enum sora_msgs_store_op op = i % 2 == 0 ? SORA_MSGS_STORE_ADD
							: SORA_MSGS_STORE_REMOVE;
		size_t j;
		int rc;

		if (w->id == 0)
			rc = sora_msgs_store(c, w->mailbox_id, uids, 8, op, SORA_IMAP_FLAG_FLAGGED, "",
					     0, &r, &err);
		else
			rc = sora_msgs_store(c, w->mailbox_id, uids, 8, op, 0, "Busy", 0, &r, &err);
		if (rc != 0) {
			w->unexpected++;
			snprintf(w->last, sizeof(w->last), "%s", err.msg);
			continue;
		}
		for (j = 0; j < r.state_count; j++)
			if (!r.changed[j] || r.states[j].modseq != r.highest_modseq) {
				w->unexpected++;
				snprintf(w->last, sizeof(w->last), "UID %u not changed at %d",
					 r.states[j].uid, i);
			}
		if (r.state_count != 8) {
			w->unexpected++;
			snprintf(w->last, sizeof(w->last), "%zu states", r.state_count);
		}
		w->modseqs[w->nmodseqs++] = r.highest_modseq;
		sora_msgs_store_result_free(&r);
	}
	sora_db_release(&c);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_concurrent_store(void **state)
{
	struct worker w[THREADS];
	uint64_t all[THREADS * 200];
	int64_t acc, inbox, m0;
	size_t n = 0, i;
	char m[24], m2[24];
	int t;

	need_db();
	acc = new_account();
	inbox = mbox_id(acc, "INBOX");
	for (t = 0; t < 8; t++)
		add_message(inbox, 0, "{}");
	m0 = mailbox_modseq(inbox);
	run_workers(w, store_thread, 0, inbox, 100);
	for (t = 0; t < THREADS; t++) {
		/* Each session sees its modseqs strictly increase. */
		for (i = 1; i < (size_t)w[t].nmodseqs; i++)
			assert_true(w[t].modseqs[i] > w[t].modseqs[i - 1]);
		memcpy(all + n, w[t].modseqs, (size_t)w[t].nmodseqs * sizeof(all[0]));
		n += (size_t)w[t].nmodseqs;
	}
	/* Every STORE got a modseq of its own: m0+1 ... m0+200, no gaps. */
	assert_int_equal(n, THREADS * 100);
	qsort(all, n, sizeof(all[0]), cmp_u64);
	for (i = 0; i < n; i++)
		assert_int_equal(all[i], (uint64_t)m0 + 1 + i);
	assert_int_equal(mailbox_modseq(inbox), m0 + (int64_t)n);
	/* 100 toggles each: back where they started, modseq the last one. */
	assert_int_equal(q("SELECT count(*) FROM messages WHERE mailbox_id = $1 AND flags = 0"
			   " AND keywords = '{}' AND updated_modseq > $2", s64(m, inbox),
			   s64(m2, m0), NULL),
			 8);
	assert_int_equal(q("SELECT max(updated_modseq) FROM messages WHERE mailbox_id = $1",
			   s64(m, inbox), NULL, NULL),
			 m0 + (int64_t)n);
	print_message("concurrent STORE: %zu modseqs, %" PRId64 "..%" PRId64 "\n", n, m0 + 1,
		      m0 + (int64_t)n);
	counters_exact(acc);
}

/* COPY/MOVE a->b and b->a at once, plus \Recent claims from both. */
static void *move_thread(void *arg)
{
	struct worker *w = arg;
	struct sora_db_conn *c = NULL;
	struct sora_error err = { 0 };
	const char *names[2] = { "INBOX", "Archive" };
	int i;

	if (sora_db_acquire(pool, SORA_DB_PRIMARY, 10000, &c, &err) != 0) {
		w->unexpected++;
		snprintf(w->last, sizeof(w->last), "%s", err.msg);
		return NULL;
	}
	for (i = 0; i < w->ops; i++) {
		struct sora_msgs_open_result o;
		struct sora_msgs_copy_result r;
		const char *from = names[w->id], *to = names[1 - w->id];

		if (sora_msgs_open(c, NULL, w->acc, from, true, &o, &err) != 0) {
			w->unexpected++;
			snprintf(w->last, sizeof(w->last), "open: %s", err.msg);
			continue;
		}
		/* COPY the last message every other time, MOVE the first
		 * half. */
		if (i % 2 == 0 && o.uids.count > 0) {
			if (sora_msgs_copy(c, w->acc, o.mailbox.id, o.uids.uids + o.uids.count - 1,
					   1, to, false, &r, &err) != 0) {
				w->unexpected++;
				snprintf(w->last, sizeof(w->last), "copy: %s", err.msg);
			} else {
				w->copied += (int)r.dest_uids.count;
			}
			sora_msgs_copy_result_free(&r);
		}
		if (sora_msgs_copy(c, w->acc, o.mailbox.id, o.uids.uids,
				   o.uids.count < 4 ? o.uids.count : o.uids.count / 2, to, true,
				   &r, &err) != 0) {
			w->unexpected++;
			snprintf(w->last, sizeof(w->last), "move: %s", err.msg);
		} else {
			w->moved += (int)r.dest_uids.count;
		}
		sora_msgs_copy_result_free(&r);
		sora_msgs_open_result_free(&o);
	}
	sora_db_release(&c);
	return NULL;
}

static void test_concurrent_copy(void **state)
{
	struct worker w[THREADS];
	int64_t acc, inbox, archive, total;
	int t, copied = 0, moved = 0;
	char a[24];

	need_db();
	acc = new_account();
	inbox = mbox_id(acc, "INBOX");
	archive = mbox_id(acc, "Archive");
	for (t = 0; t < 20; t++) {
		add_message(inbox, t % 3 == 0 ? SORA_IMAP_FLAG_SEEN : 0, "{}");
		add_message(archive, 0, "{}");
	}
	run_workers(w, move_thread, acc, 0, 40);
	for (t = 0; t < THREADS; t++) {
		copied += w[t].copied;
		moved += w[t].moved;
	}
	/* Each COPY added a message; MOVEs add none. */
	total = q("SELECT count(*) FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
		  " WHERE b.account_id = $1 AND m.expunged_at IS NULL", s64(a, acc), NULL, NULL);
	assert_true(copied > 0 && moved > 0);
	assert_int_equal(total, 40 + copied);
	/* UIDs are unique and below uid_next, modseqs within bounds. */
	assert_int_equal(q("SELECT count(*) FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
			   " WHERE b.account_id = $1 AND (m.uid >= b.uid_next OR"
			   " m.updated_modseq > b.highest_modseq OR"
			   " m.expunged_modseq > b.highest_modseq)", a, NULL, NULL),
			 0);
	/* Every UID was claimed \Recent at most once: recent_uid <= uid_next. */
	assert_int_equal(q("SELECT count(*) FROM mailboxes WHERE account_id = $1 AND"
			   " recent_uid > uid_next", a, NULL, NULL),
			 0);
	print_message("concurrent COPY/MOVE: %d copied, %d moved, %" PRId64 " live messages\n",
		      copied, moved, total);
	counters_exact(acc);
}

/* Sessions claim \Recent while mail arrives: each UID exactly once. */
struct claimer {
	int64_t mailbox_id;
	int64_t acc;
	unsigned char *seen;   /* [uid] count of claims, shared, by UID range */
	pthread_mutex_t *lock;
	int unexpected;
	char last[SORA_ERROR_MSG_SIZE + 32];
};

#define CLAIM_MESSAGES 150

static void *claim_thread(void *arg)
{
	struct claimer *cl = arg;
	struct sora_db_conn *c = NULL;
	struct sora_error err = { 0 };
	struct sora_msgs_open_result o;
	uint64_t modseq;
	uint32_t next;
	int i;

	if (sora_db_acquire(pool, SORA_DB_PRIMARY, 10000, &c, &err) != 0 ||
	    sora_msgs_open(c, NULL, cl->acc, "INBOX", true, &o, &err) != 0) {
		cl->unexpected++;
		snprintf(cl->last, sizeof(cl->last), "%s", err.msg);
		sora_db_release(&c);
		return NULL;
	}
	pthread_mutex_lock(cl->lock);
	for (i = 0; i < (int)o.uids.count; i++)
		if (o.first_recent != 0 && o.uids.uids[i] >= o.first_recent)
			cl->seen[o.uids.uids[i]]++;
	pthread_mutex_unlock(cl->lock);
	modseq = o.mailbox.highest_modseq;
	next = o.mailbox.uid_next;
	sora_msgs_open_result_free(&o);
	for (i = 0; i < 400 && next <= CLAIM_MESSAGES; i++) {
		struct sora_msgs_changes ch;
		size_t j;

		if (sora_msgs_changes(c, cl->mailbox_id, modseq, next, true, &ch, &err) != 0) {
			cl->unexpected++;
			snprintf(cl->last, sizeof(cl->last), "%s", err.msg);
			break;
		}
		pthread_mutex_lock(cl->lock);
		for (j = 0; j < ch.added.count; j++)
			if (ch.first_recent != 0 && ch.added.uids[j] >= ch.first_recent)
				cl->seen[ch.added.uids[j]]++;
		pthread_mutex_unlock(cl->lock);
		modseq = ch.highest_modseq;
		next = ch.uid_next;
		sora_msgs_changes_free(&ch);
	}
	sora_db_release(&c);
	return NULL;
}

static void test_concurrent_recent(void **state)
{
	unsigned char seen[CLAIM_MESSAGES + 2] = { 0 };
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct claimer cl[THREADS];
	pthread_t th[THREADS];
	struct sora_msgs_open_result o;
	struct sora_error err = { 0 };
	int64_t acc, inbox;
	int t, i, claimed = 0;

	need_db();
	acc = new_account();
	inbox = mbox_id(acc, "INBOX");
	for (t = 0; t < THREADS; t++) {
		memset(&cl[t], 0, sizeof(cl[t]));
		cl[t].mailbox_id = inbox;
		cl[t].acc = acc;
		cl[t].seen = seen;
		cl[t].lock = &lock;
		assert_int_equal(pthread_create(&th[t], NULL, claim_thread, &cl[t]), 0);
	}
	for (i = 0; i < CLAIM_MESSAGES; i++)
		add_message(inbox, 0, "{}");
	for (t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	for (t = 0; t < THREADS; t++)
		if (cl[t].unexpected != 0)
			fail_msg("thread %d: %s", t, cl[t].last);
	/* What the threads did not claim, a last SELECT does. */
	ok(sora_msgs_open(conn, NULL, acc, "INBOX", true, &o, &err), &err);
	for (i = 0; i < (int)o.uids.count; i++)
		if (o.first_recent != 0 && o.uids.uids[i] >= o.first_recent)
			seen[o.uids.uids[i]]++;
	sora_msgs_open_result_free(&o);
	for (i = 1; i <= CLAIM_MESSAGES; i++) {
		if (seen[i] != 1)
			fail_msg("UID %d claimed %d times", i, seen[i]);
		claimed++;
	}
	print_message("concurrent \\Recent: %d UIDs, each claimed once\n", claimed);
}

/* SELECT of a large mailbox. */
#define BIG 100000

/* The UID cache (uid-cache.h): an open that starts from a cached list
 * gives exactly what an open from scratch gives, after expunges, new
 * messages and a mailbox that is no longer the cached one. */
static void same_as_uncached(struct sora_uid_cache *cache, int64_t acc, const char *name,
			     size_t want_count)
{
	struct sora_msgs_open_result a, b;
	struct sora_error err = { 0 };

	ok(sora_msgs_open(conn, cache, acc, name, false, &a, &err), &err);
	ok(sora_msgs_open(conn, NULL, acc, name, false, &b, &err), &err);
	assert_int_equal(a.uids.count, want_count);
	assert_int_equal(a.uids.count, b.uids.count);
	if (b.uids.count > 0)
		assert_memory_equal(a.uids.uids, b.uids.uids, b.uids.count * sizeof(uint32_t));
	assert_int_equal(a.first_unseen_seq, b.first_unseen_seq);
	assert_int_equal(a.mailbox.uid_next, b.mailbox.uid_next);
	sora_msgs_open_result_free(&a);
	sora_msgs_open_result_free(&b);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void test_open_cached(void **state)
{
	enum { N = 3000 };
	struct sora_uid_cache *cache = NULL;
	struct sora_msgs_store_result r;
	struct sora_msgs_uids ex;
	struct sora_error err = { 0 };
	const uint32_t del[] = { 1, 100, 1500, 2999 };
	struct sora_uid_cache_entry e;
	size_t entries, bytes;
	int64_t acc, inbox;
	char m[24], n[24];

	need_db();
	cache = sora_uid_cache_new(1024 * 1024);
	assert_non_null(cache);
	acc = new_account();
	inbox = mbox_id(acc, "INBOX");
	q("WITH u AS (UPDATE mailboxes SET uid_next = uid_next + $2,"
	  " highest_modseq = highest_modseq + 1 WHERE id = $1"
	  " RETURNING account_id, highest_modseq) "
	  "INSERT INTO messages (account_id, mailbox_id, uid, content_hash, size,"
	  " created_modseq, updated_modseq) "
	  "SELECT u.account_id, $1, g, repeat('ab', 32), 100, u.highest_modseq, u.highest_modseq"
	  "  FROM u, generate_series(1, $2) g",
	  s64(m, inbox), s64(n, N), NULL);

	same_as_uncached(cache, acc, "INBOX", N);
	sora_uid_cache_stats(cache, &entries, &bytes);
	assert_int_equal(entries, 1);
	assert_int_equal(bytes, N * sizeof(uint32_t));

	/* Expunges below the cached uid_next and new messages above it. */
	ok(sora_msgs_store(conn, inbox, del, 4, SORA_MSGS_STORE_ADD, SORA_IMAP_FLAG_DELETED, "", 0,
			   &r, &err), &err);
	sora_msgs_store_result_free(&r);
	ok(sora_msgs_expunge(conn, inbox, NULL, 0, &ex, NULL, &err), &err);
	assert_int_equal(ex.count, 4);
	sora_msgs_uids_free(&ex);
	add_message(inbox, 0, "{}");
	add_message(inbox, 0, "{}");
	same_as_uncached(cache, acc, "inbox", N - 4 + 2);
	/* The entry followed: it now holds the new list. */
	assert_int_equal(sora_uid_cache_get(cache, acc, "INBOX", mono_ms(), &e), 1);
	assert_int_equal(e.count, N - 4 + 2);
	assert_int_equal(e.uids[0], 2);
	assert_int_equal(e.uids[e.count - 1], N + 2);
	sora_uid_cache_entry_free(&e);
	/* Nothing changed: the same again. */
	same_as_uncached(cache, acc, "INBOX", N - 4 + 2);

	/* A mailbox that is not the cached one any more (DELETE and CREATE
	 * give a new UIDVALIDITY): the whole list is read. */
	q("UPDATE messages SET expunged_at = now(), expunged_modseq = 1"
	  " WHERE mailbox_id = $1 AND uid < 2000", s64(m, inbox), NULL, NULL);
	q("UPDATE mailboxes SET uid_validity = uid_validity + 1 WHERE id = $1", m, NULL, NULL);
	same_as_uncached(cache, acc, "INBOX", 1002);   /* 2000..3002 but 2999 */

	/* Small mailboxes are not kept. */
	same_as_uncached(cache, acc, "Sent", 0);
	assert_int_equal(sora_uid_cache_get(cache, acc, "Sent", mono_ms(), &e), 0);
	sora_uid_cache_free(&cache);
}

static void test_open_large(void **state)
{
	struct sora_msgs_open_result o;
	struct sora_error err = { 0 };
	struct timespec t0, t1;
	int64_t acc, inbox;
	double ms, best = 1e9;
	char m[24], n[24];
	int i;

	need_db();
	acc = new_account();
	inbox = mbox_id(acc, "INBOX");
	q("WITH u AS (UPDATE mailboxes SET uid_next = uid_next + $2,"
	  " highest_modseq = highest_modseq + 1 WHERE id = $1"
	  " RETURNING account_id, highest_modseq) "
	  "INSERT INTO messages (account_id, mailbox_id, uid, content_hash, size, flags, keywords,"
	  " subject, raw_headers, created_modseq, updated_modseq) "
	  "SELECT u.account_id, $1, g, repeat('ab', 32), 2000,"
	  " CASE WHEN g > 99990 THEN 0 ELSE 1 END,"
	  " CASE WHEN g % 1000 = 0 THEN ARRAY['$Label' || (g / 1000 % 7)] ELSE '{}' END,"
	  " 'subject ' || g, convert_to(repeat('X-Header: value\r\n', 40), 'UTF8'),"
	  " u.highest_modseq, u.highest_modseq FROM u, generate_series(1, $2) g",
	  s64(m, inbox), s64(n, BIG), NULL);
	q("ANALYZE messages", NULL, NULL, NULL);
	for (i = 0; i < 3; i++) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		ok(sora_msgs_open(conn, NULL, acc, "INBOX", true, &o, &err), &err);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
		if (ms < best)
			best = ms;
		assert_int_equal(o.uids.count, BIG);
		assert_int_equal(o.uids.uids[0], 1);
		assert_int_equal(o.uids.uids[BIG - 1], BIG);
		assert_int_equal(o.unseen_count, 10);
		assert_int_equal(o.first_unseen_seq, 99991);
		assert_int_equal(o.recent_count, i == 0 ? BIG : 0);
		assert_string_equal(o.mailbox.keywords,
				    "$Label0 $Label1 $Label2 $Label3 $Label4 $Label5 $Label6");
		if (i == 0)
			print_message("open of %d messages (first, claims \\Recent): %.1f ms\n", BIG,
				      ms);
		sora_msgs_open_result_free(&o);
	}
	print_message("open of %d messages: best %.1f ms\n", BIG, best);
	/* For the record: STORE and EXPUNGE of the whole mailbox. */
	{
		struct sora_msgs_store_result r;
		struct sora_msgs_uids ex;
		uint32_t *all = malloc(BIG * sizeof(*all));

		assert_non_null(all);
		for (i = 0; i < BIG; i++)
			all[i] = (uint32_t)i + 1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		ok(sora_msgs_store(conn, inbox, all, BIG, SORA_MSGS_STORE_ADD,
				   SORA_IMAP_FLAG_DELETED, "", 0, &r, &err), &err);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		assert_int_equal(r.state_count, BIG);
		sora_msgs_store_result_free(&r);
		print_message("STORE +FLAGS \\Deleted of %d messages: %.1f ms\n", BIG,
			      (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
				      (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
		counters_exact(acc);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		ok(sora_msgs_expunge(conn, inbox, NULL, 0, &ex, NULL, &err), &err);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		assert_int_equal(ex.count, BIG);
		sora_msgs_uids_free(&ex);
		print_message("EXPUNGE of %d messages: %.1f ms\n", BIG,
			      (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
				      (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
		free(all);
	}
	/* Generous: a regression to one row per message shows as seconds. */
	assert_true(best < 3000);
	counters_exact(acc);
}

static int setup(void **state)
{
	return live_db_open("sora-test-messages", THREADS + 2, 60000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open),
		cmocka_unit_test(test_changes),
		cmocka_unit_test(test_fetch),
		cmocka_unit_test(test_store),
		cmocka_unit_test(test_expunge),
		cmocka_unit_test(test_copy_move),
		cmocka_unit_test(test_concurrent_store),
		cmocka_unit_test(test_concurrent_copy),
		cmocka_unit_test(test_concurrent_recent),
		cmocka_unit_test(test_open_cached),
		cmocka_unit_test(test_open_large),
	};

	return cmocka_run_group_tests(tests, setup, live_db_teardown);
}
