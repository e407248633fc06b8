/* Decoding of header text for SEARCH, SORT and display: RFC 2047 encoded
 * words, RFC 2231 parameter values, and a few charsets to UTF-8.
 *
 * Supported charsets: UTF-8, US-ASCII, ISO-8859-1, ISO-8859-15 and
 * Windows-1252 (with the usual aliases), which cover most mail that is not
 * already UTF-8. Text in any other charset is left as it was (an encoded
 * word stays encoded), so nothing is silently turned into garbage.
 *
 * Output is appended to a caller-owned sora_buf; functions return 0 (or 1
 * where documented), or -1 when the buffer refuses to grow. Pure and
 * thread-safe on distinct buffers. */
#ifndef SORA_PROTO_MIME_DECODE_H
#define SORA_PROTO_MIME_DECODE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/core/buf.h"
#include "common/proto/mime/mime.h"

enum sora_mime_decode_flags {
	/* Replace invalid UTF-8 (also in text that was not encoded) with
	 * U+FFFD, for consumers that require valid UTF-8 (PostgreSQL text). */
	SORA_MIME_DECODE_VALID_UTF8 = 1 << 0,
};

/* Decodes the encoded words (=?charset?B|Q?text?=, also with a "*lang"
 * suffix on the charset) of an unstructured field value or a display name.
 * Whitespace between two encoded words is dropped (RFC 2047 6.2); all other
 * text is copied unchanged. */
int sora_mime_decode_header(struct sora_str in, unsigned int flags, struct sora_buf *out);

/* Converts text in charset to UTF-8. Returns 0, 1 if the charset is not
 * supported (nothing appended), or -1. */
int sora_mime_charset_to_utf8(struct sora_str charset, const void *in, size_t len,
			      struct sora_buf *out);
/* True if sora_mime_charset_to_utf8() changes the bytes of text in
 * charset: false for UTF-8 and US-ASCII (passed on as they are) and for
 * charsets it does not support. */
bool sora_mime_charset_converts(struct sora_str charset);

/* The decoded value of parameter name: an RFC 2231 "name*" value
 * (charset'language'%XX) is preferred, otherwise "name", whose encoded
 * words (a common non-standard practice) are decoded. Returns 1 and the
 * UTF-8 text, 0 if there is no such parameter, or -1. */
int sora_mime_param_decode(const struct sora_mime_param *params, unsigned int count,
			   const char *name, unsigned int flags, struct sora_buf *out);

/* The part's file name: Content-Disposition's filename, else
 * Content-Type's name, decoded. Returns 1, 0 (none) or -1. */
int sora_mime_part_filename(const struct sora_mime_part *part, unsigned int flags,
			    struct sora_buf *out);

/* Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, <= U+10FFFF). */
bool sora_mime_utf8_valid(const void *p, size_t len);

/* The value of a base64 alphabet character (RFC 4648 §4), or -1. */
int sora_mime_b64_value(unsigned char c);

#endif
