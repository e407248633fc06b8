/* Per-session memory accounting (session_memory_limit) for the backend's
 * IMAP and POP3 sessions: what a command is about to hold in memory
 * (decoded BINARY sections, header blocks, SEARCH results, RETR/TOP
 * buffers, the POP3 listing) is reserved here BEFORE it is allocated and
 * released when the command lets go of it. A reservation that would take
 * the session past its limit fails, nothing is counted, and the caller
 * answers NO [LIMIT] / -ERR [SYS/TEMP]; the session goes on.
 *
 * Bodies that stream from the blob store (FETCH BODY[], RETR) are not held
 * whole: only their slice buffers are counted.
 *
 * Metrics (registered on first use):
 *   sora_session_memory_peak_bytes{protocol}     histogram, one observation
 *                                                per session that reserved
 *                                                anything, at close
 *   sora_session_memory_limit_exceeded_total{protocol,operation}
 *                                                refused reservations
 *
 * Thread safety: none. The owner is whoever runs the session's command
 * (its one job on a worker, or the loop thread between jobs), which the
 * session's one-job-at-a-time rule makes exclusive. */
#ifndef SORA_BACKEND_SESSION_MEMORY_H
#define SORA_BACKEND_SESSION_MEMORY_H

#include <stdint.h>

struct sora_log_ctx;

struct sora_session_memory {
	const char *protocol;        /* static: "imap", "pop3" */
	uint64_t limit;              /* 0 = unlimited */
	uint64_t used;
	uint64_t peak;
};

void sora_session_memory_init(struct sora_session_memory *m, const char *protocol,
			      uint64_t limit);
/* Counts bytes about to be allocated. 0, or -1 when that would pass the
 * limit: nothing is counted, the refusal is counted in the metric under
 * operation (static string: "fetch", "search", "retr", "top", ...). */
int sora_session_memory_reserve(struct sora_session_memory *m, uint64_t bytes,
				const char *operation);
void sora_session_memory_release(struct sora_session_memory *m, uint64_t bytes);
/* Counts a refusal the caller decided itself (a command that found out
 * from sora_session_memory_available() that it cannot fit). */
void sora_session_memory_refused(struct sora_session_memory *m, const char *operation);
/* Bytes that may still be reserved (UINT64_MAX when unlimited). */
uint64_t sora_session_memory_available(const struct sora_session_memory *m);
/* At the close of a logged-in session: logs the peak at info ("session
 * memory peak N bytes (limit L)") and observes it in the histogram. ctx is
 * borrowed. */
void sora_session_memory_close(struct sora_session_memory *m, const struct sora_log_ctx *ctx);

#endif
