/* pop3_proxy: the POP3 front end (common/session/pop3-front.h, the same
 * parser and pre-auth ops table as sora-backend) up to a verified login,
 * then the backend login of proxy/login.h and the relay.
 *
 * Backend conversation:
 *   <- "+OK" greeting (anything else: try the next backend)
 *   -> without PROXY v2: XCLIENT ADDR=<ip> PORT=<port> SESSION=<id>
 *      (Dovecot's form, which sora-backend takes from trusted networks);
 *      <- +OK or -ERR (either way on)
 *   -> AUTH PLAIN <base64(user \0 master_sasl_username \0 master_sasl_password)>
 *   <- "+OK ..." (the maildrop is open): the client gets that line as the
 *      answer to its PASS / AUTH, then the relay;
 *   <- "-ERR [IN-USE] ...": another session holds the maildrop: the
 *      client gets that line and the session ends (RFC 2449 IN-USE is
 *      the client's to retry later);
 *   <- any other -ERR: the proxy's and backend's master SASL settings
 *      disagree: "-ERR [SYS/TEMP]" and the session ends. */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "common/config/config.h"
#include "common/session/pop3-front.h"
#include "proxy/login.h"
#include "proxy/pop3-proxy.h"
#include "proxy/proxy.h"

enum pop3_step {
	POP3_GREETING = 0,
	POP3_XCLIENT,
	POP3_AUTH,
};

struct pop3_proxy_session {
	struct sora_pop3_front front;   /* first: the front end's view */
	struct proxy_login login;
};

static struct pop3_proxy_session *sess(struct sora_conn *c)
{
	return sora_conn_data(c);
}

static bool starts(struct sora_str s, const char *prefix)
{
	size_t n = strlen(prefix);

	return s.len >= n && strncasecmp(s.p, prefix, n) == 0;
}

static void send_auth(struct proxy_login *l, struct sora_conn *be)
{
	char b64[1400];

	if (proxy_login_sasl_plain(l, b64, sizeof(b64)) < 0) {
		sora_conn_close(be, SORA_CLOSE_ERROR);
		return;
	}
	sora_conn_printf(be, "AUTH PLAIN %s\r\n", b64);
	sodium_memzero(b64, sizeof(b64));
	l->step = POP3_AUTH;
}

static enum proxy_login_step pop3_line(struct proxy_login *l, struct sora_conn *be,
				       struct sora_str line)
{
	switch (l->step) {
	case POP3_GREETING:
		if (!starts(line, "+OK"))
			return PROXY_LINE_RETRY;
		if (!sora_conn_server(l->client)->remote_use_proxy_protocol) {
			char ip[64], port[16];

			proxy_login_client_addr(l, ip, sizeof(ip), port, sizeof(port));
			if (ip[0] != '\0') {
				sora_conn_printf(be, "XCLIENT ADDR=%s%s%s SESSION=%s\r\n", ip,
						 port[0] ? " PORT=" : "", port, sora_conn_id(l->client));
				l->step = POP3_XCLIENT;
				return PROXY_LINE_MORE;
			}
		}
		send_auth(l, be);
		return PROXY_LINE_MORE;
	case POP3_XCLIENT:
		send_auth(l, be);
		return PROXY_LINE_MORE;
	case POP3_AUTH:
		if (starts(line, "+OK")) {
			snprintf(l->ok, sizeof(l->ok), "%.*s", (int)line.len, line.p);
			return PROXY_LINE_SUCCESS;
		}
		if (starts(line, "+ ") || (line.len == 1 && line.p[0] == '+')) {
			char b64[1400];

			if (proxy_login_sasl_plain(l, b64, sizeof(b64)) < 0)
				return PROXY_LINE_RETRY;
			sora_conn_printf(be, "%s\r\n", b64);
			sodium_memzero(b64, sizeof(b64));
			return PROXY_LINE_MORE;
		}
		if (starts(line, "-ERR [IN-USE]"))
			snprintf(l->ok, sizeof(l->ok), "%.*s", (int)line.len, line.p);
		return PROXY_LINE_REFUSED;
	}
	return PROXY_LINE_RETRY;
}

static void pop3_success(struct proxy_login *l)
{
	sora_conn_printf(l->client, "%s\r\n", l->ok[0] ? l->ok : "+OK Logged in.");
}

static void pop3_failure(struct proxy_login *l, const char *why)
{
	if (strncmp(l->ok, "-ERR [IN-USE]", 13) == 0)
		sora_conn_printf(l->client, "%s\r\n", l->ok);
	else
		sora_conn_printf(l->client, "-ERR [SYS/TEMP] Mail server temporarily unavailable, "
				 "try again later.\r\n");
}

static const struct proxy_login_ops pop3_login_ops = {
	.line = pop3_line,
	.success = pop3_success,
	.failure = pop3_failure,
};

static void authenticated(struct sora_conn *c, const struct sora_login *login)
{
	struct proxy_login *l = &sess(c)->login;

	/* Input stays paused until the relay. */
	sora_conn_pause(c);
	sora_strlcpy(l->user, login->user, sizeof(l->user));
	l->account_id = login->account_id;
	proxy_login_start(l);
}

static const struct sora_pop3_front_ops front_ops = {
	.db = sora_proxy_db,
	.authenticated = authenticated,
};

static void pop3_open(struct sora_conn *c)
{
	struct pop3_proxy_session *s;

	if (!sora_pop3_front_open(c, &front_ops, sizeof(struct pop3_proxy_session)))
		return;
	s = sess(c);
	s->login.client = c;
	s->login.ops = &pop3_login_ops;
}

static size_t pop3_input(struct sora_conn *c, const char *data, size_t len)
{
	struct pop3_proxy_session *s = sess(c);

	if (s == NULL || s->front.authenticated)
		return 0;
	return sora_pop3_front_input(c, data, len);
}

static void pop3_close(struct sora_conn *c, enum sora_close_reason why)
{
	struct pop3_proxy_session *s = sess(c);

	if (s != NULL)
		proxy_login_client_closed(&s->login);
	sora_pop3_front_close(c);
	sora_preauth_close(c, why);
}

const struct sora_conn_handler sora_pop3_proxy_handler = {
	.protocol = "pop3",
	.max_pending_input = SORA_POP3_MAX_LINE + 2,
	.open = pop3_open,
	.input = pop3_input,
	.input_overflow = sora_pop3_front_overflow,
	.reject = sora_pop3_front_reject,
	.farewell = sora_pop3_front_farewell,
	.close = pop3_close,
};
