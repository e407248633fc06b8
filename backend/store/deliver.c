/* Storing incoming messages: see deliver.h. */
#include "backend/store/deliver.h"

#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "backend/store/mailbox.h"
#include "common/core/log.h"
#include "common/metrics/metrics.h"
#include "common/proto/mime/mime-imap.h"
#include "common/proto/mime/mime-json.h"
#include "common/proto/pop3.h"
#include "common/proto/smtp.h"

#define READ_CHUNK (64 * 1024)

/* ---- mailboxes ---- */

/* The default set, created together when an account has no INBOX yet. The
 * backslashes are literal: standard_conforming_strings is on by default
 * since PostgreSQL 9.1 and the pool does not change it. */
static const char sql_create_defaults[] =
	"WITH ins AS ("
	"  INSERT INTO mailboxes (account_id, name, special_use) "
	"  SELECT $1, v.name, v.special_use FROM (VALUES "
	"  ('INBOX', NULL), ('Sent', '\\Sent'), ('Drafts', '\\Drafts'), ('Junk', '\\Junk'), "
	"  ('Trash', '\\Trash'), ('Archive', '\\Archive')) AS v (name, special_use) "
	"  WHERE NOT EXISTS (SELECT 1 FROM mailboxes WHERE account_id = $1 AND name = 'INBOX') "
	"  ON CONFLICT (account_id, name) DO NOTHING RETURNING account_id, name"
	") INSERT INTO mailbox_subscriptions (account_id, name) SELECT account_id, name FROM ins "
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
		ssize_t n = pread(body->fd, (char *)buf + done, len - done,
				  (off_t)(body->base + offset + done));

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

/* The next piece of the body from off: where the body is in memory, a
 * pointer into it (no copy); else up to READ_CHUNK bytes read into chunk.
 * *n_r is the piece's length: 0 at the end, -1 on a read error. */
static const char *body_piece(const struct sora_store_body *body, uint64_t off, char *chunk,
			      ssize_t *n_r)
{
	if (body->mem != NULL) {
		uint64_t left = off < body->size ? body->size - off : 0;

		*n_r = (ssize_t)(left < READ_CHUNK ? left : READ_CHUNK);
		return body->mem + off;
	}
	*n_r = sora_store_body_read(body, off, chunk, READ_CHUNK);
	return chunk;
}

static ssize_t body_read_cb(void *ctx, uint64_t offset, void *buf, size_t len)
{
	return sora_store_body_read(ctx, offset, buf, len);
}

int sora_store_message_prepare(struct sora_store_message *m, const struct sora_store_body *body,
			       struct sora_str sender, struct sora_error *err)
{
	struct sora_mime_parser *parser = NULL;
	EVP_MD_CTX *sha = NULL;
	unsigned char digest[32];
	struct sora_pop3_dot pop3;
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
	sha = EVP_MD_CTX_new();
	if (m->sender == NULL || chunk == NULL || parser == NULL || sha == NULL ||
	    EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		goto out;
	}
	/* One pass over the raw bytes feeds both the parser and the hash the
	 * delivery key is built from. SHA-256 here (OpenSSL's, with the CPU's
	 * SHA instructions where it has them: about 3 times the speed of
	 * libsodium's BLAKE2b, the body hash, which each copy's own bytes
	 * need anyway). */
	sora_pop3_size_init(&pop3);
	while (off < body->size) {
		ssize_t n;
		const char *piece = body_piece(body, off, chunk, &n);

		if (n <= 0) {
			sora_error_set(err, SORA_ERR_PERMANENT, "reading the message: %s",
				       n < 0 ? strerror(errno) : "unexpected end");
			goto out;
		}
		if (EVP_DigestUpdate(sha, piece, (size_t)n) != 1) {
			sora_error_set(err, SORA_ERR_TEMPORARY, "hashing the message failed");
			goto out;
		}
		sora_pop3_size_feed(&pop3, piece, (size_t)n);
		if (sora_mime_parser_feed(parser, piece, (size_t)n) < 0)
			break;  /* finish reports it */
		off += (uint64_t)n;
	}
	if (EVP_DigestFinal_ex(sha, digest, NULL) != 1) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "hashing the message failed");
		goto out;
	}
	for (size_t i = 0; i < sizeof(digest); i++)
		snprintf(m->message_hash + 2 * i, 3, "%02x", digest[i]);
	m->pop3_size = sora_pop3_size_final(&pop3);
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
	EVP_MD_CTX_free(sha);
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
	sora_blob_hash_update(&h, "sora-delivery-v2", 16);
	sora_blob_hash_update(&h, &sep, 1);
	sora_blob_hash_update(&h, m->message_hash, 64);
	sora_blob_hash_update(&h, &sep, 1);
	sora_blob_hash_update(&h, m->sender, strlen(m->sender));
	sora_blob_hash_update(&h, &sep, 1);
	sora_blob_hash_update(&h, rcpt.p, rcpt.len);
	sora_blob_hash_final(&h, key_r);
}

/* ---- the message row, shared by delivery and APPEND ---- */

/* Both statements insert a new copy the same way: the messages row, its
 * searchable text (shared by every copy of the body) and, unless the store
 * is direct, the pending_uploads row. They share parameters $1 (account)
 * and $4..$29 (row_params_fill); $2 and $3 and anything after $29 are
 * their own. mb is a relation (id, uid, modseq) holding the mailbox and
 * the allocated UID and modseq; FLAGS, KEYWORDS and IDATE are SQL
 * expressions for the state columns. Statements whose text differs only
 * in those are still one definition of a row. */
#define SQL_ROW(FLAGS, KEYWORDS, IDATE)                                                      \
	"), msg AS ("                                                                        \
	"  INSERT INTO messages (account_id, mailbox_id, uid, content_hash, size, sent_date,"  \
	"         subject, message_id, in_reply_to, references_hdr, from_text, to_text, cc_text," \
	"         bcc_text, sort_subject, sort_from, sort_to, sort_cc, sort_display_from,"     \
	"         sort_display_to, envelope, bodystructure, raw_headers, created_modseq,"      \
	"         updated_modseq, flags, keywords, internal_date, sent_tz, imap_envelope,"      \
	"         imap_bodystructure, pop3_size, text_key)"                                    \
	"  SELECT $1::bigint, mb.id, mb.uid, $4::text, $5::bigint,"                            \
	"         to_timestamp($6::double precision), $7::text, $8::text, $9::text, $10::text," \
	"         $11::text, $12::text, $13::text, $14::text, $15::text, $16::text, $17::text," \
	"         $18::text, $19::text, $20::text, $21::jsonb, $22::jsonb, $23::bytea,"         \
	"         mb.modseq, mb.modseq, " FLAGS ", " KEYWORDS ", " IDATE ", $26::smallint,"   \
	"         $27::text, $28::text, $29::bigint, $30::text"                                 \
	"  FROM mb"                                                                          \
	"  RETURNING id, uid"                                                                \
	"), c AS ("                                                                          \
	"  INSERT INTO message_contents (content_hash, text_body)"                           \
	"  SELECT $30::text, $24::text FROM msg"                                             \
	"  ON CONFLICT (content_hash) DO NOTHING"                                            \
	"), p AS ("                                                                          \
	"  INSERT INTO pending_uploads (account_id, content_hash, size, instance_id)"        \
	"  SELECT $1::bigint, $4::text, $5::bigint, $25::text FROM msg WHERE $25::text IS NOT NULL" \
	"  ON CONFLICT (account_id, content_hash) DO NOTHING"                                \
	")"

/* Parameters of the shared part; APPEND adds four. */
#define ROW_PARAMS 30
#define APPEND_PARAMS 34

/* The values of one row's parameters and the memory behind them. */
struct row_params {
	const char *values[APPEND_PARAMS];
	int lengths[APPEND_PARAMS];
	int formats[APPEND_PARAMS];
	char size[24], sent[32], tz[8], pop3_size[24];
	struct sora_buf bodystructure, headers, imap_envelope, imap_bodystructure;
};

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

/* prefix + the message's own header block, for messages.raw_headers; an
 * empty buffer (NULL in the row) when it is too large. Bounded by
 * SORA_STORE_RAW_HEADERS_MAX: the body itself is never read whole. */
static int raw_headers(const struct sora_store_message *m, struct sora_str prefix,
		       struct sora_buf *out)
{
	uint64_t own = m->mime->root->header_size - (uint64_t)m->prefix_len;
	ssize_t n;

	if (m->mime->root->header_size > SORA_STORE_RAW_HEADERS_MAX)
		return 0;
	if (sora_buf_reserve(out, prefix.len + (size_t)own) < 0 ||
	    sora_buf_append(out, prefix.p, prefix.len) < 0)
		return -1;
	n = sora_store_body_read(&m->body, 0, out->data + out->len, (size_t)own);
	if (n < 0 || (uint64_t)n != own)
		return -1;
	out->len += (size_t)n;
	return 0;
}

static void row_params_init(struct row_params *rp)
{
	memset(rp, 0, sizeof(*rp));
	sora_buf_init(&rp->bodystructure, 0);
	sora_buf_init(&rp->headers, 0);
	sora_buf_init(&rp->imap_envelope, 0);
	sora_buf_init(&rp->imap_bodystructure, 0);
}

static void row_params_free(struct row_params *rp)
{
	sora_buf_free(&rp->bodystructure);
	sora_buf_free(&rp->headers);
	sora_buf_free(&rp->imap_envelope);
	sora_buf_free(&rp->imap_bodystructure);
}

/* Fills $4..$30 for a copy of m with prefix (staged as ref). The one place
 * that knows how a parsed message becomes a row. */
static int row_params_fill(struct row_params *rp, struct sora_store_message *m,
			   struct sora_str prefix, const struct sora_blob_ref *ref,
			   struct sora_blob_store *blobs, const char *instance_id,
			   struct sora_error *err)
{
	const char **values = rp->values;
	const char *error;

	rp->bodystructure.len = 0;
	rp->headers.len = 0;
	rp->imap_envelope.len = 0;
	rp->imap_bodystructure.len = 0;
	message_set_prefix(m, (int64_t)prefix.len);
	/* The IMAP forms come from the parsed message after the prefix moved
	 * its offsets: exactly what FETCH would render from the JSON. */
	if (sora_mime_json_serialize(m->mime, 0, &rp->bodystructure, &error) < 0 ||
	    buf_terminate(&rp->bodystructure) < 0 || raw_headers(m, prefix, &rp->headers) < 0 ||
	    meta_terminate(&m->meta, &m->envelope_json) < 0 ||
	    sora_mime_imap_envelope(m->mime->root->envelope, &rp->imap_envelope) < 0 ||
	    buf_terminate(&rp->imap_envelope) < 0 ||
	    sora_mime_imap_bodystructure(m->mime, true, 0, &rp->imap_bodystructure) < 0 ||
	    buf_terminate(&rp->imap_bodystructure) < 0)
		return sora_error_set(err, SORA_ERR_TEMPORARY,
				      "preparing the metadata: out of memory");
	snprintf(rp->size, sizeof(rp->size), "%" PRIu64, ref->size);
	snprintf(rp->sent, sizeof(rp->sent), "%" PRId64, m->meta.sent_date);
	values[3] = ref->hash;
	values[4] = rp->size;
	values[5] = m->meta.has_sent_date ? rp->sent : NULL;
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
	values[21] = buf_param(&rp->bodystructure);
	/* raw_headers is bytes (8-bit headers exist): a binary parameter. */
	values[22] = rp->headers.len > 0 ? rp->headers.data : NULL;
	rp->lengths[22] = (int)rp->headers.len;
	rp->formats[22] = 1;
	values[23] = buf_param(&m->meta.text_body);
	/* A direct store (fs) stored the body already: nothing to upload. */
	values[24] = sora_blob_store_direct(blobs) ? NULL : instance_id;
	/* The Date header's zone: SEARCH SENT* compare the date as written. */
	snprintf(rp->tz, sizeof(rp->tz), "%d", m->meta.has_sent_date ? m->meta.sent_tz_min : 0);
	values[25] = rp->tz;
	values[26] = rp->imap_envelope.data;
	values[27] = rp->imap_bodystructure.data;
	/* POP3's size (migration 0006): the prefix is CRLF-terminated lines,
	 * which count as they are. */
	snprintf(rp->pop3_size, sizeof(rp->pop3_size), "%" PRIu64, (uint64_t)prefix.len + m->pop3_size);
	values[28] = rp->pop3_size;
	/* The text's key (migration 0009): the message without the prefix,
	 * so every copy of it shares one message_contents row. */
	values[29] = m->message_hash;
	return 0;
}

/* Writes prefix + message into staging, keeping a hold on the body until
 * the caller knows whether its row committed (blob-store.h, "Shared
 * bodies"). Streams in READ_CHUNK pieces. */
static int stage_copy(struct sora_blob_store *blobs, struct sora_store_message *m,
		      int64_t account_id, struct sora_str prefix, struct sora_blob_ref *ref,
		      struct sora_blob_hold **hold_r, struct sora_error *err)
{
	struct sora_blob_writer *w = NULL;
	char *chunk = malloc(READ_CHUNK);
	uint64_t off = 0;
	int rc;

	*hold_r = NULL;
	if (chunk == NULL)
		return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
	rc = sora_blob_writer_new(blobs, account_id, 0, &w, err);
	if (rc == 0)
		rc = sora_blob_writer_write(w, prefix.p, prefix.len, err);
	while (rc == 0 && off < m->body.size) {
		ssize_t n;
		const char *piece = body_piece(&m->body, off, chunk, &n);

		if (n <= 0) {
			rc = sora_error_set(err, SORA_ERR_PERMANENT, "reading the message: %s",
					    n < 0 ? strerror(errno) : "unexpected end");
			break;
		}
		rc = sora_blob_writer_write(w, piece, (size_t)n, err);
		off += (uint64_t)n;
	}
	if (rc == 0)
		rc = sora_blob_writer_commit_held(&w, ref, hold_r, err);
	sora_blob_writer_abort(&w);
	free(chunk);
	return rc;
}

/* Asked by a discard while it holds a body exclusively (blob-store.h):
 * does any committed row of the account still name it? A message row
 * needs the body; a pending_uploads row makes the uploader look for it. */
static int body_unreferenced(void *ctx, int64_t account_id, const char *hash)
{
	static const char sql[] =
		"SELECT EXISTS (SELECT 1 FROM messages WHERE account_id = $1::bigint"
		"                 AND content_hash = $2::text)"
		"    OR EXISTS (SELECT 1 FROM pending_uploads WHERE account_id = $1::bigint"
		"                 AND content_hash = $2::text)";
	struct sora_db_conn *conn = ctx;
	char acc[24];
	const char *params[2] = { acc, hash };
	struct sora_error err;
	PGresult *r = NULL;
	int ret = -1;

	snprintf(acc, sizeof(acc), "%" PRId64, account_id);
	if (sora_db_exec(conn, SORA_DB_CLASS_DEFAULT, sql, 2, params, &r, NULL, &err) == 0 &&
	    PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
		ret = strcmp(PQgetvalue(r, 0, 0), "f") == 0 ? 1 : 0;
	PQclear(r);
	return ret;
}

/* Ends a hold: the body goes away when the row certainly did not commit
 * and nothing else needs it, else it stays. */
static void hold_end(struct sora_blob_hold **hold, bool absent, struct sora_db_conn *conn)
{
	struct sora_error uerr;

	if (*hold == NULL)
		return;
	if (!absent) {
		sora_blob_hold_release(hold);
		return;
	}
	if (sora_blob_hold_discard(hold, body_unreferenced, conn, &uerr) < 0)
		sora_warn(NULL, "taking back a staged body: %s", uerr.msg);
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
	SQL_ROW("0", "'{}'::text[]", "now()")
	" SELECT (SELECT id FROM mbx), (SELECT id FROM msg), (SELECT uid FROM msg)";

#define INSERT_PARAMS ROW_PARAMS
/* Prepared once per connection under this name. */
#define DELIVER_STMT "sora_deliver_v7"

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
	values[25] = "0";         /* sent_tz */
	values[28] = "0";         /* pop3_size */
	values[29] = zeros;       /* text_key */
	rc = sora_db_exec_prepared(conn, SORA_DB_CLASS_WRITE, DELIVER_STMT, sql_insert,
				   INSERT_PARAMS, values, lengths, formats, 0, &r, sqlstate, err);
	PQclear(r);
	return rc;
}

/* ---- group commit ----
 *
 * Concurrent deliveries into one mailbox take turns on its row lock (the
 * UPDATE above), and a transaction keeps that lock until its commit is
 * flushed. One statement per copy would therefore allow one delivery per
 * WAL flush into a mailbox, however many sessions deliver to it. Instead,
 * the copies waiting in this process are committed together: a delivery
 * thread that finds fewer than COMMIT_LEADERS commits under way becomes a
 * leader, takes the waiting copies (up to COMMIT_BATCH_MAX), runs their
 * statements in one transaction and commits once; the others wait for their
 * results. While a batch commits the next one gathers, so nobody waits for
 * a timer and a lone delivery commits at once, as one autocommitted
 * statement. A second leader leaves out copies into mailboxes the running
 * batch has (they could only wait for its row lock); so batches into
 * different mailboxes run side by side on two connections, and one busy
 * mailbox still gets one batch per WAL flush. UIDs stay
 * strictly increasing and counters exact: each statement still allocates
 * under the mailbox row lock, in the order the batch runs them.
 *
 * A batch locks mailbox rows in (account, mailbox name) order, so batches
 * of different processes cannot deadlock on each other. If any statement of
 * a batch fails, or the commit fails with an error from the server (both
 * roll everything back), each copy is run again on its own by its own
 * thread, so one bad copy never fails the others. If the connection breaks
 * during the commit, the outcome of every copy of the batch is unknown
 * (SORA_ERR_TEMPORARY, as for a single statement). */

#define COMMIT_BATCH_MAX 64
#ifndef COMMIT_LEADERS
#define COMMIT_LEADERS 2
#endif

struct commit_item {
	struct row_params *rp;
	int64_t account_id;
	const char *mailbox;
	/* Outcome, set by the leader. */
	PGresult *r;
	int rc;
	char sqlstate[6];
	struct sora_error err;
	bool alone;                  /* the batch failed: run it on its own */
	bool done;
	pthread_cond_t *owner;       /* its thread waits on this */
	struct commit_item *next;
};

static pthread_once_t commit_metrics_once = PTHREAD_ONCE_INIT;
static struct sora_metric_series *m_batch;

static void commit_metrics_init(void)
{
	static const double buckets[] = { 1, 2, 4, 8, 16, 32, 64 };

	m_batch = sora_metric_with(sora_metric_histogram(
		"sora_delivery_commit_copies", "Copies of messages stored per delivery commit "
		"(group commit: concurrent deliveries share one transaction).", "", buckets,
		sizeof(buckets) / sizeof(buckets[0])));
}

static pthread_mutex_t commit_lock = PTHREAD_MUTEX_INITIALIZER;
static struct commit_item *commit_head, **commit_tail = &commit_head;
static int commit_running;       /* leaders committing a batch now */
/* The batches being committed (items sorted, read under commit_lock). */
static struct {
	struct commit_item **items;
	size_t n;
} commit_active[COMMIT_LEADERS];

static int commit_item_cmp(const void *a, const void *b)
{
	const struct commit_item *x = *(struct commit_item *const *)a;
	const struct commit_item *y = *(struct commit_item *const *)b;

	if (x->account_id != y->account_id)
		return x->account_id < y->account_id ? -1 : 1;
	return strcmp(x->mailbox, y->mailbox);
}

/* Is the copy's mailbox in a batch being committed? (commit_lock held) */
static bool mailbox_in_commit(const struct commit_item *it)
{
	for (int l = 0; l < COMMIT_LEADERS; l++) {
		for (size_t i = 0; commit_active[l].items != NULL && i < commit_active[l].n; i++) {
			const struct commit_item *x = commit_active[l].items[i];

			if (x->account_id == it->account_id && strcmp(x->mailbox, it->mailbox) == 0)
				return true;
		}
	}
	return false;
}

static void item_exec(struct sora_db_conn *conn, struct commit_item *it)
{
	PQclear(it->r);
	it->r = NULL;
	it->sqlstate[0] = '\0';
	it->rc = sora_db_exec_prepared(conn, SORA_DB_CLASS_WRITE, DELIVER_STMT, sql_insert,
				       INSERT_PARAMS, it->rp->values, it->rp->lengths,
				       it->rp->formats, 0, &it->r, it->sqlstate, &it->err);
}

/* The leader's part: one transaction for items[0..n), pipelined. */
static void commit_batch(struct sora_db_conn *conn, struct commit_item **items, size_t n)
{
	struct sora_db_batch_stmt *stmts;
	struct sora_error err;
	int rc;

	pthread_once(&commit_metrics_once, commit_metrics_init);
	if (n == 1) {
		item_exec(conn, items[0]);
		if (items[0]->rc == 0)
			sora_metric_observe(m_batch, 1);
		return;
	}
	stmts = calloc(n, sizeof(*stmts));
	if (stmts == NULL) {
		rc = 1;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		stmts[i].values = items[i]->rp->values;
		stmts[i].lengths = items[i]->rp->lengths;
		stmts[i].formats = items[i]->rp->formats;
	}
	rc = sora_db_exec_prepared_batch(conn, SORA_DB_CLASS_WRITE, DELIVER_STMT, sql_insert,
					 INSERT_PARAMS, stmts, n, &err);
out:
	for (size_t i = 0; i < n; i++) {
		struct commit_item *it = items[i];

		PQclear(it->r);
		it->r = NULL;
		it->sqlstate[0] = '\0';
		if (rc == 0) {
			it->r = stmts[i].res;
			it->rc = 0;
		} else if (rc == 1) {
			/* Rolled back, so nothing happened: each copy runs again on
			 * its own (one bad copy never fails the others). */
			it->alone = true;
		} else {
			/* The connection broke: nobody knows. */
			it->rc = -1;
			it->err = err;
			it->err.cls = SORA_ERR_TEMPORARY;
		}
	}
	if (rc == 0)
		sora_metric_observe(m_batch, (double)n);
	free(stmts);
}

/* Commits items[0..n) of this thread, together with whatever other
 * threads are waiting with, and returns when all of them have their
 * outcome. Each thread waits on its own condition variable and is woken
 * only when one of its copies is done or when it should lead (its copy is
 * first in line and a leader's place is free), not at every commit. */
static void group_commit(struct sora_db_conn *conn, struct commit_item **mine, size_t n)
{
	struct commit_item *batch[COMMIT_BATCH_MAX];
	pthread_cond_t wake;
	size_t left = n;

	pthread_cond_init(&wake, NULL);
	pthread_mutex_lock(&commit_lock);
	for (size_t i = 0; i < n; i++) {
		mine[i]->next = NULL;
		mine[i]->owner = &wake;
		*commit_tail = mine[i];
		commit_tail = &mine[i]->next;
	}
	for (;;) {
		left = 0;
		for (size_t i = 0; i < n; i++)
			left += !mine[i]->done;
		if (left == 0)
			break;
		/* Nothing of this thread's left to take (another leader
		 * has it), or enough leaders at work: wait. */
		if (commit_head == NULL || commit_running >= COMMIT_LEADERS) {
			pthread_cond_wait(&wake, &commit_lock);
			continue;
		}
		/* Lead: take what waits, in arrival order, except copies into a
		 * mailbox another leader's batch has: they would only wait
		 * for its row lock, so they go into a later batch together. */
		size_t k = 0;
		int slot = 0;

		for (struct commit_item **p = &commit_head; *p != NULL && k < COMMIT_BATCH_MAX;) {
			struct commit_item *it = *p;

			if (mailbox_in_commit(it)) {
				p = &it->next;
				continue;
			}
			batch[k++] = it;
			*p = it->next;
			if (*p == NULL)
				commit_tail = p;
		}
		if (k == 0) {
			pthread_cond_wait(&wake, &commit_lock);
			continue;
		}
		/* Sorted here, under the lock, since other leaders read it. */
		if (k > 1)
			qsort(batch, k, sizeof(*batch), commit_item_cmp);
		while (commit_active[slot].items != NULL)
			slot++;
		commit_active[slot].items = batch;
		commit_active[slot].n = k;
		commit_running++;
		/* A full batch left copies behind: the other leader's place
		 * is theirs. */
		if (commit_head != NULL && commit_running < COMMIT_LEADERS &&
		    commit_head->owner != &wake)
			pthread_cond_signal(commit_head->owner);
		pthread_mutex_unlock(&commit_lock);
		commit_batch(conn, batch, k);
		pthread_mutex_lock(&commit_lock);
		commit_active[slot].items = NULL;
		commit_running--;
		for (size_t i = 0; i < k; i++) {
			batch[i]->done = true;
			if (batch[i]->owner != &wake)
				pthread_cond_signal(batch[i]->owner);
		}
		/* The place this leader leaves goes to the thread of the first
		 * copy waiting (which may find that copy's mailbox still in the
		 * other batch, and then takes the copies after it). */
		if (commit_head != NULL && commit_head->owner != &wake)
			pthread_cond_signal(commit_head->owner);
	}
	pthread_mutex_unlock(&commit_lock);
	pthread_cond_destroy(&wake);
	/* Copies whose batch failed run on their own, on this thread. */
	for (size_t i = 0; i < n; i++) {
		if (mine[i]->alone)
			item_exec(conn, mine[i]);
	}
}

/* ---- copies of one message ---- */

/* One copy on its way. */
struct copy {
	const struct sora_store_delivery *d;
	struct sora_store_delivery_result *res;
	char acc[24], key[SORA_BLOB_HASH_HEX_SIZE];
	struct sora_blob_hold *hold;
	struct sora_blob_ref ref;
	struct row_params rp;
	struct commit_item item;
	bool staged;                 /* waiting for its statement */
	bool absent;                 /* no row of it was certainly committed */
};

/* Reads a statement's outcome into the copy: 1 when the account has no
 * INBOX yet (the defaults must be created, then the copy run again), else
 * 0 (the result is final). */
static int copy_outcome(struct copy *cp)
{
	struct commit_item *it = &cp->item;
	struct sora_store_delivery_result *res = cp->res;
	struct sora_error *err = &res->error;
	const char *mailbox = cp->d->mailbox != NULL ? cp->d->mailbox : SORA_STORE_INBOX;

	if (it->rc != 0) {
		/* An error the server reported (sqlstate set, not a connection
		 * exception) rolled the statement back; a broken connection
		 * leaves the outcome unknown, which only a later retry can
		 * settle. */
		*err = it->err;
		cp->absent = it->sqlstate[0] != '\0' && strncmp(it->sqlstate, "08", 2) != 0;
		if (!cp->absent)
			err->cls = SORA_ERR_TEMPORARY;
		return 0;
	}
	if (PQntuples(it->r) != 1) {
		sora_error_set(err, SORA_ERR_PERMANENT, "delivery statement returned %d rows",
			       PQntuples(it->r));
		cp->absent = true;
		return 0;
	}
	if (PQgetisnull(it->r, 0, 0)) {
		if (cp->d->mailbox == NULL)
			return 1;
		sora_error_set(err, SORA_ERR_NOT_FOUND, "mailbox %s does not exist", mailbox);
		cp->absent = true;
		return 0;
	}
	/* The statement committed: from here on the copy is stored, so it is
	 * DELIVERED (or DUPLICATE) even if an id in the answer cannot be
	 * read; that is logged, and the MTA must not send the message again. */
	res->status = PQgetisnull(it->r, 0, 1) ? SORA_STORE_DUPLICATE : SORA_STORE_DELIVERED;
	if (res->status == SORA_STORE_DUPLICATE)
		cp->absent = true;
	if (sora_db_get_i64(it->r, 0, 0, &res->mailbox_id, err) < 0 ||
	    (res->status == SORA_STORE_DELIVERED &&
	     (sora_db_get_i64(it->r, 0, 1, &res->message_id, err) < 0 ||
	      sora_db_get_i64(it->r, 0, 2, &res->uid, err) < 0))) {
		sora_error(NULL, "delivery to account %" PRId64 " stored, but its result is "
			   "unreadable: %s", cp->d->account_id, err->msg);
		sora_error_clear(err);
	}
	return 0;
}

/* Steps 1 and 2 for one copy: the body durable in staging, the row's
 * parameters with offsets for this recipient's prefix. */
static void copy_prepare(struct copy *cp, struct sora_blob_store *blobs, const char *instance_id,
			 struct sora_store_message *m)
{
	struct sora_error *err = &cp->res->error;

	memset(cp->res, 0, sizeof(*cp->res));
	cp->res->status = SORA_STORE_FAILED;
	row_params_init(&cp->rp);
	sora_store_delivery_key(m, cp->d->rcpt, cp->key);
	snprintf(cp->acc, sizeof(cp->acc), "%" PRId64, cp->d->account_id);
	if (stage_copy(blobs, m, cp->d->account_id, cp->d->prefix, &cp->ref, &cp->hold, err) != 0)
		return;
	memcpy(cp->res->hash, cp->ref.hash, sizeof(cp->res->hash));
	cp->res->size = cp->ref.size;
	if (row_params_fill(&cp->rp, m, cp->d->prefix, &cp->ref, blobs, instance_id, err) < 0) {
		cp->absent = true;
		return;
	}
	cp->rp.values[0] = cp->acc;
	cp->rp.values[1] = cp->d->mailbox != NULL ? cp->d->mailbox : SORA_STORE_INBOX;
	cp->rp.values[2] = cp->key;
	cp->item.rp = &cp->rp;
	cp->item.account_id = cp->d->account_id;
	cp->item.mailbox = cp->rp.values[1];
	cp->staged = true;
}

int sora_store_deliver_many(struct sora_db_conn *conn, struct sora_blob_store *blobs,
			    const char *instance_id, struct sora_store_message *m,
			    const struct sora_store_delivery *d, size_t n,
			    struct sora_store_delivery_result *res)
{
	struct copy *cps = calloc(n > 0 ? n : 1, sizeof(*cps));
	struct commit_item **items = calloc(n > 0 ? n : 1, sizeof(*items));
	size_t k = 0;
	int ret = 0;

	if (cps == NULL || items == NULL) {
		for (size_t i = 0; i < n; i++) {
			memset(&res[i], 0, sizeof(res[i]));
			res[i].status = SORA_STORE_FAILED;
			sora_error_set(&res[i].error, SORA_ERR_TEMPORARY, "out of memory");
		}
		free(cps);
		free(items);
		return -1;
	}
	/* 1, 2: every body durable, every row ready. */
	for (size_t i = 0; i < n; i++) {
		cps[i].d = &d[i];
		cps[i].res = &res[i];
		copy_prepare(&cps[i], blobs, instance_id, m);
		if (cps[i].staged)
			items[k++] = &cps[i].item;
	}
	/* 3: the rows, committed with other sessions' (see above). */
	if (k > 0)
		group_commit(conn, items, k);
	for (size_t i = 0; i < n; i++) {
		struct copy *cp = &cps[i];

		if (cp->staged && copy_outcome(cp) == 1) {
			/* The first delivery to an account finds no INBOX: the
			 * defaults are created, then it goes on alone. */
			if (sora_store_ensure_default_mailboxes(conn, cp->d->account_id, NULL,
								 &cp->res->error) != 0) {
				cp->absent = true;
			} else {
				item_exec(conn, &cp->item);
				if (copy_outcome(cp) == 1) {
					sora_error_set(&cp->res->error, SORA_ERR_NOT_FOUND,
						       "mailbox %s does not exist", cp->item.mailbox);
					cp->absent = true;
				}
			}
		}
		/* The body goes away again only when the database certainly
		 * holds no row of this copy and nothing else uses it
		 * (hold_end, blob-store.h "Shared bodies"). After a broken
		 * connection it stays, since a committed row may refer to it;
		 * if none does, the janitor removes it an hour later. */
		hold_end(&cp->hold, cp->absent, conn);
		PQclear(cp->item.r);
		row_params_free(&cp->rp);
		if (res[i].status != SORA_STORE_DELIVERED && res[i].status != SORA_STORE_DUPLICATE)
			ret = -1;
	}
	free(cps);
	free(items);
	return ret;
}

int sora_store_deliver(struct sora_db_conn *conn, struct sora_blob_store *blobs,
		       const char *instance_id, struct sora_store_message *m,
		       const struct sora_store_delivery *d,
		       struct sora_store_delivery_result *res)
{
	return sora_store_deliver_many(conn, blobs, instance_id, m, d, 1, res);
}

/* ---- APPEND ---- */

/* RFC 3501 atom-specials and list-wildcards, which no keyword contains. */
static bool keyword_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && strchr("(){%*\"\\]", c) == NULL;
}

int sora_store_keywords_normalize(const char *keywords, struct sora_buf *out,
				  struct sora_error *err)
{
	size_t count = 0;
	const char *p = keywords;

	out->len = 0;
	while (*p != '\0') {
		const char *start;
		size_t len;
		bool dup = false;

		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		start = p;
		while (*p != '\0' && *p != ' ') {
			if (!keyword_char((unsigned char)*p))
				return sora_error_set(err, SORA_ERR_INVALID,
						      "invalid character in a keyword");
			p++;
		}
		len = (size_t)(p - start);
		/* Keywords compare case-insensitively (RFC 3501 2.3.2): the
		 * first spelling is kept. The count cap keeps this quadratic
		 * scan small. */
		for (size_t at = 0; at < out->len && !dup;) {
			size_t end = at;

			while (end < out->len && out->data[end] != ' ')
				end++;
			dup = end - at == len && strncasecmp(out->data + at, start, len) == 0;
			at = end + 1;
		}
		if (dup)
			continue;
		if (++count > SORA_STORE_KEYWORDS_MAX)
			return sora_error_set(err, SORA_ERR_LIMIT, "more than %d keywords",
					      SORA_STORE_KEYWORDS_MAX);
		if ((out->len > 0 && sora_buf_append(out, " ", 1) < 0) ||
		    sora_buf_append(out, start, len) < 0)
			return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
	}
	if (buf_terminate(out) < 0)
		return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
	return 0;
}

/* Locks the mailbox row (which orders this APPEND against deliveries and
 * other APPENDs into the mailbox, and against DELETE and RENAME) and takes
 * $3 consecutive UIDs and one modseq for all of them. No row: the mailbox
 * does not exist or is \Noselect. A uid_next beyond 2^32 violates
 * mailboxes_uid_next_check: the UID space is used up. */
static const char sql_append_lock[] =
	"UPDATE mailboxes SET uid_next = uid_next + $3::bigint,"
	"       highest_modseq = highest_modseq + 1, updated_at = now()"
	" WHERE account_id = $1::bigint AND name = $2::text AND NOT noselect"
	" RETURNING id, uid_validity, uid_next - $3::bigint, highest_modseq";

/* One appended row: $2 mailbox id, $3 UID, $31 modseq, $32 flags, $33
 * keywords (normalised, space-separated, "" for none), $34 internal date
 * (seconds, NULL for now). */
static const char sql_append_row[] =
	"WITH mb AS ("
	"  SELECT $2::bigint AS id, $3::bigint AS uid, $31::bigint AS modseq"
	SQL_ROW("$32::integer", "string_to_array($33::text, ' ')",
		"coalesce(to_timestamp($34::double precision), now())")
	" SELECT id FROM msg";

#define APPEND_STMT "sora_append_v5"

/* APPEND of one message as one statement in its own transaction: the UID
 * allocation, the row and the commit in one round trip (the general path
 * takes four: BEGIN, lock, row, COMMIT). $2 mailbox name, $3 and $31 the
 * UID and modseq steps (both 1); the rest as sql_append_row. Returns the
 * mailbox id, UIDVALIDITY and UID, or no row when the mailbox does not
 * exist or is \Noselect. */
static const char sql_append_one[] =
	"WITH mb AS ("
	"  UPDATE mailboxes SET uid_next = uid_next + $3::bigint,"
	"         highest_modseq = highest_modseq + $31::bigint, updated_at = now()"
	"   WHERE account_id = $1::bigint AND name = $2::text AND NOT noselect"
	"  RETURNING id, uid_validity, uid_next - 1 AS uid, highest_modseq AS modseq"
	SQL_ROW("$32::integer", "string_to_array($33::text, ' ')",
		"coalesce(to_timestamp($34::double precision), now())")
	" SELECT mb.id, mb.uid_validity, mb.uid FROM mb, msg";

#define APPEND_ONE_STMT "sora_append_one_v3"

/* RFC 3501 date-time covers years 1..9999. */
#define IDATE_MIN INT64_C(-62135596800)
#define IDATE_MAX INT64_C(253402300799)

void sora_store_append_result_free(struct sora_store_append_result *res)
{
	free(res->uids);
	res->uids = NULL;
	res->count = 0;
}

/* The error of a refused UID allocation: the UID space is used up
 * (mailboxes_uid_next_check), or err as the database reported it. */
static void append_refused(const char *sqlstate, const char *name, struct sora_error *err)
{
	if (strcmp(sqlstate, "23514") == 0)
		sora_error_set(err, SORA_ERR_LIMIT, "mailbox %s: no UIDs left", name);
}

/* The mailbox id, UIDVALIDITY and (first) UID from the row of an
 * allocation; no row means no such selectable mailbox. */
static int append_mailbox(const PGresult *r, const char *name, int64_t *id_r,
			  int64_t *validity_r, int64_t *uid_r, struct sora_error *err)
{
	if (PQntuples(r) != 1)
		return sora_error_set(err, SORA_ERR_NOT_FOUND, "mailbox %s does not exist", name);
	if (sora_db_get_i64(r, 0, 0, id_r, err) < 0 ||
	    sora_db_get_i64(r, 0, 1, validity_r, err) < 0 ||
	    sora_db_get_i64(r, 0, 2, uid_r, err) < 0)
		return -1;
	return 0;
}

/* The row of a one-message APPEND whose body is staged (refs): one
 * statement, committed by itself. *absent_r stays true while nothing can
 * have been stored. */
static int append_one(struct sora_db_conn *conn, struct sora_blob_store *blobs,
		      const char *instance_id, const char *acc, const char *name,
		      const struct sora_store_append_item *it, const struct sora_buf *keywords,
		      const struct sora_blob_ref *ref, struct row_params *rp,
		      struct sora_store_append_result *res_r, bool *absent_r, struct sora_error *err)
{
	char flags[16], idate[24], sqlstate[6] = "";
	int64_t id = 0, validity = 0, uid = 0;
	PGresult *r = NULL;
	int ret = -1;

	if (row_params_fill(rp, it->msg, sora_str_make("", 0), ref, blobs, instance_id, err) < 0)
		return -1;
	snprintf(flags, sizeof(flags), "%u", it->flags);
	snprintf(idate, sizeof(idate), "%" PRId64, it->internal_date);
	rp->values[0] = acc;
	rp->values[1] = name;
	rp->values[2] = "1";
	rp->values[30] = "1";
	rp->values[31] = flags;
	rp->values[32] = keywords->data != NULL ? keywords->data : "";
	rp->values[33] = it->internal_date != 0 ? idate : NULL;
	if (sora_db_exec_prepared(conn, SORA_DB_CLASS_WRITE, APPEND_ONE_STMT, sql_append_one,
				  APPEND_PARAMS, rp->values, rp->lengths, rp->formats, 0, &r, sqlstate,
				  err) < 0) {
		/* A statement that never came back may have committed. */
		if (PQstatus(sora_db_conn_pg(conn)) != CONNECTION_OK) {
			*absent_r = false;
			err->cls = SORA_ERR_TEMPORARY;
		} else {
			append_refused(sqlstate, name, err);
		}
		goto out;
	}
	if (PQntuples(r) == 1)
		*absent_r = false;
	if (append_mailbox(r, name, &id, &validity, &uid, err) < 0)
		goto out;
	res_r->uids[0] = (uint32_t)uid;
	res_r->uid_validity = (uint32_t)validity;
	res_r->mailbox_id = id;
	res_r->count = 1;
	ret = 0;
out:
	PQclear(r);
	return ret;
}

int sora_store_append(struct sora_db_conn *conn, struct sora_blob_store *blobs,
		      const char *instance_id, int64_t account_id, const char *mailbox,
		      const struct sora_store_append_item *items, size_t count,
		      struct sora_store_append_result *res_r, struct sora_error *err)
{
	char name[SORA_MAILBOX_NAME_MAX + 1], acc[24], n[24], mbid[24], uid[24], modseq[24];
	char flags[16], idate[24];
	const char *lock_params[3] = { acc, name, n };
	struct sora_blob_hold **holds = NULL;
	struct sora_blob_ref *refs = NULL;
	struct sora_buf *keywords = NULL;
	struct row_params rp;
	PGresult *r = NULL;
	char sqlstate[6] = "";
	int64_t id = 0, validity = 0, first = 0, ms = 0;
	/* Until the commit is sent, failing means nothing was stored. */
	bool absent = true, in_tx = false;
	int ret = -1;
	size_t i;

	memset(res_r, 0, sizeof(*res_r));
	row_params_init(&rp);
	if (count == 0)
		return sora_error_set(err, SORA_ERR_INVALID, "APPEND of no message");
	if (count > SORA_STORE_APPEND_MAX)
		return sora_error_set(err, SORA_ERR_LIMIT, "APPEND of more than %d messages",
				      SORA_STORE_APPEND_MAX);
	if (sora_mailbox_name_normalize(mailbox, name, sizeof(name), err) < 0)
		return -1;
	holds = calloc(count, sizeof(*holds));
	refs = calloc(count, sizeof(*refs));
	keywords = calloc(count, sizeof(*keywords));
	res_r->uids = calloc(count, sizeof(*res_r->uids));
	if (holds == NULL || refs == NULL || keywords == NULL || res_r->uids == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		goto out;
	}
	/* Everything that can be refused is refused before anything is
	 * written. */
	for (i = 0; i < count; i++) {
		sora_buf_init(&keywords[i], 0);
		if (items[i].flags > SORA_STORE_FLAGS_ALL) {
			sora_error_set(err, SORA_ERR_INVALID, "message %zu: invalid flags %#x",
				       i + 1, items[i].flags);
			goto out;
		}
		if (items[i].internal_date < IDATE_MIN || items[i].internal_date > IDATE_MAX) {
			sora_error_set(err, SORA_ERR_INVALID,
				       "message %zu: internal date out of range", i + 1);
			goto out;
		}
		if (sora_store_keywords_normalize(items[i].keywords != NULL ? items[i].keywords : "",
						  &keywords[i], err) < 0) {
			sora_error_prefix(err, "message %zu", i + 1);
			goto out;
		}
	}

	/* 1. Every body, durable in staging, held until the outcome is known. */
	for (i = 0; i < count; i++) {
		if (stage_copy(blobs, items[i].msg, account_id, sora_str_make("", 0), &refs[i],
			       &holds[i], err) < 0) {
			sora_error_prefix(err, "message %zu", i + 1);
			goto out;
		}
	}

	snprintf(acc, sizeof(acc), "%" PRId64, account_id);
	snprintf(n, sizeof(n), "%zu", count);
	if (count == 1) {
		ret = append_one(conn, blobs, instance_id, acc, name, &items[0], &keywords[0],
				 &refs[0], &rp, res_r, &absent, err);
		goto out;
	}

	/* 2. One transaction: the mailbox locked once, N UIDs, one modseq. */
	if (sora_db_begin(conn, SORA_DB_CLASS_WRITE, err) < 0)
		goto out;
	in_tx = true;
	if (sora_db_exec(conn, SORA_DB_CLASS_WRITE, sql_append_lock, 3, lock_params, &r, sqlstate,
			 err) < 0) {
		append_refused(sqlstate, name, err);
		goto out;
	}
	if (append_mailbox(r, name, &id, &validity, &first, err) < 0 ||
	    sora_db_get_i64(r, 0, 3, &ms, err) < 0)
		goto out;
	PQclear(r);
	r = NULL;
	snprintf(mbid, sizeof(mbid), "%" PRId64, id);
	snprintf(modseq, sizeof(modseq), "%" PRId64, ms);
	for (i = 0; i < count; i++) {
		const struct sora_store_append_item *it = &items[i];

		if (row_params_fill(&rp, it->msg, sora_str_make("", 0), &refs[i], blobs,
				    instance_id, err) < 0)
			goto out;
		snprintf(uid, sizeof(uid), "%" PRId64, first + (int64_t)i);
		snprintf(flags, sizeof(flags), "%u", it->flags);
		snprintf(idate, sizeof(idate), "%" PRId64, it->internal_date);
		rp.values[0] = acc;
		rp.values[1] = mbid;
		rp.values[2] = uid;
		rp.values[30] = modseq;
		rp.values[31] = flags;
		rp.values[32] = keywords[i].data != NULL ? keywords[i].data : "";
		rp.values[33] = it->internal_date != 0 ? idate : NULL;
		if (sora_db_exec_prepared(conn, SORA_DB_CLASS_WRITE, APPEND_STMT, sql_append_row,
					  APPEND_PARAMS, rp.values, rp.lengths, rp.formats, 0, &r,
					  NULL, err) < 0) {
			sora_error_prefix(err, "message %zu", i + 1);
			goto out;
		}
		if (PQntuples(r) != 1) {
			sora_error_set(err, SORA_ERR_PERMANENT,
				       "message %zu: append statement returned %d rows", i + 1,
				       PQntuples(r));
			goto out;
		}
		PQclear(r);
		r = NULL;
		res_r->uids[i] = (uint32_t)(first + (int64_t)i);
	}

	/* 3. The commit. If it fails because the connection broke, it may
	 * have happened all the same: the outcome is unknown. */
	in_tx = false;
	if (sora_db_commit(conn, err) < 0) {
		if (PQstatus(sora_db_conn_pg(conn)) != CONNECTION_OK) {
			absent = false;
			err->cls = SORA_ERR_TEMPORARY;
		}
		goto out;
	}
	absent = false;
	res_r->uid_validity = (uint32_t)validity;
	res_r->mailbox_id = id;
	res_r->count = count;
	ret = 0;
out:
	PQclear(r);
	if (in_tx)
		sora_db_rollback(conn);
	/* Bodies whose rows certainly did not commit go away unless another
	 * writer uses them (blob-store.h, "Shared bodies"); after an unknown
	 * commit they stay (the janitor sweeps unreferenced staged ones). */
	for (i = 0; holds != NULL && i < count; i++)
		hold_end(&holds[i], absent, conn);
	for (i = 0; keywords != NULL && i < count; i++)
		sora_buf_free(&keywords[i]);
	row_params_free(&rp);
	free(keywords);
	free(refs);
	free(holds);
	if (ret < 0)
		sora_store_append_result_free(res_r);
	return ret;
}
