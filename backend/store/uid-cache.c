/* The UID lists of recently opened large mailboxes (uid-cache.h). */
#include "backend/store/uid-cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 1024

struct node {
	struct node *next_in_bucket;
	struct node *lru_prev, *lru_next;   /* lru_prev: more recently used */
	int64_t account_id;
	char *name;
	uint64_t checked_ms;
	struct sora_uid_cache_entry e;
};

struct sora_uid_cache {
	pthread_mutex_t lock;
	size_t max_bytes, bytes, entries;
	struct node *buckets[BUCKETS];
	struct node *mru, *lru;
};

static size_t node_bytes(const struct node *n)
{
	return n->e.count * sizeof(uint32_t);
}

static unsigned int bucket_of(int64_t account_id, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)account_id;

	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (unsigned int)(h % BUCKETS);
}

struct sora_uid_cache *sora_uid_cache_new(size_t max_bytes)
{
	struct sora_uid_cache *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	pthread_mutex_init(&c->lock, NULL);
	c->max_bytes = max_bytes;
	return c;
}

static void node_free(struct node *n)
{
	free(n->name);
	free(n->e.uids);
	free(n);
}

void sora_uid_cache_free(struct sora_uid_cache **cache)
{
	struct sora_uid_cache *c = *cache;

	if (c == NULL)
		return;
	for (struct node *n = c->mru, *next; n != NULL; n = next) {
		next = n->lru_next;
		node_free(n);
	}
	pthread_mutex_destroy(&c->lock);
	free(c);
	*cache = NULL;
}

static struct node **find(struct sora_uid_cache *c, int64_t account_id, const char *name)
{
	struct node **pp = &c->buckets[bucket_of(account_id, name)];

	while (*pp != NULL && ((*pp)->account_id != account_id || strcmp((*pp)->name, name) != 0))
		pp = &(*pp)->next_in_bucket;
	return pp;
}

static void lru_unlink(struct sora_uid_cache *c, struct node *n)
{
	if (n->lru_prev != NULL)
		n->lru_prev->lru_next = n->lru_next;
	else
		c->mru = n->lru_next;
	if (n->lru_next != NULL)
		n->lru_next->lru_prev = n->lru_prev;
	else
		c->lru = n->lru_prev;
	n->lru_prev = n->lru_next = NULL;
}

static void lru_push_front(struct sora_uid_cache *c, struct node *n)
{
	n->lru_prev = NULL;
	n->lru_next = c->mru;
	if (c->mru != NULL)
		c->mru->lru_prev = n;
	c->mru = n;
	if (c->lru == NULL)
		c->lru = n;
}

/* Unlinks *pp (from its bucket and the LRU list) and frees it. */
static void drop(struct sora_uid_cache *c, struct node **pp)
{
	struct node *n = *pp;

	*pp = n->next_in_bucket;
	lru_unlink(c, n);
	c->bytes -= node_bytes(n);
	c->entries--;
	node_free(n);
}

int sora_uid_cache_get(struct sora_uid_cache *c, int64_t account_id, const char *name,
		       uint64_t now_ms, struct sora_uid_cache_entry *out)
{
	struct node **pp;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	if (c == NULL)
		return 0;
	pthread_mutex_lock(&c->lock);
	pp = find(c, account_id, name);
	if (*pp != NULL && now_ms > (*pp)->checked_ms + SORA_UID_CACHE_MAX_AGE_MS) {
		drop(c, pp);
	} else if (*pp != NULL) {
		struct node *n = *pp;

		*out = n->e;
		out->uids = malloc(node_bytes(n));
		if (out->uids == NULL) {
			memset(out, 0, sizeof(*out));
			ret = -1;
		} else {
			memcpy(out->uids, n->e.uids, node_bytes(n));
			lru_unlink(c, n);
			lru_push_front(c, n);
			ret = 1;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

void sora_uid_cache_put(struct sora_uid_cache *c, int64_t account_id, const char *name,
			uint64_t now_ms, const struct sora_uid_cache_entry *e)
{
	size_t need = e->count * sizeof(uint32_t);
	struct node *n = NULL, **pp;

	if (c == NULL)
		return;
	/* The copy is made outside the lock. */
	if (e->count >= SORA_UID_CACHE_MIN_UIDS && need <= c->max_bytes) {
		n = calloc(1, sizeof(*n));
		if (n != NULL) {
			n->name = strdup(name);
			n->e = *e;
			n->e.uids = malloc(need);
			if (n->name == NULL || n->e.uids == NULL) {
				node_free(n);
				n = NULL;
			} else {
				memcpy(n->e.uids, e->uids, need);
				n->account_id = account_id;
				n->checked_ms = now_ms;
			}
		}
	}
	pthread_mutex_lock(&c->lock);
	pp = find(c, account_id, name);
	if (*pp != NULL)
		drop(c, pp);
	if (n != NULL) {
		while (c->bytes + need > c->max_bytes && c->lru != NULL)
			drop(c, find(c, c->lru->account_id, c->lru->name));
		n->next_in_bucket = c->buckets[bucket_of(account_id, name)];
		c->buckets[bucket_of(account_id, name)] = n;
		lru_push_front(c, n);
		c->bytes += need;
		c->entries++;
	}
	pthread_mutex_unlock(&c->lock);
}

void sora_uid_cache_stats(struct sora_uid_cache *c, size_t *entries_r, size_t *bytes_r)
{
	pthread_mutex_lock(&c->lock);
	*entries_r = c->entries;
	*bytes_r = c->bytes;
	pthread_mutex_unlock(&c->lock);
}

void sora_uid_cache_entry_free(struct sora_uid_cache_entry *e)
{
	free(e->uids);
	e->uids = NULL;
	e->count = 0;
}
