/* The IMAP command parser (RFC 3501 / RFC 9051 §9 command grammar, with
 * LITERAL+/LITERAL- (RFC 7888) and BINARY literal8 (RFC 3516)). Pure: it
 * parses bytes and does no I/O, so the same code serves the pre-auth front
 * end, the backend's command loop, the unit tests and the fuzzer.
 *
 * Incremental: the caller feeds bytes as they arrive, split anywhere (one
 * byte at a time gives the same result as one piece). Each call consumes
 * input up to the next event and reports it:
 *
 *   NEED_MORE     all input consumed, nothing to report yet.
 *   COMMAND       a complete command: sora_imap_parser_command().
 *   LITERAL       a literal was announced and is within the limits:
 *                 sora_imap_parser_literal() says its size and form. For a
 *                 synchronising literal "{n}" the caller must now send a
 *                 continuation request ("+ OK") or call
 *                 sora_imap_parser_refuse_literal() and answer the command
 *                 itself. Non-synchronising literals are reported too, so a
 *                 command handler may refuse them (APPENDLIMIT).
 *   LITERAL_DATA  (streamed literals only) the next piece of literal bytes,
 *                 sora_imap_parser_literal_chunk(), pointing into the
 *                 caller's input: the caller consumes them itself (APPEND
 *                 to a staging file); the parser never buffers them.
 *   ERROR         the command is invalid: sora_imap_parser_error() gives the
 *                 reply class, text, tag (if one was parsed) and whether
 *                 the stream can be resynchronised.
 *
 * Argument shapes. Arguments form a tree of ATOM, NIL (the atom "NIL" in
 * any case; .str still holds it, so it can be read as the astring "NIL"),
 * STRING (quoted, unescaped), LITERAL (bytes, or a streamed marker) and
 * LIST. FETCH sections are handled the way Dovecot does: '[', ']' and '<'
 * are atom characters, so BODY.PEEK[1.2]<0.100> is one atom and
 * BODY[HEADER.FIELDS (From To)] arrives as the atom "BODY[HEADER.FIELDS",
 * the list (From To) and the atom "]" (which may follow ')' without a
 * space). A dedicated section kind would misparse mailbox names such as
 * "[Gmail]/Sent", which are valid atoms. '%', '*' and '\' are atom
 * characters too (LIST patterns, sequence sets, flags). The command name
 * is the first atom after the tag; "UID FETCH" is the name "UID" followed
 * by the atom "FETCH".
 *
 * Line ends: CRLF, and a bare LF is tolerated (as Dovecot does: some
 * clients and test tools send it). A CR not followed by LF is an error.
 * Spaces between arguments may repeat; a space is required between two
 * arguments except before ')' and between ')' and an atom beginning with
 * ']'. NUL, other control characters and 8-bit bytes are errors outside
 * literals (8-bit is allowed, as valid UTF-8, in quoted strings when
 * params.utf8_quoted is set, for UTF8=ACCEPT). Literals may hold any byte.
 *
 * Literal limits and what happens to refused bytes. A literal's size is
 * checked when its announcement line ends, before any of its bytes is
 * read:
 *  - size > max_literal, a non-synchronising literal over
 *    max_nonsync_literal (4096 for LITERAL-, 0 when neither LITERAL+ nor
 *    LITERAL- is advertised), a literal8 without params.binary, or the
 *    non-standard form "{n-}" -> ERROR (code TOOBIG or SYNTAX);
 *  - a synchronising literal then ends the command: the client gets the
 *    error instead of a continuation and sends no bytes;
 *  - a non-synchronising literal's n bytes are skipped (never parsed as
 *    commands), then the rest of that command line is skipped too, still
 *    honouring literal announcements at line ends (RFC 7888 §4 / RFC 2088
 *    §3). error.skipping says how many literal bytes will be skipped; a
 *    session that does not want to read them closes instead (pre-auth
 *    does);
 *  - a non-synchronising announcement whose size cannot be represented
 *    ({99999999999999999999+}) cannot be skipped: the error is fatal; so
 *    is one over max_literal found while skipping the rest of a bad
 *    command (that error is reported as a second ERROR event).
 * After any non-fatal error the parser skips to the end of the command in
 * the same way, so bytes of a literal in a bad command are never taken for
 * a command. After a fatal error the parser consumes nothing more and the
 * session must close.
 *
 * Ownership: the parser owns its memory (sora_imap_parser_free()). Every
 * struct sora_str and struct sora_imap_arg it returns is borrowed and stays
 * valid until the next call to sora_imap_parser_feed(),
 * sora_imap_parser_refuse_literal() or sora_imap_parser_free(), except
 * literal chunks, which point into the caller's input.
 *
 * Thread safety: a parser belongs to one thread at a time; no globals. */
#ifndef SORA_PROTO_IMAP_PARSER_H
#define SORA_PROTO_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/core/buf.h"
#include "common/core/str.h"

struct sora_imap_parser_params {
	/* Bytes of one command outside literal data, line ends included. */
	size_t max_line;
	/* Longest tag, command name or atom. */
	size_t max_atom;
	/* Longest quoted string (after unescaping). */
	size_t max_quoted;
	/* Largest literal accepted at all; larger ones are refused before
	 * their bytes are read. */
	uint64_t max_literal;
	/* Literals up to this size are kept in the command; larger ones are
	 * streamed to the caller (LITERAL_DATA). 0 streams every literal. */
	size_t max_inline_literal;
	/* Largest non-synchronising literal: UINT64_MAX with LITERAL+, 4096
	 * with LITERAL-, 0 when neither is advertised. */
	uint64_t max_nonsync_literal;
	/* Deepest list nesting. */
	unsigned max_depth;
	/* Most arguments (every atom, string, literal and list counts). */
	unsigned max_args;
	/* Bytes kept for one command: its tokens plus in-line literal data. */
	size_t max_command;
	/* Accept literal8 ~{n} (BINARY). */
	bool binary;
	/* Accept 8-bit bytes (valid UTF-8 only) in quoted strings. */
	bool utf8_quoted;
	/* Every literal of an APPEND command is streamed (LITERAL_DATA),
	 * whatever its size, so messages never count towards max_command. */
	bool stream_append;
};

/* Defaults for a logged-in session: 64 KiB lines, 8 KiB atoms and quoted
 * strings, 64 MiB literals (in-line up to 64 KiB), LITERAL+, depth 32,
 * 10,000 arguments, 1 MiB per command, BINARY, no UTF-8, APPEND literals
 * in line like any other (servers that stream them set stream_append). */
extern const struct sora_imap_parser_params sora_imap_parser_default_params;

enum sora_imap_arg_type {
	SORA_IMAP_ARG_ATOM = 1,
	SORA_IMAP_ARG_NIL,
	SORA_IMAP_ARG_STRING,
	SORA_IMAP_ARG_LITERAL,
	SORA_IMAP_ARG_LIST,
};

struct sora_imap_arg {
	enum sora_imap_arg_type type;
	/* ATOM, NIL ("NIL" as sent), STRING (unescaped), LITERAL (its bytes;
	 * empty when streamed). May contain NUL only for LITERAL. */
	struct sora_str str;
	/* LITERAL only. */
	uint64_t literal_size;
	bool literal_binary;    /* ~{n} */
	bool literal_nonsync;   /* {n+} */
	bool literal_streamed;  /* bytes went out as LITERAL_DATA */
	/* LIST only: the elements, in order. */
	const struct sora_imap_arg *list;
	size_t list_count;
};

struct sora_imap_command {
	struct sora_str tag;
	struct sora_str name;   /* as sent: compare case-insensitively */
	const struct sora_imap_arg *args;
	size_t args_count;
};

enum sora_imap_parse_result {
	SORA_IMAP_PARSE_NEED_MORE = 0,
	SORA_IMAP_PARSE_COMMAND,
	SORA_IMAP_PARSE_LITERAL,
	SORA_IMAP_PARSE_LITERAL_DATA,
	SORA_IMAP_PARSE_ERROR,
};

enum sora_imap_error_code {
	SORA_IMAP_ERROR_NONE = 0,
	/* Malformed command: answer BAD. */
	SORA_IMAP_ERROR_SYNTAX,
	/* A line, atom, quoted string, nesting, argument or command limit:
	 * answer BAD (sessions usually also close: the client is not IMAP). */
	SORA_IMAP_ERROR_TOO_LONG,
	/* A literal over a size limit: answer "NO [TOOBIG]" for a refused
	 * synchronising literal, "BAD [TOOBIG]" for a non-synchronising one. */
	SORA_IMAP_ERROR_TOOBIG,
};

struct sora_imap_parser_error {
	enum sora_imap_error_code code;
	const char *text;        /* static English sentence ending in '.' */
	struct sora_str tag;     /* empty when no valid tag was read */
	bool fatal;              /* the stream cannot be resynchronised */
	uint64_t skipping;       /* literal bytes of this command being skipped */
	bool literal_sync;       /* the error refused a synchronising literal */
};

struct sora_imap_literal_info {
	uint64_t size;
	bool sync;      /* "{n}": the caller sends "+ ..." before the bytes come */
	bool binary;    /* "~{n}" */
	bool streamed;  /* bytes come as LITERAL_DATA events */
};

struct sora_imap_parser;

/* Returns NULL when out of memory. params is copied. */
struct sora_imap_parser *sora_imap_parser_new(const struct sora_imap_parser_params *params);
/* Frees the parser and clears *pp. NULL-safe. */
void sora_imap_parser_free(struct sora_imap_parser **pp);
/* Changes the limits from the next command on (e.g. after login). */
void sora_imap_parser_set_params(struct sora_imap_parser *p,
				 const struct sora_imap_parser_params *params);

/* Consumes bytes from data up to the next event; *consumed_r is set to
 * the number used (all of len with NEED_MORE). The caller offers the rest
 * again. After a fatal error nothing is consumed and ERROR is returned
 * again. */
enum sora_imap_parse_result sora_imap_parser_feed(struct sora_imap_parser *p, const char *data,
						  size_t len, size_t *consumed_r);

/* The command: complete after COMMAND, parsed so far after LITERAL and
 * LITERAL_DATA (the literal being read is its last argument, possibly
 * inside open lists). */
const struct sora_imap_command *sora_imap_parser_command(struct sora_imap_parser *p);
const struct sora_imap_literal_info *sora_imap_parser_literal(const struct sora_imap_parser *p);
/* After LITERAL_DATA: the bytes, pointing into the input just consumed. */
struct sora_str sora_imap_parser_literal_chunk(const struct sora_imap_parser *p);
/* After ERROR. */
const struct sora_imap_parser_error *sora_imap_parser_error(const struct sora_imap_parser *p);

/* Right after LITERAL: the caller refuses the literal (and so the
 * command) and answers it itself. A synchronising literal's command is
 * dropped; a non-synchronising literal's bytes and the rest of its command
 * are skipped as after an error. */
void sora_imap_parser_refuse_literal(struct sora_imap_parser *p);

/* True between commands (nothing of a next command read yet). */
bool sora_imap_parser_idle(const struct sora_imap_parser *p);

/* Appends a printable description of a command to out for tests and
 * debug logs: bytes outside printable ASCII, '"' and '\' are escaped, so
 * client bytes can go into a log line. -1 when out is full. */
int sora_imap_command_describe(const struct sora_imap_command *cmd, struct sora_buf *out);

/* Accessors for handlers: true and *value_r when arg has that shape. An
 * astring is an ATOM, NIL (as "NIL"), STRING or in-line LITERAL; an
 * nstring is NIL (*value_r = SORA_STR_NULL), STRING or in-line LITERAL. */
bool sora_imap_arg_atom(const struct sora_imap_arg *arg, struct sora_str *value_r);
bool sora_imap_arg_astring(const struct sora_imap_arg *arg, struct sora_str *value_r);
bool sora_imap_arg_nstring(const struct sora_imap_arg *arg, struct sora_str *value_r);

#endif
