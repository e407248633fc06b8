/* Recipients LMTP found recently, so that RCPT TO answers a recipient seen
 * a moment ago without a database round trip.
 *
 * Only found recipients are kept: a new account or alias is never refused
 * because of the cache. Any change to accounts or credentials empties it:
 * the triggers of migration 0011 NOTIFY 'sora_accounts', and the backend's
 * listener calls sora_lmtp_rcpt_cache_flush(). A lookup that ran while a
 * change committed is not kept (the generation it started under is gone).
 * While the listener is not connected the cache is not used, and after a
 * reconnect it is emptied, since notifications in between were lost. The
 * TTL ([servers.lmtp] recipient_cache_ttl) bounds the rest.
 *
 * Bounded: SORA_LMTP_RCPT_CACHE_SLOTS entries, direct-mapped by a hash of
 * the address (a newer address takes over an older one's slot). Thread-safe. */
#ifndef SORA_LMTP_RCPT_CACHE_H
#define SORA_LMTP_RCPT_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/store/deliver.h"

#define SORA_LMTP_RCPT_CACHE_SLOTS 8192

/* Empties the cache (O(1)). */
void sora_lmtp_rcpt_cache_flush(void);
/* The generation to hand to put(), taken before the lookup starts. */
uint64_t sora_lmtp_rcpt_cache_generation(void);
/* The recipient of address, if found by a lookup of this generation less
 * than ttl_ms ago. */
bool sora_lmtp_rcpt_cache_get(const char *address, int64_t ttl_ms,
			      struct sora_store_recipient *who_r);
/* Keeps a found recipient, unless the cache was flushed since generation
 * was taken. */
void sora_lmtp_rcpt_cache_put(const char *address, uint64_t generation,
			      const struct sora_store_recipient *who);
/* Frees every entry (at shutdown, for leak checkers). */
void sora_lmtp_rcpt_cache_clear(void);

#endif
