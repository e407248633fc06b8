/* The logged-in POP3 session: handler, command table, jobs, listings and
 * QUIT. See pop3.h and pop3-private.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/pop3/pop3-private.h"
#include "backend/pop3/pop3.h"
#include "common/config/config.h"

#define POP3_DB_ACQUIRE_MS 10000
/* A listing goes out in pieces of this size. */
#define LIST_CHUNK (16 * 1024)

static struct pop3_session *sess(struct sora_conn *c)
{
	return sora_conn_data(c);
}

/* ---- memory ---------------------------------------------------------------- */

int pop3_memory_reserve(struct pop3_session *s, uint64_t bytes, const char *op)
{
	return sora_session_memory_reserve(&s->memory, bytes, op);
}

void pop3_memory_release(struct pop3_session *s, uint64_t bytes)
{
	sora_session_memory_release(&s->memory, bytes);
}

/* ---- jobs ------------------------------------------------------------------ */

int pop3_db(struct pop3_cmd *cmd)
{
	if (cmd->db != NULL)
		return 0;
	return sora_db_acquire(sora_backend()->db, SORA_DB_PRIMARY, POP3_DB_ACQUIRE_MS, &cmd->db,
			       &cmd->err);
}

void pop3_job_error(struct sora_job *job, const struct pop3_cmd *cmd, const struct sora_error *err)
{
	sora_warn(sora_conn_log_ctx(cmd->s->c), "%s failed: %s", cmd->name, err->msg);
	if (err->cls == SORA_ERR_TEMPORARY || err->cls == SORA_ERR_ABORTED)
		sora_job_printf(job, "-ERR [SYS/TEMP] %s failed: temporary failure, try again later.\r\n",
				cmd->name);
	else
		sora_job_printf(job, "-ERR [SYS/PERM] %s failed: internal error (logged).\r\n",
				cmd->name);
}

static enum sora_job_status cmd_work(struct sora_job *job, void *arg)
{
	struct pop3_cmd *cmd = arg;
	enum sora_job_status st;

	if (sora_job_cancelled(job))
		return SORA_JOB_DONE;
	st = cmd->run(cmd, job);
	/* A job that waits for the client gives its connection back. */
	sora_db_release(&cmd->db);
	return st;
}

static void cmd_free(struct pop3_cmd *cmd)
{
	if (cmd->free != NULL)
		cmd->free(cmd);
	else
		free(cmd);
}

static void cmd_done(struct sora_conn *c, void *arg)
{
	struct pop3_cmd *cmd = arg;
	struct pop3_session *s = cmd->s;

	s->cmd = NULL;
	if (!sora_conn_closing(c) && cmd->finish != NULL)
		cmd->finish(cmd);
	cmd_free(cmd);
	if (sora_conn_closing(c))
		return;
	if (s->quitting) {
		sora_conn_close(c, SORA_CLOSE_NORMAL);
		return;
	}
	sora_conn_resume(c);
}

void pop3_cmd_submit(struct pop3_session *s, struct pop3_cmd *cmd, const char *name,
		     pop3_run_cb *run)
{
	cmd->s = s;
	cmd->name = name;
	cmd->run = run;
	s->cmd = cmd;
	if (sora_job_submit(s->c, cmd_work, cmd_done, cmd) < 0) {
		s->cmd = NULL;
		sora_conn_printf(s->c, "-ERR [SYS/TEMP] Server busy, try again later.\r\n");
		cmd_free(cmd);
	}
}

/* ---- arguments ----------------------------------------------------------- */

long pop3_msg_arg(struct pop3_session *s, struct sora_str arg)
{
	uint32_t n;

	if (sora_pop3_parse_number(arg, &n) < 0) {
		sora_pop3_front_err(s->c, "Invalid message number.");
		return -1;
	}
	if (n == 0 || n > s->count) {
		sora_pop3_front_err(s->c, "No such message.");
		return -1;
	}
	if (s->msgs[n - 1].deleted) {
		sora_pop3_front_err(s->c, "Message %u already deleted.", n);
		return -1;
	}
	return (long)n - 1;
}

static bool args_between(struct pop3_session *s, const struct sora_pop3_command *cmd, size_t lo,
			 size_t hi)
{
	if (cmd->args_count < lo || cmd->args_count > hi) {
		sora_pop3_front_err(s->c, lo == hi && lo == 0 ? "This command takes no arguments."
							      : "Wrong number of arguments.");
		return false;
	}
	return true;
}

/* ---- simple commands ------------------------------------------------------ */

static void cmd_stat(struct pop3_session *s, const struct sora_pop3_command *cmd)
{
	if (!args_between(s, cmd, 0, 0))
		return;
	sora_conn_printf(s->c, "+OK %zu %" PRIu64 "\r\n", s->count - s->deleted_count,
			 s->total_octets - s->deleted_octets);
}

static void cmd_noop(struct pop3_session *s, const struct sora_pop3_command *cmd)
{
	if (args_between(s, cmd, 0, 0))
		sora_conn_printf(s->c, "+OK\r\n");
}

static void cmd_dele(struct pop3_session *s, const struct sora_pop3_command *cmd)
{
	long i;

	if (!args_between(s, cmd, 1, 1) || (i = pop3_msg_arg(s, cmd->args[0])) < 0)
		return;
	s->msgs[i].deleted = true;
	s->deleted_count++;
	s->deleted_octets += s->msgs[i].size;
	sora_conn_printf(s->c, "+OK Message %ld deleted.\r\n", i + 1);
}

static void cmd_rset(struct pop3_session *s, const struct sora_pop3_command *cmd)
{
	if (!args_between(s, cmd, 0, 0))
		return;
	for (size_t i = 0; i < s->count; i++)
		s->msgs[i].deleted = false;
	s->deleted_count = 0;
	s->deleted_octets = 0;
	sora_conn_printf(s->c, "+OK Maildrop has %zu messages (%" PRIu64 " octets).\r\n", s->count,
			 s->total_octets);
}

static void cmd_capa(struct pop3_session *s, const struct sora_pop3_command *cmd)
{
	sora_pop3_front_capa(s->c);
}

static void cmd_already(struct pop3_session *s, const struct sora_pop3_command *cmd)
{
	sora_pop3_front_err(s->c, "Already logged in.");
}

/* ---- LIST and UIDL ---------------------------------------------------------- */

struct list_cmd {
	struct pop3_cmd base;
	bool uidl;
	size_t next;
};

static enum sora_job_status list_run(struct pop3_cmd *cmd, struct sora_job *job)
{
	struct list_cmd *l = (struct list_cmd *)cmd;
	struct pop3_session *s = cmd->s;
	char chunk[LIST_CHUNK + 64];
	size_t n = 0;

	while (l->next < s->count) {
		const struct pop3_msg *m = &s->msgs[l->next];

		if (!m->deleted) {
			int w = l->uidl ? snprintf(chunk + n, 64, "%zu %u\r\n", l->next + 1, m->uid)
					: snprintf(chunk + n, 64, "%zu %" PRIu64 "\r\n", l->next + 1, m->size);

			n += (size_t)w;
		}
		l->next++;
		if (n >= LIST_CHUNK) {
			if (sora_job_write(job, chunk, n) < 0)
				return SORA_JOB_DONE;
			n = 0;
			if (l->next < s->count && sora_job_output_full(job))
				return SORA_JOB_MORE;
		}
	}
	memcpy(chunk + n, ".\r\n", 3);
	sora_job_write(job, chunk, n + 3);
	return SORA_JOB_DONE;
}

static void cmd_list(struct pop3_session *s, const struct sora_pop3_command *cmd, bool uidl)
{
	struct list_cmd *l;
	long i;

	if (!args_between(s, cmd, 0, 1))
		return;
	if (cmd->args_count == 1) {
		if ((i = pop3_msg_arg(s, cmd->args[0])) < 0)
			return;
		if (uidl)
			sora_conn_printf(s->c, "+OK %ld %u\r\n", i + 1, s->msgs[i].uid);
		else
			sora_conn_printf(s->c, "+OK %ld %" PRIu64 "\r\n", i + 1, s->msgs[i].size);
		return;
	}
	if (uidl)
		sora_conn_printf(s->c, "+OK Unique-ID listing follows.\r\n");
	else
		sora_conn_printf(s->c, "+OK %zu messages (%" PRIu64 " octets)\r\n",
				 s->count - s->deleted_count, s->total_octets - s->deleted_octets);
	if (s->count - s->deleted_count <= 64) {
		/* A short listing needs no job. */
		for (size_t k = 0; k < s->count; k++) {
			if (s->msgs[k].deleted)
				continue;
			if (uidl)
				sora_conn_printf(s->c, "%zu %u\r\n", k + 1, s->msgs[k].uid);
			else
				sora_conn_printf(s->c, "%zu %" PRIu64 "\r\n", k + 1, s->msgs[k].size);
		}
		sora_conn_printf(s->c, ".\r\n");
		return;
	}
	l = calloc(1, sizeof(*l));
	if (l == NULL) {
		/* The +OK is out: end the listing rather than leave it open. */
		sora_conn_printf(s->c, ".\r\n");
		return;
	}
	l->uidl = uidl;
	pop3_cmd_submit(s, &l->base, uidl ? "UIDL" : "LIST", list_run);
}

static void cmd_list_h(struct pop3_session *s, const struct sora_pop3_command *cmd)
{
	cmd_list(s, cmd, false);
}

static void cmd_uidl_h(struct pop3_session *s, const struct sora_pop3_command *cmd)
{
	cmd_list(s, cmd, true);
}

/* ---- QUIT: the UPDATE state ------------------------------------------------- */

static enum sora_job_status quit_run(struct pop3_cmd *cmd, struct sora_job *job)
{
	struct pop3_session *s = cmd->s;
	size_t expunged = 0;

	if (pop3_maildrop_update(cmd, &expunged) < 0) {
		sora_warn(sora_conn_log_ctx(s->c), "QUIT: update failed: %s", cmd->err.msg);
		sora_job_printf(job, "-ERR [SYS/TEMP] Some deleted messages were not removed, "
				"try again later.\r\n");
		return SORA_JOB_DONE;
	}
	if (s->deleted_count > 0)
		sora_info(sora_conn_log_ctx(s->c), "QUIT: %zu messages deleted (%zu expunged now)",
			  s->deleted_count, expunged);
	sora_job_printf(job, "+OK Sora POP3 server signing off (%zu messages deleted).\r\n",
			s->deleted_count);
	return SORA_JOB_DONE;
}

static void cmd_quit(struct pop3_session *s, const struct sora_pop3_command *cmd)
{
	struct pop3_cmd *q = calloc(1, sizeof(*q));

	s->quitting = true;
	if (q == NULL) {
		sora_conn_printf(s->c, "-ERR [SYS/TEMP] Out of memory: nothing was deleted.\r\n");
		sora_conn_close(s->c, SORA_CLOSE_ERROR);
		return;
	}
	pop3_cmd_submit(s, q, "QUIT", quit_run);
	if (s->cmd == NULL)
		sora_conn_close(s->c, SORA_CLOSE_ERROR);
}

/* ---- dispatch ------------------------------------------------------------- */

struct pop3_command_def {
	const char *name;
	void (*handler)(struct pop3_session *s, const struct sora_pop3_command *cmd);
};

static const struct pop3_command_def commands[] = {
	{ "STAT", cmd_stat },
	{ "LIST", cmd_list_h },
	{ "UIDL", cmd_uidl_h },
	{ "RETR", pop3_cmd_retr },
	{ "TOP", pop3_cmd_top },
	{ "DELE", cmd_dele },
	{ "NOOP", cmd_noop },
	{ "RSET", cmd_rset },
	{ "QUIT", cmd_quit },
	{ "CAPA", cmd_capa },
	{ "USER", cmd_already },
	{ "PASS", cmd_already },
	{ "AUTH", cmd_already },
	{ "APOP", cmd_already },
	{ "STLS", cmd_already },
	{ "XCLIENT", cmd_already },
};

static bool ev_command(struct sora_conn *c, const struct sora_pop3_command *cmd)
{
	struct pop3_session *s = sess(c);

	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (!sora_str_ieq_c(cmd->name, commands[i].name))
			continue;
		sora_pop3_front_ok_command(c);
		commands[i].handler(s, cmd);
		return s->cmd == NULL && !s->quitting && !sora_conn_closing(c);
	}
	return sora_pop3_front_err(c, "Unknown command.");
}

static const struct sora_pop3_events session_events = {
	.command = ev_command,
};

static size_t session_input(struct sora_conn *c, const char *data, size_t len)
{
	struct pop3_session *s = sess(c);

	if (!s->transaction)
		return sora_pop3_front_input(c, data, len);
	return sora_pop3_front_feed(c, data, len, &session_events);
}

/* ---- login -> TRANSACTION --------------------------------------------------- */

static enum sora_job_status open_run(struct pop3_cmd *cmd, struct sora_job *job)
{
	struct pop3_session *s = cmd->s;
	int r = pop3_maildrop_open(cmd);

	if (r == 1) {
		sora_info(sora_conn_log_ctx(s->c), "maildrop locked by another POP3 session");
		sora_job_printf(job, "-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n");
		return SORA_JOB_DONE;
	}
	if (r < 0) {
		sora_warn(sora_conn_log_ctx(s->c), "cannot open the maildrop: %s", cmd->err.msg);
		if (cmd->err.cls == SORA_ERR_LIMIT)
			sora_job_printf(job, "-ERR [SYS/PERM] The mailbox listing exceeds the session "
					"memory limit (session_memory_limit).\r\n");
		else
			sora_job_printf(job, "-ERR [SYS/TEMP] Cannot open the mailbox, try again later.\r\n");
		return SORA_JOB_DONE;
	}
	s->transaction = true;
	sora_job_printf(job, "+OK Logged in, %zu messages (%" PRIu64 " octets).\r\n", s->count,
			s->total_octets);
	return SORA_JOB_DONE;
}

static void open_finish(struct pop3_cmd *cmd)
{
	if (!cmd->s->transaction)
		sora_pop3_front_unauthenticated(cmd->s->c);
}

static void authenticated(struct sora_conn *c, const struct sora_login *login)
{
	struct pop3_session *s = sess(c);
	struct pop3_cmd *cmd = calloc(1, sizeof(*cmd));

	s->account_id = login->account_id;
	sora_strlcpy(s->user, login->user, sizeof(s->user));
	if (cmd == NULL) {
		sora_conn_printf(c, "-ERR [SYS/TEMP] Out of memory.\r\n");
		sora_conn_close(c, SORA_CLOSE_ERROR);
		return;
	}
	cmd->finish = open_finish;
	pop3_cmd_submit(s, cmd, "login", open_run);
	if (s->cmd == NULL) {
		sora_pop3_front_unauthenticated(c);
		sora_conn_resume(c);
	}
}

static struct sora_db_pool *backend_pool(void)
{
	struct sora_backend *be = sora_backend();

	return be != NULL ? be->db : NULL;
}

static const struct sora_pop3_front_ops backend_ops = {
	.db = backend_pool,
	.authenticated = authenticated,
};

/* ---- life cycle ------------------------------------------------------------ */

static void session_open(struct sora_conn *c)
{
	struct pop3_session *s;

	if (!sora_pop3_front_open(c, &backend_ops, sizeof(struct pop3_session)))
		return;
	s = sess(c);
	s->c = c;
	sora_session_memory_init(&s->memory, "pop3", sora_conn_server(c)->session_memory_limit);
}

static void session_close(struct sora_conn *c, enum sora_close_reason why)
{
	struct pop3_session *s = sess(c);

	if (s == NULL)
		return;
	if (s->locked)
		pop3_maildrop_abandon(s);
	if (s->account_id != 0)
		sora_session_memory_close(&s->memory, sora_conn_log_ctx(c));
	pop3_maildrop_free(s);
	sora_pop3_front_close(c);
	sora_preauth_close(c, why);
}

const struct sora_conn_handler sora_pop3_handler = {
	.protocol = "pop3",
	/* The parser consumes input as it arrives (it keeps one line); this
	 * only bounds what piles up while a job runs or output is blocked. */
	.max_pending_input = 64 * 1024,
	.open = session_open,
	.input = session_input,
	.input_overflow = sora_pop3_front_overflow,
	.reject = sora_pop3_front_reject,
	.farewell = sora_pop3_front_farewell,
	.close = session_close,
};
