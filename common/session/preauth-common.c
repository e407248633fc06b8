/* Shared pre-authentication pieces: see preauth-common.h. */
#include "common/session/preauth-common.h"

#include <stdlib.h>

#include "common/config/config.h"
#include "common/proto/cmdline.h"

bool sora_preauth_open(struct sora_conn *c, const struct sora_preauth_style *st)
{
	return sora_preauth_open_size(c, st, sizeof(struct sora_preauth));
}

bool sora_preauth_open_size(struct sora_conn *c, const struct sora_preauth_style *st, size_t size)
{
	struct sora_preauth *s = calloc(1, size);

	if (s == NULL) {
		sora_conn_printf(c, "%s %s Server out of memory\r\n", st->bye, st->temp_code);
		sora_conn_close(c, SORA_CLOSE_ERROR);
		return false;
	}
	sora_conn_set_data(c, s);
	return true;
}

size_t sora_preauth_input(struct sora_conn *c, const struct sora_preauth_style *st,
			  const char *data, size_t len)
{
	size_t consumed;
	long n = sora_line_find(data, len, &consumed);

	if (n < 0)
		return 0;
	if ((size_t)n > st->max_line)
		st->line_too_long(c);
	else
		st->command(c, sora_str_make(data, (size_t)n));
	return consumed;
}

bool sora_preauth_count_error(struct sora_conn *c)
{
	struct sora_preauth *s = sora_conn_data(c);
	const struct sora_server_config *srv = sora_conn_server(c);

	s->errors++;
	if (srv->max_errors > 0 && s->errors >= srv->max_errors) {
		sora_info(sora_conn_log_ctx(c), "too many invalid commands (%d): closing", s->errors);
		return true;
	}
	return false;
}

void sora_preauth_reject(struct sora_conn *c, const struct sora_preauth_style *st,
			 enum sora_reject_reason why)
{
	sora_conn_printf(c, "%s %s Too many connections%s, try again later.\r\n", st->bye,
			 st->temp_code, why == SORA_REJECT_MAX_PER_IP ? " from your address" : "");
}

void sora_preauth_farewell(struct sora_conn *c, const struct sora_preauth_style *st,
			   enum sora_close_reason why)
{
	/* A shutdown is temporary: say so, so clients reconnect. */
	if (why == SORA_CLOSE_SHUTDOWN)
		sora_conn_printf(c, "%s %s %s\r\n", st->bye, st->temp_code, sora_close_reason_text(why));
	else
		sora_conn_printf(c, "%s %s\r\n", st->bye, sora_close_reason_text(why));
}

const char *sora_preauth_client(struct sora_conn *c)
{
	struct sora_preauth *s = sora_conn_data(c);

	return s != NULL && s->fwd_ip[0] != '\0' ? s->fwd_ip : sora_conn_peer(c);
}

void sora_preauth_log_forwarded(struct sora_conn *c)
{
	struct sora_preauth *s = sora_conn_data(c);

	if (s->fwd_ip[0] != '\0')
		sora_info(sora_conn_log_ctx(c), "client %s%s%s (forwarded by %s%s%s)", s->fwd_ip,
			  s->fwd_port[0] ? ":" : "", s->fwd_port, sora_conn_peer(c),
			  s->fwd_session[0] ? ", session " : "", s->fwd_session);
}

void sora_preauth_close(struct sora_conn *c, enum sora_close_reason why)
{
	free(sora_conn_data(c));
}
