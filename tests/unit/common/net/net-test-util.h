/* Helpers for the tests that run a real runtime (test-workers, test-connect,
 * test-defer): free ports, clients, a clock, and a runtime with one
 * listener running on its own thread. Header-only; each test includes it
 * once. */
#ifndef SORA_TEST_NET_UTIL_H
#define SORA_TEST_NET_UTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/config/config.h"
#include "common/net/net.h"

/* A port the kernel just handed out (and that is free again). */
static inline int test_pick_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0), port;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sin);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(s, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(s, (struct sockaddr *)&sin, &slen);
	port = ntohs(sin.sin_port);
	close(s);
	return port;
}

/* Connects to 127.0.0.1:port, retrying while the runtime starts; reads time
 * out after 10 s. rcvbuf > 0 shrinks the receive buffer (a client that is
 * meant to stall quickly). */
static inline int test_connect(int port, int rcvbuf)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = { .tv_sec = 10 };

	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < 100; i++) {
		if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
			break;
		usleep(20000);
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static inline double test_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A runtime: the configuration, its loops and the thread running them. */
struct test_runtime {
	struct sora_config *cfg;
	struct sora_net *net;
	pthread_t runner;
};

static inline void *test_runtime_run(void *arg)
{
	sora_net_run(((struct test_runtime *)arg)->net);
	return NULL;
}

/* Loads config (its first server is the listener, served by handler),
 * binds and runs the loops on a thread. 0, or -1 with err set. */
static inline int test_runtime_start(struct test_runtime *rt, const char *config, int loops,
				     int workers, const struct sora_conn_handler *handler, char *err,
				     size_t errsize)
{
	struct sora_net_params params = { .loops = loops, .workers = workers };

	memset(rt, 0, sizeof(*rt));
	if (sora_config_load_string(config, strlen(config), "test.toml", &rt->cfg, err, errsize) < 0 ||
	    sora_net_create(rt->cfg, &params, &rt->net, err, errsize) < 0 ||
	    sora_net_add_listener(rt->net, &rt->cfg->servers[0], handler, err, errsize) < 0 ||
	    sora_net_bind(rt->net, err, errsize) < 0)
		return -1;
	return pthread_create(&rt->runner, NULL, test_runtime_run, rt) == 0 ? 0 : -1;
}

static inline void test_runtime_stop(struct test_runtime *rt)
{
	sora_net_stop(rt->net);
	pthread_join(rt->runner, NULL);
	sora_net_free(&rt->net);
	sora_config_free(&rt->cfg);
}

#endif
