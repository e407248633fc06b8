/* The SQL migrations, embedded into the binary.
 *
 * The files in backend/store/migrations/ are the source of truth and stay
 * plain, readable SQL; the assembler's .incbin copies each one into
 * .rodata (followed by a NUL byte) so that sora-backend and sora-admin need
 * nothing from the file system at run time. Paths are relative to the
 * directory make runs in, which is always the repository root.
 *
 * Build note: the compiler's -MMD dependency files do not see .incbin, so
 * editing a .sql file does not by itself rebuild this object. Released
 * migrations are never edited (a change is a new numbered file, added to
 * the table below, which touches this file); during development run
 * `touch backend/store/migrations-embed.c` after editing a .sql file.
 * `sora-admin migrate status` reports an applied migration whose embedded
 * text differs from what was applied.
 *
 * To add a migration: create backend/store/migrations/NNNN_name.sql with
 * the next number, add an EMBED() line and a table row below. */
#include "backend/store/migrate.h"

#define EMBED(sym, file) \
	__asm__(".section .rodata\n" \
		".global " #sym "\n" \
		".type " #sym ", @object\n" \
		".balign 16\n" \
		#sym ":\n" \
		".incbin \"" file "\"\n" \
		".byte 0\n" \
		".size " #sym ", . - " #sym "\n" \
		".previous\n"); \
	extern const char sym[]

EMBED(sora_migration_0001_sql, "backend/store/migrations/0001_init.sql");
EMBED(sora_migration_0002_sql, "backend/store/migrations/0002_message_deliveries.sql");
EMBED(sora_migration_0003_sql, "backend/store/migrations/0003_delivery_cost.sql");
EMBED(sora_migration_0004_sql, "backend/store/migrations/0004_imap.sql");
EMBED(sora_migration_0005_sql, "backend/store/migrations/0005_imap_fetch.sql");
EMBED(sora_migration_0006_sql, "backend/store/migrations/0006_pop3.sql");
EMBED(sora_migration_0007_sql, "backend/store/migrations/0007_proxy.sql");
EMBED(sora_migration_0008_sql, "backend/store/migrations/0008_sort_groups.sql");
EMBED(sora_migration_0009_sql, "backend/store/migrations/0009_shared_text.sql");
EMBED(sora_migration_0010_sql, "backend/store/migrations/0010_row_insert_counters.sql");
EMBED(sora_migration_0011_sql, "backend/store/migrations/0011_account_notify.sql");

static const struct sora_migration migrations[] = {
	{ 1, "init", sora_migration_0001_sql },
	{ 2, "message_deliveries", sora_migration_0002_sql },
	{ 3, "delivery_cost", sora_migration_0003_sql },
	{ 4, "imap", sora_migration_0004_sql },
	{ 5, "imap_fetch", sora_migration_0005_sql },
	{ 6, "pop3", sora_migration_0006_sql },
	{ 7, "proxy", sora_migration_0007_sql },
	{ 8, "sort_groups", sora_migration_0008_sql },
	{ 9, "shared_text", sora_migration_0009_sql },
	{ 10, "row_insert_counters", sora_migration_0010_sql },
	{ 11, "account_notify", sora_migration_0011_sql },
};

const struct sora_migration *sora_store_migrations(size_t *count_r)
{
	*count_r = sizeof(migrations) / sizeof(migrations[0]);
	return migrations;
}
