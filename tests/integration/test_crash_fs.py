"""Bodies acknowledged over LMTP survive a crash of the machine: the fs
store is put on a loop-mounted ext4 image, mail is delivered, and the image
is copied as the disk holds it at that moment (what a power cut would leave:
the loop device has written everything the kernel sent it, nothing more).
e2fsck repairs the copy, as it would at boot, and every acknowledged body
must still be there, byte for byte.

Without a journal this caught an unnamed temp file (O_TMPFILE) linked into
place after its fsync: the inode went to disk with a link count of 0, and
e2fsck cleared the directory entries of every body delivered in the last
30 seconds (docs/storage.md). With a journal, e2fsck replays it.

Needs root (mount) and e2fsprogs; skipped otherwise."""
import os
import shutil
import smtplib
import subprocess

import pytest

from sorafix.common import wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("mkfs.ext4", "e2fsck", "mount")),
    reason="needs root, mount and e2fsprogs")

MSG = (b"From: Sender <sender@remote.test>\r\nTo: alice@example.com\r\n"
       b"Subject: crash test %d\r\nMessage-ID: <crash-%d@remote.test>\r\n\r\n")


def _run(*cmd, ok=(0,)):
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode in ok, f"{cmd}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def _mount(image, where, *opts):
    os.makedirs(where, exist_ok=True)
    p = subprocess.run(["mount", "-o", ",".join(("loop",) + opts), image, where],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot loop-mount an image here: {p.stderr.strip()}")


@pytest.mark.parametrize("journal", [False, True], ids=["no-journal", "journal"])
def test_acknowledged_bodies_survive_a_crash(lmtp_backend, tmp_path, journal):
    b = lmtp_backend
    acc = b.account("alice@example.com")
    image, mnt, copy, cmnt = (str(tmp_path / n) for n in ("fs.img", "mnt", "crash.img", "cmnt"))
    with open(image, "wb") as f:
        f.truncate(256 << 20)
    _run("mkfs.ext4", "-q", "-F", "-b", "4096", *(() if journal else ("-O", "^has_journal")),
         image)
    _mount(image, mnt)
    mounted = [mnt]
    try:
        b.blobs = os.path.join(mnt, "blobs")
        b.start()
        # Small bodies go through the page cache, 100 KB ones with O_DIRECT.
        sizes = [300, 10_000, 100_000, 250_000] * 5
        with smtplib.LMTP("127.0.0.1", b.port) as s:
            s.ehlo("client.test")
            for i, n in enumerate(sizes):
                body = MSG % (i, i) + (b"x" * 76 + b"\r\n") * (n // 78)
                assert s.sendmail("sender@remote.test", ["alice@example.com"], body) == {}
        stored = b.messages(acc)
        assert len(stored) == len(sizes)
        live = {h: b.body(acc, h) for _, h, _, _ in stored}
        # The disk as it is now: no sync, no unmount.
        _run("cp", "--sparse=always", image, copy)
        b.server.stop()
        # 0: clean, 1: errors fixed (free counts, always after a crash
        # without a journal), anything else: not repaired.
        fsck = _run("e2fsck", "-fy", copy, ok=(0, 1))
        _mount(copy, cmnt, "ro")
        mounted.append(cmnt)
        missing = []
        for h, data in live.items():
            p = os.path.join(cmnt, "blobs", h[:2], str(acc), h)
            if not os.path.exists(p):
                missing.append(h)
                continue
            with open(p, "rb") as f:
                assert f.read() == data, f"{p} differs after the crash"
        assert not missing, (f"{len(missing)} of {len(live)} acknowledged bodies lost:\n"
                             f"{fsck.stdout}")
        # Free counts are fixed after any crash without a journal; an entry
        # cleared or a directory rebuilt means something was not synced.
        for bad in ("Clear", "corrupted", "Deleted inode", "Missing"):
            assert bad not in fsck.stdout, fsck.stdout
    finally:
        if b.server is not None:
            b.server.stop()
        for m in reversed(mounted):
            wait_for(lambda: subprocess.run(["umount", m]).returncode == 0,
                     what=f"unmount {m}")
