#include "backend/blob/blob-hash.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

/* ---- BLAKE2b (RFC 7693) ---- */

static const uint64_t blake2b_iv[8] = {
	UINT64_C(0x6a09e667f3bcc908), UINT64_C(0xbb67ae8584caa73b),
	UINT64_C(0x3c6ef372fe94f82b), UINT64_C(0xa54ff53a5f1d36f1),
	UINT64_C(0x510e527fade682d1), UINT64_C(0x9b05688c2b3e6c1f),
	UINT64_C(0x1f83d9abfb41bd6b), UINT64_C(0x5be0cd19137e2179),
};

/* The message word order of each round (RFC 7693 section 2.7); rounds 10
 * and 11 use rows 0 and 1 again (r % 10, folded at compile time). */
static const uint8_t blake2b_sigma[10][16] = {
	{ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 },
	{ 14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3 },
	{ 11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4 },
	{ 7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8 },
	{ 9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13 },
	{ 2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9 },
	{ 12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11 },
	{ 13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10 },
	{ 6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5 },
	{ 10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0 },
};

static inline uint64_t rotr64(uint64_t x, unsigned n)
{
	return (x >> n) | (x << (64 - n));
}

static inline uint64_t load64_le(const unsigned char *p)
{
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
	       (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
	       (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

#define G(r, i, a, b, c, d)                                      \
	do {                                                     \
		a = a + b + m[blake2b_sigma[(r) % 10][2 * (i)]]; \
		d = rotr64(d ^ a, 32);                           \
		c = c + d;                                       \
		b = rotr64(b ^ c, 24);                           \
		a = a + b + m[blake2b_sigma[(r) % 10][2 * (i) + 1]]; \
		d = rotr64(d ^ a, 16);                           \
		c = c + d;                                       \
		b = rotr64(b ^ c, 63);                           \
	} while (0)

#define ROUND(r)                                   \
	do {                                       \
		G(r, 0, v0, v4, v8, v12);          \
		G(r, 1, v1, v5, v9, v13);          \
		G(r, 2, v2, v6, v10, v14);         \
		G(r, 3, v3, v7, v11, v15);         \
		G(r, 4, v0, v5, v10, v15);         \
		G(r, 5, v1, v6, v11, v12);         \
		G(r, 6, v2, v7, v8, v13);          \
		G(r, 7, v3, v4, v9, v14);          \
	} while (0)

/* The compression function F: one 128-byte block into the state; count is
 * the bytes hashed up to the end of the block (messages here stay far
 * below 2^64 bytes, so the counter's high word is 0). */
static void blake2b_compress(uint64_t h[8], const unsigned char *block, uint64_t count,
			     bool last)
{
	uint64_t m[16];
	uint64_t v0 = h[0], v1 = h[1], v2 = h[2], v3 = h[3], v4 = h[4], v5 = h[5], v6 = h[6],
		 v7 = h[7];
	uint64_t v8 = blake2b_iv[0], v9 = blake2b_iv[1], v10 = blake2b_iv[2],
		 v11 = blake2b_iv[3], v12 = blake2b_iv[4] ^ count, v13 = blake2b_iv[5],
		 v14 = last ? ~blake2b_iv[6] : blake2b_iv[6], v15 = blake2b_iv[7];

	for (int i = 0; i < 16; i++)
		m[i] = load64_le(block + 8 * i);
	ROUND(0);
	ROUND(1);
	ROUND(2);
	ROUND(3);
	ROUND(4);
	ROUND(5);
	ROUND(6);
	ROUND(7);
	ROUND(8);
	ROUND(9);
	ROUND(10);
	ROUND(11);
	h[0] ^= v0 ^ v8;
	h[1] ^= v1 ^ v9;
	h[2] ^= v2 ^ v10;
	h[3] ^= v3 ^ v11;
	h[4] ^= v4 ^ v12;
	h[5] ^= v5 ^ v13;
	h[6] ^= v6 ^ v14;
	h[7] ^= v7 ^ v15;
}

#undef ROUND
#undef G

void sora_blob_hash_init(struct sora_blob_hasher *h)
{
	memcpy(h->h, blake2b_iv, sizeof(h->h));
	/* The parameter block: digest length, no key, fanout 1, depth 1. */
	h->h[0] ^= UINT64_C(0x01010000) | SORA_BLOB_HASH_BYTES;
	h->buf_len = 0;
	h->size = 0;
}

void sora_blob_hash_update(struct sora_blob_hasher *h, const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t count = h->size - h->buf_len;  /* bytes already compressed */

	if (len == 0)
		return;
	h->size += len;
	/* The last block is compressed differently, so a full block is only
	 * compressed once more input follows it. */
	if (h->buf_len > 0) {
		size_t take = sizeof(h->buf) - h->buf_len;

		if (len <= take) {
			memcpy(h->buf + h->buf_len, p, len);
			h->buf_len += len;
			return;
		}
		memcpy(h->buf + h->buf_len, p, take);
		count += sizeof(h->buf);
		blake2b_compress(h->h, h->buf, count, false);
		h->buf_len = 0;
		p += take;
		len -= take;
	}
	while (len > sizeof(h->buf)) {
		count += sizeof(h->buf);
		blake2b_compress(h->h, p, count, false);
		p += sizeof(h->buf);
		len -= sizeof(h->buf);
	}
	memcpy(h->buf, p, len);
	h->buf_len = len;
}

void sora_blob_hash_final(struct sora_blob_hasher *h, char hex_r[SORA_BLOB_HASH_HEX_SIZE])
{
	unsigned char out[SORA_BLOB_HASH_BYTES];

	memset(h->buf + h->buf_len, 0, sizeof(h->buf) - h->buf_len);
	blake2b_compress(h->h, h->buf, h->size, true);
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (unsigned char)(h->h[i / 8] >> (8 * (i % 8)));
	sodium_bin2hex(hex_r, SORA_BLOB_HASH_HEX_SIZE, out, sizeof(out));
}

void sora_blob_hash_buf(const void *data, size_t len, char hex_r[SORA_BLOB_HASH_HEX_SIZE])
{
	struct sora_blob_hasher h;

	sora_blob_hash_init(&h);
	sora_blob_hash_update(&h, data, len);
	sora_blob_hash_final(&h, hex_r);
}

bool sora_blob_hash_valid(struct sora_str s)
{
	if (s.p == NULL || s.len != SORA_BLOB_HASH_HEX_LEN)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		char c = s.p[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

int sora_blob_key_format(int64_t account_id, const char *hash, char *dst, size_t size)
{
	int n;

	if (account_id <= 0 || hash == NULL || !sora_blob_hash_valid(sora_str_c(hash)))
		return -1;
	n = snprintf(dst, size, "%c%c/%lld/%s", hash[0], hash[1],
		     (long long)account_id, hash);
	if (n < 0 || (size_t)n >= size)
		return -1;
	return 0;
}

int sora_blob_key_parse(struct sora_str key, int64_t *account_id_r,
			char hash_r[SORA_BLOB_HASH_HEX_SIZE])
{
	const char *p = key.p, *end = key.p + key.len, *slash;
	uint64_t id;

	if (key.p == NULL || key.len < 3 + 2 + SORA_BLOB_HASH_HEX_LEN || p[2] != '/')
		return -1;
	p += 3;
	slash = memchr(p, '/', (size_t)(end - p));
	if (slash == NULL || slash == p || p[0] == '0')
		return -1;
	if (sora_str_to_u64(sora_str_make(p, (size_t)(slash - p)), INT64_MAX, &id) < 0 || id == 0)
		return -1;
	p = slash + 1;
	if (!sora_blob_hash_valid(sora_str_make(p, (size_t)(end - p))))
		return -1;
	if (p[0] != key.p[0] || p[1] != key.p[1])
		return -1;
	memcpy(hash_r, p, SORA_BLOB_HASH_HEX_LEN);
	hash_r[SORA_BLOB_HASH_HEX_LEN] = '\0';
	*account_id_r = (int64_t)id;
	return 0;
}
