"""Mailbox operations of the store (backend/store/mailbox.h) against a real
PostgreSQL.

The store is a library, so its live checks are a cmocka program
(tests/unit/backend/store/test-mailbox-live.c) that skips itself unless it
is told where a database is. This test gives it a fresh database with the
schema applied by `sora-admin migrate up` (the `admin` fixture), runs it,
requires every case to pass (none skipped), and then checks the tree it
left behind with SQL: every parent_id names the mailbox one level up.
"""


from sorafix.live import assert_counters_exact, live_binary, run_with_database, run_without_database

LIVE = "test-mailbox-live"


def test_live_program_skips_without_database():
    """Without the environment the program must skip, not pass vacuously."""
    run_without_database(live_binary(LIVE), passed=0)


def test_mailbox_live(admin, pg):
    out = run_with_database(live_binary(LIVE), admin, pg, min_tests=8)
    assert "concurrent tree changes:" in out, out

    # The tree the program left is consistent: a parent is the name one
    # level up in the same account, top-level names have none.
    bad = admin.sql(
        "SELECT c.account_id, c.name FROM mailboxes c LEFT JOIN mailboxes p ON p.id = c.parent_id"
        " WHERE (position('/' IN c.name) = 0 AND c.parent_id IS NOT NULL)"
        "    OR (position('/' IN c.name) > 0 AND (p.id IS NULL OR p.account_id <> c.account_id"
        "        OR c.name <> p.name || '/' || reverse(split_part(reverse(c.name), '/', 1))))")
    assert bad.strip() == "", bad
    # The counters the triggers keep agree with the rows.
    assert_counters_exact(admin)
    # No \\Noselect mailbox is left without children.
    orphans = admin.sql(
        "SELECT name FROM mailboxes m WHERE noselect"
        " AND NOT EXISTS (SELECT 1 FROM mailboxes c WHERE c.parent_id = m.id)")
    assert orphans.strip() == "", orphans
