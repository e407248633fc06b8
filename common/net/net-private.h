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
/* Output above this stops producers (jobs block, relays stop reading). */
#define SORA_OUT_HIGH_WATER  (256 * 1024)
#define SORA_OUT_LOW_WATER   (64 * 1024)
/* Largest PROXY preamble we wait for. */
#define SORA_PROXY_MAX_PREAMBLE 1536
/* The guide's throughput window ("over a 1-minute window"). */
#define SORA_THROUGHPUT_WINDOW_MS (60 * 1000)
/* Time a connection gets to finish its TLS handshake. */
#define SORA_HANDSHAKE_TIMEOUT_MS (30 * 1000)

struct sora_job;
struct sora_ip_table;

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
	uv_thread_t thread;
	uv_async_t async;                    /* jobs, stop requests */
	char *readbuf;                       /* SORA_LOOP_READ_BUF */
	char *plainbuf;                      /* decrypted data, SORA_LOOP_READ_BUF */
	bool readbuf_busy;

	struct sora_loop_listen *listens;
	size_t listens_count;

	struct sora_conn *conns;             /* doubly linked list of live conns */
	size_t conn_count;

	pthread_mutex_t lock;                /* guards the fields below */
	struct sora_job *ready_jobs;         /* jobs with output or done */
	bool stop_requested;
	bool stopping;
};

enum conn_state {
	CONN_PROXY = 0,      /* waiting for the PROXY header */
	CONN_HANDSHAKE,      /* implicit TLS handshake before open() */
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

	SSL *ssl;
	/* Raw bytes the custom BIO hands to OpenSSL (borrowed from readbuf). */
	const char *rx_ptr;
	size_t rx_len;

	struct sora_buf in;                  /* unconsumed plaintext (or PROXY preamble) */
	struct sora_buf out;                 /* queued ciphertext/plaintext */
	struct sora_buf inflight;            /* being written by wreq */

	struct sora_job *job;                /* active job, if any */

	/* Timeouts, in uv_now() milliseconds. */
	uint64_t started;
	uint64_t last_activity;
	uint64_t window_start;               /* 0 = no command in transit */
	uint64_t window_bytes;               /* bytes at window start */
	uint64_t bytes_in, bytes_out;
	int64_t idle_override;               /* 0 = server default */

	struct sockaddr_storage peer, local;
	struct sora_ip peer_ip;
	bool has_peer_ip;
	char id[20];
	char peer_str[64];
	char user[128];
	char proxy_session[65];
	struct sora_log_ctx log;
};

/* conn.c */
void sora_conn__accept(struct sora_loop_listen *ll);
void sora_conn__shutdown(struct sora_conn *c);
void sora_conn__job_output(struct sora_conn *c);
/* The connection is closing: wake its job's worker so writes fail fast. */
void sora_conn__job_cancel(struct sora_conn *c);

/* workers.c */
void sora_workers__loop_async(struct sora_loop *loop);

/* limits.c: per-IP connection counting shared by the loops. */
struct sora_ip_table *sora_ip_table_new(void);
void sora_ip_table_free(struct sora_ip_table **t);
/* Increments the count for ip unless it would pass max (0 = no max);
 * returns true if counted. */
bool sora_ip_table_acquire(struct sora_ip_table *t, const struct sora_ip *ip, int64_t max);
void sora_ip_table_release(struct sora_ip_table *t, const struct sora_ip *ip);

#endif
