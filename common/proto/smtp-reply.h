/* SMTP / LMTP replies (RFC 5321 4.2, enhanced status codes RFC 2034/3463):
 * formatting for the server and parsing for the LMTP proxy, which reads the
 * backend's replies.
 *
 * Formatting appends to a caller-owned struct sora_buf and never leaves a
 * partial line behind: on failure (buffer cap, bad code) the buffer is as it
 * was. Reply text may contain client bytes (an address in "250 2.1.5 <a@b>
 * OK"): CR, LF, NUL and other control characters in the text are replaced by
 * '?' so a reply can never be split or forged, and a line longer than the
 * 512 octets RFC 5321 4.5.3.1.5 allows is cut at 510 octets before its CRLF.
 *
 * Thread safety: pure functions over caller memory; callable from any thread. */
#ifndef SORA_PROTO_SMTP_REPLY_H
#define SORA_PROTO_SMTP_REPLY_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/core/buf.h"
#include "common/core/str.h"

/* Appends "CODE[-| ][ENH ]TEXT\r\n": '-' if more lines of the same reply
 * follow, ' ' on the last line. enhanced is NULL or "class.subject.detail"
 * whose class must match the first digit of code (so never for 3xx, such as
 * the 354 after DATA, nor, by RFC 2034, for the greeting and LHLO lines).
 * fmt may be NULL for a reply without text. Returns 0, or -1 on a bad code or
 * enhanced code or when the buffer cap is reached. */
int sora_smtp_reply_append(struct sora_buf *out, unsigned code, const char *enhanced,
			   bool more, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
int sora_smtp_reply_vappend(struct sora_buf *out, unsigned code, const char *enhanced,
			    bool more, const char *fmt, va_list ap)
	__attribute__((format(printf, 5, 0)));

/* Appends a whole multi-line reply, one line per entry of lines (n >= 1),
 * each used as literal text (not a format). For the LHLO answer pass the
 * host name first and then the capabilities, with enhanced NULL:
 *   250-mx.example.com / 250-PIPELINING / ... / 250 8BITMIME.
 * Returns 0 or -1 (nothing appended). */
int sora_smtp_reply_lines(struct sora_buf *out, unsigned code, const char *enhanced,
			  const char *const *lines, size_t n);

/* True for "2.1.5"-style codes: class 2, 4 or 5; subject and detail of one
 * to three digits (RFC 3463). */
bool sora_smtp_enhanced_valid(struct sora_str s);

/* One parsed reply line. Strings point into the line. */
struct sora_smtp_reply {
	unsigned code;              /* 200..559 */
	bool last;                  /* "CODE SP" or a bare "CODE": reply complete */
	struct sora_str enhanced;   /* "2.1.5", empty when the text has none */
	struct sora_str text;       /* after the code (and enhanced code + SP) */
};

/* Parses one reply line (CRLF, bare LF or no line ending). A reply is
 * complete at the line with last set; every line of one reply must carry
 * the same code, which the caller checks against the first line. An
 * enhanced code is recognized only if its class matches the reply code.
 * Returns 0, or -1 with *error_r set (static string; error_r may be NULL). */
int sora_smtp_reply_parse(const char *line, size_t len, struct sora_smtp_reply *r,
			  const char **error_r);

#endif
