/* LMTP DATA spool: see lmtp-spool.h. */
#include "backend/lmtp/lmtp-spool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void sora_lmtp_spool_init(struct sora_lmtp_spool *sp, const char *dir)
{
	memset(sp, 0, sizeof(*sp));
	sora_buf_init(&sp->mem, SORA_LMTP_SPOOL_MEM);
	sp->fd = -1;
	sp->dir = dir;
}

static int spool_open(struct sora_lmtp_spool *sp)
{
	char path[PATH_MAX];
	int fd;

	fd = open(sp->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
		return -1;
	/* No O_TMPFILE on this file system: a named file, unlinked at once. */
	if ((size_t)snprintf(path, sizeof(path), "%s/lmtp-XXXXXX", sp->dir) >= sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -1;
	unlink(path);
	return fd;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Moves the buffered bytes into the file, creating it first if needed. */
static int spool_flush(struct sora_lmtp_spool *sp)
{
	if (sp->fd < 0) {
		sp->fd = spool_open(sp);
		if (sp->fd < 0)
			return -1;
	}
	if (sp->mem.len > 0 && write_all(sp->fd, sp->mem.data, sp->mem.len) < 0)
		return -1;
	sp->mem.len = 0;
	return 0;
}

int sora_lmtp_spool_write(void *arg, const char *data, size_t len)
{
	struct sora_lmtp_spool *sp = arg;

	if (sp->error != 0)
		return -1;
	while (len > 0) {
		size_t room = SORA_LMTP_SPOOL_MEM - sp->mem.len;
		size_t n = len < room ? len : room;

		if (n == 0) {
			if (spool_flush(sp) < 0) {
				sp->error = errno != 0 ? errno : EIO;
				return -1;
			}
			continue;
		}
		if (sora_buf_append(&sp->mem, data, n) < 0) {
			sp->error = ENOMEM;
			return -1;
		}
		data += n;
		len -= n;
		sp->size += n;
	}
	return 0;
}

int sora_lmtp_spool_finish(struct sora_lmtp_spool *sp)
{
	if (sp->error != 0)
		return -1;
	if (sp->fd >= 0 && sp->mem.len > 0 && spool_flush(sp) < 0) {
		sp->error = errno != 0 ? errno : EIO;
		return -1;
	}
	return 0;
}

void sora_lmtp_spool_body(const struct sora_lmtp_spool *sp, struct sora_store_body *body_r)
{
	body_r->size = sp->size;
	body_r->base = 0;
	body_r->fd = sp->fd;
	body_r->mem = sp->fd < 0 ? (sp->mem.data != NULL ? sp->mem.data : "") : NULL;
}

void sora_lmtp_spool_reset(struct sora_lmtp_spool *sp)
{
	if (sp->fd >= 0)
		close(sp->fd);
	sp->fd = -1;
	sora_buf_reset(&sp->mem);
	sp->size = 0;
	sp->error = 0;
}
