"""Schema migrations: sora-admin migrate up|status against a real PostgreSQL,
and the behaviour the schema itself guarantees (counters, constraints)."""
import glob
import os
import re
import subprocess
import time

from sorafix.common import ROOT, bin_path

MIGRATIONS_DIR = os.path.join(ROOT, "backend", "store", "migrations")
LOCK_KEY = 0x736f72616d696772  # SORA_MIGRATE_LOCK_KEY ("soramigr")


def migration_files():
    files = sorted(glob.glob(os.path.join(MIGRATIONS_DIR, "[0-9][0-9][0-9][0-9]_*.sql")))
    assert files, "no migration files found"
    out = []
    for f in files:
        m = re.match(r"(\d{4})_(.+)\.sql$", os.path.basename(f))
        out.append((int(m.group(1)), m.group(2)))
    return out


def test_fresh_database_then_idempotent(admin_empty):
    a = admin_empty
    files = migration_files()
    # Numbering has no gaps or duplicates.
    assert [v for v, _ in files] == list(range(1, len(files) + 1))

    status = a.ok("migrate", "status")
    for version, name in files:
        assert re.search(rf"^{version:04d}\s+{re.escape(name)}\s+pending", status, re.M), status
    # status creates nothing.
    assert a.sql("SELECT to_regclass('schema_migrations') IS NULL").strip() == "t"

    out = a.ok("migrate", "up")
    assert f"applied {len(files)} migration" in out
    rows = a.sql("SELECT version, name FROM schema_migrations ORDER BY version").split()
    assert rows == [f"{v}|{n}" for v, n in files]
    for table in ("accounts", "credentials", "mailboxes", "mailbox_stats", "messages",
                  "message_contents", "pending_uploads", "auth_attempts", "sieve_scripts",
                  "mailbox_acl", "sieve_vacation_responses"):
        assert a.sql(f"SELECT to_regclass('{table}') IS NOT NULL").strip() == "t", table
    assert a.sql("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'").strip() == "1"

    # Every file in the directory is embedded in the binary, and applied.
    status = a.ok("migrate", "status")
    for version, name in files:
        assert re.search(rf"^{version:04d}\s+{re.escape(name)}\s+applied\s+\d{{4}}-", status,
                         re.M), status
    assert f"{len(files)} applied, 0 pending" in status

    before = a.sql("SELECT version, applied_at FROM schema_migrations ORDER BY version")
    out = a.ok("migrate", "up")
    assert "up to date" in out
    assert a.sql("SELECT version, applied_at FROM schema_migrations ORDER BY version") == before


def test_concurrent_migrate_up_applies_once(admin_empty, pg):
    a = admin_empty
    # Hold the migration lock from another session so that both sora-admin
    # processes are certainly waiting on it at the same time.
    holder = subprocess.Popen(["psql", "-h", pg.host, "-p", str(pg.port), "-U", "postgres",
                               "-d", a.dbname, "-v", "ON_ERROR_STOP=1", "-qAt"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        holder.stdin.write(f"SELECT pg_advisory_lock({LOCK_KEY});\nSELECT 'locked';\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == ""  # pg_advisory_lock returns void
        assert holder.stdout.readline().strip() == "locked"

        argv = [bin_path("sora-admin"), "--config", a.config, "migrate", "up"]
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=a.workdir) for _ in range(2)]
        time.sleep(1.0)
        # Both are blocked on the advisory lock, none has applied anything.
        assert all(p.poll() is None for p in procs)
        waiting = a.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                        " AND NOT granted AND database = (SELECT oid FROM pg_database"
                        " WHERE datname = current_database())").strip()
        assert waiting == "2"

        holder.stdin.write(f"SELECT pg_advisory_unlock({LOCK_KEY});\n\\q\n")
        holder.stdin.flush()
        results = [p.communicate(timeout=60) for p in procs]
    finally:
        holder.stdin.close() if not holder.stdin.closed else None
        holder.wait(timeout=10)

    assert [p.returncode for p in procs] == [0, 0], results
    outs = [o for o, _ in results]
    assert sum("applied" in o and "up to date" not in o for o in outs) == 1, outs
    assert sum("up to date" in o for o in outs) == 1, outs
    n = len(migration_files())
    assert a.sql("SELECT count(*), count(DISTINCT version) FROM schema_migrations").strip() \
        == f"{n}|{n}"


def test_failed_migration_rolls_back(admin_empty):
    a = admin_empty
    # A table in the way makes 0001 fail half-way through.
    a.sql("CREATE TABLE mailboxes (id int)")
    r = a.run("migrate", "up")
    assert r.returncode == 1
    line = r.stderr.strip()
    assert "\n" not in line
    assert f"database {a.dbname} at 127.0.0.1:" in line
    assert "0001_init" in line and "already exists" in line
    # Nothing of it remains: not the tables before the failure, not the
    # bookkeeping table.
    assert a.sql("SELECT to_regclass('accounts') IS NULL,"
                 " to_regclass('schema_migrations') IS NULL").strip() == "t|t"


def test_status_flags_modified_and_unknown(admin):
    admin.sql("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
    admin.sql("INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'y')")
    out = admin.ok("migrate", "status")
    assert re.search(r"^0001\s+init\s+modified", out, re.M), out
    assert re.search(r"^9999\s+future\s+unknown", out, re.M), out
    # Nothing is pending, so up has nothing to do and health passes.
    assert "up to date" in admin.ok("migrate", "up")


def test_mailbox_counters_follow_messages(admin):
    a = admin
    a.ok("accounts", "create", "--email", "c@example.com", "--password", "pw")
    acc = a.sql("SELECT account_id FROM credentials WHERE address = 'c@example.com'").strip()
    a.sql(f"INSERT INTO mailboxes (account_id, name) VALUES ({acc}, 'INBOX'), ({acc}, 'Archive')")
    inbox, archive = a.sql(f"SELECT id FROM mailboxes WHERE account_id = {acc} ORDER BY id").split()
    h = "ab" * 32

    def stats(mb):
        return a.sql("SELECT message_count, unseen_count, deleted_count, total_size"
                     f" FROM mailbox_stats WHERE mailbox_id = {mb}").strip()

    assert stats(inbox) == "0|0|0|0"
    a.sql("INSERT INTO messages (account_id, mailbox_id, uid, content_hash, size)"
          f" SELECT {acc}, {inbox}, g, '{h}', 100 FROM generate_series(1, 10) g")
    assert stats(inbox) == "10|10|0|1000"
    a.sql(f"UPDATE messages SET flags = flags | 1 WHERE mailbox_id = {inbox} AND uid <= 4")
    a.sql(f"UPDATE messages SET flags = flags | 8 WHERE mailbox_id = {inbox} AND uid IN (9, 10)")
    assert stats(inbox) == "10|6|2|1000"
    # Two-phase expunge: the rows stay but stop counting.
    a.sql("UPDATE messages SET expunged_at = now(), expunged_modseq = 2"
          f" WHERE mailbox_id = {inbox} AND uid IN (9, 10)")
    assert stats(inbox) == "8|4|0|800"
    a.sql(f"UPDATE messages SET mailbox_id = {archive} WHERE mailbox_id = {inbox} AND uid = 1")
    assert stats(inbox) == "7|4|0|700"
    assert stats(archive) == "1|0|0|100"
    a.sql(f"DELETE FROM messages WHERE mailbox_id = {inbox} AND uid IN (2, 5, 9)")
    assert stats(inbox) == "5|3|0|500"
    # Deleting a mailbox (and the account) cascades without tripping the triggers.
    a.sql(f"DELETE FROM mailboxes WHERE id = {archive}")
    assert a.sql(f"SELECT count(*) FROM mailbox_stats WHERE mailbox_id = {archive}").strip() == "0"
    a.sql(f"DELETE FROM accounts WHERE id = {acc}")
    assert a.sql("SELECT count(*) FROM messages").strip() == "0"


def test_schema_constraints(admin):
    a = admin
    a.ok("accounts", "create", "--email", "k@example.com", "--password", "pw")
    acc = a.sql("SELECT account_id FROM credentials WHERE address = 'k@example.com'").strip()

    def fails(sql, needle):
        try:
            a.sql(sql)
        except RuntimeError as e:
            assert needle in str(e), str(e)
            return
        raise AssertionError(f"accepted: {sql}")

    # INBOX is only ever stored as "INBOX"; other names are case-sensitive.
    a.sql(f"INSERT INTO mailboxes (account_id, name) VALUES ({acc}, 'INBOX')")
    fails(f"INSERT INTO mailboxes (account_id, name) VALUES ({acc}, 'inbox')", "mailboxes_name_check")
    a.sql(f"INSERT INTO mailboxes (account_id, name) VALUES ({acc}, 'Work'), ({acc}, 'work')")
    fails(f"INSERT INTO mailboxes (account_id, name) VALUES ({acc}, 'Work')", "mailboxes_account_name_idx")
    # UIDVALIDITY differs for a re-created mailbox of the same name.
    v1 = a.sql(f"SELECT uid_validity FROM mailboxes WHERE account_id = {acc} AND name = 'Work'")
    a.sql(f"DELETE FROM mailboxes WHERE account_id = {acc} AND name = 'Work'")
    a.sql(f"INSERT INTO mailboxes (account_id, name) VALUES ({acc}, 'Work')")
    v2 = a.sql(f"SELECT uid_validity FROM mailboxes WHERE account_id = {acc} AND name = 'Work'")
    assert v1 != v2 and 0 < int(v2) < 2**32
    # Addresses are unique case-insensitively; one primary per account.
    fails(f"INSERT INTO credentials (account_id, address, password_hash) VALUES ({acc}, 'K@EXAMPLE.COM', 'x')",
          "credentials_address_lower_idx")
    fails(f"INSERT INTO credentials (account_id, address, password_hash, primary_identity)"
          f" VALUES ({acc}, 'k2@example.com', 'x', true)", "credentials_one_primary_idx")
    # One active Sieve script per account.
    a.sql(f"INSERT INTO sieve_scripts (account_id, name, script, active) VALUES ({acc}, 'a', 'keep;', true)")
    fails(f"INSERT INTO sieve_scripts (account_id, name, script, active) VALUES ({acc}, 'b', 'keep;', true)",
          "sieve_scripts_one_active_idx")
    # pending_uploads: one row per account and body.
    h = "cd" * 32
    a.sql(f"INSERT INTO pending_uploads (account_id, content_hash, size, instance_id) VALUES ({acc}, '{h}', 1, 'n1')")
    fails(f"INSERT INTO pending_uploads (account_id, content_hash, size, instance_id) VALUES ({acc}, '{h}', 1, 'n2')",
          "pending_uploads_account_hash_key")
    # The security guide's incident query works as written.
    a.sql("INSERT INTO auth_attempts (ip, failure_count, blocked_until)"
          " VALUES ('203.0.113.9', 12, now() + interval '5 minutes')")
    a.sql("INSERT INTO auth_attempts (ip, failure_count) VALUES ('203.0.113.9', 1)"
          " ON CONFLICT (ip, username) DO UPDATE SET failure_count = auth_attempts.failure_count + 1")
    out = a.sql("SELECT ip, blocked_until FROM auth_attempts WHERE blocked_until > now()")
    assert out.startswith("203.0.113.9|")
    assert a.sql("SELECT failure_count FROM auth_attempts WHERE ip = '203.0.113.9'").strip() == "13"
    # Subject searches can use the trigram index.
    assert a.sql("SELECT count(*) FROM pg_indexes WHERE indexname = 'messages_subject_trgm_idx'").strip() == "1"
