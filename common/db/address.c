/* Address validation: see address.h. */
#include "common/db/address.h"

#include <stdbool.h>

/* Length of the well-formed UTF-8 sequence starting at p (at most len
 * bytes available), or 0 if it is not one. Rejects overlong forms,
 * surrogates and code points above U+10FFFF. */
static size_t utf8_seq_len(const unsigned char *p, size_t len)
{
	unsigned char c = p[0];
	size_t n;
	unsigned int cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static bool is_local_special(unsigned char c)
{
	switch (c) {
	case '(': case ')': case '<': case '>': case '[': case ']':
	case ':': case ';': case ',': case '"': case '\\': case '@':
		return true;
	default:
		return false;
	}
}

static int validate_local(const unsigned char *p, size_t len, const char **error_r)
{
	if (len == 0) {
		*error_r = "empty local part";
		return -1;
	}
	if (len > SORA_ADDRESS_MAX_LOCAL_LEN) {
		*error_r = "local part longer than 64 bytes";
		return -1;
	}
	if (p[0] == '.' || p[len - 1] == '.') {
		*error_r = "local part starts or ends with a dot";
		return -1;
	}
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];

		if (c >= 0x80) {
			size_t n = utf8_seq_len(p + i, len - i);

			if (n == 0) {
				*error_r = "invalid UTF-8";
				return -1;
			}
			i += n;
			continue;
		}
		if (c <= 0x20 || c == 0x7f) {
			*error_r = "space or control character";
			return -1;
		}
		if (c == '*') {
			*error_r = "'*' is reserved for master-user logins";
			return -1;
		}
		if (is_local_special(c)) {
			*error_r = "local part contains a special character";
			return -1;
		}
		if (c == '.' && p[i + 1] == '.') {
			*error_r = "local part contains two dots in a row";
			return -1;
		}
		i++;
	}
	return 0;
}

static int validate_domain(const unsigned char *p, size_t len, const char **error_r)
{
	size_t label_start = 0;

	if (len == 0) {
		*error_r = "empty domain";
		return -1;
	}
	if (len > SORA_ADDRESS_MAX_DOMAIN_LEN) {
		*error_r = "domain longer than 253 bytes";
		return -1;
	}
	if (p[0] == '[') {
		*error_r = "domain literals are not supported";
		return -1;
	}
	for (size_t i = 0; i <= len;) {
		if (i == len || p[i] == '.') {
			size_t l = i - label_start;

			if (l == 0) {
				*error_r = "domain has an empty label";
				return -1;
			}
			if (l > 63) {
				*error_r = "domain label longer than 63 bytes";
				return -1;
			}
			if (p[label_start] == '-' || p[i - 1] == '-') {
				*error_r = "domain label starts or ends with a hyphen";
				return -1;
			}
			label_start = i + 1;
			i++;
			continue;
		}
		if (p[i] >= 0x80) {
			size_t n = utf8_seq_len(p + i, len - i);

			if (n == 0) {
				*error_r = "invalid UTF-8";
				return -1;
			}
			i += n;
			continue;
		}
		if (p[i] <= 0x20 || p[i] == 0x7f) {
			*error_r = "space or control character";
			return -1;
		}
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
		      (p[i] >= '0' && p[i] <= '9') || p[i] == '-')) {
			*error_r = "domain contains a character not allowed in host names";
			return -1;
		}
		i++;
	}
	return 0;
}

static int check_address(struct sora_str addr, const char **error_r)
{
	const unsigned char *p = (const unsigned char *)addr.p;
	size_t at = addr.len;

	if (addr.len == 0 || p == NULL) {
		*error_r = "empty address";
		return -1;
	}
	if (addr.len > SORA_ADDRESS_MAX_LEN) {
		*error_r = "address longer than 254 bytes";
		return -1;
	}
	for (size_t i = 0; i < addr.len; i++) {
		if (p[i] == '\0') {
			*error_r = "NUL byte";
			return -1;
		}
		if (p[i] == '@') {
			if (at != addr.len) {
				*error_r = "more than one '@'";
				return -1;
			}
			at = i;
		}
	}
	if (at == addr.len) {
		*error_r = "missing '@'";
		return -1;
	}
	if (validate_local(p, at, error_r) < 0)
		return -1;
	return validate_domain(p + at + 1, addr.len - at - 1, error_r);
}

int sora_address_validate(struct sora_str addr, struct sora_error *err)
{
	const char *why = "invalid";

	if (check_address(addr, &why) == 0)
		return 0;
	return sora_error_set(err, SORA_ERR_INVALID, "%s", why);
}
