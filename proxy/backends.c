/* Backend pools, routing and health: see backends.h. */
#include "proxy/backends.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/config/config.h"
#include "common/core/log.h"
#include "common/core/str.h"
#include "common/metrics/metrics.h"
#include "common/net/addr.h"
#include "common/proto/proxy-protocol.h"
#include "common/tls/tls.h"

int64_t proxy_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static enum proxy_proto proto_of(enum sora_server_type t)
{
	switch (t) {
	case SORA_SRV_POP3_PROXY: return PROXY_PROTO_POP3;
	case SORA_SRV_LMTP_PROXY: return PROXY_PROTO_LMTP;
	case SORA_SRV_MANAGESIEVE_PROXY: return PROXY_PROTO_SIEVE;
	default: return PROXY_PROTO_IMAP;
	}
}

int proxy_pool_create(const struct sora_server_config *srv, struct proxy_pool **pool_r,
		      char *err, size_t errsize)
{
	struct sora_metric *up, *sessions, *routed, *failures, *failover, *routing;
	struct proxy_pool *p = calloc(1, sizeof(*p));
	const char *ids[SORA_RING_MAX_NODES];

	*pool_r = NULL;
	if (p == NULL)
		goto oom;
	p->srv = srv;
	pthread_mutex_init(&p->lock, NULL);
	p->proto = proto_of(srv->type);
	p->protocol = sora_server_type_protocol(srv->type);
	p->n = srv->remote_addrs_count;
	if (p->n == 0 || p->n > SORA_RING_MAX_NODES) {
		snprintf(err, errsize, "[servers.%s]: remote_addrs must name 1 to %d backends",
			 srv->name, SORA_RING_MAX_NODES);
		free(p);
		return -1;
	}
	p->b = calloc(p->n, sizeof(*p->b));
	if (p->b == NULL)
		goto oom;
	up = sora_metric_gauge("proxy_backend_up",
			       "1 while the proxy considers the backend healthy, else 0.",
			       "server,protocol,backend");
	sessions = sora_metric_gauge("proxy_backend_connections",
				     "Sessions relayed to the backend now.", "server,protocol,backend");
	routed = sora_metric_counter("proxy_backend_logins_total",
				     "Sessions logged in on the backend by the proxy.",
				     "server,protocol,backend");
	failures = sora_metric_counter("proxy_backend_failures_total",
				       "Failed connects or logins to the backend (and failed health checks).",
				       "server,protocol,backend");
	failover = sora_metric_counter("proxy_failovers_total",
				       "Sessions that went to another backend than their first choice.",
				       "protocol");
	routing = sora_metric_counter("proxy_routing_decisions_total",
				      "Routing decisions by reason (ring, override).", "protocol,reason");
	p->m_failover = sora_metric_with(failover, p->protocol);
	p->m_route_ring = sora_metric_with(routing, p->protocol, "ring");
	p->m_route_override = sora_metric_with(routing, p->protocol, "override");
	for (size_t i = 0; i < p->n; i++) {
		struct proxy_backend *b = &p->b[i];
		uint64_t port;
		char e[128];

		sora_strlcpy(b->addr, srv->remote_addrs[i], sizeof(b->addr));
		if (strncmp(b->addr, "unix:", 5) == 0) {
			/* A local socket: its path is its identity. */
			sora_strlcpy(b->host, b->addr, sizeof(b->host));
			sora_strlcpy(b->id, b->addr, sizeof(b->id));
		} else if (sora_addr_split(b->addr, b->host, sizeof(b->host), &port, e, sizeof(e)) < 0 ||
		    b->host[0] == '\0' || port == 0) {
			snprintf(err, errsize, "[servers.%s]: remote_addrs: bad address '%s'", srv->name,
				 b->addr);
			goto fail;
		} else {
			sora_strlcpy(b->id, b->host, sizeof(b->id));
			for (size_t j = 0; j < p->n; j++) {
				char h2[256];
				uint64_t p2;

				if (j != i && sora_addr_split(srv->remote_addrs[j], h2, sizeof(h2), &p2,
							      e, sizeof(e)) == 0 && strcmp(h2, b->host) == 0)
					sora_strlcpy(b->id, b->addr, sizeof(b->id));
			}
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(p->b[j].addr, b->addr) == 0) {
				snprintf(err, errsize, "[servers.%s]: remote_addrs: '%s' is listed twice",
					 srv->name, b->addr);
				goto fail;
			}
		}
		ids[i] = b->id;
		b->m_up = sora_metric_with(up, srv->name, p->protocol, b->addr);
		b->m_sessions = sora_metric_with(sessions, srv->name, p->protocol, b->addr);
		b->m_routed = sora_metric_with(routed, srv->name, p->protocol, b->addr);
		b->m_failures = sora_metric_with(failures, srv->name, p->protocol, b->addr);
		sora_metric_set(b->m_up, 1);
	}
	if (sora_ring_build(ids, p->n, &p->ring) < 0)
		goto oom;
	if (srv->remote_tls) {
		p->tls = sora_tls_client_ctx_new(srv->remote_tls_verify, srv->remote_tls_ca_file, err,
						 errsize);
		if (p->tls == NULL)
			goto fail;
	}
	*pool_r = p;
	return 0;
oom:
	snprintf(err, errsize, "out of memory");
fail:
	if (p != NULL) {
		free(p->b);
		sora_ring_free(&p->ring);
		free(p);
	}
	return -1;
}

void proxy_pool_free(struct proxy_pool **pool)
{
	struct proxy_pool *p = *pool;

	if (p == NULL)
		return;
	*pool = NULL;
	if (p->tls != NULL)
		SSL_CTX_free(p->tls);
	pthread_mutex_destroy(&p->lock);
	sora_ring_free(&p->ring);
	free(p->b);
	free(p);
}

static bool matches(const struct proxy_backend *b, const char *name)
{
	return strcasecmp(b->id, name) == 0 || strcasecmp(b->host, name) == 0 ||
	       strcasecmp(b->addr, name) == 0;
}

size_t proxy_pool_route(struct proxy_pool *pool, int64_t account_id, const char *override,
			size_t *order_r, size_t max, enum proxy_route_reason *reason_r)
{
	size_t ring[SORA_RING_MAX_NODES], nring, count = 0;
	char key[32];
	int klen = snprintf(key, sizeof(key), "%lld", (long long)account_id);
	bool any_up = false;
	ssize_t pinned = -1;

	nring = sora_ring_lookup(pool->ring, key, (size_t)klen, ring, SORA_RING_MAX_NODES);
	for (size_t i = 0; i < nring; i++)
		any_up |= !atomic_load(&pool->b[ring[i]].down);
	if (override != NULL && override[0] != '\0') {
		for (size_t i = 0; i < pool->n; i++) {
			if (matches(&pool->b[i], override)) {
				pinned = (ssize_t)i;
				break;
			}
		}
	}
	*reason_r = PROXY_ROUTE_RING;
	if (pinned >= 0 && (!atomic_load(&pool->b[pinned].down) || !any_up)) {
		order_r[count++] = (size_t)pinned;
		*reason_r = PROXY_ROUTE_OVERRIDE;
	}
	for (size_t i = 0; i < nring && count < max; i++) {
		size_t b = ring[i];

		if ((ssize_t)b == pinned && count > 0 && order_r[0] == b)
			continue;
		if (any_up && atomic_load(&pool->b[b].down))
			continue;
		if (count == 0 && b != ring[0])
			*reason_r = PROXY_ROUTE_FAILOVER;
		order_r[count++] = b;
	}
	sora_metric_inc(*reason_r == PROXY_ROUTE_OVERRIDE ? pool->m_route_override : pool->m_route_ring);
	if (*reason_r == PROXY_ROUTE_FAILOVER)
		sora_metric_inc(pool->m_failover);
	return count;
}

static void set_down(struct proxy_pool *pool, struct proxy_backend *b, bool down, const char *why)
{
	bool was = atomic_exchange(&b->down, down);

	if (was == down)
		return;
	sora_metric_set(b->m_up, down ? 0 : 1);
	if (down)
		sora_warn(NULL, "[servers.%s] backend %s is down: %s", pool->srv->name, b->addr, why);
	else
		sora_info(NULL, "[servers.%s] backend %s is up again", pool->srv->name, b->addr);
}

void proxy_backend_failed(struct proxy_pool *pool, size_t i, const char *why)
{
	struct proxy_backend *b = &pool->b[i];
	int fails = atomic_fetch_add(&b->fails, 1) + 1;

	sora_metric_inc(b->m_failures);
	if (fails >= PROXY_FAILS_DOWN)
		set_down(pool, b, true, why);
}

void proxy_backend_ok(struct proxy_pool *pool, size_t i)
{
	struct proxy_backend *b = &pool->b[i];

	atomic_store(&b->fails, 0);
	sora_metric_inc(b->m_routed);
	set_down(pool, b, false, "");
}

void proxy_pool_sieve_ext(struct proxy_pool *pool, char *out, size_t size)
{
	pthread_mutex_lock(&pool->lock);
	snprintf(out, size, "%s", pool->sieve_ext);
	pthread_mutex_unlock(&pool->lock);
}

void proxy_pool_set_sieve_ext(struct proxy_pool *pool, const char *ext, size_t len)
{
	/* Only printable ASCII without quotes: it is echoed to clients. */
	for (size_t i = 0; i < len; i++) {
		if (ext[i] < 0x20 || ext[i] > 0x7e || ext[i] == '"' || ext[i] == '\\')
			return;
	}
	if (len >= sizeof(pool->sieve_ext))
		return;
	pthread_mutex_lock(&pool->lock);
	memcpy(pool->sieve_ext, ext, len);
	pool->sieve_ext[len] = '\0';
	pthread_mutex_unlock(&pool->lock);
}

void proxy_backend_session(struct proxy_pool *pool, size_t i, int delta)
{
	struct proxy_backend *b = &pool->b[i];

	atomic_fetch_add(&b->sessions, delta);
	sora_metric_add(b->m_sessions, delta);
}

void proxy_pool_count_failover(struct proxy_pool *pool)
{
	sora_metric_inc(pool->m_failover);
}

/* ---- active checks ------------------------------------------------------ */

static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int64_t left = deadline - proxy_now_ms();

	if (left <= 0)
		return -1;
	return poll(&pfd, 1, (int)left) == 1 ? 0 : -1;
}

static int tcp_connect(const char *host, const char *port, int64_t deadline)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	int fd, err = 0;
	socklen_t elen = sizeof(err);

	if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL)
		return -1;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) < 0 && errno != EINPROGRESS) {
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return -1;
	if (wait_fd(fd, POLLOUT, deadline) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int unix_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -1;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

struct hc_io {
	int fd;
	SSL *ssl;
	int64_t deadline;
};

static int hc_write(struct hc_io *io, const void *data, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n;

		if (io->ssl != NULL) {
			int r = SSL_write(io->ssl, (const char *)data + off, (int)(len - off));
			if (r > 0) {
				off += (size_t)r;
				continue;
			}
			r = SSL_get_error(io->ssl, r);
			if ((r != SSL_ERROR_WANT_READ && r != SSL_ERROR_WANT_WRITE) ||
			    wait_fd(io->fd, r == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, io->deadline) < 0)
				return -1;
			continue;
		}
		n = send(io->fd, (const char *)data + off, len - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
		} else if (n < 0 && errno == EAGAIN) {
			if (wait_fd(io->fd, POLLOUT, io->deadline) < 0)
				return -1;
		} else {
			return -1;
		}
	}
	return 0;
}

/* Reads one line (without CRLF) into buf. */
static int hc_line(struct hc_io *io, char *buf, size_t size)
{
	size_t len = 0;

	for (;;) {
		char ch;
		ssize_t n;

		if (io->ssl != NULL) {
			int r = SSL_read(io->ssl, &ch, 1);
			if (r <= 0) {
				r = SSL_get_error(io->ssl, r);
				if ((r != SSL_ERROR_WANT_READ && r != SSL_ERROR_WANT_WRITE) ||
				    wait_fd(io->fd, r == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
					    io->deadline) < 0)
					return -1;
				continue;
			}
			n = 1;
		} else {
			n = recv(io->fd, &ch, 1, 0);
			if (n < 0 && errno == EAGAIN) {
				if (wait_fd(io->fd, POLLIN, io->deadline) < 0)
					return -1;
				continue;
			}
			if (n <= 0)
				return -1;
		}
		if (ch == '\n') {
			if (len > 0 && buf[len - 1] == '\r')
				len--;
			buf[len] = '\0';
			return 0;
		}
		if (len + 1 >= size)
			return -1;
		buf[len++] = ch;
	}
}

int proxy_health_check(const struct proxy_pool *pool, const struct proxy_backend *b,
		       int64_t timeout_ms, const char **why_r)
{
	struct hc_io io = { .fd = -1, .deadline = proxy_now_ms() + timeout_ms };
	char port[16], line[1024];
	const char *colon = strrchr(b->addr, ':');
	int rc = -1;

	snprintf(port, sizeof(port), "%s", colon != NULL ? colon + 1 : "0");
	if (strncmp(b->addr, "unix:", 5) == 0)
		io.fd = unix_connect(b->addr + 5);
	else
		io.fd = tcp_connect(b->host, port, io.deadline);
	if (io.fd < 0) {
		*why_r = "connect failed";
		return -1;
	}
	if (pool->srv->remote_use_proxy_protocol) {
		unsigned char hdr[SORA_PROXY_V2_BUILD_MAX];
		struct sora_proxy_v2_opts opts = { 0 };
		size_t len = 0;
		const char *e;

		if (sora_proxy_v2_build(NULL, NULL, &opts, hdr, sizeof(hdr), &len, &e) < 0 ||
		    hc_write(&io, hdr, len) < 0) {
			*why_r = "cannot send the PROXY header";
			goto out;
		}
	}
	if (pool->tls != NULL) {
		io.ssl = SSL_new(pool->tls);
		if (io.ssl == NULL || SSL_set_fd(io.ssl, io.fd) != 1) {
			*why_r = "TLS setup failed";
			goto out;
		}
		if (SSL_CTX_get_verify_mode(pool->tls) & SSL_VERIFY_PEER) {
			unsigned char ipbuf[16];
			bool is_ip = inet_pton(AF_INET, b->host, ipbuf) == 1 ||
				     inet_pton(AF_INET6, b->host, ipbuf) == 1;

			if (is_ip)
				X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(io.ssl), b->host);
			else
				SSL_set1_host(io.ssl, b->host);
		}
		if (!(b->host[0] >= '0' && b->host[0] <= '9') && strchr(b->host, ':') == NULL)
			SSL_set_tlsext_host_name(io.ssl, b->host);
		for (;;) {
			int r = SSL_connect(io.ssl);

			if (r == 1)
				break;
			r = SSL_get_error(io.ssl, r);
			if ((r != SSL_ERROR_WANT_READ && r != SSL_ERROR_WANT_WRITE) ||
			    wait_fd(io.fd, r == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, io.deadline) < 0) {
				*why_r = "TLS handshake or verification failed";
				goto out;
			}
		}
	}
	switch (pool->proto) {
	case PROXY_PROTO_IMAP:
		if (hc_line(&io, line, sizeof(line)) < 0 || strncmp(line, "* OK", 4) != 0)
			goto bad;
		hc_write(&io, "h LOGOUT\r\n", 10);
		break;
	case PROXY_PROTO_POP3:
		if (hc_line(&io, line, sizeof(line)) < 0 || strncmp(line, "+OK", 3) != 0)
			goto bad;
		hc_write(&io, "QUIT\r\n", 6);
		break;
	case PROXY_PROTO_LMTP:
		if (hc_line(&io, line, sizeof(line)) < 0 || strncmp(line, "220 ", 4) != 0)
			goto bad;
		hc_write(&io, "QUIT\r\n", 6);
		break;
	case PROXY_PROTO_SIEVE:
		/* Capability lines, then OK. */
		for (int i = 0; i < 64; i++) {
			if (hc_line(&io, line, sizeof(line)) < 0)
				goto bad;
			if (strncasecmp(line, "OK", 2) == 0)
				break;
			if (line[0] != '"')
				goto bad;
			if (strncasecmp(line, "\"SIEVE\" \"", 9) == 0 && strlen(line) > 10 &&
			    line[strlen(line) - 1] == '"')
				proxy_pool_set_sieve_ext((struct proxy_pool *)pool, line + 9,
							 strlen(line) - 10);
		}
		hc_write(&io, "LOGOUT\r\n", 8);
		break;
	}
	rc = 0;
	goto out;
bad:
	*why_r = "no proper greeting";
out:
	if (io.ssl != NULL)
		SSL_free(io.ssl);
	close(io.fd);
	return rc;
}

static struct {
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	struct proxy_pool **pools;
	size_t n;
} health = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void *health_main(void *arg)
{
	for (;;) {
		int64_t now = proxy_now_ms(), next = now + 1000;
		struct timespec ts;

		for (size_t i = 0; i < health.n; i++) {
			struct proxy_pool *p = health.pools[i];
			int64_t interval = p->srv->health_check_interval_ms;
			int64_t timeout = p->srv->connect_timeout_ms > 0 ? p->srv->connect_timeout_ms : 10000;

			if (timeout > interval)
				timeout = interval;
			for (size_t j = 0; j < p->n; j++) {
				struct proxy_backend *b = &p->b[j];
				const char *why = NULL;

				if (proxy_now_ms() < b->next_check_ms)
					continue;
				if (proxy_health_check(p, b, timeout, &why) == 0) {
					atomic_store(&b->fails, 0);
					set_down(p, b, false, "");
				} else {
					sora_metric_inc(b->m_failures);
					set_down(p, b, true, why);
				}
				b->next_check_ms = proxy_now_ms() + interval;
				if (b->next_check_ms < next)
					next = b->next_check_ms;
			}
		}
		pthread_mutex_lock(&health.lock);
		if (!health.stop) {
			int64_t wait = next - proxy_now_ms();

			if (wait < 50)
				wait = 50;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += wait / 1000;
			ts.tv_nsec += (wait % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&health.cond, &health.lock, &ts);
		}
		if (health.stop) {
			pthread_mutex_unlock(&health.lock);
			return NULL;
		}
		pthread_mutex_unlock(&health.lock);
	}
}

int proxy_health_start(struct proxy_pool **pools, size_t n, char *err, size_t errsize)
{
	health.pools = pools;
	health.n = n;
	health.stop = false;
	if (n == 0)
		return 0;
	if (pthread_create(&health.thread, NULL, health_main, NULL) != 0) {
		snprintf(err, errsize, "cannot start the health-check thread");
		return -1;
	}
	health.running = true;
	return 0;
}

void proxy_health_stop(void)
{
	if (!health.running)
		return;
	pthread_mutex_lock(&health.lock);
	health.stop = true;
	pthread_cond_signal(&health.cond);
	pthread_mutex_unlock(&health.lock);
	pthread_join(health.thread, NULL);
	health.running = false;
}
