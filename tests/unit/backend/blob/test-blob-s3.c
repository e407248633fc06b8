/* Tests for the s3 driver without an S3 server: URI encoding, URLs in
 * path and virtual-host style, config validation, retry classification
 * and back-off bounds, the XML reader on whole and cut documents, and the
 * request/retry logic against a scripted local HTTP server (503 then 200
 * with the body re-sent, 5xx until attempts run out, 404 kinds, 403 not
 * retried, a GET cut mid-body resumed with a Range, a server ignoring
 * Range, CopyObject errors inside a 200, batch delete results with
 * Content-MD5, payload hash modes, a server that never answers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "backend/blob/blob-s3.h"
#include "backend/blob/blob-xml.h"
#include "blob-test.h"

/* ---- pure helpers ---- */

static void test_uri_encode(void **state)
{
	char out[256];

	assert_int_equal(sora_blob_s3_uri_encode("ab/1/x", 6, true, out, sizeof(out)), 6);
	assert_string_equal(out, "ab/1/x");
	sora_blob_s3_uri_encode("ab/1/x", 6, false, out, sizeof(out));
	assert_string_equal(out, "ab%2F1%2Fx");
	const char k[] = "a b+c=d&e~f_g.h-i*j(k)l!m'n;o:p@q,r$s%t?u#v[w]\xc3\xa9";
	sora_blob_s3_uri_encode(k, sizeof(k) - 1, true, out, sizeof(out));
	assert_string_equal(out, "a%20b%2Bc%3Dd%26e~f_g.h-i%2Aj%28k%29l%21m%27n%3Bo%3Ap%40q%2Cr%24s"
				 "%25t%3Fu%23v%5Bw%5D%C3%A9");
	/* A NUL byte in the middle is encoded too (keys are bytes). */
	sora_blob_s3_uri_encode("a\0b", 3, true, out, sizeof(out));
	assert_string_equal(out, "a%00b");
	/* Too small: refused, never cut. */
	assert_int_equal(sora_blob_s3_uri_encode("abc", 3, true, out, 3), -1);
	assert_int_equal(sora_blob_s3_uri_encode("a b", 3, true, out, 5), -1);
	assert_int_equal(sora_blob_s3_uri_encode("a b", 3, true, out, 6), 5);
}

static struct sora_s3_config cfg_base(void)
{
	struct sora_s3_config c = {
		.endpoint = "s3.example.com:9000", .region = "eu-west-1", .bucket = "mail-bodies",
		.access_key = "AK", .secret_key = "SK", .use_ssl = true, .path_style = false,
		.tls_verify = true, .timeout_ms = 5000,
	};
	return c;
}

static void test_urls_and_validation(void **state)
{
	struct sora_s3_config c = cfg_base();
	struct sora_blob_driver *d = NULL;
	char url[512];
	struct sora_error err;

	assert_int_equal(sora_blob_s3_create(&c, NULL, &d, &err), 0);
	assert_int_equal(sora_blob_s3_url(d, "ab/1/h a", NULL, url, sizeof(url)), 0);
	assert_string_equal(url, "https://mail-bodies.s3.example.com:9000/ab/1/h%20a");
	assert_int_equal(sora_blob_s3_url(d, NULL, "delete=", url, sizeof(url)), 0);
	assert_string_equal(url, "https://mail-bodies.s3.example.com:9000/?delete=");
	assert_int_equal(sora_blob_s3_url(d, "x", NULL, url, 10), -1);
	sora_blob_driver_free(&d);
	assert_null(d);

	c.path_style = true;
	c.use_ssl = false;
	c.bucket = "Bucket_With_Caps";
	assert_int_equal(sora_blob_s3_create(&c, NULL, &d, &err), 0);
	assert_int_equal(sora_blob_s3_url(d, "ab/1/h", NULL, url, sizeof(url)), 0);
	assert_string_equal(url, "http://s3.example.com:9000/Bucket_With_Caps/ab/1/h");
	assert_int_equal(sora_blob_s3_url(d, NULL, "delete=", url, sizeof(url)), 0);
	assert_string_equal(url, "http://s3.example.com:9000/Bucket_With_Caps?delete=");
	sora_blob_driver_free(&d);

	/* A bucket that cannot be a host name needs path style. */
	c.path_style = false;
	assert_int_equal(sora_blob_s3_create(&c, NULL, &d, &err), -1);
	assert_non_null(strstr(err.msg, "path_style"));
	/* An endpoint written as a URL: the scheme decides TLS. */
	c = cfg_base();
	c.use_ssl = true;
	c.endpoint = "http://minio.local:9000/";
	assert_int_equal(sora_blob_s3_create(&c, NULL, &d, &err), 0);
	assert_int_equal(sora_blob_s3_url(d, "k", NULL, url, sizeof(url)), 0);
	assert_string_equal(url, "http://mail-bodies.minio.local:9000/k");
	sora_blob_driver_free(&d);
	/* No endpoint: AWS for the region. */
	c = cfg_base();
	c.endpoint = NULL;
	assert_int_equal(sora_blob_s3_create(&c, NULL, &d, &err), 0);
	assert_int_equal(sora_blob_s3_url(d, "k", NULL, url, sizeof(url)), 0);
	assert_string_equal(url, "https://mail-bodies.s3.eu-west-1.amazonaws.com/k");
	sora_blob_driver_free(&d);

	struct { const char *field; const char *value; const char *msg; } bad[] = {
		{ "bucket", "", "bucket" },
		{ "bucket", "a/b", "bucket" },
		{ "access_key", "", "access_key" },
		{ "secret_key", NULL, "secret_key" },
		{ "region", "eu:west", "region" },
		{ "endpoint", "host/path", "endpoint" },
		{ "endpoint", "user@host", "endpoint" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = cfg_base();
		if (strcmp(bad[i].field, "bucket") == 0) c.bucket = (char *)bad[i].value;
		if (strcmp(bad[i].field, "access_key") == 0) c.access_key = (char *)bad[i].value;
		if (strcmp(bad[i].field, "secret_key") == 0) c.secret_key = (char *)bad[i].value;
		if (strcmp(bad[i].field, "region") == 0) c.region = (char *)bad[i].value;
		if (strcmp(bad[i].field, "endpoint") == 0) c.endpoint = (char *)bad[i].value;
		sora_error_clear(&err);
		if (sora_blob_s3_create(&c, NULL, &d, &err) != -1)
			fail_msg("accepted bad %s", bad[i].field);
		assert_non_null(strstr(err.msg, bad[i].msg));
		assert_null(strstr(err.msg, "SK"));
	}
}

static void test_retry_classification(void **state)
{
	assert_true(sora_blob_s3_retryable(CURLE_COULDNT_CONNECT, 0, NULL));
	assert_true(sora_blob_s3_retryable(CURLE_OPERATION_TIMEDOUT, 0, NULL));
	assert_true(sora_blob_s3_retryable(CURLE_COULDNT_RESOLVE_HOST, 0, NULL));
	assert_true(sora_blob_s3_retryable(CURLE_RECV_ERROR, 0, NULL));
	assert_true(sora_blob_s3_retryable(CURLE_GOT_NOTHING, 0, NULL));
	assert_true(sora_blob_s3_retryable(CURLE_PARTIAL_FILE, 0, NULL));
	assert_false(sora_blob_s3_retryable(CURLE_URL_MALFORMAT, 0, NULL));
	assert_false(sora_blob_s3_retryable(CURLE_PEER_FAILED_VERIFICATION, 0, NULL));
	assert_false(sora_blob_s3_retryable(CURLE_ABORTED_BY_CALLBACK, 0, NULL));
	assert_true(sora_blob_s3_retryable(0, 500, "InternalError"));
	assert_true(sora_blob_s3_retryable(0, 502, NULL));
	assert_true(sora_blob_s3_retryable(0, 503, "SlowDown"));
	assert_true(sora_blob_s3_retryable(0, 429, NULL));
	assert_true(sora_blob_s3_retryable(0, 400, "RequestTimeout"));
	assert_false(sora_blob_s3_retryable(0, 400, "InvalidArgument"));
	assert_false(sora_blob_s3_retryable(0, 403, "SignatureDoesNotMatch"));
	assert_false(sora_blob_s3_retryable(0, 403, "AccessDenied"));
	assert_false(sora_blob_s3_retryable(0, 404, "NoSuchKey"));
	assert_false(sora_blob_s3_retryable(0, 409, NULL));
}

static void test_backoff_bounds(void **state)
{
	struct sora_blob_retry_policy p = { .max_attempts = 5, .base_ms = 200, .cap_ms = 10000 };

	/* Full jitter: 0 for the lowest random value, the whole window for
	 * the highest, the window doubling up to the cap. */
	int64_t windows[] = { 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000 };
	for (int a = 1; a <= 9; a++) {
		assert_int_equal(sora_blob_s3_backoff_ms(&p, a, 0), 0);
		assert_int_equal(sora_blob_s3_backoff_ms(&p, a, UINT32_MAX), windows[a - 1]);
		int64_t mid = sora_blob_s3_backoff_ms(&p, a, UINT32_MAX / 2);
		assert_true(mid >= windows[a - 1] / 2 - 1 && mid <= windows[a - 1] / 2 + 1);
	}
	/* Huge attempt numbers do not overflow. */
	assert_int_equal(sora_blob_s3_backoff_ms(&p, 1000, UINT32_MAX), 10000);
	/* Random values spread over the window. */
	int64_t lo = INT64_MAX, hi = 0;
	for (int i = 0; i < 2000; i++) {
		int64_t v = sora_blob_s3_backoff_ms(&p, 3, randombytes_random());
		assert_true(v >= 0 && v <= 800);
		lo = v < lo ? v : lo;
		hi = v > hi ? v : hi;
	}
	assert_true(lo < 100 && hi > 700);
}

static void test_xml(void **state)
{
	const char doc[] =
		"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code>"
		"<Message>Please &amp; reduce &lt;rate&gt; &#65;&#x42; &bogus; &#0; &#xD800;</Message>"
		"<CodeX>no</CodeX><Empty/><Key>a&apos;b&quot;c</Key></Error>";
	struct sora_str xml = sora_str_make(doc, sizeof(doc) - 1), inner;
	char out[128];

	assert_int_equal(sora_blob_xml_text(xml, "Code", out, sizeof(out)), 0);
	assert_string_equal(out, "SlowDown");
	assert_int_equal(sora_blob_xml_text(xml, "Message", out, sizeof(out)), 0);
	assert_string_equal(out, "Please & reduce <rate> AB &bogus; &#0; &#xD800;");
	assert_int_equal(sora_blob_xml_text(xml, "Key", out, sizeof(out)), 0);
	assert_string_equal(out, "a'b\"c");
	assert_int_equal(sora_blob_xml_text(xml, "Empty", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(sora_blob_xml_text(xml, "Missing", out, sizeof(out)), -1);
	assert_string_equal(out, "");
	assert_int_equal(sora_blob_xml_text(xml, "Code", out, 5), 0);
	assert_string_equal(out, "Slow");
	/* Iterating elements. */
	const char res[] = "<DeleteResult><Deleted><Key>a</Key></Deleted><Error><Key>b</Key>"
			   "<Code>AccessDenied</Code></Error><Error><Key>c</Key></Error></DeleteResult>";
	struct sora_str r = sora_str_make(res, sizeof(res) - 1);
	int n = 0;
	while (sora_blob_xml_next(&r, "Error", &inner)) {
		assert_int_equal(sora_blob_xml_text(inner, "Key", out, sizeof(out)), 0);
		assert_string_equal(out, n == 0 ? "b" : "c");
		n++;
	}
	assert_int_equal(n, 2);
	/* Every cut of a document is handled without reading past it. */
	for (size_t cut = 0; cut < sizeof(doc) - 1; cut++) {
		char *copy = malloc(cut + 1);
		memcpy(copy, doc, cut);
		struct sora_str part = sora_str_make(copy, cut);
		sora_blob_xml_text(part, "Code", out, sizeof(out));
		sora_blob_xml_text(part, "Message", out, sizeof(out));
		free(copy);
	}
	/* Escaping for requests. */
	struct sora_buf b;
	sora_buf_init(&b, 0);
	assert_int_equal(sora_blob_xml_escape(&b, sora_str_c("a&b<c>d\"e'f\tg\nh\ri \xc3\xa9")), 0);
	assert_int_equal(sora_buf_append(&b, "", 1), 0);
	assert_string_equal(b.data, "a&amp;b&lt;c&gt;d&quot;e&apos;f&#9;g&#10;h&#13;i \xc3\xa9");
	sora_buf_free(&b);
	assert_int_equal(sora_blob_xml_escape(&b, sora_str_make("a\x01", 2)), -1);
	sora_buf_free(&b);
}

/* ---- a scripted HTTP server ---- */

struct fake_resp {
	int status;
	const char *headers;   /* extra header lines, each ending in \r\n */
	const char *body;
	size_t body_len;       /* 0: strlen(body) */
	long send_len;         /* body bytes actually sent; -1 = all */
	bool hang;             /* read the request, never answer */
};

struct fake {
	int lfd, port;
	pthread_t th;
	struct fake_resp resp[8];
	int nresp;
	int served;
	char req[8][4096];     /* request line and headers */
	unsigned char *body[8];
	size_t body_len[8];
};

static const char *header_value(const char *req, const char *name, char *out, size_t size)
{
	const char *p = req;
	size_t nl = strlen(name);

	while ((p = strchr(p, '\n')) != NULL) {
		p++;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1, *e;
			while (*v == ' ')
				v++;
			e = strstr(v, "\r\n");
			size_t len = e != NULL ? (size_t)(e - v) : strlen(v);
			if (len >= size)
				len = size - 1;
			memcpy(out, v, len);
			out[len] = '\0';
			return out;
		}
	}
	return NULL;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	for (int i = 0; i < f->nresp; i++) {
		int c = accept(f->lfd, NULL, NULL);
		size_t got = 0;
		char *end = NULL, val[64];
		struct fake_resp *r = &f->resp[i];

		if (c < 0)
			break;
		while (end == NULL && got < sizeof(f->req[i]) - 1) {
			ssize_t n = recv(c, f->req[i] + got, sizeof(f->req[i]) - 1 - got, 0);
			if (n <= 0)
				break;
			got += (size_t)n;
			f->req[i][got] = '\0';
			end = strstr(f->req[i], "\r\n\r\n");
		}
		size_t hlen = end != NULL ? (size_t)(end + 4 - f->req[i]) : got;
		size_t clen = header_value(f->req[i], "Content-Length", val, sizeof(val)) != NULL
				      ? strtoul(val, NULL, 10) : 0;
		if (header_value(f->req[i], "Expect", val, sizeof(val)) != NULL)
			send(c, "HTTP/1.1 100 Continue\r\n\r\n", 25, MSG_NOSIGNAL);
		f->body[i] = malloc(clen + 1);
		size_t have = got - hlen;
		memcpy(f->body[i], f->req[i] + hlen, have);
		while (have < clen) {
			ssize_t n = recv(c, f->body[i] + have, clen - have, 0);
			if (n <= 0)
				break;
			have += (size_t)n;
		}
		f->body_len[i] = have;
		f->req[i][hlen] = '\0';
		f->served = i + 1;
		if (r->hang) {
			/* Wait for the client to give up. */
			char b;
			struct pollfd pfd = { .fd = c, .events = POLLIN };
			poll(&pfd, 1, 10000);
			(void)recv(c, &b, 1, 0);
			close(c);
			continue;
		}
		size_t blen = r->body == NULL ? 0 : (r->body_len ? r->body_len : strlen(r->body));
		size_t slen = r->send_len < 0 ? blen : (size_t)r->send_len;
		char head[1024];
		int hn = snprintf(head, sizeof(head),
				  "HTTP/1.1 %d Scripted\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
				  r->status, blen, r->headers != NULL ? r->headers : "");
		send(c, head, (size_t)hn, MSG_NOSIGNAL);
		if (slen > 0)
			send(c, r->body, slen, MSG_NOSIGNAL);
		shutdown(c, SHUT_RDWR);
		close(c);
	}
	return NULL;
}

static struct fake *fake_start(const struct fake_resp *resp, int n)
{
	struct fake *f = calloc(1, sizeof(*f));
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);

	memcpy(f->resp, resp, (size_t)n * sizeof(*resp));
	f->nresp = n;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f->lfd, 8), 0);
	assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &len), 0);
	f->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
	return f;
}

/* Stops serving; what was received stays readable until fake_free(). */
static void fake_stop(struct fake *f)
{
	shutdown(f->lfd, SHUT_RDWR);
	pthread_join(f->th, NULL);
	close(f->lfd);
}

static void fake_free(struct fake *f)
{
	for (int i = 0; i < 8; i++)
		free(f->body[i]);
	free(f);
}

static struct sora_blob_driver *fake_driver(struct fake *f, int attempts,
					    enum sora_blob_payload_signing mode, int64_t timeout_ms)
{
	struct sora_s3_config c = cfg_base();
	struct sora_blob_s3_options o = { .retry = { .max_attempts = attempts, .base_ms = 5,
						     .cap_ms = 20 },
					  .payload_signing = mode };
	struct sora_blob_driver *d = NULL;
	char ep[64];
	struct sora_error err;

	snprintf(ep, sizeof(ep), "127.0.0.1:%d", f->port);
	c.endpoint = ep;
	c.bucket = "bkt";
	c.use_ssl = false;
	c.path_style = true;
	c.timeout_ms = timeout_ms;
	assert_int_equal(sora_blob_s3_create(&c, &o, &d, &err), 0);
	return d;
}

#define ERRDOC(code) "<?xml version=\"1.0\"?><Error><Code>" code "</Code><Message>scripted " \
		     code "</Message></Error>"

static void check_request(struct fake *f, int i, const char *line_prefix)
{
	if (strncmp(f->req[i], line_prefix, strlen(line_prefix)) != 0)
		fail_msg("request %d: \"%.80s\" does not start with \"%s\"", i, f->req[i], line_prefix);
}

static void test_put_body_resent_and_signed(void **state)
{
	struct fake_resp r[] = {
		{ 500, NULL, ERRDOC("InternalError"), 0, -1, false },
		{ 200, NULL, NULL, 0, -1, false },
		{ 200, NULL, NULL, 0, -1, false },
	};
	struct fake *f = fake_start(r, 3);
	struct sora_blob_driver *d = fake_driver(f, 3, SORA_BLOB_PAYLOAD_AUTO, 5000);
	unsigned char *body = random_bytes(5000);
	struct sora_blob_mem_source ms;
	struct sora_blob_source src;
	struct sora_error err;
	char val[512], sha[65];
	unsigned char digest[32];

	sora_blob_mem_source_init(&src, &ms, body, 5000);
	assert_int_equal(sora_blob_driver_put(d, "ab/1/k y", &src, &err), 0);
	assert_int_equal(f->served, 2);
	sora_blob_driver_free(&d);
	d = fake_driver(f, 3, SORA_BLOB_PAYLOAD_UNSIGNED, 5000);
	assert_int_equal(sora_blob_driver_put(d, "ab/1/k y", &src, &err), 0);
	sora_blob_driver_free(&d);
	fake_stop(f);

	crypto_hash_sha256(digest, body, 5000);
	sodium_bin2hex(sha, sizeof(sha), digest, 32);
	for (int i = 0; i < 3; i++) {
		check_request(f, i, "PUT /bkt/ab/1/k%20y HTTP/1.1\r\n");
		assert_int_equal(f->body_len[i], 5000);
		assert_memory_equal(f->body[i], body, 5000);
		assert_non_null(header_value(f->req[i], "Authorization", val, sizeof(val)));
		assert_non_null(strstr(val, "AWS4-HMAC-SHA256 Credential=AK/"));
		assert_non_null(strstr(val, "/eu-west-1/s3/aws4_request"));
		assert_non_null(strstr(val, "x-amz-content-sha256"));
		assert_non_null(header_value(f->req[i], "x-amz-content-sha256", val, sizeof(val)));
		assert_string_equal(val, i < 2 ? sha : "UNSIGNED-PAYLOAD");
		assert_non_null(header_value(f->req[i], "Content-Length", val, sizeof(val)));
		assert_string_equal(val, "5000");
	}
	fake_free(f);
	free(body);
}

static void test_errors_and_attempts(void **state)
{
	struct fake_resp r[] = {
		{ 500, NULL, ERRDOC("InternalError"), 0, -1, false },
		{ 502, NULL, "<html>bad gateway</html>", 0, -1, false },
		{ 503, NULL, ERRDOC("SlowDown"), 0, -1, false },
		{ 404, NULL, ERRDOC("NoSuchKey"), 0, -1, false },
		{ 404, NULL, ERRDOC("NoSuchBucket"), 0, -1, false },
		{ 403, NULL, ERRDOC("AccessDenied"), 0, -1, false },
		{ 429, NULL, NULL, 0, -1, false },
		{ 200, NULL, "ok", 0, -1, false },
	};
	struct fake *f = fake_start(r, 8);
	struct sora_blob_driver *d = fake_driver(f, 3, SORA_BLOB_PAYLOAD_AUTO, 5000);
	struct sora_error err;
	struct membuf m = { 0 };

	assert_int_equal(CLS(sora_blob_driver_get(d, "k1", 0, SORA_BLOB_TO_END, membuf_sink, &m, &err)),
			 SORA_ERR_TEMPORARY);
	/* Status, S3 code and the attempts made are all in the message. */
	assert_int_equal(f->served, 3);
	assert_string_equal(err.msg, "s3 GET bkt/k1: 503 SlowDown: scripted SlowDown (after 3 attempts)");
	assert_int_equal(m.len, 0);
	assert_int_equal(CLS(sora_blob_driver_get(d, "k2", 0, SORA_BLOB_TO_END, membuf_sink, &m, &err)),
			 SORA_ERR_NOT_FOUND);
	assert_int_equal(f->served, 4);
	assert_string_equal(err.msg, "s3 GET bkt/k2: 404 NoSuchKey: scripted NoSuchKey");
	assert_int_equal(CLS(sora_blob_driver_get(d, "k3", 0, SORA_BLOB_TO_END, membuf_sink, &m, &err)),
			 SORA_ERR_PERMANENT);
	assert_non_null(strstr(err.msg, ": 404 NoSuchBucket"));
	assert_int_equal(CLS(sora_blob_driver_delete(d, "k4", &err)), SORA_ERR_PERMANENT);
	assert_int_equal(f->served, 6);
	assert_string_equal(err.msg, "s3 DELETE bkt/k4: 403 AccessDenied: scripted AccessDenied");
	assert_int_equal(sora_blob_driver_get(d, "k5", 0, SORA_BLOB_TO_END, membuf_sink, &m, &err),
			 0);
	assert_int_equal(f->served, 8);
	assert_int_equal(m.len, 2);
	assert_memory_equal(m.p, "ok", 2);
	membuf_reset(&m);
	sora_blob_driver_free(&d);
	fake_stop(f);
	fake_free(f);
}

static void test_get_resumes_and_clips(void **state)
{
	char body[101];
	for (int i = 0; i < 100; i++)
		body[i] = (char)('A' + i % 26);
	body[100] = '\0';
	struct fake_resp r[] = {
		/* Cut after 40 bytes of 100: resumed with a Range. */
		{ 200, NULL, body, 100, 40, false },
		{ 206, "Content-Range: bytes 40-99/100\r\n", body + 40, 60, -1, false },
		/* A server ignoring Range: the driver skips and stops itself. */
		{ 200, NULL, body, 100, -1, false },
		/* Range past the end. */
		{ 416, NULL, ERRDOC("InvalidRange"), 0, -1, false },
	};
	struct fake *f = fake_start(r, 4);
	struct sora_blob_driver *d = fake_driver(f, 3, SORA_BLOB_PAYLOAD_AUTO, 5000);
	struct sora_error err;
	struct membuf m = { 0 };
	char val[128];

	assert_int_equal(sora_blob_driver_get(d, "obj", 0, SORA_BLOB_TO_END, membuf_sink, &m, &err),
			 0);
	assert_int_equal(m.len, 100);
	assert_memory_equal(m.p, body, 100);
	membuf_reset(&m);
	assert_int_equal(sora_blob_driver_get(d, "obj", 10, 5, membuf_sink, &m, &err), 0);
	assert_int_equal(m.len, 5);
	assert_memory_equal(m.p, body + 10, 5);
	membuf_reset(&m);
	assert_int_equal(sora_blob_driver_get(d, "obj", 500, SORA_BLOB_TO_END, membuf_sink, &m, &err),
			 0);
	assert_int_equal(m.len, 0);
	sora_blob_driver_free(&d);
	fake_stop(f);
	/* What was asked for. */
	assert_null(header_value(f->req[0], "Range", val, sizeof(val)));
	assert_non_null(header_value(f->req[1], "Range", val, sizeof(val)));
	assert_string_equal(val, "bytes=40-");
	fake_free(f);
}

static void test_copy_error_in_200(void **state)
{
	struct fake_resp r[] = {
		{ 200, NULL, ERRDOC("InternalError"), 0, -1, false },
		{ 200, NULL, "<CopyObjectResult><ETag>\"e\"</ETag></CopyObjectResult>", 0, -1, false },
	};
	struct fake *f = fake_start(r, 2);
	struct sora_blob_driver *d = fake_driver(f, 3, SORA_BLOB_PAYLOAD_AUTO, 5000);
	struct sora_error err;
	char val[256];

	assert_int_equal(sora_blob_driver_copy(d, "src key+1", "dst", &err), 0);
	assert_int_equal(f->served, 2);
	sora_blob_driver_free(&d);
	fake_stop(f);
	check_request(f, 0, "PUT /bkt/dst HTTP/1.1");
	assert_non_null(header_value(f->req[0], "x-amz-copy-source", val, sizeof(val)));
	assert_string_equal(val, "/bkt/src%20key%2B1");
	fake_free(f);
}

static void test_batch_delete_request(void **state)
{
	struct fake_resp r[] = {
		{ 200, NULL, "<DeleteResult><Deleted><Key>k1</Key></Deleted><Error><Key>k&amp;2</Key>"
			     "<Code>AccessDenied</Code><Message>no</Message></Error></DeleteResult>",
		  0, -1, false },
	};
	struct fake *f = fake_start(r, 1);
	struct sora_blob_driver *d = fake_driver(f, 3, SORA_BLOB_PAYLOAD_AUTO, 5000);
	struct sora_error err;
	const char *keys[] = { "k1", "k&2" };
	size_t failed = 0;
	char val[256], md5[64];
	unsigned char digest[16];
	unsigned int dlen = 0;

	assert_int_equal(CLS(sora_blob_driver_delete_batch(d, keys, 2, &failed, &err)),
			 SORA_ERR_PERMANENT);
	assert_int_equal(failed, 1);
	assert_string_equal(err.msg, "s3 DELETE bkt/k&2: AccessDenied: no");
	sora_blob_driver_free(&d);
	fake_stop(f);
	check_request(f, 0, "POST /bkt?delete= HTTP/1.1");
	f->body[0][f->body_len[0]] = '\0';
	assert_non_null(strstr((char *)f->body[0], "<Key>k&amp;2</Key>"));
	assert_non_null(strstr((char *)f->body[0], "<Quiet>true</Quiet>"));
	EVP_Digest(f->body[0], f->body_len[0], digest, &dlen, EVP_md5(), NULL);
	sodium_bin2base64(md5, sizeof(md5), digest, 16, sodium_base64_VARIANT_ORIGINAL);
	assert_non_null(header_value(f->req[0], "Content-MD5", val, sizeof(val)));
	assert_string_equal(val, md5);
	/* Keys XML cannot carry are refused before sending. */
	const char *bad[] = { "a\x01" };
	d = fake_driver(f, 1, SORA_BLOB_PAYLOAD_AUTO, 5000);
	assert_int_equal(CLS(sora_blob_driver_delete_batch(d, bad, 1, &failed, &err)),
			 SORA_ERR_PERMANENT);
	assert_int_equal(failed, 1);
	sora_blob_driver_free(&d);
	fake_free(f);
}

static void test_timeout(void **state)
{
	struct fake_resp r[] = {
		{ 0, NULL, NULL, 0, -1, true },
		{ 0, NULL, NULL, 0, -1, true },
	};
	struct fake *f = fake_start(r, 2);
	struct sora_blob_driver *d = fake_driver(f, 2, SORA_BLOB_PAYLOAD_AUTO, 1000);
	struct sora_error err;
	uint64_t size;

	assert_int_equal(CLS(sora_blob_driver_head(d, "slow", &size, &err)), SORA_ERR_TEMPORARY);
	assert_int_equal(f->served, 2);
	assert_non_null(strstr(err.msg, "network error"));
	assert_non_null(strstr(err.msg, "(after 2 attempts)"));
	sora_blob_driver_free(&d);
	fake_stop(f);
	fake_free(f);
}

static void *thread_get(void *arg)
{
	struct sora_blob_driver *d = arg;
	struct sora_error err;
	struct membuf m = { 0 };
	int ret = sora_blob_driver_get(d, "t", 0, SORA_BLOB_TO_END, membuf_sink, &m, &err);

	membuf_reset(&m);
	return (void *)(intptr_t)ret;
}

static void test_threads_have_own_handles(void **state)
{
	struct fake_resp r[] = {
		{ 200, NULL, "one", 0, -1, false }, { 200, NULL, "two", 0, -1, false },
		{ 200, NULL, "three", 0, -1, false }, { 200, NULL, "four", 0, -1, false },
	};
	struct fake *f = fake_start(r, 4);
	struct sora_blob_driver *d = fake_driver(f, 1, SORA_BLOB_PAYLOAD_AUTO, 5000);
	pthread_t th[3];
	void *ret;

	/* Handles of exited threads are released by the thread-exit hook,
	 * the main thread's one by the driver's free (checked by ASan). */
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&th[i], NULL, thread_get, d), 0);
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], &ret);
		assert_int_equal((intptr_t)ret, 0);
	}
	assert_int_equal((intptr_t)thread_get(d), 0);
	sora_blob_driver_free(&d);
	fake_stop(f);
	fake_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uri_encode),
		cmocka_unit_test(test_urls_and_validation),
		cmocka_unit_test(test_retry_classification),
		cmocka_unit_test(test_backoff_bounds),
		cmocka_unit_test(test_xml),
		cmocka_unit_test(test_put_body_resent_and_signed),
		cmocka_unit_test(test_errors_and_attempts),
		cmocka_unit_test(test_get_resumes_and_clips),
		cmocka_unit_test(test_copy_error_in_200),
		cmocka_unit_test(test_batch_delete_request),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_threads_have_own_handles),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
