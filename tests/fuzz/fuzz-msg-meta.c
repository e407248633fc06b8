/* libFuzzer target for the message metadata code (backend/store/msg-meta.h),
 * which reads client-supplied mail at delivery.
 *
 * The input is used as:
 *  - a date, a subject and a transfer-encoded body: the date parser must
 *    return a sane time, the base subject must be no longer than its input
 *    and be its own base subject,
 *    and the transfer decoders must give the same output in one piece, byte
 *    by byte and in chunks whose sizes come from the input;
 *  - a whole message: parsed, every metadata column derived and the
 *    envelope and structure serialized for the jsonb columns (all must be
 *    valid UTF-8 without NUL), the searchable text extracted;
 *  - a differential check of the offset shift: parsing the message with a
 *    trace prefix must give the same structure as parsing it alone and
 *    shifting it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/store/msg-meta.h"
#include "common/proto/mime/mime-json.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_utf8(const struct sora_buf *b)
{
	struct sora_buf clean;

	sora_buf_init(&clean, 0);
	CHECK(sora_msg_utf8_clean(sora_buf_str(b), &clean) == 0);
	CHECK(clean.len == b->len);
	CHECK(b->len == 0 || memcmp(clean.data, b->data, b->len) == 0);
	sora_buf_free(&clean);
}

static void check_cte(const char *enc, const uint8_t *data, size_t size)
{
	struct sora_msg_cte_decoder d;
	struct sora_buf one, bytes, chunks;
	size_t pos = 0, k = 0;

	sora_buf_init(&one, 0);
	sora_buf_init(&bytes, 0);
	sora_buf_init(&chunks, 0);
	sora_msg_cte_init(&d, sora_str_c(enc));
	CHECK(sora_msg_cte_feed(&d, data, size, &one) == 0);
	CHECK(sora_msg_cte_finish(&d, &one) == 0);
	sora_msg_cte_init(&d, sora_str_c(enc));
	for (size_t i = 0; i < size; i++)
		CHECK(sora_msg_cte_feed(&d, data + i, 1, &bytes) == 0);
	CHECK(sora_msg_cte_finish(&d, &bytes) == 0);
	sora_msg_cte_init(&d, sora_str_c(enc));
	while (pos < size) {
		size_t n = (size_t)(data[k++ % size] % 7) + 1;

		if (n > size - pos)
			n = size - pos;
		/* Empty pieces too: they must change nothing. */
		CHECK(sora_msg_cte_feed(&d, data + pos, 0, &chunks) == 0);
		CHECK(sora_msg_cte_feed(&d, data + pos, n, &chunks) == 0);
		pos += n;
	}
	CHECK(sora_msg_cte_finish(&d, &chunks) == 0);
	CHECK(one.len == bytes.len && one.len == chunks.len);
	CHECK(one.len == 0 || (memcmp(one.data, bytes.data, one.len) == 0 &&
			       memcmp(one.data, chunks.data, one.len) == 0));
	/* Decoding never grows: base64 shrinks, QP keeps or shrinks. */
	CHECK(one.len <= size);
	sora_buf_free(&one);
	sora_buf_free(&bytes);
	sora_buf_free(&chunks);
}

struct mem {
	const uint8_t *p;
	size_t len;
};

static ssize_t mem_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct mem *m = ctx;

	if (off >= m->len)
		return 0;
	if (len > m->len - off)
		len = m->len - off;
	memcpy(buf, m->p + off, len);
	return (ssize_t)len;
}

static void check_shift(const uint8_t *data, size_t size)
{
	static const char prefix[] = "Return-Path: <a@b>\r\nDelivered-To: x@y\r\n";
	struct sora_mime_message *once = NULL, *full = NULL;
	struct sora_buf a, b;
	const char *error;
	uint8_t *whole;

	whole = malloc(sizeof(prefix) - 1 + size + 1);
	if (whole == NULL)
		return;
	memcpy(whole, prefix, sizeof(prefix) - 1);
	if (size > 0)
		memcpy(whole + sizeof(prefix) - 1, data, size);
	if (sora_mime_parse(data, size, NULL, &once, &error) == 0 &&
	    sora_mime_parse(whole, sizeof(prefix) - 1 + size, NULL, &full, &error) == 0) {
		sora_msg_mime_shift(once, (int64_t)sizeof(prefix) - 1);
		sora_buf_init(&a, 0);
		sora_buf_init(&b, 0);
		CHECK(sora_mime_json_serialize(once, 0, &a, &error) == 0);
		CHECK(sora_mime_json_serialize(full, 0, &b, &error) == 0);
		CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
		sora_buf_free(&a);
		sora_buf_free(&b);
	}
	sora_mime_message_free(&once);
	sora_mime_message_free(&full);
	free(whole);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sora_str s = sora_str_make((const char *)data, size);
	struct sora_mime_message *msg = NULL;
	struct sora_msg_meta meta;
	struct sora_buf subj;
	struct mem m = { data, size };
	const char *error;
	int64_t t;
	int tz;

	if (sora_msg_date_parse(s, &t, &tz) == 0) {
		CHECK(tz > -100 * 60 && tz < 100 * 60);
		/* Years 0..9999 and zones up to 99:59 bound the result. */
		CHECK(t > -62200000000LL && t < 253500000000LL);
	}
	sora_buf_init(&subj, 0);
	CHECK(sora_msg_base_subject(s, &subj) == 0);
	CHECK(subj.len <= size);
	{
		/* A base subject is its own base subject (RFC 5256 2.1
		 * strips until nothing is left to strip). */
		struct sora_buf again;

		sora_buf_init(&again, 0);
		CHECK(sora_msg_base_subject(sora_buf_str(&subj), &again) == 0);
		CHECK(again.len == subj.len &&
		      (subj.len == 0 || memcmp(again.data, subj.data, subj.len) == 0));
		sora_buf_free(&again);
	}
	sora_buf_free(&subj);
	check_cte("base64", data, size);
	check_cte("quoted-printable", data, size);

	if (sora_mime_parse(data, size, NULL, &msg, &error) != 0)
		return 0;
	sora_msg_meta_init(&meta);
	CHECK(sora_msg_meta_headers(msg, &meta) == 0);
	CHECK(sora_msg_meta_text(msg, mem_read, &m, &meta) == 0);
	CHECK(meta.text_body.len <= SORA_MSG_TEXT_MAX);
	check_utf8(&meta.subject);
	check_utf8(&meta.message_id);
	check_utf8(&meta.references);
	check_utf8(&meta.from_text);
	check_utf8(&meta.sort_subject);
	check_utf8(&meta.sort_from);
	check_utf8(&meta.sort_display_from);
	check_utf8(&meta.sort_display_to);
	check_utf8(&meta.text_body);
	sora_msg_meta_free(&meta);
	/* The JSON that goes into jsonb columns must be text PostgreSQL takes:
	 * valid UTF-8 without NUL. */
	{
		struct sora_buf env, bs;

		sora_buf_init(&env, 0);
		sora_buf_init(&bs, 0);
		CHECK(sora_mime_json_envelope(msg, &env, &error) == 0);
		CHECK(sora_mime_json_serialize(msg, 0, &bs, &error) == 0);
		check_utf8(&env);
		check_utf8(&bs);
		sora_buf_free(&env);
		sora_buf_free(&bs);
	}
	check_shift(data, size);
	sora_mime_message_free(&msg);
	return 0;
}
