/* IMAP before login: RFC 9051 §6.1 (any state) and §6.2 (not authenticated).
 *
 * Input goes through the IMAP command parser (common/proto/imap-parser.h),
 * the same one the logged-in session will use, so the bytes of a literal
 * are never taken for a command: "a1 ID {10+}\r\nb1 LOGOUT\r\n" is one ID
 * command whose argument is "b1 LOGOUT\r".
 *
 * Literals before login are small: up to PREAUTH_MAX_LITERAL bytes, kept
 * in memory, synchronising ones answered with "+ OK" and non-synchronising
 * ones accepted (LITERAL-, which is advertised). A larger literal is
 * refused before its bytes are read: a synchronising one with
 * "NO [TOOBIG]" (the client sends nothing and the session goes on), a
 * non-synchronising one with "BAD [TOOBIG]" and the session is closed
 * rather than reading and discarding the bytes (RFC 7888 §4 allows
 * either). A command over the line or argument limits ends the session
 * like an over-long line did before. Every other parse error is a BAD,
 * counted against max_errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/proto/imap-parser.h"
#include "common/session/preauth-common.h"
#include "common/session/preauth.h"

#define IMAP_MAX_LINE 8192
#define PREAUTH_MAX_LITERAL 8192

static const struct sora_imap_parser_params preauth_params = {
	.max_line = IMAP_MAX_LINE,
	.max_atom = IMAP_MAX_LINE,
	.max_quoted = IMAP_MAX_LINE,
	.max_literal = PREAUTH_MAX_LITERAL,
	.max_inline_literal = PREAUTH_MAX_LITERAL,
	.max_nonsync_literal = PREAUTH_MAX_LITERAL,
	.max_depth = 8,
	/* ID: at most 30 field/value pairs (RFC 2971 §3.3) in one list */
	.max_args = 64,
	.max_command = IMAP_MAX_LINE + PREAUTH_MAX_LITERAL + 1024,
	.binary = false,
	.utf8_quoted = false,
};

static const struct sora_preauth_style imap_style = {
	.bye = "* BYE",
	.temp_code = "[UNAVAILABLE]",
	.max_line = IMAP_MAX_LINE,
};

static struct sora_imap_parser *imap_parser(struct sora_conn *c)
{
	struct sora_preauth *s = sora_conn_data(c);

	return s != NULL ? s->proto : NULL;
}

static void imap_capabilities(struct sora_conn *c, char *buf, size_t size)
{
	bool starttls = sora_conn_server(c)->tls_use_starttls && !sora_conn_is_tls(c) &&
			sora_conn_tls_available(c);

	snprintf(buf, size, "IMAP4rev1 ID LITERAL-%s LOGINDISABLED",
		 starttls ? " STARTTLS" : "");
}

static void imap_open(struct sora_conn *c)
{
	struct sora_preauth *s;
	char caps[256];

	if (!sora_preauth_open(c, &imap_style))
		return;
	s = sora_conn_data(c);
	s->proto = sora_imap_parser_new(&preauth_params);
	if (s->proto == NULL) {
		sora_conn_printf(c, "* BYE [UNAVAILABLE] Server out of memory\r\n");
		sora_conn_close(c, SORA_CLOSE_ERROR);
		return;
	}
	imap_capabilities(c, caps, sizeof(caps));
	sora_conn_printf(c, "* OK [CAPABILITY %s] Sora ready.\r\n", caps);
}

/* Answers BAD and counts it; false when that ended the session. */
static bool imap_bad(struct sora_conn *c, struct sora_str tag, const char *code, const char *msg)
{
	if (tag.len > 0)
		sora_conn_printf(c, "%.*s BAD %s%s\r\n", (int)tag.len, tag.p, code, msg);
	else
		sora_conn_printf(c, "* BAD %s%s\r\n", code, msg);
	if (sora_preauth_count_error(c)) {
		sora_conn_printf(c, "* BYE Too many invalid commands.\r\n");
		sora_conn_close(c, SORA_CLOSE_PROTOCOL);
		return false;
	}
	return true;
}

/* Returns false when the session ends or switches to TLS: the caller
 * must not hand it more input. */
static bool imap_command(struct sora_conn *c, const struct sora_imap_command *cmd)
{
	char caps[256];
	int tl = (int)cmd->tag.len;

	if (sora_str_ieq_c(cmd->name, "CAPABILITY")) {
		imap_capabilities(c, caps, sizeof(caps));
		sora_conn_printf(c, "* CAPABILITY %s\r\n%.*s OK CAPABILITY completed.\r\n", caps, tl, cmd->tag.p);
	} else if (sora_str_ieq_c(cmd->name, "NOOP")) {
		sora_conn_printf(c, "%.*s OK NOOP completed.\r\n", tl, cmd->tag.p);
	} else if (sora_str_ieq_c(cmd->name, "LOGOUT")) {
		sora_conn_printf(c, "* BYE Logging out.\r\n%.*s OK LOGOUT completed.\r\n", tl, cmd->tag.p);
		sora_conn_close(c, SORA_CLOSE_NORMAL);
		return false;
	} else if (sora_str_ieq_c(cmd->name, "ID")) {
		/* The client's parameters are not interpreted yet (the proxy's
		 * x-originating-ip handling will come with login). */
		sora_conn_printf(c, "* ID (\"name\" \"Sora\")\r\n%.*s OK ID completed.\r\n", tl, cmd->tag.p);
	} else if (sora_str_ieq_c(cmd->name, "STARTTLS")) {
		if (sora_conn_is_tls(c) || !sora_conn_server(c)->tls_use_starttls || !sora_conn_tls_available(c))
			return imap_bad(c, cmd->tag, "", sora_conn_is_tls(c) ? "TLS is already active."
								    : "STARTTLS is not available.");
		sora_conn_printf(c, "%.*s OK Begin TLS negotiation now.\r\n", tl, cmd->tag.p);
		if (sora_conn_starttls(c) < 0) {
			sora_conn_printf(c, "* BYE TLS setup failed.\r\n");
			sora_conn_close(c, SORA_CLOSE_ERROR);
		}
		/* Whatever followed in the same read is dropped by the
		 * connection layer (no command injection before TLS). */
		return false;
	} else if (sora_str_ieq_c(cmd->name, "LOGIN") || sora_str_ieq_c(cmd->name, "AUTHENTICATE")) {
		sora_conn_printf(c, "%.*s NO [UNAVAILABLE] Login is not available on this server yet.\r\n",
				 tl, cmd->tag.p);
	} else {
		return imap_bad(c, cmd->tag, "", "Unknown command.");
	}
	return true;
}

/* Returns false when the session ends. */
static bool imap_parse_error(struct sora_conn *c, const struct sora_imap_parser_error *e)
{
	struct sora_str tag = e->tag;
	int tl = (int)tag.len;

	if (e->code == SORA_IMAP_ERROR_TOOBIG && e->literal_sync && !e->fatal) {
		/* The client waits for "+" and sends nothing: the session goes
		 * on. Counted, since no client needs a big literal here. */
		if (tl > 0)
			sora_conn_printf(c, "%.*s NO [TOOBIG] %s\r\n", tl, tag.p, e->text);
		else
			sora_conn_printf(c, "* NO [TOOBIG] %s\r\n", e->text);
		if (sora_preauth_count_error(c)) {
			sora_conn_printf(c, "* BYE Too many invalid commands.\r\n");
			sora_conn_close(c, SORA_CLOSE_PROTOCOL);
			return false;
		}
		return true;
	}
	if (e->code == SORA_IMAP_ERROR_TOOBIG || e->code == SORA_IMAP_ERROR_TOO_LONG || e->fatal) {
		/* Refused non-synchronising literal, unparseable literal size or
		 * an over-long command: do not read on. */
		if (tl > 0)
			sora_conn_printf(c, "%.*s BAD %s%s\r\n", tl, tag.p,
					 e->code == SORA_IMAP_ERROR_TOOBIG ? "[TOOBIG] " : "", e->text);
		sora_info(sora_conn_log_ctx(c), "IMAP command refused before login: %s", e->text);
		sora_conn_printf(c, "* BYE %s\r\n", e->text);
		sora_conn_close(c, SORA_CLOSE_PROTOCOL);
		return false;
	}
	return imap_bad(c, tag, "", e->text);
}

static size_t imap_input(struct sora_conn *c, const char *data, size_t len)
{
	struct sora_imap_parser *p = imap_parser(c);
	size_t total = 0;

	if (p == NULL)
		return len;
	for (;;) {
		size_t used = 0;
		enum sora_imap_parse_result r = sora_imap_parser_feed(p, data + total, len - total, &used);
		bool go_on = true;

		total += used;
		/* The parser holds a partial command, so the connection has no
		 * pending input: say that a command is in transit, for the
		 * min_bytes_per_minute floor. */
		sora_conn_set_transfer(c, !sora_imap_parser_idle(p));
		switch (r) {
		case SORA_IMAP_PARSE_NEED_MORE:
			return total;
		case SORA_IMAP_PARSE_COMMAND:
			go_on = imap_command(c, sora_imap_parser_command(p));
			break;
		case SORA_IMAP_PARSE_LITERAL:
			/* Within the pre-auth limits (the parser refused larger
			 * ones): ask for the bytes of a synchronising literal. */
			if (sora_imap_parser_literal(p)->sync)
				sora_conn_printf(c, "+ OK\r\n");
			break;
		case SORA_IMAP_PARSE_LITERAL_DATA:
			/* Not reached: every pre-auth literal is kept in line. */
			break;
		case SORA_IMAP_PARSE_ERROR:
			go_on = imap_parse_error(c, sora_imap_parser_error(p));
			break;
		}
		/* One event per call (the connection calls again), except when
		 * the event consumed nothing: an error noticed at the first
		 * byte offered; then go on so as not to stall pipelined input. */
		if (!go_on || used > 0)
			return total;
	}
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

static void imap_close(struct sora_conn *c, enum sora_close_reason why)
{
	struct sora_preauth *s = sora_conn_data(c);

	if (s != NULL) {
		struct sora_imap_parser *p = s->proto;

		sora_imap_parser_free(&p);
		s->proto = NULL;
	}
	sora_preauth_close(c, why);
}

const struct sora_conn_handler sora_imap_preauth_handler = {
	.protocol = "imap",
	/* The parser consumes input as it arrives (it keeps the command);
	 * this only bounds what piles up while output is blocked. */
	.max_pending_input = IMAP_MAX_LINE + PREAUTH_MAX_LITERAL + 2,
	.open = imap_open,
	.input = imap_input,
	.input_overflow = imap_overflow,
	.reject = imap_reject,
	.farewell = imap_farewell,
	.close = imap_close,
};
