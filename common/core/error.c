/* One error type for every layer: see error.h. */
#include "common/core/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int sora_error_setv(struct sora_error *err, enum sora_error_class cls, const char *fmt,
		    va_list ap)
{
	if (err == NULL)
		return -1;
	err->cls = cls;
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	return -1;
}

int sora_error_set(struct sora_error *err, enum sora_error_class cls, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sora_error_setv(err, cls, fmt, ap);
	va_end(ap);
	return -1;
}

void sora_error_clear(struct sora_error *err)
{
	if (err == NULL)
		return;
	err->cls = SORA_ERR_OK;
	err->msg[0] = '\0';
}

void sora_error_prefix(struct sora_error *err, const char *fmt, ...)
{
	char prefix[SORA_ERROR_MSG_SIZE];
	size_t plen, mlen, size;
	va_list ap;
	int n;

	if (err == NULL)
		return;
	va_start(ap, fmt);
	n = vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size = sizeof(err->msg);
	/* The prefix and ": " always fit; the message yields. */
	plen = strnlen(prefix, size - 3);
	mlen = strnlen(err->msg, size - 1);
	if (plen + 2 + mlen > size - 1)
		mlen = size - 1 - plen - 2;
	memmove(err->msg + plen + 2, err->msg, mlen);
	memcpy(err->msg, prefix, plen);
	err->msg[plen] = ':';
	err->msg[plen + 1] = ' ';
	err->msg[plen + 2 + mlen] = '\0';
}

void sora_error_append(struct sora_error *err, const char *fmt, ...)
{
	size_t len;
	va_list ap;

	if (err == NULL)
		return;
	len = strnlen(err->msg, sizeof(err->msg) - 1);
	va_start(ap, fmt);
	vsnprintf(err->msg + len, sizeof(err->msg) - len, fmt, ap);
	va_end(ap);
}

enum sora_error_class sora_error_class_errno(int errnum)
{
	switch (errnum) {
	case ENOSPC:
	case EDQUOT:
	case ENOMEM:
	case EMFILE:
	case ENFILE:
	case EAGAIN:
	case EBUSY:
	case ETIMEDOUT:
	case EINTR:
		return SORA_ERR_TEMPORARY;
	default:
		return SORA_ERR_PERMANENT;
	}
}

const char *sora_error_class_name(enum sora_error_class cls)
{
	switch (cls) {
	case SORA_ERR_OK: return "ok";
	case SORA_ERR_TEMPORARY: return "temporary failure";
	case SORA_ERR_PERMANENT: return "permanent failure";
	case SORA_ERR_NOT_FOUND: return "not found";
	case SORA_ERR_LIMIT: return "limit exceeded";
	case SORA_ERR_INVALID: return "invalid";
	case SORA_ERR_CONFLICT: return "conflict";
	case SORA_ERR_CORRUPT: return "corrupt";
	case SORA_ERR_UNSUPPORTED: return "not supported";
	case SORA_ERR_ABORTED: return "aborted";
	}
	return "unknown error";
}
