"""IMAP APPEND in the store (sora_store_append, backend/store/deliver.h)
against a real PostgreSQL and an fs blob store.

Like test_mailbox.py: the live checks are a cmocka program
(tests/unit/backend/store/test-append-live.c) that skips its database cases
unless told where a database is. This test gives it a fresh database with
the schema applied by `sora-admin migrate up`, requires every case to pass,
and then checks with SQL what it left behind: the counters agree with the
rows and UIDs are unique and below uid_next in every mailbox.
"""
import os
import re
import subprocess

from sorafix.common import ROOT

BUILD = os.environ.get("SORA_BUILD", os.path.join(ROOT, "build"))
LIVE = os.path.join(BUILD, "tests", "backend", "store", "test-append-live")


def _need_binary():
    if not os.path.exists(LIVE):
        raise AssertionError(f"{LIVE} not built (make {os.path.relpath(LIVE, ROOT)})")


def test_append_live_skips_without_database():
    """Without the environment the database cases skip, not pass vacuously."""
    _need_binary()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORA_TEST_PG_")}
    p = subprocess.run([LIVE], env=env, capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "SKIPPED" in out, out
    assert re.search(r"^\[  PASSED  \] 1 test", out, re.M), out


def test_append_live(admin, pg):
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
    assert int(ran.group(1)) >= 8, out
    assert passed.group(1) == ran.group(1), out
    assert "SKIPPED" not in out and "FAILED" not in out, out
    assert "staging:" in out and "direct:" in out, out

    drift = admin.sql(
        "SELECT s.mailbox_id FROM mailbox_stats s LEFT JOIN LATERAL"
        " (SELECT count(*) AS c, coalesce(sum(size), 0) AS sz,"
        "         count(*) FILTER (WHERE flags & 1 = 0) AS u,"
        "         count(*) FILTER (WHERE flags & 8 <> 0) AS d FROM messages m"
        "  WHERE m.mailbox_id = s.mailbox_id AND m.expunged_at IS NULL) r ON true"
        " WHERE s.message_count <> r.c OR s.total_size <> r.sz OR s.unseen_count <> r.u"
        "    OR s.deleted_count <> r.d")
    assert drift.strip() == "", drift
    bad_uids = admin.sql(
        "SELECT m.mailbox_id, m.uid FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
        " WHERE m.uid >= b.uid_next OR m.created_modseq > b.highest_modseq")
    assert bad_uids.strip() == "", bad_uids
