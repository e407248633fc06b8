/* Logging.
 *
 * One process-wide logger configured once at start-up (sora_log_setup) and
 * then used from every thread; each call formats into a stack buffer and
 * writes one line with a single write(2), so lines from threads never
 * interleave. Every line may carry a context: session id, protocol, peer
 * address and user. Client bytes must go through sora_log_escape() (or the
 * "%S"-free helpers below) before being logged; passwords, AUTH blobs and
 * message bodies are never logged at all.
 *
 * Formats: "console" (human, key=value) and "json" (one object per line).
 * Outputs: "stderr" (default), "stdout", "syslog", or a file path. */
#ifndef SORA_CORE_LOG_H
#define SORA_CORE_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include "common/core/str.h"

enum sora_log_level {
	SORA_LOG_DEBUG = 0,
	SORA_LOG_INFO,
	/* Normal but significant: a master login, an administrative action. */
	SORA_LOG_NOTICE,
	SORA_LOG_WARN,
	SORA_LOG_ERROR,
};

/* Who a line is about. All fields borrowed, any may be NULL. */
struct sora_log_ctx {
	const char *session;  /* session id, e.g. "a1b2c3d4" */
	const char *proto;    /* "imap", "pop3", "lmtp", "managesieve", ... */
	const char *peer;     /* "203.0.113.5:51234" (after PROXY protocol) */
	const char *user;     /* authenticated or attempted user, escaped */
};

/* Configures the global logger. level: "debug"|"info"|"notice"|"warn"|"error";
 * format: "console"|"json"; output: "stderr"|"stdout"|"syslog"|path.
 * Returns 0, or -1 with *error_r set (static string). Not thread-safe: call
 * before starting threads (and on SIGHUP from the main thread only). */
int sora_log_setup(const char *level, const char *format, const char *output,
		   const char **error_r);
int sora_log_parse_level(const char *s, enum sora_log_level *level_r);
void sora_log_set_level(enum sora_log_level level);
/* Name used in syslog and as "svc" field, e.g. "sora-backend". */
void sora_log_set_ident(const char *ident);
int sora_log_enabled(enum sora_log_level level);

void sora_log(enum sora_log_level level, const struct sora_log_ctx *ctx,
	      const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void sora_logv(enum sora_log_level level, const struct sora_log_ctx *ctx,
	       const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

#define sora_debug(ctx, ...) do { if (sora_log_enabled(SORA_LOG_DEBUG)) sora_log(SORA_LOG_DEBUG, ctx, __VA_ARGS__); } while (0)
#define sora_info(ctx, ...)  sora_log(SORA_LOG_INFO, ctx, __VA_ARGS__)
#define sora_notice(ctx, ...) sora_log(SORA_LOG_NOTICE, ctx, __VA_ARGS__)
#define sora_warn(ctx, ...)  sora_log(SORA_LOG_WARN, ctx, __VA_ARGS__)
#define sora_error(ctx, ...) sora_log(SORA_LOG_ERROR, ctx, __VA_ARGS__)

/* Writes an escaped, NUL-terminated, printable-ASCII rendering of s into dst
 * (size bytes): bytes outside 0x20..0x7e and '\\' and '"' become \xNN / \\ /
 * \". Output longer than size-1 is cut and ends in "...". Returns dst. */
char *sora_log_escape(struct sora_str s, char *dst, size_t size);

#endif
