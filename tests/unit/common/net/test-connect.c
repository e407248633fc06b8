/* Outbound connections and the paired relay on a real runtime.
 *
 * Three listeners in one runtime:
 *   front  - the test's "proxy": "CONNECT <addr> [tls <name>] [proxy] [ms <n>]"
 *            makes an outbound connection; once it is open the two are
 *            relayed; on failure the client gets "FAILED <why>\n";
 *   back   - PROXY protocol required from 127.0.0.1; greets with
 *            "PEER <client addr> SESSION <id from the PROXY header>\n", echoes
 *            lines, and "FLOOD\n" makes it write for as long as it can;
 *   tback  - the same as back without PROXY, over implicit TLS with a
 *            self-signed certificate for "localhost".
 * A silent listening socket (accepts in the kernel, never speaks) is the
 * target for the deadline test. */
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

#include <openssl/ssl.h>

#include "common/config/config.h"
#include "common/net/conn.h"
#include "common/net/net.h"
#include "common/tls/tls.h"
#include "tests/unit/common/net/net-test-util.h"

static atomic_long flood_bytes;
static atomic_int back_closed;
static atomic_int front_closed;

static SSL_CTX *ctx_verify_ca, *ctx_verify_default, *ctx_noverify;
static char certdir[64], certfile[128];

/* ---- back ---- */

struct back {
	bool flood;
};

static void back_flood(struct sora_conn *c)
{
	static const char chunk[16384];
	struct back *b = sora_conn_data(c);

	/* Write until the output passes the high-water mark; drained() calls
	 * us again. */
	while (b->flood && !sora_conn_closing(c) && !sora_conn_output_full(c)) {
		if (sora_conn_write(c, chunk, sizeof(chunk)) < 0)
			return;
		atomic_fetch_add(&flood_bytes, (long)sizeof(chunk));
	}
}

static void back_open(struct sora_conn *c)
{
	const char *session = sora_conn_proxy_session(c);

	sora_conn_set_data(c, calloc(1, sizeof(struct back)));
	sora_conn_printf(c, "PEER %s SESSION %s\n", sora_conn_peer(c), session ? session : "-");
}

static size_t back_input(struct sora_conn *c, const char *data, size_t len)
{
	struct back *b = sora_conn_data(c);
	const char *nl = memchr(data, '\n', len);

	if (nl == NULL)
		return 0;
	if ((size_t)(nl - data) == 5 && memcmp(data, "FLOOD", 5) == 0) {
		b->flood = true;
		back_flood(c);
	} else {
		sora_conn_write(c, "ECHO ", 5);
		sora_conn_write(c, data, (size_t)(nl - data) + 1);
	}
	return (size_t)(nl - data) + 1;
}

static void back_close(struct sora_conn *c, enum sora_close_reason why)
{
	free(sora_conn_data(c));
	atomic_fetch_add(&back_closed, 1);
}

static void no_reject(struct sora_conn *c, enum sora_reject_reason why) { }

static const struct sora_conn_handler back_handler = {
	.protocol = "back",
	.max_pending_input = 4096,
	.open = back_open,
	.input = back_input,
	.reject = no_reject,
	.close = back_close,
	.drained = back_flood,
};

/* ---- front ---- */

struct front {
	struct sora_conn *client;
};

static void out_open(struct sora_conn *c)
{
	struct front *f = sora_conn_data(c);

	if (sora_conn_relay(f->client, c) < 0)
		sora_conn_write(f->client, "RELAY REFUSED\n", 14);
	free(f);
	sora_conn_set_data(c, NULL);
}

static void out_failed(struct sora_conn *c, const char *why)
{
	struct front *f = sora_conn_data(c);

	sora_conn_printf(f->client, "FAILED %s\n", why);
	sora_conn_resume(f->client);
	free(f);
}

static size_t out_input(struct sora_conn *c, const char *data, size_t len) { return len; }
static void out_close(struct sora_conn *c, enum sora_close_reason why) { }

static const struct sora_conn_handler out_handler = {
	.protocol = "out",
	.open = out_open,
	.input = out_input,
	.close = out_close,
	.connect_failed = out_failed,
};

static void front_open(struct sora_conn *c) { sora_conn_write(c, "READY\n", 6); }

static size_t front_input(struct sora_conn *c, const char *data, size_t len)
{
	const char *nl = memchr(data, '\n', len);
	char line[256], addr[128] = "", name[128] = "";
	struct sora_connect_params p = { 0 };
	struct sora_conn *out;
	const char *error = NULL;
	struct front *f;
	char *tok, *save = NULL;

	if (nl == NULL)
		return 0;
	snprintf(line, sizeof(line), "%.*s", (int)(nl - data), data);
	tok = strtok_r(line, " ", &save);
	if (tok == NULL || strcmp(tok, "CONNECT") != 0) {
		sora_conn_write(c, "WHAT\n", 5);
		return (size_t)(nl - data) + 1;
	}
	while ((tok = strtok_r(NULL, " ", &save)) != NULL) {
		if (strcmp(tok, "proxy") == 0) {
			p.proxy_v2 = true;
		} else if (strcmp(tok, "tls") == 0) {
			const char *which = strtok_r(NULL, " ", &save);
			p.tls = strcmp(which, "ca") == 0 ? ctx_verify_ca
				: strcmp(which, "default") == 0 ? ctx_verify_default : ctx_noverify;
		} else if (strcmp(tok, "name") == 0) {
			snprintf(name, sizeof(name), "%s", strtok_r(NULL, " ", &save));
			p.server_name = name;
		} else if (strcmp(tok, "ms") == 0) {
			p.timeout_ms = strtol(strtok_r(NULL, " ", &save), NULL, 10);
		} else {
			snprintf(addr, sizeof(addr), "%s", tok);
		}
	}
	p.addr = addr;
	f = calloc(1, sizeof(*f));
	f->client = c;
	p.data = f;
	if (sora_conn_connect(c, &p, &out_handler, &out, &error) < 0) {
		sora_conn_printf(c, "FAILED %s\n", error);
		free(f);
	} else {
		/* Nothing more from the client until the relay starts. */
		sora_conn_pause(c);
	}
	return (size_t)(nl - data) + 1;
}

static void front_close(struct sora_conn *c, enum sora_close_reason why)
{
	atomic_fetch_add(&front_closed, 1);
}

static const struct sora_conn_handler front_handler = {
	.protocol = "front",
	.max_pending_input = 4096,
	.open = front_open,
	.input = front_input,
	.reject = no_reject,
	.close = front_close,
};

/* ---- runtime ---- */

static struct sora_config *cfg;
static struct sora_net *net;
static pthread_t runner;
static int front_port, back_port, tback_port, silent_port, silent_fd;

static void *run_net(void *arg)
{
	sora_net_run(net);
	return NULL;
}

#define pick_port test_pick_port

static int setup(void **state)
{
	char text[2048], err[512], cmd[512];
	struct sora_net_params params = { .loops = 2, .workers = 2 };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sin);

	snprintf(certdir, sizeof(certdir), "/tmp/sora-connect-XXXXXX");
	assert_non_null(mkdtemp(certdir));
	snprintf(certfile, sizeof(certfile), "%s/cert.pem", certdir);
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
		 "-addext subjectAltName=DNS:localhost -keyout %s/key.pem -out %s 2>/dev/null",
		 certdir, certfile);
	assert_int_equal(system(cmd), 0);

	front_port = pick_port();
	back_port = pick_port();
	tback_port = pick_port();
	/* Accepts connections in the kernel, never answers. */
	silent_fd = socket(AF_INET, SOCK_STREAM, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(silent_fd, (struct sockaddr *)&sin, sizeof(sin));
	listen(silent_fd, 16);
	getsockname(silent_fd, (struct sockaddr *)&sin, &slen);
	silent_port = ntohs(sin.sin_port);

	snprintf(text, sizeof(text),
		 "[logging]\nlevel = \"error\"\n"
		 "[servers.front]\ntype = \"imap\"\naddr = \"127.0.0.1:%d\"\n"
		 "command_timeout = -1\nmin_bytes_per_minute = -1\n"
		 "[servers.back]\ntype = \"pop3\"\naddr = \"127.0.0.1:%d\"\n"
		 "command_timeout = -1\nmin_bytes_per_minute = -1\n"
		 "[servers.back.proxy_protocol]\nenabled = true\ntrusted_proxies = [\"127.0.0.1/32\"]\n"
		 "[servers.tback]\ntype = \"lmtp\"\naddr = \"127.0.0.1:%d\"\ntls = true\n"
		 "tls_cert_file = \"%s\"\ntls_key_file = \"%s/key.pem\"\n"
		 "command_timeout = -1\nmin_bytes_per_minute = -1\n",
		 front_port, back_port, tback_port, certfile, certdir);
	if (sora_config_load_string(text, strlen(text), "test.toml", &cfg, err, sizeof(err)) != 0)
		fail_msg("config: %s", err);
	assert_int_equal(sora_net_create(cfg, &params, &net, err, sizeof(err)), 0);
	assert_int_equal(sora_net_add_listener(net, &cfg->servers[0], &front_handler, err, sizeof(err)), 0);
	assert_int_equal(sora_net_add_listener(net, &cfg->servers[1], &back_handler, err, sizeof(err)), 0);
	if (sora_net_add_listener(net, &cfg->servers[2], &back_handler, err, sizeof(err)) != 0)
		fail_msg("tls listener: %s", err);
	assert_int_equal(sora_net_bind(net, err, sizeof(err)), 0);
	ctx_verify_ca = sora_tls_client_ctx_new(1, certfile, err, sizeof(err));
	ctx_verify_default = sora_tls_client_ctx_new(1, NULL, err, sizeof(err));
	ctx_noverify = sora_tls_client_ctx_new(0, NULL, err, sizeof(err));
	assert_non_null(ctx_verify_ca);
	assert_non_null(ctx_verify_default);
	assert_non_null(ctx_noverify);
	pthread_create(&runner, NULL, run_net, NULL);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	sora_net_stop(net);
	pthread_join(runner, NULL);
	sora_net_free(&net);
	sora_config_free(&cfg);
	SSL_CTX_free(ctx_verify_ca);
	SSL_CTX_free(ctx_verify_default);
	SSL_CTX_free(ctx_noverify);
	close(silent_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", certdir);
	return system(cmd) == 0 ? 0 : -1;
}

#define now_s test_now

static int connect_front(int rcvbuf)
{
	return test_connect(front_port, rcvbuf);
}

/* One line (without "\n"). */
static void read_line(int fd, char *buf, size_t size)
{
	size_t n = 0;

	while (n + 1 < size) {
		ssize_t r = read(fd, buf + n, 1);
		assert_true(r == 1);
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = '\0';
}

/* Connects through the front and returns the first line from the far end. */
static int via_front(const char *command, char *first, size_t size)
{
	char line[256];
	int fd = connect_front(0);

	read_line(fd, line, sizeof(line));
	assert_string_equal(line, "READY");
	assert_int_equal(write(fd, command, strlen(command)), (ssize_t)strlen(command));
	read_line(fd, first, size);
	return fd;
}

static void test_relay_with_proxy_header(void **state)
{
	char cmd[128], line[256], expect[128];
	struct sockaddr_in me;
	socklen_t mlen = sizeof(me);
	int fd;

	snprintf(cmd, sizeof(cmd), "CONNECT 127.0.0.1:%d proxy\nhello\n", back_port);
	fd = via_front(cmd, line, sizeof(line));
	/* The backend saw the real client, from the PROXY v2 header, and
	 * the client's session id in its TLV. */
	getsockname(fd, (struct sockaddr *)&me, &mlen);
	snprintf(expect, sizeof(expect), "PEER 127.0.0.1:%d SESSION ", ntohs(me.sin_port));
	if (strncmp(line, expect, strlen(expect)) != 0 || strcmp(line + strlen(expect), "-") == 0)
		fail_msg("got '%s', expected '%s<id>'", line, expect);
	/* "hello" was pipelined behind CONNECT: it reaches the backend after
	 * the relay started, in order. */
	read_line(fd, line, sizeof(line));
	assert_string_equal(line, "ECHO hello");
	assert_int_equal(write(fd, "again\n", 6), 6);
	read_line(fd, line, sizeof(line));
	assert_string_equal(line, "ECHO again");

	/* Both sides close together. */
	atomic_store(&back_closed, 0);
	close(fd);
	for (int i = 0; i < 100 && atomic_load(&back_closed) == 0; i++)
		usleep(10000);
	assert_int_equal(atomic_load(&back_closed), 1);
}

static void test_relay_backpressure(void **state)
{
	char cmd[128], line[256];
	int fd = connect_front(4096);
	long before, stalled;

	read_line(fd, line, sizeof(line));
	snprintf(cmd, sizeof(cmd), "CONNECT 127.0.0.1:%d proxy\nFLOOD\n", back_port);
	assert_int_equal(write(fd, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
	read_line(fd, line, sizeof(line));
	assert_memory_equal(line, "PEER ", 5);
	/* The client reads nothing more: the front stops reading the backend
	 * once the client's queue is full, so the backend's writes stall. */
	before = atomic_load(&flood_bytes);
	stalled = -1;
	for (int i = 0; i < 30; i++) {
		long now;

		usleep(1000 * 1000);
		now = atomic_load(&flood_bytes);
		if (now == stalled)
			break;
		stalled = now;
	}
	print_message("the backend flooded %ld bytes before stalling\n", stalled - before);
	usleep(300 * 1000);
	assert_int_equal(atomic_load(&flood_bytes), stalled);
	assert_true(stalled < 64L * 1024 * 1024);
	/* Reading again resumes the flow. */
	{
		char buf[65536];
		size_t got = 0;

		/* What was queued (socket buffers, both high-water marks) is
		 * read first; then the backend must be writing again. */
		while (atomic_load(&flood_bytes) == stalled && got < 256u * 1024 * 1024) {
			ssize_t r = read(fd, buf, sizeof(buf));
			assert_true(r > 0);
			got += (size_t)r;
		}
		assert_true(atomic_load(&flood_bytes) > stalled);
	}
	atomic_store(&back_closed, 0);
	close(fd);
	for (int i = 0; i < 100 && atomic_load(&back_closed) == 0; i++)
		usleep(10000);
	assert_int_equal(atomic_load(&back_closed), 1);
}

static void test_tls_verification(void **state)
{
	char cmd[160], line[256];
	int fd;

	/* Trusted CA and matching name (given, or taken from the address). */
	snprintf(cmd, sizeof(cmd), "CONNECT localhost:%d tls ca\nx\n", tback_port);
	fd = via_front(cmd, line, sizeof(line));
	assert_memory_equal(line, "PEER ", 5);
	read_line(fd, line, sizeof(line));
	assert_string_equal(line, "ECHO x");
	close(fd);
	snprintf(cmd, sizeof(cmd), "CONNECT 127.0.0.1:%d tls ca name localhost\n", tback_port);
	fd = via_front(cmd, line, sizeof(line));
	assert_memory_equal(line, "PEER ", 5);
	close(fd);

	/* The right CA but another name. */
	snprintf(cmd, sizeof(cmd), "CONNECT 127.0.0.1:%d tls ca name mail.example.com\n", tback_port);
	fd = via_front(cmd, line, sizeof(line));
	if (strstr(line, "FAILED TLS certificate verification failed") == NULL)
		fail_msg("got '%s'", line);
	close(fd);
	/* An IP address is checked as an address: the certificate has none. */
	snprintf(cmd, sizeof(cmd), "CONNECT 127.0.0.1:%d tls ca\n", tback_port);
	fd = via_front(cmd, line, sizeof(line));
	if (strstr(line, "FAILED TLS certificate verification failed") == NULL)
		fail_msg("got '%s'", line);
	close(fd);
	/* Verification on by default: a self-signed certificate is refused. */
	snprintf(cmd, sizeof(cmd), "CONNECT localhost:%d tls default\n", tback_port);
	fd = via_front(cmd, line, sizeof(line));
	if (strstr(line, "FAILED TLS certificate verification failed: self") == NULL)
		fail_msg("got '%s'", line);
	close(fd);
	/* Only an operator's explicit "no verification" accepts it. */
	snprintf(cmd, sizeof(cmd), "CONNECT 127.0.0.1:%d tls none\n", tback_port);
	fd = via_front(cmd, line, sizeof(line));
	assert_memory_equal(line, "PEER ", 5);
	close(fd);
}

static void test_connect_failures(void **state)
{
	char cmd[160], line[256];
	double t0;
	int fd;

	/* Refused. */
	snprintf(cmd, sizeof(cmd), "CONNECT 127.0.0.1:%d\n", pick_port());
	fd = via_front(cmd, line, sizeof(line));
	if (strstr(line, "FAILED connection refused") == NULL)
		fail_msg("got '%s'", line);
	close(fd);
	/* A peer that accepts but never completes TLS: the deadline. */
	snprintf(cmd, sizeof(cmd), "CONNECT 127.0.0.1:%d tls none ms 300\n", silent_port);
	t0 = now_s();
	fd = via_front(cmd, line, sizeof(line));
	assert_string_equal(line, "FAILED timed out");
	assert_true(now_s() - t0 < 2.0);
	close(fd);
	/* A name that does not resolve. */
	fd = via_front("CONNECT no-such-host.invalid:143\n", line, sizeof(line));
	if (strstr(line, "FAILED cannot resolve no-such-host.invalid") == NULL)
		fail_msg("got '%s'", line);
	close(fd);
	/* Bad addresses are refused before anything starts. */
	fd = via_front("CONNECT nonsense\n", line, sizeof(line));
	if (strstr(line, "FAILED bad address") == NULL)
		fail_msg("got '%s'", line);
	close(fd);
	fd = via_front("CONNECT unix:relative\n", line, sizeof(line));
	if (strstr(line, "FAILED bad unix socket path") == NULL)
		fail_msg("got '%s'", line);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_relay_with_proxy_header),
		cmocka_unit_test(test_relay_backpressure),
		cmocka_unit_test(test_tls_verification),
		cmocka_unit_test(test_connect_failures),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
