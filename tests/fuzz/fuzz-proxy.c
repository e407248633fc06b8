/* libFuzzer target for the PROXY protocol parser (common/proto/proxy-protocol.c).
 *
 * For every input and three parameter sets it checks that:
 *  - feeding the input one byte at a time reaches the same outcome (status,
 *    consumed length, result bytes, error text) as feeding it whole, and
 *    that every prefix before that point is NEED_MORE with nothing written;
 *  - a DONE result is internally consistent (lengths, NUL terminators);
 *  - a stricter parameter set never accepts what the default refuses, and
 *    agrees on the result when both accept;
 *  - a parsed header rebuilt with sora_proxy_v2_build() parses back to the
 *    same addresses and TLVs.
 * Any violation aborts, which libFuzzer reports as a crash. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "common/proto/proxy-protocol.h"

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "fuzz-proxy: check failed: %s (%s:%d)\n", #cond, \
			__FILE__, __LINE__); \
		abort(); \
	} \
} while (0)

#define SENTINEL_BYTE 0xA5
#define SENTINEL_CONSUMED ((size_t)-1)

struct outcome {
	enum sora_proxy_status status;
	size_t consumed;
	const char *error;
	struct sora_proxy_result result;
};

static void parse(const struct sora_proxy_params *params, const uint8_t *p, size_t len,
		  struct outcome *o)
{
	memset(&o->result, SENTINEL_BYTE, sizeof(o->result));
	o->consumed = SENTINEL_CONSUMED;
	o->error = NULL;
	o->status = sora_proxy_parse(params, sora_str_make((const char *)p, len),
				     &o->result, &o->consumed, &o->error);
}

static void check_untouched(const struct outcome *o)
{
	static struct sora_proxy_result sentinel;
	static bool sentinel_ready;

	if (!sentinel_ready) {
		memset(&sentinel, SENTINEL_BYTE, sizeof(sentinel));
		sentinel_ready = true;
	}
	CHECK(o->consumed == SENTINEL_CONSUMED);
	CHECK(memcmp(&o->result, &sentinel, sizeof(sentinel)) == 0);
}

static void check_same(const struct outcome *a, const struct outcome *b)
{
	CHECK(a->status == b->status);
	if (a->status == SORA_PROXY_DONE) {
		CHECK(a->consumed == b->consumed);
		CHECK(memcmp(&a->result, &b->result, sizeof(a->result)) == 0);
	} else if (a->status == SORA_PROXY_ERROR) {
		CHECK(a->error != NULL && b->error != NULL);
		CHECK(strcmp(a->error, b->error) == 0);
	}
}

static void check_text(const char *s, size_t len, size_t max)
{
	CHECK(len <= max);
	CHECK(s[len] == '\0');
	CHECK(strlen(s) == len);
}

static void check_consistent(const struct outcome *o, size_t size)
{
	const struct sora_proxy_result *r = &o->result;

	switch (o->status) {
	case SORA_PROXY_DONE:
		CHECK(o->error == NULL);
		CHECK(o->consumed >= 15 && o->consumed <= size);
		CHECK(o->consumed <= SORA_PROXY_V2_ABSOLUTE_MAX);
		CHECK(r->version == 1 || r->version == 2);
		if (r->version == 1)
			CHECK(o->consumed <= SORA_PROXY_V1_MAX);
		CHECK(r->family == AF_UNSPEC || r->family == AF_INET ||
		      r->family == AF_INET6 || r->family == AF_UNIX);
		CHECK(r->family == AF_UNSPEC || (r->src.ss_family == r->family &&
						 r->dst.ss_family == r->family));
		CHECK(r->command == SORA_PROXY_CMD_PROXY || r->family == AF_UNSPEC);
		check_text(r->session_id, r->session_id_len, SORA_PROXY_SESSION_ID_MAX);
		check_text(r->authority, r->authority_len, SORA_PROXY_AUTHORITY_MAX);
		check_text(r->netns, r->netns_len, SORA_PROXY_NETNS_MAX);
		check_text(r->tls.version, strlen(r->tls.version), SORA_PROXY_TLS_NAME_MAX);
		check_text(r->tls.cipher, strlen(r->tls.cipher), SORA_PROXY_TLS_NAME_MAX);
		check_text(r->tls.cn, strlen(r->tls.cn), SORA_PROXY_TLS_CN_MAX);
		CHECK(r->alpn_len <= SORA_PROXY_ALPN_MAX);
		CHECK(r->unique_id_len <= SORA_PROXY_UNIQUE_ID_MAX);
		break;
	case SORA_PROXY_NEED_MORE:
		CHECK(o->error == NULL);
		check_untouched(o);
		break;
	case SORA_PROXY_ERROR:
		CHECK(o->error != NULL && o->error[0] != '\0');
		check_untouched(o);
		break;
	default:
		CHECK(!"unknown status");
	}
}

/* Whole vs. byte by byte. */
static void check_incremental(const struct sora_proxy_params *params, const uint8_t *data,
			      size_t size, const struct outcome *whole)
{
	static struct outcome part;
	size_t k;

	for (k = 0; k <= size; k++) {
		parse(params, data, k, &part);
		if (part.status != SORA_PROXY_NEED_MORE)
			break;
		check_untouched(&part);
	}
	if (k > size) {
		CHECK(whole->status == SORA_PROXY_NEED_MORE);
		return;
	}
	check_same(&part, whole);
	if (part.status == SORA_PROXY_DONE)
		CHECK(part.consumed == k);
	if (k < size) {
		parse(params, data, k + 1, &part);
		check_same(&part, whole);
	}
}

/* Rebuilds what was parsed and parses that again. */
static void check_rebuild(const struct sora_proxy_result *r)
{
	static uint8_t buf[SORA_PROXY_V2_BUILD_MAX];
	static struct outcome again;
	struct sora_proxy_v2_opts opts;
	const char *error = NULL;
	size_t len = 0;
	bool addrs = r->family != AF_UNSPEC;

	memset(&opts, 0, sizeof(opts));
	if (addrs) {
		opts.session_id = r->session_id_len > 0 ? r->session_id : NULL;
		opts.authority = r->authority_len > 0 ? r->authority : NULL;
		opts.tls = r->tls.ssl;
		if (r->tls.ssl) {
			opts.tls_version = r->tls.version[0] != '\0' ? r->tls.version : NULL;
			opts.tls_cipher = r->tls.cipher[0] != '\0' ? r->tls.cipher : NULL;
		}
		opts.crc32c = r->crc32c_checked;
	}
	int rc = sora_proxy_v2_build(addrs ? (const struct sockaddr *)&r->src : NULL,
				     addrs ? (const struct sockaddr *)&r->dst : NULL,
				     &opts, buf, sizeof(buf), &len, &error);
	CHECK(rc == 0);
	parse(NULL, buf, len, &again);
	CHECK(again.status == SORA_PROXY_DONE);
	CHECK(again.consumed == len);

	const struct sora_proxy_result *a = &again.result;
	CHECK(a->version == 2);
	if (!addrs) {
		CHECK(a->command == SORA_PROXY_CMD_LOCAL);
		return;
	}
	CHECK(a->command == SORA_PROXY_CMD_PROXY);
	CHECK(a->family == r->family);
	CHECK(memcmp(&a->src, &r->src, sizeof(a->src)) == 0);
	CHECK(memcmp(&a->dst, &r->dst, sizeof(a->dst)) == 0);
	CHECK(a->session_id_len == r->session_id_len);
	CHECK(memcmp(a->session_id, r->session_id, r->session_id_len) == 0);
	CHECK(a->authority_len == r->authority_len);
	CHECK(memcmp(a->authority, r->authority, r->authority_len) == 0);
	CHECK(a->crc32c_checked == r->crc32c_checked);
	CHECK(a->tls.ssl == r->tls.ssl);
	if (r->tls.ssl) {
		CHECK(strcmp(a->tls.version, r->tls.version) == 0);
		CHECK(strcmp(a->tls.cipher, r->tls.cipher) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct sora_proxy_params strict = {
		.v2_max_len = 300, .crc32c_required = true,
	};
	static const struct sora_proxy_params no_v1 = { .v1_disabled = true };
	static struct outcome dflt, other;

	parse(NULL, data, size, &dflt);
	check_consistent(&dflt, size);
	check_incremental(NULL, data, size, &dflt);
	if (dflt.status == SORA_PROXY_DONE)
		check_rebuild(&dflt.result);

	const struct sora_proxy_params *variants[] = { &strict, &no_v1 };
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		parse(variants[i], data, size, &other);
		check_consistent(&other, size);
		check_incremental(variants[i], data, size, &other);
		if (other.status == SORA_PROXY_DONE) {
			CHECK(dflt.status == SORA_PROXY_DONE);
			check_same(&other, &dflt);
		}
		if (dflt.status == SORA_PROXY_ERROR)
			CHECK(other.status == SORA_PROXY_ERROR);
	}
	return 0;
}
