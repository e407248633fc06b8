"""FETCH of bodies stored in S3 with client-side encryption: a large body
(past the cache's object size, so it is not cached) comes back byte-exact
and is downloaded once, not once per 64 KiB slice."""
import os
import re
import smtplib
import socket

from sorafix.common import free_port, wait_for
from sorafix.imap import RawImap
from sorafix.sora_admin import Admin

KEY = "11" * 32


def test_fetch_large_encrypted_body_from_s3(tmp_path, pg, pgdb, s3, sora_servers):
    port, lmtp = free_port(), free_port()
    staging = tmp_path / "staging"
    cfg = ('hostname = "node-a.test"\nevent_loops = 1\nworker_threads = 2\n'
           + pg.config_block(pgdb)
           + '[storage]\nbackend = "s3"\n' + s3.config_block(encrypt=True, key=KEY)
           + f'[uploader]\npath = "{staging}"\nworkers = 2\nretry_interval = "1s"\n'
           + f'[local_cache]\npath = "{tmp_path}/cache"\nmax_object_size = "64kb"\n'
           + f'[servers.imap]\naddr = "127.0.0.1:{port}"\ninsecure_auth = true\n'
           + f'[servers.lmtp]\naddr = "127.0.0.1:{lmtp}"\n')
    admin = Admin(pg, pgdb, str(tmp_path))
    admin.ok("migrate", "up")
    admin.ok("accounts", "create", "--email", "bob@example.com", "--password", "pw", "--hash", "ssha512")
    server = sora_servers("sora-backend", cfg, [port, lmtp])
    body = "".join(f"line {i:07d} " + "z" * 60 + "\r\n" for i in range(30000))   # ~2.2 MB
    msg = ("From: a@example.org\r\nTo: bob@example.com\r\nSubject: big\r\n\r\n" + body).encode()
    with smtplib.LMTP("127.0.0.1", lmtp, timeout=30) as l:
        l.sendmail("a@example.org", ["bob@example.com"], msg)
    # Uploaded: gone from staging, so reads go to S3.
    wait_for(lambda: pg.psql("SELECT count(*) FROM pending_uploads", db=pgdb).strip() == "0",
             timeout=30, what="upload")
    # (.sora-lock stays: every open store holds it.)
    wait_for(lambda: not any(f for _, _, files in os.walk(staging) for f in files
                             if f != ".sora-lock"), timeout=10,
             what="staging emptied")
    # s3rver logs every request: "<bucket>/<key> 200 33ms 2.15mb"; a body
    # transfer is a line that ends with its size.
    body_gets = re.compile(rb"200 \d+ms \d[\d.]*[kmg]?b")
    s3_log_before = len(open(s3.log_path, "rb").read())
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    r = RawImap(s)
    r.login("bob@example.com", "pw")
    r.cmd("s", "SELECT INBOX")
    r.send("f FETCH 1 BODY.PEEK[]\r\n")
    head = r.line()
    n = int(re.search(r"\{(\d+)\}$", head).group(1))
    stored = r.read_exact(n)
    assert r.until("f")[-1].startswith("f OK")
    assert stored.endswith(msg), (len(stored), len(msg))
    r.close()
    log = open(s3.log_path, "rb").read()[s3_log_before:]
    gets = len(body_gets.findall(log))
    # One GET for the body (plus HEADs); slice by slice would be 35.
    assert 1 <= gets <= 2, log.decode(errors="replace")
    assert server.proc.poll() is None
