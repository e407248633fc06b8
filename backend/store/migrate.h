/* Schema migrations: the numbered SQL files of backend/store/migrations/,
 * embedded into the binary (migrations-embed.c), applied in order.
 *
 * sora_store_migrate_up() runs every migration the database has not seen,
 * in one transaction that first takes a transaction-level advisory lock, so
 * any number of processes (several backends starting at once, an operator
 * running `sora-admin migrate up`) can call it concurrently: the first one
 * applies, the others wait on the lock and then find nothing to do. A
 * failing migration rolls everything back. Applied versions are recorded in
 * schema_migrations (version, name, checksum, applied_at); the checksum is
 * the BLAKE2b-256 of the migration text, so a migration edited after it was
 * applied shows up as "modified" in the status.
 *
 * Migrations run with statement_timeout disabled and inside a transaction:
 * they cannot use CREATE INDEX CONCURRENTLY or other statements that refuse
 * to run in a transaction block.
 *
 * Threads: the functions block on the network and use the given connection
 * exclusively while they run; call them from a worker thread or the CLI.
 * The connection must not be inside a transaction. */
#ifndef SORA_STORE_MIGRATE_H
#define SORA_STORE_MIGRATE_H

#include <stddef.h>

#include <libpq-fe.h>

#include "common/core/error.h"

struct sora_migration {
	int version;           /* 1, 2, ... in ascending order */
	const char *name;      /* "init": the file is NNNN_name.sql */
	const char *sql;       /* NUL-terminated, static */
};

/* The embedded migrations in ascending version order (static storage). */
const struct sora_migration *sora_store_migrations(size_t *count_r);

/* The advisory lock key migrations run under ("soramigr" as ASCII). */
#define SORA_MIGRATE_LOCK_KEY 0x736f72616d696772LL

/* Applies pending migrations. Returns the number applied (0 when the
 * schema was already current), or -1 with err set: one line naming the
 * database and, when one failed, the migration; the class is the
 * database's (TEMPORARY for a lost connection, PERMANENT for a migration
 * the server refused). */
int sora_store_migrate_up(PGconn *conn, struct sora_error *err);

enum sora_migration_state {
	SORA_MIGRATION_APPLIED,
	SORA_MIGRATION_PENDING,
	SORA_MIGRATION_MODIFIED,   /* applied, but the embedded text differs */
	SORA_MIGRATION_UNKNOWN,    /* in the database, not in this binary (newer) */
};

struct sora_migration_status {
	int version;
	char name[64];
	enum sora_migration_state state;
	char applied_at[40];       /* "2025-01-31 12:00:00 UTC", "" when pending */
};

/* Lists every embedded migration and every applied one, by version.
 * Returns 0 with *items_r (malloc'd array, caller frees) and *count_r, or
 * -1 with err set. Does not create anything in the database. */
int sora_store_migrate_status(PGconn *conn, struct sora_migration_status **items_r,
			      size_t *count_r, struct sora_error *err);

/* "applied", "pending", "modified", "unknown". */
const char *sora_migration_state_name(enum sora_migration_state state);

/* BLAKE2b-256 of the migration text as 64 lowercase hex digits + NUL. */
void sora_store_migration_checksum(const char *sql, char hex_r[65]);

#endif
