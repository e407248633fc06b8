"""Real Postfix relays SMTP mail into sora-backend over LMTP, both
lmtp:inet (TCP) and lmtp:unix (a unix socket), and the stored messages are
the bytes that were sent (see ../shared/TESTING.md for the private-instance
recipe).

One private Postfix instance serves both transports: example.com goes to the
backend's TCP listener (virtual_transport), example.org to its unix socket
(transport_maps). An unknown recipient makes Postfix bounce, and the bounce
comes back through LMTP into the sender's mailbox, so the mixed per-recipient
replies are checked the way an MTA reads them."""
import os
import re
import shutil
import smtplib
import subprocess
import tempfile
import time

import pytest

from sorafix.common import free_port, wait_for, wait_port, which

PREFIX = re.compile(
    rb"Return-Path: <[^>]*>\r\nDelivered-To: [^\r]*\r\n"
    rb"Received: from [^\r]*\r\n\tby mx\.test \(Sora\) with LMTP id [0-9a-f]+\r\n"
    rb"\tfor <[^>]*>; [^\r]*\r\n")

MASTER_CF = """\
{smtpd} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       1       1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
smtp      unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """A private Postfix instance: its own config, queue and log under a
    directory the postfix user can reach (chroot off, no system files).
    smtputf8 turns on smtputf8_enable (Postfix's own default since
    compatibility level 1); extra_domains are added to the example.com
    virtual domain, which the backend's TCP listener serves."""

    def __init__(self, lmtp_port, lmtp_socket, smtputf8=False, extra_domains=()):
        self.dir = tempfile.mkdtemp(prefix="sora-postfix-")
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "maillog")
        for d in (self.etc, self.queue, self.data):
            os.makedirs(d)
        shutil.chown(self.data, "postfix")
        self.smtpd_port = free_port()
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(f"""compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.test
mydomain = test
myorigin = postfix.test
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
virtual_mailbox_domains = {", ".join(("example.com", "example.org") + tuple(extra_domains))}
virtual_transport = lmtp:inet:127.0.0.1:{lmtp_port}
transport_maps = inline:{{ example.org=lmtp:unix:{lmtp_socket} }}
smtpd_relay_restrictions = permit_mynetworks, reject
smtputf8_enable = {"yes" if smtputf8 else "no"}
biff = no
maillog_file_prefixes = {self.dir}
maillog_file = {self.log}
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
""")
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(smtpd=f"127.0.0.1:{self.smtpd_port}"))

    def run(self, *args, check=True):
        # Postfix prints its errors only to a terminal: run under script(1).
        cmd = " ".join(["postfix", "-c", self.etc, *args])
        r = subprocess.run([which("script"), "-qc", cmd, "/dev/null"], capture_output=True,
                           text=True, timeout=60)
        if check:
            assert r.returncode == 0 and "fatal" not in r.stdout, r.stdout + self.maillog()
        return r

    def start(self):
        self.run("check")
        self.run("start")
        wait_port(self.smtpd_port, timeout=20)

    def stop(self):
        self.run("stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def maillog(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def queue_empty(self):
        r = subprocess.run([which("postqueue"), "-c", self.etc, "-p"], capture_output=True,
                           text=True, timeout=30)
        return "Mail queue is empty" in r.stdout


def strip_postfix_received(data, proto=b"ESMTP"):
    """Removes the Received header Postfix's smtpd added (with its folds)."""
    assert data.startswith(b"Received: from "), data[:200]
    end = data.index(b"\r\n") + 2
    while data[end:end + 1] in (b" ", b"\t"):
        end = data.index(b"\r\n", end) + 2
    assert b"by postfix.test (Postfix) with " + proto + b" id" in data[:end]
    return data[end:]


def message(n, subject):
    return (f"From: Sender <sender@example.net>\r\n"
            f"To: alice@example.com, carol@example.org\r\n"
            f"Subject: {subject}\r\n"
            f"Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
            f"Message-ID: <postfix-{n}@example.net>\r\n"
            f"MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: 8bit\r\n"
            f"\r\n").encode() + (
        b"Line one\r\n"
        b".leading dot survives\r\n"
        b"caf\xc3\xa9 8-bit text\r\n"
        b"\r\n"
        b"trailing text with spaces   \r\n" + b"z" * 900 + b"\r\n")


def test_postfix_relays_over_lmtp_inet_and_unix(lmtp_backend):
    b = lmtp_backend
    alice = b.account("alice@example.com")
    carol = b.account("carol@example.org")
    bounces = b.account("bounces@example.com")
    sockdir = tempfile.mkdtemp(prefix="sora-lmtp-sock-")
    os.chmod(sockdir, 0o755)
    pf = None
    try:
        b.start(unix=True, socket_dir=sockdir)
        pf = Postfix(b.port, b.socket_path)
        pf.start()
        sent = []
        with smtplib.SMTP("127.0.0.1", pf.smtpd_port, timeout=30) as s:
            s.ehlo("client.test")
            for i in range(3):
                msg = message(i, f"postfix test {i}")
                refused = s.sendmail("sender@example.net", ["alice@example.com",
                                     "carol+news@example.org"], msg,
                                     mail_options=["BODY=8BITMIME"])
                assert refused == {}
                sent.append(msg)
            # An unknown recipient: our 550 makes Postfix bounce to the
            # sender, which is a local account.
            extra = message(9, "with an unknown recipient")
            refused = s.sendmail("bounces@example.com", ["ghost@example.com",
                                 "alice@example.com"], extra, mail_options=["BODY=8BITMIME"])
            assert refused == {}
        wait_for(lambda: len(b.messages(alice)) == 4 and len(b.messages(carol)) == 3
                 and len(b.messages(bounces)) == 1, timeout=60,
                 what="Postfix deliveries")
        wait_for(pf.queue_empty, timeout=30, what="Postfix queue to drain")

        # Byte-exact: our trace lines, Postfix's Received, then the message
        # (Postfix delivers in parallel, so in any order).
        for acc, rcpt, want in ((alice, "alice@example.com", sent + [extra]),
                                (carol, "carol+news@example.org", sent)):
            got = []
            for (_, h, size, _) in b.messages(acc):
                data = b.body(acc, h)
                assert len(data) == size
                m = PREFIX.match(data)
                assert m, data[:300]
                assert f"Delivered-To: {rcpt}\r\n".encode() in data[:m.end()]
                assert b"from postfix.test (" in data[:m.end()]
                got.append(strip_postfix_received(data[m.end():]))
            assert sorted(got) == sorted(want)
        # TCP for example.com, the unix socket for example.org.
        a0 = b.body(alice, b.messages(alice)[0][1])
        c0 = b.body(carol, b.messages(carol)[0][1])
        assert b"from postfix.test ([127.0.0.1])" in a0
        assert b"from postfix.test (unix socket)" in c0

        dsn = b.body(bounces, b.messages(bounces)[0][1])
        assert b"ghost@example.com" in dsn and b"User doesn't exist" in dsn
        assert b"550 5.1.1" in dsn
        log = pf.maillog()
        assert re.search(r"to=<alice@example.com>.*relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.*"
                         r"status=sent \(250 2\.0\.0 <alice@example.com> Saved\)", log), log
        assert re.search(r"to=<carol\+news@example.org>.*status=sent", log), log
        assert re.search(r"to=<ghost@example.com>.*status=bounced", log), log
    finally:
        if pf is not None:
            pf.stop()
        if b.server is not None:
            b.server.stop()
        shutil.rmtree(sockdir, ignore_errors=True)


PREFIX_UTF8 = re.compile(
    rb"Return-Path: <([^>]*)>\r\nDelivered-To: ([^\r]*)\r\n"
    rb"Received: from postfix\.test \(([^)]*)\)\r\n"
    rb"\tby mx\.test \(Sora\) with UTF8LMTP id [0-9a-f]+\r\n"
    rb"\tfor <([^>]*)>; [^\r]*\r\n")


def test_postfix_relays_smtputf8_over_lmtp(lmtp_backend):
    """RFC 6531 end to end: a client submits with SMTPUTF8 to Postfix
    (smtputf8_enable = yes), Postfix passes SMTPUTF8 on over LMTP, and the
    UTF-8 recipients (local part and domain) reach the store byte-exact."""
    b = lmtp_backend
    cn = b.account("用户@例子.测试")
    jo = b.account("jörg@example.com")
    mu = b.account("müller@example.org")
    sockdir = tempfile.mkdtemp(prefix="sora-lmtp-sock-")
    os.chmod(sockdir, 0o755)
    pf = None
    try:
        b.start(unix=True, socket_dir=sockdir)
        pf = Postfix(b.port, b.socket_path, smtputf8=True, extra_domains=("例子.测试",))
        pf.start()
        sender = "absender@exämple.net"
        rcpts = ["用户@例子.测试", "Jörg+Liste@example.com", "müller@example.org"]
        msg = ("From: Absender <absender@exämple.net>\r\n"
               "To: 用户 <用户@例子.测试>, Jörg <jörg@example.com>, müller@example.org\r\n"
               "Subject: Grüße, 你好\r\n"
               "Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
               "Message-ID: <postfix-utf8@exämple.net>\r\n"
               "MIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n"
               "Content-Transfer-Encoding: 8bit\r\n"
               "\r\n"
               "Grüße aus Köln\r\n"
               ".leading dot survives\r\n"
               "你好\r\n").encode()
        with smtplib.SMTP("127.0.0.1", pf.smtpd_port, timeout=30) as s:
            s.ehlo("client.test")
            assert s.has_extn("smtputf8")
            refused = s.sendmail(sender, rcpts, msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
            assert refused == {}
        wait_for(lambda: all(len(b.messages(a)) == 1 for a in (cn, jo, mu)), timeout=60,
                 what="Postfix SMTPUTF8 deliveries")
        wait_for(pf.queue_empty, timeout=30, what="Postfix queue to drain")

        for acc, rcpt, via in ((cn, rcpts[0], b"[127.0.0.1]"), (jo, rcpts[1], b"[127.0.0.1]"),
                               (mu, rcpts[2], b"unix socket")):
            [(_, h, size, _)] = b.messages(acc)
            data = b.body(acc, h)
            assert len(data) == size
            m = PREFIX_UTF8.match(data)
            assert m, data[:400]
            # Envelope addresses arrive as UTF-8, not downgraded.
            assert m.group(1) == sender.encode()
            assert m.group(2) == m.group(4) == rcpt.encode()
            assert m.group(3) == via
            assert strip_postfix_received(data[m.end():], proto=b"UTF8SMTP") == msg
        log = pf.maillog()
        for rcpt in rcpts:
            assert re.search(rf"to=<{re.escape(rcpt)}>.*status=sent \(250 2\.0\.0 "
                             rf"<{re.escape(rcpt)}> Saved\)", log), log
    finally:
        if pf is not None:
            pf.stop()
        if b.server is not None:
            b.server.stop()
        shutil.rmtree(sockdir, ignore_errors=True)
