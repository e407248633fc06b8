"""lmtp_proxy: recipients routed to their backends, one backend per
transaction (others get 451 4.3.0 and come back in a transaction of their
own), max_message_size enforced while streaming, the client address passed
on (XCLIENT or PROXY v2), and Postfix -> lmtp_proxy -> two backends."""
import os
import smtplib
import socket
import tempfile
import time

import pytest

from sorafix.common import wait_for
from sorafix.lmtp import LmtpConn, dot_stuff
from sorafix.imap import simple_message

USERS = [f"rcpt{i}@example.com" for i in range(8)]


def lmtp(port, source="127.0.0.1"):
    s = socket.socket()
    s.settimeout(15)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    c = LmtpConn(s)
    c.port = s.getsockname()[1]
    return c


@pytest.fixture
def lmtp_cluster(cluster):
    cluster.start_backends()
    cluster.add_proxy()
    for u in USERS:
        cluster.account(u)
    return cluster


def home_backend(c, u):
    """The backend IMAP logins of u go to (through the proxy)."""
    m = c.proxies[0].login(u)
    m.logout()
    return c.backend_of(u)


def stored(c, u):
    return int(c.admin.sql(
        "SELECT count(*) FROM messages m JOIN credentials c ON c.account_id = m.account_id "
        f"WHERE c.address = '{u}' AND m.expunged_at IS NULL").strip())


def test_recipients_split_by_backend(lmtp_cluster):
    c = lmtp_cluster
    p = c.proxies[0]
    home = {u: home_backend(c, u) for u in USERS}
    a = USERS[0]
    b = next(u for u in USERS if home[u] is not home[a])
    conn = lmtp(p.lmtp_port)
    assert conn.greeting[0].startswith("220 ")
    assert conn.cmd("LHLO mta.test")[-1].startswith("250 ")
    assert conn.code("MAIL FROM:<sender@example.net>") == 250
    assert conn.code(f"RCPT TO:<{a}>") == 250
    r = conn.cmd(f"RCPT TO:<{b}>")
    assert r[0].startswith("451 4.3.0"), r
    assert conn.cmd("RCPT TO:<nobody@example.com>")[0].startswith("550 5.1.1")
    assert conn.code("DATA") == 354
    conn.send(dot_stuff(simple_message(subject="split")))
    assert conn.reply()[0].startswith("250 "), "one reply per accepted recipient"
    # The deferred recipient in a transaction of its own.
    assert conn.code("MAIL FROM:<sender@example.net>") == 250
    assert conn.code(f"RCPT TO:<{b}>") == 250
    assert conn.code("DATA") == 354
    conn.send(dot_stuff(simple_message(subject="split")))
    assert conn.reply()[0].startswith("250 ")
    assert conn.code("QUIT") == 221
    assert stored(c, a) == 1 and stored(c, b) == 1
    # Affinity: each was delivered by the backend its IMAP sessions use.
    assert a in home[a].deliveries() and b in home[b].deliveries()
    other = [x for x in c.backends if x is not home[a]][0]
    assert a not in other.deliveries()


def test_same_backend_recipients_share_transaction(lmtp_cluster):
    c = lmtp_cluster
    home = {u: home_backend(c, u) for u in USERS}
    group = [u for u in USERS if home[u] is home[USERS[0]]]
    assert len(group) >= 2, home
    conn = lmtp(c.proxies[0].lmtp_port)
    conn.cmd("LHLO mta.test")
    assert conn.code("MAIL FROM:<sender@example.net>") == 250
    for u in group:
        assert conn.code(f"RCPT TO:<{u}>") == 250
    assert conn.code("DATA") == 354
    conn.send(dot_stuff(simple_message(subject="group")))
    for u in group:
        assert conn.reply()[0].startswith("250 ")
    for u in group:
        assert stored(c, u) == 1


def test_max_message_size_while_streaming(lmtp_cluster):
    c = lmtp_cluster
    u = USERS[0]
    conn = lmtp(c.proxies[0].lmtp_port)
    lhlo = conn.cmd("LHLO mta.test")
    assert any("SIZE 1048576" in l for l in lhlo), lhlo
    assert conn.cmd("MAIL FROM:<s@example.net> SIZE=2000000")[0].startswith("552 5.3.4")
    assert conn.code("MAIL FROM:<s@example.net>") == 250
    assert conn.code(f"RCPT TO:<{u}>") == 250
    assert conn.code("DATA") == 354
    big = simple_message(subject="big", body=("x" * 998 + "\r\n") * 2100)
    conn.send(dot_stuff(big))
    assert conn.reply()[0].startswith("552 5.3.4")
    # The session goes on; nothing was stored.
    assert conn.code("NOOP") == 250
    assert stored(c, u) == 0
    assert conn.code("MAIL FROM:<s@example.net>") == 250
    assert conn.code(f"RCPT TO:<{u}>") == 250
    assert conn.code("DATA") == 354
    conn.send(dot_stuff(simple_message(subject="small")))
    assert conn.reply()[0].startswith("250 ")
    assert stored(c, u) == 1


@pytest.mark.parametrize("via_proxy_protocol", [False, True])
def test_client_address_passed_on(cluster, via_proxy_protocol):
    c = cluster
    c.start_backends()
    p = c.add_proxy(lmtp_remote_proxy=via_proxy_protocol)
    u = USERS[0]
    c.account(u)
    conn = lmtp(p.lmtp_port, source="127.0.0.6")
    conn.cmd("LHLO mta.test")
    conn.code("MAIL FROM:<s@example.net>")
    assert conn.code(f"RCPT TO:<{u}>") == 250
    conn.code("DATA")
    conn.send(dot_stuff(simple_message()))
    assert conn.reply()[0].startswith("250 ")
    be = next(b for b in c.backends if u in b.deliveries())
    log = be.server.log()
    line = next(l for l in log.splitlines() if f"rcpt=<{u}>" in l and "delivered" in l)
    assert f"127.0.0.6:{conn.port}" in line, line


def test_untrusted_mta_refused(cluster):
    c = cluster
    c.start_backends()
    p = c.add_proxy(top='trusted_networks = ["127.0.0.1/32"]\n')
    conn = lmtp(p.lmtp_port, source="127.0.0.3")
    assert conn.greeting[0].startswith("554 5.7.1")


def test_postfix_through_lmtp_proxy(lmtp_cluster):
    from test_lmtp_postfix import Postfix

    c = lmtp_cluster
    p = c.proxies[0]
    sockdir = tempfile.mkdtemp(prefix="sora-lmtp-sock-")
    pf = Postfix(p.lmtp_port, os.path.join(sockdir, "unused.sock"))
    try:
        pf.start()
        n = 3
        with smtplib.SMTP("127.0.0.1", pf.smtpd_port, timeout=30) as s:
            s.ehlo("client.test")
            for i in range(n):
                refused = s.sendmail("sender@example.net", USERS,
                                     simple_message(subject=f"postfix {i}").encode())
                assert refused == {}
        wait_for(lambda: all(stored(c, u) == n for u in USERS), timeout=90, interval=0.5,
                 what="every recipient to have every message")
        wait_for(pf.queue_empty, timeout=30, what="Postfix queue to drain")
        time.sleep(1)
        # Stored once each, never twice, by both backends between them.
        assert all(stored(c, u) == n for u in USERS)
        by = {b.name: set(b.deliveries()) for b in c.backends}
        assert by["be1"] and by["be2"], by
        assert not (by["be1"] & by["be2"]), by
        assert "451 4.3.0" in pf.maillog()
    finally:
        pf.stop()


def test_backend_on_unix_socket(cluster):
    """remote_addrs may name a backend's unix socket (its path is its ring
    identity; the health check connects there too)."""
    c = cluster
    sock = os.path.join(c.dir, "be1-lmtp.sock")
    c.backends[0].start(extra=f'[servers.lmtp_unix]\ntype = "lmtp"\naddr = "unix:{sock}"\n')
    c.backends[1].start()
    port = __import__("sorafix.common", fromlist=["free_port"]).free_port()
    p = c.add_proxy(extra=f'[servers.lmtp_sock]\ntype = "lmtp_proxy"\naddr = "127.0.0.1:{port}"\n'
                          f'remote_addrs = ["unix:{sock}"]\nremote_use_proxy_protocol = false\n'
                          'health_check_interval = "500ms"\n')
    u = USERS[0]
    c.account(u)
    conn = lmtp(port, source="127.0.0.7")
    conn.cmd("LHLO mta.test")
    assert conn.code("MAIL FROM:<s@example.net>") == 250
    assert conn.code(f"RCPT TO:<{u}>") == 250
    assert conn.code("DATA") == 354
    conn.send(dot_stuff(simple_message()))
    assert conn.reply()[0].startswith("250 ")
    assert u in c.backends[0].deliveries()
    line = next(l for l in c.backends[0].server.log().splitlines()
                if f"rcpt=<{u}>" in l and "delivered" in l)
    assert "127.0.0.7" in line, line
    time.sleep(1.5)
    assert "is down" not in p.server.log()
