/* Live tests of the s3 blob driver and the store on top of it, against a
 * real SigV4-verifying S3 server. They run when SORA_TEST_S3_ENDPOINT
 * ("host:port") and SORA_TEST_S3_BUCKET are set and are skipped otherwise;
 * tests/integration/test_blob_s3.py starts @20minutes/s3rver and runs this
 * program. Optional: SORA_TEST_S3_ACCESS_KEY / SORA_TEST_S3_SECRET_KEY
 * (default S3RVER/S3RVER) and SORA_TEST_S3_OUT, a file that receives
 * "kind<TAB>key<TAB>value" lines about objects left in the bucket so the
 * pytest side can check them with an independent client (boto3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/blob/blob-crypt.h"
#include "backend/blob/blob-hash.h"
#include "backend/blob/blob-s3.h"
#include "backend/blob/blob-store.h"
#include "blob-test.h"

#define KEY1 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define KEY2 "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static const char *endpoint, *bucket, *access_key, *secret_key;
static FILE *out_file;
static char run_id[32];

/* Keys with characters that SigV4's URI encoding must get right. Real keys
 * are hex, but the driver takes any key. */
static const char *const special_keys[] = {
	"t/plain-key.txt",
	"t/key with spaces",
	"t/plus+equals=amp&",
	"t/unicode-\xc3\xa9\xe2\x9c\x93\xf0\x9f\x93\xa7",
	"t/tilde~star*parens()!quote'",
	"t/semi;colon:at@comma,dollar$",
	"t/percent%20literal",
	"t/question?hash#bracket[]",
	"t/deep/er/path/segments",
};

static void need_server(void)
{
	if (endpoint == NULL || bucket == NULL)
		skip();
}

static struct sora_s3_config base_config(void)
{
	struct sora_s3_config c = {
		.endpoint = (char *)endpoint,
		.region = "us-east-1",
		.bucket = (char *)bucket,
		.access_key = (char *)access_key,
		.secret_key = (char *)secret_key,
		.use_ssl = false,
		.path_style = true,
		.tls_verify = true,
		.timeout_ms = 10000,
	};
	return c;
}

static struct sora_blob_driver *make_driver(enum sora_blob_payload_signing mode)
{
	struct sora_s3_config c = base_config();
	struct sora_blob_s3_options o = { .payload_signing = mode,
					  .retry = { .max_attempts = 3, .base_ms = 20 } };
	struct sora_blob_driver *d = NULL;
	struct sora_error err;

	if (sora_blob_s3_create(&c, &o, &d, &err) < 0)
		fail_msg("s3 driver: %s", err.msg);
	return d;
}

/* A key unique to this run, so reruns against one server do not collide. */
static void run_key(char *dst, size_t size, const char *key)
{
	snprintf(dst, size, "%s/%s", run_id, key);
}

static void put_mem(struct sora_blob_driver *d, const char *key, const void *data, size_t len)
{
	struct sora_blob_mem_source ms;
	struct sora_blob_source src;
	struct sora_error err;
	int ret;

	sora_blob_mem_source_init(&src, &ms, data, len);
	ret = sora_blob_driver_put(d, key, &src, &err);
	if (ret != 0)
		fail_msg("PUT %s: %d %s", key, ret, err.msg);
}

static void expect_get(struct sora_blob_driver *d, const char *key, uint64_t off, uint64_t len,
		       const unsigned char *want, size_t want_len)
{
	struct membuf m = { 0 };
	struct sora_error err;
	int ret = sora_blob_driver_get(d, key, off, len, membuf_sink, &m, &err);

	if (ret != 0)
		fail_msg("GET %s [%llu,+%llu]: %d %s", key, (unsigned long long)off,
			 (unsigned long long)len, ret, err.msg);
	assert_int_equal(m.len, want_len);
	if (want_len > 0)
		assert_memory_equal(m.p, want, want_len);
	membuf_reset(&m);
}

static void test_special_keys_roundtrip(void **state)
{
	enum sora_blob_payload_signing modes[] = { SORA_BLOB_PAYLOAD_SIGNED,
						   SORA_BLOB_PAYLOAD_UNSIGNED };

	need_server();
	for (size_t m = 0; m < 2; m++) {
		struct sora_blob_driver *d = make_driver(modes[m]);

		for (size_t i = 0; i < sizeof(special_keys) / sizeof(special_keys[0]); i++) {
			char key[256], body[512];
			struct sora_error err;
			uint64_t size = 0;
			int n;

			run_key(key, sizeof(key), special_keys[i]);
			n = snprintf(body, sizeof(body), "body of %s in mode %zu\r\n", key, m);
			/* A NUL and a high byte: bodies are bytes, not strings. */
			memcpy(body + n, "\0binary\xff", 8);
			n += 8;
			put_mem(d, key, body, (size_t)n);
			assert_int_equal(sora_blob_driver_head(d, key, &size, &err), 0);
			assert_int_equal(size, n);
			expect_get(d, key, 0, SORA_BLOB_TO_END, (unsigned char *)body, (size_t)n);
			expect_get(d, key, 3, 7, (unsigned char *)body + 3, 7);
			assert_int_equal(sora_blob_driver_delete(d, key, &err), 0);
			assert_int_equal(CLS(sora_blob_driver_head(d, key, &size, &err)),
					 SORA_ERR_NOT_FOUND);
			struct membuf mb = { 0 };
			assert_int_equal(CLS(sora_blob_driver_get(d, key, 0, SORA_BLOB_TO_END, membuf_sink,
							      &mb, &err)), SORA_ERR_NOT_FOUND);
			assert_non_null(strstr(err.msg, "404"));
			membuf_reset(&mb);
			/* Deleting what is gone is fine. */
			assert_int_equal(sora_blob_driver_delete(d, key, &err), 0);
		}
		sora_blob_driver_free(&d);
	}
}

/* Objects left in the bucket for boto3 to read back by key. */
static void test_keys_seen_by_other_clients(void **state)
{
	struct sora_blob_driver *d;

	need_server();
	d = make_driver(SORA_BLOB_PAYLOAD_AUTO);
	for (size_t i = 0; i < sizeof(special_keys) / sizeof(special_keys[0]); i++) {
		char key[256], body[300];
		int n;

		run_key(key, sizeof(key), special_keys[i]);
		n = snprintf(body, sizeof(body), "kept %s", key);
		put_mem(d, key, body, (size_t)n);
		if (out_file != NULL)
			fprintf(out_file, "plain\t%s\t%s\n", key, body);
	}
	sora_blob_driver_free(&d);
}

static void test_ranges(void **state)
{
	const size_t n = 200000;
	unsigned char *data;
	struct sora_blob_driver *d;
	struct sora_error err;
	char key[128];

	need_server();
	/* After the skip check: skip() does not return. */
	data = random_bytes(n);
	d = make_driver(SORA_BLOB_PAYLOAD_AUTO);
	run_key(key, sizeof(key), "ranges/obj");
	put_mem(d, key, data, n);
	expect_get(d, key, 0, SORA_BLOB_TO_END, data, n);
	expect_get(d, key, 100, 1000, data + 100, 1000);
	expect_get(d, key, 199990, SORA_BLOB_TO_END, data + 199990, 10);
	expect_get(d, key, 199999, 1, data + 199999, 1);
	expect_get(d, key, 199995, 100, data + 199995, 5);
	expect_get(d, key, 0, 1, data, 1);
	/* At or past the end: nothing, but no error. */
	expect_get(d, key, 200000, 10, data, 0);
	expect_get(d, key, 250000, SORA_BLOB_TO_END, data, 0);
	expect_get(d, key, 5, 0, data, 0);
	assert_int_equal(sora_blob_driver_delete(d, key, &err), 0);
	/* An empty range of a missing object still says it is missing. */
	struct membuf m = { 0 };
	assert_int_equal(CLS(sora_blob_driver_get(d, key, 5, 0, membuf_sink, &m, &err)),
			 SORA_ERR_NOT_FOUND);
	/* A sink that stops the transfer. */
	put_mem(d, key, data, n);
	m.fail_after = 1;
	assert_int_equal(CLS(sora_blob_driver_get(d, key, 0, SORA_BLOB_TO_END, membuf_sink, &m, &err)),
			 SORA_ERR_ABORTED);
	/* Not retried: a retried request would say so in the message. */
	assert_null(strstr(err.msg, "attempts"));
	membuf_reset(&m);
	assert_int_equal(sora_blob_driver_delete(d, key, &err), 0);
	sora_blob_driver_free(&d);
	free(data);
}

static void test_empty_object(void **state)
{
	struct sora_blob_driver *d;
	struct sora_error err;
	uint64_t size = 99;
	char key[128];

	need_server();
	d = make_driver(SORA_BLOB_PAYLOAD_AUTO);
	run_key(key, sizeof(key), "empty/obj");
	put_mem(d, key, "", 0);
	assert_int_equal(sora_blob_driver_head(d, key, &size, &err), 0);
	assert_int_equal(size, 0);
	expect_get(d, key, 0, SORA_BLOB_TO_END, NULL, 0);
	assert_int_equal(sora_blob_driver_delete(d, key, &err), 0);
	sora_blob_driver_free(&d);
}

static int make_file(const unsigned char *data, size_t len, char *path, size_t size)
{
	int fd;

	snprintf(path, size, "/tmp/sora-blob-live-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	return fd;
}

static int hash_sink(void *ctx, const void *data, size_t len)
{
	sora_blob_hash_update(ctx, data, len);
	return 0;
}

static void test_large_streamed_body(void **state)
{
	const size_t n = 5 * 1024 * 1024 + 123;
	unsigned char *data;
	struct sora_blob_hasher h __attribute__((aligned(64)));
	char want[SORA_BLOB_HASH_HEX_SIZE], got[SORA_BLOB_HASH_HEX_SIZE], key[128], path[64];
	enum sora_blob_payload_signing modes[] = { SORA_BLOB_PAYLOAD_SIGNED,
						   SORA_BLOB_PAYLOAD_UNSIGNED };
	struct sora_blob_fd_source fsrc;
	struct sora_blob_source src;
	struct sora_error err;
	int fd;

	need_server();
	/* After the skip check: skip() does not return. */
	data = random_bytes(n);
	sora_blob_hash_buf(data, n, want);
	fd = make_file(data, n, path, sizeof(path));
	free(data);
	run_key(key, sizeof(key), "large/obj");
	for (size_t m = 0; m < 2; m++) {
		struct sora_blob_driver *d = make_driver(modes[m]);
		uint64_t size = 0;

		sora_blob_fd_source_init(&src, &fsrc, fd, 0, n);
		assert_int_equal(sora_blob_driver_put(d, key, &src, &err), 0);
		assert_int_equal(sora_blob_driver_head(d, key, &size, &err), 0);
		assert_int_equal(size, n);
		sora_blob_hash_init(&h);
		assert_int_equal(sora_blob_driver_get(d, key, 0, SORA_BLOB_TO_END, hash_sink, &h, &err),
				 0);
		assert_int_equal(h.size, n);
		sora_blob_hash_final(&h, got);
		assert_string_equal(got, want);
		assert_int_equal(sora_blob_driver_delete(d, key, &err), 0);
		sora_blob_driver_free(&d);
	}
	/* A file that shrank under the upload fails cleanly, without retries. */
	{
		struct sora_blob_driver *d = make_driver(SORA_BLOB_PAYLOAD_UNSIGNED);
		sora_blob_fd_source_init(&src, &fsrc, fd, 0, n + 10);
		assert_int_equal(CLS(sora_blob_driver_put(d, key, &src, &err)), SORA_ERR_PERMANENT);
		assert_non_null(strstr(err.msg, "shorter"));
		assert_null(strstr(err.msg, "attempts"));
		sora_blob_driver_free(&d);
	}
	close(fd);
	unlink(path);
}

static void test_copy(void **state)
{
	struct sora_blob_driver *d;
	struct sora_error err;
	char src[128], dst[128], missing[128];
	const char body[] = "copy me \xc3\xa9";

	need_server();
	d = make_driver(SORA_BLOB_PAYLOAD_AUTO);
	/* s3rver cannot copy keys with '+' (or other reserved characters
	 * that decodeURI leaves encoded); spaces and non-ASCII work. */
	run_key(src, sizeof(src), "copy/source key \xc3\xa9");
	run_key(dst, sizeof(dst), "copy/dest key \xe2\x9c\x93");
	run_key(missing, sizeof(missing), "copy/missing");
	put_mem(d, src, body, sizeof(body) - 1);
	assert_int_equal(sora_blob_driver_copy(d, src, dst, &err), 0);
	expect_get(d, dst, 0, SORA_BLOB_TO_END, (const unsigned char *)body, sizeof(body) - 1);
	assert_int_equal(CLS(sora_blob_driver_copy(d, missing, dst, &err)), SORA_ERR_NOT_FOUND);
	assert_non_null(strstr(err.msg, "s3 COPY"));
	assert_int_equal(sora_blob_driver_delete(d, src, &err), 0);
	assert_int_equal(sora_blob_driver_delete(d, dst, &err), 0);
	sora_blob_driver_free(&d);
}

static void test_batch_delete(void **state)
{
	const size_t nmissing = 1200;   /* more than one request's worth */
	size_t nkeys = sizeof(special_keys) / sizeof(special_keys[0]);
	char **keys;
	struct sora_blob_driver *d;
	struct sora_error err;
	size_t failed = 99;
	uint64_t size;

	need_server();
	keys = calloc(nkeys + nmissing, sizeof(char *));
	d = make_driver(SORA_BLOB_PAYLOAD_AUTO);
	for (size_t i = 0; i < nkeys; i++) {
		keys[i] = malloc(256);
		snprintf(keys[i], 256, "%s/batch/%s", run_id, special_keys[i]);
		put_mem(d, keys[i], "x", 1);
	}
	for (size_t i = 0; i < nmissing; i++) {
		keys[nkeys + i] = malloc(64);
		snprintf(keys[nkeys + i], 64, "%s/batch/missing-%zu", run_id, i);
	}
	assert_int_equal(sora_blob_driver_delete_batch(d, (const char *const *)keys,
						       nkeys + nmissing, &failed, &err),
			 0);
	assert_int_equal(failed, 0);
	for (size_t i = 0; i < nkeys; i++)
		assert_int_equal(CLS(sora_blob_driver_head(d, keys[i], &size, &err)),
				 SORA_ERR_NOT_FOUND);
	for (size_t i = 0; i < nkeys + nmissing; i++)
		free(keys[i]);
	free(keys);
	sora_blob_driver_free(&d);
}

static void test_wrong_secret_not_retried(void **state)
{
	struct sora_s3_config c;
	struct sora_blob_s3_options o = { .retry = { .max_attempts = 4, .base_ms = 10 } };
	struct sora_blob_driver *d = NULL;
	struct sora_error err;
	char key[128], expect[200];
	struct timespec t0, t1;
	uint64_t size;

	need_server();
	c = base_config();
	c.secret_key = "definitely-not-the-secret";
	assert_int_equal(sora_blob_s3_create(&c, &o, &d, &err), 0);
	run_key(key, sizeof(key), "ab/1/" KEY1);
	struct sora_blob_mem_source ms;
	struct sora_blob_source src;
	sora_blob_mem_source_init(&src, &ms, "hello", 5);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(CLS(sora_blob_driver_put(d, key, &src, &err)), SORA_ERR_PERMANENT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* Status and S3 code are in the message; no retry happened. */
	assert_null(strstr(err.msg, "attempts"));
	snprintf(expect, sizeof(expect), "s3 PUT %s/%s: 403 SignatureDoesNotMatch", bucket, key);
	if (strstr(err.msg, expect) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, expect);
	assert_null(strstr(err.msg, c.secret_key));
	/* HEAD answers carry no body: the status must do. */
	assert_int_equal(CLS(sora_blob_driver_head(d, key, &size, &err)), SORA_ERR_PERMANENT);
	assert_null(strstr(err.msg, "attempts"));
	assert_non_null(strstr(err.msg, ": 403 "));
	sora_blob_driver_free(&d);
}

static int closed_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(s);
	return port;
}

static void test_server_down_retried(void **state)
{
	struct sora_s3_config c;
	struct sora_blob_s3_options o = { .retry = { .max_attempts = 3, .base_ms = 50, .cap_ms = 100 } };
	struct sora_blob_driver *d = NULL;
	struct sora_error err;
	char ep[64];
	struct membuf m = { 0 };

	need_server();
	c = base_config();
	snprintf(ep, sizeof(ep), "127.0.0.1:%d", closed_port());
	c.endpoint = ep;
	assert_int_equal(sora_blob_s3_create(&c, &o, &d, &err), 0);
	assert_int_equal(CLS(sora_blob_driver_get(d, "ab/1/" KEY1, 0, SORA_BLOB_TO_END, membuf_sink,
					      &m, &err)), SORA_ERR_TEMPORARY);
	assert_non_null(strstr(err.msg, "network error"));
	assert_non_null(strstr(err.msg, "after 3 attempts"));
	assert_non_null(strstr(err.msg, "s3 GET"));
	sora_blob_driver_free(&d);
}

/* ---- the store with encryption ---- */

static struct sora_blob_store *make_store(const char *dir, const char *key_hex,
					  const char *old_hex, bool encrypt, uint64_t cache_cap)
{
	struct sora_blob_store_params p = { 0 };
	struct sora_blob_store *s = NULL;
	char staging[128], cache[128];
	struct sora_error err;
	const char *olds[1] = { old_hex };

	p.driver = make_driver(SORA_BLOB_PAYLOAD_AUTO);
	if (key_hex != NULL || old_hex != NULL)
		assert_int_equal(sora_blob_keyring_new(key_hex, olds, old_hex != NULL ? 1 : 0,
						       &p.keyring, &err), 0);
	snprintf(staging, sizeof(staging), "%s/staging", dir);
	snprintf(cache, sizeof(cache), "%s/cache", dir);
	p.encrypt = encrypt;
	p.staging_path = staging;
	p.cache_path = cache;
	p.cache_capacity = cache_cap;
	p.cache_max_object_size = 1024 * 1024;
	if (sora_blob_store_new(&p, &s, &err) < 0)
		fail_msg("store: %s", err.msg);
	return s;
}

static void test_store_encrypted_roundtrip(void **state)
{
	char dir[64], key[SORA_BLOB_KEY_SIZE];
	struct sora_blob_store *s, *other;
	struct sora_blob_ref ref;
	struct sora_error err;
	struct membuf m = { 0 };
	const size_t n = 300000;
	unsigned char *body;
	char marker[64];
	int64_t account = 7;

	need_server();
	/* After the skip check: skip() does not return. */
	body = random_bytes(n);
	assert_int_equal(make_tempdir(dir, "live"), 0);
	/* A recognisable plaintext at the start and in the middle. */
	snprintf(marker, sizeof(marker), "Subject: plaintext-marker-%s", run_id);
	memcpy(body, marker, strlen(marker));
	memcpy(body + 150000, marker, strlen(marker));
	/* Cache off: every read below goes to S3 and through decryption. */
	s = make_store(dir, KEY1, NULL, true, 0);
	account = 7 + (int64_t)(time(NULL) % 1000000);
	assert_int_equal(sora_blob_stage_buf(s, account, body, n, &ref, &err), 0);
	assert_int_equal(sora_blob_upload_staged(s, account, ref.hash, &err), 0);
	assert_false(sora_blob_is_staged(s, account, ref.hash));
	assert_int_equal(sora_blob_key_format(account, ref.hash, key, sizeof(key)), 0);

	/* Stored size is the ciphertext's. */
	uint64_t size = 0;
	assert_int_equal(sora_blob_driver_head(sora_blob_store_driver(s), key, &size, &err), 0);
	assert_int_equal(size, sora_blob_crypt_ciphertext_len(n));

	assert_int_equal(sora_blob_read(s, account, ref.hash, 0, SORA_BLOB_TO_END, membuf_sink,
					&m, &err), 0);
	assert_int_equal(m.len, n);
	assert_memory_equal(m.p, body, n);
	membuf_reset(&m);
	/* Ranges inside, across chunk boundaries and at the end. */
	uint64_t ranges[][2] = { { 0, 10 }, { 65530, 20 }, { 149990, 100 }, { n - 5, 100 },
				 { 131072, 65536 }, { n, 10 } };
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		uint64_t off = ranges[i][0], len = ranges[i][1];
		uint64_t want = off >= n ? 0 : (len > n - off ? n - off : len);
		assert_int_equal(sora_blob_read(s, account, ref.hash, off, len, membuf_sink, &m, &err),
				 0);
		assert_int_equal(m.len, want);
		if (want > 0)
			assert_memory_equal(m.p, body + off, want);
		membuf_reset(&m);
	}
	if (out_file != NULL)
		fprintf(out_file, "encrypted\t%s\t%s\t%zu\n", key, marker, n);

	/* A store that lacks the key says so and names the object. */
	other = make_store(dir, KEY2, NULL, true, 0);
	assert_int_equal(CLS(sora_blob_read(other, account, ref.hash, 0, SORA_BLOB_TO_END, membuf_sink,
					&m, &err)), SORA_ERR_CORRUPT);
	assert_int_equal(m.len, 0);
	assert_non_null(strstr(err.msg, "not configured"));
	assert_non_null(strstr(err.msg, key));
	sora_blob_store_free(&other);
	/* With the key among the old ones (after a rotation) it reads. */
	other = make_store(dir, KEY2, KEY1, true, 0);
	assert_int_equal(sora_blob_read(other, account, ref.hash, 0, SORA_BLOB_TO_END, membuf_sink,
					&m, &err), 0);
	assert_int_equal(m.len, n);
	membuf_reset(&m);
	sora_blob_store_free(&other);

	/* A tampered object: one flipped byte in the stored ciphertext. */
	struct membuf ct = { 0 };
	char tkey[SORA_BLOB_KEY_SIZE];
	struct sora_blob_ref tref;
	body[0] ^= 1;
	assert_int_equal(sora_blob_stage_buf(s, account, body, n, &tref, &err), 0);
	assert_int_equal(sora_blob_upload_staged(s, account, tref.hash, &err), 0);
	assert_int_equal(sora_blob_key_format(account, tref.hash, tkey, sizeof(tkey)), 0);
	assert_int_equal(sora_blob_driver_get(sora_blob_store_driver(s), tkey, 0, SORA_BLOB_TO_END,
					      membuf_sink, &ct, &err), 0);
	ct.p[100000] ^= 0x40;
	put_mem(sora_blob_store_driver(s), tkey, ct.p, ct.len);
	assert_int_equal(CLS(sora_blob_read(s, account, tref.hash, 0, SORA_BLOB_TO_END, membuf_sink,
					&m, &err)), SORA_ERR_CORRUPT);
	assert_non_null(strstr(err.msg, "authentication failed"));
	assert_non_null(strstr(err.msg, tkey));
	/* Nothing past the last good chunk came out. */
	assert_true(m.len <= 65536);
	membuf_reset(&m);
	/* A truncated object. */
	put_mem(sora_blob_store_driver(s), tkey, ct.p, 65536 + 41);
	ct.p[100000] ^= 0x40;
	assert_int_equal(CLS(sora_blob_read(s, account, tref.hash, 0, SORA_BLOB_TO_END, membuf_sink,
					&m, &err)), SORA_ERR_CORRUPT);
	membuf_reset(&m);
	membuf_reset(&ct);
	assert_int_equal(sora_blob_delete(s, account, tref.hash, &err), 0);

	sora_blob_store_free(&s);
	rm_rf(dir);
	free(body);
}

static void test_store_large_encrypted_streams(void **state)
{
	const size_t n = 5 * 1024 * 1024 + 77;
	unsigned char *body;
	struct sora_blob_hasher h __attribute__((aligned(64)));
	char dir[64], path[64], got[SORA_BLOB_HASH_HEX_SIZE], key[SORA_BLOB_KEY_SIZE];
	struct sora_blob_store *s;
	struct sora_blob_ref ref;
	struct sora_error err;
	int64_t account = 4242;
	int fd;

	need_server();
	/* After the skip check: skip() does not return. */
	body = random_bytes(n);
	assert_int_equal(make_tempdir(dir, "live"), 0);
	s = make_store(dir, KEY1, NULL, true, 64 * 1024 * 1024);
	fd = make_file(body, n, path, sizeof(path));
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(sora_blob_stage_fd(s, account, fd, 0, &ref, &err), 0);
	assert_int_equal(ref.size, n);
	close(fd);
	unlink(path);
	assert_int_equal(sora_blob_upload_staged(s, account, ref.hash, &err), 0);
	/* Over the cache's max_object_size (1 MiB here): not cached, so
	 * the read streams from S3, decrypting chunk by chunk. */
	struct sora_blob_cache_stats st;
	sora_blob_cache_get_stats(sora_blob_store_cache(s), &st);
	assert_int_equal(st.count, 0);
	sora_blob_hash_init(&h);
	assert_int_equal(sora_blob_read(s, account, ref.hash, 0, SORA_BLOB_TO_END, hash_sink, &h,
					&err), 0);
	assert_int_equal(h.size, n);
	sora_blob_hash_final(&h, got);
	assert_string_equal(got, ref.hash);
	sora_blob_cache_get_stats(sora_blob_store_cache(s), &st);
	assert_int_equal(st.count, 0);
	assert_int_equal(sora_blob_key_format(account, ref.hash, key, sizeof(key)), 0);
	if (out_file != NULL)
		fprintf(out_file, "encrypted-large\t%s\t-\t%zu\n", key, n);
	sora_blob_store_free(&s);
	rm_rf(dir);
	free(body);
}

static void test_store_plain_cache_fill(void **state)
{
	char dir[64], key[SORA_BLOB_KEY_SIZE];
	struct sora_blob_store *s;
	struct sora_blob_ref ref;
	struct sora_error err;
	struct sora_blob_cache_stats st;
	struct membuf m = { 0 };
	const char body[] = "From: a@example.com\r\nSubject: cached\r\n\r\nhello\r\n";
	int64_t account = 99;

	need_server();
	assert_int_equal(make_tempdir(dir, "live"), 0);
	s = make_store(dir, NULL, NULL, false, 1024 * 1024);
	assert_int_equal(sora_blob_stage_buf(s, account, body, sizeof(body) - 1, &ref, &err), 0);
	assert_int_equal(sora_blob_upload_staged(s, account, ref.hash, &err), 0);
	assert_int_equal(sora_blob_key_format(account, ref.hash, key, sizeof(key)), 0);
	sora_blob_cache_get_stats(sora_blob_store_cache(s), &st);
	assert_int_equal(st.count, 1);
	/* Forget the cached copy: the next read comes from S3 and fills the
	 * cache again. */
	sora_blob_cache_remove(sora_blob_store_cache(s), key);
	assert_int_equal(sora_blob_read(s, account, ref.hash, 6, 11, membuf_sink, &m, &err), 0);
	assert_int_equal(m.len, 11);
	assert_memory_equal(m.p, body + 6, 11);
	membuf_reset(&m);
	sora_blob_cache_get_stats(sora_blob_store_cache(s), &st);
	assert_int_equal(st.count, 1);
	if (out_file != NULL)
		fprintf(out_file, "unencrypted\t%s\t%s\t%zu\n", key, "Subject: cached",
			sizeof(body) - 1);
	sora_blob_store_free(&s);
	rm_rf(dir);
}

static int setup(void **state)
{
	const char *out;

	endpoint = getenv("SORA_TEST_S3_ENDPOINT");
	bucket = getenv("SORA_TEST_S3_BUCKET");
	if (endpoint != NULL && endpoint[0] == '\0')
		endpoint = NULL;
	access_key = getenv("SORA_TEST_S3_ACCESS_KEY");
	secret_key = getenv("SORA_TEST_S3_SECRET_KEY");
	if (access_key == NULL)
		access_key = "S3RVER";
	if (secret_key == NULL)
		secret_key = "S3RVER";
	if (sodium_init() < 0)
		return -1;
	snprintf(run_id, sizeof(run_id), "run-%08x", randombytes_random());
	out = getenv("SORA_TEST_S3_OUT");
	if (out != NULL && out[0] != '\0')
		out_file = fopen(out, "w");
	return 0;
}

static int teardown(void **state)
{
	if (out_file != NULL)
		fclose(out_file);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_special_keys_roundtrip),
		cmocka_unit_test(test_keys_seen_by_other_clients),
		cmocka_unit_test(test_ranges),
		cmocka_unit_test(test_empty_object),
		cmocka_unit_test(test_large_streamed_body),
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_batch_delete),
		cmocka_unit_test(test_wrong_secret_not_retried),
		cmocka_unit_test(test_server_down_retried),
		cmocka_unit_test(test_store_encrypted_roundtrip),
		cmocka_unit_test(test_store_large_encrypted_streams),
		cmocka_unit_test(test_store_plain_cache_fill),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
