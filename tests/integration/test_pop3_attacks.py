"""The POP3 server of sora-backend against hostile clients, measured on the
server process (/proc/<pid>/status: VmRSS, Threads):

1. RETR of an 8 MB message (twice the output hard cap) by 4 clients that
   never read: RSS stays flat and no worker thread is held
   (worker_threads = 2; a fifth client is served at once); one stalled
   client later gets every byte, exactly.
2. 100,000 pipelined commands in one write, never read: RSS flat, others
   served.
3. Garbage and NUL bytes before and after login, and in the AUTH
   continuation: -ERR or a clean close, never a crash or a hang.

The measured numbers are printed (run with -s to see them);
SORA_ATTACK_BOUND_SCALE=0.01 shrinks every bound to show that each test
fails when the server exceeds it."""
import os
import random
import socket
import time

import pytest

from sorafix.common import free_port
from sorafix.pop3 import RawPop3
from test_imap_attacks import big_message, bound, threads_of
from test_runtime_bounds import rss_kb

MB = 1024 * 1024


def start(b, workers=2, pop3_extra=""):
    b.imap_port = free_port()
    b.pop3_port = free_port()
    cfg = b.config().replace("worker_threads = 4\n", f"worker_threads = {workers}\n")
    cfg += (f'[servers.imap]\naddr = "127.0.0.1:{b.imap_port}"\ninsecure_auth = true\n'
            f'[servers.pop3]\naddr = "127.0.0.1:{b.pop3_port}"\ninsecure_auth = true\n'
            f'max_connections_per_ip = 0\nmax_connections = 2000\nmax_errors = 1000\n{pop3_extra}\n')
    b.server = b.sora_servers("sora-backend", cfg, [b.port, b.imap_port, b.pop3_port])
    return b


def connect(b, rcvbuf=None, timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", b.pop3_port))
    return RawPop3(s)


def alive_and_serving(b):
    assert b.server.proc.poll() is None, "server died:\n" + b.server.log()[-3000:]
    r = connect(b)
    assert r.greeting.startswith("+OK")
    assert r.cmd("CAPA").startswith("+OK")
    r.multi()
    r.close()


def test_stalled_retr_holds_neither_memory_nor_a_worker(pop3_backend):
    """Four clients RETR an 8 MB message (twice the connection's hard
    output cap) and never read: a RETR that did not wait for the client
    would pile it up in memory or overflow and close the session."""
    b = start(pop3_backend, workers=2)
    emails = [f"u{i}@example.com" for i in range(5)]
    for e in emails:
        b.account(e)
    big = big_message(0, 8 * MB)
    for e in emails[:4]:
        b.deliver(e, big)
    b.deliver(emails[4], big_message(1, 4096))
    pid = b.server.proc.pid
    w = connect(b)
    w.login(emails[4])
    assert w.cmd("RETR 1").startswith("+OK")
    w.multi()
    w.cmd("QUIT")
    w.close()
    time.sleep(0.3)
    base, base_threads = rss_kb(pid), threads_of(pid)
    stalled = []
    # The maildrop lock allows one session per account: one each.
    for e in emails[:4]:
        r = connect(b, rcvbuf=4096)
        r.login(e)
        r.send("RETR 1\r\nRETR 1\r\n")
        stalled.append(r)
    curve = []
    for _ in range(8):
        time.sleep(0.25)
        curve.append(rss_kb(pid))
    peak = max(curve) - base
    r = connect(b)
    t0 = time.monotonic()
    r.login(emails[4])
    assert r.cmd("STAT").startswith("+OK 1 ")
    assert r.cmd("RETR 1").startswith("+OK")
    r.multi()
    lat = time.monotonic() - t0
    threads = threads_of(pid)
    print(f"\n[1] 4 stalled clients, 2 x RETR of 8 MB each: RSS growth peak {peak} KB "
          f"(curve {[c - base for c in curve]}); threads {base_threads} -> {threads}; "
          f"fifth client login+STAT+RETR {lat:.3f} s")
    assert peak < bound(16 * 1024), curve
    assert lat < bound(1.5), lat
    assert threads <= base_threads + bound(1)
    # The first stalled client gets all of it, exactly, once it reads.
    s0 = stalled[0]
    s0.sock.settimeout(30)
    want = big.replace(b"\r\n.", b"\r\n..")
    for k in range(2):
        line = s0.line()
        assert line.startswith("+OK"), line
        got = s0.multi()
        # The delivered copy starts with the LMTP trace header lines.
        assert got.endswith(want) and len(got) - len(want) < 1000, (k, len(got))
    for s in stalled:
        s.close()
    r.close()
    alive_and_serving(b)


@pytest.mark.parametrize("command", [b"NOOP\r\n", b"STAT\r\n", b"UIDL\r\n", b"RETR 1\r\n"])
def test_pipelined_flood_never_reading(pop3_backend, command):
    b = start(pop3_backend, workers=2)
    b.account("bob@example.com")
    b.deliver("bob@example.com", big_message(0, 20 * 1024))
    pid = b.server.proc.pid
    r = connect(b, rcvbuf=4096)
    r.login("bob@example.com")
    time.sleep(0.2)
    base, base_threads = rss_kb(pid), threads_of(pid)
    payload = command * 100000
    s = r.sock
    s.setblocking(False)
    sent, curve, closed = 0, [], False
    t0 = time.monotonic()
    next_sample = t0
    while time.monotonic() - t0 < 5:
        try:
            sent += s.send(payload[sent % len(payload):])
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            closed = True
            break
        if time.monotonic() >= next_sample:
            curve.append((round(time.monotonic() - t0, 1), rss_kb(pid) - base, sent))
            next_sample += 0.5
    curve.append((round(time.monotonic() - t0, 1), rss_kb(pid) - base, sent))
    peak = max(c[1] for c in curve)
    print(f"\n[2] flood of {command!r}: {sent} bytes accepted in 5 s, closed={closed}; "
          f"RSS growth peak {peak} KB; (s, KB, sent): {curve[::3]}")
    assert peak < bound(16 * 1024), curve
    assert threads_of(pid) <= base_threads + bound(1)
    assert closed or (curve[-1][2] - curve[-5][2] < MB and sent < 64 * MB), curve
    b.account("eve@example.com")
    o = connect(b)
    t0 = time.monotonic()
    o.login("eve@example.com")
    assert o.cmd("STAT").startswith("+OK") and time.monotonic() - t0 < bound(1.5)
    o.close()
    s.close()
    alive_and_serving(b)


def garbage(rng):
    cases = [b"\x00" * 1000 + b"\r\n", b"\xff\xfe\r\n", b"RETR \x00\r\n", b"LIST " + b"9" * 300 + b"\r\n",
             b"TOP 1 99999999999999999999\r\n", b"\r\n" * 50, b"\n\n\n", b"\r\r\r\n",
             b"RETR 1" + b" 1" * 5000 + b"\r\n", b"A" * 20000 + b"\r\n", b"DELE 1 \r\n",
             b"UIDL\x00\r\n", b"XCLIENT ADDR=1.2.3.4\r\n"]
    for _ in range(30):
        cases.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))) + b"\r\n")
    return cases


def test_garbage_before_and_after_login(pop3_backend):
    b = start(pop3_backend, workers=2)
    b.account("bob@example.com")
    b.deliver("bob@example.com", big_message(0, 5000))
    rng = random.Random(7)
    for login in (False, True):
        r = connect(b)
        if login:
            r.login("bob@example.com")
        for case in garbage(rng):
            r.send(case)
            # One reply per line (the line splitting is the parser's).
            for _ in range(case.count(b"\n")):
                line = r.line()
                assert line.startswith("-ERR") or line.startswith("+OK"), (case[:50], line)
                if line.startswith("+OK") and case.startswith(b"RETR 1\r"):
                    r.multi()
        assert r.cmd("NOOP").startswith("+OK" if login else "-ERR")
        r.close()
    # The AUTH continuation.
    for junk in [b"\x00\x00\r\n", b"A" * 20000 + b"\r\n", b"=\r\n", b"\xff\r\n"]:
        r = connect(b)
        assert r.cmd("AUTH PLAIN") == "+ "
        r.send(junk)
        assert r.line().startswith("-ERR")
        assert r.cmd("CAPA").startswith("+OK")
        r.multi()
        r.close()
    alive_and_serving(b)
