/* POP3 before login: see pop3-front.h.
 *
 * Input goes through the POP3 command parser (common/proto/pop3.h), the
 * same one the logged-in session uses; it consumes bytes as they arrive
 * and keeps at most one line, so an over-long line is skipped and answered
 * -ERR without the connection layer buffering it. The AUTH continuation
 * ("+ " then one line of base64) is read in the parser's raw mode. */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/metrics/metrics.h"
#include "common/session/pop3-front.h"
#include "common/session/preauth.h"

static const struct sora_preauth_style pop3_style = {
	.bye = "-ERR",
	.temp_code = "[SYS/TEMP]",
	.max_line = SORA_POP3_MAX_LINE,
};

static const struct sora_pop3_parser_params parser_params = {
	.max_line = SORA_POP3_MAX_LINE,
};

static struct sora_pop3_front *front(struct sora_conn *c)
{
	return sora_conn_data(c);
}

static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;
static struct sora_metric_series *m_bad;

static void metrics_init(void)
{
	struct sora_metric *b = sora_metric_counter(
		"sora_protocol_errors_total", "Commands answered BAD (or -ERR for syntax).", "protocol");

	m_bad = sora_metric_with(b, "pop3");
}

static bool login_available(struct sora_conn *c)
{
	const struct sora_pop3_front_ops *ops = front(c)->ops;

	return ops->db != NULL && ops->db() != NULL;
}

bool sora_pop3_front_login_allowed(struct sora_conn *c)
{
	return sora_login_plaintext_allowed(c);
}

static bool stls_available(struct sora_conn *c)
{
	return sora_conn_server(c)->tls_use_starttls && !sora_conn_is_tls(c) &&
	       sora_conn_tls_available(c);
}

bool sora_pop3_front_open(struct sora_conn *c, const struct sora_pop3_front_ops *ops,
			  size_t session_size)
{
	struct sora_pop3_front *f;

	if (!sora_preauth_open_size(c, &pop3_style, session_size))
		return false;
	f = front(c);
	f->ops = ops;
	f->pre.proto = sora_pop3_parser_new(&parser_params);
	if (f->pre.proto == NULL) {
		sora_conn_printf(c, "-ERR [SYS/TEMP] Server out of memory\r\n");
		sora_conn_close(c, SORA_CLOSE_ERROR);
		return false;
	}
	sora_conn_printf(c, "+OK Sora POP3 ready.\r\n");
	return true;
}

bool sora_pop3_front_err(struct sora_conn *c, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	sora_conn_printf(c, "-ERR %s\r\n", line);
	if (sora_preauth_count_error(c)) {
		sora_conn_printf(c, "-ERR Too many invalid commands.\r\n");
		sora_conn_close(c, SORA_CLOSE_PROTOCOL);
		return false;
	}
	return true;
}

void sora_pop3_front_ok_command(struct sora_conn *c)
{
	front(c)->pre.errors = 0;
}

void sora_pop3_front_capa(struct sora_conn *c)
{
	struct sora_pop3_front *f = front(c);
	struct sora_buf out = { 0 };
	bool auth = !f->authenticated && login_available(c) && sora_pop3_front_login_allowed(c);

	sora_buf_append_str(&out, "+OK Capability list follows\r\n"
			    "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
			    "EXPIRE NEVER\r\n");
	if (auth)
		sora_buf_append_str(&out, "USER\r\nSASL PLAIN\r\n");
	if (!f->authenticated && stls_available(c))
		sora_buf_append_str(&out, "STLS\r\n");
	sora_buf_append_str(&out, "IMPLEMENTATION Sora\r\n.\r\n");
	if (out.data != NULL)
		sora_conn_write(c, out.data, out.len);
	sora_buf_free(&out);
}

void sora_pop3_front_unauthenticated(struct sora_conn *c)
{
	struct sora_pop3_front *f = front(c);

	f->authenticated = false;
	f->have_user = false;
	sora_conn_set_user(c, NULL);
}

/* ---- login -------------------------------------------------------------- */

static void login_done(struct sora_conn *c, enum sora_login_result result,
		       const struct sora_login *login, void *ctx)
{
	struct sora_pop3_front *f = front(c);

	f->login_running = false;
	if (sora_conn_closing(c))
		return;
	if (result == SORA_LOGIN_OK) {
		f->authenticated = true;
		f->ops->authenticated(c, login);
		return;
	}
	if (result == SORA_LOGIN_TEMPFAIL) {
		sora_conn_printf(c, "-ERR [SYS/TEMP] Temporary authentication failure, try again later.\r\n");
		sora_conn_resume(c);
		return;
	}
	if (sora_pop3_front_err(c, "[AUTH] Authentication failed."))
		sora_conn_resume(c);
}

static void start_login(struct sora_conn *c, const char *mechanism, struct sora_str authzid,
			struct sora_str authcid, struct sora_str password)
{
	struct sora_login_request req = {
		.protocol = "pop3",
		.mechanism = mechanism,
		.pool = front(c)->ops->db(),
		.authzid = authzid,
		.authcid = authcid,
		.password = password,
		.client = sora_preauth_client(c),
	};

	front(c)->login_running = true;
	if (sora_login_start(c, &req, login_done, NULL) < 0) {
		front(c)->login_running = false;
		sora_conn_printf(c, "-ERR [SYS/TEMP] Server busy, try again later.\r\n");
	}
}

/* False when the command may not log in (answered). */
static bool login_precheck(struct sora_conn *c)
{
	if (!login_available(c)) {
		sora_conn_printf(c, "-ERR [SYS/PERM] Login is not available on this server.\r\n");
		return false;
	}
	if (!sora_pop3_front_login_allowed(c)) {
		sora_conn_printf(c, "-ERR [AUTH] Plaintext authentication disallowed on non-secure "
				 "connections: use STLS.\r\n");
		return false;
	}
	return true;
}

static void cmd_user(struct sora_conn *c, const struct sora_pop3_command *cmd)
{
	struct sora_pop3_front *f = front(c);

	f->have_user = false;
	if (cmd->rest.len == 0) {
		sora_pop3_front_err(c, "USER takes a user name.");
		return;
	}
	if (!login_precheck(c))
		return;
	if (!sora_login_name_ok(cmd->rest)) {
		sora_pop3_front_err(c, "[AUTH] Invalid user name.");
		return;
	}
	memcpy(f->user, cmd->rest.p, cmd->rest.len);
	f->user[cmd->rest.len] = '\0';
	f->have_user = true;
	sora_conn_printf(c, "+OK\r\n");
}

static void cmd_pass(struct sora_conn *c, const struct sora_pop3_command *cmd)
{
	struct sora_pop3_front *f = front(c);

	if (!f->have_user) {
		sora_pop3_front_err(c, "No user name given: send USER first.");
		return;
	}
	f->have_user = false;
	if (!login_precheck(c))
		return;
	start_login(c, "USER", sora_str_make("", 0), sora_str_c(f->user), cmd->rest);
	sodium_memzero(f->user, sizeof(f->user));
}

static void sasl_response(struct sora_conn *c, struct sora_str b64)
{
	struct sora_buf buf = { 0 };
	struct sora_str authzid, authcid, password;

	if (b64.len == 1 && b64.p[0] == '=')
		b64.len = 0;
	if (sora_sasl_plain_decode(b64, &buf, &authzid, &authcid, &password) < 0) {
		sora_pop3_front_err(c, "Invalid SASL PLAIN response.");
	} else if (!sora_login_name_ok(authcid) || authzid.len >= SORA_LOGIN_NAME_SIZE) {
		sora_pop3_front_err(c, "[AUTH] Authentication failed.");
	} else {
		start_login(c, "PLAIN", authzid, authcid, password);
	}
	if (buf.data != NULL)
		sodium_memzero(buf.data, buf.cap);
	sora_buf_free(&buf);
}

static void cmd_auth(struct sora_conn *c, const struct sora_pop3_command *cmd)
{
	struct sora_pop3_front *f = front(c);

	f->have_user = false;
	if (cmd->args_count == 0) {
		/* The mechanism list (RFC 1734 clients ask for it). */
		if (login_available(c) && sora_pop3_front_login_allowed(c))
			sora_conn_printf(c, "+OK\r\nPLAIN\r\n.\r\n");
		else
			sora_conn_printf(c, "+OK\r\n.\r\n");
		return;
	}
	if (cmd->args_count > 2) {
		sora_pop3_front_err(c, "AUTH takes a mechanism and an initial response.");
		return;
	}
	if (!login_precheck(c))
		return;
	if (!sora_str_ieq_c(cmd->args[0], "PLAIN")) {
		sora_pop3_front_err(c, "Unsupported authentication mechanism.");
		return;
	}
	if (cmd->args_count == 2) {
		sasl_response(c, cmd->args[1]);
		return;
	}
	f->sasl_pending = true;
	sora_pop3_parser_set_raw(f->pre.proto, true);
	sora_conn_printf(c, "+ \r\n");
}

static void cmd_xclient(struct sora_conn *c, const struct sora_pop3_command *cmd)
{
	struct sora_pop3_front *f = front(c);
	struct sora_pop3_xclient x;
	const char *error;

	if (!sora_conn_link_trusted(c)) {
		sora_warn(sora_conn_log_ctx(c), "XCLIENT refused: peer is not in trusted_networks");
		sora_pop3_front_err(c, "You are not from a trusted network.");
		return;
	}
	if (sora_pop3_xclient_parse(cmd, &x, &error) < 0) {
		sora_pop3_front_err(c, "%s", error);
		return;
	}
	if (x.has_addr)
		sora_ip_format(&x.addr, f->pre.fwd_ip, sizeof(f->pre.fwd_ip));
	if (x.has_port)
		snprintf(f->pre.fwd_port, sizeof(f->pre.fwd_port), "%u", (unsigned)x.port);
	if (x.session[0] != '\0')
		sora_strlcpy(f->pre.fwd_session, x.session, sizeof(f->pre.fwd_session));
	sora_preauth_log_forwarded(c);
	sora_conn_printf(c, "+OK\r\n");
}

/* ---- dispatch ------------------------------------------------------------- */

/* Returns false when the session ends, switches to TLS or waits for a job. */
static bool front_command(struct sora_conn *c, const struct sora_pop3_command *cmd)
{
	struct sora_pop3_front *f = front(c);
	struct sora_str name = cmd->name;

	if (f->sasl_pending) {
		f->sasl_pending = false;
		if (cmd->line.len == 1 && cmd->line.p[0] == '*')
			sora_pop3_front_err(c, "Authentication aborted.");
		else
			sasl_response(c, cmd->line);
	} else if (sora_str_ieq_c(name, "CAPA")) {
		sora_pop3_front_capa(c);
	} else if (sora_str_ieq_c(name, "QUIT")) {
		sora_conn_printf(c, "+OK Bye.\r\n");
		sora_conn_close(c, SORA_CLOSE_NORMAL);
		return false;
	} else if (sora_str_ieq_c(name, "STLS")) {
		if (!stls_available(c))
			return sora_pop3_front_err(c, sora_conn_is_tls(c) ? "TLS is already active."
									   : "STLS is not available.");
		sora_conn_printf(c, "+OK Begin TLS negotiation now.\r\n");
		/* RFC 2595 §4: what the client said before is forgotten. */
		f->have_user = false;
		if (sora_conn_starttls(c) < 0) {
			sora_conn_printf(c, "-ERR TLS setup failed.\r\n");
			sora_conn_close(c, SORA_CLOSE_ERROR);
		}
		/* Whatever followed in the same read is dropped by the
		 * connection layer (no command injection before TLS). */
		return false;
	} else if (sora_str_ieq_c(name, "USER")) {
		cmd_user(c, cmd);
	} else if (sora_str_ieq_c(name, "PASS")) {
		cmd_pass(c, cmd);
	} else if (sora_str_ieq_c(name, "AUTH")) {
		cmd_auth(c, cmd);
	} else if (sora_str_ieq_c(name, "XCLIENT")) {
		cmd_xclient(c, cmd);
	} else if (sora_str_ieq_c(name, "APOP")) {
		sora_pop3_front_err(c, "APOP is not supported.");
	} else {
		return sora_pop3_front_err(c, "Unknown command or not valid before login.") &&
		       !sora_conn_closing(c);
	}
	return !sora_conn_closing(c) && !f->login_running && !f->authenticated;
}

size_t sora_pop3_front_feed(struct sora_conn *c, const char *data, size_t len,
			    const struct sora_pop3_events *ev)
{
	struct sora_pop3_front *f = front(c);
	struct sora_pop3_parser *p = f != NULL ? f->pre.proto : NULL;
	size_t total = 0;

	if (p == NULL)
		return len;
	pthread_once(&metrics_once, metrics_init);
	while (total < len) {
		size_t used = 0;
		enum sora_pop3_parse_result r = sora_pop3_parser_feed(p, data + total, len - total, &used);
		const char *text;
		bool go_on = true;

		total += used;
		/* A partial line is held by the parser, not the connection: say
		 * that a command is in transit, for min_bytes_per_minute. */
		sora_conn_set_transfer(c, !sora_pop3_parser_idle(p));
		if (r == SORA_POP3_PARSE_NEED_MORE)
			break;
		if (r == SORA_POP3_PARSE_ERROR) {
			sora_pop3_parser_error(p, &text);
			sora_metric_inc(m_bad);
			if (f->sasl_pending) {
				f->sasl_pending = false;
				text = "Invalid SASL response.";
			}
			go_on = sora_pop3_front_err(c, "%s", text);
		} else {
			go_on = ev->command(c, sora_pop3_parser_command(p));
		}
		if (!go_on || sora_conn_closing(c))
			break;
	}
	return total;
}

static const struct sora_pop3_events front_events = {
	.command = front_command,
};

size_t sora_pop3_front_input(struct sora_conn *c, const char *data, size_t len)
{
	if (front(c) == NULL)
		return len;
	return sora_pop3_front_feed(c, data, len, &front_events);
}

void sora_pop3_front_overflow(struct sora_conn *c)
{
	sora_conn_printf(c, "-ERR Command line too long.\r\n");
}

void sora_pop3_front_reject(struct sora_conn *c, enum sora_reject_reason why)
{
	sora_preauth_reject(c, &pop3_style, why);
}

void sora_pop3_front_farewell(struct sora_conn *c, enum sora_close_reason why)
{
	sora_preauth_farewell(c, &pop3_style, why);
}

void sora_pop3_front_close(struct sora_conn *c)
{
	struct sora_pop3_front *f = front(c);

	if (f != NULL) {
		struct sora_pop3_parser *p = f->pre.proto;

		sora_pop3_parser_free(&p);
		f->pre.proto = NULL;
		sodium_memzero(f->user, sizeof(f->user));
	}
}

/* ---- the front end alone (sora-proxy until it routes: no login) -------- */

static const struct sora_pop3_front_ops no_login_ops = {
	.db = NULL,
};

static void pop3_open(struct sora_conn *c)
{
	sora_pop3_front_open(c, &no_login_ops, sizeof(struct sora_pop3_front));
}

static void pop3_close(struct sora_conn *c, enum sora_close_reason why)
{
	sora_pop3_front_close(c);
	sora_preauth_close(c, why);
}

const struct sora_conn_handler sora_pop3_preauth_handler = {
	.protocol = "pop3",
	/* The parser consumes input as it arrives (it keeps one line); this
	 * only bounds what piles up while a job runs or output is blocked. */
	.max_pending_input = SORA_POP3_MAX_LINE + 2,
	.open = pop3_open,
	.input = sora_pop3_front_input,
	.input_overflow = sora_pop3_front_overflow,
	.reject = sora_pop3_front_reject,
	.farewell = sora_pop3_front_farewell,
	.close = pop3_close,
};
