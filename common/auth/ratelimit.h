/* Authentication rate limiting ([servers.X.auth_rate_limit]).
 *
 * Two halves:
 *   - this file: the in-memory side, pure logic over a clock the caller
 *     passes in (milliseconds of a monotonic clock), unit-testable with a
 *     fake one. It decides, without any I/O, whether an attempt is refused
 *     at once (a key known to be blocked, or the database known to be
 *     down), how long it is delayed first, and whether the database must
 *     be asked (the key was not validated within the last second);
 *   - ratelimit-db.c: the auth_attempts table, which is the truth shared
 *     by every proxy and backend on the database (see there).
 *
 * Keys: the client address (after the PROXY protocol) and the login name
 * lowercased. The rules (docs/security.md, "Authentication rate limiting"):
 *   - a key's window starts at its first failure and lasts
 *     ip_window_duration / username_window_duration; its count starts
 *     again after it;
 *   - an address with fast_block_threshold failures in its window is
 *     blocked for fast_block_duration from that failure;
 *   - an address with max_attempts_per_ip failures in its window, or a name
 *     with max_attempts_per_username, is blocked until the window ends
 *     (each later failure in the window keeps the longest block);
 *   - after delay_start_threshold failures (the larger count of the
 *     address and the name), attempts are delayed initial_delay *
 *     multiplier^(failures - threshold), at most max_delay;
 *   - a success deletes the name's counter (never the address's).
 *
 * Memory is bounded: at most max_entries keys per limiter; expired keys are
 * swept every few seconds, and when the table is full a new key is not
 * remembered (its attempts then ask the database every time, which stays
 * correct). A key known to be blocked is re-validated against the
 * database at most once per revalidate_ms, so an unblock (sora-admin auth
 * unblock deletes the rows) takes effect within about that, and a flood
 * from a blocked key costs at most one query per revalidate_ms.
 *
 * Thread safety: every function may be called from any thread (one mutex
 * per limiter). Limiters live until sora_ratelimit_free(). */
#ifndef SORA_AUTH_RATELIMIT_H
#define SORA_AUTH_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config/config.h"

/* Longest key kept: an IP text or a login name (shorter than 256). */
#define SORA_RL_KEY_MAX 256
/* Keys one limiter remembers at most. */
#define SORA_RL_DEFAULT_MAX_ENTRIES 100000
/* How old the database's word on a key may be. */
#define SORA_RL_REVALIDATE_MS 1000

enum sora_rl_kind {
	SORA_RL_IP = 0,
	SORA_RL_USER = 1,
};

struct sora_rl_params {
	struct sora_auth_rate_limit_config cfg;   /* copied */
	size_t max_entries;                       /* 0: SORA_RL_DEFAULT_MAX_ENTRIES */
	int64_t revalidate_ms;                    /* 0: SORA_RL_REVALIDATE_MS */
};

enum sora_rl_verdict {
	SORA_RL_ALLOW = 0,        /* verify the credentials (after delay_ms) */
	SORA_RL_BLOCKED,          /* refuse as a wrong password, no hashing, no database */
	SORA_RL_DB_DOWN,          /* refuse as a temporary failure, no database */
};

struct sora_rl_check {
	enum sora_rl_verdict verdict;
	enum sora_rl_kind blocked_kind;   /* BLOCKED: which key */
	int64_t delay_ms;                 /* progressive delay before answering/verifying */
	bool need_db;                     /* ALLOW: read the keys' rows first */
	int failures;                     /* the larger known count of the two keys */
};

struct sora_ratelimit;

/* NULL when out of memory. */
struct sora_ratelimit *sora_ratelimit_new(const struct sora_rl_params *params);
void sora_ratelimit_free(struct sora_ratelimit **rl);
const struct sora_auth_rate_limit_config *sora_ratelimit_config(const struct sora_ratelimit *rl);

/* Normalises a login name into a key: lowercased ASCII, cut at
 * SORA_RL_KEY_MAX - 1 bytes. Returns key. */
char *sora_rl_user_key(const char *name, size_t len, char key[SORA_RL_KEY_MAX]);

/* The delay after `failures` failures under cfg (0 when disabled or below
 * the threshold). Pure. */
int64_t sora_rl_delay_ms(const struct sora_auth_rate_limit_config *cfg, int failures);

/* Decides an attempt of ip (NULL: none, a unix socket) and user (NULL:
 * none) at now. A blocked key whose knowledge is stale is handed to this
 * caller to re-validate (need_db), and others keep refusing from memory
 * meanwhile. */
void sora_rl_check(struct sora_ratelimit *rl, const char *ip, const char *user, uint64_t now,
		   struct sora_rl_check *out);

/* What the database says about a key at now: failures in its window,
 * milliseconds until the window ends and until a block ends (0: none).
 * failures = 0 and no block for a key without a row. Returns true when
 * this starts a block memory did not know of (for counting blocks). */
bool sora_rl_learn(struct sora_ratelimit *rl, enum sora_rl_kind kind, const char *key,
		   int failures, int64_t window_left_ms, int64_t blocked_left_ms, uint64_t now);

/* Whether key is blocked at now according to memory. */
bool sora_rl_blocked(struct sora_ratelimit *rl, enum sora_rl_kind kind, const char *key,
		     uint64_t now);
/* Whether memory knows of failures or a block of key (a success must then
 * delete its row); true also when the key is unknown (the table may have
 * been full). */
bool sora_rl_may_have_row(struct sora_ratelimit *rl, enum sora_rl_kind kind, const char *key,
			  uint64_t now);

/* The database failed at now: refuse (DB_DOWN) until now +
 * db_error_threshold. Returns true when this started a new outage (for the
 * log line), false while one is already running. */
bool sora_rl_db_error(struct sora_ratelimit *rl, uint64_t now);

/* Keys remembered, and keys blocked (as of the last sweep, at most a few
 * seconds old, plus blocks learnt since). */
size_t sora_rl_entries(struct sora_ratelimit *rl);
size_t sora_rl_blocked_count(struct sora_ratelimit *rl, uint64_t now);

/* ---- one limiter per server config (the login path's registry) ---- */

/* The limiter of srv, created on first use; NULL when srv's limiter is
 * disabled (or memory ran out: then logins are refused, see login.c).
 * Lives until process exit. Any thread. */
struct sora_ratelimit *sora_ratelimit_for_server(const struct sora_server_config *srv,
						 bool *failed_r);

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t sora_rl_now(void);

#endif
