-- Sora schema, migration 0003: cheaper writes on the delivery path.
--
-- 1. The trigram index on message_contents.text_body goes. Building it cost
--    about a quarter of all the CPU a delivery takes (every body's text is
--    split into trigrams, sorted and merged into one GIN index shared by all
--    accounts), and it could not serve the queries it was meant for: SEARCH
--    BODY/TEXT always runs inside one mailbox, and a global trigram index
--    cannot be restricted to one account's rows, so for common words it
--    returns candidates from every mailbox on the cluster. SEARCH BODY/TEXT
--    reads the stored text of the messages in the mailbox being searched
--    (what Dovecot does without an FTS plugin, minus fetching the bodies).
--    The index on messages.subject stays: subjects are short and cheap to
--    index.
--
-- 2. The searchable text is compressed with LZ4 instead of pglz where the
--    server supports it (PostgreSQL 14+ built with lz4, as Debian's and
--    PGDG's packages are): several times faster to compress at a similar
--    ratio for text. Existing rows keep their compression until rewritten.
--
-- 3. The counter triggers call a PL/pgSQL function instead of a LANGUAGE sql
--    one once per mailbox: a SQL function called from PL/pgSQL is parsed and
--    planned again on every call, while PL/pgSQL caches the plans of its own
--    statements. The behaviour is unchanged:
--    one UPDATE per affected mailbox, taken in mailbox_id order (so two
--    statements touching the same mailboxes cannot deadlock), and one
--    notification per mailbox on channel 'sora_mailbox'.

DROP INDEX IF EXISTS message_contents_text_trgm_idx;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
                WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE message_contents ALTER COLUMN text_body SET COMPRESSION lz4;
    END IF;
END;
$$;

-- Applies one mailbox's counter changes and notifies its listeners.
-- PL/pgSQL, so its UPDATE is planned once per session and then reused.
CREATE FUNCTION sora_mailbox_stats_apply(mbox bigint, delta_count bigint, delta_unseen bigint,
                                         delta_deleted bigint, delta_size bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF delta_count <> 0 OR delta_unseen <> 0 OR delta_deleted <> 0 OR delta_size <> 0 THEN
        UPDATE mailbox_stats
           SET message_count = message_count + delta_count,
               unseen_count = unseen_count + delta_unseen,
               deleted_count = deleted_count + delta_deleted,
               total_size = total_size + delta_size
         WHERE mailbox_id = mbox;
    END IF;
    PERFORM pg_notify('sora_mailbox', mbox::text);
END;
$$;

CREATE OR REPLACE FUNCTION sora_messages_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    d record;
BEGIN
    FOR d IN SELECT mailbox_id,
                    count(*) FILTER (WHERE expunged_at IS NULL) AS c,
                    count(*) FILTER (WHERE expunged_at IS NULL AND flags & 1 = 0) AS u,
                    count(*) FILTER (WHERE expunged_at IS NULL AND flags & 8 <> 0) AS del,
                    coalesce(sum(size) FILTER (WHERE expunged_at IS NULL), 0)::bigint AS s
               FROM new_rows GROUP BY mailbox_id ORDER BY mailbox_id
    LOOP
        PERFORM sora_mailbox_stats_apply(d.mailbox_id, d.c, d.u, d.del, d.s);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION sora_messages_after_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    d record;
BEGIN
    FOR d IN SELECT x.mailbox_id, sum(x.c)::bigint AS c, sum(x.u)::bigint AS u,
                    sum(x.del)::bigint AS del, sum(x.s)::bigint AS s
               FROM (SELECT mailbox_id, (expunged_at IS NULL)::int AS c,
                            (expunged_at IS NULL AND flags & 1 = 0)::int AS u,
                            (expunged_at IS NULL AND flags & 8 <> 0)::int AS del,
                            CASE WHEN expunged_at IS NULL THEN size ELSE 0 END AS s
                       FROM new_rows
                     UNION ALL
                     SELECT mailbox_id, -((expunged_at IS NULL)::int),
                            -((expunged_at IS NULL AND flags & 1 = 0)::int),
                            -((expunged_at IS NULL AND flags & 8 <> 0)::int),
                            CASE WHEN expunged_at IS NULL THEN -size ELSE 0 END
                       FROM old_rows) x
              GROUP BY x.mailbox_id ORDER BY x.mailbox_id
    LOOP
        PERFORM sora_mailbox_stats_apply(d.mailbox_id, d.c, d.u, d.del, d.s);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION sora_messages_after_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    d record;
BEGIN
    FOR d IN SELECT mailbox_id,
                    -count(*) FILTER (WHERE expunged_at IS NULL) AS c,
                    -count(*) FILTER (WHERE expunged_at IS NULL AND flags & 1 = 0) AS u,
                    -count(*) FILTER (WHERE expunged_at IS NULL AND flags & 8 <> 0) AS del,
                    -coalesce(sum(size) FILTER (WHERE expunged_at IS NULL), 0)::bigint AS s
               FROM old_rows GROUP BY mailbox_id ORDER BY mailbox_id
    LOOP
        PERFORM sora_mailbox_stats_apply(d.mailbox_id, d.c, d.u, d.del, d.s);
    END LOOP;
    RETURN NULL;
END;
$$;

DROP FUNCTION IF EXISTS sora_messages_apply_stats(bigint, bigint, bigint, bigint, bigint);
