/* Tests for the blob store (backend/blob/blob-store.h) on the fs driver:
 * staging (durable file layout, dedup, size limits, temp cleanup), upload
 * with and without encryption, the read order cache -> staging -> store,
 * cache filling, range reads of streamed encrypted bodies, damage
 * detection (staged file, stored object, swapped content), legacy
 * plaintext objects, missing keys, deletion, and building from config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "backend/blob/blob-fs.h"
#include "backend/blob/blob-store.h"
#include "blob-test.h"

#define KEY1 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define KEY2 "abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd"
#define ACCT 42

static char dir[64];

/* Stands in for the C library's renameat2, which the store calls: with
 * no_renameat2 set it fails as on a file system without RENAME_NOREPLACE. */
static bool no_renameat2;
static int renameat2_calls;

int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
	      unsigned int flags)
{
	renameat2_calls++;
	if (no_renameat2) {
		errno = EINVAL;
		return -1;
	}
	return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

/* Stand in for open and linkat: with no_tmpfile set, O_TMPFILE fails as
 * on a file system without it; links of unnamed files (through
 * /proc/self/fd) are counted. */
static bool no_tmpfile;
static int anon_links;

int open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode = 0;

	va_start(ap, flags);
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
		mode = va_arg(ap, mode_t);
	va_end(ap);
	if (no_tmpfile && (flags & O_TMPFILE) == O_TMPFILE) {
		errno = EOPNOTSUPP;
		return -1;
	}
	return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

/* Stand in for fsync and statfs: after a link of an unnamed file, the
 * fsyncs of that file and of directories are counted, and the inode of
 * the last file fsynced is kept; with other_fs set, statfs reports a file
 * system the store knows nothing particular about (tmpfs). */
static int linked_fd = -1;
static int file_syncs_after_link, dir_syncs_after_link;
static ino_t last_synced_ino;
static bool other_fs;
static int statfs_calls;

int fsync(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			last_synced_ino = st.st_ino;
		if (linked_fd >= 0 && S_ISDIR(st.st_mode))
			dir_syncs_after_link++;
		else if (linked_fd >= 0 && fd == linked_fd)
			file_syncs_after_link++;
	}
	return (int)syscall(SYS_fsync, fd);
}

int statfs(const char *path, struct statfs *buf)
{
	int ret = (int)syscall(SYS_statfs, path, buf);

	statfs_calls++;
	if (ret == 0 && other_fs)
		buf->f_type = 0x01021994;   /* TMPFS_MAGIC */
	return ret;
}

int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)
{
	if (strncmp(oldpath, "/proc/self/fd/", 14) == 0) {
		anon_links++;
		linked_fd = atoi(oldpath + 14);
		file_syncs_after_link = dir_syncs_after_link = 0;
	}
	return (int)syscall(SYS_linkat, olddirfd, oldpath, newdirfd, newpath, flags);
}

/* Stands in for fcntl: with refuse_direct set, turning O_DIRECT on fails
 * as on a file system without direct I/O. Counts the attempts. */
static bool refuse_direct;
static int direct_requests;

int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	long arg;

	va_start(ap, cmd);
	arg = va_arg(ap, long);
	va_end(ap);
	if (cmd == F_SETFL && (arg & O_DIRECT)) {
		direct_requests++;
		if (refuse_direct) {
			errno = EINVAL;
			return -1;
		}
	}
	return (int)syscall(SYS_fcntl, fd, cmd, arg);
}

static int setup_dir(void **state)
{
	return make_tempdir(dir, "store");
}

static int teardown_dir(void **state)
{
	rm_rf(dir);
	return 0;
}

static void sub(char *dst, size_t size, const char *name)
{
	snprintf(dst, size, "%s/%s", dir, name);
}

static struct sora_blob_store *make_store(const char *tag, const char *key_hex,
					  const char *old_hex, bool encrypt, uint64_t cache_cap,
					  uint64_t cache_max)
{
	struct sora_blob_store_params p = { 0 };
	struct sora_blob_store *s = NULL;
	char blobs[128], staging[128], cache[128];
	struct sora_error err;
	const char *olds[1] = { old_hex };

	snprintf(blobs, sizeof(blobs), "%s/%s/blobs", dir, tag);
	snprintf(staging, sizeof(staging), "%s/%s/staging", dir, tag);
	snprintf(cache, sizeof(cache), "%s/%s/cache", dir, tag);
	if (sora_blob_fs_create(blobs, &p.driver, &err) < 0)
		fail_msg("%s", err.msg);
	if (key_hex != NULL || old_hex != NULL)
		assert_int_equal(sora_blob_keyring_new(key_hex, olds, old_hex != NULL, &p.keyring,
						       &err), 0);
	p.encrypt = encrypt;
	p.staging_path = staging;
	p.cache_path = cache;
	p.cache_capacity = cache_cap;
	p.cache_max_object_size = cache_max;
	if (sora_blob_store_new(&p, &s, &err) < 0)
		fail_msg("store: %s", err.msg);
	return s;
}

static void read_all(struct sora_blob_store *s, const char *hash, uint64_t off, uint64_t len,
		     struct membuf *m)
{
	struct sora_error err;
	int ret = sora_blob_read(s, ACCT, hash, off, len, membuf_sink, m, &err);

	if (ret != 0)
		fail_msg("read %s [%llu,+%llu]: %d %s", hash, (unsigned long long)off,
			 (unsigned long long)len, ret, err.msg);
}

static void expect_body(struct sora_blob_store *s, const char *hash, const unsigned char *data,
			size_t n, uint64_t off, uint64_t len)
{
	struct membuf m = { 0 };
	uint64_t want = off >= n ? 0 : (len == SORA_BLOB_TO_END || len > n - off ? n - off : len);

	read_all(s, hash, off, len, &m);
	if (m.len != want)
		fail_msg("range [%llu,+%llu]: got %zu bytes, want %llu", (unsigned long long)off,
			 (unsigned long long)len, m.len, (unsigned long long)want);
	if (want > 0)
		assert_memory_equal(m.p, data + off, want);
	membuf_reset(&m);
}

static void file_path(char *dst, size_t size, const char *tag, const char *what,
		      int64_t acct, const char *hash)
{
	if (strcmp(what, "staging") == 0)
		snprintf(dst, size, "%s/%s/staging/%lld/%s", dir, tag, (long long)acct, hash);
	else
		snprintf(dst, size, "%s/%s/%s/%c%c/%lld/%s", dir, tag, what, hash[0], hash[1],
			 (long long)acct, hash);
}

/* Damages a staged body on disk and checks that uploading it is refused
 * (ECORRUPT), nothing is stored, and the staged file stays for inspection. */
static void expect_damaged_upload_refused(struct sora_blob_store *s, const char *tag,
					  const char *hash)
{
	struct sora_error err;
	char path[256], key[SORA_BLOB_KEY_SIZE];
	int fd;

	unsigned char c;

	file_path(path, sizeof(path), tag, "staging", ACCT, hash);
	/* Flip the first byte: writing a fixed one would change nothing when
	 * the (random) body already starts with it. */
	fd = open(path, O_RDWR);
	assert_int_equal(pread(fd, &c, 1, 0), 1);
	c ^= 0xff;
	assert_int_equal(pwrite(fd, &c, 1, 0), 1);
	close(fd);
	assert_int_equal(CLS(sora_blob_upload_staged(s, ACCT, hash, &err)), SORA_ERR_CORRUPT);
	assert_non_null(strstr(err.msg, "does not match its hash"));
	assert_int_equal(sora_blob_key_format(ACCT, hash, key, sizeof(key)), 0);
	assert_int_equal(CLS(sora_blob_driver_head(sora_blob_store_driver(s), key, NULL, &err)),
			 SORA_ERR_NOT_FOUND);
	assert_true(sora_blob_is_staged(s, ACCT, hash));
}

static void test_staging(void **state)
{
	struct sora_blob_store *s = make_store("stage", NULL, NULL, false, 0, 0);
	const char body[] = "Subject: hello\r\n\r\nbody\r\n";
	char want[SORA_BLOB_HASH_HEX_SIZE], path[256], tmpdir[128];
	struct sora_blob_ref ref, ref2;
	struct sora_error err;
	struct stat st;

	sora_blob_hash_buf(body, sizeof(body) - 1, want);
	assert_int_equal(sora_blob_stage_buf(s, ACCT, body, sizeof(body) - 1, &ref, &err), 0);
	assert_string_equal(ref.hash, want);
	assert_int_equal(ref.size, sizeof(body) - 1);
	assert_false(ref.existed);
	file_path(path, sizeof(path), "stage", "staging", ACCT, ref.hash);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, sizeof(body) - 1);
	assert_true(sora_blob_is_staged(s, ACCT, ref.hash));
	assert_false(sora_blob_is_staged(s, ACCT + 1, ref.hash));
	/* Dedup: the same body is not written again. */
	assert_int_equal(sora_blob_stage_buf(s, ACCT, body, sizeof(body) - 1, &ref2, &err), 0);
	assert_true(ref2.existed);
	assert_string_equal(ref2.hash, ref.hash);
	struct stat st2;
	assert_int_equal(stat(path, &st2), 0);
	assert_int_equal(st2.st_ino, st.st_ino);
	/* No temp files stay behind. */
	sub(tmpdir, sizeof(tmpdir), "stage/staging/tmp");
	assert_int_equal(count_files(tmpdir), 0);

	/* Incremental, with a size limit. */
	struct sora_blob_writer *w = NULL;
	assert_int_equal(sora_blob_writer_new(s, ACCT, 10, &w, &err), 0);
	assert_int_equal(sora_blob_writer_write(w, "12345", 5, &err), 0);
	assert_int_equal(sora_blob_writer_write(w, "67890", 5, &err), 0);
	assert_int_equal(CLS(sora_blob_writer_write(w, "x", 1, &err)), SORA_ERR_LIMIT);
	assert_string_equal(err.msg, "body exceeds 10 bytes");
	assert_int_equal(CLS(sora_blob_writer_commit(&w, &ref2, &err)), SORA_ERR_PERMANENT);
	assert_null(w);
	assert_int_equal(count_files(tmpdir), 0);
	assert_int_equal(sora_blob_writer_new(s, ACCT, 0, &w, &err), 0);
	assert_int_equal(sora_blob_writer_write(w, "abc", 3, &err), 0);
	sora_blob_writer_abort(&w);
	assert_null(w);
	assert_int_equal(count_files(tmpdir), 0);
	assert_int_equal(CLS(sora_blob_writer_new(s, 0, 0, &w, &err)), SORA_ERR_PERMANENT);

	/* From a file descriptor (a pipe: read until EOF). */
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(write(pfd[1], body, sizeof(body) - 1), (ssize_t)(sizeof(body) - 1));
	close(pfd[1]);
	assert_int_equal(sora_blob_stage_fd(s, ACCT + 1, pfd[0], 0, &ref2, &err), 0);
	close(pfd[0]);
	assert_string_equal(ref2.hash, want);
	assert_true(sora_blob_is_staged(s, ACCT + 1, want));
	/* Empty bodies are bodies too. */
	assert_int_equal(sora_blob_stage_buf(s, ACCT, "", 0, &ref2, &err), 0);
	assert_int_equal(ref2.size, 0);
	assert_string_equal(ref2.hash,
			    "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");

	/* Reads before upload come from staging. */
	expect_body(s, ref.hash, (const unsigned char *)body, sizeof(body) - 1, 0, SORA_BLOB_TO_END);
	expect_body(s, ref.hash, (const unsigned char *)body, sizeof(body) - 1, 9, 5);
	/* Unstage. */
	assert_int_equal(sora_blob_unstage(s, ACCT, ref.hash, &err), 0);
	assert_false(sora_blob_is_staged(s, ACCT, ref.hash));
	assert_int_equal(sora_blob_unstage(s, ACCT, ref.hash, &err), 0);
	assert_int_equal(CLS(sora_blob_unstage(s, ACCT, "nothex", &err)), SORA_ERR_PERMANENT);
	sora_blob_store_free(&s);
	assert_null(s);

	/* Temp files of a crashed writer are cleaned when the store opens. */
	char stale[160];
	sub(stale, sizeof(stale), "stage/staging/tmp/tmp.crashed");
	int fd = open(stale, O_CREAT | O_WRONLY, 0600);
	close(fd);
	s = make_store("stage", NULL, NULL, false, 0, 0);
	assert_int_equal(access(stale, F_OK), -1);
	sora_blob_store_free(&s);
}

static void test_upload_plain_with_cache(void **state)
{
	struct sora_blob_store *s = make_store("plain", NULL, NULL, false, 1 << 20, 1 << 16);
	const size_t n = 5000;
	unsigned char *body = random_bytes(n);
	char path[256], key[SORA_BLOB_KEY_SIZE];
	struct sora_blob_cache_stats st;
	struct sora_blob_ref ref;
	struct sora_error err;

	assert_int_equal(sora_blob_stage_buf(s, ACCT, body, n, &ref, &err), 0);
	assert_int_equal(sora_blob_upload_staged(s, ACCT, ref.hash, &err), 0);
	/* Stored under its key, moved from staging into the cache. */
	file_path(path, sizeof(path), "plain", "blobs", ACCT, ref.hash);
	assert_int_equal(access(path, F_OK), 0);
	assert_false(sora_blob_is_staged(s, ACCT, ref.hash));
	file_path(path, sizeof(path), "plain", "cache", ACCT, ref.hash);
	assert_int_equal(access(path, F_OK), 0);
	sora_blob_cache_get_stats(sora_blob_store_cache(s), &st);
	assert_int_equal(st.count, 1);
	expect_body(s, ref.hash, body, n, 0, SORA_BLOB_TO_END);
	expect_body(s, ref.hash, body, n, 4990, 100);
	sora_blob_cache_get_stats(sora_blob_store_cache(s), &st);
	assert_int_equal(st.hits, 2);
	/* Uploading again is refused: it is no longer staged. */
	assert_int_equal(CLS(sora_blob_upload_staged(s, ACCT, ref.hash, &err)), SORA_ERR_NOT_FOUND);

	/* Without the cached copy the store serves it and fills the cache. */
	assert_int_equal(sora_blob_key_format(ACCT, ref.hash, key, sizeof(key)), 0);
	sora_blob_cache_remove(sora_blob_store_cache(s), key);
	expect_body(s, ref.hash, body, n, 100, 200);
	sora_blob_cache_get_stats(sora_blob_store_cache(s), &st);
	assert_int_equal(st.count, 1);

	/* Deleting removes it everywhere. */
	assert_int_equal(sora_blob_delete(s, ACCT, ref.hash, &err), 0);
	struct membuf m = { 0 };
	assert_int_equal(CLS(sora_blob_read(s, ACCT, ref.hash, 0, SORA_BLOB_TO_END, membuf_sink, &m, &err)),
			 SORA_ERR_NOT_FOUND);
	assert_non_null(strstr(err.msg, "not found"));
	assert_non_null(strstr(err.msg, key));
	sora_blob_cache_get_stats(sora_blob_store_cache(s), &st);
	assert_int_equal(st.count, 0);
	assert_int_equal(CLS(sora_blob_read(s, ACCT, "zz", 0, 1, membuf_sink, &m, &err)),
			 SORA_ERR_PERMANENT);
	assert_int_equal(CLS(sora_blob_read(s, -1, ref.hash, 0, 1, membuf_sink, &m, &err)),
			 SORA_ERR_PERMANENT);
	free(body);
	sora_blob_store_free(&s);
}

static void test_upload_encrypted(void **state)
{
	/* The cache takes bodies up to 100000 bytes. */
	struct sora_blob_store *s = make_store("enc", KEY1, NULL, true, 1 << 20, 100000);
	const size_t small_n = 70000, big_n = 3 * 65536 + 999;
	unsigned char *small = random_bytes(small_n), *big = random_bytes(big_n);
	struct sora_blob_ref sref, bref;
	struct sora_error err;
	struct sora_blob_cache_stats st;
	char path[256], key[SORA_BLOB_KEY_SIZE];
	struct stat sb;

	memcpy(small, "Subject: secret", 15);
	assert_int_equal(sora_blob_stage_buf(s, ACCT, small, small_n, &sref, &err), 0);
	assert_int_equal(sora_blob_stage_buf(s, ACCT, big, big_n, &bref, &err), 0);
	assert_int_equal(sora_blob_upload_staged(s, ACCT, sref.hash, &err), 0);
	assert_int_equal(sora_blob_upload_staged(s, ACCT, bref.hash, &err), 0);
	assert_true(sora_blob_store_encrypts(s));

	/* The stored objects are ciphertext of the expected length. */
	file_path(path, sizeof(path), "enc", "blobs", ACCT, sref.hash);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, sora_blob_crypt_ciphertext_len(small_n));
	struct membuf m = { 0 };
	assert_int_equal(sora_blob_key_format(ACCT, sref.hash, key, sizeof(key)), 0);
	assert_int_equal(sora_blob_driver_get(sora_blob_store_driver(s), key, 0, SORA_BLOB_TO_END,
					      membuf_sink, &m, &err), 0);
	assert_true(sora_blob_crypt_has_magic(m.p, m.len));
	assert_null(memmem(m.p, m.len, "Subject: secret", 15));
	membuf_reset(&m);
	/* The small body went to the cache as plaintext; the big one did not. */
	file_path(path, sizeof(path), "enc", "cache", ACCT, sref.hash);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, small_n);
	file_path(path, sizeof(path), "enc", "cache", ACCT, bref.hash);
	assert_int_equal(access(path, F_OK), -1);
	assert_false(sora_blob_is_staged(s, ACCT, bref.hash));

	/* Cache miss on the small one: decrypted and cached again. */
	sora_blob_cache_remove(sora_blob_store_cache(s), key);
	expect_body(s, sref.hash, small, small_n, 65530, 100);
	sora_blob_cache_get_stats(sora_blob_store_cache(s), &st);
	assert_int_equal(st.count, 1);

	/* The big one streams from the store, for any range. */
	uint64_t ranges[][2] = {
		{ 0, SORA_BLOB_TO_END }, { 0, 1 }, { 1, 65535 }, { 65535, 2 }, { 65536, 65536 },
		{ 131071, 70000 }, { big_n - 1, 1 }, { big_n - 1000, SORA_BLOB_TO_END },
		{ big_n, 10 }, { big_n + 5, SORA_BLOB_TO_END }, { 3 * 65536, 999 }, { 12345, 0 },
	};
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
		expect_body(s, bref.hash, big, big_n, ranges[i][0], ranges[i][1]);
	sora_blob_cache_get_stats(sora_blob_store_cache(s), &st);
	assert_int_equal(st.count, 1);

	/* After a rotation (old key kept), both still read. */
	sora_blob_store_free(&s);
	s = make_store("enc", KEY2, KEY1, true, 1 << 20, 100000);
	sora_blob_cache_remove(sora_blob_store_cache(s), key);
	expect_body(s, sref.hash, small, small_n, 0, SORA_BLOB_TO_END);
	expect_body(s, bref.hash, big, big_n, 100000, 50);
	sora_blob_store_free(&s);

	/* Without the key: a clear error naming the object, no output. */
	s = make_store("enc", KEY2, NULL, true, 1 << 20, 100000);
	sora_blob_cache_remove(sora_blob_store_cache(s), key);
	assert_int_equal(CLS(sora_blob_read(s, ACCT, sref.hash, 0, SORA_BLOB_TO_END, membuf_sink, &m, &err)),
			 SORA_ERR_CORRUPT);
	assert_non_null(strstr(err.msg, "which is not configured"));
	assert_non_null(strstr(err.msg, key));
	assert_int_equal(m.len, 0);
	assert_int_equal(CLS(sora_blob_read(s, ACCT, bref.hash, 70000, 10, membuf_sink, &m, &err)),
			 SORA_ERR_CORRUPT);
	assert_int_equal(m.len, 0);
	sora_blob_store_free(&s);
	/* No keyring at all: still an error, never ciphertext. */
	s = make_store("enc", NULL, NULL, false, 0, 0);
	assert_int_equal(CLS(sora_blob_read(s, ACCT, bref.hash, 5, 10, membuf_sink, &m, &err)),
			 SORA_ERR_CORRUPT);
	assert_int_equal(m.len, 0);
	sora_blob_store_free(&s);

	/* A damaged stored object. */
	s = make_store("enc", KEY1, NULL, true, 1 << 20, 100000);
	file_path(path, sizeof(path), "enc", "blobs", ACCT, bref.hash);
	int fd = open(path, O_RDWR);
	unsigned char b;
	assert_int_equal(pread(fd, &b, 1, 150000), 1);
	b ^= 0x80;
	assert_int_equal(pwrite(fd, &b, 1, 150000), 1);
	close(fd);
	assert_int_equal(CLS(sora_blob_read(s, ACCT, bref.hash, 0, SORA_BLOB_TO_END, membuf_sink, &m, &err)),
			 SORA_ERR_CORRUPT);
	assert_non_null(strstr(err.msg, "authentication failed"));
	assert_true(m.len <= 2 * 65536);
	membuf_reset(&m);
	/* A range before the damage still reads: each chunk is checked alone. */
	expect_body(s, bref.hash, big, big_n, 10, 1000);
	/* Truncated. */
	assert_int_equal(truncate(path, 41 + 65553 + 100), 0);
	assert_int_equal(CLS(sora_blob_read(s, ACCT, bref.hash, 0, SORA_BLOB_TO_END, membuf_sink, &m, &err)),
			 SORA_ERR_CORRUPT);
	membuf_reset(&m);
	sora_blob_store_free(&s);
	free(small);
	free(big);
}

static void test_damage_and_legacy(void **state)
{
	struct sora_blob_store *s = make_store("dmg", KEY1, NULL, true, 1 << 20, 1 << 16);
	const char body[] = "original body";
	struct sora_blob_ref ref;
	struct sora_error err;
	char key[SORA_BLOB_KEY_SIZE];
	struct membuf m = { 0 };

	/* A staged file changed on disk is not uploaded. */
	assert_int_equal(sora_blob_stage_buf(s, ACCT, body, sizeof(body) - 1, &ref, &err), 0);
	expect_damaged_upload_refused(s, "dmg", ref.hash);
	assert_int_equal(sora_blob_unstage(s, ACCT, ref.hash, &err), 0);
	assert_int_equal(sora_blob_key_format(ACCT, ref.hash, key, sizeof(key)), 0);

	/* An object stored before encryption was turned on (plaintext) is
	 * read as it is. */
	struct sora_blob_mem_source ms;
	struct sora_blob_source src;
	sora_blob_mem_source_init(&src, &ms, body, sizeof(body) - 1);
	assert_int_equal(sora_blob_driver_put(sora_blob_store_driver(s), key, &src, &err), 0);
	expect_body(s, ref.hash, (const unsigned char *)body, sizeof(body) - 1, 0, SORA_BLOB_TO_END);
	expect_body(s, ref.hash, (const unsigned char *)body, sizeof(body) - 1, 3, 4);

	/* Other content under this hash's key is caught on a whole read. */
	sora_blob_cache_remove(sora_blob_store_cache(s), key);
	sora_blob_mem_source_init(&src, &ms, "swapped body!", 13);
	assert_int_equal(sora_blob_driver_put(sora_blob_store_driver(s), key, &src, &err), 0);
	assert_int_equal(CLS(sora_blob_read(s, ACCT, ref.hash, 0, SORA_BLOB_TO_END, membuf_sink, &m, &err)),
			 SORA_ERR_CORRUPT);
	assert_non_null(strstr(err.msg, "does not match its hash"));
	membuf_reset(&m);
	/* ... and it was not put into the cache. */
	struct sora_blob_cache_stats st;
	sora_blob_cache_get_stats(sora_blob_store_cache(s), &st);
	assert_int_equal(st.count, 0);

	/* A sink that stops. */
	sora_blob_mem_source_init(&src, &ms, body, sizeof(body) - 1);
	assert_int_equal(sora_blob_driver_put(sora_blob_store_driver(s), key, &src, &err), 0);
	m.fail_after = 1;
	assert_int_equal(CLS(sora_blob_read(s, ACCT, ref.hash, 0, SORA_BLOB_TO_END, membuf_sink, &m, &err)),
			 SORA_ERR_ABORTED);
	membuf_reset(&m);
	assert_int_equal(CLS(sora_blob_upload_staged(s, ACCT, "nothex", &err)), SORA_ERR_PERMANENT);
	sora_blob_store_free(&s);
}

/* Without encryption the fs store takes the staged file as it is: a hard
 * link, after the same hash check a copy gets. */
static void test_upload_links_staged_file(void **state)
{
	struct sora_blob_store *s = make_store("link", NULL, NULL, false, 0, 0);
	const size_t n = 12345;
	unsigned char *body = random_bytes(n);
	struct sora_blob_ref ref;
	struct sora_error err;
	char staged[256], stored[256];
	struct stat before, after;

	assert_int_equal(sora_blob_stage_buf(s, ACCT, body, n, &ref, &err), 0);
	file_path(staged, sizeof(staged), "link", "staging", ACCT, ref.hash);
	assert_int_equal(stat(staged, &before), 0);
	assert_int_equal(sora_blob_upload_staged(s, ACCT, ref.hash, &err), 0);
	file_path(stored, sizeof(stored), "link", "blobs", ACCT, ref.hash);
	assert_int_equal(stat(stored, &after), 0);
	assert_true(after.st_ino == before.st_ino && after.st_dev == before.st_dev);
	/* The staged name is gone; the store's is the only one left. */
	assert_false(sora_blob_is_staged(s, ACCT, ref.hash));
	assert_int_equal(after.st_nlink, 1);
	expect_body(s, ref.hash, body, n, 0, SORA_BLOB_TO_END);
	/* Nothing left behind in the store's temp directory. */
	char tmpdir[200];
	snprintf(tmpdir, sizeof(tmpdir), "%s/link/blobs/%s", dir, SORA_BLOB_FS_TMPDIR);
	assert_int_equal(count_files(tmpdir), 0);

	/* A staged file damaged on disk is refused before it is linked. */
	body[0] ^= 1;
	assert_int_equal(sora_blob_stage_buf(s, ACCT, body, n, &ref, &err), 0);
	expect_damaged_upload_refused(s, "link", ref.hash);
	free(body);
	sora_blob_store_free(&s);
}

/* Staging and the fs store on different file systems: link() fails with
 * EXDEV and the body is copied instead. Needs a tmpfs at /dev/shm apart
 * from the file system of /tmp (skipped otherwise). */
static void test_upload_across_file_systems(void **state)
{
	struct sora_blob_store_params p = { 0 };
	struct sora_blob_store *s = NULL;
	char shm[64] = "/dev/shm/sora-blob-xdev-XXXXXX", staging[128], stored[256];
	struct sora_error err;
	const size_t n = 7000;
	unsigned char *body = random_bytes(n);
	struct sora_blob_ref ref;
	struct sora_error berr;
	struct stat a, b;

	if (mkdtemp(shm) == NULL || stat(shm, &a) < 0 || stat(dir, &b) < 0 || a.st_dev == b.st_dev) {
		if (shm[strlen(shm) - 1] != 'X')
			rm_rf(shm);
		free(body);
		skip();
	}
	snprintf(staging, sizeof(staging), "%s/xdev-staging", dir);
	assert_int_equal(sora_blob_fs_create(shm, &p.driver, &err), 0);
	p.staging_path = staging;
	assert_int_equal(sora_blob_store_new(&p, &s, &err), 0);
	assert_int_equal(sora_blob_stage_buf(s, ACCT, body, n, &ref, &berr), 0);
	assert_int_equal(sora_blob_upload_staged(s, ACCT, ref.hash, &berr), 0);
	snprintf(stored, sizeof(stored), "%s/%c%c/%d/%s", shm, ref.hash[0], ref.hash[1], ACCT,
		 ref.hash);
	assert_int_equal(stat(stored, &a), 0);
	assert_int_equal(a.st_size, (off_t)n);
	assert_false(sora_blob_is_staged(s, ACCT, ref.hash));
	expect_body(s, ref.hash, body, n, 0, SORA_BLOB_TO_END);
	sora_blob_store_free(&s);
	rm_rf(shm);
	free(body);
}

static void set_mtime_ago(const char *path, time_t ago)
{
	struct timespec t[2];

	clock_gettime(CLOCK_REALTIME, &t[0]);
	t[0].tv_sec -= ago;
	t[1] = t[0];
	assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
}

struct walk_seen {
	int n;
	char hash[4][SORA_BLOB_HASH_HEX_SIZE];
};

static int walk_collect(void *ctx, int64_t account_id, const char *hash)
{
	struct walk_seen *w = ctx;

	assert_int_equal(account_id, ACCT);
	if (w->n < 4)
		snprintf(w->hash[w->n], sizeof(w->hash[0]), "%s", hash);
	w->n++;
	return 0;
}

/* The orphan sweep: the walk sees only files older than the age, a file
 * in use again (touched) stays, an old one goes, reusing a staged body
 * touches it, and a body set aside when the process died comes back. */
static void test_orphan_sweep(void **state)
{
	struct sora_blob_store *s = make_store("orphan", NULL, NULL, false, 0, 0);
	struct sora_blob_ref a, b, again;
	struct sora_error err;
	struct walk_seen seen = { 0 };
	char pa[256], pb[256], aside[256];
	struct stat st;

	assert_int_equal(sora_blob_stage_buf(s, ACCT, "body a", 6, &a, &err), 0);
	assert_int_equal(sora_blob_stage_buf(s, ACCT, "body b", 6, &b, &err), 0);
	file_path(pa, sizeof(pa), "orphan", "staging", ACCT, a.hash);
	file_path(pb, sizeof(pb), "orphan", "staging", ACCT, b.hash);
	set_mtime_ago(pa, 7200);
	/* Only the old one is listed; tmp/ and aside/ are not account dirs. */
	assert_int_equal(sora_blob_staged_walk(s, 3600, walk_collect, &seen), 1);
	assert_string_equal(seen.hash[0], a.hash);

	/* A delivery reuses a: its mtime is fresh again, and the sweep keeps
	 * it even though the walk had listed it. */
	assert_int_equal(sora_blob_stage_buf(s, ACCT, "body a", 6, &again, &err), 0);
	assert_true(again.existed);
	assert_int_equal(stat(pa, &st), 0);
	assert_true(time(NULL) - st.st_mtime < 60);
	assert_int_equal(sora_blob_unstage_orphan(s, ACCT, a.hash, 3600, &err), 1);
	assert_true(sora_blob_is_staged(s, ACCT, a.hash));

	/* Old and unused: removed; removing again is fine. */
	set_mtime_ago(pa, 7200);
	assert_int_equal(sora_blob_unstage_orphan(s, ACCT, a.hash, 3600, &err), 0);
	assert_false(sora_blob_is_staged(s, ACCT, a.hash));
	assert_int_equal(sora_blob_unstage_orphan(s, ACCT, a.hash, 3600, &err), 0);
	/* Staging it again after the sweep writes a fresh copy. */
	assert_int_equal(sora_blob_stage_buf(s, ACCT, "body a", 6, &again, &err), 0);
	assert_false(again.existed);
	assert_true(sora_blob_is_staged(s, ACCT, a.hash));
	sora_blob_store_free(&s);

	/* A body in the aside directory (the process died between setting it
	 * aside and deciding) is put back when the store opens. */
	snprintf(aside, sizeof(aside), "%s/orphan/staging/aside/%d.%s", dir, ACCT, b.hash);
	assert_int_equal(rename(pb, aside), 0);
	s = make_store("orphan", NULL, NULL, false, 0, 0);
	assert_true(sora_blob_is_staged(s, ACCT, b.hash));
	assert_int_equal(access(aside, F_OK), -1);
	expect_body(s, b.hash, (const unsigned char *)"body b", 6, 0, SORA_BLOB_TO_END);
	sora_blob_store_free(&s);
}

static void test_no_cache_streams_and_read_to_fd(void **state)
{
	struct sora_blob_store *s = make_store("nocache", KEY1, NULL, true, 0, 0);
	const size_t n = 200000;
	unsigned char *body = random_bytes(n);
	struct sora_blob_ref ref;
	struct sora_error err;
	char path[128];
	int fd;

	assert_null(sora_blob_store_cache(s));
	assert_int_equal(sora_blob_stage_buf(s, ACCT, body, n, &ref, &err), 0);
	assert_int_equal(sora_blob_upload_staged(s, ACCT, ref.hash, &err), 0);
	assert_false(sora_blob_is_staged(s, ACCT, ref.hash));
	sub(path, sizeof(path), "out.bin");
	fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
	assert_int_equal(sora_blob_read_to_fd(s, ACCT, ref.hash, 0, SORA_BLOB_TO_END, fd, &err), 0);
	assert_int_equal(lseek(fd, 0, SEEK_END), (off_t)n);
	unsigned char *back = malloc(n);
	assert_int_equal(pread(fd, back, n, 0), (ssize_t)n);
	assert_memory_equal(back, body, n);
	close(fd);
	free(back);
	free(body);
	sora_blob_store_free(&s);
}

static void test_open_from_config(void **state)
{
	struct sora_config cfg = { 0 };
	struct sora_blob_store *s = NULL;
	char blobs[128], staging[128], cache[128];
	struct sora_error err;
	char *olds[] = { KEY2, NULL };

	sub(blobs, sizeof(blobs), "cfg/blobs");
	sub(staging, sizeof(staging), "cfg/staging");
	sub(cache, sizeof(cache), "cfg/cache");
	cfg.storage.backend = "fs";
	cfg.storage.fs_path = blobs;
	cfg.uploader.path = staging;
	cfg.local_cache.path = cache;
	cfg.local_cache.capacity = 1 << 20;
	cfg.local_cache.max_object_size = 1 << 16;
	cfg.s3.encrypt = true;
	cfg.s3.encryption_key = KEY1;
	cfg.s3.old_encryption_keys = olds;
	cfg.s3.old_encryption_keys_count = 1;
	assert_int_equal(sora_blob_store_open(&cfg, NULL, &s, &err), 0);
	assert_true(sora_blob_store_encrypts(s));
	assert_string_equal(sora_blob_store_driver(s)->ops->name, "fs");
	struct sora_blob_ref ref;
	struct sora_error e;
	assert_int_equal(sora_blob_stage_buf(s, 1, "x", 1, &ref, &e), 0);
	assert_int_equal(sora_blob_upload_staged(s, 1, ref.hash, &e), 0);
	sora_blob_store_free(&s);

	cfg.s3.encryption_key = NULL;
	assert_int_equal(sora_blob_store_open(&cfg, NULL, &s, &err), -1);
	assert_non_null(strstr(err.msg, "encryption_key"));
	cfg.s3.encryption_key = "short";
	assert_int_equal(sora_blob_store_open(&cfg, NULL, &s, &err), -1);
	assert_non_null(strstr(err.msg, "64 hex"));
	cfg.s3.encrypt = false;
	cfg.storage.backend = "tape";
	assert_int_equal(sora_blob_store_open(&cfg, NULL, &s, &err), -1);
	assert_non_null(strstr(err.msg, "tape"));
	/* s3 without a bucket is refused before any request. */
	cfg.storage.backend = "s3";
	assert_int_equal(sora_blob_store_open(&cfg, NULL, &s, &err), -1);
	assert_non_null(strstr(err.msg, "bucket"));
	cfg.storage.backend = "fs";
	cfg.uploader.path = NULL;
	cfg.storage.fs_path = blobs;
	/* Old keys alone make a decrypt-only store. */
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(sora_blob_store_open(&cfg, NULL, &s, &err), 0);
	assert_false(sora_blob_store_encrypts(s));
	sora_blob_store_free(&s);
	assert_null(s);
}

/* DESIGN.md §6: the fs store without encryption is written directly:
 * staging a body stores it once, nothing lands in staging or in a cache,
 * the body reads back byte-exact, and a discarded body is gone. */
struct direct_dirs {
	char blobs[128], staging[128], cache[128];
};

/* The configuration of a direct (fs) store under dir/tag. */
static void direct_config(struct sora_config *cfg, struct direct_dirs *d, const char *tag)
{
	snprintf(d->blobs, sizeof(d->blobs), "%s/%s/blobs", dir, tag);
	snprintf(d->staging, sizeof(d->staging), "%s/%s/staging", dir, tag);
	snprintf(d->cache, sizeof(d->cache), "%s/%s/cache", dir, tag);
	cfg->storage.backend = "fs";
	cfg->storage.fs_path = d->blobs;
	cfg->uploader.path = d->staging;
	cfg->local_cache.path = d->cache;
	cfg->local_cache.capacity = 1 << 20;
	cfg->local_cache.max_object_size = 1 << 16;
}

/* Opens a direct (fs) store under dir/tag. */
static struct sora_blob_store *open_direct(const char *tag, struct direct_dirs *d)
{
	struct sora_config cfg = { 0 };
	struct sora_blob_store *s = NULL;
	struct sora_error err;

	direct_config(&cfg, d, tag);
	if (sora_blob_store_open(&cfg, NULL, &s, &err) != 0)
		fail_msg("store: %s", err.msg);
	assert_true(sora_blob_store_direct(s));
	return s;
}

/* The body at path is one file (one link) of size bytes. */
static void expect_one_file(const char *path, size_t size)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(st.st_size, size);
}

/* A direct (fs) store under dir/tag: the body is written once, into its
 * place, with no second name left anywhere. Without O_TMPFILE (no_tmpfile)
 * the named temp file is renamed into place, else the unnamed one linked. */
static void direct_store_once(const char *tag)
{
	struct direct_dirs d;
	struct sora_blob_store *s = open_direct(tag, &d);
	char path[256];
	const char body[] = "Subject: direct\r\n\r\nstored once\r\n";
	struct sora_blob_ref ref, again;
	struct sora_error err;
	struct stat st;

	renameat2_calls = anon_links = 0;
	linked_fd = -1;
	assert_int_equal(sora_blob_stage_buf(s, ACCT, body, sizeof(body) - 1, &ref, &err), 0);
	assert_int_equal(renameat2_calls, no_tmpfile ? 1 : 0);
	assert_int_equal(anon_links, no_tmpfile ? 0 : 1);
	/* The unnamed file was fsynced with a link count of 0: once linked it
	 * is fsynced again (its inode), and on a file system not known to make
	 * the name durable with it, its directory too. */
	if (!no_tmpfile) {
		assert_int_equal(file_syncs_after_link, 1);
		if (other_fs)
			assert_int_equal(dir_syncs_after_link, 1);
	}
	linked_fd = -1;
	assert_false(ref.existed);
	file_path(path, sizeof(path), tag, "blobs", ACCT, ref.hash);
	expect_one_file(path, sizeof(body) - 1);
	/* The object is the only file: the temp directories are empty. */
	assert_int_equal(count_files(d.blobs), 1);
	assert_int_equal(count_files(d.staging), 1);
	expect_body(s, ref.hash, (const unsigned char *)body, sizeof(body) - 1, 0,
		    SORA_BLOB_TO_END);
	/* In place already: found, not written again, but fsynced (its
	 * writer may not have got that far yet). */
	last_synced_ino = 0;
	assert_int_equal(sora_blob_stage_buf(s, ACCT, body, sizeof(body) - 1, &again, &err), 0);
	assert_true(again.existed);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(last_synced_ino, st.st_ino);
	assert_int_equal(count_files(d.blobs), 1);
	sora_blob_store_free(&s);
}

/* Without RENAME_NOREPLACE (EINVAL from renameat2) the body is linked into
 * place and its temporary name removed: the same result. */
static void test_direct_fs_store_without_noreplace(void **state)
{
	no_tmpfile = no_renameat2 = true;
	direct_store_once("noreplace");
	no_renameat2 = false;
	direct_store_once("renamed");
	no_tmpfile = false;
	direct_store_once("unnamed");
	other_fs = true;
	statfs_calls = 0;
	direct_store_once("unnamed-other-fs");
	assert_true(statfs_calls > 0);
}

static int renameat2_restore(void **state)
{
	no_renameat2 = no_tmpfile = other_fs = false;
	return 0;
}

/* A copy in place with the wrong size for its hash (damaged) is replaced
 * by the next writer of that body, named or unnamed. */
static void replace_damaged(const char *tag)
{
	struct direct_dirs d;
	struct sora_blob_store *s = open_direct(tag, &d);
	char path[256];
	const char body[] = "Subject: damaged\r\n\r\nreplaced\r\n";
	struct sora_blob_ref ref, again;
	struct sora_error err;

	assert_int_equal(sora_blob_stage_buf(s, ACCT, body, sizeof(body) - 1, &ref, &err), 0);
	file_path(path, sizeof(path), tag, "blobs", ACCT, ref.hash);
	assert_int_equal(truncate(path, 5), 0);
	assert_int_equal(sora_blob_stage_buf(s, ACCT, body, sizeof(body) - 1, &again, &err), 0);
	assert_false(again.existed);
	expect_one_file(path, sizeof(body) - 1);
	assert_int_equal(count_files(d.blobs), 1);
	expect_body(s, ref.hash, (const unsigned char *)body, sizeof(body) - 1, 0,
		    SORA_BLOB_TO_END);
	sora_blob_store_free(&s);
}

static void test_damaged_copy_replaced(void **state)
{
	no_tmpfile = true;
	replace_damaged("damaged-named");
	no_tmpfile = false;
	replace_damaged("damaged-unnamed");
}

static void test_direct_fs_store(void **state)
{
	struct sora_config cfg = { 0 };
	struct sora_blob_store *s = NULL;
	struct direct_dirs d;
	char path[256], want[256];
	const char body[] = "Subject: direct\r\n\r\nstored once\r\n";
	struct sora_blob_ref ref, again;
	struct sora_error err;
	struct stat st;

	direct_config(&cfg, &d, "direct");
	assert_int_equal(sora_blob_store_open(&cfg, NULL, &s, &err), 0);
	assert_true(sora_blob_store_direct(s));
	assert_null(sora_blob_store_cache(s));
	assert_int_equal(sora_blob_stage_buf(s, ACCT, body, sizeof(body) - 1, &ref, &err), 0);
	assert_false(ref.existed);
	file_path(path, sizeof(path), "direct", "blobs", ACCT, ref.hash);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(st.st_size, sizeof(body) - 1);
	/* Stored once: the object is the only file; staging holds only its
	 * lock file and the temp directories are empty, no cache directory
	 * was made. */
	assert_int_equal(count_files(d.blobs), 1);
	assert_int_equal(count_files(d.staging), 1);
	assert_false(sora_blob_is_staged(s, ACCT, ref.hash));
	assert_int_not_equal(stat(d.cache, &st), 0);
	expect_body(s, ref.hash, (const unsigned char *)body, sizeof(body) - 1, 0,
		    SORA_BLOB_TO_END);
	expect_body(s, ref.hash, (const unsigned char *)body, sizeof(body) - 1, 3, 5);
	/* The same body again is recognised, not rewritten. */
	assert_int_equal(sora_blob_stage_buf(s, ACCT, body, sizeof(body) - 1, &again, &err), 0);
	assert_true(again.existed);
	assert_int_equal(count_files(d.blobs), 1);
	assert_int_equal(sora_blob_discard(s, ACCT, ref.hash, &err), 0);
	assert_int_not_equal(stat(path, &st), 0);
	assert_int_equal(sora_blob_discard(s, ACCT, ref.hash, &err), 0);
	sora_blob_store_free(&s);

	/* Encrypted fs stores hold ciphertext: they stage and upload, still
	 * without a cache. */
	cfg.s3.encrypt = true;
	cfg.s3.encryption_key = KEY1;
	assert_int_equal(sora_blob_store_open(&cfg, NULL, &s, &err), 0);
	assert_false(sora_blob_store_direct(s));
	assert_null(sora_blob_store_cache(s));
	assert_int_equal(sora_blob_stage_buf(s, ACCT, body, sizeof(body) - 1, &ref, &err), 0);
	assert_true(sora_blob_is_staged(s, ACCT, ref.hash));
	snprintf(want, sizeof(want), "%s", path);
	assert_int_not_equal(stat(want, &st), 0);
	assert_int_equal(sora_blob_upload_staged(s, ACCT, ref.hash, &err), 0);
	assert_int_equal(stat(want, &st), 0);
	assert_false(sora_blob_is_staged(s, ACCT, ref.hash));
	expect_body(s, ref.hash, (const unsigned char *)body, sizeof(body) - 1, 0,
		    SORA_BLOB_TO_END);
	sora_blob_store_free(&s);
}

/* Whether files in d take O_DIRECT (tmpfs before Linux 6.6 does not). */
static bool dir_takes_direct_io(const char *d)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/dio-probe", d);
	fd = open(path, O_CREAT | O_WRONLY | O_DIRECT, 0600);
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	return fd >= 0;
}

/* Pages of the file at path that are in the page cache. */
static size_t resident_pages(const char *path, size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), n = (size + page - 1) / page, count = 0;
	unsigned char *vec = malloc(n);
	int fd = open(path, O_RDONLY);
	void *map;

	assert_non_null(vec);
	assert_true(fd >= 0);
	map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	assert_int_equal(mincore(map, size, vec), 0);
	for (size_t i = 0; i < n; i++)
		count += vec[i] & 1;
	munmap(map, size);
	close(fd);
	free(vec);
	return count;
}

/* Writes data in pieces of 1..9000 bytes (seeded) and commits. */
static int write_in_pieces(struct sora_blob_store *s, const unsigned char *data, size_t len,
			   unsigned seed, struct sora_blob_ref *ref, struct sora_error *err)
{
	struct sora_blob_writer *w = NULL;

	if (sora_blob_writer_new(s, ACCT, 0, &w, err) < 0)
		return -1;
	for (size_t off = 0; off < len;) {
		size_t n = 1 + (size_t)rand_r(&seed) % 9000;

		if (n > len - off)
			n = len - off;
		if (sora_blob_writer_write(w, data + off, n, err) < 0) {
			sora_blob_writer_abort(&w);
			return -1;
		}
		off += n;
	}
	return sora_blob_writer_commit(&w, ref, err);
}

/* A direct store writes bodies of 64 KiB and more with O_DIRECT, all but
 * the last partial block, and smaller ones through the page cache (the
 * sizes straddle the block, the threshold and the 128 KiB buffer); either
 * way the file holds exactly the body, whatever the sizes of the writes.
 * Where O_DIRECT is refused, everything goes through the page cache. */
static void direct_io_bodies(const char *tag, bool refuse)
{
	static const size_t sizes[] = { 1, 4095, 4096, 4097, 65535, 65536, 65537, 69633,
					102616, 131071, 131072, 131073, 135169, 300001 };
	struct direct_dirs d;
	struct sora_blob_store *s = open_direct(tag, &d);
	struct sora_error err;
	bool dio;

	dio = !refuse && dir_takes_direct_io(d.blobs);
	if (!refuse && !dio)
		print_message("note: %s takes no O_DIRECT; page-cache checks skipped\n", d.blobs);
	refuse_direct = refuse;
	direct_requests = 0;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len = sizes[i];
		unsigned char *data = random_bytes(len);
		struct sora_blob_ref ref;
		char path[256];
		struct stat st;

		assert_non_null(data);
		if (write_in_pieces(s, data, len, (unsigned)i + 1, &ref, &err) < 0)
			fail_msg("%zu bytes: %s", len, err.msg);
		file_path(path, sizeof(path), tag, "blobs", ACCT, ref.hash);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_size, len);
		if (dio && len >= 65536)
			/* Only the last partial block went through the cache. */
			assert_in_range(resident_pages(path, len), 0, 1);
		else if (!dio)
			assert_int_equal(resident_pages(path, len), (len + 4095) / 4096);
		expect_body(s, ref.hash, data, len, 0, SORA_BLOB_TO_END);
		free(data);
	}
	/* A refusal is remembered: one attempt, then no more. */
	if (refuse)
		assert_int_equal(direct_requests, 1);
	else if (dio)
		assert_int_equal(direct_requests, 9);
	refuse_direct = false;
	sora_blob_store_free(&s);
}

static void test_direct_io_bodies(void **state)
{
	direct_io_bodies("dio", false);
	direct_io_bodies("nodio", true);
}

static int direct_io_restore(void **state)
{
	refuse_direct = false;
	return 0;
}

/* A body cut short by the file size limit (a short O_DIRECT write, then
 * EFBIG) fails with the error and leaves nothing in the store. */
static void test_direct_io_short_write(void **state)
{
	struct direct_dirs d;
	struct sora_blob_store *s = open_direct("dio-short", &d);
	struct sora_error err;
	struct sora_blob_ref ref;
	struct rlimit old, lim;
	unsigned char *data = random_bytes(200000);
	void (*old_handler)(int);
	int rc;

	assert_non_null(data);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 100000;
	old_handler = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	rc = write_in_pieces(s, data, 200000, 7, &ref, &err);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_handler);
	assert_int_equal(rc, -1);
	assert_non_null(strstr(err.msg, strerror(EFBIG)));
	assert_int_equal(count_files(d.blobs), 0);
	/* The store still writes whole bodies afterwards, with O_DIRECT. */
	direct_requests = 0;
	assert_int_equal(write_in_pieces(s, data, 200000, 8, &ref, &err), 0);
	assert_int_equal(direct_requests, 1);
	expect_body(s, ref.hash, data, 200000, 0, SORA_BLOB_TO_END);
	free(data);
	sora_blob_store_free(&s);
}

/* A store opened on a staging directory that another open store uses
 * leaves that store's temp files alone (clearing them would break its
 * writes in flight); once nobody uses the directory, the next opener
 * clears what a dead writer left. */
static void test_shared_staging_dir_cleanup(void **state)
{
	struct sora_blob_store_params p = { 0 };
	struct sora_blob_store *a = make_store("shared", NULL, NULL, false, 0, 0), *b = NULL;
	char blobs[128], staging[128], leftover[256];
	struct sora_error err;
	struct stat st;
	int fd;

	(void)state;
	snprintf(blobs, sizeof(blobs), "%s/shared/blobs2", dir);
	snprintf(staging, sizeof(staging), "%s/shared/staging", dir);
	snprintf(leftover, sizeof(leftover), "%s/tmp/in-flight", staging);
	fd = open(leftover, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	if (sora_blob_fs_create(blobs, &p.driver, &err) < 0)
		fail_msg("%s", err.msg);
	p.staging_path = staging;
	assert_int_equal(sora_blob_store_new(&p, &b, &err), 0);
	assert_int_equal(stat(leftover, &st), 0);
	sora_blob_store_free(&b);
	sora_blob_store_free(&a);
	if (sora_blob_fs_create(blobs, &p.driver, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(sora_blob_store_new(&p, &b, &err), 0);
	assert_int_not_equal(stat(leftover, &st), 0);
	sora_blob_store_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_staging),
		cmocka_unit_test(test_direct_fs_store),
		cmocka_unit_test_teardown(test_direct_fs_store_without_noreplace, renameat2_restore),
		cmocka_unit_test_teardown(test_damaged_copy_replaced, renameat2_restore),
		cmocka_unit_test_teardown(test_direct_io_bodies, direct_io_restore),
		cmocka_unit_test(test_direct_io_short_write),
		cmocka_unit_test(test_upload_plain_with_cache),
		cmocka_unit_test(test_upload_encrypted),
		cmocka_unit_test(test_damage_and_legacy),
		cmocka_unit_test(test_upload_links_staged_file),
		cmocka_unit_test(test_upload_across_file_systems),
		cmocka_unit_test(test_orphan_sweep),
		cmocka_unit_test(test_no_cache_streams_and_read_to_fd),
		cmocka_unit_test(test_open_from_config),
		cmocka_unit_test(test_shared_staging_dir_cleanup),
	};

	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
