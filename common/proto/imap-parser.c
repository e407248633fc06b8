/* The IMAP command parser: see imap-parser.h for the contract.
 *
 * A byte-at-a-time state machine (like nginx's ngx_mail_parse.c): every
 * state looks at one byte, so a split anywhere in the input leaves the
 * parser in the same state as one piece would. Only literal data is taken
 * in bulk, and that does not depend on how it was split either.
 *
 * Token bytes (tag, name, atoms, unescaped strings, in-line literals) are
 * appended to one buffer (store) and arguments keep offsets into it, since
 * the buffer may move while it grows; the caller's view (struct
 * sora_imap_arg with pointers) is rebuilt from the offsets whenever an
 * event hands it out, in breadth-first order so that each list's elements
 * are contiguous. */
#include "common/proto/imap-parser.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/proto/imap-types.h"

const struct sora_imap_parser_params sora_imap_parser_default_params = {
	.max_line = 64 * 1024,
	.max_atom = 8 * 1024,
	.max_quoted = 8 * 1024,
	.max_literal = 64 * 1024 * 1024,
	.max_inline_literal = 64 * 1024,
	.max_nonsync_literal = UINT64_MAX,
	.max_depth = 32,
	.max_args = 10000,
	.max_command = 1024 * 1024,
	.binary = true,
	.utf8_quoted = false,
};

/* number64 (RFC 9051): literal sizes are at most 2^63-1. */
#define LITERAL_SIZE_MAX ((uint64_t)INT64_MAX)
#define NO_NODE ((size_t)-1)

enum state {
	ST_START,       /* nothing of a command read yet */
	ST_TAG,
	ST_NAME_START,
	ST_NAME,
	ST_ARGS,        /* between arguments */
	ST_TILDE,       /* '~' at the start of an argument */
	ST_ATOM,
	ST_QUOTED,
	ST_QUOTED_ESC,
	ST_LIT_SIZE,    /* after '{': digits */
	ST_LIT_SUFFIX,  /* after '+' or '-': expect '}' */
	ST_LIT_CLOSE,   /* after '}': expect CR or LF */
	ST_LIT_CR,      /* after '}' CR: expect LF */
	ST_LIT_DATA,    /* in-line literal bytes */
	ST_LIT_STREAM,  /* streamed literal bytes */
	ST_CR,          /* CR at the end of the command: expect LF */
	ST_SKIP,        /* after an error: discard to the end of the command */
	ST_SKIP_LITERAL,
	ST_FATAL,
};

/* Literal-announcement recogniser used while skipping (RFC 2088 §3: the
 * server must check the end of every line for a literal). */
enum skip_lit {
	SK_NONE,
	SK_BRACE,     /* "{" digits */
	SK_SUFFIX,    /* "{" digits "+" (or "-") */
	SK_CLOSE,     /* "}" */
	SK_CLOSE_CR,  /* "}" CR */
};

struct node {
	enum sora_imap_arg_type type;
	size_t off, len;           /* bytes in store */
	uint64_t literal_size;
	bool binary, nonsync, streamed;
	size_t parent, first, last, next, count;
};

struct sora_imap_parser {
	struct sora_imap_parser_params params;
	struct sora_imap_parser_params next_params;
	enum state state;

	struct sora_buf store;
	size_t tag_off, tag_len, name_off, name_len;

	struct node *nodes;        /* nodes[0] is the root list */
	size_t nodes_count, nodes_cap;
	size_t cur;                /* the open list receiving arguments */
	unsigned depth;
	size_t tok;                /* node of the atom/string/literal being read */

	size_t line_bytes;
	bool need_sep;             /* an argument just ended */
	bool after_close;          /* ... and it was a list */
	bool quoted_8bit;

	/* literal announcement */
	uint64_t lit_size;
	bool lit_digits, lit_overflow, lit_nonsync, lit_minus, lit_binary;
	uint64_t lit_remaining;
	struct sora_imap_literal_info literal;
	struct sora_str chunk;

	/* skipping */
	enum skip_lit sk;
	uint64_t sk_size;
	bool sk_digits, sk_overflow, sk_nonsync;
	uint64_t skip_remaining;

	struct sora_imap_parser_error error;

	/* the caller's view */
	struct sora_imap_command cmd;
	struct sora_imap_arg *out;
	size_t out_cap;
	size_t *queue;
};

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 9051: tag = 1*<any ASTRING-CHAR except "+">. */
static bool is_tag_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("(){%*\"\\+", c) == NULL;
}

/* Strict ATOM-CHAR, for command names. */
static bool is_name_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("(){%*\"\\]", c) == NULL;
}

/* Argument atoms: ATOM-CHAR plus ']' (astrings, sections), '%' and '*'
 * (LIST patterns, sequence sets) and '\' (flags); see the header. */
static bool is_arg_atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return c != '(' && c != ')' && c != '{' && c != '"';
}

struct sora_imap_parser *sora_imap_parser_new(const struct sora_imap_parser_params *params)
{
	struct sora_imap_parser *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->params = *params;
	p->next_params = *params;
	p->state = ST_START;
	sora_buf_init(&p->store, params->max_command);
	return p;
}

void sora_imap_parser_free(struct sora_imap_parser **pp)
{
	struct sora_imap_parser *p = *pp;

	if (p == NULL)
		return;
	sora_buf_free(&p->store);
	free(p->nodes);
	free(p->out);
	free(p->queue);
	free(p);
	*pp = NULL;
}

void sora_imap_parser_set_params(struct sora_imap_parser *p,
				 const struct sora_imap_parser_params *params)
{
	p->next_params = *params;
	if (p->state == ST_START) {
		p->params = *params;
		p->store.max = params->max_command;
	}
}

bool sora_imap_parser_idle(const struct sora_imap_parser *p)
{
	return p->state == ST_START;
}

/* Forgets the previous command. Large allocations are released so an idle
 * session holds little memory. */
static void command_reset(struct sora_imap_parser *p)
{
	p->params = p->next_params;
	if (p->store.cap > 16 * 1024)
		sora_buf_reset(&p->store);
	p->store.len = 0;
	p->store.max = p->params.max_command;
	if (p->nodes_cap > 1024) {
		free(p->nodes);
		free(p->out);
		free(p->queue);
		p->nodes = NULL;
		p->out = NULL;
		p->queue = NULL;
		p->nodes_cap = 0;
		p->out_cap = 0;
	}
	p->nodes_count = 0;
	p->tag_off = p->tag_len = p->name_off = p->name_len = 0;
	p->cur = 0;
	p->depth = 0;
	p->tok = NO_NODE;
	p->line_bytes = 0;
	p->need_sep = false;
	p->after_close = false;
	memset(&p->error, 0, sizeof(p->error));
	memset(&p->literal, 0, sizeof(p->literal));
	memset(&p->cmd, 0, sizeof(p->cmd));
}

static int store_byte(struct sora_imap_parser *p, unsigned char c)
{
	return sora_buf_append(&p->store, &c, 1);
}

/* Adds an argument to the open list; -1 when over max_args or out of
 * memory (both reported as "too many arguments": the latter only happens
 * far beyond any sane limit). */
static int node_add(struct sora_imap_parser *p, enum sora_imap_arg_type type)
{
	struct node *n, *parent;
	size_t idx;

	if (p->nodes_count == 0) {
		/* the root */
		if (p->nodes_cap == 0) {
			p->nodes = calloc(16, sizeof(*p->nodes));
			if (p->nodes == NULL)
				return -1;
			p->nodes_cap = 16;
		}
		memset(&p->nodes[0], 0, sizeof(p->nodes[0]));
		p->nodes[0].type = SORA_IMAP_ARG_LIST;
		p->nodes[0].parent = p->nodes[0].first = p->nodes[0].last = NO_NODE;
		p->nodes[0].next = NO_NODE;
		p->nodes_count = 1;
	}
	if (type == 0)
		return 0;
	if (p->nodes_count - 1 >= p->params.max_args)
		return -1;
	if (p->nodes_count == p->nodes_cap) {
		size_t cap = p->nodes_cap * 2;
		struct node *nn = realloc(p->nodes, cap * sizeof(*nn));

		if (nn == NULL)
			return -1;
		p->nodes = nn;
		p->nodes_cap = cap;
	}
	idx = p->nodes_count++;
	n = &p->nodes[idx];
	memset(n, 0, sizeof(*n));
	n->type = type;
	n->off = p->store.len;
	n->parent = p->cur;
	n->first = n->last = n->next = NO_NODE;
	parent = &p->nodes[p->cur];
	if (parent->last == NO_NODE)
		parent->first = idx;
	else
		p->nodes[parent->last].next = idx;
	parent->last = idx;
	parent->count++;
	return (int)idx;
}

/* Rebuilds the caller's view. Returns -1 when out of memory. */
static int build_view(struct sora_imap_parser *p)
{
	size_t n = p->nodes_count > 0 ? p->nodes_count - 1 : 0;
	size_t head = 0, tail = 0, filled = 0;
	const char *base = p->store.data != NULL ? p->store.data : "";

	p->cmd.tag = sora_str_make(base + p->tag_off, p->tag_len);
	p->cmd.name = sora_str_make(base + p->name_off, p->name_len);
	p->cmd.args = NULL;
	p->cmd.args_count = 0;
	if (n == 0)
		return 0;
	if (p->out_cap < n) {
		struct sora_imap_arg *o = realloc(p->out, n * sizeof(*o));
		size_t *q;

		if (o == NULL)
			return -1;
		p->out = o;
		/* (node, slot) pairs of the lists still to expand */
		q = realloc(p->queue, 2 * (n + 1) * sizeof(*q));
		if (q == NULL)
			return -1;
		p->queue = q;
		p->out_cap = n;
	}
	/* Breadth first, so that each list's elements are contiguous: a list
	 * gets its slot when its parent is expanded and its elements when it
	 * is dequeued itself. */
	p->queue[tail++] = 0;
	p->queue[tail++] = NO_NODE;
	while (head < tail) {
		size_t list = p->queue[head++];
		size_t slot = p->queue[head++];
		struct sora_imap_arg *first = p->out + filled;

		if (slot == NO_NODE) {
			p->cmd.args = first;
			p->cmd.args_count = p->nodes[list].count;
		} else {
			p->out[slot].list = first;
			p->out[slot].list_count = p->nodes[list].count;
		}
		for (size_t c = p->nodes[list].first; c != NO_NODE; c = p->nodes[c].next) {
			const struct node *nd = &p->nodes[c];
			struct sora_imap_arg *a = &p->out[filled];

			memset(a, 0, sizeof(*a));
			a->type = nd->type;
			a->str = sora_str_make(base + nd->off, nd->len);
			a->literal_size = nd->literal_size;
			a->literal_binary = nd->binary;
			a->literal_nonsync = nd->nonsync;
			a->literal_streamed = nd->streamed;
			if (nd->type == SORA_IMAP_ARG_LIST) {
				p->queue[tail++] = c;
				p->queue[tail++] = filled;
			}
			filled++;
		}
	}
	return 0;
}

static enum sora_imap_parse_result fail(struct sora_imap_parser *p, enum sora_imap_error_code code,
					const char *text)
{
	p->error.code = code;
	p->error.text = text;
	p->error.tag = p->tag_len > 0 && p->state != ST_TAG
		? sora_str_make(p->store.data + p->tag_off, p->tag_len) : SORA_STR_NULL;
	p->sk = SK_NONE;
	p->state = ST_SKIP;
	return SORA_IMAP_PARSE_ERROR;
}

static enum sora_imap_parse_result fail_fatal(struct sora_imap_parser *p,
					      enum sora_imap_error_code code, const char *text)
{
	fail(p, code, text);
	p->error.fatal = true;
	p->state = ST_FATAL;
	return SORA_IMAP_PARSE_ERROR;
}

/* A literal whose announcement ended the line is refused: the command
 * ends (synchronising) or its bytes and the rest of the command are
 * skipped (non-synchronising). */
static enum sora_imap_parse_result refuse(struct sora_imap_parser *p, enum sora_imap_error_code code,
					  const char *text, uint64_t size, bool sync)
{
	fail(p, code, text);
	p->error.literal_sync = sync;
	if (sync) {
		p->state = ST_START;
	} else {
		/* Even for {0+}: the command goes on on the next line. */
		p->error.skipping = size;
		p->skip_remaining = size;
		p->state = ST_SKIP_LITERAL;
	}
	return SORA_IMAP_PARSE_ERROR;
}

/* The announcement line of a literal ended: check it before any byte of
 * it is read. */
static enum sora_imap_parse_result literal_announced(struct sora_imap_parser *p)
{
	uint64_t size = p->lit_size;
	bool sync = !p->lit_nonsync && !p->lit_minus;
	bool streamed;
	int idx;

	/* The size first: every other refusal then skips at most
	 * max_literal bytes. */
	if (size > p->params.max_literal)
		return refuse(p, SORA_IMAP_ERROR_TOOBIG, "Literal too big.", size, sync);
	if (p->lit_minus)
		return refuse(p, SORA_IMAP_ERROR_SYNTAX,
			      "Invalid literal: LITERAL- uses {n+}, not {n-}.", size, false);
	if (p->lit_binary && !p->params.binary)
		return refuse(p, SORA_IMAP_ERROR_SYNTAX, "BINARY literals are not supported.", size, sync);
	if (!sync && size > p->params.max_nonsync_literal)
		return refuse(p, SORA_IMAP_ERROR_TOOBIG,
			      p->params.max_nonsync_literal == 0
			      ? "Non-synchronizing literals are not supported."
			      : "Non-synchronizing literal too big.", size, false);
	streamed = size > p->params.max_inline_literal;
	/* APPEND's messages always stream (params.stream_append): a
	 * MULTIAPPEND of many small messages must not count against the
	 * bytes kept for one command. */
	if (p->params.stream_append && p->name_len == 6 && p->store.data != NULL &&
	    strncasecmp(p->store.data + p->name_off, "APPEND", 6) == 0)
		streamed = true;
	if (!streamed && size > p->store.max - p->store.len)
		return refuse(p, SORA_IMAP_ERROR_TOO_LONG, "Command too long.", size, sync);
	idx = node_add(p, SORA_IMAP_ARG_LITERAL);
	if (idx < 0)
		return refuse(p, SORA_IMAP_ERROR_TOO_LONG, "Too many arguments.", size, sync);
	p->literal.size = size;
	p->literal.sync = sync;
	p->literal.binary = p->lit_binary;
	p->literal.streamed = streamed;
	p->tok = (size_t)idx;
	p->nodes[idx].literal_size = size;
	p->nodes[idx].binary = p->lit_binary;
	p->nodes[idx].nonsync = !sync;
	p->nodes[idx].streamed = p->literal.streamed;
	p->lit_remaining = size;
	if (p->literal.streamed)
		p->state = ST_LIT_STREAM;
	else
		p->state = ST_LIT_DATA;
	if (build_view(p) < 0)
		return fail_fatal(p, SORA_IMAP_ERROR_TOO_LONG, "Out of memory.");
	return SORA_IMAP_PARSE_LITERAL;
}

void sora_imap_parser_refuse_literal(struct sora_imap_parser *p)
{
	bool sync = p->literal.sync;
	enum state st = p->state;

	if (st != ST_LIT_DATA && st != ST_LIT_STREAM)
		return;
	p->error.code = SORA_IMAP_ERROR_TOOBIG;
	p->error.text = "Literal refused.";
	p->error.literal_sync = sync;
	p->sk = SK_NONE;
	if (sync) {
		p->state = ST_START;
	} else {
		p->error.skipping = p->lit_remaining;
		p->skip_remaining = p->lit_remaining;
		p->state = ST_SKIP_LITERAL;
	}
}

static enum sora_imap_parse_result command_done(struct sora_imap_parser *p)
{
	if (p->depth > 0) {
		p->state = ST_START;
		fail(p, SORA_IMAP_ERROR_SYNTAX, "Missing ')'.");
		p->state = ST_START;
		return SORA_IMAP_PARSE_ERROR;
	}
	p->state = ST_START;
	if (build_view(p) < 0)
		return fail_fatal(p, SORA_IMAP_ERROR_TOO_LONG, "Out of memory.");
	return SORA_IMAP_PARSE_COMMAND;
}

/* One byte while skipping a bad command. Returns true at the end of it. */
static enum sora_imap_parse_result skip_byte(struct sora_imap_parser *p, unsigned char c, bool *done_r)
{
	*done_r = false;
	switch (p->sk) {
	case SK_BRACE:
		if (is_digit(c)) {
			if (p->sk_size > (LITERAL_SIZE_MAX - (uint64_t)(c - '0')) / 10)
				p->sk_overflow = true;
			else
				p->sk_size = p->sk_size * 10 + (uint64_t)(c - '0');
			p->sk_digits = true;
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		if ((c == '+' || c == '-') && p->sk_digits) {
			p->sk_nonsync = true;
			p->sk = SK_SUFFIX;
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		if (c == '}' && p->sk_digits) {
			p->sk = SK_CLOSE;
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		break;
	case SK_SUFFIX:
		if (c == '}') {
			p->sk = SK_CLOSE;
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		break;
	case SK_CLOSE:
		if (c == '\r') {
			p->sk = SK_CLOSE_CR;
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		/* fall through */
	case SK_CLOSE_CR:
		if (c == '\n') {
			p->sk = SK_NONE;
			if (!p->sk_nonsync) {
				/* The client waits for a continuation it will not
				 * get: the command is over. */
				*done_r = true;
				return SORA_IMAP_PARSE_NEED_MORE;
			}
			if (p->sk_overflow)
				return fail_fatal(p, SORA_IMAP_ERROR_TOOBIG,
						  "Literal size out of range.");
			/* Skipping is bounded like reading: beyond max_literal
			 * the session must close instead. */
			if (p->sk_size > p->params.max_literal)
				return fail_fatal(p, SORA_IMAP_ERROR_TOOBIG, "Literal too big.");
			p->error.skipping += p->sk_size;
			p->skip_remaining = p->sk_size;
			if (p->sk_size > 0)
				p->state = ST_SKIP_LITERAL;
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		break;
	case SK_NONE:
		break;
	}
	p->sk = SK_NONE;
	if (c == '{') {
		p->sk = SK_BRACE;
		p->sk_size = 0;
		p->sk_digits = p->sk_overflow = p->sk_nonsync = false;
	} else if (c == '\n') {
		*done_r = true;
	}
	return SORA_IMAP_PARSE_NEED_MORE;
}

static void end_token(struct sora_imap_parser *p)
{
	struct node *n = &p->nodes[p->tok];

	n->len = p->store.len - n->off;
	if (n->type == SORA_IMAP_ARG_ATOM && n->len == 3 &&
	    sora_str_ieq_c(sora_str_make(p->store.data + n->off, 3), "NIL"))
		n->type = SORA_IMAP_ARG_NIL;
	p->tok = NO_NODE;
	p->need_sep = true;
	p->after_close = false;
}

static enum sora_imap_parse_result start_literal(struct sora_imap_parser *p, bool binary)
{
	p->lit_size = 0;
	p->lit_digits = p->lit_overflow = p->lit_nonsync = p->lit_minus = false;
	p->lit_binary = binary;
	p->state = ST_LIT_SIZE;
	return SORA_IMAP_PARSE_NEED_MORE;
}

/* One byte between arguments. */
static enum sora_imap_parse_result args_byte(struct sora_imap_parser *p, unsigned char c)
{
	int idx;

	switch (c) {
	case ' ':
		p->need_sep = false;
		p->after_close = false;
		return SORA_IMAP_PARSE_NEED_MORE;
	case '\r':
		p->state = ST_CR;
		return SORA_IMAP_PARSE_NEED_MORE;
	case '\n':
		return command_done(p);
	case ')':
		if (p->depth == 0)
			return fail(p, SORA_IMAP_ERROR_SYNTAX, "Unexpected ')'.");
		p->cur = p->nodes[p->cur].parent;
		p->depth--;
		p->need_sep = true;
		p->after_close = true;
		return SORA_IMAP_PARSE_NEED_MORE;
	default:
		break;
	}
	if (c == 0 || c < 0x20 || c >= 0x7f)
		return fail(p, SORA_IMAP_ERROR_SYNTAX, "Invalid character in command.");
	if (p->need_sep && !(p->after_close && c == ']'))
		return fail(p, SORA_IMAP_ERROR_SYNTAX, "Missing space between arguments.");
	switch (c) {
	case '(':
		if (p->depth >= p->params.max_depth)
			return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Lists nested too deeply.");
		idx = node_add(p, SORA_IMAP_ARG_LIST);
		if (idx < 0)
			return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Too many arguments.");
		p->cur = (size_t)idx;
		p->depth++;
		p->need_sep = false;
		return SORA_IMAP_PARSE_NEED_MORE;
	case '"':
		idx = node_add(p, SORA_IMAP_ARG_STRING);
		if (idx < 0)
			return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Too many arguments.");
		p->tok = (size_t)idx;
		p->quoted_8bit = false;
		p->state = ST_QUOTED;
		return SORA_IMAP_PARSE_NEED_MORE;
	case '{':
		return start_literal(p, false);
	case '~':
		p->state = ST_TILDE;
		return SORA_IMAP_PARSE_NEED_MORE;
	default:
		break;
	}
	if (!is_arg_atom_char(c))
		return fail(p, SORA_IMAP_ERROR_SYNTAX, "Invalid character in command.");
	idx = node_add(p, SORA_IMAP_ARG_ATOM);
	if (idx < 0)
		return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Too many arguments.");
	p->tok = (size_t)idx;
	if (store_byte(p, c) < 0)
		return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Command too long.");
	p->state = ST_ATOM;
	return SORA_IMAP_PARSE_NEED_MORE;
}

/* One byte outside literal data. *reprocess_r asks for the same byte to be
 * looked at again in the new state (it ended a token). */
static enum sora_imap_parse_result step(struct sora_imap_parser *p, unsigned char c, bool *reprocess_r)
{
	int idx;

	*reprocess_r = false;
	switch (p->state) {
	case ST_TAG:
		if (is_tag_char(c)) {
			if (p->tag_len >= p->params.max_atom)
				return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Tag too long.");
			if (store_byte(p, c) < 0)
				return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Command too long.");
			p->tag_len++;
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		if (c == ' ' && p->tag_len > 0) {
			p->state = ST_NAME_START;
			p->name_off = p->store.len;
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		if ((c == '\r' || c == '\n') && p->tag_len > 0) {
			p->state = ST_NAME_START;
			*reprocess_r = true;
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		*reprocess_r = true;
		p->tag_len = 0;
		return fail(p, SORA_IMAP_ERROR_SYNTAX,
			    c == '\r' || c == '\n' ? "Empty command line." : "Invalid tag.");
	case ST_NAME_START:
	case ST_NAME:
		if (is_name_char(c)) {
			if (p->name_len >= p->params.max_atom)
				return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Command name too long.");
			if (store_byte(p, c) < 0)
				return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Command too long.");
			p->name_len++;
			p->state = ST_NAME;
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		if (p->state == ST_NAME && (c == ' ' || c == '\r' || c == '\n')) {
			p->state = ST_ARGS;
			p->need_sep = false;
			*reprocess_r = c != ' ';
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		*reprocess_r = true;
		return fail(p, SORA_IMAP_ERROR_SYNTAX,
			    p->state == ST_NAME_START && (c == '\r' || c == '\n')
			    ? "Missing command." : "Invalid command name.");
	case ST_ARGS:
		return args_byte(p, c);
	case ST_TILDE:
		if (c == '{') /* literal_announced() checks params.binary */
			return start_literal(p, true);
		/* An atom that begins with '~'. */
		idx = node_add(p, SORA_IMAP_ARG_ATOM);
		if (idx < 0)
			return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Too many arguments.");
		p->tok = (size_t)idx;
		if (store_byte(p, '~') < 0)
			return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Command too long.");
		p->state = ST_ATOM;
		*reprocess_r = true;
		return SORA_IMAP_PARSE_NEED_MORE;
	case ST_ATOM:
		if (is_arg_atom_char(c)) {
			if (p->store.len - p->nodes[p->tok].off >= p->params.max_atom)
				return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Atom too long.");
			if (store_byte(p, c) < 0)
				return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Command too long.");
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		end_token(p);
		p->state = ST_ARGS;
		*reprocess_r = true;
		return SORA_IMAP_PARSE_NEED_MORE;
	case ST_QUOTED:
		if (c == '"') {
			struct node *n = &p->nodes[p->tok];

			if (p->quoted_8bit &&
			    !sora_imap_utf8_valid(sora_str_make(p->store.data + n->off,
								p->store.len - n->off)))
				return fail(p, SORA_IMAP_ERROR_SYNTAX, "Invalid UTF-8 in quoted string.");
			end_token(p);
			p->state = ST_ARGS;
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		if (c == '\\') {
			p->state = ST_QUOTED_ESC;
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		if (c == '\r' || c == '\n') {
			*reprocess_r = true;
			return fail(p, SORA_IMAP_ERROR_SYNTAX, "Unterminated quoted string.");
		}
		if (c < 0x20 || c == 0x7f)
			return fail(p, SORA_IMAP_ERROR_SYNTAX, "Invalid character in quoted string.");
		if (c >= 0x80) {
			if (!p->params.utf8_quoted)
				return fail(p, SORA_IMAP_ERROR_SYNTAX, "8-bit character in quoted string.");
			p->quoted_8bit = true;
		}
		/* fall through */
	case ST_QUOTED_ESC:
		if (p->state == ST_QUOTED_ESC && c != '"' && c != '\\') {
			*reprocess_r = true;
			return fail(p, SORA_IMAP_ERROR_SYNTAX, "Invalid escape in quoted string.");
		}
		if (p->store.len - p->nodes[p->tok].off >= p->params.max_quoted)
			return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Quoted string too long.");
		if (store_byte(p, c) < 0)
			return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Command too long.");
		p->state = ST_QUOTED;
		return SORA_IMAP_PARSE_NEED_MORE;
	case ST_LIT_SIZE:
		if (is_digit(c)) {
			if (p->lit_size > (LITERAL_SIZE_MAX - (uint64_t)(c - '0')) / 10)
				p->lit_overflow = true;
			else
				p->lit_size = p->lit_size * 10 + (uint64_t)(c - '0');
			p->lit_digits = true;
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		if ((c == '+' || c == '-') && p->lit_digits) {
			p->lit_nonsync = c == '+';
			p->lit_minus = c == '-';
			p->state = ST_LIT_SUFFIX;
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		if (c == '}' && p->lit_digits)
			goto close;
		*reprocess_r = true;
		return fail(p, SORA_IMAP_ERROR_SYNTAX, "Invalid literal size.");
	case ST_LIT_SUFFIX:
		if (c == '}')
			goto close;
		*reprocess_r = true;
		return fail(p, SORA_IMAP_ERROR_SYNTAX, "Invalid literal size.");
	case ST_LIT_CLOSE:
		if (c == '\r') {
			p->state = ST_LIT_CR;
			return SORA_IMAP_PARSE_NEED_MORE;
		}
		if (c == '\n')
			return literal_announced(p);
		*reprocess_r = true;
		return fail(p, SORA_IMAP_ERROR_SYNTAX, "A literal must end its line.");
	case ST_LIT_CR:
		if (c == '\n')
			return literal_announced(p);
		*reprocess_r = true;
		return fail(p, SORA_IMAP_ERROR_SYNTAX, "CR without LF.");
	case ST_CR:
		if (c == '\n')
			return command_done(p);
		*reprocess_r = true;
		return fail(p, SORA_IMAP_ERROR_SYNTAX, "CR without LF.");
	default:
		break;
	}
	return SORA_IMAP_PARSE_NEED_MORE;

close:
	if (p->lit_overflow) {
		/* The size cannot be skipped if the client does not wait. */
		if (p->lit_nonsync || p->lit_minus)
			return fail_fatal(p, SORA_IMAP_ERROR_TOOBIG, "Literal size out of range.");
		fail(p, SORA_IMAP_ERROR_TOOBIG, "Literal too big.");
		p->error.literal_sync = true;
		/* Let the skipper see the '}' so that CRLF ends the command. */
		p->sk = SK_CLOSE;
		p->sk_nonsync = false;
		return SORA_IMAP_PARSE_ERROR;
	}
	p->state = ST_LIT_CLOSE;
	return SORA_IMAP_PARSE_NEED_MORE;
}

enum sora_imap_parse_result sora_imap_parser_feed(struct sora_imap_parser *p, const char *data,
						  size_t len, size_t *consumed_r)
{
	size_t i = 0;
	enum sora_imap_parse_result r = SORA_IMAP_PARSE_NEED_MORE;

	p->chunk = SORA_STR_NULL;
	if (p->state == ST_FATAL) {
		/* also for an empty offer, as the header promises */
		*consumed_r = 0;
		return SORA_IMAP_PARSE_ERROR;
	}
	while (i < len) {
		unsigned char c = (unsigned char)data[i];
		bool reprocess = false, done;

		switch (p->state) {
		case ST_FATAL:
			*consumed_r = i;
			return SORA_IMAP_PARSE_ERROR;
		case ST_LIT_DATA: {
			size_t n = len - i;

			if (n > p->lit_remaining)
				n = (size_t)p->lit_remaining;
			if (sora_buf_append(&p->store, data + i, n) < 0) {
				/* literal_announced() checked the room. */
				*consumed_r = i;
				return fail_fatal(p, SORA_IMAP_ERROR_TOO_LONG, "Command too long.");
			}
			i += n;
			p->lit_remaining -= n;
			if (p->lit_remaining == 0) {
				end_token(p);
				p->state = ST_ARGS;
			}
			continue;
		}
		case ST_LIT_STREAM: {
			size_t n = len - i;

			if (p->lit_remaining == 0) {
				end_token(p);
				p->state = ST_ARGS;
				continue;
			}
			if (n > p->lit_remaining)
				n = (size_t)p->lit_remaining;
			p->chunk = sora_str_make(data + i, n);
			i += n;
			p->lit_remaining -= n;
			if (p->lit_remaining == 0) {
				end_token(p);
				p->state = ST_ARGS;
			}
			if (build_view(p) < 0) {
				*consumed_r = i;
				return fail_fatal(p, SORA_IMAP_ERROR_TOO_LONG, "Out of memory.");
			}
			*consumed_r = i;
			return SORA_IMAP_PARSE_LITERAL_DATA;
		}
		case ST_SKIP_LITERAL: {
			size_t n = len - i;

			if (n > p->skip_remaining)
				n = (size_t)p->skip_remaining;
			i += n;
			p->skip_remaining -= n;
			if (p->skip_remaining == 0) {
				p->state = ST_SKIP;
				p->sk = SK_NONE;
			}
			continue;
		}
		case ST_SKIP:
			i++;
			r = skip_byte(p, c, &done);
			if (r != SORA_IMAP_PARSE_NEED_MORE) {
				*consumed_r = i;
				return r;
			}
			if (done)
				p->state = ST_START;
			continue;
		case ST_START:
			command_reset(p);
			if (node_add(p, 0) < 0) {
				*consumed_r = i;
				return fail_fatal(p, SORA_IMAP_ERROR_TOO_LONG, "Out of memory.");
			}
			p->state = ST_TAG;
			break;
		default:
			break;
		}

		if (++p->line_bytes > p->params.max_line) {
			*consumed_r = i;
			return fail(p, SORA_IMAP_ERROR_TOO_LONG, "Command line too long.");
		}
		r = step(p, c, &reprocess);
		/* The byte that showed an error is looked at again by the
		 * skipper: it may be the '{' of a literal announcement or the
		 * LF that ends the command. */
		if (r == SORA_IMAP_PARSE_ERROR && p->state == ST_SKIP && p->sk == SK_NONE)
			reprocess = true;
		if (!reprocess)
			i++;
		else if (p->state != ST_SKIP && p->state != ST_FATAL && p->state != ST_START)
			p->line_bytes--;
		if (r != SORA_IMAP_PARSE_NEED_MORE) {
			*consumed_r = i;
			return r;
		}
	}
	*consumed_r = i;
	return SORA_IMAP_PARSE_NEED_MORE;
}

const struct sora_imap_command *sora_imap_parser_command(struct sora_imap_parser *p)
{
	return &p->cmd;
}

const struct sora_imap_literal_info *sora_imap_parser_literal(const struct sora_imap_parser *p)
{
	return &p->literal;
}

struct sora_str sora_imap_parser_literal_chunk(const struct sora_imap_parser *p)
{
	return p->chunk;
}

const struct sora_imap_parser_error *sora_imap_parser_error(const struct sora_imap_parser *p)
{
	return &p->error;
}

static int describe_bytes(struct sora_buf *out, struct sora_str s)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];
		char esc[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			if (sora_buf_append(out, &c, 1) < 0)
				return -1;
		} else if (sora_buf_append(out, esc, 4) < 0) {
			return -1;
		}
	}
	return 0;
}

static int describe_args(const struct sora_imap_arg *args, size_t count, struct sora_buf *out)
{
	for (size_t i = 0; i < count; i++) {
		const struct sora_imap_arg *a = &args[i];

		if (i > 0 && sora_buf_append(out, " ", 1) < 0)
			return -1;
		switch (a->type) {
		case SORA_IMAP_ARG_ATOM:
			if (describe_bytes(out, a->str) < 0)
				return -1;
			break;
		case SORA_IMAP_ARG_NIL:
			if (sora_buf_append_str(out, "NIL") < 0)
				return -1;
			break;
		case SORA_IMAP_ARG_STRING:
			if (sora_buf_append(out, "\"", 1) < 0 || describe_bytes(out, a->str) < 0 ||
			    sora_buf_append(out, "\"", 1) < 0)
				return -1;
			break;
		case SORA_IMAP_ARG_LITERAL:
			if (sora_buf_printf(out, "%s{%llu%s%s}\"", a->literal_binary ? "~" : "",
					    (unsigned long long)a->literal_size,
					    a->literal_nonsync ? "+" : "",
					    a->literal_streamed ? " streamed" : "") < 0 ||
			    describe_bytes(out, a->str) < 0 || sora_buf_append(out, "\"", 1) < 0)
				return -1;
			break;
		case SORA_IMAP_ARG_LIST:
			if (sora_buf_append(out, "(", 1) < 0 ||
			    describe_args(a->list, a->list_count, out) < 0 ||
			    sora_buf_append(out, ")", 1) < 0)
				return -1;
			break;
		}
	}
	return 0;
}

int sora_imap_command_describe(const struct sora_imap_command *cmd, struct sora_buf *out)
{
	if (describe_bytes(out, cmd->tag) < 0 || sora_buf_append(out, " ", 1) < 0 ||
	    describe_bytes(out, cmd->name) < 0)
		return -1;
	if (cmd->args_count > 0 &&
	    (sora_buf_append(out, " ", 1) < 0 || describe_args(cmd->args, cmd->args_count, out) < 0))
		return -1;
	return 0;
}

bool sora_imap_arg_atom(const struct sora_imap_arg *arg, struct sora_str *value_r)
{
	if (arg->type != SORA_IMAP_ARG_ATOM)
		return false;
	*value_r = arg->str;
	return true;
}

bool sora_imap_arg_astring(const struct sora_imap_arg *arg, struct sora_str *value_r)
{
	switch (arg->type) {
	case SORA_IMAP_ARG_ATOM:
	case SORA_IMAP_ARG_NIL:
	case SORA_IMAP_ARG_STRING:
		*value_r = arg->str;
		return true;
	case SORA_IMAP_ARG_LITERAL:
		if (arg->literal_streamed)
			return false;
		*value_r = arg->str;
		return true;
	default:
		return false;
	}
}

bool sora_imap_arg_nstring(const struct sora_imap_arg *arg, struct sora_str *value_r)
{
	if (arg->type == SORA_IMAP_ARG_NIL) {
		*value_r = SORA_STR_NULL;
		return true;
	}
	if (arg->type == SORA_IMAP_ARG_ATOM)
		return false;
	return sora_imap_arg_astring(arg, value_r);
}
