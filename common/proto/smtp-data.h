/* Streaming decoder for the SMTP / LMTP DATA phase (RFC 5321 4.1.1.4 and
 * 4.5.2): removes dot-stuffing, finds the end-of-data marker and enforces the
 * message size limit while the bytes arrive, in the style of nginx's and
 * Dovecot's DATA readers.
 *
 * Feed it whatever the socket delivered after the 354 reply, in chunks of
 * any size. It passes the message bytes to a sink and stops right after the
 * terminating "<CRLF>.<CRLF>"; *consumed_r then says how much of the last
 * chunk belonged to the message, and everything after it is the next
 * (pipelined) command, which the caller keeps. The split of the input into
 * chunks never changes the output, the consumed counts or the flags: the few
 * bytes that cannot be judged yet at a chunk's end ("\r", "\r\n.", "\r\n.\r")
 * are kept as state, not copied.
 *
 * Line endings (RFC 5321 2.3.8), decided here for the whole code base:
 *  - CRLF ends a line. Only CRLF-ended lines take part in the dot protocol:
 *    the end of data is exactly CRLF "." CRLF (or "." CRLF as the very first
 *    line: an empty message), and a leading dot is removed only on a line
 *    that follows a CRLF (or starts the data). A line of a single "."
 *    followed by anything but CRLF is an ordinary stuffed line and loses its
 *    dot, as RFC 5321 4.5.2 says for any line starting with a dot.
 *  - A bare LF is accepted as a line end and written out as CRLF, because
 *    the stored message must be CRLF; it sets saw_bare_lf. It does not start
 *    a dot-protocol line, so "\n.\n", "\r\n.\n" and "\n.\r\n" never end the
 *    data and a dot after a bare LF is kept. This is the rule Postfix's
 *    smtpd_forbid_bare_newline=normalize applies since the 2023 "SMTP
 *    smuggling" reports: a sender that uses CRLF only (every conforming one,
 *    Postfix's LMTP client included) never dot-stuffs after a bare LF, so
 *    treating "<LF>.<CR><LF>" as the end would let a message's body smuggle
 *    a second transaction. The price is that a client sending LF-only lines
 *    never ends its DATA and runs into the session's timeout.
 *  - A bare CR (not followed by LF) is message data: passed through
 *    unchanged, never a line end, never part of the terminator; it sets
 *    saw_bare_cr.
 *  - NUL and 8-bit bytes pass through; saw_nul / saw_8bit report them (a
 *    BODY=7BIT violation is informational only).
 *
 * Size limit: size counts the octets the decoder produces (unstuffed,
 * CRLF-normalized), which is what gets stored. A message of exactly
 * max_size octets is accepted. Once the output goes past it, too_big is set,
 * the sink has received exactly the first max_size octets (whatever the
 * chunking) and is not called again, but the input is still consumed up to
 * the terminator so the session stays in step and the server can answer
 * 552 5.3.4 for this transaction only. size keeps counting (saturating) past
 * the limit, for the log line.
 *
 * A sink error (negative return) is handled the same way: sink_failed is set
 * (with the value in sink_error), the sink is not called again, the rest of
 * the message is consumed, and the server answers 451 4.3.0.
 *
 * Lines longer than RFC 5321's 1000 octets (998 plus CRLF) are accepted and
 * passed through whole; long_lines counts them and max_line_len reports the
 * longest, both counted in output octets without the CRLF.
 *
 * Ownership: the decoder holds no memory and no pointers between calls; the
 * caller owns the struct. Thread safety: one decoder belongs to one thread
 * at a time; the functions are pure apart from calling the sink. */
#ifndef SORA_PROTO_SMTP_DATA_H
#define SORA_PROTO_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/core/buf.h"

/* RFC 5321 4.5.3.1.6: text line without its CRLF. */
#define SORA_SMTP_DATA_LINE_MAX 998

enum sora_smtp_data_status {
	SORA_SMTP_DATA_MORE = 0,  /* all input consumed, terminator not seen */
	SORA_SMTP_DATA_DONE = 1,  /* terminator seen; see *consumed_r */
};

/* Receives message bytes; data is only valid during the call. Returns 0, or
 * a negative value to stop output (see sink_failed). */
typedef int sora_smtp_data_sink_cb(void *ctx, const char *data, size_t len);

struct sora_smtp_data {
	/* Setting: 0 means no limit. */
	uint64_t max_size;

	/* Results, valid at any time; final once done is set. */
	uint64_t size;          /* output octets, saturating at UINT64_MAX */
	uint64_t lines;         /* completed lines */
	uint64_t long_lines;    /* lines over SORA_SMTP_DATA_LINE_MAX */
	uint64_t max_line_len;
	bool done;
	bool too_big;
	bool sink_failed;
	int sink_error;         /* the sink's first negative return */
	bool saw_8bit;
	bool saw_nul;
	bool saw_bare_lf;
	bool saw_bare_cr;

	/* Private state. */
	int state;
	uint64_t line_len;
};

void sora_smtp_data_init(struct sora_smtp_data *d, uint64_t max_size);

/* Consumes input. sink may be NULL to only find the end (the LMTP proxy
 * relays the raw bytes and needs no output). Returns SORA_SMTP_DATA_MORE
 * with *consumed_r == len, or SORA_SMTP_DATA_DONE with *consumed_r the
 * number of bytes up to and including the terminator. Once done, further
 * calls consume nothing and return DONE; call sora_smtp_data_init() for the
 * next transaction. */
enum sora_smtp_data_status
sora_smtp_data_feed(struct sora_smtp_data *d, const char *in, size_t len,
		    size_t *consumed_r, sora_smtp_data_sink_cb *sink, void *ctx);

/* Same, appending the output to out (whose cap, if reached, counts as a
 * sink failure). */
enum sora_smtp_data_status
sora_smtp_data_feed_buf(struct sora_smtp_data *d, const char *in, size_t len,
			size_t *consumed_r, struct sora_buf *out);

/* True once done without too_big or sink_failed: the message can be
 * delivered. */
static inline bool sora_smtp_data_ok(const struct sora_smtp_data *d)
{
	return d->done && !d->too_big && !d->sink_failed;
}

#endif
