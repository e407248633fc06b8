/* Logging a user in on a backend, for the proxies whose sessions are
 * relayed after login (IMAP, POP3, ManageSieve): routing, connecting with
 * failover, the protocol's own login conversation (an ops table per
 * protocol), then the paired relay.
 *
 * The protocol's front end verified the credentials; it then fills in
 * account_id, user and tag and calls proxy_login_start(). From there:
 *   1. a job on the worker pool reads the user's backend override
 *      (accounts.backend) -- the client's input stays paused;
 *   2. proxy_pool_route() gives the candidates (override, ring, failover);
 *   3. each candidate in turn: connect (PROXY v2 header with the client's
 *      address and session id when remote_use_proxy_protocol), then the
 *      ops' conversation line by line (greeting, forwarding fields, SASL
 *      PLAIN with authzid = user, authcid = master_sasl_username);
 *   4. success: ops->success() answers the client's command, the backend
 *      is marked good and the two connections are relayed; what the client
 *      pipelined after its login command goes over first, in order;
 *   5. a connect failure, a backend that closes or greets wrongly moves on
 *      to the next candidate (marking the failure); a backend that refuses
 *      the login (NO) is a configuration problem and is not retried
 *      elsewhere, which would split the user.
 * The whole of 2-4, failovers included, has one budget: the server's
 * connect_timeout. When it runs out -- a backend that accepts and never
 * greets, one that stalls mid-login -- ops->failure() gives the client the
 * protocol's temporary failure and the session ends. Nothing waits longer.
 *
 * Memory: struct proxy_login is embedded in the protocol's session (it
 * lives as long as the client connection); the backend connection's data
 * points at it until one of the two closes.
 *
 * Thread safety: loop thread of the client connection. */
#ifndef SORA_PROXY_LOGIN_H
#define SORA_PROXY_LOGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/core/str.h"
#include "common/net/conn.h"
#include "proxy/backends.h"

struct proxy_login;

enum proxy_login_step {
	PROXY_LINE_MORE,       /* go on reading */
	PROXY_LINE_SUCCESS,    /* logged in: relay */
	PROXY_LINE_RETRY,      /* this backend is broken: try the next one */
	PROXY_LINE_REFUSED,    /* the backend refused the login: give up */
};

struct proxy_login_ops {
	/* Connected: write what must go first (may be nothing). */
	void (*connected)(struct proxy_login *l, struct sora_conn *be);
	/* One line from the backend (CRLF removed). */
	enum proxy_login_step (*line)(struct proxy_login *l, struct sora_conn *be,
				      struct sora_str line);
	/* Answer the client's login command with success (before relaying). */
	void (*success)(struct proxy_login *l);
	/* Answer it with a temporary failure; the session is then closed. */
	void (*failure)(struct proxy_login *l, const char *why);
};

struct proxy_login {
	struct sora_conn *client;
	struct sora_conn *be;               /* the backend connection, while open */
	struct proxy_pool *pool;
	const struct proxy_login_ops *ops;

	/* Filled in by the protocol before proxy_login_start(). */
	int64_t account_id;
	char user[256];                     /* primary address: the authzid */
	char tag[64];                       /* IMAP tag of the login command */

	/* Routing. */
	char override[256];
	size_t order[SORA_RING_MAX_NODES];
	size_t norder, next;
	size_t cur;                         /* backend index of be */
	int64_t deadline;                   /* proxy_now_ms() */
	bool started, relaying, finished, counted, expired;
	int step;                           /* the protocol's conversation state */
	char ok[1024];                      /* the backend's success text */
};

/* Starts routing and logging in (client input stays paused until the
 * relay starts or the session ends). */
void proxy_login_start(struct proxy_login *l);
/* The client connection is closing: drop the backend side. */
void proxy_login_client_closed(struct proxy_login *l);
/* Backend name in use ("" before routing) for logs and listings. */
const char *proxy_login_backend(const struct proxy_login *l);
/* The real client's address and port as text (for ID/XCLIENT fields). */
void proxy_login_client_addr(struct proxy_login *l, char *ip, size_t ipsize, char *port,
			     size_t portsize);
/* Writes base64(user \0 master_sasl_username \0 master_sasl_password)
 * into out; -1 if it does not fit. out should be wiped after use. */
int proxy_login_sasl_plain(struct proxy_login *l, char *out, size_t size);

#endif
