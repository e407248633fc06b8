-- Sora schema, migration 0008: the SORT keys of messages whose first
-- From, To or Cc entry is a group (RFC 5256 2.2, RFC 5957).
--
-- The sort_* columns (0001) are computed when a row is written
-- (backend/store/msg-meta.c), so SORT is one ORDER BY. Before this version
-- a group ("team: a@x.org, b@y.org;", "undisclosed-recipients:;") was
-- skipped and its first member counted. IMAP's ENVELOPE lists the group's
-- start first, whose addr-mailbox is the group name; SORT FROM/TO/CC and
-- DISPLAYFROM/DISPLAYTO now use that name, as Dovecot does (imaptest's
-- sort-addresses and sort-display-to check it).
--
-- Rows written before are fixed here from the raw header values kept in
-- messages.envelope: a field that starts with a plain phrase and a colon
-- starts with a group, and the phrase (white space collapsed) is its name.
-- Names with quoted strings, comments or encoded words are left alone:
-- decoding them needs the parser in C. One pass over messages, touching
-- only the rows that match.
UPDATE messages m SET
    sort_from = coalesce(g.f, m.sort_from),
    sort_display_from = coalesce(g.f, m.sort_display_from),
    sort_to = coalesce(g.t, m.sort_to),
    sort_display_to = coalesce(g.t, m.sort_display_to),
    sort_cc = coalesce(g.c, m.sort_cc)
FROM (
    SELECT id,
           btrim(regexp_replace(substring(envelope->>'from' FROM r), '[ \t]+', ' ', 'g')) AS f,
           btrim(regexp_replace(substring(envelope->>'to' FROM r), '[ \t]+', ' ', 'g')) AS t,
           btrim(regexp_replace(substring(envelope->>'cc' FROM r), '[ \t]+', ' ', 'g')) AS c
    FROM messages,
         (SELECT '^[ \t]*([^]:"<>@,;()\\=\n \t[][^]:"<>@,;()\\=\n[]*):'::text AS r) re
    WHERE envelope IS NOT NULL
      AND (envelope->>'from' ~ r OR envelope->>'to' ~ r OR envelope->>'cc' ~ r)
) g
WHERE m.id = g.id;
