/* Administrative operations shared by sora-admin (backend/admin/) and the
 * HTTP admin API (common/admin/api.c), so the CLI and the API run the same
 * code for each operation: each function does the database work and
 * returns a structured result, which the CLI prints as text and the API
 * renders as JSON. Account and credential changes are the functions of
 * common/db/accounts.h, which both call directly.
 *
 * Conventions (as common/db/accounts.h): every function takes a connection
 * acquired by the caller (borrowed), blocks on the database (worker, MHD or
 * CLI threads only), returns 0 or -1 with *err (class + one line for an
 * operator; SORA_ERR_INVALID when the caller's input is not acceptable,
 * SORA_ERR_NOT_FOUND when the thing named does not exist). Results with
 * strings borrow them from a PGresult the struct owns; free them with
 * sora_admin_rows_free (NULL-safe, idempotent). Strings that came from
 * clients (usernames in auth_attempts) are returned raw: the CLI escapes
 * them for the terminal, the API's JSON encoder for JSON. */
#ifndef SORA_ADMIN_OPS_H
#define SORA_ADMIN_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "common/core/error.h"
#include "common/db/db.h"

/* Rows of a query whose columns the operation documents: cell(r, i, c) is
 * the text of column c of row i, NULL for SQL NULL. */
struct sora_admin_rows {
	int count;
	PGresult *res;   /* owned */
};

const char *sora_admin_cell(const struct sora_admin_rows *rows, int row, int col);
int64_t sora_admin_cell_i64(const struct sora_admin_rows *rows, int row, int col);
bool sora_admin_cell_bool(const struct sora_admin_rows *rows, int row, int col);
void sora_admin_rows_free(struct sora_admin_rows *rows);

/* Times are text "YYYY-MM-DD HH:MM:SS UTC". */

/* ---- auth_attempts (written by the authentication rate limiter) ---- */

/* The rows blocking now, latest block first, at most limit (0 = all).
 * Columns: SORA_ADMIN_BLOCK_*. ip and username may be NULL. */
enum {
	SORA_ADMIN_BLOCK_IP = 0,
	SORA_ADMIN_BLOCK_USERNAME,
	SORA_ADMIN_BLOCK_FAILURES,
	SORA_ADMIN_BLOCK_UNTIL,
	SORA_ADMIN_BLOCK_PROTOCOL,   /* protocol of the last failure, may be NULL */
	SORA_ADMIN_BLOCK_LAST_FAILURE,
};
int sora_admin_auth_blocks(struct sora_db_conn *conn, int limit,
			   struct sora_admin_rows *rows_r, struct sora_error *err);

/* Removes the rows of ip (an address or a CIDR range: every row inside it)
 * and/or of username (any case); at least one must be non-NULL and
 * non-empty, else SORA_ERR_INVALID, as for an invalid ip. Columns of the
 * removed rows: SORA_ADMIN_UNBLOCK_*. Removing nothing is not an error. */
enum {
	SORA_ADMIN_UNBLOCK_IP = 0,
	SORA_ADMIN_UNBLOCK_USERNAME,
	SORA_ADMIN_UNBLOCK_FAILURES,
	SORA_ADMIN_UNBLOCK_WAS_BLOCKED,  /* "t"/"f" */
};
int sora_admin_auth_unblock(struct sora_db_conn *conn, const char *ip, const char *username,
			    struct sora_admin_rows *rows_r, struct sora_error *err);

/* Failed-login statistics over the last window_ms: totals, the top IPs and
 * usernames by failures, and the rows blocking now (at most 100). */
struct sora_admin_auth_stats {
	int64_t window_ms;
	int64_t ip_failures, ips;          /* per-IP rows in the window */
	int64_t user_failures, users;      /* per-username rows in the window */
	int64_t blocked_now;               /* rows blocking now (IPs and usernames) */
	int64_t blocked_ips, blocked_users;
	/* Columns: SORA_ADMIN_TOP_*; blocked_until NULL when not blocked. */
	struct sora_admin_rows top_ips, top_users;
	struct sora_admin_rows blocked;    /* columns: SORA_ADMIN_BLOCK_* */
};
enum {
	SORA_ADMIN_TOP_KEY = 0,           /* the IP or the username */
	SORA_ADMIN_TOP_FAILURES,
	SORA_ADMIN_TOP_LAST_FAILURE,
	SORA_ADMIN_TOP_BLOCKED_UNTIL,
};
#define SORA_ADMIN_STATS_MAX_TOP 1000
#define SORA_ADMIN_STATS_MAX_BLOCKED 100
/* window_ms > 0, top 1..SORA_ADMIN_STATS_MAX_TOP (else SORA_ERR_INVALID). */
int sora_admin_auth_stats(struct sora_db_conn *conn, int64_t window_ms, int top,
			  struct sora_admin_auth_stats *stats_r, struct sora_error *err);
void sora_admin_auth_stats_free(struct sora_admin_auth_stats *stats);

/* ---- connections (kept by every sora-proxy, migration 0007) ---- */

/* Sessions relayed now by proxies that sent a heartbeat in the last 2
 * minutes, oldest first, filtered by user and/or protocol (NULL or "" =
 * any; case-insensitive), at most limit (0 = all). */
enum {
	SORA_ADMIN_CONN_USER = 0,
	SORA_ADMIN_CONN_PROTOCOL,
	SORA_ADMIN_CONN_CLIENT,
	SORA_ADMIN_CONN_BACKEND,
	SORA_ADMIN_CONN_NODE,
	SORA_ADMIN_CONN_SINCE,
	SORA_ADMIN_CONN_SESSION,
};
int sora_admin_connections_list(struct sora_db_conn *conn, const char *user,
				const char *protocol, int limit,
				struct sora_admin_rows *rows_r, struct sora_error *err);

/* Asks every proxy to close the sessions of user and/or protocol (at least
 * one non-empty, else SORA_ERR_INVALID): a connection_kicks row and a NOTIFY
 * in one statement. *kick_id_r is the request's id, *matched_r the number
 * of listed sessions it matches when sent. */
int sora_admin_connections_kick(struct sora_db_conn *conn, const char *user,
				const char *protocol, int64_t *kick_id_r, int64_t *matched_r,
				struct sora_error *err);

/* ---- accounts: what accounts.h does not cover ---- */

/* Pins the account that owns address to a backend (host or host:port, as in
 * the proxies' remote_addrs), or with backend "" routes it by the ring
 * again. SORA_ERR_INVALID for a malformed backend, SORA_ERR_NOT_FOUND when
 * no account has the address. */
int sora_admin_account_set_backend(struct sora_db_conn *conn, const char *address,
				   const char *backend, struct sora_error *err);

/* The backend an account is pinned to, into buf ("" when routed by the
 * ring or on failure). */
void sora_admin_account_backend(struct sora_db_conn *conn, int64_t account_id, char *buf,
				size_t size);

/* ---- health ---- */

/* Runs a trivial query on conn; *version_r (size bytes) gets the PostgreSQL
 * server version. */
int sora_admin_db_ping(struct sora_db_conn *conn, char *version_r, size_t size,
		       struct sora_error *err);

#endif
