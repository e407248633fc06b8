/* Password schemes: see password.h for the contract.
 *
 * Layout: a stored hash is first split into scheme, encoding and body
 * (stored_parse), the body is then checked strictly against the form of its
 * scheme before any hashing is done, so that a malformed row is reported as
 * such instead of turning into a silent "wrong password". */
#include "common/auth/password.h"

#include <crypt.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/str.h"

/* Salt lengths for the hashes we create. Dovecot uses 4 bytes for SSHA*;
 * it verifies any salt length, so 16 bytes costs nothing in compatibility. */
#define DIGEST_SALT_LEN 16
#define BCRYPT_SALT_LEN 16
/* 12 random bytes make the full 16-character SHA-crypt salt. */
#define SHACRYPT_SALT_BYTES 12
#define SHACRYPT_MAX_SALT_CHARS 16

/* Upper bound on a decoded SSHA/SHA body (digest + salt): far above any
 * real salt, and it keeps the decode buffer on the stack. */
#define DIGEST_RAW_MAX 1024
/* Upper bound on an Argon2 string (libsodium makes 97 characters). */
#define ARGON2_BODY_MAX 512

#define BCRYPT_HASH_LEN 60

enum pw_encoding {
	PW_ENC_DEFAULT,
	PW_ENC_BASE64,
	PW_ENC_HEX,
};

struct stored_hash {
	enum sora_pw_scheme scheme;
	enum pw_encoding encoding;
	/* The part after "{SCHEME}", a NUL-terminated tail of the stored
	 * string (borrowed). */
	struct sora_str body;
};

struct scheme_alias {
	const char *name;
	enum sora_pw_scheme scheme;
};

/* Names accepted by sora_password_scheme_parse and inside "{...}". */
static const struct scheme_alias scheme_aliases[] = {
	{ "BLF-CRYPT", SORA_PW_BCRYPT },
	{ "BCRYPT", SORA_PW_BCRYPT },
	{ "SHA512-CRYPT", SORA_PW_SHA512_CRYPT },
	{ "SHA256-CRYPT", SORA_PW_SHA256_CRYPT },
	{ "SSHA512", SORA_PW_SSHA512 },
	{ "SHA512", SORA_PW_SHA512 },
	{ "SSHA256", SORA_PW_SSHA256 },
	{ "ARGON2ID", SORA_PW_ARGON2ID },
	{ "ARGON2I", SORA_PW_ARGON2I },
};

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_state = -1;

static void sodium_init_once(void)
{
	sodium_state = sodium_init() < 0 ? -1 : 0;
}

static int ensure_sodium(const char **error_r)
{
	pthread_once(&sodium_once, sodium_init_once);
	if (sodium_state < 0) {
		*error_r = "libsodium failed to initialise";
		return -1;
	}
	return 0;
}

static bool is_crypt64(char c)
{
	return c == '.' || c == '/' || (c >= '0' && c <= '9') ||
	       (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_base64(char c)
{
	return c == '+' || c == '/' || (c >= '0' && c <= '9') ||
	       (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool has_prefix(struct sora_str s, const char *prefix)
{
	size_t n = strlen(prefix);

	return s.len >= n && memcmp(s.p, prefix, n) == 0;
}

/* Parses decimal digits at *pos up to (not including) the terminator,
 * which must follow. No sign, no leading zero, at most max. Advances *pos
 * past the terminator. */
static int parse_uint_until(struct sora_str s, size_t *pos, char terminator,
			    uint64_t max, uint64_t *value_r)
{
	size_t start = *pos, i = start;

	while (i < s.len && is_digit(s.p[i]))
		i++;
	if (i == start || i >= s.len || s.p[i] != terminator)
		return -1;
	if (s.p[start] == '0' && i - start > 1)
		return -1;
	if (sora_str_to_u64(sora_str_make(s.p + start, i - start), max, value_r) < 0)
		return -1;
	*pos = i + 1;
	return 0;
}

int sora_password_scheme_parse(const char *name, enum sora_pw_scheme *scheme_r)
{
	if (name == NULL)
		return -1;
	for (size_t i = 0; i < sizeof(scheme_aliases) / sizeof(scheme_aliases[0]); i++) {
		if (sora_str_ieq_c(sora_str_c(name), scheme_aliases[i].name)) {
			*scheme_r = scheme_aliases[i].scheme;
			return 0;
		}
	}
	return -1;
}

const char *sora_password_scheme_name(enum sora_pw_scheme scheme)
{
	switch (scheme) {
	case SORA_PW_BCRYPT: return "BLF-CRYPT";
	case SORA_PW_SHA512_CRYPT: return "SHA512-CRYPT";
	case SORA_PW_SHA256_CRYPT: return "SHA256-CRYPT";
	case SORA_PW_SSHA512: return "SSHA512";
	case SORA_PW_SHA512: return "SHA512";
	case SORA_PW_SSHA256: return "SSHA256";
	case SORA_PW_ARGON2ID: return "ARGON2ID";
	case SORA_PW_ARGON2I: return "ARGON2I";
	}
	return "UNKNOWN";
}

static bool is_digest_scheme(enum sora_pw_scheme scheme)
{
	return scheme == SORA_PW_SSHA512 || scheme == SORA_PW_SHA512 ||
	       scheme == SORA_PW_SSHA256;
}

/* Recognises the self-describing forms that need no "{SCHEME}" prefix. */
static int bare_scheme(struct sora_str body, enum sora_pw_scheme *scheme_r)
{
	if (has_prefix(body, "$2a$") || has_prefix(body, "$2b$") ||
	    has_prefix(body, "$2y$"))
		*scheme_r = SORA_PW_BCRYPT;
	else if (has_prefix(body, "$6$"))
		*scheme_r = SORA_PW_SHA512_CRYPT;
	else if (has_prefix(body, "$5$"))
		*scheme_r = SORA_PW_SHA256_CRYPT;
	else if (has_prefix(body, "$argon2id$"))
		*scheme_r = SORA_PW_ARGON2ID;
	else if (has_prefix(body, "$argon2i$"))
		*scheme_r = SORA_PW_ARGON2I;
	else
		return -1;
	return 0;
}

static int stored_parse(const char *stored, struct stored_hash *h,
			const char **error_r)
{
	struct sora_str s = sora_str_c(stored);

	h->encoding = PW_ENC_DEFAULT;
	if (s.len == 0) {
		*error_r = "stored password hash is empty";
		return -1;
	}
	if (s.p[0] != '{') {
		h->body = s;
		if (bare_scheme(s, &h->scheme) < 0) {
			*error_r = "stored password hash has no {SCHEME} prefix "
				   "and is not a bcrypt, SHA-crypt or Argon2 string";
			return -1;
		}
		return 0;
	}

	const char *close = memchr(s.p, '}', s.len);
	if (close == NULL) {
		*error_r = "stored password hash has an unterminated {SCHEME} prefix";
		return -1;
	}
	struct sora_str name = sora_str_make(s.p + 1, (size_t)(close - s.p) - 1);
	struct sora_str suffix = SORA_STR_NULL;
	const char *dot = memchr(name.p, '.', name.len);
	if (dot != NULL) {
		suffix = sora_str_make(dot + 1, name.len - (size_t)(dot - name.p) - 1);
		name.len = (size_t)(dot - name.p);
	}
	h->body = sora_str_make(close + 1, s.len - (size_t)(close - s.p) - 1);

	if (sora_str_ieq_c(name, "CRYPT") && dot == NULL) {
		/* Dovecot's CRYPT scheme is the system crypt(3); of its
		 * forms we take the ones we can verify safely. */
		if (bare_scheme(h->body, &h->scheme) < 0 ||
		    h->scheme == SORA_PW_ARGON2ID || h->scheme == SORA_PW_ARGON2I) {
			*error_r = "{CRYPT} hash is not bcrypt, SHA512-CRYPT or "
				   "SHA256-CRYPT (DES, MD5 and yescrypt are not supported)";
			return -1;
		}
		return 0;
	}

	bool found = false;
	for (size_t i = 0; i < sizeof(scheme_aliases) / sizeof(scheme_aliases[0]); i++) {
		if (sora_str_ieq_c(name, scheme_aliases[i].name)) {
			h->scheme = scheme_aliases[i].scheme;
			found = true;
			break;
		}
	}
	if (!found) {
		*error_r = "unsupported password scheme";
		return -1;
	}
	if (dot != NULL) {
		if (!is_digest_scheme(h->scheme)) {
			*error_r = "an encoding suffix is only valid for SSHA512, "
				   "SHA512 and SSHA256";
			return -1;
		}
		if (sora_str_ieq_c(suffix, "B64") || sora_str_ieq_c(suffix, "BASE64")) {
			h->encoding = PW_ENC_BASE64;
		} else if (sora_str_ieq_c(suffix, "HEX")) {
			h->encoding = PW_ENC_HEX;
		} else {
			*error_r = "stored password hash has an unknown encoding "
				   "suffix (expected .B64 or .HEX)";
			return -1;
		}
	}
	return 0;
}

int sora_password_stored_scheme(const char *stored, enum sora_pw_scheme *scheme_r,
				const char **error_r)
{
	struct stored_hash h;

	if (stored == NULL) {
		*error_r = "stored password hash is missing";
		return -1;
	}
	if (stored_parse(stored, &h, error_r) < 0)
		return -1;
	*scheme_r = h.scheme;
	return 0;
}

/* Crypt ids ("$id$") named in messages. Only these are ever shown: an
 * unknown "$...$" could be the start of a plaintext password stored
 * without a prefix. */
static const char *const known_crypt_ids[] = {
	"1", "2", "2a", "2b", "2x", "2y", "3", "5", "6", "7", "y", "gy", "md5", "sha1",
	"apr1", "argon2i", "argon2id", "argon2d", "pbkdf2", "pbkdf2-sha256",
	"pbkdf2-sha512", "scrypt",
};

/* Scheme names ("{NAME}") are shown when they look like one: Dovecot's
 * names are letters, digits, '-', '_' and '.' (for encodings). */
#define LABEL_NAME_MAX 32

/* Appends "$id$" to buf when body starts with a known crypt id. */
static void append_crypt_id(const char *body, char *buf, size_t size)
{
	const char *end;

	if (body[0] != '$' || (end = strchr(body + 1, '$')) == NULL)
		return;
	for (size_t i = 0; i < sizeof(known_crypt_ids) / sizeof(known_crypt_ids[0]); i++) {
		size_t len = strlen(known_crypt_ids[i]);

		if ((size_t)(end - body - 1) == len &&
		    memcmp(body + 1, known_crypt_ids[i], len) == 0) {
			size_t used = strlen(buf);

			if (used + len + 3 <= size)
				snprintf(buf + used, size - used, "$%s$", known_crypt_ids[i]);
			return;
		}
	}
}

const char *sora_password_scheme_label(const char *stored, char *buf, size_t size)
{
	const char *body = stored;
	size_t used = 0;

	if (size == 0)
		return buf;
	buf[0] = '\0';
	if (stored == NULL || stored[0] == '\0') {
		sora_strlcpy(buf, "(empty)", size);
		return buf;
	}
	if (stored[0] == '{') {
		const char *close = memchr(stored, '}', strnlen(stored, LABEL_NAME_MAX + 2));

		if (close == NULL) {
			sora_strlcpy(buf, "(a scheme prefix that is unterminated or too long)",
				     size);
			return buf;
		}
		for (const char *p = stored + 1; p < close; p++) {
			char c = *p;

			if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) ||
			      c == '-' || c == '_' || c == '.')) {
				sora_strlcpy(buf, "(a scheme prefix with odd characters)", size);
				return buf;
			}
		}
		used = (size_t)(close - stored) + 1;
		if (used >= size)
			used = size - 1;
		memcpy(buf, stored, used);
		buf[used] = '\0';
		body = close + 1;
		/* The crypt id matters only where the prefix leaves the
		 * algorithm open: {CRYPT}$1$... is MD5-crypt. */
		if (!(used == 7 && sora_str_ieq_c(sora_str_make(buf, used), "{CRYPT}")))
			return buf;
	}
	append_crypt_id(body, buf, size);
	if (buf[0] == '\0')
		sora_strlcpy(buf, "(no scheme prefix)", size);
	return buf;
}

/* ---- crypt_r based schemes (bcrypt, SHA512-CRYPT, SHA256-CRYPT) ---- */

static int bcrypt_check(struct sora_str b, unsigned *cost_r, const char **error_r)
{
	if (b.len != BCRYPT_HASH_LEN || b.p[0] != '$' || b.p[1] != '2' ||
	    (b.p[2] != 'a' && b.p[2] != 'b' && b.p[2] != 'y') || b.p[3] != '$' ||
	    !is_digit(b.p[4]) || !is_digit(b.p[5]) || b.p[6] != '$') {
		*error_r = "bcrypt hash is malformed (expected $2a$, $2b$ or $2y$, "
			   "a two-digit cost and 53 characters)";
		return -1;
	}
	for (size_t i = 7; i < b.len; i++) {
		if (!is_crypt64(b.p[i])) {
			*error_r = "bcrypt hash contains a character outside its alphabet";
			return -1;
		}
	}
	/* The 22nd salt character carries only 2 of its 6 bits; crypt_r
	 * would quietly canonicalise any other value and the comparison
	 * would then fail as if the password were wrong. */
	if (strchr(".Oeu", b.p[7 + 21]) == NULL) {
		*error_r = "bcrypt hash has a non-canonical salt";
		return -1;
	}
	unsigned cost = (unsigned)(b.p[4] - '0') * 10 + (unsigned)(b.p[5] - '0');
	if (cost < SORA_PW_MIN_BCRYPT_COST || cost > SORA_PW_MAX_BCRYPT_COST) {
		*error_r = "bcrypt hash has a cost outside 4..31";
		return -1;
	}
	*cost_r = cost;
	return 0;
}

/* "$6$[rounds=N$]salt$hash" with an 86-character hash, or "$5$..." with 43. */
static int shacrypt_check(struct sora_str b, enum sora_pw_scheme scheme,
			  const char **error_r)
{
	const char *id = scheme == SORA_PW_SHA512_CRYPT ? "$6$" : "$5$";
	size_t hash_chars = scheme == SORA_PW_SHA512_CRYPT ? 86 : 43;
	size_t pos = 3;

	if (!has_prefix(b, id)) {
		*error_r = scheme == SORA_PW_SHA512_CRYPT ?
			"SHA512-CRYPT hash does not start with $6$" :
			"SHA256-CRYPT hash does not start with $5$";
		return -1;
	}
	if (has_prefix(sora_str_make(b.p + pos, b.len - pos), "rounds=")) {
		uint64_t rounds;

		pos += 7;
		if (parse_uint_until(b, &pos, '$', 999999999, &rounds) < 0 ||
		    rounds < 1000) {
			*error_r = "SHA-crypt hash has invalid rounds (expected 1000..999999999)";
			return -1;
		}
	}
	size_t salt_start = pos;
	while (pos < b.len && b.p[pos] != '$')
		pos++;
	if (pos >= b.len) {
		*error_r = "SHA-crypt hash is malformed (no '$' after the salt)";
		return -1;
	}
	if (pos - salt_start > SHACRYPT_MAX_SALT_CHARS) {
		*error_r = "SHA-crypt hash has a salt longer than 16 characters";
		return -1;
	}
	/* libxcrypt refuses these anywhere in a setting; finding them here
	 * keeps sora_password_stored_check() in line with what verifies. */
	for (size_t i = salt_start; i < pos; i++) {
		unsigned char c = (unsigned char)b.p[i];

		if (c <= ' ' || c >= 0x7f || strchr(":;*!\\", c) != NULL) {
			*error_r = "SHA-crypt hash has a salt character that crypt_r refuses";
			return -1;
		}
	}
	pos++;
	if (b.len - pos != hash_chars) {
		*error_r = "SHA-crypt hash has the wrong length";
		return -1;
	}
	for (; pos < b.len; pos++) {
		if (!is_crypt64(b.p[pos])) {
			*error_r = "SHA-crypt hash contains a character outside its alphabet";
			return -1;
		}
	}
	return 0;
}

/* True when crypt_r cannot take this password as it is. */
static bool crypt_password_unusable(const char *password, size_t password_len)
{
	return password_len > SORA_PW_CRYPT_MAX_PASSWORD_LEN ||
	       (password_len > 0 && memchr(password, '\0', password_len) != NULL);
}

/* Runs crypt_r(password, setting). On success *result_r points into
 * *data_r, which the caller releases with crypt_data_free. The crypt_data
 * (32 KiB, holding the password copy and the algorithm's internal state)
 * lives on the heap and is wiped before it is freed. */
static int crypt_run(const char *password, size_t password_len, const char *setting,
		     struct crypt_data **data_r, const char **result_r,
		     const char **error_r)
{
	struct crypt_data *data = calloc(1, sizeof(*data));

	if (data == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	if (password_len > 0)
		memcpy(data->input, password, password_len);
	data->input[password_len] = '\0';
	const char *out = crypt_r(data->input, setting, data);
	if (out == NULL || out[0] == '*') {
		sodium_memzero(data, sizeof(*data));
		free(data);
		*error_r = "crypt_r rejected the hash setting";
		return -1;
	}
	*data_r = data;
	*result_r = out;
	return 0;
}

static void crypt_data_free(struct crypt_data *data)
{
	sodium_memzero(data, sizeof(*data));
	free(data);
}

static int crypt_verify(const struct stored_hash *h, const char *password,
			size_t password_len, bool *match_r, const char **error_r)
{
	struct crypt_data *data;
	const char *out;

	if (crypt_password_unusable(password, password_len))
		return 0;
	/* h->body is the NUL-terminated tail of the stored string, so it
	 * can be the setting as it is: crypt_r reads salt and cost from it. */
	if (crypt_run(password, password_len, h->body.p, &data, &out, error_r) < 0)
		return -1;
	size_t out_len = strlen(out);
	*match_r = out_len == h->body.len &&
		   CRYPTO_memcmp(out, h->body.p, out_len) == 0;
	crypt_data_free(data);
	return 0;
}

/* ---- salted and unsalted digests (SSHA512, SHA512, SSHA256) ---- */

static const EVP_MD *digest_md(enum sora_pw_scheme scheme)
{
	return scheme == SORA_PW_SSHA256 ? EVP_sha256() : EVP_sha512();
}

static int digest_compute(enum sora_pw_scheme scheme, const char *password,
			  size_t password_len, const unsigned char *salt,
			  size_t salt_len, unsigned char *digest,
			  const char **error_r)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ret = -1;

	if (ctx == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	if (EVP_DigestInit_ex(ctx, digest_md(scheme), NULL) != 1 ||
	    (password_len > 0 && EVP_DigestUpdate(ctx, password, password_len) != 1) ||
	    (salt_len > 0 && EVP_DigestUpdate(ctx, salt, salt_len) != 1) ||
	    EVP_DigestFinal_ex(ctx, digest, NULL) != 1) {
		*error_r = "OpenSSL digest failed";
		goto out;
	}
	ret = 0;
out:
	/* EVP_MD_CTX_free cleanses the context's state. */
	EVP_MD_CTX_free(ctx);
	return ret;
}

static int b64_decode(struct sora_str in, unsigned char *raw, size_t raw_max,
		      size_t *raw_len_r)
{
	/* Padded base64 is what Dovecot writes; unpadded is accepted as
	 * well because some migration tools strip the '='. */
	if (sodium_base642bin(raw, raw_max, in.p, in.len, NULL, raw_len_r, NULL,
			      sodium_base64_VARIANT_ORIGINAL) == 0)
		return 0;
	if (sodium_base642bin(raw, raw_max, in.p, in.len, NULL, raw_len_r, NULL,
			      sodium_base64_VARIANT_ORIGINAL_NO_PADDING) == 0)
		return 0;
	return -1;
}

static int hex_decode(struct sora_str in, unsigned char *raw, size_t raw_max,
		      size_t *raw_len_r)
{
	if (in.len % 2 != 0)
		return -1;
	return sodium_hex2bin(raw, raw_max, in.p, in.len, NULL, raw_len_r, NULL);
}

static int digest_decode(const struct stored_hash *h, size_t digest_len,
			 unsigned char *raw, size_t *raw_len_r, const char **error_r)
{
	bool salted = h->scheme != SORA_PW_SHA512;

	switch (h->encoding) {
	case PW_ENC_HEX:
		if (hex_decode(h->body, raw, DIGEST_RAW_MAX, raw_len_r) < 0) {
			*error_r = "stored password hash is not valid hex (or too long)";
			return -1;
		}
		break;
	case PW_ENC_DEFAULT:
		/* Dovecot reads an unsalted digest of exactly twice its
		 * length as hex; no base64 of that length is a valid
		 * digest, so the guess cannot mislead. */
		if (!salted && h->body.len == digest_len * 2 &&
		    hex_decode(h->body, raw, DIGEST_RAW_MAX, raw_len_r) == 0)
			break;
		/* fall through */
	case PW_ENC_BASE64:
		if (b64_decode(h->body, raw, DIGEST_RAW_MAX, raw_len_r) < 0) {
			*error_r = "stored password hash is not valid base64 (or too long)";
			return -1;
		}
		break;
	}
	if (salted && *raw_len_r <= digest_len) {
		*error_r = "salted digest hash is too short (no salt)";
		return -1;
	}
	if (!salted && *raw_len_r != digest_len) {
		*error_r = "SHA512 hash has the wrong length";
		return -1;
	}
	return 0;
}

static int digest_verify(const struct stored_hash *h, const char *password,
			 size_t password_len, bool *match_r, const char **error_r)
{
	unsigned char raw[DIGEST_RAW_MAX];
	unsigned char digest[EVP_MAX_MD_SIZE];
	size_t raw_len = 0;
	size_t digest_len = (size_t)EVP_MD_get_size(digest_md(h->scheme));
	int ret = -1;

	if (digest_decode(h, digest_len, raw, &raw_len, error_r) < 0)
		goto out;
	if (digest_compute(h->scheme, password, password_len, raw + digest_len,
			   raw_len - digest_len, digest, error_r) < 0)
		goto out;
	*match_r = CRYPTO_memcmp(digest, raw, digest_len) == 0;
	ret = 0;
out:
	sodium_memzero(digest, sizeof(digest));
	sodium_memzero(raw, sizeof(raw));
	return ret;
}

/* ---- Argon2 (libsodium) ---- */

static bool b64_run(struct sora_str s, size_t *pos, char terminator)
{
	size_t start = *pos;

	while (*pos < s.len && is_base64(s.p[*pos]))
		(*pos)++;
	if (*pos == start)
		return false;
	if (terminator == '\0')
		return *pos == s.len;
	if (*pos >= s.len || s.p[*pos] != terminator)
		return false;
	(*pos)++;
	return true;
}

/* "$argon2id$v=19$m=M,t=T,p=P$salt$hash" (or "$argon2i$..."). libsodium
 * checks the numbers against Argon2's own limits; this makes sure the
 * string has that shape, that it is version 19 (the only one libsodium
 * verifies) and that the memory cost is bounded. */
static int argon2_check(struct sora_str b, enum sora_pw_scheme scheme,
			const char **error_r)
{
	const char *id = scheme == SORA_PW_ARGON2ID ? "$argon2id$" : "$argon2i$";
	size_t pos = strlen(id);
	uint64_t m, t, p;

	if (!has_prefix(b, id)) {
		*error_r = scheme == SORA_PW_ARGON2ID ?
			"ARGON2ID hash does not start with $argon2id$" :
			"ARGON2I hash does not start with $argon2i$";
		return -1;
	}
	if (b.len > ARGON2_BODY_MAX) {
		*error_r = "Argon2 hash is too long";
		return -1;
	}
	if (!has_prefix(sora_str_make(b.p + pos, b.len - pos), "v=19$")) {
		*error_r = "Argon2 hash is not version 19 (v=19), the only one supported";
		return -1;
	}
	pos += 5;
	if (!has_prefix(sora_str_make(b.p + pos, b.len - pos), "m="))
		goto malformed;
	pos += 2;
	if (parse_uint_until(b, &pos, ',', UINT32_MAX, &m) < 0)
		goto malformed;
	if (!has_prefix(sora_str_make(b.p + pos, b.len - pos), "t="))
		goto malformed;
	pos += 2;
	if (parse_uint_until(b, &pos, ',', UINT32_MAX, &t) < 0)
		goto malformed;
	if (!has_prefix(sora_str_make(b.p + pos, b.len - pos), "p="))
		goto malformed;
	pos += 2;
	if (parse_uint_until(b, &pos, '$', UINT32_MAX, &p) < 0)
		goto malformed;
	if (!b64_run(b, &pos, '$') || !b64_run(b, &pos, '\0'))
		goto malformed;
	if (m > SORA_PW_ARGON2_MAX_MEMORY_KIB) {
		*error_r = "Argon2 hash asks for more than 1 GiB of memory";
		return -1;
	}
	if (t == 0 || p == 0) {
		*error_r = "Argon2 hash has zero iterations or lanes";
		return -1;
	}
	return 0;
malformed:
	*error_r = "Argon2 hash is malformed (expected "
		   "$argon2id$v=19$m=M,t=T,p=P$salt$hash)";
	return -1;
}

/* The stored string must have passed argon2_check. */
static int argon2_verify(const struct stored_hash *h, const char *password,
			 size_t password_len, bool *match_r, const char **error_r)
{
	int r;

	/* libsodium answers -1 both for a wrong password and for a string
	 * or parameters it cannot use; only a mismatch sets errno to EINVAL
	 * (argon2_verify's ARGON2_VERIFY_MISMATCH), so errno tells them
	 * apart. A failure that is not a mismatch is never a match. */
	errno = 0;
	if (h->scheme == SORA_PW_ARGON2ID)
		r = crypto_pwhash_argon2id_str_verify(h->body.p, password, password_len);
	else
		r = crypto_pwhash_argon2i_str_verify(h->body.p, password, password_len);
	if (r == 0) {
		*match_r = true;
		return 0;
	}
	if (errno == EINVAL)
		return 0;
	*error_r = "libsodium could not verify the Argon2 hash "
		   "(unsupported parameters or out of memory)";
	return -1;
}

/* ---- public entry points ---- */

/* Checks the body of a stored hash against the form of its scheme, before
 * anything depends on the password. *bcrypt_cost_r is set for bcrypt. */
static int stored_check(const struct stored_hash *h, unsigned *bcrypt_cost_r,
			const char **error_r)
{
	unsigned char raw[DIGEST_RAW_MAX];
	size_t raw_len = 0;
	int ret = 0;

	switch (h->scheme) {
	case SORA_PW_BCRYPT:
		ret = bcrypt_check(h->body, bcrypt_cost_r, error_r);
		break;
	case SORA_PW_SHA512_CRYPT:
	case SORA_PW_SHA256_CRYPT:
		ret = shacrypt_check(h->body, h->scheme, error_r);
		break;
	case SORA_PW_SSHA512:
	case SORA_PW_SHA512:
	case SORA_PW_SSHA256:
		ret = digest_decode(h, (size_t)EVP_MD_get_size(digest_md(h->scheme)),
				    raw, &raw_len, error_r);
		sodium_memzero(raw, sizeof(raw));
		break;
	case SORA_PW_ARGON2ID:
	case SORA_PW_ARGON2I:
		ret = argon2_check(h->body, h->scheme, error_r);
		break;
	}
	return ret;
}

int sora_password_stored_check(const char *stored, enum sora_pw_scheme *scheme_r,
			       const char **error_r)
{
	struct stored_hash h;
	unsigned cost;

	if (ensure_sodium(error_r) < 0)
		return -1;
	if (stored == NULL) {
		*error_r = "stored password hash is missing";
		return -1;
	}
	if (stored_parse(stored, &h, error_r) < 0 || stored_check(&h, &cost, error_r) < 0)
		return -1;
	*scheme_r = h.scheme;
	return 0;
}

static int resolve_bcrypt_cost(int bcrypt_cost)
{
	return bcrypt_cost <= 0 ? SORA_PW_DEFAULT_BCRYPT_COST : bcrypt_cost;
}

int sora_password_verify(const char *stored, const char *password,
			 size_t password_len, int bcrypt_cost, bool *match_r,
			 bool *needs_rehash_r, const char **error_r)
{
	struct stored_hash h;
	unsigned stored_cost = 0;
	bool match = false;
	int ret = -1;

	*match_r = false;
	if (needs_rehash_r != NULL)
		*needs_rehash_r = false;
	if (ensure_sodium(error_r) < 0)
		return -1;
	if (stored == NULL) {
		*error_r = "stored password hash is missing";
		return -1;
	}
	if (password == NULL && password_len > 0) {
		*error_r = "password is missing";
		return -1;
	}
	if (stored_parse(stored, &h, error_r) < 0)
		return -1;

	if (stored_check(&h, &stored_cost, error_r) < 0)
		goto out;

	/* Only now that the stored hash is known to be well-formed, so that
	 * a broken row is reported whatever the client sent. */
	if (password_len > SORA_PW_MAX_PASSWORD_LEN) {
		ret = 0;
		goto out;
	}
	if (password == NULL)
		password = "";

	switch (h.scheme) {
	case SORA_PW_BCRYPT:
	case SORA_PW_SHA512_CRYPT:
	case SORA_PW_SHA256_CRYPT:
		ret = crypt_verify(&h, password, password_len, &match, error_r);
		break;
	case SORA_PW_SSHA512:
	case SORA_PW_SHA512:
	case SORA_PW_SSHA256:
		ret = digest_verify(&h, password, password_len, &match, error_r);
		break;
	case SORA_PW_ARGON2ID:
	case SORA_PW_ARGON2I:
		ret = argon2_verify(&h, password, password_len, &match, error_r);
		break;
	}
	if (ret == 0) {
		*match_r = match;
		if (match && needs_rehash_r != NULL && h.scheme == SORA_PW_BCRYPT &&
		    (int)stored_cost < resolve_bcrypt_cost(bcrypt_cost))
			*needs_rehash_r = true;
	}
out:
	return ret;
}

/* Joins "{NAME}" and body into a new malloc'd string. */
static int with_prefix(enum sora_pw_scheme scheme, const char *body,
		       char **hash_r, const char **error_r)
{
	const char *name = sora_password_scheme_name(scheme);
	size_t name_len = strlen(name), body_len = strlen(body);
	char *s = malloc(name_len + body_len + 3);

	if (s == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	s[0] = '{';
	memcpy(s + 1, name, name_len);
	s[1 + name_len] = '}';
	memcpy(s + 2 + name_len, body, body_len + 1);
	*hash_r = s;
	return 0;
}

static int crypt_hash(enum sora_pw_scheme scheme, const char *password,
		      size_t password_len, int bcrypt_cost, char **hash_r,
		      const char **error_r)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	unsigned char rbytes[BCRYPT_SALT_LEN];
	const char *prefix;
	unsigned long count = 0;
	size_t nrbytes = SHACRYPT_SALT_BYTES;
	struct crypt_data *data;
	const char *out;
	int ret;

	if (password_len > 0 && memchr(password, '\0', password_len) != NULL) {
		*error_r = "password contains a NUL byte, which bcrypt and "
			   "SHA-crypt hashes cannot represent";
		return -1;
	}
	if (password_len > SORA_PW_CRYPT_MAX_PASSWORD_LEN) {
		*error_r = "password is longer than 511 bytes, the limit of "
			   "bcrypt and SHA-crypt hashes";
		return -1;
	}
	switch (scheme) {
	case SORA_PW_BCRYPT:
		prefix = "$2y$";
		count = (unsigned long)bcrypt_cost;
		nrbytes = BCRYPT_SALT_LEN;
		break;
	case SORA_PW_SHA512_CRYPT:
		prefix = "$6$";
		break;
	default:
		prefix = "$5$";
		break;
	}
	randombytes_buf(rbytes, nrbytes);
	if (crypt_gensalt_rn(prefix, count, (const char *)rbytes, (int)nrbytes,
			     setting, sizeof(setting)) == NULL) {
		*error_r = "crypt_gensalt_rn failed";
		return -1;
	}
	if (crypt_run(password, password_len, setting, &data, &out, error_r) < 0)
		return -1;
	ret = with_prefix(scheme, out, hash_r, error_r);
	crypt_data_free(data);
	return ret;
}

static int digest_hash(enum sora_pw_scheme scheme, const char *password,
		       size_t password_len, char **hash_r, const char **error_r)
{
	unsigned char raw[EVP_MAX_MD_SIZE + DIGEST_SALT_LEN];
	char b64[sodium_base64_ENCODED_LEN(EVP_MAX_MD_SIZE + DIGEST_SALT_LEN,
					   sodium_base64_VARIANT_ORIGINAL)];
	size_t digest_len = (size_t)EVP_MD_get_size(digest_md(scheme));
	size_t salt_len = scheme == SORA_PW_SHA512 ? 0 : DIGEST_SALT_LEN;
	int ret = -1;

	if (salt_len > 0)
		randombytes_buf(raw + digest_len, salt_len);
	if (digest_compute(scheme, password, password_len, raw + digest_len,
			   salt_len, raw, error_r) < 0)
		goto out;
	sodium_bin2base64(b64, sizeof(b64), raw, digest_len + salt_len,
			  sodium_base64_VARIANT_ORIGINAL);
	ret = with_prefix(scheme, b64, hash_r, error_r);
out:
	sodium_memzero(raw, sizeof(raw));
	return ret;
}

static int argon2_hash(enum sora_pw_scheme scheme, const char *password,
		       size_t password_len, char **hash_r, const char **error_r)
{
	char out[crypto_pwhash_STRBYTES];
	int r;

	if (scheme == SORA_PW_ARGON2ID)
		r = crypto_pwhash_argon2id_str(out, password, password_len,
					       crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE,
					       crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE);
	else
		r = crypto_pwhash_argon2i_str(out, password, password_len,
					      crypto_pwhash_argon2i_OPSLIMIT_INTERACTIVE,
					      crypto_pwhash_argon2i_MEMLIMIT_INTERACTIVE);
	if (r != 0) {
		*error_r = "Argon2 hashing failed (out of memory)";
		return -1;
	}
	return with_prefix(scheme, out, hash_r, error_r);
}

int sora_password_hash(enum sora_pw_scheme scheme, const char *password,
		       size_t password_len, int bcrypt_cost, char **hash_r,
		       const char **error_r)
{
	if (ensure_sodium(error_r) < 0)
		return -1;
	if (password == NULL && password_len > 0) {
		*error_r = "password is missing";
		return -1;
	}
	if (password == NULL)
		password = "";
	if (password_len > SORA_PW_MAX_PASSWORD_LEN) {
		*error_r = "password is longer than 4096 bytes";
		return -1;
	}

	switch (scheme) {
	case SORA_PW_BCRYPT:
		bcrypt_cost = resolve_bcrypt_cost(bcrypt_cost);
		if (bcrypt_cost < SORA_PW_MIN_BCRYPT_COST ||
		    bcrypt_cost > SORA_PW_MAX_BCRYPT_COST) {
			*error_r = "bcrypt cost must be between 4 and 31";
			return -1;
		}
		return crypt_hash(scheme, password, password_len, bcrypt_cost,
				  hash_r, error_r);
	case SORA_PW_SHA512_CRYPT:
	case SORA_PW_SHA256_CRYPT:
		return crypt_hash(scheme, password, password_len, 0, hash_r, error_r);
	case SORA_PW_SSHA512:
	case SORA_PW_SHA512:
	case SORA_PW_SSHA256:
		return digest_hash(scheme, password, password_len, hash_r, error_r);
	case SORA_PW_ARGON2ID:
	case SORA_PW_ARGON2I:
		return argon2_hash(scheme, password, password_len, hash_r, error_r);
	}
	*error_r = "unknown password scheme";
	return -1;
}
