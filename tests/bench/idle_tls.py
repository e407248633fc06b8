#!/usr/bin/env python3
"""Memory per idle TLS connection: sora-backend vs Dovecot imap-login.

Opens N TLS connections that complete the handshake and read the greeting,
then go idle; reports the server's RSS growth per connection. Dovecot runs
in the same run on the same machine as the peer (imap-login in
high-performance mode: one process, service_count = 0, so its per-connection
cost is comparable). Both run at their default log levels.

sora-backend needs its database: a private PostgreSQL cluster is started
for the run. Keys, certificates, configs and logs live in one temporary
directory that is removed at the end (BENCH_KEEP=1 keeps it).

Usage: idle_tls.py [N]   (default 5000)
"""
import os
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

from benchlib import ROOT, comm, rss_kb, tree_pids
from sorafix.common import Certs, free_port, wait_port
from sorafix.pg import PgCluster


def open_idle(port, n, ctx):
    conns = []
    for _ in range(n):
        raw = socket.create_connection(("127.0.0.1", port))
        t = ctx.wrap_socket(raw, server_hostname="mail.test")
        buf = b""
        while not buf.endswith(b"\r\n"):
            buf += t.recv(1024)
        conns.append(t)
    return conns


def measure(name, pids_fn, port, n, ctx):
    time.sleep(0.5)
    before = rss_kb(pids_fn())
    t0 = time.time()
    conns = open_idle(port, n, ctx)
    elapsed = time.time() - t0
    time.sleep(1.0)
    after = rss_kb(pids_fn())
    per = (after - before) * 1024 / n
    print(f"{name:14s} {n} idle TLS connections: RSS {before} kB -> {after} kB, "
          f"{per / 1024:.1f} KiB per connection (handshakes {n / elapsed:.0f}/s)")
    for c in conns:
        c.close()
    return per


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n = min(n, hard - 200)
    tmp = tempfile.mkdtemp(prefix="sora-bench-tls-")
    pg = None
    try:
        os.chmod(tmp, 0o755)
        certs = Certs(tmp)
        ctx = ssl.create_default_context(cafile=certs.ca_crt)
        ctx.check_hostname = False
        pg = PgCluster()
        pg.create_db("bench")
        sora_per = bench_sora(tmp, certs, pg, n, ctx)
        dov_per = bench_dovecot(tmp, certs, n, ctx)
        print(f"ratio sora/dovecot memory per idle TLS connection: {sora_per / dov_per:.2f} "
              f"(target: sora <= 20 KiB per connection)")
    finally:
        if pg is not None:
            pg.destroy()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def bench_sora(tmp, certs, pg, n, ctx):
    port = free_port()
    cfg = os.path.join(tmp, "sora.toml")
    with open(cfg, "w") as f:
        f.write(f"""event_loops = 1
{pg.config_block("bench")}
[storage]
fs_path = "{tmp}/blobs"
[uploader]
path = "{tmp}/staging"
[servers.imaps]
type = "imap"
addr = "127.0.0.1:{port}"
tls = true
tls_cert_file = "{certs.server_chain}"
tls_key_file = "{certs.server_key}"
max_connections = {n + 100}
max_connections_per_ip = 0
""")
    log = open(os.path.join(tmp, "sora.log"), "w")
    sora = subprocess.Popen([os.path.join(ROOT, "bin", "sora-backend"), "--config", cfg],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        wait_port(port, proc=sora)
        return measure("sora-backend", lambda: [sora.pid], port, n, ctx)
    finally:
        sora.terminate()
        sora.wait()
        log.close()


def bench_dovecot(tmp, certs, n, ctx):
    dport = free_port()
    dbase = os.path.join(tmp, "dovecot")
    os.makedirs(dbase)
    dconf = os.path.join(dbase, "dovecot.conf")
    with open(dconf, "w") as f:
        f.write(f"""protocols = imap
base_dir = {dbase}/run
state_dir = {dbase}/state
log_path = {dbase}/dovecot.log
ssl = required
ssl_cert = <{certs.server_chain}
ssl_key = <{certs.server_key}
ssl_min_protocol = TLSv1.2
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = static
  args = password=x
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={dbase}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {dport}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 1
  process_limit = 1
  client_limit = {n + 100}
  vsz_limit = 2G
}}
default_client_limit = {n + 100}
default_vsz_limit = 2G
""")
    dov = subprocess.Popen(["dovecot", "-F", "-c", dconf], stderr=subprocess.DEVNULL)
    try:
        wait_port(dport, proc=dov, timeout=20)

        def login_pids():
            return [p for p in tree_pids(dov.pid) if comm(p) == "imap-login"]
        return measure("dovecot", login_pids, dport, n, ctx)
    finally:
        dov.terminate()
        dov.wait()


if __name__ == "__main__":
    main()
