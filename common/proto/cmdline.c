#include "common/proto/cmdline.h"

#include <string.h>

long sora_line_find(const char *data, size_t len, size_t *consumed_r)
{
	const char *nl = memchr(data, '\n', len);
	size_t n;

	if (nl == NULL)
		return -1;
	n = (size_t)(nl - data);
	*consumed_r = n + 1;
	if (n > 0 && data[n - 1] == '\r')
		n--;
	return (long)n;
}

int sora_pop3_cmdline_parse(struct sora_str line, struct sora_pop3_cmdline *out,
			    const char **error_r)
{
	size_t i = 0;

	memset(out, 0, sizeof(*out));
	while (i < line.len && line.p[i] != ' ') {
		unsigned char c = (unsigned char)line.p[i];
		if (c <= 0x20 || c >= 0x7f) {
			*error_r = "Invalid command";
			return -1;
		}
		i++;
	}
	if (i == 0 || i > 40) {
		*error_r = "Invalid command";
		return -1;
	}
	out->command = sora_str_make(line.p, i);
	if (i < line.len)
		i++;
	out->args = sora_str_make(line.p + i, line.len - i);
	return 0;
}
