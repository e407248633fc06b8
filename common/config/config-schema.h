/* The config schema: every table the file may contain, every key of each
 * table, and how a key's value is stored.
 *
 * Internal to common/config/. A key is one struct sora_config_key: its
 * name, the type of its value, the offset of the field it fills inside its
 * table's struct, its default and its limits. The loader (config.c) uses
 * these lists to apply defaults, decode values and free a config, so a new
 * key is one line in config-schema.c and nothing else.
 *
 * Thread safety: read-only data. */
#ifndef SORA_CONFIG_CONFIG_SCHEMA_H
#define SORA_CONFIG_CONFIG_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config/config.h"

/* What a value is and the C type of the field that holds it. */
enum sora_config_value_type {
	KT_STRING,      /* char *, owned */
	KT_BOOL,        /* bool */
	KT_INT,         /* int, within [min, max] */
	KT_INT64,       /* int64_t, within [min, max] */
	KT_DURATION,    /* int64_t milliseconds, at least min */
	KT_SIZE,        /* uint64_t bytes */
	KT_DOUBLE,      /* double, within [min, max] */
	KT_STRINGS,     /* char ** (NULL-terminated, owned) + size_t count */
	KT_CIDRS,       /* struct sora_cidr_list */
	KT_SERVER_TYPE, /* enum sora_server_type */
};

/* Rules and checks beyond the type. */
enum {
	KF_ZERO_DEFAULT = 1 << 0,  /* 0 selects the default */
	KF_DISABLE      = 1 << 1,  /* -1 stores SORA_DISABLED */
	KF_TIMEOUT      = KF_ZERO_DEFAULT | KF_DISABLE,  /* the guide's timeout rule */
	KF_HEX_KEY      = 1 << 2,  /* 64 hex characters: a 32-byte key */
	KF_REGEX        = 1 << 3,  /* a POSIX extended regular expression */
	KF_LISTEN       = 1 << 4,  /* "host:port", ":port", "[v6]:port", "unix:/path" */
	KF_REMOTE       = 1 << 5,  /* "host:port", "[v6]:port", "unix:/path" */
	KF_HOSTPORT     = 1 << 6,  /* "host:port", "[v6]:port" */
	KF_HOST         = 1 << 7,  /* "host", "host:port", "[v6]:port" */
	KF_ACL_RIGHTS   = 1 << 8,  /* letters from "lrswipkxtea" */
	KF_URL_SCHEME   = 1 << 9,  /* with KF_HOST: an "http://" or "https://" prefix
				    * and trailing '/' are allowed too */
};

struct sora_config_key {
	const char *name;
	enum sora_config_value_type type;
	unsigned flags;
	size_t offset;                 /* of the field in the table's struct */
	size_t count_offset;           /* KT_STRINGS: the size_t count beside it */
	int64_t min, max;              /* limits of numbers and durations */
	const char *const *choices;    /* KT_STRING: the allowed values, or NULL */
	const char *def_string;        /* KT_STRING default, copied */
	int64_t def_int;               /* default of a bool, integer, duration, size */
	double def_double;
};

/* The struct a table fills lives in... */
enum sora_config_scope {
	SCOPE_CONFIG,    /* ...struct sora_config itself */
	SCOPE_SERVER,    /* ...one struct sora_server_config */
	SCOPE_FILTER,    /* ...one of a server's client filters */
	SCOPE_ENDPOINT,  /* ...one database read endpoint */
};

struct sora_config_table {
	const char *name;                  /* the header, without brackets */
	bool is_array;                     /* written [[name]] */
	enum sora_config_scope scope;
	size_t offset;                     /* of the table's struct within its scope */
	const struct sora_config_key *keys;  /* ends with a NULL name */
};

/* The keys before the first header. */
extern const struct sora_config_table sora_config_root_table;
/* [logging], [database], [[database.read_endpoints]], [tls.letsencrypt], ... */
extern const struct sora_config_table sora_config_fixed_tables[];
extern const size_t sora_config_fixed_table_count;
/* [servers.NAME] and [[servers]]. */
extern const struct sora_config_table sora_config_server_table;
/* What hangs below a server: [servers.NAME.auth_rate_limit],
 * [servers.NAME.proxy_protocol], [[servers.NAME.client_filters]]. The
 * name here is the last part only. */
extern const struct sora_config_table sora_config_server_subtables[];
extern const size_t sora_config_server_subtable_count;

#endif
