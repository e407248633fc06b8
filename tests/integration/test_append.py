"""IMAP APPEND in the store (sora_store_append, backend/store/deliver.h)
against a real PostgreSQL and an fs blob store.

Like test_mailbox.py: the live checks are a cmocka program
(tests/unit/backend/store/test-append-live.c) that skips its database cases
unless told where a database is. This test gives it a fresh database with
the schema applied by `sora-admin migrate up`, requires every case to pass,
and then checks with SQL what it left behind: the counters agree with the
rows and UIDs are unique and below uid_next in every mailbox.
"""

from sorafix.live import assert_counters_exact, live_binary, run_with_database, run_without_database

LIVE = "test-append-live"


def test_append_live_skips_without_database():
    """Without the environment the database cases skip, not pass vacuously."""
    run_without_database(live_binary(LIVE), passed=1)


def test_append_live(admin, pg):
    out = run_with_database(live_binary(LIVE), admin, pg, min_tests=8)
    assert "staging:" in out and "direct:" in out, out

    assert_counters_exact(admin)
    bad_uids = admin.sql(
        "SELECT m.mailbox_id, m.uid FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
        " WHERE m.uid >= b.uid_next OR m.created_modseq > b.highest_modseq")
    assert bad_uids.strip() == "", bad_uids
