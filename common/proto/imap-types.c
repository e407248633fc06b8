/* IMAP value syntaxes: see imap-types.h. */
#include "common/proto/imap-types.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ sequence sets */

static int seq_number(struct sora_str s, size_t *i, uint32_t *n_r, const char **error_r)
{
	uint64_t v = 0;
	size_t start = *i;

	if (*i < s.len && s.p[*i] == '*') {
		(*i)++;
		*n_r = SORA_IMAP_SEQ_STAR;
		return 0;
	}
	while (*i < s.len && s.p[*i] >= '0' && s.p[*i] <= '9') {
		v = v * 10 + (uint64_t)(s.p[*i] - '0');
		if (v > UINT32_MAX) {
			*error_r = "Sequence number out of range.";
			return -1;
		}
		(*i)++;
	}
	if (*i == start) {
		*error_r = "Invalid sequence set.";
		return -1;
	}
	if (v == 0) {
		*error_r = "Sequence numbers start at 1.";
		return -1;
	}
	if (s.p[start] == '0') {
		*error_r = "Invalid sequence number.";
		return -1;
	}
	*n_r = (uint32_t)v;
	return 0;
}

/* "*" is the largest. */
static bool seq_le(uint32_t a, uint32_t b)
{
	if (b == SORA_IMAP_SEQ_STAR)
		return true;
	if (a == SORA_IMAP_SEQ_STAR)
		return false;
	return a <= b;
}

int sora_imap_seqset_parse(struct sora_str s, bool allow_dollar, size_t max_ranges,
			   struct sora_imap_seqset *set_r, const char **error_r)
{
	size_t i = 0, cap = 0;

	memset(set_r, 0, sizeof(*set_r));
	if (s.len == 1 && s.p[0] == '$') {
		if (!allow_dollar) {
			*error_r = "$ is not allowed here.";
			return -1;
		}
		set_r->last_result = true;
		return 0;
	}
	for (;;) {
		struct sora_imap_seq_range r;

		if (seq_number(s, &i, &r.lo, error_r) < 0)
			goto fail;
		r.hi = r.lo;
		if (i < s.len && s.p[i] == ':') {
			i++;
			if (seq_number(s, &i, &r.hi, error_r) < 0)
				goto fail;
			if (!seq_le(r.lo, r.hi)) {
				uint32_t t = r.lo;

				r.lo = r.hi;
				r.hi = t;
			}
		}
		if (set_r->count == max_ranges) {
			*error_r = "Sequence set too long.";
			goto fail;
		}
		if (set_r->count == cap) {
			size_t ncap = cap == 0 ? 4 : cap * 2;
			struct sora_imap_seq_range *nr;

			if (ncap > max_ranges)
				ncap = max_ranges;
			nr = realloc(set_r->ranges, ncap * sizeof(*nr));
			if (nr == NULL) {
				*error_r = "Out of memory.";
				goto fail;
			}
			set_r->ranges = nr;
			cap = ncap;
		}
		set_r->ranges[set_r->count++] = r;
		if (i == s.len)
			return 0;
		if (s.p[i] != ',') {
			*error_r = "Invalid sequence set.";
			goto fail;
		}
		i++;
	}
fail:
	sora_imap_seqset_free(set_r);
	return -1;
}

void sora_imap_seqset_free(struct sora_imap_seqset *set)
{
	free(set->ranges);
	memset(set, 0, sizeof(*set));
}

bool sora_imap_seqset_contains(const struct sora_imap_seqset *set, uint32_t n, uint32_t star_value)
{
	for (size_t i = 0; i < set->count; i++) {
		uint32_t lo = set->ranges[i].lo == SORA_IMAP_SEQ_STAR ? star_value : set->ranges[i].lo;
		uint32_t hi = set->ranges[i].hi == SORA_IMAP_SEQ_STAR ? star_value : set->ranges[i].hi;

		if (lo > hi) {
			uint32_t t = lo;

			lo = hi;
			hi = t;
		}
		if (n >= lo && n <= hi)
			return true;
	}
	return false;
}

/* ------------------------------------------------------------ UTF-8 */

/* Decodes one code point at s[*i]; -1 when invalid. */
static int32_t utf8_next(struct sora_str s, size_t *i)
{
	const unsigned char *p = (const unsigned char *)s.p + *i;
	size_t left = s.len - *i, n;
	uint32_t cp, min;

	if (p[0] < 0x80) {
		(*i)++;
		return p[0];
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		cp = p[0] & 0x1f;
		min = 0x80;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		cp = p[0] & 0x0f;
		min = 0x800;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		cp = p[0] & 0x07;
		min = 0x10000;
	} else {
		return -1;
	}
	if (left < n)
		return -1;
	for (size_t k = 1; k < n; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (p[k] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*i += n;
	return (int32_t)cp;
}

bool sora_imap_utf8_valid(struct sora_str s)
{
	size_t i = 0;

	while (i < s.len)
		if (utf8_next(s, &i) < 0)
			return false;
	return true;
}

static int utf8_put(struct sora_buf *out, uint32_t cp)
{
	unsigned char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | (cp >> 6));
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | (cp >> 12));
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | (cp >> 18));
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return sora_buf_append(out, b, n);
}

/* ------------------------------------------------------------ modified UTF-7 */

static const char mb64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int mb64_value(unsigned char c)
{
	const char *p;

	if (c == 0)
		return -1;
	p = strchr(mb64, c);
	return p != NULL ? (int)(p - mb64) : -1;
}

/* Decodes the BASE64 run s[*i..] up to '-'. */
static int mutf7_run(struct sora_str in, size_t *i, struct sora_buf *out, const char **error_r)
{
	uint32_t bits = 0, high = 0;
	unsigned nbits = 0;
	size_t start = *i;

	while (*i < in.len && in.p[*i] != '-') {
		int v = mb64_value((unsigned char)in.p[*i]);

		if (v < 0) {
			*error_r = "Invalid character in modified BASE64.";
			return -1;
		}
		(*i)++;
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits < 16)
			continue;
		nbits -= 16;
		{
			uint32_t u = (bits >> nbits) & 0xffff;

			bits &= (1u << nbits) - 1;
			if (high != 0) {
				if (u < 0xdc00 || u > 0xdfff) {
					*error_r = "Broken UTF-16 surrogate pair.";
					return -1;
				}
				if (utf8_put(out, 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00)) < 0)
					goto toolong;
				high = 0;
			} else if (u >= 0xd800 && u <= 0xdbff) {
				high = u;
			} else if (u >= 0xdc00 && u <= 0xdfff) {
				*error_r = "Broken UTF-16 surrogate pair.";
				return -1;
			} else if (u == 0 || (u >= 0x20 && u <= 0x7e)) {
				*error_r = "Character needlessly encoded in modified BASE64.";
				return -1;
			} else if (utf8_put(out, u) < 0) {
				goto toolong;
			}
		}
	}
	if (*i == in.len) {
		*error_r = "Unterminated modified BASE64.";
		return -1;
	}
	if (*i == start) {
		*error_r = "Empty modified BASE64.";
		return -1;
	}
	if (high != 0) {
		*error_r = "Broken UTF-16 surrogate pair.";
		return -1;
	}
	if (nbits >= 6 || bits != 0) {
		*error_r = "Invalid padding in modified BASE64.";
		return -1;
	}
	(*i)++;   /* '-' */
	return 0;
toolong:
	*error_r = "Mailbox name too long.";
	return -1;
}

int sora_imap_mutf7_to_utf8(struct sora_str in, struct sora_buf *out, const char **error_r)
{
	size_t i = 0;
	bool after_run = false;

	while (i < in.len) {
		unsigned char c = (unsigned char)in.p[i];

		if (c < 0x20 || c > 0x7e) {
			*error_r = "Invalid character in mailbox name.";
			return -1;
		}
		if (c != '&') {
			if (sora_buf_append(out, &c, 1) < 0)
				goto toolong;
			i++;
			after_run = false;
			continue;
		}
		i++;
		if (i < in.len && in.p[i] == '-') {
			if (sora_buf_append(out, "&", 1) < 0)
				goto toolong;
			i++;
			after_run = false;
			continue;
		}
		if (after_run) {
			*error_r = "Adjacent modified BASE64 sequences.";
			return -1;
		}
		if (mutf7_run(in, &i, out, error_r) < 0)
			return -1;
		after_run = true;
	}
	return 0;
toolong:
	*error_r = "Mailbox name too long.";
	return -1;
}

struct mb64_enc {
	uint32_t bits;
	unsigned nbits;
	bool open;
};

static int mb64_unit(struct sora_buf *out, struct mb64_enc *e, uint16_t u)
{
	if (!e->open) {
		if (sora_buf_append(out, "&", 1) < 0)
			return -1;
		e->open = true;
	}
	e->bits = (e->bits << 16) | u;
	e->nbits += 16;
	while (e->nbits >= 6) {
		e->nbits -= 6;
		if (sora_buf_append(out, &mb64[(e->bits >> e->nbits) & 0x3f], 1) < 0)
			return -1;
	}
	e->bits &= (1u << e->nbits) - 1;
	return 0;
}

static int mb64_close(struct sora_buf *out, struct mb64_enc *e)
{
	if (!e->open)
		return 0;
	if (e->nbits > 0 && sora_buf_append(out, &mb64[(e->bits << (6 - e->nbits)) & 0x3f], 1) < 0)
		return -1;
	e->bits = 0;
	e->nbits = 0;
	e->open = false;
	return sora_buf_append(out, "-", 1);
}

int sora_imap_utf8_to_mutf7(struct sora_str in, struct sora_buf *out, const char **error_r)
{
	struct mb64_enc e = { 0 };
	size_t i = 0;

	while (i < in.len) {
		int32_t cp = utf8_next(in, &i);

		if (cp <= 0) {
			*error_r = cp == 0 ? "NUL in mailbox name." : "Invalid UTF-8 in mailbox name.";
			return -1;
		}
		if (cp >= 0x20 && cp <= 0x7e) {
			char ch = (char)cp;

			if (mb64_close(out, &e) < 0 ||
			    sora_buf_append(out, cp == '&' ? "&-" : &ch, cp == '&' ? 2 : 1) < 0)
				goto toolong;
			continue;
		}
		if (cp >= 0x10000) {
			if (mb64_unit(out, &e, (uint16_t)(0xd800 + ((cp - 0x10000) >> 10))) < 0 ||
			    mb64_unit(out, &e, (uint16_t)(0xdc00 + ((cp - 0x10000) & 0x3ff))) < 0)
				goto toolong;
		} else if (mb64_unit(out, &e, (uint16_t)cp) < 0) {
			goto toolong;
		}
	}
	if (mb64_close(out, &e) < 0)
		goto toolong;
	return 0;
toolong:
	*error_r = "Mailbox name too long.";
	return -1;
}

size_t sora_imap_uids_lower_bound(const uint32_t *v, size_t n, uint32_t x)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

long sora_imap_uids_find(const uint32_t *v, size_t n, uint32_t x)
{
	size_t i = sora_imap_uids_lower_bound(v, n, x);

	return i < n && v[i] == x ? (long)i : -1;
}

void sora_imap_range_resolve(struct sora_imap_seq_range r, uint32_t star, uint32_t *lo_r,
			     uint32_t *hi_r)
{
	uint32_t lo = r.lo == SORA_IMAP_SEQ_STAR ? star : r.lo;
	uint32_t hi = r.hi == SORA_IMAP_SEQ_STAR ? star : r.hi;

	*lo_r = lo < hi ? lo : hi;
	*hi_r = lo < hi ? hi : lo;
}
