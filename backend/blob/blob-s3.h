/* The "s3" blob driver: any S3-compatible service through libcurl, signed
 * with AWS Signature Version 4 (CURLOPT_AWS_SIGV4 "aws:amz:REGION:s3").
 *
 * Requests: PUT (streamed from a struct sora_blob_source with its
 * Content-Length), GET (streamed to a callback, with byte ranges), HEAD,
 * DELETE, batch delete (POST ?delete with Content-MD5, 1000 keys per
 * request) and COPY (PUT with x-amz-copy-source). Keys are URI-encoded per
 * segment (everything but A-Z a-z 0-9 - . _ ~ becomes %XX), which is both
 * the request path and SigV4's canonical URI.
 *
 * Payload hash (x-amz-content-sha256): bodies built in memory and empty
 * bodies carry their SHA-256. Streamed uploads carry "UNSIGNED-PAYLOAD"
 * over TLS (which protects the bytes in transit) and, over plain HTTP, the
 * SHA-256 of the body computed by reading the source once before sending;
 * sora_blob_s3_options.payload_signing overrides that choice.
 *
 * Retries: 5xx answers, 429, SlowDown/RequestTimeout errors and network
 * errors (connect, resolve, timeouts, connection reset) are retried with
 * exponential back-off and full jitter (sleep a random time in
 * [0, min(cap, base * 2^(attempt-1))]); other 4xx answers are not. A GET
 * that fails after delivering part of the body resumes with a Range
 * request, so the callback sees every byte exactly once.
 *
 * Errors name the method, bucket/key, HTTP status and S3 error code, e.g.
 * "s3 PUT sora-test/ab/1/abcd: 403 SignatureDoesNotMatch: The request
 * signature we calculated does not match ...".
 *
 * Timeouts: [s3] timeout_ms bounds the connection set-up and any stall (no
 * byte moving either way for that long), not the whole transfer, so a 50 MB
 * body on a slow link still completes.
 *
 * Blocking: every call performs blocking HTTP requests and sleeps between
 * retries: call from worker threads only, never on an event loop.
 *
 * Thread safety: the driver may be used from many threads at once. Each
 * thread gets its own libcurl easy handle on first use (connections are
 * kept alive and reused by that thread); it is released when the thread
 * exits or when the driver is freed. curl_global_init() runs once per
 * process, on the first sora_blob_s3_create().
 *
 * Secrets: the secret key is kept in sodium_malloc()ed memory and wiped on
 * free; it never appears in error messages or logs. */
#ifndef SORA_BLOB_S3_H
#define SORA_BLOB_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/blob/blob-driver.h"
#include "common/config/config.h"

struct sora_blob_retry_policy {
	int max_attempts;     /* total attempts including the first; default 5 */
	int64_t base_ms;      /* default 200 */
	int64_t cap_ms;       /* longest single sleep; default 10000 */
};

#define SORA_BLOB_RETRY_DEFAULT_ATTEMPTS 5
#define SORA_BLOB_RETRY_DEFAULT_BASE_MS 200
#define SORA_BLOB_RETRY_DEFAULT_CAP_MS 10000

enum sora_blob_payload_signing {
	SORA_BLOB_PAYLOAD_AUTO = 0,   /* unsigned over TLS, hashed over HTTP */
	SORA_BLOB_PAYLOAD_SIGNED,     /* always hash streamed bodies */
	SORA_BLOB_PAYLOAD_UNSIGNED,   /* always UNSIGNED-PAYLOAD for streamed bodies */
};

/* Settings that are not (yet) config keys. Zeroed fields take defaults. */
struct sora_blob_s3_options {
	struct sora_blob_retry_policy retry;
	enum sora_blob_payload_signing payload_signing;
	/* Optional CURLOPT_CONNECT_TO entry "HOST:PORT:CONNECT-HOST:CONNECT-PORT"
	 * (borrowed during create, copied): sends requests for a virtual-host
	 * style name to another address, e.g. a local test server. */
	const char *connect_to;
	/* Optional CA bundle file for TLS verification (copied). */
	const char *ca_file;
};

/* Creates the driver from [s3] settings (copied; cfg may be freed after).
 * opts may be NULL. Validates the settings (endpoint, bucket, keys,
 * region) and returns 0, or -1 with err set. No request is made. */
int sora_blob_s3_create(const struct sora_s3_config *cfg,
			const struct sora_blob_s3_options *opts,
			struct sora_blob_driver **drv_r, struct sora_error *err);

/* The URL of a key as the driver sends it (path or virtual-host style).
 * key NULL means the bucket itself. Returns 0, or -1 if it does not fit. */
int sora_blob_s3_url(struct sora_blob_driver *drv, const char *key, const char *query,
		     char *dst, size_t size);

/* Appends the SigV4 URI encoding of s to dst (size bytes, NUL-terminated):
 * unreserved characters stay, '/' stays when keep_slash, everything else
 * becomes %XX with upper-case hex. Returns the encoded length, or -1 if it
 * does not fit. */
int sora_blob_s3_uri_encode(const char *s, size_t len, bool keep_slash,
			    char *dst, size_t size);

/* Exposed for tests: whether an answer or a libcurl result is worth a
 * retry (curl_code 0 means the request completed with http_status). */
bool sora_blob_s3_retryable(int curl_code, long http_status, const char *s3_code);
/* Exposed for tests: the sleep before attempt `attempt` + 1 (attempt >= 1)
 * for a random value r in [0, 2^32): uniform in [0, min(cap, base*2^(attempt-1))]. */
int64_t sora_blob_s3_backoff_ms(const struct sora_blob_retry_policy *p, int attempt,
				uint32_t r);

#endif
