/* SEARCH in PostgreSQL: see search.h.
 *
 * A program becomes one SELECT over the messages of one mailbox. The shape
 * of the WHERE clause follows the shape of the program and is assembled
 * from constant fragments of this file; every value that came from the
 * client (strings, numbers, sets) travels as a parameter ($n), so no client
 * byte is ever part of the SQL text. Only two kinds of numbers are written
 * into the text: parameter numbers and the flag bits, which are checked
 * against the five system flags first.
 *
 * The query:
 *
 *   SELECT m.uid, count(*) OVER (), max(m.updated_modseq) OVER (),
 *          max(m.uid) OVER ()
 *     FROM messages m
 *     [LEFT JOIN message_contents mc
 *        ON mc.content_hash = coalesce(m.text_key, m.content_hash)]
 *    WHERE m.mailbox_id = $1 AND m.expunged_at IS NULL
 *          [AND m.uid <= $4 (the view's last UID)] AND (<program>)
 *    ORDER BY m.uid LIMIT $2 OFFSET $3
 *
 * SORT (sora_search_sort) is the same statement ordered by its keys --
 * expressions over messages columns, constants of this file -- and then
 * m.uid.
 *
 * The window aggregates run over every match before LIMIT, which gives the
 * exact total, the highest modseq and the highest UID of all matches
 * (ESEARCH COUNT and MAX, CONDSTORE's MODSEQ) in the same statement as the
 * capped UID list: PostgreSQL counts the matches, the process only ever
 * receives LIMIT rows.
 *
 * Every condition is two-valued (never NULL), so NOT and OR work as IMAP
 * expects: nullable columns (sent_date, raw_headers, the joined text_body)
 * are wrapped in coalesce.
 *
 * Sets. Sequence numbers, "$" and \Recent only mean something in the
 * session's view, so they are turned into UID ranges here, before the
 * query. A range of sequence numbers a:b becomes the UID range
 * uids[a-1]..uids[b-1]: the UIDs between two neighbours of the view belong
 * to expunged messages only (new messages always get UIDs above every
 * existing one), so the range selects exactly the live messages of the
 * view. "1:*" over 100,000 messages is therefore one range, not 100,000
 * parameters. Several ranges go as one int8multirange parameter
 * (PostgreSQL 14+; the schema already needs 15), whose containment test is
 * a binary search; a single range is written as BETWEEN so the
 * (mailbox_id, uid) index can serve it.
 *
 * Header fields that have no column are searched in raw_headers, which is
 * bytea and may hold any byte (8-bit headers, invalid UTF-8, even NUL).
 * convert_from(..., 'UTF8') would fail the whole query on the first
 * invalid byte, so the block is read as LATIN1 instead: every byte becomes
 * exactly one character (U+0000..U+00FF), conversion cannot fail, and a
 * match in that text is a match of the same bytes in the block. ASCII
 * letters are then folded with lower() in the "C" collation, which folds
 * A-Z only (lower() in the database's locale would also fold the LATIN1
 * reading of UTF-8 lead bytes, 0xC3 to 0xE3, and make unrelated byte
 * sequences equal; translate() does the same job about ten times more
 * slowly). The needle gets the same treatment in C: ASCII folded,
 * every other byte mapped to its LATIN1 character. So matching over raw
 * headers is byte-exact and case-insensitive for ASCII only; encoded words
 * (RFC 2047) and non-ASCII case differences are matched through the
 * decoded columns instead (FROM, SUBJECT, ..., and TEXT searches both).
 * A block containing NUL cannot be text at all and is treated like a
 * missing block (NULL: too large to keep): only the decoded columns are
 * searched. A folded header line matches when the string lies within its
 * physical lines; a string that spans a fold (CRLF + WSP) is not found.
 */
#include "backend/store/search.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "common/core/buf.h"

#define I64_SIZE 24

/* Largest values passed on, so that PostgreSQL's timestamp and interval
 * arithmetic cannot overflow: day numbers up to the year 10000, intervals
 * of about 3,000 years. Larger values mean the same as these. */
#define DAY_MAX INT64_C(2932897)
/* 0001-01-01: PostgreSQL timestamps start in 4713 BC, IMAP dates in year 1. */
#define DAY_MIN INT64_C(-719162)
#define SECONDS_MAX 100000000000ull

#define ALL_FLAGS (SORA_IMAP_FLAG_SEEN | SORA_IMAP_FLAG_ANSWERED | SORA_IMAP_FLAG_FLAGGED | \
		   SORA_IMAP_FLAG_DELETED | SORA_IMAP_FLAG_DRAFT)

/* The raw header block as ASCII-folded LATIN1 text, NULL when there is no
 * usable block (see above). */
#define HEADERS_EXPR \
	"(CASE WHEN position('\\x00'::bytea IN m.raw_headers) = 0" \
	" THEN lower(convert_from(m.raw_headers, 'LATIN1') COLLATE \"C\") END)"

#define BODY_EXPR "lower(coalesce(mc.text_body, ''))"

struct uid_range {
	uint32_t lo, hi;
};

struct compiler {
	struct sora_buf sql;
	char **params;      /* owned strings */
	int nparams;
	int cap;
	const struct sora_search_view *view;
	bool need_body;
	bool failed;        /* out of memory */
	const char *invalid; /* a malformed program: why */
};

/* ---- building blocks ---- */

static void emit(struct compiler *c, const char *s)
{
	if (sora_buf_append_str(&c->sql, s) < 0)
		c->failed = true;
}

static void emitf(struct compiler *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emitf(struct compiler *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (sora_buf_vprintf(&c->sql, fmt, ap) < 0)
		c->failed = true;
	va_end(ap);
}

/* Takes ownership of value (NULL: out of memory). Returns the parameter
 * number, or 0 on failure. */
static int param_take(struct compiler *c, char *value)
{
	if (value == NULL) {
		c->failed = true;
		return 0;
	}
	if (c->nparams == c->cap) {
		int ncap = c->cap == 0 ? 16 : c->cap * 2;
		char **n = realloc(c->params, (size_t)ncap * sizeof(*n));

		if (n == NULL) {
			free(value);
			c->failed = true;
			return 0;
		}
		c->params = n;
		c->cap = ncap;
	}
	c->params[c->nparams++] = value;
	return c->nparams;
}

static int param_i64(struct compiler *c, int64_t v)
{
	char buf[I64_SIZE];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	return param_take(c, strdup(buf));
}

static int param_u64_capped(struct compiler *c, uint64_t v)
{
	return param_i64(c, v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v);
}

/* '%' + s with LIKE's special characters escaped + '%' (backslash is
 * LIKE's default escape character). */
static int param_like(struct compiler *c, const char *s)
{
	size_t len = strlen(s), i, o = 0;
	char *p = malloc(2 * len + 3);

	if (p == NULL)
		return param_take(c, NULL);
	p[o++] = '%';
	for (i = 0; i < len; i++) {
		if (s[i] == '%' || s[i] == '_' || s[i] == '\\')
			p[o++] = '\\';
		p[o++] = s[i];
	}
	p[o++] = '%';
	p[o] = '\0';
	return param_take(c, p);
}

/* Appends byte b of a client string as it appears in HEADERS_EXPR: ASCII
 * letters folded, bytes 0x80..0xFF as the UTF-8 form of the LATIN1
 * character, and (for regular expressions) every ASCII character that is
 * not a letter or digit escaped with a backslash, which makes it a literal
 * in PostgreSQL's advanced regular expressions. */
static int put_raw_byte(struct sora_buf *out, unsigned char b, bool regex)
{
	char t[2];

	if (b >= 0x80) {
		t[0] = (char)(0xC0 | (b >> 6));
		t[1] = (char)(0x80 | (b & 0x3F));
		return sora_buf_append(out, t, 2);
	}
	if (b >= 'A' && b <= 'Z')
		b = (unsigned char)(b - 'A' + 'a');
	if (regex && !((b >= 'a' && b <= 'z') || (b >= '0' && b <= '9'))) {
		t[0] = '\\';
		t[1] = (char)b;
		return sora_buf_append(out, t, 2);
	}
	t[0] = (char)b;
	return sora_buf_append(out, t, 1);
}

static int put_raw_str(struct sora_buf *out, const char *s, bool regex)
{
	for (; *s != '\0'; s++)
		if (put_raw_byte(out, (unsigned char)*s, regex) < 0)
			return -1;
	return 0;
}

/* Finishes a buffer built for a parameter: NUL-terminated, handed over. */
static int param_buf(struct compiler *c, struct sora_buf *b, int rc)
{
	char *p;

	if (rc == 0)
		rc = sora_buf_append(b, "", 1);
	if (rc < 0) {
		sora_buf_free(b);
		return param_take(c, NULL);
	}
	p = b->data;
	b->data = NULL;
	sora_buf_free(b);
	if (p == NULL)
		p = strdup("");
	return param_take(c, p);
}

/* s as it appears in HEADERS_EXPR, for strpos(). */
static int param_raw_needle(struct compiler *c, const char *s)
{
	struct sora_buf b;

	sora_buf_init(&b, 0);
	return param_buf(c, &b, put_raw_str(&b, s, false));
}

/* A regular expression over HEADERS_EXPR for "a line that starts field
 * name, optional white space and a colon, followed (on that line or its
 * continuation lines) by value". value NULL: the field is present. */
static int param_header_regex(struct compiler *c, const char *name, const char *value)
{
	struct sora_buf b;
	int rc;

	sora_buf_init(&b, 0);
	rc = sora_buf_append_str(&b, "(^|\\n)");
	if (rc == 0)
		rc = put_raw_str(&b, name, true);
	if (rc == 0)
		rc = sora_buf_append_str(&b, "[ \\t]*:");
	if (rc == 0 && value != NULL) {
		rc = sora_buf_append_str(&b, "([^\\n]|\\n[ \\t])*");
		if (rc == 0)
			rc = put_raw_str(&b, value, true);
	}
	return param_buf(c, &b, rc);
}

/* ---- sets ---- */

struct ranges {
	struct uid_range *r;
	size_t count, cap;
};

static int ranges_add(struct ranges *rs, uint32_t lo, uint32_t hi)
{
	if (lo > hi) {
		uint32_t t = lo;

		lo = hi;
		hi = t;
	}
	if (rs->count > 0 && rs->r[rs->count - 1].hi != UINT32_MAX &&
	    rs->r[rs->count - 1].hi + 1 == lo) {
		rs->r[rs->count - 1].hi = hi;
		return 0;
	}
	if (rs->count == rs->cap) {
		size_t ncap = rs->cap == 0 ? 8 : rs->cap * 2;
		struct uid_range *n = realloc(rs->r, ncap * sizeof(*n));

		if (n == NULL)
			return -1;
		rs->r = n;
		rs->cap = ncap;
	}
	rs->r[rs->count].lo = lo;
	rs->r[rs->count].hi = hi;
	rs->count++;
	return 0;
}

/* Index of uid in the view, or -1. */
static ssize_t view_find(const struct sora_search_view *v, uint32_t uid)
{
	return sora_imap_uids_find(v->uids, v->count, uid);
}

/* The saved result as ranges: UIDs that are neighbours in the view merge
 * into one range (see the top of the file). */
static int resolve_saved(const struct sora_search_view *v, struct ranges *rs)
{
	ssize_t prev = -2;
	size_t i;

	for (i = 0; i < v->saved_count; i++) {
		uint32_t uid = v->saved[i];
		ssize_t at = view_find(v, uid);

		if (at >= 0 && prev >= 0 && at == prev + 1 && rs->count > 0) {
			rs->r[rs->count - 1].hi = uid;
		} else if (ranges_add(rs, uid, uid) < 0) {
			return -1;
		}
		prev = at;
	}
	return 0;
}

/* A sequence or UID set as UID ranges. Ranges that name nothing (sequence
 * numbers past the end, "*" in an empty mailbox) are left out. */
static int resolve_set(const struct sora_search_view *v, const struct sora_imap_seqset *set,
		       bool uid_set, struct ranges *rs)
{
	size_t i;

	if (set->last_result)
		return resolve_saved(v, rs);
	for (i = 0; i < set->count; i++) {
		uint32_t lo = set->ranges[i].lo, hi = set->ranges[i].hi;

		if (lo == SORA_IMAP_SEQ_STAR || hi == SORA_IMAP_SEQ_STAR) {
			/* "*": the last message; nothing in an empty view. */
			uint32_t star;

			if (v->count == 0)
				continue;
			star = uid_set ? v->uids[v->count - 1] : (uint32_t)(v->count > UINT32_MAX ?
									 UINT32_MAX : v->count);
			if (lo == SORA_IMAP_SEQ_STAR)
				lo = star;
			if (hi == SORA_IMAP_SEQ_STAR)
				hi = star;
		}
		if (lo > hi) {
			uint32_t t = lo;

			lo = hi;
			hi = t;
		}
		if (!uid_set) {
			if (lo == 0 || lo > v->count)
				continue;
			if (hi > v->count)
				hi = (uint32_t)v->count;
			lo = v->uids[lo - 1];
			hi = v->uids[hi - 1];
		}
		if (ranges_add(rs, lo, hi) < 0)
			return -1;
	}
	return 0;
}

static int cmp_range(const void *a, const void *b)
{
	const struct uid_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo ? 1 : 0;
}

/* Writes "uid in these ranges". */
static void emit_ranges(struct compiler *c, struct ranges *rs)
{
	struct sora_buf b;
	size_t i;
	int rc = 0;

	if (rs->count == 0) {
		emit(c, "false");
		return;
	}
	if (rs->count == 1) {
		int lo = param_i64(c, rs->r[0].lo), hi = param_i64(c, rs->r[0].hi);

		emitf(c, "m.uid BETWEEN $%d::bigint AND $%d::bigint", lo, hi);
		return;
	}
	/* Sorted so that the literal is easy to read in a server log;
	 * PostgreSQL merges overlapping ranges itself. */
	qsort(rs->r, rs->count, sizeof(*rs->r), cmp_range);
	sora_buf_init(&b, 0);
	rc = sora_buf_append(&b, "{", 1);
	for (i = 0; rc == 0 && i < rs->count; i++)
		rc = sora_buf_printf(&b, "%s[%" PRIu32 ",%" PRIu32 "]", i > 0 ? "," : "",
				     rs->r[i].lo, rs->r[i].hi);
	if (rc == 0)
		rc = sora_buf_append(&b, "}", 1);
	emitf(c, "m.uid <@ $%d::int8multirange", param_buf(c, &b, rc));
}

static void emit_set(struct compiler *c, const struct sora_imap_seqset *set, bool uid_set)
{
	struct ranges rs = { 0 };

	if (resolve_set(c->view, set, uid_set, &rs) < 0)
		c->failed = true;
	else
		emit_ranges(c, &rs);
	free(rs.r);
}

/* \Recent: the view's UIDs from first_recent on. */
static void emit_recent(struct compiler *c)
{
	const struct sora_search_view *v = c->view;
	struct ranges rs = { 0 };

	if (v->first_recent != 0 && v->count > 0 && v->uids[v->count - 1] >= v->first_recent &&
	    ranges_add(&rs, v->first_recent, v->uids[v->count - 1]) < 0)
		c->failed = true;
	emit_ranges(c, &rs);
	free(rs.r);
}

/* ---- keys ---- */

/* Start of day `day` (UTC) in seconds, as a float8 parameter for
 * to_timestamp(). */
static int param_day(struct compiler *c, int64_t day)
{
	if (day > DAY_MAX)
		day = DAY_MAX;
	if (day < DAY_MIN)
		day = DAY_MIN;
	return param_i64(c, day * 86400);
}

/* day is a signed day number: the parser stores dates before 1970 as the
 * two's complement in the key's unsigned number (imap-search.h). */
static void emit_date(struct compiler *c, const char *col, enum sora_imap_search_type t,
		      int64_t day)
{
	int a;

	if (day > DAY_MAX)
		day = DAY_MAX;
	if (day < DAY_MIN)
		day = DAY_MIN;
	a = param_day(c, day);

	switch (t) {
	case SORA_SEARCH_BEFORE:
	case SORA_SEARCH_SENTBEFORE:
		emitf(c, "%s < to_timestamp($%d::float8)", col, a);
		break;
	case SORA_SEARCH_SINCE:
	case SORA_SEARCH_SENTSINCE:
		emitf(c, "%s >= to_timestamp($%d::float8)", col, a);
		break;
	default:
		emitf(c, "(%s >= to_timestamp($%d::float8) AND %s < to_timestamp($%d::float8))",
		      col, a, col, param_day(c, day + 1));
		break;
	}
}

static const char *column_of(enum sora_imap_search_type t)
{
	switch (t) {
	case SORA_SEARCH_BCC:
		return "m.bcc_text";
	case SORA_SEARCH_CC:
		return "m.cc_text";
	case SORA_SEARCH_FROM:
		return "m.from_text";
	case SORA_SEARCH_TO:
		return "m.to_text";
	default:
		return "m.subject";
	}
}

/* Header fields with a column of their own (decoded for the address
 * fields and Subject, cleaned raw values for the others). */
static const char *header_column(const char *name)
{
	static const struct {
		const char *name, *col;
	} cols[] = {
		{ "from", "m.from_text" },       { "to", "m.to_text" },
		{ "cc", "m.cc_text" },           { "bcc", "m.bcc_text" },
		{ "subject", "m.subject" },      { "message-id", "m.message_id" },
		{ "in-reply-to", "m.in_reply_to" }, { "references", "m.references_hdr" },
	};
	size_t i;

	for (i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
		if (strcasecmp(name, cols[i].name) == 0)
			return cols[i].col;
	return NULL;
}

static void emit_header(struct compiler *c, const struct sora_imap_search_key *k)
{
	const char *col = header_column(k->header);
	int re, needle;

	if (k->str[0] == '\0') {
		/* "Has the field": the block says so; without a usable block a
		 * column can only tell that the field was not empty. */
		re = param_header_regex(c, k->header, NULL);
		if (col != NULL)
			emitf(c, "coalesce(" HEADERS_EXPR " ~ $%d::text, %s <> '')", re, col);
		else
			emitf(c, "coalesce(" HEADERS_EXPR " ~ $%d::text, false)", re);
		return;
	}
	if (col != NULL) {
		emitf(c, "lower(%s) LIKE lower($%d::text)", col, param_like(c, k->str));
		return;
	}
	/* strpos() first: cheap, and it rejects most blocks before the
	 * regular expression runs. */
	needle = param_raw_needle(c, k->str);
	re = param_header_regex(c, k->header, k->str);
	emitf(c, "coalesce(strpos(" HEADERS_EXPR ", $%d::text) > 0 AND " HEADERS_EXPR
		 " ~ $%d::text, false)",
	      needle, re);
}

/* TEXT: the decoded header columns (which find encoded words and
 * non-ASCII text in any case), the raw block (every other field) and the
 * body text. */
static void emit_text(struct compiler *c, const char *s)
{
	int like = param_like(c, s), needle = param_raw_needle(c, s);

	c->need_body = true;
	emitf(c, "(lower(m.subject) LIKE lower($%d::text) OR lower(m.from_text) LIKE lower($%d)"
		 " OR lower(m.to_text) LIKE lower($%d) OR lower(m.cc_text) LIKE lower($%d)"
		 " OR lower(m.bcc_text) LIKE lower($%d) OR lower(m.message_id) LIKE lower($%d)"
		 " OR lower(m.in_reply_to) LIKE lower($%d)"
		 " OR lower(m.references_hdr) LIKE lower($%d)"
		 " OR coalesce(strpos(" HEADERS_EXPR ", $%d::text) > 0, false)"
		 " OR " BODY_EXPR " LIKE lower($%d))",
	      like, like, like, like, like, like, like, like, needle, like);
}

static void emit_key(struct compiler *c, const struct sora_imap_search_key *k, unsigned depth);

static void emit_children(struct compiler *c, const struct sora_imap_search_key *k,
			  const char *op, unsigned depth)
{
	size_t i;

	if (k->child_count == 0) {
		emit(c, "true");
		return;
	}
	emit(c, "(");
	for (i = 0; i < k->child_count; i++) {
		if (i > 0)
			emit(c, op);
		emit_key(c, &k->children[i], depth + 1);
	}
	emit(c, ")");
}

static void emit_key(struct compiler *c, const struct sora_imap_search_key *k, unsigned depth)
{
	if (c->failed || c->invalid != NULL)
		return;
	/* The parser bounds nesting; a hand-built program is checked too, so
	 * recursion here stays bounded. */
	if (depth > SORA_IMAP_SEARCH_DEPTH_MAX + 1) {
		c->invalid = "nested too deeply";
		return;
	}
	switch (k->type) {
	case SORA_SEARCH_AND:
		emit_children(c, k, " AND ", depth);
		break;
	case SORA_SEARCH_OR:
		if (k->child_count != 2) {
			c->invalid = "OR without two operands";
			return;
		}
		emit_children(c, k, " OR ", depth);
		break;
	case SORA_SEARCH_NOT:
		if (k->child_count != 1) {
			c->invalid = "NOT without one operand";
			return;
		}
		emit(c, "(NOT ");
		emit_key(c, &k->children[0], depth + 1);
		emit(c, ")");
		break;
	case SORA_SEARCH_ALL:
		emit(c, "true");
		break;
	case SORA_SEARCH_SEQSET:
		emit_set(c, &k->set, false);
		break;
	case SORA_SEARCH_UIDSET:
		emit_set(c, &k->set, true);
		break;
	case SORA_SEARCH_FLAG:
	case SORA_SEARCH_UNFLAG:
		if (k->flag == 0 || (k->flag & ~ALL_FLAGS) != 0) {
			c->invalid = "unknown system flag";
			return;
		}
		emitf(c, "(m.flags & %u) %s 0", k->flag, k->type == SORA_SEARCH_FLAG ? "<>" : "=");
		break;
	case SORA_SEARCH_KEYWORD:
	case SORA_SEARCH_UNKEYWORD:
		if (k->str == NULL)
			goto no_string;
		emitf(c, "%sEXISTS (SELECT 1 FROM unnest(m.keywords) kw"
			 " WHERE lower(kw) = lower($%d::text))",
		      k->type == SORA_SEARCH_UNKEYWORD ? "NOT " : "", param_take(c, strdup(k->str)));
		break;
	case SORA_SEARCH_RECENT:
		emit_recent(c);
		break;
	case SORA_SEARCH_NEW:
		emit(c, "(");
		emit_recent(c);
		emit(c, " AND (m.flags & 1) = 0)");
		break;
	case SORA_SEARCH_OLD:
		emit(c, "(NOT ");
		emit_recent(c);
		emit(c, ")");
		break;
	case SORA_SEARCH_BEFORE:
	case SORA_SEARCH_ON:
	case SORA_SEARCH_SINCE:
		emit_date(c, "m.internal_date", k->type, (int64_t)k->number);
		break;
	case SORA_SEARCH_SENTBEFORE:
	case SORA_SEARCH_SENTON:
	case SORA_SEARCH_SENTSINCE:
		/* The date as the sender wrote it: the instant moved by the
		 * header's own zone, compared with UTC day boundaries. */
		emit_date(c, "coalesce(m.sent_date + m.sent_tz * interval '1 minute', m.internal_date)",
			  k->type, (int64_t)k->number);
		break;
	case SORA_SEARCH_OLDER:
	case SORA_SEARCH_YOUNGER:
		/* Complements of each other (RFC 5032): OLDER n is at least n
		 * seconds old. */
		emitf(c, "m.internal_date %s now() - make_interval(secs => $%d::float8)",
		      k->type == SORA_SEARCH_OLDER ? "<=" : ">",
		      param_i64(c, (int64_t)(k->number > SECONDS_MAX ? SECONDS_MAX : k->number)));
		break;
	case SORA_SEARCH_LARGER:
		emitf(c, "m.size > $%d::bigint", param_u64_capped(c, k->number));
		break;
	case SORA_SEARCH_SMALLER:
		emitf(c, "m.size < $%d::bigint", param_u64_capped(c, k->number));
		break;
	case SORA_SEARCH_BCC:
	case SORA_SEARCH_CC:
	case SORA_SEARCH_FROM:
	case SORA_SEARCH_TO:
	case SORA_SEARCH_SUBJECT:
		if (k->str == NULL)
			goto no_string;
		emitf(c, "lower(%s) LIKE lower($%d::text)", column_of(k->type),
		      param_like(c, k->str));
		break;
	case SORA_SEARCH_BODY:
		if (k->str == NULL)
			goto no_string;
		c->need_body = true;
		emitf(c, BODY_EXPR " LIKE lower($%d::text)", param_like(c, k->str));
		break;
	case SORA_SEARCH_TEXT:
		if (k->str == NULL)
			goto no_string;
		emit_text(c, k->str);
		break;
	case SORA_SEARCH_HEADER:
		if (k->str == NULL || k->header == NULL || k->header[0] == '\0')
			goto no_string;
		emit_header(c, k);
		break;
	case SORA_SEARCH_MODSEQ:
		emitf(c, "m.updated_modseq >= $%d::bigint", param_u64_capped(c, k->number));
		break;
	default:
		c->invalid = "unknown search key";
		break;
	}
	return;
no_string:
	c->invalid = "search key without its string";
}

/* ---- running ---- */

static void compiler_free(struct compiler *c)
{
	int i;

	for (i = 0; i < c->nparams; i++)
		free(c->params[i]);
	free(c->params);
	sora_buf_free(&c->sql);
}

int sora_search_run(struct sora_db_conn *conn, int64_t mailbox_id,
		    const struct sora_imap_search_program *prog,
		    const struct sora_search_view *view, size_t max_results,
		    struct sora_search_result *res_r, struct sora_error *err)
{
	return sora_search_run_window(conn, mailbox_id, prog, view, 0, max_results, res_r, err);
}

/* Runs prog over the mailbox, ordered by `order` (constant SQL text of
 * this file), at most `cap` rows from offset on. */
static int run_query(struct sora_db_conn *conn, int64_t mailbox_id,
		     const struct sora_imap_search_program *prog,
		     const struct sora_search_view *view, const char *what, const char *order,
		     uint64_t offset, size_t max_results, size_t cap,
		     struct sora_search_result *res_r, struct sora_error *err)
{
	static const struct sora_search_view empty_view = { 0 };
	struct compiler c = { 0 };
	PGresult *res = NULL;
	size_t limit = max_results == 0 || max_results > cap ? cap : max_results;
	int rows, i, rc = -1;

	memset(res_r, 0, sizeof(*res_r));
	sora_buf_init(&c.sql, 0);
	c.view = view != NULL ? view : &empty_view;
	if (offset > (uint64_t)INT64_MAX)
		offset = (uint64_t)INT64_MAX;
	if (param_i64(&c, mailbox_id) != 1 || param_i64(&c, (int64_t)limit) != 2 ||
	    param_i64(&c, (int64_t)offset) != 3)
		goto oom;
	/* The WHERE clause first: it decides whether the join is needed. */
	emit(&c, "m.mailbox_id = $1::bigint AND m.expunged_at IS NULL AND ");
	if (c.view->uid_max != 0)
		emitf(&c, "m.uid <= $%d::bigint AND ", param_i64(&c, c.view->uid_max));
	emit_key(&c, &prog->root, 0);
	if (c.invalid != NULL) {
		sora_error_set(err, SORA_ERR_INVALID, "%s program: %s", what, c.invalid);
		goto out;
	}
	if (c.failed)
		goto oom;
	{
		struct sora_buf where = c.sql;
		struct sora_buf full;

		sora_buf_init(&full, 0);
		if (sora_buf_printf(&full,
				    "SELECT m.uid, count(*) OVER (), max(m.updated_modseq) OVER (),"
				    " max(m.uid) OVER ()"
				    " FROM messages m%s WHERE %.*s ORDER BY %s LIMIT $2::bigint"
				    " OFFSET $3::bigint",
				    c.need_body ? " LEFT JOIN message_contents mc"
						  " ON mc.content_hash ="
						  " coalesce(m.text_key, m.content_hash)" : "",
				    (int)where.len, where.data, order) < 0 ||
		    sora_buf_append(&full, "", 1) < 0) {
			sora_buf_free(&full);
			goto oom;
		}
		sora_buf_free(&c.sql);
		c.sql = full;
	}
	if (sora_db_exec(conn, SORA_DB_CLASS_SEARCH, c.sql.data, c.nparams,
			 (const char *const *)c.params, &res, NULL, err) != 0) {
		sora_error_prefix(err, "%s in mailbox %" PRId64, what, mailbox_id);
		goto out;
	}
	rows = PQntuples(res);
	if (rows > 0) {
		int64_t total, modseq = 0, max_uid = 0;

		res_r->uids.uids = malloc((size_t)rows * sizeof(uint32_t));
		if (res_r->uids.uids == NULL)
			goto oom;
		for (i = 0; i < rows; i++) {
			int64_t uid;

			if (sora_db_get_i64(res, i, 0, &uid, err) != 0)
				goto out;
			res_r->uids.uids[i] = (uint32_t)uid;
			res_r->uids.count++;
		}
		if (sora_db_get_i64(res, 0, 1, &total, err) != 0 ||
		    sora_db_get_i64(res, 0, 2, &modseq, err) != 0 ||
		    sora_db_get_i64(res, 0, 3, &max_uid, err) != 0)
			goto out;
		res_r->max_uid = (uint32_t)max_uid;
		res_r->total = (uint64_t)total;
		res_r->truncated = res_r->total > offset + (uint64_t)rows;
		if (prog->has_modseq)
			res_r->highest_modseq = (uint64_t)modseq;
	}
	rc = 0;
	goto out;
oom:
	sora_error_set(err, SORA_ERR_TEMPORARY, "%s in mailbox %" PRId64 ": out of memory",
		       what, mailbox_id);
out:
	PQclear(res);
	compiler_free(&c);
	if (rc != 0)
		sora_search_result_free(res_r);
	return rc;
}

int sora_search_run_window(struct sora_db_conn *conn, int64_t mailbox_id,
			   const struct sora_imap_search_program *prog,
			   const struct sora_search_view *view, uint64_t offset,
			   size_t max_results, struct sora_search_result *res_r,
			   struct sora_error *err)
{
	return run_query(conn, mailbox_id, prog, view, "SEARCH", "m.uid", offset, max_results,
			 SORA_SEARCH_MAX_RESULTS, res_r, err);
}

/* ---- SORT ---- */

/* The text keys compare under i;unicode-casemap (RFC 5051) as far as
 * PostgreSQL gives it: NFKD (compatibility decomposition, so "\u00e9"
 * sorts as "e" + accent and "\ufb01" as "fi"), then upper case in the
 * database's LC_CTYPE (Unicode letters under the C.UTF-8 locale the
 * deployment guide asks for; ASCII only under "C"), compared by code
 * point ("C" collation). RFC 5051 titlecases; upper and title case
 * differ only for a handful of digraph letters. normalize() needs a
 * UTF8 database, which the schema does too. */
#define TEXT_KEY(col) "upper(normalize(" col ", NFKD)) COLLATE \"C\""

static const char *sort_expr(enum sora_imap_sort_key key)
{
	switch (key) {
	case SORA_SORT_ARRIVAL:
		return "m.internal_date";
	case SORA_SORT_DATE:
		/* RFC 5256 2.2: the sent date as an instant (UTC), the
		 * internal date when the Date: header is missing or does
		 * not parse. */
		return "coalesce(m.sent_date, m.internal_date)";
	case SORA_SORT_SIZE:
		return "m.size";
	case SORA_SORT_SUBJECT:
		return TEXT_KEY("m.sort_subject");
	case SORA_SORT_FROM:
		return TEXT_KEY("m.sort_from");
	case SORA_SORT_TO:
		return TEXT_KEY("m.sort_to");
	case SORA_SORT_CC:
		return TEXT_KEY("m.sort_cc");
	case SORA_SORT_DISPLAYFROM:
		return TEXT_KEY("m.sort_display_from");
	case SORA_SORT_DISPLAYTO:
		return TEXT_KEY("m.sort_display_to");
	}
	return NULL;
}

bool sora_search_sort_expensive(const struct sora_imap_sort_program *prog)
{
	for (size_t i = 0; i < prog->count; i++) {
		enum sora_imap_sort_key k = prog->criteria[i].key;

		if (k != SORA_SORT_ARRIVAL && k != SORA_SORT_DATE && k != SORA_SORT_SIZE)
			return true;
	}
	return false;
}

size_t sora_search_sort_cap(const struct sora_imap_sort_program *prog)
{
	return sora_search_sort_expensive(prog) ? SORA_SEARCH_MAX_SORT_RESULTS
						: SORA_SEARCH_MAX_RESULTS;
}

int sora_search_sort(struct sora_db_conn *conn, int64_t mailbox_id,
		     const struct sora_imap_sort_program *prog,
		     const struct sora_search_view *view, uint64_t offset, size_t max_results,
		     struct sora_search_result *res_r, struct sora_error *err)
{
	struct sora_buf order;
	int rc = 0;

	memset(res_r, 0, sizeof(*res_r));
	if (prog->count == 0 || prog->count > SORA_IMAP_SORT_CRITERIA_MAX) {
		sora_error_set(err, SORA_ERR_INVALID, "SORT program: no sort criteria");
		return -1;
	}
	/* Every key is a constant of this file; ties end in sequence
	 * (= UID) order, whatever REVERSE said (RFC 5256 §3). */
	sora_buf_init(&order, 0);
	for (size_t i = 0; rc == 0 && i < prog->count; i++) {
		const char *e = sort_expr(prog->criteria[i].key);

		if (e == NULL) {
			sora_buf_free(&order);
			sora_error_set(err, SORA_ERR_INVALID, "SORT program: unknown sort key");
			return -1;
		}
		rc = sora_buf_printf(&order, "%s%s, ", e, prog->criteria[i].reverse ? " DESC" : "");
	}
	if (rc == 0)
		rc = sora_buf_append(&order, "m.uid", 6);   /* with the NUL */
	if (rc < 0) {
		sora_buf_free(&order);
		sora_error_set(err, SORA_ERR_TEMPORARY, "SORT in mailbox %" PRId64 ": out of memory",
			       mailbox_id);
		return -1;
	}
	rc = run_query(conn, mailbox_id, &prog->search, view, "SORT", order.data, offset,
		       max_results, sora_search_sort_cap(prog), res_r, err);
	sora_buf_free(&order);
	return rc;
}

void sora_search_result_free(struct sora_search_result *res)
{
	if (res == NULL)
		return;
	/* The same memory sora_msgs_uids_free() releases: one malloc'd
	 * array. */
	free(res->uids.uids);
	memset(res, 0, sizeof(*res));
}
