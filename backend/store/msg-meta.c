/* Message metadata for the messages row and message_contents (see
 * msg-meta.h for what each value means). */
#include "backend/store/msg-meta.h"

#include <stdlib.h>
#include <string.h>

#include "common/core/str.h"
#include "common/proto/mime/mime-decode.h"

static const char replacement[3] = { (char)0xef, (char)0xbf, (char)0xbd };

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), 0 if invalid or NUL. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];

	if (c == 0)
		return 0;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if (c == 0xe0 && s[1] < 0xa0)
			return 0;
		if (c == 0xed && s[1] >= 0xa0)
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
		    (s[3] & 0xc0) != 0x80)
			return 0;
		if (c == 0xf0 && s[1] < 0x90)
			return 0;
		if (c == 0xf4 && s[1] >= 0x90)
			return 0;
		return 4;
	}
	return 0;
}

/* True if the 8 bytes at p are all ASCII and none is NUL. */
static bool ascii8(const unsigned char *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof(w));
	return (w & 0x8080808080808080ULL) == 0 &&
	       ((w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL) == 0;
}

/* Appends s cleaned to valid UTF-8, stopping before the character that
 * would take the buffer past max bytes (max 0: no limit). Returns 1 if it
 * stopped there, 0 if all of s went in, -1 when out of memory. */
static int utf8_clean_into(struct sora_str s, size_t max, struct sora_buf *out)
{
	const unsigned char *p = (const unsigned char *)s.p;
	size_t start = 0, i = 0, limit = SIZE_MAX;

	/* An empty string may have no pointer at all (an empty sora_buf):
	 * even p + 0 is undefined then. */
	if (s.len == 0)
		return 0;
	if (max > 0) {
		if (out->len >= max)
			return 1;
		limit = max - out->len;
	}
	/* Most text is valid: room for all of it (or up to the cap) at once. */
	if (sora_buf_reserve(out, s.len < limit ? s.len : limit) < 0)
		return -1;
	while (i < s.len) {
		size_t k, add;

		/* ASCII runs need no decoding: 8 bytes a step while they
		 * fit under the cap. */
		while (i + 8 <= s.len && (max == 0 || out->len + (i + 8 - start) <= max) &&
		       ascii8(p + i))
			i += 8;
		if (i == s.len)
			break;
		k = utf8_seq(p + i, s.len - i);
		add = k > 0 ? k : sizeof(replacement);
		if (max > 0 && out->len + (i - start) + add > max) {
			if (sora_buf_append(out, p + start, i - start) < 0)
				return -1;
			return 1;
		}
		if (k > 0) {
			i += k;
			continue;
		}
		if (sora_buf_append(out, p + start, i - start) < 0 ||
		    sora_buf_append(out, replacement, sizeof(replacement)) < 0)
			return -1;
		start = ++i;
	}
	return sora_buf_append(out, p + start, i - start);
}

static int utf8_clean_capped(struct sora_str s, size_t max, struct sora_buf *out)
{
	return utf8_clean_into(s, max, out) < 0 ? -1 : 0;
}

int sora_msg_utf8_clean(struct sora_str s, struct sora_buf *out)
{
	return utf8_clean_capped(s, 0, out);
}

/* ---- dates ---- */

struct date_cur {
	const unsigned char *p, *end;
};

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* Skips white space and (nested) comments. */
static void skip_cfws(struct date_cur *c)
{
	int depth = 0;

	while (c->p < c->end) {
		unsigned char ch = *c->p;

		if (depth > 0) {
			if (ch == '\\' && c->p + 1 < c->end)
				c->p++;
			else if (ch == '(')
				depth++;
			else if (ch == ')')
				depth--;
			c->p++;
		} else if (ch == '(') {
			depth = 1;
			c->p++;
		} else if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
			c->p++;
		} else {
			break;
		}
	}
}

static size_t read_word(struct date_cur *c, char *buf, size_t size)
{
	size_t n = 0;

	while (c->p < c->end && is_alpha(*c->p)) {
		if (n + 1 < size)
			buf[n++] = (char)lower(*c->p);
		c->p++;
	}
	buf[n] = '\0';
	return n;
}

/* Reads 1..max digits; -1 if there is none. */
static int read_number(struct date_cur *c, int max_digits, int *n_digits_r)
{
	int v = 0, n = 0;

	while (c->p < c->end && is_digit(*c->p) && n < max_digits) {
		v = v * 10 + (*c->p - '0');
		c->p++;
		n++;
	}
	if (n_digits_r != NULL)
		*n_digits_r = n;
	return n > 0 ? v : -1;
}

static int month_index(const char *w)
{
	static const char *const months[12] = {
		"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
	};

	if (strlen(w) < 3)
		return -1;
	for (int i = 0; i < 12; i++) {
		if (strncmp(w, months[i], 3) == 0)
			return i;
	}
	return -1;
}

static bool is_day_name(const char *w)
{
	static const char *const days[7] = { "mon", "tue", "wed", "thu", "fri", "sat", "sun" };

	if (strlen(w) < 3)
		return false;
	for (int i = 0; i < 7; i++) {
		if (strncmp(w, days[i], 3) == 0)
			return true;
	}
	return false;
}

/* RFC 5322 4.3 obsolete zones; military letters and anything unknown mean
 * "no information", i.e. -0000, which is UTC. */
static int zone_name_minutes(const char *w)
{
	static const struct {
		const char *name;
		int minutes;
	} zones[] = {
		{ "ut", 0 }, { "gmt", 0 }, { "utc", 0 }, { "z", 0 },
		{ "edt", -4 * 60 }, { "est", -5 * 60 }, { "cdt", -5 * 60 }, { "cst", -6 * 60 },
		{ "mdt", -6 * 60 }, { "mst", -7 * 60 }, { "pdt", -7 * 60 }, { "pst", -8 * 60 },
	};

	for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
		if (strcmp(w, zones[i].name) == 0)
			return zones[i].minutes;
	}
	return 0;
}

static bool leap_year(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1..12). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int sora_msg_date_parse(struct sora_str s, int64_t *t_r, int *tz_min_r)
{
	static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	struct date_cur c;
	int day, month, year, hour, min, sec = 0, tz = 0, digits;
	char word[16];

	/* A missing Date header is SORA_STR_NULL: checked before any pointer
	 * arithmetic, since NULL + 0 is undefined too. */
	if (s.p == NULL)
		return -1;
	c.p = (const unsigned char *)s.p;
	c.end = c.p + s.len;
	skip_cfws(&c);
	if (c.p < c.end && is_alpha(*c.p)) {
		read_word(&c, word, sizeof(word));
		if (!is_day_name(word))
			return -1;
		skip_cfws(&c);
		if (c.p < c.end && *c.p == ',')
			c.p++;
		skip_cfws(&c);
	}
	day = read_number(&c, 2, NULL);
	if (day < 1)
		return -1;
	skip_cfws(&c);
	if (c.p < c.end && *c.p == '-')
		c.p++;
	skip_cfws(&c);
	read_word(&c, word, sizeof(word));
	month = month_index(word);
	if (month < 0)
		return -1;
	skip_cfws(&c);
	if (c.p < c.end && *c.p == '-')
		c.p++;
	skip_cfws(&c);
	year = read_number(&c, 4, &digits);
	if (year < 0 || (c.p < c.end && is_digit(*c.p)))
		return -1;
	if (digits == 2)
		year += year < 50 ? 2000 : 1900;
	else if (digits == 3)
		year += 1900;
	else if (digits != 4)
		return -1;
	skip_cfws(&c);
	hour = read_number(&c, 2, NULL);
	skip_cfws(&c);
	if (hour < 0 || hour > 23 || c.p >= c.end || *c.p != ':')
		return -1;
	c.p++;
	skip_cfws(&c);
	min = read_number(&c, 2, NULL);
	if (min < 0 || min > 59)
		return -1;
	skip_cfws(&c);
	if (c.p < c.end && *c.p == ':') {
		c.p++;
		skip_cfws(&c);
		sec = read_number(&c, 2, NULL);
		if (sec < 0 || sec > 60)
			return -1;
		/* A leap second cannot be represented; it is the last second
		 * of the minute as far as ordering goes. */
		if (sec == 60)
			sec = 59;
		skip_cfws(&c);
	}
	if (c.p < c.end && (*c.p == '+' || *c.p == '-')) {
		int sign = *c.p == '-' ? -1 : 1, hhmm;

		c.p++;
		hhmm = read_number(&c, 4, &digits);
		if (digits != 4 || hhmm % 100 > 59)
			return -1;
		tz = sign * ((hhmm / 100) * 60 + hhmm % 100);
	} else if (c.p < c.end && is_alpha(*c.p)) {
		read_word(&c, word, sizeof(word));
		tz = zone_name_minutes(word);
	}
	if (day > mdays[month] + (month == 1 && leap_year(year) ? 1 : 0))
		return -1;
	*t_r = days_from_civil(year, month + 1, day) * 86400 + hour * 3600 + min * 60 + sec -
	       (int64_t)tz * 60;
	*tz_min_r = tz;
	return 0;
}

/* ---- base subject (RFC 5256 2.1) ---- */

struct subj {
	const char *p;
	size_t len;
};

static bool subj_ieq_prefix(const struct subj *s, size_t at, const char *lit)
{
	size_t n = strlen(lit);

	if (at + n > s->len)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (lower((unsigned char)s->p[at + i]) != (unsigned char)lit[i])
			return false;
	}
	return true;
}

/* Step 2: removes trailing "(fwd)" and white space; true if anything went. */
static bool subj_strip_trailers(struct subj *s)
{
	bool changed = false;

	for (;;) {
		if (s->len > 0 && s->p[s->len - 1] == ' ') {
			s->len--;
			changed = true;
		} else if (s->len >= 5 && subj_ieq_prefix(s, s->len - 5, "(fwd)")) {
			s->len -= 5;
			changed = true;
		} else {
			return changed;
		}
	}
}

/* subj-blob = "[" *BLOBCHAR "]" *WSP at position at; returns its length or 0. */
static size_t subj_blob_len(const struct subj *s, size_t at)
{
	size_t i = at;

	if (i >= s->len || s->p[i] != '[')
		return 0;
	for (i++; i < s->len && s->p[i] != ']'; i++) {
		if (s->p[i] == '[')
			return 0;
	}
	if (i >= s->len)
		return 0;
	for (i++; i < s->len && s->p[i] == ' '; i++)
		;
	return i - at;
}

/* subj-leader = (*subj-blob subj-refwd) / WSP; returns its length or 0. */
static size_t subj_leader_len(const struct subj *s)
{
	size_t i = 0, n;

	if (s->len > 0 && s->p[0] == ' ')
		return 1;
	while ((n = subj_blob_len(s, i)) > 0)
		i += n;
	/* subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":" */
	if (subj_ieq_prefix(s, i, "re"))
		i += 2;
	else if (subj_ieq_prefix(s, i, "fwd"))
		i += 3;
	else if (subj_ieq_prefix(s, i, "fw"))
		i += 2;
	else
		return 0;
	while (i < s->len && s->p[i] == ' ')
		i++;
	i += subj_blob_len(s, i);
	if (i >= s->len || s->p[i] != ':')
		return 0;
	return i + 1;
}

int sora_msg_base_subject(struct sora_str subject, struct sora_buf *out)
{
	struct sora_buf norm;
	struct subj s;
	bool space = false;
	int rc;

	/* Step 1: white space runs (including folds) become one space. */
	sora_buf_init(&norm, 0);
	for (size_t i = 0; i < subject.len; i++) {
		char ch = subject.p[i];

		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
			space = true;
			continue;
		}
		if (space && sora_buf_append(&norm, " ", 1) < 0)
			goto fail;
		space = false;
		if (sora_buf_append(&norm, &ch, 1) < 0)
			goto fail;
	}
	if (space && sora_buf_append(&norm, " ", 1) < 0)
		goto fail;
	s.p = norm.data != NULL ? norm.data : "";
	s.len = norm.len;

	for (;;) {
		bool changed;

		subj_strip_trailers(&s);                              /* step 2 */
		do {                                                  /* steps 3-5 */
			size_t n = subj_leader_len(&s);

			changed = false;
			if (n > 0) {
				s.p += n;
				s.len -= n;
				changed = true;
			}
			/* Step 4, for every leading blob at once: once a
			 * run of blobs is not followed by a subj-refwd (the
			 * leader check above just failed), it is not after
			 * removing the first of them either, so the steps
			 * would only remove them one by one -- rescanning
			 * the run each time, quadratic in hostile subjects
			 * such as 64 KiB of "[a]". */
			while ((n = subj_blob_len(&s, 0)) > 0 && n < s.len) {
				s.p += n;
				s.len -= n;
				changed = true;
			}
		} while (changed);
		/* Step 6: "[fwd:" ... "]" wraps a forwarded subject. */
		if (s.len >= 6 && subj_ieq_prefix(&s, 0, "[fwd:") && s.p[s.len - 1] == ']') {
			s.p += 5;
			s.len -= 6;
			continue;
		}
		break;
	}
	rc = sora_buf_append(out, s.p, s.len);
	sora_buf_free(&norm);
	return rc;
fail:
	sora_buf_free(&norm);
	return -1;
}

/* ---- transfer encodings ---- */

void sora_msg_cte_init(struct sora_msg_cte_decoder *d, struct sora_str encoding)
{
	memset(d, 0, sizeof(*d));
	if (encoding.p != NULL && sora_str_ieq_c(encoding, "base64"))
		d->cte = SORA_MSG_CTE_BASE64;
	else if (encoding.p != NULL && sora_str_ieq_c(encoding, "quoted-printable"))
		d->cte = SORA_MSG_CTE_QP;
	else
		d->cte = SORA_MSG_CTE_IDENTITY;
}

static int b64_feed(struct sora_msg_cte_decoder *d, const unsigned char *in, size_t len,
		    struct sora_buf *out)
{
	char chunk[256];
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		int v;

		/* Padding ends the encoded data; what follows is ignored, as
		 * in most mail readers. */
		if (in[i] == '=')
			d->b64_end = true;
		if (d->b64_end)
			continue;
		v = sora_mime_b64_value(in[i]);
		if (v < 0)
			continue;
		d->bits = (d->bits << 6) | (uint32_t)v;
		d->nbits += 6;
		if (d->nbits >= 8) {
			d->nbits -= 8;
			chunk[n++] = (char)((d->bits >> d->nbits) & 0xff);
			d->bits &= (1u << d->nbits) - 1;
			if (n == sizeof(chunk)) {
				if (sora_buf_append(out, chunk, n) < 0)
					return -1;
				n = 0;
			}
		}
	}
	return sora_buf_append(out, chunk, n);
}

/* Quoted-printable (RFC 2045 6.7), byte by byte so any split of the input
 * decodes the same:
 *  - "=XY" is the byte XY (hex, either case);
 *  - "=" at the end of a line, optionally followed by white space
 *    (transport padding), is a soft line break: nothing is output;
 *  - white space at the end of a line is dropped (rule 3);
 *  - anything else after "=" is kept as it was ("= x", "=G1").
 * Line ends are kept as they came (CRLF or a bare LF). White space is
 * held in ws until the next byte says whether it was trailing; a run
 * longer than ws is passed on in pieces (such lines are not QP anyway). */
enum { QP_TEXT = 0, QP_CR, QP_EQ, QP_EQ_HEX, QP_EQ_WS, QP_EQ_CR };

static int qp_out(struct sora_buf *out, const void *p, size_t n)
{
	return n > 0 ? sora_buf_append(out, p, n) : 0;
}

static int qp_flush_ws(struct sora_msg_cte_decoder *d, struct sora_buf *out)
{
	int rc = qp_out(out, d->ws, d->nws);

	d->nws = 0;
	return rc;
}

static int qp_byte(struct sora_msg_cte_decoder *d, unsigned char c, struct sora_buf *out)
{
	for (;;) {
		switch (d->qp_state) {
		case QP_TEXT:
			if (c == ' ' || c == '\t') {
				if (d->nws == sizeof(d->ws) && qp_flush_ws(d, out) < 0)
					return -1;
				d->ws[d->nws++] = (char)c;
				return 0;
			}
			if (c == '\r') {
				d->qp_state = QP_CR;
				return 0;
			}
			if (c == '\n') {
				d->nws = 0;
				return qp_out(out, "\n", 1);
			}
			if (qp_flush_ws(d, out) < 0)
				return -1;
			if (c == '=') {
				d->qp_state = QP_EQ;
				d->npend = 0;
				return 0;
			}
			return qp_out(out, &c, 1);
		case QP_CR:
			d->qp_state = QP_TEXT;
			if (c == '\n') {
				d->nws = 0;
				return qp_out(out, "\r\n", 2);
			}
			if (qp_flush_ws(d, out) < 0 || qp_out(out, "\r", 1) < 0)
				return -1;
			continue;     /* c again, as text */
		case QP_EQ:
			if (sora_hex_value(c) >= 0) {
				d->pend[0] = (char)c;
				d->qp_state = QP_EQ_HEX;
				return 0;
			}
			if (c == ' ' || c == '\t') {
				d->ws[0] = (char)c;
				d->nws = 1;
				d->qp_state = QP_EQ_WS;
				return 0;
			}
			if (c == '\r') {
				d->qp_state = QP_EQ_CR;
				return 0;
			}
			d->qp_state = QP_TEXT;
			if (c == '\n')
				return 0;     /* soft line break */
			if (qp_out(out, "=", 1) < 0)
				return -1;
			continue;
		case QP_EQ_HEX:
			d->qp_state = QP_TEXT;
			if (sora_hex_value(c) >= 0) {
				char ch = (char)(sora_hex_value((unsigned char)d->pend[0]) * 16 + sora_hex_value(c));

				return qp_out(out, &ch, 1);
			}
			if (qp_out(out, "=", 1) < 0 || qp_out(out, d->pend, 1) < 0)
				return -1;
			continue;
		case QP_EQ_WS:
			if (c == ' ' || c == '\t') {
				if (d->nws < sizeof(d->ws)) {
					d->ws[d->nws++] = (char)c;
					return 0;
				}
				/* Not padding any more: keep it all. */
				d->qp_state = QP_TEXT;
				if (qp_out(out, "=", 1) < 0)
					return -1;
				continue;
			}
			if (c == '\r') {
				d->nws = 0;
				d->qp_state = QP_EQ_CR;
				return 0;
			}
			if (c == '\n') {
				d->nws = 0;
				d->qp_state = QP_TEXT;
				return 0;     /* soft line break after padding */
			}
			d->qp_state = QP_TEXT;
			if (qp_out(out, "=", 1) < 0 || qp_flush_ws(d, out) < 0)
				return -1;
			continue;
		case QP_EQ_CR:
			d->qp_state = QP_TEXT;
			if (c == '\n')
				return 0;     /* soft line break */
			if (qp_out(out, "=\r", 2) < 0)
				return -1;
			continue;
		}
		return 0;
	}
}

static int qp_feed(struct sora_msg_cte_decoder *d, const unsigned char *in, size_t len,
		   struct sora_buf *out)
{
	for (size_t i = 0; i < len; i++) {
		/* Fast path: plain text outside any pending state. */
		if (d->qp_state == QP_TEXT && d->nws == 0) {
			size_t run = 0;

			while (i + run < len && in[i + run] != '=' && in[i + run] != ' ' &&
			       in[i + run] != '\t' && in[i + run] != '\r' && in[i + run] != '\n')
				run++;
			if (run > 0) {
				if (qp_out(out, in + i, run) < 0)
					return -1;
				i += run;
				if (i == len)
					break;
			}
		}
		if (qp_byte(d, in[i], out) < 0)
			return -1;
	}
	return 0;
}

int sora_msg_cte_feed(struct sora_msg_cte_decoder *d, const void *in, size_t len,
		      struct sora_buf *out)
{
	switch (d->cte) {
	case SORA_MSG_CTE_BASE64:
		return b64_feed(d, in, len, out);
	case SORA_MSG_CTE_QP:
		return qp_feed(d, in, len, out);
	case SORA_MSG_CTE_IDENTITY:
		break;
	}
	return sora_buf_append(out, in, len);
}

int sora_msg_cte_finish(struct sora_msg_cte_decoder *d, struct sora_buf *out)
{
	int rc = 0;

	/* An escape cut off by the end of the part is kept as it was; white
	 * space at the very end is trailing, so dropped. */
	if (d->cte == SORA_MSG_CTE_QP) {
		switch (d->qp_state) {
		case QP_CR:
			rc = qp_out(out, "\r", 1);
			break;
		case QP_EQ:
		case QP_EQ_WS:
			rc = qp_out(out, "=", 1);
			break;
		case QP_EQ_HEX:
			rc = qp_out(out, "=", 1) < 0 ? -1 : qp_out(out, d->pend, 1);
			break;
		case QP_EQ_CR:
			rc = qp_out(out, "=\r", 2);
			break;
		default:
			break;
		}
	}
	d->qp_state = QP_TEXT;
	d->nws = 0;
	d->npend = 0;
	d->nbits = 0;
	d->bits = 0;
	return rc;
}

/* ---- header fields ---- */

void sora_msg_meta_init(struct sora_msg_meta *meta)
{
	memset(meta, 0, sizeof(*meta));
	sora_buf_init(&meta->subject, 0);
	sora_buf_init(&meta->message_id, 0);
	sora_buf_init(&meta->in_reply_to, 0);
	sora_buf_init(&meta->references, 0);
	sora_buf_init(&meta->from_text, 0);
	sora_buf_init(&meta->to_text, 0);
	sora_buf_init(&meta->cc_text, 0);
	sora_buf_init(&meta->bcc_text, 0);
	sora_buf_init(&meta->sort_subject, 0);
	sora_buf_init(&meta->sort_from, 0);
	sora_buf_init(&meta->sort_to, 0);
	sora_buf_init(&meta->sort_cc, 0);
	sora_buf_init(&meta->sort_display_from, 0);
	sora_buf_init(&meta->sort_display_to, 0);
	sora_buf_init(&meta->text_body, 0);
}

void sora_msg_meta_free(struct sora_msg_meta *meta)
{
	sora_buf_free(&meta->subject);
	sora_buf_free(&meta->message_id);
	sora_buf_free(&meta->in_reply_to);
	sora_buf_free(&meta->references);
	sora_buf_free(&meta->from_text);
	sora_buf_free(&meta->to_text);
	sora_buf_free(&meta->cc_text);
	sora_buf_free(&meta->bcc_text);
	sora_buf_free(&meta->sort_subject);
	sora_buf_free(&meta->sort_from);
	sora_buf_free(&meta->sort_to);
	sora_buf_free(&meta->sort_cc);
	sora_buf_free(&meta->sort_display_from);
	sora_buf_free(&meta->sort_display_to);
	sora_buf_free(&meta->text_body);
}

/* Appends a raw header value, cleaned and capped. A NULL value is "". */
static int put_raw(struct sora_buf *out, struct sora_str v)
{
	if (v.p == NULL)
		return 0;
	return utf8_clean_capped(v, SORA_MSG_FIELD_MAX, out);
}

/* Appends a header value with its encoded words decoded. */
static int put_decoded(struct sora_buf *out, struct sora_str v)
{
	struct sora_buf tmp;
	int rc;

	if (v.p == NULL)
		return 0;
	sora_buf_init(&tmp, 0);
	rc = sora_mime_decode_header(v, SORA_MIME_DECODE_VALID_UTF8, &tmp);
	if (rc == 0)
		rc = utf8_clean_capped(sora_buf_str(&tmp), SORA_MSG_FIELD_MAX, out);
	sora_buf_free(&tmp);
	return rc;
}

/* A part the address parser filled in for a broken address (as Dovecot
 * does for ENVELOPE): not something to sort by. */
static bool placeholder(const struct sora_mime_address *a, struct sora_str v)
{
	return a->invalid && (sora_str_eq(v, sora_str_c("MISSING_MAILBOX")) ||
			      sora_str_eq(v, sora_str_c("MISSING_DOMAIN")) || sora_str_eq(v, sora_str_c("SYNTAX_ERROR")));
}

/* RFC 5256 2.2: the addr-mailbox of the first address as IMAP's ENVELOPE
 * lists it. A group's start marker comes first there, and its
 * addr-mailbox is the group name (a phrase, so encoded words are
 * decoded), which is what Dovecot sorts by too. */
static int put_sort_mailbox(struct sora_buf *out, const struct sora_mime_address *list)
{
	const struct sora_mime_address *a = list;

	if (a == NULL || a->mailbox.p == NULL || placeholder(a, a->mailbox))
		return 0;
	if (a->domain.p == NULL)
		return put_decoded(out, a->mailbox);
	return put_raw(out, a->mailbox);
}

/* RFC 5957 DISPLAY: the decoded display name of the first address, else
 * "mailbox@domain" (without the parts a broken address lacked); for a
 * group, its name. */
static int put_sort_display(struct sora_buf *out, const struct sora_mime_address *list)
{
	const struct sora_mime_address *a = list;
	struct sora_buf spec;
	int rc;

	if (a == NULL)
		return 0;
	if (a->domain.p == NULL)
		return a->mailbox.p != NULL ? put_decoded(out, a->mailbox) : 0;
	if (a->name.p != NULL && a->name.len > 0)
		return put_decoded(out, a->name);
	sora_buf_init(&spec, 0);
	rc = 0;
	if (a->mailbox.p != NULL && !placeholder(a, a->mailbox))
		rc = sora_buf_append(&spec, a->mailbox.p, a->mailbox.len);
	if (rc == 0 && a->domain.len > 0 && !placeholder(a, a->domain)) {
		rc = sora_buf_append(&spec, "@", 1);
		if (rc == 0)
			rc = sora_buf_append(&spec, a->domain.p, a->domain.len);
	}
	if (rc == 0)
		rc = put_raw(out, sora_buf_str(&spec));
	sora_buf_free(&spec);
	return rc;
}

/* Appends "\nName <local@domain>, <local2@domain2>": the addresses of a
 * list in normalised form, after the decoded header value, so a SEARCH
 * for "local@domain" matches however the header wrote it (Dovecot
 * searches the parsed addresses the same way). */
static int put_addresses(struct sora_buf *out, const struct sora_mime_address *list)
{
	struct sora_buf tmp;
	const char *sep = "\n";
	int rc = 0;

	if (list == NULL)
		return 0;
	sora_buf_init(&tmp, 0);
	for (const struct sora_mime_address *a = list; a != NULL && rc == 0; a = a->next) {
		if (a->domain.p == NULL || a->mailbox.p == NULL)
			continue;   /* group markers */
		rc = sora_buf_append_str(&tmp, sep);
		if (rc == 0 && a->name.p != NULL && a->name.len > 0) {
			rc = sora_mime_decode_header(a->name, SORA_MIME_DECODE_VALID_UTF8, &tmp);
			if (rc == 0)
				rc = sora_buf_append(&tmp, " ", 1);
		}
		if (rc == 0)
			rc = sora_buf_append(&tmp, "<", 1);
		if (rc == 0)
			rc = sora_buf_append(&tmp, a->mailbox.p, a->mailbox.len);
		if (rc == 0 && a->domain.len > 0) {
			rc = sora_buf_append(&tmp, "@", 1);
			if (rc == 0)
				rc = sora_buf_append(&tmp, a->domain.p, a->domain.len);
		}
		if (rc == 0)
			rc = sora_buf_append(&tmp, ">", 1);
		sep = ", ";
	}
	if (rc == 0)
		rc = utf8_clean_capped(sora_buf_str(&tmp), SORA_MSG_FIELD_MAX, out);
	sora_buf_free(&tmp);
	return rc;
}

int sora_msg_meta_headers(const struct sora_mime_message *msg, struct sora_msg_meta *meta)
{
	const struct sora_mime_part *root = msg->root;
	const struct sora_mime_envelope *env = root != NULL ? root->envelope : NULL;
	struct sora_str refs;
	int tz;

	if (env == NULL)
		return 0;
	meta->has_sent_date = false;
	if (sora_msg_date_parse(env->raw[SORA_MIME_ENV_DATE], &meta->sent_date, &tz) == 0) {
		meta->sent_tz_min = tz;
		/* PostgreSQL timestamps span years 4713 BC..294276 AD, IMAP
		 * clients 1..9999: keep what both can show. */
		const int64_t min_t = days_from_civil(1, 1, 1) * 86400;
		const int64_t max_t = days_from_civil(10000, 1, 1) * 86400 - 1;

		meta->has_sent_date = meta->sent_date >= min_t && meta->sent_date <= max_t;
	}
	if (put_decoded(&meta->subject, env->raw[SORA_MIME_ENV_SUBJECT]) < 0 ||
	    put_raw(&meta->message_id, env->raw[SORA_MIME_ENV_MESSAGE_ID]) < 0 ||
	    put_raw(&meta->in_reply_to, env->raw[SORA_MIME_ENV_IN_REPLY_TO]) < 0 ||
	    put_decoded(&meta->from_text, env->raw[SORA_MIME_ENV_FROM]) < 0 ||
	    put_addresses(&meta->from_text, env->addr[SORA_MIME_ENV_FROM]) < 0 ||
	    put_decoded(&meta->to_text, env->raw[SORA_MIME_ENV_TO]) < 0 ||
	    put_addresses(&meta->to_text, env->addr[SORA_MIME_ENV_TO]) < 0 ||
	    put_decoded(&meta->cc_text, env->raw[SORA_MIME_ENV_CC]) < 0 ||
	    put_addresses(&meta->cc_text, env->addr[SORA_MIME_ENV_CC]) < 0 ||
	    put_decoded(&meta->bcc_text, env->raw[SORA_MIME_ENV_BCC]) < 0 ||
	    put_addresses(&meta->bcc_text, env->addr[SORA_MIME_ENV_BCC]) < 0 ||
	    sora_msg_base_subject(sora_buf_str(&meta->subject), &meta->sort_subject) < 0 ||
	    put_sort_mailbox(&meta->sort_from, env->addr[SORA_MIME_ENV_FROM]) < 0 ||
	    put_sort_mailbox(&meta->sort_to, env->addr[SORA_MIME_ENV_TO]) < 0 ||
	    put_sort_mailbox(&meta->sort_cc, env->addr[SORA_MIME_ENV_CC]) < 0 ||
	    put_sort_display(&meta->sort_display_from, env->addr[SORA_MIME_ENV_FROM]) < 0 ||
	    put_sort_display(&meta->sort_display_to, env->addr[SORA_MIME_ENV_TO]) < 0)
		return -1;
	if (sora_mime_header_get(root, "References", &refs) && put_raw(&meta->references, refs) < 0)
		return -1;
	return 0;
}

/* ---- searchable text ---- */

struct text_ctx {
	sora_msg_read_cb *read;
	void *read_ctx;
	struct sora_msg_meta *meta;
	struct sora_buf raw;      /* decoded bytes of the current part */
	struct sora_buf conv;     /* the same in UTF-8 */
	char chunk[65536];
};

/* Bytes at the end of p[0..n) that begin a UTF-8 sequence the next read
 * may complete (at most 3), so that a chunk boundary never splits one. */
static size_t utf8_cut(const unsigned char *p, size_t n)
{
	for (size_t k = 1; k <= 3 && k <= n; k++) {
		unsigned char c = p[n - k];
		size_t need;

		if (c < 0x80)
			return 0;
		if ((c & 0xc0) == 0x80)
			continue;
		need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
		return need > k ? k : 0;
	}
	return 0;
}

/* A part whose bytes are its text (no transfer encoding, UTF-8, US-ASCII,
 * or a charset that is not converted): cleaned straight from the read
 * buffer into text_body, without the decode and conversion copies. The
 * result is the same as cleaning the whole part at once. */
static int text_part_direct(struct text_ctx *t, uint64_t off, uint64_t left,
			    struct sora_buf *body)
{
	size_t carry = 0;

	for (;;) {
		size_t want = sizeof(t->chunk) - carry, have, take;
		ssize_t n = 0;
		bool last;
		int rc;

		if (want > left)
			want = (size_t)left;
		if (want > 0) {
			n = t->read(t->read_ctx, off, t->chunk + carry, want);
			if (n < 0)
				return -1;
		}
		off += (uint64_t)n;
		left -= (uint64_t)n;
		have = carry + (size_t)n;
		last = left == 0 || n == 0;
		take = last ? have : have - utf8_cut((const unsigned char *)t->chunk, have);
		rc = utf8_clean_into(sora_str_make(t->chunk, take), SORA_MSG_TEXT_MAX, body);
		if (rc != 0 || last)
			return rc < 0 ? -1 : 0;
		carry = have - take;
		memmove(t->chunk, t->chunk + take, carry);
	}
}

/* Decodes one text part and appends it to text_body within the budget. */
static int text_part(struct text_ctx *t, const struct sora_mime_part *part)
{
	struct sora_buf *body = &t->meta->text_body;
	struct sora_msg_cte_decoder dec;
	const struct sora_mime_param *cs;
	uint64_t off = sora_mime_part_body_offset(part), left = part->body_size;
	bool convert;
	size_t budget;

	if (body->len >= SORA_MSG_TEXT_MAX)
		return 0;
	budget = SORA_MSG_TEXT_MAX - body->len;
	cs = sora_mime_param_find(part->params, part->param_count, "charset");
	/* Unknown charsets (and none) are kept if they are UTF-8 and cleaned
	 * otherwise: nothing is dropped that a search could still find. */
	convert = cs != NULL && sora_mime_charset_converts(cs->value);
	if (body->len > 0 && sora_buf_append(body, "\n", 1) < 0)
		return -1;
	sora_msg_cte_init(&dec, part->encoding);
	if (dec.cte == SORA_MSG_CTE_IDENTITY && !convert)
		return text_part_direct(t, off, left, body);
	sora_buf_reset(&t->raw);
	sora_buf_reset(&t->conv);
	/* Decoding never makes text more than 3 times longer after charset
	 * conversion (one byte to U+FFFD at most), so reading stops once the
	 * decoded bytes alone could fill the budget. */
	while (left > 0 && t->raw.len < budget) {
		size_t want = left < sizeof(t->chunk) ? (size_t)left : sizeof(t->chunk);
		ssize_t n = t->read(t->read_ctx, off, t->chunk, want);

		if (n < 0)
			return -1;
		if (n == 0)
			break;
		if (sora_msg_cte_feed(&dec, t->chunk, (size_t)n, &t->raw) < 0)
			return -1;
		off += (uint64_t)n;
		left -= (uint64_t)n;
	}
	if (sora_msg_cte_finish(&dec, &t->raw) < 0)
		return -1;
	if (convert) {
		if (sora_mime_charset_to_utf8(cs->value, t->raw.data != NULL ? t->raw.data : "",
					      t->raw.len, &t->conv) < 0)
			return -1;
		return utf8_clean_capped(sora_buf_str(&t->conv), SORA_MSG_TEXT_MAX, body);
	}
	return utf8_clean_capped(sora_buf_str(&t->raw), SORA_MSG_TEXT_MAX, body);
}

static int text_walk(struct text_ctx *t, const struct sora_mime_part *part)
{
	for (; part != NULL; part = part->next) {
		if (t->meta->text_body.len >= SORA_MSG_TEXT_MAX)
			return 0;
		if ((part->flags & (SORA_MIME_PART_MULTIPART | SORA_MIME_PART_MESSAGE)) != 0 &&
		    (part->flags & SORA_MIME_PART_LIMITED) == 0) {
			if (text_walk(t, part->children) < 0)
				return -1;
		} else if ((part->flags & SORA_MIME_PART_TEXT) != 0 &&
			   (part->flags & SORA_MIME_PART_LIMITED) == 0) {
			if (text_part(t, part) < 0)
				return -1;
		}
	}
	return 0;
}

int sora_msg_meta_text(const struct sora_mime_message *msg, sora_msg_read_cb *read_cb,
		       void *ctx, struct sora_msg_meta *meta)
{
	struct text_ctx *t;
	int rc;

	/* The 64 KiB read buffer lives on the heap: worker thread stacks are
	 * not meant for it. */
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -1;
	t->read = read_cb;
	t->read_ctx = ctx;
	t->meta = meta;
	sora_buf_init(&t->raw, 0);
	sora_buf_init(&t->conv, 0);
	sora_buf_reset(&meta->text_body);
	rc = msg->root != NULL ? text_walk(t, msg->root) : 0;
	sora_buf_free(&t->raw);
	sora_buf_free(&t->conv);
	free(t);
	return rc;
}

/* ---- offsets ---- */

static void shift_parts(struct sora_mime_part *part, int64_t delta)
{
	for (; part != NULL; part = part->next) {
		part->header_offset = (uint64_t)((int64_t)part->header_offset + delta);
		shift_parts(part->children, delta);
	}
}

void sora_msg_mime_shift(struct sora_mime_message *msg, int64_t delta)
{
	struct sora_mime_part *root = msg->root;

	msg->size = (uint64_t)((int64_t)msg->size + delta);
	msg->vsize = (uint64_t)((int64_t)msg->vsize + delta);
	if (root == NULL)
		return;
	/* The prefix is header lines: it lengthens the root's header and moves
	 * everything after it. The root itself still starts at offset 0. */
	root->header_size = (uint64_t)((int64_t)root->header_size + delta);
	root->header_vsize = (uint64_t)((int64_t)root->header_vsize + delta);
	shift_parts(root->children, delta);
}
