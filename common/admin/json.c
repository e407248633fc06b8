#include "common/admin/json.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REPLACEMENT "\xef\xbf\xbd"

size_t sora_utf8_seq_len(const unsigned char *s, size_t avail)
{
	unsigned char c, lo = 0x80, hi = 0xbf;
	size_t n;

	if (avail == 0)
		return 0;
	c = s[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;      /* overlong */
		else if (c == 0xed)
			hi = 0x9f;      /* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;      /* overlong */
		else if (c == 0xf4)
			hi = 0x8f;      /* past U+10FFFF */
	} else {
		return 0;
	}
	if (avail < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++) {
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	}
	return n;
}

char *sora_utf8_sanitize(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out;
	size_t o = 0;

	/* Each input byte becomes at most 3 output bytes. */
	if (len > (SIZE_MAX - 1) / 3)
		return NULL;
	out = malloc(len * 3 + 1);
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len;) {
		size_t n = p[i] == '\0' ? 0 : sora_utf8_seq_len(p + i, len - i);

		if (n == 0) {
			memcpy(out + o, REPLACEMENT, 3);
			o += 3;
			i++;
		} else {
			memcpy(out + o, p + i, n);
			o += n;
			i += n;
		}
	}
	out[o] = '\0';
	return out;
}

cJSON *sora_json_str(const char *s)
{
	cJSON *node;
	char *clean;

	if (s == NULL)
		return cJSON_CreateNull();
	clean = sora_utf8_sanitize(s, strlen(s));
	if (clean == NULL)
		return NULL;
	node = cJSON_CreateString(clean);
	free(clean);
	return node;
}

static int add(cJSON *obj, const char *key, cJSON *item)
{
	if (item == NULL)
		return -1;
	if (!cJSON_AddItemToObject(obj, key, item)) {
		cJSON_Delete(item);
		return -1;
	}
	return 0;
}

int sora_json_add_str(cJSON *obj, const char *key, const char *s)
{
	return add(obj, key, sora_json_str(s));
}

int sora_json_add_num(cJSON *obj, const char *key, double v)
{
	return add(obj, key, cJSON_CreateNumber(v));
}

int sora_json_add_bool(cJSON *obj, const char *key, int v)
{
	return add(obj, key, cJSON_CreateBool(v));
}

int sora_json_body_check(const char *data, size_t len, const char **error_r)
{
	const unsigned char *p = (const unsigned char *)data;
	bool in_string = false;

	for (size_t i = 0; i < len;) {
		size_t n;

		if (p[i] == '\0') {
			*error_r = "the body contains a NUL byte";
			return -1;
		}
		n = sora_utf8_seq_len(p + i, len - i);
		if (n == 0) {
			*error_r = "the body is not valid UTF-8";
			return -1;
		}
		if (n == 1 && p[i] == '"') {
			in_string = !in_string;
		} else if (n == 1 && p[i] == '\\' && in_string) {
			/* An escape. \u0000 is refused; an escaped quote or
			 * backslash is stepped over so it neither ends the
			 * string nor starts another escape. Any other byte
			 * after the backslash goes through the checks above
			 * (a raw NUL there is refused like anywhere). */
			if (i + 5 < len && p[i + 1] == 'u' && memcmp(p + i + 2, "0000", 4) == 0) {
				*error_r = "strings must not contain NUL (\\u0000)";
				return -1;
			}
			i += i + 1 < len && (p[i + 1] == '"' || p[i + 1] == '\\') ? 2 : 1;
			continue;
		}
		i += n;
	}
	return 0;
}
