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

/* RFC 9051 tag: 1*<any ASTRING-CHAR except "+">; ASTRING-CHAR = ATOM-CHAR
 * / "]"; ATOM-CHAR excludes "(" ")" "{" SP CTL "%" "*" DQUOTE "\". */
static int is_tag_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return 0;
	return strchr("(){%*\"\\+", c) == NULL;
}

static int is_atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return 0;
	return strchr("(){%*\"\\]", c) == NULL;
}

int sora_imap_cmdline_parse(struct sora_str line, struct sora_imap_cmdline *out,
			    const char **error_r)
{
	size_t i = 0, start;

	memset(out, 0, sizeof(*out));
	while (i < line.len && is_tag_char((unsigned char)line.p[i]))
		i++;
	if (i == 0 || (i < line.len && line.p[i] != ' ')) {
		*error_r = "Invalid tag";
		return -1;
	}
	out->tag = sora_str_make(line.p, i);
	if (i == line.len || i + 1 == line.len) {
		*error_r = "Missing command";
		return -1;
	}
	start = ++i;
	while (i < line.len && is_atom_char((unsigned char)line.p[i]))
		i++;
	if (i == start || (i < line.len && line.p[i] != ' ')) {
		*error_r = "Invalid command name";
		return -1;
	}
	out->command = sora_str_make(line.p + start, i - start);
	if (i < line.len)
		i++;
	out->args = sora_str_make(line.p + i, line.len - i);
	return 0;
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
