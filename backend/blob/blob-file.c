#include "backend/blob/blob-file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IO_CHUNK (64 * 1024)

int sora_blob_path_join(char *dst, size_t size, const char *dir, const char *name)
{
	int n = snprintf(dst, size, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= size) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

int sora_blob_mkdirs(const char *dir, mode_t mode)
{
	char path[4096];
	size_t len = strnlen(dir, sizeof(path));

	if (len == 0 || len >= sizeof(path)) {
		errno = len == 0 ? ENOENT : ENAMETOOLONG;
		return -1;
	}
	memcpy(path, dir, len + 1);
	/* Fast path: most calls find the directory already there. */
	if (mkdir(path, mode) == 0 || errno == EEXIST)
		return 0;
	if (errno != ENOENT)
		return -1;
	for (size_t i = 1; i <= len; i++) {
		if (i < len && path[i] != '/')
			continue;
		char saved = path[i];
		path[i] = '\0';
		if (mkdir(path, mode) < 0 && errno != EEXIST)
			return -1;
		path[i] = saved;
	}
	return 0;
}

static int parent_of(const char *path, char *dst, size_t size);

/* Deepest first: a body's directory usually lacks only its last one or two
 * levels, and mkdir on a directory that exists locks its parent. */
int sora_blob_mkdirs_durable(const char *dir, mode_t mode)
{
	char parent[4096];
	struct stat st;

	if (stat(dir, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return 0;
		errno = ENOTDIR;
		return -1;
	}
	if (errno != ENOENT)
		return -1;
	if (mkdir(dir, mode) < 0) {
		/* Made meanwhile: its maker may not have synced it yet. */
		if (errno == EEXIST)
			return sora_blob_fsync_parent(dir);
		if (errno != ENOENT)
			return -1;
		/* A missing parent: made first, then this one. */
		if (parent_of(dir, parent, sizeof(parent)) < 0)
			return -1;
		if (strcmp(parent, dir) == 0) {
			errno = ENOENT;
			return -1;
		}
		if (sora_blob_mkdirs_durable(parent, mode) < 0)
			return -1;
		if (mkdir(dir, mode) < 0 && errno != EEXIST)
			return -1;
	}
	return sora_blob_fsync_parent(dir);
}

int sora_blob_fsync_dir(const char *dir)
{
	int fd, ret, saved;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ret = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return ret;
}

static int parent_of(const char *path, char *dst, size_t size)
{
	const char *slash = strrchr(path, '/');
	size_t len;

	if (slash == NULL) {
		if (size < 2)
			return -1;
		memcpy(dst, ".", 2);
		return 0;
	}
	len = slash == path ? 1 : (size_t)(slash - path);
	if (len >= size) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(dst, path, len);
	dst[len] = '\0';
	return 0;
}

int sora_blob_fsync_parent(const char *path)
{
	char dir[4096];

	if (parent_of(path, dir, sizeof(dir)) < 0)
		return -1;
	return sora_blob_fsync_dir(dir);
}

int sora_blob_mkdirs_parent(const char *path, mode_t mode)
{
	char dir[4096];

	if (parent_of(path, dir, sizeof(dir)) < 0)
		return -1;
	return sora_blob_mkdirs(dir, mode);
}

int sora_blob_mkdirs_parent_durable(const char *path, mode_t mode)
{
	char dir[4096];

	if (parent_of(path, dir, sizeof(dir)) < 0)
		return -1;
	return sora_blob_mkdirs_durable(dir, mode);
}

int sora_blob_tmpfile(const char *dir, char *path_r, size_t size)
{
	if (sora_blob_path_join(path_r, size, dir, "tmp.XXXXXX") < 0)
		return -1;
	return mkostemp(path_r, O_CLOEXEC);
}

int sora_blob_clean_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int removed = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		struct stat st;

		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (!S_ISREG(st.st_mode))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}

int sora_blob_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int sora_blob_commit_file(int fd, char *tmp, const char *path, const char **what_r)
{
	*what_r = "fsync";
	if (fsync(fd) < 0)
		return -1;
	*what_r = "mkdir";
	if (sora_blob_mkdirs_parent_durable(path, 0750) < 0)
		return -1;
	*what_r = "rename";
	if (rename(tmp, path) < 0)
		return -1;
	tmp[0] = '\0';
	*what_r = "fsync directory";
	return sora_blob_fsync_parent(path);
}

static int write_chunk(void *ctx, const void *data, size_t len, struct sora_error *err)
{
	if (sora_blob_write_all(*(const int *)ctx, data, len) < 0)
		return sora_error_set(err, sora_error_class_errno(errno), "write: %s",
				      strerror(errno));
	return 0;
}

int sora_blob_write_source(int fd, struct sora_blob_source *src, struct sora_error *err)
{
	return sora_blob_source_drain(src, write_chunk, &fd, err);
}

int sora_blob_send_range(int fd, uint64_t file_size, uint64_t offset, uint64_t length,
			 sora_blob_write_cb *cb, void *cb_ctx, struct sora_error *err)
{
	uint64_t end;
	char *buf;
	int ret = 0;

	if (offset >= file_size)
		return 0;
	end = (length == SORA_BLOB_TO_END || length > file_size - offset) ? file_size
									    : offset + length;
	buf = malloc(IO_CHUNK);
	if (buf == NULL)
		return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
	while (offset < end) {
		size_t want = end - offset > IO_CHUNK ? IO_CHUNK : (size_t)(end - offset);
		ssize_t n = pread(fd, buf, want, (off_t)offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = sora_error_set(err, sora_error_class_errno(errno), "read: %s",
					     strerror(errno));
			break;
		}
		if (n == 0) {
			ret = sora_error_set(err, SORA_ERR_PERMANENT,
					     "read: file shorter than expected");
			break;
		}
		if (cb(cb_ctx, buf, (size_t)n) < 0) {
			ret = sora_error_set(err, SORA_ERR_ABORTED,
					     "reading stopped by the receiver");
			break;
		}
		offset += (uint64_t)n;
	}
	free(buf);
	return ret;
}
