"""The blob store's S3 driver against the SigV4-verifying s3rver.

The blob store is a library, so its live checks are a cmocka program
(tests/unit/backend/blob/test-s3-live.c) that skips itself unless it is told
where an S3 server is. This test starts the server (the `s3` fixture), runs
the program against it, requires every case to pass (none skipped), and
then looks at what the program stored with an independent client (boto3):
keys with special characters arrive under exactly their names, encrypted
bodies are ciphertext with the expected header and length, and plaintext
bodies are stored as they are.
"""
import html
import math
import os
import re
import subprocess

import pytest

from sorafix.common import ROOT
from sorafix.s3 import ACCESS_KEY, SECRET_KEY

BUILD = os.environ.get("SORA_BUILD", os.path.join(ROOT, "build"))
LIVE = os.path.join(BUILD, "tests", "backend", "blob", "test-s3-live")

MAGIC = b"\x00SORAENC"
HEADER_LEN = 41
CHUNK = 64 * 1024
ABYTES = 17


def ciphertext_len(n):
    return HEADER_LEN + n + max(1, math.ceil(n / CHUNK)) * ABYTES


def run_live(s3, out_path, extra_env=None):
    if not os.path.exists(LIVE):
        pytest.fail(f"{LIVE} not built (make {os.path.relpath(LIVE, ROOT)})")
    env = dict(os.environ)
    env.update({
        "SORA_TEST_S3_ENDPOINT": s3.endpoint,
        "SORA_TEST_S3_BUCKET": s3.bucket,
        "SORA_TEST_S3_ACCESS_KEY": ACCESS_KEY,
        "SORA_TEST_S3_SECRET_KEY": SECRET_KEY,
        "SORA_TEST_S3_OUT": out_path,
    })
    env.update(extra_env or {})
    p = subprocess.run([LIVE], env=env, capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout + p.stderr


def test_live_program_skips_without_server():
    """Without the environment the program must skip, not pass vacuously."""
    if not os.path.exists(LIVE):
        pytest.fail(f"{LIVE} not built")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORA_TEST_S3_")}
    p = subprocess.run([LIVE], env=env, capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert re.search(r"^\[  PASSED  \] 0 test", out, re.M), out
    assert "SKIPPED" in out


def test_blob_s3_live(s3, tmp_path):
    out_path = str(tmp_path / "objects.tsv")
    rc, out = run_live(s3, out_path)
    assert rc == 0, out
    ran = re.search(r"^\[=+\] (\d+) test\(s\) run", out, re.M)
    passed = re.search(r"^\[  PASSED  \] (\d+) test", out, re.M)
    assert ran and passed, out
    assert int(ran.group(1)) >= 12, out
    assert passed.group(1) == ran.group(1), out
    assert "SKIPPED" not in out and "FAILED" not in out, out
    # The retries of the unreachable-server case were logged.
    assert "retrying in" in out

    with open(out_path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    kinds = {r[0] for r in rows}
    assert {"plain", "encrypted", "encrypted-large", "unencrypted"} <= kinds, rows

    client = s3.boto3()
    plain = [r for r in rows if r[0] == "plain"]
    assert len(plain) >= 9
    for _, key, value in plain:
        body = client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
        assert body == value.encode("utf-8"), key
    # Listing shows exactly those names: nothing was stored under a
    # differently encoded key. (s3rver escapes & and ' twice in listings,
    # hence the extra unescape.)
    prefix = plain[0][1].split("/")[0] + "/t/"
    listed = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix):
        listed.update(html.unescape(o["Key"]) for o in page.get("Contents", []))
    assert listed == {key for _, key, _ in plain}

    for kind, key, marker, size in (r for r in rows if r[0] in ("encrypted", "encrypted-large")):
        body = client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
        n = int(size)
        assert body.startswith(MAGIC), key
        assert body[8] == 1, "format version"
        assert len(body) == ciphertext_len(n), key
        if marker != "-":
            assert marker.encode() not in body
            assert b"Subject:" not in body
        # The key id is the same for both objects (one key).
        assert len(body[9:17]) == 8
    ids = {client.get_object(Bucket=s3.bucket, Key=r[1])["Body"].read()[9:17]
           for r in rows if r[0].startswith("encrypted")}
    assert len(ids) == 1

    for _, key, marker, size in (r for r in rows if r[0] == "unencrypted"):
        body = client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
        assert len(body) == int(size)
        assert marker.encode() in body
        assert not body.startswith(MAGIC)
