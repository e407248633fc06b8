-- Sora schema, migration 0002: idempotent LMTP delivery.
--
-- An MTA that loses the connection after sending the final "." of DATA, or
-- gets a 4xx for some recipients, sends the same message again later. If the
-- first attempt was in fact committed, storing it a second time would give
-- the user a duplicate. Each delivery therefore records a key, and a retried
-- delivery whose key is already recorded for the mailbox is answered 250
-- without storing anything.
--
-- delivery_key is BLAKE2b-256 (64 lowercase hex digits) over the message as
-- received in DATA (after dot-unstuffing, before Sora's own trace headers,
-- which differ on every attempt), the envelope sender and the recipient
-- address as given in RCPT TO. MTAs resend the same queue file, so a retry
-- has the same key; a new message never does (its Message-ID, Date and the
-- MTA's Received header with the queue id differ).
--
-- The key lives in its own table rather than in messages so that copying or
-- moving a message (IMAP COPY/MOVE copy the row) never collides with it, and
-- so that a retry still counts as delivered after the user expunged the
-- message. Rows go away with their mailbox; rows older than the MTA's
-- maximal queue lifetime (Postfix: 5 days) can no longer match a retry and
-- may be deleted by the operator (the created_at index serves that query).
CREATE TABLE message_deliveries (
    mailbox_id    bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    delivery_key  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox_id, delivery_key),
    CONSTRAINT message_deliveries_key_check CHECK (delivery_key ~ '^[0-9a-f]{64}$')
);

CREATE INDEX message_deliveries_created_idx ON message_deliveries (created_at);
