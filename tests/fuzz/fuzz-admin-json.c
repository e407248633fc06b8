/* libFuzzer target for the HTTP admin API's JSON handling
 * (common/admin/json.h): the body check runs on every request body from
 * the network before cJSON parses it, and every string the API returns
 * goes through the encoder. Besides memory safety it checks that the
 * sanitizer always yields valid UTF-8 without NUL, that encoding any input
 * gives JSON that parses back, and that a body the check accepts parses
 * without a string being cut by a NUL. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/admin/json.h"

static void check_utf8(const char *s)
{
	size_t len = strlen(s);

	for (size_t i = 0; i < len;) {
		size_t n = sora_utf8_seq_len((const unsigned char *)s + i, len - i);

		if (n == 0)
			abort();
		i += n;
	}
}

/* Every string in the tree re-encodes to parseable JSON. */
static void walk(const cJSON *node)
{
	for (const cJSON *c = node; c != NULL; c = c->next) {
		if (cJSON_IsString(c) && c->valuestring != NULL) {
			cJSON *s = sora_json_str(c->valuestring);
			char *text = s != NULL ? cJSON_PrintUnformatted(s) : NULL;
			cJSON *back = text != NULL ? cJSON_Parse(text) : NULL;

			if (s != NULL && text != NULL && back == NULL)
				abort();
			cJSON_Delete(back);
			free(text);
			cJSON_Delete(s);
		}
		if (c->child != NULL)
			walk(c->child);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *error = NULL;
	char *clean = sora_utf8_sanitize((const char *)data, size);

	if (clean != NULL) {
		check_utf8(clean);
		walk(&(cJSON){ .type = cJSON_String, .valuestring = clean });
		free(clean);
	}
	if (sora_json_body_check((const char *)data, size, &error) < 0) {
		if (error == NULL || error[0] == '\0')
			abort();
		return 0;
	}
	/* Accepted: no raw NUL, so strlen sees the whole body. */
	if (memchr(data, '\0', size) != NULL)
		abort();
	{
		cJSON *j = cJSON_ParseWithLength((const char *)data, size);

		if (j != NULL) {
			walk(j);
			cJSON_Delete(j);
		}
	}
	return 0;
}
