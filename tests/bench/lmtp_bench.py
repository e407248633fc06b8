#!/usr/bin/env python3
"""LMTP delivery: sora-backend vs Dovecot's LMTP (maildir), in the same run.

Both servers are started once, side by side, at their default log levels
(Sora `info`, one line per delivery; Dovecot's default, one line per
delivery), and measured alternately: every repetition runs each scenario
against both, the order of the two flipping from one repetition to the
next, so drift in the machine's load hits both alike. For each scenario the
minimum, median and maximum over the repetitions are reported, with the
load average before and after.

Scenarios (C clients, each on its own persistent connection, send S-byte
messages for T seconds after a one-second warm-up; MAIL, RCPT and DATA
pipelined as Postfix does; every scenario and repetition delivers into
fresh, empty mailboxes on both servers):
  - one recipient per message, every client its own mailbox (1, 8 and 32
    clients);
  - one recipient per message, all clients into one mailbox (8 and 32);
  - several recipients per message (--rcpts, default 5; 1, 8 and 32);
each with 10 KB and 100 KB messages.
Per scenario: deliveries per second (one per accepted recipient), the
ratio of the medians and the ratios of each repetition's pair (the two
servers ran back to back), CPU per
delivery (Sora's including PostgreSQL's; Dovecot's all its processes),
p50 and p99 latency of a transaction (MAIL to the last DATA reply), and
the ratios sora/dovecot.

Both sides are durable: Dovecot fsyncs each maildir file (mail_fsync =
optimized, its default); Sora fsyncs the body in its fs store and commits
to a private PostgreSQL cluster started here with its default fsync = on
and synchronous_commit = on.

Other modes:
  --strace N   N single-recipient deliveries from one client, each server
               under `strace -f -c` (attached to every process of the
               server, PostgreSQL included); prints flush and rename calls
               per delivery. --warm W delivers W untraced messages first.
  --cold N     restarts sora-backend N times and times the first and the
               second delivery, each on a fresh connection.

Usage: lmtp_bench.py [--runs R] [--seconds T] [--quick] [--markdown FILE]
                     [--only 'one mailbox/32,rcpts'] [--strace N] [--cold N]
Environment: SORA_BIN (default ./bin); BENCH_QUICK=1 as --quick (one run of
a few scenarios); BENCH_KEEP=1 keeps the work directory and prints where.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time

from benchlib import pct, proc_table, tree_cpu, tree_pids
import benchlib

# Accounts user0..user{N-1}@example.com; the throughput runs use fresh
# ones for every scenario and repetition (see bench()).
ACCOUNTS = 40

LINE = "The quick brown fox jumps over the lazy dog, again and again. 0123456789\r\n"


def make_message(size, n, seq):
    head = (f"From: Bench <bench@remote.test>\r\nTo: user{n}@example.com\r\n"
            f"Subject: benchmark message {n}\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
            f"Message-ID: <bench-{n}-{seq}@remote.test>\r\n"
            f"Content-Type: text/plain; charset=us-ascii\r\n\r\n")
    # Whole lines only: the terminating "." must start a line.
    return (head + LINE * max(1, (size - len(head)) // len(LINE))).encode() + b".\r\n"


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")
        self.reply()
        self.s.sendall(b"LHLO bench.test\r\n")
        self.reply()

    def reply(self):
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("server closed the connection")
            if line[3:4] != b"-":
                return line

    def deliver(self, rcpts, msg):
        """One transaction; returns the number of 250 replies after DATA."""
        self.s.sendall(b"MAIL FROM:<bench@remote.test>\r\n"
                       + b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts) + b"DATA\r\n")
        replies = [self.reply() for _ in range(len(rcpts) + 2)]
        if not (all(r.startswith(b"250") for r in replies[:-1]) and replies[-1].startswith(b"354")):
            raise RuntimeError(f"unexpected replies {replies!r}")
        self.s.sendall(msg)
        return sum(1 for _ in rcpts if self.reply().startswith(b"250"))

    def close(self):
        try:
            self.s.sendall(b"QUIT\r\n")
        except OSError:
            pass
        self.s.close()


class Client(threading.Thread):
    def __init__(self, port, n, rcpts, size, box):
        super().__init__(daemon=True)
        self.port, self.n, self.rcpts, self.size, self.box = port, n, rcpts, size, box
        self.ok = self.fail = 0
        self.lat = []
        self.error = None

    def run(self):
        try:
            c = Conn(self.port)
            seq = 0
            while time.time() < self.box["end"]:
                seq += 1
                msg = make_message(self.size, self.n, seq)
                t0 = time.time()
                ok = c.deliver(self.rcpts, msg)
                if t0 >= self.box["start"]:
                    self.lat.append(time.time() - t0)
                    self.ok += ok
                    self.fail += len(self.rcpts) - ok
            c.close()
        except Exception as e:  # reported by the main thread
            self.error = e


def run_clients(port, rcpt_sets, seconds, size, cpu_roots):
    """rcpt_sets: one list of recipients per client. Returns a dict with
    rate (deliveries/s), cpu (s per delivery), p50, p99 (s), fail."""
    now = time.time()
    box = {"start": now + 1.0, "end": now + 1.0 + seconds}
    ts = [Client(port, i, r, size, box) for i, r in enumerate(rcpt_sets)]
    for t in ts:
        t.start()
    time.sleep(max(0.0, box["start"] - time.time()))
    cpu0 = sum(tree_cpu(r) for r in cpu_roots)
    for t in ts:
        t.join()
    cpu1 = sum(tree_cpu(r) for r in cpu_roots)
    for t in ts:
        if t.error is not None:
            raise RuntimeError(f"client {t.n}: {t.error}")
    ok = sum(t.ok for t in ts)
    lat = [x for t in ts for x in t.lat]
    return {"rate": ok / seconds, "cpu": (cpu1 - cpu0) / ok if ok else float("nan"),
            "p50": pct(lat, 0.50), "p99": pct(lat, 0.99), "fail": sum(t.fail for t in ts)}


class Sora(benchlib.Sora):
    def __init__(self, tmp, accounts=ACCOUNTS):
        super().__init__(tmp, {"lmtp": ""}, accounts)


class Dovecot(benchlib.Dovecot):
    def __init__(self, tmp):
        super().__init__(tmp, "lmtp", """service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = {port}
  }
  process_min_avail = 2
}
""", "dovecot lmtp")


def scenarios(quick, rcpts):
    """(label, clients, size, recipients per message, one mailbox)."""
    if quick:
        return [("1 rcpt", 8, 10240, 1, False), ("1 rcpt, one mailbox", 32, 10240, 1, True),
                (f"{rcpts} rcpts", 8, 10240, rcpts, False)]
    out = []
    for size in (10240, 102400):
        for clients in (1, 8, 32):
            out.append(("1 rcpt", clients, size, 1, False))
    for size in (10240, 102400):
        for clients in (8, 32):
            out.append(("1 rcpt, one mailbox", clients, size, 1, True))
    for size in (10240, 102400):
        for clients in (1, 8, 32):
            out.append((f"{rcpts} rcpts", clients, size, rcpts, False))
    return out


def accounts_needed(clients, n, one_mailbox):
    return 1 if one_mailbox else clients * n


def rcpt_sets(first, clients, n, one_mailbox):
    """Recipients per client, from the accounts user{first}...: every
    client its own n mailboxes, or all clients the one mailbox."""
    if one_mailbox:
        return [[f"user{first}@example.com"] for _ in range(clients)]
    return [[f"user{first + i * n + j}@example.com" for j in range(n)] for i in range(clients)]


def bench(a, tmp):
    scen = scenarios(a.quick, a.rcpts)
    if a.only:
        # e.g. --only "one mailbox/32,rcpts/8/100": label substring[/clients[/KB]]
        want = [w.split("/") for w in a.only.split(",")]
        scen = [sc for sc in scen
                if any(w[0] in sc[0] and (len(w) < 2 or int(w[1]) == sc[1])
                       and (len(w) < 3 or int(w[2]) * 1024 == sc[2]) for w in want)]
    runs = 1 if a.quick else a.runs
    # Fresh, empty mailboxes for every scenario and repetition, on both
    # servers: otherwise each side would run into the mailboxes it filled
    # earlier, and the faster one into fuller ones (maildir in particular
    # slows down as a directory grows).
    per_rep = sum(accounts_needed(c, n, one) for _, c, _, n, one in scen)
    sides = [Sora(tmp, 1 + runs * per_rep)]
    try:
        sides.append(Dovecot(tmp))
    except BaseException:
        sides[0].close()
        raise
    results = {}   # (scenario index, side name) -> [result dicts]
    load0 = benchlib.loadavg()
    t0 = time.time()
    try:
        first = 1
        for rep in range(runs):
            order = sides if rep % 2 == 0 else sides[::-1]
            for si, (label, clients, size, n, one) in enumerate(scen):
                rs = rcpt_sets(first, clients, n, one)
                first += accounts_needed(clients, n, one)
                for side in order:
                    r = run_clients(side.port, rs, a.seconds, size, side.roots())
                    side.settle()
                    results.setdefault((si, side.name), []).append(r)
                    print(f"  run {rep + 1} {side.name:12s} {label:20s} {clients:2d} clients "
                          f"{size // 1024:3d} KB: {r['rate']:7.1f}/s, {r['cpu'] * 1000:.2f} ms "
                          f"CPU, p50 {r['p50'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms"
                          + (f", {r['fail']} failed" if r["fail"] else ""), flush=True)
        pending = sides[0].pending()
    finally:
        for s in sides:
            s.close()
    load1 = benchlib.loadavg()
    lines = [f"{runs} run(s) of {a.seconds:.0f} s per scenario and server, alternating; "
             f"{os.cpu_count()} CPUs; load average {load0} before, {load1} after "
             f"({time.time() - t0:.0f} s); {pending} bodies left for the uploader.", "",
             "| scenario | clients | size | Sora deliveries/s min / median / max | "
             "Dovecot deliveries/s min / median / max | ratio (medians) | "
             "paired ratios min / median / max | "
             "CPU/delivery Sora / Dovecot (medians) | Sora p50 / p99 | Dovecot p50 / p99 |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def mmm(rs, k, f="%.0f"):
        v = [r[k] for r in rs]
        return " / ".join(f % x for x in (min(v), statistics.median(v), max(v)))
    def paired(s, d):
        # Repetition by repetition: the two servers ran back to back, so a
        # drift in the machine's speed between repetitions cancels out.
        v = [x["rate"] / y["rate"] for x, y in zip(s, d) if y["rate"] > 0]
        return " / ".join(f"{x:.2f}" for x in (min(v), statistics.median(v), max(v))) if v else "-"
    for si, (label, clients, size, n, one) in enumerate(scen):
        s, d = results[(si, "sora-backend")], results[(si, "dovecot lmtp")]
        med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
        lines.append(
            f"| {label} | {clients} | {size // 1024} KB | {mmm(s, 'rate')} | {mmm(d, 'rate')} | "
            f"{med(s, 'rate') / med(d, 'rate'):.2f} | {paired(s, d)} | "
            f"{med(s, 'cpu') * 1000:.2f} / "
            f"{med(d, 'cpu') * 1000:.2f} ms ({med(s, 'cpu') / med(d, 'cpu'):.2f}) | "
            f"{med(s, 'p50') * 1000:.1f} / {med(s, 'p99') * 1000:.1f} ms | "
            f"{med(d, 'p50') * 1000:.1f} / {med(d, 'p99') * 1000:.1f} ms |")
    print("\n".join(lines))
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")


# ---- strace: flushes and renames per delivery ----

TRACED = ("fsync", "fdatasync", "rename", "renameat", "renameat2", "link", "linkat")


def strace_counts(out):
    """{syscall: calls} from an `strace -c` summary."""
    counts = {}
    for line in out.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m and m.group(2) in TRACED:
            counts[m.group(2)] = int(m.group(1))
    return counts


def traced_run(side, tmp, n, warm, size, groups):
    """n one-recipient deliveries on one connection with strace attached to
    each group of processes, after `warm` untraced ones; returns {group:
    {syscall: calls}}."""
    c = Conn(side.port)
    for i in range(1 + warm):   # not counted
        c.deliver(["user0@example.com"], make_message(size, 0, -1 - i))
    side.settle()
    table = proc_table()
    tracers = {}
    for gname, root in groups.items():
        pids = tree_pids(root, table)
        outf = os.path.join(tmp, f"strace-{gname}.txt")
        argv = ["strace", "-f", "-c", "-e", "trace=" + ",".join(TRACED), "-o", outf]
        for p in pids:
            argv += ["-p", str(p)]
        tracers[gname] = (subprocess.Popen(argv, stderr=subprocess.DEVNULL), outf)
    time.sleep(1.0)   # attached
    for i in range(n):
        c.deliver(["user0@example.com"], make_message(size, 0, i + 1))
    side.settle()
    time.sleep(0.5)   # whatever the deliveries left to background work
    c.close()
    out = {}
    for gname, (p, outf) in tracers.items():
        p.send_signal(signal.SIGINT)
        p.wait()
        with open(outf) as f:
            out[gname] = strace_counts(f.read())
    return out


def strace_mode(a, tmp):
    sora = Sora(tmp)
    try:
        dov = Dovecot(tmp)
    except BaseException:
        sora.close()
        raise
    try:
        res = traced_run(sora, tmp, a.strace, a.warm, 10240, {"sora-backend": sora.proc.pid,
                                                "postgresql": sora.postmaster})
        res.update(traced_run(dov, tmp, a.strace, a.warm, 10240, {"dovecot": dov.proc.pid}))
    finally:
        sora.close()
        dov.close()
    print(f"{a.strace} one-recipient 10 KB deliveries from one client into one mailbox, after "
          f"{a.warm + 1} untraced ones; calls per delivery "
          f"(strace -f -c, every process of each server; load average {benchlib.loadavg()}):")
    print("| process | " + " | ".join(TRACED) + " | flushes (fsync + fdatasync) |")
    print("|---|" + "---|" * (len(TRACED) + 1))
    for g, counts in res.items():
        per = [counts.get(k, 0) / a.strace for k in TRACED]
        print(f"| {g} | " + " | ".join(f"{x:.2f}" for x in per) +
              f" | {per[0] + per[1]:.2f} |")


# ---- cold start ----

def cold_mode(a, tmp):
    sora = Sora(tmp)
    firsts, seconds_ = [], []
    try:
        # The account's first delivery creates its mailboxes: not a cold
        # start cost, so it happens before.
        c = Conn(sora.port)
        c.deliver(["user0@example.com"], make_message(10240, 0, -1))
        c.close()
        for i in range(a.cold):
            sora.stop_backend()
            sora.start()
            for lst in (firsts, seconds_):
                c = Conn(sora.port)
                t0 = time.time()
                c.deliver(["user0@example.com"], make_message(10240, i, len(lst)))
                lst.append(time.time() - t0)
                c.close()
    finally:
        sora.close()
    ms = lambda v: " ".join(f"{x * 1000:.0f}" for x in v)  # noqa: E731
    print(f"first delivery after start (ms): {ms(firsts)}; median "
          f"{statistics.median(firsts) * 1000:.1f}")
    print(f"second delivery, fresh connection (ms): {ms(seconds_)}; median "
          f"{statistics.median(seconds_) * 1000:.1f}")


def spread_placement(path):
    """Marks path as the top of directory hierarchies (chattr +T) on ext4,
    so that the allocator places each server's directory tree in a block
    group of its own rather than next to path's parent, where earlier runs
    created and deleted their files. Without a journal, ext4 does not reuse
    an inode freed in the last one to six minutes and scans past every such
    inode on each allocation (docs/lmtp.md, "ext4 without a journal"): the
    first scenario after another benchmark's clean-up ran at 0.95 ms of CPU
    per delivery instead of 0.63. Both servers get the same placement. Other
    file systems refuse the flag, which changes nothing there."""
    import array
    import fcntl
    FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_TOPDIR_FL = 0x80086601, 0x40086602, 0x00020000
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        flags[0] |= FS_TOPDIR_FL
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags, True)
    except OSError:
        pass
    finally:
        os.close(fd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rcpts", type=int, default=5)
    ap.add_argument("--quick", action="store_true", default=bool(os.environ.get("BENCH_QUICK")))
    ap.add_argument("--markdown")
    ap.add_argument("--strace", type=int, default=0)
    ap.add_argument("--warm", type=int, default=0,
                    help="--strace: untraced deliveries first (steady state)")
    ap.add_argument("--cold", type=int, default=0)
    ap.add_argument("--only", default="",
                    help="scenarios whose label contains one of these (comma-separated), "
                         "optionally /CLIENTS[/KB], e.g. 'one mailbox/32,rcpts/8/100'")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sora-lmtp-bench-")
    os.chmod(tmp, 0o755)
    spread_placement(tmp)
    try:
        if a.strace:
            strace_mode(a, tmp)
        elif a.cold:
            cold_mode(a, tmp)
        else:
            bench(a, tmp)
    finally:
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
