/* managesieve_proxy: the ManageSieve front end (common/session/
 * sieve-front.h) up to a verified login, then the backend login of
 * proxy/login.h and the relay. Works against Dovecot's managesieve with a
 * master user until the project has its own ManageSieve server.
 *
 * Backend conversation:
 *   <- capability lines ("SIEVE" is kept for our own greeting), then OK;
 *      BYE or anything else: try the next backend
 *   -> AUTHENTICATE "PLAIN" "<base64(user \0 master_sasl_username \0
 *      master_sasl_password)>" (Dovecot: a master passdb user logs in as
 *      the authorization identity)
 *   <- OK ...: the client gets that line as the answer to its own
 *      AUTHENTICATE, then the relay; NO: NO (TRYLATER) for the client.
 * The client's address reaches the backend in the PROXY v2 header
 * (Dovecot: haproxy = yes on the listener); ManageSieve has no forwarding
 * command, so without PROXY the backend sees the proxy. */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "common/config/config.h"
#include "common/session/sieve-front.h"
#include "proxy/login.h"
#include "proxy/proxy.h"
#include "proxy/sieve-proxy.h"

#define DEFAULT_SIEVE_EXT "fileinto reject envelope encoded-character vacation subaddress " \
	"comparator-i;ascii-numeric relational regex imap4flags copy include variables body " \
	"enotify environment mailbox date index ihave duplicate mime foreverypart extracttext"

enum sieve_step {
	SIEVE_GREETING = 0,
	SIEVE_AUTH,
};

struct sieve_proxy_session {
	struct sora_sieve_front front;   /* first */
	struct proxy_login login;
	char ext[1024];
};

static struct sieve_proxy_session *sess(struct sora_conn *c)
{
	return sora_conn_data(c);
}

static bool starts(struct sora_str s, const char *prefix)
{
	size_t n = strlen(prefix);

	return s.len >= n && strncasecmp(s.p, prefix, n) == 0;
}

static enum proxy_login_step sieve_line(struct proxy_login *l, struct sora_conn *be,
					struct sora_str line)
{
	char b64[1400];

	switch (l->step) {
	case SIEVE_GREETING:
		if (starts(line, "\"SIEVE\" \"") && line.len > 10 && line.p[line.len - 1] == '"') {
			proxy_pool_set_sieve_ext(l->pool, line.p + 9, line.len - 10);
			return PROXY_LINE_MORE;
		}
		if (starts(line, "\""))
			return PROXY_LINE_MORE;
		if (!starts(line, "OK"))
			return PROXY_LINE_RETRY;
		if (proxy_login_sasl_plain(l, b64, sizeof(b64)) < 0)
			return PROXY_LINE_RETRY;
		sora_conn_printf(be, "AUTHENTICATE \"PLAIN\" \"%s\"\r\n", b64);
		sodium_memzero(b64, sizeof(b64));
		l->step = SIEVE_AUTH;
		return PROXY_LINE_MORE;
	case SIEVE_AUTH:
		if (starts(line, "OK")) {
			snprintf(l->ok, sizeof(l->ok), "%.*s", (int)line.len, line.p);
			return PROXY_LINE_SUCCESS;
		}
		if (starts(line, "NO"))
			return PROXY_LINE_REFUSED;
		return PROXY_LINE_RETRY;
	}
	return PROXY_LINE_RETRY;
}

static void sieve_success(struct proxy_login *l)
{
	sora_conn_printf(l->client, "%s\r\n", l->ok);
}

static void sieve_failure(struct proxy_login *l, const char *why)
{
	sora_conn_printf(l->client, "NO (TRYLATER) \"Mail server temporarily unavailable, "
			 "try again later.\"\r\n");
}

static const struct proxy_login_ops sieve_login_ops = {
	.line = sieve_line,
	.success = sieve_success,
	.failure = sieve_failure,
};

static const char *extensions(struct sora_conn *c)
{
	struct sieve_proxy_session *s = sess(c);
	struct proxy_pool *pool = sora_proxy_pool(sora_conn_server(c));

	if (pool != NULL)
		proxy_pool_sieve_ext(pool, s->ext, sizeof(s->ext));
	return s->ext[0] != '\0' ? s->ext : DEFAULT_SIEVE_EXT;
}

static void authenticated(struct sora_conn *c, const struct sora_sieve_login *login)
{
	struct proxy_login *l = &sess(c)->login;

	sora_conn_pause(c);
	sora_strlcpy(l->user, login->user, sizeof(l->user));
	l->account_id = login->account_id;
	proxy_login_start(l);
}

static const struct sora_sieve_front_ops front_ops = {
	.db = sora_proxy_db,
	.extensions = extensions,
	.authenticated = authenticated,
};

static void sieve_open(struct sora_conn *c)
{
	struct sieve_proxy_session *s;

	/* The session is zeroed and the front end's greeting calls
	 * extensions(), which needs nothing else set. */
	if (!sora_sieve_front_open(c, &front_ops, sizeof(struct sieve_proxy_session)))
		return;
	s = sess(c);
	s->login.client = c;
	s->login.ops = &sieve_login_ops;
}

static void sieve_close(struct sora_conn *c, enum sora_close_reason why)
{
	struct sieve_proxy_session *s = sess(c);

	if (s != NULL)
		proxy_login_client_closed(&s->login);
	sora_sieve_front_close(c, why);
}

const struct sora_conn_handler sora_sieve_proxy_handler = {
	.protocol = "managesieve",
	.max_pending_input = SORA_SIEVE_MAX_PENDING,
	.open = sieve_open,
	.input = sora_sieve_front_input,
	.input_overflow = sora_sieve_front_overflow,
	.reject = sora_sieve_front_reject,
	.farewell = sora_sieve_front_farewell,
	.close = sieve_close,
	.tls_ready = sora_sieve_front_tls_ready,
};
