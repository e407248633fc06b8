/* sora-admin accounts ... and credentials ... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/admin/admin.h"
#include "common/admin/ops.h"
#include "common/db/accounts.h"

/* What a new credential needs from the command line: the address checked,
 * the scheme and the password (the caller frees it with
 * admin_password_free). Returns 0 or an exit status (printed). */
static int credential_args(const struct admin_args *args, const char *email,
			   enum sora_pw_scheme *scheme_r, char **password_r, size_t *len_r)
{
	int code = admin_check_address(args, email);

	if (code == 0)
		code = admin_hash_scheme(args, scheme_r);
	if (code == 0)
		code = admin_read_password(args, password_r, len_r);
	return code;
}

int admin_cmd_accounts_create(struct admin_ctx *ctx, const struct admin_args *args)
{
	enum sora_pw_scheme scheme;
	const char *email;
	char *password = NULL;
	size_t len = 0;
	int64_t id = 0;
	struct sora_error err;
	int code, ret;

	if (admin_opt(args, "hash-import") != NULL)
		return admin_import_accounts_create(ctx, args);
	email = admin_require(args, "email", &code);
	if (email == NULL)
		return code;
	code = credential_args(args, email, &scheme, &password, &len);
	if (code != 0)
		return code;
	ret = sora_accounts_create(ctx->conn, email, password, len, scheme, &id, &err);
	admin_password_free(&password, len);
	if (ret != 0)
		return admin_report(&err);
	printf("created account %lld with primary address %s (%s)\n", (long long)id, email,
	       sora_password_scheme_name(scheme));
	return ADMIN_EXIT_OK;
}

int admin_cmd_accounts_list(struct admin_ctx *ctx, const struct admin_args *args)
{
	struct sora_account_list list;
	enum sora_accounts_filter filter = SORA_ACCOUNTS_LIVE;
	struct sora_error err;
	int ret;

	if (admin_flag(args, "deleted") && admin_flag(args, "all"))
		return admin_usage_error(args->cmd, "--deleted and --all exclude each other");
	if (admin_flag(args, "deleted"))
		filter = SORA_ACCOUNTS_DELETED;
	else if (admin_flag(args, "all"))
		filter = SORA_ACCOUNTS_ALL;
	ret = sora_accounts_list(ctx->conn, filter, &list, &err);
	if (ret != 0)
		return admin_report(&err);
	printf("%-8s %-40s %5s %9s %9s %-23s %s\n", "ID", "PRIMARY ADDRESS", "CREDS",
	       "MAILBOXES", "MESSAGES", "CREATED", "STATUS");
	for (size_t i = 0; i < list.count; i++) {
		const struct sora_account_info *a = &list.items[i];

		printf("%-8lld %-40s %5lld %9lld %9lld %-23s %s\n", (long long)a->id,
		       a->primary_address[0] != '\0' ? a->primary_address : "-",
		       (long long)a->credential_count, (long long)a->mailbox_count,
		       (long long)a->message_count, a->created_at,
		       a->deleted_at != NULL ? "deleted" : "active");
	}
	printf("%zu account%s\n", list.count, list.count == 1 ? "" : "s");
	sora_account_list_free(&list);
	return ADMIN_EXIT_OK;
}

static void print_credentials(const struct sora_credential_list *creds)
{
	printf("%-40s %-8s %-13s %-23s %s\n", "ADDRESS", "PRIMARY", "SCHEME", "CREATED",
	       "UPDATED");
	for (size_t i = 0; i < creds->count; i++) {
		const struct sora_credential_info *c = &creds->items[i];

		printf("%-40s %-8s %-13s %-23s %s\n", c->address, c->primary ? "yes" : "no",
		       c->scheme, c->created_at, c->updated_at);
	}
}

static void print_backend(struct admin_ctx *ctx, long long id)
{
	char backend[256];

	sora_admin_account_backend(ctx->conn, id, backend, sizeof(backend));
	printf("Backend:     %s\n", backend[0] != '\0' ? backend : "(ring)");
}

int admin_cmd_accounts_show(struct admin_ctx *ctx, const struct admin_args *args)
{
	struct sora_account_list list;
	struct sora_credential_list creds;
	const struct sora_account_info *a;
	const char *email;
	struct sora_error err;
	char size[64];
	int code, ret;

	email = admin_require(args, "email", &code);
	if (email == NULL)
		return code;
	ret = sora_accounts_show(ctx->conn, email, &list, &err);
	if (ret != 0)
		return admin_report(&err);
	ret = sora_accounts_list_credentials(ctx->conn, email, &creds, &err);
	if (ret != 0) {
		sora_account_list_free(&list);
		return admin_report(&err);
	}
	a = &list.items[0];
	printf("Account:     %lld\n", (long long)a->id);
	printf("Primary:     %s\n", a->primary_address[0] != '\0' ? a->primary_address : "-");
	if (a->deleted_at != NULL)
		printf("Status:      deleted (since %s)\n", a->deleted_at);
	else
		printf("Status:      active\n");
	printf("Created:     %s\n", a->created_at);
	print_backend(ctx, a->id);
	printf("Mailboxes:   %lld\n", (long long)a->mailbox_count);
	printf("Messages:    %lld\n", (long long)a->message_count);
	printf("Size:        %s\n", admin_format_size(a->total_size, size, sizeof(size)));
	printf("Credentials: %zu\n\n", creds.count);
	print_credentials(&creds);
	sora_credential_list_free(&creds);
	sora_account_list_free(&list);
	return ADMIN_EXIT_OK;
}

/* accounts.backend (migration 0007): the proxies' per-user override. */
static int set_backend(struct admin_ctx *ctx, const char *email, const char *backend)
{
	struct sora_error err;

	if (sora_admin_account_set_backend(ctx->conn, email, backend, &err) != 0)
		return admin_fail("%s%s", err.cls == SORA_ERR_INVALID ? "--" : "", err.msg);
	if (backend[0] != '\0')
		printf("%s is pinned to backend %s\n", email, backend);
	else
		printf("%s is routed by the ring again\n", email);
	return ADMIN_EXIT_OK;
}

int admin_cmd_accounts_update(struct admin_ctx *ctx, const struct admin_args *args)
{
	bool want_password = admin_opt(args, "password") != NULL ||
		admin_flag(args, "password-stdin");
	bool make_primary = admin_flag(args, "make-primary");
	const char *backend = admin_opt(args, "backend");
	enum sora_pw_scheme scheme;
	const char *email;
	char *password = NULL;
	size_t len = 0;
	struct sora_error err;
	int code, ret;

	email = admin_require(args, "email", &code);
	if (email == NULL)
		return code;
	if (!want_password && !make_primary && backend == NULL)
		return admin_usage_error(args->cmd, "nothing to change: give a new password,"
					 " --make-primary and/or --backend");
	if (!want_password && admin_opt(args, "hash") != NULL)
		return admin_usage_error(args->cmd, "--hash needs a new password");
	code = admin_hash_scheme(args, &scheme);
	if (code != 0)
		return code;
	if (want_password) {
		code = admin_read_password(args, &password, &len);
		if (code != 0)
			return code;
		ret = sora_accounts_set_password(ctx->conn, email, password, len, scheme, &err);
		admin_password_free(&password, len);
		if (ret != 0)
			return admin_report(&err);
		printf("password of %s changed (%s)\n", email, sora_password_scheme_name(scheme));
	}
	if (make_primary) {
		ret = sora_accounts_make_primary(ctx->conn, email, &err);
		if (ret != 0)
			return admin_report(&err);
		printf("%s is now the primary identity of its account\n", email);
	}
	if (backend != NULL) {
		code = set_backend(ctx, email, backend);
		if (code != ADMIN_EXIT_OK)
			return code;
	}
	return ADMIN_EXIT_OK;
}

/* The commands that make one change to the address given with --email:
 * runs op and returns the exit status; *email_r is the address. */
static int change_by_email(struct admin_ctx *ctx, const struct admin_args *args,
			   int (*op)(struct sora_db_conn *, const char *, struct sora_error *),
			   const char **email_r)
{
	struct sora_error err;
	int code;

	*email_r = admin_require(args, "email", &code);
	if (*email_r == NULL)
		return code;
	if (op(ctx->conn, *email_r, &err) != 0)
		return admin_report(&err);
	return ADMIN_EXIT_OK;
}

int admin_cmd_accounts_delete(struct admin_ctx *ctx, const struct admin_args *args)
{
	const char *email;
	int code = change_by_email(ctx, args, sora_accounts_delete, &email);

	if (code == ADMIN_EXIT_OK)
		printf("account of %s deleted (restore with: sora-admin accounts restore"
		       " --email %s)\n", email, email);
	return code;
}

int admin_cmd_accounts_restore(struct admin_ctx *ctx, const struct admin_args *args)
{
	const char *email;
	int code = change_by_email(ctx, args, sora_accounts_restore, &email);

	if (code == ADMIN_EXIT_OK)
		printf("account of %s restored\n", email);
	return code;
}

int admin_cmd_credentials_add(struct admin_ctx *ctx, const struct admin_args *args)
{
	enum sora_pw_scheme scheme;
	const char *account, *email;
	bool primary = admin_flag(args, "primary");
	char *password = NULL;
	size_t len = 0;
	struct sora_error err;
	int code, ret;

	if (admin_opt(args, "hash-import") != NULL)
		return admin_import_credentials_add(ctx, args);
	account = admin_require(args, "account", &code);
	if (account == NULL)
		return code;
	email = admin_require(args, "email", &code);
	if (email == NULL)
		return code;
	code = credential_args(args, email, &scheme, &password, &len);
	if (code != 0)
		return code;
	ret = sora_accounts_add_credential(ctx->conn, account, email, password, len, scheme,
					   primary, &err);
	admin_password_free(&password, len);
	if (ret != 0)
		return admin_report(&err);
	printf("added %s to the account of %s%s (%s)\n", email, account,
	       primary ? " as primary identity" : "", sora_password_scheme_name(scheme));
	return ADMIN_EXIT_OK;
}

int admin_cmd_credentials_list(struct admin_ctx *ctx, const struct admin_args *args)
{
	struct sora_credential_list creds;
	const char *account = admin_opt(args, "account");
	struct sora_error err;
	int ret;

	/* --email is accepted as a synonym, as in the other commands. */
	if (account == NULL)
		account = admin_opt(args, "email");
	if (account == NULL || account[0] == '\0')
		return admin_usage_error(args->cmd, "--account is required");
	ret = sora_accounts_list_credentials(ctx->conn, account, &creds, &err);
	if (ret != 0)
		return admin_report(&err);
	print_credentials(&creds);
	sora_credential_list_free(&creds);
	return ADMIN_EXIT_OK;
}

int admin_cmd_credentials_delete(struct admin_ctx *ctx, const struct admin_args *args)
{
	const char *email;
	int code = change_by_email(ctx, args, sora_accounts_delete_credential, &email);

	if (code == ADMIN_EXIT_OK)
		printf("deleted credential %s\n", email);
	return code;
}
