/* IMAP before login: see imap-front.h.
 *
 * Input goes through the IMAP command parser (common/proto/imap-parser.h),
 * the same one the logged-in session uses, so the bytes of a literal are
 * never taken for a command: "a1 ID {10+}\r\nb1 LOGOUT\r\n" is one ID
 * command whose argument is "b1 LOGOUT\r".
 *
 * Literals before login are small: up to PREAUTH_MAX_LITERAL bytes, kept
 * in memory, synchronising ones answered with "+ OK" and non-synchronising
 * ones accepted (LITERAL-, which is advertised). A larger literal is
 * refused before its bytes are read: a synchronising one with
 * "NO [TOOBIG]" (the client sends nothing and the session goes on), a
 * non-synchronising one with "BAD [TOOBIG]" and the session is closed
 * rather than reading and discarding the bytes (RFC 7888 §4 allows
 * either). A command over the line or argument limits ends the session
 * like an over-long line did before. Every other parse error is a BAD,
 * counted against max_errors.
 *
 * The AUTHENTICATE continuation ("+ " then one line of base64) is not IMAP
 * syntax: while it is pending, input is taken as a raw line here and never
 * reaches the parser, which is idle between commands. */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/db/accounts.h"
#include "common/db/db.h"
#include "common/metrics/metrics.h"
#include "common/net/workers.h"
#include "common/proto/cmdline.h"
#include "common/session/imap-front.h"
#include "common/session/login.h"
#include "common/session/preauth.h"

/* ID may carry 30 pairs of 1024-byte values (RFC 2971 §3.3): about 32 KiB. */
#define IMAP_MAX_LINE 65536
#define PREAUTH_MAX_LITERAL 8192

static const struct sora_imap_parser_params preauth_params = {
	.max_line = IMAP_MAX_LINE,
	.max_atom = 8192,
	.max_quoted = 8192,
	.max_literal = PREAUTH_MAX_LITERAL,
	.max_inline_literal = PREAUTH_MAX_LITERAL,
	.max_nonsync_literal = PREAUTH_MAX_LITERAL,
	.max_depth = 8,
	/* ID: at most 30 field/value pairs (RFC 2971 §3.3) in one list */
	.max_args = 64,
	.max_command = IMAP_MAX_LINE + PREAUTH_MAX_LITERAL + 1024,
	.binary = false,
	.utf8_quoted = false,
};

static pthread_once_t session_params_once = PTHREAD_ONCE_INIT;
static struct sora_imap_parser_params session_params, session_params_utf8;

static void session_params_init(void)
{
	session_params = sora_imap_parser_default_params;
	session_params.stream_append = true;
	session_params_utf8 = session_params;
	session_params_utf8.utf8_quoted = true;
}

const struct sora_imap_parser_params *sora_imap_front_session_params(bool utf8)
{
	pthread_once(&session_params_once, session_params_init);
	return utf8 ? &session_params_utf8 : &session_params;
}

static const struct sora_preauth_style imap_style = {
	.bye = "* BYE",
	.temp_code = "[UNAVAILABLE]",
	.max_line = IMAP_MAX_LINE,
};

static struct sora_imap_front *front(struct sora_conn *c)
{
	return sora_conn_data(c);
}

/* ---- metrics ---- */

static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;
static struct sora_metric_series *m_bad;

static void metrics_init(void)
{
	struct sora_metric *b = sora_metric_counter(
		"sora_protocol_errors_total", "Commands answered BAD (or -ERR for syntax).", "protocol");

	m_bad = sora_metric_with(b, "imap");
}

struct sora_imap_parser *sora_imap_front_parser(struct sora_conn *c)
{
	struct sora_imap_front *f = front(c);

	return f != NULL ? f->pre.proto : NULL;
}

static bool login_available(struct sora_conn *c)
{
	const struct sora_imap_front_ops *ops = front(c)->ops;

	return ops->db != NULL && ops->db() != NULL;
}

/* Plaintext passwords only over TLS, unless the server allows it
 * (insecure_auth) or the connection comes from trusted_networks -- the
 * internal network sora-proxy logs in from, after terminating the
 * client's TLS itself. */
bool sora_imap_front_login_allowed(struct sora_conn *c)
{
	return sora_login_plaintext_allowed(c);
}

const char *sora_imap_front_client(struct sora_conn *c)
{
	return sora_preauth_client(c);
}

static void capabilities(struct sora_conn *c, struct sora_buf *out)
{
	bool starttls = sora_conn_server(c)->tls_use_starttls && !sora_conn_is_tls(c) &&
			sora_conn_tls_available(c);

	sora_buf_printf(out, "IMAP4rev1 IMAP4rev2 SASL-IR ID ENABLE IDLE LITERAL-%s",
			starttls ? " STARTTLS" : "");
	if (login_available(c) && sora_imap_front_login_allowed(c))
		sora_buf_printf(out, " AUTH=PLAIN");
	else
		sora_buf_printf(out, " LOGINDISABLED");
}

bool sora_imap_front_open(struct sora_conn *c, const struct sora_imap_front_ops *ops,
			  size_t session_size)
{
	struct sora_imap_front *f;
	struct sora_buf caps = { 0 };

	if (!sora_preauth_open_size(c, &imap_style, session_size))
		return false;
	f = front(c);
	f->ops = ops;
	f->pre.proto = sora_imap_parser_new(&preauth_params);
	if (f->pre.proto == NULL) {
		sora_conn_printf(c, "* BYE [UNAVAILABLE] Server out of memory\r\n");
		sora_conn_close(c, SORA_CLOSE_ERROR);
		return false;
	}
	capabilities(c, &caps);
	sora_conn_printf(c, "* OK [CAPABILITY %.*s] Sora ready.\r\n", (int)caps.len,
			 caps.data != NULL ? caps.data : "");
	sora_buf_free(&caps);
	return true;
}

bool sora_imap_front_bad(struct sora_conn *c, struct sora_str tag, const char *msg)
{
	pthread_once(&metrics_once, metrics_init);
	sora_metric_inc(m_bad);
	if (tag.len > 0)
		sora_conn_printf(c, "%.*s BAD %s\r\n", (int)tag.len, tag.p, msg);
	else
		sora_conn_printf(c, "* BAD %s\r\n", msg);
	if (sora_preauth_count_error(c)) {
		sora_conn_printf(c, "* BYE Too many invalid commands.\r\n");
		sora_conn_close(c, SORA_CLOSE_PROTOCOL);
		return false;
	}
	return true;
}

bool sora_imap_front_parse_error(struct sora_conn *c, const struct sora_imap_parser_error *e)
{
	struct sora_str tag = e->tag;
	int tl = (int)tag.len;

	if (e->code == SORA_IMAP_ERROR_TOOBIG && e->literal_sync && !e->fatal) {
		/* The client waits for "+" and sends nothing: the session goes
		 * on. Counted, since no client needs a big literal here. */
		if (tl > 0)
			sora_conn_printf(c, "%.*s NO [TOOBIG] %s\r\n", tl, tag.p, e->text);
		else
			sora_conn_printf(c, "* NO [TOOBIG] %s\r\n", e->text);
		if (sora_preauth_count_error(c)) {
			sora_conn_printf(c, "* BYE Too many invalid commands.\r\n");
			sora_conn_close(c, SORA_CLOSE_PROTOCOL);
			return false;
		}
		return true;
	}
	if (e->code == SORA_IMAP_ERROR_TOOBIG || e->code == SORA_IMAP_ERROR_TOO_LONG || e->fatal) {
		/* Refused non-synchronising literal, unparseable literal size or
		 * an over-long command: do not read on. */
		if (tl > 0)
			sora_conn_printf(c, "%.*s BAD %s%s\r\n", tl, tag.p,
					 e->code == SORA_IMAP_ERROR_TOOBIG ? "[TOOBIG] " : "", e->text);
		sora_info(sora_conn_log_ctx(c), "IMAP command refused: %s", e->text);
		sora_conn_printf(c, "* BYE %s\r\n", e->text);
		sora_conn_close(c, SORA_CLOSE_PROTOCOL);
		return false;
	}
	return sora_imap_front_bad(c, tag, e->text);
}

/* ---- ID ---------------------------------------------------------------- */

static void copy_field(char *dst, size_t size, struct sora_str v, bool (*ok)(unsigned char))
{
	size_t n = 0;

	for (size_t i = 0; i < v.len && n + 1 < size; i++) {
		if (!ok((unsigned char)v.p[i])) {
			n = 0;
			break;
		}
		dst[n++] = v.p[i];
	}
	dst[n] = '\0';
}

static bool ip_char(unsigned char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') ||
	       ch == '.' || ch == ':';
}

static bool digit_char(unsigned char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool token_char(unsigned char ch)
{
	return ch > 0x20 && ch < 0x7f && ch != '"' && ch != '\\';
}

/* RFC 2971. Forwarding fields count only from trusted peers (sora-proxy);
 * an untrusted client cannot make the logs name another address. */
static void cmd_id(struct sora_conn *c, const struct sora_imap_command *cmd)
{
	struct sora_imap_front *f = front(c);
	const struct sora_imap_arg *list;

	if (cmd->args_count != 1 ||
	    (cmd->args[0].type != SORA_IMAP_ARG_NIL && cmd->args[0].type != SORA_IMAP_ARG_LIST)) {
		sora_imap_front_bad(c, cmd->tag, "ID takes NIL or a list of field/value pairs.");
		return;
	}
	list = &cmd->args[0];
	if (list->type == SORA_IMAP_ARG_LIST) {
		if (list->list_count % 2 != 0 || list->list_count > 60) {
			sora_imap_front_bad(c, cmd->tag, "ID takes at most 30 field/value pairs.");
			return;
		}
		for (size_t i = 0; i + 1 < list->list_count; i += 2) {
			struct sora_str k, v;

			if (!sora_imap_arg_nstring(&list->list[i], &k) ||
			    !sora_imap_arg_nstring(&list->list[i + 1], &v) || k.p == NULL) {
				sora_imap_front_bad(c, cmd->tag, "ID fields are strings.");
				return;
			}
			if (!sora_conn_link_trusted(c) || v.p == NULL)
				continue;
			if (sora_str_ieq_c(k, "x-originating-ip"))
				copy_field(f->pre.fwd_ip, sizeof(f->pre.fwd_ip), v, ip_char);
			else if (sora_str_ieq_c(k, "x-originating-port"))
				copy_field(f->pre.fwd_port, sizeof(f->pre.fwd_port), v, digit_char);
			else if (sora_str_ieq_c(k, "x-session-id"))
				copy_field(f->pre.fwd_session, sizeof(f->pre.fwd_session), v, token_char);
		}
		sora_preauth_log_forwarded(c);
	}
	sora_conn_printf(c, "* ID (\"name\" \"Sora\" \"version\" \"%s\")\r\n%.*s OK ID completed.\r\n",
			 SORA_VERSION, (int)cmd->tag.len, cmd->tag.p);
}

/* ---- login ------------------------------------------------------------- */

/* The outcome of the shared credentials job (login.h). */
static void login_done(struct sora_conn *c, enum sora_login_result result,
		       const struct sora_login *login, void *ctx)
{
	struct sora_imap_front *f = front(c);
	char *tag = ctx;

	f->login_running = false;
	if (sora_conn_closing(c)) {
		free(tag);
		return;
	}
	if (result == SORA_LOGIN_OK) {
		f->authenticated = true;
		sora_imap_parser_set_params(f->pre.proto, sora_imap_front_session_params(false));
		f->ops->authenticated(c, sora_str_c(tag), login);
		free(tag);
		return;
	}
	if (result == SORA_LOGIN_TEMPFAIL) {
		sora_conn_printf(c, "%s NO [UNAVAILABLE] Temporary authentication failure, try again later.\r\n",
				 tag);
	} else {
		f->auth_failures++;
		sora_conn_printf(c, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", tag);
	}
	free(tag);
	if (result == SORA_LOGIN_FAILED && sora_preauth_count_error(c)) {
		sora_conn_printf(c, "* BYE Too many failed logins.\r\n");
		sora_conn_close(c, SORA_CLOSE_PROTOCOL);
		return;
	}
	sora_conn_resume(c);
}

static void start_login(struct sora_conn *c, struct sora_str tag, const char *mechanism,
			struct sora_str authzid, struct sora_str authcid, struct sora_str password)
{
	struct sora_login_request req = {
		.protocol = "imap",
		.mechanism = mechanism,
		.pool = front(c)->ops->db(),
		.authzid = authzid,
		.authcid = authcid,
		.password = password,
		.client = sora_imap_front_client(c),
	};
	char *t = tag.len < 64 ? sora_str_dup(tag) : NULL;
	int tl = (int)tag.len;

	if (t == NULL) {
		sora_conn_printf(c, "%.*s NO [UNAVAILABLE] Server out of memory.\r\n", tl, tag.p);
		return;
	}
	front(c)->login_running = true;
	if (sora_login_start(c, &req, login_done, t) < 0) {
		front(c)->login_running = false;
		free(t);
		sora_conn_printf(c, "%.*s NO [UNAVAILABLE] Server busy, try again later.\r\n", tl, tag.p);
	}
}

/* False when the command may not log in (answered). */
static bool login_precheck(struct sora_conn *c, struct sora_str tag)
{
	int tl = (int)tag.len;

	if (!login_available(c)) {
		sora_conn_printf(c, "%.*s NO [UNAVAILABLE] Login is not available on this server.\r\n",
				 tl, tag.p);
		return false;
	}
	if (!sora_imap_front_login_allowed(c)) {
		sora_conn_printf(c, "%.*s NO [PRIVACYREQUIRED] Plaintext authentication is disallowed on "
				 "non-secure connections: use STARTTLS.\r\n", tl, tag.p);
		return false;
	}
	return true;
}

static void cmd_login(struct sora_conn *c, const struct sora_imap_command *cmd)
{
	struct sora_str user, pass;

	if (cmd->args_count != 2 || !sora_imap_arg_astring(&cmd->args[0], &user) ||
	    !sora_imap_arg_astring(&cmd->args[1], &pass)) {
		sora_imap_front_bad(c, cmd->tag, "LOGIN takes a user name and a password.");
		return;
	}
	if (!login_precheck(c, cmd->tag))
		return;
	if (!sora_login_name_ok(user) || memchr(pass.p, '\0', pass.len) != NULL) {
		sora_conn_printf(c, "%.*s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
				 (int)cmd->tag.len, cmd->tag.p);
		return;
	}
	start_login(c, cmd->tag, "LOGIN", sora_str_make("", 0), user, pass);
}

static void sasl_response(struct sora_conn *c, struct sora_str tag, struct sora_str b64)
{
	struct sora_buf buf = { 0 };
	struct sora_str authzid, authcid, password;

	if (b64.len == 1 && b64.p[0] == '=')
		b64.len = 0;
	if (sora_sasl_plain_decode(b64, &buf, &authzid, &authcid, &password) < 0) {
		sora_imap_front_bad(c, tag, "Invalid SASL PLAIN response.");
	} else if (!sora_login_name_ok(authcid) || authzid.len >= SORA_IMAP_LOGIN_SIZE) {
		sora_conn_printf(c, "%.*s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
				 (int)tag.len, tag.p);
	} else {
		start_login(c, tag, "PLAIN", authzid, authcid, password);
	}
	if (buf.data != NULL)
		sodium_memzero(buf.data, buf.cap);
	sora_buf_free(&buf);
}

static void cmd_authenticate(struct sora_conn *c, const struct sora_imap_command *cmd)
{
	struct sora_imap_front *f = front(c);
	struct sora_str mech, ir;

	if (cmd->args_count < 1 || cmd->args_count > 2 || !sora_imap_arg_atom(&cmd->args[0], &mech)) {
		sora_imap_front_bad(c, cmd->tag, "AUTHENTICATE takes a mechanism name.");
		return;
	}
	if (!login_precheck(c, cmd->tag))
		return;
	if (!sora_str_ieq_c(mech, "PLAIN")) {
		sora_conn_printf(c, "%.*s NO Unsupported authentication mechanism.\r\n",
				 (int)cmd->tag.len, cmd->tag.p);
		return;
	}
	if (cmd->args_count == 2) {
		if (!sora_imap_arg_atom(&cmd->args[1], &ir)) {
			sora_imap_front_bad(c, cmd->tag, "Invalid SASL initial response.");
			return;
		}
		sasl_response(c, cmd->tag, ir);
		return;
	}
	if (cmd->tag.len >= sizeof(f->sasl_tag)) {
		sora_imap_front_bad(c, cmd->tag, "Tag too long.");
		return;
	}
	memcpy(f->sasl_tag, cmd->tag.p, cmd->tag.len);
	f->sasl_tag[cmd->tag.len] = '\0';
	f->sasl_pending = true;
	sora_conn_printf(c, "+ \r\n");
}

/* ---- dispatch ----------------------------------------------------------- */

/* Returns false when the session ends or switches to TLS: the caller
 * must not hand it more input. */
static bool front_command(struct sora_conn *c, const struct sora_imap_command *cmd)
{
	int tl = (int)cmd->tag.len;

	if (sora_str_ieq_c(cmd->name, "CAPABILITY")) {
		struct sora_buf caps = { 0 };

		capabilities(c, &caps);
		sora_conn_printf(c, "* CAPABILITY %.*s\r\n%.*s OK CAPABILITY completed.\r\n",
				 (int)caps.len, caps.data != NULL ? caps.data : "", tl, cmd->tag.p);
		sora_buf_free(&caps);
	} else if (sora_str_ieq_c(cmd->name, "NOOP")) {
		sora_conn_printf(c, "%.*s OK NOOP completed.\r\n", tl, cmd->tag.p);
	} else if (sora_str_ieq_c(cmd->name, "LOGOUT")) {
		sora_conn_printf(c, "* BYE Logging out.\r\n%.*s OK LOGOUT completed.\r\n", tl, cmd->tag.p);
		sora_conn_close(c, SORA_CLOSE_NORMAL);
		return false;
	} else if (sora_str_ieq_c(cmd->name, "ID")) {
		cmd_id(c, cmd);
	} else if (sora_str_ieq_c(cmd->name, "STARTTLS")) {
		if (sora_conn_is_tls(c) || !sora_conn_server(c)->tls_use_starttls || !sora_conn_tls_available(c))
			return sora_imap_front_bad(c, cmd->tag, sora_conn_is_tls(c) ? "TLS is already active."
										: "STARTTLS is not available.");
		sora_conn_printf(c, "%.*s OK Begin TLS negotiation now.\r\n", tl, cmd->tag.p);
		if (sora_conn_starttls(c) < 0) {
			sora_conn_printf(c, "* BYE TLS setup failed.\r\n");
			sora_conn_close(c, SORA_CLOSE_ERROR);
		}
		/* Whatever followed in the same read is dropped by the
		 * connection layer (no command injection before TLS). */
		return false;
	} else if (sora_str_ieq_c(cmd->name, "LOGIN")) {
		cmd_login(c, cmd);
	} else if (sora_str_ieq_c(cmd->name, "AUTHENTICATE")) {
		cmd_authenticate(c, cmd);
	} else {
		return sora_imap_front_bad(c, cmd->tag, "Unknown command or not valid before login.");
	}
	/* Stop after a command that started the login job (input is paused
	 * until it is done) or asked for a SASL response (a raw line next). */
	return !sora_conn_closing(c) && !front(c)->login_running && !front(c)->sasl_pending;
}

/* The raw line answering "+ " of AUTHENTICATE. */
static size_t sasl_input(struct sora_conn *c, const char *data, size_t len)
{
	struct sora_imap_front *f = front(c);
	size_t consumed;
	long n = sora_line_find(data, len, &consumed);
	struct sora_str tag = sora_str_c(f->sasl_tag);

	if (n < 0) {
		if (len > 8192) {
			sora_conn_printf(c, "* BYE SASL response too long.\r\n");
			sora_conn_close(c, SORA_CLOSE_PROTOCOL);
			return len;
		}
		return 0;
	}
	f->sasl_pending = false;
	if (n == 1 && data[0] == '*')
		sora_imap_front_bad(c, tag, "Authentication aborted.");
	else
		sasl_response(c, tag, sora_str_make(data, (size_t)n));
	return consumed;
}

size_t sora_imap_front_feed(struct sora_conn *c, const char *data, size_t len,
			    const struct sora_imap_events *ev)
{
	struct sora_imap_parser *p = sora_imap_front_parser(c);
	size_t total = 0;

	if (p == NULL)
		return len;
	for (;;) {
		size_t used = 0;
		enum sora_imap_parse_result r = sora_imap_parser_feed(p, data + total, len - total, &used);
		bool go_on = true;

		total += used;
		/* The parser holds a partial command, so the connection has no
		 * pending input: say that a command is in transit, for the
		 * min_bytes_per_minute floor. */
		sora_conn_set_transfer(c, !sora_imap_parser_idle(p));
		switch (r) {
		case SORA_IMAP_PARSE_NEED_MORE:
			return total;
		case SORA_IMAP_PARSE_COMMAND:
			go_on = ev->command(c, sora_imap_parser_command(p));
			break;
		case SORA_IMAP_PARSE_LITERAL:
			go_on = ev->literal(c, sora_imap_parser_command(p), sora_imap_parser_literal(p));
			break;
		case SORA_IMAP_PARSE_LITERAL_DATA:
			go_on = ev->literal_data == NULL ||
				ev->literal_data(c, sora_imap_parser_literal_chunk(p));
			break;
		case SORA_IMAP_PARSE_ERROR:
			if (ev->error != NULL)
				ev->error(c);
			go_on = sora_imap_front_parse_error(c, sora_imap_parser_error(p));
			break;
		}
		if (!go_on || sora_conn_closing(c))
			return total;
		/* An event that consumed nothing is an error noticed at the
		 * first byte offered: go on so as not to stall pipelined input;
		 * any other empty step waits for more. */
		if (used == 0 && r != SORA_IMAP_PARSE_ERROR)
			return total;
	}
}

/* Before login every literal is small and kept in line (the parser
 * refused larger ones): ask for the bytes of a synchronising one. */
static bool front_literal(struct sora_conn *c, const struct sora_imap_command *partial,
			  const struct sora_imap_literal_info *lit)
{
	if (lit->sync)
		sora_conn_printf(c, "+ OK\r\n");
	return true;
}

static const struct sora_imap_events front_events = {
	.command = front_command,
	.literal = front_literal,
};

size_t sora_imap_front_input(struct sora_conn *c, const char *data, size_t len)
{
	struct sora_imap_front *f = front(c);

	if (f == NULL)
		return len;
	if (f->sasl_pending)
		return sasl_input(c, data, len);
	return sora_imap_front_feed(c, data, len, &front_events);
}

void sora_imap_front_overflow(struct sora_conn *c)
{
	sora_conn_printf(c, "* BYE Command line too long.\r\n");
}

void sora_imap_front_reject(struct sora_conn *c, enum sora_reject_reason why)
{
	sora_preauth_reject(c, &imap_style, why);
}

void sora_imap_front_farewell(struct sora_conn *c, enum sora_close_reason why)
{
	sora_preauth_farewell(c, &imap_style, why);
}

void sora_imap_front_close(struct sora_conn *c)
{
	struct sora_imap_front *f = front(c);

	if (f != NULL) {
		struct sora_imap_parser *p = f->pre.proto;

		sora_imap_parser_free(&p);
		f->pre.proto = NULL;
	}
}

/* ---- the front end alone (sora-proxy until it routes: no login) -------- */

static const struct sora_imap_front_ops no_login_ops = {
	.db = NULL,
};

static void imap_open(struct sora_conn *c)
{
	sora_imap_front_open(c, &no_login_ops, sizeof(struct sora_imap_front));
}

static void imap_close(struct sora_conn *c, enum sora_close_reason why)
{
	sora_imap_front_close(c);
	sora_preauth_close(c, why);
}

const struct sora_conn_handler sora_imap_preauth_handler = {
	.protocol = "imap",
	/* The parser consumes input as it arrives (it keeps the command);
	 * this only bounds what piles up while output is blocked. */
	.max_pending_input = IMAP_MAX_LINE + PREAUTH_MAX_LITERAL + 2,
	.open = imap_open,
	.input = sora_imap_front_input,
	.input_overflow = sora_imap_front_overflow,
	.reject = sora_imap_front_reject,
	.farewell = sora_imap_front_farewell,
	.close = imap_close,
};
