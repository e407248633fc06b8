/* RETR and TOP (RFC 1939 §5, §7).
 *
 * A resumable job (DESIGN.md §4), like IMAP FETCH: the stored body is read
 * in slices of at most 64 KiB, each slice is byte-stuffed and line-ending
 * normalised by the encoder of common/proto/pop3.h and written; whenever
 * the client's output is full the job returns SORA_JOB_MORE with its
 * offset and encoder state here, so no worker waits on a slow reader and
 * a session holds one slice's buffers plus the output high-water mark,
 * whatever the size of the message. On a store that is not local (S3, or
 * encrypted) a message larger than four slices is first read once into an
 * unnamed temporary file in the staging directory and sent from there,
 * rather than fetched (and decrypted from its start) once per slice.
 *
 * Memory (session_memory_limit): a RETR or TOP holds a read slice and an
 * encoder buffer of twice the slice (stuffing and CRLF can double a
 * slice): 3 x min(size, 64 KiB). That is reserved before anything is sent;
 * when it would pass the limit the answer is "-ERR [SYS/TEMP]" and the
 * session goes on.
 *
 * Errors before the "+OK" line are -ERR replies and the session goes on;
 * once part of the message is out the stream cannot be repaired, so the
 * session ends (as IMAP FETCH ends with BYE). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/blob/blob-store.h"
#include "backend/pop3/pop3-private.h"
#include "common/config/config.h"

#define RETR_SLICE (64 * 1024)

struct retr_cmd {
	struct pop3_cmd base;
	size_t index;
	bool top;
	uint32_t lines;
	bool started, eof;
	uint64_t slice;              /* bytes read per step */
	uint64_t off;                /* next offset in the stored body */
	uint64_t reserved;           /* bytes counted against the session limit */
	struct sora_pop3_dot dot;
	char hash[65];
	char *enc;                   /* encoder output: 2 * slice */
	size_t enc_len;
	uint64_t got;                /* bytes read in this step */
	int fd;                      /* the body spooled locally, or -1 */
};

static void retr_free(struct pop3_cmd *cmd)
{
	struct retr_cmd *r = (struct retr_cmd *)cmd;

	if (r->fd >= 0)
		close(r->fd);
	free(r->enc);
	pop3_memory_release(cmd->s, r->reserved);
	free(r);
}

static int encode_cb(void *ctx, const void *data, size_t len)
{
	struct retr_cmd *r = ctx;
	size_t used;

	r->got += len;
	if (!sora_pop3_dot_done(&r->dot))
		r->enc_len += sora_pop3_dot_encode(&r->dot, data, len, r->enc + r->enc_len, &used);
	return 0;
}

/* Reads and encodes the next slice into r->enc. 0 or -1 (r->base.err). */
static int step(struct retr_cmd *r)
{
	struct pop3_session *s = r->base.s;

	r->enc_len = 0;
	r->got = 0;
	if (r->fd >= 0) {
		char *buf = malloc(r->slice);
		ssize_t n;

		if (buf == NULL)
			return sora_error_set(&r->base.err, SORA_ERR_TEMPORARY, "out of memory");
		n = pread(r->fd, buf, (size_t)r->slice, (off_t)r->off);
		if (n < 0) {
			free(buf);
			return sora_error_set(&r->base.err, SORA_ERR_TEMPORARY, "reading the spool: %s",
					      strerror(errno));
		}
		encode_cb(r, buf, (size_t)n);
		free(buf);
	} else if (sora_blob_read(sora_backend()->blobs, s->account_id, r->hash, r->off, r->slice,
				  encode_cb, r, &r->base.err) < 0) {
		return -1;
	}
	r->off += r->got;
	if (r->got < r->slice || sora_pop3_dot_done(&r->dot))
		r->eof = true;
	return 0;
}

/* See imap-fetch.c: a body that is not on local disk is read once. */
static int spool(struct retr_cmd *r)
{
	const struct sora_backend *be = sora_backend();
	const char *dir = be->cfg->uploader.path != NULL ? be->cfg->uploader.path : "var/staging";
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0) {
		char tmpl[PATH_MAX];

		snprintf(tmpl, sizeof(tmpl), "%s/.retr-XXXXXX", dir);
		fd = mkostemp(tmpl, O_CLOEXEC);
		if (fd < 0)
			return sora_error_set(&r->base.err, SORA_ERR_TEMPORARY, "RETR spool in %s: %s",
					      dir, strerror(errno));
		unlink(tmpl);
	}
	if (sora_blob_read_to_fd(be->blobs, r->base.s->account_id, r->hash, 0, SORA_BLOB_TO_END, fd,
				 &r->base.err) < 0) {
		close(fd);
		return -1;
	}
	r->fd = fd;
	return 0;
}

/* Everything before the first slice goes out: 0 to go on streaming, -1
 * when the command is over (answered). */
static int start(struct retr_cmd *r, struct sora_job *job)
{
	struct pop3_session *s = r->base.s;
	const struct pop3_msg *m = &s->msgs[r->index];
	const char *hash;

	r->slice = m->size < RETR_SLICE ? m->size + 1 : RETR_SLICE;
	if (pop3_memory_reserve(s, 3 * r->slice, r->top ? "top" : "retr") < 0) {
		sora_job_printf(job, "-ERR [SYS/TEMP] %s would exceed the session memory limit "
				"(session_memory_limit).\r\n", r->base.name);
		return -1;
	}
	r->reserved = 3 * r->slice;
	r->enc = malloc(2 * r->slice + 8);
	hash = pop3_maildrop_hash(&r->base, r->index);
	if (r->enc == NULL || hash == NULL) {
		if (r->enc == NULL)
			sora_error_set(&r->base.err, SORA_ERR_TEMPORARY, "out of memory");
		if (r->base.err.cls == SORA_ERR_NOT_FOUND)
			sora_job_printf(job, "-ERR [SYS/PERM] Message %zu was removed.\r\n", r->index + 1);
		else
			pop3_job_error(job, &r->base, &r->base.err);
		return -1;
	}
	sora_strlcpy(r->hash, hash, sizeof(r->hash));
	/* The listing's connection is not needed while streaming. */
	sora_db_release(&r->base.db);
	if (m->size > 4 * RETR_SLICE && !sora_blob_store_direct(sora_backend()->blobs) &&
	    spool(r) < 0) {
		pop3_job_error(job, &r->base, &r->base.err);
		return -1;
	}
	if (step(r) < 0) {
		if (r->base.err.cls == SORA_ERR_NOT_FOUND)
			sora_job_printf(job, "-ERR [SYS/PERM] Message %zu was removed.\r\n", r->index + 1);
		else
			pop3_job_error(job, &r->base, &r->base.err);
		return -1;
	}
	r->started = true;
	if (r->top)
		sora_job_printf(job, "+OK\r\n");
	else
		sora_job_printf(job, "+OK %" PRIu64 " octets\r\n", m->size);
	if (r->enc_len > 0 && sora_job_write(job, r->enc, r->enc_len) < 0)
		return -1;
	return 0;
}

static enum sora_job_status retr_run(struct pop3_cmd *cmd, struct sora_job *job)
{
	struct retr_cmd *r = (struct retr_cmd *)cmd;
	char tail[8];

	if (!r->started && start(r, job) < 0)
		return SORA_JOB_DONE;
	while (!r->eof) {
		if (sora_job_output_full(job))
			return SORA_JOB_MORE;
		if (step(r) < 0) {
			if (!sora_job_cancelled(job))
				sora_warn(sora_conn_log_ctx(cmd->s->c), "%s: reading message %zu failed: %s",
					  cmd->name, r->index + 1, cmd->err.msg);
			/* Part of the message is out: end the session. */
			cmd->s->quitting = true;
			return SORA_JOB_DONE;
		}
		if (r->enc_len > 0 && sora_job_write(job, r->enc, r->enc_len) < 0)
			return SORA_JOB_DONE;
	}
	sora_job_write(job, tail, sora_pop3_dot_finish(&r->dot, tail, true));
	if (!r->top)
		cmd->s->msgs[r->index].retrieved = true;
	return SORA_JOB_DONE;
}

static void submit(struct pop3_session *s, size_t index, bool top, uint32_t lines)
{
	struct retr_cmd *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		sora_conn_printf(s->c, "-ERR [SYS/TEMP] Out of memory.\r\n");
		return;
	}
	r->index = index;
	r->top = top;
	r->lines = lines;
	r->fd = -1;
	sora_pop3_dot_init(&r->dot, top, lines);
	r->base.free = retr_free;
	pop3_cmd_submit(s, &r->base, top ? "TOP" : "RETR", retr_run);
}

void pop3_cmd_retr(struct pop3_session *s, const struct sora_pop3_command *cmd)
{
	long i;

	if (cmd->args_count != 1) {
		sora_pop3_front_err(s->c, "RETR takes a message number.");
		return;
	}
	if ((i = pop3_msg_arg(s, cmd->args[0])) < 0)
		return;
	submit(s, (size_t)i, false, 0);
}

void pop3_cmd_top(struct pop3_session *s, const struct sora_pop3_command *cmd)
{
	uint32_t lines;
	long i;

	if (cmd->args_count != 2) {
		sora_pop3_front_err(s->c, "TOP takes a message number and a line count.");
		return;
	}
	if ((i = pop3_msg_arg(s, cmd->args[0])) < 0)
		return;
	if (sora_pop3_parse_number(cmd->args[1], &lines) < 0) {
		sora_pop3_front_err(s->c, "Invalid line count.");
		return;
	}
	submit(s, (size_t)i, true, lines);
}
