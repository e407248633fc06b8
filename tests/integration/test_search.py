"""SEARCH in PostgreSQL (backend/store/search.h) against a real database.

The store is a library, so its live checks are a cmocka program
(tests/unit/backend/store/test-search-live.c) that skips itself unless it is
told where a database is. This test gives it a fresh database with the
schema applied by `sora-admin migrate up` (the `admin` fixture), runs it,
requires every case to pass (none skipped), prints the timing it measured
over 10,000 messages, and checks with SQL that the SQL-looking search
strings left the schema alone.
"""
import re


from sorafix.live import assert_counters_exact, live_binary, run_with_database, run_without_database

LIVE = "test-search-live"


def test_search_live_program_skips_without_database():
    """Without the environment the program must skip, not pass vacuously."""
    run_without_database(live_binary(LIVE), passed=0)


def test_search_live(admin, pg):
    out = run_with_database(live_binary(LIVE), admin, pg, min_tests=10)
    print(out)
    timing = re.search(r"search timing over 10000 messages: BODY ([\d.]+) ms, FROM ([\d.]+) ms",
                       out)
    assert timing, out
    # SORT over the same size of mailbox: one statement each (the cmocka
    # program checks the cap and the order).
    assert re.search(r"sort timing over 10000 messages: FROM ([\d.]+) ms, REVERSE ARRIVAL ([\d.]+) ms",
                     out), out

    # "'; DROP TABLE messages; --" was searched for, not run.
    assert admin.sql("SELECT to_regclass('messages') IS NOT NULL").strip() == "t"
    assert int(admin.sql("SELECT count(*) FROM messages").strip()) > 10000
    # The rows the program inserted kept the counters right.
    assert_counters_exact(admin)
