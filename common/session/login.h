/* Verifying credentials, shared by every pre-auth front end (IMAP LOGIN and
 * AUTHENTICATE, POP3 USER/PASS and AUTH) of both tiers.
 *
 * One job on the worker pool (password hashing and the database never run
 * on the loop) decides who logs in:
 *   - any credential address of an account works (aliases); a "+detail"
 *     in the local part is dropped when the address as given is unknown;
 *   - "user*master" with master_password logs in as user when the server
 *     has master_username = "master";
 *   - a SASL authzid different from the authcid is allowed only for
 *     authcid = master_sasl_username with its password, and only from
 *     master_sasl_allowed_networks (or, when that is empty,
 *     trusted_networks), decided on the host connected to us -- with a
 *     PROXY header the proxy, not the client it speaks for.
 * Every failure (unknown user, wrong password, a master login from a
 * network that may not use it) is the same FAILED result; a database that
 * cannot answer is TEMPFAIL. The outcome is counted in
 * sora_logins_total{protocol, result} and sora_auth_attempts_total and
 * logged (never the password); master logins at notice, with the client
 * and the host they came through.
 *
 * Authentication rate limiting ([servers.X.auth_rate_limit],
 * common/auth/ratelimit.h, docs/security.md) happens here for every
 * protocol: a client whose address or login name is blocked gets FAILED
 * (the wrong-password reply) without a password check; progressive delays
 * run on a timer of the connection (sora_conn_defer) before the job, with
 * input paused; while the limiter's database is unavailable the result is
 * TEMPFAIL without asking it. Clients in trusted_networks and master SASL
 * logins from master_sasl_allowed_networks are exempt. done therefore may
 * run later than the job alone would take, but always exactly once.
 *
 * Plaintext passwords only over TLS, unless the server allows it
 * (insecure_auth) or the connection comes from trusted_networks (the
 * internal network sora-proxy logs in from after terminating TLS):
 * sora_login_plaintext_allowed().
 *
 * Secrets are copied into sodium_malloc'd memory for the job and wiped
 * when it ends; the caller's buffers may be wiped as soon as
 * sora_login_start() returns.
 *
 * Thread safety: loop thread of the connection (the job runs on a worker
 * and calls done back on the loop). */
#ifndef SORA_SESSION_LOGIN_H
#define SORA_SESSION_LOGIN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/core/buf.h"
#include "common/core/str.h"
#include "common/net/conn.h"

struct sora_db_pool;

#define SORA_LOGIN_NAME_SIZE 256

/* Who logged in. */
struct sora_login {
	int64_t account_id;
	char user[SORA_LOGIN_NAME_SIZE];     /* the account's primary address */
	char login[SORA_LOGIN_NAME_SIZE];    /* the address the account was found by */
	bool master;                         /* master_username or master SASL */
	const char *mechanism;               /* "LOGIN", "PLAIN", "USER" (static) */
};

enum sora_login_result {
	SORA_LOGIN_OK = 0,
	SORA_LOGIN_FAILED,                   /* bad credentials, counted and logged */
	SORA_LOGIN_TEMPFAIL,                 /* the database could not answer */
};

struct sora_login_request {
	const char *protocol;                /* "imap", "pop3" (metrics label, static) */
	const char *mechanism;               /* static */
	struct sora_db_pool *pool;
	struct sora_str authzid;             /* "" unless SASL named one */
	struct sora_str authcid;
	struct sora_str password;
	/* Who the client is, for the log lines (borrowed during the call;
	 * NULL: the peer). */
	const char *client;
};

/* Runs on the loop thread once the job ended. login is set for OK only
 * (borrowed during the call). When the connection is closing, done still
 * runs (result FAILED, nothing counted) so the caller can free its state. */
typedef void sora_login_done_cb(struct sora_conn *c, enum sora_login_result result,
				const struct sora_login *login, void *ctx);

/* Queues the job (input of c is paused until done). Returns 0, or -1 when
 * it could not be queued (out of memory, the pool stopping): done will not
 * run and the caller answers with a temporary failure. */
int sora_login_start(struct sora_conn *c, const struct sora_login_request *req,
		     sora_login_done_cb *done, void *ctx);

/* Whether a plaintext password may be sent on c now (see above). */
bool sora_login_plaintext_allowed(struct sora_conn *c);

/* A login name is not empty, not longer than an address, without NUL. */
bool sora_login_name_ok(struct sora_str s);

/* Decodes a SASL PLAIN response (RFC 4616): authzid NUL authcid NUL
 * password. Pure; exposed for tests. The three point into buf (which
 * receives the decoded bytes, NUL-free per field). 0 or -1. */
int sora_sasl_plain_decode(struct sora_str b64, struct sora_buf *buf, struct sora_str *authzid_r,
			   struct sora_str *authcid_r, struct sora_str *password_r);

#endif
