/* The `metrics` server: serves the Prometheus registry of metrics.h over
 * HTTP with libmicrohttpd, on its own internal thread, so a scrape never
 * runs on (or waits for) an event loop.
 *
 * Behaviour:
 *   GET/HEAD <path>  200, Content-Type "text/plain; version=0.0.4; charset=utf-8"
 *   other path       404
 *   other method     405 with "Allow: GET, HEAD"
 * Access: allowed_hosts is enforced at accept time by the shared listener
 * (common/net/httpd.h; an empty list means loopback only).
 *
 * Ownership: the server copies addr, path and allowed_hosts; the caller may
 * free them after start returns. The server is freed by
 * sora_metrics_http_stop().
 *
 * Thread safety: start and stop from one (control) thread; stop joins the
 * server thread. sora_metrics_http_port() may be called from any thread
 * while the server runs. */
#ifndef SORA_METRICS_HTTP_H
#define SORA_METRICS_HTTP_H

struct sora_cidr_list;
struct sora_metrics_http;

/* addr: "host:port", ":port" (all addresses, IPv6 dual stack when the host
 * has IPv6, else IPv4), "[v6]:port"; host may be a name, the first address
 * it resolves to is used. Port 0 lets the kernel choose (see
 * sora_metrics_http_port()). path: NULL or "" for "/metrics". allowed_hosts:
 * NULL or empty for loopback only. Returns 0 and *server_r, or -1 with
 * *error_r (a static string; details also go to the log). */
int sora_metrics_http_start(const char *addr, const char *path,
			    const struct sora_cidr_list *allowed_hosts,
			    struct sora_metrics_http **server_r, const char **error_r);

/* The TCP port the server listens on (the real one when started on port 0). */
int sora_metrics_http_port(const struct sora_metrics_http *server);

/* Stops the server, waits for its thread and frees it. NULL-safe; clears
 * *server. */
void sora_metrics_http_stop(struct sora_metrics_http **server);

#endif
