/* Tests for common/proto/proxy-protocol.c: the PROXY protocol v1/v2 parser and the
 * v2 builder.
 *
 * Every valid vector is also fed one byte at a time and in random chunks:
 * each proper prefix must give NEED_MORE without touching the outputs, and
 * every longer input the very same result as the whole. Every invalid
 * vector names the prefix length at which the error must first be seen, so
 * the tests pin down that errors come as early as the bytes allow.
 *
 * The cap_* arrays are real bytes sent by HAProxy 2.6.12 (Debian 12), each
 * followed by the first protocol bytes "a1 CAPABILITY\r\n" that the client
 * sent after it. They were captured once like this: a Python listener on
 * 127.0.0.1 recorded everything it received; haproxy -db ran a config with
 * `mode tcp` frontends on 127.0.0.1, [::1] and two unix sockets, each
 * forwarding to that listener through a backend `server s 127.0.0.1:PORT`
 * with `send-proxy` (v1) or `send-proxy-v2` (v2); the CRC vector used
 * `send-proxy-v2 proxy-v2-options crc32c`; the TLS vector came from a
 * frontend `bind ... ssl crt cert.pem alpn imap,pop3 ca-file client.pem
 * verify optional` with `unique-id-format %{+X}o\ %ci:%cp_%fi:%fp_%Ts_%rt:%pid`
 * and `proxy-v2-options ssl,crc32c,unique-id,authority,cert-cn,ssl-cipher,
 * cert-sig,cert-key`, reached with `openssl s_client -servername
 * mail.example.com -alpn imap -cert client.pem -key client.key -tls1_3`
 * (client certificate CN alice@example.com). Connections to the unix
 * sockets make HAProxy send v1 UNKNOWN and a v2 LOCAL header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "common/proto/proxy-protocol.h"

#define PROTOCOL_DATA "a1 CAPABILITY\r\n"
#define PROTOCOL_DATA_LEN (sizeof(PROTOCOL_DATA) - 1)

static const uint8_t cap_v1_tcp4[] = {
	0x50, 0x52, 0x4f, 0x58, 0x59, 0x20, 0x54, 0x43, 0x50, 0x34, 0x20, 0x31,
	0x32, 0x37, 0x2e, 0x30, 0x2e, 0x30, 0x2e, 0x31, 0x20, 0x31, 0x32, 0x37,
	0x2e, 0x30, 0x2e, 0x30, 0x2e, 0x31, 0x20, 0x34, 0x38, 0x38, 0x35, 0x32,
	0x20, 0x33, 0x34, 0x34, 0x37, 0x39, 0x0d, 0x0a, 0x61, 0x31, 0x20, 0x43,
	0x41, 0x50, 0x41, 0x42, 0x49, 0x4c, 0x49, 0x54, 0x59, 0x0d, 0x0a,
};
static const uint8_t cap_v2_tcp4[] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
	0x21, 0x11, 0x00, 0x0c, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01,
	0xcf, 0x40, 0xd1, 0x1f, 0x61, 0x31, 0x20, 0x43, 0x41, 0x50, 0x41, 0x42,
	0x49, 0x4c, 0x49, 0x54, 0x59, 0x0d, 0x0a,
};
static const uint8_t cap_v1_tcp6[] = {
	0x50, 0x52, 0x4f, 0x58, 0x59, 0x20, 0x54, 0x43, 0x50, 0x36, 0x20, 0x3a,
	0x3a, 0x31, 0x20, 0x3a, 0x3a, 0x31, 0x20, 0x35, 0x30, 0x39, 0x36, 0x38,
	0x20, 0x34, 0x34, 0x34, 0x31, 0x39, 0x0d, 0x0a, 0x61, 0x31, 0x20, 0x43,
	0x41, 0x50, 0x41, 0x42, 0x49, 0x4c, 0x49, 0x54, 0x59, 0x0d, 0x0a,
};
static const uint8_t cap_v2_tcp6[] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
	0x21, 0x21, 0x00, 0x24, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x8c, 0xac, 0xad, 0x0b, 0x61, 0x31, 0x20, 0x43, 0x41, 0x50, 0x41, 0x42,
	0x49, 0x4c, 0x49, 0x54, 0x59, 0x0d, 0x0a,
};
static const uint8_t cap_v1_unknown[] = {
	0x50, 0x52, 0x4f, 0x58, 0x59, 0x20, 0x55, 0x4e, 0x4b, 0x4e, 0x4f, 0x57,
	0x4e, 0x0d, 0x0a, 0x61, 0x31, 0x20, 0x43, 0x41, 0x50, 0x41, 0x42, 0x49,
	0x4c, 0x49, 0x54, 0x59, 0x0d, 0x0a,
};
static const uint8_t cap_v2_local[] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
	0x20, 0x00, 0x00, 0x00, 0x61, 0x31, 0x20, 0x43, 0x41, 0x50, 0x41, 0x42,
	0x49, 0x4c, 0x49, 0x54, 0x59, 0x0d, 0x0a,
};
static const uint8_t cap_v2_crc[] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
	0x21, 0x11, 0x00, 0x13, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01,
	0x9f, 0x1a, 0x8d, 0x17, 0x03, 0x00, 0x04, 0x5e, 0x40, 0x3d, 0xa9, 0x61,
	0x31, 0x20, 0x43, 0x41, 0x50, 0x41, 0x42, 0x49, 0x4c, 0x49, 0x54, 0x59,
	0x0d, 0x0a,
};
static const uint8_t cap_v2_tls[] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
	0x21, 0x11, 0x00, 0xb4, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01,
	0xc5, 0x1a, 0x84, 0x0d, 0x03, 0x00, 0x04, 0x8b, 0x0f, 0x31, 0x8b, 0x01,
	0x00, 0x04, 0x69, 0x6d, 0x61, 0x70, 0x02, 0x00, 0x10, 0x6d, 0x61, 0x69,
	0x6c, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x63, 0x6f,
	0x6d, 0x05, 0x00, 0x2e, 0x37, 0x46, 0x30, 0x30, 0x30, 0x30, 0x30, 0x31,
	0x3a, 0x43, 0x35, 0x31, 0x41, 0x5f, 0x37, 0x46, 0x30, 0x30, 0x30, 0x30,
	0x30, 0x31, 0x3a, 0x38, 0x34, 0x30, 0x44, 0x5f, 0x36, 0x42, 0x30, 0x32,
	0x32, 0x32, 0x35, 0x31, 0x5f, 0x30, 0x30, 0x30, 0x37, 0x3a, 0x32, 0x41,
	0x43, 0x36, 0x20, 0x00, 0x53, 0x07, 0x00, 0x00, 0x00, 0x00, 0x21, 0x00,
	0x07, 0x54, 0x4c, 0x53, 0x76, 0x31, 0x2e, 0x33, 0x22, 0x00, 0x11, 0x61,
	0x6c, 0x69, 0x63, 0x65, 0x40, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65,
	0x2e, 0x63, 0x6f, 0x6d, 0x25, 0x00, 0x07, 0x52, 0x53, 0x41, 0x32, 0x30,
	0x34, 0x38, 0x24, 0x00, 0x0a, 0x52, 0x53, 0x41, 0x2d, 0x53, 0x48, 0x41,
	0x32, 0x35, 0x36, 0x23, 0x00, 0x16, 0x54, 0x4c, 0x53, 0x5f, 0x41, 0x45,
	0x53, 0x5f, 0x32, 0x35, 0x36, 0x5f, 0x47, 0x43, 0x4d, 0x5f, 0x53, 0x48,
	0x41, 0x33, 0x38, 0x34, 0x61, 0x31, 0x20, 0x43, 0x41, 0x50, 0x41, 0x42,
	0x49, 0x4c, 0x49, 0x54, 0x59, 0x0d, 0x0a,
};

#define SENTINEL_BYTE 0xA5
#define SENTINEL_CONSUMED ((size_t)0x5A5A5A5A)

struct outcome {
	enum sora_proxy_status status;
	size_t consumed;
	const char *error;
	struct sora_proxy_result result;
};

static void run(const struct sora_proxy_params *params, const void *p, size_t len,
		struct outcome *o)
{
	memset(&o->result, SENTINEL_BYTE, sizeof(o->result));
	o->consumed = SENTINEL_CONSUMED;
	o->error = NULL;
	o->status = sora_proxy_parse(params, sora_str_make(p, len), &o->result,
				     &o->consumed, &o->error);
}

static void assert_untouched(const struct outcome *o)
{
	const uint8_t *b = (const uint8_t *)&o->result;

	assert_int_equal(o->consumed, SENTINEL_CONSUMED);
	for (size_t i = 0; i < sizeof(o->result); i++) {
		if (b[i] != SENTINEL_BYTE)
			fail_msg("result byte %zu written although not DONE", i);
	}
}

/* Parses p[0..len) (a header of hdrlen bytes, then anything) whole, one
 * byte at a time and in pseudo-random chunks, checks all agree, and
 * returns the result. */
static struct sora_proxy_result check_valid(const struct sora_proxy_params *params,
					    const void *p, size_t len, size_t hdrlen)
{
	static struct outcome whole, part;

	run(params, p, len, &whole);
	if (whole.status != SORA_PROXY_DONE)
		fail_msg("expected DONE, got %d (%s)", whole.status,
			 whole.error != NULL ? whole.error : "");
	assert_int_equal(whole.consumed, hdrlen);

	for (size_t k = 0; k <= len; k++) {
		run(params, p, k, &part);
		if (k < hdrlen) {
			if (part.status != SORA_PROXY_NEED_MORE)
				fail_msg("prefix of %zu/%zu bytes: status %d (%s)", k,
					 hdrlen, part.status,
					 part.error != NULL ? part.error : "");
			assert_null(part.error);
			assert_untouched(&part);
		} else {
			assert_int_equal(part.status, SORA_PROXY_DONE);
			assert_int_equal(part.consumed, hdrlen);
			assert_memory_equal(&part.result, &whole.result, sizeof(whole.result));
		}
	}

	/* As a reader would: append what arrives, parse what is there. */
	uint32_t seed = (uint32_t)len * 2654435761u;
	for (int round = 0; round < 20; round++) {
		size_t have = 0;
		for (;;) {
			seed = seed * 1103515245u + 12345u;
			have += 1 + (seed >> 16) % 7;
			if (have > len)
				have = len;
			run(params, p, have, &part);
			if (part.status != SORA_PROXY_NEED_MORE)
				break;
			assert_true(have < hdrlen);
		}
		assert_int_equal(part.status, SORA_PROXY_DONE);
		assert_int_equal(part.consumed, hdrlen);
		assert_memory_equal(&part.result, &whole.result, sizeof(whole.result));
	}
	return whole.result;
}

/* p[0..len) must be NEED_MORE for every prefix shorter than err_len and
 * ERROR, with nothing written but the reason, from err_len on. */
static void check_error(const struct sora_proxy_params *params, const void *p,
			size_t len, size_t err_len, const char *name)
{
	static struct outcome o;

	assert_true(err_len >= 1 && err_len <= len);
	for (size_t k = 0; k <= len; k++) {
		run(params, p, k, &o);
		if (k < err_len) {
			if (o.status != SORA_PROXY_NEED_MORE)
				fail_msg("%s: prefix %zu: status %d (%s), error expected "
					 "only at %zu", name, k, o.status,
					 o.error != NULL ? o.error : "", err_len);
		} else {
			if (o.status != SORA_PROXY_ERROR)
				fail_msg("%s: prefix %zu: status %d, expected ERROR",
					 name, k, o.status);
			assert_non_null(o.error);
			assert_true(strlen(o.error) > 0);
		}
		if (o.status != SORA_PROXY_DONE)
			assert_untouched(&o);
	}
}

static void assert_addr(const struct sockaddr_storage *ss, const char *ip,
			unsigned port)
{
	char text[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		assert_non_null(inet_ntop(AF_INET, &s->sin_addr, text, sizeof(text)));
		assert_int_equal(ntohs(s->sin_port), port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		assert_non_null(inet_ntop(AF_INET6, &s->sin6_addr, text, sizeof(text)));
		assert_int_equal(ntohs(s->sin6_port), port);
	} else {
		fail_msg("unexpected family %d", ss->ss_family);
	}
	assert_string_equal(text, ip);
}

/* ---- real HAProxy output ------------------------------------------------ */

static size_t header_len(size_t total)
{
	return total - PROTOCOL_DATA_LEN;
}

static void test_captured_v1(void **state)
{
	struct sora_proxy_result r;

	r = check_valid(NULL, cap_v1_tcp4, sizeof(cap_v1_tcp4),
			header_len(sizeof(cap_v1_tcp4)));
	assert_int_equal(r.version, 1);
	assert_int_equal(r.command, SORA_PROXY_CMD_PROXY);
	assert_int_equal(r.transport, SORA_PROXY_TRANSPORT_STREAM);
	assert_int_equal(r.family, AF_INET);
	assert_addr(&r.src, "127.0.0.1", 48852);
	assert_addr(&r.dst, "127.0.0.1", 34479);
	assert_memory_equal(cap_v1_tcp4 + header_len(sizeof(cap_v1_tcp4)), PROTOCOL_DATA,
			    PROTOCOL_DATA_LEN);

	r = check_valid(NULL, cap_v1_tcp6, sizeof(cap_v1_tcp6),
			header_len(sizeof(cap_v1_tcp6)));
	assert_int_equal(r.family, AF_INET6);
	assert_addr(&r.src, "::1", 50968);
	assert_addr(&r.dst, "::1", 44419);

	r = check_valid(NULL, cap_v1_unknown, sizeof(cap_v1_unknown),
			header_len(sizeof(cap_v1_unknown)));
	assert_int_equal(r.version, 1);
	assert_int_equal(r.command, SORA_PROXY_CMD_PROXY);
	assert_int_equal(r.family, AF_UNSPEC);
	assert_int_equal(r.transport, SORA_PROXY_TRANSPORT_UNSPEC);
	assert_int_equal(r.src.ss_family, AF_UNSPEC);
}

static void test_captured_v2(void **state)
{
	struct sora_proxy_result r;

	r = check_valid(NULL, cap_v2_tcp4, sizeof(cap_v2_tcp4),
			header_len(sizeof(cap_v2_tcp4)));
	assert_int_equal(r.version, 2);
	assert_int_equal(r.command, SORA_PROXY_CMD_PROXY);
	assert_int_equal(r.transport, SORA_PROXY_TRANSPORT_STREAM);
	assert_int_equal(r.family, AF_INET);
	assert_addr(&r.src, "127.0.0.1", 53056);
	assert_addr(&r.dst, "127.0.0.1", 53535);
	assert_false(r.crc32c_checked);
	assert_false(r.tls.present);
	assert_int_equal(r.session_id_len, 0);

	r = check_valid(NULL, cap_v2_tcp6, sizeof(cap_v2_tcp6),
			header_len(sizeof(cap_v2_tcp6)));
	assert_int_equal(r.family, AF_INET6);
	assert_addr(&r.src, "::1", 36012);
	assert_addr(&r.dst, "::1", 44299);

	r = check_valid(NULL, cap_v2_local, sizeof(cap_v2_local),
			header_len(sizeof(cap_v2_local)));
	assert_int_equal(r.version, 2);
	assert_int_equal(r.command, SORA_PROXY_CMD_LOCAL);
	assert_int_equal(r.family, AF_UNSPEC);

	/* HAProxy's own checksum must verify: this is what shows our
	 * CRC32C is the same as everyone else's. */
	r = check_valid(NULL, cap_v2_crc, sizeof(cap_v2_crc),
			header_len(sizeof(cap_v2_crc)));
	assert_true(r.crc32c_checked);
	assert_addr(&r.src, "127.0.0.1", 40730);
	assert_addr(&r.dst, "127.0.0.1", 36119);
}

static void test_captured_v2_tls(void **state)
{
	static const char unique_id[] = "7F000001:C51A_7F000001:840D_6B022251_0007:2AC6";
	struct sora_proxy_result r;

	r = check_valid(NULL, cap_v2_tls, sizeof(cap_v2_tls),
			header_len(sizeof(cap_v2_tls)));
	assert_int_equal(r.family, AF_INET);
	assert_addr(&r.src, "127.0.0.1", 50458);
	assert_addr(&r.dst, "127.0.0.1", 33805);
	assert_true(r.crc32c_checked);
	assert_int_equal(r.alpn_len, 4);
	assert_memory_equal(r.alpn, "imap", 4);
	assert_int_equal(r.authority_len, strlen("mail.example.com"));
	assert_string_equal(r.authority, "mail.example.com");
	assert_int_equal(r.unique_id_len, strlen(unique_id));
	assert_memory_equal(r.unique_id, unique_id, strlen(unique_id));
	assert_true(r.tls.present);
	assert_true(r.tls.ssl);
	assert_int_equal(r.tls.client, SORA_PP2_CLIENT_SSL | SORA_PP2_CLIENT_CERT_CONN |
				       SORA_PP2_CLIENT_CERT_SESS);
	assert_int_equal(r.tls.verify, 0);
	assert_string_equal(r.tls.version, "TLSv1.3");
	assert_string_equal(r.tls.cipher, "TLS_AES_256_GCM_SHA384");
	assert_string_equal(r.tls.cn, "alice@example.com");
	assert_int_equal(r.session_id_len, 0);
	assert_int_equal(r.netns_len, 0);
}

/* With crc32c_required, any single flipped bit in a checksummed header must
 * be caught. (Without it, a flip in the CRC TLV's own type byte turns the
 * checksum into some other TLV and nothing is left to verify.) One exception
 * comes from the specification: turning the PROXY command (0x21) into LOCAL
 * (0x20) makes the receiver discard the block, checksum and all, and use the
 * connection's real endpoints. */
static void test_crc_detects_corruption(void **state)
{
	const struct sora_proxy_params strict = { .crc32c_required = true };
	size_t hl = header_len(sizeof(cap_v2_crc));
	uint8_t buf[sizeof(cap_v2_crc)];
	struct outcome o;

	for (size_t i = 0; i < hl; i++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(buf, cap_v2_crc, sizeof(buf));
			buf[i] ^= (uint8_t)(1u << bit);
			run(&strict, buf, hl, &o);
			if (i == 12 && bit == 0) {
				assert_int_equal(o.status, SORA_PROXY_DONE);
				assert_int_equal(o.result.command, SORA_PROXY_CMD_LOCAL);
				assert_int_equal(o.result.family, AF_UNSPEC);
				continue;
			}
			if (o.status == SORA_PROXY_DONE)
				fail_msg("flipping bit %d of byte %zu went unnoticed", bit, i);
		}
	}
	/* The checksum field itself is the most direct case. */
	memcpy(buf, cap_v2_crc, sizeof(buf));
	buf[31] ^= 0xFF;
	run(NULL, buf, sizeof(buf), &o);
	assert_int_equal(o.status, SORA_PROXY_ERROR);
	assert_string_equal(o.error, "PROXY v2: CRC32C mismatch");
}

/* ---- version 1, by hand ------------------------------------------------ */

static void test_v1_valid(void **state)
{
	static const char *const lines[] = {
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
		"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
		"PROXY TCP4 0.0.0.0 10.0.0.1 0 1\r\n",
		"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
		"PROXY TCP6 2001:DB8::1 ::ffff:192.0.2.1 1 2\r\n",
		"PROXY UNKNOWN\r\n",
		"PROXY UNKNOWN \r\n",
		/* The specification's worst case: exactly 107 bytes. */
		"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
		/* After UNKNOWN anything goes until the CRLF. */
		"PROXY UNKNOWN whatever \x01\xff\x00 text\r\n",
	};
	char buf[256];

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		/* The last line has an embedded NUL: take its length from the
		 * CRLF, not strlen. */
		const char *crlf = lines[i];
		size_t n = 0;
		while (!(crlf[n] == '\r' && crlf[n + 1] == '\n'))
			n++;
		n += 2;
		if (i == sizeof(lines) / sizeof(lines[0]) - 1)
			n = sizeof("PROXY UNKNOWN whatever \x01\xff\x00 text\r\n") - 1;
		memcpy(buf, lines[i], n);
		memcpy(buf + n, PROTOCOL_DATA, PROTOCOL_DATA_LEN);
		check_valid(NULL, buf, n + PROTOCOL_DATA_LEN, n);
	}
	assert_int_equal(strlen(lines[7]), SORA_PROXY_V1_MAX);

	struct sora_proxy_result r = check_valid(NULL, lines[0], strlen(lines[0]),
						 strlen(lines[0]));
	assert_addr(&r.src, "192.168.0.1", 56324);
	assert_addr(&r.dst, "192.168.0.11", 443);
	r = check_valid(NULL, lines[2], strlen(lines[2]), strlen(lines[2]));
	assert_addr(&r.src, "0.0.0.0", 0);
	assert_addr(&r.dst, "10.0.0.1", 1);
	r = check_valid(NULL, lines[4], strlen(lines[4]), strlen(lines[4]));
	assert_addr(&r.src, "2001:db8::1", 1);
	assert_addr(&r.dst, "::ffff:192.0.2.1", 2);
}

struct err_vector {
	const char *data;
	size_t err_len;    /* prefix length at which ERROR must first appear */
};

static void test_v1_errors(void **state)
{
	static const struct err_vector vectors[] = {
		{ "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 1 },
		{ "PROXZ TCP4", 5 },
		{ "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 7 },
		{ "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 10 },
		{ "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", 7 },
		{ "PROXY TCP4\r\n", 11 },
		{ "PROXY TCP\r\n", 10 },
		{ "PROXY UNKNOWNX\r\n", 14 },
		{ "PROXY UNKNOWN\n", 14 },
		{ "PROXY UNKNOWN\rX", 15 },
		{ "PROXY UNKNOWN junk\nmore", 0 },   /* no CR: only the length cap ends it */
		/* ports */
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 65536 1\r\n", 32 },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 100000 1\r\n", 33 },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", 29 },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", 31 },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n", 28 },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 8a 2\r\n", 29 },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", 28 },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", 31 },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 29 },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", 30 },
		/* line ends */
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 31 },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", 32 },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r", 32 },
		/* addresses */
		{ "PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n", 21 },
		{ "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", 17 },
		{ "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", 20 },
		{ "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", 21 },
		{ "PROXY TCP4 ::1 ::1 1 2\r\n", 12 },
		{ "PROXY TCP4 1111111111111111 5.6.7.8 1 2\r\n", 27 },
		{ "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", 12 },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8\r\n", 27 },
		{ "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", 19 },
		{ "PROXY TCP6 gggg::1 ::1 1 2\r\n", 12 },
		{ "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", 29 },
		{ "PROXY TCP6 ::1 ::1::2 1 2\r\n", 22 },
	};
	char buf[256];

	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		size_t n = strlen(vectors[i].data);
		if (vectors[i].err_len == 0) {
			/* Pad to past the cap so the cap is what fails. */
			memset(buf, 'x', sizeof(buf));
			memcpy(buf, vectors[i].data, n);
			check_error(NULL, buf, 150, SORA_PROXY_V1_MAX, vectors[i].data);
			continue;
		}
		check_error(NULL, vectors[i].data, n, vectors[i].err_len, vectors[i].data);
	}
}

static void test_v1_too_long(void **state)
{
	char buf[200];
	struct outcome o;

	/* UNKNOWN with filler and no CRLF: fine up to 106 bytes, an error
	 * once 107 bytes have come without a line end. */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "PROXY UNKNOWN ", 14);
	run(NULL, buf, SORA_PROXY_V1_MAX - 1, &o);
	assert_int_equal(o.status, SORA_PROXY_NEED_MORE);
	check_error(NULL, buf, sizeof(buf), SORA_PROXY_V1_MAX, "filler");

	/* A CRLF at bytes 107-108 is one too late. */
	buf[SORA_PROXY_V1_MAX - 1] = '\r';
	buf[SORA_PROXY_V1_MAX] = '\n';
	run(NULL, buf, SORA_PROXY_V1_MAX + 1, &o);
	assert_int_equal(o.status, SORA_PROXY_ERROR);
	/* One byte earlier it just fits. */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "PROXY UNKNOWN ", 14);
	buf[SORA_PROXY_V1_MAX - 2] = '\r';
	buf[SORA_PROXY_V1_MAX - 1] = '\n';
	check_valid(NULL, buf, sizeof(buf), SORA_PROXY_V1_MAX);
}

/* ---- version 2, by hand ------------------------------------------------ */

/* Independent CRC32C for building test vectors; checked against the
 * standard check value in test_v2_crc_builder_vector. */
static uint32_t ref_crc32c(const uint8_t *p, size_t n)
{
	uint32_t crc = 0xFFFFFFFFu;
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
	}
	return ~crc;
}

struct v2 {
	uint8_t b[70000];
	size_t len;
	size_t crc_at;
};

static void v2_start(struct v2 *v, uint8_t ver_cmd, uint8_t fam)
{
	static const uint8_t sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A,
					 0x51, 0x55, 0x49, 0x54, 0x0A };
	memcpy(v->b, sig, 12);
	v->b[12] = ver_cmd;
	v->b[13] = fam;
	v->len = 16;
	v->crc_at = 0;
}

static void v2_put(struct v2 *v, const void *p, size_t n)
{
	memcpy(v->b + v->len, p, n);
	v->len += n;
}

static void v2_tlv(struct v2 *v, uint8_t type, const void *p, size_t n)
{
	uint8_t h[3] = { type, (uint8_t)(n >> 8), (uint8_t)n };
	v2_put(v, h, 3);
	v2_put(v, p, n);
}

static void v2_crc_tlv(struct v2 *v)
{
	static const uint8_t zero[4];
	v2_tlv(v, SORA_PP2_TYPE_CRC32C, zero, 4);
	v->crc_at = v->len - 4;
}

/* Sets the length field (and the checksum, if a CRC TLV was added). */
static size_t v2_finish(struct v2 *v)
{
	size_t block = v->len - 16;
	v->b[14] = (uint8_t)(block >> 8);
	v->b[15] = (uint8_t)block;
	if (v->crc_at != 0) {
		memset(v->b + v->crc_at, 0, 4);
		uint32_t crc = ref_crc32c(v->b, v->len);
		v->b[v->crc_at] = (uint8_t)(crc >> 24);
		v->b[v->crc_at + 1] = (uint8_t)(crc >> 16);
		v->b[v->crc_at + 2] = (uint8_t)(crc >> 8);
		v->b[v->crc_at + 3] = (uint8_t)crc;
	}
	return v->len;
}

static const uint8_t inet_block[12] = { 192, 0, 2, 1, 198, 51, 100, 7, 0xC0, 0x01, 0x00, 0x8F };

static void test_v2_crc_builder_vector(void **state)
{
	assert_int_equal(ref_crc32c((const uint8_t *)"123456789", 9), 0xE3069283u);
}

static void test_v2_valid(void **state)
{
	static struct v2 v;
	struct sora_proxy_result r;
	size_t n;

	/* All TLV kinds at once, unknown and NOOP ones included, with CRC. */
	v2_start(&v, 0x21, 0x11);
	v2_put(&v, inet_block, sizeof(inet_block));
	v2_tlv(&v, SORA_PP2_TYPE_NOOP, "\0\0\0", 3);
	v2_tlv(&v, SORA_PP2_TYPE_SORA_SESSION, "sess-0123abcd", 13);
	v2_tlv(&v, SORA_PP2_TYPE_ALPN, "h2\0x", 4);
	v2_tlv(&v, SORA_PP2_TYPE_AUTHORITY, "imap.example.org", 16);
	v2_tlv(&v, SORA_PP2_TYPE_UNIQUE_ID, "\x00\x01\x02\xff", 4);
	v2_tlv(&v, SORA_PP2_TYPE_NETNS, "blue", 4);
	v2_tlv(&v, 0xF3, "experimental", 12);
	v2_tlv(&v, 0xE5, "", 0);
	{
		uint8_t ssl[64];
		size_t o = 0;
		ssl[o++] = SORA_PP2_CLIENT_SSL;
		memcpy(ssl + o, "\x00\x00\x00\x09", 4);
		o += 4;
		memcpy(ssl + o, "\x21\x00\x07TLSv1.2", 10);
		o += 10;
		memcpy(ssl + o, "\x24\x00\x06SHA256", 9);
		o += 9;
		memcpy(ssl + o, "\x7e\x00\x00", 3);   /* unknown sub-TLV */
		o += 3;
		v2_tlv(&v, SORA_PP2_TYPE_SSL, ssl, o);
	}
	v2_crc_tlv(&v);
	n = v2_finish(&v);
	v2_put(&v, PROTOCOL_DATA, PROTOCOL_DATA_LEN);
	r = check_valid(NULL, v.b, v.len, n);
	assert_addr(&r.src, "192.0.2.1", 0xC001);
	assert_addr(&r.dst, "198.51.100.7", 143);
	assert_string_equal(r.session_id, "sess-0123abcd");
	assert_int_equal(r.session_id_len, 13);
	assert_int_equal(r.alpn_len, 4);
	assert_memory_equal(r.alpn, "h2\0x", 4);
	assert_string_equal(r.authority, "imap.example.org");
	assert_int_equal(r.unique_id_len, 4);
	assert_memory_equal(r.unique_id, "\x00\x01\x02\xff", 4);
	assert_string_equal(r.netns, "blue");
	assert_true(r.crc32c_checked);
	assert_true(r.tls.present);
	assert_true(r.tls.ssl);
	assert_int_equal(r.tls.verify, 9);
	assert_string_equal(r.tls.version, "TLSv1.2");
	assert_string_equal(r.tls.cipher, "");
	assert_string_equal(r.tls.cn, "");

	/* TLS TLV without PP2_CLIENT_SSL: present, but not TLS. */
	v2_start(&v, 0x21, 0x11);
	v2_put(&v, inet_block, sizeof(inet_block));
	v2_tlv(&v, SORA_PP2_TYPE_SSL, "\x00\x00\x00\x00\x01", 5);
	n = v2_finish(&v);
	r = check_valid(NULL, v.b, n, n);
	assert_true(r.tls.present);
	assert_false(r.tls.ssl);

	/* UDP over IPv4. */
	v2_start(&v, 0x21, 0x12);
	v2_put(&v, inet_block, sizeof(inet_block));
	n = v2_finish(&v);
	r = check_valid(NULL, v.b, n, n);
	assert_int_equal(r.transport, SORA_PROXY_TRANSPORT_DGRAM);
	assert_int_equal(r.family, AF_INET);

	/* UNIX stream, including an abstract (leading NUL) address. */
	{
		uint8_t a[216] = { 0 };
		memcpy(a, "/run/client.sock", 16);
		memcpy(a + 109, "abstract", 8);
		v2_start(&v, 0x21, 0x31);
		v2_put(&v, a, sizeof(a));
		v2_tlv(&v, SORA_PP2_TYPE_SORA_SESSION, "u1", 2);
		n = v2_finish(&v);
		r = check_valid(NULL, v.b, n, n);
		assert_int_equal(r.family, AF_UNIX);
		const struct sockaddr_un *su = (const struct sockaddr_un *)&r.src;
		const struct sockaddr_un *du = (const struct sockaddr_un *)&r.dst;
		assert_int_equal(su->sun_family, AF_UNIX);
		assert_string_equal(su->sun_path, "/run/client.sock");
		assert_int_equal(du->sun_path[0], 0);
		assert_memory_equal(du->sun_path + 1, "abstract", 8);
		assert_string_equal(r.session_id, "u1");
	}

	/* PROXY with UNSPEC family: no addresses, TLVs right after the fixed
	 * part. */
	v2_start(&v, 0x21, 0x00);
	v2_tlv(&v, SORA_PP2_TYPE_SORA_SESSION, "x", 1);
	n = v2_finish(&v);
	r = check_valid(NULL, v.b, n, n);
	assert_int_equal(r.command, SORA_PROXY_CMD_PROXY);
	assert_int_equal(r.family, AF_UNSPEC);
	assert_string_equal(r.session_id, "x");

	/* LOCAL discards whatever block comes with it, whatever the family
	 * byte says. */
	static const uint8_t local_fams[] = { 0x11, 0x10, 0x01, 0x32 };
	for (size_t i = 0; i < sizeof(local_fams); i++) {
		v2_start(&v, 0x20, local_fams[i]);
		v2_put(&v, "\xE0\xFF\xFF\x01\x02", 5);
		n = v2_finish(&v);
		r = check_valid(NULL, v.b, n, n);
		assert_int_equal(r.command, SORA_PROXY_CMD_LOCAL);
		assert_int_equal(r.family, AF_UNSPEC);
	}

	/* Exactly at the default cap. */
	v2_start(&v, 0x21, 0x11);
	v2_put(&v, inet_block, sizeof(inet_block));
	{
		static uint8_t pad[SORA_PROXY_V2_DEFAULT_MAX];
		v2_tlv(&v, SORA_PP2_TYPE_NOOP, pad,
		       SORA_PROXY_V2_DEFAULT_MAX - 16 - 12 - 3);
	}
	n = v2_finish(&v);
	assert_int_equal(n, SORA_PROXY_V2_DEFAULT_MAX);
	check_valid(NULL, v.b, n, n);
}

struct bin_err {
	const char *name;
	const uint8_t *data;
	size_t len;
	size_t err_len;
};

static void test_v2_header_errors(void **state)
{
#define SIG "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"
#define E(name, bytes, err_len) \
	{ name, (const uint8_t *)(bytes), sizeof(bytes) - 1, err_len }
	static const struct bin_err vectors[] = {
		E("bad signature byte 5", "\x0D\x0A\x0D\x0A\x01\x0D\x0A\x51", 5),
		E("bad signature byte 12", "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0B", 12),
		E("LF first", "\x0A\x0D", 1),
		E("version 1", SIG "\x11\x11\x00\x0C", 13),
		E("version 3", SIG "\x31\x11\x00\x0C", 13),
		E("command 2", SIG "\x22\x11\x00\x0C", 13),
		E("command F", SIG "\x2F\x11\x00\x0C", 13),
		E("family 4", SIG "\x21\x41\x00\x0C", 14),
		E("protocol 3", SIG "\x21\x13\x00\x0C", 14),
		E("INET without protocol", SIG "\x21\x10\x00\x0C", 14),
		E("UNIX without protocol", SIG "\x21\x30\x00\x0C", 14),
		E("STREAM without family", SIG "\x21\x01\x00\x00", 14),
		E("too long", SIG "\x21\x11\xFF\xFF", 16),
		E("just over the cap", SIG "\x21\x11\x05\xF1", 16),
		E("inet block short", SIG "\x21\x11\x00\x0B" "\x01\x02\x03\x04\x05\x06\x07\x08"
				      "\x09\x0A\x0B", 16),
		E("inet6 block short", SIG "\x21\x21\x00\x23", 16),
		E("unix block short", SIG "\x21\x31\x00\xD7", 16),
		E("trailing 2 bytes", SIG "\x21\x11\x00\x0E" "\xC0\x00\x02\x01\xC6\x33\x64\x07"
				      "\xC0\x01\x00\x8F" "\x04\x00", 30),
		E("TLV past end", SIG "\x21\x11\x00\x10" "\xC0\x00\x02\x01\xC6\x33\x64\x07"
				  "\xC0\x01\x00\x8F" "\x04\x00\x05\x61", 32),
		E("UNSPEC TLV past end", SIG "\x21\x00\x00\x04" "\xE0\x00\x02\x61", 20),
	};
#undef E
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++)
		check_error(NULL, vectors[i].data, vectors[i].len, vectors[i].err_len,
			    vectors[i].name);

	/* 1536 is the cap: a declared 1521-byte block (1537 in all) fails at
	 * byte 16, while 1520 is still waiting for data. */
	struct outcome o;
	run(NULL, SIG "\x21\x11\x05\xF0", 16, &o);
	assert_int_equal(o.status, SORA_PROXY_NEED_MORE);
}

/* One TLV problem per vector; each fails exactly when the last byte
 * arrives, because TLVs are only looked at in a complete header. */
static void check_tlv_error(const uint8_t *tlvs, size_t n, const char *name,
			    const struct sora_proxy_params *params)
{
	static struct v2 v;

	v2_start(&v, 0x21, 0x11);
	v2_put(&v, inet_block, sizeof(inet_block));
	v2_put(&v, tlvs, n);
	size_t total = v2_finish(&v);
	check_error(params, v.b, total, total, name);
}

static void test_v2_tlv_errors(void **state)
{
#define T(name, bytes) check_tlv_error((const uint8_t *)(bytes), sizeof(bytes) - 1, name, NULL)
	T("session empty", "\xE0\x00\x00");
	T("session with space", "\xE0\x00\x03" "a b");
	T("session with NUL", "\xE0\x00\x03" "a\0b");
	T("session high byte", "\xE0\x00\x02" "a\xC3");
	T("session twice", "\xE0\x00\x01" "a" "\xE0\x00\x01" "b");
	T("authority with LF", "\x02\x00\x03" "a\nb");
	T("authority with NUL", "\x02\x00\x03" "a\0b");
	T("authority twice", "\x02\x00\x01" "a" "\x02\x00\x01" "a");
	T("alpn twice", "\x01\x00\x01" "a" "\x01\x00\x01" "a");
	T("netns with DEL", "\x30\x00\x02" "a\x7f");
	T("crc32c length 3", "\x03\x00\x03" "\x00\x00\x00");
	T("crc32c length 5", "\x03\x00\x05" "\x00\x00\x00\x00\x00");
	T("crc32c wrong", "\x03\x00\x04" "\x00\x00\x00\x00");
	T("ssl too short", "\x20\x00\x04" "\x01\x00\x00\x00");
	T("ssl sub-TLV past end", "\x20\x00\x08" "\x01\x00\x00\x00\x00" "\x21\x00\x05");
	T("ssl sub-TLV header cut", "\x20\x00\x07" "\x01\x00\x00\x00\x00" "\x21\x00");
	/* 65 bytes: one over SORA_PROXY_TLS_NAME_MAX. */
	T("ssl version too long", "\x20\x00\x49" "\x01\x00\x00\x00\x00" "\x21\x00\x41"
	  "TLSv1.3TLSv1.3TLSv1.3TLSv1.3TLSv1.3TLSv1.3TLSv1.3TLSv1.3TLSv1.3TL");
	T("ssl version twice", "\x20\x00\x0F" "\x01\x00\x00\x00\x00" "\x21\x00\x02" "v1"
	  "\x21\x00\x02" "v2");
	T("ssl cn with CR", "\x20\x00\x0A" "\x01\x00\x00\x00\x00" "\x22\x00\x02" "a\r");
	T("ssl twice", "\x20\x00\x05" "\x01\x00\x00\x00\x00" "\x20\x00\x05"
	  "\x01\x00\x00\x00\x00");
#undef T

	/* Length limits: exactly at the bound passes, one over fails. */
	static uint8_t big[3 + 300];
	static struct v2 v;
	static const struct {
		uint8_t type;
		size_t max;
	} bounds[] = {
		{ SORA_PP2_TYPE_SORA_SESSION, SORA_PROXY_SESSION_ID_MAX },
		{ SORA_PP2_TYPE_AUTHORITY, SORA_PROXY_AUTHORITY_MAX },
		{ SORA_PP2_TYPE_ALPN, SORA_PROXY_ALPN_MAX },
		{ SORA_PP2_TYPE_UNIQUE_ID, SORA_PROXY_UNIQUE_ID_MAX },
		{ SORA_PP2_TYPE_NETNS, SORA_PROXY_NETNS_MAX },
	};
	for (size_t i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
		for (size_t extra = 0; extra <= 1; extra++) {
			size_t n = bounds[i].max + extra;
			big[0] = bounds[i].type;
			big[1] = (uint8_t)(n >> 8);
			big[2] = (uint8_t)n;
			memset(big + 3, 'k', n);
			if (extra == 0) {
				v2_start(&v, 0x21, 0x11);
				v2_put(&v, inet_block, sizeof(inet_block));
				v2_put(&v, big, 3 + n);
				size_t total = v2_finish(&v);
				check_valid(NULL, v.b, total, total);
			} else {
				check_tlv_error(big, 3 + n, "one over the bound", NULL);
			}
		}
	}
}

static void test_params(void **state)
{
	static struct v2 v;
	struct sora_proxy_params p;
	struct outcome o;
	size_t n;

	/* v1 can be switched off; v2 still works. */
	memset(&p, 0, sizeof(p));
	p.v1_disabled = true;
	check_error(&p, cap_v1_tcp4, sizeof(cap_v1_tcp4), 1, "v1 disabled");
	check_valid(&p, cap_v2_tcp4, sizeof(cap_v2_tcp4), header_len(sizeof(cap_v2_tcp4)));

	/* CRC32C can be required; LOCAL headers are exempt. */
	memset(&p, 0, sizeof(p));
	p.crc32c_required = true;
	check_error(&p, cap_v2_tcp4, sizeof(cap_v2_tcp4), header_len(sizeof(cap_v2_tcp4)),
		    "crc required");
	check_valid(&p, cap_v2_crc, sizeof(cap_v2_crc), header_len(sizeof(cap_v2_crc)));
	check_valid(&p, cap_v2_local, sizeof(cap_v2_local), header_len(sizeof(cap_v2_local)));
	check_valid(&p, cap_v1_tcp4, sizeof(cap_v1_tcp4), header_len(sizeof(cap_v1_tcp4)));

	/* A smaller cap. */
	memset(&p, 0, sizeof(p));
	p.v2_max_len = 300;
	v2_start(&v, 0x21, 0x11);
	v2_put(&v, inet_block, sizeof(inet_block));
	{
		static uint8_t pad[300];
		v2_tlv(&v, SORA_PP2_TYPE_NOOP, pad, 300 - 16 - 12 - 3);
	}
	n = v2_finish(&v);
	assert_int_equal(n, 300);
	check_valid(&p, v.b, n, n);
	v2_put(&v, "", 1);
	n = v2_finish(&v);
	check_error(&p, v.b, n, 16, "over a 300-byte cap");

	/* Caps below a UNIX address block are raised to it... */
	p.v2_max_len = 20;
	v2_start(&v, 0x21, 0x31);
	{
		static uint8_t a[216];
		v2_put(&v, a, sizeof(a));
	}
	n = v2_finish(&v);
	check_valid(&p, v.b, n, n);
	v2_put(&v, "", 1);
	n = v2_finish(&v);
	check_error(&p, v.b, n, 16, "over the raised cap");

	/* ...and caps above what the format can say are lowered to it, so a
	 * 64 KiB header is simply waiting for more data. */
	p.v2_max_len = 1u << 20;
	v2_start(&v, 0x21, 0x11);
	v.b[14] = 0xFF;
	v.b[15] = 0xFF;
	run(&p, v.b, 16, &o);
	assert_int_equal(o.status, SORA_PROXY_NEED_MORE);
	memset(v.b + 16, 0, 65535);
	memcpy(v.b + 16, inet_block, sizeof(inet_block));
	v.b[28] = SORA_PP2_TYPE_NOOP;
	v.b[29] = (uint8_t)((65535 - 12 - 3) >> 8);
	v.b[30] = (uint8_t)(65535 - 12 - 3);
	run(&p, v.b, 16 + 65535, &o);
	assert_int_equal(o.status, SORA_PROXY_DONE);
	assert_int_equal(o.consumed, SORA_PROXY_V2_ABSOLUTE_MAX);
}

static void test_garbage(void **state)
{
	static const struct {
		const char *data;
		size_t len;
	} inputs[] = {
		{ "a1 LOGIN bob secret\r\n", 21 },
		{ "EHLO mail.example.com\r\n", 23 },
		{ "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11 },  /* TLS ClientHello */
		{ "\0\0\0\0", 4 },
		{ "\xff", 1 },
		{ " PROXY TCP4", 11 },
	};
	struct outcome o;

	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
		check_error(NULL, inputs[i].data, inputs[i].len, 1, inputs[i].data);

	/* Nothing yet is not an error. */
	run(NULL, "", 0, &o);
	assert_int_equal(o.status, SORA_PROXY_NEED_MORE);
	assert_untouched(&o);
	o.status = sora_proxy_parse(NULL, SORA_STR_NULL, &o.result, &o.consumed, &o.error);
	assert_int_equal(o.status, SORA_PROXY_NEED_MORE);
}

/* ---- builder ----------------------------------------------------------- */

static struct sockaddr_in sin4(const char *ip, uint16_t port)
{
	struct sockaddr_in s;
	memset(&s, 0, sizeof(s));
	s.sin_family = AF_INET;
	s.sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &s.sin_addr), 1);
	return s;
}

static struct sockaddr_in6 sin6(const char *ip, uint16_t port)
{
	struct sockaddr_in6 s;
	memset(&s, 0, sizeof(s));
	s.sin6_family = AF_INET6;
	s.sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &s.sin6_addr), 1);
	return s;
}

static size_t build(const void *src, const void *dst, const struct sora_proxy_v2_opts *opts,
		    uint8_t *buf, size_t size)
{
	const char *error = NULL;
	size_t len = 0;

	if (sora_proxy_v2_build(src, dst, opts, buf, size, &len, &error) < 0)
		fail_msg("build failed: %s", error);
	assert_true(len > 0 && len <= size);
	return len;
}

/* HAProxy and the builder must produce the very same bytes for the same
 * connection. */
static void test_builder_matches_haproxy(void **state)
{
	uint8_t buf[SORA_PROXY_V2_BUILD_MAX];
	size_t n;

	struct sockaddr_in s4 = sin4("127.0.0.1", 53056), d4 = sin4("127.0.0.1", 53535);
	n = build(&s4, &d4, NULL, buf, sizeof(buf));
	assert_int_equal(n, header_len(sizeof(cap_v2_tcp4)));
	assert_memory_equal(buf, cap_v2_tcp4, n);

	struct sockaddr_in6 s6 = sin6("::1", 36012), d6 = sin6("::1", 44299);
	n = build(&s6, &d6, NULL, buf, sizeof(buf));
	assert_int_equal(n, header_len(sizeof(cap_v2_tcp6)));
	assert_memory_equal(buf, cap_v2_tcp6, n);

	n = build(NULL, NULL, NULL, buf, sizeof(buf));
	assert_int_equal(n, header_len(sizeof(cap_v2_local)));
	assert_memory_equal(buf, cap_v2_local, n);

	struct sora_proxy_v2_opts crc = { .crc32c = true };
	s4 = sin4("127.0.0.1", 40730);
	d4 = sin4("127.0.0.1", 36119);
	n = build(&s4, &d4, &crc, buf, sizeof(buf));
	assert_int_equal(n, header_len(sizeof(cap_v2_crc)));
	assert_memory_equal(buf, cap_v2_crc, n);
}

static void test_builder_roundtrip(void **state)
{
	uint8_t buf[SORA_PROXY_V2_BUILD_MAX + 32];
	struct sora_proxy_result r;
	size_t n;

	struct sora_proxy_v2_opts all = {
		.session_id = "9f86d081884c7d65",
		.authority = "imap.example.com",
		.tls = true,
		.tls_version = "TLSv1.3",
		.tls_cipher = "TLS_AES_128_GCM_SHA256",
		.crc32c = true,
	};
	struct sockaddr_in s4 = sin4("203.0.113.5", 51234), d4 = sin4("10.1.2.3", 993);
	n = build(&s4, &d4, &all, buf, sizeof(buf));
	memcpy(buf + n, PROTOCOL_DATA, PROTOCOL_DATA_LEN);
	r = check_valid(NULL, buf, n + PROTOCOL_DATA_LEN, n);
	assert_int_equal(r.version, 2);
	assert_int_equal(r.command, SORA_PROXY_CMD_PROXY);
	assert_int_equal(r.transport, SORA_PROXY_TRANSPORT_STREAM);
	assert_int_equal(r.family, AF_INET);
	assert_addr(&r.src, "203.0.113.5", 51234);
	assert_addr(&r.dst, "10.1.2.3", 993);
	assert_string_equal(r.session_id, "9f86d081884c7d65");
	assert_string_equal(r.authority, "imap.example.com");
	assert_true(r.crc32c_checked);
	assert_true(r.tls.present);
	assert_true(r.tls.ssl);
	assert_int_not_equal(r.tls.verify, 0);
	assert_string_equal(r.tls.version, "TLSv1.3");
	assert_string_equal(r.tls.cipher, "TLS_AES_128_GCM_SHA256");
	/* The parsed sockaddrs are the ones that went in. */
	assert_memory_equal(&r.src, &s4, sizeof(s4));
	assert_memory_equal(&r.dst, &d4, sizeof(d4));

	struct sora_proxy_v2_opts sid = { .session_id = "abc" };
	struct sockaddr_in6 s6 = sin6("2001:db8::5", 40000), d6 = sin6("2001:db8::1", 110);
	n = build(&s6, &d6, &sid, buf, sizeof(buf));
	r = check_valid(NULL, buf, n, n);
	assert_int_equal(r.family, AF_INET6);
	assert_addr(&r.src, "2001:db8::5", 40000);
	assert_addr(&r.dst, "2001:db8::1", 110);
	assert_string_equal(r.session_id, "abc");
	assert_false(r.crc32c_checked);
	assert_false(r.tls.present);

	/* Mixed families travel as IPv6 with the IPv4 side mapped. */
	n = build(&s4, &d6, NULL, buf, sizeof(buf));
	r = check_valid(NULL, buf, n, n);
	assert_int_equal(r.family, AF_INET6);
	assert_addr(&r.src, "::ffff:203.0.113.5", 51234);
	assert_addr(&r.dst, "2001:db8::1", 110);
	n = build(&s6, &d4, NULL, buf, sizeof(buf));
	r = check_valid(NULL, buf, n, n);
	assert_addr(&r.dst, "::ffff:10.1.2.3", 993);

	/* UNIX pairs. */
	struct sockaddr_un su, du;
	memset(&su, 0, sizeof(su));
	memset(&du, 0, sizeof(du));
	su.sun_family = du.sun_family = AF_UNIX;
	sora_strlcpy(su.sun_path, "/tmp/client", sizeof(su.sun_path));
	sora_strlcpy(du.sun_path, "/run/sora/imap.sock", sizeof(du.sun_path));
	n = build(&su, &du, &all, buf, sizeof(buf));
	r = check_valid(NULL, buf, n, n);
	assert_int_equal(r.family, AF_UNIX);
	assert_string_equal(((struct sockaddr_un *)&r.src)->sun_path, "/tmp/client");
	assert_string_equal(((struct sockaddr_un *)&r.dst)->sun_path, "/run/sora/imap.sock");
	assert_string_equal(r.session_id, "9f86d081884c7d65");
	assert_true(r.crc32c_checked);

	/* LOCAL with TLVs asked for: still LOCAL (the TLVs are discarded by
	 * any receiver, as the specification says). */
	n = build(NULL, NULL, &sid, buf, sizeof(buf));
	r = check_valid(NULL, buf, n, n);
	assert_int_equal(r.command, SORA_PROXY_CMD_LOCAL);

	/* The largest possible header fits SORA_PROXY_V2_BUILD_MAX. */
	char sid64[SORA_PROXY_SESSION_ID_MAX + 1], auth[SORA_PROXY_AUTHORITY_MAX + 1];
	char name[SORA_PROXY_TLS_NAME_MAX + 1];
	memset(sid64, 's', sizeof(sid64) - 1);
	sid64[sizeof(sid64) - 1] = '\0';
	memset(auth, 'a', sizeof(auth) - 1);
	auth[sizeof(auth) - 1] = '\0';
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	struct sora_proxy_v2_opts max = {
		.session_id = sid64, .authority = auth, .tls = true,
		.tls_version = name, .tls_cipher = name, .crc32c = true,
	};
	n = build(&su, &du, &max, buf, SORA_PROXY_V2_BUILD_MAX);
	assert_int_equal(n, SORA_PROXY_V2_BUILD_MAX);
	r = check_valid(NULL, buf, n, n);
	assert_string_equal(r.session_id, sid64);
	assert_string_equal(r.authority, auth);
	assert_string_equal(r.tls.version, name);
	assert_string_equal(r.tls.cipher, name);
}

static void test_builder_errors(void **state)
{
	uint8_t buf[SORA_PROXY_V2_BUILD_MAX];
	const char *error;
	size_t len = 77;
	struct sockaddr_in s4 = sin4("192.0.2.1", 1), d4 = sin4("192.0.2.2", 2);
	struct sockaddr_un su;

	memset(&su, 0, sizeof(su));
	su.sun_family = AF_UNIX;

#define BUILD_FAILS(src, dst, opts, size) do { \
	error = NULL; \
	assert_int_equal(sora_proxy_v2_build((const struct sockaddr *)(src), \
					     (const struct sockaddr *)(dst), opts, \
					     buf, size, &len, &error), -1); \
	assert_non_null(error); \
	assert_int_equal(len, 77); \
} while (0)

	BUILD_FAILS(&s4, NULL, NULL, sizeof(buf));
	BUILD_FAILS(NULL, &d4, NULL, sizeof(buf));
	BUILD_FAILS(&s4, &su, NULL, sizeof(buf));
	struct sockaddr bad = { .sa_family = AF_APPLETALK };
	BUILD_FAILS(&bad, &bad, NULL, sizeof(buf));

	struct sora_proxy_v2_opts o;
	memset(&o, 0, sizeof(o));
	o.session_id = "";
	BUILD_FAILS(&s4, &d4, &o, sizeof(buf));
	o.session_id = "has space";
	BUILD_FAILS(&s4, &d4, &o, sizeof(buf));
	o.session_id = "0123456789012345678901234567890123456789012345678901234567890123x";
	BUILD_FAILS(&s4, &d4, &o, sizeof(buf));
	memset(&o, 0, sizeof(o));
	o.authority = "bad\nhost";
	BUILD_FAILS(&s4, &d4, &o, sizeof(buf));
	memset(&o, 0, sizeof(o));
	o.tls_version = "TLSv1.3";
	BUILD_FAILS(&s4, &d4, &o, sizeof(buf));
	o.tls = true;
	o.tls_version = "";
	BUILD_FAILS(&s4, &d4, &o, sizeof(buf));

	/* Every buffer one byte too small or smaller fails cleanly. */
	struct sora_proxy_v2_opts all = { .session_id = "x1", .tls = true,
					  .tls_version = "TLSv1.3", .crc32c = true };
	size_t need = build(&s4, &d4, &all, buf, sizeof(buf));
	for (size_t size = 0; size < need; size++) {
		len = 77;
		BUILD_FAILS(&s4, &d4, &all, size);
	}
#undef BUILD_FAILS
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_captured_v1),
		cmocka_unit_test(test_captured_v2),
		cmocka_unit_test(test_captured_v2_tls),
		cmocka_unit_test(test_crc_detects_corruption),
		cmocka_unit_test(test_v1_valid),
		cmocka_unit_test(test_v1_errors),
		cmocka_unit_test(test_v1_too_long),
		cmocka_unit_test(test_v2_crc_builder_vector),
		cmocka_unit_test(test_v2_valid),
		cmocka_unit_test(test_v2_header_errors),
		cmocka_unit_test(test_v2_tlv_errors),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_builder_matches_haproxy),
		cmocka_unit_test(test_builder_roundtrip),
		cmocka_unit_test(test_builder_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
