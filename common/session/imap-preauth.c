/* IMAP before login: RFC 9051 §6.1 (any state) and §6.2 (not authenticated). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/proto/cmdline.h"
#include "common/session/preauth-common.h"
#include "common/session/preauth.h"

#define IMAP_MAX_LINE 8192

static void imap_command(struct sora_conn *c, struct sora_str line);
static void imap_line_too_long(struct sora_conn *c);

static const struct sora_preauth_style imap_style = {
	.bye = "* BYE",
	.temp_code = "[UNAVAILABLE]",
	.max_line = IMAP_MAX_LINE,
	.command = imap_command,
	.line_too_long = imap_line_too_long,
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
	char caps[256];

	if (!sora_preauth_open(c, &imap_style))
		return;
	imap_capabilities(c, caps, sizeof(caps));
	sora_conn_printf(c, "* OK [CAPABILITY %s] Sora ready.\r\n", caps);
}

static void imap_bad(struct sora_conn *c, struct sora_str tag, const char *msg)
{
	if (tag.len > 0)
		sora_conn_printf(c, "%.*s BAD %s\r\n", (int)tag.len, tag.p, msg);
	else
		sora_conn_printf(c, "* BAD %s\r\n", msg);
	if (sora_preauth_count_error(c)) {
		sora_conn_printf(c, "* BYE Too many invalid commands.\r\n");
		sora_conn_close(c, SORA_CLOSE_PROTOCOL);
	}
}

static void imap_line_too_long(struct sora_conn *c)
{
	imap_bad(c, SORA_STR_NULL, "Command line too long.");
}

static void imap_command(struct sora_conn *c, struct sora_str line)
{
	struct sora_imap_cmdline cmd;
	const char *error;
	char caps[256];
	int tl;

	if (sora_imap_cmdline_parse(line, &cmd, &error) < 0) {
		imap_bad(c, cmd.tag, error);
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
			imap_bad(c, cmd.tag, sora_conn_is_tls(c) ? "TLS is already active." : "STARTTLS is not available.");
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
		imap_bad(c, cmd.tag, "Unknown command.");
	}
}

static size_t imap_input(struct sora_conn *c, const char *data, size_t len)
{
	return sora_preauth_input(c, &imap_style, data, len);
}

static void imap_overflow(struct sora_conn *c)
{
	sora_conn_printf(c, "* BYE Command line too long.\r\n");
}

static void imap_reject(struct sora_conn *c, enum sora_reject_reason why)
{
	sora_preauth_reject(c, &imap_style, why);
}

static void imap_farewell(struct sora_conn *c, enum sora_close_reason why)
{
	sora_preauth_farewell(c, &imap_style, why);
}

const struct sora_conn_handler sora_imap_preauth_handler = {
	.protocol = "imap",
	.max_pending_input = IMAP_MAX_LINE + 2,
	.open = imap_open,
	.input = imap_input,
	.input_overflow = imap_overflow,
	.reject = imap_reject,
	.farewell = imap_farewell,
	.close = sora_preauth_close,
};
