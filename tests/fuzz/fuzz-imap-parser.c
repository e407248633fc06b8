/* libFuzzer target for the IMAP command parser and value helpers in
 * common/proto/imap-*.h.
 *
 * Input: byte 0 picks parser limits and options, bytes 1-2 a split point,
 * the rest is a client byte stream. The stream is parsed
 *  - in one piece,
 *  - split at the chosen point,
 *  - one byte at a time (short inputs only, to keep runs fast),
 * and the three transcripts of events must be identical (split
 * invariance). Each command must respect the limits; every atom and string
 * also goes through the sequence-set parser, and modified UTF-7 that
 * decodes must encode back to the same bytes (and UTF-8 round-trips). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/buf.h"
#include "common/proto/imap-parser.h"
#include "common/proto/imap-types.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_value(struct sora_str s)
{
	struct sora_imap_seqset set;
	const char *err = NULL;
	struct sora_buf a, b;

	if (sora_imap_seqset_parse(s, true, 64, &set, &err) == 0) {
		CHECK(set.count <= 64);
		for (size_t i = 0; i < set.count; i++) {
			const struct sora_imap_seq_range *r = &set.ranges[i];

			CHECK(r->hi == SORA_IMAP_SEQ_STAR || (r->lo != SORA_IMAP_SEQ_STAR && r->lo <= r->hi));
		}
		sora_imap_seqset_free(&set);
	} else {
		CHECK(err != NULL && set.ranges == NULL);
	}
	sora_buf_init(&a, 1 << 16);
	sora_buf_init(&b, 1 << 16);
	if (sora_imap_mutf7_to_utf8(s, &a, &err) == 0) {
		CHECK(sora_imap_utf8_valid(sora_buf_str(&a)));
		CHECK(sora_imap_utf8_to_mutf7(sora_buf_str(&a), &b, &err) == 0);
		CHECK(b.len == s.len && (s.len == 0 || memcmp(b.data, s.p, s.len) == 0));
	}
	if (sora_imap_utf8_valid(s) && memchr(s.p, '\0', s.len) == NULL) {
		a.len = b.len = 0;
		if (sora_imap_utf8_to_mutf7(s, &a, &err) == 0) {
			CHECK(sora_imap_mutf7_to_utf8(sora_buf_str(&a), &b, &err) == 0);
			CHECK(b.len == s.len && (s.len == 0 || memcmp(b.data, s.p, s.len) == 0));
		}
	}
	sora_buf_free(&a);
	sora_buf_free(&b);
}

static size_t check_args(const struct sora_imap_arg *args, size_t count, unsigned depth,
			 const struct sora_imap_parser_params *pp)
{
	size_t total = count;

	CHECK(depth <= pp->max_depth);
	for (size_t i = 0; i < count; i++) {
		const struct sora_imap_arg *a = &args[i];

		switch (a->type) {
		case SORA_IMAP_ARG_ATOM:
		case SORA_IMAP_ARG_NIL:
			CHECK(a->str.len > 0 && a->str.len <= pp->max_atom);
			for (size_t k = 0; k < a->str.len; k++) {
				unsigned char c = (unsigned char)a->str.p[k];

				CHECK(c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '"');
			}
			check_value(a->str);
			break;
		case SORA_IMAP_ARG_STRING:
			CHECK(a->str.len <= pp->max_quoted);
			CHECK(memchr(a->str.p, '\0', a->str.len) == NULL);
			CHECK(memchr(a->str.p, '\r', a->str.len) == NULL);
			check_value(a->str);
			break;
		case SORA_IMAP_ARG_LITERAL:
			CHECK(a->literal_size <= pp->max_literal);
			if (a->literal_streamed)
				CHECK(a->str.len == 0 && a->literal_size > pp->max_inline_literal);
			else
				CHECK(a->str.len == a->literal_size);
			break;
		case SORA_IMAP_ARG_LIST:
			total += check_args(a->list, a->list_count, depth + 1, pp);
			break;
		default:
			abort();
		}
	}
	return total;
}

static void put(struct sora_buf *t, const void *p, size_t n)
{
	CHECK(sora_buf_append(t, p, n) == 0);
}

/* Parses in the given chunk size pattern; returns the transcript. */
static void run(const struct sora_imap_parser_params *pp, bool refuse, const char *in, size_t len,
		size_t first_chunk, size_t chunk, struct sora_buf *t)
{
	struct sora_imap_parser *p = sora_imap_parser_new(pp);
	struct sora_buf data;
	size_t pos = 0;
	bool dead = false;

	CHECK(p != NULL);
	sora_buf_init(&data, 0);
	while (pos < len && !dead) {
		size_t n = len - pos;
		size_t want = pos == 0 ? first_chunk : chunk;

		if (want > 0 && n > want)
			n = want;
		while (n > 0 && !dead) {
			size_t used = 0;
			enum sora_imap_parse_result r = sora_imap_parser_feed(p, in + pos, n, &used);
			const struct sora_imap_command *cmd;
			const struct sora_imap_parser_error *e;
			const struct sora_imap_literal_info *li;
			struct sora_str ch;

			CHECK(used <= n);
			pos += used;
			n -= used;
			if (r != SORA_IMAP_PARSE_LITERAL_DATA && data.len > 0) {
				put(t, "D", 1);
				put(t, data.data, data.len);
				data.len = 0;
			}
			switch (r) {
			case SORA_IMAP_PARSE_NEED_MORE:
				CHECK(n == 0);
				break;
			case SORA_IMAP_PARSE_COMMAND:
				cmd = sora_imap_parser_command(p);
				CHECK(cmd->tag.len > 0 && cmd->name.len > 0);
				CHECK(check_args(cmd->args, cmd->args_count, 0, pp) <= pp->max_args);
				put(t, "C", 1);
				CHECK(sora_imap_command_describe(cmd, t) == 0);
				break;
			case SORA_IMAP_PARSE_LITERAL:
				li = sora_imap_parser_literal(p);
				CHECK(li->size <= pp->max_literal);
				CHECK(li->sync || li->size <= pp->max_nonsync_literal);
				put(t, "L", 1);
				put(t, li, sizeof(*li));
				if (refuse && (li->size & 1))
					sora_imap_parser_refuse_literal(p);
				break;
			case SORA_IMAP_PARSE_LITERAL_DATA:
				ch = sora_imap_parser_literal_chunk(p);
				CHECK(ch.len == 0 || (ch.p >= in && ch.p + ch.len <= in + len));
				put(&data, ch.p, ch.len);
				break;
			case SORA_IMAP_PARSE_ERROR:
				e = sora_imap_parser_error(p);
				CHECK(e->text != NULL && e->code != SORA_IMAP_ERROR_NONE);
				put(t, "E", 1);
				put(t, e->text, strlen(e->text));
				put(t, e->tag.p, e->tag.len);
				put(t, &e->fatal, sizeof(e->fatal));
				put(t, &e->skipping, sizeof(e->skipping));
				if (e->fatal) {
					/* nothing more is consumed */
					CHECK(sora_imap_parser_feed(p, in + pos, len - pos, &used) ==
					      SORA_IMAP_PARSE_ERROR && used == 0);
					dead = true;
				}
				break;
			}
		}
	}
	if (data.len > 0) {
		put(t, "D", 1);
		put(t, data.data, data.len);
	}
	put(t, dead ? "X" : sora_imap_parser_idle(p) ? "I" : "W", 1);
	sora_buf_free(&data);
	sora_imap_parser_free(&p);
	CHECK(p == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sora_imap_parser_params pp = sora_imap_parser_default_params;
	struct sora_buf whole, split, bytes;
	const char *in;
	size_t len, at;
	uint8_t opt;
	bool refuse;

	if (size < 3)
		return 0;
	opt = data[0];
	at = ((size_t)data[1] << 8) | data[2];
	in = (const char *)data + 3;
	len = size - 3;
	if (len > 0)
		at %= len + 1;
	/* Small limits half of the time, so the fuzzer reaches them. */
	if (opt & 1) {
		pp.max_line = 64;
		pp.max_atom = 12;
		pp.max_quoted = 10;
		pp.max_literal = 40;
		pp.max_inline_literal = 8;
		pp.max_depth = 3;
		pp.max_args = 8;
		pp.max_command = 48;
	}
	if (opt & 2)
		pp.max_nonsync_literal = (opt & 4) ? 0 : 4;
	pp.binary = !(opt & 8);
	pp.utf8_quoted = (opt & 16) != 0;
	if (opt & 32)
		pp.max_inline_literal = 0;
	refuse = (opt & 64) != 0;

	sora_buf_init(&whole, 0);
	sora_buf_init(&split, 0);
	sora_buf_init(&bytes, 0);
	run(&pp, refuse, in, len, 0, 0, &whole);
	run(&pp, refuse, in, len, at, 0, &split);
	CHECK(whole.len == split.len && memcmp(whole.data, split.data, whole.len) == 0);
	if (len <= 512) {
		run(&pp, refuse, in, len, 1, 1, &bytes);
		CHECK(whole.len == bytes.len && memcmp(whole.data, bytes.data, whole.len) == 0);
	}
	sora_buf_free(&whole);
	sora_buf_free(&split);
	sora_buf_free(&bytes);
	return 0;
}
