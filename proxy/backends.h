/* The backends of one proxy server: routing, health and failover.
 *
 * Each [servers.X] of a *_proxy type gets one struct proxy_pool built from
 * its remote_addrs at start-up. A backend's ring identity is its host
 * ("10.0.0.5" of "10.0.0.5:143"), so the imap_proxy, pop3_proxy and
 * managesieve_proxy of one installation, whose remote_addrs name the same
 * hosts on different ports, send a user to the same machine (affinity).
 * When two entries of one list share a host (several backends on one
 * machine, as in tests and demos), those entries are identified by
 * host:port instead.
 *
 * Health, per backend and per proxy process (proxies share nothing):
 *   - down after PROXY_FAILS_DOWN consecutive failed connects/logins, or at
 *     once after a failed active check;
 *   - the active check runs every health_check_interval on a thread of its
 *     own: connect, PROXY v2 LOCAL header when the server sends PROXY
 *     headers, TLS when remote_tls, then the protocol's real greeting
 *     ("* OK", "+OK", "220 ", ManageSieve's "OK") within the connect
 *     timeout. A listening socket that never greets fails it;
 *   - a down backend is retried by that check and is up again after one
 *     good greeting.
 * Routing never picks a down backend while an up one exists; when every
 * candidate is down it tries them all in ring order anyway (the health
 * view may be stale, and trying costs less than refusing everyone).
 *
 * Thread safety: the pool is built and freed on the main thread; route,
 * success and failure reports may come from any loop thread (atomics). */
#ifndef SORA_PROXY_BACKENDS_H
#define SORA_PROXY_BACKENDS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <pthread.h>

#include "proxy/ring.h"

struct sora_server_config;
struct sora_metric_series;

#define PROXY_FAILS_DOWN 3

enum proxy_proto {
	PROXY_PROTO_IMAP,
	PROXY_PROTO_POP3,
	PROXY_PROTO_LMTP,
	PROXY_PROTO_SIEVE,
};

struct proxy_backend {
	char addr[256];              /* "host:port" as configured */
	char host[256];
	char id[256];                /* ring identity: host, or host:port */
	atomic_bool down;
	atomic_int fails;            /* consecutive failures */
	atomic_long sessions;        /* relayed sessions now */
	int64_t next_check_ms;       /* health thread only */
	struct sora_metric_series *m_up, *m_sessions, *m_routed, *m_failures;
};

struct proxy_pool {
	const struct sora_server_config *srv;   /* borrowed from the config */
	enum proxy_proto proto;
	const char *protocol;                   /* "imap", ... */
	struct proxy_backend *b;
	size_t n;
	struct sora_ring *ring;
	SSL_CTX *tls;                           /* client context or NULL (owned) */
	struct sora_metric_series *m_failover, *m_route_ring, *m_route_override;
	/* ManageSieve: the SIEVE capability a backend announced (health
	 * checks and logins refresh it), shown to clients before login. */
	pthread_mutex_t lock;
	char sieve_ext[1024];
};

/* Copies the pool's cached SIEVE capability into out ("" if none yet). */
void proxy_pool_sieve_ext(struct proxy_pool *pool, char *out, size_t size);
void proxy_pool_set_sieve_ext(struct proxy_pool *pool, const char *ext, size_t len);

enum proxy_route_reason {
	PROXY_ROUTE_RING,            /* the ring's owner */
	PROXY_ROUTE_OVERRIDE,        /* accounts.backend */
	PROXY_ROUTE_FAILOVER,        /* a later node: the owner is down */
};

/* Main thread. Builds the pool of a proxy server. -1 with err. */
int proxy_pool_create(const struct sora_server_config *srv, struct proxy_pool **pool_r,
		      char *err, size_t errsize);
void proxy_pool_free(struct proxy_pool **pool);

/* The candidates for a user, best first: the override (a backend whose id,
 * host or addr equals it; NULL or "" for none) if up, then the ring order
 * of the account's key with down backends left out (unless all are down).
 * Returns the count written to order_r (at most max). *reason_r says why
 * the first was chosen. */
size_t proxy_pool_route(struct proxy_pool *pool, int64_t account_id, const char *override,
			size_t *order_r, size_t max, enum proxy_route_reason *reason_r);

/* A connect or login to backend i failed (counts towards down). */
void proxy_backend_failed(struct proxy_pool *pool, size_t i, const char *why);
/* A login to backend i worked: clears the failure count, marks it up. */
void proxy_backend_ok(struct proxy_pool *pool, size_t i);
/* Relayed session count (metrics). */
void proxy_backend_session(struct proxy_pool *pool, size_t i, int delta);
/* A failover happened (the first candidate was not used). */
void proxy_pool_count_failover(struct proxy_pool *pool);

/* The health-check thread over every pool. Main thread. */
int proxy_health_start(struct proxy_pool **pools, size_t n, char *err, size_t errsize);
void proxy_health_stop(void);

/* One active check (blocking, any thread): 0 when the backend greeted
 * properly within timeout_ms, else -1 with a static *why_r. Exposed for
 * tests. */
int proxy_health_check(const struct proxy_pool *pool, const struct proxy_backend *b,
		       int64_t timeout_ms, const char **why_r);

int64_t proxy_now_ms(void);

#endif
