/* Tests for the fs blob driver (backend/blob/blob-fs.h) and the key rules
 * shared by all drivers: round trips with ranges, head/delete/batch/copy,
 * special-character keys, refused keys, atomic replacement with no temp
 * files left, stale temp cleanup, a failing source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/blob/blob-fs.h"
#include "blob-test.h"

static char dir[64];
static struct sora_blob_driver *drv;

static int setup(void **state)
{
	struct sora_error err;

	if (make_tempdir(dir, "fs") < 0)
		return -1;
	/* A root that does not exist yet is created. */
	char root[128];
	snprintf(root, sizeof(root), "%s/blobs/", dir);
	if (sora_blob_fs_create(root, &drv, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	sora_blob_driver_free(&drv);
	rm_rf(dir);
	return 0;
}

static void put(const char *key, const void *data, size_t len)
{
	struct sora_blob_mem_source ms;
	struct sora_blob_source src;
	struct sora_error err;

	sora_blob_mem_source_init(&src, &ms, data, len);
	if (sora_blob_driver_put(drv, key, &src, &err) != 0)
		fail_msg("put %s: %s", key, err.msg);
}

static void expect_range(const char *key, uint64_t off, uint64_t len, const unsigned char *want,
			 size_t want_len)
{
	struct membuf m = { 0 };
	struct sora_error err;

	assert_int_equal(sora_blob_driver_get(drv, key, off, len, membuf_sink, &m, &err), 0);
	assert_int_equal(m.len, want_len);
	if (want_len > 0)
		assert_memory_equal(m.p, want, want_len);
	membuf_reset(&m);
}

static void test_roundtrip_ranges(void **state)
{
	const size_t n = 3 * 65536 + 17;
	unsigned char *data = random_bytes(n);
	const char *key = "ab/1/0123456789abcdef";
	struct sora_error err;
	uint64_t size = 0;

	put(key, data, n);
	assert_int_equal(sora_blob_driver_head(drv, key, &size, &err), 0);
	assert_int_equal(size, n);
	expect_range(key, 0, SORA_BLOB_TO_END, data, n);
	expect_range(key, 1, 1, data + 1, 1);
	expect_range(key, 65530, 20, data + 65530, 20);
	expect_range(key, n - 3, 100, data + n - 3, 3);
	expect_range(key, n, 5, data, 0);
	expect_range(key, n + 100, SORA_BLOB_TO_END, data, 0);
	expect_range(key, 10, 0, data, 0);
	expect_range(key, 7, UINT64_MAX - 3, data + 7, n - 7);

	/* Replacing is atomic and leaves no temp file behind. */
	put(key, "short", 5);
	expect_range(key, 0, SORA_BLOB_TO_END, (const unsigned char *)"short", 5);
	char tmpdir[128];
	snprintf(tmpdir, sizeof(tmpdir), "%s/blobs/%s", dir, SORA_BLOB_FS_TMPDIR);
	assert_int_equal(count_files(tmpdir), 0);

	/* A sink that stops. */
	struct membuf m = { .fail_after = 1 };
	assert_int_equal(CLS(sora_blob_driver_get(drv, key, 0, SORA_BLOB_TO_END, membuf_sink, &m, &err)),
			 SORA_ERR_ABORTED);
	membuf_reset(&m);

	assert_int_equal(sora_blob_driver_delete(drv, key, &err), 0);
	assert_int_equal(CLS(sora_blob_driver_head(drv, key, &size, &err)), SORA_ERR_NOT_FOUND);
	assert_int_equal(CLS(sora_blob_driver_get(drv, key, 0, 1, membuf_sink, &m, &err)),
			 SORA_ERR_NOT_FOUND);
	assert_non_null(strstr(err.msg, "not found"));
	assert_int_equal(sora_blob_driver_delete(drv, key, &err), 0);
	/* A missing intermediate directory is "not found" too. */
	assert_int_equal(CLS(sora_blob_driver_head(drv, "zz/999/nothing", &size, &err)),
			 SORA_ERR_NOT_FOUND);
	free(data);
}

static void test_special_keys(void **state)
{
	const char *keys[] = { "t/key with spaces", "t/plus+equals=amp&", "t/\xc3\xa9\xe2\x9c\x93",
			       "t/percent%20", "t/question?#", "t/.hidden", "t/..dots", "t/a/b/c/d" };
	struct sora_error err;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		put(keys[i], keys[i], strlen(keys[i]));
		expect_range(keys[i], 0, SORA_BLOB_TO_END, (const unsigned char *)keys[i],
			     strlen(keys[i]));
	}
	size_t failed = 9;
	assert_int_equal(sora_blob_driver_delete_batch(drv, keys, sizeof(keys) / sizeof(keys[0]),
						       &failed, &err), 0);
	assert_int_equal(failed, 0);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		assert_int_equal(CLS(sora_blob_driver_head(drv, keys[i], NULL, &err)),
				 SORA_ERR_NOT_FOUND);
}

static void test_refused_keys(void **state)
{
	const char *bad[] = { "", "/abs", "trail/", "a//b", "a/./b", "a/../b", "..", ".",
			      "../escape", SORA_BLOB_FS_TMPDIR "/x", SORA_BLOB_FS_TMPDIR };
	struct sora_blob_mem_source ms;
	struct sora_blob_source src;
	struct sora_error err;
	char longkey[1100];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sora_blob_mem_source_init(&src, &ms, "x", 1);
		if (CLS(sora_blob_driver_put(drv, bad[i], &src, &err)) != SORA_ERR_PERMANENT)
			fail_msg("accepted key \"%s\"", bad[i]);
		assert_int_not_equal(sora_blob_driver_head(drv, bad[i], NULL, &err), 0);
	}
	memset(longkey, 'a', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	assert_int_equal(sora_blob_key_check(longkey, &err), -1);
	assert_int_equal(sora_blob_key_check(NULL, &err), -1);
	assert_int_equal(sora_blob_key_check("ok/key", &err), 0);
	/* Nothing escaped the root. */
	char outside[128];
	snprintf(outside, sizeof(outside), "%s/escape", dir);
	assert_int_equal(access(outside, F_OK), -1);
}

static void test_copy_and_batch(void **state)
{
	struct sora_error err;
	const char *keys[] = { "c/1", "c/2", "c/missing" };
	size_t failed = 5;

	put("c/src", "copy source", 11);
	assert_int_equal(sora_blob_driver_copy(drv, "c/src", "c/1", &err), 0);
	assert_int_equal(sora_blob_driver_copy(drv, "c/src", "c/2", &err), 0);
	expect_range("c/2", 0, SORA_BLOB_TO_END, (const unsigned char *)"copy source", 11);
	assert_int_equal(CLS(sora_blob_driver_copy(drv, "c/none", "c/3", &err)),
			 SORA_ERR_NOT_FOUND);
	assert_int_equal(sora_blob_driver_delete_batch(drv, keys, 3, &failed, &err), 0);
	assert_int_equal(failed, 0);
	assert_int_equal(CLS(sora_blob_driver_head(drv, "c/1", NULL, &err)), SORA_ERR_NOT_FOUND);
	assert_int_equal(sora_blob_driver_head(drv, "c/src", NULL, &err), 0);
	/* A bad key in a batch is refused before anything is deleted. */
	const char *mixed[] = { "c/src", "a/../b" };
	assert_int_equal(CLS(sora_blob_driver_delete_batch(drv, mixed, 2, &failed, &err)),
			 SORA_ERR_PERMANENT);
	assert_int_equal(sora_blob_driver_head(drv, "c/src", NULL, &err), 0);
	assert_int_equal(sora_blob_driver_delete_batch(drv, mixed, 0, &failed, &err), 0);
}

/* A source that fails half-way: the old object must survive intact. */
static ssize_t failing_read(void *ctx, void *buf, size_t len, struct sora_error *err)
{
	int *calls = ctx;

	if ((*calls)++ > 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "disk on fire");
		return -1;
	}
	memset(buf, 'z', len < 10 ? len : 10);
	return len < 10 ? (ssize_t)len : 10;
}

static int failing_rewind(void *ctx, struct sora_error *err)
{
	*(int *)ctx = 0;
	return 0;
}

static void test_failed_put_keeps_old(void **state)
{
	int calls = 0;
	struct sora_blob_source src = { .length = 100, .read = failing_read,
					.rewind = failing_rewind, .ctx = &calls };
	struct sora_error err;
	char tmpdir[128];

	put("f/obj", "old content", 11);
	assert_int_equal(CLS(sora_blob_driver_put(drv, "f/obj", &src, &err)), SORA_ERR_PERMANENT);
	assert_non_null(strstr(err.msg, "disk on fire"));
	assert_non_null(strstr(err.msg, "fs PUT"));
	expect_range("f/obj", 0, SORA_BLOB_TO_END, (const unsigned char *)"old content", 11);
	snprintf(tmpdir, sizeof(tmpdir), "%s/blobs/%s", dir, SORA_BLOB_FS_TMPDIR);
	assert_int_equal(count_files(tmpdir), 0);
	/* A source shorter than announced is refused too. */
	struct sora_blob_mem_source ms;
	sora_blob_mem_source_init(&src, &ms, "abc", 3);
	src.length = 4;
	assert_int_equal(CLS(sora_blob_driver_put(drv, "f/obj", &src, &err)), SORA_ERR_PERMANENT);
	expect_range("f/obj", 0, SORA_BLOB_TO_END, (const unsigned char *)"old content", 11);
}

static void test_stale_temp_files_removed(void **state)
{
	char root[128], tmp[200];
	struct sora_error err;
	struct sora_blob_driver *d2 = NULL;
	int fd;

	snprintf(root, sizeof(root), "%s/blobs", dir);
	snprintf(tmp, sizeof(tmp), "%s/%s/tmp.leftover", root, SORA_BLOB_FS_TMPDIR);
	fd = open(tmp, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(sora_blob_fs_create(root, &d2, &err), 0);
	assert_int_equal(access(tmp, F_OK), -1);
	sora_blob_driver_free(&d2);
	assert_null(d2);
	assert_int_equal(sora_blob_fs_create("", &d2, &err), -1);
	assert_int_equal(sora_blob_fs_create("/proc/nope/x", &d2, &err), -1);
	assert_non_null(strstr(err.msg, "cannot create"));
}

static void test_fd_source_and_sink(void **state)
{
	char path[128];
	unsigned char *data = random_bytes(100000);
	struct sora_blob_fd_source fs;
	struct sora_blob_source src;
	struct sora_error err;
	int fd, out;

	snprintf(path, sizeof(path), "%s/src.bin", dir);
	fd = open(path, O_CREAT | O_RDWR, 0600);
	assert_int_equal(write(fd, data, 100000), 100000);
	/* A window of the file. */
	sora_blob_fd_source_init(&src, &fs, fd, 1000, 50000);
	put("fd/obj", "", 0);
	assert_int_equal(sora_blob_driver_put(drv, "fd/obj", &src, &err), 0);
	expect_range("fd/obj", 0, SORA_BLOB_TO_END, data + 1000, 50000);
	/* The fd sink writes all of it. */
	snprintf(path, sizeof(path), "%s/out.bin", dir);
	out = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
	assert_int_equal(sora_blob_driver_get(drv, "fd/obj", 10, 100, sora_blob_fd_sink, &out, &err),
			 0);
	assert_int_equal(lseek(out, 0, SEEK_END), 100);
	close(out);
	close(fd);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_ranges),
		cmocka_unit_test(test_special_keys),
		cmocka_unit_test(test_refused_keys),
		cmocka_unit_test(test_copy_and_batch),
		cmocka_unit_test(test_failed_put_keeps_old),
		cmocka_unit_test(test_stale_temp_files_removed),
		cmocka_unit_test(test_fd_source_and_sink),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
