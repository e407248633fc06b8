/* The worker pool bridge on a real runtime: a test protocol whose commands
 * run as jobs that stream output from a worker thread.
 *
 *   "GEN n\n"   job writes n bytes ('a'..'z' repeating) in 1000-byte pieces,
 *               then done() writes "END\n" on the loop thread;
 *   "PID\n"     job answers "JOB\n" (several pipelined commands must come
 *               back in order: one job at a time per connection).
 * The test checks ordering, that a client that does not read stalls the
 * job at the high-water mark instead of growing memory, and that a
 * disconnect cancels a streaming job. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/config/config.h"
#include "common/net/conn.h"
#include "common/net/net.h"
#include "common/net/workers.h"

static atomic_long bytes_generated;
static atomic_int jobs_cancelled;
static atomic_int jobs_done;

struct cmd {
	long n;
	int kind;  /* 0 GEN, 1 PID */
};

static void work(struct sora_job *job, void *arg)
{
	struct cmd *cmd = arg;
	char piece[1000];

	if (cmd->kind == 1) {
		sora_job_write(job, "JOB\n", 4);
		return;
	}
	for (long off = 0; off < cmd->n; off += (long)sizeof(piece)) {
		size_t len = (size_t)(cmd->n - off) < sizeof(piece) ? (size_t)(cmd->n - off) : sizeof(piece);
		for (size_t i = 0; i < len; i++)
			piece[i] = (char)('a' + (off + (long)i) % 26);
		if (sora_job_write(job, piece, len) < 0) {
			atomic_fetch_add(&jobs_cancelled, 1);
			return;
		}
		atomic_fetch_add(&bytes_generated, (long)len);
	}
}

static void done(struct sora_conn *c, void *arg)
{
	struct cmd *cmd = arg;

	atomic_fetch_add(&jobs_done, 1);
	if (cmd->kind == 0 && !sora_conn_closing(c))
		sora_conn_write(c, "END\n", 4);
	free(cmd);
	sora_conn_resume(c);
}

static void t_open(struct sora_conn *c) { sora_conn_write(c, "HELLO\n", 6); }

static size_t t_input(struct sora_conn *c, const char *data, size_t len)
{
	const char *nl = memchr(data, '\n', len);
	struct cmd *cmd;

	if (nl == NULL)
		return 0;
	cmd = calloc(1, sizeof(*cmd));
	if (len >= 4 && memcmp(data, "GEN ", 4) == 0) {
		cmd->n = strtol(data + 4, NULL, 10);
	} else {
		cmd->kind = 1;
	}
	if (sora_job_submit(c, work, done, cmd) < 0) {
		free(cmd);
		sora_conn_write(c, "BUSY\n", 5);
	}
	return (size_t)(nl - data) + 1;
}

static void t_reject(struct sora_conn *c, enum sora_reject_reason why) { }
static void t_close(struct sora_conn *c, enum sora_close_reason why) { }

static const struct sora_conn_handler handler = {
	.protocol = "test",
	.max_pending_input = 4096,
	.open = t_open,
	.input = t_input,
	.reject = t_reject,
	.close = t_close,
};

static struct sora_config *cfg;
static struct sora_net *net;
static pthread_t runner;
static int port;

static void *run_net(void *arg)
{
	sora_net_run(net);
	return NULL;
}

static int setup(void **state)
{
	char text[512], err[512];
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sin);
	struct sora_net_params params = { .loops = 2, .workers = 2 };

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(s, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(s, (struct sockaddr *)&sin, &slen);
	port = ntohs(sin.sin_port);
	close(s);
	snprintf(text, sizeof(text),
		 "[logging]\nlevel = \"error\"\n[servers.t]\ntype = \"imap\"\naddr = \"127.0.0.1:%d\"\n"
		 "command_timeout = -1\nmin_bytes_per_minute = -1\n", port);
	assert_int_equal(sora_config_load_string(text, strlen(text), "test.toml", &cfg, err, sizeof(err)), 0);
	assert_int_equal(sora_net_create(cfg, &params, &net, err, sizeof(err)), 0);
	assert_int_equal(sora_net_add_listener(net, &cfg->servers[0], &handler, err, sizeof(err)), 0);
	assert_int_equal(sora_net_bind(net, err, sizeof(err)), 0);
	pthread_create(&runner, NULL, run_net, NULL);
	return 0;
}

static int teardown(void **state)
{
	sora_net_stop(net);
	pthread_join(runner, NULL);
	sora_net_free(&net);
	sora_config_free(&cfg);
	return 0;
}

static int connect_client(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = { .tv_sec = 10 };

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < 100; i++) {
		if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
			break;
		usleep(20000);
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
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

static void test_stream_and_order(void **state)
{
	const long n = 3 * 1000 * 1000 + 7;
	char hello[6], *buf = malloc((size_t)n + 4);
	int fd = connect_client();

	read_exact(fd, hello, 6);
	assert_memory_equal(hello, "HELLO\n", 6);
	/* Pipelined: output must come back in command order. */
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

static void test_backpressure_and_cancel(void **state)
{
	char hello[6];
	int fd = connect_client();
	long before, stalled;

	read_exact(fd, hello, 6);
	before = atomic_load(&bytes_generated);
	atomic_store(&jobs_cancelled, 0);
	/* 200 MB that the client never reads: the job must stall once the
	 * socket buffers and our bounded queues are full. */
	assert_int_equal(write(fd, "GEN 200000000\n", 14), 14);
	usleep(1500 * 1000);
	stalled = atomic_load(&bytes_generated) - before;
	usleep(500 * 1000);
	assert_true(stalled > 0);
	assert_true(stalled < 20 * 1000 * 1000);
	assert_int_equal(atomic_load(&bytes_generated) - before, stalled);
	/* The client goes away: the blocked job is woken and gives up. */
	close(fd);
	for (int i = 0; i < 200 && atomic_load(&jobs_cancelled) == 0; i++)
		usleep(20000);
	assert_int_equal(atomic_load(&jobs_cancelled), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_and_order),
		cmocka_unit_test(test_backpressure_and_cancel),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
