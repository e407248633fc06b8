/* The janitor: a backend node's periodic housekeeping, one thread.
 *
 * Each pass (at start-up, then every SORA_JANITOR_INTERVAL seconds):
 *   - deletes message_deliveries rows older than SORA_JANITOR_DELIVERY_KEY_DAYS.
 *     They exist so that an MTA's retry of a delivery that was in fact
 *     committed is not stored twice; no MTA retries that long (Postfix gives
 *     up after 5 days by default), and without pruning the table grows by a
 *     row per delivered copy forever. Deleted in batches, so no statement
 *     holds many row locks or runs long.
 *   - removes staged bodies that nothing refers to: a delivery whose
 *     database connection broke during the commit keeps its staged body
 *     (the row may have been written); when it was not, the file is an
 *     orphan. A staged file untouched for SORA_JANITOR_ORPHAN_AGE seconds
 *     with no pending_uploads row is removed (sora_blob_unstage_orphan,
 *     which is safe against a delivery reusing it at that moment).
 *
 * Several nodes may run their janitors at once: the pruning is idempotent,
 * and staging is per node.
 *
 * Thread safety: start/stop from the main thread. */
#ifndef SORA_STORE_JANITOR_H
#define SORA_STORE_JANITOR_H

#include <stddef.h>
#include <stdint.h>

#include "common/core/error.h"

#define SORA_JANITOR_INTERVAL (10 * 60)
#define SORA_JANITOR_DELIVERY_KEY_DAYS 7
#define SORA_JANITOR_ORPHAN_AGE (60 * 60)

struct sora_db_pool;
struct sora_blob_store;
struct sora_janitor;

int sora_janitor_start(struct sora_db_pool *db, struct sora_blob_store *blobs,
		       struct sora_janitor **j_r, struct sora_error *err);
/* Stops after the current step; NULL-safe, clears the pointer. */
void sora_janitor_stop(struct sora_janitor **j);

/* One pass, on the calling thread (tests; the thread calls it too). Returns
 * 0, or -1 when the database was unavailable (err set). The counts are of
 * what this pass removed. */
int sora_janitor_pass(struct sora_db_pool *db, struct sora_blob_store *blobs,
		      int64_t *delivery_keys_r, int64_t *orphans_r, struct sora_error *err);

#endif
