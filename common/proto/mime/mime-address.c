/* RFC 5322 address-list parsing for IMAP ENVELOPE.
 *
 * The structure and the error recovery follow Dovecot's message-address
 * parser (what it fills in for missing pieces, where it stops on garbage),
 * because IMAP clients compare ENVELOPE answers across servers and caches;
 * the golden tests in tests/unit/common/proto/mime check it against
 * Dovecot's output. */
#include "common/proto/mime/mime-private.h"

#include <string.h>

struct addr_fields {
	struct sora_str name, route, mailbox, domain;
	bool invalid;
};

struct addr_ctx {
	struct mime_lex lex;
	struct sora_mime_arena *arena;
	struct sora_buf str;
	struct sora_buf comment;
	struct addr_fields addr;
	struct sora_mime_address *first, *last;
	unsigned int count;
	bool full;   /* SORA_MIME_MAX_ADDRESSES reached */
	bool oom;
};

static struct sora_str dup_buf(struct addr_ctx *ctx, const struct sora_buf *b)
{
	struct sora_str s = SORA_STR_NULL;

	if (mime_arena_strdup(ctx->arena, b->data, b->len, &s) < 0)
		ctx->oom = true;
	return s;
}

static void add_address(struct addr_ctx *ctx)
{
	struct sora_mime_address *a;

	if (ctx->count >= SORA_MIME_MAX_ADDRESSES) {
		ctx->full = true;
		memset(&ctx->addr, 0, sizeof(ctx->addr));
		return;
	}
	ctx->count++;
	a = mime_arena_alloc(ctx->arena, sizeof(*a));
	if (a == NULL) {
		ctx->oom = true;
	} else {
		a->name = ctx->addr.name;
		a->route = ctx->addr.route;
		a->mailbox = ctx->addr.mailbox;
		a->domain = ctx->addr.domain;
		a->invalid = ctx->addr.invalid;
		if (ctx->last == NULL)
			ctx->first = a;
		else
			ctx->last->next = a;
		ctx->last = a;
	}
	memset(&ctx->addr, 0, sizeof(ctx->addr));
}

static void add_fixed_address(struct addr_ctx *ctx)
{
	if (ctx->addr.mailbox.p == NULL) {
		ctx->addr.mailbox = SORA_STR("MISSING_MAILBOX");
		ctx->addr.invalid = true;
	}
	if (ctx->addr.domain.p == NULL || ctx->addr.domain.len == 0) {
		ctx->addr.domain = SORA_STR("MISSING_DOMAIN");
		ctx->addr.invalid = true;
	}
	add_address(ctx);
}

static bool at_end(const struct addr_ctx *ctx)
{
	return ctx->lex.data >= ctx->lex.end;
}

static bool next_is(const struct addr_ctx *ctx, unsigned char c)
{
	return ctx->lex.data < ctx->lex.end && *ctx->lex.data == c;
}

static int parse_local_part(struct addr_ctx *ctx)
{
	int ret;

	/* local-part = dot-atom / quoted-string / obs-local-part */
	ctx->str.len = 0;
	if (next_is(ctx, '"'))
		ret = mime_lex_quoted_string(&ctx->lex, &ctx->str);
	else if (at_end(ctx))
		ret = -1;
	else
		ret = mime_lex_local_dot_atom(&ctx->lex, &ctx->str);
	if (ret < 0)
		return -1;
	ctx->addr.mailbox = dup_buf(ctx, &ctx->str);
	return ret;
}

static int parse_domain(struct addr_ctx *ctx)
{
	int ret;

	ctx->str.len = 0;
	if ((ret = mime_lex_domain(&ctx->lex, &ctx->str)) < 0)
		return -1;
	ctx->addr.domain = dup_buf(ctx, &ctx->str);
	return ret;
}

static int parse_domain_list(struct addr_ctx *ctx)
{
	int ret;

	/* obs-domain-list = "@" domain *(*(CFWS / ",") [CFWS] "@" domain) */
	ctx->str.len = 0;
	for (;;) {
		if (at_end(ctx))
			return 0;
		if (*ctx->lex.data != '@')
			break;
		if ((ctx->str.len > 0 && sora_buf_append(&ctx->str, ",", 1) < 0) ||
		    sora_buf_append(&ctx->str, "@", 1) < 0) {
			ctx->oom = true;
			return -1;
		}
		if ((ret = mime_lex_domain(&ctx->lex, &ctx->str)) <= 0)
			return ret;
		while (mime_lex_skip_cfws(&ctx->lex) > 0 && *ctx->lex.data == ',')
			ctx->lex.data++;
	}
	ctx->addr.route = dup_buf(ctx, &ctx->str);
	return 1;
}

static int parse_angle_addr(struct addr_ctx *ctx)
{
	/* "<" [ "@" route ":" ] local-part "@" domain ">" */
	ctx->lex.data++;
	if (mime_lex_skip_cfws(&ctx->lex) <= 0)
		return -1;
	if (*ctx->lex.data == '@') {
		if (parse_domain_list(ctx) > 0 && *ctx->lex.data == ':') {
			ctx->lex.data++;
		} else {
			ctx->addr.route = SORA_STR("INVALID_ROUTE");
			if (at_end(ctx))
				return -1;
			/* Go on and try to read the address anyway. */
		}
		if (mime_lex_skip_cfws(&ctx->lex) <= 0)
			return -1;
	}
	if (*ctx->lex.data == '>') {
		/* "<>", the null address. */
		ctx->lex.data++;
		return mime_lex_skip_cfws(&ctx->lex);
	}
	if (parse_local_part(ctx) <= 0)
		return -1;
	if (next_is(ctx, '@') && parse_domain(ctx) <= 0)
		return -1;
	if (!next_is(ctx, '>'))
		return -1;
	ctx->lex.data++;
	return mime_lex_skip_cfws(&ctx->lex);
}

static int parse_name_addr(struct addr_ctx *ctx)
{
	/* name-addr = [display-name] angle-addr */
	ctx->str.len = 0;
	if (mime_lex_phrase(&ctx->lex, &ctx->str) <= 0 || *ctx->lex.data != '<')
		return -1;
	if (ctx->str.len > 0)
		ctx->addr.name = dup_buf(ctx, &ctx->str);
	if (parse_angle_addr(ctx) < 0) {
		ctx->addr.domain = SORA_STR("SYNTAX_ERROR");
		ctx->addr.invalid = true;
	}
	return at_end(ctx) ? 0 : 1;
}

static int parse_addr_spec(struct addr_ctx *ctx)
{
	/* addr-spec = local-part "@" domain, maybe followed by a comment
	 * that serves as the display name ("user@host (Name)"). */
	bool quoted = next_is(ctx, '"');
	int ret, ret2 = -2;

	ctx->comment.len = 0;
	ret = parse_local_part(ctx);
	if (ret <= 0)
		ctx->addr.invalid = true;
	if (ret != 0 && next_is(ctx, '@')) {
		ret2 = parse_domain(ctx);
		if (ret2 <= 0)
			ret = ret2;
	}
	if (ctx->comment.len > 0) {
		ctx->addr.name = dup_buf(ctx, &ctx->comment);
	} else if (ret2 == -2) {
		/* A lone word is taken as a mailbox without domain, but if
		 * more words follow, it was a display name. */
		size_t orig;

		if (sora_buf_append(&ctx->str, " ", 1) < 0)
			ctx->oom = true;
		orig = ctx->str.len;
		(void)mime_lex_phrase(&ctx->lex, &ctx->str);
		if (ctx->str.len != orig) {
			ctx->addr.mailbox = SORA_STR_NULL;
			ctx->addr.name = dup_buf(ctx, &ctx->str);
		} else if (!quoted) {
			ctx->addr.domain = SORA_STR("");
		}
		ctx->addr.invalid = true;
		ret = -1;
	}
	return ret;
}

static int parse_mailbox(struct addr_ctx *ctx)
{
	const unsigned char *start = ctx->lex.data;
	int ret;

	/* mailbox = name-addr / addr-spec */
	if ((ret = parse_name_addr(ctx)) < 0) {
		ctx->lex.data = start;
		ret = parse_addr_spec(ctx);
		if (ctx->addr.invalid && ctx->addr.name.p == NULL &&
		    ctx->addr.mailbox.p != NULL && ctx->addr.domain.p == NULL) {
			ctx->addr.name = ctx->addr.mailbox;
			ctx->addr.mailbox = SORA_STR_NULL;
		}
	}
	if (ret < 0)
		ctx->addr.invalid = true;
	add_fixed_address(ctx);
	return ret;
}

static int parse_group(struct addr_ctx *ctx)
{
	int ret;

	/* group = display-name ":" [mailbox-list / CFWS] ";" [CFWS] */
	ctx->str.len = 0;
	if (mime_lex_phrase(&ctx->lex, &ctx->str) <= 0 || *ctx->lex.data != ':')
		return -1;
	/* From here on this is a group whatever follows. */
	ctx->lex.data++;
	if ((ret = mime_lex_skip_cfws(&ctx->lex)) <= 0)
		ctx->addr.invalid = true;
	ctx->addr.mailbox = dup_buf(ctx, &ctx->str);
	add_address(ctx);

	if (ret > 0 && *ctx->lex.data != ';') {
		for (;;) {
			/* A broken member does not end the group: go on with
			 * the next one. */
			(void)parse_mailbox(ctx);
			if (!next_is(ctx, ',') || ctx->full)
				break;
			ctx->lex.data++;
			if (mime_lex_skip_cfws(&ctx->lex) <= 0) {
				ret = -1;
				break;
			}
		}
	}
	if (ret >= 0) {
		if (!next_is(ctx, ';')) {
			ret = -1;
		} else {
			ctx->lex.data++;
			ret = mime_lex_skip_cfws(&ctx->lex);
		}
	}
	if (ret < 0)
		ctx->addr.invalid = true;
	/* The end-of-group marker. */
	add_address(ctx);
	return ret == 0 ? 0 : 1;
}

static int parse_address(struct addr_ctx *ctx)
{
	const unsigned char *start = ctx->lex.data;
	int ret;

	/* address = mailbox / group */
	if ((ret = parse_group(ctx)) < 0) {
		ctx->lex.data = start;
		ret = parse_mailbox(ctx);
	}
	return ret;
}

static void parse_address_list(struct addr_ctx *ctx)
{
	int ret;

	/* address-list = (address *("," address)) / obs-addr-list */
	for (;;) {
		if (parse_address(ctx) == 0 || ctx->oom || ctx->full)
			break;
		if (!next_is(ctx, ','))
			break;
		ctx->lex.data++;
		if ((ret = mime_lex_skip_cfws(&ctx->lex)) <= 0) {
			if (ret < 0) {
				/* Ends in an unterminated comment. */
				add_fixed_address(ctx);
			}
			break;
		}
	}
}

int sora_mime_address_parse(struct sora_mime_arena *arena, struct sora_str value,
			    struct sora_mime_address **list_r)
{
	struct addr_ctx ctx;
	const char *p, *end;
	int ret = 0;

	*list_r = NULL;
	if (value.p == NULL)
		return 0;
	p = value.p;
	end = value.p + value.len;
	memset(&ctx, 0, sizeof(ctx));
	ctx.arena = arena;
	sora_buf_init(&ctx.str, 0);
	sora_buf_init(&ctx.comment, 0);

	/* Several fields of the same name were joined with "\n"; each one
	 * is a list of its own, and the lists are concatenated. */
	while (p <= end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *seg_end = nl != NULL ? nl : end;

		mime_lex_init(&ctx.lex, sora_str_make(p, (size_t)(seg_end - p)), &ctx.comment);
		if (mime_lex_skip_cfws(&ctx.lex) > 0)
			parse_address_list(&ctx);
		if (ctx.lex.oom || ctx.oom) {
			ret = -1;
			goto out;
		}
		if (nl == NULL || ctx.full)
			break;
		p = nl + 1;
	}
	*list_r = ctx.first;
out:
	sora_buf_free(&ctx.str);
	sora_buf_free(&ctx.comment);
	return ret;
}

static const enum sora_mime_env_field address_fields[] = {
	SORA_MIME_ENV_FROM, SORA_MIME_ENV_SENDER, SORA_MIME_ENV_REPLY_TO,
	SORA_MIME_ENV_TO, SORA_MIME_ENV_CC, SORA_MIME_ENV_BCC,
};

int mime_envelope_parse_addresses(struct sora_mime_arena *arena, struct sora_mime_envelope *env)
{
	for (size_t i = 0; i < sizeof(address_fields) / sizeof(address_fields[0]); i++) {
		enum sora_mime_env_field f = address_fields[i];

		if (sora_mime_address_parse(arena, env->raw[f], &env->addr[f]) < 0)
			return -1;
	}
	return 0;
}
