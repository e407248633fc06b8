/* lmtp_proxy: LMTP (RFC 2033) from the MTA, each recipient routed to its
 * backend.
 *
 * Accepted only from trusted_networks (the MTAs; a connection from anywhere
 * else gets "554 5.7.1" and is closed). The proxy speaks LMTP itself up to
 * RCPT: LHLO, MAIL (checked, SIZE against max_message_size), RSET, NOOP,
 * QUIT, VRFY, XCLIENT (trusted peers only: the address to pass on).
 *
 * RCPT: a job looks the recipient up (the address, then without
 * "+detail"; unknown -> 550 5.1.1 from the proxy itself) and reads its
 * backend override; proxy_pool_route() gives the backend. The first
 * recipient of a transaction opens the transaction's backend connection:
 * connect (PROXY v2 with the MTA's address when remote_use_proxy_protocol,
 * and XCLIENT ADDR/PORT when it is off or the MTA sent XCLIENT), greeting,
 * LHLO, MAIL FROM as the MTA sent it; then the RCPT goes there and the
 * backend's reply is the MTA's reply.
 *
 * Recipients on different backends (RFC 2033 allows per-recipient replies
 * only after DATA, so one transaction cannot be split without holding the
 * message): a recipient whose backend is not the transaction's gets
 * "451 4.3.0" at RCPT. The MTA keeps it queued and retries it in a later
 * transaction, which then starts on its own backend. Each message is
 * therefore delivered by exactly one backend per recipient, streamed
 * through once, never stored on the proxy; the price is one extra
 * transaction per additional backend, which Postfix makes at once (its
 * "deferred" retry of the 451 recipients happens on the next queue run).
 *
 * DATA: "DATA" goes to the backend; its 354 is relayed; the message is
 * streamed through unchanged, the end found and the size counted with the
 * shared DATA decoder (the same rules as the backend, so both agree on
 * where a message ends), reading from the MTA only while the backend
 * takes it. Over max_message_size: the backend connection is dropped
 * (nothing is stored there), the rest is read and discarded, and every
 * accepted recipient gets 552 5.3.4. Otherwise the backend's per-recipient
 * replies are relayed in order. A backend that fails mid-way gives each
 * outstanding recipient 451 4.4.0.
 *
 * Thread safety: loop thread of the connection. */
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/core/buf.h"
#include "common/core/log.h"
#include "common/db/accounts.h"
#include "common/db/db.h"
#include "common/metrics/metrics.h"
#include "common/net/workers.h"
#include "common/proto/cmdline.h"
#include "common/proto/smtp-data.h"
#include "common/proto/smtp-reply.h"
#include "common/proto/smtp.h"
#include "proxy/backends.h"
#include "proxy/lmtp-proxy.h"
#include "proxy/proxy.h"

#define LMTP_LINE_MAX 1024
#define BACKEND_REPLY_MAX 8192
#define LOOKUP_ACQUIRE_MS 5000
/* The backend's replies after the message can take a while (fsync, the
 * database): the server's command_timeout, at least this. */
#define DATA_REPLY_MIN_MS 60000

enum be_step {
	BS_NONE = 0,
	BS_GREETING,
	BS_LHLO,
	BS_XCLIENT,
	BS_LHLO2,
	BS_MAIL,
	BS_IDLE,       /* ready for RCPT / DATA */
	BS_RCPT,
	BS_DATA,       /* waiting for 354 */
	BS_STREAM,     /* message going through */
	BS_REPLIES,    /* per-recipient replies */
};

struct lmtp_proxy {
	struct sora_conn *c;
	struct proxy_pool *pool;
	bool lhlo;
	bool in_mail;
	char mail_line[LMTP_LINE_MAX];
	char rcpt_line[LMTP_LINE_MAX];
	char rcpt_addr[SORA_ACCOUNTS_ADDRESS_SIZE];
	/* XCLIENT from a trusted MTA: the client to name. */
	char x_ip[64], x_port[8];

	/* Lookup result. */
	bool lookup_found, lookup_temp;
	int64_t account_id;
	char override[256];

	/* The transaction's backend. */
	struct sora_conn *be;
	ssize_t be_idx;               /* -1: none chosen */
	enum be_step step;
	struct sora_buf reply;        /* backend reply lines being collected */
	size_t order[SORA_RING_MAX_NODES];
	size_t norder, next;
	int64_t deadline;
	int accepted;                 /* recipients the backend took */
	int replies_left;
	bool waiting;                 /* client paused for the backend */
	bool stream_paused;           /* client paused: backend output full */
	struct sora_smtp_data data;
	bool in_data;                 /* reading the message from the client */
	bool data_abort;              /* too big: discard, 552 */
	int data_rcpts;
	struct sora_smtp_command cmd; /* scratch for parsing */
};

static const struct sora_conn_handler lmtp_backend_handler;

static struct sora_metric_series *m_rcpt_ok, *m_rcpt_other, *m_rcpt_unknown, *m_messages,
	*m_too_big;

static void metrics_init(void)
{
	struct sora_metric *r = sora_metric_counter(
		"proxy_lmtp_recipients_total", "LMTP recipients at the proxy by outcome.", "result");
	struct sora_metric *m = sora_metric_counter(
		"proxy_lmtp_messages_total", "LMTP messages streamed through the proxy by outcome.",
		"result");

	m_rcpt_ok = sora_metric_with(r, "routed");
	m_rcpt_other = sora_metric_with(r, "other_backend_deferred");
	m_rcpt_unknown = sora_metric_with(r, "unknown");
	m_messages = sora_metric_with(m, "relayed");
	m_too_big = sora_metric_with(m, "too_big");
}

static struct lmtp_proxy *sess(struct sora_conn *c)
{
	return sora_conn_data(c);
}

static const char *host_name(struct lmtp_proxy *s)
{
	const struct sora_server_config *srv = sora_conn_server(s->c);
	const struct sora_config *cfg = sora_proxy_config();

	return srv->hostname ? srv->hostname : cfg != NULL && cfg->hostname ? cfg->hostname : "localhost";
}

static void reply(struct lmtp_proxy *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct lmtp_proxy *s, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 3)
		n = (int)sizeof(buf) - 3;
	memcpy(buf + n, "\r\n", 2);
	sora_conn_write(s->c, buf, (size_t)n + 2);
}

/* Waits for the backend: the client is paused until resume_client(). */
static void wait_backend(struct lmtp_proxy *s, int64_t ms)
{
	s->waiting = true;
	sora_conn_pause(s->c);
	if (s->be != NULL)
		sora_conn_set_keepalive(s->be, ms > 0 ? ms : 1);
}

static void resume_client(struct lmtp_proxy *s)
{
	s->waiting = false;
	if (s->be != NULL)
		sora_conn_set_keepalive(s->be, 0);
	if (!sora_conn_closing(s->c))
		sora_conn_resume(s->c);
}

static void drop_backend(struct lmtp_proxy *s, bool polite)
{
	struct sora_conn *be = s->be;

	s->be = NULL;
	s->step = BS_NONE;
	if (be != NULL) {
		sora_conn_set_data(be, NULL);
		if (polite)
			sora_conn_printf(be, "QUIT\r\n");
		sora_conn_close(be, polite ? SORA_CLOSE_NORMAL : SORA_CLOSE_ERROR);
	}
	sora_buf_reset(&s->reply);
}

static void transaction_reset(struct lmtp_proxy *s)
{
	drop_backend(s, true);
	s->in_mail = false;
	s->be_idx = -1;
	s->accepted = 0;
	s->replies_left = 0;
	s->in_data = false;
	s->data_abort = false;
}

/* ---- backend conversation ------------------------------------------------ */

static void be_send_mail(struct lmtp_proxy *s)
{
	sora_conn_printf(s->be, "%s\r\n", s->mail_line);
	s->step = BS_MAIL;
}

static void be_send_lhlo(struct lmtp_proxy *s, enum be_step next)
{
	sora_conn_printf(s->be, "LHLO %s\r\n", host_name(s));
	s->step = next;
}

static bool need_xclient(struct lmtp_proxy *s)
{
	return !sora_conn_server(s->c)->remote_use_proxy_protocol || s->x_ip[0] != '\0';
}

static void be_send_xclient(struct lmtp_proxy *s)
{
	char ip[64] = "", port[16] = "";
	const struct sockaddr *sa = sora_conn_peer_addr(s->c);

	if (s->x_ip[0] != '\0') {
		sora_strlcpy(ip, s->x_ip, sizeof(ip));
		sora_strlcpy(port, s->x_port, sizeof(port));
	} else if (sa != NULL && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)) {
		getnameinfo(sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
							 : sizeof(struct sockaddr_in6),
			    ip, sizeof(ip), port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
	}
	if (ip[0] == '\0') {
		be_send_mail(s);
		return;
	}
	sora_conn_printf(s->be, "XCLIENT ADDR=%s%s%s%s\r\n", strchr(ip, ':') ? "IPV6:" : "", ip,
			 port[0] ? " PORT=" : "", port);
	s->step = BS_XCLIENT;
}

static void try_connect(struct lmtp_proxy *s);

/* The current recipient could not be given to any backend. */
static void rcpt_tempfail(struct lmtp_proxy *s, const char *why)
{
	sora_warn(sora_conn_log_ctx(s->c), "recipient %s: %s", s->rcpt_addr, why);
	reply(s, "451 4.4.0 <%s> Mail server temporarily unavailable, try again later",
	      s->rcpt_addr);
	resume_client(s);
}

/* The backend connection failed before or while setting up. */
static void be_setup_failed(struct lmtp_proxy *s, const char *why)
{
	if (s->be_idx >= 0)
		proxy_backend_failed(s->pool, (size_t)s->be_idx, why);
	drop_backend(s, false);
	s->be_idx = -1;
	if (s->accepted > 0) {
		rcpt_tempfail(s, why);
		return;
	}
	try_connect(s);
}

static void try_connect(struct lmtp_proxy *s)
{
	const struct sora_server_config *srv = sora_conn_server(s->c);

	while (s->next < s->norder) {
		struct sora_connect_params p = { 0 };
		size_t i = s->order[s->next++];
		int64_t left = s->deadline - proxy_now_ms();
		const char *error = NULL;

		if (left <= 0)
			break;
		if (s->next > 1)
			proxy_pool_count_failover(s->pool);
		p.addr = s->pool->b[i].addr;
		p.timeout_ms = left;
		p.tls = s->pool->tls;
		p.proxy_v2 = srv->remote_use_proxy_protocol;
		p.data = s;
		s->be_idx = (ssize_t)i;
		s->step = BS_GREETING;
		if (sora_conn_connect(s->c, &p, &lmtp_backend_handler, &s->be, &error) == 0)
			return;
		s->be = NULL;
		proxy_backend_failed(s->pool, i, error);
	}
	s->be_idx = -1;
	s->step = BS_NONE;
	rcpt_tempfail(s, "no backend could be reached");
}

static void send_rcpt(struct lmtp_proxy *s)
{
	sora_conn_printf(s->be, "%s\r\n", s->rcpt_line);
	s->step = BS_RCPT;
	sora_conn_set_keepalive(s->be, sora_conn_server(s->c)->connect_timeout_ms);
}

static bool code_ok(unsigned code)
{
	return code >= 200 && code < 300;
}

/* One complete backend reply (lines in s->reply, CRLF-terminated). */
static void be_reply(struct lmtp_proxy *s, unsigned code)
{
	struct sora_conn *c = s->c;

	switch (s->step) {
	case BS_GREETING:
		if (code != 220)
			goto setup_fail;
		be_send_lhlo(s, BS_LHLO);
		break;
	case BS_LHLO:
		if (!code_ok(code))
			goto setup_fail;
		if (need_xclient(s))
			be_send_xclient(s);
		else
			be_send_mail(s);
		break;
	case BS_XCLIENT:
		if (code != 220)
			goto setup_fail;
		be_send_lhlo(s, BS_LHLO2);
		break;
	case BS_LHLO2:
		if (!code_ok(code))
			goto setup_fail;
		be_send_mail(s);
		break;
	case BS_MAIL:
		proxy_backend_ok(s->pool, (size_t)s->be_idx);
		if (!code_ok(code)) {
			/* The backend refuses the sender (e.g. its SIZE): that is
			 * this recipient's answer; the transaction has no backend. */
			sora_conn_write(c, s->reply.data, s->reply.len);
			drop_backend(s, true);
			s->be_idx = -1;
			resume_client(s);
			break;
		}
		send_rcpt(s);
		break;
	case BS_RCPT:
		sora_conn_write(c, s->reply.data, s->reply.len);
		if (code_ok(code)) {
			s->accepted++;
			sora_metric_inc(m_rcpt_ok);
		}
		s->step = BS_IDLE;
		resume_client(s);
		break;
	case BS_DATA:
		if (code != 354) {
			sora_conn_write(c, s->reply.data, s->reply.len);
			transaction_reset(s);
			resume_client(s);
			break;
		}
		reply(s, "354 End data with <CR><LF>.<CR><LF>");
		s->step = BS_STREAM;
		s->in_data = true;
		sora_smtp_data_init(&s->data, sora_conn_server(c)->max_message_size);
		resume_client(s);
		break;
	case BS_REPLIES:
		sora_conn_write(c, s->reply.data, s->reply.len);
		if (--s->replies_left == 0) {
			sora_metric_inc(m_messages);
			transaction_reset(s);
			resume_client(s);
		}
		break;
	default:
		/* Unsolicited (e.g. a 421 before closing): ignore; the close
		 * that follows is handled. */
		break;
	}
	return;
setup_fail:
	sora_warn(sora_conn_log_ctx(c), "backend %s: unexpected reply %u during setup",
		  s->pool->b[s->be_idx].addr, code);
	be_setup_failed(s, "unexpected reply");
}

static void be_open(struct sora_conn *be)
{
	struct lmtp_proxy *s = sora_conn_data(be);

	if (s == NULL) {
		sora_conn_close(be, SORA_CLOSE_NORMAL);
		return;
	}
	sora_conn_set_keepalive(be, sora_conn_server(s->c)->connect_timeout_ms);
}

static size_t be_input(struct sora_conn *be, const char *data, size_t len)
{
	struct lmtp_proxy *s = sora_conn_data(be);
	struct sora_smtp_reply r;
	size_t consumed;
	long n;

	if (s == NULL)
		return len;
	n = sora_line_find(data, len, &consumed);
	if (n < 0)
		return 0;
	if (sora_smtp_reply_parse(data, (size_t)n, &r, NULL) < 0 ||
	    s->reply.len + consumed > BACKEND_REPLY_MAX) {
		sora_warn(sora_conn_log_ctx(s->c), "backend %s: malformed reply",
			  s->be_idx >= 0 ? s->pool->b[s->be_idx].addr : "?");
		sora_conn_close(be, SORA_CLOSE_PROTOCOL);
		return len;
	}
	sora_buf_append(&s->reply, data, (size_t)n);
	sora_buf_append(&s->reply, "\r\n", 2);
	if (r.last) {
		be_reply(s, r.code);
		sora_buf_reset(&s->reply);
	}
	return consumed;
}

/* The backend is gone (closed, timed out, protocol error). */
static void be_lost(struct lmtp_proxy *s, const char *why)
{
	enum be_step step = s->step;

	s->be = NULL;
	sora_buf_reset(&s->reply);
	switch (step) {
	case BS_GREETING:
	case BS_LHLO:
	case BS_XCLIENT:
	case BS_LHLO2:
	case BS_MAIL:
		be_setup_failed(s, why);
		return;
	case BS_RCPT:
		s->step = BS_NONE;
		rcpt_tempfail(s, why);
		return;
	case BS_DATA:
		reply(s, "451 4.4.0 Mail server temporarily unavailable, try again later");
		transaction_reset(s);
		resume_client(s);
		return;
	case BS_STREAM:
		/* Keep reading the message to its end; every recipient then
		 * gets 451. */
		s->data_abort = true;
		s->step = BS_NONE;
		if (s->stream_paused) {
			s->stream_paused = false;
			resume_client(s);
		}
		return;
	case BS_REPLIES:
		while (s->replies_left-- > 0)
			reply(s, "451 4.4.0 Delivery status unknown, try again later");
		transaction_reset(s);
		resume_client(s);
		return;
	default:
		/* Idle between commands: the accepted recipients are lost; DATA
		 * will say so. */
		s->step = BS_NONE;
		return;
	}
}

static void be_keepalive(struct sora_conn *be)
{
	struct lmtp_proxy *s = sora_conn_data(be);

	if (s == NULL || !s->waiting)
		return;
	sora_warn(sora_conn_log_ctx(s->c), "backend %s: no reply in time",
		  s->be_idx >= 0 ? s->pool->b[s->be_idx].addr : "?");
	if (s->be_idx >= 0)
		proxy_backend_failed(s->pool, (size_t)s->be_idx, "reply timed out");
	sora_conn_set_data(be, NULL);
	sora_conn_close(be, SORA_CLOSE_IDLE);
	be_lost(s, "timed out");
}

static void be_close(struct sora_conn *be, enum sora_close_reason why)
{
	struct lmtp_proxy *s = sora_conn_data(be);

	if (s == NULL || s->be != be)
		return;
	sora_conn_set_data(be, NULL);
	be_lost(s, "connection closed");
}

static void be_connect_failed(struct sora_conn *be, const char *why)
{
	struct lmtp_proxy *s = sora_conn_data(be);

	if (s == NULL || s->be != be)
		return;
	s->be = NULL;
	sora_warn(sora_conn_log_ctx(s->c), "backend %s: %s", s->pool->b[s->be_idx].addr, why);
	be_setup_failed(s, why);
}

static void be_drained(struct sora_conn *be)
{
	struct lmtp_proxy *s = sora_conn_data(be);

	if (s != NULL && s->stream_paused) {
		s->stream_paused = false;
		sora_conn_resume(s->c);
	}
}

static const struct sora_conn_handler lmtp_backend_handler = {
	.protocol = "lmtp-backend",
	.max_pending_input = LMTP_LINE_MAX + 2,
	.open = be_open,
	.input = be_input,
	.close = be_close,
	.keepalive = be_keepalive,
	.drained = be_drained,
	.connect_failed = be_connect_failed,
};

/* ---- recipient lookup ----------------------------------------------------- */

static enum sora_job_status lookup_work(struct sora_job *job, void *arg)
{
	struct lmtp_proxy *s = arg;
	struct sora_db_conn *db = NULL;
	struct sora_account_ref ref;
	struct sora_error err;
	struct sora_str addr = sora_str_c(s->rcpt_addr);
	int ret;

	s->lookup_found = s->lookup_temp = false;
	if (sora_db_acquire(sora_proxy_db(), SORA_DB_READ, LOOKUP_ACQUIRE_MS, &db, &err) != 0) {
		s->lookup_temp = true;
		return SORA_JOB_DONE;
	}
	ret = sora_accounts_lookup(db, addr, &ref, &err);
	if (ret != 0 && err.cls == SORA_ERR_NOT_FOUND) {
		/* "user+detail@domain" delivers to user@domain. */
		const char *at = memrchr(addr.p, '@', addr.len);
		const char *plus = at != NULL ? memchr(addr.p, '+', (size_t)(at - addr.p)) : NULL;

		if (plus != NULL && plus != addr.p) {
			char stripped[SORA_ACCOUNTS_ADDRESS_SIZE];

			snprintf(stripped, sizeof(stripped), "%.*s%s", (int)(plus - addr.p), addr.p, at);
			ret = sora_accounts_lookup(db, sora_str_c(stripped), &ref, &err);
		}
	}
	sora_db_release(&db);
	if (ret == 0) {
		s->lookup_found = true;
		s->account_id = ref.account_id;
		sora_proxy_lookup_override(ref.account_id, s->override, sizeof(s->override));
	} else if (err.cls != SORA_ERR_NOT_FOUND) {
		s->lookup_temp = true;
	}
	return SORA_JOB_DONE;
}

static void lookup_done(struct sora_conn *c, void *arg)
{
	struct lmtp_proxy *s = arg;
	enum proxy_route_reason reason;
	size_t order[SORA_RING_MAX_NODES], n;

	if (sora_conn_closing(c))
		return;
	if (s->lookup_temp) {
		reply(s, "451 4.3.0 <%s> Temporary lookup failure, try again later", s->rcpt_addr);
		sora_conn_resume(c);
		return;
	}
	if (!s->lookup_found) {
		sora_metric_inc(m_rcpt_unknown);
		reply(s, "550 5.1.1 <%s> User unknown", s->rcpt_addr);
		sora_conn_resume(c);
		return;
	}
	n = proxy_pool_route(s->pool, s->account_id, s->override, order, SORA_RING_MAX_NODES,
			     &reason);
	if (n == 0) {
		rcpt_tempfail(s, "no backend");
		return;
	}
	if (s->be != NULL || s->be_idx >= 0) {
		if ((size_t)s->be_idx != order[0]) {
			/* Another backend's recipient: the MTA retries it in a
			 * transaction of its own (see the top of this file). */
			sora_metric_inc(m_rcpt_other);
			reply(s, "451 4.3.0 <%s> Recipient on another mail server, try again later",
			      s->rcpt_addr);
			sora_conn_resume(c);
			return;
		}
		if (s->be == NULL || s->step != BS_IDLE) {
			rcpt_tempfail(s, "backend connection lost");
			return;
		}
		wait_backend(s, sora_conn_server(c)->connect_timeout_ms);
		send_rcpt(s);
		return;
	}
	memcpy(s->order, order, n * sizeof(order[0]));
	s->norder = n;
	s->next = 0;
	s->deadline = proxy_now_ms() + sora_conn_server(c)->connect_timeout_ms;
	s->waiting = true;
	sora_conn_pause(c);
	try_connect(s);
}

/* ---- client commands ------------------------------------------------------ */

static void cmd_lhlo(struct lmtp_proxy *s)
{
	const struct sora_server_config *srv = sora_conn_server(s->c);
	const char *lines[8];
	char size[48];
	size_t n = 0;
	struct sora_buf b;

	transaction_reset(s);
	s->lhlo = true;
	lines[n++] = host_name(s);
	lines[n++] = "8BITMIME";
	lines[n++] = "ENHANCEDSTATUSCODES";
	lines[n++] = "PIPELINING";
	if (srv->max_message_size > 0)
		snprintf(size, sizeof(size), "SIZE %" PRIu64, srv->max_message_size);
	else
		snprintf(size, sizeof(size), "SIZE");
	lines[n++] = size;
	lines[n++] = "SMTPUTF8";
	if (srv->tls_use_starttls && !sora_conn_is_tls(s->c) && sora_conn_tls_available(s->c))
		lines[n++] = "STARTTLS";
	lines[n++] = "XCLIENT ADDR PORT";
	sora_buf_init(&b, 0);
	if (sora_smtp_reply_lines(&b, 250, NULL, lines, n) == 0)
		sora_conn_write(s->c, b.data, b.len);
	sora_buf_free(&b);
}

static void greet(struct lmtp_proxy *s)
{
	reply(s, "220 %s LMTP Sora proxy ready", host_name(s));
}

static void cmd_xclient(struct lmtp_proxy *s, const struct sora_smtp_command *cmd)
{
	const struct sora_smtp_xclient *x = &cmd->xclient;

	if (s->in_mail) {
		reply(s, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	if (x->attr[SORA_SMTP_XCLIENT_ADDR].state == SORA_SMTP_XCLIENT_SET) {
		sora_ip_format(&x->addr, s->x_ip, sizeof(s->x_ip));
		if (x->attr[SORA_SMTP_XCLIENT_PORT].state == SORA_SMTP_XCLIENT_SET)
			snprintf(s->x_port, sizeof(s->x_port), "%u", (unsigned)x->port);
		else
			s->x_port[0] = '\0';
	} else if (x->attr[SORA_SMTP_XCLIENT_ADDR].state == SORA_SMTP_XCLIENT_UNAVAILABLE) {
		s->x_ip[0] = s->x_port[0] = '\0';
	}
	sora_info(sora_conn_log_ctx(s->c), "XCLIENT: client %s", s->x_ip[0] ? s->x_ip : "-");
	transaction_reset(s);
	s->lhlo = false;
	greet(s);
}

static void cmd_data(struct lmtp_proxy *s)
{
	if (!s->in_mail) {
		reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (s->accepted == 0) {
		reply(s, "503 5.5.1 Error: no valid recipients");
		return;
	}
	if (s->be == NULL || s->step != BS_IDLE) {
		reply(s, "451 4.4.0 Mail server temporarily unavailable, try again later");
		transaction_reset(s);
		return;
	}
	sora_conn_printf(s->be, "DATA\r\n");
	s->step = BS_DATA;
	s->data_rcpts = s->accepted;
	wait_backend(s, sora_conn_server(s->c)->connect_timeout_ms);
}

static void command(struct lmtp_proxy *s, const char *line, size_t len)
{
	struct sora_smtp_command *cmd = &s->cmd;
	const struct sora_server_config *srv = sora_conn_server(s->c);
	struct sora_smtp_status st;
	const char *error = NULL;
	int rc = sora_smtp_command_parse(line, len, cmd, &error);

	if (rc < 0) {
		st = sora_smtp_error_status(rc, cmd->verb);
		reply(s, "%u %s %s", st.code, st.enhanced, error != NULL ? error : "Syntax error");
		return;
	}
	switch (cmd->verb) {
	case SORA_SMTP_CMD_LHLO:
		cmd_lhlo(s);
		return;
	case SORA_SMTP_CMD_HELO:
	case SORA_SMTP_CMD_EHLO:
		reply(s, "500 5.5.1 Error: this is LMTP, use LHLO");
		return;
	case SORA_SMTP_CMD_NOOP:
		reply(s, "250 2.0.0 OK");
		return;
	case SORA_SMTP_CMD_RSET:
		transaction_reset(s);
		reply(s, "250 2.0.0 OK");
		return;
	case SORA_SMTP_CMD_QUIT:
		reply(s, "221 2.0.0 %s closing connection", host_name(s));
		transaction_reset(s);
		sora_conn_close(s->c, SORA_CLOSE_NORMAL);
		return;
	case SORA_SMTP_CMD_VRFY:
		reply(s, "252 2.5.0 Send some mail, I'll try my best");
		return;
	case SORA_SMTP_CMD_XCLIENT:
		cmd_xclient(s, cmd);
		return;
	case SORA_SMTP_CMD_STARTTLS:
		if (sora_conn_is_tls(s->c) || !srv->tls_use_starttls || !sora_conn_tls_available(s->c)) {
			reply(s, "502 5.5.1 Error: STARTTLS not available");
			return;
		}
		reply(s, "220 2.0.0 Ready to start TLS");
		/* RFC 3207 4.2: everything learned before TLS is forgotten. */
		transaction_reset(s);
		s->lhlo = false;
		if (sora_conn_starttls(s->c) < 0)
			sora_conn_close(s->c, SORA_CLOSE_ERROR);
		return;
	default:
		break;
	}
	if (!s->lhlo) {
		reply(s, "503 5.5.1 Error: send LHLO first");
		return;
	}
	switch (cmd->verb) {
	case SORA_SMTP_CMD_MAIL:
		if (s->in_mail) {
			reply(s, "503 5.5.1 Error: nested MAIL command");
			return;
		}
		if (cmd->mail.has_size && srv->max_message_size > 0 &&
		    cmd->mail.size > srv->max_message_size) {
			reply(s, "552 5.3.4 Message size exceeds fixed limit");
			return;
		}
		snprintf(s->mail_line, sizeof(s->mail_line), "%.*s", (int)len, line);
		s->in_mail = true;
		s->be_idx = -1;
		s->accepted = 0;
		reply(s, "250 2.1.0 OK");
		return;
	case SORA_SMTP_CMD_RCPT:
		if (!s->in_mail) {
			reply(s, "503 5.5.1 Error: need MAIL command");
			return;
		}
		if (cmd->path.postmaster || cmd->path.mailbox.len == 0 ||
		    cmd->path.mailbox.len >= sizeof(s->rcpt_addr)) {
			reply(s, "550 5.1.1 User unknown");
			return;
		}
		snprintf(s->rcpt_line, sizeof(s->rcpt_line), "%.*s", (int)len, line);
		snprintf(s->rcpt_addr, sizeof(s->rcpt_addr), "%.*s", (int)cmd->path.mailbox.len,
			 cmd->path.mailbox.p);
		if (sora_job_submit(s->c, lookup_work, lookup_done, s) < 0)
			reply(s, "451 4.3.0 Server busy, try again later");
		return;
	case SORA_SMTP_CMD_DATA:
		cmd_data(s);
		return;
	case SORA_SMTP_CMD_BDAT:
	default:
		reply(s, "502 5.5.1 Error: command not implemented");
		return;
	}
}

/* Message bytes from the client while in DATA. */
static size_t data_input(struct lmtp_proxy *s, const char *data, size_t len)
{
	size_t used = 0;
	enum sora_smtp_data_status st;
	bool was_big = s->data.too_big;

	st = sora_smtp_data_feed(&s->data, data, len, &used, NULL, NULL);
	if (s->data.too_big && !was_big) {
		/* Nothing may be stored: the backend connection goes without
		 * the terminator, so it drops the transaction. */
		sora_info(sora_conn_log_ctx(s->c), "message over max_message_size (%" PRIu64
			  " bytes): discarding", sora_conn_server(s->c)->max_message_size);
		s->data_abort = true;
		drop_backend(s, false);
	}
	if (!s->data_abort && s->be != NULL && used > 0) {
		sora_conn_write(s->be, data, used);
		if (st != SORA_SMTP_DATA_DONE && sora_conn_output_full(s->be)) {
			s->stream_paused = true;
			sora_conn_pause(s->c);
		}
	}
	if (st != SORA_SMTP_DATA_DONE)
		return used;
	s->in_data = false;
	if (s->data_abort || s->be == NULL) {
		bool big = s->data.too_big;
		int n = s->data_rcpts;

		if (big)
			sora_metric_inc(m_too_big);
		while (n-- > 0) {
			if (big)
				reply(s, "552 5.3.4 Message size exceeds fixed limit");
			else
				reply(s, "451 4.4.0 Delivery failed temporarily, try again later");
		}
		transaction_reset(s);
		return used;
	}
	s->step = BS_REPLIES;
	s->replies_left = s->data_rcpts;
	{
		int64_t t = sora_conn_server(s->c)->command_timeout_ms;

		wait_backend(s, t > DATA_REPLY_MIN_MS ? t : DATA_REPLY_MIN_MS);
	}
	return used;
}

static size_t lmtp_input(struct sora_conn *c, const char *data, size_t len)
{
	struct lmtp_proxy *s = sess(c);
	size_t consumed;
	long n;

	if (s == NULL || s->waiting)
		return 0;
	if (s->in_data)
		return data_input(s, data, len);
	n = sora_line_find(data, len, &consumed);
	if (n < 0) {
		if (len > LMTP_LINE_MAX) {
			reply(s, "500 5.5.2 Line too long");
			sora_conn_close(c, SORA_CLOSE_PROTOCOL);
			return len;
		}
		return 0;
	}
	command(s, data, (size_t)n);
	return consumed;
}

static void lmtp_open(struct sora_conn *c)
{
	struct lmtp_proxy *s;
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, metrics_init);
	if (!sora_conn_peer_trusted(c)) {
		sora_warn(sora_conn_log_ctx(c), "LMTP from %s, which is not in trusted_networks: refused",
			  sora_conn_peer(c));
		sora_conn_printf(c, "554 5.7.1 Not allowed from your address\r\n");
		sora_conn_close(c, SORA_CLOSE_PROTOCOL);
		return;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		sora_conn_printf(c, "421 4.3.0 Out of memory\r\n");
		sora_conn_close(c, SORA_CLOSE_ERROR);
		return;
	}
	s->c = c;
	s->be_idx = -1;
	s->pool = sora_proxy_pool(sora_conn_server(c));
	sora_buf_init(&s->reply, BACKEND_REPLY_MAX + 1024);
	sora_conn_set_data(c, s);
	greet(s);
}

static void lmtp_close(struct sora_conn *c, enum sora_close_reason why)
{
	struct lmtp_proxy *s = sess(c);

	if (s == NULL)
		return;
	drop_backend(s, false);
	sora_buf_free(&s->reply);
	free(s);
	sora_conn_set_data(c, NULL);
}

static void lmtp_overflow(struct sora_conn *c)
{
	sora_conn_printf(c, "500 5.5.2 Line too long\r\n");
}

static void lmtp_reject(struct sora_conn *c, enum sora_reject_reason why)
{
	sora_conn_printf(c, "421 4.3.2 Too many connections, try again later\r\n");
}

static void lmtp_farewell(struct sora_conn *c, enum sora_close_reason why)
{
	sora_conn_printf(c, "421 4.4.2 %s\r\n", sora_close_reason_text(why));
}

const struct sora_conn_handler sora_lmtp_proxy_handler = {
	.protocol = "lmtp",
	/* A DATA chunk is consumed as it comes; only command lines wait. */
	.max_pending_input = 256 * 1024,
	.open = lmtp_open,
	.input = lmtp_input,
	.input_overflow = lmtp_overflow,
	.reject = lmtp_reject,
	.farewell = lmtp_farewell,
	.close = lmtp_close,
};
