/* POP3 on the wire (RFC 1939, RFC 2449, RFC 5034): the command parser,
 * argument helpers and the multi-line encoder (pure, no I/O).
 *
 * The parser is a state machine over the bytes as they arrive (nginx's
 * mail parser, Dovecot's tests feeding one byte at a time): it keeps at
 * most max_line bytes of the line being read, so an over-long line is
 * skipped to its end and reported once (ERROR, TOO_LONG), whatever its
 * length, and the session goes on. Lines end at LF, with or without CR; a
 * NUL byte anywhere in a line makes the line an error. A complete line is
 * split into a keyword and arguments separated by spaces.
 *
 * The encoder turns a stored message into what RETR and TOP send: every
 * line ends in CRLF (a bare LF gets its CR; any other byte, bare CR and NUL
 * included, is sent as stored), a line that starts with "." gets another
 * "." (byte-stuffing, RFC 1939 §3), a last line without a line ending gets
 * CRLF, then the terminating ".\r\n". Its octet count -- what the client
 * holds after undoing the byte-stuffing, i.e. what poplib reports -- is
 * the size LIST and STAT announce: the same function computes both, so
 * they cannot disagree.
 *
 * Ownership: results point into the parser's buffer or the caller's data
 * (borrowed) and are valid until the next feed. A parser is owned by the
 * caller (sora_pop3_parser_free clears the pointer).
 *
 * Thread safety: a parser or an encoder is used by one thread at a time;
 * the other functions are pure. */
#ifndef SORA_PROTO_POP3_H
#define SORA_PROTO_POP3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/core/cidr.h"
#include "common/core/str.h"

/* RFC 2449 §4: a command line is at most 255 octets; RFC 5034 §4 lets a
 * SASL response line be longer (a PLAIN response of a long password). */
#define SORA_POP3_MAX_LINE 8192
#define SORA_POP3_MAX_ARGS 8

struct sora_pop3_parser_params {
	size_t max_line;             /* bytes of a line without its line ending */
};

struct sora_pop3_command {
	struct sora_str line;        /* the whole line without its line ending */
	struct sora_str name;        /* the keyword (not in raw mode) */
	/* Arguments split at runs of spaces; args_count may be larger than
	 * SORA_POP3_MAX_ARGS (only that many are kept). */
	struct sora_str args[SORA_POP3_MAX_ARGS];
	size_t args_count;
	/* Everything after the keyword and one space, as sent (PASS: a
	 * password may contain spaces). */
	struct sora_str rest;
};

enum sora_pop3_parse_result {
	SORA_POP3_PARSE_NEED_MORE = 0,
	SORA_POP3_PARSE_COMMAND,
	SORA_POP3_PARSE_ERROR,
};

enum sora_pop3_error_code {
	SORA_POP3_ERR_NONE = 0,
	SORA_POP3_ERR_TOO_LONG,      /* the line passed max_line (skipped) */
	SORA_POP3_ERR_NUL,           /* a NUL byte in the line */
	SORA_POP3_ERR_EMPTY,         /* an empty line */
	SORA_POP3_ERR_KEYWORD,       /* not a keyword of 1..40 printable characters */
};

struct sora_pop3_parser;

/* NULL when out of memory. params is copied. */
struct sora_pop3_parser *sora_pop3_parser_new(const struct sora_pop3_parser_params *params);
void sora_pop3_parser_free(struct sora_pop3_parser **p);
/* Consumes bytes up to the end of the first complete line (*used_r tells
 * how many) and returns COMMAND or ERROR for it, or consumes everything and
 * returns NEED_MORE. */
enum sora_pop3_parse_result sora_pop3_parser_feed(struct sora_pop3_parser *p, const char *data,
						  size_t len, size_t *used_r);
/* After COMMAND: the command (borrowed, valid until the next feed). */
const struct sora_pop3_command *sora_pop3_parser_command(const struct sora_pop3_parser *p);
/* After ERROR: what was wrong, and a sentence for the -ERR reply. */
enum sora_pop3_error_code sora_pop3_parser_error(const struct sora_pop3_parser *p,
						 const char **text_r);
/* True between lines (no partial line held). */
bool sora_pop3_parser_idle(const struct sora_pop3_parser *p);
/* Raw mode (the SASL continuation of AUTH): the next line is returned as
 * command.line only, never split, and may be empty. It ends by itself
 * after one line. */
void sora_pop3_parser_set_raw(struct sora_pop3_parser *p, bool raw);

/* A message number or a line count: decimal digits only, no sign, at most
 * UINT32_MAX. 0 or -1. Zero parses (the caller says "no such message"). */
int sora_pop3_parse_number(struct sora_str s, uint32_t *n_r);

/* XCLIENT (Dovecot's POP3 form): "XCLIENT ATTR=VALUE ...". ADDR, PORT and
 * SESSION are taken; other attributes are ignored as Dovecot does. */
struct sora_pop3_xclient {
	bool has_addr, has_port;
	struct sora_ip addr;
	uint16_t port;
	char session[64];            /* "" when absent; token characters only */
};
/* 0, or -1 with *error_r for a malformed or invalid attribute. */
int sora_pop3_xclient_parse(const struct sora_pop3_command *cmd, struct sora_pop3_xclient *x_r,
			    const char **error_r);

/* ---- the multi-line encoder ---- */

struct sora_pop3_dot {
	bool line_start;             /* the next byte starts a line */
	bool prev_cr;                /* the last byte was CR */
	uint64_t line_bytes;         /* bytes of the current line so far */
	/* TOP: stop after the header and `lines` lines of the body. */
	bool top;
	bool in_body;
	uint64_t lines_left;
	bool done;
	/* Octets the client holds so far (without byte-stuffing). */
	uint64_t octets;
};

/* top false: the whole message (RETR). */
void sora_pop3_dot_init(struct sora_pop3_dot *d, bool top, uint64_t lines);
/* Encodes in[0..len): writes at most 2 * len bytes to out (NULL: only
 * count) and returns how many. *used_r is len unless TOP ended inside the
 * input (then the rest is not needed). */
size_t sora_pop3_dot_encode(struct sora_pop3_dot *d, const char *in, size_t len, char *out,
			    size_t *used_r);
/* True when TOP has sent all it should. */
bool sora_pop3_dot_done(const struct sora_pop3_dot *d);
/* The end: CRLF after an unterminated last line, then ".\r\n" (terminator
 * true). Writes at most 5 bytes to out (NULL: only count); returns how
 * many. */
size_t sora_pop3_dot_finish(struct sora_pop3_dot *d, char *out, bool terminator);

/* The size LIST/STAT report for a message: the encoder's octet count over
 * all of it. Feed it in pieces; sora_pop3_size_final gives the total. */
void sora_pop3_size_init(struct sora_pop3_dot *d);
void sora_pop3_size_feed(struct sora_pop3_dot *d, const void *data, size_t len);
uint64_t sora_pop3_size_final(struct sora_pop3_dot *d);

#endif
