/* The runtime: loop threads, listening sockets, signals, drain. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/config/config.h"
#include "common/metrics/metrics.h"
#include "common/net/net-private.h"
#include "common/net/workers.h"
#include "common/tls/tls.h"

#define LISTEN_BACKLOG 511

struct sora_pool;

struct sora_net {
	const struct sora_config *cfg;
	struct sora_net_params params;
	struct sora_loop *loops;
	int nloops;
	struct sora_listener **listeners;
	size_t nlisteners;
	int *fds;                    /* nlisteners x nloops listening sockets */
	bool bound;
	struct sora_pool *pool;

	uv_loop_t main;
	uv_signal_t sig_term, sig_int, sig_hup;
	uv_timer_t drain_timer;
	uv_async_t stop_async;
	bool stopping;
	bool main_ready;
	int loops_running;
	atomic_int loops_finished;
};

struct sora_pool *sora_net__pool(struct sora_net *net) { return net->pool; }

struct sora_loop *sora_net__loop_checked(struct sora_net *net, uint32_t index)
{
	return index < (uint32_t)net->nloops ? &net->loops[index] : NULL;
}
void sora_net__set_pool(struct sora_net *net, struct sora_pool *pool) { net->pool = pool; }
struct sora_loop *sora_net__loop(struct sora_net *net, int index) { return &net->loops[index]; }
const struct sora_config *sora_net_config(const struct sora_net *net) { return net->cfg; }

int sora_net_create(const struct sora_config *cfg, const struct sora_net_params *params,
		    struct sora_net **net_r, char *err, size_t errsize)
{
	struct sora_net *net = calloc(1, sizeof(*net));

	if (net == NULL) {
		snprintf(err, errsize, "out of memory");
		return -1;
	}
	net->cfg = cfg;
	if (params != NULL)
		net->params = *params;
	if (net->params.loops <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		net->params.loops = n > 0 ? (int)n : 1;
	}
	if (net->params.workers <= 0)
		net->params.workers = 16;
	if (net->params.drain_timeout_ms <= 0)
		net->params.drain_timeout_ms = 30000;
	net->nloops = net->params.loops;
	net->loops = calloc((size_t)net->nloops, sizeof(*net->loops));
	if (net->loops == NULL) {
		free(net);
		snprintf(err, errsize, "out of memory");
		return -1;
	}
	for (int i = 0; i < net->nloops; i++) {
		/* Posts are refused until the loop runs. */
		pthread_mutex_init(&net->loops[i].lock, NULL);
		net->loops[i].async_closed = true;
		net->loops[i].free_slot = UINT32_MAX;
	}
	*net_r = net;
	return 0;
}

int sora_net_add_listener(struct sora_net *net, const struct sora_server_config *srv,
			  const struct sora_conn_handler *handler, char *err, size_t errsize)
{
	struct sora_listener *l = calloc(1, sizeof(*l)), **arr;
	const char *proto = sora_server_type_protocol(srv->type);
	struct sora_metric *m;
	char aerr[256];

	if (l == NULL)
		goto oom;
	l->net = net;
	l->srv = srv;
	l->handler = handler;
	l->protocol = handler->protocol != NULL ? handler->protocol : proto;
	l->unix_fd = -1;
	if (sora_listen_addr_parse(srv->addr, &l->addr, aerr, sizeof(aerr)) < 0) {
		snprintf(err, errsize, "[servers.%s] addr: %s", srv->name, aerr);
		free(l);
		return -1;
	}
	if ((srv->tls || srv->tls_use_starttls) &&
	    sora_tls_ctx_create(srv, &l->tls, err, errsize) < 0) {
		free(l);
		return -1;
	}
	l->per_ip = sora_ip_table_new();
	if (l->per_ip == NULL)
		goto oom;

	m = sora_metric_counter("connections_total", "Connections accepted.", "protocol");
	l->m_total = sora_metric_with(m, l->protocol);
	m = sora_metric_gauge("connections_current", "Connections open now.", "protocol");
	l->m_current = sora_metric_with(m, l->protocol);
	m = sora_metric_counter("connections_rejected_total",
				"Connections refused before the session started.", "protocol,reason");
	l->m_rejected_limit = sora_metric_with(m, l->protocol, "limit");
	l->m_proxy_rejected = sora_metric_with(m, l->protocol, "proxy_protocol");
	m = sora_metric_counter("command_timeouts_total",
				"Connections closed by a timeout, by reason.", "protocol,reason");
	l->m_timeout_idle = sora_metric_with(m, l->protocol, "idle");
	l->m_timeout_session = sora_metric_with(m, l->protocol, "session_max");
	l->m_timeout_slow = sora_metric_with(m, l->protocol, "slow_throughput");
	m = sora_metric_counter("connections_closed_total",
				"Sessions ended, by protocol and close reason.", "protocol,reason");
	for (int r = 0; r < SORA_CLOSE_REASON_COUNT; r++)
		l->m_closed[r] = sora_metric_with(m, l->protocol,
						  sora_close_reason_name((enum sora_close_reason)r));

	arr = realloc(net->listeners, (net->nlisteners + 1) * sizeof(*arr));
	if (arr == NULL)
		goto oom;
	net->listeners = arr;
	net->listeners[net->nlisteners++] = l;
	return 0;
oom:
	if (l != NULL) {
		sora_ip_table_free(&l->per_ip);
		sora_tls_ctx_free(&l->tls);
		free(l);
	}
	snprintf(err, errsize, "out of memory");
	return -1;
}

static int bind_unix(struct sora_listener *l, char *err, size_t errsize)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	sora_strlcpy(sun.sun_path, l->addr.path, sizeof(sun.sun_path));
	/* A stale socket from a previous run is replaced; any other kind of
	 * file at that path is an operator mistake we refuse to delete. */
	if (lstat(l->addr.path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errsize, "[servers.%s] addr: %s exists and is not a socket",
				 l->srv->name, l->addr.path);
			return -1;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			close(fd);
			snprintf(err, errsize, "[servers.%s] addr: %s is in use by another process",
				 l->srv->name, l->addr.path);
			return -1;
		}
		if (fd >= 0)
			close(fd);
		unlink(l->addr.path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(l->addr.path, 0666) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		snprintf(err, errsize, "[servers.%s] cannot listen on %s: %s", l->srv->name,
			 l->srv->addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	l->unix_fd = fd;
	return 0;
}

static int tcp_socket(struct sora_listener *l, bool reuseport, char *err, size_t errsize)
{
	int fd, one = 1, zero = 0;
	const struct sockaddr *sa = (const struct sockaddr *)&l->addr.ss;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (sa->sa_family == AF_INET6) {
		/* ":port" means every address, IPv4 included. */
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		int v6only = IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr) ? 0 : 1;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only ? &one : &zero, sizeof(int));
	}
	if (bind(fd, sa, l->addr.sslen) < 0)
		goto fail;
	return fd;
fail:
	snprintf(err, errsize, "[servers.%s] cannot listen on %s: %s", l->srv->name, l->srv->addr,
		 strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

int sora_net_bind(struct sora_net *net, char *err, size_t errsize)
{
	size_t i;
	int j;

	net->fds = malloc(net->nlisteners * (size_t)net->nloops * sizeof(int) + 1);
	if (net->fds == NULL) {
		snprintf(err, errsize, "out of memory");
		return -1;
	}
	for (i = 0; i < net->nlisteners * (size_t)net->nloops; i++)
		net->fds[i] = -1;
	for (i = 0; i < net->nlisteners; i++) {
		struct sora_listener *l = net->listeners[i];

		if (l->addr.is_unix) {
			if (bind_unix(l, err, errsize) < 0)
				goto fail;
			continue;
		}
		/* SO_REUSEPORT would let us silently share a port with another
		 * process of the same user; find out first whether anyone
		 * listens there. */
		{
			int probe = tcp_socket(l, false, err, errsize);
			if (probe < 0)
				goto fail;
			close(probe);
		}
		for (j = 0; j < net->nloops; j++) {
			int fd = tcp_socket(l, true, err, errsize);
			if (fd < 0)
				goto fail;
			if (listen(fd, LISTEN_BACKLOG) < 0) {
				snprintf(err, errsize, "[servers.%s] cannot listen on %s: %s",
					 l->srv->name, l->srv->addr, strerror(errno));
				close(fd);
				goto fail;
			}
			net->fds[i * (size_t)net->nloops + (size_t)j] = fd;
		}
	}
	net->bound = true;
	return 0;
fail:
	for (i = 0; i < net->nlisteners * (size_t)net->nloops; i++) {
		if (net->fds[i] >= 0)
			close(net->fds[i]);
		net->fds[i] = -1;
	}
	for (i = 0; i < net->nlisteners; i++) {
		if (net->listeners[i]->unix_fd >= 0) {
			close(net->listeners[i]->unix_fd);
			net->listeners[i]->unix_fd = -1;
		}
	}
	return -1;
}

/* ---- loop threads ----------------------------------------------------- */

static void loop_on_connection(uv_stream_t *server, int status)
{
	struct sora_loop_listen *ll = server->data;

	if (status < 0) {
		sora_warn(NULL, "accept on %s failed: %s", ll->listener->srv->addr, uv_strerror(status));
		return;
	}
	if (ll->loop->stopping)
		return;
	sora_conn__accept(ll);
}

static void loop_handle_closed(uv_handle_t *h)
{
	(void)h;
}

/* The loop ends once its sessions are gone and every job submitted for it
 * has completed: the async handle is how workers and posts reach it. */
static void loop_maybe_finish(struct sora_loop *loop)
{
	bool finish;

	if (!loop->stopping || loop->conns != NULL || uv_is_closing((uv_handle_t *)&loop->async))
		return;
	pthread_mutex_lock(&loop->lock);
	finish = loop->jobs_outstanding == 0 && loop->ready_jobs == NULL;
	if (finish)
		loop->async_closed = true;
	pthread_mutex_unlock(&loop->lock);
	if (!finish)
		return;
	sora_workers__run_posts(loop, true);
	uv_close((uv_handle_t *)&loop->async, loop_handle_closed);
}

static void loop_begin_stop(struct sora_loop *loop)
{
	struct sora_conn *c, *next;

	loop->stopping = true;
	for (size_t i = 0; i < loop->listens_count; i++) {
		if (loop->listens[i].open) {
			uv_close((uv_handle_t *)&loop->listens[i].h, loop_handle_closed);
			loop->listens[i].open = false;
		}
	}
	for (c = loop->conns; c != NULL; c = next) {
		next = c->next;
		sora_conn__shutdown(c);
	}
}

static void loop_async_cb(uv_async_t *a)
{
	struct sora_loop *loop = a->data;
	bool stop;

	sora_workers__loop_async(loop);
	sora_workers__run_posts(loop, false);
	pthread_mutex_lock(&loop->lock);
	stop = loop->stop_requested;
	pthread_mutex_unlock(&loop->lock);
	if (stop && !loop->stopping)
		loop_begin_stop(loop);
	loop_maybe_finish(loop);
}

/* Polls for the drain to finish: connections close asynchronously. */
static void loop_check_cb(uv_check_t *chk)
{
	struct sora_loop *loop = chk->data;

	if (loop->stopping) {
		loop_maybe_finish(loop);
		if (uv_is_closing((uv_handle_t *)&loop->async) && !uv_is_closing((uv_handle_t *)chk))
			uv_close((uv_handle_t *)chk, loop_handle_closed);
	}
}

static void loop_thread(void *arg)
{
	struct sora_loop *loop = arg;
	uv_check_t check;

	uv_check_init(&loop->uv, &check);
	check.data = loop;
	uv_check_start(&check, loop_check_cb);
	uv_unref((uv_handle_t *)&check);
	uv_run(&loop->uv, UV_RUN_DEFAULT);
	if (!uv_is_closing((uv_handle_t *)&check))
		uv_close((uv_handle_t *)&check, loop_handle_closed);
	uv_run(&loop->uv, UV_RUN_DEFAULT);
	/* Tell the main thread; it joins us. */
	atomic_fetch_add(&loop->net->loops_finished, 1);
	uv_async_send(&loop->net->stop_async);
}

static int loop_init(struct sora_net *net, int index, char *err, size_t errsize)
{
	struct sora_loop *loop = &net->loops[index];
	size_t i;
	int rc;

	loop->net = net;
	loop->index = index;
	if ((rc = uv_loop_init(&loop->uv)) < 0) {
		snprintf(err, errsize, "event loop: %s", uv_strerror(rc));
		return -1;
	}
	loop->uv_ready = true;
	uv_async_init(&loop->uv, &loop->async, loop_async_cb);
	loop->async.data = loop;
	pthread_mutex_lock(&loop->lock);
	loop->async_closed = false;
	pthread_mutex_unlock(&loop->lock);
	loop->readbuf = malloc(SORA_LOOP_READ_BUF);
	loop->plainbuf = malloc(SORA_LOOP_READ_BUF);
	loop->listens = calloc(net->nlisteners + 1, sizeof(*loop->listens));
	if (loop->readbuf == NULL || loop->plainbuf == NULL || loop->listens == NULL) {
		snprintf(err, errsize, "out of memory");
		return -1;
	}
	for (i = 0; i < net->nlisteners; i++) {
		struct sora_listener *l = net->listeners[i];
		struct sora_loop_listen *ll = &loop->listens[loop->listens_count];

		ll->listener = l;
		ll->loop = loop;
		if (l->addr.is_unix) {
			int fd = dup(l->unix_fd);
			uv_pipe_init(&loop->uv, &ll->h.pipe, 0);
			rc = uv_pipe_open(&ll->h.pipe, fd);
		} else {
			uv_tcp_init(&loop->uv, &ll->h.tcp);
			rc = uv_tcp_open(&ll->h.tcp, net->fds[i * (size_t)net->nloops + (size_t)index]);
		}
		ll->h.tcp.data = ll;
		ll->open = true;
		loop->listens_count++;
		if (rc == 0)
			rc = uv_listen((uv_stream_t *)&ll->h, LISTEN_BACKLOG, loop_on_connection);
		if (rc < 0) {
			snprintf(err, errsize, "[servers.%s] listen on %s: %s", l->srv->name,
				 l->srv->addr, uv_strerror(rc));
			return -1;
		}
	}
	return 0;
}

static void discard_walk_cb(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Closes every handle of a loop that will not run (start-up failed). */
static void loop_discard(uv_loop_t *uv)
{
	uv_walk(uv, discard_walk_cb, NULL);
	uv_run(uv, UV_RUN_DEFAULT);
}

/* ---- main thread ------------------------------------------------------ */

static void net_request_stop(struct sora_net *net)
{
	for (int i = 0; i < net->nloops; i++) {
		struct sora_loop *loop = &net->loops[i];
		bool live;

		pthread_mutex_lock(&loop->lock);
		loop->stop_requested = true;
		live = !loop->async_closed;
		pthread_mutex_unlock(&loop->lock);
		if (live)
			uv_async_send(&loop->async);
	}
}

static void drain_timeout_cb(uv_timer_t *t)
{
	struct sora_net *net = t->data;
	size_t left = 0;

	for (int i = 0; i < net->nloops; i++)
		left += net->loops[i].conn_count;
	sora_error(NULL, "shutdown: %zu connection(s) still busy after %lld ms: exiting without "
		   "finishing them (exit status 1)", left, (long long)net->params.drain_timeout_ms);
	/* Loop threads may be inside commands; leaving now is what the
	 * operator asked for, and clients see their connection cut. The
	 * status says the drain did not complete, so supervisors and
	 * scripts can tell. */
	_exit(1);
}

static void net_begin_shutdown(struct sora_net *net, const char *why)
{
	if (net->stopping)
		return;
	net->stopping = true;
	sora_info(NULL, "%s: stopping: no new connections, finishing sessions", why);
	net_request_stop(net);
	uv_timer_init(&net->main, &net->drain_timer);
	net->drain_timer.data = net;
	uv_timer_start(&net->drain_timer, drain_timeout_cb, (uint64_t)net->params.drain_timeout_ms, 0);
	uv_unref((uv_handle_t *)&net->drain_timer);
}

static void net_signal_cb(uv_signal_t *s, int signum)
{
	struct sora_net *net = s->data;

	if (signum == SIGHUP) {
		char err[512];
		int failed = 0;

		for (size_t i = 0; i < net->nlisteners; i++) {
			struct sora_listener *l = net->listeners[i];
			if (l->tls == NULL)
				continue;
			if (sora_tls_ctx_reload(l->tls, l->srv, err, sizeof(err)) < 0) {
				sora_error(NULL, "SIGHUP: keeping the old certificate: %s", err);
				failed++;
			}
		}
		sora_info(NULL, "SIGHUP: certificates reloaded%s", failed ? " (with errors)" : "");
		if (net->params.on_reload != NULL)
			net->params.on_reload(net->params.ctx);
		return;
	}
	net_begin_shutdown(net, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void net_stop_async_cb(uv_async_t *a)
{
	struct sora_net *net = a->data;
	if (!net->stopping) {
		/* sora_net_stop() from another thread. */
		net_begin_shutdown(net, "stop requested");
	}
	if (atomic_load(&net->loops_finished) == net->loops_running) {
		uv_close((uv_handle_t *)&net->sig_term, NULL);
		uv_close((uv_handle_t *)&net->sig_int, NULL);
		uv_close((uv_handle_t *)&net->sig_hup, NULL);
		uv_close((uv_handle_t *)&net->stop_async, NULL);
		uv_close((uv_handle_t *)&net->drain_timer, NULL);
	}
}

void sora_net_stop(struct sora_net *net)
{
	uv_async_send(&net->stop_async);
}

int sora_net_run(struct sora_net *net)
{
	char err[512];
	int i;

	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&net->main);
	net->main_ready = true;
	uv_async_init(&net->main, &net->stop_async, net_stop_async_cb);
	net->stop_async.data = net;
	uv_signal_init(&net->main, &net->sig_term);
	uv_signal_init(&net->main, &net->sig_int);
	uv_signal_init(&net->main, &net->sig_hup);
	net->sig_term.data = net->sig_int.data = net->sig_hup.data = net;
	uv_signal_start(&net->sig_term, net_signal_cb, SIGTERM);
	uv_signal_start(&net->sig_int, net_signal_cb, SIGINT);
	uv_signal_start(&net->sig_hup, net_signal_cb, SIGHUP);

	for (i = 0; i < net->nloops; i++) {
		if (loop_init(net, i, err, sizeof(err)) < 0) {
			sora_error(NULL, "%s", err);
			goto fail;
		}
	}
	if (sora_workers_start(net, net->params.workers) < 0) {
		sora_error(NULL, "cannot start worker threads");
		goto fail;
	}
	for (i = 0; i < net->nloops; i++) {
		if (uv_thread_create(&net->loops[i].thread, loop_thread, &net->loops[i]) < 0) {
			sora_error(NULL, "cannot start loop thread");
			goto fail;
		}
		net->loops_running++;
	}
	uv_run(&net->main, UV_RUN_DEFAULT);
	for (i = 0; i < net->loops_running; i++)
		uv_thread_join(&net->loops[i].thread);
	sora_workers_stop(net);
	sora_info(NULL, "stopped");
	return 0;
fail:
	/* Nothing was served: stop what did start (loop threads, workers) and
	 * close every handle so the loops can be freed. */
	net_request_stop(net);
	for (i = 0; i < net->loops_running; i++)
		uv_thread_join(&net->loops[i].thread);
	for (i = net->loops_running; i < net->nloops; i++) {
		if (net->loops[i].uv_ready)
			loop_discard(&net->loops[i].uv);
	}
	sora_workers_stop(net);
	loop_discard(&net->main);
	return -1;
}

void sora_net_free(struct sora_net **netp)
{
	struct sora_net *net = *netp;

	if (net == NULL)
		return;
	*netp = NULL;
	for (int i = 0; i < net->nloops; i++) {
		struct sora_loop *loop = &net->loops[i];
		if (loop->uv_ready)
			uv_loop_close(&loop->uv);
		free(loop->readbuf);
		free(loop->plainbuf);
		free(loop->listens);
		free(loop->slots);
		pthread_mutex_destroy(&loop->lock);
	}
	for (size_t i = 0; i < net->nlisteners; i++) {
		struct sora_listener *l = net->listeners[i];
		sora_tls_ctx_free(&l->tls);
		sora_ip_table_free(&l->per_ip);
		if (l->unix_fd >= 0) {
			close(l->unix_fd);
			unlink(l->addr.path);
		}
		free(l);
	}
	if (net->main_ready)
		uv_loop_close(&net->main);
	free(net->listeners);
	free(net->fds);
	free(net->loops);
	free(net);
}
