/* SEARCH programs (RFC 3501 §6.4.4, RFC 9051 §6.4.4, RFC 4731 ESEARCH
 * return options, RFC 5182 SEARCHRES "$", RFC 5032 WITHIN, RFC 7162
 * MODSEQ, RFC 5267 CONTEXT=SEARCH return options): the parsed form of the arguments of SEARCH / UID SEARCH. Pure:
 * no I/O. The store turns a program into SQL (backend/store/search.h).
 *
 * Grammar accepted: [RETURN (opts)] [CHARSET name] key+, keys ANDed.
 * Every RFC 3501 key (ALL ANSWERED BCC BEFORE BODY CC DELETED DRAFT FLAGGED
 * FROM HEADER KEYWORD LARGER NEW NOT OLD ON OR RECENT SEEN SENTBEFORE SENTON
 * SENTSINCE SINCE SMALLER SUBJECT TEXT TO UID UNANSWERED UNDELETED UNDRAFT
 * UNFLAGGED UNKEYWORD UNSEEN, a sequence set, a parenthesised list), WITHIN's
 * OLDER/YOUNGER, MODSEQ [entry-name entry-type] n, and "$" as a sequence
 * set or UID set. Key names are case-insensitive. Dates are RFC 3501
 * date ("1-Feb-1994", optionally quoted); they are stored as the day number
 * (days since 1970-01-01), since date keys ignore time and zone.
 *
 * Charsets: US-ASCII and UTF-8 (any case) are accepted; any other gives
 * SORA_IMAP_SEARCH_BADCHARSET (the session answers
 * "NO [BADCHARSET (US-ASCII UTF-8)]"). String arguments must then be valid
 * UTF-8 (US-ASCII: 7-bit).
 *
 * Limits: nesting deeper than SORA_IMAP_SEARCH_DEPTH_MAX or more than
 * SORA_IMAP_SEARCH_KEYS_MAX keys is a syntax error (a BAD).
 *
 * Ownership: a program owns every string, set and child it holds; free it
 * with sora_imap_search_free(), which accepts a zeroed or partly filled
 * program. Thread safety: pure functions. */
#ifndef SORA_PROTO_IMAP_SEARCH_H
#define SORA_PROTO_IMAP_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/proto/imap-parser.h"
#include "common/proto/imap-types.h"

#define SORA_IMAP_SEARCH_DEPTH_MAX 32
#define SORA_IMAP_SEARCH_KEYS_MAX 1000

enum sora_imap_search_type {
	SORA_SEARCH_AND = 1,      /* children: all must match ("(...)", the top level) */
	SORA_SEARCH_OR,           /* exactly 2 children */
	SORA_SEARCH_NOT,          /* exactly 1 child */
	SORA_SEARCH_ALL,
	SORA_SEARCH_SEQSET,       /* set: message sequence numbers */
	SORA_SEARCH_UIDSET,       /* set: UIDs */
	/* flags: flag holds the system flag bit (SORA_IMAP_FLAG_*) */
	SORA_SEARCH_FLAG,         /* ANSWERED DELETED DRAFT FLAGGED SEEN */
	SORA_SEARCH_UNFLAG,       /* UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNSEEN */
	SORA_SEARCH_KEYWORD,      /* str: the keyword */
	SORA_SEARCH_UNKEYWORD,
	SORA_SEARCH_NEW,          /* RECENT and UNSEEN */
	SORA_SEARCH_OLD,          /* NOT RECENT */
	SORA_SEARCH_RECENT,
	/* dates: number = day number (UTC days since the epoch); a date
	 * before 1970 is a negative day number stored as its two's
	 * complement, so read dates back as (int64_t)number */
	SORA_SEARCH_BEFORE,       /* internal date */
	SORA_SEARCH_ON,
	SORA_SEARCH_SINCE,
	SORA_SEARCH_SENTBEFORE,   /* Date: header */
	SORA_SEARCH_SENTON,
	SORA_SEARCH_SENTSINCE,
	/* WITHIN: number = seconds */
	SORA_SEARCH_OLDER,
	SORA_SEARCH_YOUNGER,
	/* sizes: number = octets */
	SORA_SEARCH_LARGER,
	SORA_SEARCH_SMALLER,
	/* strings: str (substring, case-insensitive) */
	SORA_SEARCH_BCC,
	SORA_SEARCH_CC,
	SORA_SEARCH_FROM,
	SORA_SEARCH_TO,
	SORA_SEARCH_SUBJECT,
	SORA_SEARCH_BODY,
	SORA_SEARCH_TEXT,
	SORA_SEARCH_HEADER,       /* header: field name; str: value ("" = has the field) */
	/* CONDSTORE: number = modseq */
	SORA_SEARCH_MODSEQ,
};

/* System flags as stored in messages.flags (migration 0001). */
#define SORA_IMAP_FLAG_SEEN     1u
#define SORA_IMAP_FLAG_ANSWERED 2u
#define SORA_IMAP_FLAG_FLAGGED  4u
#define SORA_IMAP_FLAG_DELETED  8u
#define SORA_IMAP_FLAG_DRAFT    16u

struct sora_imap_search_key {
	enum sora_imap_search_type type;
	unsigned int flag;                 /* FLAG / UNFLAG */
	uint64_t number;                   /* dates, sizes, seconds, modseq */
	char *header;                      /* HEADER field name, owned, NUL-terminated */
	char *str;                         /* owned, NUL-free, NUL-terminated UTF-8 */
	struct sora_imap_seqset set;       /* SEQSET / UIDSET (set.last_result for "$") */
	struct sora_imap_search_key *children;  /* owned array */
	size_t child_count;
};

/* ESEARCH RETURN options (RFC 4731, RFC 5182 SAVE, RFC 5267 §4 UPDATE,
 * CONTEXT and PARTIAL). */
enum sora_imap_search_return {
	SORA_SEARCH_RETURN_MIN     = 1u << 0,
	SORA_SEARCH_RETURN_MAX     = 1u << 1,
	SORA_SEARCH_RETURN_ALL     = 1u << 2,
	SORA_SEARCH_RETURN_COUNT   = 1u << 3,
	SORA_SEARCH_RETURN_SAVE    = 1u << 4,
	SORA_SEARCH_RETURN_UPDATE  = 1u << 5,   /* keep the result updated (ADDTO/REMOVEFROM) */
	SORA_SEARCH_RETURN_CONTEXT = 1u << 6,   /* a hint only */
	SORA_SEARCH_RETURN_PARTIAL = 1u << 7,   /* partial_lo..partial_hi of the result */
};

struct sora_imap_search_program {
	struct sora_imap_search_key root;  /* type AND */
	/* RETURN (...) was given: answer with ESEARCH. "RETURN ()" means ALL. */
	bool esearch;
	unsigned int return_opts;          /* enum sora_imap_search_return bits */
	/* RETURN (PARTIAL lo:hi): 1-based positions in the result,
	 * lo <= hi ("4:2" is stored as 2..4); 0 without PARTIAL. */
	uint32_t partial_lo, partial_hi;
	/* Some key is MODSEQ: the reply carries "(MODSEQ n)" (RFC 7162 §3.1.5). */
	bool has_modseq;
	/* Some key uses "$" (the saved result). */
	bool uses_saved;
};

enum sora_imap_search_error {
	SORA_IMAP_SEARCH_SYNTAX = -1,      /* BAD with *error_r */
	SORA_IMAP_SEARCH_BADCHARSET = -2,  /* NO [BADCHARSET (US-ASCII UTF-8)] */
};

/* Parses args[0..count) (everything after "SEARCH"). allow_return: the
 * session advertises ESEARCH and CONTEXT=SEARCH (RETURN is a syntax error
 * otherwise). RETURN options (RFC 4731, RFC 5267 §4): MIN MAX ALL COUNT
 * SAVE UPDATE CONTEXT and "PARTIAL lo:hi" (two nz-numbers, no "*"); at
 * most one of ALL and PARTIAL (RFC 5267 §4.4); an option given twice is
 * the same as once, except PARTIAL (a syntax error). "RETURN ()" is
 * ALL.
 * uid_command: a bare "$" or sequence set still means sequence numbers
 * (only the UID key takes UIDs), but it is recorded for the reply form.
 * Returns 0, or a negative enum sora_imap_search_error with *error_r (a
 * static sentence) and the program freed. */
int sora_imap_search_parse(const struct sora_imap_arg *args, size_t count, bool allow_return,
			   struct sora_imap_search_program *prog_r, const char **error_r);
void sora_imap_search_free(struct sora_imap_search_program *prog);

/* ---- SORT (RFC 5256), ESORT (RFC 5267 §3), SORT=DISPLAY (RFC 5957) ----
 *
 * Grammar accepted: [RETURN (opts)] (sort-criteria) charset key+, where
 * sort-criteria is one or more [REVERSE] sort-key and the charset is
 * required (US-ASCII or UTF-8, as for SEARCH). The search part is a
 * SEARCH program in .search; its esearch/return_opts carry ESORT's
 * RETURN (MIN MAX ALL COUNT SAVE; UPDATE, CONTEXT and PARTIAL, which
 * belong to CONTEXT=SORT, are a syntax error). */
enum sora_imap_sort_key {
	SORA_SORT_ARRIVAL = 1,    /* INTERNALDATE */
	SORA_SORT_CC,             /* addr-mailbox of the first Cc address */
	SORA_SORT_DATE,           /* Date: header, else INTERNALDATE */
	SORA_SORT_FROM,
	SORA_SORT_SIZE,           /* RFC822.SIZE */
	SORA_SORT_SUBJECT,        /* base subject */
	SORA_SORT_TO,
	SORA_SORT_DISPLAYFROM,    /* RFC 5957 */
	SORA_SORT_DISPLAYTO,
};

/* More criteria than this is a syntax error (there are nine keys; a
 * longer list only repeats them). */
#define SORA_IMAP_SORT_CRITERIA_MAX 16

struct sora_imap_sort_criterion {
	enum sora_imap_sort_key key;
	bool reverse;
};

struct sora_imap_sort_program {
	struct sora_imap_sort_criterion criteria[SORA_IMAP_SORT_CRITERIA_MAX];
	size_t count;                          /* >= 1 */
	struct sora_imap_search_program search;
};

/* Flags of sora_imap_sort_parse(). */
#define SORA_IMAP_SORT_ALLOW_RETURN  1u    /* ESORT advertised */
#define SORA_IMAP_SORT_ALLOW_DISPLAY 2u    /* SORT=DISPLAY advertised */

/* Parses args[0..count) (everything after "SORT"). Returns 0, or a
 * negative enum sora_imap_search_error with *error_r (a static sentence)
 * and the program freed. */
int sora_imap_sort_parse(const struct sora_imap_arg *args, size_t count, unsigned int flags,
			 struct sora_imap_sort_program *prog_r, const char **error_r);
void sora_imap_sort_free(struct sora_imap_sort_program *prog);

/* Parses an RFC 3501 date ("1-Feb-1994", day 1-2 digits, month
 * case-insensitive) into a day number. 0 or -1. Exposed for APPEND's
 * neighbours and tests. */
int sora_imap_date_parse(struct sora_str s, int64_t *day_r);

#endif
