/* DATA phase decoder: see smtp-data.h for the rules. The state machine
 * looks at one byte at a time only where a decision is needed (line starts
 * and CRs); the text of a line is scanned in a tight loop and handed to the
 * sink straight from the input, without copying. */
#include "common/proto/smtp-data.h"

#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

enum {
	ST_BOL = 0,  /* start of data or after CRLF: a dot here is special */
	ST_TEXT,     /* inside a line (or after a bare LF) */
	ST_CR,       /* a CR was seen and not yet emitted */
	ST_DOT,      /* ST_BOL + "." seen, the dot not emitted */
	ST_DOT_CR,   /* ST_BOL + ".\r" seen */
	ST_DONE,
};

struct out {
	sora_smtp_data_sink_cb *sink;
	void *ctx;
};

void sora_smtp_data_init(struct sora_smtp_data *d, uint64_t max_size)
{
	memset(d, 0, sizeof(*d));
	d->max_size = max_size;
	d->state = ST_BOL;
}

/* Hands n output bytes to the sink. Past the size limit only the bytes up
 * to the limit are passed on, so the sink sees exactly the first max_size
 * octets of the message whatever the chunking was. */
static void emit(struct sora_smtp_data *d, const struct out *o,
		 const char *p, size_t n)
{
	bool active = !d->too_big && !d->sink_failed;
	uint64_t old = d->size;
	size_t take = n;
	int r;

	if (n == 0)
		return;
	d->size = old > UINT64_MAX - n ? UINT64_MAX : old + n;
	if (d->max_size != 0 && d->size > d->max_size) {
		/* While not too_big, old <= max_size holds. */
		take = d->too_big ? 0 : (size_t)(d->max_size - old);
		d->too_big = true;
	}
	if (!active || take == 0 || o->sink == NULL)
		return;
	r = o->sink(o->ctx, p, take);
	if (r < 0) {
		d->sink_failed = true;
		d->sink_error = r;
	}
}

static void end_line(struct sora_smtp_data *d)
{
	d->lines++;
	if (d->line_len > d->max_line_len)
		d->max_line_len = d->line_len;
	if (d->line_len > SORA_SMTP_DATA_LINE_MAX)
		d->long_lines++;
	d->line_len = 0;
}

/* The end of the line text from in[j]: the first CR or LF, or len. Sets
 * *hi and *nul if the text has 8-bit or NUL bytes (only bytes before that
 * end count: what follows may be the next command). Every byte of a message
 * passes here, so where the CPU has SSE2 (every x86-64) sixteen are looked
 * at in one step; the rest, and other CPUs, take the byte loop. */
static size_t scan_text(const char *in, size_t j, size_t len, bool *hi, bool *nul)
{
#if defined(__SSE2__)
	const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
	const __m128i zero = _mm_setzero_si128();

	while (len - j >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(in + j));
		unsigned end = (unsigned)_mm_movemask_epi8(
			_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
		unsigned high = (unsigned)_mm_movemask_epi8(v);
		unsigned nuls = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero));

		if (end != 0) {
			unsigned at = (unsigned)__builtin_ctz(end);
			unsigned before = (1u << at) - 1;

			*hi |= (high & before) != 0;
			*nul |= (nuls & before) != 0;
			return j + at;
		}
		*hi |= high != 0;
		*nul |= nuls != 0;
		j += 16;
	}
#endif
	for (; j < len; j++) {
		unsigned char c = (unsigned char)in[j];

		if (c == '\r' || c == '\n')
			break;
		*hi |= c >= 0x80;
		*nul |= c == 0;
	}
	return j;
}

/* From in[i], at the start of a line, the end of the run of complete lines
 * "text CRLF" in the input whose text has no CR or LF and does not start
 * with a dot, with their statistics counted; i if there is none. */
static size_t whole_lines(struct sora_smtp_data *d, const char *in, size_t i, size_t len)
{
	size_t run = i;
	bool hi = false, nul = false;

	while (run < len && in[run] != '.') {
		bool line_hi = false, line_nul = false;
		size_t j = scan_text(in, run, len, &line_hi, &line_nul);

		if (j + 1 >= len || in[j] != '\r' || in[j + 1] != '\n')
			break;
		hi |= line_hi;
		nul |= line_nul;
		d->line_len = j - run;
		end_line(d);
		run = j + 2;
	}
	/* A line cut off by the end of the input is scanned again later. */
	d->saw_8bit |= hi;
	d->saw_nul |= nul;
	return run;
}

enum sora_smtp_data_status
sora_smtp_data_feed(struct sora_smtp_data *d, const char *in, size_t len,
		    size_t *consumed_r, sora_smtp_data_sink_cb *sink, void *ctx)
{
	const struct out o = { sink, ctx };
	size_t i = 0;

	if (d->state == ST_DONE) {
		*consumed_r = 0;
		return SORA_SMTP_DATA_DONE;
	}
	while (i < len) {
		unsigned char b = (unsigned char)in[i];

		switch (d->state) {
		case ST_BOL: {
			size_t run;

			if (b == '.') {
				d->state = ST_DOT;
				i++;
				break;
			}
			/* Whole CRLF-terminated lines that do not start with a
			 * dot are the common case: they go to the sink as one
			 * piece, however many there are in the input. */
			run = whole_lines(d, in, i, len);
			if (run > i) {
				emit(d, &o, in + i, run - i);
				i = run;
				break;
			}
			/* Anything else starts an ordinary line. */
			d->state = ST_TEXT;
			break;
		}
		case ST_TEXT: {
			bool hi = false, nul = false;
			size_t j = scan_text(in, i, len, &hi, &nul);

			if (hi)
				d->saw_8bit = true;
			if (nul)
				d->saw_nul = true;
			d->line_len += j - i;
			emit(d, &o, in + i, j - i);
			i = j;
			if (i == len)
				break;
			if (in[i] == '\r') {
				d->state = ST_CR;
			} else {
				/* Bare LF: a line end, stored as CRLF, but not
				 * the start of a dot-protocol line. */
				d->saw_bare_lf = true;
				emit(d, &o, "\r\n", 2);
				end_line(d);
			}
			i++;
			break;
		}
		case ST_CR:
			if (b == '\n') {
				emit(d, &o, "\r\n", 2);
				end_line(d);
				d->state = ST_BOL;
				i++;
				break;
			}
			/* Bare CR: data. The byte after it is looked at again
			 * as ordinary text (another CR becomes the new
			 * pending one). */
			d->saw_bare_cr = true;
			emit(d, &o, "\r", 1);
			d->line_len++;
			d->state = ST_TEXT;
			break;
		case ST_DOT:
			if (b == '\r') {
				d->state = ST_DOT_CR;
				i++;
				break;
			}
			/* A stuffed dot: drop it and read the rest of the line
			 * as text, including a second dot or a bare LF. */
			d->state = ST_TEXT;
			break;
		case ST_DOT_CR:
			if (b == '\n') {
				d->state = ST_DONE;
				d->done = true;
				*consumed_r = i + 1;
				return SORA_SMTP_DATA_DONE;
			}
			/* "." + bare CR + more: the dot was stuffing, the CR is
			 * data. */
			d->saw_bare_cr = true;
			emit(d, &o, "\r", 1);
			d->line_len++;
			d->state = ST_TEXT;
			break;
		default:
			/* ST_DONE is handled before the loop. */
			*consumed_r = i;
			return SORA_SMTP_DATA_DONE;
		}
	}
	*consumed_r = len;
	return SORA_SMTP_DATA_MORE;
}

static int buf_sink(void *ctx, const char *data, size_t len)
{
	return sora_buf_append(ctx, data, len);
}

enum sora_smtp_data_status
sora_smtp_data_feed_buf(struct sora_smtp_data *d, const char *in, size_t len,
			size_t *consumed_r, struct sora_buf *out)
{
	return sora_smtp_data_feed(d, in, len, consumed_r, buf_sink, out);
}
