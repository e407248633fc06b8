"""SEARCH in PostgreSQL (backend/store/search.h) against a real database.

The store is a library, so its live checks are a cmocka program
(tests/unit/backend/store/test-search-live.c) that skips itself unless it is
told where a database is. This test gives it a fresh database with the
schema applied by `sora-admin migrate up` (the `admin` fixture), runs it,
requires every case to pass (none skipped), prints the timing it measured
over 10,000 messages, and checks with SQL that the SQL-looking search
strings left the schema alone.
"""
import os
import re
import subprocess

import pytest

from sorafix.common import ROOT

BUILD = os.environ.get("SORA_BUILD", os.path.join(ROOT, "build"))
LIVE = os.path.join(BUILD, "tests", "backend", "store", "test-search-live")


def _need_binary():
    if not os.path.exists(LIVE):
        pytest.fail(f"{LIVE} not built (make {os.path.relpath(LIVE, ROOT)})")


def test_search_live_program_skips_without_database():
    """Without the environment the program must skip, not pass vacuously."""
    _need_binary()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORA_TEST_PG_")}
    p = subprocess.run([LIVE], env=env, capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert re.search(r"^\[  PASSED  \] 0 test", out, re.M), out
    assert "SKIPPED" in out


def test_search_live(admin, pg):
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
    assert p.returncode == 0, out
    ran = re.search(r"^\[=+\] (\d+) test\(s\) run", out, re.M)
    passed = re.search(r"^\[  PASSED  \] (\d+) test", out, re.M)
    assert ran and passed, out
    assert int(ran.group(1)) >= 10, out
    assert passed.group(1) == ran.group(1), out
    assert "SKIPPED" not in out and "FAILED" not in out, out
    print(out)
    timing = re.search(r"search timing over 10000 messages: BODY ([\d.]+) ms, FROM ([\d.]+) ms",
                       out)
    assert timing, out

    # "'; DROP TABLE messages; --" was searched for, not run.
    assert admin.sql("SELECT to_regclass('messages') IS NOT NULL").strip() == "t"
    assert int(admin.sql("SELECT count(*) FROM messages").strip()) > 10000
    # The rows the program inserted kept the counters right.
    drift = admin.sql(
        "SELECT s.mailbox_id FROM mailbox_stats s LEFT JOIN LATERAL"
        " (SELECT count(*) AS c FROM messages m"
        "  WHERE m.mailbox_id = s.mailbox_id AND m.expunged_at IS NULL) r ON true"
        " WHERE s.message_count <> r.c")
    assert drift.strip() == "", drift
