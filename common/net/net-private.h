/* Internal structures of common/net, shared by net.c, conn.c, workers.c and
 * limits.c. Nothing outside common/net includes this. */
#ifndef SORA_NET_PRIVATE_H
#define SORA_NET_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "common/core/buf.h"
#include "common/core/cidr.h"
#include "common/core/log.h"
#include "common/net/addr.h"
#include "common/net/conn.h"
#include "common/net/net.h"

/* Reads land in one buffer per loop; a connection keeps only what its
 * handler did not consume yet. */
#define SORA_LOOP_READ_BUF   (64 * 1024)
/* Output above the high-water mark stops producers: the session's input is
 * no longer read or handed to its handler, a job's output stays in the job
 * (which then parks), a relay stops reading the other side. They start
 * again once output is below the low-water mark. */
#define SORA_OUT_HIGH_WATER  (256 * 1024)
#define SORA_OUT_LOW_WATER   (64 * 1024)
/* Output a session may have queued at all. Every producer stops at the
 * high-water mark, so only a handler that writes one reply of this size
 * in a single call gets here; the session is closed (reason
 * "output_overflow") instead of growing without bound. */
#define SORA_OUT_HARD_CAP    (4 * 1024 * 1024)
/* Largest PROXY preamble we wait for. */
#define SORA_PROXY_MAX_PREAMBLE 1536
/* The guide's throughput window ("over a 1-minute window"). */
#define SORA_THROUGHPUT_WINDOW_MS (60 * 1000)
/* During shutdown, a session whose command waits for the client to read
 * is closed after this long without progress. */
#define SORA_SHUTDOWN_STALL_MS (10 * 1000)
/* Time a connection gets to finish its TLS handshake. */
#define SORA_HANDSHAKE_TIMEOUT_MS (30 * 1000)

struct sora_job;
struct sora_ip_table;
struct sora_post;

struct sora_listener {
	struct sora_net *net;
	const struct sora_server_config *srv;
	const struct sora_conn_handler *handler;
	struct sora_tls_ctx *tls;            /* NULL without tls/starttls */
	struct sora_listen_addr addr;
	const char *protocol;
	int unix_fd;                         /* shared by all loops for unix sockets */

	atomic_long total;                   /* current connections past the limit check */
	struct sora_ip_table *per_ip;

	struct sora_metric_series *m_total;
	struct sora_metric_series *m_current;
	struct sora_metric_series *m_rejected_limit;
	struct sora_metric_series *m_timeout_idle;
	struct sora_metric_series *m_timeout_session;
	struct sora_metric_series *m_timeout_slow;
	struct sora_metric_series *m_proxy_rejected;
	/* Sessions ended, by close reason (index: enum sora_close_reason). */
	struct sora_metric_series *m_closed[SORA_CLOSE_REASON_COUNT];
};

struct sora_slot {
	struct sora_conn *conn;              /* NULL when free */
	uint32_t gen;
	uint32_t next_free;
};

struct sora_loop_listen {
	union {
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	struct sora_listener *listener;
	struct sora_loop *loop;
	bool open;
};

struct sora_loop {
	struct sora_net *net;
	int index;
	uv_loop_t uv;
	bool uv_ready;                       /* uv_loop_init done */
	uv_thread_t thread;
	uv_async_t async;                    /* jobs, stop requests */
	char *readbuf;                       /* SORA_LOOP_READ_BUF */
	char *plainbuf;                      /* decrypted data, SORA_LOOP_READ_BUF */
	bool readbuf_busy;

	struct sora_loop_listen *listens;
	size_t listens_count;

	struct sora_conn *conns;             /* doubly linked list of live conns */
	size_t conn_count;

	/* Session keys (conn.h): slot -> connection, with a generation
	 * that changes whenever a slot is reused. Loop thread only. */
	struct sora_slot *slots;
	uint32_t nslots;
	uint32_t free_slot;                  /* head of the free list, or UINT32_MAX */

	pthread_mutex_t lock;                /* guards the fields below */
	struct sora_job *ready_jobs;         /* jobs with output or done */
	struct sora_post *posts, *posts_tail; /* sora_conn_post() queue */
	/* Jobs submitted for this loop whose done() has not run yet; the
	 * loop keeps its async handle (their only way back) until zero. */
	long jobs_outstanding;
	bool async_closed;                   /* no more posts or jobs accepted */
	bool stop_requested;
	bool stopping;
};

enum conn_state {
	CONN_PROXY = 0,      /* waiting for the PROXY header */
	CONN_CONNECTING,     /* outbound: resolving, connecting */
	CONN_HANDSHAKE,      /* TLS handshake before open() (implicit TLS, outbound TLS) */
	CONN_OPEN,           /* handler active */
	CONN_CLOSING,        /* flushing output, then close */
	CONN_CLOSED,         /* handles closing/closed */
};

struct sora_conn {
	struct sora_conn *next, *prev;       /* loop->conns */
	struct sora_loop *loop;
	struct sora_listener *listener;
	const struct sora_conn_handler *h;
	void *data;

	union {
		uv_tcp_t tcp;
		uv_pipe_t pipe;
		uv_stream_t stream;
		uv_handle_t handle;
	} s;
	uv_timer_t timer;
	uv_write_t wreq;
	uv_connect_t creq;                   /* outbound connect */
	int handles_open;                    /* closes pending before free */
	int refs;

	enum conn_state state;
	enum sora_close_reason close_reason;
	int reject;                          /* -1 or enum sora_reject_reason */
	bool counted;                        /* included in listener totals */
	bool opened;                         /* handler->open() was called */
	bool paused;
	bool reading;
	bool in_input;                       /* inside handler->input() */
	bool writing;                        /* wreq in flight */
	bool tls_active;
	bool tls_handshake_done;
	bool starttls_pending;               /* drop rest of current input */
	bool in_transfer;
	bool throughput_exempt;
	bool is_unix;
	bool freed;
	bool close_now;                      /* conn_do_close() scheduled */
	bool out_blocked;                    /* input stopped: output above high water */
	bool close_deferred;                 /* handler->close() waits for the job */
	bool outbound;                       /* made by sora_conn_connect() */
	bool connecting;                     /* outbound, not open yet */

	SSL *ssl;
	/* Raw bytes the custom BIO hands to OpenSSL (borrowed from readbuf). */
	const char *rx_ptr;
	size_t rx_len;

	struct sora_buf in;                  /* unconsumed plaintext (or PROXY preamble) */
	struct sora_buf out;                 /* queued ciphertext/plaintext */
	struct sora_buf inflight;            /* being written by wreq */

	struct sora_job *job;                /* active job, if any */
	struct sora_conn *relay;             /* paired connection (sora_conn_relay) */
	uint32_t slot;                       /* in loop->slots */
	uint32_t gen;
	struct sora_connect *connect;        /* outbound: connect state until open */

	/* Timeouts, in uv_now() milliseconds. */
	uint64_t started;
	uint64_t last_activity;
	uint64_t window_start;               /* 0 = no command in transit */
	uint64_t window_bytes;               /* bytes at window start */
	uint64_t bytes_in, bytes_out;
	int64_t idle_override;               /* 0 = server default */
	int64_t keepalive_ms;                /* 0 = off (sora_conn_set_keepalive) */
	uint64_t keepalive_at;               /* next handler->keepalive() */
	int64_t connect_timeout_ms;          /* outbound: deadline for connect + TLS */
	/* sora_conn_defer(): one pending callback, fired by the timer. */
	sora_conn_defer_cb *defer_cb;        /* NULL: none pending */
	void *defer_arg;
	uint64_t defer_at;

	struct sockaddr_storage peer, local;
	struct sora_ip peer_ip;
	bool has_peer_ip;
	/* The host at the other end of the socket: the same as peer_ip,
	 * except after a PROXY header (then the proxy, peer_ip the client). */
	struct sora_ip link_ip;
	bool has_link_ip;
	char id[20];
	char peer_str[64];
	char user[128];
	char proxy_session[65];
	struct sora_log_ctx log;
};

/* net.c */
struct sora_pool *sora_net__pool(struct sora_net *net);
void sora_net__set_pool(struct sora_net *net, struct sora_pool *pool);
struct sora_loop *sora_net__loop(struct sora_net *net, int index);
/* NULL when index names no loop. */
struct sora_loop *sora_net__loop_checked(struct sora_net *net, uint32_t index);

/* conn.c */
/* The live connection a key names, or NULL. */
struct sora_conn *sora_conn__lookup(struct sora_loop *loop, struct sora_conn_key key);
/* Calls handler->close() (once) and forgets the session data. */
void sora_conn__handler_close(struct sora_conn *c);
void sora_conn__accept(struct sora_loop_listen *ll);
void sora_conn__shutdown(struct sora_conn *c);
/* Allocates a connection on loop for listener l (accepted or outbound):
 * handles initialised, linked into the loop, a session key assigned. */
struct sora_conn *sora_conn__new(struct sora_loop *loop, struct sora_listener *l,
				 const struct sora_conn_handler *h, bool is_unix);
/* TLS client side for an outbound connection. */
int sora_conn__tls_client(struct sora_conn *c, SSL *ssl);
/* Outbound: the socket is connected. Writes the preamble (a PROXY
 * header), then starts TLS with ssl (owned) or opens the session. */
void sora_conn__transport_up(struct sora_conn *c, SSL *ssl, const void *preamble, size_t len);
/* Outbound connection established (TCP, then TLS if any): open it. */
void sora_conn__connected(struct sora_conn *c);
/* Outbound connect failed: tell the handler and free the connection. */
void sora_conn__connect_failed(struct sora_conn *c, const char *why);
void sora_conn__start_reading(struct sora_conn *c);
void sora_conn__arm_timer(struct sora_conn *c);

/* workers.c: the connection's output fell below the low-water mark, or it
 * is closing; move the job's output, resume or complete the job. */
void sora_conn__job_output(struct sora_conn *c);
/* The connection is closing: cancel its job (a parked job completes now,
 * a running one when its worker returns). */
void sora_conn__job_cancel(struct sora_conn *c);
void sora_workers__loop_async(struct sora_loop *loop);
/* Loop thread: runs queued posts; with drop = true every post is dropped
 * (its callback sees c == NULL). */
void sora_workers__run_posts(struct sora_loop *loop, bool drop);

/* connect.c: frees an outbound connection's connect state. */
void sora_connect__free(struct sora_conn *c);

/* limits.c: per-IP connection counting shared by the loops. */
struct sora_ip_table *sora_ip_table_new(void);
void sora_ip_table_free(struct sora_ip_table **t);
/* Increments the count for ip unless it would pass max (0 = no max);
 * returns true if counted. */
bool sora_ip_table_acquire(struct sora_ip_table *t, const struct sora_ip *ip, int64_t max);
void sora_ip_table_release(struct sora_ip_table *t, const struct sora_ip *ip);

#endif
