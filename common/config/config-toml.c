/* The TOML subset of the config file (see config-toml.h). */
#include "common/core/str.h"
#include "common/config/config-toml.h"

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An INI line being built; one byte more than inih keeps, so that a line
 * that would be cut can be noticed. */
struct out_line {
	char text[SORA_TOML_MAX_LINE + 2];
	size_t len;
	bool overflow;
};

struct prep {
	struct sora_toml_doc *doc;
	size_t storage_used;
	size_t tables_cap;
	int depth;              /* '[' nesting carried over from earlier lines */
	unsigned array_line;    /* where the open multi-line array began */
	unsigned line;          /* the line being prepared, 1-based */
	char *err;
	size_t errsize;
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_bare_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
		c == '_' || c == '-';
}

static const char *skip_space(const char *p, const char *end)
{
	while (p < end && is_space(*p))
		p++;
	return p;
}

static void out_add(struct out_line *o, const char *s, size_t n)
{
	if (o->len + n > SORA_TOML_MAX_LINE) {
		o->overflow = true;
		return;
	}
	memcpy(o->text + o->len, s, n);
	o->len += n;
	o->text[o->len] = '\0';
}

static void out_char(struct out_line *o, char c)
{
	out_add(o, &c, 1);
}

/* ---- step 0: bytes that never belong in a config file ---------------- */

/* Length of the UTF-8 sequence at p (at most `left` bytes), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *p, size_t left)
{
	unsigned char c = p[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	/* Overlong forms, surrogates and code points above U+10FFFF are
	 * excluded by narrowing the range of the second byte. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (left < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++) {
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	}
	return n;
}

static int check_bytes(struct prep *pp, const char *line, size_t len)
{
	const unsigned char *p = (const unsigned char *)line;

	for (size_t i = 0; i < len;) {
		size_t n;

		if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f) {
			sora_set_error(pp->err, pp->errsize,
				  "control character 0x%02x (only tabs are allowed)", p[i]);
			return -1;
		}
		n = utf8_seq_len(p + i, len - i);
		if (n == 0) {
			sora_set_error(pp->err, pp->errsize, "invalid UTF-8");
			return -1;
		}
		i += n;
	}
	return 0;
}

/* ---- step 1: one source line -> one INI line -------------------------- */

/* Copies value text to o up to a comment, tracking quotes and brackets.
 * inih would end the value at " ;" even inside quotes, so such a ';' is
 * written as the TOML escape \u003b, which decodes to the same byte. */
static int scan_value(struct prep *pp, const char *p, const char *end, struct out_line *o)
{
	bool in_string = false;

	for (; p < end; p++) {
		char c = *p;

		if (in_string) {
			if (c == '\\') {
				if (p + 1 >= end)
					break;
				out_add(o, p, 2);
				p++;
				continue;
			}
			if (c == '"')
				in_string = false;
			if (c == ';' && o->len > 0 && is_space(o->text[o->len - 1]))
				out_add(o, "\\u003b", 6);
			else
				out_char(o, c);
			continue;
		}
		if (c == '#')
			break;
		switch (c) {
		case '"':
			in_string = true;
			break;
		case '[':
			pp->depth++;
			break;
		case ']':
			if (--pp->depth < 0) {
				sora_set_error(pp->err, pp->errsize, "']' without a matching '['");
				return -1;
			}
			break;
		case '\'':
			sora_set_error(pp->err, pp->errsize,
				  "single-quoted strings are not supported; use \"...\"");
			return -1;
		case ';':
			sora_set_error(pp->err, pp->errsize,
				  "';' does not start a comment in this file format; use '#'");
			return -1;
		default:
			break;
		}
		out_char(o, c);
	}
	if (in_string) {
		sora_set_error(pp->err, pp->errsize,
			  "unterminated string (a string must end on the line it starts)");
		return -1;
	}
	while (o->len > 0 && is_space(o->text[o->len - 1]))
		o->text[--o->len] = '\0';
	return 0;
}

static int add_table(struct prep *pp, const char *name, size_t name_len, bool is_array)
{
	struct sora_toml_doc *doc = pp->doc;
	struct sora_toml_table *t;
	char *copy;

	if (doc->table_count == pp->tables_cap) {
		size_t cap = pp->tables_cap == 0 ? 16 : pp->tables_cap * 2;
		t = reallocarray(doc->tables, cap, sizeof(*t));
		if (t == NULL)
			goto nomem;
		doc->tables = t;
		pp->tables_cap = cap;
	}
	copy = malloc(name_len + 1);
	if (copy == NULL)
		goto nomem;
	memcpy(copy, name, name_len);
	copy[name_len] = '\0';
	t = &doc->tables[doc->table_count++];
	t->name = copy;
	t->is_array = is_array;
	t->line = pp->line;
	return 0;
nomem:
	sora_set_error(pp->err, pp->errsize, "out of memory");
	return -1;
}

/* "[a.b]" or "[[a.b]]", with optional spaces around the parts. */
static int prepare_header(struct prep *pp, const char *p, const char *end, struct out_line *o)
{
	char name[SORA_TOML_MAX_LINE + 1];
	size_t name_len = 0;
	bool is_array;
	char idx[32];

	p++;
	is_array = p < end && *p == '[';
	if (is_array)
		p++;
	for (;;) {
		const char *start;

		p = skip_space(p, end);
		if (p < end && (*p == '"' || *p == '\'')) {
			sora_set_error(pp->err, pp->errsize, "quoted table names are not supported");
			return -1;
		}
		start = p;
		while (p < end && is_bare_char(*p))
			p++;
		if (p == start) {
			sora_set_error(pp->err, pp->errsize,
				  "invalid table name (use letters, digits, '_' and '-', "
				  "parts separated by '.')");
			return -1;
		}
		if (name_len > 0)
			name[name_len++] = '.';
		memcpy(name + name_len, start, (size_t)(p - start));
		name_len += (size_t)(p - start);
		p = skip_space(p, end);
		if (p < end && *p == '.') {
			p++;
			continue;
		}
		break;
	}
	if (p >= end || *p != ']' || (is_array && (p + 1 >= end || p[1] != ']'))) {
		sora_set_error(pp->err, pp->errsize, is_array ?
			  "table header must end with ']]'" : "table header must end with ']'");
		return -1;
	}
	p += is_array ? 2 : 1;
	p = skip_space(p, end);
	if (p < end && *p != '#') {
		sora_set_error(pp->err, pp->errsize, "unexpected text after the table header");
		return -1;
	}
	if (add_table(pp, name, name_len, is_array) < 0)
		return -1;
	snprintf(idx, sizeof(idx), "[%zu]", pp->doc->table_count - 1);
	out_add(o, idx, strlen(idx));
	return 0;
}

static int prepare_key(struct prep *pp, const char *p, const char *end,
		       struct out_line *o, enum sora_toml_line_kind *kind_r)
{
	const char *key = p;
	size_t key_len;

	if (*p == '"' || *p == '\'') {
		sora_set_error(pp->err, pp->errsize, "quoted keys are not supported");
		return -1;
	}
	while (p < end && is_bare_char(*p))
		p++;
	key_len = (size_t)(p - key);
	p = skip_space(p, end);
	if (key_len > 0 && p < end && *p == '.') {
		sora_set_error(pp->err, pp->errsize,
			  "dotted keys are not supported; write a [table] header instead");
		return -1;
	}
	if (key_len == 0 || p >= end || *p != '=') {
		sora_set_error(pp->err, pp->errsize, "expected 'key = value' or a [table] header");
		return -1;
	}
	p = skip_space(p + 1, end);
	if (p >= end || *p == '#') {
		sora_set_error(pp->err, pp->errsize, "missing value for key '%.*s'",
			  (int)key_len, key);
		return -1;
	}
	out_add(o, key, key_len);
	out_char(o, '=');
	if (scan_value(pp, p, end, o) < 0)
		return -1;
	if (pp->depth > 0) {
		pp->array_line = pp->line;
		*kind_r = SORA_TOML_KEY_OPEN;
	} else {
		*kind_r = SORA_TOML_KEY;
	}
	return 0;
}

/* A line inside a multi-line array. inih treats an indented line after a
 * key as a continuation and passes it to the handler under that key. */
static int prepare_continuation(struct prep *pp, const char *p, const char *end,
				struct out_line *o, enum sora_toml_line_kind *kind_r)
{
	p = skip_space(p, end);
	/* Arrays hold strings only, so a '[' first on a line is no element but
	 * most likely a table header after a missing ']'. */
	if (p < end && *p == '[') {
		sora_set_error(pp->err, pp->errsize,
			  "the array started on line %u is not closed (missing ']') "
			  "before this line", pp->array_line);
		return -1;
	}
	out_char(o, ' ');
	if (scan_value(pp, p, end, o) < 0)
		return -1;
	if (o->len == 1) {
		/* Only a comment or nothing: inih skips blank lines and keeps
		 * the array's key for the lines after it. */
		o->len = 0;
		o->text[0] = '\0';
		*kind_r = SORA_TOML_BLANK;
	} else {
		*kind_r = pp->depth > 0 ? SORA_TOML_CONT : SORA_TOML_CONT_END;
	}
	return 0;
}

static int prepare_line(struct prep *pp, const char *line, size_t len)
{
	const char *end = line + len;
	const char *p;
	struct out_line o = { .len = 0, .overflow = false };
	enum sora_toml_line_kind kind = SORA_TOML_BLANK;
	struct sora_toml_line *out = &pp->doc->lines[pp->line - 1];
	int ret = -1;

	o.text[0] = '\0';
	if (pp->line == 1 && len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
		line += 3;
		len -= 3;
	}
	if (len > SORA_TOML_MAX_LINE) {
		sora_set_error(pp->err, pp->errsize,
			  "line too long (%zu characters; the limit is %d)",
			  len, SORA_TOML_MAX_LINE);
		goto out;
	}
	if (check_bytes(pp, line, len) < 0)
		goto out;

	p = skip_space(line, end);
	if (pp->depth > 0) {
		if (prepare_continuation(pp, p, end, &o, &kind) < 0)
			goto out;
	} else if (p == end || *p == '#') {
		kind = SORA_TOML_BLANK;
	} else if (*p == '[') {
		if (prepare_header(pp, p, end, &o) < 0)
			goto out;
		kind = SORA_TOML_TABLE;
	} else if (prepare_key(pp, p, end, &o, &kind) < 0) {
		goto out;
	}
	if (o.overflow) {
		sora_set_error(pp->err, pp->errsize,
			  "line too long (over %d characters once a ';' in a string "
			  "is escaped as \\u003b)", SORA_TOML_MAX_LINE);
		goto out;
	}
	out->kind = kind;
	out->text = pp->doc->storage + pp->storage_used;
	memcpy(pp->doc->storage + pp->storage_used, o.text, o.len + 1);
	pp->storage_used += o.len + 1;
	ret = 0;
out:
	sodium_memzero(o.text, sizeof(o.text));
	return ret;
}

/* The storage an INI line can need: at most six bytes per source byte
 * (";" becomes "\u003b") plus a few, and never more than inih's limit. */
static size_t line_storage(size_t len)
{
	size_t n = len * 6 + 16;
	return n < SORA_TOML_MAX_LINE + 1 ? n : SORA_TOML_MAX_LINE + 1;
}

int sora_toml_prepare(const char *text, size_t len, struct sora_toml_doc *doc,
		      unsigned *line_r, char *err, size_t errsize)
{
	struct prep pp = { .doc = doc, .err = err, .errsize = errsize };
	size_t lines = 0, storage = 0, start;

	memset(doc, 0, sizeof(*doc));
	*line_r = 0;
	if (len > SORA_TOML_MAX_TEXT) {
		sora_set_error(err, errsize, "config file too large (over %d bytes)",
			  SORA_TOML_MAX_TEXT);
		return -1;
	}

	/* Size everything up front, so that realloc never leaves copies of
	 * the text (passwords, keys) behind in freed memory. */
	start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len && i == start)
			break;
		if (i == len || text[i] == '\n') {
			lines++;
			storage += line_storage(i - start);
			start = i + 1;
		}
	}
	doc->lines = calloc(lines > 0 ? lines : 1, sizeof(*doc->lines));
	doc->storage = malloc(storage > 0 ? storage : 1);
	if (doc->lines == NULL || doc->storage == NULL) {
		sora_set_error(err, errsize, "out of memory");
		goto fail;
	}
	doc->line_count = lines;
	doc->storage_size = storage > 0 ? storage : 1;

	start = 0;
	for (size_t i = 0; i < lines; i++) {
		const char *nl = memchr(text + start, '\n', len - start);
		size_t end = nl != NULL ? (size_t)(nl - text) : len;
		size_t line_len = end - start;

		if (line_len > 0 && text[end - 1] == '\r')
			line_len--;
		pp.line = (unsigned)(i + 1);
		if (prepare_line(&pp, text + start, line_len) < 0) {
			*line_r = pp.line;
			goto fail;
		}
		start = end + 1;
	}
	if (pp.depth > 0) {
		sora_set_error(err, errsize, "array not closed (missing ']')");
		*line_r = pp.array_line;
		goto fail;
	}
	return 0;
fail:
	sora_toml_doc_free(doc);
	return -1;
}

void sora_toml_doc_free(struct sora_toml_doc *doc)
{
	for (size_t i = 0; i < doc->table_count; i++)
		free(doc->tables[i].name);
	free(doc->tables);
	if (doc->storage != NULL)
		sodium_memzero(doc->storage, doc->storage_size);
	free(doc->storage);
	free(doc->lines);
	memset(doc, 0, sizeof(*doc));
}

/* ---- step 2: values --------------------------------------------------- */

const char *sora_toml_kind_name(enum sora_toml_kind kind)
{
	switch (kind) {
	case SORA_TOML_STRING:  return "a string";
	case SORA_TOML_INTEGER: return "an integer";
	case SORA_TOML_FLOAT:   return "a decimal number";
	case SORA_TOML_BOOL:    return "a boolean";
	case SORA_TOML_ARRAY:   return "an array";
	}
	return "a value";
}

static size_t utf8_encode(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Decodes the basic string at *pp (which points at its opening quote)
 * into a new allocation. Decoded strings must not hold control
 * characters: values such as a hostname end up in protocol greetings,
 * where a CR or LF would let the config inject protocol lines. */
static int parse_string(const char **pp, char **str_r, char *err, size_t errsize)
{
	const char *p = *pp + 1;
	size_t cap = strlen(p) + 1, n = 0;
	char *s = malloc(cap);

	if (s == NULL) {
		sora_set_error(err, errsize, "out of memory");
		return -1;
	}
	for (;;) {
		char c = *p++;

		if (c == '\0') {
			sora_set_error(err, errsize, "unterminated string");
			goto fail;
		}
		if (c == '"')
			break;
		if (c != '\\') {
			if ((unsigned char)c < 0x20) {
				sora_set_error(err, errsize,
					  "control characters are not allowed in strings");
				goto fail;
			}
			s[n++] = c;
			continue;
		}
		c = *p++;
		if (c == '"' || c == '\\') {
			s[n++] = c;
		} else if (c == 'u' || c == 'U') {
			int digits = c == 'u' ? 4 : 8;
			uint32_t cp = 0;

			for (int i = 0; i < digits; i++) {
				int h = sora_hex_value((unsigned char)p[i]);
				if (h < 0) {
					sora_set_error(err, errsize, "invalid \\%c escape (needs %d hex digits)",
						  c, digits);
					goto fail;
				}
				cp = (cp << 4) | (uint32_t)h;
			}
			p += digits;
			if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
				sora_set_error(err, errsize, "invalid Unicode code point in escape");
				goto fail;
			}
			if (cp < 0x20 || cp == 0x7f) {
				sora_set_error(err, errsize,
					  "control characters are not allowed in strings");
				goto fail;
			}
			/* Six escape characters never decode to more than four
			 * bytes, so the output stays within cap. */
			n += utf8_encode(cp, s + n);
		} else if (c == 'b' || c == 't' || c == 'n' || c == 'f' || c == 'r') {
			sora_set_error(err, errsize, "control characters are not allowed in strings");
			goto fail;
		} else {
			sora_set_error(err, errsize, "invalid escape sequence in string");
			goto fail;
		}
	}
	s[n] = '\0';
	*pp = p;
	*str_r = s;
	return 0;
fail:
	sodium_memzero(s, cap);
	free(s);
	return -1;
}

static int parse_array(const char **pp, struct sora_toml_value *v, char *err, size_t errsize)
{
	const char *p = *pp + 1;
	size_t cap = 0;

	v->kind = SORA_TOML_ARRAY;
	v->items = calloc(1, sizeof(*v->items));
	if (v->items == NULL)
		goto nomem;
	cap = 1;
	for (;;) {
		char *item;

		while (is_space(*p))
			p++;
		if (*p == ']')
			break;
		if (*p != '"') {
			sora_set_error(err, errsize, "arrays may only hold strings (element %zu)",
				  v->count + 1);
			return -1;
		}
		if (parse_string(&p, &item, err, errsize) < 0)
			return -1;
		if (v->count + 2 > cap) {
			char **items = reallocarray(v->items, cap * 2, sizeof(*items));
			if (items == NULL) {
				sodium_memzero(item, strlen(item));
				free(item);
				goto nomem;
			}
			v->items = items;
			cap *= 2;
		}
		v->items[v->count++] = item;
		v->items[v->count] = NULL;
		while (is_space(*p))
			p++;
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p == ']')
			break;
		sora_set_error(err, errsize, "expected ',' or ']' after array element %zu", v->count);
		return -1;
	}
	*pp = p + 1;
	return 0;
nomem:
	sora_set_error(err, errsize, "out of memory");
	return -1;
}

/* Integers: [+-]digits with single '_' between digits. Decimals: the same
 * followed by '.' and digits (used by delay_multiplier). */
static int parse_number(const char **pp, struct sora_toml_value *v, char *err, size_t errsize)
{
	const char *p = *pp;
	char digits[64];
	size_t n = 0;
	bool negative = *p == '-';
	uint64_t value = 0, limit;

	if (*p == '+' || *p == '-')
		digits[n++] = *p++;
	if (!is_digit(*p))
		goto invalid;
	limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (;;) {
		unsigned d;

		if (*p == '_' && n > 0 && is_digit(p[-1]) && is_digit(p[1])) {
			p++;
			continue;
		}
		if (!is_digit(*p))
			break;
		d = (unsigned)(*p - '0');
		if (value > (limit - d) / 10) {
			sora_set_error(err, errsize, "integer out of range");
			return -1;
		}
		value = value * 10 + d;
		if (n + 1 < sizeof(digits))
			digits[n++] = *p;
		p++;
	}
	if (*p == '.') {
		char *end;

		if (!is_digit(p[1]))
			goto invalid;
		if (n + 1 < sizeof(digits))
			digits[n++] = *p;
		for (p++; is_digit(*p); p++) {
			if (n + 1 < sizeof(digits))
				digits[n++] = *p;
		}
		digits[n] = '\0';
		errno = 0;
		v->number = strtod(digits, &end);
		if (errno != 0 || *end != '\0' || !isfinite(v->number)) {
			sora_set_error(err, errsize, "number out of range");
			return -1;
		}
		v->kind = SORA_TOML_FLOAT;
	} else {
		v->kind = SORA_TOML_INTEGER;
		v->integer = negative ? (int64_t)(0 - value) : (int64_t)value;
	}
	*pp = p;
	return 0;
invalid:
	sora_set_error(err, errsize, "invalid number");
	return -1;
}

static bool word_at(const char *p, const char *word)
{
	size_t n = strlen(word);
	return strncmp(p, word, n) == 0 && !is_bare_char(p[n]);
}

int sora_toml_value_parse(const char *text, struct sora_toml_value *v,
			  char *err, size_t errsize)
{
	const char *p = text;
	int ret = -1;

	memset(v, 0, sizeof(*v));
	while (is_space(*p))
		p++;
	if (*p == '"') {
		v->kind = SORA_TOML_STRING;
		ret = parse_string(&p, &v->string, err, errsize);
	} else if (*p == '[') {
		ret = parse_array(&p, v, err, errsize);
	} else if (word_at(p, "true") || word_at(p, "false")) {
		v->kind = SORA_TOML_BOOL;
		v->boolean = *p == 't';
		p += v->boolean ? 4 : 5;
		ret = 0;
	} else if (is_digit(*p) || ((*p == '-' || *p == '+') && is_digit(p[1]))) {
		ret = parse_number(&p, v, err, errsize);
	} else if (*p == '\0') {
		sora_set_error(err, errsize, "missing value");
	} else {
		sora_set_error(err, errsize, "invalid value (strings must be in double quotes)");
	}
	if (ret == 0) {
		while (is_space(*p))
			p++;
		if (*p != '\0') {
			sora_set_error(err, errsize, "unexpected text after the value");
			ret = -1;
		}
	}
	if (ret < 0)
		sora_toml_value_free(v);
	return ret;
}

void sora_toml_strings_free(char **items)
{
	if (items == NULL)
		return;
	for (size_t i = 0; items[i] != NULL; i++) {
		sodium_memzero(items[i], strlen(items[i]));
		free(items[i]);
	}
	free(items);
}

void sora_toml_value_free(struct sora_toml_value *v)
{
	if (v->string != NULL) {
		sodium_memzero(v->string, strlen(v->string));
		free(v->string);
	}
	sora_toml_strings_free(v->items);
	memset(v, 0, sizeof(*v));
}
