/* IMAP value syntaxes the command handlers share (pure, no I/O):
 * sequence sets (RFC 9051 §9 sequence-set, RFC 5182 "$"), modified UTF-7
 * mailbox names (RFC 3501 §5.1.3) and UTF-8 validity (UTF8=ACCEPT,
 * RFC 6855 / RFC 9051).
 *
 * Ownership: results go into caller-owned memory (struct sora_buf, or a
 * struct sora_imap_seqset freed with sora_imap_seqset_free()).
 *
 * Thread safety: pure functions, callable from any thread. */
#ifndef SORA_PROTO_IMAP_TYPES_H
#define SORA_PROTO_IMAP_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/core/buf.h"
#include "common/core/str.h"

/* "*" (the largest number in use). 0 is never a valid number, so it can
 * stand for "*" in a range. */
#define SORA_IMAP_SEQ_STAR 0u

struct sora_imap_seq_range {
	/* lo <= hi, with "*" counting as the largest; lo == hi for a single
	 * number. "*:5" is stored as 5:"*". */
	uint32_t lo, hi;
};

struct sora_imap_seqset {
	struct sora_imap_seq_range *ranges;   /* owned, malloc'd */
	size_t count;
	bool last_result;   /* "$": the saved search result (RFC 5182); count 0 */
};

/* Parses a sequence set: nz-number (1..4294967295, no leading zeros),
 * "*", ranges "a:b", comma-separated; or "$" alone when allow_dollar.
 * max_ranges bounds the allocation. Returns 0, or -1 with *error_r (a
 * static sentence) on syntax errors, 0, overflow or too many ranges. */
int sora_imap_seqset_parse(struct sora_str s, bool allow_dollar, size_t max_ranges,
			   struct sora_imap_seqset *set_r, const char **error_r);
void sora_imap_seqset_free(struct sora_imap_seqset *set);
/* Whether n (1-based) is in the set, with "*" meaning star_value. */
bool sora_imap_seqset_contains(const struct sora_imap_seqset *set, uint32_t n, uint32_t star_value);

/* UID and sequence arrays (ascending uint32_t), shared by the session's
 * sequence map and the store: the index of the first element >= x (n when
 * there is none), and the index of x or -1. */
size_t sora_imap_uids_lower_bound(const uint32_t *v, size_t n, uint32_t x);
long sora_imap_uids_find(const uint32_t *v, size_t n, uint32_t x);
/* A range with "*" resolved to star and put in order (lo <= hi). */
void sora_imap_range_resolve(struct sora_imap_seq_range r, uint32_t star, uint32_t *lo_r,
			     uint32_t *hi_r);

/* Modified UTF-7 -> UTF-8, strictly: printable US-ASCII except '&'
 * stands for itself, "&-" is '&', "&...-" is modified BASE64 (',' for '/')
 * of UTF-16BE without padding. Refused: other bytes, unterminated or empty
 * shift sequences, non-zero or surplus padding bits, printable ASCII
 * encoded in BASE64, U+0000, broken surrogate pairs, and two adjacent
 * shift sequences (a canonical encoder merges them). Appends to out;
 * returns 0, or -1 with *error_r (out may hold a partial result). */
int sora_imap_mutf7_to_utf8(struct sora_str in, struct sora_buf *out, const char **error_r);
/* UTF-8 -> modified UTF-7 (canonical). The input must be valid UTF-8
 * without U+0000. Appends to out; 0 or -1 with *error_r. */
int sora_imap_utf8_to_mutf7(struct sora_str in, struct sora_buf *out, const char **error_r);

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF. NUL is valid UTF-8; callers that forbid it check. */
bool sora_imap_utf8_valid(struct sora_str s);

#endif
