"""LMTP delivery tests: a sora-backend with an lmtp server on a fresh
database, accounts made with sora-admin, and helpers to read what was stored
(the messages row and the staged body)."""
import os
import socket

import pytest

from .common import free_port
from .sora_admin import Admin


class LmtpBackend:
    def __init__(self, pg, dbname, tmp_path, sora_servers):
        self.pg = pg
        self.dbname = dbname
        self.dir = str(tmp_path)
        self.sora_servers = sora_servers
        self.admin = Admin(pg, dbname, self.dir)
        self.admin.ok("migrate", "up")
        self.staging = os.path.join(self.dir, "staging")
        self.blobs = os.path.join(self.dir, "blobs")
        self.port = None
        self.socket_path = None
        self.server = None

    def config(self, lmtp_extra="", top="", unix=False, tcp=True, socket_dir=None):
        cfg = (f'hostname = "mx.test"\nevent_loops = 2\nworker_threads = 4\n{top}'
               + self.pg.config_block(self.dbname)
               + '[logging]\nlevel = "info"\nformat = "console"\noutput = "stderr"\n'
               f'[storage]\nbackend = "fs"\nfs_path = "{self.blobs}"\n'
               f'[uploader]\npath = "{self.staging}"\n')
        if tcp:
            self.port = free_port()
            cfg += f'[servers.lmtp]\naddr = "127.0.0.1:{self.port}"\n{lmtp_extra}\n'
        if unix:
            self.socket_path = os.path.join(socket_dir or self.dir, "lmtp.sock")
            cfg += (f'[servers.lmtp_unix]\ntype = "lmtp"\naddr = "unix:{self.socket_path}"\n'
                    f'{lmtp_extra}\n')
        return cfg

    def start(self, lmtp_extra="", top="", unix=False, tcp=True, socket_dir=None):
        """socket_dir: where the unix socket goes when other users (Postfix)
        must reach it; pytest's own temp directories are private to root."""
        cfg = self.config(lmtp_extra, top, unix, tcp, socket_dir)
        self.server = self.sora_servers("sora-backend", cfg, [self.port] if tcp else [])
        if unix:
            from .common import wait_for
            wait_for(lambda: os.path.exists(self.socket_path), what="lmtp unix socket")
        return self

    def account(self, email, *aliases):
        # ssha512: bcrypt's cost would only slow the tests down.
        self.admin.ok("accounts", "create", "--email", email, "--password", "pw-" + email,
                      "--hash", "ssha512")
        for a in aliases:
            self.admin.ok("credentials", "add", "--account", email, "--email", a,
                          "--password", "pw-" + a, "--hash", "ssha512")
        return int(self.sql(f"SELECT account_id FROM credentials WHERE address = '{email}'"))

    def sql(self, query):
        return self.pg.psql(query, db=self.dbname).strip()

    def rows(self, query):
        out = self.pg.psql(query, db=self.dbname)
        return [line.split("|") for line in out.splitlines() if line]

    def messages(self, account_id):
        """(uid, content_hash, size, mailbox name) in UID order."""
        return [(int(r[0]), r[1], int(r[2]), r[3]) for r in self.rows(
            "SELECT m.uid, m.content_hash, m.size, mb.name FROM messages m "
            f"JOIN mailboxes mb ON mb.id = m.mailbox_id WHERE m.account_id = {account_id} "
            "ORDER BY mb.name, m.uid")]

    def body(self, account_id, content_hash):
        """The stored body: staging first (not uploaded yet), else the fs store."""
        p = os.path.join(self.staging, str(account_id), content_hash)
        if os.path.exists(p):
            with open(p, "rb") as f:
                return f.read()
        p = os.path.join(self.blobs, content_hash[:2], str(account_id), content_hash)
        with open(p, "rb") as f:
            return f.read()

    def staged_files(self, account_id):
        d = os.path.join(self.staging, str(account_id))
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def objects(self, account_id):
        """Content hashes of the account's bodies in the fs blob store."""
        out = []
        if os.path.isdir(self.blobs):
            for prefix in os.listdir(self.blobs):
                d = os.path.join(self.blobs, prefix, str(account_id))
                if os.path.isdir(d):
                    out.extend(os.listdir(d))
        return sorted(out)

    def wait_uploaded(self, timeout=20):
        """Waits until the uploader has emptied pending_uploads."""
        from .common import wait_for
        wait_for(lambda: self.sql("SELECT count(*) FROM pending_uploads") == "0",
                 timeout=timeout, interval=0.1, what="the uploader to drain pending_uploads")

    def connect(self, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return LmtpConn(s)


class LmtpConn:
    """A raw LMTP client that reads replies exactly as sent."""

    def __init__(self, sock, read_greeting=True):
        self.sock = sock
        self.buf = b""
        self.greeting = self.reply() if read_greeting else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; pending {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        """One (possibly multi-line) reply as a list of lines."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        return lines

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.reply()

    def code(self, text):
        return int(self.cmd(text)[0][:3])

    def drain(self, timeout=5):
        """Whatever else the server sends until it closes the connection."""
        self.sock.settimeout(timeout)
        out, self.buf = self.buf, b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return out
            out += chunk

    def close(self):
        self.sock.close()


def dot_stuff(msg):
    """Message bytes with CRLF lines -> DATA payload incl. terminator."""
    if isinstance(msg, str):
        msg = msg.encode()
    lines = msg.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines = lines[:-1]
    out = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines)
    return out + b".\r\n"


@pytest.fixture
def lmtp_backend(pg, pgdb, tmp_path, sora_servers):
    """An LmtpBackend (not started: call .start()) on a fresh database."""
    return LmtpBackend(pg, pgdb, tmp_path, sora_servers)
