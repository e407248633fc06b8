#include "backend/backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/blob/blob-store.h"
#include "backend/imap/imap.h"
#include "backend/lmtp/lmtp-rcpt-cache.h"
#include "backend/store/deliver.h"
#include "backend/store/janitor.h"
#include "backend/store/uid-cache.h"
#include "backend/store/migrate.h"
#include "backend/store/uploader.h"
#include "common/config/config.h"
#include "common/core/error.h"
#include "common/core/log.h"
#include "common/db/db.h"
#include "common/db/listen.h"
#include "common/metrics/metrics.h"

static struct sora_backend backend;
static bool backend_started;

const char *sora_backend_instance_id(void)
{
	return backend.cfg != NULL ? backend.cfg->hostname : "localhost";
}

void sora_backend_kick_uploader(void)
{
	/* A direct store (fs) queues no uploads: nothing to wake. */
	if (backend_started && !sora_blob_store_direct(backend.blobs))
		sora_uploader_kick(backend.uploader);
}

struct sora_backend *sora_backend(void)
{
	return backend_started ? &backend : NULL;
}

/* ---- change notifications ----
 *
 * The counter triggers NOTIFY 'sora_mailbox' with the mailbox id for every
 * change. The IMAP server fans them out to the sessions that have the
 * mailbox selected (backend/imap/imap-notify.c). Changes to accounts and
 * credentials NOTIFY 'sora_accounts', which empties LMTP's recipient cache
 * (backend/lmtp/lmtp-rcpt-cache.h). Both are counted, so operators can see
 * the LISTEN connection work. */

static struct sora_metric_series *m_notifications, *m_account_notifications, *m_resyncs;

static void backend_notify(const char *channel, const char *payload, void *ctx)
{
	char *end;
	long long id;

	/* Accounts or credentials changed (migration 0011's triggers): the
	 * recipients LMTP keeps may be out of date. */
	if (strcmp(channel, "sora_accounts") == 0) {
		sora_metric_inc(m_account_notifications);
		sora_lmtp_rcpt_cache_flush();
		return;
	}
	sora_metric_inc(m_notifications);
	if (payload == NULL)
		return;
	errno = 0;
	id = strtoll(payload, &end, 10);
	if (errno == 0 && end != payload && *end == '\0' && id > 0)
		sora_imap_mailbox_changed((int64_t)id);
}

static void backend_missed(void *ctx)
{
	/* Notifications were lost while the connection was down: every
	 * session with a mailbox selected looks again. */
	sora_metric_inc(m_resyncs);
	sora_imap_resync_all();
	sora_lmtp_rcpt_cache_flush();
}

static int backend_listen_start(const struct sora_config *cfg, struct sora_error *err)
{
	static const char *const channels[] = { "sora_mailbox", "sora_accounts" };
	struct sora_db_listen_params p = {
		.db = &cfg->database,
		.application_name = "sora-backend-listen",
		.channels = channels,
		.nchannels = 2,
		.notify = backend_notify,
		.missed = backend_missed,
	};
	struct sora_metric *n = sora_metric_counter(
		"db_notifications_total", "Change notifications received (LISTEN).", "channel");

	m_notifications = sora_metric_with(n, "sora_mailbox");
	m_account_notifications = sora_metric_with(n, "sora_accounts");
	m_resyncs = sora_metric_with(
		sora_metric_counter("db_listen_resyncs_total",
				    "LISTEN connection re-established after a loss; notifications "
				    "in between were missed and sessions resynchronised.", NULL));
	if (sora_db_listener_start(&p, &backend.listen, err) < 0) {
		sora_error_prefix(err, "mailbox notifications: ");
		return -1;
	}
	return 0;
}

static int backend_migrate(struct sora_error *err)
{
	struct sora_db_conn *conn = NULL;
	int rc;

	/* Waits up to 30 s for a connection: at boot PostgreSQL may still be
	 * starting; after that, failing loudly is better than hanging. */
	rc = sora_db_acquire(backend.db, SORA_DB_PRIMARY, 30000, &conn, err);
	if (rc != 0)
		return -1;
	rc = sora_store_migrate_up(sora_db_conn_pg(conn), err);
	sora_db_release(&conn);
	if (rc < 0) {
		sora_error_prefix(err, "database migrations");
		return -1;
	}
	if (rc > 0)
		sora_info(NULL, "applied %d database migration(s)", rc);
	return 0;
}

/* DESIGN.md §6: every relative path resolves against one base (the
 * config loader did that, common/config/config.h); say where mail goes. */
static void backend_log_paths(const struct sora_config *cfg, struct sora_blob_store *blobs)
{
	bool fs = strcmp(cfg->storage.backend, "fs") == 0;

	sora_info(NULL, "paths: base %s (%s); staging %s; blobs %s; cache %s", cfg->base_dir,
		  cfg->base_dir_is_cwd ? "working directory" : "base_dir", cfg->uploader.path,
		  fs ? cfg->storage.fs_path : "s3",
		  sora_blob_store_cache(blobs) != NULL ? cfg->local_cache.path
		  : fs ? "none (the fs store is local)" : "off");
}

/* Opens the pool's min_conns connections before the servers listen and
 * readies each for deliveries (sora_store_warm_conn), so that the first
 * deliveries after a start do not pay for connecting, preparing and the
 * PostgreSQL backend's cold catalog caches. A failure here is only logged:
 * the connections are then made, cold, when needed. */
static void backend_warm_pool(const struct sora_config *cfg)
{
	int n = cfg->database.min_conns;
	struct sora_db_conn **conns;
	struct sora_error err;
	int warmed = 0;

	if (n <= 0)
		return;
	conns = calloc((size_t)n, sizeof(*conns));
	if (conns == NULL)
		return;
	/* Held all at once, so that the pool opens n distinct connections. */
	for (int i = 0; i < n; i++) {
		if (sora_db_acquire(backend.db, SORA_DB_PRIMARY, 5000, &conns[i], &err) != 0 ||
		    sora_store_warm_conn(conns[i], &err) != 0) {
			sora_warn(NULL, "database connection warm-up: %s", err.msg);
			if (conns[i] != NULL)
				sora_db_release(&conns[i]);
			break;
		}
		warmed++;
	}
	for (int i = 0; i < n; i++) {
		if (conns[i] != NULL)
			sora_db_release(&conns[i]);
	}
	free(conns);
	sora_info(NULL, "database: %d connection(s) ready for deliveries", warmed);
}

int sora_backend_start(const struct sora_config *cfg, struct sora_net *net, bool check_only,
		       char *errbuf, size_t errsize)
{
	struct sora_error err;

	memset(&backend, 0, sizeof(backend));
	backend.cfg = cfg;
	backend.net = net;
	if (check_only)
		return 0;
	if (sora_db_pool_create(&cfg->database, "sora-backend", &backend.db, &err) != 0)
		goto report;
	if (backend_migrate(&err) < 0)
		goto fail;
	if (sora_blob_store_open(cfg, NULL, &backend.blobs, &err) != 0)
		goto fail;
	backend_log_paths(cfg, backend.blobs);
	if (sora_uploader_start(cfg, backend.db, backend.blobs, sora_backend_instance_id(),
				&backend.uploader, &err) < 0)
		goto fail;
	if (sora_janitor_start(backend.db, backend.blobs, &backend.janitor, &err) < 0) {
		sora_uploader_stop(&backend.uploader);
		goto fail;
	}
	if (backend_listen_start(cfg, &err) < 0) {
		sora_janitor_stop(&backend.janitor);
		sora_uploader_stop(&backend.uploader);
		goto fail;
	}
	backend_warm_pool(cfg);
	backend.uid_cache = sora_uid_cache_new(SORA_BACKEND_UID_CACHE_BYTES);
	backend_started = true;
	sora_info(NULL, "database %s ready (schema up to date), blob store: %s", cfg->database.dbname,
		  cfg->storage.backend);
	return 0;
fail:
	sora_blob_store_free(&backend.blobs);
	sora_db_pool_destroy(&backend.db);
report:
	/* The role interface (common/net/serve.h) reports start-up failures
	 * as text for stderr. */
	snprintf(errbuf, errsize, "%s", err.msg);
	return -1;
}

void sora_backend_stop(void)
{
	if (!backend_started)
		return;
	backend_started = false;
	sora_db_listener_stop(&backend.listen);
	sora_janitor_stop(&backend.janitor);
	sora_uploader_stop(&backend.uploader);
	sora_blob_store_free(&backend.blobs);
	sora_db_pool_destroy(&backend.db);
	sora_uid_cache_free(&backend.uid_cache);
	sora_lmtp_rcpt_cache_clear();
}
