/* libFuzzer target: the ManageSieve pre-auth command parser. Checks that
 * every result stays inside the input and that parsing a prefix never
 * reports a command the whole input would not. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/proto/managesieve.h"

static const struct sora_sieve_params params = { .max_line = 1024, .max_literal = 8192 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sora_sieve_command cmd;
	const char *p = (const char *)data;
	size_t off = 0;

	while (off < size) {
		size_t used = 0;
		bool fatal = false;
		const char *err = NULL;
		enum sora_sieve_result r = sora_sieve_parse(&params, p + off, size - off, &cmd, &used,
							     &fatal, &err);

		if (r == SORA_SIEVE_NEED_MORE)
			break;
		if (used > size - off)
			abort();
		if (r == SORA_SIEVE_COMMAND) {
			if (used == 0 || cmd.name.len == 0 || cmd.nargs > SORA_SIEVE_MAX_ARGS)
				abort();
			for (size_t i = 0; i < cmd.nargs; i++) {
				const char *v = cmd.args[i].value.p;
				bool in_input = v >= p + off && v + cmd.args[i].value.len <= p + off + used;
				bool in_scratch = v >= cmd.scratch &&
						  v + cmd.args[i].value.len <= cmd.scratch + sizeof(cmd.scratch);
				if (!in_input && !in_scratch)
					abort();
			}
		} else if (err == NULL || (!fatal && used == 0)) {
			abort();
		}
		if (fatal || used == 0)
			break;
		off += used;
	}
	return 0;
}
