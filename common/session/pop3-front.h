/* The POP3 front end up to login (RFC 1939 AUTHORIZATION state, RFC 2449
 * CAPA, RFC 2595 STLS, RFC 5034 AUTH), shared by sora-backend and
 * sora-proxy through an ops table, like the IMAP one (imap-front.h):
 * greeting, CAPA, QUIT, STLS, USER/PASS, AUTH PLAIN (with and without an
 * initial response), XCLIENT, through the one POP3 command parser
 * (common/proto/pop3.h).
 *
 * Verifying credentials is the shared job of login.h (master user
 * "user*master", master SASL from master_sasl_allowed_networks decided on
 * the link, aliases, "+detail", metrics sora_logins_total{protocol="pop3"}).
 * On success the front end answers nothing itself: it calls
 * ops->authenticated() with input paused, and the backend opens the
 * maildrop and answers "+OK" (or "-ERR [IN-USE]" and calls
 * sora_pop3_front_unauthenticated() to stay in the AUTHORIZATION state),
 * while the proxy will route. Every failure gets "-ERR [AUTH]
 * Authentication failed."; a database that cannot answer "-ERR [SYS/TEMP]".
 *
 * Who may log in how:
 *   - USER/PASS and AUTH need TLS, unless the server has insecure_auth =
 *     true or the connection comes from trusted_networks; before that
 *     CAPA lists neither USER nor SASL, and the commands get
 *     "-ERR [AUTH] Plaintext authentication disallowed ..." (not counted
 *     as an invalid command: a client may try before STLS).
 *   - XCLIENT ADDR=... PORT=... SESSION=... (Dovecot's form) names the
 *     real client for the logs, only from trusted_networks (decided on the
 *     host connected to us); others get -ERR.
 *
 * Errors: every -ERR for an invalid or failed command counts against
 * max_errors (a valid command resets the streak); reaching it ends the
 * session with "-ERR Too many invalid commands." Syntax errors also count
 * in sora_protocol_errors_total{protocol="pop3"}.
 *
 * Memory: the session struct of the protocol embeds struct sora_pop3_front
 * as its first member (sora_conn_data() points at both). The front end
 * frees only what it allocated (the parser) in sora_pop3_front_close().
 *
 * Thread safety: loop thread of the connection, except the ops->db pool. */
#ifndef SORA_SESSION_POP3_FRONT_H
#define SORA_SESSION_POP3_FRONT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/core/buf.h"
#include "common/net/conn.h"
#include "common/proto/pop3.h"
#include "common/session/login.h"
#include "common/session/preauth-common.h"

struct sora_db_pool;

struct sora_pop3_front_ops {
	/* The pool credentials are checked against; NULL: login is not
	 * available here (USER/PASS/AUTH answered -ERR [SYS/PERM], and CAPA
	 * lists neither USER nor SASL). */
	struct sora_db_pool *(*db)(void);
	/* Credentials are good; input is paused. The callee owns the
	 * session from here and answers "+OK ..." or "-ERR ..." itself, then
	 * resumes input. */
	void (*authenticated)(struct sora_conn *c, const struct sora_login *login);
};

struct sora_pop3_front {
	struct sora_preauth pre;             /* errors, forwarded client; pre.proto = the parser */
	const struct sora_pop3_front_ops *ops;
	bool authenticated;
	bool login_running;                  /* the credentials job is out */
	bool sasl_pending;                   /* AUTH PLAIN sent "+ ": a raw line next */
	bool have_user;                      /* USER was given */
	char user[SORA_LOGIN_NAME_SIZE];
};

/* handler->open(): allocates session_size bytes (>= sizeof(struct
 * sora_pop3_front), zeroed), sets them as the connection data, creates the
 * parser and sends the greeting. False if the session could not start (it
 * was then closed). */
bool sora_pop3_front_open(struct sora_conn *c, const struct sora_pop3_front_ops *ops,
			  size_t session_size);
/* handler->input() before login. */
size_t sora_pop3_front_input(struct sora_conn *c, const char *data, size_t len);

/* What a protocol does with parsed commands: the front end before login
 * and the logged-in session share one input loop. command returns false
 * when no more input may be taken now (a job runs, the session ends). */
struct sora_pop3_events {
	bool (*command)(struct sora_conn *c, const struct sora_pop3_command *cmd);
};
/* Feeds input through the parser until it needs more or command says
 * stop; parse errors are answered (-ERR, counted) here. Returns the bytes
 * consumed. */
size_t sora_pop3_front_feed(struct sora_conn *c, const char *data, size_t len,
			    const struct sora_pop3_events *ev);

/* "-ERR " + text, counted against max_errors; false when that ended the
 * session (the caller must not go on with it). */
bool sora_pop3_front_err(struct sora_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A valid command: the invalid-command streak starts over. */
void sora_pop3_front_ok_command(struct sora_conn *c);
/* Writes the CAPA reply for the current state (RFC 2449 §5: the list
 * follows the state; after login no USER, SASL or STLS). */
void sora_pop3_front_capa(struct sora_conn *c);
/* The backend could not open the maildrop after a good login (its -ERR
 * is sent): back to the AUTHORIZATION state. */
void sora_pop3_front_unauthenticated(struct sora_conn *c);
/* Whether USER/PASS/AUTH may be used on c now. */
bool sora_pop3_front_login_allowed(struct sora_conn *c);

void sora_pop3_front_reject(struct sora_conn *c, enum sora_reject_reason why);
void sora_pop3_front_farewell(struct sora_conn *c, enum sora_close_reason why);
void sora_pop3_front_overflow(struct sora_conn *c);
/* Frees the parser; the caller frees the session memory. */
void sora_pop3_front_close(struct sora_conn *c);

#endif
