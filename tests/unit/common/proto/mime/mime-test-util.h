/* Helpers shared by the MIME unit tests (included by each test program;
 * everything is static). Test data lives next to this file and is found
 * through __FILE__, which the build passes as a path relative to the
 * repository root, where the tests run. */
#ifndef SORA_TEST_MIME_UTIL_H
#define SORA_TEST_MIME_UTIL_H

/* Not every test program uses every helper. */
#pragma GCC diagnostic ignored "-Wunused-function"

#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/core/buf.h"
#include "common/proto/mime/mime.h"
#include "common/proto/mime/mime-imap.h"
#include "common/proto/mime/mime-json.h"

static bool test_str_is(struct sora_str s, const char *lit)
{
	return s.p != NULL && sora_str_eq(s, sora_str_c(lit));
}

static bool test_starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool test_ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static const char *test_data_dir(void)
{
	static char dir[1024];

	if (dir[0] == '\0') {
		const char *slash = strrchr(__FILE__, '/');
		size_t n = slash != NULL ? (size_t)(slash - __FILE__) : 0;

		assert_true(n < sizeof(dir));
		memcpy(dir, __FILE__, n);
		dir[n] = '\0';
		if (n == 0)
			dir[0] = '.';
	}
	return dir;
}

/* Reads dir/name (dir relative to the test sources). Caller frees. */
static char *test_read_file(const char *name, size_t *len_r)
{
	char path[2048];
	FILE *f;
	char *data;
	long n;

	snprintf(path, sizeof(path), "%s/%s", test_data_dir(), name);
	f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s (run the tests from the repository root)", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	assert_int_equal(fseek(f, 0, SEEK_SET), 0);
	data = malloc((size_t)n + 1);
	assert_non_null(data);
	assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
	data[n] = '\0';
	fclose(f);
	*len_r = (size_t)n;
	return data;
}

static bool test_file_exists(const char *name)
{
	char path[2048];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", test_data_dir(), name);
	f = fopen(path, "rb");
	if (f != NULL)
		fclose(f);
	return f != NULL;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in subdir ending in suffix; caller frees each and the array. */
static char **test_list_dir(const char *subdir, const char *suffix, size_t *count_r)
{
	char path[2048];
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t count = 0, slen = strlen(suffix);

	snprintf(path, sizeof(path), "%s/%s", test_data_dir(), subdir);
	d = opendir(path);
	if (d == NULL)
		fail_msg("cannot open directory %s", path);
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);

		if (n <= slen || strcmp(de->d_name + n - slen, suffix) != 0)
			continue;
		names = realloc(names, sizeof(*names) * (count + 1));
		assert_non_null(names);
		names[count] = strdup(de->d_name);
		assert_non_null(names[count]);
		count++;
	}
	closedir(d);
	qsort(names, count, sizeof(*names), name_cmp);
	*count_r = count;
	return names;
}

static void test_free_list(char **names, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
}

/* Parses data fed in chunks of the given sizes (cycled); chunk_sizes NULL
 * means one piece. */
static struct sora_mime_message *test_parse_chunked(const char *data, size_t len,
						    const struct sora_mime_params *params,
						    const size_t *chunk_sizes, size_t nchunks)
{
	struct sora_mime_parser *p = sora_mime_parser_new(params);
	struct sora_mime_message *msg = NULL;
	const char *error = NULL;
	size_t pos = 0, k = 0;

	assert_non_null(p);
	if (chunk_sizes == NULL) {
		assert_int_equal(sora_mime_parser_feed(p, data, len), 0);
	} else {
		while (pos < len) {
			size_t n = chunk_sizes[k++ % nchunks];

			if (n > len - pos)
				n = len - pos;
			assert_int_equal(sora_mime_parser_feed(p, data + pos, n), 0);
			pos += n;
		}
	}
	assert_int_equal(sora_mime_parser_finish(&p, &msg, &error), 0);
	assert_null(p);
	assert_non_null(msg);
	return msg;
}

static struct sora_mime_message *test_parse(const char *data, size_t len)
{
	return test_parse_chunked(data, len, NULL, NULL, 0);
}

/* The JSON form with headers: a complete fingerprint of a parse. */
static char *test_serialize(const struct sora_mime_message *msg)
{
	struct sora_buf b;
	const char *error = NULL;

	sora_buf_init(&b, 0);
	assert_int_equal(sora_mime_json_serialize(msg, SORA_MIME_JSON_HEADERS, &b, &error), 0);
	assert_int_equal(sora_buf_append(&b, "", 1), 0);
	return b.data;
}

static char *test_bodystructure(const struct sora_mime_message *msg, bool extended,
				unsigned int flags, size_t *len_r)
{
	struct sora_buf b;

	sora_buf_init(&b, 0);
	assert_int_equal(sora_mime_imap_bodystructure(msg, extended, flags, &b), 0);
	assert_int_equal(sora_buf_append(&b, "", 1), 0);
	*len_r = b.len - 1;
	return b.data;
}

static char *test_envelope(const struct sora_mime_envelope *env, size_t *len_r)
{
	struct sora_buf b;

	sora_buf_init(&b, 0);
	assert_int_equal(sora_mime_imap_envelope(env, &b), 0);
	assert_int_equal(sora_buf_append(&b, "", 1), 0);
	*len_r = b.len - 1;
	return b.data;
}

/* Parses "1.2.MIME" style section specs. Returns false if unparseable. */
static bool test_parse_section(const char *spec, uint32_t *path, unsigned int max,
			       unsigned int *len_r, enum sora_mime_section *sec_r)
{
	unsigned int n = 0;

	*sec_r = SORA_MIME_SECTION_BODY;
	while (*spec != '\0') {
		if (*spec >= '0' && *spec <= '9') {
			char *end;
			unsigned long v = strtoul(spec, &end, 10);

			if (n == max)
				return false;
			path[n++] = (uint32_t)v;
			spec = end;
			if (*spec == '.')
				spec++;
			continue;
		}
		if (strcasecmp(spec, "MIME") == 0)
			*sec_r = SORA_MIME_SECTION_MIME;
		else if (strcasecmp(spec, "HEADER") == 0)
			*sec_r = SORA_MIME_SECTION_HEADER;
		else if (strcasecmp(spec, "TEXT") == 0)
			*sec_r = SORA_MIME_SECTION_TEXT;
		else
			return false;
		break;
	}
	*len_r = n;
	return true;
}

/* Copies raw[off, off+size) into out, turning bare LFs into CRLF when crlf
 * is set and NULs into 0x80 when nul80 is set (what Dovecot sends). */
static void test_copy_range(const char *raw, uint64_t off, uint64_t size, bool crlf, bool nul80,
			    struct sora_buf *out)
{
	for (uint64_t i = off; i < off + size; i++) {
		char c = raw[i];

		if (crlf && c == '\n' && (i == 0 || raw[i - 1] != '\r'))
			assert_int_equal(sora_buf_append(out, "\r", 1), 0);
		if (nul80 && c == '\0')
			c = (char)0x80;
		assert_int_equal(sora_buf_append(out, &c, 1), 0);
	}
}

static bool test_has_bare_lf(const char *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (d[i] == '\n' && (i == 0 || d[i - 1] != '\r'))
			return true;
	}
	return false;
}

static bool test_has_bare_cr(const char *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (d[i] == '\r' && (i + 1 == n || d[i + 1] != '\n'))
			return true;
	}
	return false;
}

#endif
