/* The database side of the session registry (sessions.h): the
 * `connections` table and kicks (migration 0007).
 *
 * Why the database and not each server's HTTP admin API: sora-admin
 * already reaches the database and nothing else; the proxies are many,
 * stateless and come and go behind a load balancer, so a list of their
 * admin endpoints would be one more thing to keep in sync; and a proxy
 * that was unreachable when a kick was sent still finds it in
 * connection_kicks when it polls. The cost is one INSERT and one DELETE
 * per session, done off the event loop by this thread in batches.
 *
 * One thread per process:
 *   - writes queued rows (a relay started) and deletions (a session ended)
 *     every SYNC_MS, or sooner when woken;
 *   - every HEARTBEAT_MS touches heartbeat_at of this node's rows and
 *     deletes rows whose node stopped touching them (a killed process);
 *   - every KICK_POLL_MS reads connection_kicks past the last one seen (the
 *     NOTIFY sora_kick fast path can be missed while reconnecting);
 * and a LISTEN connection (common/db/listen.h) delivers NOTIFY sora_kick
 * ("id<TAB>user<TAB>protocol") at once. A kick closes the matching
 * sessions on their loops (reason "kicked"); the relay takes the backend
 * connection down with them. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "common/config/config.h"
#include "common/core/log.h"
#include "common/core/str.h"
#include "common/db/db.h"
#include "common/db/listen.h"
#include "proxy/backends.h"
#include "proxy/proxy.h"
#include "proxy/sessions-private.h"
#include "proxy/sessions.h"

#define SYNC_MS 200
#define HEARTBEAT_MS 30000
#define KICK_POLL_MS 5000
#define STALE_SQL "interval '2 minutes'"

struct db_op {
	struct db_op *next;
	bool insert;
	char session[24];
	char protocol[16];
	char user[256];
	char client[64];
	char backend[256];
	time_t since;
};

static struct {
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	struct db_op *head, *tail;
	char node[256];
	int64_t last_kick;
	struct sora_db_listener *listen;
} sdb = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void queue_op(struct db_op *op)
{
	pthread_mutex_lock(&sdb.lock);
	if (!sdb.running) {
		pthread_mutex_unlock(&sdb.lock);
		free(op);
		return;
	}
	if (sdb.tail != NULL)
		sdb.tail->next = op;
	else
		sdb.head = op;
	sdb.tail = op;
	pthread_mutex_unlock(&sdb.lock);
}

void proxy_sessions_db_insert(const struct proxy_session_entry *e)
{
	struct db_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return;
	op->insert = true;
	sora_strlcpy(op->session, e->session, sizeof(op->session));
	sora_strlcpy(op->protocol, e->protocol, sizeof(op->protocol));
	sora_strlcpy(op->user, e->user, sizeof(op->user));
	sora_strlcpy(op->client, e->client, sizeof(op->client));
	sora_strlcpy(op->backend, e->backend, sizeof(op->backend));
	op->since = e->since;
	queue_op(op);
}

void proxy_sessions_db_delete(const char *session)
{
	struct db_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return;
	sora_strlcpy(op->session, session, sizeof(op->session));
	queue_op(op);
}

static void run_ops(struct sora_db_conn *db, struct db_op *ops)
{
	struct sora_error err;

	while (ops != NULL) {
		struct db_op *op = ops;
		char since[32];

		ops = op->next;
		snprintf(since, sizeof(since), "%lld", (long long)op->since);
		if (op->insert) {
			const char *v[7] = { sdb.node, op->session, op->protocol, op->user, op->client,
					     op->backend, since };

			if (sora_db_exec(db, SORA_DB_CLASS_WRITE,
					 "INSERT INTO connections (node, session_id, protocol, username,"
					 " client_addr, backend, since) VALUES ($1, $2, $3, $4, $5, $6,"
					 " to_timestamp($7)) ON CONFLICT (node, session_id) DO NOTHING",
					 7, v, NULL, NULL, &err) != 0)
				sora_debug(NULL, "connections: %s", err.msg);
		} else {
			const char *v[2] = { sdb.node, op->session };

			if (sora_db_exec(db, SORA_DB_CLASS_WRITE,
					 "DELETE FROM connections WHERE node = $1 AND session_id = $2",
					 2, v, NULL, NULL, &err) != 0)
				sora_debug(NULL, "connections: %s", err.msg);
		}
		free(op);
	}
}

static void kick(int64_t id, const char *user, const char *protocol)
{
	int n;

	pthread_mutex_lock(&sdb.lock);
	if (id <= sdb.last_kick) {
		pthread_mutex_unlock(&sdb.lock);
		return;
	}
	sdb.last_kick = id;
	pthread_mutex_unlock(&sdb.lock);
	n = proxy_sessions_kick(user, protocol);
	sora_info(NULL, "kick %" PRId64 " (user %s, protocol %s): %d session(s) here", id,
		  user != NULL && user[0] ? user : "*", protocol != NULL && protocol[0] ? protocol : "*",
		  n);
}

static void poll_kicks(struct sora_db_conn *db)
{
	struct sora_error err;
	PGresult *res = NULL;
	char last[24];
	const char *v[1] = { last };

	pthread_mutex_lock(&sdb.lock);
	snprintf(last, sizeof(last), "%" PRId64, sdb.last_kick);
	pthread_mutex_unlock(&sdb.lock);
	if (sora_db_exec(db, SORA_DB_CLASS_DEFAULT,
			 "SELECT id, coalesce(username, ''), coalesce(protocol, '') FROM connection_kicks"
			 " WHERE id > $1 AND created_at > now() - interval '10 minutes' ORDER BY id",
			 1, v, &res, NULL, &err) != 0)
		return;
	for (int i = 0; i < PQntuples(res); i++) {
		int64_t id;

		if (sora_db_get_i64(res, i, 0, &id, &err) == 0)
			kick(id, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
	}
	PQclear(res);
}

static void on_notify(const char *channel, const char *payload, void *ctx)
{
	char buf[600], *user, *proto, *end;
	long long id;

	if (payload == NULL)
		return;
	sora_strlcpy(buf, payload, sizeof(buf));
	user = strchr(buf, '\t');
	if (user == NULL)
		return;
	*user++ = '\0';
	proto = strchr(user, '\t');
	if (proto == NULL)
		return;
	*proto++ = '\0';
	id = strtoll(buf, &end, 10);
	if (end == buf || *end != '\0' || id <= 0)
		return;
	kick(id, user, proto);
}

static void *sessions_db_main(void *arg)
{
	int64_t next_heartbeat = 0, next_poll = 0;
	bool first = true;

	for (;;) {
		struct sora_db_conn *db = NULL;
		struct sora_error err;
		struct db_op *ops;
		struct timespec ts;
		int64_t now = proxy_now_ms();
		bool stop;

		pthread_mutex_lock(&sdb.lock);
		ops = sdb.head;
		sdb.head = sdb.tail = NULL;
		stop = sdb.stop;
		pthread_mutex_unlock(&sdb.lock);
		if ((ops != NULL || now >= next_heartbeat || now >= next_poll || first) &&
		    sora_db_acquire(sora_proxy_db(), SORA_DB_PRIMARY, 5000, &db, &err) == 0) {
			const char *v[1] = { sdb.node };

			if (first) {
				PGresult *res = NULL;

				/* Rows a previous run of this node left behind, and
				 * kicks from before this start, are not ours. */
				sora_db_exec(db, SORA_DB_CLASS_WRITE,
					     "DELETE FROM connections WHERE node = $1", 1, v, NULL, NULL,
					     &err);
				if (sora_db_exec(db, SORA_DB_CLASS_DEFAULT,
						 "SELECT coalesce(max(id), 0) FROM connection_kicks", 0, NULL,
						 &res, NULL, &err) == 0) {
					int64_t id = 0;

					if (sora_db_get_i64(res, 0, 0, &id, &err) == 0) {
						pthread_mutex_lock(&sdb.lock);
						if (id > sdb.last_kick)
							sdb.last_kick = id;
						pthread_mutex_unlock(&sdb.lock);
					}
					PQclear(res);
				}
				first = false;
			}
			run_ops(db, ops);
			ops = NULL;
			if (now >= next_heartbeat) {
				sora_db_exec(db, SORA_DB_CLASS_WRITE,
					     "UPDATE connections SET heartbeat_at = now() WHERE node = $1",
					     1, v, NULL, NULL, &err);
				sora_db_exec(db, SORA_DB_CLASS_WRITE,
					     "DELETE FROM connections WHERE heartbeat_at < now() - "
					     STALE_SQL, 0, NULL, NULL, NULL, &err);
				next_heartbeat = now + HEARTBEAT_MS;
			}
			if (now >= next_poll && !stop) {
				poll_kicks(db);
				next_poll = now + KICK_POLL_MS;
			}
			sora_db_release(&db);
		}
		while (ops != NULL) {
			/* The database was not reachable: drop them; the
			 * heartbeat's cleanup and the next start fix the table. */
			struct db_op *op = ops;

			ops = op->next;
			free(op);
		}
		if (stop)
			return NULL;
		pthread_mutex_lock(&sdb.lock);
		if (!sdb.stop && sdb.head == NULL) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += SYNC_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&sdb.cond, &sdb.lock, &ts);
		}
		pthread_mutex_unlock(&sdb.lock);
	}
}

int proxy_sessions_start(struct sora_net *net, char *errbuf, size_t errsize)
{
	static const char *const channels[] = { "sora_kick" };
	const struct sora_config *cfg = sora_proxy_config();
	struct sora_db_listen_params p = {
		.db = &cfg->database,
		.application_name = "sora-proxy-listen",
		.channels = channels,
		.nchannels = 1,
		.notify = on_notify,
	};
	struct sora_error err;

	sora_strlcpy(sdb.node, cfg->hostname != NULL ? cfg->hostname : "proxy", sizeof(sdb.node));
	sdb.stop = false;
	sdb.running = true;
	if (pthread_create(&sdb.thread, NULL, sessions_db_main, NULL) != 0) {
		sdb.running = false;
		snprintf(errbuf, errsize, "cannot start the sessions thread");
		return -1;
	}
	if (sora_db_listener_start(&p, &sdb.listen, &err) < 0)
		sora_warn(NULL, "kick notifications: %s (kicks still arrive by polling)", err.msg);
	return 0;
}

void proxy_sessions_stop(void)
{
	if (!sdb.running)
		return;
	sora_db_listener_stop(&sdb.listen);
	pthread_mutex_lock(&sdb.lock);
	sdb.stop = true;
	pthread_cond_signal(&sdb.cond);
	pthread_mutex_unlock(&sdb.lock);
	pthread_join(sdb.thread, NULL);
	pthread_mutex_lock(&sdb.lock);
	sdb.running = false;
	while (sdb.head != NULL) {
		struct db_op *op = sdb.head;

		sdb.head = op->next;
		free(op);
	}
	sdb.tail = NULL;
	pthread_mutex_unlock(&sdb.lock);
}
