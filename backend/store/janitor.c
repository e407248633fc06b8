/* Periodic housekeeping of a backend node: see janitor.h. */
#include "backend/store/janitor.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/blob/blob-hash.h"
#include "backend/blob/blob-store.h"
#include "common/core/log.h"
#include "common/db/db.h"

/* Rows per pruning statement. */
#define PRUNE_BATCH 5000
/* Staged bodies checked against the database per query. */
#define ORPHAN_BATCH 256

struct sora_janitor {
	struct sora_db_pool *db;
	struct sora_blob_store *blobs;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;
};

/* ---- message_deliveries ---- */

static int prune_delivery_keys(struct sora_db_conn *conn, int64_t *removed_r,
			       struct sora_error *err)
{
	/* ctid: the rows found by the created_at index, deleted without a
	 * second lookup. */
	static const char sql[] =
		"DELETE FROM message_deliveries WHERE ctid = ANY (ARRAY ("
		"SELECT ctid FROM message_deliveries "
		"WHERE created_at < now() - make_interval(days => $1::int) LIMIT $2::int))";
	char days[16], limit[16], sqlstate[6];
	const char *params[2] = { days, limit };

	snprintf(days, sizeof(days), "%d", SORA_JANITOR_DELIVERY_KEY_DAYS);
	snprintf(limit, sizeof(limit), "%d", PRUNE_BATCH);
	*removed_r = 0;
	for (;;) {
		PGresult *res = NULL;
		uint64_t n = 0;

		if (sora_db_exec_params(conn, SORA_DB_CLASS_WRITE, sql, 2, params, NULL, NULL, 0,
					&res, sqlstate, err) != 0)
			return -1;
		sora_str_to_u64(sora_str_c(PQcmdTuples(res)), INT64_MAX, &n);
		PQclear(res);
		*removed_r += (int64_t)n;
		if (n < PRUNE_BATCH)
			return 0;
	}
}

/* ---- orphaned staged bodies ---- */

struct orphan_scan {
	struct sora_db_conn *conn;
	struct sora_blob_store *blobs;
	int64_t accounts[ORPHAN_BATCH];
	char hashes[ORPHAN_BATCH][SORA_BLOB_HASH_HEX_SIZE];
	int n;
	int64_t removed;
	bool failed;
	struct sora_error *err;
};

/* Asks the database which of the collected bodies no row names, and
 * removes those. */
static int orphan_flush(struct orphan_scan *o)
{
	static const char sql[] =
		"SELECT u.a, u.h FROM unnest($1::bigint[], $2::text[]) AS u (a, h) "
		"WHERE NOT EXISTS (SELECT 1 FROM pending_uploads p "
		"WHERE p.account_id = u.a AND p.content_hash = u.h)";
	/* "{" + n * ("<id>," or "<64 hex>,") + "}" */
	char accounts[ORPHAN_BATCH * 21 + 3], hashes[ORPHAN_BATCH * 65 + 3], sqlstate[6];
	const char *params[2] = { accounts, hashes };
	size_t al = 0, hl = 0;
	PGresult *res = NULL;

	if (o->n == 0)
		return 0;
	accounts[al++] = '{';
	hashes[hl++] = '{';
	for (int i = 0; i < o->n; i++) {
		al += (size_t)snprintf(accounts + al, sizeof(accounts) - al, "%s%" PRId64,
				       i > 0 ? "," : "", o->accounts[i]);
		hl += (size_t)snprintf(hashes + hl, sizeof(hashes) - hl, "%s%s", i > 0 ? "," : "",
				       o->hashes[i]);
	}
	snprintf(accounts + al, sizeof(accounts) - al, "}");
	snprintf(hashes + hl, sizeof(hashes) - hl, "}");
	o->n = 0;
	if (sora_db_exec_params(o->conn, SORA_DB_CLASS_DEFAULT, sql, 2, params, NULL, NULL, 0, &res,
				sqlstate, o->err) != 0) {
		o->failed = true;
		return -1;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		struct sora_error berr;
		int64_t account = 0;
		const char *hash = PQgetvalue(res, i, 1);
		int rc;

		/* Echoed back from our own parameters: a value that does not
		 * read back is a bug, and that body is left alone. */
		if (sora_db_get_i64(res, i, 0, &account, &berr) < 0) {
			sora_warn(NULL, "janitor: orphan check: %s", berr.msg);
			continue;
		}
		rc = sora_blob_unstage_orphan(o->blobs, account, hash, SORA_JANITOR_ORPHAN_AGE,
					      &berr);
		if (rc == 0) {
			o->removed++;
			sora_info(NULL, "janitor: removed staged body %s of account %" PRId64
				  ": no delivery refers to it", hash, account);
		} else if (rc < 0) {
			sora_warn(NULL, "janitor: %s", berr.msg);
		}
	}
	PQclear(res);
	return 0;
}

static int orphan_visit(void *ctx, int64_t account_id, const char *hash)
{
	struct orphan_scan *o = ctx;

	o->accounts[o->n] = account_id;
	sora_strlcpy(o->hashes[o->n], hash, sizeof(o->hashes[o->n]));
	if (++o->n == ORPHAN_BATCH)
		return orphan_flush(o);
	return 0;
}

int sora_janitor_pass(struct sora_db_pool *db, struct sora_blob_store *blobs,
		      int64_t *delivery_keys_r, int64_t *orphans_r, struct sora_error *err)
{
	struct sora_db_conn *conn = NULL;
	struct orphan_scan *o;
	int ret = -1;

	*delivery_keys_r = 0;
	*orphans_r = 0;
	o = calloc(1, sizeof(*o));
	if (o == NULL)
		return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
	if (sora_db_acquire(db, SORA_DB_PRIMARY, 10000, &conn, err) != 0)
		goto out;
	if (prune_delivery_keys(conn, delivery_keys_r, err) < 0)
		goto out;
	o->conn = conn;
	o->blobs = blobs;
	o->err = err;
	if (sora_blob_staged_walk(blobs, SORA_JANITOR_ORPHAN_AGE, orphan_visit, o) < 0) {
		sora_warn(NULL, "janitor: cannot read the staging directory: %s", strerror(errno));
	}
	if (!o->failed)
		orphan_flush(o);
	*orphans_r = o->removed;
	if (o->failed)
		goto out;
	ret = 0;
out:
	sora_db_release(&conn);
	free(o);
	return ret;
}

/* ---- the thread ---- */

static void *janitor_thread(void *arg)
{
	struct sora_janitor *j = arg;

	for (;;) {
		int64_t keys = 0, orphans = 0;
		struct timespec ts;
		struct sora_error err;

		if (sora_janitor_pass(j->db, j->blobs, &keys, &orphans, &err) < 0)
			sora_warn(NULL, "janitor: pass incomplete, next in %d s: %s",
				  SORA_JANITOR_INTERVAL, err.msg);
		else if (keys > 0 || orphans > 0)
			sora_info(NULL, "janitor: removed %" PRId64 " expired delivery key(s) and %"
				  PRId64 " orphaned staged bod%s", keys, orphans,
				  orphans == 1 ? "y" : "ies");
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += SORA_JANITOR_INTERVAL;
		pthread_mutex_lock(&j->lock);
		while (!j->stopping) {
			if (pthread_cond_timedwait(&j->cond, &j->lock, &ts) == ETIMEDOUT)
				break;
		}
		bool stop = j->stopping;
		pthread_mutex_unlock(&j->lock);
		if (stop)
			break;
	}
	return NULL;
}

int sora_janitor_start(struct sora_db_pool *db, struct sora_blob_store *blobs,
		       struct sora_janitor **j_r, struct sora_error *err)
{
	struct sora_janitor *j = calloc(1, sizeof(*j));

	*j_r = NULL;
	if (j == NULL)
		return sora_error_set(err, SORA_ERR_TEMPORARY, "janitor: out of memory");
	j->db = db;
	j->blobs = blobs;
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	if (pthread_create(&j->thread, NULL, janitor_thread, j) != 0) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "janitor: cannot start a thread");
		pthread_mutex_destroy(&j->lock);
		pthread_cond_destroy(&j->cond);
		free(j);
		return -1;
	}
	*j_r = j;
	return 0;
}

void sora_janitor_stop(struct sora_janitor **jp)
{
	struct sora_janitor *j = *jp;

	if (j == NULL)
		return;
	*jp = NULL;
	pthread_mutex_lock(&j->lock);
	j->stopping = true;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
	pthread_join(j->thread, NULL);
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->cond);
	free(j);
}
