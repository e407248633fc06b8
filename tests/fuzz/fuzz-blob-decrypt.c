/* libFuzzer target for the blob store's decryptor (backend/blob/blob-crypt.h):
 * stored objects come back from S3, which the store does not trust. The
 * input is an object as stored. It is decrypted with a fixed keyring twice,
 * whole and in pieces whose sizes come from the data, and the two runs must
 * agree on the outcome and the output. An accepted encrypted object must
 * produce exactly the plaintext length its size implies; an accepted
 * plaintext object must come out unchanged. The seed corpus holds real
 * encryptions of repeated "Subject: seed" text (0 to 65546 bytes) under
 * KEY, one under OLD, and one plaintext object. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "backend/blob/blob-crypt.h"

#define KEY "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define OLD "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define OUT_MAX (4 * 1024 * 1024)

struct out {
	unsigned char *p;
	size_t len;
};

static int sink(void *ctx, const void *data, size_t len)
{
	struct out *o = ctx;

	if (o->len + len > OUT_MAX)
		abort();
	memcpy(o->p + o->len, data, len);
	o->len += len;
	return 0;
}

static int run(struct sora_blob_keyring *kr, const uint8_t *data, size_t size, size_t piece,
	       struct out *o)
{
	struct sora_blob_decryptor *dec = NULL;
	struct sora_error err;
	int ret = 0;

	if (sora_blob_decryptor_new(kr, "fuzz/object", true, sink, o, &dec) < 0)
		abort();
	for (size_t pos = 0; pos < size && ret == 0; pos += piece) {
		size_t n = size - pos < piece ? size - pos : piece;
		ret = sora_blob_decryptor_feed(dec, data + pos, n, &err);
	}
	if (ret == 0)
		ret = sora_blob_decryptor_finish(dec, &err);
	if (ret != 0 && (ret != -1 || err.cls != SORA_ERR_CORRUPT ||
			 strstr(err.msg, "fuzz/object") == NULL))
		abort();
	sora_blob_decryptor_free(&dec);
	return ret == 0 ? SORA_ERR_OK : (int)err.cls;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sora_blob_keyring *kr;
	static unsigned char *buf1, *buf2;
	struct out a, b;
	size_t piece;
	int r1, r2;

	if (kr == NULL) {
		const char *old[1] = { OLD };
		struct sora_error err;
		if (sodium_init() < 0 || sora_blob_keyring_new(KEY, old, 1, &kr, &err) < 0)
			abort();
		buf1 = malloc(OUT_MAX);
		buf2 = malloc(OUT_MAX);
	}
	if (size > OUT_MAX / 2)
		return 0;
	a.p = buf1;
	a.len = 0;
	b.p = buf2;
	b.len = 0;
	r1 = run(kr, data, size, size > 0 ? size : 1, &a);
	piece = size > 0 ? 1 + data[size - 1] % 97 : 1;
	r2 = run(kr, data, size, piece, &b);
	if (r1 != r2)
		abort();
	if (r1 == 0) {
		if (a.len != b.len || memcmp(a.p, b.p, a.len) != 0)
			abort();
		if (sora_blob_crypt_has_magic(data, size)) {
			uint64_t plain;
			if (sora_blob_crypt_plaintext_len(size, &plain) < 0 || plain != a.len)
				abort();
		} else if (a.len != size || (size > 0 && memcmp(a.p, data, size) != 0)) {
			abort();
		}
	}
	return 0;
}
