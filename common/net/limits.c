/* Per-IP connection counts for one listener, shared by all loop threads.
 *
 * A small chained hash table behind one mutex: it is touched twice per
 * connection (accept and close), never per command, so contention is not a
 * concern; entries are removed when their count drops to zero so the table
 * only holds addresses that are connected right now. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/net/net-private.h"

#define IP_TABLE_BUCKETS 4096

struct ip_entry {
	struct ip_entry *next;
	struct sora_ip ip;
	int64_t count;
};

struct sora_ip_table {
	pthread_mutex_t lock;
	struct ip_entry *buckets[IP_TABLE_BUCKETS];
};

static size_t ip_hash(const struct sora_ip *ip)
{
	/* FNV-1a over the 16 bytes. Peers can choose their addresses only
	 * within the ranges they own, so a simple hash is adequate. */
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < sizeof(ip->b); i++) {
		h ^= ip->b[i];
		h *= 1099511628211ULL;
	}
	return (size_t)(h % IP_TABLE_BUCKETS);
}

struct sora_ip_table *sora_ip_table_new(void)
{
	struct sora_ip_table *t = calloc(1, sizeof(*t));

	if (t != NULL)
		pthread_mutex_init(&t->lock, NULL);
	return t;
}

void sora_ip_table_free(struct sora_ip_table **tp)
{
	struct sora_ip_table *t = *tp;

	if (t == NULL)
		return;
	*tp = NULL;
	for (size_t i = 0; i < IP_TABLE_BUCKETS; i++) {
		struct ip_entry *e = t->buckets[i], *n;
		for (; e != NULL; e = n) {
			n = e->next;
			free(e);
		}
	}
	pthread_mutex_destroy(&t->lock);
	free(t);
}

bool sora_ip_table_acquire(struct sora_ip_table *t, const struct sora_ip *ip, int64_t max)
{
	size_t b = ip_hash(ip);
	struct ip_entry *e;
	bool ok = true;

	pthread_mutex_lock(&t->lock);
	for (e = t->buckets[b]; e != NULL; e = e->next) {
		if (memcmp(&e->ip, ip, sizeof(*ip)) == 0)
			break;
	}
	if (e == NULL) {
		e = calloc(1, sizeof(*e));
		if (e == NULL) {
			ok = false;
			goto out;
		}
		e->ip = *ip;
		e->next = t->buckets[b];
		t->buckets[b] = e;
	}
	if (max > 0 && e->count >= max)
		ok = false;
	else
		e->count++;
	if (e->count == 0) {
		/* A fresh entry that was refused right away. */
		t->buckets[b] = e->next;
		free(e);
	}
out:
	pthread_mutex_unlock(&t->lock);
	return ok;
}

void sora_ip_table_release(struct sora_ip_table *t, const struct sora_ip *ip)
{
	size_t b = ip_hash(ip);
	struct ip_entry **pp, *e;

	pthread_mutex_lock(&t->lock);
	for (pp = &t->buckets[b]; (e = *pp) != NULL; pp = &e->next) {
		if (memcmp(&e->ip, ip, sizeof(*ip)) == 0) {
			if (--e->count <= 0) {
				*pp = e->next;
				free(e);
			}
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
}
