#include "common/core/str.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static inline unsigned char ascii_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

bool sora_str_eq(struct sora_str a, struct sora_str b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

bool sora_str_ieq(struct sora_str a, struct sora_str b)
{
	if (a.len != b.len)
		return false;
	for (size_t i = 0; i < a.len; i++) {
		if (ascii_lower((unsigned char)a.p[i]) != ascii_lower((unsigned char)b.p[i]))
			return false;
	}
	return true;
}

bool sora_str_ieq_c(struct sora_str a, const char *b)
{
	return sora_str_ieq(a, sora_str_c(b));
}

bool sora_str_has_iprefix(struct sora_str s, const char *prefix)
{
	size_t n = strlen(prefix);
	return s.len >= n && sora_str_ieq(sora_str_make(s.p, n), sora_str_make(prefix, n));
}

int sora_str_to_u64(struct sora_str s, uint64_t max, uint64_t *value_r)
{
	uint64_t v = 0;

	if (s.len == 0)
		return -1;
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (c < '0' || c > '9')
			return -1;
		if (v > (max - (uint64_t)(c - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(c - '0');
	}
	*value_r = v;
	return 0;
}

char *sora_str_dup(struct sora_str s)
{
	char *r = malloc(s.len + 1);

	if (r == NULL)
		return NULL;
	if (s.len > 0)
		memcpy(r, s.p, s.len);
	r[s.len] = '\0';
	return r;
}

size_t sora_strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);

	if (size > 0) {
		size_t c = n < size - 1 ? n : size - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}

void sora_set_error(char *err, size_t errsize, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errsize == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errsize, fmt, ap);
	va_end(ap);
}

int sora_hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
