-- Sora schema, migration 0006: what the POP3 server needs (backend/pop3/,
-- docs/pop3.md).
--
-- 1. messages.pop3_size: the size POP3 LIST and STAT announce, which RFC
--    1939 wants exact: the octets of the message as RETR sends it, with
--    every line ending in CRLF (a bare LF counts as CRLF) and a CRLF after
--    a last line that has none, without the byte-stuffing (what the client
--    holds once it undid it). Deliveries and APPEND compute it while they
--    read the body anyway (common/proto/pop3.h); COPY and MOVE carry it
--    over. Rows stored before this migration have NULL: a POP3 session
--    that finds such rows in its INBOX computes them from the bodies once
--    and stores them, so no upgrade has to read every body.
--
-- 2. pop3_locks: RFC 1939 section 4 gives a POP3 session exclusive access
--    to its maildrop. A session takes the row of its account when it
--    opens the INBOX and deletes it when it ends; a second session meets
--    the row and gets "-ERR [IN-USE]". The row carries a lease: a
--    session can never outlive absolute_session_timeout, so a lock left by
--    a crashed process expires by itself and is taken over.

ALTER TABLE messages ADD COLUMN pop3_size bigint;
ALTER TABLE messages ADD CONSTRAINT messages_pop3_size_check
    CHECK (pop3_size IS NULL OR pop3_size >= 0);

CREATE TABLE pop3_locks (
    account_id  bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    owner       text NOT NULL,
    locked_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
