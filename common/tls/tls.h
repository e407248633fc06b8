/* TLS server contexts for listeners.
 *
 * A struct sora_tls_ctx wraps an OpenSSL SSL_CTX built from a server's
 * tls_cert_file (full chain), tls_key_file and, with tls_verify, tls_ca_file.
 * TLS 1.2 is the minimum (1.3 with tls_min_version = "1.3"); buffers are
 * released while idle (SSL_MODE_RELEASE_BUFFERS).
 *
 * Reload (SIGHUP): sora_tls_ctx_reload() builds a new SSL_CTX from the same
 * files and swaps it in; handshakes that start afterwards use the new
 * certificate, established connections keep the context they started with
 * (SSL_CTX is reference counted). If the new files are bad the old context
 * stays and an error is returned.
 *
 * Thread safety: sora_tls_new_ssl() may be called from any loop thread while
 * the main thread reloads. */
#ifndef SORA_TLS_TLS_H
#define SORA_TLS_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

struct sora_server_config;
struct sora_tls_ctx;

/* Builds a context for a server that has tls or tls_use_starttls set.
 * On error returns -1 and writes a one-line reason into err. */
int sora_tls_ctx_create(const struct sora_server_config *srv, struct sora_tls_ctx **ctx_r,
			char *err, size_t errsize);
/* Rebuilds the SSL_CTX from the files named in srv and swaps it in. */
int sora_tls_ctx_reload(struct sora_tls_ctx *ctx, const struct sora_server_config *srv,
			char *err, size_t errsize);
/* A new server-side SSL object from the current context (NULL on OOM). */
SSL *sora_tls_new_ssl(struct sora_tls_ctx *ctx);
/* Frees the holder and clears the caller's pointer; NULL-safe. */
void sora_tls_ctx_free(struct sora_tls_ctx **ctx);

/* A client context for outgoing connections (proxy to backend): verify =
 * check the peer against the system trust store (or ca_file if set). */
SSL_CTX *sora_tls_client_ctx_new(int verify, const char *ca_file, char *err, size_t errsize);

/* Human-readable last OpenSSL error (thread-local queue), for logs. */
const char *sora_tls_last_error(char *buf, size_t size);

#endif
