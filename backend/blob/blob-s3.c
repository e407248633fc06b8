#include "backend/blob/blob-s3.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "backend/blob/blob-xml.h"
#include "common/core/buf.h"
#include "common/core/log.h"

#define URL_MAX 8192
#define RESP_MAX (1024 * 1024)     /* error documents and delete results */
#define BATCH_MAX 1000             /* S3's limit of keys per DeleteObjects */
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

struct s3_driver;

/* One libcurl easy handle per thread that uses the driver. */
struct s3_conn {
	struct s3_conn *prev, *next;
	struct s3_driver *drv;
	CURL *easy;
};

struct s3_driver {
	struct sora_blob_driver head;
	char *host;          /* "host" or "host:port" */
	char *region;
	char *bucket;
	char *access_key;
	char *secret_key;    /* sodium_malloc()ed */
	char *connect_to;
	char *ca_file;
	char *sigv4;         /* "aws:amz:REGION:s3" */
	bool use_ssl;
	bool path_style;
	bool tls_verify;
	int64_t timeout_ms;
	struct sora_blob_retry_policy retry;
	enum sora_blob_payload_signing payload_signing;

	pthread_key_t conn_key;
	bool conn_key_created;
	pthread_mutex_t lock;  /* protects conns */
	struct s3_conn *conns;
};

/* What one operation asks for and what came back. */
struct s3_req {
	const char *op;        /* for messages: "PUT", "GET", "COPY", ... */
	const char *method;    /* HTTP method */
	const char *key;       /* NULL for the bucket itself */
	const char *query;     /* canonical query ("delete="), or NULL */
	const char *const *headers;  /* extra request headers, NULL-terminated */

	/* Request body: a streamed source, or bytes in memory, or none. */
	struct sora_blob_source *src;
	const void *body;
	size_t body_len;
	char payload_hash[65];

	/* Response body of a GET: sent to sink from byte `offset`, at most
	 * `length` bytes (SORA_BLOB_TO_END: all). */
	sora_blob_write_cb *sink;
	void *sink_ctx;
	uint64_t offset;
	uint64_t length;
	uint64_t delivered;    /* bytes given to sink, over all attempts */
	bool head;             /* HEAD: no body */

	/* State of the current attempt. */
	CURL *easy;
	bool range_sent;
	uint64_t skip;         /* bytes to drop (server ignored the Range) */
	bool status_known;
	long status;
	bool range_done;
	bool sink_aborted;
	bool src_failed;
	struct sora_error src_err;
	struct sora_buf resp;  /* error document or (want_resp) 2xx body */
	bool want_resp;
	/* CopyObject can fail with status 200 and an <Error> document. */
	bool error_in_2xx;
	curl_off_t content_length;
	CURLcode curl_code;
	char curl_err[CURL_ERROR_SIZE];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_global_once(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- small helpers ---- */

int sora_blob_s3_uri_encode(const char *s, size_t len, bool keep_slash,
			    char *dst, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			     (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
			     c == '~' || (keep_slash && c == '/');
		if (plain) {
			if (o + 1 >= size)
				return -1;
			dst[o++] = (char)c;
		} else {
			if (o + 3 >= size)
				return -1;
			dst[o++] = '%';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 0xf];
		}
	}
	if (o >= size)
		return -1;
	dst[o] = '\0';
	return (int)o;
}

/* Renders a key for messages: escaped as in logs (keys are validated but
 * may hold any bytes but NUL). */
static void key_for_msg(const char *key, char *dst, size_t size)
{
	sora_log_escape(sora_str_c(key), dst, size);
}

bool sora_blob_s3_retryable(int curl_code, long http_status, const char *s3_code)
{
	if (curl_code != CURLE_OK) {
		switch (curl_code) {
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_CONNECT:
		case CURLE_OPERATION_TIMEDOUT:
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_GOT_NOTHING:
		case CURLE_PARTIAL_FILE:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_HTTP2:
		case CURLE_HTTP2_STREAM:
		case CURLE_HTTP3:
		case CURLE_WEIRD_SERVER_REPLY:
			return true;
		default:
			return false;
		}
	}
	if (http_status >= 500 || http_status == 429)
		return true;
	if (s3_code != NULL && (strcmp(s3_code, "SlowDown") == 0 ||
				strcmp(s3_code, "RequestTimeout") == 0 ||
				strcmp(s3_code, "InternalError") == 0 ||
				strcmp(s3_code, "ServiceUnavailable") == 0))
		return true;
	return false;
}

int64_t sora_blob_s3_backoff_ms(const struct sora_blob_retry_policy *p, int attempt,
				uint32_t r)
{
	int64_t window = p->base_ms;

	for (int i = 1; i < attempt && window < p->cap_ms; i++)
		window *= 2;
	if (window > p->cap_ms)
		window = p->cap_ms;
	if (window <= 0)
		return 0;
	/* Full jitter: uniform in [0, window]. */
	return (int64_t)(((uint64_t)r * (uint64_t)(window + 1)) >> 32);
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static const char *status_text(long status)
{
	switch (status) {
	case 301: return "Moved Permanently";
	case 307: return "Temporary Redirect";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 416: return "Range Not Satisfiable";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "HTTP error";
	}
}

/* ---- per-thread connections ---- */

static void conn_release(void *p)
{
	struct s3_conn *c = p;
	struct s3_driver *d = c->drv;

	pthread_mutex_lock(&d->lock);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		d->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&d->lock);
	curl_easy_cleanup(c->easy);
	free(c);
}

static CURL *conn_get(struct s3_driver *d)
{
	struct s3_conn *c = pthread_getspecific(d->conn_key);

	if (c != NULL)
		return c->easy;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->easy = curl_easy_init();
	if (c->easy == NULL) {
		free(c);
		return NULL;
	}
	c->drv = d;
	pthread_mutex_lock(&d->lock);
	c->next = d->conns;
	if (d->conns != NULL)
		d->conns->prev = c;
	d->conns = c;
	pthread_mutex_unlock(&d->lock);
	if (pthread_setspecific(d->conn_key, c) != 0) {
		conn_release(c);
		return NULL;
	}
	return c->easy;
}

/* ---- URLs ---- */

int sora_blob_s3_url(struct sora_blob_driver *drv, const char *key, const char *query,
		     char *dst, size_t size)
{
	struct s3_driver *d = (struct s3_driver *)drv;
	const char *scheme = d->use_ssl ? "https" : "http";
	char enc[URL_MAX];
	int n;

	if (key != NULL && sora_blob_s3_uri_encode(key, strlen(key), true, enc, sizeof(enc)) < 0)
		return -1;
	if (d->path_style) {
		char bucket[512];
		if (sora_blob_s3_uri_encode(d->bucket, strlen(d->bucket), false, bucket,
					    sizeof(bucket)) < 0)
			return -1;
		n = snprintf(dst, size, "%s://%s/%s%s%s%s%s", scheme, d->host, bucket,
			     key != NULL ? "/" : "", key != NULL ? enc : "",
			     query != NULL ? "?" : "", query != NULL ? query : "");
	} else {
		n = snprintf(dst, size, "%s://%s.%s/%s%s%s", scheme, d->bucket, d->host,
			     key != NULL ? enc : "", query != NULL ? "?" : "",
			     query != NULL ? query : "");
	}
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* ---- one request ---- */

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct s3_req *r = ud;
	size_t n = size * nmemb;

	if (!r->status_known) {
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
		r->status_known = true;
		/* A server that ignores Range answers 200 with the whole object:
		 * skip to where this attempt wanted to start. */
		if (r->status == 200 && r->range_sent)
			r->skip = r->offset + r->delivered;
	}
	if (r->sink != NULL && r->status >= 200 && r->status < 300) {
		const char *p = ptr;
		size_t left = n;

		if (r->range_done)
			return r->status == 200 && r->range_sent ? 0 : n;
		if (r->skip > 0) {
			size_t m = r->skip < left ? (size_t)r->skip : left;
			p += m;
			left -= m;
			r->skip -= m;
		}
		if (r->length != SORA_BLOB_TO_END && left > r->length - r->delivered)
			left = (size_t)(r->length - r->delivered);
		if (left > 0) {
			if (r->sink(r->sink_ctx, p, left) < 0) {
				r->sink_aborted = true;
				return 0;
			}
			r->delivered += left;
		}
		if (r->length != SORA_BLOB_TO_END && r->delivered >= r->length) {
			r->range_done = true;
			/* Stop a whole-object answer early; a ranged one ends by
			 * itself and keeps the connection reusable. */
			if (r->status == 200 && r->range_sent)
				return 0;
		}
		return n;
	}
	if (r->sink == NULL && !r->want_resp && r->status >= 200 && r->status < 300)
		return n;
	/* Error documents (and wanted answers) are kept up to a cap; the
	 * rest is dropped, the code is always near the start. */
	if (r->resp.len < RESP_MAX) {
		size_t room = RESP_MAX - r->resp.len;
		if (sora_buf_append(&r->resp, ptr, n < room ? n : room) < 0)
			return 0;
	}
	return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
	struct s3_req *r = ud;
	ssize_t n;

	if (r->src == NULL)
		return 0;
	n = r->src->read(r->src->ctx, buf, size * nitems, &r->src_err);
	if (n < 0) {
		r->src_failed = true;
		return CURL_READFUNC_ABORT;
	}
	return (size_t)n;
}

static int on_seek(void *ud, curl_off_t offset, int origin)
{
	struct s3_req *r = ud;

	/* libcurl rewinds only to resend a body from the start. */
	if (r->src == NULL || origin != SEEK_SET || offset != 0)
		return CURL_SEEKFUNC_CANTSEEK;
	if (r->src->rewind(r->src->ctx, &r->src_err) < 0) {
		r->src_failed = true;
		return CURL_SEEKFUNC_FAIL;
	}
	return CURL_SEEKFUNC_OK;
}

static struct curl_slist *add_header(struct curl_slist *list, const char *h, bool *ok)
{
	struct curl_slist *n = curl_slist_append(list, h);

	if (n == NULL) {
		*ok = false;
		return list;
	}
	return n;
}

static void s3_attempt(struct s3_driver *d, struct s3_req *r)
{
	struct curl_slist *headers = NULL;
	struct curl_slist *connect_to = NULL;
	char url[URL_MAX], line[256];
	CURL *h = r->easy;
	bool ok = true;
	long stall_s;

	r->status_known = false;
	r->status = 0;
	r->range_sent = false;
	r->skip = 0;
	r->range_done = false;
	r->content_length = -1;
	r->curl_err[0] = '\0';
	sora_buf_reset(&r->resp);

	if (sora_blob_s3_url(&d->head, r->key, r->query, url, sizeof(url)) < 0) {
		r->curl_code = CURLE_URL_MALFORMAT;
		snprintf(r->curl_err, sizeof(r->curl_err), "URL too long");
		return;
	}
	if (r->src != NULL && r->src->rewind(r->src->ctx, &r->src_err) < 0) {
		r->src_failed = true;
		r->curl_code = CURLE_READ_ERROR;
		return;
	}

	curl_easy_reset(h);
	snprintf(line, sizeof(line), "x-amz-content-sha256: %s", r->payload_hash);
	headers = add_header(headers, line, &ok);
	if (r->sink != NULL) {
		uint64_t start = r->offset + r->delivered;
		if (r->length != SORA_BLOB_TO_END) {
			snprintf(line, sizeof(line), "Range: bytes=%llu-%llu",
				 (unsigned long long)start,
				 (unsigned long long)(r->offset + r->length - 1));
			r->range_sent = true;
		} else if (start > 0) {
			snprintf(line, sizeof(line), "Range: bytes=%llu-", (unsigned long long)start);
			r->range_sent = true;
		}
		if (r->range_sent)
			headers = add_header(headers, line, &ok);
	}
	for (size_t i = 0; r->headers != NULL && r->headers[i] != NULL; i++)
		headers = add_header(headers, r->headers[i], &ok);
	if (d->connect_to != NULL)
		connect_to = add_header(connect_to, d->connect_to, &ok);
	if (!ok) {
		r->curl_code = CURLE_OUT_OF_MEMORY;
		goto out;
	}

	stall_s = (long)((d->timeout_ms + 999) / 1000);
	if (stall_s < 1)
		stall_s = 1;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, d->sigv4);
	curl_easy_setopt(h, CURLOPT_USERNAME, d->access_key);
	curl_easy_setopt(h, CURLOPT_PASSWORD, d->secret_key);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->curl_err);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)d->timeout_ms);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, stall_s);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, d->tls_verify ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, d->tls_verify ? 2L : 0L);
	if (d->ca_file != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, d->ca_file);
	if (connect_to != NULL)
		curl_easy_setopt(h, CURLOPT_CONNECT_TO, connect_to);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);

	if (r->head) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "PUT") == 0) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, r);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
				 (curl_off_t)(r->src != NULL ? r->src->length : 0));
	} else if (strcmp(r->method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
	} else if (strcmp(r->method, "GET") != 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	}

	r->curl_code = curl_easy_perform(h);
	if (!r->status_known)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &r->content_length);
	if (r->curl_err[0] == '\0')
		snprintf(r->curl_err, sizeof(r->curl_err), "%s", curl_easy_strerror(r->curl_code));
out:
	/* The handle keeps pointers to these lists until the next reset. */
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h, CURLOPT_CONNECT_TO, NULL);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(headers);
	curl_slist_free_all(connect_to);
}

/* Turns the outcome of an attempt into 0, or -1 with err set (never NULL
 * here) and *retry_r telling whether another attempt may help. */
static int s3_outcome(struct s3_driver *d, struct s3_req *r, bool *retry_r,
		      struct sora_error *err)
{
	char key[300], code[64] = "", message[256] = "";
	struct sora_str doc = sora_buf_str(&r->resp);
	const char *sep = r->key != NULL ? "/" : "";
	enum sora_error_class cls;

	*retry_r = false;
	key_for_msg(r->key, key, sizeof(key));
	if (r->src_failed) {
		/* The source's own class: a staged body that no longer matches
		 * its hash stays CORRUPT. */
		return sora_error_set(err,
			r->src_err.cls != SORA_ERR_OK ? r->src_err.cls : SORA_ERR_PERMANENT,
			"s3 %s %s%s%s: reading the body: %s", r->op, d->bucket, sep, key,
			r->src_err.msg);
	}
	if (r->sink_aborted)
		return sora_error_set(err, SORA_ERR_ABORTED,
				      "s3 %s %s%s%s: reading stopped by the receiver", r->op,
				      d->bucket, sep, key);
	if (r->curl_code == CURLE_WRITE_ERROR && r->range_done)
		r->curl_code = CURLE_OK;
	if (r->curl_code != CURLE_OK) {
		*retry_r = sora_blob_s3_retryable((int)r->curl_code, 0, NULL);
		return sora_error_set(err, SORA_ERR_PERMANENT, "s3 %s %s%s%s: network error: %s",
				      r->op, d->bucket, sep, key, r->curl_err);
	}
	if (doc.len > 0 && (r->status < 200 || r->status >= 300 || r->error_in_2xx)) {
		struct sora_str inner;
		struct sora_str scan = doc;
		/* The code of an <Error> document; a CopyObject answer can carry
		 * one with status 200. */
		if (sora_blob_xml_next(&scan, "Error", &inner)) {
			sora_blob_xml_text(inner, "Code", code, sizeof(code));
			sora_blob_xml_text(inner, "Message", message, sizeof(message));
		}
	}
	if (r->status >= 200 && r->status < 300 && code[0] == '\0')
		return 0;
	if (r->status == 416 && r->range_sent)
		return 0;    /* the range starts past the end */
	/* The message carries status and S3 code: "403 SignatureDoesNotMatch". */
	cls = r->status == 404 && strcmp(code, "NoSuchBucket") != 0 ? SORA_ERR_NOT_FOUND :
	      SORA_ERR_PERMANENT;
	sora_error_set(err, cls, "s3 %s %s%s%s: %ld %s%s%s", r->op, d->bucket, sep, key,
		       r->status, code[0] != '\0' ? code : status_text(r->status),
		       message[0] != '\0' ? ": " : "", message);
	if (cls == SORA_ERR_NOT_FOUND)
		return -1;
	*retry_r = sora_blob_s3_retryable(0, r->status >= 200 && r->status < 300 ? 500 : r->status,
					  code);
	return -1;
}

static int s3_run(struct s3_driver *d, struct s3_req *r, struct sora_error *err)
{
	struct sora_error local;
	int ret = -1, attempt;
	bool retry = false;

	if (err == NULL)
		err = &local;
	r->easy = conn_get(d);
	if (r->easy == NULL)
		return sora_error_set(err, SORA_ERR_TEMPORARY,
				      "s3 %s: cannot create a libcurl handle", r->op);
	for (attempt = 1;; attempt++) {
		int64_t delay;

		s3_attempt(d, r);
		ret = s3_outcome(d, r, &retry, err);
		if (ret == 0 || !retry || attempt >= d->retry.max_attempts)
			break;
		delay = sora_blob_s3_backoff_ms(&d->retry, attempt, randombytes_random());
		sora_warn(NULL, "%s; retrying in %lld ms (attempt %d of %d)", err->msg,
			  (long long)delay, attempt + 1, d->retry.max_attempts);
		sleep_ms(delay);
	}
	if (ret == 0)
		return 0;
	/* The count is part of the message: operators (and tests) see how
	 * hard the driver tried. */
	if (attempt > 1)
		sora_error_append(err, " (after %d attempts)", attempt);
	if (retry)
		err->cls = SORA_ERR_TEMPORARY;
	return -1;
}

/* Releases what a request kept after s3_run() and passes its status on. */
static int s3_finish(struct s3_req *r, int ret)
{
	sora_buf_free(&r->resp);
	return ret;
}

/* ---- operations ---- */

static int sha256_chunk(void *ctx, const void *data, size_t len, struct sora_error *err)
{
	crypto_hash_sha256_update(ctx, data, len);
	return 0;
}

static int sha256_source(struct sora_blob_source *src, char hex_r[65],
			 struct sora_error *err)
{
	crypto_hash_sha256_state st;
	unsigned char digest[crypto_hash_sha256_BYTES];

	crypto_hash_sha256_init(&st);
	if (sora_blob_source_drain(src, sha256_chunk, &st, err) < 0)
		return -1;
	crypto_hash_sha256_final(&st, digest);
	sodium_bin2hex(hex_r, 65, digest, sizeof(digest));
	return 0;
}

static void sha256_mem(const void *data, size_t len, char hex_r[65])
{
	unsigned char digest[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(digest, data, len);
	sodium_bin2hex(hex_r, 65, digest, sizeof(digest));
}

static int s3_put(struct sora_blob_driver *drv, const char *key,
		  struct sora_blob_source *src, struct sora_error *err)
{
	struct s3_driver *d = (struct s3_driver *)drv;
	static const char *const headers[] = { "Content-Type: application/octet-stream", NULL };
	struct s3_req r = { .op = "PUT", .method = "PUT", .key = key, .src = src,
			    .headers = headers };
	bool sign = d->payload_signing == SORA_BLOB_PAYLOAD_SIGNED ||
		    (d->payload_signing == SORA_BLOB_PAYLOAD_AUTO && !d->use_ssl);

	if (src->length == 0) {
		snprintf(r.payload_hash, sizeof(r.payload_hash), "%s", EMPTY_SHA256);
	} else if (sign) {
		if (sha256_source(src, r.payload_hash, err) < 0) {
			char k[300];

			key_for_msg(key, k, sizeof(k));
			sora_error_prefix(err, "s3 PUT %s/%s: reading the body", d->bucket, k);
			return -1;
		}
	} else {
		snprintf(r.payload_hash, sizeof(r.payload_hash), "%s", UNSIGNED_PAYLOAD);
	}
	return s3_finish(&r, s3_run(d, &r, err));
}

static int s3_head(struct sora_blob_driver *drv, const char *key, uint64_t *size_r,
		   struct sora_error *err)
{
	struct s3_driver *d = (struct s3_driver *)drv;
	struct s3_req r = { .op = "HEAD", .method = "HEAD", .key = key, .head = true };
	int ret;

	snprintf(r.payload_hash, sizeof(r.payload_hash), "%s", EMPTY_SHA256);
	ret = s3_finish(&r, s3_run(d, &r, err));
	if (ret != 0)
		return ret;
	if (r.content_length < 0)
		return sora_error_set(err, SORA_ERR_PERMANENT,
				      "s3 HEAD %s/%s: answer without Content-Length", d->bucket,
				      key);
	*size_r = (uint64_t)r.content_length;
	return 0;
}

static int s3_get(struct sora_blob_driver *drv, const char *key, uint64_t offset,
		  uint64_t length, sora_blob_write_cb *cb, void *cb_ctx,
		  struct sora_error *err)
{
	struct s3_driver *d = (struct s3_driver *)drv;
	struct s3_req r = { .op = "GET", .method = "GET", .key = key, .sink = cb,
			    .sink_ctx = cb_ctx, .offset = offset, .length = length };
	uint64_t size;

	/* An empty range transfers nothing, but a missing object must
	 * still be reported. */
	if (length == 0)
		return s3_head(drv, key, &size, err);
	if (length != SORA_BLOB_TO_END && length > UINT64_MAX - offset)
		r.length = SORA_BLOB_TO_END;
	snprintf(r.payload_hash, sizeof(r.payload_hash), "%s", EMPTY_SHA256);
	return s3_finish(&r, s3_run(d, &r, err));
}

static int s3_del(struct sora_blob_driver *drv, const char *key, struct sora_error *err)
{
	struct s3_driver *d = (struct s3_driver *)drv;
	struct s3_req r = { .op = "DELETE", .method = "DELETE", .key = key };
	struct sora_error local;
	int ret;

	if (err == NULL)
		err = &local;
	snprintf(r.payload_hash, sizeof(r.payload_hash), "%s", EMPTY_SHA256);
	ret = s3_finish(&r, s3_run(d, &r, err));
	return ret < 0 && err->cls == SORA_ERR_NOT_FOUND ? 0 : ret;
}

static int s3_copy(struct sora_blob_driver *drv, const char *src_key,
		   const char *dst_key, struct sora_error *err)
{
	struct s3_driver *d = (struct s3_driver *)drv;
	char bucket[512], enc[URL_MAX], source[URL_MAX + 600];
	const char *headers[] = { source, NULL };
	struct s3_req r = { .op = "COPY", .method = "PUT", .key = dst_key, .headers = headers,
			    .want_resp = true, .error_in_2xx = true };

	if (sora_blob_s3_uri_encode(d->bucket, strlen(d->bucket), false, bucket, sizeof(bucket)) < 0 ||
	    sora_blob_s3_uri_encode(src_key, strlen(src_key), true, enc, sizeof(enc)) < 0) {
		return sora_error_set(err, SORA_ERR_PERMANENT, "s3 COPY %s: source key too long",
				      d->bucket);
	}
	snprintf(source, sizeof(source), "x-amz-copy-source: /%s/%s", bucket, enc);
	snprintf(r.payload_hash, sizeof(r.payload_hash), "%s", EMPTY_SHA256);
	return s3_finish(&r, s3_run(d, &r, err));
}

static int content_md5(const void *data, size_t len, char *b64, size_t size)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;

	if (EVP_Digest(data, len, digest, &dlen, EVP_md5(), NULL) != 1)
		return -1;
	if (size < sodium_base64_ENCODED_LEN(dlen, sodium_base64_VARIANT_ORIGINAL))
		return -1;
	sodium_bin2base64(b64, size, digest, dlen, sodium_base64_VARIANT_ORIGINAL);
	return 0;
}

/* One DeleteObjects request for up to BATCH_MAX keys. */
static int s3_del_chunk(struct s3_driver *d, const char *const *keys, size_t count,
			size_t *failed_r, struct sora_error *err)
{
	static const char open_doc[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
		"<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>";
	struct sora_buf body;
	char md5[64], md5_header[100];
	const char *headers[] = { md5_header, "Content-Type: application/xml", NULL };
	struct s3_req r = { .op = "DELETE-BATCH", .method = "POST", .key = NULL,
			    .query = "delete=", .headers = headers, .want_resp = true };
	struct sora_str doc, inner;
	int ret = -1;

	*failed_r = count;
	sora_buf_init(&body, 0);
	if (sora_buf_append_str(&body, open_doc) < 0)
		goto oom;
	for (size_t i = 0; i < count; i++) {
		if (sora_buf_append_str(&body, "<Object><Key>") < 0)
			goto oom;
		if (sora_blob_xml_escape(&body, sora_str_c(keys[i])) < 0) {
			char k[300];
			key_for_msg(keys[i], k, sizeof(k));
			sora_error_set(err, SORA_ERR_PERMANENT,
				       "s3 DELETE %s/%s: key cannot be written in XML", d->bucket,
				       k);
			goto out;
		}
		if (sora_buf_append_str(&body, "</Key></Object>") < 0)
			goto oom;
	}
	if (sora_buf_append_str(&body, "</Delete>") < 0)
		goto oom;
	if (content_md5(body.data, body.len, md5, sizeof(md5)) < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "s3 DELETE %s: MD5 unavailable",
			       d->bucket);
		goto out;
	}
	snprintf(md5_header, sizeof(md5_header), "Content-MD5: %s", md5);
	sha256_mem(body.data, body.len, r.payload_hash);
	r.body = body.data;
	r.body_len = body.len;

	ret = s3_run(d, &r, err);
	if (ret != 0)
		goto out;
	/* The answer lists the keys that could not be deleted (and, from
	 * servers that ignore Quiet, the deleted ones, which do not count). */
	*failed_r = 0;
	doc = sora_buf_str(&r.resp);
	while (sora_blob_xml_next(&doc, "Error", &inner)) {
		if ((*failed_r)++ > 0)
			continue;
		char key[300], code[64], message[256], k[300];
		sora_blob_xml_text(inner, "Key", key, sizeof(key));
		sora_blob_xml_text(inner, "Code", code, sizeof(code));
		sora_blob_xml_text(inner, "Message", message, sizeof(message));
		key_for_msg(key, k, sizeof(k));
		/* A key the answer lists as failed; the request as a whole
		 * succeeded, so S3's code decides whether a retry may help. */
		sora_error_set(err,
			sora_blob_s3_retryable(0, 200, code) ? SORA_ERR_TEMPORARY : SORA_ERR_PERMANENT,
			"s3 DELETE %s/%s: %s%s%s", d->bucket, k, code[0] != '\0' ? code : "error",
			message[0] != '\0' ? ": " : "", message);
	}
	ret = *failed_r == 0 ? 0 : -1;
out:
	sora_buf_free(&r.resp);
	sora_buf_free(&body);
	return ret;
oom:
	sora_error_set(err, SORA_ERR_TEMPORARY, "s3 DELETE %s: out of memory", d->bucket);
	goto out;
}

static int s3_del_batch(struct sora_blob_driver *drv, const char *const *keys,
			size_t count, size_t *failed_r, struct sora_error *err)
{
	struct s3_driver *d = (struct s3_driver *)drv;
	struct sora_error one;
	size_t failed = 0;

	for (size_t i = 0; i < count; i += BATCH_MAX) {
		size_t n = count - i < BATCH_MAX ? count - i : BATCH_MAX;
		size_t f = 0;
		if (s3_del_chunk(d, keys + i, n, &f, &one) != 0 || f > 0) {
			if (failed == 0 && err != NULL)
				*err = one;
			failed += f;
		}
	}
	*failed_r = failed;
	return failed == 0 ? 0 : -1;
}

static void s3_destroy(struct sora_blob_driver *drv)
{
	struct s3_driver *d = (struct s3_driver *)drv;

	if (d->conn_key_created) {
		/* No destructor runs for this key after deletion: release the
		 * handles of every thread here. */
		pthread_key_delete(d->conn_key);
		pthread_mutex_lock(&d->lock);
		while (d->conns != NULL) {
			struct s3_conn *c = d->conns;
			d->conns = c->next;
			curl_easy_cleanup(c->easy);
			free(c);
		}
		pthread_mutex_unlock(&d->lock);
		pthread_mutex_destroy(&d->lock);
	}
	free(d->host);
	free(d->region);
	free(d->bucket);
	free(d->access_key);
	if (d->secret_key != NULL)
		sodium_free(d->secret_key);
	free(d->connect_to);
	free(d->ca_file);
	free(d->sigv4);
	free(d);
}

static const struct sora_blob_driver_ops s3_ops = {
	.name = "s3",
	.put = s3_put,
	.get = s3_get,
	.head = s3_head,
	.del = s3_del,
	.del_batch = s3_del_batch,
	.copy = s3_copy,
	.destroy = s3_destroy,
};

static bool dns_bucket_name(const char *b)
{
	size_t len = strlen(b);

	if (len < 3 || len > 63)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = b[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
			return false;
	}
	return b[0] != '-' && b[0] != '.' && b[len - 1] != '-' && b[len - 1] != '.';
}

static char *dup_or_null(const char *s, bool *ok)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = strdup(s);
	if (d == NULL)
		*ok = false;
	return d;
}

int sora_blob_s3_create(const struct sora_s3_config *cfg,
			const struct sora_blob_s3_options *opts,
			struct sora_blob_driver **drv_r, struct sora_error *err)
{
	static const struct sora_blob_s3_options no_opts;
	struct s3_driver *d;
	const char *endpoint, *region;
	bool ok = true;
	size_t len;
	int ret = -1;

	*drv_r = NULL;
	if (opts == NULL)
		opts = &no_opts;
	pthread_once(&curl_once, curl_global_once);
	if (curl_init_result != CURLE_OK) {
		sora_error_set(err, SORA_ERR_PERMANENT, "s3: libcurl initialisation failed: %s",
			       curl_easy_strerror(curl_init_result));
		return -1;
	}
	if (sodium_init() < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "s3: libsodium initialisation failed");
		return -1;
	}
	if (cfg->bucket == NULL || cfg->bucket[0] == '\0' || strchr(cfg->bucket, '/') != NULL) {
		sora_error_set(err, SORA_ERR_PERMANENT,
			       "[s3] bucket must be set (a bucket name without '/')");
		return -1;
	}
	if (cfg->access_key == NULL || cfg->access_key[0] == '\0' ||
	    cfg->secret_key == NULL || cfg->secret_key[0] == '\0') {
		sora_error_set(err, SORA_ERR_PERMANENT,
			       "[s3] access_key and secret_key must be set");
		return -1;
	}
	region = cfg->region != NULL && cfg->region[0] != '\0' ? cfg->region : "us-east-1";
	if (strpbrk(region, ":/ ") != NULL) {
		sora_error_set(err, SORA_ERR_PERMANENT,
			       "[s3] region must not contain ':', '/' or spaces");
		return -1;
	}
	if (!cfg->path_style && !dns_bucket_name(cfg->bucket)) {
		sora_error_set(err, SORA_ERR_PERMANENT,
			"[s3] bucket '%s' cannot be used as a host name; " "set path_style = true",
			cfg->bucket);
		return -1;
	}

	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		return -1;
	}
	d->head.ops = &s3_ops;
	d->use_ssl = cfg->use_ssl;
	endpoint = cfg->endpoint;
	/* An endpoint written as a URL decides TLS by its scheme. */
	if (endpoint != NULL && strncmp(endpoint, "https://", 8) == 0) {
		endpoint += 8;
		d->use_ssl = true;
	} else if (endpoint != NULL && strncmp(endpoint, "http://", 7) == 0) {
		endpoint += 7;
		d->use_ssl = false;
	}
	if (endpoint == NULL || endpoint[0] == '\0') {
		char aws[128];
		snprintf(aws, sizeof(aws), "s3.%s.amazonaws.com", region);
		d->host = strdup(aws);
	} else {
		len = strlen(endpoint);
		while (len > 0 && endpoint[len - 1] == '/')
			len--;
		d->host = strndup(endpoint, len);
	}
	if (d->host == NULL)
		ok = false;
	else if (d->host[0] == '\0' || strpbrk(d->host, "/?#@ ") != NULL) {
		sora_error_set(err, SORA_ERR_PERMANENT, "[s3] endpoint must be host[:port]");
		goto out;
	}
	d->region = dup_or_null(region, &ok);
	d->bucket = dup_or_null(cfg->bucket, &ok);
	d->access_key = dup_or_null(cfg->access_key, &ok);
	d->connect_to = dup_or_null(opts->connect_to, &ok);
	d->ca_file = dup_or_null(opts->ca_file, &ok);
	len = strlen(cfg->secret_key);
	d->secret_key = sodium_malloc(len + 1);
	if (d->secret_key == NULL)
		ok = false;
	else
		memcpy(d->secret_key, cfg->secret_key, len + 1);
	if (ok) {
		size_t n = strlen(region) + sizeof("aws:amz::s3");
		d->sigv4 = malloc(n);
		if (d->sigv4 == NULL)
			ok = false;
		else
			snprintf(d->sigv4, n, "aws:amz:%s:s3", region);
	}
	if (!ok) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		goto out;
	}
	d->path_style = cfg->path_style;
	d->tls_verify = cfg->tls_verify;
	d->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 60000;
	d->retry = opts->retry;
	if (d->retry.max_attempts <= 0)
		d->retry.max_attempts = SORA_BLOB_RETRY_DEFAULT_ATTEMPTS;
	if (d->retry.base_ms <= 0)
		d->retry.base_ms = SORA_BLOB_RETRY_DEFAULT_BASE_MS;
	if (d->retry.cap_ms <= 0)
		d->retry.cap_ms = SORA_BLOB_RETRY_DEFAULT_CAP_MS;
	d->payload_signing = opts->payload_signing;
	if (pthread_mutex_init(&d->lock, NULL) != 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "s3: cannot create a mutex");
		goto out;
	}
	if (pthread_key_create(&d->conn_key, conn_release) != 0) {
		pthread_mutex_destroy(&d->lock);
		sora_error_set(err, SORA_ERR_PERMANENT, "s3: cannot create thread-local storage");
		goto out;
	}
	d->conn_key_created = true;
	*drv_r = &d->head;
	d = NULL;
	ret = 0;
out:
	if (d != NULL)
		s3_destroy(&d->head);
	return ret;
}
