/* sora-backend's process-wide state: the database pool and the blob store,
 * created at start-up (after the config loaded, before listening) and
 * shared by every session and background task.
 *
 * Thread safety: sora_backend() may be called from any thread after
 * sora_backend_start() returned; the pool and store are thread-safe. */
#ifndef SORA_BACKEND_BACKEND_H
#define SORA_BACKEND_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

struct sora_config;
struct sora_net;
struct sora_db_pool;
struct sora_blob_store;
struct sora_uploader;
struct sora_janitor;
struct sora_db_listener;
struct sora_uid_cache;

struct sora_backend {
	const struct sora_config *cfg;   /* borrowed from main */
	struct sora_net *net;            /* borrowed */
	struct sora_db_pool *db;         /* owned */
	struct sora_blob_store *blobs;   /* owned */
	struct sora_uploader *uploader;  /* owned */
	struct sora_janitor *janitor;    /* owned */
	struct sora_db_listener *listen; /* owned: LISTEN sora_mailbox, sora_accounts */
	struct sora_uid_cache *uid_cache;  /* owned; NULL if it could not be made */
};

/* Bytes of UIDs the backend keeps for SELECT of large mailboxes
 * (backend/store/uid-cache.h): 64 MiB is 16 million messages' UIDs. */
#define SORA_BACKEND_UID_CACHE_BYTES (64u * 1024 * 1024)

/* This node's name in pending_uploads.instance_id: staged bodies live on
 * this machine's disk, so only this node can upload them. It is the
 * configured top-level `hostname`, which must therefore be unique and
 * stable per backend node. */
const char *sora_backend_instance_id(void);

/* Wakes the uploader after a delivery committed a pending_uploads row (so
 * bodies reach S3 right away instead of at the next poll). Any thread. */
void sora_backend_kick_uploader(void);

/* The running backend, or NULL before start. */
struct sora_backend *sora_backend(void);

/* sora_role.start: opens the pool, applies pending migrations (under the
 * migration advisory lock, so several backends may start at once), opens
 * the blob store. check_only validates without touching the database.
 * Takes "char *err, size_t errsize" because that is the role interface of
 * common/net/serve.h: a start-up failure is only a message for stderr. */
int sora_backend_start(const struct sora_config *cfg, struct sora_net *net, bool check_only,
		       char *err, size_t errsize);
void sora_backend_stop(void);

#endif
