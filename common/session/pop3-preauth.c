/* POP3 AUTHORIZATION state: RFC 1939 §4-5, CAPA (RFC 2449), STLS (2595). */
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/proto/cmdline.h"
#include "common/session/preauth.h"

/* RFC 2449: command lines are at most 255 octets. */
#define POP3_MAX_LINE 255

struct pop3_preauth {
	int errors;
};

static void pop3_open(struct sora_conn *c)
{
	struct pop3_preauth *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		sora_conn_printf(c, "-ERR [SYS/TEMP] Server out of memory\r\n");
		sora_conn_close(c, SORA_CLOSE_ERROR);
		return;
	}
	sora_conn_set_data(c, s);
	sora_conn_printf(c, "+OK Sora POP3 ready.\r\n");
}

static void pop3_err(struct sora_conn *c, struct pop3_preauth *s, const char *msg)
{
	const struct sora_server_config *srv = sora_conn_server(c);

	s->errors++;
	sora_conn_printf(c, "-ERR %s\r\n", msg);
	if (srv->max_errors > 0 && s->errors >= srv->max_errors) {
		sora_info(sora_conn_log_ctx(c), "too many invalid commands (%d): closing", s->errors);
		sora_conn_close(c, SORA_CLOSE_PROTOCOL);
	}
}

static void pop3_command(struct sora_conn *c, struct pop3_preauth *s, struct sora_str line)
{
	struct sora_pop3_cmdline cmd;
	const char *error;

	if (sora_pop3_cmdline_parse(line, &cmd, &error) < 0) {
		pop3_err(c, s, error);
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
			pop3_err(c, s, sora_conn_is_tls(c) ? "TLS is already active." : "STLS is not available.");
			return;
		}
		sora_conn_printf(c, "+OK Begin TLS negotiation now.\r\n");
		if (sora_conn_starttls(c) < 0)
			sora_conn_close(c, SORA_CLOSE_ERROR);
	} else if (sora_str_ieq_c(cmd.command, "USER") || sora_str_ieq_c(cmd.command, "PASS") ||
		   sora_str_ieq_c(cmd.command, "AUTH") || sora_str_ieq_c(cmd.command, "APOP")) {
		sora_conn_printf(c, "-ERR [SYS/PERM] Login is not available on this server yet.\r\n");
	} else {
		pop3_err(c, s, "Unknown command.");
	}
}

static size_t pop3_input(struct sora_conn *c, const char *data, size_t len)
{
	struct pop3_preauth *s = sora_conn_data(c);
	size_t consumed;
	long n = sora_line_find(data, len, &consumed);

	if (n < 0)
		return 0;
	if (n > POP3_MAX_LINE) {
		pop3_err(c, s, "Command line too long.");
		return consumed;
	}
	pop3_command(c, s, sora_str_make(data, (size_t)n));
	return consumed;
}

static void pop3_overflow(struct sora_conn *c)
{
	sora_conn_printf(c, "-ERR Command line too long.\r\n");
}

static void pop3_reject(struct sora_conn *c, enum sora_reject_reason why)
{
	sora_conn_printf(c, "-ERR [SYS/TEMP] Too many connections%s, try again later.\r\n",
			 why == SORA_REJECT_MAX_PER_IP ? " from your address" : "");
}

static void pop3_farewell(struct sora_conn *c, enum sora_close_reason why)
{
	/* A shutdown is temporary: say so, so clients reconnect. */
	sora_conn_printf(c, "-ERR %s%s\r\n", why == SORA_CLOSE_SHUTDOWN ? "[SYS/TEMP] " : "",
			 sora_close_reason_text(why));
}

static void pop3_close(struct sora_conn *c, enum sora_close_reason why)
{
	free(sora_conn_data(c));
}

const struct sora_conn_handler sora_pop3_preauth_handler = {
	.protocol = "pop3",
	.max_pending_input = 1024,
	.open = pop3_open,
	.input = pop3_input,
	.input_overflow = pop3_overflow,
	.reject = pop3_reject,
	.farewell = pop3_farewell,
	.close = pop3_close,
};
