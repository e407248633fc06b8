/* libFuzzer target for sora_address_validate(): login names arrive from
 * the network (IMAP LOGIN, SASL PLAIN, LMTP RCPT TO) before any lookup.
 * Besides memory safety it checks the invariants the rest of the code
 * relies on for an accepted address. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/db/address.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sora_error err = { .cls = SORA_ERR_OK, .msg = "" };
	struct sora_str s = sora_str_make((const char *)data, size);
	size_t ats = 0;

	if (sora_address_validate(s, &err) < 0) {
		if (err.cls != SORA_ERR_INVALID || err.msg[0] == '\0')
			abort();
		return 0;
	}
	if (size < 3 || size > SORA_ADDRESS_MAX_LEN)
		abort();
	for (size_t i = 0; i < size; i++) {
		if (data[i] == '@')
			ats++;
		/* No byte that could end a line, a C string or an IMAP atom. */
		if (data[i] <= 0x20 || data[i] == 0x7f || data[i] == '"' || data[i] == '\\' ||
		    data[i] == '*')
			abort();
	}
	if (ats != 1 || data[0] == '@' || data[size - 1] == '@')
		abort();
	return 0;
}
