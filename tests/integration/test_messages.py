"""Message store of a selected mailbox (backend/store/messages.h) against a
real PostgreSQL.

The store is a library, so its live checks are a cmocka program
(tests/unit/backend/store/test-messages-live.c) that skips itself unless it
is told where a database is. This test gives it a fresh database with the
schema applied by `sora-admin migrate up` (the `admin` fixture, so migration
0004 is in place), runs it, requires every case to pass (none skipped), and
then checks with SQL what it left behind: the trigger-kept counters agree
with the rows, no UID or modseq is past its mailbox's counters, and no UID
is claimed \\Recent beyond uid_next.
"""
import os


from sorafix.common import ROOT
from sorafix.live import assert_counters_exact, live_binary, run_with_database, run_without_database

LIVE = "test-messages-live"


def test_live_program_skips_without_database():
    """Without the environment the program must skip, not pass vacuously."""
    run_without_database(live_binary(LIVE), passed=0)


def test_messages_live(admin, pg):
    out = run_with_database(live_binary(LIVE), admin, pg, min_tests=10)
    for line in ("concurrent STORE:", "concurrent COPY/MOVE:", "concurrent \\Recent:",
                 "open of 100000 messages: best"):
        assert line in out, out

    # The counters the triggers keep agree with the rows, for every
    # mailbox the program touched.
    assert_counters_exact(admin)
    # No message is past its mailbox's UID or modseq counters, and \\Recent
    # claims never run ahead of uid_next.
    bad = admin.sql(
        "SELECT m.mailbox_id, m.uid FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
        " WHERE m.uid >= b.uid_next OR m.updated_modseq > b.highest_modseq"
        " OR m.expunged_modseq > b.highest_modseq OR m.created_modseq > m.updated_modseq")
    assert bad.strip() == "", bad
    ahead = admin.sql("SELECT id FROM mailboxes WHERE recent_uid > uid_next")
    assert ahead.strip() == "", ahead


def test_migration_0004_starts_recent_at_uid_next(admin):
    """Mailboxes that exist when 0004 runs do not report old mail as
    \\Recent; new ones start at 1."""
    assert admin.sql("SELECT column_default FROM information_schema.columns"
                     " WHERE table_name = 'mailboxes' AND column_name = 'recent_uid'"
                     ).strip() == "1"
    assert admin.sql("SELECT count(*) FROM pg_indexes"
                     " WHERE indexname = 'messages_mailbox_live_uid_idx'").strip() == "1"
    sql = open(os.path.join(ROOT, "backend", "store", "migrations", "0004_imap.sql")).read()
    assert "UPDATE mailboxes SET recent_uid = uid_next" in sql
