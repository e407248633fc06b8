/* The logged-in IMAP session: handler, command table, jobs, untagged
 * updates and IDLE. See imap.h and imap-private.h. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/imap/imap-private.h"
#include "backend/imap/imap.h"
#include "backend/store/deliver.h"
#include "backend/store/mailbox.h"
#include "common/config/config.h"
#include "common/proto/cmdline.h"
#include "common/proto/imap-search.h"
#include "common/proto/imap-types.h"

#define IMAP_DB_ACQUIRE_MS 10000
/* RFC 2177 asks for a reply at least every 29 minutes; NATs drop idle TCP
 * flows much sooner, so IDLE says "still here" every two minutes. */
#define IMAP_IDLE_KEEPALIVE_MS (2 * 60 * 1000)
/* An IDLE outlives command_timeout (clients re-issue it every 29
 * minutes); after this long without DONE the session ends. */
#define IMAP_IDLE_TIMEOUT_MS (31 * 60 * 1000)
/* APPENDLIMIT when the server sets none. */

static struct imap_session *sess(struct sora_conn *c)
{
	return sora_conn_data(c);
}

/* ---- replies ------------------------------------------------------------ */

void imap_reply(struct imap_session *s, struct sora_str tag, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	sora_conn_printf(s->c, "%.*s %s\r\n", (int)tag.len, tag.p, line);
}

bool imap_bad(struct imap_session *s, struct sora_str tag, const char *msg)
{
	return sora_imap_front_bad(s->c, tag, msg);
}

int imap_job_buf(struct sora_job *job, struct sora_buf *b)
{
	int ret = 0;

	if (b->len > 0)
		ret = sora_job_write(job, b->data, b->len);
	sora_buf_reset(b);
	return ret;
}

void imap_job_error(struct sora_job *job, const struct imap_cmd *cmd, const char *what,
		    const struct sora_error *err)
{
	struct imap_session *s = cmd->s;
	const char *code = "";

	switch (err->cls) {
	case SORA_ERR_NOT_FOUND:
		code = "[NONEXISTENT] ";
		break;
	case SORA_ERR_CONFLICT:
		code = "[ALREADYEXISTS] ";
		break;
	case SORA_ERR_INVALID:
		code = "[CANNOT] ";
		break;
	case SORA_ERR_LIMIT:
		code = "[LIMIT] ";
		break;
	case SORA_ERR_TEMPORARY:
	case SORA_ERR_ABORTED:
		code = "[UNAVAILABLE] ";
		break;
	default:
		code = "[SERVERBUG] ";
		break;
	}
	if (err->cls == SORA_ERR_TEMPORARY || err->cls == SORA_ERR_PERMANENT ||
	    err->cls == SORA_ERR_CORRUPT || err->cls == SORA_ERR_ABORTED) {
		/* Internal details go to the log, not to the client. */
		sora_warn(sora_conn_log_ctx(s->c), "%s failed: %s", cmd->name, err->msg);
		sora_job_printf(job, "%s NO %s%s failed: %s\r\n", cmd->tag, code, what,
				err->cls == SORA_ERR_TEMPORARY ? "temporary failure, try again later."
							       : "internal error (logged).");
		return;
	}
	sora_job_printf(job, "%s NO %s%s\r\n", cmd->tag, code, err->msg);
}

/* ---- capabilities -------------------------------------------------------- */

void imap_capabilities(struct imap_session *s, struct sora_buf *out)
{
	const struct sora_server_config *srv = sora_conn_server(s->c);
	uint64_t limit = srv->append_limit > 0 ? srv->append_limit : SORA_DEFAULT_APPEND_LIMIT;

	sora_buf_printf(out,
			"IMAP4rev1 IMAP4rev2 SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE "
			"CHILDREN SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS STATUS=SIZE "
			"ESEARCH SEARCHRES CONTEXT=SEARCH WITHIN SORT SORT=DISPLAY ESORT BINARY MULTIAPPEND "
			"APPENDLIMIT=%llu "
			"CONDSTORE QRESYNC UTF8=ACCEPT",
			(unsigned long long)limit);
}

static void front_caps(struct sora_conn *c, struct sora_buf *out)
{
	imap_capabilities(sess(c), out);
}

/* ---- flags and names ----------------------------------------------------- */

static const struct {
	unsigned int bit;
	const char *name;
} system_flags[] = {
	{ SORA_IMAP_FLAG_ANSWERED, "\\Answered" },
	{ SORA_IMAP_FLAG_FLAGGED, "\\Flagged" },
	{ SORA_IMAP_FLAG_DELETED, "\\Deleted" },
	{ SORA_IMAP_FLAG_SEEN, "\\Seen" },
	{ SORA_IMAP_FLAG_DRAFT, "\\Draft" },
};

void imap_flags_format(struct sora_buf *out, unsigned int flags, const char *keywords, bool recent)
{
	bool first = true;

	sora_buf_append(out, "(", 1);
	for (size_t i = 0; i < sizeof(system_flags) / sizeof(system_flags[0]); i++) {
		if ((flags & system_flags[i].bit) == 0)
			continue;
		if (!first)
			sora_buf_append(out, " ", 1);
		sora_buf_append_str(out, system_flags[i].name);
		first = false;
	}
	if (recent) {
		if (!first)
			sora_buf_append(out, " ", 1);
		sora_buf_append_str(out, "\\Recent");
		first = false;
	}
	if (keywords != NULL && keywords[0] != '\0') {
		if (!first)
			sora_buf_append(out, " ", 1);
		sora_buf_append_str(out, keywords);
	}
	sora_buf_append(out, ")", 1);
}

static bool keyword_char(unsigned char ch)
{
	/* atom-char minus resp-specials ']' (RFC 9051 flag-keyword = atom) */
	return ch > 0x20 && ch < 0x7f && ch != '(' && ch != ')' && ch != '{' && ch != '%' &&
	       ch != '*' && ch != '"' && ch != '\\' && ch != ']';
}

static int flag_one(struct sora_str f, unsigned int *flags, struct sora_buf *kw, const char **error_r)
{
	if (f.len > 0 && f.p[0] == '\\') {
		for (size_t i = 0; i < sizeof(system_flags) / sizeof(system_flags[0]); i++) {
			if (sora_str_ieq_c(f, system_flags[i].name)) {
				*flags |= system_flags[i].bit;
				return 0;
			}
		}
		*error_r = sora_str_ieq_c(f, "\\Recent") ? "The \\Recent flag cannot be set."
							 : "Unknown system flag.";
		return -1;
	}
	if (f.len == 0 || f.len > 128) {
		*error_r = "Invalid keyword.";
		return -1;
	}
	for (size_t i = 0; i < f.len; i++) {
		if (!keyword_char((unsigned char)f.p[i])) {
			*error_r = "Invalid characters in keyword.";
			return -1;
		}
	}
	if (kw->len > 0)
		sora_buf_append(kw, " ", 1);
	sora_buf_append(kw, f.p, f.len);
	return 0;
}

int imap_flags_parse(const struct sora_imap_arg *arg, bool allow_single, unsigned int *flags_r,
		     struct sora_buf *kw, const char **error_r)
{
	*flags_r = 0;
	/* NIL is the keyword "NIL" here (an atom that happens to spell NIL). */
	if ((arg->type == SORA_IMAP_ARG_ATOM || arg->type == SORA_IMAP_ARG_NIL) && allow_single)
		return flag_one(arg->str, flags_r, kw, error_r);
	if (arg->type != SORA_IMAP_ARG_LIST) {
		*error_r = "Flags must be a parenthesised list.";
		return -1;
	}
	for (size_t i = 0; i < arg->list_count; i++) {
		if (arg->list[i].type != SORA_IMAP_ARG_ATOM && arg->list[i].type != SORA_IMAP_ARG_NIL) {
			*error_r = "Flags are atoms.";
			return -1;
		}
		if (flag_one(arg->list[i].str, flags_r, kw, error_r) < 0)
			return -1;
	}
	return 0;
}

int imap_mailbox_arg(struct imap_session *s, const struct sora_imap_arg *arg, char *out,
		     size_t size, const char **error_r)
{
	struct sora_str name;
	struct sora_buf utf8 = { 0 };
	struct sora_error err;
	int ret = -1;

	if (!sora_imap_arg_astring(arg, &name)) {
		*error_r = "Mailbox name expected.";
		return -1;
	}
	if (memchr(name.p, '\0', name.len) != NULL) {
		*error_r = "Mailbox names cannot contain NUL.";
		return -1;
	}
	if (s->utf8) {
		if (!sora_imap_utf8_valid(name) || sora_buf_append(&utf8, name.p, name.len) < 0) {
			*error_r = "Mailbox name is not valid UTF-8.";
			goto out;
		}
	} else if (sora_imap_mutf7_to_utf8(name, &utf8, error_r) < 0) {
		goto out;
	}
	if (sora_buf_append(&utf8, "", 1) < 0) {
		*error_r = "Out of memory.";
		goto out;
	}
	if (sora_mailbox_name_normalize(utf8.data, out, size, &err) < 0) {
		/* A trailing delimiter is dropped by CREATE itself. */
		static char msg[256];
		*error_r = "Invalid mailbox name.";
		(void)msg;
		goto out;
	}
	ret = 0;
out:
	sora_buf_free(&utf8);
	return ret;
}

static void quote_append(struct sora_buf *out, const char *s, size_t n)
{
	sora_buf_append(out, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			sora_buf_append(out, "\\", 1);
		sora_buf_append(out, &s[i], 1);
	}
	sora_buf_append(out, "\"", 1);
}

void imap_mailbox_write(struct imap_session *s, struct sora_buf *out, const char *name)
{
	struct sora_buf m = { 0 };
	const char *error;
	bool ascii = true;

	for (const char *p = name; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80 || *p == '&')
			ascii = false;
	if (s->utf8 || ascii) {
		quote_append(out, name, strlen(name));
		return;
	}
	if (sora_imap_utf8_to_mutf7(sora_str_c(name), &m, &error) < 0)
		quote_append(out, name, strlen(name));
	else
		quote_append(out, m.data, m.len);
	sora_buf_free(&m);
}

/* ---- sequence sets -------------------------------------------------------- */

uint32_t imap_seq_of(const struct imap_selected *sel, uint32_t uid)
{
	long i = sora_imap_uids_find(sel->uids, sel->count, uid);

	return i >= 0 ? (uint32_t)i + 1 : 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static size_t sort_unique(uint32_t *v, size_t n)
{
	size_t out = 0;

	qsort(v, n, sizeof(*v), cmp_u32);
	for (size_t i = 0; i < n; i++)
		if (out == 0 || v[out - 1] != v[i])
			v[out++] = v[i];
	return out;
}


int imap_seqset_uids(struct imap_selected *sel, const struct sora_imap_arg *arg, bool is_uid,
		     uint32_t **uids_r, size_t *count_r, const char **error_r)
{
	struct sora_imap_seqset set;
	uint32_t *out = NULL;
	size_t n = 0, cap = 0;

	*uids_r = NULL;
	*count_r = 0;
	if (arg->type != SORA_IMAP_ARG_ATOM) {
		*error_r = "Invalid sequence set.";
		return -1;
	}
	if (sora_imap_seqset_parse(arg->str, true, 100000, &set, error_r) < 0)
		return -1;
	if (set.last_result) {
		sora_imap_seqset_free(&set);
		if (sel->saved_count == 0)
			return 0;
		out = malloc(sel->saved_count * sizeof(*out));
		if (out == NULL) {
			*error_r = "Out of memory.";
			return -1;
		}
		/* Saved UIDs that were expunged since are gone from the map. */
		for (size_t i = 0; i < sel->saved_count; i++)
			if (imap_seq_of(sel, sel->saved[i]) != 0)
				out[n++] = sel->saved[i];
		*uids_r = out;
		*count_r = n;
		return 0;
	}
	for (size_t r = 0; r < set.count; r++) {
		uint32_t lo = set.ranges[r].lo, hi = set.ranges[r].hi;
		size_t from, to;

		if (is_uid) {
			sora_imap_range_resolve(set.ranges[r],
						sel->count > 0 ? sel->uids[sel->count - 1] : 0, &lo, &hi);
			if (sel->count == 0 || hi == 0)
				continue;
			from = sora_imap_uids_lower_bound(sel->uids, sel->count, lo);
			to = sora_imap_uids_lower_bound(sel->uids, sel->count, hi);
			if (to < sel->count && sel->uids[to] == hi)
				to++;
		} else {
			sora_imap_range_resolve(set.ranges[r], (uint32_t)sel->count, &lo, &hi);
			if (lo == 0 || hi > sel->count) {
				sora_imap_seqset_free(&set);
				free(out);
				*error_r = sel->count == 0 ? "No messages in the mailbox."
							   : "Invalid message sequence number.";
				return -1;
			}
			from = lo - 1;
			to = hi;
		}
		if (to <= from)
			continue;
		if (n + (to - from) > cap) {
			size_t ncap = (n + (to - from)) * 2;
			uint32_t *p = realloc(out, ncap * sizeof(*out));

			if (p == NULL) {
				sora_imap_seqset_free(&set);
				free(out);
				*error_r = "Out of memory.";
				return -1;
			}
			out = p;
			cap = ncap;
		}
		memcpy(out + n, sel->uids + from, (to - from) * sizeof(*out));
		n += to - from;
	}
	sora_imap_seqset_free(&set);
	if (n > 1)
		n = sort_unique(out, n);
	*uids_r = out;
	*count_r = n;
	return 0;
}

/* ---- untagged updates ----------------------------------------------------- */

static void sel_remove(struct imap_selected *sel, uint32_t seq)
{
	memmove(sel->uids + seq - 1, sel->uids + seq, (sel->count - seq) * sizeof(*sel->uids));
	sel->count--;
}

static int sel_append(struct imap_selected *sel, const uint32_t *uids, size_t n)
{
	if (sel->count + n > sel->cap) {
		size_t ncap = (sel->count + n) * 3 / 2 + 16;
		uint32_t *p = realloc(sel->uids, ncap * sizeof(*p));

		if (p == NULL)
			return -1;
		sel->uids = p;
		sel->cap = ncap;
	}
	for (size_t i = 0; i < n; i++)
		if (sel->count == 0 || uids[i] > sel->uids[sel->count - 1])
			sel->uids[sel->count++] = uids[i];
	return 0;
}

static uint32_t recent_count(const struct imap_selected *sel)
{
	if (sel->first_recent == 0)
		return 0;
	return (uint32_t)(sel->count - sora_imap_uids_lower_bound(sel->uids, sel->count, sel->first_recent));
}

/* Appends "1:3,7" for a sorted UID list. */
void imap_uidset_append(struct sora_buf *out, const uint32_t *v, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t j = i;

		while (j + 1 < n && v[j + 1] == v[j] + 1)
			j++;
		if (i > 0)
			sora_buf_append(out, ",", 1);
		if (j > i)
			sora_buf_printf(out, "%u:%u", v[i], v[j]);
		else
			sora_buf_printf(out, "%u", v[i]);
		i = j + 1;
	}
}

void imap_own_modseq(struct imap_selected *sel, uint64_t modseq)
{
	if (modseq == 0)
		return;
	if (modseq == sel->known_modseq + 1 && sel->own_count == 0) {
		/* Nothing else happened in between: simply move on. */
		sel->known_modseq = modseq;
		return;
	}
	if (sel->own_count < sizeof(sel->own) / sizeof(sel->own[0]))
		sel->own[sel->own_count++] = modseq;
}

static bool own_change(const struct imap_selected *sel, uint64_t modseq)
{
	for (size_t i = 0; i < sel->own_count; i++)
		if (sel->own[i] == modseq)
			return true;
	return false;
}

int imap_sync(struct imap_cmd *cmd, struct sora_job *job, struct sora_db_conn *db,
	      bool allow_expunge)
{
	struct imap_session *s = cmd->s;
	struct imap_selected *sel = s->sel;
	struct sora_msgs_changes ch;
	struct sora_buf out = { 0 };
	bool keep_modseq = false;
	int ret = 0;

	if (sel == NULL)
		return 0;
	if (!__atomic_exchange_n(&s->dirty, 0, __ATOMIC_ACQ_REL)) {
		/* Nothing new from others, but this session's own STORE or
		 * FETCH may have moved messages in or out of a search. */
		if (sel->ctx_touched_count > 0 && imap_ctx_evaluate(cmd, db, &out, NULL, 0) < 0)
			ret = -1;
		else
			ret = imap_job_buf(job, &out);
		sora_buf_free(&out);
		return ret;
	}
	memset(&ch, 0, sizeof(ch));
	if (sora_msgs_changes(db, sel->mailbox_id, sel->known_modseq, sel->known_uid_next,
			      !sel->readonly, &ch, &cmd->err) < 0) {
		__atomic_store_n(&s->dirty, 1, __ATOMIC_RELEASE);
		if (cmd->err.cls == SORA_ERR_CONFLICT || cmd->err.cls == SORA_ERR_NOT_FOUND) {
			sora_job_printf(job, "* BYE [UNAVAILABLE] The selected mailbox was deleted.\r\n");
			return -2;
		}
		return -1;
	}
	if (ch.uid_validity != sel->uid_validity) {
		sora_msgs_changes_free(&ch);
		sora_job_printf(job, "* BYE [UNAVAILABLE] The selected mailbox was recreated.\r\n");
		return -2;
	}
	if (ch.expunged.count > 0 && !allow_expunge) {
		/* FETCH, STORE and SEARCH may not renumber (RFC 3501 §7.4.1):
		 * new messages and flag changes go out now, the expunges with
		 * the next command that may send them, so the known modseq
		 * stays where it is and the session stays dirty. */
		keep_modseq = true;
	} else if (ch.expunged.count > 0) {
		/* REMOVEFROM before the expunges (RFC 5267 §4.3.4). */
		imap_ctx_expunged(s, &out, ch.expunged.uids, ch.expunged.count);
		if (s->qresync) {
			size_t n = 0;

			/* VANISHED lists only UIDs the client knows of. */
			for (size_t i = 0; i < ch.expunged.count; i++) {
				uint32_t seq = imap_seq_of(sel, ch.expunged.uids[i]);

				if (seq != 0) {
					ch.expunged.uids[n++] = ch.expunged.uids[i];
					sel_remove(sel, seq);
				}
			}
			if (n > 0) {
				sora_buf_append_str(&out, "* VANISHED ");
				imap_uidset_append(&out, ch.expunged.uids, n);
				sora_buf_append_str(&out, "\r\n");
			}
		} else {
			for (size_t i = 0; i < ch.expunged.count; i++) {
				uint32_t seq = imap_seq_of(sel, ch.expunged.uids[i]);

				if (seq == 0)
					continue;
				sel_remove(sel, seq);
				sora_buf_printf(&out, "* %u EXPUNGE\r\n", seq);
				if (out.len > 16384 && imap_job_buf(job, &out) < 0)
					goto out;
			}
		}
	}
	for (size_t i = 0; i < ch.changed_count; i++) {
		const struct sora_msgs_state *st = &ch.changed[i];
		uint32_t seq = imap_seq_of(sel, st->uid);

		if (seq == 0 || own_change(sel, st->modseq))
			continue;
		sora_buf_printf(&out, "* %u FETCH (UID %u FLAGS ", seq, st->uid);
		imap_flags_format(&out, st->flags, st->keywords,
				  imap_recent(s, st->uid));
		if (s->condstore)
			sora_buf_printf(&out, " MODSEQ (%llu)", (unsigned long long)st->modseq);
		sora_buf_append_str(&out, ")\r\n");
		if (out.len > 16384 && imap_job_buf(job, &out) < 0)
			goto out;
	}
	if (ch.first_recent != 0 && (sel->first_recent == 0 || ch.first_recent < sel->first_recent))
		sel->first_recent = ch.first_recent;
	if (ch.added.count > 0) {
		if (sel_append(sel, ch.added.uids, ch.added.count) < 0) {
			ret = -1;
			sora_error_set(&cmd->err, SORA_ERR_TEMPORARY, "out of memory");
			goto out;
		}
		sora_buf_printf(&out, "* %zu EXISTS\r\n", sel->count);
		if (!s->rev2)
			sora_buf_printf(&out, "* %u RECENT\r\n", recent_count(sel));
	}
	if (sel->contexts != NULL) {
		/* ADDTO for new messages after their EXISTS (RFC 5267
		 * §4.3.3); changed flags may move messages either way. */
		size_t nc = ch.changed_count + ch.added.count;
		uint32_t *cand = malloc((nc > 0 ? nc : 1) * sizeof(*cand));

		if (cand == NULL) {
			ret = -1;
			sora_error_set(&cmd->err, SORA_ERR_TEMPORARY, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < ch.changed_count; i++)
			cand[i] = ch.changed[i].uid;
		if (ch.added.count > 0)
			memcpy(cand + ch.changed_count, ch.added.uids, ch.added.count * sizeof(*cand));
		ret = imap_ctx_evaluate(cmd, db, &out, cand, nc);
		free(cand);
		if (ret < 0)
			goto out;
	}
	if (keep_modseq) {
		__atomic_store_n(&s->dirty, 1, __ATOMIC_RELEASE);
	} else {
		if (ch.highest_modseq > sel->known_modseq)
			sel->known_modseq = ch.highest_modseq;
		sel->own_count = 0;
	}
	if (ch.uid_next > sel->known_uid_next)
		sel->known_uid_next = ch.uid_next;
	ret = imap_job_buf(job, &out);
out:
	sora_buf_free(&out);
	sora_msgs_changes_free(&ch);
	return ret;
}

/* ---- jobs ------------------------------------------------------------------ */

bool imap_recent(const struct imap_session *s, uint32_t uid)
{
	return !s->rev2 && s->sel != NULL && s->sel->first_recent != 0 && uid >= s->sel->first_recent;
}

void imap_condstore_used(struct imap_session *s)
{
	if (!s->condstore && s->sel != NULL)
		s->announce_modseq = true;
	s->condstore = true;
}

static enum sora_job_status cmd_work(struct sora_job *job, void *arg)
{
	struct imap_cmd *cmd = arg;
	struct sora_db_conn *db = NULL;
	struct sora_error err;
	enum sora_job_status st;

	if (sora_job_cancelled(job))
		return SORA_JOB_DONE;
	if (sora_db_acquire(sora_backend()->db, cmd->target, IMAP_DB_ACQUIRE_MS, &db, &err) != 0) {
		sora_warn(sora_conn_log_ctx(cmd->s->c), "%s: no database connection: %s", cmd->name,
			  err.msg);
		sora_job_printf(job, "%s NO [UNAVAILABLE] Temporary failure, try again later.\r\n",
				cmd->tag);
		return SORA_JOB_DONE;
	}
	if (cmd->s->announce_modseq && cmd->s->sel != NULL) {
		cmd->s->announce_modseq = false;
		sora_job_printf(job, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
				(unsigned long long)cmd->s->sel->known_modseq);
	}
	st = cmd->run(cmd, job, db);
	sora_db_release(&db);
	return st;
}

static void cmd_free(struct imap_cmd *cmd)
{
	if (cmd->free != NULL)
		cmd->free(cmd);
	else
		free(cmd);
}

static void idle_maybe_sync(struct imap_session *s);

static void cmd_done(struct sora_conn *c, void *arg)
{
	struct imap_cmd *cmd = arg;
	struct imap_session *s = cmd->s;

	s->cmd = NULL;
	if (!sora_conn_closing(c) && cmd->finish != NULL)
		cmd->finish(cmd);
	cmd_free(cmd);
	if (sora_conn_closing(c))
		return;
	if (s->state == IMAP_STATE_LOGOUT) {
		sora_conn_close(c, SORA_CLOSE_NORMAL);
		return;
	}
	if (s->idling) {
		s->idle_sync_running = false;
		/* Input waits for DONE again (it may be buffered already). */
		sora_conn_resume(c);
		idle_maybe_sync(s);
		return;
	}
	sora_conn_resume(c);
}

void imap_cmd_init(struct imap_cmd *cmd, struct imap_session *s,
		   const struct sora_imap_command *pc, const char *name, imap_run_cb *run)
{
	size_t tl = pc != NULL ? pc->tag.len : 1;

	cmd->s = s;
	if (tl >= sizeof(cmd->tag))
		tl = sizeof(cmd->tag) - 1;
	memcpy(cmd->tag, pc != NULL ? pc->tag.p : "*", tl);
	cmd->tag[tl] = '\0';
	cmd->name = name;
	cmd->run = run;
	cmd->target = SORA_DB_PRIMARY;
}

void imap_cmd_submit(struct imap_session *s, struct imap_cmd *cmd)
{
	s->cmd = cmd;
	if (sora_job_submit(s->c, cmd_work, cmd_done, cmd) < 0) {
		s->cmd = NULL;
		sora_conn_printf(s->c, "%s NO [UNAVAILABLE] Server busy, try again later.\r\n", cmd->tag);
		cmd_free(cmd);
	}
}

/* ---- simple commands --------------------------------------------------------- */

static void cmd_capability(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct sora_buf caps = { 0 };

	imap_capabilities(s, &caps);
	sora_conn_printf(s->c, "* CAPABILITY %.*s\r\n", (int)caps.len, caps.data);
	sora_buf_free(&caps);
	imap_reply(s, cmd->tag, "OK Capability completed.");
}

static enum sora_job_status sync_run(struct imap_cmd *cmd, struct sora_job *job,
				     struct sora_db_conn *db)
{
	int r = imap_sync(cmd, job, db, true);

	if (r == -2) {
		cmd->s->state = IMAP_STATE_LOGOUT;
		return SORA_JOB_DONE;
	}
	if (r < 0)
		sora_job_printf(job, "%s NO [UNAVAILABLE] %s failed: temporary failure.\r\n", cmd->tag,
				cmd->name);
	else
		sora_job_printf(job, "%s OK %s completed.\r\n", cmd->tag, cmd->name);
	return SORA_JOB_DONE;
}

/* NOOP and CHECK: in the selected state they are when changes are told. */
static void cmd_noop(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct imap_cmd *job;
	bool check = sora_str_ieq_c(cmd->name, "CHECK");

	if (cmd->args_count != 0) {
		imap_bad(s, cmd->tag, "This command takes no arguments.");
		return;
	}
	if (s->sel == NULL || !__atomic_load_n(&s->dirty, __ATOMIC_ACQUIRE)) {
		imap_reply(s, cmd->tag, "OK %s completed.", check ? "CHECK" : "NOOP");
		return;
	}
	job = calloc(1, sizeof(*job));
	if (job == NULL) {
		imap_reply(s, cmd->tag, "NO [UNAVAILABLE] Out of memory.");
		return;
	}
	imap_cmd_init(job, s, cmd, check ? "CHECK" : "NOOP", sync_run);
	imap_cmd_submit(s, job);
}

static void cmd_logout(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	sora_conn_printf(s->c, "* BYE Logging out.\r\n");
	imap_reply(s, cmd->tag, "OK Logout completed.");
	s->state = IMAP_STATE_LOGOUT;
	sora_conn_close(s->c, SORA_CLOSE_NORMAL);
}

static void cmd_id(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	if (cmd->args_count != 1 ||
	    (cmd->args[0].type != SORA_IMAP_ARG_NIL && cmd->args[0].type != SORA_IMAP_ARG_LIST)) {
		imap_bad(s, cmd->tag, "ID takes NIL or a list of field/value pairs.");
		return;
	}
	sora_conn_printf(s->c, "* ID (\"name\" \"Sora\" \"version\" \"%s\")\r\n", SORA_VERSION);
	imap_reply(s, cmd->tag, "OK ID completed.");
}

static void cmd_namespace(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	sora_conn_printf(s->c, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
	imap_reply(s, cmd->tag, "OK Namespace completed.");
}

/* RFC 5161. */
static void cmd_enable(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct sora_buf out = { 0 };

	if (cmd->args_count == 0) {
		imap_bad(s, cmd->tag, "ENABLE takes capability names.");
		return;
	}
	for (size_t i = 0; i < cmd->args_count; i++) {
		struct sora_str cap;

		if (!sora_imap_arg_atom(&cmd->args[i], &cap)) {
			imap_bad(s, cmd->tag, "ENABLE takes capability names.");
			sora_buf_free(&out);
			return;
		}
		if (sora_str_ieq_c(cap, "CONDSTORE") && !s->condstore) {
			imap_condstore_used(s);
			sora_buf_append_str(&out, " CONDSTORE");
		} else if (sora_str_ieq_c(cap, "QRESYNC") && !s->qresync) {
			/* QRESYNC implies CONDSTORE (RFC 7162 §3.2.3). */
			s->qresync = true;
			imap_condstore_used(s);
			sora_buf_append_str(&out, " QRESYNC");
		} else if (sora_str_ieq_c(cap, "UTF8=ACCEPT") && !s->utf8) {
			s->utf8 = true;
			sora_imap_parser_set_params(sora_imap_front_parser(s->c),
						    sora_imap_front_session_params(true));
			sora_buf_append_str(&out, " UTF8=ACCEPT");
		} else if (sora_str_ieq_c(cap, "IMAP4rev2") && !s->rev2) {
			/* RFC 9051: mailbox names are UTF-8 from now on. */
			s->rev2 = true;
			s->utf8 = true;
			sora_imap_parser_set_params(sora_imap_front_parser(s->c),
						    sora_imap_front_session_params(true));
			sora_buf_append_str(&out, " IMAP4rev2");
		}
	}
	sora_conn_printf(s->c, "* ENABLED%.*s\r\n", (int)out.len, out.data != NULL ? out.data : "");
	sora_buf_free(&out);
	imap_reply(s, cmd->tag, "OK Enabled.");
}

static void cmd_already(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	imap_bad(s, cmd->tag, "Already logged in.");
}

/* ---- IDLE (RFC 2177) ------------------------------------------------------------ */

static enum sora_job_status idle_sync_run(struct imap_cmd *cmd, struct sora_job *job,
					  struct sora_db_conn *db)
{
	if (imap_sync(cmd, job, db, true) == -2)
		cmd->s->state = IMAP_STATE_LOGOUT;
	return SORA_JOB_DONE;
}

/* While idling, a change is told at once: a job that only syncs. */
static void idle_maybe_sync(struct imap_session *s)
{
	struct imap_cmd *job;

	if (!s->idling || s->idle_sync_running || s->cmd != NULL ||
	    !__atomic_load_n(&s->dirty, __ATOMIC_ACQUIRE) || sora_conn_closing(s->c))
		return;
	job = calloc(1, sizeof(*job));
	if (job == NULL)
		return;
	imap_cmd_init(job, s, NULL, "IDLE", idle_sync_run);
	s->idle_sync_running = true;
	s->cmd = job;
	if (sora_job_submit(s->c, cmd_work, cmd_done, job) < 0) {
		s->cmd = NULL;
		s->idle_sync_running = false;
		free(job);
		return;
	}
}

static enum sora_job_status idle_start_run(struct imap_cmd *cmd, struct sora_job *job,
					   struct sora_db_conn *db)
{
	if (imap_sync(cmd, job, db, true) == -2) {
		cmd->s->state = IMAP_STATE_LOGOUT;
		return SORA_JOB_DONE;
	}
	sora_job_printf(job, "+ idling\r\n");
	return SORA_JOB_DONE;
}

static void idle_start_finish(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;

	s->idling = true;
	sora_strlcpy(s->idle_tag, cmd->tag, sizeof(s->idle_tag));
	sora_conn_set_idle_timeout(s->c, IMAP_IDLE_TIMEOUT_MS);
	sora_conn_set_throughput_exempt(s->c, true);
	sora_conn_set_keepalive(s->c, IMAP_IDLE_KEEPALIVE_MS);
}

static void cmd_idle(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct imap_cmd *job;

	if (cmd->args_count != 0) {
		imap_bad(s, cmd->tag, "IDLE takes no arguments.");
		return;
	}
	if (cmd->tag.len >= sizeof(s->idle_tag)) {
		imap_bad(s, cmd->tag, "Tag too long.");
		return;
	}
	job = calloc(1, sizeof(*job));
	if (job == NULL) {
		imap_reply(s, cmd->tag, "NO [UNAVAILABLE] Out of memory.");
		return;
	}
	imap_cmd_init(job, s, cmd, "IDLE", idle_start_run);
	job->finish = idle_start_finish;
	if (s->sel == NULL) {
		/* Nothing to watch: no database needed. */
		free(job);
		sora_conn_printf(s->c, "+ idling\r\n");
		s->idling = true;
		sora_strlcpy(s->idle_tag, "", sizeof(s->idle_tag));
		memcpy(s->idle_tag, cmd->tag.p, cmd->tag.len);
		s->idle_tag[cmd->tag.len] = '\0';
		sora_conn_set_idle_timeout(s->c, IMAP_IDLE_TIMEOUT_MS);
		sora_conn_set_throughput_exempt(s->c, true);
		sora_conn_set_keepalive(s->c, IMAP_IDLE_KEEPALIVE_MS);
		return;
	}
	imap_cmd_submit(s, job);
}

static void idle_end(struct imap_session *s)
{
	s->idling = false;
	sora_conn_set_keepalive(s->c, 0);
	sora_conn_set_idle_timeout(s->c, 0);
	sora_conn_set_throughput_exempt(s->c, false);
}

/* Input while idling: only "DONE" ends it (RFC 2177). */
static size_t idle_input(struct imap_session *s, const char *data, size_t len)
{
	size_t consumed;
	long n = sora_line_find(data, len, &consumed);

	if (n < 0) {
		if (len > 64) {
			idle_end(s);
			sora_conn_printf(s->c, "* BYE Expected DONE.\r\n");
			sora_conn_close(s->c, SORA_CLOSE_PROTOCOL);
			return len;
		}
		return 0;
	}
	if (s->idle_sync_running)
		return 0;     /* after the sync job: the input is paused anyway */
	idle_end(s);
	if (n == 4 && strncasecmp(data, "DONE", 4) == 0)
		sora_conn_printf(s->c, "%s OK Idle completed.\r\n", s->idle_tag);
	else
		imap_bad(s, sora_str_c(s->idle_tag), "Expected DONE.");
	return consumed;
}

static void idle_keepalive(struct sora_conn *c)
{
	struct imap_session *s = sess(c);

	if (s != NULL && s->idling && !s->idle_sync_running)
		sora_conn_printf(c, "* OK Still here\r\n");
}

void imap_session_changed(struct imap_session *s)
{
	__atomic_store_n(&s->dirty, 1, __ATOMIC_RELEASE);
	idle_maybe_sync(s);
}

/* ---- dispatch ---------------------------------------------------------------- */

static const struct imap_command_def commands[] = {
	{ "CAPABILITY", IMAP_ST_ANY, cmd_capability, false },
	{ "NOOP", IMAP_ST_ANY, cmd_noop, false },
	{ "CHECK", IMAP_ST_SEL, cmd_noop, false },
	{ "LOGOUT", IMAP_ST_ANY, cmd_logout, false },
	{ "ID", IMAP_ST_ANY, cmd_id, false },
	{ "ENABLE", IMAP_ST_ANY, cmd_enable, false },
	{ "NAMESPACE", IMAP_ST_ANY, cmd_namespace, false },
	{ "IDLE", IMAP_ST_ANY, cmd_idle, false },
	{ "LOGIN", IMAP_ST_ANY, cmd_already, false },
	{ "AUTHENTICATE", IMAP_ST_ANY, cmd_already, false },
	{ "STARTTLS", IMAP_ST_ANY, cmd_already, false },
	{ "LIST", IMAP_ST_ANY, imap_cmd_list, false },
	{ "LSUB", IMAP_ST_ANY, imap_cmd_lsub, false },
	{ "CREATE", IMAP_ST_ANY, imap_cmd_create, false },
	{ "DELETE", IMAP_ST_ANY, imap_cmd_delete, false },
	{ "RENAME", IMAP_ST_ANY, imap_cmd_rename, false },
	{ "SUBSCRIBE", IMAP_ST_ANY, imap_cmd_subscribe, false },
	{ "UNSUBSCRIBE", IMAP_ST_ANY, imap_cmd_unsubscribe, false },
	{ "STATUS", IMAP_ST_ANY, imap_cmd_status, false },
	{ "SELECT", IMAP_ST_ANY, imap_cmd_select, false },
	{ "EXAMINE", IMAP_ST_ANY, imap_cmd_examine, false },
	{ "APPEND", IMAP_ST_ANY, imap_cmd_append, false },
	{ "CLOSE", IMAP_ST_SEL, imap_cmd_close, false },
	{ "UNSELECT", IMAP_ST_SEL, imap_cmd_unselect, false },
	{ "EXPUNGE", IMAP_ST_SEL, imap_cmd_expunge, true },
	{ "FETCH", IMAP_ST_SEL, imap_cmd_fetch, true },
	{ "STORE", IMAP_ST_SEL, imap_cmd_store, true },
	{ "SEARCH", IMAP_ST_SEL, imap_cmd_search, true },
	{ "SORT", IMAP_ST_SEL, imap_cmd_sort, true },
	{ "CANCELUPDATE", IMAP_ST_SEL, imap_cmd_cancelupdate, false },
	{ "COPY", IMAP_ST_SEL, imap_cmd_copy, true },
	{ "MOVE", IMAP_ST_SEL, imap_cmd_move, true },
};

static void dispatch(struct imap_session *s, const struct sora_imap_command *cmd)
{
	struct sora_imap_command sub = *cmd;
	bool uid = false;

	if (sora_str_ieq_c(cmd->name, "UID")) {
		if (cmd->args_count == 0 || cmd->args[0].type != SORA_IMAP_ARG_ATOM) {
			imap_bad(s, cmd->tag, "UID needs a command.");
			return;
		}
		uid = true;
		sub.name = cmd->args[0].str;
		sub.args = cmd->args + 1;
		sub.args_count = cmd->args_count - 1;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct imap_command_def *d = &commands[i];

		if (!sora_str_ieq_c(sub.name, d->name))
			continue;
		if (uid && !d->uid_ok)
			break;
		if ((d->states & (1u << s->state)) == 0) {
			imap_bad(s, cmd->tag, s->state == IMAP_STATE_AUTH ? "No mailbox selected."
									 : "Not valid in this state.");
			return;
		}
		/* A valid command: the invalid-command streak starts over. */
		s->front.pre.errors = 0;
		d->handler(s, &sub, uid);
		return;
	}
	imap_bad(s, cmd->tag, "Unknown command.");
}

static bool ev_command(struct sora_conn *c, const struct sora_imap_command *cmd)
{
	struct imap_session *s = sess(c);

	dispatch(s, cmd);
	return s->cmd == NULL && !s->idling;
}

static bool ev_literal(struct sora_conn *c, const struct sora_imap_command *partial,
		       const struct sora_imap_literal_info *lit)
{
	return imap_append_literal(sess(c), partial, lit);
}

static bool ev_literal_data(struct sora_conn *c, struct sora_str chunk)
{
	return imap_append_data(sess(c), chunk);
}

static void ev_error(struct sora_conn *c)
{
	imap_append_abort(sess(c));
}

static const struct sora_imap_events session_events = {
	.command = ev_command,
	.literal = ev_literal,
	.literal_data = ev_literal_data,
	.error = ev_error,
};

static size_t session_input(struct sora_conn *c, const char *data, size_t len)
{
	struct imap_session *s = sess(c);

	if (!s->front.authenticated)
		return sora_imap_front_input(c, data, len);
	if (s->idling)
		return idle_input(s, data, len);
	return sora_imap_front_feed(c, data, len, &session_events);
}

/* ---- life cycle -------------------------------------------------------------- */

/* After login: INBOX always exists (RFC 3501 §5.1), so an account that
 * never received mail gets its default mailboxes now; then the tagged OK.
 * One indexed query when they exist already. */
static enum sora_job_status login_run(struct imap_cmd *cmd, struct sora_job *job,
				      struct sora_db_conn *db)
{
	struct imap_session *s = cmd->s;
	struct sora_buf caps = { 0 };

	if (sora_store_ensure_default_mailboxes(db, s->account_id, NULL, &cmd->err) < 0) {
		sora_warn(sora_conn_log_ctx(s->c), "cannot create the default mailboxes: %s",
			  cmd->err.msg);
		sora_job_printf(job, "%s NO [UNAVAILABLE] Temporary failure, try again later.\r\n",
				cmd->tag);
		s->state = IMAP_STATE_LOGOUT;
		return SORA_JOB_DONE;
	}
	imap_capabilities(s, &caps);
	sora_job_printf(job, "%s OK [CAPABILITY %.*s] Logged in.\r\n", cmd->tag, (int)caps.len,
			caps.data);
	sora_buf_free(&caps);
	return SORA_JOB_DONE;
}

static void authenticated(struct sora_conn *c, struct sora_str tag, const struct sora_login *login)
{
	struct imap_session *s = sess(c);
	struct imap_cmd *cmd = calloc(1, sizeof(*cmd));
	struct sora_imap_command pc = { .tag = tag };

	s->state = IMAP_STATE_AUTH;
	s->account_id = login->account_id;
	sora_strlcpy(s->user, login->user, sizeof(s->user));
	if (cmd == NULL) {
		sora_conn_printf(c, "%.*s NO [UNAVAILABLE] Out of memory.\r\n", (int)tag.len, tag.p);
		sora_conn_close(c, SORA_CLOSE_ERROR);
		return;
	}
	imap_cmd_init(cmd, s, &pc, "LOGIN", login_run);
	imap_cmd_submit(s, cmd);
}

static struct sora_db_pool *backend_pool(void)
{
	struct sora_backend *be = sora_backend();

	return be != NULL ? be->db : NULL;
}

static const struct sora_imap_front_ops backend_ops = {
	.db = backend_pool,
	.caps_authenticated = front_caps,
	.authenticated = authenticated,
};

static void session_open(struct sora_conn *c)
{
	struct imap_session *s;

	if (!sora_imap_front_open(c, &backend_ops, sizeof(struct imap_session)))
		return;
	s = sess(c);
	s->c = c;
	s->key = sora_conn_key(c);
	sora_session_memory_init(&s->memory, "imap", sora_conn_server(c)->session_memory_limit);
}

void imap_unselect(struct imap_session *s)
{
	struct imap_selected *sel = s->sel;

	if (sel == NULL)
		return;
	imap_notify_unregister(s);
	s->sel = NULL;
	s->state = IMAP_STATE_AUTH;
	__atomic_store_n(&s->dirty, 0, __ATOMIC_RELEASE);
	imap_ctx_free_all(sel);
	free(sel->uids);
	free(sel->saved);
	free(sel->name);
	free(sel);
}

static void session_close(struct sora_conn *c, enum sora_close_reason why)
{
	struct imap_session *s = sess(c);

	if (s == NULL)
		return;
	imap_append_abort(s);
	imap_unselect(s);
	if (s->account_id != 0)
		sora_session_memory_close(&s->memory, sora_conn_log_ctx(c));
	sora_imap_front_close(c);
	sora_preauth_close(c, why);
}

const struct sora_conn_handler sora_imap_handler = {
	.protocol = "imap",
	/* The parser consumes input as it arrives (it keeps the command, and
	 * big literals stream); this only bounds what piles up while a job
	 * runs or output is blocked. */
	.max_pending_input = 256 * 1024,
	.open = session_open,
	.input = session_input,
	.input_overflow = sora_imap_front_overflow,
	.reject = sora_imap_front_reject,
	.farewell = sora_imap_front_farewell,
	.close = session_close,
	.keepalive = idle_keepalive,
};
