#!/usr/bin/env python3
"""IMAP: sora-backend vs Dovecot 2.3 imap (maildir), in the same run.

Both servers are started once, side by side, at their default log levels,
and measured alternately: every repetition runs each test against both,
the order of the two flipping from one repetition to the next, so drift in
the machine's load hits both alike. Minimum, median and maximum over the
repetitions are reported with the ratio of the medians Sora/Dovecot (time
or memory: below 1.0 means Sora is better).

One client, the same code for both servers (plain sockets, LITERAL+ for
APPEND, which both advertise), one account (user0@example.com / x).
Tests:
  1. APPEND of 1,000 distinct ~4 KB messages over one connection, one
     command after the other (each waits for its OK), into a new mailbox.
  2. FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE) on a 10,000-message
     mailbox (filled once per server by MULTIAPPEND, 100 per command);
     the first FETCH after the fill is reported on its own (Dovecot builds
     its cache file there; Sora's planner may not have statistics of the
     new rows yet), then the repetitions (after ANALYZE messages on Sora).
  3. UID SEARCH BODY <word> on the same 10,000 messages (the word is in
     1% of them: 100 hits, checked).
  4. SELECT of a 100,000-message mailbox, a new one per repetition, first
     and second SELECT (each on a fresh connection) reported separately.
     Sora: one message APPENDed, then copied 99,999 times by one SQL
     INSERT ... SELECT over generate_series, through the normal INSERT so
     the triggers keep mailbox_stats exact; uid_next set after.
     Dovecot: 100,000 hard links to the same message (files of 50,000 links) in cur/
     (names with S= and W= sizes, no flags), indexed on the first SELECT.
  5. Memory per idle IDLE session: N sessions (2,000) each logged in, INBOX
     selected, in IDLE. Sora: RSS of sora-backend after minus before
     (restarted before each repetition, one warm-up session first), divided
     by N. Dovecot: summed RSS (and PSS) of its imap processes (one per
     session), divided by N; imap_hibernate_timeout left at its default
     (printed, 0 = no hibernation).
  6. IDLE notification latency: one session IDLEs on INBOX, a second
     connection APPENDs to INBOX; time from sending the APPEND to
     "* n EXISTS" on the idling session, 200 samples per repetition, p50
     and p99 (and the APPEND's own OK for reference).

Both sides are durable: Dovecot fsyncs (mail_fsync = optimized); Sora
commits to a private PostgreSQL cluster with fsync and synchronous_commit
on and fsyncs bodies in its fs store; the uploader is drained after each
Sora test, outside the timed part (its time is printed).

Usage: imap_bench.py [--runs R] [--quick] [--markdown FILE] [--only 1,2,...]
Environment: SORA_BIN (default ./bin); BENCH_QUICK=1 as --quick (one
repetition, smaller mailboxes and fewer sessions); BENCH_KEEP=1 keeps the
work directory and prints where.
"""
import argparse
import os
import random
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time

import benchlib
from benchlib import comm, pct, pss_kb, rss_kb, tree_pids

USER, PASSWORD = "user0@example.com", "x"
WORD = "zebracorn"
VOCAB = ("mail server index mailbox message quota folder storage backup archive delivery "
         "report meeting budget project review schedule update invoice customer release "
         "network latency throughput memory process thread database query commit replica "
         "weather garden coffee bicycle holiday station market river mountain window paper "
         "letter number system account password session client protocol header subject").split()


def make_message(i, size=4096, word=False):
    """A distinct ~size-byte message; every fourth one multipart/mixed with
    a small base64 attachment; `word` puts WORD into the text."""
    r = random.Random(i)
    words = lambda n: " ".join(r.choice(VOCAB) for _ in range(n))  # noqa: E731
    head = (f"From: Sender {i % 50} <sender{i % 50}@remote.test>\r\n"
            f"To: User Zero <user0@example.com>\r\n"
            + (f"Cc: cc{i % 7}@remote.test\r\n" if i % 3 == 0 else "")
            + f"Subject: {words(4)} {i}\r\n"
            f"Date: Tue, {1 + i % 28} Jul 2003 10:{i % 60:02d}:37 +0200\r\n"
            f"Message-ID: <bench-{i}@remote.test>\r\nMIME-Version: 1.0\r\n")
    text_size = size - len(head) - (1400 if i % 4 == 0 else 60)
    lines = []
    n = 0
    while n < text_size:
        line = words(10)
        lines.append(line)
        n += len(line) + 2
    if word:
        lines.insert(len(lines) // 2, f"see the {WORD} notes")
    text = "\r\n".join(lines) + "\r\n"
    if i % 4:
        return (head + "Content-Type: text/plain; charset=us-ascii\r\n\r\n" + text).encode()
    blob = bytes(r.getrandbits(8) for _ in range(900))
    import base64
    b64 = base64.encodebytes(blob).decode().replace("\n", "\r\n")
    return (head + f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n'
            f"--b{i}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{text}"
            f'--b{i}\r\nContent-Type: application/octet-stream; name="d{i}.bin"\r\n'
            f"Content-Transfer-Encoding: base64\r\n\r\n{b64}--b{i}--\r\n").encode()


def has_word(i):
    return i % 100 == 37


# ---- client ----

LITERAL = re.compile(rb"\{(\d+)\+?\}$")


class Imap:
    def __init__(self, port, timeout=300):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.pos = 0
        self.n = 0
        self.greeting = self.line()

    def _fill(self):
        chunk = self.s.recv(262144)
        if not chunk:
            raise EOFError("server closed the connection")
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0

    def _raw_line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = self.buf[self.pos:i]
                self.pos = i + 2
                return line
            self._fill()

    def line(self):
        """One response line with its literals inline."""
        line = self._raw_line()
        while True:
            m = LITERAL.search(line)
            if not m:
                return line
            n = int(m.group(1))
            while len(self.buf) - self.pos < n:
                self._fill()
            line += self.buf[self.pos:self.pos + n]
            self.pos += n
            line += self._raw_line()

    def buffered_line(self):
        """A complete line if one is buffered (no literals expected), else None."""
        i = self.buf.find(b"\r\n", self.pos)
        if i < 0:
            return None
        line = self.buf[self.pos:i]
        self.pos = i + 2
        return line

    def tag(self):
        self.n += 1
        return b"a%d" % self.n

    def send_cmd(self, text):
        t = self.tag()
        self.s.sendall(t + b" " + (text.encode() if isinstance(text, str) else text) + b"\r\n")
        return t

    def wait(self, t):
        """Untagged lines up to the tagged reply of t; raises unless OK."""
        out = []
        while True:
            line = self.line()
            if line.startswith(t + b" "):
                if not line[len(t) + 1:].startswith(b"OK"):
                    raise RuntimeError(f"{line!r}")
                return out, line
            out.append(line)

    def cmd(self, text):
        return self.wait(self.send_cmd(text))

    def login(self, user=USER, password=PASSWORD):
        return self.cmd(f'LOGIN "{user}" "{password}"')

    def append_send(self, box, msgs):
        """APPEND (MULTIAPPEND for several) with non-synchronising literals."""
        t = self.tag()
        parts = [t, b" APPEND ", box.encode()]
        for m in msgs:
            parts += [b" {%d+}\r\n" % len(m), m]
        parts.append(b"\r\n")
        self.s.sendall(b"".join(parts))
        return t

    def append(self, box, *msgs):
        return self.wait(self.append_send(box, msgs))

    def idle(self):
        t = self.send_cmd("IDLE")
        while True:
            line = self.line()
            if line.startswith(b"+"):
                return t
            if line.startswith(t):
                raise RuntimeError(f"IDLE: {line!r}")

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def logout(c):
    """LOGOUT, then waits until the server closed the connection."""
    try:
        c.send_cmd("LOGOUT")
        while True:
            c._fill()
    except (EOFError, OSError):
        pass
    c.close()


def session(side):
    c = Imap(side.port)
    c.login()
    return c


# ---- servers ----

class Sora(benchlib.Sora):
    def __init__(self, tmp, sessions):
        super().__init__(tmp, {"imap": f"insecure_auth = true\nmax_connections = {sessions + 500}\n"
                                       "max_connections_per_ip = 0\n"})

    def mailbox_id(self, name):
        return int(self.sql(f"""SELECT m.id FROM mailboxes m JOIN credentials c
                                 ON c.account_id = m.account_id
                                 WHERE c.address = '{USER}' AND m.name = '{name}'"""))

    def fill_big(self, box, n, msg):
        """box holds one message (uid 1): copies it to uids 2..n."""
        c = session(self)
        c.cmd(f"CREATE {box}")
        c.append(box, msg)
        logout(c)
        mid = self.mailbox_id(box)
        self.sql(f"""INSERT INTO messages (account_id, mailbox_id, uid, content_hash, size,
                         internal_date, sent_date, subject, message_id, in_reply_to,
                         references_hdr, from_text, to_text, cc_text, bcc_text, sort_subject,
                         sort_from, sort_to, sort_cc, sort_display_from, sort_display_to,
                         envelope, bodystructure, raw_headers, flags, keywords,
                         created_modseq, updated_modseq, sent_tz, imap_envelope,
                         imap_bodystructure, pop3_size)
                     SELECT m.account_id, m.mailbox_id, g, m.content_hash, m.size,
                         m.internal_date, m.sent_date, m.subject, m.message_id, m.in_reply_to,
                         m.references_hdr, m.from_text, m.to_text, m.cc_text, m.bcc_text,
                         m.sort_subject, m.sort_from, m.sort_to, m.sort_cc, m.sort_display_from,
                         m.sort_display_to, m.envelope, m.bodystructure, m.raw_headers, m.flags,
                         m.keywords, m.created_modseq, m.updated_modseq, m.sent_tz,
                         m.imap_envelope, m.imap_bodystructure, m.pop3_size
                       FROM messages m, generate_series(2, {n}) g
                      WHERE m.mailbox_id = {mid} AND m.uid = 1;
                     UPDATE mailboxes SET uid_next = {n + 1}, updated_at = now()
                      WHERE id = {mid};""")
        self.sql("ANALYZE messages")
        got = self.sql(f"SELECT message_count FROM mailbox_stats WHERE mailbox_id = {mid}")
        assert int(got) == n, got

    def memory(self, n):
        p = [self.proc.pid]
        return rss_kb(p), pss_kb(p)

    def fresh(self):
        """Restarted, so memory freed by earlier sessions is not reused."""
        self.stop_backend()
        self.start()


class Dovecot(benchlib.Dovecot):
    def __init__(self, tmp, sessions):
        super().__init__(tmp, "imap", f"""disable_plaintext_auth = no
mail_max_userip_connections = {sessions + 500}
default_process_limit = {sessions + 500}
default_client_limit = {3 * sessions + 1000}
service imap {{
  process_limit = {sessions + 500}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {{port}}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
""", "dovecot imap", password=PASSWORD)
        r = subprocess.run(["doveconf", "-c", self.conf, "imap_hibernate_timeout"],
                           capture_output=True, text=True)
        self.hibernate = (r.stdout.strip() or r.stderr.strip()).split("=")[-1].strip()

    def fill_big(self, box, n, msg):
        c = session(self)
        c.cmd(f"CREATE {box}")
        logout(c)
        cur = os.path.join(self.maildir("user0"), "." + box, "cur")
        vsize = len(msg)  # CRLF already: virtual size = size
        for i in range(n):
            if i % 50000 == 0:   # ext4 allows 65,000 links to a file
                src = os.path.join(self.base, f"{box}-{i}.eml")
                with open(src, "wb") as f:
                    f.write(msg)
                shutil.chown(src, "nobody", "nogroup")
            os.link(src, os.path.join(cur, f"{1600000000 + i}.M{i}P1.bench,S={len(msg)},"
                                           f"W={vsize}:2,"))
        # A big mailbox did not change in the last second: with a fresh
        # directory mtime Dovecot would rescan cur/ on every SELECT.
        old = time.time() - 3600
        for d in ("cur", "new"):
            os.utime(os.path.join(os.path.dirname(cur), d), (old, old))

    def memory(self, n):
        pids = [p for p in tree_pids(self.proc.pid) if comm(p) == "imap"]
        return rss_kb(pids), pss_kb(pids)

    def fresh(self):
        pass


# ---- tests ----

def t_append(side, run, count):
    c = session(side)
    box = f"append{run}"
    c.cmd(f"CREATE {box}")
    msgs = [make_message(1_000_000 + run * count + j) for j in range(count)]
    t0 = time.perf_counter()
    for m in msgs:
        c.append(box, m)
    dt = time.perf_counter() - t0
    logout(c)
    return dt


# Messages per MULTIAPPEND when filling: Sora refuses a command above 1 MiB
# in all (literals included; BAD "Command too long." and the session is
# closed), so 1,000 x 4 KB in one APPEND cannot be sent.
MULTI = 100


def fill_fetch_box(side, n):
    c = session(side)
    c.cmd("CREATE fetchbox")
    t0 = time.perf_counter()
    for first in range(0, n, MULTI):
        c.append("fetchbox", *[make_message(i, word=has_word(i))
                               for i in range(first, min(n, first + MULTI))])
    dt = time.perf_counter() - t0
    logout(c)
    return dt


def t_fetch(side, n):
    c = session(side)
    c.cmd("SELECT fetchbox")
    t0 = time.perf_counter()
    lines, _ = c.cmd("FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE)")
    dt = time.perf_counter() - t0
    got = sum(1 for x in lines if b" FETCH (" in x and b"BODYSTRUCTURE" in x)
    assert got == n, (side.name, got)
    logout(c)
    return dt


def t_search(side, n):
    c = session(side)
    c.cmd("SELECT fetchbox")
    t0 = time.perf_counter()
    lines, _ = c.cmd(f"UID SEARCH BODY {WORD}")
    dt = time.perf_counter() - t0
    hits = [x for x in lines if x.startswith(b"* SEARCH")][0].split()[2:]
    assert len(hits) == sum(1 for i in range(n) if has_word(i)), (side.name, len(hits))
    logout(c)
    return dt


def t_select(side, box, n):
    out = []
    for _ in range(2):
        c = session(side)
        t0 = time.perf_counter()
        lines, _ = c.cmd(f"SELECT {box}")
        out.append(time.perf_counter() - t0)
        assert any(x == b"* %d EXISTS" % n for x in lines), (side.name, lines)
        logout(c)
        time.sleep(0.5)   # whatever the server does after the session
    return out


def t_idle_memory(side, n):
    side.fresh()
    w = session(side)   # warm-up: pools, caches, the first login
    w.cmd("SELECT INBOX")
    w.close()
    time.sleep(1.0)
    rss0, pss0 = side.memory(n)
    conns = []
    t0 = time.perf_counter()
    try:
        for first in range(0, n, 100):
            batch = [Imap(side.port) for _ in range(min(100, n - first))]
            conns += batch
            for step in ('LOGIN "%s" "%s"' % (USER, PASSWORD), "SELECT INBOX"):
                tags = [c.send_cmd(step) for c in batch]
                for c, t in zip(batch, tags):
                    c.wait(t)
            for c in batch:
                c.s.sendall(b"i IDLE\r\n")
            for c in batch:
                if not c.line().startswith(b"+"):
                    raise RuntimeError("IDLE not accepted")
        opened = time.perf_counter() - t0
        time.sleep(2.0)
        rss1, pss1 = side.memory(n)
    finally:
        for c in conns:
            c.close()
    return {"rss": (rss1 - rss0) / n, "pss": (pss1 - pss0) / n, "rss_total": rss1,
            "open_s": opened}


def t_idle_latency(side, samples, run):
    a = session(side)
    a.cmd("SELECT INBOX")
    b = session(side)
    a.idle()
    exists, oks = [], []
    msgs = [make_message(2_000_000 + run * samples + k) for k in range(samples)]
    try:
        for m in msgs:
            t0 = time.perf_counter()
            tag = b.append_send("INBOX", [m])
            t_ex = t_ok = None
            while t_ex is None or t_ok is None:
                progressed = False
                if t_ex is None:
                    line = a.buffered_line()
                    if line is not None:
                        progressed = True
                        if line.endswith(b" EXISTS"):
                            t_ex = time.perf_counter()
                if t_ok is None:
                    line = b.buffered_line()
                    if line is not None:
                        progressed = True
                        if line.startswith(tag + b" "):
                            if not line.startswith(tag + b" OK"):
                                raise RuntimeError(f"APPEND: {line!r}")
                            t_ok = time.perf_counter()
                if progressed:
                    continue
                want = [x.s for x, t in ((a, t_ex), (b, t_ok)) if t is None]
                ready, _, _ = select.select(want, [], [], 30)
                if not ready:
                    raise TimeoutError(f"{side.name}: no EXISTS/OK within 30 s")
                for x in (a, b):
                    if x.s in ready:
                        x._fill()
            exists.append(t_ex - t0)
            oks.append(t_ok - t0)
    finally:
        a.close()
        b.close()
    return {"p50": pct(exists, 0.5), "p99": pct(exists, 0.99), "ok50": pct(oks, 0.5)}


# ---- driver ----

def bench(a, tmp):
    q = a.quick
    runs = 1 if q else a.runs
    n_append = 200 if q else 1000
    n_fetch = 2000 if q else 10000
    n_big = 10000 if q else 100000
    n_sess = 200 if q else a.sessions
    n_lat = 20 if q else 200
    only = set(int(x) for x in a.only.split(",")) if a.only else set(range(1, 7))

    hard = benchlib.raise_nofile()
    if n_sess + 200 > hard:
        n_sess = hard - 200
    sides = [Sora(tmp, n_sess)]
    try:
        sides.append(Dovecot(tmp, n_sess))
    except BaseException:
        sides[0].close()
        raise
    sora, dov = sides
    R = {}   # (test, side name) -> [values]

    def add(key, side, v):
        R.setdefault((key, side.name), []).append(v)

    def log(msg):
        print("  " + msg, flush=True)

    load0 = benchlib.loadavg()
    t_start = time.time()
    big_msg = make_message(42)
    try:
        if only & {2, 3}:
            for side in sides:
                dt = fill_fetch_box(side, n_fetch)
                t1 = time.perf_counter()
                side.settle()
                add("fill", side, dt)
                log(f"{side.name}: filled fetchbox with {n_fetch} messages by MULTIAPPEND in "
                    f"{dt:.2f} s (uploader drained {time.perf_counter() - t1:.2f} s later)")
            if 2 in only:
                for side in sides:
                    dt = t_fetch(side, n_fetch)
                    add("fetch1", side, dt)
                    log(f"{side.name}: first FETCH after the fill {dt:.3f} s")
            # The first FETCH ran with whatever planner statistics the fill
            # left (autovacuum may not have analysed the new rows yet); the
            # repetitions run with current ones, as autovacuum would have
            # it a minute later.
            sora.sql("ANALYZE messages")
        for rep in range(runs):
            order = sides if rep % 2 == 0 else sides[::-1]
            for side in order:
                if 1 in only:
                    dt = t_append(side, rep, n_append)
                    t1 = time.perf_counter()
                    side.settle()
                    add("append", side, dt)
                    log(f"run {rep + 1} {side.name}: APPEND {n_append} {dt:.2f} s "
                        f"({n_append / dt:.0f}/s; uploader drained "
                        f"{time.perf_counter() - t1:.2f} s later)")
                if 2 in only:
                    dt = t_fetch(side, n_fetch)
                    add("fetch", side, dt)
                    log(f"run {rep + 1} {side.name}: FETCH {n_fetch} {dt:.3f} s")
                if 3 in only:
                    dt = t_search(side, n_fetch)
                    add("search", side, dt)
                    log(f"run {rep + 1} {side.name}: UID SEARCH BODY {dt * 1000:.1f} ms")
                if 4 in only:
                    box = f"big{rep}"
                    t0 = time.perf_counter()
                    side.fill_big(box, n_big, big_msg)
                    fill = time.perf_counter() - t0
                    first, second = t_select(side, box, n_big)
                    add("sel1", side, first)
                    add("sel2", side, second)
                    log(f"run {rep + 1} {side.name}: SELECT {n_big} first {first:.3f} s, second "
                        f"{second:.3f} s (fill {fill:.1f} s)")
                if 6 in only:
                    r = t_idle_latency(side, n_lat, rep)
                    add("lat50", side, r["p50"])
                    add("lat99", side, r["p99"])
                    add("latok", side, r["ok50"])
                    log(f"run {rep + 1} {side.name}: IDLE latency p50 {r['p50'] * 1000:.2f} ms, "
                        f"p99 {r['p99'] * 1000:.2f} ms (APPEND OK p50 {r['ok50'] * 1000:.2f} ms)")
                if 5 in only:
                    try:
                        r = t_idle_memory(side, n_sess)
                    except (OSError, EOFError, RuntimeError) as e:
                        log(f"run {rep + 1} {side.name}: IDLE sessions FAILED: {e!r}")
                        continue
                    add("mem", side, r["rss"])
                    add("pss", side, r["pss"])
                    log(f"run {rep + 1} {side.name}: {n_sess} IDLE sessions: "
                        f"{r['rss']:.1f} KiB RSS, {r['pss']:.1f} KiB PSS per "
                        f"session (RSS total {r['rss_total'] / 1024:.1f} MiB; opened in "
                        f"{r['open_s']:.1f} s)")
        hib = dov.hibernate
    finally:
        for s in sides:
            s.close()
    load1 = benchlib.loadavg()

    rows = [
        ("append", f"APPEND {n_append:,} × ~4 KB, one connection", "s", 1, "%.2f"),
        ("fetch1", f"FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE), {n_fetch:,} msgs, "
                   "first after the fill", "s", 1, "%.3f"),
        ("fetch", f"FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE), {n_fetch:,} msgs", "s", 1,
         "%.3f"),
        ("search", f"UID SEARCH BODY (1% match), {n_fetch:,} msgs", "ms", 1000, "%.1f"),
        ("sel1", f"SELECT {n_big:,} msgs, first (Dovecot indexes)", "s", 1, "%.3f"),
        ("sel2", f"SELECT {n_big:,} msgs, second", "s", 1, "%.3f"),
        ("mem", f"memory per IDLE session, {n_sess:,} sessions (RSS)", "KiB", 1, "%.1f"),
        ("pss", f"memory per IDLE session, {n_sess:,} sessions (PSS)", "KiB", 1, "%.1f"),
        ("lat50", f"IDLE notification latency p50 ({n_lat} samples)", "ms", 1000, "%.2f"),
        ("lat99", f"IDLE notification latency p99 ({n_lat} samples)", "ms", 1000, "%.2f"),
        ("latok", "(for reference) the notifying APPEND's own OK, p50", "ms", 1000, "%.2f"),
        ("fill", f"(for reference) fill {n_fetch:,} msgs by MULTIAPPEND of 100", "s", 1,
         "%.2f"),
    ]
    benchlib.ratio_table(
        f"{runs} repetition(s), alternating; {os.cpu_count()} CPUs; load average {load0} "
        f"before, {load1} after ({time.time() - t_start:.0f} s); {time.strftime('%Y-%m-%d')}; "
        f"Dovecot {benchlib.dovecot_version()} imap_hibernate_timeout = {hib} (its default).",
        rows, R, sora.name, dov.name, a.markdown)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", default=bool(os.environ.get("BENCH_QUICK")))
    ap.add_argument("--markdown")
    ap.add_argument("--only", help="comma-separated test numbers (1-6)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sora-imap-bench-")
    os.chmod(tmp, 0o755)
    try:
        bench(a, tmp)
    finally:
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
