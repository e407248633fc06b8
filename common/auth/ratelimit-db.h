/* Authentication rate limiting, the database side: the auth_attempts table
 * (backend/store/migrations/0001_init.sql), shared by every proxy and
 * backend on the database. Rows: (ip, NULL) per address, (NULL, username)
 * per lowercased login name.
 *
 * Every rule of ratelimit.h is applied inside one INSERT ... ON CONFLICT
 * statement, with the database's clock, so concurrent nodes agree and no
 * node's clock matters; each call hands what the database answered to
 * sora_rl_learn() (remaining times, not timestamps).
 *
 * Errors: -1 with err set (the caller treats any failure as the database
 * being unavailable: sora_rl_db_error()).
 *
 * Thread safety: worker threads (blocking). db belongs to the caller. */
#ifndef SORA_AUTH_RATELIMIT_DB_H
#define SORA_AUTH_RATELIMIT_DB_H

#include <stdbool.h>
#include <stdint.h>

#include "common/auth/ratelimit.h"
#include "common/core/error.h"

struct sora_db_conn;

struct sora_rl_db_result {
	bool blocked;                     /* a key is blocked now */
	enum sora_rl_kind blocked_kind;
	bool new_block[2];                /* a block memory did not know (by kind) */
	int failures[2];                  /* counts in the current windows */
};

/* Reads the rows of ip (NULL: none) and user and learns them (a key
 * without a row is learnt as clean). */
int sora_rl_db_read(struct sora_ratelimit *rl, struct sora_db_conn *db, const char *ip,
		    const char *user, uint64_t now, struct sora_rl_db_result *res,
		    struct sora_error *err);

/* Counts a failure of ip and user, blocking them per the rules. */
int sora_rl_db_failure(struct sora_ratelimit *rl, struct sora_db_conn *db, const char *ip,
		       const char *user, const char *protocol, uint64_t now,
		       struct sora_rl_db_result *res, struct sora_error *err);

/* A successful login of user: deletes its row (when one may exist). */
int sora_rl_db_success(struct sora_ratelimit *rl, struct sora_db_conn *db, const char *user,
		       uint64_t now, struct sora_error *err);

/* At most once per SORA_RL_PRUNE_INTERVAL_MS per process: deletes rows
 * whose last failure is older than SORA_RL_KEEP_HOURS and that block
 * nothing (sora-admin stats auth reports over such windows). Errors are
 * ignored (the next call retries). */
#define SORA_RL_PRUNE_INTERVAL_MS (10 * 60 * 1000)
#define SORA_RL_KEEP_HOURS 48
void sora_rl_db_prune(struct sora_db_conn *db, uint64_t now);

#endif
