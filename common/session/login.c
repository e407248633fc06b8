/* Verifying credentials: see login.h. Moved out of imap-preauth.c so that
 * IMAP and POP3 (and sora-proxy's front ends) share one implementation of
 * who may log in how. */
#include "common/session/login.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/auth/ratelimit-db.h"
#include "common/auth/ratelimit.h"
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
	/* Rate limiting (NULL rl: off or exempt for this attempt). */
	struct sora_ratelimit *rl;
	char ip[64];             /* "" without an address */
	char ukey[SORA_RL_KEY_MAX];
	bool rl_need_db;
	int64_t delay_ms;        /* progressive delay applied before the job */
	/* Outcome. */
	bool ok;
	bool temporary;
	bool master;
	bool blocked;            /* refused by the limiter, answered as FAILED */
	bool rl_db_down;         /* refused by the limiter: database unavailable */
	bool rl_db_error;        /* this job found the database failing */
	struct sora_rl_db_result rl_res;
	struct sora_account_ref ref;
	struct sora_error err;
};

static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;
static struct sora_metric *m_logins, *m_auth_attempts, *m_auth_blocks, *m_auth_delayed,
	*m_auth_blocked_keys;
static struct sora_metric_series *m_rl_db_errors;

/* Recent cost of verifying a password (ms, an average over the last
 * attempts): a refused blocked attempt waits that long too, so its reply
 * takes as long as a wrong password's. */
static atomic_int_fast64_t verify_cost_ms;

static void metrics_init(void)
{
	m_logins = sora_metric_counter("sora_logins_total", "Login attempts by protocol and outcome.",
				       "protocol,result");
	m_auth_attempts = sora_metric_counter("sora_auth_attempts_total",
					      "Authentication attempts by protocol and outcome "
					      "(success, master, failed, blocked, tempfail).",
					      "protocol,result");
	m_auth_blocks = sora_metric_counter("sora_auth_blocks_total",
					    "Blocks imposed by the authentication rate limiter of "
					    "this node, by protocol and key kind (ip, username).",
					    "protocol,kind");
	m_auth_delayed = sora_metric_counter("sora_auth_delayed_total",
					     "Authentication attempts held back by a progressive "
					     "delay, by protocol.", "protocol");
	m_auth_blocked_keys = sora_metric_gauge("sora_auth_blocked_keys",
						"Addresses and user names the rate limiter holds "
						"as blocked in memory, by protocol.", "protocol");
	m_rl_db_errors = sora_metric_with(sora_metric_counter(
		"sora_auth_ratelimit_db_errors_total",
		"Database failures seen by the authentication rate limiter (each starts or "
		"extends a db_error_threshold of refused logins).", ""));
}

static void count(const char *protocol, const char *result)
{
	pthread_once(&metrics_once, metrics_init);
	sora_metric_inc(sora_metric_with(m_logins, protocol, result));
}

static void count_auth(const char *protocol, const char *result)
{
	pthread_once(&metrics_once, metrics_init);
	sora_metric_inc(sora_metric_with(m_auth_attempts, protocol, result));
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

	uint64_t verify_start;

	if (sora_db_acquire(j->pool, SORA_DB_PRIMARY, LOGIN_DB_ACQUIRE_MS, &db, &j->err) != 0) {
		j->temporary = true;
		goto limiter;
	}
	if (j->rl != NULL && j->rl_need_db) {
		/* Another node may have blocked a key since we last asked. */
		if (sora_rl_db_read(j->rl, db, j->ip[0] ? j->ip : NULL, j->ukey, sora_rl_now(),
				    &j->rl_res, &j->err) < 0) {
			j->temporary = j->rl_db_error = true;
			goto out;
		}
		if (j->rl_res.blocked) {
			/* Refused without hashing the password. */
			j->blocked = true;
			goto out;
		}
	}
	verify_start = sora_rl_now();
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
	{
		int64_t took = (int64_t)(sora_rl_now() - verify_start);
		int64_t avg = atomic_load(&verify_cost_ms);

		atomic_store(&verify_cost_ms, avg + (took - avg) / 8);
	}
limiter:
	if (j->rl != NULL && db != NULL && !j->temporary) {
		uint64_t now = sora_rl_now();

		if (j->ok) {
			if (sora_rl_db_success(j->rl, db, j->ukey, now, &j->err) < 0)
				j->rl_db_error = true;
		} else if (sora_rl_db_failure(j->rl, db, j->ip[0] ? j->ip : NULL, j->ukey,
					      j->protocol, now, &j->rl_res, &j->err) < 0) {
			j->rl_db_error = true;
		}
		sora_rl_db_prune(db, now);
	}
	if (j->rl != NULL && j->temporary)
		j->rl_db_error = true;
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

/* Answers the attempt (loop thread): the caller's done, counted and logged. */
static void login_finish(struct sora_conn *c, struct login_job *j)
{
	struct sora_login login;
	const char *client = j->client[0] != '\0' ? j->client : sora_conn_peer(c);
	enum sora_login_result result;

	if (sora_conn_closing(c)) {
		j->done(c, SORA_LOGIN_FAILED, NULL, j->ctx);
		login_job_free(j);
		return;
	}
	/* A blocked attempt is a failed login to the old counter and the
	 * client alike. */
	count(j->protocol, j->ok ? (j->master ? "master" : "success")
				 : (j->temporary ? "tempfail" : "failed"));
	count_auth(j->protocol, j->ok ? (j->master ? "master" : "success")
				      : j->temporary ? "tempfail" : j->blocked ? "blocked" : "failed");
	if (j->ok) {
		memset(&login, 0, sizeof(login));
		login.account_id = j->ref.account_id;
		sora_strlcpy(login.user, j->ref.primary_address, sizeof(login.user));
		sora_strlcpy(login.login, j->ref.address, sizeof(login.login));
		login.master = j->master;
		login.mechanism = j->mechanism;
		sora_conn_set_user(c, login.user);
		if (j->master) {
			char link[64] = "unix";
			const struct sora_ip *lip = sora_conn_link_ip(c);

			if (lip != NULL)
				sora_ip_format(lip, link, sizeof(link));
			sora_notice(sora_conn_log_ctx(c), "master login as %s from %s via %s (%s)",
				    login.user, client, link, j->mechanism);
		} else {
			sora_info(sora_conn_log_ctx(c), "login as %s from %s (%s)", login.user, client,
				  j->mechanism);
		}
		j->done(c, SORA_LOGIN_OK, &login, j->ctx);
		login_job_free(j);
		return;
	}
	if (j->rl_db_down) {
		sora_info(sora_conn_log_ctx(c), "login refused from %s (%s): the rate limiter's "
			  "database is unavailable (fail-closed)", client, j->mechanism);
		result = SORA_LOGIN_TEMPFAIL;
	} else if (j->temporary) {
		sora_warn(sora_conn_log_ctx(c), "login failed temporarily: %s", j->err.msg);
		result = SORA_LOGIN_TEMPFAIL;
	} else if (j->blocked) {
		sora_info(sora_conn_log_ctx(c), "authentication refused from %s (%s): rate limited "
			  "(%s blocked)", client, j->mechanism,
			  j->rl_res.blocked_kind == SORA_RL_IP ? "address" : "user name");
		result = SORA_LOGIN_FAILED;
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

static void login_finish_deferred(struct sora_conn *c, void *arg)
{
	login_finish(c, arg);
}

/* A refused blocked attempt waits as long as verifying a password takes,
 * so its reply is not faster than a wrong password's. */
static void answer_blocked(struct sora_conn *c, struct login_job *j, int64_t extra_ms)
{
	int64_t ms = extra_ms + atomic_load(&verify_cost_ms);

	if (sora_conn_defer(c, ms, login_finish_deferred, j) < 0)
		login_finish(c, j);
}

static void rl_after_job(struct sora_conn *c, struct login_job *j)
{
	const char *kinds[2] = { "ip", "username" };
	uint64_t now = sora_rl_now();

	pthread_once(&metrics_once, metrics_init);
	if (j->rl_db_error) {
		sora_metric_inc(m_rl_db_errors);
		if (sora_rl_db_error(j->rl, now))
			sora_warn(sora_conn_log_ctx(c), "authentication rate limiter: database "
				  "unavailable (%s); refusing logins for %lld ms before trying it "
				  "again", j->err.msg,
				  (long long)sora_ratelimit_config(j->rl)->db_error_threshold_ms);
	}
	for (int k = 0; k < 2; k++) {
		if (!j->rl_res.new_block[k] || j->blocked)
			continue;
		sora_metric_inc(sora_metric_with(m_auth_blocks, j->protocol, kinds[k]));
		char shown[SORA_RL_KEY_MAX * 2];

		sora_log_escape(sora_str_c(k == SORA_RL_IP ? j->ip : j->ukey), shown, sizeof(shown));
		sora_notice(sora_conn_log_ctx(c), "authentication rate limiter: %s %s blocked "
			    "after %d failures", k == SORA_RL_IP ? "address" : "user name", shown,
			    j->rl_res.failures[k]);
	}
	sora_metric_set(sora_metric_with(m_auth_blocked_keys, j->protocol),
			(double)sora_rl_blocked_count(j->rl, now));
}

static void login_done(struct sora_conn *c, void *arg)
{
	struct login_job *j = arg;

	if (j->rl != NULL)
		rl_after_job(c, j);
	if (j->blocked && !sora_conn_closing(c)) {
		answer_blocked(c, j, 0);
		return;
	}
	login_finish(c, j);
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

/* The progressive delay is over: verify now. */
static void login_delayed_start(struct sora_conn *c, void *arg)
{
	struct login_job *j = arg;

	if (sora_conn_closing(c) || sora_job_submit(c, login_work, login_done, j) < 0) {
		/* Closing: done only releases the caller's state. A pool that
		 * stops is a temporary failure. */
		j->temporary = true;
		login_finish(c, j);
	}
}

enum rl_action { RL_SUBMIT, RL_DEFERRED, RL_ERROR };

/* The limiter's word before any work (loop thread, no I/O): exempt or
 * allowed now (submit), refused or delayed (answered or started later
 * from a timer on the connection; input stays paused meanwhile). */
static enum rl_action rl_start(struct sora_conn *c, const struct sora_login_request *req,
			       struct login_job *j)
{
	const struct sora_ip *ip = sora_conn_peer_ip(c);
	struct sora_rl_check chk;
	bool failed;
	struct sora_ratelimit *rl = sora_ratelimit_for_server(j->srv, &failed);

	if (failed || sora_conn_deferred(c) || sora_conn_closing(c))
		return RL_ERROR;
	/* Exempt: our own networks (proxies, webmail), and a master SASL
	 * login from the networks that may use it (a proxy logging in on a
	 * client's behalf: the proxy has limited that client already). */
	if (rl == NULL || sora_conn_peer_trusted(c) ||
	    (req->authzid.len > 0 && !sora_str_ieq(req->authzid, req->authcid) &&
	     j->master_sasl_network))
		return RL_SUBMIT;
	j->rl = rl;
	if (ip != NULL)
		sora_ip_format(ip, j->ip, sizeof(j->ip));
	sora_rl_user_key(req->authcid.p, req->authcid.len, j->ukey);
	sora_rl_check(rl, j->ip[0] ? j->ip : NULL, j->ukey, sora_rl_now(), &chk);
	j->rl_need_db = chk.need_db;
	j->delay_ms = chk.delay_ms;
	if (chk.delay_ms > 0) {
		pthread_once(&metrics_once, metrics_init);
		sora_metric_inc(sora_metric_with(m_auth_delayed, j->protocol));
	}
	switch (chk.verdict) {
	case SORA_RL_ALLOW:
		if (chk.delay_ms <= 0)
			return RL_SUBMIT;
		sora_conn_pause(c);
		if (sora_conn_defer(c, chk.delay_ms, login_delayed_start, j) < 0)
			return RL_ERROR;
		return RL_DEFERRED;
	case SORA_RL_BLOCKED:
		/* Known blocked: no database, no hashing; the same reply as
		 * a wrong password, after the same delay. */
		j->blocked = true;
		j->rl_res.blocked_kind = chk.blocked_kind;
		sora_conn_pause(c);
		if (sora_conn_defer(c, chk.delay_ms + atomic_load(&verify_cost_ms),
				    login_finish_deferred, j) < 0)
			return RL_ERROR;
		return RL_DEFERRED;
	case SORA_RL_DB_DOWN:
		j->rl_db_down = j->temporary = true;
		sora_conn_pause(c);
		if (sora_conn_defer(c, 0, login_finish_deferred, j) < 0)
			return RL_ERROR;
		return RL_DEFERRED;
	}
	return RL_SUBMIT;
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
	switch (rl_start(c, req, j)) {
	case RL_SUBMIT:
		break;
	case RL_DEFERRED:
		return 0;
	case RL_ERROR:
		login_job_free(j);
		return -1;
	}
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
