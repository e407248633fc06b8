-- Sora schema, migration 0004: what the IMAP message store needs
-- (backend/store/messages.h).
--
-- 1. mailboxes.recent_uid: the first UID that no session has claimed as
--    \Recent yet (IMAP4rev1, RFC 3501 2.3.2). A read-write SELECT, and the
--    change checks of that session afterwards, move it up to the UIDNEXT
--    they saw and treat the UIDs in between as their own \Recent messages,
--    so each new message is \Recent in exactly one session. Mailboxes that
--    exist when this migration runs start at their current uid_next: the
--    mail they already hold is not news, and an upgrade must not make a
--    100,000-message INBOX report RECENT 100000 on its first SELECT.
--
-- 2. An index on the live messages of a mailbox by UID. SELECT reads every
--    live UID of the mailbox in order (the session's sequence-number map);
--    with the flags in the index it is an index-only scan over a small
--    index instead of a walk through messages_mailbox_uid_idx and the wide
--    heap rows (envelope, raw headers). Change checks use it for the new
--    UIDs too.

ALTER TABLE mailboxes ADD COLUMN recent_uid bigint NOT NULL DEFAULT 1;
UPDATE mailboxes SET recent_uid = uid_next;
ALTER TABLE mailboxes ADD CONSTRAINT mailboxes_recent_uid_check
    CHECK (recent_uid BETWEEN 1 AND 4294967296);

CREATE INDEX messages_mailbox_live_uid_idx ON messages (mailbox_id, uid) INCLUDE (flags)
    WHERE expunged_at IS NULL;
