/* ManageSieve before login: see sieve-front.h.
 *
 * Input goes through the ManageSieve parser one command at a time; nothing
 * is taken from the input while a login job runs (the connection is
 * paused), so commands pipelined behind AUTHENTICATE wait for its outcome
 * and, after a successful login, belong to whoever owns the session then
 * (the proxy's relay). The continuation of an AUTHENTICATE without an
 * initial response is one string (quoted or literal) on a line of its own,
 * or "*" to abort (RFC 5804 2.1). */
#include "common/session/sieve-front.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/net/workers.h"
#include "common/proto/cmdline.h"
#include "common/session/login.h"

#define SIEVE_MAX_LINE 8192
#define SIEVE_MAX_LITERAL 8192

static const struct sora_sieve_params parser_params = {
	.max_line = SIEVE_MAX_LINE,
	.max_literal = SIEVE_MAX_LITERAL,
};

static const struct sora_preauth_style sieve_style = {
	.bye = "BYE",
	.temp_code = "(TRYLATER)",
	.max_line = SIEVE_MAX_LINE,
};

static struct sora_sieve_front *front(struct sora_conn *c)
{
	return sora_conn_data(c);
}

static bool login_available(struct sora_conn *c)
{
	const struct sora_sieve_front_ops *ops = front(c)->ops;

	return ops->db != NULL && ops->db() != NULL;
}

static bool login_allowed(struct sora_conn *c)
{
	return sora_login_plaintext_allowed(c);
}

static void capabilities(struct sora_conn *c)
{
	const struct sora_sieve_front_ops *ops = front(c)->ops;
	const char *ext = ops->extensions != NULL ? ops->extensions(c) : NULL;
	bool starttls = sora_conn_server(c)->tls_use_starttls && !sora_conn_is_tls(c) &&
			sora_conn_tls_available(c);

	sora_conn_printf(c, "\"IMPLEMENTATION\" \"Sora\"\r\n\"SIEVE\" \"%s\"\r\n",
			 ext != NULL ? ext : "");
	if (login_available(c) && login_allowed(c))
		sora_conn_printf(c, "\"SASL\" \"PLAIN\"\r\n");
	else
		sora_conn_printf(c, "\"SASL\" \"\"\r\n");
	if (starttls)
		sora_conn_printf(c, "\"STARTTLS\"\r\n");
	sora_conn_printf(c, "\"VERSION\" \"1.0\"\r\nOK \"Sora ManageSieve ready.\"\r\n");
}

bool sora_sieve_front_open(struct sora_conn *c, const struct sora_sieve_front_ops *ops,
			   size_t session_size)
{
	if (!sora_preauth_open_size(c, &sieve_style, session_size))
		return false;
	front(c)->ops = ops;
	capabilities(c);
	return true;
}

void sora_sieve_front_tls_ready(struct sora_conn *c)
{
	struct sora_sieve_front *f = front(c);

	if (f != NULL && !f->authenticated)
		capabilities(c);
}

/* Counts an error; false when that ended the session. */
static bool count_error(struct sora_conn *c)
{
	if (sora_preauth_count_error(c)) {
		sora_conn_printf(c, "BYE \"Too many invalid commands.\"\r\n");
		sora_conn_close(c, SORA_CLOSE_PROTOCOL);
		return false;
	}
	return true;
}

/* ---- login ------------------------------------------------------------- */

/* The outcome of the shared credentials job (login.h: master user, master
 * SASL, aliases, "+detail", the timing equaliser, metrics). */
static void login_done(struct sora_conn *c, enum sora_login_result result,
		       const struct sora_login *login, void *ctx)
{
	struct sora_sieve_front *f = front(c);

	f->login_running = false;
	if (sora_conn_closing(c))
		return;
	if (result == SORA_LOGIN_OK) {
		struct sora_sieve_login l = { .account_id = login->account_id,
					      .master = login->master };

		sora_strlcpy(l.user, login->user, sizeof(l.user));
		f->authenticated = true;
		sora_conn_set_user(c, l.user);
		f->ops->authenticated(c, &l);
		return;
	}
	if (result == SORA_LOGIN_TEMPFAIL) {
		sora_conn_printf(c, "NO (TRYLATER) \"Temporary authentication failure.\"\r\n");
		sora_conn_resume(c);
		return;
	}
	sora_conn_printf(c, "NO \"Authentication failed.\"\r\n");
	if (count_error(c))
		sora_conn_resume(c);
}

static void start_login(struct sora_conn *c, struct sora_str b64)
{
	struct sora_sieve_front *f = front(c);
	struct sora_buf buf = { 0 };
	struct sora_login_request req = { .protocol = "managesieve", .mechanism = "PLAIN" };

	if (b64.len == 1 && b64.p[0] == '=')
		b64.len = 0;
	if (sora_sasl_plain_decode(b64, &buf, &req.authzid, &req.authcid, &req.password) < 0 ||
	    !sora_login_name_ok(req.authcid) || req.authzid.len >= SORA_LOGIN_NAME_SIZE) {
		sora_conn_printf(c, "NO \"Authentication failed.\"\r\n");
		count_error(c);
		goto out;
	}
	req.pool = f->ops->db();
	f->login_running = true;
	if (sora_login_start(c, &req, login_done, NULL) < 0) {
		f->login_running = false;
		sora_conn_printf(c, "NO (TRYLATER) \"Server busy, try again later.\"\r\n");
	}
out:
	if (buf.data != NULL)
		sodium_memzero(buf.data, buf.cap);
	sora_buf_free(&buf);
}

static void cmd_authenticate(struct sora_conn *c, const struct sora_sieve_command *cmd)
{
	if (cmd->nargs < 1 || cmd->nargs > 2 || cmd->args[0].type != SORA_SIEVE_ARG_STRING) {
		sora_conn_printf(c, "NO \"AUTHENTICATE takes a mechanism name.\"\r\n");
		count_error(c);
		return;
	}
	if (!login_available(c)) {
		sora_conn_printf(c, "NO (TRYLATER) \"Login is not available on this server.\"\r\n");
		return;
	}
	if (!login_allowed(c)) {
		sora_conn_printf(c, "NO (ENCRYPT-NEEDED) \"Use STARTTLS first.\"\r\n");
		return;
	}
	if (!sora_str_ieq_c(cmd->args[0].value, "PLAIN")) {
		sora_conn_printf(c, "NO \"Unsupported authentication mechanism.\"\r\n");
		count_error(c);
		return;
	}
	if (cmd->nargs == 2) {
		if (cmd->args[1].type != SORA_SIEVE_ARG_STRING) {
			sora_conn_printf(c, "NO \"Invalid SASL initial response.\"\r\n");
			count_error(c);
			return;
		}
		start_login(c, cmd->args[1].value);
		return;
	}
	front(c)->sasl_pending = true;
	sora_conn_printf(c, "\"\"\r\n");
}

/* Returns false when no more input may be taken now. */
static bool command(struct sora_conn *c, const struct sora_sieve_command *cmd)
{
	struct sora_sieve_front *f = front(c);

	if (sora_str_ieq_c(cmd->name, "CAPABILITY") && cmd->nargs == 0) {
		capabilities(c);
	} else if (sora_str_ieq_c(cmd->name, "NOOP") && cmd->nargs <= 1) {
		if (cmd->nargs == 1 && cmd->args[0].type == SORA_SIEVE_ARG_STRING)
			sora_conn_printf(c, "OK (TAG {%zu}\r\n%.*s) \"Done\"\r\n", cmd->args[0].value.len,
					 (int)cmd->args[0].value.len, cmd->args[0].value.p);
		else
			sora_conn_printf(c, "OK \"NOOP completed.\"\r\n");
	} else if (sora_str_ieq_c(cmd->name, "LOGOUT") && cmd->nargs == 0) {
		sora_conn_printf(c, "OK \"Logout completed.\"\r\n");
		sora_conn_close(c, SORA_CLOSE_NORMAL);
		return false;
	} else if (sora_str_ieq_c(cmd->name, "STARTTLS") && cmd->nargs == 0) {
		if (sora_conn_is_tls(c) || !sora_conn_server(c)->tls_use_starttls ||
		    !sora_conn_tls_available(c)) {
			sora_conn_printf(c, "NO \"STARTTLS is not available.\"\r\n");
			return count_error(c);
		}
		sora_conn_printf(c, "OK \"Begin TLS negotiation now.\"\r\n");
		if (sora_conn_starttls(c) < 0) {
			sora_conn_printf(c, "BYE \"TLS setup failed.\"\r\n");
			sora_conn_close(c, SORA_CLOSE_ERROR);
		}
		return false;
	} else if (sora_str_ieq_c(cmd->name, "AUTHENTICATE")) {
		cmd_authenticate(c, cmd);
	} else {
		sora_conn_printf(c, "NO \"Unknown command or not valid before login.\"\r\n");
		return count_error(c);
	}
	return !sora_conn_closing(c) && !f->login_running && !f->sasl_pending;
}

/* The SASL response line: a quoted string, a literal, or "*". */
static size_t sasl_input(struct sora_conn *c, const char *data, size_t len)
{
	struct sora_sieve_front *f = front(c);
	struct sora_sieve_command *cmd = &f->cmd;
	size_t consumed, used;
	long n = sora_line_find(data, len, &consumed);
	bool fatal;
	const char *error;
	char *buf;

	if (n < 0) {
		if (len > SIEVE_MAX_LINE + SIEVE_MAX_LITERAL) {
			sora_conn_printf(c, "BYE \"SASL response too long.\"\r\n");
			sora_conn_close(c, SORA_CLOSE_PROTOCOL);
			return len;
		}
		return 0;
	}
	if (n == 3 && memcmp(data, "\"*\"", 3) == 0) {
		f->sasl_pending = false;
		sora_conn_printf(c, "NO \"Authentication aborted.\"\r\n");
		count_error(c);
		return consumed;
	}
	/* Parse "X <string>" through the command parser, so quoted strings
	 * and literals follow one grammar. */
	buf = malloc(len + 2);
	if (buf == NULL) {
		sora_conn_close(c, SORA_CLOSE_ERROR);
		return len;
	}
	buf[0] = 'X';
	buf[1] = ' ';
	memcpy(buf + 2, data, len);
	switch (sora_sieve_parse(&parser_params, buf, len + 2, cmd, &used, &fatal, &error)) {
	case SORA_SIEVE_NEED_MORE:
		sodium_memzero(buf, len + 2);
		free(buf);
		return 0;
	case SORA_SIEVE_COMMAND:
		f->sasl_pending = false;
		if (cmd->nargs == 1 && cmd->args[0].type == SORA_SIEVE_ARG_STRING) {
			start_login(c, cmd->args[0].value);
		} else {
			sora_conn_printf(c, "NO \"Invalid SASL response.\"\r\n");
			count_error(c);
		}
		break;
	case SORA_SIEVE_ERROR:
		f->sasl_pending = false;
		sora_conn_printf(c, "NO \"Invalid SASL response.\"\r\n");
		if (fatal || used == 0) {
			sora_conn_close(c, SORA_CLOSE_PROTOCOL);
			used = len + 2;
		} else {
			count_error(c);
		}
		break;
	}
	sodium_memzero(buf, len + 2);
	free(buf);
	return used - 2;
}

size_t sora_sieve_front_input(struct sora_conn *c, const char *data, size_t len)
{
	struct sora_sieve_front *f = front(c);
	size_t total = 0;

	if (f == NULL || f->authenticated)
		return 0;
	while (total < len && !sora_conn_closing(c) && !f->login_running) {
		size_t used = 0;
		bool fatal = false;
		const char *error = NULL;
		enum sora_sieve_result r;

		if (f->sasl_pending) {
			used = sasl_input(c, data + total, len - total);
			if (used == 0)
				break;
			total += used;
			continue;
		}
		r = sora_sieve_parse(&parser_params, data + total, len - total, &f->cmd, &used,
				     &fatal, &error);
		if (r == SORA_SIEVE_NEED_MORE)
			break;
		if (r == SORA_SIEVE_ERROR) {
			if (fatal || used == 0) {
				sora_conn_printf(c, "BYE \"%s\"\r\n", error);
				sora_conn_close(c, SORA_CLOSE_PROTOCOL);
				return len;
			}
			total += used;
			sora_conn_printf(c, "NO \"%s\"\r\n", error);
			if (!count_error(c))
				return len;
			continue;
		}
		total += used;
		if (!command(c, &f->cmd))
			break;
	}
	return total;
}

void sora_sieve_front_reject(struct sora_conn *c, enum sora_reject_reason why)
{
	sora_conn_printf(c, "BYE (TRYLATER) \"Too many connections%s, try again later.\"\r\n",
			 why == SORA_REJECT_MAX_PER_IP ? " from your address" : "");
}

void sora_sieve_front_farewell(struct sora_conn *c, enum sora_close_reason why)
{
	sora_conn_printf(c, "BYE %s\"%s\"\r\n", why == SORA_CLOSE_SHUTDOWN ? "(TRYLATER) " : "",
			 sora_close_reason_text(why));
}

void sora_sieve_front_overflow(struct sora_conn *c)
{
	sora_conn_printf(c, "BYE \"Command line too long.\"\r\n");
}

void sora_sieve_front_close(struct sora_conn *c, enum sora_close_reason why)
{
	sora_preauth_close(c, why);
}
