/* FETCH attribute parsing: see imap-fetch.h. */
#include "common/proto/imap-fetch.h"

#include <stdlib.h>
#include <string.h>

#include "common/core/buf.h"

/* A reply label is built from the client's field names; this caps what a
 * client can make us allocate for one label (the command is capped too,
 * but a label is kept per section). */
#define FETCH_NAME_MAX (64 * 1024)

/* RFC 9051 number64: offsets and lengths of partial fetches and CONDSTORE
 * mod-sequences are at most 2^63-1. */
#define NUMBER64_MAX ((uint64_t)INT64_MAX)

struct fetch_ctx {
	struct sora_imap_fetch_spec *spec;
	const char *error;
};

static bool fail(struct fetch_ctx *ctx, const char *error)
{
	ctx->error = error;
	return false;
}

static struct sora_str str_sub(struct sora_str s, size_t from, size_t to)
{
	return sora_str_make(s.p + from, to - from);
}

static size_t str_find(struct sora_str s, size_t from, char c)
{
	for (size_t i = from; i < s.len; i++) {
		if (s.p[i] == c)
			return i;
	}
	return s.len;
}

/* RFC 5322 ftext: printable US-ASCII except ':'. Field names go into the
 * reply label verbatim (quoted when needed), so anything that could break
 * the reply line is refused here. */
static bool field_name_valid(struct sora_str s)
{
	if (s.len == 0)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];

		if (c < 33 || c > 126 || c == ':')
			return false;
	}
	return true;
}

/* ASTRING-CHAR without ']' being special: what may be sent bare. */
static bool astring_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '%' &&
	       c != '*' && c != '"' && c != '\\';
}

/* Appends a field name upper-cased, as an atom when it is one and as a
 * quoted string otherwise, the way Dovecot's imap_append_astring() labels
 * it. */
static int append_field(struct sora_buf *b, struct sora_str f)
{
	bool bare = true;

	for (size_t i = 0; i < f.len; i++) {
		if (!astring_char((unsigned char)f.p[i]))
			bare = false;
	}
	if (!bare && sora_buf_append(b, "\"", 1) < 0)
		return -1;
	for (size_t i = 0; i < f.len; i++) {
		char c = f.p[i];

		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if ((c == '"' || c == '\\') && sora_buf_append(b, "\\", 1) < 0)
			return -1;
		if (sora_buf_append(b, &c, 1) < 0)
			return -1;
	}
	if (!bare && sora_buf_append(b, "\"", 1) < 0)
		return -1;
	return 0;
}

static void section_free(struct sora_imap_fetch_section *sec)
{
	for (size_t i = 0; i < sec->field_count; i++)
		free(sec->fields[i]);
	free(sec->fields);
	free(sec->name);
	memset(sec, 0, sizeof(*sec));
}

void sora_imap_fetch_spec_free(struct sora_imap_fetch_spec *spec)
{
	if (spec == NULL)
		return;
	for (size_t i = 0; i < spec->section_count; i++)
		section_free(&spec->sections[i]);
	free(spec->sections);
	memset(spec, 0, sizeof(*spec));
}

/* Builds sec->name from the parsed section. */
static bool section_name(struct fetch_ctx *ctx, struct sora_imap_fetch_section *sec)
{
	static const char *const part_names[] = {
		[SORA_FETCH_PART_ALL] = "",
		[SORA_FETCH_PART_HEADER] = "HEADER",
		[SORA_FETCH_PART_HEADER_FIELDS] = "HEADER.FIELDS",
		[SORA_FETCH_PART_HEADER_FIELDS_NOT] = "HEADER.FIELDS.NOT",
		[SORA_FETCH_PART_TEXT] = "TEXT",
		[SORA_FETCH_PART_MIME] = "MIME",
	};
	struct sora_buf b;
	const char *prefix;
	int rc = 0;

	switch (sec->kind) {
	case SORA_FETCH_KIND_RFC822:
		prefix = "RFC822";
		break;
	case SORA_FETCH_KIND_RFC822_HEADER:
		prefix = "RFC822.HEADER";
		break;
	case SORA_FETCH_KIND_RFC822_TEXT:
		prefix = "RFC822.TEXT";
		break;
	case SORA_FETCH_KIND_BINARY:
		prefix = "BINARY[";
		break;
	case SORA_FETCH_KIND_BINARY_SIZE:
		prefix = "BINARY.SIZE[";
		break;
	case SORA_FETCH_KIND_BODY:
	default:
		prefix = "BODY[";
		break;
	}
	sora_buf_init(&b, FETCH_NAME_MAX);
	rc |= sora_buf_append_str(&b, prefix);
	if (sec->kind == SORA_FETCH_KIND_BODY || sec->kind == SORA_FETCH_KIND_BINARY ||
	    sec->kind == SORA_FETCH_KIND_BINARY_SIZE) {
		for (unsigned int i = 0; i < sec->path_len; i++)
			rc |= sora_buf_printf(&b, i == 0 ? "%u" : ".%u", (unsigned)sec->path[i]);
		if (sec->part != SORA_FETCH_PART_ALL) {
			if (sec->path_len > 0)
				rc |= sora_buf_append(&b, ".", 1);
			rc |= sora_buf_append_str(&b, part_names[sec->part]);
		}
		if (sec->part == SORA_FETCH_PART_HEADER_FIELDS ||
		    sec->part == SORA_FETCH_PART_HEADER_FIELDS_NOT) {
			rc |= sora_buf_append(&b, " (", 2);
			for (size_t i = 0; i < sec->field_count; i++) {
				if (i > 0)
					rc |= sora_buf_append(&b, " ", 1);
				rc |= append_field(&b, sora_str_c(sec->fields[i]));
			}
			rc |= sora_buf_append(&b, ")", 1);
		}
		rc |= sora_buf_append(&b, "]", 1);
	}
	rc |= sora_buf_append(&b, "", 1);
	if (rc != 0) {
		sora_buf_free(&b);
		return fail(ctx, "FETCH section name too long.");
	}
	/* The buffer's memory becomes the section's: it is NUL-terminated. */
	sec->name = b.data;
	return true;
}

/* Parses the number path and the section text between '[' and ']' (for
 * HEADER.FIELDS, up to the end of the atom before the field list). */
static bool parse_section_text(struct fetch_ctx *ctx, struct sora_str s,
			       struct sora_imap_fetch_section *sec)
{
	size_t i = 0;

	while (i < s.len && s.p[i] >= '0' && s.p[i] <= '9') {
		size_t end = str_find(s, i, '.');
		uint64_t n;

		if (s.p[i] == '0' || sora_str_to_u64(str_sub(s, i, end), UINT32_MAX, &n) < 0)
			return fail(ctx, "Invalid FETCH section part number.");
		if (sec->path_len == SORA_IMAP_SECTION_DEPTH_MAX)
			return fail(ctx, "FETCH section part path too deep.");
		sec->path[sec->path_len++] = (uint32_t)n;
		if (end == s.len) {
			i = end;
			break;
		}
		i = end + 1;
		/* "1." is not a section: a dot must introduce something. */
		if (i == s.len)
			return fail(ctx, "Invalid FETCH section.");
	}
	s = str_sub(s, i, s.len);
	if (s.len == 0)
		sec->part = SORA_FETCH_PART_ALL;
	else if (sora_str_ieq_c(s, "HEADER"))
		sec->part = SORA_FETCH_PART_HEADER;
	else if (sora_str_ieq_c(s, "HEADER.FIELDS"))
		sec->part = SORA_FETCH_PART_HEADER_FIELDS;
	else if (sora_str_ieq_c(s, "HEADER.FIELDS.NOT"))
		sec->part = SORA_FETCH_PART_HEADER_FIELDS_NOT;
	else if (sora_str_ieq_c(s, "TEXT"))
		sec->part = SORA_FETCH_PART_TEXT;
	else if (sora_str_ieq_c(s, "MIME"))
		sec->part = SORA_FETCH_PART_MIME;
	else
		return fail(ctx, "Invalid FETCH section.");
	if (sec->part == SORA_FETCH_PART_MIME && sec->path_len == 0)
		return fail(ctx, "FETCH section MIME needs a part number.");
	return true;
}

static bool parse_fields(struct fetch_ctx *ctx, const struct sora_imap_arg *list,
			 struct sora_imap_fetch_section *sec)
{
	if (list->type != SORA_IMAP_ARG_LIST || list->list_count == 0)
		return fail(ctx, "HEADER.FIELDS needs a list of field names.");
	if (list->list_count > SORA_IMAP_FETCH_FIELDS_MAX)
		return fail(ctx, "Too many header field names.");
	sec->fields = calloc(list->list_count, sizeof(*sec->fields));
	if (sec->fields == NULL)
		return fail(ctx, "Out of memory.");
	for (size_t i = 0; i < list->list_count; i++) {
		struct sora_str f;

		if (!sora_imap_arg_astring(&list->list[i], &f) || !field_name_valid(f))
			return fail(ctx, "Invalid header field name.");
		sec->fields[i] = sora_str_dup(f);
		if (sec->fields[i] == NULL)
			return fail(ctx, "Out of memory.");
		sec->field_count++;
	}
	return true;
}

/* "<offset.length>" or nothing. */
static bool parse_partial(struct fetch_ctx *ctx, struct sora_str s,
			  struct sora_imap_fetch_section *sec)
{
	size_t dot;

	if (s.len == 0)
		return true;
	if (s.len < 2 || s.p[0] != '<' || s.p[s.len - 1] != '>')
		return fail(ctx, "Invalid FETCH partial.");
	s = str_sub(s, 1, s.len - 1);
	dot = str_find(s, 0, '.');
	if (dot == s.len ||
	    sora_str_to_u64(str_sub(s, 0, dot), NUMBER64_MAX, &sec->partial_offset) < 0 ||
	    sora_str_to_u64(str_sub(s, dot + 1, s.len), NUMBER64_MAX, &sec->partial_length) < 0)
		return fail(ctx, "Invalid FETCH partial.");
	if (sec->partial_length == 0)
		return fail(ctx, "FETCH partial length must be greater than zero.");
	if (sec->kind == SORA_FETCH_KIND_BINARY_SIZE)
		return fail(ctx, "BINARY.SIZE takes no partial.");
	sec->partial = true;
	return true;
}

static bool add_section(struct fetch_ctx *ctx, struct sora_imap_fetch_section *sec)
{
	struct sora_imap_fetch_spec *spec = ctx->spec;
	struct sora_imap_fetch_section *n;

	if (spec->section_count == SORA_IMAP_FETCH_SECTIONS_MAX)
		return fail(ctx, "Too many FETCH body sections.");
	if (!section_name(ctx, sec))
		return false;
	n = realloc(spec->sections, (spec->section_count + 1) * sizeof(*n));
	if (n == NULL)
		return fail(ctx, "Out of memory.");
	spec->sections = n;
	n[spec->section_count++] = *sec;
	memset(sec, 0, sizeof(*sec));
	if (!n[spec->section_count - 1].peek)
		spec->sets_seen = true;
	spec->needs_body = true;
	return true;
}

/* A section item: BODY[...], BODY.PEEK[...], BINARY[...], BINARY.PEEK[...],
 * BINARY.SIZE[...]. args[*i] is the atom holding '['; the item may go on
 * in a field list and a "]..." atom. */
static bool parse_section_item(struct fetch_ctx *ctx, const struct sora_imap_arg *args,
			       size_t count, size_t *i, struct sora_str atom, size_t open)
{
	struct sora_imap_fetch_section sec;
	struct sora_str name = str_sub(atom, 0, open);
	struct sora_str text, rest;
	size_t close = str_find(atom, open + 1, ']');
	bool ok = false;

	memset(&sec, 0, sizeof(sec));
	if (sora_str_ieq_c(name, "BODY")) {
		sec.kind = SORA_FETCH_KIND_BODY;
	} else if (sora_str_ieq_c(name, "BODY.PEEK")) {
		sec.kind = SORA_FETCH_KIND_BODY;
		sec.peek = true;
	} else if (sora_str_ieq_c(name, "BINARY")) {
		sec.kind = SORA_FETCH_KIND_BINARY;
	} else if (sora_str_ieq_c(name, "BINARY.PEEK")) {
		sec.kind = SORA_FETCH_KIND_BINARY;
		sec.peek = true;
	} else if (sora_str_ieq_c(name, "BINARY.SIZE")) {
		sec.kind = SORA_FETCH_KIND_BINARY_SIZE;
		/* Only the size is returned: \Seen is not set (RFC 3516 §4.2). */
		sec.peek = true;
	} else {
		return fail(ctx, "Unknown FETCH attribute.");
	}
	text = str_sub(atom, open + 1, close);
	if (!parse_section_text(ctx, text, &sec))
		goto out;
	if (sec.kind != SORA_FETCH_KIND_BODY && sec.part != SORA_FETCH_PART_ALL) {
		fail(ctx, "BINARY sections take only a part number.");
		goto out;
	}
	if (sec.part == SORA_FETCH_PART_HEADER_FIELDS ||
	    sec.part == SORA_FETCH_PART_HEADER_FIELDS_NOT) {
		/* The field list is the next argument, and the closing ']'
		 * begins the one after it. */
		if (close != atom.len || *i + 2 >= count) {
			fail(ctx, "HEADER.FIELDS needs a list of field names.");
			goto out;
		}
		if (!parse_fields(ctx, &args[*i + 1], &sec))
			goto out;
		if (!sora_imap_arg_atom(&args[*i + 2], &rest) || rest.len == 0 || rest.p[0] != ']') {
			fail(ctx, "Unterminated FETCH section.");
			goto out;
		}
		*i += 2;
		rest = str_sub(rest, 1, rest.len);
	} else {
		if (close == atom.len) {
			fail(ctx, "Unterminated FETCH section.");
			goto out;
		}
		rest = str_sub(atom, close + 1, atom.len);
	}
	if (!parse_partial(ctx, rest, &sec))
		goto out;
	ok = add_section(ctx, &sec);
out:
	section_free(&sec);
	return ok;
}

static bool add_rfc822(struct fetch_ctx *ctx, enum sora_imap_fetch_kind kind)
{
	struct sora_imap_fetch_section sec;
	bool ok;

	memset(&sec, 0, sizeof(sec));
	sec.kind = kind;
	switch (kind) {
	case SORA_FETCH_KIND_RFC822_HEADER:
		sec.part = SORA_FETCH_PART_HEADER;
		sec.peek = true;
		break;
	case SORA_FETCH_KIND_RFC822_TEXT:
		sec.part = SORA_FETCH_PART_TEXT;
		break;
	default:
		sec.part = SORA_FETCH_PART_ALL;
		break;
	}
	ok = add_section(ctx, &sec);
	section_free(&sec);
	return ok;
}

/* One attribute starting at args[*i]; *i is left on its last argument. */
static bool parse_item(struct fetch_ctx *ctx, const struct sora_imap_arg *args, size_t count,
		       size_t *i)
{
	static const struct {
		const char *name;
		unsigned int item;
	} simple[] = {
		{ "UID", SORA_FETCH_UID },
		{ "FLAGS", SORA_FETCH_FLAGS },
		{ "INTERNALDATE", SORA_FETCH_INTERNALDATE },
		{ "RFC822.SIZE", SORA_FETCH_RFC822_SIZE },
		{ "ENVELOPE", SORA_FETCH_ENVELOPE },
		{ "BODY", SORA_FETCH_BODY },
		{ "BODYSTRUCTURE", SORA_FETCH_BODYSTRUCTURE },
		{ "MODSEQ", SORA_FETCH_MODSEQ },
	};
	struct sora_str atom;
	size_t open;

	if (!sora_imap_arg_atom(&args[*i], &atom) || args[*i].type != SORA_IMAP_ARG_ATOM)
		return fail(ctx, "Invalid FETCH attribute.");
	open = str_find(atom, 0, '[');
	if (open < atom.len)
		return parse_section_item(ctx, args, count, i, atom, open);
	for (size_t k = 0; k < sizeof(simple) / sizeof(simple[0]); k++) {
		if (sora_str_ieq_c(atom, simple[k].name)) {
			ctx->spec->items |= simple[k].item;
			return true;
		}
	}
	if (sora_str_ieq_c(atom, "RFC822"))
		return add_rfc822(ctx, SORA_FETCH_KIND_RFC822);
	if (sora_str_ieq_c(atom, "RFC822.HEADER"))
		return add_rfc822(ctx, SORA_FETCH_KIND_RFC822_HEADER);
	if (sora_str_ieq_c(atom, "RFC822.TEXT"))
		return add_rfc822(ctx, SORA_FETCH_KIND_RFC822_TEXT);
	return fail(ctx, "Unknown FETCH attribute.");
}

static bool parse_modifiers(struct fetch_ctx *ctx, const struct sora_imap_arg *arg,
			    bool uid_command)
{
	struct sora_imap_fetch_spec *spec = ctx->spec;
	struct sora_str a;

	if (arg->type != SORA_IMAP_ARG_LIST || arg->list_count == 0)
		return fail(ctx, "Invalid FETCH modifiers.");
	for (size_t i = 0; i < arg->list_count; i++) {
		if (!sora_imap_arg_atom(&arg->list[i], &a) || arg->list[i].type != SORA_IMAP_ARG_ATOM)
			return fail(ctx, "Invalid FETCH modifiers.");
		if (sora_str_ieq_c(a, "CHANGEDSINCE")) {
			if (spec->changedsince_set)
				return fail(ctx, "CHANGEDSINCE given twice.");
			if (i + 1 == arg->list_count ||
			    !sora_imap_arg_atom(&arg->list[i + 1], &a) ||
			    sora_str_to_u64(a, NUMBER64_MAX, &spec->changedsince) < 0)
				return fail(ctx, "CHANGEDSINCE needs a mod-sequence.");
			i++;
			spec->changedsince_set = true;
			spec->items |= SORA_FETCH_MODSEQ;
		} else if (sora_str_ieq_c(a, "VANISHED")) {
			if (!uid_command)
				return fail(ctx, "VANISHED is only allowed with UID FETCH.");
			if (spec->vanished)
				return fail(ctx, "VANISHED given twice.");
			spec->vanished = true;
		} else {
			return fail(ctx, "Unknown FETCH modifier.");
		}
	}
	if (spec->vanished && !spec->changedsince_set)
		return fail(ctx, "VANISHED needs CHANGEDSINCE.");
	return true;
}

int sora_imap_fetch_parse(const struct sora_imap_arg *args, size_t count, bool uid_command,
			  struct sora_imap_fetch_spec *spec_r, const char **error_r)
{
	struct fetch_ctx ctx = { .spec = spec_r, .error = NULL };
	struct sora_str atom;
	size_t i = 0;
	bool ok = false;

	memset(spec_r, 0, sizeof(*spec_r));
	if (count == 0) {
		fail(&ctx, "Missing FETCH attributes.");
		goto out;
	}
	if (args[0].type == SORA_IMAP_ARG_LIST) {
		if (args[0].list_count == 0) {
			fail(&ctx, "Empty FETCH attribute list.");
			goto out;
		}
		for (size_t k = 0; k < args[0].list_count; k++) {
			if (!parse_item(&ctx, args[0].list, args[0].list_count, &k))
				goto out;
		}
	} else if (sora_imap_arg_atom(&args[0], &atom) && sora_str_ieq_c(atom, "ALL")) {
		spec_r->items |= SORA_FETCH_FLAGS | SORA_FETCH_INTERNALDATE |
				 SORA_FETCH_RFC822_SIZE | SORA_FETCH_ENVELOPE;
	} else if (sora_imap_arg_atom(&args[0], &atom) && sora_str_ieq_c(atom, "FAST")) {
		spec_r->items |= SORA_FETCH_FLAGS | SORA_FETCH_INTERNALDATE |
				 SORA_FETCH_RFC822_SIZE;
	} else if (sora_imap_arg_atom(&args[0], &atom) && sora_str_ieq_c(atom, "FULL")) {
		spec_r->items |= SORA_FETCH_FLAGS | SORA_FETCH_INTERNALDATE |
				 SORA_FETCH_RFC822_SIZE | SORA_FETCH_ENVELOPE | SORA_FETCH_BODY;
	} else if (!parse_item(&ctx, args, count, &i)) {
		goto out;
	}
	i++;
	if (i < count) {
		if (!parse_modifiers(&ctx, &args[i], uid_command))
			goto out;
		i++;
	}
	if (i < count) {
		fail(&ctx, "Unexpected arguments after FETCH attributes.");
		goto out;
	}
	if (uid_command)
		spec_r->items |= SORA_FETCH_UID;
	ok = true;
out:
	if (!ok) {
		sora_imap_fetch_spec_free(spec_r);
		*error_r = ctx.error;
		return -1;
	}
	return 0;
}
