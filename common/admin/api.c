/* The HTTP admin API: see api.h and docs/api.md. */
#include "common/admin/api.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <sodium.h>

#include "common/admin/json.h"
#include "common/admin/ops.h"
#include "common/auth/password.h"
#include "common/core/log.h"
#include "common/core/str.h"
#include "common/core/units.h"
#include "common/db/accounts.h"
#include "common/db/address.h"
#include "common/db/db.h"
#include "common/metrics/metrics.h"
#include "common/net/httpd.h"

#define PREFIX "/api/v1/"
/* Each thread serves its connections' requests one at a time and holds at
 * most one database connection while it does: a slow bcrypt (account
 * creation) occupies one thread, the others keep answering. */
#define API_THREADS 4
#define CONNECTION_LIMIT 64
#define PER_IP_CONNECTION_LIMIT 32
#define CONNECTION_TIMEOUT_S 30
#define ACQUIRE_TIMEOUT_MS 5000
#define MAX_PEM (1024 * 1024)
#define MAX_SEGMENTS 4
#define MAX_PATH 1024
/* Rows a list returns unless the request asks for fewer (?limit=). */
#define DEFAULT_LIMIT 1000
#define MAX_LIMIT 10000

struct sora_admin_api {
	struct sora_httpd *httpd;
	struct sora_db_pool *pool;
	unsigned char key_hash[crypto_generichash_BYTES];
	char name[96];
	struct sora_metric *requests;
};

/* Per request, from the first call of the handler to the completion
 * callback. */
struct request {
	char *body;
	size_t len, cap;
	bool too_big;
	bool answered;
	struct timespec start;
};

/* What a route handler works with. */
struct call {
	struct sora_admin_api *api;
	struct MHD_Connection *mhd;
	const char *method;
	char *seg[MAX_SEGMENTS];
	int nseg;
	cJSON *in;            /* the parsed body (an object), or NULL */
	struct sora_db_conn *db;
	/* Result: */
	unsigned int status;
	cJSON *out;
	const char *error;    /* static or in error_buf */
	char error_buf[SORA_ERROR_MSG_SIZE];
	const char *allow;    /* for 405 */
};

/* ---- replies ---- */

static const char *method_label(const char *method)
{
	static const char *const known[] = { "GET", "POST", "PATCH", "PUT", "DELETE", "HEAD",
					     "OPTIONS" };

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strcmp(method, known[i]) == 0)
			return known[i];
	}
	return "other";
}

static void log_request(struct sora_admin_api *api, struct MHD_Connection *mhd,
			struct request *req, const char *method, const char *url,
			unsigned int status)
{
	struct timespec now;
	char client[64], path[300], meth[32], st[8];
	double ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (double)(now.tv_sec - req->start.tv_sec) * 1e3 +
	     (double)(now.tv_nsec - req->start.tv_nsec) / 1e6;
	snprintf(st, sizeof(st), "%u", status);
	sora_metric_inc(sora_metric_with(api->requests, method_label(method), st));
	sora_info(NULL, "%s: %s %s -> %u (client %s, %.1f ms)", api->name,
		  sora_log_escape(sora_str_c(method), meth, sizeof(meth)),
		  sora_log_escape(sora_str_c(url != NULL ? url : ""), path, sizeof(path)), status,
		  sora_httpd_client(mhd, client, sizeof(client)), ms);
}

/* Queues body (owned: consumed) as the JSON reply. */
static enum MHD_Result send_json(struct sora_admin_api *api, struct MHD_Connection *mhd,
				 struct request *req, const char *method, const char *url,
				 unsigned int status, cJSON *body, const char *allow)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char *text = NULL;
	size_t len;

	if (body != NULL)
		text = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	if (text == NULL) {
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		text = strdup("{\"error\":\"out of memory\"}");
		if (text == NULL)
			return MHD_NO;
	}
	len = strlen(text);
	resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer realm=\"sora\"");
	if (allow != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(mhd, status, resp);
	MHD_destroy_response(resp);
	req->answered = true;
	log_request(api, mhd, req, method, url, status);
	return ret;
}

static enum MHD_Result send_error(struct sora_admin_api *api, struct MHD_Connection *mhd,
				  struct request *req, const char *method, const char *url,
				  unsigned int status, const char *msg, const char *allow)
{
	cJSON *o = cJSON_CreateObject();

	if (o != NULL && sora_json_add_str(o, "error", msg) < 0) {
		cJSON_Delete(o);
		o = NULL;
	}
	return send_json(api, mhd, req, method, url, status, o, allow);
}

static int fail(struct call *c, unsigned int status, const char *msg)
{
	c->status = status;
	c->error = msg;
	return -1;
}

static int failf(struct call *c, unsigned int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int failf(struct call *c, unsigned int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->error_buf, sizeof(c->error_buf), fmt, ap);
	va_end(ap);
	return fail(c, status, c->error_buf);
}

/* Maps an operation's error to a reply. The classes that mean "your
 * request" carry the operation's one-line message (it names the address or
 * value at fault, never a password or hash); the others are the server's
 * problem: the detail goes to the log, the client learns only the kind. */
static int fail_err(struct call *c, const struct sora_error *err)
{
	switch (err->cls) {
	case SORA_ERR_INVALID:
		return failf(c, MHD_HTTP_BAD_REQUEST, "%s", err->msg);
	case SORA_ERR_NOT_FOUND:
		return failf(c, MHD_HTTP_NOT_FOUND, "%s", err->msg);
	case SORA_ERR_CONFLICT:
		return failf(c, MHD_HTTP_CONFLICT, "%s", err->msg);
	case SORA_ERR_TEMPORARY:
		sora_warn(NULL, "%s: %s", c->api->name, err->msg);
		return fail(c, MHD_HTTP_SERVICE_UNAVAILABLE,
			    "temporarily unavailable (database), try again");
	default:
		sora_error(NULL, "%s: %s", c->api->name, err->msg);
		return fail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error (see the server log)");
	}
}

static int oom(struct call *c)
{
	return fail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
}

/* c->out = a new object; 0 or -1 (out of memory). */
static int out_object(struct call *c, unsigned int status)
{
	c->out = cJSON_CreateObject();
	if (c->out == NULL)
		return oom(c);
	c->status = status;
	return 0;
}

/* ---- request input ---- */

static const char *query(struct call *c, const char *name)
{
	return MHD_lookup_connection_value(c->mhd, MHD_GET_ARGUMENT_KIND, name);
}

/* Only the listed members are accepted, so a misspelt field is an error
 * rather than silently ignored. */
static int check_members(struct call *c, const char *const *allowed)
{
	const cJSON *m;

	if (c->in == NULL)
		return 0;
	cJSON_ArrayForEach(m, c->in) {
		bool ok = false;

		for (size_t i = 0; allowed[i] != NULL; i++) {
			if (strcmp(m->string, allowed[i]) == 0)
				ok = true;
		}
		if (!ok) {
			char shown[64];

			return failf(c, MHD_HTTP_BAD_REQUEST, "unknown field \"%s\"",
				     sora_log_escape(sora_str_c(m->string), shown, sizeof(shown)));
		}
	}
	return 0;
}

/* A string member: NULL when absent (or JSON null); -1 (400) when of
 * another type, or absent and required. */
static int get_str(struct call *c, const char *name, bool required, const char **value_r)
{
	const cJSON *m = c->in != NULL ? cJSON_GetObjectItemCaseSensitive(c->in, name) : NULL;

	*value_r = NULL;
	if (m == NULL || cJSON_IsNull(m)) {
		if (required)
			return failf(c, MHD_HTTP_BAD_REQUEST, "\"%s\" is required", name);
		return 0;
	}
	if (!cJSON_IsString(m))
		return failf(c, MHD_HTTP_BAD_REQUEST, "\"%s\" must be a string", name);
	*value_r = m->valuestring;
	return 0;
}

static int get_bool(struct call *c, const char *name, bool *value_r)
{
	const cJSON *m = c->in != NULL ? cJSON_GetObjectItemCaseSensitive(c->in, name) : NULL;

	*value_r = false;
	if (m == NULL || cJSON_IsNull(m))
		return 0;
	if (!cJSON_IsBool(m))
		return failf(c, MHD_HTTP_BAD_REQUEST, "\"%s\" must be true or false", name);
	*value_r = cJSON_IsTrue(m);
	return 0;
}

/* The password member, wiped from the parsed body once used. */
static void wipe_str(struct call *c, const char *name)
{
	cJSON *m = c->in != NULL ? cJSON_GetObjectItemCaseSensitive(c->in, name) : NULL;

	if (m != NULL && cJSON_IsString(m) && m->valuestring != NULL)
		sodium_memzero(m->valuestring, strlen(m->valuestring));
}

static int get_scheme(struct call *c, enum sora_pw_scheme *scheme_r)
{
	const char *name;

	*scheme_r = SORA_PW_BCRYPT;
	if (get_str(c, "hash", false, &name) < 0)
		return -1;
	if (name != NULL && sora_password_scheme_parse(name, scheme_r) < 0)
		return fail(c, MHD_HTTP_BAD_REQUEST, "unknown hash scheme (bcrypt, ssha512, "
			    "sha512-crypt, sha256-crypt, ssha256, sha512, argon2id, argon2i)");
	return 0;
}

static int get_limit(struct call *c, int *limit_r)
{
	const char *v = query(c, "limit");
	uint64_t n;

	*limit_r = DEFAULT_LIMIT;
	if (v == NULL)
		return 0;
	if (sora_str_to_u64(sora_str_c(v), MAX_LIMIT, &n) < 0 || n == 0)
		return failf(c, MHD_HTTP_BAD_REQUEST, "limit must be a number from 1 to %d",
			     MAX_LIMIT);
	*limit_r = (int)n;
	return 0;
}

/* An address given by the client, checked by the rules of address.h. */
static int check_address(struct call *c, const char *address)
{
	struct sora_error err;

	if (sora_address_validate(sora_str_c(address), &err) < 0) {
		char shown[128];

		return failf(c, MHD_HTTP_BAD_REQUEST, "invalid address \"%s\": %s",
			     sora_log_escape(sora_str_c(address), shown, sizeof(shown)), err.msg);
	}
	return 0;
}

/* ---- rows to JSON ---- */

/* Adds names[i]: column i of every row, as an array under key. kinds: 's'
 * string, 'i' integer, 'b' boolean. */
static int add_rows(struct call *c, cJSON *obj, const char *key,
		    const struct sora_admin_rows *rows, const char *const *names,
		    const char *kinds)
{
	cJSON *arr = cJSON_AddArrayToObject(obj, key);

	if (arr == NULL)
		return oom(c);
	for (int i = 0; i < rows->count; i++) {
		cJSON *o = cJSON_CreateObject();

		if (o == NULL || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			return oom(c);
		}
		for (int j = 0; names[j] != NULL; j++) {
			const char *v = sora_admin_cell(rows, i, j);
			int r;

			if (v == NULL || kinds[j] == 's')
				r = sora_json_add_str(o, names[j], v);
			else if (kinds[j] == 'i')
				r = sora_json_add_num(o, names[j],
						      (double)sora_admin_cell_i64(rows, i, j));
			else
				r = sora_json_add_bool(o, names[j], v[0] == 't');
			if (r < 0)
				return oom(c);
		}
	}
	return 0;
}

/* ---- routes ---- */

static int route_health(struct call *c)
{
	char version[64];
	struct sora_error err;
	bool ok = c->db != NULL && sora_admin_db_ping(c->db, version, sizeof(version), &err) == 0;
	cJSON *db;

	if (!ok && c->db != NULL)
		sora_warn(NULL, "%s: health: %s", c->api->name, err.msg);
	if (out_object(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE) < 0)
		return -1;
	db = cJSON_AddObjectToObject(c->out, "database");
	if (db == NULL || sora_json_add_str(c->out, "status", ok ? "ok" : "unavailable") < 0 ||
	    sora_json_add_str(c->out, "version", SORA_VERSION) < 0 ||
	    sora_json_add_bool(db, "reachable", ok) < 0 ||
	    (ok && sora_json_add_str(db, "version", version) < 0))
		return oom(c);
	return 0;
}

static int account_json(struct call *c, cJSON *o, const struct sora_account_info *a)
{
	if (sora_json_add_num(o, "id", (double)a->id) < 0 ||
	    sora_json_add_str(o, "primary_address", a->primary_address) < 0 ||
	    sora_json_add_str(o, "status", a->deleted_at != NULL ? "deleted" : "active") < 0 ||
	    sora_json_add_str(o, "created_at", a->created_at) < 0 ||
	    sora_json_add_str(o, "deleted_at", a->deleted_at) < 0 ||
	    sora_json_add_num(o, "credentials", (double)a->credential_count) < 0 ||
	    sora_json_add_num(o, "mailboxes", (double)a->mailbox_count) < 0 ||
	    sora_json_add_num(o, "messages", (double)a->message_count) < 0 ||
	    sora_json_add_num(o, "size", (double)a->total_size) < 0)
		return oom(c);
	return 0;
}

static int credentials_json(struct call *c, cJSON *obj, const struct sora_credential_list *l)
{
	cJSON *arr = cJSON_AddArrayToObject(obj, "credentials");

	if (arr == NULL)
		return oom(c);
	for (size_t i = 0; i < l->count; i++) {
		const struct sora_credential_info *ci = &l->items[i];
		cJSON *o = cJSON_CreateObject();

		if (o == NULL || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			return oom(c);
		}
		if (sora_json_add_str(o, "address", ci->address) < 0 ||
		    sora_json_add_bool(o, "primary", ci->primary) < 0 ||
		    sora_json_add_str(o, "scheme", ci->scheme) < 0 ||
		    sora_json_add_str(o, "created_at", ci->created_at) < 0 ||
		    sora_json_add_str(o, "updated_at", ci->updated_at) < 0)
			return oom(c);
	}
	return 0;
}

/* GET /accounts[?status=active|deleted|all&limit=&offset=] */
static int accounts_list(struct call *c)
{
	const char *status = query(c, "status"), *off = query(c, "offset");
	enum sora_accounts_filter filter = SORA_ACCOUNTS_LIVE;
	struct sora_account_list list;
	struct sora_error err;
	uint64_t offset = 0;
	cJSON *arr;
	int limit, ret = -1;

	if (status != NULL && strcmp(status, "deleted") == 0)
		filter = SORA_ACCOUNTS_DELETED;
	else if (status != NULL && strcmp(status, "all") == 0)
		filter = SORA_ACCOUNTS_ALL;
	else if (status != NULL && strcmp(status, "active") != 0)
		return fail(c, MHD_HTTP_BAD_REQUEST, "status must be active, deleted or all");
	if (get_limit(c, &limit) < 0)
		return -1;
	if (off != NULL && sora_str_to_u64(sora_str_c(off), INT64_MAX, &offset) < 0)
		return fail(c, MHD_HTTP_BAD_REQUEST, "offset must be a number");
	if (sora_accounts_list_page(c->db, filter, (int64_t)offset, limit, &list, &err) != 0)
		return fail_err(c, &err);
	if (out_object(c, MHD_HTTP_OK) < 0)
		goto out;
	arr = cJSON_AddArrayToObject(c->out, "accounts");
	if (arr == NULL) {
		oom(c);
		goto out;
	}
	for (size_t i = 0; i < list.count; i++) {
		cJSON *o = cJSON_CreateObject();

		if (o == NULL || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			oom(c);
			goto out;
		}
		if (account_json(c, o, &list.items[i]) < 0)
			goto out;
	}
	if (sora_json_add_num(c->out, "count", (double)list.count) < 0 ||
	    (list.count == (size_t)limit &&
	     sora_json_add_num(c->out, "next_offset", (double)(offset + list.count)) < 0)) {
		oom(c);
		goto out;
	}
	ret = 0;
out:
	sora_account_list_free(&list);
	return ret;
}

/* POST /accounts {"email", "password", "hash"} */
static int accounts_create(struct call *c)
{
	static const char *const fields[] = { "email", "password", "hash", NULL };
	enum sora_pw_scheme scheme;
	const char *email, *password;
	struct sora_error err;
	int64_t id = 0;
	int ret;

	if (check_members(c, fields) < 0 || get_str(c, "email", true, &email) < 0 ||
	    get_str(c, "password", true, &password) < 0 || get_scheme(c, &scheme) < 0 ||
	    check_address(c, email) < 0)
		return -1;
	ret = sora_accounts_create(c->db, email, password, strlen(password), scheme, &id, &err);
	wipe_str(c, "password");
	if (ret != 0)
		return fail_err(c, &err);
	sora_info(NULL, "%s: created account %lld (%s)", c->api->name, (long long)id,
		  sora_password_scheme_name(scheme));
	if (out_object(c, MHD_HTTP_CREATED) < 0)
		return -1;
	if (sora_json_add_num(c->out, "id", (double)id) < 0 ||
	    sora_json_add_str(c->out, "primary_address", email) < 0 ||
	    sora_json_add_str(c->out, "scheme", sora_password_scheme_name(scheme)) < 0)
		return oom(c);
	return 0;
}

/* GET /accounts/E */
static int accounts_show(struct call *c, const char *email)
{
	struct sora_account_list list;
	struct sora_credential_list creds;
	struct sora_error err;
	char backend[256];
	int ret = -1;

	if (sora_accounts_show(c->db, email, &list, &err) != 0)
		return fail_err(c, &err);
	if (sora_accounts_list_credentials(c->db, email, &creds, &err) != 0) {
		sora_account_list_free(&list);
		return fail_err(c, &err);
	}
	sora_admin_account_backend(c->db, list.items[0].id, backend, sizeof(backend));
	if (out_object(c, MHD_HTTP_OK) == 0 && account_json(c, c->out, &list.items[0]) == 0) {
		if (sora_json_add_str(c->out, "backend", backend[0] != '\0' ? backend : NULL) < 0)
			oom(c);
		else
			ret = credentials_json(c, c->out, &creds);
	}
	sora_credential_list_free(&creds);
	sora_account_list_free(&list);
	return ret;
}

/* PATCH /accounts/E {"password", "hash", "make_primary", "backend"} */
static int accounts_update(struct call *c, const char *email)
{
	static const char *const fields[] = { "password", "hash", "make_primary", "backend",
					      NULL };
	enum sora_pw_scheme scheme;
	const char *password, *backend, *hash;
	bool make_primary;
	struct sora_error err;
	cJSON *changed;
	int ret;

	if (check_members(c, fields) < 0 || get_str(c, "password", false, &password) < 0 ||
	    get_str(c, "hash", false, &hash) < 0 || get_scheme(c, &scheme) < 0 ||
	    get_bool(c, "make_primary", &make_primary) < 0 ||
	    get_str(c, "backend", false, &backend) < 0)
		return -1;
	if (password == NULL && !make_primary && backend == NULL)
		return fail(c, MHD_HTTP_BAD_REQUEST, "nothing to change: give password, "
			    "make_primary and/or backend");
	if (password == NULL && hash != NULL)
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"hash\" needs a new password");
	if (out_object(c, MHD_HTTP_OK) < 0)
		return -1;
	changed = cJSON_AddArrayToObject(c->out, "changed");
	if (changed == NULL)
		return oom(c);
	/* The same steps, in the same order, as `sora-admin accounts update`. */
	if (password != NULL) {
		ret = sora_accounts_set_password(c->db, email, password, strlen(password), scheme,
						 &err);
		wipe_str(c, "password");
		if (ret != 0)
			return fail_err(c, &err);
		cJSON_AddItemToArray(changed, cJSON_CreateString("password"));
	}
	if (make_primary) {
		if (sora_accounts_make_primary(c->db, email, &err) != 0)
			return fail_err(c, &err);
		cJSON_AddItemToArray(changed, cJSON_CreateString("primary"));
	}
	if (backend != NULL) {
		if (sora_admin_account_set_backend(c->db, email, backend, &err) != 0)
			return fail_err(c, &err);
		cJSON_AddItemToArray(changed, cJSON_CreateString("backend"));
	}
	if (sora_json_add_str(c->out, "email", email) < 0)
		return oom(c);
	return 0;
}

/* DELETE /accounts/E, POST /accounts/E/restore, DELETE /credentials/E */
static int by_email(struct call *c, const char *email, const char *done,
		    int (*op)(struct sora_db_conn *, const char *, struct sora_error *))
{
	struct sora_error err;

	if (op(c->db, email, &err) != 0)
		return fail_err(c, &err);
	if (out_object(c, MHD_HTTP_OK) < 0)
		return -1;
	if (sora_json_add_str(c->out, done, email) < 0)
		return oom(c);
	return 0;
}

/* GET /accounts/E/credentials */
static int credentials_list(struct call *c, const char *email)
{
	struct sora_credential_list creds;
	struct sora_error err;
	int ret = -1;

	if (sora_accounts_list_credentials(c->db, email, &creds, &err) != 0)
		return fail_err(c, &err);
	if (out_object(c, MHD_HTTP_OK) == 0)
		ret = credentials_json(c, c->out, &creds);
	sora_credential_list_free(&creds);
	return ret;
}

/* POST /accounts/E/credentials {"email", "password", "hash", "primary"} */
static int credentials_add(struct call *c, const char *account)
{
	static const char *const fields[] = { "email", "password", "hash", "primary", NULL };
	enum sora_pw_scheme scheme;
	const char *email, *password;
	bool primary;
	struct sora_error err;
	int ret;

	if (check_members(c, fields) < 0 || get_str(c, "email", true, &email) < 0 ||
	    get_str(c, "password", true, &password) < 0 || get_scheme(c, &scheme) < 0 ||
	    get_bool(c, "primary", &primary) < 0 || check_address(c, email) < 0)
		return -1;
	ret = sora_accounts_add_credential(c->db, account, email, password, strlen(password),
					   scheme, primary, &err);
	wipe_str(c, "password");
	if (ret != 0)
		return fail_err(c, &err);
	if (out_object(c, MHD_HTTP_CREATED) < 0)
		return -1;
	if (sora_json_add_str(c->out, "address", email) < 0 ||
	    sora_json_add_bool(c->out, "primary", primary) < 0 ||
	    sora_json_add_str(c->out, "scheme", sora_password_scheme_name(scheme)) < 0)
		return oom(c);
	return 0;
}

/* The 200 reply of a listing: the rows as an array under key, and their
 * count. Frees rows. */
static int reply_rows(struct call *c, const char *key, struct sora_admin_rows *rows,
		      const char *const *names, const char *kinds)
{
	int ret = -1;

	if (out_object(c, MHD_HTTP_OK) == 0 && add_rows(c, c->out, key, rows, names, kinds) == 0) {
		if (sora_json_add_num(c->out, "count", rows->count) < 0)
			oom(c);
		else
			ret = 0;
	}
	sora_admin_rows_free(rows);
	return ret;
}

/* GET /connections[?user=&protocol=&limit=] */
static int connections_list(struct call *c)
{
	static const char *const names[] = { "user", "protocol", "client", "backend", "proxy",
					     "since", "session_id", NULL };
	struct sora_admin_rows rows;
	struct sora_error err;
	int limit;

	if (get_limit(c, &limit) < 0)
		return -1;
	if (sora_admin_connections_list(c->db, query(c, "user"), query(c, "protocol"), limit,
					&rows, &err) != 0)
		return fail_err(c, &err);
	return reply_rows(c, "connections", &rows, names, "sssssss");
}

/* POST /connections/kick {"user", "protocol"} */
static int connections_kick(struct call *c)
{
	static const char *const fields[] = { "user", "protocol", NULL };
	const char *user, *protocol;
	struct sora_error err;
	int64_t id = 0, matched = 0;

	if (check_members(c, fields) < 0 || get_str(c, "user", false, &user) < 0 ||
	    get_str(c, "protocol", false, &protocol) < 0)
		return -1;
	if (sora_admin_connections_kick(c->db, user, protocol, &id, &matched, &err) != 0)
		return fail_err(c, &err);
	/* Accepted: every proxy closes its own sessions within a second. */
	if (out_object(c, MHD_HTTP_ACCEPTED) < 0)
		return -1;
	if (sora_json_add_num(c->out, "kick_id", (double)id) < 0 ||
	    sora_json_add_num(c->out, "matched", (double)matched) < 0)
		return oom(c);
	return 0;
}

static const char *const block_names[] = { "ip", "username", "failures", "blocked_until",
					   "protocol", "last_failure", NULL };
#define BLOCK_KINDS "ssisss"

/* GET /auth/blocks[?limit=] */
static int auth_blocks(struct call *c)
{
	struct sora_admin_rows rows;
	struct sora_error err;
	int limit;

	if (get_limit(c, &limit) < 0)
		return -1;
	if (sora_admin_auth_blocks(c->db, limit, &rows, &err) != 0)
		return fail_err(c, &err);
	return reply_rows(c, "blocks", &rows, block_names, BLOCK_KINDS);
}

/* POST /auth/unblock {"ip", "user"} */
static int auth_unblock(struct call *c)
{
	static const char *const fields[] = { "ip", "user", NULL };
	static const char *const names[] = { "ip", "username", "failures", "was_blocked", NULL };
	const char *ip, *user;
	struct sora_admin_rows rows;
	struct sora_error err;
	int ret = -1, blocking = 0;

	if (check_members(c, fields) < 0 || get_str(c, "ip", false, &ip) < 0 ||
	    get_str(c, "user", false, &user) < 0)
		return -1;
	if (sora_admin_auth_unblock(c->db, ip, user, &rows, &err) != 0)
		return fail_err(c, &err);
	for (int i = 0; i < rows.count; i++)
		blocking += sora_admin_cell_bool(&rows, i, SORA_ADMIN_UNBLOCK_WAS_BLOCKED);
	if (out_object(c, MHD_HTTP_OK) == 0 &&
	    add_rows(c, c->out, "removed", &rows, names, "ssib") == 0) {
		if (sora_json_add_num(c->out, "count", rows.count) < 0 ||
		    sora_json_add_num(c->out, "blocking", blocking) < 0)
			oom(c);
		else
			ret = 0;
	}
	sora_admin_rows_free(&rows);
	return ret;
}

/* GET /auth/stats[?window=24h&top=10] */
static int auth_stats(struct call *c)
{
	static const char *const top_names[] = { "key", "failures", "last_failure",
						 "blocked_until", NULL };
	const char *window = query(c, "window"), *top = query(c, "top"), *error;
	struct sora_admin_auth_stats st;
	struct sora_error err;
	int64_t ms = 24LL * 3600 * 1000;
	uint64_t n = 10;
	char wbuf[32];
	int ret = -1;

	if (window != NULL && (sora_parse_duration_ms(window, &ms, &error) < 0 || ms <= 0))
		return fail(c, MHD_HTTP_BAD_REQUEST, "invalid window (e.g. 15m, 1h, 24h, 7d)");
	if (top != NULL && (sora_str_to_u64(sora_str_c(top), SORA_ADMIN_STATS_MAX_TOP, &n) < 0 ||
			    n == 0))
		return failf(c, MHD_HTTP_BAD_REQUEST, "top must be a number from 1 to %d",
			     SORA_ADMIN_STATS_MAX_TOP);
	if (sora_admin_auth_stats(c->db, ms, (int)n, &st, &err) != 0)
		return fail_err(c, &err);
	if (out_object(c, MHD_HTTP_OK) == 0) {
		cJSON *f = cJSON_AddObjectToObject(c->out, "failures");
		cJSON *b = cJSON_AddObjectToObject(c->out, "blocked_now");

		if (f == NULL || b == NULL ||
		    sora_json_add_str(c->out, "window",
				      sora_format_duration(ms, wbuf, sizeof(wbuf))) < 0 ||
		    sora_json_add_num(c->out, "window_seconds", (double)(ms / 1000)) < 0 ||
		    sora_json_add_num(f, "by_ip", (double)st.ip_failures) < 0 ||
		    sora_json_add_num(f, "ips", (double)st.ips) < 0 ||
		    sora_json_add_num(f, "by_username", (double)st.user_failures) < 0 ||
		    sora_json_add_num(f, "usernames", (double)st.users) < 0 ||
		    sora_json_add_num(b, "total", (double)st.blocked_now) < 0 ||
		    sora_json_add_num(b, "ips", (double)st.blocked_ips) < 0 ||
		    sora_json_add_num(b, "usernames", (double)st.blocked_users) < 0)
			oom(c);
		else if (add_rows(c, c->out, "top_ips", &st.top_ips, top_names, "siss") == 0 &&
			 add_rows(c, c->out, "top_usernames", &st.top_users, top_names,
				  "siss") == 0 &&
			 add_rows(c, c->out, "blocked", &st.blocked, block_names, BLOCK_KINDS) == 0)
			ret = 0;
	}
	sora_admin_auth_stats_free(&st);
	return ret;
}

/* Which handler a path and method reach. A path that exists with another
 * method is 405 with Allow; a path that does not exist is 404. */
static int dispatch(struct call *c)
{
	const char *m = c->method;
	char **s = c->seg;
	int n = c->nseg;
	bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0;
	bool patch = strcmp(m, "PATCH") == 0, del = strcmp(m, "DELETE") == 0;

#define ALLOW(list) do { c->allow = (list); \
		return fail(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed"); } while (0)
	if (n == 1 && strcmp(s[0], "health") == 0) {
		if (get)
			return route_health(c);
		ALLOW("GET");
	}
	if (n >= 1 && strcmp(s[0], "accounts") == 0) {
		if (n == 1) {
			if (get)
				return accounts_list(c);
			if (post)
				return accounts_create(c);
			ALLOW("GET, POST");
		}
		if (n == 2) {
			if (get)
				return accounts_show(c, s[1]);
			if (patch)
				return accounts_update(c, s[1]);
			if (del)
				return by_email(c, s[1], "deleted", sora_accounts_delete);
			ALLOW("GET, PATCH, DELETE");
		}
		if (n == 3 && strcmp(s[2], "restore") == 0) {
			if (post)
				return by_email(c, s[1], "restored", sora_accounts_restore);
			ALLOW("POST");
		}
		if (n == 3 && strcmp(s[2], "credentials") == 0) {
			if (get)
				return credentials_list(c, s[1]);
			if (post)
				return credentials_add(c, s[1]);
			ALLOW("GET, POST");
		}
	}
	if (n == 2 && strcmp(s[0], "credentials") == 0) {
		if (del)
			return by_email(c, s[1], "deleted", sora_accounts_delete_credential);
		ALLOW("DELETE");
	}
	if (n == 1 && strcmp(s[0], "connections") == 0) {
		if (get)
			return connections_list(c);
		ALLOW("GET");
	}
	if (n == 2 && strcmp(s[0], "connections") == 0 && strcmp(s[1], "kick") == 0) {
		if (post)
			return connections_kick(c);
		ALLOW("POST");
	}
	if (n == 2 && strcmp(s[0], "auth") == 0) {
		if (strcmp(s[1], "blocks") == 0) {
			if (get)
				return auth_blocks(c);
			ALLOW("GET");
		}
		if (strcmp(s[1], "unblock") == 0) {
			if (post)
				return auth_unblock(c);
			ALLOW("POST");
		}
		if (strcmp(s[1], "stats") == 0) {
			if (get)
				return auth_stats(c);
			ALLOW("GET");
		}
	}
#undef ALLOW
	return fail(c, MHD_HTTP_NOT_FOUND, "no such endpoint");
}

/* Splits url (after PREFIX) into segments in buf. -1 when it is not an API
 * path. */
static int split_path(const char *url, char *buf, size_t size, struct call *c)
{
	size_t len;
	char *p;

	if (url == NULL || strncmp(url, PREFIX, strlen(PREFIX)) != 0)
		return -1;
	url += strlen(PREFIX);
	len = strlen(url);
	if (len == 0 || len >= size)
		return -1;
	memcpy(buf, url, len + 1);
	/* A trailing slash names the same resource. */
	if (buf[len - 1] == '/')
		buf[--len] = '\0';
	c->nseg = 0;
	for (p = buf; p != NULL;) {
		char *slash = strchr(p, '/');

		if (slash != NULL)
			*slash = '\0';
		if (*p == '\0' || c->nseg == MAX_SEGMENTS)
			return -1;
		c->seg[c->nseg++] = p;
		p = slash != NULL ? slash + 1 : NULL;
	}
	return 0;
}

static bool method_has_body(const char *m)
{
	return strcmp(m, "POST") == 0 || strcmp(m, "PATCH") == 0 || strcmp(m, "PUT") == 0;
}

static enum MHD_Result finish(struct sora_admin_api *api, struct MHD_Connection *mhd,
			      struct request *req, const char *url, const char *method)
{
	struct call c;
	char path[MAX_PATH];
	struct sora_error err;
	const char *error;

	memset(&c, 0, sizeof(c));
	c.api = api;
	c.mhd = mhd;
	c.method = method;
	if (split_path(url, path, sizeof(path), &c) < 0)
		return send_error(api, mhd, req, method, url, MHD_HTTP_NOT_FOUND,
				  "no such endpoint", NULL);
	if (req->len > 0) {
		if (!method_has_body(method))
			return send_error(api, mhd, req, method, url, MHD_HTTP_BAD_REQUEST,
					  "this method takes no body", NULL);
		if (sora_json_body_check(req->body, req->len, &error) < 0)
			return send_error(api, mhd, req, method, url, MHD_HTTP_BAD_REQUEST, error,
					  NULL);
		c.in = cJSON_ParseWithLength(req->body, req->len);
		if (c.in == NULL || !cJSON_IsObject(c.in)) {
			cJSON_Delete(c.in);
			return send_error(api, mhd, req, method, url, MHD_HTTP_BAD_REQUEST,
					  "the body must be a JSON object", NULL);
		}
	}
	if (sora_db_acquire(api->pool, SORA_DB_PRIMARY, ACQUIRE_TIMEOUT_MS, &c.db, &err) != 0) {
		sora_warn(NULL, "%s: %s", api->name, err.msg);
		c.db = NULL;
	}
	if (c.db == NULL && !(c.nseg == 1 && strcmp(c.seg[0], "health") == 0)) {
		fail(&c, MHD_HTTP_SERVICE_UNAVAILABLE,
		     "temporarily unavailable (database), try again");
	} else if (dispatch(&c) < 0) {
		cJSON_Delete(c.out);
		c.out = NULL;
	}
	sora_db_release(&c.db);
	if (c.in != NULL) {
		wipe_str(&c, "password");
		cJSON_Delete(c.in);
	}
	if (c.out == NULL)
		return send_error(api, mhd, req, method, url, c.status, c.error, c.allow);
	return send_json(api, mhd, req, method, url, c.status, c.out, NULL);
}

/* "Bearer <key>", compared through hashes of equal length so the time does
 * not depend on how much of the key was right, nor on its length. */
static bool authorized(struct sora_admin_api *api, struct MHD_Connection *mhd)
{
	const char *h = MHD_lookup_connection_value(mhd, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);
	unsigned char got[crypto_generichash_BYTES];
	const char *token;
	bool ok;

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	token = h + 7;
	while (*token == ' ')
		token++;
	crypto_generichash(got, sizeof(got), (const unsigned char *)token, strlen(token),
			   NULL, 0);
	ok = sodium_memcmp(got, api->key_hash, sizeof(got)) == 0;
	sodium_memzero(got, sizeof(got));
	return ok;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *mhd, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **req_cls)
{
	struct sora_admin_api *api = cls;
	struct request *req = *req_cls;

	if (req == NULL) {
		const char *cl;
		uint64_t n;

		req = calloc(1, sizeof(*req));
		if (req == NULL)
			return MHD_NO;
		clock_gettime(CLOCK_MONOTONIC, &req->start);
		*req_cls = req;
		/* Answered before the body is read: a stranger's upload is
		 * never buffered. */
		if (!authorized(api, mhd))
			return send_error(api, mhd, req, method, url, MHD_HTTP_UNAUTHORIZED,
					  "missing or invalid API key", NULL);
		cl = MHD_lookup_connection_value(mhd, MHD_HEADER_KIND,
						 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl != NULL && (sora_str_to_u64(sora_str_c(cl), UINT64_MAX, &n) < 0 ||
				   n > SORA_ADMIN_API_MAX_BODY))
			return send_error(api, mhd, req, method, url,
					  MHD_HTTP_CONTENT_TOO_LARGE, "request body too large", NULL);
		return MHD_YES;
	}
	if (req->answered) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (req->too_big || req->len + n > SORA_ADMIN_API_MAX_BODY) {
			/* A chunked body past the cap: discarded, then 413. */
			req->too_big = true;
			return MHD_YES;
		}
		if (req->len + n > req->cap) {
			size_t cap = req->cap == 0 ? 4096 : req->cap;
			char *p;

			while (cap < req->len + n)
				cap *= 2;
			if (cap > SORA_ADMIN_API_MAX_BODY)
				cap = SORA_ADMIN_API_MAX_BODY;
			p = malloc(cap);
			if (p == NULL)
				return MHD_NO;
			if (req->body != NULL) {
				memcpy(p, req->body, req->len);
				/* The body may hold a password. */
				sodium_memzero(req->body, req->cap);
				free(req->body);
			}
			req->body = p;
			req->cap = cap;
		}
		memcpy(req->body + req->len, upload_data, n);
		req->len += n;
		return MHD_YES;
	}
	if (req->too_big)
		return send_error(api, mhd, req, method, url, MHD_HTTP_CONTENT_TOO_LARGE,
				  "request body too large", NULL);
	return finish(api, mhd, req, url, method);
}

static void completed(void *cls, struct MHD_Connection *mhd, void **req_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct request *req = *req_cls;

	if (req == NULL)
		return;
	*req_cls = NULL;
	if (req->body != NULL) {
		sodium_memzero(req->body, req->cap);
		free(req->body);
	}
	free(req);
}

/* Decodes %XX in place, except %00, which stays as the three characters:
 * a NUL would silently cut the path or value (MHD hands them on as C
 * strings), so "a@b.c%00x" stays an invalid address instead of becoming
 * "a@b.c". '+' stays '+' (it is a valid address character). */
static size_t unescape(void *cls, struct MHD_Connection *mhd, char *s)
{
	char *r = s, *w = s;

	while (*r != '\0') {
		int hi, lo;

		if (r[0] == '%' && (hi = sora_hex_value((unsigned char)r[1])) >= 0 &&
		    (lo = sora_hex_value((unsigned char)r[2])) >= 0 && (hi | lo) != 0) {
			*w++ = (char)(hi * 16 + lo);
			r += 3;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
	return (size_t)(w - s);
}

static char *read_pem(const char *path, const char *what, const char **error_r)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t len;

	if (f == NULL) {
		sora_error(NULL, "http api: cannot open %s %s: %s", what, path, strerror(errno));
		*error_r = "cannot read the TLS certificate or key";
		return NULL;
	}
	buf = malloc(MAX_PEM + 1);
	if (buf == NULL) {
		fclose(f);
		*error_r = "out of memory";
		return NULL;
	}
	len = fread(buf, 1, MAX_PEM + 1, f);
	fclose(f);
	if (len == 0 || len > MAX_PEM) {
		sora_error(NULL, "http api: %s %s is empty or larger than %d bytes", what, path,
			   MAX_PEM);
		sodium_memzero(buf, MAX_PEM + 1);
		free(buf);
		*error_r = "cannot read the TLS certificate or key";
		return NULL;
	}
	buf[len] = '\0';
	return buf;
}

int sora_admin_api_start(const struct sora_config *cfg, const struct sora_server_config *srv,
			 struct sora_admin_api **api_r, const char **error_r)
{
	struct sora_database_config dbcfg = cfg->database;
	struct sora_httpd_params params = {
		.addr = srv->addr,
		.allowed_hosts = &srv->allowed_hosts,
		.handler = handle,
		.completed = completed,
		.unescape = unescape,
		.threads = API_THREADS,
		.connection_limit = CONNECTION_LIMIT,
		.per_ip_connection_limit = PER_IP_CONNECTION_LIMIT,
		.timeout_s = CONNECTION_TIMEOUT_S,
	};
	struct sora_admin_api *api;
	struct sora_error err;
	char *cert = NULL, *key = NULL;
	int ret = -1;

	*api_r = NULL;
	if (srv->api_key == NULL || srv->api_key[0] == '\0') {
		*error_r = "api_key is required";
		return -1;
	}
	if (sodium_init() < 0) {
		*error_r = "libsodium initialisation failed";
		return -1;
	}
	api = calloc(1, sizeof(*api));
	if (api == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	snprintf(api->name, sizeof(api->name), "http api [servers.%s]", srv->name);
	params.name = "http api";
	params.handler_cls = api;
	params.completed_cls = api;
	crypto_generichash(api->key_hash, sizeof(api->key_hash),
			   (const unsigned char *)srv->api_key, strlen(srv->api_key), NULL, 0);
	api->requests = sora_metric_counter("http_api_requests_total",
					    "Requests to the HTTP admin API by method and status.",
					    "method,status");
	/* Its own small pool: API calls never take the protocols' connections. */
	dbcfg.max_conns = API_THREADS;
	dbcfg.min_conns = 0;
	if (sora_db_pool_create(&dbcfg, "sora-http-api", &api->pool, &err) != 0) {
		sora_error(NULL, "%s: %s", api->name, err.msg);
		*error_r = "cannot create the database pool";
		goto out;
	}
	if (srv->tls) {
		cert = read_pem(srv->tls_cert_file, "tls_cert_file", error_r);
		if (cert == NULL)
			goto out;
		key = read_pem(srv->tls_key_file, "tls_key_file", error_r);
		if (key == NULL)
			goto out;
		params.tls_cert_pem = cert;
		params.tls_key_pem = key;
	}
	if (sora_httpd_start(&params, &api->httpd, error_r) < 0)
		goto out;
	sora_info(NULL, "%s: listening on %s (port %d)%s, %zu allowed host range(s)%s", api->name,
		  srv->addr, sora_httpd_port(api->httpd), srv->tls ? " with TLS" : "",
		  srv->allowed_hosts.count, srv->allowed_hosts.count == 0 ? " (loopback only)" : "");
	*api_r = api;
	api = NULL;
	ret = 0;
out:
	if (cert != NULL) {
		sodium_memzero(cert, strlen(cert));
		free(cert);
	}
	if (key != NULL) {
		sodium_memzero(key, strlen(key));
		free(key);
	}
	sora_admin_api_stop(&api);
	return ret;
}

int sora_admin_api_port(const struct sora_admin_api *api)
{
	return sora_httpd_port(api->httpd);
}

void sora_admin_api_stop(struct sora_admin_api **api)
{
	struct sora_admin_api *a = *api;

	if (a == NULL)
		return;
	*api = NULL;
	sora_httpd_stop(&a->httpd);
	sora_db_pool_destroy(&a->pool);
	sodium_memzero(a->key_hash, sizeof(a->key_hash));
	free(a);
}
