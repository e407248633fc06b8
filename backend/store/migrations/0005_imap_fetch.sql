-- Sora schema, migration 0005: what makes FETCH and SELECT cheap on large
-- mailboxes (measured in tests/bench/imap_bench.py, docs/imap.md).
--
-- 1. messages.imap_envelope and messages.imap_bodystructure: the ENVELOPE
--    and BODYSTRUCTURE responses themselves, rendered once when the row is
--    written (delivery, APPEND, COPY copies them). FETCH sends them as
--    they are instead of parsing the JSON in envelope/bodystructure and
--    formatting IMAP for every message every time: for
--    FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE) that parse and format
--    was most of the backend's time. The JSON columns stay: BODY[section]
--    needs the part offsets, BODY (non-extensible) and rows written before
--    this migration (NULL here) are rendered from them as before.
ALTER TABLE messages ADD COLUMN imap_envelope text;
ALTER TABLE messages ADD COLUMN imap_bodystructure text;

-- 2. The first message without \Seen (SELECT's [UNSEEN n]) from an index
--    of the unseen live messages only: in a mailbox where almost
--    everything is read, the old lookup walked the live-UID index from
--    the start up to the first unseen message, nearly the whole mailbox.
CREATE INDEX messages_mailbox_unseen_idx ON messages (mailbox_id, uid)
    WHERE expunged_at IS NULL AND flags & 1 = 0;
