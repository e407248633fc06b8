"""The pipelined batch transaction behind group commit
(sora_db_exec_prepared_batch, common/db/db.h) against a real PostgreSQL.

The checks are a cmocka program (tests/unit/backend/store/
test-db-batch-live.c) that skips its cases unless told where a database
is; this test runs it both ways and requires every case to pass with one.
"""

from sorafix.live import live_binary, run_with_database, run_without_database

LIVE = "test-db-batch-live"


def test_db_batch_live_skips_without_database():
    """Without the environment the cases skip, not pass vacuously."""
    run_without_database(live_binary(LIVE), passed=0)


def test_db_batch_live(admin, pg):
    run_with_database(live_binary(LIVE), admin, pg, min_tests=7)
    # Whatever the failing cases tried, only the committed batches are
    # left: 5 + 64 + 3 rows.
    assert admin.sql("SELECT count(*) FROM batch_test").strip() == "72"
