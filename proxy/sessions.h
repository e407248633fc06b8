/* The proxied sessions of this process: what `sora-admin connections
 * list` shows and what `connections kick` reaches.
 *
 * A session is registered when its relay starts and removed when its
 * client connection closes. Registration is in memory (a mutex-protected
 * list); sessions-db.c mirrors it into PostgreSQL and carries out kicks.
 *
 * Thread safety: add/remove on the session's loop thread; the rest from
 * any thread. */
#ifndef SORA_PROXY_SESSIONS_H
#define SORA_PROXY_SESSIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/net/conn.h"

struct sora_net;

void proxy_sessions_add(struct sora_conn *c, const char *protocol, const char *user,
			const char *backend);
void proxy_sessions_remove(struct sora_conn *c);

/* Closes (as "kicked") every session of user (case-insensitive; NULL or ""
 * = all) and protocol (NULL or "" = all). Returns how many were found. */
int proxy_sessions_kick(const char *user, const char *protocol);

/* Number of registered sessions. */
size_t proxy_sessions_count(void);

/* Start/stop the database side (heartbeats, kick notifications). */
int proxy_sessions_start(struct sora_net *net, char *err, size_t errsize);
void proxy_sessions_stop(void);

#endif
