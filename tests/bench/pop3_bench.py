#!/usr/bin/env python3
"""POP3: sora-backend vs Dovecot 2.3 pop3 (maildir), in the same run.

Both servers are started once, side by side, at their default log levels,
and measured alternately (the order flips every repetition, so drift in the
machine's load hits both alike). Minimum, median and maximum over the
repetitions are reported with the ratio of the medians Sora/Dovecot (below
1.0 means Sora is faster).

One client, the same code for both servers (plain sockets), one account
(user0@example.com / x). Tests:
  1. RETR of 1,000 distinct ~100 KB messages: login, RETR 1 .. RETR 1000
     one after the other (each read to its end before the next is sent),
     QUIT without deleting. Filled once per server over IMAP (MULTIAPPEND
     of 50), so both stored the same bytes; every body is read and checked
     for its length.
  2. UIDL of a 50,000-message INBOX: login, UIDL (all 50,000 lines read),
     QUIT; on a fresh connection each time. The first after the fill is
     reported on its own (Dovecot builds its index there), then the
     repetitions. Sora: one message APPENDed, copied 49,999 times by one
     SQL INSERT ... SELECT (pop3_size included); Dovecot: 50,000 hard links
     to one message file in cur/ with S= and W= sizes in the names.
  3. (for reference) STAT + LIST of the same 50,000 messages.

Both sides are durable as in imap_bench.py (Dovecot mail_fsync =
optimized; Sora on a private PostgreSQL with fsync on, bodies fsynced in
its fs store). Nothing is deleted, so no test changes the next one.

Usage: pop3_bench.py [--runs R] [--quick] [--markdown FILE] [--only 1,2,3]
Environment: SORA_BIN (default ./bin); BENCH_QUICK=1 as --quick (one
repetition, 100 RETRs, 5,000 messages for UIDL).
"""
import argparse
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time

import benchlib

USER, PASSWORD = "user0@example.com", "x"


def make_message(i, size=100 * 1024):
    r = random.Random(i)
    head = (f"From: Sender {i % 50} <sender{i % 50}@remote.test>\r\n"
            f"To: User Zero <user0@example.com>\r\nSubject: pop3 bench {i}\r\n"
            f"Date: Tue, {1 + i % 28} Jul 2003 10:{i % 60:02d}:37 +0200\r\n"
            f"Message-ID: <pop3-bench-{i}@remote.test>\r\n\r\n").encode()
    lines, n = [head], len(head)
    k = 0
    while n < size:
        line = (f"{i:05d} {k:06d} " + "".join(r.choice("abcdefghijklmnopqrstuvwxyz .")
                                             for _ in range(60))).encode() + b"\r\n"
        if k % 40 == 7:
            line = b"." + line      # byte-stuffing happens on both sides
        lines.append(line)
        n += len(line)
        k += 1
    return b"".join(lines)


# ---- clients ----

class Conn:
    def __init__(self, port, timeout=300):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0

    def _fill(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise EOFError("server closed the connection")
        if self.pos > 0:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += chunk

    def line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return line
            self._fill()

    def multi(self):
        """The length of a multi-line body (stuffed) up to ".\\r\\n"."""
        start = self.pos
        if self.buf.startswith(b".\r\n", self.pos):
            self.pos += 3
            return 0
        search = self.pos
        while True:
            i = self.buf.find(b"\r\n.\r\n", search)
            if i >= 0:
                n = i + 2 - start
                self.pos = i + 5
                return n
            search = max(self.pos, len(self.buf) - 4)
            # keep what was read: compact only the consumed prefix
            if self.pos > 0:
                del self.buf[:self.pos]
                search -= self.pos
                start -= self.pos
                self.pos = 0
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buf += chunk

    def cmd(self, text):
        self.s.sendall(text.encode() + b"\r\n")
        line = self.line()
        if not line.startswith(b"+"):
            raise RuntimeError(f"{text!r}: {line!r}")
        return line


class Imap:
    def __init__(self, port):
        self.c = Conn(port)
        self.c.line()
        self.n = 0

    def cmd(self, text, payload=b""):
        self.n += 1
        tag = f"t{self.n}"
        self.c.s.sendall(f"{tag} {text}".encode() + payload + b"\r\n")
        while True:
            line = self.c.line()
            if line.startswith(tag.encode() + b" "):
                if not line.startswith(tag.encode() + b" OK"):
                    raise RuntimeError(line)
                return


def pop_login(port):
    c = Conn(port)
    c.line()
    c.cmd(f"USER {USER}")
    c.cmd(f"PASS {PASSWORD}")
    return c


# ---- servers ----

class Sora(benchlib.Sora):
    def __init__(self, tmp):
        super().__init__(tmp, {"pop3": "insecure_auth = true\n",
                               "imap": "insecure_auth = true\n"})

    def mailbox_id(self, name):
        return int(self.sql(f"""SELECT m.id FROM mailboxes m JOIN credentials c
                                 ON c.account_id = m.account_id
                                 WHERE c.address = '{USER}' AND m.name = '{name}'"""))

    @property
    def pop3(self):
        return self.ports["pop3"]

    @property
    def imap(self):
        return self.ports["imap"]

    def fill_big(self, n, msg):
        """INBOX is empty: one message, copied to uids 2..n."""
        c = Imap(self.imap)
        c.cmd(f"LOGIN {USER} {PASSWORD}")
        c.cmd(f"APPEND INBOX {{{len(msg)}+}}\r\n", msg)
        c.cmd("LOGOUT")
        mid = self.mailbox_id("INBOX")
        self.sql(f"""INSERT INTO messages (account_id, mailbox_id, uid, content_hash, size,
                         internal_date, sent_date, subject, message_id, in_reply_to,
                         references_hdr, from_text, to_text, cc_text, bcc_text, sort_subject,
                         sort_from, sort_to, sort_cc, sort_display_from, sort_display_to,
                         envelope, bodystructure, raw_headers, flags, keywords,
                         created_modseq, updated_modseq, sent_tz, pop3_size)
                     SELECT m.account_id, m.mailbox_id, g, m.content_hash, m.size,
                         m.internal_date, m.sent_date, m.subject, m.message_id, m.in_reply_to,
                         m.references_hdr, m.from_text, m.to_text, m.cc_text, m.bcc_text,
                         m.sort_subject, m.sort_from, m.sort_to, m.sort_cc, m.sort_display_from,
                         m.sort_display_to, m.envelope, m.bodystructure, m.raw_headers, m.flags,
                         m.keywords, m.created_modseq, m.updated_modseq, m.sent_tz, m.pop3_size
                       FROM messages m, generate_series(2, {n}) g
                      WHERE m.mailbox_id = {mid} AND m.uid = 1;
                     UPDATE mailboxes SET uid_next = {n + 1}, updated_at = now()
                      WHERE id = {mid};""")
        self.sql("ANALYZE messages")


class Dovecot(benchlib.Dovecot):
    def __init__(self, tmp):
        self.imap_port = benchlib.free_port()
        super().__init__(tmp, "imap pop3", f"""disable_plaintext_auth = no
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {{port}}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
""", "dovecot pop3", password=PASSWORD)
        benchlib.wait_port(self.imap_port, proc=self.proc)

    @property
    def pop3(self):
        return self.port

    @property
    def imap(self):
        return self.imap_port

    def fill_big(self, n, msg):
        c = Imap(self.imap)
        c.cmd(f"LOGIN {USER} {PASSWORD}")
        c.cmd("SELECT INBOX")
        c.cmd("LOGOUT")
        cur = os.path.join(self.maildir("user0"), "cur")
        for i in range(n):
            if i % 50000 == 0:
                src = os.path.join(self.base, f"big-{i}.eml")
                with open(src, "wb") as f:
                    f.write(msg)
                shutil.chown(src, "nobody", "nogroup")
            os.link(src, os.path.join(cur, f"{1600000000 + i}.M{i}P1.bench,S={len(msg)},"
                                           f"W={len(msg)}:2,"))
        old = time.time() - 3600
        for d in ("cur", "new"):
            os.utime(os.path.join(os.path.dirname(cur), d), (old, old))


# ---- tests ----

def fill_retr(side, n):
    """n distinct ~100 KB messages into user0's (empty) INBOX."""
    c = Imap(side.imap)
    c.cmd(f"LOGIN {USER} {PASSWORD}")
    for k in range(0, n, 50):
        msgs = [make_message(i) for i in range(k, min(n, k + 50))]
        payload = b"".join(f" {{{len(m)}+}}\r\n".encode() + m for m in msgs)
        c.cmd("APPEND INBOX", payload)
    c.cmd("LOGOUT")


def t_retr(side, n, sizes):
    t0 = time.perf_counter()
    c = pop_login(side.pop3)
    for i in range(1, n + 1):
        c.s.sendall(f"RETR {i}\r\n".encode())
        line = c.line()
        if not line.startswith(b"+OK"):
            raise RuntimeError(line)
        got = c.multi()
        if got < sizes[i - 1]:
            raise RuntimeError(f"RETR {i}: {got} bytes, want at least {sizes[i - 1]}")
    c.cmd("QUIT")
    return time.perf_counter() - t0


def t_uidl(side, n):
    t0 = time.perf_counter()
    c = pop_login(side.pop3)
    c.s.sendall(b"UIDL\r\n")
    c.line()
    size = c.multi()
    c.cmd("QUIT")
    dt = time.perf_counter() - t0
    if size < n * 8:
        raise RuntimeError(f"UIDL: only {size} bytes for {n} messages")
    return dt


def t_list(side, n):
    t0 = time.perf_counter()
    c = pop_login(side.pop3)
    line = c.cmd("STAT")
    if int(line.split()[1]) != n:
        raise RuntimeError(line)
    c.s.sendall(b"LIST\r\n")
    c.line()
    c.multi()
    c.cmd("QUIT")
    return time.perf_counter() - t0


def bench(a, tmp):
    q = a.quick
    runs = 1 if q else a.runs
    n_retr = 100 if q else 1000
    n_big = 5000 if q else 50000
    only = set(int(x) for x in a.only.split(",")) if a.only else {1, 2, 3}
    sides = [Sora(tmp)]
    try:
        sides.append(Dovecot(tmp))
    except BaseException:
        sides[0].close()
        raise
    sora, dov = sides
    R = {}

    def add(key, side, v):
        R.setdefault((key, side.name), []).append(v)

    def log(msg):
        print("  " + msg, flush=True)

    load0 = benchlib.loadavg()
    t_start = time.time()
    sizes = [len(make_message(i)) for i in range(n_retr)]
    try:
        # Test 2/3 use user0's INBOX with n_big copies; test 1 needs its
        # own INBOX: run 2/3 first, then empty it for 1 (both sides).
        if only & {2, 3}:
            big = make_message(7, 2048)
            for side in sides:
                t0 = time.perf_counter()
                side.fill_big(n_big, big)
                log(f"{side.name}: filled INBOX with {n_big} messages in "
                    f"{time.perf_counter() - t0:.1f} s")
                dt = t_uidl(side, n_big)
                add("uidl1", side, dt)
                log(f"{side.name}: first UIDL after the fill {dt:.3f} s")
            for rep in range(runs):
                for side in (sides if rep % 2 == 0 else sides[::-1]):
                    if 2 in only:
                        dt = t_uidl(side, n_big)
                        add("uidl", side, dt)
                        log(f"run {rep + 1} {side.name}: login + UIDL {n_big} + QUIT {dt:.3f} s")
                    if 3 in only:
                        dt = t_list(side, n_big)
                        add("list", side, dt)
                        log(f"run {rep + 1} {side.name}: login + STAT + LIST {n_big} + QUIT "
                            f"{dt:.3f} s")
            # Empty INBOX for the RETR test.
            sora.sql(f"DELETE FROM messages WHERE mailbox_id = {sora.mailbox_id('INBOX')}")
            shutil.rmtree(os.path.join(dov.maildir("user0")))
        if 1 in only:
            for side in sides:
                t0 = time.perf_counter()
                fill_retr(side, n_retr)
                side.settle()
                log(f"{side.name}: filled INBOX with {n_retr} x ~100 KB by MULTIAPPEND in "
                    f"{time.perf_counter() - t0:.1f} s")
            for rep in range(runs):
                for side in (sides if rep % 2 == 0 else sides[::-1]):
                    dt = t_retr(side, n_retr, sizes)
                    add("retr", side, dt)
                    log(f"run {rep + 1} {side.name}: login + RETR x {n_retr} + QUIT {dt:.3f} s "
                        f"({sum(sizes) / dt / 1e6:.0f} MB/s)")
    finally:
        for s in sides:
            s.close()
    load1 = benchlib.loadavg()
    rows = [
        ("retr", f"login + RETR of {n_retr:,} × ~100 KB + QUIT", "s", 1, "%.3f"),
        ("uidl1", f"login + UIDL of {n_big:,} msgs + QUIT, first after the fill "
                  "(Dovecot indexes)", "s", 1, "%.3f"),
        ("uidl", f"login + UIDL of {n_big:,} msgs + QUIT", "s", 1, "%.3f"),
        ("list", f"(for reference) login + STAT + LIST of {n_big:,} msgs + QUIT", "s", 1, "%.3f"),
    ]
    benchlib.ratio_table(
        f"{runs} repetition(s), alternating; {os.cpu_count()} CPUs; load average {load0} "
        f"before, {load1} after ({time.time() - t_start:.0f} s); {time.strftime('%Y-%m-%d')}; "
        f"Dovecot {benchlib.dovecot_version()}.",
        rows, R, sora.name, dov.name, a.markdown)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", default=bool(os.environ.get("BENCH_QUICK")))
    ap.add_argument("--markdown")
    ap.add_argument("--only", help="comma-separated test numbers (1-3)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sora-pop3-bench-")
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
