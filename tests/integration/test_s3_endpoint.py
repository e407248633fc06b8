"""[s3] endpoint written as a URL: the scheme decides TLS (docs/storage.md).

The loader used to refuse "http://host:port" although the S3 driver and the
docs took it. Here the endpoint is "http://127.0.0.1:PORT/" with use_ssl
left at its default (true): a staged body must still reach the
(plain-HTTP) s3rver, which it could not if use_ssl won.
"""
import hashlib
import subprocess

from sorafix.common import bin_path, free_port, wait_for

INSTANCE = "url-endpoint.test"


def test_http_url_endpoint_uploads(tmp_path, pg, pgdb, s3, sora_servers):
    port = free_port()
    block = s3.config_block().replace(f'endpoint = "{s3.endpoint}"',
                                      f'endpoint = "http://{s3.endpoint}/"')
    block = block.replace("use_ssl = false\n", "")
    assert "http://" in block and "use_ssl" not in block
    cfg = (f'hostname = "{INSTANCE}"\nevent_loops = 1\nworker_threads = 2\n'
           + pg.config_block(pgdb)
           + '[storage]\nbackend = "s3"\n' + block
           + f'[uploader]\npath = "{tmp_path}/staging"\nretry_interval = "1s"\n'
           + f'[local_cache]\npath = "{tmp_path}/cache"\n'
           + f'[servers.imap]\naddr = "127.0.0.1:{port}"\n')
    path = tmp_path / "s3url.toml"
    path.write_text(cfg)
    r = subprocess.run([bin_path("sora-backend"), "--config", str(path), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for args in (["migrate", "up"], ["accounts", "create", "--email", "url@example.com",
                                     "--password-stdin", "--hash", "ssha512"]):
        r = subprocess.run([bin_path("sora-admin"), "--config", str(path), *args],
                           input="pw\n", capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    acct = int(pg.psql("SELECT account_id FROM credentials WHERE address='url@example.com'", db=pgdb))

    body = b"Subject: url endpoint\r\n\r\nhello\r\n"
    h = hashlib.blake2b(body, digest_size=32).hexdigest()
    (tmp_path / "staging" / str(acct)).mkdir(parents=True)
    (tmp_path / "staging" / str(acct) / h).write_bytes(body)
    pg.psql("INSERT INTO pending_uploads (account_id, content_hash, size, instance_id) VALUES "
            f"({acct}, '{h}', {len(body)}, '{INSTANCE}')", db=pgdb)

    sora_servers("sora-backend", cfg, [port])
    wait_for(lambda: pg.psql("SELECT count(*) FROM pending_uploads", db=pgdb).strip() == "0",
             timeout=30, what="the upload")
    got = s3.boto3().get_object(Bucket=s3.bucket, Key=f"{h[:2]}/{acct}/{h}")["Body"].read()
    assert got == body
