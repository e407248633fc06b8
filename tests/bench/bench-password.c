/* Password verification throughput, single-threaded, per scheme.
 *
 * Build and run from the repository root:
 *   make BUILD=build build/libsora-common.a
 *   cc -std=gnu11 -O2 -D_GNU_SOURCE -I. tests/bench/bench-password.c \
 *      build/libsora-common.a $(pkg-config --libs libsodium openssl) \
 *      -lcrypt -lpthread -o build/bench-password
 *   build/bench-password [--seconds S]
 *
 * For each scheme it creates one hash with sora_password_hash, then calls
 * sora_password_verify with the right password for about S seconds (default
 * 2, at least 3 calls) and prints verifications per second. Every call must
 * match, or the program exits 1, so a broken verifier cannot post a good
 * number. The last row is raw SHA-512 over a 64-byte input through OpenSSL's
 * EVP, the figure `openssl speed -evp sha512` gives for 64-byte blocks, to
 * show how much of SSHA512's cost is the digest itself.
 *
 * What the numbers mean for capacity: one worker thread can check about
 * that many logins per second for users stored with that scheme; the auth
 * worker pool scales it by the number of cores. */
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/auth/password.h"

struct bench_case {
	const char *label;
	const char *params;
	enum sora_pw_scheme scheme;
	int bcrypt_cost;
};

static const struct bench_case cases[] = {
	{ "bcrypt", "cost 12 (default)", SORA_PW_BCRYPT, 12 },
	{ "bcrypt", "cost 10", SORA_PW_BCRYPT, 10 },
	{ "bcrypt", "cost 5", SORA_PW_BCRYPT, 5 },
	{ "sha512-crypt", "5000 rounds", SORA_PW_SHA512_CRYPT, 0 },
	{ "sha256-crypt", "5000 rounds", SORA_PW_SHA256_CRYPT, 0 },
	{ "ssha512", "16-byte salt", SORA_PW_SSHA512, 0 },
	{ "sha512", "unsalted", SORA_PW_SHA512, 0 },
	{ "ssha256", "16-byte salt", SORA_PW_SSHA256, 0 },
	{ "argon2id", "t=2 m=64MiB (interactive)", SORA_PW_ARGON2ID, 0 },
	{ "argon2i", "t=4 m=32MiB (interactive)", SORA_PW_ARGON2I, 0 },
};

static const char password[] = "correct horse battery staple";

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_row(const char *label, const char *params, double per_second)
{
	printf("%-14s %-28s %14.1f %14.1f\n", label, params, per_second,
	       1e6 / per_second);
}

static int bench_case(const struct bench_case *c, double seconds)
{
	const char *error = NULL;
	char *hash = NULL;
	unsigned long n = 0;
	double start, elapsed;

	if (sora_password_hash(c->scheme, password, sizeof(password) - 1, c->bcrypt_cost,
			       &hash, &error) < 0) {
		fprintf(stderr, "bench-password: hashing %s failed: %s\n", c->label, error);
		return -1;
	}
	start = now_seconds();
	do {
		bool match = false;

		if (sora_password_verify(hash, password, sizeof(password) - 1, c->bcrypt_cost,
					 &match, NULL, &error) < 0 || !match) {
			fprintf(stderr, "bench-password: %s did not verify: %s\n", c->label,
				error != NULL ? error : "mismatch");
			free(hash);
			return -1;
		}
		n++;
		elapsed = now_seconds() - start;
	} while (elapsed < seconds || n < 3);
	print_row(c->label, c->params, (double)n / elapsed);
	free(hash);
	return 0;
}

static int bench_raw_sha512(double seconds)
{
	unsigned char in[64], out[EVP_MAX_MD_SIZE];
	unsigned long n = 0;
	double start, elapsed;

	memset(in, 'x', sizeof(in));
	start = now_seconds();
	do {
		/* Batches keep the clock reads out of the measurement. */
		for (int i = 0; i < 1000; i++) {
			if (EVP_Digest(in, sizeof(in), out, NULL, EVP_sha512(), NULL) != 1) {
				fprintf(stderr, "bench-password: EVP_Digest failed\n");
				return -1;
			}
		}
		n += 1000;
		elapsed = now_seconds() - start;
	} while (elapsed < seconds);
	print_row("raw SHA-512", "EVP, 64-byte input", (double)n / elapsed);
	return 0;
}

int main(int argc, char **argv)
{
	double seconds = 2.0;
	int ret = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
			char *end;

			seconds = strtod(argv[++i], &end);
			if (*end != '\0' || seconds <= 0 || seconds > 600) {
				fprintf(stderr, "bench-password: --seconds wants 0 < S <= 600\n");
				return 2;
			}
		} else {
			fprintf(stderr, "usage: bench-password [--seconds S]\n");
			return 2;
		}
	}

	printf("password verification, single thread, %.1f s per scheme\n", seconds);
	printf("%-14s %-28s %14s %14s\n", "scheme", "parameters", "verifies/s", "us/verify");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (bench_case(&cases[i], seconds) < 0)
			ret = 1;
		fflush(stdout);
	}
	if (bench_raw_sha512(seconds) < 0)
		ret = 1;
	return ret;
}
