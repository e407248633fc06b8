/* APPEND with MULTIAPPEND (RFC 3502), APPENDLIMIT (RFC 7889) and UIDPLUS
 * APPENDUID (RFC 4315).
 *
 * The message literals arrive before the command is complete. Each one is
 * checked against APPENDLIMIT when it is announced, before any of its
 * bytes is read: over the limit the command is answered "NO [TOOBIG]" and
 * a synchronising literal is never sent by the client (a non-synchronising
 * one is skipped by the parser, never taken for commands). Accepted bytes
 * go into a spool (backend/lmtp/lmtp-spool.h: memory up to 128 KiB, then an
 * unnamed temporary file next to the staging area), so a session never
 * holds a large message in memory. Literals up to the parser's in-line
 * size arrive inside the command instead.
 *
 * When the command is complete, one job parses each message once (MIME
 * structure, envelope, search text) and stores all of them in one
 * transaction through the delivery pipeline (backend/store/deliver.h):
 * bodies fsynced in staging, then the rows committed, then "OK". A
 * MULTIAPPEND is all or nothing. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/imap/imap-private.h"
#include "backend/lmtp/lmtp-spool.h"
#include "backend/store/deliver.h"
#include "backend/store/mailbox.h"
#include "common/config/config.h"
#include "common/proto/imap-search.h"

#define APPEND_MAX_MESSAGES 1000
/* All literals of one APPEND together, on disk: append_limit times this. */
#define APPEND_TOTAL_FACTOR 10
/* Literals of other commands are small (a search string, a name). */
#define OTHER_LITERAL_MAX (64 * 1024)

struct imap_append {
	/* Every message literal of the command, one after the other, in one
	 * spool: one buffer of at most SORA_LMTP_SPOOL_MEM in memory and at
	 * most one temporary file, however many messages a MULTIAPPEND has. */
	struct sora_lmtp_spool spool;
	bool spool_open;
	/* Where each message starts in the spool, in arrival order. */
	uint64_t *starts;
	size_t count, cap;
	uint64_t total;            /* bytes announced so far */
	bool refused;              /* TOOBIG answered: drop the command */
	bool in_literal;
};

static const char *spool_dir(void)
{
	const struct sora_backend *be = sora_backend();
	const char *dir = be != NULL ? be->cfg->uploader.path : NULL;

	return dir != NULL && dir[0] != '\0' ? dir : "var/staging";
}

static uint64_t append_limit(struct imap_session *s)
{
	uint64_t l = sora_conn_server(s->c)->append_limit;

	return l > 0 ? l : SORA_DEFAULT_APPEND_LIMIT;
}

static void append_state_free(struct imap_append *a)
{
	if (a == NULL)
		return;
	if (a->spool_open)
		sora_lmtp_spool_reset(&a->spool);
	free(a->starts);
	free(a);
}

void imap_append_abort(struct imap_session *s)
{
	append_state_free(s->append);
	s->append = NULL;
}

bool imap_append_literal(struct imap_session *s, const struct sora_imap_command *partial,
			 const struct sora_imap_literal_info *lit)
{
	struct sora_imap_parser *p = sora_imap_front_parser(s->c);
	bool is_append = sora_str_ieq_c(partial->name, "APPEND");
	int tl = (int)partial->tag.len;

	if (!is_append) {
		if (lit->binary) {
			/* literal8 belongs to APPEND only (RFC 3516 §4.3). */
			sora_imap_parser_refuse_literal(p);
			sora_conn_printf(s->c, "%.*s BAD Binary literals are only allowed in APPEND.\r\n",
					 tl, partial->tag.p);
			return true;
		}
		if (lit->streamed || lit->size > OTHER_LITERAL_MAX) {
			sora_imap_parser_refuse_literal(p);
			sora_conn_printf(s->c, "%.*s NO [TOOBIG] Literal too large for this command.\r\n",
					 tl, partial->tag.p);
			return true;
		}
		if (lit->sync)
			sora_conn_printf(s->c, "+ OK\r\n");
		return true;
	}
	if (s->append != NULL && s->append->refused) {
		sora_imap_parser_refuse_literal(p);
		return true;
	}
	/* A literal8 (~{n}, RFC 3516 §4.4) is stored as it is, NULs and all. */
	if (lit->size > append_limit(s)) {
		sora_imap_parser_refuse_literal(p);
		imap_append_abort(s);
		sora_conn_printf(s->c, "%.*s NO [TOOBIG] Message larger than APPENDLIMIT %llu.\r\n",
				 tl, partial->tag.p, (unsigned long long)append_limit(s));
		return true;
	}
	if (lit->streamed) {
		struct imap_append *a = s->append;

		if (a == NULL) {
			a = s->append = calloc(1, sizeof(*a));
			if (a == NULL)
				goto oom;
		}
		if (a->count >= APPEND_MAX_MESSAGES ||
		    a->total + lit->size > APPEND_TOTAL_FACTOR * append_limit(s)) {
			sora_imap_parser_refuse_literal(p);
			imap_append_abort(s);
			sora_conn_printf(s->c, "%.*s NO [LIMIT] Too many messages or bytes in one APPEND.\r\n", tl,
					 partial->tag.p);
			return true;
		}
		if (a->count == a->cap) {
			size_t ncap = a->cap ? a->cap * 2 : 16;
			uint64_t *ns = realloc(a->starts, ncap * sizeof(*ns));

			if (ns == NULL)
				goto oom;
			a->starts = ns;
			a->cap = ncap;
		}
		if (!a->spool_open) {
			sora_lmtp_spool_init(&a->spool, spool_dir());
			a->spool_open = true;
		}
		a->starts[a->count++] = a->spool.size;
		a->total += lit->size;
		a->in_literal = true;
	}
	if (lit->sync)
		sora_conn_printf(s->c, "+ OK\r\n");
	return true;
oom:
	sora_imap_parser_refuse_literal(p);
	imap_append_abort(s);
	sora_conn_printf(s->c, "%.*s NO [UNAVAILABLE] Out of memory.\r\n", tl, partial->tag.p);
	return true;
}

bool imap_append_data(struct imap_session *s, struct sora_str chunk)
{
	struct imap_append *a = s->append;

	if (a == NULL || a->count == 0)
		return true;
	/* A failed write is reported when the command completes. */
	sora_lmtp_spool_write(&a->spool, chunk.p, chunk.len);
	return true;
}

/* ---- the command ---- */

struct append_msg {
	unsigned int flags;
	char *keywords;
	int64_t internal_date;
	bool streamed;                       /* in the command's spool */
	uint64_t start, size;                /* where in the spool */
	struct sora_str inline_bytes;        /* in-line literal (copied) */
	char *copy;
	struct sora_store_message prepared;
	bool prepared_ok;
	bool binary;                         /* sent as literal8 (~{n}) */
	struct sora_lmtp_spool converted;    /* binary parts re-encoded */
	bool has_converted;
};

struct append_cmd {
	struct imap_cmd base;
	char mailbox[SORA_MAILBOX_NAME_MAX + 1];
	struct append_msg *msgs;
	size_t count;
	struct imap_append *state;           /* owns the spools */
};

static void append_free(struct imap_cmd *cmd)
{
	struct append_cmd *ac = (struct append_cmd *)cmd;

	for (size_t i = 0; i < ac->count; i++) {
		if (ac->msgs[i].prepared_ok)
			sora_store_message_free(&ac->msgs[i].prepared);
		if (ac->msgs[i].has_converted)
			sora_lmtp_spool_reset(&ac->msgs[i].converted);
		free(ac->msgs[i].keywords);
		free(ac->msgs[i].copy);
	}
	free(ac->msgs);
	append_state_free(ac->state);
	free(ac);
}

/* RFC 3501 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz" (day may be " d"). */
static int date_time_parse(struct sora_str s, int64_t *t_r)
{
	static const char *const months[] = { "jan", "feb", "mar", "apr", "may", "jun",
					      "jul", "aug", "sep", "oct", "nov", "dec" };
	char buf[40];
	int day, year, hh, mm, ss, zone, mon = -1;
	char mname[4], sign;
	struct tm tm;

	if (s.len >= sizeof(buf) || s.len < 25)
		return -1;
	memcpy(buf, s.p, s.len);
	buf[s.len] = '\0';
	if (sscanf(buf, "%2d-%3s-%4d %2d:%2d:%2d %c%4d", &day, mname, &year, &hh, &mm, &ss, &sign,
		   &zone) != 8)
		return -1;
	for (int i = 0; i < 12; i++)
		if (strcasecmp(mname, months[i]) == 0)
			mon = i;
	if (mon < 0 || day < 1 || day > 31 || year < 1900 || hh > 23 || mm > 59 || ss > 60 ||
	    (sign != '+' && sign != '-') || zone % 100 > 59 || zone > 2359)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_mday = day;
	tm.tm_mon = mon;
	tm.tm_year = year - 1900;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	*t_r = (int64_t)timegm(&tm) - (sign == '-' ? -1 : 1) * ((zone / 100) * 3600 + (zone % 100) * 60);
	return 0;
}

/* ---- literal8: binary parts become base64 ----
 *
 * A message APPENDed as a literal8 may carry parts with
 * Content-Transfer-Encoding: binary, NUL bytes and all, which a plain
 * literal (BODY[], RFC822) can never return. Like Dovecot, such parts are
 * stored re-encoded as base64 (RFC 3516 §4.4 lets the server convert);
 * BINARY[] decodes them back to the exact bytes the client sent. */

#define HEADER_REWRITE_MAX (1024 * 1024)

static bool part_is_binary(const struct sora_mime_part *p)
{
	return p->children == NULL && p->encoding.p != NULL &&
	       sora_str_ieq_c(p->encoding, "binary");
}

static bool any_binary(const struct sora_mime_part *p)
{
	for (; p != NULL; p = p->next)
		if (part_is_binary(p) || any_binary(p->children))
			return true;
	return false;
}

static int copy_range(const struct sora_store_body *in, uint64_t from, uint64_t to,
		      struct sora_lmtp_spool *out)
{
	char chunk[65536];

	while (from < to) {
		size_t n = to - from > sizeof(chunk) ? sizeof(chunk) : (size_t)(to - from);
		ssize_t got = sora_store_body_read(in, from, chunk, n);

		if (got <= 0 || sora_lmtp_spool_write(out, chunk, (size_t)got) < 0)
			return -1;
		from += (uint64_t)got;
	}
	return 0;
}

/* The part's header with its Content-Transfer-Encoding field replaced. */
static int rewrite_header(const struct sora_store_body *in, const struct sora_mime_part *p,
			  struct sora_lmtp_spool *out)
{
	char *hdr;
	size_t len = (size_t)p->header_size, i = 0;
	bool skipping = false;
	int ret = -1;

	if (p->header_size > HEADER_REWRITE_MAX || (hdr = malloc(len + 1)) == NULL)
		return -1;
	if (sora_store_body_read(in, p->header_offset, hdr, len) != (ssize_t)len)
		goto out;
	while (i < len) {
		const char *eol = memchr(hdr + i, '\n', len - i);
		size_t n = eol != NULL ? (size_t)(eol - (hdr + i)) + 1 : len - i;
		const char *line = hdr + i;

		if (line[0] == ' ' || line[0] == '\t') {
			if (!skipping && sora_lmtp_spool_write(out, line, n) < 0)
				goto out;
		} else if (n > 26 && strncasecmp(line, "Content-Transfer-Encoding:", 26) == 0) {
			skipping = true;
			if (sora_lmtp_spool_write(out, "Content-Transfer-Encoding: base64\r\n", 35) < 0)
				goto out;
		} else {
			skipping = false;
			if (sora_lmtp_spool_write(out, line, n) < 0)
				goto out;
		}
		i += n;
	}
	ret = 0;
out:
	free(hdr);
	return ret;
}

static int encode_body(const struct sora_store_body *in, uint64_t from, uint64_t to,
		       struct sora_lmtp_spool *out)
{
	/* 57 bytes make one 76-character line (RFC 2045 §6.8). */
	unsigned char chunk[57 * 1024];
	char line[80];

	while (from < to) {
		size_t n = to - from > sizeof(chunk) ? sizeof(chunk) : (size_t)(to - from);
		ssize_t got = sora_store_body_read(in, from, chunk, n);

		if (got <= 0)
			return -1;
		for (size_t k = 0; k < (size_t)got; k += 57) {
			size_t m = (size_t)got - k < 57 ? (size_t)got - k : 57;

			sodium_bin2base64(line, sizeof(line), chunk + k, m, sodium_base64_VARIANT_ORIGINAL);
			if (sora_lmtp_spool_write(out, line, strlen(line)) < 0 ||
			    sora_lmtp_spool_write(out, "\r\n", 2) < 0)
				return -1;
		}
		from += (uint64_t)got;
	}
	return 0;
}

/* Walks the parts in document order, copying everything and re-encoding
 * binary leaf parts. *pos is how far the input has been written. */
static int convert_parts(const struct sora_store_body *in, const struct sora_mime_part *p,
			 uint64_t *pos, struct sora_lmtp_spool *out)
{
	for (; p != NULL; p = p->next) {
		if (part_is_binary(p)) {
			uint64_t body = sora_mime_part_body_offset(p);

			if (copy_range(in, *pos, p->header_offset, out) < 0 ||
			    rewrite_header(in, p, out) < 0 ||
			    encode_body(in, body, body + p->body_size, out) < 0)
				return -1;
			*pos = body + p->body_size;
		} else if (convert_parts(in, p->children, pos, out) < 0) {
			return -1;
		}
	}
	return 0;
}

static int convert_binary(struct append_msg *m, const struct sora_store_body *in)
{
	uint64_t pos = 0;

	sora_lmtp_spool_init(&m->converted, spool_dir());
	m->has_converted = true;
	if (convert_parts(in, m->prepared.mime->root, &pos, &m->converted) < 0 ||
	    copy_range(in, pos, in->size, &m->converted) < 0 ||
	    sora_lmtp_spool_finish(&m->converted) < 0)
		return -1;
	return 0;
}

static enum sora_job_status append_run(struct imap_cmd *cmd, struct sora_job *job,
				       struct sora_db_conn *db)
{
	struct append_cmd *ac = (struct append_cmd *)cmd;
	struct imap_session *s = cmd->s;
	struct sora_store_append_item *items;
	struct sora_store_append_result res;
	struct sora_buf uids = { 0 };

	items = calloc(ac->count, sizeof(*items));
	if (items == NULL) {
		sora_job_printf(job, "%s NO [UNAVAILABLE] Out of memory.\r\n", cmd->tag);
		return SORA_JOB_DONE;
	}
	for (size_t i = 0; i < ac->count; i++) {
		struct append_msg *m = &ac->msgs[i];
		struct sora_store_body body;

		memset(&body, 0, sizeof(body));
		if (m->streamed) {
			struct sora_store_body all;

			if (sora_lmtp_spool_finish(&ac->state->spool) < 0) {
				sora_job_printf(job, "%s NO [UNAVAILABLE] Could not spool the message.\r\n",
						cmd->tag);
				goto out;
			}
			/* This message's part of the shared spool. */
			sora_lmtp_spool_body(&ac->state->spool, &all);
			body.fd = all.fd;
			body.mem = all.mem != NULL ? all.mem + m->start : NULL;
			body.base = all.mem != NULL ? 0 : m->start;
			body.size = m->size;
		} else {
			body.mem = m->inline_bytes.p;
			body.fd = -1;
			body.size = m->inline_bytes.len;
		}
		if (body.size == 0) {
			sora_job_printf(job, "%s NO Cannot append an empty message.\r\n", cmd->tag);
			goto out;
		}
		if (sora_store_message_prepare(&m->prepared, &body, sora_str_make("", 0), &cmd->err) < 0) {
			imap_job_error(job, cmd, "APPEND", &cmd->err);
			goto out;
		}
		m->prepared_ok = true;
		if (m->binary && any_binary(m->prepared.mime->root)) {
			struct sora_store_body conv;

			if (convert_binary(m, &body) < 0) {
				sora_job_printf(job, "%s NO [UNAVAILABLE] Could not convert the binary "
						"parts of the message.\r\n", cmd->tag);
				goto out;
			}
			sora_store_message_free(&m->prepared);
			m->prepared_ok = false;
			sora_lmtp_spool_body(&m->converted, &conv);
			if (sora_store_message_prepare(&m->prepared, &conv,
						       sora_str_make("", 0), &cmd->err) < 0) {
				imap_job_error(job, cmd, "APPEND", &cmd->err);
				goto out;
			}
			m->prepared_ok = true;
		}
		items[i].msg = &m->prepared;
		items[i].flags = m->flags;
		items[i].keywords = m->keywords != NULL ? m->keywords : "";
		items[i].internal_date = m->internal_date;
	}
	memset(&res, 0, sizeof(res));
	if (sora_store_append(db, sora_backend()->blobs, sora_backend_instance_id(), s->account_id,
			      ac->mailbox, items, ac->count, &res, &cmd->err) < 0) {
		if (cmd->err.cls == SORA_ERR_NOT_FOUND)
			sora_job_printf(job, "%s NO [TRYCREATE] Mailbox does not exist.\r\n", cmd->tag);
		else
			imap_job_error(job, cmd, "APPEND", &cmd->err);
		goto out;
	}
	sora_backend_kick_uploader();
	sora_imap_mailbox_changed(res.mailbox_id);
	if (s->sel != NULL && res.mailbox_id == s->sel->mailbox_id) {
		__atomic_store_n(&s->dirty, 1, __ATOMIC_RELEASE);
		if (imap_sync(cmd, job, db, true) == -2)
			s->state = IMAP_STATE_LOGOUT;
	}
	imap_uidset_append(&uids, res.uids, res.count);
	sora_job_printf(job, "%s OK [APPENDUID %u %.*s] Append completed.\r\n", cmd->tag,
			res.uid_validity, (int)uids.len, uids.data != NULL ? uids.data : "");
	sora_buf_free(&uids);
	sora_store_append_result_free(&res);
out:
	free(items);
	return SORA_JOB_DONE;
}

void imap_cmd_append(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct imap_append *state = s->append;
	struct append_cmd *ac;
	const char *error = "Invalid APPEND arguments.";
	size_t a = 1, streamed = 0;

	s->append = NULL;
	if (state != NULL && state->refused) {
		append_state_free(state);
		return;
	}
	ac = calloc(1, sizeof(*ac));
	if (ac == NULL) {
		append_state_free(state);
		imap_reply(s, cmd->tag, "NO [UNAVAILABLE] Out of memory.");
		return;
	}
	imap_cmd_init(&ac->base, s, cmd, "APPEND", append_run);
	ac->base.free = append_free;
	ac->state = state;
	if (cmd->args_count < 2)
		goto bad;
	if (imap_mailbox_arg(s, &cmd->args[0], ac->mailbox, sizeof(ac->mailbox), &error) < 0) {
		append_free(&ac->base);
		imap_reply(s, cmd->tag, "NO [TRYCREATE] %s", error);
		return;
	}
	ac->msgs = calloc(cmd->args_count, sizeof(*ac->msgs));
	if (ac->msgs == NULL)
		goto bad;
	while (a < cmd->args_count) {
		struct append_msg *m = &ac->msgs[ac->count];
		struct sora_buf kw = { 0 };
		const struct sora_imap_arg *arg = &cmd->args[a];

		if (arg->type == SORA_IMAP_ARG_LIST) {
			if (imap_flags_parse(arg, false, &m->flags, &kw, &error) < 0) {
				sora_buf_free(&kw);
				goto bad;
			}
			sora_buf_append(&kw, "", 1);
			m->keywords = kw.data;
			arg = a + 1 < cmd->args_count ? &cmd->args[++a] : NULL;
		}
		if (arg != NULL && arg->type == SORA_IMAP_ARG_STRING) {
			if (date_time_parse(arg->str, &m->internal_date) < 0) {
				error = "Invalid date-time.";
				goto bad;
			}
			arg = a + 1 < cmd->args_count ? &cmd->args[++a] : NULL;
		}
		if (arg == NULL || arg->type != SORA_IMAP_ARG_LITERAL) {
			error = "APPEND needs a message literal.";
			goto bad;
		}
		m->binary = arg->literal_binary;
		if (arg->literal_streamed) {
			if (state == NULL || streamed >= state->count)
				goto bad;
			if (state->spool.error != 0) {
				append_free(&ac->base);
				imap_reply(s, cmd->tag, "NO [UNAVAILABLE] Could not spool the message.");
				return;
			}
			m->streamed = true;
			m->start = state->starts[streamed];
			m->size = arg->literal_size;
			streamed++;
		} else {
			m->copy = malloc(arg->str.len + 1);
			if (m->copy == NULL)
				goto bad;
			memcpy(m->copy, arg->str.p, arg->str.len);
			m->inline_bytes = sora_str_make(m->copy, arg->str.len);
		}
		ac->count++;
		a++;
	}
	if (ac->count == 0)
		goto bad;
	imap_cmd_submit(s, &ac->base);
	return;
bad:
	append_free(&ac->base);
	imap_bad(s, cmd->tag, error);
}
