/* Connections: accept, PROXY preamble, limits, TLS, input delivery, output
 * queue, timeouts and close. See conn.h for the contract.
 *
 * TLS runs through a custom BIO instead of memory BIOs: OpenSSL reads the
 * ciphertext straight out of the loop's read buffer (rx_ptr/rx_len) and its
 * writes are appended to the connection's output queue. A memory BIO would
 * keep its own growing buffer per connection, which an idle connection
 * would pay for; this way an idle TLS connection holds no I/O buffer of
 * ours and OpenSSL releases its own (SSL_MODE_RELEASE_BUFFERS). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>

#include "common/config/config.h"
#include "common/metrics/metrics.h"
#include "common/net/net-private.h"
#include "common/net/workers.h"
#include "common/proto/proxy-protocol.h"
#include "common/tls/tls.h"

static void conn_process_input(struct sora_conn *c);
static void conn_flush(struct sora_conn *c);
static void conn_arm_timer(struct sora_conn *c);
static void conn_timer_cb(uv_timer_t *t);
static void conn_finish_close(struct sora_conn *c);
static void conn_do_close(struct sora_conn *c);
static void conn_tls_input(struct sora_conn *c, const char *data, size_t len);
static void conn_ready(struct sora_conn *c);
static void conn_output_drained(struct sora_conn *c);
static void conn_relay_input(struct sora_conn *c, const char *data, size_t len);

const char *sora_close_reason_name(enum sora_close_reason r)
{
	switch (r) {
	case SORA_CLOSE_NORMAL: return "logout";
	case SORA_CLOSE_EOF: return "disconnected";
	case SORA_CLOSE_ERROR: return "error";
	case SORA_CLOSE_IDLE: return "idle";
	case SORA_CLOSE_SESSION_MAX: return "session_max";
	case SORA_CLOSE_SLOW: return "slow_throughput";
	case SORA_CLOSE_PROXY: return "proxy_protocol";
	case SORA_CLOSE_LIMIT: return "connection_limit";
	case SORA_CLOSE_SHUTDOWN: return "shutdown";
	case SORA_CLOSE_KICKED: return "kicked";
	case SORA_CLOSE_PROTOCOL: return "protocol_error";
	case SORA_CLOSE_OUTPUT: return "output_overflow";
	case SORA_CLOSE_PEER: return "peer_closed";
	}
	return "unknown";
}

const char *sora_close_reason_text(enum sora_close_reason r)
{
	switch (r) {
	case SORA_CLOSE_IDLE: return "Disconnected for inactivity.";
	case SORA_CLOSE_SESSION_MAX: return "Maximum session time exceeded.";
	case SORA_CLOSE_SLOW: return "Connection too slow.";
	case SORA_CLOSE_SHUTDOWN: return "Server shutting down.";
	case SORA_CLOSE_KICKED: return "Disconnected by administrator.";
	default: return "Closing connection.";
	}
}

/* ---- custom BIO ------------------------------------------------------- */

static BIO_METHOD *conn_bio_method;
static pthread_once_t conn_bio_once = PTHREAD_ONCE_INIT;

static int conn_bio_read(BIO *b, char *out, int outl)
{
	struct sora_conn *c = BIO_get_data(b);
	size_t n;

	BIO_clear_retry_flags(b);
	if (c->rx_len == 0) {
		BIO_set_retry_read(b);
		return -1;
	}
	n = (size_t)outl < c->rx_len ? (size_t)outl : c->rx_len;
	memcpy(out, c->rx_ptr, n);
	c->rx_ptr += n;
	c->rx_len -= n;
	return (int)n;
}

static int conn_bio_write(BIO *b, const char *in, int inl)
{
	struct sora_conn *c = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (sora_buf_append(&c->out, in, (size_t)inl) < 0)
		return -1;
	return inl;
}

static long conn_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct sora_conn *c = BIO_get_data(b);

	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_PENDING:
		return c != NULL ? (long)c->rx_len : 0;
	case BIO_CTRL_WPENDING:
		return 0;
	default:
		return 0;
	}
}

static int conn_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void conn_bio_init_once(void)
{
	conn_bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sora-conn");
	BIO_meth_set_read(conn_bio_method, conn_bio_read);
	BIO_meth_set_write(conn_bio_method, conn_bio_write);
	BIO_meth_set_ctrl(conn_bio_method, conn_bio_ctrl);
	BIO_meth_set_create(conn_bio_method, conn_bio_create);
}

/* Puts ssl (owned from now on, freed on failure) on the connection. */
static int conn_tls_attach(struct sora_conn *c, SSL *ssl)
{
	BIO *bio;

	pthread_once(&conn_bio_once, conn_bio_init_once);
	if (ssl == NULL)
		return -1;
	bio = BIO_new(conn_bio_method);
	if (bio == NULL) {
		SSL_free(ssl);
		return -1;
	}
	BIO_set_data(bio, c);
	SSL_set_bio(ssl, bio, bio);
	c->ssl = ssl;
	c->tls_active = true;
	return 0;
}

static int conn_tls_setup(struct sora_conn *c)
{
	if (conn_tls_attach(c, sora_tls_new_ssl(c->listener->tls)) < 0)
		return -1;
	SSL_set_accept_state(c->ssl);
	return 0;
}

int sora_conn__tls_client(struct sora_conn *c, SSL *ssl)
{
	if (conn_tls_attach(c, ssl) < 0)
		return -1;
	SSL_set_connect_state(c->ssl);
	return 0;
}

/* ---- accessors -------------------------------------------------------- */

void sora_conn_set_data(struct sora_conn *c, void *data) { c->data = data; }
void *sora_conn_data(const struct sora_conn *c) { return c->data; }
const struct sora_server_config *sora_conn_server(const struct sora_conn *c) { return c->listener->srv; }
struct sora_listener *sora_conn_listener(const struct sora_conn *c) { return c->listener; }
const char *sora_conn_id(const struct sora_conn *c) { return c->id; }
const char *sora_conn_peer(const struct sora_conn *c) { return c->peer_str; }
const struct sora_ip *sora_conn_peer_ip(const struct sora_conn *c) { return c->has_peer_ip ? &c->peer_ip : NULL; }
const struct sockaddr *sora_conn_peer_addr(const struct sora_conn *c) { return (const struct sockaddr *)&c->peer; }
const struct sockaddr *sora_conn_local_addr(const struct sora_conn *c) { return (const struct sockaddr *)&c->local; }
const char *sora_conn_proxy_session(const struct sora_conn *c) { return c->proxy_session[0] ? c->proxy_session : NULL; }
const char *sora_conn_user(const struct sora_conn *c) { return c->user[0] ? c->user : NULL; }
const struct sora_log_ctx *sora_conn_log_ctx(const struct sora_conn *c) { return &c->log; }
bool sora_conn_is_tls(const struct sora_conn *c) { return c->tls_active; }
bool sora_conn_tls_available(const struct sora_conn *c) { return c->listener->tls != NULL; }
bool sora_conn_closing(const struct sora_conn *c) { return c->state >= CONN_CLOSING; }
struct sora_loop *sora_conn_loop(const struct sora_conn *c) { return c->loop; }
struct sora_net *sora_conn_net(const struct sora_conn *c) { return c->loop->net; }

struct sora_conn_key sora_conn_key(const struct sora_conn *c)
{
	struct sora_conn_key key = { (uint32_t)c->loop->index, c->slot, c->gen };

	return key;
}
size_t sora_conn_output_pending(const struct sora_conn *c) { return c->out.len + c->inflight.len; }
bool sora_conn_output_full(const struct sora_conn *c) { return sora_conn_output_pending(c) >= SORA_OUT_HIGH_WATER; }

void sora_conn_set_user(struct sora_conn *c, const char *user)
{
	if (user == NULL) {
		c->user[0] = '\0';
		c->log.user = NULL;
		return;
	}
	sora_log_escape(sora_str_c(user), c->user, sizeof(c->user));
	c->log.user = c->user;
}

static bool ip_trusted(const struct sora_conn *c, const struct sora_ip *ip)
{
	const struct sora_server_config *srv = c->listener->srv;
	const struct sora_config *cfg = sora_net_config(c->listener->net);

	if (srv->trusted_networks.count > 0)
		return sora_cidr_list_match(&srv->trusted_networks, ip);
	return sora_cidr_list_match(&cfg->trusted_networks, ip);
}

const struct sora_ip *sora_conn_link_ip(const struct sora_conn *c)
{
	return c->has_link_ip ? &c->link_ip : NULL;
}

bool sora_conn_link_trusted(const struct sora_conn *c)
{
	if (c->is_unix)
		return true;
	return c->has_link_ip && ip_trusted(c, &c->link_ip);
}

bool sora_conn_peer_trusted(const struct sora_conn *c)
{
	const struct sora_server_config *srv = c->listener->srv;
	const struct sora_config *cfg = sora_net_config(c->listener->net);

	if (c->is_unix)
		return true;
	if (!c->has_peer_ip)
		return false;
	if (srv->trusted_networks.count > 0)
		return sora_cidr_list_match(&srv->trusted_networks, &c->peer_ip);
	return sora_cidr_list_match(&cfg->trusted_networks, &c->peer_ip);
}

void sora_conn_set_transfer(struct sora_conn *c, bool in_transfer) { c->in_transfer = in_transfer; }

void sora_conn_set_throughput_exempt(struct sora_conn *c, bool exempt)
{
	c->throughput_exempt = exempt;
	if (exempt)
		c->window_start = 0;
}

void sora_conn_set_keepalive(struct sora_conn *c, int64_t ms)
{
	c->keepalive_ms = ms > 0 ? ms : 0;
	c->keepalive_at = ms > 0 ? uv_now(&c->loop->uv) + (uint64_t)ms : 0;
	conn_arm_timer(c);
}

int sora_conn_defer(struct sora_conn *c, int64_t ms, sora_conn_defer_cb *fn, void *arg)
{
	if (c->defer_cb != NULL || c->state >= CONN_CLOSING || fn == NULL)
		return -1;
	c->defer_cb = fn;
	c->defer_arg = arg;
	/* uv_now() is the loop's cached clock, floored to the millisecond
	 * and taken when this iteration began: one more millisecond makes
	 * the wait at least ms (a progressive delay is never shorter than
	 * promised). */
	c->defer_at = uv_now(&c->loop->uv) + (uint64_t)(ms > 0 ? ms + 1 : 0);
	conn_arm_timer(c);
	return 0;
}

bool sora_conn_deferred(const struct sora_conn *c)
{
	return c->defer_cb != NULL;
}

/* Runs the pending sora_conn_defer() callback (due, or the connection is
 * closing). */
static void conn_fire_defer(struct sora_conn *c)
{
	sora_conn_defer_cb *fn = c->defer_cb;
	void *arg = c->defer_arg;

	c->defer_cb = NULL;
	c->defer_arg = NULL;
	fn(c, arg);
}

void sora_conn_set_idle_timeout(struct sora_conn *c, int64_t ms)
{
	c->idle_override = ms;
	c->last_activity = uv_now(&c->loop->uv);
	conn_arm_timer(c);
}

/* ---- output ----------------------------------------------------------- */

int sora_conn_write(struct sora_conn *c, const void *data, size_t len)
{
	if (c->state >= CONN_CLOSING)
		return -1;
	if (len == 0)
		return 0;
	if (len > SORA_OUT_HARD_CAP || sora_conn_output_pending(c) > SORA_OUT_HARD_CAP - len) {
		sora_warn(&c->log, "output queue would pass %d bytes (the client does not read): closing",
			  SORA_OUT_HARD_CAP);
		sora_buf_free(&c->out);
		sora_conn_close(c, SORA_CLOSE_OUTPUT);
		return -1;
	}
	if (c->tls_active) {
		size_t off = 0;
		while (off < len) {
			int chunk = len - off > 16384 ? 16384 : (int)(len - off);
			int n = SSL_write(c->ssl, (const char *)data + off, chunk);
			if (n <= 0) {
				/* The session cannot go on with a hole in its
				 * output: the client would misread everything
				 * after it. */
				char ebuf[160];
				sora_warn(&c->log, "TLS write failed: %s",
					  sora_tls_last_error(ebuf, sizeof(ebuf)));
				sora_buf_free(&c->out);
				sora_conn_close(c, SORA_CLOSE_ERROR);
				return -1;
			}
			off += (size_t)n;
		}
	} else if (sora_buf_append(&c->out, data, len) < 0) {
		sora_warn(&c->log, "out of memory queueing output: closing");
		sora_buf_free(&c->out);
		sora_conn_close(c, SORA_CLOSE_ERROR);
		return -1;
	}
	c->bytes_out += len;
	conn_flush(c);
	return c->state >= CONN_CLOSING ? -1 : 0;
}

static int conn_write_sink(void *ctx, const void *data, size_t len)
{
	return sora_conn_write(ctx, data, len);
}

int sora_conn_printf(struct sora_conn *c, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = sora_vformat_to(conn_write_sink, c, fmt, ap);
	va_end(ap);
	return r;
}

/* Input of c was stopped because output (its own, or its relay peer's)
 * passed the high-water mark; there is room again. */
static void conn_unblock_input(struct sora_conn *c)
{
	if (!c->out_blocked || c->state != CONN_OPEN)
		return;
	c->out_blocked = false;
	if (c->in.len > 0)
		conn_process_input(c);
	if (c->state == CONN_OPEN && !c->out_blocked)
		sora_conn__start_reading(c);
}

/* Output is below the low-water mark (or gone): let producers go on. */
static void conn_output_drained(struct sora_conn *c)
{
	if (c->state != CONN_OPEN)
		return;
	if (c->relay != NULL)
		conn_unblock_input(c->relay);
	else
		conn_unblock_input(c);
	if (c->job != NULL)
		sora_conn__job_output(c);
	if (c->state == CONN_OPEN && c->h->drained != NULL &&
	    sora_conn_output_pending(c) < SORA_OUT_LOW_WATER)
		c->h->drained(c);
}

/* The socket failed: nothing more can be written, close now. */
static void conn_abort(struct sora_conn *c, enum sora_close_reason why)
{
	if (c->state < CONN_CLOSING) {
		c->close_reason = why;
		c->state = CONN_CLOSING;
		if (c->relay != NULL)
			sora_conn_close(c->relay, SORA_CLOSE_PEER);
	}
	sora_buf_free(&c->out);
	conn_finish_close(c);
}

static void conn_write_cb(uv_write_t *req, int status)
{
	struct sora_conn *c = req->data;

	c->writing = false;
	sora_buf_free(&c->inflight);
	if (status < 0) {
		if (c->state < CONN_CLOSING)
			sora_debug(&c->log, "write failed: %s", uv_strerror(status));
		conn_abort(c, SORA_CLOSE_EOF);
		return;
	}
	c->last_activity = uv_now(&c->loop->uv);
	conn_flush(c);
	if (c->state == CONN_CLOSING) {
		if (!c->writing && c->out.len == 0)
			conn_finish_close(c);
		return;
	}
	if (sora_conn_output_pending(c) < SORA_OUT_LOW_WATER)
		conn_output_drained(c);
}

static void conn_flush(struct sora_conn *c)
{
	uv_buf_t buf;
	int n;

	if (c->writing || c->out.len == 0 || c->state >= CONN_CLOSED || c->close_now ||
	    c->state == CONN_CONNECTING)
		return;
	/* Most replies are small: try to write them right away and keep
	 * nothing queued. The queue is capped (SORA_OUT_HARD_CAP), so its
	 * length fits uv_buf_t without truncation. */
	buf.base = c->out.data;
	buf.len = c->out.len;
	n = uv_try_write(&c->s.stream, &buf, 1);
	if (n > 0) {
		sora_buf_consume(&c->out, (size_t)n);
		c->last_activity = uv_now(&c->loop->uv);
	} else if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS) {
		conn_abort(c, n == UV_EPIPE || n == UV_ECONNRESET ? SORA_CLOSE_EOF : SORA_CLOSE_ERROR);
		return;
	}
	if (c->out.len == 0) {
		sora_buf_reset(&c->out);
		return;
	}
	/* Hand the queue to libuv and collect new output in a fresh buffer. */
	c->inflight = c->out;
	sora_buf_init(&c->out, 0);
	buf.base = c->inflight.data;
	buf.len = c->inflight.len;
	c->wreq.data = c;
	if (uv_write(&c->wreq, &c->s.stream, &buf, 1, conn_write_cb) < 0) {
		sora_buf_free(&c->inflight);
		conn_abort(c, SORA_CLOSE_ERROR);
		return;
	}
	c->writing = true;
}

/* ---- close ------------------------------------------------------------ */

static void conn_free(struct sora_conn *c)
{
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	sora_buf_free(&c->in);
	sora_buf_free(&c->out);
	sora_buf_free(&c->inflight);
	free(c);
}

static void conn_handle_closed(uv_handle_t *h)
{
	struct sora_conn *c = h->data;

	if (--c->handles_open == 0) {
		c->freed = true;
		if (c->refs == 0)
			conn_free(c);
	}
}

void sora_conn_ref(struct sora_conn *c)
{
	c->refs++;
}

void sora_conn_unref(struct sora_conn *c)
{
	if (--c->refs == 0 && c->freed)
		conn_free(c);
}

static void conn_count_timeout(struct sora_conn *c, enum sora_close_reason why)
{
	struct sora_listener *l = c->listener;

	switch (why) {
	case SORA_CLOSE_IDLE: sora_metric_inc(l->m_timeout_idle); break;
	case SORA_CLOSE_SESSION_MAX: sora_metric_inc(l->m_timeout_session); break;
	case SORA_CLOSE_SLOW: sora_metric_inc(l->m_timeout_slow); break;
	default: break;
	}
}

/* Closing runs from the connection's timer on the next loop iteration, never
 * inside the call chain that asked for it: a handler that calls
 * sora_conn_close() (or whose write fails) from its own input() must not
 * have its session freed under its feet (Redis frees clients the same
 * way, asynchronously). */
static void conn_finish_close(struct sora_conn *c)
{
	if (c->state == CONN_CLOSED || c->close_now)
		return;
	c->close_now = true;
	sora_conn__job_cancel(c);
	if (c->reading) {
		uv_read_stop(&c->s.stream);
		c->reading = false;
	}
	uv_timer_start(&c->timer, conn_timer_cb, 0, 0);
}

void sora_conn__handler_close(struct sora_conn *c)
{
	c->close_deferred = false;
	if (c->opened && c->h->close != NULL)
		c->h->close(c, c->close_reason);
	c->data = NULL;
}

static void conn_slot_release(struct sora_conn *c)
{
	struct sora_loop *loop = c->loop;
	struct sora_slot *slot = &loop->slots[c->slot];

	slot->conn = NULL;
	slot->gen++;
	slot->next_free = loop->free_slot;
	loop->free_slot = c->slot;
}

/* Closes the handles; runs at most once. */
static void conn_do_close(struct sora_conn *c)
{
	struct sora_loop *loop = c->loop;

	if (c->state == CONN_CLOSED)
		return;
	c->state = CONN_CLOSED;
	if (c->relay != NULL) {
		c->relay->relay = NULL;
		c->relay = NULL;
	}
	if (c->connect != NULL)
		sora_connect__free(c);
	/* A pending deferred callback learns of the close before the
	 * handler's close() frees the session state it may point to. */
	if (c->defer_cb != NULL)
		conn_fire_defer(c);
	if (c->job != NULL) {
		/* The handler's close() waits for the job: it runs right
		 * after the job's done(), here if the job is parked, or once
		 * its worker returns. */
		c->close_deferred = true;
		sora_conn__job_output(c);
	} else {
		sora_conn__handler_close(c);
	}
	if (c->counted) {
		atomic_fetch_sub(&c->listener->total, 1);
		if (c->has_peer_ip)
			sora_ip_table_release(c->listener->per_ip, &c->peer_ip);
		sora_metric_dec(c->listener->m_current);
		c->counted = false;
	}
	if (c->outbound) {
		sora_debug(&c->log, "connection to %s closed: %s (in=%llu out=%llu bytes)", c->peer_str,
			   sora_close_reason_name(c->close_reason),
			   (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out);
	} else if (c->opened) {
		sora_metric_inc(c->listener->m_closed[c->close_reason]);
		sora_info(&c->log, "session ended: %s, %.1f s, in=%llu out=%llu bytes",
			  sora_close_reason_name(c->close_reason),
			  (double)(uv_now(&loop->uv) - c->started) / 1000.0,
			  (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out);
	} else {
		sora_metric_inc(c->listener->m_closed[c->close_reason]);
		if (c->close_reason != SORA_CLOSE_EOF)
			sora_debug(&c->log, "connection closed before the session started: %s",
				   sora_close_reason_name(c->close_reason));
	}
	/* Unlink from the loop's list. */
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		loop->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	loop->conn_count--;
	conn_slot_release(c);

	uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
	uv_close(&c->s.handle, conn_handle_closed);
}

void sora_conn_close(struct sora_conn *c, enum sora_close_reason why)
{
	if (c->state >= CONN_CLOSING)
		return;
	c->close_reason = why;
	c->state = CONN_CLOSING;
	sora_conn__job_cancel(c);
	if (c->reading) {
		uv_read_stop(&c->s.stream);
		c->reading = false;
	}
	if (c->relay != NULL)
		sora_conn_close(c->relay, SORA_CLOSE_PEER);
	if (c->tls_active && c->tls_handshake_done && why != SORA_CLOSE_ERROR &&
	    why != SORA_CLOSE_OUTPUT) {
		/* A close_notify lets the client tell a clean close from a cut. */
		SSL_shutdown(c->ssl);
	}
	if (why == SORA_CLOSE_ERROR || why == SORA_CLOSE_PROXY || why == SORA_CLOSE_OUTPUT)
		sora_buf_free(&c->out);
	if (!c->writing && c->out.len > 0)
		conn_flush(c);
	if (!c->writing && c->out.len == 0)
		conn_finish_close(c);
	else
		conn_arm_timer(c);
	/* Otherwise conn_write_cb finishes the close once output is out; the
	 * timer gives up on a client that never reads. */
}

/* A timeout or shutdown: say why, count it, close. */
static void conn_close_with_farewell(struct sora_conn *c, enum sora_close_reason why)
{
	if (c->state >= CONN_CLOSING)
		return;
	conn_count_timeout(c, why);
	if (why == SORA_CLOSE_IDLE || why == SORA_CLOSE_SESSION_MAX || why == SORA_CLOSE_SLOW)
		sora_info(&c->log, "closing connection: %s timeout", sora_close_reason_name(why));
	/* No farewell in the middle of a command's output or of relayed
	 * bytes: it would be read as part of them. */
	if (c->opened && c->relay == NULL && c->job == NULL && c->h->farewell != NULL &&
	    (!c->tls_active || c->tls_handshake_done))
		c->h->farewell(c, why);
	sora_conn_close(c, why);
}

void sora_conn__shutdown(struct sora_conn *c)
{
	if (c->job != NULL) {
		/* Let the running command finish; the job's completion sees
		 * the loop stopping and closes the session. A client that
		 * stops reading its output meanwhile gets SORA_SHUTDOWN_STALL_MS,
		 * not the whole drain timeout. */
		c->idle_override = SORA_SHUTDOWN_STALL_MS;
		conn_arm_timer(c);
		return;
	}
	if (c->outbound) {
		/* A relayed one closes with its peer; one still connecting
		 * tells its handler, which may hold a pointer to it. */
		if (c->connecting)
			sora_conn__connect_failed(c, "server shutting down");
		else if (c->relay == NULL)
			sora_conn_close(c, SORA_CLOSE_SHUTDOWN);
		return;
	}
	conn_close_with_farewell(c, SORA_CLOSE_SHUTDOWN);
}

/* ---- timeouts --------------------------------------------------------- */

static int64_t conn_idle_timeout(const struct sora_conn *c)
{
	if (c->idle_override != 0)
		return c->idle_override;
	/* An outbound connection has only the timeouts its owner sets: the
	 * client-facing session's timeouts govern the pair. */
	return c->outbound ? -1 : c->listener->srv->command_timeout_ms;
}

static bool conn_in_transit(const struct sora_conn *c)
{
	if (c->throughput_exempt)
		return false;
	return c->in.len > 0 || c->in_transfer || sora_conn_output_pending(c) > 0;
}

/* Starts or ends the throughput window depending on whether a command is
 * in transit now. Called after input was processed and output written. */
static void conn_update_window(struct sora_conn *c)
{
	if (c->listener->srv->min_bytes_per_minute <= 0 || c->state != CONN_OPEN || c->outbound)
		return;
	if (conn_in_transit(c)) {
		if (c->window_start == 0) {
			c->window_start = uv_now(&c->loop->uv);
			c->window_bytes = c->bytes_in + c->bytes_out;
		}
	} else {
		c->window_start = 0;
	}
}

static void conn_timer_cb(uv_timer_t *t)
{
	struct sora_conn *c = t->data;
	const struct sora_server_config *srv = c->listener->srv;
	uint64_t now = uv_now(&c->loop->uv);
	int64_t idle = conn_idle_timeout(c);

	if (c->state == CONN_CLOSED)
		return;
	if (c->close_now) {
		conn_do_close(c);
		return;
	}
	if (c->state == CONN_CLOSING) {
		/* The peer does not take our last output: give up on it. */
		if (now - c->last_activity >= 10000) {
			sora_buf_free(&c->out);
			conn_finish_close(c);
			return;
		}
		conn_arm_timer(c);
		return;
	}
	if (c->state == CONN_PROXY) {
		int64_t pt = srv->proxy_protocol.timeout_ms;
		if (pt > 0 && now - c->started >= (uint64_t)pt) {
			sora_warn(&c->log, "no PROXY protocol header within %lld ms: closing",
				  (long long)pt);
			sora_metric_inc(c->listener->m_proxy_rejected);
			sora_conn_close(c, SORA_CLOSE_PROXY);
			return;
		}
	} else if (c->connecting) {
		if (now - c->started >= (uint64_t)c->connect_timeout_ms) {
			sora_conn__connect_failed(c, "timed out");
			return;
		}
		conn_arm_timer(c);
		return;
	} else if (c->state == CONN_HANDSHAKE) {
		if (now - c->started >= SORA_HANDSHAKE_TIMEOUT_MS) {
			sora_info(&c->log, "TLS handshake timed out");
			conn_close_with_farewell(c, SORA_CLOSE_IDLE);
			return;
		}
	}
	if (!c->outbound && srv->absolute_session_timeout_ms > 0 &&
	    now - c->started >= (uint64_t)srv->absolute_session_timeout_ms) {
		conn_close_with_farewell(c, SORA_CLOSE_SESSION_MAX);
		return;
	}
	if (c->defer_cb != NULL && now >= c->defer_at && c->state == CONN_OPEN) {
		conn_fire_defer(c);
		if (c->state != CONN_OPEN) {
			conn_arm_timer(c);
			return;
		}
	}
	/* A running job is exempt, unless it waits for a client that does not
	 * read its output; so is a session waiting for its deferred callback. */
	if (idle > 0 && (c->job == NULL || sora_conn_output_pending(c) > 0) &&
	    c->defer_cb == NULL &&
	    now - c->last_activity >= (uint64_t)idle) {
		conn_close_with_farewell(c, SORA_CLOSE_IDLE);
		return;
	}
	if (c->keepalive_ms > 0 && now >= c->keepalive_at && c->job == NULL) {
		c->keepalive_at = now + (uint64_t)c->keepalive_ms;
		if (c->h->keepalive != NULL)
			c->h->keepalive(c);
		if (c->state != CONN_OPEN)
			return;
	}
	if (c->window_start != 0 && now - c->window_start >= SORA_THROUGHPUT_WINDOW_MS) {
		uint64_t moved = c->bytes_in + c->bytes_out - c->window_bytes;
		if (conn_in_transit(c) && moved < (uint64_t)srv->min_bytes_per_minute) {
			sora_info(&c->log, "only %llu bytes in the last minute (minimum %lld)",
				  (unsigned long long)moved, (long long)srv->min_bytes_per_minute);
			conn_close_with_farewell(c, SORA_CLOSE_SLOW);
			return;
		}
		c->window_start = conn_in_transit(c) ? now : 0;
		c->window_bytes = c->bytes_in + c->bytes_out;
	}
	conn_arm_timer(c);
}

/* Arms the timer for the nearest deadline. Deadlines move lazily: activity
 * only updates last_activity, and the timer re-arms itself when it fires
 * early (nginx-style), so busy connections do not touch the timer heap on
 * every read. */
static void conn_arm_timer(struct sora_conn *c)
{
	const struct sora_server_config *srv = c->listener->srv;
	uint64_t now = uv_now(&c->loop->uv), deadline = UINT64_MAX;
	int64_t idle = conn_idle_timeout(c);

	if (c->state == CONN_CLOSED || c->close_now)
		return;
	if (c->state == CONN_CLOSING)
		deadline = now + 1000;
	if (c->state == CONN_PROXY && srv->proxy_protocol.timeout_ms > 0)
		deadline = c->started + (uint64_t)srv->proxy_protocol.timeout_ms;
	if (c->connecting)
		deadline = c->started + (uint64_t)c->connect_timeout_ms;
	else if (c->state == CONN_HANDSHAKE && c->started + SORA_HANDSHAKE_TIMEOUT_MS < deadline)
		deadline = c->started + SORA_HANDSHAKE_TIMEOUT_MS;
	if (!c->outbound && srv->absolute_session_timeout_ms > 0 &&
	    c->started + (uint64_t)srv->absolute_session_timeout_ms < deadline)
		deadline = c->started + (uint64_t)srv->absolute_session_timeout_ms;
	if (idle > 0 && !c->connecting && c->defer_cb == NULL &&
	    c->last_activity + (uint64_t)idle < deadline)
		deadline = c->last_activity + (uint64_t)idle;
	if (c->defer_cb != NULL && c->state == CONN_OPEN && c->defer_at < deadline)
		deadline = c->defer_at;
	if (c->window_start != 0 && c->window_start + SORA_THROUGHPUT_WINDOW_MS < deadline)
		deadline = c->window_start + SORA_THROUGHPUT_WINDOW_MS;
	if (c->keepalive_ms > 0 && c->state == CONN_OPEN && c->keepalive_at < deadline)
		deadline = c->keepalive_at;
	if (deadline == UINT64_MAX) {
		uv_timer_stop(&c->timer);
		return;
	}
	uv_timer_start(&c->timer, conn_timer_cb, deadline > now ? deadline - now : 0, 0);
}

/* ---- input ------------------------------------------------------------ */

/* Stops reading while output is above the high-water mark; what is already
 * read waits in c->in (at most one read's worth past the handler's cap). */
static void conn_block_input(struct sora_conn *c)
{
	c->out_blocked = true;
	if (c->reading) {
		uv_read_stop(&c->s.stream);
		c->reading = false;
	}
}

/* May the handler be given input now? */
static bool conn_can_deliver(const struct sora_conn *c)
{
	return c->state == CONN_OPEN && !c->paused && !c->out_blocked && c->relay == NULL;
}

/* Offers data to the handler until it stops consuming; returns how much
 * it consumed. Stops early when the handler's output passes the high-water
 * mark: the session then waits for the client to read. */
static size_t conn_offer(struct sora_conn *c, const char *data, size_t len)
{
	size_t off = 0;

	c->in_input = true;
	while (off < len && conn_can_deliver(c)) {
		size_t n;

		if (sora_conn_output_full(c)) {
			conn_block_input(c);
			break;
		}
		n = c->h->input(c, data + off, len - off);
		if (c->starttls_pending) {
			/* Whatever followed STARTTLS in the same read was sent
			 * before the handshake: never execute it. */
			c->starttls_pending = false;
			off = len;
			break;
		}
		if (n == 0)
			break;
		off += n;
	}
	c->in_input = false;
	if (c->state == CONN_OPEN && !c->paused && sora_conn_output_full(c))
		conn_block_input(c);
	return off;
}

/* The handler left c->in.len bytes unconsumed: an incomplete unit that
 * reached the handler's cap is a protocol error. */
static void conn_check_overflow(struct sora_conn *c)
{
	size_t max = c->h->max_pending_input;

	if (conn_can_deliver(c) && max > 0 && c->in.len >= max) {
		if (c->h->input_overflow != NULL)
			c->h->input_overflow(c);
		sora_conn_close(c, SORA_CLOSE_PROTOCOL);
	}
}

/* Delivers plaintext to the handler (or the relay peer), keeping what is
 * not consumed. */
static void conn_deliver(struct sora_conn *c, const char *data, size_t len)
{
	size_t n;

	if (c->state != CONN_OPEN)
		return;
	if (c->relay != NULL) {
		conn_relay_input(c, data, len);
		return;
	}
	if (c->in.len > 0 || !conn_can_deliver(c)) {
		if (sora_buf_append(&c->in, data, len) < 0) {
			sora_warn(&c->log, "out of memory buffering input");
			sora_conn_close(c, SORA_CLOSE_ERROR);
			return;
		}
		conn_process_input(c);
		return;
	}
	n = conn_offer(c, data, len);
	if (c->relay != NULL && n < len) {
		/* The handler started relaying: the rest is the peer's. */
		conn_relay_input(c, data + n, len - n);
		return;
	}
	if (n < len && c->state == CONN_OPEN) {
		if (sora_buf_append(&c->in, data + n, len - n) < 0) {
			sora_conn_close(c, SORA_CLOSE_ERROR);
			return;
		}
		conn_check_overflow(c);
	}
}

/* Offers the buffered input to the handler again. */
static void conn_process_input(struct sora_conn *c)
{
	size_t off;

	if (c->in_input || c->in.len == 0)
		return;
	off = conn_offer(c, c->in.data, c->in.len);
	if (c->relay != NULL && off < c->in.len) {
		struct sora_buf rest = c->in;

		sora_buf_init(&c->in, 0);
		conn_relay_input(c, rest.data + off, rest.len - off);
		sora_buf_free(&rest);
		return;
	}
	if (off >= c->in.len)
		sora_buf_reset(&c->in);
	else if (off > 0)
		sora_buf_consume(&c->in, off);
	conn_check_overflow(c);
}

void sora_conn_pause(struct sora_conn *c)
{
	c->paused = true;
	if (c->reading) {
		uv_read_stop(&c->s.stream);
		c->reading = false;
	}
}

void sora_conn_resume(struct sora_conn *c)
{
	if (!c->paused)
		return;
	c->paused = false;
	if (c->state != CONN_OPEN)
		return;
	c->last_activity = uv_now(&c->loop->uv);
	if (c->in.len > 0)
		conn_process_input(c);
	if (c->state == CONN_OPEN && !c->paused && !c->out_blocked)
		sora_conn__start_reading(c);
	conn_update_window(c);
	conn_arm_timer(c);
}

int sora_conn_starttls(struct sora_conn *c)
{
	if (c->tls_active || c->listener->tls == NULL || c->outbound)
		return -1;
	/* The reply to STARTTLS must go out in plaintext before any TLS
	 * output: it is already in c->out, ahead of the handshake bytes. */
	if (conn_tls_setup(c) < 0)
		return -1;
	c->starttls_pending = c->in_input;
	sora_buf_reset(&c->in);
	return 0;
}

/* ---- relay ------------------------------------------------------------ */

static void conn_relay_input(struct sora_conn *c, const char *data, size_t len)
{
	struct sora_conn *peer = c->relay;

	if (len == 0)
		return;
	if (sora_conn_write(peer, data, len) < 0)
		return;                 /* the peer is closing; so are we */
	peer->last_activity = c->last_activity;
	if (sora_conn_output_full(peer))
		conn_block_input(c);
}

int sora_conn_relay(struct sora_conn *a, struct sora_conn *b)
{
	struct sora_conn *pair[2] = { a, b };

	if (a == b || a->loop != b->loop)
		return -1;
	for (int i = 0; i < 2; i++) {
		struct sora_conn *c = pair[i];
		if (c->state != CONN_OPEN || c->job != NULL || c->relay != NULL)
			return -1;
	}
	a->relay = b;
	b->relay = a;
	for (int i = 0; i < 2; i++) {
		struct sora_conn *c = pair[i];

		c->paused = false;
		c->out_blocked = false;
		/* Throughput floors and transfer marks were the handler's;
		 * the client side's command_timeout still applies. */
		c->in_transfer = false;
		c->window_start = 0;
	}
	for (int i = 0; i < 2; i++) {
		struct sora_conn *c = pair[i];

		/* Input that arrived after the handler's last unit (a client
		 * pipelining past its login) goes over first, in order. If
		 * the handler is inside its input() now, conn_deliver passes
		 * on the rest of that read once it returns. */
		if (c->in.len > 0 && !c->in_input) {
			struct sora_buf pending = c->in;

			sora_buf_init(&c->in, 0);
			conn_relay_input(c, pending.data, pending.len);
			sora_buf_free(&pending);
		}
		if (c->state == CONN_OPEN && !c->out_blocked)
			sora_conn__start_reading(c);
	}
	return 0;
}

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct sora_conn *c = h->data;
	struct sora_loop *loop = c->loop;

	if (loop->readbuf_busy) {
		/* Only possible if a callback re-entered the loop; refuse. */
		buf->base = NULL;
		buf->len = 0;
		return;
	}
	loop->readbuf_busy = true;
	buf->base = loop->readbuf;
	buf->len = SORA_LOOP_READ_BUF;
}

static void conn_proxy_input(struct sora_conn *c, const char *data, size_t len)
{
	struct sora_proxy_params params = { 0 };
	struct sora_proxy_result res;
	const char *error = NULL;
	size_t consumed = 0;
	enum sora_proxy_status st;

	if (sora_buf_append(&c->in, data, len) < 0) {
		sora_conn_close(c, SORA_CLOSE_ERROR);
		return;
	}
	st = sora_proxy_parse(&params, sora_buf_str(&c->in), &res, &consumed, &error);
	if (st == SORA_PROXY_NEED_MORE) {
		if (c->in.len > SORA_PROXY_MAX_PREAMBLE) {
			sora_warn(&c->log, "PROXY header too long: closing");
			sora_metric_inc(c->listener->m_proxy_rejected);
			sora_conn_close(c, SORA_CLOSE_PROXY);
		}
		return;
	}
	if (st == SORA_PROXY_ERROR) {
		sora_warn(&c->log, "invalid PROXY protocol header (%s): closing", error);
		sora_metric_inc(c->listener->m_proxy_rejected);
		sora_conn_close(c, SORA_CLOSE_PROXY);
		return;
	}
	if (res.command == SORA_PROXY_CMD_PROXY &&
	    (res.family == AF_INET || res.family == AF_INET6)) {
		char prev[64];

		sora_strlcpy(prev, c->peer_str, sizeof(prev));
		memcpy(&c->peer, &res.src, sizeof(res.src));
		memcpy(&c->local, &res.dst, sizeof(res.dst));
		c->has_peer_ip = sora_ip_from_sockaddr((struct sockaddr *)&c->peer, &c->peer_ip) == 0;
		sora_sockaddr_format((struct sockaddr *)&c->peer, c->peer_str, sizeof(c->peer_str));
		if (res.session_id_len > 0)
			sora_strlcpy(c->proxy_session, res.session_id, sizeof(c->proxy_session));
		sora_debug(&c->log, "PROXY v%d header from %s", res.version, prev);
	}
	/* Keep what followed the header: it is the client's first bytes. */
	sora_buf_consume(&c->in, consumed);
	conn_ready(c);
}

static void conn_handle_raw(struct sora_conn *c, const char *data, size_t len)
{
	switch (c->state) {
	case CONN_PROXY:
		conn_proxy_input(c, data, len);
		return;
	case CONN_HANDSHAKE:
	case CONN_OPEN:
		if (c->tls_active)
			conn_tls_input(c, data, len);
		else
			conn_deliver(c, data, len);
		return;
	default:
		return;
	}
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct sora_conn *c = stream->data;

	c->loop->readbuf_busy = false;
	if (nread == 0)
		return;
	if (nread < 0) {
		if (c->connecting) {
			sora_conn__connect_failed(c, nread == UV_EOF ? "connection closed during the TLS handshake"
								      : uv_strerror((int)nread));
			return;
		}
		if (c->state < CONN_CLOSING) {
			if (nread != UV_EOF && nread != UV_ECONNRESET)
				sora_debug(&c->log, "read error: %s", uv_strerror((int)nread));
			/* No farewell: the peer is gone. */
			sora_buf_free(&c->out);
			sora_conn_close(c, nread == UV_EOF || nread == UV_ECONNRESET
						   ? SORA_CLOSE_EOF : SORA_CLOSE_ERROR);
		}
		return;
	}
	c->bytes_in += (uint64_t)nread;
	c->last_activity = uv_now(&c->loop->uv);
	conn_handle_raw(c, buf->base, (size_t)nread);
	if (c->state == CONN_OPEN) {
		conn_update_window(c);
		conn_arm_timer(c);
	}
}

void sora_conn__start_reading(struct sora_conn *c)
{
	if (c->reading || c->paused || c->out_blocked || c->state >= CONN_CLOSING)
		return;
	if (uv_read_start(&c->s.stream, conn_alloc_cb, conn_read_cb) == 0)
		c->reading = true;
}

/* ---- TLS -------------------------------------------------------------- */

/* The session starts: the handler's open(), or its "too many
 * connections" reply for a connection over a limit. */
static void conn_open_session(struct sora_conn *c)
{
	c->state = CONN_OPEN;
	c->opened = true;
	if (c->reject >= 0) {
		c->h->reject(c, (enum sora_reject_reason)c->reject);
		sora_conn_close(c, SORA_CLOSE_LIMIT);
		return;
	}
	c->h->open(c);
}

static void conn_tls_opened(struct sora_conn *c)
{
	c->tls_handshake_done = true;
	sora_debug(&c->log, "TLS established: %s %s", SSL_get_version(c->ssl),
		   SSL_get_cipher_name(c->ssl));
	if (c->state != CONN_HANDSHAKE) {
		/* STARTTLS on an open session. */
		if (c->state == CONN_OPEN && c->h->tls_ready != NULL)
			c->h->tls_ready(c);
		return;
	}
	if (c->outbound)
		sora_conn__connected(c);
	else
		conn_open_session(c);
}

static void conn_tls_input(struct sora_conn *c, const char *data, size_t len)
{
	char *plain = c->loop->plainbuf;

	c->rx_ptr = data;
	c->rx_len = len;
	while (c->state == CONN_HANDSHAKE || c->state == CONN_OPEN) {
		int n, err;

		if (!c->tls_handshake_done) {
			n = SSL_do_handshake(c->ssl);
			if (n == 1) {
				conn_tls_opened(c);
				continue;
			}
		} else {
			n = SSL_read(c->ssl, plain, SORA_LOOP_READ_BUF);
			if (n > 0) {
				conn_deliver(c, plain, (size_t)n);
				continue;
			}
		}
		err = SSL_get_error(c->ssl, n);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
			break;
		if (c->connecting) {
			char why[300], ebuf[200];
			long vr = SSL_get_verify_result(c->ssl);

			if (vr != X509_V_OK)
				snprintf(why, sizeof(why), "TLS certificate verification failed: %s",
					 X509_verify_cert_error_string(vr));
			else
				snprintf(why, sizeof(why), "TLS handshake failed: %s",
					 err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL
						 ? "connection closed"
						 : sora_tls_last_error(ebuf, sizeof(ebuf)));
			c->rx_len = 0;
			sora_conn__connect_failed(c, why);
			return;
		}
		if (err == SSL_ERROR_ZERO_RETURN) {
			sora_conn_close(c, SORA_CLOSE_EOF);
		} else {
			char ebuf[200];
			sora_info(&c->log, "TLS %s failed: %s",
				  c->tls_handshake_done ? "read" : "handshake",
				  sora_tls_last_error(ebuf, sizeof(ebuf)));
			sora_buf_free(&c->out);
			sora_conn_close(c, SORA_CLOSE_ERROR);
			c->rx_len = 0;
			return;
		}
		break;
	}
	/* Handshake records (and alerts) that OpenSSL produced are in c->out. */
	c->rx_ptr = NULL;
	c->rx_len = 0;
	conn_flush(c);
}

/* ---- outbound ---------------------------------------------------------- */

void sora_conn__arm_timer(struct sora_conn *c)
{
	conn_arm_timer(c);
}

void sora_conn__transport_up(struct sora_conn *c, SSL *ssl, const void *preamble, size_t len)
{
	if (len > 0 && sora_buf_append(&c->out, preamble, len) < 0) {
		SSL_free(ssl);
		sora_conn__connect_failed(c, "out of memory");
		return;
	}
	if (ssl == NULL) {
		c->state = CONN_HANDSHAKE;      /* what sora_conn__connected expects */
		conn_flush(c);
		if (c->state == CONN_HANDSHAKE)
			sora_conn__connected(c);
		return;
	}
	if (sora_conn__tls_client(c, ssl) < 0) {
		sora_conn__connect_failed(c, "cannot create TLS session");
		return;
	}
	c->state = CONN_HANDSHAKE;
	sora_conn__start_reading(c);
	/* No input yet: this produces the ClientHello. */
	conn_tls_input(c, NULL, 0);
}

void sora_conn__connected(struct sora_conn *c)
{
	if (!c->connecting || c->state != CONN_HANDSHAKE)
		return;
	c->connecting = false;
	sora_connect__free(c);
	c->state = CONN_OPEN;
	c->opened = true;
	c->last_activity = uv_now(&c->loop->uv);
	sora_debug(&c->log, "connected to %s%s", c->peer_str, c->tls_active ? " (TLS)" : "");
	c->h->open(c);
	if (c->state == CONN_OPEN) {
		sora_conn__start_reading(c);
		if (c->in.len > 0)
			conn_process_input(c);
	}
	conn_arm_timer(c);
}

void sora_conn__connect_failed(struct sora_conn *c, const char *why)
{
	if (!c->connecting)
		return;
	c->connecting = false;
	sora_info(&c->log, "cannot connect to %s: %s", c->peer_str, why);
	if (c->h->connect_failed != NULL)
		c->h->connect_failed(c, why);
	c->data = NULL;
	/* Never opened: the handler's close() does not run. */
	conn_abort(c, SORA_CLOSE_ERROR);
}

/* ---- accept ----------------------------------------------------------- */

/* The peer is known (after PROXY): check limits, then TLS or open. */
static void conn_ready(struct sora_conn *c)
{
	struct sora_listener *l = c->listener;
	const struct sora_server_config *srv = l->srv;
	long total;

	c->log.peer = c->peer_str;
	total = atomic_fetch_add(&l->total, 1) + 1;
	c->reject = -1;
	if (srv->max_connections > 0 && total > srv->max_connections) {
		c->reject = SORA_REJECT_MAX_CONNECTIONS;
		atomic_fetch_sub(&l->total, 1);
	} else if (c->has_peer_ip) {
		/* Trusted networks (our own proxies, MTAs) are exempt from the
		 * per-IP cap: all their clients share their address. */
		int64_t per_ip = sora_conn_peer_trusted(c) ? 0 : srv->max_connections_per_ip;
		if (!sora_ip_table_acquire(l->per_ip, &c->peer_ip, per_ip)) {
			c->reject = SORA_REJECT_MAX_PER_IP;
			atomic_fetch_sub(&l->total, 1);
		}
	}
	if (c->reject < 0) {
		c->counted = true;
		sora_metric_inc(l->m_current);
	} else {
		sora_metric_inc(l->m_rejected_limit);
		sora_warn(&c->log, "connection refused: %s",
			  c->reject == SORA_REJECT_MAX_CONNECTIONS ? "max_connections reached"
								   : "max_connections_per_ip reached");
	}

	if (srv->tls) {
		if (conn_tls_setup(c) < 0) {
			sora_warn(&c->log, "cannot create TLS session");
			sora_conn_close(c, SORA_CLOSE_ERROR);
			return;
		}
		c->state = CONN_HANDSHAKE;
		c->started = uv_now(&c->loop->uv);
		conn_arm_timer(c);
		if (c->in.len > 0) {
			struct sora_buf pre = c->in;
			sora_buf_init(&c->in, 0);
			conn_tls_input(c, pre.data, pre.len);
			sora_buf_free(&pre);
		}
		return;
	}
	conn_open_session(c);
	if (c->state == CONN_OPEN && c->in.len > 0)
		conn_process_input(c);
	conn_update_window(c);
	conn_arm_timer(c);
}

static void conn_make_id(char *buf, size_t size)
{
	static atomic_uint_fast64_t counter;
	static uint32_t prefix;
	uint64_t n = atomic_fetch_add(&counter, 1);

	if (prefix == 0) {
		/* Process-unique prefix so ids from restarts do not repeat. */
		uint32_t p;
		uv_random(NULL, NULL, &p, sizeof(p), 0, NULL);
		prefix = p | 1;
	}
	snprintf(buf, size, "%08x%06llx", prefix, (unsigned long long)(n & 0xffffff));
}

/* A free slot for a new connection (growing the table), or -1. */
static int conn_slot_take(struct sora_conn *c)
{
	struct sora_loop *loop = c->loop;
	uint32_t i;

	if (loop->free_slot == UINT32_MAX || loop->nslots == 0) {
		uint32_t n = loop->nslots == 0 ? 64 : loop->nslots * 2;
		struct sora_slot *slots;

		if (loop->nslots >= (UINT32_MAX >> 2))
			return -1;
		slots = realloc(loop->slots, (size_t)n * sizeof(*slots));
		if (slots == NULL)
			return -1;
		for (i = loop->nslots; i < n; i++) {
			slots[i].conn = NULL;
			slots[i].gen = 1;
			slots[i].next_free = i + 1 < n ? i + 1 : UINT32_MAX;
		}
		loop->slots = slots;
		loop->free_slot = loop->nslots;
		loop->nslots = n;
	}
	i = loop->free_slot;
	loop->free_slot = loop->slots[i].next_free;
	loop->slots[i].conn = c;
	c->slot = i;
	c->gen = loop->slots[i].gen;
	return 0;
}

struct sora_conn *sora_conn__lookup(struct sora_loop *loop, struct sora_conn_key key)
{
	if (key.slot >= loop->nslots || loop->slots[key.slot].gen != key.gen)
		return NULL;
	return loop->slots[key.slot].conn;
}

struct sora_conn *sora_conn__new(struct sora_loop *loop, struct sora_listener *l,
				 const struct sora_conn_handler *h, bool is_unix)
{
	struct sora_conn *c = calloc(1, sizeof(*c));
	int rc;

	if (c == NULL)
		return NULL;
	c->loop = loop;
	c->listener = l;
	c->h = h;
	c->reject = -1;
	c->is_unix = is_unix;
	sora_buf_init(&c->in, 0);
	sora_buf_init(&c->out, 0);
	sora_buf_init(&c->inflight, 0);
	if (conn_slot_take(c) < 0) {
		free(c);
		return NULL;
	}
	if (c->is_unix)
		rc = uv_pipe_init(&loop->uv, &c->s.pipe, 0);
	else
		rc = uv_tcp_init(&loop->uv, &c->s.tcp);
	if (rc < 0) {
		conn_slot_release(c);
		free(c);
		return NULL;
	}
	c->s.handle.data = c;
	uv_timer_init(&loop->uv, &c->timer);
	c->timer.data = c;
	c->handles_open = 2;
	/* Link first so every later failure can go through the normal close. */
	c->next = loop->conns;
	if (loop->conns != NULL)
		loop->conns->prev = c;
	loop->conns = c;
	loop->conn_count++;

	conn_make_id(c->id, sizeof(c->id));
	c->log.session = c->id;
	c->log.proto = l->protocol;
	c->log.peer = c->peer_str;
	c->started = c->last_activity = uv_now(&loop->uv);
	sora_strlcpy(c->peer_str, "unknown", sizeof(c->peer_str));
	return c;
}

void sora_conn__accept(struct sora_loop_listen *ll)
{
	struct sora_loop *loop = ll->loop;
	struct sora_listener *l = ll->listener;
	const struct sora_server_config *srv = l->srv;
	struct sora_conn *c = sora_conn__new(loop, l, l->handler, l->addr.is_unix);
	int len;

	if (c == NULL)
		return;
	if (uv_accept((uv_stream_t *)&ll->h, &c->s.stream) < 0) {
		c->state = CONN_OPEN;
		c->close_reason = SORA_CLOSE_EOF;
		conn_finish_close(c);
		return;
	}
	sora_metric_inc(l->m_total);
	if (c->is_unix) {
		c->peer.ss_family = AF_UNIX;
		sora_strlcpy(c->peer_str, "unix", sizeof(c->peer_str));
	} else {
		len = sizeof(c->peer);
		uv_tcp_getpeername(&c->s.tcp, (struct sockaddr *)&c->peer, &len);
		len = sizeof(c->local);
		uv_tcp_getsockname(&c->s.tcp, (struct sockaddr *)&c->local, &len);
		c->has_peer_ip = sora_ip_from_sockaddr((struct sockaddr *)&c->peer, &c->peer_ip) == 0;
		c->link_ip = c->peer_ip;
		c->has_link_ip = c->has_peer_ip;
		sora_sockaddr_format((struct sockaddr *)&c->peer, c->peer_str, sizeof(c->peer_str));
		uv_tcp_nodelay(&c->s.tcp, 1);
	}

	if (srv->proxy_protocol.enabled) {
		/* Like Dovecot's haproxy listeners: such a port is for the load
		 * balancer only. Serving others directly would let anyone who
		 * reaches it bypass the balancer's policies. */
		if (!c->has_peer_ip && !c->is_unix) {
			sora_conn_close(c, SORA_CLOSE_PROXY);
			return;
		}
		if (!c->is_unix && !sora_cidr_list_match(&srv->proxy_protocol.trusted_proxies, &c->peer_ip)) {
			sora_warn(&c->log, "connection from %s which is not in proxy_protocol.trusted_proxies: closing",
				  c->peer_str);
			sora_metric_inc(l->m_proxy_rejected);
			c->state = CONN_PROXY;
			sora_conn_close(c, SORA_CLOSE_PROXY);
			return;
		}
		c->state = CONN_PROXY;
		sora_conn__start_reading(c);
		conn_arm_timer(c);
		return;
	}
	sora_conn__start_reading(c);
	conn_ready(c);
}
