/* Accounts and credentials: the queries shared by sora-proxy (login),
 * sora-backend (login, LMTP recipients) and sora-admin (management).
 *
 * Addresses are stored as given and compared case-insensitively
 * (lower(address), backed by a unique index). A soft-deleted account
 * (deleted_at set) is invisible to sora_accounts_lookup() and
 * sora_accounts_authenticate(): it can neither log in nor receive mail,
 * but its addresses stay reserved until it is restored or purged.
 *
 * Every function takes a connection acquired from the pool by the caller
 * (borrowed; it is left outside any transaction on return) and blocks on
 * the database and, for those that hash or verify, on the password scheme
 * (bcrypt cost 12 is ~250 ms): worker threads or the CLI only.
 *
 * Errors (common/core/error.h): 0 on success, -1 with *err filled on
 * failure. Besides the database's TEMPORARY / PERMANENT (db.h) the classes
 * are SORA_ERR_NOT_FOUND (no such address, or its account is deleted),
 * SORA_ERR_INVALID (an address or password that is not acceptable: the
 * caller must change the request), SORA_ERR_CONFLICT (the address already
 * exists, the account is already deleted / not deleted, or the change
 * would remove the primary or last credential). The message is one line
 * fit for an operator ("address bob@example.com already exists"); it never
 * contains a password or a hash.
 *
 * Results that carry strings (lists, details) borrow them from a PGresult
 * the struct owns; free them with the matching *_free function. */
#ifndef SORA_DB_ACCOUNTS_H
#define SORA_DB_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "common/auth/password.h"
#include "common/core/str.h"
#include "common/db/db.h"

#define SORA_ACCOUNTS_ADDRESS_SIZE 256  /* SORA_ADDRESS_MAX_LEN + NUL, rounded up */

/* Who a login name belongs to. */
struct sora_account_ref {
	int64_t account_id;
	int64_t credential_id;
	char address[SORA_ACCOUNTS_ADDRESS_SIZE];          /* as stored */
	char primary_address[SORA_ACCOUNTS_ADDRESS_SIZE];  /* the account's primary identity */
};

/* Finds the live account an address (any case) belongs to, without a
 * password: LMTP recipients, master-user logins. address is network data
 * (pointer + length); anything that is not a valid address is simply not
 * found (SORA_ERR_NOT_FOUND). */
int sora_accounts_lookup(struct sora_db_conn *conn, struct sora_str address,
			 struct sora_account_ref *ref_r, struct sora_error *err);

/* The login check used by every server and by `sora-admin auth test`.
 * Looks the address up (live accounts only) and verifies the password
 * against the stored hash. Returns 0 when the check ran: *match_r tells
 * the outcome and, on a match, *ref_r is filled. An unknown address costs
 * the same bcrypt verification as a known one, so response times do not
 * reveal which addresses exist. When the stored hash is an older, cheaper
 * bcrypt, it is replaced by one with the default cost (failures to do so
 * are logged, not returned). A malformed stored hash, or one of an
 * unsupported scheme, is SORA_ERR_PERMANENT with err naming the address and
 * the scheme (sora_password_scheme_label), never the hash. */
int sora_accounts_authenticate(struct sora_db_conn *conn, struct sora_str address,
			       const char *password, size_t password_len,
			       bool *match_r, struct sora_account_ref *ref_r,
			       struct sora_error *err);

/* Creates an account whose primary identity is address, with the password
 * hashed by scheme. SORA_ERR_INVALID for a bad address (see address.h) or
 * password, SORA_ERR_CONFLICT when any account (also a deleted one) has the
 * address. */
int sora_accounts_create(struct sora_db_conn *conn, const char *address,
			 const char *password, size_t password_len,
			 enum sora_pw_scheme scheme, int64_t *account_id_r,
			 struct sora_error *err);

/* Replaces the password of one credential (the address, any case). */
int sora_accounts_set_password(struct sora_db_conn *conn, const char *address,
			       const char *password, size_t password_len,
			       enum sora_pw_scheme scheme, struct sora_error *err);

/* Makes address the primary identity of its account (the previous primary
 * stays as an alias). */
int sora_accounts_make_primary(struct sora_db_conn *conn, const char *address,
			       struct sora_error *err);

/* Soft-deletes / restores the account that owns address.
 * SORA_ERR_CONFLICT when it already is deleted / is not deleted. */
int sora_accounts_delete(struct sora_db_conn *conn, const char *address,
			 struct sora_error *err);
int sora_accounts_restore(struct sora_db_conn *conn, const char *address,
			  struct sora_error *err);

struct sora_account_info {
	int64_t id;
	const char *primary_address;  /* "" if the account has none */
	const char *created_at;       /* "YYYY-MM-DD HH:MM:SS UTC" */
	const char *deleted_at;       /* NULL while not deleted */
	int64_t credential_count;
	int64_t mailbox_count;
	int64_t message_count;        /* not expunged */
	int64_t total_size;           /* bytes, not expunged */
};

struct sora_account_list {
	size_t count;
	struct sora_account_info *items;  /* owned */
	PGresult *res;                    /* owns the strings */
};

enum sora_accounts_filter {
	SORA_ACCOUNTS_LIVE = 0,       /* not deleted */
	SORA_ACCOUNTS_DELETED,        /* deleted only */
	SORA_ACCOUNTS_ALL,
};

/* Lists accounts ordered by primary address. */
int sora_accounts_list(struct sora_db_conn *conn, enum sora_accounts_filter filter,
		       struct sora_account_list *list_r, struct sora_error *err);
/* The same, one page: at most limit accounts (0 = all) after skipping
 * offset (the HTTP API's ?limit=&offset=, so a response stays bounded). */
int sora_accounts_list_page(struct sora_db_conn *conn, enum sora_accounts_filter filter,
			    int64_t offset, int limit, struct sora_account_list *list_r,
			    struct sora_error *err);

/* The account owning address (deleted or not) as a one-item list. */
int sora_accounts_show(struct sora_db_conn *conn, const char *address,
		       struct sora_account_list *list_r, struct sora_error *err);

void sora_account_list_free(struct sora_account_list *list);

struct sora_credential_info {
	int64_t id;
	int64_t account_id;
	const char *address;
	bool primary;
	const char *scheme;           /* "BLF-CRYPT", ... ("UNKNOWN" if unrecognised) */
	const char *created_at;
	const char *updated_at;
};

struct sora_credential_list {
	size_t count;
	struct sora_credential_info *items;  /* owned */
	PGresult *res;                       /* owns the strings */
};

/* The credentials of the account that owns address, primary first. */
int sora_accounts_list_credentials(struct sora_db_conn *conn, const char *address,
				   struct sora_credential_list *list_r,
				   struct sora_error *err);

void sora_credential_list_free(struct sora_credential_list *list);

/* Adds new_address to the account that owns account_address. With
 * make_primary it becomes the primary identity. */
int sora_accounts_add_credential(struct sora_db_conn *conn, const char *account_address,
				 const char *new_address, const char *password,
				 size_t password_len, enum sora_pw_scheme scheme,
				 bool make_primary, struct sora_error *err);

/* sora_accounts_create() and sora_accounts_add_credential() for a hash
 * made elsewhere, typically Dovecot's `doveadm pw` output, so users can be
 * migrated without knowing their passwords. hash is "{SCHEME}data" (or a
 * bare bcrypt, SHA-crypt or Argon2 string, stored with its prefix added)
 * and must pass sora_password_stored_check(): a supported scheme and a
 * well-formed hash, else SORA_ERR_INVALID with err naming the scheme
 * (sora_password_scheme_label), never the hash. *scheme_r tells the scheme
 * stored. The hash is stored unchanged; like any stored bcrypt, one below
 * the default cost is upgraded at its first successful login. */
int sora_accounts_create_imported(struct sora_db_conn *conn, const char *address,
				  const char *hash, enum sora_pw_scheme *scheme_r,
				  int64_t *account_id_r, struct sora_error *err);
int sora_accounts_add_credential_imported(struct sora_db_conn *conn,
					  const char *account_address,
					  const char *new_address, const char *hash,
					  bool make_primary, enum sora_pw_scheme *scheme_r,
					  struct sora_error *err);

/* Deletes one credential. SORA_ERR_CONFLICT for the primary identity or the
 * account's last credential. */
int sora_accounts_delete_credential(struct sora_db_conn *conn, const char *address,
				    struct sora_error *err);

#endif
