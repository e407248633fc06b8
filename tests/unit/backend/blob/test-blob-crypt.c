/* Tests for client-side encryption (backend/blob/blob-crypt.h): round trips
 * over the sizes around chunk boundaries, deterministic rewind, key
 * rotation, wrong and unknown keys, every kind of damage (flipped bits,
 * truncation, reordering, trailing bytes), header garbage, piecewise and
 * byte-at-a-time feeding, keyring parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/blob/blob-crypt.h"
#include "blob-test.h"

#define C SORA_BLOB_CRYPT_CHUNK
#define HLEN SORA_BLOB_CRYPT_HEADER_LEN
#define REC (C + SORA_BLOB_CRYPT_ABYTES)

#define KEY1 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define KEY2 "FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210"
#define KEY3 "1111111111111111111111111111111111111111111111111111111111111111"

static struct sora_blob_keyring *keyring(const char *cur, const char *old1, const char *old2)
{
	const char *olds[2] = { old1, old2 };
	size_t n = (old1 != NULL) + (old2 != NULL);
	struct sora_blob_keyring *kr = NULL;
	struct sora_error err;

	if (sora_blob_keyring_new(cur, old1 != NULL ? olds : olds + 1, n, &kr, &err) < 0)
		fail_msg("keyring: %s", err.msg);
	return kr;
}

/* Encrypts data, reading the encryptor in uneven pieces. */
static unsigned char *encrypt_all(struct sora_blob_keyring *kr, const unsigned char *data,
				  size_t n, size_t *len_r)
{
	struct sora_blob_mem_source ms;
	struct sora_blob_source plain, out;
	struct sora_blob_encryptor *enc = NULL;
	struct sora_error err;
	unsigned char *ct;
	size_t pos = 0, step = 1;

	sora_blob_mem_source_init(&plain, &ms, data, n);
	assert_int_equal(sora_blob_encryptor_new(kr, &plain, &out, &enc, &err), 0);
	assert_int_equal(out.length, sora_blob_crypt_ciphertext_len(n));
	ct = malloc(out.length + 1);
	for (;;) {
		ssize_t r = out.read(out.ctx, ct + pos, step, &err);
		assert_true(r >= 0);
		if (r == 0)
			break;
		pos += (size_t)r;
		assert_true(pos <= out.length);
		step = step * 3 + 1;
		if (step > 100000)
			step = 7;
	}
	assert_int_equal(pos, out.length);
	sora_blob_encryptor_free(&enc);
	assert_null(enc);
	*len_r = pos;
	return ct;
}

/* Decrypts ct fed in pieces of `piece` bytes (0: one piece). Returns the
 * status; the plaintext goes to m. */
static int decrypt_all(struct sora_blob_keyring *kr, const unsigned char *ct, size_t len,
		       size_t piece, bool allow_plain, struct membuf *m,
		       struct sora_error *err)
{
	struct sora_blob_decryptor *dec = NULL;
	int ret = 0;

	assert_int_equal(sora_blob_decryptor_new(kr, "ab/1/test", allow_plain, membuf_sink, m,
						 &dec), 0);
	if (piece == 0)
		piece = len > 0 ? len : 1;
	for (size_t pos = 0; pos < len && ret == 0; pos += piece) {
		size_t n = len - pos < piece ? len - pos : piece;
		ret = sora_blob_decryptor_feed(dec, ct + pos, n, err);
	}
	if (ret == 0)
		ret = sora_blob_decryptor_finish(dec, err);
	sora_blob_decryptor_free(&dec);
	assert_null(dec);
	return ret;
}

static void roundtrip(struct sora_blob_keyring *kr, size_t n)
{
	unsigned char *data = random_bytes(n), *ct;
	struct sora_error err;
	struct membuf m = { 0 };
	size_t len, pieces[] = { 0, 1000, 65553, 4093 };

	ct = encrypt_all(kr, data, n, &len);
	assert_true(sora_blob_crypt_has_magic(ct, len));
	assert_int_equal(ct[8], SORA_BLOB_CRYPT_VERSION);
	uint64_t back = 0;
	assert_int_equal(sora_blob_crypt_plaintext_len(len, &back), 0);
	assert_int_equal(back, n);
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		int ret = decrypt_all(kr, ct, len, pieces[i], false, &m, &err);
		if (ret != 0)
			fail_msg("size %zu piece %zu: %s", n, pieces[i], err.msg);
		assert_int_equal(m.len, n);
		if (n > 0)
			assert_memory_equal(m.p, data, n);
		/* Plaintext comes out one whole chunk at a time. */
		assert_int_equal(m.calls, n == 0 ? 0 : (int)((n + C - 1) / C));
		membuf_reset(&m);
	}
	/* Byte at a time (bounded for the big sizes). */
	if (n <= 2 * C + 10) {
		assert_int_equal(decrypt_all(kr, ct, len, 1, true, &m, &err), 0);
		assert_int_equal(m.len, n);
		if (n > 0)
			assert_memory_equal(m.p, data, n);
		membuf_reset(&m);
	}
	free(ct);
	free(data);
}

static void test_roundtrip_sizes(void **state)
{
	struct sora_blob_keyring *kr = keyring(KEY1, NULL, NULL);
	size_t sizes[] = { 0, 1, 2, 7, 8, 100, C - 1, C, C + 1, 2 * C - 1, 2 * C, 2 * C + 1,
			   5 * 1024 * 1024, 5 * 1024 * 1024 + 3 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		roundtrip(kr, sizes[i]);
	sora_blob_keyring_free(&kr);
	assert_null(kr);
}

static void test_lengths(void **state)
{
	uint64_t p;

	assert_int_equal(sora_blob_crypt_ciphertext_len(0), HLEN + 17);
	assert_int_equal(sora_blob_crypt_ciphertext_len(1), HLEN + 1 + 17);
	assert_int_equal(sora_blob_crypt_ciphertext_len(C), HLEN + REC);
	assert_int_equal(sora_blob_crypt_ciphertext_len(C + 1), HLEN + REC + 1 + 17);
	for (uint64_t n = 0; n < 3 * C + 50; n += (n < 100 ? 1 : 997)) {
		assert_int_equal(sora_blob_crypt_plaintext_len(sora_blob_crypt_ciphertext_len(n), &p),
				 0);
		assert_int_equal(p, n);
	}
	uint64_t big = 50ULL * 1024 * 1024 * 1024 + 12345;
	assert_int_equal(sora_blob_crypt_plaintext_len(sora_blob_crypt_ciphertext_len(big), &p), 0);
	assert_int_equal(p, big);
	/* Lengths no plaintext produces. */
	assert_int_equal(sora_blob_crypt_plaintext_len(0, &p), -1);
	assert_int_equal(sora_blob_crypt_plaintext_len(HLEN, &p), -1);
	assert_int_equal(sora_blob_crypt_plaintext_len(HLEN + 16, &p), -1);
	assert_int_equal(sora_blob_crypt_plaintext_len(HLEN + REC + 17, &p), -1);
	assert_int_equal(sora_blob_crypt_plaintext_len(HLEN + REC + 5, &p), -1);
	/* Prefix lengths cover whole chunks. */
	assert_int_equal(sora_blob_crypt_prefix_len(0), HLEN);
	assert_int_equal(sora_blob_crypt_prefix_len(1), HLEN + REC);
	assert_int_equal(sora_blob_crypt_prefix_len(C), HLEN + REC);
	assert_int_equal(sora_blob_crypt_prefix_len(C + 1), HLEN + 2 * REC);
}

static void test_rewind_is_deterministic(void **state)
{
	struct sora_blob_keyring *kr = keyring(KEY1, NULL, NULL);
	const size_t n = 3 * C + 5;
	unsigned char *data = random_bytes(n), *a = malloc(sora_blob_crypt_ciphertext_len(n)),
		      *b = malloc(sora_blob_crypt_ciphertext_len(n));
	struct sora_blob_mem_source ms;
	struct sora_blob_source plain, out;
	struct sora_blob_encryptor *enc = NULL;
	struct sora_error err;
	size_t len = sora_blob_crypt_ciphertext_len(n), pos;

	sora_blob_mem_source_init(&plain, &ms, data, n);
	assert_int_equal(sora_blob_encryptor_new(kr, &plain, &out, &enc, &err), 0);
	for (pos = 0; pos < len;)
		pos += (size_t)out.read(out.ctx, a + pos, 10000, &err);
	assert_int_equal(out.read(out.ctx, a, 10, &err), 0);
	/* Rewind in the middle of a second pass, then read it all again. */
	assert_int_equal(out.rewind(out.ctx, &err), 0);
	assert_true(out.read(out.ctx, b, 70000, &err) > 0);
	assert_int_equal(out.rewind(out.ctx, &err), 0);
	for (pos = 0; pos < len;)
		pos += (size_t)out.read(out.ctx, b + pos, 333, &err);
	assert_memory_equal(a, b, len);
	sora_blob_encryptor_free(&enc);

	/* A new encryptor picks a new stream header: different ciphertext. */
	size_t len2;
	unsigned char *c2 = encrypt_all(kr, data, n, &len2);
	assert_int_equal(len2, len);
	assert_memory_equal(c2, a, 17);            /* magic, version, key id */
	assert_memory_not_equal(c2 + 17, a + 17, 24);
	free(c2);
	free(a);
	free(b);
	free(data);
	sora_blob_keyring_free(&kr);
}

static void test_key_id_and_rotation(void **state)
{
	struct sora_blob_keyring *k1 = keyring(KEY1, NULL, NULL);
	struct sora_blob_keyring *k2 = keyring(KEY2, NULL, NULL);
	struct sora_blob_keyring *rotated = keyring(KEY2, KEY3, KEY1);
	struct sora_blob_keyring *readonly = keyring(NULL, KEY1, NULL);
	unsigned char key[32], digest[32];
	char id[SORA_BLOB_CRYPT_KEY_ID_HEX_SIZE], want[SORA_BLOB_CRYPT_KEY_ID_HEX_SIZE];
	const char msg[] = "secret body";
	struct sora_error err;
	struct membuf m = { 0 };
	unsigned char *ct;
	size_t len;

	/* The key id is the first 8 bytes of BLAKE2b-256 of the raw key. */
	assert_int_equal(sodium_hex2bin(key, 32, KEY1, 64, NULL, NULL, NULL), 0);
	crypto_generichash(digest, 32, key, 32, NULL, 0);
	sodium_bin2hex(want, sizeof(want), digest, 8);
	sora_blob_keyring_current_id(k1, id);
	assert_string_equal(id, want);
	ct = encrypt_all(k1, (const unsigned char *)msg, sizeof(msg), &len);
	assert_memory_equal(ct + 9, digest, 8);
	assert_int_equal(sora_blob_keyring_count(rotated), 3);

	/* Another key: a clear error naming the object and the key id. */
	assert_int_equal(CLS(decrypt_all(k2, ct, len, 0, false, &m, &err)), SORA_ERR_CORRUPT);
	assert_int_equal(m.len, 0);
	char expect[200];
	snprintf(expect, sizeof(expect), "object ab/1/test: encrypted with key id %s which is not configured", want);
	assert_string_equal(err.msg, expect);
	/* No keys at all. */
	assert_int_equal(CLS(decrypt_all(NULL, ct, len, 0, true, &m, &err)), SORA_ERR_CORRUPT);
	assert_non_null(strstr(err.msg, "not configured"));
	/* After rotation the old key still reads, and so does a keyring
	 * with old keys only; that one cannot encrypt. */
	assert_int_equal(decrypt_all(rotated, ct, len, 0, false, &m, &err), 0);
	assert_int_equal(m.len, sizeof(msg));
	membuf_reset(&m);
	assert_int_equal(decrypt_all(readonly, ct, len, 0, false, &m, &err), 0);
	membuf_reset(&m);
	assert_false(sora_blob_keyring_can_encrypt(readonly));
	sora_blob_keyring_current_id(readonly, id);
	assert_string_equal(id, "");
	struct sora_blob_mem_source ms;
	struct sora_blob_source plain, out;
	struct sora_blob_encryptor *enc = NULL;
	sora_blob_mem_source_init(&plain, &ms, msg, sizeof(msg));
	assert_int_equal(CLS(sora_blob_encryptor_new(readonly, &plain, &out, &enc, &err)),
			 SORA_ERR_PERMANENT);

	/* Same key id, different key bytes (forged header): authentication
	 * fails rather than returning garbage. */
	unsigned char *forged = malloc(len);
	memcpy(forged, ct, len);
	sora_blob_keyring_current_id(k2, id);
	sodium_hex2bin(forged + 9, 8, id, 16, NULL, NULL, NULL);
	assert_int_equal(CLS(decrypt_all(k2, forged, len, 0, false, &m, &err)), SORA_ERR_CORRUPT);
	assert_non_null(strstr(err.msg, "authentication failed"));
	assert_int_equal(m.len, 0);
	free(forged);

	free(ct);
	sora_blob_keyring_free(&k1);
	sora_blob_keyring_free(&k2);
	sora_blob_keyring_free(&rotated);
	sora_blob_keyring_free(&readonly);
}

/* Decrypting a damaged object must fail, and whatever came out before the
 * failure must be a prefix of the plaintext made of whole good chunks. */
static void expect_damage_detected(struct sora_blob_keyring *kr, const unsigned char *ct,
				   size_t len, const unsigned char *data, size_t n,
				   const char *what, size_t where)
{
	struct sora_error err;
	struct membuf m = { 0 };
	int ret = decrypt_all(kr, ct, len, 4096, false, &m, &err);

	if (ret != -1 || err.cls != SORA_ERR_CORRUPT)
		fail_msg("%s at %zu not detected (ret %d)", what, where, ret);
	assert_non_null(strstr(err.msg, "ab/1/test"));
	assert_true(m.len <= n);
	assert_true(m.len % C == 0);
	if (m.len > 0)
		assert_memory_equal(m.p, data, m.len);
	membuf_reset(&m);
}

static void test_tampering(void **state)
{
	struct sora_blob_keyring *kr = keyring(KEY1, NULL, NULL);
	const size_t n = 2 * C + 100;
	unsigned char *data = random_bytes(n), *ct;
	size_t len;

	ct = encrypt_all(kr, data, n, &len);
	/* Flip one bit: everywhere in the header and the start, at and
	 * around chunk boundaries, and spread over the rest. */
	for (size_t i = 0; i < len; i++) {
		bool probe = i < 300 || i % 997 == 0 || i >= len - 40 ||
			     (i + 20 > HLEN + REC && i < HLEN + REC + 20) ||
			     (i + 20 > HLEN + 2 * REC && i < HLEN + 2 * REC + 20);
		if (!probe)
			continue;
		ct[i] ^= 0x04;
		expect_damage_detected(kr, ct, len, data, n, "bit flip", i);
		ct[i] ^= 0x04;
	}
	/* Every truncation. */
	for (size_t cut = 0; cut < len; cut += (cut < 200 ? 1 : 101))
		expect_damage_detected(kr, ct, cut, data, n, "truncation", cut);
	expect_damage_detected(kr, ct, HLEN + REC, data, n, "truncation", HLEN + REC);
	expect_damage_detected(kr, ct, HLEN + 2 * REC, data, n, "truncation", HLEN + 2 * REC);
	expect_damage_detected(kr, ct, len - 1, data, n, "truncation", len - 1);

	/* Trailing bytes after a short final chunk shift its boundary:
	 * authentication fails. */
	unsigned char *longer = malloc(len + 1);
	memcpy(longer, ct, len);
	longer[len] = 'x';
	struct sora_error err;
	struct membuf m = { 0 };
	expect_damage_detected(kr, longer, len + 1, data, n, "trailing byte", len);
	free(longer);
	/* After a full-size final chunk they are seen as extra data. */
	size_t flen;
	unsigned char *full = encrypt_all(kr, data, 2 * C, &flen);
	longer = malloc(flen + 3);
	memcpy(longer, full, flen);
	memcpy(longer + flen, "xyz", 3);
	assert_int_equal(CLS(decrypt_all(kr, longer, flen + 3, 0, false, &m, &err)),
			 SORA_ERR_CORRUPT);
	assert_non_null(strstr(err.msg, "after the final"));
	assert_int_equal(m.len, 2 * C);
	membuf_reset(&m);
	free(longer);
	free(full);

	/* Swapped chunks. */
	unsigned char *swapped = malloc(len);
	memcpy(swapped, ct, len);
	memcpy(swapped + HLEN, ct + HLEN + REC, REC);
	memcpy(swapped + HLEN + REC, ct + HLEN, REC);
	expect_damage_detected(kr, swapped, len, data, n, "reordering", 0);
	/* A chunk dropped from the middle. */
	memcpy(swapped, ct, HLEN + REC);
	memcpy(swapped + HLEN + REC, ct + HLEN + 2 * REC, len - HLEN - 2 * REC);
	expect_damage_detected(kr, swapped, len - REC, data, n, "dropped chunk", 0);
	free(swapped);

	/* An empty body's single final chunk cut off. */
	unsigned char *e;
	size_t elen;
	e = encrypt_all(kr, (const unsigned char *)"", 0, &elen);
	assert_int_equal(elen, HLEN + 17);
	expect_damage_detected(kr, e, HLEN, data, 0, "empty body truncated", HLEN);
	free(e);

	/* A body of exactly one chunk ends with a full record tagged final;
	 * cutting it after a full non-final chunk of a longer body is caught
	 * above, and a message-tagged full chunk at the end is caught here. */
	e = encrypt_all(kr, data, 2 * C, &elen);
	expect_damage_detected(kr, e, HLEN + REC, data, 2 * C, "cut at chunk boundary", HLEN + REC);
	free(e);

	free(ct);
	free(data);
	sora_blob_keyring_free(&kr);
}

static void test_header_garbage(void **state)
{
	struct sora_blob_keyring *kr = keyring(KEY1, KEY2, NULL);
	struct sora_error err;
	struct membuf m = { 0 };
	unsigned char buf[HLEN + REC + 64];

	/* Random bytes behind the magic: never a success, never output. */
	for (int round = 0; round < 2000; round++) {
		size_t len = 9 + randombytes_uniform(sizeof(buf) - 9);
		randombytes_buf(buf, len);
		memcpy(buf, SORA_BLOB_CRYPT_MAGIC, SORA_BLOB_CRYPT_MAGIC_LEN);
		if (round % 2 == 0)
			buf[8] = SORA_BLOB_CRYPT_VERSION;
		if (round % 4 == 0) {
			/* A known key id, so the chunk itself gets checked. */
			char id[SORA_BLOB_CRYPT_KEY_ID_HEX_SIZE];
			sora_blob_keyring_current_id(kr, id);
			sodium_hex2bin(buf + 9, 8, id, 16, NULL, NULL, NULL);
		}
		int ret = decrypt_all(kr, buf, len, 1 + randombytes_uniform(50), true, &m, &err);
		assert_int_equal(CLS(ret), SORA_ERR_CORRUPT);
		assert_int_equal(m.len, 0);
		assert_non_null(strstr(err.msg, "object ab/1/test: "));
	}
	/* An unknown format version. */
	memset(buf, 0, sizeof(buf));
	memcpy(buf, SORA_BLOB_CRYPT_MAGIC, SORA_BLOB_CRYPT_MAGIC_LEN);
	buf[8] = 9;
	assert_int_equal(CLS(decrypt_all(kr, buf, HLEN + 20, 0, true, &m, &err)), SORA_ERR_CORRUPT);
	assert_non_null(strstr(err.msg, "unsupported encryption format version 9"));
	/* Only part of the header. */
	assert_int_equal(CLS(decrypt_all(kr, buf, 20, 0, true, &m, &err)), SORA_ERR_CORRUPT);
	assert_non_null(strstr(err.msg, "truncated encryption header"));
	assert_int_equal(CLS(decrypt_all(kr, buf, 8, 0, true, &m, &err)), SORA_ERR_CORRUPT);
	/* Feeding after a failure keeps failing. */
	struct sora_blob_decryptor *dec;
	assert_int_equal(sora_blob_decryptor_new(kr, "x", true, membuf_sink, &m, &dec), 0);
	assert_int_equal(CLS(sora_blob_decryptor_feed(dec, buf, HLEN, &err)), SORA_ERR_CORRUPT);
	assert_int_equal(CLS(sora_blob_decryptor_feed(dec, buf, 10, &err)), SORA_ERR_CORRUPT);
	assert_int_equal(CLS(sora_blob_decryptor_finish(dec, &err)), SORA_ERR_CORRUPT);
	sora_blob_decryptor_free(&dec);
	sora_blob_keyring_free(&kr);
}

static void test_plaintext_objects(void **state)
{
	struct sora_blob_keyring *kr = keyring(KEY1, NULL, NULL);
	struct sora_error err;
	struct membuf m = { 0 };
#define T(lit) { lit, sizeof(lit) - 1 }
	static const struct { const char *p; size_t len; } t[] = {
		T(""), T("a"), T("Subject"), T("Subject: hi\r\n\r\nbody\r\n"), T("\0SORAEN"),
		T("SORAENC\0"),
	};
#undef T
	const char *texts[sizeof(t) / sizeof(t[0])];
	size_t lens[sizeof(t) / sizeof(t[0])];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		texts[i] = t[i].p;
		lens[i] = t[i].len;
	}

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		/* Allowed: passed through unchanged, fed whole or bytewise. */
		for (size_t piece = 0; piece < 2; piece++) {
			assert_int_equal(decrypt_all(kr, (const unsigned char *)texts[i], lens[i], piece,
						     true, &m, &err), 0);
			assert_int_equal(m.len, lens[i]);
			if (lens[i] > 0)
				assert_memory_equal(m.p, texts[i], lens[i]);
			membuf_reset(&m);
		}
		/* Required encryption: refused. */
		assert_int_equal(CLS(decrypt_all(kr, (const unsigned char *)texts[i], lens[i], 0, false,
					     &m, &err)), SORA_ERR_CORRUPT);
		assert_int_equal(m.len, 0);
	}
	/* A big plaintext object streams through. */
	unsigned char *big = random_bytes(200000);
	big[0] = 'R';
	assert_int_equal(decrypt_all(kr, big, 200000, 777, true, &m, &err), 0);
	assert_int_equal(m.len, 200000);
	assert_memory_equal(m.p, big, 200000);
	membuf_reset(&m);
	free(big);
	sora_blob_keyring_free(&kr);
}

static void test_sink_abort(void **state)
{
	struct sora_blob_keyring *kr = keyring(KEY1, NULL, NULL);
	const size_t n = 3 * C;
	unsigned char *data = random_bytes(n), *ct;
	struct sora_error err;
	struct membuf m = { .fail_after = 2 };
	size_t len;

	ct = encrypt_all(kr, data, n, &len);
	assert_int_equal(CLS(decrypt_all(kr, ct, len, 0, false, &m, &err)), SORA_ERR_ABORTED);
	assert_int_equal(m.len, C);
	membuf_reset(&m);
	free(ct);
	free(data);
	sora_blob_keyring_free(&kr);
}

static void test_keyring_parsing(void **state)
{
	struct sora_blob_keyring *kr = NULL;
	struct sora_error err;
	const char *olds[3];

	assert_int_equal(sora_blob_keyring_new(NULL, NULL, 0, &kr, &err), -1);
	assert_int_equal(sora_blob_keyring_new("abc", NULL, 0, &kr, &err), -1);
	assert_string_equal(err.msg, "encryption_key must be 64 hex characters (got 3)");
	assert_int_equal(sora_blob_keyring_new(KEY1 "00", NULL, 0, &kr, &err), -1);
	assert_non_null(strstr(err.msg, "more than 64"));
	assert_int_equal(sora_blob_keyring_new(
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg", NULL, 0, &kr,
		&err), -1);
	assert_non_null(strstr(err.msg, "non-hex"));
	/* The message never shows key material. */
	assert_null(strstr(err.msg, "0123456789"));
	olds[0] = KEY2;
	olds[1] = "zz";
	assert_int_equal(sora_blob_keyring_new(KEY1, olds, 2, &kr, &err), -1);
	assert_string_equal(err.msg, "old_encryption_keys[1] must be 64 hex characters (got 2)");
	assert_null(kr);
	/* The current key repeated among the old ones is accepted once. */
	olds[0] = KEY1;
	olds[1] = KEY2;
	olds[2] = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
	assert_int_equal(sora_blob_keyring_new(KEY1, olds, 3, &kr, &err), 0);
	assert_int_equal(sora_blob_keyring_count(kr), 2);
	assert_true(sora_blob_keyring_can_encrypt(kr));
	sora_blob_keyring_free(&kr);
	sora_blob_keyring_free(&kr);   /* NULL-safe */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_sizes),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_rewind_is_deterministic),
		cmocka_unit_test(test_key_id_and_rotation),
		cmocka_unit_test(test_tampering),
		cmocka_unit_test(test_header_garbage),
		cmocka_unit_test(test_plaintext_objects),
		cmocka_unit_test(test_sink_abort),
		cmocka_unit_test(test_keyring_parsing),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
