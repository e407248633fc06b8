/* sora-admin: importing password hashes (accounts create / credentials add
 * --hash-import) and the auth_attempts blocks (auth blocks, auth unblock). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "backend/admin/admin.h"
#include "common/admin/ops.h"
#include "common/core/cidr.h"
#include "common/core/log.h"
#include "common/db/accounts.h"

/* Longest hash accepted on standard input. The longest supported form (an
 * Argon2 string) is 512 bytes after its prefix. */
#define HASH_IMPORT_MAX 1024

/* ---- --hash-import ---- */

static void hash_free(char **hash)
{
	if (*hash != NULL) {
		sodium_memzero(*hash, strlen(*hash));
		free(*hash);
		*hash = NULL;
	}
}

/* Reads --hash-import: the value itself, or with "-" the first line of
 * standard input. A hash is not a password, but it can be attacked offline,
 * so a value given on the command line is overwritten in argv (it would
 * otherwise stay in /proc/PID/cmdline) and the copy is wiped after use.
 * Returns 0 with *hash_r malloc'd (free with hash_free), or an exit code
 * after printing the reason. */
static int read_hash_import(const struct admin_args *args, char **hash_r)
{
	const char *given = admin_opt(args, "hash-import");
	char *buf;
	size_t len = 0;

	*hash_r = NULL;
	if (admin_opt(args, "password") != NULL || admin_flag(args, "password-stdin") ||
	    admin_opt(args, "hash") != NULL)
		return admin_usage_error(args->cmd, "--hash-import replaces --password, "
					 "--password-stdin and --hash");
	buf = malloc(HASH_IMPORT_MAX + 2);
	if (buf == NULL)
		return admin_fail("out of memory");
	if (strcmp(given, "-") != 0) {
		len = strlen(given);
		if (len > HASH_IMPORT_MAX) {
			free(buf);
			return admin_usage_error(args->cmd, "the hash to import is longer than %d "
						 "bytes", HASH_IMPORT_MAX);
		}
		memcpy(buf, given, len);
		for (int i = 0; i < ADMIN_MAX_OPTS && args->cmd->opts[i] != NULL; i++) {
			if (strcmp(args->cmd->opts[i], "hash-import=") == 0 &&
			    args->argv_index[i] > 0)
				sodium_memzero(args->argv[args->argv_index[i]], len);
		}
	} else {
		char *nl;

		while (len < HASH_IMPORT_MAX + 1) {
			ssize_t r = read(STDIN_FILENO, buf + len, HASH_IMPORT_MAX + 1 - len);

			if (r < 0) {
				hash_free(&buf);
				return admin_fail("cannot read the hash from standard input");
			}
			if (r == 0)
				break;
			len += (size_t)r;
			if (memchr(buf, '\n', len) != NULL)
				break;
		}
		nl = memchr(buf, '\n', len);
		if (nl != NULL)
			len = (size_t)(nl - buf);
		if (len > 0 && buf[len - 1] == '\r')
			len--;
		if (len > HASH_IMPORT_MAX) {
			sodium_memzero(buf, HASH_IMPORT_MAX + 2);
			free(buf);
			return admin_usage_error(args->cmd, "the hash to import is longer than %d "
						 "bytes", HASH_IMPORT_MAX);
		}
	}
	buf[len] = '\0';
	if (len == 0 || memchr(buf, '\0', len) != NULL) {
		hash_free(&buf);
		return admin_usage_error(args->cmd, "the hash to import is empty");
	}
	*hash_r = buf;
	return 0;
}

/* --email (checked) and the hash to import; 0 or an exit code (printed). */
static int import_args(const struct admin_args *args, const char **email_r, char **hash_r)
{
	int code;

	*email_r = admin_require(args, "email", &code);
	if (*email_r == NULL)
		return code;
	code = admin_check_address(args, *email_r);
	if (code != 0)
		return code;
	return read_hash_import(args, hash_r);
}

int admin_import_accounts_create(struct admin_ctx *ctx, const struct admin_args *args)
{
	enum sora_pw_scheme scheme;
	const char *email;
	char *hash = NULL;
	int64_t id = 0;
	struct sora_error err;
	int code, ret;

	code = import_args(args, &email, &hash);
	if (code != 0)
		return code;
	ret = sora_accounts_create_imported(ctx->conn, email, hash, &scheme, &id, &err);
	hash_free(&hash);
	if (ret != 0)
		return admin_report(&err);
	printf("created account %lld with primary address %s (%s, imported hash)\n",
	       (long long)id, email, sora_password_scheme_name(scheme));
	return ADMIN_EXIT_OK;
}

int admin_import_credentials_add(struct admin_ctx *ctx, const struct admin_args *args)
{
	enum sora_pw_scheme scheme;
	const char *account, *email;
	bool primary = admin_flag(args, "primary");
	char *hash = NULL;
	struct sora_error err;
	int code, ret;

	account = admin_require(args, "account", &code);
	if (account == NULL)
		return code;
	code = import_args(args, &email, &hash);
	if (code != 0)
		return code;
	ret = sora_accounts_add_credential_imported(ctx->conn, account, email, hash, primary,
						    &scheme, &err);
	hash_free(&hash);
	if (ret != 0)
		return admin_report(&err);
	printf("added %s to the account of %s%s (%s, imported hash)\n", email, account,
	       primary ? " as primary identity" : "", sora_password_scheme_name(scheme));
	return ADMIN_EXIT_OK;
}

/* ---- auth blocks / auth unblock ---- */

/* Usernames are whatever clients sent: escape them for the terminal. NULL
 * prints as "-". */
static const char *shown(const struct sora_admin_rows *rows, int row, int col, char *buf,
			 size_t size)
{
	const char *v = sora_admin_cell(rows, row, col);

	return v != NULL ? sora_log_escape(sora_str_c(v), buf, size) : "-";
}

int admin_cmd_auth_blocks(struct admin_ctx *ctx, const struct admin_args *args)
{
	struct sora_admin_rows rows;
	struct sora_error err;

	(void)args;
	if (sora_admin_auth_blocks(ctx->conn, 0, &rows, &err) != 0)
		return admin_report(&err);
	printf("%-40s %-40s %8s  %-23s  %s\n", "IP", "USERNAME", "FAILURES", "BLOCKED UNTIL",
	       "PROTOCOL");
	for (int i = 0; i < rows.count; i++) {
		char ip[64], user[128], proto[64];

		printf("%-40s %-40s %8s  %-23s  %s\n",
		       shown(&rows, i, SORA_ADMIN_BLOCK_IP, ip, sizeof(ip)),
		       shown(&rows, i, SORA_ADMIN_BLOCK_USERNAME, user, sizeof(user)),
		       sora_admin_cell(&rows, i, SORA_ADMIN_BLOCK_FAILURES),
		       sora_admin_cell(&rows, i, SORA_ADMIN_BLOCK_UNTIL),
		       shown(&rows, i, SORA_ADMIN_BLOCK_PROTOCOL, proto, sizeof(proto)));
	}
	printf("%d blocked\n", rows.count);
	sora_admin_rows_free(&rows);
	return ADMIN_EXIT_OK;
}

int admin_cmd_auth_unblock(struct admin_ctx *ctx, const struct admin_args *args)
{
	const char *ip = admin_opt(args, "ip");
	const char *user = admin_opt(args, "user");
	struct sora_admin_rows rows;
	struct sora_cidr cidr;
	const char *error;
	struct sora_error err;
	char shown_user[128];
	int blocked = 0;

	/* The operation checks its input too; these say it in terms of the
	 * command's options. */
	if (ip == NULL && user == NULL)
		return admin_usage_error(args->cmd, "give --ip and/or --user");
	if (user != NULL && user[0] == '\0')
		return admin_usage_error(args->cmd, "--user needs a user name");
	if (ip != NULL && sora_cidr_parse(ip, &cidr, &error) < 0) {
		char shown_ip[128];

		sora_log_escape(sora_str_c(ip), shown_ip, sizeof(shown_ip));
		return admin_usage_error(args->cmd, "invalid --ip \"%s\": %s", shown_ip, error);
	}
	if (sora_admin_auth_unblock(ctx->conn, ip, user, &rows, &err) != 0)
		return admin_report(&err);
	for (int i = 0; i < rows.count; i++) {
		char a[64], u[128];
		bool was_blocked = sora_admin_cell_bool(&rows, i, SORA_ADMIN_UNBLOCK_WAS_BLOCKED);

		blocked += was_blocked;
		printf("removed: ip %s, username %s, %s failures%s\n",
		       shown(&rows, i, SORA_ADMIN_UNBLOCK_IP, a, sizeof(a)),
		       shown(&rows, i, SORA_ADMIN_UNBLOCK_USERNAME, u, sizeof(u)),
		       sora_admin_cell(&rows, i, SORA_ADMIN_UNBLOCK_FAILURES),
		       was_blocked ? ", was blocked" : "");
	}
	if (user != NULL)
		sora_log_escape(sora_str_c(user), shown_user, sizeof(shown_user));
	if (rows.count == 0)
		printf("nothing to unblock: no auth_attempts rows for%s%s%s%s%s\n",
		       ip != NULL ? " IP " : "", ip != NULL ? ip : "",
		       ip != NULL && user != NULL ? " or" : "",
		       user != NULL ? " username " : "", user != NULL ? shown_user : "");
	else
		printf("%d row%s removed, %d of them blocking\n", rows.count,
		       rows.count == 1 ? "" : "s", blocked);
	sora_admin_rows_free(&rows);
	return ADMIN_EXIT_OK;
}
