/* managesieve_proxy's connection handler: see sieve-proxy.c. */
#ifndef SORA_PROXY_SIEVE_PROXY_H
#define SORA_PROXY_SIEVE_PROXY_H

#include "common/net/conn.h"

extern const struct sora_conn_handler sora_sieve_proxy_handler;

#endif
