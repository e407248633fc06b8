/* sora-backend: mailbox storage servers (IMAP, POP3, LMTP, ManageSieve). */
#include "backend/backend.h"
#include "backend/imap/imap.h"
#include "backend/lmtp/lmtp.h"
#include "backend/pop3/pop3.h"
#include "common/net/serve.h"
#include "common/session/preauth.h"

static const struct sora_conn_handler *backend_handler(enum sora_server_type type)
{
	switch (type) {
	case SORA_SRV_IMAP: return &sora_imap_handler;
	case SORA_SRV_POP3: return &sora_pop3_handler;
	case SORA_SRV_LMTP: return &sora_lmtp_handler;
	default: return NULL;
	}
}

int main(int argc, char **argv)
{
	static const struct sora_role role = {
		.binary = "sora-backend",
		.proxy = false,
		.handler = backend_handler,
		.start = sora_backend_start,
		.stop = sora_backend_stop,
	};

	return sora_serve_main(argc, argv, &role);
}
