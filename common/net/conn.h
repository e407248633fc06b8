/* Connections: the object every protocol session sits on.
 *
 * A struct sora_conn hides plain TCP/unix vs TLS, the PROXY protocol
 * preamble, timeouts, connection limits and output backpressure from the
 * protocol code above it. Protocol code provides a struct sora_conn_handler
 * (a table of callbacks, HAProxy style) per server type.
 *
 * Life cycle, all on the connection's loop thread:
 *   accept -> [PROXY header from a trusted proxy] -> limits checked (an
 *   over-limit connection gets handler->reject() and is closed) -> [implicit
 *   TLS handshake] -> handler->open() -> handler->input() as data arrives
 *   ... -> handler->close() once, then the memory is freed after libuv has
 *   closed the handles (never inside a callback chain of the connection).
 *
 * Input: handler->input() receives the plaintext bytes not yet consumed and
 * returns how many it consumed; the rest is kept (bounded by the server's
 * input cap) and offered again with more data. While a job runs on the
 * worker pool input is paused (sora_conn_pause/resume) and nothing is
 * delivered.
 *
 * Output is bounded on every path. sora_conn_write() queues bytes
 * (encrypting them for TLS). While the queue is above its high-water mark
 * the connection stops reading and stops handing input to the handler, so
 * a client that pipelines commands and never reads the replies cannot make
 * the server queue more; a job's output waits in the job, which gives its
 * worker back (workers.h). A session whose queue passes a hard cap anyway
 * is closed ("output_overflow"). sora_conn_close() flushes what is queued,
 * then closes. A failed write (socket or TLS) closes the session.
 *
 * Close during a job: the framework runs handler->close() only after the
 * running job's done() has run, so a handler never frees state a worker
 * is using.
 *
 * Other threads reach a session only through sora_conn_post() with the
 * session's key (slot + generation): the callback runs on the session's
 * loop, or sees NULL if the session is gone.
 *
 * Outbound connections (sora_conn_connect) use the same object: a deadline
 * for connect and TLS, client TLS with verification, an optional PROXY v2
 * header; sora_conn_relay() then pairs two connections and copies bytes
 * both ways, each side reading only while the other has room (nginx's
 * proxy), closing together.
 *
 * Memory while idle: no read buffer is held per connection (reads land in
 * a per-loop buffer, only an incomplete line is copied out), and OpenSSL
 * releases its buffers (SSL_MODE_RELEASE_BUFFERS).
 *
 * Thread safety: every function here must be called on the connection's
 * loop thread, except where stated. */
#ifndef SORA_NET_CONN_H
#define SORA_NET_CONN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/core/cidr.h"
#include "common/core/log.h"

struct sora_conn;
struct sora_listener;
struct sora_server_config;

enum sora_close_reason {
	SORA_CLOSE_NORMAL = 0,      /* handler asked (LOGOUT, QUIT) */
	SORA_CLOSE_EOF,             /* peer closed */
	SORA_CLOSE_ERROR,           /* socket or TLS error */
	SORA_CLOSE_IDLE,            /* command_timeout */
	SORA_CLOSE_SESSION_MAX,     /* absolute_session_timeout */
	SORA_CLOSE_SLOW,            /* min_bytes_per_minute */
	SORA_CLOSE_PROXY,           /* PROXY protocol missing/bad/untrusted */
	SORA_CLOSE_LIMIT,           /* connection limit */
	SORA_CLOSE_SHUTDOWN,        /* server stopping */
	SORA_CLOSE_KICKED,          /* administrator */
	SORA_CLOSE_PROTOCOL,        /* too many protocol errors, line too long, ... */
	SORA_CLOSE_OUTPUT,          /* output passed the hard cap */
	SORA_CLOSE_PEER,            /* the relayed connection closed */
};
#define SORA_CLOSE_REASON_COUNT (SORA_CLOSE_PEER + 1)

const char *sora_close_reason_name(enum sora_close_reason r);
/* The sentence a protocol's farewell carries for a close reason ("Disconnected
 * for inactivity."); protocols add their own prefix and response code. */
const char *sora_close_reason_text(enum sora_close_reason r);

enum sora_reject_reason {
	SORA_REJECT_MAX_CONNECTIONS,
	SORA_REJECT_MAX_PER_IP,
};

struct sora_conn_handler {
	const char *protocol;   /* "imap", "pop3", ... (logs, metrics) */
	/* Largest amount of unconsumed input kept (e.g. one command line).
	 * When more arrives without input() consuming any, input_overflow()
	 * is called. */
	size_t max_pending_input;

	/* Session starts: allocate session state, send the greeting.
	 * May close the connection. */
	void (*open)(struct sora_conn *c);
	/* Plaintext input; return bytes consumed (0..len). */
	size_t (*input)(struct sora_conn *c, const char *data, size_t len);
	/* Pending input reached max_pending_input without a consumable unit:
	 * write the protocol's error; the connection is then closed. */
	void (*input_overflow)(struct sora_conn *c);
	/* Write the protocol's "too many connections" reply (plaintext or,
	 * for implicit TLS, after the handshake). */
	void (*reject)(struct sora_conn *c, enum sora_reject_reason why);
	/* Write a farewell before a timeout/shutdown/kick close (optional). */
	void (*farewell)(struct sora_conn *c, enum sora_close_reason why);
	/* The connection is going away: free session state. Called exactly
	 * once for every connection that got open(). */
	void (*close)(struct sora_conn *c, enum sora_close_reason why);
	/* sora_conn_set_keepalive() interval passed (optional): IMAP IDLE's
	 * "* OK Still here". Not called while a job runs. */
	void (*keepalive)(struct sora_conn *c);
	/* Output queue drained below the low-water mark (optional). */
	void (*drained)(struct sora_conn *c);
	/* Outbound connections only: connecting failed (address, refused,
	 * deadline, TLS verification); called instead of open(), and close()
	 * is not called. The session data set in the connect params is the
	 * caller's to free here. */
	void (*connect_failed)(struct sora_conn *c, const char *why);
	/* A STARTTLS handshake completed (optional): ManageSieve re-issues
	 * its capabilities then (RFC 5804 2.2), which cannot be written
	 * before the handshake. */
	void (*tls_ready)(struct sora_conn *c);
};

/* Session data for the handler. */
void sora_conn_set_data(struct sora_conn *c, void *data);
void *sora_conn_data(const struct sora_conn *c);

const struct sora_server_config *sora_conn_server(const struct sora_conn *c);
struct sora_listener *sora_conn_listener(const struct sora_conn *c);

/* Queue output (plaintext; encrypted here for TLS). Returns 0, or -1 when
 * the connection is closing or this write failed and closed it (the bytes
 * are dropped). */
int sora_conn_write(struct sora_conn *c, const void *data, size_t len);
int sora_conn_printf(struct sora_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Bytes queued and not yet written to the socket. */
size_t sora_conn_output_pending(const struct sora_conn *c);
/* True while output is above the high-water mark. */
bool sora_conn_output_full(const struct sora_conn *c);

/* Flush queued output, then close. Idempotent. */
void sora_conn_close(struct sora_conn *c, enum sora_close_reason why);

/* Stop/restart delivering input (a job is running). */
void sora_conn_pause(struct sora_conn *c);
void sora_conn_resume(struct sora_conn *c);

/* ---- reaching a session from other threads ---- */

/* Names a session for as long as it lives: a slot in its loop's table and
 * that slot's generation, which changes when the slot is reused. Copyable
 * to any thread. */
struct sora_conn_key {
	uint32_t loop;
	uint32_t slot;
	uint32_t gen;
};
struct sora_conn_key sora_conn_key(const struct sora_conn *c);
struct sora_net *sora_conn_net(const struct sora_conn *c);

/* Runs on the session's loop thread. c is the live session, or NULL when
 * it is gone or closing (or the runtime stopped): then only release arg. */
typedef void sora_conn_post_cb(struct sora_conn *c, void *arg);

/* Any thread. Queues fn(c, arg) for the session's loop. Returns 0 (fn will
 * run exactly once), or -1 if the runtime no longer runs that loop (fn will
 * not run; arg stays the caller's). */
int sora_conn_post(struct sora_net *net, struct sora_conn_key key, sora_conn_post_cb *fn,
		   void *arg);

/* ---- outbound connections and relaying ---- */

struct ssl_ctx_st;   /* OpenSSL's SSL_CTX */

struct sora_connect_params {
	/* "host:port", "[v6]:port" or "unix:/path". A host name is resolved
	 * without blocking the loop (libuv's getaddrinfo). */
	const char *addr;
	/* Connect, TLS handshake and certificate check must finish within
	 * this many ms; 0 means 10 s. */
	int64_t timeout_ms;
	/* Client TLS: a context from sora_tls_client_ctx_new() (borrowed;
	 * must outlive the connection), or NULL for plain TCP. With the
	 * context's verification on, the certificate must chain to its CA
	 * file and match server_name. */
	struct ssl_ctx_st *tls;
	/* SNI and the name the certificate must match; NULL = host of addr. */
	const char *server_name;
	/* Write a PROXY v2 header first, carrying the owner's client and
	 * local addresses and its session id. */
	bool proxy_v2;
	/* Session data of the new connection (sora_conn_data). */
	void *data;
};

/* Loop thread of owner. Starts connecting; the new connection lives on the
 * owner's loop and server (its logs carry the owner's session id). The
 * handler's open() runs once it is connected (and TLS verified), or
 * connect_failed() if not (also when the server shuts down first). Until
 * sora_conn_relay() pairs them, the two are independent: the owner closes
 * its outbound connection when it closes (sora_conn_close on it runs no
 * handler callback while it is still connecting). Returns 0 with *c_r set,
 * or -1 with a static *error_r (bad address, out of memory) and nothing
 * started. */
int sora_conn_connect(struct sora_conn *owner, const struct sora_connect_params *params,
		      const struct sora_conn_handler *handler, struct sora_conn **c_r,
		      const char **error_r);

/* Loop thread. Pairs two open connections of the same loop, neither with a
 * job running: from now on input of each is written to the other (after
 * any input already buffered, in order), each reads only while the other's
 * output is below its high-water mark, and when one closes the other
 * flushes and closes (reason "peer"). Handlers see no more input() calls;
 * their close() still runs. Returns -1 if the pair is not eligible. */
int sora_conn_relay(struct sora_conn *a, struct sora_conn *b);

/* Start a server-side TLS handshake after the caller queued its "go
 * ahead" reply. Input already buffered beyond the STARTTLS command is
 * discarded (CVE-2011-0411 style injection). -1 if no TLS is configured or
 * TLS is already active. */
int sora_conn_starttls(struct sora_conn *c);
bool sora_conn_is_tls(const struct sora_conn *c);
bool sora_conn_tls_available(const struct sora_conn *c);

/* Slowloris protection applies while a command is in transit. Protocol
 * code marks phases where the client legitimately sends a lot slowly or
 * nothing at all: transfer=true while receiving a literal or DATA (the
 * throughput floor applies even though no line is pending), exempt=true
 * while in IDLE (only the idle timeout logic of the handler applies). */
void sora_conn_set_transfer(struct sora_conn *c, bool in_transfer);
void sora_conn_set_throughput_exempt(struct sora_conn *c, bool exempt);
/* IDLE and similar: replace the idle timeout for this phase (ms, <0 =
 * none, 0 = back to the server's command_timeout). */
void sora_conn_set_idle_timeout(struct sora_conn *c, int64_t ms);

/* A one-shot timer on the session (a progressive login delay, say): fn(c,
 * arg) runs exactly once on the loop thread -- after ms milliseconds, or,
 * if the connection closes first, while it closes (then
 * sora_conn_closing(c) is true and fn only releases arg), always before
 * handler->close(). It holds no thread and no handle of its own (it rides
 * on the connection's timer), and while it is pending the session is not
 * idle (command_timeout does not run, as during a job). It does not pause
 * input: a caller that must not see input meanwhile calls sora_conn_pause().
 * At most one is pending per connection. Returns 0, or -1 when one is
 * pending already or the connection is closing (fn will not run). */
typedef void sora_conn_defer_cb(struct sora_conn *c, void *arg);
int sora_conn_defer(struct sora_conn *c, int64_t ms, sora_conn_defer_cb *fn, void *arg);
/* Whether a sora_conn_defer() callback is pending. */
bool sora_conn_deferred(const struct sora_conn *c);

/* Calls handler->keepalive() every ms milliseconds from now on (0 = stop),
 * without holding anything but the connection's existing timer: an idling
 * session stays a timer entry, not a thread. */
void sora_conn_set_keepalive(struct sora_conn *c, int64_t ms);
/* Identity, for logs and policy. */
const char *sora_conn_id(const struct sora_conn *c);          /* session id */
const char *sora_conn_peer(const struct sora_conn *c);        /* "ip:port" after PROXY */
const struct sora_ip *sora_conn_peer_ip(const struct sora_conn *c); /* NULL for unix */
const struct sockaddr *sora_conn_peer_addr(const struct sora_conn *c);
const struct sockaddr *sora_conn_local_addr(const struct sora_conn *c);
/* True when the peer address is in the server's (or top-level)
 * trusted_networks. Unix-socket peers are trusted. */
bool sora_conn_peer_trusted(const struct sora_conn *c);
/* The host connected to us: the peer, or the proxy that sent a PROXY
 * header (then sora_conn_peer_ip() is the client it spoke for). NULL for
 * unix sockets. Who may use master credentials is decided on this. */
const struct sora_ip *sora_conn_link_ip(const struct sora_conn *c);
/* True when that host is in trusted_networks (unix peers are trusted). */
bool sora_conn_link_trusted(const struct sora_conn *c);
/* Session id received in the PROXY v2 header from a trusted proxy, or NULL. */
const char *sora_conn_proxy_session(const struct sora_conn *c);
void sora_conn_set_user(struct sora_conn *c, const char *user);  /* copied, escaped */
const char *sora_conn_user(const struct sora_conn *c);
const struct sora_log_ctx *sora_conn_log_ctx(const struct sora_conn *c);

/* Reference counting: a job holds a reference; after close, writes are
 * dropped and the memory stays until the last reference is released.
 * Loop thread only. */
void sora_conn_ref(struct sora_conn *c);
void sora_conn_unref(struct sora_conn *c);
bool sora_conn_closing(const struct sora_conn *c);

/* The loop the connection lives on (for workers.h). */
struct sora_loop *sora_conn_loop(const struct sora_conn *c);

#endif
