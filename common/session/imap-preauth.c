/* IMAP before login: RFC 9051 §6.1 (any state) and §6.2 (not authenticated). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/proto/cmdline.h"
#include "common/session/preauth.h"

#define IMAP_MAX_LINE 8192

struct imap_preauth {
	int errors;
};

static void imap_capabilities(struct sora_conn *c, char *buf, size_t size)
{
	bool starttls = sora_conn_server(c)->tls_use_starttls && !sora_conn_is_tls(c) &&
			sora_conn_tls_available(c);

	snprintf(buf, size, "IMAP4rev1 ID%s LOGINDISABLED",
		 starttls ? " STARTTLS" : "");
}

static void imap_open(struct sora_conn *c)
{
	struct imap_preauth *s = calloc(1, sizeof(*s));
	char caps[256];

	if (s == NULL) {
		sora_conn_printf(c, "* BYE [UNAVAILABLE] Server out of memory\r\n");
		sora_conn_close(c, SORA_CLOSE_ERROR);
		return;
	}
	sora_conn_set_data(c, s);
	imap_capabilities(c, caps, sizeof(caps));
	sora_conn_printf(c, "* OK [CAPABILITY %s] Sora ready.\r\n", caps);
}

static void imap_bad(struct sora_conn *c, struct imap_preauth *s, struct sora_str tag, const char *msg)
{
	const struct sora_server_config *srv = sora_conn_server(c);

	s->errors++;
	if (tag.len > 0)
		sora_conn_printf(c, "%.*s BAD %s\r\n", (int)tag.len, tag.p, msg);
	else
		sora_conn_printf(c, "* BAD %s\r\n", msg);
	if (srv->max_errors > 0 && s->errors >= srv->max_errors) {
		sora_info(sora_conn_log_ctx(c), "too many invalid commands (%d): closing", s->errors);
		sora_conn_printf(c, "* BYE Too many invalid commands.\r\n");
		sora_conn_close(c, SORA_CLOSE_PROTOCOL);
	}
}

static void imap_command(struct sora_conn *c, struct imap_preauth *s, struct sora_str line)
{
	struct sora_imap_cmdline cmd;
	const char *error;
	char caps[256];
	int tl;

	if (sora_imap_cmdline_parse(line, &cmd, &error) < 0) {
		imap_bad(c, s, cmd.tag, error);
		return;
	}
	tl = (int)cmd.tag.len;
	if (sora_str_ieq_c(cmd.command, "CAPABILITY")) {
		imap_capabilities(c, caps, sizeof(caps));
		sora_conn_printf(c, "* CAPABILITY %s\r\n%.*s OK CAPABILITY completed.\r\n", caps, tl, cmd.tag.p);
	} else if (sora_str_ieq_c(cmd.command, "NOOP")) {
		sora_conn_printf(c, "%.*s OK NOOP completed.\r\n", tl, cmd.tag.p);
	} else if (sora_str_ieq_c(cmd.command, "LOGOUT")) {
		sora_conn_printf(c, "* BYE Logging out.\r\n%.*s OK LOGOUT completed.\r\n", tl, cmd.tag.p);
		sora_conn_close(c, SORA_CLOSE_NORMAL);
	} else if (sora_str_ieq_c(cmd.command, "ID")) {
		sora_conn_printf(c, "* ID (\"name\" \"Sora\")\r\n%.*s OK ID completed.\r\n", tl, cmd.tag.p);
	} else if (sora_str_ieq_c(cmd.command, "STARTTLS")) {
		if (sora_conn_is_tls(c) || !sora_conn_server(c)->tls_use_starttls || !sora_conn_tls_available(c)) {
			imap_bad(c, s, cmd.tag, sora_conn_is_tls(c) ? "TLS is already active." : "STARTTLS is not available.");
			return;
		}
		sora_conn_printf(c, "%.*s OK Begin TLS negotiation now.\r\n", tl, cmd.tag.p);
		if (sora_conn_starttls(c) < 0) {
			sora_conn_printf(c, "* BYE TLS setup failed.\r\n");
			sora_conn_close(c, SORA_CLOSE_ERROR);
		}
	} else if (sora_str_ieq_c(cmd.command, "LOGIN") || sora_str_ieq_c(cmd.command, "AUTHENTICATE")) {
		sora_conn_printf(c, "%.*s NO [UNAVAILABLE] Login is not available on this server yet.\r\n",
				 tl, cmd.tag.p);
	} else {
		imap_bad(c, s, cmd.tag, "Unknown command.");
	}
}

static size_t imap_input(struct sora_conn *c, const char *data, size_t len)
{
	struct imap_preauth *s = sora_conn_data(c);
	size_t consumed;
	long n = sora_line_find(data, len, &consumed);

	if (n < 0)
		return 0;
	if (n > IMAP_MAX_LINE) {
		imap_bad(c, s, SORA_STR_NULL, "Command line too long.");
		return consumed;
	}
	imap_command(c, s, sora_str_make(data, (size_t)n));
	return consumed;
}

static void imap_overflow(struct sora_conn *c)
{
	sora_conn_printf(c, "* BYE Command line too long.\r\n");
}

static void imap_reject(struct sora_conn *c, enum sora_reject_reason why)
{
	sora_conn_printf(c, "* BYE [UNAVAILABLE] Too many connections%s, try again later.\r\n",
			 why == SORA_REJECT_MAX_PER_IP ? " from your address" : "");
}

static void imap_farewell(struct sora_conn *c, enum sora_close_reason why)
{
	/* A shutdown is temporary: say so, so clients reconnect. */
	sora_conn_printf(c, "* BYE %s%s\r\n", why == SORA_CLOSE_SHUTDOWN ? "[UNAVAILABLE] " : "",
			 sora_close_reason_text(why));
}

static void imap_close(struct sora_conn *c, enum sora_close_reason why)
{
	free(sora_conn_data(c));
}

const struct sora_conn_handler sora_imap_preauth_handler = {
	.protocol = "imap",
	.max_pending_input = IMAP_MAX_LINE + 2,
	.open = imap_open,
	.input = imap_input,
	.input_overflow = imap_overflow,
	.reject = imap_reject,
	.farewell = imap_farewell,
	.close = imap_close,
};
