/* Commands on the messages of the selected mailbox: STORE (CONDSTORE
 * UNCHANGEDSINCE), EXPUNGE and UID EXPUNGE (UIDPLUS), COPY and MOVE
 * (UIDPLUS COPYUID), SEARCH (ESEARCH, SEARCHRES, WITHIN, CONDSTORE) --
 * all in the database through backend/store/messages.h and search.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/imap/imap-private.h"
#include "backend/store/mailbox.h"
#include "backend/imap/imap-search-rate.h"
#include "backend/store/search.h"
#include "common/proto/imap-search.h"

/* Reports our own expunges (they renumber the map now) and moves the
 * known modseq on when nothing else happened in between. */
static void report_expunged(struct imap_cmd *cmd, struct sora_job *job, const struct sora_msgs_uids *gone,
			    uint64_t modseq)
{
	struct imap_session *s = cmd->s;
	struct imap_selected *sel = s->sel;
	struct sora_buf out = { 0 };
	uint32_t *v = gone->uids;
	size_t n = 0;

	/* REMOVEFROM before the expunges (RFC 5267 §4.3.4). */
	imap_ctx_expunged(s, &out, gone->uids, gone->count);
	for (size_t i = 0; i < gone->count; i++) {
		uint32_t seq = imap_seq_of(sel, gone->uids[i]);

		if (seq == 0)
			continue;
		memmove(sel->uids + seq - 1, sel->uids + seq, (sel->count - seq) * sizeof(*sel->uids));
		sel->count--;
		if (s->qresync)
			v[n++] = gone->uids[i];
		else
			sora_buf_printf(&out, "* %u EXPUNGE\r\n", seq);
		if (out.len > 16384)
			imap_job_buf(job, &out);
	}
	if (s->qresync && n > 0) {
		sora_buf_append_str(&out, "* VANISHED ");
		imap_uidset_append(&out, v, n);
		sora_buf_append_str(&out, "\r\n");
	}
	imap_job_buf(job, &out);
	sora_buf_free(&out);
	imap_own_modseq(sel, modseq);
}

/* Forces a full sync (EXPUNGE, MOVE, COPY, APPEND want the client to see
 * the mailbox as it is now). Returns false when the session must end. */
static bool full_sync(struct imap_cmd *cmd, struct sora_job *job, struct sora_db_conn *db)
{
	__atomic_store_n(&cmd->s->dirty, 1, __ATOMIC_RELEASE);
	if (imap_sync(cmd, job, db, true) == -2) {
		cmd->s->state = IMAP_STATE_LOGOUT;
		return false;
	}
	return true;
}

/* ---- STORE ---- */

struct store_cmd {
	struct imap_cmd base;
	uint32_t *uids;
	size_t count;
	enum sora_msgs_store_op op;
	bool silent;
	unsigned int flags;
	struct sora_buf keywords;
	uint64_t unchangedsince;     /* 0 = none */
	bool has_unchangedsince;
};

static void store_free(struct imap_cmd *cmd)
{
	struct store_cmd *st = (struct store_cmd *)cmd;

	free(st->uids);
	sora_buf_free(&st->keywords);
	free(st);
}

static enum sora_job_status store_run(struct imap_cmd *cmd, struct sora_job *job,
				      struct sora_db_conn *db)
{
	struct store_cmd *st = (struct store_cmd *)cmd;
	struct imap_session *s = cmd->s;
	struct imap_selected *sel = s->sel;
	struct sora_msgs_store_result res;
	struct sora_buf out = { 0 };
	const char *kw;

	memset(&res, 0, sizeof(res));
	if (sora_buf_append(&st->keywords, "", 1) < 0) {
		sora_job_printf(job, "%s NO [UNAVAILABLE] Out of memory.\r\n", cmd->tag);
		return SORA_JOB_DONE;
	}
	kw = st->keywords.len > 1 ? st->keywords.data : "";
	if (st->has_unchangedsince && st->unchangedsince == 0) {
		/* UNCHANGEDSINCE 0 can never hold (every modseq is >= 1): all
		 * the messages fail the condition (RFC 7162 §3.1.3). */
		res.modified.uids = st->uids;
		res.modified.count = st->count;
		st->uids = NULL;
		st->count = 0;
	} else if (sora_msgs_store(db, sel->mailbox_id, st->uids, st->count, st->op, st->flags, kw,
				   st->unchangedsince, &res, &cmd->err) < 0) {
		imap_job_error(job, cmd, "STORE", &cmd->err);
		return SORA_JOB_DONE;
	}
	for (size_t i = 0; i < res.state_count; i++) {
		const struct sora_msgs_state *m = &res.states[i];
		uint32_t seq = imap_seq_of(sel, m->uid);
		bool changed = res.changed != NULL && res.changed[i];

		if (seq == 0)
			continue;
		if (st->silent && !(s->condstore && changed))
			continue;
		sora_buf_printf(&out, "* %u FETCH (", seq);
		if (!st->silent) {
			sora_buf_append_str(&out, "FLAGS ");
			imap_flags_format(&out, m->flags, m->keywords,
					  imap_recent(s, m->uid));
			if (cmd->uid || s->condstore)
				sora_buf_append_str(&out, " ");
		}
		if (cmd->uid || s->condstore)
			sora_buf_printf(&out, "UID %u", m->uid);
		if (s->condstore)
			sora_buf_printf(&out, " MODSEQ (%" PRIu64 ")", m->modseq);
		sora_buf_append_str(&out, ")\r\n");
		if (out.len > 16384 && imap_job_buf(job, &out) < 0)
			break;
	}
	imap_job_buf(job, &out);
	for (size_t i = 0; i < res.state_count; i++) {
		/* A STORE that changed nothing took no modseq. */
		if (res.changed != NULL && res.changed[i]) {
			imap_own_modseq(sel, res.highest_modseq);
			sora_imap_mailbox_changed(sel->mailbox_id);
			break;
		}
	}
	/* The sync below skips this session's own changes: updating
	 * searches look at them there all the same. */
	for (size_t i = 0; i < res.state_count; i++)
		if (res.changed != NULL && res.changed[i])
			imap_ctx_touch(sel, &res.states[i].uid, 1);
	if (imap_sync(cmd, job, db, cmd->uid) == -2) {
		s->state = IMAP_STATE_LOGOUT;
		sora_buf_free(&out);
		sora_msgs_store_result_free(&res);
		return SORA_JOB_DONE;
	}
	if (res.modified.count > 0) {
		sora_buf_append_str(&out, cmd->tag);
		sora_buf_append_str(&out, " OK [MODIFIED ");
		if (cmd->uid) {
			imap_uidset_append(&out, res.modified.uids, res.modified.count);
		} else {
			uint32_t *seqs = malloc(res.modified.count * sizeof(*seqs));
			size_t n = 0;

			if (seqs != NULL) {
				for (size_t i = 0; i < res.modified.count; i++) {
					uint32_t q = imap_seq_of(sel, res.modified.uids[i]);
					if (q != 0)
						seqs[n++] = q;
				}
				imap_uidset_append(&out, seqs, n);
				free(seqs);
			}
		}
		sora_buf_append_str(&out, "] Conditional STORE failed for some messages.\r\n");
		imap_job_buf(job, &out);
	} else {
		sora_job_printf(job, "%s OK %s completed.\r\n", cmd->tag, cmd->uid ? "UID STORE" : "STORE");
	}
	sora_buf_free(&out);
	sora_msgs_store_result_free(&res);
	return SORA_JOB_DONE;
}

void imap_cmd_store(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct store_cmd *st;
	const char *error = "Invalid arguments.";
	size_t a = 1;
	struct sora_str item;

	if (cmd->args_count < 3) {
		imap_bad(s, cmd->tag, "STORE takes a sequence set, an item and flags.");
		return;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		imap_reply(s, cmd->tag, "NO [UNAVAILABLE] Out of memory.");
		return;
	}
	imap_cmd_init(&st->base, s, cmd, "STORE", store_run);
	st->base.uid = uid;
	st->base.free = store_free;
	sora_buf_init(&st->keywords, 64 * 1024);
	if (cmd->args[a].type == SORA_IMAP_ARG_LIST) {
		/* (UNCHANGEDSINCE n) -- RFC 7162 §3.1.3 */
		const struct sora_imap_arg *m = &cmd->args[a];

		if (m->list_count != 2 || m->list[0].type != SORA_IMAP_ARG_ATOM ||
		    !sora_str_ieq_c(m->list[0].str, "UNCHANGEDSINCE") ||
		    m->list[1].type != SORA_IMAP_ARG_ATOM ||
		    sora_str_to_u64(m->list[1].str, INT64_MAX, &st->unchangedsince) < 0) {
			error = "Invalid STORE modifier.";
			goto bad;
		}
		st->has_unchangedsince = true;
		imap_condstore_used(s);
		a++;
	}
	if (a + 2 != cmd->args_count || !sora_imap_arg_atom(&cmd->args[a], &item))
		goto bad;
	if (item.len > 0 && item.p[0] == '+') {
		st->op = SORA_MSGS_STORE_ADD;
		item.p++, item.len--;
	} else if (item.len > 0 && item.p[0] == '-') {
		st->op = SORA_MSGS_STORE_REMOVE;
		item.p++, item.len--;
	} else {
		st->op = SORA_MSGS_STORE_SET;
	}
	if (sora_str_ieq_c(item, "FLAGS.SILENT"))
		st->silent = true;
	else if (!sora_str_ieq_c(item, "FLAGS")) {
		error = "Unknown STORE item.";
		goto bad;
	}
	if (imap_flags_parse(&cmd->args[a + 1], true, &st->flags, &st->keywords, &error) < 0)
		goto bad;
	if (imap_seqset_uids(s->sel, &cmd->args[0], uid, &st->uids, &st->count, &error) < 0)
		goto bad;
	if (s->sel->readonly) {
		store_free(&st->base);
		imap_reply(s, cmd->tag, "NO [READ-ONLY] Mailbox is read-only.");
		return;
	}
	if (st->count == 0) {
		store_free(&st->base);
		imap_reply(s, cmd->tag, "OK %s completed.", uid ? "UID STORE" : "STORE");
		return;
	}
	imap_cmd_submit(s, &st->base);
	return;
bad:
	store_free(&st->base);
	imap_bad(s, cmd->tag, error);
}

/* ---- EXPUNGE / UID EXPUNGE ---- */

struct expunge_cmd {
	struct imap_cmd base;
	uint32_t *uids;     /* UID EXPUNGE */
	size_t count;
};

static void expunge_free(struct imap_cmd *cmd)
{
	struct expunge_cmd *e = (struct expunge_cmd *)cmd;

	free(e->uids);
	free(e);
}

static enum sora_job_status expunge_run(struct imap_cmd *cmd, struct sora_job *job,
					struct sora_db_conn *db)
{
	struct expunge_cmd *e = (struct expunge_cmd *)cmd;
	struct imap_session *s = cmd->s;
	struct sora_msgs_uids gone = { 0 };
	uint64_t modseq = 0;

	if (!full_sync(cmd, job, db))
		return SORA_JOB_DONE;
	if (sora_msgs_expunge(db, s->sel->mailbox_id, cmd->uid ? e->uids : NULL,
			      cmd->uid ? e->count : 0, &gone, &modseq, &cmd->err) < 0) {
		imap_job_error(job, cmd, "EXPUNGE", &cmd->err);
		return SORA_JOB_DONE;
	}
	report_expunged(cmd, job, &gone, modseq);
	if (gone.count > 0)
		sora_imap_mailbox_changed(s->sel->mailbox_id);
	sora_msgs_uids_free(&gone);
	if (s->qresync)
		sora_job_printf(job, "%s OK [HIGHESTMODSEQ %" PRIu64 "] Expunge completed.\r\n", cmd->tag,
				s->sel->known_modseq);
	else
		sora_job_printf(job, "%s OK Expunge completed.\r\n", cmd->tag);
	return SORA_JOB_DONE;
}

void imap_cmd_expunge(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct expunge_cmd *e;
	const char *error = "Invalid arguments.";

	if (cmd->args_count != (uid ? 1u : 0u)) {
		imap_bad(s, cmd->tag, uid ? "UID EXPUNGE takes a UID set." : "EXPUNGE takes no arguments.");
		return;
	}
	if (s->sel->readonly) {
		imap_reply(s, cmd->tag, "NO [READ-ONLY] Mailbox is read-only.");
		return;
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL) {
		imap_reply(s, cmd->tag, "NO [UNAVAILABLE] Out of memory.");
		return;
	}
	imap_cmd_init(&e->base, s, cmd, "EXPUNGE", expunge_run);
	e->base.uid = uid;
	e->base.free = expunge_free;
	if (uid && imap_seqset_uids(s->sel, &cmd->args[0], true, &e->uids, &e->count, &error) < 0) {
		expunge_free(&e->base);
		imap_bad(s, cmd->tag, error);
		return;
	}
	if (uid && e->count == 0) {
		expunge_free(&e->base);
		imap_reply(s, cmd->tag, "OK Expunge completed.");
		return;
	}
	imap_cmd_submit(s, &e->base);
}

/* ---- COPY / MOVE ---- */

struct copy_cmd {
	struct imap_cmd base;
	bool move;
	uint32_t *uids;
	size_t count;
	char dest[SORA_MAILBOX_NAME_MAX + 1];
};

static void copy_free(struct imap_cmd *cmd)
{
	struct copy_cmd *cp = (struct copy_cmd *)cmd;

	free(cp->uids);
	free(cp);
}

static enum sora_job_status copy_run(struct imap_cmd *cmd, struct sora_job *job,
				     struct sora_db_conn *db)
{
	struct copy_cmd *cp = (struct copy_cmd *)cmd;
	struct imap_session *s = cmd->s;
	struct sora_msgs_copy_result res;
	struct sora_buf code = { 0 };
	const char *verb = cp->move ? "Move" : "Copy";

	memset(&res, 0, sizeof(res));
	if (cp->move && !full_sync(cmd, job, db))
		return SORA_JOB_DONE;
	if (sora_msgs_copy(db, s->account_id, s->sel->mailbox_id, cp->uids, cp->count, cp->dest,
			   cp->move, &res, &cmd->err) < 0) {
		if (cmd->err.cls == SORA_ERR_NOT_FOUND)
			sora_job_printf(job, "%s NO [TRYCREATE] Mailbox does not exist.\r\n", cmd->tag);
		else
			imap_job_error(job, cmd, cp->move ? "MOVE" : "COPY", &cmd->err);
		return SORA_JOB_DONE;
	}
	if (res.src_uids.count > 0) {
		sora_imap_mailbox_changed(res.dest_mailbox_id);
		if (cp->move)
			sora_imap_mailbox_changed(s->sel->mailbox_id);
		sora_buf_printf(&code, "[COPYUID %u ", res.dest_uid_validity);
		imap_uidset_append(&code, res.src_uids.uids, res.src_uids.count);
		sora_buf_append_str(&code, " ");
		imap_uidset_append(&code, res.dest_uids.uids, res.dest_uids.count);
		sora_buf_append_str(&code, "] ");
	}
	if (cp->move) {
		/* RFC 6851 §4.3: COPYUID goes in an untagged OK before the
		 * expunges. */
		if (code.len > 0)
			sora_job_printf(job, "* OK %.*sMoved UIDs.\r\n", (int)code.len, code.data);
		report_expunged(cmd, job, &res.src_uids, res.source_modseq);
		/* A move into the selected mailbox itself shows up at once. */
		if (!full_sync(cmd, job, db)) {
			sora_buf_free(&code);
			sora_msgs_copy_result_free(&res);
			return SORA_JOB_DONE;
		}
		sora_job_printf(job, "%s OK Move completed.\r\n", cmd->tag);
	} else {
		if (!full_sync(cmd, job, db)) {
			sora_buf_free(&code);
			sora_msgs_copy_result_free(&res);
			return SORA_JOB_DONE;
		}
		sora_job_printf(job, "%s OK %.*s%s completed.\r\n", cmd->tag, (int)code.len,
				code.data != NULL ? code.data : "", verb);
	}
	sora_buf_free(&code);
	sora_msgs_copy_result_free(&res);
	return SORA_JOB_DONE;
}

static void copy_common(struct imap_session *s, const struct sora_imap_command *cmd, bool uid, bool move)
{
	struct copy_cmd *cp;
	const char *error = "Invalid arguments.";

	if (cmd->args_count != 2) {
		imap_bad(s, cmd->tag, "Takes a sequence set and a mailbox name.");
		return;
	}
	cp = calloc(1, sizeof(*cp));
	if (cp == NULL) {
		imap_reply(s, cmd->tag, "NO [UNAVAILABLE] Out of memory.");
		return;
	}
	imap_cmd_init(&cp->base, s, cmd, move ? "MOVE" : "COPY", copy_run);
	cp->base.uid = uid;
	cp->base.free = copy_free;
	cp->move = move;
	if (imap_seqset_uids(s->sel, &cmd->args[0], uid, &cp->uids, &cp->count, &error) < 0) {
		copy_free(&cp->base);
		imap_bad(s, cmd->tag, error);
		return;
	}
	if (imap_mailbox_arg(s, &cmd->args[1], cp->dest, sizeof(cp->dest), &error) < 0) {
		copy_free(&cp->base);
		imap_reply(s, cmd->tag, "NO [TRYCREATE] %s", error);
		return;
	}
	if (move && s->sel->readonly) {
		copy_free(&cp->base);
		imap_reply(s, cmd->tag, "NO [READ-ONLY] Mailbox is read-only.");
		return;
	}
	if (cp->count == 0) {
		copy_free(&cp->base);
		imap_reply(s, cmd->tag, "OK %s completed.", move ? "Move" : "Copy");
		return;
	}
	imap_cmd_submit(s, &cp->base);
}

void imap_cmd_copy(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	copy_common(s, cmd, uid, false);
}

void imap_cmd_move(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	copy_common(s, cmd, uid, true);
}

/* ---- SEARCH ---- */

/* Memory of a SEARCH (session_memory_limit), reserved before the query:
 * per result row, PostgreSQL's copy of the row (four short text values),
 * the UID and its share of the response line; plus the SQL text and its
 * parameters, which the command's own size bounds. */

struct search_cmd {
	struct imap_cmd base;
	struct sora_imap_search_program prog;
};

static void search_free(struct imap_cmd *cmd)
{
	struct search_cmd *sc = (struct search_cmd *)cmd;

	sora_imap_search_free(&sc->prog);
	free(sc);
}

static void number_list(struct sora_buf *out, const struct imap_selected *sel, const uint32_t *uids,
			size_t n, bool uid, bool as_set)
{
	uint32_t *v = malloc((n + 1) * sizeof(*v));
	size_t k = 0;

	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		uint32_t x = uid ? uids[i] : imap_seq_of(sel, uids[i]);

		if (x != 0 && (uid || imap_seq_of(sel, uids[i]) != 0))
			v[k++] = x;
	}
	if (as_set) {
		imap_uidset_append(out, v, k);
	} else {
		for (size_t i = 0; i < k; i++)
			sora_buf_printf(out, " %u", v[i]);
	}
	free(v);
}

/* RETURN (PARTIAL lo:hi), RFC 5267 §4.4: the results at positions lo..hi
 * (1-based, in mailbox order) of the visible ones, as UIDs in *v_r
 * (owned). Positions past the capped first query are read with a second
 * one from offset lo - 1. *cut_r: the range was wider than the cap and
 * more results follow. */
static int partial_uids(struct imap_cmd *cmd, struct sora_db_conn *db,
			const struct sora_imap_search_program *p, const struct sora_search_view *view,
			const struct sora_search_result *res, size_t visible, uint32_t **v_r,
			size_t *n_r, bool *cut_r)
{
	struct imap_selected *sel = cmd->s->sel;
	uint64_t lo = p->partial_lo, hi = p->partial_hi;
	struct sora_search_result win;
	size_t n = 0;
	int rc;

	*v_r = NULL;
	*n_r = 0;
	*cut_r = false;
	if (!res->truncated || hi <= visible) {
		if (lo > visible)
			return 0;
		n = (size_t)((hi < visible ? hi : visible) - lo + 1);
		*v_r = malloc(n * sizeof(**v_r));
		if (*v_r == NULL) {
			sora_error_set(&cmd->err, SORA_ERR_TEMPORARY, "out of memory");
			return -1;
		}
		memcpy(*v_r, res->uids.uids + lo - 1, n * sizeof(**v_r));
		*n_r = n;
		return 0;
	}
	memset(&win, 0, sizeof(win));
	n = hi - lo + 1 < SORA_SEARCH_MAX_RESULTS ? (size_t)(hi - lo + 1) : SORA_SEARCH_MAX_RESULTS;
	if (sora_session_memory_reserve(&cmd->s->memory, (uint64_t)n * SEARCH_ROW_BYTES, "search") < 0)
		return -3;
	rc = sora_search_run_window(db, sel->mailbox_id, p, view, lo - 1, n, &win, &cmd->err);
	sora_session_memory_release(&cmd->s->memory, (uint64_t)n * SEARCH_ROW_BYTES);
	n = 0;
	if (rc < 0)
		return -1;
	/* New arrivals the session has not been told of come last. */
	for (size_t i = 0; i < win.uids.count; i++)
		if (imap_seq_of(sel, win.uids.uids[i]) != 0)
			win.uids.uids[n++] = win.uids.uids[i];
	*cut_r = win.truncated && hi - lo + 1 > SORA_SEARCH_MAX_RESULTS;
	*v_r = win.uids.uids;
	*n_r = n;
	win.uids.uids = NULL;
	sora_search_result_free(&win);
	return 0;
}

/* The highest modseq of some of the matches (RFC 7162 §3.1.5: with only
 * MIN, MAX or PARTIAL, that of the messages returned). */
static uint64_t modseq_of(struct imap_cmd *cmd, struct sora_db_conn *db, const uint32_t *pick,
			  size_t np, uint64_t fallback)
{
	struct sora_msgs_rows rows = { 0 };
	uint64_t modseq = np > 0 ? fallback : 0;

	if (np > 0 && sora_msgs_fetch(db, cmd->s->sel->mailbox_id, pick, np, SORA_MSGS_WANT_STATE,
				      &rows, &cmd->err) == 0) {
		modseq = 0;
		for (size_t i = 0; i < rows.count; i++)
			if (rows.rows[i].state.modseq > modseq)
				modseq = rows.rows[i].state.modseq;
	}
	sora_msgs_rows_free(&rows);
	return modseq;
}

void imap_search_memory_refused(struct sora_job *job, struct imap_cmd *cmd, const char *what)
{
	sora_info(sora_conn_log_ctx(cmd->s->c), "%s refused: session_memory_limit (%" PRIu64
		  " bytes) reached", what, cmd->s->memory.limit);
	sora_job_printf(job, "%s NO [LIMIT] %s would exceed the session memory limit "
			"(session_memory_limit); narrow the search, e.g. by UID range.\r\n", cmd->tag,
			what);
}

struct sora_search_view imap_search_view(const struct imap_selected *sel)
{
	struct sora_search_view view = {
		.uids = sel->uids,
		.count = sel->count,
		.saved = sel->saved,
		.saved_count = sel->saved_count,
		.first_recent = sel->first_recent,
		.uid_max = sel->count > 0 ? sel->uids[sel->count - 1] : 0,
	};

	return view;
}

static enum sora_job_status search_run(struct imap_cmd *cmd, struct sora_job *job,
				       struct sora_db_conn *db)
{
	struct search_cmd *sc = (struct search_cmd *)cmd;
	struct imap_session *s = cmd->s;
	struct imap_selected *sel = s->sel;
	struct sora_search_view view = imap_search_view(sel);
	const unsigned int result_opts = SORA_SEARCH_RETURN_MIN | SORA_SEARCH_RETURN_MAX |
					 SORA_SEARCH_RETURN_ALL | SORA_SEARCH_RETURN_COUNT |
					 SORA_SEARCH_RETURN_PARTIAL;
	struct sora_search_result res;
	struct sora_buf out = { 0 };
	struct sora_imap_search_program *p = &sc->prog;
	/* Kept apart: an updating search moves the program into its
	 * context below. */
	const bool esearch = p->esearch;
	const unsigned int return_opts = p->return_opts;
	bool update = esearch && (return_opts & SORA_SEARCH_RETURN_UPDATE);
	uint32_t *part = NULL;
	size_t visible = 0, npart = 0;
	bool cut = false;
	unsigned int r = 0;

	size_t rows_max = sel->count < SORA_SEARCH_MAX_RESULTS ? sel->count : SORA_SEARCH_MAX_RESULTS;
	size_t rows_allowed = rows_max;
	uint64_t avail = sora_session_memory_available(&s->memory), reserved;

	memset(&res, 0, sizeof(res));
	if (rows_max == 0)
		rows_max = rows_allowed = 1;
	/* The view bounds the matches (uid_max): at most that many rows, and
	 * at most what the session's memory still allows -- the query's
	 * LIMIT, so more never arrive. */
	if (avail < SEARCH_FIXED_BYTES + (uint64_t)rows_max * SEARCH_ROW_BYTES)
		rows_allowed = avail > SEARCH_FIXED_BYTES + SEARCH_ROW_BYTES ?
				       (size_t)((avail - SEARCH_FIXED_BYTES) / SEARCH_ROW_BYTES) : 0;
	reserved = SEARCH_FIXED_BYTES + (uint64_t)rows_allowed * SEARCH_ROW_BYTES;
	if (rows_allowed == 0 || sora_session_memory_reserve(&s->memory, reserved, "search") < 0) {
		if (rows_allowed == 0)
			sora_session_memory_refused(&s->memory, "search");
		imap_search_memory_refused(job, cmd, "SEARCH");
		return SORA_JOB_DONE;
	}
	/* An empty view: nothing the session knows of can match (new
	 * arrivals are only reported by the next EXISTS). */
	if (sel->count > 0 &&
	    sora_search_run(db, sel->mailbox_id, p, &view, rows_allowed, &res, &cmd->err) < 0) {
		sora_session_memory_release(&s->memory, reserved);
		imap_job_error(job, cmd, "SEARCH", &cmd->err);
		return SORA_JOB_DONE;
	}
	if (rows_allowed < rows_max && res.truncated) {
		/* More matched than the memory left allows: refused, not cut
		 * (the result cap is SORA_SEARCH_MAX_RESULTS, never memory). */
		sora_search_result_free(&res);
		sora_session_memory_release(&s->memory, reserved);
		sora_session_memory_refused(&s->memory, "search");
		imap_search_memory_refused(job, cmd, "SEARCH");
		return SORA_JOB_DONE;
	}
	/* Only messages the session knows of: new arrivals come with the
	 * next EXISTS. */
	for (size_t i = 0; i < res.uids.count; i++)
		if (imap_seq_of(sel, res.uids.uids[i]) != 0)
			res.uids.uids[visible++] = res.uids.uids[i];
	res.uids.count = visible;
	if (p->return_opts & SORA_SEARCH_RETURN_PARTIAL) {
		int pr = partial_uids(cmd, db, p, &view, &res, visible, &part, &npart, &cut);

		if (pr < 0) {
			if (pr == -3)
				imap_search_memory_refused(job, cmd, "SEARCH");
			else
				imap_job_error(job, cmd, "SEARCH", &cmd->err);
			sora_search_result_free(&res);
			sora_session_memory_release(&s->memory, reserved);
			return SORA_JOB_DONE;
		}
	}
	if (p->return_opts & SORA_SEARCH_RETURN_SAVE) {
		free(sel->saved);
		sel->saved = NULL;
		sel->saved_count = 0;
		if (visible > 0) {
			sel->saved = malloc(visible * sizeof(*sel->saved));
			if (sel->saved != NULL) {
				memcpy(sel->saved, res.uids.uids, visible * sizeof(*sel->saved));
				sel->saved_count = visible;
			}
		}
	}
	if (p->esearch || s->rev2) {
		/* IMAP4rev2 answers every SEARCH with ESEARCH (RFC 9051
		 * §6.4.4): no RETURN means RETURN (ALL). */
		r = p->esearch ? p->return_opts : SORA_SEARCH_RETURN_ALL;
		/* Nothing that asks for results (CONTEXT is a hint, UPDATE
		 * needs a start) is ALL -- except SAVE alone, which has no
		 * ESEARCH response at all (RFC 5182 §2.4). */
		if ((r & result_opts) == 0 &&
		    (!(r & SORA_SEARCH_RETURN_SAVE) || (r & SORA_SEARCH_RETURN_UPDATE)))
			r |= SORA_SEARCH_RETURN_ALL;
		if ((r & result_opts) == 0) {
			/* SAVE alone: no ESEARCH response. */
		} else {
			sora_buf_printf(&out, "* ESEARCH (TAG \"%s\")%s", cmd->tag, cmd->uid ? " UID" : "");
			if (visible > 0) {
				if (r & SORA_SEARCH_RETURN_MIN)
					sora_buf_printf(&out, " MIN %u", cmd->uid ? res.uids.uids[0]
								: imap_seq_of(sel, res.uids.uids[0]));
				if (r & SORA_SEARCH_RETURN_MAX) {
					/* Exact past the cap: the query's max(uid). */
					uint32_t mx = res.truncated && imap_seq_of(sel, res.max_uid) != 0 ?
							      res.max_uid : res.uids.uids[visible - 1];

					sora_buf_printf(&out, " MAX %u", cmd->uid ? mx : imap_seq_of(sel, mx));
				}
			}
			if (r & SORA_SEARCH_RETURN_COUNT)
				sora_buf_printf(&out, " COUNT %zu", res.truncated ? (size_t)res.total : visible);
			if ((r & SORA_SEARCH_RETURN_ALL) && visible > 0) {
				sora_buf_append_str(&out, " ALL ");
				number_list(&out, sel, res.uids.uids, visible, cmd->uid, true);
			}
			if (r & SORA_SEARCH_RETURN_PARTIAL) {
				/* RFC 5267 §4.4: the range as asked (in order),
				 * then what is there, or NIL. */
				sora_buf_printf(&out, " PARTIAL (%u:%u ", p->partial_lo, p->partial_hi);
				if (npart > 0)
					number_list(&out, sel, part, npart, cmd->uid, true);
				else
					sora_buf_append_str(&out, "NIL");
				sora_buf_append_str(&out, ")");
			}
			if (p->has_modseq && visible > 0) {
				uint64_t modseq = res.highest_modseq;

				/* With only MIN, MAX and/or PARTIAL the modseq is
				 * that of the messages returned (RFC 7162 §3.1.5). */
				if ((r & (SORA_SEARCH_RETURN_ALL | SORA_SEARCH_RETURN_COUNT)) == 0) {
					uint32_t *pick = malloc((npart + 2) * sizeof(*pick));
					size_t np = 0;

					if (pick != NULL) {
						if (r & SORA_SEARCH_RETURN_MIN)
							pick[np++] = res.uids.uids[0];
						if (r & SORA_SEARCH_RETURN_MAX)
							pick[np++] = res.truncated && res.max_uid != 0 ?
									     res.max_uid : res.uids.uids[visible - 1];
						if (npart > 0)
							memcpy(pick + np, part, npart * sizeof(*pick));
						np += npart;
						modseq = modseq_of(cmd, db, pick, np, modseq);
						free(pick);
					}
				}
				if (modseq > 0)
					sora_buf_printf(&out, " MODSEQ %" PRIu64, modseq);
			}
			sora_buf_append_str(&out, "\r\n");
		}
	} else {
		sora_buf_append_str(&out, "* SEARCH");
		number_list(&out, sel, res.uids.uids, visible, cmd->uid, false);
		if (p->has_modseq && visible > 0)
			sora_buf_printf(&out, " (MODSEQ %" PRIu64 ")", res.highest_modseq);
		sora_buf_append_str(&out, "\r\n");
	}
	if (update) {
		/* RFC 5267 §4.3.1: a search that cannot be kept up to date is
		 * answered all the same, with an untagged NO [NOUPDATE]. */
		if (sel->context_count >= IMAP_SEARCH_CONTEXTS_MAX)
			sora_buf_printf(&out, "* NO [NOUPDATE \"%s\"] Too many updating searches (at most %d).\r\n",
					cmd->tag, IMAP_SEARCH_CONTEXTS_MAX);
		else if (res.truncated)
			sora_buf_printf(&out, "* NO [NOUPDATE \"%s\"] Too many results to keep up to date (at most %d).\r\n",
					cmd->tag, SORA_SEARCH_MAX_RESULTS);
		else if (imap_ctx_add(sel, cmd->tag, cmd->uid, p, res.uids.uids, visible) < 0)
			sora_buf_printf(&out, "* NO [NOUPDATE \"%s\"] Out of memory.\r\n", cmd->tag);
	}
	free(part);
	imap_job_buf(job, &out);
	sora_buf_free(&out);
	/* Also the first ADDTO / REMOVEFROM of a new context, when something
	 * changed since the search ran. */
	if (imap_sync(cmd, job, db, cmd->uid) == -2) {
		s->state = IMAP_STATE_LOGOUT;
		sora_search_result_free(&res);
		sora_session_memory_release(&s->memory, reserved);
		return SORA_JOB_DONE;
	}
	/* The client learns of the cap from the tagged reply's [LIMIT] code
	 * whenever the list it got (SEARCH, ESEARCH ALL, the saved "$") is
	 * not the whole result; COUNT, MIN and MAX are exact and PARTIAL is
	 * paged by the client, so they need no warning. */
	if (cut || (res.truncated && (!esearch || (r & SORA_SEARCH_RETURN_ALL) ||
				      (return_opts & SORA_SEARCH_RETURN_SAVE))))
		sora_job_printf(job, "%s OK [LIMIT] SEARCH completed (results capped at %d; narrow the "
				"search, e.g. by UID range, or use ESEARCH PARTIAL).\r\n",
				cmd->tag, SORA_SEARCH_MAX_RESULTS);
	else
		sora_job_printf(job, "%s OK Search completed.\r\n", cmd->tag);
	sora_search_result_free(&res);
	sora_session_memory_release(&s->memory, reserved);
	return SORA_JOB_DONE;
}

bool imap_search_allowed(struct imap_session *s, struct sora_str tag)
{
	const struct sora_server_config *srv = sora_conn_server(s->c);
	int64_t window_ms = srv->search_rate_limit_window_ms > 0 ? srv->search_rate_limit_window_ms
								 : 60000;
	unsigned int wait_s;
	struct timespec ts;

	if (srv->search_rate_limit_per_min <= 0)
		return true;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (sora_search_rate_check(srv, s->account_id, srv->search_rate_limit_per_min, window_ms,
				   (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000, "imap",
				   &wait_s))
		return true;
	sora_info(sora_conn_log_ctx(s->c), "search refused: search_rate_limit_per_min (%" PRId64
		  " per %" PRId64 " s) reached, next in %u s", srv->search_rate_limit_per_min,
		  window_ms / 1000, wait_s);
	imap_reply(s, tag, "NO [LIMIT] Too many searches (at most %" PRId64 " per %" PRId64
		   " seconds): try again in %u seconds.", srv->search_rate_limit_per_min,
		   window_ms / 1000, wait_s);
	return false;
}

bool imap_search_parsed(struct imap_session *s, struct imap_cmd *cmd, struct sora_str tag, int r,
			const char *error)
{
	if (r == SORA_IMAP_SEARCH_BADCHARSET) {
		cmd->free(cmd);
		imap_reply(s, tag, "NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset.");
		return false;
	}
	if (r < 0) {
		cmd->free(cmd);
		imap_bad(s, tag, error);
		return false;
	}
	return true;
}

void imap_search_submit(struct imap_session *s, struct imap_cmd *cmd, struct sora_str tag,
			bool has_modseq)
{
	if (!imap_search_allowed(s, tag)) {
		cmd->free(cmd);
		return;
	}
	if (has_modseq)
		imap_condstore_used(s);
	imap_cmd_submit(s, cmd);
}

void imap_cmd_search(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct search_cmd *sc;
	const char *error = "Invalid search.";
	int r;

	sc = calloc(1, sizeof(*sc));
	if (sc == NULL) {
		imap_reply(s, cmd->tag, "NO [UNAVAILABLE] Out of memory.");
		return;
	}
	imap_cmd_init(&sc->base, s, cmd, "SEARCH", search_run);
	sc->base.uid = uid;
	sc->base.free = search_free;
	r = sora_imap_search_parse(cmd->args, cmd->args_count, true, &sc->prog, &error);
	if (!imap_search_parsed(s, &sc->base, cmd->tag, r, error))
		return;
	if ((sc->prog.return_opts & SORA_SEARCH_RETURN_UPDATE) &&
	    (cmd->tag.len >= sizeof(sc->base.tag) ||
	     imap_ctx_find(s->sel, sc->base.tag) != NULL)) {
		/* RFC 5267 §4.3: the tag names the context; one in use by an
		 * updating search is refused with BAD. */
		search_free(&sc->base);
		imap_bad(s, cmd->tag, cmd->tag.len >= 128 ? "Tag too long for UPDATE."
							   : "Tag in use by an updating search.");
		return;
	}
	imap_search_submit(s, &sc->base, cmd->tag, sc->prog.has_modseq);
}
