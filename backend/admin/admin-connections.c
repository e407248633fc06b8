/* sora-admin connections list | kick: through the database (the
 * `connections` and `connection_kicks` tables of migration 0007, which
 * every sora-proxy keeps and watches; see proxy/sessions-db.c for why the
 * database rather than each server's HTTP API). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "backend/admin/admin.h"
#include "common/db/db.h"

int admin_cmd_connections_list(struct admin_ctx *ctx, const struct admin_args *args)
{
	const char *user = admin_opt(args, "user");
	const char *proto = admin_opt(args, "protocol");
	const char *v[2] = { user != NULL ? user : "", proto != NULL ? proto : "" };
	struct sora_error err;
	PGresult *res = NULL;
	int n;

	if (sora_db_exec(ctx->conn, SORA_DB_CLASS_DEFAULT,
			 "SELECT username, protocol, client_addr, backend, node,"
			 " to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC', session_id"
			 " FROM connections WHERE heartbeat_at > now() - interval '2 minutes'"
			 " AND ($1 = '' OR lower(username) = lower($1))"
			 " AND ($2 = '' OR lower(protocol) = lower($2))"
			 " ORDER BY since, node, session_id", 2, v, &res, NULL, &err) != 0)
		return admin_report(&err);
	n = PQntuples(res);
	printf("%-32s %-12s %-24s %-24s %-16s %-23s %s\n", "USER", "PROTOCOL", "CLIENT", "BACKEND",
	       "PROXY", "SINCE", "SESSION");
	for (int i = 0; i < n; i++)
		printf("%-32s %-12s %-24s %-24s %-16s %-23s %s\n", PQgetvalue(res, i, 0),
		       PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3),
		       PQgetvalue(res, i, 4), PQgetvalue(res, i, 5), PQgetvalue(res, i, 6));
	printf("%d connection(s)\n", n);
	PQclear(res);
	return ADMIN_EXIT_OK;
}

int admin_cmd_connections_kick(struct admin_ctx *ctx, const struct admin_args *args)
{
	const char *user = admin_opt(args, "user");
	const char *proto = admin_opt(args, "protocol");
	const char *v[2] = { user, proto };
	struct sora_error err;
	PGresult *res = NULL;

	if ((user == NULL || user[0] == '\0') && (proto == NULL || proto[0] == '\0'))
		return admin_usage_error(args->cmd, "give --user and/or --protocol (kicking everyone "
					 "takes --protocol for each protocol)");
	/* One statement: the request and its notification commit together. */
	if (sora_db_exec(ctx->conn, SORA_DB_CLASS_WRITE,
			 "WITH k AS (INSERT INTO connection_kicks (username, protocol)"
			 " VALUES (nullif($1, ''), nullif($2, '')) RETURNING id, username, protocol)"
			 " SELECT k.id, pg_notify('sora_kick', k.id || E'\\t' || coalesce(k.username, '')"
			 " || E'\\t' || coalesce(k.protocol, '')),"
			 " (SELECT count(*) FROM connections c WHERE heartbeat_at > now() - interval '2 minutes'"
			 "  AND (k.username IS NULL OR lower(c.username) = lower(k.username))"
			 "  AND (k.protocol IS NULL OR lower(c.protocol) = lower(k.protocol))) FROM k",
			 2, v, &res, NULL, &err) != 0)
		return admin_report(&err);
	printf("kick %s sent: %s matching connection(s) listed; every proxy closes its own\n",
	       PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 2));
	PQclear(res);
	return ADMIN_EXIT_OK;
}
