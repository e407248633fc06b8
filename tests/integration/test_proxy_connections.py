"""sora-admin connections list / kick across two proxies (through the
database: the connections table and NOTIFY sora_kick). The clients connect
from 127.0.0.3; the HAProxy path of the client address is covered by
test_proxy_imap.py."""
import imaplib
import re
import time

import pytest

from sorafix.common import wait_for
from sorafix.proxy import SourceIMAP

USERS = ["k1@example.com", "k2@example.com", "k3@example.com"]


def rows(c):
    out = c.admin.ok("connections", "list")
    return [l.split() for l in out.splitlines()[1:-1]]


def test_list_and_kick(cluster):
    c = cluster
    c.start_backends()
    c.add_proxy()
    c.add_proxy()
    for u in USERS:
        c.account(u)
    sessions = {}
    for u in USERS:
        for p in c.proxies:   # one session on each proxy
            m = p.login(u)
            m.select("INBOX")
            sessions.setdefault(u, []).append(m)
    wait_for(lambda: len(rows(c)) == 6, timeout=10, what="6 listed connections")
    listed = rows(c)
    for u in USERS:
        mine = [r for r in listed if r[0] == u]
        assert len(mine) == 2
        assert {r[4] for r in mine} == {"proxy1", "proxy2"}, mine
        ports = {f"127.0.0.3:{m.source_port}" for m in sessions[u]}
        assert {r[2] for r in mine} == ports, (mine, ports)
        assert all(r[1] == "imap" for r in mine)
        be = c.backend_of(u)
        assert all(r[3] == f"{be.host}:{be.imap_port}" for r in mine)

    # A kick for another protocol touches nobody.
    c.admin.ok("connections", "kick", "--user", USERS[0], "--protocol", "pop3")
    time.sleep(1)
    for m in sessions[USERS[0]]:
        assert m.noop()[0] == "OK"

    t0 = time.monotonic()
    out = c.admin.ok("connections", "kick", "--user", USERS[0].upper())
    assert "2 matching" in out, out

    def gone(m):
        try:
            m.noop()
            return False
        except (imaplib.IMAP4.abort, OSError):
            return True
    wait_for(lambda: all(gone(m) for m in sessions[USERS[0]]), timeout=5, what="kicked sessions")
    assert time.monotonic() - t0 < 5
    for u in USERS[1:]:
        for m in sessions[u]:
            assert m.noop()[0] == "OK"
    wait_for(lambda: len(rows(c)) == 4, timeout=10, what="kicked sessions unlisted")
    assert USERS[0] not in {r[0] for r in rows(c)}
    for p in c.proxies:
        p.server.wait_log("kicked")
    for u in USERS[1:]:
        for m in sessions[u]:
            m.logout()
    wait_for(lambda: rows(c) == [], timeout=10, what="all sessions unlisted")


def test_kick_needs_a_filter(cluster):
    r = cluster.admin.run("connections", "kick")
    assert r.returncode == 2


def test_guide_incident_response_dos_commands_as_written(cluster):
    """The security guide's "Suspected DoS Attack" steps, as written (with
    --config after the command and a file named config.toml): list the
    connections, review auth statistics, kick every IMAP session. POP3
    sessions stay."""
    import poplib
    import shutil
    import subprocess
    from sorafix.common import bin_path

    c = cluster
    c.start_backends()
    p = c.add_proxy()
    for u in USERS[:2]:
        c.account(u)
    m = p.login(USERS[0])
    m.select("INBOX")
    pop = poplib.POP3("127.0.0.1", p.pop3_port, timeout=15)
    pop.user(USERS[1])
    pop.pass_("pw-" + USERS[1])
    shutil.copy(c.admin.config, f"{c.dir}/config.toml")
    shutil.copy(bin_path("sora-admin"), f"{c.dir}/sora-admin")

    def run(*args):
        r = subprocess.run(["./sora-admin", *args], capture_output=True, text=True, timeout=60,
                           cwd=c.dir)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout
    wait_for(lambda: "2 connection(s)" in run("connections", "list", "--config", "config.toml"),
             timeout=10, what="2 listed connections")
    out = run("connections", "list", "--config", "config.toml")
    assert re.search(r"^" + re.escape(USERS[0]) + r"\s+imap\s", out, re.M), out
    assert re.search(r"^" + re.escape(USERS[1]) + r"\s+pop3\s", out, re.M), out
    out = run("stats", "auth", "--config", "config.toml")
    assert "Authentication failures in the last" in out and "blocked now:" in out
    out = run("connections", "kick", "--config", "config.toml", "--protocol", "imap")
    assert "1 matching" in out, out

    def gone():
        try:
            m.noop()
            return False
        except (imaplib.IMAP4.abort, OSError):
            return True
    wait_for(gone, timeout=5, what="kicked IMAP session")
    assert pop.stat()[0] == 0
    pop.quit()
