/* The stored (JSON) form of a parsed message: what it contains, that it
 * survives bytes JSON cannot carry, and that the reader refuses anything
 * that could make IMAP read outside a message. */
#include "mime-test-util.h"

#include <cjson/cJSON.h>

static const char sample[] =
	"From: \"A\" <a@example.org>\r\n"
	"Subject: caf\xe9 \0x\r\n"
	"Message-ID: <id@example.org>\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Language: en\r\n\r\nhello\r\n"
	"--b\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=m.eml\r\n\r\n"
	"From: b@example.org\r\nSubject: inner\r\n\r\ninner body\r\n"
	"--b--\r\n";

static struct sora_mime_message *parse_sample(void)
{
	return test_parse(sample, sizeof(sample) - 1);
}

static void test_contents(void **state)
{
	struct sora_mime_message *msg = parse_sample();
	char *json = test_serialize(msg);
	cJSON *root = cJSON_Parse(json), *r, *subject, *c, *inner;
	struct sora_buf b;
	const char *error = NULL;

	(void)state;
	assert_non_null(root);
	assert_int_equal(cJSON_GetObjectItem(root, "v")->valueint, SORA_MIME_JSON_VERSION);
	assert_int_equal((int)cJSON_GetObjectItem(root, "size")->valuedouble, (int)(sizeof(sample) - 1));
	r = cJSON_GetObjectItem(root, "root");
	assert_string_equal(cJSON_GetObjectItem(r, "t")->valuestring, "multipart");
	/* The subject is not valid UTF-8 and has a NUL: base64. */
	subject = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "env"), "subject");
	assert_true(cJSON_IsObject(subject));
	assert_string_equal(cJSON_GetObjectItem(subject, "b64")->valuestring, "Y2Fm6SAAeA==");
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "env"), "message-id")->valuestring,
			    "<id@example.org>");
	c = cJSON_GetObjectItem(r, "c");
	assert_int_equal(cJSON_GetArraySize(c), 2);
	/* The message/rfc822 part's only child carries the inner envelope. */
	inner = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(c, 1), "c"), 0);
	assert_non_null(inner);
	assert_non_null(cJSON_GetObjectItem(inner, "env"));
	assert_non_null(cJSON_GetObjectItem(r, "h"));
	cJSON_Delete(root);
	free(json);

	/* Without SORA_MIME_JSON_HEADERS the header fields stay out. */
	sora_buf_init(&b, 0);
	assert_int_equal(sora_mime_json_serialize(msg, 0, &b, &error), 0);
	assert_int_equal(sora_buf_append(&b, "", 1), 0);
	assert_null(strstr(b.data, "\"h\":"));
	sora_buf_free(&b);
	sora_mime_message_free(&msg);
}

static void test_roundtrip_bytes(void **state)
{
	struct sora_mime_message *msg = parse_sample(), *back = NULL;
	char *json = test_serialize(msg);
	const char *error = NULL;
	struct sora_str subject;

	(void)state;
	assert_int_equal(sora_mime_json_deserialize(json, strlen(json), &back, &error), 0);
	subject = back->root->envelope->raw[SORA_MIME_ENV_SUBJECT];
	assert_int_equal(subject.len, 7);
	assert_memory_equal(subject.p, "caf\xe9 \0x", 7);
	/* Address lists come back parsed. */
	assert_non_null(back->root->envelope->addr[SORA_MIME_ENV_FROM]);
	assert_true(test_str_is(back->root->envelope->addr[SORA_MIME_ENV_FROM]->name, "A"));
	assert_int_equal(back->root->child_count, 2);
	assert_true(test_str_is(back->root->children->next->children->envelope->raw[SORA_MIME_ENV_SUBJECT],
				"inner"));
	assert_ptr_equal(back->root->children->parent, back->root);
	assert_int_equal(back->root->children->next->children->depth, 2);
	sora_mime_message_free(&back);
	sora_mime_message_free(&msg);
	free(json);
}

static void test_envelope_json(void **state)
{
	struct sora_mime_message *msg = parse_sample();
	struct sora_mime_arena *arena = sora_mime_arena_new();
	struct sora_mime_envelope *env = NULL;
	struct sora_buf b;
	const char *error = NULL;
	size_t l1, l2;
	char *a, *c;

	(void)state;
	sora_buf_init(&b, 0);
	assert_int_equal(sora_mime_json_envelope(msg, &b, &error), 0);
	assert_int_equal(sora_mime_json_envelope_parse(b.data, b.len, arena, &env, &error), 0);
	a = test_envelope(msg->root->envelope, &l1);
	c = test_envelope(env, &l2);
	assert_int_equal(l1, l2);
	assert_memory_equal(a, c, l1);
	free(a);
	free(c);
	assert_int_equal(sora_mime_json_envelope_parse("[1]", 3, arena, &env, &error), -1);
	assert_int_equal(sora_mime_json_envelope_parse("{", 1, arena, &env, &error), -1);
	sora_buf_free(&b);
	sora_mime_arena_free(&arena);
	sora_mime_message_free(&msg);
}

static void expect_rejected(const char *json, const char *why)
{
	struct sora_mime_message *msg = NULL;
	const char *error = NULL;

	if (sora_mime_json_deserialize(json, strlen(json), &msg, &error) == 0)
		fail_msg("accepted %s: %s", why, json);
	assert_null(msg);
	assert_non_null(error);
}

static void test_rejects_corrupt(void **state)
{
	struct sora_mime_message *msg = NULL;
	const char *error = NULL;
	(void)state;

	/* A minimal valid one first, so the rejections below are about what
	 * they change. */
	static const char valid[] = "{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":6,\"f\":4}}";

	assert_int_equal(sora_mime_json_deserialize(valid, sizeof(valid) - 1, &msg, &error), 0);
	sora_mime_message_free(&msg);

	expect_rejected("", "empty input");
	expect_rejected("[]", "an array");
	expect_rejected("{\"v\":2,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":6}}", "version 2");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10}", "no root");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":9,\"root\":{\"hs\":4,\"bs\":6}}", "vsize < size");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":7}}", "root past the end");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":5}}", "root too short");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":-4,\"bs\":14}}", "negative size");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4.5,\"bs\":5.5}}", "fractions");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":\"4\",\"bs\":6}}", "a string size");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":6,\"f\":3}}",
			"multipart and message at once");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":6,\"f\":4096}}",
			"unknown flags");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":6,\"l\":7}}",
			"more lines than bytes");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":6,\"c\":[{\"o\":4,\"bs\":2}]}}",
			"children on a leaf");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":6,\"f\":1,"
			"\"c\":[{\"o\":2,\"bs\":2}]}}", "a child before its parent's body");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":6,\"f\":1,"
			"\"c\":[{\"o\":5,\"bs\":6}]}}", "a child past its parent's end");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":6,\"f\":1,"
			"\"c\":[{\"o\":6,\"bs\":2},{\"o\":5,\"bs\":1}]}}", "overlapping children");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":6,\"f\":2,"
			"\"c\":[{\"o\":4,\"bs\":1},{\"o\":5,\"bs\":1}]}}", "two encapsulated messages");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":6,\"f\":1,"
			"\"c\":[{\"o\":4,\"bs\":1,\"env\":{}}]}}", "an envelope on a body part");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":6,\"t\":{\"b64\":7}}}",
			"a bad base64 member");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":6,\"p\":[\"a\"]}}",
			"an odd parameter list");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":6,\"lang\":[]}}",
			"an empty language list");
	expect_rejected("{\"v\":1,\"size\":10,\"vsize\":10,\"root\":{\"hs\":4,\"bs\":6,\"env\":[]}}",
			"an envelope that is no object");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_contents),
		cmocka_unit_test(test_roundtrip_bytes),
		cmocka_unit_test(test_envelope_json),
		cmocka_unit_test(test_rejects_corrupt),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
