/* pop3_proxy's connection handler: see pop3-proxy.c. */
#ifndef SORA_PROXY_POP3_PROXY_H
#define SORA_PROXY_POP3_PROXY_H

#include "common/net/conn.h"

extern const struct sora_conn_handler sora_pop3_proxy_handler;

#endif
