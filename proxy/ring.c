/* Consistent-hash ring: see ring.h. */
#include "proxy/ring.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ring_point {
	uint64_t hash;
	uint32_t node;
};

struct sora_ring {
	size_t nodes;
	size_t npoints;
	struct ring_point points[];
};

uint64_t sora_ring_hash(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	/* splitmix64 finaliser: FNV alone clusters similar strings. */
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h;
}

static int point_cmp(const void *a, const void *b)
{
	const struct ring_point *x = a, *y = b;

	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	/* Equal hashes (practically never): order by node so every process
	 * sorts the same way. */
	return x->node < y->node ? -1 : x->node > y->node;
}

int sora_ring_build(const char *const *ids, size_t n, struct sora_ring **ring_r)
{
	struct sora_ring *r;
	char buf[512];

	*ring_r = NULL;
	if (n == 0 || n > SORA_RING_MAX_NODES)
		return -1;
	r = malloc(sizeof(*r) + n * SORA_RING_VNODES * sizeof(struct ring_point));
	if (r == NULL)
		return -1;
	r->nodes = n;
	r->npoints = n * SORA_RING_VNODES;
	for (size_t i = 0; i < n; i++) {
		for (size_t v = 0; v < SORA_RING_VNODES; v++) {
			int len = snprintf(buf, sizeof(buf), "%s#%zu", ids[i], v);

			if (len < 0 || (size_t)len >= sizeof(buf)) {
				free(r);
				return -1;
			}
			r->points[i * SORA_RING_VNODES + v].hash = sora_ring_hash(buf, (size_t)len);
			r->points[i * SORA_RING_VNODES + v].node = (uint32_t)i;
		}
	}
	qsort(r->points, r->npoints, sizeof(r->points[0]), point_cmp);
	*ring_r = r;
	return 0;
}

void sora_ring_free(struct sora_ring **ring)
{
	free(*ring);
	*ring = NULL;
}

size_t sora_ring_nodes(const struct sora_ring *ring)
{
	return ring->nodes;
}

size_t sora_ring_lookup(const struct sora_ring *ring, const void *key, size_t keylen,
			size_t *order_r, size_t max)
{
	uint64_t h = sora_ring_hash(key, keylen);
	size_t lo = 0, hi = ring->npoints, count = 0;
	bool seen[SORA_RING_MAX_NODES] = { false };

	/* First point with hash >= h (wrapping to 0 past the end). */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ring->points[mid].hash < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = 0; i < ring->npoints && count < max && count < ring->nodes; i++) {
		uint32_t node = ring->points[(lo + i) % ring->npoints].node;

		if (seen[node])
			continue;
		seen[node] = true;
		order_r[count++] = node;
	}
	return count;
}
