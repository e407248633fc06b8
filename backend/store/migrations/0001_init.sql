-- Sora schema, migration 0001: the initial tables.
--
-- Applied by backend/store/migrate.c (embedded into the binaries with
-- .incbin by backend/store/migrations-embed.c) inside one transaction under
-- an advisory lock. Never edit a migration that has been released: add a new
-- numbered file instead; `sora-admin migrate status` flags an applied
-- migration whose text changed.
--
-- Conventions:
--   * ids are bigint identities from bigserial; every table that belongs to
--     an account carries account_id with ON DELETE CASCADE so purging an
--     account removes everything it owns.
--   * timestamps are timestamptz.
--   * names that IMAP treats as case-sensitive (mailbox names, keywords) are
--     stored in the "C" collation so ordering and prefix LIKE queries are
--     byte-wise and index-friendly.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- ---------------------------------------------------------------------------
-- Accounts and credentials
-- ---------------------------------------------------------------------------

-- An account owns mailboxes, messages and Sieve scripts. It is reached through
-- one or more credentials (addresses). Deleting an account is soft: deleted_at
-- is set, its credentials stop authenticating and stop receiving mail, and
-- `sora-admin accounts restore` clears it again.
CREATE TABLE accounts (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

CREATE INDEX accounts_deleted_at_idx ON accounts (deleted_at) WHERE deleted_at IS NOT NULL;

-- An address that logs in to (and receives mail for) an account. Addresses
-- are stored as given and compared case-insensitively: the unique index is on
-- lower(address), and lookups use lower(address) = lower($1). A deleted
-- account keeps its addresses reserved, so restoring it never conflicts.
-- password_hash carries Dovecot's scheme prefix ("{BLF-CRYPT}$2y$12$...").
-- Exactly one credential per account is the primary identity (enforced for
-- "at most one" by a partial unique index; the admin code keeps "at least
-- one" by refusing to delete or demote the primary).
CREATE TABLE credentials (
    id               bigserial PRIMARY KEY,
    account_id       bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    address          text NOT NULL,
    password_hash    text NOT NULL,
    primary_identity boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT credentials_address_check
        CHECK (length(address) BETWEEN 3 AND 320 AND position('@' IN address) > 1)
);

CREATE UNIQUE INDEX credentials_address_lower_idx ON credentials (lower(address));
CREATE UNIQUE INDEX credentials_one_primary_idx ON credentials (account_id) WHERE primary_identity;
CREATE INDEX credentials_account_idx ON credentials (account_id);

-- ---------------------------------------------------------------------------
-- Mailboxes
-- ---------------------------------------------------------------------------

-- UIDVALIDITY values come from one sequence so that a mailbox deleted and
-- re-created under the same name always gets a different value (RFC 3501
-- 2.3.1.1). The sequence starts at the time of this migration, Dovecot style,
-- and stays below 2^32 as IMAP requires.
CREATE SEQUENCE mailbox_uid_validity_seq MINVALUE 1 MAXVALUE 4294967295;
SELECT setval('mailbox_uid_validity_seq', greatest(1, extract(epoch FROM now())::bigint));

-- A mailbox. name is the full hierarchical name with '/' as the delimiter,
-- case-sensitive, except that INBOX is always stored as exactly "INBOX"
-- (the check constraint refuses "inbox", "Inbox", ...). parent_id points at
-- the mailbox one level up when that exists (NULL for top-level names).
-- uid_next and highest_modseq are advanced by the store under a row lock on
-- the mailbox (SELECT ... FOR UPDATE / UPDATE ... RETURNING), which is also
-- what orders concurrent appends. special_use holds one RFC 6154 attribute.
-- noselect marks a name kept only because it has children (RFC 3501 DELETE).
CREATE TABLE mailboxes (
    id              bigserial PRIMARY KEY,
    account_id      bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name            text COLLATE "C" NOT NULL,
    parent_id       bigint REFERENCES mailboxes (id),
    uid_validity    bigint NOT NULL DEFAULT nextval('mailbox_uid_validity_seq'),
    uid_next        bigint NOT NULL DEFAULT 1,
    highest_modseq  bigint NOT NULL DEFAULT 1,
    special_use     text,
    subscribed      boolean NOT NULL DEFAULT true,
    noselect        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mailboxes_name_check
        CHECK (length(name) BETWEEN 1 AND 1024 AND (upper(name) <> 'INBOX' OR name = 'INBOX')),
    CONSTRAINT mailboxes_uid_validity_check CHECK (uid_validity BETWEEN 1 AND 4294967295),
    CONSTRAINT mailboxes_uid_next_check CHECK (uid_next BETWEEN 1 AND 4294967296),
    CONSTRAINT mailboxes_modseq_check CHECK (highest_modseq >= 1),
    CONSTRAINT mailboxes_special_use_check CHECK (special_use IS NULL OR special_use IN
        ('\All', '\Archive', '\Drafts', '\Flagged', '\Junk', '\Sent', '\Trash'))
);

CREATE UNIQUE INDEX mailboxes_account_name_idx ON mailboxes (account_id, name);
CREATE INDEX mailboxes_parent_idx ON mailboxes (parent_id) WHERE parent_id IS NOT NULL;

-- Per-mailbox counters, kept exact by the statement triggers on messages
-- below, so that SELECT and STATUS never count rows. Only messages that are
-- not expunged count. A separate table keeps counter churn off the mailboxes
-- rows that UID allocation locks.
CREATE TABLE mailbox_stats (
    mailbox_id     bigint PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
    message_count  bigint NOT NULL DEFAULT 0,
    unseen_count   bigint NOT NULL DEFAULT 0,
    deleted_count  bigint NOT NULL DEFAULT 0,
    total_size     bigint NOT NULL DEFAULT 0
);

CREATE FUNCTION sora_mailboxes_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO mailbox_stats (mailbox_id) SELECT id FROM new_rows;
    RETURN NULL;
END;
$$;

CREATE TRIGGER mailboxes_stats_row AFTER INSERT ON mailboxes
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sora_mailboxes_after_insert();

-- RFC 4314 access control entries. identifier is "anyone" or an address;
-- grantee_account_id is set when the identifier names an account so lookups
-- of "mailboxes shared with me" use an index. rights holds the RFC 4314
-- letters (and the obsolete RFC 2086 digits, accepted as SETACL input).
CREATE TABLE mailbox_acl (
    mailbox_id          bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    identifier          text NOT NULL,
    grantee_account_id  bigint REFERENCES accounts (id) ON DELETE CASCADE,
    rights              text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox_id, identifier),
    CONSTRAINT mailbox_acl_rights_check CHECK (rights ~ '^[lrswipkxtea0-9]*$')
);

CREATE INDEX mailbox_acl_grantee_idx ON mailbox_acl (grantee_account_id)
    WHERE grantee_account_id IS NOT NULL;

-- ---------------------------------------------------------------------------
-- Messages
-- ---------------------------------------------------------------------------

-- One row per message in a mailbox. The body lives in blob storage under its
-- content hash (BLAKE2b-256, 64 lowercase hex digits); the same body stored
-- twice for one account is one blob. The immutable part (envelope, structure,
-- the header fields SEARCH and SORT need) is written at delivery; the mutable
-- state is flags, keywords and the modseqs.
--
-- flags is a bitmask of the IMAP system flags:
--   1 \Seen   2 \Answered   4 \Flagged   8 \Deleted   16 \Draft
-- keywords holds the other flags, as sent by the client (case-insensitive
-- comparison is the store's job).
--
-- Expunge is two-phase: expunged_at and expunged_modseq are set first (so
-- QRESYNC can report VANISHED UIDs and POP3/IMAP sessions that still show
-- the message keep a consistent view); a cleaner removes the rows later.
-- Expunged rows no longer count in mailbox_stats.
--
-- sort_* columns hold the RFC 5256 / RFC 5957 sort keys computed at delivery
-- (base subject, first addr-spec mailbox, display name), so SORT is an
-- ORDER BY. *_text columns hold decoded header values for SEARCH FROM/TO/...
-- raw_headers is the header block as received (bytes, may be 8-bit), served
-- directly for header-only FETCHes without reading the blob.
CREATE TABLE messages (
    id               bigserial PRIMARY KEY,
    account_id       bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    mailbox_id       bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid              bigint NOT NULL,
    content_hash     text NOT NULL,
    size             bigint NOT NULL,
    internal_date    timestamptz NOT NULL DEFAULT now(),
    sent_date        timestamptz,
    subject          text NOT NULL DEFAULT '',
    message_id       text NOT NULL DEFAULT '',
    in_reply_to      text NOT NULL DEFAULT '',
    references_hdr   text NOT NULL DEFAULT '',
    from_text        text NOT NULL DEFAULT '',
    to_text          text NOT NULL DEFAULT '',
    cc_text          text NOT NULL DEFAULT '',
    bcc_text         text NOT NULL DEFAULT '',
    sort_subject     text NOT NULL DEFAULT '',
    sort_from        text NOT NULL DEFAULT '',
    sort_to          text NOT NULL DEFAULT '',
    sort_cc          text NOT NULL DEFAULT '',
    sort_display_from text NOT NULL DEFAULT '',
    sort_display_to  text NOT NULL DEFAULT '',
    envelope         jsonb,
    bodystructure    jsonb,
    raw_headers      bytea,
    flags            integer NOT NULL DEFAULT 0,
    keywords         text[] COLLATE "C" NOT NULL DEFAULT '{}',
    created_modseq   bigint NOT NULL DEFAULT 1,
    updated_modseq   bigint NOT NULL DEFAULT 1,
    expunged_at      timestamptz,
    expunged_modseq  bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT messages_uid_check CHECK (uid BETWEEN 1 AND 4294967295),
    CONSTRAINT messages_hash_check CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT messages_size_check CHECK (size >= 0),
    CONSTRAINT messages_flags_check CHECK (flags BETWEEN 0 AND 31),
    CONSTRAINT messages_modseq_check CHECK (updated_modseq >= created_modseq),
    CONSTRAINT messages_expunge_check CHECK ((expunged_at IS NULL) = (expunged_modseq IS NULL))
);

CREATE UNIQUE INDEX messages_mailbox_uid_idx ON messages (mailbox_id, uid);
CREATE INDEX messages_mailbox_modseq_idx ON messages (mailbox_id, updated_modseq);
CREATE INDEX messages_mailbox_expunged_idx ON messages (mailbox_id, expunged_modseq)
    WHERE expunged_at IS NOT NULL;
CREATE INDEX messages_account_hash_idx ON messages (account_id, content_hash);
CREATE INDEX messages_mailbox_internal_date_idx ON messages (mailbox_id, internal_date);
CREATE INDEX messages_mailbox_sent_date_idx ON messages (mailbox_id, sent_date);
CREATE INDEX messages_account_message_id_idx ON messages (account_id, message_id)
    WHERE message_id <> '';
CREATE INDEX messages_subject_trgm_idx ON messages USING gin (subject gin_trgm_ops);

-- Searchable text of a body (the decoded text parts), shared by every message
-- with the same content hash, for SEARCH BODY/TEXT. The store decides how
-- much text to keep; the trigram index makes substring searches indexable.
CREATE TABLE message_contents (
    content_hash  text PRIMARY KEY,
    text_body     text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT message_contents_hash_check CHECK (content_hash ~ '^[0-9a-f]{64}$')
);

CREATE INDEX message_contents_text_trgm_idx ON message_contents USING gin (text_body gin_trgm_ops);

-- Counter maintenance. Statement-level triggers with transition tables fold
-- a bulk STORE or EXPUNGE into one UPDATE per mailbox instead of one per
-- row. Each also notifies channel 'sora_mailbox' with the mailbox id as
-- payload; PostgreSQL folds identical notifications within a transaction,
-- so IDLE listeners get one wake-up per mailbox per commit.
CREATE FUNCTION sora_messages_apply_stats(delta_count bigint, delta_unseen bigint,
                                          delta_deleted bigint, delta_size bigint,
                                          mbox bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE mailbox_stats
       SET message_count = message_count + delta_count,
           unseen_count = unseen_count + delta_unseen,
           deleted_count = deleted_count + delta_deleted,
           total_size = total_size + delta_size
     WHERE mailbox_id = mbox
       AND (delta_count <> 0 OR delta_unseen <> 0 OR delta_deleted <> 0 OR delta_size <> 0);
$$;

CREATE FUNCTION sora_messages_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sora_messages_apply_stats(d.c, d.u, d.del, d.s, d.mailbox_id)
       FROM (SELECT mailbox_id,
                    count(*) FILTER (WHERE expunged_at IS NULL) AS c,
                    count(*) FILTER (WHERE expunged_at IS NULL AND flags & 1 = 0) AS u,
                    count(*) FILTER (WHERE expunged_at IS NULL AND flags & 8 <> 0) AS del,
                    coalesce(sum(size) FILTER (WHERE expunged_at IS NULL), 0)::bigint AS s
               FROM new_rows GROUP BY mailbox_id ORDER BY mailbox_id) d;
    PERFORM pg_notify('sora_mailbox', m.mailbox_id::text)
       FROM (SELECT DISTINCT mailbox_id FROM new_rows) m;
    RETURN NULL;
END;
$$;

CREATE FUNCTION sora_messages_after_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sora_messages_apply_stats(sum(x.c)::bigint, sum(x.u)::bigint, sum(x.del)::bigint,
                                      sum(x.s)::bigint, x.mailbox_id)
       FROM (SELECT mailbox_id, 1 AS c, (flags & 1 = 0)::int AS u, (flags & 8 <> 0)::int AS del,
                    size AS s
               FROM new_rows WHERE expunged_at IS NULL
             UNION ALL
             SELECT mailbox_id, -1, -((flags & 1 = 0)::int), -((flags & 8 <> 0)::int), -size
               FROM old_rows WHERE expunged_at IS NULL) x
      GROUP BY x.mailbox_id ORDER BY x.mailbox_id;
    PERFORM pg_notify('sora_mailbox', m.mailbox_id::text)
       FROM (SELECT mailbox_id FROM new_rows UNION SELECT mailbox_id FROM old_rows) m;
    RETURN NULL;
END;
$$;

CREATE FUNCTION sora_messages_after_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sora_messages_apply_stats(-d.c, -d.u, -d.del, -d.s, d.mailbox_id)
       FROM (SELECT mailbox_id,
                    count(*) FILTER (WHERE expunged_at IS NULL) AS c,
                    count(*) FILTER (WHERE expunged_at IS NULL AND flags & 1 = 0) AS u,
                    count(*) FILTER (WHERE expunged_at IS NULL AND flags & 8 <> 0) AS del,
                    coalesce(sum(size) FILTER (WHERE expunged_at IS NULL), 0)::bigint AS s
               FROM old_rows GROUP BY mailbox_id ORDER BY mailbox_id) d;
    PERFORM pg_notify('sora_mailbox', m.mailbox_id::text)
       FROM (SELECT DISTINCT mailbox_id FROM old_rows) m;
    RETURN NULL;
END;
$$;

CREATE TRIGGER messages_stats_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sora_messages_after_insert();
CREATE TRIGGER messages_stats_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sora_messages_after_update();
CREATE TRIGGER messages_stats_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sora_messages_after_delete();

-- ---------------------------------------------------------------------------
-- Blob upload queue
-- ---------------------------------------------------------------------------

-- A body that is fsynced in the local staging directory of instance_id but
-- not yet in blob storage. The uploader claims due rows (next_attempt_at <=
-- now(), FOR UPDATE SKIP LOCKED), uploads, and deletes the row; on failure
-- it records last_error and pushes next_attempt_at out with backoff. The row
-- survives restarts, which is what makes acknowledged mail durable.
CREATE TABLE pending_uploads (
    id               bigserial PRIMARY KEY,
    account_id       bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    content_hash     text NOT NULL,
    size             bigint NOT NULL,
    instance_id      text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pending_uploads_hash_check CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT pending_uploads_account_hash_key UNIQUE (account_id, content_hash)
);

CREATE INDEX pending_uploads_due_idx ON pending_uploads (instance_id, next_attempt_at);

-- ---------------------------------------------------------------------------
-- Authentication rate limiting
-- ---------------------------------------------------------------------------

-- Failed-login tracking shared by every proxy and backend node. A row tracks
-- one key:
--   (ip, NULL)        every failure from that IP, whatever the username;
--   (NULL, username)  every failure for that username (lowercased), from
--                     any IP;
--   (ip, username)    free for finer-grained tracking; not counted in the
--                     per-IP and per-username totals of `sora-admin stats auth`.
-- failure_count counts failures since first_failure_at; the limiter resets
-- it when its window has passed. blocked_until is set while the key is
-- blocked. The security guide's incident query works as written:
--   SELECT ip, blocked_until FROM auth_attempts WHERE blocked_until > now()
-- NULLS NOT DISTINCT makes (ip, NULL) rows unique per IP, so upserts can use
-- ON CONFLICT (ip, username).
CREATE TABLE auth_attempts (
    id                bigserial PRIMARY KEY,
    ip                inet,
    username          text,
    failure_count     integer NOT NULL DEFAULT 0,
    first_failure_at  timestamptz NOT NULL DEFAULT now(),
    last_failure_at   timestamptz NOT NULL DEFAULT now(),
    blocked_until     timestamptz,
    last_protocol     text,
    CONSTRAINT auth_attempts_key_check CHECK (ip IS NOT NULL OR username IS NOT NULL),
    CONSTRAINT auth_attempts_key UNIQUE NULLS NOT DISTINCT (ip, username)
);

CREATE INDEX auth_attempts_blocked_idx ON auth_attempts (blocked_until)
    WHERE blocked_until IS NOT NULL;
CREATE INDEX auth_attempts_last_failure_idx ON auth_attempts (last_failure_at);
CREATE INDEX auth_attempts_username_idx ON auth_attempts (lower(username))
    WHERE username IS NOT NULL;

-- ---------------------------------------------------------------------------
-- Sieve
-- ---------------------------------------------------------------------------

-- ManageSieve scripts; at most one active per account.
CREATE TABLE sieve_scripts (
    id          bigserial PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        text COLLATE "C" NOT NULL,
    script      text NOT NULL,
    active      boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sieve_scripts_name_check CHECK (length(name) BETWEEN 1 AND 512)
);

CREATE UNIQUE INDEX sieve_scripts_account_name_idx ON sieve_scripts (account_id, name);
CREATE UNIQUE INDEX sieve_scripts_one_active_idx ON sieve_scripts (account_id) WHERE active;

-- Who a vacation action has answered, and when, so that the :days/:seconds
-- period of RFC 5230 holds across deliveries and nodes. handle identifies
-- the vacation action (RFC 5230 4.2).
CREATE TABLE sieve_vacation_responses (
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    handle      text NOT NULL,
    sender      text NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, handle, sender)
);

CREATE INDEX sieve_vacation_responses_sent_idx ON sieve_vacation_responses (sent_at);
