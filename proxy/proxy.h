/* sora-proxy's process-wide state: the database pool (credentials, per-user
 * backend overrides) and one backend pool per proxy server.
 *
 * Thread safety: built by sora_proxy_start() on the main thread before the
 * listeners bind; read from any thread afterwards. */
#ifndef SORA_PROXY_PROXY_H
#define SORA_PROXY_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sora_config;
struct sora_net;
struct sora_db_pool;
struct sora_server_config;
struct proxy_pool;

/* The pool credentials are checked against (NULL before start). */
struct sora_db_pool *sora_proxy_db(void);
/* The backend pool of a proxy server, or NULL. */
struct proxy_pool *sora_proxy_pool(const struct sora_server_config *srv);
const struct sora_config *sora_proxy_config(void);

/* sora_role.start / stop (common/net/serve.h). */
int sora_proxy_start(const struct sora_config *cfg, struct sora_net *net, bool check_only,
		     char *err, size_t errsize);
void sora_proxy_stop(void);

/* Reads accounts.backend (the per-user override) for an account, on a
 * worker thread. Writes "" when there is none or the column is missing. */
void sora_proxy_lookup_override(int64_t account_id, char *out, size_t size);

#endif
