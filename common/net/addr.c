#include "common/net/addr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "common/core/str.h"

int sora_addr_split(const char *addr, char *host, size_t hostsize, uint64_t *port_r,
		    char *err, size_t errsize)
{
	const char *colon, *port;
	size_t hostlen;

	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');
		if (end == NULL || end[1] != ':') {
			snprintf(err, errsize, "bad address %s (expected [v6]:port)", addr);
			return -1;
		}
		hostlen = (size_t)(end - addr - 1);
		if (hostlen >= hostsize) {
			snprintf(err, errsize, "bad address %s", addr);
			return -1;
		}
		memcpy(host, addr + 1, hostlen);
		host[hostlen] = '\0';
		port = end + 2;
	} else {
		colon = strrchr(addr, ':');
		if (colon == NULL) {
			snprintf(err, errsize, "bad address %s (expected host:port or :port)", addr);
			return -1;
		}
		hostlen = (size_t)(colon - addr);
		if (hostlen >= hostsize) {
			snprintf(err, errsize, "bad address %s", addr);
			return -1;
		}
		memcpy(host, addr, hostlen);
		host[hostlen] = '\0';
		port = colon + 1;
	}
	if (sora_str_to_u64(sora_str_c(port), 65535, port_r) < 0) {
		snprintf(err, errsize, "bad port in address %s", addr);
		return -1;
	}
	return 0;
}

int sora_listen_addr_parse(const char *addr, struct sora_listen_addr *out,
			   char *err, size_t errsize)
{
	char host[256];
	struct addrinfo hints, *res = NULL;
	uint64_t portnum;
	int rc;

	memset(out, 0, sizeof(*out));
	if (addr == NULL || *addr == '\0') {
		snprintf(err, errsize, "empty address");
		return -1;
	}
	if (strncmp(addr, "unix:", 5) == 0) {
		const char *path = addr + 5;
		if (path[0] != '/') {
			snprintf(err, errsize, "unix socket path must be absolute: %s", addr);
			return -1;
		}
		if (strlen(path) >= sizeof(out->path)) {
			snprintf(err, errsize, "unix socket path too long (max %zu): %s",
				 sizeof(out->path) - 1, addr);
			return -1;
		}
		out->is_unix = true;
		sora_strlcpy(out->path, path, sizeof(out->path));
		return 0;
	}

	if (sora_addr_split(addr, host, sizeof(host), &portnum, err, errsize) < 0)
		return -1;

	if (host[0] == '\0' || strcmp(host, "*") == 0) {
		/* ":port" listens on every interface, v4 and v6 alike. */
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_any;
		s6->sin6_port = htons((uint16_t)portnum);
		out->sslen = sizeof(*s6);
		return 0;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0 || res == NULL) {
		snprintf(err, errsize, "cannot resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->sslen = res->ai_addrlen;
	freeaddrinfo(res);
	if (out->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&out->ss)->sin_port = htons((uint16_t)portnum);
	else
		((struct sockaddr_in6 *)&out->ss)->sin6_port = htons((uint16_t)portnum);
	return 0;
}

const char *sora_sockaddr_ip(const struct sockaddr *sa, char *buf, size_t size)
{
	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)size);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], buf, (socklen_t)size);
		else
			inet_ntop(AF_INET6, &s6->sin6_addr, buf, (socklen_t)size);
	} else if (sa->sa_family == AF_UNIX) {
		snprintf(buf, size, "unix");
	} else {
		snprintf(buf, size, "?");
	}
	return buf;
}

int sora_sockaddr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return 0;
}

const char *sora_sockaddr_format(const struct sockaddr *sa, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_UNIX) {
		snprintf(buf, size, "unix");
		return buf;
	}
	sora_sockaddr_ip(sa, ip, sizeof(ip));
	if (strchr(ip, ':') != NULL)
		snprintf(buf, size, "[%s]:%d", ip, sora_sockaddr_port(sa));
	else
		snprintf(buf, size, "%s:%d", ip, sora_sockaddr_port(sa));
	return buf;
}
