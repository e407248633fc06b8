"""The uploader moves staged bodies to S3 (the SigV4-verifying s3rver):
retries while S3 is away, survives kill -9, never duplicates or loses a body.

Bodies are staged the way a delivery stages them: the file under
<staging>/<account_id>/<blake2b-256 hex> plus a pending_uploads row with this
node's instance id (the config's hostname)."""
import hashlib
import os
import re
import signal
import subprocess
import time

import pytest

from sorafix.common import bin_path, free_port, wait_for

INSTANCE = "node-a.test"


def make_config(tmp_path, pg, dbname, s3, port, encrypt_key=None):
    staging = tmp_path / "staging"
    return (f'hostname = "{INSTANCE}"\nevent_loops = 1\nworker_threads = 2\n'
            + pg.config_block(dbname)
            + '[logging]\nlevel = "debug"\n'
            + '[storage]\nbackend = "s3"\n'
            + s3.config_block(encrypt=encrypt_key is not None, key=encrypt_key)
            + f'[uploader]\npath = "{staging}"\nworkers = 3\nretry_interval = "1s"\n'
            + f'[local_cache]\npath = "{tmp_path}/cache"\n'
            + f'[servers.imap]\naddr = "127.0.0.1:{port}"\n')


def create_account(tmp_path, cfg_text, email):
    cfg = tmp_path / "admin.toml"
    cfg.write_text(cfg_text)
    r = subprocess.run([bin_path("sora-admin"), "--config", str(cfg), "migrate", "up"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([bin_path("sora-admin"), "--config", str(cfg), "accounts", "create",
                        "--email", email, "--password-stdin", "--hash", "ssha512"],
                       input="pw\n", capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def stage(pg, dbname, staging, account_id, bodies):
    d = staging / str(account_id)
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for body in bodies:
        h = hashlib.blake2b(body, digest_size=32).hexdigest()
        (d / h).write_bytes(body)
        rows.append(f"({account_id}, '{h}', {len(body)}, '{INSTANCE}')")
    pg.psql("INSERT INTO pending_uploads (account_id, content_hash, size, instance_id) VALUES "
            + ",".join(rows) + " ON CONFLICT DO NOTHING", db=dbname)


def pending(pg, dbname):
    return int(pg.psql("SELECT count(*) FROM pending_uploads", db=dbname).strip())


def s3_objects(s3, account_id=None):
    """Keys in the bucket; with account_id only content-addressed body keys
    of that account (other tests share the bucket, and s3rver cannot delete
    some of their special-character keys)."""
    client = s3.boto3()
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    if account_id is not None:
        keys = [k for k in keys if re.fullmatch(rf"[0-9a-f]{{2}}/{account_id}/[0-9a-f]{{64}}", k)]
    return client, keys


@pytest.fixture
def clean_bucket(s3):
    client, keys = s3_objects(s3)
    for k in keys:
        client.delete_object(Bucket=s3.bucket, Key=k)
    yield


def test_uploads_survive_s3_outage(tmp_path, pg, pgdb, s3, sora_servers, clean_bucket):
    port = free_port()
    cfg = make_config(tmp_path, pg, pgdb, s3, port)
    create_account(tmp_path, cfg, "up@example.com")
    acct = int(pg.psql("SELECT account_id FROM credentials WHERE address='up@example.com'", db=pgdb))
    bodies = [f"Subject: {i}\r\n\r\nbody {i}\r\n".encode() * (i + 1) for i in range(20)]

    s3.stop()
    try:
        srv = sora_servers("sora-backend", cfg, [port])
        stage(pg, pgdb, tmp_path / "staging", acct, bodies)
        srv.wait_log("uploader:", timeout=15)
        time.sleep(2)
        # S3 is down: nothing may be dropped, rows record the error.
        assert pending(pg, pgdb) == 20
        errs = pg.psql("SELECT count(*) FROM pending_uploads WHERE last_error IS NOT NULL", db=pgdb)
        assert int(errs) > 0
    finally:
        s3.start()
    wait_for(lambda: pending(pg, pgdb) == 0, timeout=60, what="uploads after S3 returned")
    client, keys = s3_objects(s3, acct)
    assert len(keys) == 20
    for body in bodies:
        h = hashlib.blake2b(body, digest_size=32).hexdigest()
        key = f"{h[:2]}/{acct}/{h}"
        assert client.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == body
        # Moved out of staging once uploaded.
        assert not (tmp_path / "staging" / str(acct) / h).exists()


def test_kill9_during_uploads_loses_and_duplicates_nothing(tmp_path, pg, pgdb, s3, sora_servers,
                                                          clean_bucket):
    port = free_port()
    key = "0f" * 32
    cfg = make_config(tmp_path, pg, pgdb, s3, port, encrypt_key=key)
    create_account(tmp_path, cfg, "crash@example.com")
    acct = int(pg.psql("SELECT account_id FROM credentials WHERE address='crash@example.com'", db=pgdb))
    bodies = [os.urandom(2000 + 97 * i) for i in range(150)]
    stage(pg, pgdb, tmp_path / "staging", acct, bodies)

    srv = sora_servers("sora-backend", cfg, [port], name="first")
    # Let it get going, then pull the plug mid-stream.
    wait_for(lambda: pending(pg, pgdb) < 140, timeout=30, what="some uploads")
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    left = pending(pg, pgdb)
    assert left > 0, "all uploads finished before the kill; the test proves nothing"

    sora_servers("sora-backend", cfg, [port], name="second")
    wait_for(lambda: pending(pg, pgdb) == 0, timeout=90, what="uploads after restart")
    client, keys = s3_objects(s3, acct)
    # Exactly once: one object per body, no strays.
    assert len(keys) == len(bodies) == len(set(keys))
    for body in bodies:
        h = hashlib.blake2b(body, digest_size=32).hexdigest()
        stored = client.get_object(Bucket=s3.bucket, Key=f"{h[:2]}/{acct}/{h}")["Body"].read()
        # Encrypted at rest: never the plaintext.
        assert stored != body and body[:64] not in stored
    staged = list((tmp_path / "staging" / str(acct)).glob("*"))
    assert staged == []


def test_graceful_stop_returns_unfinished_claims(tmp_path, pg, pgdb, s3, sora_servers,
                                                 clean_bucket):
    """A thread claims a batch of rows; on SIGTERM the rows it has not
    tried yet go back to the queue at once, without a lease and without
    counting an attempt, and the next start uploads them."""
    port = free_port()
    cfg = make_config(tmp_path, pg, pgdb, s3, port)
    create_account(tmp_path, cfg, "stop@example.com")
    acct = int(pg.psql("SELECT account_id FROM credentials WHERE address='stop@example.com'",
                       db=pgdb))
    bodies = [os.urandom(200_000 + i) for i in range(120)]
    stage(pg, pgdb, tmp_path / "staging", acct, bodies)

    srv = sora_servers("sora-backend", cfg, [port], name="first")
    wait_for(lambda: pending(pg, pgdb) < 115, timeout=30, what="some uploads")
    assert srv.stop() == 0
    left = pending(pg, pgdb)
    assert left > 0, "all uploads finished before the stop; the test proves nothing"
    leased, counted = pg.psql(
        "SELECT count(*) FILTER (WHERE next_attempt_at > now() + interval '1 minute'),"
        " count(*) FILTER (WHERE attempts <> 0) FROM pending_uploads", db=pgdb).strip().split("|")
    assert (int(leased), int(counted)) == (0, 0)

    sora_servers("sora-backend", cfg, [port], name="second")
    wait_for(lambda: pending(pg, pgdb) == 0, timeout=90, what="uploads after restart")
    _, keys = s3_objects(s3, acct)
    assert len(keys) == len(bodies)
