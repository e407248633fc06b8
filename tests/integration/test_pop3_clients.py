"""POP3 on sora-backend with real clients: curl lists and retrieves
(pop3://), fetchmail downloads a mailbox through STLS with certificate
verification into an mbox, byte for byte, and deletes it."""
import os
import re
import stat
import subprocess
import sys

from sorafix.common import which
from sorafix.imap import simple_message


def _stored(b, email):
    acc = int(b.sql(f"SELECT account_id FROM credentials WHERE address = '{email}'"))
    return [b.body(acc, h) for uid, h, size, mb in b.messages(acc) if mb == "INBOX"]


def test_curl_lists_and_retrieves(pop3_backend):
    curl = which("curl")
    b = pop3_backend.start()
    b.account("bob@example.com")
    for i in range(3):
        b.deliver("bob@example.com", simple_message(subject=f"c{i}", body=f".dot {i}\r\nbody\r\n"))
    stored = _stored(b, "bob@example.com")
    url = f"pop3://127.0.0.1:{b.pop3_port}/"
    auth = ["--user", "bob@example.com:pw-bob@example.com"]
    out = subprocess.run([curl, "-sS", *auth, url], capture_output=True, timeout=30, check=True).stdout
    assert out.split(b"\r\n")[:3] == [f"{i + 1} {len(m)}".encode() for i, m in enumerate(stored)]
    for i, m in enumerate(stored):
        got = subprocess.run([curl, "-sS", *auth, url + str(i + 1)], capture_output=True,
                             timeout=30, check=True).stdout
        # curl undoes the byte-stuffing.
        assert got == m, (i, got[:200])


def test_fetchmail_downloads_mailbox_through_stls(pop3_backend, certs, tmp_path):
    fetchmail = which("fetchmail")
    # Plaintext only after STLS: loopback is not trusted here.
    b = pop3_backend.start(insecure_auth=False, top='trusted_networks = ["10.0.0.0/8"]\n',
                           certs=certs)
    b.account("bob@example.com")
    bodies = [simple_message(subject=f"f{i}", body=f"line one\r\n.dotted {i}\r\n\r\nlast\r\n")
              for i in range(5)]
    # One message with bare LF line ends and no final line end (APPEND).
    r = b.raw()
    r.login("bob@example.com")
    odd = b"Subject: odd\n\nbare lf\n.dot\nno end"
    r.send(f"a APPEND INBOX {{{len(odd)}+}}\r\n".encode() + odd + b"\r\n")
    assert r.until("a")[-1].startswith("a OK")
    r.close()
    for m in bodies:
        b.deliver("bob@example.com", m)
    stored = _stored(b, "bob@example.com")
    mbox = tmp_path / "mbox"
    mda = tmp_path / "mda.py"
    # An MDA that appends each message to an mbox, as fetchmail hands it
    # over (LF line ends).
    mda.write_text("import sys\n"
                   f"with open({str(mbox)!r}, 'ab') as f:\n"
                   "    f.write(b'From fetchmail Thu Jan  1 00:00:00 1970\\n')\n"
                   "    f.write(sys.stdin.buffer.read())\n"
                   "    f.write(b'\\n')\n")
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f'poll localhost via 127.0.0.1 protocol pop3 port {b.pop3_port}\n'
        f'  user "bob@example.com" there with password "pw-bob@example.com" is root here\n'
        f'  sslproto "tls1.2+" sslcertck sslcertfile "{certs.ca_crt}" sslcommonname "mail.test"\n'
        f'  mda "{sys.executable} {mda}"\n'
        '  nokeep fetchall\n')
    os.chmod(rc, stat.S_IRUSR | stat.S_IWUSR)
    env = dict(os.environ, FETCHMAILHOME=str(tmp_path), HOME=str(tmp_path))
    res = subprocess.run([fetchmail, "-v", "--nosyslog", "--invisible", "-f", str(rc)], capture_output=True,
                         timeout=60, env=env)
    log = (res.stdout + res.stderr).decode(errors="replace")
    assert res.returncode == 0, log
    assert "STLS" in log and "+OK Begin TLS" in log, log
    # fetchmail checks what it received against LIST's size.
    assert "octets" in log and not re.search(r"(?i)size.*mismatch|incorrect message size", log), log
    want = b""
    for m in stored:
        text = re.sub(rb"\r?\n", b"\n", m)
        if not text.endswith(b"\n"):
            text += b"\n"
        want += b"From fetchmail Thu Jan  1 00:00:00 1970\n" + text + b"\n"
    assert mbox.read_bytes() == want
    # nokeep: the messages are gone, as IMAP expunges.
    acc = int(b.sql("SELECT account_id FROM credentials WHERE address = 'bob@example.com'"))
    assert b.sql(f"SELECT count(*) FROM messages WHERE account_id = {acc} AND expunged_at IS NULL") == "0"
    assert b.sql(f"SELECT count(*) FROM messages WHERE account_id = {acc} AND expunged_at IS NOT NULL") \
        == str(len(stored))
