#include "backend/blob/blob-crypt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define KEY_BYTES crypto_secretstream_xchacha20poly1305_KEYBYTES
#define SS_HEADER_BYTES crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define AD_LEN (SORA_BLOB_CRYPT_MAGIC_LEN + 1 + SORA_BLOB_CRYPT_KEY_ID_LEN)
#define RECORD_MAX (SORA_BLOB_CRYPT_CHUNK + SORA_BLOB_CRYPT_ABYTES)

_Static_assert(SORA_BLOB_CRYPT_ABYTES == crypto_secretstream_xchacha20poly1305_ABYTES,
	       "secretstream overhead changed");
_Static_assert(SORA_BLOB_CRYPT_HEADER_LEN == AD_LEN + SS_HEADER_BYTES,
	       "header layout");
_Static_assert(KEY_BYTES == 32, "key size");

struct sora_blob_keyring {
	/* keys[i] is KEY_BYTES of sodium_malloc()ed, read-only memory; index
	 * 0 is the current key when has_current. */
	unsigned char *keys;
	unsigned char (*ids)[SORA_BLOB_CRYPT_KEY_ID_LEN];
	size_t count;
	bool has_current;
};

static void key_id_of(const unsigned char *key, unsigned char id[SORA_BLOB_CRYPT_KEY_ID_LEN])
{
	unsigned char digest[32];

	crypto_generichash(digest, sizeof(digest), key, KEY_BYTES, NULL, 0);
	memcpy(id, digest, SORA_BLOB_CRYPT_KEY_ID_LEN);
}

static void id_to_hex(const unsigned char *id, char hex[SORA_BLOB_CRYPT_KEY_ID_HEX_SIZE])
{
	sodium_bin2hex(hex, SORA_BLOB_CRYPT_KEY_ID_HEX_SIZE, id, SORA_BLOB_CRYPT_KEY_ID_LEN);
}

static int parse_key(const char *hex, unsigned char *key_r, const char *what,
		     struct sora_error *err)
{
	size_t hex_len, bin_len = 0;

	hex_len = strnlen(hex, 2 * KEY_BYTES + 1);
	if (hex_len != 2 * KEY_BYTES) {
		sora_error_set(err, SORA_ERR_INVALID, "%s must be %d hex characters (got %s%zu)",
			       what, 2 * KEY_BYTES, hex_len > 2 * KEY_BYTES ? "more than " : "",
			       hex_len > 2 * KEY_BYTES ? (size_t)(2 * KEY_BYTES) : hex_len);
		return -1;
	}
	if (sodium_hex2bin(key_r, KEY_BYTES, hex, hex_len, NULL, &bin_len, NULL) != 0 ||
	    bin_len != KEY_BYTES) {
		sora_error_set(err, SORA_ERR_INVALID,
			       "%s must be %d hex characters (found a non-hex character)", what,
			       2 * KEY_BYTES);
		return -1;
	}
	return 0;
}

int sora_blob_keyring_new(const char *current_hex, const char *const *old_hex,
			  size_t old_count, struct sora_blob_keyring **kr_r,
			  struct sora_error *err)
{
	struct sora_blob_keyring *kr;
	size_t total = old_count + (current_hex != NULL ? 1 : 0);
	int ret = -1;

	*kr_r = NULL;
	if (sodium_init() < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "libsodium initialisation failed");
		return -1;
	}
	if (total == 0) {
		sora_error_set(err, SORA_ERR_INVALID, "no encryption keys given");
		return -1;
	}
	kr = calloc(1, sizeof(*kr));
	if (kr == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		return -1;
	}
	kr->keys = sodium_malloc(total * KEY_BYTES);
	kr->ids = calloc(total, sizeof(*kr->ids));
	if (kr->keys == NULL || kr->ids == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		goto out;
	}
	if (current_hex != NULL) {
		if (parse_key(current_hex, kr->keys, "encryption_key", err) < 0)
			goto out;
		key_id_of(kr->keys, kr->ids[0]);
		kr->count = 1;
		kr->has_current = true;
	}
	for (size_t i = 0; i < old_count; i++) {
		char what[64];
		unsigned char *k = kr->keys + kr->count * KEY_BYTES;

		snprintf(what, sizeof(what), "old_encryption_keys[%zu]", i);
		if (old_hex[i] == NULL) {
			sora_error_set(err, SORA_ERR_INVALID, "%s is missing", what);
			goto out;
		}
		if (parse_key(old_hex[i], k, what, err) < 0)
			goto out;
		key_id_of(k, kr->ids[kr->count]);
		/* Two keys with one id would make the choice ambiguous; the same
		 * key listed twice (for example the current one kept among the
		 * old ones during a rotation) is harmless and skipped. */
		bool dup = false;
		for (size_t j = 0; j < kr->count; j++) {
			if (memcmp(kr->ids[j], kr->ids[kr->count], SORA_BLOB_CRYPT_KEY_ID_LEN) != 0)
				continue;
			if (sodium_memcmp(kr->keys + j * KEY_BYTES, k, KEY_BYTES) != 0) {
				sora_error_set(err, SORA_ERR_INVALID,
					       "%s has the same key id as another key", what);
				goto out;
			}
			dup = true;
		}
		if (dup) {
			sodium_memzero(k, KEY_BYTES);
			continue;
		}
		kr->count++;
	}
	if (sodium_mprotect_readonly(kr->keys) != 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "cannot protect key memory");
		goto out;
	}
	*kr_r = kr;
	kr = NULL;
	ret = 0;
out:
	sora_blob_keyring_free(&kr);
	return ret;
}

void sora_blob_keyring_free(struct sora_blob_keyring **krp)
{
	struct sora_blob_keyring *kr = *krp;

	if (kr == NULL)
		return;
	/* sodium_free() wipes the memory (it makes it writable first). */
	sodium_free(kr->keys);
	free(kr->ids);
	free(kr);
	*krp = NULL;
}

bool sora_blob_keyring_can_encrypt(const struct sora_blob_keyring *kr)
{
	return kr != NULL && kr->has_current;
}

void sora_blob_keyring_current_id(const struct sora_blob_keyring *kr,
				  char hex_r[SORA_BLOB_CRYPT_KEY_ID_HEX_SIZE])
{
	if (!sora_blob_keyring_can_encrypt(kr)) {
		hex_r[0] = '\0';
		return;
	}
	id_to_hex(kr->ids[0], hex_r);
}

size_t sora_blob_keyring_count(const struct sora_blob_keyring *kr)
{
	return kr != NULL ? kr->count : 0;
}

static const unsigned char *keyring_find(const struct sora_blob_keyring *kr,
					 const unsigned char *id)
{
	if (kr == NULL)
		return NULL;
	for (size_t i = 0; i < kr->count; i++) {
		if (memcmp(kr->ids[i], id, SORA_BLOB_CRYPT_KEY_ID_LEN) == 0)
			return kr->keys + i * KEY_BYTES;
	}
	return NULL;
}

static uint64_t chunk_count(uint64_t plain_len)
{
	if (plain_len == 0)
		return 1;
	return (plain_len + SORA_BLOB_CRYPT_CHUNK - 1) / SORA_BLOB_CRYPT_CHUNK;
}

uint64_t sora_blob_crypt_ciphertext_len(uint64_t plain_len)
{
	return SORA_BLOB_CRYPT_HEADER_LEN + plain_len +
	       chunk_count(plain_len) * SORA_BLOB_CRYPT_ABYTES;
}

int sora_blob_crypt_plaintext_len(uint64_t cipher_len, uint64_t *plain_len_r)
{
	uint64_t body, full, rem;

	if (cipher_len < SORA_BLOB_CRYPT_HEADER_LEN + SORA_BLOB_CRYPT_ABYTES)
		return -1;
	body = cipher_len - SORA_BLOB_CRYPT_HEADER_LEN;
	full = body / RECORD_MAX;
	rem = body % RECORD_MAX;
	if (rem == 0) {
		*plain_len_r = full * SORA_BLOB_CRYPT_CHUNK;
		return 0;
	}
	/* A short last record holds at least the overhead, and is empty only
	 * when it is the only record (the empty body). */
	if (rem < SORA_BLOB_CRYPT_ABYTES || (rem == SORA_BLOB_CRYPT_ABYTES && full > 0))
		return -1;
	*plain_len_r = full * SORA_BLOB_CRYPT_CHUNK + rem - SORA_BLOB_CRYPT_ABYTES;
	return 0;
}

uint64_t sora_blob_crypt_prefix_len(uint64_t plain_end)
{
	uint64_t chunks;

	if (plain_end == 0)
		return SORA_BLOB_CRYPT_HEADER_LEN;
	chunks = (plain_end + SORA_BLOB_CRYPT_CHUNK - 1) / SORA_BLOB_CRYPT_CHUNK;
	return SORA_BLOB_CRYPT_HEADER_LEN + chunks * RECORD_MAX;
}

bool sora_blob_crypt_has_magic(const void *data, size_t len)
{
	return len >= SORA_BLOB_CRYPT_MAGIC_LEN &&
	       memcmp(data, SORA_BLOB_CRYPT_MAGIC, SORA_BLOB_CRYPT_MAGIC_LEN) == 0;
}

/* ---- encryption ---- */

struct sora_blob_encryptor {
	struct sora_blob_source *plain;
	uint64_t plain_len;
	uint64_t chunks;          /* total number of chunks */
	uint64_t next_chunk;      /* index of the next chunk to encrypt */
	crypto_secretstream_xchacha20poly1305_state start;  /* right after init */
	crypto_secretstream_xchacha20poly1305_state state;
	unsigned char header[SORA_BLOB_CRYPT_HEADER_LEN];
	unsigned char *out;       /* RECORD_MAX bytes */
	size_t out_len, out_pos;
	unsigned char *in;        /* SORA_BLOB_CRYPT_CHUNK bytes */
};

static void enc_start(struct sora_blob_encryptor *enc)
{
	memcpy(&enc->state, &enc->start, sizeof(enc->state));
	memcpy(enc->out, enc->header, sizeof(enc->header));
	enc->out_len = sizeof(enc->header);
	enc->out_pos = 0;
	enc->next_chunk = 0;
}

/* Reads exactly len bytes of plaintext. */
static int enc_read_plain(struct sora_blob_encryptor *enc, size_t len,
			  struct sora_error *err)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = enc->plain->read(enc->plain->ctx, enc->in + got, len - got, err);
		if (n < 0)
			return -1;
		if (n == 0) {
			sora_error_set(err, SORA_ERR_PERMANENT,
				       "body ended early while encrypting");
			return -1;
		}
		got += (size_t)n;
	}
	return 0;
}

static int enc_next_chunk(struct sora_blob_encryptor *enc, struct sora_error *err)
{
	uint64_t done = enc->next_chunk * SORA_BLOB_CRYPT_CHUNK;
	uint64_t left = enc->plain_len - done;
	size_t len = left > SORA_BLOB_CRYPT_CHUNK ? SORA_BLOB_CRYPT_CHUNK : (size_t)left;
	bool last = enc->next_chunk + 1 == enc->chunks;
	unsigned long long clen = 0;

	if (enc_read_plain(enc, len, err) < 0)
		return -1;
	crypto_secretstream_xchacha20poly1305_push(
		&enc->state, enc->out, &clen, enc->in, len,
		enc->next_chunk == 0 ? enc->header : NULL, enc->next_chunk == 0 ? AD_LEN : 0,
		last ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
		     : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
	enc->out_len = (size_t)clen;
	enc->out_pos = 0;
	enc->next_chunk++;
	return 0;
}

static ssize_t enc_read(void *ctx, void *buf, size_t len, struct sora_error *err)
{
	struct sora_blob_encryptor *enc = ctx;
	size_t done = 0;

	while (done < len) {
		if (enc->out_pos == enc->out_len) {
			if (enc->next_chunk == enc->chunks)
				break;
			if (enc_next_chunk(enc, err) < 0)
				return -1;
		}
		size_t n = enc->out_len - enc->out_pos;
		if (n > len - done)
			n = len - done;
		memcpy((unsigned char *)buf + done, enc->out + enc->out_pos, n);
		enc->out_pos += n;
		done += n;
	}
	return (ssize_t)done;
}

static int enc_rewind(void *ctx, struct sora_error *err)
{
	struct sora_blob_encryptor *enc = ctx;

	if (enc->plain->rewind(enc->plain->ctx, err) < 0)
		return -1;
	enc_start(enc);
	return 0;
}

int sora_blob_encryptor_new(const struct sora_blob_keyring *kr,
			    struct sora_blob_source *plain,
			    struct sora_blob_source *out_r,
			    struct sora_blob_encryptor **enc_r,
			    struct sora_error *err)
{
	struct sora_blob_encryptor *enc;

	*enc_r = NULL;
	if (!sora_blob_keyring_can_encrypt(kr)) {
		sora_error_set(err, SORA_ERR_PERMANENT, "no current encryption key");
		return -1;
	}
	enc = calloc(1, sizeof(*enc));
	if (enc == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		return -1;
	}
	enc->out = malloc(RECORD_MAX);
	enc->in = malloc(SORA_BLOB_CRYPT_CHUNK);
	if (enc->out == NULL || enc->in == NULL) {
		sora_blob_encryptor_free(&enc);
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		return -1;
	}
	enc->plain = plain;
	enc->plain_len = plain->length;
	enc->chunks = chunk_count(plain->length);
	memcpy(enc->header, SORA_BLOB_CRYPT_MAGIC, SORA_BLOB_CRYPT_MAGIC_LEN);
	enc->header[SORA_BLOB_CRYPT_MAGIC_LEN] = SORA_BLOB_CRYPT_VERSION;
	memcpy(enc->header + SORA_BLOB_CRYPT_MAGIC_LEN + 1, kr->ids[0], SORA_BLOB_CRYPT_KEY_ID_LEN);
	/* The stream state after init is kept so that a rewind replays the
	 * same ciphertext: a retried upload must send what was signed. */
	crypto_secretstream_xchacha20poly1305_init_push(&enc->start, enc->header + AD_LEN, kr->keys);
	enc_start(enc);

	out_r->length = sora_blob_crypt_ciphertext_len(plain->length);
	out_r->read = enc_read;
	out_r->rewind = enc_rewind;
	out_r->ctx = enc;
	*enc_r = enc;
	return 0;
}

void sora_blob_encryptor_free(struct sora_blob_encryptor **encp)
{
	struct sora_blob_encryptor *enc = *encp;

	if (enc == NULL)
		return;
	if (enc->in != NULL)
		sodium_memzero(enc->in, SORA_BLOB_CRYPT_CHUNK);
	free(enc->in);
	free(enc->out);
	sodium_memzero(enc, sizeof(*enc));
	free(enc);
	*encp = NULL;
}

/* ---- decryption ---- */

enum dec_mode {
	DEC_SNIFF,    /* collecting the first bytes to look for the magic */
	DEC_HEADER,   /* collecting the rest of the header */
	DEC_CHUNKS,   /* collecting and decrypting records */
	DEC_PLAIN,    /* not encrypted: passing bytes through */
	DEC_DONE,     /* final chunk seen */
	DEC_FAILED,
};

struct sora_blob_decryptor {
	const struct sora_blob_keyring *kr;
	char *name;
	bool allow_plaintext;
	bool encrypted;
	sora_blob_write_cb *out;
	void *out_ctx;
	enum dec_mode mode;
	uint64_t chunk_index;
	crypto_secretstream_xchacha20poly1305_state state;
	unsigned char header[SORA_BLOB_CRYPT_HEADER_LEN];
	unsigned char *in;        /* RECORD_MAX bytes */
	size_t in_len;
	unsigned char *plain;     /* SORA_BLOB_CRYPT_CHUNK bytes */
};

int sora_blob_decryptor_new(const struct sora_blob_keyring *kr,
			    const char *object_name, bool allow_plaintext,
			    sora_blob_write_cb *out, void *out_ctx,
			    struct sora_blob_decryptor **dec_r)
{
	struct sora_blob_decryptor *dec;

	*dec_r = NULL;
	dec = calloc(1, sizeof(*dec));
	if (dec == NULL)
		return -1;
	dec->name = strdup(object_name != NULL ? object_name : "?");
	dec->in = malloc(RECORD_MAX);
	dec->plain = malloc(SORA_BLOB_CRYPT_CHUNK);
	if (dec->name == NULL || dec->in == NULL || dec->plain == NULL) {
		sora_blob_decryptor_free(&dec);
		return -1;
	}
	dec->kr = kr;
	dec->allow_plaintext = allow_plaintext;
	dec->out = out;
	dec->out_ctx = out_ctx;
	dec->mode = DEC_SNIFF;
	*dec_r = dec;
	return 0;
}

void sora_blob_decryptor_free(struct sora_blob_decryptor **decp)
{
	struct sora_blob_decryptor *dec = *decp;

	if (dec == NULL)
		return;
	if (dec->plain != NULL)
		sodium_memzero(dec->plain, SORA_BLOB_CRYPT_CHUNK);
	free(dec->plain);
	free(dec->in);
	free(dec->name);
	sodium_memzero(&dec->state, sizeof(dec->state));
	free(dec);
	*decp = NULL;
}

bool sora_blob_decryptor_is_encrypted(const struct sora_blob_decryptor *dec)
{
	return dec->encrypted;
}

static int dec_fail(struct sora_blob_decryptor *dec, enum sora_error_class cls,
		    struct sora_error *err, const char *what)
{
	dec->mode = DEC_FAILED;
	sodium_memzero(&dec->state, sizeof(dec->state));
	return sora_error_set(err, cls, "object %s: %s", dec->name, what);
}

static int dec_emit(struct sora_blob_decryptor *dec, const void *data, size_t len,
		    struct sora_error *err)
{
	if (len == 0)
		return 0;
	if (dec->out(dec->out_ctx, data, len) < 0)
		return dec_fail(dec, SORA_ERR_ABORTED, err, "reading stopped by the receiver");
	return 0;
}

static int dec_header(struct sora_blob_decryptor *dec, struct sora_error *err)
{
	const unsigned char *key;
	char msg[160];

	if (dec->header[SORA_BLOB_CRYPT_MAGIC_LEN] != SORA_BLOB_CRYPT_VERSION) {
		snprintf(msg, sizeof(msg), "unsupported encryption format version %u",
			 dec->header[SORA_BLOB_CRYPT_MAGIC_LEN]);
		return dec_fail(dec, SORA_ERR_CORRUPT, err, msg);
	}
	key = keyring_find(dec->kr, dec->header + SORA_BLOB_CRYPT_MAGIC_LEN + 1);
	if (key == NULL) {
		char hex[SORA_BLOB_CRYPT_KEY_ID_HEX_SIZE];

		id_to_hex(dec->header + SORA_BLOB_CRYPT_MAGIC_LEN + 1, hex);
		snprintf(msg, sizeof(msg), "encrypted with key id %s which is not configured", hex);
		return dec_fail(dec, SORA_ERR_CORRUPT, err, msg);
	}
	if (crypto_secretstream_xchacha20poly1305_init_pull(&dec->state, dec->header + AD_LEN, key) != 0)
		return dec_fail(dec, SORA_ERR_CORRUPT, err, "invalid encryption header");
	dec->mode = DEC_CHUNKS;
	dec->chunk_index = 0;
	dec->in_len = 0;
	return 0;
}

/* Decrypts the record in dec->in. at_end: no more ciphertext follows. */
static int dec_record(struct sora_blob_decryptor *dec, bool at_end, struct sora_error *err)
{
	unsigned long long plen = 0;
	unsigned char tag = 0;
	char msg[160];

	if (crypto_secretstream_xchacha20poly1305_pull(
		    &dec->state, dec->plain, &plen, &tag, dec->in, dec->in_len,
		    dec->chunk_index == 0 ? dec->header : NULL,
		    dec->chunk_index == 0 ? AD_LEN : 0) != 0) {
		snprintf(msg, sizeof(msg),
			 "authentication failed in chunk %llu (wrong key or corrupted data)",
			 (unsigned long long)dec->chunk_index);
		return dec_fail(dec, SORA_ERR_CORRUPT, err, msg);
	}
	if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
		dec->mode = DEC_DONE;
	} else if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE) {
		return dec_fail(dec, SORA_ERR_CORRUPT, err, "unexpected chunk tag");
	} else if (at_end || plen != SORA_BLOB_CRYPT_CHUNK) {
		/* Only the final chunk may be short, and the stream must end with
		 * it: anything else means the object was cut. */
		return dec_fail(dec, SORA_ERR_CORRUPT, err,
				"truncated encrypted data (missing final chunk)");
	}
	dec->chunk_index++;
	dec->in_len = 0;
	return dec_emit(dec, dec->plain, (size_t)plen, err);
}

int sora_blob_decryptor_feed(struct sora_blob_decryptor *dec, const void *data,
			     size_t len, struct sora_error *err)
{
	const unsigned char *p = data;
	int ret;

	while (len > 0) {
		size_t want, n;

		switch (dec->mode) {
		case DEC_SNIFF:
		case DEC_HEADER:
			want = (dec->mode == DEC_SNIFF ? SORA_BLOB_CRYPT_MAGIC_LEN
						      : SORA_BLOB_CRYPT_HEADER_LEN) - dec->in_len;
			n = len < want ? len : want;
			memcpy(dec->header + dec->in_len, p, n);
			dec->in_len += n;
			p += n;
			len -= n;
			if (n < want)
				break;
			if (dec->mode == DEC_HEADER) {
				if ((ret = dec_header(dec, err)) < 0)
					return ret;
			} else if (sora_blob_crypt_has_magic(dec->header, dec->in_len)) {
				dec->encrypted = true;
				dec->mode = DEC_HEADER;
			} else if (dec->allow_plaintext) {
				dec->mode = DEC_PLAIN;
				if ((ret = dec_emit(dec, dec->header, dec->in_len, err)) < 0)
					return ret;
			} else {
				return dec_fail(dec, SORA_ERR_CORRUPT, err,
						"not encrypted (no encryption header) although encryption is required");
			}
			break;
		case DEC_CHUNKS:
			want = RECORD_MAX - dec->in_len;
			n = len < want ? len : want;
			memcpy(dec->in + dec->in_len, p, n);
			dec->in_len += n;
			p += n;
			len -= n;
			/* A full record is decrypted at once; whether it is the
			 * last one is told by its tag. */
			if (dec->in_len == RECORD_MAX && (ret = dec_record(dec, false, err)) < 0)
				return ret;
			break;
		case DEC_PLAIN:
			return dec_emit(dec, p, len, err);
		case DEC_DONE:
			return dec_fail(dec, SORA_ERR_CORRUPT, err,
					"data after the final encrypted chunk");
		case DEC_FAILED:
		default:
			return sora_error_set(err, SORA_ERR_CORRUPT,
					      "object %s: decryption already failed", dec->name);
		}
	}
	return 0;
}

int sora_blob_decryptor_finish(struct sora_blob_decryptor *dec, struct sora_error *err)
{
	switch (dec->mode) {
	case DEC_SNIFF:
		if (dec->allow_plaintext) {
			/* A plaintext object shorter than the magic. */
			dec->mode = DEC_DONE;
			return dec_emit(dec, dec->header, dec->in_len, err);
		}
		return dec_fail(dec, SORA_ERR_CORRUPT, err,
				dec->in_len == 0 ? "empty object (no encryption header)"
						 : "truncated encryption header");
	case DEC_HEADER:
		return dec_fail(dec, SORA_ERR_CORRUPT, err, "truncated encryption header");
	case DEC_CHUNKS:
		if (dec->in_len < SORA_BLOB_CRYPT_ABYTES)
			return dec_fail(dec, SORA_ERR_CORRUPT, err,
					"truncated encrypted data (missing final chunk)");
		return dec_record(dec, true, err);
	case DEC_PLAIN:
	case DEC_DONE:
		dec->mode = DEC_DONE;
		return 0;
	case DEC_FAILED:
	default:
		return sora_error_set(err, SORA_ERR_CORRUPT,
				      "object %s: decryption already failed", dec->name);
	}
}
