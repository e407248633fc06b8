/* libFuzzer target: POP3 pre-auth command line splitting (IMAP has its
 * own parser and target, fuzz-imap-parser.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/proto/cmdline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	size_t off = 0;

	while (off < size) {
		size_t consumed = 0;
		long n = sora_line_find(p + off, size - off, &consumed);
		struct sora_pop3_cmdline pc;
		const char *err;
		struct sora_str line;

		if (n < 0)
			line = sora_str_make(p + off, size - off);
		else
			line = sora_str_make(p + off, (size_t)n);
		if (sora_pop3_cmdline_parse(line, &pc, &err) == 0 && pc.command.len == 0)
			abort();
		if (n < 0)
			break;
		off += consumed;
	}
	return 0;
}
