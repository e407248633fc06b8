/* Byte strings that come from the network or from files.
 *
 * Network data is never treated as a NUL-terminated C string: it is carried
 * as pointer + length and may contain NUL bytes. A struct sora_str never owns
 * its bytes; whoever created it says how long they live.
 *
 * Thread safety: pure functions, callable from any thread. */
#ifndef SORA_CORE_STR_H
#define SORA_CORE_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct sora_str {
	const char *p;  /* borrowed */
	size_t len;
};

#define SORA_STR(lit) ((struct sora_str){ (lit), sizeof(lit) - 1 })
#define SORA_STR_NULL ((struct sora_str){ NULL, 0 })

static inline struct sora_str sora_str_make(const char *p, size_t len)
{
	return (struct sora_str){ p, len };
}

static inline struct sora_str sora_str_c(const char *s)
{
	return (struct sora_str){ s, s != NULL ? strlen(s) : 0 };
}

bool sora_str_eq(struct sora_str a, struct sora_str b);
/* ASCII case-insensitive equality. */
bool sora_str_ieq(struct sora_str a, struct sora_str b);
bool sora_str_ieq_c(struct sora_str a, const char *b);
bool sora_str_has_iprefix(struct sora_str s, const char *prefix);

/* Parses an unsigned decimal number that must fill all of s (no sign, no
 * spaces). Returns 0, or -1 on empty input, a non-digit or a value above max. */
int sora_str_to_u64(struct sora_str s, uint64_t max, uint64_t *value_r);

/* Returns a newly malloc'd NUL-terminated copy (caller frees), or NULL when
 * out of memory. Only for data already known to contain no NUL byte. */
char *sora_str_dup(struct sora_str s);

/* Copies at most size-1 bytes of src into dst and NUL-terminates it (like
 * strlcpy). Returns the length of src; truncation happened if >= size. */
size_t sora_strlcpy(char *dst, const char *src, size_t size);

/* The value of a hexadecimal digit (either case), or -1. */
int sora_hex_value(unsigned char c);

/* printf into a caller's error buffer (err may be NULL or errsize 0, then
 * nothing is written): the one helper behind every "char *err, size_t
 * errsize" out-parameter. */
void sora_set_error(char *err, size_t errsize, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
