/* What the store keeps about a message besides its body: the values of the
 * messages row that IMAP SEARCH, SORT and FETCH read without opening the
 * blob, and the searchable text of message_contents (schema 0001).
 *
 * Everything is derived once, at delivery or APPEND, from the parsed MIME
 * tree (common/proto/mime/mime.h). The semantics of each column:
 *  - subject, from_text, to_text, cc_text, bcc_text: the header values with
 *    RFC 2047 encoded words decoded to UTF-8 (several From/To/... fields
 *    joined by "\n"), for SEARCH SUBJECT/FROM/TO/CC/BCC substring matches;
 *  - message_id, in_reply_to, references_hdr: the raw unfolded values;
 *  - sent_date: the Date header as an instant (NULL if it does not parse
 *    or lies outside the years 1..9999), and sent_tz its zone, so SEARCH
 *    SENTBEFORE/SENTON/SENTSINCE compare the date as the sender wrote it
 *    (RFC 3501: "disregarding time and timezone");
 *  - from_text, to_text, cc_text and bcc_text also hold the addresses in
 *    normalised form ("Name <local@domain>", one per line after the
 *    decoded value), so SEARCH FROM finds "user@domain" however the
 *    header spelled it (comments, routes, quoting);
 *  - sort_subject: the RFC 5256 base subject (not case-folded: SORT compares
 *    it with a case-insensitive collation);
 *  - sort_from/sort_to/sort_cc: the addr-mailbox (local part) of the first
 *    address (RFC 5256 2.2);
 *  - sort_display_from/sort_display_to: RFC 5957 DISPLAY, the decoded
 *    display name of the first address, else its addr-spec;
 *  - text_body: the decoded text of every text/ * leaf part (transfer
 *    encoding undone, charset converted to UTF-8), parts separated by "\n",
 *    at most SORA_MSG_TEXT_MAX bytes, for SEARCH BODY/TEXT.
 * All strings are valid UTF-8 without NUL bytes (PostgreSQL text cannot
 * hold anything else): invalid sequences and NULs become U+FFFD.
 *
 * Ownership: a struct sora_msg_meta owns its buffers; free it with
 * sora_msg_meta_free(). Thread safety: pure functions over caller memory
 * (the text extraction reads the body through the caller's callback). */
#ifndef SORA_STORE_MSG_META_H
#define SORA_STORE_MSG_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/core/buf.h"
#include "common/core/str.h"
#include "common/proto/mime/mime.h"

/* Most bytes of searchable text kept per message. Longer texts are cut at a
 * UTF-8 character boundary; SEARCH BODY then does not see the rest. */
#define SORA_MSG_TEXT_MAX (1024 * 1024)
/* Most bytes kept of any one header-derived column. */
#define SORA_MSG_FIELD_MAX (64 * 1024)

struct sora_msg_meta {
	bool has_sent_date;
	int64_t sent_date;      /* seconds since the epoch, UTC */
	int sent_tz_min;        /* the Date header's zone, minutes east of UTC */

	struct sora_buf subject;
	struct sora_buf message_id;
	struct sora_buf in_reply_to;
	struct sora_buf references;
	struct sora_buf from_text, to_text, cc_text, bcc_text;
	struct sora_buf sort_subject;
	struct sora_buf sort_from, sort_to, sort_cc;
	struct sora_buf sort_display_from, sort_display_to;
	struct sora_buf text_body;
};

void sora_msg_meta_init(struct sora_msg_meta *meta);
void sora_msg_meta_free(struct sora_msg_meta *meta);

/* Fills every header-derived field from the root part of msg. Returns 0, or
 * -1 when out of memory. */
int sora_msg_meta_headers(const struct sora_mime_message *msg, struct sora_msg_meta *meta);

/* Reads up to len bytes of the raw message at offset into buf; returns the
 * number read (short only at the end of the message) or -1 on error. */
typedef ssize_t sora_msg_read_cb(void *ctx, uint64_t offset, void *buf, size_t len);

/* Fills meta->text_body from the text parts of msg, reading their bodies
 * through read_cb. Returns 0, or -1 when reading failed or memory ran out. */
int sora_msg_meta_text(const struct sora_mime_message *msg, sora_msg_read_cb *read_cb,
		       void *ctx, struct sora_msg_meta *meta);

/* ---- the pieces, exposed for tests and other modules ---- */

/* Parses an RFC 5322 date-time, obsolete forms included (two- and
 * three-digit years, missing seconds or day of week, zone names such as
 * "GMT" or "EST", comments). A missing or unknown zone counts as UTC.
 * Returns 0 with the instant and the header's UTC offset, or -1. */
int sora_msg_date_parse(struct sora_str s, int64_t *t_r, int *tz_min_r);

/* Appends the RFC 5256 base subject of subject (already decoded to UTF-8).
 * Returns 0 or -1 (buffer limit). */
int sora_msg_base_subject(struct sora_str subject, struct sora_buf *out);

/* Appends s with invalid UTF-8 and NUL bytes replaced by U+FFFD. Returns 0
 * or -1 (buffer limit). */
int sora_msg_utf8_clean(struct sora_str s, struct sora_buf *out);

/* Streaming Content-Transfer-Encoding decoder (RFC 2045 6): base64 and
 * quoted-printable are decoded, anything else (7bit, 8bit, binary, unknown)
 * is passed through. Bad input is decoded leniently, as mail readers do:
 * base64 ignores characters outside its alphabet, quoted-printable keeps an
 * "=" that does not start a valid escape. The split into chunks never
 * changes the output. */
enum sora_msg_cte {
	SORA_MSG_CTE_IDENTITY = 0,
	SORA_MSG_CTE_BASE64,
	SORA_MSG_CTE_QP,
};

struct sora_msg_cte_decoder {
	enum sora_msg_cte cte;
	/* Private state. */
	uint32_t bits;
	int nbits;
	bool b64_end;
	int qp_state;
	char pend[3];
	size_t npend;
	/* quoted-printable: white space not yet known to be trailing (RFC
	 * 2045 6.7 rule 3 drops it before a line break). */
	char ws[64];
	size_t nws;
};

/* encoding: the lowercased token from the part (p == NULL for none). */
void sora_msg_cte_init(struct sora_msg_cte_decoder *d, struct sora_str encoding);
int sora_msg_cte_feed(struct sora_msg_cte_decoder *d, const void *in, size_t len,
		      struct sora_buf *out);
/* Flushes what is pending at the end of the input. */
int sora_msg_cte_finish(struct sora_msg_cte_decoder *d, struct sora_buf *out);

/* Moves every offset of a message parsed without a prefix as if prefix_len
 * bytes of complete header lines (CRLF-terminated) had been prepended to
 * it: the root header grows, every other part moves. Parsing the prefixed
 * message gives the same offsets and sizes, so a message is parsed once
 * and delivered with a different trace header per recipient. Call again
 * with the difference to change the prefix. */
void sora_msg_mime_shift(struct sora_mime_message *msg, int64_t delta);

#endif
