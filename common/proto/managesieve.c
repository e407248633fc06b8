/* ManageSieve command parser: see managesieve.h. */
#include "common/proto/managesieve.h"

#include <string.h>

static bool atom_char(unsigned char ch)
{
	/* RFC 5804 atoms: no specials, controls, space or 8-bit. */
	return ch > 0x20 && ch < 0x7f && ch != '(' && ch != ')' && ch != '{' && ch != '"' &&
	       ch != '\\' && ch != '%' && ch != '*' && ch != ']';
}

/* End of the current line from off (index of '\n'), or -1. */
static long line_end(const char *in, size_t len, size_t off)
{
	const char *nl = memchr(in + off, '\n', len - off);

	return nl != NULL ? (long)(nl - in) : -1;
}

enum sora_sieve_result sora_sieve_parse(const struct sora_sieve_params *params,
					 const char *in, size_t len,
					 struct sora_sieve_command *cmd, size_t *consumed_r,
					 bool *fatal_r, const char **error_r)
{
	size_t off = 0, line_bytes = 0;
	long nl;

	*consumed_r = 0;
	*fatal_r = false;
	cmd->nargs = 0;
	cmd->scratch_used = 0;
	/* The command name. */
	while (off < len && atom_char((unsigned char)in[off]))
		off++;
	if (off == len) {
		if (len > params->max_line)
			goto too_long;
		return SORA_SIEVE_NEED_MORE;
	}
	cmd->name = sora_str_make(in, off);
	if (off == 0) {
		*error_r = "Expected a command name";
		goto skip_line;
	}
	for (;;) {
		char ch;

		if (off >= len)
			goto need_more;
		line_bytes = off;
		if (line_bytes > params->max_line)
			goto too_long;
		ch = in[off];
		if (ch == '\r') {
			if (off + 1 >= len)
				goto need_more;
			if (in[off + 1] != '\n') {
				*error_r = "Bare CR in command";
				goto skip_line;
			}
			*consumed_r = off + 2;
			return SORA_SIEVE_COMMAND;
		}
		if (ch == '\n') {
			/* Bare LF accepted as a line end, as Dovecot does. */
			*consumed_r = off + 1;
			return SORA_SIEVE_COMMAND;
		}
		if (ch != ' ') {
			*error_r = "Expected a space between arguments";
			goto skip_line;
		}
		off++;
		if (off >= len)
			goto need_more;
		if (cmd->nargs == SORA_SIEVE_MAX_ARGS) {
			*error_r = "Too many arguments";
			goto skip_line;
		}
		ch = in[off];
		if (ch == '"') {
			size_t start = ++off, out = cmd->scratch_used;
			bool escaped = false;

			for (;;) {
				if (off >= len)
					goto need_more;
				ch = in[off];
				if (ch == '\r' || ch == '\n' || ch == '\0') {
					*error_r = "Unterminated or invalid quoted string";
					goto skip_line;
				}
				if (ch == '\\') {
					if (off + 1 >= len)
						goto need_more;
					if (in[off + 1] != '"' && in[off + 1] != '\\') {
						*error_r = "Invalid escape in quoted string";
						goto skip_line;
					}
					escaped = true;
					off += 2;
					continue;
				}
				if (ch == '"')
					break;
				off++;
			}
			if (escaped) {
				size_t n = 0;

				if (off - start > sizeof(cmd->scratch) - out) {
					*error_r = "Quoted string too long";
					goto skip_line;
				}
				for (size_t i = start; i < off; i++) {
					if (in[i] == '\\')
						i++;
					cmd->scratch[out + n++] = in[i];
				}
				cmd->args[cmd->nargs].value = sora_str_make(cmd->scratch + out, n);
				cmd->scratch_used = out + n;
			} else {
				cmd->args[cmd->nargs].value = sora_str_make(in + start, off - start);
			}
			cmd->args[cmd->nargs].type = SORA_SIEVE_ARG_STRING;
			cmd->nargs++;
			off++;
		} else if (ch == '{') {
			size_t p = off + 1;
			uint64_t n = 0;
			size_t digits = 0;

			while (p < len && in[p] >= '0' && in[p] <= '9' && digits < 19) {
				n = n * 10 + (uint64_t)(in[p] - '0');
				p++;
				digits++;
			}
			if (p >= len)
				goto need_more;
			if (digits == 0 || (in[p] >= '0' && in[p] <= '9')) {
				*error_r = "Invalid literal size";
				goto skip_line;
			}
			if (in[p] == '+') {
				p++;
				if (p >= len)
					goto need_more;
			}
			if (in[p] != '}') {
				*error_r = "Invalid literal";
				goto skip_line;
			}
			p++;
			if (p >= len)
				goto need_more;
			if (in[p] == '\r') {
				p++;
				if (p >= len)
					goto need_more;
			}
			if (in[p] != '\n') {
				*error_r = "Literal size must end the line";
				goto skip_line;
			}
			p++;
			if (n > params->max_literal) {
				/* Its bytes would follow: do not read on. */
				*error_r = "Literal too big";
				*fatal_r = true;
				return SORA_SIEVE_ERROR;
			}
			if (len - p < n)
				goto need_more;
			cmd->args[cmd->nargs].type = SORA_SIEVE_ARG_STRING;
			cmd->args[cmd->nargs].value = sora_str_make(in + p, (size_t)n);
			cmd->nargs++;
			off = p + (size_t)n;
		} else if (ch >= '0' && ch <= '9') {
			size_t start = off;
			uint64_t v;

			while (off < len && in[off] >= '0' && in[off] <= '9')
				off++;
			if (off >= len)
				goto need_more;
			if (sora_str_to_u64(sora_str_make(in + start, off - start), UINT64_MAX >> 1, &v) < 0) {
				*error_r = "Invalid number";
				goto skip_line;
			}
			cmd->args[cmd->nargs].type = SORA_SIEVE_ARG_NUMBER;
			cmd->args[cmd->nargs].number = v;
			cmd->args[cmd->nargs].value = sora_str_make(in + start, off - start);
			cmd->nargs++;
		} else if (atom_char((unsigned char)ch)) {
			size_t start = off;

			while (off < len && atom_char((unsigned char)in[off]))
				off++;
			if (off >= len)
				goto need_more;
			cmd->args[cmd->nargs].type = SORA_SIEVE_ARG_ATOM;
			cmd->args[cmd->nargs].value = sora_str_make(in + start, off - start);
			cmd->nargs++;
		} else {
			*error_r = "Invalid argument";
			goto skip_line;
		}
	}
need_more:
	if (off > params->max_line + params->max_literal + 64)
		goto too_long;
	return SORA_SIEVE_NEED_MORE;
too_long:
	*error_r = "Command line too long";
	*fatal_r = true;
	return SORA_SIEVE_ERROR;
skip_line:
	nl = line_end(in, len, off < len ? off : len);
	if (nl < 0) {
		if (len > params->max_line)
			goto too_long;
		return SORA_SIEVE_NEED_MORE;
	}
	*consumed_r = (size_t)nl + 1;
	return SORA_SIEVE_ERROR;
}
