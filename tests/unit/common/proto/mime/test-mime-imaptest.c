/* Runs the FETCH parts of Dovecot's imaptest conformance scripts
 * (imaptest/, see the README there) against the MIME parser and the IMAP
 * formatters, without an IMAP server: the script's mbox is split the way
 * imaptest does it, every "* N FETCH (...)" the script expects is matched
 * item by item against what we compute for BODY, BODYSTRUCTURE, ENVELOPE,
 * RFC822.SIZE/HEADER/TEXT, BODY[section]<partial> and BINARY[section] of
 * identity-encoded parts. Matching follows imaptest: case-insensitive,
 * "$" matches anything, "$name" binds on first use and must match the same
 * value later, "$!unordered[=n]" lists match in any order. Items that are
 * not the MIME module's business (FLAGS, UID, HEADER.FIELDS, ...) are
 * skipped; each script must still have its expected number of items
 * compared, so that the test cannot pass by skipping everything. */
#include "mime-test-util.h"

#include <ctype.h>

/* ---- IMAP values ---- */

enum ival_type { IV_NIL, IV_ATOM, IV_STRING, IV_LIST };

struct ival {
	enum ival_type type;
	char *s;
	size_t len;
	struct ival *items;
	size_t n;
};

static void ival_free(struct ival *v)
{
	for (size_t i = 0; i < v->n; i++)
		ival_free(&v->items[i]);
	free(v->items);
	free(v->s);
	memset(v, 0, sizeof(*v));
}

static void ival_push(struct ival *list, struct ival *item)
{
	list->items = realloc(list->items, sizeof(*list->items) * (list->n + 1));
	assert_non_null(list->items);
	list->items[list->n++] = *item;
}

static char *dupmem(const char *p, size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/* Parses one value at *p; returns false at the end of a list or input. */
static bool ival_parse(const char **p, const char *end, struct ival *out)
{
	const char *s = *p;

	memset(out, 0, sizeof(*out));
	while (s < end && *s == ' ')
		s++;
	if (s >= end || *s == ')') {
		*p = s;
		return false;
	}
	if (*s == '(') {
		struct ival item;

		out->type = IV_LIST;
		s++;
		while (ival_parse(&s, end, &item))
			ival_push(out, &item);
		assert_true(s < end && *s == ')');
		*p = s + 1;
		return true;
	}
	if (*s == '"') {
		struct sora_buf b;

		sora_buf_init(&b, 0);
		for (s++; s < end && *s != '"'; s++) {
			if (*s == '\\')
				s++;
			assert_int_equal(sora_buf_append(&b, s, 1), 0);
		}
		assert_true(s < end);
		out->type = IV_STRING;
		out->s = dupmem(b.data != NULL ? b.data : "", b.len);
		out->len = b.len;
		sora_buf_free(&b);
		*p = s + 1;
		return true;
	}
	if (*s == '{' || (*s == '~' && s + 1 < end && s[1] == '{')) {
		char *close;
		unsigned long n;

		s += *s == '~' ? 2 : 1;
		n = strtoul(s, &close, 10);
		assert_true(close + 3 <= end && close[0] == '}' && close[1] == '\r' && close[2] == '\n');
		s = close + 3;
		assert_true(s + n <= end);
		out->type = IV_STRING;
		out->s = dupmem(s, n);
		out->len = n;
		*p = s + n;
		return true;
	}
	/* An atom; brackets may hold spaces and parentheses ("body[1.mime]",
	 * "body[header.fields (from)]"). */
	{
		const char *start = s;
		int depth = 0;

		while (s < end && (depth > 0 || (*s != ' ' && *s != '(' && *s != ')'))) {
			if (*s == '[')
				depth++;
			else if (*s == ']')
				depth--;
			s++;
		}
		out->s = dupmem(start, (size_t)(s - start));
		out->len = (size_t)(s - start);
		out->type = strcasecmp(out->s, "NIL") == 0 ? IV_NIL : IV_ATOM;
		*p = s;
		return true;
	}
}

static struct ival ival_from_string(const char *s, size_t len)
{
	struct ival v;
	const char *p = s;

	assert_true(ival_parse(&p, s + len, &v));
	return v;
}

/* ---- matching ---- */

struct var {
	char *name;
	struct ival value;
};

struct match_ctx {
	struct var vars[64];
	unsigned int nvars;
};

static struct ival ival_copy(const struct ival *v)
{
	struct ival c = *v;

	c.s = v->s != NULL ? dupmem(v->s, v->len) : NULL;
	c.items = NULL;
	c.n = 0;
	for (size_t i = 0; i < v->n; i++) {
		struct ival item = ival_copy(&v->items[i]);

		ival_push(&c, &item);
	}
	return c;
}

static bool ieq(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++) {
		if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i]))
			return false;
	}
	return true;
}

static bool match(struct match_ctx *ctx, const struct ival *e, const struct ival *a);

static bool match_list(struct match_ctx *ctx, const struct ival *e, const struct ival *a)
{
	size_t first = 0, chain = 1;
	bool unordered = false, noextra = false;
	bool *used;
	bool ok = true;

	while (first < e->n && e->items[first].type == IV_ATOM &&
	       strncmp(e->items[first].s, "$!", 2) == 0) {
		const char *d = e->items[first].s + 2;

		if (strncmp(d, "unordered", 9) == 0) {
			unordered = true;
			if (d[9] == '=')
				chain = strtoul(d + 10, NULL, 10);
		} else if (strcmp(d, "noextra") == 0) {
			noextra = true;
		}
		first++;
	}
	if (!unordered) {
		if (e->n - first != a->n)
			return false;
		for (size_t i = 0; i < a->n; i++) {
			if (!match(ctx, &e->items[first + i], &a->items[i]))
				return false;
		}
		return true;
	}
	used = calloc(a->n + 1, 1);
	assert_non_null(used);
	for (size_t i = first; i + chain <= e->n && ok; i += chain) {
		bool found = false;

		for (size_t j = 0; j + chain <= a->n && !found; j += chain) {
			bool all = !used[j];

			for (size_t k = 0; k < chain && all; k++)
				all = match(ctx, &e->items[i + k], &a->items[j + k]);
			if (all) {
				used[j] = true;
				found = true;
			}
		}
		ok = found;
	}
	if (ok && noextra) {
		for (size_t j = 0; j < a->n; j += chain)
			ok = ok && used[j];
	}
	free(used);
	return ok;
}

static bool match(struct match_ctx *ctx, const struct ival *e, const struct ival *a)
{
	if (e->type == IV_ATOM && e->s[0] == '$') {
		if (e->len == 1)
			return true;
		for (unsigned int i = 0; i < ctx->nvars; i++) {
			if (strcmp(ctx->vars[i].name, e->s) == 0)
				return match(ctx, &ctx->vars[i].value, a);
		}
		assert_true(ctx->nvars < 64);
		ctx->vars[ctx->nvars].name = dupmem(e->s, e->len);
		ctx->vars[ctx->nvars].value = ival_copy(a);
		ctx->nvars++;
		return true;
	}
	if (e->type == IV_LIST)
		return a->type == IV_LIST && match_list(ctx, e, a);
	if (e->type == IV_NIL)
		return a->type == IV_NIL;
	if (a->type == IV_LIST || a->type == IV_NIL)
		return false;
	return ieq(e->s, e->len, a->s, a->len);
}

/* ---- the mailbox ---- */

struct mbox_msg {
	char *data;
	size_t len;
	struct sora_mime_message *msg;
};

/* Splits an mbox like imaptest: a message is every line after a "From "
 * line up to the next one, with line endings made CRLF. */
static struct mbox_msg *load_mbox(const char *name, size_t *count_r)
{
	size_t len, n = 0;
	char *raw = test_read_file(name, &len);
	struct mbox_msg *msgs = NULL;
	struct sora_buf cur;
	const char *p = raw, *end = raw + len;
	bool in_msg = false;

	sora_buf_init(&cur, 0);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = nl != NULL ? nl : end;
		size_t llen = (size_t)(line_end - p);

		if (llen > 0 && p[llen - 1] == '\r')
			llen--;
		if (strncmp(p, "From ", 5) == 0) {
			if (in_msg) {
				msgs = realloc(msgs, sizeof(*msgs) * (n + 1));
				assert_non_null(msgs);
				msgs[n].data = dupmem(cur.data != NULL ? cur.data : "", cur.len);
				msgs[n].len = cur.len;
				n++;
			}
			cur.len = 0;
			in_msg = true;
		} else if (in_msg) {
			assert_int_equal(sora_buf_append(&cur, p, llen), 0);
			assert_int_equal(sora_buf_append(&cur, "\r\n", 2), 0);
		}
		p = nl != NULL ? nl + 1 : end;
	}
	if (in_msg) {
		msgs = realloc(msgs, sizeof(*msgs) * (n + 1));
		assert_non_null(msgs);
		msgs[n].data = dupmem(cur.data != NULL ? cur.data : "", cur.len);
		msgs[n].len = cur.len;
		n++;
	}
	sora_buf_free(&cur);
	free(raw);
	for (size_t i = 0; i < n; i++)
		msgs[i].msg = test_parse(msgs[i].data, msgs[i].len);
	*count_r = n;
	return msgs;
}

/* ---- computing FETCH items ---- */

struct partial {
	char key[256];   /* "body[text]<5>" lowercased */
	unsigned long len;
};

struct command {
	struct partial partials[32];
	unsigned int npartials;
};

static void lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* Remembers the <offset.length> of partial fetches in a command, because
 * the reply names only the offset. */
static void command_parse(const char *cmd, struct command *c)
{
	const char *p = cmd;

	c->npartials = 0;
	while ((p = strstr(p, "]<")) != NULL) {
		const char *open = p, *item;
		unsigned long off, len;
		char *dot, item_name[64];
		size_t ilen;

		while (open > cmd && *open != '[')
			open--;
		item = open;
		while (item > cmd && item[-1] != ' ' && item[-1] != '(')
			item--;
		ilen = (size_t)(open - item);
		assert_true(ilen < sizeof(item_name));
		memcpy(item_name, item, ilen);
		item_name[ilen] = '\0';
		lower(item_name);
		if ((dot = strstr(item_name, ".peek")) != NULL)
			*dot = '\0';
		off = strtoul(p + 2, &dot, 10);
		assert_true(*dot == '.');
		len = strtoul(dot + 1, NULL, 10);
		assert_true(c->npartials < 32);
		snprintf(c->partials[c->npartials].key, sizeof(c->partials[0].key), "%s[%.*s]<%lu>",
			 item_name, (int)(p - open - 1), open + 1, off);
		lower(c->partials[c->npartials].key);
		c->partials[c->npartials].len = len;
		c->npartials++;
		p += 2;
	}
}

static bool identity_encoding(const struct sora_mime_part *part)
{
	return part->encoding.p == NULL || test_str_is(part->encoding, "7bit") ||
	       test_str_is(part->encoding, "8bit") || test_str_is(part->encoding, "binary");
}

static struct ival string_value(const char *p, size_t n)
{
	struct ival v = { .type = IV_STRING };

	v.s = dupmem(p, n);
	v.len = n;
	return v;
}

/* Computes the value of FETCH item name (lowercased) for m, or returns
 * false if it is not ours to compute. */
static bool compute_item(const struct mbox_msg *m, const struct command *cmd, const char *name,
			 struct ival *out)
{
	char sec[256], *br, *close;
	uint32_t path[32];
	unsigned int plen;
	enum sora_mime_section kind;
	uint64_t off, size;
	bool binary = false, binary_size = false;
	unsigned long partial_off = 0, partial_len = 0;
	bool partial = false;

	if (strcmp(name, "body") == 0 || strcmp(name, "bodystructure") == 0) {
		size_t len;
		char *s = test_bodystructure(m->msg, name[4] != '\0', 0, &len);

		*out = ival_from_string(s, len);
		free(s);
		return true;
	}
	if (strcmp(name, "envelope") == 0) {
		size_t len;
		char *s = test_envelope(m->msg->root->envelope, &len);

		*out = ival_from_string(s, len);
		free(s);
		return true;
	}
	if (strcmp(name, "rfc822.size") == 0) {
		char num[32];

		snprintf(num, sizeof(num), "%llu", (unsigned long long)m->msg->size);
		*out = (struct ival){ .type = IV_ATOM, .s = dupmem(num, strlen(num)), .len = strlen(num) };
		return true;
	}
	if (strcmp(name, "rfc822") == 0)
		name = "body[]";
	else if (strcmp(name, "rfc822.header") == 0)
		name = "body[header]";
	else if (strcmp(name, "rfc822.text") == 0)
		name = "body[text]";

	if (strncmp(name, "body[", 5) == 0) {
		br = (char *)name + 5;
	} else if (strncmp(name, "binary[", 7) == 0) {
		br = (char *)name + 7;
		binary = true;
	} else if (strncmp(name, "binary.size[", 12) == 0) {
		br = (char *)name + 12;
		binary = binary_size = true;
	} else {
		return false;
	}
	close = strchr(br, ']');
	assert_non_null(close);
	snprintf(sec, sizeof(sec), "%.*s", (int)(close - br), br);
	if (close[1] == '<') {
		for (unsigned int i = 0; i < cmd->npartials; i++) {
			if (strcmp(cmd->partials[i].key, name) == 0) {
				partial = true;
				partial_len = cmd->partials[i].len;
			}
		}
		assert_true(partial);
		partial_off = strtoul(close + 2, NULL, 10);
	}
	if (strstr(sec, "fields") != NULL)
		return false;
	if (!test_parse_section(sec, path, 32, &plen, &kind))
		return false;
	if (plen == 0 && sec[0] == '\0') {
		off = 0;
		size = m->msg->size;
	} else if (sora_mime_section_range(m->msg, path, plen, kind, &off, &size) < 0) {
		*out = (struct ival){ .type = IV_NIL };
		return true;
	}
	if (binary) {
		const struct sora_mime_part *part = sora_mime_part_find(m->msg, path, plen);

		/* Decoding content is not this module's job. */
		if (part == NULL || !identity_encoding(part))
			return false;
	}
	if (binary_size) {
		char num[32];

		snprintf(num, sizeof(num), "%llu", (unsigned long long)size);
		*out = (struct ival){ .type = IV_ATOM, .s = dupmem(num, strlen(num)), .len = strlen(num) };
		return true;
	}
	if (partial) {
		if (partial_off > size)
			partial_off = size;
		if (partial_len > size - partial_off)
			partial_len = (unsigned long)(size - partial_off);
		off += partial_off;
		size = partial_len;
	}
	*out = string_value(m->data + off, size);
	return true;
}

/* ---- scripts ---- */

struct script_result {
	unsigned int compared, skipped;
};

/* One script line with its {{{ }}} multi-line strings turned into
 * literals, as imaptest's test-parser does. */
static char *next_logical_line(const char **p, const char *end, size_t *len_r)
{
	struct sora_buf out, ml;
	size_t last_line_end;
	bool binary = false;

	sora_buf_init(&out, 0);
	sora_buf_init(&ml, 0);
	for (;;) {
		const char *nl, *line;
		size_t llen;

		if (*p >= end) {
			sora_buf_free(&out);
			sora_buf_free(&ml);
			return NULL;
		}
		line = *p;
		nl = memchr(line, '\n', (size_t)(end - line));
		assert_non_null(nl);
		llen = (size_t)(nl - line);
		*p = nl + 1;
		if (llen >= 3 && memcmp(line + llen - 3, "{{{", 3) == 0) {
			binary = llen > 3 && line[llen - 4] == '~';
			assert_int_equal(sora_buf_append(&out, line, llen - 3 - (binary ? 1 : 0)), 0);
			ml.len = 0;
			last_line_end = 0;
			for (;;) {
				const char *l2 = *p, *nl2 = memchr(l2, '\n', (size_t)(end - l2));
				size_t l2len;

				assert_non_null(nl2);
				l2len = (size_t)(nl2 - l2);
				*p = nl2 + 1;
				if (l2len >= 3 && memcmp(l2, "}}}", 3) == 0) {
					/* The line ending after the last line is not
					 * part of the string. */
					ml.len = last_line_end;
					assert_int_equal(sora_buf_printf(&out, "%s{%zu}\r\n", binary ? "~" : "",
									 ml.len), 0);
					assert_int_equal(sora_buf_append(&out, ml.data != NULL ? ml.data : "",
									 ml.len), 0);
					line = l2 + 3;
					llen = l2len - 3;
					break;
				}
				assert_int_equal(sora_buf_append(&ml, l2, l2len), 0);
				last_line_end = ml.len;
				/* imaptest: lines of ~{{{ (binary) strings end in LF,
				 * the others in CRLF. */
				assert_int_equal(sora_buf_append_str(&ml, binary ? "\n" : "\r\n"), 0);
			}
			if (llen >= 3 && memcmp(line + llen - 3, "{{{", 3) == 0) {
				/* Another multi-line string on the same line. */
				*p = line;
				continue;
			}
		}
		assert_int_equal(sora_buf_append(&out, line, llen), 0);
		break;
	}
	sora_buf_free(&ml);
	assert_int_equal(sora_buf_append(&out, "", 1), 0);
	*len_r = out.len - 1;
	return out.data;
}

static void run_script(const char *script, struct script_result *res)
{
	char path[256], mbox_name[256];
	size_t len, nmsgs, seqmap_n, msg_limit = SIZE_MAX;
	char *text;
	const char *p, *end;
	struct mbox_msg *msgs;
	size_t *seqmap;
	struct match_ctx ctx = { .nvars = 0 };
	struct command cmd = { .npartials = 0 };
	bool header = true;

	snprintf(path, sizeof(path), "imaptest/%s", script);
	snprintf(mbox_name, sizeof(mbox_name), "imaptest/%s.mbox", script);
	if (!test_file_exists(mbox_name))
		snprintf(mbox_name, sizeof(mbox_name), "imaptest/default.mbox");
	text = test_read_file(path, &len);
	msgs = load_mbox(mbox_name, &nmsgs);
	p = text;
	end = text + len;
	memset(res, 0, sizeof(*res));

	seqmap = NULL;
	seqmap_n = 0;
	for (;;) {
		size_t llen;
		char *line = next_logical_line(&p, end, &llen);

		if (line == NULL)
			break;
		if (header) {
			if (llen == 0) {
				header = false;
				if (msg_limit == SIZE_MAX)
					msg_limit = nmsgs;
				seqmap_n = msg_limit;
				seqmap = malloc(sizeof(*seqmap) * (seqmap_n + 1));
				assert_non_null(seqmap);
				/* More messages than the mbox has wrap around. */
				for (size_t i = 0; i < seqmap_n; i++)
					seqmap[i] = i % nmsgs;
			} else if (strncasecmp(line, "messages:", 9) == 0 &&
				   strstr(line, "all") == NULL) {
				msg_limit = strtoul(line + 9, NULL, 10);
			}
			free(line);
			continue;
		}
		if (llen == 0 || line[0] == '#' || line[0] == '!') {
			free(line);
			continue;
		}
		if (strncasecmp(line, "ok ", 3) == 0) {
			command_parse(line + 3, &cmd);
		} else if (strncmp(line, "* ", 2) == 0) {
			struct ival seq, reply, items;
			const char *q = line + 2, *lend = line + llen;
			unsigned long seqno;

			assert_true(ival_parse(&q, lend, &seq));
			assert_true(ival_parse(&q, lend, &reply));
			if (seq.type == IV_ATOM && isdigit((unsigned char)seq.s[0]) &&
			    strcasecmp(reply.s, "expunge") == 0) {
				seqno = strtoul(seq.s, NULL, 10);
				assert_true(seqno >= 1 && seqno <= seqmap_n);
				memmove(&seqmap[seqno - 1], &seqmap[seqno],
					sizeof(*seqmap) * (seqmap_n - seqno));
				seqmap_n--;
			} else if (seq.type == IV_ATOM && isdigit((unsigned char)seq.s[0]) &&
				   strcasecmp(reply.s, "fetch") == 0) {
				size_t first = 0;

				seqno = strtoul(seq.s, NULL, 10);
				assert_true(seqno >= 1 && seqno <= seqmap_n);
				assert_true(ival_parse(&q, lend, &items));
				assert_int_equal(items.type, IV_LIST);
				while (first < items.n && items.items[first].type == IV_ATOM &&
				       strncmp(items.items[first].s, "$!", 2) == 0)
					first++;
				for (size_t i = first; i + 1 < items.n; i += 2) {
					char name[512];
					struct ival actual;

					snprintf(name, sizeof(name), "%s", items.items[i].s);
					lower(name);
					if (!compute_item(&msgs[seqmap[seqno - 1]], &cmd, name, &actual)) {
						res->skipped++;
						continue;
					}
					if (!match(&ctx, &items.items[i + 1], &actual)) {
						fail_msg("%s: \"%s\" of message %lu does not match\n"
							 "expected line: %s", script, name, seqno, line);
					}
					res->compared++;
					ival_free(&actual);
				}
				ival_free(&items);
			}
			ival_free(&seq);
			ival_free(&reply);
		}
		free(line);
	}
	for (unsigned int i = 0; i < ctx.nvars; i++) {
		free(ctx.vars[i].name);
		ival_free(&ctx.vars[i].value);
	}
	for (size_t i = 0; i < nmsgs; i++) {
		free(msgs[i].data);
		sora_mime_message_free(&msgs[i].msg);
	}
	free(msgs);
	free(seqmap);
	free(text);
}

static const struct {
	const char *script;
	unsigned int min_compared;
} scripts[] = {
	{ "fetch-bodystructure", 1 },
	{ "fetch-envelope", 6 },
	{ "fetch-body", 17 },
	{ "fetch-body-mime", 12 },
	{ "fetch-body-message-rfc822", 6 },
	{ "fetch-body-message-rfc822-mime", 13 },
	{ "fetch-body-message-rfc822-x2", 9 },
	{ "fetch-binary-mime", 10 },
	{ "fetch", 6 },
};

static void test_imaptest_scripts(void **state)
{
	unsigned int total = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
		struct script_result res;

		run_script(scripts[i].script, &res);
		if (res.compared < scripts[i].min_compared)
			fail_msg("%s: only %u items compared (%u skipped)", scripts[i].script,
				 res.compared, res.skipped);
		print_message("%s: %u items matched, %u not ours\n", scripts[i].script,
			      res.compared, res.skipped);
		total += res.compared;
	}
	assert_true(total >= 80);
}

/* The matcher itself must reject what differs, or the test above proves
 * nothing. */
static void test_matcher_rejects(void **state)
{
	struct match_ctx ctx = { .nvars = 0 };
	struct ival e, a;

	(void)state;
#define M(exp, act, want) do { \
		e = ival_from_string(exp, strlen(exp)); \
		a = ival_from_string(act, strlen(act)); \
		assert_true(match(&ctx, &e, &a) == (want)); \
		ival_free(&e); \
		ival_free(&a); \
	} while (0)
	M("(\"TEXT\" \"plain\" NIL 7)", "(\"text\" \"PLAIN\" NIL 7)", true);
	M("(\"text\" \"plain\" NIL 7)", "(\"text\" \"plain\" NIL 8)", false);
	M("(\"text\" \"plain\")", "(\"text\" \"plain\" NIL)", false);
	M("(NIL)", "(\"NIL\")", false);
	M("($ \"x\")", "((1 2) \"x\")", true);
	M("$v1", "\"abc\"", true);
	M("$v1", "\"abd\"", false);
	M("($!unordered a b)", "(b a c)", true);
	M("($!unordered $!noextra a b)", "(b a c)", false);
	M("{3}\r\nabc", "\"ABC\"", true);
#undef M
	for (unsigned int i = 0; i < ctx.nvars; i++) {
		free(ctx.vars[i].name);
		ival_free(&ctx.vars[i].value);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matcher_rejects),
		cmocka_unit_test(test_imaptest_scripts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
