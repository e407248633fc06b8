/* The POP3 maildrop: the account's INBOX with the exclusive lock RFC 1939
 * §4 asks for, its listing, and the UPDATE state.
 *
 * Lock: a row of pop3_locks (migration 0006) per account, taken when the
 * maildrop opens and deleted at QUIT or when the session ends otherwise.
 * It carries a lease of absolute_session_timeout plus a minute (a session
 * cannot live longer), so the lock of a process that died is taken over
 * when the lease ran out; with the session timeout disabled the lease is
 * a day.
 *
 * Listing: live INBOX messages in UID order with messages.pop3_size, the
 * size RETR sends (common/proto/pop3.h). Rows stored before migration 0006
 * have none: their bodies are read once here to compute it, and it is
 * stored for the next session.
 *
 * UPDATE: the deleted messages get \Deleted and are expunged with UID
 * EXPUNGE's semantics (sora_msgs_store + sora_msgs_expunge, the path of
 * IMAP's EXPUNGE, so they stay recoverable the same way until the janitor
 * purges them and IMAP sessions are told through the usual notifications);
 * messages already expunged by someone else are simply not there any
 * more. Messages RETR sent whole get \Seen, as Dovecot does.
 *
 * Worker threads only, except pop3_maildrop_abandon and _free (loop). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/blob/blob-store.h"
#include "backend/pop3/pop3-private.h"
#include "backend/store/deliver.h"
#include "backend/store/messages.h"
#include "common/config/config.h"
#include "common/net/net.h"
#include "common/proto/imap-search.h"

#define LEASE_NO_TIMEOUT_S (24 * 3600)

static const char sql_lock[] =
	"INSERT INTO pop3_locks AS l (account_id, owner, expires_at)"
	" VALUES ($1::bigint, $2::text, now() + make_interval(secs => $3::bigint))"
	" ON CONFLICT (account_id) DO UPDATE"
	"   SET owner = EXCLUDED.owner, locked_at = now(), expires_at = EXCLUDED.expires_at"
	"   WHERE l.expires_at < now()"
	" RETURNING 1";
static const char sql_unlock[] =
	"DELETE FROM pop3_locks WHERE account_id = $1::bigint AND owner = $2::text";
static const char sql_list[] =
	"SELECT uid, pop3_size, CASE WHEN pop3_size IS NULL THEN content_hash END"
	"  FROM messages WHERE mailbox_id = $1::bigint AND expunged_at IS NULL ORDER BY uid";
static const char sql_set_sizes[] =
	"UPDATE messages m SET pop3_size = v.size"
	"  FROM unnest($2::bigint[], $3::bigint[]) AS v (uid, size)"
	" WHERE m.mailbox_id = $1::bigint AND m.uid = v.uid AND m.pop3_size IS NULL";
static const char sql_hashes[] =
	"SELECT uid, content_hash FROM messages"
	" WHERE mailbox_id = $1::bigint AND uid = ANY ($2::bigint[])";

static int unlock(struct pop3_cmd *cmd)
{
	struct pop3_session *s = cmd->s;
	char acc[24];
	const char *params[2] = { acc, s->lock_owner };

	if (!s->locked)
		return 0;
	snprintf(acc, sizeof(acc), "%" PRId64, s->account_id);
	if (sora_db_exec(cmd->db, SORA_DB_CLASS_WRITE, sql_unlock, 2, params, NULL, NULL,
			 &cmd->err) < 0)
		return -1;
	s->locked = false;
	return 0;
}

static int lock(struct pop3_cmd *cmd)
{
	struct pop3_session *s = cmd->s;
	const struct sora_server_config *srv = sora_conn_server(s->c);
	int64_t lease = srv->absolute_session_timeout_ms > 0
				? srv->absolute_session_timeout_ms / 1000 + 60 : LEASE_NO_TIMEOUT_S;
	char acc[24], secs[24];
	const char *params[3] = { acc, s->lock_owner, secs };
	PGresult *r = NULL;
	int ret;

	snprintf(acc, sizeof(acc), "%" PRId64, s->account_id);
	snprintf(secs, sizeof(secs), "%" PRId64, lease);
	snprintf(s->lock_owner, sizeof(s->lock_owner), "%s/%s", sora_backend_instance_id(),
		 sora_conn_id(s->c));
	if (sora_db_exec(cmd->db, SORA_DB_CLASS_WRITE, sql_lock, 3, params, &r, NULL, &cmd->err) < 0)
		return -1;
	ret = PQntuples(r) == 1 ? 0 : 1;
	PQclear(r);
	if (ret == 0)
		s->locked = true;
	return ret;
}

/* ---- sizes of rows from before migration 0006 ---- */

static int size_cb(void *ctx, const void *data, size_t len)
{
	sora_pop3_size_feed(ctx, data, len);
	return 0;
}

static void append_u64(struct sora_buf *b, uint64_t v)
{
	sora_buf_printf(b, "%s%" PRIu64, b->len > 1 ? "," : "", v);
}

/* Computes and stores the sizes of the rows listed in unsized (indexes into
 * s->msgs, with their hashes). */
static int fill_sizes(struct pop3_cmd *cmd, const size_t *unsized, char (*hashes)[65], size_t n)
{
	struct pop3_session *s = cmd->s;
	struct sora_buf uids = { 0 }, sizes = { 0 };
	char mb[24];
	int ret = 0;

	sora_buf_append_str(&uids, "{");
	sora_buf_append_str(&sizes, "{");
	for (size_t i = 0; i < n; i++) {
		struct pop3_msg *m = &s->msgs[unsized[i]];
		struct sora_pop3_dot d;
		struct sora_error err;

		sora_pop3_size_init(&d);
		if (sora_blob_read(sora_backend()->blobs, s->account_id, hashes[i], 0, SORA_BLOB_TO_END,
				   size_cb, &d, &err) < 0) {
			/* RETR will fail for it as well; LIST shows 0 meanwhile. */
			sora_warn(sora_conn_log_ctx(s->c), "POP3 size of UID %u: %s", m->uid, err.msg);
			continue;
		}
		m->size = sora_pop3_size_final(&d);
		append_u64(&uids, m->uid);
		append_u64(&sizes, m->size);
	}
	sora_buf_append_str(&uids, "}");
	sora_buf_append_str(&sizes, "}");
	if (uids.len > 2) {
		const char *params[3] = { mb, NULL, NULL };

		snprintf(mb, sizeof(mb), "%" PRId64, s->mailbox_id);
		/* NUL-terminated for libpq. */
		if (sora_buf_append(&uids, "", 1) < 0 || sora_buf_append(&sizes, "", 1) < 0) {
			ret = sora_error_set(&cmd->err, SORA_ERR_TEMPORARY, "out of memory");
		} else {
			params[1] = uids.data;
			params[2] = sizes.data;
			ret = sora_db_exec(cmd->db, SORA_DB_CLASS_WRITE, sql_set_sizes, 3, params, NULL,
					   NULL, &cmd->err);
		}
	}
	sora_buf_free(&uids);
	sora_buf_free(&sizes);
	return ret;
}

static int list(struct pop3_cmd *cmd)
{
	struct pop3_session *s = cmd->s;
	char mb[24];
	const char *params[1] = { mb };
	PGresult *r = NULL;
	size_t n, missing = 0, *unsized = NULL;
	char (*hashes)[65] = NULL;
	int ret = -1;

	snprintf(mb, sizeof(mb), "%" PRId64, s->mailbox_id);
	if (sora_db_exec(cmd->db, SORA_DB_CLASS_DEFAULT, sql_list, 1, params, &r, NULL, &cmd->err) < 0)
		return -1;
	n = (size_t)PQntuples(r);
	if (pop3_memory_reserve(s, n * sizeof(struct pop3_msg), "login") < 0) {
		sora_error_set(&cmd->err, SORA_ERR_LIMIT, "%zu messages exceed session_memory_limit", n);
		goto out;
	}
	s->msgs = calloc(n > 0 ? n : 1, sizeof(*s->msgs));
	if (s->msgs == NULL) {
		sora_error_set(&cmd->err, SORA_ERR_TEMPORARY, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct pop3_msg *m = &s->msgs[i];

		m->uid = (uint32_t)strtoul(PQgetvalue(r, (int)i, 0), NULL, 10);
		if (PQgetisnull(r, (int)i, 1))
			missing++;
		else
			m->size = strtoull(PQgetvalue(r, (int)i, 1), NULL, 10);
	}
	s->count = n;
	if (missing > 0) {
		size_t k = 0;

		unsized = calloc(missing, sizeof(*unsized));
		hashes = calloc(missing, sizeof(*hashes));
		if (unsized == NULL || hashes == NULL) {
			sora_error_set(&cmd->err, SORA_ERR_TEMPORARY, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			if (!PQgetisnull(r, (int)i, 1))
				continue;
			unsized[k] = i;
			sora_strlcpy(hashes[k], PQgetvalue(r, (int)i, 2), sizeof(hashes[k]));
			k++;
		}
		if (fill_sizes(cmd, unsized, hashes, missing) < 0)
			goto out;
	}
	for (size_t i = 0; i < n; i++)
		s->total_octets += s->msgs[i].size;
	ret = 0;
out:
	free(unsized);
	free(hashes);
	PQclear(r);
	return ret;
}

int pop3_maildrop_open(struct pop3_cmd *cmd)
{
	struct pop3_session *s = cmd->s;
	int r;

	if (pop3_db(cmd) < 0)
		return -1;
	r = lock(cmd);
	if (r != 0)
		return r;
	if (sora_store_ensure_default_mailboxes(cmd->db, s->account_id, &s->mailbox_id, &cmd->err) < 0 ||
	    list(cmd) < 0) {
		struct sora_error keep = cmd->err;

		pop3_maildrop_free(s);
		unlock(cmd);
		cmd->err = keep;
		return -1;
	}
	return 0;
}

const char *pop3_maildrop_hash(struct pop3_cmd *cmd, size_t index)
{
	struct pop3_session *s = cmd->s;
	struct sora_buf uids = { 0 };
	char mb[24];
	PGresult *r = NULL;
	size_t n;

	if (s->hashes != NULL && index >= s->hash_first && index < s->hash_first + s->hash_count &&
	    s->hashes[index - s->hash_first][0] != '\0')
		return s->hashes[index - s->hash_first];
	if (s->hashes == NULL) {
		if (pop3_memory_reserve(s, POP3_HASH_WINDOW * sizeof(*s->hashes), "retr") < 0) {
			sora_error_set(&cmd->err, SORA_ERR_LIMIT, "session_memory_limit");
			return NULL;
		}
		s->hashes = calloc(POP3_HASH_WINDOW, sizeof(*s->hashes));
		if (s->hashes == NULL) {
			pop3_memory_release(s, POP3_HASH_WINDOW * sizeof(*s->hashes));
			sora_error_set(&cmd->err, SORA_ERR_TEMPORARY, "out of memory");
			return NULL;
		}
	}
	if (pop3_db(cmd) < 0)
		return NULL;
	n = s->count - index;
	if (n > POP3_HASH_WINDOW)
		n = POP3_HASH_WINDOW;
	memset(s->hashes, 0, POP3_HASH_WINDOW * sizeof(*s->hashes));
	s->hash_first = index;
	s->hash_count = n;
	sora_buf_append_str(&uids, "{");
	for (size_t i = 0; i < n; i++)
		sora_buf_printf(&uids, "%s%u", i > 0 ? "," : "", s->msgs[index + i].uid);
	sora_buf_append(&uids, "}", 2);
	snprintf(mb, sizeof(mb), "%" PRId64, s->mailbox_id);
	if (uids.data == NULL ||
	    sora_db_exec(cmd->db, SORA_DB_CLASS_DEFAULT, sql_hashes, 2,
			 (const char *const[]){ mb, uids.data }, &r, NULL, &cmd->err) < 0) {
		if (uids.data == NULL)
			sora_error_set(&cmd->err, SORA_ERR_TEMPORARY, "out of memory");
		s->hash_count = 0;
		sora_buf_free(&uids);
		return NULL;
	}
	sora_buf_free(&uids);
	for (int row = 0; row < PQntuples(r); row++) {
		uint32_t uid = (uint32_t)strtoul(PQgetvalue(r, row, 0), NULL, 10);

		/* The window is consecutive messages in UID order. */
		for (size_t i = 0; i < n; i++) {
			if (s->msgs[index + i].uid == uid) {
				sora_strlcpy(s->hashes[i], PQgetvalue(r, row, 1), sizeof(s->hashes[i]));
				break;
			}
		}
	}
	PQclear(r);
	if (s->hashes[0][0] == '\0') {
		/* Purged since (expunged elsewhere, then removed by the janitor). */
		sora_error_set(&cmd->err, SORA_ERR_NOT_FOUND, "message UID %u no longer exists",
			       s->msgs[index].uid);
		return NULL;
	}
	return s->hashes[0];
}

static uint32_t *collect(struct pop3_session *s, bool deleted, size_t *n_r)
{
	uint32_t *uids = malloc((s->count > 0 ? s->count : 1) * sizeof(*uids));
	size_t n = 0;

	if (uids == NULL)
		return NULL;
	for (size_t i = 0; i < s->count; i++) {
		const struct pop3_msg *m = &s->msgs[i];

		if (deleted ? m->deleted : (m->retrieved && !m->deleted))
			uids[n++] = m->uid;
	}
	*n_r = n;
	return uids;
}

int pop3_maildrop_update(struct pop3_cmd *cmd, size_t *expunged_r)
{
	struct pop3_session *s = cmd->s;
	struct sora_msgs_store_result st;
	struct sora_msgs_uids expunged = { 0 };
	uint32_t *uids = NULL;
	size_t n = 0;
	int ret = -1;

	*expunged_r = 0;
	if (pop3_db(cmd) < 0)
		return -1;
	memset(&st, 0, sizeof(st));
	uids = collect(s, true, &n);
	if (uids == NULL) {
		sora_error_set(&cmd->err, SORA_ERR_TEMPORARY, "out of memory");
		goto out;
	}
	if (n > 0) {
		/* UIDs ascending (the listing is in UID order). Messages
		 * expunged meanwhile are skipped by both calls. */
		if (sora_msgs_store(cmd->db, s->mailbox_id, uids, n, SORA_MSGS_STORE_ADD,
				    SORA_IMAP_FLAG_DELETED, "", 0, &st, &cmd->err) < 0)
			goto out;
		sora_msgs_store_result_free(&st);
		if (sora_msgs_expunge(cmd->db, s->mailbox_id, uids, n, &expunged, NULL, &cmd->err) < 0)
			goto out;
		*expunged_r = expunged.count;
	}
	free(uids);
	uids = collect(s, false, &n);
	if (uids == NULL) {
		sora_error_set(&cmd->err, SORA_ERR_TEMPORARY, "out of memory");
		goto out;
	}
	if (n > 0) {
		if (sora_msgs_store(cmd->db, s->mailbox_id, uids, n, SORA_MSGS_STORE_ADD,
				    SORA_IMAP_FLAG_SEEN, "", 0, &st, &cmd->err) < 0)
			goto out;
		sora_msgs_store_result_free(&st);
	}
	ret = 0;
out:
	free(uids);
	sora_msgs_uids_free(&expunged);
	sora_msgs_store_result_free(&st);
	if (ret == 0)
		ret = unlock(cmd);
	else
		unlock(cmd);
	return ret;
}

/* ---- releasing the lock when the session ends without QUIT ---- */

struct abandon {
	int64_t account_id;
	char owner[128];
};

static void abandon_work(void *arg)
{
	struct abandon *a = arg;
	struct sora_db_conn *db = NULL;
	struct sora_error err;
	char acc[24];
	const char *params[2] = { acc, a->owner };

	snprintf(acc, sizeof(acc), "%" PRId64, a->account_id);
	if (sora_db_acquire(sora_backend()->db, SORA_DB_PRIMARY, 10000, &db, &err) < 0 ||
	    sora_db_exec(db, SORA_DB_CLASS_WRITE, sql_unlock, 2, params, NULL, NULL, &err) < 0)
		sora_warn(NULL, "POP3: releasing the maildrop lock of account %" PRId64
			  " failed (its lease ends it): %s", a->account_id, err.msg);
	sora_db_release(&db);
}

static void abandon_done(void *arg)
{
	free(arg);
}

void pop3_maildrop_abandon(struct pop3_session *s)
{
	struct abandon *a = calloc(1, sizeof(*a));

	s->locked = false;
	if (a == NULL)
		return;
	a->account_id = s->account_id;
	sora_strlcpy(a->owner, s->lock_owner, sizeof(a->owner));
	if (sora_work_submit(sora_conn_net(s->c), abandon_work, abandon_done, a) < 0)
		free(a);
}

void pop3_maildrop_free(struct pop3_session *s)
{
	if (s->msgs != NULL)
		pop3_memory_release(s, s->count * sizeof(struct pop3_msg));
	free(s->msgs);
	s->msgs = NULL;
	s->count = 0;
	s->deleted_count = 0;
	s->total_octets = s->deleted_octets = 0;
	if (s->hashes != NULL)
		pop3_memory_release(s, POP3_HASH_WINDOW * sizeof(*s->hashes));
	free(s->hashes);
	s->hashes = NULL;
	s->hash_count = 0;
}
