/* Per-session memory accounting: see session-memory.h. */
#include "backend/session/session-memory.h"

#include <inttypes.h>
#include <stddef.h>

#include "common/core/log.h"
#include "common/metrics/metrics.h"

/* Peaks from one slice of a small message to a whole limit's worth. */
static const double peak_buckets[] = {
	16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 104857600, 268435456,
};

static struct sora_metric *peak_family(void)
{
	return sora_metric_histogram("session_memory_peak_bytes",
				     "Highest memory a session held for its commands (bytes), "
				     "observed at session close.",
				     "protocol", peak_buckets,
				     sizeof(peak_buckets) / sizeof(peak_buckets[0]));
}

static struct sora_metric *exceeded_family(void)
{
	return sora_metric_counter("session_memory_limit_exceeded_total",
				   "Commands refused because they would pass session_memory_limit.",
				   "protocol,operation");
}

void sora_session_memory_init(struct sora_session_memory *m, const char *protocol, uint64_t limit)
{
	m->protocol = protocol;
	m->limit = limit;
	m->used = 0;
	m->peak = 0;
	/* Registered up front so that both families show in the exposition
	 * from the first session on, not only after the first event. */
	(void)peak_family();
	(void)exceeded_family();
}

void sora_session_memory_refused(struct sora_session_memory *m, const char *operation)
{
	sora_metric_inc(sora_metric_with(exceeded_family(), m->protocol, operation));
}

int sora_session_memory_reserve(struct sora_session_memory *m, uint64_t bytes, const char *operation)
{
	if (m->limit > 0 && (bytes > m->limit || m->used > m->limit - bytes)) {
		sora_session_memory_refused(m, operation);
		return -1;
	}
	m->used += bytes;
	if (m->used > m->peak)
		m->peak = m->used;
	return 0;
}

void sora_session_memory_release(struct sora_session_memory *m, uint64_t bytes)
{
	m->used = bytes <= m->used ? m->used - bytes : 0;
}

uint64_t sora_session_memory_available(const struct sora_session_memory *m)
{
	if (m->limit == 0)
		return UINT64_MAX;
	return m->used < m->limit ? m->limit - m->used : 0;
}

void sora_session_memory_close(struct sora_session_memory *m, const struct sora_log_ctx *ctx)
{
	sora_info(ctx, "session memory peak %" PRIu64 " bytes (limit %" PRIu64 "%s)", m->peak,
		  m->limit, m->limit == 0 ? ", unlimited" : "");
	sora_metric_observe(sora_metric_with(peak_family(), m->protocol), (double)m->peak);
	m->peak = 0;
}
