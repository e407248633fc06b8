/* libFuzzer target for the MIME parser (common/proto/mime).
 *
 * Input: one control byte, then the message. The control byte seeds the
 * chunk sizes the message is fed in; whatever the split, the parse must
 * equal the one-piece parse (compared through the JSON form with headers).
 * With bit 0x40 set, tiny limits are used so that the limit paths (depth,
 * part count, header and memory budgets) are exercised as well.
 * Then everything built on a parse is exercised and checked: the IMAP
 * formatters, the tree's offsets (every part inside its parent, children in
 * order), section lookups, the JSON round trip, header decoding. With the
 * control byte's top bit set the raw input also goes to the other parsers
 * that see untrusted bytes: the JSON reader and the address parser.
 *
 * Any violated invariant aborts, which libFuzzer reports as a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/buf.h"
#include "common/proto/mime/mime.h"
#include "common/proto/mime/mime-decode.h"
#include "common/proto/mime/mime-imap.h"
#include "common/proto/mime/mime-json.h"

#define CHECK(cond) do { \
		if (!(cond)) { \
			fprintf(stderr, "fuzz-mime: check failed: %s (line %d)\n", #cond, __LINE__); \
			abort(); \
		} \
	} while (0)

static struct sora_mime_params params;

static struct sora_mime_message *parse(const uint8_t *data, size_t size, uint32_t seed)
{
	struct sora_mime_parser *p = sora_mime_parser_new(&params);
	struct sora_mime_message *msg = NULL;
	const char *error = NULL;
	size_t pos = 0;

	CHECK(p != NULL);
	if (seed == 0) {
		CHECK(sora_mime_parser_feed(p, data, size) == 0);
	} else {
		while (pos < size) {
			size_t n;

			/* xorshift32: small chunks mostly, a big one now and then */
			seed ^= seed << 13;
			seed ^= seed >> 17;
			seed ^= seed << 5;
			n = (seed & 7) == 0 ? (seed >> 8) % 4096 + 1 : (seed >> 8) % 64 + 1;
			if (n > size - pos)
				n = size - pos;
			CHECK(sora_mime_parser_feed(p, data + pos, n) == 0);
			pos += n;
		}
	}
	CHECK(sora_mime_parser_finish(&p, &msg, &error) == 0);
	CHECK(p == NULL && msg != NULL);
	return msg;
}

static char *serialize(const struct sora_mime_message *msg, size_t *len_r)
{
	struct sora_buf b;
	const char *error = NULL;

	sora_buf_init(&b, 0);
	CHECK(sora_mime_json_serialize(msg, SORA_MIME_JSON_HEADERS, &b, &error) == 0);
	*len_r = b.len;
	return b.data;
}

/* Walks the tree and checks its offsets; returns the number of parts. */
static unsigned int check_part(const struct sora_mime_message *msg, const struct sora_mime_part *part,
			       uint64_t start, uint64_t end, struct sora_buf *scratch)
{
	uint64_t body = sora_mime_part_body_offset(part), next = body;
	unsigned int count = 1, children = 0;

	CHECK(part->header_offset >= start);
	CHECK(body + part->body_size <= end);
	CHECK(part->header_vsize >= part->header_size && part->body_vsize >= part->body_size);
	CHECK(part->body_lines <= part->body_size);
	CHECK((part->flags & (SORA_MIME_PART_MULTIPART | SORA_MIME_PART_MESSAGE)) !=
	      (SORA_MIME_PART_MULTIPART | SORA_MIME_PART_MESSAGE));
	if ((part->flags & (SORA_MIME_PART_MULTIPART | SORA_MIME_PART_MESSAGE)) == 0)
		CHECK(part->children == NULL);
	for (const struct sora_mime_part *c = part->children; c != NULL; c = c->next) {
		CHECK(c->parent == part && c->depth == part->depth + 1);
		count += check_part(msg, c, next, body + part->body_size, scratch);
		next = sora_mime_part_body_offset(c) + c->body_size;
		children++;
	}
	CHECK(children == part->child_count);
	if ((part->flags & SORA_MIME_PART_MESSAGE) != 0)
		CHECK(children <= 1);
	for (unsigned int i = 0; i < part->header_count; i++) {
		scratch->len = 0;
		CHECK(sora_mime_decode_header(part->headers[i].value, SORA_MIME_DECODE_VALID_UTF8,
					      scratch) == 0);
		CHECK(sora_mime_utf8_valid(scratch->data, scratch->len));
	}
	scratch->len = 0;
	CHECK(sora_mime_part_filename(part, SORA_MIME_DECODE_VALID_UTF8, scratch) >= 0);
	CHECK(sora_mime_utf8_valid(scratch->data, scratch->len));
	(void)msg;
	return count;
}

static void check_sections(const struct sora_mime_message *msg)
{
	static const uint32_t paths[][3] = {
		{ 1, 0, 0 }, { 2, 0, 0 }, { 1, 1, 0 }, { 1, 2, 0 }, { 2, 1, 0 }, { 1, 1, 1 },
	};
	static const unsigned int lens[] = { 1, 1, 2, 2, 2, 3 };

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (int s = SORA_MIME_SECTION_BODY; s <= SORA_MIME_SECTION_TEXT; s++) {
			uint64_t off, size;

			if (sora_mime_section_range(msg, paths[i], lens[i], (enum sora_mime_section)s,
						    &off, &size) == 0)
				CHECK(off + size <= msg->size);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sora_mime_message *whole, *chunked, *back = NULL;
	struct sora_buf out;
	char *j1, *j2, *j3;
	size_t l1, l2, l3;
	const char *error = NULL;
	uint8_t control;

	if (size < 1)
		return 0;
	control = data[0];
	data++;
	size--;
	sora_mime_params_init(&params);
	if ((control & 0x40) != 0) {
		params.max_depth = 3;
		params.max_parts = 20;
		params.max_headers = 5;
		params.max_header_bytes = 100;
		params.max_field_len = 200;
		params.max_boundary_len = 10;
		params.max_kept_bytes = 3000;
		params.keep_all_headers = true;
	}

	whole = parse(data, size, 0);
	chunked = parse(data, size, 0x9e3779b9u ^ ((uint32_t)control * 2654435761u) ^ 1u);
	j1 = serialize(whole, &l1);
	j2 = serialize(chunked, &l2);
	CHECK(l1 == l2 && memcmp(j1, j2, l1) == 0);

	CHECK(whole->size == size);
	sora_buf_init(&out, 0);
	CHECK(check_part(whole, whole->root, 0, size, &out) == whole->part_count);
	CHECK(whole->root->header_size + whole->root->body_size == size);
	check_sections(whole);

	out.len = 0;
	CHECK(sora_mime_imap_bodystructure(whole, true, 0, &out) == 0);
	CHECK(sora_mime_imap_bodystructure(whole, false, SORA_MIME_IMAP_VSIZE, &out) == 0);
	CHECK(sora_mime_imap_envelope(whole->root->envelope, &out) == 0);

	CHECK(sora_mime_json_deserialize(j1, l1, &back, &error) == 0);
	j3 = serialize(back, &l3);
	CHECK(l1 == l3 && memcmp(j1, j3, l1) == 0);
	free(j3);
	sora_mime_message_free(&back);

	if ((control & 0x80) != 0) {
		struct sora_mime_arena *arena = sora_mime_arena_new();
		struct sora_mime_address *list = NULL;

		if (sora_mime_json_deserialize(data, size, &back, &error) == 0) {
			out.len = 0;
			CHECK(sora_mime_imap_bodystructure(back, true, 0, &out) == 0);
			sora_mime_message_free(&back);
		}
		CHECK(arena != NULL);
		CHECK(sora_mime_address_parse(arena, sora_str_make((const char *)data, size), &list) == 0);
		sora_mime_arena_free(&arena);
	}

	sora_buf_free(&out);
	free(j1);
	free(j2);
	sora_mime_message_free(&whole);
	sora_mime_message_free(&chunked);
	return 0;
}
