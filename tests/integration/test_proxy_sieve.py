"""managesieve_proxy in front of Dovecot's managesieve (master user), with
sieve-connect as the client, directly and through HAProxy."""
import os
import re
import socket
import subprocess
import tempfile

import pytest

from sorafix.common import which
from sorafix.imap import RawImap

USERS = [f"sv{i}@example.com" for i in range(6)]
SCRIPT = 'require "fileinto";\nif header :contains "subject" "x" { fileinto "X"; }\n'


def sieve_connect(port, user, password, *args, source=None):
    r, w = os.pipe()
    os.write(w, (password + "\n").encode())
    os.close(w)
    argv = [which("sieve-connect"), "--notls", "-s", "127.0.0.1", "-p", str(port), "-u", user,
            "--passwordfd", "3", *args]
    try:
        return subprocess.run(argv, pass_fds=(3,), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=30, preexec_fn=lambda: os.dup2(r, 3))
    finally:
        os.close(r)


@pytest.fixture
def sieve_cluster(cluster):
    c = cluster
    c.start_backends()
    dovecots = c.start_dovecots()
    c.add_proxy(sieve_backends=dovecots)
    c.add_proxy(sieve_backends=dovecots)
    for u in USERS:
        c.account(u)
    return c


def test_sieve_connect_through_proxy_and_haproxy(sieve_cluster, tmp_path):
    c = sieve_cluster
    script = tmp_path / "test.sieve"
    script.write_text(SCRIPT)
    u = USERS[0]
    p = c.proxies[0]
    r = sieve_connect(p.sieve_port, u, "pw-" + u, "--upload", "--localsieve", str(script),
                      "--remotesieve", "test")
    assert r.returncode == 0, r.stdout + r.stderr
    c.start_haproxy(sieve=True)
    r = sieve_connect(c.haproxy_port, u, "pw-" + u, "--list")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "test" in r.stdout
    r = sieve_connect(c.haproxy_port, u, "wrong", "--list")
    assert r.returncode != 0
    # Dovecot logged the master login for the user, with the client's
    # address from the proxies' PROXY headers (here 127.0.0.1: sieve-connect
    # cannot choose its source address).
    logs = "".join(d.log() for d in c.dovecots)
    assert re.search(r"managesieve-login: Info: Login: user=<" + re.escape(u) + r">.*rip=127\.0\.0\.1", logs), logs[-3000:]


def test_sieve_affinity_with_imap(sieve_cluster):
    """A user's ManageSieve sessions go to the same host as its IMAP ones."""
    c = sieve_cluster
    for u in USERS:
        m = c.proxies[0].login(u)
        m.logout()
        imap_host = c.backend_of(u).host
        r = sieve_connect(c.proxies[1].sieve_port, u, "pw-" + u, "--list")
        assert r.returncode == 0, r.stdout + r.stderr
        d = next(d for d in c.dovecots if d.host == imap_host)
        assert f"user=<{u}>" in d.log(), (u, imap_host)
        other = next(d for d in c.dovecots if d.host != imap_host)
        assert f"user=<{u}>" not in other.log()


def test_sieve_preauth(sieve_cluster):
    p = sieve_cluster.proxies[0]
    s = socket.create_connection(("127.0.0.1", p.sieve_port), timeout=10)
    f = s.makefile("rb")
    lines = []
    while True:
        l = f.readline().decode()
        lines.append(l)
        if l.startswith("OK"):
            break
    caps = "".join(lines)
    assert '"SASL" "PLAIN"' in caps and '"SIEVE" "' in caps and "fileinto" in caps, caps
    s.sendall(b"NOOP\r\n")
    assert f.readline().startswith(b"OK")
    s.sendall(b'AUTHENTICATE "PLAIN" "' + __import__("base64").b64encode(b"\0nobody@example.com\0x") + b'"\r\n')
    assert f.readline() == b'NO "Authentication failed."\r\n'
    s.sendall(b"PUTSCRIPT \"a\" {100000+}\r\n")
    assert f.readline().startswith(b"BYE")
    assert f.readline() == b""
