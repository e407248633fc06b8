/* The IMAP front end up to login (RFC 9051 §6.1 any state, §6.2 not
 * authenticated), shared by sora-backend and sora-proxy through an ops
 * table (nginx's mail module and Dovecot's imap-login split the same way):
 * greeting, CAPABILITY, NOOP, LOGOUT, ID, STARTTLS, LOGIN and AUTHENTICATE
 * PLAIN (with SASL-IR, RFC 4959), through the one IMAP command parser.
 *
 * Verifying credentials is a job on the worker pool (password hashing and
 * the database never run on the loop). On success the front end answers
 * nothing itself: it calls ops->authenticated(), and the backend enters its
 * logged-in session while the proxy will route (issue 11). Every failure --
 * unknown user, wrong password, a master login from a network that may not
 * use it -- gets the same "NO [AUTHENTICATIONFAILED]" reply.
 *
 * Who may log in how:
 *   - LOGIN and AUTHENTICATE need TLS, unless the server has
 *     insecure_auth = true or the connection comes from trusted_networks
 *     (sora-proxy on the internal network); before that the capability
 *     list says LOGINDISABLED and has no AUTH= mechanism.
 *   - Any credential address of an account works (aliases); a "+detail"
 *     in the local part is dropped when the address as given is unknown.
 *   - "user*master" with master_password logs in as user when the server
 *     has master_username = "master".
 *   - AUTHENTICATE PLAIN with authcid = master_sasl_username and an authzid
 *     logs in as the authzid, only from master_sasl_allowed_networks (or,
 *     when that is empty, trusted_networks). That is how sora-proxy logs in
 *     for its clients. With a PROXY header the host that counts is the
 *     proxy that connected, not the client address it sent.
 *   - ID "x-originating-ip" / "x-originating-port" / "x-session-id" from a
 *     trusted peer name the real client for the logs; from anyone else they
 *     are ignored.
 *
 * Memory: the session struct of the protocol embeds struct sora_imap_front
 * as its first member (sora_conn_data() points at both), so the front end
 * and the logged-in session share one allocation. The front end frees only
 * what it allocated (the parser) in sora_imap_front_close().
 *
 * Thread safety: loop thread of the connection, except the ops->db pool. */
#ifndef SORA_SESSION_IMAP_FRONT_H
#define SORA_SESSION_IMAP_FRONT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/core/buf.h"
#include "common/core/str.h"
#include "common/net/conn.h"
#include "common/proto/imap-parser.h"
#include "common/session/login.h"
#include "common/session/preauth-common.h"

struct sora_db_pool;

#define SORA_IMAP_LOGIN_SIZE SORA_LOGIN_NAME_SIZE

struct sora_imap_front_ops {
	/* The pool credentials are checked against; NULL: login is not
	 * available here (answered NO [UNAVAILABLE], LOGINDISABLED). */
	struct sora_db_pool *(*db)(void);
	/* Appends the capabilities of a logged-in session (for the
	 * "OK [CAPABILITY ...]" of a successful login). */
	void (*caps_authenticated)(struct sora_conn *c, struct sora_buf *out);
	/* Credentials are good. The callee owns the session from here and
	 * answers "tag OK ..." itself (the tag is only valid during the call).
	 * The parser is idle; input resumes when the callee returns unless it
	 * paused it. */
	void (*authenticated)(struct sora_conn *c, struct sora_str tag,
			      const struct sora_login *login);
};

struct sora_imap_front {
	struct sora_preauth pre;             /* errors, forwarded client; pre.proto = the parser */
	const struct sora_imap_front_ops *ops;
	bool authenticated;
	/* AUTHENTICATE PLAIN sent "+": the next line is the response. */
	bool sasl_pending;
	char sasl_tag[64];
	bool login_running;              /* the credentials job is out */
	int auth_failures;
};

/* handler->open(): allocates session_size bytes (>= sizeof(struct
 * sora_imap_front), zeroed), sets them as the connection data, creates the
 * parser and sends the greeting. False if the session could not start
 * (it was then closed). */
bool sora_imap_front_open(struct sora_conn *c, const struct sora_imap_front_ops *ops,
			  size_t session_size);
/* handler->input() before login. */
size_t sora_imap_front_input(struct sora_conn *c, const char *data, size_t len);

/* What a protocol does with the parser's events. The front end before
 * login and the logged-in session share one input loop, so both treat
 * literals, errors and pipelined input alike. Each callback returns false
 * when no more input may be taken now (the session is closing, a job
 * runs, IDLE began). */
struct sora_imap_events {
	bool (*command)(struct sora_conn *c, const struct sora_imap_command *cmd);
	/* A literal was announced in the command parsed so far: ask for it
	 * ("+ OK" when synchronising) or refuse it. */
	bool (*literal)(struct sora_conn *c, const struct sora_imap_command *partial,
			const struct sora_imap_literal_info *lit);
	/* Bytes of a streamed literal (optional: only with streaming). */
	bool (*literal_data)(struct sora_conn *c, struct sora_str chunk);
	/* Before the reply to a parse error (optional). */
	void (*error)(struct sora_conn *c);
};
/* Feeds input through the parser until it needs more or a callback says
 * stop; returns the bytes consumed. */
size_t sora_imap_front_feed(struct sora_conn *c, const char *data, size_t len,
			    const struct sora_imap_events *ev);
/* The parser (the logged-in session goes on using it). */
struct sora_imap_parser *sora_imap_front_parser(struct sora_conn *c);
/* The parser limits of a logged-in session (the defaults, with APPEND's
 * messages always streamed), with or without UTF-8 quoted strings
 * (UTF8=ACCEPT, IMAP4rev2). Static storage. */
const struct sora_imap_parser_params *sora_imap_front_session_params(bool utf8);
/* Frees the parser; the caller frees the session memory. */
void sora_imap_front_close(struct sora_conn *c);
/* Whether LOGIN / AUTHENTICATE are allowed on this connection now. */
bool sora_imap_front_login_allowed(struct sora_conn *c);
/* Writes the client address for logs: the forwarded one if any, else the
 * peer. */
const char *sora_imap_front_client(struct sora_conn *c);

/* Shared by both states: the reply to a parse error. Returns false when
 * the session ended. */
bool sora_imap_front_parse_error(struct sora_conn *c, const struct sora_imap_parser_error *e);
/* BAD counted against max_errors; false when that ended the session. */
bool sora_imap_front_bad(struct sora_conn *c, struct sora_str tag, const char *msg);
/* handler->reject / farewell / input_overflow for IMAP sessions. */
void sora_imap_front_reject(struct sora_conn *c, enum sora_reject_reason why);
void sora_imap_front_farewell(struct sora_conn *c, enum sora_close_reason why);
void sora_imap_front_overflow(struct sora_conn *c);

#endif
