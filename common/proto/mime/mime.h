/* Streaming MIME / RFC 5322 message parser.
 *
 * A message arrives over LMTP or IMAP APPEND in pieces and may be tens of
 * megabytes; the parser never needs it whole. Feed it the raw message in
 * chunks of any size (sora_mime_parser_feed) and get, at the end
 * (sora_mime_parser_finish), a tree of parts that records where every part's
 * header and body lie in the raw message plus everything IMAP needs to
 * answer FETCH ENVELOPE, BODY, BODYSTRUCTURE and BODY[section] later
 * without reading the message again: Content-* fields, line counts, the
 * envelope of the message and of every encapsulated message/rfc822. The
 * split into chunks never changes the result (tests feed byte by byte).
 *
 * The tree follows Dovecot's message-parser model, which IMAP clients have
 * been tested against for years:
 *  - The root part is the message: its header is the message header, its
 *    body the message body.
 *  - A multipart part (multipart/x with a boundary parameter) has one child
 *    per body part. Its body still covers the preamble and the epilogue.
 *    multipart/x without a boundary is a multipart with no children.
 *  - A message/rfc822 part has exactly one child, the encapsulated message,
 *    whose header starts where the part's body starts. In multipart/digest a
 *    body part without Content-Type is message/rfc822 (RFC 2046 5.1.5).
 *  - A boundary line is "--" + boundary at the start of a line; whatever
 *    follows on the line is ignored, and "--" right after the boundary makes
 *    it the close delimiter, after which the boundary is no longer looked
 *    for. The line ending before a boundary line belongs to the boundary, so
 *    a part ends before it. Lines are matched against every open boundary,
 *    newest first, longest match wins ("abc" vs. "abcd"), also inside the
 *    header of a body part and inside encapsulated messages. A boundary
 *    never found makes the part run to the end of its parent; a missing
 *    close delimiter is fine.
 *  - Content-* fields count only in a MIME part: one with a MIME-Version or
 *    Content-Type field, or any body part of a multipart. Elsewhere the part
 *    is text/plain; charset=us-ascii, 7bit.
 *  - The first Content-Type field wins (and its first boundary parameter);
 *    so does the first of the other Content-* fields, except that a
 *    Content-Disposition without parameters gives way to a later one and
 *    an unparsable Content-Transfer-Encoding or Content-Language to a
 *    later valid one (all as Dovecot does). Boundaries longer than
 *    max_boundary_len are cut to that length.
 *  - Lines end at LF; CRLF and bare LF are both accepted. A bare CR is data.
 *    Sizes are kept both as stored ("size") and as if every bare LF were
 *    CRLF ("vsize"), since IMAP reports CRLF sizes.
 *  - Header lines: "name: value", continued by lines starting with SP or
 *    HTAB. Values are kept unfolded (CR/LF of folds removed, the whitespace
 *    kept). The whitespace after the colon is removed on the first line
 *    only, and of a first line that is all whitespace only one character
 *    (Dovecot's rule: "Date:" CRLF " Mon, ..." keeps its leading space).
 *    Bytes are kept as they are: 8-bit, invalid UTF-8 and NUL included
 *    (pointer + length).
 *
 * Limits (struct sora_mime_params): a part nested deeper than max_depth
 * levels, or any part beyond max_parts, cannot be a container: such a
 * multipart or message/rfc822 part is a leaf (flag SORA_MIME_PART_LIMITED),
 * and once max_parts is reached no more boundaries are recognised, so the
 * rest of the message belongs to the part that is open. Header fields past
 * max_headers per part or max_header_bytes per part are not kept (offsets
 * stay exact); an unfolded field longer than max_field_len is cut before it
 * is interpreted; media types and subtypes are cut at 255 bytes (RFC 6838
 * allows 127); past max_kept_bytes for the whole message, values stop being
 * kept. None of this is an error: every byte sequence parses.
 *
 * Memory: the parser keeps one line's head, the header field being read
 * and the envelope fields (each at most max_field_len), and the result
 * (whose values stop being kept once it reaches max_kept_bytes; the part
 * tree itself is bounded by max_parts); never the message. All
 * strings of a parsed message live in the message's own arena and are
 * freed with it.
 *
 * Ownership and threads: a parser and a message belong to the caller; the
 * struct sora_str and pointers inside a message are borrowed from it and die
 * with sora_mime_message_free(). A parsed message is read-only and may be
 * read from several threads at once; a parser is used by one thread at a
 * time. No function here does I/O. */
#ifndef SORA_PROTO_MIME_H
#define SORA_PROTO_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/core/str.h"

/* Upper bound for max_depth: the JSON form nests two levels per part and
 * its reader (cJSON) accepts 1000. */
#define SORA_MIME_MAX_DEPTH 400

struct sora_mime_params {
	/* Nesting levels including the root; a part on the last level cannot
	 * have children. Default 100 (Dovecot's max_nested_mime_parts); at
	 * most SORA_MIME_MAX_DEPTH, so that the JSON form stays readable. */
	unsigned int max_depth;
	/* All parts including the root. Default 10000. */
	unsigned int max_parts;
	/* Header fields kept per part and their total bytes (names + values).
	 * Defaults 1000 and 64 KiB. */
	unsigned int max_headers;
	size_t max_header_bytes;
	/* Longest unfolded header field interpreted; longer ones are cut.
	 * Default 64 KiB. */
	size_t max_field_len;
	/* RFC 2046 allows 70; real mail sometimes has longer ones. Default 80. */
	size_t max_boundary_len;
	/* Memory the parsed message may take (part tree included): past it,
	 * header fields, Content-* values, parameters and envelopes are no
	 * longer kept (SORA_MIME_MSG_TRUNCATED), while offsets, sizes and the
	 * tree stay exact. Without it a crafted message of tiny header fields
	 * would make a structure ten times its own size. Default 4 MiB. */
	size_t max_kept_bytes;
	/* The root part's header fields are kept (for lookups such as
	 * References or List-Id); with this, those of every part. Default
	 * false. */
	bool keep_all_headers;
};

/* Fills in the defaults described above. */
void sora_mime_params_init(struct sora_mime_params *params);

/* A parameter of Content-Type or Content-Disposition. RFC 2231 sections are
 * merged as Dovecot does: "name*0=a; name*1=b" becomes name = "ab", and if
 * any section was encoded ("name*0*=utf-8''%E2%82%AC") the merged one is
 * "name*" with the still-encoded value "utf-8''%E2%82%AC..."; use
 * sora_mime_param_decode() to get UTF-8. Names are lowercased. */
struct sora_mime_param {
	struct sora_str name;
	struct sora_str value;
};

/* One address of an address list, split the way IMAP's ENVELOPE wants it
 * (RFC 3501 7.4.2). A group is a start marker (mailbox = group name, domain
 * NULL), its members, and an end marker (mailbox and domain NULL). Missing
 * parts of a broken address are filled with "MISSING_MAILBOX",
 * "MISSING_DOMAIN" or "SYNTAX_ERROR" exactly like Dovecot. A NULL p means
 * NIL. */
struct sora_mime_address {
	struct sora_mime_address *next;
	struct sora_str name;     /* display name (quotes removed, encoded words kept) */
	struct sora_str route;    /* obsolete source route "@a,@b" */
	struct sora_str mailbox;  /* local part or group name */
	struct sora_str domain;
	bool invalid;             /* the address had a syntax error */
};

enum sora_mime_env_field {
	SORA_MIME_ENV_DATE = 0,
	SORA_MIME_ENV_SUBJECT,
	SORA_MIME_ENV_FROM,
	SORA_MIME_ENV_SENDER,
	SORA_MIME_ENV_REPLY_TO,
	SORA_MIME_ENV_TO,
	SORA_MIME_ENV_CC,
	SORA_MIME_ENV_BCC,
	SORA_MIME_ENV_IN_REPLY_TO,
	SORA_MIME_ENV_MESSAGE_ID,
	SORA_MIME_ENV_COUNT
};

/* The envelope of a message (the root, or an encapsulated message).
 * raw[] holds the unfolded field values (p NULL when the field is absent).
 * As in Dovecot, Date, Subject, In-Reply-To and Message-ID take the last
 * field of that name, while several From/Sender/Reply-To/To/Cc/Bcc fields
 * all count: their values are kept joined by "\n" (which an unfolded value
 * never contains) and parsed one by one into addr[]. addr[] is NULL for the
 * four string fields and for empty lists. */
struct sora_mime_envelope {
	struct sora_str raw[SORA_MIME_ENV_COUNT];
	struct sora_mime_address *addr[SORA_MIME_ENV_COUNT];
};

struct sora_mime_header {
	struct sora_str name;   /* as written, without trailing whitespace */
	struct sora_str value;  /* unfolded */
};

enum sora_mime_part_flags {
	/* Children are the body parts (possibly none). */
	SORA_MIME_PART_MULTIPART = 1 << 0,
	/* message/rfc822: the only child is the encapsulated message. */
	SORA_MIME_PART_MESSAGE = 1 << 1,
	/* text/ *: IMAP reports the body's line count. */
	SORA_MIME_PART_TEXT = 1 << 2,
	/* A multipart or message/rfc822 kept as a leaf because of max_depth or
	 * max_parts; IMAP shows it as application/octet-stream. */
	SORA_MIME_PART_LIMITED = 1 << 3,
	/* Header fields were dropped by max_headers / max_header_bytes, a
	 * field was cut at max_field_len, or max_kept_bytes dropped values. */
	SORA_MIME_PART_HEADERS_TRUNCATED = 1 << 4,
};

struct sora_mime_part {
	struct sora_mime_part *parent, *children, *next;
	unsigned int flags;        /* enum sora_mime_part_flags */
	unsigned int depth;        /* 0 for the root */
	unsigned int child_count;

	/* Offsets in the raw message: the header starts at header_offset, the
	 * body at header_offset + header_size. The header includes its empty
	 * line. "vsize" counts every bare LF as CRLF. body_lines counts LFs. */
	uint64_t header_offset;
	uint64_t header_size, body_size;
	uint64_t header_vsize, body_vsize;
	uint64_t body_lines;

	/* Content-Type, lowercased; type.p == NULL without a (MIME) field. A
	 * field that does not parse gives "" / "" and no parameters, like
	 * Dovecot; "text" alone gives "text" / "". */
	struct sora_str type, subtype;
	struct sora_mime_param *params;
	unsigned int param_count;

	/* Raw unfolded values, p == NULL when absent. */
	struct sora_str id, description, md5, location;
	/* Content-Transfer-Encoding token, lowercased. */
	struct sora_str encoding;
	/* Content-Disposition type (lowercased) and parameters. */
	struct sora_str disposition;
	struct sora_mime_param *disp_params;
	unsigned int disp_param_count;
	/* Content-Language tags. */
	struct sora_str *languages;
	unsigned int language_count;

	/* For the root part and for encapsulated messages; NULL otherwise. */
	struct sora_mime_envelope *envelope;

	/* Header fields kept for this part (see keep_all_headers). */
	struct sora_mime_header *headers;
	unsigned int header_count;
};

static inline uint64_t sora_mime_part_body_offset(const struct sora_mime_part *part)
{
	return part->header_offset + part->header_size;
}

struct sora_mime_arena;

enum sora_mime_message_flags {
	/* max_depth or max_parts made some container a leaf. */
	SORA_MIME_MSG_LIMITED = 1 << 0,
	/* max_kept_bytes was reached: some values were not kept. */
	SORA_MIME_MSG_TRUNCATED = 1 << 1,
};

struct sora_mime_message {
	struct sora_mime_part *root;
	uint64_t size, vsize;
	unsigned int part_count;
	unsigned int flags;   /* enum sora_mime_message_flags */
	struct sora_mime_arena *arena;  /* owns everything above */
};

struct sora_mime_parser;

/* Returns a new parser, or NULL when out of memory. params may be NULL for
 * the defaults; it is copied. */
struct sora_mime_parser *sora_mime_parser_new(const struct sora_mime_params *params);
/* Feeds the next len bytes of the message. Returns 0, or -1 when out of
 * memory (the parser is then unusable; finish reports the error). */
int sora_mime_parser_feed(struct sora_mime_parser *parser, const void *data, size_t len);
/* Ends the input, frees the parser and clears *parser. On success returns 0
 * and the message (caller frees with sora_mime_message_free); on failure
 * (only out of memory) -1 with *error_r set to a static string. */
int sora_mime_parser_finish(struct sora_mime_parser **parser,
			    struct sora_mime_message **msg_r, const char **error_r);
/* Abandons a parser; *parser may be NULL. Clears *parser. */
void sora_mime_parser_free(struct sora_mime_parser **parser);

/* Parses a message held in memory in one piece. */
int sora_mime_parse(const void *data, size_t len, const struct sora_mime_params *params,
		    struct sora_mime_message **msg_r, const char **error_r);

/* Frees a message; *msg may be NULL. Clears *msg. */
void sora_mime_message_free(struct sora_mime_message **msg);

/* First kept header field called name (case-insensitive) of part; false if
 * there is none. */
bool sora_mime_header_get(const struct sora_mime_part *part, const char *name,
			  struct sora_str *value_r);

/* First parameter called name (case-insensitive), or NULL. */
const struct sora_mime_param *sora_mime_param_find(const struct sora_mime_param *params,
						   unsigned int count, const char *name);

/* The part an IMAP section number path ("1.2.3" is {1, 2, 3}) designates,
 * by RFC 3501 6.4.5: the numbers index the body parts of a multipart; a
 * message that is not multipart has one body part, number 1, which is the
 * message's body itself; after a message/rfc822 part the next number
 * indexes the body parts of the encapsulated message. Returns NULL if there
 * is no such part. path_len 0 gives the root. */
const struct sora_mime_part *sora_mime_part_find(const struct sora_mime_message *msg,
						 const uint32_t *path, unsigned int path_len);

enum sora_mime_section {
	SORA_MIME_SECTION_BODY = 0, /* BODY[1.2] (path_len 0: the whole message) */
	SORA_MIME_SECTION_MIME,     /* BODY[1.2.MIME]: the part's own header */
	SORA_MIME_SECTION_HEADER,   /* BODY[HEADER] / [1.2.HEADER] of a message/rfc822 */
	SORA_MIME_SECTION_TEXT,     /* BODY[TEXT] / [1.2.TEXT] of a message/rfc822 */
};

/* Where a FETCH BODY[section] lies in the raw message. Returns 0 with the
 * range, or -1 if the section does not exist (no such part, MIME of the
 * message itself, HEADER/TEXT of a part that is not message/rfc822). */
int sora_mime_section_range(const struct sora_mime_message *msg,
			    const uint32_t *path, unsigned int path_len,
			    enum sora_mime_section section,
			    uint64_t *offset_r, uint64_t *size_r);

/* A standalone arena for address lists parsed outside a message. */
struct sora_mime_arena *sora_mime_arena_new(void);
void sora_mime_arena_free(struct sora_mime_arena **arena);

/* At most this many addresses (group markers included) are taken from one
 * value: a 64 KiB To field could otherwise expand to 16000 structures. */
#define SORA_MIME_MAX_ADDRESSES 10000

/* Parses an RFC 5322 address-list (one unfolded field value; "\n" separates
 * several fields whose lists are concatenated) into *list_r, allocated from
 * arena. Obsolete syntax, comments, groups and routes are accepted; broken
 * input gives what Dovecot gives. An empty list is NULL; the list stops
 * after SORA_MIME_MAX_ADDRESSES. Returns 0, or -1 when out of memory. */
int sora_mime_address_parse(struct sora_mime_arena *arena, struct sora_str value,
			    struct sora_mime_address **list_r);

#endif
