/* Search rate limit (security guide, "Search Rate Limiting"):
 * search_rate_limit_per_min searches per user (account) within
 * search_rate_limit_window, across all sessions of one [servers.X] entry in
 * this process. 0 disables it (the default).
 *
 * The window slides in steps of 1/60 of its length (1 s for "1m"): each
 * user has 60 counters, one per step, so a user costs a fixed ~300 bytes
 * whatever the limit. A search is allowed when fewer than the limit were
 * counted in the last 60 steps; otherwise the caller learns how many
 * seconds until the oldest step that must leave the window has left it.
 *
 * Bounded: at most SORA_SEARCH_RATE_USERS entries. Users without a search
 * for a whole window are dropped by a sweep that runs at most once per
 * window (and at once when the table is full); if it is still full, the
 * search is allowed and a warning is logged (the table only holds
 * authenticated accounts, so this takes more active users than the bound).
 *
 * Metric: sora_search_rate_limited_total{protocol} counts refusals.
 *
 * Thread safety: every function may be called from any thread (one mutex). */
#ifndef SORA_BACKEND_IMAP_SEARCH_RATE_H
#define SORA_BACKEND_IMAP_SEARCH_RATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SORA_SEARCH_RATE_STEPS 60
#define SORA_SEARCH_RATE_USERS 65536

/* Counts one search of account on server scope (any stable pointer that
 * names the server entry, e.g. its config) at now_ms (monotonic). Returns
 * true when allowed. When refused, *wait_s_r is the whole number of
 * seconds (>= 1) after which the next search will be allowed; the refusal
 * is counted under protocol (static string). limit <= 0: always allowed. */
bool sora_search_rate_check(const void *scope, int64_t account, int64_t limit, int64_t window_ms,
			    uint64_t now_ms, const char *protocol, unsigned int *wait_s_r);
/* Users tracked now (tests, metrics). */
size_t sora_search_rate_tracked(void);
/* Tests: forgets everything. */
void sora_search_rate_reset(void);

#endif
