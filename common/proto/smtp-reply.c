/* SMTP reply formatting and parsing: see smtp-reply.h. */
#include "common/proto/smtp-reply.h"

#include <string.h>

/* Longest reply line without its CRLF (RFC 5321 4.5.3.1.5). */
#define REPLY_TEXT_MAX 510

static inline bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

bool sora_smtp_enhanced_valid(struct sora_str s)
{
	size_t i = 0;

	if (s.len < 5 || (s.p[0] != '2' && s.p[0] != '4' && s.p[0] != '5') || s.p[1] != '.')
		return false;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t digits = 0;

		while (i < s.len && is_digit((unsigned char)s.p[i])) {
			digits++;
			i++;
		}
		if (digits == 0 || digits > 3)
			return false;
		if (part == 0) {
			if (i >= s.len || s.p[i] != '.')
				return false;
			i++;
		}
	}
	return i == s.len;
}

static bool code_valid(unsigned code)
{
	/* RFC 5321 4.2: first digit 2-5, second digit 0-5. */
	return code >= 200 && code <= 599 && (code / 10) % 10 <= 5;
}

static bool enhanced_matches(unsigned code, const char *enhanced)
{
	if (enhanced == NULL)
		return true;
	if (!sora_smtp_enhanced_valid(sora_str_c(enhanced)))
		return false;
	return (unsigned)(enhanced[0] - '0') == code / 100;
}

/* Replaces control characters in out->data[from..len) and cuts the line to
 * REPLY_TEXT_MAX octets counted from line_start. */
static void sanitize_line(struct sora_buf *out, size_t line_start, size_t from)
{
	for (size_t i = from; i < out->len; i++) {
		unsigned char c = (unsigned char)out->data[i];
		if (c < 32 || c == 127)
			out->data[i] = '?';
	}
	if (out->len - line_start > REPLY_TEXT_MAX)
		out->len = line_start + REPLY_TEXT_MAX;
}

int sora_smtp_reply_vappend(struct sora_buf *out, unsigned code, const char *enhanced,
			    bool more, const char *fmt, va_list ap)
{
	size_t start = out->len, text_start;
	bool has_text;
	int ret = -1;

	if (!code_valid(code) || !enhanced_matches(code, enhanced))
		return -1;
	has_text = fmt != NULL && fmt[0] != '\0';
	if (sora_buf_printf(out, "%03u", code) < 0)
		goto out;
	if (enhanced != NULL || has_text) {
		if (sora_buf_append(out, more ? "-" : " ", 1) < 0)
			goto out;
	} else if (more && sora_buf_append(out, "-", 1) < 0) {
		goto out;
	}
	if (enhanced != NULL) {
		if (sora_buf_append_str(out, enhanced) < 0 ||
		    (has_text && sora_buf_append(out, " ", 1) < 0))
			goto out;
	}
	text_start = out->len;
	if (has_text && sora_buf_vprintf(out, fmt, ap) < 0)
		goto out;
	sanitize_line(out, start, text_start);
	if (sora_buf_append(out, "\r\n", 2) < 0)
		goto out;
	ret = 0;
out:
	if (ret < 0)
		out->len = start;
	return ret;
}

int sora_smtp_reply_append(struct sora_buf *out, unsigned code, const char *enhanced,
			   bool more, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = sora_smtp_reply_vappend(out, code, enhanced, more, fmt, ap);
	va_end(ap);
	return ret;
}

int sora_smtp_reply_lines(struct sora_buf *out, unsigned code, const char *enhanced,
			  const char *const *lines, size_t n)
{
	size_t start = out->len;

	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (sora_smtp_reply_append(out, code, enhanced, i + 1 < n, "%s",
					   lines[i]) < 0) {
			out->len = start;
			return -1;
		}
	}
	return 0;
}

int sora_smtp_reply_parse(const char *line, size_t len, struct sora_smtp_reply *r,
			  const char **error_r)
{
	struct sora_str text;
	size_t n = len, sp;

	memset(r, 0, sizeof(*r));
	if (n > 0 && line[n - 1] == '\n')
		n--;
	if (n > 0 && line[n - 1] == '\r')
		n--;
	if (n < 3) {
		if (error_r != NULL)
			*error_r = "Reply does not start with a code";
		return -1;
	}
	if (memchr(line, '\r', n) != NULL || memchr(line, '\n', n) != NULL ||
	    memchr(line, '\0', n) != NULL) {
		if (error_r != NULL)
			*error_r = "Invalid character in reply";
		return -1;
	}
	if (!is_digit((unsigned char)line[0]) || !is_digit((unsigned char)line[1]) ||
	    !is_digit((unsigned char)line[2])) {
		if (error_r != NULL)
			*error_r = "Reply does not start with a code";
		return -1;
	}
	r->code = (unsigned)(line[0] - '0') * 100 + (unsigned)(line[1] - '0') * 10 +
		(unsigned)(line[2] - '0');
	if (!code_valid(r->code)) {
		if (error_r != NULL)
			*error_r = "Invalid reply code";
		return -1;
	}
	if (n == 3) {
		r->last = true;
		r->text = sora_str_make(line + 3, 0);
		r->enhanced = sora_str_make(line + 3, 0);
		return 0;
	}
	if (line[3] != ' ' && line[3] != '-') {
		if (error_r != NULL)
			*error_r = "Invalid character after reply code";
		return -1;
	}
	r->last = line[3] == ' ';
	text = sora_str_make(line + 4, n - 4);
	r->text = text;
	r->enhanced = sora_str_make(text.p, 0);

	/* An enhanced code is the first word when it looks like one and its
	 * class matches the reply: "250 2.1.5 Ok". */
	for (sp = 0; sp < text.len && text.p[sp] != ' '; sp++)
		;
	if (sp > 0 && sora_smtp_enhanced_valid(sora_str_make(text.p, sp)) &&
	    (unsigned)(text.p[0] - '0') == r->code / 100) {
		r->enhanced = sora_str_make(text.p, sp);
		r->text = sp < text.len ? sora_str_make(text.p + sp + 1, text.len - sp - 1) :
			sora_str_make(text.p + sp, 0);
	}
	return 0;
}
