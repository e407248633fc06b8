/* Accounts and credentials: see accounts.h. */
#include "common/core/str.h"
#include "common/db/accounts.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/core/log.h"
#include "common/db/address.h"

#define SQLSTATE_UNIQUE_VIOLATION "23505"
#define SQLSTATE_CHECK_VIOLATION  "23514"

#define UTC_TEXT(col) \
	"to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'"

static bool get_bool(const PGresult *res, int row, int col)
{
	return !PQgetisnull(res, row, col) && PQgetvalue(res, row, col)[0] == 't';
}

/* Hashes a new password. Empty passwords are refused: an account that
 * anyone can log in to is never what the operator meant. */
static int hash_password(enum sora_pw_scheme scheme, const char *password,
			 size_t password_len, char **hash_r, struct sora_error *err)
{
	const char *error;

	*hash_r = NULL;
	if (password == NULL || password_len == 0)
		return sora_error_set(err, SORA_ERR_INVALID, "the password is empty");
	if (sora_password_hash(scheme, password, password_len, 0, hash_r, &error) < 0)
		return sora_error_set(err, SORA_ERR_INVALID, "cannot hash the password: %s", error);
	return 0;
}

static void free_hash(char **hash)
{
	if (*hash != NULL) {
		sodium_memzero(*hash, strlen(*hash));
		free(*hash);
		*hash = NULL;
	}
}

static int check_new_address(const char *address, struct sora_error *err)
{
	if (sora_address_validate(sora_str_c(address), err) < 0) {
		char shown[128];

		sora_log_escape(sora_str_c(address), shown, sizeof(shown));
		sora_error_prefix(err, "invalid address \"%s\"", shown);
		return -1;
	}
	return 0;
}

/* A new credential's parts: the address checked, the password hashed
 * (*hash_r is the caller's to wipe and free). */
static int new_credential(const char *address, enum sora_pw_scheme scheme, const char *password,
			  size_t password_len, char **hash_r, struct sora_error *err)
{
	int ret = check_new_address(address, err);

	if (ret != 0)
		return ret;
	return hash_password(scheme, password, password_len, hash_r, err);
}

/* Address arguments of management calls come from the operator, but they
 * still end up in messages: escape them. */
static const char *shown_address(const char *address, char *buf, size_t size)
{
	return sora_log_escape(sora_str_c(address), buf, size);
}

/* ---- Login ---- */

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char *dummy_hash;

/* A bcrypt hash of a random password that nobody knows, verified against
 * when the address does not exist so that both paths cost the same. */
static void make_dummy_hash(void)
{
	unsigned char rnd[16];
	char pw[sizeof(rnd) * 2 + 1];
	const char *error;

	if (sodium_init() < 0)
		return;
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(pw, sizeof(pw), rnd, sizeof(rnd));
	if (sora_password_hash(SORA_PW_BCRYPT, pw, strlen(pw), 0, &dummy_hash, &error) < 0)
		sora_warn(NULL, "cannot create the timing-equaliser hash: %s", error);
	sodium_memzero(pw, sizeof(pw));
	sodium_memzero(rnd, sizeof(rnd));
}

static const char lookup_sql[] =
	"SELECT c.id, c.account_id, c.address, c.password_hash,"
	" coalesce(p.address, c.address)"
	" FROM credentials c"
	" JOIN accounts a ON a.id = c.account_id AND a.deleted_at IS NULL"
	" LEFT JOIN credentials p ON p.account_id = c.account_id AND p.primary_identity"
	" WHERE lower(c.address) = lower($1)";

/* Runs the lookup for a validated address; *res_r has 0 or 1 rows. */
static int lookup_query(struct sora_db_conn *conn, struct sora_str address,
			PGresult **res_r, struct sora_error *err)
{
	char buf[SORA_ACCOUNTS_ADDRESS_SIZE];
	const char *values[1] = { buf };

	char sqlstate[6];

	memcpy(buf, address.p, address.len);
	buf[address.len] = '\0';
	/* Every LMTP recipient and every login runs this: prepare it once per
	 * connection instead of planning it each time. */
	return sora_db_exec_prepared(conn, SORA_DB_CLASS_DEFAULT, "sora_account_lookup_v1",
				     lookup_sql, 1, values, NULL, NULL, 0, res_r, sqlstate,
				     err);
}

static int fill_ref(struct sora_db_conn *conn, const PGresult *res,
		    struct sora_account_ref *ref, struct sora_error *err)
{
	memset(ref, 0, sizeof(*ref));
	if (sora_db_get_i64(res, 0, 0, &ref->credential_id, err) < 0 ||
	    sora_db_get_i64(res, 0, 1, &ref->account_id, err) < 0) {
		sora_error_prefix(err, "%s: credentials", sora_db_conn_describe(conn));
		return -1;
	}
	sora_strlcpy(ref->address, PQgetvalue(res, 0, 2), sizeof(ref->address));
	sora_strlcpy(ref->primary_address, PQgetvalue(res, 0, 4),
		     sizeof(ref->primary_address));
	return 0;
}

int sora_accounts_lookup(struct sora_db_conn *conn, struct sora_str address,
			 struct sora_account_ref *ref_r, struct sora_error *err)
{
	PGresult *res = NULL;
	int ret;

	if (sora_address_validate(address, NULL) < 0)
		return sora_error_set(err, SORA_ERR_NOT_FOUND, "no such address");
	ret = lookup_query(conn, address, &res, err);
	if (ret != 0)
		return ret;
	if (PQntuples(res) == 0)
		ret = sora_error_set(err, SORA_ERR_NOT_FOUND, "no such address");
	else
		ret = fill_ref(conn, res, ref_r, err);
	PQclear(res);
	return ret;
}

int sora_accounts_authenticate(struct sora_db_conn *conn, struct sora_str address,
			       const char *password, size_t password_len,
			       bool *match_r, struct sora_account_ref *ref_r,
			       struct sora_error *err)
{
	PGresult *res = NULL;
	const char *error, *stored;
	bool found = false, match = false, rehash = false;
	int ret = 0;

	*match_r = false;
	if (sora_address_validate(address, NULL) == 0) {
		ret = lookup_query(conn, address, &res, err);
		if (ret != 0)
			return ret;
		found = PQntuples(res) == 1;
	}
	if (found) {
		stored = PQgetvalue(res, 0, 3);
	} else {
		pthread_once(&dummy_once, make_dummy_hash);
		stored = dummy_hash;
	}
	if (stored != NULL &&
	    sora_password_verify(stored, password, password_len, SORA_PW_REHASH_BELOW_BCRYPT_COST,
				 &match, &rehash, &error) < 0 && found) {
		char shown[128], label[64];

		/* A bad row, not a database failure: name the address and the
		 * scheme (never the hash), not the database. */
		ret = sora_error_set(err, SORA_ERR_PERMANENT,
			"the stored password hash of %s (%s) is unusable: %s",
			shown_address(PQgetvalue(res, 0, 2), shown, sizeof(shown)),
			sora_password_scheme_label(stored, label, sizeof(label)), error);
		goto out;
	}
	if (!found || !match)
		goto out;
	ret = fill_ref(conn, res, ref_r, err);
	if (ret != 0)
		goto out;
	*match_r = true;
	if (rehash) {
		char *hash = NULL;
		char id[24];
		const char *values[3];
		struct sora_error uerr;

		/* Upgrade the hash while the plaintext is at hand. The
		 * old hash in the WHERE clause keeps a concurrent password
		 * change from being overwritten. */
		if (sora_password_hash(SORA_PW_BCRYPT, password, password_len, 0, &hash,
				       &error) < 0) {
			sora_warn(NULL, "cannot rehash the password of account %lld: %s",
				  (long long)ref_r->account_id, error);
			goto out;
		}
		snprintf(id, sizeof(id), "%lld", (long long)ref_r->credential_id);
		values[0] = hash;
		values[1] = id;
		values[2] = stored;
		if (sora_db_exec(conn, SORA_DB_CLASS_WRITE,
				 "UPDATE credentials SET password_hash = $1, updated_at = now()"
				 " WHERE id = $2::bigint AND password_hash = $3",
				 3, values, NULL, NULL, &uerr) != 0)
			sora_warn(NULL, "cannot store the rehashed password: %s", uerr.msg);
		free_hash(&hash);
	}
out:
	PQclear(res);
	return ret;
}

/* ---- Management ---- */

/* Reclassifies a failed write by the server's reason: the constraints
 * tell a taken or unacceptable address from other failures. */
static int map_write_error(const char sqlstate[6], const char *address,
			   struct sora_error *err)
{
	char shown[128];

	if (strcmp(sqlstate, SQLSTATE_UNIQUE_VIOLATION) == 0)
		return sora_error_set(err, SORA_ERR_CONFLICT, "address %s already exists",
			shown_address(address, shown, sizeof(shown)));
	if (strcmp(sqlstate, SQLSTATE_CHECK_VIOLATION) == 0)
		return sora_error_set(err, SORA_ERR_INVALID, "invalid address \"%s\"",
			shown_address(address, shown, sizeof(shown)));
	return -1;
}

static int not_found(const char *address, struct sora_error *err)
{
	char shown[128];

	return sora_error_set(err, SORA_ERR_NOT_FOUND, "address %s not found",
		shown_address(address, shown, sizeof(shown)));
}

/* A bigint column of a result, with the database named on failure. */
static int get_i64(struct sora_db_conn *conn, const PGresult *res, int row, int col,
		   int64_t *value_r, struct sora_error *err)
{
	if (sora_db_get_i64(res, row, col, value_r, err) == 0)
		return 0;
	sora_error_prefix(err, "%s", sora_db_conn_describe(conn));
	return -1;
}

/* A bigint column as the text of a query parameter. */
static int get_id_text(struct sora_db_conn *conn, const PGresult *res, int row, int col,
		       char buf[24], struct sora_error *err)
{
	int64_t v;

	if (get_i64(conn, res, row, col, &v, err) < 0)
		return -1;
	snprintf(buf, 24, "%lld", (long long)v);
	return 0;
}

/* Starts a write transaction with a locking query whose only parameter is
 * address; no row means the address does not exist. The caller rolls
 * back on failure (its "out:" path) and clears *res_r. */
static int begin_locked(struct sora_db_conn *conn, const char *sql, const char *address,
			PGresult **res_r, struct sora_error *err)
{
	const char *values[1] = { address };

	if (sora_db_begin(conn, SORA_DB_CLASS_WRITE, err) != 0 ||
	    sora_db_exec(conn, SORA_DB_CLASS_WRITE, sql, 1, values, res_r, NULL, err) != 0)
		return -1;
	if (PQntuples(*res_r) == 0)
		return not_found(address, err);
	return 0;
}

/* Takes the primary flag from every credential of the account. */
static int clear_primary(struct sora_db_conn *conn, const char *account_id,
			 struct sora_error *err)
{
	const char *values[1] = { account_id };

	return sora_db_exec(conn, SORA_DB_CLASS_WRITE,
			    "UPDATE credentials SET primary_identity = false, updated_at = now()"
			    " WHERE account_id = $1::bigint AND primary_identity",
			    1, values, NULL, NULL, err);
}

/* Inserts the account and its primary credential with a ready hash. */
static int create_with_hash(struct sora_db_conn *conn, const char *address, const char *hash,
			    int64_t *account_id_r, struct sora_error *err)
{
	PGresult *res = NULL;
	char sqlstate[6];
	const char *values[2] = { address, hash };
	int ret;

	/* One statement: the account row exists only if its credential
	 * could be inserted. */
	ret = sora_db_exec(conn, SORA_DB_CLASS_WRITE,
			   "WITH a AS (INSERT INTO accounts DEFAULT VALUES RETURNING id)"
			   " INSERT INTO credentials (account_id, address, password_hash,"
			   " primary_identity) SELECT id, $1, $2, true FROM a RETURNING account_id",
			   2, values, &res, sqlstate, err);
	if (ret != 0)
		return map_write_error(sqlstate, address, err);
	if (account_id_r != NULL)
		ret = get_i64(conn, res, 0, 0, account_id_r, err);
	PQclear(res);
	return ret;
}

int sora_accounts_create(struct sora_db_conn *conn, const char *address,
			 const char *password, size_t password_len,
			 enum sora_pw_scheme scheme, int64_t *account_id_r,
			 struct sora_error *err)
{
	char *hash = NULL;
	int ret;

	ret = new_credential(address, scheme, password, password_len, &hash, err);
	if (ret == 0)
		ret = create_with_hash(conn, address, hash, account_id_r, err);
	free_hash(&hash);
	return ret;
}

int sora_accounts_set_password(struct sora_db_conn *conn, const char *address,
			       const char *password, size_t password_len,
			       enum sora_pw_scheme scheme, struct sora_error *err)
{
	PGresult *res = NULL;
	char *hash = NULL;
	const char *values[2];
	int ret;

	ret = hash_password(scheme, password, password_len, &hash, err);
	if (ret != 0)
		return ret;
	values[0] = address;
	values[1] = hash;
	ret = sora_db_exec(conn, SORA_DB_CLASS_WRITE,
			   "UPDATE credentials SET password_hash = $2, updated_at = now()"
			   " WHERE lower(address) = lower($1) RETURNING id",
			   2, values, &res, NULL, err);
	free_hash(&hash);
	if (ret != 0)
		return ret;
	if (PQntuples(res) == 0)
		ret = not_found(address, err);
	PQclear(res);
	return ret;
}

int sora_accounts_make_primary(struct sora_db_conn *conn, const char *address,
			       struct sora_error *err)
{
	PGresult *res = NULL;
	const char *values[2];
	char account_id[24];
	int ret;

	/* Locking every credential of the account serialises this with
	 * concurrent credential deletions and other primary changes. */
	ret = begin_locked(conn,
			   "SELECT c.account_id, c.primary_identity FROM credentials c"
			   " WHERE c.account_id = (SELECT account_id FROM credentials"
			   " WHERE lower(address) = lower($1))"
			   " ORDER BY (lower(c.address) = lower($1)) DESC, c.id FOR UPDATE",
			   address, &res, err);
	if (ret != 0)
		goto out;
	if (get_bool(res, 0, 1))
		goto commit;  /* already the primary: nothing to do */
	ret = get_id_text(conn, res, 0, 0, account_id, err);
	if (ret == 0)
		ret = clear_primary(conn, account_id, err);
	if (ret != 0)
		goto out;
	values[0] = account_id;
	values[1] = address;
	ret = sora_db_exec(conn, SORA_DB_CLASS_WRITE,
			   "UPDATE credentials SET primary_identity = true, updated_at = now()"
			   " WHERE account_id = $1::bigint AND lower(address) = lower($2)",
			   2, values, NULL, NULL, err);
	if (ret != 0)
		goto out;
commit:
	ret = sora_db_commit(conn, err);
out:
	PQclear(res);
	if (ret != 0)
		sora_db_rollback(conn);
	return ret;
}

/* Sets or clears deleted_at on the account owning address. */
static int set_deleted(struct sora_db_conn *conn, const char *address, bool deleted,
		       struct sora_error *err)
{
	PGresult *res = NULL;
	const char *values[1] = { address };
	char shown[128];
	int ret;

	ret = sora_db_exec(conn, SORA_DB_CLASS_WRITE, deleted ?
			   "UPDATE accounts a SET deleted_at = now(), updated_at = now()"
			   " FROM credentials c WHERE c.account_id = a.id"
			   " AND lower(c.address) = lower($1) AND a.deleted_at IS NULL"
			   " RETURNING a.id" :
			   "UPDATE accounts a SET deleted_at = NULL, updated_at = now()"
			   " FROM credentials c WHERE c.account_id = a.id"
			   " AND lower(c.address) = lower($1) AND a.deleted_at IS NOT NULL"
			   " RETURNING a.id",
			   1, values, &res, NULL, err);
	if (ret != 0)
		return ret;
	if (PQntuples(res) > 0)
		goto out;
	PQclear(res);
	res = NULL;
	/* Nothing changed: say why. */
	ret = sora_db_exec(conn, SORA_DB_CLASS_DEFAULT,
			   "SELECT a.deleted_at IS NOT NULL FROM accounts a"
			   " JOIN credentials c ON c.account_id = a.id"
			   " WHERE lower(c.address) = lower($1)",
			   1, values, &res, NULL, err);
	if (ret != 0)
		return ret;
	if (PQntuples(res) == 0)
		ret = not_found(address, err);
	else
		ret = sora_error_set(err, SORA_ERR_CONFLICT,
			deleted ? "the account of %s is already deleted" :
			"the account of %s is not deleted",
			shown_address(address, shown, sizeof(shown)));
out:
	PQclear(res);
	return ret;
}

int sora_accounts_delete(struct sora_db_conn *conn, const char *address,
			 struct sora_error *err)
{
	return set_deleted(conn, address, true, err);
}

int sora_accounts_restore(struct sora_db_conn *conn, const char *address,
			  struct sora_error *err)
{
	return set_deleted(conn, address, false, err);
}

#define ACCOUNT_COLUMNS \
	"SELECT a.id, coalesce(p.address, ''), " UTC_TEXT("a.created_at") ", " \
	UTC_TEXT("a.deleted_at") "," \
	" (SELECT count(*) FROM credentials c WHERE c.account_id = a.id)," \
	" (SELECT count(*) FROM mailboxes m WHERE m.account_id = a.id)," \
	" coalesce((SELECT sum(s.message_count) FROM mailbox_stats s" \
	"  JOIN mailboxes m ON m.id = s.mailbox_id WHERE m.account_id = a.id), 0)," \
	" coalesce((SELECT sum(s.total_size) FROM mailbox_stats s" \
	"  JOIN mailboxes m ON m.id = s.mailbox_id WHERE m.account_id = a.id), 0)" \
	" FROM accounts a" \
	" LEFT JOIN credentials p ON p.account_id = a.id AND p.primary_identity"

static int fill_account_list(struct sora_db_conn *conn, PGresult *res,
			     struct sora_account_list *list, struct sora_error *err)
{
	size_t n = (size_t)PQntuples(res);

	list->res = res;
	list->count = n;
	list->items = calloc(n > 0 ? n : 1, sizeof(*list->items));
	if (list->items == NULL) {
		PQclear(res);
		memset(list, 0, sizeof(*list));
		return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		struct sora_account_info *a = &list->items[i];
		int r = (int)i;

		a->primary_address = PQgetvalue(res, r, 1);
		a->created_at = PQgetvalue(res, r, 2);
		a->deleted_at = PQgetisnull(res, r, 3) ? NULL : PQgetvalue(res, r, 3);
		if (get_i64(conn, res, r, 0, &a->id, err) < 0 ||
		    get_i64(conn, res, r, 4, &a->credential_count, err) < 0 ||
		    get_i64(conn, res, r, 5, &a->mailbox_count, err) < 0 ||
		    get_i64(conn, res, r, 6, &a->message_count, err) < 0 ||
		    get_i64(conn, res, r, 7, &a->total_size, err) < 0) {
			sora_account_list_free(list);
			return -1;
		}
	}
	return 0;
}

int sora_accounts_list(struct sora_db_conn *conn, enum sora_accounts_filter filter,
		       struct sora_account_list *list_r, struct sora_error *err)
{
	return sora_accounts_list_page(conn, filter, 0, 0, list_r, err);
}

int sora_accounts_list_page(struct sora_db_conn *conn, enum sora_accounts_filter filter,
			    int64_t offset, int limit, struct sora_account_list *list_r,
			    struct sora_error *err)
{
	static const char *const names[] = { "live", "deleted", "all" };
	char limit_text[16], offset_text[24];
	const char *values[3];
	PGresult *res = NULL;
	int ret;

	memset(list_r, 0, sizeof(*list_r));
	values[0] = names[filter <= SORA_ACCOUNTS_ALL ? filter : SORA_ACCOUNTS_ALL];
	snprintf(limit_text, sizeof(limit_text), "%d", limit);
	snprintf(offset_text, sizeof(offset_text), "%lld", (long long)(offset > 0 ? offset : 0));
	/* LIMIT NULL is no limit. */
	values[1] = limit > 0 ? limit_text : NULL;
	values[2] = offset_text;
	ret = sora_db_exec(conn, SORA_DB_CLASS_SEARCH,
			   ACCOUNT_COLUMNS
			   " WHERE $1 = 'all' OR ($1 = 'live') = (a.deleted_at IS NULL)"
			   " ORDER BY lower(coalesce(p.address, '')), a.id"
			   " LIMIT $2::integer OFFSET $3::bigint",
			   3, values, &res, NULL, err);
	if (ret != 0)
		return ret;
	return fill_account_list(conn, res, list_r, err);
}

int sora_accounts_show(struct sora_db_conn *conn, const char *address,
		       struct sora_account_list *list_r, struct sora_error *err)
{
	const char *values[1] = { address };
	PGresult *res = NULL;
	int ret;

	memset(list_r, 0, sizeof(*list_r));
	ret = sora_db_exec(conn, SORA_DB_CLASS_DEFAULT,
			   ACCOUNT_COLUMNS
			   " WHERE a.id = (SELECT account_id FROM credentials"
			   " WHERE lower(address) = lower($1))",
			   1, values, &res, NULL, err);
	if (ret != 0)
		return ret;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return not_found(address, err);
	}
	return fill_account_list(conn, res, list_r, err);
}

void sora_account_list_free(struct sora_account_list *list)
{
	free(list->items);
	PQclear(list->res);
	memset(list, 0, sizeof(*list));
}

int sora_accounts_list_credentials(struct sora_db_conn *conn, const char *address,
				   struct sora_credential_list *list_r,
				   struct sora_error *err)
{
	const char *values[1] = { address };
	PGresult *res = NULL;
	size_t n;
	int ret;

	memset(list_r, 0, sizeof(*list_r));
	ret = sora_db_exec(conn, SORA_DB_CLASS_DEFAULT,
			   "SELECT c.id, c.account_id, c.address, c.primary_identity,"
			   " c.password_hash, " UTC_TEXT("c.created_at") ", "
			   UTC_TEXT("c.updated_at")
			   " FROM credentials c WHERE c.account_id = (SELECT account_id"
			   " FROM credentials WHERE lower(address) = lower($1))"
			   " ORDER BY c.primary_identity DESC, lower(c.address)",
			   1, values, &res, NULL, err);
	if (ret != 0)
		return ret;
	n = (size_t)PQntuples(res);
	if (n == 0) {
		PQclear(res);
		return not_found(address, err);
	}
	list_r->items = calloc(n, sizeof(*list_r->items));
	if (list_r->items == NULL) {
		PQclear(res);
		return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
	}
	list_r->res = res;
	list_r->count = n;
	for (size_t i = 0; i < n; i++) {
		struct sora_credential_info *c = &list_r->items[i];
		enum sora_pw_scheme scheme;
		const char *error;
		int r = (int)i;

		if (get_i64(conn, res, r, 0, &c->id, err) < 0 ||
		    get_i64(conn, res, r, 1, &c->account_id, err) < 0) {
			sora_credential_list_free(list_r);
			return -1;
		}
		c->address = PQgetvalue(res, r, 2);
		c->primary = get_bool(res, r, 3);
		c->scheme = sora_password_stored_scheme(PQgetvalue(res, r, 4), &scheme,
							&error) == 0 ?
			sora_password_scheme_name(scheme) : "UNKNOWN";
		c->created_at = PQgetvalue(res, r, 5);
		c->updated_at = PQgetvalue(res, r, 6);
	}
	return 0;
}

void sora_credential_list_free(struct sora_credential_list *list)
{
	free(list->items);
	PQclear(list->res);
	memset(list, 0, sizeof(*list));
}

/* Adds a credential with a ready hash to the account of account_address. */
static int add_credential_with_hash(struct sora_db_conn *conn, const char *account_address,
				    const char *new_address, const char *hash,
				    bool make_primary, struct sora_error *err)
{
	PGresult *res = NULL;
	char account_id[24];
	char sqlstate[6];
	const char *values[4];
	int ret;

	ret = begin_locked(conn,
			   "SELECT a.id FROM accounts a JOIN credentials c ON c.account_id = a.id"
			   " WHERE lower(c.address) = lower($1) FOR UPDATE OF a",
			   account_address, &res, err);
	if (ret == 0)
		ret = get_id_text(conn, res, 0, 0, account_id, err);
	if (ret == 0 && make_primary)
		ret = clear_primary(conn, account_id, err);
	if (ret != 0)
		goto out;
	values[0] = account_id;
	values[1] = new_address;
	values[2] = hash;
	values[3] = make_primary ? "true" : "false";
	ret = sora_db_exec(conn, SORA_DB_CLASS_WRITE,
			   "INSERT INTO credentials (account_id, address, password_hash,"
			   " primary_identity) VALUES ($1::bigint, $2, $3, $4::boolean)",
			   4, values, NULL, sqlstate, err);
	if (ret != 0) {
		ret = map_write_error(sqlstate, new_address, err);
		goto out;
	}
	ret = sora_db_commit(conn, err);
out:
	PQclear(res);
	if (ret != 0)
		sora_db_rollback(conn);
	return ret;
}

int sora_accounts_add_credential(struct sora_db_conn *conn, const char *account_address,
				 const char *new_address, const char *password,
				 size_t password_len, enum sora_pw_scheme scheme,
				 bool make_primary, struct sora_error *err)
{
	char *hash = NULL;
	int ret;

	ret = new_credential(new_address, scheme, password, password_len, &hash, err);
	if (ret == 0)
		ret = add_credential_with_hash(conn, account_address, new_address, hash,
					       make_primary, err);
	free_hash(&hash);
	return ret;
}

int sora_accounts_delete_credential(struct sora_db_conn *conn, const char *address,
				    struct sora_error *err)
{
	PGresult *res = NULL;
	const char *values[1];
	char shown[128];
	char id[24];
	int target = -1;
	int n, ret;

	/* Lock all credentials of the account so two concurrent deletions
	 * cannot both see "another one is left". */
	ret = begin_locked(conn,
			   "SELECT c.id, c.primary_identity, lower(c.address) = lower($1)"
			   " FROM credentials c WHERE c.account_id = (SELECT account_id"
			   " FROM credentials WHERE lower(address) = lower($1))"
			   " ORDER BY c.id FOR UPDATE",
			   address, &res, err);
	if (ret != 0)
		goto out;
	n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		if (get_bool(res, i, 2))
			target = i;
	}
	if (target < 0) {
		ret = not_found(address, err);
		goto out;
	}
	shown_address(address, shown, sizeof(shown));
	if (n == 1) {
		ret = sora_error_set(err, SORA_ERR_CONFLICT, "%s is the last credential of its"
			" account; delete the account instead", shown);
		goto out;
	}
	if (get_bool(res, target, 1)) {
		ret = sora_error_set(err, SORA_ERR_CONFLICT, "%s is the primary identity of its"
			" account; make another address primary first"
			" (accounts update --email OTHER --make-primary)", shown);
		goto out;
	}
	ret = get_id_text(conn, res, target, 0, id, err);
	if (ret != 0)
		goto out;
	values[0] = id;
	ret = sora_db_exec(conn, SORA_DB_CLASS_WRITE,
			   "DELETE FROM credentials WHERE id = $1::bigint",
			   1, values, NULL, NULL, err);
	if (ret != 0)
		goto out;
	ret = sora_db_commit(conn, err);
out:
	PQclear(res);
	if (ret != 0)
		sora_db_rollback(conn);
	return ret;
}

/* ---- Imported hashes ---- */

/* Checks a hash to import and returns the string to store in *stored_r
 * (malloc'd, wiped and freed by the caller with free_hash): the hash as
 * given, with the "{SCHEME}" prefix added when it came in a bare crypt or
 * Argon2 form, so every row names its scheme. */
static int import_hash(const char *address, const char *hash, enum sora_pw_scheme *scheme_r,
		       char **stored_r, struct sora_error *err)
{
	const char *error, *name;
	char label[64], shown[128];
	size_t len;
	int ret;

	*stored_r = NULL;
	if ((ret = check_new_address(address, err)) != 0)
		return ret;
	if (hash == NULL || hash[0] == '\0')
		return sora_error_set(err, SORA_ERR_INVALID, "the hash to import is empty");
	if (sora_password_stored_check(hash, scheme_r, &error) < 0)
		return sora_error_set(err, SORA_ERR_INVALID, "cannot import the hash for %s (%s): %s",
			shown_address(address, shown, sizeof(shown)),
			sora_password_scheme_label(hash, label, sizeof(label)), error);
	name = sora_password_scheme_name(*scheme_r);
	len = strlen(hash) + (hash[0] == '{' ? 0 : strlen(name) + 2) + 1;
	*stored_r = malloc(len);
	if (*stored_r == NULL)
		return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
	if (hash[0] == '{')
		memcpy(*stored_r, hash, len);
	else
		snprintf(*stored_r, len, "{%s}%s", name, hash);
	return 0;
}

int sora_accounts_create_imported(struct sora_db_conn *conn, const char *address,
				  const char *hash, enum sora_pw_scheme *scheme_r,
				  int64_t *account_id_r, struct sora_error *err)
{
	char *stored = NULL;
	int ret;

	ret = import_hash(address, hash, scheme_r, &stored, err);
	if (ret == 0)
		ret = create_with_hash(conn, address, stored, account_id_r, err);
	free_hash(&stored);
	return ret;
}

int sora_accounts_add_credential_imported(struct sora_db_conn *conn,
					  const char *account_address,
					  const char *new_address, const char *hash,
					  bool make_primary, enum sora_pw_scheme *scheme_r,
					  struct sora_error *err)
{
	char *stored = NULL;
	int ret;

	ret = import_hash(new_address, hash, scheme_r, &stored, err);
	if (ret == 0)
		ret = add_credential_with_hash(conn, account_address, new_address, stored,
					       make_primary, err);
	free_hash(&stored);
	return ret;
}
