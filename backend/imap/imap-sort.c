/* SORT and UID SORT (RFC 5256), with ESORT's RETURN options (RFC 5267
 * §3: MIN MAX ALL COUNT, and SAVE from RFC 5182), SORT=DISPLAY's
 * DISPLAYFROM/DISPLAYTO keys (RFC 5957) and CONDSTORE's MODSEQ (RFC 7162
 * §3.1.5).
 *
 * The handler parses on the loop thread (common/proto/imap-search.h);
 * the job runs one statement in PostgreSQL (backend/store/search.h:
 * search program, ORDER BY, LIMIT) and writes the reply. Results are
 * capped there: sorts by text keys at SORA_SEARCH_MAX_SORT_RESULTS (the
 * security guide's MaxComplexSortResults), the others at
 * SORA_SEARCH_MAX_RESULTS like SEARCH. A capped reply carries the first
 * results in sort order and the tagged OK says so with [LIMIT]; ESORT's
 * COUNT and MAX stay exact past the cap (MAX costs a second statement,
 * one row long).
 *
 * Thread safety: handler on the loop thread, run() on a worker owning
 * the session (imap-private.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/imap/imap-private.h"
#include "backend/store/search.h"
#include "common/proto/imap-search.h"

struct sort_cmd {
	struct imap_cmd base;
	struct sora_imap_sort_program prog;
};

static void sort_free(struct imap_cmd *cmd)
{
	struct sort_cmd *sc = (struct sort_cmd *)cmd;

	sora_imap_sort_free(&sc->prog);
	free(sc);
}

static uint32_t number_of(const struct imap_selected *sel, uint32_t uid, bool by_uid)
{
	return by_uid ? uid : imap_seq_of(sel, uid);
}

/* ESORT's ALL: a sequence-set in sort order (RFC 5267 §3.2). Only
 * ascending runs of consecutive numbers are written as ranges ("5,3:4,2"),
 * since a range in a set has no direction. */
static void sorted_set_append(struct sora_buf *out, const struct imap_selected *sel,
			      const uint32_t *uids, size_t n, bool by_uid)
{
	size_t i = 0;

	while (i < n) {
		uint32_t first = number_of(sel, uids[i], by_uid), last = first;
		size_t j = i + 1;

		while (j < n && last != UINT32_MAX && number_of(sel, uids[j], by_uid) == last + 1) {
			last++;
			j++;
		}
		if (i > 0)
			sora_buf_append(out, ",", 1);
		if (last != first)
			sora_buf_printf(out, "%u:%u", first, last);
		else
			sora_buf_printf(out, "%u", first);
		i = j;
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* RETURN (SAVE): the result as a set (RFC 5182 §2.1: "$" names the
 * messages, not their order). */
static void save_result(struct imap_selected *sel, const uint32_t *uids, size_t n)
{
	free(sel->saved);
	sel->saved = NULL;
	sel->saved_count = 0;
	if (n == 0)
		return;
	sel->saved = malloc(n * sizeof(*sel->saved));
	if (sel->saved == NULL)
		return;
	memcpy(sel->saved, uids, n * sizeof(*sel->saved));
	qsort(sel->saved, n, sizeof(*sel->saved), cmp_u32);
	sel->saved_count = n;
}

/* ESORT's MAX is the last message in sort order, which lies past the
 * capped result when it was truncated: one more row, read from there. */
static uint32_t last_in_order(struct imap_cmd *cmd, struct sora_db_conn *db,
			      const struct sora_imap_sort_program *p,
			      const struct sora_search_view *view,
			      const struct sora_search_result *res, size_t visible)
{
	struct imap_selected *sel = cmd->s->sel;
	struct sora_search_result last;
	uint32_t uid = visible > 0 ? res->uids.uids[visible - 1] : 0;

	if (!res->truncated || res->total == 0)
		return uid;
	if (sora_search_sort(db, sel->mailbox_id, p, view, res->total - 1, 1, &last,
			     &cmd->err) < 0)
		return 0;
	/* A message the session was not told of yet (it arrived since)
	 * cannot be named; the last known one of the capped result stands
	 * in for it. */
	if (last.uids.count == 1 && imap_seq_of(sel, last.uids.uids[0]) != 0)
		uid = last.uids.uids[0];
	sora_search_result_free(&last);
	return uid;
}

/* RFC 7162 §3.1.5 (via RFC 4731's rules for ESEARCH): with only MIN
 * and/or MAX, the MODSEQ is that of the messages returned. 0 when it
 * cannot be read (then no MODSEQ is sent). */
static uint64_t modseq_of(struct imap_cmd *cmd, struct sora_db_conn *db, const uint32_t *pick,
			  size_t np)
{
	struct sora_msgs_rows rows = { 0 };
	uint64_t modseq = 0;

	if (np > 0 && sora_msgs_fetch(db, cmd->s->sel->mailbox_id, pick, np, SORA_MSGS_WANT_STATE,
				      &rows, &cmd->err) == 0) {
		for (size_t i = 0; i < rows.count; i++)
			if (rows.rows[i].state.modseq > modseq)
				modseq = rows.rows[i].state.modseq;
	}
	sora_msgs_rows_free(&rows);
	return modseq;
}

static enum sora_job_status sort_run(struct imap_cmd *cmd, struct sora_job *job,
				     struct sora_db_conn *db)
{
	struct sort_cmd *sc = (struct sort_cmd *)cmd;
	struct imap_session *s = cmd->s;
	struct imap_selected *sel = s->sel;
	struct sora_search_view view = imap_search_view(sel);
	const unsigned int result_opts = SORA_SEARCH_RETURN_MIN | SORA_SEARCH_RETURN_MAX |
					 SORA_SEARCH_RETURN_ALL | SORA_SEARCH_RETURN_COUNT;
	const struct sora_imap_search_program *sp = &sc->prog.search;
	const size_t cap = sora_search_sort_cap(&sc->prog);
	struct sora_search_result res;
	struct sora_buf out = { 0 };
	unsigned int r = sp->return_opts;
	size_t visible = 0;
	uint32_t max_uid = 0;
	bool capped;

	/* session_memory_limit: the rows the query may return (the cap, or
	 * fewer messages), reserved before it runs; a SORT cannot be cut
	 * shorter than its cap without changing its answer, so it is refused
	 * when they do not fit. */
	const uint64_t reserved = SEARCH_FIXED_BYTES +
				  (uint64_t)(sel->count < cap ? sel->count : cap) * SEARCH_ROW_BYTES;

	memset(&res, 0, sizeof(res));
	if (sora_session_memory_reserve(&s->memory, reserved, "sort") < 0) {
		imap_search_memory_refused(job, cmd, "SORT");
		return SORA_JOB_DONE;
	}
	if (sel->count > 0 &&
	    sora_search_sort(db, sel->mailbox_id, &sc->prog, &view, 0, 0, &res, &cmd->err) < 0) {
		sora_session_memory_release(&s->memory, reserved);
		imap_job_error(job, cmd, "SORT", &cmd->err);
		return SORA_JOB_DONE;
	}
	/* Only messages the session knows of: new arrivals come with the
	 * next EXISTS. */
	for (size_t i = 0; i < res.uids.count; i++)
		if (imap_seq_of(sel, res.uids.uids[i]) != 0)
			res.uids.uids[visible++] = res.uids.uids[i];
	res.uids.count = visible;
	if (r & SORA_SEARCH_RETURN_SAVE)
		save_result(sel, res.uids.uids, visible);
	if (sp->esearch) {
		/* RFC 5267 §3 via RFC 4731: "RETURN ()" is ALL (the parser
		 * made it so); SAVE alone has no ESEARCH response (RFC 5182
		 * §2.4). */
		if ((r & result_opts) != 0) {
			sora_buf_printf(&out, "* ESEARCH (TAG \"%s\")%s", cmd->tag,
					cmd->uid ? " UID" : "");
			if (visible > 0 && (r & SORA_SEARCH_RETURN_MIN))
				sora_buf_printf(&out, " MIN %u",
						number_of(sel, res.uids.uids[0], cmd->uid));
			if (visible > 0 && (r & SORA_SEARCH_RETURN_MAX)) {
				uint32_t uid = last_in_order(cmd, db, &sc->prog, &view, &res, visible);

				max_uid = uid;

				if (uid == 0) {
					sora_buf_free(&out);
					sora_search_result_free(&res);
					sora_session_memory_release(&s->memory, reserved);
					imap_job_error(job, cmd, "SORT", &cmd->err);
					return SORA_JOB_DONE;
				}
				sora_buf_printf(&out, " MAX %u", number_of(sel, uid, cmd->uid));
			}
			if (r & SORA_SEARCH_RETURN_COUNT)
				sora_buf_printf(&out, " COUNT %" PRIu64,
						res.truncated ? res.total : (uint64_t)visible);
			if ((r & SORA_SEARCH_RETURN_ALL) && visible > 0) {
				sora_buf_append_str(&out, " ALL ");
				sorted_set_append(&out, sel, res.uids.uids, visible, cmd->uid);
			}
			if (sp->has_modseq && visible > 0) {
				uint64_t modseq = res.highest_modseq;

				if ((r & (SORA_SEARCH_RETURN_ALL | SORA_SEARCH_RETURN_COUNT)) == 0) {
					uint32_t pick[2];
					size_t np = 0;

					if (r & SORA_SEARCH_RETURN_MIN)
						pick[np++] = res.uids.uids[0];
					if (max_uid != 0)
						pick[np++] = max_uid;
					modseq = modseq_of(cmd, db, pick, np);
				}
				if (modseq > 0)
					sora_buf_printf(&out, " MODSEQ %" PRIu64, modseq);
			}
			sora_buf_append_str(&out, "\r\n");
		}
	} else {
		sora_buf_append_str(&out, "* SORT");
		for (size_t i = 0; i < visible; i++)
			sora_buf_printf(&out, " %u", number_of(sel, res.uids.uids[i], cmd->uid));
		if (sp->has_modseq && visible > 0)
			sora_buf_printf(&out, " (MODSEQ %" PRIu64 ")", res.highest_modseq);
		sora_buf_append_str(&out, "\r\n");
	}
	imap_job_buf(job, &out);
	sora_buf_free(&out);
	if (imap_sync(cmd, job, db, cmd->uid) == -2) {
		s->state = IMAP_STATE_LOGOUT;
		sora_search_result_free(&res);
		sora_session_memory_release(&s->memory, reserved);
		return SORA_JOB_DONE;
	}
	/* What the client got was cut when it got the list (SORT, ALL) or
	 * saved it; MIN, MAX and COUNT are exact. */
	capped = res.truncated &&
		 (!sp->esearch || (r & (SORA_SEARCH_RETURN_ALL | SORA_SEARCH_RETURN_SAVE)));
	if (capped)
		sora_job_printf(job, "%s OK [LIMIT] Sort completed (only the first %zu results are "
				     "returned).\r\n", cmd->tag, cap);
	else
		sora_job_printf(job, "%s OK Sort completed.\r\n", cmd->tag);
	sora_search_result_free(&res);
	sora_session_memory_release(&s->memory, reserved);
	return SORA_JOB_DONE;
}

void imap_cmd_sort(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct sort_cmd *sc;
	const char *error = "Invalid SORT.";
	int r;

	sc = calloc(1, sizeof(*sc));
	if (sc == NULL) {
		imap_reply(s, cmd->tag, "NO [UNAVAILABLE] Out of memory.");
		return;
	}
	imap_cmd_init(&sc->base, s, cmd, "SORT", sort_run);
	sc->base.uid = uid;
	sc->base.free = sort_free;
	r = sora_imap_sort_parse(cmd->args, cmd->args_count,
				 SORA_IMAP_SORT_ALLOW_RETURN | SORA_IMAP_SORT_ALLOW_DISPLAY, &sc->prog,
				 &error);
	if (imap_search_parsed(s, &sc->base, cmd->tag, r, error))
		imap_search_submit(s, &sc->base, cmd->tag, sc->prog.search.has_modseq);
}
