/* The backend's LMTP server (RFC 2033): how mail arrives.
 *
 * Commands: LHLO, MAIL FROM (SIZE, BODY=7BIT/8BITMIME, SMTPUTF8), RCPT TO (up to
 * SORA_LMTP_MAX_RECIPIENTS per transaction), DATA with one reply per
 * accepted recipient, RSET, NOOP, QUIT, HELP, VRFY (252, never verifies),
 * STARTTLS when tls_use_starttls is set, and XCLIENT (ADDR, PORT, HELO,
 * LOGIN; Postfix XCLIENT_README) from trusted_networks only. Extensions
 * advertised: PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME, SIZE, SMTPUTF8.
 *
 * SMTPUTF8 (RFC 6531): MAIL FROM:<...> SMTPUTF8 marks the transaction;
 * only then may the sender and the recipients be UTF-8 addresses (otherwise
 * 553 5.6.7). RSET, a new LHLO, STARTTLS, XCLIENT and the end of DATA clear
 * the mark with the rest of the transaction. The message itself may then
 * carry UTF-8 header fields (RFC 6532); it is stored as received.
 *
 * Each RCPT is resolved on a worker (sora_store_resolve_recipient): unknown
 * addresses get 550 5.1.1, a database failure 451 4.3.0. DATA is decoded
 * (dot-stuffing, size limit) as it arrives into a spool (lmtp-spool.h);
 * one job then parses the message once and stores a copy per recipient
 * (backend/store/deliver.h), and the replies follow in RCPT order. A reply
 * 250 is sent only for a copy whose body is fsynced and whose metadata is
 * committed.
 *
 * Thread safety: the handler runs on the connection's loop thread; the
 * jobs on worker threads, never touching the session while the loop might. */
#ifndef SORA_LMTP_LMTP_H
#define SORA_LMTP_LMTP_H

#include <stdbool.h>
#include <time.h>

#include "common/core/buf.h"
#include "common/core/str.h"
#include "common/net/conn.h"

/* Recipients accepted per transaction; more get 452 4.5.3 (RFC 5321
 * 4.5.3.1.8 asks for at least 100). */
#define SORA_LMTP_MAX_RECIPIENTS 100

extern const struct sora_conn_handler sora_lmtp_handler;

/* What the trace header lines of one copy say. */
struct sora_lmtp_trace {
	struct sora_str sender;     /* reverse-path mailbox, empty for <> */
	struct sora_str rcpt;       /* the RCPT TO address as given */
	struct sora_str helo;       /* client's LHLO (or XCLIENT HELO) name; empty: none */
	const char *client_addr;    /* "[192.0.2.1]", "[IPv6:2001:db8::1]"; NULL: unix socket */
	const char *hostname;       /* ours */
	const char *session_id;
	bool tls;
	bool smtputf8;              /* the transaction gave MAIL ... SMTPUTF8 */
	time_t when;
};

/* Appends the lines prepended to every delivered copy:
 *   Return-Path: <sender>
 *   Delivered-To: rcpt
 *   Received: from helo ([addr])
 *   	by hostname (Sora) with LMTP id session
 *   	for <rcpt>; Tue, 01 Jul 2025 10:52:37 +0000
 * The "with" protocol type is LMTP, LMTPS over TLS (RFC 3848), and
 * UTF8LMTP / UTF8LMTPS when the transaction used SMTPUTF8 (RFC 6531 3.7.3,
 * the IANA "Mail Transmission Types" registry). Client-supplied text is
 * already validated by the command parser; any control character is still
 * replaced so a header can never be split. Without smtputf8, bytes >= 0x80
 * (a UTF-8 LHLO name) are replaced as well, so the trace lines of a message
 * that did not ask for SMTPUTF8 stay ASCII; with it they are kept, since
 * RFC 6532 allows UTF-8 there. Returns 0 or -1 (buffer limit). */
int sora_lmtp_trace_headers(const struct sora_lmtp_trace *t, struct sora_buf *out);

#endif
