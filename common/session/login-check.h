/* The credential check of the pre-authentication front ends, for the
 * protocols that are not IMAP (ManageSieve now; imap-preauth.c keeps its
 * own copy of the same rules and could move here).
 *
 * Rules (the same as imap-front.h): any credential address of an account
 * (aliases; "+detail" dropped when the address as given is unknown);
 * "user*master" with master_password when master_username is set; SASL
 * with authzid = user and authcid = master_sasl_username from
 * master_sasl_allowed_networks (else trusted_networks), decided on the
 * host that connected (with a PROXY header: the proxy, not the client).
 * Every refusal costs one bcrypt verification, so timing does not tell an
 * unknown user or a refused master login from a wrong password.
 *
 * Thread safety: sora_login_check() blocks (database, hashing): worker
 * threads only. sora_login_master_network(): loop thread of c. */
#ifndef SORA_SESSION_LOGIN_CHECK_H
#define SORA_SESSION_LOGIN_CHECK_H

#include <stdbool.h>

#include "common/core/error.h"
#include "common/core/str.h"
#include "common/db/accounts.h"
#include "common/net/conn.h"

struct sora_db_pool;
struct sora_server_config;

struct sora_login_request {
	struct sora_db_pool *pool;
	const struct sora_server_config *srv;    /* borrowed */
	bool master_sasl_network;
	struct sora_str authzid, authcid, password;
};

struct sora_login_result {
	bool ok;
	bool temporary;       /* database trouble: "try again later" */
	bool master;
	struct sora_account_ref ref;
	struct sora_error err;
};

void sora_login_check(const struct sora_login_request *req, struct sora_login_result *res);
bool sora_login_master_network(struct sora_conn *c);

#endif
