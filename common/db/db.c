/* PostgreSQL connection pool: see db.h for the contract.
 *
 * Locking: one mutex per pool guards the endpoint lists and counters; a
 * condition variable wakes threads waiting for a free connection. Network
 * work (connecting, the liveness probe, closing) always happens with the
 * mutex released, after reserving a slot (total++) under it, so a slow or
 * dead server never stalls other threads' acquires and releases. */
#include "common/db/db.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "common/core/log.h"
#include "common/core/str.h"

struct db_endpoint {
	char *host;                   /* owned */
	int port;
	char desc[300];               /* "database X at H:P" */
	struct sora_db_conn *idle;    /* LIFO: the most recently used first */
	int idle_count;
	int total;                    /* open connections + connects under way */
	int64_t down_until_ms;        /* read endpoints: skip until then */
};

struct sora_db_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* Private copy of the config; strings owned by the pool. */
	struct sora_database_config cfg;
	char *application_name;
	struct db_endpoint *eps;      /* [0] = primary, then read endpoints */
	size_t neps;
	unsigned int rr;
	int in_use;
	int waiting;
};

struct sora_db_conn {
	struct sora_db_pool *pool;
	struct db_endpoint *ep;
	PGconn *pg;
	int64_t created_ms;
	int64_t last_used_ms;
	int64_t session_timeout_ms;   /* -1: not known, set before the next query */
	int64_t local_timeout_ms;     /* -1: no SET LOCAL in the current transaction */
	bool broken;
	/* Names of the statements prepared on this connection
	 * (sora_db_exec_prepared); they live as long as the session. */
	const char *prepared[SORA_DB_MAX_PREPARED];
	int nprepared;
	struct sora_db_conn *next;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Pure helpers ---- */

enum sora_error_class sora_db_classify_sqlstate(const char *s)
{
	static const char *const temporary[] = {
		"40001",  /* serialization_failure */
		"40P01",  /* deadlock_detected */
		"55P03",  /* lock_not_available (lock_timeout) */
		"57014",  /* query_canceled (statement_timeout) */
		"57P01",  /* admin_shutdown */
		"57P02",  /* crash_shutdown */
		"57P03",  /* cannot_connect_now (starting up, recovery) */
		"58030",  /* io_error */
		"25006",  /* read_only_sql_transaction: the primary became a standby */
	};

	if (s == NULL || s[0] == '\0')
		return SORA_ERR_TEMPORARY;
	if (strlen(s) != 5)
		return SORA_ERR_PERMANENT;
	/* Class 08 (connection exception) and class 53 (insufficient
	 * resources: disk full, out of memory, too many connections). */
	if (strncmp(s, "08", 2) == 0 || strncmp(s, "53", 2) == 0)
		return SORA_ERR_TEMPORARY;
	for (size_t i = 0; i < sizeof(temporary) / sizeof(temporary[0]); i++) {
		if (strcmp(s, temporary[i]) == 0)
			return SORA_ERR_TEMPORARY;
	}
	return SORA_ERR_PERMANENT;
}

enum sora_error_class sora_db_classify(const PGconn *pg, const PGresult *res)
{
	if (pg != NULL && PQstatus(pg) != CONNECTION_OK)
		return SORA_ERR_TEMPORARY;
	if (res == NULL)
		return SORA_ERR_TEMPORARY;
	return sora_db_classify_sqlstate(PQresultErrorField(res, PG_DIAG_SQLSTATE));
}

int64_t sora_db_class_timeout_ms(const struct sora_database_config *cfg,
				 enum sora_db_class cls)
{
	int64_t v;

	switch (cls) {
	case SORA_DB_CLASS_SEARCH:
		v = cfg->search_query_timeout_ms;
		break;
	case SORA_DB_CLASS_WRITE:
		v = cfg->write_timeout_ms;
		break;
	case SORA_DB_CLASS_NONE:
		v = 0;
		break;
	case SORA_DB_CLASS_DEFAULT:
	default:
		v = cfg->query_timeout_ms;
		break;
	}
	return v > 0 ? v : 0;
}

int sora_db_conninfo_build(const struct sora_database_config *cfg,
			   const struct sora_db_endpoint *ep,
			   const char *application_name,
			   struct sora_db_conninfo *ci, struct sora_error *err)
{
	const char *host = ep != NULL ? ep->host : cfg->host;
	int port = ep != NULL ? ep->port : cfg->port;
	size_t n = 0;

	memset(ci, 0, sizeof(*ci));
	if (port < 0 || port > 65535)
		return sora_error_set(err, SORA_ERR_INVALID, "port %d out of range", port);
	/* A port of 0 means "not set": libpq then uses its default. */
	if (port > 0)
		snprintf(ci->port, sizeof(ci->port), "%d", port);
	snprintf(ci->connect_timeout, sizeof(ci->connect_timeout), "%d",
		 SORA_DB_CONNECT_TIMEOUT_S);

#define ADD(k, v) do { \
		if ((v) != NULL && (v)[0] != '\0') { \
			ci->keywords[n] = (k); \
			ci->values[n] = (v); \
			n++; \
		} \
	} while (0)
	ADD("host", host);
	ADD("port", ci->port);
	ADD("dbname", cfg->dbname);
	ADD("user", cfg->user);
	ADD("password", cfg->password);
	ADD("sslmode", cfg->sslmode);
	ADD("application_name", application_name);
	ADD("connect_timeout", ci->connect_timeout);
	ADD("client_encoding", "UTF8");
	/* TCP keepalives notice a server that vanished without closing the
	 * connection (a crashed host, a dropped NAT entry) within minutes
	 * instead of the kernel's two hours. */
	ADD("keepalives", "1");
	ADD("keepalives_idle", "60");
	ADD("keepalives_interval", "10");
	ADD("keepalives_count", "3");
#undef ADD
	ci->keywords[n] = NULL;
	ci->values[n] = NULL;
	return 0;
}

void sora_db_describe(const char *dbname, const char *host, int port,
		      char *buf, size_t size)
{
	const char *db = dbname != NULL && dbname[0] != '\0' ? dbname : "(default)";
	const char *h = host != NULL && host[0] != '\0' ? host : "localhost";

	if (port <= 0)
		port = 5432;
	if (h[0] == '/')
		snprintf(buf, size, "database %s at %s, port %d", db, h, port);
	else if (strchr(h, ':') != NULL)
		snprintf(buf, size, "database %s at [%s]:%d", db, h, port);
	else
		snprintf(buf, size, "database %s at %s:%d", db, h, port);
}

/* Removes a leading severity word ("FATAL:  ", "ERROR:  ") from a line. */
static struct sora_str strip_severity(struct sora_str s)
{
	static const char *const sev[] = { "FATAL:", "ERROR:", "PANIC:", "WARNING:" };

	for (size_t i = 0; i < sizeof(sev) / sizeof(sev[0]); i++) {
		size_t l = strlen(sev[i]);

		if (s.len >= l && memcmp(s.p, sev[i], l) == 0) {
			s.p += l;
			s.len -= l;
			while (s.len > 0 && (s.p[0] == ' ' || s.p[0] == '\t')) {
				s.p++;
				s.len--;
			}
			break;
		}
	}
	return s;
}

void sora_db_format_error(const char *prefix, const char *pq_message,
			  enum sora_error_class cls, struct sora_error *err)
{
	struct sora_str msg = sora_str_c(pq_message != NULL ? pq_message : "");
	struct sora_str best = SORA_STR_NULL;
	bool connecting = false;
	size_t pos = 0;

	if (err == NULL)
		return;
	/* Walk the lines; hint lines start with a tab and are skipped. The
	 * first line with content after its prefixes is what we report. */
	while (pos < msg.len) {
		size_t end = pos;
		struct sora_str line;

		while (end < msg.len && msg.p[end] != '\n')
			end++;
		line = sora_str_make(msg.p + pos, end - pos);
		pos = end + 1;
		while (line.len > 0 && (line.p[line.len - 1] == '\r' ||
					line.p[line.len - 1] == ' '))
			line.len--;
		if (line.len == 0 || line.p[0] == '\t')
			continue;
		if (sora_str_has_iprefix(line, "connection to server")) {
			const char *f = memmem(line.p, line.len, "failed: ", 8);

			connecting = true;
			if (f == NULL)
				continue;
			f += 8;
			line = sora_str_make(f, line.len - (size_t)(f - line.p));
		}
		line = strip_severity(line);
		if (line.len == 0)
			continue;
		best = line;
		break;
	}
	if (best.p == NULL)
		best = SORA_STR("unknown error");
	if (best.len > 400)
		best.len = 400;
	sora_error_set(err, cls, "%s: %s%.*s", prefix != NULL ? prefix : "database",
		       connecting ? "cannot connect: " : "", (int)best.len, best.p);
}

int sora_db_get_i64(const PGresult *res, int row, int col, int64_t *value_r,
		    struct sora_error *err)
{
	const char *name = PQfname(res, col);
	const char *v;
	char *end;
	long long n;

	if (name == NULL)
		name = "?";
	if (row < 0 || row >= PQntuples(res) || col < 0 || col >= PQnfields(res))
		return sora_error_set(err, SORA_ERR_PERMANENT,
				      "result has no row %d, column %d", row, col);
	if (PQgetisnull(res, row, col))
		return sora_error_set(err, SORA_ERR_PERMANENT,
				      "column %s of row %d is NULL, expected a number", name, row);
	v = PQgetvalue(res, row, col);
	/* strtoll alone would accept "", leading spaces and a plus sign, and
	 * saturate on overflow. */
	if (!((v[0] >= '0' && v[0] <= '9') || (v[0] == '-' && v[1] >= '0' && v[1] <= '9')))
		goto bad;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno == ERANGE || *end != '\0')
		goto bad;
	*value_r = (int64_t)n;
	return 0;
bad:
	return sora_error_set(err, SORA_ERR_PERMANENT,
			      "column %s of row %d is not an int64: \"%.40s\"", name, row, v);
}

/* ---- Connections ---- */

static void db_notice(void *arg, const char *message)
{
	struct sora_str m = sora_str_c(message);

	(void)arg;
	/* Server NOTICEs ("extension already exists, skipping") are of no
	 * interest to operators; libpq would print them to stderr. */
	while (m.len > 0 && m.p[m.len - 1] == '\n')
		m.len--;
	sora_debug(NULL, "postgresql: %.*s", (int)m.len, m.p);
}

static int db_connect(struct sora_db_pool *pool, struct db_endpoint *ep,
		      struct sora_db_conn **conn_r, struct sora_error *err)
{
	struct sora_db_endpoint where = { ep->host, ep->port };
	struct sora_db_conninfo ci;
	struct sora_db_conn *c;
	PGconn *pg;

	if (sora_db_conninfo_build(&pool->cfg, &where, pool->application_name, &ci, err) < 0) {
		sora_error_prefix(err, "%s", ep->desc);
		err->cls = SORA_ERR_PERMANENT;
		return -1;
	}
	pg = PQconnectdbParams(ci.keywords, ci.values, 0);
	if (pg == NULL)
		return sora_error_set(err, SORA_ERR_TEMPORARY, "%s: out of memory", ep->desc);
	if (PQstatus(pg) != CONNECTION_OK) {
		sora_db_format_error(ep->desc, PQerrorMessage(pg), SORA_ERR_TEMPORARY, err);
		PQfinish(pg);
		return -1;
	}
	PQsetNoticeProcessor(pg, db_notice, NULL);
	/* No JIT: every statement here is short, and PostgreSQL compiles any
	 * whose estimate exceeds jit_above_cost, which a query over a large
	 * mailbox reaches even when the expensive branch never runs: SELECT
	 * of a 100,000-message mailbox spent 100 ms of its 105 compiling
	 * (measured in tests/bench/imap_bench.py). A server without the
	 * setting (before PostgreSQL 11) has no JIT either. */
	PQclear(PQexec(pg, "SET jit = off"));
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		PQfinish(pg);
		return sora_error_set(err, SORA_ERR_TEMPORARY, "%s: out of memory", ep->desc);
	}
	c->pool = pool;
	c->ep = ep;
	c->pg = pg;
	c->created_ms = now_ms();
	c->last_used_ms = c->created_ms;
	c->session_timeout_ms = -1;
	c->local_timeout_ms = -1;
	*conn_r = c;
	return 0;
}

static void db_close(struct sora_db_conn *c)
{
	if (c == NULL)
		return;
	PQfinish(c->pg);
	free(c);
}

/* Whether an idle connection is still worth handing out. The poll() finds
 * connections the server closed while they sat idle (restart, terminate):
 * a healthy idle connection has nothing to read. */
static bool db_usable(const struct sora_db_pool *pool, struct sora_db_conn *c,
		      int64_t now)
{
	struct pollfd pfd;
	PGnotify *n;
	int r;

	if (pool->cfg.max_conn_lifetime_ms > 0 &&
	    now - c->created_ms >= pool->cfg.max_conn_lifetime_ms)
		return false;
	if (pool->cfg.max_conn_idle_time_ms > 0 &&
	    now - c->last_used_ms >= pool->cfg.max_conn_idle_time_ms)
		return false;
	if (PQstatus(c->pg) != CONNECTION_OK ||
	    PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		return false;
	pfd.fd = PQsocket(c->pg);
	pfd.events = POLLIN;
	pfd.revents = 0;
	if (pfd.fd < 0)
		return false;
	do {
		r = poll(&pfd, 1, 0);
	} while (r < 0 && errno == EINTR);
	if (r == 0)
		return true;
	if (r < 0)
		return false;
	/* Something arrived while idle: EOF, a FATAL message from a shutting
	 * down server, or a notification. Let libpq read it; anything but a
	 * notification leaves the connection unusable. */
	if (PQconsumeInput(c->pg) == 0 || PQstatus(c->pg) != CONNECTION_OK)
		return false;
	while ((n = PQnotifies(c->pg)) != NULL)
		PQfreemem(n);
	if (PQisBusy(c->pg))
		return false;
	do {
		r = poll(&pfd, 1, 0);
	} while (r < 0 && errno == EINTR);
	return r == 0;
}

/* ---- Pool ---- */

static char *dup_or_empty(const char *s)
{
	return strdup(s != NULL ? s : "");
}

static void pool_free(struct sora_db_pool *pool)
{
	if (pool == NULL)
		return;
	for (size_t i = 0; i < pool->neps; i++)
		free(pool->eps[i].host);
	free(pool->eps);
	free(pool->cfg.host);
	free(pool->cfg.dbname);
	free(pool->cfg.user);
	if (pool->cfg.password != NULL) {
		sodium_memzero(pool->cfg.password, strlen(pool->cfg.password));
		free(pool->cfg.password);
	}
	free(pool->cfg.sslmode);
	free(pool->application_name);
	free(pool);
}

int sora_db_pool_create(const struct sora_database_config *cfg,
			const char *application_name,
			struct sora_db_pool **pool_r, struct sora_error *err)
{
	struct sora_db_pool *pool;
	pthread_condattr_t ca;
	int ret = -1;

	pool = calloc(1, sizeof(*pool));
	if (pool == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		return -1;
	}
	pool->cfg = *cfg;
	pool->cfg.host = dup_or_empty(cfg->host);
	pool->cfg.dbname = dup_or_empty(cfg->dbname);
	pool->cfg.user = dup_or_empty(cfg->user);
	pool->cfg.password = dup_or_empty(cfg->password);
	pool->cfg.sslmode = dup_or_empty(cfg->sslmode);
	pool->cfg.read_endpoints = NULL;
	pool->cfg.read_endpoints_count = 0;
	pool->application_name = dup_or_empty(application_name);
	if (pool->cfg.max_conns <= 0)
		pool->cfg.max_conns = 1;
	if (pool->cfg.min_conns < 0)
		pool->cfg.min_conns = 0;
	if (pool->cfg.min_conns > pool->cfg.max_conns)
		pool->cfg.min_conns = pool->cfg.max_conns;
	pool->neps = 1 + cfg->read_endpoints_count;
	pool->eps = calloc(pool->neps, sizeof(*pool->eps));
	if (pool->cfg.host == NULL || pool->cfg.dbname == NULL || pool->cfg.user == NULL ||
	    pool->cfg.password == NULL || pool->cfg.sslmode == NULL ||
	    pool->application_name == NULL || pool->eps == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < pool->neps; i++) {
		struct db_endpoint *ep = &pool->eps[i];
		const char *h = i == 0 ? cfg->host : cfg->read_endpoints[i - 1].host;
		int p = i == 0 ? cfg->port : cfg->read_endpoints[i - 1].port;

		ep->host = dup_or_empty(h);
		if (ep->host == NULL) {
			sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
			goto out;
		}
		/* A read endpoint without a port uses the primary's. */
		ep->port = p > 0 ? p : cfg->port;
		if (ep->port < 0 || ep->port > 65535) {
			sora_error_set(err, SORA_ERR_INVALID, "[database] port %d out of range",
				       ep->port);
			goto out;
		}
		sora_db_describe(pool->cfg.dbname, ep->host, ep->port, ep->desc,
				 sizeof(ep->desc));
	}
	if (pthread_condattr_init(&ca) != 0) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "pthread_condattr_init failed");
		goto out;
	}
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_cond_init(&pool->cv, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		sora_error_set(err, SORA_ERR_TEMPORARY, "pthread_cond_init failed");
		goto out;
	}
	pthread_condattr_destroy(&ca);
	if (pthread_mutex_init(&pool->mu, NULL) != 0) {
		pthread_cond_destroy(&pool->cv);
		sora_error_set(err, SORA_ERR_TEMPORARY, "pthread_mutex_init failed");
		goto out;
	}
	*pool_r = pool;
	pool = NULL;
	ret = 0;
out:
	pool_free(pool);
	return ret;
}

void sora_db_pool_destroy(struct sora_db_pool **poolp)
{
	struct sora_db_pool *pool = *poolp;

	if (pool == NULL)
		return;
	*poolp = NULL;
	if (pool->in_use != 0)
		sora_warn(NULL, "%s: pool destroyed with %d connections still in use",
			  pool->eps[0].desc, pool->in_use);
	for (size_t i = 0; i < pool->neps; i++) {
		struct sora_db_conn *c = pool->eps[i].idle;

		while (c != NULL) {
			struct sora_db_conn *next = c->next;

			db_close(c);
			c = next;
		}
	}
	pthread_mutex_destroy(&pool->mu);
	pthread_cond_destroy(&pool->cv);
	pool_free(pool);
}

static void deadline_to_timespec(int64_t deadline_ms, struct timespec *ts)
{
	ts->tv_sec = deadline_ms / 1000;
	ts->tv_nsec = (deadline_ms % 1000) * 1000000;
}

int sora_db_acquire(struct sora_db_pool *pool, enum sora_db_target target,
		    int64_t timeout_ms, struct sora_db_conn **conn_r,
		    struct sora_error *err)
{
	int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : INT64_MAX;
	size_t nrep = target == SORA_DB_READ ? pool->neps - 1 : 0;

	*conn_r = NULL;
	pthread_mutex_lock(&pool->mu);
	for (;;) {
		unsigned int start = nrep > 0 ? pool->rr++ : 0;
		struct timespec ts;

		/* Candidates: the read endpoints in round-robin order (for
		 * SORA_DB_READ), then the primary. */
		for (size_t k = 0; k <= nrep; k++) {
			size_t idx = k < nrep ? 1 + (start + k) % nrep : 0;
			struct db_endpoint *ep = &pool->eps[idx];
			struct sora_db_conn *c;
			int r;

			if (idx != 0 && ep->idle == NULL && ep->down_until_ms > now_ms())
				continue;
			while ((c = ep->idle) != NULL) {
				ep->idle = c->next;
				ep->idle_count--;
				pool->in_use++;
				pthread_mutex_unlock(&pool->mu);
				c->next = NULL;
				if (db_usable(pool, c, now_ms())) {
					*conn_r = c;
					return 0;
				}
				db_close(c);
				pthread_mutex_lock(&pool->mu);
				pool->in_use--;
				ep->total--;
			}
			if (ep->total >= pool->cfg.max_conns)
				continue;
			ep->total++;
			pool->in_use++;
			pthread_mutex_unlock(&pool->mu);
			r = db_connect(pool, ep, &c, err);
			if (r == 0) {
				/* down_until_ms is read by other acquirers
				 * under the mutex: write it under it too. */
				if (idx != 0) {
					pthread_mutex_lock(&pool->mu);
					ep->down_until_ms = 0;
					pthread_mutex_unlock(&pool->mu);
				}
				*conn_r = c;
				return 0;
			}
			pthread_mutex_lock(&pool->mu);
			ep->total--;
			pool->in_use--;
			pthread_cond_broadcast(&pool->cv);
			if (idx != 0) {
				/* A replica that cannot be reached is skipped
				 * for a while; the primary still serves. */
				ep->down_until_ms = now_ms() + SORA_DB_ENDPOINT_RETRY_MS;
				sora_warn(NULL, "%s", err->msg);
				continue;
			}
			pthread_mutex_unlock(&pool->mu);
			return r;
		}
		/* Every candidate has max_conns open and none is idle. */
		if (now_ms() >= deadline) {
			pthread_mutex_unlock(&pool->mu);
			return sora_error_set(err, SORA_ERR_TEMPORARY,
				"%s: no free connection within %" PRId64 " ms (all %d in use)",
				pool->eps[0].desc, timeout_ms, pool->cfg.max_conns);
		}
		pool->waiting++;
		if (deadline == INT64_MAX) {
			pthread_cond_wait(&pool->cv, &pool->mu);
		} else {
			deadline_to_timespec(deadline, &ts);
			pthread_cond_timedwait(&pool->cv, &pool->mu, &ts);
		}
		pool->waiting--;
	}
}

void sora_db_release(struct sora_db_conn **connp)
{
	struct sora_db_conn *c = *connp;
	struct sora_db_pool *pool;
	bool keep;

	if (c == NULL)
		return;
	*connp = NULL;
	pool = c->pool;
	keep = !c->broken && PQstatus(c->pg) == CONNECTION_OK;
	if (keep) {
		PGTransactionStatusType ts = PQtransactionStatus(c->pg);

		if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
			/* A caller that returned early inside a transaction
			 * must not leave it open for the next user. */
			sora_db_rollback(c);
			keep = !c->broken &&
				PQtransactionStatus(c->pg) == PQTRANS_IDLE;
		} else if (ts != PQTRANS_IDLE) {
			keep = false;
		}
	}
	c->last_used_ms = now_ms();
	if (keep && pool->cfg.max_conn_lifetime_ms > 0 &&
	    c->last_used_ms - c->created_ms >= pool->cfg.max_conn_lifetime_ms)
		keep = false;
	pthread_mutex_lock(&pool->mu);
	pool->in_use--;
	if (keep) {
		c->next = c->ep->idle;
		c->ep->idle = c;
		c->ep->idle_count++;
	} else {
		c->ep->total--;
	}
	/* Waiters may want different endpoints (primary, replicas): wake
	 * them all so the one this release helps is among them. */
	pthread_cond_broadcast(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
	if (!keep)
		db_close(c);
}

int sora_db_pool_maintain(struct sora_db_pool *pool, struct sora_error *err)
{
	struct sora_db_conn *expired = NULL;
	int64_t now = now_ms();
	int ret = 0;

	pthread_mutex_lock(&pool->mu);
	for (size_t i = 0; i < pool->neps; i++) {
		struct db_endpoint *ep = &pool->eps[i];
		struct sora_db_conn **pp = &ep->idle;

		while (*pp != NULL) {
			struct sora_db_conn *c = *pp;
			bool old = (pool->cfg.max_conn_lifetime_ms > 0 &&
				    now - c->created_ms >= pool->cfg.max_conn_lifetime_ms) ||
				   (pool->cfg.max_conn_idle_time_ms > 0 &&
				    now - c->last_used_ms >= pool->cfg.max_conn_idle_time_ms);

			if (!old) {
				pp = &c->next;
				continue;
			}
			*pp = c->next;
			ep->idle_count--;
			ep->total--;
			c->next = expired;
			expired = c;
		}
	}
	pthread_mutex_unlock(&pool->mu);
	while (expired != NULL) {
		struct sora_db_conn *next = expired->next;

		db_close(expired);
		expired = next;
	}
	/* Top the primary up to min_conns. */
	for (;;) {
		struct db_endpoint *ep = &pool->eps[0];
		struct sora_db_conn *c;

		pthread_mutex_lock(&pool->mu);
		if (ep->total >= pool->cfg.min_conns) {
			pthread_mutex_unlock(&pool->mu);
			break;
		}
		ep->total++;
		pthread_mutex_unlock(&pool->mu);
		ret = db_connect(pool, ep, &c, err);
		pthread_mutex_lock(&pool->mu);
		if (ret != 0) {
			ep->total--;
			pthread_cond_broadcast(&pool->cv);
			pthread_mutex_unlock(&pool->mu);
			break;
		}
		c->next = ep->idle;
		ep->idle = c;
		ep->idle_count++;
		pthread_cond_broadcast(&pool->cv);
		pthread_mutex_unlock(&pool->mu);
	}
	return ret;
}

void sora_db_pool_get_stats(struct sora_db_pool *pool, struct sora_db_pool_stats *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&pool->mu);
	for (size_t i = 0; i < pool->neps; i++) {
		st->total += pool->eps[i].total;
		st->idle += pool->eps[i].idle_count;
	}
	st->in_use = pool->in_use;
	st->waiting = pool->waiting;
	pthread_mutex_unlock(&pool->mu);
}

PGconn *sora_db_conn_pg(struct sora_db_conn *conn)
{
	return conn->pg;
}

const char *sora_db_conn_describe(const struct sora_db_conn *conn)
{
	return conn->ep->desc;
}

void sora_db_conn_discard(struct sora_db_conn *conn)
{
	conn->broken = true;
}

/* ---- Queries ---- */

/* Reports a failed result and decides whether the connection survives. */
static int db_fail(struct sora_db_conn *conn, PGresult *res, char sqlstate_r[6],
		   struct sora_error *err)
{
	enum sora_error_class cls = sora_db_classify(conn->pg, res);
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = res != NULL ?
		PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	if (sqlstate_r != NULL) {
		sqlstate_r[0] = '\0';
		if (state != NULL && strlen(state) == 5)
			memcpy(sqlstate_r, state, 6);
	}
	if (primary != NULL && PQstatus(conn->pg) == CONNECTION_OK)
		sora_error_set(err, cls, "%s: %s", conn->ep->desc, primary);
	else
		sora_db_format_error(conn->ep->desc, PQerrorMessage(conn->pg), cls, err);
	if (PQstatus(conn->pg) != CONNECTION_OK)
		conn->broken = true;
	return -1;
}

/* Clears a query's out-parameters and refuses a connection known to be
 * broken. */
static int db_start(struct sora_db_conn *conn, PGresult **res_r, char sqlstate_r[6],
		    struct sora_error *err)
{
	if (res_r != NULL)
		*res_r = NULL;
	if (sqlstate_r != NULL)
		sqlstate_r[0] = '\0';
	if (conn->broken)
		return sora_error_set(err, SORA_ERR_TEMPORARY, "%s: connection lost",
				      conn->ep->desc);
	return 0;
}

/* Takes a statement's result: hands it to the caller (or frees it) when
 * it succeeded, reports it otherwise. */
static int db_result(struct sora_db_conn *conn, PGresult *res, PGresult **res_r,
		     char sqlstate_r[6], struct sora_error *err)
{
	ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;

	conn->last_used_ms = now_ms();
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		int ret = db_fail(conn, res, sqlstate_r, err);

		PQclear(res);
		return ret;
	}
	if (res_r != NULL)
		*res_r = res;
	else
		PQclear(res);
	return 0;
}

static int db_run(struct sora_db_conn *conn, const char *sql, int nparams,
		  const char *const *values, const int *lengths, const int *formats,
		  int result_format, PGresult **res_r, char sqlstate_r[6],
		  struct sora_error *err)
{
	if (db_start(conn, res_r, sqlstate_r, err) < 0)
		return -1;
	return db_result(conn, PQexecParams(conn->pg, sql, nparams, NULL, values, lengths,
					    formats, result_format),
			 res_r, sqlstate_r, err);
}

/* Makes the session (or, inside a transaction, the transaction) use the
 * class's statement timeout, issuing a SET only when it differs. */
static int db_apply_timeout(struct sora_db_conn *conn, enum sora_db_class cls,
			    struct sora_error *err)
{
	int64_t want = sora_db_class_timeout_ms(&conn->pool->cfg, cls);
	PGTransactionStatusType ts;
	const char *values[2];
	char num[32];
	bool local;
	int ret;

	if (conn->broken)
		return 0;  /* db_run reports it */
	ts = PQtransactionStatus(conn->pg);
	if (ts == PQTRANS_IDLE) {
		conn->local_timeout_ms = -1;
		if (conn->session_timeout_ms == want)
			return 0;
		local = false;
	} else if (ts == PQTRANS_INTRANS) {
		int64_t effective = conn->local_timeout_ms >= 0 ?
			conn->local_timeout_ms : conn->session_timeout_ms;

		if (effective == want)
			return 0;
		local = true;
	} else {
		/* In a failed transaction the statement fails regardless;
		 * on a dead connection db_run reports the loss. */
		return 0;
	}
	snprintf(num, sizeof(num), "%" PRId64, want);
	values[0] = num;
	values[1] = local ? "true" : "false";
	ret = db_run(conn, "SELECT pg_catalog.set_config('statement_timeout', $1, $2::boolean)",
		     2, values, NULL, NULL, 0, NULL, NULL, err);
	if (ret != 0)
		return ret;
	if (local)
		conn->local_timeout_ms = want;
	else
		conn->session_timeout_ms = want;
	return 0;
}

int sora_db_exec_params(struct sora_db_conn *conn, enum sora_db_class cls,
			const char *sql, int nparams, const char *const *values,
			const int *lengths, const int *formats, int result_format,
			PGresult **res_r, char sqlstate_r[6], struct sora_error *err)
{
	if (db_start(conn, res_r, sqlstate_r, err) < 0 || db_apply_timeout(conn, cls, err) < 0)
		return -1;
	return db_run(conn, sql, nparams, values, lengths, formats, result_format,
		      res_r, sqlstate_r, err);
}

static bool db_is_prepared(const struct sora_db_conn *conn, const char *name)
{
	for (int i = 0; i < conn->nprepared; i++) {
		if (strcmp(conn->prepared[i], name) == 0)
			return true;
	}
	return false;
}

/* Prepares sql under name on the connection unless it is already: 0 when
 * it is prepared, 1 when every slot is taken (the caller runs sql
 * unprepared), -1 on failure. */
static int db_prepare(struct sora_db_conn *conn, const char *name, const char *sql, int nparams,
		      char sqlstate_r[6], struct sora_error *err)
{
	if (db_is_prepared(conn, name))
		return 0;
	if (conn->nprepared == SORA_DB_MAX_PREPARED)
		return 1;
	if (db_result(conn, PQprepare(conn->pg, name, sql, nparams, NULL), NULL, sqlstate_r,
		      err) != 0)
		return -1;
	conn->prepared[conn->nprepared++] = name;
	return 0;
}

int sora_db_exec_prepared(struct sora_db_conn *conn, enum sora_db_class cls,
			  const char *name, const char *sql, int nparams,
			  const char *const *values, const int *lengths, const int *formats,
			  int result_format, PGresult **res_r, char sqlstate_r[6],
			  struct sora_error *err)
{
	PGresult *res;
	int ret;

	if (db_start(conn, res_r, sqlstate_r, err) < 0 || db_apply_timeout(conn, cls, err) < 0)
		return -1;
	ret = db_prepare(conn, name, sql, nparams, sqlstate_r, err);
	if (ret < 0)
		return ret;
	if (ret == 1)
		return db_run(conn, sql, nparams, values, lengths, formats, result_format,
			      res_r, sqlstate_r, err);
	res = PQexecPrepared(conn->pg, name, nparams, values, lengths, formats, result_format);
	return db_result(conn, res, res_r, sqlstate_r, err);
}

/* Reads the result of one statement of a pipeline and the NULL after it;
 * NULL when the connection failed. */
static PGresult *pipeline_result(PGconn *pg)
{
	PGresult *res = PQgetResult(pg);
	PGresult *end;

	if (res == NULL)
		return NULL;
	end = PQgetResult(pg);
	if (end != NULL) {
		/* More than one result for one statement: not ours. */
		PQclear(end);
		PQclear(res);
		return NULL;
	}
	return res;
}

int sora_db_exec_prepared_batch(struct sora_db_conn *conn, enum sora_db_class cls,
				const char *name, const char *sql, int nparams,
				struct sora_db_batch_stmt *stmts, size_t n,
				struct sora_error *err)
{
	PGresult *res;
	bool sent, committed = false, failed = false, lost = false;
	int prep;

	for (size_t i = 0; i < n; i++) {
		stmts[i].res = NULL;
		stmts[i].rc = -1;
		stmts[i].sqlstate[0] = '\0';
		sora_error_clear(&stmts[i].err);
	}
	if (db_start(conn, NULL, NULL, err) < 0 || db_apply_timeout(conn, cls, err) < 0)
		return -1;
	if (PQtransactionStatus(conn->pg) != PQTRANS_IDLE)
		return sora_error_set(err, SORA_ERR_PERMANENT, "%s: batch inside a transaction",
				      conn->ep->desc);
	prep = db_prepare(conn, name, sql, nparams, NULL, err);
	if (prep < 0)
		return -1;
	if (PQenterPipelineMode(conn->pg) != 1) {
		conn->broken = true;
		return sora_error_set(err, SORA_ERR_TEMPORARY, "%s: entering pipeline mode: %s",
				      conn->ep->desc, PQerrorMessage(conn->pg));
	}
	/* Everything goes out before any result is read. The connection is in
	 * blocking mode, so a send that fills the socket waits for the server
	 * to read; the server never waits for us in turn as long as what it
	 * sends back (small results, db.h) fits in the socket buffers. */
	sent = PQsendQueryParams(conn->pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) == 1;
	for (size_t i = 0; sent && i < n; i++) {
		if (prep == 0)
			sent = PQsendQueryPrepared(conn->pg, name, nparams, stmts[i].values,
						   stmts[i].lengths, stmts[i].formats, 0) == 1;
		else
			sent = PQsendQueryParams(conn->pg, sql, nparams, NULL, stmts[i].values,
						 stmts[i].lengths, stmts[i].formats, 0) == 1;
	}
	sent = sent && PQsendQueryParams(conn->pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) == 1;
	sent = sent && PQpipelineSync(conn->pg) == 1;
	if (!sent) {
		db_fail(conn, NULL, NULL, err);
		conn->broken = true;
		return -1;
	}
	/* BEGIN, the statements, COMMIT: one result each, then the sync. After
	 * an error the server skips the rest (PGRES_PIPELINE_ABORTED). */
	for (size_t q = 0; q < n + 2 && !lost; q++) {
		ExecStatusType st;

		res = pipeline_result(conn->pg);
		if (res == NULL) {
			lost = true;
			break;
		}
		st = PQresultStatus(res);
		if (st == PGRES_PIPELINE_ABORTED) {
			PQclear(res);
			continue;
		}
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
			struct sora_db_batch_stmt *s = q >= 1 && q <= n ? &stmts[q - 1] : NULL;

			db_fail(conn, res, s != NULL ? s->sqlstate : NULL,
				s != NULL ? &s->err : err);
			if (s != NULL)
				*err = s->err;
			PQclear(res);
			failed = true;
			lost = conn->broken;
			continue;
		}
		if (q >= 1 && q <= n) {
			stmts[q - 1].res = res;
			stmts[q - 1].rc = 0;
		} else {
			/* COMMIT of a transaction that failed answers ROLLBACK. */
			if (q == n + 1)
				committed = strcmp(PQcmdStatus(res), "COMMIT") == 0;
			PQclear(res);
		}
	}
	if (!lost) {
		res = PQgetResult(conn->pg);
		lost = res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC;
		PQclear(res);
	}
	if (lost || PQexitPipelineMode(conn->pg) != 1) {
		if (!conn->broken)
			db_fail(conn, NULL, NULL, err);
		conn->broken = true;
		committed = false;
	}
	conn->last_used_ms = now_ms();
	if (!committed) {
		for (size_t i = 0; i < n; i++) {
			PQclear(stmts[i].res);
			stmts[i].res = NULL;
			if (stmts[i].rc == 0)
				stmts[i].rc = -1;
		}
	}
	if (conn->broken)
		return -1;
	if (committed)
		return 0;
	/* An error left the transaction block aborted: end it. */
	sora_db_rollback(conn);
	if (!failed)
		sora_error_set(err, SORA_ERR_PERMANENT, "%s: transaction was rolled back",
			       conn->ep->desc);
	return conn->broken ? -1 : 1;
}

int sora_db_exec(struct sora_db_conn *conn, enum sora_db_class cls,
		 const char *sql, int nparams, const char *const *values,
		 PGresult **res_r, char sqlstate_r[6], struct sora_error *err)
{
	return sora_db_exec_params(conn, cls, sql, nparams, values, NULL, NULL, 0,
				   res_r, sqlstate_r, err);
}

int sora_db_begin(struct sora_db_conn *conn, enum sora_db_class cls,
		  struct sora_error *err)
{
	return sora_db_exec(conn, cls, "BEGIN", 0, NULL, NULL, NULL, err);
}

int sora_db_commit(struct sora_db_conn *conn, struct sora_error *err)
{
	PGresult *res;
	int ret;

	ret = db_run(conn, "COMMIT", 0, NULL, NULL, NULL, 0, &res, NULL, err);
	if (ret != 0)
		return ret;
	/* COMMIT of a transaction that had failed answers ROLLBACK without
	 * an error: that must not look like success. */
	if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
		ret = sora_error_set(err, SORA_ERR_PERMANENT, "%s: transaction was rolled back",
				     conn->ep->desc);
	}
	PQclear(res);
	return ret;
}

void sora_db_rollback(struct sora_db_conn *conn)
{
	PGresult *res;

	if (conn->broken || PQstatus(conn->pg) != CONNECTION_OK) {
		conn->broken = true;
		return;
	}
	if (PQtransactionStatus(conn->pg) == PQTRANS_IDLE)
		return;
	res = PQexec(conn->pg, "ROLLBACK");
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
		conn->broken = true;
	PQclear(res);
}
