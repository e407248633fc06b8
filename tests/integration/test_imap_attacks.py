"""The IMAP server of sora-backend against hostile clients.

Each test attacks one bound and measures it on the server process
(/proc/<pid>/status: VmRSS, Threads):

1. FETCH 1:* BODY[] of 256 x 1 MB from clients that never read: RSS stays
   flat, no worker thread is held (worker_threads = 2 and 4 stalled
   FETCHes; a fifth client is still answered at once).
2. A slow reader of a big FETCH gets every byte, exactly.
3. 100,000 pipelined commands in one write, never read: RSS flat, the
   client is stalled, the server serves others.
4. Garbage before login, in the AUTHENTICATE continuation and after
   SELECT: BAD/NO or a clean close, never a crash or a hang.
5. kill -9 during APPEND / MULTIAPPEND: after a restart no partial message
   is visible and every APPEND that got its tagged OK is there byte-exact.
6. 300 sessions in IDLE on one mailbox: one delivery reaches all of them
   within 2 s; RSS per idle session is reported and bounded.

The measured numbers are printed (run with -s to see them)."""
import os
import random
import re
import select
import signal
import socket
import threading
import time

import pytest

from sorafix.common import free_port, wait_for, wait_port
from sorafix.imap import RawImap, simple_message

from test_runtime_bounds import rss_kb

MB = 1024 * 1024
# SORA_ATTACK_BOUND_SCALE=0.01 shrinks every numeric bound (memory, latency)
# to show that each test fails when the server exceeds it.
SCALE = float(os.environ.get("SORA_ATTACK_BOUND_SCALE", "1"))


def bound(x):
    return x * SCALE


# ---- helpers ------------------------------------------------------------------------

def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key}")


def threads_of(pid):
    return proc_status(pid, "Threads")


def start(b, workers=4, imap_extra="", top=""):
    """Like ImapBackend.start, with the worker pool size chosen and no
    per-IP connection limit (every attacker here is 127.0.0.1)."""
    b.imap_port = free_port()
    cfg = b.config(top=top).replace("worker_threads = 4\n", f"worker_threads = {workers}\n")
    cfg += (f'[servers.imap]\naddr = "127.0.0.1:{b.imap_port}"\ninsecure_auth = true\n'
            f'max_connections_per_ip = 0\nmax_connections = 2000\n{imap_extra}\n')
    b.server = b.sora_servers("sora-backend", cfg, [b.port, b.imap_port])
    return b


def connect(b, rcvbuf=None, timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", b.imap_port))
    return RawImap(s)


def alive_and_serving(b, timeout=5):
    """The process runs and a fresh client gets a greeting and a
    CAPABILITY answer (no database needed before login)."""
    assert b.server.proc.poll() is None, "server died:\n" + b.server.log()[-3000:]
    r = connect(b, timeout=timeout)
    assert r.greeting.startswith("* OK"), r.greeting
    assert r.cmd("c", "CAPABILITY")[-1].startswith("c OK")
    r.close()


def timed_cmd(r, tag, text):
    t0 = time.monotonic()
    out = r.cmd(tag, text)
    return out, time.monotonic() - t0


def big_message(i, size, eight_bit=False):
    """A message of about size bytes with lines that differ per message."""
    head = simple_message(subject=f"big {i}", body="").encode()
    if eight_bit:
        head = head.replace(b"Subject:", b"Content-Type: text/plain; charset=utf-8\r\nSubject:")
    line_no, parts, n = 0, [head], len(head)
    while n < size:
        text = f"{i:04d}:{line_no:08d} " + ("\u00e9t\u00e9 " if eight_bit else "") + \
            "abcdefghijklmnopqrstuvwxyz0123456789" * 2
        line = text.encode() + b"\r\n"
        parts.append(line)
        n += len(line)
        line_no += 1
    return b"".join(parts)


def append_raw(r, tag, msg, mailbox="INBOX", plus=True):
    """APPEND over a raw client; returns the tagged line."""
    if plus:
        r.send(f"{tag} APPEND {mailbox} {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
    else:
        r.send(f"{tag} APPEND {mailbox} {{{len(msg)}}}\r\n")
        line = r.line()
        assert line.startswith("+"), line
        r.send(msg + b"\r\n")
    return r.until(tag)[-1]


def read_fetch_literals(data):
    """{seq: {item: bytes}} from a raw FETCH response (literals only; the
    data of every item this module asks for is a literal)."""
    out, pos, seq = {}, 0, None
    lit = re.compile(rb"([^ (]+) \{(\d+)\}\r\n")
    head = re.compile(rb"\* (\d+) FETCH \(")
    while True:
        m = lit.search(data, pos)
        if not m:
            return out
        for h in head.finditer(data, pos, m.start()):
            seq = int(h.group(1))
        n = int(m.group(2))
        out.setdefault(seq, {})[m.group(1).decode()] = data[m.end():m.end() + n]
        pos = m.end() + n


# ---- 1. FETCH 1:* BODY[] from clients that never read ---------------------------------

def fill_copies(b, email, size, doublings):
    """One message of about size bytes, copied 2**doublings times in
    INBOX (COPY shares the stored body, so this is quick)."""
    b.deliver(email, big_message(0, size))
    r = b.raw()
    r.login(email)
    r.cmd("s", "SELECT INBOX")
    for k in range(doublings):
        assert r.cmd(f"c{k}", "COPY 1:* INBOX")[-1].startswith(f"c{k} OK")
    r.cmd("l", "LOGOUT")
    r.close()
    return 2 ** doublings


def test_stalled_fetch_holds_neither_memory_nor_a_worker(imap_backend):
    b = start(imap_backend, workers=2)
    b.account("bob@example.com")
    n = fill_copies(b, "bob@example.com", MB, 8)  # 256 x 1 MB
    pid = b.server.proc.pid
    # Warm the allocator and the pool with one complete FETCH of a few.
    w = b.raw()
    w.login("bob@example.com")
    w.cmd("s", "SELECT INBOX")
    assert w.cmd("w", "FETCH 1:3 BODY.PEEK[]")[-1].startswith("w OK")
    w.close()
    time.sleep(0.3)
    base, base_threads = rss_kb(pid), threads_of(pid)

    stalled = []
    for i in range(4):
        r = connect(b, rcvbuf=4096)
        r.login("bob@example.com")
        r.cmd("s", "SELECT INBOX")
        r.send(f"f{i} FETCH 1:* BODY[]\r\n")
        stalled.append(r)
    curve = []
    for _ in range(8):
        time.sleep(0.25)
        curve.append(rss_kb(pid))
    peak = max(curve) - base
    # The fifth client: every command is answered promptly although both
    # workers would be taken if a stalled FETCH held one.
    r = connect(b)
    lat = {}
    out, lat["LOGIN"] = timed_cmd(r, "L", 'LOGIN "bob@example.com" "pw-bob@example.com"')
    assert out[-1].startswith("L OK"), out
    out, lat["SELECT"] = timed_cmd(r, "s", "SELECT INBOX")
    assert out[-1].startswith("s OK") and f"* {n} EXISTS" in out, out
    out, lat["FETCH"] = timed_cmd(r, "f", "FETCH 1:5 (FLAGS RFC822.SIZE)")
    assert out[-1].startswith("f OK") and len(out) == 6, out
    out, lat["BODY"] = timed_cmd(r, "g", "FETCH 7 BODY.PEEK[]<0.100>")
    assert out[-1].startswith("g OK"), out
    out, lat["SEARCH"] = timed_cmd(r, "h", "SEARCH UNSEEN")
    assert out[-1].startswith("h OK"), out
    out, lat["NOOP"] = timed_cmd(r, "n", "NOOP")
    assert out[-1].startswith("n OK"), out
    threads = threads_of(pid)
    after = rss_kb(pid) - base
    print(f"\n[1] 4 stalled FETCH 1:* BODY[] of {n} x 1 MB ({4 * n} MB requested): RSS "
          f"baseline {base} KB, growth peak {peak} KB (curve {[c - base for c in curve]}), "
          f"{after} KB after the fifth client; threads {base_threads} -> {threads}; "
          f"fifth client latencies (s): { {k: round(v, 3) for k, v in lat.items()} }")
    # 256 KB of output + one 64 KB slice per session, plus allocator slack;
    # the FETCH is 1 GB in all.
    assert peak < bound(16 * 1024), curve
    assert max(lat.values()) < bound(1.5), lat
    assert threads <= base_threads + bound(1), (base_threads, threads)
    # The stalled clients really are stalled mid-FETCH: one of them gets
    # the rest now, byte for byte, once it starts reading.
    s0 = stalled[0]
    s0.sock.settimeout(30)
    total, tail = 0, b""
    while not tail.endswith(b"f0 OK FETCH completed.\r\n"):
        chunk = s0.sock.recv(1 << 20)
        assert chunk, "stalled client closed"
        total += len(chunk)
        tail = (tail + chunk)[-64:]
    assert total > n * MB, total
    for s in stalled:
        s.close()
    r.close()
    alive_and_serving(b)


# ---- 2. a slow reader gets everything, exactly ----------------------------------------------

def test_slow_reader_gets_every_byte(imap_backend):
    b = start(imap_backend, workers=2)
    b.account("bob@example.com")
    sizes = [700 * 1024, 12, 1300 * 1024, 90 * 1024, 400 * 1024]
    msgs = [big_message(i, s, eight_bit=(i % 2 == 0)) for i, s in enumerate(sizes)]
    w = b.raw()
    w.login("bob@example.com")
    for i, m in enumerate(msgs):
        assert append_raw(w, f"a{i}", m).startswith(f"a{i} OK")
    w.close()
    pid = b.server.proc.pid
    base = rss_kb(pid)
    r = connect(b, rcvbuf=4096, timeout=30)
    r.login("bob@example.com")
    r.cmd("s", "SELECT INBOX")
    r.send("f FETCH 1:* (BODY.PEEK[] BODY.PEEK[TEXT] BODY.PEEK[]<1000.70000>)\r\n")
    data = bytearray(r.buf)
    r.buf = b""
    t0 = time.monotonic()
    peak = 0
    # 10 KB/s for 4 s (the server stalls and resumes many times), then as
    # fast as a 4 KB receive buffer allows.
    while not data.endswith(b"f OK FETCH completed.\r\n"):
        slow = time.monotonic() - t0 < 4
        chunk = r.sock.recv(1024 if slow else 256 * 1024)
        assert chunk, "closed mid-FETCH"
        data += chunk
        if slow:
            time.sleep(0.1)
        peak = max(peak, rss_kb(pid) - base)
        assert time.monotonic() - t0 < 40
    took = time.monotonic() - t0
    got = read_fetch_literals(bytes(data))
    print(f"\n[2] slow reader: {len(data)} bytes in {took:.1f} s, RSS growth peak {peak} KB")
    assert sorted(got) == list(range(1, len(msgs) + 1)), sorted(got)
    for i, m in enumerate(msgs):
        items = got[i + 1]
        assert items["BODY[]"] == m, (i, len(items["BODY[]"]), len(m))
        text = m.split(b"\r\n\r\n", 1)[1]
        assert items["BODY[TEXT]"] == text, i
        assert items["BODY[]<1000>"] == m[1000:71000], i
    assert peak < bound(16 * 1024)
    assert took < bound(20), took
    r.close()
    alive_and_serving(b)


# ---- 3. pipelined flood, never reading --------------------------------------------------------

@pytest.mark.parametrize("command", [b"a NOOP\r\n", b"a FETCH 1 FLAGS\r\n",
                                     b"a FETCH 1 BODY.PEEK[]\r\n"])
def test_pipelined_flood_never_reading(imap_backend, command):
    b = start(imap_backend, workers=2)
    b.account("bob@example.com")
    b.deliver("bob@example.com", big_message(0, 20 * 1024))
    pid = b.server.proc.pid
    r = connect(b, rcvbuf=4096)
    r.login("bob@example.com")
    r.cmd("s", "SELECT INBOX")
    time.sleep(0.2)
    base, base_threads = rss_kb(pid), threads_of(pid)
    # 100,000 commands in one write, then more of them for 6 s: the kernel
    # buffers on loopback hold a few MB, a server reading at line rate would
    # take hundreds of MB.
    payload = command * 100000
    s = r.sock
    s.setblocking(False)
    sent, curve, closed = 0, [], False
    t0 = time.monotonic()
    next_sample = t0
    while time.monotonic() - t0 < 6:
        try:
            sent += s.send(payload[sent % len(payload):])
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            closed = True  # closed by the server: fine
            break
        if time.monotonic() >= next_sample:
            curve.append((round(time.monotonic() - t0, 1), rss_kb(pid) - base, sent))
            next_sample += 0.5
    curve.append((round(time.monotonic() - t0, 1), rss_kb(pid) - base, sent))
    peak = max(c[1] for c in curve)
    print(f"\n[3] flood of {command!r}: {sent} bytes ({sent // len(command)} commands) accepted "
          f"in 6 s, closed={closed}; RSS growth peak {peak} KB; (s, KB, sent): {curve[::3]}")
    assert peak < bound(16 * 1024), curve
    assert threads_of(pid) <= base_threads + bound(1)
    # Stalled (or closed): the last 2 seconds moved nothing, and what went
    # in is what the kernel buffers hold, not what a line-rate reader takes.
    # (The kernel still trickles a little in as it compacts the server's
    # receive queue: well under 1 MB in 3 s.)
    assert closed or (curve[-1][2] - curve[-7][2] < MB and sent < 64 * MB), curve
    # Others are served meanwhile, promptly.
    o = b.raw()
    out, lat = timed_cmd(o, "L", 'LOGIN "bob@example.com" "pw-bob@example.com"')
    assert out[-1].startswith("L OK") and lat < bound(1.5), (out, lat)
    out, lat = timed_cmd(o, "s", "SELECT INBOX")
    assert out[-1].startswith("s OK") and lat < bound(1.5), (out, lat)
    o.close()
    s.close()
    alive_and_serving(b)


# ---- 4. garbage -----------------------------------------------------------------------------

SEQSETS = ["0", "4294967296", "1:*:3", '""', "1,,2", "*:0", "1:4294967296", "-1", "1:",
           ":1", "99999999999999999999", "1:2:3:4", "$", "1," * 20000 + "1", "()", "{0}"]


def garbage_cases(rng):
    """(name, bytes) after SELECT INBOX."""
    cases = [
        ("random", bytes(rng.getrandbits(8) for _ in range(3000)) + b"\r\n"),
        ("random-no-crlf", bytes(rng.getrandbits(8) for _ in range(5000))),
        ("nul-tag", b"\x00\x00 NOOP\r\n"),
        ("nul-command", b"g NO\x00OP\r\n"),
        ("nul-arg", b"g FETCH 1 (FLAGS\x00)\r\n"),
        ("nul-quoted", b'g SELECT "IN\x00BOX"\r\n'),
        ("8bit-mailbox", b'g SELECT "\xff\xfe\xc3\x28"\r\n'),
        ("8bit-atom", b"g CREATE \xe9t\xe9\xff\r\n"),
        ("8bit-search", b"g SEARCH SUBJECT \xff\xfe\xfd\r\n"),
        ("8bit-search-charset", b'g SEARCH CHARSET UTF-8 SUBJECT "\xc3\x28\xa0\xa1"\r\n'),
        ("fetch-open-paren", b"g FETCH 1 (FLAGS\r\n"),
        ("fetch-close-paren", b"g FETCH 1 FLAGS)\r\n"),
        ("fetch-many-close", b"g FETCH 1 (FLAGS)))))\r\n"),
        ("fetch-open-bracket", b"g FETCH 1 BODY[\r\n"),
        ("fetch-close-bracket", b"g FETCH 1 BODY]\r\n"),
        ("fetch-bracket-paren", b"g FETCH 1 BODY[HEADER.FIELDS (Subject]\r\n"),
        ("fetch-partial-open", b"g FETCH 1 BODY[]<0.\r\n"),
        ("fetch-partial-huge", b"g FETCH 1 BODY[]<18446744073709551615.18446744073709551615>\r\n"),
        ("fetch-partial-neg", b"g FETCH 1 BODY[]<-1.5>\r\n"),
        ("fetch-section-deep", b"g FETCH 1 BODY[" + b"1." * 5000 + b"TEXT]\r\n"),
        ("fetch-section-30", b"g FETCH 1 BODY[" + b"1." * 30 + b"TEXT]\r\n"),
        ("fetch-section-huge", b"g FETCH 1 BODY[4294967296]\r\n"),
        ("fetch-section-zero", b"g FETCH 1 BODY[0]\r\n"),
        ("fetch-header-fields-many", b"g FETCH 1 BODY[HEADER.FIELDS (" + b"X " * 20000 + b")]\r\n"),
        ("fetch-nested", b"g FETCH 1 " + b"(" * 1000 + b"FLAGS" + b")" * 1000 + b"\r\n"),
        ("search-open", b"g SEARCH (FLAGGED\r\n"),
        ("search-close", b"g SEARCH FLAGGED)\r\n"),
        ("search-deep-10000", b"g SEARCH " + b"(" * 10000 + b"ALL" + b")" * 10000 + b"\r\n"),
        ("search-deep-30000", b"g SEARCH " + b"(" * 30000 + b"ALL" + b")" * 30000 + b"\r\n"),
        ("search-not-10000", b"g SEARCH " + b"NOT " * 10000 + b"ALL\r\n"),
        ("search-or-10000", b"g SEARCH " + b"OR " * 10000 + b"ALL " * 10001 + b"\r\n"),
        ("search-or-right", b"g SEARCH " + b"OR ALL " * 5000 + b"ALL\r\n"),
        ("search-many-keys", b"g SEARCH " + b"SUBJECT x " * 6000 + b"\r\n"),
        ("search-many-seqsets", b"g SEARCH " + b"1:2 " * 15000 + b"\r\n"),
        ("search-bad-date", b"g SEARCH SINCE 99-Foo-99999\r\n"),
        ("search-larger-huge", b"g SEARCH LARGER 999999999999999999999999\r\n"),
        ("search-charset-bogus", b"g SEARCH CHARSET X-NOPE ALL\r\n"),
        ("search-modseq-huge", b"g SEARCH MODSEQ 99999999999999999999999\r\n"),
        ("store-open", b"g STORE 1 +FLAGS (\\Seen\r\n"),
        ("store-close", b"g STORE 1 +FLAGS \\Seen)\r\n"),
        ("store-nested", b"g STORE 1 FLAGS ((\\Seen))\r\n"),
        ("store-many-keywords", b"g STORE 1 +FLAGS (" + b"".join(b"k%d " % i for i in range(5000)) + b")\r\n"),
        ("store-long-keyword", b"g STORE 1 +FLAGS (" + b"k" * 8000 + b")\r\n"),
        ("store-unchangedsince-bad", b"g STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)\r\n"),
        ("literal-huge-sync", b"g SEARCH TEXT {99999999999}\r\n"),
        ("literal-huge-fetch", b"g FETCH 1 {99999999999}\r\n"),
        ("literal-huge-append", b"g APPEND INBOX {99999999999}\r\n"),
        ("literal-overflow", b"g SEARCH TEXT {99999999999999999999999999}\r\n"),
        ("literal-u64max", b"g SEARCH TEXT {18446744073709551615}\r\n"),
        ("literal-neg", b"g SEARCH TEXT {-1}\r\n"),
        ("literal-empty", b"g SEARCH TEXT {}\r\n"),
        ("literal-huge-nonsync", b"g SEARCH TEXT {99999999999+}\r\nxyz\r\n"),
        ("literal-huge-nonsync-append", b"g APPEND INBOX {99999999999+}\r\nxyz\r\n"),
        ("literal-u64-nonsync-append", b"g APPEND INBOX {18446744073709551615+}\r\nxyz\r\n"),
        ("literal8-search", b"g SEARCH TEXT ~{3+}\r\nabc\r\n"),
        ("literal8-fetch", b"g FETCH ~{1+}\r\n1 FLAGS\r\n"),
        ("literal8-store", b"g STORE 1 +FLAGS ~{5+}\r\n\\Seen\r\n"),
        ("literal8-nul", b"g SEARCH TEXT ~{3+}\r\na\x00b\r\n"),
        ("literal8-sync-huge", b"g SEARCH TEXT ~{99999999999}\r\n"),
        ("append-literal8-huge", b"g APPEND INBOX (\\Seen) ~{99999999999}\r\n"),
        ("append-nested-flags", b"g APPEND INBOX " + b"(" * 500 + b"\\Seen" + b")" * 500 + b" {3+}\r\nx\r\n\r\n"),
        ("append-bad-date", b'g APPEND INBOX "99-Xyz-0000 99:99:99 +9999" {3+}\r\nx\r\n\r\n'),
        ("append-zero", b"g APPEND INBOX {0}\r\n"),
        ("uid-alone", b"g UID\r\n"),
        ("uid-uid", b"g UID UID FETCH 1 FLAGS\r\n"),
        ("empty-line", b"\r\n" * 20),
        ("only-tag", b"g\r\n"),
        ("bare-cr", b"g NOOP\rh NOOP\r\n"),
        ("bare-lf", b"g NOOP\nh NOOP\n"),
        ("long-line", b"g " + b"A" * 70000 + b"\r\n"),
        ("long-tag", b"x" * 70000 + b" NOOP\r\n"),
        ("idle-garbage", b"g IDLE\r\n" + bytes(rng.getrandbits(8) for _ in range(2000)) + b"\r\n"),
        ("idle-long", b"g IDLE\r\n" + b"D" * 200000 + b"\r\n"),
        ("enable-junk", b"g ENABLE " + b"X " * 10000 + b"\r\n"),
        ("qresync-bad", b"g SELECT INBOX (QRESYNC (1 2 " + b"1:*," * 1000 + b"))\r\n"),
        ("list-deep", b'g LIST "" ' + b"%*" * 10000 + b"\r\n"),
        ("status-junk", b"g STATUS INBOX (" + b"MESSAGES " * 5000 + b")\r\n"),
        ("copy-huge-set", b"g COPY 1:4294967295 INBOX\r\n"),
        ("store-star", b"g STORE *:* FLAGS (\\Seen)\r\n"),
    ]
    for i, s in enumerate(SEQSETS):
        cases.append((f"fetch-seqset-{i}", b"g FETCH " + s.encode() + b" FLAGS\r\n"))
        cases.append((f"uid-fetch-seqset-{i}", b"g UID FETCH " + s.encode() + b" FLAGS\r\n"))
        cases.append((f"store-seqset-{i}", b"g STORE " + s.encode() + b" +FLAGS (\\Seen)\r\n"))
        cases.append((f"search-seqset-{i}", b"g SEARCH " + s.encode() + b"\r\n"))
    return cases


def preauth_cases(rng):
    return [
        ("random", bytes(rng.getrandbits(8) for _ in range(3000)) + b"\r\n"),
        ("nul-login", b'g LOGIN "a\x00b" "c"\r\n'),
        ("8bit-login", b'g LOGIN \xff\xfe "\xc3\x28"\r\n'),
        ("login-open-paren", b"g LOGIN (a b\r\n"),
        ("id-deep", b"g ID " + b"(" * 10000 + b")" * 10000 + b"\r\n"),
        ("id-unbalanced", b'g ID ("a" "b"\r\n'),
        ("id-many", b"g ID (" + b'"k" "v" ' * 2000 + b")\r\n"),
        ("literal-huge-sync", b"g LOGIN {99999999999}\r\n"),
        ("literal-huge-nonsync", b"g LOGIN {99999999999+}\r\nxyz\r\n"),
        ("literal-overflow", b"g LOGIN {99999999999999999999999999}\r\n"),
        ("literal8", b"g LOGIN ~{3+}\r\nabc {1+}\r\nx\r\n"),
        ("literal-nonsync-8k", b"g LOGIN {8193+}\r\n" + b"a" * 8193 + b" x\r\n"),
        ("long-line", b"g LOGIN " + b"a" * 70000 + b"\r\n"),
        ("select-before-login", b"g SELECT INBOX\r\n"),
        ("fetch-before-login", b"g FETCH 1:* BODY[]\r\n"),
        ("authenticate-unknown", b"g AUTHENTICATE X-NOPE\r\n"),
        ("authenticate-sasl-ir-garbage", b"g AUTHENTICATE PLAIN !!!notbase64!!!\r\n"),
        ("authenticate-sasl-ir-nuls", b"g AUTHENTICATE PLAIN AAAA\r\n"),
        ("authenticate-sasl-ir-huge", b"g AUTHENTICATE PLAIN " + b"QUFB" * 15000 + b"\r\n"),
        ("starttls-junk", b"g STARTTLS\r\n" + bytes(rng.getrandbits(8) for _ in range(500))),
        ("bare-lf", b"g NOOP\nh NOOP\n"),
        ("empty-lines", b"\r\n" * 100),
    ]


AUTH_CONTINUATIONS = [
    ("random", lambda rng: bytes(rng.getrandbits(8) for _ in range(3000)) + b"\r\n"),
    ("not-base64", lambda rng: b"!!!***\r\n"),
    ("nul", lambda rng: b"\x00\x00\x00\r\n"),
    ("8bit", lambda rng: b"\xff\xfe\xfd\r\n"),
    ("cancel", lambda rng: b"*\r\n"),
    ("empty", lambda rng: b"\r\n"),
    ("nuls-decoded", lambda rng: b"AAAA\r\n"),
    ("no-nul-decoded", lambda rng: b"Ym9iQGV4YW1wbGUuY29t\r\n"),
    ("many-nuls-decoded", lambda rng: b"AGJvYkBleGFtcGxlLmNvbQBwdwBleHRyYQ==\r\n"),
    ("huge-line", lambda rng: b"QUFB" * 50000 + b"\r\n"),
    ("literal", lambda rng: b"{99999999999}\r\n"),
    ("no-crlf", lambda rng: b"QUFB" * 1000),
    ("bare-lf", lambda rng: b"AGJvYkBleGFtcGxlLmNvbQB4\nx NOOP\n"),
]


def exchange(r, payload, timeout=5.0):
    """Sends payload and then a sentinel NOOP; reads until the sentinel's
    reply, EOF or timeout. Returns (bytes read, 'reply'|'closed'|'silent')."""
    s = r.sock
    try:
        s.sendall(payload)
        s.sendall((b"" if payload.endswith(b"\n") else b"\r\n") + b"zz NOOP\r\n")
    except OSError:
        pass  # closed while we sent: read what came
    data = bytearray(r.buf)
    r.buf = b""
    deadline = time.monotonic() + timeout
    s.settimeout(0.2)
    while time.monotonic() < deadline:
        if re.search(rb"(^|\r\n)zz (OK|NO|BAD)", data):
            return bytes(data), "reply"
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return bytes(data), "closed"
        if not chunk:
            return bytes(data), "closed"
        data += chunk
    return bytes(data), "silent"


# The outcomes that are fine for a hostile line: the sentinel is answered
# (the garbage got BAD or NO), or the session is closed (with BYE or
# BAD first). "silent" -- the server waits for more -- is fine only where
# the garbage legitimately leaves the server waiting for bytes: a
# synchronising literal that was accepted (+), an IDLE that was not
# ended, or an input without CRLF.
WAITING_OK = {"random-no-crlf", "auth:no-crlf"}


def check_outcome(b, name, data, outcome, problems, ok_allowed=()):
    """Appends to problems what is wrong with one case's outcome."""
    if b.server.proc.poll() is not None:
        raise AssertionError(f"{name}: server died\n" + b.server.log()[-3000:])
    if os.environ.get("SORA_ATTACK_VERBOSE"):
        print(f"---- {name}: {outcome}: {data[:600]!r}")
    if outcome == "silent" and not (name in WAITING_OK or name.startswith("idle")
                                    or b"\r\n+ " in b"\r\n" + data):
        problems.append(f"{name}: no answer and not closed within 5 s: {data[:300]!r}")
    # Garbage is not accepted (the tag of the garbage is g).
    if re.search(rb"(^|\r\n)g OK", data) and name not in ok_allowed:
        problems.append(f"{name}: accepted: {data[-300:]!r}")


# Garbage that is nonetheless valid IMAP and may succeed ($ with nothing
# saved is the empty set, RFC 5182; a bare LF ends a line for many servers).
OK_ALLOWED = {"8bit-search", "8bit-search-charset", "search-many-keys", "search-many-seqsets",
              "search-or-right", "store-many-keywords", "fetch-header-fields-many",
              "search-larger-huge", "append-zero", "copy-huge-set", "store-star",
              "list-deep", "status-junk", "search-not-10000", "fetch-partial-huge",
              "literal8-search", "literal8-nul", "nul-command", "qresync-bad",
              "enable-junk", "search-modseq-huge", "bare-lf", "fetch-section-30"} | {
                  f"{k}-seqset-12" for k in ("fetch", "uid-fetch", "store", "search")}


def test_garbage_after_select(imap_backend):
    b = start(imap_backend, workers=2)
    b.account("bob@example.com")
    for i in range(3):
        b.deliver("bob@example.com", simple_message(subject=f"m{i}"))
    pid = b.server.proc.pid
    base = rss_kb(pid)
    rng = random.Random(4242)
    outcomes, problems = {}, []
    for name, payload in garbage_cases(rng):
        r = b.raw(timeout=10)
        r.login("bob@example.com")
        r.cmd("s", "SELECT INBOX")
        data, outcome = exchange(r, payload)
        outcomes[name] = outcome
        r.close()
        check_outcome(b, name, data, outcome, problems, OK_ALLOWED)
        alive_and_serving(b)
    grown = rss_kb(pid) - base
    print(f"\n[4] garbage after SELECT: {len(outcomes)} cases, RSS growth {grown} KB, "
          f"closed: {sorted(k for k, v in outcomes.items() if v == 'closed')}, "
          f"silent: {sorted(k for k, v in outcomes.items() if v == 'silent')}")
    assert not problems, "\n".join(problems)
    assert grown < bound(32 * 1024)
    # The account is intact and the server answers a real client.
    c = b.login("bob@example.com")
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def test_garbage_before_login_and_in_authenticate(imap_backend):
    b = start(imap_backend, workers=2)
    b.account("bob@example.com")
    rng = random.Random(77)
    outcomes, problems = {}, []
    for name, payload in preauth_cases(rng):
        r = b.raw(timeout=10)
        data, outcome = exchange(r, payload)
        outcomes["pre:" + name] = outcome
        r.close()
        check_outcome(b, "pre:" + name, data, outcome, problems, {"pre:bare-lf"})
        alive_and_serving(b)
    for name, make in AUTH_CONTINUATIONS:
        r = b.raw(timeout=10)
        r.send("g AUTHENTICATE PLAIN\r\n")
        assert r.line().startswith("+"), name
        data, outcome = exchange(r, make(rng))
        outcomes["auth:" + name] = outcome
        r.close()
        check_outcome(b, "auth:" + name, data, outcome, problems)
        alive_and_serving(b)
    print(f"\n[4] garbage before login / in AUTHENTICATE: {len(outcomes)} cases, "
          f"closed: {sorted(k for k, v in outcomes.items() if v == 'closed')}, "
          f"silent: {sorted(k for k, v in outcomes.items() if v == 'silent')}")
    assert not problems, "\n".join(problems)
    c = b.login("bob@example.com")
    c.logout()


# ---- 5. kill -9 during APPEND ---------------------------------------------------------------

def restart(b):
    b.server.proc.wait(10)
    b.server.logf.close()
    b.server.start([b.port, b.imap_port])


def stored_bodies(b, email):
    """Every message of the account as {mailbox/uid: BODY[]} over IMAP."""
    r = b.raw(timeout=30)
    r.login(email)
    out = {}
    for box in ("INBOX", "Archive"):
        r.cmd("s", f"SELECT {box}")
        r.send("f FETCH 1:* (UID BODY.PEEK[])\r\n")
        data = bytearray()
        while not re.search(rb"(^|\r\n)f (OK|NO|BAD)[^\r]*\r\n$", data):
            chunk = r.sock.recv(1 << 20)
            assert chunk
            data += r.buf + chunk
            r.buf = b""
        for m in re.finditer(rb"\* \d+ FETCH \(UID (\d+) BODY\[\] \{(\d+)\}\r\n", data):
            n = int(m.group(2))
            out[f"{box}/{int(m.group(1))}"] = bytes(data[m.end():m.end() + n])
    r.close()
    return out


def check_after_kill(b, acct, email, acked, sent_all):
    restart(b)
    bodies = stored_bodies(b, email)
    db_sizes = sorted(sz for _, _, sz, _ in b.messages(acct))
    assert db_sizes == sorted(len(v) for v in bodies.values()), (db_sizes, len(bodies))
    sent = set(sent_all)
    for key, body in bodies.items():
        # No partial message: everything visible is one we sent, whole.
        assert body in sent, f"{key}: {len(body)} bytes that were never sent whole"
    have = list(bodies.values())
    for m in acked:
        assert m in have, f"an acknowledged APPEND of {len(m)} bytes is missing"
    alive_and_serving(b)
    return bodies


def test_kill9_mid_literal_of_big_append(imap_backend):
    b = start(imap_backend)
    acct = b.account("bob@example.com")
    b.login("bob@example.com").logout()
    ok = b.raw()
    ok.login("bob@example.com")
    first = big_message(1, 300 * 1024)
    assert append_raw(ok, "a", first).startswith("a OK")
    ok.close()
    # A 5 MB APPEND, half its literal sent, then kill -9.
    big = big_message(2, 5 * MB)
    r = b.raw()
    r.login("bob@example.com")
    r.send(f"b APPEND INBOX {{{len(big)}}}\r\n")
    assert r.line().startswith("+")
    r.send(big[:len(big) // 2])
    time.sleep(0.3)
    b.server.signal(signal.SIGKILL)
    r.close()
    bodies = check_after_kill(b, acct, "bob@example.com", [first], [first])
    assert len(bodies) == 1
    # A MULTIAPPEND killed in its second literal: none of its messages.
    parts = [big_message(10 + i, 1 * MB) for i in range(3)]
    r = b.raw()
    r.login("bob@example.com")
    r.send(f"m APPEND INBOX {{{len(parts[0])}+}}\r\n".encode() + parts[0] +
           f" (\\Seen) {{{len(parts[1])}+}}\r\n".encode() + parts[1][:len(parts[1]) // 2])
    time.sleep(0.3)
    b.server.signal(signal.SIGKILL)
    r.close()
    bodies = check_after_kill(b, acct, "bob@example.com", [first], [first])
    assert len(bodies) == 1
    # And one killed after its last literal, before or after the commit: all
    # of it or none of it.
    r = b.raw()
    r.login("bob@example.com")
    r.send(f"m APPEND INBOX {{{len(parts[0])}+}}\r\n".encode() + parts[0] +
           f" {{{len(parts[1])}+}}\r\n".encode() + parts[1] +
           f" {{{len(parts[2])}+}}\r\n".encode() + parts[2] + b"\r\n")
    time.sleep(random.Random(3).uniform(0.0, 0.2))
    b.server.signal(signal.SIGKILL)
    r.close()
    bodies = check_after_kill(b, acct, "bob@example.com", [first], [first] + parts)
    assert len(bodies) in (1, 4), len(bodies)


def test_kill9_at_random_moment_of_append_loop(imap_backend):
    seed = int(os.environ.get("SORA_KILL_SEED", time.time_ns() % 100000))
    rng = random.Random(seed)
    print(f"\n[5] kill -9 seed {seed} (SORA_KILL_SEED)")
    b = start(imap_backend)
    acct = b.account("bob@example.com")
    b.login("bob@example.com").logout()
    all_sent, acked = [], []
    for round_ in range(3):
        msgs = [big_message(1000 * round_ + i, rng.choice([2000, 64 * 1024, 700 * 1024, 2 * MB]),
                            eight_bit=bool(i % 2)) for i in range(40)]
        all_sent.extend(msgs)
        stop = threading.Event()

        def loop():
            try:
                r = b.raw(timeout=10)
                r.login("bob@example.com")
                for i, m in enumerate(msgs):
                    if stop.is_set():
                        return
                    tag = f"t{i}"
                    multi = i % 5 == 4
                    box = "Archive" if i % 3 == 0 else "INBOX"
                    if multi:
                        r.send(f"{tag} APPEND {box} {{{len(m)}+}}\r\n".encode() + m +
                               f" {{{len(msgs[i - 1])}+}}\r\n".encode() + msgs[i - 1] + b"\r\n")
                        line = r.until(tag)[-1]
                        if line.startswith(tag + " OK"):
                            acked.extend([m, msgs[i - 1]])
                    else:
                        line = append_raw(r, tag, m, mailbox=box, plus=bool(i % 2))
                        if line.startswith(tag + " OK"):
                            acked.append(m)
            except (OSError, EOFError):
                return

        t = threading.Thread(target=loop)
        t.start()
        time.sleep(rng.uniform(0.3, 2.0))
        b.server.signal(signal.SIGKILL)
        stop.set()
        t.join(15)
        assert not t.is_alive()
        bodies = check_after_kill(b, acct, "bob@example.com", acked, all_sent)
        print(f"[5] round {round_}: {len(acked)} acknowledged, {len(bodies)} stored")


# ---- 6. many idle sessions ------------------------------------------------------------------

def open_idle_sessions(b, n, email):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", b.imap_port), timeout=20)
        socks.append(RawImap(s))
    for step in (f'L LOGIN "{email}" "pw-{email}"', "s SELECT INBOX"):
        tag = step.split()[0]
        for r in socks:
            r.send(step + "\r\n")
        for r in socks:
            assert r.until(tag)[-1].startswith(tag + " OK")
    for r in socks:
        r.send("i IDLE\r\n")
    for r in socks:
        assert r.line() == "+ idling"
    return socks


def test_300_idle_sessions_all_see_a_delivery(imap_backend):
    b = start(imap_backend, workers=4)
    b.account("bob@example.com")
    b.deliver("bob@example.com", simple_message())
    pid = b.server.proc.pid
    warm = open_idle_sessions(b, 20, "bob@example.com")
    time.sleep(0.5)
    base, base_threads = rss_kb(pid), threads_of(pid)
    socks = open_idle_sessions(b, 300, "bob@example.com")
    time.sleep(1.0)
    grown = rss_kb(pid) - base
    per = grown * 1024 / 300
    threads = threads_of(pid)
    t0 = time.monotonic()
    b.deliver("bob@example.com", simple_message(subject="to all"))
    pending = {r.sock.fileno(): r for r in socks + warm}
    for r in pending.values():
        r.sock.setblocking(False)
    lat = []
    while pending and time.monotonic() - t0 < 5:
        ready, _, _ = select.select(list(pending), [], [], 0.1)
        for fd in ready:
            r = pending[fd]
            try:
                chunk = r.sock.recv(4096)
            except BlockingIOError:
                continue
            assert chunk, "an idle session was closed"
            r.buf += chunk
            if b"* 2 EXISTS\r\n" in r.buf:
                lat.append(time.monotonic() - t0)
                del pending[fd]
    print(f"\n[6] 300 idle sessions: RSS +{grown} KB = {per / 1024:.1f} KB per session; "
          f"threads {base_threads} -> {threads}; delivery -> EXISTS in all "
          f"{len(lat)} sessions: max {max(lat) if lat else None:.3f} s, "
          f"median {sorted(lat)[len(lat) // 2] if lat else 0:.3f} s")
    assert not pending, f"{len(pending)} sessions got no EXISTS within 5 s"
    assert max(lat) < bound(2.0), max(lat)
    assert per <= bound(16 * 1024), per
    assert threads <= base_threads + bound(1)
    for r in socks + warm:
        r.close()
    alive_and_serving(b)


# ---- regressions: bugs these attacks found -------------------------------------------------------

# MULTIAPPEND kept up to 128 KiB of every message literal in memory until
# the command completed (one spool per message): one session held ~110 MB.
# Finished messages now spill to their files (backend/imap/imap-append.c).
def test_unfinished_multiappend_memory_is_bounded(imap_backend):
    b = start(imap_backend, workers=2)
    b.account("bob@example.com")
    b.login("bob@example.com").logout()
    pid = b.server.proc.pid
    base = rss_kb(pid)
    r = b.raw(timeout=30)
    r.login("bob@example.com")
    m = big_message(0, 120 * 1024)
    # 900 literals of 120 KB (each under the 128 KiB in-memory spool), the
    # command never finished.
    r.send(b"m APPEND INBOX" + b"".join(f" {{{len(m)}+}}\r\n".encode() + m
                                        for _ in range(900)))
    time.sleep(1.0)
    grown = rss_kb(pid) - base
    print(f"\n[bug] unfinished MULTIAPPEND of 900 x 120 KB: RSS +{grown} KB")
    r.close()
    alive_and_serving(b)
    assert grown < bound(32 * 1024), f"one session holds {grown} KB"


# A literal8 (~{n}) was accepted as an ordinary string in every command
# after login (SELECT ~{5+} INBOX selected INBOX); RFC 3516 allows it only
# in APPEND.
def test_literal8_outside_append_is_refused(imap_backend):
    b = start(imap_backend, workers=2)
    b.account("bob@example.com")
    r = b.raw()
    r.login("bob@example.com")
    resp = r.cmd("g", "SELECT ~{5+}\r\nINBOX")
    r.close()
    assert resp[-1].startswith(("g BAD", "g NO")), resp
