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
#include "common/metrics/metrics.h"
#include "common/net/workers.h"
#include "common/proto/cmdline.h"
#include "common/session/imap-front.h"
#include "common/session/login-check.h"

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

static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;
static struct sora_metric_series *m_ok, *m_master, *m_failed, *m_tempfail;

static void metrics_init(void)
{
	struct sora_metric *l = sora_metric_counter(
		"sora_logins_total", "Login attempts by protocol and outcome.", "protocol,result");

	m_ok = sora_metric_with(l, "managesieve", "success");
	m_master = sora_metric_with(l, "managesieve", "master");
	m_failed = sora_metric_with(l, "managesieve", "failed");
	m_tempfail = sora_metric_with(l, "managesieve", "tempfail");
}

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
	return sora_conn_is_tls(c) || sora_conn_server(c)->insecure_auth ||
	       sora_conn_link_trusted(c);
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
	pthread_once(&metrics_once, metrics_init);
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

/* ---- login -------------------------------------------------------------- */

struct login_job {
	struct sora_login_request req;
	struct sora_login_result res;
	char *secret;            /* sodium_malloc: authzid, authcid, password */
	size_t secret_size;
};

static enum sora_job_status login_work(struct sora_job *job, void *arg)
{
	struct login_job *j = arg;

	sora_login_check(&j->req, &j->res);
	return SORA_JOB_DONE;
}

static void login_job_free(struct login_job *j)
{
	if (j->secret != NULL)
		sodium_free(j->secret);
	free(j);
}

static void login_done(struct sora_conn *c, void *arg)
{
	struct login_job *j = arg;
	struct sora_sieve_front *f = front(c);

	f->login_running = false;
	if (sora_conn_closing(c)) {
		login_job_free(j);
		return;
	}
	sora_metric_inc(j->res.ok ? (j->res.master ? m_master : m_ok)
				  : (j->res.temporary ? m_tempfail : m_failed));
	if (j->res.ok) {
		struct sora_sieve_login login = { .account_id = j->res.ref.account_id,
						  .master = j->res.master };

		sora_strlcpy(login.user, j->res.ref.primary_address, sizeof(login.user));
		f->authenticated = true;
		sora_conn_set_user(c, login.user);
		sora_info(sora_conn_log_ctx(c), "%slogin as %s from %s (PLAIN)",
			  login.master ? "master " : "", login.user, sora_conn_peer(c));
		login_job_free(j);
		f->ops->authenticated(c, &login);
		return;
	}
	if (j->res.temporary) {
		sora_warn(sora_conn_log_ctx(c), "login failed temporarily: %s", j->res.err.msg);
		sora_conn_printf(c, "NO (TRYLATER) \"Temporary authentication failure.\"\r\n");
		login_job_free(j);
		sora_conn_resume(c);
		return;
	}
	sora_info(sora_conn_log_ctx(c), "authentication failed from %s (PLAIN)", sora_conn_peer(c));
	sora_conn_printf(c, "NO \"Authentication failed.\"\r\n");
	login_job_free(j);
	if (count_error(c))
		sora_conn_resume(c);
}

static void start_login(struct sora_conn *c, struct sora_str b64)
{
	struct sora_sieve_front *f = front(c);
	struct sora_buf buf = { 0 };
	struct sora_str authzid, authcid, password;
	struct login_job *j;

	if (b64.len == 1 && b64.p[0] == '=')
		b64.len = 0;
	if (sora_sasl_plain_decode(b64, &buf, &authzid, &authcid, &password) < 0 ||
	    authcid.len >= SORA_ACCOUNTS_ADDRESS_SIZE || authzid.len >= SORA_ACCOUNTS_ADDRESS_SIZE) {
		if (buf.data != NULL)
			sodium_memzero(buf.data, buf.cap);
		sora_buf_free(&buf);
		sora_conn_printf(c, "NO \"Authentication failed.\"\r\n");
		count_error(c);
		return;
	}
	j = calloc(1, sizeof(*j));
	if (j != NULL) {
		j->secret_size = buf.len + 1;
		j->secret = sodium_malloc(j->secret_size);
	}
	if (j == NULL || j->secret == NULL) {
		if (j != NULL)
			free(j);
		sodium_memzero(buf.data, buf.cap);
		sora_buf_free(&buf);
		sora_conn_printf(c, "NO (TRYLATER) \"Server out of memory.\"\r\n");
		return;
	}
	memcpy(j->secret, buf.data, buf.len);
	j->req.pool = f->ops->db();
	j->req.srv = sora_conn_server(c);
	j->req.master_sasl_network = sora_login_master_network(c);
	j->req.authzid = sora_str_make(j->secret + (authzid.p - buf.data), authzid.len);
	j->req.authcid = sora_str_make(j->secret + (authcid.p - buf.data), authcid.len);
	j->req.password = sora_str_make(j->secret + (password.p - buf.data), password.len);
	sodium_memzero(buf.data, buf.cap);
	sora_buf_free(&buf);
	f->login_running = true;
	if (sora_job_submit(c, login_work, login_done, j) < 0) {
		f->login_running = false;
		login_job_free(j);
		sora_conn_printf(c, "NO (TRYLATER) \"Server busy, try again later.\"\r\n");
	}
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
