/* sora-backend's POP3 server (RFC 1939 with CAPA, STLS, SASL PLAIN, UIDL,
 * TOP, RESP-CODES; docs/pop3.md): the TRANSACTION and UPDATE states that
 * follow the shared front end (common/session/pop3-front.h).
 *
 * The maildrop is the account's INBOX in the IMAP store; UIDL is the IMAP
 * UID; DELE takes effect at QUIT as an IMAP expunge.
 *
 * Thread safety: the handler runs on the sessions' loops and workers. */
#ifndef SORA_BACKEND_POP3_H
#define SORA_BACKEND_POP3_H

#include "common/net/conn.h"

extern const struct sora_conn_handler sora_pop3_handler;

#endif
