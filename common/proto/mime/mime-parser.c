/* The streaming MIME parser: a line-oriented state machine.
 *
 * Every line is first collected into a small "head" buffer, just long
 * enough to tell whether it is a boundary line ("--" + the longest boundary
 * + "--"), an empty line, or a header continuation; most lines are decided
 * on their first byte. The rest of a line is then either appended to the
 * header field being read (bounded) or skipped with memchr. Nothing else of
 * the message is kept, so memory does not depend on the message size apart
 * from the (bounded) headers that are kept.
 *
 * Offsets: pos counts the bytes consumed; lf_count and bare_count count LFs
 * and bare LFs (LF without CR) before pos, so that a part's line count and
 * CRLF size come from differences of counters taken at its start and end.
 * A part ending at a boundary line ends before the line ending that
 * precedes the boundary (RFC 2046 5.1.1) unless that line ending closes
 * another boundary line, which is why each line remembers the length of
 * the previous line's ending (prev_eol) and the counters at its start. */
#include "common/proto/mime/mime-private.h"

#include <stdlib.h>
#include <string.h>

enum line_state {
	LS_HEAD = 0,   /* collecting the first bytes of a line */
	LS_HEADER,     /* rest of a header line */
	LS_BODY,       /* rest of a body line */
	LS_BOUNDARY,   /* rest of a boundary line */
};

struct open_part {
	struct sora_mime_part *part;
	struct sora_mime_part *last_child;
	uint64_t bare_at_header;
	uint64_t body_start, lf_at_body, bare_at_body;
	bool in_body;
};

struct boundary {
	char *str;
	size_t len;
	unsigned int owner;   /* stack index of the multipart */
};

/* State of the header being read; only the innermost open part can be in
 * its header, so one of these is enough. */
struct header_state {
	struct sora_buf field;
	size_t first_line_end;  /* field bytes that came from its first line */
	bool first_line_done;
	bool field_active;
	bool skip_line;       /* a continuation line with no field before it */
	bool pending_cr;      /* a CR ended the last piece of the line */
	bool is_mime;
	bool seen_ct;
	bool ct_complete;     /* Content-Type parsed as type/subtype */
	bool digest_parent;
	bool env_root;        /* this part is a message: collect its envelope */
	bool keep_headers;
	bool has_boundary;
	struct sora_buf boundary;  /* of the first Content-Type */
	struct sora_buf env[SORA_MIME_ENV_COUNT];
	bool env_set[SORA_MIME_ENV_COUNT];
	struct sora_mime_header *headers;
	unsigned int header_count, header_alloc;
	size_t header_bytes;
};

struct sora_mime_parser {
	struct sora_mime_params params;
	struct sora_mime_message *msg;
	bool failed;

	uint64_t pos, lf_count, bare_count;
	unsigned char last_byte;
	unsigned int cur_eol;  /* length of the line ending just consumed */

	enum line_state state;
	uint64_t line_start, lf_at_line, bare_at_line;
	unsigned int prev_eol;
	bool line_is_boundary;
	unsigned char *head;
	size_t head_len, head_max;

	struct open_part *stack;
	unsigned int depth, stack_alloc;
	struct boundary *bounds;
	unsigned int nbounds, bounds_alloc;
	bool pending_child;

	struct header_state hs;
	/* Scratch buffers for field parsing, reused. */
	struct sora_buf tmp1, tmp2;
	struct mime_param_list plist;
};

static const struct {
	const char *name;
	enum sora_mime_env_field field;
} env_names[] = {
	{ "Date", SORA_MIME_ENV_DATE },
	{ "Subject", SORA_MIME_ENV_SUBJECT },
	{ "From", SORA_MIME_ENV_FROM },
	{ "Sender", SORA_MIME_ENV_SENDER },
	{ "Reply-To", SORA_MIME_ENV_REPLY_TO },
	{ "To", SORA_MIME_ENV_TO },
	{ "Cc", SORA_MIME_ENV_CC },
	{ "Bcc", SORA_MIME_ENV_BCC },
	{ "In-Reply-To", SORA_MIME_ENV_IN_REPLY_TO },
	{ "Message-ID", SORA_MIME_ENV_MESSAGE_ID },
};

static bool env_is_address(enum sora_mime_env_field f)
{
	return f >= SORA_MIME_ENV_FROM && f <= SORA_MIME_ENV_BCC;
}

void sora_mime_params_init(struct sora_mime_params *params)
{
	memset(params, 0, sizeof(*params));
	params->max_depth = 100;
	params->max_parts = 10000;
	params->max_headers = 1000;
	params->max_header_bytes = 64 * 1024;
	params->max_field_len = 64 * 1024;
	params->max_boundary_len = 80;
	params->max_kept_bytes = 4 * 1024 * 1024;
	params->keep_all_headers = false;
}

/* ---- header state ---- */

static void hs_init(struct header_state *hs, size_t max_field)
{
	memset(hs, 0, sizeof(*hs));
	sora_buf_init(&hs->field, max_field);
	sora_buf_init(&hs->boundary, 0);
	for (int i = 0; i < SORA_MIME_ENV_COUNT; i++)
		sora_buf_init(&hs->env[i], max_field);
}

static void hs_free(struct header_state *hs)
{
	sora_buf_free(&hs->field);
	sora_buf_free(&hs->boundary);
	for (int i = 0; i < SORA_MIME_ENV_COUNT; i++)
		sora_buf_free(&hs->env[i]);
	free(hs->headers);
}

/* Prepares for the header of a new part; keeps allocated memory. */
static void hs_reset(struct header_state *hs)
{
	hs->field.len = 0;
	hs->field_active = false;
	hs->first_line_done = false;
	hs->skip_line = false;
	hs->pending_cr = false;
	hs->is_mime = false;
	hs->seen_ct = false;
	hs->ct_complete = false;
	hs->digest_parent = false;
	hs->env_root = false;
	hs->keep_headers = false;
	hs->has_boundary = false;
	hs->boundary.len = 0;
	for (int i = 0; i < SORA_MIME_ENV_COUNT; i++) {
		hs->env[i].len = 0;
		hs->env_set[i] = false;
	}
	hs->header_count = 0;
	hs->header_bytes = 0;
}

/* Appends to a capped buffer as much as fits; returns false if cut. */
static bool append_capped(struct sora_mime_parser *p, struct sora_buf *b, const void *data, size_t len)
{
	size_t room = b->max - b->len;
	bool cut = false;

	if (len > room) {
		len = room;
		cut = true;
	}
	if (len > 0 && sora_buf_append(b, data, len) < 0)
		p->failed = true;
	return !cut;
}

/* ---- building parts ---- */

static struct open_part *top(struct sora_mime_parser *p)
{
	return &p->stack[p->depth - 1];
}

static int push_part(struct sora_mime_parser *p, struct sora_mime_part *parent)
{
	struct sora_mime_part *part;
	struct open_part *op;

	if (p->depth == p->stack_alloc) {
		unsigned int n = p->stack_alloc == 0 ? 8 : p->stack_alloc * 2;
		struct open_part *s = reallocarray(p->stack, n, sizeof(*s));

		if (s == NULL)
			return -1;
		p->stack = s;
		p->stack_alloc = n;
	}
	part = mime_arena_alloc(p->msg->arena, sizeof(*part));
	if (part == NULL)
		return -1;
	part->header_offset = p->pos;
	part->parent = parent;
	if (parent != NULL) {
		struct open_part *pop = top(p);

		part->depth = parent->depth + 1;
		if (pop->last_child == NULL)
			parent->children = part;
		else
			pop->last_child->next = part;
		pop->last_child = part;
		parent->child_count++;
	} else {
		p->msg->root = part;
	}
	p->msg->part_count++;

	op = &p->stack[p->depth++];
	memset(op, 0, sizeof(*op));
	op->part = part;
	op->bare_at_header = p->bare_count;

	hs_reset(&p->hs);
	if (parent == NULL || (parent->flags & SORA_MIME_PART_MESSAGE) != 0)
		p->hs.env_root = true;
	if (parent != NULL && (parent->flags & SORA_MIME_PART_MULTIPART) != 0) {
		/* Body parts of a multipart are MIME parts by definition. */
		p->hs.is_mime = true;
		p->hs.digest_parent = sora_str_eq(parent->subtype, SORA_STR("digest"));
	}
	p->hs.keep_headers = p->params.keep_all_headers || parent == NULL;
	return 0;
}

static int push_boundary(struct sora_mime_parser *p, struct sora_str b, unsigned int owner)
{
	struct boundary *nb;
	size_t len = b.len < p->params.max_boundary_len ? b.len : p->params.max_boundary_len;

	if (p->nbounds == p->bounds_alloc) {
		unsigned int n = p->bounds_alloc == 0 ? 8 : p->bounds_alloc * 2;
		struct boundary *s = reallocarray(p->bounds, n, sizeof(*s));

		if (s == NULL)
			return -1;
		p->bounds = s;
		p->bounds_alloc = n;
	}
	nb = &p->bounds[p->nbounds];
	nb->str = malloc(len + 1);
	if (nb->str == NULL)
		return -1;
	if (len > 0)
		memcpy(nb->str, b.p, len);
	nb->str[len] = '\0';
	nb->len = len;
	nb->owner = owner;
	p->nbounds++;
	return 0;
}

static void pop_boundaries(struct sora_mime_parser *p, unsigned int keep)
{
	while (p->nbounds > keep)
		free(p->bounds[--p->nbounds].str);
}

/* ---- header fields ---- */

/* Whether n more bytes may be kept (max_kept_bytes); notes it in part and
 * in the message when not. */
static bool keep_ok(struct sora_mime_parser *p, struct sora_mime_part *part, size_t n)
{
	if (n <= p->params.max_kept_bytes &&
	    mime_arena_used(p->msg->arena) <= p->params.max_kept_bytes - n)
		return true;
	part->flags |= SORA_MIME_PART_HEADERS_TRUNCATED;
	p->msg->flags |= SORA_MIME_MSG_TRUNCATED;
	return false;
}

/* Rough arena cost of a string and of a parameter, for keep_ok(). */
#define KEEP_STR_COST(len) ((len) + 16)
#define KEEP_PARAM_COST 48

static int store_raw(struct sora_mime_parser *p, struct sora_str value, struct sora_str *out)
{
	return mime_arena_strdup(p->msg->arena, value.p, value.len, out);
}

/* A Content-* value that is stored as it is, if the budget allows. */
static int store_content_value(struct sora_mime_parser *p, struct sora_mime_part *part,
			       struct sora_str value, struct sora_str *out)
{
	if (!keep_ok(p, part, KEEP_STR_COST(value.len)))
		return 0;
	return store_raw(p, value, out);
}

/* Stores a parsed parameter list, if the budget allows. */
static int store_params(struct sora_mime_parser *p, struct sora_mime_part *part,
			struct sora_mime_param **params_r, unsigned int *count_r)
{
	*params_r = NULL;
	*count_r = 0;
	if (!keep_ok(p, part, p->plist.data.len + (size_t)p->plist.count * KEEP_PARAM_COST))
		return 0;
	return mime_params_store(p->msg->arena, &p->plist, params_r, count_r);
}

/* Media types and subtypes are short tokens (RFC 6838: 127 characters);
 * longer ones are cut so that they need no budget. */
#define MAX_TYPE_LEN 255

static void interpret_content_field(struct sora_mime_parser *p, struct sora_mime_part *part,
				    struct sora_str name, struct sora_str value)
{
	struct sora_mime_arena *arena = p->msg->arena;
	struct sora_str rest = sora_str_make(name.p + 8, name.len - 8);
	int r = 0;

	if (sora_str_ieq_c(rest, "Type")) {
		p->hs.is_mime = true;
		if (p->hs.seen_ct)
			return;
		p->hs.seen_ct = true;
		mime_param_list_free(&p->plist);
		mime_param_list_init(&p->plist);
		if (mime_parse_content_type(value, &p->tmp1, &p->tmp2, &p->plist) < 0) {
			p->failed = true;
			return;
		}
		p->hs.ct_complete = p->tmp2.len > 0;
		/* The boundary is needed to parse on, whether or not the
		 * parameters can be kept. */
		for (unsigned int i = 0; i < p->plist.count && !p->hs.has_boundary; i++) {
			const struct mime_param_ref *ref = &p->plist.items[i];
			const char *base = p->plist.data.data;

			if (ref->name_len == 8 &&
			    sora_str_eq(sora_str_make(base + ref->name_off, 8), SORA_STR("boundary"))) {
				p->hs.has_boundary = true;
				if (sora_buf_append(&p->hs.boundary, base + ref->value_off,
						    ref->value_len) < 0)
					r = -1;
			}
		}
		if (r == 0)
			r = mime_arena_strdup_lower(arena, p->tmp1.data,
						    p->tmp1.len < MAX_TYPE_LEN ? p->tmp1.len : MAX_TYPE_LEN,
						    &part->type);
		if (r == 0)
			r = mime_arena_strdup_lower(arena, p->tmp2.data,
						    p->tmp2.len < MAX_TYPE_LEN ? p->tmp2.len : MAX_TYPE_LEN,
						    &part->subtype);
		if (r == 0)
			r = store_params(p, part, &part->params, &part->param_count);
	} else if (sora_str_ieq_c(rest, "Transfer-Encoding")) {
		if (part->encoding.p != NULL)
			return;
		r = mime_parse_encoding(value, &p->tmp1);
		if (r > 0 && keep_ok(p, part, KEEP_STR_COST(p->tmp1.len)))
			r = mime_arena_strdup_lower(arena, p->tmp1.data, p->tmp1.len, &part->encoding);
	} else if (sora_str_ieq_c(rest, "ID")) {
		if (part->id.p == NULL)
			r = store_content_value(p, part, value, &part->id);
	} else if (sora_str_ieq_c(rest, "Description")) {
		if (part->description.p == NULL)
			r = store_content_value(p, part, value, &part->description);
	} else if (sora_str_ieq_c(rest, "MD5")) {
		if (part->md5.p == NULL)
			r = store_content_value(p, part, value, &part->md5);
	} else if (sora_str_ieq_c(rest, "Location")) {
		if (part->location.p == NULL)
			r = store_content_value(p, part, value, &part->location);
	} else if (sora_str_ieq_c(rest, "Disposition")) {
		/* As in Dovecot, a later field replaces one that had no
		 * parameters. */
		if (part->disp_param_count > 0)
			return;
		mime_param_list_free(&p->plist);
		mime_param_list_init(&p->plist);
		r = mime_parse_disposition(value, &p->tmp1, &p->plist);
		if (r > 0 && keep_ok(p, part, KEEP_STR_COST(p->tmp1.len))) {
			r = mime_arena_strdup_lower(arena, p->tmp1.data, p->tmp1.len, &part->disposition);
			if (r == 0)
				r = store_params(p, part, &part->disp_params, &part->disp_param_count);
		} else if (r > 0) {
			r = 0;
		}
	} else if (sora_str_ieq_c(rest, "Language")) {
		unsigned int count;

		if (part->languages != NULL)
			return;
		r = mime_parse_language(value, &p->tmp1, &count);
		if (r <= 0) {
			if (r < 0)
				p->failed = true;
			return;
		}
		if (!keep_ok(p, part, p->tmp1.len + (size_t)count * KEEP_PARAM_COST))
			return;
		r = 0;
		part->languages = mime_arena_alloc(arena, sizeof(*part->languages) * count);
		if (part->languages == NULL) {
			r = -1;
		} else {
			const char *s = p->tmp1.data;

			for (unsigned int i = 0; i < count && r == 0; i++) {
				size_t n = strlen(s);

				r = mime_arena_strdup(arena, s, n, &part->languages[i]);
				s += n + 1;
			}
			part->language_count = count;
		}
	}
	if (r < 0)
		p->failed = true;
}

static void keep_header(struct sora_mime_parser *p, struct sora_mime_part *part,
			struct sora_str name, struct sora_str value)
{
	struct header_state *hs = &p->hs;
	struct sora_mime_header *h;

	if (hs->header_count >= p->params.max_headers ||
	    name.len + value.len > p->params.max_header_bytes - hs->header_bytes) {
		part->flags |= SORA_MIME_PART_HEADERS_TRUNCATED;
		return;
	}
	if (!keep_ok(p, part, KEEP_STR_COST(name.len) + KEEP_STR_COST(value.len) +
		     sizeof(struct sora_mime_header)))
		return;
	if (hs->header_count == hs->header_alloc) {
		unsigned int n = hs->header_alloc == 0 ? 16 : hs->header_alloc * 2;
		struct sora_mime_header *nh = reallocarray(hs->headers, n, sizeof(*nh));

		if (nh == NULL) {
			p->failed = true;
			return;
		}
		hs->headers = nh;
		hs->header_alloc = n;
	}
	h = &hs->headers[hs->header_count];
	if (store_raw(p, name, &h->name) < 0 || store_raw(p, value, &h->value) < 0) {
		p->failed = true;
		return;
	}
	hs->header_count++;
	hs->header_bytes += name.len + value.len;
}

/* Interprets the completed field in hs.field. */
static void commit_field(struct sora_mime_parser *p)
{
	struct header_state *hs = &p->hs;
	struct sora_mime_part *part = top(p)->part;
	const char *f = hs->field.data, *colon;
	struct sora_str name, value;
	size_t nlen, vstart, k;

	if (!hs->field_active)
		return;
	hs->field_active = false;
	if (!hs->first_line_done)
		hs->first_line_end = hs->field.len;
	if (hs->first_line_end == 0 || (colon = memchr(f, ':', hs->first_line_end)) == NULL) {
		/* A line without a colon is no field; it stays in the raw
		 * header but means nothing. */
		return;
	}
	nlen = (size_t)(colon - f);
	while (nlen > 0 && (f[nlen - 1] == ' ' || f[nlen - 1] == '\t'))
		nlen--;
	if (nlen == 0)
		return;
	/* The whitespace after the colon goes, but only on the field's first
	 * line, and if that line has nothing else, only one character of it
	 * (Dovecot: "Date:" CRLF " Mon, ..." keeps the space before "Mon"). */
	vstart = (size_t)(colon - f) + 1;
	for (k = vstart; k < hs->first_line_end && (f[k] == ' ' || f[k] == '\t'); k++)
		;
	if (k == hs->first_line_end && k > vstart)
		k = vstart + 1;
	vstart = k;
	name = sora_str_make(f, nlen);
	value = sora_str_make(f + vstart, hs->field.len - vstart);

	if (sora_str_ieq_c(name, "MIME-Version"))
		hs->is_mime = true;
	else if (sora_str_has_iprefix(name, "Content-"))
		interpret_content_field(p, part, name, value);
	if (hs->env_root) {
		for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++) {
			enum sora_mime_env_field ef = env_names[i].field;

			if (!sora_str_ieq_c(name, env_names[i].name))
				continue;
			if (env_is_address(ef) && hs->env_set[ef]) {
				/* All address fields count: keep them apart
				 * with "\n" and parse them one by one. */
				if (!append_capped(p, &hs->env[ef], "\n", 1) ||
				    !append_capped(p, &hs->env[ef], value.p, value.len))
					part->flags |= SORA_MIME_PART_HEADERS_TRUNCATED;
			} else {
				/* The last Date/Subject/... wins, as in Dovecot. */
				hs->env[ef].len = 0;
				if (!append_capped(p, &hs->env[ef], value.p, value.len))
					part->flags |= SORA_MIME_PART_HEADERS_TRUNCATED;
			}
			hs->env_set[ef] = true;
			break;
		}
	}
	if (hs->keep_headers)
		keep_header(p, part, name, value);
}

/* A piece of a header line, without its LF. first: the line starts here;
 * complete: the line's LF follows the piece. */
static void header_piece(struct sora_mime_parser *p, const unsigned char *s, size_t n,
			 bool first, bool complete)
{
	struct header_state *hs = &p->hs;
	struct sora_mime_part *part = top(p)->part;

	if (first) {
		hs->pending_cr = false;
		hs->skip_line = false;
		if (n > 0 && (s[0] == ' ' || s[0] == '\t')) {
			/* A continuation: unfold it into the current field. */
			if (!hs->field_active) {
				hs->skip_line = true;
			} else if (!hs->first_line_done) {
				hs->first_line_end = hs->field.len;
				hs->first_line_done = true;
			}
		} else {
			commit_field(p);
			hs->field.len = 0;
			hs->field_active = true;
			hs->first_line_done = false;
		}
	}
	if (hs->skip_line)
		return;
	if (hs->pending_cr) {
		hs->pending_cr = false;
		if (n > 0 || !complete) {
			/* The CR was not part of CRLF: it is data. */
			if (!append_capped(p, &hs->field, "\r", 1))
				part->flags |= SORA_MIME_PART_HEADERS_TRUNCATED;
		}
	}
	if (n > 0 && s[n - 1] == '\r') {
		n--;
		if (!complete)
			hs->pending_cr = true;
	}
	if (!append_capped(p, &hs->field, s, n))
		part->flags |= SORA_MIME_PART_HEADERS_TRUNCATED;
}

/* ---- ending headers and parts ---- */

static void clear_content_fields(struct sora_mime_part *part)
{
	part->type = part->subtype = SORA_STR_NULL;
	part->params = NULL;
	part->param_count = 0;
	part->id = part->description = part->md5 = part->location = SORA_STR_NULL;
	part->encoding = SORA_STR_NULL;
	part->disposition = SORA_STR_NULL;
	part->disp_params = NULL;
	part->disp_param_count = 0;
	part->languages = NULL;
	part->language_count = 0;
}

static int store_envelope(struct sora_mime_parser *p, struct sora_mime_part *part)
{
	struct sora_mime_envelope *env;
	size_t cost = sizeof(*env);

	for (int i = 0; i < SORA_MIME_ENV_COUNT; i++)
		cost += p->hs.env_set[i] ? KEEP_STR_COST(p->hs.env[i].len) : 0;
	if (!keep_ok(p, part, cost))
		return 0;
	env = mime_arena_alloc(p->msg->arena, sizeof(*env));
	if (env == NULL)
		return -1;
	for (int i = 0; i < SORA_MIME_ENV_COUNT; i++) {
		if (p->hs.env_set[i] &&
		    mime_arena_strdup(p->msg->arena, p->hs.env[i].data, p->hs.env[i].len,
				      &env->raw[i]) < 0)
			return -1;
	}
	if (mime_envelope_parse_addresses(p->msg->arena, env) < 0)
		return -1;
	part->envelope = env;
	return 0;
}

/* The header of the innermost part ends at header_end (its empty line
 * included when blank_line); lf_at_end and bare_at_end are the counters
 * there. */
static void header_finish(struct sora_mime_parser *p, uint64_t header_end, uint64_t lf_at_end,
			  uint64_t bare_at_end, bool blank_line)
{
	struct open_part *op = top(p);
	struct sora_mime_part *part = op->part;
	struct header_state *hs = &p->hs;
	bool can_nest;

	commit_field(p);
	part->header_size = header_end - part->header_offset;
	part->header_vsize = part->header_size + (bare_at_end - op->bare_at_header);
	op->in_body = true;
	op->body_start = header_end;
	op->lf_at_body = lf_at_end;
	op->bare_at_body = bare_at_end;

	if (!hs->is_mime) {
		/* Without MIME-Version, Content-Type or a multipart parent the
		 * Content-* fields are not MIME (RFC 2045 4). */
		clear_content_fields(part);
	}
	if (part->type.p == NULL) {
		part->flags |= hs->digest_parent ? SORA_MIME_PART_MESSAGE : SORA_MIME_PART_TEXT;
	} else if (sora_str_eq(part->type, SORA_STR("text"))) {
		part->flags |= SORA_MIME_PART_TEXT;
	} else if (hs->ct_complete && sora_str_eq(part->type, SORA_STR("multipart"))) {
		part->flags |= SORA_MIME_PART_MULTIPART;
	} else if (hs->ct_complete && sora_str_eq(part->type, SORA_STR("message")) &&
		   sora_str_eq(part->subtype, SORA_STR("rfc822"))) {
		part->flags |= SORA_MIME_PART_MESSAGE;
	}
	if (hs->env_root && store_envelope(p, part) < 0)
		p->failed = true;
	if (hs->header_count > 0) {
		part->headers = mime_arena_alloc(p->msg->arena, sizeof(*part->headers) * hs->header_count);
		if (part->headers == NULL) {
			p->failed = true;
		} else {
			memcpy(part->headers, hs->headers, sizeof(*part->headers) * hs->header_count);
			part->header_count = hs->header_count;
		}
	}
	if (!blank_line || p->failed)
		return;

	can_nest = part->depth + 1 < p->params.max_depth && p->msg->part_count < p->params.max_parts;
	if ((part->flags & SORA_MIME_PART_MULTIPART) != 0) {
		if (!hs->has_boundary) {
			/* A multipart without boundary has no body parts. */
		} else if (!can_nest) {
			part->flags &= ~(unsigned int)SORA_MIME_PART_MULTIPART;
			part->flags |= SORA_MIME_PART_LIMITED;
			p->msg->flags |= SORA_MIME_MSG_LIMITED;
		} else if (push_boundary(p, sora_buf_str(&hs->boundary), p->depth - 1) < 0) {
			p->failed = true;
		}
	} else if ((part->flags & SORA_MIME_PART_MESSAGE) != 0) {
		if (!can_nest) {
			part->flags &= ~(unsigned int)SORA_MIME_PART_MESSAGE;
			part->flags |= SORA_MIME_PART_LIMITED;
			p->msg->flags |= SORA_MIME_MSG_LIMITED;
		} else if (push_part(p, part) < 0) {
			p->failed = true;
		}
	}
}

/* Ends the innermost open part at offset end, where lf_end and bare_end
 * are the counters at end, and pops it. */
static void end_part(struct sora_mime_parser *p, uint64_t end, uint64_t lf_end, uint64_t bare_end)
{
	struct open_part *op = top(p);
	struct sora_mime_part *part = op->part;

	if (!op->in_body) {
		/* header_finish cannot push a child without an empty line, so
		 * op stays the top. */
		if (end >= part->header_offset)
			header_finish(p, end, lf_end, bare_end, false);
		else
			header_finish(p, part->header_offset, lf_end, op->bare_at_header, false);
	} else if (end < op->body_start) {
		/* The boundary follows the header's empty line right away: that
		 * line ending belongs to the boundary, so the header loses it
		 * (what Dovecot does, too). An encapsulated message that started
		 * there is empty and moves along. */
		uint64_t new_start = end >= part->header_offset ? end : part->header_offset;

		part->header_size = new_start - part->header_offset;
		part->header_vsize = part->header_size +
			(end >= part->header_offset ? bare_end - op->bare_at_header : 0);
		for (struct sora_mime_part *c = part->children; c != NULL; c = c->children)
			c->header_offset = new_start;
		op->body_start = new_start;
		op->lf_at_body = lf_end;
		op->bare_at_body = bare_end;
	}
	if (end >= op->body_start) {
		part->body_size = end - op->body_start;
		part->body_lines = lf_end - op->lf_at_body;
		part->body_vsize = part->body_size + (bare_end - op->bare_at_body);
	}
	p->depth--;
}

/* ---- lines ---- */

static bool boundaries_enabled(const struct sora_mime_parser *p)
{
	return p->nbounds > 0 && p->msg->part_count < p->params.max_parts;
}

static bool in_header(struct sora_mime_parser *p)
{
	return !top(p)->in_body;
}

static void consume(struct sora_mime_parser *p, const unsigned char *s, size_t n)
{
	if (n == 0)
		return;
	p->pos += n;
	p->last_byte = s[n - 1];
}

static void consume_lf(struct sora_mime_parser *p)
{
	p->cur_eol = p->last_byte == '\r' ? 2 : 1;
	p->pos++;
	p->last_byte = '\n';
}

static void end_of_line(struct sora_mime_parser *p)
{
	p->lf_count++;
	if (p->cur_eol == 1)
		p->bare_count++;
	/* The line ending of a boundary line is the boundary's own: a part
	 * that ends right after it keeps none of it to give away, and the
	 * epilogue that may follow the close delimiter starts after it. */
	p->prev_eol = p->line_is_boundary ? 0 : p->cur_eol;
	p->line_is_boundary = false;
	p->line_start = p->pos;
	p->lf_at_line = p->lf_count;
	p->bare_at_line = p->bare_count;
	p->head_len = 0;
	p->state = LS_HEAD;
}

static void start_pending_child(struct sora_mime_parser *p)
{
	p->pending_child = false;
	if (push_part(p, top(p)->part) < 0)
		p->failed = true;
}

/* data: the line after "--"; size: bytes of it available. Returns the
 * matching boundary's index or -1. */
static int find_boundary(struct sora_mime_parser *p, const unsigned char *data, size_t size,
			 bool complete, bool *close_r)
{
	size_t find_size = size;
	int best = -1;

	if (complete) {
		/* Trailing whitespace is not removed: a boundary may end in a
		 * space, and prefix matching covers "--b   " anyway. */
		find_size--;
		if (find_size > 0 && data[find_size - 1] == '\r')
			find_size--;
		if (find_size > 2 && data[find_size - 1] == '-' && data[find_size - 2] == '-')
			find_size -= 2;
	}
	/* Newest first, so that a nested multipart reusing its parent's
	 * boundary gets its own lines; the longest match wins. */
	for (unsigned int i = p->nbounds; i-- > 0;) {
		const struct boundary *b = &p->bounds[i];

		if (b->len <= find_size && memcmp(b->str, data, b->len) == 0 &&
		    (best < 0 || p->bounds[best].len < b->len)) {
			best = (int)i;
			if (b->len == find_size)
				break;
		}
	}
	if (best >= 0) {
		size_t len = p->bounds[best].len;

		*close_r = size >= len + 2 && data[len] == '-' && data[len + 1] == '-';
	}
	return best;
}

/* Ends the parts inside the multipart that owns boundary idx. Where the
 * line ending before the boundary line goes follows Dovecot: if it ended a
 * line of some part's header (including the header's empty line), that
 * header loses it and the part's parent keeps it; if it ended a body line,
 * every part up to the multipart loses it; the line ending of a boundary
 * line stays where it is. */
static void handle_boundary(struct sora_mime_parser *p, int idx, bool close)
{
	unsigned int owner = p->bounds[idx].owner;
	uint64_t line = p->line_start, lf_line = p->lf_at_line, bare_line = p->bare_at_line;
	uint64_t end = line, lf_end = lf_line, bare_end = bare_line;
	int x = -1;   /* stack index of the part whose header had the ending */

	if (p->prev_eol > 0) {
		const struct open_part *t = top(p);

		end = line - p->prev_eol;
		lf_end--;
		if (p->prev_eol == 1)
			bare_end--;
		if (!t->in_body) {
			x = (int)p->depth - 1;
			/* An encapsulated message that has not read a line yet:
			 * the ending was the message/rfc822 part's empty line. */
			if (t->part->header_offset == line && p->depth >= 2 &&
			    (p->stack[p->depth - 2].part->flags & SORA_MIME_PART_MESSAGE) != 0)
				x = (int)p->depth - 2;
		} else if (t->body_start == line) {
			x = (int)p->depth - 1;
		}
		if (x >= 0 && (unsigned int)x <= owner) {
			/* A multipart's body starting with its own boundary:
			 * the header keeps its empty line. */
			x = -1;
			end = line;
			lf_end = lf_line;
			bare_end = bare_line;
		}
	}
	while (p->depth - 1 > owner && !p->failed) {
		if (x >= 0 && (int)p->depth - 1 < x)
			end_part(p, line, lf_line, bare_line);
		else
			end_part(p, end, lf_end, bare_end);
	}
	/* Boundaries of the parts just ended are newer than this one. After
	 * the close delimiter the multipart's own boundary is done, too. */
	pop_boundaries(p, close ? (unsigned int)idx : (unsigned int)idx + 1);
	p->pending_child = !close;
	p->line_is_boundary = true;
}

/* Whether the collected line head is enough to classify the line. */
static bool head_decidable(struct sora_mime_parser *p)
{
	size_t n = p->head_len;

	if (n == 0)
		return false;
	if (p->head[n - 1] == '\n' || n >= p->head_max)
		return true;
	if (in_header(p) && p->head[0] == '\r')
		return n >= 2;
	if (p->head[0] != '-' || !boundaries_enabled(p))
		return true;
	return n >= 2 && p->head[1] != '-';
}

/* Classifies the line in head (complete if it ends in LF; at EOF it may
 * not) and moves to the state for the rest of it. */
static void decide_line(struct sora_mime_parser *p)
{
	const unsigned char *h = p->head;
	size_t n = p->head_len;
	bool complete = n > 0 && h[n - 1] == '\n';

	if (n >= 2 && h[0] == '-' && h[1] == '-' && boundaries_enabled(p)) {
		bool close = false;
		int idx = find_boundary(p, h + 2, n - 2, complete, &close);

		if (idx >= 0) {
			handle_boundary(p, idx, close);
			if (!complete) {
				p->state = LS_BOUNDARY;
				return;
			}
			end_of_line(p);
			if (p->pending_child)
				start_pending_child(p);
			return;
		}
	}
	if (in_header(p)) {
		if ((n == 1 && h[0] == '\n') || (n == 2 && h[0] == '\r' && h[1] == '\n')) {
			end_of_line(p);
			header_finish(p, p->pos, p->lf_count, p->bare_count, true);
			return;
		}
		header_piece(p, h, complete ? n - 1 : n, true, complete);
		if (complete)
			end_of_line(p);
		else
			p->state = LS_HEADER;
		return;
	}
	if (complete)
		end_of_line(p);
	else
		p->state = LS_BODY;
}

static const unsigned char *feed_head(struct sora_mime_parser *p, const unsigned char *d,
				      const unsigned char *end)
{
	while (d < end) {
		unsigned char c = *d++;

		p->head[p->head_len++] = c;
		if (c == '\n')
			consume_lf(p);
		else
			consume(p, &c, 1);
		if (head_decidable(p)) {
			decide_line(p);
			break;
		}
	}
	return d;
}

static const unsigned char *feed_rest(struct sora_mime_parser *p, const unsigned char *d,
				      const unsigned char *end)
{
	const unsigned char *lf = memchr(d, '\n', (size_t)(end - d));
	const unsigned char *stop = lf != NULL ? lf : end;

	if (p->state == LS_HEADER)
		header_piece(p, d, (size_t)(stop - d), false, lf != NULL);
	consume(p, d, (size_t)(stop - d));
	if (lf == NULL)
		return end;
	consume_lf(p);
	end_of_line(p);
	if (p->pending_child)
		start_pending_child(p);
	return lf + 1;
}

/* ---- public API ---- */

struct sora_mime_parser *sora_mime_parser_new(const struct sora_mime_params *params)
{
	struct sora_mime_parser *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	if (params != NULL)
		p->params = *params;
	else
		sora_mime_params_init(&p->params);
	if (p->params.max_depth == 0)
		p->params.max_depth = 1;
	if (p->params.max_depth > SORA_MIME_MAX_DEPTH)
		p->params.max_depth = SORA_MIME_MAX_DEPTH;
	if (p->params.max_parts == 0)
		p->params.max_parts = 1;
	if (p->params.max_field_len == 0)
		p->params.max_field_len = 1;
	if (p->params.max_boundary_len == 0)
		p->params.max_boundary_len = 1;
	hs_init(&p->hs, p->params.max_field_len);
	sora_buf_init(&p->tmp1, 0);
	sora_buf_init(&p->tmp2, 0);
	mime_param_list_init(&p->plist);
	p->head_max = p->params.max_boundary_len + 4;
	p->head = malloc(p->head_max);
	p->msg = calloc(1, sizeof(*p->msg));
	if (p->head == NULL || p->msg == NULL ||
	    (p->msg->arena = sora_mime_arena_new()) == NULL ||
	    push_part(p, NULL) < 0) {
		sora_mime_parser_free(&p);
		return NULL;
	}
	return p;
}

int sora_mime_parser_feed(struct sora_mime_parser *parser, const void *data, size_t len)
{
	const unsigned char *d = data, *end = d + len;

	if (parser->failed)
		return -1;
	while (d < end && !parser->failed) {
		if (parser->state == LS_HEAD)
			d = feed_head(parser, d, end);
		else
			d = feed_rest(parser, d, end);
	}
	return parser->failed ? -1 : 0;
}

void sora_mime_parser_free(struct sora_mime_parser **parser)
{
	struct sora_mime_parser *p = *parser;

	if (p == NULL)
		return;
	*parser = NULL;
	hs_free(&p->hs);
	sora_buf_free(&p->tmp1);
	sora_buf_free(&p->tmp2);
	mime_param_list_free(&p->plist);
	pop_boundaries(p, 0);
	free(p->bounds);
	free(p->stack);
	free(p->head);
	sora_mime_message_free(&p->msg);
	free(p);
}

int sora_mime_parser_finish(struct sora_mime_parser **parser,
			    struct sora_mime_message **msg_r, const char **error_r)
{
	struct sora_mime_parser *p = *parser;
	int ret = -1;

	*msg_r = NULL;
	if (p->failed)
		goto out;
	if (p->state == LS_HEAD && p->head_len > 0)
		decide_line(p);
	if (p->state == LS_HEADER && p->hs.pending_cr) {
		/* A CR right before the end of input is data. */
		header_piece(p, (const unsigned char *)"", 0, false, false);
	}
	/* A boundary line cut off by the end of input starts no new part:
	 * the part would begin after the line's end, which never came. */
	p->pending_child = false;
	while (p->depth > 0 && !p->failed)
		end_part(p, p->pos, p->lf_count, p->bare_count);
	if (p->failed)
		goto out;
	p->msg->size = p->pos;
	p->msg->vsize = p->pos + p->bare_count;
	*msg_r = p->msg;
	p->msg = NULL;
	ret = 0;
out:
	if (ret < 0)
		*error_r = "out of memory while parsing the message";
	sora_mime_parser_free(parser);
	return ret;
}

int sora_mime_parse(const void *data, size_t len, const struct sora_mime_params *params,
		    struct sora_mime_message **msg_r, const char **error_r)
{
	struct sora_mime_parser *p = sora_mime_parser_new(params);

	*msg_r = NULL;
	if (p == NULL) {
		*error_r = "out of memory while parsing the message";
		return -1;
	}
	(void)sora_mime_parser_feed(p, data, len);
	return sora_mime_parser_finish(&p, msg_r, error_r);
}

void sora_mime_message_free(struct sora_mime_message **msg)
{
	if (*msg == NULL)
		return;
	sora_mime_arena_free(&(*msg)->arena);
	free(*msg);
	*msg = NULL;
}
