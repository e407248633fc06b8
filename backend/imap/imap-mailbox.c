/* Mailbox commands: LIST (with LIST-EXTENDED, LIST-STATUS, SPECIAL-USE),
 * LSUB, CREATE (CREATE-SPECIAL-USE), DELETE, RENAME, SUBSCRIBE,
 * UNSUBSCRIBE, STATUS (STATUS=SIZE, CONDSTORE), SELECT / EXAMINE (with
 * CONDSTORE and QRESYNC parameters), CLOSE and UNSELECT. The store work is
 * backend/store/mailbox.h and messages.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/imap/imap-private.h"
#include "backend/store/mailbox.h"
#include "backend/store/messages.h"
#include "common/proto/imap-types.h"

#define NAME_SIZE (SORA_MAILBOX_NAME_MAX + 1)

/* ---- STATUS items, shared by STATUS and LIST RETURN (STATUS) ---- */

enum status_item {
	ST_MESSAGES = 1u << 0,
	ST_RECENT = 1u << 1,
	ST_UIDNEXT = 1u << 2,
	ST_UIDVALIDITY = 1u << 3,
	ST_UNSEEN = 1u << 4,
	ST_HIGHESTMODSEQ = 1u << 5,
	ST_SIZE = 1u << 6,
	ST_DELETED = 1u << 7,
};

static int status_items_parse(const struct sora_imap_arg *arg, unsigned int *items_r)
{
	static const struct {
		const char *name;
		unsigned int bit;
	} names[] = {
		{ "MESSAGES", ST_MESSAGES }, { "RECENT", ST_RECENT },
		{ "UIDNEXT", ST_UIDNEXT }, { "UIDVALIDITY", ST_UIDVALIDITY },
		{ "UNSEEN", ST_UNSEEN }, { "HIGHESTMODSEQ", ST_HIGHESTMODSEQ },
		{ "SIZE", ST_SIZE }, { "DELETED", ST_DELETED },
	};

	*items_r = 0;
	if (arg->type != SORA_IMAP_ARG_LIST || arg->list_count == 0)
		return -1;
	for (size_t i = 0; i < arg->list_count; i++) {
		size_t k;

		if (arg->list[i].type != SORA_IMAP_ARG_ATOM)
			return -1;
		for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (sora_str_ieq_c(arg->list[i].str, names[k].name))
				break;
		if (k == sizeof(names) / sizeof(names[0]))
			return -1;
		*items_r |= names[k].bit;
	}
	return 0;
}

/* Counts that mailbox_stats does not keep: \Recent (unclaimed) and
 * \Deleted messages. One small indexed query, only when asked for. */
static int status_extra(struct sora_db_conn *db, int64_t mailbox_id, unsigned int items,
			int64_t *recent_r, int64_t *deleted_r, struct sora_error *err)
{
	char id[24];
	const char *values[1] = { id };
	PGresult *res = NULL;

	*recent_r = *deleted_r = 0;
	if ((items & (ST_RECENT | ST_DELETED)) == 0)
		return 0;
	snprintf(id, sizeof(id), "%" PRId64, mailbox_id);
	if (sora_db_exec(db, SORA_DB_CLASS_DEFAULT,
			 "SELECT (SELECT count(*) FROM messages m, mailboxes b WHERE b.id = $1::bigint"
			 "          AND m.mailbox_id = b.id AND m.expunged_at IS NULL"
			 "          AND m.uid >= b.recent_uid),"
			 "       (SELECT deleted_count FROM mailbox_stats WHERE mailbox_id = $1::bigint)",
			 1, values, &res, NULL, err) != 0)
		return -1;
	if (PQntuples(res) == 1) {
		sora_db_get_i64(res, 0, 0, recent_r, NULL);
		sora_db_get_i64(res, 0, 1, deleted_r, NULL);
	}
	PQclear(res);
	return 0;
}

static int status_format(struct imap_session *s, struct sora_db_conn *db, const char *name,
			 unsigned int items, struct sora_buf *out, struct sora_error *err)
{
	struct sora_mailbox_status st;
	int64_t recent = 0, deleted = 0;
	const char *sep = "";

	if (sora_mailbox_status(db, s->account_id, name, &st, err) < 0)
		return -1;
	if (status_extra(db, st.id, items, &recent, &deleted, err) < 0)
		return -1;
	sora_buf_append_str(out, "* STATUS ");
	imap_mailbox_write(s, out, name);
	sora_buf_append_str(out, " (");
#define ITEM(bit, fmt, v) \
	if (items & (bit)) { \
		sora_buf_printf(out, "%s" fmt, sep, v); \
		sep = " "; \
	}
	ITEM(ST_MESSAGES, "MESSAGES %" PRId64, st.messages)
	ITEM(ST_RECENT, "RECENT %" PRId64, recent)
	ITEM(ST_UIDNEXT, "UIDNEXT %" PRId64, st.uid_next)
	ITEM(ST_UIDVALIDITY, "UIDVALIDITY %" PRId64, st.uid_validity)
	ITEM(ST_UNSEEN, "UNSEEN %" PRId64, st.unseen)
	ITEM(ST_HIGHESTMODSEQ, "HIGHESTMODSEQ %" PRId64, st.highest_modseq)
	ITEM(ST_SIZE, "SIZE %" PRId64, st.size)
	ITEM(ST_DELETED, "DELETED %" PRId64, deleted)
#undef ITEM
	sora_buf_append_str(out, ")\r\n");
	return 0;
}

/* ---- LIST / LSUB ---- */

enum list_sel {
	LS_SUBSCRIBED = 1u << 0,
	LS_REMOTE = 1u << 1,
	LS_RECURSIVEMATCH = 1u << 2,
	LS_SPECIALUSE = 1u << 3,
};

enum list_ret {
	LR_SUBSCRIBED = 1u << 0,
	LR_CHILDREN = 1u << 1,
	LR_SPECIALUSE = 1u << 2,
	LR_STATUS = 1u << 3,
};

struct list_cmd {
	struct imap_cmd base;
	bool lsub;
	bool extended;
	unsigned int sel;
	unsigned int ret;
	unsigned int status_items;
	char *reference;            /* UTF-8 */
	char **patterns;            /* UTF-8, reference joined */
	size_t pattern_count;
	struct sora_buf *out;       /* run(): the reply being built */
};

static void list_free(struct imap_cmd *cmd)
{
	struct list_cmd *l = (struct list_cmd *)cmd;

	for (size_t i = 0; i < l->pattern_count; i++)
		free(l->patterns[i]);
	free(l->patterns);
	free(l->reference);
	free(l);
}

static bool list_matches(const struct list_cmd *l, const char *name)
{
	for (size_t i = 0; i < l->pattern_count; i++)
		if (sora_mailbox_match(l->patterns[i], name, SORA_MAILBOX_DELIMITER))
			return true;
	return false;
}

/* RECURSIVEMATCH (RFC 5258 §3): whether a subscribed name below entry i
 * does not match the patterns itself, so that entry i is reported with
 * CHILDINFO ("SUBSCRIBED") on its behalf. */
static bool subscribed_child_unmatched(const struct list_cmd *l, const struct sora_mailbox_list *all,
				       size_t i)
{
	size_t n = strlen(all->items[i].name);

	for (size_t k = i + 1; k < all->count; k++) {
		const char *name = all->items[k].name;

		if (strncmp(name, all->items[i].name, n) != 0)
			break;
		if (name[n] == SORA_MAILBOX_DELIMITER && all->items[k].subscribed &&
		    !list_matches(l, name))
			return true;
	}
	return false;
}

static const struct sora_mailbox_info *find_name(const struct sora_mailbox_list *all, const char *name)
{
	size_t lo = 0, hi = all->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(all->items[mid].name, name);

		if (c == 0)
			return &all->items[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

struct list_out {
	struct sora_buf *out;
	const char *sep;
};

static void attr(struct list_out *o, bool cond, const char *text)
{
	if (!cond)
		return;
	sora_buf_printf(o->out, "%s%s", o->sep, text);
	o->sep = " ";
}

static void list_line(struct list_cmd *l, const struct sora_mailbox_info *m, bool childinfo)
{
	struct imap_session *s = l->base.s;
	struct sora_buf *out = l->out;
	struct list_out o = { out, "" };
	bool subscribed_attr = m->subscribed && ((l->ret & LR_SUBSCRIBED) || (l->sel & LS_SUBSCRIBED));

	sora_buf_printf(out, "* %s (", l->lsub ? "LSUB" : "LIST");
	if (l->lsub) {
		attr(&o, m->noselect || m->nonexistent, "\\Noselect");
	} else {
		attr(&o, m->nonexistent, "\\NonExistent");
		attr(&o, m->noselect && !m->nonexistent, "\\Noselect");
		attr(&o, !m->nonexistent && m->has_children, "\\HasChildren");
		attr(&o, !m->nonexistent && !m->has_children, "\\HasNoChildren");
		attr(&o, subscribed_attr, "\\Subscribed");
	}
	/* Special-use attributes always (RFC 6154 §2: servers SHOULD). */
	attr(&o, m->special_use[0] != '\0', m->special_use);
	sora_buf_append_str(out, ") \"/\" ");
	imap_mailbox_write(s, out, m->name);
	if (childinfo)
		sora_buf_append_str(out, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
	sora_buf_append_str(out, "\r\n");
}

/* LSUB (RFC 3501 §6.3.9): a name that matches only because '%' stopped at
 * a delimiter is shown as \Noselect when it is not subscribed itself but
 * something below it is. */
static void lsub_parents(struct list_cmd *l, const struct sora_mailbox_list *all,
			 const struct sora_mailbox_info *m, char **shown, size_t *nshown)
{
	char buf[SORA_MAILBOX_NAME_MAX + 1];
	size_t len = strlen(m->name);

	if (len >= sizeof(buf))
		return;
	memcpy(buf, m->name, len + 1);
	for (size_t cut = len; cut > 0; cut--) {
		const struct sora_mailbox_info *p;
		struct sora_mailbox_info fake;
		bool seen = false;

		if (buf[cut] != SORA_MAILBOX_DELIMITER)
			continue;
		buf[cut] = '\0';
		if (!list_matches(l, buf))
			continue;
		p = find_name(all, buf);
		if (p != NULL && p->subscribed)
			continue;
		for (size_t i = 0; i < *nshown; i++)
			if (strcmp(shown[i], buf) == 0)
				seen = true;
		if (seen || *nshown >= 256)
			continue;
		shown[*nshown] = strdup(buf);
		if (shown[*nshown] == NULL)
			return;
		(*nshown)++;
		memset(&fake, 0, sizeof(fake));
		fake.name = buf;
		fake.noselect = true;
		list_line(l, &fake, false);
	}
}

static enum sora_job_status list_run(struct imap_cmd *cmd, struct sora_job *job,
				     struct sora_db_conn *db)
{
	struct list_cmd *l = (struct list_cmd *)cmd;
	struct imap_session *s = cmd->s;
	struct sora_mailbox_list all;
	struct sora_buf out = { 0 };
	const char *verb = l->lsub ? "LSUB" : "LIST";
	char *shown[256];
	size_t nshown = 0;
	bool subscribed_only = l->lsub || (l->sel & LS_SUBSCRIBED);

	if (l->pattern_count == 1 && l->patterns[0][0] == '\0' && !l->extended) {
		/* LIST "" "": the hierarchy delimiter and root. */
		sora_job_printf(job, "* %s (\\Noselect) \"/\" \"\"\r\n%s OK %s completed.\r\n", verb,
				cmd->tag, l->lsub ? "Lsub" : "List");
		return SORA_JOB_DONE;
	}
	if (sora_mailbox_list(db, s->account_id, &all, &cmd->err) < 0) {
		imap_job_error(job, cmd, verb, &cmd->err);
		return SORA_JOB_DONE;
	}
	l->out = &out;
	for (size_t i = 0; i < all.count; i++) {
		const struct sora_mailbox_info *m = &all.items[i];
		bool matches = list_matches(l, m->name);
		bool childinfo = false;

		if (subscribed_only) {
			if (l->lsub && m->subscribed && !matches)
				lsub_parents(l, &all, m, shown, &nshown);
			if (!matches)
				continue;
			if (!l->lsub && (l->sel & LS_RECURSIVEMATCH))
				childinfo = subscribed_child_unmatched(l, &all, i);
			if (!m->subscribed && !childinfo)
				continue;
		} else if (!matches || m->nonexistent) {
			continue;
		}
		if ((l->sel & LS_SPECIALUSE) && m->special_use[0] == '\0')
			continue;
		list_line(l, m, childinfo);
		if ((l->ret & LR_STATUS) && !m->noselect && !m->nonexistent) {
			struct sora_error err;

			/* A mailbox deleted meanwhile just has no STATUS. */
			status_format(s, db, m->name, l->status_items, &out, &err);
		}
		if (out.len > 32768 && imap_job_buf(job, &out) < 0)
			break;
	}
	for (size_t i = 0; i < nshown; i++)
		free(shown[i]);
	sora_mailbox_list_free(&all);
	imap_job_buf(job, &out);
	sora_buf_free(&out);
	sora_job_printf(job, "%s OK %s completed.\r\n", cmd->tag, l->lsub ? "Lsub" : "List");
	return SORA_JOB_DONE;
}

/* Decodes a reference or pattern argument (mUTF-7 unless UTF8=ACCEPT). */
static char *pattern_arg(struct imap_session *s, const struct sora_imap_arg *arg)
{
	struct sora_str v;
	struct sora_buf b = { 0 };
	const char *error;

	if (!sora_imap_arg_astring(arg, &v) && !(arg->type == SORA_IMAP_ARG_ATOM && (v = arg->str, 1)))
		return NULL;
	if (memchr(v.p, '\0', v.len) != NULL)
		return NULL;
	if (s->utf8) {
		if (sora_buf_append(&b, v.p, v.len) < 0)
			return NULL;
	} else if (sora_imap_mutf7_to_utf8(v, &b, &error) < 0) {
		/* Not valid modified UTF-7: the pattern is taken as it is
		 * (it then matches nothing that is stored in UTF-8). */
		sora_buf_reset(&b);
		if (sora_buf_append(&b, v.p, v.len) < 0)
			return NULL;
	}
	if (sora_buf_append(&b, "", 1) < 0) {
		sora_buf_free(&b);
		return NULL;
	}
	return b.data;
}

static int list_add_pattern(struct list_cmd *l, const char *pattern)
{
	char **p = realloc(l->patterns, (l->pattern_count + 1) * sizeof(*p));
	char *joined;
	size_t rl = strlen(l->reference), pl = strlen(pattern);

	if (p == NULL)
		return -1;
	l->patterns = p;
	joined = malloc(rl + pl + 1);
	if (joined == NULL)
		return -1;
	/* RFC 3501 §6.3.8: the pattern is taken relative to the reference;
	 * one that starts with the delimiter stands alone. */
	if (pattern[0] == SORA_MAILBOX_DELIMITER || rl == 0) {
		memcpy(joined, pattern, pl + 1);
	} else {
		memcpy(joined, l->reference, rl);
		memcpy(joined + rl, pattern, pl + 1);
	}
	l->patterns[l->pattern_count++] = joined;
	return 0;
}

static int list_options(struct list_cmd *l, const struct sora_imap_arg *arg, bool selection)
{
	for (size_t i = 0; i < arg->list_count; i++) {
		const struct sora_imap_arg *o = &arg->list[i];

		if (o->type != SORA_IMAP_ARG_ATOM)
			return -1;
		if (selection) {
			if (sora_str_ieq_c(o->str, "SUBSCRIBED"))
				l->sel |= LS_SUBSCRIBED;
			else if (sora_str_ieq_c(o->str, "REMOTE"))
				l->sel |= LS_REMOTE;
			else if (sora_str_ieq_c(o->str, "RECURSIVEMATCH"))
				l->sel |= LS_RECURSIVEMATCH;
			else if (sora_str_ieq_c(o->str, "SPECIAL-USE"))
				l->sel |= LS_SPECIALUSE;
			else
				return -1;
			continue;
		}
		if (sora_str_ieq_c(o->str, "SUBSCRIBED")) {
			l->ret |= LR_SUBSCRIBED;
		} else if (sora_str_ieq_c(o->str, "CHILDREN")) {
			l->ret |= LR_CHILDREN;
		} else if (sora_str_ieq_c(o->str, "SPECIAL-USE")) {
			l->ret |= LR_SPECIALUSE;
		} else if (sora_str_ieq_c(o->str, "STATUS") && i + 1 < arg->list_count) {
			l->ret |= LR_STATUS;
			if (status_items_parse(&arg->list[++i], &l->status_items) < 0)
				return -1;
		} else {
			return -1;
		}
	}
	/* RECURSIVEMATCH needs another selection option (RFC 5258 §3). */
	if (selection && (l->sel & LS_RECURSIVEMATCH) && (l->sel & ~(LS_RECURSIVEMATCH | LS_REMOTE)) == 0)
		return -1;
	return 0;
}

static void list_common(struct imap_session *s, const struct sora_imap_command *cmd, bool lsub)
{
	struct list_cmd *l = calloc(1, sizeof(*l));
	size_t a = 0;
	const struct sora_imap_arg *pat;
	const char *bad = "Invalid arguments.";

	if (l == NULL) {
		imap_reply(s, cmd->tag, "NO [UNAVAILABLE] Out of memory.");
		return;
	}
	imap_cmd_init(&l->base, s, cmd, lsub ? "LSUB" : "LIST", list_run);
	l->base.free = list_free;
	l->lsub = lsub;
	if (!lsub && a < cmd->args_count && cmd->args[a].type == SORA_IMAP_ARG_LIST) {
		l->extended = true;
		if (list_options(l, &cmd->args[a], true) < 0) {
			bad = "Invalid LIST selection options.";
			goto bad;
		}
		a++;
	}
	if (a + 2 > cmd->args_count)
		goto bad;
	l->reference = pattern_arg(s, &cmd->args[a++]);
	if (l->reference == NULL)
		goto bad;
	pat = &cmd->args[a++];
	if (pat->type == SORA_IMAP_ARG_LIST && !lsub) {
		l->extended = true;
		for (size_t i = 0; i < pat->list_count; i++) {
			char *p = pattern_arg(s, &pat->list[i]);

			if (p == NULL || list_add_pattern(l, p) < 0) {
				free(p);
				goto bad;
			}
			free(p);
		}
	} else {
		char *p = pattern_arg(s, pat);

		if (p == NULL || list_add_pattern(l, p) < 0) {
			free(p);
			goto bad;
		}
		free(p);
	}
	if (!lsub && a + 2 == cmd->args_count && cmd->args[a].type == SORA_IMAP_ARG_ATOM &&
	    sora_str_ieq_c(cmd->args[a].str, "RETURN") && cmd->args[a + 1].type == SORA_IMAP_ARG_LIST) {
		l->extended = true;
		if (list_options(l, &cmd->args[a + 1], false) < 0) {
			bad = "Invalid LIST return options.";
			goto bad;
		}
		a += 2;
	}
	if (a != cmd->args_count)
		goto bad;
	imap_cmd_submit(s, &l->base);
	return;
bad:
	list_free(&l->base);
	imap_bad(s, cmd->tag, bad);
}

void imap_cmd_list(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	list_common(s, cmd, false);
}

void imap_cmd_lsub(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	list_common(s, cmd, true);
}

/* ---- CREATE / DELETE / RENAME / SUBSCRIBE / UNSUBSCRIBE / STATUS ---- */

enum mbox_op { OP_CREATE, OP_DELETE, OP_RENAME, OP_SUBSCRIBE, OP_UNSUBSCRIBE, OP_STATUS };

struct mbox_cmd {
	struct imap_cmd base;
	enum mbox_op op;
	char name[NAME_SIZE];
	char name2[NAME_SIZE];
	char special_use[SORA_MAILBOX_SPECIAL_USE_SIZE];
	unsigned int status_items;
};

static enum sora_job_status mbox_run(struct imap_cmd *cmd, struct sora_job *job,
				     struct sora_db_conn *db)
{
	struct mbox_cmd *m = (struct mbox_cmd *)cmd;
	struct imap_session *s = cmd->s;
	struct sora_buf out = { 0 };
	int ret = 0;

	switch (m->op) {
	case OP_CREATE:
		ret = sora_mailbox_create(db, s->account_id, m->name,
					  m->special_use[0] ? m->special_use : NULL, NULL, &cmd->err);
		break;
	case OP_DELETE:
		if (s->sel != NULL && strcmp(s->sel->name, m->name) == 0) {
			/* Deleting the selected mailbox: it is deselected
			 * (what Dovecot does), so the session never points at
			 * a mailbox that is gone. */
			sora_job_printf(job, "* OK [CLOSED] Mailbox closed.\r\n");
		}
		ret = sora_mailbox_delete(db, s->account_id, m->name, &cmd->err);
		break;
	case OP_RENAME:
		ret = sora_mailbox_rename(db, s->account_id, m->name, m->name2, &cmd->err);
		break;
	case OP_SUBSCRIBE:
	case OP_UNSUBSCRIBE:
		ret = sora_mailbox_subscribe(db, s->account_id, m->name, m->op == OP_SUBSCRIBE,
					     &cmd->err);
		break;
	case OP_STATUS:
		ret = status_format(s, db, m->name, m->status_items, &out, &cmd->err);
		break;
	}
	if (ret < 0) {
		sora_buf_free(&out);
		imap_job_error(job, cmd, cmd->name, &cmd->err);
		return SORA_JOB_DONE;
	}
	if (imap_sync(cmd, job, db, true) == -2)
		s->state = IMAP_STATE_LOGOUT;
	imap_job_buf(job, &out);
	sora_buf_free(&out);
	sora_job_printf(job, "%s OK %s completed.\r\n", cmd->tag, cmd->name);
	return SORA_JOB_DONE;
}

static void delete_finish(struct imap_cmd *cmd)
{
	struct mbox_cmd *m = (struct mbox_cmd *)cmd;

	if (cmd->s->sel != NULL && strcmp(cmd->s->sel->name, m->name) == 0)
		imap_unselect(cmd->s);
}

static struct mbox_cmd *mbox_new(struct imap_session *s, const struct sora_imap_command *cmd,
				 enum mbox_op op, const char *name, size_t nargs)
{
	struct mbox_cmd *m;
	const char *error = "Invalid arguments.";

	if (cmd->args_count < nargs) {
		imap_bad(s, cmd->tag, "Missing arguments.");
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		imap_reply(s, cmd->tag, "NO [UNAVAILABLE] Out of memory.");
		return NULL;
	}
	imap_cmd_init(&m->base, s, cmd, name, mbox_run);
	m->op = op;
	if (imap_mailbox_arg(s, &cmd->args[0], m->name, sizeof(m->name), &error) < 0) {
		/* A name the store cannot hold is a NO for the operations that
		 * would create it, a BAD syntax error otherwise. */
		struct sora_str raw;

		if (sora_imap_arg_astring(&cmd->args[0], &raw)) {
			imap_reply(s, cmd->tag, "NO [CANNOT] %s", error);
		} else {
			imap_bad(s, cmd->tag, error);
		}
		free(m);
		return NULL;
	}
	return m;
}

void imap_cmd_create(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct mbox_cmd *m;
	struct sora_str raw;
	char trimmed[NAME_SIZE + 1];
	struct sora_imap_arg arg;

	/* A trailing delimiter means "will have children" (RFC 3501
	 * §6.3.3): dropped here, before the name check refuses it. */
	if (cmd->args_count >= 1 && sora_imap_arg_astring(&cmd->args[0], &raw) && raw.len > 1 &&
	    raw.len <= NAME_SIZE && raw.p[raw.len - 1] == SORA_MAILBOX_DELIMITER) {
		struct sora_imap_command c2 = *cmd;
		struct sora_imap_arg *args = malloc(cmd->args_count * sizeof(*args));

		if (args == NULL) {
			imap_reply(s, cmd->tag, "NO [UNAVAILABLE] Out of memory.");
			return;
		}
		memcpy(args, cmd->args, cmd->args_count * sizeof(*args));
		memcpy(trimmed, raw.p, raw.len - 1);
		trimmed[raw.len - 1] = '\0';
		arg = args[0];
		arg.type = SORA_IMAP_ARG_STRING;
		arg.str = sora_str_make(trimmed, raw.len - 1);
		args[0] = arg;
		c2.args = args;
		imap_cmd_create(s, &c2, uid);
		free(args);
		return;
	}
	m = mbox_new(s, cmd, OP_CREATE, "CREATE", 1);
	if (m == NULL)
		return;
	if (cmd->args_count == 2) {
		/* CREATE name (USE (\Sent)) -- RFC 6154 §3 */
		const struct sora_imap_arg *p = &cmd->args[1];
		const char *canon;

		if (p->type != SORA_IMAP_ARG_LIST || p->list_count != 2 ||
		    p->list[0].type != SORA_IMAP_ARG_ATOM || !sora_str_ieq_c(p->list[0].str, "USE") ||
		    p->list[1].type != SORA_IMAP_ARG_LIST || p->list[1].list_count > 1) {
			free(m);
			imap_bad(s, cmd->tag, "Invalid CREATE parameters.");
			return;
		}
		if (p->list[1].list_count == 1) {
			char attr[SORA_MAILBOX_SPECIAL_USE_SIZE];
			struct sora_str a = p->list[1].list[0].str;

			canon = NULL;
			if (a.len < sizeof(attr)) {
				memcpy(attr, a.p, a.len);
				attr[a.len] = '\0';
				canon = sora_mailbox_special_use_canonical(attr);
			}
			if (canon == NULL) {
				free(m);
				imap_reply(s, cmd->tag, "NO [USEATTR] Unsupported special-use attribute.");
				return;
			}
			sora_strlcpy(m->special_use, canon, sizeof(m->special_use));
		}
	} else if (cmd->args_count != 1) {
		free(m);
		imap_bad(s, cmd->tag, "CREATE takes a mailbox name.");
		return;
	}
	imap_cmd_submit(s, &m->base);
}

void imap_cmd_delete(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct mbox_cmd *m;

	if (cmd->args_count != 1) {
		imap_bad(s, cmd->tag, "DELETE takes a mailbox name.");
		return;
	}
	m = mbox_new(s, cmd, OP_DELETE, "DELETE", 1);
	if (m == NULL)
		return;
	m->base.finish = delete_finish;
	imap_cmd_submit(s, &m->base);
}

void imap_cmd_rename(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct mbox_cmd *m;
	const char *error = "Invalid mailbox name.";

	if (cmd->args_count != 2) {
		imap_bad(s, cmd->tag, "RENAME takes two mailbox names.");
		return;
	}
	m = mbox_new(s, cmd, OP_RENAME, "RENAME", 2);
	if (m == NULL)
		return;
	if (imap_mailbox_arg(s, &cmd->args[1], m->name2, sizeof(m->name2), &error) < 0) {
		free(m);
		imap_reply(s, cmd->tag, "NO [CANNOT] %s", error);
		return;
	}
	imap_cmd_submit(s, &m->base);
}

void imap_cmd_subscribe(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct mbox_cmd *m;

	if (cmd->args_count != 1) {
		imap_bad(s, cmd->tag, "SUBSCRIBE takes a mailbox name.");
		return;
	}
	m = mbox_new(s, cmd, OP_SUBSCRIBE, "SUBSCRIBE", 1);
	if (m != NULL)
		imap_cmd_submit(s, &m->base);
}

void imap_cmd_unsubscribe(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct mbox_cmd *m;

	if (cmd->args_count != 1) {
		imap_bad(s, cmd->tag, "UNSUBSCRIBE takes a mailbox name.");
		return;
	}
	m = mbox_new(s, cmd, OP_UNSUBSCRIBE, "UNSUBSCRIBE", 1);
	if (m != NULL)
		imap_cmd_submit(s, &m->base);
}

void imap_cmd_status(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct mbox_cmd *m;
	unsigned int items;

	if (cmd->args_count != 2 || status_items_parse(&cmd->args[1], &items) < 0) {
		imap_bad(s, cmd->tag, "STATUS takes a mailbox name and a list of items.");
		return;
	}
	m = mbox_new(s, cmd, OP_STATUS, "STATUS", 2);
	if (m == NULL)
		return;
	m->status_items = items;
	if (items & ST_HIGHESTMODSEQ)
		imap_condstore_used(s);
	imap_cmd_submit(s, &m->base);
}

/* ---- SELECT / EXAMINE ---- */

struct select_cmd {
	struct imap_cmd base;
	char name[NAME_SIZE];
	bool readonly;
	bool condstore;
	/* QRESYNC parameters (RFC 7162 §3.2.5) */
	bool qresync;
	uint32_t q_uidvalidity;
	uint64_t q_modseq;
	char *q_known_uids;          /* sequence-set text or NULL */
	struct imap_selected *sel;   /* built by run(), installed by finish() */
};

static void select_free(struct imap_cmd *cmd)
{
	struct select_cmd *sc = (struct select_cmd *)cmd;

	if (sc->sel != NULL) {
		free(sc->sel->uids);
		free(sc->sel->name);
		free(sc->sel);
	}
	free(sc->q_known_uids);
	free(sc);
}

/* QRESYNC: what changed since the client's modseq, as VANISHED (EARLIER)
 * and FETCH responses (RFC 7162 §3.2.5.2). */
static int select_qresync(struct select_cmd *sc, struct sora_job *job, struct sora_db_conn *db,
			  struct sora_buf *out)
{
	struct imap_selected *sel = sc->sel;
	struct sora_msgs_changes ch;
	struct sora_imap_seqset known = { 0 };
	const char *error;
	size_t n = 0;

	if (sc->q_uidvalidity != sel->uid_validity)
		return 0;
	if (sc->q_known_uids != NULL &&
	    sora_imap_seqset_parse(sora_str_c(sc->q_known_uids), false, 100000, &known, &error) < 0)
		return 0;
	memset(&ch, 0, sizeof(ch));
	if (sora_msgs_changes(db, sel->mailbox_id, sc->q_modseq, UINT32_MAX, false, &ch,
			      &sc->base.err) < 0) {
		sora_imap_seqset_free(&known);
		return -1;
	}
	for (size_t i = 0; i < ch.expunged.count; i++) {
		uint32_t u = ch.expunged.uids[i];

		if (sc->q_known_uids == NULL || sora_imap_seqset_contains(&known, u, UINT32_MAX))
			ch.expunged.uids[n++] = u;
	}
	if (n > 0) {
		sora_buf_append_str(out, "* VANISHED (EARLIER) ");
		imap_uidset_append(out, ch.expunged.uids, n);
		sora_buf_append_str(out, "\r\n");
	}
	for (size_t i = 0; i < ch.changed_count; i++) {
		const struct sora_msgs_state *st = &ch.changed[i];
		uint32_t seq = imap_seq_of(sel, st->uid);

		if (seq == 0)
			continue;
		sora_buf_printf(out, "* %u FETCH (UID %u FLAGS ", seq, st->uid);
		imap_flags_format(out, st->flags, st->keywords,
				  !sc->base.s->rev2 && sel->first_recent != 0 &&
				  st->uid >= sel->first_recent);
		sora_buf_printf(out, " MODSEQ (%llu))\r\n", (unsigned long long)st->modseq);
		if (out->len > 32768 && imap_job_buf(job, out) < 0)
			break;
	}
	sora_msgs_changes_free(&ch);
	sora_imap_seqset_free(&known);
	return 0;
}

static enum sora_job_status select_run(struct imap_cmd *cmd, struct sora_job *job,
				       struct sora_db_conn *db)
{
	struct select_cmd *sc = (struct select_cmd *)cmd;
	struct imap_session *s = cmd->s;
	struct sora_msgs_open_result r;
	struct sora_buf out = { 0 };
	struct imap_selected *sel;

	memset(&r, 0, sizeof(r));
	if (sora_msgs_open(db, sora_backend()->uid_cache, s->account_id, sc->name, !sc->readonly, &r, &cmd->err) < 0) {
		sora_msgs_open_result_free(&r);
		if (cmd->err.cls == SORA_ERR_NOT_FOUND)
			sora_job_printf(job, "%s NO [NONEXISTENT] Mailbox does not exist.\r\n", cmd->tag);
		else
			imap_job_error(job, cmd, cmd->name, &cmd->err);
		return SORA_JOB_DONE;
	}
	sel = calloc(1, sizeof(*sel));
	if (sel == NULL || (sel->name = strdup(sc->name)) == NULL) {
		free(sel);
		sora_msgs_open_result_free(&r);
		sora_job_printf(job, "%s NO [UNAVAILABLE] Out of memory.\r\n", cmd->tag);
		return SORA_JOB_DONE;
	}
	sc->sel = sel;
	sel->mailbox_id = r.mailbox.id;
	sel->readonly = sc->readonly;
	sel->uid_validity = r.mailbox.uid_validity;
	sel->known_modseq = r.mailbox.highest_modseq;
	sel->known_uid_next = r.mailbox.uid_next;
	sel->uids = r.uids.uids;
	sel->count = sel->cap = r.uids.count;
	r.uids.uids = NULL;
	/* EXAMINE shows the unclaimed \Recent messages without claiming. */
	sel->first_recent = r.first_recent;

	sora_buf_append_str(&out, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft");
	if (r.mailbox.keywords != NULL && r.mailbox.keywords[0] != '\0')
		sora_buf_printf(&out, " %s", r.mailbox.keywords);
	sora_buf_append_str(&out, ")\r\n");
	if (sc->readonly) {
		sora_buf_append_str(&out, "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n");
	} else {
		sora_buf_append_str(&out, "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft");
		if (r.mailbox.keywords != NULL && r.mailbox.keywords[0] != '\0')
			sora_buf_printf(&out, " %s", r.mailbox.keywords);
		sora_buf_append_str(&out, " \\*)] Flags permitted.\r\n");
	}
	sora_buf_printf(&out, "* %zu EXISTS\r\n", sel->count);
	/* IMAP4rev2 has neither RECENT nor the UNSEEN code (RFC 9051 E.). */
	if (!s->rev2)
		sora_buf_printf(&out, "* %u RECENT\r\n", r.recent_count);
	if (r.first_unseen_seq != 0 && !s->rev2)
		sora_buf_printf(&out, "* OK [UNSEEN %u] First unseen.\r\n", r.first_unseen_seq);
	sora_buf_printf(&out, "* OK [UIDVALIDITY %u] UIDs valid\r\n* OK [UIDNEXT %u] Predicted next UID\r\n",
			sel->uid_validity, r.mailbox.uid_next);
	sora_buf_printf(&out, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
			(unsigned long long)r.mailbox.highest_modseq);
	if (sc->qresync && select_qresync(sc, job, db, &out) < 0) {
		sora_buf_free(&out);
		sora_msgs_open_result_free(&r);
		imap_job_error(job, cmd, cmd->name, &cmd->err);
		return SORA_JOB_DONE;
	}
	imap_job_buf(job, &out);
	sora_buf_free(&out);
	sora_msgs_open_result_free(&r);
	sora_job_printf(job, "%s OK [%s] %s completed.\r\n", cmd->tag,
			sc->readonly ? "READ-ONLY" : "READ-WRITE", cmd->name);
	return SORA_JOB_DONE;
}

static void select_finish(struct imap_cmd *cmd)
{
	struct select_cmd *sc = (struct select_cmd *)cmd;
	struct imap_session *s = cmd->s;

	if (sc->sel == NULL)
		return;
	s->sel = sc->sel;
	sc->sel = NULL;
	s->state = IMAP_STATE_SELECTED;
	if (sc->condstore)
		s->condstore = true;
	imap_notify_register(s);
}

static void select_common(struct imap_session *s, const struct sora_imap_command *cmd, bool readonly)
{
	struct select_cmd *sc;
	const char *error = "Invalid mailbox name.";

	if (cmd->args_count < 1 || cmd->args_count > 2) {
		imap_bad(s, cmd->tag, "SELECT takes a mailbox name.");
		return;
	}
	sc = calloc(1, sizeof(*sc));
	if (sc == NULL) {
		imap_reply(s, cmd->tag, "NO [UNAVAILABLE] Out of memory.");
		return;
	}
	imap_cmd_init(&sc->base, s, cmd, readonly ? "EXAMINE" : "SELECT", select_run);
	sc->base.free = select_free;
	sc->base.finish = select_finish;
	sc->readonly = readonly;
	if (cmd->args_count == 2) {
		const struct sora_imap_arg *p = &cmd->args[1];

		if (p->type != SORA_IMAP_ARG_LIST)
			goto bad;
		for (size_t i = 0; i < p->list_count; i++) {
			const struct sora_imap_arg *o = &p->list[i];

			if (o->type == SORA_IMAP_ARG_ATOM && sora_str_ieq_c(o->str, "CONDSTORE")) {
				sc->condstore = true;
			} else if (o->type == SORA_IMAP_ARG_ATOM && sora_str_ieq_c(o->str, "QRESYNC") &&
				   i + 1 < p->list_count && p->list[i + 1].type == SORA_IMAP_ARG_LIST) {
				const struct sora_imap_arg *q = &p->list[++i];
				uint64_t v, m;

				if (!s->qresync) {
					sora_conn_printf(s->c, "%.*s BAD QRESYNC is not enabled.\r\n",
							 (int)cmd->tag.len, cmd->tag.p);
					select_free(&sc->base);
					return;
				}
				if (q->list_count < 2 || q->list[0].type != SORA_IMAP_ARG_ATOM ||
				    q->list[1].type != SORA_IMAP_ARG_ATOM ||
				    sora_str_to_u64(q->list[0].str, UINT32_MAX, &v) < 0 || v == 0 ||
				    sora_str_to_u64(q->list[1].str, INT64_MAX, &m) < 0 || m == 0)
					goto bad;
				sc->qresync = true;
				sc->q_uidvalidity = (uint32_t)v;
				sc->q_modseq = m;
				if (q->list_count >= 3) {
					if (q->list[2].type != SORA_IMAP_ARG_ATOM)
						goto bad;
					sc->q_known_uids = sora_str_dup(q->list[2].str);
				}
			} else {
				goto bad;
			}
		}
	}
	if (imap_mailbox_arg(s, &cmd->args[0], sc->name, sizeof(sc->name), &error) < 0) {
		select_free(&sc->base);
		if (s->sel != NULL) {
			imap_unselect(s);
			sora_conn_printf(s->c, "* OK [CLOSED] Previous mailbox closed.\r\n");
		}
		imap_reply(s, cmd->tag, "NO [NONEXISTENT] %s", error);
		return;
	}
	/* A SELECT deselects first, whether or not it succeeds (RFC 3501
	 * §6.3.1); [CLOSED] tells QRESYNC clients where the old mailbox's
	 * responses end (RFC 7162 §3.2.11). */
	if (s->sel != NULL) {
		imap_unselect(s);
		sora_conn_printf(s->c, "* OK [CLOSED] Previous mailbox closed.\r\n");
	}
	imap_cmd_submit(s, &sc->base);
	return;
bad:
	select_free(&sc->base);
	imap_bad(s, cmd->tag, "Invalid SELECT parameters.");
}

void imap_cmd_select(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	select_common(s, cmd, false);
}

void imap_cmd_examine(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	select_common(s, cmd, true);
}

/* ---- CLOSE / UNSELECT ---- */

static enum sora_job_status close_run(struct imap_cmd *cmd, struct sora_job *job,
				      struct sora_db_conn *db)
{
	struct sora_msgs_uids gone = { 0 };

	/* CLOSE expunges silently (RFC 3501 §6.4.2). */
	if (!cmd->s->sel->readonly &&
	    sora_msgs_expunge(db, cmd->s->sel->mailbox_id, NULL, 0, &gone, NULL, &cmd->err) < 0) {
		imap_job_error(job, cmd, "CLOSE", &cmd->err);
		return SORA_JOB_DONE;
	}
	if (gone.count > 0)
		sora_imap_mailbox_changed(cmd->s->sel->mailbox_id);
	sora_msgs_uids_free(&gone);
	sora_job_printf(job, "%s OK Close completed.\r\n", cmd->tag);
	return SORA_JOB_DONE;
}

static void close_finish(struct imap_cmd *cmd)
{
	imap_unselect(cmd->s);
}

void imap_cmd_close(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct imap_cmd *job;

	if (cmd->args_count != 0) {
		imap_bad(s, cmd->tag, "CLOSE takes no arguments.");
		return;
	}
	job = calloc(1, sizeof(*job));
	if (job == NULL) {
		imap_reply(s, cmd->tag, "NO [UNAVAILABLE] Out of memory.");
		return;
	}
	imap_cmd_init(job, s, cmd, "CLOSE", close_run);
	job->finish = close_finish;
	imap_cmd_submit(s, job);
}

void imap_cmd_unselect(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	if (cmd->args_count != 0) {
		imap_bad(s, cmd->tag, "UNSELECT takes no arguments.");
		return;
	}
	imap_unselect(s);
	imap_reply(s, cmd->tag, "OK Unselect completed.");
}
