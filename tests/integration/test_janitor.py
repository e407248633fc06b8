"""The backend's janitor (backend/store/janitor.h), whose first pass runs at
start-up: expired LMTP delivery keys are pruned, and staged bodies that no
pending_uploads row names are removed once they are an hour old, while
bodies still waiting for upload and recent files stay."""
import hashlib
import os
import time

from sorafix.common import free_port
from test_uploader import INSTANCE, create_account

HOUR = 3600


def test_janitor_prunes_delivery_keys_and_orphaned_staging(tmp_path, pg, pgdb, sora_servers):
    port = free_port()
    staging = tmp_path / "staging"
    cfg = (f'hostname = "{INSTANCE}"\nevent_loops = 1\nworker_threads = 2\n'
           + pg.config_block(pgdb)
           + '[logging]\nlevel = "info"\n'
           + f'[storage]\nbackend = "fs"\nfs_path = "{tmp_path}/blobs"\n'
           + f'[uploader]\npath = "{staging}"\n'
           + f'[servers.imap]\naddr = "127.0.0.1:{port}"\n')
    create_account(tmp_path, cfg, "jan@example.com")
    acct = int(pg.psql("SELECT account_id FROM credentials WHERE address='jan@example.com'",
                       db=pgdb))
    mbox = int(pg.psql(f"INSERT INTO mailboxes (account_id, name) VALUES ({acct}, 'INBOX')"
                       " RETURNING id", db=pgdb).split()[0])

    def key(i):
        return hashlib.blake2b(f"delivery {i}".encode(), digest_size=32).hexdigest()

    # Three keys past the 7-day window, two inside it.
    for i, age in enumerate(["8 days", "30 days", "7 days 1 hour", "6 days", "1 minute"]):
        pg.psql("INSERT INTO message_deliveries (mailbox_id, delivery_key, created_at)"
                f" VALUES ({mbox}, '{key(i)}', now() - interval '{age}')", db=pgdb)

    d = staging / str(acct)
    d.mkdir(parents=True)

    def staged(body, age):
        h = hashlib.blake2b(body, digest_size=32).hexdigest()
        p = d / h
        p.write_bytes(body)
        t = time.time() - age
        os.utime(p, (t, t))
        return h, p

    _, orphan_old = staged(b"orphan, two hours old", 2 * HOUR)
    _, orphan_new = staged(b"orphan, written a minute ago", 60)
    waiting_hash, waiting = staged(b"still waiting for its upload", 2 * HOUR)
    # A row the uploader will not take (given up): the body must stay.
    pg.psql("INSERT INTO pending_uploads (account_id, content_hash, size, instance_id,"
            f" next_attempt_at) VALUES ({acct}, '{waiting_hash}', 28, '{INSTANCE}', 'infinity')",
            db=pgdb)

    srv = sora_servers("sora-backend", cfg, [port])
    srv.wait_log("janitor: removed 3 expired delivery key(s) and 1 orphaned staged body",
                 timeout=20)
    assert not orphan_old.exists()
    assert orphan_new.exists() and waiting.exists()
    left = pg.psql("SELECT delivery_key FROM message_deliveries ORDER BY created_at",
                   db=pgdb).split()
    assert left == [key(3), key(4)]
    # Nothing stays in the aside directory.
    assert list((staging / "aside").iterdir()) == []
    assert f"removed staged body {orphan_old.name} of account {acct}" in srv.log()
