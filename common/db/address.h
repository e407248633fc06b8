/* Validation of account addresses (credential login names).
 *
 * An address is what a user types as login name and what mail is delivered
 * to: local@domain. The rules are deliberately stricter than RFC 5322 so an
 * address is unambiguous in every protocol that carries it (IMAP atoms,
 * SASL, LMTP RCPT TO, logs):
 *   - total length 3..254 bytes, local part 1..64, domain 1..253;
 *   - exactly one '@';
 *   - no spaces, control characters or DEL; bytes >= 0x80 only as
 *     well-formed UTF-8 (internationalised addresses);
 *   - local part: a dot-atom (no leading, trailing or doubled dots) without
 *     the specials ( ) < > [ ] : ; , " \ and without '*', which separates
 *     the user from the master user in "user*master" logins;
 *   - domain: a host name: dot-separated labels of 1..63 bytes, each of
 *     letters, digits, hyphens (not first or last) or UTF-8; no domain
 *     literals ("[192.0.2.1]"). A single label ("localhost") is accepted.
 * Case is preserved; comparisons elsewhere are case-insensitive.
 *
 * Thread safety: pure function, any thread. */
#ifndef SORA_DB_ADDRESS_H
#define SORA_DB_ADDRESS_H

#include "common/core/error.h"
#include "common/core/str.h"

#define SORA_ADDRESS_MAX_LEN 254
#define SORA_ADDRESS_MAX_LOCAL_LEN 64
#define SORA_ADDRESS_MAX_DOMAIN_LEN 253

/* Returns 0 when addr is a valid address, or -1 with err set
 * (SORA_ERR_INVALID; the message, such as "missing '@'", says what is
 * wrong and does not repeat the address). addr may hold any bytes,
 * including NUL (which is invalid). err may be NULL for a yes/no answer. */
int sora_address_validate(struct sora_str addr, struct sora_error *err);

#endif
