/* Unit tests for the Prometheus registry and its text exposition. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/core/buf.h"
#include "common/metrics/metrics.h"

/* Renders the registry into a NUL-terminated malloc'd string. */
static char *render(void)
{
	struct sora_buf b;
	char *s;

	sora_buf_init(&b, 0);
	assert_int_equal(sora_metrics_render(&b), 0);
	s = malloc(b.len + 1);
	assert_non_null(s);
	if (b.len > 0)
		memcpy(s, b.data, b.len);
	s[b.len] = '\0';
	sora_buf_free(&b);
	return s;
}

static void assert_render(const char *expected)
{
	char *got = render();

	assert_string_equal(got, expected);
	free(got);
}

static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

static int setup(void **state)
{
	sora_metrics_reset_for_tests();
	return 0;
}

static void test_exposition_counter_gauge(void **state)
{
	struct sora_metric *req = sora_metric_counter("test_requests_total", "Requests handled.",
						      "proto,code");
	struct sora_metric *plain = sora_metric_counter("a_total", "A plain counter.", "");
	struct sora_metric *g = sora_metric_gauge("g_current", "A gauge.", "");
	struct sora_metric_series *imap_ok = sora_metric_with(req, "imap", "ok");

	sora_metric_inc(imap_ok);
	sora_metric_inc(imap_ok);
	sora_metric_add(imap_ok, 1);
	sora_metric_add(sora_metric_with(req, "pop3", "err"), 2);
	sora_metric_add(sora_metric_with(req, "imap", "bad"), 0.5);
	sora_metric_add(sora_metric_with(plain), 1.5);
	sora_metric_set(sora_metric_with(g), -2.5);

	/* Families sorted by name, series by label values in label order. */
	assert_render("# HELP sora_a_total A plain counter.\n"
		      "# TYPE sora_a_total counter\n"
		      "sora_a_total 1.5\n"
		      "# HELP sora_g_current A gauge.\n"
		      "# TYPE sora_g_current gauge\n"
		      "sora_g_current -2.5\n"
		      "# HELP sora_test_requests_total Requests handled.\n"
		      "# TYPE sora_test_requests_total counter\n"
		      "sora_test_requests_total{proto=\"imap\",code=\"bad\"} 0.5\n"
		      "sora_test_requests_total{proto=\"imap\",code=\"ok\"} 3\n"
		      "sora_test_requests_total{proto=\"pop3\",code=\"err\"} 2\n");
	assert_true(sora_metric_get(imap_ok) == 3.0);
}

static void test_unlabeled_shows_zero_labeled_empty_hidden(void **state)
{
	sora_metric_gauge("zz_labeled", "Hidden until it has a series.", "x");
	sora_metric_counter("aa_total", "Zero from the start.", "");
	assert_render("# HELP sora_aa_total Zero from the start.\n"
		      "# TYPE sora_aa_total counter\n"
		      "sora_aa_total 0\n");
}

static void test_exposition_histogram(void **state)
{
	static const double b[] = { 0.125, 1, 10 };
	struct sora_metric *h = sora_metric_histogram("op_seconds", "Operation time.", "op", b, 3);
	struct sora_metric *p = sora_metric_histogram("plain_seconds", "No labels.", "", b, 3);
	struct sora_metric_series *s = sora_metric_with(h, "fetch");

	/* le is inclusive: 0.125 belongs to the 0.125 bucket. */
	sora_metric_observe(s, 0.0625);
	sora_metric_observe(s, 0.125);
	sora_metric_observe(s, 0.5);
	sora_metric_observe(s, 5);
	sora_metric_observe(s, 100);
	sora_metric_observe(sora_metric_with(p), 2);
	assert_int_equal(sora_metric_histogram_count(s), 5);

	assert_render("# HELP sora_op_seconds Operation time.\n"
		      "# TYPE sora_op_seconds histogram\n"
		      "sora_op_seconds_bucket{op=\"fetch\",le=\"0.125\"} 2\n"
		      "sora_op_seconds_bucket{op=\"fetch\",le=\"1\"} 3\n"
		      "sora_op_seconds_bucket{op=\"fetch\",le=\"10\"} 4\n"
		      "sora_op_seconds_bucket{op=\"fetch\",le=\"+Inf\"} 5\n"
		      "sora_op_seconds_sum{op=\"fetch\"} 105.6875\n"
		      "sora_op_seconds_count{op=\"fetch\"} 5\n"
		      "# HELP sora_plain_seconds No labels.\n"
		      "# TYPE sora_plain_seconds histogram\n"
		      "sora_plain_seconds_bucket{le=\"0.125\"} 0\n"
		      "sora_plain_seconds_bucket{le=\"1\"} 0\n"
		      "sora_plain_seconds_bucket{le=\"10\"} 1\n"
		      "sora_plain_seconds_bucket{le=\"+Inf\"} 1\n"
		      "sora_plain_seconds_sum 2\n"
		      "sora_plain_seconds_count 1\n");
}

static void test_histogram_default_and_inf_buckets(void **state)
{
	static const double with_inf[] = { 1, INFINITY };
	struct sora_metric *d = sora_metric_histogram("d_seconds", "Default buckets.", "", NULL, 0);
	struct sora_metric *i = sora_metric_histogram("i_seconds", "Explicit +Inf.", "", with_inf, 2);
	char *out;

	sora_metric_observe(sora_metric_with(d), 0.003);
	sora_metric_observe(sora_metric_with(i), NAN);
	out = render();
	assert_non_null(strstr(out, "sora_d_seconds_bucket{le=\"0.005\"} 1\n"
				    "sora_d_seconds_bucket{le=\"0.01\"} 1\n"));
	assert_non_null(strstr(out, "sora_d_seconds_bucket{le=\"10\"} 1\n"
				    "sora_d_seconds_bucket{le=\"+Inf\"} 1\n"));
	/* The given +Inf is not doubled; NaN counts in +Inf only. */
	assert_non_null(strstr(out, "sora_i_seconds_bucket{le=\"1\"} 0\n"
				    "sora_i_seconds_bucket{le=\"+Inf\"} 1\n"
				    "sora_i_seconds_sum NaN\n"
				    "sora_i_seconds_count 1\n"));
	free(out);
}

static void test_label_and_help_escaping(void **state)
{
	struct sora_metric *m = sora_metric_counter("esc_total", "Back\\slash, \"quote\"\nnext",
						    "v");

	sora_metric_inc(sora_metric_with(m, "a\\b\"c\nd"));
	/* HELP escapes backslash and newline only; label values also quotes. */
	assert_render("# HELP sora_esc_total Back\\\\slash, \"quote\"\\nnext\n"
		      "# TYPE sora_esc_total counter\n"
		      "sora_esc_total{v=\"a\\\\b\\\"c\\nd\"} 1\n");
}

static void test_label_values_sanitized(void **state)
{
	struct sora_metric *m = sora_metric_counter("u_total", "UTF-8.", "v");
	char longv[400], expect[SORA_METRIC_MAX_LABEL_VALUE + 1];
	struct sora_metric_series *a, *b;

	/* An invalid byte becomes U+FFFD, valid multi-byte text stays. */
	a = sora_metric_with(m, "x\xff" "y");
	b = sora_metric_with(m, "x\xef\xbf\xbd" "y");
	assert_ptr_equal(a, b);
	sora_metric_inc(sora_metric_with(m, "caf\xc3\xa9"));
	/* Overlong encoding and a UTF-16 surrogate are invalid too. */
	assert_ptr_equal(sora_metric_with(m, "\xc0\xaf"),
			 sora_metric_with(m, "\xef\xbf\xbd\xef\xbf\xbd"));
	assert_ptr_equal(sora_metric_with(m, "\xed\xa0\x80"),
			 sora_metric_with(m, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));

	/* Long values are cut at the limit, and never inside a character. */
	memset(longv, 'x', 300);
	longv[300] = '\0';
	memset(expect, 'x', SORA_METRIC_MAX_LABEL_VALUE);
	expect[SORA_METRIC_MAX_LABEL_VALUE] = '\0';
	assert_ptr_equal(sora_metric_with(m, longv), sora_metric_with(m, expect));
	memcpy(longv + SORA_METRIC_MAX_LABEL_VALUE - 1, "\xe2\x82\xac", 4);
	expect[SORA_METRIC_MAX_LABEL_VALUE - 1] = '\0';
	assert_ptr_equal(sora_metric_with(m, longv), sora_metric_with(m, expect));

	sora_metric_inc(a);
	{
		char *out = render();

		assert_non_null(strstr(out, "sora_u_total{v=\"x\xef\xbf\xbdy\"} 1\n"));
		assert_non_null(strstr(out, "sora_u_total{v=\"caf\xc3\xa9\"} 1\n"));
		free(out);
	}
}

static void test_same_values_same_series(void **state)
{
	struct sora_metric *m = sora_metric_counter("s_total", "Series identity.", "a,b");
	char va[8] = "one", vb[8] = "two";
	struct sora_metric_series *s1 = sora_metric_with(m, va, vb);

	/* Values are copied: changing the caller's buffer changes nothing. */
	memcpy(va, "xxx", 4);
	assert_ptr_equal(sora_metric_with(m, "one", "two"), s1);
	assert_ptr_not_equal(sora_metric_with(m, "two", "one"), s1);
	/* The separator keeps ("ab","c") and ("a","bc") apart. */
	assert_ptr_not_equal(sora_metric_with(m, "ab", "c"), sora_metric_with(m, "a", "bc"));
	/* NULL counts as the empty string. */
	assert_ptr_equal(sora_metric_with(m, NULL, "z"), sora_metric_with(m, "", "z"));
}

static void test_reregistration_same_family(void **state)
{
	static const double b[] = { 1, 2 };
	struct sora_metric *c1 = sora_metric_counter("r_total", "First help.", "a,b");
	struct sora_metric *c2 = sora_metric_counter("r_total", "Other help is ignored.", "a, b");
	struct sora_metric *h1 = sora_metric_histogram("r_seconds", "H.", "", b, 2);
	struct sora_metric *h2 = sora_metric_histogram("r_seconds", "H.", "", b, 2);

	assert_ptr_equal(c1, c2);
	assert_ptr_equal(h1, h2);
	sora_metric_inc(sora_metric_with(c1, "x", "y"));
	sora_metric_inc(sora_metric_with(c2, "x", "y"));
	assert_true(sora_metric_get(sora_metric_with(c1, "x", "y")) == 2.0);
}

/* Runs fn in a child and expects it to abort (a programming error). */
static void expect_abort(void (*fn)(void))
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The abort message goes to stderr; keep the test output clean. */
		if (freopen("/dev/null", "w", stderr) == NULL)
			_exit(3);
		fn();
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void abort_type_mismatch(void)
{
	sora_metric_counter("mm", "x", "a");
	sora_metric_gauge("mm", "x", "a");
}

static void abort_label_mismatch(void)
{
	sora_metric_counter("mm", "x", "a");
	sora_metric_counter("mm", "x", "b");
}

static void abort_label_count_mismatch(void)
{
	sora_metric_counter("mm", "x", "a");
	sora_metric_counter("mm", "x", "a,b");
}

static void abort_bucket_mismatch(void)
{
	static const double b1[] = { 1, 2 }, b2[] = { 1, 3 };

	sora_metric_histogram("mm", "x", "", b1, 2);
	sora_metric_histogram("mm", "x", "", b2, 2);
}

static void abort_bad_name(void)
{
	sora_metric_counter("1bad", "x", "");
}

static void abort_bad_label(void)
{
	sora_metric_counter("ok", "x", "a-b");
}

static void abort_reserved_label(void)
{
	sora_metric_counter("ok", "x", "__name");
}

static void abort_duplicate_label(void)
{
	sora_metric_counter("ok", "x", "a,a");
}

static void abort_le_label(void)
{
	sora_metric_histogram("ok", "x", "le", NULL, 0);
}

static void abort_unsorted_buckets(void)
{
	static const double b[] = { 2, 1 };

	sora_metric_histogram("ok", "x", "", b, 2);
}

static void abort_set_on_counter(void)
{
	sora_metric_set(sora_metric_with(sora_metric_counter("ok", "x", "")), 1);
}

static void abort_observe_on_gauge(void)
{
	sora_metric_observe(sora_metric_with(sora_metric_gauge("ok", "x", "")), 1);
}

static void abort_inc_on_histogram(void)
{
	sora_metric_inc(sora_metric_with(sora_metric_histogram("ok", "x", "", NULL, 0)));
}

static void test_programming_errors_abort(void **state)
{
	expect_abort(abort_type_mismatch);
	expect_abort(abort_label_mismatch);
	expect_abort(abort_label_count_mismatch);
	expect_abort(abort_bucket_mismatch);
	expect_abort(abort_bad_name);
	expect_abort(abort_bad_label);
	expect_abort(abort_reserved_label);
	expect_abort(abort_duplicate_label);
	expect_abort(abort_le_label);
	expect_abort(abort_unsorted_buckets);
	expect_abort(abort_set_on_counter);
	expect_abort(abort_observe_on_gauge);
	expect_abort(abort_inc_on_histogram);
}

static void test_gauge_and_counter_values(void **state)
{
	struct sora_metric_series *g = sora_metric_with(sora_metric_gauge("v_gauge", "G.", ""));
	struct sora_metric_series *c = sora_metric_with(sora_metric_counter("v_total", "C.", ""));
	char *out;

	sora_metric_inc(g);
	sora_metric_inc(g);
	sora_metric_dec(g);
	sora_metric_add(g, -3.5);
	assert_true(sora_metric_get(g) == -2.5);
	sora_metric_set(g, 7);
	assert_true(sora_metric_get(g) == 7.0);

	/* A counter only goes up: negative and NaN adds are dropped. */
	sora_metric_add(c, 5);
	sora_metric_add(c, -1);
	sora_metric_add(c, NAN);
	assert_true(sora_metric_get(c) == 5.0);
	sora_metric_add(c, 0.25);
	assert_true(sora_metric_get(c) == 5.25);

	/* Value formatting: shortest round-trip form and the special values. */
	sora_metric_set(g, 0.1);
	out = render();
	assert_non_null(strstr(out, "\nsora_v_gauge 0.1\n"));
	assert_non_null(strstr(out, "\nsora_v_total 5.25\n"));
	free(out);
	sora_metric_set(g, 1e20);
	out = render();
	assert_non_null(strstr(out, "\nsora_v_gauge 1e+20\n"));
	free(out);
	/* From 1e6 on and below 1e-4 in exponent form, as the Go client. */
	sora_metric_set(g, 1234567);
	out = render();
	assert_non_null(strstr(out, "\nsora_v_gauge 1.234567e+06\n"));
	free(out);
	sora_metric_set(g, 123456);
	out = render();
	assert_non_null(strstr(out, "\nsora_v_gauge 123456\n"));
	free(out);
	sora_metric_set(g, 0.00015);
	out = render();
	assert_non_null(strstr(out, "\nsora_v_gauge 0.00015\n"));
	free(out);
	sora_metric_set(g, 0.000015);
	out = render();
	assert_non_null(strstr(out, "\nsora_v_gauge 1.5e-05\n"));
	free(out);
	sora_metric_set(g, -INFINITY);
	out = render();
	assert_non_null(strstr(out, "\nsora_v_gauge -Inf\n"));
	free(out);
	sora_metric_set(g, NAN);
	out = render();
	assert_non_null(strstr(out, "\nsora_v_gauge NaN\n"));
	free(out);
}

static void test_big_integer_counter_exact(void **state)
{
	struct sora_metric_series *c = sora_metric_with(sora_metric_counter("big_total", "B.", ""));
	char *out;

	/* 2^53 + 1 is not a double, but whole increments are kept exactly. */
	sora_metric_add(c, 9007199254740991.0);
	sora_metric_inc(c);
	sora_metric_inc(c);
	out = render();
	assert_non_null(strstr(out, "\nsora_big_total 9007199254740993\n"));
	free(out);
}

#define THREADS 8
#define ITERATIONS 100000

struct worker_arg {
	struct sora_metric_series *counter, *fraction, *gauge, *hist;
	struct sora_metric *labeled;
	int id;
};

static void *worker(void *p)
{
	static const double b[] = { 1 };
	struct worker_arg *a = p;
	char label[16];

	/* Every thread registers the families itself, as lazy registration
	 * in real code does, and must get the same ones. */
	a->counter = sora_metric_with(sora_metric_counter("conc_total", "C.", ""));
	a->fraction = sora_metric_with(sora_metric_counter("conc_frac_total", "F.", ""));
	a->gauge = sora_metric_with(sora_metric_gauge("conc_gauge", "G.", ""));
	a->hist = sora_metric_with(sora_metric_histogram("conc_seconds", "H.", "", b, 1));
	a->labeled = sora_metric_counter("conc_labeled_total", "L.", "t");
	snprintf(label, sizeof(label), "t%d", a->id % 4);
	for (int i = 0; i < ITERATIONS; i++) {
		sora_metric_inc(a->counter);
		sora_metric_add(a->fraction, 0.5);
		sora_metric_inc(a->gauge);
		if (i % 2 == 0)
			sora_metric_dec(a->gauge);
		sora_metric_observe(a->hist, (i % 3) == 0 ? 0.5 : 2.0);
		/* Concurrent lookups and creations of the same series. */
		if (i % 100 == 0)
			sora_metric_inc(sora_metric_with(a->labeled, label));
	}
	return NULL;
}

static atomic_bool workers_done;

/* Scrapes while the workers update: every page must render, and in each a
 * histogram's +Inf bucket must equal its _count. */
static void *scraper(void *p)
{
	int *renders = p;

	while (!atomic_load(&workers_done)) {
		char *out = render();
		char *inf = strstr(out, "sora_conc_seconds_bucket{le=\"+Inf\"} ");
		char *count = strstr(out, "sora_conc_seconds_count ");

		if (inf != NULL || count != NULL) {
			assert_non_null(inf);
			assert_non_null(count);
			assert_int_equal(strtoull(inf + strlen("sora_conc_seconds_bucket{le=\"+Inf\"} "),
						  NULL, 10),
					 strtoull(count + strlen("sora_conc_seconds_count "), NULL, 10));
		}
		free(out);
		(*renders)++;
	}
	return NULL;
}

static void test_concurrent_updates(void **state)
{
	pthread_t th[THREADS], scr;
	struct worker_arg args[THREADS];
	double total = 0;
	int renders = 0;
	char *out;

	atomic_store(&workers_done, false);
	assert_int_equal(pthread_create(&scr, NULL, scraper, &renders), 0);
	for (int i = 0; i < THREADS; i++) {
		args[i].id = i;
		assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	atomic_store(&workers_done, true);
	assert_int_equal(pthread_join(scr, NULL), 0);
	assert_true(renders > 0);

	for (int i = 1; i < THREADS; i++) {
		assert_ptr_equal(args[i].counter, args[0].counter);
		assert_ptr_equal(args[i].hist, args[0].hist);
		assert_ptr_equal(args[i].labeled, args[0].labeled);
	}
	assert_true(sora_metric_get(args[0].counter) == (double)THREADS * ITERATIONS);
	assert_true(sora_metric_get(args[0].fraction) == (double)THREADS * ITERATIONS / 2);
	assert_true(sora_metric_get(args[0].gauge) == (double)THREADS * ITERATIONS / 2);
	assert_int_equal(sora_metric_histogram_count(args[0].hist), THREADS * ITERATIONS);
	for (int i = 0; i < 4; i++) {
		char label[16];

		snprintf(label, sizeof(label), "t%d", i);
		total += sora_metric_get(sora_metric_with(args[0].labeled, label));
	}
	assert_true(total == (double)THREADS * (ITERATIONS / 100));

	out = render();
	/* A third of the observations are 0.5 (i % 3 == 0). */
	assert_non_null(strstr(out, "sora_conc_seconds_bucket{le=\"1\"} 266672\n"));
	assert_non_null(strstr(out, "sora_conc_seconds_count 800000\n"));
	/* 8 * (33334 * 0.5 + 66666 * 2), exact: all partial sums are halves. */
	assert_non_null(strstr(out, "sora_conc_seconds_sum 1.199992e+06\n"));
	assert_non_null(strstr(out, "sora_conc_total 800000\n"));
	free(out);
}

static void test_series_cap_overflow(void **state)
{
	struct sora_metric *m = sora_metric_counter("cap_total", "Capped.", "user,proto");
	struct sora_metric_series *first, *over, *over2;
	char v[32];
	char *out;

	for (int i = 0; i < SORA_METRIC_MAX_SERIES; i++) {
		snprintf(v, sizeof(v), "u%d", i);
		sora_metric_inc(sora_metric_with(m, v, "imap"));
	}
	first = sora_metric_with(m, "u0", "imap");
	assert_true(sora_metric_get(first) == 1.0);

	/* Past the cap, new combinations all share the overflow series ... */
	over = sora_metric_with(m, "new1", "imap");
	over2 = sora_metric_with(m, "new2", "pop3");
	assert_ptr_equal(over, over2);
	assert_ptr_equal(over, sora_metric_with(m, SORA_METRIC_OVERFLOW_VALUE,
						SORA_METRIC_OVERFLOW_VALUE));
	sora_metric_inc(over);
	sora_metric_inc(over2);
	/* ... while known ones keep their own. */
	assert_ptr_equal(sora_metric_with(m, "u9999", "imap"),
			 sora_metric_with(m, "u9999", "imap"));
	assert_ptr_not_equal(sora_metric_with(m, "u9999", "imap"), over);

	out = render();
	assert_int_equal(count_lines(out), 2 + SORA_METRIC_MAX_SERIES + 1);
	assert_non_null(strstr(out, "sora_cap_total{user=\"__overflow__\",proto=\"__overflow__\"} 2\n"));
	assert_null(strstr(out, "new1"));
	free(out);
}

static void test_overflow_value_before_cap_is_not_duplicated(void **state)
{
	struct sora_metric *m = sora_metric_counter("ov_total", "O.", "u");
	struct sora_metric_series *lit;
	char v[32];
	char *out;

	/* A client-chosen "__overflow__" before the cap is one of the
	 * regular series, and the overflow series later reuses it. */
	lit = sora_metric_with(m, SORA_METRIC_OVERFLOW_VALUE);
	for (int i = 1; i < SORA_METRIC_MAX_SERIES; i++) {
		snprintf(v, sizeof(v), "u%d", i);
		sora_metric_with(m, v);
	}
	assert_ptr_equal(sora_metric_with(m, "one-too-many"), lit);
	sora_metric_inc(lit);
	out = render();
	assert_int_equal(count_lines(out), 2 + SORA_METRIC_MAX_SERIES);
	free(out);
}

static void test_render_respects_buffer_cap(void **state)
{
	struct sora_buf b;

	sora_metric_counter("cap_buf_total", "A help text longer than the buffer.", "");
	sora_buf_init(&b, 16);
	assert_int_equal(sora_metrics_render(&b), -1);
	sora_buf_free(&b);
}

static void test_one_prefix_for_every_series(void **state)
{
	struct sora_metric *bare = sora_metric_counter("pre_total", "Given without.", "p");
	struct sora_metric *given = sora_metric_counter("sora_pre_total", "Given with.", "p");
	char *out, *line;

	/* Both spellings are one family, published once with one prefix. */
	assert_ptr_equal(bare, given);
	sora_metric_inc(sora_metric_with(bare, "imap"));
	sora_metric_inc(sora_metric_with(given, "imap"));
	sora_metric_gauge("sora_sora_twice", "Only a leading prefix counts.", "");
	out = render();
	assert_non_null(strstr(out, "# TYPE sora_pre_total counter\n"
				    "sora_pre_total{p=\"imap\"} 2\n"));
	assert_null(strstr(out, "sora_sora_pre"));
	assert_non_null(strstr(out, "\nsora_sora_twice 0\n"));
	/* Every sample line of a family registered through the public API
	 * starts with the prefix. */
	for (line = out; *line != '\0'; line = strchr(line, '\n') + 1) {
		if (line[0] != '#')
			assert_int_equal(strncmp(line, SORA_METRIC_PREFIX,
						 strlen(SORA_METRIC_PREFIX)), 0);
	}
	free(out);
}

/* Value of the unlabeled sample "name" in out, or NAN if absent. */
static double sample(const char *out, const char *name)
{
	char key[128];
	const char *p;

	snprintf(key, sizeof(key), "\n%s ", name);
	p = strstr(out, key);
	return p != NULL ? strtod(p + strlen(key), NULL) : NAN;
}

static void test_process_metrics(void **state)
{
	struct timespec now;
	char *out;
	double start;

	sora_metrics_register_process();
	sora_metrics_register_process();
	out = render();
	/* This test process started a moment ago. Reading another field of
	 * /proc/self/stat than starttime (22), or ignoring the boot time,
	 * gives the boot time, the epoch or garbage, all far from now. */
	assert_int_equal(clock_gettime(CLOCK_REALTIME, &now), 0);
	start = sample(out, "process_start_time_seconds");
	assert_false(isnan(start));
	assert_true(start > (double)now.tv_sec - 30);
	assert_true(start <= (double)now.tv_sec + 1);
	/* The standard names, not prefixed: see sora_metrics_register_process(). */
	assert_null(strstr(out, "sora_process_"));
	assert_non_null(strstr(out, "# TYPE process_cpu_seconds_total counter\n"));
	assert_true(sample(out, "process_open_fds") >= 3);
	assert_true(sample(out, "process_max_fds") >= sample(out, "process_open_fds"));
	assert_true(sample(out, "process_resident_memory_bytes") > 1e5);
	assert_true(sample(out, "process_virtual_memory_bytes") >=
		    sample(out, "process_resident_memory_bytes"));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_exposition_counter_gauge, setup),
		cmocka_unit_test_setup(test_unlabeled_shows_zero_labeled_empty_hidden, setup),
		cmocka_unit_test_setup(test_exposition_histogram, setup),
		cmocka_unit_test_setup(test_histogram_default_and_inf_buckets, setup),
		cmocka_unit_test_setup(test_label_and_help_escaping, setup),
		cmocka_unit_test_setup(test_label_values_sanitized, setup),
		cmocka_unit_test_setup(test_same_values_same_series, setup),
		cmocka_unit_test_setup(test_reregistration_same_family, setup),
		cmocka_unit_test_setup(test_programming_errors_abort, setup),
		cmocka_unit_test_setup(test_gauge_and_counter_values, setup),
		cmocka_unit_test_setup(test_big_integer_counter_exact, setup),
		cmocka_unit_test_setup(test_concurrent_updates, setup),
		cmocka_unit_test_setup(test_series_cap_overflow, setup),
		cmocka_unit_test_setup(test_overflow_value_before_cap_is_not_duplicated, setup),
		cmocka_unit_test_setup(test_render_respects_buffer_cap, setup),
		cmocka_unit_test_setup(test_one_prefix_for_every_series, setup),
		cmocka_unit_test_setup(test_process_metrics, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
