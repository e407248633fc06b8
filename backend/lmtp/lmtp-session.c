/* The LMTP server session (RFC 2033): see lmtp.h.
 *
 * The session is a small state machine driven by input(): command lines
 * are cut at LF and handed to the pure parser (common/proto/smtp.h); DATA
 * bytes go through the streaming decoder (common/proto/smtp-data.h) into
 * the spool. Work that blocks (recipient lookups, delivery) runs as a job
 * on the worker pool while input is paused, which keeps pipelined commands
 * in order without any locking: the loop does not touch the session while
 * a job runs, and the framework runs close() only after the job's done
 * callback (workers.h). */
#include "backend/lmtp/lmtp.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/lmtp/lmtp-rcpt-cache.h"
#include "backend/lmtp/lmtp-spool.h"
#include "backend/store/deliver.h"
#include "common/config/config.h"
#include "common/core/log.h"
#include "common/db/listen.h"
#include "common/metrics/metrics.h"
#include "common/net/workers.h"
#include "common/proto/smtp-data.h"
#include "common/proto/smtp-reply.h"
#include "common/proto/smtp.h"

/* Input kept while a job runs or a line is incomplete. Lines longer than
 * SORA_SMTP_MAX_LINE are skipped as they arrive, so this is only reached by
 * pipelined input queued behind a job. */
#define LMTP_MAX_PENDING_INPUT (256 * 1024)
/* How long a job waits for a database connection when the pool is busy. */
#define LMTP_DB_ACQUIRE_MS 10000
#define LMTP_ADDR_MAX (SORA_SMTP_MAX_PATH + 1)

struct lmtp_rcpt {
	char address[LMTP_ADDR_MAX];      /* as given in RCPT TO */
	struct sora_store_recipient who;
	struct sora_buf prefix;           /* trace header lines, built at DATA end */
	struct sora_store_delivery_result res;
};

enum lmtp_job_kind {
	LMTP_JOB_NONE = 0,
	LMTP_JOB_RCPT,
	LMTP_JOB_DELIVER,
};

struct lmtp_session {
	struct sora_conn *c;
	const struct sora_server_config *srv;
	struct sora_log_ctx log;          /* the connection's, peer/user replaced by XCLIENT */
	char peer[96];                    /* XCLIENT's client for logs */
	char login[128];                  /* XCLIENT LOGIN, escaped for logs */
	char client_addr[72];             /* for Received: "[ip]"; "" for unix */
	char helo[SORA_SMTP_MAX_DOMAIN + 1];
	char xclient_helo[SORA_SMTP_MAX_XCLIENT_VALUE + 1];
	int64_t errors;
	bool lhlo;                        /* LHLO seen since connect/STARTTLS/XCLIENT */
	bool skip_line;                   /* discarding an over-long line */

	/* The mail transaction. */
	bool in_mail;
	bool smtputf8;                    /* MAIL gave SMTPUTF8: UTF-8 addresses allowed */
	bool rcpt_tempfailed;             /* a RCPT got 4xx: a DATA without recipients is expected */
	char sender[LMTP_ADDR_MAX];
	struct lmtp_rcpt *rcpts;
	size_t nrcpts;

	/* DATA. */
	bool in_data;
	struct sora_smtp_data dec;
	struct sora_lmtp_spool spool;

	/* The job in flight: only its worker touches these while it runs. */
	enum lmtp_job_kind job;
	char lookup[LMTP_ADDR_MAX];       /* RCPT: unquoted address to resolve */
	struct lmtp_rcpt pending;         /* RCPT: the recipient being resolved */
	int lookup_rc;
	struct sora_error job_error;
};

/* ---- metrics ---- */

static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;
static struct sora_metric_series *m_delivered, *m_duplicate, *m_tempfail;
static struct sora_metric_series *m_rcpt_ok, *m_rcpt_unknown, *m_rcpt_tempfail;
static struct sora_metric_series *m_too_big, *m_rcpt_cached;

static void metrics_init(void)
{
	struct sora_metric *d = sora_metric_counter(
		"sora_lmtp_deliveries_total", "LMTP copies by outcome (one per accepted recipient).",
		"result");
	struct sora_metric *r = sora_metric_counter(
		"sora_lmtp_recipients_total", "LMTP RCPT TO commands by outcome.", "result");
	struct sora_metric *b = sora_metric_counter(
		"sora_lmtp_rejected_messages_total", "LMTP messages refused after DATA.", "reason");

	m_delivered = sora_metric_with(d, "delivered");
	m_duplicate = sora_metric_with(d, "duplicate");
	m_tempfail = sora_metric_with(d, "tempfail");
	m_rcpt_ok = sora_metric_with(r, "accepted");
	m_rcpt_unknown = sora_metric_with(r, "unknown");
	m_rcpt_tempfail = sora_metric_with(r, "tempfail");
	m_too_big = sora_metric_with(b, "too_big");
	m_rcpt_cached = sora_metric_with(
		sora_metric_counter("sora_lmtp_recipient_cache_hits_total",
				    "LMTP recipients answered from the recipient cache (also "
				    "counted in sora_lmtp_recipients_total).", NULL));
}

/* ---- replies ---- */

static void reply(struct lmtp_session *s, unsigned code, const char *enhanced,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void reply(struct lmtp_session *s, unsigned code, const char *enhanced,
		  const char *fmt, ...)
{
	struct sora_buf b;
	va_list ap;

	sora_buf_init(&b, 0);
	va_start(ap, fmt);
	if (sora_smtp_reply_vappend(&b, code, enhanced, false, fmt, ap) == 0)
		sora_conn_write(s->c, b.data, b.len);
	va_end(ap);
	sora_buf_free(&b);
}

static const char *hostname(const struct lmtp_session *s)
{
	return s->srv->hostname != NULL ? s->srv->hostname : "localhost";
}

static void greet(struct lmtp_session *s)
{
	reply(s, 220, NULL, "%s LMTP Sora ready", hostname(s));
}

/* A client error: counted; too many end the session (STYLE.md). */
static void reply_error(struct lmtp_session *s, unsigned code, const char *enhanced,
			const char *text)
{
	s->errors++;
	reply(s, code, enhanced, "%s", text);
	if (s->srv->max_errors > 0 && s->errors >= s->srv->max_errors) {
		sora_info(&s->log, "too many invalid commands (%" PRId64 "): closing", s->errors);
		reply(s, 421, "4.7.0", "%s Error: too many errors", hostname(s));
		sora_conn_close(s->c, SORA_CLOSE_PROTOCOL);
	}
}

/* ---- session state ---- */

static void transaction_reset(struct lmtp_session *s)
{
	for (size_t i = 0; i < s->nrcpts; i++)
		sora_buf_free(&s->rcpts[i].prefix);
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpts = 0;
	s->in_mail = false;
	s->smtputf8 = false;
	s->rcpt_tempfailed = false;
	s->in_data = false;
	s->sender[0] = '\0';
	sora_lmtp_spool_reset(&s->spool);
}

static void session_free(struct lmtp_session *s)
{
	transaction_reset(s);
	sora_buf_free(&s->pending.prefix);
	free(s);
}

/* The client's address as Received shows it, from a struct sora_ip. */
static void format_client_addr(const struct sora_ip *ip, char *buf, size_t size)
{
	char text[64];

	if (ip == NULL) {
		buf[0] = '\0';
		return;
	}
	sora_ip_format(ip, text, sizeof(text));
	snprintf(buf, size, sora_ip_is_v4(ip) ? "[%s]" : "[IPv6:%s]", text);
}

static const char *spool_dir(void)
{
	const struct sora_backend *be = sora_backend();
	const char *dir = be != NULL ? be->cfg->uploader.path : NULL;

	return dir != NULL && dir[0] != '\0' ? dir : "var/staging";
}

static void lmtp_open(struct sora_conn *c)
{
	struct lmtp_session *s = calloc(1, sizeof(*s));

	pthread_once(&metrics_once, metrics_init);
	if (s == NULL) {
		sora_conn_printf(c, "421 4.3.0 Server out of memory\r\n");
		sora_conn_close(c, SORA_CLOSE_ERROR);
		return;
	}
	s->c = c;
	s->srv = sora_conn_server(c);
	s->log = *sora_conn_log_ctx(c);
	sora_buf_init(&s->pending.prefix, 0);
	sora_lmtp_spool_init(&s->spool, spool_dir());
	format_client_addr(sora_conn_peer_ip(c), s->client_addr, sizeof(s->client_addr));
	sora_conn_set_data(c, s);
	if (sora_backend() == NULL) {
		/* Only while starting or stopping: the store is not there. */
		reply(s, 421, "4.3.0", "%s Service not available, try again later", hostname(s));
		sora_conn_close(c, SORA_CLOSE_NORMAL);
		return;
	}
	greet(s);
}

/* ---- jobs ---- */

static void job_finished(struct sora_conn *c, struct lmtp_session *s)
{
	s->job = LMTP_JOB_NONE;
	if (!sora_conn_closing(c))
		sora_conn_resume(c);
}

/* Whether this session may use the recipient cache: the listener's
 * notifications keep it exact only while it is connected
 * (lmtp-rcpt-cache.h). */
static bool rcpt_cache_usable(const struct lmtp_session *s)
{
	struct sora_backend *be = sora_backend();

	return s->srv->recipient_cache_ttl_ms > 0 && be != NULL &&
	       sora_db_listener_connected(be->listen);
}

static enum sora_job_status rcpt_work(struct sora_job *job, void *arg)
{
	struct lmtp_session *s = arg;
	struct sora_backend *be = sora_backend();
	struct sora_db_conn *conn = NULL;
	uint64_t generation = sora_lmtp_rcpt_cache_generation();

	sora_error_clear(&s->job_error);
	if (be == NULL) {
		s->lookup_rc = sora_error_set(&s->job_error, SORA_ERR_TEMPORARY,
					      "the backend is stopping");
		return SORA_JOB_DONE;
	}
	s->lookup_rc = sora_db_acquire(be->db, SORA_DB_PRIMARY, LMTP_DB_ACQUIRE_MS, &conn,
				       &s->job_error);
	if (s->lookup_rc != 0)
		return SORA_JOB_DONE;
	s->lookup_rc = sora_store_resolve_recipient(conn, sora_str_c(s->lookup), 0,
						    &s->pending.who, &s->job_error);
	sora_db_release(&conn);
	if (s->lookup_rc == 0 && rcpt_cache_usable(s))
		sora_lmtp_rcpt_cache_put(s->lookup, generation, &s->pending.who);
	return SORA_JOB_DONE;
}

static void rcpt_done(struct sora_conn *c, void *arg)
{
	struct lmtp_session *s = arg;
	char esc[LMTP_ADDR_MAX * 4];

	sora_log_escape(sora_str_c(s->pending.address), esc, sizeof(esc));
	if (s->lookup_rc == 0) {
		struct lmtp_rcpt *r = realloc(s->rcpts, (s->nrcpts + 1) * sizeof(*r));

		if (r == NULL) {
			reply(s, 452, "4.3.1", "<%s> Out of memory", s->pending.address);
		} else {
			s->rcpts = r;
			r = &s->rcpts[s->nrcpts++];
			*r = s->pending;
			sora_buf_init(&r->prefix, 0);
			sora_metric_inc(m_rcpt_ok);
			reply(s, 250, "2.1.5", "<%s> OK", s->pending.address);
		}
	} else if (s->job_error.cls == SORA_ERR_NOT_FOUND) {
		sora_metric_inc(m_rcpt_unknown);
		sora_info(&s->log, "rcpt=<%s>: unknown recipient", esc);
		reply(s, 550, "5.1.1", "<%s> User doesn't exist", s->pending.address);
	} else {
		/* Any other class is the server's problem, not the sender's:
		 * the message stays queued at the MTA until it is fixed. */
		sora_metric_inc(m_rcpt_tempfail);
		s->rcpt_tempfailed = true;
		sora_warn(&s->log, "rcpt=<%s>: lookup failed (%s): %s", esc,
			  sora_error_class_name(s->job_error.cls), s->job_error.msg);
		reply(s, 451, "4.3.0", "<%s> Temporary failure in recipient lookup, try again later",
		      s->pending.address);
	}
	job_finished(c, s);
}

static enum sora_job_status deliver_work(struct sora_job *job, void *arg)
{
	struct lmtp_session *s = arg;
	struct sora_backend *be = sora_backend();
	struct sora_store_message msg;
	struct sora_store_body body;
	struct sora_db_conn *conn = NULL;
	const char *instance = sora_backend_instance_id();
	bool stored = false;
	int rc;

	sora_error_clear(&s->job_error);
	for (size_t i = 0; i < s->nrcpts; i++) {
		memset(&s->rcpts[i].res, 0, sizeof(s->rcpts[i].res));
		s->rcpts[i].res.status = SORA_STORE_FAILED;
	}
	if (be == NULL) {
		sora_error_set(&s->job_error, SORA_ERR_TEMPORARY, "the backend is stopping");
		return SORA_JOB_DONE;
	}
	sora_lmtp_spool_body(&s->spool, &body);
	if (sora_store_message_prepare(&msg, &body, sora_str_c(s->sender), &s->job_error) < 0) {
		sora_store_message_free(&msg);
		return SORA_JOB_DONE;
	}
	rc = sora_db_acquire(be->db, SORA_DB_PRIMARY, LMTP_DB_ACQUIRE_MS, &conn, &s->job_error);
	if (rc == 0) {
		/* Every copy at once: the bodies first, then one commit for
		 * all of them (sora_store_deliver_many). */
		struct sora_store_delivery *d = calloc(s->nrcpts, sizeof(*d));
		struct sora_store_delivery_result *res = calloc(s->nrcpts, sizeof(*res));

		if (d == NULL || res == NULL) {
			sora_error_set(&s->job_error, SORA_ERR_TEMPORARY, "out of memory");
		} else {
			for (size_t i = 0; i < s->nrcpts; i++) {
				d[i].account_id = s->rcpts[i].who.account_id;
				d[i].rcpt = sora_str_c(s->rcpts[i].address);
				d[i].prefix = sora_buf_str(&s->rcpts[i].prefix);
			}
			sora_store_deliver_many(conn, be->blobs, instance, &msg, d, s->nrcpts, res);
			for (size_t i = 0; i < s->nrcpts; i++) {
				s->rcpts[i].res = res[i];
				stored |= res[i].status == SORA_STORE_DELIVERED;
			}
		}
		free(d);
		free(res);
	}
	sora_db_release(&conn);
	/* New pending_uploads rows: the uploader need not wait for its poll. */
	if (stored)
		sora_backend_kick_uploader();
	sora_store_message_free(&msg);
	return SORA_JOB_DONE;
}

static void deliver_done(struct sora_conn *c, void *arg)
{
	struct lmtp_session *s = arg;
	char esc[LMTP_ADDR_MAX * 4], from[LMTP_ADDR_MAX * 4];

	sora_log_escape(sora_str_c(s->sender), from, sizeof(from));
	for (size_t i = 0; i < s->nrcpts; i++) {
		struct lmtp_rcpt *r = &s->rcpts[i];

		sora_log_escape(sora_str_c(r->address), esc, sizeof(esc));
		switch (r->res.status) {
		case SORA_STORE_DELIVERED:
			sora_metric_inc(m_delivered);
			sora_info(&s->log, "delivered: from=<%s> rcpt=<%s> account=%" PRId64
				  " size=%" PRIu64 " mailbox=%s uid=%" PRId64 " hash=%.16s",
				  from, esc, r->who.account_id, r->res.size, SORA_STORE_INBOX,
				  r->res.uid, r->res.hash);
			reply(s, 250, "2.0.0", "<%s> Saved", r->address);
			break;
		case SORA_STORE_DUPLICATE:
			sora_metric_inc(m_duplicate);
			sora_info(&s->log, "duplicate delivery ignored: from=<%s> rcpt=<%s> account=%"
				  PRId64 " size=%" PRIu64 " mailbox=%s", from, esc, r->who.account_id,
				  (uint64_t)s->spool.size, SORA_STORE_INBOX);
			reply(s, 250, "2.0.0", "<%s> Saved (already delivered)", r->address);
			break;
		case SORA_STORE_FAILED: {
			/* A failure before this copy was tried (parsing, no
			 * database connection) is the job's error. */
			const struct sora_error *e = r->res.error.cls != SORA_ERR_OK ?
				&r->res.error : &s->job_error;

			/* Every class is answered 451: whatever failed here
			 * (a missing INBOX included) is the server's to fix,
			 * and the MTA keeps the message meanwhile. */
			sora_metric_inc(m_tempfail);
			sora_warn(&s->log, "delivery failed: from=<%s> rcpt=<%s> size=%" PRIu64
				  " (%s): %s", from, esc, (uint64_t)s->spool.size,
				  sora_error_class_name(e->cls), e->msg);
			reply(s, 451, "4.3.0", "<%s> Temporary failure, try again later", r->address);
			break;
		}
		}
	}
	transaction_reset(s);
	job_finished(c, s);
}

static bool submit(struct lmtp_session *s, enum lmtp_job_kind kind, sora_job_work_cb *work,
		   sora_job_done_cb *done)
{
	s->job = kind;
	if (sora_job_submit(s->c, work, done, s) < 0) {
		s->job = LMTP_JOB_NONE;
		return false;
	}
	return true;
}

/* ---- commands ---- */

static void cmd_lhlo(struct lmtp_session *s, const struct sora_smtp_command *cmd)
{
	const char *lines[8];
	char host[300], size[48];
	size_t n = 0;
	struct sora_buf b;

	snprintf(s->helo, sizeof(s->helo), "%.*s", (int)cmd->domain.len, cmd->domain.p);
	transaction_reset(s);
	s->lhlo = true;
	snprintf(host, sizeof(host), "%s", hostname(s));
	lines[n++] = host;
	lines[n++] = "8BITMIME";
	lines[n++] = "ENHANCEDSTATUSCODES";
	lines[n++] = "PIPELINING";
	if (s->srv->max_message_size > 0)
		snprintf(size, sizeof(size), "SIZE %" PRIu64, s->srv->max_message_size);
	else
		snprintf(size, sizeof(size), "SIZE");
	lines[n++] = size;
	lines[n++] = "SMTPUTF8";
	if (s->srv->tls_use_starttls && !sora_conn_is_tls(s->c) && sora_conn_tls_available(s->c))
		lines[n++] = "STARTTLS";
	if (sora_conn_peer_trusted(s->c))
		lines[n++] = "XCLIENT ADDR PORT HELO LOGIN";
	sora_buf_init(&b, 0);
	if (sora_smtp_reply_lines(&b, 250, NULL, lines, n) == 0)
		sora_conn_write(s->c, b.data, b.len);
	sora_buf_free(&b);
}

static void cmd_mail(struct lmtp_session *s, const struct sora_smtp_command *cmd)
{
	const struct sora_smtp_mail_params *p = &cmd->mail;
	uint64_t max = s->srv->max_message_size;

	if (!s->lhlo) {
		reply_error(s, 503, "5.5.1", "Error: send LHLO first");
		return;
	}
	if (s->in_mail) {
		reply_error(s, 503, "5.5.1", "Error: nested MAIL command");
		return;
	}
	if (p->body == SORA_SMTP_BODY_BINARYMIME) {
		reply_error(s, 555, "5.5.4", "BODY=BINARYMIME is not supported");
		return;
	}
	/* RFC 6531: a UTF-8 address is only allowed in a transaction the
	 * client declared with SMTPUTF8, and 553 5.6.7 ("non-ASCII addresses
	 * not permitted") is the answer otherwise. The client then knows the
	 * mail needs SMTPUTF8 all the way to the recipient. */
	if (cmd->path.utf8 && !p->smtputf8) {
		reply(s, 553, "5.6.7", "Non-ASCII sender address requires SMTPUTF8 in MAIL FROM");
		return;
	}
	if (p->has_size && max > 0 && p->size > max) {
		reply(s, 552, "5.3.4", "Message size exceeds fixed limit of %" PRIu64 " bytes", max);
		return;
	}
	if (cmd->path.mailbox.len >= sizeof(s->sender)) {
		reply_error(s, 501, "5.1.7", "Path too long");
		return;
	}
	memcpy(s->sender, cmd->path.mailbox.p, cmd->path.mailbox.len);
	s->sender[cmd->path.mailbox.len] = '\0';
	s->in_mail = true;
	s->smtputf8 = p->smtputf8;
	reply(s, 250, "2.1.0", "OK");
}

static void cmd_rcpt(struct lmtp_session *s, const struct sora_smtp_command *cmd)
{
	const struct sora_smtp_path *path = &cmd->path;
	char local[SORA_SMTP_MAX_LOCAL_PART + 1];
	size_t local_len;
	int n;

	if (!s->in_mail) {
		reply_error(s, 503, "5.5.1", "Error: need MAIL command");
		return;
	}
	if (s->nrcpts >= SORA_LMTP_MAX_RECIPIENTS) {
		reply(s, 452, "4.5.3", "Error: too many recipients");
		return;
	}
	if (path->utf8 && !s->smtputf8) {
		reply(s, 553, "5.6.7", "Non-ASCII recipient address requires SMTPUTF8 in MAIL FROM");
		return;
	}
	memset(&s->pending, 0, offsetof(struct lmtp_rcpt, prefix));
	snprintf(s->pending.address, sizeof(s->pending.address), "%.*s",
		 (int)path->mailbox.len, path->mailbox.p);
	/* Recipients are looked up by their plain address: a quoted local part
	 * ("john.doe"@d is john.doe@d) is unquoted first. <postmaster> without
	 * a domain means our own postmaster (RFC 5321 4.5.1). */
	if (path->postmaster) {
		n = snprintf(s->lookup, sizeof(s->lookup), "postmaster@%s", hostname(s));
	} else if (sora_smtp_local_unquote(path->local, local, sizeof(local), &local_len) < 0) {
		reply(s, 550, "5.1.1", "<%s> User doesn't exist", s->pending.address);
		return;
	} else {
		n = snprintf(s->lookup, sizeof(s->lookup), "%.*s@%.*s", (int)local_len, local,
			     (int)path->domain.len, path->domain.p);
	}
	if (n < 0 || (size_t)n >= sizeof(s->lookup)) {
		reply(s, 550, "5.1.1", "<%s> User doesn't exist", s->pending.address);
		return;
	}
	if (rcpt_cache_usable(s) &&
	    sora_lmtp_rcpt_cache_get(s->lookup, s->srv->recipient_cache_ttl_ms, &s->pending.who)) {
		sora_metric_inc(m_rcpt_cached);
		s->lookup_rc = 0;
		sora_error_clear(&s->job_error);
		rcpt_done(s->c, s);
		return;
	}
	if (!submit(s, LMTP_JOB_RCPT, rcpt_work, rcpt_done)) {
		s->rcpt_tempfailed = true;
		reply(s, 451, "4.3.0", "<%s> Temporary failure, try again later", s->pending.address);
	}
}

static void cmd_data(struct lmtp_session *s)
{
	if (!s->in_mail) {
		reply_error(s, 503, "5.5.1", "Error: need MAIL command");
		return;
	}
	if (s->nrcpts == 0) {
		/* After a temporary RCPT failure a pipelining client sends
		 * DATA without knowing; that is not its mistake and does not
		 * count towards max_errors (RFC 2920 §3.1). */
		if (s->rcpt_tempfailed)
			reply(s, 503, "5.5.1", "Error: no valid recipients");
		else
			reply_error(s, 503, "5.5.1", "Error: no valid recipients");
		return;
	}
	sora_smtp_data_init(&s->dec, s->srv->max_message_size);
	sora_lmtp_spool_reset(&s->spool);
	s->in_data = true;
	sora_conn_set_transfer(s->c, true);
	reply(s, 354, NULL, "Start mail input; end with <CRLF>.<CRLF>");
}

static void cmd_starttls(struct lmtp_session *s)
{
	if (sora_conn_is_tls(s->c)) {
		reply_error(s, 503, "5.5.1", "Error: TLS is already active");
		return;
	}
	if (!s->srv->tls_use_starttls || !sora_conn_tls_available(s->c)) {
		reply_error(s, 502, "5.5.1", "Error: command not implemented");
		return;
	}
	reply(s, 220, "2.0.0", "Ready to start TLS");
	if (sora_conn_starttls(s->c) < 0) {
		reply(s, 421, "4.7.0", "%s TLS setup failed", hostname(s));
		sora_conn_close(s->c, SORA_CLOSE_ERROR);
		return;
	}
	/* RFC 3207 4.2: everything learned before TLS is forgotten. */
	transaction_reset(s);
	s->lhlo = false;
	s->helo[0] = '\0';
}

static void cmd_xclient(struct lmtp_session *s, const struct sora_smtp_command *cmd)
{
	const struct sora_smtp_xclient *x = &cmd->xclient;
	const struct sora_smtp_xclient_value *v;
	char ip[64];

	if (!sora_conn_peer_trusted(s->c)) {
		sora_warn(&s->log, "XCLIENT refused: peer is not in trusted_networks");
		reply_error(s, 550, "5.7.0", "Error: insufficient authorization");
		return;
	}
	if (s->in_mail) {
		reply_error(s, 503, "5.5.1", "Error: MAIL transaction in progress");
		return;
	}
	v = &x->attr[SORA_SMTP_XCLIENT_ADDR];
	if (v->state == SORA_SMTP_XCLIENT_SET) {
		const struct sora_smtp_xclient_value *pv = &x->attr[SORA_SMTP_XCLIENT_PORT];

		format_client_addr(&x->addr, s->client_addr, sizeof(s->client_addr));
		sora_ip_format(&x->addr, ip, sizeof(ip));
		if (pv->state == SORA_SMTP_XCLIENT_SET)
			snprintf(s->peer, sizeof(s->peer), sora_ip_is_v4(&x->addr) ? "%s:%u" : "[%s]:%u",
				 ip, (unsigned)x->port);
		else
			snprintf(s->peer, sizeof(s->peer), "%s", ip);
		s->log.peer = s->peer;
	} else if (v->state == SORA_SMTP_XCLIENT_UNAVAILABLE) {
		snprintf(s->client_addr, sizeof(s->client_addr), "[UNAVAILABLE]");
		snprintf(s->peer, sizeof(s->peer), "unknown");
		s->log.peer = s->peer;
	}
	v = &x->attr[SORA_SMTP_XCLIENT_HELO];
	if (v->state == SORA_SMTP_XCLIENT_SET)
		snprintf(s->xclient_helo, sizeof(s->xclient_helo), "%.*s", (int)v->value.len, v->value.p);
	else if (v->state == SORA_SMTP_XCLIENT_UNAVAILABLE)
		s->xclient_helo[0] = '\0';
	v = &x->attr[SORA_SMTP_XCLIENT_LOGIN];
	if (v->state == SORA_SMTP_XCLIENT_SET) {
		sora_log_escape(v->value, s->login, sizeof(s->login));
		s->log.user = s->login;
	} else if (v->state == SORA_SMTP_XCLIENT_UNAVAILABLE) {
		s->log.user = NULL;
	}
	sora_info(&s->log, "XCLIENT from %s", sora_conn_peer(s->c));
	/* Postfix XCLIENT_README: the session starts over with a greeting and
	 * the client says LHLO again. */
	transaction_reset(s);
	s->lhlo = false;
	greet(s);
}

static void command(struct lmtp_session *s, const char *line, size_t len)
{
	struct sora_smtp_command *cmd = malloc(sizeof(*cmd));
	struct sora_smtp_status st;
	const char *error = NULL;
	int rc;

	if (cmd == NULL) {
		reply(s, 421, "4.3.0", "%s Out of memory", hostname(s));
		sora_conn_close(s->c, SORA_CLOSE_ERROR);
		return;
	}
	rc = sora_smtp_command_parse(line, len, cmd, &error);
	if (rc < 0) {
		st = sora_smtp_error_status(rc, cmd->verb);
		reply_error(s, st.code, st.enhanced, error != NULL ? error : "Syntax error");
		goto out;
	}
	switch (cmd->verb) {
	case SORA_SMTP_CMD_LHLO:
		cmd_lhlo(s, cmd);
		break;
	case SORA_SMTP_CMD_HELO:
	case SORA_SMTP_CMD_EHLO:
		/* RFC 2033 4.1: an LMTP server must not accept them. */
		reply_error(s, 500, "5.5.1", "Error: this is LMTP, use LHLO");
		break;
	case SORA_SMTP_CMD_MAIL:
		cmd_mail(s, cmd);
		break;
	case SORA_SMTP_CMD_RCPT:
		cmd_rcpt(s, cmd);
		break;
	case SORA_SMTP_CMD_DATA:
		cmd_data(s);
		break;
	case SORA_SMTP_CMD_RSET:
		transaction_reset(s);
		reply(s, 250, "2.0.0", "OK");
		break;
	case SORA_SMTP_CMD_NOOP:
		reply(s, 250, "2.0.0", "OK");
		break;
	case SORA_SMTP_CMD_QUIT:
		reply(s, 221, "2.0.0", "%s Bye", hostname(s));
		sora_conn_close(s->c, SORA_CLOSE_NORMAL);
		break;
	case SORA_SMTP_CMD_VRFY:
		/* RFC 5321 3.5.3: 252 says "not verified, but try RCPT". Address
		 * probing gets nothing here. */
		reply(s, 252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery");
		break;
	case SORA_SMTP_CMD_HELP:
		reply(s, 214, "2.0.0", "Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP%s",
		      s->srv->tls_use_starttls ? " STARTTLS" : "");
		break;
	case SORA_SMTP_CMD_STARTTLS:
		cmd_starttls(s);
		break;
	case SORA_SMTP_CMD_XCLIENT:
		cmd_xclient(s, cmd);
		break;
	case SORA_SMTP_CMD_BDAT:
	case SORA_SMTP_CMD_UNKNOWN:
		reply_error(s, 502, "5.5.1", "Error: command not implemented");
		break;
	}
out:
	free(cmd);
}

/* ---- DATA ---- */

/* The end of DATA: refuse, or build every copy's trace lines and start the
 * delivery job. */
static void data_end(struct lmtp_session *s)
{
	time_t now = time(NULL);
	const char *helo;

	s->in_data = false;
	sora_conn_set_transfer(s->c, false);
	if (s->dec.too_big || s->dec.sink_failed || sora_lmtp_spool_finish(&s->spool) < 0) {
		bool too_big = s->dec.too_big;
		char esc[LMTP_ADDR_MAX * 4];

		sora_log_escape(sora_str_c(s->sender), esc, sizeof(esc));
		if (too_big) {
			sora_metric_inc(m_too_big);
			sora_info(&s->log, "message from=<%s> refused: %" PRIu64 " bytes, over the %"
				  PRIu64 "-byte limit", esc, s->dec.size, s->srv->max_message_size);
		} else {
			sora_error(&s->log, "message from=<%s> refused: spooling failed: %s", esc,
				   strerror(s->spool.error != 0 ? s->spool.error : EIO));
		}
		for (size_t i = 0; i < s->nrcpts; i++) {
			if (too_big)
				reply(s, 552, "5.3.4", "<%s> Message size exceeds fixed limit",
				      s->rcpts[i].address);
			else
				reply(s, 451, "4.3.0", "<%s> Temporary failure, try again later",
				      s->rcpts[i].address);
		}
		transaction_reset(s);
		return;
	}
	helo = s->xclient_helo[0] != '\0' ? s->xclient_helo : s->helo;
	for (size_t i = 0; i < s->nrcpts; i++) {
		struct lmtp_rcpt *r = &s->rcpts[i];
		struct sora_lmtp_trace t = {
			.sender = sora_str_c(s->sender),
			.rcpt = sora_str_c(r->address),
			.helo = sora_str_c(helo),
			.client_addr = s->client_addr[0] != '\0' ? s->client_addr : NULL,
			.hostname = hostname(s),
			.session_id = sora_conn_id(s->c),
			.tls = sora_conn_is_tls(s->c),
			.smtputf8 = s->smtputf8,
			.when = now,
		};

		sora_buf_reset(&r->prefix);
		if (sora_lmtp_trace_headers(&t, &r->prefix) < 0) {
			for (size_t j = 0; j < s->nrcpts; j++)
				reply(s, 451, "4.3.0", "<%s> Out of memory, try again later",
				      s->rcpts[j].address);
			transaction_reset(s);
			return;
		}
	}
	if (!submit(s, LMTP_JOB_DELIVER, deliver_work, deliver_done)) {
		for (size_t i = 0; i < s->nrcpts; i++)
			reply(s, 451, "4.3.0", "<%s> Temporary failure, try again later",
			      s->rcpts[i].address);
		transaction_reset(s);
	}
}

static size_t data_input(struct lmtp_session *s, const char *data, size_t len)
{
	size_t consumed = 0;

	if (sora_smtp_data_feed(&s->dec, data, len, &consumed, sora_lmtp_spool_write,
				&s->spool) == SORA_SMTP_DATA_DONE)
		data_end(s);
	return consumed;
}

/* ---- input ---- */

static size_t lmtp_input(struct sora_conn *c, const char *data, size_t len)
{
	struct lmtp_session *s = sora_conn_data(c);
	const char *lf;
	size_t n;

	if (s->in_data)
		return data_input(s, data, len);
	lf = memchr(data, '\n', len);
	if (s->skip_line) {
		if (lf == NULL)
			return len;
		s->skip_line = false;
		reply_error(s, 500, "5.5.2", "Line too long");
		return (size_t)(lf - data) + 1;
	}
	if (lf == NULL) {
		/* An over-long line is skipped as it arrives (RFC 5321
		 * 4.5.3.1.4) instead of being buffered. */
		if (len > SORA_SMTP_MAX_LINE) {
			s->skip_line = true;
			return len;
		}
		return 0;
	}
	n = (size_t)(lf - data) + 1;
	command(s, data, n);
	return n;
}

static void lmtp_overflow(struct sora_conn *c)
{
	struct lmtp_session *s = sora_conn_data(c);

	reply(s, 421, "4.7.0", "%s Error: too much pipelined input", hostname(s));
}

static void lmtp_reject(struct sora_conn *c, enum sora_reject_reason why)
{
	const struct sora_server_config *srv = sora_conn_server(c);

	sora_conn_printf(c, "421 4.7.0 %s Too many connections%s, try again later\r\n",
			 srv->hostname != NULL ? srv->hostname : "localhost",
			 why == SORA_REJECT_MAX_PER_IP ? " from your address" : "");
}

static void lmtp_farewell(struct sora_conn *c, enum sora_close_reason why)
{
	const struct sora_server_config *srv = sora_conn_server(c);
	const char *host = srv->hostname != NULL ? srv->hostname : "localhost";

	switch (why) {
	case SORA_CLOSE_IDLE:
		sora_conn_printf(c, "421 4.4.2 %s Error: timeout exceeded\r\n", host);
		break;
	case SORA_CLOSE_SESSION_MAX:
		sora_conn_printf(c, "421 4.4.2 %s Error: session time limit exceeded\r\n", host);
		break;
	case SORA_CLOSE_SLOW:
		sora_conn_printf(c, "421 4.4.2 %s Error: connection too slow\r\n", host);
		break;
	case SORA_CLOSE_SHUTDOWN:
		sora_conn_printf(c, "421 4.3.2 %s Service shutting down\r\n", host);
		break;
	default:
		sora_conn_printf(c, "421 4.3.0 %s Closing connection\r\n", host);
		break;
	}
}

static void lmtp_close(struct sora_conn *c, enum sora_close_reason why)
{
	struct lmtp_session *s = sora_conn_data(c);

	/* The framework runs this after any job's done callback. */
	if (s != NULL)
		session_free(s);
}

const struct sora_conn_handler sora_lmtp_handler = {
	.protocol = "lmtp",
	.max_pending_input = LMTP_MAX_PENDING_INPUT,
	.open = lmtp_open,
	.input = lmtp_input,
	.input_overflow = lmtp_overflow,
	.reject = lmtp_reject,
	.farewell = lmtp_farewell,
	.close = lmtp_close,
};
