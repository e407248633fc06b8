/* IMAP BODYSTRUCTURE / BODY / ENVELOPE formatting; see mime-imap.h. */
#include "common/proto/mime/mime-imap.h"

#include "common/proto/mime/mime-private.h"

#include <inttypes.h>
#include <string.h>

#define EMPTY_BODY "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)"
#define EMPTY_BODYSTRUCTURE \
	"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)"
#define EMPTY_ENVELOPE "NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL"

/* U+FFFD REPLACEMENT CHARACTER, sent for NUL bytes. */
static const char replacement[] = "\xef\xbf\xbd";

struct writer {
	struct sora_buf *out;
	unsigned int flags;
	bool extended;
	int ret;
};

static void w_raw(struct writer *w, const char *s, size_t n)
{
	if (w->ret == 0 && n > 0 && sora_buf_append(w->out, s, n) < 0)
		w->ret = -1;
}

static void w_str(struct writer *w, const char *s)
{
	w_raw(w, s, strlen(s));
}

static void w_u64(struct writer *w, uint64_t v)
{
	if (w->ret == 0 && sora_buf_printf(w->out, "%" PRIu64, v) < 0)
		w->ret = -1;
}

static int append_quoted_or_literal(struct sora_buf *out, const char *s, size_t n)
{
	unsigned int escapes = 0;
	bool literal = false;

	for (size_t i = 0; i < n && !literal; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			if (++escapes > 4)
				literal = true;
		} else if (c == '\r' || c == '\n' || c >= 0x80) {
			literal = true;
		}
	}
	if (literal) {
		if (sora_buf_printf(out, "{%zu}\r\n", n) < 0 || sora_buf_append(out, s, n) < 0)
			return -1;
		return 0;
	}
	if (sora_buf_reserve(out, n + escapes + 2) < 0)
		return -1;
	out->data[out->len++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			out->data[out->len++] = '\\';
		out->data[out->len++] = s[i];
	}
	out->data[out->len++] = '"';
	return 0;
}

int sora_mime_imap_append_nstring(struct sora_buf *out, struct sora_str s, bool nolf)
{
	struct sora_buf tmp;
	bool transform = false;
	int ret;

	if (s.p == NULL)
		return sora_buf_append(out, "NIL", 3);
	for (size_t i = 0; i < s.len && !transform; i++) {
		if (s.p[i] == '\0' || (nolf && (s.p[i] == '\r' || s.p[i] == '\n')))
			transform = true;
	}
	if (!transform)
		return append_quoted_or_literal(out, s.p, s.len);

	sora_buf_init(&tmp, 0);
	ret = 0;
	for (size_t i = 0; i < s.len && ret == 0; i++) {
		char c = s.p[i];

		if (c == '\0') {
			ret = sora_buf_append(&tmp, replacement, 3);
		} else if (nolf && (c == '\r' || c == '\n')) {
			/* A line break goes, but the words on either side must
			 * not run together (Dovecot's nolf rule). */
			char next = i + 1 < s.len ? s.p[i + 1] : ' ';

			if (next != ' ' && next != '\t' && next != '\r' && next != '\n')
				ret = sora_buf_append(&tmp, " ", 1);
		} else {
			ret = sora_buf_append(&tmp, &c, 1);
		}
	}
	if (ret == 0)
		ret = append_quoted_or_literal(out, tmp.data != NULL ? tmp.data : "", tmp.len);
	sora_buf_free(&tmp);
	return ret;
}

int sora_mime_imap_append_for_humans(struct sora_buf *out, struct sora_str s)
{
	struct sora_buf tmp;
	bool modify = false, last_ws = true;
	int ret = 0;

	if (s.p == NULL)
		return sora_buf_append(out, "NIL", 3);
	/* Dovecot sends anything it had to touch (whitespace, quotes,
	 * backslashes, 8-bit, NUL) as a literal; plain text stays quoted. */
	sora_buf_init(&tmp, 0);
	for (size_t i = 0; i < s.len && ret == 0; i++) {
		unsigned char c = (unsigned char)s.p[i];

		switch (c) {
		case '\0':
			modify = true;
			last_ws = false;
			ret = sora_buf_append(&tmp, replacement, 3);
			break;
		case '\t':
		case '\r':
		case '\n':
		case ' ':
			if (c != ' ' || last_ws)
				modify = true;
			if (!last_ws)
				ret = sora_buf_append(&tmp, " ", 1);
			last_ws = true;
			break;
		case '"':
		case '\\':
			modify = true;
			last_ws = false;
			ret = sora_buf_append(&tmp, &s.p[i], 1);
			break;
		default:
			if (c >= 0x80)
				modify = true;
			last_ws = false;
			ret = sora_buf_append(&tmp, &s.p[i], 1);
			break;
		}
	}
	if (ret == 0 && last_ws && tmp.len > 0) {
		/* Trailing whitespace. */
		tmp.len--;
		modify = true;
	} else if (last_ws && s.len > 0) {
		modify = true;
	}
	if (ret == 0) {
		if (!modify) {
			ret = append_quoted_or_literal(out, s.p, s.len);
		} else if (tmp.len == 0) {
			ret = sora_buf_append(out, "\"\"", 2);
		} else {
			ret = sora_buf_printf(out, "{%zu}\r\n", tmp.len);
			if (ret == 0)
				ret = sora_buf_append(out, tmp.data, tmp.len);
		}
	}
	sora_buf_free(&tmp);
	return ret;
}

static void w_nstring(struct writer *w, struct sora_str s, bool nolf)
{
	if (w->ret == 0 && sora_mime_imap_append_nstring(w->out, s, nolf) < 0)
		w->ret = -1;
}

static void w_addresses(struct writer *w, const struct sora_mime_address *a)
{
	if (a == NULL) {
		w_str(w, "NIL");
		return;
	}
	w_str(w, "(");
	for (; a != NULL; a = a->next) {
		w_str(w, "(");
		if (w->ret == 0 && sora_mime_imap_append_for_humans(w->out, a->name) < 0)
			w->ret = -1;
		w_str(w, " ");
		w_nstring(w, a->route, false);
		w_str(w, " ");
		w_nstring(w, a->mailbox, false);
		w_str(w, " ");
		w_nstring(w, a->domain, false);
		w_str(w, ")");
	}
	w_str(w, ")");
}

/* The envelope's fields without the surrounding parentheses. */
static void w_envelope(struct writer *w, const struct sora_mime_envelope *env)
{
	const struct sora_mime_address *from, *sender, *reply_to;

	if (env == NULL) {
		w_str(w, EMPTY_ENVELOPE);
		return;
	}
	from = env->addr[SORA_MIME_ENV_FROM];
	sender = env->addr[SORA_MIME_ENV_SENDER];
	reply_to = env->addr[SORA_MIME_ENV_REPLY_TO];
	/* RFC 3501 7.4.2: Sender and Reply-To default to From. */
	if (sender == NULL)
		sender = from;
	if (reply_to == NULL)
		reply_to = from;

	w_nstring(w, env->raw[SORA_MIME_ENV_DATE], true);
	w_str(w, " ");
	if (w->ret == 0 &&
	    sora_mime_imap_append_for_humans(w->out, env->raw[SORA_MIME_ENV_SUBJECT]) < 0)
		w->ret = -1;
	w_str(w, " ");
	w_addresses(w, from);
	w_str(w, " ");
	w_addresses(w, sender);
	w_str(w, " ");
	w_addresses(w, reply_to);
	w_str(w, " ");
	w_addresses(w, env->addr[SORA_MIME_ENV_TO]);
	w_str(w, " ");
	w_addresses(w, env->addr[SORA_MIME_ENV_CC]);
	w_str(w, " ");
	w_addresses(w, env->addr[SORA_MIME_ENV_BCC]);
	w_str(w, " ");
	w_nstring(w, env->raw[SORA_MIME_ENV_IN_REPLY_TO], true);
	w_str(w, " ");
	w_nstring(w, env->raw[SORA_MIME_ENV_MESSAGE_ID], true);
}

static void w_params(struct writer *w, const struct sora_mime_param *params, unsigned int count,
		     bool default_charset)
{
	bool seen_charset = false;

	if (!default_charset && count == 0) {
		w_str(w, "NIL");
		return;
	}
	w_str(w, "(");
	for (unsigned int i = 0; i < count; i++) {
		if (i > 0)
			w_str(w, " ");
		if (sora_str_eq(params[i].name, SORA_STR("charset")))
			seen_charset = true;
		w_nstring(w, params[i].name, false);
		w_str(w, " ");
		w_nstring(w, params[i].value, false);
	}
	if (default_charset && !seen_charset) {
		if (count > 0)
			w_str(w, " ");
		w_str(w, "\"charset\" \"us-ascii\"");
	}
	w_str(w, ")");
}

/* disposition, language and location: the extension data common to
 * multipart and single parts. */
static void w_common_ext(struct writer *w, const struct sora_mime_part *part)
{
	w_str(w, " ");
	if (part->disposition.p == NULL) {
		w_str(w, "NIL");
	} else {
		w_str(w, "(");
		w_nstring(w, part->disposition, false);
		w_str(w, " ");
		w_params(w, part->disp_params, part->disp_param_count, false);
		w_str(w, ")");
	}
	w_str(w, " ");
	if (part->language_count == 0) {
		w_str(w, "NIL");
	} else {
		w_str(w, "(");
		for (unsigned int i = 0; i < part->language_count; i++) {
			if (i > 0)
				w_str(w, " ");
			w_nstring(w, part->languages[i], false);
		}
		w_str(w, ")");
	}
	w_str(w, " ");
	w_nstring(w, part->location, true);
}

static void w_body(struct writer *w, const struct sora_mime_part *part);

static void w_multipart(struct writer *w, const struct sora_mime_part *part)
{
	if (part->children == NULL)
		w_str(w, w->extended ? EMPTY_BODYSTRUCTURE : EMPTY_BODY);
	for (const struct sora_mime_part *c = part->children; c != NULL && w->ret == 0; c = c->next)
		w_body(w, c);
	w_str(w, " ");
	w_nstring(w, part->subtype, false);
	if (!w->extended)
		return;
	w_str(w, " ");
	w_params(w, part->params, part->param_count, false);
	w_common_ext(w, part);
}

static void w_leaf(struct writer *w, const struct sora_mime_part *part)
{
	bool message = (part->flags & SORA_MIME_PART_MESSAGE) != 0;
	bool text = false;
	bool vsize = (w->flags & SORA_MIME_IMAP_VSIZE) != 0;

	if (message) {
		w_str(w, "\"message\" \"rfc822\"");
	} else if ((part->flags & SORA_MIME_PART_LIMITED) != 0) {
		/* A container the limits made a leaf cannot be shown as what
		 * it claims to be (a multipart needs body parts, message/rfc822
		 * an envelope), so it is shown as opaque data, like Dovecot. */
		w_str(w, "\"application\" \"octet-stream\"");
	} else if (part->type.p == NULL) {
		w_str(w, "\"text\" \"plain\"");
		text = true;
	} else {
		w_nstring(w, part->type, false);
		w_str(w, " ");
		w_nstring(w, part->subtype, false);
		text = (part->flags & SORA_MIME_PART_TEXT) != 0;
	}
	w_str(w, " ");
	w_params(w, part->params, part->param_count, text);
	w_str(w, " ");
	w_nstring(w, part->id, true);
	w_str(w, " ");
	w_nstring(w, part->description, true);
	w_str(w, " ");
	if (part->encoding.p != NULL)
		w_nstring(w, part->encoding, false);
	else
		w_str(w, "\"7bit\"");
	w_str(w, " ");
	w_u64(w, vsize ? part->body_vsize : part->body_size);
	if (text) {
		w_str(w, " ");
		w_u64(w, part->body_lines);
	} else if (message) {
		const struct sora_mime_part *child = part->children;

		w_str(w, " (");
		w_envelope(w, child != NULL ? child->envelope : NULL);
		w_str(w, ") ");
		if (child != NULL)
			w_body(w, child);
		else
			w_str(w, w->extended ? EMPTY_BODYSTRUCTURE : EMPTY_BODY);
		w_str(w, " ");
		w_u64(w, part->body_lines);
	}
	if (!w->extended)
		return;
	w_str(w, " ");
	w_nstring(w, part->md5, true);
	w_common_ext(w, part);
}

static void w_body(struct writer *w, const struct sora_mime_part *part)
{
	w_str(w, "(");
	if ((part->flags & SORA_MIME_PART_MULTIPART) != 0)
		w_multipart(w, part);
	else
		w_leaf(w, part);
	w_str(w, ")");
}

int sora_mime_imap_part_bodystructure(const struct sora_mime_part *part, bool extended,
				      unsigned int flags, struct sora_buf *out)
{
	struct writer w = { .out = out, .flags = flags, .extended = extended };

	w_body(&w, part);
	return w.ret;
}

int sora_mime_imap_bodystructure(const struct sora_mime_message *msg, bool extended,
				 unsigned int flags, struct sora_buf *out)
{
	return sora_mime_imap_part_bodystructure(msg->root, extended, flags, out);
}

int sora_mime_imap_envelope(const struct sora_mime_envelope *env, struct sora_buf *out)
{
	struct writer w = { .out = out };

	w_str(&w, "(");
	w_envelope(&w, env);
	w_str(&w, ")");
	return w.ret;
}
