/* Blob drivers: where message bodies are stored (DESIGN.md §6).
 *
 * A driver is a table of operations (struct sora_blob_driver_ops) in the
 * HAProxy style plus the driver's own state behind it. Two drivers exist:
 * "s3" (blob-s3.h, any S3-compatible service through libcurl) and "fs"
 * (blob-fs.h, a local directory). Drivers store opaque bytes under a key;
 * content addressing, encryption, staging and caching are layered above
 * them in blob-store.h.
 *
 * Blocking: every operation does blocking I/O (network requests with
 * retries and back-off sleeps, or fsync). Call them only from worker
 * threads, never from an event-loop thread.
 *
 * Thread safety: a driver may be used by any number of threads at once.
 * The s3 driver keeps one libcurl easy handle per calling thread so that
 * connections are reused; sora_blob_driver_free() must only run after every
 * thread that used the driver has stopped calling it.
 *
 * Ownership: keys and sources are borrowed for the duration of a call. The
 * driver owns nothing the caller passes in.
 *
 * Errors (common/core/error.h): every operation returns 0 or -1 with the
 * caller's struct sora_error filled. The classes the blob layer uses:
 *   SORA_ERR_TEMPORARY    a retryable failure (5xx, throttling, network,
 *                         a full disk) that persisted through every attempt;
 *                         trying again later may succeed;
 *   SORA_ERR_PERMANENT    a 4xx answer, invalid input, a local I/O error;
 *   SORA_ERR_NOT_FOUND    the object does not exist;
 *   SORA_ERR_LIMIT        a body larger than the caller allowed;
 *   SORA_ERR_CORRUPT      stored data failed authentication, a hash check or
 *                         format parsing;
 *   SORA_ERR_ABORTED      the caller's sink returned an error and the
 *                         transfer was stopped;
 *   SORA_ERR_UNSUPPORTED  the operation cannot be done this way here
 *                         (link_file across file systems): the caller falls
 *                         back to another way.
 * Messages are complete lines that name the operation and the object, e.g.
 * "s3 PUT sora-test/ab/1/abcd: 403 SignatureDoesNotMatch (...)", and for
 * s3 end in "(after N attempts)" when a request was retried. */
#ifndef SORA_BLOB_DRIVER_H
#define SORA_BLOB_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/core/error.h"

/* A body to upload: exactly `length` bytes, readable more than once (an
 * upload that is retried, or signed, reads it again from the start). */
struct sora_blob_source {
	uint64_t length;
	/* Reads up to len bytes into buf. Returns the number of bytes read
	 * (0 only once `length` bytes were delivered), or -1 with err set. */
	ssize_t (*read)(void *ctx, void *buf, size_t len, struct sora_error *err);
	/* Starts over at the first byte. Returns 0 or -1 with err set. */
	int (*rewind)(void *ctx, struct sora_error *err);
	void *ctx;
};

/* Receives the pieces of a source in order (sora_blob_source_drain).
 * Returns 0 to go on, or -1 with err set to stop. */
typedef int sora_blob_chunk_cb(void *ctx, const void *data, size_t len,
			       struct sora_error *err);

/* Reads src from its start to its end, handing every piece to cb (NULL:
 * read only for the source's own checks, as a hash-verifying source
 * makes). Fails when src delivers a number of bytes other than
 * src->length. Returns 0, or -1 with err set. */
int sora_blob_source_drain(struct sora_blob_source *src, sora_blob_chunk_cb *cb, void *ctx,
			   struct sora_error *err);

/* Receives a downloaded body in order. Returns 0 to continue, -1 to stop
 * the transfer; the operation then fails with SORA_ERR_ABORTED, and a
 * callback that needs to say why keeps the reason in its own ctx. */
typedef int sora_blob_write_cb(void *ctx, const void *data, size_t len);

/* Means "up to the end of the object" as a length. */
#define SORA_BLOB_TO_END UINT64_MAX

struct sora_blob_driver;

struct sora_blob_driver_ops {
	const char *name;   /* "s3", "fs" */
	/* Stores src under key, replacing any object there. */
	int (*put)(struct sora_blob_driver *drv, const char *key,
		   struct sora_blob_source *src, struct sora_error *err);
	/* Streams bytes [offset, offset+length) of the object (clipped to its
	 * end; SORA_BLOB_TO_END for all) to cb. An offset at or past the end
	 * of a non-empty object delivers nothing and succeeds. */
	int (*get)(struct sora_blob_driver *drv, const char *key, uint64_t offset,
		   uint64_t length, sora_blob_write_cb *cb, void *cb_ctx,
		   struct sora_error *err);
	/* Size of the object; SORA_ERR_NOT_FOUND if it does not exist. */
	int (*head)(struct sora_blob_driver *drv, const char *key, uint64_t *size_r,
		    struct sora_error *err);
	/* Deletes the object; deleting a missing object succeeds. */
	int (*del)(struct sora_blob_driver *drv, const char *key,
		   struct sora_error *err);
	/* Deletes many objects. *failed_r counts the keys that could not be
	 * deleted; err names the first of them. Returns 0 only if none failed. */
	int (*del_batch)(struct sora_blob_driver *drv, const char *const *keys,
			 size_t count, size_t *failed_r, struct sora_error *err);
	/* Copies src_key to dst_key within the same store. */
	int (*copy)(struct sora_blob_driver *drv, const char *src_key,
		    const char *dst_key, struct sora_error *err);
	/* Optional (NULL if the driver has no such shortcut): stores the
	 * complete local file at path, open as fd, under key without copying
	 * its bytes, replacing any object there. The file must not change
	 * afterwards. SORA_ERR_UNSUPPORTED when it cannot be done here (the
	 * file is on another file system): the caller uses put instead. */
	int (*link_file)(struct sora_blob_driver *drv, const char *key, const char *path,
			 int fd, struct sora_error *err);
	void (*destroy)(struct sora_blob_driver *drv);
};

/* The common head of every driver; drivers embed it as their first member. */
struct sora_blob_driver {
	const struct sora_blob_driver_ops *ops;
};

/* Wrappers that check arguments and call the driver's operation. */
int sora_blob_driver_put(struct sora_blob_driver *drv, const char *key,
			 struct sora_blob_source *src, struct sora_error *err);
int sora_blob_driver_get(struct sora_blob_driver *drv, const char *key,
			 uint64_t offset, uint64_t length, sora_blob_write_cb *cb,
			 void *cb_ctx, struct sora_error *err);
int sora_blob_driver_head(struct sora_blob_driver *drv, const char *key,
			  uint64_t *size_r, struct sora_error *err);
int sora_blob_driver_delete(struct sora_blob_driver *drv, const char *key,
			    struct sora_error *err);
int sora_blob_driver_delete_batch(struct sora_blob_driver *drv,
				  const char *const *keys, size_t count,
				  size_t *failed_r, struct sora_error *err);
int sora_blob_driver_copy(struct sora_blob_driver *drv, const char *src_key,
			  const char *dst_key, struct sora_error *err);
/* SORA_ERR_UNSUPPORTED when the driver has no link_file. */
int sora_blob_driver_link_file(struct sora_blob_driver *drv, const char *key,
			       const char *path, int fd, struct sora_error *err);
/* Frees the driver and clears the caller's pointer. NULL-safe. */
void sora_blob_driver_free(struct sora_blob_driver **drv);

/* Ready-made sources and sinks. */

/* A source over the bytes of a memory buffer (borrowed; must outlive the
 * source). */
struct sora_blob_mem_source {
	const unsigned char *data;
	size_t len;
	size_t pos;
};
void sora_blob_mem_source_init(struct sora_blob_source *src,
			       struct sora_blob_mem_source *ms,
			       const void *data, size_t len);

/* A source over `length` bytes of a file descriptor starting at `offset`,
 * read with pread() so the descriptor's position is untouched. The fd is
 * borrowed. */
struct sora_blob_fd_source {
	int fd;
	uint64_t offset;
	uint64_t pos;
	uint64_t length;
};
void sora_blob_fd_source_init(struct sora_blob_source *src,
			      struct sora_blob_fd_source *fs, int fd,
			      uint64_t offset, uint64_t length);

/* A sink that writes everything to a file descriptor (ctx = pointer to the
 * int fd), retrying short writes and EINTR. */
int sora_blob_fd_sink(void *ctx, const void *data, size_t len);

/* Key validation shared by the drivers: a key is 1..1024 bytes, contains no
 * NUL byte, does not start or end with '/', has no empty, "." or ".."
 * segment. Returns 0 or -1 with err set. */
int sora_blob_key_check(const char *key, struct sora_error *err);

#endif
