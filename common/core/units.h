/* Durations and sizes as written in the config file.
 *
 * Durations: a sequence of <number><unit> with units ms, s, m, h, d
 * ("15m", "720h", "14d", "1h30m", "500ms"); a bare integer means seconds.
 * The special values "0" and "-1" are accepted by the signed parser because
 * timeout keys use them (0 = default, -1 = disabled).
 * Sizes: <number>[unit] with units b, k/kb, m/mb, g/gb, t/tb (powers of
 * 1024, case-insensitive); a bare integer means bytes.
 *
 * Thread safety: pure functions. */
#ifndef SORA_CORE_UNITS_H
#define SORA_CORE_UNITS_H

#include <stdint.h>

/* Returns 0 and the duration in milliseconds, or -1 with *error_r set. */
int sora_parse_duration_ms(const char *s, int64_t *ms_r, const char **error_r);
/* Returns 0 and the size in bytes, or -1 with *error_r set. */
int sora_parse_size(const char *s, uint64_t *bytes_r, const char **error_r);
/* Formats ms as a short duration ("5m", "1h30m", "250ms") into buf. */
const char *sora_format_duration(int64_t ms, char *buf, unsigned size);

#endif
