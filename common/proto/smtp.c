/* SMTP / LMTP command parsing: see smtp.h for the contract and the leniency
 * rules. The code reads the line left to right with a cursor, once; there is
 * no backtracking beyond a character, so the cost is linear in the line. */
#include "common/proto/smtp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* A read position inside the line being parsed. */
struct cur {
	const char *p;
	const char *end;
};

static inline bool cur_eof(const struct cur *c)
{
	return c->p >= c->end;
}

static inline unsigned char cur_peek(const struct cur *c)
{
	return c->p < c->end ? (unsigned char)*c->p : 0;
}

static inline bool is_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static inline bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static inline bool is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static inline bool is_hex(unsigned char c)
{
	return sora_hex_value(c) >= 0;
}

static inline unsigned hex_val(unsigned char c)
{
	return (unsigned)sora_hex_value(c);
}

/* RFC 5322 atext, which RFC 5321 uses for the dot-string local part. */
static bool is_atext(unsigned char c)
{
	if (is_alpha(c) || is_digit(c))
		return true;
	return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Length of the valid UTF-8 sequence of a non-ASCII character at p (at most
 * n bytes available), or 0 if the bytes are not well-formed UTF-8 (RFC 3629:
 * no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_char_len(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xBF;

	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++) {
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	}
	return len;
}

static bool set_err(const char **error_r, const char *msg)
{
	if (error_r != NULL)
		*error_r = msg;
	return false;
}

/* ---- domains and address literals ---- */

/* "1.2.3.4" with each part 1-3 digits and at most 255 (RFC 5321 Snum). */
static bool ipv4_literal_valid(const char *p, size_t len)
{
	unsigned parts = 0;
	size_t i = 0;

	while (parts < 4) {
		unsigned v = 0, digits = 0;

		while (i < len && is_digit((unsigned char)p[i]) && digits < 4) {
			v = v * 10 + (unsigned)(p[i] - '0');
			digits++;
			i++;
		}
		if (digits == 0 || digits > 3 || v > 255)
			return false;
		parts++;
		if (parts < 4) {
			if (i >= len || p[i] != '.')
				return false;
			i++;
		}
	}
	return i == len;
}

static bool ipv6_text_valid(const char *p, size_t len, struct sora_ip *ip_r)
{
	char tmp[INET6_ADDRSTRLEN + 1];
	struct in6_addr a;

	if (len == 0 || len >= sizeof(tmp))
		return false;
	memcpy(tmp, p, len);
	tmp[len] = '\0';
	if (inet_pton(AF_INET6, tmp, &a) != 1)
		return false;
	if (ip_r != NULL)
		memcpy(ip_r->b, &a, 16);
	return true;
}

/* Letters, digits and hyphens, not ending in a hyphen (RFC 5321 Ldh-str as
 * used for Standardized-tag). */
static bool ldh_tag_valid(const char *p, size_t len)
{
	if (len == 0 || !(is_alpha((unsigned char)p[0]) || is_digit((unsigned char)p[0])))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (!is_alpha(c) && !is_digit(c) && c != '-')
			return false;
	}
	return p[len - 1] != '-';
}

/* "[...]" with the brackets. */
static bool address_literal_valid(const char *p, size_t len)
{
	const char *in, *colon;
	size_t inlen;

	if (len < 3 || p[0] != '[' || p[len - 1] != ']')
		return false;
	in = p + 1;
	inlen = len - 2;
	if (inlen >= 5 && sora_str_ieq(sora_str_make(in, 5), SORA_STR("IPv6:")))
		return ipv6_text_valid(in + 5, inlen - 5, NULL);
	colon = memchr(in, ':', inlen);
	if (colon == NULL)
		return ipv4_literal_valid(in, inlen);
	/* General-address-literal: Standardized-tag ":" 1*dcontent. */
	if (!ldh_tag_valid(in, (size_t)(colon - in)) || colon + 1 == in + inlen)
		return false;
	for (const char *q = colon + 1; q < in + inlen; q++) {
		unsigned char c = (unsigned char)*q;
		if (!((c >= 33 && c <= 90) || (c >= 94 && c <= 126)))
			return false;
	}
	return true;
}

bool sora_smtp_domain_valid(struct sora_str domain, bool strict)
{
	const unsigned char *p = (const unsigned char *)domain.p;
	size_t i = 0, n = domain.len;

	if (n == 0 || n > SORA_SMTP_MAX_DOMAIN)
		return false;
	if (p[0] == '[')
		return address_literal_valid(domain.p, n);
	while (i < n) {
		size_t start = i;

		/* One label: let-dig [ldh-str], where a U-label's UTF-8
		 * characters count as letters (RFC 6531). */
		while (i < n && p[i] != '.') {
			unsigned char c = p[i];
			if (c >= 0x80) {
				size_t l = utf8_char_len(p + i, n - i);
				if (l == 0)
					return false;
				i += l;
				continue;
			}
			if (!is_alpha(c) && !is_digit(c) && c != '-' && (strict || c != '_'))
				return false;
			i++;
		}
		if (i == start || i - start > 63)
			return false;
		if (p[start] == '-' || p[i - 1] == '-')
			return false;
		if (i < n) {
			/* Skip the dot; a trailing dot leaves an empty label. */
			i++;
			if (i == n)
				return false;
		}
	}
	return true;
}

/* ---- paths ---- */

/* Reads a domain of a path up to (not including) one of the stop bytes or
 * the end. An address literal is read up to its ']'. */
static struct sora_str read_domain(struct cur *c, const char *stops)
{
	const char *start = c->p;

	if (cur_peek(c) == '[') {
		while (!cur_eof(c) && *c->p != ']')
			c->p++;
		if (!cur_eof(c))
			c->p++;
		return sora_str_make(start, (size_t)(c->p - start));
	}
	while (!cur_eof(c) && strchr(stops, *c->p) == NULL && *c->p != '\0' &&
	       !is_wsp((unsigned char)*c->p))
		c->p++;
	return sora_str_make(start, (size_t)(c->p - start));
}

/* Reads a quoted-string local part starting at '"'. */
static int read_quoted_local(struct cur *c, bool *utf8, const char **error_r)
{
	c->p++; /* opening quote */
	while (!cur_eof(c)) {
		unsigned char ch = (unsigned char)*c->p;

		if (ch == '"') {
			c->p++;
			return 0;
		}
		if (ch == '\\') {
			unsigned char q;

			c->p++;
			if (cur_eof(c))
				break;
			q = (unsigned char)*c->p;
			if (q < 32 || q > 126) {
				set_err(error_r, "Invalid quoted-pair in local part");
				return SORA_SMTP_ERR_BAD_ADDRESS;
			}
			c->p++;
			continue;
		}
		if (ch >= 0x80) {
			size_t l = utf8_char_len((const unsigned char *)c->p,
						 (size_t)(c->end - c->p));
			if (l == 0) {
				set_err(error_r, "Invalid UTF-8 in local part");
				return SORA_SMTP_ERR_BAD_ADDRESS;
			}
			*utf8 = true;
			c->p += l;
			continue;
		}
		/* qtextSMTP: %d32-33 / %d35-91 / %d93-126. */
		if (ch < 32 || ch > 126) {
			set_err(error_r, "Invalid character in quoted local part");
			return SORA_SMTP_ERR_BAD_ADDRESS;
		}
		c->p++;
	}
	set_err(error_r, "Unterminated quoted local part");
	return SORA_SMTP_ERR_BAD_ADDRESS;
}

/* Reads a dot-string local part. Misplaced dots are an error unless
 * lenient, in which case they set *nonstandard. */
static int read_dot_local(struct cur *c, bool lenient, bool *utf8,
			  bool *nonstandard, const char **error_r)
{
	const char *start = c->p;
	bool prev_dot = true; /* a dot at the start is misplaced too */

	while (!cur_eof(c)) {
		unsigned char ch = (unsigned char)*c->p;

		if (ch == '.') {
			if (prev_dot) {
				if (!lenient) {
					set_err(error_r, "Misplaced '.' in local part");
					return SORA_SMTP_ERR_BAD_ADDRESS;
				}
				*nonstandard = true;
			}
			prev_dot = true;
			c->p++;
			continue;
		}
		if (ch >= 0x80) {
			size_t l = utf8_char_len((const unsigned char *)c->p,
						 (size_t)(c->end - c->p));
			if (l == 0) {
				set_err(error_r, "Invalid UTF-8 in local part");
				return SORA_SMTP_ERR_BAD_ADDRESS;
			}
			*utf8 = true;
			c->p += l;
			prev_dot = false;
			continue;
		}
		if (!is_atext(ch))
			break;
		prev_dot = false;
		c->p++;
	}
	if (c->p == start) {
		set_err(error_r, "Empty local part");
		return SORA_SMTP_ERR_BAD_ADDRESS;
	}
	if (prev_dot) {
		if (!lenient) {
			set_err(error_r, "Misplaced '.' in local part");
			return SORA_SMTP_ERR_BAD_ADDRESS;
		}
		*nonstandard = true;
	}
	return 0;
}

/* Domain check for paths: strict for the forward-path, '_' tolerated (and
 * flagged) for the reverse-path and source routes. */
static bool path_domain_ok(struct sora_str d, bool strict, bool *nonstandard)
{
	if (sora_smtp_domain_valid(d, true))
		return true;
	if (!strict && sora_smtp_domain_valid(d, false)) {
		*nonstandard = true;
		return true;
	}
	return false;
}

static bool has_non_ascii(struct sora_str s)
{
	for (size_t i = 0; i < s.len; i++) {
		if ((unsigned char)s.p[i] >= 0x80)
			return true;
	}
	return false;
}

/* Parses "<...>" at c (which must be at '<'); leaves c after '>'. */
static int parse_path(struct cur *c, bool rcpt, struct sora_smtp_path *path,
		      const char **error_r)
{
	const char *open = c->p, *local_start;
	bool lenient = !rcpt;
	int ret;

	memset(path, 0, sizeof(*path));
	if (cur_peek(c) != '<') {
		set_err(error_r, "Missing '<' in path");
		return SORA_SMTP_ERR_SYNTAX;
	}
	c->p++;
	if (cur_peek(c) == '>') {
		c->p++;
		if (rcpt) {
			set_err(error_r, "Null path not allowed for a recipient");
			return SORA_SMTP_ERR_BAD_ADDRESS;
		}
		path->null_path = true;
		path->path = sora_str_make(open + 1, 0);
		path->mailbox = sora_str_make(open + 1, 0);
		return 0;
	}

	/* Source route: "@dom1,@dom2:" is parsed and then ignored. */
	if (cur_peek(c) == '@') {
		for (;;) {
			struct sora_str d;

			c->p++; /* '@' */
			d = read_domain(c, ",:>");
			if (!path_domain_ok(d, false, &path->nonstandard)) {
				set_err(error_r, "Invalid domain in source route");
				return SORA_SMTP_ERR_BAD_ADDRESS;
			}
			if (cur_peek(c) == ':') {
				c->p++;
				break;
			}
			if (cur_peek(c) != ',' || c->p + 1 >= c->end || c->p[1] != '@') {
				set_err(error_r, "Invalid source route");
				return SORA_SMTP_ERR_BAD_ADDRESS;
			}
			c->p++;
		}
		path->source_route = true;
	}

	local_start = c->p;
	if (cur_peek(c) == '"') {
		ret = read_quoted_local(c, &path->utf8, error_r);
		path->quoted = true;
	} else {
		ret = read_dot_local(c, lenient, &path->utf8, &path->nonstandard,
				     error_r);
	}
	if (ret < 0)
		return ret;
	path->local = sora_str_make(local_start, (size_t)(c->p - local_start));

	if (cur_peek(c) == '>' && rcpt && !path->quoted && !path->source_route &&
	    sora_str_ieq_c(path->local, "postmaster")) {
		/* RFC 5321 4.1.1.3: "Postmaster" without a domain must be
		 * accepted as a recipient. */
		path->postmaster = true;
	} else if (cur_peek(c) != '@') {
		if (cur_eof(c)) {
			set_err(error_r, "Missing '>' in path");
			return SORA_SMTP_ERR_SYNTAX;
		}
		set_err(error_r, cur_peek(c) == '>' ? "Missing domain in address" :
			"Invalid character in local part");
		return SORA_SMTP_ERR_BAD_ADDRESS;
	} else {
		c->p++; /* '@' */
		path->domain = read_domain(c, ">");
		if (path->domain.len > 0 && path->domain.p[0] == '[')
			path->literal = true;
	}

	if (cur_eof(c)) {
		set_err(error_r, "Missing '>' in path");
		return SORA_SMTP_ERR_SYNTAX;
	}
	if (*c->p != '>') {
		set_err(error_r, "Invalid character in domain");
		return SORA_SMTP_ERR_BAD_ADDRESS;
	}
	c->p++;
	path->path = sora_str_make(open + 1, (size_t)(c->p - open - 2));
	path->mailbox = sora_str_make(local_start,
				      (size_t)(c->p - 1 - local_start));

	/* Lengths first: an overlong domain is reported as too long rather
	 * than as invalid, which is the more useful answer. */
	if (path->local.len > SORA_SMTP_MAX_LOCAL_PART) {
		set_err(error_r, "Local part too long");
		return SORA_SMTP_ERR_ADDRESS_TOO_LONG;
	}
	if (path->domain.len > SORA_SMTP_MAX_DOMAIN) {
		set_err(error_r, "Domain too long");
		return SORA_SMTP_ERR_ADDRESS_TOO_LONG;
	}
	if (path->path.len + 2 > SORA_SMTP_MAX_PATH) {
		set_err(error_r, "Path too long");
		return SORA_SMTP_ERR_ADDRESS_TOO_LONG;
	}
	if (!path->postmaster && !path_domain_ok(path->domain, rcpt, &path->nonstandard)) {
		set_err(error_r, "Invalid domain in address");
		return SORA_SMTP_ERR_BAD_ADDRESS;
	}
	if (!path->literal && has_non_ascii(path->domain))
		path->utf8 = true;
	return 0;
}

int sora_smtp_path_parse(struct sora_str in, bool rcpt,
			 struct sora_smtp_path *path_r, const char **error_r)
{
	struct cur c = { in.p, in.p + in.len };
	int ret;

	if (in.len == 0) {
		memset(path_r, 0, sizeof(*path_r));
		set_err(error_r, "Missing '<' in path");
		return SORA_SMTP_ERR_SYNTAX;
	}
	ret = parse_path(&c, rcpt, path_r, error_r);
	if (ret < 0)
		return ret;
	if (!cur_eof(&c)) {
		set_err(error_r, "Unexpected characters after path");
		return SORA_SMTP_ERR_SYNTAX;
	}
	return 0;
}

int sora_smtp_local_unquote(struct sora_str local, char *out, size_t out_size,
			    size_t *len_r)
{
	size_t o = 0;

	if (local.len == 0)
		return -1;
	if (local.p[0] != '"') {
		if (local.len > out_size || memchr(local.p, '"', local.len) != NULL)
			return -1;
		memcpy(out, local.p, local.len);
		*len_r = local.len;
		return 0;
	}
	if (local.len < 2 || local.p[local.len - 1] != '"')
		return -1;
	for (size_t i = 1; i < local.len - 1; i++) {
		char ch = local.p[i];

		if (ch == '"')
			return -1;
		if (ch == '\\') {
			if (++i >= local.len - 1)
				return -1;
			ch = local.p[i];
		}
		if (o >= out_size)
			return -1;
		out[o++] = ch;
	}
	*len_r = o;
	return 0;
}

int sora_smtp_subaddress_split(struct sora_str address, char separator,
			       struct sora_smtp_subaddress *r)
{
	const char *at = NULL, *sep;
	size_t local_len;

	memset(r, 0, sizeof(*r));
	if (address.len > SORA_SMTP_MAX_PATH)
		return -1;
	for (size_t i = address.len; i > 0; i--) {
		if (address.p[i - 1] == '@') {
			at = address.p + i - 1;
			break;
		}
	}
	if (at == NULL)
		return -1;
	if (separator == '\0')
		separator = '+';
	local_len = (size_t)(at - address.p);
	r->domain = sora_str_make(at + 1, address.len - local_len - 1);
	sep = memchr(address.p, separator, local_len);
	if (sep != NULL && sep != address.p) {
		r->has_detail = true;
		r->user = sora_str_make(address.p, (size_t)(sep - address.p));
		r->detail = sora_str_make(sep + 1, (size_t)(at - sep - 1));
	} else {
		r->user = sora_str_make(address.p, local_len);
		r->detail = sora_str_make(at, 0);
	}
	memcpy(r->base_buf, r->user.p, r->user.len);
	r->base_buf[r->user.len] = '@';
	memcpy(r->base_buf + r->user.len + 1, r->domain.p, r->domain.len);
	r->base_buf[r->user.len + 1 + r->domain.len] = '\0';
	r->base = sora_str_make(r->base_buf, r->user.len + 1 + r->domain.len);
	return 0;
}

/* ---- xtext ---- */

int sora_smtp_xtext_decode(struct sora_str in, char *out, size_t out_size,
			   size_t *len_r)
{
	size_t o = 0;

	for (size_t i = 0; i < in.len; i++) {
		unsigned char c = (unsigned char)in.p[i];

		if (c == '+') {
			/* Two hex digits must follow. */
			if (in.len - i < 3)
				return -1;
			if (!is_hex((unsigned char)in.p[i + 1]) ||
			    !is_hex((unsigned char)in.p[i + 2]))
				return -1;
			c = (unsigned char)(hex_val((unsigned char)in.p[i + 1]) << 4 |
					    hex_val((unsigned char)in.p[i + 2]));
			i += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return -1;
		}
		if (o >= out_size)
			return -1;
		out[o++] = (char)c;
	}
	*len_r = o;
	return 0;
}

int sora_smtp_xtext_encode(struct sora_buf *out, struct sora_str in)
{
	static const char hex[] = "0123456789ABCDEF";
	char tmp[128];
	size_t t = 0;

	for (size_t i = 0; i < in.len; i++) {
		unsigned char c = (unsigned char)in.p[i];

		if (t + 3 > sizeof(tmp)) {
			if (sora_buf_append(out, tmp, t) < 0)
				return -1;
			t = 0;
		}
		if (c >= 33 && c <= 126 && c != '+' && c != '=') {
			tmp[t++] = (char)c;
		} else {
			tmp[t++] = '+';
			tmp[t++] = hex[c >> 4];
			tmp[t++] = hex[c & 0x0f];
		}
	}
	return sora_buf_append(out, tmp, t);
}

/* Decodes xtext into the command's scratch space. */
static int scratch_xtext(struct sora_smtp_command *cmd, struct sora_str in,
			 struct sora_str *out_r)
{
	size_t n;
	char *dst = cmd->scratch + cmd->scratch_used;

	if (sora_smtp_xtext_decode(in, dst, sizeof(cmd->scratch) - cmd->scratch_used,
				   &n) < 0)
		return -1;
	cmd->scratch_used += n;
	*out_r = sora_str_make(dst, n);
	return 0;
}

/* ---- verbs ---- */

static const struct {
	const char *name;
	enum sora_smtp_verb verb;
} verbs[] = {
	{ "LHLO", SORA_SMTP_CMD_LHLO },
	{ "HELO", SORA_SMTP_CMD_HELO },
	{ "EHLO", SORA_SMTP_CMD_EHLO },
	{ "MAIL", SORA_SMTP_CMD_MAIL },
	{ "RCPT", SORA_SMTP_CMD_RCPT },
	{ "DATA", SORA_SMTP_CMD_DATA },
	{ "BDAT", SORA_SMTP_CMD_BDAT },
	{ "RSET", SORA_SMTP_CMD_RSET },
	{ "NOOP", SORA_SMTP_CMD_NOOP },
	{ "QUIT", SORA_SMTP_CMD_QUIT },
	{ "VRFY", SORA_SMTP_CMD_VRFY },
	{ "HELP", SORA_SMTP_CMD_HELP },
	{ "STARTTLS", SORA_SMTP_CMD_STARTTLS },
	{ "XCLIENT", SORA_SMTP_CMD_XCLIENT },
};

const char *sora_smtp_verb_name(enum sora_smtp_verb verb)
{
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (verbs[i].verb == verb)
			return verbs[i].name;
	}
	return "UNKNOWN";
}

static const char *const xclient_names[SORA_SMTP_XCLIENT_ATTR_COUNT] = {
	[SORA_SMTP_XCLIENT_NAME] = "NAME",
	[SORA_SMTP_XCLIENT_REVERSE_NAME] = "REVERSE_NAME",
	[SORA_SMTP_XCLIENT_ADDR] = "ADDR",
	[SORA_SMTP_XCLIENT_PORT] = "PORT",
	[SORA_SMTP_XCLIENT_PROTO] = "PROTO",
	[SORA_SMTP_XCLIENT_HELO] = "HELO",
	[SORA_SMTP_XCLIENT_LOGIN] = "LOGIN",
	[SORA_SMTP_XCLIENT_DESTADDR] = "DESTADDR",
	[SORA_SMTP_XCLIENT_DESTPORT] = "DESTPORT",
};

const char *sora_smtp_xclient_attr_name(enum sora_smtp_xclient_attr attr)
{
	if ((unsigned)attr >= SORA_SMTP_XCLIENT_ATTR_COUNT)
		return "UNKNOWN";
	return xclient_names[attr];
}

struct sora_smtp_status sora_smtp_error_status(int err, enum sora_smtp_verb verb)
{
	switch (err) {
	case SORA_SMTP_ERR_LINE_TOO_LONG:
	case SORA_SMTP_ERR_BAD_LINE:
		return (struct sora_smtp_status){ 500, "5.5.2" };
	case SORA_SMTP_ERR_UNKNOWN_COMMAND:
		return (struct sora_smtp_status){ 500, "5.5.1" };
	case SORA_SMTP_ERR_BAD_ADDRESS:
	case SORA_SMTP_ERR_ADDRESS_TOO_LONG:
		/* RFC 3463: X.1.7 bad sender, X.1.3 bad destination address. */
		return (struct sora_smtp_status){ 501, verb == SORA_SMTP_CMD_MAIL ?
						  "5.1.7" : "5.1.3" };
	case SORA_SMTP_ERR_UNKNOWN_PARAM:
		if (verb == SORA_SMTP_CMD_MAIL || verb == SORA_SMTP_CMD_RCPT)
			return (struct sora_smtp_status){ 555, "5.5.4" };
		return (struct sora_smtp_status){ 501, "5.5.4" };
	case SORA_SMTP_ERR_SYNTAX:
	case SORA_SMTP_ERR_BAD_PARAM:
		return (struct sora_smtp_status){ 501, "5.5.4" };
	default:
		/* Not a parser error: whatever failed is on our side. */
		return (struct sora_smtp_status){ 451, "4.3.0" };
	}
}

/* ---- MAIL / RCPT parameters ---- */

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static bool esmtp_keyword_valid(struct sora_str k)
{
	if (k.len == 0)
		return false;
	for (size_t i = 0; i < k.len; i++) {
		unsigned char c = (unsigned char)k.p[i];
		if (!is_alpha(c) && !is_digit(c) && (c != '-' || i == 0))
			return false;
	}
	return true;
}

/* esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 (RFC 6531). */
static bool esmtp_value_valid(struct sora_str v)
{
	const unsigned char *p = (const unsigned char *)v.p;

	if (v.len == 0)
		return false;
	for (size_t i = 0; i < v.len;) {
		if (p[i] >= 0x80) {
			size_t l = utf8_char_len(p + i, v.len - i);
			if (l == 0)
				return false;
			i += l;
			continue;
		}
		if (p[i] < 33 || p[i] > 126 || p[i] == '=')
			return false;
		i++;
	}
	return true;
}

/* Decoded DSN/AUTH values must not carry control characters. */
static bool no_controls(struct sora_str s)
{
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (c < 32 || c == 127)
			return false;
	}
	return true;
}

#define PARAM_SIZE     0x001u
#define PARAM_BODY     0x002u
#define PARAM_SMTPUTF8 0x004u
#define PARAM_RET      0x008u
#define PARAM_ENVID    0x010u
#define PARAM_AUTH     0x020u
#define PARAM_NOTIFY   0x040u
#define PARAM_ORCPT    0x080u

static int param_error(struct sora_smtp_command *cmd, struct sora_str key,
		       int err, const char *msg, const char **error_r)
{
	cmd->bad_param = key;
	set_err(error_r, msg);
	return err;
}

static int mail_param(struct sora_smtp_command *cmd, struct sora_str key,
		      struct sora_str val, bool has_val, unsigned *seen,
		      const char **error_r)
{
	struct sora_smtp_mail_params *m = &cmd->mail;
	unsigned bit;

	if (sora_str_ieq_c(key, "SIZE"))
		bit = PARAM_SIZE;
	else if (sora_str_ieq_c(key, "BODY"))
		bit = PARAM_BODY;
	else if (sora_str_ieq_c(key, "SMTPUTF8"))
		bit = PARAM_SMTPUTF8;
	else if (sora_str_ieq_c(key, "RET"))
		bit = PARAM_RET;
	else if (sora_str_ieq_c(key, "ENVID"))
		bit = PARAM_ENVID;
	else if (sora_str_ieq_c(key, "AUTH"))
		bit = PARAM_AUTH;
	else
		return param_error(cmd, key, SORA_SMTP_ERR_UNKNOWN_PARAM,
				   "Unsupported parameter", error_r);
	if ((*seen & bit) != 0)
		return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
				   "Duplicate parameter", error_r);
	*seen |= bit;

	if (bit == PARAM_SMTPUTF8) {
		if (has_val)
			return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
					   "SMTPUTF8 takes no value", error_r);
		m->smtputf8 = true;
		return 0;
	}
	if (!has_val)
		return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
				   "Parameter requires a value", error_r);
	switch (bit) {
	case PARAM_SIZE:
		/* RFC 1870: size-value = 1*20DIGIT. */
		if (val.len > 20 || sora_str_to_u64(val, UINT64_MAX, &m->size) < 0)
			return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
					   "Invalid SIZE value", error_r);
		m->has_size = true;
		return 0;
	case PARAM_BODY:
		if (sora_str_ieq_c(val, "7BIT"))
			m->body = SORA_SMTP_BODY_7BIT;
		else if (sora_str_ieq_c(val, "8BITMIME"))
			m->body = SORA_SMTP_BODY_8BITMIME;
		else if (sora_str_ieq_c(val, "BINARYMIME"))
			m->body = SORA_SMTP_BODY_BINARYMIME;
		else
			return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
					   "Invalid BODY value", error_r);
		return 0;
	case PARAM_RET:
		if (sora_str_ieq_c(val, "FULL"))
			m->ret = SORA_SMTP_RET_FULL;
		else if (sora_str_ieq_c(val, "HDRS"))
			m->ret = SORA_SMTP_RET_HDRS;
		else
			return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
					   "Invalid RET value", error_r);
		return 0;
	case PARAM_ENVID:
		/* RFC 3461 4.4: printable US-ASCII, at most 100 characters. */
		if (scratch_xtext(cmd, val, &m->envid) < 0 ||
		    m->envid.len > SORA_SMTP_MAX_ENVID || !no_controls(m->envid) ||
		    has_non_ascii(m->envid))
			return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
					   "Invalid ENVID value", error_r);
		m->envid_raw = val;
		m->has_envid = true;
		return 0;
	default: /* PARAM_AUTH */
		if (sora_str_eq(val, SORA_STR("<>"))) {
			m->auth = sora_str_make(val.p, 0);
		} else if (scratch_xtext(cmd, val, &m->auth) < 0 ||
			   m->auth.len == 0 || !no_controls(m->auth)) {
			return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
					   "Invalid AUTH value", error_r);
		}
		m->auth_raw = val;
		m->has_auth = true;
		return 0;
	}
}

static int parse_notify(struct sora_smtp_command *cmd, struct sora_str key,
			struct sora_str val, const char **error_r)
{
	unsigned mask = 0;
	const char *p = val.p, *end = val.p + val.len;

	while (p <= end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		struct sora_str item;
		unsigned bit;

		if (comma == NULL)
			comma = end;
		item = sora_str_make(p, (size_t)(comma - p));
		if (sora_str_ieq_c(item, "NEVER"))
			bit = SORA_SMTP_NOTIFY_NEVER;
		else if (sora_str_ieq_c(item, "SUCCESS"))
			bit = SORA_SMTP_NOTIFY_SUCCESS;
		else if (sora_str_ieq_c(item, "FAILURE"))
			bit = SORA_SMTP_NOTIFY_FAILURE;
		else if (sora_str_ieq_c(item, "DELAY"))
			bit = SORA_SMTP_NOTIFY_DELAY;
		else
			return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
					   "Invalid NOTIFY value", error_r);
		if ((mask & bit) != 0)
			return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
					   "Invalid NOTIFY value", error_r);
		mask |= bit;
		p = comma + 1;
	}
	/* RFC 3461 4.1: NEVER must appear alone. */
	if ((mask & SORA_SMTP_NOTIFY_NEVER) != 0 && mask != SORA_SMTP_NOTIFY_NEVER)
		return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
				   "NOTIFY=NEVER cannot be combined", error_r);
	cmd->rcpt.notify = mask;
	return 0;
}

static int rcpt_param(struct sora_smtp_command *cmd, struct sora_str key,
		      struct sora_str val, bool has_val, unsigned *seen,
		      const char **error_r)
{
	struct sora_smtp_rcpt_params *r = &cmd->rcpt;
	const char *semi;
	unsigned bit;

	if (sora_str_ieq_c(key, "NOTIFY"))
		bit = PARAM_NOTIFY;
	else if (sora_str_ieq_c(key, "ORCPT"))
		bit = PARAM_ORCPT;
	else
		return param_error(cmd, key, SORA_SMTP_ERR_UNKNOWN_PARAM,
				   "Unsupported parameter", error_r);
	if ((*seen & bit) != 0)
		return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
				   "Duplicate parameter", error_r);
	*seen |= bit;
	if (!has_val)
		return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
				   "Parameter requires a value", error_r);
	if (bit == PARAM_NOTIFY)
		return parse_notify(cmd, key, val, error_r);

	/* ORCPT=addr-type ";" xtext, addr-type an atom such as "rfc822". */
	semi = memchr(val.p, ';', val.len);
	if (semi == NULL || semi == val.p || semi + 1 == val.p + val.len)
		return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
				   "Invalid ORCPT value", error_r);
	r->orcpt_type = sora_str_make(val.p, (size_t)(semi - val.p));
	for (size_t i = 0; i < r->orcpt_type.len; i++) {
		if (!is_atext((unsigned char)r->orcpt_type.p[i]))
			return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
					   "Invalid ORCPT value", error_r);
	}
	r->orcpt_raw = sora_str_make(semi + 1, (size_t)(val.p + val.len - semi - 1));
	if (scratch_xtext(cmd, r->orcpt_raw, &r->orcpt) < 0 || !no_controls(r->orcpt))
		return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
				   "Invalid ORCPT value", error_r);
	r->has_orcpt = true;
	return 0;
}

/* Splits the parameters after a path into keyword[=value] tokens. */
static int parse_params(struct sora_smtp_command *cmd, struct cur *c, bool rcpt,
			const char **error_r)
{
	unsigned seen = 0;
	int ret;

	if (cur_eof(c))
		return 0;
	if (!is_wsp(cur_peek(c))) {
		set_err(error_r, "Invalid character after path");
		return SORA_SMTP_ERR_SYNTAX;
	}
	for (;;) {
		const char *start, *eq;
		struct sora_str tok, key, val = SORA_STR_NULL;
		bool has_val;

		while (!cur_eof(c) && is_wsp(cur_peek(c)))
			c->p++;
		if (cur_eof(c))
			return 0;
		start = c->p;
		while (!cur_eof(c) && !is_wsp(cur_peek(c)))
			c->p++;
		tok = sora_str_make(start, (size_t)(c->p - start));
		eq = memchr(tok.p, '=', tok.len);
		has_val = eq != NULL;
		key = sora_str_make(tok.p, has_val ? (size_t)(eq - tok.p) : tok.len);
		if (!esmtp_keyword_valid(key))
			return param_error(cmd, tok, SORA_SMTP_ERR_SYNTAX,
					   "Invalid parameter syntax", error_r);
		if (has_val) {
			val = sora_str_make(eq + 1, (size_t)(tok.p + tok.len - eq - 1));
			if (!esmtp_value_valid(val))
				return param_error(cmd, key, SORA_SMTP_ERR_BAD_PARAM,
						   "Invalid parameter value", error_r);
		}
		ret = rcpt ? rcpt_param(cmd, key, val, has_val, &seen, error_r) :
			mail_param(cmd, key, val, has_val, &seen, error_r);
		if (ret < 0)
			return ret;
	}
}

static int parse_mail_rcpt(struct sora_smtp_command *cmd, bool rcpt,
			   const char **error_r)
{
	const char *prefix = rcpt ? "TO:" : "FROM:";
	size_t plen = strlen(prefix);
	struct cur c;
	int ret;

	if (!sora_str_has_iprefix(cmd->arg, prefix)) {
		set_err(error_r, rcpt ? "Syntax: RCPT TO:<address> [parameters]" :
			"Syntax: MAIL FROM:<address> [parameters]");
		return SORA_SMTP_ERR_SYNTAX;
	}
	c.p = cmd->arg.p + plen;
	c.end = cmd->arg.p + cmd->arg.len;
	/* "MAIL FROM: <a@b>" is common enough to accept. */
	while (!cur_eof(&c) && is_wsp(cur_peek(&c)))
		c.p++;
	ret = parse_path(&c, rcpt, &cmd->path, error_r);
	if (ret < 0)
		return ret;
	return parse_params(cmd, &c, rcpt, error_r);
}

/* ---- XCLIENT ---- */

/* "a.b.c.d", "IPV6:x::y" or a bare IPv6 address, as Postfix accepts. */
static bool xclient_ip(struct sora_str v, struct sora_ip *ip_r)
{
	char tmp[INET_ADDRSTRLEN + 1];
	struct in_addr a4;

	if (v.len >= 5 && sora_str_ieq(sora_str_make(v.p, 5), SORA_STR("IPV6:")))
		return ipv6_text_valid(v.p + 5, v.len - 5, ip_r);
	if (memchr(v.p, ':', v.len) != NULL)
		return ipv6_text_valid(v.p, v.len, ip_r);
	if (v.len == 0 || v.len >= sizeof(tmp) || !ipv4_literal_valid(v.p, v.len))
		return false;
	memcpy(tmp, v.p, v.len);
	tmp[v.len] = '\0';
	if (inet_pton(AF_INET, tmp, &a4) != 1)
		return false;
	memset(ip_r->b, 0, 10);
	ip_r->b[10] = 0xff;
	ip_r->b[11] = 0xff;
	memcpy(ip_r->b + 12, &a4, 4);
	return true;
}

static bool xclient_port(struct sora_str v, uint16_t *port_r)
{
	uint64_t n;

	if (v.len > 5 || sora_str_to_u64(v, 65535, &n) < 0)
		return false;
	*port_r = (uint16_t)n;
	return true;
}

/* Printable ASCII (space allowed) or valid UTF-8; no controls. */
static bool printable_utf8(struct sora_str v)
{
	const unsigned char *p = (const unsigned char *)v.p;

	for (size_t i = 0; i < v.len;) {
		if (p[i] >= 0x80) {
			size_t l = utf8_char_len(p + i, v.len - i);
			if (l == 0)
				return false;
			i += l;
			continue;
		}
		if (p[i] < 32 || p[i] == 127)
			return false;
		i++;
	}
	return true;
}

static bool xclient_value_ok(struct sora_smtp_command *cmd,
			     enum sora_smtp_xclient_attr a, struct sora_str v)
{
	struct sora_smtp_xclient *x = &cmd->xclient;

	if (v.len == 0 || v.len > SORA_SMTP_MAX_XCLIENT_VALUE)
		return false;
	switch (a) {
	case SORA_SMTP_XCLIENT_NAME:
	case SORA_SMTP_XCLIENT_REVERSE_NAME:
		return sora_smtp_domain_valid(v, false);
	case SORA_SMTP_XCLIENT_ADDR:
		return xclient_ip(v, &x->addr);
	case SORA_SMTP_XCLIENT_DESTADDR:
		return xclient_ip(v, &x->destaddr);
	case SORA_SMTP_XCLIENT_PORT:
		return xclient_port(v, &x->port);
	case SORA_SMTP_XCLIENT_DESTPORT:
		return xclient_port(v, &x->destport);
	case SORA_SMTP_XCLIENT_PROTO:
		if (v.len > 16)
			return false;
		for (size_t i = 0; i < v.len; i++) {
			if (!is_alpha((unsigned char)v.p[i]) && !is_digit((unsigned char)v.p[i]))
				return false;
		}
		return true;
	default: /* HELO, LOGIN */
		return printable_utf8(v);
	}
}

static int parse_xclient(struct sora_smtp_command *cmd, const char **error_r)
{
	struct cur c = { cmd->arg.p, cmd->arg.p + cmd->arg.len };

	if (cmd->arg.len == 0) {
		set_err(error_r, "Syntax: XCLIENT attribute=value ...");
		return SORA_SMTP_ERR_SYNTAX;
	}
	for (;;) {
		const char *start, *eq;
		struct sora_str tok, name, raw, dec;
		struct sora_smtp_xclient_value *slot;
		int a = -1;

		while (!cur_eof(&c) && is_wsp(cur_peek(&c)))
			c.p++;
		if (cur_eof(&c))
			return 0;
		start = c.p;
		while (!cur_eof(&c) && !is_wsp(cur_peek(&c)))
			c.p++;
		tok = sora_str_make(start, (size_t)(c.p - start));
		eq = memchr(tok.p, '=', tok.len);
		if (eq == NULL)
			return param_error(cmd, tok, SORA_SMTP_ERR_SYNTAX,
					   "Bad XCLIENT attribute syntax", error_r);
		name = sora_str_make(tok.p, (size_t)(eq - tok.p));
		raw = sora_str_make(eq + 1, (size_t)(tok.p + tok.len - eq - 1));
		for (int i = 0; i < SORA_SMTP_XCLIENT_ATTR_COUNT; i++) {
			if (sora_str_ieq_c(name, xclient_names[i])) {
				a = i;
				break;
			}
		}
		if (a < 0)
			return param_error(cmd, name, SORA_SMTP_ERR_UNKNOWN_PARAM,
					   "Bad XCLIENT attribute name", error_r);
		slot = &cmd->xclient.attr[a];
		if (slot->state != SORA_SMTP_XCLIENT_ABSENT)
			return param_error(cmd, name, SORA_SMTP_ERR_BAD_PARAM,
					   "Duplicate XCLIENT attribute", error_r);
		if (raw.len == 0 || scratch_xtext(cmd, raw, &dec) < 0)
			return param_error(cmd, name, SORA_SMTP_ERR_BAD_PARAM,
					   "Bad XCLIENT attribute value syntax", error_r);
		if (sora_str_ieq_c(dec, "[UNAVAILABLE]")) {
			slot->state = SORA_SMTP_XCLIENT_UNAVAILABLE;
		} else if (sora_str_ieq_c(dec, "[TEMPUNAVAIL]")) {
			/* Postfix: only a DNS lookup can fail temporarily. */
			if (a != SORA_SMTP_XCLIENT_NAME && a != SORA_SMTP_XCLIENT_REVERSE_NAME)
				return param_error(cmd, name, SORA_SMTP_ERR_BAD_PARAM,
						   "Bad XCLIENT attribute value", error_r);
			slot->state = SORA_SMTP_XCLIENT_TEMPUNAVAIL;
		} else {
			if (!xclient_value_ok(cmd, (enum sora_smtp_xclient_attr)a, dec))
				return param_error(cmd, name, SORA_SMTP_ERR_BAD_PARAM,
						   "Bad XCLIENT attribute value", error_r);
			slot->state = SORA_SMTP_XCLIENT_SET;
			slot->value = dec;
		}
	}
}

/* ---- the command line ---- */

static int no_arg(struct sora_smtp_command *cmd, const char *usage,
		  const char **error_r)
{
	if (cmd->arg.len != 0) {
		set_err(error_r, usage);
		return SORA_SMTP_ERR_SYNTAX;
	}
	return 0;
}

static int parse_hello(struct sora_smtp_command *cmd, const char **error_r)
{
	if (cmd->arg.len == 0) {
		set_err(error_r, cmd->verb == SORA_SMTP_CMD_LHLO ? "Syntax: LHLO hostname" :
			cmd->verb == SORA_SMTP_CMD_EHLO ? "Syntax: EHLO hostname" :
			"Syntax: HELO hostname");
		return SORA_SMTP_ERR_SYNTAX;
	}
	/* Client host names with '_' exist (Windows machine names); they are
	 * informational only, so they are accepted. */
	if (!sora_smtp_domain_valid(cmd->arg, false)) {
		set_err(error_r, "Invalid domain name");
		return SORA_SMTP_ERR_SYNTAX;
	}
	cmd->domain = cmd->arg;
	cmd->domain_literal = cmd->arg.p[0] == '[';
	return 0;
}

static int parse_bdat(struct sora_smtp_command *cmd, const char **error_r)
{
	const char *p = cmd->arg.p, *end = cmd->arg.p + cmd->arg.len, *q;
	struct sora_str size;

	/* "BDAT" SP chunk-size [SP end-marker] (RFC 3030). */
	q = p;
	while (q < end && !is_wsp((unsigned char)*q))
		q++;
	size = sora_str_make(p, (size_t)(q - p));
	if (size.len == 0 || size.len > 20 ||
	    sora_str_to_u64(size, UINT64_MAX, &cmd->bdat_size) < 0) {
		set_err(error_r, "Syntax: BDAT chunk-size [LAST]");
		return SORA_SMTP_ERR_SYNTAX;
	}
	while (q < end && is_wsp((unsigned char)*q))
		q++;
	if (q < end) {
		struct sora_str rest = sora_str_make(q, (size_t)(end - q));
		if (!sora_str_ieq_c(rest, "LAST")) {
			set_err(error_r, "Syntax: BDAT chunk-size [LAST]");
			return SORA_SMTP_ERR_SYNTAX;
		}
		cmd->bdat_last = true;
	}
	return 0;
}

int sora_smtp_command_parse(const char *line, size_t len,
			    struct sora_smtp_command *cmd, const char **error_r)
{
	const char *p, *end, *verb_end;
	size_t n;

	memset(cmd, 0, offsetof(struct sora_smtp_command, scratch));
	cmd->scratch_used = 0;

	if (len > SORA_SMTP_MAX_LINE) {
		set_err(error_r, "Line too long");
		return SORA_SMTP_ERR_LINE_TOO_LONG;
	}
	/* Strip the line ending: CRLF, a bare LF, or a CR whose LF a reader
	 * already removed. */
	n = len;
	if (n > 0 && line[n - 1] == '\n')
		n--;
	if (n > 0 && line[n - 1] == '\r')
		n--;
	/* The 512 octets include the CRLF, whether or not it was passed. */
	if (n > SORA_SMTP_MAX_LINE - 2) {
		set_err(error_r, "Line too long");
		return SORA_SMTP_ERR_LINE_TOO_LONG;
	}
	for (size_t i = 0; i < n; i++) {
		if (line[i] == '\0' || line[i] == '\r' || line[i] == '\n') {
			set_err(error_r, "Invalid character in command line");
			return SORA_SMTP_ERR_BAD_LINE;
		}
	}
	while (n > 0 && is_wsp((unsigned char)line[n - 1]))
		n--;
	if (n == 0) {
		set_err(error_r, "Empty command");
		return SORA_SMTP_ERR_BAD_LINE;
	}

	p = line;
	end = line + n;
	verb_end = p;
	while (verb_end < end && !is_wsp((unsigned char)*verb_end))
		verb_end++;
	cmd->verb_text = sora_str_make(p, (size_t)(verb_end - p));
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (sora_str_ieq_c(cmd->verb_text, verbs[i].name)) {
			cmd->verb = verbs[i].verb;
			break;
		}
	}
	p = verb_end;
	while (p < end && is_wsp((unsigned char)*p))
		p++;
	cmd->arg = sora_str_make(p, (size_t)(end - p));

	switch (cmd->verb) {
	case SORA_SMTP_CMD_UNKNOWN:
		set_err(error_r, "Unknown command");
		return SORA_SMTP_ERR_UNKNOWN_COMMAND;
	case SORA_SMTP_CMD_LHLO:
	case SORA_SMTP_CMD_HELO:
	case SORA_SMTP_CMD_EHLO:
		return parse_hello(cmd, error_r);
	case SORA_SMTP_CMD_MAIL:
		return parse_mail_rcpt(cmd, false, error_r);
	case SORA_SMTP_CMD_RCPT:
		return parse_mail_rcpt(cmd, true, error_r);
	case SORA_SMTP_CMD_DATA:
		return no_arg(cmd, "Syntax: DATA", error_r);
	case SORA_SMTP_CMD_RSET:
		return no_arg(cmd, "Syntax: RSET", error_r);
	case SORA_SMTP_CMD_QUIT:
		return no_arg(cmd, "Syntax: QUIT", error_r);
	case SORA_SMTP_CMD_STARTTLS:
		return no_arg(cmd, "Syntax: STARTTLS", error_r);
	case SORA_SMTP_CMD_BDAT:
		return parse_bdat(cmd, error_r);
	case SORA_SMTP_CMD_VRFY:
		if (cmd->arg.len == 0) {
			set_err(error_r, "Syntax: VRFY address");
			return SORA_SMTP_ERR_SYNTAX;
		}
		return 0;
	case SORA_SMTP_CMD_XCLIENT:
		return parse_xclient(cmd, error_r);
	case SORA_SMTP_CMD_NOOP:
	case SORA_SMTP_CMD_HELP:
		/* Both take an optional argument that is ignored. */
		return 0;
	}
	set_err(error_r, "Unknown command");
	return SORA_SMTP_ERR_UNKNOWN_COMMAND;
}
