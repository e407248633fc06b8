/* The ManageSieve front end up to login (RFC 5804 §1.7, §2.1-2.2, 2.4,
 * 2.5 non-authenticated state), for sora-proxy's managesieve_proxy now and
 * the backend's own ManageSieve server later, through an ops table like
 * imap-front.h: greeting (the capability list), CAPABILITY, NOOP, LOGOUT,
 * STARTTLS (capabilities re-issued after the handshake), AUTHENTICATE
 * "PLAIN" with an initial response or a continuation, through one parser
 * (common/proto/managesieve.h). Credentials are checked on the worker pool
 * (login.h, shared with IMAP and POP3); every failure gets the same NO
 * "Authentication failed.".
 * On success ops->authenticated() owns the session (and answers the
 * command). Plaintext logins need TLS unless insecure_auth or a trusted
 * peer, as for IMAP.
 *
 * Memory: the protocol's session embeds struct sora_sieve_front first.
 * Thread safety: loop thread of the connection. */
#ifndef SORA_SESSION_SIEVE_FRONT_H
#define SORA_SESSION_SIEVE_FRONT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/core/buf.h"
#include "common/net/conn.h"
#include "common/proto/managesieve.h"
#include "common/session/preauth-common.h"

struct sora_db_pool;

struct sora_sieve_login {
	int64_t account_id;
	char user[256];          /* primary address */
	bool master;
};

struct sora_sieve_front_ops {
	struct sora_db_pool *(*db)(void);
	/* The SIEVE capability's value (extensions), e.g. "fileinto vacation". */
	const char *(*extensions)(struct sora_conn *c);
	/* Credentials are good: the callee answers the AUTHENTICATE. */
	void (*authenticated)(struct sora_conn *c, const struct sora_sieve_login *login);
};

struct sora_sieve_front {
	struct sora_preauth pre;
	const struct sora_sieve_front_ops *ops;
	bool authenticated;
	bool sasl_pending;
	bool login_running;
	struct sora_sieve_command cmd;
};

bool sora_sieve_front_open(struct sora_conn *c, const struct sora_sieve_front_ops *ops,
			   size_t session_size);
size_t sora_sieve_front_input(struct sora_conn *c, const char *data, size_t len);
void sora_sieve_front_tls_ready(struct sora_conn *c);
void sora_sieve_front_reject(struct sora_conn *c, enum sora_reject_reason why);
void sora_sieve_front_farewell(struct sora_conn *c, enum sora_close_reason why);
void sora_sieve_front_overflow(struct sora_conn *c);
/* Frees the session memory (handler->close). */
void sora_sieve_front_close(struct sora_conn *c, enum sora_close_reason why);

#define SORA_SIEVE_MAX_PENDING (8192 + 8192 + 128)

#endif
