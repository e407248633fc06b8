/* Verifying credentials: see login.h. Moved out of imap-preauth.c so that
 * IMAP and POP3 (and sora-proxy's front ends) share one implementation of
 * who may log in how. */
#include "common/session/login.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/db/accounts.h"
#include "common/db/db.h"
#include "common/metrics/metrics.h"
#include "common/net/workers.h"

#define LOGIN_DB_ACQUIRE_MS 10000

struct login_job {
	struct sora_db_pool *pool;
	const char *protocol;
	const char *mechanism;
	sora_login_done_cb *done;
	void *ctx;
	char client[96];
	/* Secrets live in sodium_malloc'd memory, wiped on free. */
	char *secret;            /* authzid \0 authcid \0 password */
	size_t authzid_len, authcid_len, password_len;
	bool master_sasl_network;
	/* Config, borrowed (lives as long as the server). */
	const struct sora_server_config *srv;
	/* Outcome. */
	bool ok;
	bool temporary;
	bool master;
	struct sora_account_ref ref;
	struct sora_error err;
};

static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;
static struct sora_metric *m_logins;

static void metrics_init(void)
{
	m_logins = sora_metric_counter("sora_logins_total", "Login attempts by protocol and outcome.",
				       "protocol,result");
}

static void count(const char *protocol, const char *result)
{
	pthread_once(&metrics_once, metrics_init);
	sora_metric_inc(sora_metric_with(m_logins, protocol, result));
}

static bool secret_eq(const char *want, const char *got, size_t got_len)
{
	size_t n = want != NULL ? strlen(want) : 0;

	if (want == NULL || n == 0 || n != got_len)
		return false;
	return sodium_memcmp(want, got, n) == 0;
}

/* Finds the account of a login name: as given, then without "+detail". */
static int login_lookup(struct sora_db_conn *db, struct sora_str name, struct sora_account_ref *ref,
			struct sora_str *found_r, struct sora_error *err)
{
	const char *at, *plus;
	char stripped[SORA_LOGIN_NAME_SIZE];
	int ret;

	*found_r = name;
	ret = sora_accounts_lookup(db, name, ref, err);
	if (ret == 0 || err->cls != SORA_ERR_NOT_FOUND)
		return ret;
	at = memrchr(name.p, '@', name.len);
	plus = at != NULL ? memchr(name.p, '+', (size_t)(at - name.p)) : NULL;
	if (plus == NULL || plus == name.p || name.len >= sizeof(stripped))
		return ret;
	memcpy(stripped, name.p, (size_t)(plus - name.p));
	memcpy(stripped + (plus - name.p), at, name.len - (size_t)(at - name.p));
	stripped[(plus - name.p) + (name.len - (size_t)(at - name.p))] = '\0';
	ret = sora_accounts_lookup(db, sora_str_c(stripped), ref, err);
	return ret;
}

/* A refused master login costs what an unknown user's does (one bcrypt
 * verification against a dummy hash), so response times do not tell
 * whether a name is the master identity or the network may use it. */
static void equalise_timing(struct sora_db_conn *db, const char *password, size_t len)
{
	struct sora_account_ref ref;
	struct sora_error err;
	bool match;

	sora_accounts_authenticate(db, sora_str_make("", 0), password, len, &match, &ref, &err);
}

static enum sora_job_status login_work(struct sora_job *job, void *arg)
{
	struct login_job *j = arg;
	struct sora_db_conn *db = NULL;
	struct sora_str authzid = sora_str_make(j->secret, j->authzid_len);
	struct sora_str authcid = sora_str_make(j->secret + j->authzid_len + 1, j->authcid_len);
	const char *password = j->secret + j->authzid_len + 1 + j->authcid_len + 1;
	const char *star;
	struct sora_str found;
	bool match = false;

	if (sora_db_acquire(j->pool, SORA_DB_PRIMARY, LOGIN_DB_ACQUIRE_MS, &db, &j->err) != 0) {
		j->temporary = true;
		return SORA_JOB_DONE;
	}
	if (authzid.len > 0 && !sora_str_ieq(authzid, authcid)) {
		/* Acting for another user: only the master SASL identity, with
		 * its password, from the networks allowed to use it. */
		if (j->master_sasl_network && j->srv->master_sasl_username != NULL &&
		    sora_str_eq(authcid, sora_str_c(j->srv->master_sasl_username)) &&
		    secret_eq(j->srv->master_sasl_password, password, j->password_len)) {
			if (login_lookup(db, authzid, &j->ref, &found, &j->err) == 0)
				j->ok = j->master = true;
			else if (j->err.cls != SORA_ERR_NOT_FOUND)
				j->temporary = true;
		} else {
			equalise_timing(db, password, j->password_len);
		}
		goto out;
	}
	star = memrchr(authcid.p, '*', authcid.len);
	if (star != NULL && j->srv->master_username != NULL &&
	    sora_str_eq(sora_str_make(star + 1, authcid.len - (size_t)(star - authcid.p) - 1),
			sora_str_c(j->srv->master_username))) {
		/* "user*master": the master password logs in as user. */
		if (secret_eq(j->srv->master_password, password, j->password_len)) {
			if (login_lookup(db, sora_str_make(authcid.p, (size_t)(star - authcid.p)), &j->ref,
					 &found, &j->err) == 0)
				j->ok = j->master = true;
			else if (j->err.cls != SORA_ERR_NOT_FOUND)
				j->temporary = true;
		} else {
			equalise_timing(db, password, j->password_len);
		}
		goto out;
	}
	/* An alias or "+detail" address: find the credential first (cheap),
	 * then verify against the address that exists. */
	if (login_lookup(db, authcid, &j->ref, &found, &j->err) != 0) {
		if (j->err.cls != SORA_ERR_NOT_FOUND) {
			j->temporary = true;
			goto out;
		}
		found = authcid;
	} else {
		/* The credential as stored (the "+detail"-less one when the
		 * detail was dropped). */
		found = sora_str_c(j->ref.address);
	}
	if (sora_accounts_authenticate(db, found, password, j->password_len, &match, &j->ref,
				       &j->err) != 0) {
		j->temporary = j->err.cls == SORA_ERR_TEMPORARY;
		goto out;
	}
	j->ok = match;
out:
	sora_db_release(&db);
	return SORA_JOB_DONE;
}

static void login_job_free(struct login_job *j)
{
	if (j->secret != NULL)
		sodium_free(j->secret);
	free(j);
}

static void login_done(struct sora_conn *c, void *arg)
{
	struct login_job *j = arg;
	struct sora_login login;
	const char *client = j->client[0] != '\0' ? j->client : sora_conn_peer(c);
	enum sora_login_result result;

	if (sora_conn_closing(c)) {
		j->done(c, SORA_LOGIN_FAILED, NULL, j->ctx);
		login_job_free(j);
		return;
	}
	count(j->protocol, j->ok ? (j->master ? "master" : "success")
				 : (j->temporary ? "tempfail" : "failed"));
	if (j->ok) {
		memset(&login, 0, sizeof(login));
		login.account_id = j->ref.account_id;
		sora_strlcpy(login.user, j->ref.primary_address, sizeof(login.user));
		sora_strlcpy(login.login, j->ref.address, sizeof(login.login));
		login.master = j->master;
		login.mechanism = j->mechanism;
		sora_conn_set_user(c, login.user);
		if (j->master)
			sora_warn(sora_conn_log_ctx(c), "master login as %s from %s (%s)", login.user,
				  client, j->mechanism);
		else
			sora_info(sora_conn_log_ctx(c), "login as %s from %s (%s)", login.user, client,
				  j->mechanism);
		j->done(c, SORA_LOGIN_OK, &login, j->ctx);
		login_job_free(j);
		return;
	}
	if (j->temporary) {
		sora_warn(sora_conn_log_ctx(c), "login failed temporarily: %s", j->err.msg);
		result = SORA_LOGIN_TEMPFAIL;
	} else {
		if (j->err.cls == SORA_ERR_PERMANENT)
			sora_error(sora_conn_log_ctx(c), "login failed: %s", j->err.msg);
		sora_info(sora_conn_log_ctx(c), "authentication failed from %s (%s)", client,
			  j->mechanism);
		result = SORA_LOGIN_FAILED;
	}
	j->done(c, result, NULL, j->ctx);
	login_job_free(j);
}

/* Decided on the host connected to us (with a PROXY header: the proxy,
 * not the client it speaks for). */
static bool master_sasl_network(struct sora_conn *c)
{
	const struct sora_server_config *srv = sora_conn_server(c);
	const struct sora_ip *ip = sora_conn_link_ip(c);

	if (srv->master_sasl_allowed_networks.count == 0)
		return sora_conn_link_trusted(c);
	return ip == NULL || sora_cidr_list_match(&srv->master_sasl_allowed_networks, ip);
}

int sora_login_start(struct sora_conn *c, const struct sora_login_request *req,
		     sora_login_done_cb *done, void *ctx)
{
	struct login_job *j = calloc(1, sizeof(*j));
	size_t n = req->authzid.len + req->authcid.len + req->password.len + 3;

	if (j == NULL || (j->secret = sodium_malloc(n)) == NULL) {
		free(j);
		return -1;
	}
	j->protocol = req->protocol;
	j->mechanism = req->mechanism;
	j->pool = req->pool;
	j->done = done;
	j->ctx = ctx;
	if (req->client != NULL)
		sora_strlcpy(j->client, req->client, sizeof(j->client));
	j->srv = sora_conn_server(c);
	j->master_sasl_network = master_sasl_network(c);
	memcpy(j->secret, req->authzid.p, req->authzid.len);
	j->secret[req->authzid.len] = '\0';
	memcpy(j->secret + req->authzid.len + 1, req->authcid.p, req->authcid.len);
	j->secret[req->authzid.len + 1 + req->authcid.len] = '\0';
	memcpy(j->secret + req->authzid.len + req->authcid.len + 2, req->password.p,
	       req->password.len);
	j->secret[n - 1] = '\0';
	j->authzid_len = req->authzid.len;
	j->authcid_len = req->authcid.len;
	j->password_len = req->password.len;
	if (sora_job_submit(c, login_work, login_done, j) < 0) {
		login_job_free(j);
		return -1;
	}
	return 0;
}

bool sora_login_plaintext_allowed(struct sora_conn *c)
{
	return sora_conn_is_tls(c) || sora_conn_server(c)->insecure_auth ||
	       sora_conn_link_trusted(c);
}

bool sora_login_name_ok(struct sora_str s)
{
	return s.len > 0 && s.len < SORA_LOGIN_NAME_SIZE && memchr(s.p, '\0', s.len) == NULL;
}

int sora_sasl_plain_decode(struct sora_str b64, struct sora_buf *buf, struct sora_str *authzid_r,
			   struct sora_str *authcid_r, struct sora_str *password_r)
{
	size_t len = 0;
	const char *p, *nul1, *nul2, *end;

	if (b64.len == 0 || b64.len > 4096 || sora_buf_reserve(buf, b64.len) < 0)
		return -1;
	if (sodium_base642bin((unsigned char *)buf->data, b64.len, b64.p, b64.len, NULL, &len,
			      NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
		return -1;
	buf->len = len;
	p = buf->data;
	end = p + len;
	nul1 = memchr(p, '\0', len);
	if (nul1 == NULL)
		return -1;
	nul2 = memchr(nul1 + 1, '\0', (size_t)(end - nul1 - 1));
	if (nul2 == NULL || memchr(nul2 + 1, '\0', (size_t)(end - nul2 - 1)) != NULL)
		return -1;
	*authzid_r = sora_str_make(p, (size_t)(nul1 - p));
	*authcid_r = sora_str_make(nul1 + 1, (size_t)(nul2 - nul1 - 1));
	*password_r = sora_str_make(nul2 + 1, (size_t)(end - nul2 - 1));
	return authcid_r->len > 0 ? 0 : -1;
}
