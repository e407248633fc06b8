/* The worker pool bridge (DESIGN.md §4).
 *
 * Blocking work (libpq queries, S3 requests, password hashing, fsync) runs
 * on a bounded pool of worker threads. A protocol handler turns a command
 * into a job: sora_job_submit() on the loop thread pauses the connection's
 * input and queues the job; its work function runs on a worker and writes
 * its response with sora_job_write(); done() runs back on the loop thread
 * once all of that output has been handed to the connection, and the
 * handler typically resumes input there. One job at a time per connection
 * keeps per-session ordering without locks.
 *
 * Nobody waits on a client. sora_job_write() never blocks: output collects
 * in the job and the loop moves it into the connection while the
 * connection is below its high-water mark. A job with a lot to send checks
 * sora_job_output_full() and, when it is true, returns SORA_JOB_MORE after
 * saving its position in its own state (message, section, offset): the
 * worker thread, and any database connection the job released, go back to
 * the pool, and the job is queued again once the client has read enough
 * (Dovecot's commands resume on flush the same way). A slow or stalled
 * reader therefore holds memory up to the high-water mark plus one slice,
 * and no thread.
 *
 * Close during a job: if the client disconnects, sora_job_write() returns
 * -1 and sora_job_cancelled() turns true; the job should stop early. A job
 * waiting for the client to read (after SORA_JOB_MORE) is not run again.
 * Either way done() runs exactly once, on the loop thread, with the
 * connection closing but its memory valid, and only after that does the
 * framework call the handler's close(): done() and close() never race
 * with work().
 *
 * Background work without a connection (the uploader, cache eviction) uses
 * sora_work_submit(). */
#ifndef SORA_NET_WORKERS_H
#define SORA_NET_WORKERS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct sora_conn;
struct sora_job;
struct sora_net;

enum sora_job_status {
	SORA_JOB_DONE = 0,   /* finished: done() runs once output is handed over */
	SORA_JOB_MORE,       /* call work() again when the client has read */
};

/* Runs on a worker thread. May read and write the session's state: the
 * loop thread does not touch it while the job is active. */
typedef enum sora_job_status sora_job_work_cb(struct sora_job *job, void *arg);
/* Runs on the connection's loop thread after work returned DONE (or the
 * job was cancelled); c may be closing (check sora_conn_closing) but its
 * memory is valid. */
typedef void sora_job_done_cb(struct sora_conn *c, void *arg);

/* Loop thread. Pauses input on c and queues the job. Returns -1 if a job is
 * already active on c or the pool is stopping (nothing queued then). */
int sora_job_submit(struct sora_conn *c, sora_job_work_cb *work, sora_job_done_cb *done, void *arg);

/* Worker thread. Queues output for the job's connection; never blocks.
 * Returns 0, or -1 if the connection is gone or the job's output passed
 * the hard cap (the session is then closed as "output_overflow"). */
int sora_job_write(struct sora_job *job, const void *data, size_t len);
int sora_job_printf(struct sora_job *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Worker thread: true when this slice has produced enough; return
 * SORA_JOB_MORE soon (after finishing the current item). */
bool sora_job_output_full(const struct sora_job *job);
/* Worker thread: true once the client disconnected or the server stops. */
bool sora_job_cancelled(const struct sora_job *job);
/* The session data of the job's connection. */
void *sora_job_session(const struct sora_job *job);

/* Any thread: runs work(arg) on a worker, then done(arg) on the runtime's
 * first loop (done may be NULL). Returns -1 when the runtime is stopping
 * (nothing runs then). */
typedef void sora_work_cb(void *arg);
int sora_work_submit(struct sora_net *net, sora_work_cb *work, sora_work_cb *done, void *arg);

/* Runtime internals (net.c). */
int sora_workers_start(struct sora_net *net, int threads);
void sora_workers_stop(struct sora_net *net);

#endif
