/* The UID lists of recently opened large mailboxes, kept in the backend so
 * that a SELECT of a mailbox this backend has opened before reads only
 * what changed since instead of every UID again.
 *
 * An IMAP session needs every live UID of the mailbox it selects (its
 * sequence-number map). Read from PostgreSQL that is O(messages) on every
 * SELECT (about 100-300 ms for 100,000 messages); Dovecot answers from its
 * index file in a few milliseconds. With an entry here, sora_msgs_open
 * asks the database only for the UIDs expunged since the entry's modseq
 * and the UIDs at or above its uid_next, in the same statement and
 * snapshot as the rest of the open, and applies them to a copy of the
 * entry (messages.c, "open").
 *
 * Why the delta is exact (messages.h, "Model"): a UID below the entry's
 * uid_next was allocated and inserted by a transaction that committed
 * before the entry's snapshot (the mailbox row's uid_next and the message
 * row are written by one transaction), so no such UID can appear later;
 * every expunge takes a new modseq from the mailbox row, so one committed
 * after the entry's snapshot has expunged_modseq > the entry's modseq.
 * Expunged rows must therefore outlive an entry: entries older than
 * SORA_UID_CACHE_MAX_AGE_MS since they were last checked against the
 * database are not used, and whatever deletes expunged rows must keep
 * them longer than that. The statement uses an entry only when the
 * mailbox found under the name still has the entry's id and UIDVALIDITY
 * (DELETE and CREATE, RENAME, a UIDVALIDITY change all fall back to the
 * full list).
 *
 * Keys are (account id, normalised mailbox name). Only mailboxes with at
 * least SORA_UID_CACHE_MIN_UIDS messages are kept (smaller ones are cheap
 * to read); the whole cache holds at most max_bytes of UIDs, least
 * recently used entries going first. Thread-safe (one mutex; lookups copy
 * the UIDs out, so nothing is shared with a session). */
#ifndef SORA_BACKEND_STORE_UID_CACHE_H
#define SORA_BACKEND_STORE_UID_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define SORA_UID_CACHE_MIN_UIDS 1024
#define SORA_UID_CACHE_MAX_AGE_MS (10 * 60 * 1000)

struct sora_uid_cache;

/* What an entry knows: the mailbox as of one snapshot. */
struct sora_uid_cache_entry {
	int64_t mailbox_id;
	uint32_t uid_validity;
	uint64_t modseq;      /* highest_modseq of that snapshot */
	uint32_t uid_next;    /* uid_next of that snapshot */
	uint32_t *uids;       /* live UIDs, ascending; owned by the holder */
	size_t count;
};

/* NULL when out of memory. max_bytes 0 gives a cache that keeps nothing. */
struct sora_uid_cache *sora_uid_cache_new(size_t max_bytes);
void sora_uid_cache_free(struct sora_uid_cache **cache);

/* Copies the entry for (account_id, name) into *out (out->uids malloc'd)
 * and returns 1; 0 when there is none (or it is too old), -1 when out of
 * memory. now_ms: a monotonic clock. */
int sora_uid_cache_get(struct sora_uid_cache *cache, int64_t account_id, const char *name,
		       uint64_t now_ms, struct sora_uid_cache_entry *out);

/* Stores a copy of *e under (account_id, name), replacing what was there
 * (or drops the key when e has fewer than SORA_UID_CACHE_MIN_UIDS UIDs or
 * does not fit). Best effort: out of memory only means no entry. */
void sora_uid_cache_put(struct sora_uid_cache *cache, int64_t account_id, const char *name,
			uint64_t now_ms, const struct sora_uid_cache_entry *e);

/* Current totals, for tests and metrics. */
void sora_uid_cache_stats(struct sora_uid_cache *cache, size_t *entries_r, size_t *bytes_r);

void sora_uid_cache_entry_free(struct sora_uid_cache_entry *e);

#endif
