/* sora-admin connections list | kick: through the database (the
 * `connections` and `connection_kicks` tables of migration 0007, which
 * every sora-proxy keeps and watches; see proxy/sessions-db.c for why the
 * database rather than each server's HTTP API). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "backend/admin/admin.h"
#include "common/admin/ops.h"
#include "common/db/db.h"

int admin_cmd_connections_list(struct admin_ctx *ctx, const struct admin_args *args)
{
	struct sora_admin_rows rows;
	struct sora_error err;

	if (sora_admin_connections_list(ctx->conn, admin_opt(args, "user"),
					admin_opt(args, "protocol"), 0, &rows, &err) != 0)
		return admin_report(&err);
	printf("%-32s %-12s %-24s %-24s %-16s %-23s %s\n", "USER", "PROTOCOL", "CLIENT", "BACKEND",
	       "PROXY", "SINCE", "SESSION");
	for (int i = 0; i < rows.count; i++) {
		const char *c[7];

		for (int j = 0; j < 7; j++) {
			c[j] = sora_admin_cell(&rows, i, j);
			if (c[j] == NULL)
				c[j] = "";
		}
		printf("%-32s %-12s %-24s %-24s %-16s %-23s %s\n", c[SORA_ADMIN_CONN_USER],
		       c[SORA_ADMIN_CONN_PROTOCOL], c[SORA_ADMIN_CONN_CLIENT],
		       c[SORA_ADMIN_CONN_BACKEND], c[SORA_ADMIN_CONN_NODE],
		       c[SORA_ADMIN_CONN_SINCE], c[SORA_ADMIN_CONN_SESSION]);
	}
	printf("%d connection(s)\n", rows.count);
	sora_admin_rows_free(&rows);
	return ADMIN_EXIT_OK;
}

int admin_cmd_connections_kick(struct admin_ctx *ctx, const struct admin_args *args)
{
	const char *user = admin_opt(args, "user");
	const char *proto = admin_opt(args, "protocol");
	struct sora_error err;
	int64_t id = 0, matched = 0;

	if ((user == NULL || user[0] == '\0') && (proto == NULL || proto[0] == '\0'))
		return admin_usage_error(args->cmd, "give --user and/or --protocol (kicking everyone "
					 "takes --protocol for each protocol)");
	if (sora_admin_connections_kick(ctx->conn, user, proto, &id, &matched, &err) != 0)
		return admin_report(&err);
	printf("kick %lld sent: %lld matching connection(s) listed; every proxy closes its own\n",
	       (long long)id, (long long)matched);
	return ADMIN_EXIT_OK;
}
