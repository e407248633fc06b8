/* Line framing and POP3 command lines (pure, no I/O).
 *
 * POP3 commands have a simple shape: "COMMAND [SP arguments]". IMAP is not
 * split by lines here: its literals make line framing wrong, so it goes
 * through the IMAP command parser (imap-parser.h).
 * Results point into the caller's line (borrowed).
 *
 * Thread safety: pure functions. */
#ifndef SORA_PROTO_CMDLINE_H
#define SORA_PROTO_CMDLINE_H

#include "common/core/str.h"

/* Finds the end of the first line in data: returns the line length without
 * its CRLF (or bare LF) and sets *consumed_r to the bytes including the line
 * ending; returns -1 if no complete line is there yet. */
long sora_line_find(const char *data, size_t len, size_t *consumed_r);

struct sora_pop3_cmdline {
	struct sora_str command;
	struct sora_str args;
};

/* POP3 keywords are 3-4 printable characters (RFC 1939 §3; we allow up
 * to 40 for extensions). -1 with *error_r on anything else. */
int sora_pop3_cmdline_parse(struct sora_str line, struct sora_pop3_cmdline *out,
			    const char **error_r);

#endif
