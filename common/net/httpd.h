/* An HTTP listener on libmicrohttpd, shared by the `metrics` server
 * (common/metrics/http.c) and the `http_api` server (common/admin/api.c):
 * address parsing, the allowed_hosts accept policy, optional TLS, bounded
 * connections and MHD's log routed into ours. The caller supplies the
 * request handler; this module knows nothing of paths or methods.
 *
 * Access: a client whose address is not in allowed_hosts (an empty list
 * means loopback only: 127.0.0.0/8 and ::1) is refused at accept time: the
 * connection is closed before any byte is read or written, so a stranger
 * learns nothing and costs no HTTP parsing (nor a TLS handshake). Refusals
 * are logged at most once a minute, with a count, so a scan cannot flood
 * the log.
 *
 * Threads: MHD runs `threads` internal threads (1 when 0); the handler and
 * the completion callback run on them, never on an event loop. start and
 * stop are called from one control thread; stop joins the threads.
 *
 * Ownership: the server copies addr, name, allowed_hosts and the PEM texts;
 * the caller may free them after start returns. */
#ifndef SORA_NET_HTTPD_H
#define SORA_NET_HTTPD_H

#include <stddef.h>

#include <microhttpd.h>

struct sora_cidr_list;
struct sora_httpd;

struct sora_httpd_params {
	const char *name;             /* log prefix: "metrics http", "http api" */
	/* "host:port", ":port" (all addresses, IPv6 dual stack when the host
	 * has IPv6, else IPv4), "[v6]:port"; host may be a name, the first
	 * address it resolves to is used. Port 0 lets the kernel choose. */
	const char *addr;
	const struct sora_cidr_list *allowed_hosts;  /* NULL/empty: loopback */
	MHD_AccessHandlerCallback handler;
	void *handler_cls;
	MHD_RequestCompletedCallback completed;      /* may be NULL */
	void *completed_cls;
	/* PEM texts of the certificate chain and private key; both NULL for
	 * plain HTTP. */
	const char *tls_cert_pem;
	const char *tls_key_pem;
	/* Decodes the %-escapes of the path and query in place and returns
	 * the new length (MHD's default when NULL). */
	size_t (*unescape)(void *cls, struct MHD_Connection *conn, char *s);
	unsigned int threads;         /* 0 = 1 */
	unsigned int connection_limit;
	unsigned int per_ip_connection_limit;  /* 0 = no per-IP limit */
	unsigned int timeout_s;       /* idle connection timeout */
};

/* Returns 0 and *server_r, or -1 with *error_r (a static string; details
 * also go to the log). */
int sora_httpd_start(const struct sora_httpd_params *params, struct sora_httpd **server_r,
		     const char **error_r);

/* The TCP port the server listens on (the real one when started on port 0). */
int sora_httpd_port(const struct sora_httpd *server);

/* Stops the server, waits for its threads and frees it. NULL-safe; clears
 * *server. */
void sora_httpd_stop(struct sora_httpd **server);

/* The client's address as text ("(unknown)" if MHD does not know it). */
const char *sora_httpd_client(struct MHD_Connection *conn, char *buf, size_t size);

#endif
