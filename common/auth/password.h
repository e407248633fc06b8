/* Password schemes: creating and verifying stored password hashes.
 *
 * Stored hashes use Dovecot's "{SCHEME}data" form so that credentials can be
 * migrated from Dovecot unchanged. Verified schemes:
 *   {BLF-CRYPT}  bcrypt "$2a$", "$2b$", "$2y$" (also bare, without prefix)
 *   {SHA512-CRYPT} "$6$[rounds=N$]salt$hash"   (also bare)
 *   {SHA256-CRYPT} "$5$[rounds=N$]salt$hash"   (also bare)
 *   {SSHA512}    base64(SHA512(password . salt) . salt), suffix ".B64"/".HEX"
 *   {SHA512}     base64(SHA512(password)), suffix ".B64"/".HEX"
 *   {SSHA256}    base64(SHA256(password . salt) . salt), suffix ".B64"/".HEX"
 *   {ARGON2ID}   "$argon2id$v=19$m=..,t=..,p=..$salt$hash" (also bare)
 *   {ARGON2I}    "$argon2i$v=19$..." (also bare)
 *   {CRYPT}      only when followed by one of the crypt forms above, which is
 *                how Dovecot's system-crypt scheme stores them.
 * Scheme names and encoding suffixes are matched case-insensitively. An
 * unsuffixed {SHA512} of exactly 128 hex digits is read as hex, as Dovecot
 * does.
 *
 * bcrypt, SHA512-CRYPT and SHA256-CRYPT run through libxcrypt's crypt_r,
 * which takes C strings: a password containing a NUL byte, or longer than
 * SORA_PW_CRYPT_MAX_PASSWORD_LEN bytes, is refused when hashing and never
 * matches when verifying (it is never silently cut short). bcrypt itself
 * only looks at the first 72 bytes of a password, like every bcrypt.
 * The digest schemes and Argon2 take the password as pointer + length and
 * accept any byte.
 *
 * Cost: hashing and verifying are CPU-bound and block for as long as the
 * scheme demands (bcrypt cost 12 is about 250 ms, Argon2id with libsodium's
 * interactive limits about 50 ms and 64 MiB). Call them only from worker
 * threads or from the CLI, never from an event-loop thread.
 *
 * Thread safety: every function here may be called from any number of
 * threads at once; they keep no shared mutable state (libsodium is
 * initialised once through pthread_once).
 *
 * Secrets: intermediate copies of the password and digests are wiped with
 * sodium_memzero before they are freed; digests are compared in constant
 * time (CRYPTO_memcmp, or libsodium's own Argon2 verifier). */
#ifndef SORA_AUTH_PASSWORD_H
#define SORA_AUTH_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

enum sora_pw_scheme {
	SORA_PW_BCRYPT,
	SORA_PW_SHA512_CRYPT,
	SORA_PW_SHA256_CRYPT,
	SORA_PW_SSHA512,
	SORA_PW_SHA512,
	SORA_PW_SSHA256,
	SORA_PW_ARGON2ID,
	SORA_PW_ARGON2I,
};

#define SORA_PW_DEFAULT_BCRYPT_COST 12
#define SORA_PW_MIN_BCRYPT_COST 4
#define SORA_PW_MAX_BCRYPT_COST 31
/* A login rehashes a bcrypt hash only below this cost (OWASP's minimum):
 * new hashes get the default, but an operator's cost-10 or cost-11 hashes
 * stay as chosen -- rehashing them to 12 would quadruple the CPU of every
 * later login (measured: tests/bench/proxy_bench.py, docs/proxy.md). */
#define SORA_PW_REHASH_BELOW_BCRYPT_COST 10

/* Longest password accepted at all, in bytes. Longer ones are refused when
 * hashing and never match when verifying; no real password is this long,
 * and the cap bounds the work an attacker can ask for. */
#define SORA_PW_MAX_PASSWORD_LEN 4096

/* Longest password the crypt_r based schemes can take (libxcrypt's limit of
 * 512 bytes including the terminating NUL). */
#define SORA_PW_CRYPT_MAX_PASSWORD_LEN 511

/* Largest Argon2 memory cost (m=, in KiB) accepted in a stored hash: 1 GiB.
 * A larger one is reported as malformed rather than attempted, so a single
 * bad row cannot make a worker allocate unbounded memory. */
#define SORA_PW_ARGON2_MAX_MEMORY_KIB (1024u * 1024u)

/* Parses a scheme name: "bcrypt", "ssha512", "sha512-crypt",
 * "sha256-crypt", "sha512", "ssha256", "argon2id", "argon2i", and Dovecot's
 * names ("BLF-CRYPT", "SHA512-CRYPT", ...), case-insensitively. name is a
 * borrowed C string. Returns 0 and sets *scheme_r, or -1 if unknown. */
int sora_password_scheme_parse(const char *name, enum sora_pw_scheme *scheme_r);

/* Returns the Dovecot name of a scheme as used in the "{SCHEME}" prefix,
 * e.g. "BLF-CRYPT" (static string), or "UNKNOWN" for an invalid value. */
const char *sora_password_scheme_name(enum sora_pw_scheme scheme);

/* Tells which scheme a stored hash uses, from its "{SCHEME}" prefix or the
 * form of a bare crypt/Argon2 string, without checking the rest. Returns 0,
 * or -1 with *error_r (static string) when it is none of the supported
 * schemes. stored is borrowed. Cheap: callable from any thread. */
int sora_password_stored_scheme(const char *stored, enum sora_pw_scheme *scheme_r,
				const char **error_r);

/* Checks that a stored hash is one this module can verify: a supported
 * scheme (prefix or bare form as for sora_password_verify) whose body is
 * well-formed for it (lengths, alphabet, bcrypt cost, SHA-crypt rounds,
 * Argon2 version and parameters, base64/hex and salt of the digests). It
 * does no hashing, so it is cheap; the one thing it cannot see is Argon2
 * parameters that libsodium refuses at verification although they are
 * within Argon2's limits. For importing hashes made
 * elsewhere (Dovecot's doveadm pw). Returns 0 and *scheme_r, or -1 with
 * *error_r (static string, never containing the hash). */
int sora_password_stored_check(const char *stored, enum sora_pw_scheme *scheme_r,
			       const char **error_r);

/* Writes into buf (size bytes, always NUL-terminated) a short name of the
 * scheme a stored hash claims, safe for logs and operator messages because
 * it never contains the salt, the digest or any other part of the hash:
 * the "{NAME}" prefix ("{MD5-CRYPT}"), with the crypt id where the prefix
 * leaves the algorithm open ("{CRYPT}$1$"), a bare known crypt id ("$y$"),
 * or a description such as "(no scheme prefix)". Meant for errors about
 * unsupported or malformed hashes, where the static error_r text cannot
 * name the scheme. Returns buf. stored is borrowed (NULL allowed). */
const char *sora_password_scheme_label(const char *stored, char *buf, size_t size);

/* Creates a stored hash with the Dovecot-style scheme prefix, e.g.
 * "{BLF-CRYPT}$2y$12$...", "{SSHA512}base64", "{ARGON2ID}$argon2id$v=19$...".
 * password is password_len bytes (borrowed, may contain NUL bytes for the
 * schemes that can carry them). bcrypt_cost is used for SORA_PW_BCRYPT only;
 * 0 or less means SORA_PW_DEFAULT_BCRYPT_COST, otherwise it must be within
 * SORA_PW_MIN_BCRYPT_COST..SORA_PW_MAX_BCRYPT_COST. Salts come from
 * libsodium's randombytes (16 bytes for bcrypt and the salted digests, 12
 * for SHA*-CRYPT, which use the default 5000 rounds); Argon2 uses libsodium's
 * interactive limits.
 * Returns 0 with *hash_r malloc'd (the caller frees it), or -1 with *error_r
 * (static string) and *hash_r untouched. Blocking: worker threads or the
 * CLI only. */
int sora_password_hash(enum sora_pw_scheme scheme, const char *password,
		       size_t password_len, int bcrypt_cost, char **hash_r,
		       const char **error_r);

/* Verifies a password against a stored hash (a borrowed C string, with or
 * without "{SCHEME}" prefix; bare "$2a$"/"$2b$"/"$2y$"/"$6$"/"$5$"/
 * "$argon2id$"/"$argon2i$" are recognised).
 * Returns 0 when the check ran: *match_r says whether the password matched.
 * A password that the stored scheme could never have been made from (a NUL
 * byte or too long for crypt_r, longer than SORA_PW_MAX_PASSWORD_LEN) is a
 * plain mismatch, so that client input cannot raise "malformed hash" errors.
 * Returns -1 when the stored hash is malformed or uses an unsupported scheme
 * or parameters (*error_r, a static string that never contains the hash or
 * the password); *match_r is then false.
 * needs_rehash_r may be NULL; otherwise it is set to true only when the
 * password matched and the stored hash is bcrypt with a cost below
 * bcrypt_cost (0 or less means SORA_PW_DEFAULT_BCRYPT_COST), so the caller
 * should store sora_password_hash(SORA_PW_BCRYPT, ...) in its place.
 * Blocking: worker threads or the CLI only. */
int sora_password_verify(const char *stored, const char *password,
			 size_t password_len, int bcrypt_cost, bool *match_r,
			 bool *needs_rehash_r, const char **error_r);

#endif
