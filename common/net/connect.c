/* Outbound connections: resolve, connect with a deadline, then hand over to
 * conn.c (PROXY header, client TLS, open). See sora_conn_connect() in
 * conn.h.
 *
 * The deadline is the connection's timer (conn.c). Resolution runs on
 * libuv's thread pool; if the connection gives up first, the request is
 * cancelled and its state freed by its callback, which libuv always runs. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "common/net/net-private.h"
#include "common/proto/proxy-protocol.h"

#define CONNECT_DEFAULT_TIMEOUT_MS 10000

struct sora_connect {
	struct sora_conn *conn;         /* NULL once the connection let go */
	uv_getaddrinfo_t gai;
	bool resolving;
	SSL_CTX *tls;
	char host[256];
	char server_name[256];
	char port[8];
	char path[108];                 /* unix socket */
	unsigned char preamble[SORA_PROXY_V2_BUILD_MAX];
	size_t preamble_len;
};

void sora_connect__free(struct sora_conn *c)
{
	struct sora_connect *cs = c->connect;

	if (cs == NULL)
		return;
	c->connect = NULL;
	cs->conn = NULL;
	if (cs->resolving)
		uv_cancel((uv_req_t *)&cs->gai);   /* its callback frees cs */
	else
		free(cs);
}

static SSL *connect_new_ssl(struct sora_connect *cs, const char **error_r)
{
	const char *name = cs->server_name[0] != '\0' ? cs->server_name : cs->host;
	unsigned char ipbuf[sizeof(struct in6_addr)];
	bool is_ip = inet_pton(AF_INET, name, ipbuf) == 1 || inet_pton(AF_INET6, name, ipbuf) == 1;
	SSL *ssl = SSL_new(cs->tls);

	if (ssl == NULL) {
		*error_r = "cannot create TLS session";
		return NULL;
	}
	/* RFC 6066: SNI carries host names only, never an address. */
	if (!is_ip && name[0] != '\0' && SSL_set_tlsext_host_name(ssl, name) != 1)
		goto fail;
	if (SSL_CTX_get_verify_mode(cs->tls) & SSL_VERIFY_PEER) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);

		if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1
			  : SSL_set1_host(ssl, name) != 1)
			goto fail;
		X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	}
	return ssl;
fail:
	SSL_free(ssl);
	*error_r = "cannot set the TLS server name";
	return NULL;
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct sora_conn *c = req->data;
	struct sora_connect *cs = c->connect;
	const char *error = NULL;
	SSL *ssl = NULL;
	int len;

	if (status == UV_ECANCELED || !c->connecting || cs == NULL)
		return;
	if (status < 0) {
		sora_conn__connect_failed(c, uv_strerror(status));
		return;
	}
	if (!c->is_unix) {
		len = sizeof(c->local);
		uv_tcp_getsockname(&c->s.tcp, (struct sockaddr *)&c->local, &len);
		uv_tcp_nodelay(&c->s.tcp, 1);
	}
	if (cs->tls != NULL && (ssl = connect_new_ssl(cs, &error)) == NULL) {
		sora_conn__connect_failed(c, error);
		return;
	}
	sora_conn__transport_up(c, ssl, cs->preamble, cs->preamble_len);
}

/* Returns 0 or a libuv error (connect_cb will not run then). */
static int connect_to(struct sora_conn *c, const struct sockaddr *sa)
{
	memcpy(&c->peer, sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
						       : sizeof(struct sockaddr_in6));
	c->has_peer_ip = sora_ip_from_sockaddr(sa, &c->peer_ip) == 0;
	c->link_ip = c->peer_ip;
	c->has_link_ip = c->has_peer_ip;
	c->creq.data = c;
	return uv_tcp_connect(&c->creq, &c->s.tcp, sa, connect_cb);
}

/* A failure before sora_conn_connect() returned: the caller hears it from
 * the return value, the handler not at all (libuv's rule). */
static int connect_fail_now(struct sora_conn *c, const char *why, const char **error_r)
{
	c->connecting = false;
	c->data = NULL;
	sora_conn_close(c, SORA_CLOSE_ERROR);
	*error_r = why;
	return -1;
}

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct sora_connect *cs = req->data;
	struct sora_conn *c = cs->conn;
	int rc;

	cs->resolving = false;
	if (c == NULL) {
		/* The connection gave up (deadline, close) meanwhile. */
		uv_freeaddrinfo(res);
		free(cs);
		return;
	}
	if (status < 0 || res == NULL) {
		char why[300];

		snprintf(why, sizeof(why), "cannot resolve %s: %s", cs->host,
			 status < 0 ? uv_strerror(status) : "no address");
		uv_freeaddrinfo(res);
		sora_conn__connect_failed(c, why);
		return;
	}
	rc = connect_to(c, res->ai_addr);
	uv_freeaddrinfo(res);
	if (rc < 0)
		sora_conn__connect_failed(c, uv_strerror(rc));
}

/* The PROXY v2 header for a connection made on owner's behalf: the client
 * and the address it reached, and owner's session id. */
static int connect_build_proxy(struct sora_connect *cs, struct sora_conn *owner,
			       const char **error_r)
{
	struct sora_proxy_v2_opts opts = { .session_id = owner->id };
	const struct sockaddr *src = (const struct sockaddr *)&owner->peer;
	const struct sockaddr *dst = (const struct sockaddr *)&owner->local;

	if (src->sa_family != AF_INET && src->sa_family != AF_INET6)
		src = dst = NULL;               /* a unix-socket client: LOCAL */
	if (owner->tls_active) {
		opts.tls = true;
		opts.tls_version = SSL_get_version(owner->ssl);
		opts.tls_cipher = SSL_get_cipher_name(owner->ssl);
	}
	return sora_proxy_v2_build(src, dst, &opts, cs->preamble, sizeof(cs->preamble),
				   &cs->preamble_len, error_r);
}

int sora_conn_connect(struct sora_conn *owner, const struct sora_connect_params *params,
		      const struct sora_conn_handler *handler, struct sora_conn **c_r,
		      const char **error_r)
{
	struct sora_connect *cs = calloc(1, sizeof(*cs));
	struct addrinfo hints;
	unsigned char ipbuf[sizeof(struct in6_addr)];
	char err[200];
	uint64_t port = 0;
	bool is_unix;
	struct sora_conn *c;
	int rc;

	if (cs == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	if (owner->state >= CONN_CLOSING) {
		*error_r = "the session is closing";
		goto fail;
	}
	is_unix = params->addr != NULL && strncmp(params->addr, "unix:", 5) == 0;
	if (params->addr == NULL) {
		*error_r = "no address";
		goto fail;
	} else if (is_unix) {
		if (params->addr[5] != '/' || strlen(params->addr + 5) >= sizeof(cs->path)) {
			*error_r = "bad unix socket path";
			goto fail;
		}
		sora_strlcpy(cs->path, params->addr + 5, sizeof(cs->path));
	} else if (sora_addr_split(params->addr, cs->host, sizeof(cs->host), &port, err,
				   sizeof(err)) < 0 || cs->host[0] == '\0' || port == 0) {
		*error_r = "bad address (expected host:port, [v6]:port or unix:/path)";
		goto fail;
	}
	snprintf(cs->port, sizeof(cs->port), "%u", (unsigned)port);
	cs->tls = params->tls;
	if (params->server_name != NULL)
		sora_strlcpy(cs->server_name, params->server_name, sizeof(cs->server_name));
	if (params->proxy_v2 && connect_build_proxy(cs, owner, error_r) < 0)
		goto fail;

	c = sora_conn__new(owner->loop, owner->listener, handler, is_unix);
	if (c == NULL) {
		*error_r = "out of memory";
		goto fail;
	}
	cs->conn = c;
	c->connect = cs;
	c->outbound = true;
	c->connecting = true;
	c->state = CONN_CONNECTING;
	c->data = params->data;
	c->connect_timeout_ms = params->timeout_ms > 0 ? params->timeout_ms : CONNECT_DEFAULT_TIMEOUT_MS;
	/* Logs of the backend side carry the client's session id. */
	memcpy(c->id, owner->id, sizeof(c->id));
	sora_strlcpy(c->peer_str, params->addr, sizeof(c->peer_str));
	c->log.user = owner->log.user;
	sora_conn__arm_timer(c);
	*c_r = c;
	/* From here the connection owns cs (freed with it). */

	if (is_unix) {
		c->peer.ss_family = AF_UNIX;
		c->creq.data = c;
		uv_pipe_connect(&c->creq, &c->s.pipe, cs->path, connect_cb);
		return 0;
	}
	if (inet_pton(AF_INET, cs->host, ipbuf) == 1 || inet_pton(AF_INET6, cs->host, ipbuf) == 1) {
		struct addrinfo *res = NULL;

		memset(&hints, 0, sizeof(hints));
		hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
		hints.ai_socktype = SOCK_STREAM;
		if (getaddrinfo(cs->host, cs->port, &hints, &res) != 0 || res == NULL)
			return connect_fail_now(c, "bad address", error_r);
		rc = connect_to(c, res->ai_addr);
		freeaddrinfo(res);
		return rc < 0 ? connect_fail_now(c, uv_strerror(rc), error_r) : 0;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV;
	cs->gai.data = cs;
	rc = uv_getaddrinfo(&owner->loop->uv, &cs->gai, resolve_cb, cs->host, cs->port, &hints);
	if (rc < 0)
		return connect_fail_now(c, uv_strerror(rc), error_r);
	cs->resolving = true;
	return 0;
fail:
	free(cs);
	return -1;
}
