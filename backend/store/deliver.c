/* Storing incoming messages: see deliver.h. */
#include "backend/store/deliver.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/core/log.h"
#include "common/proto/mime/mime-json.h"
#include "common/proto/smtp.h"

#define READ_CHUNK (64 * 1024)

/* ---- mailboxes ---- */

/* The default set, created together when an account has no INBOX yet. The
 * backslashes are literal: standard_conforming_strings is on by default
 * since PostgreSQL 9.1 and the pool does not change it. */
static const char sql_create_defaults[] =
	"INSERT INTO mailboxes (account_id, name, special_use) "
	"SELECT $1, v.name, v.special_use FROM (VALUES "
	"('INBOX', NULL), ('Sent', '\\Sent'), ('Drafts', '\\Drafts'), ('Junk', '\\Junk'), "
	"('Trash', '\\Trash'), ('Archive', '\\Archive')) AS v (name, special_use) "
	"WHERE NOT EXISTS (SELECT 1 FROM mailboxes WHERE account_id = $1 AND name = 'INBOX') "
	"ON CONFLICT (account_id, name) DO NOTHING";

static const char sql_inbox_id[] =
	"SELECT id FROM mailboxes WHERE account_id = $1 AND name = 'INBOX'";

int sora_store_ensure_default_mailboxes(struct sora_db_conn *conn, int64_t account_id,
					int64_t *inbox_id_r, struct sora_error *err)
{
	char acc[24];
	const char *params[1] = { acc };
	PGresult *res = NULL;
	int rc;

	snprintf(acc, sizeof(acc), "%" PRId64, account_id);
	rc = sora_db_exec(conn, SORA_DB_CLASS_WRITE, sql_create_defaults, 1, params, NULL, NULL,
			  err);
	if (rc != 0 || inbox_id_r == NULL)
		return rc;
	rc = sora_db_exec(conn, SORA_DB_CLASS_DEFAULT, sql_inbox_id, 1, params, &res, NULL,
			  err);
	if (rc != 0)
		return rc;
	if (PQntuples(res) != 1) {
		/* Only possible if the account was purged meanwhile. */
		PQclear(res);
		return sora_error_set(err, SORA_ERR_NOT_FOUND,
				      "account %" PRId64 " has no INBOX after creating it", account_id);
	}
	rc = sora_db_get_i64(res, 0, 0, inbox_id_r, err);
	if (rc < 0)
		sora_error_prefix(err, "%s: INBOX of account %" PRId64, sora_db_conn_describe(conn),
				  account_id);
	PQclear(res);
	return rc;
}

/* ---- recipients ---- */

int sora_store_resolve_recipient(struct sora_db_conn *conn, struct sora_str address,
				 char separator, struct sora_store_recipient *rcpt_r,
				 struct sora_error *err)
{
	struct sora_smtp_subaddress sub;
	struct sora_account_ref ref;
	int rc;

	memset(rcpt_r, 0, sizeof(*rcpt_r));
	rc = sora_accounts_lookup(conn, address, &ref, err);
	if (rc < 0 && err->cls == SORA_ERR_NOT_FOUND &&
	    sora_smtp_subaddress_split(address, separator, &sub) == 0 && sub.has_detail) {
		rc = sora_accounts_lookup(conn, sub.base, &ref, err);
		if (rc == 0) {
			size_t n = sub.detail.len < sizeof(rcpt_r->detail) - 1 ?
				   sub.detail.len : sizeof(rcpt_r->detail) - 1;

			memcpy(rcpt_r->detail, sub.detail.p, n);
			rcpt_r->detail[n] = '\0';
			rcpt_r->has_detail = true;
		}
	}
	if (rc != 0)
		return rc;
	rcpt_r->account_id = ref.account_id;
	sora_strlcpy(rcpt_r->primary_address, ref.primary_address,
		     sizeof(rcpt_r->primary_address));
	return 0;
}

/* ---- the message ---- */

ssize_t sora_store_body_read(const struct sora_store_body *body, uint64_t offset,
			     void *buf, size_t len)
{
	size_t done = 0;

	if (offset >= body->size)
		return 0;
	if (len > body->size - offset)
		len = (size_t)(body->size - offset);
	if (body->mem != NULL) {
		memcpy(buf, body->mem + offset, len);
		return (ssize_t)len;
	}
	while (done < len) {
		ssize_t n = pread(body->fd, (char *)buf + done, len - done, (off_t)(offset + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static ssize_t body_read_cb(void *ctx, uint64_t offset, void *buf, size_t len)
{
	return sora_store_body_read(ctx, offset, buf, len);
}

int sora_store_message_prepare(struct sora_store_message *m, const struct sora_store_body *body,
			       struct sora_str sender, struct sora_error *err)
{
	struct sora_mime_parser *parser = NULL;
	struct sora_blob_hasher hasher;
	const char *error;
	char *chunk = NULL;
	uint64_t off = 0;
	int ret = -1;

	memset(m, 0, sizeof(*m));
	m->body = *body;
	sora_msg_meta_init(&m->meta);
	sora_buf_init(&m->envelope_json, 0);
	m->sender = sora_str_dup(sender);
	chunk = malloc(READ_CHUNK);
	parser = sora_mime_parser_new(NULL);
	if (m->sender == NULL || chunk == NULL || parser == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		goto out;
	}
	/* One pass over the raw bytes feeds both the parser and the hash the
	 * delivery key is built from. */
	sora_blob_hash_init(&hasher);
	while (off < body->size) {
		ssize_t n = sora_store_body_read(body, off, chunk, READ_CHUNK);

		if (n <= 0) {
			sora_error_set(err, SORA_ERR_PERMANENT, "reading the message: %s",
				       n < 0 ? strerror(errno) : "unexpected end");
			goto out;
		}
		sora_blob_hash_update(&hasher, chunk, (size_t)n);
		if (sora_mime_parser_feed(parser, chunk, (size_t)n) < 0)
			break;  /* finish reports it */
		off += (uint64_t)n;
	}
	sora_blob_hash_final(&hasher, m->body_hash);
	if (sora_mime_parser_finish(&parser, &m->mime, &error) < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "parsing the message: %s", error);
		goto out;
	}
	if (sora_msg_meta_headers(m->mime, &m->meta) < 0 ||
	    sora_mime_json_envelope(m->mime, &m->envelope_json, &error) < 0) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		goto out;
	}
	if (sora_msg_meta_text(m->mime, body_read_cb, &m->body, &m->meta) < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "extracting the text: %s", strerror(errno));
		goto out;
	}
	ret = 0;
out:
	sora_mime_parser_free(&parser);
	free(chunk);
	return ret;
}

void sora_store_message_free(struct sora_store_message *m)
{
	sora_mime_message_free(&m->mime);
	sora_msg_meta_free(&m->meta);
	sora_buf_free(&m->envelope_json);
	free(m->sender);
	m->sender = NULL;
}

void sora_store_delivery_key(const struct sora_store_message *m, struct sora_str rcpt,
			     char key_r[SORA_BLOB_HASH_HEX_SIZE])
{
	struct sora_blob_hasher h;
	const char sep = '\0';

	/* NUL separators: neither an address nor a hex digest contains one,
	 * so distinct (message, sender, recipient) give distinct inputs. */
	sora_blob_hash_init(&h);
	sora_blob_hash_update(&h, "sora-delivery-v1", 16);
	sora_blob_hash_update(&h, &sep, 1);
	sora_blob_hash_update(&h, m->body_hash, SORA_BLOB_HASH_HEX_LEN);
	sora_blob_hash_update(&h, &sep, 1);
	sora_blob_hash_update(&h, m->sender, strlen(m->sender));
	sora_blob_hash_update(&h, &sep, 1);
	sora_blob_hash_update(&h, rcpt.p, rcpt.len);
	sora_blob_hash_final(&h, key_r);
}

/* ---- delivery ---- */

/* One statement, so one transaction and one round trip, for everything the
 * database holds about a new copy. mbx finds the mailbox. The delivery key
 * goes in next: if an earlier or concurrent delivery recorded it, d is
 * empty and nothing else is written (ON CONFLICT waits for a concurrent
 * inserter to finish, then sees its outcome). The UPDATE takes the mailbox
 * row lock, which orders concurrent deliveries into one mailbox, and
 * allocates UID and modseq. The result tells the three outcomes apart: no
 * mailbox (first column NULL), a duplicate (second column NULL), stored. */
static const char sql_insert[] =
	"WITH mbx AS ("
	"  SELECT id FROM mailboxes WHERE account_id = $1::bigint AND name = $2::text"
	"     AND NOT noselect"
	"), d AS ("
	"  INSERT INTO message_deliveries (mailbox_id, delivery_key)"
	"  SELECT id, $3::text FROM mbx"
	"  ON CONFLICT DO NOTHING RETURNING mailbox_id"
	"), mb AS ("
	"  UPDATE mailboxes SET uid_next = uid_next + 1, highest_modseq = highest_modseq + 1,"
	"         updated_at = now()"
	"   WHERE id = (SELECT mailbox_id FROM d)"
	"  RETURNING id, uid_next - 1 AS uid, highest_modseq AS modseq"
	"), msg AS ("
	"  INSERT INTO messages (account_id, mailbox_id, uid, content_hash, size, sent_date,"
	"         subject, message_id, in_reply_to, references_hdr, from_text, to_text, cc_text,"
	"         bcc_text, sort_subject, sort_from, sort_to, sort_cc, sort_display_from,"
	"         sort_display_to, envelope, bodystructure, raw_headers, created_modseq,"
	"         updated_modseq)"
	"  SELECT $1::bigint, mb.id, mb.uid, $4::text, $5::bigint,"
	"         to_timestamp($6::double precision), $7::text, $8::text, $9::text, $10::text,"
	"         $11::text, $12::text, $13::text, $14::text, $15::text, $16::text, $17::text,"
	"         $18::text, $19::text, $20::text, $21::jsonb, $22::jsonb, $23::bytea,"
	"         mb.modseq, mb.modseq FROM mb"
	"  RETURNING id, uid"
	"), c AS ("
	"  INSERT INTO message_contents (content_hash, text_body)"
	"  SELECT $4::text, $24::text FROM msg"
	"  ON CONFLICT (content_hash) DO NOTHING"
	"), p AS ("
	"  INSERT INTO pending_uploads (account_id, content_hash, size, instance_id)"
	"  SELECT $1::bigint, $4::text, $5::bigint, $25::text FROM msg WHERE $25::text IS NOT NULL"
	"  ON CONFLICT (account_id, content_hash) DO NOTHING"
	") SELECT (SELECT id FROM mbx), (SELECT id FROM msg), (SELECT uid FROM msg)";

#define INSERT_PARAMS 25
/* Prepared once per connection under this name. */
#define DELIVER_STMT "sora_deliver_v2"

static const char *buf_param(const struct sora_buf *b)
{
	return b->data != NULL ? b->data : "";
}

/* NUL-terminates a buffer for use as a text parameter. */
static int buf_terminate(struct sora_buf *b)
{
	if (sora_buf_append(b, "", 1) < 0)
		return -1;
	b->len--;
	return 0;
}

static int meta_terminate(struct sora_msg_meta *meta, struct sora_buf *envelope)
{
	struct sora_buf *all[] = {
		&meta->subject, &meta->message_id, &meta->in_reply_to, &meta->references,
		&meta->from_text, &meta->to_text, &meta->cc_text, &meta->bcc_text,
		&meta->sort_subject, &meta->sort_from, &meta->sort_to, &meta->sort_cc,
		&meta->sort_display_from, &meta->sort_display_to, &meta->text_body, envelope,
	};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (buf_terminate(all[i]) < 0)
			return -1;
	}
	return 0;
}

/* Moves the parsed offsets to a new prefix length. */
static void message_set_prefix(struct sora_store_message *m, int64_t prefix_len)
{
	if (m->prefix_len != prefix_len) {
		sora_msg_mime_shift(m->mime, prefix_len - m->prefix_len);
		m->prefix_len = prefix_len;
	}
}

/* Writes prefix + message into staging. */
static int stage_copy(struct sora_blob_store *blobs, struct sora_store_message *m,
		      const struct sora_store_delivery *d, struct sora_blob_ref *ref,
		      struct sora_error *err)
{
	struct sora_blob_writer *w = NULL;
	char *chunk = malloc(READ_CHUNK);
	uint64_t off = 0;
	int rc;

	if (chunk == NULL)
		return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
	rc = sora_blob_writer_new(blobs, d->account_id, 0, &w, err);
	if (rc == 0)
		rc = sora_blob_writer_write(w, d->prefix.p, d->prefix.len, err);
	while (rc == 0 && off < m->body.size) {
		ssize_t n = sora_store_body_read(&m->body, off, chunk, READ_CHUNK);

		if (n <= 0) {
			rc = sora_error_set(err, SORA_ERR_PERMANENT, "reading the message: %s",
					    n < 0 ? strerror(errno) : "unexpected end");
			break;
		}
		rc = sora_blob_writer_write(w, chunk, (size_t)n, err);
		off += (uint64_t)n;
	}
	if (rc == 0)
		rc = sora_blob_writer_commit(&w, ref, err);
	sora_blob_writer_abort(&w);
	free(chunk);
	return rc;
}

/* prefix + the message's own header block, for messages.raw_headers; an
 * empty buffer (NULL in the row) when it is too large. */
static int raw_headers(const struct sora_store_message *m, const struct sora_store_delivery *d,
		       struct sora_buf *out)
{
	uint64_t own = m->mime->root->header_size - (uint64_t)m->prefix_len;
	ssize_t n;

	if (m->mime->root->header_size > SORA_STORE_RAW_HEADERS_MAX)
		return 0;
	if (sora_buf_reserve(out, d->prefix.len + (size_t)own) < 0 ||
	    sora_buf_append(out, d->prefix.p, d->prefix.len) < 0)
		return -1;
	n = sora_store_body_read(&m->body, 0, out->data + out->len, (size_t)own);
	if (n < 0 || (uint64_t)n != own)
		return -1;
	out->len += (size_t)n;
	return 0;
}

int sora_store_warm_conn(struct sora_db_conn *conn, struct sora_error *err)
{
	static const char zeros[SORA_BLOB_HASH_HEX_SIZE] =
		"0000000000000000000000000000000000000000000000000000000000000000";
	const char *values[INSERT_PARAMS];
	int lengths[INSERT_PARAMS] = { 0 }, formats[INSERT_PARAMS] = { 0 };
	struct sora_store_recipient rcpt;
	PGresult *r = NULL;
	char sqlstate[6] = "";
	int rc;

	rc = sora_store_resolve_recipient(conn, sora_str_c("warm-up@sora.invalid"), '+', &rcpt,
					  err);
	if (rc < 0 && !sora_error_is(err, SORA_ERR_NOT_FOUND))
		return -1;
	for (size_t i = 0; i < INSERT_PARAMS; i++)
		values[i] = "";
	values[0] = "0";            /* no account 0, so no mailbox: nothing is written */
	values[1] = SORA_STORE_INBOX;
	values[2] = zeros;
	values[3] = zeros;
	values[4] = "0";
	values[5] = NULL;
	values[20] = "null";
	values[21] = "null";
	values[22] = NULL;
	formats[22] = 1;
	values[24] = NULL;
	rc = sora_db_exec_prepared(conn, SORA_DB_CLASS_WRITE, DELIVER_STMT, sql_insert,
				   INSERT_PARAMS, values, lengths, formats, 0, &r, sqlstate, err);
	PQclear(r);
	return rc;
}

int sora_store_deliver(struct sora_db_conn *conn, struct sora_blob_store *blobs,
		       const char *instance_id, struct sora_store_message *m,
		       const struct sora_store_delivery *d,
		       struct sora_store_delivery_result *res)
{
	const char *mailbox = d->mailbox != NULL ? d->mailbox : SORA_STORE_INBOX;
	char acc[24], size[24], sent[32], key[SORA_BLOB_HASH_HEX_SIZE];
	const char *values[INSERT_PARAMS];
	int lengths[INSERT_PARAMS] = { 0 }, formats[INSERT_PARAMS] = { 0 };
	struct sora_buf bodystructure, headers;
	struct sora_error *err = &res->error;
	struct sora_blob_ref ref;
	PGresult *r = NULL;
	char sqlstate[6] = "";
	const char *error;
	/* True once it is certain that no row refers to a body staged here. */
	bool staged = false, absent = false;
	int rc = 0;

	memset(res, 0, sizeof(*res));
	res->status = SORA_STORE_FAILED;
	sora_buf_init(&bodystructure, 0);
	sora_buf_init(&headers, 0);
	sora_store_delivery_key(m, d->rcpt, key);
	snprintf(acc, sizeof(acc), "%" PRId64, d->account_id);

	/* 1. The body, durable in staging. */
	rc = stage_copy(blobs, m, d, &ref, err);
	if (rc != 0)
		goto out;
	staged = true;
	memcpy(res->hash, ref.hash, sizeof(res->hash));
	res->size = ref.size;

	/* 2. The metadata, with offsets for this recipient's prefix. */
	message_set_prefix(m, (int64_t)d->prefix.len);
	if (sora_mime_json_serialize(m->mime, 0, &bodystructure, &error) < 0 ||
	    buf_terminate(&bodystructure) < 0 || raw_headers(m, d, &headers) < 0 ||
	    meta_terminate(&m->meta, &m->envelope_json) < 0) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "preparing the metadata: out of memory");
		absent = true;
		goto out;
	}
	snprintf(size, sizeof(size), "%" PRIu64, ref.size);
	snprintf(sent, sizeof(sent), "%" PRId64, m->meta.sent_date);
	values[0] = acc;
	values[1] = mailbox;
	values[2] = key;
	values[3] = ref.hash;
	values[4] = size;
	values[5] = m->meta.has_sent_date ? sent : NULL;
	values[6] = buf_param(&m->meta.subject);
	values[7] = buf_param(&m->meta.message_id);
	values[8] = buf_param(&m->meta.in_reply_to);
	values[9] = buf_param(&m->meta.references);
	values[10] = buf_param(&m->meta.from_text);
	values[11] = buf_param(&m->meta.to_text);
	values[12] = buf_param(&m->meta.cc_text);
	values[13] = buf_param(&m->meta.bcc_text);
	values[14] = buf_param(&m->meta.sort_subject);
	values[15] = buf_param(&m->meta.sort_from);
	values[16] = buf_param(&m->meta.sort_to);
	values[17] = buf_param(&m->meta.sort_cc);
	values[18] = buf_param(&m->meta.sort_display_from);
	values[19] = buf_param(&m->meta.sort_display_to);
	values[20] = buf_param(&m->envelope_json);
	values[21] = buf_param(&bodystructure);
	/* raw_headers is bytes (8-bit headers exist): a binary parameter. */
	values[22] = headers.len > 0 ? headers.data : NULL;
	lengths[22] = (int)headers.len;
	formats[22] = 1;
	values[23] = buf_param(&m->meta.text_body);
	/* A direct store (fs) stored the body already: nothing to upload. */
	values[24] = sora_blob_store_direct(blobs) ? NULL : instance_id;

	/* 3. Everything else, in one statement. The first delivery to an
	 * account finds no INBOX: the defaults are created, then it goes on. */
	for (int attempt = 0; attempt < 2; attempt++) {
		PQclear(r);
		r = NULL;
		rc = sora_db_exec_prepared(conn, SORA_DB_CLASS_WRITE, DELIVER_STMT, sql_insert,
					   INSERT_PARAMS, values, lengths, formats, 0, &r, sqlstate,
					   err);
		if (rc != 0) {
			/* An error the server reported (sqlstate set, not a
			 * connection exception) rolled the statement back; a
			 * broken connection leaves the outcome unknown, which
			 * only a later retry can settle. */
			absent = sqlstate[0] != '\0' && strncmp(sqlstate, "08", 2) != 0;
			if (!absent)
				err->cls = SORA_ERR_TEMPORARY;
			goto out;
		}
		if (PQntuples(r) != 1) {
			sora_error_set(err, SORA_ERR_PERMANENT, "delivery statement returned %d rows",
				       PQntuples(r));
			absent = true;
			goto out;
		}
		if (!PQgetisnull(r, 0, 0))
			break;
		if (d->mailbox != NULL || attempt > 0) {
			sora_error_set(err, SORA_ERR_NOT_FOUND, "mailbox %s does not exist", mailbox);
			absent = true;
			goto out;
		}
		rc = sora_store_ensure_default_mailboxes(conn, d->account_id, NULL, err);
		if (rc != 0) {
			absent = true;
			goto out;
		}
	}
	/* The statement committed: from here on the copy is stored, so it is
	 * DELIVERED (or DUPLICATE) even if an id in the answer cannot be
	 * read; that is logged, and the MTA must not send the message again. */
	res->status = PQgetisnull(r, 0, 1) ? SORA_STORE_DUPLICATE : SORA_STORE_DELIVERED;
	if (res->status == SORA_STORE_DUPLICATE)
		absent = true;
	if (sora_db_get_i64(r, 0, 0, &res->mailbox_id, err) < 0 ||
	    (res->status == SORA_STORE_DELIVERED &&
	     (sora_db_get_i64(r, 0, 1, &res->message_id, err) < 0 ||
	      sora_db_get_i64(r, 0, 2, &res->uid, err) < 0))) {
		sora_error(NULL, "delivery to account %" PRId64 " stored, but its result is "
			   "unreadable: %s", d->account_id, err->msg);
		sora_error_clear(err);
	}
out:
	/* A body staged for this copy alone goes away again when the database
	 * certainly holds no row for it; after a broken connection it stays,
	 * since a committed row may refer to it (if none does, the janitor
	 * removes it an hour later). "For this copy alone" needs the prefix:
	 * its trace lines name this session and the time, so no concurrent
	 * delivery can have found the same body in place and be about to
	 * commit a row naming it. A body without a prefix (an IMAP APPEND)
	 * could be shared that way, so it is never taken back here: removing
	 * it could leave another message without its body. */
	if (staged && !ref.existed && absent && d->prefix.len > 0) {
		struct sora_error uerr;

		sora_blob_discard(blobs, d->account_id, ref.hash, &uerr);
	}
	PQclear(r);
	sora_buf_free(&bodystructure);
	sora_buf_free(&headers);
	return res->status == SORA_STORE_DELIVERED || res->status == SORA_STORE_DUPLICATE ? 0 : -1;
}
