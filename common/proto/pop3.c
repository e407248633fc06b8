/* POP3 command parser and multi-line encoder: see pop3.h. */
#include "common/proto/pop3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYWORD_MAX 40

struct sora_pop3_parser {
	struct sora_pop3_parser_params params;
	char *buf;                 /* the partial line: max_line + 1 bytes (a CR) */
	size_t len;
	bool skipping;             /* the line passed max_line: drop it to its LF */
	bool raw;
	struct sora_pop3_command cmd;
	enum sora_pop3_error_code err;
};

struct sora_pop3_parser *sora_pop3_parser_new(const struct sora_pop3_parser_params *params)
{
	struct sora_pop3_parser *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->params = *params;
	if (p->params.max_line == 0)
		p->params.max_line = SORA_POP3_MAX_LINE;
	p->buf = malloc(p->params.max_line + 1);
	if (p->buf == NULL) {
		free(p);
		return NULL;
	}
	return p;
}

void sora_pop3_parser_free(struct sora_pop3_parser **pp)
{
	struct sora_pop3_parser *p = *pp;

	if (p == NULL)
		return;
	free(p->buf);
	free(p);
	*pp = NULL;
}

bool sora_pop3_parser_idle(const struct sora_pop3_parser *p)
{
	return p->len == 0 && !p->skipping;
}

void sora_pop3_parser_set_raw(struct sora_pop3_parser *p, bool raw)
{
	p->raw = raw;
}

const struct sora_pop3_command *sora_pop3_parser_command(const struct sora_pop3_parser *p)
{
	return &p->cmd;
}

enum sora_pop3_error_code sora_pop3_parser_error(const struct sora_pop3_parser *p,
						 const char **text_r)
{
	switch (p->err) {
	case SORA_POP3_ERR_TOO_LONG:
		*text_r = "Command line too long.";
		break;
	case SORA_POP3_ERR_NUL:
		*text_r = "NUL byte in command.";
		break;
	case SORA_POP3_ERR_EMPTY:
		*text_r = "Empty command.";
		break;
	case SORA_POP3_ERR_KEYWORD:
		*text_r = "Invalid command.";
		break;
	default:
		*text_r = "Invalid command.";
		break;
	}
	return p->err;
}

static enum sora_pop3_parse_result fail(struct sora_pop3_parser *p, enum sora_pop3_error_code code)
{
	p->err = code;
	return SORA_POP3_PARSE_ERROR;
}

static enum sora_pop3_parse_result split(struct sora_pop3_parser *p, struct sora_str line)
{
	struct sora_pop3_command *c = &p->cmd;
	bool raw = p->raw;
	size_t i = 0;

	/* Raw mode lasts one line, whatever that line turns out to be. */
	p->raw = false;
	memset(c, 0, sizeof(*c));
	c->line = line;
	if (memchr(line.p, '\0', line.len) != NULL)
		return fail(p, SORA_POP3_ERR_NUL);
	if (raw)
		return SORA_POP3_PARSE_COMMAND;
	if (line.len == 0)
		return fail(p, SORA_POP3_ERR_EMPTY);
	while (i < line.len && line.p[i] != ' ') {
		unsigned char ch = (unsigned char)line.p[i];

		if (ch <= 0x20 || ch >= 0x7f)
			return fail(p, SORA_POP3_ERR_KEYWORD);
		i++;
	}
	if (i == 0 || i > KEYWORD_MAX)
		return fail(p, SORA_POP3_ERR_KEYWORD);
	c->name = sora_str_make(line.p, i);
	if (i < line.len)
		c->rest = sora_str_make(line.p + i + 1, line.len - i - 1);
	else
		c->rest = sora_str_make(line.p + i, 0);
	while (i < line.len) {
		size_t start;

		while (i < line.len && line.p[i] == ' ')
			i++;
		if (i == line.len)
			break;
		start = i;
		while (i < line.len && line.p[i] != ' ')
			i++;
		if (c->args_count < SORA_POP3_MAX_ARGS)
			c->args[c->args_count] = sora_str_make(line.p + start, i - start);
		c->args_count++;
	}
	return SORA_POP3_PARSE_COMMAND;
}

enum sora_pop3_parse_result sora_pop3_parser_feed(struct sora_pop3_parser *p, const char *data,
						  size_t len, size_t *used_r)
{
	const char *nl = len > 0 ? memchr(data, '\n', len) : NULL;
	size_t n, cap = p->params.max_line + 1;
	struct sora_str line;

	p->err = SORA_POP3_ERR_NONE;
	if (nl == NULL) {
		*used_r = len;
		if (!p->skipping) {
			if (p->len + len > cap) {
				p->skipping = true;
				p->len = 0;
			} else if (len > 0) {
				memcpy(p->buf + p->len, data, len);
				p->len += len;
			}
		}
		return SORA_POP3_PARSE_NEED_MORE;
	}
	n = (size_t)(nl - data);
	*used_r = n + 1;
	if (p->skipping) {
		p->skipping = false;
		p->raw = false;
		return fail(p, SORA_POP3_ERR_TOO_LONG);
	}
	if (p->len == 0) {
		line = sora_str_make(data, n);
	} else if (p->len + n > cap) {
		p->len = 0;
		p->raw = false;
		return fail(p, SORA_POP3_ERR_TOO_LONG);
	} else {
		memcpy(p->buf + p->len, data, n);
		line = sora_str_make(p->buf, p->len + n);
		p->len = 0;
	}
	if (line.len > 0 && line.p[line.len - 1] == '\r')
		line.len--;
	if (line.len > p->params.max_line) {
		p->raw = false;
		return fail(p, SORA_POP3_ERR_TOO_LONG);
	}
	return split(p, line);
}

int sora_pop3_parse_number(struct sora_str s, uint32_t *n_r)
{
	uint64_t v = 0;

	if (s.len == 0 || s.len > 10)
		return -1;
	for (size_t i = 0; i < s.len; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s.p[i] - '0');
	}
	if (v > UINT32_MAX)
		return -1;
	*n_r = (uint32_t)v;
	return 0;
}

static bool token_char(unsigned char ch)
{
	return ch > 0x20 && ch < 0x7f && ch != '"' && ch != '\\';
}

int sora_pop3_xclient_parse(const struct sora_pop3_command *cmd, struct sora_pop3_xclient *x,
			    const char **error_r)
{
	memset(x, 0, sizeof(*x));
	if (cmd->args_count == 0 || cmd->args_count > SORA_POP3_MAX_ARGS) {
		*error_r = "XCLIENT takes 1 to 8 attributes.";
		return -1;
	}
	for (size_t i = 0; i < cmd->args_count; i++) {
		struct sora_str a = cmd->args[i];
		const char *eq = memchr(a.p, '=', a.len);
		struct sora_str k, v;

		if (eq == NULL || eq == a.p) {
			*error_r = "XCLIENT attributes are NAME=VALUE.";
			return -1;
		}
		k = sora_str_make(a.p, (size_t)(eq - a.p));
		v = sora_str_make(eq + 1, a.len - k.len - 1);
		if (sora_str_ieq_c(k, "ADDR")) {
			char ip[64];

			if (v.len == 0 || v.len >= sizeof(ip)) {
				*error_r = "Invalid XCLIENT ADDR.";
				return -1;
			}
			memcpy(ip, v.p, v.len);
			ip[v.len] = '\0';
			if (sora_ip_parse(ip, &x->addr) < 0) {
				*error_r = "Invalid XCLIENT ADDR.";
				return -1;
			}
			x->has_addr = true;
		} else if (sora_str_ieq_c(k, "PORT")) {
			uint32_t port;

			if (sora_pop3_parse_number(v, &port) < 0 || port == 0 || port > 65535) {
				*error_r = "Invalid XCLIENT PORT.";
				return -1;
			}
			x->port = (uint16_t)port;
			x->has_port = true;
		} else if (sora_str_ieq_c(k, "SESSION")) {
			if (v.len == 0 || v.len >= sizeof(x->session)) {
				*error_r = "Invalid XCLIENT SESSION.";
				return -1;
			}
			for (size_t j = 0; j < v.len; j++) {
				if (!token_char((unsigned char)v.p[j])) {
					*error_r = "Invalid XCLIENT SESSION.";
					return -1;
				}
			}
			memcpy(x->session, v.p, v.len);
			x->session[v.len] = '\0';
		}
	}
	return 0;
}

/* ---- encoder ---- */

void sora_pop3_dot_init(struct sora_pop3_dot *d, bool top, uint64_t lines)
{
	memset(d, 0, sizeof(*d));
	d->line_start = true;
	d->top = top;
	d->lines_left = lines;
}

bool sora_pop3_dot_done(const struct sora_pop3_dot *d)
{
	return d->done;
}

/* A line ended (its LF was written): TOP counts it. */
static void line_end(struct sora_pop3_dot *d, bool empty)
{
	if (!d->top)
		return;
	if (!d->in_body) {
		if (empty) {
			d->in_body = true;
			if (d->lines_left == 0)
				d->done = true;
		}
		return;
	}
	if (d->lines_left > 0 && --d->lines_left == 0)
		d->done = true;
}

size_t sora_pop3_dot_encode(struct sora_pop3_dot *d, const char *in, size_t len, char *out,
			    size_t *used_r)
{
	const char *p = in, *end = in + len;
	size_t n = 0;

	while (p < end && !d->done) {
		const char *nl;
		size_t run;
		bool empty;

		if (d->line_start && *p == '.') {
			/* Byte-stuffing: not part of the message's octets. */
			if (out != NULL)
				out[n] = '.';
			n++;
		}
		nl = memchr(p, '\n', (size_t)(end - p));
		run = (size_t)((nl != NULL ? nl : end) - p);
		if (run > 0) {
			if (out != NULL)
				memcpy(out + n, p, run);
			n += run;
			d->octets += run;
			d->line_bytes += run;
			d->prev_cr = p[run - 1] == '\r';
			d->line_start = false;
			p += run;
		}
		if (nl == NULL)
			break;
		empty = d->line_bytes == 0 || (d->line_bytes == 1 && d->prev_cr);
		if (!d->prev_cr) {
			if (out != NULL)
				out[n] = '\r';
			n++;
			d->octets++;
		}
		if (out != NULL)
			out[n] = '\n';
		n++;
		d->octets++;
		p++;
		d->line_start = true;
		d->line_bytes = 0;
		d->prev_cr = false;
		line_end(d, empty);
	}
	*used_r = (size_t)(p - in);
	return n;
}

size_t sora_pop3_dot_finish(struct sora_pop3_dot *d, char *out, bool terminator)
{
	size_t n = 0;

	if (!d->line_start) {
		if (out != NULL)
			memcpy(out, "\r\n", 2);
		n = 2;
		d->octets += 2;
		d->line_start = true;
		d->line_bytes = 0;
		d->prev_cr = false;
	}
	if (terminator) {
		if (out != NULL)
			memcpy(out + n, ".\r\n", 3);
		n += 3;
	}
	return n;
}

void sora_pop3_size_init(struct sora_pop3_dot *d)
{
	sora_pop3_dot_init(d, false, 0);
}

void sora_pop3_size_feed(struct sora_pop3_dot *d, const void *data, size_t len)
{
	size_t used;

	sora_pop3_dot_encode(d, data, len, NULL, &used);
}

uint64_t sora_pop3_size_final(struct sora_pop3_dot *d)
{
	sora_pop3_dot_finish(d, NULL, false);
	return d->octets;
}
