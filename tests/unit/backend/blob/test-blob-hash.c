/* Tests for content addressing (backend/blob/blob-hash.h): BLAKE2b-256
 * reference values, the same digests as libsodium's for every length and
 * any split into pieces, streaming equals one-shot, key layout and
 * parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "backend/blob/blob-hash.h"

/* BLAKE2b-256 of "" and of "abc" (RFC 7693's test input), as computed
 * independently by Python's hashlib.blake2b(digest_size=32). */
#define H_EMPTY "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"
#define H_ABC   "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"

static void test_reference_values(void **state)
{
	char hex[SORA_BLOB_HASH_HEX_SIZE];

	sora_blob_hash_buf("", 0, hex);
	assert_string_equal(hex, H_EMPTY);
	sora_blob_hash_buf("abc", 3, hex);
	assert_string_equal(hex, H_ABC);
}

static void test_streaming_matches_one_shot(void **state)
{
	const size_t n = 300001;
	unsigned char *data = malloc(n);
	char one[SORA_BLOB_HASH_HEX_SIZE], many[SORA_BLOB_HASH_HEX_SIZE];
	struct sora_blob_hasher h;

	for (size_t i = 0; i < n; i++)
		data[i] = (unsigned char)(i * 131 + (i >> 8));
	sora_blob_hash_buf(data, n, one);
	/* Uneven pieces, including empty ones and single bytes. */
	size_t steps[] = { 0, 1, 7, 128, 129, 4096, 65536, 1 };
	size_t pos = 0, k = 0;
	sora_blob_hash_init(&h);
	while (pos < n) {
		size_t step = steps[k++ % (sizeof(steps) / sizeof(steps[0]))];
		if (step > n - pos)
			step = n - pos;
		sora_blob_hash_update(&h, data + pos, step);
		pos += step;
	}
	assert_int_equal(h.size, n);
	sora_blob_hash_final(&h, many);
	assert_string_equal(one, many);
	/* One byte at a time over a prefix gives the prefix's hash. */
	sora_blob_hash_init(&h);
	for (size_t i = 0; i < 1000; i++)
		sora_blob_hash_update(&h, data + i, 1);
	sora_blob_hash_final(&h, many);
	sora_blob_hash_buf(data, 1000, one);
	assert_string_equal(one, many);
	free(data);
}

static void sodium_hex(const unsigned char *data, size_t len, char hex[SORA_BLOB_HASH_HEX_SIZE])
{
	unsigned char out[SORA_BLOB_HASH_BYTES];

	crypto_generichash(out, sizeof(out), data, len, NULL, 0);
	sodium_bin2hex(hex, SORA_BLOB_HASH_HEX_SIZE, out, sizeof(out));
}

/* The implementation is this project's own: libsodium's digest must come
 * out for every length around and across block boundaries (0..1100 bytes),
 * for large inputs, and whatever pieces the input arrives in. */
static void test_matches_libsodium(void **state)
{
	const size_t n = 200003;
	unsigned char *data = malloc(n);
	char want[SORA_BLOB_HASH_HEX_SIZE], got[SORA_BLOB_HASH_HEX_SIZE];
	struct sora_blob_hasher h;
	uint64_t x = 0x2545F4914F6CDD1Dull;

	assert_non_null(data);
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		data[i] = (unsigned char)x;
	}
	for (size_t len = 0; len <= 1100; len++) {
		sodium_hex(data, len, want);
		sora_blob_hash_buf(data, len, got);
		if (strcmp(want, got) != 0)
			fail_msg("length %zu: %s, libsodium %s", len, got, want);
	}
	for (size_t len = n - 300; len <= n; len += 37) {
		sodium_hex(data, len, want);
		sora_blob_hash_buf(data, len, got);
		assert_string_equal(got, want);
	}
	/* Random pieces, from empty to several blocks. */
	for (int iter = 0; iter < 300; iter++) {
		size_t len, pos = 0;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		len = (size_t)(x % 5000);
		sora_blob_hash_init(&h);
		while (pos < len) {
			size_t step;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			step = (size_t)(x % 300);
			if (step > len - pos)
				step = len - pos;
			sora_blob_hash_update(&h, data + pos, step);
			pos += step;
		}
		sora_blob_hash_final(&h, got);
		sodium_hex(data, len, want);
		if (strcmp(want, got) != 0)
			fail_msg("length %zu in pieces: %s, libsodium %s", len, got, want);
	}
	free(data);
}

static void test_hash_valid(void **state)
{
	assert_true(sora_blob_hash_valid(sora_str_c(H_EMPTY)));
	assert_false(sora_blob_hash_valid(sora_str_c("")));
	assert_false(sora_blob_hash_valid(SORA_STR_NULL));
	/* Upper case is not the canonical form. */
	assert_false(sora_blob_hash_valid(sora_str_c(
		"0E5751C026E543B2E8AB2EB06099DAA1D1E5DF47778F7787FAAB45CDF12FE3A8")));
	assert_false(sora_blob_hash_valid(sora_str_c(H_EMPTY "0")));
	assert_false(sora_blob_hash_valid(sora_str_make(H_EMPTY, 63)));
	assert_false(sora_blob_hash_valid(sora_str_c(
		"0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3ag")));
	char nul[65];
	memcpy(nul, H_EMPTY, 65);
	nul[10] = '\0';
	assert_false(sora_blob_hash_valid(sora_str_make(nul, 64)));
}

static void test_key_layout(void **state)
{
	char key[SORA_BLOB_KEY_SIZE], hash[SORA_BLOB_HASH_HEX_SIZE];
	int64_t id = 0;

	assert_int_equal(sora_blob_key_format(1, H_ABC, key, sizeof(key)), 0);
	assert_string_equal(key, "bd/1/" H_ABC);
	assert_int_equal(sora_blob_key_format(INT64_MAX, H_EMPTY, key, sizeof(key)), 0);
	assert_string_equal(key, "0e/9223372036854775807/" H_EMPTY);
	/* SORA_BLOB_KEY_SIZE is enough for the largest id. */
	assert_true(strlen(key) < SORA_BLOB_KEY_SIZE);

	assert_int_equal(sora_blob_key_format(0, H_ABC, key, sizeof(key)), -1);
	assert_int_equal(sora_blob_key_format(-5, H_ABC, key, sizeof(key)), -1);
	assert_int_equal(sora_blob_key_format(1, "abc", key, sizeof(key)), -1);
	assert_int_equal(sora_blob_key_format(1, NULL, key, sizeof(key)), -1);
	assert_int_equal(sora_blob_key_format(1, H_ABC, key, 20), -1);

	assert_int_equal(sora_blob_key_parse(sora_str_c("bd/42/" H_ABC), &id, hash), 0);
	assert_int_equal(id, 42);
	assert_string_equal(hash, H_ABC);
	/* Round trip. */
	assert_int_equal(sora_blob_key_format(123456789, H_EMPTY, key, sizeof(key)), 0);
	assert_int_equal(sora_blob_key_parse(sora_str_c(key), &id, hash), 0);
	assert_int_equal(id, 123456789);
	assert_string_equal(hash, H_EMPTY);

	const char *bad[] = {
		"",
		"bd/42",
		"bd//" H_ABC,
		"bd/0/" H_ABC,
		"bd/042/" H_ABC,
		"bd/-1/" H_ABC,
		"bd/x/" H_ABC,
		"ab/42/" H_ABC,          /* prefix does not match the hash */
		"bd42/" H_ABC,
		"bd/42/" H_ABC "/",
		"bd/42/" H_ABC "0",
		"bd/99999999999999999999/" H_ABC,
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (sora_blob_key_parse(sora_str_c(bad[i]), &id, hash) != -1)
			fail_msg("accepted bad key \"%s\"", bad[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_values),
		cmocka_unit_test(test_streaming_matches_one_shot),
		cmocka_unit_test(test_matches_libsodium),
		cmocka_unit_test(test_hash_valid),
		cmocka_unit_test(test_key_layout),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
