/* Worker pool: a fixed set of threads taking jobs from one queue, and the
 * posts that let other threads reach a session.
 *
 * A job runs in slices. While a slice runs, its output goes into the job's
 * own buffer (under the job's mutex) and the worker wakes the connection's
 * loop through its uv_async; the loop moves the bytes into the
 * connection's output while that is below its high-water mark. When the
 * work function returns, the worker posts the job back to the loop one
 * last time and never touches it again. The loop then, once the job's
 * output is all handed over, either completes it (done(), then a deferred
 * handler close()) or, for SORA_JOB_MORE, queues it again right away when
 * the client keeps up, or leaves it parked until the connection's output
 * drains (sora_conn__job_output). A parked job holds no thread.
 *
 * Job life, as the loop sees it: submitted (slice_seen = false: queued or
 * running, the worker owns the session) -> slice posted (slice_seen = true:
 * the loop owns it) -> completed or queued again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/net/net-private.h"
#include "common/net/workers.h"

/* A slice stops producing once this much output waits in the job. */
#define JOB_SLICE_BYTES (64 * 1024)
/* Output a job may hold before its session is closed as overflowing: a
 * job that ignores sora_job_output_full(). Chosen so that moving all of it
 * into a connection below its high-water mark stays under the hard cap. */
#define JOB_OUT_CAP (SORA_OUT_HARD_CAP - SORA_OUT_HIGH_WATER)

struct sora_job {
	struct sora_job *next_queued;   /* pool queue */
	struct sora_job *next_ready;    /* loop->ready_jobs */
	struct sora_loop *loop;
	struct sora_conn *conn;         /* NULL for sora_work_submit */
	sora_job_work_cb *work;
	sora_job_done_cb *done;
	sora_work_cb *bg_work, *bg_done;
	void *arg;
	void *session;
	enum sora_job_status status;    /* written by the worker before its last post */

	pthread_mutex_t lock;
	struct sora_buf out;            /* guarded by lock */
	bool cancelled;                 /* guarded by lock */
	bool overflow;                  /* guarded by lock: passed JOB_OUT_CAP */
	bool on_ready_list;             /* guarded by loop->lock */
	bool slice_posted;              /* guarded by loop->lock: the worker is finished with the slice */
	bool slice_seen;                /* loop thread only: slice_posted observed */
	struct sora_job *next_snap;     /* loop thread only: snapshot of the ready list */
};

struct sora_post {
	struct sora_post *next;
	struct sora_conn_key key;
	sora_conn_post_cb *fn;
	void *arg;
};

struct sora_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct sora_job *head, *tail;
	bool stopping;
	pthread_t *threads;
	int nthreads;
};

/* Wakes the job's loop. With last = true this is the worker's final access
 * to the job in this slice: once loop->lock is released the loop may free
 * it or queue it again. */
static void job_notify_loop(struct sora_job *job, bool last)
{
	struct sora_loop *loop = job->loop;
	bool send = false;

	pthread_mutex_lock(&loop->lock);
	if (last)
		job->slice_posted = true;
	if (!job->on_ready_list) {
		job->on_ready_list = true;
		job->next_ready = loop->ready_jobs;
		loop->ready_jobs = job;
		send = true;
	}
	pthread_mutex_unlock(&loop->lock);
	if (send)
		uv_async_send(&loop->async);
}

static void *worker_main(void *arg)
{
	struct sora_pool *pool = arg;

	for (;;) {
		struct sora_job *job;

		pthread_mutex_lock(&pool->lock);
		while (pool->head == NULL && !pool->stopping)
			pthread_cond_wait(&pool->cond, &pool->lock);
		if (pool->head == NULL) {
			pthread_mutex_unlock(&pool->lock);
			break;
		}
		job = pool->head;
		pool->head = job->next_queued;
		if (pool->head == NULL)
			pool->tail = NULL;
		pthread_mutex_unlock(&pool->lock);

		if (job->work != NULL)
			job->status = job->work(job, job->arg);
		else if (job->bg_work != NULL)
			job->bg_work(job->arg);
		job_notify_loop(job, true);
	}
	return NULL;
}

int sora_workers_start(struct sora_net *net, int threads)
{
	struct sora_pool *pool = calloc(1, sizeof(*pool));

	if (pool == NULL)
		return -1;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	pool->threads = calloc((size_t)threads, sizeof(pthread_t));
	if (pool->threads == NULL) {
		free(pool);
		return -1;
	}
	sora_net__set_pool(net, pool);
	for (int i = 0; i < threads; i++) {
		if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0)
			break;
		pool->nthreads++;
	}
	if (pool->nthreads == 0) {
		sora_workers_stop(net);
		return -1;
	}
	return 0;
}

void sora_workers_stop(struct sora_net *net)
{
	struct sora_pool *pool = sora_net__pool(net);

	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (int i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	free(pool->threads);
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->cond);
	free(pool);
	sora_net__set_pool(net, NULL);
}

static int pool_push(struct sora_pool *pool, struct sora_job *job)
{
	pthread_mutex_lock(&pool->lock);
	if (pool->stopping) {
		pthread_mutex_unlock(&pool->lock);
		return -1;
	}
	job->next_queued = NULL;
	if (pool->tail != NULL)
		pool->tail->next_queued = job;
	else
		pool->head = job;
	pool->tail = job;
	pthread_cond_signal(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

static struct sora_job *job_new(struct sora_loop *loop)
{
	struct sora_job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return NULL;
	job->loop = loop;
	pthread_mutex_init(&job->lock, NULL);
	sora_buf_init(&job->out, 0);
	return job;
}

static void job_free(struct sora_job *job)
{
	sora_buf_free(&job->out);
	pthread_mutex_destroy(&job->lock);
	free(job);
}

/* Counts a job against its loop; fails once the loop stopped taking work. */
static int loop_take_job(struct sora_loop *loop)
{
	int rc = 0;

	pthread_mutex_lock(&loop->lock);
	if (loop->async_closed)
		rc = -1;
	else
		loop->jobs_outstanding++;
	pthread_mutex_unlock(&loop->lock);
	return rc;
}

static void loop_release_job(struct sora_loop *loop)
{
	pthread_mutex_lock(&loop->lock);
	loop->jobs_outstanding--;
	pthread_mutex_unlock(&loop->lock);
}

int sora_job_submit(struct sora_conn *c, sora_job_work_cb *work, sora_job_done_cb *done, void *arg)
{
	struct sora_pool *pool = sora_net__pool(c->loop->net);
	struct sora_job *job;

	if (c->job != NULL || c->relay != NULL || pool == NULL || c->state >= CONN_CLOSING)
		return -1;
	job = job_new(c->loop);
	if (job == NULL)
		return -1;
	job->conn = c;
	job->work = work;
	job->done = done;
	job->arg = arg;
	job->session = c->data;
	if (loop_take_job(c->loop) < 0) {
		job_free(job);
		return -1;
	}
	if (pool_push(pool, job) < 0) {
		loop_release_job(c->loop);
		job_free(job);
		return -1;
	}
	c->job = job;
	sora_conn_ref(c);
	sora_conn_pause(c);
	return 0;
}

int sora_work_submit(struct sora_net *net, sora_work_cb *work, sora_work_cb *done, void *arg)
{
	struct sora_pool *pool = sora_net__pool(net);
	struct sora_loop *loop;
	struct sora_job *job;

	if (pool == NULL)
		return -1;
	loop = sora_net__loop(net, 0);
	job = job_new(loop);
	if (job == NULL)
		return -1;
	job->bg_work = work;
	job->bg_done = done;
	job->arg = arg;
	if (loop_take_job(loop) < 0) {
		job_free(job);
		return -1;
	}
	if (pool_push(pool, job) < 0) {
		loop_release_job(loop);
		job_free(job);
		return -1;
	}
	return 0;
}

int sora_job_write(struct sora_job *job, const void *data, size_t len)
{
	bool notify = false;
	int rc = -1;

	pthread_mutex_lock(&job->lock);
	if (job->cancelled) {
		/* The connection is gone, or this job already overflowed. */
	} else if (len > JOB_OUT_CAP || job->out.len > JOB_OUT_CAP - len) {
		/* The loop closes the session when it sees this. */
		job->overflow = true;
		job->cancelled = true;
		sora_buf_reset(&job->out);
		notify = true;
	} else if (sora_buf_append(&job->out, data, len) == 0) {
		notify = true;
		rc = 0;
	}
	pthread_mutex_unlock(&job->lock);
	if (notify)
		job_notify_loop(job, false);
	return rc;
}

static int job_write_sink(void *ctx, const void *data, size_t len)
{
	return sora_job_write(ctx, data, len);
}

int sora_job_printf(struct sora_job *job, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = sora_vformat_to(job_write_sink, job, fmt, ap);
	va_end(ap);
	return r;
}

bool sora_job_output_full(const struct sora_job *job)
{
	bool r;

	pthread_mutex_lock((pthread_mutex_t *)&job->lock);
	r = job->out.len >= JOB_SLICE_BYTES || job->cancelled;
	pthread_mutex_unlock((pthread_mutex_t *)&job->lock);
	return r;
}

bool sora_job_cancelled(const struct sora_job *job)
{
	bool r;

	pthread_mutex_lock((pthread_mutex_t *)&job->lock);
	r = job->cancelled;
	pthread_mutex_unlock((pthread_mutex_t *)&job->lock);
	return r;
}

void *sora_job_session(const struct sora_job *job)
{
	return job->session;
}

/* Loop thread: moves the job's output into the connection while the
 * connection is below its high-water mark. Drops it once the connection
 * is closing. */
static void job_pump(struct sora_job *job)
{
	struct sora_conn *c = job->conn;
	struct sora_buf chunk;
	bool overflow;

	pthread_mutex_lock(&job->lock);
	overflow = job->overflow;
	job->overflow = false;
	if (sora_conn_closing(c)) {
		job->cancelled = true;
		sora_buf_reset(&job->out);
	}
	if (job->out.len == 0 || sora_conn_output_full(c)) {
		pthread_mutex_unlock(&job->lock);
		if (overflow) {
			sora_warn(&c->log, "command output passed %d bytes: closing",
				  SORA_OUT_HARD_CAP);
			sora_conn_close(c, SORA_CLOSE_OUTPUT);
		}
		return;
	}
	chunk = job->out;
	sora_buf_init(&job->out, 0);
	pthread_mutex_unlock(&job->lock);
	/* Not under the job's lock: a failing write closes the connection,
	 * which cancels the job. */
	sora_conn_write(c, chunk.data, chunk.len);
	sora_buf_free(&chunk);
}

static bool job_out_empty(struct sora_job *job)
{
	bool r;

	pthread_mutex_lock(&job->lock);
	r = job->out.len == 0;
	pthread_mutex_unlock(&job->lock);
	return r;
}

static void job_complete(struct sora_job *job)
{
	struct sora_conn *c = job->conn;
	struct sora_loop *loop = job->loop;

	if (c != NULL) {
		c->job = NULL;
		if (job->done != NULL)
			job->done(c, job->arg);
		if (c->close_deferred)
			sora_conn__handler_close(c);
		else if (loop->stopping && !sora_conn_closing(c))
			sora_conn__shutdown(c);
		sora_conn_unref(c);
	} else if (job->bg_done != NULL) {
		job->bg_done(job->arg);
	}
	job_free(job);
	loop_release_job(loop);
}

static void job_requeue(struct sora_job *job)
{
	struct sora_pool *pool = sora_net__pool(job->loop->net);

	job->slice_seen = false;
	pthread_mutex_lock(&job->loop->lock);
	job->slice_posted = false;
	pthread_mutex_unlock(&job->loop->lock);
	if (pool == NULL || pool_push(pool, job) < 0) {
		pthread_mutex_lock(&job->lock);
		job->cancelled = true;
		pthread_mutex_unlock(&job->lock);
		job->slice_seen = true;
		job_complete(job);
	}
}

/* Loop thread: moves output, then completes, requeues or parks the job. */
static void job_advance(struct sora_job *job)
{
	struct sora_conn *c = job->conn;

	if (c == NULL) {
		if (job->slice_seen)
			job_complete(job);
		return;
	}
	job_pump(job);
	if (!job->slice_seen)
		return;                         /* the worker is still producing */
	if (sora_job_cancelled(job) || sora_conn_closing(c)) {
		job_complete(job);
		return;
	}
	if (!job_out_empty(job))
		return;                         /* the drain continues the job */
	if (job->status == SORA_JOB_DONE) {
		job_complete(job);
		return;
	}
	if (sora_conn_output_pending(c) >= SORA_OUT_LOW_WATER)
		return;                         /* parked until the drain */
	job_requeue(job);
}

void sora_conn__job_cancel(struct sora_conn *c)
{
	struct sora_job *job = c->job;

	if (job == NULL)
		return;
	pthread_mutex_lock(&job->lock);
	job->cancelled = true;
	sora_buf_reset(&job->out);
	pthread_mutex_unlock(&job->lock);
}

void sora_conn__job_output(struct sora_conn *c)
{
	if (c->job != NULL)
		job_advance(c->job);
}

void sora_workers__loop_async(struct sora_loop *loop)
{
	struct sora_job *list, *job, *next;

	pthread_mutex_lock(&loop->lock);
	list = loop->ready_jobs;
	loop->ready_jobs = NULL;
	/* Once on_ready_list is cleared a worker may push the job again and
	 * rewrite next_ready, so walk a private copy of the links. */
	for (job = list; job != NULL; job = job->next_ready) {
		job->on_ready_list = false;
		if (job->slice_posted)
			job->slice_seen = true;
		job->next_snap = job->next_ready;
	}
	pthread_mutex_unlock(&loop->lock);

	for (job = list; job != NULL; job = next) {
		next = job->next_snap;
		job_advance(job);
	}
}

/* ---- posts ------------------------------------------------------------ */

int sora_conn_post(struct sora_net *net, struct sora_conn_key key, sora_conn_post_cb *fn,
		   void *arg)
{
	struct sora_loop *loop = sora_net__loop_checked(net, key.loop);
	struct sora_post *p;
	bool queued = false;

	if (loop == NULL || (p = malloc(sizeof(*p))) == NULL)
		return -1;
	p->next = NULL;
	p->key = key;
	p->fn = fn;
	p->arg = arg;
	pthread_mutex_lock(&loop->lock);
	if (!loop->async_closed) {
		if (loop->posts_tail != NULL)
			loop->posts_tail->next = p;
		else
			loop->posts = p;
		loop->posts_tail = p;
		queued = true;
	}
	pthread_mutex_unlock(&loop->lock);
	if (!queued) {
		free(p);
		return -1;
	}
	uv_async_send(&loop->async);
	return 0;
}

void sora_workers__run_posts(struct sora_loop *loop, bool drop)
{
	struct sora_post *list, *p;

	pthread_mutex_lock(&loop->lock);
	list = loop->posts;
	loop->posts = loop->posts_tail = NULL;
	pthread_mutex_unlock(&loop->lock);
	while ((p = list) != NULL) {
		struct sora_conn *c = drop ? NULL : sora_conn__lookup(loop, p->key);

		list = p->next;
		if (c != NULL && sora_conn_closing(c))
			c = NULL;
		p->fn(c, p->arg);
		free(p);
	}
}
