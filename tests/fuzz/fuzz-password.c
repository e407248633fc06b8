/* libFuzzer target for sora_password_verify: the input is a stored hash,
 * a newline, then the password (any bytes). Inputs that would ask for an
 * expensive but valid cost (bcrypt above 5, SHA-crypt rounds, Argon2 with
 * more than 64 KiB or 2 passes) are skipped: they test the CPU, not the
 * parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/auth/password.h"

static int too_costly(const char *s)
{
	const char *p;

	if ((p = strstr(s, "$2")) != NULL && strlen(p) > 6 &&
	    (p[4] != '0' || p[5] > '5'))
		return 1;
	if (strstr(s, "rounds=") != NULL)
		return 1;
	if ((p = strstr(s, "m=")) != NULL) {
		char *end;
		unsigned long m = strtoul(p + 2, &end, 10);
		if (m > 64 || end - (p + 2) > 3)
			return 1;
	}
	if ((p = strstr(s, "t=")) != NULL) {
		char *end;
		unsigned long t = strtoul(p + 2, &end, 10);
		if (t > 2 || end - (p + 2) > 2)
			return 1;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t stored_len = nl != NULL ? (size_t)(nl - data) : size;
	const char *pw = nl != NULL ? (const char *)nl + 1 : "";
	size_t pw_len = nl != NULL ? size - stored_len - 1 : 0;
	char *stored = malloc(stored_len + 1);
	const char *error = NULL;
	bool match = false, rehash = false;

	if (stored == NULL)
		return 0;
	memcpy(stored, data, stored_len);
	stored[stored_len] = '\0';
	if (!too_costly(stored)) {
		int ret = sora_password_verify(stored, pw, pw_len, 12, &match, &rehash, &error);
		if (ret < 0 && (error == NULL || match || rehash))
			abort();
		if (rehash && !match)
			abort();
	}
	free(stored);
	return 0;
}
