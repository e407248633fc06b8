/* Where the bytes of one LMTP DATA go while they arrive.
 *
 * A message up to SORA_LMTP_SPOOL_MEM bytes stays in memory (most mail is
 * far smaller). A larger one spills into an unnamed temporary file in the
 * spool directory (the staging area's file system), the way nginx keeps
 * client request bodies: the memory buffer then only batches writes. So a
 * session never holds more than SORA_LMTP_SPOOL_MEM bytes of a message in
 * memory, whatever max_message_size allows.
 *
 * The file is created with O_TMPFILE where the file system supports it
 * (otherwise created and unlinked at once), so it disappears with its
 * descriptor, also after a crash. Writes are plain write(2) calls, done on
 * the event loop like nginx's body buffering; fsync is never needed here:
 * the durable copy is the one the delivery job stages.
 *
 * Ownership: the caller owns the struct; sora_lmtp_spool_reset() releases
 * memory and file. Thread safety: one thread at a time (the loop while
 * writing, then the delivery job's worker while reading). */
#ifndef SORA_LMTP_SPOOL_H
#define SORA_LMTP_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/store/deliver.h"
#include "common/core/buf.h"

#define SORA_LMTP_SPOOL_MEM (128 * 1024)

struct sora_lmtp_spool {
	struct sora_buf mem;    /* the message, or the write buffer once spilled */
	int fd;                 /* -1 while the message fits in mem */
	uint64_t size;          /* bytes written so far */
	const char *dir;        /* borrowed: where temp files go */
	int error;              /* errno of the first failure, 0 if none */
};

void sora_lmtp_spool_init(struct sora_lmtp_spool *sp, const char *dir);

/* Appends message bytes. Returns 0, or -1 once anything failed (error set);
 * later writes then fail too. Matches sora_smtp_data_sink_cb. */
int sora_lmtp_spool_write(void *sp, const char *data, size_t len);

/* Flushes buffered bytes to the file (if any). Returns 0 or -1. */
int sora_lmtp_spool_finish(struct sora_lmtp_spool *sp);

/* A view of the finished message for the store (borrowed from sp). */
void sora_lmtp_spool_body(const struct sora_lmtp_spool *sp, struct sora_store_body *body_r);

/* Closes the file, frees the memory; the spool is empty and reusable. */
void sora_lmtp_spool_reset(struct sora_lmtp_spool *sp);

#endif
