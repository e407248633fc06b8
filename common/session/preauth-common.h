/* What the IMAP and POP3 pre-authentication front ends share: one session
 * shape (an error counter), line framing with a length limit, invalid-command
 * counting against max_errors, and the "too many connections" and farewell
 * replies, which differ only in their prefix and response code.
 *
 * Internal to common/session. Loop thread only. */
#ifndef SORA_SESSION_PREAUTH_COMMON_H
#define SORA_SESSION_PREAUTH_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "common/core/str.h"
#include "common/net/conn.h"

struct sora_preauth_style {
	const char *bye;          /* "* BYE" / "-ERR": a reply that ends the session */
	const char *temp_code;    /* "[UNAVAILABLE]" / "[SYS/TEMP]": try again later */
	size_t max_line;          /* longest command line, without CRLF */
	/* One complete command line (CRLF removed). */
	void (*command)(struct sora_conn *c, struct sora_str line);
	/* A line over max_line was skipped. */
	void (*line_too_long)(struct sora_conn *c);
};

/* The session state both protocols keep before login. */
struct sora_preauth {
	int errors;
	/* Protocol-specific state (the command parser); owned by the
	 * protocol, which frees it in its close handler. */
	void *proto;
	/* The real client as forwarded by a trusted peer (IMAP ID
	 * x-originating-ip / POP3 XCLIENT), or "". */
	char fwd_ip[64];
	char fwd_port[8];
	char fwd_session[64];
};

/* handler->open(): allocates the session; false (after a temporary-failure
 * farewell and close) when out of memory. */
bool sora_preauth_open(struct sora_conn *c, const struct sora_preauth_style *st);
/* The same for a protocol session that embeds struct sora_preauth as its
 * first member: size bytes, zeroed. */
bool sora_preauth_open_size(struct sora_conn *c, const struct sora_preauth_style *st, size_t size);
/* handler->input(): frames lines and calls st->command or st->line_too_long. */
size_t sora_preauth_input(struct sora_conn *c, const struct sora_preauth_style *st,
			  const char *data, size_t len);
/* Counts an invalid command; true when that reached max_errors (the caller
 * says goodbye and closes). */
bool sora_preauth_count_error(struct sora_conn *c);
void sora_preauth_reject(struct sora_conn *c, const struct sora_preauth_style *st,
			 enum sora_reject_reason why);
void sora_preauth_farewell(struct sora_conn *c, const struct sora_preauth_style *st,
			   enum sora_close_reason why);
/* The client address for logs: the forwarded one if any, else the peer. */
const char *sora_preauth_client(struct sora_conn *c);
/* Logs the forwarded client once it was set. */
void sora_preauth_log_forwarded(struct sora_conn *c);
/* handler->close(). */
void sora_preauth_close(struct sora_conn *c, enum sora_close_reason why);

#endif
