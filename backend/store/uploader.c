#include "backend/store/uploader.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "backend/blob/blob-driver.h"
#include "backend/blob/blob-hash.h"
#include "backend/blob/blob-store.h"
#include "common/config/config.h"
#include "common/core/log.h"
#include "common/db/db.h"
#include "common/metrics/metrics.h"

/* A claimed row is ours for this long; a crashed node's leases are
 * released at its next start, another live thread never steals them. */
#define LEASE_SECONDS 600
/* Idle poll, in case a kick was missed (or rows became due). */
#define POLL_MS 2000
/* Backoff never waits longer than this between attempts. */
#define MAX_BACKOFF_MS (60LL * 60 * 1000)
#define DB_RETRY_MS 5000
/* Rows one thread claims at once: one claim and one delete statement (and
 * two commits) cover up to this many bodies when the queue is long. */
#define CLAIM_BATCH 16
/* How long a kicked thread lets new rows gather before claiming. */
#define GATHER_MS 10

struct sora_uploader {
	const struct sora_config *cfg;
	struct sora_db_pool *db;
	struct sora_blob_store *blobs;
	char instance_id[256];

	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;
	unsigned kicks;
	pthread_t *threads;
	int nthreads;

	struct sora_metric_series *m_ok, *m_retry, *m_failed;
};

/* Parameterized statement with text results; *res_r is the caller's to
 * PQclear() on success. */
static int uploader_query(struct sora_db_conn *conn, const char *sql, int n,
			  const char *const *params, PGresult **res_r, struct sora_error *err)
{
	char sqlstate[6];

	*res_r = NULL;
	return sora_db_exec_params(conn, SORA_DB_CLASS_WRITE, sql, n, params, NULL, NULL, 0, res_r,
				   sqlstate, err);
}

struct claim {
	char id[32];
	int64_t account_id;
	char hash[SORA_BLOB_HASH_HEX_SIZE];
	int attempts;
};

/* Waits until kicked (new rows), stopping, or ms passed. A kick is
 * followed by a short pause so rows from deliveries arriving close together
 * are claimed, and their deletes committed, as one batch. */
static void uploader_wait(struct sora_uploader *up, int64_t ms, unsigned seen_kicks)
{
	struct timespec ts;
	bool kicked = false;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&up->lock);
	while (!up->stopping && up->kicks == seen_kicks) {
		if (pthread_cond_timedwait(&up->cond, &up->lock, &ts) == ETIMEDOUT)
			break;
	}
	kicked = !up->stopping && up->kicks != seen_kicks;
	pthread_mutex_unlock(&up->lock);
	if (kicked) {
		struct timespec gather = { 0, GATHER_MS * 1000000L };

		nanosleep(&gather, NULL);
	}
}

static bool uploader_stopping(struct sora_uploader *up, unsigned *kicks_r)
{
	bool r;

	pthread_mutex_lock(&up->lock);
	r = up->stopping;
	if (kicks_r != NULL)
		*kicks_r = up->kicks;
	pthread_mutex_unlock(&up->lock);
	return r;
}

/* Claims up to CLAIM_BATCH due rows in one statement (one commit for the
 * lot). Returns how many were claimed (0: none due), or -1 on a database
 * error (err set). A row whose columns cannot be read is logged and left
 * out: its lease runs out and the error shows again, without holding up
 * the rest of the queue. */
static int claim_batch(struct sora_uploader *up, struct sora_db_conn *conn,
		       struct claim *c, struct sora_error *err)
{
	static const char sql[] =
		"UPDATE pending_uploads SET next_attempt_at = now() + make_interval(secs => $2::int), "
		"attempts = attempts + 1 "
		"WHERE id = ANY (ARRAY (SELECT id FROM pending_uploads WHERE instance_id = $1 "
		"AND next_attempt_at <= now() ORDER BY next_attempt_at, id LIMIT $3::int "
		"FOR UPDATE SKIP LOCKED)) "
		"RETURNING id, account_id, content_hash, attempts";
	char lease[16], limit[16], sqlstate[6];
	const char *params[3] = { up->instance_id, lease, limit };
	PGresult *res = NULL;
	int rows, n = 0;

	snprintf(lease, sizeof(lease), "%d", LEASE_SECONDS);
	snprintf(limit, sizeof(limit), "%d", CLAIM_BATCH);
	if (sora_db_exec_prepared(conn, SORA_DB_CLASS_WRITE, "sora_upload_claim_v1", sql, 3,
				  params, NULL, NULL, 0, &res, sqlstate, err) != 0)
		return -1;
	rows = PQntuples(res);
	if (rows > CLAIM_BATCH)
		rows = CLAIM_BATCH;
	for (int i = 0; i < rows; i++) {
		struct sora_error verr;
		int64_t id, account, attempts;

		if (sora_db_get_i64(res, i, 0, &id, &verr) < 0 ||
		    sora_db_get_i64(res, i, 1, &account, &verr) < 0 ||
		    sora_db_get_i64(res, i, 3, &attempts, &verr) < 0) {
			sora_error(NULL, "uploader: %s: unreadable pending_uploads row: %s",
				   sora_db_conn_describe(conn), verr.msg);
			continue;
		}
		if (!sora_blob_hash_valid(sora_str_c(PQgetvalue(res, i, 2)))) {
			sora_error(NULL, "uploader: %s: pending_uploads row %" PRId64
				   ": content_hash is not a hash", sora_db_conn_describe(conn), id);
			continue;
		}
		snprintf(c[n].id, sizeof(c[n].id), "%" PRId64, id);
		c[n].account_id = account;
		snprintf(c[n].hash, sizeof(c[n].hash), "%s", PQgetvalue(res, i, 2));
		c[n].attempts = attempts > INT_MAX ? INT_MAX : attempts < 0 ? 0 : (int)attempts;
		n++;
	}
	PQclear(res);
	return n;
}

/* "{1,2,3}": the ids of rows, as one array parameter. */
static void id_array(const struct claim *c, const bool *pick, int n, char *dst, size_t size)
{
	size_t len = 0;

	dst[len++] = '{';
	for (int i = 0; i < n; i++) {
		if (!pick[i])
			continue;
		len += (size_t)snprintf(dst + len, size - len, "%s%s", len > 1 ? "," : "", c[i].id);
	}
	snprintf(dst + len, size - len, "}");
}

/* Runs sql (prepared as name) with the ids of the picked claims as its
 * one array parameter; a failure is only logged, with what[0] saying what
 * was meant and what[1] what follows from the failure. */
static void update_claims(struct sora_db_conn *conn, const struct claim *c, const bool *pick,
			  int n, const char *name, const char *sql, const char *const what[2])
{
	char ids[CLAIM_BATCH * 24 + 4], sqlstate[6];
	const char *params[1] = { ids };
	struct sora_error err;
	PGresult *res = NULL;

	id_array(c, pick, n, ids, sizeof(ids));
	if (strcmp(ids, "{}") == 0)
		return;
	if (sora_db_exec_prepared(conn, SORA_DB_CLASS_WRITE, name, sql, 1, params, NULL, NULL, 0,
				  &res, sqlstate, &err) != 0)
		sora_warn(NULL, "uploader: cannot %s %s: %s%s", what[0], ids, err.msg, what[1]);
	PQclear(res);
}

/* Rows whose bodies are stored go away in one statement. */
static void finish_uploaded(struct sora_db_conn *conn, const struct claim *c, const bool *done,
			    int n)
{
	static const char *const what[2] = { "remove finished uploads",
					     " (they will be checked again)" };

	update_claims(conn, c, done, n, "sora_upload_done_v1",
		      "DELETE FROM pending_uploads WHERE id = ANY ($1::bigint[])", what);
}

/* Claimed rows not attempted (the uploader is stopping) are due again at
 * once, for the next start, without counting an attempt. */
static void release_claims(struct sora_db_conn *conn, const struct claim *c, const bool *skip,
			   int n)
{
	static const char *const what[2] = { "release claimed uploads", "" };

	update_claims(conn, c, skip, n, "sora_upload_release_v1",
		      "UPDATE pending_uploads SET next_attempt_at = now(), attempts = attempts - 1 "
		      "WHERE id = ANY ($1::bigint[])", what);
}

static int64_t backoff_ms(const struct sora_config *cfg, int attempts)
{
	int64_t base = cfg->uploader.retry_interval_ms > 0 ? cfg->uploader.retry_interval_ms : 30000;
	int64_t ms = base;

	for (int i = 1; i < attempts && ms < MAX_BACKOFF_MS; i++)
		ms *= 2;
	if (ms > MAX_BACKOFF_MS)
		ms = MAX_BACKOFF_MS;
	/* Jitter (50-100%) so a fleet that lost S3 at once does not come back
	 * in lockstep. */
	return ms / 2 + (int64_t)randombytes_uniform((uint32_t)(ms / 2 + 1));
}

/* A failed attempt: the row waits for its next one, or for the operator.
 * A corrupt staged body will not get better by waiting. */
static void finish_failed(struct sora_uploader *up, struct sora_db_conn *conn,
			  const struct claim *c, const struct sora_error *why)
{
	int max = up->cfg->uploader.max_attempts;
	bool give_up = why->cls == SORA_ERR_CORRUPT || (max > 0 && c->attempts >= max);
	const char *msg = why->msg;
	char delay[32];
	const char *params[3] = { c->id, msg, delay };
	struct sora_error err;
	PGresult *res = NULL;
	int rc;

	if (give_up) {
		/* Kept for the operator: the body stays readable from
		 * staging; nothing is deleted. */
		sora_error(NULL, "uploader: giving up on %s (account %" PRId64 ") after %d attempt(s): %s",
			   c->hash, c->account_id, c->attempts, msg);
		snprintf(delay, sizeof(delay), "infinity");
		rc = uploader_query(conn,
				    "UPDATE pending_uploads SET last_error = $2, "
				    "next_attempt_at = $3::timestamptz WHERE id = $1",
				    3, params, &res, &err);
	} else {
		snprintf(delay, sizeof(delay), "%" PRId64, backoff_ms(up->cfg, c->attempts));
		rc = uploader_query(conn,
				    "UPDATE pending_uploads SET last_error = $2, next_attempt_at = "
				    "now() + make_interval(secs => $3::double precision / 1000) "
				    "WHERE id = $1", 3, params, &res, &err);
	}
	if (rc != 0)
		sora_warn(NULL, "uploader: cannot update pending upload %s: %s (it will be retried)",
			  c->id, err.msg);
	PQclear(res);
}

/* A body that is not staged any more was uploaded before a crash that
 * came before its row was deleted: confirm it is in the store. */
static int confirm_uploaded(struct sora_uploader *up, const struct claim *c,
			    struct sora_error *err)
{
	char key[SORA_BLOB_KEY_SIZE];
	uint64_t size = 0;

	if (sora_blob_key_format(c->account_id, c->hash, key, sizeof(key)) < 0)
		return sora_error_set(err, SORA_ERR_PERMANENT, "invalid body reference");
	return sora_blob_driver_head(sora_blob_store_driver(up->blobs), key, &size, err);
}

/* Moves one claimed body. Returns 0, or -1 with err set. */
static int upload_one(struct sora_uploader *up, const struct claim *c, struct sora_error *err)
{
	int rc;

	sora_error_clear(err);
	rc = sora_blob_upload_staged(up->blobs, c->account_id, c->hash, err);
	if (rc < 0 && err->cls == SORA_ERR_NOT_FOUND) {
		struct sora_error herr;

		if (confirm_uploaded(up, c, &herr) == 0) {
			rc = 0;
		} else {
			/* Gone from staging and not in the store (or the store
			 * cannot say): the class is the store's answer. */
			rc = sora_error_set(err, herr.cls == SORA_ERR_NOT_FOUND ? SORA_ERR_PERMANENT :
					    herr.cls, "body is neither staged nor in the store (%.400s)",
					    herr.msg);
		}
	}
	if (rc == 0) {
		sora_metric_inc(up->m_ok);
		sora_debug(NULL, "uploader: uploaded %s (account %" PRId64 ")", c->hash, c->account_id);
	} else {
		sora_metric_inc(err->cls == SORA_ERR_TEMPORARY ? up->m_retry : up->m_failed);
		sora_warn(NULL, "uploader: %s (account %" PRId64 ", attempt %d): %s", c->hash,
			  c->account_id, c->attempts, err->msg);
	}
	return rc;
}

static void *uploader_thread(void *arg)
{
	struct sora_uploader *up = arg;
	int64_t last_db_warning = 0;

	for (;;) {
		struct sora_db_conn *conn = NULL;
		struct claim c[CLAIM_BATCH];
		bool done[CLAIM_BATCH] = { false }, skipped[CLAIM_BATCH] = { false };
		struct sora_error err;
		unsigned kicks;
		int n;

		if (uploader_stopping(up, &kicks))
			break;
		n = -1;
		if (sora_db_acquire(up->db, SORA_DB_PRIMARY, 10000, &conn, &err) == 0)
			n = claim_batch(up, conn, c, &err);
		if (n < 0) {
			int64_t now = (int64_t)time(NULL);
			if (now - last_db_warning >= 60) {
				sora_warn(NULL, "uploader: database unavailable, retrying: %s", err.msg);
				last_db_warning = now;
			}
			sora_db_release(&conn);
			uploader_wait(up, DB_RETRY_MS, kicks);
			continue;
		}
		/* Do not hold a pooled connection across long uploads. */
		sora_db_release(&conn);
		if (n == 0) {
			uploader_wait(up, POLL_MS, kicks);
			continue;
		}

		struct sora_error berr[CLAIM_BATCH];
		bool give_back = false;
		for (int i = 0; i < n; i++) {
			/* Stopping, or the store is unreachable (its retries
			 * are spent): the rest of the batch goes back to the
			 * queue untried, so one outage costs one row's
			 * retries, and its error is recorded at once. */
			if (give_back || uploader_stopping(up, NULL)) {
				skipped[i] = true;
				continue;
			}
			done[i] = upload_one(up, &c[i], &berr[i]) == 0;
			give_back = !done[i] && berr[i].cls == SORA_ERR_TEMPORARY;
		}
		/* Without the database the leases expire and the rows are taken
		 * again: uploading the same content twice is harmless. */
		if (sora_db_acquire(up->db, SORA_DB_PRIMARY, 10000, &conn, &err) != 0)
			continue;
		finish_uploaded(conn, c, done, n);
		for (int i = 0; i < n; i++) {
			if (!done[i] && !skipped[i])
				finish_failed(up, conn, &c[i], &berr[i]);
		}
		release_claims(conn, c, skipped, n);
		sora_db_release(&conn);
	}
	return NULL;
}

/* A previous run of this node may have died holding leases. */
static int release_leases(struct sora_uploader *up, struct sora_error *err)
{
	struct sora_db_conn *conn = NULL;
	const char *params[1] = { up->instance_id };
	PGresult *res = NULL;
	int rc;

	rc = sora_db_acquire(up->db, SORA_DB_PRIMARY, 30000, &conn, err);
	if (rc != 0)
		return -1;
	rc = uploader_query(conn,
				 "UPDATE pending_uploads SET next_attempt_at = now() "
				 "WHERE instance_id = $1 AND next_attempt_at > now() "
				 "AND next_attempt_at <> 'infinity'", 1, params, &res, err);
	if (rc == 0 && PQcmdTuples(res)[0] != '0')
		sora_info(NULL, "uploader: resuming %s pending upload(s) from a previous run", PQcmdTuples(res));
	PQclear(res);
	sora_db_release(&conn);
	return rc == 0 ? 0 : -1;
}

int sora_uploader_start(const struct sora_config *cfg, struct sora_db_pool *db,
			struct sora_blob_store *blobs, const char *instance_id,
			struct sora_uploader **up_r, struct sora_error *err)
{
	struct sora_uploader *up = calloc(1, sizeof(*up));
	struct sora_metric *m;
	int n = cfg->uploader.workers > 0 ? cfg->uploader.workers : 4;

	if (up == NULL || sodium_init() < 0) {
		free(up);
		return sora_error_set(err, SORA_ERR_TEMPORARY, "uploader: out of memory");
	}
	up->cfg = cfg;
	up->db = db;
	up->blobs = blobs;
	snprintf(up->instance_id, sizeof(up->instance_id), "%s", instance_id);
	pthread_mutex_init(&up->lock, NULL);
	pthread_cond_init(&up->cond, NULL);
	m = sora_metric_counter("uploads_total", "Staged bodies moved to the blob store, by result.", "result");
	up->m_ok = sora_metric_with(m, "ok");
	up->m_retry = sora_metric_with(m, "retry");
	up->m_failed = sora_metric_with(m, "failed");
	if (release_leases(up, err) < 0)
		goto fail;
	up->threads = calloc((size_t)n, sizeof(pthread_t));
	if (up->threads == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "uploader: out of memory");
		goto fail;
	}
	for (int i = 0; i < n; i++) {
		if (pthread_create(&up->threads[i], NULL, uploader_thread, up) != 0)
			break;
		up->nthreads++;
	}
	if (up->nthreads == 0) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "uploader: cannot start threads");
		goto fail;
	}
	*up_r = up;
	return 0;
fail:
	free(up->threads);
	pthread_mutex_destroy(&up->lock);
	pthread_cond_destroy(&up->cond);
	free(up);
	return -1;
}

void sora_uploader_kick(struct sora_uploader *up)
{
	if (up == NULL)
		return;
	pthread_mutex_lock(&up->lock);
	up->kicks++;
	/* One idle thread is enough for a new row; a busy one sees the count
	 * change when it comes back. */
	pthread_cond_signal(&up->cond);
	pthread_mutex_unlock(&up->lock);
}

void sora_uploader_stop(struct sora_uploader **upp)
{
	struct sora_uploader *up = *upp;

	if (up == NULL)
		return;
	*upp = NULL;
	pthread_mutex_lock(&up->lock);
	up->stopping = true;
	pthread_cond_broadcast(&up->cond);
	pthread_mutex_unlock(&up->lock);
	for (int i = 0; i < up->nthreads; i++)
		pthread_join(up->threads[i], NULL);
	free(up->threads);
	pthread_mutex_destroy(&up->lock);
	pthread_cond_destroy(&up->cond);
	free(up);
}
