#include "common/tls/tls.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "common/config/config.h"

struct sora_tls_ctx {
	pthread_mutex_t lock;  /* guards ctx swaps against SSL_new */
	SSL_CTX *ctx;          /* one reference owned by the holder */
};

const char *sora_tls_last_error(char *buf, size_t size)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0) {
		snprintf(buf, size, "unknown TLS error");
	} else {
		ERR_error_string_n(e, buf, size);
	}
	ERR_clear_error();
	return buf;
}

static int min_version(const struct sora_server_config *srv)
{
	if (srv->tls_min_version != NULL && strcmp(srv->tls_min_version, "1.3") == 0)
		return TLS1_3_VERSION;
	return TLS1_2_VERSION;
}

static SSL_CTX *build_ctx(const struct sora_server_config *srv, char *err, size_t errsize)
{
	char ebuf[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		snprintf(err, errsize, "[servers.%s]: cannot create TLS context: %s", srv->name,
			 sora_tls_last_error(ebuf, sizeof(ebuf)));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, min_version(srv));
	/* Memory per idle connection matters more than the few allocations a
	 * busy connection makes per read. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
			      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
				 SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* Session tickets let clients resume without per-connection server
	 * state; a session cache would grow with the number of clients. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

	if (SSL_CTX_use_certificate_chain_file(ctx, srv->tls_cert_file) != 1) {
		snprintf(err, errsize, "[servers.%s]: tls_cert_file %s: %s", srv->name,
			 srv->tls_cert_file, sora_tls_last_error(ebuf, sizeof(ebuf)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, srv->tls_key_file, SSL_FILETYPE_PEM) != 1) {
		snprintf(err, errsize, "[servers.%s]: tls_key_file %s: %s", srv->name,
			 srv->tls_key_file, sora_tls_last_error(ebuf, sizeof(ebuf)));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errsize, "[servers.%s]: tls_key_file %s does not match tls_cert_file %s",
			 srv->name, srv->tls_key_file, srv->tls_cert_file);
		goto fail;
	}
	if (srv->tls_verify) {
		STACK_OF(X509_NAME) *names;

		if (SSL_CTX_load_verify_locations(ctx, srv->tls_ca_file, NULL) != 1) {
			snprintf(err, errsize, "[servers.%s]: tls_ca_file %s: %s", srv->name,
				 srv->tls_ca_file, sora_tls_last_error(ebuf, sizeof(ebuf)));
			goto fail;
		}
		names = SSL_load_client_CA_file(srv->tls_ca_file);
		if (names != NULL)
			SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	ERR_clear_error();
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int sora_tls_ctx_create(const struct sora_server_config *srv, struct sora_tls_ctx **ctx_r,
			char *err, size_t errsize)
{
	struct sora_tls_ctx *t;
	SSL_CTX *ctx = build_ctx(srv, err, errsize);

	if (ctx == NULL)
		return -1;
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		SSL_CTX_free(ctx);
		snprintf(err, errsize, "out of memory");
		return -1;
	}
	pthread_mutex_init(&t->lock, NULL);
	t->ctx = ctx;
	*ctx_r = t;
	return 0;
}

int sora_tls_ctx_reload(struct sora_tls_ctx *t, const struct sora_server_config *srv,
			char *err, size_t errsize)
{
	SSL_CTX *ctx = build_ctx(srv, err, errsize), *old;

	if (ctx == NULL)
		return -1;
	pthread_mutex_lock(&t->lock);
	old = t->ctx;
	t->ctx = ctx;
	pthread_mutex_unlock(&t->lock);
	/* Connections made with the old context hold their own references. */
	SSL_CTX_free(old);
	return 0;
}

SSL *sora_tls_new_ssl(struct sora_tls_ctx *t)
{
	SSL *ssl;

	pthread_mutex_lock(&t->lock);
	ssl = SSL_new(t->ctx);
	pthread_mutex_unlock(&t->lock);
	return ssl;
}

void sora_tls_ctx_free(struct sora_tls_ctx **tp)
{
	struct sora_tls_ctx *t = *tp;

	if (t == NULL)
		return;
	*tp = NULL;
	SSL_CTX_free(t->ctx);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

SSL_CTX *sora_tls_client_ctx_new(int verify, const char *ca_file, char *err, size_t errsize)
{
	char ebuf[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		snprintf(err, errsize, "cannot create TLS client context: %s",
			 sora_tls_last_error(ebuf, sizeof(ebuf)));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
			      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (verify) {
		int ok = ca_file != NULL ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
					 : SSL_CTX_set_default_verify_paths(ctx);
		if (ok != 1) {
			snprintf(err, errsize, "cannot load CA certificates%s%s: %s",
				 ca_file ? " from " : "", ca_file ? ca_file : "",
				 sora_tls_last_error(ebuf, sizeof(ebuf)));
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	return ctx;
}
