/* Helpers shared by the store's live cmocka programs (test-*-live.c in this
 * folder), which run against a real PostgreSQL with the schema applied.
 * Header-only: every unit test is a program of its own (see the Makefile),
 * so everything here is static inline. Include it after <cmocka.h>.
 *
 * The database comes from SORA_TEST_PG_HOST, SORA_TEST_PG_PORT and
 * SORA_TEST_PG_DBNAME (and optionally SORA_TEST_PG_USER, default
 * "postgres"). When they are not set, live_db_open() leaves conn NULL and
 * succeeds, and every case that starts with need_db() is skipped; the
 * tests/integration/test_*.py drivers set them and require every case to
 * pass.
 *
 *   pool, conn          the program's pool and its one connection
 *   live_db_open()      group setup: opens both (or nothing, see above)
 *   live_db_teardown()  group teardown: closes both
 *   need_db()           first line of a case: skip it without a database
 *   qexec()             runs SQL with n parameters, fails the case on error
 *   qres(), q()         SQL with up to 3 parameters: the result, or the
 *                       first column of the first row as an integer
 *   s64()               an int64_t as a parameter string
 *   ok(), fails()       assert a store call succeeded / failed with a class
 *   new_account()       a fresh account with its default mailboxes
 *   mbox_id()           a mailbox's id by account and name */
#ifndef SORA_TEST_LIVE_DB_H
#define SORA_TEST_LIVE_DB_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/store/deliver.h"
#include "common/db/db.h"

static struct sora_db_pool *pool;
static struct sora_db_conn *conn;

/* Opens pool and conn (application name app, at most max_conns
 * connections, every timeout timeout_ms). Returns 0 without opening
 * anything when the SORA_TEST_PG_* variables are not set, -1 when the
 * database cannot be reached. */
static inline int live_db_open(const char *app, int max_conns, int timeout_ms)
{
	const char *host = getenv("SORA_TEST_PG_HOST"), *port = getenv("SORA_TEST_PG_PORT");
	const char *db = getenv("SORA_TEST_PG_DBNAME"), *user = getenv("SORA_TEST_PG_USER");
	struct sora_database_config cfg = { 0 };
	struct sora_error err = { 0 };

	if (host == NULL || host[0] == '\0' || port == NULL || db == NULL)
		return 0;
	cfg.host = (char *)host;
	cfg.port = atoi(port);
	cfg.dbname = (char *)db;
	cfg.user = (char *)(user != NULL ? user : "postgres");
	cfg.password = "";
	cfg.sslmode = "disable";
	cfg.max_conns = max_conns;
	cfg.min_conns = 0;
	cfg.max_conn_lifetime_ms = 3600000;
	cfg.max_conn_idle_time_ms = 3600000;
	cfg.query_timeout_ms = timeout_ms;
	cfg.search_query_timeout_ms = timeout_ms;
	cfg.write_timeout_ms = timeout_ms;
	if (sora_db_pool_create(&cfg, app, &pool, &err) != 0 ||
	    sora_db_acquire(pool, SORA_DB_PRIMARY, 10000, &conn, &err) != 0) {
		fprintf(stderr, "database: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static inline int live_db_teardown(void **state)
{
	sora_db_release(&conn);
	sora_db_pool_destroy(&pool);
	return 0;
}

static inline void need_db(void)
{
	if (conn == NULL)
		skip();
}

/* Runs sql on c with n parameters; the caller clears the result. */
static inline PGresult *qexec(struct sora_db_conn *c, const char *sql, int n,
			      const char *const *params)
{
	struct sora_error err = { 0 };
	PGresult *res = NULL;

	if (sora_db_exec(c, SORA_DB_CLASS_DEFAULT, sql, n, params, &res, NULL, &err) != 0)
		fail_msg("%s: %s", sql, err.msg);
	return res;
}

/* sql with up to 3 parameters (the first NULL ends them); the caller
 * clears the result. */
static inline PGresult *qres(const char *sql, const char *p1, const char *p2, const char *p3)
{
	const char *params[3] = { p1, p2, p3 };
	int n = p3 != NULL ? 3 : p2 != NULL ? 2 : p1 != NULL ? 1 : 0;

	return qexec(conn, sql, n, params);
}

/* The first column of the first row as an integer (0 when there is no row
 * or it is NULL). */
static inline int64_t q(const char *sql, const char *p1, const char *p2, const char *p3)
{
	struct sora_error err = { 0 };
	PGresult *res = qres(sql, p1, p2, p3);
	int64_t v = 0;

	if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		assert_int_equal(sora_db_get_i64(res, 0, 0, &v, &err), 0);
	PQclear(res);
	return v;
}

static inline const char *s64(char buf[24], int64_t v)
{
	snprintf(buf, 24, "%" PRId64, v);
	return buf;
}

static inline void ok(int rc, const struct sora_error *err)
{
	if (rc != 0)
		fail_msg("unexpected failure: class %d: %s", err->cls, err->msg);
}

static inline void fails(int rc, const struct sora_error *err, enum sora_error_class cls)
{
	assert_int_equal(rc, -1);
	if (err->cls != cls)
		fail_msg("class %d, wanted %d: %s", err->cls, cls, err->msg);
}

static inline int64_t new_account(void)
{
	struct sora_error err = { 0 };
	int64_t acc = q("INSERT INTO accounts DEFAULT VALUES RETURNING id", NULL, NULL, NULL);

	assert_true(acc > 0);
	if (sora_store_ensure_default_mailboxes(conn, acc, NULL, &err) != 0)
		fail_msg("defaults: %s", err.msg);
	return acc;
}

static inline int64_t mbox_id(int64_t acc, const char *name)
{
	char a[24];

	return q("SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2", s64(a, acc), name,
		 NULL);
}

#endif
