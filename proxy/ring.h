/* Consistent-hash ring over the backends of one proxy server.
 *
 * Every backend contributes SORA_RING_VNODES points ("virtual nodes") on a
 * 64-bit circle, each the hash of "<id>#<n>". A key (the account id) maps
 * to the first point clockwise from its own hash; the backends after it, in
 * clockwise order and without repeats, are the failover order. Points
 * depend only on the ids, never on the order of the list or on which
 * process built the ring, so every proxy with the same backend ids sends a
 * user to the same backend, and removing one backend moves only the keys
 * that were on it (about 1/N of them).
 *
 * The hash is FNV-1a 64 finished with the splitmix64 mixer: stable across
 * builds and platforms (it is part of the routing contract between proxy
 * versions), fast, and spread well enough for 160 points per node.
 *
 * Pure: no I/O, no globals. Thread safety: a built ring is read-only and
 * may be used from any thread. */
#ifndef SORA_PROXY_RING_H
#define SORA_PROXY_RING_H

#include <stddef.h>
#include <stdint.h>

#define SORA_RING_VNODES 160
#define SORA_RING_MAX_NODES 64

struct sora_ring;

/* The routing hash of a byte string. */
uint64_t sora_ring_hash(const void *data, size_t len);

/* Builds a ring over n node ids (borrowed for the call; the ring keeps
 * only indexes). Ids must be distinct and 1..SORA_RING_MAX_NODES many.
 * Returns 0 and *ring_r (owned; sora_ring_free), or -1. */
int sora_ring_build(const char *const *ids, size_t n, struct sora_ring **ring_r);
void sora_ring_free(struct sora_ring **ring);
size_t sora_ring_nodes(const struct sora_ring *ring);

/* Writes the failover order for key into order_r: up to max distinct node
 * indexes, the owner first. Returns how many were written
 * (min(max, nodes)). */
size_t sora_ring_lookup(const struct sora_ring *ring, const void *key, size_t keylen,
			size_t *order_r, size_t max);

#endif
