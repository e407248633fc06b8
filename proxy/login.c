/* Backend login with failover and relay: see login.h. */
#include "proxy/login.h"

#include <netdb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/core/log.h"
#include "common/net/workers.h"
#include "proxy/proxy.h"
#include "proxy/sessions.h"

#define BACKEND_MAX_LINE 16384

static const struct sora_conn_handler backend_handler;

const char *proxy_login_backend(const struct proxy_login *l)
{
	return l->started && l->pool != NULL && l->norder > 0 ? l->pool->b[l->cur].addr : "";
}

void proxy_login_client_addr(struct proxy_login *l, char *ip, size_t ipsize, char *port,
			     size_t portsize)
{
	const struct sockaddr *sa = sora_conn_peer_addr(l->client);

	ip[0] = port[0] = '\0';
	if (sa == NULL || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
	    getnameinfo(sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
						     : sizeof(struct sockaddr_in6),
			ip, (socklen_t)ipsize, port, (socklen_t)portsize,
			NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		ip[0] = port[0] = '\0';
}

int proxy_login_sasl_plain(struct proxy_login *l, char *out, size_t size)
{
	const struct sora_server_config *srv = sora_conn_server(l->client);
	const char *authcid = srv->master_sasl_username ? srv->master_sasl_username : "";
	const char *pw = srv->master_sasl_password ? srv->master_sasl_password : "";
	size_t ul = strlen(l->user), al = strlen(authcid), pl = strlen(pw);
	size_t n = ul + al + pl + 2;
	unsigned char *raw;

	if (sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL) > size)
		return -1;
	raw = sodium_malloc(n);
	if (raw == NULL)
		return -1;
	memcpy(raw, l->user, ul);
	raw[ul] = '\0';
	memcpy(raw + ul + 1, authcid, al);
	raw[ul + 1 + al] = '\0';
	memcpy(raw + ul + al + 2, pw, pl);
	sodium_bin2base64(out, size, raw, n, sodium_base64_VARIANT_ORIGINAL);
	sodium_free(raw);
	return 0;
}

static void login_fail(struct proxy_login *l, const char *why)
{
	if (l->finished)
		return;
	l->finished = true;
	sora_warn(sora_conn_log_ctx(l->client), "no backend login for %s: %s", l->user, why);
	l->ops->failure(l, why);
	sora_conn_close(l->client, SORA_CLOSE_ERROR);
}

static void try_next(struct proxy_login *l)
{
	const struct sora_server_config *srv = sora_conn_server(l->client);

	while (l->next < l->norder && !l->finished && !sora_conn_closing(l->client)) {
		struct sora_connect_params p = { 0 };
		size_t i = l->order[l->next++];
		int64_t left = l->deadline - proxy_now_ms();
		const char *error = NULL;

		if (left <= 0)
			break;
		if (l->next > 1)
			proxy_pool_count_failover(l->pool);
		p.addr = l->pool->b[i].addr;
		p.timeout_ms = left;
		p.tls = l->pool->tls;
		p.proxy_v2 = srv->remote_use_proxy_protocol;
		p.data = l;
		l->cur = i;
		l->step = 0;
		l->expired = false;
		if (sora_conn_connect(l->client, &p, &backend_handler, &l->be, &error) == 0)
			return;
		l->be = NULL;
		sora_warn(sora_conn_log_ctx(l->client), "backend %s: %s", p.addr, error);
		proxy_backend_failed(l->pool, i, error);
	}
	login_fail(l, l->next >= l->norder ? "no backend could be reached"
					   : "connect budget used up");
}

static enum sora_job_status route_work(struct sora_job *job, void *arg)
{
	struct proxy_login *l = arg;

	sora_proxy_lookup_override(l->account_id, l->override, sizeof(l->override));
	return SORA_JOB_DONE;
}

static void route_done(struct sora_conn *c, void *arg)
{
	struct proxy_login *l = arg;
	enum proxy_route_reason reason;

	if (sora_conn_closing(c))
		return;
	l->norder = proxy_pool_route(l->pool, l->account_id, l->override, l->order,
				     SORA_RING_MAX_NODES, &reason);
	l->started = true;
	sora_debug(sora_conn_log_ctx(c), "route %s: %s (%s)", l->user,
		   l->norder > 0 ? l->pool->b[l->order[0]].addr : "-",
		   reason == PROXY_ROUTE_OVERRIDE ? "override" :
		   reason == PROXY_ROUTE_FAILOVER ? "failover" : "ring");
	/* The connect budget starts now, after the database. */
	l->deadline = proxy_now_ms() + sora_conn_server(c)->connect_timeout_ms;
	try_next(l);
}

void proxy_login_start(struct proxy_login *l)
{
	l->pool = sora_proxy_pool(sora_conn_server(l->client));
	if (l->pool == NULL) {
		login_fail(l, "no backends configured");
		return;
	}
	if (sora_job_submit(l->client, route_work, route_done, l) < 0)
		login_fail(l, "server busy");
}

void proxy_login_client_closed(struct proxy_login *l)
{
	struct sora_conn *be = l->be;

	l->finished = true;
	if (l->relaying && !l->counted) {
		l->counted = true;
		proxy_backend_session(l->pool, l->cur, -1);
		proxy_sessions_remove(l->client);
	}
	if (be != NULL) {
		l->be = NULL;
		sora_conn_set_data(be, NULL);
		sora_conn_close(be, SORA_CLOSE_PEER);
	}
}

/* ---- the backend connection ---------------------------------------------- */

static void be_open(struct sora_conn *be)
{
	struct proxy_login *l = sora_conn_data(be);
	int64_t left;

	if (l == NULL) {
		sora_conn_close(be, SORA_CLOSE_NORMAL);
		return;
	}
	left = l->deadline - proxy_now_ms();
	/* The rest of the budget for the conversation: keepalive() fires
	 * once it is gone, whatever the backend sends meanwhile. */
	sora_conn_set_keepalive(be, left > 0 ? left : 1);
	if (l->ops->connected != NULL)
		l->ops->connected(l, be);
}

static void be_relay(struct proxy_login *l, struct sora_conn *be)
{
	proxy_backend_ok(l->pool, l->cur);
	sora_conn_set_keepalive(be, 0);
	l->ops->success(l);
	l->relaying = true;
	l->finished = true;
	if (sora_conn_relay(l->client, be) < 0) {
		sora_conn_close(l->client, SORA_CLOSE_ERROR);
		return;
	}
	proxy_backend_session(l->pool, l->cur, +1);
	proxy_sessions_add(l->client, l->pool->protocol, l->user, l->pool->b[l->cur].addr);
	sora_info(sora_conn_log_ctx(l->client), "proxying %s to %s", l->user,
		  l->pool->b[l->cur].addr);
}

static size_t be_input(struct sora_conn *be, const char *data, size_t len)
{
	struct proxy_login *l = sora_conn_data(be);
	const char *nl;
	size_t n;

	if (l == NULL || l->relaying)
		return len;
	nl = memchr(data, '\n', len);
	if (nl == NULL) {
		if (len > BACKEND_MAX_LINE) {
			proxy_backend_failed(l->pool, l->cur, "over-long line");
			sora_conn_close(be, SORA_CLOSE_PROTOCOL);
			return len;
		}
		return 0;
	}
	n = (size_t)(nl - data);
	switch (l->ops->line(l, be, sora_str_make(data, n > 0 && data[n - 1] == '\r' ? n - 1 : n))) {
	case PROXY_LINE_MORE:
		break;
	case PROXY_LINE_SUCCESS:
		be_relay(l, be);
		break;
	case PROXY_LINE_RETRY:
		proxy_backend_failed(l->pool, l->cur, "unexpected reply during login");
		sora_warn(sora_conn_log_ctx(l->client), "backend %s: unexpected reply during login",
			  l->pool->b[l->cur].addr);
		sora_conn_close(be, SORA_CLOSE_PROTOCOL);
		break;
	case PROXY_LINE_REFUSED:
		l->be = NULL;
		sora_conn_set_data(be, NULL);
		sora_conn_close(be, SORA_CLOSE_NORMAL);
		login_fail(l, "the backend refused the master login (check master_sasl_* on both)");
		break;
	}
	return n + 1;
}

static void be_keepalive(struct sora_conn *be)
{
	struct proxy_login *l = sora_conn_data(be);

	if (l == NULL || l->relaying)
		return;
	l->expired = true;
	proxy_backend_failed(l->pool, l->cur, "login timed out");
	sora_warn(sora_conn_log_ctx(l->client), "backend %s: no login within the connect budget",
		  l->pool->b[l->cur].addr);
	sora_conn_close(be, SORA_CLOSE_IDLE);
}

static void be_close(struct sora_conn *be, enum sora_close_reason why)
{
	struct proxy_login *l = sora_conn_data(be);

	if (l == NULL)
		return;
	sora_conn_set_data(be, NULL);
	if (l->be == be)
		l->be = NULL;
	if (l->relaying) {
		if (!l->counted) {
			l->counted = true;
			proxy_backend_session(l->pool, l->cur, -1);
			proxy_sessions_remove(l->client);
		}
		return;
	}
	if (l->finished)
		return;
	if (!l->expired && why != SORA_CLOSE_PROTOCOL) {
		/* Closed by the backend before the login finished. */
		proxy_backend_failed(l->pool, l->cur, "closed during login");
		sora_warn(sora_conn_log_ctx(l->client), "backend %s closed during login",
			  l->pool->b[l->cur].addr);
	}
	try_next(l);
}

static void be_connect_failed(struct sora_conn *be, const char *why)
{
	struct proxy_login *l = sora_conn_data(be);

	if (l == NULL)
		return;
	if (l->be == be)
		l->be = NULL;
	if (l->finished)
		return;
	sora_warn(sora_conn_log_ctx(l->client), "backend %s: %s", l->pool->b[l->cur].addr, why);
	proxy_backend_failed(l->pool, l->cur, why);
	try_next(l);
}

static const struct sora_conn_handler backend_handler = {
	.protocol = "backend",
	.max_pending_input = BACKEND_MAX_LINE + 2,
	.open = be_open,
	.input = be_input,
	.close = be_close,
	.keepalive = be_keepalive,
	.connect_failed = be_connect_failed,
};
