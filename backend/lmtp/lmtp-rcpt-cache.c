#include "backend/lmtp/lmtp-rcpt-cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The strings are stored back to back, each NUL-terminated: the address,
 * the primary address, the detail. */
struct entry {
	uint64_t hash;
	uint64_t generation;
	int64_t found_ms;            /* CLOCK_MONOTONIC */
	int64_t account_id;
	bool has_detail;
	size_t primary_at, detail_at, detail_len;   /* lengths without the NUL */
	char address[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *slots[SORA_LMTP_RCPT_CACHE_SLOTS];
static uint64_t generation = 1;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* FNV-1a. */
static uint64_t hash_of(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

void sora_lmtp_rcpt_cache_flush(void)
{
	pthread_mutex_lock(&lock);
	generation++;
	pthread_mutex_unlock(&lock);
}

uint64_t sora_lmtp_rcpt_cache_generation(void)
{
	uint64_t g;

	pthread_mutex_lock(&lock);
	g = generation;
	pthread_mutex_unlock(&lock);
	return g;
}

bool sora_lmtp_rcpt_cache_get(const char *address, int64_t ttl_ms,
			      struct sora_store_recipient *who_r)
{
	uint64_t h = hash_of(address);
	const struct entry *e;
	bool found = false;
	int64_t now = now_ms();

	pthread_mutex_lock(&lock);
	e = slots[h % SORA_LMTP_RCPT_CACHE_SLOTS];
	if (e != NULL && e->hash == h && e->generation == generation &&
	    now - e->found_ms < ttl_ms && strcmp(e->address, address) == 0) {
		memset(who_r, 0, sizeof(*who_r));
		who_r->account_id = e->account_id;
		who_r->has_detail = e->has_detail;
		memcpy(who_r->primary_address, e->address + e->primary_at,
		       e->detail_at - e->primary_at);
		memcpy(who_r->detail, e->address + e->detail_at, e->detail_len + 1);
		found = true;
	}
	pthread_mutex_unlock(&lock);
	return found;
}

void sora_lmtp_rcpt_cache_put(const char *address, uint64_t gen,
			      const struct sora_store_recipient *who)
{
	size_t alen = strlen(address) + 1,
	       plen = strnlen(who->primary_address, sizeof(who->primary_address) - 1) + 1,
	       dlen = strnlen(who->detail, sizeof(who->detail) - 1) + 1;
	struct entry *e = malloc(sizeof(*e) + alen + plen + dlen), *old = NULL;

	if (e == NULL)
		return;   /* not kept: the next RCPT looks it up again */
	e->hash = hash_of(address);
	e->generation = gen;
	e->found_ms = now_ms();
	e->account_id = who->account_id;
	e->has_detail = who->has_detail;
	e->primary_at = alen;
	e->detail_at = alen + plen;
	e->detail_len = dlen - 1;
	memcpy(e->address, address, alen);
	memcpy(e->address + e->primary_at, who->primary_address, plen - 1);
	e->address[e->detail_at - 1] = '\0';
	memcpy(e->address + e->detail_at, who->detail, dlen - 1);
	e->address[e->detail_at + dlen - 1] = '\0';
	pthread_mutex_lock(&lock);
	if (gen == generation) {
		old = slots[e->hash % SORA_LMTP_RCPT_CACHE_SLOTS];
		slots[e->hash % SORA_LMTP_RCPT_CACHE_SLOTS] = e;
		e = NULL;
	}
	pthread_mutex_unlock(&lock);
	free(old);
	free(e);
}

void sora_lmtp_rcpt_cache_clear(void)
{
	pthread_mutex_lock(&lock);
	generation++;
	for (size_t i = 0; i < SORA_LMTP_RCPT_CACHE_SLOTS; i++) {
		free(slots[i]);
		slots[i] = NULL;
	}
	pthread_mutex_unlock(&lock);
}
