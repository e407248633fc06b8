/* Internals of the backend POP3 server, shared by its files:
 * pop3-session.c (handler, command table, jobs, listings, QUIT),
 * pop3-maildrop.c (opening the INBOX with its lock, the UPDATE state,
 * releasing the lock) and pop3-retr.c (RETR and TOP).
 *
 * Commands: one table entry per command (as backend/imap does). A handler
 * runs on the loop thread with the parsed command. Anything that touches
 * the database or the blob store, or may write more than a little, is a
 * job (struct pop3_cmd): run() executes on a worker and writes the reply;
 * it may return SORA_JOB_MORE after saving its position when the client's
 * output is full (RETR, TOP, LIST, UIDL). While a job runs the loop
 * thread does not touch the session, so run() owns it.
 *
 * Memory (session_memory_limit): the session counts what it holds for
 * the client -- the maildrop listing for the whole session, and the
 * encoder and read buffers of a running RETR/TOP -- in memory/peak;
 * pop3_memory_reserve() refuses what would pass the limit.
 *
 * Thread safety: loop thread, except pop3_cmd.run (worker, exclusive). */
#ifndef SORA_BACKEND_POP3_PRIVATE_H
#define SORA_BACKEND_POP3_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/session/session-memory.h"
#include "common/core/error.h"
#include "common/db/db.h"
#include "common/net/conn.h"
#include "common/net/workers.h"
#include "common/proto/pop3.h"
#include "common/session/pop3-front.h"

/* A message of the maildrop, in UID order; message number n is msgs[n-1]. */
struct pop3_msg {
	uint32_t uid;
	bool deleted;            /* DELE in this session (undone by RSET) */
	bool retrieved;          /* RETR sent it whole: \Seen at QUIT */
	uint64_t size;           /* messages.pop3_size */
};

/* Content hashes of a window of messages, read with one query when RETR
 * or TOP first needs one of them (the listing does not carry them: 50,000
 * hashes would be 3 MB read at every login). */
#define POP3_HASH_WINDOW 100

struct pop3_session {
	struct sora_pop3_front front;     /* first: the front end's view */
	struct sora_conn *c;
	int64_t account_id;
	char user[SORA_LOGIN_NAME_SIZE];
	bool transaction;                 /* the maildrop is open */
	bool locked;                      /* this session holds pop3_locks */
	char lock_owner[128];
	int64_t mailbox_id;
	struct pop3_msg *msgs;
	size_t count;
	size_t deleted_count;
	uint64_t total_octets, deleted_octets;
	/* The hash window: msgs[hash_first .. hash_first + hash_count). */
	size_t hash_first, hash_count;
	char (*hashes)[65];
	/* The running command job, if any. */
	struct pop3_cmd *cmd;
	bool quitting;                    /* QUIT answered: close after the job */
	struct sora_session_memory memory; /* session_memory_limit */
};

struct pop3_cmd;
typedef enum sora_job_status pop3_run_cb(struct pop3_cmd *cmd, struct sora_job *job);
typedef void pop3_cmd_cb(struct pop3_cmd *cmd);

/* One command executed as a job. Commands embed it first in their own
 * state struct. run() acquires a database connection itself when it
 * needs one (pop3_db). */
struct pop3_cmd {
	struct pop3_session *s;
	const char *name;                 /* static, for logs */
	pop3_run_cb *run;                 /* worker */
	pop3_cmd_cb *finish;              /* loop thread, after DONE (may be NULL) */
	pop3_cmd_cb *free;                /* loop thread; NULL: free(cmd) */
	struct sora_db_conn *db;          /* held by run() between calls: never across MORE */
	struct sora_error err;
};

/* ---- pop3-session.c ---- */
/* Submits cmd (allocated by the caller, callbacks set); answers -ERR and
 * frees it when the pool refuses. */
void pop3_cmd_submit(struct pop3_session *s, struct pop3_cmd *cmd, const char *name,
		     pop3_run_cb *run);
/* Worker: a database connection for the running job (released when run()
 * returns). 0, or -1 with cmd->err set. */
int pop3_db(struct pop3_cmd *cmd);
/* Worker: the -ERR reply for an error of the store layers. */
void pop3_job_error(struct sora_job *job, const struct pop3_cmd *cmd, const struct sora_error *err);
/* Message number argument -> index in msgs; answers -ERR (counted) and
 * returns -1 when it is not a live message of the maildrop. */
long pop3_msg_arg(struct pop3_session *s, struct sora_str arg);
/* Session memory accounting (see above): 0, or -1 when bytes would pass
 * session_memory_limit (nothing is counted then; the refusal is counted
 * under op, a static string: "login", "retr", "top"). */
int pop3_memory_reserve(struct pop3_session *s, uint64_t bytes, const char *op);
void pop3_memory_release(struct pop3_session *s, uint64_t bytes);

/* ---- pop3-maildrop.c ---- */
/* Worker: takes the maildrop lock and reads the INBOX listing (computing
 * missing sizes). 0; 1 when another session holds the lock ([IN-USE]); -1
 * with cmd->err set. */
int pop3_maildrop_open(struct pop3_cmd *cmd);
/* Worker: the UPDATE state -- expunges the deleted messages, sets \Seen
 * on the retrieved ones, releases the lock. expunged_r: how many deleted
 * messages were still there to expunge. 0, or -1 with cmd->err set. */
int pop3_maildrop_update(struct pop3_cmd *cmd, size_t *expunged_r);
/* Worker: the content hash of msgs[index] (reading the window around it
 * when needed). NULL with cmd->err set. */
const char *pop3_maildrop_hash(struct pop3_cmd *cmd, size_t index);
/* Loop: the session ends without UPDATE; releases the lock in the
 * background. */
void pop3_maildrop_abandon(struct pop3_session *s);
/* Frees the listing. */
void pop3_maildrop_free(struct pop3_session *s);

/* ---- pop3-retr.c ---- */
void pop3_cmd_retr(struct pop3_session *s, const struct sora_pop3_command *cmd);
void pop3_cmd_top(struct pop3_session *s, const struct sora_pop3_command *cmd);

#endif
