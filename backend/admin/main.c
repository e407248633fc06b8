/* sora-admin: the operator CLI (DESIGN.md §7, docs/admin.md).
 *
 * Argument handling: one pass over argv. The first words name the command
 * ("accounts create"); options may come before, between or after them, and
 * the global ones (--config FILE, --help, --version) anywhere, so both
 * `sora-admin --config c.toml stats auth` and `sora-admin stats auth
 * --config c.toml` work as in the security guide. An option that takes a
 * value always consumes the next argument, so `--password --help` sets the
 * password "--help" rather than asking for help. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "backend/admin/admin.h"
#include "common/core/log.h"
#include "common/db/accounts.h"
#include "common/db/address.h"

#define DEFAULT_CONFIG "config.toml"
#define ACQUIRE_TIMEOUT_MS 30000

static const struct admin_cmd commands[] = {
	{ "migrate", "up", "",
	  "apply pending schema migrations",
	  "Applies every schema migration the database has not seen yet, in order,\n"
	  "in one transaction under an advisory lock: running it from several places\n"
	  "at once is safe, and a failed migration leaves the schema unchanged.\n"
	  "sora-backend does the same at start-up.",
	  { NULL }, true, admin_cmd_migrate_up },
	{ "migrate", "status", "",
	  "list applied and pending migrations",
	  "Lists every migration known to this binary and to the database with its\n"
	  "state: applied, pending, modified (applied, but the embedded SQL has\n"
	  "changed since) or unknown (applied by a newer version of Sora).",
	  { NULL }, true, admin_cmd_migrate_status },
	{ "accounts", "create",
	  "--email E (--password P | --password-stdin) [--hash SCHEME] | --hash-import HASH",
	  "create an account",
	  "Creates an account whose primary identity is E. SCHEME is bcrypt (the\n"
	  "default), ssha512, sha512-crypt, sha256-crypt, ssha256, sha512, argon2id\n"
	  "or argon2i. Prefer --password-stdin: a --password value is visible to\n"
	  "other users in the process list until sora-admin has read it.\n"
	  "--hash-import stores an existing hash instead, such as the output of\n"
	  "Dovecot's `doveadm pw` ({SHA512-CRYPT}$6$..., {BLF-CRYPT}$2y$...,\n"
	  "{SSHA512}...), after checking that its scheme is supported and that it is\n"
	  "well-formed; HASH \"-\" reads it from the first line of standard input.",
	  { "email=", "password=", "password-stdin", "hash=", "hash-import=", NULL }, true,
	  admin_cmd_accounts_create },
	{ "accounts", "list", "[--deleted | --all]",
	  "list accounts",
	  "Lists live accounts (with --deleted only deleted ones, with --all both):\n"
	  "id, primary address, number of credentials and mailboxes, messages,\n"
	  "creation time and status.",
	  { "deleted", "all", NULL }, true, admin_cmd_accounts_list },
	{ "accounts", "show", "--email E",
	  "show one account",
	  "Shows the account that E belongs to (E may be any of its addresses):\n"
	  "status, mailbox and message counts, and its credentials with their\n"
	  "password schemes. Password hashes are never shown.",
	  { "email=", NULL }, true, admin_cmd_accounts_show },
	{ "accounts", "update",
	  "--email E [(--password P | --password-stdin) [--hash SCHEME]] [--make-primary]\n"
	  "                  [--backend HOST]",
	  "change a password, the primary identity or the backend",
	  "Changes the password of the credential E (only that address; other\n"
	  "addresses of the account keep theirs) and/or makes E the account's\n"
	  "primary identity. --backend pins the account to one backend (a host,\n"
	  "or host:port, as in the proxies' remote_addrs) instead of the one the\n"
	  "proxies' consistent-hash ring chooses; --backend \"\" removes the pin.\n"
	  "New sessions follow at once; open ones stay where they are (see\n"
	  "connections kick).",
	  { "email=", "password=", "password-stdin", "hash=", "make-primary", "backend=", NULL },
	  true,
	  admin_cmd_accounts_update },
	{ "accounts", "delete", "--email E",
	  "soft-delete an account",
	  "Marks the account that E belongs to as deleted: none of its addresses\n"
	  "can log in or receive mail any more, and the addresses stay reserved.\n"
	  "Nothing is removed; `accounts restore` undoes it.",
	  { "email=", NULL }, true, admin_cmd_accounts_delete },
	{ "accounts", "restore", "--email E",
	  "restore a deleted account",
	  "Clears the deleted mark of the account that E belongs to.",
	  { "email=", NULL }, true, admin_cmd_accounts_restore },
	{ "credentials", "add",
	  "--account E --email ALIAS ((--password P | --password-stdin) [--hash SCHEME] |"
	  " --hash-import HASH) [--primary]",
	  "add an address to an account",
	  "Adds ALIAS, with its own password, to the account that E belongs to.\n"
	  "With --primary, ALIAS becomes the account's primary identity.\n"
	  "--hash-import stores an existing hash (e.g. from `doveadm pw`) instead of\n"
	  "a password, as for accounts create; HASH \"-\" reads it from standard input.",
	  { "account=", "email=", "password=", "password-stdin", "hash=", "primary",
	    "hash-import=", NULL },
	  true, admin_cmd_credentials_add },
	{ "credentials", "list", "--account E",
	  "list the addresses of an account",
	  "Lists the credentials of the account that E belongs to, primary first,\n"
	  "with password scheme and times. Password hashes are never shown.",
	  { "account=", "email=", NULL }, true, admin_cmd_credentials_list },
	{ "credentials", "delete", "--email ALIAS",
	  "remove an address from its account",
	  "Deletes one credential. The primary identity and the last credential of\n"
	  "an account cannot be deleted: make another address primary first\n"
	  "(accounts update --email OTHER --make-primary) or delete the account.",
	  { "email=", NULL }, true, admin_cmd_credentials_delete },
	{ "stats", "auth", "[--window DURATION] [--top N]",
	  "summarise failed logins",
	  "Summarises auth_attempts, the table the authentication rate limiter of\n"
	  "every proxy and backend writes: failures in the window (default 24h;\n"
	  "e.g. 15m, 1h, 7d), the N (default 10) IPs and usernames with most\n"
	  "failures, how many IPs and usernames are blocked right now, and the\n"
	  "blocking rows (at most 100; auth blocks lists them all).",
	  { "window=", "top=", NULL }, true, admin_cmd_stats_auth },
	{ "connections", "list", "[--user E] [--protocol P]",
	  "list the sessions the proxies relay",
	  "Lists the sessions every sora-proxy relays now (from the connections\n"
	  "table the proxies keep): user, protocol, client address, backend, proxy\n"
	  "node, since when and the session id (which the backend's log lines of\n"
	  "that session carry too). Rows of a proxy that stopped sending\n"
	  "heartbeats for 2 minutes are not shown.",
	  { "user=", "protocol=", NULL }, true, admin_cmd_connections_list },
	{ "connections", "kick", "[--user E] [--protocol P]",
	  "disconnect sessions on every proxy",
	  "Asks every sora-proxy to close the sessions of user E (any case) and/or\n"
	  "of protocol P (imap, pop3, managesieve): a request row and a NOTIFY;\n"
	  "proxies act within a second (at once when connected, else at their next\n"
	  "poll). Closing the proxied session closes its backend session too.",
	  { "user=", "protocol=", NULL }, true, admin_cmd_connections_kick },
	{ "health", NULL, "",
	  "check the database, migrations and storage configuration",
	  "Connects to the primary database and every read endpoint, checks that\n"
	  "all migrations are applied, and prints the configured storage backend.\n"
	  "Exits 1 when the primary database is unreachable or migrations are\n"
	  "pending; an unreachable read endpoint is reported but not fatal.",
	  { NULL }, false, admin_cmd_health },
	{ "auth", "test", "--email E (--password P | --password-stdin)",
	  "check a password the way the servers do",
	  "Runs the login check of sora-proxy and sora-backend (deleted accounts\n"
	  "are refused) and prints OK or FAILED; exits 0 or 1 accordingly.",
	  { "email=", "password=", "password-stdin", NULL }, true, admin_cmd_auth_test },
	{ "auth", "blocks", "",
	  "list the IPs and usernames blocked now",
	  "Lists the rows of auth_attempts (written by the authentication rate\n"
	  "limiter) that block an IP or a username right now: IP, username,\n"
	  "failures, blocked until and the protocol of the last failure.",
	  { NULL }, true, admin_cmd_auth_blocks },
	{ "auth", "unblock", "[--ip IP|CIDR] [--user NAME]",
	  "lift a rate-limiter block",
	  "Removes the auth_attempts rows of an IP (or of every address in a CIDR\n"
	  "range) and/or of a username (any case), blocked or not, so their failure\n"
	  "counts start again from zero. With both options, rows of either are\n"
	  "removed. Prints each removed row; removing nothing is not an error.",
	  { "ip=", "user=", NULL }, true, admin_cmd_auth_unblock },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* ---- Helpers shared with the command files ---- */

static int opt_index(const struct admin_cmd *cmd, const char *name, size_t len,
		     bool *takes_value_r)
{
	for (int i = 0; i < ADMIN_MAX_OPTS && cmd->opts[i] != NULL; i++) {
		const char *o = cmd->opts[i];
		size_t ol = strlen(o);
		bool tv = ol > 0 && o[ol - 1] == '=';

		if (tv)
			ol--;
		if (ol == len && memcmp(o, name, len) == 0) {
			*takes_value_r = tv;
			return i;
		}
	}
	return -1;
}

const char *admin_opt(const struct admin_args *args, const char *name)
{
	bool tv;
	int i = opt_index(args->cmd, name, strlen(name), &tv);

	return i >= 0 ? args->values[i] : NULL;
}

bool admin_flag(const struct admin_args *args, const char *name)
{
	return admin_opt(args, name) != NULL;
}

/* "sora-admin: <message>" on stderr, one line. */
static void say(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static void say(const char *fmt, va_list ap)
{
	fputs("sora-admin: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

int admin_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(fmt, ap);
	va_end(ap);
	return ADMIN_EXIT_FAIL;
}

static void print_synopsis(FILE *f, const struct admin_cmd *cmd)
{
	fprintf(f, "sora-admin [--config FILE] %s%s%s%s%s\n", cmd->group,
		cmd->name != NULL ? " " : "", cmd->name != NULL ? cmd->name : "",
		cmd->usage[0] != '\0' ? " " : "", cmd->usage);
}

int admin_usage_error(const struct admin_cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(fmt, ap);
	va_end(ap);
	if (cmd != NULL) {
		fputs("usage: ", stderr);
		print_synopsis(stderr, cmd);
	} else {
		fputs("run 'sora-admin help' for the list of commands\n", stderr);
	}
	return ADMIN_EXIT_USAGE;
}

const char *admin_require(const struct admin_args *args, const char *name, int *exit_r)
{
	const char *v = admin_opt(args, name);

	if (v == NULL || v[0] == '\0') {
		*exit_r = admin_usage_error(args->cmd, "--%s is required", name);
		return NULL;
	}
	return v;
}

int admin_report(const struct sora_error *err)
{
	admin_fail("%s", err->msg);
	/* An address or password the operator typed that cannot be accepted
	 * is a usage error; everything else is a failed operation. */
	return err->cls == SORA_ERR_INVALID ? ADMIN_EXIT_USAGE : ADMIN_EXIT_FAIL;
}

int admin_check_address(const struct admin_args *args, const char *address)
{
	struct sora_error err;
	char shown[128];

	if (sora_address_validate(sora_str_c(address), &err) == 0)
		return 0;
	sora_log_escape(sora_str_c(address), shown, sizeof(shown));
	return admin_usage_error(args->cmd, "invalid address \"%s\": %s", shown, err.msg);
}

int admin_hash_scheme(const struct admin_args *args, enum sora_pw_scheme *scheme_r)
{
	const char *name = admin_opt(args, "hash");

	*scheme_r = SORA_PW_BCRYPT;
	if (name == NULL)
		return 0;
	if (sora_password_scheme_parse(name, scheme_r) < 0)
		return admin_usage_error(args->cmd, "unknown --hash scheme \"%s\" (bcrypt,"
					 " ssha512, sha512-crypt, sha256-crypt, ssha256,"
					 " sha512, argon2id, argon2i)", name);
	return 0;
}

int admin_read_password(const struct admin_args *args, char **password_r, size_t *len_r)
{
	const char *given = admin_opt(args, "password");
	bool from_stdin = admin_flag(args, "password-stdin");
	size_t cap = SORA_PW_MAX_PASSWORD_LEN + 3;  /* room to see "too long" and CRLF */
	size_t len = 0;
	char *buf;

	*password_r = NULL;
	*len_r = 0;
	if ((given != NULL) == from_stdin)
		return admin_usage_error(args->cmd,
					 "give exactly one of --password and --password-stdin");
	if (sodium_init() < 0)
		return admin_fail("libsodium initialisation failed");
	buf = sodium_malloc(cap);
	if (buf == NULL)
		return admin_fail("out of memory");
	if (given != NULL) {
		int idx = -1;
		bool tv;

		len = strlen(given);
		if (len >= cap) {
			sodium_free(buf);
			return admin_usage_error(args->cmd, "the password is longer than %d bytes",
						 SORA_PW_MAX_PASSWORD_LEN);
		}
		memcpy(buf, given, len);
		/* Overwrite the argument so the password does not stay in
		 * /proc/PID/cmdline for the rest of the run. */
		idx = opt_index(args->cmd, "password", 8, &tv);
		if (idx >= 0 && args->argv_index[idx] > 0)
			sodium_memzero(args->argv[args->argv_index[idx]], len);
	} else {
		ssize_t r;

		while (len < cap) {
			r = read(STDIN_FILENO, buf + len, cap - len);
			if (r < 0) {
				sodium_free(buf);
				return admin_fail("cannot read the password from standard input");
			}
			if (r == 0)
				break;
			len += (size_t)r;
			if (memchr(buf, '\n', len) != NULL)
				break;
		}
		{
			char *nl = memchr(buf, '\n', len);

			if (nl != NULL)
				len = (size_t)(nl - buf);
		}
		if (len > 0 && buf[len - 1] == '\r')
			len--;
	}
	if (len > SORA_PW_MAX_PASSWORD_LEN) {
		sodium_free(buf);
		return admin_usage_error(args->cmd, "the password is longer than %d bytes",
					 SORA_PW_MAX_PASSWORD_LEN);
	}
	if (len == 0) {
		sodium_free(buf);
		return admin_usage_error(args->cmd, "the password is empty");
	}
	buf[len] = '\0';
	*password_r = buf;
	*len_r = len;
	return 0;
}

void admin_password_free(char **password, size_t len)
{
	(void)len;
	if (*password != NULL) {
		/* sodium_free wipes the whole allocation before freeing it. */
		sodium_free(*password);
		*password = NULL;
	}
}

const char *admin_format_size(long long bytes, char *buf, size_t size)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	int u = -1;

	while (v >= 1024.0 && u < 3) {
		v /= 1024.0;
		u++;
	}
	if (u < 0)
		snprintf(buf, size, "%lld B", bytes);
	else
		snprintf(buf, size, "%lld B (%.1f %s)", bytes, v, units[u]);
	return buf;
}

/* ---- Help ---- */

static bool group_has_subcommands(const char *group)
{
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(commands[i].group, group) == 0 && commands[i].name != NULL)
			return true;
	}
	return false;
}

static bool group_exists(const char *group)
{
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(commands[i].group, group) == 0)
			return true;
	}
	return false;
}

static const struct admin_cmd *find_cmd(const char *group, const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++) {
		const struct admin_cmd *c = &commands[i];

		if (strcmp(c->group, group) != 0)
			continue;
		if (c->name == NULL ? name == NULL : (name != NULL && strcmp(c->name, name) == 0))
			return c;
	}
	return NULL;
}

static void print_general_help(FILE *f)
{
	fprintf(f,
		"usage: sora-admin [--config FILE] COMMAND [SUBCOMMAND] [OPTIONS]\n"
		"\n"
		"Operator tool for Sora: schema migrations, accounts, credentials,\n"
		"statistics and health checks.\n"
		"\n"
		"Global options (allowed anywhere on the command line):\n"
		"  --config FILE   configuration file (default: ./" DEFAULT_CONFIG ")\n"
		"  --help, -h      help for the command given\n"
		"  --version       print the version and exit\n"
		"\n"
		"Commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++) {
		const struct admin_cmd *c = &commands[i];
		char name[48];

		snprintf(name, sizeof(name), "%s%s%s", c->group, c->name != NULL ? " " : "",
			 c->name != NULL ? c->name : "");
		fprintf(f, "  %-22s %s\n", name, c->summary);
	}
	fprintf(f,
		"\n"
		"Run 'sora-admin help COMMAND [SUBCOMMAND]' or add --help for details.\n"
		"Exit status: 0 success, 1 the operation failed, 2 usage or config error.\n");
}

static void print_group_help(FILE *f, const char *group)
{
	fprintf(f, "usage:\n");
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(commands[i].group, group) == 0) {
			fputs("  ", f);
			print_synopsis(f, &commands[i]);
		}
	}
	fprintf(f, "\nRun 'sora-admin help %s SUBCOMMAND' for details.\n", group);
}

static void print_cmd_help(FILE *f, const struct admin_cmd *cmd)
{
	fputs("usage: ", f);
	print_synopsis(f, cmd);
	fprintf(f, "\n%s\n", cmd->help);
}

/* `help`, `help GROUP`, `help GROUP SUB`. */
static int do_help(const char *group, const char *name)
{
	const struct admin_cmd *cmd;

	if (group == NULL) {
		print_general_help(stdout);
		return ADMIN_EXIT_OK;
	}
	if (!group_exists(group))
		return admin_usage_error(NULL, "unknown command \"%s\"", group);
	if (name == NULL && group_has_subcommands(group)) {
		print_group_help(stdout, group);
		return ADMIN_EXIT_OK;
	}
	cmd = find_cmd(group, name);
	if (cmd == NULL)
		return admin_usage_error(NULL, "unknown command \"%s %s\"", group, name);
	print_cmd_help(stdout, cmd);
	return ADMIN_EXIT_OK;
}

/* ---- Running ---- */

static int open_db(struct admin_ctx *ctx)
{
	struct sora_error err;
	int ret;

	if (sora_db_pool_create(&ctx->cfg->database, "sora-admin", &ctx->pool, &err) < 0)
		return admin_fail("%s", err.msg);
	ret = sora_db_acquire(ctx->pool, SORA_DB_PRIMARY, ACQUIRE_TIMEOUT_MS, &ctx->conn,
			      &err);
	if (ret != 0)
		return admin_fail("%s", err.msg);
	return ADMIN_EXIT_OK;
}

int main(int argc, char **argv)
{
	struct admin_ctx ctx = { .config_path = DEFAULT_CONFIG };
	struct admin_args args;
	const char *group = NULL, *name = NULL;
	const char *help_topic[2] = { NULL, NULL };
	const struct admin_cmd *cmd = NULL;
	bool help = false, help_cmd = false, version = false, group_has_subs = false;
	const char *error;
	char err[1024];   /* the config loader keeps its text-only errors */
	int ret;

	memset(&args, 0, sizeof(args));
	args.argv = argv;
	sora_log_set_ident("sora-admin");
	if (sora_log_setup("warn", "console", "stderr", &error) < 0)
		return admin_fail("%s", error);

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--config") == 0) {
			if (i + 1 >= argc)
				return admin_usage_error(cmd, "--config needs a file name");
			ctx.config_path = argv[++i];
			continue;
		}
		if (strncmp(a, "--config=", 9) == 0) {
			ctx.config_path = a + 9;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			help = true;
			continue;
		}
		if (strcmp(a, "--version") == 0) {
			version = true;
			continue;
		}
		if (a[0] == '-' && a[1] != '\0') {
			const char *o = a[1] == '-' ? a + 2 : a + 1;
			const char *eq = strchr(o, '=');
			size_t olen = eq != NULL ? (size_t)(eq - o) : strlen(o);
			bool tv = false;
			int idx;

			if (cmd == NULL || a[1] != '-')
				return admin_usage_error(cmd, "unknown option \"%s\"", a);
			idx = opt_index(cmd, o, olen, &tv);
			if (idx < 0)
				return admin_usage_error(cmd, "unknown option \"%s\"", a);
			if (args.values[idx] != NULL)
				return admin_usage_error(cmd, "--%.*s given twice", (int)olen, o);
			if (!tv) {
				if (eq != NULL)
					return admin_usage_error(cmd, "--%.*s takes no value",
								 (int)olen, o);
				args.values[idx] = "";
			} else if (eq != NULL) {
				args.values[idx] = eq + 1;
				args.argv_index[idx] = -1;
			} else {
				if (i + 1 >= argc)
					return admin_usage_error(cmd, "--%.*s needs a value",
								 (int)olen, o);
				args.values[idx] = argv[++i];
				args.argv_index[idx] = i;
			}
			continue;
		}
		/* A word: the command, the subcommand, or help topics. */
		if (help_cmd) {
			if (help_topic[0] == NULL)
				help_topic[0] = a;
			else if (help_topic[1] == NULL)
				help_topic[1] = a;
			else
				return admin_usage_error(NULL, "too many words after help");
			continue;
		}
		if (group == NULL) {
			if (strcmp(a, "help") == 0) {
				help_cmd = true;
				continue;
			}
			if (!group_exists(a))
				return admin_usage_error(NULL, "unknown command \"%s\"", a);
			group = a;
			group_has_subs = group_has_subcommands(a);
			if (!group_has_subs)
				cmd = find_cmd(group, NULL);
			continue;
		}
		if (group_has_subs && name == NULL) {
			name = a;
			cmd = find_cmd(group, name);
			if (cmd == NULL)
				return admin_usage_error(NULL, "unknown command \"%s %s\"", group, a);
			continue;
		}
		return admin_usage_error(cmd, "unexpected argument \"%s\"", a);
	}

	if (version) {
		printf("sora-admin %s\n", SORA_VERSION);
		return ADMIN_EXIT_OK;
	}
	if (help_cmd)
		return do_help(help_topic[0], help_topic[1]);
	if (help)
		return do_help(group, name);
	if (group == NULL) {
		print_general_help(stderr);
		return ADMIN_EXIT_USAGE;
	}
	if (cmd == NULL) {
		fprintf(stderr, "sora-admin: %s needs a subcommand\n", group);
		print_group_help(stderr, group);
		return ADMIN_EXIT_USAGE;
	}
	args.cmd = cmd;

	if (sora_config_load(ctx.config_path, &ctx.cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "sora-admin: %s\n", err);
		return ADMIN_EXIT_USAGE;
	}
	ret = ADMIN_EXIT_OK;
	if (cmd->needs_db)
		ret = open_db(&ctx);
	if (ret == ADMIN_EXIT_OK)
		ret = cmd->run(&ctx, &args);
	sora_db_release(&ctx.conn);
	sora_db_pool_destroy(&ctx.pool);
	sora_config_free(&ctx.cfg);
	return ret;
}
