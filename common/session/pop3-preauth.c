/* POP3 AUTHORIZATION state: RFC 1939 §4-5, CAPA (RFC 2449), STLS (2595). */
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/proto/cmdline.h"
#include "common/session/preauth-common.h"
#include "common/session/preauth.h"

/* RFC 2449: command lines are at most 255 octets. */
#define POP3_MAX_LINE 255

static void pop3_command(struct sora_conn *c, struct sora_str line);
static void pop3_line_too_long(struct sora_conn *c);

static const struct sora_preauth_style pop3_style = {
	.bye = "-ERR",
	.temp_code = "[SYS/TEMP]",
	.max_line = POP3_MAX_LINE,
	.command = pop3_command,
	.line_too_long = pop3_line_too_long,
};

static void pop3_open(struct sora_conn *c)
{
	if (sora_preauth_open(c, &pop3_style))
		sora_conn_printf(c, "+OK Sora POP3 ready.\r\n");
}

static void pop3_err(struct sora_conn *c, const char *msg)
{
	sora_conn_printf(c, "-ERR %s\r\n", msg);
	if (sora_preauth_count_error(c))
		sora_conn_close(c, SORA_CLOSE_PROTOCOL);
}

static void pop3_line_too_long(struct sora_conn *c)
{
	pop3_err(c, "Command line too long.");
}

static void pop3_command(struct sora_conn *c, struct sora_str line)
{
	struct sora_pop3_cmdline cmd;
	const char *error;

	if (sora_pop3_cmdline_parse(line, &cmd, &error) < 0) {
		pop3_err(c, error);
		return;
	}
	if (sora_str_ieq_c(cmd.command, "CAPA")) {
		bool stls = sora_conn_server(c)->tls_use_starttls && !sora_conn_is_tls(c) &&
			    sora_conn_tls_available(c);
		sora_conn_printf(c, "+OK Capability list follows\r\n%sRESP-CODES\r\nPIPELINING\r\n"
				 "IMPLEMENTATION Sora\r\n.\r\n", stls ? "STLS\r\n" : "");
	} else if (sora_str_ieq_c(cmd.command, "QUIT")) {
		sora_conn_printf(c, "+OK Bye.\r\n");
		sora_conn_close(c, SORA_CLOSE_NORMAL);
	} else if (sora_str_ieq_c(cmd.command, "STLS")) {
		if (sora_conn_is_tls(c) || !sora_conn_server(c)->tls_use_starttls || !sora_conn_tls_available(c)) {
			pop3_err(c, sora_conn_is_tls(c) ? "TLS is already active." : "STLS is not available.");
			return;
		}
		sora_conn_printf(c, "+OK Begin TLS negotiation now.\r\n");
		if (sora_conn_starttls(c) < 0)
			sora_conn_close(c, SORA_CLOSE_ERROR);
	} else if (sora_str_ieq_c(cmd.command, "USER") || sora_str_ieq_c(cmd.command, "PASS") ||
		   sora_str_ieq_c(cmd.command, "AUTH") || sora_str_ieq_c(cmd.command, "APOP")) {
		sora_conn_printf(c, "-ERR [SYS/PERM] Login is not available on this server yet.\r\n");
	} else {
		pop3_err(c, "Unknown command.");
	}
}

static size_t pop3_input(struct sora_conn *c, const char *data, size_t len)
{
	return sora_preauth_input(c, &pop3_style, data, len);
}

static void pop3_overflow(struct sora_conn *c)
{
	sora_conn_printf(c, "-ERR Command line too long.\r\n");
}

static void pop3_reject(struct sora_conn *c, enum sora_reject_reason why)
{
	sora_preauth_reject(c, &pop3_style, why);
}

static void pop3_farewell(struct sora_conn *c, enum sora_close_reason why)
{
	sora_preauth_farewell(c, &pop3_style, why);
}

const struct sora_conn_handler sora_pop3_preauth_handler = {
	.protocol = "pop3",
	.max_pending_input = 1024,
	.open = pop3_open,
	.input = pop3_input,
	.input_overflow = pop3_overflow,
	.reject = pop3_reject,
	.farewell = pop3_farewell,
	.close = sora_preauth_close,
};
