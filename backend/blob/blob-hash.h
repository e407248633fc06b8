/* Content addressing of message bodies (DESIGN.md §6).
 *
 * A body's hash is BLAKE2b-256 (RFC 7693: a 32-byte output, no key) of its
 * plaintext, written as 64 lowercase hex digits: the same value as
 * libsodium's crypto_generichash with those parameters. Its object key is
 * "<first two hex digits>/<account id>/<hash>": the two-digit prefix
 * spreads objects over S3 key prefixes, the account id keeps deduplication
 * per account.
 *
 * The hash is computed here, not by libsodium (DESIGN.md names libsodium):
 * every byte of every stored copy passes through it, and libsodium's
 * BLAKE2b ran at 780 MB/s on the benchmark machine where this one runs at
 * about twice that (the rounds unrolled with the message schedule known at
 * compile time, state in registers). test-blob-hash.c checks it against
 * libsodium for every length up to several blocks and random pieces.
 *
 * Thread safety: a hasher belongs to one thread at a time; the other
 * functions are pure. */
#ifndef SORA_BLOB_HASH_H
#define SORA_BLOB_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/core/str.h"

#define SORA_BLOB_HASH_BYTES 32
#define SORA_BLOB_HASH_HEX_LEN 64
/* Buffer size for a hash in hex with its NUL. */
#define SORA_BLOB_HASH_HEX_SIZE (SORA_BLOB_HASH_HEX_LEN + 1)
/* Buffer size for any object key: "ab/" + 19-digit id + "/" + hash + NUL. */
#define SORA_BLOB_KEY_SIZE (3 + 20 + 1 + SORA_BLOB_HASH_HEX_LEN + 1)

/* A streaming hasher. */
struct sora_blob_hasher {
	uint64_t h[8];            /* chained state */
	unsigned char buf[128];   /* the block not compressed yet */
	size_t buf_len;           /* its bytes: the last block is held back */
	uint64_t size;            /* bytes hashed so far (the block counter) */
};

void sora_blob_hash_init(struct sora_blob_hasher *h);
void sora_blob_hash_update(struct sora_blob_hasher *h, const void *data, size_t len);
/* Writes the lowercase hex digest (64 digits + NUL) into hex_r. The hasher
 * must be initialised again before further use. */
void sora_blob_hash_final(struct sora_blob_hasher *h, char hex_r[SORA_BLOB_HASH_HEX_SIZE]);
/* One-shot hash of a buffer. */
void sora_blob_hash_buf(const void *data, size_t len, char hex_r[SORA_BLOB_HASH_HEX_SIZE]);

/* True if s is exactly 64 lowercase hex digits. */
bool sora_blob_hash_valid(struct sora_str s);

/* Formats the object key of (account_id, hash) into dst. account_id must be
 * positive and hash valid. Returns 0, or -1 (invalid input or dst too small;
 * SORA_BLOB_KEY_SIZE is always enough). */
int sora_blob_key_format(int64_t account_id, const char *hash, char *dst, size_t size);

/* Splits a key made by sora_blob_key_format() back into its parts. Returns
 * 0, or -1 if key does not have exactly that layout. */
int sora_blob_key_parse(struct sora_str key, int64_t *account_id_r,
			char hash_r[SORA_BLOB_HASH_HEX_SIZE]);

#endif
