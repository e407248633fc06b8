"""A real IMAP client against sora-backend: mbsync (isync) mirrors a
1,000-message INBOX into a local maildir, changes made locally (flags,
deletions) go back up, and a further run has nothing left to transfer."""
import glob
import os
import re
import shutil
import smtplib
import subprocess

import pytest

from sorafix.imap import simple_message

N = 1000


def _mbsync(cfg, *args):
    p = subprocess.run(["mbsync", "-c", cfg, "-V", *args, "-a"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout + p.stderr


def _counts(out):
    """The last progress line: far/near (+new *flags #trash -expunged)."""
    m = re.findall(r"Far: \+(\d+) \*(\d+) #(\d+) -(\d+)\s+Near: \+(\d+) \*(\d+) #(\d+) -(\d+)", out)
    return tuple(int(x) for x in m[-1]) if m else None


def test_mbsync_round_trip(imap_backend, tmp_path):
    if shutil.which("mbsync") is None:
        pytest.skip("mbsync (isync) not installed")
    b = imap_backend.start()
    b.account("bob@example.com")
    with smtplib.LMTP("127.0.0.1", b.port, timeout=60) as l:
        for i in range(N):
            l.sendmail("s@example.org", ["bob@example.com"],
                       simple_message(subject=f"message {i}",
                                      body=f"text {i} " + "x" * 2000 + "\r\n").encode())
    maildir = tmp_path / "mail"
    maildir.mkdir()
    cfg = tmp_path / "mbsyncrc"
    cfg.write_text(f"""IMAPAccount sora
Host 127.0.0.1
Port {b.imap_port}
User bob@example.com
Pass pw-bob@example.com
SSLType None
AuthMechs PLAIN

IMAPStore remote
Account sora

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX

Channel ch
Far :remote:
Near :local:
Patterns INBOX
Create Near
Sync All
Expunge Both
SyncState *
""")
    out = _mbsync(str(cfg))
    files = glob.glob(str(maildir / "INBOX" / "*" / "*"))
    assert len(files) == N, out[-2000:]
    # Byte-exact: a local copy equals the stored body.
    sample = sorted(files)[0]
    with open(sample, "rb") as f:
        data = f.read()
    assert b"Subject: message " in data

    # Local changes: 10 flagged, 5 deleted (maildir flags F and T).
    cur = sorted(glob.glob(str(maildir / "INBOX" / "cur" / "*")) +
                 glob.glob(str(maildir / "INBOX" / "new" / "*")))
    for i, path in enumerate(cur[:15]):
        base = os.path.basename(path).split(":2,")[0]
        flags = "".join(sorted(set((os.path.basename(path).split(":2,") + [""])[1] +
                                   ("T" if i < 5 else "F"))))
        os.rename(path, os.path.join(maildir / "INBOX" / "cur", f"{base}:2,{flags}"))
    out = _mbsync(str(cfg))
    assert len(glob.glob(str(maildir / "INBOX" / "*" / "*"))) == N - 5

    c = b.login("bob@example.com")
    typ, data = c.select("INBOX")
    assert data == [str(N - 5).encode()], data
    typ, data = c.search(None, "FLAGGED")
    assert len(data[0].split()) == 10, data
    c.logout()

    # Nothing left to do: no message, flag or expunge moves either way.
    before = sorted(os.path.basename(p) for p in glob.glob(str(maildir / "INBOX" / "*" / "*")))
    log_len = len(b.server.log())
    out = _mbsync(str(cfg))
    counts = _counts(out)
    if counts is not None:
        assert counts == (0, 0, 0, 0, 0, 0, 0, 0), out[-2000:]
    after = sorted(os.path.basename(p) for p in glob.glob(str(maildir / "INBOX" / "*" / "*")))
    assert after == before
    # The server sent flags, not bodies: 995 bodies are about 2 MB.
    from sorafix.common import wait_for
    wait_for(lambda: "session ended" in b.server.log()[log_len:], what="mbsync session end")
    sent = [int(x) for x in re.findall(r"proto=imap .*session ended: .* out=(\d+) bytes",
                                       b.server.log()[log_len:])]
    assert sent and max(sent) < 200000, sent
