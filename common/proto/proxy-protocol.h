/* HAProxy PROXY protocol, versions 1 (text) and 2 (binary): parser and
 * version 2 builder.
 *
 * The parser does no I/O. The caller collects the bytes that arrived on a
 * fresh connection and hands the whole prefix to sora_proxy_parse() each time
 * more arrive, as nginx and HAProxy do. A header is at most a few hundred
 * bytes (SORA_PROXY_V1_MAX, or params->v2_max_len), so parsing it again from
 * the start is cheap, and it lets NEED_MORE have no side effects at all:
 * feeding the bytes one at a time gives exactly the same outcome as feeding
 * them in one piece. On DONE, *consumed_r says how many bytes the header
 * took; anything after them is protocol data that belongs to the session.
 *
 * Errors are reported early: on the first byte that can start neither
 * signature or breaks one; on a v1 character that cannot occur in its field
 * (a v1 address or port is judged as a whole once its separator arrives);
 * on a bad v2 version, command, family, or a length above the limit or too
 * short for the addresses, as soon as those 16 bytes are in. v2 addresses
 * and TLVs are judged once the whole header is there, because the
 * specification forbids acting on a partial address block and a CRC32C
 * covers everything. The caller should then close the connection without
 * answering (the specification asks receivers to abort).
 *
 * Only accept a header from a peer in the configured trusted_proxies: the
 * header replaces the peer's address, so anyone else could forge theirs.
 *
 * Thread safety: pure functions over caller memory; callable from any thread. */
#ifndef SORA_PROTO_PROXY_PROTOCOL_H
#define SORA_PROTO_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/core/str.h"

/* Longest v1 line including CRLF (the specification's worst case). */
#define SORA_PROXY_V1_MAX          107
/* Fixed part of a v2 header: signature, version/command, family, length. */
#define SORA_PROXY_V2_HEADER_LEN   16
/* Default cap on a whole v2 header (fixed part + addresses + TLVs). */
#define SORA_PROXY_V2_DEFAULT_MAX  1536
/* Largest v2 header the wire format can express. */
#define SORA_PROXY_V2_ABSOLUTE_MAX (SORA_PROXY_V2_HEADER_LEN + 65535)

/* TLV types (proxy-protocol.txt section 2.2). */
#define SORA_PP2_TYPE_ALPN            0x01
#define SORA_PP2_TYPE_AUTHORITY       0x02
#define SORA_PP2_TYPE_CRC32C          0x03
#define SORA_PP2_TYPE_NOOP            0x04
#define SORA_PP2_TYPE_UNIQUE_ID       0x05
#define SORA_PP2_TYPE_SSL             0x20
#define SORA_PP2_SUBTYPE_SSL_VERSION  0x21
#define SORA_PP2_SUBTYPE_SSL_CN       0x22
#define SORA_PP2_SUBTYPE_SSL_CIPHER   0x23
#define SORA_PP2_SUBTYPE_SSL_SIG_ALG  0x24
#define SORA_PP2_SUBTYPE_SSL_KEY_ALG  0x25
#define SORA_PP2_TYPE_NETNS           0x30
/* Sora's own TLV in the application range (PP2_TYPE_MIN_CUSTOM): the proxy's
 * session id, so proxy and backend log lines of one session can be joined. */
#define SORA_PP2_TYPE_SORA_SESSION    0xE0

/* Bits of the SSL TLV's "client" field. */
#define SORA_PP2_CLIENT_SSL        0x01
#define SORA_PP2_CLIENT_CERT_CONN  0x02
#define SORA_PP2_CLIENT_CERT_SESS  0x04

/* Bounds on what the parser copies out. A TLV longer than its bound makes
 * the header invalid: the fields come from a trusted proxy, so an oversized
 * one means a broken or hostile sender, and a silently cut value (a session
 * id, a host name) would be misleading. */
#define SORA_PROXY_SESSION_ID_MAX  64   /* visible ASCII, no spaces */
#define SORA_PROXY_AUTHORITY_MAX   255  /* a DNS host name */
#define SORA_PROXY_ALPN_MAX        255  /* RFC 7301 protocol name */
#define SORA_PROXY_UNIQUE_ID_MAX   128  /* the specification's limit */
#define SORA_PROXY_NETNS_MAX       255
#define SORA_PROXY_TLS_NAME_MAX    64   /* TLS version and cipher names */
#define SORA_PROXY_TLS_CN_MAX      256  /* 64 characters of UTF-8 */

enum sora_proxy_status {
	SORA_PROXY_ERROR = -1,
	SORA_PROXY_DONE = 0,
	SORA_PROXY_NEED_MORE = 1,
};

enum sora_proxy_command {
	/* The sender opened the connection on its own behalf (a health
	 * check): use the connection's real endpoints. */
	SORA_PROXY_CMD_LOCAL = 0,
	/* The connection is relayed for the client described in the header. */
	SORA_PROXY_CMD_PROXY = 1,
};

enum sora_proxy_transport {
	SORA_PROXY_TRANSPORT_UNSPEC = 0,
	SORA_PROXY_TRANSPORT_STREAM = 1,
	SORA_PROXY_TRANSPORT_DGRAM = 2,
};

/* Limits. A zero-initialised struct (or NULL) means the defaults. */
struct sora_proxy_params {
	/* Cap on a whole v2 header in bytes; 0 = SORA_PROXY_V2_DEFAULT_MAX.
	 * Values below what an AF_UNIX address block needs are raised to it,
	 * values above SORA_PROXY_V2_ABSOLUTE_MAX lowered to it. */
	size_t v2_max_len;
	/* Refuse the v1 text form (for listeners that only expect v2). */
	bool v1_disabled;
	/* Refuse v2 PROXY headers without a (valid) CRC32C TLV. LOCAL headers
	 * are exempt: the specification makes receivers discard their block. */
	bool crc32c_required;
};

/* What the SSL TLV said about the client's connection to the sender. */
struct sora_proxy_tls {
	bool present;           /* an SSL TLV was in the header */
	bool ssl;               /* PP2_CLIENT_SSL: the client used TLS */
	uint8_t client;         /* raw SORA_PP2_CLIENT_* bits */
	uint32_t verify;        /* 0 when a client certificate was verified */
	char version[SORA_PROXY_TLS_NAME_MAX + 1]; /* "TLSv1.3", or "" */
	char cipher[SORA_PROXY_TLS_NAME_MAX + 1];  /* or "" */
	char cn[SORA_PROXY_TLS_CN_MAX + 1];        /* client cert CN, or "" */
};

/* A parsed header. Everything is copied out of the input, so the result
 * stays valid after the input buffer is gone. Text fields are
 * NUL-terminated and the parser refuses them if they contain a NUL or
 * another control byte; *_len == 0 means the TLV was absent. */
struct sora_proxy_result {
	int version;                            /* 1 or 2 */
	enum sora_proxy_command command;
	enum sora_proxy_transport transport;
	/* AF_INET, AF_INET6 or AF_UNIX with src and dst filled in (ports
	 * included), or AF_UNSPEC when the header gives no usable address
	 * (v1 UNKNOWN, v2 LOCAL, v2 PROXY with family UNSPEC): then use the
	 * connection's own endpoints. A v2 PROXY header must give family and
	 * transport both or neither; a half-unspecified one is an error. */
	int family;
	struct sockaddr_storage src;
	struct sockaddr_storage dst;

	char session_id[SORA_PROXY_SESSION_ID_MAX + 1];
	size_t session_id_len;
	char authority[SORA_PROXY_AUTHORITY_MAX + 1];
	size_t authority_len;
	char netns[SORA_PROXY_NETNS_MAX + 1];
	size_t netns_len;
	/* Binary TLVs: raw bytes (a NUL is appended after alpn for
	 * convenience, but trust only alpn_len). */
	uint8_t alpn[SORA_PROXY_ALPN_MAX + 1];
	size_t alpn_len;
	uint8_t unique_id[SORA_PROXY_UNIQUE_ID_MAX];
	size_t unique_id_len;

	bool crc32c_checked;                    /* a CRC32C TLV was present and matched */
	struct sora_proxy_tls tls;
};

/* Parses a PROXY header at the start of `in`.
 *
 * Returns
 *  - SORA_PROXY_DONE: *result_r is filled in and *consumed_r is the header's
 *    length (bytes after it are protocol data);
 *  - SORA_PROXY_NEED_MORE: `in` is a valid but incomplete prefix; nothing was
 *    written anywhere; call again with the same bytes plus more;
 *  - SORA_PROXY_ERROR: `in` cannot be (the start of) a valid header;
 *    *error_r is a static string saying why; nothing else was written.
 * params may be NULL (defaults). `in` is borrowed for the call only. */
enum sora_proxy_status sora_proxy_parse(const struct sora_proxy_params *params,
					struct sora_str in,
					struct sora_proxy_result *result_r,
					size_t *consumed_r, const char **error_r);

/* What to put into a built v2 header besides the addresses. All pointers
 * borrowed for the call; NULL/false leaves the TLV out. */
struct sora_proxy_v2_opts {
	const char *session_id;   /* SORA_PP2_TYPE_SORA_SESSION: 1..64 visible ASCII */
	const char *authority;    /* PP2_TYPE_AUTHORITY: the SNI the client sent */
	bool tls;                 /* PP2_TYPE_SSL with PP2_CLIENT_SSL set */
	const char *tls_version;  /* PP2_SUBTYPE_SSL_VERSION (needs tls) */
	const char *tls_cipher;   /* PP2_SUBTYPE_SSL_CIPHER (needs tls) */
	bool crc32c;              /* append PP2_TYPE_CRC32C over the header */
};

/* Enough room for any header sora_proxy_v2_build() produces. */
#define SORA_PROXY_V2_BUILD_MAX \
	(SORA_PROXY_V2_HEADER_LEN + 216 + \
	 3 + SORA_PROXY_SESSION_ID_MAX + 3 + SORA_PROXY_AUTHORITY_MAX + \
	 3 + 5 + 3 + SORA_PROXY_TLS_NAME_MAX + 3 + SORA_PROXY_TLS_NAME_MAX + \
	 3 + 4)

/* Builds a v2 header into buf (size bytes) and sets *len_r to its length.
 *
 * src and dst are the client's address and the address it connected to.
 * Both NULL gives a LOCAL header (for health checks). AF_INET and AF_INET6
 * may be mixed: the IPv4 one is then sent as an IPv4-mapped IPv6 address,
 * as HAProxy does. AF_UNIX pairs are sent as UNIX stream addresses; each
 * must then point to a whole struct sockaddr_un (its 108-byte sun_path is
 * copied as is).
 * Returns 0, or -1 with *error_r (static string) on an unsupported address,
 * an invalid TLV value or a too small buffer; buf is then unspecified.
 * All arguments borrowed for the call. */
int sora_proxy_v2_build(const struct sockaddr *src, const struct sockaddr *dst,
			const struct sora_proxy_v2_opts *opts,
			void *buf, size_t size, size_t *len_r,
			const char **error_r);

#endif
