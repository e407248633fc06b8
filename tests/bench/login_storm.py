#!/usr/bin/env python3
"""Login storm against the authentication rate limiter (issue 12).

One sora-backend (durable private PostgreSQL, fs blob store) behind two
sora-proxy processes on the same database, each with
[servers.imap.auth_rate_limit] enabled at Sora's defaults except the delays
(initial_delay 50ms, max_delay 250ms: at the defaults, 2 s to 30 s, one
attacking connection per address would need most of an hour for its 100
attempts; shorter delays make the storm denser, which is the harder case
for the servers). Clients reach the proxies' PROXY-protocol listener and
announce their own addresses, so 220 distinct client addresses come from
one machine; only 127.0.0.1 is a trusted network.

Phases (each reported):
 1. idle: the database's transaction rate with nothing but health checks;
 2. baseline: 20 legitimate users (from 10.100.0.1-20, alternating proxies)
    log in and out in a loop for BASE seconds: latency p50/p99, database
    transactions and proxy CPU per login;
 3. storm: 20,000 wrong passwords (STORM with --quick: 4,000) from 200
    addresses (10.200.0.1-200, 100 attempts each, one connection at a time
    per address, half of the addresses on each proxy) against 500 user
    names (all existing accounts with SSHA512 hashes, so that the figures
    are the limiter's and the servers' cost, not bcrypt's: an unknown name
    costs a dummy bcrypt verification, see bench-password for its price),
    while the 20 legitimate users keep logging in. Reported: the
    legitimate logins' success rate and p50/p99/max latency during the
    storm; the attempts' outcomes (sora_auth_attempts_total of both
    proxies); database transactions per failed attempt (pg_stat_database
    xact_commit + xact_rollback, minus the idle rate and the legitimate
    logins' share measured in phase 2); proxy CPU per failed attempt (both
    proxy processes, minus the legitimate logins' share); PostgreSQL CPU per
    failed attempt likewise.

Usage: login_storm.py [--quick] [--markdown FILE]
Environment: SORA_BIN (default ./bin), BENCH_QUICK=1 as --quick,
BENCH_KEEP=1 keeps the work directory.
"""
import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import benchlib
from benchlib import BIN, free_port, loadavg, pct, tree_cpu, wait_port

MASTER = ("proxy", "proxy-secret")
LEGIT = 20
ADDRS = 200
NAMES = 500


def proxy_config(sora, port, metrics_port, name):
    user, pw = MASTER
    return (f'hostname = "{name}"\ntrusted_networks = ["127.0.0.1/32"]\n'
            + sora.pg.config_block("bench")
            + f'[servers.imap]\ntype = "imap_proxy"\naddr = "127.0.0.1:{port}"\n'
            f'remote_addrs = ["127.0.0.1:{sora.ports["imap_pp"]}"]\n'
            'remote_use_proxy_protocol = true\n'
            f'master_sasl_username = "{user}"\nmaster_sasl_password = "{pw}"\n'
            'insecure_auth = true\nmax_connections = 5000\nmax_connections_per_ip = 0\n'
            '[servers.imap.proxy_protocol]\nenabled = true\ntrusted_proxies = ["127.0.0.1/32"]\n'
            '[servers.imap.auth_rate_limit]\nenabled = true\n'
            'initial_delay = "50ms"\nmax_delay = "250ms"\n'
            f'[servers.metrics]\naddr = "127.0.0.1:{metrics_port}"\n')


class Proxy:
    def __init__(self, tmp, sora, name):
        self.port, self.metrics_port = free_port(), free_port()
        self.cfg = os.path.join(tmp, f"{name}.toml")
        with open(self.cfg, "w") as f:
            f.write(proxy_config(sora, self.port, self.metrics_port, name))
        self.log = open(os.path.join(tmp, f"{name}.log"), "a")
        self.proc = subprocess.Popen([os.path.join(BIN, "sora-proxy"), "--config", self.cfg],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp)
        wait_port(self.port, proc=self.proc)
        wait_port(self.metrics_port, proc=self.proc)

    def attempts(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            text = r.read().decode()
        out = {}
        for m in re.finditer(r'^sora_auth_attempts_total\{protocol="imap",result="(\w+)"\} (\S+)$',
                             text, re.M):
            out[m.group(1)] = float(m.group(2))
        return out

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.log.close()


async def login(port, ip, user, password, logout):
    """(tagged reply line, seconds)."""
    t0 = time.perf_counter()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(f"PROXY TCP4 {ip} 127.0.0.1 40000 {port}\r\n".encode())
        await r.readline()
        w.write(f'a LOGIN "{user}" "{password}"\r\n'.encode())
        await w.drain()
        while True:
            line = (await r.readline()).decode()
            if not line:
                raise EOFError("closed")
            if line.startswith("a "):
                break
        if logout and line.startswith("a OK"):
            w.write(b"b LOGOUT\r\n")
            await w.drain()
            while not (await r.readline()).startswith(b"b "):
                pass
    finally:
        w.close()
    return line.strip(), time.perf_counter() - t0


class Legit:
    """LEGIT users logging in and out in a loop until stopped."""

    def __init__(self, ports):
        self.ports = ports
        self.lat, self.ok, self.bad = [], 0, []
        self.stop = False

    async def user(self, i):
        n = 0
        while not self.stop:
            port = self.ports[(i + n) % len(self.ports)]
            n += 1
            try:
                line, t = await login(port, f"10.100.0.{i + 1}", f"user{i}@example.com", "x", True)
            except Exception as e:  # noqa: BLE001
                self.bad.append(repr(e))
                await asyncio.sleep(0.05)
                continue
            if line.startswith("a OK"):
                self.ok += 1
                self.lat.append(t)
            else:
                self.bad.append(line)

    async def run(self):
        await asyncio.gather(*(self.user(i) for i in range(LEGIT)))


async def attacker(port, a, count, out):
    for k in range(count):
        name = f"user{(a * 7 + k * 13) % NAMES + LEGIT}@example.com"
        try:
            line, _ = await login(port, f"10.200.{a // 250}.{a % 250 + 1}", name, f"guess{k}", False)
            out.append(line)
        except Exception as e:  # noqa: BLE001
            out.append(repr(e))


async def storm(ports, total):
    per = total // ADDRS
    out = []
    await asyncio.gather(*(attacker(ports[a % 2], a, per, out) for a in range(ADDRS)))
    return out


def xacts(sora):
    return int(sora.sql("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                        " WHERE datname = 'bench'").strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", default=bool(os.environ.get("BENCH_QUICK")))
    ap.add_argument("--markdown")
    args = ap.parse_args()
    total = 4000 if args.quick else 20000
    base_s = 5 if args.quick else 10
    benchlib.raise_nofile()
    tmp = tempfile.mkdtemp(prefix="sora-login-storm-")
    sora = proxies = None
    try:
        user, pw = MASTER
        sora = benchlib.Sora(tmp, {
            "imap_pp": f'type = "imap"\ninsecure_auth = true\nmax_connections = 5000\n'
                       f'max_connections_per_ip = 0\nmaster_sasl_username = "{user}"\n'
                       f'master_sasl_password = "{pw}"\n'
                       '[servers.imap_pp.proxy_protocol]\nenabled = true\n'
                       'trusted_proxies = ["127.0.0.0/8"]\n',
        }, accounts=LEGIT + NAMES, pg_max_connections=200)
        proxies = [Proxy(tmp, sora, "proxy1"), Proxy(tmp, sora, "proxy2")]
        ports = [p.port for p in proxies]
        pcpu = lambda: sum(tree_cpu(p.proc.pid) for p in proxies)  # noqa: E731
        gcpu = lambda: tree_cpu(sora.postmaster)  # noqa: E731
        print(f"load average at start: {loadavg()}")

        # 1. idle
        x0, t0 = xacts(sora), time.perf_counter()
        time.sleep(3)
        idle_rate = (xacts(sora) - x0 - 1) / (time.perf_counter() - t0)

        # 2. baseline
        legit = Legit(ports)
        x0, c0, g0, t0 = xacts(sora), pcpu(), gcpu(), time.perf_counter()

        async def baseline():
            task = asyncio.ensure_future(legit.run())
            await asyncio.sleep(base_s)
            legit.stop = True
            await task
        asyncio.run(baseline())
        dt = time.perf_counter() - t0
        base_n = legit.ok
        x_per_legit = (xacts(sora) - x0 - idle_rate * dt) / max(base_n, 1)
        cpu_per_legit = (pcpu() - c0) / max(base_n, 1)
        g_per_legit = (gcpu() - g0) / max(base_n, 1)
        base_lat = legit.lat
        print(f"baseline: {base_n} legitimate logins in {dt:.1f} s, p50 {pct(base_lat, .5)*1000:.1f} ms,"
              f" p99 {pct(base_lat, .99)*1000:.1f} ms; {x_per_legit:.2f} db transactions and"
              f" {cpu_per_legit*1000:.2f} ms proxy CPU per login")

        # 3. storm
        legit = Legit(ports)
        x0, c0, g0, t0 = xacts(sora), pcpu(), gcpu(), time.perf_counter()

        async def both():
            task = asyncio.ensure_future(legit.run())
            res = await storm(ports, total)
            legit.stop = True
            await task
            return res
        results = asyncio.run(both())
        dt = time.perf_counter() - t0
        dx = xacts(sora) - x0 - idle_rate * dt - x_per_legit * legit.ok
        dc = pcpu() - c0 - cpu_per_legit * legit.ok
        dg = gcpu() - g0 - g_per_legit * legit.ok
        outcomes = {}
        for p in proxies:
            for k, v in p.attempts().items():
                outcomes[k] = outcomes.get(k, 0) + v
        replies = {}
        for r in results:
            key = r if r.startswith("a ") else "error"
            replies[key] = replies.get(key, 0) + 1
        n = len(results)
        tried = legit.ok + len(legit.bad)
        rows = [
            ("wrong-password attempts", f"{n} from {ADDRS} addresses in {dt:.1f} s ({n/dt:.0f}/s)"),
            ("their replies", "; ".join(f"{v} x {k!r}" for k, v in sorted(replies.items()))),
            ("limiter outcomes (both proxies)",
             ", ".join(f"{k} {int(v)}" for k, v in sorted(outcomes.items()))),
            ("legitimate logins during the storm",
             f"{legit.ok} of {tried} succeeded ({100*legit.ok/max(tried,1):.2f} %)"),
            ("their latency p50 / p99 / max",
             f"{pct(legit.lat, .5)*1000:.1f} / {pct(legit.lat, .99)*1000:.1f} / "
             f"{max(legit.lat)*1000:.1f} ms (baseline p99 {pct(base_lat, .99)*1000:.1f} ms)"),
            ("db transactions per failed attempt", f"{dx/n:.3f}"),
            ("proxy CPU per failed attempt", f"{dc/n*1000:.3f} ms"),
            ("PostgreSQL CPU per failed attempt", f"{dg/n*1000:.3f} ms"),
        ]
        width = max(len(a) for a, _ in rows)
        for a, b in rows:
            print(f"{a:<{width}}  {b}")
        if legit.bad:
            print("legitimate failures (first 5):", legit.bad[:5])
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write("| measure | result |\n|---|---|\n")
                for a, b in rows:
                    f.write(f"| {a} | {b} |\n")
        print(f"load average at end: {loadavg()}")
    finally:
        for p in proxies or []:
            p.close()
        if sora is not None:
            sora.close()
        if os.environ.get("BENCH_KEEP"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
