/* One error type for every layer below the protocols (DESIGN.md §4): the
 * database (common/db), the blob store (backend/blob) and the mailbox store
 * (backend/store) all report failures the same way, so a command that
 * crosses them maps any failure to its reply without knowing which layer
 * failed.
 *
 * The rule:
 *   - A function that can fail returns int: 0 on success, -1 on failure
 *     (a positive value is a documented non-error outcome, never an error).
 *     On failure it has filled the caller's struct sora_error *err, its
 *     last parameter: a class and one line of text. On success err is left
 *     as it was.
 *   - The class decides what happens next: retry, answer, give up. Callers
 *     switch on err->cls only; they never parse the message and never ask
 *     which layer failed. Protocol code maps classes to replies in one
 *     place (LMTP: temporary and most others -> 451 4.3.0, not found ->
 *     550 5.1.1, limit -> 552; IMAP will map temporary -> NO [UNAVAILABLE],
 *     not found -> NO [NONEXISTENT], limit -> NO [OVERQUOTA], corrupt ->
 *     NO [CORRUPTION]; POP3 temporary -> -ERR [SYS/TEMP]).
 *   - The layer that sees the cause picks the class. A layer that passes
 *     an error up keeps its class and may add context in front with
 *     sora_error_prefix(); it reclassifies only when it knows better (a
 *     storage failure during a delivery whose outcome is unknown becomes
 *     temporary).
 *   - The message is one line for an operator's log or a CLI's stderr: it
 *     says what was being done and names the resource (database endpoint,
 *     object key, file path). It never contains a password, key material,
 *     a message body or query parameters, and client bytes in it are
 *     escaped (sora_log_escape). It is not meant for clients: replies say
 *     what the class says, not the text.
 *
 * Ownership: the caller owns the struct, usually on its stack. It holds no
 * pointers, so it is copied by assignment and never freed.
 *
 * Threads: a struct sora_error belongs to the thread that passed it in; a
 * result that travels to another thread (a job's outcome read by its done
 * callback) is copied or handed over with the rest of the job's state. All
 * helpers are pure and callable from any thread.
 *
 * err may be NULL in the helpers below (they then do nothing), so internal
 * code can ask a yes/no question of a function without wanting the text;
 * module functions expect a non-NULL err unless their header says
 * otherwise.
 *
 * Not covered: the config loader (common/config) and the TLS context set-up
 * (common/tls) keep "char *err, size_t errsize": they run once at start-up,
 * their only outcome is a message on stderr and exit status 2, and there is
 * no class to decide. */
#ifndef SORA_CORE_ERROR_H
#define SORA_CORE_ERROR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

enum sora_error_class {
	SORA_ERR_OK = 0,
	/* Trying again later may succeed: a connection refused or lost, a
	 * timeout, a server shutting down, throttling or a 5xx answer, a full
	 * disk, out of memory. */
	SORA_ERR_TEMPORARY,
	/* Trying again will fail the same way: bad SQL, a constraint, a 4xx
	 * answer, a local I/O error, a configuration that cannot work. */
	SORA_ERR_PERMANENT,
	/* The thing asked for does not exist: an address, an object, a
	 * mailbox. */
	SORA_ERR_NOT_FOUND,
	/* A size or count limit was reached: a body larger than allowed. */
	SORA_ERR_LIMIT,
	/* The caller's input is not acceptable (an address that breaks the
	 * rules, an empty password): the caller should change the request. */
	SORA_ERR_INVALID,
	/* The request conflicts with the current state: the address already
	 * exists, the account is already deleted, it is the last credential. */
	SORA_ERR_CONFLICT,
	/* Stored data failed authentication, a hash check or format parsing:
	 * never served, kept for an operator. */
	SORA_ERR_CORRUPT,
	/* This way of doing it is not available here (an fs link across file
	 * systems); the caller falls back to another way. */
	SORA_ERR_UNSUPPORTED,
	/* The caller's own callback stopped the operation; the caller knows
	 * why. */
	SORA_ERR_ABORTED,
};

/* Long enough for an S3 error with bucket, key, status, code, S3's own
 * message and a retry count, or a database error with its endpoint. */
#define SORA_ERROR_MSG_SIZE 512

struct sora_error {
	enum sora_error_class cls;
	char msg[SORA_ERROR_MSG_SIZE];   /* one line, NUL-terminated */
};

/* Sets the class and the message (printf-style, cut to fit). Returns -1,
 * so a failing function can end with `return sora_error_set(...)`. */
int sora_error_set(struct sora_error *err, enum sora_error_class cls, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int sora_error_setv(struct sora_error *err, enum sora_error_class cls, const char *fmt,
		    va_list ap) __attribute__((format(printf, 3, 0)));

/* Back to SORA_ERR_OK with an empty message. */
void sora_error_clear(struct sora_error *err);

/* Puts "<formatted prefix>: " in front of the message, keeping the class;
 * the end of the message is cut if the whole does not fit. */
void sora_error_prefix(struct sora_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Appends formatted text to the message (cut to fit), keeping the class. */
void sora_error_append(struct sora_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The class of a failed system call's errno: conditions that pass on
 * their own (ENOSPC, EDQUOT, ENOMEM, EMFILE, ENFILE, EAGAIN, EBUSY,
 * ETIMEDOUT, EINTR) are temporary, the rest permanent. A caller for which a
 * missing file means "not found" checks ENOENT itself. */
enum sora_error_class sora_error_class_errno(int errnum);

/* A short name for logs and tests: "ok", "temporary failure", ... */
const char *sora_error_class_name(enum sora_error_class cls);

static inline bool sora_error_is(const struct sora_error *err, enum sora_error_class cls)
{
	return err != NULL && err->cls == cls;
}

#endif
