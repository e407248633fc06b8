// LDFLAGS: -Wl,--wrap=malloc -Wl,--wrap=calloc -Wl,--wrap=realloc -Wl,--wrap=reallocarray
/* Out-of-memory handling: every allocation the MIME module makes is made to
 * fail in turn (malloc and friends are wrapped at link time), and each time
 * the parser, the formatters and the JSON reader must report the failure
 * cleanly: no crash, no leak (run under ASan), no half-built result. */
#include "mime-test-util.h"

#include "common/proto/mime/mime-decode.h"

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__real_reallocarray(void *p, size_t n, size_t size);

/* Allocations left before the next one fails; -1 means never fail. */
static long fail_countdown = -1;

static bool should_fail(void)
{
	if (fail_countdown < 0)
		return false;
	if (fail_countdown == 0)
		return true;
	fail_countdown--;
	return false;
}

void *__wrap_malloc(size_t size);
void *__wrap_malloc(size_t size)
{
	return should_fail() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size)
{
	return should_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size);
void *__wrap_realloc(void *p, size_t size)
{
	return should_fail() ? NULL : __real_realloc(p, size);
}

void *__wrap_reallocarray(void *p, size_t n, size_t size);
void *__wrap_reallocarray(void *p, size_t n, size_t size)
{
	return should_fail() ? NULL : __real_reallocarray(p, n, size);
}

static const char sample[] =
	"From: \"A\" <a@example.org>, g: b@c, d@e;\r\n"
	"To: x@y\r\nSubject: =?utf-8?q?hi?=\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=b; x*0*=utf-8''a; x*1=b\r\n\r\n"
	"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Language: en, de\r\n"
	"Content-Disposition: inline; filename*=utf-8''%E2%82%AC\r\n\r\nhello\r\n"
	"--b\r\nContent-Type: message/rfc822\r\n\r\n"
	"From: b@example.org\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n"
	"--c\r\n\r\nalt\r\n--c--\r\n"
	"--b--\r\n";

/* Parses sample with the n-th allocation failing. Returns true if it got
 * through (n was past the last allocation). */
static bool parse_failing_at(long n, size_t chunk)
{
	struct sora_mime_parser *p;
	struct sora_mime_message *msg = NULL;
	const char *error = NULL;
	int ret = 0;

	fail_countdown = n;
	p = sora_mime_parser_new(NULL);
	if (p == NULL) {
		fail_countdown = -1;
		return false;
	}
	for (size_t pos = 0; pos < sizeof(sample) - 1 && ret == 0; pos += chunk) {
		size_t len = sizeof(sample) - 1 - pos < chunk ? sizeof(sample) - 1 - pos : chunk;

		ret = sora_mime_parser_feed(p, sample + pos, len);
	}
	if (ret < 0) {
		/* Once failed, the parser stays failed. */
		assert_int_equal(sora_mime_parser_feed(p, "x", 1), -1);
	}
	if (sora_mime_parser_finish(&p, &msg, &error) < 0) {
		fail_countdown = -1;
		assert_null(p);
		assert_null(msg);
		assert_non_null(error);
		return false;
	}
	fail_countdown = -1;
	assert_int_equal(ret, 0);
	assert_non_null(msg);
	sora_mime_message_free(&msg);
	return true;
}

static void test_parser_oom(void **state)
{
	long n;

	(void)state;
	for (n = 0; n < 100000 && !parse_failing_at(n, sizeof(sample)); n++)
		;
	assert_true(n > 20);
	assert_true(n < 100000);
	for (n = 0; n < 100000 && !parse_failing_at(n, 7); n++)
		;
	assert_true(n < 100000);
}

static void test_output_oom(void **state)
{
	struct sora_mime_message *msg = test_parse(sample, sizeof(sample) - 1), *back;
	long n, done = 0;

	(void)state;
	for (n = 0; n < 10000 && done != 7; n++) {
		struct sora_buf b;
		const char *error = NULL;
		int ret;

		sora_buf_init(&b, 0);
		fail_countdown = n;
		ret = sora_mime_imap_bodystructure(msg, true, 0, &b);
		if (ret == 0)
			ret = sora_mime_imap_envelope(msg->root->envelope, &b);
		if (ret == 0)
			ret = sora_mime_part_filename(msg->root->children, 0, &b) < 0 ? -1 : 0;
		if (ret == 0)
			ret = sora_mime_decode_header(msg->root->envelope->raw[SORA_MIME_ENV_SUBJECT], 0, &b);
		fail_countdown = -1;
		if (ret == 0)
			done |= 1;
		b.len = 0;

		/* The JSON writer and reader: cJSON's own allocations are not
		 * wrapped, the module's are. */
		fail_countdown = n;
		ret = sora_mime_json_serialize(msg, SORA_MIME_JSON_HEADERS, &b, &error);
		fail_countdown = -1;
		if (ret == 0) {
			done |= 2;
			back = NULL;
			fail_countdown = n;
			ret = sora_mime_json_deserialize(b.data, b.len, &back, &error);
			fail_countdown = -1;
			if (ret == 0) {
				done |= 4;
				sora_mime_message_free(&back);
			} else {
				assert_null(back);
				assert_non_null(error);
			}
		}
		sora_buf_free(&b);
	}
	assert_int_equal(done, 7);
	sora_mime_message_free(&msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parser_oom),
		cmocka_unit_test(test_output_oom),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
