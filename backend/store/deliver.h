/* Storing an incoming message: recipient resolution, default mailboxes and
 * the durable insertion of a message into a mailbox (DESIGN.md §6).
 *
 * A message arrives once (one LMTP DATA) for one or more recipients. It is
 * parsed once with sora_store_message_prepare(): MIME structure, envelope,
 * the columns SEARCH and SORT read (msg-meta.h), the searchable text and a
 * hash of the raw bytes. Each recipient then gets its own copy through
 * sora_store_deliver(), with its own trace header lines (Return-Path,
 * Delivered-To, Received) prepended; the parsed structure is moved to the
 * new offsets rather than parsed again.
 *
 * Durability, per recipient, in this order:
 *   1. the body (prefix + message) is written into the blob store's staging
 *      area and fsynced (blob-store.h);
 *   2. one SQL statement, hence one transaction and one round trip, finds
 *      the mailbox, records the delivery key, allocates the UID, inserts
 *      the messages row, the message_contents row and the pending_uploads
 *      row the uploader works from (backend/store/uploader.h);
 *   3. only when that statement succeeded is the result DELIVERED, which
 *      the caller may acknowledge (LMTP 250).
 * If step 2 fails with an error from the server, nothing of the message is
 * in the database (the statement is atomic) and the body staged for it is
 * removed again unless another writer of the same bytes uses it
 * (blob-store.h, "Shared bodies"). If the connection broke while the statement was under
 * way the outcome is unknown: the staged body is kept (a committed row may
 * refer to it) and the result is FAILED with SORA_ERR_TEMPORARY, so the MTA
 * retries, and the retry
 * finds the delivery key and is answered without storing a second copy.
 *
 * Retries: the delivery key is BLAKE2b-256 over the raw message, the
 * envelope sender and the recipient as given; a key already recorded for
 * the mailbox (table message_deliveries, migration 0002) makes the result
 * DUPLICATE: nothing is stored and the body staged for the attempt is
 * removed again.
 *
 * Blocking: everything here talks to PostgreSQL and the file system; worker
 * threads only. Connections are borrowed from the caller, who acquired them
 * from the pool, and are left outside any transaction.
 *
 * Thread safety: functions are reentrant; a struct sora_store_message is
 * used by one thread at a time (sora_store_deliver moves its offsets).
 *
 * Errors (common/core/error.h): functions return 0 or -1 with a struct
 * sora_error filled. The database's and the blob store's classes pass
 * through unchanged, except where the outcome of a delivery is unknown
 * (see above): that is always SORA_ERR_TEMPORARY. A missing recipient or
 * mailbox is SORA_ERR_NOT_FOUND. */
#ifndef SORA_STORE_DELIVER_H
#define SORA_STORE_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend/blob/blob-store.h"
#include "backend/store/msg-meta.h"
#include "common/config/config.h"
#include "common/core/buf.h"
#include "common/core/str.h"
#include "common/db/accounts.h"
#include "common/db/db.h"
#include "common/proto/mime/mime.h"

/* Where mail is delivered when nothing else decides. */
#define SORA_STORE_INBOX "INBOX"

/* Raw header blocks larger than this are not copied into
 * messages.raw_headers (NULL there): header FETCHes of such messages read
 * the blob instead. */
#define SORA_STORE_RAW_HEADERS_MAX (256 * 1024)

/* Creates the default mailboxes of an account the first time (when it has no
 * INBOX yet): INBOX, and Sent, Drafts, Junk, Trash, Archive with their
 * RFC 6154 SPECIAL-USE attributes. Mailboxes the user deleted later are not
 * created again. Safe to run concurrently for the same account. Returns 0
 * with the INBOX id (when inbox_id_r is not NULL), or -1 with err set. */
int sora_store_ensure_default_mailboxes(struct sora_db_conn *conn, int64_t account_id,
					int64_t *inbox_id_r, struct sora_error *err);

/* A resolved recipient. */
struct sora_store_recipient {
	int64_t account_id;
	char primary_address[SORA_ACCOUNTS_ADDRESS_SIZE];
	/* "+detail" of the address as given, without the separator, kept for
	 * filing (Sieve :detail); empty when there was none. */
	char detail[SORA_ACCOUNTS_ADDRESS_SIZE];
	bool has_detail;
};

/* Finds the live account an address belongs to: credentials are the
 * aliases, compared case-insensitively. The address as given is tried
 * first, then, if it has a subaddress ("user+detail@domain", RFC 5233;
 * separator 0 means '+'), the address without it. address is network data,
 * "local@domain" with the local part already unquoted. Returns 0, or -1
 * with err set: SORA_ERR_NOT_FOUND, or the database's class. */
int sora_store_resolve_recipient(struct sora_db_conn *conn, struct sora_str address,
				 char separator, struct sora_store_recipient *rcpt_r,
				 struct sora_error *err);

/* The raw message, as received (CRLF line ends), either in memory or in a
 * file (read with pread, so the file offset does not matter). Borrowed. */
struct sora_store_body {
	const char *mem;    /* the whole message, or NULL */
	int fd;             /* used when mem is NULL */
	uint64_t base;      /* where the message starts in fd (several
			     * messages may share one file: IMAP MULTIAPPEND) */
	uint64_t size;
};

/* Reads up to len bytes at offset. Returns the count (short only at the
 * end), or -1 with errno set. */
ssize_t sora_store_body_read(const struct sora_store_body *body, uint64_t offset,
			     void *buf, size_t len);

/* A message parsed for delivery. All members are owned and freed by
 * sora_store_message_free(); body is borrowed (it must outlive m). */
struct sora_store_message {
	struct sora_store_body body;
	struct sora_mime_message *mime;  /* offsets include the current prefix */
	int64_t prefix_len;              /* prefix the offsets account for */
	struct sora_msg_meta meta;
	struct sora_buf envelope_json;
	char message_hash[65];           /* SHA-256 of the raw message, hex */
	/* What POP3 LIST announces for the message without a prefix
	 * (common/proto/pop3.h: bare LFs count as CRLF, a last line without
	 * one gets CRLF). */
	uint64_t pop3_size;
	char *sender;                    /* envelope sender, "" for <> */
};

/* Parses body (one pass for structure and hash, then the text parts) and
 * derives everything the messages row needs. sender is the reverse-path
 * mailbox ("" for the null path). Returns 0, or -1 with err set (out of
 * memory: TEMPORARY; the body could not be read or parsed: PERMANENT). */
int sora_store_message_prepare(struct sora_store_message *m, const struct sora_store_body *body,
			       struct sora_str sender, struct sora_error *err);
void sora_store_message_free(struct sora_store_message *m);

/* One recipient's copy. */
struct sora_store_delivery {
	int64_t account_id;
	struct sora_str rcpt;     /* the RCPT TO address as given (delivery key) */
	struct sora_str prefix;   /* complete CRLF-terminated header lines */
	const char *mailbox;      /* NULL: INBOX (created with the defaults) */
};

enum sora_store_delivery_status {
	SORA_STORE_DELIVERED = 0,  /* stored and committed */
	SORA_STORE_DUPLICATE,      /* a retry of a delivery already committed */
	SORA_STORE_FAILED,         /* not stored, or unknown: see error */
};

/* The outcome of one copy. A delivery to several recipients answers each
 * of them after all copies are done (LMTP), so the result keeps its own
 * error instead of taking a separate struct sora_error. */
struct sora_store_delivery_result {
	enum sora_store_delivery_status status;
	int64_t mailbox_id;
	int64_t message_id;        /* messages.id */
	int64_t uid;
	uint64_t size;             /* stored size, prefix included */
	char hash[SORA_BLOB_HASH_HEX_SIZE];
	/* When FAILED: SORA_ERR_NOT_FOUND for a named mailbox that does not
	 * exist; SORA_ERR_TEMPORARY whenever the outcome is unknown; else the
	 * class of the failing layer (blob store, database). */
	struct sora_error error;
};

/* Stores one copy of m for d (see the top of this file for the order of
 * events). instance_id goes into pending_uploads: the node whose staging
 * area holds the body (sora_backend_instance_id()). Always fills *res;
 * returns 0 when res->status is DELIVERED or DUPLICATE, -1 (FAILED, with
 * res->error set) otherwise. */
int sora_store_deliver(struct sora_db_conn *conn, struct sora_blob_store *blobs,
		       const char *instance_id, struct sora_store_message *m,
		       const struct sora_store_delivery *d,
		       struct sora_store_delivery_result *res);

/* The same for n copies of m (one per recipient of an LMTP transaction):
 * every body is made durable first, then the rows are committed together
 * -- with each other and with other threads' copies waiting at the same
 * time (group commit, see deliver.c): the copies of one transaction and
 * concurrent deliveries into one mailbox share one commit instead of
 * taking turns on the mailbox row lock for one WAL flush each. Each copy
 * still has its own outcome in res[i]: a copy that fails never fails the
 * others. Returns 0 when every copy is DELIVERED or DUPLICATE, else -1.
 * Thread safety: any worker thread, each with its own conn; m as above. */
int sora_store_deliver_many(struct sora_db_conn *conn, struct sora_blob_store *blobs,
			    const char *instance_id, struct sora_store_message *m,
			    const struct sora_store_delivery *d, size_t n,
			    struct sora_store_delivery_result *res);

/* ---- IMAP APPEND (RFC 3501 6.3.11, RFC 3502 MULTIAPPEND, RFC 4315
 * APPENDUID) ----
 *
 * The same pipeline as a delivery, with what differs for a client's own
 * message: no trace prefix (the body is stored as the client sent it), no
 * delivery key (a client's retry is a new message), no default mailboxes
 * (a missing mailbox is the client's to CREATE: NOT_FOUND, answered
 * NO [TRYCREATE]), and flags, keywords and internal date from the client.
 *
 * Durability as for deliveries (DESIGN.md §6): every body is written into
 * staging and fsynced first; then one transaction locks the mailbox row
 * once, takes N consecutive UIDs and one modseq, inserts the N rows and
 * commits; success is returned only after the commit. MULTIAPPEND is all
 * or nothing: any failure rolls the whole transaction back.
 *
 * Bodies and sharing: each body is held from staging until the outcome is
 * known (blob-store.h, "Shared bodies"). When the transaction certainly
 * did not commit, each body is removed unless another writer (a delivery,
 * another APPEND, of identical bytes into the account) holds or used it
 * meanwhile, or a committed row names it; what stays and is unreferenced
 * is removed by the janitor's orphan sweep after SORA_JANITOR_ORPHAN_AGE
 * (staging; a direct fs store is not swept). When the commit's outcome is
 * unknown (the connection broke during COMMIT) every body stays.
 *
 * Memory: bodies are read from the message's body (a staging file the
 * IMAP layer wrote the literal into) in 64 KiB pieces; what is held per
 * message is its parsed metadata (bounded by msg-meta.h) and its header
 * block up to SORA_STORE_RAW_HEADERS_MAX. The caller enforces
 * append_limit while receiving the literal. Each message holds one file
 * descriptor from staging to the end of the call. */

/* Storable system flags (messages.flags). \Recent is not storable. */
#define SORA_STORE_FLAG_SEEN 1u
#define SORA_STORE_FLAG_ANSWERED 2u
#define SORA_STORE_FLAG_FLAGGED 4u
#define SORA_STORE_FLAG_DELETED 8u
#define SORA_STORE_FLAG_DRAFT 16u
#define SORA_STORE_FLAGS_ALL 31u

/* Limits: messages in one APPEND (MULTIAPPEND), distinct keywords on one
 * message. Past them: SORA_ERR_LIMIT. */
#define SORA_STORE_APPEND_MAX 1000
#define SORA_STORE_KEYWORDS_MAX 256

struct sora_store_append_item {
	/* Prepared with sora_store_message_prepare (sender ""), body
	 * normally in a file; borrowed. Its offsets are moved to prefix 0. */
	struct sora_store_message *msg;
	unsigned int flags;          /* SORA_STORE_FLAG_* bits; others INVALID */
	/* Keywords separated by spaces, "" or NULL for none; borrowed. Each
	 * must be an atom without '\' (system flags go into flags), else
	 * INVALID. Stored once per case-insensitive spelling (the first). */
	const char *keywords;
	/* Seconds since the epoch, years 1..9999 (else INVALID); 0 = now. */
	int64_t internal_date;
};

struct sora_store_append_result {
	uint32_t uid_validity;       /* APPENDUID's first value */
	uint32_t *uids;              /* owned: count UIDs, consecutive, in item order */
	size_t count;
	int64_t mailbox_id;
};

/* Stores items[0..count) into the mailbox named mailbox (any INBOX
 * spelling; normalised with sora_mailbox_name_normalize) of account_id.
 * instance_id as for sora_store_deliver. Worker threads only; conn is
 * borrowed and left outside any transaction.
 *
 * Returns 0 with *res_r filled (free it with
 * sora_store_append_result_free), or -1 with err set and *res_r empty:
 * SORA_ERR_NOT_FOUND: no such mailbox, or a \Noselect one (TRYCREATE);
 * SORA_ERR_INVALID: a bad name, flags, keyword or internal date, or count
 * 0; SORA_ERR_LIMIT: too many messages or keywords, or the mailbox's UID
 * space is used up; SORA_ERR_TEMPORARY: the database or blob store failed
 * in a way worth retrying, which includes an unknown commit outcome
 * (nothing was acknowledged, but the messages may be stored); else the
 * failing layer's class. Nothing is stored on any error but the unknown
 * outcome. */
int sora_store_append(struct sora_db_conn *conn, struct sora_blob_store *blobs,
		      const char *instance_id, int64_t account_id, const char *mailbox,
		      const struct sora_store_append_item *items, size_t count,
		      struct sora_store_append_result *res_r, struct sora_error *err);
/* Frees res->uids and empties res; safe on an empty result. */
void sora_store_append_result_free(struct sora_store_append_result *res);

/* Checks space-separated keywords and writes them into out without
 * duplicates (case-insensitive, first spelling kept), separated by one
 * space, NUL-terminated ("" for none). Pure; exposed for tests. Returns 0,
 * or -1 with err set (INVALID, LIMIT, TEMPORARY for memory). */
int sora_store_keywords_normalize(const char *keywords, struct sora_buf *out,
				  struct sora_error *err);

/* Readies a fresh database connection for deliveries without writing
 * anything: looks up a recipient that cannot exist and runs the delivery
 * statement for account 0, which has no mailbox. That prepares both
 * statements on the connection and makes its PostgreSQL backend load the
 * catalog entries and plan the statements, the work that otherwise makes
 * the first delivery on a new connection several times slower than the
 * next. Blocking; worker or start-up thread. Returns 0, or -1 with err set. */
int sora_store_warm_conn(struct sora_db_conn *conn, struct sora_error *err);

/* The delivery key of (m, d) as 64 hex digits (exposed for tests). */
void sora_store_delivery_key(const struct sora_store_message *m, struct sora_str rcpt,
			     char key_r[SORA_BLOB_HASH_HEX_SIZE]);

#endif
