/* Upload throughput of the blob store to an S3 server, with client-side
 * encryption off and on, for 10 KB and 1 MB bodies.
 *
 * Build (from the repository root, after `make`):
 *
 *   make build/libsora-backend.a build/libsora-common.a && \
 *   gcc -std=gnu11 -O2 -D_GNU_SOURCE -I. -o build/bench-blob tests/bench/bench-blob.c \
 *       build/libsora-backend.a build/libsora-common.a \
 *       $(pkg-config --cflags --libs libsodium libcurl openssl) -lpthread
 *
 * Run against a local S3 server (for example the test s3rver:
 * `node tests/integration/s3/s3rver.js -d /tmp/s3 -a 127.0.0.1 -p 9000
 *  --configure-bucket sora-bench` with NODE_OPTIONS=--openssl-legacy-provider):
 *
 *   SORA_TEST_S3_ENDPOINT=127.0.0.1:9000 SORA_TEST_S3_BUCKET=sora-bench build/bench-blob
 *
 * Environment: SORA_TEST_S3_ENDPOINT, SORA_TEST_S3_BUCKET (required),
 * SORA_TEST_S3_ACCESS_KEY / SORA_TEST_S3_SECRET_KEY (default S3RVER),
 * SORA_BENCH_THREADS (uploading threads, default 1), SORA_BENCH_SCALE
 * (multiplies the number of bodies, default 1), SORA_BENCH_PAYLOAD
 * (auto|signed|unsigned: x-amz-content-sha256 of streamed bodies; auto
 * hashes over plain HTTP).
 *
 * What is timed: sora_blob_upload_staged() for bodies staged beforehand
 * (staging fsyncs and is not part of the upload), cache off, so each
 * upload reads the staged file, verifies its hash, optionally encrypts,
 * signs and sends it, then deletes the staged file. Every body is distinct
 * (no dedup). Uploaded objects are deleted at the end. */
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "backend/blob/blob-fs.h"
#include "backend/blob/blob-s3.h"
#include "backend/blob/blob-store.h"

#define BENCH_KEY "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct job {
	struct sora_blob_store *store;
	int64_t account;
	struct sora_blob_ref *refs;
	size_t count;
	atomic_size_t next;
	atomic_int failed;
};

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *upload_worker(void *arg)
{
	struct job *j = arg;
	struct sora_error err;
	size_t i;

	while ((i = atomic_fetch_add(&j->next, 1)) < j->count) {
		if (sora_blob_upload_staged(j->store, j->account, j->refs[i].hash, &err) != 0) {
			if (atomic_fetch_add(&j->failed, 1) == 0)
				fprintf(stderr, "bench-blob: upload failed: %s\n", err.msg);
		}
	}
	return NULL;
}

static struct sora_blob_store *make_store(const char *dir, bool encrypt,
					  const struct sora_s3_config *s3,
					  const struct sora_blob_s3_options *opts)
{
	struct sora_blob_store_params p = { 0 };
	struct sora_blob_store *s = NULL;
	char staging[256];
	struct sora_error err;

	if (sora_blob_s3_create(s3, opts, &p.driver, &err) < 0) {
		fprintf(stderr, "bench-blob: %s\n", err.msg);
		exit(1);
	}
	if (encrypt && sora_blob_keyring_new(BENCH_KEY, NULL, 0, &p.keyring, &err) < 0) {
		fprintf(stderr, "bench-blob: %s\n", err.msg);
		exit(1);
	}
	snprintf(staging, sizeof(staging), "%s/staging", dir);
	p.encrypt = encrypt;
	p.staging_path = staging;
	if (sora_blob_store_new(&p, &s, &err) < 0) {
		fprintf(stderr, "bench-blob: %s\n", err.msg);
		exit(1);
	}
	return s;
}

static int run_case(const char *dir, bool encrypt, size_t body_size, size_t count, int threads,
		    const struct sora_s3_config *s3, const struct sora_blob_s3_options *opts)
{
	struct sora_blob_store *s = make_store(dir, encrypt, s3, opts);
	struct job j = { .store = s, .count = count };
	struct sora_error err;
	unsigned char *body = malloc(body_size);
	pthread_t *th = calloc((size_t)threads, sizeof(*th));
	double t0, secs;
	int ret = 0;

	j.account = 1000000 + (int64_t)randombytes_uniform(1000000);
	j.refs = calloc(count, sizeof(*j.refs));
	randombytes_buf(body, body_size);
	for (size_t i = 0; i < count; i++) {
		/* Distinct bodies: a counter in the first bytes. */
		memcpy(body, &i, sizeof(i));
		if (sora_blob_stage_buf(s, j.account, body, body_size, &j.refs[i], &err) != 0) {
			fprintf(stderr, "bench-blob: staging failed: %s\n", err.msg);
			exit(1);
		}
	}
	t0 = now_s();
	for (int t = 0; t < threads; t++)
		pthread_create(&th[t], NULL, upload_worker, &j);
	for (int t = 0; t < threads; t++)
		pthread_join(th[t], NULL);
	secs = now_s() - t0;
	if (atomic_load(&j.failed) > 0)
		ret = 1;
	printf("bench-blob: encrypt=%-3s size=%-5s bodies=%-4zu threads=%d secs=%.2f "
	       "bodies/s=%.1f MB/s=%.2f%s\n",
	       encrypt ? "on" : "off", body_size >= 1024 * 1024 ? "1MB" : "10KB", count, threads,
	       secs, (double)count / secs, (double)count * (double)body_size / secs / 1e6,
	       ret ? " (FAILURES)" : "");
	fflush(stdout);
	for (size_t i = 0; i < count; i++)
		sora_blob_delete(s, j.account, j.refs[i].hash, &err);
	sora_blob_store_free(&s);
	free(j.refs);
	free(body);
	free(th);
	return ret;
}

int main(void)
{
	const char *endpoint = getenv("SORA_TEST_S3_ENDPOINT");
	const char *bucket = getenv("SORA_TEST_S3_BUCKET");
	const char *ak = getenv("SORA_TEST_S3_ACCESS_KEY");
	const char *sk = getenv("SORA_TEST_S3_SECRET_KEY");
	const char *th = getenv("SORA_BENCH_THREADS");
	const char *sc = getenv("SORA_BENCH_SCALE");
	const char *pm = getenv("SORA_BENCH_PAYLOAD");
	struct sora_s3_config s3 = { 0 };
	struct sora_blob_s3_options opts = { 0 };
	char dir[] = "/tmp/sora-bench-blob-XXXXXX";
	int threads = th != NULL ? (int)strtol(th, NULL, 10) : 1;
	long scale = sc != NULL ? strtol(sc, NULL, 10) : 1;
	int failed = 0;

	if (endpoint == NULL || bucket == NULL) {
		fprintf(stderr, "bench-blob: set SORA_TEST_S3_ENDPOINT and SORA_TEST_S3_BUCKET\n");
		return 2;
	}
	if (sodium_init() < 0 || mkdtemp(dir) == NULL)
		return 1;
	if (threads < 1 || threads > 64)
		threads = 1;
	if (scale < 1 || scale > 1000)
		scale = 1;
	if (pm != NULL && strcmp(pm, "signed") == 0)
		opts.payload_signing = SORA_BLOB_PAYLOAD_SIGNED;
	else if (pm != NULL && strcmp(pm, "unsigned") == 0)
		opts.payload_signing = SORA_BLOB_PAYLOAD_UNSIGNED;
	s3.endpoint = (char *)endpoint;
	s3.bucket = (char *)bucket;
	s3.region = "us-east-1";
	s3.access_key = (char *)(ak != NULL ? ak : "S3RVER");
	s3.secret_key = (char *)(sk != NULL ? sk : "S3RVER");
	s3.path_style = true;
	s3.timeout_ms = 30000;

	printf("bench-blob: endpoint=%s bucket=%s payload=%s\n", endpoint, bucket,
	       pm != NULL ? pm : "auto");
	for (int enc = 0; enc < 2; enc++) {
		failed |= run_case(dir, enc, 10 * 1024, 300 * (size_t)scale, threads, &s3, &opts);
		failed |= run_case(dir, enc, 1024 * 1024, 30 * (size_t)scale, threads, &s3, &opts);
	}
	nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	return failed;
}
