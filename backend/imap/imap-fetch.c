/* FETCH and UID FETCH (RFC 3501 §6.4.5, RFC 9051, RFC 3516 BINARY,
 * RFC 7162 CHANGEDSINCE / VANISHED).
 *
 * A resumable job (DESIGN.md §4). Messages are read from the database in
 * batches; each message's response is planned as a list of pieces --
 * bytes built in memory (flags, envelope, body structure, header fields,
 * decoded BINARY sections) and byte ranges of the stored body that are
 * streamed from the blob store in slices. Whenever the client's output is
 * full the job returns SORA_JOB_MORE with its position (batch, message,
 * piece, offset) in this struct: no worker waits on a slow reader, and a
 * session holds at most one message's in-memory pieces plus the output
 * high-water mark, whatever the size of the FETCH.
 *
 * What comes from where: FLAGS, MODSEQ, INTERNALDATE, RFC822.SIZE, UID from
 * the row; ENVELOPE from the stored envelope; BODY / BODYSTRUCTURE from the
 * stored MIME structure; BODY[HEADER] and header fields of the message from
 * the stored header block when it is there; everything else is a range of
 * the stored body located with the structure, so no body is parsed again.
 *
 * Memory: in-memory pieces of one message (BINARY decoding, header
 * fields) are reserved in the session's account (session_memory_limit,
 * default 100 MB, backend/session/session-memory.h) before they are read
 * or decoded; a message that would need more gets "NO [LIMIT]" and the
 * session goes on. Streamed ranges of the body are not held: they cost
 * one 64 KiB slice. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "common/config/config.h"
#include "backend/blob/blob-store.h"
#include "backend/imap/imap-private.h"
#include "backend/store/msg-meta.h"
#include "common/proto/imap-fetch.h"
#include "common/proto/imap-search.h"
#include "common/proto/imap-types.h"
#include "common/proto/mime/mime-imap.h"
#include "common/proto/mime/mime-json.h"

/* Rows per database round trip: metadata rows are small (the stored
 * ENVELOPE and BODYSTRUCTURE, a few KB); raw header blocks may be up to
 * SORA_STORE_RAW_HEADERS_MAX each; bodies are read per message. */
#define FETCH_BATCH 250
#define FETCH_BATCH_HEADERS 100
#define FETCH_BATCH_BODIES 20
#define FETCH_SLICE (64 * 1024)
/* A header block read from the blob for HEADER.FIELDS is kept in memory:
 * larger ones are refused (the stored structure caps kept headers too). */
#define FETCH_HEADER_MAX (1024 * 1024)

enum piece_kind { PIECE_BUF, PIECE_BLOB };

struct piece {
	enum piece_kind kind;
	struct sora_buf buf;      /* PIECE_BUF */
	uint64_t offset, length;  /* PIECE_BLOB: range of the stored body; buf holds
				   * its first slice once probed (probe_message) */
	int fd;                   /* PIECE_BLOB: the range spooled locally, or -1 */
};

struct fetch_cmd {
	struct imap_cmd base;
	struct sora_imap_fetch_spec spec;
	unsigned int want;
	uint32_t *uids;
	size_t count;
	size_t next;                 /* next uid index to load */
	struct sora_msgs_rows rows;
	size_t row;                  /* next row to plan */
	char hash[65];               /* body of the message being sent */
	struct piece *pieces;
	size_t piece_count, piece_cap, piece;
	uint64_t piece_off;
	uint64_t memory;             /* bytes reserved for the pieces */
	bool slice_reserved;         /* a streaming slice is part of memory */
	bool *seen_set;              /* per row of the batch: \Seen set by this FETCH */
	bool started;                /* VANISHED sent */
	char *vanished_set;          /* UID FETCH ... (VANISHED): the set as sent */
	bool failed;
	size_t unreadable;           /* messages skipped: the store could not give the body */
	struct sora_error err;
};

static void pieces_clear(struct fetch_cmd *f)
{
	for (size_t i = 0; i < f->piece_count; i++) {
		sora_buf_free(&f->pieces[i].buf);
		if (f->pieces[i].fd >= 0)
			close(f->pieces[i].fd);
	}
	f->piece_count = f->piece = 0;
	f->piece_off = 0;
	sora_session_memory_release(&f->base.s->memory, f->memory);
	f->memory = 0;
	f->slice_reserved = false;
}

static void fetch_free(struct imap_cmd *cmd)
{
	struct fetch_cmd *f = (struct fetch_cmd *)cmd;

	pieces_clear(f);
	free(f->pieces);
	sora_msgs_rows_free(&f->rows);
	free(f->seen_set);
	sora_imap_fetch_spec_free(&f->spec);
	free(f->uids);
	free(f->vanished_set);
	free(f);
}

static struct piece *piece_add(struct fetch_cmd *f, enum piece_kind kind)
{
	struct piece *p;

	if (f->piece_count == f->piece_cap) {
		size_t ncap = f->piece_cap ? f->piece_cap * 2 : 8;
		struct piece *np = realloc(f->pieces, ncap * sizeof(*np));

		if (np == NULL)
			return NULL;
		f->pieces = np;
		f->piece_cap = ncap;
	}
	p = &f->pieces[f->piece_count++];
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->fd = -1;
	return p;
}

/* The buffer to append text to: the last piece when it is a buffer. */
static struct sora_buf *text(struct fetch_cmd *f)
{
	struct piece *p;

	if (f->piece_count > 0 && f->pieces[f->piece_count - 1].kind == PIECE_BUF)
		return &f->pieces[f->piece_count - 1].buf;
	p = piece_add(f, PIECE_BUF);
	return p != NULL ? &p->buf : NULL;
}

/* Reserves more bytes in the session's memory account for the pieces of
 * the message being planned (released by pieces_clear()). True when that
 * would pass session_memory_limit: nothing was reserved. */
static bool over_limit(struct fetch_cmd *f, uint64_t more)
{
	if (sora_session_memory_reserve(&f->base.s->memory, more, "fetch") < 0)
		return true;
	f->memory += more;
	return false;
}

static int blob_range(struct fetch_cmd *f, uint64_t offset, uint64_t length)
{
	struct piece *p;

	/* Streaming holds one slice of the body at a time, whatever its
	 * size: counted once per message. */
	if (!f->slice_reserved) {
		if (over_limit(f, FETCH_SLICE))
			return -3;
		f->slice_reserved = true;
	}
	p = piece_add(f, PIECE_BLOB);
	if (p == NULL)
		return -1;
	p->offset = offset;
	p->length = length;
	return 0;
}


/* ---- reading the body ---- */

struct collect {
	struct sora_buf *out;
	uint64_t max;
};

static int collect_cb(void *ctx, const void *data, size_t len)
{
	struct collect *c = ctx;

	if (c->out->len + len > c->max)
		return -1;
	return sora_buf_append(c->out, data, len);
}

static int read_range(struct fetch_cmd *f, const struct sora_msgs_row *row, uint64_t offset,
		      uint64_t length, struct sora_buf *out, uint64_t max)
{
	struct collect c = { out, max };

	return sora_blob_read(sora_backend()->blobs, f->base.s->account_id, row->content_hash,
			      offset, length, collect_cb, &c, &f->err);
}

struct decode {
	struct sora_msg_cte_decoder d;
	struct sora_buf *out;
	uint64_t max;
};

static int decode_cb(void *ctx, const void *data, size_t len)
{
	struct decode *dc = ctx;

	if (sora_msg_cte_feed(&dc->d, data, len, dc->out) < 0 || dc->out->len > dc->max)
		return -1;
	return 0;
}

/* ---- header fields ---- */

static bool field_listed(const struct sora_imap_fetch_section *sec, const char *name, size_t len)
{
	for (size_t i = 0; i < sec->field_count; i++)
		if (strlen(sec->fields[i]) == len && strncasecmp(sec->fields[i], name, len) == 0)
			return true;
	return false;
}

/* HEADER.FIELDS / HEADER.FIELDS.NOT: the matching fields (with their
 * continuation lines) and the empty line that ends a header. */
static int filter_header(const struct sora_imap_fetch_section *sec, struct sora_str hdr,
			 struct sora_buf *out)
{
	const char *p = hdr.p, *end = hdr.p + hdr.len;
	bool keep = false;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *next = eol != NULL ? eol + 1 : end;
		size_t linelen = (size_t)(next - p);

		if (linelen == 0 || (p[0] == '\r' && linelen <= 2) || p[0] == '\n')
			break;          /* the empty line */
		if (p[0] != ' ' && p[0] != '\t') {
			const char *colon = memchr(p, ':', linelen);
			size_t nlen = colon != NULL ? (size_t)(colon - p) : 0;

			while (nlen > 0 && (p[nlen - 1] == ' ' || p[nlen - 1] == '\t'))
				nlen--;
			keep = colon != NULL &&
			       field_listed(sec, p, nlen) == (sec->part == SORA_FETCH_PART_HEADER_FIELDS);
		}
		if (keep) {
			if (sora_buf_append(out, p, linelen) < 0)
				return -1;
			if (eol == NULL && sora_buf_append(out, "\r\n", 2) < 0)
				return -1;
		}
		p = next;
	}
	return sora_buf_append(out, "\r\n", 2);
}

/* ---- planning one message ---- */

static void internaldate(struct sora_buf *out, int64_t t)
{
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	sora_buf_printf(out, "\"%2d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday, months[tm.tm_mon],
			tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Appends a literal header for n bytes ("~{n}" for binary data). */
static void literal_head(struct sora_buf *out, uint64_t n, bool binary)
{
	sora_buf_printf(out, "%s{%" PRIu64 "}\r\n", binary ? "~" : "", n);
}

static void clip(const struct sora_imap_fetch_section *sec, uint64_t *off, uint64_t *len)
{
	if (!sec->partial)
		return;
	if (sec->partial_offset >= *len) {
		*off += *len;
		*len = 0;
		return;
	}
	*off += sec->partial_offset;
	*len -= sec->partial_offset;
	if (*len > sec->partial_length)
		*len = sec->partial_length;
}

static void section_label(struct sora_buf *out, const struct sora_imap_fetch_section *sec)
{
	sora_buf_printf(out, "%s", sec->name);
	if (sec->partial)
		sora_buf_printf(out, "<%" PRIu64 ">", sec->partial_offset);
	sora_buf_append(out, " ", 1);
}

/* The bytes of a section that lies in the stored body. Returns 0, 1 when
 * the section does not exist, -1 on errors (f->err). */
static int section_range(const struct sora_mime_message *mime, const struct sora_imap_fetch_section *sec,
			 uint64_t *off_r, uint64_t *len_r)
{
	enum sora_mime_section which;

	switch (sec->part) {
	case SORA_FETCH_PART_HEADER:
	case SORA_FETCH_PART_HEADER_FIELDS:
	case SORA_FETCH_PART_HEADER_FIELDS_NOT:
		which = SORA_MIME_SECTION_HEADER;
		break;
	case SORA_FETCH_PART_TEXT:
		which = SORA_MIME_SECTION_TEXT;
		break;
	case SORA_FETCH_PART_MIME:
		which = SORA_MIME_SECTION_MIME;
		break;
	default:
		which = SORA_MIME_SECTION_BODY;
		break;
	}
	if (sec->path_len == 0 && which == SORA_MIME_SECTION_BODY) {
		*off_r = 0;
		*len_r = mime->size;
		return 0;
	}
	return sora_mime_section_range(mime, sec->path, sec->path_len, which, off_r, len_r) < 0 ? 1 : 0;
}

static int plan_section(struct fetch_cmd *f, const struct sora_msgs_row *row,
			const struct sora_mime_message *mime, const struct sora_imap_fetch_section *sec)
{
	struct sora_buf *out = text(f);
	uint64_t off = 0, len = 0;
	int r;

	if (out == NULL)
		return -1;
	if (sec->kind == SORA_FETCH_KIND_RFC822_HEADER || sec->kind == SORA_FETCH_KIND_RFC822_TEXT ||
	    sec->kind == SORA_FETCH_KIND_RFC822)
		sora_buf_printf(out, "%s ", sec->name);
	else
		section_label(out, sec);

	if (sec->kind == SORA_FETCH_KIND_BINARY || sec->kind == SORA_FETCH_KIND_BINARY_SIZE) {
		const struct sora_mime_part *part;
		struct decode dc;
		struct sora_buf decoded = { 0 };
		uint64_t max;
		bool nul;

		if (sec->path_len == 0) {
			/* The whole message: no transfer encoding to undo. */
			if (sec->kind == SORA_FETCH_KIND_BINARY_SIZE) {
				sora_buf_printf(out, "%" PRIu64, mime->size);
				return 0;
			}
			off = 0;
			len = mime->size;
			goto plain;
		}
		part = sora_mime_part_find(mime, sec->path, sec->path_len);
		if (part == NULL) {
			sora_buf_append_str(out, sec->kind == SORA_FETCH_KIND_BINARY_SIZE ? "0" : "\"\"");
			return 0;
		}
		if (part->encoding.p != NULL && part->encoding.len > 0 &&
		    !sora_str_ieq_c(part->encoding, "7bit") && !sora_str_ieq_c(part->encoding, "8bit") &&
		    !sora_str_ieq_c(part->encoding, "binary") && !sora_str_ieq_c(part->encoding, "base64") &&
		    !sora_str_ieq_c(part->encoding, "quoted-printable")) {
			sora_error_set(&f->err, SORA_ERR_UNSUPPORTED, "unknown transfer encoding");
			return -2;
		}
		/* Checked before anything is read or allocated: no transfer
		 * encoding decodes to more bytes than it was sent in (base64
		 * and quoted-printable shrink, the others are identity), so the
		 * encoded size bounds the decoded buffer. It is reserved for
		 * the time of the decoding and given back below. */
		max = part->body_size + 16;
		if (sora_session_memory_reserve(&f->base.s->memory, max, "fetch") < 0)
			return -3;
		sora_msg_cte_init(&dc.d, part->encoding);
		dc.out = &decoded;
		dc.max = max;
		if (part->body_size > 0 &&
		    sora_blob_read(sora_backend()->blobs, f->base.s->account_id, row->content_hash,
				   sora_mime_part_body_offset(part), part->body_size, decode_cb, &dc,
				   &f->err) < 0) {
			sora_buf_free(&decoded);
			sora_session_memory_release(&f->base.s->memory, max);
			if (decoded.len > max || f->err.cls == SORA_ERR_ABORTED)
				return -3;
			return -1;
		}
		if (sora_msg_cte_finish(&dc.d, &decoded) < 0) {
			sora_buf_free(&decoded);
			sora_session_memory_release(&f->base.s->memory, max);
			return -3;
		}
		if (sec->kind == SORA_FETCH_KIND_BINARY_SIZE) {
			sora_buf_printf(out, "%zu", decoded.len);
			sora_buf_free(&decoded);
			sora_session_memory_release(&f->base.s->memory, max);
			return 0;
		}
		off = 0;
		len = decoded.len;
		clip(sec, &off, &len);
		/* The copy kept in the piece until the message is sent. */
		if (over_limit(f, len)) {
			sora_buf_free(&decoded);
			sora_session_memory_release(&f->base.s->memory, max);
			return -3;
		}
		nul = memchr(decoded.data != NULL ? decoded.data + off : "", '\0', (size_t)len) != NULL;
		literal_head(out, len, nul);
		if (len > 0 && sora_buf_append(out, decoded.data + off, (size_t)len) < 0) {
			sora_buf_free(&decoded);
			sora_session_memory_release(&f->base.s->memory, max);
			return -1;
		}
		sora_buf_free(&decoded);
		sora_session_memory_release(&f->base.s->memory, max);
		return 0;
	}

	if (sec->part == SORA_FETCH_PART_HEADER_FIELDS || sec->part == SORA_FETCH_PART_HEADER_FIELDS_NOT) {
		struct sora_buf hdr = { 0 }, filtered = { 0 };
		struct sora_str h;

		if (sec->path_len == 0 && row->raw_headers != NULL) {
			h = sora_str_make(row->raw_headers, row->raw_headers_len);
		} else {
			r = section_range(mime, sec, &off, &len);
			if (r == 1) {
				sora_buf_append_str(out, "\"\"");
				return 0;
			}
			if (len > FETCH_HEADER_MAX || over_limit(f, len))
				return -3;
			if (read_range(f, row, off, len, &hdr, FETCH_HEADER_MAX) < 0) {
				sora_buf_free(&hdr);
				return -1;
			}
			h = sora_buf_str(&hdr);
		}
		if (filter_header(sec, h, &filtered) < 0) {
			sora_buf_free(&hdr);
			sora_buf_free(&filtered);
			return -1;
		}
		off = 0;
		len = filtered.len;
		clip(sec, &off, &len);
		literal_head(out, len, false);
		sora_buf_append(out, filtered.data + off, (size_t)len);
		sora_buf_free(&hdr);
		sora_buf_free(&filtered);
		return 0;
	}

	r = section_range(mime, sec, &off, &len);
	if (r == 1) {
		sora_buf_append_str(out, "\"\"");
		return 0;
	}
plain:
	clip(sec, &off, &len);
	if (sec->part == SORA_FETCH_PART_HEADER && sec->path_len == 0 && row->raw_headers != NULL &&
	    off + len <= row->raw_headers_len) {
		literal_head(out, len, false);
		sora_buf_append(out, row->raw_headers + off, (size_t)len);
		return 0;
	}
	literal_head(out, len, false);
	if (len > 0)
		return blob_range(f, off, len);
	return 0;
}

/* Plans the response for one row. Returns 0, 1 to skip the message, or
 * -1 (error in f->err), -2 (unknown CTE), -3 (memory limit). */
static int plan_message(struct fetch_cmd *f, const struct sora_msgs_row *row, bool flags_changed)
{
	struct imap_session *s = f->base.s;
	struct imap_selected *sel = s->sel;
	const struct sora_imap_fetch_spec *spec = &f->spec;
	struct sora_mime_message *mime = NULL;
	struct sora_mime_arena *arena = NULL;
	struct sora_buf *out;
	uint32_t seq = imap_seq_of(sel, row->uid);
	const char *sep = "";
	int ret = 0;

	if (seq == 0 || !row->found)
		return 1;
	if (spec->changedsince_set && row->state.modseq <= spec->changedsince)
		return 1;
	out = text(f);
	if (out == NULL)
		return -1;
	sora_buf_printf(out, "* %u FETCH (", seq);
	if (spec->items & SORA_FETCH_UID) {
		sora_buf_printf(out, "UID %u", row->uid);
		sep = " ";
	}
	if ((spec->items & SORA_FETCH_FLAGS) || flags_changed) {
		sora_buf_printf(out, "%sFLAGS ", sep);
		imap_flags_format(out, row->state.flags, row->state.keywords,
				  imap_recent(s, row->uid));
		sep = " ";
	}
	if (spec->items & SORA_FETCH_INTERNALDATE) {
		sora_buf_printf(out, "%sINTERNALDATE ", sep);
		internaldate(out, row->internal_date);
		sep = " ";
	}
	if (spec->items & SORA_FETCH_RFC822_SIZE) {
		sora_buf_printf(out, "%sRFC822.SIZE %" PRIu64, sep, row->size);
		sep = " ";
	}
	if (spec->items & SORA_FETCH_ENVELOPE) {
		sora_buf_printf(out, "%sENVELOPE ", sep);
		if (row->imap_envelope != NULL) {
			sora_buf_append_str(out, row->imap_envelope);
		} else {
			/* A row written before the IMAP form was stored. */
			struct sora_mime_envelope *env = NULL;
			const char *error;

			arena = sora_mime_arena_new();
			if (arena == NULL)
				return -1;
			if (row->envelope_json != NULL)
				sora_mime_json_envelope_parse(row->envelope_json,
							      strlen(row->envelope_json), arena,
							      &env, &error);
			sora_mime_imap_envelope(env, out);
		}
		sep = " ";
	}
	if ((spec->items & SORA_FETCH_BODY) || spec->section_count > 0 ||
	    ((spec->items & SORA_FETCH_BODYSTRUCTURE) && row->imap_bodystructure == NULL)) {
		const char *error;

		if (row->structure_json == NULL ||
		    sora_mime_json_deserialize(row->structure_json, strlen(row->structure_json), &mime,
					       &error) < 0) {
			sora_error_set(&f->err, SORA_ERR_CORRUPT, "message %u: stored structure unreadable",
				       row->uid);
			ret = -1;
			goto out;
		}
	}
	if (spec->items & SORA_FETCH_BODY) {
		sora_buf_printf(out, "%sBODY ", sep);
		sora_mime_imap_bodystructure(mime, false, 0, out);
		sep = " ";
	}
	if (spec->items & SORA_FETCH_BODYSTRUCTURE) {
		sora_buf_printf(out, "%sBODYSTRUCTURE ", sep);
		if (row->imap_bodystructure != NULL)
			sora_buf_append_str(out, row->imap_bodystructure);
		else
			sora_mime_imap_bodystructure(mime, true, 0, out);
		sep = " ";
	}
	if ((spec->items & SORA_FETCH_MODSEQ) || s->condstore) {
		if ((spec->items & SORA_FETCH_MODSEQ) || flags_changed) {
			sora_buf_printf(out, "%sMODSEQ (%" PRIu64 ")", sep, row->state.modseq);
			sep = " ";
		}
	}
	for (size_t i = 0; i < spec->section_count; i++) {
		out = text(f);
		if (out == NULL) {
			ret = -1;
			goto out;
		}
		sora_buf_append_str(out, sep);
		ret = plan_section(f, row, mime, &spec->sections[i]);
		if (ret < 0)
			goto out;
		sep = " ";
	}
	out = text(f);
	if (out == NULL) {
		ret = -1;
		goto out;
	}
	sora_buf_append_str(out, ")\r\n");
	ret = 0;
out:
	sora_mime_message_free(&mime);
	sora_mime_arena_free(&arena);
	return ret;
}

/* ---- emitting ---- */

struct emit {
	struct sora_job *job;
};

/* Body bytes go out in plain literals, which may not contain NUL (RFC
 * 3501 §4.3; only BINARY's literal8 may): a NUL in a stored body (APPEND
 * of a literal8) is sent as 0x80, as Dovecot does. */
static int emit_cb(void *ctx, const void *data, size_t len)
{
	struct emit *e = ctx;
	const char *p = data;

	while (len > 0) {
		const char *nul = memchr(p, '\0', len);
		size_t run = nul != NULL ? (size_t)(nul - p) : len;

		if (run > 0 && sora_job_write(e->job, p, run) < 0)
			return -1;
		if (nul == NULL)
			break;
		if (sora_job_write(e->job, "\x80", 1) < 0)
			return -1;
		p = nul + 1;
		len -= run + 1;
	}
	return 0;
}

/* A large range of a body that is not on local disk (S3, or encrypted):
 * read it once into an unnamed temporary file beside the staging area and
 * send it from there. Reading it slice by slice from the store instead
 * would download (and decrypt from the start) the object once per slice.
 * Returns 0 with p->fd set, or -1. */
static int spool_range(struct fetch_cmd *f, struct piece *p)
{
	const struct sora_backend *be = sora_backend();
	const char *dir = be->cfg->uploader.path != NULL ? be->cfg->uploader.path : "var/staging";
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0) {
		char tmpl[PATH_MAX];

		snprintf(tmpl, sizeof(tmpl), "%s/.fetch-XXXXXX", dir);
		fd = mkostemp(tmpl, O_CLOEXEC);
		if (fd < 0)
			return sora_error_set(&f->err, SORA_ERR_TEMPORARY, "FETCH spool in %s: %s", dir,
					      strerror(errno));
		unlink(tmpl);
	}
	if (sora_blob_read_to_fd(be->blobs, f->base.s->account_id, f->hash, p->offset, p->length, fd,
				 &f->err) < 0) {
		close(fd);
		return -1;
	}
	p->fd = fd;
	return 0;
}

static bool spool_wanted(const struct piece *p)
{
	return p->length > 4 * FETCH_SLICE && !sora_blob_store_direct(sora_backend()->blobs);
}

/* Before the first byte of a message goes out, its first body range is
 * read (its first slice, or the whole range into the spool), so that a
 * body the store cannot give -- an object missing, S3 unreachable, a key
 * not configured -- fails that message while nothing of it is sent: the
 * FETCH goes on with the other messages and ends with NO, where failing
 * mid-literal can only end the session. 0, or -1 with f->err set. */
static int probe_message(struct fetch_cmd *f)
{
	for (size_t i = 0; i < f->piece_count; i++) {
		struct piece *p = &f->pieces[i];
		struct collect c;

		if (p->kind != PIECE_BLOB || p->length == 0)
			continue;
		if (spool_wanted(p))
			return spool_range(f, p);
		c.out = &p->buf;
		c.max = p->length < FETCH_SLICE ? p->length : FETCH_SLICE;
		return sora_blob_read(sora_backend()->blobs, f->base.s->account_id, f->hash, p->offset,
				      c.max, collect_cb, &c, &f->err);
	}
	return 0;
}

/* Sends planned pieces; 1 when the output is full (come back later), 0
 * when the message is complete, -1 on errors. */
static int emit_pieces(struct fetch_cmd *f, struct sora_job *job)
{
	while (f->piece < f->piece_count) {
		struct piece *p = &f->pieces[f->piece];

		if (p->kind == PIECE_BUF) {
			if (p->buf.len > 0 && sora_job_write(job, p->buf.data, p->buf.len) < 0)
				return -1;
		} else {
			if (p->fd < 0 && p->buf.len == 0 && spool_wanted(p) && spool_range(f, p) < 0)
				return -1;
			if (f->piece_off == 0 && p->buf.len > 0) {
				/* The slice probe_message read. */
				struct emit e = { job };

				if (emit_cb(&e, p->buf.data, p->buf.len) < 0)
					return -1;
				f->piece_off = p->buf.len;
				if (f->piece_off < p->length && sora_job_output_full(job))
					return 1;
			}
			while (f->piece_off < p->length) {
				uint64_t n = p->length - f->piece_off;
				struct emit e = { job };

				if (n > FETCH_SLICE)
					n = FETCH_SLICE;
				if (p->fd >= 0) {
					char slice[FETCH_SLICE];
					ssize_t got = pread(p->fd, slice, (size_t)n, (off_t)f->piece_off);

					if (got != (ssize_t)n) {
						sora_error_set(&f->err, SORA_ERR_TEMPORARY, "FETCH spool: short read");
						return -1;
					}
					if (emit_cb(&e, slice, (size_t)n) < 0)
						return -1;
				} else if (sora_blob_read(sora_backend()->blobs, f->base.s->account_id, f->hash,
							  p->offset + f->piece_off, n, emit_cb, &e, &f->err) < 0) {
					return -1;
				}
				f->piece_off += n;
				if (sora_job_cancelled(job))
					return -1;
				if (f->piece_off < p->length && sora_job_output_full(job))
					return 1;
			}
		}
		f->piece++;
		f->piece_off = 0;
		if (f->piece < f->piece_count && sora_job_output_full(job))
			return 1;
	}
	pieces_clear(f);
	return 0;
}

/* Loads the next batch; sets \Seen first when the FETCH implies it. */
static int load_batch(struct fetch_cmd *f, struct sora_db_conn *db, bool **changed_r)
{
	struct imap_session *s = f->base.s;
	size_t batch = f->spec.needs_body ? FETCH_BATCH_BODIES :
		       (f->want & SORA_MSGS_WANT_HEADERS) ? FETCH_BATCH_HEADERS : FETCH_BATCH;
	size_t n = f->count - f->next;
	bool *changed = NULL;

	*changed_r = NULL;
	if (n > batch)
		n = batch;
	sora_msgs_rows_free(&f->rows);
	if (f->spec.sets_seen && !s->sel->readonly) {
		struct sora_msgs_store_result st;

		memset(&st, 0, sizeof(st));
		if (sora_msgs_store(db, s->sel->mailbox_id, f->uids + f->next, n, SORA_MSGS_STORE_ADD,
				    SORA_IMAP_FLAG_SEEN, "", 0, &st, &f->err) < 0)
			return -1;
		for (size_t i = 0; i < st.state_count; i++) {
			if (st.changed != NULL && st.changed[i]) {
				imap_own_modseq(s->sel, st.highest_modseq);
				sora_imap_mailbox_changed(s->sel->mailbox_id);
				break;
			}
		}
		/* \Seen may move messages in or out of updating searches. */
		for (size_t i = 0; i < st.state_count; i++)
			if (st.changed != NULL && st.changed[i])
				imap_ctx_touch(s->sel, &st.states[i].uid, 1);
		if (st.state_count > 0) {
			changed = calloc(n, sizeof(*changed));
			if (changed != NULL) {
				for (size_t i = 0, k = 0; i < n && k < st.state_count; i++) {
					while (k < st.state_count && st.states[k].uid < f->uids[f->next + i])
						k++;
					if (k < st.state_count && st.states[k].uid == f->uids[f->next + i])
						changed[i] = st.changed[k];
				}
			}
		}
		sora_msgs_store_result_free(&st);
	}
	if (sora_msgs_fetch(db, s->sel->mailbox_id, f->uids + f->next, n, f->want, &f->rows,
			    &f->err) < 0) {
		free(changed);
		return -1;
	}
	f->next += n;
	f->row = 0;
	*changed_r = changed;
	return 0;
}

static enum sora_job_status fetch_fail(struct fetch_cmd *f, struct sora_job *job, int r)
{
	if (r == -2)
		sora_job_printf(job, "%s NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding.\r\n",
				f->base.tag);
	else if (r == -3)
		sora_job_printf(job, "%s NO [LIMIT] FETCH would exceed the session memory limit "
				"(session_memory_limit); fetch a smaller part.\r\n", f->base.tag);
	else
		imap_job_error(job, &f->base, "FETCH", &f->err);
	return SORA_JOB_DONE;
}

static int send_vanished(struct fetch_cmd *f, struct sora_job *job, struct sora_db_conn *db)
{
	struct sora_msgs_changes ch;
	struct sora_imap_seqset set;
	const char *error;
	struct sora_buf out = { 0 };
	size_t n = 0;

	if (sora_imap_seqset_parse(sora_str_c(f->vanished_set), false, 100000, &set, &error) < 0)
		return 0;
	memset(&ch, 0, sizeof(ch));
	if (sora_msgs_changes(db, f->base.s->sel->mailbox_id, f->spec.changedsince, UINT32_MAX, false,
			      &ch, &f->err) < 0) {
		sora_imap_seqset_free(&set);
		return -1;
	}
	for (size_t i = 0; i < ch.expunged.count; i++)
		if (sora_imap_seqset_contains(&set, ch.expunged.uids[i], UINT32_MAX))
			ch.expunged.uids[n++] = ch.expunged.uids[i];
	if (n > 0) {
		sora_buf_append_str(&out, "* VANISHED (EARLIER) ");
		imap_uidset_append(&out, ch.expunged.uids, n);
		sora_buf_append_str(&out, "\r\n");
		imap_job_buf(job, &out);
	}
	sora_buf_free(&out);
	sora_msgs_changes_free(&ch);
	sora_imap_seqset_free(&set);
	return 0;
}

static enum sora_job_status fetch_run(struct imap_cmd *cmd, struct sora_job *job,
				      struct sora_db_conn *db)
{
	struct fetch_cmd *f = (struct fetch_cmd *)cmd;

	if (!f->started) {
		f->started = true;
		if (f->vanished_set != NULL && send_vanished(f, job, db) < 0)
			return fetch_fail(f, job, -1);
	}
	for (;;) {
		int r;

		if (f->piece_count > 0) {
			r = emit_pieces(f, job);
			if (r < 0) {
				/* Part of a literal may be out: the session cannot
				 * recover the stream. */
				if (!sora_job_cancelled(job))
					sora_warn(sora_conn_log_ctx(cmd->s->c),
						  "FETCH: reading message body failed: %s", f->err.msg);
				sora_job_printf(job, "* BYE [UNAVAILABLE] Reading a message failed.\r\n");
				cmd->s->state = IMAP_STATE_LOGOUT;
				return SORA_JOB_DONE;
			}
			if (r > 0)
				return SORA_JOB_MORE;
		}
		if (f->row < f->rows.count) {
			const struct sora_msgs_row *row = &f->rows.rows[f->row];
			bool changed = f->seen_set != NULL && f->seen_set[f->row];

			sora_strlcpy(f->hash, row->content_hash, sizeof(f->hash));
			r = plan_message(f, row, changed);
			f->row++;
			if (r < 0) {
				pieces_clear(f);
				return fetch_fail(f, job, r);
			}
			if (r > 0) {
				pieces_clear(f);
				continue;
			}
			if (probe_message(f) < 0) {
				sora_warn(sora_conn_log_ctx(cmd->s->c), "FETCH: message UID %u skipped, "
					  "its body cannot be read: %s", row->uid, f->err.msg);
				f->unreadable++;
				pieces_clear(f);
			}
			continue;
		}
		if (f->next < f->count) {
			bool *changed = NULL;

			if (load_batch(f, db, &changed) < 0)
				return fetch_fail(f, job, -1);
			free(f->seen_set);
			f->seen_set = changed;
			if (changed != NULL) {
				/* \Seen was set: FLAGS go out with these messages. */
				for (size_t i = 0; i < f->rows.count; i++)
					if (changed[i])
						f->rows.rows[i].state.flags |= SORA_IMAP_FLAG_SEEN;
			}
			if (sora_job_output_full(job))
				return SORA_JOB_MORE;
			continue;
		}
		break;
	}
	/* New mail and flag changes by others go out now; expunges only
	 * after UID FETCH (RFC 3501 §7.4.1). */
	if (imap_sync(cmd, job, db, cmd->uid) == -2) {
		cmd->s->state = IMAP_STATE_LOGOUT;
		return SORA_JOB_DONE;
	}
	if (f->unreadable > 0)
		sora_job_printf(job, "%s NO [UNAVAILABLE] %zu message%s could not be read (the "
				"others were sent): try again later.\r\n", cmd->tag, f->unreadable,
				f->unreadable == 1 ? "" : "s");
	else
		sora_job_printf(job, "%s OK %s completed.\r\n", cmd->tag,
				cmd->uid ? "UID FETCH" : "FETCH");
	return SORA_JOB_DONE;
}

static unsigned int want_of(const struct sora_imap_fetch_spec *spec, bool condstore)
{
	unsigned int want = SORA_MSGS_WANT_STATE | SORA_MSGS_WANT_BASIC;

	if (spec->items & SORA_FETCH_ENVELOPE)
		want |= SORA_MSGS_WANT_ENVELOPE;
	/* The stored BODYSTRUCTURE answers BODYSTRUCTURE; BODY and sections
	 * need the structure itself. */
	if (spec->items & SORA_FETCH_BODYSTRUCTURE)
		want |= SORA_MSGS_WANT_IMAP_STRUCTURE;
	if ((spec->items & SORA_FETCH_BODY) || spec->section_count > 0)
		want |= SORA_MSGS_WANT_STRUCTURE;
	for (size_t i = 0; i < spec->section_count; i++)
		if (spec->sections[i].path_len == 0 &&
		    (spec->sections[i].part == SORA_FETCH_PART_HEADER ||
		     spec->sections[i].part == SORA_FETCH_PART_HEADER_FIELDS ||
		     spec->sections[i].part == SORA_FETCH_PART_HEADER_FIELDS_NOT))
			want |= SORA_MSGS_WANT_HEADERS;
	return want;
}

void imap_cmd_fetch(struct imap_session *s, const struct sora_imap_command *cmd, bool uid)
{
	struct fetch_cmd *f;
	const char *error = "Invalid arguments.";

	if (cmd->args_count < 2) {
		imap_bad(s, cmd->tag, "FETCH takes a sequence set and data items.");
		return;
	}
	f = calloc(1, sizeof(*f));
	if (f == NULL) {
		imap_reply(s, cmd->tag, "NO [UNAVAILABLE] Out of memory.");
		return;
	}
	imap_cmd_init(&f->base, s, cmd, "FETCH", fetch_run);
	f->base.uid = uid;
	f->base.free = fetch_free;
	if (sora_imap_fetch_parse(cmd->args + 1, cmd->args_count - 1, uid, &f->spec, &error) < 0 ||
	    imap_seqset_uids(s->sel, &cmd->args[0], uid, &f->uids, &f->count, &error) < 0) {
		fetch_free(&f->base);
		imap_bad(s, cmd->tag, error);
		return;
	}
	if (f->spec.vanished && !s->qresync) {
		fetch_free(&f->base);
		imap_bad(s, cmd->tag, "VANISHED needs QRESYNC to be enabled.");
		return;
	}
	if (f->spec.vanished)
		f->vanished_set = sora_str_dup(cmd->args[0].str);
	if (f->spec.items & SORA_FETCH_MODSEQ)
		imap_condstore_used(s);
	if (s->sel->readonly)
		f->spec.sets_seen = false;
	f->want = want_of(&f->spec, s->condstore);
	imap_cmd_submit(s, &f->base);
}
