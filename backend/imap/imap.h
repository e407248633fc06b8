/* sora-backend's IMAP server (RFC 3501 / RFC 9051 and the extensions in
 * docs/imap.md): the logged-in session that follows the shared front end
 * (common/session/imap-front.h).
 *
 * Change notification: the backend's LISTEN connection calls
 * sora_imap_mailbox_changed() for every "sora_mailbox" notification and
 * sora_imap_resync_all() after it reconnected (notifications may have been
 * lost). Sessions with that mailbox selected are marked for a resync,
 * through a post to their loop; an idling one sends the changes at once.
 * A session that changed a mailbox calls it too before it answers its
 * client, so that the other sessions of this backend see the change at
 * their very next command (the notification through PostgreSQL may come
 * later than a client that works two connections in turn).
 *
 * Thread safety: the two notification functions may be called from any
 * thread; everything else runs on the sessions' loops and workers. */
#ifndef SORA_BACKEND_IMAP_H
#define SORA_BACKEND_IMAP_H

#include <stdint.h>

#include "common/net/conn.h"

extern const struct sora_conn_handler sora_imap_handler;

void sora_imap_mailbox_changed(int64_t mailbox_id);
void sora_imap_resync_all(void);

#endif
