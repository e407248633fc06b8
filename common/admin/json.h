/* JSON for the HTTP admin API, on cJSON: safe encoding of strings that came
 * from clients or the database, and the checks a request body passes before
 * cJSON parses it.
 *
 * cJSON escapes quotes, backslashes and control characters when it prints,
 * but copies other bytes as they are: a string holding invalid UTF-8 (a
 * username a client sent, stored as bytes) would make the whole document
 * invalid JSON. sora_json_str() replaces every invalid sequence by U+FFFD
 * first. When parsing, cJSON turns "\u0000" into a NUL that silently cuts
 * the string ("a@b.c\u0000x" would act on "a@b.c"); sora_json_body_check()
 * refuses such bodies, raw NUL bytes and invalid UTF-8 up front.
 *
 * Pure functions, any thread. */
#ifndef SORA_ADMIN_JSON_H
#define SORA_ADMIN_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* Length of the valid UTF-8 sequence at s[0..avail) (1..4), 0 if invalid
 * (overlong forms, surrogates, code points past U+10FFFF, truncation). */
size_t sora_utf8_seq_len(const unsigned char *s, size_t avail);

/* A malloc'd, NUL-terminated copy of s[0..len) with invalid UTF-8 replaced
 * by U+FFFD and NUL bytes by U+FFFD too. NULL on out of memory. */
char *sora_utf8_sanitize(const char *s, size_t len);

/* A cJSON string of s (sanitized as above), or a JSON null for NULL.
 * Returns NULL on out of memory. */
cJSON *sora_json_str(const char *s);

/* Adds key: sora_json_str(s) / a number / a boolean to obj. Returns 0, or
 * -1 on out of memory. */
int sora_json_add_str(cJSON *obj, const char *key, const char *s);
int sora_json_add_num(cJSON *obj, const char *key, double v);
int sora_json_add_bool(cJSON *obj, const char *key, int v);

/* 0 when data[0..len) is valid UTF-8 without NUL bytes and without a
 * "\u0000" escape in a string; else -1 with *error_r (static text fit for
 * the client). Does not check the JSON grammar (cJSON does). */
int sora_json_body_check(const char *data, size_t len, const char **error_r);

#endif
