/* Worker pool: a fixed set of threads taking jobs from one queue.
 *
 * Output from a job goes into the job's own buffer (under the job's
 * mutex); the worker then wakes the connection's loop through its
 * uv_async. The loop moves the bytes into the connection's output queue
 * while that queue is below its high-water mark, and the worker waits on a
 * condition variable while the job's buffer is full. Completion is posted
 * the same way, so done() always runs on the loop thread after all output
 * was moved. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/net/net-private.h"
#include "common/net/workers.h"

#define JOB_BUF_HIGH (64 * 1024)

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

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct sora_buf out;            /* guarded by lock */
	bool finished;                  /* guarded by lock */
	bool cancelled;                 /* guarded by lock */
	bool on_ready_list;             /* guarded by loop->lock */
	bool done_posted;               /* guarded by loop->lock: worker is finished with the job */
	bool final_seen;                /* loop thread only: done_posted observed */
	struct sora_job *next_snap;     /* loop thread only: snapshot of the ready list */
};

struct sora_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct sora_job *head, *tail;
	bool stopping;
	pthread_t *threads;
	int nthreads;
};

/* Stored in the runtime; net.c owns the pointer. */
struct sora_pool *sora_net__pool(struct sora_net *net);
void sora_net__set_pool(struct sora_net *net, struct sora_pool *pool);
struct sora_loop *sora_net__loop(struct sora_net *net, int index);

/* Wakes the job's loop. With last = true this is the worker's final access
 * to the job: once loop->lock is released the loop may free it. */
static void job_notify_loop(struct sora_job *job, bool last)
{
	struct sora_loop *loop = job->loop;
	bool send = false;

	pthread_mutex_lock(&loop->lock);
	if (last)
		job->done_posted = true;
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
			job->work(job, job->arg);
		else if (job->bg_work != NULL)
			job->bg_work(job->arg);

		pthread_mutex_lock(&job->lock);
		job->finished = true;
		pthread_mutex_unlock(&job->lock);
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
	for (int i = 0; i < threads; i++) {
		if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0)
			break;
		pool->nthreads++;
	}
	sora_net__set_pool(net, pool);
	return pool->nthreads > 0 ? 0 : -1;
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
	pthread_cond_init(&job->cond, NULL);
	sora_buf_init(&job->out, 0);
	return job;
}

static void job_free(struct sora_job *job)
{
	sora_buf_free(&job->out);
	pthread_mutex_destroy(&job->lock);
	pthread_cond_destroy(&job->cond);
	free(job);
}

int sora_job_submit(struct sora_conn *c, sora_job_work_cb *work, sora_job_done_cb *done, void *arg)
{
	struct sora_pool *pool = sora_net__pool(c->loop->net);
	struct sora_job *job;

	if (c->job != NULL || pool == NULL || c->state >= CONN_CLOSING)
		return -1;
	job = job_new(c->loop);
	if (job == NULL)
		return -1;
	job->conn = c;
	job->work = work;
	job->done = done;
	job->arg = arg;
	job->session = c->data;
	if (pool_push(pool, job) < 0) {
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
	struct sora_job *job;

	if (pool == NULL)
		return -1;
	job = job_new(sora_net__loop(net, 0));
	if (job == NULL)
		return -1;
	job->bg_work = work;
	job->bg_done = done;
	job->arg = arg;
	if (pool_push(pool, job) < 0) {
		job_free(job);
		return -1;
	}
	return 0;
}

int sora_job_write(struct sora_job *job, const void *data, size_t len)
{
	int rc = 0;

	pthread_mutex_lock(&job->lock);
	while (job->out.len >= JOB_BUF_HIGH && !job->cancelled)
		pthread_cond_wait(&job->cond, &job->lock);
	if (job->cancelled || sora_buf_append(&job->out, data, len) < 0)
		rc = -1;
	pthread_mutex_unlock(&job->lock);
	if (rc == 0)
		job_notify_loop(job, false);
	return rc;
}

int sora_job_printf(struct sora_job *job, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof(buf))
		return sora_job_write(job, buf, (size_t)n);
	{
		struct sora_buf b;
		int r;

		sora_buf_init(&b, 0);
		va_start(ap, fmt);
		r = sora_buf_vprintf(&b, fmt, ap);
		va_end(ap);
		if (r == 0)
			r = sora_job_write(job, b.data, b.len);
		sora_buf_free(&b);
		return r;
	}
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

/* Loop thread: move the job's output into the connection while there is
 * room. Returns true when the job has finished and all output moved. */
static bool job_pump(struct sora_job *job)
{
	struct sora_conn *c = job->conn;
	bool finished;

	pthread_mutex_lock(&job->lock);
	if (c != NULL && job->out.len > 0) {
		if (sora_conn_closing(c)) {
			job->cancelled = true;
			sora_buf_reset(&job->out);
		} else if (!sora_conn_output_full(c) || job->finished) {
			struct sora_buf chunk = job->out;
			sora_buf_init(&job->out, 0);
			pthread_mutex_unlock(&job->lock);
			if (sora_conn_write(c, chunk.data, chunk.len) < 0) {
				pthread_mutex_lock(&job->lock);
				job->cancelled = true;
			} else {
				pthread_mutex_lock(&job->lock);
			}
			sora_buf_free(&chunk);
		}
	}
	if (c != NULL && sora_conn_closing(c))
		job->cancelled = true;
	pthread_cond_broadcast(&job->cond);
	finished = job->final_seen && job->out.len == 0;
	pthread_mutex_unlock(&job->lock);
	return finished;
}

static void job_complete(struct sora_job *job)
{
	struct sora_conn *c = job->conn;

	if (c != NULL) {
		c->job = NULL;
		if (job->done != NULL)
			job->done(c, job->arg);
		if (c->loop->stopping && !sora_conn_closing(c))
			sora_conn__shutdown(c);
		sora_conn_unref(c);
	} else if (job->bg_done != NULL) {
		job->bg_done(job->arg);
	}
	job_free(job);
}

void sora_conn__job_cancel(struct sora_conn *c)
{
	struct sora_job *job = c->job;

	if (job == NULL)
		return;
	pthread_mutex_lock(&job->lock);
	job->cancelled = true;
	sora_buf_reset(&job->out);
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->lock);
}

void sora_conn__job_output(struct sora_conn *c)
{
	struct sora_job *job = c->job;

	if (job != NULL && job_pump(job))
		job_complete(job);
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
		job->final_seen = job->done_posted;
		job->next_snap = job->next_ready;
	}
	pthread_mutex_unlock(&loop->lock);

	for (job = list; job != NULL; job = next) {
		next = job->next_snap;
		if (job_pump(job))
			job_complete(job);
	}
}
