/* The shared administrative operations: see ops.h. */
#include "common/admin/ops.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/cidr.h"
#include "common/core/log.h"
#include "common/core/str.h"

#define UTC_TEXT(col) \
	"to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'"

#define WINDOW_CLAUSE "last_failure_at >= now() - $1::bigint * interval '1 millisecond'"

/* Proxies refresh their rows every 30 s; a row older than this belongs to a
 * proxy that died without removing it. */
#define LIVE_CLAUSE "heartbeat_at > now() - interval '2 minutes'"

const char *sora_admin_cell(const struct sora_admin_rows *rows, int row, int col)
{
	if (PQgetisnull(rows->res, row, col))
		return NULL;
	return PQgetvalue(rows->res, row, col);
}

int64_t sora_admin_cell_i64(const struct sora_admin_rows *rows, int row, int col)
{
	const char *v = sora_admin_cell(rows, row, col);

	return v != NULL ? strtoll(v, NULL, 10) : 0;
}

bool sora_admin_cell_bool(const struct sora_admin_rows *rows, int row, int col)
{
	const char *v = sora_admin_cell(rows, row, col);

	return v != NULL && v[0] == 't';
}

void sora_admin_rows_free(struct sora_admin_rows *rows)
{
	if (rows->res != NULL)
		PQclear(rows->res);
	rows->res = NULL;
	rows->count = 0;
}

static int query(struct sora_db_conn *conn, enum sora_db_class cls, const char *sql,
		 int nparams, const char *const *values, struct sora_admin_rows *rows_r,
		 struct sora_error *err)
{
	rows_r->res = NULL;
	rows_r->count = 0;
	if (sora_db_exec(conn, cls, sql, nparams, values, &rows_r->res, NULL, err) != 0)
		return -1;
	rows_r->count = PQntuples(rows_r->res);
	return 0;
}

static void limit_text(int limit, char *buf, size_t size)
{
	/* LIMIT NULL is no limit. */
	snprintf(buf, size, "%d", limit);
}

/* ---- auth_attempts ---- */

#define BLOCK_COLUMNS \
	"host(ip), username, failure_count, " UTC_TEXT("blocked_until") ", last_protocol, " \
	UTC_TEXT("last_failure_at")

int sora_admin_auth_blocks(struct sora_db_conn *conn, int limit,
			   struct sora_admin_rows *rows_r, struct sora_error *err)
{
	char lim[16];
	const char *values[1] = { NULL };

	if (limit > 0) {
		limit_text(limit, lim, sizeof(lim));
		values[0] = lim;
	}
	return query(conn, SORA_DB_CLASS_SEARCH,
		     "SELECT " BLOCK_COLUMNS " FROM auth_attempts WHERE blocked_until > now()"
		     " ORDER BY blocked_until DESC, id LIMIT $1::integer",
		     1, values, rows_r, err);
}

int sora_admin_auth_unblock(struct sora_db_conn *conn, const char *ip, const char *username,
			    struct sora_admin_rows *rows_r, struct sora_error *err)
{
	struct sora_cidr cidr;
	const char *error;
	const char *values[2];

	rows_r->res = NULL;
	rows_r->count = 0;
	if (ip != NULL && ip[0] == '\0')
		ip = NULL;
	if (username != NULL && username[0] == '\0')
		username = NULL;
	if (ip == NULL && username == NULL) {
		sora_error_set(err, SORA_ERR_INVALID, "give an IP (or CIDR range) and/or a username");
		return -1;
	}
	if (ip != NULL && sora_cidr_parse(ip, &cidr, &error) < 0) {
		char shown[128];

		sora_error_set(err, SORA_ERR_INVALID, "invalid IP \"%s\": %s",
			       sora_log_escape(sora_str_c(ip), shown, sizeof(shown)), error);
		return -1;
	}
	values[0] = ip;
	values[1] = username;
	/* NULL parameters match nothing, so one statement serves an IP, a
	 * username and both (rows of either are removed). */
	return query(conn, SORA_DB_CLASS_WRITE,
		     "DELETE FROM auth_attempts"
		     " WHERE ip <<= $1::inet OR lower(username) = lower($2)"
		     " RETURNING host(ip), username, failure_count,"
		     " coalesce(blocked_until > now(), false)",
		     2, values, rows_r, err);
}

static int64_t get_i64(PGresult *res, int col)
{
	return PQgetisnull(res, 0, col) ? 0 : strtoll(PQgetvalue(res, 0, col), NULL, 10);
}

int sora_admin_auth_stats(struct sora_db_conn *conn, int64_t window_ms, int top,
			  struct sora_admin_auth_stats *stats_r, struct sora_error *err)
{
	char window_text[32], top_text[16];
	const char *values[2] = { window_text, top_text };
	PGresult *res = NULL;

	memset(stats_r, 0, sizeof(*stats_r));
	if (window_ms <= 0) {
		sora_error_set(err, SORA_ERR_INVALID, "the window must be longer than zero");
		return -1;
	}
	if (top < 1 || top > SORA_ADMIN_STATS_MAX_TOP) {
		sora_error_set(err, SORA_ERR_INVALID, "top must be a number from 1 to %d",
			       SORA_ADMIN_STATS_MAX_TOP);
		return -1;
	}
	stats_r->window_ms = window_ms;
	snprintf(window_text, sizeof(window_text), "%" PRId64, window_ms);
	limit_text(top, top_text, sizeof(top_text));

	if (sora_db_exec(conn, SORA_DB_CLASS_SEARCH,
			 "SELECT"
			 " coalesce(sum(failure_count) FILTER (WHERE ip IS NOT NULL AND username IS NULL"
			 "  AND " WINDOW_CLAUSE "), 0),"
			 " count(*) FILTER (WHERE ip IS NOT NULL AND username IS NULL"
			 "  AND " WINDOW_CLAUSE "),"
			 " coalesce(sum(failure_count) FILTER (WHERE ip IS NULL"
			 "  AND " WINDOW_CLAUSE "), 0),"
			 " count(*) FILTER (WHERE ip IS NULL AND " WINDOW_CLAUSE "),"
			 " count(*) FILTER (WHERE blocked_until > now()),"
			 " count(*) FILTER (WHERE blocked_until > now() AND username IS NULL),"
			 " count(*) FILTER (WHERE blocked_until > now() AND ip IS NULL)"
			 " FROM auth_attempts",
			 1, values, &res, NULL, err) != 0)
		return -1;
	stats_r->ip_failures = get_i64(res, 0);
	stats_r->ips = get_i64(res, 1);
	stats_r->user_failures = get_i64(res, 2);
	stats_r->users = get_i64(res, 3);
	stats_r->blocked_now = get_i64(res, 4);
	stats_r->blocked_ips = get_i64(res, 5);
	stats_r->blocked_users = get_i64(res, 6);
	PQclear(res);

	if (query(conn, SORA_DB_CLASS_SEARCH,
		  "SELECT host(ip), failure_count, " UTC_TEXT("last_failure_at") ","
		  " CASE WHEN blocked_until > now() THEN " UTC_TEXT("blocked_until") " END"
		  " FROM auth_attempts WHERE ip IS NOT NULL AND username IS NULL"
		  " AND " WINDOW_CLAUSE
		  " ORDER BY failure_count DESC, last_failure_at DESC LIMIT $2::integer",
		  2, values, &stats_r->top_ips, err) != 0 ||
	    query(conn, SORA_DB_CLASS_SEARCH,
		  "SELECT username, failure_count, " UTC_TEXT("last_failure_at") ","
		  " CASE WHEN blocked_until > now() THEN " UTC_TEXT("blocked_until") " END"
		  " FROM auth_attempts WHERE ip IS NULL AND " WINDOW_CLAUSE
		  " ORDER BY failure_count DESC, last_failure_at DESC LIMIT $2::integer",
		  2, values, &stats_r->top_users, err) != 0 ||
	    sora_admin_auth_blocks(conn, SORA_ADMIN_STATS_MAX_BLOCKED, &stats_r->blocked,
				   err) != 0) {
		sora_admin_auth_stats_free(stats_r);
		return -1;
	}
	return 0;
}

void sora_admin_auth_stats_free(struct sora_admin_auth_stats *stats)
{
	sora_admin_rows_free(&stats->top_ips);
	sora_admin_rows_free(&stats->top_users);
	sora_admin_rows_free(&stats->blocked);
}

/* ---- connections ---- */

int sora_admin_connections_list(struct sora_db_conn *conn, const char *user,
				const char *protocol, int limit,
				struct sora_admin_rows *rows_r, struct sora_error *err)
{
	char lim[16];
	const char *values[3] = { user != NULL ? user : "", protocol != NULL ? protocol : "",
				  NULL };

	if (limit > 0) {
		limit_text(limit, lim, sizeof(lim));
		values[2] = lim;
	}
	return query(conn, SORA_DB_CLASS_DEFAULT,
		     "SELECT username, protocol, client_addr, backend, node, "
		     UTC_TEXT("since") ", session_id"
		     " FROM connections WHERE " LIVE_CLAUSE
		     " AND ($1 = '' OR lower(username) = lower($1))"
		     " AND ($2 = '' OR lower(protocol) = lower($2))"
		     " ORDER BY since, node, session_id LIMIT $3::integer",
		     3, values, rows_r, err);
}

int sora_admin_connections_kick(struct sora_db_conn *conn, const char *user,
				const char *protocol, int64_t *kick_id_r, int64_t *matched_r,
				struct sora_error *err)
{
	const char *values[2] = { user, protocol };
	PGresult *res = NULL;

	if ((user == NULL || user[0] == '\0') && (protocol == NULL || protocol[0] == '\0')) {
		sora_error_set(err, SORA_ERR_INVALID, "give a user and/or a protocol (kicking "
			       "everyone takes one kick per protocol)");
		return -1;
	}
	/* One statement: the request and its notification commit together. */
	if (sora_db_exec(conn, SORA_DB_CLASS_WRITE,
			 "WITH k AS (INSERT INTO connection_kicks (username, protocol)"
			 " VALUES (nullif($1, ''), nullif($2, '')) RETURNING id, username, protocol)"
			 " SELECT k.id, pg_notify('sora_kick', k.id || E'\\t' || coalesce(k.username, '')"
			 " || E'\\t' || coalesce(k.protocol, '')),"
			 " (SELECT count(*) FROM connections c WHERE " LIVE_CLAUSE
			 "  AND (k.username IS NULL OR lower(c.username) = lower(k.username))"
			 "  AND (k.protocol IS NULL OR lower(c.protocol) = lower(k.protocol))) FROM k",
			 2, values, &res, NULL, err) != 0)
		return -1;
	*kick_id_r = get_i64(res, 0);
	*matched_r = get_i64(res, 2);
	PQclear(res);
	return 0;
}

/* ---- accounts ---- */

int sora_admin_account_set_backend(struct sora_db_conn *conn, const char *address,
				   const char *backend, struct sora_error *err)
{
	const char *values[2] = { address, backend[0] != '\0' ? backend : NULL };
	PGresult *res = NULL;
	long n;

	if (strlen(backend) > 255 || strpbrk(backend, " \t\r\n") != NULL) {
		sora_error_set(err, SORA_ERR_INVALID, "backend: expected a host or host:port");
		return -1;
	}
	if (sora_db_exec(conn, SORA_DB_CLASS_WRITE,
			 "UPDATE accounts SET backend = $2, updated_at = now() WHERE id = "
			 "(SELECT account_id FROM credentials WHERE lower(address) = lower($1))",
			 2, values, &res, NULL, err) != 0)
		return -1;
	n = strtol(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	if (n != 1) {
		char shown[128];

		sora_error_set(err, SORA_ERR_NOT_FOUND, "no account has the address %s",
			       sora_log_escape(sora_str_c(address), shown, sizeof(shown)));
		return -1;
	}
	return 0;
}

void sora_admin_account_backend(struct sora_db_conn *conn, int64_t account_id, char *buf,
				size_t size)
{
	char id[24];
	const char *values[1] = { id };
	struct sora_error err;
	PGresult *res = NULL;

	buf[0] = '\0';
	snprintf(id, sizeof(id), "%" PRId64, account_id);
	if (sora_db_exec(conn, SORA_DB_CLASS_DEFAULT, "SELECT backend FROM accounts WHERE id = $1",
			 1, values, &res, NULL, &err) != 0)
		return;
	if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		sora_strlcpy(buf, PQgetvalue(res, 0, 0), size);
	PQclear(res);
}

/* ---- health ---- */

int sora_admin_db_ping(struct sora_db_conn *conn, char *version_r, size_t size,
		       struct sora_error *err)
{
	PGresult *res = NULL;
	const char *v;

	if (sora_db_exec(conn, SORA_DB_CLASS_DEFAULT, "SELECT 1", 0, NULL, &res, NULL, err) != 0)
		return -1;
	PQclear(res);
	v = PQparameterStatus(sora_db_conn_pg(conn), "server_version");
	sora_strlcpy(version_r, v != NULL ? v : "?", size);
	return 0;
}
