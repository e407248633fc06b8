/* sora-backend: mailbox storage servers (IMAP, POP3, LMTP, ManageSieve). */
#include <malloc.h>
#include <stdlib.h>

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

	/* Message-sized buffers (a delivery's spool, its decoded text, a
	 * FETCH slice: 64 KiB to a few hundred) come and go all the time on
	 * the worker threads. glibc's defaults hand the free space at the top
	 * of a thread's heap back to the kernel above 128 KiB (then fault it
	 * in again on the next message) and map larger blocks afresh each
	 * time; found with perf at about a tenth of the backend's CPU in
	 * 100 KB deliveries. Keep up to 4 MiB per heap instead and map only
	 * blocks over 1 MiB, unless GLIBC_TUNABLES sets the allocator up. */
	if (getenv("GLIBC_TUNABLES") == NULL) {
		mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
		mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
	}
	return sora_serve_main(argc, argv, &role);
}
