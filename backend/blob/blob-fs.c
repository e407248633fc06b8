#include "backend/blob/blob-fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "backend/blob/blob-file.h"

struct fs_driver {
	struct sora_blob_driver head;
	char *root;
	char *tmpdir;
};

static int fs_path(struct fs_driver *fs, const char *op, const char *key,
		   char *dst, size_t size, struct sora_error *err)
{
	size_t tl = strlen(SORA_BLOB_FS_TMPDIR);

	if (strncmp(key, SORA_BLOB_FS_TMPDIR, tl) == 0 && (key[tl] == '/' || key[tl] == '\0')) {
		return sora_error_set(err, SORA_ERR_PERMANENT,
				      "fs %s %s: key uses the reserved name %s", op, key,
				      SORA_BLOB_FS_TMPDIR);
	}
	if (sora_blob_path_join(dst, size, fs->root, key) < 0) {
		return sora_error_set(err, SORA_ERR_PERMANENT, "fs %s %s: path too long", op, key);
	}
	return 0;
}

static int fs_put(struct sora_blob_driver *drv, const char *key,
		  struct sora_blob_source *src, struct sora_error *err)
{
	struct fs_driver *fs = (struct fs_driver *)drv;
	char path[PATH_MAX], tmp[PATH_MAX];
	int fd = -1, ret = -1;
	const char *what = NULL;

	if (fs_path(fs, "PUT", key, path, sizeof(path), err) < 0)
		return -1;
	fd = sora_blob_tmpfile(fs->tmpdir, tmp, sizeof(tmp));
	if (fd < 0)
		return sora_error_set(err, sora_error_class_errno(errno),
				      "fs PUT %s: temp file in %s: %s", key, fs->tmpdir,
				      strerror(errno));
	if (sora_blob_write_source(fd, src, err) < 0) {
		sora_error_prefix(err, "fs PUT");
		goto out;
	}
	if (sora_blob_commit_file(fd, tmp, path, &what) < 0) {
		sora_error_set(err, sora_error_class_errno(errno), "fs PUT %s: %s: %s", key, what,
			       strerror(errno));
		goto out;
	}
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	if (tmp[0] != '\0')
		unlink(tmp);
	return ret;
}

/* A second name for a finished file: a hard link made under a temporary
 * name in the store's temp directory and renamed over the key, so the key
 * appears atomically and an existing object is replaced, as put does. The
 * bytes were fsynced by whoever wrote the file; fsyncing it again makes
 * the new link count durable, and the directory fsync the new entry. */
static int fs_link_file(struct sora_blob_driver *drv, const char *key, const char *src,
			int fd, struct sora_error *err)
{
	struct fs_driver *fs = (struct fs_driver *)drv;
	char path[PATH_MAX], tmp[PATH_MAX];
	const char *what = "link";
	int tries = 0;

	if (fs_path(fs, "PUT", key, path, sizeof(path), err) < 0)
		return -1;
	for (;;) {
		char name[32];

		snprintf(name, sizeof(name), "link.%08x%08x", randombytes_random(),
			 randombytes_random());
		if (sora_blob_path_join(tmp, sizeof(tmp), fs->tmpdir, name) < 0)
			return sora_error_set(err, SORA_ERR_PERMANENT, "fs PUT %s: path too long",
					      key);
		if (link(src, tmp) == 0)
			break;
		if (errno == EEXIST && ++tries < 8)
			continue;
		if (errno == EXDEV || errno == EPERM || errno == EMLINK || errno == EOPNOTSUPP ||
		    errno == ENOSYS)
			return sora_error_set(err, SORA_ERR_UNSUPPORTED,
					      "fs PUT %s: cannot link %s: %s", key, src,
					      strerror(errno));
		tmp[0] = '\0';  /* not created: nothing to clean up */
		goto fail_errno;
	}
	if (sora_blob_commit_file(fd, tmp, path, &what) == 0)
		return 0;
fail_errno:
	sora_error_set(err, sora_error_class_errno(errno), "fs PUT %s: %s: %s", key, what,
		       strerror(errno));
	if (tmp[0] != '\0')
		unlink(tmp);
	return -1;
}

static int fs_open(struct fs_driver *fs, const char *op, const char *key,
		   uint64_t *size_r, struct sora_error *err)
{
	char path[PATH_MAX];
	struct stat st;
	int fd;

	if (fs_path(fs, op, key, path, sizeof(path), err) < 0)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT || e == ENOTDIR)
			return sora_error_set(err, SORA_ERR_NOT_FOUND, "fs %s %s: not found", op,
					      key);
		return sora_error_set(err, sora_error_class_errno(e), "fs %s %s: %s", op, key,
				      strerror(e));
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return sora_error_set(err, SORA_ERR_PERMANENT, "fs %s %s: not a regular file", op,
				      key);
	}
	*size_r = (uint64_t)st.st_size;
	return fd;
}

static int fs_get(struct sora_blob_driver *drv, const char *key, uint64_t offset,
		  uint64_t length, sora_blob_write_cb *cb, void *cb_ctx,
		  struct sora_error *err)
{
	uint64_t size;
	int fd, ret;

	fd = fs_open((struct fs_driver *)drv, "GET", key, &size, err);
	if (fd < 0)
		return fd;
	ret = sora_blob_send_range(fd, size, offset, length, cb, cb_ctx, err);
	if (ret < 0)
		sora_error_prefix(err, "fs GET");
	close(fd);
	return ret;
}

static int fs_head(struct sora_blob_driver *drv, const char *key, uint64_t *size_r,
		   struct sora_error *err)
{
	int fd = fs_open((struct fs_driver *)drv, "HEAD", key, size_r, err);

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

static int fs_del(struct sora_blob_driver *drv, const char *key, struct sora_error *err)
{
	struct fs_driver *fs = (struct fs_driver *)drv;
	char path[PATH_MAX];

	if (fs_path(fs, "DELETE", key, path, sizeof(path), err) < 0)
		return -1;
	/* A deletion is not fsynced: if it is lost in a crash the object only
	 * lingers until the next cleanup deletes it again. */
	if (unlink(path) < 0 && errno != ENOENT && errno != ENOTDIR)
		return sora_error_set(err, sora_error_class_errno(errno), "fs DELETE %s: %s", key,
				      strerror(errno));
	return 0;
}

static int fs_del_batch(struct sora_blob_driver *drv, const char *const *keys,
			size_t count, size_t *failed_r, struct sora_error *err)
{
	struct sora_error one;
	size_t failed = 0;

	for (size_t i = 0; i < count; i++) {
		if (fs_del(drv, keys[i], &one) == 0)
			continue;
		if (failed++ == 0 && err != NULL)
			*err = one;
	}
	*failed_r = failed;
	return failed == 0 ? 0 : -1;
}

static int fs_copy(struct sora_blob_driver *drv, const char *src_key,
		   const char *dst_key, struct sora_error *err)
{
	struct sora_blob_fd_source fsrc;
	struct sora_blob_source src;
	uint64_t size;
	int fd, ret;

	fd = fs_open((struct fs_driver *)drv, "COPY", src_key, &size, err);
	if (fd < 0)
		return fd;
	sora_blob_fd_source_init(&src, &fsrc, fd, 0, size);
	ret = fs_put(drv, dst_key, &src, err);
	close(fd);
	return ret;
}

static void fs_destroy(struct sora_blob_driver *drv)
{
	struct fs_driver *fs = (struct fs_driver *)drv;

	free(fs->root);
	free(fs->tmpdir);
	free(fs);
}

static const struct sora_blob_driver_ops fs_ops = {
	.name = "fs",
	.put = fs_put,
	.get = fs_get,
	.head = fs_head,
	.del = fs_del,
	.del_batch = fs_del_batch,
	.copy = fs_copy,
	.link_file = fs_link_file,
	.destroy = fs_destroy,
};

int sora_blob_fs_create(const char *root, struct sora_blob_driver **drv_r,
			struct sora_error *err)
{
	struct fs_driver *fs;
	char tmpdir[PATH_MAX];
	size_t len;

	*drv_r = NULL;
	if (root == NULL || root[0] == '\0')
		return sora_error_set(err, SORA_ERR_PERMANENT,
				      "fs blob store: no directory configured");
	len = strlen(root);
	while (len > 1 && root[len - 1] == '/')
		len--;
	fs = calloc(1, sizeof(*fs));
	if (fs == NULL || (fs->root = strndup(root, len)) == NULL) {
		free(fs);
		return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
	}
	fs->head.ops = &fs_ops;
	if (sora_blob_path_join(tmpdir, sizeof(tmpdir), fs->root, SORA_BLOB_FS_TMPDIR) < 0 ||
	    (fs->tmpdir = strdup(tmpdir)) == NULL) {
		sora_error_set(err, SORA_ERR_PERMANENT, "fs blob store %s: path too long", root);
		fs_destroy(&fs->head);
		return -1;
	}
	if (sora_blob_mkdirs(fs->tmpdir, 0750) < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "fs blob store: cannot create %s: %s",
			       fs->tmpdir, strerror(errno));
		fs_destroy(&fs->head);
		return -1;
	}
	/* Temp files are only ever in use by a running put(); at start-up any
	 * left over are from a crash. */
	sora_blob_clean_dir(fs->tmpdir);
	*drv_r = &fs->head;
	return 0;
}
