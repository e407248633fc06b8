/* RFC 2047 / RFC 2231 decoding and charset conversion; see mime-decode.h. */
#include "common/core/str.h"
#include "common/proto/mime/mime-decode.h"

#include "common/proto/mime/mime-private.h"

#include <string.h>

static const char replacement[] = "\xef\xbf\xbd";

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at s, or 0 if there is none. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];

	if (c < 0x80)
		return 1;
	if (c < 0xc2)
		return 0;
	if (c < 0xe0)
		return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c < 0xf0) {
		if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0))
			return 0;
		return 3;
	}
	if (c < 0xf5) {
		if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
		    (s[3] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

bool sora_mime_utf8_valid(const void *p, size_t len)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < len;) {
		size_t k = utf8_seq(s + i, len - i);

		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

/* Appends text that should be UTF-8; with SORA_MIME_DECODE_VALID_UTF8,
 * invalid bytes and NULs become U+FFFD. */
static int append_text(struct sora_buf *out, const void *p, size_t len, unsigned int flags)
{
	const unsigned char *s = p;
	size_t start = 0;

	if (len == 0)
		return 0;
	if ((flags & SORA_MIME_DECODE_VALID_UTF8) == 0)
		return sora_buf_append(out, p, len);
	for (size_t i = 0; i < len;) {
		size_t k = s[i] == '\0' ? 0 : utf8_seq(s + i, len - i);

		if (k > 0) {
			i += k;
			continue;
		}
		if (sora_buf_append(out, s + start, i - start) < 0 ||
		    sora_buf_append(out, replacement, 3) < 0)
			return -1;
		start = ++i;
	}
	return sora_buf_append(out, s + start, len - start);
}

static int append_codepoint(struct sora_buf *out, unsigned int cp)
{
	char b[3];

	if (cp < 0x80) {
		b[0] = (char)cp;
		return sora_buf_append(out, b, 1);
	}
	if (cp < 0x800) {
		b[0] = (char)(0xc0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3f));
		return sora_buf_append(out, b, 2);
	}
	b[0] = (char)(0xe0 | (cp >> 12));
	b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
	b[2] = (char)(0x80 | (cp & 0x3f));
	return sora_buf_append(out, b, 3);
}

/* ---- charsets ---- */

enum charset {
	CS_UNKNOWN = 0,
	CS_UTF8,
	CS_ASCII,
	CS_LATIN1,
	CS_LATIN9,
	CS_CP1252,
};

static const struct {
	const char *name;
	enum charset cs;
} charset_names[] = {
	{ "utf-8", CS_UTF8 }, { "utf8", CS_UTF8 },
	{ "us-ascii", CS_ASCII }, { "ascii", CS_ASCII }, { "ansi_x3.4-1968", CS_ASCII },
	{ "iso-8859-1", CS_LATIN1 }, { "iso8859-1", CS_LATIN1 }, { "iso_8859-1", CS_LATIN1 },
	{ "latin1", CS_LATIN1 }, { "l1", CS_LATIN1 },
	{ "iso-8859-15", CS_LATIN9 }, { "iso8859-15", CS_LATIN9 }, { "iso_8859-15", CS_LATIN9 },
	{ "latin-9", CS_LATIN9 }, { "latin9", CS_LATIN9 },
	{ "windows-1252", CS_CP1252 }, { "cp1252", CS_CP1252 }, { "x-cp1252", CS_CP1252 },
};

static enum charset charset_lookup(struct sora_str name)
{
	for (size_t i = 0; i < sizeof(charset_names) / sizeof(charset_names[0]); i++) {
		if (sora_str_ieq_c(name, charset_names[i].name))
			return charset_names[i].cs;
	}
	return CS_UNKNOWN;
}

/* Windows-1252 0x80..0x9f; 0 marks the five unassigned positions. */
static const unsigned short cp1252_high[32] = {
	0x20ac, 0, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
	0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017d, 0,
	0, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
	0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0, 0x017e, 0x0178,
};

static unsigned int latin9_cp(unsigned char c)
{
	switch (c) {
	case 0xa4: return 0x20ac;
	case 0xa6: return 0x0160;
	case 0xa8: return 0x0161;
	case 0xb4: return 0x017d;
	case 0xb8: return 0x017e;
	case 0xbc: return 0x0152;
	case 0xbd: return 0x0153;
	case 0xbe: return 0x0178;
	default: return c;
	}
}

static int convert(enum charset cs, const unsigned char *in, size_t len, unsigned int flags,
		   struct sora_buf *out)
{
	switch (cs) {
	case CS_UNKNOWN:
		return 1;
	case CS_UTF8:
	case CS_ASCII:
		/* 8-bit bytes in "us-ascii" text are mislabelled UTF-8 more
		 * often than anything else; they are passed on as they are. */
		return append_text(out, in, len, flags);
	case CS_LATIN1:
	case CS_LATIN9:
	case CS_CP1252:
		for (size_t i = 0; i < len; i++) {
			unsigned int cp = in[i];

			if (cs == CS_LATIN9)
				cp = latin9_cp(in[i]);
			else if (cs == CS_CP1252 && cp >= 0x80 && cp < 0xa0)
				cp = cp1252_high[cp - 0x80] != 0 ? cp1252_high[cp - 0x80] : 0xfffd;
			if (cp == 0 && (flags & SORA_MIME_DECODE_VALID_UTF8) != 0)
				cp = 0xfffd;
			if (append_codepoint(out, cp) < 0)
				return -1;
		}
		return 0;
	}
	return 1;
}

int sora_mime_charset_to_utf8(struct sora_str charset, const void *in, size_t len,
			      struct sora_buf *out)
{
	return convert(charset_lookup(charset), in, len, 0, out);
}

bool sora_mime_charset_converts(struct sora_str charset)
{
	enum charset cs = charset_lookup(charset);

	return cs != CS_UNKNOWN && cs != CS_UTF8 && cs != CS_ASCII;
}

/* ---- base64 ---- */

int sora_mime_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int mime_base64_decode(const void *in, size_t len, struct sora_buf *out)
{
	const unsigned char *s = in;
	unsigned int acc = 0, bits = 0;

	for (size_t i = 0; i < len; i++) {
		int v;

		if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')
			continue;
		v = sora_mime_b64_value(s[i]);
		if (v < 0)
			break;
		acc = (acc << 6) | (unsigned int)v;
		bits += 6;
		if (bits >= 8) {
			char c;

			bits -= 8;
			c = (char)((acc >> bits) & 0xff);
			if (sora_buf_append(out, &c, 1) < 0)
				return -1;
		}
	}
	return 0;
}

int mime_base64_encode(const void *in, size_t len, struct sora_buf *out)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *s = in;
	char q[4];

	for (size_t i = 0; i < len; i += 3) {
		unsigned int v = (unsigned int)s[i] << 16;
		size_t n = len - i < 3 ? len - i : 3;

		if (n > 1)
			v |= (unsigned int)s[i + 1] << 8;
		if (n > 2)
			v |= s[i + 2];
		q[0] = alphabet[(v >> 18) & 63];
		q[1] = alphabet[(v >> 12) & 63];
		q[2] = n > 1 ? alphabet[(v >> 6) & 63] : '=';
		q[3] = n > 2 ? alphabet[v & 63] : '=';
		if (sora_buf_append(out, q, 4) < 0)
			return -1;
	}
	return 0;
}

/* ---- RFC 2047 ---- */

static bool is_lwsp(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

struct encoded_word {
	struct sora_str charset;
	unsigned char encoding;   /* 'B' or 'Q' */
	struct sora_str text;
	size_t len;               /* of the whole word */
};

/* Recognises "=?charset[*lang]?X?text?=" at s. */
static bool parse_encoded_word(const unsigned char *s, size_t n, struct encoded_word *w)
{
	size_t i = 2, cs_start, cs_end, text_start;

	if (n < 8 || s[0] != '=' || s[1] != '?')
		return false;
	cs_start = i;
	while (i < n && s[i] != '?' && !is_lwsp(s[i]))
		i++;
	if (i >= n || s[i] != '?' || i == cs_start)
		return false;
	cs_end = i;
	/* RFC 2231 5: "charset*language". */
	for (size_t k = cs_start; k < cs_end; k++) {
		if (s[k] == '*') {
			cs_end = k;
			break;
		}
	}
	i++;
	if (i + 2 >= n || s[i + 1] != '?')
		return false;
	w->encoding = mime_ascii_lower(s[i]) == 'b' ? 'B' : (mime_ascii_lower(s[i]) == 'q' ? 'Q' : 0);
	if (w->encoding == 0)
		return false;
	i += 2;
	text_start = i;
	while (i + 1 < n && !(s[i] == '?' && s[i + 1] == '=')) {
		if (is_lwsp(s[i]))
			return false;
		i++;
	}
	if (i + 1 >= n)
		return false;
	w->charset = sora_str_make((const char *)s + cs_start, cs_end - cs_start);
	w->text = sora_str_make((const char *)s + text_start, i - text_start);
	w->len = i + 2;
	return true;
}

static int decode_q(struct sora_str text, struct sora_buf *out)
{
	const unsigned char *s = (const unsigned char *)text.p;

	for (size_t i = 0; i < text.len; i++) {
		char c = (char)s[i];

		if (s[i] == '_') {
			c = ' ';
		} else if (s[i] == '=' && i + 2 < text.len &&
			   sora_hex_value((unsigned char)s[i + 1]) >= 0 && sora_hex_value((unsigned char)s[i + 2]) >= 0) {
			c = (char)(sora_hex_value((unsigned char)s[i + 1]) * 16 + sora_hex_value((unsigned char)s[i + 2]));
			i += 2;
		}
		if (sora_buf_append(out, &c, 1) < 0)
			return -1;
	}
	return 0;
}

/* Decodes one word into UTF-8. Returns 0, 1 if its charset is unknown
 * (nothing appended), or -1. */
static int decode_word(const struct encoded_word *w, unsigned int flags, struct sora_buf *out,
		       struct sora_buf *scratch)
{
	enum charset cs = charset_lookup(w->charset);

	if (cs == CS_UNKNOWN)
		return 1;
	scratch->len = 0;
	if (w->encoding == 'B') {
		if (mime_base64_decode(w->text.p, w->text.len, scratch) < 0)
			return -1;
	} else if (decode_q(w->text, scratch) < 0) {
		return -1;
	}
	return convert(cs, (const unsigned char *)scratch->data, scratch->len, flags, out);
}

int sora_mime_decode_header(struct sora_str in, unsigned int flags, struct sora_buf *out)
{
	const unsigned char *s = (const unsigned char *)in.p;
	struct sora_buf scratch;
	struct encoded_word w;
	bool last_was_word = false;
	size_t i = 0, text_start = 0;
	int ret = 0;

	if (in.p == NULL)
		return 0;
	sora_buf_init(&scratch, 0);
	while (i < in.len && ret >= 0) {
		if (s[i] == '=' && parse_encoded_word(s + i, in.len - i, &w)) {
			size_t before = out->len;

			/* Flush the plain text before the word, unless it is only
			 * whitespace between two encoded words. */
			bool only_ws = last_was_word;

			for (size_t k = text_start; k < i && only_ws; k++)
				only_ws = is_lwsp(s[k]);
			if (!only_ws)
				ret = append_text(out, s + text_start, i - text_start, flags);
			if (ret < 0)
				break;
			ret = decode_word(&w, flags, out, &scratch);
			if (ret == 1) {
				/* Unknown charset: keep the word (and the
				 * whitespace dropped above) as it was. */
				out->len = before;
				ret = 0;
				last_was_word = false;
				i += w.len;
				continue;
			}
			i += w.len;
			text_start = i;
			last_was_word = true;
			continue;
		}
		if (!is_lwsp(s[i]))
			last_was_word = false;
		i++;
	}
	if (ret >= 0)
		ret = append_text(out, s + text_start, in.len - text_start, flags);
	sora_buf_free(&scratch);
	return ret < 0 ? -1 : 0;
}

/* ---- parameters ---- */

static int decode_rfc2231(struct sora_str value, unsigned int flags, struct sora_buf *out)
{
	const char *q1, *q2;
	struct sora_str charset = SORA_STR_NULL, text = value;
	struct sora_buf raw;
	enum charset cs = CS_ASCII;
	int ret = 0;

	q1 = memchr(value.p, '\'', value.len);
	if (q1 != NULL)
		q2 = memchr(q1 + 1, '\'', value.len - (size_t)(q1 + 1 - value.p));
	else
		q2 = NULL;
	if (q2 != NULL) {
		charset = sora_str_make(value.p, (size_t)(q1 - value.p));
		text = sora_str_make(q2 + 1, value.len - (size_t)(q2 + 1 - value.p));
		if (charset.len > 0)
			cs = charset_lookup(charset);
	}
	if (cs == CS_UNKNOWN)
		return append_text(out, value.p, value.len, flags);
	sora_buf_init(&raw, 0);
	for (size_t i = 0; i < text.len && ret == 0; i++) {
		char c = text.p[i];

		if (c == '%' && i + 2 < text.len &&
		    sora_hex_value((unsigned char)(unsigned char)text.p[i + 1]) >= 0 &&
		    sora_hex_value((unsigned char)(unsigned char)text.p[i + 2]) >= 0) {
			c = (char)(sora_hex_value((unsigned char)(unsigned char)text.p[i + 1]) * 16 +
				   sora_hex_value((unsigned char)(unsigned char)text.p[i + 2]));
			i += 2;
		}
		ret = sora_buf_append(&raw, &c, 1);
	}
	if (ret == 0)
		ret = convert(cs, (const unsigned char *)raw.data, raw.len, flags, out);
	sora_buf_free(&raw);
	return ret < 0 ? -1 : 0;
}

int sora_mime_param_decode(const struct sora_mime_param *params, unsigned int count,
			   const char *name, unsigned int flags, struct sora_buf *out)
{
	size_t n = strlen(name);

	for (unsigned int i = 0; i < count; i++) {
		struct sora_str pn = params[i].name;

		if (pn.len == n + 1 && pn.p[n] == '*' &&
		    sora_str_ieq(sora_str_make(pn.p, n), sora_str_make(name, n)))
			return decode_rfc2231(params[i].value, flags, out) < 0 ? -1 : 1;
	}
	for (unsigned int i = 0; i < count; i++) {
		if (sora_str_ieq_c(params[i].name, name))
			return sora_mime_decode_header(params[i].value, flags, out) < 0 ? -1 : 1;
	}
	return 0;
}

int sora_mime_part_filename(const struct sora_mime_part *part, unsigned int flags,
			    struct sora_buf *out)
{
	int ret = sora_mime_param_decode(part->disp_params, part->disp_param_count, "filename",
					 flags, out);

	if (ret != 0)
		return ret;
	return sora_mime_param_decode(part->params, part->param_count, "name", flags, out);
}
