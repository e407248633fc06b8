/* libFuzzer target for the FETCH attribute parser (common/proto/imap-fetch.h).
 *
 * Input: byte 0 picks options (bit 0: UID FETCH, bit 1: stream literals
 * over 4 bytes so field names can be streamed, bit 2: small parser
 * limits), the rest is a client byte stream. Every command the command
 * parser completes has its arguments after the first (the sequence set)
 * handed to sora_imap_fetch_parse(), and a successful spec must respect
 * the header's promises: limits, labels fit for a reply line, partial
 * lengths above zero, MIME only with a path, VANISHED only with
 * CHANGEDSINCE under UID FETCH. ASan checks that error paths free. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto/imap-fetch.h"
#include "common/proto/imap-parser.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_spec(const struct sora_imap_fetch_spec *spec, bool uid)
{
	CHECK(spec->section_count <= SORA_IMAP_FETCH_SECTIONS_MAX);
	CHECK((spec->section_count == 0) == (spec->sections == NULL));
	CHECK(!uid || (spec->items & SORA_FETCH_UID));
	CHECK(!(spec->items & SORA_FETCH_SAVEDATE));
	CHECK(!spec->vanished || (uid && spec->changedsince_set));
	CHECK(!spec->changedsince_set || (spec->items & SORA_FETCH_MODSEQ));
	CHECK(spec->needs_body == (spec->section_count > 0));
	for (size_t i = 0; i < spec->section_count; i++) {
		const struct sora_imap_fetch_section *s = &spec->sections[i];
		bool fields = s->part == SORA_FETCH_PART_HEADER_FIELDS ||
			      s->part == SORA_FETCH_PART_HEADER_FIELDS_NOT;

		CHECK(s->name != NULL && s->name[0] != '\0');
		for (const char *c = s->name; *c != '\0'; c++)
			CHECK(*c >= 0x20 && *c < 0x7f);
		CHECK(s->path_len <= SORA_IMAP_SECTION_DEPTH_MAX);
		for (unsigned k = 0; k < s->path_len; k++)
			CHECK(s->path[k] != 0);
		CHECK(s->part != SORA_FETCH_PART_MIME || s->path_len > 0);
		CHECK(!s->partial || s->partial_length > 0);
		CHECK(!s->partial || s->kind != SORA_FETCH_KIND_BINARY_SIZE);
		CHECK(fields == (s->field_count > 0));
		CHECK(s->field_count <= SORA_IMAP_FETCH_FIELDS_MAX);
		for (size_t k = 0; k < s->field_count; k++)
			CHECK(s->fields[k] != NULL && s->fields[k][0] != '\0');
		if (s->kind == SORA_FETCH_KIND_BINARY || s->kind == SORA_FETCH_KIND_BINARY_SIZE)
			CHECK(s->part == SORA_FETCH_PART_ALL);
		if (!s->peek)
			CHECK(spec->sets_seen);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sora_imap_parser_params pp = sora_imap_parser_default_params;
	struct sora_imap_parser *p;
	const char *in;
	size_t len, pos = 0;
	unsigned stalls = 0;
	bool uid;

	if (size < 1)
		return 0;
	uid = (data[0] & 1) != 0;
	if (data[0] & 2)
		pp.max_inline_literal = 4;
	if (data[0] & 4) {
		pp.max_depth = 3;
		pp.max_args = 16;
	}
	in = (const char *)data + 1;
	len = size - 1;
	p = sora_imap_parser_new(&pp);
	CHECK(p != NULL);
	while (pos < len) {
		size_t used = 0;
		enum sora_imap_parse_result r = sora_imap_parser_feed(p, in + pos, len - pos, &used);

		pos += used;
		/* An event may consume nothing; the parser must move on the
		 * next call, never stall. */
		stalls = used == 0 ? stalls + 1 : 0;
		CHECK(stalls < 4);
		if (r == SORA_IMAP_PARSE_COMMAND) {
			const struct sora_imap_command *cmd = sora_imap_parser_command(p);
			struct sora_imap_fetch_spec spec;
			const char *error = NULL;

			if (cmd->args_count == 0)
				continue;
			if (sora_imap_fetch_parse(cmd->args + 1, cmd->args_count - 1, uid, &spec,
						  &error) == 0) {
				CHECK(error == NULL);
				check_spec(&spec, uid);
				sora_imap_fetch_spec_free(&spec);
				CHECK(spec.sections == NULL && spec.section_count == 0);
			} else {
				CHECK(error != NULL && spec.sections == NULL && spec.section_count == 0);
			}
		} else if (r == SORA_IMAP_PARSE_ERROR) {
			if (sora_imap_parser_error(p)->fatal)
				break;
		}
	}
	sora_imap_parser_free(&p);
	return 0;
}
