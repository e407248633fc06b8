/* Tests of the streaming MIME parser and the IMAP formatters.
 *
 * The main evidence is the golden corpus: corpus/NAME.eml are test messages
 * (real-world shapes and every malformation we could think of), and
 * corpus/NAME.golden hold what Dovecot 2.3 answers to FETCH BODYSTRUCTURE,
 * BODY, ENVELOPE and BODY[section] for every section of that message
 * (gen-golden.py regenerates them with Dovecot). We must give the same
 * answers, from the same offsets. The corpus is then also fed byte by byte
 * and in every chunk size up to 64, and run through the JSON form, which
 * must not change anything. */
#include "mime-test-util.h"

#include "common/proto/mime/mime-decode.h"

/* ---- golden corpus ---- */

struct golden_record {
	char key[256];
	const char *value;
	size_t len;
};

/* Returns the next record of a golden file or false at its end. */
static bool golden_next(const char *g, size_t glen, size_t *pos, struct golden_record *rec)
{
	const char *nl;
	size_t klen;
	char *end;

	if (*pos >= glen)
		return false;
	nl = memchr(g + *pos, '\n', glen - *pos);
	assert_non_null(nl);
	end = memchr(g + *pos, ' ', (size_t)(nl - g) - *pos);
	assert_non_null(end);
	klen = (size_t)(end - (g + *pos));
	assert_true(klen < sizeof(rec->key));
	memcpy(rec->key, g + *pos, klen);
	rec->key[klen] = '\0';
	rec->len = strtoul(end + 1, NULL, 10);
	rec->value = nl + 1;
	*pos = (size_t)(nl + 1 - g) + rec->len + 1;
	assert_true(*pos <= glen);
	return true;
}

static void check_golden(const char *name)
{
	char path[512], gpath[512];
	size_t len, glen, pos = 0;
	char *raw, *golden;
	struct sora_mime_message *msg;
	struct golden_record rec;
	unsigned int flags, checked = 0;
	bool bare_lf, bare_cr;

	snprintf(path, sizeof(path), "corpus/%s", name);
	snprintf(gpath, sizeof(gpath), "corpus/%.*s.golden", (int)(strlen(name) - 4), name);
	if (!test_file_exists(gpath))
		return;
	raw = test_read_file(path, &len);
	golden = test_read_file(gpath, &glen);
	msg = test_parse(raw, len);
	/* Dovecot stores LF-only messages as they are and reports them with
	 * CRLF line endings, so such messages are compared in CRLF sizes. */
	bare_lf = test_has_bare_lf(raw, len);
	bare_cr = test_has_bare_cr(raw, len);
	flags = bare_lf ? SORA_MIME_IMAP_VSIZE : 0;

	while (golden_next(golden, glen, &pos, &rec)) {
		struct sora_buf got;

		sora_buf_init(&got, 0);
		if (strcmp(rec.key, "BODYSTRUCTURE") == 0 || strcmp(rec.key, "BODY") == 0) {
			assert_int_equal(sora_mime_imap_bodystructure(msg, rec.key[4] != '\0', flags,
								      &got), 0);
		} else if (strcmp(rec.key, "ENVELOPE") == 0) {
			assert_int_equal(sora_mime_imap_envelope(msg->root->envelope, &got), 0);
		} else if (strncmp(rec.key, "SECTION:", 8) == 0) {
			uint32_t spath[512];
			unsigned int plen = 0;
			enum sora_mime_section sec;
			uint64_t off, size;

			/* Dovecot rewrites bare CRs on output (not a parsing
			 * matter), so byte comparisons skip such messages. */
			if (bare_cr) {
				sora_buf_free(&got);
				continue;
			}
			assert_true(test_parse_section(rec.key + 8, spath, 512, &plen, &sec));
			if (sora_mime_section_range(msg, spath, plen, sec, &off, &size) == 0) {
				assert_true(off + size <= msg->size);
				test_copy_range(raw, off, size, bare_lf, true, &got);
			}
		} else {
			fail_msg("%s: unknown golden record %s", name, rec.key);
		}
		if (got.len != rec.len || (got.len > 0 && memcmp(got.data, rec.value, got.len) != 0)) {
			fail_msg("%s %s:\n  want: %.*s\n  got:  %.*s", name, rec.key, (int)rec.len,
				 rec.value, (int)got.len, got.data != NULL ? got.data : "");
		}
		checked++;
		sora_buf_free(&got);
	}
	assert_true(checked >= 3);
	sora_mime_message_free(&msg);
	free(raw);
	free(golden);
}

static void test_golden_corpus(void **state)
{
	size_t count, golden = 0;
	char **names = test_list_dir("corpus", ".eml", &count);

	(void)state;
	assert_true(count >= 100);
	for (size_t i = 0; i < count; i++) {
		char g[512];

		snprintf(g, sizeof(g), "corpus/%.*s.golden", (int)(strlen(names[i]) - 4), names[i]);
		if (test_file_exists(g))
			golden++;
		check_golden(names[i]);
	}
	assert_true(golden + 1 >= count);
	test_free_list(names, count);
}

/* ---- chunking: any split of the input gives the same result ---- */

static void check_chunking(const char *name, bool all_sizes)
{
	char path[512];
	size_t len;
	char *raw = NULL, *whole, *other;
	struct sora_mime_message *msg;
	size_t one = 1;

	snprintf(path, sizeof(path), "corpus/%s", name);
	raw = test_read_file(path, &len);
	msg = test_parse(raw, len);
	whole = test_serialize(msg);
	sora_mime_message_free(&msg);

	msg = test_parse_chunked(raw, len, NULL, &one, 1);
	other = test_serialize(msg);
	if (strcmp(whole, other) != 0)
		fail_msg("%s: byte-at-a-time parse differs:\n%s\n%s", name, whole, other);
	free(other);
	sora_mime_message_free(&msg);

	for (size_t n = 2; all_sizes && n <= 64; n++) {
		msg = test_parse_chunked(raw, len, NULL, &n, 1);
		other = test_serialize(msg);
		if (strcmp(whole, other) != 0)
			fail_msg("%s: chunk size %zu differs", name, n);
		free(other);
		sora_mime_message_free(&msg);
	}
	if (all_sizes) {
		/* Irregular chunks, so that chunk ends fall everywhere. */
		static const size_t odd[] = { 3, 1, 7, 2, 64, 5, 1, 1, 13 };

		msg = test_parse_chunked(raw, len, NULL, odd, sizeof(odd) / sizeof(odd[0]));
		other = test_serialize(msg);
		assert_string_equal(whole, other);
		free(other);
		sora_mime_message_free(&msg);
	}
	free(whole);
	free(raw);
}

static void test_chunking_byte_at_a_time(void **state)
{
	size_t count;
	char **names = test_list_dir("corpus", ".eml", &count);

	(void)state;
	for (size_t i = 0; i < count; i++)
		check_chunking(names[i], false);
	test_free_list(names, count);
}

static void test_chunking_all_sizes(void **state)
{
	static const char *const names[] = {
		"thunderbird-alt-related.eml", "outlook-lf.eml", "boundary-prefixes.eml",
		"digest.eml", "rfc822-cut-by-boundary.eml", "empty-part-bodies.eml",
		"boundary-in-part-header.eml", "long-folded-header.eml", "header-8bit-nul.eml",
		"cr-only-lines.eml", "deep-rfc822.eml", "boundary-85.eml",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		check_chunking(names[i], true);
}

/* ---- the JSON form preserves everything ---- */

static void test_json_roundtrip_corpus(void **state)
{
	size_t count;
	char **names = test_list_dir("corpus", ".eml", &count);

	(void)state;
	for (size_t i = 0; i < count; i++) {
		char path[512];
		size_t len, l1, l2;
		char *raw, *json, *json2, *a, *b;
		struct sora_mime_message *msg, *back = NULL;
		const char *error = NULL;

		snprintf(path, sizeof(path), "corpus/%s", names[i]);
		raw = test_read_file(path, &len);
		msg = test_parse(raw, len);
		json = test_serialize(msg);
		if (sora_mime_json_deserialize(json, strlen(json), &back, &error) != 0)
			fail_msg("%s: %s", names[i], error);
		json2 = test_serialize(back);
		assert_string_equal(json, json2);

		a = test_bodystructure(msg, true, 0, &l1);
		b = test_bodystructure(back, true, 0, &l2);
		assert_int_equal(l1, l2);
		assert_memory_equal(a, b, l1);
		free(a);
		free(b);
		a = test_envelope(msg->root->envelope, &l1);
		b = test_envelope(back->root->envelope, &l2);
		assert_int_equal(l1, l2);
		assert_memory_equal(a, b, l1);
		free(a);
		free(b);
		assert_int_equal(msg->part_count, back->part_count);

		free(json);
		free(json2);
		sora_mime_message_free(&msg);
		sora_mime_message_free(&back);
		free(raw);
	}
	test_free_list(names, count);
}

/* ---- hand-written cases ---- */

static void test_empty_message(void **state)
{
	struct sora_mime_message *msg = test_parse("", 0);
	size_t len;
	char *s;

	(void)state;
	assert_int_equal(msg->size, 0);
	assert_int_equal(msg->part_count, 1);
	assert_int_equal(msg->root->header_size, 0);
	assert_int_equal(msg->root->body_size, 0);
	s = test_bodystructure(msg, true, 0, &len);
	assert_string_equal(s, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 "
			       "NIL NIL NIL NIL)");
	free(s);
	s = test_envelope(msg->root->envelope, &len);
	assert_string_equal(s, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	free(s);
	sora_mime_message_free(&msg);
	sora_mime_message_free(&msg);
}

static void test_headers_only(void **state)
{
	static const char m1[] = "From: a@b\r\nSubject: no blank line";
	static const char m2[] = "From: a@b\r\nSubject: x\r\n";
	struct sora_mime_message *msg;
	struct sora_str v;

	(void)state;
	msg = test_parse(m1, sizeof(m1) - 1);
	assert_int_equal(msg->root->header_size, sizeof(m1) - 1);
	assert_int_equal(msg->root->body_size, 0);
	assert_true(sora_mime_header_get(msg->root, "subject", &v));
	assert_int_equal(v.len, strlen("no blank line"));
	assert_memory_equal(v.p, "no blank line", v.len);
	sora_mime_message_free(&msg);

	msg = test_parse(m2, sizeof(m2) - 1);
	assert_int_equal(msg->root->header_size, sizeof(m2) - 1);
	assert_int_equal(msg->root->body_size, 0);
	sora_mime_message_free(&msg);
}

static void test_header_lookup_unfolded(void **state)
{
	static const char m[] =
		"Received: from x\r\n\tby y\r\n"
		"References: <a@x>\r\n <b@x>\r\n\t<c@x>\r\n"
		"List-Id: Sora users <users.sora.example>\r\n"
		"X-Empty:\r\n"
		"x-dup: one\r\nX-Dup: two\r\n"
		"\r\nbody\r\n";
	struct sora_mime_message *msg = test_parse(m, sizeof(m) - 1);
	struct sora_str v;

	(void)state;
	assert_true(sora_mime_header_get(msg->root, "REFERENCES", &v));
	assert_int_equal(v.len, strlen("<a@x> <b@x>\t<c@x>"));
	assert_memory_equal(v.p, "<a@x> <b@x>\t<c@x>", v.len);
	assert_true(sora_mime_header_get(msg->root, "list-id", &v));
	assert_memory_equal(v.p, "Sora users <users.sora.example>", v.len);
	assert_true(sora_mime_header_get(msg->root, "X-Empty", &v));
	assert_int_equal(v.len, 0);
	assert_non_null(v.p);
	assert_true(sora_mime_header_get(msg->root, "X-Dup", &v));
	assert_memory_equal(v.p, "one", 3);
	assert_false(sora_mime_header_get(msg->root, "X-Missing", &v));
	assert_int_equal(msg->root->header_count, 6);
	assert_string_equal(msg->root->headers[4].name.p, "x-dup");
	sora_mime_message_free(&msg);
}

static void test_header_limits(void **state)
{
	struct sora_mime_params params;
	struct sora_buf m;
	struct sora_mime_message *msg, *unlimited;
	struct sora_str v;
	char *a, *b;

	(void)state;
	sora_buf_init(&m, 0);
	for (int i = 0; i < 50; i++)
		assert_int_equal(sora_buf_printf(&m, "X-H%d: value %d\r\n", i, i), 0);
	assert_int_equal(sora_buf_append_str(&m, "Subject: "), 0);
	for (int i = 0; i < 2000; i++)
		assert_int_equal(sora_buf_append_str(&m, "x"), 0);
	assert_int_equal(sora_buf_append_str(&m, "\r\nContent-Type: text/html\r\n\r\nbody\r\n"), 0);

	sora_mime_params_init(&params);
	params.max_headers = 10;
	params.max_header_bytes = 100;
	params.max_field_len = 500;
	msg = test_parse_chunked(m.data, m.len, &params, NULL, 0);
	assert_true(msg->root->header_count <= 10);
	assert_true((msg->root->flags & SORA_MIME_PART_HEADERS_TRUNCATED) != 0);
	/* Limits drop what is kept, never the structure. */
	assert_int_equal(msg->root->header_size, m.len - strlen("body\r\n"));
	assert_int_equal(msg->root->body_size, strlen("body\r\n"));
	assert_true(test_str_is(msg->root->subtype, "html"));
	assert_int_equal(msg->root->envelope->raw[SORA_MIME_ENV_SUBJECT].len, 500 - strlen("Subject: "));
	assert_false(sora_mime_header_get(msg->root, "Subject", &v));

	unlimited = test_parse(m.data, m.len);
	assert_int_equal(unlimited->root->header_count, 52);
	assert_int_equal(unlimited->root->envelope->raw[SORA_MIME_ENV_SUBJECT].len, 2000);
	a = test_serialize(msg);
	b = test_serialize(unlimited);
	assert_string_not_equal(a, b);
	free(a);
	free(b);
	sora_mime_message_free(&msg);
	sora_mime_message_free(&unlimited);
	sora_buf_free(&m);
}

static void test_depth_limit(void **state)
{
	static const char m[] =
		"Content-Type: multipart/mixed; boundary=a\r\n\r\n"
		"--a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
		"--b\r\nContent-Type: message/rfc822\r\n\r\n"
		"From: x@y\r\n\r\ninner\r\n"
		"--b--\r\n--a--\r\n";
	struct sora_mime_params params;
	struct sora_mime_message *msg;
	const struct sora_mime_part *p;
	size_t len;
	char *s;

	(void)state;
	sora_mime_params_init(&params);
	params.max_depth = 3;
	msg = test_parse_chunked(m, sizeof(m) - 1, &params, NULL, 0);
	assert_true((msg->flags & SORA_MIME_MSG_LIMITED) != 0);
	p = msg->root->children->children;
	assert_non_null(p);
	assert_int_equal(p->depth, 2);
	assert_true((p->flags & SORA_MIME_PART_LIMITED) != 0);
	assert_null(p->children);
	s = test_bodystructure(msg, false, 0, &len);
	assert_string_equal(s, "(((\"application\" \"octet-stream\" NIL NIL NIL \"7bit\" 18) "
			       "\"mixed\") \"mixed\")");
	free(s);
	sora_mime_message_free(&msg);

	/* The default allows it. */
	msg = test_parse(m, sizeof(m) - 1);
	assert_int_equal(msg->flags, 0);
	assert_int_equal(msg->part_count, 4);
	sora_mime_message_free(&msg);
}

/* The part limit, checked against Dovecot with a 10010-part message (the
 * golden run gave these numbers): the part that is open when the limit is
 * reached takes the rest of the message. */
static void test_part_limit(void **state)
{
	struct sora_buf m;
	struct sora_mime_message *msg;
	const struct sora_mime_part *c, *last = NULL;
	unsigned int n = 0;
	size_t len;
	char *s;

	(void)state;
	sora_buf_init(&m, 0);
	assert_int_equal(sora_buf_append_str(&m, "From: a@b\r\nContent-Type: multipart/mixed; "
					      "boundary=b\r\n\r\n"), 0);
	for (int i = 0; i < 10010; i++)
		assert_int_equal(sora_buf_printf(&m, "--b\r\n\r\n%d\r\n", i), 0);
	assert_int_equal(sora_buf_append_str(&m, "--b--\r\nepilogue\r\n"), 0);
	msg = test_parse(m.data, m.len);
	assert_int_equal(msg->part_count, 10000);
	for (c = msg->root->children; c != NULL; c = c->next) {
		n++;
		last = c;
	}
	assert_int_equal(n, 9999);
	assert_int_equal(msg->root->children->body_size, 1);
	assert_int_equal(last->body_size, 176);
	assert_int_equal(last->body_lines, 36);
	s = test_bodystructure(msg, false, 0, &len);
	assert_true(test_starts_with(s, "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
					"\"7bit\" 1 0)(\"text\""));
	assert_true(test_ends_with(s, ")(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
				      "\"7bit\" 176 36) \"mixed\")"));
	free(s);
	sora_mime_message_free(&msg);
	sora_buf_free(&m);
}

static void test_long_lines(void **state)
{
	struct sora_buf m;
	struct sora_mime_message *msg;
	struct sora_str v;
	size_t one = 1;

	(void)state;
	sora_buf_init(&m, 0);
	assert_int_equal(sora_buf_append_str(&m, "X-Long: "), 0);
	for (int i = 0; i < 200000; i++)
		assert_int_equal(sora_buf_append(&m, "y", 1), 0);
	assert_int_equal(sora_buf_append_str(&m, "\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n"
					      "--q\r\n\r\n"), 0);
	for (int i = 0; i < 3000000; i++)
		assert_int_equal(sora_buf_append(&m, i % 100 == 0 ? "-" : "z", 1), 0);
	assert_int_equal(sora_buf_append_str(&m, "\r\n--q--\r\n"), 0);
	msg = test_parse(m.data, m.len);
	assert_true(sora_mime_header_get(msg->root, "X-Long", &v));
	assert_int_equal(v.len, 64 * 1024 - strlen("X-Long: "));
	assert_int_equal(msg->root->child_count, 1);
	assert_int_equal(msg->root->children->body_size, 3000000);
	assert_int_equal(msg->root->children->body_lines, 0);
	sora_mime_message_free(&msg);

	/* The same byte by byte (this is the slow path of the head buffer). */
	msg = test_parse_chunked(m.data, m.len, NULL, &one, 1);
	assert_int_equal(msg->root->children->body_size, 3000000);
	sora_mime_message_free(&msg);
	sora_buf_free(&m);
}

static void test_nul_and_8bit(void **state)
{
	static const char m[] = "Subject: a\0b \xe9\r\nFrom: \"N\0\" <x@y>\r\n\r\nbo\0dy\r\n";
	struct sora_mime_message *msg = test_parse(m, sizeof(m) - 1);
	struct sora_str v;
	size_t len;
	char *s;

	(void)state;
	assert_true(sora_mime_header_get(msg->root, "Subject", &v));
	assert_int_equal(v.len, 5);
	assert_memory_equal(v.p, "a\0b \xe9", 5);
	assert_int_equal(msg->root->body_size, 7);
	s = test_envelope(msg->root->envelope, &len);
	/* NUL goes out as U+FFFD, and 8-bit text as a literal. */
	assert_string_equal(s, "(NIL {7}\r\na\xef\xbf\xbd" "b \xe9 (({4}\r\nN\xef\xbf\xbd NIL \"x\" \"y\")) "
			       "(({4}\r\nN\xef\xbf\xbd NIL \"x\" \"y\")) (({4}\r\nN\xef\xbf\xbd NIL \"x\" "
			       "\"y\")) NIL NIL NIL NIL NIL)");
	free(s);
	sora_mime_message_free(&msg);
}

static void test_vsize(void **state)
{
	static const char m[] = "Subject: x\n\nline1\nline2\r\nline3";
	struct sora_mime_message *msg = test_parse(m, sizeof(m) - 1);
	size_t len;
	char *s;

	(void)state;
	assert_int_equal(msg->size, sizeof(m) - 1);
	assert_int_equal(msg->vsize, sizeof(m) - 1 + 3);
	assert_int_equal(msg->root->header_size, 12);
	assert_int_equal(msg->root->header_vsize, 14);
	assert_int_equal(msg->root->body_size, 18);
	assert_int_equal(msg->root->body_vsize, 19);
	assert_int_equal(msg->root->body_lines, 2);
	s = test_bodystructure(msg, false, 0, &len);
	assert_string_equal(s, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 18 2)");
	free(s);
	s = test_bodystructure(msg, false, SORA_MIME_IMAP_VSIZE, &len);
	assert_string_equal(s, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 19 2)");
	free(s);
	sora_mime_message_free(&msg);
}

static void test_sections(void **state)
{
	static const char m[] =
		"Content-Type: multipart/mixed; boundary=x\r\n\r\n"
		"--x\r\nContent-Type: text/plain\r\n\r\none\r\n"
		"--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ntwo\r\n"
		"--x--\r\n";
	struct sora_mime_message *msg = test_parse(m, sizeof(m) - 1);
	uint64_t off, size;
	const uint32_t p1[] = { 1 }, p2[] = { 2 }, p21[] = { 2, 1 }, p3[] = { 3 }, p11[] = { 1, 1 };

	(void)state;
#define RANGE_IS(path, n, sec, text) do { \
		assert_int_equal(sora_mime_section_range(msg, path, n, sec, &off, &size), 0); \
		assert_int_equal(size, strlen(text)); \
		assert_memory_equal(m + off, text, size); \
	} while (0)
	RANGE_IS(p1, 1, SORA_MIME_SECTION_BODY, "one");
	RANGE_IS(p1, 1, SORA_MIME_SECTION_MIME, "Content-Type: text/plain\r\n\r\n");
	RANGE_IS(p2, 1, SORA_MIME_SECTION_BODY, "Subject: in\r\n\r\ntwo");
	RANGE_IS(p2, 1, SORA_MIME_SECTION_HEADER, "Subject: in\r\n\r\n");
	RANGE_IS(p2, 1, SORA_MIME_SECTION_TEXT, "two");
	RANGE_IS(p21, 2, SORA_MIME_SECTION_BODY, "two");
	RANGE_IS(NULL, 0, SORA_MIME_SECTION_HEADER, "Content-Type: multipart/mixed; boundary=x\r\n\r\n");
#undef RANGE_IS
	assert_int_equal(sora_mime_section_range(msg, NULL, 0, SORA_MIME_SECTION_BODY, &off, &size), 0);
	assert_int_equal(size, sizeof(m) - 1);
	assert_int_equal(sora_mime_section_range(msg, p3, 1, SORA_MIME_SECTION_BODY, &off, &size), -1);
	assert_int_equal(sora_mime_section_range(msg, p11, 2, SORA_MIME_SECTION_BODY, &off, &size), -1);
	assert_int_equal(sora_mime_section_range(msg, p1, 1, SORA_MIME_SECTION_HEADER, &off, &size), -1);
	assert_int_equal(sora_mime_section_range(msg, NULL, 0, SORA_MIME_SECTION_MIME, &off, &size), -1);
	assert_null(sora_mime_part_find(msg, p3, 1));
	sora_mime_message_free(&msg);
}

static void test_content_fields(void **state)
{
	static const char m[] =
		"MIME-Version: 1.0\r\n"
		"Content-Type: Application/PDF; Name*0*=utf-8''%E2%82%AC; name*1=\"x.pdf\"\r\n"
		"Content-Disposition: ATTACHMENT; FILENAME=\"=?iso-8859-1?q?r=E9sum=E9?=.pdf\"\r\n"
		"Content-Transfer-Encoding: BASE64\r\n"
		"Content-Language: de-CH, en\r\n"
		"Content-ID: <id@x>\r\n\r\nAAAA\r\n";
	struct sora_mime_message *msg = test_parse(m, sizeof(m) - 1);
	const struct sora_mime_part *p = msg->root;
	const struct sora_mime_param *param;
	struct sora_buf b;

	(void)state;
	assert_true(test_str_is(p->type, "application"));
	assert_true(test_str_is(p->subtype, "pdf"));
	assert_true(test_str_is(p->encoding, "base64"));
	assert_true(test_str_is(p->disposition, "attachment"));
	assert_int_equal(p->language_count, 2);
	assert_true(test_str_is(p->languages[0], "de-CH"));
	param = sora_mime_param_find(p->params, p->param_count, "NAME*");
	assert_non_null(param);
	assert_true(test_str_is(param->value, "utf-8''%E2%82%ACx.pdf"));
	sora_buf_init(&b, 0);
	assert_int_equal(sora_mime_part_filename(p, 0, &b), 1);
	assert_int_equal(b.len, strlen("r\xc3\xa9sum\xc3\xa9.pdf"));
	assert_memory_equal(b.data, "r\xc3\xa9sum\xc3\xa9.pdf", b.len);
	b.len = 0;
	assert_int_equal(sora_mime_param_decode(p->params, p->param_count, "name", 0, &b), 1);
	assert_int_equal(b.len, strlen("\xe2\x82\xacx.pdf"));
	assert_memory_equal(b.data, "\xe2\x82\xacx.pdf", b.len);
	sora_buf_free(&b);
	sora_mime_message_free(&msg);
}

/* max_kept_bytes bounds what a message keeps, without changing its tree. */
static void test_kept_bytes_budget(void **state)
{
	struct sora_mime_params params;
	struct sora_buf m;
	struct sora_mime_message *small, *full;
	const struct sora_mime_part *a, *b;
	unsigned int kept = 0, n = 0;
	char *json;

	(void)state;
	sora_buf_init(&m, 0);
	assert_int_equal(sora_buf_append_str(&m, "Content-Type: multipart/mixed; boundary=b\r\n\r\n"), 0);
	for (int i = 0; i < 3000; i++) {
		assert_int_equal(sora_buf_append_str(&m, "--b\r\nContent-Description: "), 0);
		for (int k = 0; k < 100; k++)
			assert_int_equal(sora_buf_append_str(&m, "xxxxxxxxxx"), 0);
		assert_int_equal(sora_buf_printf(&m, "\r\n\r\npart %d\r\n", i), 0);
	}
	assert_int_equal(sora_buf_append_str(&m, "--b--\r\n"), 0);
	sora_mime_params_init(&params);
	params.max_kept_bytes = 256 * 1024;
	small = test_parse_chunked(m.data, m.len, &params, NULL, 0);
	full = test_parse(m.data, m.len);
	assert_true((small->flags & SORA_MIME_MSG_TRUNCATED) != 0);
	assert_int_equal(full->flags & SORA_MIME_MSG_TRUNCATED, 0);
	assert_int_equal(small->part_count, full->part_count);
	for (a = small->root->children, b = full->root->children; a != NULL && b != NULL;
	     a = a->next, b = b->next) {
		assert_int_equal(a->header_offset, b->header_offset);
		assert_int_equal(a->header_size, b->header_size);
		assert_int_equal(a->body_size, b->body_size);
		assert_int_equal(b->description.len, 1000);
		if (a->description.p != NULL)
			kept++;
		else
			assert_true((a->flags & SORA_MIME_PART_HEADERS_TRUNCATED) != 0);
		n++;
	}
	assert_null(a);
	assert_null(b);
	assert_int_equal(n, 3000);
	assert_true(kept > 50 && kept < 300);
	json = test_serialize(small);
	assert_true(strlen(json) < 1024 * 1024);
	{
		struct sora_mime_message *back = NULL;
		const char *error = NULL;
		char *again;

		if (sora_mime_json_deserialize(json, strlen(json), &back, &error) != 0)
			fail_msg("%s", error);
		assert_true((back->flags & SORA_MIME_MSG_TRUNCATED) != 0);
		again = test_serialize(back);
		assert_string_equal(json, again);
		free(again);
		sora_mime_message_free(&back);
	}
	free(json);
	sora_mime_message_free(&small);
	sora_mime_message_free(&full);
	sora_buf_free(&m);
}

/* At most SORA_MIME_MAX_ADDRESSES addresses come out of one field. */
static void test_address_cap(void **state)
{
	struct sora_buf m;
	struct sora_mime_message *msg;
	unsigned int n = 0;

	(void)state;
	sora_buf_init(&m, 0);
	assert_int_equal(sora_buf_append_str(&m, "To: "), 0);
	for (int i = 0; i < 12000; i++)
		assert_int_equal(sora_buf_append_str(&m, "a@b,"), 0);
	assert_int_equal(sora_buf_append_str(&m, "\r\n\r\n"), 0);
	msg = test_parse(m.data, m.len);
	for (const struct sora_mime_address *a = msg->root->envelope->addr[SORA_MIME_ENV_TO];
	     a != NULL; a = a->next)
		n++;
	assert_int_equal(n, SORA_MIME_MAX_ADDRESSES);
	sora_mime_message_free(&msg);
	sora_buf_free(&m);
}

/* RFC 2231 sections: merged when complete, listed one by one otherwise, in
 * Dovecot's order (names compared case-sensitively, so "T*0" and "t*1" do
 * not merge). "name*" is always section 0 (Dovecot 2.3 would give "c*1*"
 * below because it reuses the index parsed before; we do not copy that). */
static void test_rfc2231_sections(void **state)
{
	static const char m[] =
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; b*=x; a*1=y; c*=z; t*1=2; T*0=1; u*0*=us-ascii'en'a%25; u*1=%\r\n"
		"\r\nbody";
	static const char *const want[][2] = {
		{ "t", "1" }, { "a*1", "y" }, { "b*", "x" }, { "c*", "z" }, { "t*1", "2" },
		{ "u*", "us-ascii'en'a%25%25" },
	};
	struct sora_mime_message *msg = test_parse(m, sizeof(m) - 1);
	const struct sora_mime_part *p = msg->root;

	(void)state;
	assert_int_equal(p->param_count, 6);
	for (unsigned int i = 0; i < 6; i++) {
		if (!test_str_is(p->params[i].name, want[i][0]) ||
		    !test_str_is(p->params[i].value, want[i][1]))
			fail_msg("param %u: %s=%s", i, p->params[i].name.p, p->params[i].value.p);
	}
	sora_mime_message_free(&msg);
}

/* A deeper max_depth than the JSON form can carry is clamped. */
static void test_depth_clamped_for_json(void **state)
{
	struct sora_mime_params params;
	struct sora_buf m;
	struct sora_mime_message *msg, *back = NULL;
	const struct sora_mime_part *p;
	const char *error = NULL;
	char *json;

	(void)state;
	sora_buf_init(&m, 0);
	for (int i = 0; i < 600; i++)
		assert_int_equal(sora_buf_append_str(&m, "Content-Type: message/rfc822\r\n\r\n"), 0);
	assert_int_equal(sora_buf_append_str(&m, "Subject: bottom\r\n\r\nbody\r\n"), 0);
	sora_mime_params_init(&params);
	params.max_depth = 100000;
	msg = test_parse_chunked(m.data, m.len, &params, NULL, 0);
	for (p = msg->root; p->children != NULL; p = p->children)
		;
	assert_int_equal(p->depth, SORA_MIME_MAX_DEPTH - 1);
	assert_true((p->flags & SORA_MIME_PART_LIMITED) != 0);
	json = test_serialize(msg);
	if (sora_mime_json_deserialize(json, strlen(json), &back, &error) != 0)
		fail_msg("%s", error);
	assert_int_equal(back->part_count, SORA_MIME_MAX_DEPTH);
	free(json);
	sora_mime_message_free(&back);
	sora_mime_message_free(&msg);
	sora_buf_free(&m);
}

/* A misuse-resistant API: free functions take T ** and clear it. */
static void test_parser_free_unfinished(void **state)
{
	struct sora_mime_parser *p = sora_mime_parser_new(NULL);

	(void)state;
	assert_non_null(p);
	assert_int_equal(sora_mime_parser_feed(p, "Subject: x\r\n\r\nbody", 18), 0);
	sora_mime_parser_free(&p);
	assert_null(p);
	sora_mime_parser_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_corpus),
		cmocka_unit_test(test_chunking_byte_at_a_time),
		cmocka_unit_test(test_chunking_all_sizes),
		cmocka_unit_test(test_json_roundtrip_corpus),
		cmocka_unit_test(test_empty_message),
		cmocka_unit_test(test_headers_only),
		cmocka_unit_test(test_header_lookup_unfolded),
		cmocka_unit_test(test_header_limits),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_part_limit),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_nul_and_8bit),
		cmocka_unit_test(test_vsize),
		cmocka_unit_test(test_sections),
		cmocka_unit_test(test_content_fields),
		cmocka_unit_test(test_kept_bytes_budget),
		cmocka_unit_test(test_address_cap),
		cmocka_unit_test(test_rfc2231_sections),
		cmocka_unit_test(test_depth_clamped_for_json),
		cmocka_unit_test(test_parser_free_unfinished),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
