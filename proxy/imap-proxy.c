/* imap_proxy: the IMAP front end (common/session/imap-front.h, the same
 * parser and pre-auth ops table as sora-backend) up to a verified login,
 * then the backend login of proxy/login.h and the relay.
 *
 * Backend conversation (tags S1, S2 cannot clash: the client is paused):
 *   <- "* OK ..." greeting (anything else, e.g. "* BYE" over a connection
 *      limit: try the next backend)
 *   -> without PROXY v2: S1 ID ("x-originating-ip" IP "x-originating-port"
 *      PORT "x-session-id" ID), the fields sora-backend (and Dovecot)
 *      take from a trusted peer; <- "S1 ..."
 *   -> S2 AUTHENTICATE PLAIN <base64(user \0 master_sasl_username \0
 *      master_sasl_password)> (SASL-IR)
 *   <- "S2 OK [CAPABILITY ...] ..." -> the client gets "TAG OK
 *      [CAPABILITY ...] ..." with its own tag, and the relay starts.
 *   <- "S2 NO ..." -> the client gets NO [UNAVAILABLE]: the proxy's and
 *      the backend's master SASL settings disagree, which no other backend
 *      would fix.
 * What the client sends is never forwarded before that: the proxy parses
 * and answers it (ID fields included), so a client cannot smuggle a PROXY
 * header, forwarding fields or XCLIENT to a backend; the only ones the
 * backend sees are those the proxy writes, naming the client's real
 * address (the socket's, or the one a trusted load balancer gave in its
 * PROXY header). */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "common/config/config.h"
#include "common/session/imap-front.h"
#include "proxy/imap-proxy.h"
#include "proxy/login.h"
#include "proxy/proxy.h"

enum imap_step {
	IMAP_GREETING = 0,
	IMAP_ID,
	IMAP_AUTH,
};

struct imap_proxy_session {
	struct sora_imap_front front;   /* first: the front end's view */
	struct proxy_login login;
};

static struct imap_proxy_session *sess(struct sora_conn *c)
{
	return sora_conn_data(c);
}

static void send_auth(struct proxy_login *l, struct sora_conn *be)
{
	char b64[1400];

	if (proxy_login_sasl_plain(l, b64, sizeof(b64)) < 0) {
		sora_conn_close(be, SORA_CLOSE_ERROR);
		return;
	}
	sora_conn_printf(be, "S2 AUTHENTICATE PLAIN %s\r\n", b64);
	sodium_memzero(b64, sizeof(b64));
	l->step = IMAP_AUTH;
}

static bool starts(struct sora_str s, const char *prefix)
{
	size_t n = strlen(prefix);

	return s.len >= n && strncasecmp(s.p, prefix, n) == 0;
}

static enum proxy_login_step imap_line(struct proxy_login *l, struct sora_conn *be,
				       struct sora_str line)
{
	switch (l->step) {
	case IMAP_GREETING:
		if (!starts(line, "* OK"))
			return PROXY_LINE_RETRY;
		if (!sora_conn_server(l->client)->remote_use_proxy_protocol) {
			char ip[64], port[16];

			proxy_login_client_addr(l, ip, sizeof(ip), port, sizeof(port));
			sora_conn_printf(be, "S1 ID (\"x-originating-ip\" \"%s\" \"x-originating-port\" "
					 "\"%s\" \"x-session-id\" \"%s\")\r\n", ip, port,
					 sora_conn_id(l->client));
			l->step = IMAP_ID;
		} else {
			send_auth(l, be);
		}
		return PROXY_LINE_MORE;
	case IMAP_ID:
		if (starts(line, "* BYE"))
			return PROXY_LINE_RETRY;
		if (starts(line, "S1 "))
			send_auth(l, be);
		return PROXY_LINE_MORE;
	case IMAP_AUTH:
		if (starts(line, "* BYE"))
			return PROXY_LINE_RETRY;
		if (starts(line, "+")) {
			/* A backend without SASL-IR asks for the response. */
			char b64[1400];

			if (proxy_login_sasl_plain(l, b64, sizeof(b64)) < 0)
				return PROXY_LINE_RETRY;
			sora_conn_printf(be, "%s\r\n", b64);
			sodium_memzero(b64, sizeof(b64));
			return PROXY_LINE_MORE;
		}
		if (starts(line, "S2 OK")) {
			size_t skip = 5;

			while (skip < line.len && line.p[skip] == ' ')
				skip++;
			snprintf(l->ok, sizeof(l->ok), "%.*s", (int)(line.len - skip), line.p + skip);
			return PROXY_LINE_SUCCESS;
		}
		if (starts(line, "S2 "))
			return PROXY_LINE_REFUSED;
		return PROXY_LINE_MORE;
	}
	return PROXY_LINE_RETRY;
}

static void imap_success(struct proxy_login *l)
{
	sora_conn_printf(l->client, "%s OK %s\r\n", l->tag, l->ok[0] ? l->ok : "Logged in.");
}

static void imap_failure(struct proxy_login *l, const char *why)
{
	sora_conn_printf(l->client, "%s NO [UNAVAILABLE] Mail server temporarily unavailable, "
			 "try again later.\r\n* BYE [UNAVAILABLE] Try again later.\r\n", l->tag);
}

static const struct proxy_login_ops imap_login_ops = {
	.line = imap_line,
	.success = imap_success,
	.failure = imap_failure,
};

static void authenticated(struct sora_conn *c, struct sora_str tag,
			  const struct sora_login *login)
{
	struct imap_proxy_session *s = sess(c);
	struct proxy_login *l = &s->login;

	/* Input stays paused (the login job paused it) until the relay. */
	sora_conn_pause(c);
	snprintf(l->tag, sizeof(l->tag), "%.*s", (int)tag.len, tag.p);
	sora_strlcpy(l->user, login->user, sizeof(l->user));
	l->account_id = login->account_id;
	proxy_login_start(l);
}

static const struct sora_imap_front_ops proxy_front_ops = {
	.db = sora_proxy_db,
	.authenticated = authenticated,
};

static void imap_proxy_open(struct sora_conn *c)
{
	struct imap_proxy_session *s;

	if (!sora_imap_front_open(c, &proxy_front_ops, sizeof(struct imap_proxy_session)))
		return;
	s = sess(c);
	s->login.client = c;
	s->login.ops = &imap_login_ops;
}

static size_t imap_proxy_input(struct sora_conn *c, const char *data, size_t len)
{
	struct imap_proxy_session *s = sess(c);

	/* After a verified login nothing is parsed here any more: the rest
	 * waits for the relay. */
	if (s == NULL || s->front.authenticated)
		return 0;
	return sora_imap_front_input(c, data, len);
}

static void imap_proxy_close(struct sora_conn *c, enum sora_close_reason why)
{
	struct imap_proxy_session *s = sess(c);

	if (s != NULL)
		proxy_login_client_closed(&s->login);
	sora_imap_front_close(c);
	sora_preauth_close(c, why);
}

const struct sora_conn_handler sora_imap_proxy_handler = {
	.protocol = "imap",
	.max_pending_input = 65536 + 8192 + 2,
	.open = imap_proxy_open,
	.input = imap_proxy_input,
	.input_overflow = sora_imap_front_overflow,
	.reject = sora_imap_front_reject,
	.farewell = sora_imap_front_farewell,
	.close = imap_proxy_close,
};
