/* Helpers shared by the blob store's unit tests (header-only: every test
 * is its own program). Also used by tests/unit/backend/store/
 * test-append-live.c for its fs blob stores. Include it after <cmocka.h>. */
#ifndef SORA_TEST_BLOB_TEST_H
#define SORA_TEST_BLOB_TEST_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "backend/blob/blob-fs.h"
#include "backend/blob/blob-store.h"
#include "common/core/error.h"

/* What a call of the blob API came to: SORA_ERR_OK when it returned 0, the
 * class left in err when it returned -1, and -2 for any other value (no
 * function may return one), so one assertion checks both. */
static inline int outcome(int ret, const struct sora_error *err)
{
	if (ret == 0)
		return SORA_ERR_OK;
	return ret == -1 ? (int)err->cls : -2;
}
#define CLS(call) outcome((call), &err)

/* A sink collecting everything in memory. */
struct membuf {
	unsigned char *p;
	size_t len, cap;
	int fail_after;   /* > 0: the n-th call returns -1 */
	int calls;
};

static inline int membuf_sink(void *ctx, const void *data, size_t len)
{
	struct membuf *m = ctx;

	m->calls++;
	if (m->fail_after > 0 && m->calls >= m->fail_after)
		return -1;
	if (m->len + len > m->cap) {
		size_t ncap = m->cap == 0 ? 4096 : m->cap;
		while (ncap < m->len + len)
			ncap *= 2;
		unsigned char *np = realloc(m->p, ncap);
		if (np == NULL)
			return -1;
		m->p = np;
		m->cap = ncap;
	}
	if (len > 0)
		memcpy(m->p + m->len, data, len);
	m->len += len;
	return 0;
}

static inline void membuf_reset(struct membuf *m)
{
	free(m->p);
	memset(m, 0, sizeof(*m));
}

static inline unsigned char *random_bytes(size_t len)
{
	unsigned char *p = malloc(len > 0 ? len : 1);

	if (p != NULL)
		randombytes_buf(p, len);
	return p;
}

static inline int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static inline void rm_rf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Makes a fresh directory under /tmp; path must hold 64 bytes. */
static inline int make_tempdir(char *path, const char *tag)
{
	snprintf(path, 64, "/tmp/sora-blob-%s-XXXXXX", tag);
	return mkdtemp(path) != NULL ? 0 : -1;
}

/* A store on an fs driver at root/tag/blobs, staging in root/tag/staging;
 * direct: the store writes straight into the blob directory. */
static inline struct sora_blob_store *make_fs_store(const char *root, const char *tag,
						    bool direct)
{
	struct sora_blob_store_params p = { 0 };
	struct sora_blob_store *s = NULL;
	char blobs[128], staging[128];
	struct sora_error err;

	snprintf(blobs, sizeof(blobs), "%s/%s/blobs", root, tag);
	snprintf(staging, sizeof(staging), "%s/%s/staging", root, tag);
	assert_int_equal(sora_blob_fs_create(blobs, &p.driver, &err), 0);
	p.staging_path = staging;
	p.direct_root = direct ? blobs : NULL;
	if (sora_blob_store_new(&p, &s, &err) != 0)
		fail_msg("store: %s", err.msg);
	return s;
}

/* Counts regular files below dir (recursively). */
static int count_files_n;
static inline int count_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path; (void)st; (void)ftw;
	if (flag == FTW_F)
		count_files_n++;
	return 0;
}
static inline int count_files(const char *dir)
{
	count_files_n = 0;
	nftw(dir, count_one, 16, FTW_PHYS);
	return count_files_n;
}

#endif
