/* Client-side encryption of stored bodies ([s3] encrypt, DESIGN.md §6).
 *
 * Format, version 1 (all integers are single bytes):
 *
 *   offset  size  field
 *        0     8  magic "\0SORAENC" (a leading NUL cannot start an RFC 5322
 *                 message, so an encrypted object is never mistaken for a
 *                 plaintext one)
 *        8     1  format version = 1
 *        9     8  key id: the first 8 bytes of BLAKE2b-256 of the raw
 *                 32-byte key, so a reader picks the right key among the
 *                 current and old ones (and names it when it has none)
 *       17    24  libsodium crypto_secretstream_xchacha20poly1305 header
 *       41   ...  the plaintext in chunks of 64 KiB (the last one shorter,
 *                 one empty chunk for an empty body), each encrypted with
 *                 crypto_secretstream_xchacha20poly1305_push (17 bytes of
 *                 overhead), the last tagged TAG_FINAL. The first chunk
 *                 carries bytes 0..16 of the header as additional data, so
 *                 the version and key id are authenticated too.
 *
 * The ciphertext length is a function of the plaintext length
 * (sora_blob_crypt_ciphertext_len), so an upload can announce its
 * Content-Length before encrypting anything, and both directions stream
 * with one chunk of memory. A missing final chunk (truncation), data after
 * it, a changed byte anywhere, an unknown key id and a wrong key all fail
 * with an error naming the object; no plaintext of an unauthenticated
 * chunk is ever passed on.
 *
 * Keys live in sodium_malloc()ed memory that is read-only after setup and
 * wiped when freed. Stream states are wiped with sodium_memzero().
 *
 * Thread safety: a keyring is immutable after creation and may be shared
 * by all threads; encryptors and decryptors belong to one thread at a time. */
#ifndef SORA_BLOB_CRYPT_H
#define SORA_BLOB_CRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/blob/blob-driver.h"

#define SORA_BLOB_CRYPT_MAGIC "\0SORAENC"
#define SORA_BLOB_CRYPT_MAGIC_LEN 8
#define SORA_BLOB_CRYPT_VERSION 1
#define SORA_BLOB_CRYPT_KEY_ID_LEN 8
#define SORA_BLOB_CRYPT_HEADER_LEN 41
#define SORA_BLOB_CRYPT_CHUNK (64 * 1024)
#define SORA_BLOB_CRYPT_ABYTES 17
/* Hex key id plus NUL. */
#define SORA_BLOB_CRYPT_KEY_ID_HEX_SIZE (2 * SORA_BLOB_CRYPT_KEY_ID_LEN + 1)

struct sora_blob_keyring;

/* Builds a keyring from the current key (64 hex digits, or NULL for a
 * decrypt-only keyring) and old keys kept for reading objects written
 * before a rotation. Returns 0, or -1 with err set (SORA_ERR_INVALID for a
 * malformed key; the message never contains key material). */
int sora_blob_keyring_new(const char *current_hex, const char *const *old_hex,
			  size_t old_count, struct sora_blob_keyring **kr_r,
			  struct sora_error *err);
/* Wipes and frees the keys; clears the caller's pointer. NULL-safe. */
void sora_blob_keyring_free(struct sora_blob_keyring **kr);
/* True if the keyring has a current key to encrypt with. */
bool sora_blob_keyring_can_encrypt(const struct sora_blob_keyring *kr);
/* Hex id of the current key ("" if none), for logs and diagnostics. */
void sora_blob_keyring_current_id(const struct sora_blob_keyring *kr,
				  char hex_r[SORA_BLOB_CRYPT_KEY_ID_HEX_SIZE]);
/* Number of keys (current + old). */
size_t sora_blob_keyring_count(const struct sora_blob_keyring *kr);

/* Length of the ciphertext of a plaintext of plain_len bytes. */
uint64_t sora_blob_crypt_ciphertext_len(uint64_t plain_len);
/* Inverse of the above. Returns 0, or -1 if no plaintext length gives
 * cipher_len (the object is then truncated or not in this format). */
int sora_blob_crypt_plaintext_len(uint64_t cipher_len, uint64_t *plain_len_r);
/* Ciphertext bytes [0, n) needed to decrypt plaintext bytes [0, plain_end):
 * the header and every chunk up to the one holding byte plain_end - 1. */
uint64_t sora_blob_crypt_prefix_len(uint64_t plain_end);
/* True if data (len bytes, possibly fewer than the magic) starts with the
 * magic of an encrypted object. */
bool sora_blob_crypt_has_magic(const void *data, size_t len);

/* An encrypting source: reading it yields the ciphertext of `plain`, whose
 * length is known up front. It can be rewound (for retries and payload
 * signing): the same ciphertext is produced again byte for byte.
 *
 * Ownership: the keyring and `plain` are borrowed and must outlive the
 * encryptor; *out_r is filled with a source whose ctx is the encryptor. */
struct sora_blob_encryptor;
int sora_blob_encryptor_new(const struct sora_blob_keyring *kr,
			    struct sora_blob_source *plain,
			    struct sora_blob_source *out_r,
			    struct sora_blob_encryptor **enc_r,
			    struct sora_error *err);
void sora_blob_encryptor_free(struct sora_blob_encryptor **enc);

/* A streaming decryptor: ciphertext goes in through feed() in pieces of any
 * size, authenticated plaintext comes out through `out` one chunk at a time.
 *
 * With allow_plaintext, an object that does not start with the magic is
 * passed through unchanged (objects stored before encryption was turned
 * on); without it such an object is an error. kr may be NULL (then any
 * encrypted object fails with a "not configured" error).
 *
 * object_name (borrowed, copied) names the object in error messages.
 * feed() and finish() return 0 or -1 with err set: SORA_ERR_CORRUPT for
 * anything wrong with the data, SORA_ERR_ABORTED if `out` returned -1.
 * After an error the decryptor accepts nothing more. */
struct sora_blob_decryptor;
int sora_blob_decryptor_new(const struct sora_blob_keyring *kr,
			    const char *object_name, bool allow_plaintext,
			    sora_blob_write_cb *out, void *out_ctx,
			    struct sora_blob_decryptor **dec_r);
int sora_blob_decryptor_feed(struct sora_blob_decryptor *dec, const void *data,
			     size_t len, struct sora_error *err);
/* Call at the end of the ciphertext: checks that the final chunk was seen
 * (or flushes a short plaintext object). */
int sora_blob_decryptor_finish(struct sora_blob_decryptor *dec,
			       struct sora_error *err);
/* True once the decryptor has seen the magic. */
bool sora_blob_decryptor_is_encrypted(const struct sora_blob_decryptor *dec);
void sora_blob_decryptor_free(struct sora_blob_decryptor **dec);

#endif
