"""Garbage at every listener: random bytes, NUL bytes inside commands,
literal tricks, empty lines, STARTTLS followed by junk, connections reset
mid-command — from 8 clients at once for a few seconds. Each server must stay
up, keep its memory flat and still serve a well-behaved client afterwards."""
import os
import random
import socket
import threading
import time

import pytest

from sorafix.common import free_port

from test_net import base_config, recv_line, server_block
from test_runtime_bounds import rss_kb

JUNK = [b"a NOOP\r\n", b"a1 ID {10+}\r\nb1 LOGOUT\r\n", b"LHLO x\r\n", b"\r\n" * 50,
        b"{99999999999999}\r\n", b"MAIL FROM:<\x00>\r\n", b"USER \x00\xff\r\n",
        b"RCPT TO:<a@b>\r\nDATA\r\n", b"a STARTTLS\r\n", b"." * 5000 + b"\r\n"]


def hammer(port, seconds, seed):
    r = random.Random(seed)
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            for _ in range(r.randint(1, 20)):
                kind = r.random()
                if kind < 0.3:
                    data = bytes(r.getrandbits(8) for _ in range(r.randint(1, 3000)))
                elif kind < 0.5:
                    data = b"a1 " + b"\x00" * r.randint(1, 100) + b" NOOP\r\n"
                else:
                    data = r.choice(JUNK) + (os.urandom(64) if r.random() < 0.2 else b"")
                s.sendall(data)
            if r.random() < 0.5:  # reset instead of a clean close
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        except OSError:
            pass


GREETING = {"imap": b"* OK", "pop3": b"+OK", "lmtp": b"220 ",
            "imap_proxy": b"* OK", "pop3_proxy": b"+OK"}


@pytest.mark.parametrize("binary,typ", [("sora-backend", "imap"), ("sora-backend", "pop3"),
                                        ("sora-backend", "lmtp"), ("sora-proxy", "imap_proxy"),
                                        ("sora-proxy", "pop3_proxy")])
def test_garbage_from_many_clients(binary, typ, tmp_path, sora_servers, shared_db):
    port = free_port()
    extra = "max_connections_per_ip = 0\n"
    if typ.endswith("_proxy"):
        extra += 'remote_addrs = ["127.0.0.1:9"]\n'
    db = "" if binary == "sora-proxy" else shared_db
    cfg = base_config(tmp_path, db, level="warn") + server_block("x", port, extra, typ=typ)
    srv = sora_servers(binary, cfg, [port])
    base = rss_kb(srv.proc.pid)
    threads = [threading.Thread(target=hammer, args=(port, 4, i)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert srv.proc.poll() is None, srv.log()[-2000:]
    grown = rss_kb(srv.proc.pid) - base
    assert grown < 24 * 1024, f"RSS grew by {grown} KB"
    # Still serving.
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert recv_line(s).startswith(GREETING[typ])
    s.close()
    assert "AddressSanitizer" not in srv.log() and "runtime error" not in srv.log()
