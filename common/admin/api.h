/* The `http_api` server (docs/api.md): the administrative operations of
 * sora-admin as a JSON-over-HTTP API, served by sora-backend and sora-proxy
 * alike on libmicrohttpd's own threads (API_THREADS), each request using a
 * connection from the API's own small database pool, so an API call never
 * runs on, waits for or takes a connection from the protocol loops and
 * workers.
 *
 * Security: allowed_hosts is enforced at accept (common/net/httpd.h; empty
 * = loopback only); every request needs "Authorization: Bearer <api_key>"
 * (compared in constant time) and is answered 401 with WWW-Authenticate
 * otherwise, before its body is read; TLS when the server has tls = true
 * (tls_cert_file / tls_key_file); bodies over SORA_ADMIN_API_MAX_BODY get
 * 413; errors are JSON {"error": "..."} that name what the client did
 * wrong, never database or internal detail (that goes to the log). Each
 * request is logged (method, path, status, client, time; never the key or
 * the body) and counted in sora_http_api_requests_total{method,status}.
 *
 * Ownership: start copies what it needs from cfg and srv. Threads: start
 * and stop from the control thread; stop joins the server's threads. */
#ifndef SORA_ADMIN_API_H
#define SORA_ADMIN_API_H

#include "common/config/config.h"

#define SORA_ADMIN_API_MAX_BODY (64 * 1024)

struct sora_admin_api;

/* Returns 0 and *api_r, or -1 with *error_r (static text; details in the
 * log). */
int sora_admin_api_start(const struct sora_config *cfg, const struct sora_server_config *srv,
			 struct sora_admin_api **api_r, const char **error_r);

int sora_admin_api_port(const struct sora_admin_api *api);

/* NULL-safe; clears *api. */
void sora_admin_api_stop(struct sora_admin_api **api);

#endif
