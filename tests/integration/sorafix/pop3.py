"""POP3 tests: a sora-backend with pop3, imap and lmtp servers on a fresh
database, accounts made with sora-admin, poplib clients and a raw-socket
client for byte-exact checks."""
import poplib
import socket

import pytest

from .common import free_port
from .imap import ImapBackend


class Pop3Backend(ImapBackend):
    def start(self, pop3_extra="", top="", imap_extra="", insecure_auth=True, certs=None):
        self.imap_port = free_port()
        self.pop3_port = free_port()
        cfg = self.config(top=top)
        tls = ""
        if certs is not None:
            tls = (f'tls_use_starttls = true\ntls_cert_file = "{certs.server_chain}"\n'
                   f'tls_key_file = "{certs.server_key}"\n')
        cfg += (f'[servers.imap]\naddr = "127.0.0.1:{self.imap_port}"\ninsecure_auth = true\n'
                f'{imap_extra}\n')
        cfg += (f'[servers.pop3]\naddr = "127.0.0.1:{self.pop3_port}"\n'
                f'insecure_auth = {"true" if insecure_auth else "false"}\n{tls}{pop3_extra}\n')
        self.server = self.sora_servers("sora-backend", cfg,
                                        [self.port, self.imap_port, self.pop3_port])
        return self

    def pop(self, email=None, password=None, timeout=15):
        c = poplib.POP3("127.0.0.1", self.pop3_port, timeout=timeout)
        if email is not None:
            c.user(email)
            c.pass_(password or "pw-" + email)
        return c

    def raw_pop(self, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.pop3_port), timeout=timeout)
        return RawPop3(s)


class RawPop3:
    """A line-level POP3 client: send bytes, read lines and multi-line
    responses exactly as sent."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.greeting = self.line()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed; pending: %r" % self.buf[:200])
        self.buf += chunk

    def line_bytes(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def line(self):
        return self.line_bytes().decode("utf-8", "replace")

    def multi(self):
        """The raw bytes of a multi-line body up to (without) the
        terminating ".\\r\\n", still byte-stuffed."""
        start = 0
        while True:
            i = self.buf.find(b"\r\n.\r\n", max(start - 4, 0))
            if self.buf.startswith(b".\r\n"):
                self.buf = self.buf[3:]
                return b""
            if i >= 0:
                body, self.buf = self.buf[:i + 2], self.buf[i + 5:]
                return body
            start = len(self.buf)
            self._fill()

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def login(self, email, password=None):
        assert self.cmd(f"USER {email}").startswith("+OK")
        r = self.cmd(f"PASS {password or 'pw-' + email}")
        assert r.startswith("+OK"), r
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def unstuff(body):
    """A multi-line body as the client keeps it: byte-stuffing undone."""
    lines = body.split(b"\r\n")
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)


@pytest.fixture
def pop3_backend(pg, pgdb, tmp_path, sora_servers):
    """A Pop3Backend (not started: call .start())."""
    return Pop3Backend(pg, pgdb, tmp_path, sora_servers)
