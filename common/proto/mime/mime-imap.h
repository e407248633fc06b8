/* IMAP FETCH BODYSTRUCTURE, BODY and ENVELOPE from a parsed message
 * (RFC 3501 7.4.2, RFC 9051 7.5.2).
 *
 * The output follows what Dovecot 2.3 sends, byte for byte except that
 * media types, subtypes, parameter names, disposition types and transfer
 * encodings come out lowercased (they are case-insensitive; Dovecot repeats
 * the message's spelling). Conventions that clients see:
 *  - NIL for absent values; strings quoted with "\"" and "\\" escaped, or
 *    sent as a {n}CRLF literal when they contain CR, LF or 8-bit bytes or
 *    more than four characters to escape. A NUL byte, which IMAP strings
 *    cannot carry, is sent as U+FFFD.
 *  - Defaults "text" "plain", ("charset" "us-ascii") for text parts without
 *    a charset, "7bit"; a multipart without body parts shows one empty
 *    text/plain part; a multipart or message/rfc822 kept as a leaf by the
 *    parser's limits shows as "application" "octet-stream".
 *  - ENVELOPE: Date, In-Reply-To and Message-ID as their raw values with CR
 *    and LF removed (replaced by a space where words would run together);
 *    Subject and display names with whitespace runs collapsed (always a
 *    literal if anything was changed, as Dovecot does);
 *    Sender and Reply-To default to From when absent or empty.
 *
 * Sizes: by default the stored octet counts; with SORA_MIME_IMAP_VSIZE the
 * counts as if bare LFs were CRLF, for servers that send messages with
 * their line endings normalized.
 *
 * Output is appended to a caller-owned sora_buf; functions return 0, or -1
 * when the buffer refuses to grow (its max, or out of memory). Pure and
 * thread-safe on distinct buffers. */
#ifndef SORA_PROTO_MIME_IMAP_H
#define SORA_PROTO_MIME_IMAP_H

#include <stdbool.h>

#include "common/core/buf.h"
#include "common/proto/mime/mime.h"

enum sora_mime_imap_flags {
	SORA_MIME_IMAP_VSIZE = 1 << 0,
};

/* Appends BODYSTRUCTURE (extended = true) or BODY (extended = false) of the
 * whole message: the parenthesized body, e.g.
 * ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1 NIL NIL NIL NIL). */
int sora_mime_imap_bodystructure(const struct sora_mime_message *msg, bool extended,
				 unsigned int flags, struct sora_buf *out);
/* The same for one part (as if it were a message's top part). */
int sora_mime_imap_part_bodystructure(const struct sora_mime_part *part, bool extended,
				      unsigned int flags, struct sora_buf *out);

/* Appends the parenthesized ENVELOPE; env may be NULL (all NIL). */
int sora_mime_imap_envelope(const struct sora_mime_envelope *env, struct sora_buf *out);

/* IMAP string helpers shared with the IMAP server code. s.p == NULL gives
 * NIL. nolf removes CR and LF first (a space replaces one that is followed
 * by anything but whitespace). */
int sora_mime_imap_append_nstring(struct sora_buf *out, struct sora_str s, bool nolf);
/* Collapses whitespace and trims, as for ENVELOPE subjects and names. */
int sora_mime_imap_append_for_humans(struct sora_buf *out, struct sora_str s);

#endif
