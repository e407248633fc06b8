/* libFuzzer target: the POP3 command parser, its argument helpers and the
 * multi-line encoder (common/proto/pop3.h). The input is fed in pieces
 * whose sizes come from the first byte; every command is also run through
 * the number and XCLIENT parsers. The whole input is then encoded as a
 * message (RETR) and as TOP, cut at the same place: the encoder must never
 * write more than twice its input, and its octet count must equal the size
 * LIST would report. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto/pop3.h"

static void parse(const char *p, size_t size, size_t step)
{
	struct sora_pop3_parser_params params = { .max_line = 64 };
	struct sora_pop3_parser *parser = sora_pop3_parser_new(&params);
	size_t off = 0;

	if (parser == NULL)
		return;
	while (off < size) {
		size_t n = size - off < step ? size - off : step, used = 0;
		enum sora_pop3_parse_result r = sora_pop3_parser_feed(parser, p + off, n, &used);

		if (used == 0 || used > n)
			abort();
		off += used;
		if (r == SORA_POP3_PARSE_COMMAND) {
			const struct sora_pop3_command *c = sora_pop3_parser_command(parser);
			struct sora_pop3_xclient x;
			const char *err;
			uint32_t num;

			if (c->line.len > params.max_line || memchr(c->line.p, '\0', c->line.len))
				abort();
			if (c->args_count > 0)
				sora_pop3_parse_number(c->args[0], &num);
			sora_pop3_xclient_parse(c, &x, &err);
			if ((off & 7) == 0)
				sora_pop3_parser_set_raw(parser, true);
		} else if (r == SORA_POP3_PARSE_ERROR) {
			const char *text;

			if (sora_pop3_parser_error(parser, &text) == SORA_POP3_ERR_NONE)
				abort();
		}
	}
	sora_pop3_parser_free(&parser);
}

static void encode(const char *p, size_t size, size_t cut, bool top, uint64_t lines)
{
	char *out = malloc(2 * size + 8);
	struct sora_pop3_dot d, sz;
	size_t n = 0, used;

	if (out == NULL)
		return;
	sora_pop3_dot_init(&d, top, lines);
	n += sora_pop3_dot_encode(&d, p, cut, out, &used);
	if (used > cut)
		abort();
	if (!sora_pop3_dot_done(&d))
		n += sora_pop3_dot_encode(&d, p + cut, size - cut, out + n, &used);
	if (n > 2 * size)
		abort();
	n += sora_pop3_dot_finish(&d, out + n, true);
	if (n < 3 || memcmp(out + n - 3, ".\r\n", 3) != 0)
		abort();
	if (!top) {
		sora_pop3_size_init(&sz);
		sora_pop3_size_feed(&sz, p, size);
		if (sora_pop3_size_final(&sz) != d.octets)
			abort();
	}
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	size_t step;

	if (size == 0)
		return 0;
	step = (size_t)data[0] % 17 + 1;
	parse(p + 1, size - 1, step);
	parse(p + 1, size - 1, size);
	encode(p + 1, size - 1, (size - 1) / 2, false, 0);
	encode(p + 1, size - 1, step < size ? step : 0, true, data[0] % 4);
	return 0;
}
