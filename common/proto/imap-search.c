/* SEARCH program parsing: see imap-search.h. */
#include "common/proto/imap-search.h"

#include <stdlib.h>
#include <string.h>

/* RFC 9051 number64 (LARGER/SMALLER) and RFC 7162 mod-sequence values
 * are at most 2^63-1. */
#define NUMBER64_MAX ((uint64_t)INT64_MAX)

enum charset {
	CHARSET_UTF8,
	CHARSET_ASCII,
};

struct search_ctx {
	const char *error;
	enum charset charset;
	size_t keys;
	bool has_modseq;
	bool uses_saved;
};

static int fail(struct search_ctx *ctx, const char *error)
{
	ctx->error = error;
	return -1;
}

/* ---------------------------------------------------------------- dates */

static bool leap_year(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (H. Hinnant's days_from_civil), valid for every year we accept. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2 ? 1 : 0;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int sora_imap_date_parse(struct sora_str s, int64_t *day_r)
{
	static const char months[12][4] = {
		"jan", "feb", "mar", "apr", "may", "jun",
		"jul", "aug", "sep", "oct", "nov", "dec",
	};
	static const unsigned char mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	unsigned day = 0, month = 0, dlen = 0, max;
	int64_t year = 0;
	size_t i = 0;

	while (i < s.len && s.p[i] >= '0' && s.p[i] <= '9' && dlen < 3) {
		day = day * 10 + (unsigned)(s.p[i] - '0');
		dlen++;
		i++;
	}
	/* date-day = 1*2DIGIT; then "-" 3-letter month "-" 4DIGIT. */
	if (dlen == 0 || dlen > 2 || s.len - i != 1 + 3 + 1 + 4 || s.p[i] != '-' ||
	    s.p[i + 4] != '-')
		return -1;
	for (unsigned m = 0; m < 12; m++) {
		if (sora_str_ieq_c(sora_str_make(s.p + i + 1, 3), months[m])) {
			month = m + 1;
			break;
		}
	}
	if (month == 0)
		return -1;
	for (i += 5; i < s.len; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return -1;
		year = year * 10 + (s.p[i] - '0');
	}
	max = mdays[month - 1] + (month == 2 && leap_year(year) ? 1 : 0);
	if (day < 1 || day > max)
		return -1;
	*day_r = days_from_civil(year, month, day);
	return 0;
}

/* ---------------------------------------------------------------- keys */

static void key_free(struct sora_imap_search_key *key)
{
	for (size_t i = 0; i < key->child_count; i++)
		key_free(&key->children[i]);
	free(key->children);
	free(key->header);
	free(key->str);
	sora_imap_seqset_free(&key->set);
	memset(key, 0, sizeof(*key));
}

void sora_imap_search_free(struct sora_imap_search_program *prog)
{
	if (prog == NULL)
		return;
	key_free(&prog->root);
	memset(prog, 0, sizeof(*prog));
}

static int add_child(struct search_ctx *ctx, struct sora_imap_search_key *parent,
		     struct sora_imap_search_key *child)
{
	struct sora_imap_search_key *n;

	n = realloc(parent->children, (parent->child_count + 1) * sizeof(*n));
	if (n == NULL)
		return fail(ctx, "Out of memory.");
	parent->children = n;
	n[parent->child_count++] = *child;
	memset(child, 0, sizeof(*child));
	return 0;
}

/* A string argument: astring, no NUL, valid in the charset. */
static int get_string(struct search_ctx *ctx, const struct sora_imap_arg *arg, char **str_r)
{
	struct sora_str s;

	if (!sora_imap_arg_astring(arg, &s))
		return fail(ctx, "SEARCH key needs a string argument.");
	if (memchr(s.p, '\0', s.len) != NULL)
		return fail(ctx, "SEARCH string contains a NUL byte.");
	if (ctx->charset == CHARSET_ASCII) {
		for (size_t i = 0; i < s.len; i++) {
			if ((unsigned char)s.p[i] >= 0x80)
				return fail(ctx, "SEARCH string is not US-ASCII.");
		}
	} else if (!sora_imap_utf8_valid(s)) {
		return fail(ctx, "SEARCH string is not valid UTF-8.");
	}
	*str_r = sora_str_dup(s);
	if (*str_r == NULL)
		return fail(ctx, "Out of memory.");
	return 0;
}

static bool atom_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '%' &&
	       c != '*' && c != '"' && c != '\\' && c != ']';
}

static bool is_atom(struct sora_str s)
{
	if (s.len == 0)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		if (!atom_char((unsigned char)s.p[i]))
			return false;
	}
	return true;
}

/* KEYWORD / UNKEYWORD take a flag-keyword, which is an atom; a quoted
 * one is accepted as long as it could have been sent as an atom. */
static int get_keyword(struct search_ctx *ctx, const struct sora_imap_arg *arg, char **str_r)
{
	struct sora_str s;

	if (!sora_imap_arg_astring(arg, &s) || !is_atom(s))
		return fail(ctx, "Invalid SEARCH keyword.");
	*str_r = sora_str_dup(s);
	if (*str_r == NULL)
		return fail(ctx, "Out of memory.");
	return 0;
}

/* A header field name (RFC 5322 ftext): the store matches it against
 * raw header lines, so ':' and control bytes are refused. */
static int get_header_name(struct search_ctx *ctx, const struct sora_imap_arg *arg, char **str_r)
{
	struct sora_str s;

	if (!sora_imap_arg_astring(arg, &s) || s.len == 0)
		return fail(ctx, "Invalid SEARCH header field name.");
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];

		if (c < 33 || c > 126 || c == ':')
			return fail(ctx, "Invalid SEARCH header field name.");
	}
	*str_r = sora_str_dup(s);
	if (*str_r == NULL)
		return fail(ctx, "Out of memory.");
	return 0;
}

static int get_number(struct search_ctx *ctx, const struct sora_imap_arg *arg, uint64_t min,
		      uint64_t max, uint64_t *n_r)
{
	struct sora_str s;

	if (arg->type != SORA_IMAP_ARG_ATOM || !sora_imap_arg_atom(arg, &s) ||
	    sora_str_to_u64(s, max, n_r) < 0 || *n_r < min)
		return fail(ctx, "Invalid SEARCH number.");
	return 0;
}

static int get_date(struct search_ctx *ctx, const struct sora_imap_arg *arg, uint64_t *n_r)
{
	struct sora_str s;
	int64_t day;

	/* date = date-text / DQUOTE date-text DQUOTE: an atom or a quoted
	 * string, never a literal. */
	if ((arg->type != SORA_IMAP_ARG_ATOM && arg->type != SORA_IMAP_ARG_STRING) ||
	    !sora_imap_arg_astring(arg, &s) || sora_imap_date_parse(s, &day) < 0)
		return fail(ctx, "Invalid SEARCH date.");
	/* Dates before 1970 are negative day numbers: stored as their two's
	 * complement, read back as int64_t (see imap-search.h). */
	*n_r = (uint64_t)day;
	return 0;
}

static int get_seqset(struct search_ctx *ctx, const struct sora_imap_arg *arg,
		      struct sora_imap_seqset *set_r)
{
	struct sora_str s;
	const char *err;

	if (arg->type != SORA_IMAP_ARG_ATOM || !sora_imap_arg_atom(arg, &s))
		return fail(ctx, "Invalid SEARCH sequence set.");
	/* A set cannot have more ranges than half its bytes (plus one), and
	 * the command parser caps the bytes. */
	if (sora_imap_seqset_parse(s, true, s.len / 2 + 1, set_r, &err) < 0)
		return fail(ctx, err);
	if (set_r->last_result)
		ctx->uses_saved = true;
	return 0;
}

/* RFC 7162 entry-name: "/flags/" attr-flag, where attr-flag is a system
 * flag ("\Seen") or a keyword atom. Only the shape is checked: the
 * server keeps one mod-sequence per message, so the entry is ignored. */
static bool modseq_entry_valid(struct sora_str s)
{
	static const char *const sysflags[] = {
		"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft",
	};
	struct sora_str flag;

	if (!sora_str_has_iprefix(s, "/flags/"))
		return false;
	flag = sora_str_make(s.p + 7, s.len - 7);
	if (flag.len > 0 && flag.p[0] == '\\') {
		for (size_t i = 0; i < sizeof(sysflags) / sizeof(sysflags[0]); i++) {
			if (sora_str_ieq_c(flag, sysflags[i]))
				return true;
		}
		/* attr-flag-extension: "\" atom */
		return is_atom(sora_str_make(flag.p + 1, flag.len - 1));
	}
	return is_atom(flag);
}

static int parse_key(struct search_ctx *ctx, const struct sora_imap_arg *args, size_t count,
		     size_t *i, unsigned depth, struct sora_imap_search_key *key);

/* Parses keys args[0..count) into parent's children (an AND). */
static int parse_keys(struct search_ctx *ctx, const struct sora_imap_arg *args, size_t count,
		      unsigned depth, struct sora_imap_search_key *parent)
{
	for (size_t i = 0; i < count; i++) {
		struct sora_imap_search_key child;

		memset(&child, 0, sizeof(child));
		if (parse_key(ctx, args, count, &i, depth, &child) < 0 ||
		    add_child(ctx, parent, &child) < 0) {
			key_free(&child);
			return -1;
		}
	}
	return 0;
}

/* Parses the child of OR / NOT at args[*i + 1] and appends it. */
static int parse_operand(struct search_ctx *ctx, const struct sora_imap_arg *args, size_t count,
			 size_t *i, unsigned depth, struct sora_imap_search_key *parent)
{
	struct sora_imap_search_key child;

	if (*i + 1 >= count)
		return fail(ctx, "Missing SEARCH key argument.");
	(*i)++;
	memset(&child, 0, sizeof(child));
	if (parse_key(ctx, args, count, i, depth + 1, &child) < 0 ||
	    add_child(ctx, parent, &child) < 0) {
		key_free(&child);
		return -1;
	}
	return 0;
}

static const struct {
	const char *name;
	enum sora_imap_search_type type;
	unsigned int flag;
} simple_keys[] = {
	{ "ALL", SORA_SEARCH_ALL, 0 },
	{ "ANSWERED", SORA_SEARCH_FLAG, SORA_IMAP_FLAG_ANSWERED },
	{ "DELETED", SORA_SEARCH_FLAG, SORA_IMAP_FLAG_DELETED },
	{ "DRAFT", SORA_SEARCH_FLAG, SORA_IMAP_FLAG_DRAFT },
	{ "FLAGGED", SORA_SEARCH_FLAG, SORA_IMAP_FLAG_FLAGGED },
	{ "SEEN", SORA_SEARCH_FLAG, SORA_IMAP_FLAG_SEEN },
	{ "UNANSWERED", SORA_SEARCH_UNFLAG, SORA_IMAP_FLAG_ANSWERED },
	{ "UNDELETED", SORA_SEARCH_UNFLAG, SORA_IMAP_FLAG_DELETED },
	{ "UNDRAFT", SORA_SEARCH_UNFLAG, SORA_IMAP_FLAG_DRAFT },
	{ "UNFLAGGED", SORA_SEARCH_UNFLAG, SORA_IMAP_FLAG_FLAGGED },
	{ "UNSEEN", SORA_SEARCH_UNFLAG, SORA_IMAP_FLAG_SEEN },
	{ "NEW", SORA_SEARCH_NEW, 0 },
	{ "OLD", SORA_SEARCH_OLD, 0 },
	{ "RECENT", SORA_SEARCH_RECENT, 0 },
};

static const struct {
	const char *name;
	enum sora_imap_search_type type;
} string_keys[] = {
	{ "BCC", SORA_SEARCH_BCC },
	{ "CC", SORA_SEARCH_CC },
	{ "FROM", SORA_SEARCH_FROM },
	{ "TO", SORA_SEARCH_TO },
	{ "SUBJECT", SORA_SEARCH_SUBJECT },
	{ "BODY", SORA_SEARCH_BODY },
	{ "TEXT", SORA_SEARCH_TEXT },
}, date_keys[] = {
	{ "BEFORE", SORA_SEARCH_BEFORE },
	{ "ON", SORA_SEARCH_ON },
	{ "SINCE", SORA_SEARCH_SINCE },
	{ "SENTBEFORE", SORA_SEARCH_SENTBEFORE },
	{ "SENTON", SORA_SEARCH_SENTON },
	{ "SENTSINCE", SORA_SEARCH_SENTSINCE },
};

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

/* Parses the key at args[*i] into key; *i is left on its last argument. */
static int parse_key(struct search_ctx *ctx, const struct sora_imap_arg *args, size_t count,
		     size_t *i, unsigned depth, struct sora_imap_search_key *key)
{
	const struct sora_imap_arg *arg = &args[*i];
	/* The argument after the key name, when it takes one. */
	const struct sora_imap_arg *next = *i + 1 < count ? &args[*i + 1] : NULL;
	struct sora_str name;

	if (depth > SORA_IMAP_SEARCH_DEPTH_MAX)
		return fail(ctx, "SEARCH nested too deeply.");
	if (++ctx->keys > SORA_IMAP_SEARCH_KEYS_MAX)
		return fail(ctx, "Too many SEARCH keys.");

	if (arg->type == SORA_IMAP_ARG_LIST) {
		if (arg->list_count == 0)
			return fail(ctx, "Empty SEARCH key list.");
		key->type = SORA_SEARCH_AND;
		return parse_keys(ctx, arg->list, arg->list_count, depth + 1, key);
	}
	if (arg->type != SORA_IMAP_ARG_ATOM || !sora_imap_arg_atom(arg, &name) || name.len == 0)
		return fail(ctx, "Invalid SEARCH key.");

	/* A sequence set: digits, "*" or "$". */
	if ((name.p[0] >= '0' && name.p[0] <= '9') || name.p[0] == '*' || name.p[0] == '$') {
		key->type = SORA_SEARCH_SEQSET;
		return get_seqset(ctx, arg, &key->set);
	}
	for (size_t k = 0; k < N_ELEMENTS(simple_keys); k++) {
		if (sora_str_ieq_c(name, simple_keys[k].name)) {
			key->type = simple_keys[k].type;
			key->flag = simple_keys[k].flag;
			return 0;
		}
	}
	if (sora_str_ieq_c(name, "NOT")) {
		key->type = SORA_SEARCH_NOT;
		return parse_operand(ctx, args, count, i, depth, key);
	}
	if (sora_str_ieq_c(name, "OR")) {
		key->type = SORA_SEARCH_OR;
		if (parse_operand(ctx, args, count, i, depth, key) < 0)
			return -1;
		return parse_operand(ctx, args, count, i, depth, key);
	}

	/* Every other key takes at least one argument. */
	if (next == NULL) {
		for (size_t k = 0; k < N_ELEMENTS(string_keys); k++) {
			if (sora_str_ieq_c(name, string_keys[k].name))
				return fail(ctx, "Missing SEARCH key argument.");
		}
		for (size_t k = 0; k < N_ELEMENTS(date_keys); k++) {
			if (sora_str_ieq_c(name, date_keys[k].name))
				return fail(ctx, "Missing SEARCH key argument.");
		}
		if (sora_str_ieq_c(name, "HEADER") || sora_str_ieq_c(name, "KEYWORD") ||
		    sora_str_ieq_c(name, "UNKEYWORD") || sora_str_ieq_c(name, "LARGER") ||
		    sora_str_ieq_c(name, "SMALLER") || sora_str_ieq_c(name, "UID") ||
		    sora_str_ieq_c(name, "OLDER") || sora_str_ieq_c(name, "YOUNGER") ||
		    sora_str_ieq_c(name, "MODSEQ"))
			return fail(ctx, "Missing SEARCH key argument.");
		return fail(ctx, "Unknown SEARCH key.");
	}
	for (size_t k = 0; k < N_ELEMENTS(string_keys); k++) {
		if (sora_str_ieq_c(name, string_keys[k].name)) {
			key->type = string_keys[k].type;
			(*i)++;
			return get_string(ctx, next, &key->str);
		}
	}
	for (size_t k = 0; k < N_ELEMENTS(date_keys); k++) {
		if (sora_str_ieq_c(name, date_keys[k].name)) {
			key->type = date_keys[k].type;
			(*i)++;
			return get_date(ctx, next, &key->number);
		}
	}
	if (sora_str_ieq_c(name, "HEADER")) {
		key->type = SORA_SEARCH_HEADER;
		if (*i + 2 >= count)
			return fail(ctx, "Missing SEARCH key argument.");
		if (get_header_name(ctx, next, &key->header) < 0)
			return -1;
		*i += 2;
		return get_string(ctx, &args[*i], &key->str);
	}
	if (sora_str_ieq_c(name, "KEYWORD") || sora_str_ieq_c(name, "UNKEYWORD")) {
		key->type = sora_str_ieq_c(name, "KEYWORD") ? SORA_SEARCH_KEYWORD
							    : SORA_SEARCH_UNKEYWORD;
		(*i)++;
		return get_keyword(ctx, next, &key->str);
	}
	if (sora_str_ieq_c(name, "LARGER") || sora_str_ieq_c(name, "SMALLER")) {
		key->type = sora_str_ieq_c(name, "LARGER") ? SORA_SEARCH_LARGER : SORA_SEARCH_SMALLER;
		(*i)++;
		return get_number(ctx, next, 0, NUMBER64_MAX, &key->number);
	}
	if (sora_str_ieq_c(name, "UID")) {
		key->type = SORA_SEARCH_UIDSET;
		(*i)++;
		return get_seqset(ctx, next, &key->set);
	}
	if (sora_str_ieq_c(name, "OLDER") || sora_str_ieq_c(name, "YOUNGER")) {
		/* RFC 5032: nz-number of seconds. */
		key->type = sora_str_ieq_c(name, "OLDER") ? SORA_SEARCH_OLDER : SORA_SEARCH_YOUNGER;
		(*i)++;
		return get_number(ctx, next, 1, UINT32_MAX, &key->number);
	}
	if (sora_str_ieq_c(name, "MODSEQ")) {
		key->type = SORA_SEARCH_MODSEQ;
		ctx->has_modseq = true;
		if (next->type == SORA_IMAP_ARG_STRING) {
			struct sora_str type;

			/* MODSEQ entry-name entry-type-req mod-sequence-valzer */
			if (!modseq_entry_valid(next->str))
				return fail(ctx, "Invalid MODSEQ entry name.");
			if (*i + 3 >= count)
				return fail(ctx, "Missing SEARCH key argument.");
			if (args[*i + 2].type != SORA_IMAP_ARG_ATOM ||
			    !sora_imap_arg_atom(&args[*i + 2], &type) ||
			    (!sora_str_ieq_c(type, "priv") && !sora_str_ieq_c(type, "shared") &&
			     !sora_str_ieq_c(type, "all")))
				return fail(ctx, "Invalid MODSEQ entry type.");
			*i += 3;
		} else {
			(*i)++;
		}
		return get_number(ctx, &args[*i], 0, NUMBER64_MAX, &key->number);
	}
	return fail(ctx, "Unknown SEARCH key.");
}

/* partial-range = nz-number ":" nz-number (RFC 5267 §4.4): no "*", no
 * single number; "500:400" is the same as "400:500". */
static int parse_partial_range(struct search_ctx *ctx, const struct sora_imap_arg *arg,
			       uint32_t *lo_r, uint32_t *hi_r)
{
	struct sora_str s, a, b;
	const char *colon;
	uint64_t x, y;

	if (arg == NULL || arg->type != SORA_IMAP_ARG_ATOM || !sora_imap_arg_atom(arg, &s))
		return fail(ctx, "PARTIAL needs a range.");
	colon = memchr(s.p, ':', s.len);
	if (colon == NULL)
		return fail(ctx, "PARTIAL needs a range (low:high).");
	a.p = s.p;
	a.len = (size_t)(colon - s.p);
	b.p = colon + 1;
	b.len = s.len - a.len - 1;
	if (sora_str_to_u64(a, UINT32_MAX, &x) < 0 || sora_str_to_u64(b, UINT32_MAX, &y) < 0 ||
	    x == 0 || y == 0)
		return fail(ctx, "Invalid PARTIAL range.");
	*lo_r = (uint32_t)(x < y ? x : y);
	*hi_r = (uint32_t)(x < y ? y : x);
	return 0;
}

/* RETURN (opts): RFC 4731 §3.1, RFC 5267 §4; RFC 9051 makes "RETURN ()"
 * mean ALL. */
static int parse_return(struct search_ctx *ctx, const struct sora_imap_arg *arg,
			struct sora_imap_search_program *prog)
{
	static const struct {
		const char *name;
		unsigned int opt;
	} opts[] = {
		{ "MIN", SORA_SEARCH_RETURN_MIN },
		{ "MAX", SORA_SEARCH_RETURN_MAX },
		{ "ALL", SORA_SEARCH_RETURN_ALL },
		{ "COUNT", SORA_SEARCH_RETURN_COUNT },
		{ "SAVE", SORA_SEARCH_RETURN_SAVE },
		{ "UPDATE", SORA_SEARCH_RETURN_UPDATE },
		{ "CONTEXT", SORA_SEARCH_RETURN_CONTEXT },
		{ "PARTIAL", SORA_SEARCH_RETURN_PARTIAL },
	};
	unsigned int *opts_r = &prog->return_opts;

	if (arg == NULL || arg->type != SORA_IMAP_ARG_LIST)
		return fail(ctx, "RETURN needs a list of options.");
	*opts_r = 0;
	for (size_t i = 0; i < arg->list_count; i++) {
		struct sora_str s;
		size_t k;

		if (arg->list[i].type != SORA_IMAP_ARG_ATOM || !sora_imap_arg_atom(&arg->list[i], &s))
			return fail(ctx, "Invalid SEARCH RETURN option.");
		for (k = 0; k < N_ELEMENTS(opts); k++) {
			if (sora_str_ieq_c(s, opts[k].name))
				break;
		}
		if (k == N_ELEMENTS(opts))
			return fail(ctx, "Unknown SEARCH RETURN option.");
		if (opts[k].opt == SORA_SEARCH_RETURN_PARTIAL) {
			if (*opts_r & SORA_SEARCH_RETURN_PARTIAL)
				return fail(ctx, "Only one PARTIAL is allowed.");
			i++;
			if (parse_partial_range(ctx, i < arg->list_count ? &arg->list[i] : NULL,
						&prog->partial_lo, &prog->partial_hi) < 0)
				return -1;
		}
		*opts_r |= opts[k].opt;
	}
	/* RFC 5267 §4.4: one PARTIAL, one ALL, or neither. */
	if ((*opts_r & SORA_SEARCH_RETURN_PARTIAL) && (*opts_r & SORA_SEARCH_RETURN_ALL))
		return fail(ctx, "PARTIAL and ALL cannot be combined.");
	if (*opts_r == 0)
		*opts_r = SORA_SEARCH_RETURN_ALL;
	return 0;
}

/* The charset argument (SEARCH's after "CHARSET", SORT's always): 0, or
 * a negative enum sora_imap_search_error. */
static int parse_charset(struct search_ctx *ctx, const struct sora_imap_arg *arg,
			 const char *missing)
{
	struct sora_str s;

	if (arg == NULL || !sora_imap_arg_astring(arg, &s)) {
		fail(ctx, missing);
		return SORA_IMAP_SEARCH_SYNTAX;
	}
	if (sora_str_ieq_c(s, "UTF-8")) {
		ctx->charset = CHARSET_UTF8;
	} else if (sora_str_ieq_c(s, "US-ASCII")) {
		ctx->charset = CHARSET_ASCII;
	} else {
		fail(ctx, "Unsupported charset.");
		return SORA_IMAP_SEARCH_BADCHARSET;
	}
	return 0;
}

int sora_imap_search_parse(const struct sora_imap_arg *args, size_t count, bool allow_return,
			   struct sora_imap_search_program *prog_r, const char **error_r)
{
	struct search_ctx ctx = { .error = NULL, .charset = CHARSET_UTF8 };
	struct sora_str s;
	size_t i = 0;
	int ret = SORA_IMAP_SEARCH_SYNTAX;

	memset(prog_r, 0, sizeof(*prog_r));
	prog_r->root.type = SORA_SEARCH_AND;
	if (i < count && args[i].type == SORA_IMAP_ARG_ATOM && sora_imap_arg_atom(&args[i], &s) &&
	    sora_str_ieq_c(s, "RETURN")) {
		if (!allow_return) {
			fail(&ctx, "SEARCH RETURN is not supported.");
			goto out;
		}
		if (parse_return(&ctx, i + 1 < count ? &args[i + 1] : NULL, prog_r) < 0)
			goto out;
		prog_r->esearch = true;
		i += 2;
	}
	if (i < count && args[i].type == SORA_IMAP_ARG_ATOM && sora_imap_arg_atom(&args[i], &s) &&
	    sora_str_ieq_c(s, "CHARSET")) {
		ret = parse_charset(&ctx, i + 1 < count ? &args[i + 1] : NULL,
				    "CHARSET needs a charset name.");
		if (ret != 0)
			goto out;
		ret = SORA_IMAP_SEARCH_SYNTAX;
		i += 2;
	}
	if (i >= count) {
		fail(&ctx, "Missing SEARCH keys.");
		goto out;
	}
	if (parse_keys(&ctx, args + i, count - i, 1, &prog_r->root) < 0)
		goto out;
	prog_r->has_modseq = ctx.has_modseq;
	prog_r->uses_saved = ctx.uses_saved;
	ret = 0;
out:
	if (ret != 0) {
		sora_imap_search_free(prog_r);
		*error_r = ctx.error;
	}
	return ret;
}

/* ------------------------------------------------------------------ SORT */

void sora_imap_sort_free(struct sora_imap_sort_program *prog)
{
	if (prog == NULL)
		return;
	sora_imap_search_free(&prog->search);
	prog->count = 0;
}

/* sort-criteria = "(" sort-criterion *(SP sort-criterion) ")";
 * sort-criterion = ["REVERSE" SP] sort-key (RFC 5256 §5, RFC 5957 §3). */
static int parse_sort_criteria(struct search_ctx *ctx, const struct sora_imap_arg *arg,
			       unsigned int flags, struct sora_imap_sort_program *prog)
{
	static const struct {
		const char *name;
		enum sora_imap_sort_key key;
		bool display;
	} keys[] = {
		{ "ARRIVAL", SORA_SORT_ARRIVAL, false }, { "CC", SORA_SORT_CC, false },
		{ "DATE", SORA_SORT_DATE, false },       { "FROM", SORA_SORT_FROM, false },
		{ "SIZE", SORA_SORT_SIZE, false },       { "SUBJECT", SORA_SORT_SUBJECT, false },
		{ "TO", SORA_SORT_TO, false },           { "DISPLAYFROM", SORA_SORT_DISPLAYFROM, true },
		{ "DISPLAYTO", SORA_SORT_DISPLAYTO, true },
	};
	bool reverse = false;

	if (arg == NULL || arg->type != SORA_IMAP_ARG_LIST || arg->list_count == 0)
		return fail(ctx, "SORT needs a list of sort criteria.");
	for (size_t i = 0; i < arg->list_count; i++) {
		struct sora_str s;
		size_t k;

		if (arg->list[i].type != SORA_IMAP_ARG_ATOM || !sora_imap_arg_atom(&arg->list[i], &s))
			return fail(ctx, "Invalid sort criterion.");
		if (sora_str_ieq_c(s, "REVERSE")) {
			if (reverse)
				return fail(ctx, "REVERSE must be followed by a sort key.");
			reverse = true;
			continue;
		}
		for (k = 0; k < N_ELEMENTS(keys); k++) {
			if (sora_str_ieq_c(s, keys[k].name))
				break;
		}
		if (k == N_ELEMENTS(keys) ||
		    (keys[k].display && !(flags & SORA_IMAP_SORT_ALLOW_DISPLAY)))
			return fail(ctx, "Unknown sort key.");
		if (prog->count == SORA_IMAP_SORT_CRITERIA_MAX)
			return fail(ctx, "Too many sort criteria.");
		prog->criteria[prog->count].key = keys[k].key;
		prog->criteria[prog->count].reverse = reverse;
		prog->count++;
		reverse = false;
	}
	if (reverse)
		return fail(ctx, "REVERSE must be followed by a sort key.");
	return 0;
}

int sora_imap_sort_parse(const struct sora_imap_arg *args, size_t count, unsigned int flags,
			 struct sora_imap_sort_program *prog_r, const char **error_r)
{
	struct search_ctx ctx = { .error = NULL, .charset = CHARSET_UTF8 };
	struct sora_imap_search_program *sp = &prog_r->search;
	struct sora_str s;
	size_t i = 0;
	int ret = SORA_IMAP_SEARCH_SYNTAX;

	memset(prog_r, 0, sizeof(*prog_r));
	sp->root.type = SORA_SEARCH_AND;
	if (i < count && args[i].type == SORA_IMAP_ARG_ATOM && sora_imap_arg_atom(&args[i], &s) &&
	    sora_str_ieq_c(s, "RETURN")) {
		if (!(flags & SORA_IMAP_SORT_ALLOW_RETURN)) {
			fail(&ctx, "SORT RETURN is not supported.");
			goto out;
		}
		if (parse_return(&ctx, i + 1 < count ? &args[i + 1] : NULL, sp) < 0)
			goto out;
		/* UPDATE, CONTEXT and PARTIAL belong to CONTEXT=SORT (RFC 5267
		 * §4), which is not offered. */
		if (sp->return_opts & (SORA_SEARCH_RETURN_UPDATE | SORA_SEARCH_RETURN_CONTEXT |
				       SORA_SEARCH_RETURN_PARTIAL)) {
			fail(&ctx, "SORT RETURN supports MIN, MAX, ALL, COUNT and SAVE only.");
			goto out;
		}
		sp->esearch = true;
		i += 2;
	}
	if (parse_sort_criteria(&ctx, i < count ? &args[i] : NULL, flags, prog_r) < 0)
		goto out;
	i++;
	/* RFC 5256 §5: the charset is not optional in SORT. */
	ret = parse_charset(&ctx, i < count ? &args[i] : NULL, "SORT needs a charset name.");
	if (ret != 0)
		goto out;
	ret = SORA_IMAP_SEARCH_SYNTAX;
	i++;
	if (i >= count) {
		fail(&ctx, "Missing SEARCH keys.");
		goto out;
	}
	if (parse_keys(&ctx, args + i, count - i, 1, &sp->root) < 0)
		goto out;
	sp->has_modseq = ctx.has_modseq;
	sp->uses_saved = ctx.uses_saved;
	ret = 0;
out:
	if (ret != 0) {
		sora_imap_sort_free(prog_r);
		*error_r = ctx.error;
	}
	return ret;
}
