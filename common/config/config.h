/* Sora configuration: typed structs and the loader.
 *
 * The file format is the TOML subset described in DESIGN.md §5, read with
 * inih. sora_config_load() returns a fully validated, immutable config with
 * every default applied; nothing else in the program parses config text.
 *
 * Ownership: the loader allocates one struct sora_config and everything it
 * points to; sora_config_free() releases all of it. After loading the
 * config is read-only and may be shared by all threads. A reload (SIGHUP)
 * loads a new config and swaps it in on the main thread.
 *
 * Timeouts: the guide's rule "0 = default, -1 = disabled" is resolved by
 * the loader: the *_ms fields below hold the effective value, with
 * SORA_DISABLED (-1) meaning the protection is off. */
#ifndef SORA_CONFIG_CONFIG_H
#define SORA_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/core/cidr.h"

#define SORA_DISABLED (-1)

/* Defaults from the security guide (and DESIGN.md where the guide is silent). */
#define SORA_DEFAULT_COMMAND_TIMEOUT_MS          (5 * 60 * 1000)
#define SORA_DEFAULT_ABSOLUTE_SESSION_TIMEOUT_MS (30 * 60 * 1000)
#define SORA_DEFAULT_MIN_BYTES_PER_MINUTE        1024
#define SORA_DEFAULT_PROXY_PROTOCOL_TIMEOUT_MS   (5 * 1000)
#define SORA_DEFAULT_SESSION_MEMORY_LIMIT        (100ULL * 1024 * 1024)
#define SORA_DEFAULT_APPEND_LIMIT                (25ULL * 1024 * 1024)
#define SORA_DEFAULT_MAX_MESSAGE_SIZE            (50ULL * 1024 * 1024)
#define SORA_DEFAULT_SEARCH_RATE_WINDOW_MS       (60 * 1000)
#define SORA_DEFAULT_MAX_CONNECTIONS             1000
#define SORA_DEFAULT_MAX_CONNECTIONS_PER_IP      10

enum sora_server_type {
	SORA_SRV_IMAP = 0,
	SORA_SRV_POP3,
	SORA_SRV_LMTP,
	SORA_SRV_MANAGESIEVE,
	SORA_SRV_IMAP_PROXY,
	SORA_SRV_POP3_PROXY,
	SORA_SRV_LMTP_PROXY,
	SORA_SRV_MANAGESIEVE_PROXY,
	SORA_SRV_HTTP_API,
	SORA_SRV_METRICS,
	SORA_SRV_TYPE_COUNT
};

/* "imap", "pop3_proxy", ... ; NULL if out of range. */
const char *sora_server_type_name(enum sora_server_type type);
/* -1 if unknown. */
int sora_server_type_parse(const char *name, enum sora_server_type *type_r);
bool sora_server_type_is_proxy(enum sora_server_type type);
/* The protocol label used in logs and metrics: "imap" for both imap and
 * imap_proxy, "http_api", "metrics". */
const char *sora_server_type_protocol(enum sora_server_type type);

struct sora_auth_rate_limit_config {
	bool enabled;                        /* default false */
	int max_attempts_per_ip;             /* default 10 */
	int max_attempts_per_username;       /* default 5 */
	int64_t ip_window_ms;                /* ip_window_duration, default 15m */
	int64_t username_window_ms;          /* username_window_duration, default 15m */
	int fast_block_threshold;            /* default 10 */
	int64_t fast_block_ms;               /* fast_block_duration, default 5m */
	int64_t db_error_threshold_ms;       /* default 1m */
	bool progressive_delay_enabled;      /* default true */
	int64_t delay_start_threshold;       /* failures before delays start, default 2 */
	int64_t initial_delay_ms;            /* initial_delay or progressive_delay_min, default 2s */
	int64_t max_delay_ms;                /* max_delay or progressive_delay_max, default 30s */
	double delay_multiplier;             /* default 2.0 */
};

struct sora_proxy_protocol_config {
	bool enabled;                        /* default false */
	struct sora_cidr_list trusted_proxies;
	int64_t timeout_ms;                  /* "timeout" or the server's proxy_protocol_timeout; default 5s */
};

struct sora_client_filter {
	char *ja4_fingerprint;               /* regex (POSIX ERE), validated at load */
	char **disable_caps;                 /* NULL-terminated */
	size_t disable_caps_count;
	char *reason;
};

struct sora_server_config {
	char *name;                          /* table name ("imap" in [servers.imap]) or "type#N" */
	enum sora_server_type type;
	bool start;                          /* default true */
	char *addr;                          /* "host:port", ":port", "[v6]:port", "unix:/path" */
	char *hostname;                      /* greeting name; default: top-level hostname */

	/* TLS */
	bool tls;                            /* implicit TLS on accept */
	bool tls_use_starttls;               /* offer STARTTLS (needs cert + key) */
	char *tls_cert_file;
	char *tls_key_file;
	bool tls_verify;                     /* require and verify a client certificate */
	char *tls_ca_file;                   /* CAs for tls_verify (required when tls_verify) */
	char *tls_min_version;               /* "1.2" (default) or "1.3" */

	/* Timeouts (effective values; SORA_DISABLED = off) */
	int64_t command_timeout_ms;
	int64_t absolute_session_timeout_ms;
	int64_t min_bytes_per_minute;

	/* Limits (0 = unlimited) */
	int64_t max_connections;
	int64_t max_connections_per_ip;
	uint64_t session_memory_limit;       /* 0 = unlimited */
	uint64_t append_limit;               /* imap */
	uint64_t max_message_size;           /* lmtp */
	int64_t recipient_cache_ttl_ms;      /* lmtp, default 60s, 0 = no cache */
	int64_t search_rate_limit_per_min;   /* 0 = disabled */
	int64_t search_rate_limit_window_ms;
	int64_t max_errors;                  /* invalid commands before disconnect, default 10 */
	bool insecure_auth;                  /* allow plaintext auth without TLS; default false */

	struct sora_proxy_protocol_config proxy_protocol;
	struct sora_auth_rate_limit_config auth_rate_limit;

	/* Who may send XCLIENT / ID forwarding / master SASL. Empty: the
	 * top-level trusted_networks apply. */
	struct sora_cidr_list trusted_networks;
	struct sora_cidr_list master_sasl_allowed_networks;
	char *master_username;               /* log in as any user: "user*master" */
	char *master_password;
	char *master_sasl_username;          /* SASL authcid that may set any authzid */
	char *master_sasl_password;

	/* Proxy servers */
	char **remote_addrs;                 /* NULL-terminated */
	size_t remote_addrs_count;
	bool remote_tls;
	bool remote_tls_verify;              /* default true */
	bool remote_use_proxy_protocol;      /* default true */
	int64_t connect_timeout_ms;          /* default 10s: one budget for the whole
					      * backend login, failovers included */
	char *remote_tls_ca_file;            /* CAs for remote_tls_verify (default: system store) */
	int64_t health_check_interval_ms;    /* active backend checks, default 5s */

	/* http_api / metrics */
	char *api_key;
	struct sora_cidr_list allowed_hosts; /* empty = only loopback */
	char *path;                          /* metrics path, default "/metrics" */

	struct sora_client_filter *client_filters;
	size_t client_filters_count;

	/* Where it was defined, for messages. */
	char *defined_at;                    /* "file:line" */
};

struct sora_db_endpoint {
	char *host;
	int port;
};

struct sora_database_config {
	char *host;                          /* default "localhost" (a path = unix socket dir) */
	int port;                            /* default 5432 */
	char *dbname;                        /* default "sora_mail_db" */
	char *user;                          /* default "postgres" */
	char *password;                      /* default "" */
	char *sslmode;                       /* default "prefer" */
	int max_conns;                       /* default 20 */
	int min_conns;                       /* default 2 */
	int64_t max_conn_lifetime_ms;        /* default 1h */
	int64_t max_conn_idle_time_ms;       /* default 30m */
	int64_t query_timeout_ms;            /* default 30s */
	int64_t search_query_timeout_ms;     /* default 60s */
	int64_t write_timeout_ms;            /* default 30s */
	struct sora_db_endpoint *read_endpoints;
	size_t read_endpoints_count;
};

struct sora_storage_config {
	char *backend;                       /* "fs" (default) or "s3" */
	char *fs_path;                       /* default "var/blobs" */
};

struct sora_s3_config {
	char *endpoint;                      /* "host[:port]" */
	char *region;                        /* default "us-east-1" */
	char *bucket;
	char *access_key;
	char *secret_key;
	bool use_ssl;                        /* default true */
	bool path_style;                     /* default false */
	bool tls_verify;                     /* default true */
	bool encrypt;                        /* default false */
	char *encryption_key;                /* 64 hex chars; required when encrypt */
	char **old_encryption_keys;          /* read-only keys during rotation, NULL-terminated */
	size_t old_encryption_keys_count;
	int64_t timeout_ms;                  /* default 60s */
};

struct sora_uploader_config {
	char *path;                          /* staging dir, default "var/staging" */
	int workers;                         /* default 4 */
	int max_attempts;                    /* default 0 = retry forever */
	int64_t retry_interval_ms;           /* default 30s */
};

struct sora_local_cache_config {
	char *path;                          /* default "var/cache" */
	uint64_t capacity;                   /* default 1gb */
	uint64_t max_object_size;            /* default 5mb */
};

struct sora_letsencrypt_config {
	char *email;
	char **domains;                      /* NULL-terminated */
	size_t domains_count;
	char *storage_provider;              /* "s3" or "fs" */
	int64_t renew_before_ms;             /* default 720h */
	char *s3_bucket;                     /* [tls.letsencrypt.s3] */
	char *s3_region;
	char *directory_url;                 /* ACME directory (default Let's Encrypt production) */
};

struct sora_tls_config {
	bool enabled;
	char *provider;                      /* "file" (default) or "letsencrypt" */
	struct sora_letsencrypt_config letsencrypt;
};

struct sora_cluster_config {
	bool enabled;
	char *bind_addr;                     /* default "0.0.0.0" */
	int bind_port;                       /* default 7946 */
	char *node_id;
	char **peers;                        /* NULL-terminated */
	size_t peers_count;
	char *secret_key;                    /* base64 of 32 bytes; required when enabled */
	bool rate_limit_sync_enabled;        /* default true */
	bool sync_blocks;                    /* default true */
	bool sync_failure_counts;            /* default true */
};

struct sora_shared_mailboxes_config {
	bool enabled;
	char *namespace_prefix;              /* default "Shared/" */
	bool allow_user_create;              /* default false */
	char *default_rights;                /* default "lrswipkxtea" */
};

struct sora_logging_config {
	char *level;                         /* default "info" */
	char *format;                        /* default "console" */
	char *output;                        /* default "stderr" */
};

struct sora_config {
	char *path;                          /* file it was loaded from */
	char *hostname;                      /* default: gethostname() */
	/* The one base for relative paths ([uploader] path, [local_cache]
	 * path, [storage] fs_path): absolute, default the working directory
	 * at load time. After loading those three paths are absolute. */
	char *base_dir;
	bool base_dir_is_cwd;                /* base_dir was not set: the working directory */
	int event_loops;                     /* default 0 = number of CPUs */
	int worker_threads;                  /* default 16 */
	struct sora_cidr_list trusted_networks; /* default 127.0.0.0/8, ::1/128 */

	struct sora_logging_config logging;
	struct sora_database_config database;
	struct sora_storage_config storage;
	struct sora_s3_config s3;
	struct sora_uploader_config uploader;
	struct sora_local_cache_config local_cache;
	struct sora_tls_config tls;
	struct sora_cluster_config cluster;
	struct sora_shared_mailboxes_config shared_mailboxes;

	struct sora_server_config *servers;  /* in file order */
	size_t servers_count;

	/* What loading found that is not an error for the loader itself (so
	 * that sora-admin and every block of the security guide still load),
	 * but is for a server binary: see sora_config_check_startable(). */
	unsigned warnings;                   /* unknown keys and tables, logged */
	char *unavailable;                   /* the first feature configured but not
					      * built in this version ("file:line: key
					      * 'enabled' in [cluster]: ..."), or NULL */
};

/* Loads and validates a config file. On success returns 0 and *config_r.
 * Unknown keys produce one warning each ("file:line: unknown key 'x' in
 * [table]") through the logger. On any error returns -1 and writes one
 * line naming file:line and the key into err (errsize bytes); nothing is
 * allocated then. */
int sora_config_load(const char *path, struct sora_config **config_r,
		     char *err, size_t errsize);
/* The same for text already in memory; `name` stands in for the file name
 * in messages and relative paths are taken as they are. */
int sora_config_load_string(const char *text, size_t len, const char *name,
			    struct sora_config **config_r, char *err, size_t errsize);
/* The check sora-proxy and sora-backend make after loading, before they
 * start anything. A feature that is configured but not built in this
 * version (cluster mode, [tls] certificate management, shared mailboxes,
 * auth rate limiting, client filters) is an error naming the key with
 * file:line: starting would silently run without it. With check_only
 * (--check-config) any warning the loader printed is an error too, as with
 * `nginx -t`: an unknown key is usually a typo that leaves a setting at its
 * default. A server that starts still only warns. Returns 0, or -1 with
 * one line in err. Server types without a handler are refused by the
 * binary itself (common/net/serve.c), which knows its handlers. */
int sora_config_check_startable(const struct sora_config *config, bool check_only,
				char *err, size_t errsize);
/* Frees a config and clears the caller's pointer. NULL-safe. */
void sora_config_free(struct sora_config **config);

#endif
