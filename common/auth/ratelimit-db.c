/* Authentication rate limiting, the database side: see ratelimit-db.h. */
#include "common/auth/ratelimit-db.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "common/db/db.h"
#include "common/metrics/metrics.h"

/* Every statement this file sends, so that "a flood does not become a
 * database flood" can be watched (and tested) exactly. */
static pthread_once_t queries_once = PTHREAD_ONCE_INIT;
static struct sora_metric_series *m_queries;

static void queries_init(void)
{
	m_queries = sora_metric_with(sora_metric_counter(
		"sora_auth_ratelimit_db_queries_total",
		"Statements the authentication rate limiter sent to the database.", ""));
}

static void count_query(void)
{
	pthread_once(&queries_once, queries_init);
	sora_metric_inc(m_queries);
}

#define MS "* interval '1 millisecond'"
#define STR_(x) #x
#define STR(x) STR_(x)
#define KEEP_HOURS STR(SORA_RL_KEEP_HOURS)

/* Milliseconds from now until a timestamp expression, at least 0. */
#define LEFT_MS(ts) "greatest(0, coalesce(ceil(extract(epoch FROM (" ts ") - now()) * 1000), 0))::bigint"

/* The window of row a: $4 (address) or $5 (name), in ms. */
#define WINDOW "(CASE WHEN a.ip IS NULL THEN $5::bigint ELSE $4::bigint END " MS ")"
#define IN_WINDOW "(a.first_failure_at + " WINDOW " > now())"
/* The count and window start after this failure. */
#define NEW_COUNT "(CASE WHEN " IN_WINDOW " THEN a.failure_count + 1 ELSE 1 END)"
#define NEW_FIRST "(CASE WHEN " IN_WINDOW " THEN a.first_failure_at ELSE now() END)"

/* $1 ip (or NULL), $2 name (or NULL), $3 protocol, $4 ip_window_ms,
 * $5 username_window_ms, $6 max_attempts_per_ip, $7 max_attempts_per_username,
 * $8 fast_block_threshold, $9 fast_block_ms. The longest of the blocks
 * that apply wins; a block in force is never shortened. A new row counts
 * one failure and gets the blocks one failure earns (thresholds of 1). */
static const char failure_sql[] =
	"INSERT INTO auth_attempts AS a (ip, username, failure_count, first_failure_at,"
	" last_failure_at, blocked_until, last_protocol)"
	" SELECT k.ip, k.username, 1, now(), now(),"
	"  CASE WHEN k.ip IS NOT NULL THEN greatest("
	"    CASE WHEN $8::int > 0 AND 1 >= $8::int THEN now() + $9::bigint " MS " END,"
	"    CASE WHEN $6::int > 0 AND 1 >= $6::int THEN now() + $4::bigint " MS " END)"
	"  ELSE CASE WHEN $7::int > 0 AND 1 >= $7::int THEN now() + $5::bigint " MS " END END,"
	"  $3"
	" FROM (VALUES ($1::inet, NULL::text), (NULL::inet, $2::text)) AS k(ip, username)"
	" WHERE k.ip IS NOT NULL OR k.username IS NOT NULL"
	" ON CONFLICT (ip, username) DO UPDATE SET"
	"  failure_count = " NEW_COUNT ","
	"  first_failure_at = " NEW_FIRST ","
	"  last_failure_at = now(),"
	"  last_protocol = $3,"
	"  blocked_until = greatest("
	"    CASE WHEN a.blocked_until > now() THEN a.blocked_until END,"
	"    CASE WHEN a.ip IS NOT NULL AND $8::int > 0 AND " NEW_COUNT " >= $8::int"
	"      THEN now() + $9::bigint " MS " END,"
	"    CASE WHEN a.ip IS NOT NULL AND $6::int > 0 AND " NEW_COUNT " >= $6::int"
	"      THEN " NEW_FIRST " + $4::bigint " MS " END,"
	"    CASE WHEN a.ip IS NULL AND $7::int > 0 AND " NEW_COUNT " >= $7::int"
	"      THEN " NEW_FIRST " + $5::bigint " MS " END)"
	" RETURNING a.ip IS NOT NULL, a.failure_count,"
	"  " LEFT_MS("a.first_failure_at + " WINDOW) ","
	"  " LEFT_MS("a.blocked_until");

/* The same columns for reading: $1 ip, $2 name, $3 ip_window_ms,
 * $4 username_window_ms. */
static const char read_sql[] =
	"SELECT a.ip IS NOT NULL, a.failure_count,"
	"  " LEFT_MS("a.first_failure_at + (CASE WHEN a.ip IS NULL THEN $4::bigint"
		     " ELSE $3::bigint END " MS ")") ","
	"  " LEFT_MS("a.blocked_until")
	" FROM auth_attempts a"
	" WHERE (a.ip = $1::inet AND a.username IS NULL)"
	"    OR (a.ip IS NULL AND a.username = $2::text)";

struct params {
	char ipw[24], uw[24], maxip[16], maxu[16], fast[16], fastms[24];
	const char *values[9];
};

static void make_params(struct params *p, const struct sora_auth_rate_limit_config *cfg,
			const char *ip, const char *user, const char *protocol)
{
	snprintf(p->ipw, sizeof(p->ipw), "%" PRId64, cfg->ip_window_ms);
	snprintf(p->uw, sizeof(p->uw), "%" PRId64, cfg->username_window_ms);
	snprintf(p->maxip, sizeof(p->maxip), "%d", cfg->max_attempts_per_ip);
	snprintf(p->maxu, sizeof(p->maxu), "%d", cfg->max_attempts_per_username);
	snprintf(p->fast, sizeof(p->fast), "%d", cfg->fast_block_threshold);
	snprintf(p->fastms, sizeof(p->fastms), "%" PRId64, cfg->fast_block_ms);
	p->values[0] = ip;
	p->values[1] = user;
	p->values[2] = protocol;
	p->values[3] = p->ipw;
	p->values[4] = p->uw;
	p->values[5] = p->maxip;
	p->values[6] = p->maxu;
	p->values[7] = p->fast;
	p->values[8] = p->fastms;
}

/* Learns every returned row, and a clean state for keys without one. */
static int learn_rows(struct sora_ratelimit *rl, PGresult *res, const char *ip, const char *user,
		      uint64_t now, struct sora_rl_db_result *out, struct sora_error *err)
{
	bool seen[2] = { false, false };
	const char *keys[2] = { ip, user };

	memset(out, 0, sizeof(*out));
	for (int i = 0; i < PQntuples(res); i++) {
		enum sora_rl_kind kind = PQgetvalue(res, i, 0)[0] == 't' ? SORA_RL_IP : SORA_RL_USER;
		int64_t count, window_left, blocked_left;

		if (sora_db_get_i64(res, i, 1, &count, err) < 0 ||
		    sora_db_get_i64(res, i, 2, &window_left, err) < 0 ||
		    sora_db_get_i64(res, i, 3, &blocked_left, err) < 0)
			return -1;
		if (keys[kind] == NULL)
			continue;
		seen[kind] = true;
		if (window_left <= 0)
			count = 0;
		out->failures[kind] = (int)(count > INT32_MAX ? INT32_MAX : count);
		out->new_block[kind] = sora_rl_learn(rl, kind, keys[kind], out->failures[kind],
						     window_left, blocked_left, now);
		if (blocked_left > 0 && !out->blocked) {
			out->blocked = true;
			out->blocked_kind = kind;
		}
	}
	for (int k = 0; k < 2; k++) {
		if (keys[k] != NULL && !seen[k])
			sora_rl_learn(rl, (enum sora_rl_kind)k, keys[k], 0, 0, 0, now);
	}
	return 0;
}

int sora_rl_db_read(struct sora_ratelimit *rl, struct sora_db_conn *db, const char *ip,
		    const char *user, uint64_t now, struct sora_rl_db_result *out,
		    struct sora_error *err)
{
	struct params p;
	PGresult *res = NULL;
	int ret;

	const char *values[4];

	make_params(&p, sora_ratelimit_config(rl), ip, user, "");
	values[0] = ip;
	values[1] = user;
	values[2] = p.ipw;
	values[3] = p.uw;
	count_query();
	if (sora_db_exec_prepared(db, SORA_DB_CLASS_DEFAULT, "sora_auth_rl_read_v1", read_sql, 4,
				  values, NULL, NULL, 0, &res, NULL, err) < 0)
		return -1;
	ret = learn_rows(rl, res, ip, user, now, out, err);
	PQclear(res);
	return ret;
}

int sora_rl_db_failure(struct sora_ratelimit *rl, struct sora_db_conn *db, const char *ip,
		       const char *user, const char *protocol, uint64_t now,
		       struct sora_rl_db_result *out, struct sora_error *err)
{
	struct params p;
	PGresult *res = NULL;
	int ret;

	make_params(&p, sora_ratelimit_config(rl), ip, user, protocol);
	count_query();
	if (sora_db_exec_prepared(db, SORA_DB_CLASS_WRITE, "sora_auth_rl_failure_v1", failure_sql,
				  9, p.values, NULL, NULL, 0, &res, NULL, err) < 0)
		return -1;
	ret = learn_rows(rl, res, ip, user, now, out, err);
	PQclear(res);
	return ret;
}

int sora_rl_db_success(struct sora_ratelimit *rl, struct sora_db_conn *db, const char *user,
		       uint64_t now, struct sora_error *err)
{
	const char *values[1] = { user };

	if (user == NULL || !sora_rl_may_have_row(rl, SORA_RL_USER, user, now))
		return 0;
	count_query();
	if (sora_db_exec_prepared(db, SORA_DB_CLASS_WRITE, "sora_auth_rl_success_v1",
				  "DELETE FROM auth_attempts WHERE ip IS NULL AND username = $1::text",
				  1, values, NULL, NULL, 0, NULL, NULL, err) < 0)
		return -1;
	sora_rl_learn(rl, SORA_RL_USER, user, 0, 0, 0, now);
	return 0;
}

void sora_rl_db_prune(struct sora_db_conn *db, uint64_t now)
{
	static atomic_uint_fast64_t next_prune;
	uint64_t due = atomic_load(&next_prune);
	struct sora_error err;

	if (now < due || !atomic_compare_exchange_strong(&next_prune, &due,
							 now + SORA_RL_PRUNE_INTERVAL_MS))
		return;
	count_query();
	sora_db_exec(db, SORA_DB_CLASS_WRITE,
		     "DELETE FROM auth_attempts WHERE last_failure_at < now() - interval '"
		     KEEP_HOURS " hours' AND (blocked_until IS NULL OR blocked_until < now())",
		     0, NULL, NULL, NULL, &err);
}
