/* The worker pool bridge on a real runtime (2 loops, 2 workers): a test
 * protocol whose commands run as jobs.
 *
 *   "GEN n\n"   resumable job: writes n bytes ('a'..'z' repeating) in
 *               1000-byte pieces, returning SORA_JOB_MORE whenever
 *               sora_job_output_full() says so; done() writes "END\n";
 *   "HOG n\n"   job that ignores sora_job_output_full() and writes n bytes
 *               (the session must be closed as output_overflow);
 *   "PID\n"     job answers "JOB\n" (pipelined commands come back in order);
 *   "SLOW\n"    job sleeps 300 ms (close-during-job ordering);
 *   "KEY\n"     answers with nothing but remembers the session key (posts);
 *   "BIG n\n"   loop-thread reply of n bytes in one sora_conn_write();
 *   "NOOP\n"    loop-thread reply "OK\n" (the pipelining flood).
 * Each test says which defect it would catch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/config/config.h"
#include "common/core/buf.h"
#include "common/metrics/metrics.h"
#include "common/net/conn.h"
#include "common/net/net.h"
#include "common/net/workers.h"
#include "tests/unit/common/net/net-test-util.h"

static atomic_long bytes_generated;
static atomic_int jobs_done;
static atomic_int gen_done;
static atomic_int slices_run;
static atomic_int seq;                 /* order of done/close events */
static atomic_int slow_done_at, slow_close_at;
static atomic_int posts_seen, posts_dropped;

static pthread_mutex_t key_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sora_conn_key last_key;
static atomic_int have_key;

enum kind { K_GEN, K_PID, K_SLOW, K_HOG };

struct cmd {
	enum kind kind;
	long n;
	long off;          /* GEN: position kept across slices */
};

static enum sora_job_status work(struct sora_job *job, void *arg)
{
	struct cmd *cmd = arg;
	char piece[1000];

	atomic_fetch_add(&slices_run, 1);
	switch (cmd->kind) {
	case K_PID:
		sora_job_write(job, "JOB\n", 4);
		return SORA_JOB_DONE;
	case K_SLOW:
		/* Output, then more output after the client has gone: the
		 * failing write closes the session while the job still runs. */
		for (int i = 0; i < 4; i++) {
			sora_job_write(job, "x\n", 2);
			usleep(100 * 1000);
		}
		return SORA_JOB_DONE;
	case K_HOG:
		memset(piece, 'h', sizeof(piece));
		for (long off = 0; off < cmd->n; off += (long)sizeof(piece)) {
			if (sora_job_write(job, piece, sizeof(piece)) < 0)
				break;
		}
		return SORA_JOB_DONE;
	case K_GEN:
		break;
	}
	while (cmd->off < cmd->n) {
		size_t len = (size_t)(cmd->n - cmd->off) < sizeof(piece) ? (size_t)(cmd->n - cmd->off)
									   : sizeof(piece);
		if (sora_job_output_full(job))
			return SORA_JOB_MORE;
		for (size_t i = 0; i < len; i++)
			piece[i] = (char)('a' + (cmd->off + (long)i) % 26);
		if (sora_job_write(job, piece, len) < 0)
			return SORA_JOB_DONE;
		cmd->off += (long)len;
		atomic_fetch_add(&bytes_generated, (long)len);
	}
	return SORA_JOB_DONE;
}

static void done(struct sora_conn *c, void *arg)
{
	struct cmd *cmd = arg;

	atomic_fetch_add(&jobs_done, 1);
	if (cmd->kind == K_GEN)
		atomic_fetch_add(&gen_done, 1);
	if (cmd->kind == K_SLOW)
		atomic_store(&slow_done_at, atomic_fetch_add(&seq, 1) + 1);
	if (cmd->kind == K_GEN && !sora_conn_closing(c))
		sora_conn_write(c, "END\n", 4);
	free(cmd);
	sora_conn_resume(c);
}

struct session {
	bool slow;         /* a SLOW job was started */
};

static void t_open(struct sora_conn *c)
{
	sora_conn_set_data(c, calloc(1, sizeof(struct session)));
	sora_conn_write(c, "HELLO\n", 6);
}

static size_t t_input(struct sora_conn *c, const char *data, size_t len)
{
	struct session *s = sora_conn_data(c);
	const char *nl = memchr(data, '\n', len);
	struct cmd *cmd;

	if (nl == NULL)
		return 0;
	if (len >= 5 && memcmp(data, "NOOP\n", 5) == 0) {
		sora_conn_write(c, "OK\n", 3);
		return 5;
	}
	if (len >= 4 && memcmp(data, "KEY\n", 4) == 0) {
		pthread_mutex_lock(&key_lock);
		last_key = sora_conn_key(c);
		pthread_mutex_unlock(&key_lock);
		atomic_store(&have_key, 1);
		return 4;
	}
	if (len >= 4 && memcmp(data, "BIG ", 4) == 0) {
		long n = strtol(data + 4, NULL, 10);
		char *big = calloc(1, (size_t)n);
		sora_conn_write(c, big, (size_t)n);
		free(big);
		return (size_t)(nl - data) + 1;
	}
	cmd = calloc(1, sizeof(*cmd));
	if (len >= 4 && memcmp(data, "GEN ", 4) == 0) {
		cmd->kind = K_GEN;
		cmd->n = strtol(data + 4, NULL, 10);
	} else if (len >= 4 && memcmp(data, "HOG ", 4) == 0) {
		cmd->kind = K_HOG;
		cmd->n = strtol(data + 4, NULL, 10);
	} else if (len >= 5 && memcmp(data, "SLOW\n", 5) == 0) {
		cmd->kind = K_SLOW;
		s->slow = true;
	} else {
		cmd->kind = K_PID;
	}
	if (sora_job_submit(c, work, done, cmd) < 0) {
		free(cmd);
		sora_conn_write(c, "BUSY\n", 5);
	}
	return (size_t)(nl - data) + 1;
}

static void t_reject(struct sora_conn *c, enum sora_reject_reason why) { }

static void t_close(struct sora_conn *c, enum sora_close_reason why)
{
	struct session *s = sora_conn_data(c);

	if (s != NULL && s->slow)
		atomic_store(&slow_close_at, atomic_fetch_add(&seq, 1) + 1);
	free(s);
}

static const struct sora_conn_handler handler = {
	.protocol = "test",
	.max_pending_input = 4096,
	.open = t_open,
	.input = t_input,
	.reject = t_reject,
	.close = t_close,
};

static struct test_runtime rt;
static int port;

static int setup(void **state)
{
	char text[512], err[512];

	port = test_pick_port();
	snprintf(text, sizeof(text),
		 "[logging]\nlevel = \"error\"\n[servers.t]\ntype = \"imap\"\naddr = \"127.0.0.1:%d\"\n"
		 "command_timeout = -1\nmin_bytes_per_minute = -1\n", port);
	if (test_runtime_start(&rt, text, 2, 2, &handler, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	return 0;
}

static int teardown(void **state)
{
	test_runtime_stop(&rt);
	return 0;
}

static int connect_client(void)
{
	return test_connect(port, 0);
}

/* A client that reads nothing: small kernel buffers so it stalls fast. */
static int connect_nonreader(void)
{
	return test_connect(port, 4096);
}

static void read_exact(int fd, char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
}

#define now_s test_now

/* True once the server closed fd (EOF or reset) within timeout_ms,
 * discarding whatever it still sends. */
static bool wait_closed(int fd, int timeout_ms)
{
	char buf[65536];
	double end = now_s() + timeout_ms / 1000.0;

	while (now_s() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 100) <= 0)
			continue;
		r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN))
			return true;
	}
	return false;
}

static void test_stream_and_order(void **state)
{
	const long n = 3 * 1000 * 1000 + 7;
	char hello[6], *buf = malloc((size_t)n + 4);
	int fd = connect_client();

	read_exact(fd, hello, 6);
	assert_memory_equal(hello, "HELLO\n", 6);
	/* Pipelined: output must come back in command order, and a job that
	 * returned SORA_JOB_MORE continues where it stopped. */
	assert_int_equal(write(fd, "PID\nGEN 3000007\nPID\n", 20), 20);
	read_exact(fd, buf, 4);
	assert_memory_equal(buf, "JOB\n", 4);
	read_exact(fd, buf, (size_t)n + 4);
	for (long i = 0; i < n; i++) {
		if (buf[i] != (char)('a' + i % 26))
			fail_msg("byte %ld is %c", i, buf[i]);
	}
	assert_memory_equal(buf + n, "END\n", 4);
	read_exact(fd, buf, 4);
	assert_memory_equal(buf, "JOB\n", 4);
	close(fd);
	free(buf);
}

/* Issue 8 point 2: with 2 workers, 20 clients that start a 200 MB stream
 * and never read must not hold the workers: a third client's command
 * still completes at once. With jobs that block on a full output (the old
 * design) the two workers are stuck and PID never answers. */
static void test_slow_readers_hold_no_worker(void **state)
{
	int readers[20], fd;
	long before, stalled;
	char buf[8];
	double t0, took;

	before = atomic_load(&bytes_generated);
	for (int i = 0; i < 20; i++) {
		readers[i] = connect_nonreader();
		assert_int_equal(write(readers[i], "GEN 200000000\n", 14), 14);
	}
	/* Every stream stalls: nothing more is produced once the kernel's
	 * socket buffers (loopback autotuning: a few MB per connection),
	 * the high-water mark and one slice are full. Wait for a whole
	 * second without progress (sanitizer builds are slow to get there). */
	stalled = -1;
	for (int i = 0; i < 40; i++) {
		long now;

		usleep(1000 * 1000);
		now = atomic_load(&bytes_generated) - before;
		if (now == stalled)
			break;
		stalled = now;
	}
	print_message("20 stalled streams produced %ld bytes in all\n", stalled);
	assert_true(stalled > 0);
	assert_true(stalled < 20L * 8 * 1000 * 1000);
	usleep(300 * 1000);
	assert_int_equal(atomic_load(&bytes_generated) - before, stalled);
	fd = connect_client();
	read_exact(fd, buf, 6);
	t0 = now_s();
	assert_int_equal(write(fd, "PID\n", 4), 4);
	read_exact(fd, buf, 4);
	took = now_s() - t0;
	assert_memory_equal(buf, "JOB\n", 4);
	print_message("a command behind 20 stalled 200 MB streams took %.3f s\n", took);
	assert_true(took < 1.0);
	close(fd);

	/* The clients go away: every parked job completes (done() runs) and
	 * its session closes. */
	{
		int done_before = atomic_load(&gen_done);
		for (int i = 0; i < 20; i++)
			close(readers[i]);
		for (int i = 0; i < 200 && atomic_load(&gen_done) - done_before < 20; i++)
			usleep(20000);
		assert_int_equal(atomic_load(&gen_done) - done_before, 20);
	}
}

/* Issue 8 point 3: the handler's close() runs only after the running job's
 * done(), even when the client disconnects mid-job. */
static void test_close_waits_for_job(void **state)
{
	char buf[8];
	int fd = connect_client();

	atomic_store(&slow_done_at, 0);
	atomic_store(&slow_close_at, 0);
	read_exact(fd, buf, 6);
	assert_int_equal(write(fd, "SLOW\n", 5), 5);
	read_exact(fd, buf, 2);
	{
		/* Reset, not FIN: the server's next write fails at once. */
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(fd);
	for (int i = 0; i < 100 && atomic_load(&slow_close_at) == 0; i++)
		usleep(20000);
	assert_true(atomic_load(&slow_done_at) > 0);
	assert_true(atomic_load(&slow_close_at) > atomic_load(&slow_done_at));
}

/* Issue 8 point 1: a client that pipelines commands and never reads the
 * replies. The server must stop reading it (so the client's own writes
 * stall) instead of queueing replies without bound. */
static void test_pipelined_flood_is_bounded(void **state)
{
	int fd = connect_nonreader();
	static char flood[5 * 8192];
	size_t sent = 0;
	double start = now_s(), last_progress = start;

	for (size_t i = 0; i < sizeof(flood); i += 5)
		memcpy(flood + i, "NOOP\n", 5);
	/* Flood until nothing has gone in for a whole second (or 15 s). */
	while (now_s() - last_progress < 1.0 && now_s() - start < 15.0) {
		ssize_t n = send(fd, flood, sizeof(flood), MSG_DONTWAIT);
		if (n > 0) {
			sent += (size_t)n;
			last_progress = now_s();
		} else {
			usleep(10000);
		}
	}
	print_message("the flooding client got %zu bytes in, then the server stopped reading "
		      "(%.1f s)\n", sent, last_progress - start);
	/* What the server accepted is bounded by its high-water mark, its
	 * input cap and the kernel's socket buffers, not by time. Before the
	 * fix the server kept reading and queueing replies for as long as
	 * the client sent (hundreds of MB in 15 s). */
	assert_true(sent > 0);
	assert_true(now_s() - last_progress >= 1.0);
	assert_true(sent < 32u * 1024 * 1024);
	close(fd);
}

/* Whether the metrics count n sessions closed as output_overflow. */
static bool overflow_count_is(int n)
{
	struct sora_buf text;
	char want[64];
	bool r;

	snprintf(want, sizeof(want), "reason=\"output_overflow\"} %d\n", n);
	sora_buf_init(&text, 0);
	assert_int_equal(sora_metrics_render(&text), 0);
	assert_int_equal(sora_buf_append(&text, "", 1), 0);
	r = strstr(text.data, want) != NULL;
	sora_buf_free(&text);
	return r;
}

/* Waits, without reading fd, until n sessions were closed as overflowing. A
 * client that reads while it waits (wait_closed drains) may take the
 * output as fast as a slow producer (ASan on a loaded machine) makes it,
 * and then nothing ever overflows. */
static void wait_overflow_count(int n)
{
	double end = now_s() + 60;

	while (!overflow_count_is(n)) {
		if (now_s() > end)
			fail_msg("no output_overflow count of %d within 60 s", n);
		usleep(20 * 1000);
	}
}

/* A reply larger than the hard cap closes the session (output_overflow)
 * instead of being queued. */
static void test_hard_cap_closes(void **state)
{
	char buf[8];
	int fd = connect_nonreader();

	read_exact(fd, buf, 6);
	assert_int_equal(write(fd, "BIG 9000000\n", 12), 12);
	wait_overflow_count(1);
	assert_true(wait_closed(fd, 10000));
	close(fd);

	/* Same for a job that ignores sora_job_output_full(). */
	fd = connect_nonreader();
	read_exact(fd, buf, 6);
	assert_int_equal(write(fd, "HOG 50000000\n", 13), 13);
	wait_overflow_count(2);
	assert_true(wait_closed(fd, 10000));
	close(fd);
}

static void post_write(struct sora_conn *c, void *arg)
{
	if (c == NULL) {
		atomic_fetch_add(&posts_dropped, 1);
		return;
	}
	atomic_fetch_add(&posts_seen, 1);
	sora_conn_write(c, "POSTED\n", 7);
}

struct poster {
	struct sora_conn_key key;
	int rc;
};

static void *post_thread(void *arg)
{
	struct poster *p = arg;

	p->rc = sora_conn_post(rt.net, p->key, post_write, NULL);
	return NULL;
}

/* Issue 8 point 4: another thread reaches a session by its key; once the
 * session is gone (and its slot reused) the post is dropped, never run on
 * a stranger. */
static void test_post_to_session(void **state)
{
	char buf[16];
	int fd = connect_client(), fd2;
	struct poster p;
	pthread_t t;

	atomic_store(&have_key, 0);
	read_exact(fd, buf, 6);
	assert_int_equal(write(fd, "KEY\n", 4), 4);
	for (int i = 0; i < 100 && !atomic_load(&have_key); i++)
		usleep(10000);
	pthread_mutex_lock(&key_lock);
	p.key = last_key;
	pthread_mutex_unlock(&key_lock);
	pthread_create(&t, NULL, post_thread, &p);
	pthread_join(t, NULL);
	assert_int_equal(p.rc, 0);
	read_exact(fd, buf, 7);
	assert_memory_equal(buf, "POSTED\n", 7);
	close(fd);
	usleep(200 * 1000);

	/* New sessions take the freed slot (eight of them: some land on the
	 * same loop); the old key must not reach any of them. */
	int fds[8];
	for (int i = 0; i < 8; i++) {
		fds[i] = connect_client();
		read_exact(fds[i], buf, 6);
	}
	atomic_store(&posts_dropped, 0);
	atomic_store(&posts_seen, 0);
	pthread_create(&t, NULL, post_thread, &p);
	pthread_join(t, NULL);
	assert_int_equal(p.rc, 0);
	for (int i = 0; i < 100 && atomic_load(&posts_dropped) == 0; i++)
		usleep(10000);
	assert_int_equal(atomic_load(&posts_dropped), 1);
	assert_int_equal(atomic_load(&posts_seen), 0);
	for (int i = 0; i < 8; i++) {
		struct pollfd pf = { .fd = fds[i], .events = POLLIN };
		assert_int_equal(poll(&pf, 1, 20), 0);
		close(fds[i]);
	}
	(void)fd2;
	/* A key naming no loop is refused outright. */
	p.key.loop = 99;
	assert_int_equal(sora_conn_post(rt.net, p.key, post_write, NULL), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_and_order),
		cmocka_unit_test(test_slow_readers_hold_no_worker),
		cmocka_unit_test(test_close_waits_for_job),
		cmocka_unit_test(test_pipelined_flood_is_bounded),
		cmocka_unit_test(test_hard_cap_closes),
		cmocka_unit_test(test_post_to_session),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
