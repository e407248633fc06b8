/* Unit tests for common/auth/password.c: Dovecot and reference test
 * vectors, hashing round trips, bcrypt rehash, malformed stored hashes,
 * NUL bytes and length limits, Dovecot accepting our hashes, threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/auth/password.h"

#define PW1 "Tr0ub4dor&3"
#define PW2 "correct horse battery staple"
#define PW3 "p\xc3\xa4ssw\xc3\xb6rd\xe2\x82\xac" /* "pässwörd€" in UTF-8 */

struct vector {
	const char *password;
	const char *hash;
};

/* Generated with `doveadm pw -s SCHEME -p PASSWORD` (BLF-CRYPT with -r 5,
 * the last four with the -r shown in each hash) by Dovecot 2.3.19.1 on
 * Debian 12. */
static const struct vector dovecot_vectors[] = {
	{ PW1, "{BLF-CRYPT}$2y$05$gdqObZFLu71yvIRew9A8SeC3q5GT44wPCr70jKY.hbQW4Mv3r.8KK" },
	{ PW1, "{SHA512-CRYPT}$6$4s/p0p1e3eU1/2Io$osn6fxCD1wdEEuPpGhV/H6fNu8KSo.urnwhXfTHhsTQ4kTbZANuI2k2EjLWpJPN3/HqCdq4Bp.aimjy5vQeAs1" },
	{ PW1, "{SHA256-CRYPT}$5$m/WlgJHJqve/hMzG$z8kaWGCNhxXyLq3Tflb8yvtUwT5EEwEQxbalNGxl/ZD" },
	{ PW1, "{SSHA512}qiV2EX70xecKAXTUj6uTSnzryctEJbs1NJCuxsXJvZkVfa2RSmJUyiXyyDnz2vB/Y2vHv54Uz8HSWqT9w/PxoQGq7as=" },
	{ PW1, "{SSHA512.HEX}f90986ac096806673e17298297f4876519a4f94ba1653e7ea67a8d9cf9300c1dbf2b96935891661cf88571cce45a3510348d4d4f26c1e0f4e7bdd7f41e21ef49f19a70c5" },
	{ PW1, "{SSHA512.B64}xGAmsugzf6sgQcwxA0qSlJnRBdeqWX+NnEWhdpmYylEx+ga18iaMWcFDu1TQCK+YTetOUzA1hJT/mTY3k1q92I0TNBg=" },
	{ PW1, "{SHA512}xyu2IccEDPS2R0BjqaeXJpDiUvNa2+fPr/Wx7iMW7+c4LnI9QeATor+8M8MAfFDFhH0hqInM6DhTbqxyeAjeQA==" },
	{ PW1, "{SHA512.HEX}c72bb621c7040cf4b6474063a9a7972690e252f35adbe7cfaff5b1ee2316efe7382e723d41e013a2bfbc33c3007c50c5847d21a889cce838536eac727808de40" },
	{ PW1, "{SSHA256}E4xv6C5JwFTjx00uSzAOdcDGqRLrus3conR9w8ILbtq+5Wa/" },
	{ PW1, "{SSHA256.HEX}3609bf184842773d9e3c83f73d0db91ad143b78363a951669cf5cb2397cc2b847af05daa" },
	{ PW1, "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$GSjIMiTnZpNEzOmdk4Mjhg$M07dc1YA7A4BJTDmsGHdr6l0keD18j9861CKvJa2fPk" },
	{ PW1, "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$XWI2Bu42/liWW3ihiTM0GQ$sWvyO7Q5oVQGyjbkt+7NElzVaQh9masFL1t/2JJxpOY" },
	{ PW2, "{BLF-CRYPT}$2y$05$40N6Z6ZJqdH5LAK9VCIIO.veIyVxFzpINxI.AB2AdaxgxZYnIJEze" },
	{ PW2, "{SHA512-CRYPT}$6$CAEL7LjDwknTME1O$xr40D2GvSvhe1mE0bRY3NJ2IYM.sFzQ/DFc1skpdH1UZWmMm7PBf85ub4qRqDP7WuEwEIcYBHcREK2RNZZj1x." },
	{ PW2, "{SHA256-CRYPT}$5$mmTGkyf4.xzkTPvn$tF8AQHzHHj/mkAvXsEPSIBK3HpPkTu85zBBiV1gTs07" },
	{ PW2, "{SSHA512}JD2LO/JXRcUJuSdu3FQRkIL0hPM++Z3nCk18jvnZSysAcdA2x4cO0XSTq7X3zOXycSeVQXgikiy2OwFGf8hpzK809gw=" },
	{ PW2, "{SSHA512.HEX}04bc1858ac58eef637607650bea6110cdfeab83b3ed5dec4aa55618ac31a21e54fd1f92d56b0fb5efbe46b374aa3b43391c0d08529a86dcbe3258b8165ec9d2d77488c1a" },
	{ PW2, "{SSHA512.B64}2XQPmLNSxIuX1bwMWIFaxYHmz61RqrHi5o+BklJ29ok0bUHR6T/DJ7dV0ZLyXSeN6cky3orMWfhXRDjBjn0epVJFkHs=" },
	{ PW2, "{SHA512}vl73Z52Iq5qQRfYmflX15XhLS4zXZLXNhVpSRPkcYmlTzUbEPXZohz/W7707IhJJMVWAAxljRyoHh4H+BG5irg==" },
	{ PW2, "{SHA512.HEX}be5ef7679d88ab9a9045f6267e55f5e5784b4b8cd764b5cd855a5244f91c626953cd46c43d7668873fd6efbd3b221249315580031963472a078781fe046e62ae" },
	{ PW2, "{SSHA256}GVqEcMNhoIIjJeCqYa3dtVrI8U0zxLqOkO/V74yZRDHQS2Ui" },
	{ PW2, "{SSHA256.HEX}4b9b0c03439e6cb450d6dc998cffdb21c6402c20f6039cf8125cfba781a24b62bba9eaef" },
	{ PW2, "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$oifUa8srABPDn0RYh1jGYg$FSgc5FFi+S2sZn9/PIzLliGWmupZd10qtUdOL4oMYco" },
	{ PW2, "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$NG3Zj3kkrz1yz/7B1wl53w$3unCN17G+cVAdqUj4vblE95d2w7hK3JCNA8QQYWJNfk" },
	{ PW3, "{BLF-CRYPT}$2y$05$2Hx17fXA7QctUe7QHtxxOeJXg91E.6qj.BwRnZUUCmeUUZp//iSNa" },
	{ PW3, "{SHA512-CRYPT}$6$M6ee9F20Fc/sQ8SB$N2uxTT5cDEUgc6POmjwrPWrQEqF3Xwf4joBV5SZxtBVDcKjm22pFtPwUALB1J17rGWA9XbnHICyiQh41IOWG70" },
	{ PW3, "{SHA256-CRYPT}$5$SOllUdnCpY/NmF2C$E8/TydfmwNrSMB3/GZm9ihcCqGF4SfqqIAFsSsUovz/" },
	{ PW3, "{SSHA512}RHDFryNphKQjNtcy93q8oqskYa2flahobch4Kyxg578taG2fW8vRRk2B6ssG3lElMggz5IagIW+Dqkjg0ukMoIzkPMI=" },
	{ PW3, "{SSHA512.HEX}be3f1a1812ff11f0f24c1f7762eb930fddfe6fba4a22dacc91e9d30a31d90040e795b9fe69207a73edd6aa7b91cbc88cd4dd102b2a58c2379f40bee63c797273c8be0c2c" },
	{ PW3, "{SSHA512.B64}qXrPlRup4AD0jxqDPZ+c2UjJRH09oXf2jhGLj71Y4rWNW+nfUWdlUeR9tB+wbZOKaj282e56/h3aFIGEIvxNPEbPDKA=" },
	{ PW3, "{SHA512}i8GcJvFkESpLNcwmCssLcOPKTM8kQ+CkMuH8Et0TuS5gBnxffdzL4iQK+7KzVK/5MNkPRAzG4FGiFl4SMIhcwg==" },
	{ PW3, "{SHA512.HEX}8bc19c26f164112a4b35cc260acb0b70e3ca4ccf2443e0a432e1fc12dd13b92e60067c5f7ddccbe2240afbb2b354aff930d90f440cc6e051a2165e1230885cc2" },
	{ PW3, "{SSHA256}Jg4cCvsVHlgQKf2Xh0Xreth8RvjVblK5n1Kho5R/iCXXkkn2" },
	{ PW3, "{SSHA256.HEX}0114b26fbe8167fd933552e278e4210e0a8c098aac4d66b462c4a62efa56e41714a4b5b1" },
	{ PW3, "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$M+E9YxZm+o7PGjv/vtR0xQ$6s1WB2fYUdSzn5CGvJBUo0oehPhYJicUrTu9NBVPy7w" },
	{ PW3, "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$FUUR2uYaUVz8XCC0Dgp5hg$H+ffcwVIgvcFZvebw7Qz09/EfExriWzOUtKBQaKTqa4" },
	{ PW1, "{SHA512-CRYPT}$6$rounds=10000$UXgQDlKXAyAjs19l$0wag5KQ2xCoqqgI4zl8KrRgso433yC7W4RiX90sxyF6U2ybMgTJ0RdY5iC3f42RjeXXo32gKj/5dKfPFGWk63." },
	{ PW1, "{SHA256-CRYPT}$5$rounds=8000$YA8V2Ku9YQVsnJz0$waJlgnzFwn7QTbRo1hLbTyly/N2pGjxtixAcjY8GATB" },
	{ "x", "{BLF-CRYPT}$2y$04$eegkyvX/5cOuWruIiK7s6.kNAynxWtoSovyHEgSPpAV068pfPtexS" },
};

/* `doveadm pw -s BLF-CRYPT -r 4` of 80 times 'a' (Dovecot 2.3.19.1, Debian
 * 12): bcrypt only uses the first 72 bytes. */
#define DOVECOT_BCRYPT_80A \
	"{BLF-CRYPT}$2y$04$dHD6gKfEO5sOn1p46o9m6uXSNRZQsuTWYnjHRs7tDZ/taDMoOEqDq"

/* Independent vectors, bare (no {SCHEME} prefix):
 * - bcrypt: the test vectors shipped with Openwall's crypt_blowfish
 *   (wrapper.c), $2a$ and the same with $2b$ (identical for short input);
 * - SHA-crypt: Ulrich Drepper's specification ("Unix crypt using SHA-256
 *   and SHA-512"), including a salt cut to 16 characters in the hash;
 * - Argon2: made with the reference implementation's CLI (Debian package
 *   argon2 0~20171227), e.g. `echo -n password | argon2 somesalt -t 2 -m 16
 *   -p 4 -l 24 -e`, the first of which is the example in its README. They
 *   cover lanes > 1 and hash lengths other than 32, which Dovecot and
 *   libsodium never produce. */
static const struct vector reference_vectors[] = {
	{ "U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW" },
	{ "U*U*", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK" },
	{ "U*U*U", "$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a" },
	{ "U*U", "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW" },
	{ "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored",
	  "$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui" },
	{ "Hello world!", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1" },
	{ "Hello world!", "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v." },
	{ "Hello world!", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5" },
	{ "Hello world!", "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA" },
	{ "password", "$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG" },
	{ "password", "$argon2id$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$F1jG2CV3/Nr+yRuIsPKw0J9r4s7cJHBU" },
	{ PW1, "$argon2id$v=19$m=4096,t=2,p=4$c29tZXNhbHRzYWx0$uyX55iimwWnnAdQ5xbWQ3n32eO7PrBHEng4LxW5iy80" },
	{ PW1, "$argon2i$v=19$m=4096,t=3,p=2$c29tZXNhbHRzYWx0$IaKDTvYRFSawx7S9rMB+Cc0Fujsrc9J1ZCZgIMp2Dvw" },
};

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

/* Verifies and insists that the stored hash was well-formed. */
static bool verify_ok(const char *stored, const char *pw, size_t pw_len,
		      int cost, bool *rehash_r)
{
	const char *error = NULL;
	bool match = true;
	int ret = sora_password_verify(stored, pw, pw_len, cost, &match, rehash_r, &error);

	if (ret != 0)
		print_error("verify(%s) failed: %s\n", stored, error);
	assert_int_equal(ret, 0);
	return match;
}

static bool verify_s(const char *stored, const char *pw)
{
	return verify_ok(stored, pw, strlen(pw), 0, NULL);
}

static bool is_bcrypt(const char *hash)
{
	const char *body = hash[0] == '{' ? strchr(hash, '}') + 1 : hash;

	return strncmp(body, "$2", 2) == 0;
}

static void check_vector(const struct vector *v)
{
	size_t len = strlen(v->password);
	/* bcrypt ignores bytes past 72, so changes are made within them. */
	size_t used = is_bcrypt(v->hash) && len > 72 ? 72 : len;
	char *off = strdup(v->password);
	char *longer = malloc(len + 2);
	bool rehash = true;

	assert_non_null(off);
	assert_non_null(longer);
	assert_true(verify_ok(v->hash, v->password, len, 0, &rehash));
	/* Rehashing only ever concerns bcrypt; all bcrypt vectors here have
	 * cost 4 or 5, below the default of 12. */
	assert_int_equal(rehash, is_bcrypt(v->hash));

	assert_false(verify_s(v->hash, "wrong password"));
	assert_false(verify_s(v->hash, ""));
	/* One character off, one missing, one extra. */
	off[used - 1] = (char)(off[used - 1] ^ 1);
	assert_false(verify_ok(v->hash, off, len, 0, &rehash));
	assert_false(rehash);
	assert_false(verify_ok(v->hash, v->password, used - 1, 0, NULL));
	memcpy(longer, v->password, len);
	longer[len] = '!';
	longer[len + 1] = '\0';
	if (used == len && len < 72)
		assert_false(verify_ok(v->hash, longer, len + 1, 0, NULL));
	free(longer);
	free(off);
}

static void test_dovecot_vectors(void **state)
{
	for (size_t i = 0; i < N_ELEMENTS(dovecot_vectors); i++)
		check_vector(&dovecot_vectors[i]);
}

static void test_reference_vectors(void **state)
{
	for (size_t i = 0; i < N_ELEMENTS(reference_vectors); i++)
		check_vector(&reference_vectors[i]);
	/* crypt_blowfish's vector for the empty password. */
	assert_true(verify_s("$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy", ""));
	assert_false(verify_s("$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy", " "));
}

/* The crypt and Argon2 forms also verify without their {SCHEME} prefix,
 * and the crypt forms under Dovecot's generic {CRYPT}. */
static void test_bare_and_crypt_prefix(void **state)
{
	size_t tested = 0;

	for (size_t i = 0; i < N_ELEMENTS(dovecot_vectors); i++) {
		const struct vector *v = &dovecot_vectors[i];
		const char *body = strchr(v->hash, '}') + 1;

		if (body[0] != '$')
			continue;
		assert_true(verify_s(body, v->password));
		assert_false(verify_s(body, "wrong password"));
		if (strncmp(body, "$argon2", 7) != 0) {
			char buf[256];

			assert_true((size_t)snprintf(buf, sizeof(buf), "{CRYPT}%s", body) < sizeof(buf));
			assert_true(verify_s(buf, v->password));
			assert_false(verify_s(buf, "wrong password"));
		}
		tested++;
	}
	assert_int_equal(tested, 3 * 5 + 3);

	/* Scheme names in the prefix are case-insensitive, as in Dovecot. */
	assert_true(verify_s("{blf-crypt}$2y$05$gdqObZFLu71yvIRew9A8SeC3q5GT44wPCr70jKY.hbQW4Mv3r.8KK", PW1));
	assert_true(verify_s("{ssha512.b64}xGAmsugzf6sgQcwxA0qSlJnRBdeqWX+NnEWhdpmYylEx+ga18iaMWcFDu1TQCK+YTetOUzA1hJT/mTY3k1q92I0TNBg=", PW1));
	assert_true(verify_s("{SSHA256.base64}E4xv6C5JwFTjx00uSzAOdcDGqRLrus3conR9w8ILbtq+5Wa/", PW1));
	/* An unsuffixed SHA512 of 128 hex digits is read as hex (Dovecot's
	 * guess), and base64 without its '=' padding is accepted. */
	assert_true(verify_s("{SHA512}c72bb621c7040cf4b6474063a9a7972690e252f35adbe7cfaff5b1ee2316efe7382e723d41e013a2bfbc33c3007c50c5847d21a889cce838536eac727808de40", PW1));
	assert_true(verify_s("{SHA512}xyu2IccEDPS2R0BjqaeXJpDiUvNa2+fPr/Wx7iMW7+c4LnI9QeATor+8M8MAfFDFhH0hqInM6DhTbqxyeAjeQA", PW1));
	/* Upper-case hex. */
	assert_true(verify_s("{SSHA256.HEX}3609BF184842773D9E3C83F73D0DB91AD143B78363A951669CF5CB2397CC2B847AF05DAA", PW1));
}

static void test_bcrypt_72_bytes(void **state)
{
	char a[81];

	memset(a, 'a', 80);
	a[80] = '\0';
	assert_true(verify_ok(DOVECOT_BCRYPT_80A, a, 80, 4, NULL));
	assert_true(verify_ok(DOVECOT_BCRYPT_80A, a, 72, 4, NULL));
	assert_false(verify_ok(DOVECOT_BCRYPT_80A, a, 71, 4, NULL));
}

static void test_scheme_parse(void **state)
{
	static const struct {
		const char *name;
		enum sora_pw_scheme scheme;
	} names[] = {
		{ "bcrypt", SORA_PW_BCRYPT }, { "BLF-CRYPT", SORA_PW_BCRYPT },
		{ "Bcrypt", SORA_PW_BCRYPT }, { "ssha512", SORA_PW_SSHA512 },
		{ "SSHA512", SORA_PW_SSHA512 }, { "sha512-crypt", SORA_PW_SHA512_CRYPT },
		{ "SHA512-CRYPT", SORA_PW_SHA512_CRYPT }, { "sha256-crypt", SORA_PW_SHA256_CRYPT },
		{ "sha512", SORA_PW_SHA512 }, { "ssha256", SORA_PW_SSHA256 },
		{ "argon2id", SORA_PW_ARGON2ID }, { "ARGON2ID", SORA_PW_ARGON2ID },
		{ "argon2i", SORA_PW_ARGON2I },
	};
	enum sora_pw_scheme s;

	for (size_t i = 0; i < N_ELEMENTS(names); i++) {
		s = (enum sora_pw_scheme)-1;
		assert_int_equal(sora_password_scheme_parse(names[i].name, &s), 0);
		assert_int_equal(s, names[i].scheme);
		/* The canonical name parses back to the same scheme. */
		assert_int_equal(sora_password_scheme_parse(sora_password_scheme_name(s), &s), 0);
		assert_int_equal(s, names[i].scheme);
	}
	assert_int_equal(sora_password_scheme_parse("md5", &s), -1);
	assert_int_equal(sora_password_scheme_parse("", &s), -1);
	assert_int_equal(sora_password_scheme_parse("bcrypt ", &s), -1);
	assert_int_equal(sora_password_scheme_parse("argon2", &s), -1);
	assert_int_equal(sora_password_scheme_parse("SSHA512.HEX", &s), -1);
	assert_int_equal(sora_password_scheme_parse(NULL, &s), -1);
	assert_string_equal(sora_password_scheme_name(SORA_PW_BCRYPT), "BLF-CRYPT");
	assert_string_equal(sora_password_scheme_name((enum sora_pw_scheme)99), "UNKNOWN");
}

static void test_stored_scheme(void **state)
{
	enum sora_pw_scheme s;
	const char *error = NULL;

	assert_int_equal(sora_password_stored_scheme("$2b$10$x", &s, &error), 0);
	assert_int_equal(s, SORA_PW_BCRYPT);
	assert_int_equal(sora_password_stored_scheme("{SSHA512.HEX}00", &s, &error), 0);
	assert_int_equal(s, SORA_PW_SSHA512);
	assert_int_equal(sora_password_stored_scheme("$argon2i$v=19", &s, &error), 0);
	assert_int_equal(s, SORA_PW_ARGON2I);
	assert_int_equal(sora_password_stored_scheme("{CRYPT}$5$abc", &s, &error), 0);
	assert_int_equal(s, SORA_PW_SHA256_CRYPT);
	assert_int_equal(sora_password_stored_scheme("{PLAIN}secret", &s, &error), -1);
	assert_non_null(error);
	assert_int_equal(sora_password_stored_scheme(NULL, &s, &error), -1);
}

/* Hashes a password with every scheme, checks the form of the result and
 * that it verifies (and that a wrong password does not). */
static void test_hash_roundtrip(void **state)
{
	static const struct {
		enum sora_pw_scheme scheme;
		const char *prefix;
	} cases[] = {
		{ SORA_PW_BCRYPT, "{BLF-CRYPT}$2y$04$" },
		{ SORA_PW_SHA512_CRYPT, "{SHA512-CRYPT}$6$" },
		{ SORA_PW_SHA256_CRYPT, "{SHA256-CRYPT}$5$" },
		{ SORA_PW_SSHA512, "{SSHA512}" },
		{ SORA_PW_SHA512, "{SHA512}" },
		{ SORA_PW_SSHA256, "{SSHA256}" },
		{ SORA_PW_ARGON2ID, "{ARGON2ID}$argon2id$v=19$" },
		{ SORA_PW_ARGON2I, "{ARGON2I}$argon2i$v=19$" },
	};
	const char *pws[] = { "s3cret pass", "", PW3 };

	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		for (size_t j = 0; j < N_ELEMENTS(pws); j++) {
			const char *error = NULL;
			char *h1 = NULL, *h2 = NULL;
			enum sora_pw_scheme s;

			assert_int_equal(sora_password_hash(cases[i].scheme, pws[j], strlen(pws[j]),
							    4, &h1, &error), 0);
			assert_non_null(h1);
			assert_memory_equal(h1, cases[i].prefix, strlen(cases[i].prefix));
			assert_int_equal(sora_password_stored_scheme(h1, &s, &error), 0);
			assert_int_equal(s, cases[i].scheme);
			assert_true(verify_s(h1, pws[j]));
			assert_false(verify_s(h1, "s3cret pasS"));
			if (pws[j][0] != '\0')
				assert_false(verify_s(h1, ""));

			/* A fresh salt each time, except for unsalted SHA512. */
			if (cases[i].scheme == SORA_PW_ARGON2ID || cases[i].scheme == SORA_PW_ARGON2I) {
				/* Argon2 at 32-64 MiB per hash: one round trip is enough. */
				free(h1);
				continue;
			}
			assert_int_equal(sora_password_hash(cases[i].scheme, pws[j], strlen(pws[j]),
							    4, &h2, &error), 0);
			if (cases[i].scheme == SORA_PW_SHA512)
				assert_string_equal(h1, h2);
			else
				assert_string_not_equal(h1, h2);
			free(h1);
			free(h2);
		}
	}
}

static void test_hash_bcrypt_cost(void **state)
{
	const char *error = NULL;
	char *h = NULL;

	/* 0 means the default cost, 12. */
	assert_int_equal(sora_password_hash(SORA_PW_BCRYPT, "pw", 2, 0, &h, &error), 0);
	assert_memory_equal(h, "{BLF-CRYPT}$2y$12$", 18);
	assert_int_equal(strlen(h), 11 + 60);
	assert_true(verify_ok(h, "pw", 2, 12, NULL));
	free(h);
	h = NULL;
	assert_int_equal(sora_password_hash(SORA_PW_BCRYPT, "pw", 2, 5, &h, &error), 0);
	assert_memory_equal(h, "{BLF-CRYPT}$2y$05$", 18);
	free(h);

	h = NULL;
	error = NULL;
	assert_int_equal(sora_password_hash(SORA_PW_BCRYPT, "pw", 2, 3, &h, &error), -1);
	assert_null(h);
	assert_non_null(strstr(error, "cost"));
	error = NULL;
	assert_int_equal(sora_password_hash(SORA_PW_BCRYPT, "pw", 2, 32, &h, &error), -1);
	assert_non_null(error);
	error = NULL;
	assert_int_equal(sora_password_hash((enum sora_pw_scheme)42, "pw", 2, 4, &h, &error), -1);
	assert_non_null(error);
	assert_null(h);
}

static void test_rehash(void **state)
{
	const char *error = NULL;
	char *h = NULL;
	bool rehash;

	assert_int_equal(sora_password_hash(SORA_PW_BCRYPT, "pw", 2, 4, &h, &error), 0);
	/* Stored cost 4 against configured 5: rehash. */
	rehash = false;
	assert_true(verify_ok(h, "pw", 2, 5, &rehash));
	assert_true(rehash);
	/* Configured 4 (equal) or lower: no rehash. */
	rehash = true;
	assert_true(verify_ok(h, "pw", 2, 4, &rehash));
	assert_false(rehash);
	/* 0 means the default cost 12, which is above 4. */
	rehash = false;
	assert_true(verify_ok(h, "pw", 2, 0, &rehash));
	assert_true(rehash);
	/* A wrong password never asks for a rehash. */
	rehash = true;
	assert_false(verify_ok(h, "pX", 2, 5, &rehash));
	assert_false(rehash);
	/* needs_rehash_r may be NULL. */
	assert_true(verify_ok(h, "pw", 2, 5, NULL));
	free(h);

	/* The Dovecot cost-5 vector against cost 5 and 12. */
	rehash = true;
	assert_true(verify_ok(dovecot_vectors[0].hash, PW1, strlen(PW1), 5, &rehash));
	assert_false(rehash);
	assert_true(verify_ok(dovecot_vectors[0].hash, PW1, strlen(PW1), 12, &rehash));
	assert_true(rehash);

	/* Other schemes never ask for one, whatever the configured cost. */
	h = NULL;
	assert_int_equal(sora_password_hash(SORA_PW_SSHA512, "pw", 2, 4, &h, &error), 0);
	rehash = true;
	assert_true(verify_ok(h, "pw", 2, 31, &rehash));
	assert_false(rehash);
	free(h);
}

/* Each of these must give -1 with an error, never a match and never a
 * crash. The expected text is a fragment of the error message. */
static void test_malformed(void **state)
{
	static const struct {
		const char *stored;
		const char *error_part;
	} cases[] = {
		{ "", "empty" },
		{ "plaintext-password", "no {SCHEME}" },
		{ "{SSHA512", "unterminated" },
		{ "{FOO}bar", "unsupported password scheme" },
		{ "{PLAIN}secret", "unsupported password scheme" },
		{ "{MD5-CRYPT}$1$abcdefgh$abcdefghijklmnopqrstuv", "unsupported password scheme" },
		{ "{}", "unsupported password scheme" },
		{ "{SSHA512}", "too short" },
		/* Truncated base64: too short to hold the digest, or cut
		 * mid-quantum. */
		{ "{SSHA512}qiV2EX70xec", "too short" },
		{ "{SSHA512}qiV2EX70xecKAXTUj6uTSnzryctEJbs1NJCuxsXJvZkVfa2RSmJUyiXyyDnz2vB/Y2vHv54Uz8HSWqT9w/PxoQGq7a", "base64" },
		{ "{SSHA512}qiV2EX70xecKAXTUj6uTSnzryctEJbs1NJCuxsXJvZkVfa2RSmJUyiXyyDnz2vB/Y2vHv54Uz8HSWqT9w/PxoQGq7", "base64" },
		/* Exactly the digest, no salt. */
		{ "{SSHA512}xyu2IccEDPS2R0BjqaeXJpDiUvNa2+fPr/Wx7iMW7+c4LnI9QeATor+8M8MAfFDFhH0hqInM6DhTbqxyeAjeQA==", "too short" },
		{ "{SSHA512}qiV2EX70xecKAXTUj6uTSnzryctEJbs1NJCuxsXJvZkVfa2RSmJUyiXyyDnz2vB/Y2vHv54Uz8HSWqT9w/PxoQGq7as= ", "base64" },
		{ "{SSHA512}!!!!", "base64" },
		{ "{SSHA512.XYZ}qiV2", "encoding suffix" },
		{ "{SSHA512.HEX}f90", "hex" },
		{ "{SSHA512.HEX}zz0986ac096806673e17298297f4876519a4f94ba1653e7ea67a8d9cf9300c1dbf2b96935891661cf88571cce45a3510348d4d4f26c1e0f4e7bdd7f41e21ef49f19a70c5", "hex" },
		{ "{SHA512}xyu2IccEDPS2R0BjqaeXJpDiUvNa2+fPr/Wx7iMW7+c4LnI9QeATor+8M8MAfFDFhH0hqInM6DhTbqxyeAjeQA=", "base64" },
		{ "{SHA512}xyu2IccEDPS2R0BjqaeXJpDiUvNa2+fPr/Wx7iMW7+c4LnI9QeATor+8M8MAfFDFhH0hqInM6DhTbqxyeAjeQAAA", "wrong length" },
		{ "{SHA512.HEX}c72bb621c7040cf4b6474063a9a7972690e252f35adbe7cfaff5b1ee2316efe7382e723d41e013a2bfbc33c3007c50c5847d21a889cce838536eac727808de", "wrong length" },
		{ "{SSHA256}E4xv6C5JwFTjx00uSzAOdcDGqRLrus3conR9w8IL", "too short" },
		{ "{BLF-CRYPT.HEX}$2y$05$gdqObZFLu71yvIRew9A8SeC3q5GT44wPCr70jKY.hbQW4Mv3r.8KK", "suffix" },
		/* bcrypt with garbage. */
		{ "$2y$05$garbage", "bcrypt hash is malformed" },
		{ "{BLF-CRYPT}$2y$05$", "bcrypt hash is malformed" },
		{ "{BLF-CRYPT}$2y$05$!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", "alphabet" },
		{ "{BLF-CRYPT}$2y$05$gdqObZFLu71yvIRew9A8SeC3q5GT44wPCr70jKY.hbQW4Mv3r.8K", "bcrypt hash is malformed" },
		{ "{BLF-CRYPT}$2y$05$gdqObZFLu71yvIRew9A8SeC3q5GT44wPCr70jKY.hbQW4Mv3r.8KKx", "bcrypt hash is malformed" },
		{ "{BLF-CRYPT}$2y$03$gdqObZFLu71yvIRew9A8SeC3q5GT44wPCr70jKY.hbQW4Mv3r.8KK", "cost" },
		{ "{BLF-CRYPT}$2y$32$gdqObZFLu71yvIRew9A8SeC3q5GT44wPCr70jKY.hbQW4Mv3r.8KK", "cost" },
		{ "{BLF-CRYPT}$2y$5x$gdqObZFLu71yvIRew9A8SeC3q5GT44wPCr70jKY.hbQW4Mv3r.8KK", "bcrypt hash is malformed" },
		{ "{BLF-CRYPT}$2x$05$gdqObZFLu71yvIRew9A8SeC3q5GT44wPCr70jKY.hbQW4Mv3r.8KK", "bcrypt hash is malformed" },
		{ "{BLF-CRYPT}$2y$05$gdqObZFLu71yvIRew9A8SfC3q5GT44wPCr70jKY.hbQW4Mv3r.8KK", "non-canonical" },
		{ "{BLF-CRYPT}$6$4s/p0p1e3eU1/2Io$osn6fxCD1wdEEuPpGhV/H6fNu8KSo.urnwhXfTHhsTQ4kTbZANuI2k2EjLWpJPN3/HqCdq4Bp.aimjy5vQeAs1", "bcrypt hash is malformed" },
		{ "$2y$05$gdqObZFLu71yvIRew9A8Se\n3q5GT44wPCr70jKY.hbQW4Mv3r.8KK", "alphabet" },
		/* SHA-crypt. */
		{ "{SHA512-CRYPT}$2y$05$gdqObZFLu71yvIRew9A8SeC3q5GT44wPCr70jKY.hbQW4Mv3r.8KK", "$6$" },
		{ "{SHA256-CRYPT}$6$4s/p0p1e3eU1/2Io$osn6fxCD1wdEEuPpGhV/H6fNu8KSo.urnwhXfTHhsTQ4kTbZANuI2k2EjLWpJPN3/HqCdq4Bp.aimjy5vQeAs1", "$5$" },
		{ "$6$4s/p0p1e3eU1/2Io$osn6fxCD1wdEEuPpGhV", "wrong length" },
		{ "$6$4s/p0p1e3eU1/2Io", "no '$'" },
		{ "$6$", "no '$'" },
		{ "$6$4s/p0p1e3eU1/2IoXX$osn6fxCD1wdEEuPpGhV/H6fNu8KSo.urnwhXfTHhsTQ4kTbZANuI2k2EjLWpJPN3/HqCdq4Bp.aimjy5vQeAs1", "longer than 16" },
		{ "$6$rounds=999$4s/p0p1e3eU1/2Io$osn6fxCD1wdEEuPpGhV/H6fNu8KSo.urnwhXfTHhsTQ4kTbZANuI2k2EjLWpJPN3/HqCdq4Bp.aimjy5vQeAs1", "rounds" },
		{ "$6$rounds=01000$4s/p0p1e3eU1/2Io$osn6fxCD1wdEEuPpGhV/H6fNu8KSo.urnwhXfTHhsTQ4kTbZANuI2k2EjLWpJPN3/HqCdq4Bp.aimjy5vQeAs1", "rounds" },
		{ "$6$rounds=1000000000$4s/p0p1e3eU1/2Io$osn6fxCD1wdEEuPpGhV/H6fNu8KSo.urnwhXfTHhsTQ4kTbZANuI2k2EjLWpJPN3/HqCdq4Bp.aimjy5vQeAs1", "rounds" },
		{ "$6$rounds=$4s/p0p1e3eU1/2Io$osn6fxCD1wdEEuPpGhV/H6fNu8KSo.urnwhXfTHhsTQ4kTbZANuI2k2EjLWpJPN3/HqCdq4Bp.aimjy5vQeAs1", "rounds" },
		{ "$6$4s/p0p1e3eU1/2Io$osn6fxCD1wdEEuPpGhV/H6fNu8KSo.urnwhXfTHhsTQ4kTbZANuI2k2EjLWpJPN3/HqCdq4Bp.aimjy5vQeAs!", "alphabet" },
		/* crypt_r refuses ':' (and ";*!\\", spaces, controls) in a
		 * SHA-crypt salt. */
		{ "$5$ab:cd$z8kaWGCNhxXyLq3Tflb8yvtUwT5EEwEQxbalNGxl/ZD", "crypt_r" },
		{ "$6$ab cd$osn6fxCD1wdEEuPpGhV/H6fNu8KSo.urnwhXfTHhsTQ4kTbZANuI2k2EjLWpJPN3/HqCdq4Bp.aimjy5vQeAs1", "crypt_r" },
		/* Argon2. */
		{ "{ARGON2I}$argon2id$v=19$m=65536,t=3,p=1$GSjIMiTnZpNEzOmdk4Mjhg$M07dc1YA7A4BJTDmsGHdr6l0keD18j9861CKvJa2fPk", "$argon2i$" },
		{ "{ARGON2ID}$argon2i$v=19$m=32768,t=4,p=1$XWI2Bu42/liWW3ihiTM0GQ$sWvyO7Q5oVQGyjbkt+7NElzVaQh9masFL1t/2JJxpOY", "$argon2id$" },
		{ "$argon2id$v=16$m=4096,t=2,p=1$c29tZXNhbHRzYWx0$M+OdSVCbIYUHLehFA8Q6kw4kvSOJXdLsC3xNMpXTj0c", "version 19" },
		{ "$argon2id$m=4096,t=2,p=1$c29tZXNhbHRzYWx0$M+OdSVCbIYUHLehFA8Q6kw4kvSOJXdLsC3xNMpXTj0c", "version 19" },
		{ "$argon2id$v=19$m=4096,t=2,p=1$c29tZXNhbHRzYWx0$", "malformed" },
		{ "$argon2id$v=19$m=4096,t=2,p=1$c29tZXNhbHRzYWx0", "malformed" },
		{ "$argon2id$v=19$m=4096,t=2$c29tZXNhbHRzYWx0$uyX55iimwWnnAdQ5xbWQ3n32eO7PrBHEng4LxW5iy80", "malformed" },
		{ "$argon2id$v=19$m=4096,t=2,p=4$c29tZXNhbHRzYWx0$uyX55iimwWnnAdQ5xbWQ3n32eO7PrBHEng4LxW5iy80=", "malformed" },
		{ "$argon2id$v=19$m=-1,t=2,p=4$c29tZXNhbHRzYWx0$uyX55iimwWnnAdQ5xbWQ3n32eO7PrBHEng4LxW5iy80", "malformed" },
		{ "$argon2id$v=19$m=99999999999,t=2,p=4$c29tZXNhbHRzYWx0$uyX55iimwWnnAdQ5xbWQ3n32eO7PrBHEng4LxW5iy80", "malformed" },
		{ "$argon2id$v=19$m=4194304,t=2,p=4$c29tZXNhbHRzYWx0$uyX55iimwWnnAdQ5xbWQ3n32eO7PrBHEng4LxW5iy80", "1 GiB" },
		{ "$argon2id$v=19$m=4096,t=0,p=4$c29tZXNhbHRzYWx0$uyX55iimwWnnAdQ5xbWQ3n32eO7PrBHEng4LxW5iy80", "zero" },
		{ "$argon2id$v=19$m=4096,t=2,p=0$c29tZXNhbHRzYWx0$uyX55iimwWnnAdQ5xbWQ3n32eO7PrBHEng4LxW5iy80", "zero" },
		/* Well-formed in shape but refused by libsodium: m below 8*p,
		 * and a salt shorter than 8 bytes. */
		{ "$argon2id$v=19$m=8,t=2,p=4$c29tZXNhbHRzYWx0$uyX55iimwWnnAdQ5xbWQ3n32eO7PrBHEng4LxW5iy80", "libsodium" },
		{ "$argon2id$v=19$m=4096,t=2,p=4$c29t$uyX55iimwWnnAdQ5xbWQ3n32eO7PrBHEng4LxW5iy80", "libsodium" },
		/* {CRYPT} forms we do not take. */
		{ "{CRYPT}$1$abcdefgh$abcdefghijklmnopqrstuv", "not supported" },
		{ "{CRYPT}abZ/1234567890", "not supported" },
		{ "{CRYPT}$y$j9T$abc$def", "not supported" },
		{ "{CRYPT}$argon2id$v=19$m=4096,t=2,p=4$c29tZXNhbHRzYWx0$uyX55iimwWnnAdQ5xbWQ3n32eO7PrBHEng4LxW5iy80", "not supported" },
	};
	const char *passwords[] = { PW1, "", "password" };

	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		for (size_t j = 0; j < N_ELEMENTS(passwords); j++) {
			const char *error = NULL;
			bool match = true, rehash = true;
			int ret = sora_password_verify(cases[i].stored, passwords[j],
						       strlen(passwords[j]), 12, &match,
						       &rehash, &error);

			if (ret != -1 || error == NULL || strstr(error, cases[i].error_part) == NULL)
				print_error("case %zu \"%s\": ret %d error \"%s\"\n", i,
					    cases[i].stored, ret, error != NULL ? error : "(null)");
			assert_int_equal(ret, -1);
			assert_non_null(error);
			assert_non_null(strstr(error, cases[i].error_part));
			assert_false(match);
			assert_false(rehash);
		}
		/* The cheap check for imports refuses the same hashes, but
		 * for Argon2 parameters only libsodium itself can judge. */
		if (strstr(cases[i].error_part, "libsodium") == NULL) {
			enum sora_pw_scheme scheme;
			const char *error = NULL;

			if (sora_password_stored_check(cases[i].stored, &scheme, &error) != -1)
				print_error("stored_check accepted case %zu \"%s\"\n", i,
					    cases[i].stored);
			assert_int_equal(sora_password_stored_check(cases[i].stored, &scheme,
								    &error), -1);
			assert_non_null(error);
		}
	}

	/* A NULL stored hash. */
	const char *error = NULL;
	bool match = true;
	assert_int_equal(sora_password_verify(NULL, "x", 1, 0, &match, NULL, &error), -1);
	assert_false(match);
	assert_non_null(error);
	/* A broken row is reported even when the password is over-long. */
	char *big = calloc(1, SORA_PW_MAX_PASSWORD_LEN + 2);
	assert_non_null(big);
	memset(big, 'x', SORA_PW_MAX_PASSWORD_LEN + 1);
	error = NULL;
	assert_int_equal(sora_password_verify("{SSHA512}qiV2EX70xec", big, strlen(big), 0,
					      &match, NULL, &error), -1);
	assert_non_null(error);
	free(big);
}

/* Everything that verifies passes the import check, with the scheme that
 * sora_password_stored_scheme() reports; hashes made here too. */
static void test_stored_check_accepts_good_hashes(void **state)
{
	static const enum sora_pw_scheme schemes[] = {
		SORA_PW_BCRYPT, SORA_PW_SHA512_CRYPT, SORA_PW_SHA256_CRYPT, SORA_PW_SSHA512,
		SORA_PW_SHA512, SORA_PW_SSHA256, SORA_PW_ARGON2ID, SORA_PW_ARGON2I,
	};
	const struct vector *all[N_ELEMENTS(dovecot_vectors) + N_ELEMENTS(reference_vectors)];
	enum sora_pw_scheme scheme, expect;
	const char *error = NULL;
	size_t n = 0;

	for (size_t i = 0; i < N_ELEMENTS(dovecot_vectors); i++)
		all[n++] = &dovecot_vectors[i];
	for (size_t i = 0; i < N_ELEMENTS(reference_vectors); i++)
		all[n++] = &reference_vectors[i];
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(sora_password_stored_scheme(all[i]->hash, &expect, &error), 0);
		if (sora_password_stored_check(all[i]->hash, &scheme, &error) != 0)
			print_error("stored_check(%s): %s\n", all[i]->hash, error);
		assert_int_equal(sora_password_stored_check(all[i]->hash, &scheme, &error), 0);
		assert_int_equal(scheme, expect);
	}
	for (size_t i = 0; i < N_ELEMENTS(schemes); i++) {
		char *h = NULL;

		assert_int_equal(sora_password_hash(schemes[i], "pw", 2, 4, &h, &error), 0);
		assert_int_equal(sora_password_stored_check(h, &scheme, &error), 0);
		assert_int_equal(scheme, schemes[i]);
		free(h);
	}
	assert_int_equal(sora_password_stored_check(NULL, &scheme, &error), -1);
}

/* The label names the scheme for messages and never shows salt or digest. */
static void test_scheme_label(void **state)
{
	static const struct {
		const char *stored;
		const char *label;
	} cases[] = {
		{ "{MD5-CRYPT}$1$YuIYkMKM$KwlsjqHPikGQq6k6tF6bl0", "{MD5-CRYPT}" },
		{ "{PLAIN}secret", "{PLAIN}" },
		{ "{SSHA512.HEX}abcd", "{SSHA512.HEX}" },
		{ "{SHA512-CRYPT}$6$4s/p0p1e3eU1/2Io$osn6", "{SHA512-CRYPT}" },
		{ "{CRYPT}$1$YuIYkMKM$KwlsjqHPikGQq6k6tF6bl0", "{CRYPT}$1$" },
		{ "{crypt}$y$j9T$abc$def", "{crypt}$y$" },
		{ "{CRYPT}abZ/1234567890", "{CRYPT}" },
		{ "$y$j9T$abc$def", "$y$" },
		{ "$2y$05$gdqObZFLu71yvIRew9A8SeC3q5GT44wPCr70jKY.hbQW4Mv3r.8KK", "$2y$" },
		/* An unknown "$...$" could be part of a plaintext password. */
		{ "$hunter2$x", "(no scheme prefix)" },
		{ "plaintext-password", "(no scheme prefix)" },
		{ "{pass word}x", "(a scheme prefix with odd characters)" },
		{ "{SSHA512", "(a scheme prefix that is unterminated or too long)" },
		{ "{ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJ}x",
		  "(a scheme prefix that is unterminated or too long)" },
		{ "", "(empty)" },
	};
	char buf[64];

	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		assert_ptr_equal(sora_password_scheme_label(cases[i].stored, buf, sizeof(buf)),
				 buf);
		if (strcmp(buf, cases[i].label) != 0)
			print_error("case %zu \"%s\": \"%s\"\n", i, cases[i].stored, buf);
		assert_string_equal(buf, cases[i].label);
	}
	assert_string_equal(sora_password_scheme_label(NULL, buf, sizeof(buf)), "(empty)");
	/* Cut to the buffer, always terminated. */
	assert_string_equal(sora_password_scheme_label("{MD5-CRYPT}$1$x$y", buf, 5), "{MD5");
	assert_string_equal(sora_password_scheme_label("{CRYPT}$1$x$y", buf, 8), "{CRYPT}");
}

/* Every prefix of every well-formed hash is either reported as malformed
 * or fails to match; none may crash or verify. */
static void test_truncated_prefixes(void **state)
{
	const struct vector *all[N_ELEMENTS(dovecot_vectors) + N_ELEMENTS(reference_vectors)];
	size_t n = 0;

	for (size_t i = 0; i < N_ELEMENTS(dovecot_vectors); i++)
		all[n++] = &dovecot_vectors[i];
	for (size_t i = 0; i < N_ELEMENTS(reference_vectors); i++)
		all[n++] = &reference_vectors[i];

	for (size_t i = 0; i < n; i++) {
		const char *hash = all[i]->hash;
		size_t len = strlen(hash);
		size_t unpadded = len;

		while (unpadded > 0 && hash[unpadded - 1] == '=')
			unpadded--;

		/* Argon2 at 32-64 MiB and 100 ms per try is too slow to
		 * retry at every length; the 4 MiB reference vectors cover
		 * the Argon2 parser. */
		if (strstr(hash, "$argon2") != NULL && strstr(hash, "m=4096") == NULL)
			continue;
		for (size_t cut = 0; cut < len; cut++) {
			char *prefix = strndup(hash, cut);
			const char *error = NULL;
			bool match = true;
			int ret;

			assert_non_null(prefix);
			ret = sora_password_verify(prefix, all[i]->password,
						   strlen(all[i]->password), 12, &match, NULL, &error);
			/* Only dropping all base64 padding keeps the same
			 * bytes: unpadded base64 is accepted on purpose. */
			if (cut == unpadded && unpadded < len) {
				assert_int_equal(ret, 0);
				assert_true(match);
			} else if (ret == 0) {
				if (match)
					print_error("prefix \"%s\" matched\n", prefix);
				assert_false(match);
			} else {
				assert_non_null(error);
			}
			free(prefix);
		}
	}
}

static void test_nul_bytes(void **state)
{
	static const char with_nul[] = "abc\0def";
	const size_t with_nul_len = sizeof(with_nul) - 1;
	const enum sora_pw_scheme crypt_schemes[] = {
		SORA_PW_BCRYPT, SORA_PW_SHA512_CRYPT, SORA_PW_SHA256_CRYPT,
	};
	const enum sora_pw_scheme byte_schemes[] = {
		SORA_PW_SSHA512, SORA_PW_SHA512, SORA_PW_SSHA256, SORA_PW_ARGON2ID,
	};

	for (size_t i = 0; i < N_ELEMENTS(crypt_schemes); i++) {
		const char *error = NULL;
		char *h = NULL;

		/* crypt_r cannot carry the NUL: refused, not cut to "abc". */
		assert_int_equal(sora_password_hash(crypt_schemes[i], with_nul, with_nul_len,
						    4, &h, &error), -1);
		assert_null(h);
		assert_non_null(strstr(error, "NUL"));

		/* A hash of "abc" must not accept "abc\0def". */
		assert_int_equal(sora_password_hash(crypt_schemes[i], "abc", 3, 4, &h, &error), 0);
		assert_true(verify_ok(h, "abc", 3, 4, NULL));
		assert_false(verify_ok(h, with_nul, with_nul_len, 4, NULL));
		assert_false(verify_ok(h, "abc\0", 4, 4, NULL));
		free(h);
	}
	for (size_t i = 0; i < N_ELEMENTS(byte_schemes); i++) {
		const char *error = NULL;
		char *h = NULL;

		/* Schemes that take pointer + length keep every byte. */
		assert_int_equal(sora_password_hash(byte_schemes[i], with_nul, with_nul_len,
						    4, &h, &error), 0);
		assert_true(verify_ok(h, with_nul, with_nul_len, 4, NULL));
		assert_false(verify_ok(h, "abc", 3, 4, NULL));
		assert_false(verify_ok(h, "abc\0dee", with_nul_len, 4, NULL));
		free(h);
	}
}

static void test_length_limits(void **state)
{
	char *big = malloc(SORA_PW_MAX_PASSWORD_LEN + 1);
	const char *error = NULL;
	char *h = NULL;

	assert_non_null(big);
	memset(big, 'p', SORA_PW_MAX_PASSWORD_LEN + 1);

	/* crypt_r takes at most 511 bytes: refused at 512, fine at 511. */
	assert_int_equal(sora_password_hash(SORA_PW_SHA512_CRYPT, big,
					    SORA_PW_CRYPT_MAX_PASSWORD_LEN + 1, 4, &h, &error), -1);
	assert_non_null(strstr(error, "511"));
	assert_int_equal(sora_password_hash(SORA_PW_SHA512_CRYPT, big,
					    SORA_PW_CRYPT_MAX_PASSWORD_LEN, 4, &h, &error), 0);
	assert_true(verify_ok(h, big, SORA_PW_CRYPT_MAX_PASSWORD_LEN, 4, NULL));
	assert_false(verify_ok(h, big, SORA_PW_CRYPT_MAX_PASSWORD_LEN + 1, 4, NULL));
	free(h);
	h = NULL;

	/* The overall cap: 4096 bytes hash and verify, 4097 do not. */
	assert_int_equal(sora_password_hash(SORA_PW_SSHA512, big, SORA_PW_MAX_PASSWORD_LEN,
					    4, &h, &error), 0);
	assert_true(verify_ok(h, big, SORA_PW_MAX_PASSWORD_LEN, 4, NULL));
	assert_false(verify_ok(h, big, SORA_PW_MAX_PASSWORD_LEN + 1, 4, NULL));
	free(h);
	h = NULL;
	error = NULL;
	assert_int_equal(sora_password_hash(SORA_PW_SSHA512, big, SORA_PW_MAX_PASSWORD_LEN + 1,
					    4, &h, &error), -1);
	assert_null(h);
	assert_non_null(error);

	/* A NULL password with length 0 is the empty password. */
	assert_int_equal(sora_password_hash(SORA_PW_SSHA256, NULL, 0, 4, &h, &error), 0);
	assert_true(verify_ok(h, NULL, 0, 4, NULL));
	assert_true(verify_ok(h, "", 0, 4, NULL));
	free(h);
	h = NULL;
	assert_int_equal(sora_password_hash(SORA_PW_SSHA256, NULL, 3, 4, &h, &error), -1);
	free(big);
}

/* Runs argv, returns its exit status (or -1), output into out. */
static int run_capture(char *const argv[], char *out, size_t out_size)
{
	int fds[2];
	size_t used = 0;
	int status;
	pid_t pid;

	if (pipe(fds) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		dup2(fds[1], STDERR_FILENO);
		close(fds[0]);
		close(fds[1]);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		ssize_t r = read(fds[0], out + used, out_size - 1 - used);

		if (r <= 0)
			break;
		used += (size_t)r;
		if (used == out_size - 1)
			break;
	}
	out[used] = '\0';
	close(fds[0]);
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* The hashes we create must also verify in Dovecot (`doveadm pw -t`), so
 * that a migration can go both ways. Skipped when doveadm is not
 * installed. */
static void test_dovecot_accepts_ours(void **state)
{
	static const char doveadm[] = "/usr/bin/doveadm";
	const enum sora_pw_scheme schemes[] = {
		SORA_PW_BCRYPT, SORA_PW_SHA512_CRYPT, SORA_PW_SHA256_CRYPT, SORA_PW_SSHA512,
		SORA_PW_SHA512, SORA_PW_SSHA256, SORA_PW_ARGON2ID, SORA_PW_ARGON2I,
	};
	char pw[] = "Sora test " PW3;
	char wrong[] = "Sora test pw";

	if (access(doveadm, X_OK) != 0)
		skip();
	for (size_t i = 0; i < N_ELEMENTS(schemes); i++) {
		const char *error = NULL;
		char *h = NULL;
		char out[2048];

		assert_int_equal(sora_password_hash(schemes[i], pw, strlen(pw), 4, &h, &error), 0);
		char *ok_argv[] = { (char *)doveadm, "pw", "-t", h, "-p", pw, NULL };
		int rc = run_capture(ok_argv, out, sizeof(out));
		if (rc != 0 || strstr(out, "(verified)") == NULL)
			print_error("doveadm pw -t %s: rc %d: %s\n", h, rc, out);
		assert_int_equal(rc, 0);
		assert_non_null(strstr(out, "(verified)"));

		char *bad_argv[] = { (char *)doveadm, "pw", "-t", h, "-p", wrong, NULL };
		rc = run_capture(bad_argv, out, sizeof(out));
		assert_int_not_equal(rc, 0);
		assert_null(strstr(out, "(verified)"));
		free(h);
	}
}

struct thread_job {
	const char *hash;
	const char *password;
	int matches;
	int mismatches;
};

static void *verify_thread(void *arg)
{
	struct thread_job *job = arg;

	for (int i = 0; i < 20; i++) {
		const char *error = NULL;
		bool match = false;

		if (sora_password_verify(job->hash, job->password, strlen(job->password), 4,
					 &match, NULL, &error) == 0 && match)
			job->matches++;
		if (sora_password_verify(job->hash, "nope", 4, 4, &match, NULL, &error) == 0 &&
		    !match)
			job->mismatches++;
	}
	return NULL;
}

/* Worker threads verify concurrently: crypt_r with private crypt_data,
 * OpenSSL digests, the one-time libsodium initialisation. */
static void test_threads(void **state)
{
	const char *hashes[] = {
		"{BLF-CRYPT}$2y$04$eegkyvX/5cOuWruIiK7s6.kNAynxWtoSovyHEgSPpAV068pfPtexS",
		dovecot_vectors[3].hash, dovecot_vectors[1].hash, dovecot_vectors[8].hash,
	};
	const char *passwords[] = { "x", PW1, PW1, PW1 };
	struct thread_job jobs[4];
	pthread_t threads[4];

	for (int i = 0; i < 4; i++) {
		jobs[i] = (struct thread_job){ hashes[i], passwords[i], 0, 0 };
		assert_int_equal(pthread_create(&threads[i], NULL, verify_thread, &jobs[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(threads[i], NULL), 0);
		assert_int_equal(jobs[i].matches, 20);
		assert_int_equal(jobs[i].mismatches, 20);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scheme_parse),
		cmocka_unit_test(test_stored_scheme),
		cmocka_unit_test(test_dovecot_vectors),
		cmocka_unit_test(test_reference_vectors),
		cmocka_unit_test(test_bare_and_crypt_prefix),
		cmocka_unit_test(test_bcrypt_72_bytes),
		cmocka_unit_test(test_hash_roundtrip),
		cmocka_unit_test(test_hash_bcrypt_cost),
		cmocka_unit_test(test_rehash),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_stored_check_accepts_good_hashes),
		cmocka_unit_test(test_scheme_label),
		cmocka_unit_test(test_truncated_prefixes),
		cmocka_unit_test(test_nul_bytes),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_dovecot_accepts_ours),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
