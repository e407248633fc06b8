/* Internals of the backend IMAP server, shared by its files:
 * imap-session.c (handler, dispatch, untagged updates, IDLE),
 * imap-notify.c (LISTEN fan-out), imap-mailbox.c (mailbox commands,
 * SELECT), imap-fetch.c (FETCH), imap-msgs.c (STORE, EXPUNGE, COPY, MOVE,
 * SEARCH), imap-sort.c (SORT) and imap-append.c (APPEND).
 *
 * Commands: one table entry per command name (Dovecot's cmd-*.c
 * registered in one table). A handler runs on the loop thread with the
 * parsed command. Anything that touches the database or the blob store is
 * a job (struct imap_cmd): run() executes on a worker with a database
 * connection and writes the replies; it may return SORA_JOB_MORE after
 * saving its position when the client's output is full (FETCH). While a
 * job runs the loop thread does not touch the session, so run() owns it.
 *
 * Thread safety: loop thread, except imap_cmd.run (worker, exclusive). */
#ifndef SORA_BACKEND_IMAP_PRIVATE_H
#define SORA_BACKEND_IMAP_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/imap/imap.h"
#include "backend/session/session-memory.h"
#include "backend/store/messages.h"
#include "backend/store/search.h"
#include "common/core/buf.h"
#include "common/core/error.h"
#include "common/db/db.h"
#include "common/net/conn.h"
#include "common/net/workers.h"
#include "common/proto/imap-parser.h"
#include "common/proto/imap-search.h"
#include "common/session/imap-front.h"

/* RFC 5267 CONTEXT=SEARCH: at most this many SEARCH ... RETURN (UPDATE)
 * results are kept up to date per session (the RFC asks for at least
 * one); past it a search is answered without updates and an untagged
 * "NO [NOUPDATE "tag"]". */
#define IMAP_SEARCH_CONTEXTS_MAX 8

/* One updating search context (imap-context.c). */
struct imap_search_ctx {
	struct imap_search_ctx *next;
	char tag[128];               /* the searching command's tag */
	bool uid;                    /* UID SEARCH: updates carry UIDs */
	struct sora_imap_search_program prog;  /* owned */
	/* The result as the client knows it: ascending UIDs, each in the
	 * session's sequence map. */
	uint32_t *uids;
	size_t count, cap;
};

/* The selected mailbox as this session sees it. */
struct imap_selected {
	int64_t mailbox_id;
	char *name;                  /* normalised UTF-8 */
	bool readonly;               /* EXAMINE */
	uint32_t uid_validity;
	/* What the session has reported: changes after these are sent by the
	 * next sync. */
	uint64_t known_modseq;
	uint32_t known_uid_next;
	/* Sequence map: sequence n is uids[n - 1]. */
	uint32_t *uids;
	size_t count, cap;
	/* UIDs >= first_recent are \Recent in this session (0: none). */
	uint32_t first_recent;
	/* SEARCHRES: the saved result, ascending UIDs. */
	uint32_t *saved;
	size_t saved_count;
	/* Modseqs this session's own changes took since the last sync: those
	 * changes were reported already, so the sync skips them. */
	uint64_t own[32];
	size_t own_count;
	/* Registered for change notifications (imap-notify.c). */
	bool registered;
	/* CONTEXT=SEARCH: the updating searches (owned list) and the UIDs
	 * this session's own commands changed since the last evaluation
	 * (the sync skips those, see own[]). */
	struct imap_search_ctx *contexts;
	size_t context_count;
	uint32_t *ctx_touched;
	size_t ctx_touched_count, ctx_touched_cap;
};

enum imap_state {
	IMAP_STATE_AUTH = 1,         /* logged in, nothing selected */
	IMAP_STATE_SELECTED,
	IMAP_STATE_LOGOUT,
};

struct imap_session {
	struct sora_imap_front front;   /* first: the front end's view */
	struct sora_conn *c;
	struct sora_conn_key key;
	enum imap_state state;
	int64_t account_id;
	char user[SORA_IMAP_LOGIN_SIZE];
	/* ENABLE (RFC 5161) */
	bool condstore;              /* CONDSTORE enabled, or a CONDSTORE-using command */
	/* A command just turned CONDSTORE on while a mailbox is selected:
	 * the job first sends "* OK [HIGHESTMODSEQ n]" (RFC 7162 §3.1). */
	bool announce_modseq;
	bool qresync;
	bool utf8;                   /* UTF8=ACCEPT (also implied by IMAP4rev2) */
	/* ENABLE IMAP4rev2 (RFC 9051): no \Recent, SEARCH answers with
	 * ESEARCH, mailbox names in UTF-8. */
	bool rev2;
	struct imap_selected *sel;
	/* Set from any thread (posts) when the selected mailbox changed;
	 * read and cleared by the job that syncs. Atomic. */
	int dirty;
	/* IDLE */
	bool idling;
	char idle_tag[64];
	bool idle_sync_running;
	/* The running command job, if any (for the loop's bookkeeping). */
	struct imap_cmd *cmd;
	/* APPEND in progress (imap-append.c), or NULL. */
	struct imap_append *append;
	/* Consecutive BAD replies since the last good command. */
	int bad_streak;
	/* session_memory_limit: what FETCH and SEARCH hold in memory is
	 * reserved here before it is allocated. */
	struct sora_session_memory memory;
};

struct imap_cmd;
typedef enum sora_job_status imap_run_cb(struct imap_cmd *cmd, struct sora_job *job,
					struct sora_db_conn *db);
typedef void imap_cmd_cb(struct imap_cmd *cmd);

/* One command executed as a job. Commands embed it first in their own
 * state struct and set run/finish/free. */
struct imap_cmd {
	struct imap_session *s;
	char tag[128];
	const char *name;            /* static, for logs */
	bool uid;                    /* UID variant */
	imap_run_cb *run;            /* worker */
	imap_cmd_cb *finish;         /* loop thread, after run returned DONE (may be NULL) */
	imap_cmd_cb *free;           /* loop thread; NULL: free(cmd) */
	enum sora_db_target target;  /* which pool connection run() needs */
	struct sora_error err;       /* for run()'s own use */
};

struct imap_command_def {
	const char *name;
	/* States the command is valid in (bits of 1 << enum imap_state). */
	unsigned int states;
	/* Handler on the loop thread; it answers or submits a job. */
	void (*handler)(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
	/* Allowed after UID. */
	bool uid_ok;
};

#define IMAP_ST_AUTH (1u << IMAP_STATE_AUTH)
#define IMAP_ST_SEL (1u << IMAP_STATE_SELECTED)
#define IMAP_ST_ANY (IMAP_ST_AUTH | IMAP_ST_SEL)

/* ---- imap-session.c ---- */

/* Submits cmd (allocated by the caller, tag and callbacks set). On failure
 * answers NO and frees it. */
void imap_cmd_submit(struct imap_session *s, struct imap_cmd *cmd);
/* Fills the common part of a command. */
void imap_cmd_init(struct imap_cmd *cmd, struct imap_session *s,
		   const struct sora_imap_command *pc, const char *name, imap_run_cb *run);
/* Loop: BAD for a command, counted; false when that ended the session. */
bool imap_bad(struct imap_session *s, struct sora_str tag, const char *msg);
void imap_reply(struct imap_session *s, struct sora_str tag, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Worker: the tagged reply for an error of the store layers, by class. */
void imap_job_error(struct sora_job *job, const struct imap_cmd *cmd, const char *what,
		    const struct sora_error *err);
/* Worker: sends what changed in the selected mailbox (EXPUNGE/VANISHED
 * only when allow_expunge), updating the sequence map. 0, or -1 with
 * cmd->err set. */
int imap_sync(struct imap_cmd *cmd, struct sora_job *job, struct sora_db_conn *db,
	      bool allow_expunge);
/* Loop: a command uses CONDSTORE (MODSEQ, CHANGEDSINCE, UNCHANGEDSINCE). */
void imap_condstore_used(struct imap_session *s);
/* Whether uid is \Recent in this session (never under IMAP4rev2). */
bool imap_recent(const struct imap_session *s, uint32_t uid);
/* Appends the logged-in capability list. */
void imap_capabilities(struct imap_session *s, struct sora_buf *out);
/* Sequence set -> UIDs of the selected mailbox (ascending, unique):
 * is_uid chooses UID or sequence semantics. Returns 0, or -1 with *error_r
 * (a BAD text) for an invalid set. A sequence number past the end is an
 * error (RFC 9051 §6.4.8: "BAD"); UIDs that do not exist are skipped. */
int imap_seqset_uids(struct imap_selected *sel, const struct sora_imap_arg *arg, bool is_uid,
		     uint32_t **uids_r, size_t *count_r, const char **error_r);
/* Records a modseq taken by this session's own change (see own[]). */
void imap_own_modseq(struct imap_selected *sel, uint64_t modseq);
/* Appends a sorted UID list as a compact set ("1:3,7"). */
void imap_uidset_append(struct sora_buf *out, const uint32_t *v, size_t n);
/* Sequence number of uid in the map, 0 if absent. */
uint32_t imap_seq_of(const struct imap_selected *sel, uint32_t uid);
/* Flag list formatting: "(\Seen \Flagged $Junk)" appended to out; recent
 * adds \Recent. */
void imap_flags_format(struct sora_buf *out, unsigned int flags, const char *keywords, bool recent);
/* Parses a flag list argument (a list, or for STORE also a single atom):
 * system flags into *flags_r, keywords into kw (space separated). -1 with
 * *error_r for an invalid flag (\Recent and unknown \ flags refused). */
int imap_flags_parse(const struct sora_imap_arg *arg, bool allow_single, unsigned int *flags_r,
		     struct sora_buf *kw, const char **error_r);
/* Mailbox name argument -> normalised UTF-8 (mUTF-7 decoded unless the
 * session enabled UTF8=ACCEPT). -1 with *error_r. */
int imap_mailbox_arg(struct imap_session *s, const struct sora_imap_arg *arg, char *out,
		     size_t size, const char **error_r);
/* Appends a mailbox name as an IMAP string (mUTF-7 unless UTF8=ACCEPT). */
void imap_mailbox_write(struct imap_session *s, struct sora_buf *out, const char *name);
/* Leaves the selected state (CLOSE, UNSELECT, SELECT of another). */
void imap_unselect(struct imap_session *s);
/* Job-side write helpers. */
int imap_job_buf(struct sora_job *job, struct sora_buf *b);

/* ---- imap-notify.c ---- */
void imap_notify_register(struct imap_session *s);
void imap_notify_unregister(struct imap_session *s);
/* Loop: a posted change arrived for this session. */
void imap_session_changed(struct imap_session *s);

/* ---- imap-context.c: CONTEXT=SEARCH (RFC 5267 §4) ---- */
/* The context of tag, or NULL. */
struct imap_search_ctx *imap_ctx_find(const struct imap_selected *sel, const char *tag);
/* Worker: keeps prog (moved: *prog is zeroed) and the initial result
 * (uids, ascending, all in the map; copied) as an updating context. 0, or
 * -1 when out of memory (nothing kept, *prog left alone). */
int imap_ctx_add(struct imap_selected *sel, const char *tag, bool uid,
		 struct sora_imap_search_program *prog, const uint32_t *uids, size_t n);
/* Frees every context (unselect). */
void imap_ctx_free_all(struct imap_selected *sel);
/* Worker: this session's own command changed the flags of uids: they are
 * evaluated again at the next imap_sync (no-op without contexts). */
void imap_ctx_touch(struct imap_selected *sel, const uint32_t *uids, size_t n);
/* Worker: uids (any order) are about to be reported expunged: appends the
 * REMOVEFROM responses (sequence numbers still valid, RFC 5267 §4.3.4)
 * to out and drops them from the contexts. Call before the map changes. */
void imap_ctx_expunged(struct imap_session *s, struct sora_buf *out, const uint32_t *uids,
		       size_t n);
/* Worker: the messages cand (ascending, may be empty) and the touched
 * ones may have entered or left some result: runs each context's program
 * over them and appends ADDTO / REMOVEFROM to out. Call after EXISTS for
 * new messages (RFC 5267 §4.3.3). 0, or -1 with cmd->err set. */
int imap_ctx_evaluate(struct imap_cmd *cmd, struct sora_db_conn *db, struct sora_buf *out,
		      const uint32_t *cand, size_t n);
void imap_cmd_cancelupdate(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);

/* ---- command handlers ---- */
void imap_cmd_list(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_lsub(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_create(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_delete(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_rename(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_subscribe(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_unsubscribe(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_status(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_select(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_examine(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_close(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_unselect(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_fetch(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_store(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_expunge(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_copy(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_move(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_search(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
/* Loop: the search rate limit (search_rate_limit_per_min, imap-search-rate.h)
 * for one SEARCH-like command (SEARCH, SORT, THREAD): true when it may run;
 * false after answering "NO [LIMIT] Too many searches ...: try again in N
 * seconds." */
bool imap_search_allowed(struct imap_session *s, struct sora_str tag);
/* Loop, for SEARCH-like commands (SEARCH, SORT) after parsing into cmd:
 * answers a parse failure r (NO [BADCHARSET] or BAD with error), freeing
 * cmd, and returns false; true when the command parsed. */
bool imap_search_parsed(struct imap_session *s, struct imap_cmd *cmd, struct sora_str tag, int r,
			const char *error);
/* Loop: the search rate limit (cmd freed when refused), CONDSTORE when the
 * program uses MODSEQ, then submits cmd. */
void imap_search_submit(struct imap_session *s, struct imap_cmd *cmd, struct sora_str tag,
			bool has_modseq);
/* What a SEARCH-like command of the selected mailbox sees: its UIDs, $
 * (SEARCHRES), \Recent, and no UID above the last one the session knows. */
struct sora_search_view imap_search_view(const struct imap_selected *sel);
/* Memory of a SEARCH or SORT (session_memory_limit), reserved before the
 * query: per result row, PostgreSQL's copy of the row (four short text
 * values), the UID and its share of the response line; plus the SQL text
 * and its parameters, which the command's own size bounds. */
#define SEARCH_ROW_BYTES 112
#define SEARCH_FIXED_BYTES (16 * 1024)
/* Worker: answers "NO [LIMIT] <what> would exceed the session memory
 * limit ..." and logs it. */
void imap_search_memory_refused(struct sora_job *job, struct imap_cmd *cmd, const char *what);
/* imap-sort.c: SORT, ESORT, SORT=DISPLAY */
void imap_cmd_sort(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);
void imap_cmd_append(struct imap_session *s, const struct sora_imap_command *cmd, bool uid);

/* ---- imap-append.c: literals of APPEND stream to staging ---- */
/* A literal was announced in the command parsed so far: APPEND decides
 * (TOOBIG before any byte is read, or "+ OK"); other commands get "+ OK"
 * for a synchronising one. False when input must stop. */
bool imap_append_literal(struct imap_session *s, const struct sora_imap_command *partial,
			 const struct sora_imap_literal_info *lit);
/* Bytes of a streamed literal. False when input must stop. */
bool imap_append_data(struct imap_session *s, struct sora_str chunk);
/* Drops a half-received APPEND (parse error, close). */
void imap_append_abort(struct imap_session *s);

#endif
