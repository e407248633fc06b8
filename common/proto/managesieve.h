/* ManageSieve (RFC 5804) command parser for the pre-authentication front
 * end: a pure function over the bytes a connection has buffered.
 *
 * A command is an atom (its name) followed by arguments separated by single
 * spaces: atoms, numbers, quoted strings ("..." with \" and \\ escapes,
 * no CR, LF or NUL) and literals ("{n+}" CRLF n octets; "{n}" is accepted
 * too, as Dovecot does, without a continuation: ManageSieve has none), and
 * ends with CRLF. The parser is not incremental: each call parses from the
 * start of the buffer and has no side effects until a command is complete
 * (NEED_MORE), so feeding bytes one at a time gives the same result as one
 * piece (the test does that). Commands are bounded by the params: the line
 * (without literal bytes), each literal, the argument count.
 *
 * Results point into the caller's buffer, or into cmd->scratch for quoted
 * strings that had escapes: the buffer must outlive the command, and the
 * command must not be copied while in use.
 *
 * Thread safety: pure; callable from any thread. */
#ifndef SORA_PROTO_MANAGESIEVE_H
#define SORA_PROTO_MANAGESIEVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/core/str.h"

#define SORA_SIEVE_MAX_ARGS 8
#define SORA_SIEVE_SCRATCH 8192

struct sora_sieve_params {
	size_t max_line;       /* command bytes without literal contents */
	size_t max_literal;    /* one literal's contents */
};

enum sora_sieve_arg_type {
	SORA_SIEVE_ARG_ATOM,
	SORA_SIEVE_ARG_NUMBER,
	SORA_SIEVE_ARG_STRING,   /* quoted or literal */
};

struct sora_sieve_arg {
	enum sora_sieve_arg_type type;
	struct sora_str value;
	uint64_t number;         /* SORA_SIEVE_ARG_NUMBER */
};

struct sora_sieve_command {
	struct sora_str name;
	struct sora_sieve_arg args[SORA_SIEVE_MAX_ARGS];
	size_t nargs;
	char scratch[SORA_SIEVE_SCRATCH];
	size_t scratch_used;
};

enum sora_sieve_result {
	SORA_SIEVE_NEED_MORE = 0,
	SORA_SIEVE_COMMAND,
	SORA_SIEVE_ERROR,
};

/* Parses one command at the start of in. COMMAND: *cmd filled, *consumed_r
 * bytes (through the final CRLF) belong to it. ERROR: *error_r is a static
 * reply text; *consumed_r > 0 when the bad command's end was found (skip
 * it and go on), 0 when it cannot be found or the input is over a limit
 * (*fatal_r: end the session rather than read on). */
enum sora_sieve_result sora_sieve_parse(const struct sora_sieve_params *params,
					 const char *in, size_t len,
					 struct sora_sieve_command *cmd, size_t *consumed_r,
					 bool *fatal_r, const char **error_r);

#endif
