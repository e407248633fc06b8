/* sora-proxy: stateless front end (TLS, PROXY protocol, limits, auth,
 * routing, relay). See docs/proxy.md. */
#include "common/net/serve.h"
#include "proxy/imap-proxy.h"
#include "proxy/lmtp-proxy.h"
#include "proxy/pop3-proxy.h"
#include "proxy/proxy.h"
#include "proxy/sieve-proxy.h"

static const struct sora_conn_handler *proxy_handler(enum sora_server_type type)
{
	switch (type) {
	case SORA_SRV_IMAP_PROXY: return &sora_imap_proxy_handler;
	case SORA_SRV_POP3_PROXY: return &sora_pop3_proxy_handler;
	case SORA_SRV_LMTP_PROXY: return &sora_lmtp_proxy_handler;
	case SORA_SRV_MANAGESIEVE_PROXY: return &sora_sieve_proxy_handler;
	default: return NULL;
	}
}

int main(int argc, char **argv)
{
	static const struct sora_role role = {
		.binary = "sora-proxy",
		.proxy = true,
		.handler = proxy_handler,
		.start = sora_proxy_start,
		.stop = sora_proxy_stop,
	};

	return sora_serve_main(argc, argv, &role);
}
