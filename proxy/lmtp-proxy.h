/* lmtp_proxy's connection handler: see lmtp-proxy.c. */
#ifndef SORA_PROXY_LMTP_PROXY_H
#define SORA_PROXY_LMTP_PROXY_H

#include "common/net/conn.h"

extern const struct sora_conn_handler sora_lmtp_proxy_handler;

#endif
