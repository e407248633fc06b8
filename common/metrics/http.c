#include "common/metrics/http.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "common/core/buf.h"
#include "common/core/log.h"
#include "common/core/str.h"
#include "common/metrics/metrics.h"
#include "common/net/httpd.h"

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

struct sora_metrics_http {
	struct sora_httpd *httpd;
	char *path;
};

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

int sora_metrics_http_start(const char *addr, const char *path,
			    const struct sora_cidr_list *allowed_hosts,
			    struct sora_metrics_http **server_r, const char **error_r)
{
	struct sora_httpd_params params = {
		.name = "metrics http",
		.addr = addr,
		.allowed_hosts = allowed_hosts,
		.handler = handle_request,
		.threads = 1,
		.connection_limit = CONNECTION_LIMIT,
		.per_ip_connection_limit = PER_IP_CONNECTION_LIMIT,
		.timeout_s = CONNECTION_TIMEOUT_S,
	};
	struct sora_metrics_http *srv;

	*server_r = NULL;
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
		sora_metrics_http_stop(&srv);
		return -1;
	}
	params.handler_cls = srv;
	if (sora_httpd_start(&params, &srv->httpd, error_r) < 0) {
		sora_metrics_http_stop(&srv);
		return -1;
	}
	sora_info(NULL, "metrics http: listening on %s (port %d), path %s", addr,
		  sora_httpd_port(srv->httpd), srv->path);
	*server_r = srv;
	return 0;
}

int sora_metrics_http_port(const struct sora_metrics_http *server)
{
	return sora_httpd_port(server->httpd);
}

void sora_metrics_http_stop(struct sora_metrics_http **server)
{
	struct sora_metrics_http *srv = *server;

	if (srv == NULL)
		return;
	*server = NULL;
	sora_httpd_stop(&srv->httpd);
	free(srv->path);
	free(srv);
}
