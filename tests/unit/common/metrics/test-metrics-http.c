/* Tests of the metrics HTTP server against a plain socket client. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/core/buf.h"
#include "common/core/cidr.h"
#include "common/metrics/http.h"
#include "common/metrics/metrics.h"

#define RESP_MAX 65536

/* Sends req to host:port and reads the reply until the server closes.
 * Returns the number of bytes read (0 when the server closed without a
 * reply), or -1 if the connection could not be made. */
static ssize_t http_raw(int family, int port, const char *req, char *resp, size_t size)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	struct timeval tv = { .tv_sec = 5 };
	socklen_t len;
	size_t got = 0;
	int fd;

	resp[0] = '\0';
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*sin);
	} else {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		sin6->sin6_addr = in6addr_loopback;
		len = sizeof(*sin6);
	}
	fd = socket(family, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		close(fd);
		return -1;
	}
	/* A refused client may see the close before or after its write. */
	(void)send(fd, req, strlen(req), MSG_NOSIGNAL);
	for (;;) {
		ssize_t n = recv(fd, resp + got, size - 1 - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* ECONNRESET after a refusal is the same as a close; a
			 * timeout means the server hung, which must fail. */
			assert_false(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
			break;
		}
		got += (size_t)n;
		assert_true(got < size - 1);
	}
	resp[got] = '\0';
	close(fd);
	return (ssize_t)got;
}

static ssize_t http(int port, const char *req, char *resp)
{
	return http_raw(AF_INET, port, req, resp, RESP_MAX);
}

/* MHD answers HTTP/1.0 requests as HTTP/1.1, which RFC 9110 allows. */
static void assert_status(const char *resp, int status)
{
	char expect[32];

	snprintf(expect, sizeof(expect), "HTTP/1.1 %d ", status);
	assert_true(strncmp(resp, expect, strlen(expect)) == 0);
}

static const char *body_of(const char *resp)
{
	const char *p = strstr(resp, "\r\n\r\n");

	assert_non_null(p);
	return p + 4;
}

static bool ipv6_loopback_available(void)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) == 0;
	close(fd);
	return ok;
}

static int setup(void **state)
{
	sora_metrics_reset_for_tests();
	sora_metric_inc(sora_metric_with(sora_metric_counter("http_test_total", "Test counter.",
							     "proto"), "imap"));
	return 0;
}

static int teardown(void **state)
{
	sora_metrics_reset_for_tests();
	return 0;
}

static void test_get_metrics(void **state)
{
	struct sora_metrics_http *srv = NULL;
	const char *error = NULL;
	char *resp = malloc(RESP_MAX);
	struct sora_buf expect;
	int port;

	assert_non_null(resp);
	assert_int_equal(sora_metrics_http_start("127.0.0.1:0", NULL, NULL, &srv, &error), 0);
	assert_non_null(srv);
	port = sora_metrics_http_port(srv);
	assert_true(port > 0 && port < 65536);

	assert_true(http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			 resp) > 0);
	assert_status(resp, 200);
	assert_non_null(strstr(resp, "\r\nContent-Type: text/plain; version=0.0.4; "
				     "charset=utf-8\r\n"));
	/* The body is exactly the registry's rendering. */
	sora_buf_init(&expect, 0);
	assert_int_equal(sora_metrics_render(&expect), 0);
	assert_int_equal(strlen(body_of(resp)), expect.len);
	assert_memory_equal(body_of(resp), expect.data, expect.len);
	assert_non_null(strstr(body_of(resp), "sora_http_test_total{proto=\"imap\"} 1\n"));
	sora_buf_free(&expect);

	/* The connection stays open for the scraper's next request. */
	assert_true(http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
			       "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			 resp) > 0);
	assert_status(resp, 200);
	assert_non_null(strstr(strstr(resp, "http_test_total{") + 1, "\r\n\r\n# HELP"));
	assert_non_null(strstr(strstr(resp, "http_test_total{") + 1, "HTTP/1.1 200 "));

	/* A body on a GET is skipped, not an error. */
	assert_true(http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
			       "Content-Length: 3\r\n\r\nabc", resp) > 0);
	assert_status(resp, 200);
	assert_non_null(strstr(resp, "http_test_total"));

	/* The query string is not part of the path. */
	assert_true(http(port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n", resp) > 0);
	assert_status(resp, 200);

	/* HEAD: headers only. */
	assert_true(http(port, "HEAD /metrics HTTP/1.0\r\n\r\n", resp) > 0);
	assert_status(resp, 200);
	assert_string_equal(body_of(resp), "");

	sora_metrics_http_stop(&srv);
	assert_null(srv);
	free(resp);
}

static void test_not_found_and_method(void **state)
{
	struct sora_metrics_http *srv = NULL;
	const char *error = NULL;
	char *resp = malloc(RESP_MAX);
	int port;

	assert_non_null(resp);
	assert_int_equal(sora_metrics_http_start("127.0.0.1:0", "", NULL, &srv, &error), 0);
	port = sora_metrics_http_port(srv);

	assert_true(http(port, "GET /other HTTP/1.0\r\n\r\n", resp) > 0);
	assert_status(resp, 404);
	assert_null(strstr(resp, "http_test_total"));
	assert_true(http(port, "GET /metrics/x HTTP/1.0\r\n\r\n", resp) > 0);
	assert_status(resp, 404);

	assert_true(http(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
			       "Content-Length: 5\r\n\r\nhello", resp) > 0);
	assert_status(resp, 405);
	assert_non_null(strstr(resp, "\r\nAllow: GET, HEAD\r\n"));
	assert_null(strstr(resp, "http_test_total"));
	assert_true(http(port, "DELETE /metrics HTTP/1.0\r\n\r\n", resp) > 0);
	assert_status(resp, 405);

	sora_metrics_http_stop(&srv);
	free(resp);
}

static void test_custom_path(void **state)
{
	struct sora_metrics_http *srv = NULL;
	const char *error = NULL;
	char *resp = malloc(RESP_MAX);
	int port;

	assert_non_null(resp);
	assert_int_equal(sora_metrics_http_start("127.0.0.1:0", "/prom", NULL, &srv, &error), 0);
	port = sora_metrics_http_port(srv);
	assert_true(http(port, "GET /prom HTTP/1.0\r\n\r\n", resp) > 0);
	assert_status(resp, 200);
	assert_non_null(strstr(resp, "http_test_total"));
	assert_true(http(port, "GET /metrics HTTP/1.0\r\n\r\n", resp) > 0);
	assert_status(resp, 404);
	sora_metrics_http_stop(&srv);
	free(resp);
}

static void test_allowed_hosts(void **state)
{
	struct sora_metrics_http *srv = NULL;
	struct sora_cidr_list other = { 0 }, local = { 0 };
	const char *error = NULL;
	char *resp = malloc(RESP_MAX);
	int port;

	assert_non_null(resp);
	assert_int_equal(sora_cidr_list_add(&other, "10.0.0.0/8", &error), 0);
	assert_int_equal(sora_cidr_list_add(&other, "2001:db8::/32", &error), 0);
	assert_int_equal(sora_cidr_list_add(&local, "127.0.0.1", &error), 0);

	/* 127.0.0.1 is not in the list: the connection is closed unanswered. */
	assert_int_equal(sora_metrics_http_start("127.0.0.1:0", NULL, &other, &srv, &error), 0);
	/* The server keeps its own copy of the list. */
	sora_cidr_list_free(&other);
	port = sora_metrics_http_port(srv);
	assert_true(http(port, "GET /metrics HTTP/1.0\r\n\r\n", resp) <= 0);
	assert_null(strstr(resp, "HTTP/"));
	assert_null(strstr(resp, "http_test_total"));
	sora_metrics_http_stop(&srv);

	/* An explicit list that contains the client lets it in. */
	assert_int_equal(sora_metrics_http_start("127.0.0.1:0", NULL, &local, &srv, &error), 0);
	port = sora_metrics_http_port(srv);
	assert_true(http(port, "GET /metrics HTTP/1.0\r\n\r\n", resp) > 0);
	assert_status(resp, 200);
	sora_metrics_http_stop(&srv);
	sora_cidr_list_free(&local);
	free(resp);
}

static void test_dual_stack_and_v6(void **state)
{
	struct sora_metrics_http *srv = NULL;
	const char *error = NULL;
	char *resp = malloc(RESP_MAX);
	int port;

	assert_non_null(resp);
	/* ":port" listens everywhere; the default list admits loopback of
	 * both families (127.0.0.1 arrives v4-mapped on a dual-stack socket). */
	assert_int_equal(sora_metrics_http_start(":0", NULL, NULL, &srv, &error), 0);
	port = sora_metrics_http_port(srv);
	assert_true(http(port, "GET /metrics HTTP/1.0\r\n\r\n", resp) > 0);
	assert_status(resp, 200);
	if (ipv6_loopback_available()) {
		assert_true(http_raw(AF_INET6, port, "GET /metrics HTTP/1.0\r\n\r\n", resp,
				     RESP_MAX) > 0);
		assert_status(resp, 200);
	}
	sora_metrics_http_stop(&srv);

	/* A name is resolved (from /etc/hosts, no DNS needed). */
	assert_int_equal(sora_metrics_http_start("localhost:0", NULL, NULL, &srv, &error), 0);
	sora_metrics_http_stop(&srv);

	if (!ipv6_loopback_available()) {
		free(resp);
		skip();
	}
	assert_int_equal(sora_metrics_http_start("[::1]:0", NULL, NULL, &srv, &error), 0);
	port = sora_metrics_http_port(srv);
	assert_true(http_raw(AF_INET6, port, "GET /metrics HTTP/1.0\r\n\r\n", resp,
			     RESP_MAX) > 0);
	assert_status(resp, 200);
	/* A specific v6 address is not reachable over IPv4. */
	assert_int_equal(http(port, "GET /metrics HTTP/1.0\r\n\r\n", resp), -1);
	sora_metrics_http_stop(&srv);
	free(resp);
}

static void test_bad_addresses(void **state)
{
	static const char *const bad[] = {
		"", "nonsense", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:-1",
		"127.0.0.1:80x", "::1:80", "[::1]80", "[::1", "[::1]:",
	};
	struct sora_metrics_http *srv = (struct sora_metrics_http *)&srv;
	const char *error;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		error = NULL;
		assert_int_equal(sora_metrics_http_start(bad[i], NULL, NULL, &srv, &error), -1);
		assert_null(srv);
		assert_non_null(error);
	}
	error = NULL;
	assert_int_equal(sora_metrics_http_start("127.0.0.1:0", "metrics", NULL, &srv, &error),
			 -1);
	assert_non_null(error);
}

static void test_port_in_use(void **state)
{
	struct sora_metrics_http *a = NULL, *b = NULL;
	const char *error = NULL;
	char addr[32];

	assert_int_equal(sora_metrics_http_start("127.0.0.1:0", NULL, NULL, &a, &error), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", sora_metrics_http_port(a));
	assert_int_equal(sora_metrics_http_start(addr, NULL, NULL, &b, &error), -1);
	assert_null(b);
	assert_non_null(error);
	sora_metrics_http_stop(&a);
	/* Stopping NULL is a no-op. */
	sora_metrics_http_stop(&a);
	assert_null(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_found_and_method, setup, teardown),
		cmocka_unit_test_setup_teardown(test_custom_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_allowed_hosts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dual_stack_and_v6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_port_in_use, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
