#include "common/metrics/http.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "common/core/buf.h"
#include "common/core/cidr.h"
#include "common/core/log.h"
#include "common/core/str.h"
#include "common/metrics/metrics.h"

#define DEFAULT_PATH "/metrics"
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* A page past this means something registers series without bound; failing
 * the scrape with 500 is better than handing Prometheus hundreds of MB. */
#define MAX_PAGE (64u * 1024 * 1024)
/* Scrapers open one connection per interval; these limits only stop a
 * local misbehaving client from tying up the thread or memory. */
#define CONNECTION_LIMIT 32
#define PER_IP_CONNECTION_LIMIT 8
#define CONNECTION_TIMEOUT_S 30
#define REFUSAL_LOG_INTERVAL_S 60

struct sora_metrics_http {
	struct MHD_Daemon *daemon;
	char *path;
	struct sora_cidr_list allowed;  /* owned copy; loopback if given empty */
	int port;
	/* Touched only by the MHD thread (the accept policy runs there). */
	time_t refusal_logged_at;
	uint64_t refusals_unlogged;
};

/* libmicrohttpd's error logger: the format comes from the library. */
__attribute__((format(printf, 2, 0)))
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512], esc[600];
	size_t len;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	len = strlen(msg);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
		len--;
	/* MHD messages can quote request bytes, which are client data. */
	sora_warn(NULL, "metrics http: %s", sora_log_escape(sora_str_make(msg, len), esc,
							    sizeof(esc)));
}

static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	struct sora_metrics_http *srv = cls;
	struct sora_ip ip;
	char text[64];
	time_t now;

	if (addr != NULL && sora_ip_from_sockaddr(addr, &ip) == 0 &&
	    sora_cidr_list_match(&srv->allowed, &ip))
		return MHD_YES;
	srv->refusals_unlogged++;
	now = time(NULL);
	if (now - srv->refusal_logged_at >= REFUSAL_LOG_INTERVAL_S) {
		if (addr == NULL || sora_ip_from_sockaddr(addr, &ip) != 0)
			sora_strlcpy(text, "(unknown)", sizeof(text));
		else
			sora_ip_format(&ip, text, sizeof(text));
		sora_warn(NULL, "metrics http: refused connection from %s, not in allowed_hosts "
			  "(%llu refused since the last message)", text,
			  (unsigned long long)srv->refusals_unlogged);
		srv->refusal_logged_at = now;
		srv->refusals_unlogged = 0;
	}
	return MHD_NO;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned int status,
				  const char *body, const char *allow)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(strlen(body), (void *)body,
					       MHD_RESPMEM_PERSISTENT);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (allow != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result reply_metrics(struct MHD_Connection *conn)
{
	struct MHD_Response *resp;
	struct sora_buf page;
	enum MHD_Result ret;

	sora_buf_init(&page, MAX_PAGE);
	if (sora_metrics_render(&page) < 0) {
		sora_buf_free(&page);
		sora_error(NULL, "metrics http: rendering the metrics failed (out of memory or "
			   "page larger than %u bytes)", MAX_PAGE);
		return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
				  "cannot render metrics\n", NULL);
	}
	if (page.len == 0)
		resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	else
		resp = MHD_create_response_from_buffer(page.len, page.data,
						       MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		sora_buf_free(&page);
		return MHD_NO;
	}
	/* MHD now owns page.data (it free()s it with the response). */
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
	ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* MHD calls this once when the headers are complete, then once per piece of
 * body, then once more with no data. Other methods are answered on the first
 * call: MHD then closes the connection instead of reading the body, so an
 * upload is never buffered. GET and HEAD are answered on the last call,
 * after the (normally empty) body has been skipped, which lets MHD keep the
 * connection alive for the scraper's next request. */
static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **req_cls)
{
	static int headers_seen;
	struct sora_metrics_http *srv = cls;

	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n",
				  "GET, HEAD");
	if (*req_cls == NULL) {
		*req_cls = &headers_seen;
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (url == NULL || strcmp(url, srv->path) != 0)
		return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found\n", NULL);
	return reply_metrics(conn);
}

/* Splits addr into a host (possibly empty) and a port. */
static int parse_addr(const char *addr, char *host, size_t host_size, uint16_t *port_r,
		      const char **error_r)
{
	const char *colon, *host_start = addr, *host_end;
	uint64_t port;

	if (addr == NULL || *addr == '\0') {
		*error_r = "metrics address is empty";
		return -1;
	}
	if (addr[0] == '[') {
		host_start = addr + 1;
		host_end = strchr(host_start, ']');
		if (host_end == NULL || host_end[1] != ':') {
			*error_r = "metrics address: expected \"[v6-address]:port\"";
			return -1;
		}
		colon = host_end + 1;
	} else {
		colon = strrchr(addr, ':');
		if (colon == NULL) {
			*error_r = "metrics address: expected \"host:port\" or \":port\"";
			return -1;
		}
		host_end = colon;
		if (memchr(addr, ':', (size_t)(colon - addr)) != NULL) {
			*error_r = "metrics address: an IPv6 address needs brackets, "
				   "\"[v6-address]:port\"";
			return -1;
		}
	}
	if (sora_str_to_u64(sora_str_c(colon + 1), 65535, &port) < 0) {
		*error_r = "metrics address: invalid port";
		return -1;
	}
	if ((size_t)(host_end - host_start) >= host_size) {
		*error_r = "metrics address: host name too long";
		return -1;
	}
	memcpy(host, host_start, (size_t)(host_end - host_start));
	host[host_end - host_start] = '\0';
	*port_r = (uint16_t)port;
	return 0;
}

static struct MHD_Daemon *start_daemon(struct sora_metrics_http *srv, unsigned int flags,
				       uint16_t port, const struct sockaddr *sa)
{
	/* The port is in sa; passing it too only makes MHD's messages right. */
	return MHD_start_daemon(flags, port, accept_policy, srv, handle_request, srv,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				MHD_OPTION_SOCK_ADDR, sa,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned int)CONNECTION_LIMIT,
				MHD_OPTION_PER_IP_CONNECTION_LIMIT,
				(unsigned int)PER_IP_CONNECTION_LIMIT,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)CONNECTION_TIMEOUT_S,
				MHD_OPTION_END);
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

int sora_metrics_http_start(const char *addr, const char *path,
			    const struct sora_cidr_list *allowed_hosts,
			    struct sora_metrics_http **server_r, const char **error_r)
{
	const unsigned int base = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
				  MHD_USE_ERROR_LOG;
	struct sora_metrics_http *srv;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct addrinfo hints, *res = NULL;
	const union MHD_DaemonInfo *info;
	char host[256];
	uint16_t port;
	int ret = -1, gai;

	*server_r = NULL;
	if (parse_addr(addr, host, sizeof(host), &port, error_r) < 0)
		return -1;
	if (path != NULL && path[0] != '\0' && path[0] != '/') {
		*error_r = "metrics path must start with '/'";
		return -1;
	}
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	srv->path = strdup(path != NULL && path[0] != '\0' ? path : DEFAULT_PATH);
	if (srv->path == NULL) {
		*error_r = "out of memory";
		goto out;
	}
	if (copy_allowed(&srv->allowed, allowed_hosts, error_r) < 0)
		goto out;

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
		srv->daemon = start_daemon(srv, base | MHD_USE_DUAL_STACK, port,
					   (const struct sockaddr *)&sin6);
		if (srv->daemon == NULL) {
			sin.sin_addr.s_addr = htonl(INADDR_ANY);
			srv->daemon = start_daemon(srv, base, port, (const struct sockaddr *)&sin);
		}
	} else {
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE;
		gai = getaddrinfo(host, NULL, &hints, &res);
		if (gai != 0) {
			sora_error(NULL, "metrics http: cannot resolve \"%s\": %s", host,
				   gai_strerror(gai));
			*error_r = "metrics address: cannot resolve host";
			goto out;
		}
		if (res->ai_family == AF_INET6) {
			memcpy(&sin6, res->ai_addr, sizeof(sin6));
			sin6.sin6_port = htons(port);
			/* The wildcard "[::]" also takes IPv4; a specific v6
			 * address can only be reached over IPv6. */
			srv->daemon = start_daemon(srv, base | (IN6_IS_ADDR_UNSPECIFIED(&sin6.sin6_addr)
						   ? MHD_USE_DUAL_STACK : MHD_USE_IPv6), port,
						   (const struct sockaddr *)&sin6);
		} else if (res->ai_family == AF_INET) {
			memcpy(&sin, res->ai_addr, sizeof(sin));
			sin.sin_port = htons(port);
			srv->daemon = start_daemon(srv, base, port, (const struct sockaddr *)&sin);
		} else {
			*error_r = "metrics address: host is neither IPv4 nor IPv6";
			goto out;
		}
	}
	if (srv->daemon == NULL) {
		sora_error(NULL, "metrics http: cannot listen on %s", addr);
		*error_r = "cannot start the metrics HTTP server (address in use or not local?)";
		goto out;
	}
	info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
	srv->port = info != NULL && info->port != 0 ? info->port : port;
	sora_info(NULL, "metrics http: listening on %s (port %d), path %s", addr, srv->port,
		  srv->path);
	*server_r = srv;
	srv = NULL;
	ret = 0;
out:
	if (res != NULL)
		freeaddrinfo(res);
	if (srv != NULL)
		sora_metrics_http_stop(&srv);
	return ret;
}

int sora_metrics_http_port(const struct sora_metrics_http *server)
{
	return server->port;
}

void sora_metrics_http_stop(struct sora_metrics_http **server)
{
	struct sora_metrics_http *srv = *server;

	if (srv == NULL)
		return;
	*server = NULL;
	if (srv->daemon != NULL)
		MHD_stop_daemon(srv->daemon);
	sora_cidr_list_free(&srv->allowed);
	free(srv->path);
	free(srv);
}
