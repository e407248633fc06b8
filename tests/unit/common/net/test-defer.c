/* sora_conn_defer() on a real runtime (1 loop, 1 worker): a test protocol
 *
 *   "WAIT n\n"  pauses input and defers "DONE\n" by n ms (then resumes);
 *               a second sora_conn_defer() while one is pending must fail;
 *   "QUIT\n"    defers like WAIT 5000, then closes the session at once;
 *   "NOOP\n"    loop-thread reply "OK\n".
 *
 * What it catches: a delay that blocks the loop or holds a worker (many
 * waiting sessions would then take n ms each, one after the other, and a
 * NOOP of another session would wait for them), input handled during the
 * delay, a callback that never runs or runs after the handler's close()
 * when the client leaves early (use after free of the session). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
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
#include "tests/unit/common/net/net-test-util.h"

static atomic_int seq;
static atomic_int fired, cancelled, second_defer_refused;
static atomic_int cancel_at, close_at;

struct session {
	bool waiting;
};

static void deferred(struct sora_conn *c, void *arg)
{
	struct session *s = arg;

	if (sora_conn_closing(c)) {
		/* s must still be valid here: t_close frees it later. */
		s->waiting = false;
		atomic_fetch_add(&cancelled, 1);
		atomic_store(&cancel_at, atomic_fetch_add(&seq, 1) + 1);
		return;
	}
	s->waiting = false;
	atomic_fetch_add(&fired, 1);
	sora_conn_write(c, "DONE\n", 5);
	sora_conn_resume(c);
}

static void t_open(struct sora_conn *c)
{
	sora_conn_set_data(c, calloc(1, sizeof(struct session)));
	sora_conn_write(c, "HELLO\n", 6);
}

static size_t t_input(struct sora_conn *c, const char *data, size_t len)
{
	struct session *s = sora_conn_data(c);
	const char *nl = memchr(data, '\n', len);

	if (nl == NULL)
		return 0;
	if (len >= 5 && memcmp(data, "WAIT ", 5) == 0) {
		long ms = strtol(data + 5, NULL, 10);

		sora_conn_pause(c);
		s->waiting = true;
		assert_int_equal(sora_conn_defer(c, ms, deferred, s), 0);
		assert_true(sora_conn_deferred(c));
		if (sora_conn_defer(c, 1, deferred, s) < 0)
			atomic_fetch_add(&second_defer_refused, 1);
	} else if (len >= 5 && memcmp(data, "QUIT\n", 5) == 0) {
		sora_conn_pause(c);
		s->waiting = true;
		assert_int_equal(sora_conn_defer(c, 5000, deferred, s), 0);
		sora_conn_close(c, SORA_CLOSE_NORMAL);
	} else {
		sora_conn_write(c, "OK\n", 3);
	}
	return (size_t)(nl - data) + 1;
}

static void t_reject(struct sora_conn *c, enum sora_reject_reason why) { }

static void t_close(struct sora_conn *c, enum sora_close_reason why)
{
	struct session *s = sora_conn_data(c);

	if (s != NULL && s->waiting)
		fail_msg("close() ran while the deferred callback was still pending");
	atomic_store(&close_at, atomic_fetch_add(&seq, 1) + 1);
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
		 "command_timeout = \"1s\"\nmin_bytes_per_minute = -1\nmax_connections_per_ip = 0\n",
		 port);
	if (test_runtime_start(&rt, text, 1, 1, &handler, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	return 0;
}

static int teardown(void **state)
{
	test_runtime_stop(&rt);
	return 0;
}

static void read_exact(int fd, char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
	buf[n] = '\0';
}

#define NWAIT 20

/* Twenty sessions wait 600 ms each at once: all are answered after about
 * 600 ms (not 20 x 600 ms), a NOOP of another session is answered at once
 * meanwhile, and a NOOP pipelined behind WAIT comes after DONE. The 1 s
 * command_timeout does not close a session waiting 1.5 s. */
static void test_delays_hold_nothing(void **state)
{
	int fds[NWAIT], other;
	char buf[32];
	double t0, t1;

	for (int i = 0; i < NWAIT; i++) {
		fds[i] = test_connect(port, 0);
		read_exact(fds[i], buf, 6);
	}
	other = test_connect(port, 0);
	read_exact(other, buf, 6);
	t0 = test_now();
	for (int i = 0; i < NWAIT; i++)
		assert_int_equal(write(fds[i], "WAIT 600\nNOOP\n", 14), 14);
	assert_int_equal(write(other, "NOOP\n", 5), 5);
	read_exact(other, buf, 3);
	assert_string_equal(buf, "OK\n");
	assert_true(test_now() - t0 < 0.3);
	for (int i = 0; i < NWAIT; i++) {
		read_exact(fds[i], buf, 8);
		assert_string_equal(buf, "DONE\nOK\n");
	}
	t1 = test_now();
	assert_true(t1 - t0 >= 0.59);
	assert_true(t1 - t0 < 2.0);
	assert_int_equal(atomic_load(&second_defer_refused), NWAIT);
	for (int i = 0; i < NWAIT; i++)
		close(fds[i]);

	assert_int_equal(write(other, "WAIT 1500\n", 10), 10);
	read_exact(other, buf, 5);
	assert_string_equal(buf, "DONE\n");
	close(other);
}

/* The session closes during the delay (a timeout, a shutdown, a kick: here
 * the handler itself): the callback runs (closing) before the handler's
 * close(), exactly once, and never later. While input is paused a client's
 * own disconnect is seen only when the delay ends (as during a job). */
static void test_close_cancels(void **state)
{
	char buf[16];
	int fd = test_connect(port, 0);
	int before = atomic_load(&cancelled), fired_before = atomic_load(&fired);

	read_exact(fd, buf, 6);
	atomic_store(&cancel_at, 0);
	atomic_store(&close_at, 0);
	assert_int_equal(write(fd, "QUIT\n", 5), 5);
	for (int i = 0; i < 100 && atomic_load(&close_at) == 0; i++)
		usleep(20000);
	assert_int_equal(atomic_load(&cancelled), before + 1);
	assert_true(atomic_load(&cancel_at) > 0);
	assert_true(atomic_load(&close_at) > atomic_load(&cancel_at));
	assert_int_equal(read(fd, buf, sizeof(buf)), 0);
	close(fd);
	usleep(300 * 1000);
	assert_int_equal(atomic_load(&fired), fired_before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delays_hold_nothing),
		cmocka_unit_test(test_close_cancels),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
