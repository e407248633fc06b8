/* libFuzzer target for the SMTP/LMTP parsers in common/proto/smtp*.h.
 *
 * The input is used four ways:
 *  - every LF-separated line goes through the command parser (results must
 *    point into the line or the command's scratch space), the reply parser,
 *    the path parser and the subaddress split;
 *  - xtext encoding followed by decoding must give the input back;
 *  - the whole input is a DATA stream: decoded in one piece, byte by byte,
 *    and in chunks whose sizes come from the input, all three must produce
 *    the same output, consumed count and flags (the size limit also comes
 *    from the input). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/buf.h"
#include "common/proto/smtp-data.h"
#include "common/proto/smtp-reply.h"
#include "common/proto/smtp.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static bool inside(struct sora_str s, const char *base, size_t len)
{
	if (s.len == 0)
		return true;
	return s.p >= base && s.p + s.len <= base + len;
}

static bool inside_cmd(struct sora_str s, const struct sora_smtp_command *c,
		       const char *line, size_t len)
{
	return inside(s, line, len) || inside(s, c->scratch, c->scratch_used);
}

static void check_command(const char *line, size_t len)
{
	static struct sora_smtp_command c;
	const char *err = NULL;
	struct sora_smtp_status st;
	int r = sora_smtp_command_parse(line, len, &c, &err);

	st = sora_smtp_error_status(r, c.verb);
	CHECK(st.code >= 200 && st.code <= 599 && st.enhanced != NULL);
	if (r < 0) {
		CHECK(err != NULL);
		CHECK(inside(c.bad_param, line, len));
		return;
	}
	CHECK(c.verb != SORA_SMTP_CMD_UNKNOWN);
	CHECK(c.scratch_used <= sizeof(c.scratch));
	CHECK(inside(c.verb_text, line, len) && inside(c.arg, line, len));
	CHECK(inside(c.domain, line, len));
	CHECK(inside(c.path.path, line, len) && inside(c.path.mailbox, line, len));
	CHECK(inside(c.path.local, line, len) && inside(c.path.domain, line, len));
	CHECK(c.path.local.len <= SORA_SMTP_MAX_LOCAL_PART);
	CHECK(c.path.path.len + 2 <= SORA_SMTP_MAX_PATH);
	CHECK(inside_cmd(c.mail.envid, &c, line, len) && inside_cmd(c.mail.auth, &c, line, len));
	CHECK(inside_cmd(c.rcpt.orcpt, &c, line, len));
	for (int i = 0; i < SORA_SMTP_XCLIENT_ATTR_COUNT; i++) {
		const struct sora_smtp_xclient_value *v = &c.xclient.attr[i];
		CHECK(inside_cmd(v->value, &c, line, len));
		if (v->state == SORA_SMTP_XCLIENT_SET) {
			CHECK(v->value.len > 0 && v->value.len <= SORA_SMTP_MAX_XCLIENT_VALUE);
			CHECK(memchr(v->value.p, '\0', v->value.len) == NULL);
		}
	}
	if (c.verb == SORA_SMTP_CMD_MAIL || c.verb == SORA_SMTP_CMD_RCPT) {
		struct sora_smtp_path again;
		char unq[SORA_SMTP_MAX_LINE];
		size_t n;

		/* The path alone parses the same way. */
		CHECK(sora_smtp_path_parse(sora_str_make(c.path.path.p - 1, c.path.path.len + 2),
					   c.verb == SORA_SMTP_CMD_RCPT, &again, NULL) == 0);
		CHECK(sora_str_eq(again.mailbox, c.path.mailbox));
		if (!c.path.null_path)
			CHECK(sora_smtp_local_unquote(c.path.local, unq, sizeof(unq), &n) == 0 &&
			      n <= c.path.local.len);
	}
}

static void check_line(const char *line, size_t len)
{
	struct sora_smtp_reply rep;
	struct sora_smtp_path path;
	struct sora_smtp_subaddress sub;

	check_command(line, len);
	if (sora_smtp_reply_parse(line, len, &rep, NULL) == 0) {
		CHECK(rep.code >= 200 && rep.code <= 599);
		CHECK(inside(rep.text, line, len) && inside(rep.enhanced, line, len));
	}
	if (sora_smtp_path_parse(sora_str_make(line, len), true, &path, NULL) == 0)
		CHECK(inside(path.mailbox, line, len));
	if (sora_smtp_subaddress_split(sora_str_make(line, len), len > 0 ? line[0] : 0, &sub) == 0) {
		CHECK(sub.base.len == sub.user.len + 1 + sub.domain.len);
		CHECK(inside(sub.user, line, len) && inside(sub.detail, line, len));
	}
	(void)sora_smtp_domain_valid(sora_str_make(line, len), len % 2 == 0);
}

static void check_xtext(const uint8_t *data, size_t size)
{
	struct sora_buf b;
	char *dec = malloc(size + 1);
	size_t n;

	CHECK(dec != NULL);
	sora_buf_init(&b, 0);
	CHECK(sora_smtp_xtext_encode(&b, sora_str_make((const char *)data, size)) == 0);
	CHECK(sora_smtp_xtext_decode(sora_buf_str(&b), dec, size + 1, &n) == 0);
	CHECK(n == size && (size == 0 || memcmp(dec, data, size) == 0));
	/* Decoding raw input must not overrun however it ends. */
	(void)sora_smtp_xtext_decode(sora_str_make((const char *)data, size), dec, size, &n);
	sora_buf_free(&b);
	free(dec);
}

struct collected {
	char *out;
	size_t len, cap;
};

static int collect(void *ctx, const char *p, size_t n)
{
	struct collected *c = ctx;

	CHECK(c->len + n <= c->cap);
	memcpy(c->out + c->len, p, n);
	c->len += n;
	return 0;
}

/* Feeds data in chunks; chunk k has size sizes[k % nsizes] (0 = 1). */
static void decode(const char *data, size_t size, uint64_t max, const uint8_t *sizes,
		   size_t nsizes, struct collected *c, struct sora_smtp_data *d,
		   size_t *consumed_r)
{
	size_t pos = 0, k = 0;

	c->len = 0;
	*consumed_r = 0;
	sora_smtp_data_init(d, max);
	for (;;) {
		size_t chunk = nsizes == 0 ? size - pos : sizes[k++ % nsizes];
		size_t consumed;

		if (chunk == 0)
			chunk = 1;
		if (chunk > size - pos)
			chunk = size - pos;
		if (sora_smtp_data_feed(d, data + pos, chunk, &consumed, collect, c) ==
		    SORA_SMTP_DATA_DONE) {
			CHECK(consumed <= chunk);
			*consumed_r += consumed;
			return;
		}
		CHECK(consumed == chunk);
		*consumed_r += consumed;
		pos += chunk;
		if (pos == size)
			return;
	}
}

static void same(const struct collected *a, const struct sora_smtp_data *da, size_t ca,
		 const struct collected *b, const struct sora_smtp_data *db, size_t cb)
{
	CHECK(ca == cb);
	CHECK(a->len == b->len && (a->len == 0 || memcmp(a->out, b->out, a->len) == 0));
	CHECK(da->done == db->done && da->size == db->size && da->too_big == db->too_big);
	CHECK(da->lines == db->lines && da->long_lines == db->long_lines &&
	      da->max_line_len == db->max_line_len);
	CHECK(da->saw_8bit == db->saw_8bit && da->saw_nul == db->saw_nul &&
	      da->saw_bare_lf == db->saw_bare_lf && da->saw_bare_cr == db->saw_bare_cr);
}

static void check_data(const uint8_t *data, size_t size)
{
	static const uint8_t one[1] = { 1 };
	struct collected a, b;
	struct sora_smtp_data da, db;
	size_t ca, cb;
	uint64_t max = 0;

	/* Output is at most twice the input (every bare LF becomes CRLF). */
	a.cap = b.cap = 2 * size + 1;
	a.out = malloc(a.cap);
	b.out = malloc(b.cap);
	CHECK(a.out != NULL && b.out != NULL);
	if (size > 0 && (data[0] & 1))
		max = data[size - 1];

	decode((const char *)data, size, max, NULL, 0, &a, &da, &ca);
	CHECK(a.len <= 2 * size);
	CHECK(max == 0 || a.len <= max);
	CHECK(da.too_big == (max != 0 && da.size > max));
	if (!da.done)
		CHECK(ca == size);

	decode((const char *)data, size, max, one, 1, &b, &db, &cb);
	same(&a, &da, ca, &b, &db, cb);
	decode((const char *)data, size, max, data, size < 16 ? size : 16, &b, &db, &cb);
	same(&a, &da, ca, &b, &db, cb);
	free(a.out);
	free(b.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;

	while (p <= end) {
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		const char *stop = lf != NULL ? lf + 1 : end;

		check_line(p, (size_t)(stop - p));
		if (lf == NULL)
			break;
		p = stop;
	}
	check_xtext(data, size);
	check_data(data, size);
	return 0;
}
