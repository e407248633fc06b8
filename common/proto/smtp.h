/* SMTP / LMTP command parsing (RFC 5321, RFC 2033) and envelope addresses.
 *
 * The parser does no I/O and allocates nothing. The caller's line reader
 * splits the input into lines and hands one line at a time to
 * sora_smtp_command_parse(); the line may still end in CRLF or a bare LF
 * (both are accepted and stripped) or carry no line ending at all. The result
 * points into the caller's line, or into cmd->scratch for values that had to
 * be decoded (xtext): the line must outlive the command, and a struct
 * sora_smtp_command must not be copied by value while its fields are in use.
 *
 * Line length: RFC 5321 4.5.3.1.4 allows 512 octets including the CRLF.
 * A longer line is SORA_SMTP_ERR_LINE_TOO_LONG. A line reader that stops
 * buffering may pass any prefix longer than SORA_SMTP_MAX_LINE of such a line
 * and gets the same error; it must then skip input up to the next LF so the
 * session stays in step (as nginx and Postfix do).
 *
 * Leniency, decided once for the whole code base:
 *  - verbs, "FROM:"/"TO:", parameter keywords and XCLIENT attribute names
 *    are case-insensitive;
 *  - spaces between "FROM:"/"TO:" and the path ("MAIL FROM: <a@b>") and
 *    extra spaces between parameters and at the end of the line are
 *    accepted, because common clients send them;
 *  - the path must be in angle brackets: a bare address is a syntax error,
 *    since guessing where it ends goes wrong with quoted local parts;
 *  - the reverse-path (MAIL FROM) is someone else's address that the
 *    upstream MTA already accepted, so misplaced dots in its local part
 *    ("a..b@example.jp", still common in the wild) and '_' in its domain are
 *    accepted there (flagged in path.nonstandard); rejecting them at final
 *    delivery would bounce legitimate mail. The forward-path (RCPT TO) names
 *    one of our own users and is checked strictly;
 *  - non-ASCII bytes in addresses are accepted if they form valid UTF-8
 *    (RFC 6531) and flagged in path.utf8; whether SMTPUTF8 was requested is
 *    for the server to check (553 5.6.7 when it was not);
 *  - source routes ("<@a,@b:user@d>") are parsed and dropped (RFC 5321
 *    4.1.1.3: receivers should ignore them).
 *
 * Error kinds (negative return values) and the reply each one should get is
 * given by sora_smtp_error_status(); the detail text in *error_r is a static
 * string suitable as the reply text.
 *
 * Thread safety: pure functions over caller memory; callable from any thread. */
#ifndef SORA_PROTO_SMTP_H
#define SORA_PROTO_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/core/buf.h"
#include "common/core/cidr.h"
#include "common/core/str.h"

/* RFC 5321 4.5.3.1: command line including CRLF, local part, domain, and
 * a whole path including the angle brackets. */
#define SORA_SMTP_MAX_LINE        512
#define SORA_SMTP_MAX_LOCAL_PART  64
#define SORA_SMTP_MAX_DOMAIN      255
#define SORA_SMTP_MAX_PATH        256
/* RFC 3461 4.4: ENVID is at most 100 characters. */
#define SORA_SMTP_MAX_ENVID       100
/* Bound on a decoded XCLIENT value (a host name or a login). */
#define SORA_SMTP_MAX_XCLIENT_VALUE 255

/* HELO and EHLO are recognized so that an LMTP server can refuse them with
 * a precise answer (RFC 2033 4.1 requires LHLO); BDAT is parsed for servers
 * that advertise CHUNKING. */
enum sora_smtp_verb {
	SORA_SMTP_CMD_UNKNOWN = 0,
	SORA_SMTP_CMD_LHLO,
	SORA_SMTP_CMD_HELO,
	SORA_SMTP_CMD_EHLO,
	SORA_SMTP_CMD_MAIL,
	SORA_SMTP_CMD_RCPT,
	SORA_SMTP_CMD_DATA,
	SORA_SMTP_CMD_BDAT,
	SORA_SMTP_CMD_RSET,
	SORA_SMTP_CMD_NOOP,
	SORA_SMTP_CMD_QUIT,
	SORA_SMTP_CMD_VRFY,
	SORA_SMTP_CMD_HELP,
	SORA_SMTP_CMD_STARTTLS,
	SORA_SMTP_CMD_XCLIENT,
};

enum sora_smtp_error {
	/* Over 512 octets: 500 5.5.2 "Line too long". */
	SORA_SMTP_ERR_LINE_TOO_LONG = -1,
	/* NUL, a CR or LF inside the line, or an empty line: 500 5.5.2. */
	SORA_SMTP_ERR_BAD_LINE = -2,
	/* Verb not known: 500 5.5.1. */
	SORA_SMTP_ERR_UNKNOWN_COMMAND = -3,
	/* Malformed arguments (missing "FROM:", missing '<', argument where none
	 * is allowed, bad domain in LHLO): 501 5.5.4. */
	SORA_SMTP_ERR_SYNTAX = -4,
	/* The mailbox inside the brackets is invalid: 501 5.1.7 for MAIL,
	 * 501 5.1.3 for RCPT. */
	SORA_SMTP_ERR_BAD_ADDRESS = -5,
	/* Local part > 64, domain > 255 or path > 256 octets: 501 5.1.7 / 5.1.3
	 * ("Path too long", RFC 5321 4.5.3.1.10). */
	SORA_SMTP_ERR_ADDRESS_TOO_LONG = -6,
	/* A MAIL/RCPT parameter or XCLIENT attribute we do not know:
	 * 555 5.5.4 for MAIL/RCPT (RFC 5321 4.1.1.11), 501 5.5.4 for XCLIENT.
	 * cmd->bad_param names it. */
	SORA_SMTP_ERR_UNKNOWN_PARAM = -7,
	/* A known parameter with a bad or missing value, or given twice:
	 * 501 5.5.4. cmd->bad_param names it. */
	SORA_SMTP_ERR_BAD_PARAM = -8,
};

/* An envelope path. All strings point into the parsed line. */
struct sora_smtp_path {
	struct sora_str path;     /* between '<' and '>', source route included */
	struct sora_str mailbox;  /* local "@" domain, source route dropped;
				   * empty for the null path */
	struct sora_str local;    /* as sent: a quoted local part keeps its
				   * quotes and backslashes (see
				   * sora_smtp_local_unquote) */
	struct sora_str domain;   /* domain, or address literal with brackets;
				   * empty for <> and <postmaster> */
	bool null_path;     /* "<>" (MAIL FROM only) */
	bool postmaster;    /* RCPT TO:<postmaster> without a domain */
	bool quoted;        /* local part is a quoted-string */
	bool literal;       /* domain is an address literal "[...]" */
	bool utf8;          /* non-ASCII (UTF-8) bytes in local part or domain */
	bool source_route;  /* "@a,@b:" was present and dropped */
	bool nonstandard;   /* accepted only by the reverse-path leniency */
};

enum sora_smtp_body {
	SORA_SMTP_BODY_NONE = 0,  /* no BODY= given */
	SORA_SMTP_BODY_7BIT,
	SORA_SMTP_BODY_8BITMIME,
	SORA_SMTP_BODY_BINARYMIME,
};

enum sora_smtp_ret {
	SORA_SMTP_RET_NONE = 0,
	SORA_SMTP_RET_FULL,
	SORA_SMTP_RET_HDRS,
};

/* MAIL FROM parameters (RFC 1870 SIZE, RFC 6152 BODY, RFC 3030
 * BINARYMIME, RFC 6531 SMTPUTF8, RFC 3461 RET/ENVID, RFC 4954 AUTH). */
struct sora_smtp_mail_params {
	bool has_size;
	uint64_t size;
	enum sora_smtp_body body;
	bool smtputf8;
	enum sora_smtp_ret ret;
	bool has_envid;
	struct sora_str envid_raw;   /* xtext as sent */
	struct sora_str envid;       /* decoded (in cmd->scratch) */
	bool has_auth;
	struct sora_str auth_raw;    /* xtext as sent, or "<>" */
	struct sora_str auth;        /* decoded; empty for "<>" */
};

#define SORA_SMTP_NOTIFY_NEVER    0x01u
#define SORA_SMTP_NOTIFY_SUCCESS  0x02u
#define SORA_SMTP_NOTIFY_FAILURE  0x04u
#define SORA_SMTP_NOTIFY_DELAY    0x08u

/* RCPT TO parameters (RFC 3461 ORCPT, NOTIFY). */
struct sora_smtp_rcpt_params {
	unsigned notify;             /* SORA_SMTP_NOTIFY_*; 0 = not given */
	bool has_orcpt;
	struct sora_str orcpt_type;  /* "rfc822" (as sent) */
	struct sora_str orcpt_raw;   /* the xtext after ';' as sent */
	struct sora_str orcpt;       /* decoded (in cmd->scratch) */
};

/* XCLIENT attributes (Postfix XCLIENT_README). */
enum sora_smtp_xclient_attr {
	SORA_SMTP_XCLIENT_NAME = 0,
	SORA_SMTP_XCLIENT_REVERSE_NAME,
	SORA_SMTP_XCLIENT_ADDR,
	SORA_SMTP_XCLIENT_PORT,
	SORA_SMTP_XCLIENT_PROTO,
	SORA_SMTP_XCLIENT_HELO,
	SORA_SMTP_XCLIENT_LOGIN,
	SORA_SMTP_XCLIENT_DESTADDR,
	SORA_SMTP_XCLIENT_DESTPORT,
	SORA_SMTP_XCLIENT_ATTR_COUNT,
};

enum sora_smtp_xclient_state {
	SORA_SMTP_XCLIENT_ABSENT = 0,  /* not in this command: keep the old value */
	SORA_SMTP_XCLIENT_SET,         /* value holds the decoded value */
	SORA_SMTP_XCLIENT_UNAVAILABLE, /* "[UNAVAILABLE]": forget the value */
	SORA_SMTP_XCLIENT_TEMPUNAVAIL, /* "[TEMPUNAVAIL]" (NAME, REVERSE_NAME) */
};

struct sora_smtp_xclient_value {
	enum sora_smtp_xclient_state state;
	struct sora_str value;  /* decoded, in cmd->scratch; printable ASCII */
};

struct sora_smtp_xclient {
	struct sora_smtp_xclient_value attr[SORA_SMTP_XCLIENT_ATTR_COUNT];
	/* ADDR / DESTADDR parsed ("IPV6:" prefix removed), IPv4 stored
	 * IPv4-mapped as in common/core/cidr.h; valid when state is SET. */
	struct sora_ip addr;
	struct sora_ip destaddr;
	uint16_t port;
	uint16_t destport;
};

struct sora_smtp_command {
	enum sora_smtp_verb verb;
	struct sora_str verb_text;  /* the verb as sent (escape before logging) */
	struct sora_str arg;        /* everything after the verb, trimmed */
	/* On SORA_SMTP_ERR_UNKNOWN_PARAM / _BAD_PARAM: the keyword concerned. */
	struct sora_str bad_param;

	/* LHLO / HELO / EHLO */
	struct sora_str domain;
	bool domain_literal;
	/* MAIL / RCPT */
	struct sora_smtp_path path;
	struct sora_smtp_mail_params mail;
	struct sora_smtp_rcpt_params rcpt;
	/* XCLIENT */
	struct sora_smtp_xclient xclient;
	/* BDAT (RFC 3030) */
	uint64_t bdat_size;
	bool bdat_last;

	/* Decoded values live here; never larger than the line. */
	char scratch[SORA_SMTP_MAX_LINE];
	size_t scratch_used;
};

/* Reply code and enhanced status (RFC 3463) for an error kind. */
struct sora_smtp_status {
	unsigned code;
	const char *enhanced;  /* static string, e.g. "5.5.4" */
};

/* Parses one command line. Returns 0, or a negative enum sora_smtp_error
 * with *error_r set to a static reply text (error_r may be NULL). On error,
 * cmd->verb is still set whenever the verb was recognized, so the right reply
 * code can be chosen. */
int sora_smtp_command_parse(const char *line, size_t len,
			    struct sora_smtp_command *cmd, const char **error_r);

/* The reply for an error returned by sora_smtp_command_parse() for verb. */
struct sora_smtp_status sora_smtp_error_status(int err, enum sora_smtp_verb verb);

/* "LHLO", "MAIL", ...; "UNKNOWN" for SORA_SMTP_CMD_UNKNOWN. */
const char *sora_smtp_verb_name(enum sora_smtp_verb verb);

/* Name of an XCLIENT attribute as sent on the wire ("ADDR", ...). */
const char *sora_smtp_xclient_attr_name(enum sora_smtp_xclient_attr attr);

/* Parses a path "<...>" on its own (no parameters after it), with the
 * strict forward-path rules if rcpt is true and the reverse-path rules
 * otherwise. Returns 0 or a negative enum sora_smtp_error. */
int sora_smtp_path_parse(struct sora_str in, bool rcpt,
			 struct sora_smtp_path *path_r, const char **error_r);

/* Writes the content of a local part without quoting: for a quoted-string
 * the quotes are removed and quoted-pairs resolved, a dot-string is copied.
 * Returns 0 with *len_r set, or -1 if out_size is too small or local is not
 * a valid local part. The output is not NUL-terminated. */
int sora_smtp_local_unquote(struct sora_str local, char *out, size_t out_size,
			    size_t *len_r);

/* Result of sora_smtp_subaddress_split(). */
struct sora_smtp_subaddress {
	struct sora_str user;     /* into the input */
	struct sora_str detail;   /* into the input; empty if none */
	struct sora_str domain;   /* into the input */
	bool has_detail;          /* a separator was found (detail may be "") */
	struct sora_str base;     /* "user@domain", in base_buf */
	char base_buf[SORA_SMTP_MAX_PATH + 1];  /* NUL-terminated */
};

/* Splits a subaddress (RFC 5233): "user+detail@domain" gives user "user",
 * detail "detail" and base "user@domain". The address is "local@domain" with
 * the local part already unquoted; the split is at the last '@', the detail
 * starts after the first separator in the local part. separator 0 means '+'.
 * No split (has_detail false, base = address) when there is no separator or
 * when the user part before it would be empty ("+foo@d" is a user named
 * "+foo", as in Postfix). Returns -1 if the address has no '@' or is longer
 * than SORA_SMTP_MAX_PATH. The struct holds base in its own buffer: do not
 * copy it by value while base is in use. */
int sora_smtp_subaddress_split(struct sora_str address, char separator,
			       struct sora_smtp_subaddress *r);

/* xtext (RFC 3461 4): "+XX" hex escapes; other characters 33..126 except
 * '+' and '='. Decoding accepts lower-case hex, as Postfix does. Returns 0
 * with *len_r set, or -1 on bad syntax or when out_size is too small
 * (out_size >= in.len always suffices). */
int sora_smtp_xtext_decode(struct sora_str in, char *out, size_t out_size,
			   size_t *len_r);
/* Appends the xtext encoding of in. Returns 0 or -1 (buffer limit). */
int sora_smtp_xtext_encode(struct sora_buf *out, struct sora_str in);

/* Checks a domain (or address literal "[...]") as sent in LHLO/EHLO or a
 * path. strict: RFC 5321 letters/digits/hyphens only; otherwise '_' is also
 * accepted. Non-ASCII labels must be valid UTF-8. */
bool sora_smtp_domain_valid(struct sora_str domain, bool strict);

#endif
