/* Logging (see log.h for the contract).
 *
 * A line is built in a bounded stack buffer and handed to the kernel with
 * one write(2). LOG_LINE_MAX equals PIPE_BUF on Linux, so a line written to
 * a pipe (systemd's stderr capture, a log shipper) is never split by another
 * thread's line, and O_APPEND makes the same true for files.
 *
 * Output changes (sora_log_setup on SIGHUP, to reopen a rotated file) swap
 * the descriptor under a reader/writer lock: every line holds the read side
 * across its write(2), and setup closes the old descriptor only while
 * holding the write side. Without that, a thread could write into a number
 * that close() had just freed and open() had handed to an unrelated file.
 * The lock prefers writers so that a busy logger cannot starve a reopen.
 *
 * Text is sanitised in both formats: control bytes and invalid UTF-8 become
 * \xNN, so nothing a client sends can start a new line, forge a field or
 * break the JSON. Callers still escape client bytes with sora_log_escape();
 * this is the second line of defence, not the first. */
#include "common/core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX      4096
#define LOG_IDENT_MAX     64
/* Each context value is cut after this many source bytes so the fixed part
 * of a line always fits and only the message is ever shortened (which keeps
 * truncated JSON lines valid). */
#define LOG_CTX_VALUE_MAX 128
/* Worst case growth of one source byte: "\u00NN" in JSON. */
#define LOG_ESCAPE_WORST  6
/* Room kept back for the truncation marker, the JSON closing and "\n\0". */
#define LOG_TAIL_RESERVE  (3 + 2 + 2)
#define LOG_TRUNC_MARKER  "..."

_Static_assert(sizeof("{\"ts\":\"2026-11-21T22:53:01.123Z\",\"level\":\"notice\",\"svc\":\"\"") +
	       LOG_IDENT_MAX * LOG_ESCAPE_WORST +
	       4 * (sizeof(",\"session\":\"\"") + LOG_CTX_VALUE_MAX * LOG_ESCAPE_WORST + 3) +
	       sizeof(",\"msg\":\"") + LOG_TAIL_RESERVE < LOG_LINE_MAX,
	       "the fixed part of a log line must always fit");

enum log_format {
	LOG_FORMAT_CONSOLE = 0,
	LOG_FORMAT_JSON,
};

enum log_output {
	LOG_OUTPUT_FD = 0,   /* stderr, stdout or a file */
	LOG_OUTPUT_SYSLOG,
};

static struct {
	atomic_int level;
	atomic_int format;
	pthread_rwlock_t lock;  /* guards output, fd, fd_owned, syslog_open */
	enum log_output output;
	int fd;
	bool fd_owned;          /* a file we opened and must close */
	bool syslog_open;
	/* openlog() keeps the pointer, so the name lives here for good. */
	char ident[LOG_IDENT_MAX];
} logger = {
	.level = SORA_LOG_INFO,
	.format = LOG_FORMAT_CONSOLE,
	.lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP,
	.output = LOG_OUTPUT_FD,
	.fd = STDERR_FILENO,
	.fd_owned = false,
	.syslog_open = false,
	.ident = "sora",
};

static const char *const level_upper[] = { "DEBUG", "INFO", "NOTICE", "WARN", "ERROR" };
static const char *const level_lower[] = { "debug", "info", "notice", "warn", "error" };
static const char hex_digits[] = "0123456789abcdef";

int sora_log_parse_level(const char *s, enum sora_log_level *level_r)
{
	if (s == NULL)
		return -1;
	for (int i = SORA_LOG_DEBUG; i <= SORA_LOG_ERROR; i++) {
		if (strcasecmp(s, level_lower[i]) == 0) {
			*level_r = (enum sora_log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "warning") == 0) {
		*level_r = SORA_LOG_WARN;
		return 0;
	}
	return -1;
}

void sora_log_set_level(enum sora_log_level level)
{
	if (level < SORA_LOG_DEBUG || level > SORA_LOG_ERROR)
		return;
	atomic_store_explicit(&logger.level, (int)level, memory_order_relaxed);
}

void sora_log_set_ident(const char *ident)
{
	if (ident == NULL || ident[0] == '\0')
		return;
	sora_strlcpy(logger.ident, ident, sizeof(logger.ident));
}

int sora_log_enabled(enum sora_log_level level)
{
	return (int)level >= atomic_load_explicit(&logger.level, memory_order_relaxed);
}

/* NULL and "" stand for the defaults so that a config without [logging]
 * and one with `output = ""` behave alike. */
static bool is_default(const char *s)
{
	return s == NULL || s[0] == '\0';
}

int sora_log_setup(const char *level, const char *format, const char *output,
		   const char **error_r)
{
	enum sora_log_level new_level = SORA_LOG_INFO;
	enum log_format new_format = LOG_FORMAT_CONSOLE;
	enum log_output new_output = LOG_OUTPUT_FD;
	int new_fd = STDERR_FILENO;
	bool new_owned = false;
	int old_fd;
	bool old_owned;

	if (!is_default(level) && sora_log_parse_level(level, &new_level) < 0) {
		*error_r = "unknown log level (expected debug, info, notice, warn or error)";
		return -1;
	}
	if (is_default(format) || strcmp(format, "console") == 0) {
		new_format = LOG_FORMAT_CONSOLE;
	} else if (strcmp(format, "json") == 0) {
		new_format = LOG_FORMAT_JSON;
	} else {
		*error_r = "unknown log format (expected console or json)";
		return -1;
	}
	if (is_default(output) || strcmp(output, "stderr") == 0) {
		new_fd = STDERR_FILENO;
	} else if (strcmp(output, "stdout") == 0) {
		new_fd = STDOUT_FILENO;
	} else if (strcmp(output, "syslog") == 0) {
		new_output = LOG_OUTPUT_SYSLOG;
		new_fd = -1;
	} else {
		new_fd = open(output, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY,
			      0640);
		if (new_fd < 0) {
			*error_r = "cannot open the log file";
			return -1;
		}
		new_owned = true;
	}

	pthread_rwlock_wrlock(&logger.lock);
	old_fd = logger.fd;
	old_owned = logger.fd_owned;
	logger.output = new_output;
	logger.fd = new_fd;
	logger.fd_owned = new_owned;
	if (new_output == LOG_OUTPUT_SYSLOG && !logger.syslog_open) {
		/* LOG_MAIL: syslog configurations route the mail facility
		 * to the mail log, where operators look for a mail server. */
		openlog(logger.ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
		logger.syslog_open = true;
	} else if (new_output != LOG_OUTPUT_SYSLOG && logger.syslog_open) {
		closelog();
		logger.syslog_open = false;
	}
	atomic_store_explicit(&logger.format, (int)new_format, memory_order_relaxed);
	atomic_store_explicit(&logger.level, (int)new_level, memory_order_relaxed);
	/* No line can be mid-write on old_fd while the write lock is held. */
	if (old_owned && old_fd >= 0)
		close(old_fd);
	pthread_rwlock_unlock(&logger.lock);
	return 0;
}

/* ---- line building ----------------------------------------------------- */

/* A bounded line under construction. Appends are all or nothing per unit
 * (one character or one escape sequence); the first unit that does not fit
 * sets `cut` and everything after it is dropped, so the text is always a
 * clean prefix and never ends in half an escape or half a UTF-8 sequence. */
struct line {
	char *buf;
	size_t len;
	size_t limit;   /* content stops here; the tail reserve lies beyond */
	bool cut;
};

static void line_put(struct line *l, const char *s, size_t n)
{
	if (l->cut || n > l->limit - l->len) {
		l->cut = true;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void line_puts(struct line *l, const char *s)
{
	line_put(l, s, strlen(s));
}

/* Length of the valid UTF-8 sequence of two to four bytes at p (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_seq_len(const unsigned char *p, size_t avail)
{
	size_t n;
	unsigned char lo = 0x80, hi = 0xBF;

	if (p[0] >= 0xC2 && p[0] <= 0xDF) {
		n = 2;
	} else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
		n = 3;
		if (p[0] == 0xE0)
			lo = 0xA0;
		else if (p[0] == 0xED)
			hi = 0x9F;
	} else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
		n = 4;
		if (p[0] == 0xF0)
			lo = 0x90;
		else if (p[0] == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	if (avail < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++) {
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	}
	return n;
}

/* The text \xNN for c. In JSON the backslash itself must be escaped; it is
 * written as one unit with the rest so a cut can never leave a lone
 * backslash before the closing quote. */
static void put_hex_escape(struct line *l, enum log_format fmt, unsigned char c)
{
	char e[5] = { '\\', '\\', 'x', hex_digits[c >> 4], hex_digits[c & 0x0F] };

	if (fmt == LOG_FORMAT_JSON)
		line_put(l, e, sizeof(e));
	else
		line_put(l, e + 1, sizeof(e) - 1);
}

/* Appends up to max source bytes of s (all of it when max is 0), sanitised
 * for the line's format. Printable ASCII and valid UTF-8 pass; control
 * bytes become \n-style or \u00NN escapes in JSON and \xNN in console text;
 * invalid UTF-8 becomes the text \xNN in both. In console context values
 * (`space_too`), spaces are escaped as well so key=value pairs stay
 * unambiguous. A cut source gets "..." appended. */
static void put_text(struct line *l, enum log_format fmt, const char *s,
		     size_t max, bool space_too)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	bool src_cut = false;

	if (max > 0 && n > max) {
		n = max;
		src_cut = true;
	}
	for (size_t i = 0; i < n && !l->cut;) {
		unsigned char c = p[i];

		if (c >= 0x80) {
			size_t sl = utf8_seq_len(p + i, n - i);
			if (sl > 0) {
				line_put(l, s + i, sl);
				i += sl;
			} else {
				put_hex_escape(l, fmt, c);
				i++;
			}
			continue;
		}
		i++;
		if (fmt == LOG_FORMAT_JSON) {
			if (c == '"' || c == '\\') {
				char e[2] = { '\\', (char)c };
				line_put(l, e, 2);
			} else if (c == '\n') {
				line_put(l, "\\n", 2);
			} else if (c == '\r') {
				line_put(l, "\\r", 2);
			} else if (c == '\t') {
				line_put(l, "\\t", 2);
			} else if (c < 0x20 || c == 0x7f) {
				char e[6] = { '\\', 'u', '0', '0', hex_digits[c >> 4],
					      hex_digits[c & 0x0F] };
				line_put(l, e, sizeof(e));
			} else {
				line_put(l, (const char *)&p[i - 1], 1);
			}
		} else {
			if (c < 0x20 || c == 0x7f || (space_too && c == ' '))
				put_hex_escape(l, fmt, c);
			else
				line_put(l, (const char *)&p[i - 1], 1);
		}
	}
	if (src_cut)
		line_puts(l, LOG_TRUNC_MARKER);
}

static void put_timestamp(struct line *l)
{
	struct timespec ts;
	struct tm tm;
	char text[40];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	if (n > 0 && (size_t)n < sizeof(text))
		line_put(l, text, (size_t)n);
}

static void put_console_field(struct line *l, const char *key, const char *value)
{
	if (value == NULL)
		return;
	line_puts(l, key);
	put_text(l, LOG_FORMAT_CONSOLE, value, LOG_CTX_VALUE_MAX, true);
	line_put(l, " ", 1);
}

static void put_json_field(struct line *l, const char *key, const char *value)
{
	if (value == NULL)
		return;
	line_puts(l, key);
	put_text(l, LOG_FORMAT_JSON, value, LOG_CTX_VALUE_MAX, false);
	line_put(l, "\"", 1);
}

/* Builds the whole line (with "\n" and a NUL after it) into buf and
 * returns its length without the NUL. */
static size_t format_line(char *buf, size_t size, enum log_format fmt,
			  bool for_syslog, enum sora_log_level level,
			  const struct sora_log_ctx *ctx, const char *msg,
			  bool msg_cut)
{
	struct line l = { buf, 0, size - LOG_TAIL_RESERVE, false };

	if (fmt == LOG_FORMAT_JSON) {
		line_puts(&l, "{\"ts\":\"");
		put_timestamp(&l);
		line_puts(&l, "\",\"level\":\"");
		line_puts(&l, level_lower[level]);
		line_puts(&l, "\",\"svc\":\"");
		put_text(&l, fmt, logger.ident, 0, false);
		line_puts(&l, "\"");
		if (ctx != NULL) {
			put_json_field(&l, ",\"session\":\"", ctx->session);
			put_json_field(&l, ",\"proto\":\"", ctx->proto);
			put_json_field(&l, ",\"peer\":\"", ctx->peer);
			put_json_field(&l, ",\"user\":\"", ctx->user);
		}
		line_puts(&l, ",\"msg\":\"");
	} else if (!for_syslog) {
		/* syslog stamps time, level and name on its own. */
		put_timestamp(&l);
		line_put(&l, " ", 1);
		line_puts(&l, level_upper[level]);
		line_put(&l, " ", 1);
		put_text(&l, fmt, logger.ident, 0, true);
		line_put(&l, " ", 1);
	}
	if (fmt == LOG_FORMAT_CONSOLE && ctx != NULL) {
		put_console_field(&l, "session=", ctx->session);
		put_console_field(&l, "proto=", ctx->proto);
		put_console_field(&l, "peer=", ctx->peer);
		put_console_field(&l, "user=", ctx->user);
	}
	put_text(&l, fmt, msg, 0, false);

	/* The tail reserve is spent only here, so these always fit. */
	if (l.cut || msg_cut) {
		memcpy(l.buf + l.len, LOG_TRUNC_MARKER, 3);
		l.len += 3;
	}
	if (fmt == LOG_FORMAT_JSON) {
		memcpy(l.buf + l.len, "\"}", 2);
		l.len += 2;
	}
	l.buf[l.len++] = '\n';
	l.buf[l.len] = '\0';
	return l.len;
}

static int syslog_priority(enum sora_log_level level)
{
	switch (level) {
	case SORA_LOG_DEBUG:
		return LOG_DEBUG;
	case SORA_LOG_INFO:
		return LOG_INFO;
	case SORA_LOG_NOTICE:
		return LOG_NOTICE;
	case SORA_LOG_WARN:
		return LOG_WARNING;
	default:
		return LOG_ERR;
	}
}

/* Writes the line; a failure is dropped, as there is nowhere left to
 * report it. A short write (a signal, a full disk) is continued so the
 * line is not left half-written. */
static void write_line(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

void sora_logv(enum sora_log_level level, const struct sora_log_ctx *ctx,
	       const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX];
	char line[LOG_LINE_MAX];
	int saved_errno = errno;

	if (level < SORA_LOG_DEBUG || level > SORA_LOG_ERROR)
		level = SORA_LOG_ERROR;
	if (!sora_log_enabled(level))
		return;

	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	bool msg_cut = n < 0 || (size_t)n >= sizeof(msg);
	if (n < 0)
		msg[0] = '\0';
	enum log_format format =
		(enum log_format)atomic_load_explicit(&logger.format, memory_order_relaxed);

	pthread_rwlock_rdlock(&logger.lock);
	bool to_syslog = logger.output == LOG_OUTPUT_SYSLOG;
	size_t len = format_line(line, sizeof(line), format, to_syslog, level, ctx,
				 msg, msg_cut);
	if (to_syslog) {
		line[len - 1] = '\0';   /* syslog ends the record itself */
		syslog(syslog_priority(level), "%s", line);
	} else {
		write_line(logger.fd, line, len);
	}
	pthread_rwlock_unlock(&logger.lock);
	errno = saved_errno;
}

void sora_log(enum sora_log_level level, const struct sora_log_ctx *ctx,
	      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sora_logv(level, ctx, fmt, ap);
	va_end(ap);
}

/* ---- escaping client bytes --------------------------------------------- */

static size_t escaped_unit(unsigned char c, char out[4])
{
	if (c == '\\' || c == '"') {
		out[0] = '\\';
		out[1] = (char)c;
		return 2;
	}
	if (c < 0x20 || c > 0x7e) {
		out[0] = '\\';
		out[1] = 'x';
		out[2] = hex_digits[c >> 4];
		out[3] = hex_digits[c & 0x0F];
		return 4;
	}
	out[0] = (char)c;
	return 1;
}

char *sora_log_escape(struct sora_str s, char *dst, size_t size)
{
	size_t room, total = 0, o = 0;
	char unit[4];

	if (size == 0)
		return dst;
	room = size - 1;
	/* First find out whether everything fits (stopping as soon as it
	 * cannot), so the marker is added only when something is cut. */
	for (size_t i = 0; i < s.len && total <= room; i++)
		total += escaped_unit((unsigned char)s.p[i], unit);

	if (total <= room) {
		for (size_t i = 0; i < s.len; i++) {
			size_t n = escaped_unit((unsigned char)s.p[i], unit);
			memcpy(dst + o, unit, n);
			o += n;
		}
	} else {
		size_t marker = room < 3 ? room : 3;
		for (size_t i = 0; i < s.len; i++) {
			size_t n = escaped_unit((unsigned char)s.p[i], unit);
			if (o + n > room - marker)
				break;
			memcpy(dst + o, unit, n);
			o += n;
		}
		memcpy(dst + o, LOG_TRUNC_MARKER, marker);
		o += marker;
	}
	dst[o] = '\0';
	return dst;
}
