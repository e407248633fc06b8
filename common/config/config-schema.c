/* The config schema (see config-schema.h): server types, the keys of
 * every table, and the tables themselves. The comments in config.h and
 * docs/configuration.md describe the same keys for readers; defaults live
 * here only. */
#include "common/config/config-schema.h"

#include <string.h>

/* ---- server types ----------------------------------------------------- */

static const struct {
	const char *name;
	const char *protocol;
	bool proxy;
} server_types[SORA_SRV_TYPE_COUNT] = {
	[SORA_SRV_IMAP]              = { "imap",              "imap",        false },
	[SORA_SRV_POP3]              = { "pop3",              "pop3",        false },
	[SORA_SRV_LMTP]              = { "lmtp",              "lmtp",        false },
	[SORA_SRV_MANAGESIEVE]       = { "managesieve",       "managesieve", false },
	[SORA_SRV_IMAP_PROXY]        = { "imap_proxy",        "imap",        true },
	[SORA_SRV_POP3_PROXY]        = { "pop3_proxy",        "pop3",        true },
	[SORA_SRV_LMTP_PROXY]        = { "lmtp_proxy",        "lmtp",        true },
	[SORA_SRV_MANAGESIEVE_PROXY] = { "managesieve_proxy", "managesieve", true },
	[SORA_SRV_HTTP_API]          = { "http_api",          "http_api",    false },
	[SORA_SRV_METRICS]           = { "metrics",           "metrics",     false },
};

const char *sora_server_type_name(enum sora_server_type type)
{
	return (unsigned)type < SORA_SRV_TYPE_COUNT ? server_types[type].name : NULL;
}

int sora_server_type_parse(const char *name, enum sora_server_type *type_r)
{
	for (unsigned i = 0; i < SORA_SRV_TYPE_COUNT; i++) {
		if (strcmp(name, server_types[i].name) == 0) {
			*type_r = (enum sora_server_type)i;
			return 0;
		}
	}
	return -1;
}

bool sora_server_type_is_proxy(enum sora_server_type type)
{
	return (unsigned)type < SORA_SRV_TYPE_COUNT && server_types[type].proxy;
}

const char *sora_server_type_protocol(enum sora_server_type type)
{
	return (unsigned)type < SORA_SRV_TYPE_COUNT ? server_types[type].protocol : NULL;
}

/* ---- which keys each table has ------------------------------------------ */

/* offsetof() that also checks at compile time that the field has the C
 * type the key type stores into, so a list can never write an int64_t
 * into an int. */
#define FIELD(st, f, ctype) \
	(offsetof(st, f) + 0 * sizeof(_Generic(((st *)0)->f, ctype: 1)))

#define KEY_STRING(n, st, f, def, fl) \
	{ .name = (n), .type = KT_STRING, .flags = (fl), \
	  .offset = FIELD(st, f, char *), .def_string = (def) }
#define KEY_CHOICE(n, st, f, def, ch) \
	{ .name = (n), .type = KT_STRING, .offset = FIELD(st, f, char *), \
	  .def_string = (def), .choices = (ch) }
#define KEY_BOOL(n, st, f, def) \
	{ .name = (n), .type = KT_BOOL, .offset = FIELD(st, f, bool), .def_int = (def) }
#define KEY_INT(n, st, f, def, lo, hi) \
	{ .name = (n), .type = KT_INT, .offset = FIELD(st, f, int), \
	  .def_int = (def), .min = (lo), .max = (hi) }
#define KEY_INT64(n, st, f, def, lo, hi, fl) \
	{ .name = (n), .type = KT_INT64, .flags = (fl), .offset = FIELD(st, f, int64_t), \
	  .def_int = (def), .min = (lo), .max = (hi) }
#define KEY_DURATION(n, st, f, def, lo, fl) \
	{ .name = (n), .type = KT_DURATION, .flags = (fl), .offset = FIELD(st, f, int64_t), \
	  .def_int = (def), .min = (lo), .max = INT64_MAX }
#define KEY_SIZE(n, st, f, def) \
	{ .name = (n), .type = KT_SIZE, .offset = FIELD(st, f, uint64_t), .def_int = (int64_t)(def) }
#define KEY_DOUBLE(n, st, f, def, lo, hi) \
	{ .name = (n), .type = KT_DOUBLE, .offset = FIELD(st, f, double), \
	  .def_double = (def), .min = (lo), .max = (hi) }
#define KEY_STRINGS(n, st, f, cnt, fl) \
	{ .name = (n), .type = KT_STRINGS, .flags = (fl), .offset = FIELD(st, f, char **), \
	  .count_offset = FIELD(st, cnt, size_t) }
#define KEY_CIDRS(n, st, f) \
	{ .name = (n), .type = KT_CIDRS, .offset = FIELD(st, f, struct sora_cidr_list) }
#define KEY_SERVER_TYPE(n, st, f) \
	{ .name = (n), .type = KT_SERVER_TYPE, .offset = FIELD(st, f, enum sora_server_type) }
#define KEY_END { .name = NULL }

#define SECONDS(n) ((int64_t)(n) * 1000)
#define MINUTES(n) (SECONDS(n) * 60)
#define HOURS(n)   (MINUTES(n) * 60)
#define MIB(n)     ((uint64_t)(n) << 20)
#define GIB(n)     ((uint64_t)(n) << 30)

static const char *const log_levels[] = { "debug", "info", "notice", "warn", "error", NULL };
static const char *const log_formats[] = { "console", "json", NULL };
static const char *const ssl_modes[] = {
	"disable", "allow", "prefer", "require", "verify-ca", "verify-full", NULL
};
static const char *const storage_backends[] = { "fs", "s3", NULL };
static const char *const tls_providers[] = { "file", "letsencrypt", NULL };
static const char *const tls_versions[] = { "1.2", "1.3", NULL };

#define T struct sora_config
static const struct sora_config_key root_keys[] = {
	KEY_STRING("hostname", T, hostname, NULL, 0),
	KEY_STRING("base_dir", T, base_dir, NULL, 0),
	KEY_INT("event_loops", T, event_loops, 0, 0, 1024),
	KEY_INT("worker_threads", T, worker_threads, 16, 1, 4096),
	KEY_CIDRS("trusted_networks", T, trusted_networks),
	KEY_END
};
#undef T

#define T struct sora_logging_config
static const struct sora_config_key logging_keys[] = {
	KEY_CHOICE("level", T, level, "info", log_levels),
	KEY_CHOICE("format", T, format, "console", log_formats),
	KEY_STRING("output", T, output, "stderr", 0),
	KEY_END
};
#undef T

#define T struct sora_database_config
static const struct sora_config_key database_keys[] = {
	KEY_STRING("host", T, host, "localhost", 0),
	KEY_INT("port", T, port, 5432, 1, 65535),
	KEY_STRING("dbname", T, dbname, "sora_mail_db", 0),
	KEY_STRING("user", T, user, "postgres", 0),
	KEY_STRING("password", T, password, "", 0),
	KEY_CHOICE("sslmode", T, sslmode, "prefer", ssl_modes),
	KEY_INT("max_conns", T, max_conns, 20, 1, 10000),
	KEY_INT("min_conns", T, min_conns, 2, 0, 10000),
	KEY_DURATION("max_conn_lifetime", T, max_conn_lifetime_ms, HOURS(1), 1, KF_ZERO_DEFAULT),
	KEY_DURATION("max_conn_idle_time", T, max_conn_idle_time_ms, MINUTES(30), 1, KF_ZERO_DEFAULT),
	KEY_DURATION("query_timeout", T, query_timeout_ms, SECONDS(30), 1, KF_ZERO_DEFAULT),
	KEY_DURATION("search_query_timeout", T, search_query_timeout_ms, SECONDS(60), 1,
		     KF_ZERO_DEFAULT),
	KEY_DURATION("write_timeout", T, write_timeout_ms, SECONDS(30), 1, KF_ZERO_DEFAULT),
	KEY_END
};
#undef T

#define T struct sora_db_endpoint
static const struct sora_config_key read_endpoint_keys[] = {
	KEY_STRING("host", T, host, NULL, 0),
	KEY_INT("port", T, port, 5432, 1, 65535),
	KEY_END
};
#undef T

#define T struct sora_storage_config
static const struct sora_config_key storage_keys[] = {
	KEY_CHOICE("backend", T, backend, "fs", storage_backends),
	KEY_STRING("fs_path", T, fs_path, "var/blobs", 0),
	KEY_END
};
#undef T

#define T struct sora_s3_config
static const struct sora_config_key s3_keys[] = {
	KEY_STRING("endpoint", T, endpoint, NULL, KF_HOST | KF_URL_SCHEME),
	KEY_STRING("region", T, region, "us-east-1", 0),
	KEY_STRING("bucket", T, bucket, NULL, 0),
	KEY_STRING("access_key", T, access_key, NULL, 0),
	KEY_STRING("secret_key", T, secret_key, NULL, 0),
	KEY_BOOL("use_ssl", T, use_ssl, true),
	KEY_BOOL("path_style", T, path_style, false),
	KEY_BOOL("tls_verify", T, tls_verify, true),
	KEY_BOOL("encrypt", T, encrypt, false),
	KEY_STRING("encryption_key", T, encryption_key, NULL, KF_HEX_KEY),
	KEY_STRINGS("old_encryption_keys", T, old_encryption_keys, old_encryption_keys_count,
		    KF_HEX_KEY),
	KEY_DURATION("timeout", T, timeout_ms, SECONDS(60), 1, KF_ZERO_DEFAULT),
	KEY_END
};
#undef T

#define T struct sora_uploader_config
static const struct sora_config_key uploader_keys[] = {
	KEY_STRING("path", T, path, "var/staging", 0),
	KEY_INT("workers", T, workers, 4, 1, 1024),
	KEY_INT("max_attempts", T, max_attempts, 0, 0, 1000000),
	KEY_DURATION("retry_interval", T, retry_interval_ms, SECONDS(30), 1, KF_ZERO_DEFAULT),
	KEY_END
};
#undef T

#define T struct sora_local_cache_config
static const struct sora_config_key local_cache_keys[] = {
	KEY_STRING("path", T, path, "var/cache", 0),
	KEY_SIZE("capacity", T, capacity, GIB(1)),
	KEY_SIZE("max_object_size", T, max_object_size, MIB(5)),
	KEY_END
};
#undef T

#define T struct sora_tls_config
static const struct sora_config_key tls_keys[] = {
	KEY_BOOL("enabled", T, enabled, false),
	KEY_CHOICE("provider", T, provider, "file", tls_providers),
	KEY_END
};
#undef T

#define T struct sora_letsencrypt_config
static const struct sora_config_key letsencrypt_keys[] = {
	KEY_STRING("email", T, email, NULL, 0),
	KEY_STRINGS("domains", T, domains, domains_count, 0),
	KEY_CHOICE("storage_provider", T, storage_provider, "fs", storage_backends),
	KEY_DURATION("renew_before", T, renew_before_ms, HOURS(720), 1, KF_ZERO_DEFAULT),
	KEY_STRING("directory_url", T, directory_url,
		   "https://acme-v02.api.letsencrypt.org/directory", 0),
	KEY_END
};
/* [tls.letsencrypt.s3] fills the same struct. */
static const struct sora_config_key letsencrypt_s3_keys[] = {
	KEY_STRING("bucket", T, s3_bucket, NULL, 0),
	KEY_STRING("region", T, s3_region, "us-east-1", 0),
	KEY_END
};
#undef T

#define T struct sora_cluster_config
static const struct sora_config_key cluster_keys[] = {
	KEY_BOOL("enabled", T, enabled, false),
	KEY_STRING("bind_addr", T, bind_addr, "0.0.0.0", 0),
	KEY_INT("bind_port", T, bind_port, 7946, 1, 65535),
	KEY_STRING("node_id", T, node_id, NULL, 0),
	KEY_STRINGS("peers", T, peers, peers_count, KF_HOSTPORT),
	KEY_STRING("secret_key", T, secret_key, NULL, 0),
	KEY_END
};
/* [cluster.rate_limit_sync] fills the same struct. */
static const struct sora_config_key rate_limit_sync_keys[] = {
	KEY_BOOL("enabled", T, rate_limit_sync_enabled, true),
	KEY_BOOL("sync_blocks", T, sync_blocks, true),
	KEY_BOOL("sync_failure_counts", T, sync_failure_counts, true),
	KEY_END
};
#undef T

#define T struct sora_shared_mailboxes_config
static const struct sora_config_key shared_mailboxes_keys[] = {
	KEY_BOOL("enabled", T, enabled, false),
	KEY_STRING("namespace_prefix", T, namespace_prefix, "Shared/", 0),
	KEY_BOOL("allow_user_create", T, allow_user_create, false),
	KEY_STRING("default_rights", T, default_rights, "lrswipkxtea", KF_ACL_RIGHTS),
	KEY_END
};
#undef T

#define T struct sora_server_config
static const struct sora_config_key server_keys[] = {
	KEY_SERVER_TYPE("type", T, type),
	KEY_BOOL("start", T, start, true),
	KEY_STRING("addr", T, addr, NULL, KF_LISTEN),
	KEY_STRING("hostname", T, hostname, NULL, 0),

	KEY_BOOL("tls", T, tls, false),
	KEY_BOOL("tls_use_starttls", T, tls_use_starttls, false),
	KEY_STRING("tls_cert_file", T, tls_cert_file, NULL, 0),
	KEY_STRING("tls_key_file", T, tls_key_file, NULL, 0),
	KEY_BOOL("tls_verify", T, tls_verify, false),
	KEY_STRING("tls_ca_file", T, tls_ca_file, NULL, 0),
	KEY_CHOICE("tls_min_version", T, tls_min_version, "1.2", tls_versions),

	KEY_DURATION("command_timeout", T, command_timeout_ms,
		     SORA_DEFAULT_COMMAND_TIMEOUT_MS, 1, KF_TIMEOUT),
	KEY_DURATION("absolute_session_timeout", T, absolute_session_timeout_ms,
		     SORA_DEFAULT_ABSOLUTE_SESSION_TIMEOUT_MS, 1, KF_TIMEOUT),
	KEY_INT64("min_bytes_per_minute", T, min_bytes_per_minute,
		  SORA_DEFAULT_MIN_BYTES_PER_MINUTE, 1, INT64_MAX, KF_TIMEOUT),
	KEY_DURATION("proxy_protocol_timeout", T, proxy_protocol.timeout_ms,
		     SORA_DEFAULT_PROXY_PROTOCOL_TIMEOUT_MS, 1, KF_TIMEOUT),
	KEY_DURATION("connect_timeout", T, connect_timeout_ms, SECONDS(10), 1, KF_TIMEOUT),

	KEY_INT64("max_connections", T, max_connections,
		  SORA_DEFAULT_MAX_CONNECTIONS, 0, INT64_MAX, 0),
	/* LMTP servers get 0 in finalize_server() unless set. */
	KEY_INT64("max_connections_per_ip", T, max_connections_per_ip,
		  SORA_DEFAULT_MAX_CONNECTIONS_PER_IP, 0, INT64_MAX, 0),
	KEY_SIZE("session_memory_limit", T, session_memory_limit, SORA_DEFAULT_SESSION_MEMORY_LIMIT),
	KEY_SIZE("append_limit", T, append_limit, SORA_DEFAULT_APPEND_LIMIT),
	KEY_SIZE("max_message_size", T, max_message_size, SORA_DEFAULT_MAX_MESSAGE_SIZE),
	KEY_DURATION("recipient_cache_ttl", T, recipient_cache_ttl_ms, SECONDS(60), 0, 0),
	KEY_INT64("search_rate_limit_per_min", T, search_rate_limit_per_min, 0, 0, INT64_MAX, 0),
	KEY_DURATION("search_rate_limit_window", T, search_rate_limit_window_ms,
		     SORA_DEFAULT_SEARCH_RATE_WINDOW_MS, 1, KF_ZERO_DEFAULT),
	KEY_INT64("max_errors", T, max_errors, 10, 0, INT64_MAX, 0),
	KEY_BOOL("insecure_auth", T, insecure_auth, false),

	KEY_CIDRS("trusted_networks", T, trusted_networks),
	KEY_CIDRS("master_sasl_allowed_networks", T, master_sasl_allowed_networks),
	KEY_STRING("master_username", T, master_username, NULL, 0),
	KEY_STRING("master_password", T, master_password, NULL, 0),
	KEY_STRING("master_sasl_username", T, master_sasl_username, NULL, 0),
	KEY_STRING("master_sasl_password", T, master_sasl_password, NULL, 0),

	KEY_STRINGS("remote_addrs", T, remote_addrs, remote_addrs_count, KF_REMOTE),
	KEY_BOOL("remote_tls", T, remote_tls, false),
	KEY_BOOL("remote_tls_verify", T, remote_tls_verify, true),
	KEY_BOOL("remote_use_proxy_protocol", T, remote_use_proxy_protocol, true),
	KEY_STRING("remote_tls_ca_file", T, remote_tls_ca_file, NULL, 0),
	KEY_DURATION("health_check_interval", T, health_check_interval_ms, SECONDS(5), 1, 0),

	KEY_STRING("api_key", T, api_key, NULL, 0),
	KEY_CIDRS("allowed_hosts", T, allowed_hosts),
	KEY_STRING("path", T, path, "/metrics", 0),
	KEY_END
};
#undef T

#define T struct sora_auth_rate_limit_config
static const struct sora_config_key auth_rate_limit_keys[] = {
	KEY_BOOL("enabled", T, enabled, false),
	KEY_INT("max_attempts_per_ip", T, max_attempts_per_ip, 10, 0, 1000000),
	KEY_INT("max_attempts_per_username", T, max_attempts_per_username, 5, 0, 1000000),
	KEY_DURATION("ip_window_duration", T, ip_window_ms, MINUTES(15), 1, 0),
	KEY_DURATION("username_window_duration", T, username_window_ms, MINUTES(15), 1, 0),
	KEY_INT("fast_block_threshold", T, fast_block_threshold, 10, 0, 1000000),
	KEY_DURATION("fast_block_duration", T, fast_block_ms, MINUTES(5), 1, 0),
	KEY_DURATION("db_error_threshold", T, db_error_threshold_ms, MINUTES(1), 0, 0),
	KEY_INT64("delay_start_threshold", T, delay_start_threshold, 2, 0, 1000000, 0),
	KEY_BOOL("progressive_delay_enabled", T, progressive_delay_enabled, true),
	/* initial_delay / max_delay are Sora's names, progressive_delay_min /
	 * progressive_delay_max the issue's: both fill one field; giving both
	 * spellings in one table is an error (check_rate_limit_aliases). */
	KEY_DURATION("initial_delay", T, initial_delay_ms, SECONDS(2), 0, 0),
	KEY_DURATION("progressive_delay_min", T, initial_delay_ms, SECONDS(2), 0, 0),
	KEY_DURATION("max_delay", T, max_delay_ms, SECONDS(30), 0, 0),
	KEY_DURATION("progressive_delay_max", T, max_delay_ms, SECONDS(30), 0, 0),
	KEY_DOUBLE("delay_multiplier", T, delay_multiplier, 2.0, 1, 100),
	KEY_END
};
#undef T

#define T struct sora_proxy_protocol_config
static const struct sora_config_key proxy_protocol_keys[] = {
	KEY_BOOL("enabled", T, enabled, false),
	KEY_CIDRS("trusted_proxies", T, trusted_proxies),
	KEY_DURATION("timeout", T, timeout_ms, SORA_DEFAULT_PROXY_PROTOCOL_TIMEOUT_MS, 1, KF_TIMEOUT),
	KEY_END
};
#undef T

#define T struct sora_client_filter
static const struct sora_config_key client_filter_keys[] = {
	KEY_STRING("ja4_fingerprint", T, ja4_fingerprint, NULL, KF_REGEX),
	KEY_STRINGS("disable_caps", T, disable_caps, disable_caps_count, 0),
	KEY_STRING("reason", T, reason, NULL, 0),
	KEY_END
};
#undef T

/* ---- which tables exist ----------------------------------------------------- */

const struct sora_config_table sora_config_root_table = { "", false, SCOPE_CONFIG, 0, root_keys };

#define CONFIG_TABLE(n, f, k) { (n), false, SCOPE_CONFIG, offsetof(struct sora_config, f), (k) }
const struct sora_config_table sora_config_fixed_tables[] = {
	CONFIG_TABLE("logging", logging, logging_keys),
	CONFIG_TABLE("database", database, database_keys),
	{ "database.read_endpoints", true, SCOPE_ENDPOINT, 0, read_endpoint_keys },
	CONFIG_TABLE("storage", storage, storage_keys),
	CONFIG_TABLE("s3", s3, s3_keys),
	CONFIG_TABLE("uploader", uploader, uploader_keys),
	CONFIG_TABLE("local_cache", local_cache, local_cache_keys),
	CONFIG_TABLE("tls", tls, tls_keys),
	CONFIG_TABLE("tls.letsencrypt", tls.letsencrypt, letsencrypt_keys),
	CONFIG_TABLE("tls.letsencrypt.s3", tls.letsencrypt, letsencrypt_s3_keys),
	CONFIG_TABLE("cluster", cluster, cluster_keys),
	CONFIG_TABLE("cluster.rate_limit_sync", cluster, rate_limit_sync_keys),
	CONFIG_TABLE("shared_mailboxes", shared_mailboxes, shared_mailboxes_keys),
};
#undef CONFIG_TABLE
const size_t sora_config_fixed_table_count =
	sizeof(sora_config_fixed_tables) / sizeof(sora_config_fixed_tables[0]);

const struct sora_config_table sora_config_server_table = {
	"servers", false, SCOPE_SERVER, 0, server_keys
};
/* The tables that hang below a server: [servers.NAME.x] or, after a
 * [[servers]] entry, [servers.x] / [[servers.x]]. */
const struct sora_config_table sora_config_server_subtables[] = {
	{ "auth_rate_limit", false, SCOPE_SERVER,
	  offsetof(struct sora_server_config, auth_rate_limit), auth_rate_limit_keys },
	{ "proxy_protocol", false, SCOPE_SERVER,
	  offsetof(struct sora_server_config, proxy_protocol), proxy_protocol_keys },
	{ "client_filters", true, SCOPE_FILTER, 0, client_filter_keys },
};
const size_t sora_config_server_subtable_count =
	sizeof(sora_config_server_subtables) / sizeof(sora_config_server_subtables[0]);
