"""imap_proxy: HAProxy -> sora-proxy -> sora-backend with real clients.

Two backends on 127.0.0.1 and 127.0.0.2, two proxies with the same
configuration, HAProxy (send-proxy-v2) in front. The client connects from
127.0.0.3, so its address is told apart from every hop's."""
import socket
import time

import pytest

from sorafix.proxy import SourceIMAP
from sorafix.imap import RawImap

USERS = [f"user{i}@example.com" for i in range(12)]


@pytest.fixture
def two_proxies(cluster):
    cluster.start_backends()
    cluster.add_proxy()
    cluster.add_proxy()
    for u in USERS:
        cluster.account(u)
    return cluster


def test_login_through_haproxy_shows_client_address(two_proxies):
    c = two_proxies.start_haproxy()
    for u in USERS[:4]:
        m = SourceIMAP("127.0.0.1", c.haproxy_port, source="127.0.0.3")
        typ, data = m.login(u, "pw-" + u)
        assert typ == "OK"
        # The client's login command gets the backend's post-login
        # capabilities with its own tag.
        assert b"CAPABILITY" in data[0] and b"IMAP4rev1" in data[0], data
        typ, data = m.select("INBOX")
        assert typ == "OK"
        port = m.source_port
        m.logout()
        be = c.backend_of(u)
        assert be is not None, f"no backend logged {u} in"
        # The backend saw the original client (address and port), not
        # HAProxy's or the proxy's.
        assert (u, f"127.0.0.3:{port}") in be.logins(), be.logins()


def test_same_user_same_backend_from_either_proxy_and_spread(two_proxies):
    c = two_proxies
    where = {}
    for u in USERS:
        seen = set()
        for p in c.proxies:
            m = p.login(u)
            m.noop()
            m.logout()
            seen.add(c.backend_of(u).name)
            for b in c.backends:
                b.server.wait_log(f"login as {u}") if b.name in seen else None
        assert len(seen) == 1, f"{u} reached {seen}"
        where[u] = seen.pop()
    # Users spread over both backends.
    assert set(where.values()) == {"be1", "be2"}, where
    # Each login landed on exactly one backend.
    for u in USERS:
        n = sum(1 for b in c.backends for lu, _ in b.logins() if lu == u)
        assert n == 2, (u, n)


def test_pipelined_commands_after_login_flushed_in_order(two_proxies):
    p = two_proxies.proxies[0]
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    r = RawImap(s)
    u = USERS[0]
    r.send(f'a LOGIN "{u}" "pw-{u}"\r\nb SELECT INBOX\r\nc NOOP\r\nd LOGOUT\r\n')
    lines = r.until("d")
    tags = [l.split(" ")[0] for l in lines if not l.startswith("*")]
    assert tags == ["a", "b", "c", "d"], lines
    assert lines[[l.split(" ")[0] for l in lines].index("a")].startswith("a OK [CAPABILITY")


def test_backend_override(two_proxies):
    c = two_proxies
    u = USERS[1]
    m = c.proxies[0].login(u)
    m.logout()
    first = c.backend_of(u)
    other = [b for b in c.backends if b is not first][0]
    c.admin.ok("accounts", "update", "--email", u, "--backend", other.host)
    assert other.host in c.admin.ok("accounts", "show", "--email", u)
    m = c.proxies[1].login(u)
    m.logout()
    other.server.wait_log(f"login as {u}")
    c.admin.ok("accounts", "update", "--email", u, "--backend", "")
    assert c.proxies[0].metric("sora_proxy_routing_decisions_total", protocol="imap",
                               reason="override") >= 0  # family present


def test_id_forwarding_without_proxy_protocol(cluster):
    c = cluster
    c.start_backends()
    p = c.add_proxy(remote_proxy=False)
    c.account(USERS[0])
    m = p.login(USERS[0], source="127.0.0.4")
    port = m.source_port
    m.logout()
    be = c.backend_of(USERS[0])
    assert (USERS[0], "127.0.0.4") in be.logins(), be.logins()
    be.server.wait_log(f"client 127.0.0.4:{port} (forwarded by")
