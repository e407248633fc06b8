/* The blob store: message bodies by (account id, content hash), with a
 * durable staging area, upload to a driver (s3 or fs) with optional
 * client-side encryption, and a local plaintext cache (DESIGN.md §6).
 *
 * Life of a body:
 *   1. sora_blob_stage_*() writes it into the staging directory
 *      ([uploader] path) as <staging>/<account id>/<hash>, hashing it while
 *      it is written, fsyncing the file and the directory. Only then may
 *      the caller commit the message's metadata and acknowledge delivery.
 *      A body already staged under the same hash is not written again.
 *   2. sora_blob_upload_staged() (run by the uploader, which owns the
 *      pending_uploads bookkeeping in the database) sends it to the driver
 *      under its object key "<hash[0..1]>/<account id>/<hash>", encrypted
 *      when [s3] encrypt is on, checking on the way that the staged file
 *      still has the content its name promises. Then the file moves into
 *      the local cache, or is deleted if larger than max_object_size.
 *   3. sora_blob_read() serves a body or a byte range of it from the
 *      local cache, else from staging (not uploaded yet), else from the
 *      driver, decrypting as needed; bodies small enough are put into the
 *      cache on the way. Staging is checked before the driver (DESIGN.md
 *      lists S3 first) because that order has no race with a concurrent
 *      upload: a body leaves staging only after it is stored, so a reader
 *      that misses it in staging finds it in the store. It also spares a
 *      network round trip for fresh mail.
 *
 * The fs store without encryption is "direct" (DESIGN.md §6): a body is
 * written straight into the store, <fs_path>/.sora-tmp -> fsync ->
 * rename to <fs_path>/<key> -> fsync of the directory, so staging it stores
 * it, once, with one file fsync and one rename. Nothing is queued for the
 * uploader, nothing goes into staging, and there is no local cache (the
 * store is local already). sora_blob_store_direct() tells callers.
 *
 * Encryption ([s3] encrypt) applies to whatever driver the store uses. A
 * stored object that lacks the encryption header is read as plaintext
 * (objects written before encryption was turned on); an encrypted one
 * needs its key among encryption_key and old_encryption_keys, and anything
 * wrong with it is an error naming the object, never garbage. Staged and
 * cached bodies are plaintext on local disk.
 *
 * Bounded memory: every path streams in 64 KiB pieces; nothing holds a
 * whole body in memory.
 *
 * Blocking: all functions do file I/O, fsync and (through the s3 driver)
 * network requests with retries. Call them from worker threads only,
 * never on an event loop.
 *
 * Thread safety: a store may be used by any number of threads at once. A
 * struct sora_blob_writer belongs to one thread. */
#ifndef SORA_BLOB_STORE_H
#define SORA_BLOB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/blob/blob-cache.h"
#include "backend/blob/blob-crypt.h"
#include "backend/blob/blob-driver.h"
#include "backend/blob/blob-hash.h"
#include "backend/blob/blob-s3.h"
#include "common/config/config.h"

struct sora_blob_store;

/* What staging a body produced. */
struct sora_blob_ref {
	char hash[SORA_BLOB_HASH_HEX_SIZE];
	uint64_t size;
	bool existed;     /* the same body was already staged (not rewritten) */
};

struct sora_blob_store_params {
	/* Owned by the store once sora_blob_store_new() succeeds. */
	struct sora_blob_driver *driver;
	/* Owned by the store once sora_blob_store_new() succeeds; NULL for no
	 * decryption at all. */
	struct sora_blob_keyring *keyring;
	/* Encrypt uploads (needs a keyring with a current key). */
	bool encrypt;
	const char *staging_path;       /* required; copied */
	/* The fs driver's root when bodies are to be written straight into
	 * the store (fs, no encryption); NULL otherwise. Copied. */
	const char *direct_root;
	const char *cache_path;         /* NULL, "" or capacity 0: no cache */
	uint64_t cache_capacity;
	uint64_t cache_max_object_size;
};

/* Builds a store from parts. On failure nothing is taken over: the caller
 * still owns driver and keyring. Returns 0, or -1 with err set. */
int sora_blob_store_new(struct sora_blob_store_params *params,
			struct sora_blob_store **store_r, struct sora_error *err);

/* Builds a store from the configuration: [storage] backend/fs_path, [s3]
 * (including encrypt, encryption_key, old_encryption_keys), [uploader]
 * path and [local_cache]. s3opts may be NULL. Returns 0, or -1 with err
 * set. */
int sora_blob_store_open(const struct sora_config *cfg,
			 const struct sora_blob_s3_options *s3opts,
			 struct sora_blob_store **store_r, struct sora_error *err);

/* Frees the store, its driver, keyring and cache index; clears the
 * caller's pointer. Only after every thread stopped using it. */
void sora_blob_store_free(struct sora_blob_store **store);

/* Borrowed views, valid as long as the store. */
struct sora_blob_driver *sora_blob_store_driver(struct sora_blob_store *store);
struct sora_blob_cache *sora_blob_store_cache(struct sora_blob_store *store);
bool sora_blob_store_encrypts(const struct sora_blob_store *store);
/* True when staging a body stores it (the fs store without encryption):
 * no pending_uploads row is needed and nothing is uploaded. */
bool sora_blob_store_direct(const struct sora_blob_store *store);

/* ---- staging ---- */

/* Incremental staging, for bodies that arrive in pieces (LMTP DATA, an
 * IMAP APPEND literal). max_size 0 means unlimited; a write past it fails
 * with SORA_ERR_LIMIT ("body exceeds N bytes"). */
struct sora_blob_writer;
int sora_blob_writer_new(struct sora_blob_store *store, int64_t account_id,
			 uint64_t max_size, struct sora_blob_writer **w_r,
			 struct sora_error *err);
int sora_blob_writer_write(struct sora_blob_writer *w, const void *data, size_t len,
			   struct sora_error *err);
/* Makes the body durable in staging (in the store itself for a direct
 * store) and fills *ref_r. Frees the writer
 * and clears the caller's pointer, whatever the outcome. */
int sora_blob_writer_commit(struct sora_blob_writer **w, struct sora_blob_ref *ref_r,
			    struct sora_error *err);
/* Discards an unfinished body. NULL-safe; clears the caller's pointer. */
void sora_blob_writer_abort(struct sora_blob_writer **w);

/* ---- shared bodies: holds ----
 *
 * Bodies are content-addressed per account, so two writers of identical
 * bytes into one account (an IMAP APPEND and an LMTP delivery, two
 * APPENDs, two processes on one staging area) share one file. The race
 * this guards against: writer A stages a new body; writer B stages the
 * same bytes, finds A's file in place (ref.existed) and commits a row
 * naming it; A's commit fails and A takes "its" body back, and B's
 * committed row has no body. Whether a body was written or found says
 * nothing about whether someone else relies on it now.
 *
 * A hold is taken from staging until the caller knows the fate of its
 * row, and is a shared flock(2) on the body's inode (so it works between
 * threads, each with its own descriptor, and between processes):
 *   - sora_blob_writer_commit_held() makes the body durable and returns
 *     a hold on it. A new body is locked before it is linked into place,
 *     and linked without replacing anything; a body found in place is
 *     locked, then checked to still be in place (a discard may have
 *     removed it while the lock was awaited: then it is written anew).
 *     Each hold stamps the file's mtime with a value unique to it.
 *   - sora_blob_hold_release(): the row committed, or its outcome is
 *     unknown (a broken connection): the body stays. The mtime is stamped
 *     again, so any discard by an older hold sees that it was used.
 *   - sora_blob_hold_discard(): the row certainly did not commit. The body
 *     is removed only if all of these hold: the shared lock converts to
 *     an exclusive one without waiting (no other hold is on it; the other
 *     hold decides when it ends), the mtime is still this hold's stamp (no
 *     hold was taken or released since), and cb, asked while the lock is
 *     held, says that no row refers to the body (a hold that committed and
 *     ended before this one began leaves nothing but its row). Otherwise
 *     it stays: the orphan sweep removes unreferenced staged bodies later
 *     (sora_blob_unstage_orphan, which also leaves a held body alone); in
 *     a direct store an unreferenced body that stays is not swept.
 * File systems that keep only whole seconds in mtime weaken the stamp
 * check; the database check still covers every committed row, so only an
 * outcome-unknown commit landing after a discard's check remains open
 * there.
 *
 * Cost: one open descriptor per hold; a caller holding many at once (a
 * MULTIAPPEND) must bound their number. */
struct sora_blob_hold;

/* Whether a body is referenced: 1 when the caller is certain nothing
 * (no message row, no pending upload) refers to (account_id, hash), 0 when
 * something does, -1 when it cannot tell (the body then stays). */
typedef int sora_blob_unreferenced_cb(void *ctx, int64_t account_id, const char *hash);

/* sora_blob_writer_commit() that keeps a hold on the body: *hold_r is set
 * on success (owned by the caller, who ends it with exactly one of
 * sora_blob_hold_release or sora_blob_hold_discard, from any thread),
 * NULL on failure. Frees the writer and clears the caller's pointer
 * whatever the outcome. */
int sora_blob_writer_commit_held(struct sora_blob_writer **w, struct sora_blob_ref *ref_r,
				 struct sora_blob_hold **hold_r, struct sora_error *err);
/* Ends a hold, keeping the body. NULL-safe; clears the caller's pointer. */
void sora_blob_hold_release(struct sora_blob_hold **hold);
/* Ends a hold whose row did not commit, removing the body when that is
 * safe (see above). Always frees the hold and clears the pointer. Returns
 * 1 when the body was removed, 0 when it stays, -1 with err set when
 * removing it failed. */
int sora_blob_hold_discard(struct sora_blob_hold **hold, sora_blob_unreferenced_cb *cb,
			   void *ctx, struct sora_error *err);

/* Stages a body held in memory. */
int sora_blob_stage_buf(struct sora_blob_store *store, int64_t account_id,
			const void *data, size_t len, struct sora_blob_ref *ref_r,
			struct sora_error *err);
/* Stages everything readable from fd (until EOF); fd is borrowed. */
int sora_blob_stage_fd(struct sora_blob_store *store, int64_t account_id, int fd,
		       uint64_t max_size, struct sora_blob_ref *ref_r,
		       struct sora_error *err);

/* True if the body is in staging. */
bool sora_blob_is_staged(struct sora_blob_store *store, int64_t account_id,
			 const char *hash);
/* Removes a staged body (for instance when the metadata commit failed, or
 * the body turned out to be stored already). Missing is fine. */
int sora_blob_unstage(struct sora_blob_store *store, int64_t account_id,
		      const char *hash, struct sora_error *err);

/* Removes a body from staging, or from a direct store, unconditionally.
 * Missing is fine. Not safe for a body that another writer may share (see
 * "Shared bodies" above): use a hold and sora_blob_hold_discard instead. */
int sora_blob_discard(struct sora_blob_store *store, int64_t account_id,
		      const char *hash, struct sora_error *err);

/* Staging housekeeping. A delivery whose connection to the database broke
 * during the commit cannot know whether its row was written, so it leaves
 * the staged body in place; if the row was not written, nothing refers to
 * the file. The janitor finds such files with the walk and removes them
 * with sora_blob_unstage_orphan once the database confirms that no
 * pending_uploads row names them. */
typedef int sora_blob_staged_cb(void *ctx, int64_t account_id, const char *hash);
/* Calls cb for each staged body whose file was last written or reused
 * more than min_age seconds ago (cb may unstage it). cb returning -1 stops
 * the walk. Returns how many bodies cb saw, or -1 if staging cannot be
 * read. */
int sora_blob_staged_walk(struct sora_blob_store *store, int64_t min_age,
			  sora_blob_staged_cb *cb, void *ctx);
/* Removes a staged body unless a hold is on it or it was written or
 * reused within the last min_age seconds. Safe against a concurrent
 * delivery of the same body (which holds it, see "Shared bodies"). Returns 0 when removed
 * (or already gone), 1 when it stays because it is in use, or -1 with err
 * set. The caller must know that no row refers to the body. */
int sora_blob_unstage_orphan(struct sora_blob_store *store, int64_t account_id,
			     const char *hash, int64_t min_age, struct sora_error *err);

/* Uploads a staged body to the driver (encrypting if configured), then
 * moves it into the cache or deletes it. Returns 0, or -1 with err set:
 * SORA_ERR_NOT_FOUND if it is not staged; SORA_ERR_CORRUPT if the staged
 * file no longer matches its hash (it is left in place for inspection);
 * SORA_ERR_TEMPORARY if the store kept failing with retryable errors (try
 * again later); another class otherwise. */
int sora_blob_upload_staged(struct sora_blob_store *store, int64_t account_id,
			    const char *hash, struct sora_error *err);

/* ---- reading ---- */

/* Streams plaintext bytes [offset, offset+length) (clipped at the end;
 * SORA_BLOB_TO_END for all) of a body to cb. Returns 0, or -1 with err
 * set: SORA_ERR_NOT_FOUND if no tier has it, SORA_ERR_CORRUPT for a body
 * that fails decryption or (on whole reads) its hash check,
 * SORA_ERR_ABORTED if cb stopped, or another class. On CORRUPT some bytes may
 * already have reached cb: the caller must fail the response, not finish
 * it. */
int sora_blob_read(struct sora_blob_store *store, int64_t account_id, const char *hash,
		   uint64_t offset, uint64_t length, sora_blob_write_cb *cb, void *cb_ctx,
		   struct sora_error *err);
/* The same, writing into fd (borrowed). */
int sora_blob_read_to_fd(struct sora_blob_store *store, int64_t account_id,
			 const char *hash, uint64_t offset, uint64_t length, int fd,
			 struct sora_error *err);

/* Deletes a body everywhere: driver, cache and staging. */
int sora_blob_delete(struct sora_blob_store *store, int64_t account_id, const char *hash,
		     struct sora_error *err);

#endif
