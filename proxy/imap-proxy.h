/* The connection handlers of sora-proxy's servers. */
#ifndef SORA_PROXY_IMAP_PROXY_H
#define SORA_PROXY_IMAP_PROXY_H

#include "common/net/conn.h"

extern const struct sora_conn_handler sora_imap_proxy_handler;

#endif
