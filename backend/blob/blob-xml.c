#include "backend/blob/blob-xml.h"

#include <string.h>

static const char *find_bytes(const char *p, const char *end, const char *needle, size_t nlen)
{
	if (nlen == 0 || (size_t)(end - p) < nlen)
		return NULL;
	return memmem(p, (size_t)(end - p), needle, nlen);
}

bool sora_blob_xml_next(struct sora_str *xml, const char *name, struct sora_str *inner_r)
{
	const char *p = xml->p, *end = xml->p + xml->len;
	size_t nlen = strlen(name);

	if (xml->p == NULL || nlen == 0 || nlen > 64)
		return false;
	while (p < end) {
		const char *lt = memchr(p, '<', (size_t)(end - p));
		const char *gt, *close, *after;
		char closing[70];

		if (lt == NULL || (size_t)(end - lt) < nlen + 2)
			return false;
		p = lt + 1;
		if (memcmp(p, name, nlen) != 0)
			continue;
		after = p + nlen;
		/* "<Code>" but not "<CodeX>": the name must end here. */
		if (*after != '>' && *after != '/' && *after != ' ' && *after != '\t' &&
		    *after != '\r' && *after != '\n')
			continue;
		gt = memchr(after, '>', (size_t)(end - after));
		if (gt == NULL)
			return false;
		if (gt > after && gt[-1] == '/') {
			*inner_r = sora_str_make(gt, 0);
			xml->len -= (size_t)(gt + 1 - xml->p);
			xml->p = gt + 1;
			return true;
		}
		closing[0] = '<';
		closing[1] = '/';
		memcpy(closing + 2, name, nlen);
		closing[nlen + 2] = '>';
		close = find_bytes(gt + 1, end, closing, nlen + 3);
		if (close == NULL)
			return false;
		*inner_r = sora_str_make(gt + 1, (size_t)(close - (gt + 1)));
		after = close + nlen + 3;
		xml->len -= (size_t)(after - xml->p);
		xml->p = after;
		return true;
	}
	return false;
}

/* Appends the UTF-8 encoding of cp. Returns the bytes used (0 if they do
 * not fit or cp is not a valid scalar value). */
static size_t utf8_put(unsigned long cp, char *dst, size_t room)
{
	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	if (cp < 0x80 && room >= 1) {
		dst[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800 && room >= 2) {
		dst[0] = (char)(0xc0 | (cp >> 6));
		dst[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp >= 0x800 && cp < 0x10000 && room >= 3) {
		dst[0] = (char)(0xe0 | (cp >> 12));
		dst[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		dst[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	if (cp >= 0x10000 && room >= 4) {
		dst[0] = (char)(0xf0 | (cp >> 18));
		dst[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		dst[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		dst[3] = (char)(0x80 | (cp & 0x3f));
		return 4;
	}
	return 0;
}

/* Decodes the entity starting at p[0] == '&'. Returns the number of input
 * bytes consumed (0 if it is not a known entity) and the output in out. */
static size_t decode_entity(const char *p, const char *end, char *out, size_t room,
			    size_t *out_len)
{
	static const struct { const char *name; char c; } named[] = {
		{ "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' },
		{ "&quot;", '"' }, { "&apos;", '\'' },
	};
	size_t avail = (size_t)(end - p);

	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
		size_t l = strlen(named[i].name);
		if (avail >= l && memcmp(p, named[i].name, l) == 0) {
			if (room < 1)
				return 0;
			out[0] = named[i].c;
			*out_len = 1;
			return l;
		}
	}
	if (avail >= 4 && p[1] == '#') {
		unsigned long cp = 0;
		size_t i = 2, digits = 0;
		bool hex = p[2] == 'x' || p[2] == 'X';

		if (hex)
			i++;
		for (; i < avail && digits < 8; i++, digits++) {
			char c = p[i];
			unsigned v;
			if (c >= '0' && c <= '9')
				v = (unsigned)(c - '0');
			else if (hex && c >= 'a' && c <= 'f')
				v = (unsigned)(c - 'a' + 10);
			else if (hex && c >= 'A' && c <= 'F')
				v = (unsigned)(c - 'A' + 10);
			else
				break;
			cp = cp * (hex ? 16 : 10) + v;
		}
		if (digits == 0 || i >= avail || p[i] != ';')
			return 0;
		*out_len = utf8_put(cp, out, room);
		if (*out_len == 0)
			return 0;
		return i + 1;
	}
	return 0;
}

int sora_blob_xml_text(struct sora_str xml, const char *name, char *dst, size_t size)
{
	struct sora_str inner;
	const char *p, *end;
	size_t o = 0;

	if (size == 0)
		return -1;
	dst[0] = '\0';
	if (!sora_blob_xml_next(&xml, name, &inner))
		return -1;
	p = inner.p;
	end = inner.p + inner.len;
	while (p < end && o + 1 < size) {
		size_t used, n = 0;

		if (*p == '\0')
			break;
		if (*p == '&' && (used = decode_entity(p, end, dst + o, size - 1 - o, &n)) > 0) {
			p += used;
			o += n;
			continue;
		}
		dst[o++] = *p++;
	}
	dst[o] = '\0';
	return 0;
}

int sora_blob_xml_escape(struct sora_buf *out, struct sora_str text)
{
	for (size_t i = 0; i < text.len; i++) {
		unsigned char c = (unsigned char)text.p[i];
		const char *rep = NULL;
		int r;

		switch (c) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&apos;"; break;
		/* Written as references so that XML line-end normalisation
		 * cannot change the key. */
		case '\t': rep = "&#9;"; break;
		case '\n': rep = "&#10;"; break;
		case '\r': rep = "&#13;"; break;
		default:
			if (c < 0x20)
				return -1;
		}
		r = rep != NULL ? sora_buf_append_str(out, rep) : sora_buf_append(out, &text.p[i], 1);
		if (r < 0)
			return -1;
	}
	return 0;
}
