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
import re
import subprocess

import pytest

from sorafix.common import ROOT

BUILD = os.environ.get("SORA_BUILD", os.path.join(ROOT, "build"))
LIVE = os.path.join(BUILD, "tests", "backend", "store", "test-messages-live")


def _need_binary():
    if not os.path.exists(LIVE):
        pytest.fail(f"{LIVE} not built (make {os.path.relpath(LIVE, ROOT)})")


def test_live_program_skips_without_database():
    """Without the environment the program must skip, not pass vacuously."""
    _need_binary()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORA_TEST_PG_")}
    p = subprocess.run([LIVE], env=env, capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert re.search(r"^\[  PASSED  \] 0 test", out, re.M), out
    assert "SKIPPED" in out


def test_messages_live(admin, pg):
    _need_binary()
    env = dict(os.environ)
    env.update({
        "SORA_TEST_PG_HOST": pg.host,
        "SORA_TEST_PG_PORT": str(pg.port),
        "SORA_TEST_PG_DBNAME": admin.dbname,
        "SORA_TEST_PG_USER": "postgres",
    })
    p = subprocess.run([LIVE], env=env, capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    print(out)
    assert p.returncode == 0, out
    ran = re.search(r"^\[=+\] (\d+) test\(s\) run", out, re.M)
    passed = re.search(r"^\[  PASSED  \] (\d+) test", out, re.M)
    assert ran and passed, out
    assert int(ran.group(1)) >= 10, out
    assert passed.group(1) == ran.group(1), out
    assert "SKIPPED" not in out and "FAILED" not in out, out
    for line in ("concurrent STORE:", "concurrent COPY/MOVE:", "concurrent \\Recent:",
                 "open of 100000 messages: best"):
        assert line in out, out

    # The counters the triggers keep agree with the rows, for every
    # mailbox the program touched.
    drift = admin.sql(
        "SELECT s.mailbox_id FROM mailbox_stats s LEFT JOIN LATERAL"
        " (SELECT count(*) AS c, count(*) FILTER (WHERE flags & 1 = 0) AS u,"
        "  count(*) FILTER (WHERE flags & 8 <> 0) AS d, coalesce(sum(size), 0) AS sz"
        "  FROM messages m WHERE m.mailbox_id = s.mailbox_id AND m.expunged_at IS NULL) r"
        " ON true WHERE s.message_count <> r.c OR s.unseen_count <> r.u"
        " OR s.deleted_count <> r.d OR s.total_size <> r.sz")
    assert drift.strip() == "", drift
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
