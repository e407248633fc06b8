/* Tests for common/core/log.c: formats, sanitising, level filtering, file
 * output and reopening, concurrency, and sora_log_escape. Every test sends
 * the logger to a fresh file in a private temporary directory and reads the
 * lines back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/core/log.h"

#define LINE_MAX_BYTES 4096

static char tmpdir[PATH_MAX];
static char logpath[PATH_MAX];

static void path_in_tmp(char *dst, size_t size, const char *name)
{
	int n = snprintf(dst, size, "%s/%s", tmpdir, name);
	assert_true(n > 0 && (size_t)n < size);
}

/* Reads a whole file into a malloc'd NUL-terminated buffer. */
static char *slurp(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, len = 0;

	if (f == NULL) {
		*len_r = 0;
		return calloc(1, 1);
	}
	for (;;) {
		if (cap - len < 4096) {
			cap = cap * 2 + 8192;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		size_t n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
	}
	fclose(f);
	buf[len] = '\0';
	*len_r = len;
	return buf;
}

static size_t count_lines(const char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		n += s[i] == '\n';
	return n;
}

static void setup_file(const char *level, const char *format)
{
	const char *error = NULL;

	unlink(logpath);
	assert_int_equal(sora_log_setup(level, format, logpath, &error), 0);
}

/* The single line in the log file, without its "\n" (caller frees). */
static char *only_line(void)
{
	size_t len;
	char *s = slurp(logpath, &len);

	assert_int_equal(count_lines(s, len), 1);
	assert_true(len > 0 && s[len - 1] == '\n');
	assert_int_equal(strlen(s), len);
	s[len - 1] = '\0';
	return s;
}

static void assert_matches(const char *text, const char *pattern)
{
	regex_t re;

	assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	int rc = regexec(&re, text, 0, NULL, 0);
	regfree(&re);
	if (rc != 0)
		fail_msg("\"%s\" does not match /%s/", text, pattern);
}

static int group_setup(void **state)
{
	sora_strlcpy(tmpdir, "/tmp/sora-test-log-XXXXXX", sizeof(tmpdir));
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	path_in_tmp(logpath, sizeof(logpath), "test.log");
	sora_log_set_ident("test-svc");
	return 0;
}

static int group_teardown(void **state)
{
	const char *error;
	char cmd[PATH_MAX + 16];

	sora_log_setup("info", "console", "stderr", &error);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_parse_level(void **state)
{
	enum sora_log_level l;

	assert_int_equal(sora_log_parse_level("debug", &l), 0);
	assert_int_equal(l, SORA_LOG_DEBUG);
	assert_int_equal(sora_log_parse_level("INFO", &l), 0);
	assert_int_equal(l, SORA_LOG_INFO);
	assert_int_equal(sora_log_parse_level("warn", &l), 0);
	assert_int_equal(l, SORA_LOG_WARN);
	assert_int_equal(sora_log_parse_level("notice", &l), 0);
	assert_int_equal(l, SORA_LOG_NOTICE);
	assert_int_equal(sora_log_parse_level("warning", &l), 0);
	assert_int_equal(l, SORA_LOG_WARN);
	assert_int_equal(sora_log_parse_level("error", &l), 0);
	assert_int_equal(l, SORA_LOG_ERROR);
	assert_int_equal(sora_log_parse_level("verbose", &l), -1);
	assert_int_equal(sora_log_parse_level("", &l), -1);
	assert_int_equal(sora_log_parse_level(NULL, &l), -1);
}

static void test_setup_errors(void **state)
{
	const char *error = NULL;

	assert_int_equal(sora_log_setup("loud", "console", "stderr", &error), -1);
	assert_non_null(error);
	error = NULL;
	assert_int_equal(sora_log_setup("info", "xml", "stderr", &error), -1);
	assert_non_null(error);
	error = NULL;
	assert_int_equal(sora_log_setup("info", "console", "/nonexistent-dir/x/y.log",
					&error), -1);
	assert_non_null(error);

	/* A failed setup leaves the previous configuration in place. */
	setup_file("info", "console");
	assert_int_equal(sora_log_setup("info", "console", "/nonexistent-dir/y.log",
					&error), -1);
	sora_info(NULL, "still here");
	char *line = only_line();
	assert_non_null(strstr(line, "still here"));
	free(line);
}

static void test_console_format(void **state)
{
	struct sora_log_ctx ctx = {
		.session = "ab12", .proto = "imap", .peer = "1.2.3.4:5", .user = "bob",
	};

	setup_file("info", "console");
	sora_info(&ctx, "login ok after %d ms", 42);
	char *line = only_line();
	assert_matches(line, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
			     "\\.[0-9]{3}Z INFO test-svc session=ab12 proto=imap "
			     "peer=1\\.2\\.3\\.4:5 user=bob login ok after 42 ms$");
	free(line);

	/* Missing context fields are left out; no context at all is fine. */
	struct sora_log_ctx partial = { .proto = "lmtp" };
	setup_file("debug", "console");
	sora_error(&partial, "x");
	line = only_line();
	assert_matches(line, "Z ERROR test-svc proto=lmtp x$");
	free(line);

	setup_file("debug", "console");
	sora_warn(NULL, "plain");
	line = only_line();
	assert_matches(line, "Z WARN test-svc plain$");
	free(line);

	setup_file("debug", "console");
	sora_debug(NULL, "dbg");
	line = only_line();
	assert_matches(line, "Z DEBUG test-svc dbg$");
	free(line);
}

static void test_console_sanitises(void **state)
{
	/* A user name with a space, a CR/LF injection attempt in the
	 * message, a control byte, invalid and valid UTF-8. */
	struct sora_log_ctx ctx = { .user = "bob smith\r\nINFO fake" };

	setup_file("info", "console");
	sora_info(&ctx, "a\r\nERROR forged\x01 caf\xc3\xa9 bad\xff end");
	char *line = only_line();
	assert_non_null(strstr(line, " user=bob\\x20smith\\x0d\\x0aINFO\\x20fake "));
	assert_non_null(strstr(line, " a\\x0d\\x0aERROR forged\\x01 caf\xc3\xa9 bad\\xff end"));
	free(line);
}

/* notice sits between info and warn: level = "notice" keeps master logins
 * (logged at notice) and drops routine info lines. */
static void test_notice_level(void **state)
{
	size_t len;

	(void)state;
	setup_file("notice", "console");
	assert_false(sora_log_enabled(SORA_LOG_INFO));
	assert_true(sora_log_enabled(SORA_LOG_NOTICE));
	sora_info(NULL, "no-info");
	sora_notice(NULL, "yes-notice");
	sora_warn(NULL, "yes-warn");
	char *s = slurp(logpath, &len);
	assert_int_equal(count_lines(s, len), 2);
	assert_null(strstr(s, "no-info"));
	assert_non_null(strstr(s, " NOTICE "));
	free(s);
	setup_file("warn", "json");
	sora_notice(NULL, "no-notice");
	sora_warn(NULL, "w");
	s = slurp(logpath, &len);
	assert_int_equal(count_lines(s, len), 1);
	assert_null(strstr(s, "no-notice"));
	free(s);
	setup_file("debug", "json");
	sora_notice(NULL, "n");
	s = slurp(logpath, &len);
	assert_non_null(strstr(s, "\"level\":\"notice\""));
	free(s);
}

static void test_level_filtering(void **state)
{
	size_t len;

	setup_file("warn", "console");
	assert_false(sora_log_enabled(SORA_LOG_DEBUG));
	assert_false(sora_log_enabled(SORA_LOG_INFO));
	assert_true(sora_log_enabled(SORA_LOG_WARN));
	assert_true(sora_log_enabled(SORA_LOG_ERROR));
	sora_debug(NULL, "no-debug");
	sora_info(NULL, "no-info");
	sora_warn(NULL, "yes-warn");
	sora_error(NULL, "yes-error");
	char *s = slurp(logpath, &len);
	assert_int_equal(count_lines(s, len), 2);
	assert_null(strstr(s, "no-"));
	assert_non_null(strstr(s, "yes-warn"));
	assert_non_null(strstr(s, "yes-error"));
	free(s);

	/* sora_log_set_level changes it at run time. */
	sora_log_set_level(SORA_LOG_DEBUG);
	assert_true(sora_log_enabled(SORA_LOG_DEBUG));
	sora_debug(NULL, "now-debug");
	s = slurp(logpath, &len);
	assert_int_equal(count_lines(s, len), 3);
	assert_non_null(strstr(s, "now-debug"));
	free(s);
}

static cJSON *parse_json_line(const char *line)
{
	cJSON *j = cJSON_Parse(line);
	if (j == NULL)
		fail_msg("not valid JSON: %s", line);
	assert_true(cJSON_IsObject(j));
	return j;
}

static const char *json_str(cJSON *j, const char *key)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_json_format(void **state)
{
	struct sora_log_ctx ctx = {
		.session = "s-1", .proto = "pop3", .peer = "[2001:db8::1]:995",
		.user = "al\"ice\\",
	};

	setup_file("info", "json");
	sora_warn(&ctx, "quote\" backslash\\ nl\n cr\r tab\t bell\x07 del\x7f "
			"utf8 caf\xc3\xa9 \xe2\x82\xac bad \xff\xc3( surrogate \xed\xa0\x80");
	char *line = only_line();
	cJSON *j = parse_json_line(line);
	assert_matches(json_str(j, "ts"), "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
					  "[0-9]{2}\\.[0-9]{3}Z$");
	assert_string_equal(json_str(j, "level"), "warn");
	assert_string_equal(json_str(j, "svc"), "test-svc");
	assert_string_equal(json_str(j, "session"), "s-1");
	assert_string_equal(json_str(j, "proto"), "pop3");
	assert_string_equal(json_str(j, "peer"), "[2001:db8::1]:995");
	assert_string_equal(json_str(j, "user"), "al\"ice\\");
	assert_string_equal(json_str(j, "msg"),
			    "quote\" backslash\\ nl\n cr\r tab\t bell\x07 del\x7f "
			    "utf8 caf\xc3\xa9 \xe2\x82\xac bad \\xff\\xc3( surrogate "
			    "\\xed\\xa0\\x80");
	cJSON_Delete(j);
	free(line);

	/* Absent context fields are absent keys, not empty strings. */
	setup_file("info", "json");
	sora_info(NULL, "bare");
	line = only_line();
	j = parse_json_line(line);
	assert_null(cJSON_GetObjectItemCaseSensitive(j, "session"));
	assert_null(cJSON_GetObjectItemCaseSensitive(j, "user"));
	assert_string_equal(json_str(j, "level"), "info");
	assert_string_equal(json_str(j, "msg"), "bare");
	cJSON_Delete(j);
	free(line);
}

static void test_truncation_console(void **state)
{
	char *big = malloc(20000);

	assert_non_null(big);
	memset(big, 'x', 19999);
	big[19999] = '\0';
	setup_file("info", "console");
	sora_info(NULL, "%s", big);
	char *line = only_line();
	assert_true(strlen(line) + 1 <= LINE_MAX_BYTES);
	assert_true(strlen(line) > LINE_MAX_BYTES - 100);
	assert_matches(line, "xxx\\.\\.\\.$");
	free(line);
	free(big);
}

/* Whatever mixture of escapes meets the cut, a JSON line must stay one
 * valid object whose message ends in "...". */
static void test_truncation_json(void **state)
{
	static const char *const units[] = { "\"", "\x01", "\xc3\xa9", "\xff", "a", "\\" };
	char *msg = malloc(8000);

	assert_non_null(msg);
	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		for (size_t pad = 0; pad < 8; pad++) {
			size_t o = 0;
			for (size_t i = 0; i < pad; i++)
				msg[o++] = 'p';
			while (o + strlen(units[u]) < 7999) {
				memcpy(msg + o, units[u], strlen(units[u]));
				o += strlen(units[u]);
			}
			msg[o] = '\0';

			setup_file("info", "json");
			sora_info(NULL, "%s", msg);
			char *line = only_line();
			assert_true(strlen(line) + 1 <= LINE_MAX_BYTES);
			cJSON *j = parse_json_line(line);
			const char *m = json_str(j, "msg");
			assert_non_null(m);
			assert_true(strlen(m) > 500);
			assert_string_equal(m + strlen(m) - 3, "...");
			cJSON_Delete(j);
			free(line);
		}
	}
	free(msg);
}

/* Context values are capped on their own so they can never push the
 * message out of the line. */
static void test_long_context(void **state)
{
	char big[1000];

	memset(big, 'u', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	struct sora_log_ctx ctx = { .session = big, .user = big };
	setup_file("info", "json");
	sora_info(&ctx, "the message");
	char *line = only_line();
	cJSON *j = parse_json_line(line);
	assert_string_equal(json_str(j, "msg"), "the message");
	assert_int_equal(strlen(json_str(j, "user")), 128 + 3);
	assert_string_equal(json_str(j, "user") + 128, "...");
	cJSON_Delete(j);
	free(line);
}

static void test_file_flags(void **state)
{
	char link[64], target[PATH_MAX];
	int found = -1;

	setup_file("info", "console");
	for (int fd = 3; fd < 1024 && found < 0; fd++) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (strcmp(target, logpath) == 0)
			found = fd;
	}
	assert_true(found >= 0);
	assert_true((fcntl(found, F_GETFD) & FD_CLOEXEC) != 0);
	assert_true((fcntl(found, F_GETFL) & O_APPEND) != 0);

	/* Switching away closes our descriptor again. */
	const char *error;
	assert_int_equal(sora_log_setup("info", "console", "stderr", &error), 0);
	assert_int_equal(fcntl(found, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
}

static void test_reopen_after_rotation(void **state)
{
	char rotated[PATH_MAX];
	const char *error;
	size_t len;

	path_in_tmp(rotated, sizeof(rotated), "test.log.1");
	setup_file("info", "console");
	sora_info(NULL, "before-rotation");
	assert_int_equal(rename(logpath, rotated), 0);
	sora_info(NULL, "still-old-file");
	assert_int_equal(sora_log_setup("info", "console", logpath, &error), 0);
	sora_info(NULL, "after-reopen");

	char *old = slurp(rotated, &len);
	assert_int_equal(count_lines(old, len), 2);
	assert_non_null(strstr(old, "before-rotation"));
	assert_non_null(strstr(old, "still-old-file"));
	free(old);
	char *cur = slurp(logpath, &len);
	assert_int_equal(count_lines(cur, len), 1);
	assert_non_null(strstr(cur, "after-reopen"));
	free(cur);
	unlink(rotated);
}

static void test_stderr_output(void **state)
{
	char path[PATH_MAX];
	const char *error;
	size_t len;

	path_in_tmp(path, sizeof(path), "stderr.txt");
	int saved = dup(STDERR_FILENO);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	close(fd);

	assert_int_equal(sora_log_setup("info", "json", "stderr", &error), 0);
	sora_info(NULL, "to-stderr");
	/* NULL means the defaults (info, console, stderr). */
	assert_int_equal(sora_log_setup(NULL, NULL, NULL, &error), 0);
	sora_info(NULL, "defaults");
	sora_debug(NULL, "hidden");

	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	char *s = slurp(path, &len);
	assert_int_equal(count_lines(s, len), 2);
	assert_non_null(strstr(s, "\"msg\":\"to-stderr\"}\n"));
	assert_non_null(strstr(s, " INFO test-svc defaults\n"));
	free(s);
}

static void test_syslog_output(void **state)
{
	const char *error;

	/* Nothing on this machine may read /dev/log; what can be checked is
	 * that the switch works both ways and logging does not fail. */
	assert_int_equal(sora_log_setup("info", "console", "syslog", &error), 0);
	sora_info(NULL, "to syslog");
	assert_int_equal(sora_log_setup("info", "json", "syslog", &error), 0);
	sora_info(NULL, "to syslog as json");
	setup_file("info", "console");
	sora_info(NULL, "back to file");
	char *line = only_line();
	assert_non_null(strstr(line, "back to file"));
	free(line);
}

static void test_errno_preserved(void **state)
{
	setup_file("info", "console");
	errno = ENOSPC;
	sora_info(NULL, "x");
	assert_int_equal(errno, ENOSPC);
}

#define THREADS 4
#define LINES_PER_THREAD 1500

static void *writer_thread(void *arg)
{
	int id = (int)(intptr_t)arg;
	char pad[3001];

	memset(pad, 'a' + id, sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	for (int i = 0; i < LINES_PER_THREAD; i++) {
		/* Every other line is long, to make interleaving likely if
		 * a line were written in pieces. */
		sora_info(NULL, "t%d n%d %s end", id, i, (i & 1) ? pad : "");
	}
	return NULL;
}

/* "<ts> INFO test-svc t<id> n<i> <pad> end" with pad empty or 3000 times
 * the thread's letter. */
static bool well_formed_thread_line(const char *l)
{
	const char *p = strstr(l, "Z INFO test-svc t");
	char *e;

	if (p == NULL || p - l != 23)
		return false;
	p += strlen("Z INFO test-svc t");
	long id = strtol(p, &e, 10);
	if (e == p || id < 0 || id >= THREADS || strncmp(e, " n", 2) != 0)
		return false;
	p = e + 2;
	strtol(p, &e, 10);
	if (e == p || *e != ' ')
		return false;
	p = e + 1;
	if (strcmp(p, " end") == 0)
		return true;
	for (int i = 0; i < 3000; i++) {
		if (p[i] != 'a' + id)
			return false;
	}
	return strcmp(p + 3000, " end") == 0;
}

/* Lines from several threads never interleave, and none is lost while the
 * main thread keeps swapping the output between two files. */
static void test_concurrent_writers_and_reopen(void **state)
{
	char other[PATH_MAX];
	const char *error;
	pthread_t th[THREADS];
	size_t la, lb;

	path_in_tmp(other, sizeof(other), "other.log");
	unlink(other);
	setup_file("info", "console");
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, writer_thread,
						(void *)(intptr_t)i), 0);
	for (int i = 0; i < 300; i++) {
		assert_int_equal(sora_log_setup("info", "console",
						(i & 1) ? logpath : other, &error), 0);
		usleep(200);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(sora_log_setup("info", "console", "stderr", &error), 0);

	char *a = slurp(logpath, &la);
	char *b = slurp(other, &lb);
	assert_int_equal(count_lines(a, la) + count_lines(b, lb), THREADS * LINES_PER_THREAD);

	char *bufs[2] = { a, b };
	size_t lens[2] = { la, lb };
	for (int k = 0; k < 2; k++) {
		char *p = bufs[k], *end = bufs[k] + lens[k];
		while (p < end) {
			char *nl = memchr(p, '\n', (size_t)(end - p));
			assert_non_null(nl);
			*nl = '\0';
			if (!well_formed_thread_line(p))
				fail_msg("mangled line: %.200s", p);
			p = nl + 1;
		}
	}
	free(a);
	free(b);
	unlink(other);
}

static void test_escape(void **state)
{
	char out[64];

	assert_string_equal(sora_log_escape(SORA_STR("plain text"), out, sizeof(out)),
			    "plain text");
	assert_string_equal(sora_log_escape(sora_str_make("a\0b", 3), out, sizeof(out)),
			    "a\\x00b");
	assert_string_equal(sora_log_escape(SORA_STR("l1\r\nl2"), out, sizeof(out)),
			    "l1\\x0d\\x0al2");
	assert_string_equal(sora_log_escape(SORA_STR("caf\xc3\xa9\x7f\x80\xff"), out,
					    sizeof(out)),
			    "caf\\xc3\\xa9\\x7f\\x80\\xff");
	assert_string_equal(sora_log_escape(SORA_STR("say \"hi\" \\o/"), out, sizeof(out)),
			    "say \\\"hi\\\" \\\\o/");
	assert_string_equal(sora_log_escape(SORA_STR_NULL, out, sizeof(out)), "");
	assert_ptr_equal(sora_log_escape(SORA_STR("x"), out, sizeof(out)), out);
}

static void test_escape_truncation(void **state)
{
	char out[16];

	/* Exactly fitting output is not marked. */
	assert_string_equal(sora_log_escape(SORA_STR("abcdef"), out, 7), "abcdef");
	/* One byte short: cut, marker included in the budget. */
	assert_string_equal(sora_log_escape(SORA_STR("abcdef"), out, 6), "ab...");
	assert_string_equal(sora_log_escape(SORA_STR("abcdef"), out, 5), "a...");
	assert_string_equal(sora_log_escape(SORA_STR("abcdef"), out, 4), "...");
	assert_string_equal(sora_log_escape(SORA_STR("abcdef"), out, 3), "..");
	assert_string_equal(sora_log_escape(SORA_STR("abcdef"), out, 2), ".");
	assert_string_equal(sora_log_escape(SORA_STR("abcdef"), out, 1), "");
	/* An escape is never split. */
	assert_string_equal(sora_log_escape(SORA_STR("a\x01\x02"), out, 9), "a\\x01...");
	assert_string_equal(sora_log_escape(SORA_STR("a\x01\x02"), out, 8), "a...");
	assert_string_equal(sora_log_escape(SORA_STR("\"\"\"\""), out, 8), "\\\"\\\"...");
	/* size 0 writes nothing at all. */
	out[0] = 'Z';
	sora_log_escape(SORA_STR("abc"), out, 0);
	assert_int_equal(out[0], 'Z');
	/* The result never exceeds size - 1 characters. */
	for (size_t size = 1; size <= sizeof(out); size++) {
		memset(out, 'Q', sizeof(out));
		sora_log_escape(SORA_STR("\x01x\"y\xff z\\"), out, size);
		assert_true(strlen(out) <= size - 1);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_level),
		cmocka_unit_test(test_setup_errors),
		cmocka_unit_test(test_console_format),
		cmocka_unit_test(test_console_sanitises),
		cmocka_unit_test(test_level_filtering),
		cmocka_unit_test(test_notice_level),
		cmocka_unit_test(test_json_format),
		cmocka_unit_test(test_truncation_console),
		cmocka_unit_test(test_truncation_json),
		cmocka_unit_test(test_long_context),
		cmocka_unit_test(test_file_flags),
		cmocka_unit_test(test_reopen_after_rotation),
		cmocka_unit_test(test_stderr_output),
		cmocka_unit_test(test_syslog_output),
		cmocka_unit_test(test_errno_preserved),
		cmocka_unit_test(test_concurrent_writers_and_reopen),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_escape_truncation),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
