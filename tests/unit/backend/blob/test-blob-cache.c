/* Tests for the local body cache (backend/blob/blob-cache.h): LRU eviction
 * by capacity, access refreshing an entry, max_object_size, rebuilding the
 * index from the directory at start-up, writers, removal, a file deleted
 * behind the cache's back, and concurrent use from threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "backend/blob/blob-cache.h"
#include "blob-test.h"

static char dir[64];

static int setup(void **state)
{
	if (make_tempdir(dir, "cache") < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	rm_rf(dir);
	return 0;
}

static void cache_path(char *dst, size_t size, const char *name)
{
	snprintf(dst, size, "%s/%s", dir, name);
}

static struct sora_blob_cache *open_cache(const char *name, uint64_t cap, uint64_t max)
{
	struct sora_blob_cache *c = NULL;
	char path[128];
	struct sora_error err;

	cache_path(path, sizeof(path), name);
	if (sora_blob_cache_open(path, cap, max, &c, &err) < 0)
		fail_msg("cache: %s", err.msg);
	return c;
}

static void add(struct sora_blob_cache *c, const char *key, size_t size)
{
	struct sora_blob_cache_writer *w = NULL;
	struct sora_error err;
	unsigned char *data = malloc(size + 1);

	memset(data, key[0], size);
	assert_int_equal(sora_blob_cache_writer_new(c, key, &w, &err), 0);
	/* In two pieces. */
	assert_int_equal(sora_blob_cache_writer_write(w, data, size / 2), 0);
	assert_int_equal(sora_blob_cache_writer_write(w, data + size / 2, size - size / 2), 0);
	if (sora_blob_cache_writer_commit(&w, &err) != 0)
		fail_msg("commit %s: %s", key, err.msg);
	assert_null(w);
	free(data);
}

static bool has(struct sora_blob_cache *c, const char *key, uint64_t want_size)
{
	uint64_t size = 0;
	int fd = sora_blob_cache_open_read(c, key, &size);

	if (fd < 0)
		return false;
	close(fd);
	assert_int_equal(size, want_size);
	return true;
}

static void test_lru_eviction(void **state)
{
	struct sora_blob_cache *c = open_cache("lru", 1000, 500);
	struct sora_blob_cache_stats st;

	add(c, "aa/1/a", 300);
	add(c, "bb/1/b", 300);
	add(c, "cc/1/c", 300);
	sora_blob_cache_get_stats(c, &st);
	assert_int_equal(st.used, 900);
	assert_int_equal(st.count, 3);
	/* Reading "a" makes "b" the least recently used. */
	assert_true(has(c, "aa/1/a", 300));
	add(c, "dd/1/d", 300);
	assert_false(has(c, "bb/1/b", 300));
	assert_true(has(c, "aa/1/a", 300));
	assert_true(has(c, "cc/1/c", 300));
	assert_true(has(c, "dd/1/d", 300));
	/* The evicted file is gone from disk too. */
	char p[128];
	cache_path(p, sizeof(p), "lru/bb/1/b");
	assert_int_equal(access(p, F_OK), -1);
	/* One big entry evicts several. */
	add(c, "ee/1/e", 500);
	sora_blob_cache_get_stats(c, &st);
	assert_true(st.used <= 1000);
	assert_true(has(c, "ee/1/e", 500));
	assert_true(st.evictions >= 2);
	/* Replacing an entry updates its size rather than adding. */
	add(c, "ee/1/e", 100);
	sora_blob_cache_get_stats(c, &st);
	assert_true(has(c, "ee/1/e", 100));
	assert_true(st.used <= 1000);
	sora_blob_cache_free(&c);
	assert_null(c);
}

static void test_max_object_size(void **state)
{
	struct sora_blob_cache *c = open_cache("max", 10000, 100);
	struct sora_blob_cache_writer *w = NULL;
	struct sora_error err;
	char buf[200] = { 0 };

	assert_int_equal(sora_blob_cache_writer_new(c, "aa/1/big", &w, &err), 0);
	assert_int_equal(sora_blob_cache_writer_write(w, buf, 60), 0);
	assert_int_equal(sora_blob_cache_writer_write(w, buf, 60), -1);
	assert_int_equal(CLS(sora_blob_cache_writer_commit(&w, &err)), SORA_ERR_PERMANENT);
	assert_false(has(c, "aa/1/big", 0));
	/* Exactly at the limit is fine. */
	assert_int_equal(sora_blob_cache_writer_new(c, "aa/1/edge", &w, &err), 0);
	assert_int_equal(sora_blob_cache_writer_write(w, buf, 100), 0);
	assert_int_equal(sora_blob_cache_writer_commit(&w, &err), 0);
	assert_true(has(c, "aa/1/edge", 100));
	/* Abort leaves nothing. */
	assert_int_equal(sora_blob_cache_writer_new(c, "aa/1/abort", &w, &err), 0);
	assert_int_equal(sora_blob_cache_writer_write(w, buf, 10), 0);
	sora_blob_cache_writer_abort(&w);
	assert_null(w);
	sora_blob_cache_writer_abort(&w);
	assert_false(has(c, "aa/1/abort", 10));
	char tmpdir[128];
	cache_path(tmpdir, sizeof(tmpdir), "max/" SORA_BLOB_CACHE_TMPDIR);
	assert_int_equal(count_files(tmpdir), 0);
	/* Adding a file that is too big deletes a moved one. */
	char src[128];
	cache_path(src, sizeof(src), "bigfile");
	int fd = open(src, O_CREAT | O_WRONLY, 0600);
	assert_int_equal(write(fd, buf, 150), 150);
	close(fd);
	assert_int_equal(CLS(sora_blob_cache_add_file(c, "aa/1/moved", src, 1, &err)),
			 SORA_ERR_LIMIT);
	assert_int_equal(access(src, F_OK), -1);
	/* Reserved and invalid keys. */
	assert_int_equal(CLS(sora_blob_cache_writer_new(c, SORA_BLOB_CACHE_TMPDIR "/x", &w, &err)),
			 SORA_ERR_PERMANENT);
	assert_int_equal(CLS(sora_blob_cache_writer_new(c, "../x", &w, &err)), SORA_ERR_PERMANENT);
	sora_blob_cache_free(&c);
}

static void set_times(const char *rel, time_t t)
{
	char p[128];
	struct timeval tv[2] = { { .tv_sec = t }, { .tv_sec = t } };

	cache_path(p, sizeof(p), rel);
	assert_int_equal(utimes(p, tv), 0);
}

static void test_rebuild_from_directory(void **state)
{
	struct sora_blob_cache *c = open_cache("scan", 100000, 1000);
	struct sora_blob_cache_stats st;
	time_t now = time(NULL);
	char stale[128];

	add(c, "aa/1/old", 400);
	add(c, "bb/2/mid", 400);
	add(c, "cc/3/new", 400);
	sora_blob_cache_free(&c);
	/* Access times on disk decide the order after a restart. */
	set_times("scan/aa/1/old", now - 3000);
	set_times("scan/bb/2/mid", now - 2000);
	set_times("scan/cc/3/new", now - 1000);
	/* A temp file left by a crash is removed, not indexed. */
	cache_path(stale, sizeof(stale), "scan/" SORA_BLOB_CACHE_TMPDIR "/tmp.crash");
	int fd = open(stale, O_CREAT | O_WRONLY, 0600);
	assert_int_equal(write(fd, "partial", 7), 7);
	close(fd);

	c = open_cache("scan", 100000, 1000);
	sora_blob_cache_get_stats(c, &st);
	assert_int_equal(st.count, 3);
	assert_int_equal(st.used, 1200);
	assert_int_equal(access(stale, F_OK), -1);
	assert_true(has(c, "bb/2/mid", 400));
	sora_blob_cache_free(&c);
	set_times("scan/bb/2/mid", now - 500);

	/* Reopened with room for two: the oldest goes at start-up. */
	c = open_cache("scan", 900, 1000);
	sora_blob_cache_get_stats(c, &st);
	assert_int_equal(st.count, 2);
	assert_false(has(c, "aa/1/old", 400));
	assert_true(has(c, "cc/3/new", 400));
	assert_true(has(c, "bb/2/mid", 400));
	sora_blob_cache_free(&c);

	struct sora_error err;
	assert_int_equal(sora_blob_cache_open("", 10, 10, &c, &err), -1);
	assert_int_equal(sora_blob_cache_open("/tmp/x", 0, 10, &c, &err), -1);
	assert_null(c);
}

static void test_remove_and_vanished_files(void **state)
{
	struct sora_blob_cache *c = open_cache("rm", 10000, 1000);
	struct sora_blob_cache_stats st;
	char p[128];

	add(c, "aa/1/x", 10);
	add(c, "aa/1/y", 20);
	sora_blob_cache_remove(c, "aa/1/x");
	sora_blob_cache_remove(c, "aa/1/never");
	assert_false(has(c, "aa/1/x", 10));
	/* Deleted by someone else: a miss, and the index forgets it. */
	cache_path(p, sizeof(p), "rm/aa/1/y");
	assert_int_equal(unlink(p), 0);
	assert_false(has(c, "aa/1/y", 20));
	sora_blob_cache_get_stats(c, &st);
	assert_int_equal(st.count, 0);
	assert_int_equal(st.used, 0);
	assert_true(st.misses >= 2);
	sora_blob_cache_free(&c);
}

static void test_add_file_move_and_copy(void **state)
{
	struct sora_blob_cache *c = open_cache("add", 10000, 1000);
	struct sora_error err;
	char src[128];
	int fd;

	cache_path(src, sizeof(src), "staged-file");
	fd = open(src, O_CREAT | O_WRONLY, 0600);
	assert_int_equal(write(fd, "hello cache", 11), 11);
	close(fd);
	/* Copy keeps the source; move takes it. */
	assert_int_equal(sora_blob_cache_add_file(c, "aa/1/copied", src, 0, &err), 0);
	assert_int_equal(access(src, F_OK), 0);
	assert_int_equal(sora_blob_cache_add_file(c, "aa/1/moved", src, 1, &err), 0);
	assert_int_equal(access(src, F_OK), -1);
	assert_true(has(c, "aa/1/copied", 11));
	assert_true(has(c, "aa/1/moved", 11));
	assert_int_equal(CLS(sora_blob_cache_add_file(c, "aa/1/none", src, 1, &err)),
			 SORA_ERR_NOT_FOUND);
	sora_blob_cache_free(&c);
}

struct thread_arg {
	struct sora_blob_cache *c;
	int id;
};

static void *hammer(void *p)
{
	struct thread_arg *a = p;
	char key[64], buf[100];
	struct sora_error err;

	memset(buf, 'x', sizeof(buf));
	for (int i = 0; i < 300; i++) {
		struct sora_blob_cache_writer *w = NULL;
		uint64_t size;
		int fd;

		snprintf(key, sizeof(key), "t%d/%d/k%d", a->id, i % 7, i % 40);
		if (sora_blob_cache_writer_new(a->c, key, &w, &err) == 0) {
			sora_blob_cache_writer_write(w, buf, sizeof(buf));
			sora_blob_cache_writer_commit(&w, &err);
		}
		snprintf(key, sizeof(key), "t%d/%d/k%d", (a->id + 1) % 4, i % 7, (i * 7) % 40);
		fd = sora_blob_cache_open_read(a->c, key, &size);
		if (fd >= 0) {
			/* A file stays readable even if evicted meanwhile. */
			char rb[100];
			if (pread(fd, rb, sizeof(rb), 0) != (ssize_t)size)
				abort();
			close(fd);
		}
		if (i % 13 == 0)
			sora_blob_cache_remove(a->c, key);
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct sora_blob_cache *c = open_cache("threads", 3000, 1000);
	struct sora_blob_cache_stats st;
	pthread_t th[4];
	struct thread_arg args[4];
	char root[128];

	for (int i = 0; i < 4; i++) {
		args[i].c = c;
		args[i].id = i;
		assert_int_equal(pthread_create(&th[i], NULL, hammer, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	sora_blob_cache_get_stats(c, &st);
	assert_true(st.used <= 3000);
	assert_int_equal(st.used, st.count * 100);
	/* The index agrees with the directory. */
	cache_path(root, sizeof(root), "threads");
	assert_int_equal(count_files(root), (int)st.count);
	sora_blob_cache_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lru_eviction),
		cmocka_unit_test(test_max_object_size),
		cmocka_unit_test(test_rebuild_from_directory),
		cmocka_unit_test(test_remove_and_vanished_files),
		cmocka_unit_test(test_add_file_move_and_copy),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
