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
 * bench-password --ceiling T --bcrypt-cost C [--seconds S] instead runs T
 * threads that each verify one bcrypt hash of cost C for S seconds and
 * prints the total verifications per second: the machine's ceiling for
 * logins with such hashes when T worker threads do nothing else
 * (tests/bench/proxy_bench.py compares the proxy's logins/s with it).
 *
 * What the numbers mean for capacity: one worker thread can check about
 * that many logins per second for users stored with that scheme; the auth
 * worker pool scales it by the number of cores. */
#include <openssl/evp.h>
#include <pthread.h>
#include <sys/resource.h>
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

struct ceiling_thread {
	pthread_t tid;
	const char *hash;
	int cost;
	double seconds;
	unsigned long n;
	int failed;
};

static void *ceiling_run(void *arg)
{
	struct ceiling_thread *t = arg;
	double start = now_seconds();
	const char *error = NULL;

	do {
		bool match = false;

		if (sora_password_verify(t->hash, password, sizeof(password) - 1, t->cost,
					 &match, NULL, &error) < 0 || !match) {
			t->failed = 1;
			return NULL;
		}
		t->n++;
	} while (now_seconds() - start < t->seconds);
	return NULL;
}

static int bench_ceiling(int threads, int cost, double seconds)
{
	struct ceiling_thread t[64];
	const char *error = NULL;
	char *hash = NULL;
	unsigned long total = 0;
	double start, elapsed;
	struct rusage ru0, ru;
	int ret = 0;

	if (sora_password_hash(SORA_PW_BCRYPT, password, sizeof(password) - 1, cost, &hash,
			       &error) < 0) {
		fprintf(stderr, "bench-password: hashing bcrypt failed: %s\n", error);
		return 1;
	}
	getrusage(RUSAGE_SELF, &ru0);
	start = now_seconds();
	for (int i = 0; i < threads; i++) {
		t[i] = (struct ceiling_thread){ .hash = hash, .cost = cost, .seconds = seconds };
		if (pthread_create(&t[i].tid, NULL, ceiling_run, &t[i]) != 0) {
			fprintf(stderr, "bench-password: pthread_create failed\n");
			exit(1);
		}
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i].tid, NULL);
		total += t[i].n;
		ret |= t[i].failed;
	}
	elapsed = now_seconds() - start;
	free(hash);
	getrusage(RUSAGE_SELF, &ru);
	if (ret) {
		fprintf(stderr, "bench-password: bcrypt did not verify\n");
		return 1;
	}
	/* CPU seconds per verification: what a login costs at least,
	 * whatever else shares the machine. */
	printf("bcrypt cost %d, %d threads: %lu verifies in %.2f s, %.4f CPU s each: "
	       "%.1f verifies/s\n", cost, threads, total, elapsed,
	       ((double)(ru.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
		(ru.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
		(double)(ru.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		(ru.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6) / (double)total,
	       (double)total / elapsed);
	return 0;
}

int main(int argc, char **argv)
{
	double seconds = 2.0;
	int ret = 0, threads = 0, cost = 10;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
			char *end;

			seconds = strtod(argv[++i], &end);
			if (*end != '\0' || seconds <= 0 || seconds > 600) {
				fprintf(stderr, "bench-password: --seconds wants 0 < S <= 600\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--ceiling") == 0 && i + 1 < argc) {
			threads = atoi(argv[++i]);
			if (threads < 1 || threads > 64) {
				fprintf(stderr, "bench-password: --ceiling wants 1..64 threads\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--bcrypt-cost") == 0 && i + 1 < argc) {
			cost = atoi(argv[++i]);
			if (cost < 4 || cost > 31) {
				fprintf(stderr, "bench-password: --bcrypt-cost wants 4..31\n");
				return 2;
			}
		} else {
			fprintf(stderr, "usage: bench-password [--seconds S] "
				"[--ceiling THREADS [--bcrypt-cost C]]\n");
			return 2;
		}
	}

	if (threads > 0)
		return bench_ceiling(threads, cost, seconds);
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
