/* The shared main() of sora-backend and sora-proxy.
 *
 * Parses the command line (DESIGN.md §7: --config FILE, --check-config,
 * --version, --help), loads and validates the configuration (exit 2 on
 * errors, naming file:line), sets up logging, picks the [servers.*] entries
 * of the binary's role (saying which ones it ignores), starts the metrics
 * endpoint, binds everything and runs until SIGTERM.
 *
 * Thread safety: main thread only. */
#ifndef SORA_NET_SERVE_H
#define SORA_NET_SERVE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/config/config.h"

struct sora_conn_handler;
struct sora_net;

struct sora_role {
	const char *binary;      /* "sora-backend" */
	bool proxy;              /* serves the *_proxy types (else the others) */
	/* The handler for a server type of this role, or NULL when this
	 * build does not provide that protocol (start-up then fails with a
	 * clear message rather than silently not serving it). */
	const struct sora_conn_handler *(*handler)(enum sora_server_type type);
	/* Optional: prepare role state (database, storage) before binding.
	 * check_only: --check-config (validate, touch nothing remote). */
	int (*start)(const struct sora_config *cfg, struct sora_net *net, bool check_only,
		     char *err, size_t errsize);
	/* Optional: after the runtime stopped. */
	void (*stop)(void);
};

int sora_serve_main(int argc, char **argv, const struct sora_role *role);

#endif
