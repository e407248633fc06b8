/* Authentication rate limiting, the in-memory side: see ratelimit.h. */
#include "common/auth/ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#define RL_BUCKETS 4096              /* power of two */
#define RL_SWEEP_MS 5000
#define RL_MAX_LIMITERS 64           /* servers of one process */

struct rl_entry {
	struct rl_entry *next;
	uint8_t kind;
	int failures;
	uint64_t window_end;          /* failures count until then */
	uint64_t blocked_until;       /* 0: not blocked */
	uint64_t validated;           /* when the database last spoke of it (or a claim) */
	char key[];
};

struct sora_ratelimit {
	pthread_mutex_t lock;
	struct sora_rl_params p;
	unsigned char hash_key[crypto_shorthash_KEYBYTES];
	struct rl_entry *buckets[RL_BUCKETS];
	size_t entries;
	uint64_t last_sweep;
	size_t blocked;               /* counted at the last sweep */
	uint64_t db_down_until;       /* 0: the database is believed up */
};

uint64_t sora_rl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct sora_ratelimit *sora_ratelimit_new(const struct sora_rl_params *params)
{
	struct sora_ratelimit *rl;

	if (sodium_init() < 0)
		return NULL;
	rl = calloc(1, sizeof(*rl));
	if (rl == NULL)
		return NULL;
	rl->p = *params;
	if (rl->p.max_entries == 0)
		rl->p.max_entries = SORA_RL_DEFAULT_MAX_ENTRIES;
	if (rl->p.revalidate_ms <= 0)
		rl->p.revalidate_ms = SORA_RL_REVALIDATE_MS;
	/* Names come from clients: a keyed hash keeps them from piling
	 * into one bucket. */
	crypto_shorthash_keygen(rl->hash_key);
	pthread_mutex_init(&rl->lock, NULL);
	return rl;
}

void sora_ratelimit_free(struct sora_ratelimit **rlp)
{
	struct sora_ratelimit *rl = *rlp;

	if (rl == NULL)
		return;
	for (size_t i = 0; i < RL_BUCKETS; i++) {
		struct rl_entry *e = rl->buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	}
	pthread_mutex_destroy(&rl->lock);
	free(rl);
	*rlp = NULL;
}

const struct sora_auth_rate_limit_config *sora_ratelimit_config(const struct sora_ratelimit *rl)
{
	return &rl->p.cfg;
}

char *sora_rl_user_key(const char *name, size_t len, char key[SORA_RL_KEY_MAX])
{
	if (len > SORA_RL_KEY_MAX - 1)
		len = SORA_RL_KEY_MAX - 1;
	for (size_t i = 0; i < len; i++) {
		char ch = name[i];

		key[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
	}
	key[len] = '\0';
	return key;
}

int64_t sora_rl_delay_ms(const struct sora_auth_rate_limit_config *cfg, int failures)
{
	double d;

	if (!cfg->progressive_delay_enabled || cfg->initial_delay_ms <= 0 ||
	    failures < cfg->delay_start_threshold || failures <= 0)
		return 0;
	d = (double)cfg->initial_delay_ms *
	    pow(cfg->delay_multiplier, (double)(failures - cfg->delay_start_threshold));
	if (cfg->max_delay_ms > 0 && (d > (double)cfg->max_delay_ms || !isfinite(d)))
		return cfg->max_delay_ms;
	return d > 1e12 ? (int64_t)1e12 : (int64_t)d;
}

static size_t bucket_of(const struct sora_ratelimit *rl, enum sora_rl_kind kind, const char *key)
{
	unsigned char h[crypto_shorthash_BYTES], in[SORA_RL_KEY_MAX + 1];
	size_t len = strlen(key);
	uint64_t v;

	if (len > SORA_RL_KEY_MAX - 1)
		len = SORA_RL_KEY_MAX - 1;
	in[0] = (unsigned char)kind;
	memcpy(in + 1, key, len);
	crypto_shorthash(h, in, len + 1, rl->hash_key);
	memcpy(&v, h, sizeof(v));
	return (size_t)(v & (RL_BUCKETS - 1));
}

static struct rl_entry *find(struct sora_ratelimit *rl, enum sora_rl_kind kind, const char *key,
			     struct rl_entry ***link_r)
{
	struct rl_entry **link = &rl->buckets[bucket_of(rl, kind, key)];

	for (; *link != NULL; link = &(*link)->next) {
		if ((*link)->kind == kind && strcmp((*link)->key, key) == 0)
			break;
	}
	if (link_r != NULL)
		*link_r = link;
	return *link;
}

/* An entry is worth keeping while it is blocked, counts failures in a
 * live window, or was validated so recently that forgetting it would
 * cost a query. */
static bool entry_live(const struct sora_ratelimit *rl, const struct rl_entry *e, uint64_t now)
{
	return e->blocked_until > now || (e->failures > 0 && e->window_end > now) ||
	       now - e->validated < (uint64_t)rl->p.revalidate_ms;
}

static void sweep(struct sora_ratelimit *rl, uint64_t now)
{
	size_t blocked = 0;

	rl->last_sweep = now;
	for (size_t i = 0; i < RL_BUCKETS; i++) {
		struct rl_entry **link = &rl->buckets[i];

		while (*link != NULL) {
			struct rl_entry *e = *link;

			if (entry_live(rl, e, now)) {
				blocked += e->blocked_until > now;
				link = &e->next;
				continue;
			}
			*link = e->next;
			free(e);
			rl->entries--;
		}
	}
	rl->blocked = blocked;
}

static void maybe_sweep(struct sora_ratelimit *rl, uint64_t now)
{
	if (now - rl->last_sweep >= RL_SWEEP_MS || rl->last_sweep > now)
		sweep(rl, now);
}

/* The entry of key, created when missing and there is room (NULL if not). */
static struct rl_entry *get(struct sora_ratelimit *rl, enum sora_rl_kind kind, const char *key,
			    uint64_t now)
{
	struct rl_entry **link, *e = find(rl, kind, key, &link);
	size_t len;

	if (e != NULL)
		return e;
	if (rl->entries >= rl->p.max_entries) {
		sweep(rl, now);
		if (rl->entries >= rl->p.max_entries)
			return NULL;
		find(rl, kind, key, &link);
	}
	len = strnlen(key, SORA_RL_KEY_MAX - 1);
	e = calloc(1, sizeof(*e) + len + 1);
	if (e == NULL)
		return NULL;
	e->kind = (uint8_t)kind;
	memcpy(e->key, key, len);
	*link = e;
	rl->entries++;
	return e;
}

static int live_failures(const struct rl_entry *e, uint64_t now)
{
	if (e == NULL || e->window_end <= now)
		return 0;
	return e->failures;
}

void sora_rl_check(struct sora_ratelimit *rl, const char *ip, const char *user, uint64_t now,
		   struct sora_rl_check *out)
{
	const char *keys[2] = { ip, user };
	uint64_t reval = (uint64_t)rl->p.revalidate_ms;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&rl->lock);
	maybe_sweep(rl, now);
	if (rl->db_down_until > now) {
		out->verdict = SORA_RL_DB_DOWN;
		goto out;
	}
	for (int k = 0; k < 2; k++) {
		struct rl_entry *e;
		int n;

		if (keys[k] == NULL)
			continue;
		e = find(rl, (enum sora_rl_kind)k, keys[k], NULL);
		n = live_failures(e, now);
		if (n > out->failures)
			out->failures = n;
		if (e == NULL) {
			out->need_db = true;
			continue;
		}
		if (e->blocked_until > now) {
			if (now - e->validated < reval) {
				out->verdict = SORA_RL_BLOCKED;
				out->blocked_kind = (enum sora_rl_kind)k;
			} else {
				/* This attempt re-validates; the others keep
				 * refusing from memory meanwhile. */
				e->validated = now;
				out->need_db = true;
			}
		} else if (now - e->validated >= reval) {
			out->need_db = true;
		}
	}
	if (out->verdict == SORA_RL_BLOCKED)
		out->need_db = false;
out:
	out->delay_ms = out->verdict == SORA_RL_DB_DOWN ? 0 : sora_rl_delay_ms(&rl->p.cfg, out->failures);
	pthread_mutex_unlock(&rl->lock);
}

bool sora_rl_learn(struct sora_ratelimit *rl, enum sora_rl_kind kind, const char *key,
		   int failures, int64_t window_left_ms, int64_t blocked_left_ms, uint64_t now)
{
	struct rl_entry *e;
	bool started = false;

	if (key == NULL)
		return false;
	pthread_mutex_lock(&rl->lock);
	rl->db_down_until = 0;
	e = get(rl, kind, key, now);
	if (e != NULL) {
		started = blocked_left_ms > 0 && e->blocked_until <= now;
		e->failures = failures > 0 ? failures : 0;
		e->window_end = window_left_ms > 0 ? now + (uint64_t)window_left_ms : 0;
		e->blocked_until = blocked_left_ms > 0 ? now + (uint64_t)blocked_left_ms : 0;
		e->validated = now;
		if (started)
			rl->blocked++;
	} else {
		started = blocked_left_ms > 0;
	}
	pthread_mutex_unlock(&rl->lock);
	return started;
}

bool sora_rl_blocked(struct sora_ratelimit *rl, enum sora_rl_kind kind, const char *key,
		     uint64_t now)
{
	struct rl_entry *e;
	bool blocked;

	if (key == NULL)
		return false;
	pthread_mutex_lock(&rl->lock);
	e = find(rl, kind, key, NULL);
	blocked = e != NULL && e->blocked_until > now;
	pthread_mutex_unlock(&rl->lock);
	return blocked;
}

bool sora_rl_may_have_row(struct sora_ratelimit *rl, enum sora_rl_kind kind, const char *key,
			  uint64_t now)
{
	struct rl_entry *e;
	bool may;

	if (key == NULL)
		return false;
	pthread_mutex_lock(&rl->lock);
	e = find(rl, kind, key, NULL);
	/* A row may also exist past its window (the count restarts at the
	 * next failure); deleting it then is harmless but costs a query,
	 * and an expired count no longer matters. */
	may = e == NULL || e->blocked_until > now || live_failures(e, now) > 0 ||
	      now - e->validated >= (uint64_t)rl->p.revalidate_ms;
	pthread_mutex_unlock(&rl->lock);
	return may;
}

bool sora_rl_db_error(struct sora_ratelimit *rl, uint64_t now)
{
	bool started;

	pthread_mutex_lock(&rl->lock);
	started = rl->db_down_until <= now;
	rl->db_down_until = now + (uint64_t)(rl->p.cfg.db_error_threshold_ms > 0
					     ? rl->p.cfg.db_error_threshold_ms : 0);
	pthread_mutex_unlock(&rl->lock);
	return started;
}

size_t sora_rl_entries(struct sora_ratelimit *rl)
{
	size_t n;

	pthread_mutex_lock(&rl->lock);
	n = rl->entries;
	pthread_mutex_unlock(&rl->lock);
	return n;
}

size_t sora_rl_blocked_count(struct sora_ratelimit *rl, uint64_t now)
{
	size_t n;

	pthread_mutex_lock(&rl->lock);
	maybe_sweep(rl, now);
	n = rl->blocked;
	pthread_mutex_unlock(&rl->lock);
	return n;
}

/* ---- registry ---- */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	const struct sora_server_config *srv;
	struct sora_ratelimit *rl;
} registry[RL_MAX_LIMITERS];

struct sora_ratelimit *sora_ratelimit_for_server(const struct sora_server_config *srv,
						 bool *failed_r)
{
	struct sora_ratelimit *rl = NULL;
	struct sora_rl_params params = { .cfg = srv->auth_rate_limit };

	*failed_r = false;
	if (!srv->auth_rate_limit.enabled)
		return NULL;
	pthread_mutex_lock(&registry_lock);
	for (size_t i = 0; i < RL_MAX_LIMITERS; i++) {
		if (registry[i].srv == srv) {
			rl = registry[i].rl;
			goto out;
		}
		if (registry[i].srv == NULL) {
			rl = sora_ratelimit_new(&params);
			if (rl != NULL) {
				registry[i].srv = srv;
				registry[i].rl = rl;
			}
			goto out;
		}
	}
out:
	pthread_mutex_unlock(&registry_lock);
	*failed_r = rl == NULL;
	return rl;
}
