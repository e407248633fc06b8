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
-- 2. Two partial indexes for SELECT, which reads every live UID of the
--    mailbox in order (the session's sequence-number map), the first
--    message without \Seen and every keyword in use (the FLAGS response):
--    - live UIDs with their flags: UIDs and first unseen come from an
--      index-only scan of a small index instead of the wide heap rows
--      (envelope, raw headers); change checks use it for new UIDs too;
--    - live messages that have keywords, with the keywords: most messages
--      have none, so the FLAGS list no longer reads every row.
--    Measured on 100,000 messages: the whole SELECT statement went from
--    about 580 ms (a scan of the heap) to about 60 ms. Neither index makes
--    a STORE more expensive in kind: updated_modseq is indexed already, so
--    a flag change was never a HOT update.

ALTER TABLE mailboxes ADD COLUMN recent_uid bigint NOT NULL DEFAULT 1;
UPDATE mailboxes SET recent_uid = uid_next;
ALTER TABLE mailboxes ADD CONSTRAINT mailboxes_recent_uid_check
    CHECK (recent_uid BETWEEN 1 AND 4294967296);

CREATE INDEX messages_mailbox_live_uid_idx ON messages (mailbox_id, uid) INCLUDE (flags)
    WHERE expunged_at IS NULL;
CREATE INDEX messages_mailbox_keywords_idx ON messages (mailbox_id) INCLUDE (keywords)
    WHERE expunged_at IS NULL AND keywords <> '{}';

-- 3. Subscriptions become names of their own (RFC 3501 6.3.6, RFC 5258):
--    a client may subscribe to a name that does not exist (yet), and a
--    subscription outlives DELETE of its mailbox, which LIST (SUBSCRIBED)
--    then shows as \NonExistent. CREATE no longer subscribes (clients that
--    want it send SUBSCRIBE); the default mailboxes are subscribed when
--    they are created. mailboxes.subscribed carried the old flag: what it
--    said is copied over, then the column goes.
CREATE TABLE mailbox_subscriptions (
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        text COLLATE "C" NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, name),
    CONSTRAINT mailbox_subscriptions_name_check CHECK (length(name) BETWEEN 1 AND 1024)
);

INSERT INTO mailbox_subscriptions (account_id, name)
    SELECT account_id, name FROM mailboxes WHERE subscribed AND NOT noselect;
ALTER TABLE mailboxes DROP COLUMN subscribed;

-- 4. messages.sent_tz: the zone of the Date header, minutes east of UTC.
--    SEARCH SENTBEFORE/SENTON/SENTSINCE compare the date as the sender
--    wrote it ("disregarding time and timezone", RFC 3501 6.4.4), which
--    the instant in sent_date alone cannot give back.
ALTER TABLE messages ADD COLUMN sent_tz smallint NOT NULL DEFAULT 0;
ALTER TABLE messages ADD CONSTRAINT messages_sent_tz_check CHECK (sent_tz BETWEEN -1440 AND 1440);
