/* FETCH attributes (RFC 3501 §6.4.5, RFC 9051 §6.4.5, RFC 3516 BINARY,
 * RFC 7162 CONDSTORE/QRESYNC modifiers): the parsed form of the arguments
 * that follow the sequence set of FETCH / UID FETCH. Pure: no I/O.
 *
 * Argument shapes come from the command parser (imap-parser.h), which
 * treats '[', ']' and '<' as atom characters, so
 *   BODY.PEEK[1.2]<0.100>                 is one atom,
 *   BODY[HEADER.FIELDS (From To)]<5.10>   is the atom "BODY[HEADER.FIELDS",
 *                                          the list (From To) and the atom
 *                                          "]<5.10>".
 * This module reassembles such sequences, both as the single attribute and
 * inside a parenthesised list of attributes.
 *
 * Macros: ALL = (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE), FAST = (FLAGS
 * INTERNALDATE RFC822.SIZE), FULL = ALL + BODY. UID FETCH always includes
 * UID; CHANGEDSINCE implies MODSEQ (RFC 7162 §3.1.4.1).
 *
 * Ownership: a spec owns everything it points to; free it with
 * sora_imap_fetch_spec_free(), which also accepts a zeroed or partly filled
 * spec. Thread safety: pure functions. */
#ifndef SORA_PROTO_IMAP_FETCH_H
#define SORA_PROTO_IMAP_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/proto/imap-parser.h"

/* Deepest section number path accepted ("1.2.3...."). */
#define SORA_IMAP_SECTION_DEPTH_MAX 32
/* Most body sections in one FETCH. */
#define SORA_IMAP_FETCH_SECTIONS_MAX 64
/* Most header field names in one HEADER.FIELDS list. */
#define SORA_IMAP_FETCH_FIELDS_MAX 256

/* Non-section items, as bits of sora_imap_fetch_spec.items. */
enum sora_imap_fetch_item {
	SORA_FETCH_UID           = 1u << 0,
	SORA_FETCH_FLAGS         = 1u << 1,
	SORA_FETCH_INTERNALDATE  = 1u << 2,
	SORA_FETCH_RFC822_SIZE   = 1u << 3,
	SORA_FETCH_ENVELOPE      = 1u << 4,
	SORA_FETCH_BODY          = 1u << 5,   /* BODY without a section */
	SORA_FETCH_BODYSTRUCTURE = 1u << 6,
	SORA_FETCH_MODSEQ        = 1u << 7,   /* CONDSTORE */
	SORA_FETCH_SAVEDATE      = 1u << 8,   /* reserved, never set: not advertised */
};

/* What a body item returns. */
enum sora_imap_fetch_kind {
	SORA_FETCH_KIND_BODY = 0,     /* BODY[...] / BODY.PEEK[...] */
	SORA_FETCH_KIND_BINARY,       /* BINARY[...] / BINARY.PEEK[...] (decoded CTE) */
	SORA_FETCH_KIND_BINARY_SIZE,  /* BINARY.SIZE[...] */
	SORA_FETCH_KIND_RFC822,       /* RFC822        = BODY[]        (named RFC822) */
	SORA_FETCH_KIND_RFC822_HEADER,/* RFC822.HEADER = BODY.PEEK[HEADER] */
	SORA_FETCH_KIND_RFC822_TEXT,  /* RFC822.TEXT   = BODY[TEXT] */
};

/* The part of the addressed part (after the number path). */
enum sora_imap_fetch_part {
	SORA_FETCH_PART_ALL = 0,         /* BODY[] / BODY[1.2]: the part's content */
	SORA_FETCH_PART_HEADER,          /* HEADER */
	SORA_FETCH_PART_HEADER_FIELDS,   /* HEADER.FIELDS (...) */
	SORA_FETCH_PART_HEADER_FIELDS_NOT,
	SORA_FETCH_PART_TEXT,            /* TEXT */
	SORA_FETCH_PART_MIME,            /* MIME (needs a number path) */
};

struct sora_imap_fetch_section {
	enum sora_imap_fetch_kind kind;
	bool peek;                        /* .PEEK: does not set \Seen */
	uint32_t path[SORA_IMAP_SECTION_DEPTH_MAX];
	unsigned int path_len;            /* 0: the whole message */
	enum sora_imap_fetch_part part;
	/* HEADER.FIELDS[.NOT] names, as sent (ASCII, compare case-insensitively);
	 * owned. */
	char **fields;
	size_t field_count;
	bool partial;                     /* <offset.length> was given */
	uint64_t partial_offset;
	uint64_t partial_length;          /* > 0 */
	/* The item name for the response, without the partial length:
	 * "BODY[1.2]", "BODY[HEADER.FIELDS (FROM TO)]", "BINARY[1]", "RFC822",
	 * "BINARY.SIZE[1]". A partial fetch's reply adds "<offset>" itself.
	 * Field names are upper-cased here, as Dovecot answers. Owned. */
	char *name;
};

struct sora_imap_fetch_spec {
	unsigned int items;               /* enum sora_imap_fetch_item bits */
	struct sora_imap_fetch_section *sections;   /* owned array */
	size_t section_count;
	/* A section without .PEEK (or RFC822 / RFC822.TEXT): the server sets
	 * \Seen on the fetched messages (RFC 3501 §6.4.5). */
	bool sets_seen;
	/* Some item needs the body bytes (not just stored metadata). */
	bool needs_body;
	/* FETCH modifiers (RFC 7162): CHANGEDSINCE <modseq> and VANISHED. */
	bool changedsince_set;
	uint64_t changedsince;
	bool vanished;
};

/* Parses the attribute argument(s) and the optional modifier list of
 * FETCH: args[0..count) are what follows the sequence set. uid_command adds
 * UID and allows VANISHED (which also requires CHANGEDSINCE, RFC 7162
 * §3.2.6). Returns 0, or -1 with *error_r (a static sentence for a BAD
 * reply) and spec freed. */
int sora_imap_fetch_parse(const struct sora_imap_arg *args, size_t count, bool uid_command,
			  struct sora_imap_fetch_spec *spec_r, const char **error_r);
void sora_imap_fetch_spec_free(struct sora_imap_fetch_spec *spec);

#endif
