/* Unit tests for the pure parts of common/db/db.c: error classification,
 * connection parameters, timeout classes and error formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/db/db.h"

static void test_classify_sqlstate(void **state)
{
	static const char *const temporary[] = {
		"08000", "08003", "08006", "08001", "08004", "08P01",
		"40001", "40P01", "57P01", "57P02", "57P03", "57014",
		"53000", "53100", "53200", "53300", "53400", "55P03", "25006",
	};
	static const char *const permanent[] = {
		"23505", "23503", "23514", "42601", "42P01", "42703", "22001",
		"28P01", "28000", "3D000", "XX000", "XX001", "25P02", "0A000",
		"40002", "57P04", "P0001",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(temporary) / sizeof(temporary[0]); i++)
		assert_int_equal(sora_db_classify_sqlstate(temporary[i]), SORA_ERR_TEMPORARY);
	for (size_t i = 0; i < sizeof(permanent) / sizeof(permanent[0]); i++)
		assert_int_equal(sora_db_classify_sqlstate(permanent[i]), SORA_ERR_PERMANENT);
	/* No SQLSTATE at all means the connection failed. */
	assert_int_equal(sora_db_classify_sqlstate(NULL), SORA_ERR_TEMPORARY);
	assert_int_equal(sora_db_classify_sqlstate(""), SORA_ERR_TEMPORARY);
	/* Garbage is not mistaken for a connection class. */
	assert_int_equal(sora_db_classify_sqlstate("08"), SORA_ERR_PERMANENT);
	assert_int_equal(sora_db_classify_sqlstate("080000"), SORA_ERR_PERMANENT);
	assert_int_equal(sora_db_classify_sqlstate("4000"), SORA_ERR_PERMANENT);
}

static void test_classify_result(void **state)
{
	PGresult *ok = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);

	(void)state;
	/* A NULL result (out of memory or lost connection) is temporary. */
	assert_int_equal(sora_db_classify(NULL, NULL), SORA_ERR_TEMPORARY);
	/* A result without SQLSTATE (client-side failure) is temporary. */
	assert_non_null(ok);
	assert_int_equal(sora_db_classify(NULL, ok), SORA_ERR_TEMPORARY);
	PQclear(ok);
}

static struct sora_database_config base_config(void)
{
	struct sora_database_config c;

	memset(&c, 0, sizeof(c));
	c.host = "db.example.net";
	c.port = 5433;
	c.dbname = "sora_mail_db";
	c.user = "sora";
	c.password = "s3cret";
	c.sslmode = "require";
	c.max_conns = 20;
	c.min_conns = 2;
	c.query_timeout_ms = 30000;
	c.search_query_timeout_ms = 60000;
	c.write_timeout_ms = 15000;
	return c;
}

static const char *param(const struct sora_db_conninfo *ci, const char *key)
{
	for (size_t i = 0; ci->keywords[i] != NULL; i++) {
		if (strcmp(ci->keywords[i], key) == 0)
			return ci->values[i];
	}
	return NULL;
}

static void test_conninfo_primary(void **state)
{
	struct sora_database_config c = base_config();
	struct sora_db_conninfo ci;
	struct sora_error err;

	(void)state;
	assert_int_equal(sora_db_conninfo_build(&c, NULL, "sora-test", &ci, &err), 0);
	assert_string_equal(param(&ci, "host"), "db.example.net");
	assert_string_equal(param(&ci, "port"), "5433");
	assert_string_equal(param(&ci, "dbname"), "sora_mail_db");
	assert_string_equal(param(&ci, "user"), "sora");
	assert_string_equal(param(&ci, "password"), "s3cret");
	assert_string_equal(param(&ci, "sslmode"), "require");
	assert_string_equal(param(&ci, "application_name"), "sora-test");
	assert_non_null(param(&ci, "connect_timeout"));
	assert_string_equal(param(&ci, "client_encoding"), "UTF8");
	/* Both arrays end together. */
	for (size_t i = 0; i <= SORA_DB_MAX_PARAMS; i++) {
		assert_true((ci.keywords[i] == NULL) == (ci.values[i] == NULL));
		if (ci.keywords[i] == NULL)
			break;
	}
}

static void test_conninfo_endpoint_and_empty(void **state)
{
	struct sora_database_config c = base_config();
	struct sora_db_endpoint ep = { "replica-1", 6543 };
	struct sora_db_conninfo ci;
	struct sora_error err;

	(void)state;
	/* A read endpoint replaces host and port, nothing else. */
	assert_int_equal(sora_db_conninfo_build(&c, &ep, NULL, &ci, &err), 0);
	assert_string_equal(param(&ci, "host"), "replica-1");
	assert_string_equal(param(&ci, "port"), "6543");
	assert_string_equal(param(&ci, "dbname"), "sora_mail_db");
	assert_null(param(&ci, "application_name"));

	/* Empty values are left to libpq's defaults: an empty password is
	 * not sent at all (trust and peer auth need none). */
	c.password = "";
	c.sslmode = NULL;
	c.port = 0;
	assert_int_equal(sora_db_conninfo_build(&c, NULL, "x", &ci, &err), 0);
	assert_null(param(&ci, "password"));
	assert_null(param(&ci, "sslmode"));
	assert_null(param(&ci, "port"));

	/* Values with characters that would need quoting in a conninfo
	 * string are passed through untouched: nothing is pasted. */
	c.password = "pa ss'word\\ host=evil";
	assert_int_equal(sora_db_conninfo_build(&c, NULL, "x", &ci, &err), 0);
	assert_string_equal(param(&ci, "password"), "pa ss'word\\ host=evil");
	assert_string_equal(param(&ci, "host"), "db.example.net");

	c.port = 70000;
	assert_int_equal(sora_db_conninfo_build(&c, NULL, "x", &ci, &err), -1);
	assert_int_equal(err.cls, SORA_ERR_INVALID);
	assert_string_equal(err.msg, "port 70000 out of range");
}

static void test_class_timeouts(void **state)
{
	struct sora_database_config c = base_config();

	(void)state;
	assert_int_equal(sora_db_class_timeout_ms(&c, SORA_DB_CLASS_DEFAULT), 30000);
	assert_int_equal(sora_db_class_timeout_ms(&c, SORA_DB_CLASS_SEARCH), 60000);
	assert_int_equal(sora_db_class_timeout_ms(&c, SORA_DB_CLASS_WRITE), 15000);
	assert_int_equal(sora_db_class_timeout_ms(&c, SORA_DB_CLASS_NONE), 0);
	c.search_query_timeout_ms = -1;  /* disabled */
	assert_int_equal(sora_db_class_timeout_ms(&c, SORA_DB_CLASS_SEARCH), 0);
}

static void test_describe(void **state)
{
	char buf[128];

	(void)state;
	sora_db_describe("sora_mail_db", "127.0.0.1", 5432, buf, sizeof(buf));
	assert_string_equal(buf, "database sora_mail_db at 127.0.0.1:5432");
	sora_db_describe("d", "::1", 5433, buf, sizeof(buf));
	assert_string_equal(buf, "database d at [::1]:5433");
	sora_db_describe("d", "/run/postgresql", 5432, buf, sizeof(buf));
	assert_string_equal(buf, "database d at /run/postgresql, port 5432");
	sora_db_describe("d", NULL, 0, buf, sizeof(buf));
	assert_string_equal(buf, "database d at localhost:5432");
}

static void test_format_error(void **state)
{
	struct sora_error err;
	const char *prefix = "database sora_mail_db at 127.0.0.1:5999";

	(void)state;
	sora_db_format_error(prefix,
			     "connection to server at \"127.0.0.1\", port 5999 failed: "
			     "Connection refused\n\tIs the server running on that host and "
			     "accepting TCP/IP connections?\n", SORA_ERR_TEMPORARY, &err);
	assert_string_equal(err.msg, "database sora_mail_db at 127.0.0.1:5999: cannot connect: "
			    "Connection refused");

	sora_db_format_error(prefix,
			     "connection to server at \"127.0.0.1\", port 5999 failed: FATAL:  "
			     "password authentication failed for user \"sora\"\n", SORA_ERR_TEMPORARY, &err);
	assert_string_equal(err.msg, "database sora_mail_db at 127.0.0.1:5999: cannot connect: "
			    "password authentication failed for user \"sora\"");

	sora_db_format_error(prefix,
			     "connection to server on socket \"/tmp/.s.PGSQL.5432\" failed: "
			     "No such file or directory\n", SORA_ERR_TEMPORARY, &err);
	assert_string_equal(err.msg, "database sora_mail_db at 127.0.0.1:5999: cannot connect: "
			    "No such file or directory");

	sora_db_format_error(prefix, "ERROR:  relation \"x\" does not exist\nLINE 1: ...\n",
			     SORA_ERR_PERMANENT, &err);
	assert_string_equal(err.msg, "database sora_mail_db at 127.0.0.1:5999: "
			    "relation \"x\" does not exist");

	/* Nothing usable: still one line that names the database. */
	sora_db_format_error(prefix, "", SORA_ERR_TEMPORARY, &err);
	assert_string_equal(err.msg, "database sora_mail_db at 127.0.0.1:5999: unknown error");
	sora_db_format_error(prefix, NULL, SORA_ERR_TEMPORARY, &err);
	assert_string_equal(err.msg, "database sora_mail_db at 127.0.0.1:5999: unknown error");

	/* The class is the caller's; the result is always a single line, even
	 * when cut short. */
	char longmsg[2 * SORA_ERROR_MSG_SIZE];
	memset(longmsg, 'x', sizeof(longmsg) - 1);
	longmsg[sizeof(longmsg) - 1] = '\0';
	longmsg[10] = '\n';
	sora_db_format_error(prefix, "FATAL:  a\nb\nc", SORA_ERR_PERMANENT, &err);
	assert_int_equal(err.cls, SORA_ERR_PERMANENT);
	assert_string_equal(err.msg, "database sora_mail_db at 127.0.0.1:5999: a");
	sora_db_format_error(prefix, longmsg + 11, SORA_ERR_TEMPORARY, &err);
	assert_int_equal(err.cls, SORA_ERR_TEMPORARY);
	assert_null(strchr(err.msg, '\n'));
	/* The server's line is capped at 400 bytes. */
	assert_int_equal(strlen(err.msg), strlen(prefix) + 2 + 400);
}

/* A result built in memory, one text column "n" with the given values
 * (NULL: SQL NULL). */
static PGresult *int_result(const char *const *values, int count)
{
	PGresAttDesc att = { .name = (char *)"n", .format = 0, .typid = 20, .typlen = 8,
			     .atttypmod = -1 };
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);

	assert_non_null(res);
	assert_int_equal(PQsetResultAttrs(res, 1, &att), 1);
	for (int i = 0; i < count; i++)
		assert_int_equal(PQsetvalue(res, i, 0, (char *)values[i],
					    values[i] != NULL ? (int)strlen(values[i]) : -1), 1);
	return res;
}

/* Database values are parsed with every check strtoll leaves to its
 * caller: a bad value is an error, never a silent 0 or a saturated number
 * (the uploader used to strtoll() its ids unchecked). */
static void test_get_i64(void **state)
{
	static const char *const good[] = { "0", "42", "-7", "9223372036854775807",
					     "-9223372036854775808" };
	static const int64_t want[] = { 0, 42, -7, INT64_MAX, INT64_MIN };
	static const char *const bad[] = { "", " 1", "+1", "1 ", "12x", "0x10", "-",
					   "9223372036854775808", "-9223372036854775809",
					   "99999999999999999999", NULL };
	PGresult *res = int_result(good, 5);
	struct sora_error err;
	int64_t v;

	(void)state;
	for (int i = 0; i < 5; i++) {
		v = 1;
		assert_int_equal(sora_db_get_i64(res, i, 0, &v, &err), 0);
		assert_true(v == want[i]);
	}
	/* Out of range rows and columns. */
	assert_int_equal(sora_db_get_i64(res, 5, 0, &v, &err), -1);
	assert_int_equal(sora_db_get_i64(res, 0, 1, &v, &err), -1);
	PQclear(res);

	res = int_result(bad, 11);
	for (int i = 0; i < 11; i++) {
		v = 1234;
		sora_error_clear(&err);
		if (sora_db_get_i64(res, i, 0, &v, &err) != -1)
			fail_msg("accepted \"%s\"", bad[i] != NULL ? bad[i] : "NULL");
		assert_int_equal(err.cls, SORA_ERR_PERMANENT);
		assert_non_null(strstr(err.msg, "column n"));
		assert_true(v == 1234);
	}
	PQclear(res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify_sqlstate),
		cmocka_unit_test(test_classify_result),
		cmocka_unit_test(test_conninfo_primary),
		cmocka_unit_test(test_conninfo_endpoint_and_empty),
		cmocka_unit_test(test_class_timeouts),
		cmocka_unit_test(test_describe),
		cmocka_unit_test(test_format_error),
		cmocka_unit_test(test_get_i64),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
