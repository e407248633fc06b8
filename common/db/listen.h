/* One PostgreSQL LISTEN connection per process, driven by an event loop.
 *
 * Mailbox changes are announced with NOTIFY (the counter triggers send one
 * on channel 'sora_mailbox' per changed mailbox). A listener holds one
 * connection outside the pool, LISTENs on the given channels and hands
 * every notification to a callback; IMAP IDLE fans them out to the sessions
 * that have the mailbox selected (through sora_conn_post), so an idle
 * session costs no thread and no polling.
 *
 * The connection is non-blocking and driven by libuv on the listener's own
 * thread (uv_poll on PQsocket): connect with PQconnectPoll, LISTEN, then
 * PQconsumeInput/PQnotifies whenever the socket is readable. It runs on its
 * own small loop rather than one of the session loops so that those can
 * drain and stop on their own schedule (a LISTEN handle would keep a
 * session loop alive at shutdown) and a slow server never delays sessions.
 *
 * When the connection breaks (server restart, pg_terminate_backend, network)
 * the listener reconnects with exponential backoff (100 ms doubling to 30 s,
 * with jitter) and LISTENs again. Notifications sent while it was away are
 * lost, so after every reconnect (not the first connect) it calls missed():
 * sessions must then resynchronise from the database instead of waiting for
 * a notification that will never come.
 *
 * Threads: start/stop from one thread (the main thread); the callbacks run
 * on the listener's thread and must not block (post to sessions, count,
 * log). sora_db_listener_connected() from any thread. */
#ifndef SORA_DB_LISTEN_H
#define SORA_DB_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config/config.h"
#include "common/core/error.h"

struct sora_db_listener;

struct sora_db_listen_params {
	const struct sora_database_config *db;  /* the primary's settings (borrowed) */
	const char *application_name;           /* shows in pg_stat_activity */
	const char *const *channels;            /* borrowed for the call */
	size_t nchannels;
	/* One notification; channel and payload valid for the call only. */
	void (*notify)(const char *channel, const char *payload, void *ctx);
	/* Connected again after a loss: notifications may have been missed. */
	void (*missed)(void *ctx);
	void *ctx;
	/* Backoff bounds in ms; 0 = 100 and 30000. */
	int64_t min_backoff_ms, max_backoff_ms;
};

/* Starts the listener thread; connecting happens in the background (a
 * database that is down at start-up is retried like a lost connection).
 * Returns 0, or -1 with err (out of memory, no thread: temporary). */
int sora_db_listener_start(const struct sora_db_listen_params *params,
			   struct sora_db_listener **listener_r, struct sora_error *err);
/* Closes the connection, joins the thread, frees and clears *listener.
 * NULL-safe. */
void sora_db_listener_stop(struct sora_db_listener **listener);
/* True while LISTEN is active on a live connection. */
bool sora_db_listener_connected(const struct sora_db_listener *listener);

#endif
