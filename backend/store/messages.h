/* Messages of a selected mailbox: what IMAP SELECT/EXAMINE, FETCH, STORE,
 * EXPUNGE, COPY, MOVE, NOOP/IDLE change tracking and POP3 read and change
 * (RFC 3501, RFC 9051, RFC 7162 CONDSTORE/QRESYNC, RFC 4315 UIDPLUS,
 * RFC 6851 MOVE).
 *
 * Model (migration 0001 + 0004):
 *   - UIDs are allocated from mailboxes.uid_next and modseqs from
 *     mailboxes.highest_modseq; every change to a message (flags, expunge)
 *     takes a new modseq from its mailbox, so "changed since modseq M" is
 *     "updated_modseq > M OR expunged_modseq > M".
 *   - Expunge is two-phase: expunged_at / expunged_modseq are set and the
 *     row stays (the janitor removes it later), so a session that still
 *     shows the message can FETCH it (RFC 3501 §7.4.1 lets a server serve
 *     it) and QRESYNC can report VANISHED.
 *   - \Recent (IMAP4rev1 only): mailboxes.recent_uid is the first UID no
 *     session has claimed yet. A read-write SELECT, and later change checks
 *     of that session, claim UIDs >= recent_uid atomically, so each new
 *     message is \Recent in exactly one session.
 *   - Keywords are stored as sent in messages.keywords; they are compared
 *     case-insensitively (a STORE of "$junk" where "$Junk" is set is a
 *     no-op).
 *
 * Keyword lists cross this interface as one string of keywords separated
 * by single spaces ("$Junk Work"), "" for none: keywords are IMAP atoms and
 * cannot contain a space. The session validates client keywords (atoms, no
 * '\') before calling.
 *
 * Concurrency: every function that changes messages (STORE, EXPUNGE,
 * COPY/MOVE) runs in one transaction that first locks the mailbox row (FOR
 * UPDATE; several mailboxes in ascending id order, so COPY a->b and b->a at
 * once cannot deadlock), as deliveries do with their UPDATE of uid_next.
 * Anything else that changes message state must lock the mailbox row
 * first too. Reads (open, changes, fetch) are one statement each, so one
 * consistent snapshot.
 *
 * Blocking: PostgreSQL; worker threads only. Connections are borrowed and
 * left outside any transaction.
 *
 * Ownership: every struct *_r is filled with owned memory; free it with its
 * *_free function (NULL-safe, also after an error).
 *
 * Errors (common/core/error.h): 0 or -1 with err set. SORA_ERR_NOT_FOUND:
 * no such mailbox (or a \Noselect one; for COPY/MOVE the target: the session
 * answers NO [TRYCREATE]). SORA_ERR_CONFLICT: the mailbox was deleted or
 * recreated (UIDVALIDITY changed) under the session. SORA_ERR_INVALID: a
 * mailbox name that mailbox.h refuses. SORA_ERR_LIMIT: a STORE that would
 * give a message more than SORA_MSGS_KEYWORDS_MAX keywords (nothing is
 * changed), a COPY that would pass the largest UID. Otherwise the
 * database's class. */
#ifndef SORA_STORE_MESSAGES_H
#define SORA_STORE_MESSAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/core/error.h"
#include "backend/store/uid-cache.h"
#include "common/db/db.h"

/* A mailbox as SELECT/EXAMINE report it. */
struct sora_msgs_mailbox {
	int64_t id;
	uint32_t uid_validity;
	uint32_t uid_next;
	uint64_t highest_modseq;
	char special_use[16];
	/* Every keyword used by a live message of the mailbox, for the FLAGS
	 * and PERMANENTFLAGS responses (at most SORA_MSGS_KEYWORDS_MAX,
	 * space separated). Owned. */
	char *keywords;
};

/* Keywords listed per mailbox (FLAGS response), and the most one message
 * may have (STORE answers SORA_ERR_LIMIT beyond). */
#define SORA_MSGS_KEYWORDS_MAX 256

/* The live (not expunged) UIDs of a mailbox in ascending order: the
 * session's sequence-number map (sequence n is uids[n - 1]). */
struct sora_msgs_uids {
	uint32_t *uids;    /* owned */
	size_t count;
};

struct sora_msgs_open_result {
	struct sora_msgs_mailbox mailbox;
	struct sora_msgs_uids uids;
	/* UIDs >= first_recent are \Recent in this session (claimed when
	 * claim_recent; else the unclaimed ones are reported as RECENT count
	 * only: first_recent is then the first unclaimed UID and nothing is
	 * claimed). 0 when none. recent_count: live UIDs >= first_recent. */
	uint32_t first_recent;
	uint32_t recent_count;
	/* Sequence number of the first message without \Seen, 0 if none. */
	uint32_t first_unseen_seq;
	uint32_t unseen_count;
};

/* SELECT (claim_recent) / EXAMINE / STATUS-like open of a mailbox by its
 * normalised UTF-8 name. cache (may be NULL): the backend's UID lists
 * (uid-cache.h), used when it has the mailbox and updated after. */
int sora_msgs_open(struct sora_db_conn *conn, struct sora_uid_cache *cache, int64_t account_id,
		   const char *name, bool claim_recent, struct sora_msgs_open_result *res_r,
		   struct sora_error *err);
void sora_msgs_open_result_free(struct sora_msgs_open_result *res);

/* Flag state of one message. */
struct sora_msgs_state {
	uint32_t uid;
	unsigned int flags;     /* SORA_IMAP_FLAG_* bits (common/proto/imap-search.h) */
	char *keywords;         /* owned, space separated, "" for none */
	uint64_t modseq;
};

/* What changed in a mailbox since a session last looked (NOOP, IDLE, after
 * any command): used to send EXISTS, EXPUNGE / VANISHED and FETCH FLAGS. */
struct sora_msgs_changes {
	uint64_t highest_modseq;      /* the mailbox's now */
	uint32_t uid_next;
	uint32_t uid_validity;        /* changed => the mailbox was recreated */
	/* Live UIDs >= since_uid_next, ascending (new messages). */
	struct sora_msgs_uids added;
	/* UIDs < since_uid_next expunged with expunged_modseq > since_modseq,
	 * ascending. */
	struct sora_msgs_uids expunged;
	/* Live messages with uid < since_uid_next whose updated_modseq >
	 * since_modseq, ascending by UID. */
	struct sora_msgs_state *changed;
	size_t changed_count;
	/* With claim_recent: the first UID claimed as \Recent for this
	 * session (0 if none); never below since_uid_next. Added UIDs >=
	 * first_recent are \Recent in the session. */
	uint32_t first_recent;
};

/* Changes of mailbox_id since (since_modseq, since_uid_next). With
 * claim_recent, new UIDs not yet claimed by another session become this
 * session's \Recent. CONFLICT if the mailbox no longer exists or is now
 * \Noselect. */
int sora_msgs_changes(struct sora_db_conn *conn, int64_t mailbox_id, uint64_t since_modseq,
		      uint32_t since_uid_next, bool claim_recent,
		      struct sora_msgs_changes *ch_r, struct sora_error *err);
void sora_msgs_changes_free(struct sora_msgs_changes *ch);

/* What FETCH may need of a message; bits of the want argument. */
enum sora_msgs_want {
	SORA_MSGS_WANT_STATE     = 1u << 0,   /* flags, keywords, modseq */
	SORA_MSGS_WANT_BASIC     = 1u << 1,   /* size, internal date, content hash */
	SORA_MSGS_WANT_ENVELOPE  = 1u << 2,   /* IMAP ENVELOPE, or its JSON */
	SORA_MSGS_WANT_STRUCTURE = 1u << 3,   /* bodystructure JSON */
	SORA_MSGS_WANT_HEADERS   = 1u << 4,   /* raw header block */
	SORA_MSGS_WANT_IMAP_STRUCTURE = 1u << 5, /* IMAP BODYSTRUCTURE, or the JSON */
};

struct sora_msgs_row {
	uint32_t uid;
	bool found;              /* false: no such UID (never existed / purged) */
	bool expunged;           /* expunged, still readable */
	struct sora_msgs_state state;
	uint64_t size;
	int64_t internal_date;   /* seconds since the epoch (UTC) */
	char content_hash[65];
	/* The IMAP ENVELOPE and BODYSTRUCTURE as rendered when the row was
	 * written (migration 0005), owned, NUL-terminated; NULL when not
	 * wanted or not stored (rows older than 0005). */
	char *imap_envelope;
	char *imap_bodystructure;
	/* JSON as stored (mime-json.h), owned, NUL-terminated; NULL when not
	 * wanted or not stored. WANT_ENVELOPE gives envelope_json only when
	 * imap_envelope is not stored; WANT_IMAP_STRUCTURE gives
	 * structure_json only when imap_bodystructure is not stored;
	 * WANT_STRUCTURE always gives structure_json. */
	char *envelope_json;
	char *structure_json;
	/* The header block as received (may contain any byte), owned; NULL
	 * when not wanted or not stored (then read the blob). */
	char *raw_headers;
	size_t raw_headers_len;
};

struct sora_msgs_rows {
	struct sora_msgs_row *rows;   /* in the order of the uids asked for */
	size_t count;
};

/* Reads rows for uids[0..count) (any order, duplicates allowed), expunged
 * ones included. One query per call: callers fetch in batches. The state
 * and basic fields are always filled for found rows (a row not found has
 * only uid set; its state.keywords is NULL); want selects the large
 * columns (ENVELOPE, STRUCTURE, HEADERS). */
int sora_msgs_fetch(struct sora_db_conn *conn, int64_t mailbox_id, const uint32_t *uids,
		    size_t count, unsigned int want, struct sora_msgs_rows *rows_r,
		    struct sora_error *err);
void sora_msgs_rows_free(struct sora_msgs_rows *rows);

enum sora_msgs_store_op {
	SORA_MSGS_STORE_SET = 0,   /* FLAGS */
	SORA_MSGS_STORE_ADD,       /* +FLAGS */
	SORA_MSGS_STORE_REMOVE,    /* -FLAGS */
};

struct sora_msgs_store_result {
	/* The state after the command of every live listed message (changed
	 * or not), ascending by UID: what the untagged FETCH responses show. */
	struct sora_msgs_state *states;
	size_t state_count;
	/* Whether each state entry was changed by this command. */
	bool *changed;
	/* UNCHANGEDSINCE: live messages not changed because their modseq was
	 * greater (the MODIFIED response code), ascending. */
	struct sora_msgs_uids modified;
	uint64_t highest_modseq;
};

/* STORE on the live messages among uids[0..count) (ascending, no
 * duplicates). All changed rows get one new modseq; a STORE that changes
 * nothing takes none (highest_modseq is then the current one). A row is
 * changed when its flags or its keyword set (compared case-insensitively)
 * differ; a keyword the message already has keeps its stored spelling.
 * unchangedsince 0 means no UNCHANGEDSINCE; otherwise rows with modseq >
 * unchangedsince are left alone and listed in modified (even when the
 * STORE would not have changed them, RFC 7162 3.1.3). Note that RFC 7162
 * gives UNCHANGEDSINCE 0 a meaning (it fails for every message): the
 * session answers that itself. keywords: space separated, "" for none. */
int sora_msgs_store(struct sora_db_conn *conn, int64_t mailbox_id, const uint32_t *uids,
		    size_t count, enum sora_msgs_store_op op, unsigned int flags,
		    const char *keywords, uint64_t unchangedsince,
		    struct sora_msgs_store_result *res_r, struct sora_error *err);
void sora_msgs_store_result_free(struct sora_msgs_store_result *res);

/* EXPUNGE (uids NULL: every live message with \Deleted) and UID EXPUNGE
 * (only those of uids[0..count) that have \Deleted). Expunged UIDs,
 * ascending, go to *expunged_r; the mailbox's new highest modseq to
 * *modseq_r (may be NULL). */
int sora_msgs_expunge(struct sora_db_conn *conn, int64_t mailbox_id, const uint32_t *uids,
		      size_t count, struct sora_msgs_uids *expunged_r, uint64_t *modseq_r,
		      struct sora_error *err);
void sora_msgs_uids_free(struct sora_msgs_uids *uids);

struct sora_msgs_copy_result {
	int64_t dest_mailbox_id;
	uint32_t dest_uid_validity;
	/* Pairs: source UID src_uids[i] became dest_uids[i], ascending by
	 * source UID. Messages already expunged are skipped. */
	struct sora_msgs_uids src_uids;
	struct sora_msgs_uids dest_uids;
	uint64_t source_modseq;       /* MOVE: the source's new highest modseq */
};

/* COPY (move false) / MOVE (move true) of the live messages among
 * uids[0..count) (ascending) of mailbox_id into the mailbox named dest
 * (normalised UTF-8) of the same account, in one transaction: flags and
 * keywords are kept (\Recent is not), internal date kept, bodies shared
 * (no blob is copied). MOVE expunges the originals in the same
 * transaction. NOT_FOUND if dest does not exist or is \Noselect
 * (TRYCREATE); CONFLICT if mailbox_id is gone or not the account's. The
 * copies get consecutive new UIDs from dest's uid_next and one new modseq
 * of dest; MOVE expunges the originals with one new modseq of the source
 * (the same one when dest is the source mailbox). */
int sora_msgs_copy(struct sora_db_conn *conn, int64_t account_id, int64_t mailbox_id,
		   const uint32_t *uids, size_t count, const char *dest, bool move,
		   struct sora_msgs_copy_result *res_r, struct sora_error *err);
void sora_msgs_copy_result_free(struct sora_msgs_copy_result *res);

/* Parses a space-separated keyword list into a sorted, case-insensitively
 * deduplicated one (pure; exposed for tests). Returns a malloc'd string or
 * NULL when out of memory. */
char *sora_msgs_keywords_normalize(const char *keywords);

#endif
