/* Migration runner: see migrate.h. */
#include "backend/store/migrate.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "backend/blob/blob-hash.h"
#include "common/core/log.h"
#include "common/core/str.h"
#include "common/db/db.h"

static const char create_table_sql[] =
	"CREATE TABLE IF NOT EXISTS schema_migrations ("
	" version integer PRIMARY KEY,"
	" name text NOT NULL,"
	" checksum text NOT NULL,"
	" applied_at timestamptz NOT NULL DEFAULT now())";

static void describe_conn(PGconn *conn, char *buf, size_t size)
{
	const char *port = PQport(conn);
	uint64_t p = 0;

	if (port != NULL)
		(void)sora_str_to_u64(sora_str_c(port), 65535, &p);
	sora_db_describe(PQdb(conn), PQhost(conn), (int)p, buf, size);
}

/* Writes "<desc>: <what>: <server message>" for a failed result. */
static void result_err(PGconn *conn, PGresult *res, const char *what,
		       struct sora_error *err)
{
	char desc[300];
	char prefix[400];
	const char *primary = res != NULL ?
		PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	enum sora_error_class cls = sora_db_classify(conn, res);

	describe_conn(conn, desc, sizeof(desc));
	snprintf(prefix, sizeof(prefix), "%s: %s", desc, what);
	if (primary != NULL && PQstatus(conn) == CONNECTION_OK)
		sora_error_set(err, cls, "%s: %s", prefix, primary);
	else
		sora_db_format_error(prefix, PQerrorMessage(conn), cls, err);
}

/* Runs one statement; 0 when it succeeded, -1 with err set otherwise.
 * *res_r receives the result when wanted (caller clears it). */
static int run(PGconn *conn, const char *sql, int nparams, const char *const *values,
	       const char *what, PGresult **res_r, struct sora_error *err)
{
	PGresult *res;
	ExecStatusType st;

	if (res_r != NULL)
		*res_r = NULL;
	/* Embedded migrations hold several statements, which only the simple
	 * query protocol (PQexec) accepts. They are constants of the program;
	 * anything with parameters goes through PQexecParams. */
	if (nparams == 0 && values == NULL)
		res = PQexec(conn, sql);
	else
		res = PQexecParams(conn, sql, nparams, NULL, values, NULL, NULL, 0);
	st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		result_err(conn, res, what, err);
		PQclear(res);
		return -1;
	}
	if (res_r != NULL)
		*res_r = res;
	else
		PQclear(res);
	return 0;
}

void sora_store_migration_checksum(const char *sql, char hex_r[65])
{
	/* The same BLAKE2b-256 as a body's content hash. */
	sora_blob_hash_buf(sql, strlen(sql), hex_r);
}

const char *sora_migration_state_name(enum sora_migration_state state)
{
	switch (state) {
	case SORA_MIGRATION_APPLIED:
		return "applied";
	case SORA_MIGRATION_PENDING:
		return "pending";
	case SORA_MIGRATION_MODIFIED:
		return "modified";
	case SORA_MIGRATION_UNKNOWN:
		return "unknown";
	}
	return "?";
}

/* Whether schema_migrations lists version: 1 yes, 0 no, -1 with err set
 * when a row holds something that is not a version number (running the
 * migration again on a misread table would be worse than stopping). */
static int version_applied(PGresult *res, int version, struct sora_error *err)
{
	for (int i = 0; i < PQntuples(res); i++) {
		int64_t v;

		if (sora_db_get_i64(res, i, 0, &v, err) < 0) {
			sora_error_prefix(err, "schema_migrations");
			return -1;
		}
		if (v == version)
			return 1;
	}
	return 0;
}

int sora_store_migrate_up(PGconn *conn, struct sora_error *err)
{
	const struct sora_migration *migs;
	PGresult *applied = NULL;
	char lock_key[32];
	char desc[300];
	size_t count;
	int napplied = 0;
	int ret = -1;

	if (sodium_init() < 0)
		return sora_error_set(err, SORA_ERR_PERMANENT, "libsodium initialisation failed");
	describe_conn(conn, desc, sizeof(desc));
	if (PQstatus(conn) != CONNECTION_OK) {
		sora_db_format_error(desc, PQerrorMessage(conn), SORA_ERR_TEMPORARY, err);
		return -1;
	}
	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
		return sora_error_set(err, SORA_ERR_PERMANENT,
				      "%s: migrations need a connection outside a transaction", desc);
	migs = sora_store_migrations(&count);
	for (size_t i = 1; i < count; i++) {
		if (migs[i].version <= migs[i - 1].version)
			return sora_error_set(err, SORA_ERR_PERMANENT,
					      "embedded migrations out of order at %04d_%s",
					      migs[i].version, migs[i].name);
	}
	if (run(conn, "BEGIN", 0, NULL, "BEGIN", NULL, err) < 0)
		return -1;
	/* Migrations may rewrite large tables: no statement timeout, and no
	 * NOTICE chatter ("extension already exists, skipping"). */
	if (run(conn, "SET LOCAL statement_timeout = 0", 0, NULL, "setting up", NULL,
		err) < 0 ||
	    run(conn, "SET LOCAL client_min_messages = warning", 0, NULL, "setting up",
		NULL, err) < 0)
		goto out;
	snprintf(lock_key, sizeof(lock_key), "%lld", (long long)SORA_MIGRATE_LOCK_KEY);
	{
		const char *values[1] = { lock_key };

		if (run(conn, "SELECT pg_advisory_xact_lock($1::bigint)", 1, values,
			"taking the migration lock", NULL, err) < 0)
			goto out;
	}
	if (run(conn, create_table_sql, 0, NULL, "creating schema_migrations", NULL,
		err) < 0)
		goto out;
	if (run(conn, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL,
		"reading schema_migrations", &applied, err) < 0)
		goto out;
	for (size_t i = 0; i < count; i++) {
		const struct sora_migration *m = &migs[i];
		char what[128];
		char version[16];
		char sum[65];
		const char *values[3];
		int done = version_applied(applied, m->version, err);

		if (done < 0) {
			sora_error_prefix(err, "%s", desc);
			goto out;
		}
		if (done > 0)
			continue;
		snprintf(what, sizeof(what), "migration %04d_%s failed", m->version, m->name);
		if (run(conn, m->sql, 0, NULL, what, NULL, err) < 0)
			goto out;
		sora_store_migration_checksum(m->sql, sum);
		snprintf(version, sizeof(version), "%d", m->version);
		values[0] = version;
		values[1] = m->name;
		values[2] = sum;
		if (run(conn, "INSERT INTO schema_migrations (version, name, checksum)"
			" VALUES ($1::integer, $2, $3)", 3, values,
			"recording the migration", NULL, err) < 0)
			goto out;
		sora_info(NULL, "%s: applied migration %04d_%s", desc, m->version, m->name);
		napplied++;
	}
	if (run(conn, "COMMIT", 0, NULL, "COMMIT", NULL, err) < 0)
		goto out;
	ret = napplied;
out:
	PQclear(applied);
	if (ret < 0 && PQstatus(conn) == CONNECTION_OK &&
	    PQtransactionStatus(conn) != PQTRANS_IDLE) {
		PGresult *r = PQexec(conn, "ROLLBACK");

		PQclear(r);
	}
	return ret;
}

static int cmp_status(const void *a, const void *b)
{
	const struct sora_migration_status *x = a, *y = b;

	return (x->version > y->version) - (x->version < y->version);
}

int sora_store_migrate_status(PGconn *conn, struct sora_migration_status **items_r,
			      size_t *count_r, struct sora_error *err)
{
	const struct sora_migration *migs;
	struct sora_migration_status *items = NULL;
	PGresult *exists = NULL, *res = NULL;
	size_t count, n = 0, rows = 0;
	int ret = -1;

	*items_r = NULL;
	*count_r = 0;
	if (sodium_init() < 0)
		return sora_error_set(err, SORA_ERR_PERMANENT, "libsodium initialisation failed");
	migs = sora_store_migrations(&count);
	if (run(conn, "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL,
		"reading schema_migrations", &exists, err) < 0)
		goto out;
	if (strcmp(PQgetvalue(exists, 0, 0), "t") == 0) {
		if (run(conn, "SELECT version, name, checksum, to_char(applied_at AT TIME ZONE 'UTC',"
			" 'YYYY-MM-DD HH24:MI:SS') || ' UTC' FROM schema_migrations ORDER BY version",
			0, NULL, "reading schema_migrations", &res, err) < 0)
			goto out;
		rows = (size_t)PQntuples(res);
	}
	items = calloc(count + rows + 1, sizeof(*items));
	if (items == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < count; i++) {
		struct sora_migration_status *s = &items[n++];

		s->version = migs[i].version;
		sora_strlcpy(s->name, migs[i].name, sizeof(s->name));
		s->state = SORA_MIGRATION_PENDING;
	}
	for (size_t r = 0; r < rows; r++) {
		int64_t v = 0;
		struct sora_migration_status *s = NULL;
		char sum[65];

		if (sora_db_get_i64(res, (int)r, 0, &v, err) < 0) {
			sora_error_prefix(err, "schema_migrations");
			goto out;
		}
		if (v < 0 || v > INT32_MAX) {
			sora_error_set(err, SORA_ERR_PERMANENT,
				       "schema_migrations: version %lld out of range", (long long)v);
			goto out;
		}
		for (size_t i = 0; i < count; i++) {
			if (items[i].version == (int)v) {
				s = &items[i];
				sora_store_migration_checksum(migs[i].sql, sum);
				s->state = strcmp(sum, PQgetvalue(res, (int)r, 2)) == 0 ?
					SORA_MIGRATION_APPLIED : SORA_MIGRATION_MODIFIED;
				break;
			}
		}
		if (s == NULL) {
			s = &items[n++];
			s->version = (int)v;
			sora_strlcpy(s->name, PQgetvalue(res, (int)r, 1), sizeof(s->name));
			s->state = SORA_MIGRATION_UNKNOWN;
		}
		sora_strlcpy(s->applied_at, PQgetvalue(res, (int)r, 3), sizeof(s->applied_at));
	}
	qsort(items, n, sizeof(*items), cmp_status);
	*items_r = items;
	*count_r = n;
	items = NULL;
	ret = 0;
out:
	free(items);
	PQclear(exists);
	PQclear(res);
	return ret;
}
