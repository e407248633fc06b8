/* The LISTEN connection: see listen.h.
 *
 * States: RETRY_WAIT (no connection, timer armed) -> CONNECTING
 * (PQconnectPoll, the poll handle follows the socket libpq asks for) ->
 * LISTEN_SENT (our LISTEN statements in flight) -> LISTENING. Any failure
 * goes back to RETRY_WAIT. */
#include "common/db/listen.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <uv.h>

#include "common/core/buf.h"
#include "common/core/log.h"
#include "common/core/str.h"
#include "common/db/db.h"

#define LISTEN_MIN_BACKOFF_MS 100
#define LISTEN_MAX_BACKOFF_MS 30000

enum listen_state {
	L_RETRY_WAIT = 0,
	L_CONNECTING,
	L_LISTEN_SENT,
	L_LISTENING,
};

struct sora_db_listener {
	struct sora_db_listen_params p;
	char **channels;                /* owned copies */
	char *appname;
	char where[256];                /* "database x at host:port", for logs */

	uv_loop_t loop;
	uv_thread_t thread;
	uv_async_t stop_async;
	uv_timer_t retry_timer;
	uv_poll_t *poll;                /* on the current PQsocket, or NULL */
	int poll_fd;

	PGconn *pg;
	enum listen_state state;
	int64_t backoff_ms;
	bool ever_connected;
	bool stopping;
	atomic_bool connected;
};

static void listen_connect(struct sora_db_listener *l);

static void poll_closed(uv_handle_t *h)
{
	free(h);
}

static void listen_unwatch(struct sora_db_listener *l)
{
	if (l->poll != NULL) {
		/* uv_close stops polling at once, so the socket may be closed
		 * (PQfinish) right after. */
		uv_close((uv_handle_t *)l->poll, poll_closed);
		l->poll = NULL;
	}
}

static void listen_poll_cb(uv_poll_t *h, int status, int events);

static void listen_watch(struct sora_db_listener *l, int events)
{
	int fd = PQsocket(l->pg);

	if (l->poll != NULL && l->poll_fd != fd)
		listen_unwatch(l);
	if (l->poll == NULL) {
		l->poll = malloc(sizeof(*l->poll));
		if (l->poll == NULL || uv_poll_init(&l->loop, l->poll, fd) < 0) {
			free(l->poll);
			l->poll = NULL;
			return;
		}
		l->poll->data = l;
		l->poll_fd = fd;
	}
	uv_poll_start(l->poll, events, listen_poll_cb);
}

/* libpq's message without its trailing newline. */
static const char *listen_pg_error(struct sora_db_listener *l, char *buf, size_t size)
{
	size_t n;

	sora_strlcpy(buf, l->pg != NULL ? PQerrorMessage(l->pg) : "out of memory", size);
	/* libpq adds indented explanation lines; the first says it. */
	buf[strcspn(buf, "\n")] = '\0';
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return buf[0] != '\0' ? buf : "connection failed";
}

static void listen_retry_cb(uv_timer_t *t)
{
	listen_connect(t->data);
}

static void listen_fail(struct sora_db_listener *l, const char *why)
{
	bool was_listening = l->state == L_LISTENING;
	int64_t delay = l->backoff_ms;
	uint32_t r;

	listen_unwatch(l);
	if (l->pg != NULL) {
		PQfinish(l->pg);
		l->pg = NULL;
	}
	atomic_store(&l->connected, false);
	l->state = L_RETRY_WAIT;
	if (l->stopping)
		return;
	/* +-25% so that many backends do not reconnect in step. */
	uv_random(NULL, NULL, &r, sizeof(r), 0, NULL);
	delay = delay * 3 / 4 + (int64_t)(r % (uint32_t)(delay / 2 + 1));
	if (was_listening)
		sora_warn(NULL, "LISTEN connection to %s lost: %s; reconnecting in %lld ms", l->where,
			  why, (long long)delay);
	else
		sora_warn(NULL, "LISTEN connection to %s failed: %s; retrying in %lld ms", l->where,
			  why, (long long)delay);
	l->backoff_ms = l->backoff_ms * 2 > l->p.max_backoff_ms ? l->p.max_backoff_ms
								 : l->backoff_ms * 2;
	uv_timer_start(&l->retry_timer, listen_retry_cb, (uint64_t)delay, 0);
}

static void listen_send_listen(struct sora_db_listener *l)
{
	struct sora_buf sql;
	char ebuf[256];
	int rc = 0;

	sora_buf_init(&sql, 0);
	for (size_t i = 0; i < l->p.nchannels && rc == 0; i++) {
		char *id = PQescapeIdentifier(l->pg, l->channels[i], strlen(l->channels[i]));

		rc = id == NULL ? -1 : sora_buf_printf(&sql, "LISTEN %s;", id);
		PQfreemem(id);
	}
	if (rc == 0)
		rc = sora_buf_append(&sql, "", 1);
	if (rc < 0 || PQsetnonblocking(l->pg, 1) != 0 || PQsendQuery(l->pg, sql.data) != 1) {
		sora_buf_free(&sql);
		listen_fail(l, listen_pg_error(l, ebuf, sizeof(ebuf)));
		return;
	}
	sora_buf_free(&sql);
	l->state = L_LISTEN_SENT;
	/* A few bytes: PQflush sends them at once unless the socket is full. */
	listen_watch(l, PQflush(l->pg) == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
}

static void listen_connect_step(struct sora_db_listener *l)
{
	char ebuf[256];

	switch (PQconnectPoll(l->pg)) {
	case PGRES_POLLING_READING:
		listen_watch(l, UV_READABLE);
		break;
	case PGRES_POLLING_WRITING:
		listen_watch(l, UV_WRITABLE);
		break;
	case PGRES_POLLING_OK:
		listen_send_listen(l);
		break;
	case PGRES_POLLING_FAILED:
	default:
		listen_fail(l, listen_pg_error(l, ebuf, sizeof(ebuf)));
		break;
	}
}

static void listen_established(struct sora_db_listener *l)
{
	l->state = L_LISTENING;
	l->backoff_ms = l->p.min_backoff_ms;
	if (l->ever_connected) {
		sora_info(NULL, "LISTEN connection to %s is back; notifications sent meanwhile "
			  "were lost, sessions resynchronise", l->where);
		if (l->p.missed != NULL)
			l->p.missed(l->p.ctx);
	} else {
		sora_info(NULL, "LISTEN connection to %s established", l->where);
	}
	/* After missed(): whoever trusts notifications only while connected
	 * (the LMTP recipient cache) has forgotten what they would have
	 * changed by the time it sees the connection up again. */
	atomic_store(&l->connected, true);
	l->ever_connected = true;
}

/* The socket is readable (or writable while our LISTEN is being sent). */
static void listen_io(struct sora_db_listener *l, int events)
{
	char ebuf[256];
	PGnotify *n;

	if (events & UV_WRITABLE) {
		int f = PQflush(l->pg);
		if (f < 0) {
			listen_fail(l, listen_pg_error(l, ebuf, sizeof(ebuf)));
			return;
		}
		if (f == 0)
			listen_watch(l, UV_READABLE);
	}
	if (!(events & UV_READABLE))
		return;
	if (PQconsumeInput(l->pg) != 1) {
		listen_fail(l, listen_pg_error(l, ebuf, sizeof(ebuf)));
		return;
	}
	while (!PQisBusy(l->pg)) {
		PGresult *res = PQgetResult(l->pg);

		if (res == NULL) {
			if (l->state == L_LISTEN_SENT)
				listen_established(l);
			break;
		}
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			sora_strlcpy(ebuf, PQresultErrorMessage(res), sizeof(ebuf));
			PQclear(res);
			listen_fail(l, ebuf[0] != '\0' ? ebuf : "LISTEN failed");
			return;
		}
		PQclear(res);
	}
	while ((n = PQnotifies(l->pg)) != NULL) {
		if (l->p.notify != NULL)
			l->p.notify(n->relname, n->extra, l->p.ctx);
		PQfreemem(n);
	}
	/* A connection the server ended shows as readable with nothing to
	 * consume; PQconsumeInput reports it above. */
	if (PQstatus(l->pg) == CONNECTION_BAD)
		listen_fail(l, listen_pg_error(l, ebuf, sizeof(ebuf)));
}

static void listen_poll_cb(uv_poll_t *h, int status, int events)
{
	struct sora_db_listener *l = h->data;

	if (status < 0) {
		listen_fail(l, uv_strerror(status));
		return;
	}
	if (l->state == L_CONNECTING)
		listen_connect_step(l);
	else
		listen_io(l, events);
}

static void listen_connect(struct sora_db_listener *l)
{
	struct sora_db_conninfo ci;
	struct sora_error err;

	if (l->stopping)
		return;
	if (sora_db_conninfo_build(l->p.db, NULL, l->appname, &ci, &err) < 0) {
		listen_fail(l, err.msg);
		return;
	}
	l->pg = PQconnectStartParams(ci.keywords, ci.values, 0);
	if (l->pg == NULL || PQstatus(l->pg) == CONNECTION_BAD) {
		char ebuf[256];
		listen_fail(l, listen_pg_error(l, ebuf, sizeof(ebuf)));
		return;
	}
	l->state = L_CONNECTING;
	/* libpq's documented start: as if PQconnectPoll had said WRITING. */
	listen_watch(l, UV_WRITABLE);
}

static void listen_stop_cb(uv_async_t *a)
{
	struct sora_db_listener *l = a->data;

	l->stopping = true;
	listen_unwatch(l);
	if (l->pg != NULL) {
		PQfinish(l->pg);
		l->pg = NULL;
	}
	atomic_store(&l->connected, false);
	uv_close((uv_handle_t *)&l->retry_timer, NULL);
	uv_close((uv_handle_t *)&l->stop_async, NULL);
}

static void listen_thread(void *arg)
{
	struct sora_db_listener *l = arg;

	listen_connect(l);
	uv_run(&l->loop, UV_RUN_DEFAULT);
}

static void listen_free(struct sora_db_listener *l)
{
	for (size_t i = 0; l->channels != NULL && i < l->p.nchannels; i++)
		free(l->channels[i]);
	free(l->channels);
	free(l->appname);
	free(l);
}

int sora_db_listener_start(const struct sora_db_listen_params *params,
			   struct sora_db_listener **listener_r, struct sora_error *err)
{
	struct sora_db_listener *l = calloc(1, sizeof(*l));

	if (l == NULL)
		goto oom;
	l->p = *params;
	if (l->p.min_backoff_ms <= 0)
		l->p.min_backoff_ms = LISTEN_MIN_BACKOFF_MS;
	if (l->p.max_backoff_ms < l->p.min_backoff_ms)
		l->p.max_backoff_ms = l->p.min_backoff_ms > LISTEN_MAX_BACKOFF_MS
					      ? l->p.min_backoff_ms : LISTEN_MAX_BACKOFF_MS;
	l->backoff_ms = l->p.min_backoff_ms;
	l->channels = calloc(params->nchannels + 1, sizeof(char *));
	l->appname = strdup(params->application_name != NULL ? params->application_name : "sora");
	if (l->channels == NULL || l->appname == NULL)
		goto oom;
	for (size_t i = 0; i < params->nchannels; i++) {
		if ((l->channels[i] = strdup(params->channels[i])) == NULL)
			goto oom;
	}
	l->p.channels = NULL;
	sora_db_describe(params->db->dbname, params->db->host, params->db->port, l->where,
			 sizeof(l->where));
	if (uv_loop_init(&l->loop) < 0) {
		listen_free(l);
		return sora_error_set(err, SORA_ERR_TEMPORARY, "cannot create the LISTEN event loop");
	}
	uv_async_init(&l->loop, &l->stop_async, listen_stop_cb);
	l->stop_async.data = l;
	uv_timer_init(&l->loop, &l->retry_timer);
	l->retry_timer.data = l;
	if (uv_thread_create(&l->thread, listen_thread, l) < 0) {
		uv_close((uv_handle_t *)&l->retry_timer, NULL);
		uv_close((uv_handle_t *)&l->stop_async, NULL);
		uv_run(&l->loop, UV_RUN_DEFAULT);
		uv_loop_close(&l->loop);
		listen_free(l);
		return sora_error_set(err, SORA_ERR_TEMPORARY, "cannot start the LISTEN thread");
	}
	*listener_r = l;
	return 0;
oom:
	if (l != NULL)
		listen_free(l);
	return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
}

void sora_db_listener_stop(struct sora_db_listener **listener)
{
	struct sora_db_listener *l = *listener;

	if (l == NULL)
		return;
	*listener = NULL;
	uv_async_send(&l->stop_async);
	uv_thread_join(&l->thread);
	uv_loop_close(&l->loop);
	listen_free(l);
}

bool sora_db_listener_connected(const struct sora_db_listener *l)
{
	return l != NULL && atomic_load(&l->connected);
}
