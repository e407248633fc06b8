/* Tests for holds on shared bodies (blob-store.h, "Shared bodies"): two
 * writers of identical bytes into one account must never take away a body
 * the other one committed a row for. Deterministic orders first, then
 * threads that stage the same few bodies over and over and randomly
 * "commit" or fail, on both a staging store and a direct fs store; at the
 * end every body that was ever committed must still be readable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/blob/blob-fs.h"
#include "backend/blob/blob-store.h"
#include "blob-test.h"

#define ACCT 7

static char dir[64];

static int setup_dir(void **state)
{
	return make_tempdir(dir, "hold");
}

static int teardown_dir(void **state)
{
	rm_rf(dir);
	return 0;
}

static struct sora_blob_hold *hold_body(struct sora_blob_store *s, const char *body,
					struct sora_blob_ref *ref)
{
	struct sora_blob_writer *w = NULL;
	struct sora_blob_hold *h = NULL;
	struct sora_error err;

	assert_int_equal(sora_blob_writer_new(s, ACCT, 0, &w, &err), 0);
	assert_int_equal(sora_blob_writer_write(w, body, strlen(body), &err), 0);
	if (sora_blob_writer_commit_held(&w, ref, &h, &err) != 0)
		fail_msg("commit: %s", err.msg);
	assert_null(w);
	assert_non_null(h);
	return h;
}

static bool readable(struct sora_blob_store *s, const char *hash)
{
	struct membuf m = { 0 };
	struct sora_error err;
	int rc = sora_blob_read(s, ACCT, hash, 0, SORA_BLOB_TO_END, membuf_sink, &m, &err);

	membuf_reset(&m);
	return rc == 0;
}

/* The database as the discard sees it: "referenced" when ref is true. */
static int cb_answer(void *ctx, int64_t account_id, const char *hash)
{
	return *(int *)ctx;
}

static void orders(bool direct)
{
	struct sora_blob_store *s = make_fs_store(dir, direct ? "od" : "os", direct);
	struct sora_blob_ref a, b;
	struct sora_blob_hold *ha, *hb;
	struct sora_error err;
	int unref = 1, ref = 0, unknown = -1;

	/* Alone and unreferenced: taken back. */
	ha = hold_body(s, "alone\r\n", &a);
	assert_false(a.existed);
	assert_true(readable(s, a.hash));
	assert_int_equal(sora_blob_hold_discard(&ha, cb_answer, &unref, &err), 1);
	assert_null(ha);
	assert_false(readable(s, a.hash));

	/* Referenced, or the database cannot tell: stays. */
	ha = hold_body(s, "kept\r\n", &a);
	assert_int_equal(sora_blob_hold_discard(&ha, cb_answer, &ref, &err), 0);
	assert_true(readable(s, a.hash));
	ha = hold_body(s, "kept\r\n", &a);
	assert_true(a.existed);
	assert_int_equal(sora_blob_hold_discard(&ha, cb_answer, &unknown, &err), 0);
	assert_true(readable(s, a.hash));

	/* The race: A writes, B finds A's body, B commits and ends; A fails.
	 * Even when the database check would miss B's row (here: it answers
	 * "unreferenced", as for a commit that lands late), B's release is
	 * seen and the body stays. */
	ha = hold_body(s, "shared\r\n", &a);
	hb = hold_body(s, "shared\r\n", &b);
	assert_false(a.existed);
	assert_true(b.existed);
	assert_string_equal(a.hash, b.hash);
	sora_blob_hold_release(&hb);
	assert_null(hb);
	assert_int_equal(sora_blob_hold_discard(&ha, cb_answer, &unref, &err), 0);
	assert_true(readable(s, a.hash));

	/* Both in flight: the first to fail leaves it to the other, the
	 * last one decides. */
	ha = hold_body(s, "both\r\n", &a);
	hb = hold_body(s, "both\r\n", &b);
	assert_int_equal(sora_blob_hold_discard(&ha, cb_answer, &unref, &err), 0);
	assert_true(readable(s, b.hash));
	assert_int_equal(sora_blob_hold_discard(&hb, cb_answer, &unref, &err), 1);
	assert_false(readable(s, b.hash));

	/* A body found in place, then taken back, is written anew by the
	 * next writer. */
	ha = hold_body(s, "again\r\n", &a);
	assert_int_equal(sora_blob_hold_discard(&ha, cb_answer, &unref, &err), 1);
	hb = hold_body(s, "again\r\n", &b);
	assert_false(b.existed);
	sora_blob_hold_release(&hb);
	assert_true(readable(s, b.hash));
	sora_blob_store_free(&s);
}

static void test_orders_staging(void **state)
{
	orders(false);
}

static void test_orders_direct(void **state)
{
	orders(true);
}

/* The orphan sweep leaves a held body alone however old it looks. */
static void test_orphan_sweep_skips_held(void **state)
{
	struct sora_blob_store *s = make_fs_store(dir, "orphan", false);
	struct sora_blob_ref a;
	struct sora_blob_hold *h = hold_body(s, "orphan?\r\n", &a);
	struct sora_error err;

	assert_int_equal(sora_blob_unstage_orphan(s, ACCT, a.hash, -1, &err), 1);
	assert_true(sora_blob_is_staged(s, ACCT, a.hash));
	sora_blob_hold_release(&h);
	assert_int_equal(sora_blob_unstage_orphan(s, ACCT, a.hash, -1, &err), 0);
	assert_false(sora_blob_is_staged(s, ACCT, a.hash));
	sora_blob_store_free(&s);
}

/* ---- threads ---- */

#define BODIES 64
#define THREADS 8
#define ROUNDS 300

/* Threads move through the bodies roughly in step, so several of them
 * stage the same bytes at the same moment; each body commits after a few
 * attempts, which is when a careless discard would lose it. */
static char race_bodies[BODIES][64];

struct race {
	struct sora_blob_store *s;
	pthread_mutex_t lock;
	/* The "database": which bodies a committed row names. */
	bool committed[BODIES];
	char hashes[BODIES][SORA_BLOB_HASH_HEX_SIZE];
	int removed, commits, failures;
};

struct race_ctx {
	struct race *race;
	int body;
};

static int race_cb(void *ctx, int64_t account_id, const char *hash)
{
	struct race_ctx *c = ctx;
	bool ref;

	pthread_mutex_lock(&c->race->lock);
	ref = c->race->committed[c->body];
	pthread_mutex_unlock(&c->race->lock);
	return ref ? 0 : 1;
}

static void *race_thread(void *arg)
{
	struct race *r = arg;
	unsigned int seed = (unsigned int)(uintptr_t)pthread_self();

	for (int i = 0; i < ROUNDS; i++) {
		struct race_ctx c = { r, (int)((i / 8 + rand_r(&seed) % 2) % BODIES) };
		struct sora_blob_writer *w = NULL;
		struct sora_blob_hold *h = NULL;
		struct sora_blob_ref ref;
		struct sora_error err;
		const char *body = race_bodies[c.body];

		if (sora_blob_writer_new(r->s, ACCT, 0, &w, &err) != 0 ||
		    sora_blob_writer_write(w, body, strlen(body), &err) != 0 ||
		    sora_blob_writer_commit_held(&w, &ref, &h, &err) != 0) {
			sora_blob_writer_abort(&w);
			fprintf(stderr, "stage: %s\n", err.msg);
			abort();
		}
		if (rand_r(&seed) % 6 == 0) {
			/* The row commits (before the hold ends, as in the
			 * store), and the body must stay from now on. */
			pthread_mutex_lock(&r->lock);
			r->committed[c.body] = true;
			memcpy(r->hashes[c.body], ref.hash, sizeof(ref.hash));
			r->commits++;
			pthread_mutex_unlock(&r->lock);
			sora_blob_hold_release(&h);
		} else {
			int rc = sora_blob_hold_discard(&h, race_cb, &c, &err);

			pthread_mutex_lock(&r->lock);
			r->failures++;
			r->removed += rc == 1;
			pthread_mutex_unlock(&r->lock);
		}
		/* A committed body is readable at every moment. */
		pthread_mutex_lock(&r->lock);
		for (int b = 0; b < BODIES; b++) {
			if (r->committed[b] && !readable(r->s, r->hashes[b])) {
				fprintf(stderr, "committed body %d lost\n", b);
				abort();
			}
		}
		pthread_mutex_unlock(&r->lock);
	}
	return NULL;
}

static void race(bool direct)
{
	struct race r = { 0 };
	pthread_t th[THREADS];

	for (int b = 0; b < BODIES; b++)
		snprintf(race_bodies[b], sizeof(race_bodies[b]), "Subject: %d\r\n\r\nsame\r\n", b);
	r.s = make_fs_store(dir, direct ? "rd" : "rs", direct);
	pthread_mutex_init(&r.lock, NULL);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, race_thread, &r), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	print_message("%s: %d commits, %d failures, %d bodies taken back\n",
		      direct ? "direct" : "staging", r.commits, r.failures, r.removed);
	for (int b = 0; b < BODIES; b++)
		if (r.committed[b])
			assert_true(readable(r.s, r.hashes[b]));
	/* Failures did take bodies back while nothing needed them. */
	assert_true(r.removed > 0);
	pthread_mutex_destroy(&r.lock);
	sora_blob_store_free(&r.s);
}

static void test_race_staging(void **state)
{
	race(false);
}

static void test_race_direct(void **state)
{
	race(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_orders_staging),
		cmocka_unit_test(test_orders_direct),
		cmocka_unit_test(test_orphan_sweep_skips_held),
		cmocka_unit_test(test_race_staging),
		cmocka_unit_test(test_race_direct),
	};

	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
