#!/usr/bin/env python3
"""sora-proxy (issue 11): relay overhead, memory per session, logins/s.

One sora-backend (durable private PostgreSQL, fs blob store) with two IMAP
listeners: `imap` for direct clients and `imap_pp` that requires a PROXY v2
header (what sora-proxy with remote_use_proxy_protocol and HAProxy with
send-proxy-v2 connect to) and accepts the proxy's master SASL login. In
front of it, in the same run: one sora-proxy (imap_proxy, plain and TLS
listeners, default event_loops and worker_threads), HAProxy 'mode tcp', and
for (c) Dovecot 2.3's imap-login proxying to the backend. All at their
default log levels.

(a) FETCH 1 BODY[] of one 50 MB message (base64 of random bytes, APPENDed
    once): directly from the backend, through sora-proxy and through
    HAProxy, alternating the order on every repetition; one untimed warm-up
    fetch per path first. Min/median/max and the ratios of the medians
    proxy/direct and haproxy/direct. Target: proxy overhead <= 10 %.
(b) N idle proxied TLS sessions (N = 5,000; 2,000 with --quick): each a TLS
    handshake with the proxy, LOGIN (SSHA512 hash, cheap) and nothing more.
    RSS of the sora-proxy process after minus before (one warm-up session
    first), divided by N. Both sockets of a session count (client TLS and
    backend); kernel socket buffers are not in RSS. Target <= 30 KB.
(c) Logins/s through the proxy for accounts with a bcrypt cost-10 hash
    (C concurrent clients, LOGIN + LOGOUT, plain TCP, for D seconds),
    against the machine's bcrypt ceiling: bench-password --ceiling C
    (Sora's own verifier on C threads doing nothing else; C = the storm's
    concurrency, so that on a machine shared with other work the ceiling's
    threads get the same share of the CPUs as the proxy's busy workers),
    measured before and after the storms (their mean is the ceiling).
    Target >= 90 %. The storm runs twice, on 400 cost-10 accounts and on
    400 cost-12 accounts (Sora's default for new hashes), each against its
    ceiling. A login rehashes only bcrypt below cost 10
    (SORA_PW_REHASH_BELOW_BCRYPT_COST), so neither storm rehashes (the
    stored costs are printed before and after to show it).
    Because the proxy shares the machine's CPUs with the client, the
    backend and PostgreSQL here, the proxy's CPU time per login is also
    reported against bench-password's CPU time per bcrypt operation (a
    figure other load on the machine does not move). The same two storms
    against Dovecot's imap-login (high-performance mode, a passwd-file with
    the same two hashes and proxy=y host=... master=... pass=... to the
    backend's plain listener, so the backend does the same master login;
    Dovecot does not upgrade hashes). Meanwhile a separate process keeps 20
    sessions logged in through the proxy and sends NOOP on one of them
    every millisecond: p50/p99/max of the round trip during each storm and,
    for reference, just before them (the loop never blocks).

Usage: proxy_bench.py [--runs R] [--quick] [--markdown FILE] [--only a,b,c]
Environment: SORA_BIN (default ./bin), BENCH_BIN (bench-password,
default build/bench), BENCH_QUICK=1 as --quick, BENCH_KEEP=1 keeps the work
directory.
"""
import argparse
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import benchlib
from benchlib import BIN, ROOT, free_port, loadavg, pct, rss_kb, wait_port
from sorafix.common import Certs

PASSWORD = "x"
MASTER = ("proxy", "proxy-secret")
STORM_USERS = 400


# ---- a minimal IMAP client ----

class Client:
    def __init__(self, port, tls_ctx=None, timeout=120):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_ctx is not None:
            s = tls_ctx.wrap_socket(s, server_hostname="mail.test")
        self.s = s
        self.buf = bytearray()
        self.n = 0
        self.line()  # greeting

    def _fill(self):
        d = self.s.recv(1 << 20)
        if not d:
            raise ConnectionError("connection closed")
        self.buf += d

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return out
            self._fill()

    def cmd(self, text):
        self.n += 1
        tag = f"t{self.n}".encode()
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        while True:
            ln = self.line()
            if ln.startswith(tag + b" "):
                if not ln.startswith(tag + b" OK"):
                    raise RuntimeError(f"{text.split()[0]}: {ln!r}")
                return ln

    def login(self, user, password=PASSWORD):
        return self.cmd(f'LOGIN "{user}" "{password}"')

    def append(self, box, msg):
        self.n += 1
        tag = f"t{self.n}".encode()
        self.s.sendall(tag + f" APPEND {box} {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
        while True:
            ln = self.line()
            if ln.startswith(tag + b" "):
                if not ln.startswith(tag + b" OK"):
                    raise RuntimeError(f"APPEND: {ln!r}")
                return

    def fetch_body(self, size):
        """FETCH 1 BODY[] into a preallocated buffer; returns the seconds
        from sending the command to the tagged OK."""
        t0 = time.perf_counter()
        self.n += 1
        tag = f"t{self.n}".encode()
        self.s.sendall(tag + b" FETCH 1 BODY[]\r\n")
        ln = self.line()
        if not ln.endswith(b"}"):
            raise RuntimeError(f"FETCH: {ln!r}")
        n = int(ln[ln.rindex(b"{") + 1:-1])
        if n != size:
            raise RuntimeError(f"FETCH: {n} bytes, not {size}")
        body = bytearray(n)
        view = memoryview(body)
        got = min(len(self.buf), n)
        view[:got] = self.buf[:got]
        del self.buf[:got]
        while got < n:
            r = self.s.recv_into(view[got:], min(n - got, 1 << 20))
            if not r:
                raise ConnectionError("closed in FETCH")
            got += r
        while True:
            ln = self.line()
            if ln.startswith(tag + b" "):
                if not ln.startswith(tag + b" OK"):
                    raise RuntimeError(f"FETCH: {ln!r}")
                break
        return time.perf_counter() - t0, body

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def login_once(port, user):
    """connect, greeting, LOGIN, LOGOUT (waits for its OK)."""
    c = Client(port, timeout=60)
    try:
        c.login(user)
        c.cmd("LOGOUT")
    finally:
        c.close()


# ---- the servers ----

class Setup:
    def __init__(self, tmp, sessions):
        self.tmp = tmp
        self.certs = Certs(tmp)
        big = sessions + 1000
        limits = f"max_connections = {big}\nmax_connections_per_ip = 0\n"
        user, pw = MASTER
        master = f'master_sasl_username = "{user}"\nmaster_sasl_password = "{pw}"\n'
        self.sora = benchlib.Sora(tmp, {
            "imap": f'insecure_auth = true\nappend_limit = "60mb"\n{limits}{master}',
            "imap_pp": f'type = "imap"\ninsecure_auth = true\n{limits}{master}'
                       '[servers.imap_pp.proxy_protocol]\nenabled = true\n'
                       'trusted_proxies = ["127.0.0.0/8"]\n',
        }, accounts=100)
        self.procs = []
        try:
            self._bcrypt_accounts()
            self._proxy(big)
            self._haproxy(big)
        except BaseException:
            self.close()
            raise

    def _bcrypt_accounts(self):
        """bc0..: a bcrypt cost-10 hash; bd0..: a cost-12 hash (the default
        for new hashes)."""
        self.bcrypt = {}
        for prefix, cost in (("bc", 10), ("bd", 12)):
            out = subprocess.run(["doveadm", "pw", "-s", "BLF-CRYPT", "-r", str(cost), "-p",
                                  PASSWORD], check=True, capture_output=True, text=True).stdout.strip()
            self.bcrypt[prefix] = out  # {BLF-CRYPT}$2y$NN$...
            subprocess.run([os.path.join(BIN, "sora-admin"), "--config", self.sora.cfg, "accounts",
                            "create", "--email", f"{prefix}0@example.com", "--hash-import", out],
                           check=True, capture_output=True)
            self.sora.sql(f"""WITH a AS (INSERT INTO accounts SELECT FROM generate_series(1, {STORM_USERS - 1})
                                RETURNING id)
                              INSERT INTO credentials (account_id, address, password_hash, primary_identity)
                              SELECT a.id, '{prefix}' || (row_number() OVER (ORDER BY a.id)) || '@example.com',
                                     (SELECT password_hash FROM credentials
                                      WHERE address = '{prefix}0@example.com'), true FROM a""")
        if self.stored_costs("bc") != {10: STORM_USERS}:
            raise RuntimeError(f"storm accounts: {self.stored_costs('bc')}")

    def stored_costs(self, prefix):
        """{bcrypt cost: number of accounts} of the storm accounts prefix*."""
        out = self.sora.sql(f"""SELECT substring(password_hash from '\\$2[aby]\\$([0-9]+)\\$'), count(*)
                                FROM credentials WHERE address LIKE '{prefix}%' GROUP BY 1""")
        res = {}
        for ln in out.strip().splitlines():
            k, v = ln.split("|")
            res[int(k)] = int(v)
        return res

    def _proxy(self, big):
        self.proxy_port, self.proxy_tls_port = free_port(), free_port()
        user, pw = MASTER
        common = (f'remote_addrs = ["127.0.0.1:{self.sora.ports["imap_pp"]}"]\n'
                  'remote_use_proxy_protocol = true\n'
                  f'master_sasl_username = "{user}"\nmaster_sasl_password = "{pw}"\n'
                  f'max_connections = {big}\nmax_connections_per_ip = 0\n')
        self.proxy_cfg = os.path.join(self.tmp, "proxy.toml")
        with open(self.proxy_cfg, "w") as f:
            f.write('hostname = "proxy.bench"\n' + self.sora.pg.config_block("bench")
                    + f'[servers.imap]\ntype = "imap_proxy"\naddr = "127.0.0.1:{self.proxy_port}"\n'
                    f'insecure_auth = true\n{common}'
                    f'[servers.imaps]\ntype = "imap_proxy"\naddr = "127.0.0.1:{self.proxy_tls_port}"\n'
                    f'tls = true\ntls_cert_file = "{self.certs.server_chain}"\n'
                    f'tls_key_file = "{self.certs.server_key}"\n{common}')
        self.proxy_log = open(os.path.join(self.tmp, "proxy.log"), "a")
        self.proxy = subprocess.Popen([os.path.join(BIN, "sora-proxy"), "--config", self.proxy_cfg],
                                      stdout=self.proxy_log, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs.append(self.proxy)
        for p in (self.proxy_port, self.proxy_tls_port):
            wait_port(p, proc=self.proxy, timeout=20)
        # The first health check marks the backend up.
        deadline = time.time() + 20
        while True:
            try:
                login_once(self.proxy_port, "user0@example.com")
                break
            except (RuntimeError, OSError):
                if time.time() > deadline:
                    raise
                time.sleep(0.2)

    def _haproxy(self, big):
        self.haproxy_port = free_port()
        cfg = os.path.join(self.tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"""global
    maxconn {big}
defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend f
    bind 127.0.0.1:{self.haproxy_port}
    default_backend b
backend b
    server be 127.0.0.1:{self.sora.ports["imap_pp"]} send-proxy-v2
""")
        self.haproxy = subprocess.Popen(["haproxy", "-db", "-f", cfg],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(self.haproxy)
        wait_port(self.haproxy_port, proc=self.haproxy)

    def dovecot_proxy(self):
        """Dovecot imap-login proxying to the backend's plain listener as
        the master user, users in a passwd-file with the bcrypt hash."""
        base = os.path.join(self.tmp, "dovecot")
        os.makedirs(base, exist_ok=True)
        port = free_port()
        user, pw = MASTER
        with open(os.path.join(base, "users"), "w") as f:
            for prefix, h in self.bcrypt.items():
                for i in range(STORM_USERS):
                    f.write(f"{prefix}{i}@example.com:{h}::::::proxy=y host=127.0.0.1 "
                            f"port={self.sora.ports['imap']} master={user} pass={pw}\n")
        conf = os.path.join(base, "dovecot.conf")
        with open(conf, "w") as f:
            f.write(f"""protocols = imap
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
ssl = no
disable_plaintext_auth = no
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = passwd-file
  args = {base}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={base}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = {os.cpu_count()}
  client_limit = 2000
}}
""")
        os.chmod(os.path.join(base, "users"), 0o644)
        proc = subprocess.Popen(["dovecot", "-F", "-c", conf], stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_port(port, proc=proc, timeout=20)
        login_once(port, "bc0@example.com")
        return port, proc, os.path.join(base, "dovecot.log")

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if getattr(self, "proxy_log", None):
            self.proxy_log.close()
        self.sora.close()


# ---- (a) 50 MB FETCH ----

def big_message(size):
    import base64
    head = (b"From: a@remote.test\r\nTo: user0@example.com\r\nSubject: 50 MB\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n")
    raw = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (head + raw)[:size - 2] + b"\r\n"


def t_fetch(st, runs, size, log):
    msg = big_message(size)
    c = Client(st.sora.ports["imap"])
    c.login("user0@example.com")
    c.cmd("CREATE big")
    c.append("big", msg)
    c.close()
    st.sora.settle()
    paths = {"direct": st.sora.ports["imap"], "sora-proxy": st.proxy_port,
             "haproxy": st.haproxy_port}
    clients = {}
    for name, port in paths.items():
        c = Client(port)
        c.login("user0@example.com")
        c.cmd("EXAMINE big")
        _, body = c.fetch_body(len(msg))  # warm-up, and a check
        if body != msg:
            raise RuntimeError(f"FETCH through {name}: the body differs")
        clients[name] = c
    res = {k: [] for k in paths}
    order = list(paths)
    for r in range(runs):
        for name in (order if r % 2 == 0 else order[::-1]):
            t, _ = clients[name].fetch_body(len(msg))
            res[name].append(t)
        log(f"  (a) run {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in res.items()))
    for c in clients.values():
        c.close()
    return res


# ---- (b) idle TLS sessions ----

def t_idle_tls(st, n, log):
    ctx = ssl.create_default_context(cafile=st.certs.ca_crt)
    ctx.check_hostname = False
    warm = Client(st.proxy_tls_port, ctx)
    warm.login("user0@example.com")
    time.sleep(1.0)
    before = rss_kb([st.proxy.pid])
    conns = []
    t0 = time.time()
    for i in range(n):
        c = Client(st.proxy_tls_port, ctx)
        c.login(f"user{i % 100}@example.com")
        conns.append(c)
    elapsed = time.time() - t0
    time.sleep(2.0)
    after = rss_kb([st.proxy.pid])
    # Still alive: every session answers a NOOP through the proxy (a sample).
    for c in conns[::max(1, n // 50)]:
        c.cmd("NOOP")
    log(f"  (b) {n} TLS sessions logged in in {elapsed:.1f} s; proxy RSS {before} kB -> {after} kB")
    for c in conns:
        c.close()
    warm.close()
    return (after - before) * 1024 / n, before, after


# ---- (c) login storm ----

def ceiling(seconds, cost, threads):
    exe = os.path.join(os.environ.get("BENCH_BIN", os.path.join(ROOT, "build", "bench")),
                       "bench-password")
    out = subprocess.run([exe, "--ceiling", str(threads), "--bcrypt-cost", str(cost),
                          "--seconds", str(seconds)], check=True, capture_output=True,
                         text=True).stdout
    # "... N verifies in E s, C CPU s each: R verifies/s"
    cpu_each = float(out.split(" CPU s each")[0].split()[-1])
    return float(out.split(":")[-1].split()[0]), cpu_each


def noop_prober(port, m, interval=0.02):
    """Child process (--noop-prober): m sessions logged in through the
    proxy; NOOP on each in turn, every interval/m seconds, recording round
    trips. A line on stdin asks for the samples so far (one line of
    space-separated seconds); end of input ends it. A process of its own so
    the storm's client threads cannot delay it (the GIL)."""
    clients = []
    for i in range(m):
        c = Client(port, timeout=30)
        c.login(f"user{i % 100}@example.com")
        clients.append(c)
    samples, lock, stop = [], threading.Lock(), threading.Event()

    def run():
        i, nxt = 0, time.perf_counter()
        while not stop.is_set():
            c = clients[i % m]
            t0 = time.perf_counter()
            c.cmd("NOOP")
            with lock:
                samples.append(time.perf_counter() - t0)
            i += 1
            nxt += interval / m
            d = nxt - time.perf_counter()
            if d > 0:
                time.sleep(d)
            else:
                nxt = time.perf_counter()
    th = threading.Thread(target=run, daemon=True)
    th.start()
    print("ready", flush=True)
    for _ in sys.stdin:
        with lock:
            out, samples[:] = list(samples), []
        print(" ".join(f"{x:.6f}" for x in out), flush=True)
    stop.set()
    th.join()


class NoopSessions:
    def __init__(self, port, m):
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--noop-prober",
                                   str(port), str(m)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        if self.p.stdout.readline().strip() != "ready":
            raise RuntimeError("the NOOP prober did not start")

    def take(self):
        self.p.stdin.write("\n")
        self.p.stdin.flush()
        return [float(x) for x in self.p.stdout.readline().split()]

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


def storm(port, seconds, conc, prefix):
    """conc clients each logging in and out as fast as they can; none
    starts a login after `seconds`. Rate = logins completed in the window
    [warm, seconds] (after a ramp-up of a fifth of it) divided by its
    length, so neither the ramp-up nor the drain counts.
    (logins/s, per-login latencies, errors)."""
    lat, done, errs = [], [], []
    lock = threading.Lock()
    t0 = time.perf_counter()
    stop = t0 + seconds
    warm = t0 + seconds / 5

    def worker(k):
        j = k
        while time.perf_counter() < stop:
            t1 = time.perf_counter()
            try:
                login_once(port, f"{prefix}{j % STORM_USERS}@example.com")
            except Exception as e:  # noqa: BLE001
                with lock:
                    errs.append(repr(e))
                time.sleep(0.05)
                continue
            t2 = time.perf_counter()
            with lock:
                lat.append(t2 - t1)
                done.append(t2)
            j += conc
    ths = [threading.Thread(target=worker, args=(k,)) for k in range(conc)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    n = sum(1 for t in done if warm <= t <= stop)
    return n / (stop - warm), lat, errs


def t_logins(st, seconds, conc, log, with_dovecot):
    out = {}
    ceil = {10: [], 12: []}
    cpu_each = {10: [], 12: []}

    def ceilings():
        for cost in ceil:
            r, c = ceiling(2, cost, conc)
            ceil[cost].append(r)
            cpu_each[cost].append(c)
        log(f"  (c) bcrypt ceiling on {conc} threads: "
            + ", ".join(f"cost {k} {v[-1]:.1f}/s ({cpu_each[k][-1] * 1000:.1f} ms CPU each)"
                        for k, v in ceil.items()))
    ceilings()
    noop = NoopSessions(st.proxy_port, 20)
    time.sleep(3)
    out["noop_idle"] = noop.take()
    for prefix in ("bc", "bd"):
        before = st.stored_costs(prefix)
        cpu0 = benchlib.tree_cpu(st.proxy.pid)
        rate, lat, errs = storm(st.proxy_port, seconds, conc, prefix)
        cpu = (benchlib.tree_cpu(st.proxy.pid) - cpu0) / seconds
        after = st.stored_costs(prefix)
        out["proxy-" + prefix] = (rate, lat, errs, cpu * seconds / max(1, len(lat)), before, after,
                                  noop.take())
        log(f"  (c) sora-proxy, {prefix}* accounts: {rate:.1f} logins/s ({len(errs)} errors), "
            f"proxy CPU {cpu:.2f} cores; stored bcrypt costs {before} -> {after}")
        if errs:
            log("      first error: " + errs[0])
    noop.close()
    ceilings()
    out["ceil"] = {k: statistics.mean(v) for k, v in ceil.items()}
    out["ceil_all"] = ceil
    out["cpu_each"] = {k: statistics.mean(v) for k, v in cpu_each.items()}
    if with_dovecot:
        try:
            port, proc, dlog = st.dovecot_proxy()
        except Exception as e:  # noqa: BLE001
            log(f"  (c) Dovecot proxy did not start or log in: {e!r}")
        else:
            for prefix in ("bc", "bd"):
                rate, lat, errs = storm(port, seconds, conc, prefix)
                out["dovecot-" + prefix] = (rate, lat, errs)
                log(f"  (c) dovecot imap-login, {prefix}* accounts: {rate:.1f} logins/s "
                    f"({len(errs)} errors)")
                if errs:
                    log("      first error: " + errs[0])
            proc.terminate()
            proc.wait(timeout=20)
    return out


# ---- report ----

def mmm(v, fmt):
    return f"{fmt(min(v))} / {fmt(statistics.median(v))} / {fmt(max(v))}"


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--noop-prober":
        return noop_prober(int(sys.argv[2]), int(sys.argv[3]))
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--quick", action="store_true", default=bool(os.environ.get("BENCH_QUICK")))
    ap.add_argument("--sessions", type=int, default=None)
    ap.add_argument("--markdown")
    ap.add_argument("--only", default="a,b,c")
    ap.add_argument("--no-dovecot", action="store_true")
    a = ap.parse_args()
    only = set(a.only.split(","))
    runs = a.runs or (3 if a.quick else 5)
    n = a.sessions or (2000 if a.quick else 5000)
    storm_s = 5 if a.quick else 10
    size = 50 * 1024 * 1024
    hard = benchlib.raise_nofile()
    n = min(n, (hard - 200) // 2)
    tmp = tempfile.mkdtemp(prefix="sora-bench-proxy-")
    os.chmod(tmp, 0o755)
    start_load = loadavg()

    def log(m):
        print(m, flush=True)

    log(f"load average at start: {start_load}; {os.cpu_count()} CPUs")
    st = None
    rows = []
    try:
        st = Setup(tmp, n)
        if "b" in only:
            per, before, after = t_idle_tls(st, n, log)
            rows.append(("(b) RSS per idle proxied TLS session", f"{n} sessions",
                         f"{per / 1024:.1f} KiB ({before} -> {after} kB)", "<= 30 KB",
                         "met" if per <= 30 * 1024 else "missed"))
        if "a" in only:
            res = t_fetch(st, runs, size, log)
            f = lambda x: f"{x:.3f} s"  # noqa: E731
            md = {k: statistics.median(v) for k, v in res.items()}
            for k in res:
                rows.append((f"(a) 50 MB FETCH BODY[], {k}", f"{runs} runs, min/med/max",
                             mmm(res[k], f), "", ""))
            rp = md["sora-proxy"] / md["direct"]
            rh = md["haproxy"] / md["direct"]
            rows.append(("(a) ratio sora-proxy/direct (medians)", "", f"{rp:.3f}", "<= 1.10",
                         "met" if rp <= 1.10 else "missed"))
            rows.append(("(a) ratio haproxy/direct (medians)", "", f"{rh:.3f}", "", ""))
        if "c" in only:
            conc = 8
            o = t_logins(st, storm_s, conc, log, not a.no_dovecot)
            cl = o["ceil"]
            ms = lambda v, q: f"{pct(v, q) * 1000:.0f} ms"  # noqa: E731
            rows.append((f"(c) bcrypt ceiling, bench-password --ceiling {conc}",
                         "cost 10; cost 12 (before, after)",
                         "; ".join(f"{c}: " + " / ".join(f"{x:.1f}" for x in v) + " /s, "
                                   f"{o['cpu_each'][c] * 1000:.0f} ms CPU each"
                                   for c, v in o["ceil_all"].items()), "", ""))
            for prefix, cost, what in (("bc", 10, "cost-10 hashes"),
                                       ("bd", 12, "cost-12 hashes")):
                rate, lat, errs, cpu_login, before, after, noops = o["proxy-" + prefix]
                ce = o["cpu_each"]
                ideal = ""
                need = ce[cost]
                if before != after:
                    # Logins rehashed: each also paid a cost-12 hash.
                    both = 1 / (1 / cl[cost] + 1 / cl[12])
                    ideal = (f" (logins rehashed to cost 12: {both:.1f}/s at most, "
                             f"{rate / both * 100:.1f} % of that)")
                    need = ce[cost] + ce[12]
                eff = need / cpu_login
                target = ">= 90 % of the cost-12 ceiling" if prefix == "bd" else \
                    ">= 90 % of the cost-10 ceiling"
                ok = rate >= 0.9 * cl[cost] and not errs
                rows.append((f"(c) logins/s through sora-proxy, {what}",
                             f"{conc} clients, {storm_s} s",
                             f"{rate:.1f}/s = {rate / cl[cost] * 100:.1f} % of the cost-{cost} "
                             f"ceiling{ideal}; login p50 {ms(lat, 0.5)}, p99 {ms(lat, 0.99)}; "
                             f"{len(errs)} errors; proxy CPU {cpu_login * 1000:.0f} ms per login = "
                             f"{eff * 100:.0f} % bcrypt ({need * 1000:.0f} ms); stored costs "
                             f"{before} -> {after}", target, "met" if ok else "missed"))
                d = o.get("dovecot-" + prefix)
                if d:
                    drate, dlat, derrs = d
                    rows.append((f"(c) logins/s through Dovecot imap-login proxy, cost-{cost} hashes",
                                 f"{conc} clients, {storm_s} s",
                                 f"{drate:.1f}/s = {drate / cl[cost] * 100:.1f} % of the cost-{cost} "
                                 f"ceiling; login p50 {ms(dlat, 0.5)}, p99 {ms(dlat, 0.99)}; "
                                 f"{len(derrs)} errors; sora-proxy/dovecot "
                                 f"{rate / drate if drate else float('nan'):.2f}", "", ""))
                rows.append(("(c) NOOP round trip, 20 other proxied sessions",
                             f"during the {prefix}* storm",
                             f"p50 {pct(noops, 0.5) * 1000:.2f} ms, p99 {pct(noops, 0.99) * 1000:.2f} ms, "
                             f"max {max(noops) * 1000:.1f} ms ({len(noops)} samples)",
                             "loop never blocks", ""))
            if not any(k.startswith("dovecot") for k in o) and not a.no_dovecot:
                rows.append(("(c) Dovecot imap-login proxy", "", "did not run (see log)", "", ""))
            ni = o["noop_idle"]
            rows.append(("(c) NOOP round trip, 20 other proxied sessions", "before the storms",
                         f"p50 {pct(ni, 0.5) * 1000:.2f} ms, p99 {pct(ni, 0.99) * 1000:.2f} ms, "
                         f"max {max(ni) * 1000:.1f} ms ({len(ni)} samples)", "", ""))
    finally:
        if st is not None:
            st.close()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    end_load = loadavg()
    lines = [f"Load average at start {start_load}, at end {end_load}; {os.cpu_count()} CPUs"
             f"{'; --quick' if a.quick else ''}.", "",
             "| Test | Setting | Result | Target | |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(lines)
    print()
    print(text)
    if a.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(a.markdown)), exist_ok=True)
        with open(a.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
