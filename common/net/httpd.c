#include "common/net/httpd.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/core/cidr.h"
#include "common/core/log.h"
#include "common/core/str.h"

#define REFUSAL_LOG_INTERVAL_S 60
#define MAX_OPTIONS 16

struct sora_httpd {
	struct MHD_Daemon *daemon;
	char name[32];
	struct sora_cidr_list allowed;  /* owned copy; loopback if given empty */
	char *cert_pem, *key_pem;       /* owned; MHD keeps pointers to them */
	int port;
	/* The accept policy runs on every MHD thread. */
	pthread_mutex_t refusal_lock;
	time_t refusal_logged_at;
	uint64_t refusals_unlogged;
};

/* libmicrohttpd's error logger: the format comes from the library. */
__attribute__((format(printf, 2, 0)))
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	const struct sora_httpd *srv = cls;
	char msg[512], esc[600];
	size_t len;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	len = strlen(msg);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
		len--;
	/* MHD messages can quote request bytes, which are client data. */
	sora_warn(NULL, "%s: %s", srv->name, sora_log_escape(sora_str_make(msg, len), esc,
							      sizeof(esc)));
}

static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	struct sora_httpd *srv = cls;
	struct sora_ip ip;
	char text[64];
	time_t now;

	if (addr != NULL && sora_ip_from_sockaddr(addr, &ip) == 0 &&
	    sora_cidr_list_match(&srv->allowed, &ip))
		return MHD_YES;
	pthread_mutex_lock(&srv->refusal_lock);
	srv->refusals_unlogged++;
	now = time(NULL);
	if (now - srv->refusal_logged_at >= REFUSAL_LOG_INTERVAL_S) {
		if (addr == NULL || sora_ip_from_sockaddr(addr, &ip) != 0)
			sora_strlcpy(text, "(unknown)", sizeof(text));
		else
			sora_ip_format(&ip, text, sizeof(text));
		sora_warn(NULL, "%s: refused connection from %s, not in allowed_hosts "
			  "(%llu refused since the last message)", srv->name, text,
			  (unsigned long long)srv->refusals_unlogged);
		srv->refusal_logged_at = now;
		srv->refusals_unlogged = 0;
	}
	pthread_mutex_unlock(&srv->refusal_lock);
	return MHD_NO;
}

/* Splits addr into a host (possibly empty) and a port. */
static int parse_addr(const char *addr, char *host, size_t host_size, uint16_t *port_r,
		      const char **error_r)
{
	const char *colon, *host_start = addr, *host_end;
	uint64_t port;

	if (addr == NULL || *addr == '\0') {
		*error_r = "address is empty";
		return -1;
	}
	if (addr[0] == '[') {
		host_start = addr + 1;
		host_end = strchr(host_start, ']');
		if (host_end == NULL || host_end[1] != ':') {
			*error_r = "address: expected \"[v6-address]:port\"";
			return -1;
		}
		colon = host_end + 1;
	} else {
		colon = strrchr(addr, ':');
		if (colon == NULL) {
			*error_r = "address: expected \"host:port\" or \":port\"";
			return -1;
		}
		host_end = colon;
		if (memchr(addr, ':', (size_t)(colon - addr)) != NULL) {
			*error_r = "address: an IPv6 address needs brackets, "
				   "\"[v6-address]:port\"";
			return -1;
		}
	}
	if (sora_str_to_u64(sora_str_c(colon + 1), 65535, &port) < 0) {
		*error_r = "address: invalid port";
		return -1;
	}
	if ((size_t)(host_end - host_start) >= host_size) {
		*error_r = "address: host name too long";
		return -1;
	}
	memcpy(host, host_start, (size_t)(host_end - host_start));
	host[host_end - host_start] = '\0';
	*port_r = (uint16_t)port;
	return 0;
}

static struct MHD_Daemon *start_daemon(struct sora_httpd *srv,
				       const struct sora_httpd_params *p, unsigned int flags,
				       uint16_t port, const struct sockaddr *sa)
{
	struct MHD_OptionItem opts[MAX_OPTIONS];
	size_t n = 0;

#define OPT(o, v, ptr) opts[n++] = (struct MHD_OptionItem){ (o), (intptr_t)(v), (ptr) }
	OPT(MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, srv);
	OPT(MHD_OPTION_SOCK_ADDR, 0, (void *)sa);
	OPT(MHD_OPTION_CONNECTION_LIMIT, p->connection_limit, NULL);
	if (p->per_ip_connection_limit > 0)
		OPT(MHD_OPTION_PER_IP_CONNECTION_LIMIT, p->per_ip_connection_limit, NULL);
	OPT(MHD_OPTION_CONNECTION_TIMEOUT, p->timeout_s, NULL);
	if (p->threads > 1)
		OPT(MHD_OPTION_THREAD_POOL_SIZE, p->threads, NULL);
	if (p->completed != NULL)
		OPT(MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)p->completed, p->completed_cls);
	if (p->unescape != NULL)
		OPT(MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)p->unescape, NULL);
	if (srv->cert_pem != NULL) {
		OPT(MHD_OPTION_HTTPS_MEM_CERT, 0, srv->cert_pem);
		OPT(MHD_OPTION_HTTPS_MEM_KEY, 0, srv->key_pem);
		flags |= MHD_USE_TLS;
	}
	OPT(MHD_OPTION_END, 0, NULL);
#undef OPT
	/* The port is in sa; passing it too only makes MHD's messages right. */
	return MHD_start_daemon(flags, port, accept_policy, srv, p->handler, p->handler_cls,
				MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
}

static int copy_allowed(struct sora_cidr_list *dst, const struct sora_cidr_list *src,
			const char **error_r)
{
	dst->items = NULL;
	dst->count = 0;
	if (src == NULL || src->count == 0) {
		if (sora_cidr_list_add(dst, "127.0.0.0/8", error_r) < 0 ||
		    sora_cidr_list_add(dst, "::1", error_r) < 0)
			return -1;
		return 0;
	}
	dst->items = malloc(src->count * sizeof(*dst->items));
	if (dst->items == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	memcpy(dst->items, src->items, src->count * sizeof(*dst->items));
	dst->count = src->count;
	return 0;
}

static void free_pem(char **pem)
{
	if (*pem != NULL) {
		/* The key is secret; the certificate costs nothing to wipe too. */
		explicit_bzero(*pem, strlen(*pem));
		free(*pem);
		*pem = NULL;
	}
}

int sora_httpd_start(const struct sora_httpd_params *p, struct sora_httpd **server_r,
		     const char **error_r)
{
	const unsigned int base = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
				  MHD_USE_ERROR_LOG;
	struct sora_httpd *srv;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct addrinfo hints, *res = NULL;
	const union MHD_DaemonInfo *info;
	char host[256];
	uint16_t port;
	int ret = -1, gai;

	*server_r = NULL;
	if (parse_addr(p->addr, host, sizeof(host), &port, error_r) < 0)
		return -1;
	if ((p->tls_cert_pem == NULL) != (p->tls_key_pem == NULL)) {
		*error_r = "TLS needs both a certificate and a key";
		return -1;
	}
	if (p->tls_cert_pem != NULL && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		*error_r = "this libmicrohttpd is built without TLS support";
		return -1;
	}
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	pthread_mutex_init(&srv->refusal_lock, NULL);
	sora_strlcpy(srv->name, p->name != NULL ? p->name : "http", sizeof(srv->name));
	if (copy_allowed(&srv->allowed, p->allowed_hosts, error_r) < 0)
		goto out;
	if (p->tls_cert_pem != NULL) {
		srv->cert_pem = strdup(p->tls_cert_pem);
		srv->key_pem = strdup(p->tls_key_pem);
		if (srv->cert_pem == NULL || srv->key_pem == NULL) {
			*error_r = "out of memory";
			goto out;
		}
	}

	memset(&sin, 0, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(port);
	if (host[0] == '\0') {
		/* All addresses: one dual-stack socket where the host has IPv6,
		 * plain IPv4 where it does not. */
		sin6.sin6_addr = in6addr_any;
		srv->daemon = start_daemon(srv, p, base | MHD_USE_DUAL_STACK, port,
					   (const struct sockaddr *)&sin6);
		if (srv->daemon == NULL) {
			sin.sin_addr.s_addr = htonl(INADDR_ANY);
			srv->daemon = start_daemon(srv, p, base, port,
						   (const struct sockaddr *)&sin);
		}
	} else {
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE;
		gai = getaddrinfo(host, NULL, &hints, &res);
		if (gai != 0) {
			sora_error(NULL, "%s: cannot resolve \"%s\": %s", srv->name, host,
				   gai_strerror(gai));
			*error_r = "address: cannot resolve host";
			goto out;
		}
		if (res->ai_family == AF_INET6) {
			memcpy(&sin6, res->ai_addr, sizeof(sin6));
			sin6.sin6_port = htons(port);
			/* The wildcard "[::]" also takes IPv4; a specific v6
			 * address can only be reached over IPv6. */
			srv->daemon = start_daemon(srv, p, base |
						   (IN6_IS_ADDR_UNSPECIFIED(&sin6.sin6_addr)
						    ? MHD_USE_DUAL_STACK : MHD_USE_IPv6), port,
						   (const struct sockaddr *)&sin6);
		} else if (res->ai_family == AF_INET) {
			memcpy(&sin, res->ai_addr, sizeof(sin));
			sin.sin_port = htons(port);
			srv->daemon = start_daemon(srv, p, base, port,
						   (const struct sockaddr *)&sin);
		} else {
			*error_r = "address: host is neither IPv4 nor IPv6";
			goto out;
		}
	}
	if (srv->daemon == NULL) {
		sora_error(NULL, "%s: cannot listen on %s", srv->name, p->addr);
		*error_r = srv->cert_pem != NULL
			? "cannot start the HTTP server (address in use, not local, or a bad "
			  "TLS certificate or key?)"
			: "cannot start the HTTP server (address in use or not local?)";
		goto out;
	}
	info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
	srv->port = info != NULL && info->port != 0 ? info->port : port;
	*server_r = srv;
	srv = NULL;
	ret = 0;
out:
	if (res != NULL)
		freeaddrinfo(res);
	if (srv != NULL)
		sora_httpd_stop(&srv);
	return ret;
}

int sora_httpd_port(const struct sora_httpd *server)
{
	return server->port;
}

void sora_httpd_stop(struct sora_httpd **server)
{
	struct sora_httpd *srv = *server;

	if (srv == NULL)
		return;
	*server = NULL;
	if (srv->daemon != NULL)
		MHD_stop_daemon(srv->daemon);
	sora_cidr_list_free(&srv->allowed);
	free_pem(&srv->cert_pem);
	free_pem(&srv->key_pem);
	pthread_mutex_destroy(&srv->refusal_lock);
	free(srv);
}

const char *sora_httpd_client(struct MHD_Connection *conn, char *buf, size_t size)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	struct sora_ip ip;

	if (ci == NULL || ci->client_addr == NULL ||
	    sora_ip_from_sockaddr(ci->client_addr, &ip) != 0)
		sora_strlcpy(buf, "(unknown)", size);
	else
		sora_ip_format(&ip, buf, size);
	return buf;
}
