/* Credential checks: see login-check.h. */
#include "common/session/login-check.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "common/config/config.h"
#include "common/db/db.h"

#define LOGIN_DB_ACQUIRE_MS 10000

static bool secret_eq(const char *want, struct sora_str got)
{
	size_t n = want != NULL ? strlen(want) : 0;

	if (want == NULL || n == 0 || n != got.len)
		return false;
	return sodium_memcmp(want, got.p, n) == 0;
}

static void equalise(struct sora_db_conn *db, struct sora_str password)
{
	struct sora_account_ref ref;
	struct sora_error err;
	bool match;

	sora_accounts_authenticate(db, sora_str_make("", 0), password.p, password.len, &match, &ref,
				   &err);
}

/* The account of a login name: as given, then without "+detail". */
static int lookup(struct sora_db_conn *db, struct sora_str name, struct sora_account_ref *ref,
		  struct sora_error *err)
{
	const char *at, *plus;
	char stripped[SORA_ACCOUNTS_ADDRESS_SIZE];
	int ret = sora_accounts_lookup(db, name, ref, err);

	if (ret == 0 || err->cls != SORA_ERR_NOT_FOUND)
		return ret;
	at = memrchr(name.p, '@', name.len);
	plus = at != NULL ? memchr(name.p, '+', (size_t)(at - name.p)) : NULL;
	if (plus == NULL || plus == name.p || name.len >= sizeof(stripped))
		return ret;
	snprintf(stripped, sizeof(stripped), "%.*s%.*s", (int)(plus - name.p), name.p,
		 (int)(name.len - (size_t)(at - name.p)), at);
	return sora_accounts_lookup(db, sora_str_c(stripped), ref, err);
}

static void master_as(struct sora_db_conn *db, struct sora_str user,
		      struct sora_login_result *res)
{
	if (lookup(db, user, &res->ref, &res->err) == 0)
		res->ok = res->master = true;
	else if (res->err.cls != SORA_ERR_NOT_FOUND)
		res->temporary = true;
}

void sora_login_check(const struct sora_login_request *req, struct sora_login_result *res)
{
	const struct sora_server_config *srv = req->srv;
	struct sora_db_conn *db = NULL;
	struct sora_str authzid = req->authzid, authcid = req->authcid;
	const char *star;
	bool match = false;

	memset(res, 0, sizeof(*res));
	if (sora_db_acquire(req->pool, SORA_DB_READ, LOGIN_DB_ACQUIRE_MS, &db, &res->err) != 0) {
		res->temporary = true;
		return;
	}
	if (authzid.len > 0 && !sora_str_ieq(authzid, authcid)) {
		if (req->master_sasl_network && srv->master_sasl_username != NULL &&
		    sora_str_eq(authcid, sora_str_c(srv->master_sasl_username)) &&
		    secret_eq(srv->master_sasl_password, req->password))
			master_as(db, authzid, res);
		else
			equalise(db, req->password);
		goto out;
	}
	star = memrchr(authcid.p, '*', authcid.len);
	if (star != NULL && srv->master_username != NULL &&
	    sora_str_eq(sora_str_make(star + 1, authcid.len - (size_t)(star - authcid.p) - 1),
			sora_str_c(srv->master_username))) {
		if (secret_eq(srv->master_password, req->password))
			master_as(db, sora_str_make(authcid.p, (size_t)(star - authcid.p)), res);
		else
			equalise(db, req->password);
		goto out;
	}
	{
		struct sora_str found = authcid;

		if (lookup(db, authcid, &res->ref, &res->err) == 0)
			found = sora_str_c(res->ref.address);
		else if (res->err.cls != SORA_ERR_NOT_FOUND) {
			res->temporary = true;
			goto out;
		}
		if (sora_accounts_authenticate(db, found, req->password.p, req->password.len, &match,
					       &res->ref, &res->err) != 0) {
			res->temporary = res->err.cls == SORA_ERR_TEMPORARY;
			goto out;
		}
		res->ok = match;
	}
out:
	sora_db_release(&db);
}

bool sora_login_master_network(struct sora_conn *c)
{
	const struct sora_server_config *srv = sora_conn_server(c);
	const struct sora_ip *ip = sora_conn_link_ip(c);

	if (srv->master_sasl_allowed_networks.count == 0)
		return sora_conn_link_trusted(c);
	return ip == NULL || sora_cidr_list_match(&srv->master_sasl_allowed_networks, ip);
}
