/* RFC 822/5322 lexical scanning and the MIME field grammars (Content-Type,
 * Content-Disposition, Content-Transfer-Encoding, Content-Language and
 * parameters with RFC 2231 sections).
 *
 * The scanner mirrors what Dovecot's rfc822-parser does with malformed
 * input, including its error recovery, because IMAP clients see Dovecot's
 * answers every day and ours should not differ on the same message; the
 * golden tests compare the two. */
#include "common/proto/mime/mime-private.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* RFC 5322 atext, plus every 8-bit byte so UTF-8 (RFC 6532) and legacy
 * 8-bit text survive as words. */
static const char atext_specials[] = "!#$%&'*+-/=?^_`{|}~";

bool mime_is_atext(unsigned char c)
{
	if (c >= 0x80)
		return true;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr(atext_specials, c) != NULL;
}

/* RFC 2045 token: atext without the tspecials '/', '=', '?', plus '.'. */
static bool is_token_char(unsigned char c)
{
	if (c == '.')
		return true;
	return mime_is_atext(c) && c != '/' && c != '=' && c != '?';
}

static void lex_append(struct mime_lex *lex, struct sora_buf *out, const unsigned char *p, size_t n)
{
	if (n > 0 && sora_buf_append(out, p, n) < 0)
		lex->oom = true;
}

void mime_lex_init(struct mime_lex *lex, struct sora_str input, struct sora_buf *last_comment)
{
	lex->data = (const unsigned char *)input.p;
	lex->end = lex->data + input.len;
	if (input.p == NULL)
		lex->data = lex->end = (const unsigned char *)"";
	lex->last_comment = last_comment;
	lex->oom = false;
}

static int lex_skip_comment(struct mime_lex *lex)
{
	const unsigned char *start;
	int level = 1;

	if (lex->last_comment != NULL)
		lex->last_comment->len = 0;
	start = ++lex->data;
	for (; lex->data < lex->end; lex->data++) {
		switch (*lex->data) {
		case '(':
			level++;
			break;
		case ')':
			if (--level == 0) {
				if (lex->last_comment != NULL)
					lex_append(lex, lex->last_comment, start,
						   (size_t)(lex->data - start));
				lex->data++;
				return lex->data < lex->end ? 1 : 0;
			}
			break;
		case '\\':
			lex->data++;
			if (lex->data >= lex->end)
				return -1;
			if (lex->last_comment != NULL) {
				lex_append(lex, lex->last_comment, start,
					   (size_t)(lex->data - start - 1));
				start = lex->data;
			}
			break;
		default:
			break;
		}
	}
	return -1;
}

int mime_lex_skip_cfws(struct mime_lex *lex)
{
	while (lex->data < lex->end) {
		unsigned char c = *lex->data;

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			lex->data++;
			continue;
		}
		if (c != '(')
			break;
		if (lex_skip_comment(lex) < 0)
			return -1;
	}
	return lex->data < lex->end ? 1 : 0;
}

int mime_lex_quoted_string(struct mime_lex *lex, struct sora_buf *out)
{
	const unsigned char *start;
	size_t len;

	start = ++lex->data;
	for (; lex->data < lex->end; lex->data++) {
		switch (*lex->data) {
		case '"':
			lex_append(lex, out, start, (size_t)(lex->data - start));
			lex->data++;
			return mime_lex_skip_cfws(lex);
		case '\n':
			/* A fold inside the quotes: drop the line break. */
			len = (size_t)(lex->data - start);
			if (len > 0 && start[len - 1] == '\r')
				len--;
			lex_append(lex, out, start, len);
			start = lex->data + 1;
			break;
		case '\\':
			lex->data++;
			if (lex->data >= lex->end)
				return -1;
			lex_append(lex, out, start, (size_t)(lex->data - start - 1));
			start = lex->data;
			break;
		default:
			break;
		}
	}
	return -1;
}

int mime_lex_atom(struct mime_lex *lex, struct sora_buf *out)
{
	const unsigned char *start;

	if (lex->data >= lex->end || !mime_is_atext(*lex->data))
		return -1;
	for (start = lex->data++; lex->data < lex->end; lex->data++) {
		if (mime_is_atext(*lex->data))
			continue;
		lex_append(lex, out, start, (size_t)(lex->data - start));
		return mime_lex_skip_cfws(lex);
	}
	lex_append(lex, out, start, (size_t)(lex->data - start));
	return 0;
}

/* dot-atom, with CFWS allowed around the dots (obsolete syntax), for
 * domains. A dot must be followed by more atext: "b.", "b..c" and "b.,"
 * are errors (Dovecot 2.3 then reports the domain as missing). */
int mime_lex_dot_atom(struct mime_lex *lex, struct sora_buf *out)
{
	const unsigned char *start;
	int ret;

	if (lex->data >= lex->end || !mime_is_atext(*lex->data))
		return -1;
	for (start = lex->data++; lex->data < lex->end;) {
		if (mime_is_atext(*lex->data)) {
			lex->data++;
			continue;
		}
		lex_append(lex, out, start, (size_t)(lex->data - start));
		if ((ret = mime_lex_skip_cfws(lex)) <= 0)
			return ret;
		if (*lex->data != '.')
			return 1;
		lex->data++;
		lex_append(lex, out, (const unsigned char *)".", 1);
		if (mime_lex_skip_cfws(lex) <= 0 || !mime_is_atext(*lex->data))
			return -1;
		start = lex->data;
	}
	lex_append(lex, out, start, (size_t)(lex->data - start));
	return 0;
}

/* A local part's dot-atom as Dovecot reads it for ENVELOPE ("non-strict
 * dots"): dots may lead, trail or repeat ("a.", ".a", "a..b" are fine),
 * CFWS may follow an atom, but a dot must be followed by atext, another
 * dot or '@'. */
int mime_lex_local_dot_atom(struct mime_lex *lex, struct sora_buf *out)
{
	int ret = -1;

	do {
		while (*lex->data == '.') {
			lex_append(lex, out, (const unsigned char *)".", 1);
			lex->data++;
			if (lex->data >= lex->end) {
				/* The local part ended; the domain is missing. */
				return 0;
			}
			ret = 1;
		}
		if (*lex->data == '@')
			break;
		ret = mime_lex_atom(lex, out);
	} while (ret > 0 && *lex->data == '.');
	return ret;
}

int mime_lex_mime_token(struct mime_lex *lex, struct sora_buf *out)
{
	const unsigned char *start;

	for (start = lex->data; lex->data < lex->end; lex->data++) {
		if (is_token_char(*lex->data))
			continue;
		lex_append(lex, out, start, (size_t)(lex->data - start));
		return mime_lex_skip_cfws(lex);
	}
	lex_append(lex, out, start, (size_t)(lex->data - start));
	return 0;
}

/* An atom that may contain dots (obs-phrase); unlike dot_atom it keeps the
 * input as is instead of dropping the whitespace around dots. */
static int lex_atom_or_dot(struct mime_lex *lex, struct sora_buf *out)
{
	const unsigned char *start;

	for (start = lex->data; lex->data < lex->end; lex->data++) {
		if (mime_is_atext(*lex->data) || *lex->data == '.')
			continue;
		lex_append(lex, out, start, (size_t)(lex->data - start));
		return mime_lex_skip_cfws(lex);
	}
	lex_append(lex, out, start, (size_t)(lex->data - start));
	return 0;
}

/* phrase = 1*word / obs-phrase; words are joined with one space. Returns >0
 * also when no word was read (the caller looks at what follows). */
int mime_lex_phrase(struct mime_lex *lex, struct sora_buf *out)
{
	int ret;

	if (lex->data >= lex->end)
		return 0;
	if (*lex->data == '.')
		return -1;
	for (;;) {
		if (*lex->data == '"')
			ret = mime_lex_quoted_string(lex, out);
		else
			ret = lex_atom_or_dot(lex, out);
		if (ret <= 0)
			return ret;
		if (!mime_is_atext(*lex->data) && *lex->data != '"' && *lex->data != '.')
			break;
		lex_append(lex, out, (const unsigned char *)" ", 1);
	}
	return mime_lex_skip_cfws(lex);
}

static int lex_domain_literal(struct mime_lex *lex, struct sora_buf *out)
{
	const unsigned char *start;

	for (start = lex->data++; lex->data < lex->end; lex->data++) {
		if (*lex->data == '\\') {
			lex->data++;
			if (lex->data >= lex->end)
				break;
		} else if (*lex->data == ']') {
			lex->data++;
			lex_append(lex, out, start, (size_t)(lex->data - start));
			return mime_lex_skip_cfws(lex);
		}
	}
	return -1;
}

/* At '@': domain = dot-atom / domain-literal / obs-domain. */
int mime_lex_domain(struct mime_lex *lex, struct sora_buf *out)
{
	lex->data++;
	if (mime_lex_skip_cfws(lex) <= 0)
		return -1;
	if (*lex->data == '[')
		return lex_domain_literal(lex, out);
	return mime_lex_dot_atom(lex, out);
}

/* ---- parameter lists ---- */

void mime_param_list_init(struct mime_param_list *list)
{
	memset(list, 0, sizeof(*list));
	sora_buf_init(&list->data, 0);
}

void mime_param_list_free(struct mime_param_list *list)
{
	sora_buf_free(&list->data);
	free(list->items);
	memset(list, 0, sizeof(*list));
}

static void param_add(struct mime_param_list *list, const void *name, size_t name_len,
		      const void *value, size_t value_len)
{
	struct mime_param_ref *ref;

	if (list->oom)
		return;
	if (list->count == list->alloc) {
		unsigned int n = list->alloc == 0 ? 8 : list->alloc * 2;
		struct mime_param_ref *items = reallocarray(list->items, n, sizeof(*items));

		if (items == NULL) {
			list->oom = true;
			return;
		}
		list->items = items;
		list->alloc = n;
	}
	ref = &list->items[list->count];
	ref->name_off = list->data.len;
	ref->name_len = name_len;
	if (sora_buf_append(&list->data, name, name_len) < 0) {
		list->oom = true;
		return;
	}
	ref->value_off = list->data.len;
	ref->value_len = value_len;
	if (sora_buf_append(&list->data, value, value_len) < 0) {
		list->oom = true;
		return;
	}
	list->count++;
}

/* One ";" attribute "=" value. Returns 1 with key and value in the two
 * buffers, 0 at the end of input, -1 on a syntax error (the caller then
 * skips one byte and tries again, which is Dovecot's recovery). */
static int parse_one_param(struct mime_lex *lex, struct sora_buf *key, struct sora_buf *value)
{
	int ret;

	key->len = 0;
	value->len = 0;
	if (lex->data >= lex->end)
		return 0;
	if (*lex->data != ';')
		return -1;
	lex->data++;
	if (mime_lex_skip_cfws(lex) <= 0)
		return -1;
	if (mime_lex_mime_token(lex, key) <= 0)
		return -1;
	if (*lex->data != '=')
		return -1;
	lex->data++;
	if ((ret = mime_lex_skip_cfws(lex)) <= 0) {
		/* "name=" at the end: an empty value. */
	} else if (*lex->data == '"') {
		ret = mime_lex_quoted_string(lex, value);
	} else if (*lex->data == '=') {
		/* Broken but common: name==?utf-8?b?...?= (an encoded word
		 * without quotes). Take everything up to ';' or whitespace. */
		const unsigned char *start = lex->data;

		while (lex->data < lex->end && *lex->data != ';' && *lex->data != ' ' &&
		       *lex->data != '\t' && *lex->data != '\r' && *lex->data != '\n')
			lex->data++;
		if (sora_buf_append(value, start, (size_t)(lex->data - start)) < 0)
			lex->oom = true;
	} else {
		ret = mime_lex_mime_token(lex, value);
	}
	return ret < 0 ? -1 : 1;
}

struct rfc2231_section {
	size_t key_off, key_len;   /* base name, in the list's scratch buffer */
	size_t value_off, value_len;
	unsigned int idx;
	unsigned int order;        /* input position, for a stable sort */
	bool extended;
};

/* Compares the names of two sections, ASCII case-insensitively or not. */
static int rfc2231_key_cmp(const unsigned char *base, const struct rfc2231_section *x,
			   const struct rfc2231_section *y, bool icase)
{
	size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;

	for (size_t i = 0; i < n; i++) {
		unsigned char cx = base[x->key_off + i], cy = base[y->key_off + i];

		if (icase) {
			cx = mime_ascii_lower(cx);
			cy = mime_ascii_lower(cy);
		}
		if (cx != cy)
			return cx < cy ? -1 : 1;
	}
	if (x->key_len != y->key_len)
		return x->key_len < y->key_len ? -1 : 1;
	return 0;
}

/* Dovecot sorts the sections by name case-sensitively, then by index, but
 * groups them case-insensitively; its exact order matters because the
 * sections of a group that does not merge are listed in it. */
static int rfc2231_cmp(const void *a, const void *b, void *ctx)
{
	const struct rfc2231_section *x = a, *y = b;
	int r = rfc2231_key_cmp(ctx, x, y, false);

	if (r != 0)
		return r;
	if (x->idx != y->idx)
		return x->idx < y->idx ? -1 : 1;
	return x->order < y->order ? -1 : (x->order > y->order ? 1 : 0);
}

/* Lowercases the name part of the last parameter added. */
static void param_lower_last_name(struct mime_param_list *list)
{
	struct mime_param_ref *ref;

	if (list->oom || list->count == 0)
		return;
	ref = &list->items[list->count - 1];
	for (size_t i = 0; i < ref->name_len; i++) {
		char *c = &list->data.data[ref->name_off + i];
		*c = (char)mime_ascii_lower((unsigned char)*c);
	}
}

void mime_parse_params(struct mime_lex *lex, struct mime_param_list *list)
{
	struct sora_buf key, value, scratch, merged;
	struct rfc2231_section *secs = NULL;
	unsigned int nsecs = 0, asecs = 0;
	int ret;

	sora_buf_init(&key, 0);
	sora_buf_init(&value, 0);
	sora_buf_init(&scratch, 0);
	sora_buf_init(&merged, 0);

	while ((ret = parse_one_param(lex, &key, &value)) != 0) {
		/* An empty buffer has no data pointer at all. */
		const unsigned char *k = (const unsigned char *)(key.data != NULL ? key.data : "");
		const unsigned char *star, *p, *kend = k + key.len;
		struct rfc2231_section sec;

		if (ret < 0) {
			if (lex->data >= lex->end)
				break;
			lex->data++;
			continue;
		}
		star = key.len > 0 ? memchr(k, '*', key.len) : NULL;
		p = star;
		if (star != NULL) {
			/* "name*" is section 0. (Dovecot 2.3 reuses the index
			 * parsed last here, so "a*1=x; b*=y" shows b as b*1*;
			 * that is a bug we do not copy.) */
			memset(&sec, 0, sizeof(sec));
			if (p + 1 < kend) {
				p++;
				for (; p < kend && *p >= '0' && *p <= '9'; p++) {
					if (sec.idx < UINT_MAX / 10 - 10)
						sec.idx = sec.idx * 10 + (unsigned int)(*p - '0');
				}
			}
			if (p < kend && *p == '*') {
				sec.extended = true;
				p++;
			}
			if (p != kend) {
				p = NULL;
			} else {
				if (nsecs == asecs) {
					unsigned int n = asecs == 0 ? 8 : asecs * 2;
					struct rfc2231_section *ns = reallocarray(secs, n, sizeof(*ns));

					if (ns == NULL) {
						list->oom = true;
						goto out;
					}
					secs = ns;
					asecs = n;
				}
				sec.key_off = scratch.len;
				sec.key_len = (size_t)(star - k);
				sec.order = nsecs;
				if (sora_buf_append(&scratch, k, sec.key_len) < 0) {
					list->oom = true;
					goto out;
				}
				sec.value_off = scratch.len;
				sec.value_len = value.len;
				if (sora_buf_append(&scratch, value.data, value.len) < 0) {
					list->oom = true;
					goto out;
				}
				secs[nsecs++] = sec;
			}
		}
		if (p == NULL) {
			param_add(list, key.data, key.len, value.data, value.len);
			param_lower_last_name(list);
		}
	}
	if (nsecs == 0)
		goto out;

	/* Sections may come in any order: sort by name, then index. A name
	 * whose indexes are not exactly 0, 1, 2, ... is not merged; its
	 * sections are listed one by one under their original names. */
	qsort_r(secs, nsecs, sizeof(*secs), rfc2231_cmp, scratch.data);
	for (unsigned int i = 0, next; i < nsecs; i = next) {
		bool ok = true, have_extended = false;
		unsigned int j, want = 0;
		const char *base = scratch.data != NULL ? scratch.data : "";

		for (j = i; j < nsecs; j++) {
			if (rfc2231_key_cmp((const unsigned char *)base, &secs[i], &secs[j], true) != 0)
				break;
			if (secs[j].idx != want)
				ok = false;
			if (secs[j].extended)
				have_extended = true;
			want++;
		}
		next = j;
		if (!ok) {
			for (j = i; j < next; j++) {
				merged.len = 0;
				if (sora_buf_append(&merged, base + secs[j].key_off, secs[j].key_len) < 0 ||
				    sora_buf_printf(&merged, secs[j].extended ? "*%u*" : "*%u",
						    secs[j].idx) < 0) {
					list->oom = true;
					goto out;
				}
				param_add(list, merged.data, merged.len,
					  base + secs[j].value_off, secs[j].value_len);
				param_lower_last_name(list);
			}
			continue;
		}
		merged.len = 0;
		/* An unencoded first section in an encoded value gets an empty
		 * charset and language so the result stays decodable, and '%'
		 * in unencoded sections is escaped for the same reason. */
		if (!secs[i].extended && have_extended &&
		    sora_buf_append(&merged, "''", 2) < 0)
			list->oom = true;
		for (j = i; j < next && !list->oom; j++) {
			const char *v = base + secs[j].value_off;

			if (!secs[j].extended && have_extended) {
				for (size_t k = 0; k < secs[j].value_len; k++) {
					int r = v[k] == '%' ? sora_buf_append(&merged, "%25", 3)
							    : sora_buf_append(&merged, &v[k], 1);
					if (r < 0)
						list->oom = true;
				}
			} else if (sora_buf_append(&merged, v, secs[j].value_len) < 0) {
				list->oom = true;
			}
		}
		if (list->oom)
			goto out;
		key.len = 0;
		if (sora_buf_append(&key, base + secs[i].key_off, secs[i].key_len) < 0 ||
		    (have_extended && sora_buf_append(&key, "*", 1) < 0)) {
			list->oom = true;
			goto out;
		}
		param_add(list, key.data, key.len, merged.data, merged.len);
		param_lower_last_name(list);
	}
out:
	if (lex->oom)
		list->oom = true;
	free(secs);
	sora_buf_free(&key);
	sora_buf_free(&value);
	sora_buf_free(&scratch);
	sora_buf_free(&merged);
}

int mime_params_store(struct sora_mime_arena *arena, const struct mime_param_list *list,
		      struct sora_mime_param **params_r, unsigned int *count_r)
{
	struct sora_mime_param *params;
	const char *base;

	*params_r = NULL;
	*count_r = 0;
	if (list->count == 0)
		return 0;
	params = mime_arena_alloc(arena, sizeof(*params) * list->count);
	if (params == NULL)
		return -1;
	/* All names and values may be empty, leaving no data pointer. */
	base = list->data.data != NULL ? list->data.data : "";
	for (unsigned int i = 0; i < list->count; i++) {
		const struct mime_param_ref *ref = &list->items[i];

		if (mime_arena_strdup(arena, base + ref->name_off, ref->name_len,
				      &params[i].name) < 0 ||
		    mime_arena_strdup(arena, base + ref->value_off, ref->value_len,
				      &params[i].value) < 0)
			return -1;
	}
	*params_r = params;
	*count_r = list->count;
	return 0;
}

/* ---- Content-* fields ---- */

int mime_parse_content_type(struct sora_str value, struct sora_buf *type_out,
			    struct sora_buf *subtype_out, struct mime_param_list *params)
{
	struct mime_lex lex;
	int ret;

	type_out->len = 0;
	subtype_out->len = 0;
	mime_lex_init(&lex, value, NULL);
	if (mime_lex_skip_cfws(&lex) <= 0)
		goto broken;
	ret = mime_lex_mime_token(&lex, type_out);
	if (type_out->len == 0)
		goto broken;
	if (ret <= 0) {
		/* "text" alone: Dovecot keeps the type, with no subtype and no
		 * parameters, so that it stays a text part. */
		goto out;
	}
	if (*lex.data != '/')
		goto broken;
	lex.data++;
	if (mime_lex_skip_cfws(&lex) <= 0)
		goto broken;
	ret = mime_lex_mime_token(&lex, subtype_out);
	if (ret < 0 || subtype_out->len == 0 || (lex.data < lex.end && *lex.data != ';'))
		goto broken;
	mime_parse_params(&lex, params);
	goto out;
broken:
	type_out->len = 0;
	subtype_out->len = 0;
out:
	return lex.oom || params->oom ? -1 : 0;
}

int mime_parse_disposition(struct sora_str value, struct sora_buf *type_out,
			   struct mime_param_list *params)
{
	struct mime_lex lex;
	int ret;

	type_out->len = 0;
	mime_lex_init(&lex, value, NULL);
	(void)mime_lex_skip_cfws(&lex);
	ret = mime_lex_mime_token(&lex, type_out);
	if (lex.oom)
		return -1;
	/* An empty type is kept (Dovecot shows it as ""), only a broken
	 * comment after it makes the field count for nothing. */
	if (ret < 0)
		return 0;
	mime_parse_params(&lex, params);
	return params->oom ? -1 : 1;
}

int mime_parse_encoding(struct sora_str value, struct sora_buf *out)
{
	struct mime_lex lex;
	int ret;

	out->len = 0;
	mime_lex_init(&lex, value, NULL);
	(void)mime_lex_skip_cfws(&lex);
	ret = mime_lex_mime_token(&lex, out);
	if (lex.oom)
		return -1;
	return ret == 0 && out->len > 0 ? 1 : 0;
}

int mime_parse_language(struct sora_str value, struct sora_buf *out, unsigned int *count_r)
{
	struct mime_lex lex;
	unsigned int count = 0;
	int ret;

	/* Language-Header = 1#Language-tag. */
	out->len = 0;
	*count_r = 0;
	mime_lex_init(&lex, value, NULL);
	for (;;) {
		size_t before = out->len;

		if (mime_lex_skip_cfws(&lex) <= 0)
			break;
		ret = mime_lex_atom(&lex, out);
		if (ret < 0) {
			out->len = before;
			break;
		}
		if (sora_buf_append(out, "", 1) < 0)
			return -1;
		count++;
		if (ret == 0 || *lex.data != ',')
			break;
		lex.data++;
	}
	if (lex.oom)
		return -1;
	*count_r = count;
	return count > 0 ? 1 : 0;
}
