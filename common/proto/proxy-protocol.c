/* PROXY protocol v1/v2 parser and v2 builder (see proxy.h for the contract;
 * the wire format is HAProxy's doc/proxy-protocol.txt).
 *
 * Both parsers start from the first byte on every call and keep no state
 * between calls; what they find is written into a scratch result that only
 * reaches the caller on DONE. v1 is a byte-driven state machine (nginx's
 * sw_* style) so that a field becomes an error on the byte that spoils it,
 * not only once the CRLF arrives. v2 is a fixed 16-byte header followed by a
 * length-delimited block, so it is checked field by field as soon as each
 * field's bytes are present, and the address block and TLVs only once the
 * whole header is there (the specification forbids acting on a partial
 * address block, and a CRC32C covers the whole header anyway). */
#include "common/proto/proxy-protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#define V1_SIGNATURE      "PROXY "
#define V1_SIGNATURE_LEN  (sizeof(V1_SIGNATURE) - 1)
/* Longest address text inet_pton() accepts, e.g. a fully written out
 * IPv4-mapped IPv6 address; the 107-byte line cap still applies. */
#define V1_ADDR_MAX       (INET6_ADDRSTRLEN - 1)
#define V1_IPV4_ADDR_MAX  (INET_ADDRSTRLEN - 1)
#define V1_PORT_DIGITS    5

static const uint8_t v2_signature[12] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
};

#define V2_VERSION         0x2
#define V2_CMD_LOCAL       0x0
#define V2_CMD_PROXY       0x1
#define V2_FAM_UNSPEC      0x0
#define V2_FAM_INET        0x1
#define V2_FAM_INET6       0x2
#define V2_FAM_UNIX        0x3
#define V2_PROTO_UNSPEC    0x0
#define V2_PROTO_STREAM    0x1
#define V2_PROTO_DGRAM     0x2
#define V2_ADDR_LEN_INET   (2 * 4 + 2 * 2)
#define V2_ADDR_LEN_INET6  (2 * 16 + 2 * 2)
#define V2_UNIX_PATH_LEN   108
#define V2_ADDR_LEN_UNIX   (2 * V2_UNIX_PATH_LEN)
#define V2_TLV_HEADER_LEN  3
#define V2_SSL_FIXED_LEN   5   /* client (1) + verify (4) */
#define V2_CRC32C_LEN      4

_Static_assert(sizeof(((struct sockaddr_un *)0)->sun_path) == V2_UNIX_PATH_LEN,
	       "PROXY v2 AF_UNIX addresses are exactly sockaddr_un.sun_path");
_Static_assert(SORA_PROXY_V2_HEADER_LEN + V2_ADDR_LEN_UNIX <= SORA_PROXY_V2_DEFAULT_MAX,
	       "the default cap must admit a UNIX address block");

static enum sora_proxy_status fail(const char **error_r, const char *why)
{
	if (error_r != NULL)
		*error_r = why;
	return SORA_PROXY_ERROR;
}

static inline uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* CRC32C (Castagnoli, RFC 4960 appendix B), bit by bit: headers are at most
 * a couple of kilobytes, so a lookup table would buy nothing measurable and
 * would be one more block of magic numbers to review. */
static uint32_t crc32c_update(uint32_t crc, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
	}
	return crc;
}

/* The CRC of a whole header with the 4 checksum bytes at crc_off counted as
 * zeros, without writing to the (borrowed, const) header. */
static uint32_t crc32c_header(const uint8_t *hdr, size_t total, size_t crc_off)
{
	static const uint8_t zeros[V2_CRC32C_LEN];
	uint32_t crc = 0xFFFFFFFFu;

	crc = crc32c_update(crc, hdr, crc_off);
	crc = crc32c_update(crc, zeros, sizeof(zeros));
	crc = crc32c_update(crc, hdr + crc_off + V2_CRC32C_LEN,
			    total - crc_off - V2_CRC32C_LEN);
	return ~crc;
}

/* Text TLVs end up in logs and in C strings: no NUL, no control bytes. Bytes
 * above 0x7f stay allowed because AUTHORITY and the certificate CN are
 * UTF-8. */
static bool is_text(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] < 0x20 || p[i] == 0x7f)
			return false;
	}
	return true;
}

/* A Sora session id goes into every log line as session=...: visible ASCII
 * only, so it can never split or forge a key=value pair. */
static bool is_session_id(const uint8_t *p, size_t n)
{
	if (n == 0 || n > SORA_PROXY_SESSION_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < 0x21 || p[i] > 0x7e)
			return false;
	}
	return true;
}

static void copy_text(char *dst, const uint8_t *src, size_t n)
{
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* ---- version 1 --------------------------------------------------------- */

enum v1_state {
	V1_SIGNATURE_BYTES,   /* "PROXY " */
	V1_PROTOCOL,          /* "TCP4", "TCP6" or "UNKNOWN" */
	V1_UNKNOWN_REST,      /* after "UNKNOWN ": ignored up to the CR */
	V1_SRC_ADDR,
	V1_DST_ADDR,
	V1_SRC_PORT,
	V1_DST_PORT,
	V1_LF,                /* a CR was seen; only LF may follow */
};

/* Whether t[0..n) can still grow into one of the v1 protocol names. */
static bool v1_protocol_prefix(const uint8_t *t, size_t n)
{
	static const char *const names[] = { "TCP4", "TCP6", "UNKNOWN" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (n <= strlen(names[i]) && memcmp(t, names[i], n) == 0)
			return true;
	}
	return false;
}

static bool v1_token_is(const uint8_t *t, size_t n, const char *name)
{
	return n == strlen(name) && memcmp(t, name, n) == 0;
}

static bool v1_addr_char(int family, uint8_t c)
{
	if (c >= '0' && c <= '9')
		return true;
	if (c == '.')
		return true;
	if (family == AF_INET)
		return false;
	return c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Converts a complete address token. inet_pton() refuses IPv4 octets with
 * leading zeros and anything but four octets, which is what the
 * specification demands. */
static int v1_addr(int family, const uint8_t *t, size_t n,
		   struct sockaddr_storage *ss)
{
	char text[V1_ADDR_MAX + 1];

	if (n == 0 || n > V1_ADDR_MAX)
		return -1;
	memcpy(text, t, n);
	text[n] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		return inet_pton(AF_INET, text, &sin->sin_addr) == 1 ? 0 : -1;
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	sin6->sin6_family = AF_INET6;
	return inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1 ? 0 : -1;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

static enum sora_proxy_status v1_parse(const uint8_t *p, size_t len,
				       struct sora_proxy_result *r,
				       size_t *consumed_r, const char **error_r)
{
	enum v1_state state = V1_SIGNATURE_BYTES;
	size_t limit = len < SORA_PROXY_V1_MAX ? len : SORA_PROXY_V1_MAX;
	size_t tok = 0;          /* where the current field started */
	int family = AF_UNSPEC;
	uint32_t port = 0;       /* value of the port field being read */
	uint16_t src_port = 0;

	for (size_t i = 0; i < limit; i++) {
		uint8_t c = p[i];
		size_t toklen = i - tok;

		switch (state) {
		case V1_SIGNATURE_BYTES:
			if (c != (uint8_t)V1_SIGNATURE[i])
				return fail(error_r, "PROXY v1: bad signature");
			if (i + 1 == V1_SIGNATURE_LEN) {
				state = V1_PROTOCOL;
				tok = i + 1;
			}
			break;

		case V1_PROTOCOL:
			if (c == ' ' || c == '\r') {
				const uint8_t *t = p + tok;
				if (v1_token_is(t, toklen, "UNKNOWN")) {
					state = c == ' ' ? V1_UNKNOWN_REST : V1_LF;
				} else if (c == ' ' && v1_token_is(t, toklen, "TCP4")) {
					family = AF_INET;
					state = V1_SRC_ADDR;
				} else if (c == ' ' && v1_token_is(t, toklen, "TCP6")) {
					family = AF_INET6;
					state = V1_SRC_ADDR;
				} else {
					return fail(error_r, "PROXY v1: bad protocol");
				}
				tok = i + 1;
			} else if (!v1_protocol_prefix(p + tok, toklen + 1)) {
				return fail(error_r, "PROXY v1: bad protocol");
			}
			break;

		case V1_UNKNOWN_REST:
			/* The specification makes the receiver ignore whatever
			 * follows UNKNOWN; only the line end matters. */
			if (c == '\r')
				state = V1_LF;
			break;

		case V1_SRC_ADDR:
		case V1_DST_ADDR:
			if (c == ' ') {
				struct sockaddr_storage *ss =
					state == V1_SRC_ADDR ? &r->src : &r->dst;
				if (v1_addr(family, p + tok, toklen, ss) < 0)
					return fail(error_r, "PROXY v1: bad address");
				state = state == V1_SRC_ADDR ? V1_DST_ADDR : V1_SRC_PORT;
				tok = i + 1;
				port = 0;
			} else if (!v1_addr_char(family, c) ||
				   toklen + 1 > (family == AF_INET ? V1_IPV4_ADDR_MAX
								   : V1_ADDR_MAX)) {
				return fail(error_r, "PROXY v1: bad address");
			}
			break;

		case V1_SRC_PORT:
		case V1_DST_PORT:
			if (c >= '0' && c <= '9') {
				/* No leading zeros: the specification forbids
				 * them to rule out an octal reading. */
				if (toklen > 0 && p[tok] == '0')
					return fail(error_r, "PROXY v1: bad port");
				port = port * 10 + (uint32_t)(c - '0');
				if (toklen + 1 > V1_PORT_DIGITS || port > 65535)
					return fail(error_r, "PROXY v1: bad port");
			} else if (state == V1_SRC_PORT && c == ' ' && toklen > 0) {
				src_port = (uint16_t)port;
				state = V1_DST_PORT;
				tok = i + 1;
				port = 0;
			} else if (state == V1_DST_PORT && c == '\r' && toklen > 0) {
				set_port(&r->src, src_port);
				set_port(&r->dst, (uint16_t)port);
				state = V1_LF;
			} else {
				return fail(error_r, "PROXY v1: bad port");
			}
			break;

		case V1_LF:
			if (c != '\n')
				return fail(error_r, "PROXY v1: CR not followed by LF");
			r->version = 1;
			r->command = SORA_PROXY_CMD_PROXY;
			r->family = family;
			r->transport = family == AF_UNSPEC ? SORA_PROXY_TRANSPORT_UNSPEC
							   : SORA_PROXY_TRANSPORT_STREAM;
			if (family == AF_UNSPEC) {
				memset(&r->src, 0, sizeof(r->src));
				memset(&r->dst, 0, sizeof(r->dst));
			}
			*consumed_r = i + 1;
			return SORA_PROXY_DONE;
		}
	}
	if (len >= SORA_PROXY_V1_MAX)
		return fail(error_r, "PROXY v1: no CRLF within 107 bytes");
	return SORA_PROXY_NEED_MORE;
}

/* ---- version 2 --------------------------------------------------------- */

/* TLVs that may appear once; a second copy is refused so that two parts
 * of the stack can never disagree about which one counts. */
enum v2_seen {
	SEEN_ALPN = 1u << 0,
	SEEN_AUTHORITY = 1u << 1,
	SEEN_CRC32C = 1u << 2,
	SEEN_UNIQUE_ID = 1u << 3,
	SEEN_SSL = 1u << 4,
	SEEN_NETNS = 1u << 5,
	SEEN_SESSION = 1u << 6,
	SEEN_SSL_VERSION = 1u << 7,
	SEEN_SSL_CN = 1u << 8,
	SEEN_SSL_CIPHER = 1u << 9,
};

static int v2_mark(unsigned *seen, unsigned bit, const char **error_r)
{
	if ((*seen & bit) != 0) {
		fail(error_r, "PROXY v2: duplicate TLV");
		return -1;
	}
	*seen |= bit;
	return 0;
}

static int v2_ssl_tlv(const uint8_t *v, size_t vlen, struct sora_proxy_tls *tls,
		      unsigned *seen, const char **error_r)
{
	size_t off = V2_SSL_FIXED_LEN;

	if (vlen < V2_SSL_FIXED_LEN) {
		fail(error_r, "PROXY v2: SSL TLV too short");
		return -1;
	}
	tls->present = true;
	tls->client = v[0];
	tls->ssl = (v[0] & SORA_PP2_CLIENT_SSL) != 0;
	tls->verify = get_be32(v + 1);

	while (off < vlen) {
		if (vlen - off < V2_TLV_HEADER_LEN) {
			fail(error_r, "PROXY v2: truncated SSL sub-TLV");
			return -1;
		}
		uint8_t type = v[off];
		size_t slen = get_be16(v + off + 1);
		const uint8_t *s = v + off + V2_TLV_HEADER_LEN;
		if (slen > vlen - off - V2_TLV_HEADER_LEN) {
			fail(error_r, "PROXY v2: SSL sub-TLV runs past its TLV");
			return -1;
		}
		switch (type) {
		case SORA_PP2_SUBTYPE_SSL_VERSION:
		case SORA_PP2_SUBTYPE_SSL_CIPHER: {
			bool is_version = type == SORA_PP2_SUBTYPE_SSL_VERSION;
			if (v2_mark(seen, is_version ? SEEN_SSL_VERSION : SEEN_SSL_CIPHER,
				    error_r) < 0)
				return -1;
			if (slen > SORA_PROXY_TLS_NAME_MAX || !is_text(s, slen)) {
				fail(error_r, "PROXY v2: bad SSL version or cipher");
				return -1;
			}
			copy_text(is_version ? tls->version : tls->cipher, s, slen);
			break;
		}
		case SORA_PP2_SUBTYPE_SSL_CN:
			if (v2_mark(seen, SEEN_SSL_CN, error_r) < 0)
				return -1;
			if (slen > SORA_PROXY_TLS_CN_MAX || !is_text(s, slen)) {
				fail(error_r, "PROXY v2: bad SSL client CN");
				return -1;
			}
			copy_text(tls->cn, s, slen);
			break;
		default:
			/* SIG_ALG, KEY_ALG and sub-types registered later carry
			 * nothing Sora acts on. */
			break;
		}
		off += V2_TLV_HEADER_LEN + slen;
	}
	return 0;
}

/* Walks the TLVs in hdr[off..total) and verifies a CRC32C if one is there. */
static int v2_tlvs(const uint8_t *hdr, size_t off, size_t total,
		   struct sora_proxy_result *r, const char **error_r)
{
	unsigned seen = 0;
	size_t crc_off = 0;

	while (off < total) {
		if (total - off < V2_TLV_HEADER_LEN) {
			fail(error_r, "PROXY v2: truncated TLV");
			return -1;
		}
		uint8_t type = hdr[off];
		size_t vlen = get_be16(hdr + off + 1);
		const uint8_t *v = hdr + off + V2_TLV_HEADER_LEN;
		if (vlen > total - off - V2_TLV_HEADER_LEN) {
			fail(error_r, "PROXY v2: TLV runs past the header");
			return -1;
		}

		switch (type) {
		case SORA_PP2_TYPE_ALPN:
			if (v2_mark(&seen, SEEN_ALPN, error_r) < 0)
				return -1;
			if (vlen > SORA_PROXY_ALPN_MAX) {
				fail(error_r, "PROXY v2: ALPN TLV too long");
				return -1;
			}
			memcpy(r->alpn, v, vlen);
			r->alpn[vlen] = 0;
			r->alpn_len = vlen;
			break;
		case SORA_PP2_TYPE_AUTHORITY:
			if (v2_mark(&seen, SEEN_AUTHORITY, error_r) < 0)
				return -1;
			if (vlen > SORA_PROXY_AUTHORITY_MAX || !is_text(v, vlen)) {
				fail(error_r, "PROXY v2: bad AUTHORITY TLV");
				return -1;
			}
			copy_text(r->authority, v, vlen);
			r->authority_len = vlen;
			break;
		case SORA_PP2_TYPE_CRC32C:
			if (v2_mark(&seen, SEEN_CRC32C, error_r) < 0)
				return -1;
			if (vlen != V2_CRC32C_LEN) {
				fail(error_r, "PROXY v2: bad CRC32C TLV length");
				return -1;
			}
			crc_off = off + V2_TLV_HEADER_LEN;
			break;
		case SORA_PP2_TYPE_UNIQUE_ID:
			if (v2_mark(&seen, SEEN_UNIQUE_ID, error_r) < 0)
				return -1;
			if (vlen > SORA_PROXY_UNIQUE_ID_MAX) {
				fail(error_r, "PROXY v2: UNIQUE_ID TLV too long");
				return -1;
			}
			memcpy(r->unique_id, v, vlen);
			r->unique_id_len = vlen;
			break;
		case SORA_PP2_TYPE_SSL:
			if (v2_mark(&seen, SEEN_SSL, error_r) < 0)
				return -1;
			if (v2_ssl_tlv(v, vlen, &r->tls, &seen, error_r) < 0)
				return -1;
			break;
		case SORA_PP2_TYPE_NETNS:
			if (v2_mark(&seen, SEEN_NETNS, error_r) < 0)
				return -1;
			if (vlen > SORA_PROXY_NETNS_MAX || !is_text(v, vlen)) {
				fail(error_r, "PROXY v2: bad NETNS TLV");
				return -1;
			}
			copy_text(r->netns, v, vlen);
			r->netns_len = vlen;
			break;
		case SORA_PP2_TYPE_SORA_SESSION:
			if (v2_mark(&seen, SEEN_SESSION, error_r) < 0)
				return -1;
			if (!is_session_id(v, vlen)) {
				fail(error_r, "PROXY v2: bad session id TLV");
				return -1;
			}
			copy_text(r->session_id, v, vlen);
			r->session_id_len = vlen;
			break;
		default:
			/* NOOP and every type Sora does not know: the
			 * specification lets receivers skip them. */
			break;
		}
		off += V2_TLV_HEADER_LEN + vlen;
	}

	if (crc_off != 0) {
		if (crc32c_header(hdr, total, crc_off) != get_be32(hdr + crc_off)) {
			fail(error_r, "PROXY v2: CRC32C mismatch");
			return -1;
		}
		r->crc32c_checked = true;
	}
	return 0;
}

static void v2_inet(const uint8_t *a, struct sora_proxy_result *r)
{
	struct sockaddr_in *src = (struct sockaddr_in *)&r->src;
	struct sockaddr_in *dst = (struct sockaddr_in *)&r->dst;

	src->sin_family = AF_INET;
	dst->sin_family = AF_INET;
	memcpy(&src->sin_addr, a, 4);
	memcpy(&dst->sin_addr, a + 4, 4);
	memcpy(&src->sin_port, a + 8, 2);
	memcpy(&dst->sin_port, a + 10, 2);
	r->family = AF_INET;
}

static void v2_inet6(const uint8_t *a, struct sora_proxy_result *r)
{
	struct sockaddr_in6 *src = (struct sockaddr_in6 *)&r->src;
	struct sockaddr_in6 *dst = (struct sockaddr_in6 *)&r->dst;

	src->sin6_family = AF_INET6;
	dst->sin6_family = AF_INET6;
	memcpy(&src->sin6_addr, a, 16);
	memcpy(&dst->sin6_addr, a + 16, 16);
	memcpy(&src->sin6_port, a + 32, 2);
	memcpy(&dst->sin6_port, a + 34, 2);
	r->family = AF_INET6;
}

static void v2_unix(const uint8_t *a, struct sora_proxy_result *r)
{
	struct sockaddr_un *src = (struct sockaddr_un *)&r->src;
	struct sockaddr_un *dst = (struct sockaddr_un *)&r->dst;

	src->sun_family = AF_UNIX;
	dst->sun_family = AF_UNIX;
	memcpy(src->sun_path, a, V2_UNIX_PATH_LEN);
	memcpy(dst->sun_path, a + V2_UNIX_PATH_LEN, V2_UNIX_PATH_LEN);
	r->family = AF_UNIX;
}

/* Address block length for a family nibble, or 0 when it has none. */
static size_t v2_addr_len(unsigned fam)
{
	switch (fam) {
	case V2_FAM_INET:
		return V2_ADDR_LEN_INET;
	case V2_FAM_INET6:
		return V2_ADDR_LEN_INET6;
	case V2_FAM_UNIX:
		return V2_ADDR_LEN_UNIX;
	default:
		return 0;
	}
}

static enum sora_proxy_status v2_parse(const struct sora_proxy_params *params,
				       size_t max_len, const uint8_t *p, size_t len,
				       struct sora_proxy_result *r,
				       size_t *consumed_r, const char **error_r)
{
	size_t n = len < sizeof(v2_signature) ? len : sizeof(v2_signature);

	if (memcmp(p, v2_signature, n) != 0)
		return fail(error_r, "PROXY v2: bad signature");
	if (len < 13)
		return SORA_PROXY_NEED_MORE;

	unsigned version = p[12] >> 4, cmd = p[12] & 0x0F;
	if (version != V2_VERSION)
		return fail(error_r, "PROXY v2: unsupported version");
	if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
		return fail(error_r, "PROXY v2: unknown command");
	if (len < 14)
		return SORA_PROXY_NEED_MORE;

	unsigned fam = p[13] >> 4, proto = p[13] & 0x0F;
	if (fam > V2_FAM_UNIX)
		return fail(error_r, "PROXY v2: unknown address family");
	if (proto > V2_PROTO_DGRAM)
		return fail(error_r, "PROXY v2: unknown transport protocol");
	/* The specification lists the protocol bytes a PROXY command may
	 * carry: 0x00 and the six combinations of INET, INET6 or UNIX with
	 * STREAM or DGRAM. A half-unspecified byte such as 0x10 says nothing
	 * about the block's layout; accepting it would mean skipping the
	 * block, CRC32C included, so it is refused instead. */
	if (cmd == V2_CMD_PROXY && (fam == V2_FAM_UNSPEC) != (proto == V2_PROTO_UNSPEC))
		return fail(error_r, "PROXY v2: family and protocol must both be given");
	if (len < SORA_PROXY_V2_HEADER_LEN)
		return SORA_PROXY_NEED_MORE;

	size_t total = SORA_PROXY_V2_HEADER_LEN + get_be16(p + 14);
	if (total > max_len)
		return fail(error_r, "PROXY v2: header longer than allowed");
	/* A PROXY block starts with the address pair; a shorter block is
	 * malformed, and that is known before the rest arrives. */
	bool has_addrs = cmd == V2_CMD_PROXY && fam != V2_FAM_UNSPEC;
	size_t addr_len = has_addrs ? v2_addr_len(fam) : 0;
	if (total - SORA_PROXY_V2_HEADER_LEN < addr_len)
		return fail(error_r, "PROXY v2: address block too short");
	if (len < total)
		return SORA_PROXY_NEED_MORE;

	r->version = 2;
	r->family = AF_UNSPEC;
	if (cmd == V2_CMD_LOCAL) {
		/* "The receiver must ... discard the protocol block
		 * including the family": nothing in it is looked at. */
		r->command = SORA_PROXY_CMD_LOCAL;
		r->transport = SORA_PROXY_TRANSPORT_UNSPEC;
		*consumed_r = total;
		return SORA_PROXY_DONE;
	}

	r->command = SORA_PROXY_CMD_PROXY;
	r->transport = (enum sora_proxy_transport)proto;
	const uint8_t *a = p + SORA_PROXY_V2_HEADER_LEN;
	if (has_addrs) {
		if (fam == V2_FAM_INET)
			v2_inet(a, r);
		else if (fam == V2_FAM_INET6)
			v2_inet6(a, r);
		else
			v2_unix(a, r);
	}
	if (v2_tlvs(p, SORA_PROXY_V2_HEADER_LEN + addr_len, total, r, error_r) < 0)
		return SORA_PROXY_ERROR;
	if (params->crc32c_required && !r->crc32c_checked)
		return fail(error_r, "PROXY v2: CRC32C TLV required");
	*consumed_r = total;
	return SORA_PROXY_DONE;
}

enum sora_proxy_status sora_proxy_parse(const struct sora_proxy_params *params,
					struct sora_str in,
					struct sora_proxy_result *result_r,
					size_t *consumed_r, const char **error_r)
{
	static const struct sora_proxy_params defaults;
	const uint8_t *p = (const uint8_t *)in.p;
	struct sora_proxy_result scratch;
	enum sora_proxy_status status;
	size_t consumed = 0;

	if (params == NULL)
		params = &defaults;
	if (in.len == 0)
		return SORA_PROXY_NEED_MORE;

	/* The two signatures differ in their first byte, so one byte is
	 * enough to choose a parser or to give up. */
	memset(&scratch, 0, sizeof(scratch));
	if (p[0] == (uint8_t)V1_SIGNATURE[0]) {
		if (params->v1_disabled)
			return fail(error_r, "PROXY v1 not accepted here");
		status = v1_parse(p, in.len, &scratch, &consumed, error_r);
	} else if (p[0] == v2_signature[0]) {
		size_t max_len = params->v2_max_len;
		if (max_len == 0)
			max_len = SORA_PROXY_V2_DEFAULT_MAX;
		else if (max_len < SORA_PROXY_V2_HEADER_LEN + V2_ADDR_LEN_UNIX)
			max_len = SORA_PROXY_V2_HEADER_LEN + V2_ADDR_LEN_UNIX;
		else if (max_len > SORA_PROXY_V2_ABSOLUTE_MAX)
			max_len = SORA_PROXY_V2_ABSOLUTE_MAX;
		status = v2_parse(params, max_len, p, in.len, &scratch, &consumed,
				  error_r);
	} else {
		return fail(error_r, "not a PROXY protocol header");
	}

	if (status == SORA_PROXY_DONE) {
		/* memcpy rather than assignment so that padding bytes are the
		 * zeros of the scratch copy too: equal parses compare equal. */
		memcpy(result_r, &scratch, sizeof(scratch));
		*consumed_r = consumed;
	}
	return status;
}

/* ---- builder ----------------------------------------------------------- */

/* Bounded output cursor: the first write that does not fit sets `full` and
 * every later one is dropped, so callers check once at the end. */
struct v2_writer {
	uint8_t *buf;
	size_t size;
	size_t len;
	bool full;
};

static void put(struct v2_writer *w, const void *data, size_t n)
{
	if (w->full || n > w->size - w->len) {
		w->full = true;
		return;
	}
	memcpy(w->buf + w->len, data, n);
	w->len += n;
}

static void put_u8(struct v2_writer *w, uint8_t v)
{
	put(w, &v, 1);
}

static void put_be16(struct v2_writer *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	put(w, b, sizeof(b));
}

static void put_tlv(struct v2_writer *w, uint8_t type, const void *v, size_t n)
{
	put_u8(w, type);
	put_be16(w, (uint16_t)n);
	put(w, v, n);
}

/* The 16 bytes of an IPv6 address for a, mapping IPv4 into ::ffff:0:0/96. */
static void v6_bytes(const struct sockaddr *a, uint8_t out[16], uint16_t *port_be)
{
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)a;
		memcpy(out, &s6->sin6_addr, 16);
		*port_be = s6->sin6_port;
		return;
	}
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)a;
	memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	memcpy(out + 12, &s4->sin_addr, 4);
	*port_be = s4->sin_port;
}

static bool is_inet(const struct sockaddr *a)
{
	return a->sa_family == AF_INET || a->sa_family == AF_INET6;
}

static bool valid_text_opt(const char *s, size_t max)
{
	size_t n = strlen(s);
	return n > 0 && n <= max && is_text((const uint8_t *)s, n);
}

int sora_proxy_v2_build(const struct sockaddr *src, const struct sockaddr *dst,
			const struct sora_proxy_v2_opts *opts,
			void *buf, size_t size, size_t *len_r,
			const char **error_r)
{
	static const struct sora_proxy_v2_opts no_opts;
	struct v2_writer w = { buf, size, 0, false };
	size_t crc_off = 0;

	if (opts == NULL)
		opts = &no_opts;
	if ((src == NULL) != (dst == NULL)) {
		fail(error_r, "PROXY v2 build: need both addresses or neither");
		return -1;
	}
	if (opts->session_id != NULL &&
	    !is_session_id((const uint8_t *)opts->session_id, strlen(opts->session_id))) {
		fail(error_r, "PROXY v2 build: bad session id");
		return -1;
	}
	if (opts->authority != NULL &&
	    !valid_text_opt(opts->authority, SORA_PROXY_AUTHORITY_MAX)) {
		fail(error_r, "PROXY v2 build: bad authority");
		return -1;
	}
	if (!opts->tls && (opts->tls_version != NULL || opts->tls_cipher != NULL)) {
		fail(error_r, "PROXY v2 build: TLS details without tls");
		return -1;
	}
	if ((opts->tls_version != NULL &&
	     !valid_text_opt(opts->tls_version, SORA_PROXY_TLS_NAME_MAX)) ||
	    (opts->tls_cipher != NULL &&
	     !valid_text_opt(opts->tls_cipher, SORA_PROXY_TLS_NAME_MAX))) {
		fail(error_r, "PROXY v2 build: bad TLS version or cipher");
		return -1;
	}

	put(&w, v2_signature, sizeof(v2_signature));
	if (src == NULL) {
		put_u8(&w, (V2_VERSION << 4) | V2_CMD_LOCAL);
		put_u8(&w, (V2_FAM_UNSPEC << 4) | V2_PROTO_UNSPEC);
		put_be16(&w, 0);
	} else if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)src;
		const struct sockaddr_in *d = (const struct sockaddr_in *)dst;
		put_u8(&w, (V2_VERSION << 4) | V2_CMD_PROXY);
		put_u8(&w, (V2_FAM_INET << 4) | V2_PROTO_STREAM);
		put_be16(&w, 0);
		put(&w, &s->sin_addr, 4);
		put(&w, &d->sin_addr, 4);
		put(&w, &s->sin_port, 2);
		put(&w, &d->sin_port, 2);
	} else if (is_inet(src) && is_inet(dst)) {
		uint8_t sa[16], da[16];
		uint16_t sp, dp;
		v6_bytes(src, sa, &sp);
		v6_bytes(dst, da, &dp);
		put_u8(&w, (V2_VERSION << 4) | V2_CMD_PROXY);
		put_u8(&w, (V2_FAM_INET6 << 4) | V2_PROTO_STREAM);
		put_be16(&w, 0);
		put(&w, sa, 16);
		put(&w, da, 16);
		put(&w, &sp, 2);
		put(&w, &dp, 2);
	} else if (src->sa_family == AF_UNIX && dst->sa_family == AF_UNIX) {
		const struct sockaddr_un *s = (const struct sockaddr_un *)src;
		const struct sockaddr_un *d = (const struct sockaddr_un *)dst;
		put_u8(&w, (V2_VERSION << 4) | V2_CMD_PROXY);
		put_u8(&w, (V2_FAM_UNIX << 4) | V2_PROTO_STREAM);
		put_be16(&w, 0);
		put(&w, s->sun_path, V2_UNIX_PATH_LEN);
		put(&w, d->sun_path, V2_UNIX_PATH_LEN);
	} else {
		fail(error_r, "PROXY v2 build: unsupported address family");
		return -1;
	}

	if (opts->session_id != NULL)
		put_tlv(&w, SORA_PP2_TYPE_SORA_SESSION, opts->session_id,
			strlen(opts->session_id));
	if (opts->authority != NULL)
		put_tlv(&w, SORA_PP2_TYPE_AUTHORITY, opts->authority,
			strlen(opts->authority));
	if (opts->tls) {
		size_t vl = opts->tls_version != NULL ? strlen(opts->tls_version) : 0;
		size_t cl = opts->tls_cipher != NULL ? strlen(opts->tls_cipher) : 0;
		size_t ssl_len = V2_SSL_FIXED_LEN +
				 (vl > 0 ? V2_TLV_HEADER_LEN + vl : 0) +
				 (cl > 0 ? V2_TLV_HEADER_LEN + cl : 0);
		/* verify is "non-zero unless a client certificate was
		 * presented and verified"; Sora never asks for one. */
		static const uint8_t fixed[V2_SSL_FIXED_LEN] = {
			SORA_PP2_CLIENT_SSL, 0, 0, 0, 1,
		};
		put_u8(&w, SORA_PP2_TYPE_SSL);
		put_be16(&w, (uint16_t)ssl_len);
		put(&w, fixed, sizeof(fixed));
		if (vl > 0)
			put_tlv(&w, SORA_PP2_SUBTYPE_SSL_VERSION, opts->tls_version, vl);
		if (cl > 0)
			put_tlv(&w, SORA_PP2_SUBTYPE_SSL_CIPHER, opts->tls_cipher, cl);
	}
	if (opts->crc32c) {
		static const uint8_t zeros[V2_CRC32C_LEN];
		put_tlv(&w, SORA_PP2_TYPE_CRC32C, zeros, sizeof(zeros));
		crc_off = w.len - V2_CRC32C_LEN;
	}
	if (w.full) {
		fail(error_r, "PROXY v2 build: buffer too small");
		return -1;
	}

	/* The length field can only be filled in now, and the checksum
	 * covers it, so it comes last. */
	uint16_t block = (uint16_t)(w.len - SORA_PROXY_V2_HEADER_LEN);
	w.buf[14] = (uint8_t)(block >> 8);
	w.buf[15] = (uint8_t)block;
	if (opts->crc32c) {
		uint32_t crc = crc32c_header(w.buf, w.len, crc_off);
		w.buf[crc_off] = (uint8_t)(crc >> 24);
		w.buf[crc_off + 1] = (uint8_t)(crc >> 16);
		w.buf[crc_off + 2] = (uint8_t)(crc >> 8);
		w.buf[crc_off + 3] = (uint8_t)crc;
	}
	*len_r = w.len;
	return 0;
}
