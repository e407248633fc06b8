/* sora-proxy's process state: see proxy.h. */
#include "proxy/proxy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <sodium.h>

#include "common/config/config.h"
#include "common/core/error.h"
#include "common/core/log.h"
#include "common/core/str.h"
#include "common/db/db.h"
#include "proxy/backends.h"
#include "proxy/sessions.h"

#define MAX_POOLS 32
#define OVERRIDE_ACQUIRE_MS 5000

static struct {
	const struct sora_config *cfg;
	struct sora_db_pool *db;
	struct proxy_pool *pools[MAX_POOLS];
	size_t npools;
	bool started;
} proxy;

struct sora_db_pool *sora_proxy_db(void)
{
	return proxy.db;
}

const struct sora_config *sora_proxy_config(void)
{
	return proxy.cfg;
}

struct proxy_pool *sora_proxy_pool(const struct sora_server_config *srv)
{
	for (size_t i = 0; i < proxy.npools; i++) {
		if (proxy.pools[i]->srv == srv)
			return proxy.pools[i];
	}
	return NULL;
}

void sora_proxy_lookup_override(int64_t account_id, char *out, size_t size)
{
	struct sora_db_conn *db = NULL;
	struct sora_error err;
	PGresult *res = NULL;
	char id[24];
	const char *values[1] = { id };

	out[0] = '\0';
	snprintf(id, sizeof(id), "%" PRId64, account_id);
	if (sora_db_acquire(proxy.db, SORA_DB_READ, OVERRIDE_ACQUIRE_MS, &db, &err) != 0)
		return;
	if (sora_db_exec(db, SORA_DB_CLASS_DEFAULT, "SELECT backend FROM accounts WHERE id = $1", 1,
			 values, &res, NULL, &err) != 0) {
		/* A database without migration 0007: route by the ring. */
		sora_debug(NULL, "backend override lookup: %s", err.msg);
	} else if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
		sora_strlcpy(out, PQgetvalue(res, 0, 0), size);
	}
	if (res != NULL)
		PQclear(res);
	sora_db_release(&db);
}

int sora_proxy_start(const struct sora_config *cfg, struct sora_net *net, bool check_only,
		     char *errbuf, size_t errsize)
{
	struct sora_error err;

	memset(&proxy, 0, sizeof(proxy));
	proxy.cfg = cfg;
	/* Login secrets live in sodium_malloc'd memory (imap-preauth.c). */
	if (sodium_init() < 0) {
		snprintf(errbuf, errsize, "libsodium initialisation failed");
		return -1;
	}
	for (size_t i = 0; i < cfg->servers_count; i++) {
		const struct sora_server_config *srv = &cfg->servers[i];

		if (!srv->start || !sora_server_type_is_proxy(srv->type))
			continue;
		if (proxy.npools == MAX_POOLS) {
			snprintf(errbuf, errsize, "too many proxy servers (max %d)", MAX_POOLS);
			goto fail;
		}
		if (proxy_pool_create(srv, &proxy.pools[proxy.npools], errbuf, errsize) < 0)
			goto fail;
		proxy.npools++;
	}
	if (check_only)
		goto done_check;
	if (sora_db_pool_create(&cfg->database, "sora-proxy", &proxy.db, &err) != 0) {
		snprintf(errbuf, errsize, "%s", err.msg);
		goto fail;
	}
	if (proxy_health_start(proxy.pools, proxy.npools, errbuf, errsize) < 0)
		goto fail;
	if (proxy_sessions_start(net, errbuf, errsize) < 0) {
		proxy_health_stop();
		goto fail;
	}
	proxy.started = true;
	for (size_t i = 0; i < proxy.npools; i++) {
		const struct proxy_pool *p = proxy.pools[i];

		for (size_t j = 0; j < p->n; j++)
			sora_info(NULL, "[servers.%s] backend %s (ring id %s%s%s)", p->srv->name,
				  p->b[j].addr, p->b[j].id, p->tls != NULL ? ", TLS" : "",
				  p->srv->remote_use_proxy_protocol ? ", PROXY v2" : ", ID forwarding");
	}
	return 0;
done_check:
	for (size_t i = 0; i < proxy.npools; i++)
		proxy_pool_free(&proxy.pools[i]);
	proxy.npools = 0;
	return 0;
fail:
	for (size_t i = 0; i < proxy.npools; i++)
		proxy_pool_free(&proxy.pools[i]);
	proxy.npools = 0;
	sora_db_pool_destroy(&proxy.db);
	return -1;
}

void sora_proxy_stop(void)
{
	if (!proxy.started)
		return;
	proxy.started = false;
	proxy_sessions_stop();
	proxy_health_stop();
	for (size_t i = 0; i < proxy.npools; i++)
		proxy_pool_free(&proxy.pools[i]);
	proxy.npools = 0;
	sora_db_pool_destroy(&proxy.db);
}
