#include "backend/blob/blob-driver.h"

#include "backend/blob/blob-file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY_MAX_LEN 1024
#define IO_CHUNK (64 * 1024)

int sora_blob_key_check(const char *key, struct sora_error *err)
{
	size_t len, seg_start = 0;

	if (key == NULL) {
		sora_error_set(err, SORA_ERR_PERMANENT, "invalid object key: missing");
		return -1;
	}
	len = strnlen(key, KEY_MAX_LEN + 1);
	if (len == 0 || len > KEY_MAX_LEN) {
		sora_error_set(err, SORA_ERR_PERMANENT, "invalid object key: length must be 1..%d",
			       KEY_MAX_LEN);
		return -1;
	}
	for (size_t i = 0; i <= len; i++) {
		if (i < len && key[i] != '/')
			continue;
		size_t seg_len = i - seg_start;
		const char *seg = key + seg_start;
		if (seg_len == 0 || (seg_len == 1 && seg[0] == '.') ||
		    (seg_len == 2 && seg[0] == '.' && seg[1] == '.')) {
			sora_error_set(err, SORA_ERR_PERMANENT,
				       "invalid object key: empty, \".\" or \"..\" path segment");
			return -1;
		}
		seg_start = i + 1;
	}
	return 0;
}

static int check_key(struct sora_blob_driver *drv, const char *key,
		     struct sora_error *err)
{
	if (drv == NULL) {
		sora_error_set(err, SORA_ERR_PERMANENT, "no blob driver");
		return -1;
	}
	return sora_blob_key_check(key, err);
}

int sora_blob_driver_put(struct sora_blob_driver *drv, const char *key,
			 struct sora_blob_source *src, struct sora_error *err)
{
	if (check_key(drv, key, err) < 0)
		return -1;
	if (src == NULL || src->read == NULL || src->rewind == NULL) {
		sora_error_set(err, SORA_ERR_PERMANENT, "invalid body source");
		return -1;
	}
	return drv->ops->put(drv, key, src, err);
}

int sora_blob_driver_get(struct sora_blob_driver *drv, const char *key,
			 uint64_t offset, uint64_t length, sora_blob_write_cb *cb,
			 void *cb_ctx, struct sora_error *err)
{
	if (check_key(drv, key, err) < 0)
		return -1;
	if (cb == NULL) {
		sora_error_set(err, SORA_ERR_PERMANENT, "no sink for the body");
		return -1;
	}
	return drv->ops->get(drv, key, offset, length, cb, cb_ctx, err);
}

int sora_blob_driver_head(struct sora_blob_driver *drv, const char *key,
			  uint64_t *size_r, struct sora_error *err)
{
	uint64_t dummy;

	if (check_key(drv, key, err) < 0)
		return -1;
	return drv->ops->head(drv, key, size_r != NULL ? size_r : &dummy, err);
}

int sora_blob_driver_delete(struct sora_blob_driver *drv, const char *key,
			    struct sora_error *err)
{
	if (check_key(drv, key, err) < 0)
		return -1;
	return drv->ops->del(drv, key, err);
}

int sora_blob_driver_delete_batch(struct sora_blob_driver *drv,
				  const char *const *keys, size_t count,
				  size_t *failed_r, struct sora_error *err)
{
	size_t dummy;

	if (failed_r == NULL)
		failed_r = &dummy;
	*failed_r = 0;
	if (drv == NULL) {
		sora_error_set(err, SORA_ERR_PERMANENT, "no blob driver");
		return -1;
	}
	if (count == 0)
		return 0;
	for (size_t i = 0; i < count; i++) {
		if (sora_blob_key_check(keys[i], err) < 0)
			return -1;
	}
	return drv->ops->del_batch(drv, keys, count, failed_r, err);
}

int sora_blob_driver_copy(struct sora_blob_driver *drv, const char *src_key,
			  const char *dst_key, struct sora_error *err)
{
	if (check_key(drv, src_key, err) < 0 || check_key(drv, dst_key, err) < 0)
		return -1;
	return drv->ops->copy(drv, src_key, dst_key, err);
}

int sora_blob_driver_link_file(struct sora_blob_driver *drv, const char *key,
			       const char *path, int fd, struct sora_error *err)
{
	if (check_key(drv, key, err) < 0)
		return -1;
	if (drv->ops->link_file == NULL)
		return sora_error_set(err, SORA_ERR_UNSUPPORTED, "%s store: no link_file",
				      drv->ops->name);
	return drv->ops->link_file(drv, key, path, fd, err);
}

void sora_blob_driver_free(struct sora_blob_driver **drv)
{
	if (drv == NULL || *drv == NULL)
		return;
	(*drv)->ops->destroy(*drv);
	*drv = NULL;
}

int sora_blob_source_drain(struct sora_blob_source *src, sora_blob_chunk_cb *cb, void *ctx,
			   struct sora_error *err)
{
	char *buf = malloc(IO_CHUNK);
	uint64_t total = 0;
	int ret = -1;

	if (buf == NULL)
		return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
	if (src->rewind(src->ctx, err) < 0)
		goto out;
	for (;;) {
		ssize_t n = src->read(src->ctx, buf, IO_CHUNK, err);

		if (n < 0)
			goto out;
		if (n == 0)
			break;
		if (cb != NULL && cb(ctx, buf, (size_t)n, err) < 0)
			goto out;
		total += (uint64_t)n;
	}
	if (total != src->length) {
		sora_error_set(err, SORA_ERR_PERMANENT, "body has %llu bytes, expected %llu",
			       (unsigned long long)total, (unsigned long long)src->length);
		goto out;
	}
	ret = 0;
out:
	free(buf);
	return ret;
}

static ssize_t mem_read(void *ctx, void *buf, size_t len, struct sora_error *err)
{
	struct sora_blob_mem_source *ms = ctx;
	size_t n = ms->len - ms->pos;

	if (n > len)
		n = len;
	if (n > 0)
		memcpy(buf, ms->data + ms->pos, n);
	ms->pos += n;
	return (ssize_t)n;
}

static int mem_rewind(void *ctx, struct sora_error *err)
{
	struct sora_blob_mem_source *ms = ctx;

	ms->pos = 0;
	return 0;
}

void sora_blob_mem_source_init(struct sora_blob_source *src,
			       struct sora_blob_mem_source *ms,
			       const void *data, size_t len)
{
	ms->data = data;
	ms->len = len;
	ms->pos = 0;
	src->length = len;
	src->read = mem_read;
	src->rewind = mem_rewind;
	src->ctx = ms;
}

static ssize_t fd_read(void *ctx, void *buf, size_t len, struct sora_error *err)
{
	struct sora_blob_fd_source *fs = ctx;
	uint64_t left = fs->length - fs->pos;
	ssize_t n;

	if (left == 0)
		return 0;
	if (len > left)
		len = (size_t)left;
	do {
		n = pread(fs->fd, buf, len, (off_t)(fs->offset + fs->pos));
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return sora_error_set(err, sora_error_class_errno(errno), "read: %s",
				      strerror(errno));
	if (n == 0) {
		/* The file became shorter than the length announced to the
		 * server: sending less would hang or corrupt the upload. */
		sora_error_set(err, SORA_ERR_PERMANENT,
			       "read: file shorter than expected (%llu of %llu bytes)",
			       (unsigned long long)fs->pos, (unsigned long long)fs->length);
		return -1;
	}
	fs->pos += (uint64_t)n;
	return n;
}

static int fd_rewind(void *ctx, struct sora_error *err)
{
	struct sora_blob_fd_source *fs = ctx;

	fs->pos = 0;
	return 0;
}

void sora_blob_fd_source_init(struct sora_blob_source *src,
			      struct sora_blob_fd_source *fs, int fd,
			      uint64_t offset, uint64_t length)
{
	fs->fd = fd;
	fs->offset = offset;
	fs->pos = 0;
	fs->length = length;
	src->length = length;
	src->read = fd_read;
	src->rewind = fd_rewind;
	src->ctx = fs;
}

int sora_blob_fd_sink(void *ctx, const void *data, size_t len)
{
	return sora_blob_write_all(*(const int *)ctx, data, len);
}
