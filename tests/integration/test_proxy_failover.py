"""Health and failover: kill -9 a backend under two proxies, its users move
to the other within the connect budget; once it is marked down nobody is
sent there; restarted, it gets its users back."""
import re
import time

import imaplib
import pytest

USERS = [f"fo{i}@example.com" for i in range(12)]


def refused_attempts(proxy, backend):
    """Login attempts the proxy made to backend that failed to connect."""
    addr = f"{backend.host}:{backend.imap_port}"
    return len(re.findall(r"backend " + re.escape(addr) + r": (connection refused|.*refused)",
                          proxy.server.log()))


def test_kill_backend_failover_and_return(cluster):
    c = cluster
    c.start_backends()
    p1 = c.add_proxy(connect_timeout="2s")
    p2 = c.add_proxy(connect_timeout="2s")
    for u in USERS:
        c.account(u)
    home = {}
    for u in USERS:
        m = p1.login(u)
        m.logout()
        home[u] = c.backend_of(u)
    victims = [u for u in USERS if home[u] is c.backends[0]]
    others = [u for u in USERS if home[u] is c.backends[1]]
    assert victims and others, home
    be1, be2 = c.backends

    # A session open on be1 when it dies ends (the relay closes with it).
    open_session = p2.login(victims[0])
    open_session.select("INBOX")
    be1.kill()
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        open_session.noop()
        open_session.noop()

    # Its users reconnect through either proxy and reach be2, each login
    # within the connect budget (a refused connect fails over at once).
    for u in victims:
        for p in (p1, p2):
            t0 = time.monotonic()
            m = p.login(u)
            m.select("INBOX")
            m.logout()
            assert time.monotonic() - t0 < 2.0
        assert sum(1 for lu, _ in be2.logins() if lu == u) == 2, u

    # The health checks mark it down; from then on no login tries it.
    for p in (p1, p2):
        p.server.wait_log(f"backend {be1.host}:{be1.imap_port} is down", timeout=10)
    before = [refused_attempts(p, be1) for p in (p1, p2)]
    for u in victims:
        for p in (p1, p2):
            p.login(u).logout()
    assert [refused_attempts(p, be1) for p in (p1, p2)] == before
    assert p1.metric("sora_proxy_backend_up", server="imap", protocol="imap",
                     backend=f"{be1.host}:{be1.imap_port}") == 0
    assert p1.metric("sora_proxy_failovers_total", protocol="imap") >= len(victims)
    # Users of be2 never moved.
    for u in others:
        p1.login(u).logout()
    assert all(home[u] is be2 for u in others)

    # Restarted, be1 is up again after one good greeting and gets its users
    # back; be2 keeps its own.
    be1.start()
    for p in (p1, p2):
        p.server.wait_log(f"backend {be1.host}:{be1.imap_port} is up again", timeout=10)
    for u in victims:
        n = sum(1 for lu, _ in be1.logins() if lu == u)
        p2.login(u).logout()
        be1.server.wait_log(f"login as {u}")
        assert sum(1 for lu, _ in be1.logins() if lu == u) == n + 1
    assert p1.metric("sora_proxy_backend_up", server="imap", protocol="imap",
                     backend=f"{be1.host}:{be1.imap_port}") == 1


def test_all_backends_down_fails_fast(cluster):
    c = cluster
    c.start_backends()
    p = c.add_proxy(connect_timeout="2s")
    c.account("x@example.com")
    for b in c.backends:
        b.kill()
    t0 = time.monotonic()
    m = imaplib.IMAP4("127.0.0.1", p.port, timeout=10)
    typ, data = None, None
    with pytest.raises(imaplib.IMAP4.error) as e:
        m.login("x@example.com", "pw-x@example.com")
    assert "UNAVAILABLE" in str(e.value)
    assert time.monotonic() - t0 < 2.5
