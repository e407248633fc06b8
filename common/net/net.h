/* The server runtime: event-loop threads, listeners, signals.
 *
 * sora_net_create() prepares N loop threads (DESIGN.md §4); listeners are
 * added for each [servers.*] entry the binary serves; sora_net_run() binds
 * them (one SO_REUSEPORT socket per loop for TCP, one shared socket for a
 * unix path), starts the loops and the worker pool and blocks on the main
 * thread handling signals:
 *   SIGTERM/SIGINT: stop accepting, let running jobs finish, say goodbye to
 *                   idle sessions, exit once all connections are gone (at most
 *                   `drain_timeout_ms`, then the remaining ones are cut);
 *   SIGHUP:         reload certificates (and call the reload hook).
 *
 * Thread safety: create/add/run/free from the main thread only. */
#ifndef SORA_NET_NET_H
#define SORA_NET_NET_H

#include <stddef.h>
#include <stdint.h>

struct sora_config;
struct sora_server_config;
struct sora_conn_handler;
struct sora_net;
struct sora_loop;
struct sora_listener;

struct sora_net_params {
	int loops;                 /* 0 = number of CPUs */
	int workers;               /* worker pool threads; 0 = 16 */
	int64_t drain_timeout_ms;  /* 0 = 30 s */
	/* Called on the main thread on SIGHUP after certificates reloaded. */
	void (*on_reload)(void *ctx);
	void *ctx;
};

int sora_net_create(const struct sora_config *cfg, const struct sora_net_params *params,
		    struct sora_net **net_r, char *err, size_t errsize);
/* Adds a listener for srv served by handler. Certificates are loaded here
 * (so configuration problems surface before anything listens). */
int sora_net_add_listener(struct sora_net *net, const struct sora_server_config *srv,
			  const struct sora_conn_handler *handler, char *err, size_t errsize);
/* Binds everything; returns -1 with err if a listener cannot bind (nothing
 * is left listening then). */
int sora_net_bind(struct sora_net *net, char *err, size_t errsize);
/* Runs until SIGTERM/SIGINT and the drain finished. Returns 0. */
int sora_net_run(struct sora_net *net);
/* Asks the runtime to stop, as SIGTERM does. Any thread. */
void sora_net_stop(struct sora_net *net);
void sora_net_free(struct sora_net **net);

const struct sora_config *sora_net_config(const struct sora_net *net);

#endif
