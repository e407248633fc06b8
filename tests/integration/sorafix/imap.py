"""IMAP tests: a sora-backend with an imap and an lmtp server on a fresh
database, accounts made with sora-admin, an imaplib client logged in, and a
raw-socket client for byte-exact checks."""
import imaplib
import smtplib
import socket
import time

import pytest

from .common import free_port
from .lmtp import LmtpBackend


class ImapBackend(LmtpBackend):
    def start(self, imap_extra="", top="", lmtp_extra="", insecure_auth=True):
        self.imap_port = free_port()
        cfg = self.config(lmtp_extra=lmtp_extra, top=top)
        cfg += (f'[servers.imap]\naddr = "127.0.0.1:{self.imap_port}"\n'
                f'insecure_auth = {"true" if insecure_auth else "false"}\n{imap_extra}\n')
        self.server = self.sora_servers("sora-backend", cfg, [self.port, self.imap_port])
        return self

    def login(self, email, password=None):
        c = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=15)
        c.login(email, password or "pw-" + email)
        return c

    def raw(self, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.imap_port), timeout=timeout)
        return RawImap(s)

    def deliver(self, rcpt, msg, sender="sender@example.org"):
        if isinstance(msg, str):
            msg = msg.encode()
        with smtplib.LMTP("127.0.0.1", self.port, timeout=15) as l:
            l.sendmail(sender, [rcpt], msg)


class RawImap:
    """A line-level IMAP client: send bytes, read lines, up to a tag."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.greeting = self.line()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; pending: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def until(self, tag):
        """Lines up to and including the tagged reply for tag."""
        out = []
        while True:
            line = self.line()
            out.append(line)
            if line.startswith(tag + " "):
                return out

    def cmd(self, tag, text):
        self.send(f"{tag} {text}\r\n")
        return self.until(tag)

    def login(self, email, password=None):
        r = self.cmd("L", f'LOGIN "{email}" "{password or "pw-" + email}"')
        assert r[-1].startswith("L OK"), r
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def simple_message(subject="hello", body="Hello world.\r\n", frm="alice@example.org",
                   to="bob@example.com", extra=""):
    return (f"From: Alice <{frm}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <{time.time_ns()}@x>\r\n"
            f"{extra}\r\n{body}")


@pytest.fixture
def imap_backend(pg, pgdb, tmp_path, sora_servers):
    """An ImapBackend (not started: call .start())."""
    return ImapBackend(pg, pgdb, tmp_path, sora_servers)
