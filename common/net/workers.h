/* The worker pool bridge (DESIGN.md §4).
 *
 * Blocking work (libpq queries, S3 requests, password hashing, fsync) runs
 * on a bounded pool of worker threads. A protocol handler turns a command
 * into a job: sora_job_submit() on the loop thread pauses the connection's
 * input, the job's work function runs on a worker and streams its response
 * with sora_job_write(), and the done function runs back on the loop thread,
 * where the handler typically resumes input. One job at a time per
 * connection keeps per-session ordering without locks.
 *
 * Backpressure: sora_job_write() blocks the worker while the connection's
 * output is above its high-water mark, so a large FETCH never sits whole in
 * memory. If the client disconnects, writes return -1 and the job should
 * stop early; done still runs (with the connection closing).
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

/* Runs on a worker thread. */
typedef void sora_job_work_cb(struct sora_job *job, void *arg);
/* Runs on the connection's loop thread after work returned; c may be
 * closing (check sora_conn_closing) but its memory is valid. */
typedef void sora_job_done_cb(struct sora_conn *c, void *arg);

/* Loop thread. Pauses input on c and queues the job. Returns -1 if a job is
 * already active on c or the pool is stopping (nothing queued then). */
int sora_job_submit(struct sora_conn *c, sora_job_work_cb *work, sora_job_done_cb *done, void *arg);

/* Worker thread. Queues output for the job's connection; blocks while the
 * connection's output is full. Returns 0, or -1 if the connection is gone. */
int sora_job_write(struct sora_job *job, const void *data, size_t len);
int sora_job_printf(struct sora_job *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Worker thread: true once the client disconnected or the server stops. */
bool sora_job_cancelled(const struct sora_job *job);
/* The session data of the job's connection, for reading only (the loop
 * thread does not touch the session while a job runs). */
void *sora_job_session(const struct sora_job *job);

/* Any thread: runs work(arg) on a worker, then done(arg) on the main
 * runtime's first loop (done may be NULL). */
typedef void sora_work_cb(void *arg);
int sora_work_submit(struct sora_net *net, sora_work_cb *work, sora_work_cb *done, void *arg);

/* Runtime internals (net.c). */
int sora_workers_start(struct sora_net *net, int threads);
void sora_workers_stop(struct sora_net *net);

#endif
