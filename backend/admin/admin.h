/* sora-admin internals: the command table, parsed arguments, and helpers
 * shared by the command files (admin-*.c).
 *
 * sora-admin is single-threaded: it loads the config, opens one database
 * connection when the command needs it, runs the command and exits. Exit
 * status: ADMIN_EXIT_OK (0) on success, ADMIN_EXIT_FAIL (1) when the
 * operation failed (one line on stderr says why), ADMIN_EXIT_USAGE (2) for
 * usage and config errors (including an invalid address). */
#ifndef SORA_ADMIN_ADMIN_H
#define SORA_ADMIN_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "common/auth/password.h"
#include "common/config/config.h"
#include "common/core/error.h"
#include "common/db/db.h"

#define ADMIN_EXIT_OK    0
#define ADMIN_EXIT_FAIL  1
#define ADMIN_EXIT_USAGE 2

#define ADMIN_MAX_OPTS 8

struct admin_ctx;
struct admin_args;

struct admin_cmd {
	const char *group;                   /* "accounts" */
	const char *name;                    /* "create", or NULL for "health" */
	const char *usage;                   /* options part of the synopsis */
	const char *summary;                 /* one line */
	const char *help;                    /* details, several lines */
	/* Options: "email=" takes a value, "password-stdin" is a flag. */
	const char *opts[ADMIN_MAX_OPTS + 1];
	bool needs_db;
	int (*run)(struct admin_ctx *ctx, const struct admin_args *args);
};

struct admin_args {
	const struct admin_cmd *cmd;
	const char *values[ADMIN_MAX_OPTS];  /* borrowed from argv; "" for flags */
	int argv_index[ADMIN_MAX_OPTS];      /* where the value is in argv */
	char **argv;
};

struct admin_ctx {
	const char *config_path;
	struct sora_config *cfg;             /* owned */
	struct sora_db_pool *pool;           /* owned */
	struct sora_db_conn *conn;           /* owned; acquired when needs_db */
};

/* The option's value, NULL when not given (flags: "" when given). */
const char *admin_opt(const struct admin_args *args, const char *name);
bool admin_flag(const struct admin_args *args, const char *name);

/* Prints "sora-admin: <message>" to stderr and returns ADMIN_EXIT_FAIL. */
int admin_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the message and the command's synopsis to stderr and returns
 * ADMIN_EXIT_USAGE. */
int admin_usage_error(const struct admin_cmd *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Prints "sora-admin: <err->msg>" to stderr and returns the exit status
 * for a failure of the accounts/db/store modules: ADMIN_EXIT_USAGE for
 * SORA_ERR_INVALID (the operator's input), ADMIN_EXIT_FAIL otherwise. */
int admin_report(const struct sora_error *err);

/* A required option; prints the usage error when it is missing. */
const char *admin_require(const struct admin_args *args, const char *name, int *exit_r);

/* Reads the password from --password (wiping it from argv afterwards, so
 * it does not linger in /proc/PID/cmdline) or from standard input with
 * --password-stdin (one line; the trailing newline is removed). Exactly
 * one of the two must be given. Returns 0 with *password_r in
 * sodium_malloc'd memory (free with admin_password_free), or an exit code
 * after printing the reason. */
int admin_read_password(const struct admin_args *args, char **password_r, size_t *len_r);
void admin_password_free(char **password, size_t len);

/* --hash, default bcrypt. Returns 0 or ADMIN_EXIT_USAGE (printed). */
int admin_hash_scheme(const struct admin_args *args, enum sora_pw_scheme *scheme_r);

/* Checks an address given by the operator (address.h rules); prints a
 * usage error and returns ADMIN_EXIT_USAGE when it is not valid. */
int admin_check_address(const struct admin_args *args, const char *address);

/* Commands (admin-migrate.c, admin-accounts.c, admin-stats.c). */
int admin_cmd_migrate_up(struct admin_ctx *ctx, const struct admin_args *args);
int admin_cmd_migrate_status(struct admin_ctx *ctx, const struct admin_args *args);
int admin_cmd_accounts_create(struct admin_ctx *ctx, const struct admin_args *args);
int admin_cmd_accounts_list(struct admin_ctx *ctx, const struct admin_args *args);
int admin_cmd_accounts_show(struct admin_ctx *ctx, const struct admin_args *args);
int admin_cmd_accounts_update(struct admin_ctx *ctx, const struct admin_args *args);
int admin_cmd_accounts_delete(struct admin_ctx *ctx, const struct admin_args *args);
int admin_cmd_accounts_restore(struct admin_ctx *ctx, const struct admin_args *args);
int admin_cmd_credentials_add(struct admin_ctx *ctx, const struct admin_args *args);
int admin_cmd_credentials_list(struct admin_ctx *ctx, const struct admin_args *args);
int admin_cmd_credentials_delete(struct admin_ctx *ctx, const struct admin_args *args);
int admin_cmd_stats_auth(struct admin_ctx *ctx, const struct admin_args *args);
int admin_cmd_health(struct admin_ctx *ctx, const struct admin_args *args);
int admin_cmd_auth_test(struct admin_ctx *ctx, const struct admin_args *args);
/* admin-connections.c */
int admin_cmd_connections_list(struct admin_ctx *ctx, const struct admin_args *args);
int admin_cmd_connections_kick(struct admin_ctx *ctx, const struct admin_args *args);
/* admin-auth.c: auth blocks, auth unblock, and the --hash-import forms of
 * accounts create and credentials add (called by those commands when the
 * option is given). */
int admin_cmd_auth_blocks(struct admin_ctx *ctx, const struct admin_args *args);
int admin_cmd_auth_unblock(struct admin_ctx *ctx, const struct admin_args *args);
int admin_import_accounts_create(struct admin_ctx *ctx, const struct admin_args *args);
int admin_import_credentials_add(struct admin_ctx *ctx, const struct admin_args *args);

/* Formats a byte count as "12345 (12.1 KiB)" into buf. */
const char *admin_format_size(long long bytes, char *buf, size_t size);

#endif
