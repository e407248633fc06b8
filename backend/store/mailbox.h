/* Mailbox operations of one account: what IMAP LIST/LSUB, CREATE, DELETE,
 * RENAME, SUBSCRIBE/UNSUBSCRIBE and STATUS call (RFC 3501, RFC 6154
 * SPECIAL-USE and CREATE-SPECIAL-USE, RFC 3348 CHILDREN).
 *
 * Names: UTF-8 (the IMAP layer converts modified UTF-7), full hierarchical
 * names with '/' as the delimiter, as stored in mailboxes.name (migration
 * 0001). INBOX is case-insensitive: a first component that equals "inbox"
 * in any case is INBOX, so "inbox" and "Inbox/Sub" are stored and looked up
 * as "INBOX" and "INBOX/Sub". Every function that takes a name normalises
 * and checks it with sora_mailbox_name_normalize() first.
 *
 * Tree rules (decisions):
 *   - Parents are real: CREATE "a/b/c" creates the missing "a" and "a/b" as
 *     ordinary selectable mailboxes (RFC 3501 6.3.3 lets the server pick),
 *     so every stored name but a top-level one has its parent stored and
 *     parent_id set. A trailing delimiter on CREATE ("a/") is accepted and
 *     dropped (RFC 3501 6.3.3), elsewhere it is INVALID.
 *   - \Noselect only comes from DELETE of a mailbox that has children: its
 *     messages are removed and the name stays as a \Noselect placeholder
 *     (RFC 3501 6.3.4). A placeholder left without children (its last child
 *     deleted or renamed away) is removed with it. CREATE of a placeholder's
 *     name makes it selectable again with a new UIDVALIDITY.
 *   - RENAME moves the whole subtree (children follow) and keeps every
 *     UIDVALIDITY; missing parents of the new name are created as above.
 *     RENAME of INBOX creates the new mailbox, moves INBOX's live messages
 *     into it (UIDs kept, so the new mailbox takes INBOX's UIDNEXT and
 *     HIGHESTMODSEQ) and leaves INBOX empty, with its children untouched
 *     (RFC 3501 6.3.5); the new name may be under INBOX ("INBOX/old"). INBOX
 *     gets a new UIDVALIDITY; its expunged rows stay with it.
 *   - Subscriptions are names of their own (mailbox_subscriptions,
 *     migration 0004): any valid name may be subscribed, existing or not,
 *     and a subscription outlives DELETE of its mailbox. CREATE does not
 *     subscribe; the default mailboxes are subscribed when created. RENAME
 *     moves the subtree's subscriptions along. UNSUBSCRIBE of a name that
 *     is not subscribed is NOT_FOUND.
 *   - Blobs are never deleted here: bodies are content-addressed and may be
 *     shared; the janitor owns them.
 *
 * Concurrency: every operation that changes the tree runs in one
 * transaction that first locks the account row (FOR NO KEY UPDATE, which
 * does not block deliveries' foreign-key checks), so CREATE, DELETE and
 * RENAME of one account are serialised and cannot corrupt the tree, while
 * deliveries and other accounts go on.
 *
 * Blocking: all database functions talk to PostgreSQL; worker threads only.
 * The connection is borrowed and left outside any transaction.
 *
 * Errors (common/core/error.h): 0 or -1 with err set. SORA_ERR_NOT_FOUND:
 * no such mailbox (or a \Noselect one for STATUS), no such account.
 * SORA_ERR_CONFLICT: the name (CREATE) or the target (RENAME) already
 * exists. SORA_ERR_INVALID: a bad name or special-use attribute, DELETE or
 * RENAME of something RFC 3501 forbids (DELETE INBOX, DELETE of a
 * \Noselect mailbox with children, RENAME into its own subtree).
 * Otherwise the database's class. */
#ifndef SORA_STORE_MAILBOX_H
#define SORA_STORE_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/core/error.h"
#include "common/db/db.h"

#define SORA_MAILBOX_DELIMITER '/'
/* Limits of a normalised name, in bytes (the schema allows 1024). */
#define SORA_MAILBOX_NAME_MAX 1024
#define SORA_MAILBOX_COMPONENT_MAX 255
#define SORA_MAILBOX_DEPTH_MAX 32
/* The longest special-use attribute ("\Archive") plus NUL, rounded up. */
#define SORA_MAILBOX_SPECIAL_USE_SIZE 16

/* One mailbox as LIST needs it. */
struct sora_mailbox_info {
	int64_t id;
	char *name;                      /* owned, UTF-8 */
	bool noselect;                   /* \Noselect */
	bool has_children;               /* \HasChildren, else \HasNoChildren */
	bool subscribed;                 /* \Subscribed (LIST-EXTENDED) / LSUB */
	/* A subscribed name without a mailbox (\NonExistent): id 0,
	 * noselect and subscribed set. */
	bool nonexistent;
	char special_use[SORA_MAILBOX_SPECIAL_USE_SIZE];  /* "\Sent" or "" */
};

struct sora_mailbox_list {
	struct sora_mailbox_info *items;  /* sorted by name, byte order */
	size_t count;
};

/* Every mailbox of the account. Returns 0 with *list_r filled (free it with
 * sora_mailbox_list_free), or -1 with err set. */
int sora_mailbox_list(struct sora_db_conn *conn, int64_t account_id,
		      struct sora_mailbox_list *list_r, struct sora_error *err);
void sora_mailbox_list_free(struct sora_mailbox_list *list);

/* CREATE. special_use is NULL or one RFC 6154 attribute (any case,
 * "\sent" is stored as "\Sent"; CREATE-SPECIAL-USE). Returns 0 with the
 * new id in *id_r (may be NULL), or -1 with err set. */
int sora_mailbox_create(struct sora_db_conn *conn, int64_t account_id, const char *name,
			const char *special_use, int64_t *id_r, struct sora_error *err);

/* DELETE (RFC 3501 6.3.4; see the rules above). */
int sora_mailbox_delete(struct sora_db_conn *conn, int64_t account_id, const char *name,
			struct sora_error *err);

/* RENAME (RFC 3501 6.3.5; see the rules above). */
int sora_mailbox_rename(struct sora_db_conn *conn, int64_t account_id, const char *old_name,
			const char *new_name, struct sora_error *err);

/* SUBSCRIBE (subscribed true) and UNSUBSCRIBE (false). */
int sora_mailbox_subscribe(struct sora_db_conn *conn, int64_t account_id, const char *name,
			   bool subscribed, struct sora_error *err);

/* STATUS items, from mailboxes and the trigger-kept mailbox_stats. */
struct sora_mailbox_status {
	int64_t id;
	int64_t messages;
	int64_t unseen;
	int64_t size;                    /* RFC 8438 STATUS=SIZE */
	int64_t uid_next;
	int64_t uid_validity;
	int64_t highest_modseq;
};

int sora_mailbox_status(struct sora_db_conn *conn, int64_t account_id, const char *name,
			struct sora_mailbox_status *status_r, struct sora_error *err);

/* ---- Pure helpers (no I/O) ---- */

/* Checks a mailbox name and writes its normalised form (INBOX canonical)
 * into out (size >= SORA_MAILBOX_NAME_MAX + 1 always suffices). Refused
 * (SORA_ERR_INVALID): empty, longer than SORA_MAILBOX_NAME_MAX bytes,
 * invalid UTF-8, control characters, the LIST wildcards '*' and '%', a
 * leading or trailing delimiter, an empty component ("a//b"), a component
 * longer than SORA_MAILBOX_COMPONENT_MAX or more than SORA_MAILBOX_DEPTH_MAX
 * components. Returns 0 or -1 with err set. */
int sora_mailbox_name_normalize(const char *name, char *out, size_t size,
				struct sora_error *err);

/* Whether name is INBOX (any case). */
bool sora_mailbox_is_inbox(const char *name);

/* LIST pattern matching (RFC 3501 6.3.8): '*' matches any run of
 * characters, '%' any run without the delimiter, everything else itself.
 * The INBOX part of a name ("INBOX" or the "INBOX" of "INBOX/x") matches
 * case-insensitively, so "inbox", "InBox/%" and "i*" find it. name is a
 * stored (normalised) name; pattern is the reference and mailbox argument
 * already joined by the caller. Names longer than SORA_MAILBOX_NAME_MAX
 * never match. */
bool sora_mailbox_match(const char *pattern, const char *name, char delimiter);

/* The canonical spelling of an RFC 6154 attribute given in any case
 * ("\\junk" -> "\\Junk"), or NULL when it is not one. */
const char *sora_mailbox_special_use_canonical(const char *attr);

#endif
