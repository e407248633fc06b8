/* A growable byte buffer with a hard cap.
 *
 * Every buffer that holds network data has a maximum (`max`); appends past it
 * fail with -1 and leave the buffer unchanged, so the caller decides what an
 * overflow means for its protocol (a BAD reply, a 552, closing). Memory is
 * released with sora_buf_free(); sora_buf_reset() keeps nothing allocated so
 * an idle connection holds no buffer.
 *
 * Thread safety: a buffer belongs to one thread at a time. */
#ifndef SORA_CORE_BUF_H
#define SORA_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "common/core/str.h"

struct sora_buf {
	char *data;   /* owned; NULL while empty and released */
	size_t len;
	size_t cap;
	size_t max;   /* 0 = no cap (only for trusted, locally produced data) */
};

void sora_buf_init(struct sora_buf *b, size_t max);
/* Frees the memory; the buffer stays usable (empty). */
void sora_buf_free(struct sora_buf *b);
/* Empties the buffer and releases its memory. */
void sora_buf_reset(struct sora_buf *b);

int sora_buf_append(struct sora_buf *b, const void *data, size_t len);
int sora_buf_append_str(struct sora_buf *b, const char *s);
int sora_buf_printf(struct sora_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int sora_buf_vprintf(struct sora_buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Formats and hands the result to sink(ctx, data, len) in one call: a
 * stack buffer for the usual short reply, the heap otherwise. Returns
 * sink's result, or -1 on a formatting or allocation failure. */
typedef int sora_write_fn(void *ctx, const void *data, size_t len);
int sora_vformat_to(sora_write_fn *sink, void *ctx, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
/* Removes the first n bytes (n <= len). */
void sora_buf_consume(struct sora_buf *b, size_t n);
/* Makes sure `want` more bytes fit without reallocation; -1 past max. */
int sora_buf_reserve(struct sora_buf *b, size_t want);

static inline struct sora_str sora_buf_str(const struct sora_buf *b)
{
	return sora_str_make(b->data, b->len);
}

#endif
