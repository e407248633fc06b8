/* In-memory registry of proxied sessions: see sessions.h. */
#include "proxy/sessions.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/core/str.h"
#include "proxy/sessions-private.h"

struct proxy_session_list proxy_sessions = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

void proxy_sessions_add(struct sora_conn *c, const char *protocol, const char *user,
			const char *backend)
{
	struct proxy_session_entry *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return;
	e->key = sora_conn_key(c);
	e->net = sora_conn_net(c);
	sora_strlcpy(e->protocol, protocol, sizeof(e->protocol));
	sora_strlcpy(e->user, user, sizeof(e->user));
	sora_strlcpy(e->backend, backend, sizeof(e->backend));
	sora_strlcpy(e->client, sora_conn_peer(c), sizeof(e->client));
	sora_strlcpy(e->session, sora_conn_id(c), sizeof(e->session));
	e->since = time(NULL);
	pthread_mutex_lock(&proxy_sessions.lock);
	e->next = proxy_sessions.head;
	proxy_sessions.head = e;
	proxy_sessions.count++;
	proxy_sessions.changed = true;
	pthread_mutex_unlock(&proxy_sessions.lock);
	proxy_sessions_db_insert(e);
}

void proxy_sessions_remove(struct sora_conn *c)
{
	struct sora_conn_key key = sora_conn_key(c);
	struct proxy_session_entry **pp, *e = NULL;

	pthread_mutex_lock(&proxy_sessions.lock);
	for (pp = &proxy_sessions.head; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->key.loop == key.loop && (*pp)->key.slot == key.slot &&
		    (*pp)->key.gen == key.gen) {
			e = *pp;
			*pp = e->next;
			proxy_sessions.count--;
			proxy_sessions.changed = true;
			break;
		}
	}
	pthread_mutex_unlock(&proxy_sessions.lock);
	if (e != NULL)
		proxy_sessions_db_delete(e->session);
	free(e);
}

size_t proxy_sessions_count(void)
{
	size_t n;

	pthread_mutex_lock(&proxy_sessions.lock);
	n = proxy_sessions.count;
	pthread_mutex_unlock(&proxy_sessions.lock);
	return n;
}

static void kick_cb(struct sora_conn *c, void *arg)
{
	if (c != NULL)
		sora_conn_close(c, SORA_CLOSE_KICKED);
}

int proxy_sessions_kick(const char *user, const char *protocol)
{
	int found = 0;

	pthread_mutex_lock(&proxy_sessions.lock);
	for (struct proxy_session_entry *e = proxy_sessions.head; e != NULL; e = e->next) {
		if (user != NULL && user[0] != '\0' && strcasecmp(user, e->user) != 0)
			continue;
		if (protocol != NULL && protocol[0] != '\0' && strcasecmp(protocol, e->protocol) != 0)
			continue;
		found++;
		sora_conn_post(e->net, e->key, kick_cb, NULL);
	}
	pthread_mutex_unlock(&proxy_sessions.lock);
	return found;
}
