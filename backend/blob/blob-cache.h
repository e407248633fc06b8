/* The local body cache ([local_cache] path, capacity, max_object_size).
 *
 * Plaintext bodies are kept as files under <path>/<object key>, so a cached
 * body is read with pread() and never fetched or decrypted again. The
 * total size is held under `capacity` by evicting the least recently used
 * files; bodies larger than max_object_size are never cached. Sizes and
 * the LRU order are kept in memory (a hash table and a list) and rebuilt at
 * start-up by scanning the directory, ordered by each file's last access
 * or modification time. Temp files of unfinished writes live in
 * <path>/.sora-tmp and are removed at start-up.
 *
 * The cache holds copies only: losing it (crash, eviction, an operator
 * wiping the directory) costs a download, never data. So nothing here is
 * fsynced.
 *
 * Blocking file I/O: worker threads only. Thread safety: every function
 * may be called from any thread; one mutex guards the index and is never
 * held during reads or writes of bodies (only around unlink/rename). A
 * file evicted while a reader has it open stays readable through the
 * reader's descriptor. */
#ifndef SORA_BLOB_CACHE_H
#define SORA_BLOB_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "backend/blob/blob-driver.h"

#define SORA_BLOB_CACHE_TMPDIR ".sora-tmp"

struct sora_blob_cache;

struct sora_blob_cache_stats {
	uint64_t capacity;
	uint64_t used;        /* bytes in cached files */
	uint64_t count;       /* cached files */
	uint64_t hits;
	uint64_t misses;
	uint64_t evictions;
};

/* Opens (creating the directory if needed) and indexes the cache; evicts
 * down to capacity if the directory holds more. capacity must be > 0. path
 * is copied. Returns 0, or -1 with err set. */
int sora_blob_cache_open(const char *path, uint64_t capacity, uint64_t max_object_size,
			 struct sora_blob_cache **cache_r, struct sora_error *err);
/* Frees the index (the files stay) and clears the caller's pointer. */
void sora_blob_cache_free(struct sora_blob_cache **cache);

uint64_t sora_blob_cache_max_object_size(const struct sora_blob_cache *cache);
void sora_blob_cache_get_stats(struct sora_blob_cache *cache, struct sora_blob_cache_stats *st);

/* Opens the cached body of key for reading and marks it recently used.
 * Returns an fd (owned by the caller) and its size, or -1 when the key is
 * not cached (or cannot be opened: the caller falls back to the store). */
int sora_blob_cache_open_read(struct sora_blob_cache *cache, const char *key,
			      uint64_t *size_r);

/* Puts the file at src_path into the cache under key: renamed when move is
 * true and it is on the same file system, copied otherwise (a moved file
 * is gone from src_path afterwards, whatever the outcome). Files over
 * max_object_size are refused (SORA_ERR_LIMIT; a moved one is deleted).
 * Returns 0 or -1 with err set. */
int sora_blob_cache_add_file(struct sora_blob_cache *cache, const char *key,
			     const char *src_path, int move, struct sora_error *err);

/* Streams a body into the cache: write() pieces in order, then commit() to
 * make it visible under key, or abort(). write() fails once the body
 * passes max_object_size. The writer belongs to one thread. */
struct sora_blob_cache_writer;
int sora_blob_cache_writer_new(struct sora_blob_cache *cache, const char *key,
			       struct sora_blob_cache_writer **w_r, struct sora_error *err);
int sora_blob_cache_writer_write(struct sora_blob_cache_writer *w, const void *data,
				 size_t len);
/* Commits and frees the writer (clears the caller's pointer). */
int sora_blob_cache_writer_commit(struct sora_blob_cache_writer **w,
				  struct sora_error *err);
/* Discards and frees the writer (clears the caller's pointer). NULL-safe. */
void sora_blob_cache_writer_abort(struct sora_blob_cache_writer **w);

/* Removes key from the cache (file and index). Missing keys are fine. */
void sora_blob_cache_remove(struct sora_blob_cache *cache, const char *key);

#endif
