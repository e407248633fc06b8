/* sora_db_exec_prepared_batch (common/db/db.h) against a real PostgreSQL:
 * the pipelined transaction that group commit runs (backend/store/
 * deliver.c). Skips its cases without a database (live-db.h); driven by
 * tests/integration/test_db_batch.py. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "live-db.h"

/* A table of its own: a value that must be positive, and a tag that must
 * be unique at COMMIT (deferred), so a batch can fail in a statement or
 * only when it commits. */
static const char sql_insert[] =
	"INSERT INTO batch_test (v, tag, body) VALUES ($1::int, $2::text, $3::text)"
	" RETURNING id, v, length(body)";
#define STMT "test_batch_insert_v1"

static int setup(void **state)
{
	(void)state;
	if (live_db_open("test-db-batch-live", 2, 30000) < 0)
		return -1;
	if (conn != NULL)
		PQclear(qres("CREATE TABLE IF NOT EXISTS batch_test (id bigserial PRIMARY KEY,"
			     " v int NOT NULL CHECK (v > 0), tag text,"
			     " body text,"
			     " CONSTRAINT batch_test_tag UNIQUE (tag) DEFERRABLE INITIALLY DEFERRED)",
			     NULL, NULL, NULL));
	return 0;
}

/* n statements inserting v = values[i], tag = tags[i] (NULL: none), with
 * body_len bytes of body each. */
struct batch {
	struct sora_db_batch_stmt stmts[64];
	const char *params[64][3];
	char v[64][16];
	char *body;
	size_t n;
};

static void batch_init(struct batch *b, const int *values, const char *const *tags, size_t n,
		       size_t body_len)
{
	memset(b, 0, sizeof(*b));
	assert_true(n <= 64);
	b->n = n;
	b->body = malloc(body_len + 1);
	assert_non_null(b->body);
	memset(b->body, 'x', body_len);
	b->body[body_len] = '\0';
	for (size_t i = 0; i < n; i++) {
		snprintf(b->v[i], sizeof(b->v[i]), "%d", values[i]);
		b->params[i][0] = b->v[i];
		b->params[i][1] = tags != NULL ? tags[i] : NULL;
		b->params[i][2] = b->body;
		b->stmts[i].values = b->params[i];
	}
}

static int batch_run(struct batch *b, struct sora_error *err)
{
	return sora_db_exec_prepared_batch(conn, SORA_DB_CLASS_WRITE, STMT, sql_insert, 3,
					   b->stmts, b->n, err);
}

static void batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		PQclear(b->stmts[i].res);
	free(b->body);
}

static int64_t rows(void)
{
	return q("SELECT count(*) FROM batch_test", NULL, NULL, NULL);
}

/* The connection is usable and outside a transaction. */
static void conn_idle(void)
{
	assert_int_equal(PQtransactionStatus(sora_db_conn_pg(conn)), PQTRANS_IDLE);
	assert_int_equal(q("SELECT 7", NULL, NULL, NULL), 7);
}

/* After a batch that did not commit: no statement has a result, and the
 * table and the connection are as before. Frees the batch. */
static void rolled_back(struct batch *b, int64_t before)
{
	for (size_t i = 0; i < b->n; i++) {
		assert_int_equal(b->stmts[i].rc, -1);
		assert_null(b->stmts[i].res);
	}
	batch_free(b);
	assert_int_equal(rows(), before);
	conn_idle();
}

static void test_commits_every_statement(void **state)
{
	static const int values[5] = { 1, 2, 3, 4, 5 };
	struct sora_error err = { 0 };
	struct batch b;
	int64_t before;

	(void)state;
	need_db();
	before = rows();
	batch_init(&b, values, NULL, 5, 10);
	ok(batch_run(&b, &err), &err);
	for (size_t i = 0; i < b.n; i++) {
		assert_int_equal(b.stmts[i].rc, 0);
		assert_non_null(b.stmts[i].res);
		assert_int_equal(PQntuples(b.stmts[i].res), 1);
		/* Each statement's own result, in order. */
		assert_string_equal(PQgetvalue(b.stmts[i].res, 0, 1), b.v[i]);
	}
	/* Ids in statement order: they ran in the order given. */
	for (size_t i = 1; i < b.n; i++)
		assert_true(atoll(PQgetvalue(b.stmts[i].res, 0, 0)) >
			    atoll(PQgetvalue(b.stmts[i - 1].res, 0, 0)));
	batch_free(&b);
	assert_int_equal(rows(), before + 5);
	conn_idle();
}

static void test_failing_statement_rolls_back_all(void **state)
{
	static const int values[4] = { 1, 2, -1, 4 };
	struct sora_error err = { 0 };
	struct batch b;
	int64_t before;

	(void)state;
	need_db();
	before = rows();
	batch_init(&b, values, NULL, 4, 10);
	assert_int_equal(batch_run(&b, &err), 1);
	assert_int_equal(err.cls, SORA_ERR_PERMANENT);
	assert_non_null(strstr(err.msg, "batch_test_v_check"));
	/* The third failed with its own sqlstate; nobody has a result. */
	assert_string_equal(b.stmts[2].sqlstate, "23514");
	assert_string_equal(b.stmts[0].sqlstate, "");
	rolled_back(&b, before);
}

static void test_failing_commit_rolls_back_all(void **state)
{
	static const int values[3] = { 1, 2, 3 };
	static const char *const tags[3] = { "a", "b", "a" };
	struct sora_error err = { 0 };
	struct batch b;
	int64_t before;

	(void)state;
	need_db();
	before = rows();
	/* Every statement succeeds; the deferred unique check fails the
	 * COMMIT. */
	batch_init(&b, values, tags, 3, 10);
	assert_int_equal(batch_run(&b, &err), 1);
	assert_non_null(strstr(err.msg, "batch_test_tag"));
	rolled_back(&b, before);
}

static void test_large_batch(void **state)
{
	int values[64];
	struct sora_error err = { 0 };
	struct batch b;
	int64_t before;

	(void)state;
	need_db();
	for (int i = 0; i < 64; i++)
		values[i] = i + 1;
	before = rows();
	/* 64 statements of 256 KiB each: 16 MiB sent before any result is
	 * read, many times what the socket buffers hold. */
	batch_init(&b, values, NULL, 64, 256 * 1024);
	ok(batch_run(&b, &err), &err);
	for (size_t i = 0; i < b.n; i++)
		assert_string_equal(PQgetvalue(b.stmts[i].res, 0, 2), "262144");
	batch_free(&b);
	assert_int_equal(rows(), before + 64);
	conn_idle();
}

static void test_unprepared_when_slots_are_full(void **state)
{
	static const char *const fill[SORA_DB_MAX_PREPARED] = {
		"fill_0", "fill_1", "fill_2", "fill_3", "fill_4", "fill_5", "fill_6", "fill_7",
		"fill_8", "fill_9", "fill_10", "fill_11", "fill_12", "fill_13", "fill_14", "fill_15",
	};
	static const int values[3] = { 7, 8, 9 };
	struct sora_error err = { 0 };
	struct batch b;
	int64_t before;

	(void)state;
	need_db();
	/* Every prepared-statement slot of the connection taken: a batch under
	 * a new name runs its statement unprepared, with the same results. */
	for (size_t i = 0; i < SORA_DB_MAX_PREPARED; i++) {
		PGresult *r = NULL;

		ok(sora_db_exec_prepared(conn, SORA_DB_CLASS_DEFAULT, fill[i], "SELECT 1", 0, NULL,
					 NULL, NULL, 0, &r, NULL, &err), &err);
		PQclear(r);
	}
	before = rows();
	batch_init(&b, values, NULL, 3, 10);
	ok(sora_db_exec_prepared_batch(conn, SORA_DB_CLASS_WRITE, "test_batch_insert_v2",
				       sql_insert, 3, b.stmts, b.n, &err), &err);
	for (size_t i = 0; i < b.n; i++)
		assert_string_equal(PQgetvalue(b.stmts[i].res, 0, 1), b.v[i]);
	batch_free(&b);
	assert_int_equal(rows(), before + 3);
	assert_int_equal(q("SELECT count(*) FROM pg_prepared_statements"
			   " WHERE name = 'test_batch_insert_v2'", NULL, NULL, NULL), 0);
	conn_idle();
}

static void test_refused_inside_a_transaction(void **state)
{
	static const int values[1] = { 1 };
	struct sora_error err = { 0 };
	struct batch b;

	(void)state;
	need_db();
	ok(sora_db_begin(conn, SORA_DB_CLASS_WRITE, &err), &err);
	batch_init(&b, values, NULL, 1, 1);
	assert_int_equal(batch_run(&b, &err), -1);
	assert_non_null(strstr(err.msg, "inside a transaction"));
	batch_free(&b);
	sora_db_rollback(conn);
	conn_idle();
}

struct killer {
	struct sora_db_conn *conn;
	char pid[24];
};

/* After a pause, terminates the backend of the batch's connection. */
static void *kill_later(void *arg)
{
	struct killer *k = arg;
	const char *params[1] = { k->pid };

	PQclear(qexec(k->conn, "SELECT pg_terminate_backend($1::int)"
		      " FROM (SELECT pg_sleep(0.3)) s", 1, params));
	return NULL;
}

static void test_lost_connection_is_unknown(void **state)
{
	static const int values[3] = { 1, 2, 3 };
	struct sora_error err = { 0 };
	struct killer k = { 0 };
	struct batch b;
	pthread_t th;
	int64_t before;

	(void)state;
	need_db();
	before = rows();
	ok(sora_db_acquire(pool, SORA_DB_PRIMARY, 10000, &k.conn, &err), &err);
	s64(k.pid, q("SELECT pg_backend_pid()", NULL, NULL, NULL));
	/* The batch's first INSERT waits for a lock the other connection
	 * holds, which then terminates the batch's backend mid-pipeline. */
	PQclear(qexec(k.conn, "BEGIN", 0, NULL));
	PQclear(qexec(k.conn, "LOCK TABLE batch_test IN EXCLUSIVE MODE", 0, NULL));
	assert_int_equal(pthread_create(&th, NULL, kill_later, &k), 0);
	batch_init(&b, values, NULL, 3, 10);
	assert_int_equal(batch_run(&b, &err), -1);
	assert_int_equal(err.cls, SORA_ERR_TEMPORARY);
	pthread_join(th, NULL);
	PQclear(qexec(k.conn, "ROLLBACK", 0, NULL));
	sora_db_release(&k.conn);
	/* The broken connection is discarded on release; take a new one. */
	sora_db_release(&conn);
	ok(sora_db_acquire(pool, SORA_DB_PRIMARY, 10000, &conn, &err), &err);
	rolled_back(&b, before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commits_every_statement),
		cmocka_unit_test(test_failing_statement_rolls_back_all),
		cmocka_unit_test(test_failing_commit_rolls_back_all),
		cmocka_unit_test(test_large_batch),
		cmocka_unit_test(test_unprepared_when_slots_are_full),
		cmocka_unit_test(test_refused_inside_a_transaction),
		cmocka_unit_test(test_lost_connection_is_unknown),
	};

	return cmocka_run_group_tests(tests, setup, live_db_teardown);
}
