/* Live tests of backend/store/mailbox.h against a real PostgreSQL with the
 * schema applied. Every case runs only when SORA_TEST_PG_HOST,
 * SORA_TEST_PG_PORT and SORA_TEST_PG_DBNAME (and optionally
 * SORA_TEST_PG_USER, default "postgres") are set and is skipped otherwise;
 * tests/integration/test_mailbox.py sets them up and requires every case to
 * pass. Each case works in an account of its own. */
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

#include "backend/store/deliver.h"
#include "backend/store/mailbox.h"
#include "common/db/db.h"
#include "live-db.h"

static int64_t parent_of(int64_t acc, const char *name)
{
	char a[24];

	return q("SELECT coalesce(parent_id, 0) FROM mailboxes WHERE account_id = $1 AND name = $2",
		 s64(a, acc), name, NULL);
}

/* A message row as the delivery statement would write it: takes the next
 * UID and modseq of the mailbox. */
static void add_message(int64_t mailbox_id, int64_t size, int flags)
{
	char m[24], s[24], f[24];

	q("WITH u AS (UPDATE mailboxes SET uid_next = uid_next + 1,"
	  " highest_modseq = highest_modseq + 1 WHERE id = $1"
	  " RETURNING account_id, uid_next - 1 AS uid, highest_modseq) "
	  "INSERT INTO messages (account_id, mailbox_id, uid, content_hash, size, flags,"
	  " created_modseq, updated_modseq) "
	  "SELECT account_id, $1, uid, repeat('ab', 32), $2, $3, highest_modseq, highest_modseq"
	  " FROM u RETURNING id",
	  s64(m, mailbox_id), s64(s, size), s64(f, flags));
}

static int64_t count_messages(int64_t mailbox_id)
{
	char m[24];

	return q("SELECT count(*) FROM messages WHERE mailbox_id = $1", s64(m, mailbox_id), NULL,
		 NULL);
}

static const struct sora_mailbox_info *find(const struct sora_mailbox_list *l, const char *name)
{
	size_t i;

	for (i = 0; i < l->count; i++)
		if (strcmp(l->items[i].name, name) == 0)
			return &l->items[i];
	return NULL;
}

static void test_create_with_parents(void **state)
{
	struct sora_error err = { 0 };
	int64_t acc, id = 0, id2 = 0;

	need_db();
	acc = new_account();
	ok(sora_mailbox_create(conn, acc, "a/b/c", NULL, &id, &err), &err);
	assert_int_equal(id, mbox_id(acc, "a/b/c"));
	assert_true(mbox_id(acc, "a") > 0);
	assert_int_equal(parent_of(acc, "a"), 0);
	assert_int_equal(parent_of(acc, "a/b"), mbox_id(acc, "a"));
	assert_int_equal(parent_of(acc, "a/b/c"), mbox_id(acc, "a/b"));
	/* Parents are real, selectable mailboxes. */
	{
		struct sora_mailbox_status st;

		ok(sora_mailbox_status(conn, acc, "a/b", &st, &err), &err);
	}
	/* A sibling reuses the parents. */
	ok(sora_mailbox_create(conn, acc, "a/b/d", NULL, &id2, &err), &err);
	assert_int_equal(parent_of(acc, "a/b/d"), mbox_id(acc, "a/b"));

	fails(sora_mailbox_create(conn, acc, "a/b/c", NULL, NULL, &err), &err, SORA_ERR_CONFLICT);
	fails(sora_mailbox_create(conn, acc, "a", NULL, NULL, &err), &err, SORA_ERR_CONFLICT);
	fails(sora_mailbox_create(conn, acc, "inbox", NULL, NULL, &err), &err, SORA_ERR_CONFLICT);
	fails(sora_mailbox_create(conn, acc, "Sent", NULL, NULL, &err), &err, SORA_ERR_CONFLICT);
	/* Case-sensitive apart from INBOX. */
	ok(sora_mailbox_create(conn, acc, "A", NULL, NULL, &err), &err);
	/* INBOX children: "inbox/x" is INBOX/x. */
	ok(sora_mailbox_create(conn, acc, "inbox/x", NULL, NULL, &err), &err);
	assert_int_equal(parent_of(acc, "INBOX/x"), mbox_id(acc, "INBOX"));
	fails(sora_mailbox_create(conn, acc, "INBOX/x", NULL, NULL, &err), &err,
	      SORA_ERR_CONFLICT);
	/* A trailing delimiter announces children: the name without it. */
	ok(sora_mailbox_create(conn, acc, "t/", NULL, NULL, &err), &err);
	assert_true(mbox_id(acc, "t") > 0);

	fails(sora_mailbox_create(conn, acc, "", NULL, NULL, &err), &err, SORA_ERR_INVALID);
	fails(sora_mailbox_create(conn, acc, "/x", NULL, NULL, &err), &err, SORA_ERR_INVALID);
	fails(sora_mailbox_create(conn, acc, "x//y", NULL, NULL, &err), &err, SORA_ERR_INVALID);
	fails(sora_mailbox_create(conn, acc, "x//", NULL, NULL, &err), &err, SORA_ERR_INVALID);
	fails(sora_mailbox_create(conn, acc, "x*", NULL, NULL, &err), &err, SORA_ERR_INVALID);
	fails(sora_mailbox_create(conn, acc, "bad\xff", NULL, NULL, &err), &err,
	      SORA_ERR_INVALID);
	assert_int_equal(mbox_id(acc, "x"), 0);

	/* CREATE-SPECIAL-USE. */
	ok(sora_mailbox_create(conn, acc, "Flagged", "\\flagged", NULL, &err), &err);
	{
		char a[24];
		PGresult *res = NULL;
		const char *params[1] = { s64(a, acc) };

		ok(sora_db_exec(conn, SORA_DB_CLASS_DEFAULT,
				"SELECT special_use FROM mailboxes WHERE account_id = $1 AND"
				" name = 'Flagged'", 1, params, &res, NULL, &err), &err);
		assert_string_equal(PQgetvalue(res, 0, 0), "\\Flagged");
		PQclear(res);
	}
	fails(sora_mailbox_create(conn, acc, "Bogus", "\\Important", NULL, &err), &err,
	      SORA_ERR_INVALID);
	assert_int_equal(mbox_id(acc, "Bogus"), 0);

	/* An account that does not exist. */
	fails(sora_mailbox_create(conn, acc + 1000000, "x", NULL, NULL, &err), &err,
	      SORA_ERR_NOT_FOUND);
}

static void test_list_attributes(void **state)
{
	struct sora_error err = { 0 };
	struct sora_mailbox_list l;
	const struct sora_mailbox_info *mb;
	int64_t acc, other;
	size_t i;

	need_db();
	acc = new_account();
	other = new_account();
	ok(sora_mailbox_create(conn, acc, "Work/Projects/Sora", NULL, NULL, &err), &err);
	ok(sora_mailbox_create(conn, acc, "Work Stuff", NULL, NULL, &err), &err);
	ok(sora_mailbox_create(conn, other, "Elsewhere", NULL, NULL, &err), &err);
	ok(sora_mailbox_list(conn, acc, &l, &err), &err);
	assert_int_equal(l.count, 6 + 4);
	for (i = 1; i < l.count; i++)
		assert_true(strcmp(l.items[i - 1].name, l.items[i].name) < 0);
	assert_null(find(&l, "Elsewhere"));

	mb = find(&l, "INBOX");
	assert_non_null(mb);
	assert_int_equal(mb->id, mbox_id(acc, "INBOX"));
	assert_false(mb->noselect);
	assert_false(mb->has_children);
	assert_true(mb->subscribed);
	assert_string_equal(mb->special_use, "");
	mb = find(&l, "Sent");
	assert_non_null(mb);
	assert_string_equal(mb->special_use, "\\Sent");
	mb = find(&l, "Work");
	assert_non_null(mb);
	assert_true(mb->has_children);
	assert_false(mb->noselect);
	mb = find(&l, "Work/Projects");
	assert_non_null(mb);
	assert_true(mb->has_children);
	mb = find(&l, "Work/Projects/Sora");
	assert_non_null(mb);
	assert_false(mb->has_children);
	mb = find(&l, "Work Stuff");
	assert_non_null(mb);
	assert_false(mb->has_children);
	/* The pattern helper over the list, as LIST "" "Work/%" would. */
	{
		size_t n = 0;

		for (i = 0; i < l.count; i++)
			n += sora_mailbox_match("Work/%", l.items[i].name, '/');
		assert_int_equal(n, 1);
		n = 0;
		for (i = 0; i < l.count; i++)
			n += sora_mailbox_match("Work*", l.items[i].name, '/');
		assert_int_equal(n, 4);
	}
	sora_mailbox_list_free(&l);
	assert_int_equal(l.count, 0);

	/* An account without mailboxes lists nothing. */
	{
		int64_t bare = q("INSERT INTO accounts DEFAULT VALUES RETURNING id", NULL, NULL,
				 NULL);

		ok(sora_mailbox_list(conn, bare, &l, &err), &err);
		assert_int_equal(l.count, 0);
		sora_mailbox_list_free(&l);
	}
}

static void test_delete(void **state)
{
	struct sora_error err = { 0 };
	struct sora_mailbox_status st;
	struct sora_mailbox_list l;
	const struct sora_mailbox_info *mb;
	int64_t acc, leaf, p, uidv;

	need_db();
	acc = new_account();

	fails(sora_mailbox_delete(conn, acc, "INBOX", &err), &err, SORA_ERR_INVALID);
	fails(sora_mailbox_delete(conn, acc, "inbox", &err), &err, SORA_ERR_INVALID);
	fails(sora_mailbox_delete(conn, acc, "Nope", &err), &err, SORA_ERR_NOT_FOUND);
	fails(sora_mailbox_delete(conn, acc, "a//b", &err), &err, SORA_ERR_INVALID);

	/* A leaf goes with its messages. */
	ok(sora_mailbox_create(conn, acc, "Leaf", NULL, &leaf, &err), &err);
	add_message(leaf, 10, 0);
	add_message(leaf, 20, 1);
	assert_int_equal(count_messages(leaf), 2);
	ok(sora_mailbox_delete(conn, acc, "Leaf", &err), &err);
	assert_int_equal(mbox_id(acc, "Leaf"), 0);
	assert_int_equal(count_messages(leaf), 0);

	/* A mailbox with children becomes \Noselect, its messages removed. */
	ok(sora_mailbox_create(conn, acc, "P/C", NULL, NULL, &err), &err);
	p = mbox_id(acc, "P");
	add_message(p, 10, 0);
	ok(sora_mailbox_status(conn, acc, "P", &st, &err), &err);
	uidv = st.uid_validity;
	ok(sora_mailbox_delete(conn, acc, "P", &err), &err);
	assert_int_equal(mbox_id(acc, "P"), p);
	assert_int_equal(count_messages(p), 0);
	ok(sora_mailbox_list(conn, acc, &l, &err), &err);
	mb = find(&l, "P");
	assert_non_null(mb);
	assert_true(mb->noselect);
	assert_true(mb->has_children);
	sora_mailbox_list_free(&l);
	fails(sora_mailbox_status(conn, acc, "P", &st, &err), &err, SORA_ERR_NOT_FOUND);
	/* ... and cannot be deleted again while it has children. */
	fails(sora_mailbox_delete(conn, acc, "P", &err), &err, SORA_ERR_INVALID);

	/* CREATE brings it back, selectable, with a new UIDVALIDITY. */
	ok(sora_mailbox_create(conn, acc, "P", NULL, NULL, &err), &err);
	ok(sora_mailbox_status(conn, acc, "P", &st, &err), &err);
	assert_true(st.uid_validity != uidv);
	assert_int_equal(st.messages, 0);

	/* The last child of a \Noselect placeholder takes the placeholder
	 * with it. */
	ok(sora_mailbox_delete(conn, acc, "P", &err), &err);
	ok(sora_mailbox_delete(conn, acc, "P/C", &err), &err);
	assert_int_equal(mbox_id(acc, "P"), 0);

	/* A real parent stays when its child goes. */
	ok(sora_mailbox_create(conn, acc, "R/C", NULL, NULL, &err), &err);
	ok(sora_mailbox_delete(conn, acc, "R/C", &err), &err);
	assert_true(mbox_id(acc, "R") > 0);
	ok(sora_mailbox_list(conn, acc, &l, &err), &err);
	mb = find(&l, "R");
	assert_non_null(mb);
	assert_false(mb->has_children);
	sora_mailbox_list_free(&l);

	/* Deleted and re-created: a different UIDVALIDITY. */
	ok(sora_mailbox_status(conn, acc, "R", &st, &err), &err);
	uidv = st.uid_validity;
	ok(sora_mailbox_delete(conn, acc, "R", &err), &err);
	ok(sora_mailbox_create(conn, acc, "R", NULL, NULL, &err), &err);
	ok(sora_mailbox_status(conn, acc, "R", &st, &err), &err);
	assert_true(st.uid_validity != uidv);
}

static void test_rename_with_children(void **state)
{
	struct sora_error err = { 0 };
	struct sora_mailbox_status st, st2;
	int64_t acc, x, y;

	need_db();
	acc = new_account();
	ok(sora_mailbox_create(conn, acc, "r/x/y", NULL, &y, &err), &err);
	x = mbox_id(acc, "r/x");
	add_message(x, 100, 0);
	add_message(y, 50, 0);
	ok(sora_mailbox_status(conn, acc, "r/x", &st, &err), &err);

	ok(sora_mailbox_rename(conn, acc, "r/x", "s/t/u", &err), &err);
	assert_int_equal(mbox_id(acc, "r/x"), 0);
	assert_int_equal(mbox_id(acc, "r/x/y"), 0);
	assert_true(mbox_id(acc, "r") > 0);  /* a real parent stays */
	assert_int_equal(mbox_id(acc, "s/t/u"), x);
	assert_int_equal(mbox_id(acc, "s/t/u/y"), y);
	assert_int_equal(parent_of(acc, "s/t/u"), mbox_id(acc, "s/t"));
	assert_int_equal(parent_of(acc, "s/t"), mbox_id(acc, "s"));
	assert_int_equal(parent_of(acc, "s/t/u/y"), x);
	ok(sora_mailbox_status(conn, acc, "s/t/u", &st2, &err), &err);
	assert_int_equal(st2.uid_validity, st.uid_validity);
	assert_int_equal(st2.uid_next, st.uid_next);
	assert_int_equal(st2.messages, 1);
	assert_int_equal(count_messages(y), 1);

	/* Up to the top level. */
	ok(sora_mailbox_rename(conn, acc, "s/t/u/y", "Top", &err), &err);
	assert_int_equal(mbox_id(acc, "Top"), y);
	assert_int_equal(parent_of(acc, "Top"), 0);

	fails(sora_mailbox_rename(conn, acc, "Nope", "Other", &err), &err, SORA_ERR_NOT_FOUND);
	fails(sora_mailbox_rename(conn, acc, "Top", "Sent", &err), &err, SORA_ERR_CONFLICT);
	fails(sora_mailbox_rename(conn, acc, "Top", "Top", &err), &err, SORA_ERR_CONFLICT);
	fails(sora_mailbox_rename(conn, acc, "Top", "inbox", &err), &err, SORA_ERR_CONFLICT);
	fails(sora_mailbox_rename(conn, acc, "s", "s/t/u/v", &err), &err, SORA_ERR_INVALID);
	fails(sora_mailbox_rename(conn, acc, "Top", "a//b", &err), &err, SORA_ERR_INVALID);
	/* A prefix that is not a parent is not a subtree. */
	ok(sora_mailbox_create(conn, acc, "ab", NULL, NULL, &err), &err);
	ok(sora_mailbox_create(conn, acc, "abc", NULL, NULL, &err), &err);
	fails(sora_mailbox_rename(conn, acc, "ab", "ab/c", &err), &err, SORA_ERR_INVALID);
	ok(sora_mailbox_rename(conn, acc, "ab", "zz", &err), &err);
	assert_true(mbox_id(acc, "abc") > 0);
	assert_true(mbox_id(acc, "zz") > 0);

	/* Renaming the last child of a \Noselect placeholder away removes the
	 * placeholder. */
	ok(sora_mailbox_create(conn, acc, "q/z", NULL, NULL, &err), &err);
	ok(sora_mailbox_delete(conn, acc, "q", &err), &err);
	ok(sora_mailbox_rename(conn, acc, "q/z", "w", &err), &err);
	assert_int_equal(mbox_id(acc, "q"), 0);
	assert_true(mbox_id(acc, "w") > 0);
}

static void test_rename_inbox(void **state)
{
	struct sora_error err = { 0 };
	struct sora_mailbox_status before, inbox, old;
	int64_t acc, in;

	need_db();
	acc = new_account();
	in = mbox_id(acc, "INBOX");
	add_message(in, 100, 0);
	add_message(in, 200, 1);
	ok(sora_mailbox_create(conn, acc, "INBOX/kid", NULL, NULL, &err), &err);
	ok(sora_mailbox_status(conn, acc, "INBOX", &before, &err), &err);

	ok(sora_mailbox_rename(conn, acc, "inbox", "Old/Mail", &err), &err);
	ok(sora_mailbox_status(conn, acc, "INBOX", &inbox, &err), &err);
	ok(sora_mailbox_status(conn, acc, "Old/Mail", &old, &err), &err);
	assert_int_equal(inbox.id, in);
	assert_int_equal(inbox.messages, 0);
	assert_int_equal(inbox.unseen, 0);
	assert_int_equal(inbox.size, 0);
	assert_int_equal(inbox.uid_next, before.uid_next);   /* UIDs never reused */
	assert_true(inbox.uid_validity != before.uid_validity);
	assert_int_equal(old.messages, 2);
	assert_int_equal(old.unseen, 1);
	assert_int_equal(old.size, 300);
	assert_int_equal(old.uid_next, before.uid_next);
	assert_int_equal(old.highest_modseq, before.highest_modseq);
	assert_true(old.uid_validity != before.uid_validity);
	/* Children of INBOX do not move. */
	assert_true(mbox_id(acc, "INBOX/kid") > 0);
	assert_int_equal(mbox_id(acc, "Old/Mail/kid"), 0);
	/* New deliveries still go to INBOX, with the next UID. */
	add_message(in, 5, 0);
	ok(sora_mailbox_status(conn, acc, "INBOX", &inbox, &err), &err);
	assert_int_equal(inbox.messages, 1);
	assert_int_equal(inbox.uid_next, before.uid_next + 1);
	fails(sora_mailbox_rename(conn, acc, "INBOX", "Old/Mail", &err), &err, SORA_ERR_CONFLICT);

	/* Under INBOX itself: its children stay, so this is no subtree move. */
	ok(sora_mailbox_rename(conn, acc, "INBOX", "INBOX/old", &err), &err);
	ok(sora_mailbox_status(conn, acc, "INBOX/old", &old, &err), &err);
	assert_int_equal(old.messages, 1);
	assert_int_equal(parent_of(acc, "INBOX/old"), in);
	ok(sora_mailbox_status(conn, acc, "INBOX", &inbox, &err), &err);
	assert_int_equal(inbox.messages, 0);
}

static void test_subscribe(void **state)
{
	struct sora_error err = { 0 };
	struct sora_mailbox_list l;
	int64_t acc;

	need_db();
	acc = new_account();
	ok(sora_mailbox_subscribe(conn, acc, "Sent", false, &err), &err);
	ok(sora_mailbox_subscribe(conn, acc, "inbox", false, &err), &err);
	ok(sora_mailbox_list(conn, acc, &l, &err), &err);
	assert_false(find(&l, "Sent")->subscribed);
	assert_false(find(&l, "INBOX")->subscribed);
	assert_true(find(&l, "Drafts")->subscribed);
	sora_mailbox_list_free(&l);
	ok(sora_mailbox_subscribe(conn, acc, "Sent", true, &err), &err);
	ok(sora_mailbox_list(conn, acc, &l, &err), &err);
	assert_true(find(&l, "Sent")->subscribed);
	sora_mailbox_list_free(&l);
	/* A name without a mailbox may be subscribed (RFC 3501 6.3.6) and is
	 * listed as \NonExistent; a subscription outlives DELETE. */
	ok(sora_mailbox_subscribe(conn, acc, "Nope", true, &err), &err);
	ok(sora_mailbox_create(conn, acc, "Gone", NULL, NULL, &err), &err);
	ok(sora_mailbox_subscribe(conn, acc, "Gone", true, &err), &err);
	ok(sora_mailbox_delete(conn, acc, "Gone", &err), &err);
	ok(sora_mailbox_list(conn, acc, &l, &err), &err);
	assert_true(find(&l, "Nope")->nonexistent);
	assert_true(find(&l, "Nope")->subscribed);
	assert_true(find(&l, "Gone")->nonexistent);
	assert_false(find(&l, "Sent")->nonexistent);
	sora_mailbox_list_free(&l);
	ok(sora_mailbox_subscribe(conn, acc, "Nope", false, &err), &err);
	fails(sora_mailbox_subscribe(conn, acc, "Nope", false, &err), &err, SORA_ERR_NOT_FOUND);
	/* CREATE does not subscribe; RENAME takes subscriptions along. */
	ok(sora_mailbox_create(conn, acc, "Fresh/Child", NULL, NULL, &err), &err);
	ok(sora_mailbox_subscribe(conn, acc, "Fresh/Child", true, &err), &err);
	ok(sora_mailbox_rename(conn, acc, "Fresh", "Renamed", &err), &err);
	ok(sora_mailbox_list(conn, acc, &l, &err), &err);
	assert_false(find(&l, "Renamed")->subscribed);
	assert_true(find(&l, "Renamed/Child")->subscribed);
	assert_null(find(&l, "Fresh/Child"));
	sora_mailbox_list_free(&l);
	fails(sora_mailbox_subscribe(conn, acc, "", true, &err), &err, SORA_ERR_INVALID);
}

static void test_status(void **state)
{
	struct sora_error err = { 0 };
	struct sora_mailbox_status st;
	int64_t acc, id;
	char m[24];

	need_db();
	acc = new_account();
	ok(sora_mailbox_status(conn, acc, "INBOX", &st, &err), &err);
	assert_int_equal(st.messages, 0);
	assert_int_equal(st.uid_next, 1);
	assert_int_equal(st.highest_modseq, 1);
	assert_true(st.uid_validity >= 1 && st.uid_validity <= 4294967295LL);

	ok(sora_mailbox_create(conn, acc, "S", NULL, &id, &err), &err);
	add_message(id, 100, 0);
	add_message(id, 200, 1);      /* \Seen */
	add_message(id, 300, 8);      /* \Deleted, unseen */
	ok(sora_mailbox_status(conn, acc, "S", &st, &err), &err);
	assert_int_equal(st.id, id);
	assert_int_equal(st.messages, 3);
	assert_int_equal(st.unseen, 2);
	assert_int_equal(st.size, 600);
	assert_int_equal(st.uid_next, 4);
	assert_int_equal(st.highest_modseq, 4);

	/* An expunged message no longer counts. */
	q("UPDATE messages SET expunged_at = now(), expunged_modseq = 5 WHERE mailbox_id = $1"
	  " AND uid = 1", s64(m, id), NULL, NULL);
	ok(sora_mailbox_status(conn, acc, "S", &st, &err), &err);
	assert_int_equal(st.messages, 2);
	assert_int_equal(st.unseen, 1);
	assert_int_equal(st.size, 500);

	fails(sora_mailbox_status(conn, acc, "Nope", &st, &err), &err, SORA_ERR_NOT_FOUND);
	fails(sora_mailbox_status(conn, acc, "a//b", &st, &err), &err, SORA_ERR_INVALID);
}

/* Concurrent CREATE, DELETE and RENAME on one account from several
 * connections: every failure is one of the expected classes (never a
 * deadlock or a constraint error), and the tree stays consistent (checked
 * here and by test_mailbox.py over the whole database). */
#define RACE_THREADS 4
#define RACE_OPS 150

struct race {
	int64_t acc;
	unsigned seed;
	int unexpected;
	int succeeded;
	char last[SORA_ERROR_MSG_SIZE];
};

static void *race_thread(void *arg)
{
	static const char *const names[] = {
		"c0", "c1", "c0/d", "c1/d", "c0/d/e", "c1/d/e", "c2", "c2/d",
	};
	const size_t n = sizeof(names) / sizeof(names[0]);
	struct race *r = arg;
	struct sora_db_conn *c = NULL;
	struct sora_error err = { 0 };
	int i;

	if (sora_db_acquire(pool, SORA_DB_PRIMARY, 10000, &c, &err) != 0) {
		r->unexpected++;
		snprintf(r->last, sizeof(r->last), "%s", err.msg);
		return NULL;
	}
	for (i = 0; i < RACE_OPS; i++) {
		const char *a = names[rand_r(&r->seed) % n], *b = names[rand_r(&r->seed) % n];
		int rc;

		switch (rand_r(&r->seed) % 3) {
		case 0:
			rc = sora_mailbox_create(c, r->acc, a, NULL, NULL, &err);
			break;
		case 1:
			rc = sora_mailbox_delete(c, r->acc, a, &err);
			break;
		default:
			rc = sora_mailbox_rename(c, r->acc, a, b, &err);
			break;
		}
		if (rc == 0)
			r->succeeded++;
		else if (err.cls != SORA_ERR_NOT_FOUND && err.cls != SORA_ERR_CONFLICT &&
		    err.cls != SORA_ERR_INVALID) {
			r->unexpected++;
			snprintf(r->last, sizeof(r->last), "%s", err.msg);
		}
	}
	sora_db_release(&c);
	return NULL;
}

static void test_concurrent_tree_changes(void **state)
{
	struct race races[RACE_THREADS];
	pthread_t th[RACE_THREADS];
	char a[24];
	int64_t acc;
	int i, succeeded = 0;

	need_db();
	acc = new_account();
	for (i = 0; i < RACE_THREADS; i++) {
		memset(&races[i], 0, sizeof(races[i]));
		races[i].acc = acc;
		races[i].seed = 1234u + (unsigned)i;
		assert_int_equal(pthread_create(&th[i], NULL, race_thread, &races[i]), 0);
	}
	for (i = 0; i < RACE_THREADS; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < RACE_THREADS; i++) {
		if (races[i].unexpected != 0)
			fail_msg("thread %d: %d unexpected failures, last: %s", i,
				 races[i].unexpected, races[i].last);
		succeeded += races[i].succeeded;
	}
	print_message("concurrent tree changes: %d of %d succeeded\n", succeeded,
		      RACE_THREADS * RACE_OPS);
	/* The mix must really change the tree, not only fail. */
	assert_true(succeeded >= RACE_THREADS * RACE_OPS / 10);
	/* Every parent_id names the mailbox one level up; top level has none. */
	assert_int_equal(q("SELECT count(*) FROM mailboxes c LEFT JOIN mailboxes p"
			   " ON p.id = c.parent_id WHERE c.account_id = $1 AND"
			   " CASE WHEN position('/' IN c.name) = 0 THEN c.parent_id IS NOT NULL"
			   " ELSE p.id IS NULL OR c.name NOT LIKE p.name || '/%'"
			   " OR position('/' IN substr(c.name, length(p.name) + 2)) > 0 END",
			   s64(a, acc), NULL, NULL), 0);
	assert_int_equal(q("SELECT count(*) FROM mailboxes m WHERE account_id = $1 AND noselect"
			   " AND NOT EXISTS (SELECT 1 FROM mailboxes c WHERE c.parent_id = m.id)",
			   s64(a, acc), NULL, NULL), 0);
}

static int setup(void **state)
{
	return live_db_open("sora-test-mailbox", RACE_THREADS + 1, 30000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_with_parents),
		cmocka_unit_test(test_list_attributes),
		cmocka_unit_test(test_delete),
		cmocka_unit_test(test_rename_with_children),
		cmocka_unit_test(test_rename_inbox),
		cmocka_unit_test(test_subscribe),
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_concurrent_tree_changes),
	};

	return cmocka_run_group_tests(tests, setup, live_db_teardown);
}
