#!/usr/bin/env python3
"""Login storm against a peer (issue 12): 20,000 wrong passwords from 200
addresses through two sora-proxy processes sharing one database, while
legitimate users keep logging in; Dovecot 2.3's imap-login proxy (auth
penalty and failure delay at their defaults) takes the same storm in the
same run.

login_storm.py measures the limiter's own costs (SSHA512 accounts, short
delays, so the storm is dense); this one is the realistic comparison:
bcrypt cost-10 accounts, the security guide's auth_rate_limit block with
the default progressive delays (2 s doubling to 30 s), and a peer.

Setup: one sora-backend (durable private PostgreSQL, fs store) with an
imap listener for Dovecot's proxy and imap_pp (PROXY v2 + master SASL) for
sora-proxy. Two sora-proxy processes, each an imap_proxy listener that
accepts PROXY v1 headers from 127.0.0.0/8 -- how the storm gets 200 source
addresses and the legitimate users 8 others on one machine -- with the
security guide's auth_rate_limit block (max_attempts_per_ip = 10,
max_attempts_per_username = 5, ip_window_duration = "15m",
fast_block_threshold = 10, fast_block_duration = "5m"), progressive delays
at their defaults. Dovecot: imap-login with haproxy = yes from 127.0.0.0/8,
a passwd-file with the same bcrypt cost-10 hashes, proxy=y to the
backend's plain listener.

Storm: C attacker connections (default 200), each taking the next of
20,000 attempts: a new connection to proxy A or B in turn (to Dovecot for
the peer), a PROXY header naming one of 200 addresses, LOGIN on one of 500
existing accounts with a wrong password, the reply, close. The storm stops
at 20,000 attempts or after S seconds (60; 20 with --quick), whichever
comes first: delays and blocks are meant to slow it down.
Legitimate load: 8 threads, each a user of its own from its own address,
LOGIN + LOGOUT in a loop, the whole time, with latencies and failures
recorded before the storm (baseline) and during it.

Reported, per server: attempts completed and their rate; the outcome mix
(from the proxies' sora_auth_attempts_total); legitimate logins' success
rate and p50/p99 before and during; database transactions per failed
attempt (pg_stat_database, the legitimate logins' own share subtracted
using the baseline's rate); CPU per failed attempt (proxies, backend and
PostgreSQL for Sora; Dovecot's processes, backend and PostgreSQL for
Dovecot). The ratio table compares the medians over the runs.

Usage: login_storm_peer.py [--runs R] [--quick] [--markdown FILE] [--no-dovecot]
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import benchlib
from benchlib import BIN, free_port, loadavg, pct, tree_cpu, wait_port

PASSWORD = "x"
MASTER = ("proxy", "proxy-secret")
VICTIMS = 500
LEGIT = 8
ATTACKERS = 200
RATE_LIMIT = """enabled = true
max_attempts_per_ip = 10
max_attempts_per_username = 5
ip_window_duration = "15m"
fast_block_threshold = 10
fast_block_duration = "5m"
"""


def attacker_ip(i):
    return f"10.66.{i // 200}.{i % 200 + 1}"


def legit_ip(i):
    return f"10.99.0.{i + 1}"


def login(port, ip, user, password, timeout=60):
    """One connection: PROXY v1 header, greeting, LOGIN, close. True when
    the LOGIN got OK."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sport = s.getsockname()[1]
        s.sendall(f"PROXY TCP4 {ip} 127.0.0.1 {sport} {port}\r\n".encode())
        buf = b""
        tagged = False
        sent = False
        while True:
            d = s.recv(4096)
            if not d:
                raise ConnectionError("closed: %r" % buf[-200:])
            buf += d
            if not sent and b"\r\n" in buf:
                s.sendall(f'a LOGIN "{user}" "{password}"\r\nb LOGOUT\r\n'.encode())
                sent = True
            for ln in buf.split(b"\r\n"):
                if ln.startswith(b"a "):
                    tagged = ln.startswith(b"a OK")
                    return tagged
    finally:
        s.close()


class Legit:
    """LEGIT threads logging in and out with the right password."""

    def __init__(self, port_of):
        self.port_of = port_of
        self.samples = []            # (t_end, latency, ok)
        self.lock = threading.Lock()
        self.stop = False
        self.ths = [threading.Thread(target=self.run, args=(i,)) for i in range(LEGIT)]
        for t in self.ths:
            t.start()

    def run(self, i):
        k = 0
        while not self.stop:
            t1 = time.perf_counter()
            try:
                ok = login(self.port_of(k), legit_ip(i), f"legit{i}@example.com", PASSWORD)
            except OSError:
                ok = False
            t2 = time.perf_counter()
            with self.lock:
                self.samples.append((t2, t2 - t1, ok))
            k += 1
            time.sleep(0.05)

    def window(self, a, b):
        with self.lock:
            return [(lat, ok) for t, lat, ok in self.samples if a <= t <= b]

    def close(self):
        self.stop = True
        for t in self.ths:
            t.join()


def storm(port_of, total, seconds, conc):
    """(attempts done, seconds taken, errors)."""
    nxt = [0]
    done = [0]
    errs = []
    lock = threading.Lock()
    t0 = time.perf_counter()
    stop = t0 + seconds

    def worker():
        while time.perf_counter() < stop:
            with lock:
                n = nxt[0]
                if n >= total:
                    return
                nxt[0] += 1
            try:
                if login(port_of(n), attacker_ip(n % ATTACKERS), f"victim{n % VICTIMS}@example.com",
                         "wrong-%d" % n, timeout=max(1, stop - time.perf_counter() + 5)):
                    errs.append("a wrong password was accepted")
            except OSError as e:
                with lock:
                    errs.append(repr(e))
                continue
            with lock:
                done[0] += 1
    ths = [threading.Thread(target=worker) for _ in range(conc)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return done[0], time.perf_counter() - t0, errs


def xacts(sora):
    return int(sora.sql("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                        "WHERE datname = 'bench'"))


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def auth_outcomes(ports):
    out = {}
    for p in ports:
        for ln in metrics(p).splitlines():
            if ln.startswith("sora_auth_attempts_total{"):
                labels, v = ln.rsplit(" ", 1)
                res = labels.split('result="', 1)[1].split('"', 1)[0]
                out[res] = out.get(res, 0) + int(float(v))
    return out


class Setup:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []
        user, pw = MASTER
        master = f'master_sasl_username = "{user}"\nmaster_sasl_password = "{pw}"\n'
        limits = "max_connections = 5000\nmax_connections_per_ip = 0\n"
        self.sora = benchlib.Sora(tmp, {
            "imap": f'insecure_auth = true\n{limits}{master}',
            "imap_pp": f'type = "imap"\ninsecure_auth = true\n{limits}{master}'
                       '[servers.imap_pp.proxy_protocol]\nenabled = true\n'
                       'trusted_proxies = ["127.0.0.0/8"]\n',
        })
        try:
            self._accounts()
            self.proxies = [self._proxy(i) for i in range(2)]
        except BaseException:
            self.close()
            raise

    def _accounts(self):
        self.hash = subprocess.run(["doveadm", "pw", "-s", "BLF-CRYPT", "-r", "10", "-p", PASSWORD],
                                   check=True, capture_output=True, text=True).stdout.strip()
        admin = os.path.join(BIN, "sora-admin")
        for prefix, n in (("victim", VICTIMS), ("legit", LEGIT)):
            subprocess.run([admin, "--config", self.sora.cfg, "accounts", "create", "--email",
                            f"{prefix}0@example.com", "--hash-import", self.hash],
                           check=True, capture_output=True)
            self.sora.sql(f"""WITH a AS (INSERT INTO accounts SELECT FROM generate_series(1, {n - 1})
                                RETURNING id)
                              INSERT INTO credentials (account_id, address, password_hash, primary_identity)
                              SELECT a.id, '{prefix}' || (row_number() OVER (ORDER BY a.id)) || '@example.com',
                                     (SELECT password_hash FROM credentials
                                      WHERE address = '{prefix}0@example.com'), true FROM a""")

    def _proxy(self, i):
        port, mport = free_port(), free_port()
        user, pw = MASTER
        cfg = os.path.join(self.tmp, f"proxy{i}.toml")
        with open(cfg, "w") as f:
            f.write(f'hostname = "proxy{i}.bench"\n' + self.sora.pg.config_block("bench")
                    + f'[servers.imap]\ntype = "imap_proxy"\naddr = "127.0.0.1:{port}"\n'
                    f'insecure_auth = true\nmax_connections = 5000\nmax_connections_per_ip = 0\n'
                    f'remote_addrs = ["127.0.0.1:{self.sora.ports["imap_pp"]}"]\n'
                    'remote_use_proxy_protocol = true\n'
                    f'master_sasl_username = "{user}"\nmaster_sasl_password = "{pw}"\n'
                    '[servers.imap.proxy_protocol]\nenabled = true\ntrusted_proxies = ["127.0.0.0/8"]\n'
                    f'[servers.imap.auth_rate_limit]\n{RATE_LIMIT}'
                    f'[servers.metrics]\naddr = "127.0.0.1:{mport}"\n')
        log = open(os.path.join(self.tmp, f"proxy{i}.log"), "a")
        p = subprocess.Popen([os.path.join(BIN, "sora-proxy"), "--config", cfg],
                             stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs.append(p)
        wait_port(port, proc=p, timeout=20)
        deadline = time.time() + 20
        while not login(port, "10.98.0.1", "legit0@example.com", PASSWORD):
            if time.time() > deadline:
                raise RuntimeError(f"proxy {i}: no login")
            time.sleep(0.2)
        return {"port": port, "metrics": mport, "proc": p}

    def dovecot(self):
        base = os.path.join(self.tmp, "dovecot")
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(base)
        port = free_port()
        user, pw = MASTER
        with open(os.path.join(base, "users"), "w") as f:
            for prefix, n in (("victim", VICTIMS), ("legit", LEGIT)):
                for i in range(n):
                    f.write(f"{prefix}{i}@example.com:{self.hash}::::::proxy=y host=127.0.0.1 "
                            f"port={self.sora.ports['imap']} master={user} pass={pw}\n")
        os.chmod(os.path.join(base, "users"), 0o644)
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
haproxy_trusted_networks = 127.0.0.0/8
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
    haproxy = yes
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = {os.cpu_count()}
  client_limit = 5000
}}
default_client_limit = 5000
""")
        proc = subprocess.Popen(["dovecot", "-F", "-c", conf], stderr=subprocess.DEVNULL)
        wait_port(port, proc=proc, timeout=20)
        if not login(port, "10.98.0.1", "legit0@example.com", PASSWORD):
            proc.terminate()
            proc.wait()
            raise RuntimeError("dovecot: no login")
        return port, proc

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.sora.close()


def clear_blocks(st):
    st.sora.sql("DELETE FROM auth_attempts")
    time.sleep(2)   # the proxies' in-memory copies re-validate within a second


def run_one(st, name, port_of, cpu_roots, total, seconds, conc, log, outcome_ports=()):
    legit = Legit(port_of)
    try:
        time.sleep(5)
        b0 = time.perf_counter()
        x0 = xacts(st.sora)
        time.sleep(5)
        b1 = time.perf_counter()
        time.sleep(1.5)
        x1 = xacts(st.sora)
        b1_late = time.perf_counter()
        base = legit.window(b0, b1)
        xacts_per_legit = (x1 - x0) / max(1, len(legit.window(b0, b1_late)))
        before = auth_outcomes(outcome_ports)
        c0 = sum(tree_cpu(r) for r in cpu_roots)
        s0 = time.perf_counter()
        done, took, errs = storm(port_of, total, seconds, conc)
        s1 = time.perf_counter()
        c1 = sum(tree_cpu(r) for r in cpu_roots)
        during = legit.window(s0, s1)
        time.sleep(1.5)    # PostgreSQL publishes its counters at most once a second
        x2 = xacts(st.sora) - xacts_per_legit * len(legit.window(s1, time.perf_counter()))
    finally:
        legit.close()
    after = auth_outcomes(outcome_ports)
    outcomes = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    storm_xacts = max(0.0, (x2 - x1) - xacts_per_legit * len(during))

    def stats(v):
        lat = [l for l, ok in v if ok]
        return (sum(ok for _, ok in v) / len(v) if v else float("nan"),
                pct(lat, 0.5), pct(lat, 0.99), len(v))
    r = {
        "attempts": done, "seconds": took, "rate": done / took if took else 0,
        "errors": errs, "outcomes": outcomes,
        "base": stats(base), "during": stats(during),
        "xacts_per_attempt": storm_xacts / done if done else float("nan"),
        "cpu_per_attempt": (c1 - c0) / done if done else float("nan"),
    }
    log(f"{name}: {done} attempts in {took:.1f} s ({r['rate']:.0f}/s), {len(errs)} errors "
        f"{errs[:2]}; outcomes {outcomes}; legit before: ok {r['base'][0] * 100:.1f} % "
        f"p50 {r['base'][1] * 1000:.0f} ms p99 {r['base'][2] * 1000:.0f} ms (n={r['base'][3]}); "
        f"during: ok {r['during'][0] * 100:.1f} % p50 {r['during'][1] * 1000:.0f} ms "
        f"p99 {r['during'][2] * 1000:.0f} ms (n={r['during'][3]}); "
        f"{r['xacts_per_attempt']:.2f} DB transactions and {r['cpu_per_attempt'] * 1000:.2f} ms CPU "
        f"per attempt")
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--quick", action="store_true", default=bool(os.environ.get("BENCH_QUICK")))
    ap.add_argument("--markdown")
    ap.add_argument("--no-dovecot", action="store_true")
    ap.add_argument("--attempts", type=int, default=20000)
    ap.add_argument("--conc", type=int, default=200)
    a = ap.parse_args()
    runs = a.runs or (1 if a.quick else 3)
    seconds = 20 if a.quick else 60
    benchlib.raise_nofile()
    tmp = tempfile.mkdtemp(prefix="sora-bench-storm-")
    os.chmod(tmp, 0o755)
    start_load = loadavg()

    def log(m):
        print(m, flush=True)

    log(f"load average at start: {start_load}; {os.cpu_count()} CPUs")
    res = {"sora": [], "dovecot": []}
    st = None
    try:
        st = Setup(tmp)
        pg_root = st.sora.postmaster
        for k in range(runs):
            order = ["sora", "dovecot"] if k % 2 == 0 else ["dovecot", "sora"]
            for who in order:
                if who == "sora":
                    clear_blocks(st)
                    ports = [p["port"] for p in st.proxies]
                    roots = [p["proc"].pid for p in st.proxies] + [st.sora.proc.pid, pg_root]
                    res["sora"].append(run_one(
                        st, f"run {k + 1} sora-proxy x2", lambda n: ports[n % 2], roots,
                        a.attempts, seconds, a.conc, log, [p["metrics"] for p in st.proxies]))
                elif not a.no_dovecot:
                    try:
                        dport, dproc = st.dovecot()
                    except Exception as e:  # noqa: BLE001
                        log(f"dovecot did not start: {e}")
                        continue
                    try:
                        res["dovecot"].append(run_one(
                            st, f"run {k + 1} dovecot imap-login", lambda n: dport,
                            [dproc.pid, st.sora.proc.pid, pg_root], a.attempts, seconds, a.conc, log))
                    finally:
                        dproc.terminate()
                        dproc.wait()
    finally:
        if st is not None:
            st.close()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    def med(who, f):
        v = [f(r) for r in res[who]]
        return statistics.median(v) if v else float("nan")
    rows = [
        ("storm attempts completed", lambda r: r["attempts"], "%.0f"),
        ("storm attempts/s", lambda r: r["rate"], "%.0f"),
        ("legitimate logins OK during the storm (%)", lambda r: r["during"][0] * 100, "%.1f"),
        ("legitimate login p50 during (ms)", lambda r: r["during"][1] * 1000, "%.0f"),
        ("legitimate login p99 during (ms)", lambda r: r["during"][2] * 1000, "%.0f"),
        ("legitimate login p99 before (ms)", lambda r: r["base"][2] * 1000, "%.0f"),
        ("DB transactions per failed attempt", lambda r: r["xacts_per_attempt"], "%.2f"),
        ("CPU per failed attempt (ms)", lambda r: r["cpu_per_attempt"] * 1000, "%.2f"),
    ]
    lines = [f"Load average at start {start_load}, at end {loadavg()}; {os.cpu_count()} CPUs; "
             f"{runs} run(s), medians; storm: {a.attempts} wrong passwords from {ATTACKERS} "
             f"addresses, {a.conc} connections, at most {seconds} s; Dovecot "
             f"{benchlib.dovecot_version()}.", "",
             "| | sora-proxy x2 | Dovecot imap-login | ratio Sora/Dovecot |", "|---|---|---|---|"]
    for label, f, fmt in rows:
        s, d = med("sora", f), med("dovecot", f)
        ratio = s / d if d and d == d and d != 0 else float("nan")
        lines.append(f"| {label} | {fmt % s} | {fmt % d} | {ratio:.2f} |")
    if res["sora"]:
        lines.append("")
        lines.append("sora-proxy outcomes (both proxies, per run): " +
                     "; ".join(str(r["outcomes"]) for r in res["sora"]))
    text = "\n".join(lines)
    print()
    print(text)
    if a.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(a.markdown)), exist_ok=True)
        with open(a.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
