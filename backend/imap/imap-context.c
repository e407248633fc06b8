/* CONTEXT=SEARCH (RFC 5267 §4): searches kept up to date with ADDTO and
 * REMOVEFROM, and the CANCELUPDATE command. See imap-private.h.
 *
 * A context holds its program and the result as the client knows it (the
 * UIDs, in mailbox order). Whenever the session learns that messages
 * changed -- new mail, flag changes by anyone, expunges -- the changed
 * messages, and only those, are run through the program again in
 * PostgreSQL (the program ANDed with their UIDs, at most
 * SORA_SEARCH_MAX_RESULTS UIDs per query so no answer is ever cut), and
 * the difference to the kept result goes out as one ESEARCH per context.
 * Expunged messages leave every result without a query, before their
 * EXPUNGE (or VANISHED), so sequence numbers in REMOVEFROM are still valid.
 *
 * Positions: every ADDTO and REMOVEFROM carries context position 0 (RFC
 * 5267 §4.3.3/§4.3.4 allow it for SEARCH): the result is in mailbox order
 * and the client puts or finds the numbers by value.
 *
 * Memory: a context holds at most as many UIDs as the mailbox has
 * messages; IMAP_SEARCH_CONTEXTS_MAX contexts per session.
 *
 * Thread safety: the functions run inside the session's job (worker,
 * exclusive) or, for CANCELUPDATE, on the loop thread while no job runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/imap/imap-private.h"
#include "backend/store/search.h"

struct imap_search_ctx *imap_ctx_find(const struct imap_selected *sel, const char *tag)
{
	for (struct imap_search_ctx *c = sel != NULL ? sel->contexts : NULL; c != NULL; c = c->next)
		if (strcmp(c->tag, tag) == 0)
			return c;
	return NULL;
}

static void ctx_free(struct imap_search_ctx **cp)
{
	struct imap_search_ctx *c = *cp;

	if (c == NULL)
		return;
	*cp = NULL;
	sora_imap_search_free(&c->prog);
	free(c->uids);
	free(c);
}

int imap_ctx_add(struct imap_selected *sel, const char *tag, bool uid,
		 struct sora_imap_search_program *prog, const uint32_t *uids, size_t n)
{
	struct imap_search_ctx *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return -1;
	if (n > 0) {
		c->uids = malloc(n * sizeof(*c->uids));
		if (c->uids == NULL) {
			free(c);
			return -1;
		}
		memcpy(c->uids, uids, n * sizeof(*c->uids));
	}
	c->count = c->cap = n;
	snprintf(c->tag, sizeof(c->tag), "%s", tag);
	c->uid = uid;
	c->prog = *prog;
	memset(prog, 0, sizeof(*prog));
	c->next = sel->contexts;
	sel->contexts = c;
	sel->context_count++;
	return 0;
}

void imap_ctx_free_all(struct imap_selected *sel)
{
	while (sel->contexts != NULL) {
		struct imap_search_ctx *c = sel->contexts;

		sel->contexts = c->next;
		ctx_free(&c);
	}
	sel->context_count = 0;
	free(sel->ctx_touched);
	sel->ctx_touched = NULL;
	sel->ctx_touched_count = sel->ctx_touched_cap = 0;
}

void imap_ctx_touch(struct imap_selected *sel, const uint32_t *uids, size_t n)
{
	if (sel == NULL || sel->contexts == NULL || n == 0)
		return;
	if (sel->ctx_touched_count + n > sel->ctx_touched_cap) {
		size_t ncap = (sel->ctx_touched_count + n) * 2;
		uint32_t *p = realloc(sel->ctx_touched, ncap * sizeof(*p));

		/* Out of memory: those changes are not evaluated, which at
		 * worst leaves a result stale; nothing else breaks. */
		if (p == NULL)
			return;
		sel->ctx_touched = p;
		sel->ctx_touched_cap = ncap;
	}
	memcpy(sel->ctx_touched + sel->ctx_touched_count, uids, n * sizeof(*uids));
	sel->ctx_touched_count += n;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static bool ctx_has(const struct imap_search_ctx *c, uint32_t uid)
{
	return sora_imap_uids_find(c->uids, c->count, uid) >= 0;
}

/* Appends " NAME (0 set)" with the UIDs (or their sequence numbers). */
static void update_item(struct sora_buf *out, const struct imap_selected *sel,
			const struct imap_search_ctx *c, const char *name, uint32_t *v, size_t n)
{
	if (n == 0)
		return;
	if (!c->uid) {
		/* The map is ascending, so the sequence numbers are too. */
		for (size_t i = 0; i < n; i++)
			v[i] = imap_seq_of(sel, v[i]);
	}
	sora_buf_printf(out, " %s (0 ", name);
	imap_uidset_append(out, v, n);
	sora_buf_append_str(out, ")");
}

static void update_line(struct sora_buf *out, const struct imap_selected *sel,
			const struct imap_search_ctx *c, uint32_t *removed, size_t nr,
			uint32_t *added, size_t na)
{
	if (nr == 0 && na == 0)
		return;
	sora_buf_printf(out, "* ESEARCH (TAG \"%s\")%s", c->tag, c->uid ? " UID" : "");
	/* The client applies the items in order (RFC 5267 §4.3.2); the sets
	 * are disjoint, so either order gives the same result. */
	update_item(out, sel, c, "REMOVEFROM", removed, nr);
	update_item(out, sel, c, "ADDTO", added, na);
	sora_buf_append_str(out, "\r\n");
}

void imap_ctx_expunged(struct imap_session *s, struct sora_buf *out, const uint32_t *uids,
		       size_t n)
{
	struct imap_selected *sel = s->sel;
	uint32_t *gone;

	if (sel == NULL || sel->contexts == NULL || n == 0)
		return;
	gone = malloc(n * sizeof(*gone));
	if (gone == NULL)
		return;
	for (struct imap_search_ctx *c = sel->contexts; c != NULL; c = c->next) {
		size_t k = 0, w = 0;

		for (size_t i = 0; i < n; i++)
			if (imap_seq_of(sel, uids[i]) != 0 && ctx_has(c, uids[i]))
				gone[k++] = uids[i];
		if (k == 0)
			continue;
		qsort(gone, k, sizeof(*gone), cmp_u32);
		/* Drop them from the kept result (both lists ascending). */
		for (size_t i = 0, j = 0; i < c->count; i++) {
			while (j < k && gone[j] < c->uids[i])
				j++;
			if (j < k && gone[j] == c->uids[i])
				continue;
			c->uids[w++] = c->uids[i];
		}
		c->count = w;
		update_line(out, sel, c, gone, k, NULL, 0);
	}
	free(gone);
}

/* Runs c's program over the UIDs v[0..n) (ascending, n <= the search
 * cap); sets match[i]. */
static int match_chunk(struct imap_cmd *cmd, struct sora_db_conn *db,
		       const struct imap_search_ctx *c, const uint32_t *v, size_t n, bool *match)
{
	struct imap_selected *sel = cmd->s->sel;
	struct sora_search_view view = imap_search_view(sel);
	struct sora_imap_search_program p = c->prog;
	struct sora_imap_search_key *kids;
	struct sora_imap_seq_range span = { v[0], v[n - 1] };
	struct sora_imap_seq_range *ranges;
	struct sora_search_result res;
	size_t nk = c->prog.root.child_count, nr = 0;
	int ret = -1;

	/* v may hold UIDs the session has not announced yet: no cap. */
	view.uid_max = 0;
	/* The program's top level is an AND: its keys plus "UID lo:hi" (a
	 * range the (mailbox_id, uid) index serves) and "UID <exactly
	 * these>". The keys are borrowed, never freed here. */
	kids = calloc(nk + 2, sizeof(*kids));
	ranges = malloc(n * sizeof(*ranges));
	if (kids == NULL || ranges == NULL) {
		sora_error_set(&cmd->err, SORA_ERR_TEMPORARY, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (nr > 0 && ranges[nr - 1].hi + 1 == v[i])
			ranges[nr - 1].hi = v[i];
		else
			ranges[nr++] = (struct sora_imap_seq_range){ v[i], v[i] };
	}
	memcpy(kids, c->prog.root.children, nk * sizeof(*kids));
	kids[nk].type = SORA_SEARCH_UIDSET;
	kids[nk].set.ranges = &span;
	kids[nk].set.count = 1;
	kids[nk + 1].type = SORA_SEARCH_UIDSET;
	kids[nk + 1].set.ranges = ranges;
	kids[nk + 1].set.count = nr;
	p.root.children = kids;
	p.root.child_count = nk + 2;
	memset(&res, 0, sizeof(res));
	if (sora_search_run(db, sel->mailbox_id, &p, &view, n, &res, &cmd->err) < 0)
		goto out;
	for (size_t i = 0, j = 0; i < n; i++) {
		while (j < res.uids.count && res.uids.uids[j] < v[i])
			j++;
		match[i] = j < res.uids.count && res.uids.uids[j] == v[i];
	}
	sora_search_result_free(&res);
	ret = 0;
out:
	free(kids);
	free(ranges);
	return ret;
}

/* Merges the ascending, disjoint lists: c->uids minus removed plus
 * added. */
static int ctx_apply(struct imap_search_ctx *c, const uint32_t *removed, size_t nr,
		     const uint32_t *added, size_t na)
{
	size_t n = c->count - nr + na, w = 0, i = 0, j = 0, r = 0;
	uint32_t *v = malloc((n > 0 ? n : 1) * sizeof(*v));

	if (v == NULL)
		return -1;
	while (i < c->count || j < na) {
		if (j >= na || (i < c->count && c->uids[i] < added[j])) {
			while (r < nr && removed[r] < c->uids[i])
				r++;
			if (!(r < nr && removed[r] == c->uids[i]))
				v[w++] = c->uids[i];
			i++;
		} else {
			v[w++] = added[j++];
		}
	}
	free(c->uids);
	c->uids = v;
	c->count = w;
	c->cap = n > 0 ? n : 1;
	return 0;
}

int imap_ctx_evaluate(struct imap_cmd *cmd, struct sora_db_conn *db, struct sora_buf *out,
		      const uint32_t *cand, size_t n)
{
	struct imap_selected *sel = cmd->s->sel;
	uint32_t *all = NULL, *added = NULL, *removed = NULL;
	bool *match = NULL;
	size_t total = 0, k = 0;
	int ret = -1;

	if (sel == NULL)
		return 0;
	if (sel->contexts == NULL) {
		sel->ctx_touched_count = 0;
		return 0;
	}
	total = n + sel->ctx_touched_count;
	if (total == 0)
		return 0;
	all = malloc(total * sizeof(*all));
	added = malloc(total * sizeof(*added));
	removed = malloc(total * sizeof(*removed));
	match = malloc(total * sizeof(*match));
	if (all == NULL || added == NULL || removed == NULL || match == NULL) {
		sora_error_set(&cmd->err, SORA_ERR_TEMPORARY, "out of memory");
		goto out;
	}
	if (n > 0)
		memcpy(all, cand, n * sizeof(*all));
	if (sel->ctx_touched_count > 0)
		memcpy(all + n, sel->ctx_touched, sel->ctx_touched_count * sizeof(*all));
	sel->ctx_touched_count = 0;
	qsort(all, total, sizeof(*all), cmp_u32);
	/* Unique, and only messages the client knows of: an expunged one
	 * leaves through imap_ctx_expunged(), a new one after its EXISTS. */
	for (size_t i = 0; i < total; i++)
		if ((k == 0 || all[k - 1] != all[i]) && imap_seq_of(sel, all[i]) != 0)
			all[k++] = all[i];
	for (struct imap_search_ctx *c = sel->contexts; c != NULL; c = c->next) {
		size_t na = 0, nr = 0;

		for (size_t off = 0; off < k; off += SORA_SEARCH_MAX_RESULTS) {
			size_t len = k - off < SORA_SEARCH_MAX_RESULTS ? k - off : SORA_SEARCH_MAX_RESULTS;

			if (match_chunk(cmd, db, c, all + off, len, match + off) < 0)
				goto out;
		}
		for (size_t i = 0; i < k; i++) {
			bool was = ctx_has(c, all[i]);

			if (match[i] && !was)
				added[na++] = all[i];
			else if (!match[i] && was)
				removed[nr++] = all[i];
		}
		if (na == 0 && nr == 0)
			continue;
		if (ctx_apply(c, removed, nr, added, na) < 0) {
			sora_error_set(&cmd->err, SORA_ERR_TEMPORARY, "out of memory");
			goto out;
		}
		update_line(out, sel, c, removed, nr, added, na);
	}
	ret = 0;
out:
	free(all);
	free(added);
	free(removed);
	free(match);
	return ret;
}

/* CANCELUPDATE "tag" ... (RFC 5267 §4.3.5): all named contexts must
 * exist, then all go; nothing needs the database. */
void imap_cmd_cancelupdate(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct imap_selected *sel = s->sel;

	if (cmd->args_count == 0) {
		imap_bad(s, cmd->tag, "CANCELUPDATE takes the tags of searches.");
		return;
	}
	for (size_t i = 0; i < cmd->args_count; i++) {
		const struct sora_imap_arg *a = &cmd->args[i];
		char tag[128];

		if (a->type != SORA_IMAP_ARG_STRING) {
			imap_bad(s, cmd->tag, "CANCELUPDATE takes quoted tags.");
			return;
		}
		if (a->str.len >= sizeof(tag) || memchr(a->str.p, '\0', a->str.len) != NULL) {
			imap_reply(s, cmd->tag, "NO [NONEXISTENT] No such search context.");
			return;
		}
		memcpy(tag, a->str.p, a->str.len);
		tag[a->str.len] = '\0';
		if (imap_ctx_find(sel, tag) == NULL) {
			imap_reply(s, cmd->tag, "NO [NONEXISTENT] No such search context.");
			return;
		}
	}
	for (size_t i = 0; i < cmd->args_count; i++) {
		const struct sora_imap_arg *a = &cmd->args[i];

		for (struct imap_search_ctx **cp = &sel->contexts; *cp != NULL; cp = &(*cp)->next) {
			struct imap_search_ctx *c = *cp;

			if (strlen(c->tag) == a->str.len && memcmp(c->tag, a->str.p, a->str.len) == 0) {
				*cp = c->next;
				ctx_free(&c);
				sel->context_count--;
				break;
			}
		}
	}
	imap_reply(s, cmd->tag, "OK Updates cancelled.");
}
