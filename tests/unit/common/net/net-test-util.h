/* Helpers for the tests that run a real runtime (test-workers, test-connect):
 * free ports, clients, a clock. Header-only; each test includes it once. */
#ifndef SORA_TEST_NET_UTIL_H
#define SORA_TEST_NET_UTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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

#endif
