/* Pre-authentication front ends for IMAP and POP3, shared by sora-proxy and
 * sora-backend: greeting, CAPABILITY/CAPA, NOOP, LOGOUT/QUIT, STARTTLS/STLS,
 * connection-limit and timeout replies, invalid-command counting.
 *
 * Authentication is not part of this stage yet: LOGIN/AUTHENTICATE/USER/
 * PASS are answered with a clear "not available" error and the capability
 * lists advertise LOGINDISABLED (IMAP) and no SASL mechanisms, so clients
 * are not misled.
 *
 * Thread safety: handlers run on the connection's loop thread. */
#ifndef SORA_SESSION_PREAUTH_H
#define SORA_SESSION_PREAUTH_H

#include "common/net/conn.h"

extern const struct sora_conn_handler sora_imap_preauth_handler;
extern const struct sora_conn_handler sora_pop3_preauth_handler;

#endif
