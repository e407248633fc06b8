/* Mailbox operations of one account: see mailbox.h. */
#include "backend/store/mailbox.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/proto/mime/mime-decode.h"

#define I64_SIZE 24
#define SQLSTATE_UNIQUE "23505"

/* ---- pure helpers ---- */

static const char *const special_uses[] = {
	"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash",
};

const char *sora_mailbox_special_use_canonical(const char *attr)
{
	size_t i;

	if (attr == NULL)
		return NULL;
	for (i = 0; i < sizeof(special_uses) / sizeof(special_uses[0]); i++)
		if (strcasecmp(attr, special_uses[i]) == 0)
			return special_uses[i];
	return NULL;
}

/* Length of the INBOX component at the start of name (5) when name is
 * "INBOX" or "INBOX<delim>..." in any case, else 0. */
static size_t inbox_prefix_len(const char *name, char delimiter)
{
	if (strncasecmp(name, "INBOX", 5) == 0 && (name[5] == '\0' || name[5] == delimiter))
		return 5;
	return 0;
}

bool sora_mailbox_is_inbox(const char *name)
{
	return name != NULL && strcasecmp(name, "INBOX") == 0;
}

int sora_mailbox_name_normalize(const char *name, char *out, size_t size,
				struct sora_error *err)
{
	const char delim = SORA_MAILBOX_DELIMITER;
	size_t len, i, comp_len = 0, depth = 1;

	if (name == NULL || name[0] == '\0')
		return sora_error_set(err, SORA_ERR_INVALID, "empty mailbox name");
	len = strlen(name);
	if (len > SORA_MAILBOX_NAME_MAX)
		return sora_error_set(err, SORA_ERR_INVALID,
				      "mailbox name longer than %d bytes", SORA_MAILBOX_NAME_MAX);
	if (!sora_mime_utf8_valid(name, len))
		return sora_error_set(err, SORA_ERR_INVALID, "mailbox name is not valid UTF-8");
	if (name[0] == delim || name[len - 1] == delim)
		return sora_error_set(err, SORA_ERR_INVALID,
				      "mailbox name starts or ends with the delimiter");
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x20 || c == 0x7f)
			return sora_error_set(err, SORA_ERR_INVALID,
					      "control character in mailbox name");
		if (c == '*' || c == '%')
			return sora_error_set(err, SORA_ERR_INVALID, "wildcard in mailbox name");
		if (c == (unsigned char)delim) {
			if (comp_len == 0)
				return sora_error_set(err, SORA_ERR_INVALID,
						      "empty component in mailbox name");
			comp_len = 0;
			if (++depth > SORA_MAILBOX_DEPTH_MAX)
				return sora_error_set(err, SORA_ERR_INVALID,
						      "mailbox name deeper than %d levels",
						      SORA_MAILBOX_DEPTH_MAX);
			continue;
		}
		if (++comp_len > SORA_MAILBOX_COMPONENT_MAX)
			return sora_error_set(err, SORA_ERR_INVALID,
					      "mailbox name component longer than %d bytes",
					      SORA_MAILBOX_COMPONENT_MAX);
	}
	if (len + 1 > size)
		return sora_error_set(err, SORA_ERR_INVALID, "mailbox name too long");
	memcpy(out, name, len + 1);
	if (inbox_prefix_len(out, delim) > 0)
		memcpy(out, "INBOX", 5);
	return 0;
}

bool sora_mailbox_match(const char *pattern, const char *name, char delimiter)
{
	/* cur[j]: the pattern read so far matches the first j bytes of name.
	 * One pass per pattern byte, O(pattern * name), no backtracking. */
	bool a[SORA_MAILBOX_NAME_MAX + 1], b[SORA_MAILBOX_NAME_MAX + 1];
	bool *cur = a, *next = b, *tmp;
	size_t n = strlen(name), inbox = inbox_prefix_len(name, delimiter), j;
	const char *p;

	if (n > SORA_MAILBOX_NAME_MAX)
		return false;
	memset(cur, 0, (n + 1) * sizeof(bool));
	cur[0] = true;
	for (p = pattern; *p != '\0'; p++) {
		bool any = false;

		for (j = 0; j <= n; j++) {
			if (*p == '*') {
				any = any || cur[j];
				next[j] = any;
			} else if (*p == '%') {
				next[j] = cur[j] ||
					  (j > 0 && next[j - 1] && name[j - 1] != delimiter);
			} else if (j == 0) {
				next[j] = false;
			} else {
				unsigned char pc = (unsigned char)*p, nc = (unsigned char)name[j - 1];
				bool eq = j - 1 < inbox ? (pc | 0x20) == (nc | 0x20) &&
								  ((pc >= 'A' && pc <= 'Z') ||
								   (pc >= 'a' && pc <= 'z'))
							: pc == nc;

				next[j] = cur[j - 1] && eq;
			}
		}
		tmp = cur;
		cur = next;
		next = tmp;
	}
	return cur[n];
}

/* ---- database helpers ---- */

static void fmt_i64(char buf[I64_SIZE], int64_t v)
{
	snprintf(buf, I64_SIZE, "%" PRId64, v);
}

/* sora_db_exec, with a unique violation turned into CONFLICT. */
static int exec(struct sora_db_conn *conn, const char *sql, int nparams,
		const char *const *values, PGresult **res_r, struct sora_error *err)
{
	char state[6] = "";

	if (sora_db_exec(conn, SORA_DB_CLASS_WRITE, sql, nparams, values, res_r, state, err) ==
	    0)
		return 0;
	if (strcmp(state, SQLSTATE_UNIQUE) == 0)
		err->cls = SORA_ERR_CONFLICT;
	return -1;
}

static const char sql_lock_account[] =
	"SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE";

/* BEGIN and lock the account's mailbox tree. On failure the transaction is
 * rolled back. */
static int begin_tree(struct sora_db_conn *conn, const char *acc, struct sora_error *err)
{
	const char *params[1] = { acc };
	PGresult *res = NULL;

	if (sora_db_begin(conn, SORA_DB_CLASS_WRITE, err) < 0)
		return -1;
	if (exec(conn, sql_lock_account, 1, params, &res, err) < 0) {
		sora_db_rollback(conn);
		return -1;
	}
	if (PQntuples(res) != 1) {
		PQclear(res);
		sora_db_rollback(conn);
		return sora_error_set(err, SORA_ERR_NOT_FOUND, "account %s does not exist", acc);
	}
	PQclear(res);
	return 0;
}

struct row {
	int64_t id;
	int64_t parent_id;   /* 0: none */
	bool noselect;
	bool found;
};

static const char sql_find_locked[] =
	"SELECT id, coalesce(parent_id, 0), noselect FROM mailboxes "
	"WHERE account_id = $1 AND name = $2 FOR UPDATE";

static int find_locked(struct sora_db_conn *conn, const char *acc, const char *name,
		       struct row *row_r, struct sora_error *err)
{
	const char *params[2] = { acc, name };
	PGresult *res = NULL;
	int rc = 0;

	memset(row_r, 0, sizeof(*row_r));
	if (exec(conn, sql_find_locked, 2, params, &res, err) < 0)
		return -1;
	if (PQntuples(res) == 1) {
		row_r->found = true;
		row_r->noselect = PQgetvalue(res, 0, 2)[0] == 't';
		if (sora_db_get_i64(res, 0, 0, &row_r->id, err) < 0 ||
		    sora_db_get_i64(res, 0, 1, &row_r->parent_id, err) < 0)
			rc = -1;
	}
	PQclear(res);
	return rc;
}

/* One statement per level: insert the name if missing, return its id. */
static const char sql_ensure[] =
	"WITH ins AS (INSERT INTO mailboxes (account_id, name, parent_id) "
	"VALUES ($1, $2, $3) ON CONFLICT (account_id, name) DO NOTHING RETURNING id) "
	"SELECT id FROM ins UNION ALL "
	"SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2";

/* Creates the missing parents of name (real mailboxes) and returns the id
 * of its direct parent in *parent_r (0 for a top-level name). Inside the
 * tree lock. */
static int ensure_parents(struct sora_db_conn *conn, const char *acc, const char *name,
			  int64_t *parent_r, struct sora_error *err)
{
	char prefix[SORA_MAILBOX_NAME_MAX + 1], parent[I64_SIZE];
	const char *slash;
	int64_t parent_id = 0;

	for (slash = strchr(name, SORA_MAILBOX_DELIMITER); slash != NULL;
	     slash = strchr(slash + 1, SORA_MAILBOX_DELIMITER)) {
		const char *params[3] = { acc, prefix, parent_id != 0 ? parent : NULL };
		PGresult *res = NULL;
		int rc;

		memcpy(prefix, name, (size_t)(slash - name));
		prefix[slash - name] = '\0';
		fmt_i64(parent, parent_id);
		if (exec(conn, sql_ensure, 3, params, &res, err) < 0)
			return -1;
		rc = PQntuples(res) == 1 ? sora_db_get_i64(res, 0, 0, &parent_id, err)
					 : sora_error_set(err, SORA_ERR_PERMANENT,
							  "creating parent mailbox: %d rows",
							  PQntuples(res));
		PQclear(res);
		if (rc < 0)
			return -1;
	}
	*parent_r = parent_id;
	return 0;
}

static const char sql_prune[] =
	"DELETE FROM mailboxes m WHERE m.id = $1 AND m.noselect "
	"AND NOT EXISTS (SELECT 1 FROM mailboxes c WHERE c.parent_id = m.id) "
	"RETURNING coalesce(m.parent_id, 0)";

/* Removes \Noselect placeholders from id upwards that have no children
 * left. */
static int prune(struct sora_db_conn *conn, int64_t id, struct sora_error *err)
{
	while (id != 0) {
		char ids[I64_SIZE];
		const char *params[1] = { ids };
		PGresult *res = NULL;
		int rc = 0;

		fmt_i64(ids, id);
		if (exec(conn, sql_prune, 1, params, &res, err) < 0)
			return -1;
		if (PQntuples(res) == 1)
			rc = sora_db_get_i64(res, 0, 0, &id, err);
		else
			id = 0;
		PQclear(res);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int finish(struct sora_db_conn *conn, int rc, struct sora_error *err)
{
	if (rc < 0) {
		sora_db_rollback(conn);
		return -1;
	}
	return sora_db_commit(conn, err);
}

/* ---- LIST ---- */

/* Mailboxes with their subscription, then subscribed names that have no
 * mailbox (\NonExistent in LIST (SUBSCRIBED)), in one byte-ordered list. */
static const char sql_list[] =
	"SELECT m.id, m.name, m.noselect, s.name IS NOT NULL, coalesce(m.special_use, ''), "
	"EXISTS (SELECT 1 FROM mailboxes c WHERE c.parent_id = m.id), false "
	"FROM mailboxes m LEFT JOIN mailbox_subscriptions s "
	"  ON s.account_id = m.account_id AND s.name = m.name "
	"WHERE m.account_id = $1 "
	"UNION ALL "
	"SELECT 0, s.name, true, true, '', false, true FROM mailbox_subscriptions s "
	"WHERE s.account_id = $1 AND NOT EXISTS "
	"  (SELECT 1 FROM mailboxes m WHERE m.account_id = $1 AND m.name = s.name) "
	"ORDER BY 2";

int sora_mailbox_list(struct sora_db_conn *conn, int64_t account_id,
		      struct sora_mailbox_list *list_r, struct sora_error *err)
{
	char acc[I64_SIZE];
	const char *params[1] = { acc };
	PGresult *res = NULL;
	int i, n;

	memset(list_r, 0, sizeof(*list_r));
	fmt_i64(acc, account_id);
	if (sora_db_exec(conn, SORA_DB_CLASS_DEFAULT, sql_list, 1, params, &res, NULL, err) < 0)
		return -1;
	n = PQntuples(res);
	if (n > 0) {
		list_r->items = calloc((size_t)n, sizeof(*list_r->items));
		if (list_r->items == NULL) {
			PQclear(res);
			return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		}
	}
	for (i = 0; i < n; i++) {
		struct sora_mailbox_info *mb = &list_r->items[i];

		list_r->count++;
		if (sora_db_get_i64(res, i, 0, &mb->id, err) < 0)
			goto fail;
		mb->name = strdup(PQgetvalue(res, i, 1));
		if (mb->name == NULL) {
			sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
			goto fail;
		}
		mb->noselect = PQgetvalue(res, i, 2)[0] == 't';
		mb->subscribed = PQgetvalue(res, i, 3)[0] == 't';
		snprintf(mb->special_use, sizeof(mb->special_use), "%s", PQgetvalue(res, i, 4));
		mb->has_children = PQgetvalue(res, i, 5)[0] == 't';
		mb->nonexistent = PQgetvalue(res, i, 6)[0] == 't';
	}
	PQclear(res);
	return 0;
fail:
	PQclear(res);
	sora_mailbox_list_free(list_r);
	return -1;
}

void sora_mailbox_list_free(struct sora_mailbox_list *list)
{
	size_t i;

	for (i = 0; i < list->count; i++)
		free(list->items[i].name);
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

/* ---- CREATE ---- */

static const char sql_create[] =
	"INSERT INTO mailboxes (account_id, name, parent_id, special_use) "
	"VALUES ($1, $2, $3, $4) RETURNING id";

static const char sql_revive[] =
	"UPDATE mailboxes SET noselect = false, special_use = $2, "
	"uid_validity = nextval('mailbox_uid_validity_seq'), updated_at = now() WHERE id = $1";

static int create_locked(struct sora_db_conn *conn, const char *acc, const char *name,
			 const char *special_use, int64_t *id_r, struct sora_error *err)
{
	char parent[I64_SIZE];
	struct row row;
	int64_t parent_id;
	PGresult *res = NULL;
	int rc;

	if (find_locked(conn, acc, name, &row, err) < 0)
		return -1;
	if (row.found && !row.noselect)
		return sora_error_set(err, SORA_ERR_CONFLICT, "mailbox already exists");
	if (row.found) {
		char ids[I64_SIZE];
		const char *params[2] = { ids, special_use };

		fmt_i64(ids, row.id);
		if (exec(conn, sql_revive, 2, params, NULL, err) < 0)
			return -1;
		*id_r = row.id;
		return 0;
	}
	if (ensure_parents(conn, acc, name, &parent_id, err) < 0)
		return -1;
	fmt_i64(parent, parent_id);
	{
		const char *params[4] = { acc, name, parent_id != 0 ? parent : NULL, special_use };

		if (exec(conn, sql_create, 4, params, &res, err) < 0)
			return -1;
	}
	rc = sora_db_get_i64(res, 0, 0, id_r, err);
	PQclear(res);
	return rc;
}

int sora_mailbox_create(struct sora_db_conn *conn, int64_t account_id, const char *name,
			const char *special_use, int64_t *id_r, struct sora_error *err)
{
	char norm[SORA_MAILBOX_NAME_MAX + 1], trimmed[SORA_MAILBOX_NAME_MAX + 1];
	char acc[I64_SIZE];
	const char *su = NULL;
	int64_t id = 0;
	size_t len;
	int rc;

	/* RFC 3501 6.3.3: a trailing delimiter only announces children. */
	len = name != NULL ? strlen(name) : 0;
	if (len > 1 && len <= SORA_MAILBOX_NAME_MAX + 1 &&
	    name[len - 1] == SORA_MAILBOX_DELIMITER && name[len - 2] != SORA_MAILBOX_DELIMITER) {
		memcpy(trimmed, name, len - 1);
		trimmed[len - 1] = '\0';
		name = trimmed;
	}
	if (sora_mailbox_name_normalize(name, norm, sizeof(norm), err) < 0)
		return -1;
	if (special_use != NULL) {
		su = sora_mailbox_special_use_canonical(special_use);
		if (su == NULL)
			return sora_error_set(err, SORA_ERR_INVALID,
					      "not a special-use attribute");
	}
	if (su != NULL && strcmp(norm, "INBOX") == 0)
		return sora_error_set(err, SORA_ERR_INVALID, "INBOX cannot have a special use");
	fmt_i64(acc, account_id);
	if (begin_tree(conn, acc, err) < 0)
		return -1;
	rc = finish(conn, create_locked(conn, acc, norm, su, &id, err), err);
	if (rc == 0 && id_r != NULL)
		*id_r = id;
	return rc;
}

/* ---- DELETE ---- */

static const char sql_has_children[] =
	"SELECT EXISTS (SELECT 1 FROM mailboxes WHERE parent_id = $1)";
static const char sql_delete_messages[] = "DELETE FROM messages WHERE mailbox_id = $1";
static const char sql_delete_delivery_keys[] =
	"DELETE FROM message_deliveries WHERE mailbox_id = $1";
static const char sql_make_noselect[] =
	"UPDATE mailboxes SET noselect = true, special_use = NULL, updated_at = now() "
	"WHERE id = $1";
static const char sql_delete_mailbox[] = "DELETE FROM mailboxes WHERE id = $1";

static int delete_locked(struct sora_db_conn *conn, const char *acc, const char *name,
			 struct sora_error *err)
{
	char ids[I64_SIZE];
	const char *params[1] = { ids };
	PGresult *res = NULL;
	struct row row;
	bool children;

	if (find_locked(conn, acc, name, &row, err) < 0)
		return -1;
	if (!row.found)
		return sora_error_set(err, SORA_ERR_NOT_FOUND, "no such mailbox");
	fmt_i64(ids, row.id);
	if (exec(conn, sql_has_children, 1, params, &res, err) < 0)
		return -1;
	children = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (!children) {
		/* Messages, counters and delivery keys go by ON DELETE CASCADE. */
		if (exec(conn, sql_delete_mailbox, 1, params, NULL, err) < 0)
			return -1;
		return prune(conn, row.parent_id, err);
	}
	if (row.noselect)
		return sora_error_set(err, SORA_ERR_INVALID,
				      "mailbox has children and is already \\Noselect");
	if (exec(conn, sql_delete_messages, 1, params, NULL, err) < 0 ||
	    exec(conn, sql_delete_delivery_keys, 1, params, NULL, err) < 0 ||
	    exec(conn, sql_make_noselect, 1, params, NULL, err) < 0)
		return -1;
	return 0;
}

int sora_mailbox_delete(struct sora_db_conn *conn, int64_t account_id, const char *name,
			struct sora_error *err)
{
	char norm[SORA_MAILBOX_NAME_MAX + 1], acc[I64_SIZE];

	if (sora_mailbox_name_normalize(name, norm, sizeof(norm), err) < 0)
		return -1;
	if (strcmp(norm, "INBOX") == 0)
		return sora_error_set(err, SORA_ERR_INVALID, "INBOX cannot be deleted");
	fmt_i64(acc, account_id);
	if (begin_tree(conn, acc, err) < 0)
		return -1;
	return finish(conn, delete_locked(conn, acc, norm, err), err);
}

/* ---- RENAME ---- */

static const char sql_rename_tree[] =
	"UPDATE mailboxes SET name = $3 || substr(name, length($2) + 1), updated_at = now() "
	"WHERE account_id = $1 AND (name = $2 OR starts_with(name, $2 || '/'))";
/* Subscriptions of the subtree follow it (a client that shows subscribed
 * folders keeps showing the renamed ones); a name already subscribed under
 * the new name stays as it is. */
static const char sql_rename_subscriptions[] =
	"INSERT INTO mailbox_subscriptions (account_id, name) "
	"SELECT account_id, $3 || substr(name, length($2) + 1) FROM mailbox_subscriptions "
	"WHERE account_id = $1 AND (name = $2 OR starts_with(name, $2 || '/')) "
	"ON CONFLICT (account_id, name) DO NOTHING";
static const char sql_drop_subscriptions[] =
	"DELETE FROM mailbox_subscriptions WHERE account_id = $1 "
	"AND (name = $2 OR starts_with(name, $2 || '/'))";
static const char sql_set_parent[] =
	"UPDATE mailboxes SET parent_id = $2 WHERE id = $1";
/* INBOX: the new mailbox continues INBOX's UIDs; INBOX keeps its UIDNEXT
 * (UIDs are never reused) but gets a new UIDVALIDITY and modseq so clients
 * that cached it resynchronise. */
static const char sql_inbox_take_counters[] =
	"UPDATE mailboxes n SET uid_next = o.uid_next, highest_modseq = o.highest_modseq "
	"FROM mailboxes o WHERE n.id = $2 AND o.id = $1";
static const char sql_inbox_move[] =
	"UPDATE messages SET mailbox_id = $2 WHERE mailbox_id = $1 AND expunged_at IS NULL";
static const char sql_inbox_reset[] =
	"UPDATE mailboxes SET uid_validity = nextval('mailbox_uid_validity_seq'), "
	"highest_modseq = highest_modseq + 1, updated_at = now() WHERE id = $1";

static int rename_locked(struct sora_db_conn *conn, const char *acc, const char *old_name,
			 const char *new_name, struct sora_error *err)
{
	char ids[I64_SIZE], parent[I64_SIZE];
	struct row old_row, new_row;
	size_t old_len = strlen(old_name);
	int64_t parent_id;

	if (find_locked(conn, acc, old_name, &old_row, err) < 0)
		return -1;
	if (!old_row.found)
		return sora_error_set(err, SORA_ERR_NOT_FOUND, "no such mailbox");
	if (find_locked(conn, acc, new_name, &new_row, err) < 0)
		return -1;
	if (new_row.found)
		return sora_error_set(err, SORA_ERR_CONFLICT, "target mailbox already exists");
	/* INBOX's children do not move with it, so "INBOX/old" is fine. */
	if (strcmp(old_name, "INBOX") != 0 && strncmp(new_name, old_name, old_len) == 0 &&
	    new_name[old_len] == SORA_MAILBOX_DELIMITER)
		return sora_error_set(err, SORA_ERR_INVALID,
				      "cannot rename a mailbox into its own subtree");
	fmt_i64(ids, old_row.id);
	if (strcmp(old_name, "INBOX") == 0) {
		int64_t new_id;
		char new_ids[I64_SIZE];
		const char *params[2] = { ids, new_ids };

		if (create_locked(conn, acc, new_name, NULL, &new_id, err) < 0)
			return -1;
		fmt_i64(new_ids, new_id);
		if (exec(conn, sql_inbox_take_counters, 2, params, NULL, err) < 0 ||
		    exec(conn, sql_inbox_move, 2, params, NULL, err) < 0 ||
		    exec(conn, sql_inbox_reset, 1, params, NULL, err) < 0)
			return -1;
		return 0;
	}
	if (ensure_parents(conn, acc, new_name, &parent_id, err) < 0)
		return -1;
	{
		const char *params[3] = { acc, old_name, new_name };

		if (exec(conn, sql_rename_tree, 3, params, NULL, err) < 0 ||
		    exec(conn, sql_rename_subscriptions, 3, params, NULL, err) < 0 ||
		    exec(conn, sql_drop_subscriptions, 2, params, NULL, err) < 0)
			return -1;
	}
	fmt_i64(parent, parent_id);
	{
		const char *params[2] = { ids, parent_id != 0 ? parent : NULL };

		if (exec(conn, sql_set_parent, 2, params, NULL, err) < 0)
			return -1;
	}
	return prune(conn, old_row.parent_id, err);
}

int sora_mailbox_rename(struct sora_db_conn *conn, int64_t account_id, const char *old_name,
			const char *new_name, struct sora_error *err)
{
	char old_norm[SORA_MAILBOX_NAME_MAX + 1], new_norm[SORA_MAILBOX_NAME_MAX + 1];
	char acc[I64_SIZE];

	if (sora_mailbox_name_normalize(old_name, old_norm, sizeof(old_norm), err) < 0 ||
	    sora_mailbox_name_normalize(new_name, new_norm, sizeof(new_norm), err) < 0)
		return -1;
	if (strcmp(old_norm, new_norm) == 0)
		return sora_error_set(err, SORA_ERR_CONFLICT, "target mailbox already exists");
	fmt_i64(acc, account_id);
	if (begin_tree(conn, acc, err) < 0)
		return -1;
	return finish(conn, rename_locked(conn, acc, old_norm, new_norm, err), err);
}

/* ---- SUBSCRIBE ---- */

static const char sql_subscribe[] =
	"INSERT INTO mailbox_subscriptions (account_id, name) VALUES ($1, $2) "
	"ON CONFLICT (account_id, name) DO NOTHING";
static const char sql_unsubscribe[] =
	"DELETE FROM mailbox_subscriptions WHERE account_id = $1 AND name = $2 RETURNING name";

int sora_mailbox_subscribe(struct sora_db_conn *conn, int64_t account_id, const char *name,
			   bool subscribed, struct sora_error *err)
{
	char norm[SORA_MAILBOX_NAME_MAX + 1], acc[I64_SIZE];
	const char *params[2] = { acc, norm };
	PGresult *res = NULL;
	int n;

	if (sora_mailbox_name_normalize(name, norm, sizeof(norm), err) < 0)
		return -1;
	fmt_i64(acc, account_id);
	if (subscribed)
		return exec(conn, sql_subscribe, 2, params, NULL, err) < 0 ? -1 : 0;
	if (exec(conn, sql_unsubscribe, 2, params, &res, err) < 0)
		return -1;
	n = PQntuples(res);
	PQclear(res);
	if (n != 1)
		return sora_error_set(err, SORA_ERR_NOT_FOUND, "not subscribed");
	return 0;
}

/* ---- STATUS ---- */

static const char sql_status[] =
	"SELECT m.id, s.message_count, s.unseen_count, s.total_size, m.uid_next, "
	"m.uid_validity, m.highest_modseq, m.noselect "
	"FROM mailboxes m JOIN mailbox_stats s ON s.mailbox_id = m.id "
	"WHERE m.account_id = $1 AND m.name = $2";

int sora_mailbox_status(struct sora_db_conn *conn, int64_t account_id, const char *name,
			struct sora_mailbox_status *status_r, struct sora_error *err)
{
	char norm[SORA_MAILBOX_NAME_MAX + 1], acc[I64_SIZE];
	const char *params[2] = { acc, norm };
	PGresult *res = NULL;
	int rc = 0;

	memset(status_r, 0, sizeof(*status_r));
	if (sora_mailbox_name_normalize(name, norm, sizeof(norm), err) < 0)
		return -1;
	fmt_i64(acc, account_id);
	if (sora_db_exec(conn, SORA_DB_CLASS_DEFAULT, sql_status, 2, params, &res, NULL, err) < 0)
		return -1;
	if (PQntuples(res) != 1 || PQgetvalue(res, 0, 7)[0] == 't') {
		PQclear(res);
		return sora_error_set(err, SORA_ERR_NOT_FOUND, "no such selectable mailbox");
	}
	if (sora_db_get_i64(res, 0, 0, &status_r->id, err) < 0 ||
	    sora_db_get_i64(res, 0, 1, &status_r->messages, err) < 0 ||
	    sora_db_get_i64(res, 0, 2, &status_r->unseen, err) < 0 ||
	    sora_db_get_i64(res, 0, 3, &status_r->size, err) < 0 ||
	    sora_db_get_i64(res, 0, 4, &status_r->uid_next, err) < 0 ||
	    sora_db_get_i64(res, 0, 5, &status_r->uid_validity, err) < 0 ||
	    sora_db_get_i64(res, 0, 6, &status_r->highest_modseq, err) < 0)
		rc = -1;
	PQclear(res);
	return rc;
}
