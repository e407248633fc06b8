#include "common/metrics/metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/core/buf.h"
#include "common/core/log.h"
#include "common/core/str.h"

/* More labels than this in one family is a design smell and would make the
 * per-call stack buffers of sora_metric_with() large. */
#define MAX_LABELS 16
/* Series are allocated on their own cache line(s) so that two hot series
 * updated by different threads do not slow each other down. */
#define CACHE_LINE 64
/* Integers up to 2^53 are exact in a double, so adds of such values can take
 * the integer fast path and still render exactly. */
#define INT_FAST_LIMIT 9007199254740992.0
/* Longest full metric name, prefix included. */
#define MAX_NAME 256

struct sora_metric_series {
	/* Updated by many threads: counters keep whole increments in ival (one
	 * fetch_add) and everything else as a double's bit pattern in dbits
	 * (CAS loop). Gauges use dbits only, because set() must replace the
	 * whole value atomically. Histograms keep their sum in dbits and
	 * per-bucket (not cumulative) counts in counts[], the last one being
	 * +Inf; their _count is the sum of counts[] so that it always equals
	 * the +Inf bucket in the output. */
	_Atomic uint64_t ival;
	_Atomic uint64_t dbits;
	enum sora_metric_type type;
	uint32_t hash;
	struct sora_metric *family;
	struct sora_metric_series *next;  /* hash chain */
	char **values;                    /* family->nlabels strings, one allocation */
	_Atomic uint64_t counts[];
};

struct sora_metric {
	char *name;
	char *help;
	enum sora_metric_type type;
	size_t nlabels;
	char **labels;            /* one allocation */
	double *bounds;           /* histogram upper bounds without +Inf */
	size_t nbounds;

	pthread_rwlock_t lock;    /* protects the table below, not the values */
	struct sora_metric_series **table;
	size_t table_size;        /* power of two */
	size_t nentries;          /* everything in the table */
	size_t nseries;           /* regular series, counted against the cap */
	struct sora_metric_series *overflow;
	atomic_bool overflow_warned;
	atomic_bool negative_warned;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sora_metric **families;  /* sorted by name */
static size_t nfamilies, families_cap;

static const double default_buckets[] = {
	.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10
};

/* Process metrics, refreshed at each render once registered. process_lock
 * is taken before registry_lock when both are needed. */
static pthread_mutex_t process_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sora_metric_series *proc_cpu, *proc_rss, *proc_vsz, *proc_fds, *proc_maxfds;

static const char *type_name(enum sora_metric_type type)
{
	switch (type) {
	case SORA_METRIC_COUNTER:
		return "counter";
	case SORA_METRIC_GAUGE:
		return "gauge";
	case SORA_METRIC_HISTOGRAM:
		return "histogram";
	}
	return "untyped";
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Misuse of this API is a bug in the caller that would silently produce
 * wrong numbers; stopping at once makes it show up in the first test run. */
static void die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sora_error(NULL, "metrics: programming error: %s", msg);
	abort();
}

static void *xmalloc(size_t size)
{
	void *p = malloc(size);

	if (p == NULL)
		die("out of memory allocating %zu bytes", size);
	return p;
}

static char *xstrdup(const char *s)
{
	size_t len = strlen(s);
	char *p = xmalloc(len + 1);

	memcpy(p, s, len + 1);
	return p;
}

static double bits_to_double(uint64_t bits)
{
	double d;

	memcpy(&d, &bits, sizeof(d));
	return d;
}

static uint64_t double_to_bits(double d)
{
	uint64_t bits;

	memcpy(&bits, &d, sizeof(bits));
	return bits;
}

static void atomic_add_double(_Atomic uint64_t *a, double v)
{
	uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
	uint64_t new;

	do {
		new = double_to_bits(bits_to_double(old) + v);
	} while (!atomic_compare_exchange_weak_explicit(a, &old, new, memory_order_relaxed,
							memory_order_relaxed));
}

/* ---- names ---- */

static bool valid_metric_name(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (size_t i = 0; s[i] != '\0'; i++) {
		char c = s[i];
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';

		if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
			return false;
	}
	return true;
}

static bool valid_label_name(const char *s, size_t len)
{
	if (len == 0 || (len >= 2 && s[0] == '_' && s[1] == '_'))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';

		if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
			return false;
	}
	return true;
}

/* Splits "a, b,c" into an array of copies in one allocation. Aborts on an
 * invalid or repeated name. */
static char **parse_label_names(const char *metric, const char *label_names,
				enum sora_metric_type type, size_t *count_r)
{
	struct { const char *p; size_t len; } names[MAX_LABELS];
	size_t count = 0, total = 0;
	const char *p = label_names != NULL ? label_names : "";
	char **out, *dst;

	while (*p == ' ')
		p++;
	while (*p != '\0') {
		const char *start = p, *end;

		while (*p != '\0' && *p != ',')
			p++;
		end = p;
		while (end > start && end[-1] == ' ')
			end--;
		if (count == MAX_LABELS)
			die("metric %s has more than %d labels", metric, MAX_LABELS);
		if (!valid_label_name(start, (size_t)(end - start)))
			die("metric %s: invalid label name \"%.*s\"", metric,
			    (int)(end - start), start);
		if (type == SORA_METRIC_HISTOGRAM && end - start == 2 && memcmp(start, "le", 2) == 0)
			die("histogram %s may not have a label named \"le\"", metric);
		for (size_t i = 0; i < count; i++) {
			if (names[i].len == (size_t)(end - start) &&
			    memcmp(names[i].p, start, names[i].len) == 0)
				die("metric %s: label \"%.*s\" given twice", metric,
				    (int)names[i].len, start);
		}
		names[count].p = start;
		names[count].len = (size_t)(end - start);
		total += names[count].len + 1;
		count++;
		if (*p == ',') {
			p++;
			while (*p == ' ')
				p++;
			if (*p == '\0')
				die("metric %s: empty label name in \"%s\"", metric, label_names);
		}
	}
	out = xmalloc(count * sizeof(char *) + total + 1);
	dst = (char *)(out + count);
	for (size_t i = 0; i < count; i++) {
		memcpy(dst, names[i].p, names[i].len);
		dst[names[i].len] = '\0';
		out[i] = dst;
		dst += names[i].len + 1;
	}
	*count_r = count;
	return out;
}

/* ---- label values ---- */

/* Length of the valid UTF-8 sequence starting at s (1..4), or 0 if the bytes
 * there are not valid UTF-8 (overlong forms, surrogates and code points past
 * U+10FFFF included). s is NUL-terminated, so reading continuation bytes
 * stops at the terminator, which is never a continuation byte. */
static size_t utf8_seq_len(const unsigned char *s)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++) {
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	}
	return n;
}

/* Copies a label value into dst (SORA_METRIC_MAX_LABEL_VALUE + 1 bytes):
 * invalid UTF-8 bytes become U+FFFD and the copy stops at the last whole
 * character that fits. Returns the length. */
static size_t sanitize_value(const char *value, char *dst)
{
	const unsigned char *s = (const unsigned char *)(value != NULL ? value : "");
	size_t len = 0;

	while (*s != '\0') {
		size_t n = utf8_seq_len(s);
		const unsigned char *src = s;
		size_t out = n;

		if (n == 0) {
			src = (const unsigned char *)"\xef\xbf\xbd";
			out = 3;
			n = 1;
		}
		if (len + out > SORA_METRIC_MAX_LABEL_VALUE)
			break;
		memcpy(dst + len, src, out);
		len += out;
		s += n;
	}
	dst[len] = '\0';
	return len;
}

static uint32_t hash_values(size_t n, char values[][SORA_METRIC_MAX_LABEL_VALUE + 1])
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++) {
		for (const unsigned char *p = (const unsigned char *)values[i]; *p != '\0'; p++)
			h = (h ^ *p) * 16777619u;
		/* The separator keeps ("ab","c") and ("a","bc") apart. */
		h = (h ^ 0xffu) * 16777619u;
	}
	return h;
}

/* ---- series ---- */

static struct sora_metric_series *series_new(struct sora_metric *m, uint32_t hash,
					     char values[][SORA_METRIC_MAX_LABEL_VALUE + 1])
{
	size_t ncounts = m->type == SORA_METRIC_HISTOGRAM ? m->nbounds + 1 : 0;
	size_t size = sizeof(struct sora_metric_series) + ncounts * sizeof(_Atomic uint64_t);
	size_t lens[MAX_LABELS], total = 0;
	struct sora_metric_series *s;
	char *dst;

	size = (size + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
	s = aligned_alloc(CACHE_LINE, size);
	if (s == NULL)
		die("out of memory allocating a series of %s", m->name);
	memset(s, 0, size);
	atomic_init(&s->ival, 0);
	atomic_init(&s->dbits, double_to_bits(0.0));
	for (size_t i = 0; i < ncounts; i++)
		atomic_init(&s->counts[i], 0);
	s->type = m->type;
	s->hash = hash;
	s->family = m;

	for (size_t i = 0; i < m->nlabels; i++) {
		lens[i] = strlen(values[i]);
		total += lens[i] + 1;
	}
	s->values = xmalloc(m->nlabels * sizeof(char *) + total + 1);
	dst = (char *)(s->values + m->nlabels);
	for (size_t i = 0; i < m->nlabels; i++) {
		memcpy(dst, values[i], lens[i] + 1);
		s->values[i] = dst;
		dst += lens[i] + 1;
	}
	return s;
}

static struct sora_metric_series *table_find(struct sora_metric *m, uint32_t hash,
					     char values[][SORA_METRIC_MAX_LABEL_VALUE + 1])
{
	struct sora_metric_series *s = m->table[hash & (m->table_size - 1)];

	for (; s != NULL; s = s->next) {
		size_t i;

		if (s->hash != hash)
			continue;
		for (i = 0; i < m->nlabels; i++) {
			if (strcmp(s->values[i], values[i]) != 0)
				break;
		}
		if (i == m->nlabels)
			return s;
	}
	return NULL;
}

/* Called with the write lock held. */
static void table_insert(struct sora_metric *m, struct sora_metric_series *s)
{
	size_t slot;

	if (m->nentries >= m->table_size) {
		size_t new_size = m->table_size * 2;
		struct sora_metric_series **t = calloc(new_size, sizeof(*t));

		if (t == NULL)
			die("out of memory growing the series table of %s", m->name);
		for (size_t i = 0; i < m->table_size; i++) {
			struct sora_metric_series *e = m->table[i], *next;

			for (; e != NULL; e = next) {
				next = e->next;
				e->next = t[e->hash & (new_size - 1)];
				t[e->hash & (new_size - 1)] = e;
			}
		}
		free(m->table);
		m->table = t;
		m->table_size = new_size;
	}
	slot = s->hash & (m->table_size - 1);
	s->next = m->table[slot];
	m->table[slot] = s;
	m->nentries++;
}

static struct sora_metric_series *series_get(struct sora_metric *m,
					     char values[][SORA_METRIC_MAX_LABEL_VALUE + 1])
{
	uint32_t hash = hash_values(m->nlabels, values);
	struct sora_metric_series *s;
	bool warn = false;

	pthread_rwlock_rdlock(&m->lock);
	s = table_find(m, hash, values);
	/* Once the cap is reached, unknown combinations (typically a client
	 * spraying new values) go to the overflow series without the write
	 * lock, so they cannot stall the other threads either. */
	if (s == NULL)
		s = m->overflow;
	pthread_rwlock_unlock(&m->lock);
	if (s != NULL)
		return s;

	pthread_rwlock_wrlock(&m->lock);
	s = table_find(m, hash, values);
	if (s == NULL && m->nseries < SORA_METRIC_MAX_SERIES) {
		s = series_new(m, hash, values);
		table_insert(m, s);
		m->nseries++;
	} else if (s == NULL) {
		if (m->overflow == NULL) {
			char ovalues[MAX_LABELS][SORA_METRIC_MAX_LABEL_VALUE + 1];

			for (size_t i = 0; i < m->nlabels; i++)
				memcpy(ovalues[i], SORA_METRIC_OVERFLOW_VALUE,
				       sizeof(SORA_METRIC_OVERFLOW_VALUE));
			/* The overflow series lives in the table, outside the
			 * cap, so that label values that happen to be
			 * "__overflow__" find it instead of making a duplicate. */
			m->overflow = table_find(m, hash_values(m->nlabels, ovalues), ovalues);
			if (m->overflow == NULL) {
				m->overflow = series_new(m, hash_values(m->nlabels, ovalues), ovalues);
				table_insert(m, m->overflow);
			}
		}
		s = m->overflow;
		warn = !atomic_exchange(&m->overflow_warned, true);
	}
	pthread_rwlock_unlock(&m->lock);
	if (warn)
		sora_warn(NULL, "metrics: %s reached %d label combinations; further ones are "
			  "counted under label values \"" SORA_METRIC_OVERFLOW_VALUE "\"",
			  m->name, SORA_METRIC_MAX_SERIES);
	return s;
}

struct sora_metric_series *sora_metric_with(struct sora_metric *m, ...)
{
	char values[MAX_LABELS][SORA_METRIC_MAX_LABEL_VALUE + 1];
	va_list ap;

	va_start(ap, m);
	for (size_t i = 0; i < m->nlabels; i++)
		sanitize_value(va_arg(ap, const char *), values[i]);
	va_end(ap);
	return series_get(m, values);
}

/* ---- families ---- */

static void family_free(struct sora_metric *m)
{
	for (size_t i = 0; i < m->table_size; i++) {
		struct sora_metric_series *s = m->table[i], *next;

		for (; s != NULL; s = next) {
			next = s->next;
			free(s->values);
			free(s);
		}
	}
	free(m->table);
	pthread_rwlock_destroy(&m->lock);
	free(m->bounds);
	free(m->labels);
	free(m->help);
	free(m->name);
	free(m);
}

static bool same_bounds(const struct sora_metric *m, const double *bounds, size_t n)
{
	if (m->nbounds != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (m->bounds[i] != bounds[i])
			return false;
	}
	return true;
}

/* Writes the series name: SORA_METRIC_PREFIX + name when prefixed, unless
 * name already starts with the prefix. Registering "connections_total" and
 * "sora_connections_total" therefore gives the same family, and no caller
 * can publish a series without the prefix or with it twice. */
static void full_name(const char *name, bool prefixed, char *buf, size_t size)
{
	const char *prefix = SORA_METRIC_PREFIX;

	if (!prefixed || strncmp(name, prefix, strlen(prefix)) == 0)
		prefix = "";
	if ((size_t)snprintf(buf, size, "%s%s", prefix, name) >= size)
		die("metric name \"%.64s...\" is too long", name);
}

/* prefixed: false only for the standard process_* metrics (see
 * sora_metrics_register_process()). */
static struct sora_metric *family_register(const char *given, const char *help,
					   enum sora_metric_type type,
					   const char *label_names,
					   const double *buckets, size_t nbuckets,
					   bool prefixed)
{
	struct sora_metric *m = NULL;
	size_t nlabels, lo = 0, hi;
	char **labels;
	double *bounds = NULL;
	size_t nbounds = 0;
	char name[MAX_NAME];

	/* The given part must be a name of its own, so "1bad" is refused
	 * even though "sora_1bad" would be valid. */
	if (!valid_metric_name(given))
		die("invalid metric name \"%s\"", given != NULL ? given : "(null)");
	full_name(given, prefixed, name, sizeof(name));
	labels = parse_label_names(name, label_names, type, &nlabels);
	if (type == SORA_METRIC_HISTOGRAM) {
		if (buckets == NULL || nbuckets == 0) {
			buckets = default_buckets;
			nbuckets = sizeof(default_buckets) / sizeof(default_buckets[0]);
		}
		/* A trailing +Inf is implicit; the other bounds must be usable
		 * upper bounds in increasing order or the buckets make no sense. */
		if (isinf(buckets[nbuckets - 1]) && buckets[nbuckets - 1] > 0)
			nbuckets--;
		bounds = xmalloc((nbuckets + 1) * sizeof(double));
		for (size_t i = 0; i < nbuckets; i++) {
			if (isnan(buckets[i]) || (isinf(buckets[i]) && buckets[i] > 0) ||
			    (i > 0 && !(buckets[i] > buckets[i - 1])))
				die("histogram %s: buckets must be strictly increasing and "
				    "finite (bucket %zu)", name, i);
			bounds[i] = buckets[i];
		}
		nbounds = nbuckets;
	}

	pthread_mutex_lock(&registry_lock);
	hi = nfamilies;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(families[mid]->name, name);

		if (cmp == 0) {
			m = families[mid];
			break;
		}
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (m != NULL) {
		bool same = m->type == type && m->nlabels == nlabels;

		for (size_t i = 0; same && i < nlabels; i++)
			same = strcmp(m->labels[i], labels[i]) == 0;
		if (same && type == SORA_METRIC_HISTOGRAM)
			same = same_bounds(m, bounds, nbounds);
		pthread_mutex_unlock(&registry_lock);
		if (!same)
			die("metric %s registered again as a %s with labels \"%s\"%s, first as "
			    "a %s with %zu labels", name, type_name(type),
			    label_names != NULL ? label_names : "",
			    type == SORA_METRIC_HISTOGRAM && m->type == type ? " or other buckets" : "",
			    type_name(m->type), m->nlabels);
		free(labels);
		free(bounds);
		return m;
	}

	m = xmalloc(sizeof(*m));
	memset(m, 0, sizeof(*m));
	m->name = xstrdup(name);
	m->help = xstrdup(help != NULL ? help : "");
	m->type = type;
	m->nlabels = nlabels;
	m->labels = labels;
	m->bounds = bounds;
	m->nbounds = nbounds;
	if (pthread_rwlock_init(&m->lock, NULL) != 0)
		die("cannot initialise the lock of %s", name);
	m->table_size = 16;
	m->table = calloc(m->table_size, sizeof(*m->table));
	if (m->table == NULL)
		die("out of memory registering %s", name);
	atomic_init(&m->overflow_warned, false);
	atomic_init(&m->negative_warned, false);
	if (nlabels == 0) {
		/* A family without labels has exactly one series; creating it
		 * now makes the metric show as 0 before its first event, which
		 * is what rate() and alerting on absence expect. */
		char none[1][SORA_METRIC_MAX_LABEL_VALUE + 1];

		table_insert(m, series_new(m, hash_values(0, none), none));
		m->nseries = 1;
	}

	if (nfamilies == families_cap) {
		size_t cap = families_cap == 0 ? 32 : families_cap * 2;
		struct sora_metric **f = realloc(families, cap * sizeof(*f));

		if (f == NULL)
			die("out of memory registering %s", name);
		families = f;
		families_cap = cap;
	}
	memmove(&families[lo + 1], &families[lo], (nfamilies - lo) * sizeof(*families));
	families[lo] = m;
	nfamilies++;
	pthread_mutex_unlock(&registry_lock);
	return m;
}

struct sora_metric *sora_metric_counter(const char *name, const char *help,
					const char *label_names)
{
	return family_register(name, help, SORA_METRIC_COUNTER, label_names, NULL, 0, true);
}

struct sora_metric *sora_metric_gauge(const char *name, const char *help,
				      const char *label_names)
{
	return family_register(name, help, SORA_METRIC_GAUGE, label_names, NULL, 0, true);
}

struct sora_metric *sora_metric_histogram(const char *name, const char *help,
					  const char *label_names,
					  const double *buckets, size_t nbuckets)
{
	return family_register(name, help, SORA_METRIC_HISTOGRAM, label_names, buckets,
			       nbuckets, true);
}

/* ---- updates (hot path) ---- */

static void wrong_type(const struct sora_metric_series *s, const char *op)
	__attribute__((noreturn));

static void wrong_type(const struct sora_metric_series *s, const char *op)
{
	die("%s() called on %s, which is a %s", op, s->family->name, type_name(s->type));
}

void sora_metric_inc(struct sora_metric_series *s)
{
	if (s->type == SORA_METRIC_COUNTER)
		atomic_fetch_add_explicit(&s->ival, 1, memory_order_relaxed);
	else if (s->type == SORA_METRIC_GAUGE)
		atomic_add_double(&s->dbits, 1.0);
	else
		wrong_type(s, "sora_metric_inc");
}

void sora_metric_dec(struct sora_metric_series *s)
{
	if (s->type != SORA_METRIC_GAUGE)
		wrong_type(s, "sora_metric_dec");
	atomic_add_double(&s->dbits, -1.0);
}

void sora_metric_add(struct sora_metric_series *s, double v)
{
	if (s->type == SORA_METRIC_GAUGE) {
		atomic_add_double(&s->dbits, v);
		return;
	}
	if (s->type != SORA_METRIC_COUNTER)
		wrong_type(s, "sora_metric_add");
	if (!(v >= 0)) {
		/* A counter that goes down breaks rate(); dropping the update
		 * keeps the series usable, the warning points at the bug. */
		if (!atomic_exchange(&s->family->negative_warned, true))
			sora_warn(NULL, "metrics: ignoring negative or NaN add to counter %s",
				  s->family->name);
		return;
	}
	if (v < INT_FAST_LIMIT && v == (double)(uint64_t)v)
		atomic_fetch_add_explicit(&s->ival, (uint64_t)v, memory_order_relaxed);
	else
		atomic_add_double(&s->dbits, v);
}

void sora_metric_set(struct sora_metric_series *s, double v)
{
	if (s->type != SORA_METRIC_GAUGE)
		wrong_type(s, "sora_metric_set");
	atomic_store_explicit(&s->dbits, double_to_bits(v), memory_order_relaxed);
}

void sora_metric_observe(struct sora_metric_series *s, double v)
{
	const struct sora_metric *m = s->family;
	size_t lo = 0, hi = m->nbounds;

	if (s->type != SORA_METRIC_HISTOGRAM)
		wrong_type(s, "sora_metric_observe");
	/* First bound >= v; NaN compares false everywhere and lands in +Inf. */
	if (isnan(v))
		lo = m->nbounds;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->bounds[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	atomic_fetch_add_explicit(&s->counts[lo], 1, memory_order_relaxed);
	atomic_add_double(&s->dbits, v);
}

double sora_metric_get(const struct sora_metric_series *s)
{
	double d = bits_to_double(atomic_load_explicit(&s->dbits, memory_order_relaxed));

	if (s->type == SORA_METRIC_COUNTER)
		return (double)atomic_load_explicit(&s->ival, memory_order_relaxed) + d;
	return d;
}

uint64_t sora_metric_histogram_count(const struct sora_metric_series *s)
{
	uint64_t total = 0;

	if (s->type != SORA_METRIC_HISTOGRAM)
		wrong_type(s, "sora_metric_histogram_count");
	for (size_t i = 0; i <= s->family->nbounds; i++)
		total += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
	return total;
}

/* ---- process metrics ---- */

/* Reads a small /proc file into buf; returns its length or -1. */
static ssize_t read_proc(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (f == NULL)
		return -1;
	n = fread(buf, 1, size - 1, f);
	fclose(f);
	buf[n] = '\0';
	return (ssize_t)n;
}

/* Wall-clock start time of this process: field 22 of /proc/self/stat
 * (starttime, in clock ticks since boot) over the clock tick rate, plus the
 * boot time (btime in /proc/stat, seconds since the epoch). Falls back to
 * now if either file is missing or unreadable. */
static double process_start_time(void)
{
	char self[1024], sys[8192];
	const char *p, *bt;
	unsigned long long ticks, btime;
	long hz = sysconf(_SC_CLK_TCK);

	if (read_proc("/proc/self/stat", self, sizeof(self)) <= 0 ||
	    read_proc("/proc/stat", sys, sizeof(sys)) <= 0 || hz <= 0)
		goto fallback;
	/* Field 2 (comm) is in parentheses and may contain spaces and ')'
	 * itself, so count from its last ')'. "comm) " is followed by field
	 * 3 (state); starttime is 19 fields further on. */
	p = strrchr(self, ')');
	if (p == NULL || p[1] != ' ')
		goto fallback;
	p += 2;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (p == NULL)
			goto fallback;
		p++;
	}
	bt = strstr(sys, "\nbtime ");
	if (bt == NULL || sscanf(p, "%llu", &ticks) != 1 || sscanf(bt + 7, "%llu", &btime) != 1)
		goto fallback;
	return (double)btime + (double)ticks / (double)hz;
fallback:
	return (double)time(NULL);
}

static void process_collect(void)
{
	struct rusage ru;
	struct rlimit rl;
	char statm[256];
	unsigned long long vsz, rss;
	long page = sysconf(_SC_PAGESIZE);
	DIR *d;

	pthread_mutex_lock(&process_lock);
	if (proc_cpu == NULL) {
		pthread_mutex_unlock(&process_lock);
		return;
	}
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
			     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;

		/* The counter is owned by this function alone, so storing the
		 * kernel's running total is the same as adding the difference. */
		atomic_store_explicit(&proc_cpu->dbits, double_to_bits(cpu), memory_order_relaxed);
	}
	if (read_proc("/proc/self/statm", statm, sizeof(statm)) > 0 &&
	    sscanf(statm, "%llu %llu", &vsz, &rss) == 2 && page > 0) {
		sora_metric_set(proc_vsz, (double)vsz * (double)page);
		sora_metric_set(proc_rss, (double)rss * (double)page);
	}
	d = opendir("/proc/self/fd");
	if (d != NULL) {
		struct dirent *e;
		long n = 0;

		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] != '.')
				n++;
		}
		/* The directory stream itself holds one descriptor. */
		sora_metric_set(proc_fds, (double)(n - 1));
		closedir(d);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		sora_metric_set(proc_maxfds, rl.rlim_cur == RLIM_INFINITY ? INFINITY
					     : (double)rl.rlim_cur);
	pthread_mutex_unlock(&process_lock);
}

/* A process metric under its standard name, without SORA_METRIC_PREFIX. */
static struct sora_metric_series *process_metric(enum sora_metric_type type, const char *name,
						 const char *help)
{
	return sora_metric_with(family_register(name, help, type, "", NULL, 0, false));
}

void sora_metrics_register_process(void)
{
	pthread_mutex_lock(&process_lock);
	if (proc_cpu == NULL) {
		/* These keep the names every Prometheus client library exports
		 * for its process (process_start_time_seconds, ...), without
		 * the sora_ prefix: the stock dashboards and alerts such as
		 * "time() - process_start_time_seconds < 300" (restarted) or
		 * "process_open_fds / process_max_fds > 0.8" look for exactly
		 * these names, and the job and instance labels already say
		 * which server a series comes from. */
		sora_metric_set(process_metric(SORA_METRIC_GAUGE, "process_start_time_seconds",
			"Start time of the process since unix epoch in seconds."),
			process_start_time());
		proc_cpu = process_metric(SORA_METRIC_COUNTER, "process_cpu_seconds_total",
			"Total user and system CPU time spent in seconds.");
		proc_rss = process_metric(SORA_METRIC_GAUGE, "process_resident_memory_bytes",
			"Resident memory size in bytes.");
		proc_vsz = process_metric(SORA_METRIC_GAUGE, "process_virtual_memory_bytes",
			"Virtual memory size in bytes.");
		proc_fds = process_metric(SORA_METRIC_GAUGE, "process_open_fds",
			"Number of open file descriptors.");
		proc_maxfds = process_metric(SORA_METRIC_GAUGE, "process_max_fds",
			"Maximum number of open file descriptors.");
	}
	pthread_mutex_unlock(&process_lock);
}

/* ---- exposition ---- */

/* Formats a sample value or bucket bound the way the reference client does
 * (Go's strconv 'g' with shortest precision): the fewest significant digits
 * that read back as the same double, in exponent form below 1e-4 and from
 * 1e6 on, and +Inf, -Inf, NaN spelled as the format wants them. */
static void format_double(double v, char *buf, size_t size)
{
	char *e;
	long exp;
	int prec;

	if (isnan(v)) {
		sora_strlcpy(buf, "NaN", size);
		return;
	}
	if (isinf(v)) {
		sora_strlcpy(buf, v > 0 ? "+Inf" : "-Inf", size);
		return;
	}
	for (prec = 0; prec < 17; prec++) {
		snprintf(buf, size, "%.*e", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	e = strchr(buf, 'e');
	exp = e != NULL ? strtol(e + 1, NULL, 10) : 0;
	if (exp < -4 || exp >= 6)
		return;
	snprintf(buf, size, "%.*f", prec > exp ? (int)(prec - exp) : 0, v);
}

/* HELP escapes backslash and newline; label values also the double quote. */
static int append_escaped(struct sora_buf *b, const char *s, bool quote)
{
	const char *run = s;

	for (; *s != '\0'; s++) {
		const char *esc = NULL;

		if (*s == '\\')
			esc = "\\\\";
		else if (*s == '\n')
			esc = "\\n";
		else if (*s == '"' && quote)
			esc = "\\\"";
		if (esc == NULL)
			continue;
		if (sora_buf_append(b, run, (size_t)(s - run)) < 0 ||
		    sora_buf_append(b, esc, 2) < 0)
			return -1;
		run = s + 1;
	}
	return sora_buf_append(b, run, (size_t)(s - run));
}

/* Writes name{l1="v1",...,le="x"} ; le may be NULL. */
static int append_series_name(struct sora_buf *b, const struct sora_metric *m,
			      const char *suffix, const struct sora_metric_series *s,
			      const char *le)
{
	bool braces = m->nlabels > 0 || le != NULL;

	if (sora_buf_append_str(b, m->name) < 0 || sora_buf_append_str(b, suffix) < 0)
		return -1;
	if (braces && sora_buf_append(b, "{", 1) < 0)
		return -1;
	for (size_t i = 0; i < m->nlabels; i++) {
		if ((i > 0 && sora_buf_append(b, ",", 1) < 0) ||
		    sora_buf_append_str(b, m->labels[i]) < 0 ||
		    sora_buf_append(b, "=\"", 2) < 0 ||
		    append_escaped(b, s->values[i], true) < 0 ||
		    sora_buf_append(b, "\"", 1) < 0)
			return -1;
	}
	if (le != NULL && sora_buf_printf(b, "%sle=\"%s\"", m->nlabels > 0 ? "," : "", le) < 0)
		return -1;
	if (braces && sora_buf_append(b, "}", 1) < 0)
		return -1;
	return 0;
}

static int append_sample(struct sora_buf *b, const struct sora_metric *m, const char *suffix,
			 const struct sora_metric_series *s, const char *le,
			 const char *value)
{
	if (append_series_name(b, m, suffix, s, le) < 0)
		return -1;
	return sora_buf_printf(b, " %s\n", value);
}

static int render_series(struct sora_buf *b, const struct sora_metric *m,
			 const struct sora_metric_series *s)
{
	char num[40], le[40];
	uint64_t cum = 0;

	if (m->type == SORA_METRIC_COUNTER) {
		uint64_t i = atomic_load_explicit(&s->ival, memory_order_relaxed);
		double d = bits_to_double(atomic_load_explicit(&s->dbits, memory_order_relaxed));

		/* Whole counts print exactly even past 2^53. */
		if (d == 0)
			snprintf(num, sizeof(num), "%" PRIu64, i);
		else
			format_double((double)i + d, num, sizeof(num));
		return append_sample(b, m, "", s, NULL, num);
	}
	if (m->type == SORA_METRIC_GAUGE) {
		format_double(sora_metric_get(s), num, sizeof(num));
		return append_sample(b, m, "", s, NULL, num);
	}
	for (size_t i = 0; i <= m->nbounds; i++) {
		cum += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
		if (i < m->nbounds)
			format_double(m->bounds[i], le, sizeof(le));
		else
			sora_strlcpy(le, "+Inf", sizeof(le));
		snprintf(num, sizeof(num), "%" PRIu64, cum);
		if (append_sample(b, m, "_bucket", s, le, num) < 0)
			return -1;
	}
	format_double(bits_to_double(atomic_load_explicit(&s->dbits, memory_order_relaxed)),
		      num, sizeof(num));
	if (append_sample(b, m, "_sum", s, NULL, num) < 0)
		return -1;
	/* _count is the +Inf bucket as read above, so the two always agree
	 * even while other threads observe. */
	snprintf(num, sizeof(num), "%" PRIu64, cum);
	return append_sample(b, m, "_count", s, NULL, num);
}

static int series_cmp(const void *a, const void *b)
{
	const struct sora_metric_series *x = *(const struct sora_metric_series *const *)a;
	const struct sora_metric_series *y = *(const struct sora_metric_series *const *)b;

	for (size_t i = 0; i < x->family->nlabels; i++) {
		int c = strcmp(x->values[i], y->values[i]);

		if (c != 0)
			return c;
	}
	return 0;
}

static int render_family(struct sora_buf *b, struct sora_metric *m)
{
	struct sora_metric_series **list;
	size_t n = 0;
	int ret = -1;

	pthread_rwlock_rdlock(&m->lock);
	list = malloc((m->nentries + 1) * sizeof(*list));
	if (list == NULL) {
		pthread_rwlock_unlock(&m->lock);
		return -1;
	}
	for (size_t i = 0; i < m->table_size; i++) {
		for (struct sora_metric_series *s = m->table[i]; s != NULL; s = s->next)
			list[n++] = s;
	}
	pthread_rwlock_unlock(&m->lock);
	/* Series are never freed while the process runs, so they can be read
	 * after the lock is gone; new ones simply show up next time. */
	if (n == 0) {
		ret = 0;
		goto out;
	}
	qsort(list, n, sizeof(*list), series_cmp);
	if (sora_buf_printf(b, "# HELP %s ", m->name) < 0 ||
	    append_escaped(b, m->help, false) < 0 ||
	    sora_buf_printf(b, "\n# TYPE %s %s\n", m->name, type_name(m->type)) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (render_series(b, m, list[i]) < 0)
			goto out;
	}
	ret = 0;
out:
	free(list);
	return ret;
}

int sora_metrics_render(struct sora_buf *buf)
{
	int ret = 0;

	process_collect();
	pthread_mutex_lock(&registry_lock);
	for (size_t i = 0; i < nfamilies && ret == 0; i++)
		ret = render_family(buf, families[i]);
	pthread_mutex_unlock(&registry_lock);
	return ret;
}

void sora_metrics_reset_for_tests(void)
{
	pthread_mutex_lock(&process_lock);
	proc_cpu = proc_rss = proc_vsz = proc_fds = proc_maxfds = NULL;
	pthread_mutex_unlock(&process_lock);
	pthread_mutex_lock(&registry_lock);
	for (size_t i = 0; i < nfamilies; i++)
		family_free(families[i]);
	free(families);
	families = NULL;
	nfamilies = families_cap = 0;
	pthread_mutex_unlock(&registry_lock);
}
