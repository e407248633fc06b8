#!/usr/bin/env python3
"""LMTP deliveries per second: sora-backend vs Dovecot's LMTP (maildir).

C concurrent LMTP clients (default 8), each on its own persistent
connection and its own recipient, send S-byte messages (default 10 KB) for
T seconds (default 10) after a one-second warm-up; the count of 250 replies
per second is reported for both servers, started in the same run on the
same machine, and the ratio sora/dovecot.

Both sides are durable: Dovecot fsyncs each maildir file (mail_fsync =
optimized, its default); Sora fsyncs the staged body and its directory and
commits to a private PostgreSQL cluster started here with its default
fsync = on and synchronous_commit = on.

Usage: lmtp_bench.py [--clients C] [--seconds T] [--size S]
Environment: SORA_BIN (default ./bin); BENCH_KEEP=1 keeps the work
directory (logs, configs) and prints where it is.
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from sorafix.common import free_port, wait_port  # noqa: E402
from sorafix.pg import PgCluster  # noqa: E402

BIN = os.environ.get("SORA_BIN", os.path.join(ROOT, "bin"))


def make_message(size, n):
    head = (f"From: Bench <bench@remote.test>\r\nTo: user{n}@example.com\r\n"
            f"Subject: benchmark message {n}\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
            f"Message-ID: <bench-{n}-{{seq}}@remote.test>\r\n"
            f"Content-Type: text/plain; charset=us-ascii\r\n\r\n")
    line = "The quick brown fox jumps over the lazy dog, again and again. 0123456789\r\n"
    # Whole lines only: the terminating "." must start a line.
    return head, line * max(1, (size - len(head)) // len(line))


class Client(threading.Thread):
    def __init__(self, port, n, size, deadline_box):
        super().__init__(daemon=True)
        self.port, self.n = port, n
        self.head, self.body = make_message(size, n)
        self.box = deadline_box
        self.ok = 0
        self.fail = 0
        self.counting = False
        self.error = None
        self.last_failure = None

    def run(self):
        try:
            s = socket.create_connection(("127.0.0.1", self.port))
            f = s.makefile("rb")

            def reply():
                while True:
                    line = f.readline()
                    if not line:
                        raise EOFError("server closed the connection")
                    if line[3:4] != b"-":
                        return line
            reply()
            s.sendall(b"LHLO bench.test\r\n")
            reply()
            seq = 0
            while time.time() < self.box["end"]:
                seq += 1
                msg = (self.head.replace("{seq}", str(seq)) + self.body).encode() + b".\r\n"
                # MAIL + RCPT + DATA pipelined, as Postfix sends them.
                s.sendall(b"MAIL FROM:<bench@remote.test>\r\n"
                          + f"RCPT TO:<user{self.n}@example.com>\r\n".encode() + b"DATA\r\n")
                r1, r2, r3 = reply(), reply(), reply()
                if not (r1.startswith(b"250") and r2.startswith(b"250") and r3.startswith(b"354")):
                    raise RuntimeError(f"unexpected replies {r1!r} {r2!r} {r3!r}")
                s.sendall(msg)
                r = reply()
                if time.time() >= self.box["start"]:
                    if r.startswith(b"250"):
                        self.ok += 1
                    else:
                        self.fail += 1
                        self.last_failure = r
            s.sendall(b"QUIT\r\n")
            s.close()
        except Exception as e:  # reported by the main thread
            self.error = e


TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root):
    """CPU seconds used by a process tree: every live process's own time
    plus what its reaped children used (cutime/cstime), so backends that
    exited still count and nothing counts twice."""
    children = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append((int(pid), fields))
    total, todo = 0.0, [root]
    try:
        with open(f"/proc/{root}/stat") as f:
            rootf = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    total += sum(int(x) for x in rootf[11:15]) / TICK
    while todo:
        for pid, fields in children.get(todo.pop(), []):
            total += sum(int(x) for x in fields[11:15]) / TICK
            todo.append(pid)
    return total


def run_clients(port, clients, seconds, size, cpu_roots=()):
    """Returns (deliveries per second, failures, CPU seconds per delivery of
    the process trees in cpu_roots, measured over the same window)."""
    now = time.time()
    box = {"start": now + 1.0, "end": now + 1.0 + seconds}
    ts = [Client(port, i, size, box) for i in range(clients)]
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
    fail = sum(t.fail for t in ts)
    for t in ts:
        if t.last_failure is not None:
            print(f"client {t.n}: last failure: {t.last_failure!r}", file=sys.stderr)
            break
    return ok / seconds, fail, (cpu1 - cpu0) / ok if ok else float("nan")


def bench_sora(tmp, clients, seconds, size):
    # A durable cluster: the test fixture's fsync=off would flatter Sora.
    pg = PgCluster()
    pg.stop()
    pg._as_pg([os.path.join(pg.bindir, "pg_ctl"), "-D", pg.data, "-l",
               os.path.join(pg.dir, "log"), "-w", "-o",
               f"-p {pg.port} -k {pg.dir} -c listen_addresses=127.0.0.1 "
               f"-c max_connections=100", "start"])
    try:
        pg.create_db("bench")
        cfg = os.path.join(tmp, "sora.toml")
        port = free_port()
        with open(cfg, "w") as f:
            f.write('hostname = "mx.bench"\n' + pg.config_block("bench") +
                    f'[logging]\nlevel = "warn"\n'
                    f'[storage]\nbackend = "fs"\nfs_path = "{tmp}/blobs"\n'
                    f'[uploader]\npath = "{tmp}/staging"\n'
                    f'[servers.lmtp]\naddr = "127.0.0.1:{port}"\n')
        admin = os.path.join(BIN, "sora-admin")
        subprocess.run([admin, "--config", cfg, "migrate", "up"], check=True,
                       capture_output=True)
        for i in range(clients):
            subprocess.run([admin, "--config", cfg, "accounts", "create", "--email",
                            f"user{i}@example.com", "--password", "x", "--hash", "ssha512"],
                           check=True, capture_output=True)
        log = open(os.path.join(tmp, "sora.log"), "w")
        sora = subprocess.Popen([os.path.join(BIN, "sora-backend"), "--config", cfg],
                                stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
        try:
            wait_port(port, proc=sora)
            with open(os.path.join(pg.data, "postmaster.pid")) as f:
                postmaster = int(f.readline())
            rate, fail, cpu = run_clients(port, clients, seconds, size, (sora.pid, postmaster))
            # The uploader's share of the work must be inside the window
            # too: bodies it has not moved to the blob store yet are
            # reported, not hidden.
            stored, pending = pg.psql("SELECT (SELECT count(*) FROM messages) || ' ' || "
                                      "(SELECT count(*) FROM pending_uploads)",
                                      db="bench").split()
        finally:
            sora.terminate()
            sora.wait()
            log.close()
        return rate, fail, stored, cpu, int(pending)
    finally:
        pg.destroy()


def bench_dovecot(tmp, clients, seconds, size):
    base = os.path.join(tmp, "dovecot")
    mail = os.path.join(base, "mail")
    os.makedirs(mail)
    shutil.chown(mail, "nobody", "nogroup")
    port = free_port()
    conf = os.path.join(base, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(f"""protocols = lmtp
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
ssl = no
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:{mail}/%n/Maildir
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={mail}/%n allow_all_users=yes
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
  process_min_avail = 2
}}
""")
    dov = subprocess.Popen(["dovecot", "-F", "-c", conf], stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=dov, timeout=20)
        rate, fail, cpu = run_clients(port, clients, seconds, size, (dov.pid,))
        stored = 0
        for root, _, files in os.walk(mail):
            if root.endswith(("/new", "/cur")):
                stored += len(files)
    finally:
        dov.terminate()
        dov.wait()
    return rate, fail, stored, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=10 * 1024)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sora-lmtp-bench-")
    os.chmod(tmp, 0o755)
    try:
        s_rate, s_fail, s_stored, s_cpu, s_pending = bench_sora(tmp, a.clients, a.seconds, a.size)
        print(f"sora-backend   {s_rate:8.1f} deliveries/s, {s_cpu * 1000:.2f} ms CPU per delivery "
              f"incl. PostgreSQL ({a.clients} clients, {a.size}-byte messages, {a.seconds:.0f} s; "
              f"{s_fail} failed, {s_stored} stored in total, {s_pending} bodies not yet moved "
              f"from staging to the blob store)")
        d_rate, d_fail, d_stored, d_cpu = bench_dovecot(tmp, a.clients, a.seconds, a.size)
        print(f"dovecot lmtp   {d_rate:8.1f} deliveries/s, {d_cpu * 1000:.2f} ms CPU per delivery "
              f"({a.clients} clients, {a.size}-byte messages, {a.seconds:.0f} s; "
              f"{d_fail} failed, {d_stored} stored in total)")
        print(f"ratio sora/dovecot LMTP deliveries per second: {s_rate / d_rate:.2f} "
              f"(target: >= 1.0); CPU per delivery sora/dovecot: {s_cpu / d_cpu:.2f}")
    finally:
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
