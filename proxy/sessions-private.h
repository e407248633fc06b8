/* The session list shared by sessions.c and sessions-db.c. */
#ifndef SORA_PROXY_SESSIONS_PRIVATE_H
#define SORA_PROXY_SESSIONS_PRIVATE_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "common/net/conn.h"

struct proxy_session_entry {
	struct proxy_session_entry *next;
	struct sora_conn_key key;
	struct sora_net *net;
	char protocol[16];
	char user[256];
	char backend[256];
	char client[64];
	char session[24];
	time_t since;
};

struct proxy_session_list {
	pthread_mutex_t lock;
	struct proxy_session_entry *head;
	size_t count;
	bool changed;
};

extern struct proxy_session_list proxy_sessions;

/* sessions-db.c: mirror a registration / removal into the database. */
void proxy_sessions_db_insert(const struct proxy_session_entry *e);
void proxy_sessions_db_delete(const char *session);

#endif
