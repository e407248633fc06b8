/* PostgreSQL connection pool and query helpers (libpq).
 *
 * A pool holds connections to the primary ([database] host/port) and to
 * each [[database.read_endpoints]] entry (same dbname, user and password).
 * Worker threads acquire a connection, run queries through the helpers
 * below, and release it. Event-loop threads never call anything here: every
 * function may block (connecting, waiting for a free connection, waiting for
 * the server).
 *
 * Errors (common/core/error.h): functions return 0 on success and -1 on
 * failure with *err filled: class SORA_ERR_TEMPORARY when retrying later
 * may succeed (connection lost or refused, server shutting down,
 * serialization failure, deadlock, statement timeout, out of resources),
 * SORA_ERR_PERMANENT otherwise (bad SQL, constraint violation, ...). The
 * message is one line that names the database, e.g.
 *   database sora_mail_db at 127.0.0.1:5432: password authentication failed for user "sora"
 * Messages never contain query parameters, so passwords and client data do
 * not leak into logs. Callers that need the server's reason (a unique
 * violation) ask for the SQLSTATE, never parse the message.
 *
 * Queries take their parameters out of line (PQexecParams); SQL text is
 * always a constant of the program, never built from client data.
 *
 * Statement timeouts: each query names a class (default, search, write)
 * whose timeout comes from [database] query_timeout, search_query_timeout
 * and write_timeout. The pool sets statement_timeout on the session only
 * when the class changes, and with SET LOCAL inside a transaction.
 *
 * Dead connections: on acquire, an idle connection whose socket shows EOF or
 * an unsolicited message (a server restart, an administrator's
 * pg_terminate_backend) is closed and replaced, and connections past
 * max_conn_lifetime or max_conn_idle_time are closed. A query that fails
 * because the connection broke is SORA_ERR_TEMPORARY and the connection
 * is discarded at release, so the next acquire reconnects.
 *
 * Ownership and threads: a pool is created and destroyed by one thread and
 * used by any number of threads in between; all pool functions are
 * thread-safe. A struct sora_db_conn belongs to the thread that acquired it
 * until it is released; it must not be shared. */
#ifndef SORA_DB_DB_H
#define SORA_DB_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "common/config/config.h"
#include "common/core/error.h"

/* How long a libpq connect may take before it fails, in seconds. */
#define SORA_DB_CONNECT_TIMEOUT_S 10
/* How long a read endpoint that refused a connection is skipped. */
#define SORA_DB_ENDPOINT_RETRY_MS 5000

/* Query classes: which configured timeout applies. */
enum sora_db_class {
	SORA_DB_CLASS_DEFAULT = 0,  /* query_timeout */
	SORA_DB_CLASS_SEARCH,       /* search_query_timeout */
	SORA_DB_CLASS_WRITE,        /* write_timeout */
	SORA_DB_CLASS_NONE,         /* no timeout (migrations, admin maintenance) */
};

/* Where a connection should go. */
enum sora_db_target {
	SORA_DB_PRIMARY = 0,        /* reads and writes */
	SORA_DB_READ,               /* read-only: a read endpoint (round robin),
				     * the primary when none is configured or
				     * none can be reached */
};

struct sora_db_pool;
struct sora_db_conn;

struct sora_db_pool_stats {
	int total;     /* open connections, all endpoints (plus connects under way) */
	int idle;
	int in_use;
	int waiting;   /* threads blocked in sora_db_acquire */
};

/* Creates a pool from a [database] config. Connects to nothing yet: the
 * first acquire (or sora_db_pool_maintain) does. The pool copies what it
 * needs from cfg (the password into memory that is wiped on destroy), so
 * cfg may be freed afterwards. application_name (borrowed) shows up in
 * pg_stat_activity, e.g. "sora-backend". Returns 0, or -1 with err set. */
int sora_db_pool_create(const struct sora_database_config *cfg,
			const char *application_name,
			struct sora_db_pool **pool_r, struct sora_error *err);

/* Closes every idle connection and frees the pool; clears *pool. All
 * connections must have been released. NULL-safe. */
void sora_db_pool_destroy(struct sora_db_pool **pool);

/* Takes a connection, waiting up to timeout_ms for one to become free when
 * the endpoint already has max_conns open (timeout_ms < 0 waits without
 * limit). Opens a new connection when none is idle and there is room;
 * a failed connect returns at once (SORA_ERR_TEMPORARY) rather than
 * waiting. Returns 0 with *conn_r, or -1 with err set. */
int sora_db_acquire(struct sora_db_pool *pool, enum sora_db_target target,
		    int64_t timeout_ms, struct sora_db_conn **conn_r,
		    struct sora_error *err);

/* Gives a connection back and clears *conn. A connection that is broken,
 * or still inside a transaction that cannot be rolled back, is closed
 * instead of being reused. NULL-safe. */
void sora_db_release(struct sora_db_conn **conn);

/* Closes idle connections past their idle time or lifetime, and opens
 * connections to the primary until min_conns are open. Blocking; meant for
 * a periodic timer on a worker thread and for start-up. Returns 0, or -1
 * with err set when the primary could not be reached. */
int sora_db_pool_maintain(struct sora_db_pool *pool, struct sora_error *err);

void sora_db_pool_get_stats(struct sora_db_pool *pool, struct sora_db_pool_stats *stats_r);

/* The libpq handle, for what the helpers do not cover (COPY, pipelines).
 * Borrowed: valid until release. Session state changed through it (SET,
 * LISTEN, prepared statements) outlives the release and reaches the next
 * user, so undo it or call sora_db_conn_discard(); LISTEN in particular
 * belongs on a dedicated connection, not a pooled one (an idle pooled
 * connection's notifications are read and dropped by the liveness check). */
PGconn *sora_db_conn_pg(struct sora_db_conn *conn);

/* "database NAME at HOST:PORT" for messages. Borrowed, valid until release. */
const char *sora_db_conn_describe(const struct sora_db_conn *conn);

/* Marks a connection so that release closes it, e.g. after a protocol
 * error on a COPY or LISTEN the helpers did not see. */
void sora_db_conn_discard(struct sora_db_conn *conn);

/* Runs one statement with text parameters and text results. values[i] are
 * NUL-terminated strings (NULL for SQL NULL). On success returns 0 and
 * *res_r (the caller PQclear()s it; res_r may be NULL when no result is
 * wanted). On failure returns -1 with err set (SORA_ERR_TEMPORARY or
 * SORA_ERR_PERMANENT) and, when sqlstate_r is not NULL, the SQLSTATE copied
 * into it (6 bytes, "" when the failure was not a server error). */
int sora_db_exec(struct sora_db_conn *conn, enum sora_db_class cls,
		 const char *sql, int nparams, const char *const *values,
		 PGresult **res_r, char sqlstate_r[6], struct sora_error *err);

/* The same with binary-capable parameters: lengths and formats as for
 * PQexecParams, result_format 0 (text) or 1 (binary). */
int sora_db_exec_params(struct sora_db_conn *conn, enum sora_db_class cls,
			const char *sql, int nparams, const char *const *values,
			const int *lengths, const int *formats, int result_format,
			PGresult **res_r, char sqlstate_r[6], struct sora_error *err);

/* Statements one connection keeps prepared (sora_db_exec_prepared). */
#define SORA_DB_MAX_PREPARED 16

/* The same as sora_db_exec_params for a statement run very often: the first
 * use on a connection prepares sql under name, later uses only execute it,
 * which spares the server parsing and planning each time. name must be a
 * constant of the program that always goes with the same sql (borrowed for
 * the life of the process), e.g. "sora_deliver_v1". Prepared statements
 * survive transactions and release; a reconnect starts without them. */
int sora_db_exec_prepared(struct sora_db_conn *conn, enum sora_db_class cls,
			  const char *name, const char *sql, int nparams,
			  const char *const *values, const int *lengths, const int *formats,
			  int result_format, PGresult **res_r, char sqlstate_r[6],
			  struct sora_error *err);

/* One execution of a statement in a batch (sora_db_exec_prepared_batch):
 * its parameters in, its outcome out. */
struct sora_db_batch_stmt {
	const char *const *values;
	const int *lengths;
	const int *formats;
	/* Out: rc 0 and the result (the caller PQclears it) when the batch
	 * committed; else rc -1 and res NULL. The statement that failed
	 * also has its sqlstate and err. */
	PGresult *res;
	int rc;
	char sqlstate[6];
	struct sora_error err;
};

/* Runs the prepared statement name (sql, as for sora_db_exec_prepared)
 * once per element of stmts[0..n), all in one transaction, pipelined:
 * BEGIN, the n executions and COMMIT go to the server at once and the
 * results are read after, one round trip instead of n + 2. Not inside a
 * transaction. Returns 0 when the transaction committed; 1 when the server
 * rolled it back (a statement failed: its sqlstate and err say why, the
 * later ones were skipped; or COMMIT failed), so none of it happened; -1
 * when the connection broke, so whether it committed is unknown (err).
 * Everything is sent before any result is read, so each statement's
 * result must be small (a row or a few): results that filled the socket
 * while the server still had statements to read would deadlock. */
int sora_db_exec_prepared_batch(struct sora_db_conn *conn, enum sora_db_class cls,
				const char *name, const char *sql, int nparams,
				struct sora_db_batch_stmt *stmts, size_t n,
				struct sora_error *err);

/* BEGIN with the class's statement timeout for the whole transaction. */
int sora_db_begin(struct sora_db_conn *conn, enum sora_db_class cls,
		  struct sora_error *err);
int sora_db_commit(struct sora_db_conn *conn, struct sora_error *err);
/* Best effort: a failed ROLLBACK marks the connection for discarding. */
void sora_db_rollback(struct sora_db_conn *conn);

/* ---- Pure helpers (no I/O; exposed for tests and for other modules) ---- */

/* Classifies a SQLSTATE ("40001") as SORA_ERR_TEMPORARY or
 * SORA_ERR_PERMANENT. NULL or "" (no server error) is TEMPORARY: it means
 * the connection failed. */
enum sora_error_class sora_db_classify_sqlstate(const char *sqlstate);

/* Classifies a failed result: a broken connection is TEMPORARY whatever the
 * result says; otherwise the result's SQLSTATE decides. res may be NULL. */
enum sora_error_class sora_db_classify(const PGconn *pg, const PGresult *res);

/* Reads a bigint/integer column of a result: the text must be a complete
 * decimal number in int64 range (optional '-'; no spaces, no empty string,
 * no SQL NULL). Returns 0 with *value_r, or -1 with err set
 * (SORA_ERR_PERMANENT, naming the column): a value the program cannot read
 * is a bug or a damaged schema, not something to retry. */
int sora_db_get_i64(const PGresult *res, int row, int col, int64_t *value_r,
		    struct sora_error *err);

/* The statement timeout for a class in milliseconds; 0 means none. Config
 * values of 0 or below (disabled) also give 0. */
int64_t sora_db_class_timeout_ms(const struct sora_database_config *cfg,
				 enum sora_db_class cls);

/* libpq connection parameters for PQconnectdbParams. keywords/values are
 * NULL-terminated arrays pointing into the config, the endpoint and the
 * struct's own buffers; valid as long as those are. */
#define SORA_DB_MAX_PARAMS 16
struct sora_db_conninfo {
	const char *keywords[SORA_DB_MAX_PARAMS + 1];
	const char *values[SORA_DB_MAX_PARAMS + 1];
	char port[16];
	char connect_timeout[16];
	char options[64];
};

/* Fills ci for cfg with host/port taken from ep (NULL: the primary).
 * Empty strings in the config are left out so libpq applies its defaults
 * (and so a password of "" sends none). Returns 0, or -1 with err set
 * (SORA_ERR_INVALID) when a value is out of range. */
int sora_db_conninfo_build(const struct sora_database_config *cfg,
			   const struct sora_db_endpoint *ep,
			   const char *application_name,
			   struct sora_db_conninfo *ci, struct sora_error *err);

/* Writes "database DB at HOST:PORT" (a unix-socket directory is shown as
 * "HOST, port PORT") into buf. */
void sora_db_describe(const char *dbname, const char *host, int port,
		      char *buf, size_t size);

/* Turns a libpq error message (possibly several lines, with "FATAL:  ",
 * "ERROR:  " and 'connection to server at "h", port p failed: ' prefixes)
 * into "<prefix>: <first meaningful line>" in err, with class cls. prefix
 * is usually the sora_db_describe() text. */
void sora_db_format_error(const char *prefix, const char *pq_message,
			  enum sora_error_class cls, struct sora_error *err);

#endif
