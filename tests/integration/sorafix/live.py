"""Running the store's live cmocka programs (tests/unit/backend/store/
test-*-live.c) against a database: they skip themselves unless told where
one is (SORA_TEST_PG_*), so each test checks both ways -- that the program
skips without a database instead of passing vacuously, and that every case
passes with one -- and then looks at what the program left behind."""
import os
import re
import subprocess

import pytest

from .common import ROOT

BUILD = os.environ.get("SORA_BUILD", os.path.join(ROOT, "build"))


def live_binary(name):
    path = os.path.join(BUILD, "tests", "backend", "store", name)
    if not os.path.exists(path):
        pytest.fail(f"{path} not built (make {os.path.relpath(path, ROOT)})")
    return path


def run_without_database(path, passed=0):
    """The program must skip its database cases (passed: how many cases do
    not need a database)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORA_TEST_PG_")}
    p = subprocess.run([path], env=env, capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert re.search(rf"^\[  PASSED  \] {passed} test", out, re.M), out
    assert "SKIPPED" in out, out


def run_with_database(path, admin, pg, min_tests, timeout=600):
    """Runs every case against admin's migrated database; all must pass and
    none skip. Returns the output (printed too)."""
    env = dict(os.environ)
    env.update({
        "SORA_TEST_PG_HOST": pg.host,
        "SORA_TEST_PG_PORT": str(pg.port),
        "SORA_TEST_PG_DBNAME": admin.dbname,
        "SORA_TEST_PG_USER": "postgres",
    })
    p = subprocess.run([path], env=env, capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    print(out)
    assert p.returncode == 0, out
    ran = re.search(r"^\[=+\] (\d+) test\(s\) run", out, re.M)
    passed = re.search(r"^\[  PASSED  \] (\d+) test", out, re.M)
    assert ran and passed, out
    assert int(ran.group(1)) >= min_tests, out
    assert passed.group(1) == ran.group(1), out
    assert "SKIPPED" not in out and "FAILED" not in out, out
    return out


def assert_counters_exact(admin):
    """The counters the triggers keep (mailbox_stats) agree with the rows."""
    drift = admin.sql(
        "SELECT s.mailbox_id FROM mailbox_stats s LEFT JOIN LATERAL"
        " (SELECT count(*) AS c, count(*) FILTER (WHERE flags & 1 = 0) AS u,"
        "  count(*) FILTER (WHERE flags & 8 <> 0) AS d, coalesce(sum(size), 0) AS sz"
        "  FROM messages m WHERE m.mailbox_id = s.mailbox_id AND m.expunged_at IS NULL) r"
        " ON true WHERE s.message_count <> r.c OR s.unseen_count <> r.u"
        " OR s.deleted_count <> r.d OR s.total_size <> r.sz")
    assert drift.strip() == "", drift
