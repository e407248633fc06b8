/* Prometheus metrics: a process-wide registry of counters, gauges and
 * histograms with labels, rendered in the text exposition format 0.0.4.
 *
 * Usage: register a family once (at start-up, or lazily and cache the
 * pointer), look a labeled series up once with sora_metric_with() and keep
 * the handle; updates through the handle are lock-free relaxed atomics, so
 * they are cheap enough for every event-loop and worker thread at high rates.
 *
 *   static struct sora_metric *conns;
 *   conns = sora_metric_gauge("connections_current",
 *                             "Open client connections.", "protocol");
 *   struct sora_metric_series *imap = sora_metric_with(conns, "imap");
 *   sora_metric_inc(imap); ... sora_metric_dec(imap);
 *
 * Names: every family is published as SORA_METRIC_PREFIX + the name given
 * ("connections_current" becomes sora_connections_current), so all of
 * Sora's series share one prefix however a caller spells them. A name that
 * already starts with the prefix is taken as it is (never doubled), so
 * "sora_x_total" and "x_total" are the same family. The only unprefixed
 * series are the standard process_* ones of sora_metrics_register_process().
 *
 * Ownership: families and series are owned by the registry and live until
 * process exit (or sora_metrics_reset_for_tests()); callers never free them.
 * Names, help texts and label values passed in are copied.
 *
 * Bounded memory: a family holds at most SORA_METRIC_MAX_SERIES label
 * combinations. Past that, sora_metric_with() returns one overflow series
 * whose label values are all "__overflow__", and a warning is logged once
 * per family, so label values that come from clients cannot make memory grow
 * without bound. Label values are also cut at SORA_METRIC_MAX_LABEL_VALUE
 * bytes and invalid UTF-8 is replaced by U+FFFD, because the exposition
 * format requires UTF-8 and a scraper rejects the whole page otherwise.
 *
 * Programming errors (an invalid metric or label name, registering a name
 * again with another type, other label names or other buckets, passing a
 * series of the wrong type to an update function) log an error and abort().
 *
 * Thread safety: every function may be called from any thread, except
 * sora_metrics_reset_for_tests(), which must not run concurrently with
 * anything else. */
#ifndef SORA_METRICS_METRICS_H
#define SORA_METRICS_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct sora_buf;

/* Prefix of every series name but the standard process_* metrics. */
#define SORA_METRIC_PREFIX "sora_"
/* Most label combinations one family keeps before using the overflow series. */
#define SORA_METRIC_MAX_SERIES 10000
/* Longest label value kept, in bytes; longer values are cut. */
#define SORA_METRIC_MAX_LABEL_VALUE 256
/* Label value of every label in a family's overflow series. */
#define SORA_METRIC_OVERFLOW_VALUE "__overflow__"

enum sora_metric_type {
	SORA_METRIC_COUNTER,
	SORA_METRIC_GAUGE,
	SORA_METRIC_HISTOGRAM,
};

struct sora_metric;            /* a family (name + help + type + label names) */
struct sora_metric_series;     /* one label combination; valid until process exit */

/* Registers a family, or returns the already registered one of that name.
 * name (without or with SORA_METRIC_PREFIX, see "Names" above) must match
 * [a-zA-Z_:][a-zA-Z0-9_:]*; label_names is comma-separated
 * ("" or NULL for none), each matching [a-zA-Z_][a-zA-Z0-9_]* and not
 * starting with "__". A family without labels shows as 0 from registration
 * on; a labeled family appears in the output once it has a series. */
struct sora_metric *sora_metric_counter(const char *name, const char *help,
					const char *label_names);
struct sora_metric *sora_metric_gauge(const char *name, const char *help,
				      const char *label_names);
/* buckets: strictly increasing upper bounds; a trailing +Inf may be given
 * or left out (it is always added). NULL/0 selects the default buckets
 * (.005 .01 .025 .05 .1 .25 .5 1 2.5 5 10, i.e. seconds of latency). The
 * array is copied. "le" may not be a label name. */
struct sora_metric *sora_metric_histogram(const char *name, const char *help,
					  const char *label_names,
					  const double *buckets, size_t nbuckets);

/* Returns the series for the given label values (const char *, exactly as
 * many as the family has label names; NULL counts as ""). The same values
 * return the same pointer. Takes a read lock (a write lock the first time a
 * combination is seen), so keep the handle instead of calling this for every
 * event when the label values are fixed. */
struct sora_metric_series *sora_metric_with(struct sora_metric *m, ...);

/* Counter or gauge +1. */
void sora_metric_inc(struct sora_metric_series *s);
/* Counter (v >= 0; negative or NaN values are ignored, as a counter only
 * goes up) or gauge. */
void sora_metric_add(struct sora_metric_series *s, double v);
/* Gauge only. */
void sora_metric_set(struct sora_metric_series *s, double v);
/* Gauge only: -1. */
void sora_metric_dec(struct sora_metric_series *s);
/* Histogram only. NaN lands in the +Inf bucket and makes the sum NaN, as
 * in the reference client. */
void sora_metric_observe(struct sora_metric_series *s, double v);

/* Current value of a counter or gauge (for tests and for code that exports
 * a value elsewhere, such as an admin status page). */
double sora_metric_get(const struct sora_metric_series *s);
/* Number of observations of a histogram series. */
uint64_t sora_metric_histogram_count(const struct sora_metric_series *s);

/* Appends all families to buf in the text format 0.0.4: families sorted by
 * name, series sorted by label values, so the output is stable. Returns 0,
 * or -1 if buf hit its cap or memory ran out (buf then holds a partial
 * page and should be discarded). */
int sora_metrics_render(struct sora_buf *buf);

/* Registers the standard process metrics: process_start_time_seconds,
 * process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds and process_max_fds. They
 * keep these standard names of the Prometheus client libraries, without
 * SORA_METRIC_PREFIX, because dashboards and alerts written for any
 * process look for them. The start time is read once (/proc/self/stat
 * starttime + /proc/stat btime); the other values are refreshed (from /proc
 * and getrusage) at each render.
 * Idempotent. */
void sora_metrics_register_process(void);

/* Tests only: forgets and frees all families and series. Every pointer
 * obtained before becomes invalid. Not thread-safe. */
void sora_metrics_reset_for_tests(void);

#endif
