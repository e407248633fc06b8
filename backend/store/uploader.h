/* The uploader: moves staged bodies to the blob driver (S3) in the
 * background.
 *
 * A delivery stages the body (fsynced) and, in the same transaction as the
 * message row, records (account_id, content_hash) in pending_uploads with
 * this node's instance id. Uploader threads claim due rows with a lease
 * (next_attempt_at moved forward, FOR UPDATE SKIP LOCKED, so several
 * threads never take the same row), up to 16 at a time, upload them one
 * by one, and delete the finished rows in one statement; a kick (a new
 * row) is followed by a 10 ms pause so that bursts of deliveries are
 * claimed together. When the store turns out to be unreachable, or the
 * uploader stops, the untried rest of a batch is handed back at once,
 * without counting an attempt. Failures
 * are retried with exponential backoff and jitter ([uploader]
 * retry_interval, max_attempts; 0 = forever). A crash leaves rows behind;
 * at start-up this node's leases are released, so every staged body is
 * uploaded after a restart. Uploading the same content twice writes the
 * same key, so a crash between upload and row deletion cannot duplicate an
 * object.
 *
 * Values read back from pending_uploads go through sora_db_get_i64(): a
 * row that cannot be read is logged as an error and skipped, never
 * guessed at.
 *
 * Errors: start returns 0 or -1 with a struct sora_error (common/core/
 * error.h). Upload failures are classified by the blob store: TEMPORARY
 * ones hand the rest of the batch back and count as "retry", CORRUPT ones
 * are given up at once (the staged body is kept for the operator), all
 * others are retried with backoff until max_attempts.
 *
 * Thread safety: start/stop from the main thread; kick from any thread. */
#ifndef SORA_STORE_UPLOADER_H
#define SORA_STORE_UPLOADER_H

#include <stddef.h>

#include "common/core/error.h"

struct sora_config;
struct sora_db_pool;
struct sora_blob_store;
struct sora_uploader;

int sora_uploader_start(const struct sora_config *cfg, struct sora_db_pool *db,
			struct sora_blob_store *blobs, const char *instance_id,
			struct sora_uploader **up_r, struct sora_error *err);
void sora_uploader_kick(struct sora_uploader *up);
/* Lets running uploads finish, then joins the threads. NULL-safe. */
void sora_uploader_stop(struct sora_uploader **up);

#endif
