/* Search rate limit: see imap-search-rate.h. */
#include "backend/imap/imap-search-rate.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "common/metrics/metrics.h"

#define BUCKETS 4096   /* hash chains; entries are at most SORA_SEARCH_RATE_USERS */

struct rate_user {
	struct rate_user *next;
	const void *scope;
	int64_t account;
	int64_t window_ms;           /* the window the steps were counted for */
	uint64_t head;               /* the newest step counted (step number) */
	uint64_t last_ms;            /* last search */
	uint32_t counts[SORA_SEARCH_RATE_STEPS];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct rate_user *table[BUCKETS];
static size_t tracked;
static uint64_t last_sweep_ms;
static bool warned_full;

static size_t bucket_of(const void *scope, int64_t account)
{
	uint64_t h = (uint64_t)account * UINT64_C(0x9E3779B97F4A7C15) ^ (uint64_t)(uintptr_t)scope;

	h ^= h >> 29;
	return (size_t)(h % BUCKETS);
}

/* Drops users idle for longer than their window. Lock held. */
static void sweep(uint64_t now_ms)
{
	for (size_t b = 0; b < BUCKETS; b++) {
		struct rate_user **up = &table[b];

		while (*up != NULL) {
			struct rate_user *u = *up;

			if (now_ms - u->last_ms >= (uint64_t)u->window_ms) {
				*up = u->next;
				free(u);
				tracked--;
			} else {
				up = &u->next;
			}
		}
	}
	last_sweep_ms = now_ms;
}

/* Moves u's window forward to step now: steps that left it are zeroed. */
static void advance(struct rate_user *u, uint64_t now)
{
	if (now <= u->head)
		return;
	if (now - u->head >= SORA_SEARCH_RATE_STEPS) {
		memset(u->counts, 0, sizeof(u->counts));
	} else {
		for (uint64_t s = u->head + 1; s <= now; s++)
			u->counts[s % SORA_SEARCH_RATE_STEPS] = 0;
	}
	u->head = now;
}

bool sora_search_rate_check(const void *scope, int64_t account, int64_t limit, int64_t window_ms,
			    uint64_t now_ms, const char *protocol, unsigned int *wait_s_r)
{
	uint64_t step_ms, now, sum = 0;
	struct rate_user *u;
	size_t b;
	bool ok = true;

	*wait_s_r = 0;
	if (limit <= 0)
		return true;
	if (window_ms < SORA_SEARCH_RATE_STEPS)
		window_ms = SORA_SEARCH_RATE_STEPS;
	step_ms = (uint64_t)window_ms / SORA_SEARCH_RATE_STEPS;
	now = now_ms / step_ms;
	b = bucket_of(scope, account);

	pthread_mutex_lock(&lock);
	if (now_ms - last_sweep_ms >= (uint64_t)window_ms)
		sweep(now_ms);
	for (u = table[b]; u != NULL; u = u->next)
		if (u->scope == scope && u->account == account)
			break;
	if (u != NULL && u->window_ms != window_ms) {
		/* The window changed (a reload): start counting afresh. */
		memset(u->counts, 0, sizeof(u->counts));
		u->window_ms = window_ms;
		u->head = now;
	}
	if (u == NULL) {
		if (tracked >= SORA_SEARCH_RATE_USERS)
			sweep(now_ms);
		if (tracked >= SORA_SEARCH_RATE_USERS || (u = calloc(1, sizeof(*u))) == NULL) {
			bool warn = !warned_full;

			warned_full = true;
			pthread_mutex_unlock(&lock);
			if (warn)
				sora_warn(NULL, "search rate limit: %zu users tracked, the table is full; "
					  "searches of new users are not limited until some go idle",
					  (size_t)SORA_SEARCH_RATE_USERS);
			return true;
		}
		u->scope = scope;
		u->account = account;
		u->window_ms = window_ms;
		u->head = now;
		u->next = table[b];
		table[b] = u;
		tracked++;
	}
	advance(u, now);
	u->last_ms = now_ms;
	for (size_t i = 0; i < SORA_SEARCH_RATE_STEPS; i++)
		sum += u->counts[i];
	if (sum < (uint64_t)limit) {
		u->counts[now % SORA_SEARCH_RATE_STEPS]++;
	} else {
		/* The oldest steps leave first: find the one whose leaving
		 * brings the count under the limit. Step s leaves the window
		 * when step s + STEPS begins. */
		uint64_t first = now - (SORA_SEARCH_RATE_STEPS - 1), s = first, wait_ms;

		if (now < SORA_SEARCH_RATE_STEPS - 1)
			s = first = 0;
		for (; s <= now; s++) {
			sum -= u->counts[s % SORA_SEARCH_RATE_STEPS];
			if (sum < (uint64_t)limit)
				break;
		}
		wait_ms = (s + SORA_SEARCH_RATE_STEPS) * step_ms - now_ms;
		*wait_s_r = (unsigned int)((wait_ms + 999) / 1000);
		if (*wait_s_r == 0)
			*wait_s_r = 1;
		ok = false;
	}
	pthread_mutex_unlock(&lock);
	if (!ok)
		sora_metric_inc(sora_metric_with(sora_metric_counter("search_rate_limited_total",
								     "Searches refused by search_rate_limit_per_min.",
								     "protocol"),
						 protocol));
	return ok;
}

size_t sora_search_rate_tracked(void)
{
	size_t n;

	pthread_mutex_lock(&lock);
	n = tracked;
	pthread_mutex_unlock(&lock);
	return n;
}

void sora_search_rate_reset(void)
{
	pthread_mutex_lock(&lock);
	for (size_t b = 0; b < BUCKETS; b++) {
		while (table[b] != NULL) {
			struct rate_user *u = table[b];

			table[b] = u->next;
			free(u);
		}
	}
	tracked = 0;
	last_sweep_ms = 0;
	warned_full = false;
	pthread_mutex_unlock(&lock);
}
