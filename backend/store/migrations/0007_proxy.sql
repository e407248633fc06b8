-- Sora schema, migration 0007: what sora-proxy needs (docs/proxy.md).
--
-- 1. accounts.backend: a per-user routing override. NULL (the default)
--    lets the consistent-hash ring choose; otherwise it names a backend by
--    host, or host:port, as it appears in the proxies' remote_addrs. Set
--    with `sora-admin accounts update --email E --backend HOST` (and
--    --backend "" to clear), e.g. to move a user before draining a node.
--
-- 2. connections: the sessions every server has open now, for
--    `sora-admin connections list`. Each proxy process inserts a row when
--    a relay starts and deletes it when the session ends; it also touches
--    heartbeat_at of its rows every 30 seconds, so the rows of a process
--    that died without cleaning up stop being listed (and are deleted by
--    the next heartbeat of any node) after 2 minutes.
--
-- 3. connection_kicks: `sora-admin connections kick` inserts a request and
--    sends NOTIFY sora_kick; every proxy LISTENs and also reads requests it
--    has not seen at each heartbeat, so one that was reconnecting to the
--    database when the notification went out still carries the kick out.

ALTER TABLE accounts ADD COLUMN backend text;

CREATE TABLE connections (
    node          text NOT NULL,
    session_id    text NOT NULL,
    protocol      text NOT NULL,
    username      text NOT NULL,
    client_addr   text NOT NULL,
    backend       text NOT NULL DEFAULT '',
    since         timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node, session_id)
);
CREATE INDEX connections_username_idx ON connections (lower(username));
CREATE INDEX connections_heartbeat_idx ON connections (heartbeat_at);

CREATE TABLE connection_kicks (
    id          bigserial PRIMARY KEY,
    username    text,
    protocol    text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
