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
 * worker pool the handler calls sora_conn_pause() and nothing is delivered
 * until sora_conn_resume().
 *
 * Output: sora_conn_write() queues bytes (encrypting them for TLS). The
 * queue has a high-water mark; writers on worker threads block there
 * (see workers.h). sora_conn_close() flushes what is queued, then closes.
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
};

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
	/* Output queue drained below the low-water mark (optional). */
	void (*drained)(struct sora_conn *c);
};

/* Session data for the handler. */
void sora_conn_set_data(struct sora_conn *c, void *data);
void *sora_conn_data(const struct sora_conn *c);

const struct sora_server_config *sora_conn_server(const struct sora_conn *c);
struct sora_listener *sora_conn_listener(const struct sora_conn *c);

/* Queue output (plaintext; encrypted here for TLS). Returns 0, or -1 when
 * the connection is closing (the bytes are dropped). */
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

/* Identity, for logs and policy. */
const char *sora_conn_id(const struct sora_conn *c);          /* session id */
const char *sora_conn_peer(const struct sora_conn *c);        /* "ip:port" after PROXY */
const struct sora_ip *sora_conn_peer_ip(const struct sora_conn *c); /* NULL for unix */
const struct sockaddr *sora_conn_peer_addr(const struct sora_conn *c);
const struct sockaddr *sora_conn_local_addr(const struct sora_conn *c);
/* True when the peer address is in the server's (or top-level)
 * trusted_networks. Unix-socket peers are trusted. */
bool sora_conn_peer_trusted(const struct sora_conn *c);
/* Session id received in the PROXY v2 header from a trusted proxy, or NULL. */
const char *sora_conn_proxy_session(const struct sora_conn *c);
void sora_conn_set_user(struct sora_conn *c, const char *user);  /* copied, escaped */
const char *sora_conn_user(const struct sora_conn *c);
const struct sora_log_ctx *sora_conn_log_ctx(const struct sora_conn *c);

/* Reference counting for jobs that outlive the client: a job holds a
 * reference; after close, writes are dropped and the memory stays until
 * the last reference is released. Loop thread only. */
void sora_conn_ref(struct sora_conn *c);
void sora_conn_unref(struct sora_conn *c);
bool sora_conn_closing(const struct sora_conn *c);

/* The loop the connection lives on (for workers.h). */
struct sora_loop *sora_conn_loop(const struct sora_conn *c);

#endif
