#include "backend/blob/blob-hash.h"

#include <stdio.h>
#include <string.h>

void sora_blob_hash_init(struct sora_blob_hasher *h)
{
	crypto_generichash_init(&h->state, NULL, 0, SORA_BLOB_HASH_BYTES);
	h->size = 0;
}

void sora_blob_hash_update(struct sora_blob_hasher *h, const void *data, size_t len)
{
	if (len == 0)
		return;
	crypto_generichash_update(&h->state, data, len);
	h->size += len;
}

void sora_blob_hash_final(struct sora_blob_hasher *h, char hex_r[SORA_BLOB_HASH_HEX_SIZE])
{
	unsigned char out[SORA_BLOB_HASH_BYTES];

	crypto_generichash_final(&h->state, out, sizeof(out));
	sodium_bin2hex(hex_r, SORA_BLOB_HASH_HEX_SIZE, out, sizeof(out));
}

void sora_blob_hash_buf(const void *data, size_t len, char hex_r[SORA_BLOB_HASH_HEX_SIZE])
{
	unsigned char out[SORA_BLOB_HASH_BYTES];

	crypto_generichash(out, sizeof(out), data, len, NULL, 0);
	sodium_bin2hex(hex_r, SORA_BLOB_HASH_HEX_SIZE, out, sizeof(out));
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
