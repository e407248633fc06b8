/* Listener and peer addresses.
 *
 * Listener syntax (DESIGN.md §7): "host:port", ":port" (all interfaces,
 * dual stack), "[v6]:port", or "unix:/absolute/path".
 *
 * Thread safety: pure functions. */
#ifndef SORA_NET_ADDR_H
#define SORA_NET_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct sora_listen_addr {
	bool is_unix;
	char path[108];                  /* unix socket path */
	struct sockaddr_storage ss;      /* TCP address (port in it) */
	socklen_t sslen;
};

/* Parses addr; names are resolved with getaddrinfo (numeric or not),
 * preferring the first result. -1 with a reason in err on failure. */
int sora_listen_addr_parse(const char *addr, struct sora_listen_addr *out,
			   char *err, size_t errsize);

/* Splits "host:port" or "[v6]:port" into host (brackets removed; "" for
 * ":port") and port (0..65535). -1 with a reason in err. */
int sora_addr_split(const char *addr, char *host, size_t hostsize, uint64_t *port_r,
		    char *err, size_t errsize);

/* "1.2.3.4:143", "[2001:db8::1]:143", "unix" (for AF_UNIX), into buf. */
const char *sora_sockaddr_format(const struct sockaddr *sa, char *buf, size_t size);
/* Only the address part ("1.2.3.4", "2001:db8::1"). */
const char *sora_sockaddr_ip(const struct sockaddr *sa, char *buf, size_t size);
int sora_sockaddr_port(const struct sockaddr *sa);

#endif
