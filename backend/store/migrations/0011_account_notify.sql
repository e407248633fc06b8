-- Sora schema, migration 0011: changes to accounts and credentials are
-- announced on channel 'sora_accounts'.
--
-- LMTP keeps the recipients it found for a while, so that RCPT TO for a
-- recipient seen a moment ago needs no lookup (docs/lmtp.md, "Recipients").
-- Every backend LISTENs on this channel and empties that cache on any
-- notification: a new, moved or removed address, a new primary identity,
-- an account deleted or restored. One notification per statement (and
-- PostgreSQL sends one per transaction for equal payloads); what changed
-- does not matter, the whole cache goes. Password changes and logins do not
-- notify: delivery does not depend on them.

CREATE FUNCTION sora_accounts_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sora_accounts', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER credentials_notify
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF address, account_id, primary_identity
    ON credentials FOR EACH STATEMENT EXECUTE FUNCTION sora_accounts_changed();

CREATE TRIGGER accounts_notify
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF id, deleted_at
    ON accounts FOR EACH STATEMENT EXECUTE FUNCTION sora_accounts_changed();
