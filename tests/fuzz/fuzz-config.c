/* libFuzzer target for the config loader (sora_config_load_string): the
 * TOML-subset preparation, inih, value decoding and validation. The input
 * is never trusted network data, but an operator's typo must never crash
 * or hang the server, so the whole path is fuzzed. Besides memory safety
 * it checks the promises of config.h: an error is one "name:line: ..."
 * line and returns nothing; a success returns a config whose servers all
 * have a name, a valid type, a hostname and a definition site.
 *
 * The loader looks at the file system only to stat() and open read-only
 * the TLS files a config names; that is harmless here. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/core/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* Unknown-key warnings would flood the output. */
	sora_log_set_level(SORA_LOG_ERROR);
	return 0;
}

static void check_config(const struct sora_config *c)
{
	if (c->hostname == NULL || c->path == NULL || c->cluster.node_id == NULL)
		abort();
	for (size_t i = 0; i < c->servers_count; i++) {
		const struct sora_server_config *s = &c->servers[i];

		if (s->name == NULL || s->defined_at == NULL || s->hostname == NULL ||
		    sora_server_type_name(s->type) == NULL)
			abort();
		if (s->start && s->addr == NULL)
			abort();
		if ((s->tls || s->tls_use_starttls) &&
		    (s->tls_cert_file == NULL || s->tls_key_file == NULL))
			abort();
		if (s->command_timeout_ms == 0 || s->absolute_session_timeout_ms == 0 ||
		    s->proxy_protocol.timeout_ms == 0)
			abort();
		for (size_t j = 0; j < s->client_filters_count; j++) {
			if (s->client_filters[j].ja4_fingerprint == NULL)
				abort();
		}
		for (size_t j = 0; j < s->remote_addrs_count; j++) {
			if (s->remote_addrs[j] == NULL)
				abort();
		}
		if (s->remote_addrs != NULL && s->remote_addrs[s->remote_addrs_count] != NULL)
			abort();
	}
	if (c->s3.encrypt && (c->s3.encryption_key == NULL || strlen(c->s3.encryption_key) != 64))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sora_config *c = NULL;
	char err[512];

	err[0] = '\0';
	if (sora_config_load_string((const char *)data, size, "fuzz.toml", &c,
				    err, sizeof(err)) == 0) {
		if (c == NULL)
			abort();
		check_config(c);
		sora_config_free(&c);
		if (c != NULL)
			abort();
		return 0;
	}
	if (c != NULL || strncmp(err, "fuzz.toml:", 10) != 0 || strchr(err, '\n') != NULL)
		abort();
	return 0;
}
