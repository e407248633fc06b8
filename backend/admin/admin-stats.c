/* sora-admin stats auth, health, auth test. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/admin/admin.h"
#include "backend/store/migrate.h"
#include "common/admin/ops.h"
#include "common/core/log.h"
#include "common/core/units.h"
#include "common/db/accounts.h"

/* Client-supplied text (usernames) is escaped before it reaches the
 * terminal, so a crafted login name cannot send escape sequences. NULL
 * prints as "-". */
static const char *shown(const struct sora_admin_rows *rows, int row, int col, char *buf,
			 size_t size)
{
	const char *v = sora_admin_cell(rows, row, col);

	return v != NULL ? sora_log_escape(sora_str_c(v), buf, size) : "-";
}

static void print_top(const char *title, const struct sora_admin_rows *rows)
{
	printf("\n%s\n", title);
	if (rows->count == 0) {
		printf("  (none)\n");
		return;
	}
	printf("  %-40s %8s  %-23s  %s\n", "KEY", "FAILURES", "LAST FAILURE", "BLOCKED UNTIL");
	for (int i = 0; i < rows->count; i++) {
		char key[128], until[64];

		printf("  %-40s %8s  %-23s  %s\n", shown(rows, i, SORA_ADMIN_TOP_KEY, key, sizeof(key)),
		       sora_admin_cell(rows, i, SORA_ADMIN_TOP_FAILURES),
		       sora_admin_cell(rows, i, SORA_ADMIN_TOP_LAST_FAILURE),
		       shown(rows, i, SORA_ADMIN_TOP_BLOCKED_UNTIL, until, sizeof(until)));
	}
}

int admin_cmd_stats_auth(struct admin_ctx *ctx, const struct admin_args *args)
{
	const char *window = admin_opt(args, "window");
	const char *top = admin_opt(args, "top");
	const char *error;
	char wbuf[32];
	struct sora_admin_auth_stats st;
	struct sora_error err;
	int64_t ms = 24LL * 3600 * 1000;
	uint64_t n = 10;

	if (window != NULL &&
	    (sora_parse_duration_ms(window, &ms, &error) < 0 || ms <= 0))
		return admin_usage_error(args->cmd, "invalid --window \"%s\"%s%s", window,
					 ms <= 0 ? "" : ": ", ms <= 0 ? "" : error);
	if (top != NULL && (sora_str_to_u64(sora_str_c(top), SORA_ADMIN_STATS_MAX_TOP, &n) < 0 ||
			    n == 0))
		return admin_usage_error(args->cmd, "--top must be a number from 1 to %d",
					 SORA_ADMIN_STATS_MAX_TOP);
	if (sora_admin_auth_stats(ctx->conn, ms, (int)n, &st, &err) != 0)
		return admin_fail("%s", err.msg);
	printf("Authentication failures in the last %s:\n",
	       sora_format_duration(ms, wbuf, sizeof(wbuf)));
	printf("  by IP:       %lld failures from %lld IPs\n", (long long)st.ip_failures,
	       (long long)st.ips);
	printf("  by username: %lld failures for %lld usernames\n", (long long)st.user_failures,
	       (long long)st.users);
	printf("  blocked now: %lld (%lld IPs, %lld usernames)\n", (long long)st.blocked_now,
	       (long long)st.blocked_ips, (long long)st.blocked_users);
	print_top("Top IPs:", &st.top_ips);
	print_top("Top usernames:", &st.top_users);
	printf("\nBlocked now:\n");
	if (st.blocked.count == 0) {
		printf("  (none)\n");
	} else {
		printf("  %-40s %-40s %8s  %s\n", "IP", "USERNAME", "FAILURES", "BLOCKED UNTIL");
		for (int i = 0; i < st.blocked.count; i++) {
			char ip[64], user[128];

			printf("  %-40s %-40s %8s  %s\n",
			       shown(&st.blocked, i, SORA_ADMIN_BLOCK_IP, ip, sizeof(ip)),
			       shown(&st.blocked, i, SORA_ADMIN_BLOCK_USERNAME, user, sizeof(user)),
			       sora_admin_cell(&st.blocked, i, SORA_ADMIN_BLOCK_FAILURES),
			       sora_admin_cell(&st.blocked, i, SORA_ADMIN_BLOCK_UNTIL));
		}
		if (st.blocked_now > st.blocked.count)
			printf("  ... and %lld more (sora-admin auth blocks lists them all)\n",
			       (long long)(st.blocked_now - st.blocked.count));
	}
	sora_admin_auth_stats_free(&st);
	return ADMIN_EXIT_OK;
}

/* Connects straight to one endpoint (not through the pool, which would
 * fall back to the primary) and reports the server version. */
static int check_endpoint(const struct sora_database_config *db,
			  const struct sora_db_endpoint *ep, char *version, size_t vsize,
			  struct sora_error *err)
{
	struct sora_db_conninfo ci;
	char desc[300];
	PGconn *pg;
	int ret = 0;

	sora_db_describe(db->dbname, ep->host, ep->port, desc, sizeof(desc));
	if (sora_db_conninfo_build(db, ep, "sora-admin", &ci, err) < 0) {
		sora_error_prefix(err, "%s", desc);
		return -1;
	}
	pg = PQconnectdbParams(ci.keywords, ci.values, 0);
	if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
		sora_db_format_error(desc, pg != NULL ? PQerrorMessage(pg) : "out of memory",
				     SORA_ERR_TEMPORARY, err);
		ret = -1;
	} else {
		const char *v = PQparameterStatus(pg, "server_version");

		snprintf(version, vsize, "%s, PostgreSQL %s", desc, v != NULL ? v : "?");
	}
	PQfinish(pg);
	return ret;
}

int admin_cmd_health(struct admin_ctx *ctx, const struct admin_args *args)
{
	const struct sora_database_config *db = &ctx->cfg->database;
	const struct sora_storage_config *st = &ctx->cfg->storage;
	struct sora_migration_status *items = NULL;
	struct sora_db_conn *conn = NULL;
	char info[512], version[64], reason[SORA_ERROR_MSG_SIZE] = "";
	struct sora_error err;
	size_t count = 0, pending = 0, odd = 0;
	bool failed = false, degraded = false;
	int ret;

	(void)args;
	/* The primary, through the pool as the servers use it. */
	ret = sora_db_pool_create(db, "sora-admin", &ctx->pool, &err);
	if (ret == 0)
		ret = sora_db_acquire(ctx->pool, SORA_DB_PRIMARY, 10000, &conn, &err);
	/* The same check as the HTTP API's GET /health. */
	if (ret == 0)
		ret = sora_admin_db_ping(conn, version, sizeof(version), &err);
	if (ret != 0) {
		sora_db_release(&conn);
		printf("database:   FAILED: %s\n", err.msg);
		snprintf(reason, sizeof(reason), "%s", err.msg);
		failed = true;
	} else {
		printf("database:   ok (%s, PostgreSQL %s)\n", sora_db_conn_describe(conn), version);
		if (sora_store_migrate_status(sora_db_conn_pg(conn), &items, &count, &err) < 0) {
			printf("migrations: FAILED: %s\n", err.msg);
			snprintf(reason, sizeof(reason), "%s", err.msg);
			failed = true;
		} else {
			int last = 0;

			for (size_t i = 0; i < count; i++) {
				if (items[i].state == SORA_MIGRATION_PENDING)
					pending++;
				else if (items[i].state != SORA_MIGRATION_APPLIED)
					odd++;
				if (items[i].state != SORA_MIGRATION_PENDING)
					last = items[i].version;
			}
			if (pending > 0) {
				printf("migrations: FAILED: %zu pending (run: sora-admin migrate up)\n",
				       pending);
				snprintf(reason, sizeof(reason), "%zu migrations pending", pending);
				failed = true;
			} else {
				printf("migrations: ok (version %d%s)\n", last,
				       odd > 0 ? "; see sora-admin migrate status" : "");
			}
			free(items);
		}
		sora_db_release(&conn);
	}
	for (size_t i = 0; i < db->read_endpoints_count; i++) {
		struct sora_db_endpoint ep = db->read_endpoints[i];

		if (ep.port <= 0)
			ep.port = db->port;
		if (check_endpoint(db, &ep, info, sizeof(info), &err) < 0) {
			printf("replica:    WARNING: %s\n", err.msg);
			degraded = true;
		} else {
			printf("replica:    ok (%s)\n", info);
		}
	}
	if (st->backend != NULL && strcmp(st->backend, "s3") == 0) {
		const struct sora_s3_config *s3 = &ctx->cfg->s3;

		printf("storage:    s3 (bucket %s at %s, region %s, %s, %s-style, encryption %s)\n",
		       s3->bucket != NULL ? s3->bucket : "-",
		       s3->endpoint != NULL ? s3->endpoint : "-",
		       s3->region != NULL ? s3->region : "-",
		       s3->use_ssl ? "https" : "http", s3->path_style ? "path" : "virtual-host",
		       s3->encrypt ? "on" : "off");
	} else {
		struct stat sb;
		const char *path = st->fs_path != NULL ? st->fs_path : "var/blobs";
		bool exists = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);

		printf("storage:    fs (path %s%s)\n", path,
		       exists ? "" : ", not created yet");
	}
	printf("status:     %s\n", failed ? "FAILED" : degraded ? "degraded" : "ok");
	if (failed)
		return admin_fail("health check failed: %s", reason);
	return ADMIN_EXIT_OK;
}

int admin_cmd_auth_test(struct admin_ctx *ctx, const struct admin_args *args)
{
	struct sora_account_ref ref;
	const char *email;
	char *password = NULL;
	size_t len = 0;
	struct sora_error err;
	bool match = false;
	int code, ret;

	email = admin_require(args, "email", &code);
	if (email == NULL)
		return code;
	code = admin_read_password(args, &password, &len);
	if (code != 0)
		return code;
	ret = sora_accounts_authenticate(ctx->conn, sora_str_c(email), password, len, &match,
					 &ref, &err);
	admin_password_free(&password, len);
	if (ret != 0)
		return admin_fail("%s", err.msg);
	if (!match) {
		/* For the operator, say which of the two it was; the servers
		 * never tell a client. */
		ret = sora_accounts_lookup(ctx->conn, sora_str_c(email), &ref, &err);
		if (ret < 0 && err.cls == SORA_ERR_NOT_FOUND)
			printf("FAILED: no live account has the address %s\n", email);
		else if (ret == 0)
			printf("FAILED: wrong password for %s\n", email);
		else
			printf("FAILED: %s\n", err.msg);
		return ADMIN_EXIT_FAIL;
	}
	printf("OK: %s belongs to account %lld (primary %s)\n", ref.address,
	       (long long)ref.account_id, ref.primary_address);
	return ADMIN_EXIT_OK;
}
