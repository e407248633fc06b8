"""Mailbox operations of the store (backend/store/mailbox.h) against a real
PostgreSQL.

The store is a library, so its live checks are a cmocka program
(tests/unit/backend/store/test-mailbox-live.c) that skips itself unless it
is told where a database is. This test gives it a fresh database with the
schema applied by `sora-admin migrate up` (the `admin` fixture), runs it,
requires every case to pass (none skipped), and then checks the tree it
left behind with SQL: every parent_id names the mailbox one level up.
"""
import os
import re
import subprocess

import pytest

from sorafix.common import ROOT

BUILD = os.environ.get("SORA_BUILD", os.path.join(ROOT, "build"))
LIVE = os.path.join(BUILD, "tests", "backend", "store", "test-mailbox-live")


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


def test_mailbox_live(admin, pg):
    _need_binary()
    env = dict(os.environ)
    env.update({
        "SORA_TEST_PG_HOST": pg.host,
        "SORA_TEST_PG_PORT": str(pg.port),
        "SORA_TEST_PG_DBNAME": admin.dbname,
        "SORA_TEST_PG_USER": "postgres",
    })
    p = subprocess.run([LIVE], env=env, capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    ran = re.search(r"^\[=+\] (\d+) test\(s\) run", out, re.M)
    passed = re.search(r"^\[  PASSED  \] (\d+) test", out, re.M)
    assert ran and passed, out
    assert int(ran.group(1)) >= 8, out
    assert passed.group(1) == ran.group(1), out
    assert "SKIPPED" not in out and "FAILED" not in out, out
    print(out)
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
    drift = admin.sql(
        "SELECT s.mailbox_id FROM mailbox_stats s LEFT JOIN LATERAL"
        " (SELECT count(*) AS c, coalesce(sum(size), 0) AS sz FROM messages m"
        "  WHERE m.mailbox_id = s.mailbox_id AND m.expunged_at IS NULL) r ON true"
        " WHERE s.message_count <> r.c OR s.total_size <> r.sz")
    assert drift.strip() == "", drift
    # No \\Noselect mailbox is left without children.
    orphans = admin.sql(
        "SELECT name FROM mailboxes m WHERE noselect"
        " AND NOT EXISTS (SELECT 1 FROM mailboxes c WHERE c.parent_id = m.id)")
    assert orphans.strip() == "", orphans
