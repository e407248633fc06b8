/* Change notification fan-out (DESIGN.md §4): which sessions have which
 * mailbox selected, so that one PostgreSQL notification reaches exactly
 * those sessions.
 *
 * A small chained hash table keyed by mailbox id, under one mutex: the
 * LISTEN thread looks up and copies the keys of the watchers, then posts
 * to each session's loop without holding the lock (a post may run the
 * callback at once if the loop is gone). Sessions register on their own
 * loop when SELECT completes and unregister on UNSELECT/CLOSE/close.
 *
 * Cost while idle: one entry (mailbox id, net, session key) per selected
 * session; no thread, no timer, no query. */
#include <pthread.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "backend/imap/imap-private.h"
#include "backend/imap/imap.h"

#define NOTIFY_BUCKETS 4096

struct watcher {
	struct watcher *next;
	int64_t mailbox_id;
	struct sora_net *net;
	struct sora_conn_key key;
	struct imap_session *s;      /* off its loop only s->dirty is touched */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct watcher *buckets[NOTIFY_BUCKETS];
static size_t watcher_count;

static size_t bucket_of(int64_t id)
{
	uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;

	return (size_t)(h >> 52) % NOTIFY_BUCKETS;
}

void imap_notify_register(struct imap_session *s)
{
	struct watcher *w;

	if (s->sel == NULL || s->sel->registered)
		return;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return;   /* changes still show at the next command that syncs */
	w->mailbox_id = s->sel->mailbox_id;
	w->net = sora_conn_net(s->c);
	w->key = s->key;
	w->s = s;
	pthread_mutex_lock(&lock);
	w->next = buckets[bucket_of(w->mailbox_id)];
	buckets[bucket_of(w->mailbox_id)] = w;
	watcher_count++;
	pthread_mutex_unlock(&lock);
	s->sel->registered = true;
}

void imap_notify_unregister(struct imap_session *s)
{
	struct watcher **pp, *w = NULL;

	if (s->sel == NULL || !s->sel->registered)
		return;
	pthread_mutex_lock(&lock);
	for (pp = &buckets[bucket_of(s->sel->mailbox_id)]; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->s == s) {
			w = *pp;
			*pp = w->next;
			watcher_count--;
			break;
		}
	}
	pthread_mutex_unlock(&lock);
	free(w);
	s->sel->registered = false;
}

/* On the session's loop. The key's generation guarantees c is the session
 * that registered; it may have selected another mailbox since, in which
 * case the extra resync finds nothing. */
static void changed_cb(struct sora_conn *c, void *arg)
{
	struct imap_session *s;

	if (c == NULL)
		return;
	s = sora_conn_data(c);
	if (s != NULL && s->front.authenticated && s->sel != NULL)
		imap_session_changed(s);
}

struct target {
	struct sora_net *net;
	struct sora_conn_key key;
};

static void post_all(struct target *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sora_conn_post(t[i].net, t[i].key, changed_cb, NULL);
}

void sora_imap_mailbox_changed(int64_t mailbox_id)
{
	struct target small[64], *t = small;
	size_t n = 0, cap = 64;

	pthread_mutex_lock(&lock);
	for (struct watcher *w = buckets[bucket_of(mailbox_id)]; w != NULL; w = w->next) {
		if (w->mailbox_id != mailbox_id)
			continue;
		/* dirty is atomic and the session outlives its watcher entry
		 * (imap_unselect unregisters before anything is freed): the
		 * next command of that session syncs even if it is read
		 * before the post below runs. */
		__atomic_store_n(&w->s->dirty, 1, __ATOMIC_RELEASE);
		if (n == cap) {
			struct target *nt = malloc(cap * 2 * sizeof(*nt));

			if (nt == NULL)
				break;
			memcpy(nt, t, n * sizeof(*nt));
			if (t != small)
				free(t);
			t = nt;
			cap *= 2;
		}
		t[n].net = w->net;
		t[n].key = w->key;
		n++;
	}
	pthread_mutex_unlock(&lock);
	post_all(t, n);
	if (t != small)
		free(t);
}

void sora_imap_resync_all(void)
{
	struct target *t;
	size_t n = 0;

	pthread_mutex_lock(&lock);
	t = malloc((watcher_count + 1) * sizeof(*t));
	if (t != NULL) {
		for (size_t b = 0; b < NOTIFY_BUCKETS; b++) {
			for (struct watcher *w = buckets[b]; w != NULL; w = w->next) {
				t[n].net = w->net;
				t[n].key = w->key;
				n++;
			}
		}
	}
	pthread_mutex_unlock(&lock);
	if (t != NULL)
		post_all(t, n);
	free(t);
}
