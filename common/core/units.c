/* Durations and sizes as written in the config file (see units.h). */
#include "common/core/units.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

struct unit {
	const char *name;
	uint64_t factor;
};

/* Longer names first where one is a prefix of another ("ms" before "m"). */
static const struct unit duration_units[] = {
	{ "ms", 1 },
	{ "s",  1000 },
	{ "m",  60 * 1000 },
	{ "h",  60 * 60 * 1000 },
	{ "d",  24 * 60 * 60 * 1000 },
};

static const struct unit size_units[] = {
	{ "",   1 },
	{ "b",  1 },
	{ "k",  1ULL << 10 }, { "kb", 1ULL << 10 },
	{ "m",  1ULL << 20 }, { "mb", 1ULL << 20 },
	{ "g",  1ULL << 30 }, { "gb", 1ULL << 30 },
	{ "t",  1ULL << 40 }, { "tb", 1ULL << 40 },
};

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Reads the decimal number at *sp, advancing *sp past it. Fails when there
 * is no digit or the number exceeds max. */
static int read_number(const char **sp, uint64_t max, uint64_t *value_r)
{
	const char *s = *sp;
	uint64_t v = 0;

	if (!is_digit(*s))
		return -1;
	for (; is_digit(*s); s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*sp = s;
	*value_r = v;
	return 0;
}

/* Matches the duration unit at *sp (case-sensitive: "m" is minutes and an
 * upper-case "M" would suggest months). */
static const struct unit *read_duration_unit(const char **sp)
{
	for (size_t i = 0; i < sizeof(duration_units) / sizeof(duration_units[0]); i++) {
		size_t n = strlen(duration_units[i].name);
		if (strncmp(*sp, duration_units[i].name, n) == 0) {
			*sp += n;
			return &duration_units[i];
		}
	}
	return NULL;
}

int sora_parse_duration_ms(const char *s, int64_t *ms_r, const char **error_r)
{
	const char *p = s;
	uint64_t total = 0;

	if (s == NULL || *s == '\0') {
		*error_r = "empty duration";
		return -1;
	}
	/* -1 is a marker ("disabled"), not a length of time, so it is returned
	 * as it is rather than as -1000 ms. */
	if (strcmp(s, "-1") == 0) {
		*ms_r = -1;
		return 0;
	}
	if (*s == '-') {
		*error_r = "negative duration (only -1, meaning disabled, is allowed)";
		return -1;
	}

	/* A bare integer is a number of seconds. */
	while (*p != '\0' && is_digit(*p))
		p++;
	if (*p == '\0') {
		uint64_t secs;
		p = s;
		if (read_number(&p, (uint64_t)INT64_MAX / 1000, &secs) < 0) {
			*error_r = "duration out of range";
			return -1;
		}
		*ms_r = (int64_t)(secs * 1000);
		return 0;
	}

	p = s;
	while (*p != '\0') {
		const struct unit *u;
		uint64_t n;

		if (!is_digit(*p)) {
			*error_r = "invalid duration (expected e.g. \"30s\", \"15m\", \"1h30m\", \"14d\")";
			return -1;
		}
		if (read_number(&p, (uint64_t)INT64_MAX, &n) < 0) {
			*error_r = "duration out of range";
			return -1;
		}
		u = read_duration_unit(&p);
		if (u == NULL) {
			*error_r = "invalid duration unit (use ms, s, m, h or d)";
			return -1;
		}
		if (n > ((uint64_t)INT64_MAX - total) / u->factor) {
			*error_r = "duration out of range";
			return -1;
		}
		total += n * u->factor;
	}
	*ms_r = (int64_t)total;
	return 0;
}

int sora_parse_size(const char *s, uint64_t *bytes_r, const char **error_r)
{
	const char *p = s;
	uint64_t n;

	if (s == NULL || *s == '\0') {
		*error_r = "empty size";
		return -1;
	}
	if (read_number(&p, UINT64_MAX, &n) < 0) {
		*error_r = *p == '-' ? "negative size" :
			is_digit(*p) ? "size out of range" :
			"invalid size (expected e.g. \"512kb\", \"25mb\", \"1gb\")";
		return -1;
	}
	for (size_t i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++) {
		const char *name = size_units[i].name;
		size_t k = 0;

		while (name[k] != '\0' && ascii_lower(p[k]) == name[k])
			k++;
		if (name[k] != '\0' || p[k] != '\0')
			continue;
		if (n > UINT64_MAX / size_units[i].factor) {
			*error_r = "size out of range";
			return -1;
		}
		*bytes_r = n * size_units[i].factor;
		return 0;
	}
	*error_r = "invalid size unit (use b, kb, mb, gb or tb)";
	return -1;
}

const char *sora_format_duration(int64_t ms, char *buf, unsigned size)
{
	static const struct unit parts[] = {
		{ "d",  24ULL * 60 * 60 * 1000 },
		{ "h",  60ULL * 60 * 1000 },
		{ "m",  60ULL * 1000 },
		{ "s",  1000 },
		{ "ms", 1 },
	};
	/* The magnitude as unsigned so that INT64_MIN does not overflow. */
	uint64_t rest = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
	size_t off = 0;

	if (size == 0)
		return buf;
	buf[0] = '\0';
	if (ms == 0) {
		snprintf(buf, size, "0s");
		return buf;
	}
	if (ms < 0)
		off += (size_t)snprintf(buf, size, "-");
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]) && off < size; i++) {
		uint64_t n = rest / parts[i].factor;

		if (n == 0)
			continue;
		rest -= n * parts[i].factor;
		off += (size_t)snprintf(buf + off, size - off, "%llu%s",
					(unsigned long long)n, parts[i].name);
	}
	return buf;
}
