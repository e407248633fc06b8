/* sora-admin migrate up|status. */
#include <stdio.h>
#include <stdlib.h>

#include "backend/admin/admin.h"
#include "backend/store/migrate.h"

int admin_cmd_migrate_up(struct admin_ctx *ctx, const struct admin_args *args)
{
	const struct sora_migration *migs;
	struct sora_error err;
	size_t count;
	int n;

	(void)args;
	n = sora_store_migrate_up(sora_db_conn_pg(ctx->conn), &err);
	if (n < 0)
		return admin_fail("%s", err.msg);
	migs = sora_store_migrations(&count);
	if (n == 0)
		printf("schema is up to date (version %d)\n", migs[count - 1].version);
	else
		printf("applied %d migration%s; schema is at version %d\n", n,
		       n == 1 ? "" : "s", migs[count - 1].version);
	return ADMIN_EXIT_OK;
}

int admin_cmd_migrate_status(struct admin_ctx *ctx, const struct admin_args *args)
{
	struct sora_migration_status *items = NULL;
	size_t count = 0, applied = 0, pending = 0, other = 0;
	struct sora_error err;

	(void)args;
	if (sora_store_migrate_status(sora_db_conn_pg(ctx->conn), &items, &count, &err) < 0)
		return admin_fail("%s", err.msg);
	printf("%-8s %-24s %-9s %s\n", "VERSION", "NAME", "STATE", "APPLIED AT");
	for (size_t i = 0; i < count; i++) {
		printf("%04d     %-24s %-9s %s\n", items[i].version, items[i].name,
		       sora_migration_state_name(items[i].state),
		       items[i].applied_at[0] != '\0' ? items[i].applied_at : "-");
		switch (items[i].state) {
		case SORA_MIGRATION_APPLIED:
			applied++;
			break;
		case SORA_MIGRATION_PENDING:
			pending++;
			break;
		default:
			other++;
			break;
		}
	}
	printf("%zu applied, %zu pending", applied, pending);
	if (other > 0)
		printf(", %zu modified or unknown", other);
	printf("\n");
	free(items);
	return ADMIN_EXIT_OK;
}
