#include "common/core/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sora_buf_init(struct sora_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

void sora_buf_free(struct sora_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void sora_buf_reset(struct sora_buf *b)
{
	sora_buf_free(b);
}

int sora_buf_reserve(struct sora_buf *b, size_t want)
{
	size_t need, cap;
	char *p;

	if (want > SIZE_MAX - b->len)
		return -1;
	need = b->len + want;
	if (b->max != 0 && need > b->max)
		return -1;
	if (need <= b->cap)
		return 0;
	cap = b->cap < 256 ? 256 : b->cap;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (b->max != 0 && cap > b->max)
		cap = b->max;
	p = realloc(b->data, cap);
	if (p == NULL)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

int sora_buf_append(struct sora_buf *b, const void *data, size_t len)
{
	if (len == 0)
		return 0;
	if (sora_buf_reserve(b, len) < 0)
		return -1;
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

int sora_buf_append_str(struct sora_buf *b, const char *s)
{
	return sora_buf_append(b, s, strlen(s));
}

int sora_buf_vprintf(struct sora_buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0 || sora_buf_reserve(b, (size_t)n + 1) < 0)
		return -1;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int sora_buf_printf(struct sora_buf *b, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = sora_buf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

int sora_vformat_to(sora_write_fn *sink, void *ctx, const char *fmt, va_list ap)
{
	char stackbuf[1024];
	struct sora_buf b;
	va_list ap2;
	int n, r;

	va_copy(ap2, ap);
	n = vsnprintf(stackbuf, sizeof(stackbuf), fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof(stackbuf))
		return sink(ctx, stackbuf, (size_t)n);
	sora_buf_init(&b, 0);
	r = sora_buf_vprintf(&b, fmt, ap);
	if (r == 0)
		r = sink(ctx, b.data, b.len);
	sora_buf_free(&b);
	return r;
}

void sora_buf_consume(struct sora_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}
